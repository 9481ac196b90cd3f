/* See rot_remote_fixture.h. */
#include "rot_remote_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <mbedtls/base64.h>
#include <string.h>

void rr_format(struct rr_dev *d) {
    memset(d->buf, 0xff, sizeof d->buf);
    fkd_flash_mem_init(&d->mem, d->buf, RR_NVS_SIZE, &d->flash);
    fkd_nvs_init(&d->nvs);
    assert_int_equal(fkd_nvs_format(&d->nvs, &d->flash, 0, RR_NVS_SIZE, NULL), FKD_OK);
}

enum fkd_err rr_boot(struct rr_dev *d) {
    fkd_nvs_init(&d->nvs);
    enum fkd_err rc = fkd_nvs_mount(&d->nvs, &d->flash, 0, RR_NVS_SIZE, NULL, NULL);
    if (rc != FKD_OK) {
        return rc;
    }
    fkd_rot_init(&d->rot);
    rc = fkd_rot_load(&d->rot, &d->nvs, 2, 0);
    fkd_rot_remote_free(&d->rem);
    fkd_rot_remote_init(&d->rem);
    if (rc == FKD_OK) {
        rc = fkd_rot_remote_setup(&d->rem, &d->rot);
    }
    return rc;
}

const char *rr_req(struct rr_dev *d, const char *kind, const char *body) {
    memset(&d->rep, 0, sizeof d->rep);
    d->rep.body = d->out;
    d->rep.body_cap = sizeof d->out - 1;
    enum fkd_wss_req_result r = fkd_rot_remote_request(&d->rem, kind, (const uint8_t *)body,
                                                       body != NULL ? strlen(body) : 0, &d->rep);
    assert_int_equal(r, FKD_WSS_REQ_DONE);
    if (d->rep.code[0] == '\0') {
        d->out[d->rep.body_len] = '\0';
    } else {
        d->out[0] = '\0';
    }
    return d->rep.code;
}

void rr_b64(const uint8_t *in, size_t n, char *out, size_t cap) {
    size_t o = 0;
    assert_int_equal(mbedtls_base64_encode((unsigned char *)out, cap, &o, in, n), 0);
}
