/* Pieces shared by the wss client's files (device/src/wss); not part of the public contract
 * (fkd/wss.h). wss.c is the session (setup, upgrade, the message loop, reconnects), wss_tls.c
 * the transport under it (socket, mbedTLS, server certificate), wss_msg.c the messages the
 * device sends; wss_proto.c and wss_json.c the pure parsers. None allocates. */
#ifndef FKD_WSS_INTERNAL_H
#define FKD_WSS_INTERNAL_H

#include "fkd/wss.h"

#include <stddef.h>
#include <stdint.h>

/* ASCII helpers of the pure parsers (wss_proto.c, wss_json.c): no locale, no table. */
static inline int fkd_wss_lower(int c) {
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static inline int fkd_wss_is_digit(int c) {
    return c >= '0' && c <= '9';
}

static inline int fkd_wss_is_hex(int c) {
    return fkd_wss_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The longest single wait: stop() is seen within this many milliseconds. */
#define FKD_WSS_SLICE_MS 200u

/* 1 when the caller's stop callback asks the client to stop. Inline: the session (wss.c) and
 * the TLS transport (wss_tls.c) both poll it, and the transport must not call up into the
 * session. */
static inline int fkd_wss_stopping(const struct fkd_wss *w) {
    return w->cfg.stop != NULL && w->cfg.stop(w->cfg.user);
}

/* ---- wss_tls.c ---- */

/* The TLS half of fkd_wss_setup, after the URI and the expected host are set: parses the CA,
 * the client certificate and key from cfg->store, configures TLS and sets up the SSL context
 * and the frame layer over it. FKD_OK, FKD_E_NOTFOUND (a credential missing), FKD_E_POLICY
 * (production build without the client certificate and key from NVS), FKD_E_CRYPTO,
 * FKD_E_NOSPACE; each failure is logged. */
enum fkd_err fkd_wss_tls_setup(struct fkd_wss *w, const struct fkd_wss_config *cfg);
/* Before a connection: asks the handler which client credentials to present and parses them
 * again when they changed (credential rotation). FKD_OK; FKD_E_CRYPTO (logged: they do not
 * parse or do not match; the previous ones are gone, the attempt fails). */
enum fkd_err fkd_wss_tls_credentials(struct fkd_wss *w);

/* Waits, at most until deadline and in slices of FKD_WSS_SLICE_MS, for the socket to be ready
 * for what ret (MBEDTLS_ERR_SSL_WANT_READ / _WRITE) asks. 0 go on, -1 deadline, stop or error. */
int fkd_wss_wait_io(struct fkd_wss *w, int ret, uint64_t deadline);

/* Writes all of buf through TLS before deadline. 0 or -1. */
int fkd_wss_tls_write_all(struct fkd_wss *w, const uint8_t *buf, size_t len, uint64_t deadline);

/* Maps a failed handshake's mbedTLS code (and the verify flags) to the reason, and logs why
 * the connection was refused. */
enum fkd_wss_reason fkd_wss_tls_refused(struct fkd_wss *w, int ret);

/* ---- wss_msg.c ---- */

/* A copy of s into buf (cap bytes, NUL-terminated) safe for the log; returns buf. */
const char *fkd_wss_loggable(const char *s, char *buf, size_t cap);

/* The device's messages, each one text frame: hello (identity, firmware, credentials, posture,
 * the handler's ota state), ping (next id), pong (echoing m's id), and the response to the
 * request m (status, the handler's answer, or unsupported_kind; *reboot set when the handler
 * asks for a reboot after it is sent). FKD_OK, FKD_E_NOSPACE (larger than FKD_WSS_MSG_MAX),
 * or the frame layer's error. */
enum fkd_err fkd_wss_send_hello(struct fkd_wss *w);
enum fkd_err fkd_wss_send_ping(struct fkd_wss *w);
enum fkd_err fkd_wss_send_pong(struct fkd_wss *w, const struct fkd_wss_msg *m);
enum fkd_err fkd_wss_send_response(struct fkd_wss *w, const struct fkd_wss_msg *m, int *reboot);

#endif
