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
static enum fk_err get_str(const cJSON *o, const char *name, char *out, size_t size, int required,
                           struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (it == NULL) {
        return required ? fk_diag_set(diag, FK_E_PARSE, "missing \"%s\"", name) : FK_E_NOTFOUND;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        return fk_diag_set(diag, FK_E_PARSE, "\"%s\" is not a string", name);
    }
    size_t n = strlen(it->valuestring);
    if (n >= size || (required && n == 0)) {
        return fk_diag_set(diag, FK_E_PARSE, "\"%s\" length %zu not in 1..%zu", name, n, size - 1);
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

/* An integer member in [lo, hi] (JSON numbers are doubles: exact integers only). */
static enum fk_err get_int(const cJSON *o, const char *name, double lo, double hi, long long *out,
                           struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (it == NULL) {
        return FK_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble < lo || it->valuedouble > hi ||
        it->valuedouble != (double)(long long)it->valuedouble) {
        return fk_diag_set(diag, FK_E_PARSE, "\"%s\" is not an integer in %.0f..%.0f", name, lo,
                           hi);
    }
    *out = (long long)it->valuedouble;
    return FK_OK;
}

static enum fk_err opt_str(const cJSON *o, const char *name, char *out, size_t size,
                           struct fk_diag *diag) {
    enum fk_err rc = get_str(o, name, out, size, 0, diag);
    return rc == FK_E_NOTFOUND ? FK_OK : rc;
}

static void lower(char *s) {
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
}

/* "keys": NVS key name -> "sbv2:<hex>" (docs/wss-protocol.md), at most FK_WSS_OTA_KEYS_MAX. */
static enum fk_err parse_keys(const cJSON *keys, struct fk_wss_ota_key *out, size_t *n,
                              struct fk_diag *diag) {
    const cJSON *e = NULL;
    *n = 0;
    if (!cJSON_IsObject(keys)) {
        return fk_diag_set(diag, FK_E_PARSE, "\"keys\" is not an object");
    }
    cJSON_ArrayForEach(e, keys) {
        if (*n >= FK_WSS_OTA_KEYS_MAX) {
            return fk_diag_set(diag, FK_E_PARSE, "more than %u OTA keys", FK_WSS_OTA_KEYS_MAX);
        }
        size_t kl = e->string != NULL ? strlen(e->string) : 0;
        if (kl < 1 || kl >= sizeof out[0].name) {
            return fk_diag_set(diag, FK_E_PARSE, "OTA key name length not in 1..32");
        }
        if (!cJSON_IsString(e) || e->valuestring == NULL || e->valuestring[0] == '\0' ||
            strlen(e->valuestring) >= sizeof out[0].fpr) {
            return fk_diag_set(diag, FK_E_PARSE, "OTA key '%s' is not a fingerprint string",
                               e->string);
        }
        memcpy(out[*n].name, e->string, kl + 1);
        memcpy(out[*n].fpr, e->valuestring, strlen(e->valuestring) + 1);
        lower(out[*n].fpr);
        ++*n;
    }
    return FK_OK;
}

static int is_hex64(const char *s) {
    if (strlen(s) != 64) {
        return 0;
    }
    for (size_t i = 0; i < 64; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* The "ota" object (docs/wss-protocol.md, "OTA state in hello and in the status body"):
 * each member typed, each optional; the object re-serialised compact for the inventory. */
static enum fk_err parse_ota(const cJSON *o, struct fk_wss_msg *m, struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    struct fk_wss_ota *ota = &m->ota;
    const cJSON *it = NULL;
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "\"ota\" is not an object"));
    ota->present = 1;
    FK_GUARD(opt_str(o, "slot", ota->slot, sizeof ota->slot, diag));
    FK_GUARD(opt_str(o, "state", ota->state, sizeof ota->state, diag));
    FK_GUARD(opt_str(o, "version", ota->version, sizeof ota->version, diag));
    FK_GUARD(get_int(o, "secure_version", 0, 4294967295.0, &ota->secure_version, diag));
    FK_GUARD(opt_str(o, "app_sha256", ota->app_sha256, sizeof ota->app_sha256, diag));
    FK_ENSURE(ota->app_sha256[0] == '\0' || is_hex64(ota->app_sha256),
              fk_diag_set(diag, FK_E_PARSE, "\"ota.app_sha256\" is not 64 hex digits"));
    lower(ota->app_sha256);
    it = cJSON_GetObjectItemCaseSensitive(o, "updates");
    if (it != NULL) {
        FK_ENSURE(cJSON_IsBool(it),
                  fk_diag_set(diag, FK_E_PARSE, "\"ota.updates\" is not a boolean"));
        ota->updates = cJSON_IsTrue(it);
    }
    it = cJSON_GetObjectItemCaseSensitive(o, "keys");
    if (it != NULL) {
        FK_GUARD(parse_keys(it, ota->keys, &ota->nkeys, diag));
    }
    FK_GUARD(print_compact(o, m->ota_json, sizeof m->ota_json, "ota", diag));
    rc = FK_OK;
out:
    return rc;
}

/* One class of "rot" (docs/wss-protocol.md, "Credential rotation"). */
static enum fk_err parse_rot_class(const cJSON *o, const char *name, struct fk_wss_rot_class *c,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "\"rot.%s\" is not an object", name));
    c->present = 1;
    FK_GUARD(opt_str(o, "state", c->state, sizeof c->state, diag));
    FK_GUARD(get_int(o, "version", 0, 2147483647.0, &c->version, diag));
    FK_GUARD(get_int(o, "staged_version", 0, 2147483647.0, &c->staged_version, diag));
    FK_GUARD(get_int(o, "attempts", 0, 2147483647.0, &c->attempts, diag));
    FK_GUARD(opt_str(o, "reason", c->reason, sizeof c->reason, diag));
    rc = FK_OK;
out:
    return rc;
}

/* "rot": one member per class ("ca", "mtls", "psk", "ota"); a rot_* answer may also carry the one
 * class's state directly ({"state": ...}), kept in single. */
static enum fk_err parse_rot(const cJSON *o, struct fk_wss_rot *r, struct fk_diag *diag) {
    static const char *const names[FK_WSS_ROT_CLASSES] = {"ca", "mtls", "psk", "ota"};
    enum fk_err rc = FK_E_PARSE;
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "\"rot\" is not an object"));
    r->present = 1;
    for (int i = 0; i < FK_WSS_ROT_CLASSES; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, names[i]);
        if (it != NULL) {
            FK_GUARD(parse_rot_class(it, names[i], &r->c[i], diag));
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "state") != NULL) {
        FK_GUARD(parse_rot_class(o, "state", &r->single, diag));
    }
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err parse_hello(const cJSON *o, struct fk_wss_msg *m, struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    FK_GUARD(get_str(o, "device_id", m->device_id, sizeof m->device_id, 1, diag));
    FK_GUARD(
        get_str(o, "firmware_version", m->firmware_version, sizeof m->firmware_version, 1, diag));
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
        FK_ENSURE(
            cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble <= 2147483647.0 &&
                e->valuedouble == (double)e->valueint,
            fk_diag_set(diag, FK_E_PARSE, "credential version of '%s' not an integer", e->string));
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
    FK_GUARD(get_int(p, "dtls_port", 0, 65535, &m->dtls_port, diag));
    const cJSON *ota = cJSON_GetObjectItemCaseSensitive(o, "ota");
    if (ota != NULL) {
        FK_GUARD(parse_ota(ota, m, diag));
    }
    const cJSON *rot = cJSON_GetObjectItemCaseSensitive(o, "rot");
    if (rot != NULL) {
        FK_GUARD(parse_rot(rot, &m->rot, diag));
    }
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

/* The body members of the OTA kinds' answers (docs/wss-protocol.md, "Request kinds for
 * updates and OTA keys"). The parser does not know which request a response answers, so each
 * member is checked by its name wherever it appears; the names do not collide. */
static enum fk_err parse_body(const cJSON *b, struct fk_wss_msg *m, struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    FK_GUARD(get_int(b, "chunk", 1, 65536, &m->chunk, diag));
    FK_GUARD(get_int(b, "received", 0, 9007199254740992.0, &m->received, diag));
    FK_GUARD(get_int(b, "secure_version", 0, 4294967295.0, &m->secure_version, diag));
    FK_GUARD(opt_str(b, "slot", m->slot, sizeof m->slot, diag));
    FK_GUARD(opt_str(b, "version", m->version, sizeof m->version, diag));
    FK_GUARD(opt_str(b, "key", m->key, sizeof m->key, diag));
    lower(m->key);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(b, "reboot");
    FK_ENSURE(it == NULL || cJSON_IsBool(it),
              fk_diag_set(diag, FK_E_PARSE, "\"reboot\" is not a boolean"));
    it = cJSON_GetObjectItemCaseSensitive(b, "keys");
    if (it != NULL) {
        m->has_keys = 1;
        FK_GUARD(parse_keys(it, m->keys, &m->nkeys, diag));
    }
    /* status: the members of hello; only "ota" is used, the rest typed as in hello. */
    char fw[FK_WSS_FW_MAX + 1];
    FK_GUARD(opt_str(b, "firmware_version", fw, sizeof fw, diag));
    it = cJSON_GetObjectItemCaseSensitive(b, "credential_versions");
    FK_ENSURE(it == NULL || cJSON_IsObject(it),
              fk_diag_set(diag, FK_E_PARSE, "\"credential_versions\" is not an object"));
    it = cJSON_GetObjectItemCaseSensitive(b, "posture");
    FK_ENSURE(it == NULL || cJSON_IsObject(it),
              fk_diag_set(diag, FK_E_PARSE, "\"posture\" is not an object"));
    it = cJSON_GetObjectItemCaseSensitive(b, "ota");
    if (it != NULL) {
        FK_GUARD(parse_ota(it, m, diag));
    }
    /* status and the rot_* kinds: the rotation state; rot_csr: the CSR */
    it = cJSON_GetObjectItemCaseSensitive(b, "rot");
    if (it != NULL) {
        FK_GUARD(parse_rot(it, &m->rot, diag));
    }
    FK_GUARD(opt_str(b, "csr", m->csr, sizeof m->csr, diag));
    rc = FK_OK;
out:
    return rc;
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
    if (err != NULL) {
        rc = opt_str(err, "code", m->err_code, sizeof m->err_code, diag);
        if (rc != FK_OK) {
            return rc;
        }
        /* The message is for people: cut to fit rather than refused when long. */
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        if (msg != NULL && !cJSON_IsString(msg)) {
            return fk_diag_set(diag, FK_E_PARSE, "\"error.message\" is not a string");
        }
        if (msg != NULL && msg->valuestring != NULL) {
            snprintf(m->err_msg, sizeof m->err_msg, "%s", msg->valuestring);
        }
    }
    if (!m->ok && m->err_code[0] == '\0') {
        snprintf(m->err_code, sizeof m->err_code, "unspecified");
    }
    return body != NULL ? parse_body(body, m, diag) : FK_OK;
}

enum fk_err fk_wss_msg_parse(const uint8_t *buf, size_t len, struct fk_wss_msg *m, int *close_code,
                             struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    cJSON *root = NULL;
    memset(m, 0, sizeof *m);
    m->ota.secure_version = -1;
    m->ota.updates = -1;
    m->chunk = m->received = m->secure_version = -1;
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
