/* The /api/rotation routes (docs/server.md, "Credential rotation"): create a plan (paused, "not
 * started"), list and show plans, start/pause/resume/abort, force past the interlock. Operator
 * certificate only (the route table in admin.c). Service thread only. */
#include "admin_internal.h"
#include "rot_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A plan names its devices: 64 KiB held about 2,900 ids, less than the fleets the plans are
 * for; 4 MiB holds 100,000 of the longest (FK_PLAN_DEV_SIZE). Operator requests only. */
#define JBODY_MAX (4u * 1024u * 1024u)

static struct rot_job *find(struct fk_server *srv, const char *id, size_t idlen) {
    for (size_t i = 0; i < srv->nrjobs; i++) {
        if (strlen(srv->rjobs[i]->id) == idlen && strncmp(srv->rjobs[i]->id, id, idlen) == 0) {
            return srv->rjobs[i];
        }
    }
    return NULL;
}

int fk_srv_rot_list(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    (void)path;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "plans");
    for (size_t i = 0; i < srv->nrjobs; i++) {
        cJSON_AddItemToArray(arr, fk_srv_rot_json(srv->rjobs[i], 0));
    }
    return fk_srv_http_json(wsi, h, 200, o);
}

int fk_srv_rot_get(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    const char *id = path + strlen("/api/rotation/");
    struct rot_job *j = find(srv, id, strlen(id));
    if (j == NULL) {
        return fk_srv_http_json_error(wsi, h, 404, "no such plan");
    }
    char arg[64];
    int detail = 0;
    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
        detail |= strcmp(arg, "devices=1") == 0;
    }
    return fk_srv_http_json(wsi, h, 200, fk_srv_rot_json(j, detail));
}

/* POST routes read a JSON body first (Content-Length; none or 0: act at once). */
static int want_body(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path,
                     fk_srv_route_fn *done) {
    char cl[32];
    unsigned long n = 0;
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        fk_parse_ulong(cl, JBODY_MAX, &n) != FK_OK) {
        return fk_srv_http_json_error(wsi, h, 413, "body too big");
    }
    snprintf(h->jpath, sizeof h->jpath, "%s", path);
    free(h->jbuf);
    h->jbuf = NULL;
    h->jlen = 0;
    if (n == 0) {
        return done(srv, wsi, h, h->jpath);
    }
    h->jbody = 1;
    h->jdone = done;
    return 0;
}

int fk_srv_rot_body(struct http_sess *h, const uint8_t *in, size_t len) {
    if (h->jlen + len > JBODY_MAX) {
        return -1;
    }
    char *q = realloc(h->jbuf, h->jlen + len + 1);
    if (q == NULL) {
        return -1;
    }
    h->jbuf = q;
    memcpy(h->jbuf + h->jlen, in, len);
    h->jlen += len;
    h->jbuf[h->jlen] = '\0';
    return 0;
}

int fk_srv_rot_body_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h) {
    h->jbody = 0;
    return h->jdone(srv, wsi, h, h->jpath);
}

static int all_cb(void *user, const struct fk_inv_device *d) {
    cJSON *arr = user;
    if (strcmp(d->state, "retired") != 0) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(d->id));
    }
    return 0;
}

static int create_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                       const char *path) {
    (void)path;
    struct fk_plan_spec spec;
    struct fk_diag d;
    fk_diag_init(&d);
    memset(&spec, 0, sizeof spec);
    spec.max_failure_pct = 5;
    spec.timeout_s = 60;
    spec.retries = 2;
    cJSON *o = h->jbuf != NULL ? cJSON_ParseWithLength(h->jbuf, h->jlen) : NULL;
    cJSON *devs = NULL;
    const char **ids = NULL;
    int r = 0;
    char why[700];
    unsigned status = 400;
    if (!cJSON_IsObject(o)) {
        r = fk_srv_http_json_error(wsi, h, 400, "body: a JSON object expected");
        goto out;
    }
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "classes");
    const cJSON *wv = cJSON_GetObjectItemCaseSensitive(o, "waves");
    if (!cJSON_IsString(it) || fk_plan_parse_classes(it->valuestring, &spec.classes, &d) != FK_OK ||
        (wv != NULL && !cJSON_IsString(wv)) ||
        fk_plan_parse_waves(wv != NULL ? wv->valuestring : "100", &spec, &d) != FK_OK) {
        snprintf(why, sizeof why, "classes/waves: %s", d.msg[0] ? d.msg : "missing");
        goto refuse;
    }
    static const char *const nums[] = {"max_failure_pct", "timeout_s", "retries"};
    unsigned *dst[] = {&spec.max_failure_pct, &spec.timeout_s, &spec.retries};
    for (int k = 0; k < 3; k++) {
        it = cJSON_GetObjectItemCaseSensitive(o, nums[k]);
        if (it == NULL) {
            continue;
        }
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 86400 ||
            it->valuedouble != (double)it->valueint) {
            snprintf(why, sizeof why, "%s: not an integer in range", nums[k]);
            goto refuse;
        }
        *dst[k] = (unsigned)it->valueint;
    }
    int all = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "all"));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "devices");
    if (all == (list != NULL)) {
        snprintf(why, sizeof why, "expected \"all\": true or \"devices\": [...]");
        goto refuse;
    }
    if (all) {
        devs = cJSON_CreateArray();
        if (fk_inventory_device_list(srv->inv, all_cb, devs, &d) != FK_OK) {
            status = 500;
            snprintf(why, sizeof why, "inventory error");
            goto refuse;
        }
        list = devs;
    }
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        snprintf(why, sizeof why, "\"devices\": a non-empty array of ids expected");
        goto refuse;
    }
    size_t n = (size_t)cJSON_GetArraySize(list), k = 0;
    ids = calloc(n, sizeof *ids);
    if (ids == NULL) {
        r = -1;
        goto out;
    }
    cJSON_ArrayForEach(it, list) {
        struct fk_inv_device dv;
        if (!cJSON_IsString(it) || !fk_wss_id_valid(it->valuestring, strlen(it->valuestring)) ||
            fk_inventory_device_get(srv->inv, it->valuestring, &dv, NULL) != FK_OK) {
            status = 404;
            snprintf(why, sizeof why, "no such device: %.64s",
                     cJSON_IsString(it) ? it->valuestring : "?");
            goto refuse;
        }
        ids[k++] = it->valuestring;
    }
    struct rot_job *j = NULL;
    if (fk_srv_rot_create(srv, &spec, ids, n, h->operator_name, &j, &status, why, sizeof why) !=
        0) {
        goto refuse;
    }
    r = fk_srv_http_json(wsi, h, 201, fk_srv_rot_json(j, 1));
    goto out;
refuse:
    fk_log(FK_LOG_WARN, "server: rotation refused (%u): %s", status, why);
    {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", why);
        r = fk_srv_http_json(wsi, h, status, e);
    }
out:
    free(ids);
    cJSON_Delete(devs);
    cJSON_Delete(o);
    return r;
}

int fk_srv_rot_post(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    return want_body(srv, wsi, h, path, create_done);
}

/* POST /api/rotation/ID/(start|pause|resume|abort|force) */
static int action_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                       const char *path) {
    /* a shared plan: act on what every instance made of it so far, not on a second-old copy */
    fk_srv_rot_save_dirty(srv);
    const char *id = path + strlen("/api/rotation/");
    const char *slash = strchr(id, '/');
    struct rot_job *j = slash != NULL ? find(srv, id, (size_t)(slash - id)) : NULL;
    if (j == NULL) {
        return fk_srv_http_json_error(wsi, h, 404, "no such plan");
    }
    const char *act = slash + 1;
    enum fk_err rc = FK_E_ARG;
    struct fk_diag d;
    fk_diag_init(&d);
    cJSON *detail = cJSON_CreateObject();
    const char *kind = NULL;
    if (strcmp(act, "start") == 0 || strcmp(act, "resume") == 0) {
        int start = strcmp(j->p->pause_reason, "not started") == 0;
        if (strcmp(act, "start") == 0 && !start) {
            rc = FK_E_STATE;
        } else {
            rc = fk_plan_resume(j->p);
        }
        kind = start ? "rotation.started" : "rotation.resumed";
    } else if (strcmp(act, "pause") == 0) {
        char why[120];
        snprintf(why, sizeof why, "paused by %s", h->operator_name);
        rc = fk_plan_pause(j->p, why);
        kind = "rotation.paused";
    } else if (strcmp(act, "abort") == 0) {
        rc = fk_plan_abort(j->p);
        kind = "rotation.aborted";
    } else if (strcmp(act, "force") == 0) {
        cJSON *o = h->jbuf != NULL ? cJSON_ParseWithLength(h->jbuf, h->jlen) : NULL;
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "devices");
        size_t n = cJSON_IsArray(list) ? (size_t)cJSON_GetArraySize(list) : 0, k = 0;
        const char **names = calloc(n ? n : 1, sizeof *names);
        const cJSON *it;
        cJSON *named = cJSON_AddArrayToObject(detail, "devices");
        if (names != NULL && cJSON_IsArray(list)) {
            cJSON_ArrayForEach(it, list) {
                names[k++] = cJSON_IsString(it) ? it->valuestring : "";
                cJSON_AddItemToArray(named, cJSON_CreateString(names[k - 1]));
            }
            rc = fk_plan_force(j->p, names, n, &d);
        }
        free(names);
        cJSON_Delete(o);
        kind = "rotation.forced";
    } else {
        cJSON_Delete(detail);
        return fk_srv_http_json_error(wsi, h, 404, "not found");
    }
    if (rc != FK_OK) {
        cJSON_Delete(detail);
        cJSON *e = cJSON_CreateObject();
        char why[700];
        snprintf(why, sizeof why, "%s: %s", act,
                 d.msg[0]           ? d.msg
                 : rc == FK_E_STATE ? "not in a state that allows it"
                                    : fk_strerror(rc));
        cJSON_AddStringToObject(e, "error", why);
        cJSON_AddStringToObject(e, "state", fk_plan_state_name(j->p->state));
        fk_log(FK_LOG_WARN, "server: rotation %s: %s by %s refused: %s", j->id, act,
               h->operator_name, why);
        return fk_srv_http_json(wsi, h, 409, e);
    }
    fk_srv_rot_audit(srv, j, h->operator_name, kind, j->id, detail);
    fk_srv_rot_dirty(j);
    fk_srv_rot_save_dirty(srv);
    fk_log(FK_LOG_INFO, "server: rotation %s: %s by %s", j->id, act, h->operator_name);
    return fk_srv_http_json(wsi, h, 200, fk_srv_rot_json(j, 0));
}

int fk_srv_rot_action(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                      const char *path) {
    return want_body(srv, wsi, h, path, action_done);
}
