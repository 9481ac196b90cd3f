/* Unit tests of rotation plans stored in the inventory (issue 15): ids allocated by the store,
 * versions that move on every put, bodies read back byte for byte, the refusals, and the
 * per-device merge two server instances make through one row (fk_plan_copy_target,
 * fk_plan_target_same). On SQLite by default, on PostgreSQL when FK_TEST_PG_HOST is set
 * (inv_location.h; CTest runs both). */
#include "fleetkey/inventory.h"
#include "fleetkey/plan.h"
#include "fleetkey/server.h"

/* cmocka needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "inv_location.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char db_path[4096];

static struct fk_inventory *fresh(const char *name) {
    assert_int_equal(
        fk_test_inv_fresh(name, "/tmp/fk_test_inventory_plans", db_path, sizeof db_path), 0);
    struct fk_inventory *inv = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_inventory_open(db_path, &inv, &d), FK_OK);
    return inv;
}

struct seen {
    long long id[8];
    long long version[8];
    char body[8][64];
    size_t n;
};

static int seen_cb(void *user, long long id, long long version, const char *body, size_t len) {
    struct seen *s = user;
    assert_true(s->n < 8);
    assert_int_equal(strlen(body), len);
    s->id[s->n] = id;
    s->version[s->n] = version;
    snprintf(s->body[s->n], sizeof s->body[0], "%s", body);
    s->n++;
    return 0;
}

static void plan_rows_get_ids_and_versions(void **state) {
    (void)state;
    struct fk_inventory *inv = fresh("plans_rows");
    long long a = 0, b = 0, v = 0;
    assert_int_equal(fk_inventory_plan_add(inv, "{\"a\":1}", 7, &a, NULL), FK_OK);
    assert_int_equal(fk_inventory_plan_add(inv, "{\"b\":2}", 7, &b, NULL), FK_OK);
    assert_true(a >= 1);
    assert_true(b > a);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(fk_inventory_plan_get(inv, a, &body, &len, &v, NULL), FK_OK);
    assert_int_equal(len, 7);
    assert_string_equal(body, "{\"a\":1}");
    assert_int_equal(v, 1);
    free(body);
    /* a put inside an explicit transaction, as the server's merge does */
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_plan_get(inv, a, &body, &len, &v, NULL), FK_OK);
    free(body);
    assert_int_equal(fk_inventory_plan_put(inv, a, "{\"a\":10}", 8, NULL), FK_OK);
    assert_int_equal(fk_inventory_commit(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_plan_get(inv, a, &body, &len, &v, NULL), FK_OK);
    assert_string_equal(body, "{\"a\":10}");
    assert_int_equal(v, 2);
    free(body);
    /* a rolled-back put leaves the row as it was */
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_plan_put(inv, a, "{\"lost\":1}", 10, NULL), FK_OK);
    fk_inventory_rollback(inv);
    assert_int_equal(fk_inventory_plan_get(inv, a, &body, &len, &v, NULL), FK_OK);
    assert_string_equal(body, "{\"a\":10}");
    assert_int_equal(v, 2);
    free(body);
    /* only the rows after the one named */
    struct seen s;
    memset(&s, 0, sizeof s);
    assert_int_equal(fk_inventory_plan_list(inv, 0, seen_cb, &s, NULL), FK_OK);
    assert_int_equal(s.n, 2);
    assert_true(s.id[0] == a && s.id[1] == b);
    assert_int_equal(s.version[0], 2);
    assert_string_equal(s.body[1], "{\"b\":2}");
    memset(&s, 0, sizeof s);
    assert_int_equal(fk_inventory_plan_list(inv, a, seen_cb, &s, NULL), FK_OK);
    assert_int_equal(s.n, 1);
    assert_true(s.id[0] == b);
    fk_inventory_close(inv);
}

static void plan_rows_refuse_bad_input(void **state) {
    (void)state;
    struct fk_inventory *inv = fresh("plans_bad");
    long long id = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_inventory_plan_add(inv, "", 0, &id, &d), FK_E_ARG);
    assert_non_null(strstr(d.msg, "body of 0 bytes"));
    assert_int_equal(fk_inventory_plan_add(inv, "{}\0{}", 5, &id, &d), FK_E_ARG); /* a NUL */
    assert_int_equal(fk_inventory_plan_add(inv, NULL, 3, &id, &d), FK_E_ARG);
    assert_int_equal(id, 0);
    char *body = NULL;
    size_t len = 0;
    fk_diag_init(&d);
    assert_int_equal(fk_inventory_plan_get(inv, 42, &body, &len, NULL, &d), FK_E_NOTFOUND);
    assert_null(body);
    assert_non_null(strstr(d.msg, "plan 42"));
    assert_int_equal(fk_inventory_plan_put(inv, 42, "{}", 2, &d), FK_E_NOTFOUND);
    /* a body is only what len says, even when the buffer goes on */
    assert_int_equal(fk_inventory_plan_add(inv, "{}garbage", 2, &id, NULL), FK_OK);
    assert_int_equal(fk_inventory_plan_get(inv, id, &body, &len, NULL, NULL), FK_OK);
    assert_string_equal(body, "{}");
    free(body);
    fk_inventory_close(inv);
}

static struct fk_plan *new_plan(void) {
    static const char *const ids[] = {"robot-a", "robot-b", "robot-c", "robot-d"};
    struct fk_plan_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.classes = 1u << FK_PLAN_MTLS;
    spec.waves[0] = 100;
    spec.n_waves = 1;
    spec.max_failure_pct = 50;
    spec.timeout_s = 60;
    struct fk_plan *p = NULL;
    assert_int_equal(fk_plan_new("rot-1", &spec, ids, 4, &p, NULL), FK_OK);
    return p;
}

static int deliver(void *user, const char *device, enum fk_plan_class c, unsigned attempt,
                   char reason[FK_PLAN_REASON_SIZE]) {
    (void)c;
    (void)attempt;
    (void)reason;
    /* user: the one device "connected" to this instance */
    return strcmp(device, (const char *)user) == 0 ? 1 : 0;
}

static struct fk_plan *reparse(const char *text) {
    struct fk_plan *p = NULL;
    assert_int_equal(fk_plan_from_json((const uint8_t *)text, strlen(text), &p, NULL), FK_OK);
    return p;
}

/* Two instances each drive the device they hold; merging each one's device into the stored
 * plan keeps both confirmations, and the merged plan settles and passes the interlock. */
static void plan_merge_keeps_each_instances_device(void **state) {
    (void)state;
    struct fk_inventory *inv = fresh("plans_merge");
    struct fk_plan *p = new_plan();
    char *text = NULL;
    size_t tl = 0;
    assert_int_equal(fk_plan_to_json(p, &text, &tl), FK_OK);
    long long id = 0;
    assert_int_equal(fk_inventory_plan_add(inv, text, tl, &id, NULL), FK_OK);
    free(text);
    fk_plan_free(p);
    /* each instance adopted the row */
    char *row = NULL;
    size_t rl = 0;
    assert_int_equal(fk_inventory_plan_get(inv, id, &row, &rl, NULL, NULL), FK_OK);
    struct fk_plan *a = reparse(row), *b = reparse(row);
    free(row);
    /* A holds robot-a and robot-b, B holds robot-c and robot-d */
    const char *held_a[] = {"robot-a", "robot-b"}, *held_b[] = {"robot-c", "robot-d"};
    for (int k = 0; k < 2; k++) {
        (void)fk_plan_step(a, 100, deliver, (void *)held_a[k]);
        (void)fk_plan_step(b, 100, deliver, (void *)held_b[k]);
        assert_int_equal(fk_plan_report(a, held_a[k], FK_PLAN_MTLS, FK_PLAN_T_CONFIRMED, ""),
                         FK_OK);
        assert_int_equal(fk_plan_report(b, held_b[k], FK_PLAN_MTLS, FK_PLAN_T_CONFIRMED, ""),
                         FK_OK);
    }
    /* what each instance changed differs from what the other one holds */
    assert_false(fk_plan_target_same(fk_plan_find(a, "robot-a"), fk_plan_find(b, "robot-a")));
    assert_true(fk_plan_target_same(fk_plan_find(a, "robot-a"), fk_plan_find(a, "robot-a")));
    /* A merges, then B: read the row under the writers' lock, copy in its devices, put */
    struct fk_plan *inst[2] = {a, b};
    const char *const *held[2] = {held_a, held_b};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
        assert_int_equal(fk_inventory_plan_get(inv, id, &row, &rl, NULL, NULL), FK_OK);
        struct fk_plan *s = reparse(row);
        free(row);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(fk_plan_copy_target(s, inst[i], held[i][k]), FK_OK);
        }
        assert_int_equal(fk_plan_to_json(s, &text, &tl), FK_OK);
        assert_int_equal(fk_inventory_plan_put(inv, id, text, tl, NULL), FK_OK);
        assert_int_equal(fk_inventory_commit(inv, NULL), FK_OK);
        free(text);
        fk_plan_free(s);
    }
    assert_int_equal(fk_inventory_plan_get(inv, id, &row, &rl, NULL, NULL), FK_OK);
    struct fk_plan *m = reparse(row);
    free(row);
    struct fk_plan_counts k;
    fk_plan_counts(m, &k);
    assert_int_equal(k.confirmed, 4);
    (void)fk_plan_step(m, 101, deliver, (void *)"");
    assert_int_equal(m->state, FK_PLAN_SETTLED);
    assert_int_equal(fk_plan_interlock(m, NULL, NULL), FK_OK);
    /* a device missing from either plan */
    assert_int_equal(fk_plan_copy_target(m, a, "robot-z"), FK_E_NOTFOUND);
    fk_plan_free(m);
    fk_plan_free(a);
    fk_plan_free(b);
    fk_inventory_close(inv);
}

/* What a server trusts in a stored job (a rot_plans row any writer of the database could have
 * written): refused with the reason unless it is a whole job; accepted ones write back the
 * same. */
static void rot_job_check_refuses_damaged_jobs(void **state) {
    (void)state;
    struct fk_plan *p = new_plan();
    char *pj = NULL;
    size_t pl = 0;
    assert_int_equal(fk_plan_to_json(p, &pj, &pl), FK_OK);
    fk_plan_free(p);
    char job[4096];
    int n = snprintf(job, sizeof job,
                     "{\"id\":\"rot-000001\",\"created_at\":\"\",\"operator\":\"ops\","
                     "\"revoked\":false,\"plan\":%s,\"server\":{\"robot-a\":{\"version\":[0,2,0,0],"
                     "\"audited\":[0,0,0,0],\"fpr\":[\"\",\"sha256:ab\",\"\",\"\"],"
                     "\"serial\":\"0A\"}}}",
                     pj);
    free(pj);
    assert_true(n > 0 && (size_t)n < sizeof job);
    size_t devices = 0;
    char *canon = NULL, *again = NULL;
    assert_int_equal(fk_rot_job_check((const uint8_t *)job, (size_t)n, &devices, &canon, NULL),
                     FK_OK);
    assert_int_equal(devices, 4);
    assert_non_null(strstr(canon, "\"serial\":\"0A\""));
    assert_int_equal(fk_rot_job_check((const uint8_t *)canon, strlen(canon), NULL, &again, NULL),
                     FK_OK);
    assert_string_equal(canon, again);
    free(canon);
    free(again);
    struct fk_diag d;
    /* every truncation is refused, with nothing handed out */
    for (size_t cut = 0; cut < (size_t)n; cut += 7) {
        fk_diag_init(&d);
        canon = (char *)job;
        devices = 9;
        assert_int_equal(fk_rot_job_check((const uint8_t *)job, cut, &devices, &canon, &d),
                         FK_E_PARSE);
        assert_null(canon);
        assert_int_equal(devices, 0);
        assert_true(d.msg[0] != '\0');
    }
    static const char *const bad[] = {
        "{}", "[]", "{\"plan\":{},\"server\":{}}", "{\"server\":{}}", "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fk_diag_init(&d);
        assert_int_equal(fk_rot_job_check((const uint8_t *)bad[i], strlen(bad[i]), NULL, NULL, &d),
                         FK_E_PARSE);
        assert_true(d.msg[0] != '\0');
    }
    /* the length is judged before a byte is read */
    assert_int_equal(
        fk_rot_job_check((const uint8_t *)"{}", (size_t)FK_INV_PLAN_MAX + 1, NULL, NULL, NULL),
        FK_E_TOOBIG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_rows_get_ids_and_versions),
        cmocka_unit_test(plan_rows_refuse_bad_input),
        cmocka_unit_test(plan_merge_keeps_each_instances_device),
        cmocka_unit_test(rot_job_check_refuses_damaged_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
