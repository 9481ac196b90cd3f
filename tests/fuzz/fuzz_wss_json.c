/* Fuzz target: the device-side JSON message parser of the wss client (fkd_wss_msg_parse in
 * device/src/wss/wss_json.c), fed any text message a server can send. Invariants: no read past
 * len (the driver hands an exact-size heap copy), every string in the result is
 * NUL-terminated inside its field, a request's id is 1..36 bytes, a success only for a JSON
 * object with a string "type", and the id echoed through fkd_wss_json_put_str parses back to
 * the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/wss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void terminated(const char *s, size_t cap) {
    if (memchr(s, '\0', cap) == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fkd_wss_msg m;
    const char *why = NULL;
    enum fkd_err rc = fkd_wss_msg_parse(data, size, &m, &why);
    if (rc != FKD_OK) {
        if ((rc != FKD_E_PARSE && rc != FKD_E_TYPE) || why == NULL) {
            abort();
        }
        return 0;
    }
    terminated(m.type_str, sizeof m.type_str);
    terminated(m.id, sizeof m.id);
    terminated(m.kind, sizeof m.kind);
    terminated(m.code, sizeof m.code);
    terminated(m.message, sizeof m.message);
    if (m.type == FKD_WSS_MSG_REQUEST) {
        size_t l = strlen(m.id);
        if (l == 0 || l > 36) {
            abort();
        }
        /* what the device answers: the id and kind echoed, escaped */
        char out[FKD_WSS_MSG_MAX];
        size_t pos = 0;
        int n = snprintf(out, sizeof out, "{\"type\":\"error\",\"code\":");
        pos = (size_t)n;
        if (fkd_wss_json_put_str(out, sizeof out, &pos, m.id, l) != 0 ||
            pos + 2 >= sizeof out) {
            abort();
        }
        out[pos++] = '}';
        out[pos] = '\0';
        struct fkd_wss_msg back;
        if (fkd_wss_msg_parse((const uint8_t *)out, pos, &back, NULL) != FKD_OK ||
            strcmp(back.code, m.id) != 0) {
            abort();
        }
    }
    return 0;
}
