/* Rotation plans: waves, the failure threshold, per-device dependency order, the interlock
 * (fleetkey/plan.h).
 *
 * Design: the plan is a flat array of targets sorted once, at creation, by a hash of the
 * device id; wave w is the prefix [0, wave_end(w)). Everything the engine decides is a
 * function of that array and the time it is given, so a plan reloaded from its JSON after a
 * crash continues exactly where it stood: nothing lives outside the struct. Each step walks
 * the open prefix once (O(open devices)); a 10,000-device plan steps in well under a
 * millisecond. */
#include "plan_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const class_names[FK_PLAN_CLASSES] = {"ca", "mtls", "psk", "ota"};

const char *fk_plan_class_name(enum fk_plan_class c) {
    return (unsigned)c < FK_PLAN_CLASSES ? class_names[c] : "?";
}

const char *fk_plan_state_name(enum fk_plan_state s) {
    static const char *const n[] = {"running", "paused", "settled", "done", "aborted"};
    return (unsigned)s < sizeof n / sizeof n[0] ? n[s] : "?";
}

const char *fk_plan_tstate_name(enum fk_plan_tstate s) {
    static const char *const n[] = {"pending", "sent", "confirmed", "failed", "rolled_back"};
    return (unsigned)s < sizeof n / sizeof n[0] ? n[s] : "?";
}

uint32_t fk_plan_order_key(const char *id) {
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h = (h ^ *p) * 16777619u;
    }
    return h;
}

int fk_plan_cmp_target(const void *a, const void *b) {
    const struct fk_plan_target *x = a;
    const struct fk_plan_target *y = b;
    if (x->order != y->order) {
        return x->order < y->order ? -1 : 1;
    }
    return strcmp(x->device, y->device);
}

static int id_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= FK_PLAN_DEV_SIZE) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == ',') {
            return 0;
        }
    }
    return 1;
}

enum fk_err fk_plan_parse_classes(const char *text, unsigned *classes, struct fk_diag *diag) {
    unsigned mask = 0;
    const char *p = text ? text : "";
    for (;;) {
        size_t n = strcspn(p, ",");
        int found = 0;
        for (unsigned c = 0; c < FK_PLAN_CLASSES; c++) {
            if (strlen(class_names[c]) == n && strncmp(p, class_names[c], n) == 0) {
                mask |= 1u << c;
                found = 1;
            }
        }
        if (!found) {
            return fk_diag_set(diag, FK_E_PARSE,
                               "classes: '%.*s': expected ca, mtls, psk or ota (comma-separated)",
                               (int)(n > 32 ? 32 : n), p);
        }
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    *classes = mask;
    return FK_OK;
}

enum fk_err fk_plan_parse_waves(const char *text, struct fk_plan_spec *spec,
                                struct fk_diag *diag) {
    size_t k = 0;
    unsigned prev = 0;
    const char *p = text ? text : "";
    for (;;) {
        size_t n = strcspn(p, ",");
        unsigned v = 0;
        int ok = n > 0 && n <= 3;
        for (size_t i = 0; ok && i < n; i++) {
            ok = p[i] >= '0' && p[i] <= '9';
            v = v * 10u + (unsigned)(p[i] - '0');
        }
        if (!ok || v == 0 || v > 100 || v <= prev) {
            return fk_diag_set(diag, FK_E_PARSE,
                               "waves: '%.*s': expected rising percentages 1..100, e.g. "
                               "1,5,25,100",
                               (int)(n > 32 ? 32 : n), p);
        }
        if (k == FK_PLAN_WAVES_MAX) {
            return fk_diag_set(diag, FK_E_PARSE, "waves: more than %d waves", FK_PLAN_WAVES_MAX);
        }
        spec->waves[k++] = v;
        prev = v;
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    if (prev != 100) {
        return fk_diag_set(diag, FK_E_PARSE, "waves: the last wave must be 100 (got %u)", prev);
    }
    spec->n_waves = k;
    return FK_OK;
}

static enum fk_err spec_check(const struct fk_plan_spec *s, struct fk_diag *diag) {
    if (s->classes == 0 || s->classes >= (1u << FK_PLAN_CLASSES)) {
        return fk_diag_set(diag, FK_E_ARG, "plan: no class to rotate");
    }
    if (s->n_waves == 0 || s->n_waves > FK_PLAN_WAVES_MAX || s->waves[s->n_waves - 1] != 100) {
        return fk_diag_set(diag, FK_E_ARG, "plan: waves must end at 100");
    }
    for (size_t w = 0; w < s->n_waves; w++) {
        if (s->waves[w] == 0 || s->waves[w] > 100 || (w > 0 && s->waves[w] <= s->waves[w - 1])) {
            return fk_diag_set(diag, FK_E_ARG, "plan: waves must rise strictly");
        }
    }
    if (s->max_failure_pct > 100 || s->timeout_s == 0 || s->retries > 100) {
        return fk_diag_set(diag, FK_E_ARG,
                           "plan: max failure 0..100 %%, timeout >= 1 s, retries <= 100");
    }
    return FK_OK;
}

static int has_class(const struct fk_plan *p, unsigned c) {
    return (p->spec.classes >> c) & 1u;
}

/* The first class of the plan this target has not confirmed, or FK_PLAN_CLASSES. */
static unsigned next_class(const struct fk_plan *p, const struct fk_plan_target *t) {
    for (unsigned c = 0; c < FK_PLAN_CLASSES; c++) {
        if (has_class(p, c) && t->state[c] != FK_PLAN_T_CONFIRMED) {
            return c;
        }
    }
    return FK_PLAN_CLASSES;
}

static int target_failed(const struct fk_plan *p, const struct fk_plan_target *t) {
    unsigned c = next_class(p, t);
    return c < FK_PLAN_CLASSES &&
           (t->state[c] == FK_PLAN_T_FAILED || t->state[c] == FK_PLAN_T_ROLLED_BACK);
}

static size_t wave_end(const struct fk_plan *p, unsigned w) {
    /* ceil(n * pct / 100), at least one device for a non-empty plan */
    size_t end = (p->n * p->spec.waves[w] + 99u) / 100u;
    return end == 0 && p->n > 0 ? 1 : end;
}

size_t fk_plan_wave_end(const struct fk_plan *p, unsigned w) {
    return p == NULL || w >= p->spec.n_waves ? 0 : wave_end(p, w);
}

/* Called only by the plan's creator and its parser, which have checked the spec. */
static enum fk_err plan_alloc(size_t n, struct fk_plan **out) {
    struct fk_plan *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return FK_E_NOMEM;
    }
    p->t = n ? calloc(n, sizeof *p->t) : NULL;
    if (n && p->t == NULL) {
        free(p);
        return FK_E_NOMEM;
    }
    p->n = n;
    *out = p;
    return FK_OK;
}

void fk_plan_free(struct fk_plan *p) {
    if (p == NULL) {
        return;
    }
    free(p->t);
    free(p);
}

enum fk_err fk_plan_new(const char *id, const struct fk_plan_spec *spec,
                        const char *const *devices, size_t n, struct fk_plan **out,
                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_plan *p = NULL;
    *out = NULL;
    FK_ENSURE(id != NULL && id_ok(id) && spec != NULL && (devices != NULL || n == 0),
              fk_diag_set(diag, FK_E_ARG, "plan: bad id or arguments"));
    FK_ENSURE(n <= FK_PLAN_MAX_DEVICES,
              fk_diag_set(diag, FK_E_ARG, "plan: more than %u devices", FK_PLAN_MAX_DEVICES));
    FK_GUARD(spec_check(spec, diag));
    FK_GUARD(plan_alloc(n, &p));
    snprintf(p->id, sizeof p->id, "%s", id);
    p->spec = *spec;
    for (size_t i = 0; i < n; i++) {
        FK_ENSURE(id_ok(devices[i]),
                  fk_diag_set(diag, FK_E_ARG, "plan: device %zu: expected an id of 1..%d "
                              "printable characters", i + 1, FK_PLAN_DEV_SIZE - 1));
        snprintf(p->t[i].device, sizeof p->t[i].device, "%s", devices[i]);
        p->t[i].order = fk_plan_order_key(devices[i]);
    }
    if (n > 1) {
        qsort(p->t, n, sizeof *p->t, fk_plan_cmp_target);
    }
    for (size_t i = 1; i < n; i++) {
        FK_ENSURE(strcmp(p->t[i - 1].device, p->t[i].device) != 0,
                  fk_diag_set(diag, FK_E_ARG, "plan: device %s listed twice", p->t[i].device));
    }
    p->state = FK_PLAN_RUNNING;
    *out = p;
    p = NULL;
    rc = FK_OK;
out:
    fk_plan_free(p);
    return rc;
}

const struct fk_plan_target *fk_plan_find(const struct fk_plan *p, const char *device) {
    if (p == NULL || device == NULL) {
        return NULL;
    }
    struct fk_plan_target key;
    memset(&key, 0, sizeof key);
    snprintf(key.device, sizeof key.device, "%s", device);
    key.order = fk_plan_order_key(device);
    if (p->n == 0) {
        return NULL; /* bsearch over an empty array would take a NULL base */
    }
    return bsearch(&key, p->t, p->n, sizeof *p->t, fk_plan_cmp_target);
}

static void set_reason(struct fk_plan_target *t, const char *why) {
    snprintf(t->reason, sizeof t->reason, "%s", why ? why : "");
}

/* Delivers or re-delivers the next class of one open target. Returns 1 when send took it. */
static int step_target(struct fk_plan *p, struct fk_plan_target *t, int64_t now,
                       fk_plan_send_fn *send, void *user) {
    unsigned c = next_class(p, t);
    if (c == FK_PLAN_CLASSES) {
        return 0;
    }
    uint8_t *st = &t->state[c];
    if (*st == FK_PLAN_T_FAILED || *st == FK_PLAN_T_ROLLED_BACK) {
        return 0; /* stays on its old credential; the plan's threshold has counted it */
    }
    if (*st == FK_PLAN_T_SENT) {
        if (now < t->deadline[c]) {
            return 0;
        }
        if (t->attempts[c] > p->spec.retries) {
            *st = FK_PLAN_T_FAILED;
            char why[FK_PLAN_REASON_SIZE];
            snprintf(why, sizeof why, "%s: no confirmation after %u deliveries",
                     class_names[c], (unsigned)t->attempts[c]);
            set_reason(t, why);
            return 0;
        }
    }
    char reason[FK_PLAN_REASON_SIZE] = "";
    unsigned attempt = (unsigned)t->attempts[c] + 1u;
    int r = send(user, t->device, (enum fk_plan_class)c, attempt, reason);
    if (r == 0) {
        t->offline = 1; /* not an attempt: nothing reached the device */
        return 0;
    }
    t->offline = 0;
    if (r < 0) {
        *st = FK_PLAN_T_FAILED;
        set_reason(t, reason[0] ? reason : "delivery refused");
        return 0;
    }
    t->attempts[c] = (uint8_t)attempt;
    t->deadline[c] = now + (int64_t)p->spec.timeout_s;
    *st = FK_PLAN_T_SENT;
    return 1;
}

/* Adds the targets [lo, hi) to o by the state of their next class. */
static void count_range(const struct fk_plan *p, size_t lo, size_t hi, struct fk_plan_counts *o) {
    for (size_t i = lo; i < hi; i++) {
        const struct fk_plan_target *t = &p->t[i];
        unsigned c = next_class(p, t);
        if (c == FK_PLAN_CLASSES) {
            o->confirmed++;
        } else if (t->state[c] == FK_PLAN_T_FAILED) {
            o->failed++;
        } else if (t->state[c] == FK_PLAN_T_ROLLED_BACK) {
            o->rolled_back++;
        } else if (t->state[c] == FK_PLAN_T_SENT) {
            o->in_flight++;
        } else if (t->offline) {
            o->offline++;
        } else {
            o->pending++;
        }
    }
}

void fk_plan_counts(const struct fk_plan *p, struct fk_plan_counts *o) {
    memset(o, 0, sizeof *o);
    if (p == NULL) {
        return;
    }
    o->devices = p->n;
    o->open =
        p->state == FK_PLAN_RUNNING || p->state == FK_PLAN_PAUSED ? wave_end(p, p->wave) : p->n;
    count_range(p, 0, p->n, o);
}

void fk_plan_wave_counts(const struct fk_plan *p, unsigned w, struct fk_plan_counts *o) {
    memset(o, 0, sizeof *o);
    if (p == NULL || w >= p->spec.n_waves) {
        return;
    }
    size_t lo = w == 0 ? 0 : wave_end(p, w - 1), hi = wave_end(p, w);
    lo = lo > hi ? hi : lo; /* a wave of the same size as the previous one adds nobody */
    int running = p->state == FK_PLAN_RUNNING || p->state == FK_PLAN_PAUSED;
    o->devices = hi - lo;
    o->open = !running || w <= p->wave ? hi - lo : 0;
    count_range(p, lo, hi, o);
}

size_t fk_plan_step(struct fk_plan *p, int64_t now, fk_plan_send_fn *send, void *user) {
    size_t sent = 0;
    if (p == NULL || send == NULL) {
        return 0;
    }
    if (p->state == FK_PLAN_SETTLED) {
        /* Every wave is open: serve the devices that were offline when their wave settled. */
        for (size_t i = 0; i < p->n; i++) {
            sent += (size_t)step_target(p, &p->t[i], now, send, user);
        }
        return sent;
    }
    if (p->state != FK_PLAN_RUNNING) {
        return 0;
    }
    for (;;) {
        size_t end = wave_end(p, p->wave);
        size_t failures = 0;
        size_t unsettled = 0;
        for (size_t i = 0; i < end; i++) {
            struct fk_plan_target *t = &p->t[i];
            sent += (size_t)step_target(p, t, now, send, user);
            if (target_failed(p, t)) {
                failures++;
            } else if (next_class(p, t) < FK_PLAN_CLASSES && !t->offline) {
                unsettled++;
            }
        }
        /* More than max_failure_pct of the open devices failed: stop before the next wave
         * spreads whatever caused it. failures * 100 > pct * end, in integers. */
        size_t fresh = failures > p->acked ? failures - p->acked : 0;
        if (fresh > 0 && fresh * 100u > (size_t)p->spec.max_failure_pct * end) {
            p->state = FK_PLAN_PAUSED;
            snprintf(p->pause_reason, sizeof p->pause_reason,
                     "wave %u: %zu of %zu devices failed, over the %u %% threshold",
                     p->wave + 1, failures, end, p->spec.max_failure_pct);
            return sent;
        }
        if (unsettled > 0) {
            return sent;
        }
        if (p->wave + 1u < p->spec.n_waves) {
            p->wave++; /* the wave is settled: open the next one and serve it now */
            continue;
        }
        /* Every wave is settled; offline devices are still served when they come back. */
        p->state = FK_PLAN_SETTLED;
        return sent;
    }
}

enum fk_err fk_plan_report(struct fk_plan *p, const char *device, enum fk_plan_class c,
                           enum fk_plan_tstate outcome, const char *reason) {
    struct fk_plan_target *t = (struct fk_plan_target *)fk_plan_find(p, device);
    if (t == NULL) {
        return FK_E_NOTFOUND;
    }
    if ((unsigned)c >= FK_PLAN_CLASSES || !has_class(p, c) ||
        (outcome != FK_PLAN_T_CONFIRMED && outcome != FK_PLAN_T_FAILED &&
         outcome != FK_PLAN_T_ROLLED_BACK)) {
        return FK_E_STATE;
    }
    /* A confirmation may arrive after a timeout already failed the delivery: the device did
     * take the credential, and saying otherwise would leave the inventory wrong. */
    uint8_t *st = &t->state[c];
    if (*st != FK_PLAN_T_SENT && !(*st == FK_PLAN_T_FAILED && outcome == FK_PLAN_T_CONFIRMED)) {
        return FK_E_STATE;
    }
    *st = (uint8_t)outcome;
    t->offline = 0;
    if (outcome != FK_PLAN_T_CONFIRMED) {
        char why[FK_PLAN_REASON_SIZE];
        snprintf(why, sizeof why, "%s: %s", class_names[c], reason && *reason ? reason : "-");
        set_reason(t, why);
    }
    /* A device that comes back after the plan settled reopens nothing: the interlock is
     * judged again whenever it is asked. */
    return FK_OK;
}

int fk_plan_target_same(const struct fk_plan_target *a, const struct fk_plan_target *b) {
    /* Field by field, not memcmp: padding bytes carry no state. */
    if (strcmp(a->device, b->device) != 0 || a->offline != b->offline ||
        strcmp(a->reason, b->reason) != 0) {
        return 0;
    }
    for (int c = 0; c < FK_PLAN_CLASSES; c++) {
        if (a->state[c] != b->state[c] || a->attempts[c] != b->attempts[c] ||
            a->deadline[c] != b->deadline[c]) {
            return 0;
        }
    }
    return 1;
}

enum fk_err fk_plan_copy_target(struct fk_plan *dst, const struct fk_plan *src,
                                const char *device) {
    struct fk_plan_target *d = (struct fk_plan_target *)fk_plan_find(dst, device);
    const struct fk_plan_target *s = fk_plan_find(src, device);
    if (d == NULL || s == NULL) {
        return FK_E_NOTFOUND;
    }
    /* device and order are the key: equal by the find */
    memcpy(d->state, s->state, sizeof d->state);
    memcpy(d->attempts, s->attempts, sizeof d->attempts);
    memcpy(d->deadline, s->deadline, sizeof d->deadline);
    memcpy(d->reason, s->reason, sizeof d->reason);
    d->offline = s->offline;
    return FK_OK;
}

enum fk_err fk_plan_pause(struct fk_plan *p, const char *why) {
    if (p == NULL || p->state != FK_PLAN_RUNNING) {
        return FK_E_STATE;
    }
    p->state = FK_PLAN_PAUSED;
    snprintf(p->pause_reason, sizeof p->pause_reason, "%s", why && *why ? why : "operator");
    return FK_OK;
}

enum fk_err fk_plan_resume(struct fk_plan *p) {
    if (p == NULL || p->state != FK_PLAN_PAUSED) {
        return FK_E_STATE;
    }
    /* The failures counted so far are the ones the operator looked at: from now on only new
     * ones count against the threshold. */
    size_t failures = 0;
    for (size_t i = 0; i < p->n; i++) {
        failures += (size_t)target_failed(p, &p->t[i]);
    }
    p->acked = failures;
    p->state = FK_PLAN_RUNNING;
    p->pause_reason[0] = '\0';
    return FK_OK;
}

enum fk_err fk_plan_abort(struct fk_plan *p) {
    if (p == NULL || p->state == FK_PLAN_DONE || p->state == FK_PLAN_ABORTED) {
        return FK_E_STATE;
    }
    p->state = FK_PLAN_ABORTED;
    return FK_OK;
}

enum fk_err fk_plan_interlock(struct fk_plan *p, char (**blockers)[FK_PLAN_DEV_SIZE],
                              size_t *nb) {
    size_t n = 0;
    if (blockers) {
        *blockers = NULL;
    }
    if (nb) {
        *nb = 0;
    }
    if (p == NULL) {
        return FK_E_ARG;
    }
    for (size_t i = 0; i < p->n; i++) {
        n += next_class(p, &p->t[i]) < FK_PLAN_CLASSES;
    }
    if (n > 0 && blockers) {
        char(*list)[FK_PLAN_DEV_SIZE] = calloc(n, sizeof *list);
        if (list == NULL) {
            return FK_E_NOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++) {
            if (next_class(p, &p->t[i]) < FK_PLAN_CLASSES) {
                memcpy(list[k++], p->t[i].device, FK_PLAN_DEV_SIZE);
            }
        }
        *blockers = list;
    }
    if (nb) {
        *nb = n;
    }
    if (p->state == FK_PLAN_DONE) {
        return FK_OK;
    }
    if (p->state != FK_PLAN_SETTLED) {
        return FK_E_STATE;
    }
    if (n > 0) {
        return FK_E_POLICY;
    }
    p->state = FK_PLAN_DONE;
    return FK_OK;
}

enum fk_err fk_plan_force(struct fk_plan *p, const char *const *names, size_t n,
                          struct fk_diag *diag) {
    if (p == NULL || (names == NULL && n > 0)) {
        return FK_E_ARG;
    }
    if (p->state != FK_PLAN_SETTLED) {
        return fk_diag_set(diag, FK_E_STATE, "plan %s is %s, not settled", p->id,
                           fk_plan_state_name(p->state));
    }
    size_t blocking = 0;
    for (size_t i = 0; i < p->n; i++) {
        blocking += next_class(p, &p->t[i]) < FK_PLAN_CLASSES;
    }
    for (size_t k = 0; k < n; k++) {
        const struct fk_plan_target *t = fk_plan_find(p, names[k]);
        if (t == NULL || next_class(p, t) == FK_PLAN_CLASSES) {
            return fk_diag_set(diag, FK_E_MISMATCH, "%s: named, but it does not block the plan",
                               names[k]);
        }
        for (size_t j = 0; j < k; j++) {
            if (strcmp(names[j], names[k]) == 0) {
                return fk_diag_set(diag, FK_E_MISMATCH, "%s: named twice", names[k]);
            }
        }
    }
    if (n != blocking) {
        /* Name the first blocker the operator left out. */
        for (size_t i = 0; i < p->n; i++) {
            if (next_class(p, &p->t[i]) == FK_PLAN_CLASSES) {
                continue;
            }
            int named = 0;
            for (size_t k = 0; k < n && !named; k++) {
                named = strcmp(names[k], p->t[i].device) == 0;
            }
            if (!named) {
                return fk_diag_set(diag, FK_E_MISMATCH,
                                   "%s blocks the plan but was not named (%zu blocking)",
                                   p->t[i].device, blocking);
            }
        }
    }
    p->state = FK_PLAN_DONE;
    p->forced = 1;
    return FK_OK;
}
