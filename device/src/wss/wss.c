/* The device's secure-WebSocket client (fkd/wss.h; protocol: docs/wss-protocol.md).
 *
 * Shape: blocking calls with bounded waits, meant for a task/thread of its own (robot-sim runs
 * it in a thread next to the DTLS listener's poll loop; on the chip it is one FreeRTOS task).
 * Every wait goes through the port (fkd_net_wait / fkd_net_wait_write) in slices of at most
 * 200 ms, so stop() is seen promptly and nothing waits unbounded: TCP connect, TLS handshake
 * and upgrade share connect_timeout_ms; an open connection pings every ping_interval and gives
 * up after two intervals of silence.
 *
 * TLS: mbedTLS client, TLS 1.2 minimum (the library's maximum above it), the device
 * certificate and key from the credential store, authmode REQUIRED against the control-plane
 * CA. The server name is checked twice: mbedtls_ssl_set_hostname(expected host) sets SNI and
 * makes mbedTLS apply its own check, and our verify callback applies the RFC 6125 matcher of
 * wss_proto.c (DNS SANs, CN only without a SAN extension, wildcard only as the whole left-most
 * label, never "*.tld"), which is stricter than mbedTLS's on wildcards. Both must pass. A
 * refusal is logged with the reason taken from the verify flags: bad chain, expired, not yet
 * valid, host mismatch.
 *
 * Memory: the SSL context, configuration, DRBG, parsed certificates and key, the record
 * buffers (mbedtls_ssl_setup, once) and the message buffers stay for the life of the context;
 * between connections only mbedtls_ssl_session_reset runs.
 *
 * Files: this one is the session (setup, the HTTP upgrade, the message loop, reconnects with
 * backoff); wss_tls.c the transport under it (socket <-> mbedTLS, TLS setup, the server
 * certificate check); wss_msg.c the JSON messages the device sends; wss_proto.c (URI, host
 * matching, handshake, UTF-8) and wss_json.c (the message parser) the pure parsers;
 * ws_frame.c the RFC 6455 framing. wss_internal.h joins them. */
#include "fkd/wss.h"

#include "wss_internal.h"

#include "mbedtls_compat.h"

#include <mbedtls/base64.h>
#include <stdio.h>
#include <string.h>

static const char *const reason_names[FKD_WSS_R_COUNT] = {
    "none",
    "configuration",
    "connect failed",
    "TLS handshake failed",
    "bad chain",
    "expired",
    "not yet valid",
    "host mismatch",
    "upgrade refused",
    "closed by server",
    "protocol violation",
    "timeout",
    "I/O error",
    "stopped",
    "rebooting",
    "credential trial",
};

const char *fkd_wss_reason_name(enum fkd_wss_reason r) {
    return (unsigned)r < FKD_WSS_R_COUNT ? reason_names[r] : "unknown";
}

const char *fkd_wss_state_name(enum fkd_wss_state s) {
    static const char *const names[] = {"idle",     "connecting", "open",
                                        "welcomed", "backoff",    "stopped"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

uint32_t fkd_wss_backoff_ms(uint32_t min_ms, uint32_t max_ms, unsigned step, uint32_t rnd) {
    if (min_ms == 0) {
        min_ms = 1;
    }
    if (max_ms < min_ms) {
        max_ms = min_ms;
    }
    uint32_t d = min_ms;
    for (unsigned i = 0; i < step && d < max_ms; i++) {
        d = d > max_ms / 2 ? max_ms : d * 2;
    }
    if (d > max_ms) {
        d = max_ms;
    }
    /* Equal jitter: at least half the delay, so retries stay spread out even with a bad
     * random source, and the other half random so a fleet that lost the server at the same
     * moment does not come back in lockstep. */
    uint32_t half = d / 2;
    return (d - half) + (half > 0 ? rnd % (half + 1) : 0);
}

/* ---- setup ----------------------------------------------------------------------------------- */

void fkd_wss_init(struct fkd_wss *w) {
    memset(w, 0, sizeof *w);
    w->cred_tag = FKD_WSS_TAG_STORE;
    w->ca_tag = FKD_WSS_TAG_STORE;
    fkd_net_sock_init(&w->sock);
    fkd_ws_init(&w->ws);
    mbedtls_ssl_init(&w->ssl);
    mbedtls_ssl_config_init(&w->conf);
    mbedtls_ctr_drbg_init(&w->drbg);
    mbedtls_x509_crt_init(&w->ca);
    mbedtls_x509_crt_init(&w->own);
    mbedtls_pk_init(&w->key);
}

enum fkd_err fkd_wss_setup(struct fkd_wss *w, const struct fkd_wss_config *cfg) {
    enum fkd_err rc = FKD_E_INTERNAL;
    const char *why = NULL;
    if (w == NULL || cfg == NULL || cfg->store == NULL || cfg->cfg == NULL ||
        cfg->posture == NULL || cfg->fw_version == NULL || cfg->fw_version[0] == '\0' ||
        strlen(cfg->fw_version) > 64 || w->setup_done) {
        return FKD_E_ARG;
    }
    w->cfg = *cfg;
    if (w->cfg.connect_timeout_ms == 0) {
        w->cfg.connect_timeout_ms = 10000;
    }
    if (w->cfg.backoff_min_ms == 0) {
        w->cfg.backoff_min_ms = 1000;
    }
    if (w->cfg.backoff_max_ms == 0) {
        w->cfg.backoff_max_ms = 60000;
    }
    if (w->cfg.ping_interval_ms == 0) {
        w->cfg.ping_interval_ms = 30000;
    }
    w->ping_interval_ms = w->cfg.ping_interval_ms;

    const char *uri = cfg->uri != NULL ? cfg->uri : cfg->cfg->wss_uri;
    if (uri == NULL || uri[0] == '\0') {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: CONFIG_MINITRAIN_WSS_URI is not set");
        rc = FKD_E_ARG;
        goto out;
    }
    rc = fkd_wss_uri_parse(uri, strnlen(uri, FKD_CFG_URI_MAX), &w->uri, &why);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: bad URI: %s", why != NULL ? why : "?");
        rc = FKD_E_ARG;
        goto out;
    }
    const char *host = cfg->expected_host != NULL ? cfg->expected_host : cfg->cfg->expected_host;
    if (host == NULL || host[0] == '\0') {
        if (w->uri.host_is_ip) {
            fkd_log(FKD_LOG_ERROR, "wss: not connecting: CONFIG_MINITRAIN_EXPECTED_HOST is not "
                                   "set and the URI names an IP address");
            rc = FKD_E_ARG;
            goto out;
        }
        fkd_log(FKD_LOG_WARN,
                "wss: CONFIG_MINITRAIN_EXPECTED_HOST not set: expecting the URI's "
                "host %s",
                w->uri.host);
        host = w->uri.host;
    }
    size_t hl = strnlen(host, sizeof w->expected_host);
    if (hl == 0 || hl >= sizeof w->expected_host) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: expected host too long");
        rc = FKD_E_ARG;
        goto out;
    }
    memcpy(w->expected_host, host, hl + 1);

    FKD_GUARD(fkd_wss_tls_setup(w, cfg));
    w->setup_done = 1;
    fkd_log(FKD_LOG_INFO, "wss: %s as %s, expecting server %s (client cert from %s, CA from %s)",
            uri, w->device_id, w->expected_host,
            fkd_cred_source_name(fkd_store_info(cfg->store, FKD_CRED_CLIENT_CERT)->source),
            fkd_cred_source_name(fkd_store_info(cfg->store, FKD_CRED_CA_CERT)->source));
    rc = FKD_OK;
out:
    return rc;
}

/* ---- one connection ------------------------------------------------------------------------ */

static void drop(struct fkd_wss *w) {
    fkd_net_close(&w->sock);
    w->pre_len = 0;
    w->pre_off = 0;
}

static enum fkd_wss_reason do_close(struct fkd_wss *w, uint16_t code, const char *why,
                                    enum fkd_wss_reason r) {
    /* best effort: the connection ends whatever the peer does */
    if (fkd_ws_send_close(&w->ws, code, why) != FKD_OK) {
        fkd_log(FKD_LOG_DEBUG, "wss: close frame not sent");
    }
    (void)mbedtls_ssl_close_notify(&w->ssl);
    return r;
}

static enum fkd_wss_reason upgrade(struct fkd_wss *w, uint64_t deadline) {
    uint8_t nonce[16];
    char key[FKD_WSS_KEY_LEN + 1];
    char accept[FKD_WSS_ACCEPT_LEN + 1];
    size_t olen = 0;
    size_t klen = 0;
    /* RFC 6455 4.1: "a randomly selected 16-byte value ... base64-encoded"; from the port's
     * strong source. */
    if (fkd_net_entropy(NULL, nonce, sizeof nonce, &olen) != 0 || olen != sizeof nonce ||
        mbedtls_base64_encode((unsigned char *)key, sizeof key, &klen, nonce, sizeof nonce) != 0 ||
        klen != FKD_WSS_KEY_LEN || fkd_wss_accept(key, klen, accept) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: no random WebSocket key");
        return FKD_WSS_R_IO;
    }
    char port[12] = "";
    if (w->uri.port != FKD_WSS_DEFAULT_PORT) {
        snprintf(port, sizeof port, ":%u", (unsigned)w->uri.port);
    }
    int is6 = strchr(w->uri.host, ':') != NULL;
    int n = snprintf((char *)w->http, sizeof w->http,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"
                     "User-Agent: fleetkey-device\r\n\r\n",
                     w->uri.path, is6 ? "[" : "", w->uri.host, is6 ? "]" : "", port, key,
                     FKD_WSS_SUBPROTOCOL);
    if (n < 0 || (size_t)n >= sizeof w->http) {
        return FKD_WSS_R_CONFIG;
    }
    if (fkd_wss_tls_write_all(w, w->http, (size_t)n, deadline) != 0) {
        fkd_log(FKD_LOG_ERROR, "wss: sending the upgrade request failed");
        return FKD_WSS_R_IO;
    }
    /* Read the response headers; what follows the blank line is the first frame bytes. */
    size_t got = 0;
    size_t end = 0;
    while (end == 0) {
        if (got == sizeof w->http) {
            fkd_log(FKD_LOG_ERROR,
                    "wss: refused: upgrade refused: response headers longer than "
                    "%u bytes",
                    FKD_WSS_HTTP_MAX);
            return FKD_WSS_R_UPGRADE;
        }
        int r = mbedtls_ssl_read(&w->ssl, w->http + got, sizeof w->http - got);
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
            if (fkd_wss_wait_io(w, r, deadline) != 0) {
                if (fkd_wss_stopping(w)) {
                    return FKD_WSS_R_STOPPED;
                }
                fkd_log(FKD_LOG_ERROR, "wss: refused: upgrade refused: no response in time");
                return FKD_WSS_R_TIMEOUT;
            }
            continue;
        }
        if (r <= 0) {
            fkd_log(FKD_LOG_ERROR,
                    "wss: refused: upgrade refused: connection closed during the "
                    "upgrade (%s)",
                    r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ? "by the server"
                                                                     : fkd_mbedtls_reason(r));
            return FKD_WSS_R_UPGRADE;
        }
        size_t from = got >= 3 ? got - 3 : 0;
        got += (size_t)r;
        for (size_t i = from; i + 3 < got; i++) {
            if (memcmp(w->http + i, "\r\n\r\n", 4) == 0) {
                end = i + 4;
                break;
            }
        }
    }
    int status = 0;
    const char *why = NULL;
    enum fkd_err rc = fkd_wss_check_response(w->http, end, accept, &status, &why);
    if (rc == FKD_E_AUTH) {
        fkd_log(FKD_LOG_ERROR, "wss: refused: upgrade refused: HTTP %d%s", status,
                status == 403 ? " (not admitted: unknown, retired or revoked device)" : "");
        return FKD_WSS_R_UPGRADE;
    }
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: refused: upgrade refused: %s", why != NULL ? why : "?");
        return FKD_WSS_R_UPGRADE;
    }
    w->pre_off = end;
    w->pre_len = got;
    return FKD_WSS_R_NONE;
}

static enum fkd_wss_reason handle_text(struct fkd_wss *w) {
    struct fkd_wss_msg m;
    const char *why = NULL;
    if (fkd_wss_msg_parse(w->msg, w->ws.msg_len, &m, &why) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: closing (1007): bad message from the server: %s",
                why != NULL ? why : "?");
        return do_close(w, FKD_WSS_CLOSE_BAD_DATA, "bad message", FKD_WSS_R_PROTOCOL);
    }
    enum fkd_err rc = FKD_OK;
    int reboot = 0;
    switch (m.type) {
    case FKD_WSS_MSG_WELCOME:
        if (m.ping_interval_s != 0) {
            w->ping_interval_ms = m.ping_interval_s * 1000u;
        }
        if (w->state != FKD_WSS_WELCOMED) {
            w->stats.welcomes++;
            w->backoff_step = 0; /* a server that lets us in resets the backoff */
        }
        w->state = FKD_WSS_WELCOMED;
        fkd_log(FKD_LOG_INFO, "wss: welcomed by the server as %s (ping every %u s)", w->device_id,
                (unsigned)(w->ping_interval_ms / 1000u));
        /* Before the next message is read: a status request right after welcome sees what
         * the handler did here (an image confirming itself). */
        if (w->cfg.handler != NULL && w->cfg.handler->welcomed != NULL) {
            w->cfg.handler->welcomed(w->cfg.handler_user);
        }
        break;
    case FKD_WSS_MSG_PING:
        rc = fkd_wss_send_pong(w, &m);
        break;
    case FKD_WSS_MSG_PONG:
        if (w->pongs_this_conn++ == 0) {
            fkd_log(FKD_LOG_INFO, "wss: keep-alive answered (first pong on this connection)");
        }
        w->stats.pongs_received++;
        break;
    case FKD_WSS_MSG_REQUEST:
        w->stats.requests++;
        rc = fkd_wss_send_response(w, &m, &reboot);
        break;
    case FKD_WSS_MSG_ERROR: {
        char cl[FKD_WSS_STR_MAX], ml[FKD_WSS_STR_MAX];
        fkd_log(FKD_LOG_WARN, "wss: server error %s: %s", fkd_wss_loggable(m.code, cl, sizeof cl),
                fkd_wss_loggable(m.message, ml, sizeof ml));
        break;
    }
    default: {
        char tl[FKD_WSS_STR_MAX];
        fkd_log(FKD_LOG_DEBUG, "wss: ignoring a message of type %s",
                fkd_wss_loggable(m.type_str, tl, sizeof tl));
        break;
    }
    }
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: sending failed");
        return FKD_WSS_R_IO;
    }
    if (reboot == 2) {
        /* rotation: "after the response the device closes the connection (1000 "credential
         * trial") and reconnects presenting the staged key and certificate" */
        fkd_log(FKD_LOG_INFO, "wss: closing (1000): credential trial");
        return do_close(w, FKD_WSS_CLOSE_NORMAL, "credential trial", FKD_WSS_R_TRIAL);
    }
    if (reboot) {
        /* "After sending the response the device closes the connection with 1000
         * "rebooting" and reboots into the new image" */
        fkd_log(FKD_LOG_INFO, "wss: closing (1000): rebooting");
        return do_close(w, FKD_WSS_CLOSE_NORMAL, "rebooting", FKD_WSS_R_REBOOT);
    }
    return FKD_WSS_R_NONE;
}

static enum fkd_wss_reason serve(struct fkd_wss *w) {
    uint64_t now = fkd_net_now_ms();
    uint64_t opened = now;
    w->last_rx_ms = now;
    w->last_ping_ms = now;
    for (;;) {
        if (fkd_wss_stopping(w)) {
            return do_close(w, FKD_WSS_CLOSE_GOING_AWAY, "device stopping", FKD_WSS_R_STOPPED);
        }
        if (w->cfg.handler != NULL && w->cfg.handler->tick != NULL &&
            w->cfg.handler->tick(w->cfg.handler_user)) {
            fkd_log(FKD_LOG_INFO, "wss: closing (1000): credential trial over, reconnecting");
            return do_close(w, FKD_WSS_CLOSE_NORMAL, "credential trial", FKD_WSS_R_TRIAL);
        }
        now = fkd_net_now_ms();
        if (w->state != FKD_WSS_WELCOMED && now - opened >= w->cfg.connect_timeout_ms) {
            fkd_log(FKD_LOG_ERROR, "wss: no welcome within %u ms",
                    (unsigned)w->cfg.connect_timeout_ms);
            return do_close(w, FKD_WSS_CLOSE_POLICY, "no welcome", FKD_WSS_R_TIMEOUT);
        }
        if (now - w->last_rx_ms >= 2ull * w->ping_interval_ms + w->cfg.connect_timeout_ms) {
            fkd_log(FKD_LOG_ERROR, "wss: nothing from the server for %llu ms",
                    (unsigned long long)(now - w->last_rx_ms));
            return do_close(w, FKD_WSS_CLOSE_GOING_AWAY, "no answer", FKD_WSS_R_TIMEOUT);
        }
        if (w->state == FKD_WSS_WELCOMED && now - w->last_ping_ms >= w->ping_interval_ms) {
            w->last_ping_ms = now;
            if (fkd_wss_send_ping(w) != FKD_OK) {
                fkd_log(FKD_LOG_ERROR, "wss: sending a ping failed");
                return FKD_WSS_R_IO;
            }
            w->stats.pings_sent++;
        }
        enum fkd_ws_event ev = fkd_ws_read(&w->ws);
        enum fkd_wss_reason r = FKD_WSS_R_NONE;
        switch (ev) {
        case FKD_WS_AGAIN: {
            if (mbedtls_ssl_get_bytes_avail(&w->ssl) > 0 || w->pre_off < w->pre_len) {
                continue;
            }
            uint64_t next = w->last_ping_ms + w->ping_interval_ms;
            uint32_t slice = next > now && next - now < FKD_WSS_SLICE_MS ? (uint32_t)(next - now)
                                                                         : FKD_WSS_SLICE_MS;
            if (fkd_net_wait(&w->sock, slice) < 0) {
                return FKD_WSS_R_IO;
            }
            continue;
        }
        case FKD_WS_TEXT:
            w->last_rx_ms = fkd_net_now_ms();
            r = handle_text(w);
            break;
        case FKD_WS_BINARY:
            fkd_log(FKD_LOG_ERROR, "wss: closing (1003): binary message from the server");
            return do_close(w, FKD_WSS_CLOSE_UNSUPPORTED, "binary frame", FKD_WSS_R_PROTOCOL);
        case FKD_WS_PING:
            w->last_rx_ms = fkd_net_now_ms();
            if (fkd_ws_send(&w->ws, FKD_WS_OP_PONG, w->ws.ctl, w->ws.ctl_len) != FKD_OK) {
                return FKD_WSS_R_IO;
            }
            break;
        case FKD_WS_PONG:
            w->last_rx_ms = fkd_net_now_ms();
            break;
        case FKD_WS_CLOSE: {
            char reason[64];
            size_t rl = w->ws.ctl_len > 2 ? w->ws.ctl_len - 2 : 0;
            size_t o = 0;
            for (size_t i = 0; i < rl && o + 1 < sizeof reason; i++) {
                unsigned char c = w->ws.ctl[2 + i];
                reason[o++] = c >= 0x20 && c < 0x7F ? (char)c : '?';
            }
            reason[o] = '\0';
            fkd_log(FKD_LOG_WARN, "wss: server closed the connection: %u %s",
                    (unsigned)w->ws.close_code, reason);
            /* 5.5.1: answer with a close carrying the same status code */
            uint16_t code = w->ws.close_code == 1005 ? FKD_WSS_CLOSE_NORMAL : w->ws.close_code;
            return do_close(w, code, "", FKD_WSS_R_CLOSED);
        }
        case FKD_WS_FAIL:
            fkd_log(FKD_LOG_ERROR, "wss: closing (%u): %s", (unsigned)w->ws.close_code,
                    w->ws.why != NULL ? w->ws.why : "?");
            return do_close(w, w->ws.close_code, w->ws.why, FKD_WSS_R_PROTOCOL);
        case FKD_WS_EOF:
        default:
            if (w->io_ret == 0 || w->io_ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
                fkd_log(FKD_LOG_WARN, "wss: the server closed the TLS connection");
                return FKD_WSS_R_CLOSED;
            }
            fkd_log(FKD_LOG_ERROR, "wss: connection lost (-0x%04x)", (unsigned)-w->io_ret);
            return FKD_WSS_R_IO;
        }
        if (r != FKD_WSS_R_NONE) {
            return r;
        }
    }
}

enum fkd_wss_reason fkd_wss_connect_and_serve(struct fkd_wss *w) {
    if (w == NULL || !w->setup_done) {
        return FKD_WSS_R_CONFIG;
    }
    enum fkd_wss_reason r = FKD_WSS_R_NONE;
    w->stats.attempts++;
    w->state = FKD_WSS_CONNECTING;
    w->host_mismatch = 0;
    w->io_ret = 0;
    w->pongs_this_conn = 0;
    drop(w);
    if (fkd_wss_tls_credentials(w) != FKD_OK) {
        r = FKD_WSS_R_CONFIG;
        goto out;
    }
    int ret = mbedtls_ssl_session_reset(&w->ssl);
    if (ret == 0) {
        ret = mbedtls_ssl_set_hostname(&w->ssl, w->expected_host); /* SNI + mbedTLS's check */
    }
    if (ret != 0 || fkd_ws_reset(&w->ws) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: out of memory for a new connection");
        r = FKD_WSS_R_IO;
        goto out;
    }
    uint64_t deadline = fkd_net_now_ms() + w->cfg.connect_timeout_ms;
    int nr = fkd_net_tcp_connect(&w->sock, w->uri.host, w->uri.port, w->cfg.connect_timeout_ms);
    if (nr != FKD_NET_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: connect to %s port %u failed: %s", w->uri.host,
                (unsigned)w->uri.port,
                nr == FKD_NET_E_ARG       ? "host does not resolve"
                : nr == FKD_NET_E_TIMEOUT ? "timed out"
                                          : "refused or unreachable");
        r = FKD_WSS_R_CONNECT;
        goto out;
    }
    for (;;) {
        ret = mbedtls_ssl_handshake(&w->ssl);
        if (ret == 0) {
            break;
        }
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            r = fkd_wss_tls_refused(w, ret);
            goto out;
        }
        if (fkd_wss_wait_io(w, ret, deadline) != 0) {
            if (fkd_wss_stopping(w)) {
                r = FKD_WSS_R_STOPPED;
            } else {
                fkd_log(FKD_LOG_ERROR, "wss: refused: TLS handshake failed: timed out");
                r = FKD_WSS_R_TIMEOUT;
            }
            goto out;
        }
    }
    r = upgrade(w, deadline);
    if (r != FKD_WSS_R_NONE) {
        goto out;
    }
    w->stats.connects++;
    w->state = FKD_WSS_OPEN;
    fkd_log(FKD_LOG_INFO, "wss: connected to %s:%u%s (%s, %s), server certificate names %s",
            w->uri.host, (unsigned)w->uri.port, w->uri.path, mbedtls_ssl_get_version(&w->ssl),
            mbedtls_ssl_get_ciphersuite(&w->ssl), w->expected_host);
    if (fkd_wss_send_hello(w) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: sending hello failed");
        r = FKD_WSS_R_IO;
        goto out;
    }
    fkd_log(FKD_LOG_INFO, "wss: hello sent (device %s)", w->device_id);
    r = serve(w);
out:
    drop(w);
    w->stats.last_error = r;
    w->state = FKD_WSS_IDLE;
    return r;
}

enum fkd_wss_reason fkd_wss_run(struct fkd_wss *w) {
    enum fkd_wss_reason r = FKD_WSS_R_CONFIG;
    if (w == NULL || !w->setup_done) {
        return r;
    }
    for (;;) {
        if (fkd_wss_stopping(w)) {
            r = FKD_WSS_R_STOPPED;
            break;
        }
        r = fkd_wss_connect_and_serve(w);
        if (r == FKD_WSS_R_REBOOT) {
            break; /* the caller reboots the device; no reconnect from this image */
        }
        if (r == FKD_WSS_R_STOPPED || fkd_wss_stopping(w)) {
            r = FKD_WSS_R_STOPPED;
            break;
        }
        if (r == FKD_WSS_R_TRIAL) {
            continue; /* a credential trial begins or ends: connect again at once */
        }
        if (w->cfg.max_attempts != 0 && w->stats.attempts >= w->cfg.max_attempts) {
            fkd_log(FKD_LOG_WARN, "wss: giving up after %u attempts (last: %s)", w->stats.attempts,
                    fkd_wss_reason_name(r));
            break;
        }
        uint32_t rnd = 0;
        (void)mbedtls_ctr_drbg_random(&w->drbg, (unsigned char *)&rnd, sizeof rnd);
        uint32_t delay =
            fkd_wss_backoff_ms(w->cfg.backoff_min_ms, w->cfg.backoff_max_ms, w->backoff_step, rnd);
        if (w->backoff_step < 31) {
            w->backoff_step++;
        }
        w->stats.last_backoff_ms = delay;
        w->state = FKD_WSS_BACKOFF;
        fkd_log(FKD_LOG_INFO, "wss: reconnecting in %u ms (%s)", (unsigned)delay,
                fkd_wss_reason_name(r));
        uint64_t until = fkd_net_now_ms() + delay;
        for (;;) {
            uint64_t now = fkd_net_now_ms();
            if (now >= until || fkd_wss_stopping(w)) {
                break;
            }
            fkd_net_sleep_ms(until - now < FKD_WSS_SLICE_MS ? (uint32_t)(until - now)
                                                            : FKD_WSS_SLICE_MS);
        }
    }
    w->state = FKD_WSS_STOPPED;
    return r;
}

void fkd_wss_get_stats(const struct fkd_wss *w, struct fkd_wss_stats *out) {
    *out = w->stats;
}

void fkd_wss_free(struct fkd_wss *w) {
    if (w == NULL) {
        return;
    }
    drop(w);
    fkd_ws_free(&w->ws);
    mbedtls_ssl_free(&w->ssl);
    mbedtls_ssl_config_free(&w->conf);
    mbedtls_ctr_drbg_free(&w->drbg);
    mbedtls_x509_crt_free(&w->ca);
    mbedtls_x509_crt_free(&w->own);
    mbedtls_pk_free(&w->key); /* mbedTLS zeroizes the private key */
    fkd_wipe(w->msg, sizeof w->msg);
    fkd_wipe(w->tx, sizeof w->tx);
    fkd_wipe(w->http, sizeof w->http);
    fkd_wss_init(w);
}
