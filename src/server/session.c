/* Device sessions: see session_internal.h.
 *
 * WebSocket messages are bounded (FK_WSS_MAX_MESSAGE) and reassembled into a buffer that is
 * only allocated when a message arrives in several pieces; outgoing messages wait in a short
 * per-connection queue (session_io.c) whose overflow closes that connection. */
#include "session_internal.h"

#include "rot_internal.h"

#include "auth_internal.h"
#include "jobs_internal.h"
#include "oauth_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int fk_srv_close_codes[8] = {1000, 1001, 1003, 1007, 1008, 1009, 1011, 0};
static int close_index(int code) {
    for (int i = 0; i < 7; i++) {
        if (fk_srv_close_codes[i] == code) {
            return i;
        }
    }
    return 7;
}

/* ---- WebSocket sessions ----------------------------------------------------------------- */

/* Logs and counts a close once: 0 the first time, -1 when s is already closing. */
static int close_note(struct session *s, int code, const char *why, const char *detail) {
    if (s->closing) {
        return -1;
    }
    s->closing = 1;
    fk_log(code == FK_WSS_CLOSE_GOING_AWAY ? FK_LOG_INFO : FK_LOG_WARN,
           "server: %s %s: closing %d (%s)%s%s", s->peer, s->id[0] ? s->id : "?", code, why,
           detail != NULL ? ": " : "", detail != NULL ? detail : "");
    s->srv->closes[close_index(code)]++;
    return 0;
}

/* A close decided while handling a received message: lws sends the frame and ends the
 * connection (one connection at a time, so its close timers cost little). */
static int close_now(struct session *s, struct lws *wsi, int code, const char *why,
                     const char *detail) {
    if (close_note(s, code, why, detail) != 0) {
        return -1;
    }
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
    return -1;
}

/* A scheduled close (fk_srv_schedule_close: shutdown, idle, revocation, full queue), at the
 * writable callback. The frame is written here instead of by lws_close_reason + -1 because
 * lws then waits for the peer's answer with two timers per connection (PENDING_TIMEOUT_
 * CLOSE_SEND, then _CLOSE_ACK) in its one sorted timer list, and each insert walks that list
 * from its head: closing N connections at once (1001 to every device at shutdown, a CRL that
 * revokes thousands) cost O(N^2), ~25 s at 19,900 devices. Here the peer's answering close
 * ends the connection (LWS_CALLBACK_WS_PEER_INITIATED_CLOSE), and one that does not answer
 * is dropped FK_SRV_CLOSE_WAIT s later (the tick calls fk_srv_close_overdue): no lws timer. */
static int send_close(struct session *s, struct lws *wsi) {
    if (s->close_sent) {
        return time(NULL) - s->close_sent_at >= FK_SRV_CLOSE_WAIT ? -1 : 0;
    }
    if (close_note(s, s->close_code, s->close_reason, NULL) != 0) {
        return -1;
    }
    /* lws' public API frames no close (lws_close_reason is the way, and brings the timers),
     * so the frame is built here and written raw. RFC 6455 5.2: FIN + opcode 0x8, a server's
     * frame is unmasked, 7-bit length; 5.5: a control frame carries <= 125 bytes; 5.5.1: the
     * 2-byte code, then the reason. */
    uint8_t frame[LWS_PRE + 2 + 125];
    uint8_t *f = frame + LWS_PRE;
    size_t n = strlen(s->close_reason);
    n = n < 123 ? n : 123;
    f[0] = 0x88;
    f[1] = (uint8_t)(2 + n);
    f[2] = (uint8_t)(s->close_code >> 8);
    f[3] = (uint8_t)(s->close_code & 0xff);
    memcpy(f + 4, s->close_reason, n);
    if (lws_write(wsi, f, 4 + n, LWS_WRITE_RAW) < (int)(4 + n)) {
        return -1;
    }
    s->close_sent = 1;
    s->close_sent_at = time(NULL);
    return 0;
}

static int on_hello(struct session *s, struct lws *wsi, const struct fk_wss_msg *m) {
    struct fk_server *srv = s->srv;
    if (s->hello_done) {
        return close_now(s, wsi, FK_WSS_CLOSE_POLICY, "second hello", NULL);
    }
    if (strcmp(m->device_id, s->id) != 0) {
        return close_now(s, wsi, FK_WSS_CLOSE_POLICY, "device_id is not the certificate's",
                         m->device_id);
    }
    struct fk_inv_presence *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return close_now(s, wsi, FK_WSS_CLOSE_INTERNAL, "internal error", "out of memory");
    }
    /* confirm_upgrade refused ids that do not fit an inventory id. */
    snprintf(p->device_id, sizeof p->device_id, "%.*s", (int)sizeof p->device_id - 1, s->id);
    snprintf(p->peer, sizeof p->peer, "%s", s->peer);
    snprintf(p->firmware_version, sizeof p->firmware_version, "%s", m->firmware_version);
    snprintf(p->credential_versions, sizeof p->credential_versions, "%s", m->credential_versions);
    snprintf(p->posture, sizeof p->posture, "%s", m->posture);
    snprintf(p->ota, sizeof p->ota, "%s", m->ota_json);
    int first = 0;
    int changed = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_inventory_device_seen(srv->inv, p, &first, &changed, &d);
    free(p);
    if (rc == FK_OK && (first || changed)) {
        char detail[FK_WSS_MAX_MESSAGE + 256];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "peer", s->peer);
        cJSON_AddStringToObject(o, "firmware_version", m->firmware_version);
        cJSON_AddStringToObject(o, "build", m->posture_build);
        if (!cJSON_PrintPreallocated(o, detail, (int)sizeof detail, 0)) {
            snprintf(detail, sizeof detail, "{}");
        }
        cJSON_Delete(o);
        rc = fk_inventory_audit_append(srv->inv, "fleetkey-server",
                                       first ? "device.connected" : "device.posture_changed", s->id,
                                       detail, &d);
    }
    if (rc != FK_OK) {
        char msg[600];
        fk_diag_format(&d, msg, sizeof msg);
        return close_now(s, wsi, FK_WSS_CLOSE_INTERNAL, "internal error", msg);
    }
    s->hello_done = 1;
    fk_log(FK_LOG_INFO, "server: %s %s: hello, firmware %s, %s build%s", s->peer, s->id,
           m->firmware_version, m->posture_build, first ? " (first connection)" : "");
    char now[21];
    fk_time_rfc3339((long long)time(NULL), now);
    cJSON *w = cJSON_CreateObject();
    cJSON_AddStringToObject(w, "type", "welcome");
    cJSON_AddStringToObject(w, "device_id", s->id);
    cJSON_AddStringToObject(w, "server_time", now);
    cJSON_AddNumberToObject(w, "ping_interval", srv->cfg.ping_interval);
    cJSON_AddNumberToObject(w, "max_message", FK_WSS_MAX_MESSAGE);
    if (fk_srv_enqueue_json(s, wsi, w) != 0) {
        return -1;
    }
    s->ota = m->ota;
    fk_srv_hello_ota(s);
    fk_srv_rot_hello(s, m);
    return fk_srv_push_next(s);
}

static int on_message_in(struct session *s, struct lws *wsi, const uint8_t *buf, size_t len) {
    static struct fk_wss_msg m; /* 8 KiB: one thread, so one static instead of the stack */
    int code = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    s->srv->msgs_in++;
    if (s->mobile) {
        return fk_srv_mobile_message(s, wsi, buf, len);
    }
    if (fk_wss_msg_parse(buf, len, &m, &code, &d) != FK_OK) {
        return close_now(s, wsi, code,
                         code == FK_WSS_CLOSE_TOO_BIG ? "message too big" : "invalid payload",
                         d.msg);
    }
    if (!s->hello_done && m.type != FK_WSS_HELLO) {
        return close_now(s, wsi, FK_WSS_CLOSE_POLICY, "hello must come first", m.type_name);
    }
    switch (m.type) {
    case FK_WSS_HELLO:
        return on_hello(s, wsi, &m);
    case FK_WSS_PING: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "pong");
        if (m.has_id) {
            cJSON_AddNumberToObject(o, "id", (double)m.id);
        }
        return fk_srv_enqueue_json(s, wsi, o) == 0 ? 0 : -1;
    }
    case FK_WSS_PONG:
        return 0;
    case FK_WSS_RESPONSE:
        if (s->pending[0] == '\0' && s->late[0] != '\0' && strcmp(m.req_id, s->late) == 0 &&
            s->late_rot_act != ROT_ACT_NONE) {
            /* The answer to a rot_* request given up on (server_internal.h, late): rot.c
             * still checks that it answers the delivery under way. */
            s->late[0] = '\0';
            s->rot_act = s->late_rot_act;
            s->rot_cls = s->late_rot_cls;
            s->srv->late_responses++;
            fk_log(FK_LOG_INFO, "server: %s %s: late response %s taken", s->peer, s->id, m.req_id);
            fk_srv_push_response(s, &m);
            return fk_srv_push_next(s);
        }
        if (s->pending[0] == '\0' || strcmp(m.req_id, s->pending) != 0) {
            fk_log(FK_LOG_DEBUG, "server: %s: response %s to no outstanding request", s->id,
                   m.req_id);
            return 0;
        }
        s->srv->responses++;
        fk_log(s->pending_act == FK_OTA_ACT_CHUNK ? FK_LOG_DEBUG : FK_LOG_INFO,
               "server: %s %s: response %s: %s", s->peer, s->id, m.req_id, m.ok ? "ok" : "refused");
        s->pending[0] = '\0';
        fk_srv_push_response(s, &m);
        return fk_srv_push_next(s);
    case FK_WSS_OTHER:
    default: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "error");
        cJSON_AddStringToObject(o, "code", "unknown_type");
        cJSON_AddStringToObject(o, "message", "message type not known to fleetkey.v1");
        cJSON_AddStringToObject(o, "ref", m.type_name);
        return fk_srv_enqueue_json(s, wsi, o) == 0 ? 0 : -1;
    }
    }
}

/* One message's inventory writes (hello: last seen + audit; rot answers: credential states +
 * audit) commit together, before anything it queued can be written (fk_srv_group_begin). */
static int on_message(struct session *s, struct lws *wsi, const uint8_t *buf, size_t len) {
    int opened = fk_srv_group_begin(s->srv);
    int r = on_message_in(s, wsi, buf, len);
    (void)fk_srv_group_end(s->srv, opened, s->id); /* failed: closes what has a queue */
    return r;
}

static int on_receive(struct session *s, struct lws *wsi, const uint8_t *in, size_t len) {
    if (s->close_sent) {
        return 0; /* RFC 6455 5.5.1: we are closing; what the peer sent meanwhile is moot */
    }
    s->last_rx = time(NULL);
    if (lws_frame_is_binary(wsi)) {
        return close_now(s, wsi, FK_WSS_CLOSE_UNSUPPORTED, "binary frames not accepted", NULL);
    }
    int first = lws_is_first_fragment(wsi);
    int final = lws_is_final_fragment(wsi);
    size_t remaining = lws_remaining_packet_payload(wsi);
    if (first) {
        s->rx_len = 0;
    }
    /* The frame header already says how much is still coming: refuse an oversized frame at
     * its first piece instead of reading it all. */
    if (len > FK_WSS_MAX_MESSAGE || remaining > FK_WSS_MAX_MESSAGE - len ||
        s->rx_len > FK_WSS_MAX_MESSAGE - len - remaining) {
        char detail[96];
        snprintf(detail, sizeof detail, "%zu bytes and more announced (max %u)",
                 s->rx_len + len + remaining, FK_WSS_MAX_MESSAGE);
        return close_now(s, wsi, FK_WSS_CLOSE_TOO_BIG, "message too big", detail);
    }
    if (first && final) {
        return on_message(s, wsi, in, len);
    }
    if (s->rx == NULL) {
        s->rx = malloc(FK_WSS_MAX_MESSAGE);
        if (s->rx == NULL) {
            return close_now(s, wsi, FK_WSS_CLOSE_INTERNAL, "internal error", "out of memory");
        }
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!final) {
        return 0;
    }
    int r = on_message(s, wsi, s->rx, s->rx_len);
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
    return r;
}

static void session_free(struct session *s) {
    while (s->q_head != NULL) {
        struct outmsg *m = s->q_head;
        s->q_head = m->next;
        free(m);
    }
    s->q_tail = NULL;
    s->q_n = 0;
    free(s->rx);
    s->rx = NULL;
}

int fk_srv_session_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len) {
    struct session *s = user;
    struct fk_server *srv = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        memset(s, 0, sizeof *s);
        enum id_kind kind = fk_srv_wsi_identity(wsi, s->id);
        if (kind == ID_MOBILE) {
            return fk_srv_mobile_open(srv, s, wsi);
        }
        if (kind != ID_DEVICE) {
            return -1; /* cannot happen: the upgrade was refused before; s->srv stays NULL,
                          so CLOSED does not unlink a session that was never linked */
        }
        s->srv = srv;
        s->wsi = wsi;
        lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
        s->opened = s->last_rx = time(NULL);
        s->next = srv->sessions;
        if (srv->sessions != NULL) {
            srv->sessions->prev = s;
        }
        srv->sessions = s;
        fk_srv_session_index(s);
        srv->ws_open++;
        fk_log(FK_LOG_DEBUG, "server: %s %s: WebSocket open", s->peer, s->id);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return on_receive(s, wsi, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->close_code != 0) {
            return send_close(s, wsi);
        }
        struct outmsg *m = s->q_head;
        if (m == NULL) {
            return 0;
        }
        if (lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int)m->len) {
            return -1;
        }
        srv->msgs_out++;
        s->q_head = m->next;
        if (s->q_head == NULL) {
            s->q_tail = NULL;
        }
        s->q_n--;
        free(m);
        if (s->q_head != NULL) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* The answer to our close frame: done (nonzero: lws closes without echoing it). A
         * close the peer started gets lws' echo as before. */
        return s->close_sent ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (s->mobile) {
            fk_srv_mobile_closed(s);
        } else if (s->srv != NULL) {
            fk_srv_push_closed(s);
            if (s->prev != NULL) {
                s->prev->next = s->next;
            } else {
                srv->sessions = s->next;
            }
            if (s->next != NULL) {
                s->next->prev = s->prev;
            }
            fk_srv_session_unindex(s);
            srv->ws_open--;
            fk_log(FK_LOG_DEBUG, "server: %s %s: WebSocket closed", s->peer, s->id);
        }
        session_free(s);
        s->srv = NULL;
        return 0;
    default:
        return 0;
    }
}
