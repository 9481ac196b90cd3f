/* Inventory backend: SQLite (one file, nothing to start).
 *
 * Design: WAL journal (readers never block the single writer), synchronous=FULL because a
 * committed device row is the commit point of provision-keys batch and must survive power
 * loss. A write transaction is BEGIN IMMEDIATE: it takes the file's write lock at once, which
 * is what serialises audit appends across processes (inventory_internal.h). The schema is
 * versioned in schema_version and migrated forward on open under that lock; a file newer
 * than this program is refused rather than guessed at. Triggers refuse UPDATE and DELETE on
 * audit: a guard rail against mistakes, not a defence (anyone who can write the file can drop
 * them); the hash chain (inventory.c) is the defence. */
#include "inventory_internal.h"

#include <sqlite3.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum stmt_id {
    ST_DEV_UPSERT,
    ST_DEV_GET,
    ST_CRED_ADD,
    ST_HEAD_GET,
    ST_HEAD_SET,
    ST_SEEN_GET,
    ST_SEEN_SET,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_DEV_UPSERT] =
        "INSERT INTO devices(id, mac, name, state, manifest, manifest_sha256, created_at,"
        " provisioned_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT(id) DO UPDATE SET mac = excluded.mac, name = excluded.name,"
        " state = excluded.state, manifest = excluded.manifest,"
        " manifest_sha256 = excluded.manifest_sha256, created_at = excluded.created_at,"
        " provisioned_at = excluded.provisioned_at",
    [ST_DEV_GET] = "SELECT id, mac, name, state, manifest, manifest_sha256, created_at,"
                   " provisioned_at FROM devices WHERE id = ?1",
    [ST_CRED_ADD] = "INSERT INTO credentials(device_id, kind, version, fingerprint, created_at,"
                    " expires_at, state) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_HEAD_GET] = "SELECT seq, hash FROM audit_head WHERE id = 1",
    [ST_HEAD_SET] = "INSERT INTO audit_head(id, seq, hash) VALUES(1, ?1, ?2)"
                    " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    [ST_SEEN_GET] = "SELECT device_id, first_seen, last_seen, peer, firmware_version,"
                    " credential_versions, posture, ota FROM device_presence WHERE device_id = ?1",
    [ST_SEEN_SET] =
        "INSERT INTO device_presence(device_id, first_seen, last_seen, peer, firmware_version,"
        " credential_versions, posture, ota) VALUES(?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7)"
        " ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen,"
        " peer = excluded.peer, firmware_version = excluded.firmware_version,"
        " credential_versions = excluded.credential_versions, posture = excluded.posture,"
        " ota = excluded.ota",
};

/* Migrations: entry i takes the schema from version i to i + 1. Append, never edit; keep
 * inventory_pg.c's list the same logical schema, step for step. */
static const char *const migrations[] = {
    "CREATE TABLE devices("
    " id TEXT PRIMARY KEY NOT NULL,"
    " mac TEXT NOT NULL UNIQUE,"
    " name TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('minted', 'provisioned', 'retired')),"
    " manifest TEXT,"
    " manifest_sha256 TEXT,"
    " created_at TEXT NOT NULL,"
    " provisioned_at TEXT);"
    "CREATE TABLE credentials("
    " id INTEGER PRIMARY KEY,"
    " device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE RESTRICT,"
    " kind TEXT NOT NULL,"
    " version INTEGER NOT NULL CHECK (version >= 1),"
    " fingerprint TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " expires_at TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('active', 'staged', 'retired', 'revoked')),"
    " UNIQUE(device_id, kind, version));"
    "CREATE INDEX credentials_fpr ON credentials(fingerprint);"
    "CREATE TABLE audit("
    " seq INTEGER PRIMARY KEY,"
    " at TEXT NOT NULL,"
    " actor TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE TABLE audit_head("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq INTEGER NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;",
    /* 1 -> 2: what fleetkey-server learns when a device connects (last seen, posture). */
    "CREATE TABLE device_presence("
    " device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id) ON DELETE RESTRICT,"
    " first_seen TEXT NOT NULL,"
    " last_seen TEXT NOT NULL,"
    " peer TEXT,"
    " firmware_version TEXT,"
    " credential_versions TEXT,"
    " posture TEXT);",
    /* 2 -> 3 (issue 7): the device's OTA state from hello, and the OTA signing-key rotations
     * with the new public key the server delivers. */
    "ALTER TABLE device_presence ADD COLUMN ota TEXT;"
    "CREATE TABLE ota_rotation("
    " seq INTEGER PRIMARY KEY,"
    " old_fpr TEXT NOT NULL,"
    " new_fpr TEXT NOT NULL,"
    " new_pubkey BLOB NOT NULL,"
    " started_at TEXT NOT NULL,"
    " UNIQUE(old_fpr, new_fpr));",
    /* 3 -> 4: the old key's endorsement of the new one, which devices require before they
     * trust a key delivered over the channel. A rotation recorded without one cannot be
     * delivered: start it again (idempotent for the devices, it records the endorsement). */
    "ALTER TABLE ota_rotation ADD COLUMN endorsement BLOB;",
    /* 4 -> 5 (issue 19): what a bulk insert paid for and nobody used.
     * - credentials_fpr: no query looks a credential up by fingerprint, and an index on
     *   random keys puts every insert on a random page (the writer's cost grew with the fleet).
     * - The state CHECKs as comparisons instead of IN lists: SQLite evaluates a CHECK's IN
     *   list of more than two constants by building a temporary B-tree on every row written
     *   (a third of the batch writer's instructions). Same constraint, so the table text is
     *   edited in place (SQLite's documented procedure for CHECK changes: no row is touched);
     *   the DROP INDEX bumps the schema cookie, so other connections reload the schema, and
     *   RESET makes this one reload it. PostgreSQL's migration 5 drops the index only. */
    "DROP INDEX IF EXISTS credentials_fpr;"
    "PRAGMA writable_schema = ON;"
    "UPDATE sqlite_master SET sql = replace(sql,"
    " 'CHECK (state IN (''minted'', ''provisioned'', ''retired''))',"
    " 'CHECK (state = ''minted'' OR state = ''provisioned'' OR state = ''retired'')')"
    " WHERE type = 'table' AND name = 'devices';"
    "UPDATE sqlite_master SET sql = replace(sql,"
    " 'CHECK (state IN (''active'', ''staged'', ''retired'', ''revoked''))',"
    " 'CHECK (state = ''active'' OR state = ''staged'' OR state = ''retired'' OR"
    " state = ''revoked'')') WHERE type = 'table' AND name = 'credentials';"
    "PRAGMA writable_schema = RESET;",
    /* 5 -> 6: credential rotation plans in the inventory, so that several server instances
     * on one (PostgreSQL) inventory drive one plan; the same table here keeps the schemas
     * step for step. */
    "CREATE TABLE rot_plans("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " body TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " updated_at TEXT NOT NULL);",
    /* 6 -> 7 (issue 19): credentials keyed by what identifies one, (device_id, kind,
     * version), in a WITHOUT ROWID table: one B-tree insert per credential instead of two
     * (the rowid table and its UNIQUE index), and the record built once. The surrogate id
     * was never read. A table's storage cannot be changed in place, so the rows are copied
     * (once, under the migration's write lock); nothing refers to credentials, so dropping
     * the old table with foreign keys on is safe. PostgreSQL's migration 7 makes the same
     * key the primary key and drops id too. */
    "CREATE TABLE credentials_v7("
    " device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE RESTRICT,"
    " kind TEXT NOT NULL,"
    " version INTEGER NOT NULL CHECK (version >= 1),"
    " fingerprint TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " expires_at TEXT,"
    " state TEXT NOT NULL CHECK (state = 'active' OR state = 'staged' OR state = 'retired' OR"
    " state = 'revoked'),"
    " PRIMARY KEY(device_id, kind, version)) WITHOUT ROWID;"
    "INSERT INTO credentials_v7(device_id, kind, version, fingerprint, created_at, expires_at,"
    " state) SELECT device_id, kind, version, fingerprint, created_at, expires_at, state"
    " FROM credentials;"
    "DROP TABLE credentials;"
    "ALTER TABLE credentials_v7 RENAME TO credentials;",
};
#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(MIGRATION_COUNT == FK_INVENTORY_SCHEMA_VERSION, "one migration per version");

struct sq {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    sqlite3_stmt *many[FK_INV_MANY_COUNT][FK_INV_CRED_MANY_MAX + 1]; /* [id][n]: n rows of fk_inv_many_sql */
};

static sqlite3 *db_of(struct fk_inventory *inv) {
    return ((struct sq *)inv->be)->db;
}

static enum fk_err db_fail(struct fk_inventory *inv, struct fk_diag *diag, const char *what) {
    return fk_diag_at(diag, FK_E_DB, inv->where, 0, "%s: %s", what, sqlite3_errmsg(db_of(inv)));
}

static enum fk_err exec(struct fk_inventory *inv, const char *sql, struct fk_diag *diag) {
    char *err = NULL;
    if (sqlite3_exec(db_of(inv), sql, NULL, NULL, &err) != SQLITE_OK) {
        enum fk_err rc = fk_diag_at(diag, FK_E_DB, inv->where, 0, "%s",
                                    err != NULL ? err : sqlite3_errmsg(db_of(inv)));
        sqlite3_free(err);
        return rc;
    }
    return FK_OK;
}

/* The cached statement id, reset and unbound. */
static enum fk_err stmt(struct fk_inventory *inv, enum stmt_id id, sqlite3_stmt **out,
                        struct fk_diag *diag) {
    struct sq *q = inv->be;
    if (q->st[id] == NULL && sqlite3_prepare_v3(q->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                                &q->st[id], NULL) != SQLITE_OK) {
        return db_fail(inv, diag, "prepare");
    }
    sqlite3_reset(q->st[id]);
    sqlite3_clear_bindings(q->st[id]);
    *out = q->st[id];
    return FK_OK;
}

/* The cached statement of n rows of fk_inv_many_sql(id). Its bindings are not cleared:
 * every caller binds all n rows' parameters before it steps (and does not step when a bind
 * fails), so clearing them first was work for nothing on the batch writer's path. */
static enum fk_err many_stmt(struct fk_inventory *inv, enum fk_inv_many id, size_t n,
                             sqlite3_stmt **out, struct fk_diag *diag) {
    struct sq *q = inv->be;
    if (q->many[id][n] == NULL) {
        char sql[FK_INV_MANY_SQL_SIZE];
        fk_inv_many_sql(id, n, '?', sql, sizeof sql);
        if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->many[id][n],
                               NULL) != SQLITE_OK) {
            return db_fail(inv, diag, "prepare");
        }
    }
    *out = q->many[id][n];
    return FK_OK;
}

/* A one-off statement (finalised by the caller). */
static enum fk_err prepare(struct fk_inventory *inv, const char *sql, sqlite3_stmt **out,
                           struct fk_diag *diag) {
    return sqlite3_prepare_v2(db_of(inv), sql, -1, out, NULL) == SQLITE_OK
               ? FK_OK
               : db_fail(inv, diag, "prepare");
}

/* Binds a string; "" becomes NULL when null_if_empty. SQLITE_STATIC (no copy): every
 * statement here is stepped and reset by the function that binds it, while the caller's
 * strings are alive; a reused statement has its bindings cleared before the next use. */
static int bind_text(sqlite3_stmt *s, int i, const char *v, int null_if_empty) {
    if (v == NULL || (null_if_empty && v[0] == '\0')) {
        return sqlite3_bind_null(s, i);
    }
    return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static const char *col(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    return t != NULL ? (const char *)t : "";
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t size) {
    fk_inv_copy(out, size, col(s, i));
}

/* Steps a write statement to its end; finalises one-off statements, resets cached ones. */
static enum fk_err step_done(struct fk_inventory *inv, sqlite3_stmt *s, int cached,
                             const char *what, struct fk_diag *diag) {
    enum fk_err rc = sqlite3_step(s) == SQLITE_DONE ? FK_OK : db_fail(inv, diag, what);
    if (cached) {
        sqlite3_reset(s);
    } else {
        sqlite3_finalize(s);
    }
    return rc;
}

static enum fk_err schema_version(struct fk_inventory *inv, int *out, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = FK_E_INTERNAL;
    FK_GUARD(prepare(inv, "SELECT version FROM schema_version", &s, diag));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "read schema version"));
    *out = r == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err migrate(struct fk_inventory *inv, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int version = 0;
    FK_GUARD(
        exec(inv, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)", diag));
    /* Fast path: an up-to-date file needs no write lock, so opening it never waits for a
     * running batch's transaction. */
    FK_GUARD(schema_version(inv, &version, diag));
    if (version == MIGRATION_COUNT) {
        return FK_OK;
    }
    /* Read again and migrate under the write lock, so two processes opening a new file at
     * once cannot both run migration 0. */
    FK_GUARD(exec(inv, "BEGIN IMMEDIATE", diag));
    FK_GUARD(schema_version(inv, &version, diag));
    FK_GUARD(fk_inv_check_version(inv, version, MIGRATION_COUNT, diag));
    for (int v = version; v < MIGRATION_COUNT; v++) {
        FK_GUARD(exec(inv, migrations[v], diag));
    }
    if (version < MIGRATION_COUNT) {
        char sql[96];
        snprintf(sql, sizeof sql,
                 "DELETE FROM schema_version; INSERT INTO schema_version VALUES(%d)",
                 MIGRATION_COUNT);
        FK_GUARD(exec(inv, sql, diag));
    }
    FK_GUARD(exec(inv, "COMMIT", diag));
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        sqlite3_exec(db_of(inv), "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

static enum fk_err sq_open(struct fk_inventory *inv, const char *path, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct sq *q = calloc(1, sizeof *q);
    FK_ENSURE(q != NULL, FK_E_NOMEM);
    inv->be = q;
    /* Create the file ourselves first so it is 0600 whatever the umask: it lists every
     * device and fingerprint of the fleet. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    FK_ENSURE(fd >= 0, fk_diag_at(diag, FK_E_IO, path, 0, "cannot open inventory"));
    close(fd);
    FK_ENSURE(sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ==
                  SQLITE_OK,
              db_fail(inv, diag, "open"));
    sqlite3_extended_result_codes(q->db, 1);
    FK_ENSURE(sqlite3_busy_timeout(q->db, 10000) == SQLITE_OK, db_fail(inv, diag, "busy"));
    FK_GUARD(exec(inv,
                  "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                  " PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
                  diag));
    FK_GUARD(migrate(inv, diag));
    rc = FK_OK;
out:
    return rc; /* on failure the API calls close */
}

static void sq_close(struct fk_inventory *inv) {
    struct sq *q = inv->be;
    if (q == NULL) {
        return;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(q->st[i]);
    }
    for (int m = 0; m < FK_INV_MANY_COUNT; m++) {
        for (int i = 0; i <= FK_INV_CRED_MANY_MAX; i++) {
            sqlite3_finalize(q->many[m][i]);
        }
    }
    sqlite3_close(q->db);
    free(q);
    inv->be = NULL;
}

static enum fk_err sq_begin(struct fk_inventory *inv, int write, struct fk_diag *diag) {
    /* A deferred BEGIN's first SELECT fixes the snapshot the later reads see. */
    return exec(inv, write ? "BEGIN IMMEDIATE" : "BEGIN", diag);
}

static enum fk_err sq_commit(struct fk_inventory *inv, struct fk_diag *diag) {
    enum fk_err rc = exec(inv, "COMMIT", diag);
    if (rc != FK_OK) {
        sqlite3_exec(db_of(inv), "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

static void sq_rollback(struct fk_inventory *inv) {
    sqlite3_exec(db_of(inv), "ROLLBACK", NULL, NULL, NULL);
}

static enum fk_err sq_savepoint(struct fk_inventory *inv, struct fk_diag *diag) {
    return exec(inv, "SAVEPOINT fk_group", diag);
}

static enum fk_err sq_release(struct fk_inventory *inv, struct fk_diag *diag) {
    return exec(inv, "RELEASE fk_group", diag);
}

static void sq_rollback_to(struct fk_inventory *inv) {
    /* ROLLBACK TO keeps the savepoint open: RELEASE ends it, with nothing left in it */
    sqlite3_exec(db_of(inv), "ROLLBACK TO fk_group; RELEASE fk_group", NULL, NULL, NULL);
}

/* Binds device d to the 8 parameters from ?(base + 1) on. */
static int bind_device(sqlite3_stmt *s, int base, const struct fk_inv_device *d,
                       const char *created_at) {
    return bind_text(s, base + 1, d->id, 0) == SQLITE_OK &&
           bind_text(s, base + 2, d->mac, 0) == SQLITE_OK &&
           bind_text(s, base + 3, d->name, 1) == SQLITE_OK &&
           bind_text(s, base + 4, d->state, 0) == SQLITE_OK &&
           bind_text(s, base + 5, d->manifest, 1) == SQLITE_OK &&
           bind_text(s, base + 6, d->manifest_sha256, 1) == SQLITE_OK &&
           bind_text(s, base + 7, created_at, 0) == SQLITE_OK &&
           bind_text(s, base + 8, d->provisioned_at, 1) == SQLITE_OK;
}

static enum fk_err sq_device_upsert(struct fk_inventory *inv, const struct fk_inv_device *d,
                                    const char *created_at, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = stmt(inv, ST_DEV_UPSERT, &s, diag);
    if (rc != FK_OK) {
        return rc;
    }
    if (!bind_device(s, 0, d, created_at)) {
        return db_fail(inv, diag, "bind");
    }
    return step_done(inv, s, 1, "device upsert", diag);
}

static enum fk_err sq_device_upsert_many(struct fk_inventory *inv, const struct fk_inv_device *v,
                                         size_t n, const char *created_at, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = many_stmt(inv, FK_INV_MANY_DEV, n, &s, diag);
    for (size_t i = 0; i < n && rc == FK_OK; i++) {
        if (!bind_device(s, (int)i * 8, &v[i], v[i].created_at[0] != '\0' ? v[i].created_at
                                                                           : created_at)) {
            rc = db_fail(inv, diag, "bind");
        }
    }
    return rc == FK_OK ? step_done(inv, s, 1, "device upsert", diag) : rc;
}

/* fk_inv_col_fn over the current row of a statement. */
static const char *stmt_col(void *row, int i) {
    return col(row, i);
}

static void read_device(sqlite3_stmt *s, void *out) {
    fk_inv_read_device(out, stmt_col, s);
}

static void read_presence(sqlite3_stmt *s, void *out) {
    fk_inv_read_presence(out, stmt_col, s);
}

/* Runs the one-row lookup st with id bound to ?1 and hands the row to read. */
static enum fk_err get_by_id(struct fk_inventory *inv, enum stmt_id st, const char *id,
                             const char *what, void (*read)(sqlite3_stmt *, void *), void *out,
                             struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(stmt(inv, st, &s, diag));
    FK_ENSURE(bind_text(s, 1, id, 0) == SQLITE_OK, db_fail(inv, diag, "bind"));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, what));
    FK_ENSURE(r == SQLITE_ROW, FK_E_NOTFOUND);
    read(s, out);
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    return rc;
}

static enum fk_err sq_device_get(struct fk_inventory *inv, const char *id,
                                 struct fk_inv_device *out, struct fk_diag *diag) {
    return get_by_id(inv, ST_DEV_GET, id, "device get", read_device, out, diag);
}

static enum fk_err sq_device_list(struct fk_inventory *inv, fk_inv_device_fn *fn, void *user,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv,
                     "SELECT id, mac, name, state, manifest, manifest_sha256,"
                     " created_at, provisioned_at FROM devices ORDER BY id",
                     &s, diag));
    for (;;) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE) {
            break;
        }
        FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "device list"));
        struct fk_inv_device d;
        read_device(s, &d);
        if (fn(user, &d) != 0) {
            break;
        }
    }
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_device_set_state(struct fk_inventory *inv, const char *id, const char *state,
                                       const char *at, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv,
                     "UPDATE devices SET state = ?2,"
                     " provisioned_at = COALESCE(?3, provisioned_at) WHERE id = ?1",
                     &s, diag));
    FK_ENSURE(bind_text(s, 1, id, 0) == SQLITE_OK && bind_text(s, 2, state, 0) == SQLITE_OK &&
                  bind_text(s, 3, at, 1) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    rc = step_done(inv, s, 0, "device set state", diag);
    s = NULL;
    FK_ENSURE(rc != FK_OK || sqlite3_changes(db_of(inv)) == 1, FK_E_NOTFOUND);
out:
    sqlite3_finalize(s);
    return rc;
}

/* Binds credential c to the 7 parameters from ?(base + 1) on; created_at where c has none. */
static int bind_credential(sqlite3_stmt *s, int base, const struct fk_inv_credential *c,
                           const char *created_at) {
    return bind_text(s, base + 1, c->device_id, 0) == SQLITE_OK &&
           bind_text(s, base + 2, c->kind, 0) == SQLITE_OK &&
           sqlite3_bind_int64(s, base + 3, (sqlite3_int64)c->version) == SQLITE_OK &&
           bind_text(s, base + 4, c->fingerprint, 0) == SQLITE_OK &&
           bind_text(s, base + 5, c->created_at[0] != '\0' ? c->created_at : created_at, 0) ==
               SQLITE_OK &&
           bind_text(s, base + 6, c->expires_at, 1) == SQLITE_OK &&
           bind_text(s, base + 7, c->state, 0) == SQLITE_OK;
}

/* Steps an INSERT of credentials and resets it: FK_E_EXISTS for a duplicate. */
static enum fk_err cred_step(struct fk_inventory *inv, sqlite3_stmt *s, struct fk_diag *diag) {
    int r = sqlite3_step(s);
    /* PRIMARYKEY since schema 7 (the key of a WITHOUT ROWID table), UNIQUE before */
    enum fk_err rc = r == SQLITE_DONE ? FK_OK
                     : r == SQLITE_CONSTRAINT_PRIMARYKEY || r == SQLITE_CONSTRAINT_UNIQUE
                         ? FK_E_EXISTS
                         : db_fail(inv, diag, "credential add");
    sqlite3_reset(s);
    return rc;
}

static enum fk_err sq_credential_add(struct fk_inventory *inv, const struct fk_inv_credential *c,
                                     const char *created_at, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = stmt(inv, ST_CRED_ADD, &s, diag);
    if (rc != FK_OK) {
        return rc;
    }
    return bind_credential(s, 0, c, created_at) ? cred_step(inv, s, diag)
                                                : db_fail(inv, diag, "bind");
}

/* One INSERT of n rows: one statement execution (and one foreign-key probe per device)
 * instead of one per credential. A statement is atomic: a duplicate among the n adds none. */
static enum fk_err sq_credential_add_many(struct fk_inventory *inv,
                                          const struct fk_inv_credential *v, size_t n,
                                          const char *created_at, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = many_stmt(inv, FK_INV_MANY_CRED, n, &s, diag);
    for (size_t i = 0; i < n && rc == FK_OK; i++) {
        if (!bind_credential(s, (int)i * 7, &v[i], created_at)) {
            rc = db_fail(inv, diag, "bind");
        }
    }
    return rc == FK_OK ? cred_step(inv, s, diag) : rc;
}

static enum fk_err sq_credential_list(struct fk_inventory *inv, const char *device_id,
                                      fk_inv_credential_fn *fn, void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    /* One device: its own query, which the UNIQUE(device_id, kind, version) index answers.
     * "?1 IS NULL OR device_id = ?1" cannot use it and read every credential of the fleet on
     * each call: the server asks per device several times per rotation step, so a rotation of
     * 3,000 robots spent 46 % of the server's CPU here (O(fleet^2)). */
    FK_GUARD(prepare(inv,
                     device_id != NULL ? "SELECT device_id, kind, version, fingerprint, created_at,"
                                         " expires_at, state FROM credentials WHERE device_id = ?1"
                                         " ORDER BY kind, version"
                                       : "SELECT device_id, kind, version, fingerprint, created_at,"
                                         " expires_at, state FROM credentials"
                                         " ORDER BY device_id, kind, version",
                     &s, diag));
    FK_ENSURE(device_id == NULL || bind_text(s, 1, device_id, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    for (;;) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE) {
            break;
        }
        FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "credential list"));
        struct fk_inv_credential c;
        fk_inv_read_credential(&c, stmt_col, s);
        if (fn(user, &c) != 0) {
            break;
        }
    }
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_credential_set_state(struct fk_inventory *inv, const char *device_id,
                                           const char *kind, unsigned version, const char *state,
                                           struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv,
                     "UPDATE credentials SET state = ?4"
                     " WHERE device_id = ?1 AND kind = ?2 AND version = ?3",
                     &s, diag));
    FK_ENSURE(bind_text(s, 1, device_id, 0) == SQLITE_OK && bind_text(s, 2, kind, 0) == SQLITE_OK &&
                  sqlite3_bind_int64(s, 3, (sqlite3_int64)version) == SQLITE_OK &&
                  bind_text(s, 4, state, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    rc = step_done(inv, s, 0, "credential set state", diag);
    s = NULL;
    FK_ENSURE(rc != FK_OK || sqlite3_changes(db_of(inv)) == 1, FK_E_NOTFOUND);
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_audit_head(struct fk_inventory *inv, long long *seq, char hash[65],
                                 struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(stmt(inv, ST_HEAD_GET, &s, diag));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "audit head"));
    FK_ENSURE(r == SQLITE_ROW, FK_E_NOTFOUND);
    *seq = sqlite3_column_int64(s, 0);
    col_text(s, 1, hash, 65);
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    return rc;
}

/* Binds audit row a to the 8 parameters from ?(base + 1) on. */
static int bind_audit(sqlite3_stmt *s, int base, const struct fk_inv_audit_row *a) {
    return sqlite3_bind_int64(s, base + 1, a->seq) == SQLITE_OK &&
           bind_text(s, base + 2, a->at, 0) == SQLITE_OK &&
           bind_text(s, base + 3, a->actor, 0) == SQLITE_OK &&
           bind_text(s, base + 4, a->kind, 0) == SQLITE_OK &&
           bind_text(s, base + 5, a->subject, 0) == SQLITE_OK &&
           bind_text(s, base + 6, a->detail, 0) == SQLITE_OK &&
           bind_text(s, base + 7, a->prev_hash, 0) == SQLITE_OK &&
           bind_text(s, base + 8, a->hash, 0) == SQLITE_OK;
}

static enum fk_err sq_audit_insert_many(struct fk_inventory *inv, const struct fk_inv_audit_row *r,
                                        size_t n, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = many_stmt(inv, FK_INV_MANY_AUDIT, n, &s, diag);
    for (size_t i = 0; i < n && rc == FK_OK; i++) {
        if (!bind_audit(s, (int)i * 8, &r[i])) {
            rc = db_fail(inv, diag, "bind");
        }
    }
    return rc == FK_OK ? step_done(inv, s, 1, "audit append", diag) : rc;
}

static enum fk_err sq_audit_head_set(struct fk_inventory *inv, long long seq, const char *hash,
                                     struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(stmt(inv, ST_HEAD_SET, &s, diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, seq) == SQLITE_OK && bind_text(s, 2, hash, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    FK_GUARD(step_done(inv, s, 1, "audit head update", diag));
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err sq_audit_walk(struct fk_inventory *inv, long long after, fk_inv_row_fn *fn,
                                 void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv,
                     "SELECT seq, at, actor, kind, subject, detail, prev_hash, hash"
                     " FROM audit WHERE seq > ?1 ORDER BY seq",
                     &s, diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, after) == SQLITE_OK, db_fail(inv, diag, "bind"));
    for (;;) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE) {
            break;
        }
        FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "audit read"));
        struct fk_inv_audit_row a = {sqlite3_column_int64(s, 0),
                                     col(s, 1),
                                     col(s, 2),
                                     col(s, 3),
                                     col(s, 4),
                                     col(s, 5),
                                     col(s, 6),
                                     col(s, 7)};
        if (fn(user, &a) != 0) {
            break;
        }
    }
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_audit_exists(struct fk_inventory *inv, const char *kind, const char *subject,
                                   int *found, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(
        prepare(inv, "SELECT 1 FROM audit WHERE kind = ?1 AND subject = ?2 LIMIT 1", &s, diag));
    FK_ENSURE(bind_text(s, 1, kind, 0) == SQLITE_OK && bind_text(s, 2, subject, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "audit exists"));
    *found = r == SQLITE_ROW;
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_presence_get(struct fk_inventory *inv, const char *id,
                                   struct fk_inv_presence *out, struct fk_diag *diag) {
    return get_by_id(inv, ST_SEEN_GET, id, "presence get", read_presence, out, diag);
}

static enum fk_err sq_presence_set(struct fk_inventory *inv, const struct fk_inv_presence *p,
                                   const char *last_seen, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(stmt(inv, ST_SEEN_SET, &s, diag));
    FK_ENSURE(bind_text(s, 1, p->device_id, 0) == SQLITE_OK &&
                  bind_text(s, 2, last_seen, 0) == SQLITE_OK &&
                  bind_text(s, 3, p->peer, 1) == SQLITE_OK &&
                  bind_text(s, 4, p->firmware_version, 1) == SQLITE_OK &&
                  bind_text(s, 5, p->credential_versions, 1) == SQLITE_OK &&
                  bind_text(s, 6, p->posture, 1) == SQLITE_OK &&
                  bind_text(s, 7, p->ota, 1) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    int r = sqlite3_step(s);
    FK_ENSURE(r != SQLITE_CONSTRAINT_FOREIGNKEY && r != SQLITE_CONSTRAINT, FK_E_NOTFOUND);
    FK_ENSURE(r == SQLITE_DONE, db_fail(inv, diag, "presence set"));
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    return rc;
}

static enum fk_err sq_rotation_add(struct fk_inventory *inv, const char *old_fpr,
                                   const char *new_fpr, const uint8_t *der, size_t der_len,
                                   const uint8_t *endorsement, const char *started_at,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    /* Start is idempotent and the first record of a pair is the one that counts; a row from
     * before schema 4 gets its endorsement (and keeps its key and time). */
    FK_GUARD(prepare(inv,
                     "INSERT INTO ota_rotation(old_fpr, new_fpr, new_pubkey,"
                     " started_at, endorsement) VALUES(?1, ?2, ?3, ?4, ?5)"
                     " ON CONFLICT(old_fpr, new_fpr) DO UPDATE SET endorsement ="
                     " excluded.endorsement WHERE endorsement IS NULL",
                     &s, diag));
    FK_ENSURE(
        bind_text(s, 1, old_fpr, 0) == SQLITE_OK && bind_text(s, 2, new_fpr, 0) == SQLITE_OK &&
            sqlite3_bind_blob(s, 3, der, (int)der_len, SQLITE_TRANSIENT) == SQLITE_OK &&
            bind_text(s, 4, started_at, 0) == SQLITE_OK &&
            sqlite3_bind_blob(s, 5, endorsement, FK_INV_ENDORSE_LEN, SQLITE_TRANSIENT) == SQLITE_OK,
        db_fail(inv, diag, "bind"));
    rc = step_done(inv, s, 0, "rotation add", diag);
    s = NULL;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_rotation_last(struct fk_inventory *inv, struct fk_inv_rotation *out,
                                    struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv,
                     "SELECT seq, old_fpr, new_fpr, new_pubkey, started_at,"
                     " endorsement FROM ota_rotation ORDER BY seq DESC LIMIT 1",
                     &s, diag));
    int r = sqlite3_step(s);
    FK_ENSURE(r != SQLITE_DONE, FK_E_NOTFOUND);
    FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "rotation last"));
    out->seq = sqlite3_column_int64(s, 0);
    col_text(s, 1, out->old_fpr, sizeof out->old_fpr);
    col_text(s, 2, out->new_fpr, sizeof out->new_fpr);
    const void *blob = sqlite3_column_blob(s, 3);
    int n = sqlite3_column_bytes(s, 3);
    /* the file may have been edited by hand: trust no length in it */
    FK_ENSURE(
        blob != NULL && n > 0 && (size_t)n <= sizeof out->new_der,
        fk_diag_set(diag, FK_E_DB, "rotation %lld: stored public key of %d bytes", out->seq, n));
    memcpy(out->new_der, blob, (size_t)n);
    out->new_der_len = (size_t)n;
    col_text(s, 4, out->started_at, sizeof out->started_at);
    const void *e = sqlite3_column_blob(s, 5);
    FK_ENSURE(e != NULL && sqlite3_column_bytes(s, 5) == FK_INV_ENDORSE_LEN,
              fk_diag_set(diag, FK_E_DB,
                          "rotation %lld has no endorsement (recorded before schema 4): run "
                          "rotate ota-key start again",
                          out->seq));
    memcpy(out->endorsement, e, FK_INV_ENDORSE_LEN);
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_plan_add(struct fk_inventory *inv, const char *body, const char *updated_at,
                               long long *id, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv, "INSERT INTO rot_plans(body, version, updated_at) VALUES(?1, 1, ?2)",
                     &s, diag));
    FK_ENSURE(bind_text(s, 1, body, 0) == SQLITE_OK && bind_text(s, 2, updated_at, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    rc = step_done(inv, s, 0, "plan add", diag);
    s = NULL;
    if (rc == FK_OK) {
        *id = (long long)sqlite3_last_insert_rowid(db_of(inv));
    }
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_plan_get(struct fk_inventory *inv, long long id, char **body, size_t *len,
                               long long *version, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv, "SELECT body, version FROM rot_plans WHERE id = ?1", &s, diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, id) == SQLITE_OK, db_fail(inv, diag, "bind"));
    int r = sqlite3_step(s);
    FK_ENSURE(r != SQLITE_DONE, FK_E_NOTFOUND);
    FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "plan get"));
    const unsigned char *t = sqlite3_column_text(s, 0);
    int n = sqlite3_column_bytes(s, 0);
    FK_ENSURE(t != NULL && n > 0 && (unsigned)n <= FK_INV_PLAN_MAX,
              fk_diag_set(diag, FK_E_DB, "plan %lld: stored body of %d bytes", id, n));
    FK_ENSURE((*body = malloc((size_t)n + 1)) != NULL,
              fk_diag_set(diag, FK_E_NOMEM, "plan %lld: memory", id));
    memcpy(*body, t, (size_t)n);
    (*body)[n] = '\0';
    *len = (size_t)n;
    *version = sqlite3_column_int64(s, 1);
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_plan_put(struct fk_inventory *inv, long long id, const char *body,
                               const char *updated_at, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv,
                     "UPDATE rot_plans SET body = ?2, version = version + 1, updated_at = ?3"
                     " WHERE id = ?1",
                     &s, diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, id) == SQLITE_OK && bind_text(s, 2, body, 0) == SQLITE_OK &&
                  bind_text(s, 3, updated_at, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    rc = step_done(inv, s, 0, "plan put", diag);
    s = NULL;
    if (rc == FK_OK && sqlite3_changes(db_of(inv)) == 0) {
        rc = FK_E_NOTFOUND;
    }
out:
    sqlite3_finalize(s);
    return rc;
}

static enum fk_err sq_plan_list(struct fk_inventory *inv, long long after, fk_inv_plan_fn *fn,
                                void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_GUARD(prepare(inv, "SELECT id, version, body FROM rot_plans WHERE id > ?1 ORDER BY id", &s,
                     diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, after) == SQLITE_OK, db_fail(inv, diag, "bind"));
    int r;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 2);
        int n = sqlite3_column_bytes(s, 2);
        if (fn(user, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
               t != NULL ? (const char *)t : "", n > 0 ? (size_t)n : 0) != 0) {
            break;
        }
    }
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "plan list"));
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

const struct fk_inv_ops fk_inv_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .device_upsert = sq_device_upsert,
    .device_upsert_many = sq_device_upsert_many,
    .device_get = sq_device_get,
    .device_list = sq_device_list,
    .device_set_state = sq_device_set_state,
    .credential_add = sq_credential_add,
    .credential_add_many = sq_credential_add_many,
    .credential_list = sq_credential_list,
    .credential_set_state = sq_credential_set_state,
    .audit_head = sq_audit_head,
    .audit_head_set = sq_audit_head_set,
    .audit_insert_many = sq_audit_insert_many,
    .audit_walk = sq_audit_walk,
    .audit_exists = sq_audit_exists,
    .presence_get = sq_presence_get,
    .presence_set = sq_presence_set,
    .rotation_add = sq_rotation_add,
    .rotation_last = sq_rotation_last,
    .plan_add = sq_plan_add,
    .plan_get = sq_plan_get,
    .plan_put = sq_plan_put,
    .plan_list = sq_plan_list,
};
