/* A rotation plan as JSON (fleetkey/plan.h): what the server saves after every change and
 * reads back at start, so a plan survives a restart, kill -9 included.
 *
 *   {"format":1,"id":"r-000001","state":"running","wave":1,"forced":false,"acked":0,
 *    "pause_reason":"","spec":{"classes":["psk"],"waves":[1,5,25,100],"max_failure_pct":5,
 *    "timeout_s":30,"retries":2},
 *    "targets":[{"device":"robot-aabbccddeeff","state":[0,0,1,0],"attempts":[0,0,1,0],
 *                "deadline":[0,0,1767225600,0],"reason":"","offline":false}, ...]}
 *
 * Per-class arrays are indexed by enum fk_plan_class. The parser trusts nothing: every value
 * is range-checked, strings are length-checked, and the targets are re-sorted and checked for
 * duplicates, so a hand-edited or damaged file gives FK_E_PARSE with the field, never a plan
 * the engine would misread. */
#include "plan_internal.h"

#include "fleetkey/jbuf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAN_FORMAT 1
#define PLAN_JSON_MAX (256u * 1024u * 1024u)

/* Printed straight into one buffer (fleetkey/jbuf.h), not through a cJSON tree: the server
 * rewrites a plan of up to FK_PLAN_MAX_DEVICES targets every second while it changes, and a
 * tree costs a malloc per value and a second pass. */
static void int_array(struct fk_jbuf *t, const void *vals, size_t n, int wide) {
    fk_jbuf_put(t, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            fk_jbuf_put(t, ",", 1);
        }
        fk_jbuf_int(t, wide ? (long long)((const int64_t *)vals)[i]
                            : (long long)((const uint8_t *)vals)[i]);
    }
    fk_jbuf_put(t, "]", 1);
}

enum fk_err fk_plan_to_json(const struct fk_plan *p, char **out, size_t *out_len) {
    struct fk_jbuf t = {0};
    int first = 1;
    fk_jbuf_reserve(&t, 512 + p->n * 160);
    fk_jbuf_puts(&t, "{\"format\":");
    fk_jbuf_int(&t, PLAN_FORMAT);
    fk_jbuf_puts(&t, ",\"id\":");
    fk_jbuf_str(&t, p->id);
    fk_jbuf_puts(&t, ",\"state\":");
    fk_jbuf_str(&t, fk_plan_state_name(p->state));
    fk_jbuf_puts(&t, ",\"wave\":");
    fk_jbuf_int(&t, (long long)p->wave);
    fk_jbuf_puts(&t, p->forced ? ",\"forced\":true" : ",\"forced\":false");
    fk_jbuf_puts(&t, ",\"acked\":");
    fk_jbuf_int(&t, (long long)p->acked);
    fk_jbuf_puts(&t, ",\"pause_reason\":");
    fk_jbuf_str(&t, p->pause_reason);
    fk_jbuf_puts(&t, ",\"spec\":{\"classes\":[");
    for (unsigned c = 0; c < FK_PLAN_CLASSES; c++) {
        if ((p->spec.classes >> c) & 1u) {
            fk_jbuf_puts(&t, first ? "" : ",");
            fk_jbuf_str(&t, fk_plan_class_name(c));
            first = 0;
        }
    }
    fk_jbuf_puts(&t, "],\"waves\":[");
    for (size_t w = 0; w < p->spec.n_waves; w++) {
        fk_jbuf_puts(&t, w > 0 ? "," : "");
        fk_jbuf_int(&t, (long long)p->spec.waves[w]);
    }
    fk_jbuf_puts(&t, "],\"max_failure_pct\":");
    fk_jbuf_int(&t, (long long)p->spec.max_failure_pct);
    fk_jbuf_puts(&t, ",\"timeout_s\":");
    fk_jbuf_int(&t, (long long)p->spec.timeout_s);
    fk_jbuf_puts(&t, ",\"retries\":");
    fk_jbuf_int(&t, (long long)p->spec.retries);
    fk_jbuf_puts(&t, "},\"targets\":[");
    for (size_t i = 0; i < p->n; i++) {
        const struct fk_plan_target *g = &p->t[i];
        fk_jbuf_puts(&t, i > 0 ? ",{\"device\":" : "{\"device\":");
        fk_jbuf_str(&t, g->device);
        fk_jbuf_puts(&t, ",\"state\":");
        int_array(&t, g->state, FK_PLAN_CLASSES, 0);
        fk_jbuf_puts(&t, ",\"attempts\":");
        int_array(&t, g->attempts, FK_PLAN_CLASSES, 0);
        fk_jbuf_puts(&t, ",\"deadline\":");
        int_array(&t, g->deadline, FK_PLAN_CLASSES, 1);
        fk_jbuf_puts(&t, ",\"reason\":");
        fk_jbuf_str(&t, g->reason);
        fk_jbuf_puts(&t, g->offline ? ",\"offline\":true}" : ",\"offline\":false}");
    }
    fk_jbuf_puts(&t, "]}");
    *out = fk_jbuf_take(&t, out_len);
    return *out != NULL ? FK_OK : FK_E_NOMEM;
}

/* ---- parsing ----------------------------------------------------------------------------- */

/* A number that is a whole value in [lo, hi]. */
static int get_int(const cJSON *o, const char *k, double lo, double hi, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x) || x->valuedouble < lo || x->valuedouble > hi ||
        x->valuedouble != (double)(long long)x->valuedouble) {
        return 0;
    }
    *v = x->valuedouble;
    return 1;
}

static int get_str(const cJSON *o, const char *k, char *out, size_t size) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(x) || x->valuestring == NULL || strlen(x->valuestring) >= size) {
        return 0;
    }
    memcpy(out, x->valuestring, strlen(x->valuestring) + 1);
    return 1;
}

static int get_bool(const cJSON *o, const char *k, int *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsBool(x)) {
        return 0;
    }
    *v = cJSON_IsTrue(x);
    return 1;
}

/* An array of exactly FK_PLAN_CLASSES whole numbers in [lo, hi]. */
static int get_class_array(const cJSON *o, const char *k, double lo, double hi,
                           double v[FK_PLAN_CLASSES]) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != FK_PLAN_CLASSES) {
        return 0;
    }
    unsigned i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x) || x->valuedouble < lo || x->valuedouble > hi ||
            x->valuedouble != (double)(long long)x->valuedouble) {
            return 0;
        }
        v[i++] = x->valuedouble;
    }
    return 1;
}

static int name_index(const char *s, const char *(*name)(int), int n) {
    for (int i = 0; i < n; i++) {
        if (strcmp(s, name(i)) == 0) {
            return i;
        }
    }
    return -1;
}

static const char *state_name_i(int i) {
    return fk_plan_state_name((enum fk_plan_state)i);
}

static const char *class_name_i(int i) {
    return fk_plan_class_name((enum fk_plan_class)i);
}

static enum fk_err bad(struct fk_diag *diag, const char *field) {
    return fk_diag_set(diag, FK_E_PARSE, "plan: %s: missing or out of range", field);
}

static enum fk_err parse_spec(const cJSON *s, struct fk_plan_spec *spec, struct fk_diag *diag) {
    double v;
    memset(spec, 0, sizeof *spec);
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(s, "classes");
    if (!cJSON_IsArray(classes)) {
        return bad(diag, "spec.classes");
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, classes) {
        int c = cJSON_IsString(x) ? name_index(x->valuestring, class_name_i, FK_PLAN_CLASSES)
                                  : -1;
        if (c < 0 || ((spec->classes >> c) & 1u)) {
            return bad(diag, "spec.classes");
        }
        spec->classes |= 1u << c;
    }
    const cJSON *waves = cJSON_GetObjectItemCaseSensitive(s, "waves");
    if (!cJSON_IsArray(waves) || cJSON_GetArraySize(waves) < 1 ||
        cJSON_GetArraySize(waves) > FK_PLAN_WAVES_MAX) {
        return bad(diag, "spec.waves");
    }
    cJSON_ArrayForEach(x, waves) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 1 || x->valuedouble > 100 ||
            x->valuedouble != (double)(unsigned)x->valuedouble ||
            (spec->n_waves > 0 && (unsigned)x->valuedouble <= spec->waves[spec->n_waves - 1])) {
            return bad(diag, "spec.waves");
        }
        spec->waves[spec->n_waves++] = (unsigned)x->valuedouble;
    }
    if (spec->classes == 0 || spec->waves[spec->n_waves - 1] != 100) {
        return bad(diag, spec->classes == 0 ? "spec.classes" : "spec.waves");
    }
    if (!get_int(s, "max_failure_pct", 0, 100, &v)) {
        return bad(diag, "spec.max_failure_pct");
    }
    spec->max_failure_pct = (unsigned)v;
    if (!get_int(s, "timeout_s", 1, 86400.0 * 365, &v)) {
        return bad(diag, "spec.timeout_s");
    }
    spec->timeout_s = (unsigned)v;
    if (!get_int(s, "retries", 0, 100, &v)) {
        return bad(diag, "spec.retries");
    }
    spec->retries = (unsigned)v;
    return FK_OK;
}

static enum fk_err parse_target(const cJSON *o, const struct fk_plan_spec *spec,
                                struct fk_plan_target *t, struct fk_diag *diag) {
    double st[FK_PLAN_CLASSES], at[FK_PLAN_CLASSES], dl[FK_PLAN_CLASSES];
    if (!cJSON_IsObject(o) || !get_str(o, "device", t->device, sizeof t->device) ||
        t->device[0] == '\0') {
        return bad(diag, "targets[].device");
    }
    for (const char *c = t->device; *c; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == ',') {
            return bad(diag, "targets[].device");
        }
    }
    if (!get_class_array(o, "state", 0, FK_PLAN_T_ROLLED_BACK, st) ||
        !get_class_array(o, "attempts", 0, 255, at) ||
        !get_class_array(o, "deadline", 0, 9.0e15, dl)) {
        return fk_diag_set(diag, FK_E_PARSE, "plan: target %s: state, attempts or deadline",
                           t->device);
    }
    for (unsigned c = 0; c < FK_PLAN_CLASSES; c++) {
        if (!((spec->classes >> c) & 1u) && st[c] != FK_PLAN_T_PENDING) {
            return fk_diag_set(diag, FK_E_PARSE, "plan: target %s: state of %s, not in the plan",
                               t->device, fk_plan_class_name(c));
        }
        t->state[c] = (uint8_t)st[c];
        t->attempts[c] = (uint8_t)at[c];
        t->deadline[c] = (int64_t)dl[c];
    }
    if (!get_str(o, "reason", t->reason, sizeof t->reason) ||
        !get_bool(o, "offline", &t->offline)) {
        return fk_diag_set(diag, FK_E_PARSE, "plan: target %s: reason or offline", t->device);
    }
    t->order = fk_plan_order_key(t->device);
    return FK_OK;
}

enum fk_err fk_plan_from_json(const uint8_t *buf, size_t len, struct fk_plan **out,
                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *root = NULL;
    struct fk_plan *p = NULL;
    struct fk_plan_spec spec;
    double v;
    *out = NULL;
    FK_ENSURE(buf != NULL || len == 0, FK_E_ARG);
    FK_ENSURE(len <= PLAN_JSON_MAX, fk_diag_set(diag, FK_E_TOOBIG, "plan: over 256 MiB"));
    root = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(cJSON_IsObject(root), fk_diag_set(diag, FK_E_PARSE, "plan: not a JSON object"));
    FK_ENSURE(get_int(root, "format", PLAN_FORMAT, PLAN_FORMAT, &v), bad(diag, "format"));
    const cJSON *spec_o = cJSON_GetObjectItemCaseSensitive(root, "spec");
    FK_ENSURE(cJSON_IsObject(spec_o), bad(diag, "spec"));
    FK_GUARD(parse_spec(spec_o, &spec, diag));
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(root, "targets");
    FK_ENSURE(cJSON_IsArray(targets), bad(diag, "targets"));
    int n = cJSON_GetArraySize(targets);
    FK_ENSURE(n >= 0 && (unsigned)n <= FK_PLAN_MAX_DEVICES, bad(diag, "targets"));
    p = calloc(1, sizeof *p);
    FK_ENSURE(p != NULL, FK_E_NOMEM);
    if (n > 0) {
        p->t = calloc((size_t)n, sizeof *p->t);
        FK_ENSURE(p->t != NULL, FK_E_NOMEM);
    }
    p->n = (size_t)n;
    p->spec = spec;
    FK_ENSURE(get_str(root, "id", p->id, sizeof p->id) && p->id[0] != '\0', bad(diag, "id"));
    char state[16];
    FK_ENSURE(get_str(root, "state", state, sizeof state), bad(diag, "state"));
    int s = name_index(state, state_name_i, FK_PLAN_ABORTED + 1);
    FK_ENSURE(s >= 0, bad(diag, "state"));
    p->state = (enum fk_plan_state)s;
    FK_ENSURE(get_int(root, "wave", 0, (double)spec.n_waves - 1, &v), bad(diag, "wave"));
    p->wave = (unsigned)v;
    FK_ENSURE(get_bool(root, "forced", &p->forced), bad(diag, "forced"));
    FK_ENSURE(get_int(root, "acked", 0, (double)n, &v), bad(diag, "acked"));
    p->acked = (size_t)v;
    FK_ENSURE(get_str(root, "pause_reason", p->pause_reason, sizeof p->pause_reason),
              bad(diag, "pause_reason"));
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, targets) {
        FK_GUARD(parse_target(x, &spec, &p->t[i++], diag));
    }
    if (p->n > 1) {
        qsort(p->t, p->n, sizeof *p->t, fk_plan_cmp_target);
    }
    for (i = 1; i < p->n; i++) {
        FK_ENSURE(strcmp(p->t[i - 1].device, p->t[i].device) != 0,
                  fk_diag_set(diag, FK_E_PARSE, "plan: target %s listed twice", p->t[i].device));
    }
    /* A plan can only be done unforced when every device confirmed: anything else is a file
     * that would let the caller revoke what a device still uses. */
    if (p->state == FK_PLAN_DONE && !p->forced) {
        size_t nb = 0;
        FK_GUARD(fk_plan_interlock(p, NULL, &nb));
        FK_ENSURE(nb == 0, fk_diag_set(diag, FK_E_PARSE, "plan: done, not forced, but %zu "
                                       "devices have not confirmed", nb));
    }
    *out = p;
    p = NULL;
    rc = FK_OK;
out:
    cJSON_Delete(root);
    fk_plan_free(p);
    return rc;
}
