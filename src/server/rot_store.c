/* Credential rotation jobs, their life and their files (rot_store.c): see rot_internal.h. */
#include "rot_internal.h"

#include "jobs_internal.h"
#include "session_internal.h"

#include "fleetkey/jbuf.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *const fk_srv_rot_cred_kind[FK_PLAN_CLASSES] = {"ca_cert", "mtls_cert", "psk",
                                                           "ota_pubkey"};

int fk_srv_rot_shared(const struct fk_server *srv) {
    return fk_inventory_is_postgresql(srv->cfg.inventory);
}

void fk_srv_rot_dirty(struct rot_job *j) {
    j->dirty = 1;
}

void fk_srv_rot_detail_text(const struct rot_job *j, cJSON *detail, char *buf, size_t size) {
    if (detail == NULL) {
        detail = cJSON_CreateObject();
    }
    cJSON_AddStringToObject(detail, "plan", j->id);
    if (!cJSON_PrintPreallocated(detail, buf, (int)size, 0)) {
        snprintf(buf, size, "{\"plan\":\"%s\"}", j->id);
    }
    cJSON_Delete(detail);
}

int fk_srv_rot_audit(struct fk_server *srv, const struct rot_job *j, const char *actor,
                     const char *kind, const char *subject, cJSON *detail) {
    char buf[1024];
    struct fk_diag d;
    fk_diag_init(&d);
    fk_srv_rot_detail_text(j, detail, buf, sizeof buf);
    if (fk_inventory_audit_append(srv->inv, actor, kind, subject, buf, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: audit %s not written: %s", j->id, kind, d.msg);
        return -1;
    }
    return 0;
}

cJSON *fk_srv_rot_cls_detail(enum fk_plan_class c, unsigned version, const char *reason) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "class", fk_plan_class_name(c));
    if (version > 0) {
        cJSON_AddNumberToObject(o, "version", version);
    }
    if (reason != NULL && reason[0] != '\0') {
        cJSON_AddStringToObject(o, "reason", reason);
    }
    return o;
}

/* ---- files ------------------------------------------------------------------------------ */

/* The devices of k by progress, as members of o (the plan's counts, each wave's progress). */
static void progress_json(cJSON *o, const struct fk_plan_counts *k) {
    cJSON_AddNumberToObject(o, "confirmed", (double)k->confirmed);
    cJSON_AddNumberToObject(o, "failed", (double)k->failed);
    cJSON_AddNumberToObject(o, "rolled_back", (double)k->rolled_back);
    cJSON_AddNumberToObject(o, "in_flight", (double)k->in_flight);
    cJSON_AddNumberToObject(o, "offline", (double)k->offline);
    cJSON_AddNumberToObject(o, "pending", (double)k->pending);
}

cJSON *fk_srv_rot_json(const struct rot_job *j, int detail) {
    struct fk_plan_counts k;
    fk_plan_counts(j->p, &k);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "created_at", j->created_at);
    cJSON_AddStringToObject(o, "operator", j->operator_name);
    cJSON_AddStringToObject(o, "state", fk_plan_state_name(j->p->state));
    cJSON_AddStringToObject(o, "pause_reason", j->p->pause_reason);
    cJSON_AddNumberToObject(o, "wave", j->p->wave);
    cJSON *w = cJSON_AddArrayToObject(o, "waves");
    cJSON *wd = cJSON_AddArrayToObject(o, "wave_devices");
    /* Each wave's own devices by progress (what the dashboard draws one bar per wave of). */
    cJSON *wp = cJSON_AddArrayToObject(o, "wave_progress");
    for (unsigned i = 0; i < j->p->spec.n_waves; i++) {
        cJSON_AddItemToArray(w, cJSON_CreateNumber(j->p->spec.waves[i]));
        /* the devices wave i covers, cumulative */
        cJSON_AddItemToArray(wd, cJSON_CreateNumber((double)fk_plan_wave_end(j->p, i)));
        struct fk_plan_counts wk;
        fk_plan_wave_counts(j->p, i, &wk);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "wave", i + 1);
        cJSON_AddNumberToObject(x, "devices", (double)wk.devices);
        cJSON_AddBoolToObject(x, "open", wk.open > 0);
        progress_json(x, &wk);
        cJSON_AddItemToArray(wp, x);
    }
    cJSON *cl = cJSON_AddArrayToObject(o, "classes");
    for (int c = 0; c < FK_PLAN_CLASSES; c++) {
        if (j->p->spec.classes & (1u << c)) {
            cJSON_AddItemToArray(cl, cJSON_CreateString(fk_plan_class_name((enum fk_plan_class)c)));
        }
    }
    cJSON_AddBoolToObject(o, "forced", j->p->forced);
    cJSON_AddBoolToObject(o, "revoked", j->revoked);
    cJSON *n = cJSON_AddObjectToObject(o, "counts");
    cJSON_AddNumberToObject(n, "devices", (double)k.devices);
    cJSON_AddNumberToObject(n, "open", (double)k.open);
    progress_json(n, &k);
    if (j->p->state == FK_PLAN_SETTLED) {
        char(*b)[FK_PLAN_DEV_SIZE] = NULL;
        size_t nb = 0;
        enum fk_err rc = fk_plan_interlock(j->p, &b, &nb); /* settled: never changes the plan
                                                               unless it holds, which the
                                                               tick would have seen first */
        cJSON *arr = cJSON_AddArrayToObject(o, "blockers");
        for (size_t i = 0; rc != FK_OK && i < nb; i++) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(b[i]));
        }
        free(b);
    }
    if (detail) {
        cJSON *arr = cJSON_AddArrayToObject(o, "devices");
        unsigned wave = 0;
        for (size_t i = 0; i < j->p->n; i++) {
            const struct fk_plan_target *t = &j->p->t[i];
            while (wave + 1u < j->p->spec.n_waves && i >= fk_plan_wave_end(j->p, wave)) {
                wave++; /* targets are in wave order */
            }
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "device", t->device);
            cJSON_AddNumberToObject(e, "wave", wave + 1);
            for (int c = 0; c < FK_PLAN_CLASSES; c++) {
                if (j->p->spec.classes & (1u << c)) {
                    cJSON_AddStringToObject(e, fk_plan_class_name((enum fk_plan_class)c),
                                            fk_plan_tstate_name((enum fk_plan_tstate)t->state[c]));
                }
            }
            cJSON_AddBoolToObject(e, "offline", t->offline);
            cJSON_AddStringToObject(e, "reason", t->reason);
            cJSON_AddItemToArray(arr, e);
        }
    }
    return o;
}

/* The file's text is printed straight into one buffer (fleetkey/jbuf.h): building a cJSON
 * tree of the fleet, parsing the plan's own JSON back into it and printing it again cost three
 * passes and a malloc per value, once a second while a plan changes (cJSON was 7-10 % of the
 * server's CPU at 10,000 devices). */
/* The file: the plan as fk_plan_to_json wrote it, plus what only the server knows (issued
 * serials, staged PSKs: secrets, hence 0600 and never logged). fk_srv_rot_parse reads it. */
char *fk_srv_rot_text(const struct rot_job *j) {
    char *pj = NULL;
    size_t pl = 0;
    struct fk_jbuf t = {0};
    if (fk_plan_to_json(j->p, &pj, &pl) != FK_OK) {
        return NULL;
    }
    fk_jbuf_reserve(&t, pl + 256 + j->p->n * 400);
    fk_jbuf_puts(&t, "{\"id\":");
    fk_jbuf_str(&t, j->id);
    fk_jbuf_puts(&t, ",\"created_at\":");
    fk_jbuf_str(&t, j->created_at);
    fk_jbuf_puts(&t, ",\"operator\":");
    fk_jbuf_str(&t, j->operator_name);
    fk_jbuf_puts(&t, j->revoked ? ",\"revoked\":true,\"plan\":" : ",\"revoked\":false,\"plan\":");
    fk_jbuf_put(&t, pj, pl);
    fk_jbuf_puts(&t, ",\"server\":{");
    for (size_t i = 0; i < j->p->n; i++) {
        const struct rot_dev *rd = &j->d[i];
        const char *arr[3] = {"\"version\":[", "],\"audited\":[", "],\"fpr\":["};
        if (i > 0) {
            fk_jbuf_put(&t, ",", 1);
        }
        fk_jbuf_str(&t, j->p->t[i].device);
        fk_jbuf_puts(&t, ":{");
        for (int k = 0; k < 3; k++) {
            fk_jbuf_puts(&t, arr[k]);
            for (int c = 0; c < FK_PLAN_CLASSES; c++) {
                if (c > 0) {
                    fk_jbuf_put(&t, ",", 1);
                }
                if (k == 0) {
                    fk_jbuf_int(&t, rd->version[c]);
                } else if (k == 1) {
                    fk_jbuf_int(&t, rd->audited[c] != 0);
                } else {
                    fk_jbuf_str(&t, rd->fpr[c]);
                }
            }
        }
        fk_jbuf_puts(&t, "],\"serial\":");
        fk_jbuf_str(&t, rd->serial);
        if (rd->has_psk) {
            char hex[2 * ROT_PSK_LEN + 1];
            if (fk_hex_encode(rd->psk, ROT_PSK_LEN, hex, sizeof hex) == FK_OK) {
                fk_jbuf_puts(&t, ",\"psk\":\"");
                fk_jbuf_put(&t, hex, 2 * ROT_PSK_LEN);
                fk_jbuf_put(&t, "\"", 1);
            }
            fk_wipe(hex, sizeof hex);
        }
        fk_jbuf_put(&t, "}", 1);
    }
    fk_jbuf_puts(&t, "}}");
    free(pj);
    return fk_jbuf_take(&t, NULL);
}

void fk_srv_rot_text_free(char *body) {
    if (body != NULL) {
        fk_wipe(body, strlen(body));
        free(body);
    }
}

void fk_srv_rot_save_file(struct fk_server *srv, struct rot_job *j) {
    char path[1200];
    struct fk_diag d;
    fk_diag_init(&d);
    char *txt = fk_srv_rot_text(j);
    snprintf(path, sizeof path, "%s/%s.json", srv->rot_dir, j->id);
    if (txt != NULL && fk_file_write_atomic(path, txt, strlen(txt), 0600, 0, &d) == FK_OK) {
        j->dirty = 0;
    }
    if (j->dirty) {
        fk_log(FK_LOG_WARN, "server: rotation %s: not saved (%s)", j->id,
               txt == NULL ? "out of memory" : d.msg);
    }
    fk_srv_rot_text_free(txt);
}

void fk_srv_rot_save_files(struct fk_server *srv) {
    for (size_t i = 0; i < srv->nrjobs; i++) {
        if (srv->rjobs[i]->dirty) {
            fk_srv_rot_save_file(srv, srv->rjobs[i]);
        }
    }
}

/* The operator's copy of a confirmed PSK: without it nobody could talk to the robot's DTLS
 * listener after the rotation (the old PSK is refused from the commit on). The fields are the
 * manifest's (psk_hex, psk_identity), so `fleetctl robot --keys FILE` reads it as it is. */
/* rot_dir/psk (confirmed copies) or rot_dir/psk/staged (deliveries in flight), and the file
 * of dev in it. */
static void psk_path(const struct fk_server *srv, const char *dev, int staged, char *dir,
                     size_t dir_size, char *path, size_t path_size) {
    snprintf(dir, dir_size, "%s/psk%s", srv->rot_dir, staged ? "/staged" : "");
    snprintf(path, path_size, "%s/%s.json", dir, dev);
}

int fk_srv_rot_write_psk(struct fk_server *srv, const char *dev, unsigned version,
                         const uint8_t psk[ROT_PSK_LEN], int staged) {
    char hex[ROT_PSK_LEN * 2 + 1];
    char dir[sizeof srv->rot_dir + 16];
    char path[sizeof dir + FK_PLAN_DEV_SIZE + 8];
    char text[512];
    struct fk_diag d = {0};
    int rc = -1;
    psk_path(srv, dev, staged, dir, sizeof dir, path, sizeof path);
    if (fk_hex_encode(psk, ROT_PSK_LEN, hex, sizeof hex) != FK_OK) {
        goto out;
    }
    int n = snprintf(text, sizeof text,
                     "{\n  \"device_id\": \"%s\",\n  \"psk_hex\": \"%s\",\n"
                     "  \"psk_identity\": \"%s.v%u\",\n  \"psk_version\": %u\n}\n",
                     dev, hex, dev, version, version);
    if (n < 0 || (size_t)n >= sizeof text || fk_mkdirs(dir, 0700, &d) != FK_OK ||
        fk_file_write_atomic(path, text, (size_t)n, 0600, 0, &d) != FK_OK) {
        fk_log(FK_LOG_ERROR, "server: %s: %sPSK v%u not saved: %s", dev, staged ? "staged " : "",
               version, d.msg[0] != '\0' ? d.msg : "too long");
        goto out;
    }
    rc = 0;
out:
    fk_wipe(hex, sizeof hex);
    fk_wipe(text, sizeof text);
    return rc;
}

int fk_srv_rot_read_psk(struct fk_server *srv, const char *dev, int staged, unsigned *version,
                        uint8_t psk[ROT_PSK_LEN]) {
    char dir[sizeof srv->rot_dir + 16];
    char path[sizeof dir + FK_PLAN_DEV_SIZE + 8];
    uint8_t *buf = NULL;
    size_t len = 0, pl = 0, bad = 0;
    cJSON *o = NULL;
    int rc = -1;
    psk_path(srv, dev, staged, dir, sizeof dir, path, sizeof path);
    if (fk_file_read(path, 4096, &buf, &len, NULL) != FK_OK) {
        goto out;
    }
    o = cJSON_ParseWithLength((const char *)buf, len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "device_id");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "psk_version");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "psk_hex");
    if (!cJSON_IsString(id) || strcmp(id->valuestring, dev) != 0 || !cJSON_IsNumber(v) ||
        v->valuedouble < 1 || v->valuedouble >= 2e9 || !cJSON_IsString(h) ||
        fk_hex_decode(h->valuestring, strlen(h->valuestring), psk, ROT_PSK_LEN, &pl, &bad) !=
            FK_OK ||
        pl != ROT_PSK_LEN) {
        fk_wipe(psk, ROT_PSK_LEN);
        goto out;
    }
    *version = (unsigned)v->valuedouble;
    rc = 0;
out:
    if (o != NULL && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "psk_hex"))) {
        char *x = cJSON_GetObjectItemCaseSensitive(o, "psk_hex")->valuestring;
        fk_wipe(x, strlen(x));
    }
    cJSON_Delete(o);
    fk_free_secret(buf, len);
    return rc;
}

void fk_srv_rot_drop_staged_psk(struct fk_server *srv, const char *dev) {
    char dir[sizeof srv->rot_dir + 16];
    char path[sizeof dir + FK_PLAN_DEV_SIZE + 8];
    psk_path(srv, dev, 1, dir, sizeof dir, path, sizeof path);
    (void)unlink(path); /* absent already: nothing to drop */
}

void fk_srv_rot_job_free(struct rot_job *j) {
    if (j == NULL) {
        return;
    }
    fk_srv_rot_job_free(j->base);
    if (j->d != NULL && j->p != NULL) {
        fk_wipe(j->d, j->p->n * sizeof *j->d);
    }
    free(j->d);
    free(j->chk_q);
    fk_plan_free(j->p);
    free(j);
}

int fk_srv_rot_job_append(struct fk_server *srv, struct rot_job *j) {
    void *q = realloc(srv->rjobs, (srv->nrjobs + 1) * sizeof *srv->rjobs);
    if (q == NULL) {
        return -1;
    }
    srv->rjobs = q;
    srv->rjobs[srv->nrjobs++] = j;
    return 0;
}

struct rot_job *fk_srv_rot_parse(const char *buf, size_t len, const char *id,
                                 struct fk_diag *diag) {
    char *pj = NULL;
    cJSON *o = NULL;
    struct rot_job *j = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    int ok = 0;
    o = cJSON_ParseWithLength(buf, len);
    const cJSON *plan = cJSON_GetObjectItemCaseSensitive(o, "plan");
    const cJSON *srvp = cJSON_GetObjectItemCaseSensitive(o, "server");
    j = calloc(1, sizeof *j);
    if (!cJSON_IsObject(plan) || !cJSON_IsObject(srvp) || j == NULL ||
        (pj = cJSON_PrintUnformatted(plan)) == NULL) {
        snprintf(d.msg, sizeof d.msg, "not a rotation job file");
        goto out;
    }
    if (fk_plan_from_json((const uint8_t *)pj, strlen(pj), &j->p, &d) != FK_OK) {
        goto out;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "created_at");
    snprintf(j->created_at, sizeof j->created_at, "%s", cJSON_IsString(it) ? it->valuestring : "");
    it = cJSON_GetObjectItemCaseSensitive(o, "operator");
    snprintf(j->operator_name, sizeof j->operator_name, "%s",
             cJSON_IsString(it) ? it->valuestring : "");
    j->revoked = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "revoked"));
    j->d = calloc(j->p->n ? j->p->n : 1, sizeof *j->d);
    if (j->d == NULL) {
        goto out;
    }
    /* One walk over the entries, each placed by the plan's bsearch: a lookup per device in
     * the object would be quadratic (0.85 s CPU at 10,000 devices, minutes at 100,000), and
     * a shared plan is read every second. A device without an entry keeps zeros. */
    const cJSON *e;
    cJSON_ArrayForEach(e, srvp) {
        const struct fk_plan_target *tg = e->string != NULL ? fk_plan_find(j->p, e->string) : NULL;
        if (tg == NULL) {
            continue;
        }
        struct rot_dev *rd = &j->d[tg - j->p->t];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "version");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "audited");
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "fpr");
        for (int c = 0; c < FK_PLAN_CLASSES; c++) {
            const cJSON *x = cJSON_GetArrayItem(v, c);
            rd->version[c] = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 2e9
                                 ? (unsigned)x->valuedouble
                                 : 0;
            x = cJSON_GetArrayItem(a, c);
            rd->audited[c] = cJSON_IsNumber(x) && x->valueint != 0;
            x = cJSON_GetArrayItem(f, c);
            snprintf(rd->fpr[c], sizeof rd->fpr[c], "%s", cJSON_IsString(x) ? x->valuestring : "");
        }
        it = cJSON_GetObjectItemCaseSensitive(e, "serial");
        snprintf(rd->serial, sizeof rd->serial, "%s", cJSON_IsString(it) ? it->valuestring : "");
        it = cJSON_GetObjectItemCaseSensitive(e, "psk");
        size_t pl = 0, bad = 0;
        if (cJSON_IsString(it) &&
            fk_hex_decode(it->valuestring, strlen(it->valuestring), rd->psk, sizeof rd->psk, &pl,
                          &bad) == FK_OK &&
            pl == ROT_PSK_LEN) {
            rd->has_psk = 1;
        }
    }
    ok = 1;
out:
    if (!ok) {
        fk_diag_set(diag, FK_E_PARSE, "%s", d.msg[0] != '\0' ? d.msg : "out of memory");
        fk_srv_rot_job_free(j);
        j = NULL;
    }
    if (pj != NULL) {
        cJSON_free(pj);
    }
    cJSON_Delete(o); /* held the PSK hex: cJSON frees without wiping; short-lived */
    return j;
}

enum fk_err fk_rot_job_check(const uint8_t *buf, size_t len, size_t *devices, char **canonical,
                             struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct rot_job *j = NULL;
    char *t = NULL;
    if (devices != NULL) {
        *devices = 0;
    }
    if (canonical != NULL) {
        *canonical = NULL;
    }
    FK_ENSURE(len <= FK_INV_PLAN_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "rotation job of %zu bytes (at most %u)", len,
                          FK_INV_PLAN_MAX));
    FK_ENSURE((j = fk_srv_rot_parse((const char *)buf, len, "rot-check", diag)) != NULL,
              FK_E_PARSE);
    if (canonical != NULL) {
        FK_ENSURE((t = fk_srv_rot_text(j)) != NULL, fk_diag_set(diag, FK_E_NOMEM, "memory"));
        size_t n = strlen(t);
        FK_ENSURE((*canonical = malloc(n + 1)) != NULL, fk_diag_set(diag, FK_E_NOMEM, "memory"));
        memcpy(*canonical, t, n + 1);
    }
    if (devices != NULL) {
        *devices = j->p->n;
    }
    rc = FK_OK;
out:
    fk_srv_rot_text_free(t);
    fk_srv_rot_job_free(j);
    return rc;
}

static int load_one(struct fk_server *srv, const char *name, unsigned long num) {
    char path[1200], id[16];
    uint8_t *buf = NULL;
    size_t len = 0;
    struct rot_job *j = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    int ok = 0;
    snprintf(path, sizeof path, "%s/%s", srv->rot_dir, name);
    snprintf(id, sizeof id, "rot-%06lu", num % 1000000u);
    if (fk_file_read(path, 256u << 20, &buf, &len, &d) != FK_OK ||
        (j = fk_srv_rot_parse((const char *)buf, len, id, &d)) == NULL ||
        fk_srv_rot_job_append(srv, j) != 0) {
        goto out;
    }
    fk_log(FK_LOG_INFO, "server: rotation %s loaded: %s, %zu devices", j->id,
           fk_plan_state_name(j->p->state), j->p->n);
    j = NULL;
    ok = 1;
out:
    if (!ok) {
        fk_log(FK_LOG_WARN, "server: rotation file %s not loaded (left on disk): %s", path, d.msg);
    }
    fk_srv_rot_job_free(j);
    if (buf != NULL) {
        fk_free_secret(buf, len);
    }
    return ok ? 0 : -1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void fk_srv_rot_load_files(struct fk_server *srv) {
    srv->next_rjob = 1;
    DIR *dir = opendir(srv->rot_dir);
    char **names = NULL;
    size_t n = 0;
    if (dir == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        unsigned long num;
        char tail[8];
        if (sscanf(e->d_name, "rot-%6lu.jso%1s", &num, tail) == 2 && strlen(e->d_name) == 15) {
            char **q = realloc(names, (n + 1) * sizeof *names);
            if (q == NULL) {
                break;
            }
            names = q;
            names[n++] = strdup(e->d_name);
            if (num >= srv->next_rjob) {
                srv->next_rjob = num + 1;
            }
        }
    }
    closedir(dir);
    if (n > 0) {
        qsort(names, n, sizeof *names, cmp_str);
    }
    for (size_t i = 0; i < n; i++) {
        if (names[i] != NULL) {
            (void)load_one(srv, names[i], strtoul(names[i] + 4, NULL, 10));
        }
        free(names[i]);
    }
    free(names);
}

void fk_srv_rot_free(struct fk_server *srv) {
    for (size_t i = 0; i < srv->nrjobs; i++) {
        fk_srv_rot_job_free(srv->rjobs[i]);
    }
    free(srv->rjobs);
    srv->rjobs = NULL;
    srv->nrjobs = 0;
    fk_pki_ca_free(srv->ca);
    srv->ca = NULL;
}

struct rot_job *fk_srv_rot_current(struct fk_server *srv) {
    for (size_t i = srv->nrjobs; i-- > 0;) {
        struct rot_job *j = srv->rjobs[i];
        if (j->p->state != FK_PLAN_ABORTED && (j->p->state != FK_PLAN_DONE || !j->revoked)) {
            return j;
        }
    }
    return NULL;
}

/* ---- creating ----------------------------------------------------------------------------- */

int fk_srv_rot_ca_bundle(struct fk_server *srv, uint8_t **der, size_t *len, size_t *count,
                         char fpr[FK_FPR_LEN], char *why, size_t why_size) {
    const char *path = srv->cfg.ca_bundle;
    uint8_t *out = NULL;
    size_t n = 0, k = 0;
    int rc = -1;
    X509 *x = NULL;
    *der = NULL;
    *len = 0;
    *count = 0;
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        snprintf(why, why_size, "ca_bundle %s cannot be read", path);
        goto out;
    }
    out = malloc(ROT_CA_DER_MAX);
    if (out == NULL) {
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        int l = i2d_X509(x, NULL);
        if (++k > ROT_CA_CERTS_MAX) {
            snprintf(why, why_size, "ca_bundle %s holds more than %d certificates", path,
                     ROT_CA_CERTS_MAX);
            goto out;
        }
        if (l <= 0 || n + (size_t)l > ROT_CA_DER_MAX) {
            snprintf(why, why_size, "ca_bundle %s is larger than a device takes (%d bytes of DER)",
                     path, ROT_CA_DER_MAX);
            goto out;
        }
        unsigned char *p = out + n;
        n += (size_t)i2d_X509(x, &p);
        X509_free(x);
        x = NULL;
    }
    ERR_clear_error(); /* the end of the file */
    if (k == 0) {
        snprintf(why, why_size, "ca_bundle %s holds no PEM certificate", path);
        goto out;
    }
    fk_fpr(out, n, fpr);
    *der = out;
    *len = n;
    *count = k;
    out = NULL;
    rc = 0;
out:
    X509_free(x);
    BIO_free(b);
    free(out);
    return rc;
}

int fk_srv_rot_create_check(struct fk_server *srv, const struct fk_plan_spec *spec,
                            unsigned *status, char *why, size_t why_size) {
    if (fk_srv_rot_current(srv) != NULL) {
        *status = 409;
        snprintf(why, why_size, "a rotation is already under way: %s", fk_srv_rot_current(srv)->id);
        return -1;
    }
    if (spec->classes & (1u << FK_PLAN_OTA)) {
        /* what each delivery will carry, checked once now (rot_ota.c) */
        char fpr[72];
        cJSON *b = fk_srv_rot_ota_body(srv, fpr, why, why_size);
        if (b == NULL) {
            *status = 400;
            return -1;
        }
        cJSON_Delete(b);
    }
    if (spec->classes & (1u << FK_PLAN_CA)) {
        if (srv->cfg.ca_bundle[0] == '\0') {
            *status = 400;
            snprintf(why, why_size,
                     "ca rotation needs ca_bundle (a PEM file of the trust anchors "
                     "the devices should hold next) in the server configuration");
            return -1;
        }
        uint8_t *der = NULL;
        size_t dl = 0, nc = 0;
        char fpr[FK_FPR_LEN];
        if (fk_srv_rot_ca_bundle(srv, &der, &dl, &nc, fpr, why, why_size) != 0) {
            *status = 400;
            return -1;
        }
        free(der);
    }
    if ((spec->classes & (1u << FK_PLAN_MTLS)) && srv->cfg.ca_dir[0] == '\0') {
        *status = 400;
        snprintf(why, why_size, "mtls rotation needs ca_dir in the server configuration");
        return -1;
    }
    return 0;
}

int fk_srv_rot_create_job(struct fk_server *srv, const struct fk_plan_spec *spec,
                          const char *const *devices, size_t n, const char *operator_name,
                          const char *id, long long db_id, struct rot_job **out, unsigned *status,
                          char *why, size_t why_size) {
    struct fk_diag d;
    fk_diag_init(&d);
    struct rot_job *j = calloc(1, sizeof *j);
    *out = NULL;
    if (j == NULL) {
        goto nomem;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    j->db_id = db_id;
    if (fk_plan_new(j->id, spec, devices, n, &j->p, &d) != FK_OK) {
        *status = 400;
        snprintf(why, why_size, "%s", d.msg[0] ? d.msg : "bad plan");
        fk_srv_rot_job_free(j);
        return -1;
    }
    j->d = calloc(n ? n : 1, sizeof *j->d);
    if (j->d == NULL || fk_srv_rot_job_append(srv, j) != 0) {
        goto nomem;
    }
    fk_time_rfc3339((long long)time(NULL), j->created_at);
    snprintf(j->operator_name, sizeof j->operator_name, "%s", operator_name);
    /* Created paused: `plan` shows what would happen before anything is delivered. */
    if (fk_plan_pause(j->p, "not started") != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: not paused", j->id);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "devices", (double)n);
    cJSON_AddNumberToObject(o, "classes", spec->classes);
    fk_srv_rot_audit(srv, j, operator_name, "rotation.created", j->id, o);
    *out = j;
    return 0;
nomem:
    fk_srv_rot_job_free(j);
    *status = 500;
    snprintf(why, why_size, "out of memory");
    return -1;
}
