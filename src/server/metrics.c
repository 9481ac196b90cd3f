/* The fleet's part of /metrics (admin_internal.h, "metrics.c"): what the inventory and the
 * rotation plan say about the fleet right now, as gauges in the Prometheus text exposition
 * format 0.0.4. admin.c writes the server's own counters and appends this text.
 *
 * Every family has # HELP and # TYPE, and every label value that comes from data (credential
 * kinds and device states are free text in the inventory) is escaped as the format requires
 * (backslash, double quote, line feed), so a strange value cannot break the exposition or
 * forge a sample. The inventory is read on each scrape (one walk over the devices, one over
 * the credentials), on the service thread: cheap for fleets of thousands, and always current,
 * which a cache refreshed by the tick would not be. */
#include "admin_internal.h"
#include "rot_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KINDS_MAX 32 /* distinct credential kinds / device states shown; the rest: "other" */

/* The expiry horizons of fleetkey_credentials_expiring, in days. */
static const unsigned horizon_days[] = {7, 30, 90};
#define HORIZONS (sizeof horizon_days / sizeof horizon_days[0])

/* The credential states the inventory knows (fleetkey/inventory.h); another one counts as
 * "other". */
static const char *const cred_states[] = {"active", "staged", "retired", "revoked", "other"};
#define CRED_STATES (sizeof cred_states / sizeof cred_states[0])

struct kind_stat {
    char name[FK_INV_ID_SIZE];
    unsigned long long n[CRED_STATES];
    int has_expiry;
    long long min_expiry; /* unix seconds, the earliest expiry of an active credential */
    unsigned long long expiring[HORIZONS], expired;
};

struct fleet_stat {
    long long now;
    struct kind_stat kinds[KINDS_MAX + 1]; /* the last one is "other" */
    size_t nkinds;
    char dev_state[KINDS_MAX + 1][FK_INV_STATE_SIZE];
    unsigned long long dev_n[KINDS_MAX + 1];
    size_t ndev_states;
    unsigned long long bad_expiry; /* expires_at that is not RFC 3339: not counted */
};

void fk_srv_metrics_label(FILE *f, const char *v) {
    /* Exposition format 0.0.4: "label_value can be any sequence of UTF-8 characters, but the
     * backslash, the double-quote and the line feed characters have to be escaped as \\, \"
     * and \n". */
    for (; *v != '\0'; v++) {
        if (*v == '\\') {
            fputs("\\\\", f);
        } else if (*v == '"') {
            fputs("\\\"", f);
        } else if (*v == '\n') {
            fputs("\\n", f);
        } else {
            fputc(*v, f);
        }
    }
}

/* The slot of name in a table of *n names, each size bytes at stride bytes from the previous:
 * added when new and there is room, else the last slot (KINDS_MAX), named "other". */
static size_t slot(char *names, size_t stride, size_t size, size_t *n, const char *name) {
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(names + i * stride, name) == 0) {
            return i;
        }
    }
    size_t i = *n < KINDS_MAX ? (*n)++ : KINDS_MAX;
    snprintf(names + i * stride, size, "%s", i < KINDS_MAX ? name : "other");
    return i;
}

static int dev_one(void *user, const struct fk_inv_device *d) {
    struct fleet_stat *fs = user;
    fs->dev_n[slot(fs->dev_state[0], sizeof fs->dev_state[0], sizeof fs->dev_state[0],
                   &fs->ndev_states, d->state)]++;
    return 0;
}

static int cred_one(void *user, const struct fk_inv_credential *c) {
    struct fleet_stat *fs = user;
    struct kind_stat *ks = &fs->kinds[slot(fs->kinds[0].name, sizeof fs->kinds[0],
                                           sizeof fs->kinds[0].name, &fs->nkinds, c->kind)];
    size_t st = CRED_STATES - 1;
    for (size_t i = 0; i + 1 < CRED_STATES; i++) {
        if (strcmp(c->state, cred_states[i]) == 0) {
            st = i;
        }
    }
    ks->n[st]++;
    if (st != 0 || c->expires_at[0] == '\0') {
        return 0; /* only what is in use can expire on someone */
    }
    long long exp = 0;
    if (fk_time_parse_rfc3339(c->expires_at, sizeof c->expires_at, &exp) != FK_OK) {
        fs->bad_expiry++;
        return 0;
    }
    if (!ks->has_expiry || exp < ks->min_expiry) {
        ks->min_expiry = exp;
    }
    ks->has_expiry = 1;
    for (size_t h = 0; h < HORIZONS; h++) {
        ks->expiring[h] += exp <= fs->now + (long long)horizon_days[h] * 86400;
    }
    ks->expired += exp <= fs->now;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct kind_stat *)a)->name, ((const struct kind_stat *)b)->name);
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void inventory_metrics(FILE *f, struct fleet_stat *fs) {
    family(f, "fleetkey_devices", "gauge", "Devices in the inventory, by state.");
    for (size_t i = 0; i < fs->ndev_states + (fs->dev_n[KINDS_MAX] > 0); i++) {
        size_t s = i < fs->ndev_states ? i : KINDS_MAX;
        fputs("fleetkey_devices{state=\"", f);
        fk_srv_metrics_label(f, fs->dev_state[s]);
        fprintf(f, "\"} %llu\n", fs->dev_n[s]);
    }
    size_t nk = fs->nkinds + (fs->kinds[KINDS_MAX].name[0] != '\0');
    if (fs->nkinds > 1) {
        qsort(fs->kinds, fs->nkinds, sizeof fs->kinds[0], by_name);
    }
    family(f, "fleetkey_credentials", "gauge", "Credentials in the inventory, by kind and state.");
    for (size_t i = 0; i < nk; i++) {
        const struct kind_stat *ks = &fs->kinds[i < fs->nkinds ? i : KINDS_MAX];
        for (size_t st = 0; st < CRED_STATES; st++) {
            fputs("fleetkey_credentials{kind=\"", f);
            fk_srv_metrics_label(f, ks->name);
            fprintf(f, "\",state=\"%s\"} %llu\n", cred_states[st], ks->n[st]);
        }
    }
    family(f, "fleetkey_credential_expiry_min_seconds", "gauge",
           "Seconds until the earliest expiry among the active credentials of a kind (negative "
           "once it passed); kinds whose active credentials have an expiry only.");
    for (size_t i = 0; i < nk; i++) {
        const struct kind_stat *ks = &fs->kinds[i < fs->nkinds ? i : KINDS_MAX];
        if (ks->has_expiry) {
            fputs("fleetkey_credential_expiry_min_seconds{kind=\"", f);
            fk_srv_metrics_label(f, ks->name);
            fprintf(f, "\"} %lld\n", ks->min_expiry - fs->now);
        }
    }
    family(f, "fleetkey_credentials_expiring", "gauge",
           "Active credentials whose expiry is within the horizon (expired ones included), by "
           "kind.");
    for (size_t i = 0; i < nk; i++) {
        const struct kind_stat *ks = &fs->kinds[i < fs->nkinds ? i : KINDS_MAX];
        for (size_t h = 0; ks->has_expiry && h < HORIZONS; h++) {
            fputs("fleetkey_credentials_expiring{kind=\"", f);
            fk_srv_metrics_label(f, ks->name);
            fprintf(f, "\",within=\"%ud\"} %llu\n", horizon_days[h], ks->expiring[h]);
        }
    }
    family(f, "fleetkey_credentials_expired", "gauge",
           "Active credentials past their expiry, by kind.");
    for (size_t i = 0; i < nk; i++) {
        const struct kind_stat *ks = &fs->kinds[i < fs->nkinds ? i : KINDS_MAX];
        if (ks->has_expiry) {
            fputs("fleetkey_credentials_expired{kind=\"", f);
            fk_srv_metrics_label(f, ks->name);
            fprintf(f, "\"} %llu\n", ks->expired);
        }
    }
    family(f, "fleetkey_credential_expiry_unreadable", "gauge",
           "Active credentials whose expires_at is not an RFC 3339 UTC time (not counted "
           "above).");
    fprintf(f, "fleetkey_credential_expiry_unreadable %llu\n", fs->bad_expiry);
}

/* The current plan: its state as a state set, each wave's open flag and devices by class and
 * state. */
static void rotation_metrics(FILE *f, struct fk_server *srv) {
    const struct rot_job *j = fk_srv_rot_current(srv);
    family(f, "fleetkey_rotation_plan_state", "gauge",
           "The current rotation plan's state: 1 for the state it is in, 0 for the others.");
    for (int st = FK_PLAN_RUNNING; j != NULL && st <= FK_PLAN_ABORTED; st++) {
        fputs("fleetkey_rotation_plan_state{plan=\"", f);
        fk_srv_metrics_label(f, j->id);
        fprintf(f, "\",state=\"%s\"} %d\n", fk_plan_state_name((enum fk_plan_state)st),
                j->p->state == (enum fk_plan_state)st);
    }
    family(f, "fleetkey_rotation_wave_open", "gauge",
           "1 when the wave of the current rotation plan is open (its devices are served).");
    for (unsigned w = 0; j != NULL && w < j->p->spec.n_waves; w++) {
        struct fk_plan_counts wk;
        fk_plan_wave_counts(j->p, w, &wk);
        fputs("fleetkey_rotation_wave_open{plan=\"", f);
        fk_srv_metrics_label(f, j->id);
        fprintf(f, "\",wave=\"%u\"} %d\n", w + 1, wk.open > 0 || wk.devices == 0);
    }
    family(f, "fleetkey_rotation_wave_devices", "gauge",
           "Devices of each wave of the current rotation plan (the devices the wave adds, not "
           "cumulative), by class and state.");
    for (unsigned w = 0; j != NULL && w < j->p->spec.n_waves; w++) {
        size_t lo = w == 0 ? 0 : fk_plan_wave_end(j->p, w - 1), hi = fk_plan_wave_end(j->p, w);
        for (int c = 0; c < FK_PLAN_CLASSES; c++) {
            if (!(j->p->spec.classes & (1u << c))) {
                continue;
            }
            size_t n[FK_PLAN_T_ROLLED_BACK + 1] = {0};
            for (size_t i = lo; i < hi; i++) {
                if (j->p->t[i].state[c] <= FK_PLAN_T_ROLLED_BACK) {
                    n[j->p->t[i].state[c]]++;
                }
            }
            for (int st = FK_PLAN_T_PENDING; st <= FK_PLAN_T_ROLLED_BACK; st++) {
                fputs("fleetkey_rotation_wave_devices{plan=\"", f);
                fk_srv_metrics_label(f, j->id);
                fprintf(f, "\",wave=\"%u\",class=\"%s\",state=\"%s\"} %zu\n", w + 1,
                        fk_plan_class_name((enum fk_plan_class)c),
                        fk_plan_tstate_name((enum fk_plan_tstate)st), n[st]);
            }
        }
    }
}

char *fk_srv_metrics_fleet(struct fk_server *srv) {
    char *text = NULL;
    size_t len = 0;
    struct fleet_stat *fs = calloc(1, sizeof *fs);
    FILE *f = fs != NULL ? open_memstream(&text, &len) : NULL;
    if (f == NULL) {
        free(fs);
        return NULL;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    fs->now = (long long)time(NULL);
    int ok = fk_inventory_device_list(srv->inv, dev_one, fs, &d) == FK_OK &&
             fk_inventory_credential_list(srv->inv, NULL, cred_one, fs, &d) == FK_OK;
    family(f, "fleetkey_inventory_readable", "gauge",
           "1 when this scrape could read the inventory; 0: the inventory families are missing.");
    fprintf(f, "fleetkey_inventory_readable %d\n", ok);
    if (ok) {
        inventory_metrics(f, fs);
    } else {
        fk_log(FK_LOG_WARN, "server: /metrics: inventory not readable: %s", d.msg);
    }
    rotation_metrics(f, srv);
    free(fs);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
