/* Update jobs, their files, and the OTA-key rotation view: see jobs_internal.h. */
#include "jobs_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- the OTA-key rotation, as the inventory shows it --------------------------------------- */

/* A device-supplied string made safe for one log line: printable ASCII only. */
const char *fk_srv_log_safe(const char *in, char *out, size_t size) {
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < size; i++) {
        out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
    }
    out[i] = '\0';
    return out;
}

/* The rotation state, re-read from the inventory (operators run `provision-keys rotate` on
 * the same file while the server runs). On a database error the previous view stays. */
void fk_srv_rot_refresh(struct fk_server *srv) {
    struct fk_rot_current cur;
    int found = 0, old_ret = 0, new_ret = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    /* Every rotation step appends an audit row; without a new row (revocations_check reads
     * them each tick) nothing can have changed, and the reads below scan every credential. */
    if (srv->rot_loaded && srv->rot_audit_seq == srv->audit_seen) {
        return;
    }
    if (fk_rotation_current(srv->inv, &cur, &found, &d) != FK_OK ||
        (found && (fk_rotation_key_retired(srv->inv, cur.keys.old_fpr, &old_ret, &d) != FK_OK ||
                   fk_rotation_key_retired(srv->inv, cur.keys.new_fpr, &new_ret, &d) != FK_OK))) {
        fk_log(FK_LOG_DEBUG, "server: rotation state not read (kept): %s", d.msg);
        return;
    }
    if (found && (!srv->rot_found || strcmp(cur.keys.new_fpr, srv->rot.keys.new_fpr) != 0)) {
        fk_log(FK_LOG_INFO, "server: OTA-key rotation %s -> %s under way", cur.keys.old_fpr,
               cur.keys.new_fpr);
    }
    srv->rot = cur;
    srv->rot_found = found;
    srv->rot_old_retired = old_ret;
    srv->rot_new_retired = new_ret;
    srv->rot_loaded = 1;
    srv->rot_audit_seq = srv->audit_seen;
}

/* Does the report list fpr (under NVS key name, or under any name when name is NULL)? */
int fk_srv_reports_key(const struct fk_wss_ota *o, const char *name, const char *fpr) {
    for (size_t i = 0; i < o->nkeys; i++) {
        if ((name == NULL || strcmp(o->keys[i].name, name) == 0) &&
            strcasecmp(o->keys[i].fpr, fpr) == 0) {
            return 1;
        }
    }
    return 0;
}

struct cred_find {
    const char *kind;
    const char *fpr;
    int active;
};

static int cred_find_active(void *user, const struct fk_inv_credential *c) {
    struct cred_find *f = user;
    if (strcmp(c->kind, f->kind) == 0 && strcasecmp(c->fingerprint, f->fpr) == 0 &&
        strcmp(c->state, "active") == 0) {
        f->active = 1;
        return 1;
    }
    return 0;
}

int fk_srv_cred_active(struct fk_server *srv, const char *id, const char *kind, const char *fpr) {
    struct cred_find f = {kind, fpr, 0};
    if (fk_inventory_credential_list(srv->inv, id, cred_find_active, &f, NULL) != FK_OK) {
        return -1;
    }
    return f.active;
}

/* Records in the inventory that a device holds the rotation's new key (firmware 0) or runs
 * an image signed by the new key only (firmware 1). Once per fact: already active rows are
 * skipped; FK_E_STATE (gate not met) is logged, fk_rotation_confirm audits the refusal. */
void fk_srv_rot_confirm(struct fk_server *srv, const char *id, int firmware) {
    const char *kind = firmware ? FK_ROT_KIND_FW : FK_ROT_KIND_KEY;
    if (!srv->rot_found || fk_srv_cred_active(srv, id, kind, srv->rot.keys.new_fpr) != 0) {
        return;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc =
        fk_rotation_confirm(srv->inv, &srv->rot.keys, id, firmware, "fleetkey-server", &d);
    if (rc == FK_OK) {
        fk_log(FK_LOG_INFO, "server: %s: rotation %s confirmed (%s)", id,
               firmware ? "firmware" : "key", srv->rot.keys.new_fpr);
    } else {
        fk_log(rc == FK_E_STATE ? FK_LOG_INFO : FK_LOG_WARN,
               "server: %s: rotation %s not confirmed: %s", id, firmware ? "firmware" : "key",
               d.msg[0] ? d.msg : fk_strerror(rc));
    }
}

static const char *const state_audit[FK_OTA_FAILED + 1] = {
    "device.ota_queued",    NULL,
    "device.ota_installed", "device.ota_confirmed",
    "device.ota_refused",   "device.ota_rolled_back",
    "device.ota_failed"};

void fk_srv_audit_target(struct fk_server *srv, const struct ota_job *job,
                         const struct fk_ota_target *t, const char *kind, const char *actor) {
    char detail[512];
    struct fk_diag d;
    fk_diag_init(&d);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job", job->id);
    cJSON_AddStringToObject(o, "version", job->info.version);
    char pre[17];
    snprintf(pre, sizeof pre, "%.16s", job->info.sha256);
    cJSON_AddStringToObject(o, "sha256", pre);
    if (t->error[0] != '\0') {
        cJSON_AddStringToObject(o, "error", t->error);
    }
    if (!cJSON_PrintPreallocated(o, detail, (int)sizeof detail, 0)) {
        snprintf(detail, sizeof detail, "{}");
    }
    cJSON_Delete(o);
    if (fk_inventory_audit_append(srv->inv, actor, kind, t->device, detail, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: audit %s not written: %s", t->device, kind, d.msg);
    }
}

/* ---- jobs on disk --------------------------------------------------------------------------
 * Each job is also a file, ota_dir/j-NNNNNN.json (what GET /api/ota/JOB shows), written when
 * the job is accepted and then rewritten atomically at most once a second while its targets
 * change (a fleet-wide job changes thousands of times; one write per change would be quadratic)
 * and at shutdown, so a restarted server knows its jobs: finished ones for
 * `fleetctl ota-status`, open ones to push again (a transfer cut by the restart starts over
 * from byte 0, as after any disconnect). The image itself is the spool file named by its
 * SHA-256 next to it, checked again when the job is loaded. */

void fk_srv_job_save(struct fk_server *srv, const struct ota_job *job) {
    char path[1200];
    struct fk_diag d;
    fk_diag_init(&d);
    cJSON *o = fk_srv_job_json(job, 1);
    char *txt = o != NULL ? cJSON_Print(o) : NULL;
    snprintf(path, sizeof path, "%s/%s.json", srv->ota_dir, job->id);
    if (txt == NULL || fk_file_write_atomic(path, txt, strlen(txt), 0600, 0, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: ota %s: job not saved (%s): a restart would forget it",
               job->id, txt == NULL ? "out of memory" : d.msg);
    }
    cJSON_free(txt);
    cJSON_Delete(o);
}

/* The jobs changed since they were last written. A crash loses at most a second of
 * transitions, which the robots' next reports re-establish (running the image valid:
 * confirmed) or which a transfer restart repeats. */
void fk_srv_jobs_save_dirty(struct fk_server *srv) {
    for (size_t j = 0; j < srv->njobs; j++) {
        if (srv->jobs[j]->dirty) {
            srv->jobs[j]->dirty = 0;
            fk_srv_job_save(srv, srv->jobs[j]);
        }
    }
}

int fk_srv_job_append(struct fk_server *srv, struct ota_job *job) {
    void *q = fk_grow(srv->jobs, &srv->jobs_cap, srv->njobs, sizeof *srv->jobs, 16);
    if (q == NULL) {
        return -1;
    }
    srv->jobs = q;
    srv->jobs[srv->njobs++] = job;
    return 0;
}

void fk_srv_job_free(struct ota_job *job) {
    if (job == NULL) {
        return;
    }
    if (job->fd > 0) {
        close(job->fd);
    }
    free(job->t);
    free(job->updated);
    free(job);
}

/* One saved job: its JSON (fk_ota_job_parse), then its image checked again. Returns the job
 * or NULL (why in *why; the file is left for the operator). */
static struct ota_job *job_load(struct fk_server *srv, const char *name, unsigned long num,
                                const char **why) {
    char path[1200];
    uint8_t *txt = NULL, *img = NULL;
    size_t len = 0, ilen = 0;
    struct ota_job *job = NULL;
    struct fk_ota_job_record rec;
    memset(&rec, 0, sizeof rec);
    *why = "unreadable";
    snprintf(path, sizeof path, "%s/%s", srv->ota_dir, name);
    if (fk_file_read(path, 4u << 20, &txt, &len, NULL) != FK_OK) {
        goto fail;
    }
    *why = "not a job";
    if (fk_ota_job_parse(txt, len, &rec, NULL) != FK_OK) {
        goto fail;
    }
    *why = "out of memory";
    job = calloc(1, sizeof *job);
    if (job == NULL) {
        goto fail;
    }
    snprintf(job->id, sizeof job->id, "j-%06lu", num);
    snprintf(job->created_at, sizeof job->created_at, "%s", rec.created_at);
    snprintf(job->operator_name, sizeof job->operator_name, "%s", rec.operator_name);
    snprintf(job->path, sizeof job->path, "%s/%s.bin", srv->ota_dir, rec.sha256);
    *why = "its image is missing or no longer checks";
    if (fk_file_read(job->path, srv->cfg.ota_max_image, &img, &ilen, NULL) != FK_OK ||
        fk_ota_image_check(img, ilen, &job->info, NULL) != FK_OK ||
        strcmp(job->info.sha256, rec.sha256) != 0) {
        goto fail;
    }
    job->fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (job->fd < 0) {
        goto fail;
    }
    job->n = rec.n;
    job->t = rec.t;
    job->updated = rec.updated;
    rec.t = NULL;
    rec.updated = NULL;
    for (size_t i = 0; i < job->n; i++) {
        if (job->t[i].sent > job->info.size) {
            job->t[i].sent = job->info.size;
        }
    }
    free(txt);
    free(img);
    return job;
fail:
    fk_ota_job_record_free(&rec);
    free(txt);
    free(img);
    fk_srv_job_free(job);
    return NULL;
}

/* At start: every saved job, in id order; next_job above the highest id seen. */
void fk_srv_jobs_load(struct fk_server *srv) {
    DIR *dir = opendir(srv->ota_dir);
    struct dirent *de;
    unsigned long *nums = NULL;
    size_t n = 0, cap = 0;
    srv->next_job = 1;
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        unsigned long num = 0;
        char tail[8] = "";
        if (sscanf(de->d_name, "j-%6lu%7s", &num, tail) != 2 || strcmp(tail, ".json") != 0 ||
            strlen(de->d_name) != 2 + 6 + 5 || num == 0) {
            continue;
        }
        unsigned long *q = fk_grow(nums, &cap, n, sizeof *nums, 16);
        if (q == NULL) {
            break;
        }
        nums = q;
        nums[n++] = num;
        if (num >= srv->next_job) {
            srv->next_job = num + 1;
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
    /* creation order: the order pushes are served in */
    for (size_t a = 1; a < n; a++) {
        for (size_t b = a; b > 0 && nums[b - 1] > nums[b]; b--) {
            unsigned long x = nums[b];
            nums[b] = nums[b - 1];
            nums[b - 1] = x;
        }
    }
    size_t open_jobs = 0;
    for (size_t k = 0; k < n; k++) {
        char name[32];
        const char *why = NULL;
        snprintf(name, sizeof name, "j-%06lu.json", nums[k]);
        struct ota_job *job = job_load(srv, name, nums[k], &why);
        if (job == NULL || fk_srv_job_append(srv, job) != 0) {
            fk_log(FK_LOG_ERROR, "server: %s/%s: job not loaded: %s", srv->ota_dir, name,
                   job == NULL ? why : "out of memory");
            fk_srv_job_free(job);
            continue;
        }
        for (size_t i = 0; i < job->n; i++) {
            srv->ota_states[job->t[i].state]++;
            open_jobs += !fk_ota_tstate_final(job->t[i].state);
        }
    }
    free(nums);
    if (n > 0) {
        fk_log(FK_LOG_INFO,
               "server: %zu update job(s) loaded from %s, %zu device(s) still to update",
               srv->njobs, srv->ota_dir, open_jobs);
    }
}

/* A target changed state: log, count, audit, and the rotation's firmware confirmation. */
void fk_srv_target_changed(struct fk_server *srv, struct ota_job *job, struct fk_ota_target *t,
                           enum fk_ota_tstate was) {
    size_t idx = (size_t)(t - job->t);
    fk_time_rfc3339((long long)time(NULL), job->updated[idx]);
    srv->ota_states[t->state]++;
    char why[FK_WSS_STR_MAX + 1];
    fk_log(fk_ota_tstate_final(t->state) && t->state != FK_OTA_CONFIRMED ? FK_LOG_WARN
                                                                         : FK_LOG_INFO,
           "server: ota %s: %s: %s -> %s%s%s", job->id, t->device, fk_ota_tstate_name(was),
           fk_ota_tstate_name(t->state), t->error[0] ? ": " : "",
           fk_srv_log_safe(t->error, why, sizeof why));
    if (state_audit[t->state] != NULL && t->state != FK_OTA_QUEUED) {
        fk_srv_audit_target(srv, job, t, state_audit[t->state], "fleetkey-server");
    }
    /* An image signed ONLY by the rotation's new key, running valid: the device is on
     * new-key-only firmware (rotation step 5). */
    if (t->state == FK_OTA_CONFIRMED && srv->rot_found && job->info.signers.n == 1 &&
        strcasecmp(job->info.signers.fpr[0], srv->rot.keys.new_fpr) == 0) {
        fk_srv_rot_confirm(srv, t->device, 1);
    }
    job->dirty = 1;
}

/* The first job (in creation order) with a target for id that is not final. */
struct fk_ota_target *fk_srv_find_target(struct fk_server *srv, const char *id,
                                         struct ota_job **jobp) {
    for (size_t j = 0; j < srv->njobs; j++) {
        struct ota_job *job = srv->jobs[j];
        for (size_t i = 0; i < job->n; i++) {
            if (!fk_ota_tstate_final(job->t[i].state) && strcmp(job->t[i].device, id) == 0) {
                *jobp = job;
                return &job->t[i];
            }
        }
    }
    *jobp = NULL;
    return NULL;
}

/* Applies a report (hello or status "ota") to every open target of the device. */
void fk_srv_apply_report(struct session *s, const struct fk_wss_ota *ota) {
    struct fk_server *srv = s->srv;
    for (size_t j = 0; j < srv->njobs; j++) {
        struct ota_job *job = srv->jobs[j];
        for (size_t i = 0; i < job->n; i++) {
            struct fk_ota_target *t = &job->t[i];
            if (strcmp(t->device, s->id) != 0) {
                continue;
            }
            enum fk_ota_tstate was = t->state;
            if (fk_ota_target_report(t, job->info.app_sha256, ota)) {
                fk_srv_target_changed(srv, job, t, was);
            }
        }
    }
    s->target = fk_srv_find_target(srv, s->id, &s->job);
}

cJSON *fk_srv_job_json(const struct ota_job *j, int detail) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job", j->id);
    cJSON_AddStringToObject(o, "created_at", j->created_at);
    cJSON_AddStringToObject(o, "operator", j->operator_name);
    cJSON_AddStringToObject(o, "version", j->info.version);
    cJSON_AddNumberToObject(o, "secure_version", j->info.secure_version);
    cJSON_AddNumberToObject(o, "size", (double)j->info.size);
    cJSON_AddStringToObject(o, "sha256", j->info.sha256);
    cJSON_AddStringToObject(o, "app_sha256", j->info.app_sha256);
    cJSON_AddItemToObject(o, "signers", fk_srv_fprs_json(&j->info.signers));
    unsigned long counts[FK_OTA_FAILED + 1] = {0};
    int done = 1;
    cJSON *devs = detail ? cJSON_AddArrayToObject(o, "devices") : NULL;
    for (size_t i = 0; i < j->n; i++) {
        const struct fk_ota_target *t = &j->t[i];
        counts[t->state]++;
        done &= fk_ota_tstate_final(t->state);
        if (devs != NULL) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "id", t->device);
            cJSON_AddStringToObject(d, "state", fk_ota_tstate_name(t->state));
            cJSON_AddNumberToObject(d, "sent", (double)t->sent);
            cJSON_AddNumberToObject(d, "attempts", t->attempts);
            if (t->error[0] != '\0') {
                cJSON_AddStringToObject(d, "error", t->error);
            } else {
                cJSON_AddNullToObject(d, "error");
            }
            cJSON_AddStringToObject(d, "updated_at", j->updated[i]);
            cJSON_AddItemToArray(devs, d);
        }
    }
    cJSON *c = cJSON_AddObjectToObject(o, "counts");
    for (int st = FK_OTA_QUEUED; st <= FK_OTA_FAILED; st++) {
        cJSON_AddNumberToObject(c, fk_ota_tstate_name((enum fk_ota_tstate)st), counts[st]);
    }
    cJSON_AddBoolToObject(o, "done", done);
    return o;
}

cJSON *fk_srv_fprs_json(const struct fk_ota_fprs *set) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < set->n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(set->fpr[i]));
    }
    return a;
}
