/* Checks the request-handler harnesses (fuzz_ota_remote, fuzz_rot_remote) share: a refusal's
 * code is one the protocol lists, and an ok body is one JSON object the device's own message
 * parser accepts. Header-only (static), so each harness stays one translation unit. */
#ifndef FK_FUZZ_REPLY_CHECK_H
#define FK_FUZZ_REPLY_CHECK_H

#include "fkd/wss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when c is one of the n codes. */
static int reply_code_known(const char *c, const char *const *codes, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c, codes[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Aborts unless (s, n) is one JSON object: it is wrapped as a message member and parsed. */
static void reply_object_text(const char *s, size_t n) {
    static char wrap[FKD_WSS_MSG_MAX + 32];
    struct fkd_wss_msg m;
    if (n == 0 || s[0] != '{') {
        abort();
    }
    int k = snprintf(wrap, sizeof wrap, "{\"type\":\"x\",\"b\":%.*s}", (int)n, s);
    if (k < 0 || (size_t)k >= sizeof wrap ||
        fkd_wss_msg_parse((const uint8_t *)wrap, (size_t)k, &m, NULL) != FKD_OK) {
        abort();
    }
}

#endif
