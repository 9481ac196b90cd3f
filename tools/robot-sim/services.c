/* ======================================================================================
 * START_SERVICES: the place where robot-sim starts the robot's network services.
 *
 * Owner of the body below: the DTLS-PSK control listener (issue 4, section 4: device/src/ctl/,
 * fkd/ctl.h). It sets the listener up in static memory with the PSK and identity the
 * credential store loaded from NVS (security/dtls_psk, security/psk_id), in the mode policy
 * decided, and serves until SIGTERM/SIGINT (or --run-ms). The boot in main.c has already
 * enforced policy: it never calls this function when the boot was refused.
 *
 * Options (the ones main.c did not take):
 *   --ctl-port P    UDP port (default: CONFIG_MINITRAIN_DTLS_PORT, 5684; 0 = any free port)
 *   --ctl-bind IP   address to bind (default 0.0.0.0)
 *   --run-ms MS     stop after MS milliseconds (tests; default: until a signal)
 * (robot-sim --help lists these with the boot options.)
 * Rotation (issue 14): with the rotation records loaded at boot, the listener's keys come from
 * the psk class (fkd_rot_ctl_sync: current, and the staged PSK as next during a trial) and
 * follow it on every loop: at commit the next key becomes current and the sessions of the
 * retired one are closed. The loop also applies the trial time limit (fkd_rot_poll).
 *   --self-test-timeout-ms MS   (issue 7) a running image still pending verification that is
 *                   not welcomed by the control plane within MS of boot (default 60000) fails
 *                   its self-test: marked invalid, and the robot reboots into the previous slot
 * Prints "robot-sim: control listener on udp IP:PORT (MODE)" once it listens.
 *
 * Reboots (issue 7): after a successful ota_finish over the wss channel, and after a failed
 * self-test, start_services stops everything and returns ROBOT_SIM_REBOOT; main.c then
 * re-executes robot-sim with its original arguments (same pid), which boots the new slot.
 * ====================================================================================== */
#include "ota_cmd.h" /* issue 7: the running image, its self-test */
#include "robot_sim.h"
#include "wss_service.h" /* wss client (issue 6, section 3): its own thread, see there */

#include "fkd/ctl.h"
#include "fkd/net.h"
#include "fleetkey/common.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FW_VERSION "robot-sim 0.1.0"

/* File-scope state, the two signal flags: a signal handler gets no context pointer, and these
 * flags are all it touches (the listener itself lives in rs->ctl). */
static volatile sig_atomic_t stop;
static volatile sig_atomic_t button; /* issue 17: SIGUSR1, the re-provisioning button */

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void on_button(int sig) {
    (void)sig;
    button = 1;
}

void robot_sim_button_arm(void) {
    signal(SIGUSR1, on_button);
}

void robot_sim_stop_all(void) {
    stop = 1;
}

int robot_sim_stop_requested(void) {
    return stop != 0;
}

static void ctl_log(void *user, enum fkd_ctl_level lvl, const char *line) {
    (void)user;
    static const enum fkd_log_level map[] = {FKD_LOG_DEBUG, FKD_LOG_INFO, FKD_LOG_WARN,
                                             FKD_LOG_ERROR};
    fkd_log(map[lvl], "%s", line);
}

/* `status` gets the posture and where the credentials came from (fingerprints only). */
static void ctl_status(void *user, struct fkd_ctl_json *w) {
    static const enum fkd_cred shown[] = {FKD_CRED_DTLS_PSK, FKD_CRED_OTA_PUBKEY,
                                          FKD_CRED_CLIENT_CERT, FKD_CRED_WIFI_PASSWORD};
    const struct robot_sim *rs = user;
    char posture[512];
    if (fkd_posture_json(&rs->posture, posture, sizeof posture) < sizeof posture) {
        fkd_ctl_json_raw(w, "posture", posture);
    }
    fkd_ctl_json_begin(w, "credentials");
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
        const struct fkd_cred_info *in = fkd_store_info(&rs->store, shown[i]);
        fkd_ctl_json_begin(w, fkd_cred_name(shown[i]));
        fkd_ctl_json_str(w, "source", fkd_cred_source_name(in->source));
        fkd_ctl_json_str(w, "fpr", in->fpr);
        fkd_ctl_json_end(w);
    }
    fkd_ctl_json_end(w);
}

/* The version the robot reports: the running app image's, else the simulator's own. */
static const char *fw_version(struct robot_sim *rs) {
    const struct fkd_ota_boot *b = robot_sim_ota_running(rs);
    if (b != NULL && b->slot >= 0 && b->app.version[0] != '\0') {
        return b->app.version;
    }
    return FW_VERSION;
}

/* The slot the next boot runs after an update or a rollback: the other one. */
static int other_slot(struct robot_sim *rs) {
    const struct fkd_ota_boot *b = robot_sim_ota_running(rs);
    return b != NULL && b->slot == 0 ? 1 : 0;
}

int start_services(struct robot_sim *rs, int argc, char **argv) {
    unsigned long port = rs->posture.dtls_port;
    unsigned long run_ms = 0;
    unsigned long self_test_ms = 60000;
    uint64_t booted_ms = fkd_net_now_ms();
    const char *bind_ip = "0.0.0.0";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--ctl-port") == 0 && v != NULL && fk_parse_ulong(v, 65535, &port) == FK_OK) {
            i++;
        } else if (strcmp(a, "--ctl-bind") == 0 && v != NULL) {
            bind_ip = v;
            i++;
        } else if (strcmp(a, "--run-ms") == 0 && v != NULL &&
                   fk_parse_ulong(v, 86400000ul, &run_ms) == FK_OK) {
            i++;
        } else if (strcmp(a, "--self-test-timeout-ms") == 0 && v != NULL &&
                   fk_parse_ulong(v, 86400000ul, &self_test_ms) == FK_OK && self_test_ms > 0) {
            i++;
        } else if (robot_sim_wss_option(rs, argc, argv, i) > 0) { /* --wss-*: wss_service.h */
            i += robot_sim_wss_option(rs, argc, argv, i) - 1;
        } else {
            fprintf(stderr, "robot-sim: unknown or incomplete option %s\n", a);
            return 2;
        }
    }
    if (rs->posture.listener == FKD_LISTENER_REFUSED) {
        fkd_log(FKD_LOG_ERROR, "services: control listener not started (policy: dtls-required)");
        return 0;
    }

    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bind_ip = bind_ip;
    cfg.port = (uint16_t)port;
    cfg.fw_version = fw_version(rs);
    cfg.log = ctl_log;
    cfg.status = ctl_status;
    cfg.user = rs;
    fkd_ctl_init(&rs->ctl.ctl);
    fkd_rot_ctl_init(&rs->ctl.rot_sync);
    if (rs->posture.listener == FKD_LISTENER_DTLS && rs->rot_loaded &&
        fkd_rot_ctl_sync(&rs->ctl.rot_sync, &rs->rot, &rs->ctl.ctl) == FKD_OK) {
        /* The keys of the psk rotation class: current, and next during a trial. */
        cfg.mode = FKD_CTL_MODE_DTLS;
    } else if (rs->posture.listener == FKD_LISTENER_DTLS) {
        const uint8_t *psk = NULL;
        const char *identity = NULL;
        if (fkd_store_psk(&rs->store, &psk, &identity) != FKD_OK ||
            fkd_ctl_set_psk(&rs->ctl.ctl, FKD_CTL_SLOT_CURRENT, (const uint8_t *)identity,
                            strlen(identity), psk, FKD_PSK_LEN, 1) != FKD_CTL_OK) {
            fkd_log(FKD_LOG_ERROR, "services: policy chose DTLS but the PSK is unusable");
            fkd_ctl_free(&rs->ctl.ctl);
            return 1;
        }
        cfg.mode = FKD_CTL_MODE_DTLS;
    } else {
        /* Seed 004, development: "Can boot without PSK (control channel unencrypted, logged
         * as error)". */
        fkd_log(FKD_LOG_ERROR, "services: no valid DTLS PSK: control channel runs UNENCRYPTED "
                               "(development build only)");
        cfg.mode = FKD_CTL_MODE_PLAINTEXT;
    }
    int rc = fkd_ctl_setup(&rs->ctl.ctl, &cfg, rs->ctl.sessions, ROBOT_SIM_CTL_SESSIONS, rs->ctl.rx,
                           sizeof rs->ctl.rx);
    if (rc != FKD_CTL_OK) {
        fkd_log(FKD_LOG_ERROR, "services: control listener: %s", fkd_ctl_strerror(rc));
        fkd_ctl_free(&rs->ctl.ctl);
        return 1;
    }
    /* The posture (hello, status) names the port the listener really has: with --ctl-port 0
     * only the socket knows it, and the control plane's PSK check dials it. */
    rs->posture.dtls_port = fkd_ctl_port(&rs->ctl.ctl);
    const char *mode = cfg.mode == FKD_CTL_MODE_DTLS ? "dtls-psk" : "plaintext";
    fkd_log(FKD_LOG_INFO, "services: control listener on udp %s:%u (%s, %d sessions)", bind_ip,
            (unsigned)fkd_ctl_port(&rs->ctl.ctl), mode, ROBOT_SIM_CTL_SESSIONS);
    if (rs->name == NULL) { /* a fleet's robots are counted, not listed (fleet.c) */
        printf("robot-sim: control listener on udp %s:%u (%s)\n", bind_ip,
               (unsigned)fkd_ctl_port(&rs->ctl.ctl), mode);
        fflush(stdout);
    }

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    /* ---- wss client (issue 6, section 3): runs in its own thread next to this loop ---- */
    (void)robot_sim_wss_start(rs, fw_version(rs)); /* a failure is logged; DTLS keeps running */
    uint64_t deadline = run_ms != 0 ? fkd_net_now_ms() + run_ms : UINT64_MAX;
    int code = 0;
    int pending = robot_sim_ota_pending(rs);
    int rot_sync_failed = 0;
    if (pending) {
        fkd_log(FKD_LOG_INFO,
                "ota: self-test: waiting up to %lu ms for the control plane's "
                "welcome",
                self_test_ms);
    }
    /* A datagram ends the wait at once; the period only paces the housekeeping below. A
     * fleet's thousands of listener threads on two cores would spend the machine on waking up
     * five times a second, so a fleet robot looks once a second. */
    const int poll_ms = rs->name != NULL ? 1000 : 200;
    while (!stop && fkd_net_now_ms() < deadline) {
        if (fkd_ctl_poll(&rs->ctl.ctl, poll_ms) < 0) {
            fkd_log(FKD_LOG_ERROR, "services: control socket failed");
            code = 1;
            break;
        }
        /* ---- credential rotation: trial time limit; the listener follows the psk class ---- */
        if (rs->file.mem.dead) {
            code = ROBOT_SIM_POWER_CUT; /* --power-cut-at-write: the robot is off */
            break;
        }
        if (rs->rot_loaded && cfg.mode == FKD_CTL_MODE_DTLS) {
            pthread_mutex_lock(&rs->rot_lock);
            if (!rs->wss.started) {
                (void)fkd_rot_poll(&rs->rot, fkd_net_now_ms()); /* else the wss tick does */
            }
            enum fkd_err sr = fkd_rot_ctl_sync(&rs->ctl.rot_sync, &rs->rot, &rs->ctl.ctl);
            pthread_mutex_unlock(&rs->rot_lock);
            if (sr != FKD_OK && !rot_sync_failed) {
                fkd_log(FKD_LOG_ERROR, "services: listener keys not updated: %s", fkd_strerror(sr));
            }
            rot_sync_failed = sr != FKD_OK;
        }
        if (button) { /* issue 17: SIGUSR1, the re-provisioning button */
            button = 0;
            fkd_log(FKD_LOG_WARN, "wifi: button pressed: leaving station mode for the portal");
            code = ROBOT_SIM_PORTAL;
            break;
        }
        /* ---- OTA (issue 7): reboot into a new image; self-test deadline ---- */
        if (robot_sim_wss_reboot_requested(rs)) {
            code = ROBOT_SIM_REBOOT;
            break;
        }
        if (pending && !robot_sim_wss_welcomed(rs) &&
            fkd_net_now_ms() - booted_ms >= self_test_ms) {
            robot_sim_wss_stop(rs); /* no confirmation can race the rollback now */
            if (robot_sim_ota_pending(rs)) {
                const struct fkd_ota_boot *b = robot_sim_ota_running(rs);
                fkd_log(FKD_LOG_ERROR,
                        "ota: self-test failed: ota_%d %s was not welcomed by "
                        "the control plane within %lu ms: rolling back",
                        b->slot, b->app.version, self_test_ms);
                int rb = robot_sim_ota_rollback(rs);
                if (rb == 0) {
                    fkd_log(FKD_LOG_WARN,
                            "ota: ota_%d %s rolled back: marked invalid, the "
                            "next boot runs ota_%d",
                            b->slot, b->app.version, other_slot(rs));
                    code = ROBOT_SIM_REBOOT;
                    break;
                }
                fkd_log(FKD_LOG_ERROR, "ota: no rollback (%s): ota_%d keeps running",
                        rb == 5 ? "no previous image" : "flash error", b->slot);
            }
            pending = 0;
        }
    }
    robot_sim_wss_stop(rs); /* wss client (issue 6, section 3) */
    if (code == ROBOT_SIM_REBOOT) {
        printf("robot-sim: rebooting into ota_%d\n", other_slot(rs));
        fflush(stdout);
        fkd_log(FKD_LOG_INFO, "services: rebooting into ota_%d", other_slot(rs));
    }
    struct fkd_ctl_stats st;
    fkd_ctl_get_stats(&rs->ctl.ctl, &st);
    fkd_log(FKD_LOG_INFO,
            "services: control listener stopped: %u handshakes ok, %u failed, "
            "%u requests",
            st.handshakes_ok, st.handshakes_failed, st.requests);
    fkd_ctl_free(&rs->ctl.ctl);
    return code;
}
