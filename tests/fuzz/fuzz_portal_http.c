/* Fuzz target: the Wi-Fi portal's request path (device/src/portal/portal.c) on bytes from any
 * phone in reach of the soft-AP, before anything is authenticated: the request parser, the form
 * decoder, the handler over a real in-memory NVS (a valid form is saved), and the journal
 * parser. Slices must lie inside the input; the response must fit its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/portal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const uint8_t *base, size_t size, struct fkd_slice s) {
    if (s.len > 0 &&
        (s.p < base || (size_t)(s.p - base) > size || s.len > size - (size_t)(s.p - base))) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t flashbuf[0x3000];
    static uint8_t resp[FKD_PORTAL_RESP_MAX];
    struct fkd_flash_mem mem;
    struct fkd_flash flash;
    struct fkd_nvs nvs;
    struct fkd_http_req rq;
    if (fkd_http_req_parse(data, size, FKD_PORTAL_REQ_MAX, &rq) == FKD_OK) {
        inside(data, size, rq.method);
        inside(data, size, rq.target);
        inside(data, size, rq.content_type);
        if (rq.head_len > size) {
            abort();
        }
    }
    char v[65];
    size_t vl = 0;
    if (fkd_form_get(data, size, "ssid", v, sizeof v, &vl) == FKD_OK && vl != strlen(v)) {
        abort();
    }
    char s[FKD_WIFI_SSID_MAX + 1], p[FKD_WIFI_PASS_MAX + 1];
    if (fkd_wifi_journal_parse(data, size, s, p) == FKD_OK &&
        (strlen(s) > FKD_WIFI_SSID_MAX || strlen(p) > FKD_WIFI_PASS_MAX)) {
        abort();
    }
    memset(flashbuf, 0xFF, sizeof flashbuf);
    fkd_flash_mem_init(&mem, flashbuf, sizeof flashbuf, &flash);
    fkd_nvs_init(&nvs);
    if (fkd_nvs_mount(&nvs, &flash, 0, sizeof flashbuf, NULL, NULL) != FKD_OK) {
        abort();
    }
    size_t n = 0;
    enum fkd_err err;
    (void)fkd_portal_handle(&nvs, data, size, resp, sizeof resp, &n, &err);
    if (n >= sizeof resp) {
        abort();
    }
    fkd_nvs_free(&nvs);
    return 0;
}
