/* fleetctl devices / device ID / ota / ota-status: the admin API of fleetkey-server over mTLS
 * with a PKCS#12 identity (cmd_server.c, cmd_ota.c, docs/server.md, docs/fleetctl.md). */
#ifndef FLEETCTL_SERVER_CMD_H
#define FLEETCTL_SERVER_CMD_H

#include "https.h"

#include <openssl/ssl.h>

/* argv starts at the first global option (--p12 ...) or the command; returns the exit
 * status (0 ok, 1 failure, 2 usage; ota: 3 when --wait ran out). */
int fleetctl_server_main(int argc, char **argv);

/* fleetctl ... ota (--device ID ... | --all) [--wait S | --no-wait] IMAGE, ota-status JOB. */
struct fleetctl_ota_args {
    int status_only;     /* ota-status */
    const char *job;     /* ota-status JOB */
    const char **devices;
    int ndevices;
    int all;
    long wait_s;         /* default 600 */
    long poll_ms;        /* between two reads of the job; default 1000 */
    int no_wait;
    const char *image;
};
/* Parses the arguments after the command word. 0 ok, 2 usage (printed). argv must outlive
 * *a; a->devices is malloc'd (free it). */
int fleetctl_ota_parse(const char *cmd, int argc, char **argv, struct fleetctl_ota_args *a);
/* Runs it. Exit status: 0 every device confirmed (or --no-wait: the job was accepted; ota-
 * status: the job was read), 1 a refusal by the server or some device refused / rolled back /
 * failed, 3 the wait ran out. */
int fleetctl_ota_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                     const struct fleetctl_ota_args *a);

#endif
