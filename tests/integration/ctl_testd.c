/* ctl_testd: the control listener (fkd_ctl) as a stand-alone UDP server for the interop tests,
 * until robot-sim serves it from NVS. Binds 127.0.0.1 on --port (0: the OS picks; the port is
 * printed as "ctl_testd: listening on 127.0.0.1:PORT" and written to --port-file), serves until
 * SIGTERM/SIGINT or --run-ms, then prints its counters as one line "ctl_testd: stats ...".
 *
 *   ctl_testd --psk-hex HEX --identity ID [--next-psk-hex HEX --next-identity ID]
 *             [--plaintext] [--sessions N] [--idle-ms MS] [--port P] [--port-file F]
 *             [--run-ms MS] [--quiet] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/ctl.h"
#include "fleetkey/common.h"

#define MAX_SESSIONS 16

static volatile sig_atomic_t stop;
static int quiet;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void log_line(void *user, enum fkd_ctl_level lvl, const char *line) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    (void)user;
    if (quiet && lvl < FKD_CTL_LOG_WARN) {
        return;
    }
    fprintf(stderr, "%s: %s\n", names[lvl], line);
}

static void status_cb(void *user, struct fkd_ctl_json *w) {
    (void)user;
    fkd_ctl_json_begin(w, "posture");
    fkd_ctl_json_str(w, "build", "development");
    fkd_ctl_json_str(w, "source", "ctl_testd");
    fkd_ctl_json_end(w);
}

static int usage(void) {
    fprintf(stderr, "usage: ctl_testd --psk-hex HEX --identity ID [--next-psk-hex HEX "
                    "--next-identity ID] [--plaintext] [--sessions N] [--idle-ms MS] [--port P] "
                    "[--port-file F] [--run-ms MS] [--quiet]\n");
    return 2;
}

static int load_key(struct fkd_ctl *ctl, enum fkd_ctl_slot slot, const char *hex, const char *id,
                    uint32_t version) {
    uint8_t psk[FKD_CTL_PSK_MAX];
    size_t psk_len = 0;
    int rc = -1;
    if (fk_hex_decode(hex, strlen(hex), psk, sizeof psk, &psk_len, NULL) == FK_OK &&
        fkd_ctl_set_psk(ctl, slot, (const uint8_t *)id, strlen(id), psk, psk_len, version) ==
            FKD_CTL_OK) {
        rc = 0;
    }
    fk_wipe(psk, sizeof psk);
    return rc;
}

static struct fkd_ctl ctl;
static struct fkd_ctl_session sessions[MAX_SESSIONS];
static uint8_t rx[FKD_CTL_RX_MAX];

int main(int argc, char **argv) {
    const char *psk_hex = NULL, *identity = NULL, *next_hex = NULL, *next_id = NULL;
    const char *port_file = NULL;
    unsigned long port = 0, n_sessions = 4, idle_ms = 30000, run_ms = 60000;
    int plaintext = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--plaintext") == 0) {
            plaintext = 1;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
            continue;
        }
        if (v == NULL) {
            return usage();
        }
        i++;
        if (strcmp(a, "--psk-hex") == 0) {
            psk_hex = v;
        } else if (strcmp(a, "--identity") == 0) {
            identity = v;
        } else if (strcmp(a, "--next-psk-hex") == 0) {
            next_hex = v;
        } else if (strcmp(a, "--next-identity") == 0) {
            next_id = v;
        } else if (strcmp(a, "--port-file") == 0) {
            port_file = v;
        } else if (strcmp(a, "--port") == 0) {
            if (fk_parse_ulong(v, 65535, &port) != FK_OK) {
                return usage();
            }
        } else if (strcmp(a, "--sessions") == 0) {
            if (fk_parse_ulong(v, MAX_SESSIONS, &n_sessions) != FK_OK || n_sessions == 0) {
                return usage();
            }
        } else if (strcmp(a, "--idle-ms") == 0) {
            if (fk_parse_ulong(v, 3600000, &idle_ms) != FK_OK) {
                return usage();
            }
        } else if (strcmp(a, "--run-ms") == 0) {
            if (fk_parse_ulong(v, 3600000, &run_ms) != FK_OK) {
                return usage();
            }
        } else {
            return usage();
        }
    }
    fkd_ctl_init(&ctl);
    if (!plaintext) {
        if (psk_hex == NULL || identity == NULL ||
            load_key(&ctl, FKD_CTL_SLOT_CURRENT, psk_hex, identity, 1) != 0) {
            fprintf(stderr, "ctl_testd: need a valid --psk-hex and --identity\n");
            return 2;
        }
        if (next_hex != NULL &&
            (next_id == NULL || load_key(&ctl, FKD_CTL_SLOT_NEXT, next_hex, next_id, 2) != 0)) {
            fprintf(stderr, "ctl_testd: bad --next-psk-hex/--next-identity\n");
            return 2;
        }
    }
    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = plaintext ? FKD_CTL_MODE_PLAINTEXT : FKD_CTL_MODE_DTLS;
    cfg.bind_ip = "127.0.0.1";
    cfg.port = (uint16_t)port;
    cfg.idle_timeout_ms = (uint32_t)idle_ms;
    cfg.hs_timeout_min_ms = 500;
    cfg.hs_timeout_max_ms = 4000;
    cfg.fw_version = "ctl_testd-0.1.0";
    cfg.log = log_line;
    cfg.status = status_cb;
    int rc = fkd_ctl_setup(&ctl, &cfg, sessions, n_sessions, rx, sizeof rx);
    if (rc != FKD_CTL_OK) {
        fprintf(stderr, "ctl_testd: setup: %s\n", fkd_ctl_strerror(rc));
        fkd_ctl_free(&ctl);
        return 1;
    }
    if (plaintext) {
        fprintf(stderr, "error: ctl: no PSK: control channel runs UNENCRYPTED (development)\n");
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("ctl_testd: listening on 127.0.0.1:%u\n", (unsigned)fkd_ctl_port(&ctl));
    fflush(stdout);
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");
        if (f != NULL) {
            fprintf(f, "%u\n", (unsigned)fkd_ctl_port(&ctl));
            fclose(f);
        }
    }
    /* Bounded by time (run_ms) and by count, whichever ends first. */
    uint64_t deadline = fkd_net_now_ms() + run_ms;
    for (unsigned long i = 0; i < 100000000ul && !stop && fkd_net_now_ms() < deadline; i++) {
        if (fkd_ctl_poll(&ctl, 100) < 0) {
            fprintf(stderr, "ctl_testd: socket failed\n");
            break;
        }
    }
    struct fkd_ctl_stats st;
    fkd_ctl_get_stats(&ctl, &st);
    printf("ctl_testd: stats active=%u hwm=%u ok=%u failed=%u hvr=%u dropped=%u busy=%u "
           "requests=%u\n",
           st.active, st.active_hwm, st.handshakes_ok, st.handshakes_failed,
           st.hello_verify_sent, st.dropped, st.busy, st.requests);
    fflush(stdout);
    fkd_ctl_free(&ctl);
    return 0;
}
