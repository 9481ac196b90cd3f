/* The /api/ota routes of the admin API: see admin_internal.h.
 *
 * POST /api/ota?device=ID[&device=ID...] | ?all=1 takes a signed image: everything that can be
 * refused from the headers is refused before the body arrives; the body is spooled to a temp
 * file in ota_dir, then checked (a signed app image, no retired signing key, every target
 * trusting a key that signed it), renamed to <sha256>.bin and turned into a job (jobs.c) that
 * is saved before the operator hears 202. Each refusal is one warn line and one audit row. */
#include "admin_internal.h"

#include "jobs_internal.h"
#include "session_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DISCARD_MAX (1024u * 1024u) /* body bytes read after an early refusal, then close */

void fk_srv_upload_cleanup(struct http_sess *h) {
    if (h->has_fd) {
        close(h->fd);
        h->has_fd = 0;
    }
    if (h->tmp[0] != '\0') {
        unlink(h->tmp);
        h->tmp[0] = '\0';
    }
    free(h->ids);
    h->ids = NULL;
    h->nids = 0;
}

/* Refuses an upload: one warn line, one audit row (kind ota.upload_refused), the JSON answer
 * {"error": why, ...extra}. Takes extra (may be NULL). */
static int upload_refuse(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         unsigned status, const char *why, const char *subject, cJSON *extra) {
    cJSON *o = extra != NULL ? extra : cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", why);
    char detail[2048];
    cJSON *a = cJSON_Duplicate(o, 1);
    cJSON_AddNumberToObject(a, "status", status);
    if (!cJSON_PrintPreallocated(a, detail, (int)sizeof detail, 0)) {
        snprintf(detail, sizeof detail, "{\"status\":%u}", status);
    }
    cJSON_Delete(a);
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_audit_append(srv->inv,
                                  h->operator_name[0] ? h->operator_name : "fleetkey-server",
                                  "ota.upload_refused", subject, detail, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: audit ota.upload_refused not written: %s", d.msg);
    }
    fk_log(FK_LOG_WARN, "server: POST /api/ota by %s refused (%u): %s",
           h->operator_name[0] ? h->operator_name : "?", status, why);
    srv->ota_uploads_refused++;
    h->refused = 1;
    fk_srv_upload_cleanup(h);
    return fk_srv_http_json(wsi, h, status, o);
}

static int add_target_id(struct http_sess *h, const char *id) {
    for (size_t i = 0; i < h->nids; i++) {
        if (strcmp(h->ids[i], id) == 0) {
            return 0;
        }
    }
    void *p = realloc(h->ids, (h->nids + 1) * sizeof *h->ids);
    if (p == NULL) {
        return -1;
    }
    h->ids = p;
    snprintf(h->ids[h->nids++], sizeof h->ids[0], "%s", id);
    return 0;
}

static int all_one(void *user, const struct fk_inv_device *d) {
    struct http_sess *h = user;
    if (strcmp(d->state, "retired") != 0 && add_target_id(h, d->id) != 0) {
        return 1;
    }
    return 0;
}

/* POST /api/ota?device=ID[&device=ID...] | ?all=1, headers read: who, which devices, how big.
 * Everything that can be refused before the image arrives is refused here. */
int fk_srv_ota_post_start(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                          const char *path) {
    (void)path;
    char arg[128], cl[32];
    h->upload = 1;
    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
        if (strncmp(arg, "device=", 7) == 0) {
            const char *id = arg + 7;
            struct fk_inv_device d;
            if (!fk_wss_id_valid(id, strlen(id)) || strlen(id) >= sizeof d.id) {
                return upload_refuse(srv, wsi, h, 404, "no such device", "-", NULL);
            }
            enum fk_err rc = fk_inventory_device_get(srv->inv, id, &d, NULL);
            if (rc == FK_E_NOTFOUND || (rc == FK_OK && strcmp(d.state, "retired") == 0)) {
                char why[160];
                snprintf(why, sizeof why, "no such device: %s%s", id,
                         rc == FK_OK ? " (retired)" : "");
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "device", id);
                return upload_refuse(srv, wsi, h, 404, why, id, o);
            } else if (rc != FK_OK) {
                return upload_refuse(srv, wsi, h, 500, "inventory error", id, NULL);
            }
            if (add_target_id(h, id) != 0) {
                return -1;
            }
        } else if (strcmp(arg, "all=1") == 0) {
            h->all = 1;
        } else {
            return upload_refuse(srv, wsi, h, 400, "expected ?device=ID[&device=ID...] or ?all=1",
                                 "-", NULL);
        }
    }
    if ((h->nids > 0) == (h->all != 0)) {
        return upload_refuse(srv, wsi, h, 400, "expected ?device=ID[&device=ID...] or ?all=1", "-",
                             NULL);
    }
    if (h->all && (fk_inventory_device_list(srv->inv, all_one, h, NULL) != FK_OK)) {
        return upload_refuse(srv, wsi, h, 500, "inventory error", "-", NULL);
    }
    if (h->nids == 0) {
        return upload_refuse(srv, wsi, h, 404, "no device to update", "-", NULL);
    }
    unsigned long n = 0;
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
        fk_parse_ulong(cl, ~0ul, &n) != FK_OK) {
        return upload_refuse(srv, wsi, h, 411, "Content-Length required", "-", NULL);
    }
    if (n > srv->cfg.ota_max_image) {
        char why[128];
        snprintf(why, sizeof why, "image of %lu bytes is larger than ota_max_image (%llu)", n,
                 srv->cfg.ota_max_image);
        return upload_refuse(srv, wsi, h, 413, why, "-", NULL);
    }
    h->clen = n;
    int w = snprintf(h->tmp, sizeof h->tmp, "%s/.upload-XXXXXX", srv->ota_dir);
    if (w < 0 || (size_t)w >= sizeof h->tmp) {
        h->tmp[0] = '\0';
        return upload_refuse(srv, wsi, h, 500, "ota_dir path too long", "-", NULL);
    }
    h->fd = mkstemp(h->tmp);
    h->has_fd = h->fd >= 0;
    if (!h->has_fd) {
        fk_log(FK_LOG_ERROR, "server: cannot create a spool file in %s: %s", srv->ota_dir,
               strerror(errno));
        h->tmp[0] = '\0';
        return upload_refuse(srv, wsi, h, 500, "cannot spool the image", "-", NULL);
    }
    (void)fchmod(h->fd, 0600);
    if (n == 0) {
        return upload_refuse(srv, wsi, h, 422, "empty body: expected a signed image", "-", NULL);
    }
    return 0;
}

int fk_srv_ota_post_body(struct http_sess *h, const uint8_t *in, size_t len) {
    if (h->refused || !h->has_fd) {
        h->got += len;
        return h->got > DISCARD_MAX ? -1 : 0; /* refused already: read a little, then close */
    }
    if (len > h->clen - h->got) {
        return -1;
    }
    while (len > 0) {
        ssize_t w = write(h->fd, in, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            fk_log(FK_LOG_ERROR, "server: spool write %s: %s", h->tmp, strerror(errno));
            fk_srv_upload_cleanup(h);
            h->refused = 1; /* answered at the end of the body */
            return 0;
        }
        in += w;
        len -= (size_t)w;
        h->got += (size_t)w;
    }
    return 0;
}

struct trust_walk {
    struct fk_ota_fprs *set;
    const struct fk_ota_image_info *info;
};

static int trust_cred(void *user, const struct fk_inv_credential *c) {
    struct trust_walk *w = user;
    if (strcmp(c->state, "active") != 0) {
        return 0;
    }
    if (strcmp(c->kind, FK_ROT_KIND_KEY) == 0) {
        fk_ota_fprs_add(w->set, c->fingerprint);
    } else if (strcmp(c->kind, "ota_pubkey") == 0) {
        /* provision-keys generate/batch record the OTA key written into the device's NVS as
         * fk_fpr(DER): a device never connected still trusts the key it was minted with */
        for (size_t i = 0; i < w->info->signers_der.n; i++) {
            if (strcmp(c->fingerprint, w->info->signers_der.fpr[i]) == 0) {
                fk_ota_fprs_add(w->set, w->info->signers.fpr[i]);
            }
        }
    }
    return 0;
}

/* What a device trusts as far as the server knows: the keys its last hello reported (or the
 * live connection's report), plus its inventory rows ota_signing_key "active". *seen: it sent
 * an "ota" report once. Fills *p (scratch) with the presence row; *have_p says it did. */
static enum fk_err device_trust(struct fk_server *srv, const char *id,
                                const struct fk_ota_image_info *info, struct fk_ota_fprs *set,
                                struct fk_inv_presence *p, int *have_p) {
    memset(set, 0, sizeof *set);
    *have_p = fk_inventory_presence_get(srv->inv, id, p, NULL) == FK_OK;
    if (*have_p && p->ota[0] != '\0') {
        cJSON *o = cJSON_Parse(p->ota);
        const cJSON *keys = cJSON_GetObjectItemCaseSensitive(o, "keys");
        const cJSON *e = NULL;
        cJSON_ArrayForEach(e, keys) {
            if (cJSON_IsString(e)) {
                fk_ota_fprs_add(set, e->valuestring);
            }
        }
        cJSON_Delete(o);
    }
    const struct session *s = fk_srv_session_of(srv, id);
    for (size_t i = 0; s != NULL && i < s->ota.nkeys; i++) {
        fk_ota_fprs_add(set, s->ota.keys[i].fpr);
    }
    struct trust_walk w = {set, info};
    return fk_inventory_credential_list(srv->inv, id, trust_cred, &w, NULL);
}

int fk_srv_ota_post_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h) {
    uint8_t *img = NULL;
    size_t len = 0;
    struct fk_ota_image_info info;
    struct fk_inv_presence *p = NULL;
    struct ota_job *job = NULL;
    cJSON *blocking = NULL;
    char why[700], pre[17] = "-", final[1200];
    int r = -1;
    struct fk_diag d;
    fk_diag_init(&d);
    h->upload = 0;
    if (!h->has_fd || h->got != h->clen) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", "-", NULL);
        goto out;
    }
    if (fsync(h->fd) != 0 || fk_file_read(h->tmp, (size_t)h->clen, &img, &len, &d) != FK_OK) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", "-", NULL);
        goto out;
    }
    if (fk_ota_image_check(img, len, &info, &d) != FK_OK) {
        snprintf(why, sizeof why, "not a signed app image: %s", d.msg);
        r = upload_refuse(srv, wsi, h, 422, why, "-", NULL);
        goto out;
    }
    snprintf(pre, sizeof pre, "%.16s", info.sha256);
    /* No signing key of the image may be retired (rotation step 6: signing with it is
     * refused, so is delivering what it signed). */
    cJSON *retired = cJSON_CreateArray();
    for (size_t i = 0; i < info.signers.n; i++) {
        int ret = 0;
        if (fk_rotation_key_retired(srv->inv, info.signers.fpr[i], &ret, &d) != FK_OK) {
            cJSON_Delete(retired);
            r = upload_refuse(srv, wsi, h, 500, "inventory error", pre, NULL);
            goto out;
        }
        if (ret) {
            cJSON_AddItemToArray(retired, cJSON_CreateString(info.signers.fpr[i]));
        }
    }
    if (cJSON_GetArraySize(retired) > 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "keys", retired);
        r = upload_refuse(srv, wsi, h, 409, "the image is signed with a retired OTA key", pre, o);
        goto out;
    }
    cJSON_Delete(retired);
    /* The interlock: "a mis-signed OTA leaves devices unable to update". Every target must
     * trust at least one key that signed the image, or nothing is sent to anyone. */
    p = malloc(sizeof *p);
    if (p == NULL) {
        goto out;
    }
    blocking = cJSON_CreateArray();
    cJSON *ids = cJSON_CreateArray();
    for (size_t i = 0; i < h->nids; i++) {
        struct fk_ota_fprs trusted;
        int have_p = 0;
        if (device_trust(srv, h->ids[i], &info, &trusted, p, &have_p) != FK_OK) {
            cJSON_Delete(ids);
            r = upload_refuse(srv, wsi, h, 500, "inventory error", pre, NULL);
            goto out;
        }
        if (!fk_ota_trusts_any(&trusted, &info.signers)) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "id", h->ids[i]);
            cJSON_AddItemToObject(b, "trusts", fk_srv_fprs_json(&trusted));
            if (have_p) {
                cJSON_AddStringToObject(b, "last_seen", p->last_seen);
            } else {
                cJSON_AddNullToObject(b, "last_seen");
            }
            cJSON_AddItemToArray(blocking, b);
            cJSON_AddItemToArray(ids, cJSON_CreateString(h->ids[i]));
        }
    }
    if (cJSON_GetArraySize(ids) > 0) {
        cJSON *o = cJSON_CreateObject();
        snprintf(why, sizeof why,
                 "%d device(s) trust none of the keys that signed the image and would refuse it",
                 cJSON_GetArraySize(ids));
        cJSON_AddItemToObject(o, "devices", ids);
        cJSON_AddItemToObject(o, "blocking", blocking);
        blocking = NULL;
        cJSON_AddItemToObject(o, "signers", fk_srv_fprs_json(&info.signers));
        r = upload_refuse(srv, wsi, h, 409, why, pre, o);
        goto out;
    }
    cJSON_Delete(ids);
    /* Accepted: the spool file gets its name (the SHA-256), then the job. */
    snprintf(final, sizeof final, "%s/%s.bin", srv->ota_dir, info.sha256);
    if (rename(h->tmp, final) != 0 || fk_dir_sync(srv->ota_dir, NULL) != FK_OK) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", pre, NULL);
        goto out;
    }
    h->tmp[0] = '\0';
    job = calloc(1, sizeof *job);
    if (job == NULL || (job->t = calloc(h->nids, sizeof *job->t)) == NULL ||
        (job->updated = calloc(h->nids, sizeof *job->updated)) == NULL) {
        goto out;
    }
    job->fd = open(final, O_RDONLY | O_CLOEXEC);
    if (job->fd < 0) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", pre, NULL);
        goto out;
    }
    snprintf(job->id, sizeof job->id, "j-%06lu", srv->next_job);
    fk_time_rfc3339((long long)time(NULL), job->created_at);
    snprintf(job->operator_name, sizeof job->operator_name, "%s", h->operator_name);
    snprintf(job->path, sizeof job->path, "%s", final);
    job->info = info;
    job->n = h->nids;
    if (fk_srv_job_append(srv, job) != 0) {
        goto out;
    }
    srv->next_job++;
    struct ota_job *j = job;
    job = NULL;
    cJSON *resp = cJSON_CreateObject();
    cJSON_AddStringToObject(resp, "job", j->id);
    cJSON *devs = cJSON_AddArrayToObject(resp, "devices");
    for (size_t i = 0; i < j->n; i++) {
        struct fk_ota_target *t = &j->t[i];
        snprintf(t->device, sizeof t->device, "%s", h->ids[i]);
        t->state = FK_OTA_QUEUED;
        memcpy(j->updated[i], j->created_at, sizeof j->updated[i]);
        cJSON_AddItemToArray(devs, cJSON_CreateString(t->device));
        fk_srv_audit_target(srv, j, t, "device.ota_queued", h->operator_name);
        srv->ota_states[FK_OTA_QUEUED]++;
        /* Idempotent re-runs: a device already running this image valid is confirmed. */
        struct session *s = fk_srv_session_of(srv, t->device);
        struct fk_wss_ota rep;
        memset(&rep, 0, sizeof rep);
        if (s != NULL) {
            rep = s->ota;
        } else if (fk_inventory_presence_get(srv->inv, t->device, p, NULL) == FK_OK &&
                   p->ota[0] != '\0') {
            cJSON *o = cJSON_Parse(p->ota);
            const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "app_sha256");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
            if (cJSON_IsString(sha) && cJSON_IsString(st)) {
                rep.present = 1;
                snprintf(rep.app_sha256, sizeof rep.app_sha256, "%s", sha->valuestring);
                snprintf(rep.state, sizeof rep.state, "%s", st->valuestring);
            }
            cJSON_Delete(o);
        }
        if (fk_ota_target_report(t, j->info.app_sha256, &rep)) {
            snprintf(t->error, sizeof t->error, "already running it");
            fk_srv_target_changed(srv, j, t, FK_OTA_QUEUED);
        }
    }
    j->dirty = 0;
    fk_srv_job_save(srv, j); /* on disk before the operator hears 202 */
    cJSON_AddStringToObject(resp, "version", j->info.version);
    cJSON_AddStringToObject(resp, "sha256", j->info.sha256);
    cJSON_AddNumberToObject(resp, "size", (double)j->info.size);
    cJSON_AddItemToObject(resp, "signers", fk_srv_fprs_json(&j->info.signers));
    fk_log(FK_LOG_INFO,
           "server: ota %s: %s queued by %s for %zu device(s): version %s, %llu "
           "bytes, sha256 %s",
           j->id, final, h->operator_name, j->n, j->info.version, (unsigned long long)j->info.size,
           pre);
    fk_srv_upload_cleanup(h);
    r = fk_srv_http_json(wsi, h, 202, resp);
    /* Connected targets start now rather than at the next tick. */
    for (size_t i = 0; i < j->n; i++) {
        struct session *s = fk_srv_session_of(srv, j->t[i].device);
        if (s != NULL && fk_srv_push_next(s) != 0) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_INTERNAL, "internal error");
        }
    }
out:
    fk_srv_job_free(job);
    cJSON_Delete(blocking);
    free(p);
    free(img);
    if (r < 0) {
        fk_srv_upload_cleanup(h);
    }
    return r;
}

int fk_srv_ota_post_deny(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         const char *name) {
    h->upload = 1;
    return upload_refuse(srv, wsi, h, 403, "operator certificate required", name[0] ? name : "-",
                         NULL);
}

int fk_srv_ota_list(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    (void)path;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "jobs");
    for (size_t j = 0; j < srv->njobs; j++) {
        cJSON_AddItemToArray(arr, fk_srv_job_json(srv->jobs[j], 0));
    }
    return fk_srv_http_json(wsi, h, 200, o);
}

int fk_srv_ota_job(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    const char *id = path + strlen("/api/ota/");
    for (size_t j = 0; j < srv->njobs; j++) {
        if (strcmp(srv->jobs[j]->id, id) == 0) {
            return fk_srv_http_json(wsi, h, 200, fk_srv_job_json(srv->jobs[j], 1));
        }
    }
    return fk_srv_http_json_error(wsi, h, 404, "no such job");
}
