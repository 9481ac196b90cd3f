/* fleetkey ctl: the client side of the robot control channel (docs/control-protocol.md), a
 * DTLS 1.2 PSK client on OpenSSL that sends one request line and returns the one response.
 *
 * Used by `fleetctl robot` and by fleetkey-server to confirm a staged PSK (the robot answers
 * status with "auth_slot":"next" when the handshake used its next PSK). The library never
 * prints and never logs; the PSK is read only by OpenSSL's callback during the handshake and
 * copied nowhere but into OpenSSL's own buffer, which SSL_free cleanses. Thread-safe: every
 * call has its own SSL_CTX and socket, so a worker thread may call it. */
#ifndef FLEETKEY_CTL_H
#define FLEETKEY_CTL_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

/* The longest PSK the robots take (docs/control-protocol.md). */
#define FK_CTL_PSK_MAX 64

/* Connects to host:port (UDP), completes the DTLS 1.2 PSK handshake as identity with psk,
 * sends request (one line, no newline needed, under 255 bytes) and writes the response
 * (NUL-terminated, at most resp_size - 1 bytes) into resp. The whole exchange is bounded by
 * timeout_ms. FK_OK, FK_E_ARG, FK_E_IO (socket, name lookup, nobody listening), FK_E_AUTH
 * (handshake refused: diag says why, with a hint), FK_E_TIMEOUT, FK_E_PROTOCOL. */
FK_MUST_CHECK enum fk_err fk_ctl_request(const char *host, const char *port, const char *identity,
                                         const uint8_t *psk, size_t psk_len, const char *request,
                                         char *resp, size_t resp_size, unsigned timeout_ms,
                                         struct fk_diag *diag);

/* The control plane's check of a staged PSK (docs/wss-protocol.md, rot_commit): a handshake
 * of its own as identity with the staged psk, request "status", and the answer must say
 * "ok":true, "identity" = identity and "auth_slot":"next" (the listener authenticated this
 * session with its next PSK, not the current one). FK_OK when it does; FK_E_PROTOCOL when the
 * robot answered otherwise (diag says what it said: slot and identity, never key material);
 * the errors of fk_ctl_request when no session was made. */
FK_MUST_CHECK enum fk_err fk_ctl_confirm_next(const char *host, const char *port,
                                              const char *identity, const uint8_t *psk,
                                              size_t psk_len, unsigned timeout_ms,
                                              struct fk_diag *diag);

/* The same check with "auth_slot":"current": the robot took psk as its current key (a
 * control plane that lost its confirmation in a kill -9 proves a committed PSK rotation with
 * it). Same returns as fk_ctl_confirm_next. */
FK_MUST_CHECK enum fk_err fk_ctl_confirm_current(const char *host, const char *port,
                                                 const char *identity, const uint8_t *psk,
                                                 size_t psk_len, unsigned timeout_ms,
                                                 struct fk_diag *diag);

/* The check of fk_ctl_confirm_next on an answer already received (resp: a status response).
 * FK_OK or FK_E_PROTOCOL (diag says why). */
FK_MUST_CHECK enum fk_err fk_ctl_status_is_next(const char *resp, const char *identity,
                                                struct fk_diag *diag);

#endif
