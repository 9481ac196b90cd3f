/* The DTLS 1.2 PSK control listener.
 *
 * One UDP socket serves every peer. Datagrams are demultiplexed by source address: a known
 * address goes to its session's Mbed TLS context through a one-datagram BIO (the rx buffer is
 * lent to the context for the duration of one call); an unknown address goes through the gate,
 * which parses just enough of the first record to find a ClientHello and its cookie:
 *   - no cookie or a bad one: a HelloVerifyRequest is built here, statelessly, exactly as RFC
 *     6347 4.2.1 and Mbed TLS's own ssl_check_dtls_clihlo_cookie() lay it out, and nothing is
 *     remembered, so a flood of spoofed ClientHellos costs one small reply each and no slot;
 *   - a valid cookie (the peer proved it receives at its address): a free slot is bound to the
 *     address and the same datagram is handed to Mbed TLS, which checks the cookie again.
 * Anything else from an unknown address is dropped and counted.
 *
 * Slots are set up once (mbedtls_ssl_setup reserves the record buffers) and reset after use.
 * Timers are per slot on the port's monotonic clock; fkd_ctl_poll() sleeps until the next
 * deadline at most. Failure reasons are mapped from Mbed TLS codes to words for the log. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fkd/ctl.h"
#include "fkd/net.h"
#include "mbedtls_compat.h"

#define REC_HDR 13 /* DTLS record header */
#define HS_HDR 12  /* DTLS handshake header */
#define MAX_BURST 32

/* ---- logging ------------------------------------------------------------------------- */

static void logf_(struct fkd_ctl *ctl, enum fkd_ctl_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(struct fkd_ctl *ctl, enum fkd_ctl_level lvl, const char *fmt, ...) {
    if (ctl->cfg.log == NULL) {
        return;
    }
    char line[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctl->cfg.log(ctl->cfg.user, lvl, line);
}

/* Per-datagram warnings (garbage, floods) are limited to 10 per 10 s so a flood cannot turn
 * into a log flood; the counters in fkd_ctl_stats still see everything. */
static int log_allowed(struct fkd_ctl *ctl) {
    uint64_t now = fkd_net_now_ms();
    if (now - ctl->log_window_ms > 10000u) {
        ctl->log_window_ms = now;
        ctl->log_window_count = 0;
    }
    return ctl->log_window_count++ < 10;
}

/* A peer-chosen identity in printable form: bytes outside 0x21..0x7e become \xNN. */
static void printable(const unsigned char *in, size_t n, char *out, size_t size) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < size; i++) {
        if (in[i] > 0x20 && in[i] < 0x7f && in[i] != '\\' && in[i] != '\'') {
            out[o++] = (char)in[i];
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[in[i] >> 4];
            out[o++] = hex[in[i] & 15];
        }
    }
    out[o] = '\0';
}

static const char *reason(int ret) {
    return fkd_mbedtls_reason(ret);
}

/* ---- keys ---------------------------------------------------------------------------- */

int fkd_ctl_set_psk(struct fkd_ctl *ctl, enum fkd_ctl_slot slot, const uint8_t *identity,
                    size_t identity_len, const uint8_t *psk, size_t psk_len, uint32_t version) {
    if ((unsigned)slot >= FKD_CTL_SLOT_COUNT || identity == NULL || psk == NULL ||
        identity_len == 0 || identity_len > FKD_CTL_IDENTITY_MAX || psk_len < 16 ||
        psk_len > FKD_CTL_PSK_MAX) {
        return FKD_CTL_E_ARG;
    }
    struct fkd_ctl_key *k = &ctl->keys[slot];
    fkd_ctl_clear_psk(ctl, slot);
    memcpy(k->psk, psk, psk_len);
    k->psk_len = psk_len;
    memcpy(k->identity, identity, identity_len);
    k->identity_len = identity_len;
    k->version = version;
    fkd_ctl_fingerprint(psk, psk_len, k->fpr);
    return FKD_CTL_OK;
}

void fkd_ctl_clear_psk(struct fkd_ctl *ctl, enum fkd_ctl_slot slot) {
    if ((unsigned)slot >= FKD_CTL_SLOT_COUNT) {
        return;
    }
    mbedtls_platform_zeroize(&ctl->keys[slot], sizeof ctl->keys[slot]);
}

/* Mbed TLS PSK callback: picks the key slot whose identity the client named. Identities are
 * public (they travel in clear), so a plain comparison is fine; the key itself is only handed
 * to Mbed TLS. */
static int psk_cb(void *p, mbedtls_ssl_context *ssl, const unsigned char *id, size_t id_len) {
    struct fkd_ctl *ctl = p;
    struct fkd_ctl_session *s = (struct fkd_ctl_session *)(void *)ssl; /* ssl is first */
    printable(id, id_len, s->identity, sizeof s->identity);
    for (int i = 0; i < FKD_CTL_SLOT_COUNT; i++) {
        const struct fkd_ctl_key *k = &ctl->keys[i];
        if (k->psk_len != 0 && k->identity_len == id_len && memcmp(k->identity, id, id_len) == 0) {
            s->slot = i;
            return mbedtls_ssl_set_hs_psk(ssl, k->psk, k->psk_len);
        }
    }
    return -1;
}

/* ---- per-session timer and BIO ------------------------------------------------------- */

static void timer_set(void *p, uint32_t int_ms, uint32_t fin_ms) {
    struct fkd_ctl_session *s = p;
    s->timer_start_ms = fkd_net_now_ms();
    s->timer_int_ms = int_ms;
    s->timer_fin_ms = fin_ms;
}

/* -1 cancelled, 0 running, 1 intermediate passed, 2 final passed (mbedtls_ssl_get_timer_t). */
static int timer_get(void *p) {
    struct fkd_ctl_session *s = p;
    if (s->timer_fin_ms == 0) {
        return -1;
    }
    uint64_t el = fkd_net_now_ms() - s->timer_start_ms;
    if (el >= s->timer_fin_ms) {
        return 2;
    }
    if (el >= s->timer_int_ms) {
        return 1;
    }
    return 0;
}

static int bio_send(void *p, const unsigned char *buf, size_t len) {
    struct fkd_ctl_session *s = p;
    int r = fkd_net_sendto(&s->ctl->sock, &s->peer, buf, len);
    if (r == FKD_NET_E_AGAIN) {
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    return r < 0 ? FKD_MBEDTLS_ERR_NET_SEND_FAILED : r;
}

/* Hands Mbed TLS the one datagram that arrived for this session, whole, once. */
static int bio_recv(void *p, unsigned char *buf, size_t len) {
    struct fkd_ctl_session *s = p;
    if (s->pending == NULL) {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    const uint8_t *src = s->pending;
    size_t n = s->pending_len;
    s->pending = NULL;
    if (n > len) {
        return MBEDTLS_ERR_SSL_WANT_READ; /* larger than a record buffer: drop */
    }
    memcpy(buf, src, n);
    return (int)n;
}

/* ---- sessions ------------------------------------------------------------------------ */

static void session_release(struct fkd_ctl *ctl, struct fkd_ctl_session *s) {
    if (s->state != FKD_CTL_S_FREE && ctl->stats.active > 0) {
        ctl->stats.active--;
    }
    s->state = FKD_CTL_S_FREE;
    s->pending = NULL;
    s->slot = -1;
    s->timer_fin_ms = 0;
    s->identity[0] = '\0';
    memset(&s->peer, 0, sizeof s->peer);
    /* Drops keys, transforms and buffered records; keeps the record buffers. */
    s->need_reset = mbedtls_ssl_session_reset(&s->ssl) != 0;
}

static void session_fail(struct fkd_ctl *ctl, struct fkd_ctl_session *s, int ret) {
    char peer[FKD_NET_ADDR_STR_MAX];
    fkd_net_addr_str(&s->peer, peer, sizeof peer);
    if (ret == MBEDTLS_ERR_SSL_INVALID_MAC) {
        /* Mbed TLS gives up without telling the peer; say why so its user sees "bad record
         * mac" instead of a time-out. */
        (void)mbedtls_ssl_send_alert_message(&s->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                             MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC);
    }
    ctl->stats.handshakes_failed++;
    logf_(ctl, FKD_CTL_LOG_WARN, "ctl: %s: handshake failed: identity '%s': %s (-0x%04x)", peer,
          s->identity[0] ? s->identity : "(none yet)", reason(ret), (unsigned)-ret);
    session_release(ctl, s);
}

/* ---- rotation: retiring a key ------------------------------------------------------------ */

size_t fkd_ctl_close_slot(struct fkd_ctl *ctl, enum fkd_ctl_slot slot) {
    size_t closed = 0;
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        struct fkd_ctl_session *s = &ctl->sessions[i];
        if (s->state == FKD_CTL_S_FREE || s->slot != (int)slot) {
            continue;
        }
        if (s->state == FKD_CTL_S_OPEN) {
            (void)mbedtls_ssl_close_notify(&s->ssl);
        }
        char peer[FKD_NET_ADDR_STR_MAX];
        fkd_net_addr_str(&s->peer, peer, sizeof peer);
        logf_(ctl, FKD_CTL_LOG_INFO, "ctl: %s: session closed: identity '%s': its key was retired",
              peer, s->identity);
        session_release(ctl, s);
        closed++;
    }
    return closed;
}

size_t fkd_ctl_commit_next(struct fkd_ctl *ctl) {
    if (ctl->keys[FKD_CTL_SLOT_NEXT].psk_len == 0) {
        return 0;
    }
    size_t closed = fkd_ctl_close_slot(ctl, FKD_CTL_SLOT_CURRENT);
    ctl->keys[FKD_CTL_SLOT_CURRENT] = ctl->keys[FKD_CTL_SLOT_NEXT];
    fkd_ctl_clear_psk(ctl, FKD_CTL_SLOT_NEXT);
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        if (ctl->sessions[i].slot == FKD_CTL_SLOT_NEXT) {
            ctl->sessions[i].slot = FKD_CTL_SLOT_CURRENT; /* their key is the current one now */
        }
    }
    logf_(ctl, FKD_CTL_LOG_INFO,
          "ctl: next key %s (version %lu) is now current; %zu session(s) "
          "of the retired key closed",
          ctl->keys[FKD_CTL_SLOT_CURRENT].fpr,
          (unsigned long)ctl->keys[FKD_CTL_SLOT_CURRENT].version, closed);
    return closed;
}

static struct fkd_ctl_session *find_session(struct fkd_ctl *ctl, const struct fkd_net_addr *a) {
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        struct fkd_ctl_session *s = &ctl->sessions[i];
        if (s->state != FKD_CTL_S_FREE && fkd_net_addr_equal(&s->peer, a)) {
            return s;
        }
    }
    return NULL;
}

static struct fkd_ctl_session *free_session(struct fkd_ctl *ctl) {
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        struct fkd_ctl_session *s = &ctl->sessions[i];
        if (s->state != FKD_CTL_S_FREE || !s->ready) {
            continue;
        }
        if (s->need_reset) {
            s->need_reset = mbedtls_ssl_session_reset(&s->ssl) != 0;
            if (s->need_reset) {
                continue;
            }
        }
        return s;
    }
    return NULL;
}

static void fill_reqctx(struct fkd_ctl *ctl, const struct fkd_ctl_session *s,
                        struct fkd_ctl_reqctx *rc) {
    memset(rc, 0, sizeof *rc);
    rc->fw_version = ctl->cfg.fw_version;
    rc->uptime_ms = fkd_net_now_ms() - ctl->start_ms;
    rc->mode = ctl->cfg.mode;
    rc->identity = s != NULL ? s->identity : "";
    rc->slot = s != NULL ? s->slot : -1;
    rc->keys = ctl->keys;
    rc->stats = &ctl->stats;
    rc->max_sessions = ctl->cfg.mode == FKD_CTL_MODE_DTLS ? (uint32_t)ctl->n_sessions : 0;
    rc->status = ctl->cfg.status;
    rc->user = ctl->cfg.user;
}

/* Reads every request Mbed TLS has for an open session and answers each. Returns 1 when the
 * datagram turned out to be a ClientHello for a new connection from the same address. */
static int serve_open(struct fkd_ctl *ctl, struct fkd_ctl_session *s) {
    char peer[FKD_NET_ADDR_STR_MAX];
    for (int i = 0; i < MAX_BURST; i++) {
        int ret = mbedtls_ssl_read(&s->ssl, ctl->req, FKD_CTL_REQ_MAX + 1);
        if (ret > 0) {
            /* One request per datagram: a record longer than any request is answered as too
             * long once, and its tail is discarded rather than read as another request. */
            while (mbedtls_ssl_get_bytes_avail(&s->ssl) > 0) {
                (void)mbedtls_ssl_read(&s->ssl, ctl->resp, sizeof ctl->resp);
            }
            struct fkd_ctl_reqctx rc;
            size_t out_len = 0;
            fill_reqctx(ctl, s, &rc);
            fkd_ctl_proto_handle(ctl->req, (size_t)ret, &rc, &ctl->robot, ctl->resp,
                                 sizeof ctl->resp, &out_len);
            ctl->stats.requests++;
            s->last_ms = fkd_net_now_ms();
            int w = mbedtls_ssl_write(&s->ssl, ctl->resp, out_len);
            if (w < 0 && w != MBEDTLS_ERR_SSL_WANT_WRITE) {
                fkd_net_addr_str(&s->peer, peer, sizeof peer);
                logf_(ctl, FKD_CTL_LOG_WARN, "ctl: %s: write failed (-0x%04x)", peer,
                      (unsigned)-w);
                session_release(ctl, s);
                return 0;
            }
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE ||
            ret == MBEDTLS_ERR_SSL_TIMEOUT) {
            return 0;
        }
        if (ret == MBEDTLS_ERR_SSL_CLIENT_RECONNECT) {
            session_release(ctl, s);
            return 1;
        }
        fkd_net_addr_str(&s->peer, peer, sizeof peer);
        if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == 0) {
            logf_(ctl, FKD_CTL_LOG_INFO, "ctl: %s: identity '%s' closed the session", peer,
                  s->identity);
        } else {
            logf_(ctl, FKD_CTL_LOG_WARN, "ctl: %s: identity '%s': session ended: %s (-0x%04x)",
                  peer, s->identity, reason(ret), (unsigned)-ret);
        }
        session_release(ctl, s);
        return 0;
    }
    return 0;
}

/* Advances a session with whatever arrived (s->pending) or with its timer. Returns 1 when the
 * datagram must go through the gate again (client reconnect from the same port). */
static int drive(struct fkd_ctl *ctl, struct fkd_ctl_session *s) {
    int again = 0;
    if (s->state == FKD_CTL_S_HANDSHAKE) {
        int ret = mbedtls_ssl_handshake(&s->ssl);
        if (ret == 0) {
            char peer[FKD_NET_ADDR_STR_MAX];
            fkd_net_addr_str(&s->peer, peer, sizeof peer);
            s->state = FKD_CTL_S_OPEN;
            s->last_ms = fkd_net_now_ms();
            ctl->stats.handshakes_ok++;
            logf_(ctl, FKD_CTL_LOG_INFO, "ctl: %s: identity '%s' authenticated (%s key, %s)",
                  peer, s->identity, s->slot == FKD_CTL_SLOT_NEXT ? "next" : "current",
                  mbedtls_ssl_get_ciphersuite(&s->ssl));
        } else if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            session_fail(ctl, s, ret);
        }
    }
    if (s->state == FKD_CTL_S_OPEN) {
        again = serve_open(ctl, s);
    }
    s->pending = NULL;
    return again;
}

/* ---- the stateless gate -------------------------------------------------------------- */

static uint32_t load24(const uint8_t *p) {
    return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}

int fkd_ctl_hello_cookie(const uint8_t *d, size_t n, const uint8_t **cookie,
                         size_t *cookie_len) {
    /* RFC 6347 4.1: type(1) version(2) epoch(2) sequence_number(6) length(2). */
    if (n < REC_HDR + HS_HDR + 2 + 32 + 1 + 1) {
        return -1;
    }
    if (d[0] != MBEDTLS_SSL_MSG_HANDSHAKE || d[1] != 0xfe || d[3] != 0 || d[4] != 0) {
        return -1;
    }
    size_t rec_len = ((size_t)d[11] << 8) | d[12];
    if (rec_len > n - REC_HDR || rec_len < HS_HDR) {
        return -1;
    }
    const uint8_t *h = d + REC_HDR;
    /* RFC 6347 4.2.2: msg_type(1) length(3) message_seq(2) fragment_offset(3)
     * fragment_length(3). Only a whole ClientHello in one fragment is accepted here. */
    uint32_t msg_len = load24(h + 1);
    if (h[0] != MBEDTLS_SSL_HS_CLIENT_HELLO || load24(h + 6) != 0 || load24(h + 9) != msg_len ||
        msg_len > rec_len - HS_HDR) {
        return -1;
    }
    const uint8_t *b = h + HS_HDR;
    size_t left = msg_len;
    /* client_version(2) random(32) session_id<0..32> cookie<0..2^8-1> */
    if (left < 2 + 32 + 1) {
        return -1;
    }
    size_t sid = b[34];
    if (sid > 32 || sid + 1 > left - 34 - 1) {
        return -1;
    }
    size_t off = 35 + sid;
    size_t clen = b[off];
    if (clen > left - off - 1) {
        return -1;
    }
    *cookie = b + off + 1;
    *cookie_len = clen;
    return 0;
}

/* RFC 6347 4.2.1: answer a ClientHello without a valid cookie with a HelloVerifyRequest and
 * keep no state. The record and handshake headers copy the ClientHello's (sequence numbers
 * included), as Mbed TLS's ssl_check_dtls_clihlo_cookie() does. */
static void send_hello_verify(struct fkd_ctl *ctl, const uint8_t *ch, const struct fkd_net_addr *from) {
    uint8_t out[REC_HDR + HS_HDR + 3 + 64];
    memcpy(out, ch, REC_HDR + HS_HDR);
    out[REC_HDR + HS_HDR] = 0xfe; /* server_version: DTLS 1.0 whatever is negotiated later */
    out[REC_HDR + HS_HDR + 1] = 0xff;
    unsigned char *p = out + REC_HDR + HS_HDR + 3;
    if (mbedtls_ssl_cookie_write(&ctl->cookie, &p, out + sizeof out, from->raw, from->len) != 0) {
        return;
    }
    size_t cookie_len = (size_t)(p - (out + REC_HDR + HS_HDR + 3));
    size_t body = 3 + cookie_len;
    out[REC_HDR + HS_HDR + 2] = (uint8_t)cookie_len;
    out[1] = 0xfe; /* record version DTLS 1.0 for the HelloVerifyRequest */
    out[2] = 0xff;
    out[11] = (uint8_t)((HS_HDR + body) >> 8);
    out[12] = (uint8_t)(HS_HDR + body);
    out[REC_HDR] = MBEDTLS_SSL_HS_HELLO_VERIFY_REQUEST;
    out[REC_HDR + 1] = 0;
    out[REC_HDR + 2] = (uint8_t)(body >> 8);
    out[REC_HDR + 3] = (uint8_t)body;
    /* message_seq copied; fragment_offset is 0 (checked); fragment_length = length */
    out[REC_HDR + 9] = 0;
    out[REC_HDR + 10] = (uint8_t)(body >> 8);
    out[REC_HDR + 11] = (uint8_t)body;
    if (fkd_net_sendto(&ctl->sock, from, out, REC_HDR + HS_HDR + body) >= 0) {
        ctl->stats.hello_verify_sent++;
    }
}

static void gate(struct fkd_ctl *ctl, size_t n, const struct fkd_net_addr *from) {
    const uint8_t *cookie = NULL;
    size_t cookie_len = 0;
    char peer[FKD_NET_ADDR_STR_MAX];
    if (fkd_ctl_hello_cookie(ctl->rx, n, &cookie, &cookie_len) != 0) {
        ctl->stats.dropped++;
        if (log_allowed(ctl)) {
            fkd_net_addr_str(from, peer, sizeof peer);
            /* A DTLS record (content type 20..23, version 0xfe..) for no session is usually
             * a late alert or retransmission of a session already closed. */
            int dtls = n >= REC_HDR && ctl->rx[0] >= 20 && ctl->rx[0] <= 23 && ctl->rx[1] == 0xfe;
            logf_(ctl, dtls ? FKD_CTL_LOG_INFO : FKD_CTL_LOG_WARN,
                  "ctl: %s: dropped %zu-byte datagram: %s", peer, n,
                  dtls ? "DTLS record for no session (late or stale)"
                       : "not a DTLS ClientHello (plaintext?)");
        }
        return;
    }
    if (cookie_len == 0 ||
        mbedtls_ssl_cookie_check(&ctl->cookie, cookie, cookie_len, from->raw, from->len) != 0) {
        if (cookie_len != 0) {
            ctl->stats.dropped++; /* stale or forged cookie: challenge again */
        }
        send_hello_verify(ctl, ctl->rx, from);
        return;
    }
    struct fkd_ctl_session *s = free_session(ctl);
    if (s == NULL) {
        ctl->stats.busy++;
        if (log_allowed(ctl)) {
            fkd_net_addr_str(from, peer, sizeof peer);
            logf_(ctl, FKD_CTL_LOG_WARN, "ctl: %s: all %zu sessions busy, ClientHello ignored",
                  peer, ctl->n_sessions);
        }
        return;
    }
    s->peer = *from;
    s->state = FKD_CTL_S_HANDSHAKE;
    s->slot = -1;
    s->identity[0] = '\0';
    s->last_ms = fkd_net_now_ms();
    ctl->stats.active++;
    if (ctl->stats.active > ctl->stats.active_hwm) {
        ctl->stats.active_hwm = ctl->stats.active;
    }
    if (mbedtls_ssl_set_client_transport_id(&s->ssl, from->raw, from->len) != 0) {
        session_release(ctl, s);
        return;
    }
    s->pending = ctl->rx;
    s->pending_len = n;
    (void)drive(ctl, s);
}

/* ---- plaintext mode ------------------------------------------------------------------ */

static void serve_plain(struct fkd_ctl *ctl, size_t n, const struct fkd_net_addr *from) {
    struct fkd_ctl_reqctx rc;
    size_t out_len = 0;
    fill_reqctx(ctl, NULL, &rc);
    fkd_ctl_proto_handle(ctl->rx, n, &rc, &ctl->robot, ctl->resp, sizeof ctl->resp, &out_len);
    ctl->stats.requests++;
    (void)fkd_net_sendto(&ctl->sock, from, ctl->resp, out_len);
}

/* ---- life cycle ---------------------------------------------------------------------- */

void fkd_ctl_init(struct fkd_ctl *ctl) {
    memset(ctl, 0, sizeof *ctl);
    mbedtls_ssl_config_init(&ctl->conf);
    mbedtls_ssl_cookie_init(&ctl->cookie);
    mbedtls_ctr_drbg_init(&ctl->drbg);
    fkd_net_sock_init(&ctl->sock);
}

static int setup_tls(struct fkd_ctl *ctl) {
    int ret = fkd_mbedtls_global_init();
    if (ret == 0) {
        ret = fkd_mbedtls_drbg_seed(&ctl->drbg, "fkd_ctl");
    }
    if (ret == 0) {
        ret = mbedtls_ssl_config_defaults(&ctl->conf, MBEDTLS_SSL_IS_SERVER,
                                          MBEDTLS_SSL_TRANSPORT_DATAGRAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    }
    if (ret == 0) {
        ret = mbedtls_ssl_cookie_setup(&ctl->cookie, mbedtls_ctr_drbg_random, &ctl->drbg);
    }
    if (ret != 0) {
        logf_(ctl, FKD_CTL_LOG_ERROR, "ctl: Mbed TLS setup failed (-0x%04x)", (unsigned)-ret);
        return FKD_CTL_E_CRYPTO;
    }
    /* PSK with AES-GCM/CCM only: AEAD suites, no certificates, no (EC)DHE on a small core. */
    ctl->ciphersuites[0] = MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256;
    ctl->ciphersuites[1] = MBEDTLS_TLS_PSK_WITH_AES_128_CCM;
    ctl->ciphersuites[2] = MBEDTLS_TLS_PSK_WITH_AES_128_CCM_8;
    ctl->ciphersuites[3] = MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384;
    ctl->ciphersuites[4] = 0;
    mbedtls_ssl_conf_ciphersuites(&ctl->conf, ctl->ciphersuites);
    fkd_mbedtls_conf_tls12_only(&ctl->conf); /* DTLS 1.2 only */
    mbedtls_ssl_conf_rng(&ctl->conf, mbedtls_ctr_drbg_random, &ctl->drbg);
    mbedtls_ssl_conf_psk_cb(&ctl->conf, psk_cb, ctl);
    mbedtls_ssl_conf_dtls_cookies(&ctl->conf, mbedtls_ssl_cookie_write, mbedtls_ssl_cookie_check,
                                  &ctl->cookie);
    mbedtls_ssl_conf_handshake_timeout(&ctl->conf, ctl->cfg.hs_timeout_min_ms,
                                       ctl->cfg.hs_timeout_max_ms);
    mbedtls_ssl_conf_dtls_anti_replay(&ctl->conf, MBEDTLS_SSL_ANTI_REPLAY_ENABLED);
    /* A record that fails authentication ends the handshake at once (wrong PSK shows up as a
     * bad MAC on the client's Finished) instead of a silent drop and an 8 s time-out. The cost:
     * a forged record from a peer's address ends that peer's session, which a spoofer could do
     * anyway by answering its handshake first. */
    mbedtls_ssl_conf_dtls_badmac_limit(&ctl->conf, 1);
    return FKD_CTL_OK;
}

int fkd_ctl_setup(struct fkd_ctl *ctl, const struct fkd_ctl_config *cfg,
                  struct fkd_ctl_session *sessions, size_t n, uint8_t *rx, size_t rx_size) {
    if (cfg == NULL || rx == NULL || rx_size < FKD_CTL_RX_MIN ||
        (cfg->mode == FKD_CTL_MODE_DTLS && (sessions == NULL || n == 0))) {
        return FKD_CTL_E_ARG;
    }
    if (cfg->mode == FKD_CTL_MODE_DTLS && ctl->keys[FKD_CTL_SLOT_CURRENT].psk_len == 0) {
        return FKD_CTL_E_NOKEY;
    }
    ctl->cfg = *cfg;
    if (ctl->cfg.idle_timeout_ms == 0) {
        ctl->cfg.idle_timeout_ms = 60000;
    }
    if (ctl->cfg.hs_timeout_min_ms == 0) {
        ctl->cfg.hs_timeout_min_ms = 1000;
    }
    if (ctl->cfg.hs_timeout_max_ms < ctl->cfg.hs_timeout_min_ms) {
        ctl->cfg.hs_timeout_max_ms = 8000;
    }
    if (ctl->cfg.mtu == 0) {
        ctl->cfg.mtu = 1200;
    }
    ctl->rx = rx;
    ctl->rx_size = rx_size;
    ctl->start_ms = fkd_net_now_ms();
    if (fkd_net_udp_bind(&ctl->sock, cfg->bind_ip, cfg->port, &ctl->port) != FKD_NET_OK) {
        logf_(ctl, FKD_CTL_LOG_ERROR, "ctl: cannot bind UDP %s:%u",
              cfg->bind_ip ? cfg->bind_ip : "0.0.0.0", (unsigned)cfg->port);
        return FKD_CTL_E_NET;
    }
    if (cfg->mode == FKD_CTL_MODE_PLAINTEXT) {
        ctl->ready = 1;
        return FKD_CTL_OK;
    }
    int rc = setup_tls(ctl);
    if (rc != FKD_CTL_OK) {
        return rc;
    }
    memset(sessions, 0, n * sizeof *sessions);
    ctl->sessions = sessions;
    ctl->n_sessions = n;
    for (size_t i = 0; i < n; i++) {
        mbedtls_ssl_init(&sessions[i].ssl); /* all of them, so fkd_ctl_free() may free all */
        sessions[i].ctl = ctl;
        sessions[i].slot = -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct fkd_ctl_session *s = &sessions[i];
        int ret = mbedtls_ssl_setup(&s->ssl, &ctl->conf);
        if (ret != 0) {
            logf_(ctl, FKD_CTL_LOG_ERROR, "ctl: session %zu setup failed (-0x%04x)", i,
                  (unsigned)-ret);
            return FKD_CTL_E_CRYPTO;
        }
        s->ready = 1;
        mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
        mbedtls_ssl_set_timer_cb(&s->ssl, s, timer_set, timer_get);
        mbedtls_ssl_set_mtu(&s->ssl, ctl->cfg.mtu);
    }
    ctl->ready = 1;
    return FKD_CTL_OK;
}

uint16_t fkd_ctl_port(const struct fkd_ctl *ctl) {
    return ctl->port;
}

void fkd_ctl_get_stats(const struct fkd_ctl *ctl, struct fkd_ctl_stats *out) {
    *out = ctl->stats;
}

/* Milliseconds until the earliest session deadline (retransmission or idle), capped. */
static uint32_t next_deadline(struct fkd_ctl *ctl, uint32_t cap) {
    uint64_t now = fkd_net_now_ms();
    uint64_t best = cap;
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        const struct fkd_ctl_session *s = &ctl->sessions[i];
        if (s->state == FKD_CTL_S_FREE) {
            continue;
        }
        if (s->timer_fin_ms != 0) {
            uint64_t due = s->timer_start_ms + s->timer_fin_ms;
            best = due <= now ? 0 : (due - now < best ? due - now : best);
        }
        uint64_t idle = s->last_ms + ctl->cfg.idle_timeout_ms;
        best = idle <= now ? 0 : (idle - now < best ? idle - now : best);
    }
    return (uint32_t)best;
}

static void run_timers(struct fkd_ctl *ctl) {
    uint64_t now = fkd_net_now_ms();
    char peer[FKD_NET_ADDR_STR_MAX];
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        struct fkd_ctl_session *s = &ctl->sessions[i];
        if (s->state == FKD_CTL_S_FREE) {
            continue;
        }
        if (now - s->last_ms >= ctl->cfg.idle_timeout_ms) {
            fkd_net_addr_str(&s->peer, peer, sizeof peer);
            if (s->state == FKD_CTL_S_OPEN) {
                logf_(ctl, FKD_CTL_LOG_INFO, "ctl: %s: identity '%s' idle, session closed", peer,
                      s->identity);
                (void)mbedtls_ssl_close_notify(&s->ssl);
                session_release(ctl, s);
            } else {
                session_fail(ctl, s, MBEDTLS_ERR_SSL_TIMEOUT);
            }
            continue;
        }
        if (timer_get(s) == 2) {
            uint64_t started = s->timer_start_ms;
            (void)drive(ctl, s); /* retransmits, or fails with MBEDTLS_ERR_SSL_TIMEOUT */
            if (s->state != FKD_CTL_S_FREE && s->timer_start_ms == started && timer_get(s) == 2) {
                s->timer_fin_ms = 0; /* Mbed TLS did not re-arm it: do not spin */
            }
        }
    }
}

int fkd_ctl_poll(struct fkd_ctl *ctl, uint32_t max_wait_ms) {
    if (!ctl->ready) {
        return FKD_CTL_E_ARG;
    }
    int handled = 0;
    int r = fkd_net_wait(&ctl->sock, next_deadline(ctl, max_wait_ms));
    if (r < 0) {
        return FKD_CTL_E_NET;
    }
    for (int i = 0; r > 0 && i < MAX_BURST; i++) {
        struct fkd_net_addr from;
        int n = fkd_net_recvfrom(&ctl->sock, ctl->rx, ctl->rx_size, &from);
        if (n == FKD_NET_E_AGAIN) {
            break;
        }
        if (n == FKD_NET_E_TOOBIG) {
            ctl->stats.dropped++;
            continue;
        }
        if (n < 0) {
            return FKD_CTL_E_NET;
        }
        handled++;
        if (ctl->cfg.mode == FKD_CTL_MODE_PLAINTEXT) {
            serve_plain(ctl, (size_t)n, &from);
            continue;
        }
        struct fkd_ctl_session *s = find_session(ctl, &from);
        if (s != NULL) {
            s->pending = ctl->rx;
            s->pending_len = (size_t)n;
            if (!drive(ctl, s)) {
                continue;
            }
        }
        gate(ctl, (size_t)n, &from);
    }
    run_timers(ctl);
    return handled;
}

void fkd_ctl_free(struct fkd_ctl *ctl) {
    for (size_t i = 0; i < ctl->n_sessions; i++) {
        struct fkd_ctl_session *s = &ctl->sessions[i];
        if (s->state == FKD_CTL_S_OPEN) {
            (void)mbedtls_ssl_close_notify(&s->ssl);
        }
        mbedtls_ssl_free(&s->ssl);
        mbedtls_platform_zeroize(s, sizeof *s);
    }
    ctl->sessions = NULL;
    ctl->n_sessions = 0;
    mbedtls_ssl_config_free(&ctl->conf);
    mbedtls_ssl_cookie_free(&ctl->cookie);
    mbedtls_ctr_drbg_free(&ctl->drbg);
    fkd_net_close(&ctl->sock);
    fkd_ctl_clear_psk(ctl, FKD_CTL_SLOT_CURRENT);
    fkd_ctl_clear_psk(ctl, FKD_CTL_SLOT_NEXT);
    mbedtls_platform_zeroize(ctl->rx != NULL ? ctl->rx : ctl->req,
                             ctl->rx != NULL ? ctl->rx_size : sizeof ctl->req);
    mbedtls_platform_zeroize(ctl->req, sizeof ctl->req);
    mbedtls_platform_zeroize(ctl->resp, sizeof ctl->resp);
    ctl->ready = 0;
}
