/* fleetctl: the operator's command line. Thin: parse arguments, call the code that does the
 * work, map its error to an exit code (0 ok, 1 failure, 2 usage; docs/fleetctl.md).
 * Subcommands: `robot` (DTLS control channel to one robot); `devices`, `device`, `ota`,
 * `ota-status` (fleetkey-server's admin API, cmd_server.c / cmd_ota.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetkey/common.h"
#include "fleetkey/ctl.h"
#include "robot.h"
#include "server_cmd.h"

#define EXIT_USAGE 2

static void usage_robot(FILE *f) {
    fprintf(f, "usage: fleetctl robot --host HOST [--port PORT] (--keys MANIFEST.json | "
               "--psk-file FILE --identity ID)\n"
               "                      [--timeout SECONDS] ping | status | move DX DY\n"
               "  --port     UDP port of the robot's control listener (default 5684)\n"
               "  --keys     provisioning manifest with psk_hex and psk_identity\n"
               "  --psk-file file holding the PSK in hex, with --identity\n"
               "  --timeout  bound on the whole exchange, 1..300 s (default 5)\n"
               "exit status: 0 ok, 1 failure (handshake, timeout, error reply), 2 usage\n");
}

static void usage(FILE *f) {
    fprintf(f, "usage: fleetctl <command> [options]\ncommands:\n"
               "  robot   send one control command to a robot over DTLS-PSK\n"
               "  devices, device ID   fleetkey-server's admin API (docs/server.md):\n"
               "          fleetctl --p12 F.p12 --password-file F --server https://HOST:PORT\n"
               "                   --ca CA.pem (devices | device ID)\n"
               "  ota, ota-status JOB  push a signed update through fleetkey-server and follow\n"
               "          it: fleetctl --p12 ... ota (--device ID ... | --all) [--wait S]\n"
               "          IMAGE.bin (docs/fleetctl.md)\n"
               "  rotate  a credential rotation plan: fleetctl --p12 ... rotate\n"
               "          plan|start|pause|resume|abort|force|status (docs/fleetctl.md)\n"
               "  dashboard  the fleet dashboard in a local browser: fleetctl --p12 ...\n"
               "          dashboard --listen 127.0.0.1:PORT (docs/operations.md)\n"
               "  incident  the emergency path for a compromised OTA signing key: fleetctl\n"
               "          --p12 ... incident ota-key-compromised (docs/incident-response.md)\n"
               "  login, token, whoami, logout  OAuth2 tokens bound to the certificate, kept\n"
               "          in an encrypted store: fleetctl --p12 ... login (docs/oauth.md)\n");
    usage_robot(f);
}

/* A decimal integer in [lo, hi] spanning the whole string. */
static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    if (s == NULL || s[0] == '\0') {
        return -1;
    }
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int cmd_robot(int argc, char **argv) {
    const char *host = NULL, *port = "5684", *keys = NULL, *psk_file = NULL, *identity = NULL;
    long timeout_s = 5;
    int i = 0;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_robot(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fleetctl robot: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        long tmp = 0;
        if (strcmp(a, "--host") == 0) {
            host = v;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_long(v, 1, 65535, &tmp) != 0) {
                fprintf(stderr, "fleetctl robot: --port: expected 1..65535\n");
                return EXIT_USAGE;
            }
            port = v;
        } else if (strcmp(a, "--keys") == 0) {
            keys = v;
        } else if (strcmp(a, "--psk-file") == 0) {
            psk_file = v;
        } else if (strcmp(a, "--identity") == 0) {
            identity = v;
        } else if (strcmp(a, "--timeout") == 0) {
            if (parse_long(v, 1, 300, &timeout_s) != 0) {
                fprintf(stderr, "fleetctl robot: --timeout: expected 1..300 seconds\n");
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "fleetctl robot: unknown option %s\n", a);
            usage_robot(stderr);
            return EXIT_USAGE;
        }
    }
    if (host == NULL || (keys == NULL) == (psk_file == NULL) ||
        (psk_file != NULL && identity == NULL) || (keys != NULL && identity != NULL)) {
        fprintf(stderr, "fleetctl robot: need --host and either --keys or --psk-file with "
                        "--identity\n");
        usage_robot(stderr);
        return EXIT_USAGE;
    }
    char request[96];
    int nargs = argc - i;
    const char *cmd = nargs > 0 ? argv[i] : "";
    if (strcmp(cmd, "ping") == 0 && nargs == 1) {
        snprintf(request, sizeof request, "ping");
    } else if (strcmp(cmd, "status") == 0 && nargs == 1) {
        snprintf(request, sizeof request, "status");
    } else if (strcmp(cmd, "move") == 0 && nargs == 3) {
        long dx = 0, dy = 0;
        if (parse_long(argv[i + 1], -1000, 1000, &dx) != 0 ||
            parse_long(argv[i + 2], -1000, 1000, &dy) != 0) {
            fprintf(stderr, "fleetctl robot: move: DX and DY must be integers in -1000..1000\n");
            return EXIT_USAGE;
        }
        snprintf(request, sizeof request, "move %ld %ld", dx, dy);
    } else {
        fprintf(stderr, "fleetctl robot: expected ping, status or move DX DY\n");
        usage_robot(stderr);
        return EXIT_USAGE;
    }

    struct fleetctl_psk key;
    struct fk_diag diag;
    char resp[2048];
    char msg[1024];
    fk_diag_init(&diag);
    enum fk_err rc = keys != NULL ? fleetctl_psk_from_manifest(keys, &key, &diag)
                                  : fleetctl_psk_from_file(psk_file, identity, &key, &diag);
    if (rc == FK_OK) {
        rc = fk_ctl_request(host, port, key.identity, key.psk, key.psk_len, request, resp,
                            sizeof resp, (unsigned)timeout_s * 1000u, &diag);
    }
    fk_wipe(&key, sizeof key);
    if (rc != FK_OK) {
        fk_diag_format(&diag, msg, sizeof msg);
        fprintf(stderr, "fleetctl robot: %s\n", msg[0] ? msg : fk_strerror(rc));
        return 1;
    }
    fputs(resp, stdout);
    if (resp[0] != '\0' && resp[strlen(resp) - 1] != '\n') {
        fputc('\n', stdout);
    }
    /* The robot answered, but with an error: the command did not happen. */
    if (strncmp(resp, "pong", 4) != 0 && strstr(resp, "\"ok\":true") == NULL) {
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "robot") == 0) {
        return cmd_robot(argc - 2, argv + 2);
    }
    /* fleetctl [--p12 ... --server ...] devices | device ID: the server's admin API. */
    if (strncmp(argv[1], "--", 2) == 0 || strcmp(argv[1], "devices") == 0 ||
        strcmp(argv[1], "device") == 0 || strcmp(argv[1], "ota") == 0 ||
        strcmp(argv[1], "ota-status") == 0 || strcmp(argv[1], "rotate") == 0 ||
        strcmp(argv[1], "dashboard") == 0 || strcmp(argv[1], "incident") == 0 ||
        fleetctl_token_cmd(argv[1])) {
        return fleetctl_server_main(argc - 1, argv + 1);
    }
    fprintf(stderr, "fleetctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
