/* Shared fixtures of the device OTA unit tests (test_device_ota.c, test_ota_remote.c): the
 * Secure Boot V2 vector files, their keys, and real signed app images (tests/tools/mkappimage
 * signed by the host module). Every helper fails the running cmocka test on error. */
#ifndef FK_TEST_OTA_FIXTURE_H
#define FK_TEST_OTA_FIXTURE_H

#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/part.h"
#include "fleetkey/ota.h"

#include <stddef.h>
#include <stdint.h>

/* The bytes of tests/vectors/sbv2/NAME (FK_VECTORS); malloc'd, *len set. */
uint8_t *fkt_vector_load(const char *name, size_t *len);
/* The DER SubjectPublicKeyInfo of a vector PEM key (private or public), as NVS holds it. */
size_t fkt_vector_pub_der(const char *name, uint8_t *out, size_t out_size);
/* A vector's private key through the host module (fk_ota_key_free it). */
struct fk_ota_key *fkt_vector_key(const char *name);
/* A real app image (version, secure_version; 3000-byte segments) signed with the vector keys
 * named in the NULL-terminated list; malloc'd, *len = signed size. */
uint8_t *fkt_signed_app(const char *version, uint32_t secver, const char *const *keys, size_t *len);

/* A robot's flash in memory: 4 MiB, the default partition table, NVS. */
#define FKT_CHIP (4u << 20)
struct fkt_flash {
    uint8_t *chip; /* FKT_CHIP bytes, allocated by the first fkt_flash_new (free it) */
    struct fkd_flash_mem m;
    struct fkd_flash f;
    struct fkd_part_table t;
    struct fkd_nvs nvs;
};
/* Erases the chip (allocating it the first time), writes the default partition table and
 * formats NVS. */
void fkt_flash_new(struct fkt_flash *r);
const struct fkd_part *fkt_flash_nvs(const struct fkt_flash *r);
/* Power back on after a cut: the cut cleared, NVS mounted afresh (repairing what it left). */
void fkt_flash_power_on(struct fkt_flash *r);

extern const char *const FKT_KA[];  /* key A (the old key of a rotation) */
extern const char *const FKT_KB[];  /* key B (the new key) */
extern const char *const FKT_KAB[]; /* A + B: a rotation's dual-signed release */

#endif
