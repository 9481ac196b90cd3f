/* Rotation plans shared by several fleetkey-server instances on one PostgreSQL inventory
 * (rot_shared.c; issue 15).
 *
 * A plan is one row of the inventory (fk_inventory_plan_*): the same text a rot_dir file
 * holds (plan, issued serials, staged PSKs). Every instance loads every plan and drives the
 * devices whose sessions it holds; a device is connected to one instance at a time.
 *
 * Once a second each instance that changed something merges under the inventory's writers'
 * lock (the advisory lock every writer of the database takes, so one merge at a time across
 * instances): read the stored row, copy in the devices this instance changed since it last
 * adopted the row (three-way, against that adopted copy, the job's base), take the plan-level
 * changes it made (operator actions, waves, settling), write the row back and adopt the
 * result. A device changed both here and in the row since the base goes to the instance that
 * holds its session now; when neither does, the row (the earlier writer) wins. What is
 * decided once for the fleet is decided inside that transaction by the instance whose merge
 * makes it: the audit rows of waves opened, settling, threshold pauses and the interlock, and
 * the revocation of the old credentials (its inventory rows and audit rows commit with the
 * row that says "revoked"; its CA index entries are idempotent, so a rolled-back attempt is
 * simply done again by the next merge). An instance that changed nothing adopts the row when
 * its version moved.
 *
 * The entry points of rot*.c that depend on where plans live (tick, load, save, create) are
 * here too: rot_dir files (rot_store.c) with SQLite, rows with PostgreSQL.
 *
 * Service thread only, like the rest of rot*.c. */
#include "rot_internal.h"

#include "session_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void job_name(long long db_id, char id[16]) {
    snprintf(id, 16, "rot-%06u", (unsigned)(db_id % 1000000000LL)); /* ids stay below 1e9 */
}

/* ---- what a merge compares and copies --------------------------------------------------- */

/* The saved part of a device's server state (not the session's delivery flags and checks). */
static int dev_same(const struct rot_dev *a, const struct rot_dev *b) {
    if (a->has_psk != b->has_psk || strcmp(a->serial, b->serial) != 0) {
        return 0;
    }
    for (int c = 0; c < FK_PLAN_CLASSES; c++) {
        if (a->version[c] != b->version[c] || a->audited[c] != b->audited[c] ||
            strcmp(a->fpr[c], b->fpr[c]) != 0) {
            return 0;
        }
    }
    /* staged keys: no early exit on their bytes */
    return !a->has_psk || fk_ct_equal(a->psk, b->psk, ROT_PSK_LEN);
}

static void dev_copy(struct rot_dev *dst, const struct rot_dev *src) {
    memcpy(dst->version, src->version, sizeof dst->version);
    memcpy(dst->serial, src->serial, sizeof dst->serial);
    memcpy(dst->fpr, src->fpr, sizeof dst->fpr);
    memcpy(dst->psk, src->psk, sizeof dst->psk);
    dst->has_psk = src->has_psk;
    memcpy(dst->audited, src->audited, sizeof dst->audited);
}

static int plan_level_same(const struct fk_plan *a, const struct fk_plan *b) {
    return a->state == b->state && a->wave == b->wave && a->forced == b->forced &&
           a->acked == b->acked && strcmp(a->pause_reason, b->pause_reason) == 0;
}

/* Same devices in the same order (both sorted by the plan parser): indexes line up. */
static int same_devices(const struct rot_job *a, const struct rot_job *b) {
    if (a->p->n != b->p->n) {
        return 0;
    }
    for (size_t i = 0; i < a->p->n; i++) {
        if (strcmp(a->p->t[i].device, b->p->t[i].device) != 0) {
            return 0;
        }
    }
    return 1;
}

/* 1 when j differs from what it adopted last (or never adopted anything). */
static int changed_here(const struct rot_job *j) {
    const struct rot_job *b = j->base;
    if (b == NULL || !same_devices(j, b) || !plan_level_same(j->p, b->p) ||
        j->revoked != b->revoked) {
        return 1;
    }
    for (size_t i = 0; i < j->p->n; i++) {
        if (!fk_plan_target_same(&j->p->t[i], &b->p->t[i]) || !dev_same(&j->d[i], &b->d[i])) {
            return 1;
        }
    }
    return 0;
}

/* The later of two concurrent plan states: an end state is never undone, an operator's or
 * the threshold's pause outranks another instance's step. */
static int state_rank(enum fk_plan_state s) {
    switch (s) {
    case FK_PLAN_ABORTED:
        return 4;
    case FK_PLAN_DONE:
        return 3;
    case FK_PLAN_PAUSED:
        return 2;
    case FK_PLAN_SETTLED:
        return 1;
    case FK_PLAN_RUNNING:
        break;
    }
    return 0;
}

/* 1 when a confirms a class that b does not: a confirmation is a fact (the control plane saw
 * the successor authenticate) that no other instance's later view undoes. */
static int confirms_more(const struct fk_plan_target *a, const struct fk_plan_target *b) {
    for (int c = 0; c < FK_PLAN_CLASSES; c++) {
        if (a->state[c] == FK_PLAN_T_CONFIRMED && b->state[c] != FK_PLAN_T_CONFIRMED) {
            return 1;
        }
    }
    return 0;
}

/* Copies this instance's changes (j against its base) into the stored job s, auditing the
 * confirmations the row did not have yet. */
static void merge_into(struct fk_server *srv, const struct rot_job *j, struct rot_job *s) {
    const struct rot_job *b = j->base;
    for (size_t i = 0; i < j->p->n; i++) {
        const struct fk_plan_target *t = &j->p->t[i];
        if (b != NULL && fk_plan_target_same(t, &b->p->t[i]) && dev_same(&j->d[i], &b->d[i])) {
            continue; /* not changed here */
        }
        const struct fk_plan_target *st = &s->p->t[i];
        int there =
            b != NULL && (!fk_plan_target_same(st, &b->p->t[i]) || !dev_same(&s->d[i], &b->d[i]));
        if (there && fk_srv_session_of(srv, t->device) == NULL && !confirms_more(t, st)) {
            continue; /* changed by the instance it moved to as well: that one drives it */
        }
        for (int c = 0; c < FK_PLAN_CLASSES; c++) {
            if (t->state[c] == FK_PLAN_T_CONFIRMED && st->state[c] != FK_PLAN_T_CONFIRMED) {
                /* once for the fleet, however many instances saw it authenticate */
                fk_srv_rot_audit(
                    srv, s, ROT_ACTOR, "rotation.confirmed", t->device,
                    fk_srv_rot_cls_detail((enum fk_plan_class)c, j->d[i].version[c], ""));
            }
        }
        if (fk_plan_copy_target(s->p, j->p, t->device) == FK_OK) {
            dev_copy(&s->d[i], &j->d[i]);
        }
    }
    if (b == NULL || !plan_level_same(j->p, b->p)) {
        int stored_moved = b != NULL && s->p->state != b->p->state;
        if (!stored_moved || state_rank(j->p->state) >= state_rank(s->p->state)) {
            s->p->state = j->p->state;
            memcpy(s->p->pause_reason, j->p->pause_reason, sizeof s->p->pause_reason);
        }
        if (j->p->wave > s->p->wave) {
            s->p->wave = j->p->wave;
        }
        s->p->forced |= j->p->forced;
        if (b == NULL || j->p->acked != b->p->acked) {
            s->p->acked = j->p->acked;
        }
    }
    s->revoked |= j->revoked;
}

/* The fleet-wide events the merge made (before: the stored row as read): audited here, once,
 * inside the merge's transaction. Operator actions were audited by their request. */
static void audit_transitions(struct fk_server *srv, struct rot_job *s, unsigned wave_before,
                              enum fk_plan_state before) {
    if (s->p->wave > wave_before && s->p->wave < s->p->spec.n_waves) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "wave", s->p->wave);
        cJSON_AddNumberToObject(o, "percent", s->p->spec.waves[s->p->wave]);
        fk_srv_rot_audit(srv, s, ROT_ACTOR, "rotation.wave_opened", s->id, o);
    }
    if (s->p->state == before) {
        return;
    }
    fk_log(FK_LOG_INFO, "server: rotation %s: %s -> %s %s", s->id, fk_plan_state_name(before),
           fk_plan_state_name(s->p->state), s->p->pause_reason);
    const char *kind = NULL;
    if (s->p->state == FK_PLAN_SETTLED) {
        kind = "rotation.settled";
    } else if (s->p->state == FK_PLAN_PAUSED && strncmp(s->p->pause_reason, "wave ", 5) == 0) {
        kind = "rotation.paused"; /* the threshold's reason; an operator's was audited */
    } else if (s->p->state == FK_PLAN_DONE && !s->p->forced) {
        kind = "rotation.interlock_held";
    }
    if (kind != NULL) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "reason", s->p->pause_reason);
        fk_srv_rot_audit(srv, s, ROT_ACTOR, kind, s->id, o);
    }
}

/* j takes over the stored job s (whose devices line up with j's) and keeps it as its base. */
static void adopt(struct fk_server *srv, struct rot_job *j, struct rot_job *s, long long version) {
    int moved = 0;
    for (size_t i = 0; i < j->p->n; i++) {
        const char *dev = j->p->t[i].device;
        int was = fk_plan_target_same(&j->p->t[i], &s->p->t[i]) && dev_same(&j->d[i], &s->d[i]);
        if (fk_plan_copy_target(j->p, s->p, dev) == FK_OK) {
            dev_copy(&j->d[i], &s->d[i]);
        }
        struct session *ss = was ? NULL : fk_srv_session_of(srv, dev);
        if (ss != NULL) {
            /* delivered by another instance: this connection may be the proof of it */
            fk_srv_rot_recheck(ss);
            moved = 1;
        }
    }
    j->p->state = s->p->state;
    j->p->wave = s->p->wave;
    j->p->forced = s->p->forced;
    j->p->acked = s->p->acked;
    memcpy(j->p->pause_reason, s->p->pause_reason, sizeof j->p->pause_reason);
    j->revoked = s->revoked;
    fk_srv_rot_job_free(j->base);
    j->base = s;
    j->db_version = version;
    /* a recheck may have made a commit due: changed here, written by the next merge */
    j->dirty = moved && changed_here(j);
}

static struct rot_job *parse_row(long long id, const char *body, size_t len, struct fk_diag *diag) {
    char name[16];
    job_name(id, name);
    struct rot_job *s = fk_srv_rot_parse(body, len, name, diag);
    if (s != NULL) {
        s->db_id = id;
    }
    return s;
}

/* Writes j's changes into its row: see the top of the file. */
static void merge(struct fk_server *srv, struct rot_job *j) {
    struct fk_diag d;
    fk_diag_init(&d);
    char *body = NULL, *text = NULL;
    size_t len = 0;
    long long version = 0;
    struct rot_job *s = NULL;
    int open = 0;
    if (fk_inventory_begin(srv->inv, &d) != FK_OK) {
        goto out;
    }
    open = 1;
    if (fk_inventory_plan_get(srv->inv, j->db_id, &body, &len, &version, &d) != FK_OK ||
        (s = parse_row(j->db_id, body, len, &d)) == NULL) {
        goto out;
    }
    if (!same_devices(j, s)) {
        fk_diag_set(&d, FK_E_STATE, "stored plan holds other devices");
        goto out;
    }
    enum fk_plan_state before = s->p->state;
    unsigned wave_before = s->p->wave;
    merge_into(srv, j, s);
    fk_srv_rot_audit_outcomes(srv, s); /* failures: once, from the merged row */
    audit_transitions(srv, s, wave_before, before);
    if (s->p->state == FK_PLAN_DONE && !s->revoked) {
        /* the one instance whose merge finds the plan done and not revoked revokes */
        fk_srv_rot_revoke_old(srv, s);
    }
    if ((text = fk_srv_rot_text(s)) == NULL) {
        fk_diag_set(&d, FK_E_NOMEM, "out of memory");
        goto out;
    }
    if (fk_inventory_plan_put(srv->inv, j->db_id, text, strlen(text), &d) != FK_OK) {
        goto out;
    }
    open = 0;
    if (fk_inventory_commit(srv->inv, &d) != FK_OK) {
        goto out;
    }
    adopt(srv, j, s, version + 1);
    s = NULL;
out:
    if (open) {
        fk_inventory_rollback(srv->inv);
    }
    if (d.msg[0] != '\0') {
        fk_log(FK_LOG_WARN, "server: rotation %s: not merged into the inventory (retried): %s",
               j->id, d.msg);
    }
    fk_srv_rot_job_free(s);
    fk_srv_rot_text_free(text);
    if (body != NULL) {
        fk_free_secret(body, len);
    }
}

/* Adopts j's row when another instance moved it (j unchanged here). */
static void refresh(struct fk_server *srv, struct rot_job *j) {
    struct fk_diag d;
    fk_diag_init(&d);
    char *body = NULL;
    size_t len = 0;
    long long version = 0;
    struct rot_job *s = NULL;
    if (fk_inventory_plan_get(srv->inv, j->db_id, &body, &len, &version, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: not read from the inventory: %s", j->id, d.msg);
    } else if (version != j->db_version) {
        s = parse_row(j->db_id, body, len, &d);
        if (s == NULL || !same_devices(j, s)) {
            fk_log(FK_LOG_WARN, "server: rotation %s: stored plan not usable: %s", j->id,
                   s == NULL ? d.msg : "other devices");
        } else {
            adopt(srv, j, s, version);
            s = NULL;
        }
    }
    fk_srv_rot_job_free(s);
    if (body != NULL) {
        fk_free_secret(body, len);
    }
}

/* ---- plans created elsewhere ------------------------------------------------------------ */

static long long newest_row(const struct fk_server *srv) {
    long long m = 0;
    for (size_t i = 0; i < srv->nrjobs; i++) {
        if (srv->rjobs[i]->db_id > m) {
            m = srv->rjobs[i]->db_id;
        }
    }
    return m;
}

static int pull_cb(void *user, long long id, long long version, const char *body, size_t len) {
    struct fk_server *srv = user;
    struct fk_diag d;
    fk_diag_init(&d);
    struct rot_job *j = parse_row(id, body, len, &d);
    struct rot_job *b = j != NULL ? parse_row(id, body, len, &d) : NULL;
    if (j == NULL || b == NULL || fk_srv_rot_job_append(srv, j) != 0) {
        fk_log(FK_LOG_WARN, "server: rotation plan %lld of the inventory not loaded: %s", id,
               d.msg[0] != '\0' ? d.msg : "out of memory");
        fk_srv_rot_job_free(j);
        fk_srv_rot_job_free(b);
        return 0;
    }
    j->base = b;
    j->db_version = version;
    fk_log(FK_LOG_INFO, "server: rotation %s loaded from the inventory: %s, %zu devices", j->id,
           fk_plan_state_name(j->p->state), j->p->n);
    return 0;
}

/* Loads the plans added since the newest this instance has. */
static enum fk_err pull(struct fk_server *srv, struct fk_diag *d) {
    return fk_inventory_plan_list(srv->inv, newest_row(srv), pull_cb, srv, d);
}

void fk_srv_rot_shared_sync(struct fk_server *srv) {
    struct fk_diag d;
    fk_diag_init(&d);
    if (srv->inv == NULL) {
        return; /* fk_server_free after the inventory could not be opened */
    }
    if (pull(srv, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation plans not read from the inventory: %s", d.msg);
    }
    for (size_t i = 0; i < srv->nrjobs; i++) {
        struct rot_job *j = srv->rjobs[i];
        int finished =
            j->p->state == FK_PLAN_ABORTED || (j->p->state == FK_PLAN_DONE && j->revoked);
        if (j->db_id == 0 || (finished && !j->dirty && !changed_here(j))) {
            continue;
        }
        /* done and not revoked: the merge revokes, also the one after a merge that only
         * recorded the start (rot.c, rev_begin) or one cut by a crash, changes here or not */
        if (j->dirty || changed_here(j) || j->p->state == FK_PLAN_DONE) {
            merge(srv, j);
        } else {
            refresh(srv, j);
        }
    }
}

/* ---- creating ---------------------------------------------------------------------------- */

int fk_srv_rot_shared_claim(struct fk_server *srv, char id[16], long long *db_id, unsigned *status,
                            char *why, size_t why_size) {
    struct fk_diag d;
    fk_diag_init(&d);
    *db_id = 0;
    /* Under the writers' lock: two operators creating a plan through two instances at once
     * meet here, and the second sees the first's row. */
    if (fk_inventory_begin(srv->inv, &d) != FK_OK || pull(srv, &d) != FK_OK) {
        goto fail;
    }
    struct rot_job *cur = fk_srv_rot_current(srv);
    if (cur != NULL) {
        fk_inventory_rollback(srv->inv);
        *status = 409;
        snprintf(why, why_size, "a rotation is already under way: %s", cur->id);
        return -1;
    }
    if (fk_inventory_plan_add(srv->inv, "{}", 2, db_id, &d) != FK_OK) {
        goto fail;
    }
    job_name(*db_id, id);
    return 0;
fail:
    fk_inventory_rollback(srv->inv);
    *status = 500;
    snprintf(why, why_size, "inventory: %s", d.msg);
    return -1;
}

int fk_srv_rot_shared_created(struct fk_server *srv, struct rot_job *j) {
    struct fk_diag d;
    fk_diag_init(&d);
    char *text = fk_srv_rot_text(j);
    struct rot_job *b = NULL;
    int rc = -1;
    if (text == NULL) {
        fk_diag_set(&d, FK_E_NOMEM, "out of memory");
        fk_inventory_rollback(srv->inv);
        goto out;
    }
    b = fk_srv_rot_parse(text, strlen(text), j->id, &d);
    if (b == NULL || fk_inventory_plan_put(srv->inv, j->db_id, text, strlen(text), &d) != FK_OK) {
        fk_inventory_rollback(srv->inv);
        goto out;
    }
    if (fk_inventory_commit(srv->inv, &d) != FK_OK) {
        goto out;
    }
    b->db_id = j->db_id;
    j->base = b;
    b = NULL;
    j->db_version = 1 + 1; /* added, then put */
    j->dirty = 0;
    rc = 0;
out:
    if (rc != 0) {
        fk_log(FK_LOG_WARN, "server: rotation %s: not written to the inventory: %s", j->id, d.msg);
    }
    fk_srv_rot_job_free(b);
    fk_srv_rot_text_free(text);
    return rc;
}

/* ---- where plans live: the entry points of rot*.c ------------------------------------------ */

void fk_srv_rot_tick(struct fk_server *srv) {
    if (fk_srv_rot_shared(srv) && fk_srv_rot_current(srv) == NULL) {
        fk_srv_rot_shared_sync(srv); /* a plan another instance created */
    }
    fk_srv_rot_step(srv);
    fk_srv_rot_save_dirty(srv);
}

void fk_srv_rot_save_dirty(struct fk_server *srv) {
    if (fk_srv_rot_shared(srv)) {
        fk_srv_rot_shared_sync(srv);
    } else {
        fk_srv_rot_save_files(srv);
    }
}

void fk_srv_rot_load(struct fk_server *srv) {
    if (fk_srv_rot_shared(srv)) {
        srv->next_rjob = 1; /* unused: the inventory numbers the plans */
        fk_srv_rot_shared_sync(srv);
    } else {
        fk_srv_rot_load_files(srv);
    }
}

int fk_srv_rot_create(struct fk_server *srv, const struct fk_plan_spec *spec,
                      const char *const *devices, size_t n, const char *operator_name,
                      struct rot_job **out, unsigned *status, char *why, size_t why_size) {
    int shared = fk_srv_rot_shared(srv);
    char id[16];
    long long db_id = 0;
    *out = NULL;
    if (fk_srv_rot_create_check(srv, spec, status, why, why_size) != 0) {
        return -1;
    }
    snprintf(id, sizeof id, "rot-%06lu", srv->next_rjob % 1000000u);
    if (shared && fk_srv_rot_shared_claim(srv, id, &db_id, status, why, why_size) != 0) {
        return -1; /* the id comes from the inventory, unique across instances */
    }
    struct rot_job *j = NULL;
    if (fk_srv_rot_create_job(srv, spec, devices, n, operator_name, id, db_id, &j, status, why,
                              why_size) != 0) {
        if (shared) {
            fk_inventory_rollback(srv->inv);
        }
        return -1;
    }
    if (shared) {
        /* the audit row commits with the plan row, or neither is there */
        if (fk_srv_rot_shared_created(srv, j) != 0) {
            srv->nrjobs--; /* j is the last one appended */
            fk_srv_rot_job_free(j);
            *status = 500;
            snprintf(why, why_size, "the plan could not be written to the inventory");
            return -1;
        }
    } else {
        srv->next_rjob++;
        fk_srv_rot_save_file(srv, j);
    }
    fk_log(FK_LOG_INFO, "server: rotation %s created by %s: %zu devices", j->id, operator_name, n);
    *out = j;
    return 0;
}
