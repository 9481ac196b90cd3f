/* fleetctl devices / device ID / ota / ota-status / rotate: the admin API of fleetkey-server over
 * mTLS with a PKCS#12 identity (cmd_server.c, cmd_ota.c, cmd_rotate.c, docs/server.md,
 * docs/fleetctl.md). */
#ifndef FLEETCTL_SERVER_CMD_H
#define FLEETCTL_SERVER_CMD_H

#include "https.h"

#include <openssl/ssl.h>

/* argv starts at the first global option (--p12 ...) or the command; returns the exit
 * status (0 ok, 1 failure, 2 usage; ota: 3 when --wait ran out). */
int fleetctl_server_main(int argc, char **argv);

/* fleetctl ... ota (--device ID ... | --all) [--wait S | --no-wait] IMAGE, ota-status JOB. */
struct fleetctl_ota_args {
    int status_only; /* ota-status */
    const char *job; /* ota-status JOB */
    const char **devices;
    int ndevices;
    int all;
    long wait_s;  /* default 600 */
    long poll_ms; /* between two reads of the job; default 1000 */
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

/* fleetctl ... rotate plan|start|pause|resume|abort|force|status (cmd_rotate.c). */
struct fleetctl_rotate_args {
    const char *sub;  /* the subcommand */
    const char *plan; /* rot-NNNNNN, or NULL (status: the newest plan) */
    const char **devices;
    int ndevices;
    int all;
    const char *classes, *waves;
    long max_failure_pct, timeout_s, retries; /* -1: the server's default */
    long wait_s;                              /* status --wait; -1: show once */
    long poll_ms;                             /* default 1000 */
};
/* Parses the arguments after "rotate". 0 ok, 2 usage (printed), 1 out of memory. argv must
 * outlive *a; a->devices is malloc'd (free it). */
int fleetctl_rotate_parse(int argc, char **argv, struct fleetctl_rotate_args *a);
/* Runs it. Exit status: 0 done (plan/start/...: the server accepted; status without --wait:
 * the plan was read), 1 a refusal or, with --wait, the plan aborted or paused (threshold or an
 * operator), 3 --wait ran out. */
int fleetctl_rotate_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                        const struct fleetctl_rotate_args *a);

/* fleetctl ... dashboard --listen HOST:PORT (cmd_dashboard.c). */
struct fleetctl_dash_args {
    const char *listen; /* as given */
    char host[64];      /* a loopback address (checked) */
    unsigned port;      /* 0: any free port (printed) */
};
/* Parses the arguments after "dashboard". 0 ok, 2 usage (printed: also a --listen address
 * that is not loopback). argv must outlive *a. */
int fleetctl_dashboard_parse(int argc, char **argv, struct fleetctl_dash_args *a);
/* Serves the dashboard proxy until SIGINT/SIGTERM; prints its URL on stdout first. 0 after a
 * signal, 1 when it cannot listen. */
int fleetctl_dashboard_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s,
                           const struct fleetctl_dash_args *a);
/* fleetctl ... incident ota-key-compromised (cmd_incident.c, docs/incident-response.md). */
struct fleetctl_incident_args {
    const char *inventory, *old_key, *new_key, *image, *state, *out;
    const char **force; /* --force-device, malloc'd (free it) */
    int nforce;
    long wait_s;  /* bound of each wait for confirmations; default 300 */
    long poll_ms; /* default 500 */
};
/* Parses the arguments after "incident". 0 ok, 2 usage (printed), 1 out of memory. */
int fleetctl_incident_parse(int argc, char **argv, struct fleetctl_incident_args *a);
/* Runs the plan. Exit status: 0 every device covered and the old key retired, 3 retired but
 * some devices not covered (listed), 1 stopped at a gate or failed (re-run continues). */
int fleetctl_incident_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                          const struct fleetctl_incident_args *a);
/* fleetctl ... login|token|whoami|logout (cmd_token.c, docs/fleetctl.md "OAuth2 tokens"). */
struct fleetctl_token_args {
    const char *cmd;
    const char *store;     /* the encrypted token store; NULL: ~/.config/fleetkey/token-store */
    const char *pass_file; /* the store's passphrase (scrypt) ... */
    const char *key_file;  /* ... or a 32-byte key file */
    const char *scope;     /* login: the scopes to ask for (default: all allowed) */
    long long lead_s;      /* refresh this long before expiry (default 12 h) */
};
/* 1 when cmd is one of these commands. */
int fleetctl_token_cmd(const char *cmd);
/* Parses the arguments after the command word. 0 ok, 2 usage (printed). */
int fleetctl_token_parse(const char *cmd, int argc, char **argv, struct fleetctl_token_args *a);
/* Runs it. 0 ok, 1 failure (printed, naming the file or the server's error). */
int fleetctl_token_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                       const struct fleetctl_token_args *a);

#endif
