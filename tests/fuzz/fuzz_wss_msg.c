/* Fuzz target: fleetkey-server's fleetkey.v1 message parser (fk_wss_msg_parse) and its UTF-8
 * check, i.e. everything the server does with the bytes of a WebSocket text message before
 * acting on it. Invariants checked (abort on violation): a refusal names close code 1007 or
 * 1009 and an accepted message 0; every accepted message was valid UTF-8 of at most
 * FK_WSS_MAX_MESSAGE bytes; what the parser copied out is NUL-terminated within its field;
 * a hello's re-serialised posture and credential versions parse back as JSON objects, and so
 * does the re-serialised "ota" object of a hello or a response whenever one was taken.
 * Corpus: tests/fuzz/corpus/wss_msg/ (protocol examples from docs/wss-protocol.md, and
 * truncated, mistyped, oversized and non-UTF-8 variants). */
#include "fleetkey/server.h"

#include <cjson/cJSON.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void terminated(const char *s, size_t size) {
    if (memchr(s, '\0', size) == NULL) {
        abort();
    }
}

static void object_text(const char *s) {
    cJSON *o = cJSON_Parse(s);
    if (!cJSON_IsObject(o)) {
        abort();
    }
    cJSON_Delete(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fk_wss_msg m;
    int code = -1;
    enum fk_err rc = fk_wss_msg_parse(data, size, &m, &code, NULL);
    int utf8 = fk_wss_utf8_valid(data, size);
    if (rc != FK_OK) {
        if (code != FK_WSS_CLOSE_INVALID && code != FK_WSS_CLOSE_TOO_BIG) {
            abort();
        }
        if ((size > FK_WSS_MAX_MESSAGE) != (code == FK_WSS_CLOSE_TOO_BIG)) {
            abort();
        }
        return 0;
    }
    if (code != 0 || !utf8 || size > FK_WSS_MAX_MESSAGE) {
        abort();
    }
    terminated(m.type_name, sizeof m.type_name);
    terminated(m.device_id, sizeof m.device_id);
    terminated(m.firmware_version, sizeof m.firmware_version);
    terminated(m.req_id, sizeof m.req_id);
    if (m.type == FK_WSS_HELLO) {
        if (m.device_id[0] == '\0' || m.firmware_version[0] == '\0') {
            abort();
        }
        terminated(m.posture, sizeof m.posture);
        terminated(m.credential_versions, sizeof m.credential_versions);
        object_text(m.posture);
        object_text(m.credential_versions);
    }
    terminated(m.ota_json, sizeof m.ota_json);
    terminated(m.err_code, sizeof m.err_code);
    terminated(m.err_msg, sizeof m.err_msg);
    if (m.ota_json[0] != '\0') {
        object_text(m.ota_json);
    }
    return 0;
}
