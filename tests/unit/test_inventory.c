/* Unit tests of the inventory: schema creation and reopen, devices and credentials, the
 * transaction API, and the audit chain, which must notice every edit, deletion, insertion,
 * reordering and cut-off tail made behind its back with raw SQL (sqlite3 on a file, libpq on
 * PostgreSQL: FK_TEST_PG_HOST, see inv_location.h; CTest runs both). */
#include "fleetkey/inventory.h"

/* cmocka needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "inv_location.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char db_path[4096];

static void fresh_db(const char *name) {
    assert_int_equal(fk_test_inv_fresh(name, "/tmp/fk_test_inventory", db_path, sizeof db_path), 0);
}

static struct fk_inventory *open_db(void) {
    struct fk_inventory *inv = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_inventory_open(db_path, &inv, &d), FK_OK);
    return inv;
}

static void add_device(struct fk_inventory *inv, int i) {
    struct fk_inv_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "robot-0000000000%02X", i);
    snprintf(d.mac, sizeof d.mac, "02:00:00:00:00:%02X", i);
    snprintf(d.state, sizeof d.state, "minted");
    snprintf(d.manifest, sizeof d.manifest, "%s.json", d.id);
    assert_int_equal(fk_inventory_device_upsert(inv, &d, NULL), FK_OK);
}

/* Raw SQL on the file, as someone with write access to it would do; the triggers are the
 * first thing such a person removes. */
static void tamper(const char *sql) {
    if (fk_test_inv_is_pg()) {
#ifdef FK_HAVE_PG
        assert_int_equal(fk_test_pg_exec(db_path,
                                         "DROP TRIGGER IF EXISTS audit_no_update ON audit;"
                                         "DROP TRIGGER IF EXISTS audit_no_delete ON audit;"),
                         0);
        assert_int_equal(fk_test_pg_exec(db_path, sql), 0);
#endif
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    char *err = NULL;
    int r = sqlite3_exec(db,
                         "DROP TRIGGER IF EXISTS audit_no_update;"
                         "DROP TRIGGER IF EXISTS audit_no_delete;",
                         NULL, NULL, &err);
    assert_int_equal(r, SQLITE_OK);
    r = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (r != SQLITE_OK) {
        fprintf(stderr, "tamper: %s\n", err);
    }
    assert_int_equal(r, SQLITE_OK);
    sqlite3_close(db);
}

/* Raw SQL on the store, triggers left in place: 0 when it ran, -1 when the store refused. */
static int raw_exec(const char *sql) {
    if (fk_test_inv_is_pg()) {
#ifdef FK_HAVE_PG
        return fk_test_pg_exec(db_path, sql) == 0 ? 0 : -1;
#else
        return -1;
#endif
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL), SQLITE_OK);
    int r = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return r == SQLITE_OK ? 0 : -1;
}

static void audit_rows(struct fk_inventory *inv, int n) {
    for (int i = 0; i < n; i++) {
        char subject[32];
        char detail[64];
        snprintf(subject, sizeof subject, "robot-%012d", i);
        snprintf(detail, sizeof detail, "{\"psk_fingerprint\":\"sha256:%016d\"}", i);
        assert_int_equal(
            fk_inventory_audit_append(inv, "test", "device.minted", subject, detail, NULL), FK_OK);
    }
}

static enum fk_err verify_now(struct fk_inv_audit_report *rep) {
    struct fk_inventory *inv = open_db();
    enum fk_err rc = fk_inventory_audit_verify(inv, rep, NULL);
    fk_inventory_close(inv);
    return rc;
}

static void inventory_open_creates_0600_and_reopens(void **state) {
    (void)state;
    fresh_db("open");
    mode_t old = umask(0);
    struct fk_inventory *inv = open_db();
    umask(old);
    if (!fk_test_inv_is_pg()) { /* a database has no file mode */
        struct stat st;
        assert_int_equal(stat(db_path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    add_device(inv, 1);
    fk_inventory_close(inv);
    inv = open_db(); /* second open: no migration runs twice */
    struct fk_inv_device d;
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000001", &d, NULL), FK_OK);
    assert_string_equal(d.mac, "02:00:00:00:00:01");
    assert_string_equal(d.state, "minted");
    assert_string_equal(d.name, "");
    assert_int_equal(strlen(d.created_at), 20);
    fk_inventory_close(inv);
}

static void inventory_refuses_newer_schema(void **state) {
    (void)state;
    fresh_db("newer");
    fk_inventory_close(open_db());
    tamper("UPDATE schema_version SET version = 99");
    struct fk_inventory *inv = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_inventory_open(db_path, &inv, &d), FK_E_UNSUPPORTED);
    assert_null(inv);
    assert_non_null(strstr(d.msg, "99"));
}

static int count_dev(void *user, const struct fk_inv_device *d) {
    (void)d;
    (*(int *)user)++;
    return 0;
}

static int count_cred(void *user, const struct fk_inv_credential *c) {
    assert_string_equal(c->state, "revoked");
    (*(int *)user)++;
    return 0;
}

static int count_any_cred(void *user, const struct fk_inv_credential *c) {
    (void)c;
    (*(int *)user)++;
    return 0;
}

static int first_cred(void *user, const struct fk_inv_credential *c) {
    *(struct fk_inv_credential *)user = *c;
    return 1;
}

static void inventory_devices_and_credentials(void **state) {
    (void)state;
    fresh_db("devcred");
    struct fk_inventory *inv = open_db();
    struct fk_diag d;
    fk_diag_init(&d);
    for (int i = 0; i < 5; i++) {
        add_device(inv, i);
    }
    add_device(inv, 3); /* upsert: same id again is fine */
    int n = 0;
    assert_int_equal(fk_inventory_device_list(inv, count_dev, &n, NULL), FK_OK);
    assert_int_equal(n, 5);
    struct fk_inv_device dev;
    assert_int_equal(fk_inventory_device_get(inv, "robot-nope", &dev, NULL), FK_E_NOTFOUND);

    /* A second device may not claim an existing MAC. */
    struct fk_inv_device dup;
    memset(&dup, 0, sizeof dup);
    snprintf(dup.id, sizeof dup.id, "robot-FFFFFFFFFFFF");
    snprintf(dup.mac, sizeof dup.mac, "02:00:00:00:00:01");
    snprintf(dup.state, sizeof dup.state, "minted");
    assert_int_equal(fk_inventory_device_upsert(inv, &dup, &d), FK_E_DB);
    snprintf(dup.state, sizeof dup.state, "bogus");
    assert_int_equal(fk_inventory_device_upsert(inv, &dup, &d), FK_E_ARG);

    struct fk_inv_credential c;
    memset(&c, 0, sizeof c);
    snprintf(c.device_id, sizeof c.device_id, "robot-000000000002");
    snprintf(c.kind, sizeof c.kind, "psk");
    c.version = 1;
    snprintf(c.fingerprint, sizeof c.fingerprint, "sha256:0011223344556677");
    snprintf(c.state, sizeof c.state, "active");
    assert_int_equal(fk_inventory_credential_add(inv, &c, NULL), FK_OK);
    assert_int_equal(fk_inventory_credential_add(inv, &c, &d), FK_E_EXISTS);
    /* Foreign key: no credential for a device that does not exist. */
    snprintf(c.device_id, sizeof c.device_id, "robot-nope");
    assert_int_equal(fk_inventory_credential_add(inv, &c, &d), FK_E_DB);
    assert_int_equal(
        fk_inventory_credential_set_state(inv, "robot-000000000002", "psk", 1, "revoked", NULL),
        FK_OK);
    assert_int_equal(
        fk_inventory_credential_set_state(inv, "robot-000000000002", "psk", 2, "revoked", NULL),
        FK_E_NOTFOUND);
    n = 0;
    assert_int_equal(fk_inventory_credential_list(inv, "robot-000000000002", count_cred, &n, NULL),
                     FK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(fk_inventory_device_set_state(inv, "robot-000000000002", "provisioned",
                                                   "2025-01-15T10:30:00Z", NULL),
                     FK_OK);
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000002", &dev, NULL), FK_OK);
    assert_string_equal(dev.state, "provisioned");
    assert_string_equal(dev.provisioned_at, "2025-01-15T10:30:00Z");
    fk_inventory_close(inv);
}

static void inventory_rollback_discards_a_chunk(void **state) {
    (void)state;
    fresh_db("tx");
    struct fk_inventory *inv = open_db();
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_E_STATE);
    add_device(inv, 1);
    audit_rows(inv, 1);
    fk_inventory_rollback(inv);
    int n = 0;
    assert_int_equal(fk_inventory_device_list(inv, count_dev, &n, NULL), FK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fk_inventory_commit(inv, NULL), FK_E_STATE);

    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    add_device(inv, 1);
    add_device(inv, 2);
    audit_rows(inv, 2);
    assert_int_equal(fk_inventory_commit(inv, NULL), FK_OK);
    /* A transaction left open at close is rolled back, not committed. */
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    add_device(inv, 3);
    fk_inventory_close(inv);
    inv = open_db();
    n = 0;
    assert_int_equal(fk_inventory_device_list(inv, count_dev, &n, NULL), FK_OK);
    assert_int_equal(n, 2);
    struct fk_inv_audit_report rep;
    assert_int_equal(fk_inventory_audit_verify(inv, &rep, NULL), FK_OK);
    assert_int_equal(rep.rows, 2);
    fk_inventory_close(inv);
}

/* Devices a second connection sees: what is committed, not what a group holds. */
static int committed_devices(void) {
    struct fk_inventory *other = open_db();
    int n = 0;
    assert_int_equal(fk_inventory_device_list(other, count_dev, &n, NULL), FK_OK);
    fk_inventory_close(other);
    return n;
}

static void inventory_group_defers_commit_keeps_each_write_all_or_none(void **state) {
    (void)state;
    fresh_db("group");
    struct fk_inventory *inv = open_db();
    int grouped = -1;
    assert_int_equal(fk_inventory_group_begin(inv, &grouped, NULL), FK_OK);
    if (fk_test_inv_is_pg()) {
        /* no groups: each write is its own transaction, as without one */
        assert_int_equal(grouped, 0);
        add_device(inv, 1);
        assert_int_equal(committed_devices(), 1);
        assert_int_equal(fk_inventory_group_commit(inv, NULL), FK_E_STATE);
        fk_inventory_close(inv);
        return;
    }
    assert_int_equal(grouped, 1);
    assert_int_equal(fk_inventory_group_begin(inv, &grouped, NULL), FK_E_STATE);
    assert_int_equal(grouped, 0);
    /* an explicit transaction inside is a savepoint: commit keeps it in the group */
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_E_STATE);
    add_device(inv, 1);
    audit_rows(inv, 1);
    assert_int_equal(fk_inventory_commit(inv, NULL), FK_OK);
    /* a rollback undoes its own writes only */
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    add_device(inv, 2);
    assert_int_equal(fk_inventory_credential_set_state(inv, "robot-000000000002", "psk", 9,
                                                       "revoked", NULL),
                     FK_E_NOTFOUND);
    fk_inventory_rollback(inv);
    /* a failed write of its own: rolled back alone, the group goes on */
    assert_int_equal(fk_inventory_credential_set_state(inv, "robot-000000000001", "psk", 9,
                                                       "revoked", NULL),
                     FK_E_NOTFOUND);
    add_device(inv, 3);
    audit_rows(inv, 2);
    struct fk_inv_audit_report rep;
    assert_int_equal(fk_inventory_audit_verify(inv, &rep, NULL), FK_OK);
    assert_int_equal(rep.rows, 3);
    /* nothing is committed before group_commit: another connection sees none of it */
    assert_int_equal(committed_devices(), 0);
    assert_int_equal(fk_inventory_group_commit(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_group_commit(inv, NULL), FK_E_STATE);
    assert_int_equal(committed_devices(), 2);
    /* a transaction left open inside is not committed with the group */
    assert_int_equal(fk_inventory_group_begin(inv, &grouped, NULL), FK_OK);
    add_device(inv, 4);
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    add_device(inv, 5);
    assert_int_equal(fk_inventory_group_commit(inv, NULL), FK_OK);
    assert_int_equal(committed_devices(), 3);
    /* a group left open at close is rolled back */
    assert_int_equal(fk_inventory_group_begin(inv, &grouped, NULL), FK_OK);
    add_device(inv, 6);
    audit_rows(inv, 1);
    fk_inventory_close(inv);
    assert_int_equal(committed_devices(), 3);
    assert_int_equal(verify_now(&rep), FK_OK);
    assert_int_equal(rep.rows, 3);
}

static void audit_refuses_update_through_the_library_file(void **state) {
    (void)state;
    fresh_db("trigger");
    struct fk_inventory *inv = open_db();
    audit_rows(inv, 2);
    fk_inventory_close(inv);
    if (fk_test_inv_is_pg()) {
#ifdef FK_HAVE_PG
        assert_int_not_equal(fk_test_pg_exec(db_path, "UPDATE audit SET kind = 'x'"), 0);
        assert_int_not_equal(fk_test_pg_exec(db_path, "DELETE FROM audit"), 0);
        assert_int_not_equal(fk_test_pg_exec(db_path, "TRUNCATE audit"), 0);
#endif
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "UPDATE audit SET kind = 'x'", NULL, NULL, NULL),
                         SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "DELETE FROM audit", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

struct after_walk {
    long long *seq;
    size_t *n;
};

static int collect_seq(void *user, const struct fk_inv_audit *a) {
    struct after_walk *w = user;
    if (*w->n < 16) {
        w->seq[(*w->n)++] = a->seq;
    }
    return 0;
}

static void audit_chain_verifies_when_untouched(void **state) {
    (void)state;
    fresh_db("intact");
    struct fk_inv_audit_report rep;
    assert_int_equal(verify_now(&rep), FK_OK); /* empty log */
    assert_int_equal(rep.rows, 0);
    struct fk_inventory *inv = open_db();
    audit_rows(inv, 10);
    fk_inventory_close(inv);
    assert_int_equal(verify_now(&rep), FK_OK);
    assert_int_equal(rep.rows, 10);
    assert_int_equal(rep.head_seq, 10);
    assert_int_equal(strlen(rep.head_hash), 64);
    assert_string_equal(rep.problem, "");
    /* a reader that saw rows 1..7 gets 8, 9, 10, in order */
    inv = open_db();
    long long seen[16];
    size_t n_seen = 0;
    struct after_walk w = {seen, &n_seen};
    assert_int_equal(fk_inventory_audit_list_after(inv, 7, collect_seq, &w, NULL), FK_OK);
    assert_int_equal(n_seen, 3);
    assert_true(seen[0] == 8 && seen[1] == 9 && seen[2] == 10);
    n_seen = 0;
    assert_int_equal(fk_inventory_audit_list_after(inv, 10, collect_seq, &w, NULL), FK_OK);
    assert_int_equal(n_seen, 0);
    int found = 0;
    assert_int_equal(
        fk_inventory_audit_exists(inv, "device.minted", "robot-000000000009", &found, NULL), FK_OK);
    assert_int_equal(found, 1);
    assert_int_equal(
        fk_inventory_audit_exists(inv, "device.minted", "robot-000000000010", &found, NULL), FK_OK);
    assert_int_equal(found, 0);
    assert_int_equal(
        fk_inventory_audit_exists(inv, "device.retired", "robot-000000000009", &found, NULL), FK_OK);
    assert_int_equal(found, 0);
    fk_inventory_close(inv);
}

/* Each tampering scenario starts from the same 10-row log. */
static void expect_tamper_detected(const char *name, const char *sql, long long bad_seq) {
    fresh_db(name);
    struct fk_inventory *inv = open_db();
    audit_rows(inv, 10);
    fk_inventory_close(inv);
    struct fk_inv_audit_report rep;
    assert_int_equal(verify_now(&rep), FK_OK);
    tamper(sql);
    assert_int_equal(verify_now(&rep), FK_E_VERIFY);
    assert_string_not_equal(rep.problem, "");
    if (bad_seq > 0) {
        assert_int_equal(rep.bad_seq, bad_seq);
    }
}

static void audit_verify_detects_edited_content(void **state) {
    (void)state;
    expect_tamper_detected("edit", "UPDATE audit SET subject = 'robot-EVIL' WHERE seq = 4", 4);
    expect_tamper_detected("edit_detail",
                           "UPDATE audit SET detail = '{\"psk_fingerprint\":\"x\"}'"
                           " WHERE seq = 7",
                           7);
    expect_tamper_detected("edit_time",
                           "UPDATE audit SET at = '2020-01-01T00:00:00Z'"
                           " WHERE seq = 1",
                           1);
}

static void audit_verify_detects_deleted_row(void **state) {
    (void)state;
    expect_tamper_detected("delete", "DELETE FROM audit WHERE seq = 5", 5);
    /* Deleting and renumbering the rest so seq has no gap still breaks the chain. */
    expect_tamper_detected("delete_renumber",
                           "DELETE FROM audit WHERE seq = 5;"
                           "UPDATE audit SET seq = seq - 1 WHERE seq > 5",
                           5);
}

static void audit_verify_detects_reordered_rows(void **state) {
    (void)state;
    expect_tamper_detected("reorder",
                           "UPDATE audit SET seq = 100 WHERE seq = 3;"
                           "UPDATE audit SET seq = 3 WHERE seq = 4;"
                           "UPDATE audit SET seq = 4 WHERE seq = 100;",
                           3);
}

static void audit_verify_detects_inserted_row(void **state) {
    (void)state;
    /* A copy of row 2 (with its valid hashes) slipped in after it, the rest shifted. */
    expect_tamper_detected("insert",
                           "UPDATE audit SET seq = seq + 1000 WHERE seq > 2;"
                           "UPDATE audit SET seq = seq - 999 WHERE seq > 1000;"
                           "INSERT INTO audit(seq, at, actor, kind, subject, detail, prev_hash,"
                           " hash) SELECT 3, at, actor, kind, subject, detail, prev_hash, hash"
                           " FROM audit WHERE seq = 2;",
                           3);
    /* A forged row appended at the end without moving the head. */
    expect_tamper_detected("append",
                           "INSERT INTO audit(seq, at, actor, kind, subject, detail, prev_hash,"
                           " hash) SELECT 11, at, actor, kind, subject, detail, hash, hash"
                           " FROM audit WHERE seq = 10;",
                           11);
}

static void audit_verify_detects_truncated_tail(void **state) {
    (void)state;
    expect_tamper_detected("truncate", "DELETE FROM audit WHERE seq > 8", 9);
    expect_tamper_detected(
        "head_edit", "UPDATE audit_head SET hash = (SELECT hash FROM audit WHERE seq = 3)", 0);
}

/* Several processes append at once (as two servers and a batch do): every append lands, in one
 * chain without gaps or forks. Half the writers use explicit transactions that also write a
 * device, half one append per call. */
static void audit_concurrent_writers_keep_one_chain(void **state) {
    (void)state;
    enum { WRITERS = 4, EACH = 60 };
    fresh_db("concurrent");
    fk_inventory_close(open_db()); /* migrated once, before the race */
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            struct fk_inventory *inv = NULL;
            int bad = fk_inventory_open(db_path, &inv, NULL) != FK_OK;
            for (int i = 0; i < EACH && !bad; i++) {
                char subject[32];
                snprintf(subject, sizeof subject, "w%d-%d", w, i);
                if (w % 2 == 0) {
                    struct fk_inv_device d;
                    memset(&d, 0, sizeof d);
                    snprintf(d.id, sizeof d.id, "robot-%02X%010X", w, i);
                    snprintf(d.mac, sizeof d.mac, "02:%02X:00:00:%02X:%02X", w, i >> 8, i & 255);
                    snprintf(d.state, sizeof d.state, "minted");
                    bad = fk_inventory_begin(inv, NULL) != FK_OK ||
                          fk_inventory_device_upsert(inv, &d, NULL) != FK_OK ||
                          fk_inventory_audit_append(inv, "w", "device.minted", subject, "{}",
                                                    NULL) != FK_OK ||
                          fk_inventory_commit(inv, NULL) != FK_OK;
                } else {
                    bad = fk_inventory_audit_append(inv, "w", "device.seen", subject, "{}",
                                                    NULL) != FK_OK;
                }
            }
            fk_inventory_close(inv);
            _exit(bad ? 1 : 0);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int st = 0;
        assert_int_equal(waitpid(pids[w], &st, 0), pids[w]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    struct fk_inv_audit_report rep;
    assert_int_equal(verify_now(&rep), FK_OK);
    assert_int_equal(rep.rows, WRITERS * EACH);
    assert_int_equal(rep.head_seq, WRITERS * EACH);
    struct fk_inventory *inv = open_db();
    int n = 0;
    assert_int_equal(fk_inventory_device_list(inv, count_dev, &n, NULL), FK_OK);
    assert_int_equal(n, WRITERS / 2 * EACH);
    fk_inventory_close(inv);
}

/* Several programs opening a new store at once: each migration runs once (a second run of
 * migration 0 would fail on CREATE TABLE), every open succeeds. */
static void open_concurrently_migrates_once(void **state) {
    (void)state;
    enum { OPENERS = 4 };
    fresh_db("migrate_race");
    pid_t pids[OPENERS];
    for (int w = 0; w < OPENERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            struct fk_inventory *inv = NULL;
            struct fk_diag d;
            fk_diag_init(&d);
            enum fk_err rc = fk_inventory_open(db_path, &inv, &d);
            if (rc != FK_OK) {
                fprintf(stderr, "open %d: %s\n", w, d.msg);
            }
            fk_inventory_close(inv);
            _exit(rc == FK_OK ? 0 : 1);
        }
    }
    for (int w = 0; w < OPENERS; w++) {
        int st = 0;
        assert_int_equal(waitpid(pids[w], &st, 0), pids[w]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

/* Back to schema 6's credentials table (a rowid table with a surrogate id and a UNIQUE
 * constraint on the key), its rows kept: what migration 7 finds in a store made before it. */
static const char undo_schema_7_sqlite[] =
    "CREATE TABLE credentials_v6("
    " id INTEGER PRIMARY KEY,"
    " device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE RESTRICT,"
    " kind TEXT NOT NULL,"
    " version INTEGER NOT NULL CHECK (version >= 1),"
    " fingerprint TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " expires_at TEXT,"
    " state TEXT NOT NULL CHECK (state = 'active' OR state = 'staged' OR state = 'retired' OR"
    " state = 'revoked'),"
    " UNIQUE(device_id, kind, version));"
    "INSERT INTO credentials_v6(device_id, kind, version, fingerprint, created_at, expires_at,"
    " state) SELECT device_id, kind, version, fingerprint, created_at, expires_at, state"
    " FROM credentials;"
    "DROP TABLE credentials;"
    "ALTER TABLE credentials_v6 RENAME TO credentials;"
    "UPDATE schema_version SET version = 6;";
static const char undo_schema_7_pg[] =
    "ALTER TABLE credentials DROP CONSTRAINT credentials_pkey,"
    " ADD COLUMN id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " ADD CONSTRAINT credentials_device_id_kind_version_key UNIQUE(device_id, kind, version);"
    "UPDATE schema_version SET version = 6;";

static void undo_schema_7(void) {
    tamper(fk_test_inv_is_pg() ? undo_schema_7_pg : undo_schema_7_sqlite);
}

/* A store left at schema 2 (before the OTA rotation table and the presence's ota column) is
 * migrated forward on open, migrations 3 and 4 only, and then holds what they added. */
static void open_migrates_an_older_schema_forward(void **state) {
    (void)state;
    fresh_db("older");
    struct fk_inventory *inv = open_db();
    add_device(inv, 1);
    fk_inventory_close(inv);
    undo_schema_7();
    tamper("DROP TABLE rot_plans; DROP TABLE ota_rotation;"
           " ALTER TABLE device_presence DROP COLUMN ota; UPDATE schema_version SET version = 2");
    inv = open_db();
    struct fk_inv_device dev;
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000001", &dev, NULL), FK_OK);
    static uint8_t der[64], endorsement[FK_INV_ENDORSE_LEN];
    memset(der, 0x30, sizeof der);
    memset(endorsement, 0x5A, sizeof endorsement);
    assert_int_equal(fk_inventory_rotation_add(inv, "sha256:aa", "sha256:bb", der, sizeof der,
                                               endorsement, NULL),
                     FK_OK);
    static struct fk_inv_rotation rot;
    assert_int_equal(fk_inventory_rotation_last(inv, &rot, NULL), FK_OK);
    assert_string_equal(rot.new_fpr, "sha256:bb");
    assert_int_equal(rot.new_der_len, sizeof der);
    assert_memory_equal(rot.endorsement, endorsement, sizeof endorsement);
    static struct fk_inv_presence p;
    memset(&p, 0, sizeof p);
    snprintf(p.device_id, sizeof p.device_id, "robot-000000000001");
    snprintf(p.ota, sizeof p.ota, "{\"running\":\"ota_0\"}");
    assert_int_equal(fk_inventory_device_seen(inv, &p, NULL, NULL, NULL), FK_OK);
    assert_int_equal(fk_inventory_presence_get(inv, "robot-000000000001", &p, NULL), FK_OK);
    assert_string_equal(p.ota, "{\"running\":\"ota_0\"}");
    fk_inventory_close(inv);
}

static struct fk_inv_credential cred_of(int dev, const char *kind, const char *state) {
    struct fk_inv_credential c;
    memset(&c, 0, sizeof c);
    snprintf(c.device_id, sizeof c.device_id, "robot-0000000000%02X", dev);
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    c.version = 1;
    snprintf(c.fingerprint, sizeof c.fingerprint, "sha256:%016d", dev);
    snprintf(c.state, sizeof c.state, "%s", state);
    return c;
}

static int credentials_of(struct fk_inventory *inv, const char *id) {
    int n = 0;
    assert_int_equal(fk_inventory_credential_list(inv, id, count_any_cred, &n, NULL), FK_OK);
    return n;
}

/* A device's credentials in one call: all of them, or none when one is a duplicate, invalid,
 * or the count is out of range. */
static void credential_add_many_is_all_or_none(void **state) {
    (void)state;
    fresh_db("many");
    struct fk_inventory *inv = open_db();
    struct fk_diag d;
    fk_diag_init(&d);
    add_device(inv, 1);
    add_device(inv, 2);
    struct fk_inv_credential v[FK_INV_CRED_MANY_MAX + 1];
    v[0] = cred_of(1, "psk", "active");
    v[1] = cred_of(1, "ota_pubkey", "active");
    v[2] = cred_of(1, "nvs_keys", "staged");
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 3, &d), FK_OK);
    assert_int_equal(credentials_of(inv, "robot-000000000001"), 3);
    struct fk_inv_credential got;
    assert_int_equal(
        fk_inventory_credential_list(inv, "robot-000000000001", first_cred, &got, NULL), FK_OK);
    assert_string_equal(got.kind, "nvs_keys"); /* ordered by kind */
    assert_string_equal(got.state, "staged");
    assert_true(got.created_at[0] != '\0'); /* "" means now */

    /* One duplicate among new ones: none added, in a transaction of the caller's too. */
    v[0] = cred_of(2, "psk", "active");
    v[1] = cred_of(1, "psk", "active");
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 2, &d), FK_E_EXISTS);
    assert_int_equal(credentials_of(inv, "robot-000000000002"), 0);
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 2, &d), FK_E_EXISTS);
    fk_inventory_rollback(inv);
    assert_int_equal(credentials_of(inv, "robot-000000000002"), 0);

    /* Checked before anything is written. */
    v[1] = cred_of(2, "ota_pubkey", "bogus");
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 2, &d), FK_E_ARG);
    v[1] = cred_of(2, "ota_pubkey", "active");
    v[1].version = 0;
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 2, &d), FK_E_ARG);
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 0, &d), FK_E_ARG);
    for (int i = 0; i <= FK_INV_CRED_MANY_MAX; i++) {
        char kind[16];
        snprintf(kind, sizeof kind, "k%d", i);
        v[i] = cred_of(2, kind, "active");
    }
    assert_int_equal(fk_inventory_credential_add_many(inv, v, FK_INV_CRED_MANY_MAX + 1, &d),
                     FK_E_ARG);
    assert_int_equal(credentials_of(inv, "robot-000000000002"), 0);
    /* The largest count, and a device that does not exist (foreign key). */
    assert_int_equal(fk_inventory_credential_add_many(inv, v, FK_INV_CRED_MANY_MAX, &d), FK_OK);
    assert_int_equal(credentials_of(inv, "robot-000000000002"), FK_INV_CRED_MANY_MAX);
    v[0] = cred_of(9, "psk", "active");
    assert_int_equal(fk_inventory_credential_add_many(inv, v, 1, &d), FK_E_DB);
    fk_inventory_close(inv);
}

static struct fk_inv_device device_of(int i, const char *state) {
    struct fk_inv_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "robot-0000000000%02X", i);
    snprintf(d.mac, sizeof d.mac, "02:00:00:00:00:%02X", i);
    snprintf(d.state, sizeof d.state, "%s", state);
    return d;
}

/* Several devices and audit entries per call: all of them or none, in order. */
static void device_and_audit_many_are_all_or_none(void **state) {
    (void)state;
    fresh_db("devmany");
    struct fk_inventory *inv = open_db();
    struct fk_diag d;
    fk_diag_init(&d);
    struct fk_inv_device v[FK_INV_MANY_MAX + 1];
    for (int i = 0; i <= FK_INV_MANY_MAX; i++) {
        v[i] = device_of(i + 1, "minted");
    }
    assert_int_equal(fk_inventory_device_upsert_many(inv, v, 3, &d), FK_OK);
    v[0].name[0] = 'x'; /* upsert: an existing id is updated */
    assert_int_equal(fk_inventory_device_upsert_many(inv, v, 1, &d), FK_OK);
    struct fk_inv_device got;
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000001", &got, NULL), FK_OK);
    assert_string_equal(got.name, "x");
    assert_true(got.created_at[0] != '\0');
    /* A new device claiming device 2's MAC: the statement fails, device 4 is not written. */
    struct fk_inv_device bad[2] = {device_of(4, "minted"), device_of(5, "minted")};
    snprintf(bad[1].mac, sizeof bad[1].mac, "02:00:00:00:00:02");
    assert_int_equal(fk_inventory_device_upsert_many(inv, bad, 2, &d), FK_E_DB);
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000004", &got, NULL), FK_E_NOTFOUND);
    bad[1] = device_of(5, "bogus");
    assert_int_equal(fk_inventory_device_upsert_many(inv, bad, 2, &d), FK_E_ARG);
    bad[1] = device_of(4, "minted"); /* the same id twice in one call */
    assert_int_equal(fk_inventory_device_upsert_many(inv, bad, 2, &d), FK_E_ARG);
    assert_int_equal(fk_inventory_device_upsert_many(inv, v, 0, &d), FK_E_ARG);
    assert_int_equal(fk_inventory_device_upsert_many(inv, v, FK_INV_MANY_MAX + 1, &d), FK_E_ARG);
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000004", &got, NULL), FK_E_NOTFOUND);
    assert_int_equal(fk_inventory_device_upsert_many(inv, v, FK_INV_MANY_MAX, &d), FK_OK);
    int n = 0;
    assert_int_equal(fk_inventory_device_list(inv, count_dev, &n, NULL), FK_OK);
    assert_int_equal(n, FK_INV_MANY_MAX);

    struct fk_inv_audit_entry e[FK_INV_MANY_MAX + 1];
    for (int i = 0; i <= FK_INV_MANY_MAX; i++) {
        e[i] = (struct fk_inv_audit_entry){v[i].id, i % 2 == 0 ? "{\"k\":1}" : NULL};
    }
    audit_rows(inv, 1);
    assert_int_equal(fk_inventory_audit_append_many(inv, "test", "device.minted", e, 3, &d), FK_OK);
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    assert_int_equal(
        fk_inventory_audit_append_many(inv, "test", "device.minted", e, FK_INV_MANY_MAX, &d),
        FK_OK);
    audit_rows(inv, 1);
    assert_int_equal(fk_inventory_commit(inv, NULL), FK_OK);
    assert_int_equal(
        fk_inventory_audit_append_many(inv, "test", "device.minted", e, FK_INV_MANY_MAX + 1, &d),
        FK_E_ARG);
    assert_int_equal(fk_inventory_audit_append_many(inv, "test", "device.minted", e, 0, &d),
                     FK_E_ARG);
    e[1].subject = NULL;
    assert_int_equal(fk_inventory_audit_append_many(inv, "test", "device.minted", e, 2, &d),
                     FK_E_ARG);
    struct fk_inv_audit_report rep;
    assert_int_equal(fk_inventory_audit_verify(inv, &rep, NULL), FK_OK);
    assert_int_equal(rep.rows, 1 + 3 + FK_INV_MANY_MAX + 1);
    fk_inventory_close(inv);
}

/* The head is written once per transaction: a verify inside the transaction, after the
 * commit and after a rollback all see the head that matches the last row. */
static void audit_head_follows_the_transaction(void **state) {
    (void)state;
    fresh_db("head");
    struct fk_inventory *inv = open_db();
    struct fk_inv_audit_report rep;
    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    audit_rows(inv, 5);
    assert_int_equal(fk_inventory_audit_verify(inv, &rep, NULL), FK_OK);
    assert_int_equal(rep.head_seq, 5);
    audit_rows(inv, 2);
    assert_int_equal(fk_inventory_commit(inv, NULL), FK_OK);
    assert_int_equal(verify_now(&rep), FK_OK);
    assert_int_equal(rep.rows, 7);
    assert_int_equal(rep.head_seq, 7);
    char head[65];
    memcpy(head, rep.head_hash, sizeof head);

    assert_int_equal(fk_inventory_begin(inv, NULL), FK_OK);
    audit_rows(inv, 3);
    fk_inventory_rollback(inv);
    assert_int_equal(verify_now(&rep), FK_OK);
    assert_int_equal(rep.head_seq, 7);
    assert_string_equal(rep.head_hash, head);
    audit_rows(inv, 1); /* its own transaction: head read back from the store */
    assert_int_equal(verify_now(&rep), FK_OK);
    assert_int_equal(rep.head_seq, 8);
    fk_inventory_close(inv);
}

/* SQLite: the integer a one-row query of the file answers. */
static int sqlite_int(const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* SQLite: how many of devices, credentials have a CHECK with an IN list. */
static int tables_with_in_list(void) {
    return sqlite_int("SELECT count(*) FROM sqlite_master WHERE name IN"
                      " ('devices', 'credentials') AND sql LIKE '% IN (%'");
}

/* Migrations 5 and 6 from a store at schema 4 (6 adds rot_plans, dropped here with it): the fingerprint index is gone and the state CHECKs
 * still refuse what they refused (on SQLite now without an IN list). */
static void open_migrates_schema_4_to_5(void **state) {
    (void)state;
    fresh_db("schema4");
    struct fk_inventory *inv = open_db();
    add_device(inv, 1);
    fk_inventory_close(inv);
    undo_schema_7();
    if (fk_test_inv_is_pg()) {
        tamper("CREATE INDEX credentials_fpr ON credentials(fingerprint);"
               " DROP TABLE rot_plans; UPDATE schema_version SET version = 4");
    } else {
        /* Back to schema 4's text, as migration 0 wrote it. */
        tamper("CREATE INDEX credentials_fpr ON credentials(fingerprint);"
               "DROP TABLE rot_plans;"
               "PRAGMA writable_schema = ON;"
               "UPDATE sqlite_master SET sql = replace(sql, 'state = ''minted'' OR"
               " state = ''provisioned'' OR state = ''retired''', 'state IN (''minted'',"
               " ''provisioned'', ''retired'')') WHERE name = 'devices';"
               "UPDATE sqlite_master SET sql = replace(sql, 'state = ''active'' OR"
               " state = ''staged'' OR state = ''retired'' OR state = ''revoked''',"
               " 'state IN (''active'', ''staged'', ''retired'', ''revoked'')')"
               " WHERE name = 'credentials';"
               "PRAGMA writable_schema = RESET;"
               "UPDATE schema_version SET version = 4");
        assert_int_equal(raw_exec("CREATE INDEX credentials_fpr ON credentials(kind)"), -1);
        assert_int_equal(tables_with_in_list(), 2);
    }
    inv = open_db();
    struct fk_inv_device dev;
    assert_int_equal(fk_inventory_device_get(inv, "robot-000000000001", &dev, NULL), FK_OK);
    fk_inventory_close(inv);
    assert_int_equal(raw_exec("DROP INDEX credentials_fpr"), -1); /* no such index */
    if (!fk_test_inv_is_pg()) {
        assert_int_equal(tables_with_in_list(), 0);
    }
    assert_int_equal(raw_exec("UPDATE devices SET state = 'bogus'"), -1);
    assert_int_equal(raw_exec("INSERT INTO credentials(device_id, kind, version, fingerprint,"
                              " created_at, state) VALUES('robot-000000000001', 'psk', 1,"
                              " 'sha256:00', '2026-01-01T00:00:00Z', 'bogus')"),
                     -1);
    assert_int_equal(raw_exec("INSERT INTO credentials(device_id, kind, version, fingerprint,"
                              " created_at, state) VALUES('robot-000000000001', 'psk', 1,"
                              " 'sha256:00', '2026-01-01T00:00:00Z', 'revoked')"),
                     0);
    assert_int_equal(raw_exec("UPDATE devices SET state = 'retired'"), 0);
}

/* SQLite: 1 when credentials is a WITHOUT ROWID table. PostgreSQL: 1 when it has no id
 * column and its primary key is (device_id, kind, version). */
static int credentials_keyed_by_identity(void) {
    if (fk_test_inv_is_pg()) {
        return raw_exec("SELECT id FROM credentials") != 0 &&
               raw_exec("DO $$BEGIN IF (SELECT string_agg(a.attname, ',' ORDER BY k.n)"
                        " FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n),"
                        " pg_attribute a WHERE i.indrelid = 'credentials'::regclass AND"
                        " i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum)"
                        " IS DISTINCT FROM 'device_id,kind,version' THEN RAISE EXCEPTION"
                        " 'wrong key'; END IF; END$$") == 0;
    }
    return sqlite_int("SELECT count(*) FROM sqlite_master WHERE name = 'credentials' AND"
                      " sql LIKE '%) WITHOUT ROWID'") == 1 &&
           raw_exec("SELECT rowid FROM credentials") != 0;
}

/* Migration 7 from a store at schema 6: credentials become keyed by (device_id, kind,
 * version) (WITHOUT ROWID on SQLite, that key as primary key on PostgreSQL), every row is
 * kept as it was, and the constraints still hold: a duplicate is FK_E_EXISTS, an unknown
 * device or a bad state is refused. */
static void open_migrates_schema_6_to_7(void **state) {
    (void)state;
    fresh_db("schema6");
    struct fk_inventory *inv = open_db();
    for (int i = 1; i <= 3; i++) {
        add_device(inv, i);
    }
    struct fk_inv_credential c[3] = {cred_of(1, "psk", "active"), cred_of(2, "psk", "retired"),
                                     cred_of(2, "ota_pubkey", "active")};
    snprintf(c[2].expires_at, sizeof c[2].expires_at, "2030-01-01T00:00:00Z");
    assert_int_equal(fk_inventory_credential_add_many(inv, c, 3, NULL), FK_OK);
    fk_inventory_close(inv);
    undo_schema_7();
    assert_false(credentials_keyed_by_identity());
    inv = open_db();
    assert_true(credentials_keyed_by_identity());
    assert_int_equal(credentials_of(inv, "robot-000000000001"), 1);
    assert_int_equal(credentials_of(inv, "robot-000000000002"), 2);
    assert_int_equal(credentials_of(inv, "robot-000000000003"), 0);
    static struct fk_inv_credential got;
    assert_int_equal(
        fk_inventory_credential_list(inv, "robot-000000000001", first_cred, &got, NULL), FK_OK);
    assert_string_equal(got.fingerprint, c[0].fingerprint);
    assert_string_equal(got.state, "active");
    assert_string_equal(got.expires_at, "");
    assert_int_equal(
        fk_inventory_credential_list(inv, "robot-000000000002", first_cred, &got, NULL),
        FK_OK); /* ordered by kind: ota_pubkey first */
    assert_string_equal(got.kind, "ota_pubkey");
    assert_string_equal(got.expires_at, "2030-01-01T00:00:00Z");
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_inventory_credential_add(inv, &c[1], &d), FK_E_EXISTS);
    struct fk_inv_credential next = cred_of(2, "psk", "active");
    next.version = 2;
    assert_int_equal(fk_inventory_credential_add(inv, &next, NULL), FK_OK);
    fk_inventory_close(inv);
    assert_int_equal(raw_exec("INSERT INTO credentials(device_id, kind, version, fingerprint,"
                              " created_at, state) VALUES('robot-0000000000FF', 'psk', 1,"
                              " 'sha256:00', '2026-01-01T00:00:00Z', 'active')"),
                     -1);
    assert_int_equal(raw_exec("INSERT INTO credentials(device_id, kind, version, fingerprint,"
                              " created_at, state) VALUES('robot-000000000003', 'psk', 1,"
                              " 'sha256:00', '2026-01-01T00:00:00Z', 'bogus')"),
                     -1);
    assert_int_equal(raw_exec("INSERT INTO credentials(device_id, kind, version, fingerprint,"
                              " created_at, state) VALUES('robot-000000000003', 'psk', 0,"
                              " 'sha256:00', '2026-01-01T00:00:00Z', 'active')"),
                     -1);
    assert_int_equal(raw_exec("INSERT INTO credentials(device_id, kind, version, fingerprint,"
                              " created_at, state) VALUES('robot-000000000003', 'psk', 1,"
                              " 'sha256:00', '2026-01-01T00:00:00Z', 'active')"),
                     0);
}

/* What is printed or logged of a location never shows its password. */
static void location_display_masks_passwords(void **state) {
    (void)state;
    char out[128];
    fk_inventory_location_display("postgresql://fleet:s3cret@db.example:5433/fk?sslmode=require",
                                  out, sizeof out);
    assert_string_equal(out, "postgresql://fleet:***@db.example:5433/fk?sslmode=require");
    fk_inventory_location_display("postgres://u:p@h/d?password=xy&host=/run/pg", out, sizeof out);
    assert_string_equal(out, "postgres://u:***@h/d?password=***&host=/run/pg");
    fk_inventory_location_display("postgresql://fleet@/fk?host=/tmp/s", out, sizeof out);
    assert_string_equal(out, "postgresql://fleet@/fk?host=/tmp/s");
    /* a password= inside what reads as the user name is masked as well (found by fuzzing) */
    fk_inventory_location_display("postgresql://password=pw:x@h/d", out, sizeof out);
    assert_string_equal(out, "postgresql://password=******@h/d");
    fk_inventory_location_display("postgresql://u:pa/ss@h/d", out, sizeof out);
    assert_string_equal(out, "postgresql://u:***@h/d");
    fk_inventory_location_display("keys/inventory.db", out, sizeof out);
    assert_string_equal(out, "keys/inventory.db");
    /* cut short, the mask is still whole: nothing of the password appears */
    fk_inventory_location_display("postgresql://u:longpassword@h/d", out, 18);
    assert_string_equal(out, "postgresql://u:**");
    assert_true(fk_inventory_is_postgresql("postgres://h/d"));
    assert_false(fk_inventory_is_postgresql("postgresql.db"));
}

/* A server that is not there: FK_E_DB (FK_E_UNSUPPORTED without libpq), naming the URI with
 * its password masked and libpq's reason. */
static void open_refused_names_uri_without_password(void **state) {
    (void)state;
    struct fk_inventory *inv = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_inventory_open(
        "postgresql://fleet:s3cret@/fk?host=/nonexistent-fleetkey-dir&connect_timeout=5", &inv,
        &d);
    assert_null(inv);
    assert_true(rc == FK_E_DB || rc == FK_E_UNSUPPORTED);
    char text[1024];
    fk_diag_format(&d, text, sizeof text);
    assert_null(strstr(text, "s3cret"));
    assert_non_null(strstr(text, "postgresql://fleet:***@/fk?host=/nonexistent-fleetkey-dir"));
    if (rc == FK_E_DB) {
        assert_non_null(strstr(text, "cannot connect"));
        assert_non_null(strstr(text, "No such file or directory"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inventory_open_creates_0600_and_reopens),
        cmocka_unit_test(inventory_refuses_newer_schema),
        cmocka_unit_test(inventory_devices_and_credentials),
        cmocka_unit_test(inventory_rollback_discards_a_chunk),
        cmocka_unit_test(inventory_group_defers_commit_keeps_each_write_all_or_none),
        cmocka_unit_test(audit_refuses_update_through_the_library_file),
        cmocka_unit_test(audit_chain_verifies_when_untouched),
        cmocka_unit_test(audit_verify_detects_edited_content),
        cmocka_unit_test(audit_verify_detects_deleted_row),
        cmocka_unit_test(audit_verify_detects_reordered_rows),
        cmocka_unit_test(audit_verify_detects_inserted_row),
        cmocka_unit_test(audit_verify_detects_truncated_tail),
        cmocka_unit_test(audit_concurrent_writers_keep_one_chain),
        cmocka_unit_test(open_concurrently_migrates_once),
        cmocka_unit_test(open_migrates_an_older_schema_forward),
        cmocka_unit_test(credential_add_many_is_all_or_none),
        cmocka_unit_test(audit_head_follows_the_transaction),
        cmocka_unit_test(device_and_audit_many_are_all_or_none),
        cmocka_unit_test(open_migrates_schema_4_to_5),
        cmocka_unit_test(open_migrates_schema_6_to_7),
        cmocka_unit_test(location_display_masks_passwords),
        cmocka_unit_test(open_refused_names_uri_without_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
