/* The fleetkey.v1 message parser (docs/wss-protocol.md).
 *
 * Design: the size limit is checked before anything else, then UTF-8 (RFC 6455 8.1: a text
 * message that is not UTF-8 fails the connection), then cJSON_ParseWithLength, which never
 * reads past len. The parsed tree is walked once, every member the protocol lists is checked
 * for type and length, and what the server keeps is copied into fixed-size fields, so
 * nothing borrowed outlives the call. Unknown members are ignored (forward compatibility). */
#include "fleetkey/server.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <string.h>

int fk_wss_utf8_valid(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07u;
        } else {
            return 0; /* continuation byte first, 0xC0/0xC1 (overlong) or > 0xF4 */
        }
        if (n > len - 1 - i) {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0u) != 0x80u) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        /* RFC 3629 3: overlong forms, surrogates and values above U+10FFFF are invalid. */
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

/* Copies string member name of o into out (size bytes incl. NUL). Missing: FK_E_NOTFOUND
 * when optional, else FK_E_PARSE; wrong type or too long: FK_E_PARSE. */
static enum fk_err get_str(const cJSON *o, const char *name, char *out, size_t size,
                           int required, struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (it == NULL) {
        return required ? fk_diag_set(diag, FK_E_PARSE, "missing \"%s\"", name) : FK_E_NOTFOUND;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        return fk_diag_set(diag, FK_E_PARSE, "\"%s\" is not a string", name);
    }
    size_t n = strlen(it->valuestring);
    if (n >= size || (required && n == 0)) {
        return fk_diag_set(diag, FK_E_PARSE, "\"%s\" length %zu not in 1..%zu", name, n,
                           size - 1);
    }
    memcpy(out, it->valuestring, n + 1);
    return FK_OK;
}

static enum fk_err print_compact(const cJSON *it, char *out, size_t size, const char *name,
                                 struct fk_diag *diag) {
    /* The compact form of a member of a <= 4 KiB message fits 4 KiB: printing only removes
     * whitespace and re-escapes what was escaped (cJSON prints non-ASCII as UTF-8). */
    if (!cJSON_PrintPreallocated((cJSON *)it, out, (int)size, 0)) {
        return fk_diag_set(diag, FK_E_PARSE, "\"%s\" does not fit", name);
    }
    return FK_OK;
}

static enum fk_err parse_hello(const cJSON *o, struct fk_wss_msg *m, struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    FK_GUARD(get_str(o, "device_id", m->device_id, sizeof m->device_id, 1, diag));
    FK_GUARD(get_str(o, "firmware_version", m->firmware_version, sizeof m->firmware_version, 1,
                     diag));
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(o, "credential_versions");
    FK_ENSURE(cJSON_IsObject(cv),
              fk_diag_set(diag, FK_E_PARSE, "\"credential_versions\" is not an object"));
    int n = 0;
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, cv) {
        FK_ENSURE(++n <= 16, fk_diag_set(diag, FK_E_PARSE, "more than 16 credential versions"));
        size_t kl = e->string != NULL ? strlen(e->string) : 0;
        FK_ENSURE(kl >= 1 && kl <= 32,
                  fk_diag_set(diag, FK_E_PARSE, "credential name length not in 1..32"));
        /* A version is a non-negative integer below 2^31 (JSON numbers are doubles). */
        FK_ENSURE(cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble <= 2147483647.0 &&
                      e->valuedouble == (double)e->valueint,
                  fk_diag_set(diag, FK_E_PARSE, "credential version of '%s' not an integer",
                              e->string));
    }
    FK_GUARD(print_compact(cv, m->credential_versions, sizeof m->credential_versions,
                           "credential_versions", diag));
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "posture");
    FK_ENSURE(cJSON_IsObject(p), fk_diag_set(diag, FK_E_PARSE, "\"posture\" is not an object"));
    FK_GUARD(get_str(p, "build", m->posture_build, sizeof m->posture_build, 1, diag));
    FK_ENSURE(strcmp(m->posture_build, "production") == 0 ||
                  strcmp(m->posture_build, "development") == 0,
              fk_diag_set(diag, FK_E_PARSE, "posture build '%s' unknown", m->posture_build));
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(p, "rules");
    FK_ENSURE(cJSON_IsObject(rules),
              fk_diag_set(diag, FK_E_PARSE, "\"posture.rules\" is not an object"));
    n = 0;
    cJSON_ArrayForEach(e, rules) {
        FK_ENSURE(++n <= 32, fk_diag_set(diag, FK_E_PARSE, "more than 32 posture rules"));
        FK_ENSURE(cJSON_IsBool(e), fk_diag_set(diag, FK_E_PARSE, "posture rule not a boolean"));
    }
    FK_GUARD(print_compact(p, m->posture, sizeof m->posture, "posture", diag));
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err parse_ping_id(const cJSON *o, struct fk_wss_msg *m, struct fk_diag *diag) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (id == NULL) {
        return FK_OK;
    }
    if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 2147483647.0 ||
        id->valuedouble != (double)id->valueint) {
        return fk_diag_set(diag, FK_E_PARSE, "ping id not an integer in 0..2^31-1");
    }
    m->has_id = 1;
    m->id = id->valueint;
    return FK_OK;
}

static enum fk_err parse_response(const cJSON *o, struct fk_wss_msg *m, struct fk_diag *diag) {
    enum fk_err rc = get_str(o, "id", m->req_id, sizeof m->req_id, 1, diag);
    if (rc != FK_OK) {
        return rc;
    }
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(o, "ok");
    if (!cJSON_IsBool(ok)) {
        return fk_diag_set(diag, FK_E_PARSE, "response \"ok\" is not a boolean");
    }
    m->ok = cJSON_IsTrue(ok);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(o, "body");
    if (body != NULL && !cJSON_IsObject(body)) {
        return fk_diag_set(diag, FK_E_PARSE, "response \"body\" is not an object");
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (err != NULL && !cJSON_IsObject(err)) {
        return fk_diag_set(diag, FK_E_PARSE, "response \"error\" is not an object");
    }
    return FK_OK;
}

enum fk_err fk_wss_msg_parse(const uint8_t *buf, size_t len, struct fk_wss_msg *m,
                             int *close_code, struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    cJSON *root = NULL;
    memset(m, 0, sizeof *m);
    *close_code = FK_WSS_CLOSE_INVALID;
    if (len > FK_WSS_MAX_MESSAGE) {
        *close_code = FK_WSS_CLOSE_TOO_BIG;
        return fk_diag_set(diag, FK_E_TOOBIG, "message of %zu bytes (max %u)", len,
                           FK_WSS_MAX_MESSAGE);
    }
    FK_ENSURE(fk_wss_utf8_valid(buf, len), fk_diag_set(diag, FK_E_PARSE, "not UTF-8"));
    root = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(root != NULL, fk_diag_set(diag, FK_E_PARSE, "not JSON"));
    FK_ENSURE(cJSON_IsObject(root), fk_diag_set(diag, FK_E_PARSE, "not a JSON object"));
    FK_GUARD(get_str(root, "type", m->type_name, sizeof m->type_name, 1, diag));
    if (strcmp(m->type_name, "hello") == 0) {
        m->type = FK_WSS_HELLO;
        FK_GUARD(parse_hello(root, m, diag));
    } else if (strcmp(m->type_name, "ping") == 0 || strcmp(m->type_name, "pong") == 0) {
        m->type = m->type_name[1] == 'i' ? FK_WSS_PING : FK_WSS_PONG;
        FK_GUARD(parse_ping_id(root, m, diag));
    } else if (strcmp(m->type_name, "response") == 0) {
        m->type = FK_WSS_RESPONSE;
        FK_GUARD(parse_response(root, m, diag));
    } else {
        m->type = FK_WSS_OTHER;
    }
    *close_code = 0;
    rc = FK_OK;
out:
    cJSON_Delete(root);
    return rc;
}
