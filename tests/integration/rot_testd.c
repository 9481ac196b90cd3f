/* rot_testd: a robot's DTLS control listener under credential rotation, driven by rot_*
 * requests on stdin instead of a control plane (the server side is built separately), for the
 * openssl interop test (rot_interop.sh). It is the device code robot-sim runs, wired the same
 * way: NVS in a flash file, the rotation records (fkd_rot_load), the request handler
 * (fkd_rot_remote_request behind fkd_wss_msg_parse) and the listener following the psk class
 * (fkd_rot_ctl_sync after every request and on every loop).
 *
 *   rot_testd --flash FILE [--init-psk-hex HEX --init-identity ID] [--run-ms MS]
 * --init-*: format FILE (64 KiB of NVS) with that PSK in slot A first. Then it binds 127.0.0.1
 * on a port the OS picks, prints "rot_testd: listening on 127.0.0.1:PORT", and for each stdin
 * line (one wss request message) prints "rot_testd: response {...}" (the body, or the error).
 * Ends at EOF on stdin + 1 s, SIGTERM or --run-ms. Restarting it on the same FILE is a reboot. */
#include "fkd/ctl.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/rot.h"
#include "fkd/rot_remote.h"
#include "fkd/wss.h"
#include "fkd_posix.h"
#include "fleetkey/common.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NVS_SIZE (16u * FKD_FLASH_SECTOR)

static volatile sig_atomic_t stop;
static struct fkd_flash_file file;
static struct fkd_flash flash;
static struct fkd_nvs nvs;
static struct fkd_rot rot;
static struct fkd_rot_remote rem;
static struct fkd_ctl ctl;
static struct fkd_rot_ctl rsync;
static struct fkd_ctl_session sessions[4];
static uint8_t rx[FKD_CTL_RX_MAX];
static char line[FKD_WSS_MSG_MAX + 2];
static size_t line_len;
static char body[FKD_WSS_MSG_MAX];

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void log_line(void *user, enum fkd_log_level lvl, const char *l) {
    (void)user;
    fprintf(stderr, "%s: %s\n", fkd_log_level_name(lvl), l);
}

static void ctl_log(void *user, enum fkd_ctl_level lvl, const char *l) {
    (void)user;
    (void)lvl;
    fprintf(stderr, "ctl: %s\n", l);
}

static void ctl_status(void *user, struct fkd_ctl_json *w) {
    (void)user;
    char st[512];
    if (fkd_rot_state_json(&rot, st, sizeof st) > 0) {
        fkd_ctl_json_raw(w, "rot", st);
    }
}

static void request(const char *msg, size_t len) {
    struct fkd_wss_msg m;
    struct fkd_wss_reply r;
    if (fkd_wss_msg_parse((const uint8_t *)msg, len, &m, NULL) != FKD_OK ||
        m.type != FKD_WSS_MSG_REQUEST) {
        printf("rot_testd: response {\"error\":\"not a request\"}\n");
        return;
    }
    memset(&r, 0, sizeof r);
    r.body = body;
    r.body_cap = sizeof body - 1;
    if (fkd_rot_remote_request(&rem, m.kind, m.has_body ? (const uint8_t *)msg + m.body_off : NULL,
                               m.has_body ? m.body_len : 0, &r) != FKD_WSS_REQ_DONE) {
        printf("rot_testd: response {\"error\":\"unsupported_kind\"}\n");
        return;
    }
    if (r.code[0] != '\0') {
        printf("rot_testd: response {\"error\":\"%s\"}\n", r.code);
    } else {
        body[r.body_len] = '\0';
        printf("rot_testd: response %s\n", body);
    }
    if (fkd_rot_ctl_sync(&rsync, &rot, &ctl) != FKD_OK) {
        fprintf(stderr, "rot_testd: listener sync failed\n");
    }
}

/* Reads what stdin has; each complete line is one request. 1 at EOF. */
static int read_stdin(void) {
    struct pollfd p = {0, POLLIN, 0};
    while (poll(&p, 1, 0) > 0) {
        char c;
        ssize_t n = read(0, &c, 1);
        if (n <= 0) {
            return 1;
        }
        if (c == '\n') {
            request(line, line_len);
            fflush(stdout);
            line_len = 0;
        } else if (line_len < sizeof line - 1) {
            line[line_len++] = c;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL, *psk_hex = NULL, *id = NULL;
    unsigned long run_ms = 60000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--flash") == 0) {
            path = argv[i + 1];
        } else if (strcmp(argv[i], "--init-psk-hex") == 0) {
            psk_hex = argv[i + 1];
        } else if (strcmp(argv[i], "--init-identity") == 0) {
            id = argv[i + 1];
        } else if (strcmp(argv[i], "--run-ms") == 0) {
            if (fk_parse_ulong(argv[i + 1], 600000, &run_ms) != FK_OK) {
                return 2;
            }
        }
    }
    if (path == NULL) {
        fprintf(stderr, "usage: rot_testd --flash FILE [--init-psk-hex HEX --init-identity ID]\n");
        return 2;
    }
    fkd_log_set(log_line, NULL, FKD_LOG_INFO);
    if (fkd_flash_file_open(&file, path, psk_hex != NULL, psk_hex != NULL ? NVS_SIZE : 0, &flash) !=
        FKD_OK) {
        fprintf(stderr, "rot_testd: %s: cannot open\n", path);
        return 2;
    }
    fkd_nvs_init(&nvs);
    if (psk_hex != NULL) {
        uint8_t psk[32];
        size_t pl = 0;
        if (id == NULL ||
            fk_hex_decode(psk_hex, strlen(psk_hex), psk, sizeof psk, &pl, NULL) != FK_OK ||
            pl != 32 || fkd_nvs_format(&nvs, &flash, 0, NVS_SIZE, NULL) != FKD_OK ||
            fkd_nvs_set_blob(&nvs, "security", "dtls_psk", psk, pl) != FKD_OK ||
            fkd_nvs_set_str(&nvs, "security", "psk_id", id) != FKD_OK) {
            fprintf(stderr, "rot_testd: cannot make the factory NVS\n");
            return 2;
        }
        fk_wipe(psk, sizeof psk);
        fkd_nvs_free(&nvs);
        fkd_nvs_init(&nvs);
    }
    fkd_rot_init(&rot);
    fkd_rot_remote_init(&rem);
    fkd_ctl_init(&ctl);
    fkd_rot_ctl_init(&rsync);
    if (fkd_nvs_mount(&nvs, &flash, 0, NVS_SIZE, NULL, NULL) != FKD_OK ||
        fkd_rot_load(&rot, &nvs, 0, 0) != FKD_OK || fkd_rot_remote_setup(&rem, &rot) != FKD_OK ||
        fkd_rot_ctl_sync(&rsync, &rot, &ctl) != FKD_OK) {
        fprintf(stderr, "rot_testd: boot failed\n");
        return 4;
    }
    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = FKD_CTL_MODE_DTLS;
    cfg.bind_ip = "127.0.0.1";
    cfg.hs_timeout_min_ms = 500;
    cfg.hs_timeout_max_ms = 4000;
    cfg.fw_version = "rot_testd-0.1.0";
    cfg.log = ctl_log;
    cfg.status = ctl_status;
    if (fkd_ctl_setup(&ctl, &cfg, sessions, 4, rx, sizeof rx) != FKD_CTL_OK) {
        fprintf(stderr, "rot_testd: listener setup failed\n");
        return 1;
    }
    printf("rot_testd: listening on 127.0.0.1:%u\n", (unsigned)fkd_ctl_port(&ctl));
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    uint64_t deadline = fkd_net_now_ms() + run_ms;
    uint64_t eof_at = 0;
    while (!stop && fkd_net_now_ms() < deadline) {
        if (fkd_ctl_poll(&ctl, 50) < 0) {
            break;
        }
        if (eof_at == 0 && read_stdin()) {
            eof_at = fkd_net_now_ms();
        }
        if (eof_at != 0 && fkd_net_now_ms() - eof_at > 1000) {
            break;
        }
        (void)fkd_rot_poll(&rot, fkd_net_now_ms());
        if (fkd_rot_ctl_sync(&rsync, &rot, &ctl) != FKD_OK) {
            fprintf(stderr, "rot_testd: listener sync failed\n");
        }
    }
    fkd_ctl_free(&ctl);
    fkd_rot_remote_free(&rem);
    fkd_nvs_free(&nvs);
    (void)fkd_flash_file_close(&file);
    printf("rot_testd: stopped\n");
    return 0;
}
