/* robot-sim: the wss client thread (see wss_service.h). Its state is rs->wss (robot_sim.h). */
#include "wss_service.h"

#include "fkd/ota_remote.h"
#include "fkd/wss.h"
#include "fleet_sched.h"
#include "fleetkey/common.h"
#include "ota_cmd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int robot_sim_wss_option(struct robot_sim *rs, int argc, char **argv, int i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--no-wss") == 0) {
        rs->wss.opt_disabled = 1;
        return 1;
    }
    if (strcmp(a, "--wss-uri") == 0) {
        rs->wss.opt_uri = v;
        return v != NULL ? 2 : -1;
    }
    if (strcmp(a, "--wss-host") == 0) {
        rs->wss.opt_host = v;
        return v != NULL ? 2 : -1;
    }
    if (strcmp(a, "--wss-attempts") == 0) {
        return fk_parse_ulong(v, 1000000ul, &rs->wss.opt_attempts) == FK_OK ? 2 : -1;
    }
    if (strcmp(a, "--wss-connect-timeout-ms") == 0) {
        return fk_parse_ulong(v, 600000ul, &rs->wss.opt_connect_timeout_ms) == FK_OK ? 2 : -1;
    }
    if (strcmp(a, "--wss-backoff-ms") == 0) {
        return fk_parse_ulong(v, 60000ul, &rs->wss.opt_backoff_ms) == FK_OK &&
                       rs->wss.opt_backoff_ms > 0
                   ? 2
                   : -1;
    }
    return 0;
}

static int should_stop(void *user) {
    struct robot_sim *rs = user;
    if (rs->wss.client.state != FKD_WSS_CONNECTING) {
        fleet_sched_slot_give(); /* connected, or the attempt failed (fleet_sched.h) */
    }
    /* After a simulated power loss (--power-cut-at-write, a fleet's power cut) the robot is
     * off: its connection ends now, not when the service loop next looks. */
    return atomic_load(&rs->wss.stop_flag) || rs->file.mem.dead;
}

/* The handler (user = the robot): OTA (fkd/ota_remote.h) when the robot runs app images, then
 * credential rotation (fkd/rot_remote.h). The rotation calls hold rot_lock: they write the
 * rotation records the listener's loop reads (services.c). */
static size_t h_state(void *user, char *out, size_t size) {
    struct robot_sim *rs = user;
    return rs->wss.ota_ready ? fkd_ota_remote_state_json(&rs->wss.remote, out, size) : 0;
}

/* Fault injection of a fleet rehearsal (robot_sim.h, struct robot_sim_fault). A power cut is
 * armed at the first rotation request, so it falls on one of the rotation's flash writes; a
 * dropped confirmation shuts the socket down under the client, as a network failure would,
 * before the device sees rot_commit. Returns 1 when the request must not be handled. */
static int fault_hook(struct robot_sim *rs, const char *kind) {
    struct robot_sim_fault *f = &rs->fault;
    if (f->cut_at_rot > 0 && !f->cut_armed && strncmp(kind, "rot_", 4) == 0) {
        pthread_mutex_lock(&rs->rot_lock);
        fkd_flash_mem_cut(&rs->file.mem, f->cut_at_rot, f->cut_torn);
        pthread_mutex_unlock(&rs->rot_lock);
        f->cut_armed = 1;
        fkd_log(FKD_LOG_WARN, "fault: power cut armed at rotation flash write %lu%s", f->cut_at_rot,
                f->cut_torn ? " (torn)" : "");
    }
    if (f->answer_delay_ms > 0 && strncmp(kind, "rot_", 4) == 0) {
        unsigned long ms = f->answer_delay_ms;
        f->answer_delay_ms = 0;
        fkd_log(FKD_LOG_WARN, "fault: %s answered %lu ms late", kind, ms);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    if (f->drop_commit && strcmp(kind, "rot_commit") == 0) {
        f->drop_commit = 0;
        fkd_log(FKD_LOG_WARN, "fault: connection dropped instead of answering rot_commit");
        (void)shutdown(rs->wss.client.sock.fd, SHUT_RDWR);
        return 1;
    }
    return 0;
}

/* The rotation committed a new OTA key (class ota): OTA updates over the channel are checked
 * with it from now on, as the next boot's store will load it. Called under rot_lock. */
static void ota_key_follow(struct robot_sim *rs) {
    uint8_t der[FKD_OTA_KEY_MAX];
    size_t len = 0;
    unsigned slot = fkd_rot_info(&rs->rot, FKD_ROT_OTA)->active;
    enum fkd_err rc = fkd_rot_read(&rs->rot, FKD_ROT_OTA, 0, slot, der, sizeof der, &len);
    if (rc == FKD_OK && rs->wss.ota_ready) {
        rc = fkd_ota_remote_trust(&rs->wss.remote, der, len);
    }
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "ota: the committed OTA key is not trusted until the next boot: %s",
                fkd_strerror(rc));
    } else if (rs->wss.ota_ready) {
        fkd_log(FKD_LOG_INFO, "ota: OTA images are checked with the committed key (version %lu)",
                (unsigned long)fkd_rot_info(&rs->rot, FKD_ROT_OTA)->version);
    }
}

static enum fkd_wss_req_result h_request(void *user, const char *kind, const uint8_t *body,
                                         size_t body_len, struct fkd_wss_reply *reply) {
    struct robot_sim *rs = user;
    enum fkd_wss_req_result r = FKD_WSS_REQ_UNKNOWN;
    if (fault_hook(rs, kind)) {
        return FKD_WSS_REQ_UNKNOWN; /* its answer goes nowhere: the connection is gone */
    }
    if (rs->wss.ota_ready) {
        r = fkd_ota_remote_request(&rs->wss.remote, kind, body, body_len, reply);
    }
    if (r == FKD_WSS_REQ_UNKNOWN && rs->wss.rot_ready) {
        pthread_mutex_lock(&rs->rot_lock);
        uint32_t ota_was = fkd_rot_info(&rs->rot, FKD_ROT_OTA)->version;
        r = fkd_rot_remote_request(&rs->wss.rot, kind, body, body_len, reply);
        if (fkd_rot_info(&rs->rot, FKD_ROT_OTA)->version != ota_was) {
            ota_key_follow(rs);
        }
        pthread_mutex_unlock(&rs->rot_lock);
    }
    return r;
}

static void h_credentials(void *user, struct fkd_wss_creds *c) {
    struct robot_sim *rs = user;
    /* A connection attempt begins: in a fleet run by the scheduler, at most a few per worker
     * at once (fleet_sched_slot_take); the others wait here for their turn. */
    fleet_sched_slot_take();
    atomic_store(&rs->wss.online_flag, 0); /* a new connection begins */
    if (rs->wss.rot_ready) {
        pthread_mutex_lock(&rs->rot_lock);
        fkd_rot_remote_credentials(&rs->wss.rot, c);
        pthread_mutex_unlock(&rs->rot_lock);
    }
}

static int h_tick(void *user) {
    struct robot_sim *rs = user;
    int r = 0;
    if (rs->wss.rot_ready) {
        pthread_mutex_lock(&rs->rot_lock);
        r = fkd_rot_remote_tick(&rs->wss.rot);
        pthread_mutex_unlock(&rs->rot_lock);
    }
    return r;
}

/* Welcomed by the control plane: the running image's self-test has passed (docs/
 * ota-updates.md). Runs on the client thread before the next message is read, so a status
 * request right after welcome reports state valid. */
static void on_welcome(void *user) {
    struct robot_sim *rs = user;
    fleet_sched_slot_give();
    (void)robot_sim_ota_confirm(rs);
    atomic_store(&rs->wss.welcomed_flag, 1);
    atomic_store(&rs->wss.online_flag, 1);
}

static void *run(void *arg) {
    struct robot_sim *rs = arg;
    robot_sim_self = rs;
    enum fkd_wss_reason r = fkd_wss_run(&rs->wss.client);
    atomic_store(&rs->wss.online_flag, 0);
    if (r == FKD_WSS_R_REBOOT) {
        atomic_store(&rs->wss.reboot_flag, 1);
    }
    struct fkd_wss_stats st;
    fkd_wss_get_stats(&rs->wss.client, &st);
    fkd_log(FKD_LOG_INFO,
            "services: wss client stopped (%s): %u attempts, %u connected, "
            "%u welcomed, %u pings, %u pongs, %u requests",
            fkd_wss_reason_name(r), st.attempts, st.connects, st.welcomes, st.pings_sent,
            st.pongs_received, st.requests);
    return NULL;
}

static void run_task(void *arg) {
    (void)run(arg);
}

int robot_sim_wss_start(struct robot_sim *rs, const char *fw_version) {
    if (rs->wss.opt_disabled) {
        fkd_log(FKD_LOG_INFO, "services: wss client disabled (--no-wss)");
        return 0;
    }
    const char *uri = rs->wss.opt_uri != NULL ? rs->wss.opt_uri : rs->cfg.wss_uri;
    if (uri[0] == '\0') {
        fkd_log(FKD_LOG_INFO, "services: no CONFIG_MINITRAIN_WSS_URI: wss client not started");
        return 0;
    }
    struct fkd_ota_boot *running = robot_sim_ota_running(rs);
    if (running != NULL && running->slot >= 0 && strstr(running->app.project_name, "no-wss")) {
        /* A simulated broken firmware (tests of rollback): it never reaches the control plane,
         * so its self-test times out. */
        fkd_log(FKD_LOG_WARN,
                "services: firmware %s %s cannot reach the control plane "
                "(simulated broken build, project name contains no-wss): wss "
                "client not started",
                running->app.project_name, running->app.version);
        return 0;
    }
    struct fkd_wss_config c;
    memset(&c, 0, sizeof c);
    c.store = &rs->store;
    c.cfg = &rs->cfg;
    c.posture = &rs->posture;
    c.fw_version = fw_version;
    c.uri = rs->wss.opt_uri;
    c.expected_host = rs->wss.opt_host;
    c.max_attempts = (unsigned)rs->wss.opt_attempts;
    c.backoff_min_ms = (uint32_t)rs->wss.opt_backoff_ms;
    c.connect_timeout_ms = (uint32_t)rs->wss.opt_connect_timeout_ms;
    c.stop = should_stop;
    c.user = rs;
    fkd_ota_remote_init(&rs->wss.remote);
    if (running != NULL) {
        /* OTA over the channel: the slots, NVS and trusted keys of this boot. */
        struct fkd_ota_remote_config oc;
        memset(&oc, 0, sizeof oc);
        oc.flash = &rs->flash;
        oc.parts = &rs->parts;
        oc.nvs = rs->nvs_mounted ? &rs->nvs : NULL;
        oc.running = running;
        const uint8_t *der = NULL;
        size_t len = 0;
        if (fkd_store_info(&rs->store, FKD_CRED_OTA_PUBKEY)->valid &&
            fkd_store_get(&rs->store, FKD_CRED_OTA_PUBKEY, &der, &len) == FKD_OK) {
            oc.ota_pubkey = der;
            oc.ota_pubkey_len = len;
        }
        if (fkd_store_info(&rs->store, FKD_CRED_OTA_PUBKEY2)->valid &&
            fkd_store_get(&rs->store, FKD_CRED_OTA_PUBKEY2, &der, &len) == FKD_OK) {
            oc.ota_pubkey2 = der;
            oc.ota_pubkey2_len = len;
        }
        rs->wss.ota_ready = fkd_ota_remote_setup(&rs->wss.remote, &oc) == FKD_OK;
    }
    /* Credential rotation over the channel: the records loaded at boot. */
    fkd_rot_remote_init(&rs->wss.rot);
    if (rs->rot_loaded) {
        rs->wss.rot_ready = fkd_rot_remote_setup(&rs->wss.rot, &rs->rot) == FKD_OK;
        c.rot = &rs->rot;
    }
    static const struct fkd_wss_handler handler = {h_state, h_request, on_welcome, h_credentials,
                                                   h_tick};
    rs->wss.handler = handler;
    c.handler = &rs->wss.handler;
    c.handler_user = rs;
    fkd_wss_init(&rs->wss.client);
    if (fkd_wss_setup(&rs->wss.client, &c) != FKD_OK) {
        fkd_wss_free(&rs->wss.client);
        fkd_ota_remote_free(&rs->wss.remote);
        fkd_rot_remote_free(&rs->wss.rot);
        return 1;
    }
    atomic_store(&rs->wss.stop_flag, 0);
    atomic_store(&rs->wss.reboot_flag, 0);
    atomic_store(&rs->wss.welcomed_flag, 0);
    atomic_store(&rs->wss.online_flag, 0);
    int prc = 0;
    rs->wss.task = NULL;
    if (fleet_sched_in_task()) {
        /* A robot of robot-sim --fleet run by the scheduler: the client is a task of the same
         * worker thread (fleet_sched.h), not a thread of its own. */
        rs->wss.task = fleet_sched_spawn(rs->wss.opt_stack != 0 ? rs->wss.opt_stack : 131072u,
                                         run_task, rs, rs);
        prc = rs->wss.task == NULL;
    } else {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        if (rs->wss.opt_stack != 0) {
            (void)pthread_attr_setstacksize(&attr, rs->wss.opt_stack);
        }
        prc = pthread_create(&rs->wss.thread, &attr, run, rs);
        pthread_attr_destroy(&attr);
    }
    if (prc != 0) {
        fkd_log(FKD_LOG_ERROR, "services: cannot start the wss thread");
        fkd_wss_free(&rs->wss.client);
        fkd_ota_remote_free(&rs->wss.remote);
        fkd_rot_remote_free(&rs->wss.rot);
        return 1;
    }
    rs->wss.started = 1;
    if (rs->name == NULL) {
        printf("robot-sim: wss client to %s\n", uri);
        fflush(stdout);
    }
    return 0;
}

void robot_sim_wss_stop(struct robot_sim *rs) {
    if (!rs->wss.started) {
        return;
    }
    atomic_store(&rs->wss.stop_flag, 1);
    if (rs->wss.task != NULL) {
        fleet_sched_join(rs->wss.task);
        rs->wss.task = NULL;
    } else {
        pthread_join(rs->wss.thread, NULL);
    }
    rs->wss.started = 0;
    fkd_wss_free(&rs->wss.client);
    fkd_ota_remote_free(&rs->wss.remote);
    fkd_rot_remote_free(&rs->wss.rot);
}

int robot_sim_wss_reboot_requested(struct robot_sim *rs) {
    return atomic_load(&rs->wss.reboot_flag);
}

int robot_sim_wss_welcomed(struct robot_sim *rs) {
    return atomic_load(&rs->wss.welcomed_flag);
}
