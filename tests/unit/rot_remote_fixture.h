/* A robot for the tests of the device's rotation handler (fkd/rot_remote.h): in-memory
 * flash with real NVS, the rotation records and the handler, and requests fed as the wss
 * client feeds them (kind + body slice). Shared by test_rot_remote.c and
 * test_rot_remote_ota.c. */
#ifndef FK_TEST_ROT_REMOTE_FIXTURE_H
#define FK_TEST_ROT_REMOTE_FIXTURE_H

#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/rot.h"
#include "fkd/rot_remote.h"

#include <stddef.h>
#include <stdint.h>

#define RR_NVS_PAGES 8u
#define RR_NVS_SIZE (RR_NVS_PAGES * FKD_FLASH_SECTOR)

struct rr_dev {
    uint8_t buf[RR_NVS_SIZE];
    struct fkd_flash_mem mem;
    struct fkd_flash flash;
    struct fkd_nvs nvs;
    struct fkd_rot rot;
    struct fkd_rot_remote rem;
    char out[4096];
    struct fkd_wss_reply rep;
};

/* Erased flash with an empty, formatted NVS (cmocka assertions on failure). */
void rr_format(struct rr_dev *d);
/* Power on: mount NVS, load the rotation records (2 attempts, no trial time limit), set the
 * handler up again. The first error, or FKD_OK. */
enum fkd_err rr_boot(struct rr_dev *d);
/* Sends one request; returns its error code ("" for ok). An ok body is in d->out. */
const char *rr_req(struct rr_dev *d, const char *kind, const char *body);
/* Standard base64 of in into out (cmocka assertion when it does not fit). */
void rr_b64(const uint8_t *in, size_t n, char *out, size_t cap);

#endif
