/* The incident plan's state file (fleetkey/incident.h): parse and render.
 *
 * The file decides what a re-run skips, so the parser trusts nothing: a damaged or hand-edited
 * state must stop the run with the member named rather than skip a step that never happened
 * (a "retire" marked done without a new-key-only release would be refused later anyway, but
 * only after a push). */
#include "fleetkey/incident.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const step_names[] = {
#define FK_INCIDENT_STEP_NAME(n, s) s,
    FK_INCIDENT_STEPS(FK_INCIDENT_STEP_NAME)
#undef FK_INCIDENT_STEP_NAME
};

const char *fk_incident_step_name(enum fk_incident_step s) {
    return (unsigned)s < FK_INCIDENT_STEP_COUNT ? step_names[s] : "?";
}

static int all_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int fpr_ok(const char *s) {
    return strlen(s) == 5 + 64 && strncmp(s, "sbv2:", 5) == 0 && all_hex(s + 5, 64);
}

static int job_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 3 || n >= FK_INCIDENT_JOB_MAX || strncmp(s, "j-", 2) != 0) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* Copies the string member name into out (size bytes). Absent: "" (FK_OK) unless required. */
static enum fk_err str_member(const cJSON *o, const char *name, int required, char *out,
                              size_t size, struct fk_diag *d) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    out[0] = '\0';
    if (v == NULL && !required) {
        return FK_OK;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= size || v->valuestring[0] == '\0') {
        return fk_diag_set(d, FK_E_PARSE, "%s: expected a string of 1 to %zu characters", name,
                           size - 1);
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return FK_OK;
}

static enum fk_err release_member(const cJSON *o, const char *name, struct fk_incident_release *r,
                                  struct fk_diag *d) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (v == NULL) {
        return FK_OK;
    }
    if (!cJSON_IsObject(v) || str_member(v, "file", 1, r->file, sizeof r->file, NULL) != FK_OK ||
        str_member(v, "sha256", 1, r->sha256, sizeof r->sha256, NULL) != FK_OK ||
        strlen(r->sha256) != 64 || !all_hex(r->sha256, 64)) {
        return fk_diag_set(d, FK_E_PARSE,
                           "%s: expected {\"file\": PATH, \"sha256\": 64 hex digits}", name);
    }
    return FK_OK;
}

enum fk_err fk_incident_state_parse(const char *buf, size_t len, struct fk_incident_state *out,
                                    struct fk_diag *d) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *root = NULL;
    memset(out, 0, sizeof *out);
    FK_ENSURE(len <= FK_INCIDENT_STATE_MAX,
              fk_diag_set(d, FK_E_TOOBIG, "%zu bytes: a state file is at most %u", len,
                          FK_INCIDENT_STATE_MAX));
    root = cJSON_ParseWithLength(buf, len);
    FK_ENSURE(cJSON_IsObject(root), fk_diag_set(d, FK_E_PARSE, "expected a JSON object"));
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    FK_ENSURE(cJSON_IsNumber(fmt), fk_diag_set(d, FK_E_PARSE, "format: expected a number"));
    FK_ENSURE(fmt->valuedouble == FK_INCIDENT_FORMAT,
              fk_diag_set(d, FK_E_UNSUPPORTED, "format %g; this program reads format %d",
                          fmt->valuedouble, FK_INCIDENT_FORMAT));
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "incident");
    FK_ENSURE(cJSON_IsString(kind) && strcmp(kind->valuestring, FK_INCIDENT_OTA_KEY) == 0,
              fk_diag_set(d, FK_E_UNSUPPORTED, "incident: expected \"%s\"", FK_INCIDENT_OTA_KEY));
    FK_GUARD(str_member(root, "old_key", 1, out->old_fpr, sizeof out->old_fpr, d));
    FK_ENSURE(fpr_ok(out->old_fpr),
              fk_diag_set(d, FK_E_PARSE, "old_key: expected sbv2: and 64 hex digits"));
    FK_GUARD(str_member(root, "new_key", 0, out->new_fpr, sizeof out->new_fpr, d));
    FK_ENSURE(out->new_fpr[0] == '\0' || fpr_ok(out->new_fpr),
              fk_diag_set(d, FK_E_PARSE, "new_key: expected sbv2: and 64 hex digits"));
    FK_ENSURE(strcmp(out->old_fpr, out->new_fpr) != 0,
              fk_diag_set(d, FK_E_PARSE, "new_key: the same key as old_key"));
    FK_GUARD(str_member(root, "new_key_file", 0, out->new_key_file, sizeof out->new_key_file, d));
    FK_GUARD(str_member(root, "started_at", 0, out->started_at, sizeof out->started_at, d));
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(root, "done");
    FK_ENSURE(cJSON_IsArray(done),
              fk_diag_set(d, FK_E_PARSE, "done: expected an array of step names"));
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, done) {
        unsigned i = 0;
        while (i < FK_INCIDENT_STEP_COUNT &&
               !(cJSON_IsString(e) && strcmp(e->valuestring, step_names[i]) == 0)) {
            i++;
        }
        FK_ENSURE(i < FK_INCIDENT_STEP_COUNT && !((out->done >> i) & 1u),
                  fk_diag_set(d, FK_E_PARSE,
                              "done: expected each of keygen, start, sign_dual, "
                              "push_dual, force, sign_new, retire at most once"));
        out->done |= 1u << i;
    }
    FK_GUARD(release_member(root, "dual_release", &out->dual, d));
    FK_GUARD(release_member(root, "new_release", &out->fresh, d));
    FK_GUARD(str_member(root, "dual_job", 0, out->dual_job, sizeof out->dual_job, d));
    FK_ENSURE(out->dual_job[0] == '\0' || job_ok(out->dual_job),
              fk_diag_set(d, FK_E_PARSE, "dual_job: expected j- and digits"));
    FK_GUARD(str_member(root, "new_job", 0, out->new_job, sizeof out->new_job, d));
    FK_ENSURE(out->new_job[0] == '\0' || job_ok(out->new_job),
              fk_diag_set(d, FK_E_PARSE, "new_job: expected j- and digits"));
    const cJSON *forced = cJSON_GetObjectItemCaseSensitive(root, "forced");
    FK_ENSURE(forced == NULL || cJSON_IsArray(forced),
              fk_diag_set(d, FK_E_PARSE, "forced: expected an array of device ids"));
    cJSON_ArrayForEach(e, forced) {
        FK_ENSURE(out->nforced < FK_INCIDENT_FORCED_MAX && cJSON_IsString(e) &&
                      e->valuestring[0] != '\0' && strlen(e->valuestring) < FK_INV_ID_SIZE,
                  fk_diag_set(d, FK_E_PARSE, "forced: expected at most %u device ids",
                              FK_INCIDENT_FORCED_MAX));
        memcpy(out->forced[out->nforced++], e->valuestring, strlen(e->valuestring) + 1);
    }
    /* A step marked done must have left what it made. */
    int keygen = fk_incident_done(out, FK_INCIDENT_KEYGEN);
    FK_ENSURE(!keygen || (out->new_fpr[0] != '\0' && out->new_key_file[0] != '\0'),
              fk_diag_set(d, FK_E_PARSE, "keygen done but new_key or new_key_file missing"));
    FK_ENSURE(keygen || out->done == 0,
              fk_diag_set(d, FK_E_PARSE, "done: a step after keygen without keygen"));
    FK_ENSURE(!fk_incident_done(out, FK_INCIDENT_SIGN_DUAL) || out->dual.file[0] != '\0',
              fk_diag_set(d, FK_E_PARSE, "sign_dual done but dual_release missing"));
    FK_ENSURE(!fk_incident_done(out, FK_INCIDENT_PUSH_DUAL) || out->dual_job[0] != '\0',
              fk_diag_set(d, FK_E_PARSE, "push_dual done but dual_job missing"));
    FK_ENSURE(!fk_incident_done(out, FK_INCIDENT_SIGN_NEW) || out->fresh.file[0] != '\0',
              fk_diag_set(d, FK_E_PARSE, "sign_new done but new_release missing"));
    FK_ENSURE(!fk_incident_done(out, FK_INCIDENT_FORCE) || out->nforced > 0,
              fk_diag_set(d, FK_E_PARSE, "force done but no forced device"));
    rc = FK_OK;
out:
    cJSON_Delete(root);
    if (rc != FK_OK) {
        memset(out, 0, sizeof *out);
    }
    return rc;
}

static void add_str(cJSON *o, const char *name, const char *v) {
    if (v[0] != '\0') {
        cJSON_AddStringToObject(o, name, v);
    }
}

static void add_release(cJSON *o, const char *name, const struct fk_incident_release *r) {
    if (r->file[0] != '\0') {
        cJSON *x = cJSON_AddObjectToObject(o, name);
        if (x != NULL) {
            cJSON_AddStringToObject(x, "file", r->file);
            cJSON_AddStringToObject(x, "sha256", r->sha256);
        }
    }
}

enum fk_err fk_incident_state_render(const struct fk_incident_state *s, char **out,
                                     size_t *out_len) {
    enum fk_err rc = FK_E_NOMEM;
    char *txt = NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *done = NULL, *forced = NULL;
    *out = NULL;
    FK_ENSURE(o != NULL, FK_E_NOMEM);
    cJSON_AddNumberToObject(o, "format", FK_INCIDENT_FORMAT);
    cJSON_AddStringToObject(o, "incident", FK_INCIDENT_OTA_KEY);
    cJSON_AddStringToObject(o, "old_key", s->old_fpr);
    add_str(o, "new_key", s->new_fpr);
    add_str(o, "new_key_file", s->new_key_file);
    add_str(o, "started_at", s->started_at);
    done = cJSON_AddArrayToObject(o, "done");
    FK_ENSURE(done != NULL, FK_E_NOMEM);
    for (unsigned i = 0; i < FK_INCIDENT_STEP_COUNT; i++) {
        if ((s->done >> i) & 1u) {
            cJSON_AddItemToArray(done, cJSON_CreateString(step_names[i]));
        }
    }
    add_release(o, "dual_release", &s->dual);
    add_str(o, "dual_job", s->dual_job);
    add_release(o, "new_release", &s->fresh);
    add_str(o, "new_job", s->new_job);
    if (s->nforced > 0) {
        forced = cJSON_AddArrayToObject(o, "forced");
        FK_ENSURE(forced != NULL, FK_E_NOMEM);
        for (size_t i = 0; i < s->nforced; i++) {
            cJSON_AddItemToArray(forced, cJSON_CreateString(s->forced[i]));
        }
    }
    txt = cJSON_PrintUnformatted(o);
    FK_ENSURE(txt != NULL, FK_E_NOMEM);
    size_t n = strlen(txt);
    *out = malloc(n + 2);
    FK_ENSURE(*out != NULL, FK_E_NOMEM);
    memcpy(*out, txt, n);
    (*out)[n] = '\n';
    (*out)[n + 1] = '\0';
    *out_len = n + 1;
    rc = FK_OK;
out:
    cJSON_free(txt);
    cJSON_Delete(o);
    return rc;
}
