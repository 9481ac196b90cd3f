/* PSK confirmation of credential rotation: see rot_internal.h (rot_check.c).
 *
 * The check is a DTLS handshake (fk_ctl_confirm_next) that can take seconds against a slow or
 * silent device, so it runs in a thread of its own and the service thread never waits for it:
 * the tick starts it, and a later tick collects the result (done, then join). The worker
 * touches nothing but its struct rot_check. */
#include "rot_internal.h"

#include "session_internal.h"

#include "fleetkey/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fk_srv_rot_psk_identity(const char *device, unsigned version, char *out, size_t size) {
    snprintf(out, size, "%s.v%u", device, version);
}

static void *check_main(void *arg) {
    struct rot_check *c = arg;
    struct fk_diag d;
    fk_diag_init(&d);
    c->rc = c->current ? fk_ctl_confirm_current(c->host, c->port, c->identity, c->psk,
                                                sizeof c->psk, ROT_CHECK_TIMEOUT_MS, &d)
                       : fk_ctl_confirm_next(c->host, c->port, c->identity, c->psk, sizeof c->psk,
                                             ROT_CHECK_TIMEOUT_MS, &d);
    snprintf(c->why, sizeof c->why, "%.255s", c->rc == FK_OK ? "" : d.msg);
    atomic_store(&c->done, 1);
    /* Wake the service loop: without this a finished check waits for the next 1 s tick, and
     * a fleet's PSK rotation runs at ROT_CHECKS_MAX devices a second. */
    atomic_store(c->wake, 1);
    lws_cancel_service(c->ctx);
    return NULL;
}

static void check_free(struct fk_server *srv, struct rot_dev *rd) {
    pthread_join(rd->chk->th, NULL);
    fk_wipe(rd->chk->psk, sizeof rd->chk->psk);
    free(rd->chk);
    rd->chk = NULL;
    srv->rot_checks_running--;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A finished check of device dev: rot_commit due, or one more failed try. */
static void collect(struct fk_server *srv, struct rot_job *j, size_t i) {
    struct rot_dev *rd = &j->d[i];
    const struct fk_plan_target *t = &j->p->t[i];
    const struct rot_check *c = rd->chk;
    if (c->version != rd->version[FK_PLAN_PSK] || t->state[FK_PLAN_PSK] != FK_PLAN_T_SENT) {
        /* delivered again or settled meanwhile: this answer is about nothing current */
    } else if (c->rc == FK_OK) {
        srv->rot_checks_ok++;
        rd->commit_due[FK_PLAN_PSK] = 1;
        struct session *s = fk_srv_session_of(srv, t->device);
        if (s != NULL && !s->kick) {
            s->kick = 1;
            if (srv->n_rot_kicks < SRV_ROT_KICKS_MAX) {
                memcpy(srv->rot_kicks[srv->n_rot_kicks], s->id, sizeof srv->rot_kicks[0]);
            }
            srv->n_rot_kicks++; /* past the array: wake_rot walks every session instead */
        }
        fk_log(FK_LOG_INFO, "server: rotation %s: %s: psk v%u authenticated as %s at %s:%s", j->id,
               t->device, c->version, c->current ? "current" : "next", c->host, c->port);
    } else {
        srv->rot_checks_failed++;
        fk_log(FK_LOG_WARN, "server: rotation %s: %s: psk v%u check %u/%d failed: %s (%s)", j->id,
               t->device, c->version, rd->chk_tries, ROT_CHECK_TRIES, fk_strerror(c->rc), c->why);
        /* The next try from the tick's scan, a second later at the earliest: a robot answers
         * rot_stage before its listener has taken the staged key (a fleet robot's listener
         * looks once a second), so a try at once fails the same way and spends the tries. */
        j->d[i].chk_after_ms = mono_ms() + ROT_CHECK_RETRY_MS;
    }
    check_free(srv, rd);
}

/* Collects the finished checks of j: only the devices in j->chk_run are looked at. */
static void collect_done(struct fk_server *srv, struct rot_job *j) {
    for (size_t k = 0; k < j->n_chk_run;) {
        size_t i = j->chk_run[k];
        if (j->d[i].chk == NULL || !atomic_load(&j->d[i].chk->done)) {
            k++;
            continue;
        }
        j->chk_run[k] = j->chk_run[--j->n_chk_run]; /* order does not matter */
        collect(srv, j, i);
    }
}

/* The device's address on its wss connection, as a host for getaddrinfo. */
static void peer_host(const char *peer, char *out, size_t size) {
    /* an IPv4 peer on a dual-stack socket: the device's listener is IPv4 */
    if (strncmp(peer, "::ffff:", 7) == 0 && strchr(peer + 7, '.') != NULL) {
        peer += 7;
    }
    snprintf(out, size, "%s", peer);
}

static void start(struct fk_server *srv, struct rot_job *j, size_t i, const struct session *s,
                  int current) {
    struct rot_dev *rd = &j->d[i];
    if (j->n_chk_run >= ROT_CHECKS_MAX) {
        return; /* the global limit holds it too; this keeps chk_run in bounds on its own */
    }
    struct rot_check *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    peer_host(s->peer, c->host, sizeof c->host);
    snprintf(c->port, sizeof c->port, "%lld", s->dtls_port);
    c->version = rd->version[FK_PLAN_PSK];
    c->current = current;
    fk_srv_rot_psk_identity(s->id, c->version, c->identity, sizeof c->identity);
    memcpy(c->psk, rd->psk, sizeof c->psk);
    atomic_init(&c->done, 0);
    c->wake = &srv->rot_wake;
    c->ctx = srv->ctx;
    if (pthread_create(&c->th, NULL, check_main, c) != 0) {
        fk_log(FK_LOG_WARN, "server: rotation %s: %s: psk check not started (no thread)", j->id,
               s->id);
        fk_wipe(c->psk, sizeof c->psk);
        free(c);
        return;
    }
    rd->chk = c;
    rd->chk_tries++;
    srv->rot_checks_running++;
    j->chk_run[j->n_chk_run++] = i;
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: psk v%u check %u/%d at %s:%s", j->id, s->id,
           c->version, rd->chk_tries, ROT_CHECK_TRIES, c->host, c->port);
}

/* Starts a check of device i of j if it needs one now: its PSK delivered (sent), none in
 * flight, tries left, and its live session reports the staged version in trial (slot next) or
 * committed (slot current). */
static void maybe_start(struct fk_server *srv, struct rot_job *j, size_t i) {
    struct rot_dev *rd = &j->d[i];
    const struct fk_plan_target *t = &j->p->t[i];
    unsigned v = rd->version[FK_PLAN_PSK];
    if (rd->chk != NULL || !rd->has_psk || v == 0 || rd->commit_due[FK_PLAN_PSK] ||
        t->state[FK_PLAN_PSK] != FK_PLAN_T_SENT) {
        return;
    }
    if (rd->chk_version != v) {
        rd->chk_version = v;
        rd->chk_tries = 0;
        rd->chk_after_ms = 0;
    }
    if (rd->chk_tries >= ROT_CHECK_TRIES) {
        return; /* the plan's per-device timeout decides */
    }
    if (rd->chk_after_ms > mono_ms()) {
        return; /* a try failed less than ROT_CHECK_RETRY_MS ago */
    }
    const struct session *s = fk_srv_session_of(srv, t->device);
    const struct fk_wss_rot_class *dc = s != NULL ? &s->rot.c[FK_PLAN_PSK] : NULL;
    if (dc == NULL || !dc->present || s->dtls_port <= 0) {
        return;
    }
    /* In trial the staged PSK must open the "next" slot. Committed with this version: the
     * confirmation of an earlier life was lost in a kill -9 (rot_commit went out, the plan
     * file did not), and the key must now open the "current" slot. */
    int trial = strcmp(dc->state, "trial") == 0 && (unsigned long long)dc->staged_version == v;
    int committed = strcmp(dc->state, "committed") == 0 && (unsigned long long)dc->version == v;
    if (trial || committed) {
        start(srv, j, i, s, committed);
    }
}

static int running(const struct rot_job *j) {
    return j->p->state == FK_PLAN_RUNNING || j->p->state == FK_PLAN_SETTLED;
}

void fk_srv_rot_checks(struct fk_server *srv, struct rot_job *j) {
    collect_done(srv, j);
    if (!running(j)) {
        return;
    }
    for (size_t i = 0; i < j->p->n && srv->rot_checks_running < ROT_CHECKS_MAX; i++) {
        maybe_start(srv, j, i);
    }
}

void fk_srv_rot_check_queue(struct rot_job *j, size_t i) {
    if (i >= j->p->n || j->d[i].chk_queued) {
        return;
    }
    if (j->chk_q == NULL && (j->chk_q = calloc(j->p->n, sizeof *j->chk_q)) == NULL) {
        return; /* the tick's scan finds it */
    }
    /* each device at most once (chk_queued), so chk_q_len never exceeds p->n */
    j->chk_q[(j->chk_q_head + j->chk_q_len) % j->p->n] = i;
    j->chk_q_len++;
    j->d[i].chk_queued = 1;
}

void fk_srv_rot_checks_wake(struct fk_server *srv) {
    struct rot_job *j = fk_srv_rot_current(srv);
    if (j == NULL) {
        return;
    }
    collect_done(srv, j);
    while (running(j) && j->chk_q_len > 0 && srv->rot_checks_running < ROT_CHECKS_MAX) {
        size_t i = j->chk_q[j->chk_q_head];
        j->chk_q_head = (j->chk_q_head + 1) % j->p->n;
        j->chk_q_len--;
        j->d[i].chk_queued = 0;
        maybe_start(srv, j, i);
    }
}

void fk_srv_rot_checks_stop(struct fk_server *srv) {
    for (size_t k = 0; k < srv->nrjobs; k++) {
        struct rot_job *j = srv->rjobs[k];
        for (size_t i = 0; i < j->p->n; i++) {
            if (j->d[i].chk != NULL) {
                check_free(srv, &j->d[i]);
            }
        }
    }
}
