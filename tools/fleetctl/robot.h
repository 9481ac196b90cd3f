/* fleetctl robot: the operator's side of the robot control channel (docs/control-protocol.md):
 * a DTLS 1.2 PSK client on OpenSSL that sends one request and prints the one response.
 *
 * The PSK comes from a provisioning manifest (psk_hex, psk_identity) or a hex file; it is kept
 * in one buffer that is wiped before return on every path. Never logs or prints key bytes. */
#ifndef FLEETCTL_ROBOT_H
#define FLEETCTL_ROBOT_H

#include <stddef.h>
#include <stdint.h>

#include "fleetkey/common.h"

#define FLEETCTL_PSK_MAX 64
#define FLEETCTL_ID_MAX 128

struct fleetctl_psk {
    uint8_t psk[FLEETCTL_PSK_MAX];
    size_t psk_len;
    char identity[FLEETCTL_ID_MAX + 1];
};

/* Reads psk_hex and psk_identity from a manifest JSON (at most 64 KiB). FK_OK, FK_E_IO,
 * FK_E_TOOBIG, FK_E_PARSE (diag says which field). The file buffer is wiped. */
FK_MUST_CHECK enum fk_err fleetctl_psk_from_manifest(const char *path, struct fleetctl_psk *out,
                                                     struct fk_diag *diag);
/* Reads a hex PSK (whitespace around it ignored) from a file; identity from the caller. */
FK_MUST_CHECK enum fk_err fleetctl_psk_from_file(const char *path, const char *identity,
                                                 struct fleetctl_psk *out, struct fk_diag *diag);

/* Connects to host:port, completes the handshake, sends request (one line, no newline needed),
 * and writes the response (NUL-terminated, at most resp_size - 1 bytes) into resp. The whole
 * exchange is bounded by timeout_ms. FK_OK, FK_E_ARG, FK_E_IO (socket, name lookup),
 * FK_E_AUTH (handshake refused: diag says why), FK_E_TIMEOUT, FK_E_PROTOCOL. */
FK_MUST_CHECK enum fk_err fleetctl_robot_request(const char *host, const char *port,
                                                 const struct fleetctl_psk *key,
                                                 const char *request, unsigned timeout_ms,
                                                 char *resp, size_t resp_size,
                                                 struct fk_diag *diag);

#endif
