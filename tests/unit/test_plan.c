/* Rotation plans (src/plan): waves, dependency order, timeouts and retries, the failure
 * threshold, offline devices, the interlock and its forcing, and the JSON the server saves
 * (round trip, resumption after a reload, and every kind of damaged field refused). */
#include "fleetkey/plan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 200

/* A simulated fleet behind the delivery callback: which devices are online, which refuse. */
struct fleet {
    int offline[N];
    int refuse[N];
    unsigned sends;
    unsigned sends_of[FK_PLAN_CLASSES];
    char last_dev[FK_PLAN_DEV_SIZE];
    enum fk_plan_class last_class;
};

static char ids[N][FK_PLAN_DEV_SIZE];
static const char *idp[N];

static void make_ids(size_t n) {
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "robot-%012zx", i);
        idp[i] = ids[i];
    }
}

static int dev_index(const char *id) {
    return (int)strtol(id + 6, NULL, 16);
}

static int send_cb(void *user, const char *device, enum fk_plan_class c, unsigned attempt,
                   char reason[FK_PLAN_REASON_SIZE]) {
    struct fleet *f = user;
    (void)attempt;
    int i = dev_index(device);
    if (f->offline[i]) {
        return 0;
    }
    if (f->refuse[i]) {
        snprintf(reason, FK_PLAN_REASON_SIZE, "refused by %s", device);
        return -1;
    }
    f->sends++;
    f->sends_of[c]++;
    snprintf(f->last_dev, sizeof f->last_dev, "%s", device);
    f->last_class = c;
    return 1;
}

static struct fk_plan_spec spec_of(const char *classes, const char *waves, unsigned pct) {
    struct fk_plan_spec s;
    memset(&s, 0, sizeof s);
    assert_int_equal(fk_plan_parse_classes(classes, &s.classes, NULL), FK_OK);
    assert_int_equal(fk_plan_parse_waves(waves, &s, NULL), FK_OK);
    s.max_failure_pct = pct;
    s.timeout_s = 30;
    s.retries = 1;
    return s;
}

/* Confirms every delivered class of every device that the fleet reaches. */
static void confirm_all_sent(struct fk_plan *p) {
    for (size_t i = 0; i < p->n; i++) {
        for (unsigned c = 0; c < FK_PLAN_CLASSES; c++) {
            if (p->t[i].state[c] == FK_PLAN_T_SENT) {
                assert_int_equal(fk_plan_report(p, p->t[i].device, c, FK_PLAN_T_CONFIRMED, NULL),
                                 FK_OK);
            }
        }
    }
}

static void plan_parse_lists(void **state) {
    (void)state;
    struct fk_plan_spec s;
    struct fk_diag d;
    memset(&s, 0, sizeof s);
    assert_int_equal(fk_plan_parse_classes("psk,mtls", &s.classes, NULL), FK_OK);
    assert_int_equal(s.classes, (1u << FK_PLAN_PSK) | (1u << FK_PLAN_MTLS));
    fk_diag_init(&d);
    assert_int_equal(fk_plan_parse_classes("psk,wifi", &s.classes, &d), FK_E_PARSE);
    assert_non_null(strstr(d.msg, "'wifi'"));
    assert_int_equal(fk_plan_parse_classes("", &s.classes, NULL), FK_E_PARSE);
    assert_int_equal(fk_plan_parse_classes("psk,", &s.classes, NULL), FK_E_PARSE);
    assert_int_equal(fk_plan_parse_waves("1,5,25,100", &s, NULL), FK_OK);
    assert_int_equal(s.n_waves, 4);
    assert_int_equal(s.waves[2], 25);
    const char *bad[] = {"", "5,1,100", "1,5,50", "0,100", "1,1,100", "1,101", "1,x,100",
                         "1,,100", "1000", "1,2,3,4,5,6,7,8,100"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fk_diag_init(&d);
        assert_int_equal(fk_plan_parse_waves(bad[i], &s, &d), FK_E_PARSE);
        assert_non_null(strstr(d.msg, "waves"));
    }
}

static void plan_new_rejects_bad_input(void **state) {
    (void)state;
    make_ids(3);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "100", 5);
    struct fk_diag d;
    const char *dup[] = {"robot-a", "robot-b", "robot-a"};
    fk_diag_init(&d);
    assert_int_equal(fk_plan_new("r-1", &s, dup, 3, &p, &d), FK_E_ARG);
    assert_non_null(strstr(d.msg, "robot-a listed twice"));
    assert_null(p);
    const char *sp[] = {"robot a"};
    assert_int_equal(fk_plan_new("r-1", &s, sp, 1, &p, NULL), FK_E_ARG);
    struct fk_plan_spec z = s;
    z.classes = 0;
    assert_int_equal(fk_plan_new("r-1", &z, idp, 3, &p, NULL), FK_E_ARG);
    z = s;
    z.timeout_s = 0;
    assert_int_equal(fk_plan_new("r-1", &z, idp, 3, &p, NULL), FK_E_ARG);
    assert_int_equal(fk_plan_new("", &s, idp, 3, &p, NULL), FK_E_ARG);
}

static void plan_waves_open_only_when_settled(void **state) {
    (void)state;
    make_ids(N);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "1,10,100", 5);
    assert_int_equal(fk_plan_new("r-1", &s, idp, N, &p, NULL), FK_OK);
    /* Wave 1 = ceil(1 % of 200) = 2 devices. */
    assert_int_equal(fk_plan_step(p, 100, send_cb, &f), 2);
    assert_int_equal(fk_plan_step(p, 101, send_cb, &f), 0); /* waiting for confirmation */
    assert_int_equal(p->wave, 0);
    confirm_all_sent(p);
    assert_int_equal(fk_plan_step(p, 102, send_cb, &f), 18); /* wave 2: 20 devices */
    assert_int_equal(p->wave, 1);
    confirm_all_sent(p);
    assert_int_equal(fk_plan_step(p, 103, send_cb, &f), 180);
    confirm_all_sent(p);
    assert_int_equal(fk_plan_step(p, 104, send_cb, &f), 0);
    assert_int_equal(p->state, FK_PLAN_SETTLED);
    struct fk_plan_counts c;
    fk_plan_counts(p, &c);
    assert_int_equal(c.confirmed, N);
    size_t nb = 99;
    char(*bl)[FK_PLAN_DEV_SIZE] = NULL;
    assert_int_equal(fk_plan_interlock(p, &bl, &nb), FK_OK);
    assert_int_equal(nb, 0);
    assert_null(bl);
    assert_int_equal(p->state, FK_PLAN_DONE);
    /* The first wave is a spread sample, not the first ids. */
    int low = 0;
    for (size_t i = 0; i < 20; i++) {
        low += dev_index(p->t[i].device) < 20;
    }
    assert_true(low < 10);
    fk_plan_free(p);
}

/* Per-wave counts cover the devices each wave adds, say which waves are open, and add up to
 * the plan's counts. */
static void plan_wave_counts_split_the_plan(void **state) {
    (void)state;
    make_ids(N);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "1,10,100", 5);
    assert_int_equal(fk_plan_new("r-1", &s, idp, N, &p, NULL), FK_OK);
    assert_int_equal(fk_plan_wave_end(p, 0), 2);
    assert_int_equal(fk_plan_wave_end(p, 1), 20);
    assert_int_equal(fk_plan_wave_end(p, 2), N);
    assert_int_equal(fk_plan_wave_end(p, 3), 0); /* not a wave */
    f.offline[dev_index(p->t[1].device)] = 1;    /* one device of wave 1 is offline */
    assert_int_equal(fk_plan_step(p, 100, send_cb, &f), 1);
    confirm_all_sent(p);
    assert_int_equal(fk_plan_step(p, 101, send_cb, &f), 18); /* wave 2 opens */
    struct fk_plan_counts w[4], all;
    for (unsigned i = 0; i < 4; i++) {
        fk_plan_wave_counts(p, i, &w[i]);
    }
    assert_int_equal(w[0].devices, 2);
    assert_int_equal(w[0].open, 2);
    assert_int_equal(w[0].confirmed, 1);
    assert_int_equal(w[0].offline, 1);
    assert_int_equal(w[1].devices, 18);
    assert_int_equal(w[1].open, 18);
    assert_int_equal(w[1].in_flight, 18);
    assert_int_equal(w[2].devices, N - 20);
    assert_int_equal(w[2].open, 0); /* not open yet */
    assert_int_equal(w[2].pending, N - 20);
    assert_int_equal(w[3].devices, 0);
    fk_plan_counts(p, &all);
    assert_int_equal(w[0].confirmed + w[1].confirmed + w[2].confirmed, all.confirmed);
    assert_int_equal(w[0].in_flight + w[1].in_flight + w[2].in_flight, all.in_flight);
    assert_int_equal(w[0].offline + w[1].offline + w[2].offline, all.offline);
    assert_int_equal(w[0].pending + w[1].pending + w[2].pending, all.pending);
    fk_plan_wave_counts(NULL, 0, &all);
    assert_int_equal(all.devices, 0);
    fk_plan_free(p);
}

static void plan_classes_go_in_dependency_order(void **state) {
    (void)state;
    make_ids(1);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("ota,psk,ca,mtls", "100", 0);
    assert_int_equal(fk_plan_new("r-1", &s, idp, 1, &p, NULL), FK_OK);
    enum fk_plan_class want[] = {FK_PLAN_CA, FK_PLAN_MTLS, FK_PLAN_PSK, FK_PLAN_OTA};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(fk_plan_step(p, 10, send_cb, &f), 1);
        assert_int_equal(f.last_class, want[k]);
        assert_int_equal(fk_plan_step(p, 11, send_cb, &f), 0); /* not before confirmation */
        /* A report for a class that was not delivered changes nothing. */
        if (k + 1 < 4) {
            assert_int_equal(fk_plan_report(p, ids[0], want[k + 1], FK_PLAN_T_CONFIRMED, NULL),
                             FK_E_STATE);
        }
        assert_int_equal(fk_plan_report(p, ids[0], want[k], FK_PLAN_T_CONFIRMED, NULL), FK_OK);
    }
    assert_int_equal(fk_plan_step(p, 12, send_cb, &f), 0);
    assert_int_equal(p->state, FK_PLAN_SETTLED);
    assert_int_equal(fk_plan_report(p, "robot-nope", FK_PLAN_PSK, FK_PLAN_T_CONFIRMED, NULL),
                     FK_E_NOTFOUND);
    fk_plan_free(p);
}

static void plan_timeouts_retry_then_fail(void **state) {
    (void)state;
    make_ids(1);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "100", 100);
    s.retries = 2;
    assert_int_equal(fk_plan_new("r-1", &s, idp, 1, &p, NULL), FK_OK);
    assert_int_equal(fk_plan_step(p, 0, send_cb, &f), 1);
    assert_int_equal(fk_plan_step(p, 29, send_cb, &f), 0);
    assert_int_equal(fk_plan_step(p, 30, send_cb, &f), 1); /* attempt 2 */
    assert_int_equal(fk_plan_step(p, 60, send_cb, &f), 1); /* attempt 3 */
    assert_int_equal(p->t[0].attempts[FK_PLAN_PSK], 3);
    assert_int_equal(fk_plan_step(p, 90, send_cb, &f), 0);
    assert_int_equal(p->t[0].state[FK_PLAN_PSK], FK_PLAN_T_FAILED);
    assert_non_null(strstr(p->t[0].reason, "no confirmation after 3"));
    assert_int_equal(p->state, FK_PLAN_SETTLED); /* 100 % may fail: it does not pause */
    /* A late confirmation is still the truth. */
    assert_int_equal(fk_plan_report(p, ids[0], FK_PLAN_PSK, FK_PLAN_T_CONFIRMED, NULL), FK_OK);
    assert_int_equal(fk_plan_interlock(p, NULL, NULL), FK_OK);
    fk_plan_free(p);
}

static void plan_threshold_pauses_and_resume_acknowledges(void **state) {
    (void)state;
    make_ids(100);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "10,100", 5);
    assert_int_equal(fk_plan_new("r-1", &s, idp, 100, &p, NULL), FK_OK);
    assert_int_equal(fk_plan_step(p, 0, send_cb, &f), 10);
    /* One rollback of ten is 10 % > 5 %: pause before wave 2. */
    assert_int_equal(fk_plan_report(p, p->t[3].device, FK_PLAN_PSK, FK_PLAN_T_ROLLED_BACK,
                                    "attempts"),
                     FK_OK);
    confirm_all_sent(p);
    assert_int_equal(fk_plan_step(p, 1, send_cb, &f), 0);
    assert_int_equal(p->state, FK_PLAN_PAUSED);
    assert_non_null(strstr(p->pause_reason, "1 of 10 devices failed"));
    assert_non_null(strstr(p->t[3].reason, "psk: attempts"));
    assert_int_equal(fk_plan_step(p, 2, send_cb, &f), 0); /* paused: nothing moves */
    assert_int_equal(fk_plan_resume(p), FK_OK);
    assert_int_equal(fk_plan_resume(p), FK_E_STATE);
    assert_int_equal(fk_plan_step(p, 3, send_cb, &f), 90); /* acknowledged: wave 2 opens */
    /* Refusals in wave 2: 6 new failures of 100 > 5 % pauses again. */
    for (int k = 0; k < 6; k++) {
        assert_int_equal(fk_plan_report(p, p->t[20 + k].device, FK_PLAN_PSK, FK_PLAN_T_FAILED,
                                        "bad_psk"),
                         FK_OK);
    }
    assert_int_equal(fk_plan_step(p, 4, send_cb, &f), 0);
    assert_int_equal(p->state, FK_PLAN_PAUSED);
    assert_int_equal(fk_plan_abort(p), FK_OK);
    assert_int_equal(fk_plan_abort(p), FK_E_STATE);
    assert_int_equal(fk_plan_interlock(p, NULL, NULL), FK_E_STATE);
    fk_plan_free(p);
}

static void plan_offline_devices_block_the_interlock(void **state) {
    (void)state;
    make_ids(20);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    f.offline[4] = f.offline[9] = 1;
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "50,100", 5);
    assert_int_equal(fk_plan_new("r-1", &s, idp, 20, &p, NULL), FK_OK);
    for (int round = 0; round < 4; round++) {
        (void)fk_plan_step(p, round, send_cb, &f);
        confirm_all_sent(p);
    }
    /* Offline devices do not hold the waves back... */
    assert_int_equal(p->state, FK_PLAN_SETTLED);
    struct fk_plan_counts c;
    fk_plan_counts(p, &c);
    assert_int_equal(c.offline, 2);
    assert_int_equal(c.confirmed, 18);
    /* ...but nothing old is revoked while they have not confirmed. */
    char(*bl)[FK_PLAN_DEV_SIZE] = NULL;
    size_t nb = 0;
    assert_int_equal(fk_plan_interlock(p, &bl, &nb), FK_E_POLICY);
    assert_int_equal(nb, 2);
    int seen4 = 0, seen9 = 0;
    for (size_t i = 0; i < nb; i++) {
        seen4 |= strcmp(bl[i], ids[4]) == 0;
        seen9 |= strcmp(bl[i], ids[9]) == 0;
    }
    assert_true(seen4 && seen9);
    free(bl);
    /* Forcing needs exactly the blockers. */
    struct fk_diag d;
    const char *one[] = {ids[4]};
    fk_diag_init(&d);
    assert_int_equal(fk_plan_force(p, one, 1, &d), FK_E_MISMATCH);
    assert_non_null(strstr(d.msg, ids[9]));
    const char *extra[] = {ids[4], ids[9], ids[1]};
    assert_int_equal(fk_plan_force(p, extra, 3, &d), FK_E_MISMATCH);
    assert_non_null(strstr(d.msg, ids[1]));
    const char *twice[] = {ids[4], ids[4]};
    assert_int_equal(fk_plan_force(p, twice, 2, NULL), FK_E_MISMATCH);
    /* One comes back: a settled plan still serves it. */
    f.offline[9] = 0;
    assert_int_equal(fk_plan_step(p, 10, send_cb, &f), 1);
    confirm_all_sent(p);
    assert_int_equal(fk_plan_interlock(p, NULL, &nb), FK_E_POLICY);
    assert_int_equal(nb, 1);
    assert_int_equal(fk_plan_force(p, one, 1, NULL), FK_OK);
    assert_int_equal(p->state, FK_PLAN_DONE);
    assert_true(p->forced);
    fk_plan_free(p);
}

static void plan_refused_delivery_fails_device(void **state) {
    (void)state;
    make_ids(4);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    f.refuse[2] = 1;
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("mtls", "100", 30);
    assert_int_equal(fk_plan_new("r-1", &s, idp, 4, &p, NULL), FK_OK);
    assert_int_equal(fk_plan_step(p, 0, send_cb, &f), 3);
    const struct fk_plan_target *t = fk_plan_find(p, ids[2]);
    assert_non_null(t);
    assert_int_equal(t->state[FK_PLAN_MTLS], FK_PLAN_T_FAILED);
    assert_string_equal(t->reason, "refused by robot-000000000002");
    fk_plan_free(p);
}

static char *to_json(const struct fk_plan *p, size_t *len) {
    char *j[1] = {NULL}; /* through an array: gcc 12 takes &j for a dangling local otherwise */
    assert_int_equal(fk_plan_to_json(p, j, len), FK_OK);
    return j[0];
}

static void plan_json_round_trip_resumes(void **state) {
    (void)state;
    make_ids(50);
    static struct fleet f;
    memset(&f, 0, sizeof f);
    f.offline[7] = 1;
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("ca,psk", "10,100", 20);
    assert_int_equal(fk_plan_new("r-000042", &s, idp, 50, &p, NULL), FK_OK);
    (void)fk_plan_step(p, 1000, send_cb, &f);
    confirm_all_sent(p);
    (void)fk_plan_step(p, 1001, send_cb, &f);
    assert_int_equal(fk_plan_report(p, p->t[0].device, FK_PLAN_PSK, FK_PLAN_T_ROLLED_BACK,
                                    "timeout"),
                     FK_OK);
    size_t len;
    char *j = to_json(p, &len);
    struct fk_plan *q = NULL;
    assert_int_equal(fk_plan_from_json((const uint8_t *)j, len, &q, NULL), FK_OK);
    size_t len2;
    char *j2 = to_json(q, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(j, j2, len);
    /* The reloaded plan continues exactly as the original does. */
    static struct fleet f2;
    f2 = f;
    assert_int_equal(fk_plan_step(p, 2000, send_cb, &f), fk_plan_step(q, 2000, send_cb, &f2));
    free(j);
    free(j2);
    j = to_json(p, &len);
    j2 = to_json(q, &len2);
    assert_string_equal(j, j2);
    free(j);
    free(j2);
    fk_plan_free(p);
    fk_plan_free(q);
}

/* Replaces the first occurrence of from in json by to, parses, expects FK_E_PARSE. */
static void expect_refused(const char *json, const char *from, const char *to) {
    const char *at = strstr(json, from);
    assert_non_null(at);
    size_t a = (size_t)(at - json);
    size_t len = strlen(json) - strlen(from) + strlen(to);
    char *m = malloc(len + 1);
    assert_non_null(m);
    memcpy(m, json, a);
    memcpy(m + a, to, strlen(to));
    memcpy(m + a + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);
    struct fk_plan *q = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_plan_from_json((const uint8_t *)m, len, &q, &d);
    if (rc != FK_E_PARSE) {
        fail_msg("'%s' -> '%s' was accepted (%s)", from, to, fk_strerror(rc));
    }
    assert_null(q);
    assert_true(d.msg[0] != '\0');
    free(m);
}

static void plan_json_rejects_damage(void **state) {
    (void)state;
    make_ids(2);
    struct fk_plan *p = NULL;
    struct fk_plan_spec s = spec_of("psk", "50,100", 5);
    assert_int_equal(fk_plan_new("r-1", &s, idp, 2, &p, NULL), FK_OK);
    size_t len;
    char *j = to_json(p, &len);
    expect_refused(j, "\"format\":1", "\"format\":2");
    expect_refused(j, "\"state\":\"running\"", "\"state\":\"flying\"");
    expect_refused(j, "\"wave\":0", "\"wave\":2");
    expect_refused(j, "\"wave\":0", "\"wave\":0.5");
    expect_refused(j, "\"waves\":[50,100]", "\"waves\":[50,90]");
    expect_refused(j, "\"waves\":[50,100]", "\"waves\":[100,50]");
    expect_refused(j, "\"classes\":[\"psk\"]", "\"classes\":[\"psk\",\"psk\"]");
    expect_refused(j, "\"classes\":[\"psk\"]", "\"classes\":[]");
    expect_refused(j, "\"max_failure_pct\":5", "\"max_failure_pct\":101");
    expect_refused(j, "\"timeout_s\":30", "\"timeout_s\":0");
    expect_refused(j, "\"state\":[0,0,0,0]", "\"state\":[0,0,9,0]");
    expect_refused(j, "\"state\":[0,0,0,0]", "\"state\":[1,0,0,0]"); /* class not in plan */
    expect_refused(j, "\"state\":[0,0,0,0]", "\"state\":[0,0,0]");
    expect_refused(j, "\"attempts\":[0,0,0,0]", "\"attempts\":[0,0,-1,0]");
    expect_refused(j, "\"deadline\":[0,0,0,0]", "\"deadline\":[0,0,\"x\",0]");
    expect_refused(j, "\"offline\":false", "\"offline\":0");
    expect_refused(j, "\"device\":\"", "\"device\":\"a b");
    expect_refused(j, "\"acked\":0", "\"acked\":3");
    expect_refused(j, "\"id\":\"r-1\"", "\"id\":\"\"");
    expect_refused(j, "\"state\":\"running\"", "\"state\":\"done\""); /* none confirmed */
    /* The same device twice. */
    char *first = strstr(j, "{\"device\"");
    assert_non_null(first);
    char *second = strstr(first + 1, "{\"device\"");
    assert_non_null(second);
    char dev1[64];
    assert_int_equal(sscanf(first, "{\"device\":\"%40[^\"]", dev1), 1);
    char dev2[64];
    assert_int_equal(sscanf(second, "{\"device\":\"%40[^\"]", dev2), 1);
    char from[80], to[80];
    snprintf(from, sizeof from, "\"device\":\"%s\"", dev2);
    snprintf(to, sizeof to, "\"device\":\"%s\"", dev1);
    expect_refused(j, from, to);
    /* Every truncation is refused, never read past. */
    for (size_t k = 0; k < len; k++) {
        struct fk_plan *q = NULL;
        assert_int_not_equal(fk_plan_from_json((const uint8_t *)j, k, &q, NULL), FK_OK);
        assert_null(q);
    }
    free(j);
    fk_plan_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_parse_lists),
        cmocka_unit_test(plan_new_rejects_bad_input),
        cmocka_unit_test(plan_waves_open_only_when_settled),
        cmocka_unit_test(plan_wave_counts_split_the_plan),
        cmocka_unit_test(plan_classes_go_in_dependency_order),
        cmocka_unit_test(plan_timeouts_retry_then_fail),
        cmocka_unit_test(plan_threshold_pauses_and_resume_acknowledges),
        cmocka_unit_test(plan_offline_devices_block_the_interlock),
        cmocka_unit_test(plan_refused_delivery_fails_device),
        cmocka_unit_test(plan_json_round_trip_resumes),
        cmocka_unit_test(plan_json_rejects_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
