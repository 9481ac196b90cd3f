/* The wss client's outgoing messages (wss_internal.h; docs/wss-protocol.md): hello, ping,
 * pong and the response to a request, written as JSON straight into the context's tx buffer
 * and sent as one text frame. Nothing is allocated: a message that does not fit is refused,
 * never truncated. */
#include "wss_internal.h"

#include "fkd/rot_remote.h"

#include <stdio.h>
#include <string.h>

/* A copy of s for the log: bytes outside printable ASCII become '?', so nothing a server
 * sends can forge log lines. */
const char *fkd_wss_loggable(const char *s, char *buf, size_t cap) {
    size_t o = 0;
    for (; s[o] != '\0' && o + 1 < cap; o++) {
        unsigned char c = (unsigned char)s[o];
        buf[o] = c >= 0x20 && c < 0x7F ? (char)c : '?';
    }
    buf[o] = '\0';
    return buf;
}

/* ---- JSON out ------------------------------------------------------------------------------ */

struct jw {
    char *b;
    size_t cap;
    size_t n;
    int over;
};

static void put(struct jw *j, const char *s) {
    size_t l = strlen(s);
    if (j->over || l >= j->cap - j->n) {
        j->over = 1;
        return;
    }
    memcpy(j->b + j->n, s, l + 1);
    j->n += l;
}

static void put_str(struct jw *j, const char *s) {
    if (!j->over && fkd_wss_json_put_str(j->b, j->cap, &j->n, s, strlen(s)) != 0) {
        j->over = 1;
    }
}

static void put_uint(struct jw *j, unsigned long v) {
    char num[24];
    snprintf(num, sizeof num, "%lu", v);
    put(j, num);
}

/* "credential_versions": 1 for the committed credential the store holds, 0 for an absent one;
 * the rotation issue brings real version numbers with the two slots. */
static void put_creds(struct jw *j, const struct fkd_store *st) {
    const struct fkd_cred_info *cert = fkd_store_info(st, FKD_CRED_CLIENT_CERT);
    const struct fkd_cred_info *psk = fkd_store_info(st, FKD_CRED_DTLS_PSK);
    const struct fkd_cred_info *ota = fkd_store_info(st, FKD_CRED_OTA_PUBKEY);
    const struct fkd_cred_info *wifi = fkd_store_info(st, FKD_CRED_WIFI_SSID);
    put(j, "{\"mtls_cert\":");
    put_uint(j, cert->valid ? 1u : 0u);
    put(j, ",\"dtls_psk\":");
    put_uint(j, psk->valid ? 1u : 0u);
    put(j, ",\"ota_pubkey\":");
    put_uint(j, ota->valid ? 1u : 0u);
    put(j, ",\"wifi\":");
    put_uint(j, wifi->valid ? 1u : 0u);
    put(j, "}");
}

static void put_posture(struct jw *j, const struct fkd_posture *p) {
    if (j->over) {
        return;
    }
    size_t need = fkd_posture_json(p, j->b + j->n, j->cap - j->n);
    if (need >= j->cap - j->n) {
        j->over = 1;
        return;
    }
    j->n += need;
}

/* The handler's "ota" member (wss-protocol.md, "OTA state in hello and in the status body"):
 * written in place after `,"ota":`; taken back when the handler has nothing to say. */
static void put_ota(struct fkd_wss *w, struct jw *j) {
    const struct fkd_wss_handler *h = w->cfg.handler;
    if (j->over || h == NULL || h->state_json == NULL) {
        return;
    }
    size_t mark = j->n;
    put(j, ",\"ota\":");
    if (j->over) {
        return;
    }
    size_t room = j->cap - j->n;
    size_t n = h->state_json(w->cfg.handler_user, j->b + j->n, room);
    if (n == 0 || n >= room) {
        if (n >= room) {
            fkd_log(FKD_LOG_ERROR, "wss: the ota state does not fit the message: left out");
        }
        j->n = mark;
        j->b[mark] = '\0';
        return;
    }
    j->n += n;
}

/* The "rot" member (wss-protocol.md, "Rotation state in hello and in the status body"). */
static void put_rot(struct fkd_wss *w, struct jw *j) {
    if (j->over || w->cfg.rot == NULL) {
        return;
    }
    put(j, ",\"rot\":");
    if (j->over) {
        return;
    }
    size_t room = j->cap - j->n;
    size_t n = fkd_rot_state_json(w->cfg.rot, j->b + j->n, room);
    if (n == 0 || n >= room) {
        j->over = 1;
        return;
    }
    j->n += n;
}

static enum fkd_err send_text(struct fkd_wss *w, struct jw *j) {
    if (j->over) {
        fkd_log(FKD_LOG_ERROR, "wss: outgoing message larger than %u bytes", FKD_WSS_MSG_MAX);
        return FKD_E_NOSPACE;
    }
    return fkd_ws_send(&w->ws, FKD_WS_OP_TEXT, (const uint8_t *)j->b, j->n);
}

enum fkd_err fkd_wss_send_hello(struct fkd_wss *w) {
    struct jw j = {w->tx, sizeof w->tx, 0, 0};
    put(&j, "{\"type\":\"hello\",\"device_id\":");
    put_str(&j, w->device_id);
    put(&j, ",\"firmware_version\":");
    put_str(&j, w->cfg.fw_version);
    put(&j, ",\"credential_versions\":");
    put_creds(&j, w->cfg.store);
    put(&j, ",\"posture\":");
    put_posture(&j, w->cfg.posture);
    put_ota(w, &j);
    put_rot(w, &j);
    put(&j, "}");
    return send_text(w, &j);
}

enum fkd_err fkd_wss_send_ping(struct fkd_wss *w) {
    struct jw j = {w->tx, sizeof w->tx, 0, 0};
    w->ping_id = (w->ping_id + 1u) & 0x7fffffffu;
    put(&j, "{\"type\":\"ping\",\"id\":");
    put_uint(&j, w->ping_id);
    put(&j, "}");
    return send_text(w, &j);
}

enum fkd_err fkd_wss_send_pong(struct fkd_wss *w, const struct fkd_wss_msg *m) {
    struct jw j = {w->tx, sizeof w->tx, 0, 0};
    put(&j, "{\"type\":\"pong\"");
    if (m->has_id_num) {
        put(&j, ",\"id\":");
        put_uint(&j, m->id_num);
    }
    put(&j, "}");
    return send_text(w, &j);
}

/* A request the handler takes: its answer is written straight into tx after `"body":` (no
 * second buffer); an error rewinds to after the id and writes the error object instead.
 * FKD_E_NOTFOUND when the handler does not know the kind. */
static enum fkd_err handler_response(struct fkd_wss *w, const struct fkd_wss_msg *m, struct jw *j,
                                     int *reboot) {
    const struct fkd_wss_handler *h = w->cfg.handler;
    if (h == NULL || h->request == NULL) {
        return FKD_E_NOTFOUND;
    }
    size_t mark = j->n;
    put(j, ",\"ok\":true,\"body\":");
    if (j->over || j->cap - j->n < 3) {
        j->over = 1;
        return FKD_E_NOSPACE;
    }
    struct fkd_wss_reply r;
    memset(&r, 0, sizeof r);
    r.body = j->b + j->n;
    r.body_cap = j->cap - j->n - 2; /* room for the closing "}" and the NUL */
    const uint8_t *body = m->has_body ? w->msg + m->body_off : NULL;
    if (h->request(w->cfg.handler_user, m->kind, body, m->has_body ? m->body_len : 0, &r) ==
        FKD_WSS_REQ_UNKNOWN) {
        j->n = mark;
        j->b[mark] = '\0';
        return FKD_E_NOTFOUND;
    }
    char idl[FKD_WSS_STR_MAX], kl[FKD_WSS_STR_MAX];
    r.code[sizeof r.code - 1] = '\0';
    r.message[sizeof r.message - 1] = '\0';
    if (r.code[0] == '\0' && r.body_len > 0 && r.body_len < r.body_cap) {
        j->n += r.body_len;
        j->b[j->n] = '\0';
        put(j, "}");
        *reboot = r.reboot ? 1 : r.reconnect ? 2 : 0;
        return FKD_OK;
    }
    if (r.code[0] == '\0') {
        /* a handler that wrote nothing usable: answered as an internal error, never silence */
        snprintf(r.code, sizeof r.code, "internal");
        snprintf(r.message, sizeof r.message, "the device could not write its answer");
    }
    j->n = mark;
    j->b[mark] = '\0';
    put(j, ",\"ok\":false,\"error\":{\"code\":");
    put_str(j, r.code);
    put(j, ",\"message\":");
    put_str(j, r.message);
    put(j, "}}");
    fkd_log(FKD_LOG_INFO, "wss: request %s (%s) answered %s",
            fkd_wss_loggable(m->id, idl, sizeof idl), fkd_wss_loggable(m->kind, kl, sizeof kl),
            r.code);
    return FKD_OK;
}

enum fkd_err fkd_wss_send_response(struct fkd_wss *w, const struct fkd_wss_msg *m, int *reboot) {
    struct jw j = {w->tx, sizeof w->tx, 0, 0};
    *reboot = 0;
    put(&j, "{\"type\":\"response\",\"id\":");
    put_str(&j, m->id);
    if (strcmp(m->kind, "status") == 0) {
        put(&j, ",\"ok\":true,\"body\":{\"firmware_version\":");
        put_str(&j, w->cfg.fw_version);
        put(&j, ",\"credential_versions\":");
        put_creds(&j, w->cfg.store);
        put(&j, ",\"posture\":");
        put_posture(&j, w->cfg.posture);
        put_ota(w, &j);
        put_rot(w, &j);
        put(&j, "}}");
    } else if (handler_response(w, m, &j, reboot) == FKD_OK) {
        /* answered by the handler */
    } else {
        /* "a device answers any kind it does not know with ok: false and error code
         * unsupported_kind (never by closing)" */
        char msg[FKD_WSS_STR_MAX + 32];
        snprintf(msg, sizeof msg, "no handler for '%s'", m->kind);
        put(&j, ",\"ok\":false,\"error\":{\"code\":\"unsupported_kind\",\"message\":");
        put_str(&j, msg);
        put(&j, "}}");
        char idl[FKD_WSS_STR_MAX];
        fkd_log(FKD_LOG_WARN, "wss: request %s of unknown kind answered unsupported_kind",
                fkd_wss_loggable(m->id, idl, sizeof idl));
    }
    return send_text(w, &j);
}
