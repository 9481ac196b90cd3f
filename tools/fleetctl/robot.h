/* fleetctl robot: the operator's side of the robot control channel (docs/control-protocol.md):
 * sends one request over fk_ctl_request (fleetkey/ctl.h) and prints the one response.
 *
 * The PSK comes from a provisioning manifest (psk_hex, psk_identity) or a hex file; it is kept
 * in one buffer that is wiped before return on every path. Never logs or prints key bytes. */
#ifndef FLEETCTL_ROBOT_H
#define FLEETCTL_ROBOT_H

#include <stddef.h>
#include <stdint.h>

#include "fleetkey/common.h"
#include "fleetkey/ctl.h"

#define FLEETCTL_PSK_MAX FK_CTL_PSK_MAX
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

#endif
