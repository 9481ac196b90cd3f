/* Inventory on SQLite.
 *
 * Design: one file, WAL journal (readers never block the single writer), synchronous=FULL
 * because a committed device row is the commit point of provision-keys batch and must
 * survive power loss. The schema is versioned in schema_version and migrated forward on
 * open, one transaction per step; a file newer than this program is refused rather than
 * guessed at.
 *
 * The audit log is hash-chained: row n stores prev_hash = hash(n-1) (32 zero bytes for row
 * 1) and hash = SHA-256(prev_hash || canonical(n)), where canonical() is a domain tag, the
 * seq as 8 big-endian bytes and each text field length-prefixed (4 bytes big-endian), so no
 * two different rows serialise alike. Because seq is hashed, moving, inserting or deleting
 * a row breaks the chain at that point. audit_head keeps the newest (seq, hash) and is
 * updated in the same transaction as the append, which makes a cut-off tail visible too.
 * Triggers refuse UPDATE and DELETE on audit: a guard rail against mistakes, not a defence
 * (anyone who can write the file can drop them); the chain is the defence. */
#include "fleetkey/inventory.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_TAG "fleetkey-audit-v1"

enum stmt_id {
    ST_DEV_UPSERT,
    ST_DEV_GET,
    ST_CRED_ADD,
    ST_HEAD_GET,
    ST_HEAD_SET,
    ST_AUDIT_ADD,
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
    [ST_AUDIT_ADD] = "INSERT INTO audit(seq, at, actor, kind, subject, detail, prev_hash, hash)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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

/* Migrations: entry i takes the schema from version i to i + 1. Append, never edit. */
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
};
#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

struct fk_inventory {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    int in_tx;
    char path[4096];
};

static enum fk_err db_fail(struct fk_inventory *inv, struct fk_diag *diag, const char *what) {
    return fk_diag_at(diag, FK_E_DB, inv->path, 0, "%s: %s", what, sqlite3_errmsg(inv->db));
}

static enum fk_err exec(struct fk_inventory *inv, const char *sql, struct fk_diag *diag) {
    char *err = NULL;
    if (sqlite3_exec(inv->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        enum fk_err rc = fk_diag_at(diag, FK_E_DB, inv->path, 0, "%s",
                                    err != NULL ? err : sqlite3_errmsg(inv->db));
        sqlite3_free(err);
        return rc;
    }
    return FK_OK;
}

static enum fk_err stmt(struct fk_inventory *inv, enum stmt_id id, sqlite3_stmt **out,
                        struct fk_diag *diag) {
    if (inv->st[id] == NULL &&
        sqlite3_prepare_v3(inv->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &inv->st[id],
                           NULL) != SQLITE_OK) {
        return db_fail(inv, diag, "prepare");
    }
    sqlite3_reset(inv->st[id]);
    sqlite3_clear_bindings(inv->st[id]);
    *out = inv->st[id];
    return FK_OK;
}

/* Binds a string; "" becomes NULL when null_if_empty. SQLITE_TRANSIENT: SQLite copies it. */
static int bind_text(sqlite3_stmt *s, int i, const char *v, int null_if_empty) {
    if (v == NULL || (null_if_empty && v[0] == '\0')) {
        return sqlite3_bind_null(s, i);
    }
    return sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

static void col_text(sqlite3_stmt *s, int i, char *out, size_t size) {
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, size, "%s", t != NULL ? (const char *)t : "");
}

static void now_rfc3339(char out[FK_INV_TIME_SIZE]) {
    fk_time_rfc3339((long long)time(NULL), out);
}

static int schema_version(struct fk_inventory *inv, int *out, struct fk_diag *diag) {
    sqlite3_stmt *s = NULL;
    enum fk_err rc = FK_E_INTERNAL;
    FK_ENSURE(sqlite3_prepare_v2(inv->db, "SELECT version FROM schema_version", -1, &s, NULL) ==
                  SQLITE_OK,
              db_fail(inv, diag, "read schema version"));
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
    if (version > MIGRATION_COUNT) {
        exec(inv, "ROLLBACK", NULL);
        return fk_diag_at(diag, FK_E_UNSUPPORTED, inv->path, 0,
                          "inventory schema version %d is newer than this program (%d)", version,
                          MIGRATION_COUNT);
    }
    for (int v = version; v < MIGRATION_COUNT; v++) {
        FK_GUARD(exec(inv, migrations[v], diag));
    }
    if (version < MIGRATION_COUNT) {
        char sql[96];
        snprintf(sql, sizeof sql,
                 "DELETE FROM schema_version; INSERT INTO schema_version "
                 "VALUES(%d)",
                 MIGRATION_COUNT);
        FK_GUARD(exec(inv, sql, diag));
    }
    FK_GUARD(exec(inv, "COMMIT", diag));
    rc = FK_OK;
out:
    if (rc != FK_OK && inv->db != NULL) {
        sqlite3_exec(inv->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

enum fk_err fk_inventory_open(const char *path, struct fk_inventory **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_inventory *inv = calloc(1, sizeof *inv);
    FK_ENSURE(inv != NULL, FK_E_NOMEM);
    FK_ENSURE(path != NULL && path[0] != '\0' && strlen(path) < sizeof inv->path,
              fk_diag_set(diag, FK_E_ARG, "inventory path missing or too long"));
    snprintf(inv->path, sizeof inv->path, "%s", path);
    /* Create the file ourselves first so it is 0600 whatever the umask: it lists every
     * device and fingerprint of the fleet. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    FK_ENSURE(fd >= 0, fk_diag_at(diag, FK_E_IO, path, 0, "cannot open inventory"));
    close(fd);
    FK_ENSURE(sqlite3_open_v2(path, &inv->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) ==
                  SQLITE_OK,
              db_fail(inv, diag, "open"));
    sqlite3_extended_result_codes(inv->db, 1);
    FK_ENSURE(sqlite3_busy_timeout(inv->db, 10000) == SQLITE_OK, db_fail(inv, diag, "busy"));
    FK_GUARD(exec(inv,
                  "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                  " PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
                  diag));
    FK_GUARD(migrate(inv, diag));
    *out = inv;
    inv = NULL;
    rc = FK_OK;
out:
    fk_inventory_close(inv);
    return rc;
}

void fk_inventory_close(struct fk_inventory *inv) {
    if (inv == NULL) {
        return;
    }
    if (inv->in_tx) {
        fk_inventory_rollback(inv);
    }
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(inv->st[i]);
    }
    sqlite3_close(inv->db);
    free(inv);
}

enum fk_err fk_inventory_begin(struct fk_inventory *inv, struct fk_diag *diag) {
    if (inv->in_tx) {
        return fk_diag_set(diag, FK_E_STATE, "a transaction is already open");
    }
    enum fk_err rc = exec(inv, "BEGIN IMMEDIATE", diag);
    inv->in_tx = rc == FK_OK;
    return rc;
}

enum fk_err fk_inventory_commit(struct fk_inventory *inv, struct fk_diag *diag) {
    if (!inv->in_tx) {
        return fk_diag_set(diag, FK_E_STATE, "no transaction is open");
    }
    enum fk_err rc = exec(inv, "COMMIT", diag);
    if (rc != FK_OK) {
        fk_inventory_rollback(inv);
    }
    inv->in_tx = 0;
    return rc;
}

void fk_inventory_rollback(struct fk_inventory *inv) {
    if (inv != NULL && inv->in_tx) {
        sqlite3_exec(inv->db, "ROLLBACK", NULL, NULL, NULL);
        inv->in_tx = 0;
    }
}

/* Runs a single write in its own transaction unless the caller opened one. */
static enum fk_err auto_begin(struct fk_inventory *inv, int *own, struct fk_diag *diag) {
    *own = !inv->in_tx;
    return *own ? fk_inventory_begin(inv, diag) : FK_OK;
}

static enum fk_err auto_end(struct fk_inventory *inv, int own, enum fk_err rc,
                            struct fk_diag *diag) {
    if (!own) {
        return rc;
    }
    if (rc != FK_OK) {
        fk_inventory_rollback(inv);
        return rc;
    }
    return fk_inventory_commit(inv, diag);
}

static int valid_device_state(const char *s) {
    return strcmp(s, "minted") == 0 || strcmp(s, "provisioned") == 0 || strcmp(s, "retired") == 0;
}

static int valid_cred_state(const char *s) {
    return strcmp(s, "active") == 0 || strcmp(s, "staged") == 0 || strcmp(s, "retired") == 0 ||
           strcmp(s, "revoked") == 0;
}

enum fk_err fk_inventory_device_upsert(struct fk_inventory *inv, const struct fk_inv_device *d,
                                       struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    char now[FK_INV_TIME_SIZE];
    FK_ENSURE(d->id[0] != '\0' && d->mac[0] != '\0',
              fk_diag_set(diag, FK_E_ARG, "device id and mac are required"));
    FK_ENSURE(valid_device_state(d->state),
              fk_diag_set(diag, FK_E_ARG, "unknown device state '%s'", d->state));
    now_rfc3339(now);
    FK_GUARD(auto_begin(inv, &own, diag));
    FK_GUARD(stmt(inv, ST_DEV_UPSERT, &s, diag));
    FK_ENSURE(bind_text(s, 1, d->id, 0) == SQLITE_OK && bind_text(s, 2, d->mac, 0) == SQLITE_OK &&
                  bind_text(s, 3, d->name, 1) == SQLITE_OK &&
                  bind_text(s, 4, d->state, 0) == SQLITE_OK &&
                  bind_text(s, 5, d->manifest, 1) == SQLITE_OK &&
                  bind_text(s, 6, d->manifest_sha256, 1) == SQLITE_OK &&
                  bind_text(s, 7, d->created_at[0] != '\0' ? d->created_at : now, 0) == SQLITE_OK &&
                  bind_text(s, 8, d->provisioned_at, 1) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    FK_ENSURE(sqlite3_step(s) == SQLITE_DONE, db_fail(inv, diag, "device upsert"));
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    return auto_end(inv, own, rc, diag);
}

static void read_device(sqlite3_stmt *s, void *out) {
    struct fk_inv_device *d = out;
    memset(d, 0, sizeof *d);
    col_text(s, 0, d->id, sizeof d->id);
    col_text(s, 1, d->mac, sizeof d->mac);
    col_text(s, 2, d->name, sizeof d->name);
    col_text(s, 3, d->state, sizeof d->state);
    col_text(s, 4, d->manifest, sizeof d->manifest);
    col_text(s, 5, d->manifest_sha256, sizeof d->manifest_sha256);
    col_text(s, 6, d->created_at, sizeof d->created_at);
    col_text(s, 7, d->provisioned_at, sizeof d->provisioned_at);
}

/* Runs the one-row lookup st with id bound to ?1 and hands the row to read. FK_E_NOTFOUND
 * without a row and without touching diag: each caller words its own message. */
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

enum fk_err fk_inventory_device_get(struct fk_inventory *inv, const char *id,
                                    struct fk_inv_device *out, struct fk_diag *diag) {
    enum fk_err rc = get_by_id(inv, ST_DEV_GET, id, "device get", read_device, out, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "no device %s", id);
    }
    return rc;
}

enum fk_err fk_inventory_device_list(struct fk_inventory *inv, fk_inv_device_fn *fn, void *user,
                                     struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "SELECT id, mac, name, state, manifest, manifest_sha256,"
                                 " created_at, provisioned_at FROM devices ORDER BY id",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
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

enum fk_err fk_inventory_device_set_state(struct fk_inventory *inv, const char *id,
                                          const char *state, const char *at, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    FK_ENSURE(valid_device_state(state),
              fk_diag_set(diag, FK_E_ARG, "unknown device state '%s'", state));
    FK_GUARD(auto_begin(inv, &own, diag));
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "UPDATE devices SET state = ?2,"
                                 " provisioned_at = COALESCE(?3, provisioned_at) WHERE id = ?1",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    FK_ENSURE(bind_text(s, 1, id, 0) == SQLITE_OK && bind_text(s, 2, state, 0) == SQLITE_OK &&
                  bind_text(s, 3, at, 1) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    FK_ENSURE(sqlite3_step(s) == SQLITE_DONE, db_fail(inv, diag, "device set state"));
    FK_ENSURE(sqlite3_changes(inv->db) == 1, fk_diag_set(diag, FK_E_NOTFOUND, "no device %s", id));
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_credential_add(struct fk_inventory *inv, const struct fk_inv_credential *c,
                                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    char now[FK_INV_TIME_SIZE];
    FK_ENSURE(c->device_id[0] != '\0' && c->kind[0] != '\0' && c->fingerprint[0] != '\0' &&
                  c->version >= 1,
              fk_diag_set(diag, FK_E_ARG, "credential needs device, kind, version, fingerprint"));
    FK_ENSURE(valid_cred_state(c->state),
              fk_diag_set(diag, FK_E_ARG, "unknown credential state '%s'", c->state));
    now_rfc3339(now);
    FK_GUARD(auto_begin(inv, &own, diag));
    FK_GUARD(stmt(inv, ST_CRED_ADD, &s, diag));
    FK_ENSURE(bind_text(s, 1, c->device_id, 0) == SQLITE_OK &&
                  bind_text(s, 2, c->kind, 0) == SQLITE_OK &&
                  sqlite3_bind_int64(s, 3, (sqlite3_int64)c->version) == SQLITE_OK &&
                  bind_text(s, 4, c->fingerprint, 0) == SQLITE_OK &&
                  bind_text(s, 5, c->created_at[0] != '\0' ? c->created_at : now, 0) == SQLITE_OK &&
                  bind_text(s, 6, c->expires_at, 1) == SQLITE_OK &&
                  bind_text(s, 7, c->state, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    int r = sqlite3_step(s);
    FK_ENSURE(r != SQLITE_CONSTRAINT_UNIQUE,
              fk_diag_set(diag, FK_E_EXISTS, "%s %s version %u already recorded", c->device_id,
                          c->kind, c->version));
    FK_ENSURE(r == SQLITE_DONE, db_fail(inv, diag, "credential add"));
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_credential_list(struct fk_inventory *inv, const char *device_id,
                                         fk_inv_credential_fn *fn, void *user,
                                         struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    /* One device: its own query, which the UNIQUE(device_id, kind, version) index answers.
     * "?1 IS NULL OR device_id = ?1" cannot use it and read every credential of the fleet on
     * each call: the server asks per device several times per rotation step, so a rotation of
     * 3,000 robots spent 46 % of the server's CPU here (O(fleet^2)). */
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 device_id != NULL
                                     ? "SELECT device_id, kind, version, fingerprint, created_at,"
                                       " expires_at, state FROM credentials WHERE device_id = ?1"
                                       " ORDER BY kind, version"
                                     : "SELECT device_id, kind, version, fingerprint, created_at,"
                                       " expires_at, state FROM credentials"
                                       " ORDER BY device_id, kind, version",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    FK_ENSURE(device_id == NULL || bind_text(s, 1, device_id, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    for (;;) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE) {
            break;
        }
        FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "credential list"));
        struct fk_inv_credential c;
        memset(&c, 0, sizeof c);
        col_text(s, 0, c.device_id, sizeof c.device_id);
        col_text(s, 1, c.kind, sizeof c.kind);
        c.version = (unsigned)sqlite3_column_int64(s, 2);
        col_text(s, 3, c.fingerprint, sizeof c.fingerprint);
        col_text(s, 4, c.created_at, sizeof c.created_at);
        col_text(s, 5, c.expires_at, sizeof c.expires_at);
        col_text(s, 6, c.state, sizeof c.state);
        if (fn(user, &c) != 0) {
            break;
        }
    }
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

enum fk_err fk_inventory_credential_set_state(struct fk_inventory *inv, const char *device_id,
                                              const char *kind, unsigned version, const char *state,
                                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    FK_ENSURE(valid_cred_state(state),
              fk_diag_set(diag, FK_E_ARG, "unknown credential state '%s'", state));
    FK_GUARD(auto_begin(inv, &own, diag));
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "UPDATE credentials SET state = ?4"
                                 " WHERE device_id = ?1 AND kind = ?2 AND version = ?3",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    FK_ENSURE(bind_text(s, 1, device_id, 0) == SQLITE_OK && bind_text(s, 2, kind, 0) == SQLITE_OK &&
                  sqlite3_bind_int64(s, 3, (sqlite3_int64)version) == SQLITE_OK &&
                  bind_text(s, 4, state, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    FK_ENSURE(sqlite3_step(s) == SQLITE_DONE, db_fail(inv, diag, "credential set state"));
    FK_ENSURE(sqlite3_changes(inv->db) == 1,
              fk_diag_set(diag, FK_E_NOTFOUND, "no credential %s %s version %u", device_id, kind,
                          version));
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return auto_end(inv, own, rc, diag);
}

/* ---- audit ------------------------------------------------------------------------- */

static void put_len_text(EVP_MD_CTX *md, const char *t) {
    size_t n = strlen(t);
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    EVP_DigestUpdate(md, len, sizeof len);
    EVP_DigestUpdate(md, t, n);
}

/* hash = SHA-256(prev_hash_hex decoded || canonical row), as 64 lower-case hex digits. */
static enum fk_err row_hash(const char *prev_hex, long long seq, const char *at, const char *actor,
                            const char *kind, const char *subject, const char *detail,
                            char out[65]) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t prev[32];
    uint8_t digest[32];
    size_t n = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    FK_ENSURE(md != NULL, FK_E_NOMEM);
    FK_ENSURE(strlen(prev_hex) == 64, FK_E_VERIFY);
    FK_ENSURE(fk_hex_decode(prev_hex, 64, prev, sizeof prev, &n, NULL) == FK_OK && n == 32,
              FK_E_VERIFY);
    uint8_t seq_be[8];
    for (int i = 0; i < 8; i++) {
        seq_be[i] = (uint8_t)((unsigned long long)seq >> (56 - 8 * i));
    }
    FK_GUARD_OSSL(EVP_DigestInit_ex(md, EVP_sha256(), NULL), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_DigestUpdate(md, prev, sizeof prev), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_DigestUpdate(md, AUDIT_TAG, sizeof AUDIT_TAG), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_DigestUpdate(md, seq_be, sizeof seq_be), FK_E_CRYPTO);
    put_len_text(md, at);
    put_len_text(md, actor);
    put_len_text(md, kind);
    put_len_text(md, subject);
    put_len_text(md, detail);
    FK_GUARD_OSSL(EVP_DigestFinal_ex(md, digest, NULL), FK_E_CRYPTO);
    FK_GUARD(fk_hex_encode(digest, sizeof digest, out, 65));
    rc = FK_OK;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

enum fk_err fk_inventory_audit_append(struct fk_inventory *inv, const char *actor, const char *kind,
                                      const char *subject, const char *detail_json,
                                      struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    char at[FK_INV_TIME_SIZE];
    char prev[65];
    char hash[65];
    long long seq = 1;
    const char *detail = detail_json != NULL ? detail_json : "{}";
    FK_ENSURE(actor != NULL && actor[0] != '\0' && kind != NULL && kind[0] != '\0' &&
                  subject != NULL,
              fk_diag_set(diag, FK_E_ARG, "audit entry needs actor, kind and subject"));
    now_rfc3339(at);
    FK_GUARD(auto_begin(inv, &own, diag));
    FK_GUARD(stmt(inv, ST_HEAD_GET, &s, diag));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "audit head"));
    if (r == SQLITE_ROW) {
        seq = sqlite3_column_int64(s, 0) + 1;
        col_text(s, 1, prev, sizeof prev);
    } else {
        memcpy(prev, zero_hash, sizeof prev);
    }
    sqlite3_reset(s);
    FK_ENSURE(row_hash(prev, seq, at, actor, kind, subject, detail, hash) == FK_OK,
              fk_diag_set(diag, FK_E_VERIFY, "audit head hash is malformed"));
    FK_GUARD(stmt(inv, ST_AUDIT_ADD, &s, diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, seq) == SQLITE_OK && bind_text(s, 2, at, 0) == SQLITE_OK &&
                  bind_text(s, 3, actor, 0) == SQLITE_OK && bind_text(s, 4, kind, 0) == SQLITE_OK &&
                  bind_text(s, 5, subject, 0) == SQLITE_OK &&
                  bind_text(s, 6, detail, 0) == SQLITE_OK &&
                  bind_text(s, 7, prev, 0) == SQLITE_OK && bind_text(s, 8, hash, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    FK_ENSURE(sqlite3_step(s) == SQLITE_DONE, db_fail(inv, diag, "audit append"));
    sqlite3_reset(s);
    FK_GUARD(stmt(inv, ST_HEAD_SET, &s, diag));
    FK_ENSURE(sqlite3_bind_int64(s, 1, seq) == SQLITE_OK && bind_text(s, 2, hash, 0) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    FK_ENSURE(sqlite3_step(s) == SQLITE_DONE, db_fail(inv, diag, "audit head update"));
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    return auto_end(inv, own, rc, diag);
}

static enum fk_err verify_fail(struct fk_inv_audit_report *rep, long long seq, const char *fmt, ...)
    FK_PRINTF(3, 4);

static enum fk_err verify_fail(struct fk_inv_audit_report *rep, long long seq, const char *fmt,
                               ...) {
    va_list ap;
    rep->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(rep->problem, sizeof rep->problem, fmt, ap);
    va_end(ap);
    return FK_E_VERIFY;
}

enum fk_err fk_inventory_audit_verify(struct fk_inventory *inv, struct fk_inv_audit_report *rep,
                                      struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    char prev[65];
    char expect[65];
    long long want = 1;
    memset(rep, 0, sizeof *rep);
    int own_read = !inv->in_tx;
    memcpy(prev, zero_hash, sizeof prev);
    /* Read everything in one snapshot: a concurrent append must not look like a broken
     * tail. */
    if (own_read) {
        FK_GUARD(exec(inv, "BEGIN", diag));
    }
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "SELECT seq, at, actor, kind, subject, detail, prev_hash, hash"
                                 " FROM audit ORDER BY seq",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    for (;;) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE) {
            break;
        }
        FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "audit read"));
        long long seq = sqlite3_column_int64(s, 0);
        const char *f[7];
        for (int i = 0; i < 7; i++) {
            const unsigned char *t = sqlite3_column_text(s, i + 1);
            f[i] = t != NULL ? (const char *)t : "";
        }
        rep->rows++;
        if (seq != want) {
            rc = verify_fail(rep, want,
                             seq < want ? "row %lld out of order (found seq %lld)"
                                        : "row %lld missing (next is seq %lld)",
                             want, seq);
            goto out;
        }
        if (strcmp(f[5], prev) != 0) {
            rc = verify_fail(rep, seq, "row %lld: prev_hash does not match row %lld", seq, seq - 1);
            goto out;
        }
        if (row_hash(prev, seq, f[0], f[1], f[2], f[3], f[4], expect) != FK_OK ||
            strcmp(expect, f[6]) != 0) {
            rc = verify_fail(rep, seq, "row %lld: content does not match its hash", seq);
            goto out;
        }
        memcpy(prev, expect, sizeof prev);
        rep->head_seq = seq;
        want++;
    }
    sqlite3_finalize(s);
    s = NULL;
    FK_GUARD(stmt(inv, ST_HEAD_GET, &s, diag));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "audit head"));
    long long head_seq = r == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    char head_hash[65] = "";
    if (r == SQLITE_ROW) {
        col_text(s, 1, head_hash, sizeof head_hash);
    }
    sqlite3_reset(s);
    s = NULL;
    if (head_seq != rep->head_seq) {
        rc = verify_fail(rep, rep->head_seq + 1,
                         "log ends at row %lld but the head says %lld (tail cut off or "
                         "head edited)",
                         rep->head_seq, head_seq);
        goto out;
    }
    if (head_seq > 0 && strcmp(head_hash, prev) != 0) {
        rc = verify_fail(rep, head_seq, "row %lld: hash differs from the recorded head", head_seq);
        goto out;
    }
    snprintf(rep->head_hash, sizeof rep->head_hash, "%s", head_seq > 0 ? prev : "");
    rc = FK_OK;
out:
    if (s != NULL && s != inv->st[ST_HEAD_GET]) {
        sqlite3_finalize(s);
    }
    if (own_read) {
        sqlite3_exec(inv->db, "COMMIT", NULL, NULL, NULL);
    }
    if (rc == FK_E_VERIFY) {
        fk_diag_at(diag, FK_E_VERIFY, inv->path, 0, "audit log: %s", rep->problem);
    }
    return rc;
}

enum fk_err fk_inventory_audit_list(struct fk_inventory *inv, fk_inv_audit_fn *fn, void *user,
                                    struct fk_diag *diag) {
    return fk_inventory_audit_list_after(inv, 0, fn, user, diag);
}

enum fk_err fk_inventory_audit_exists(struct fk_inventory *inv, const char *kind,
                                      const char *subject, int *found, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    *found = 0;
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "SELECT 1 FROM audit WHERE kind = ?1 AND subject = ?2 LIMIT 1", -1,
                                 &s, NULL) == SQLITE_OK &&
                  bind_text(s, 1, kind, 0) == SQLITE_OK &&
                  bind_text(s, 2, subject, 0) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    int r = sqlite3_step(s);
    FK_ENSURE(r == SQLITE_ROW || r == SQLITE_DONE, db_fail(inv, diag, "audit exists"));
    *found = r == SQLITE_ROW;
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

enum fk_err fk_inventory_audit_list_after(struct fk_inventory *inv, long long after,
                                          fk_inv_audit_fn *fn, void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "SELECT seq, at, actor, kind, subject, hash FROM audit"
                                 " WHERE seq > ?1 ORDER BY seq",
                                 -1, &s, NULL) == SQLITE_OK &&
                  sqlite3_bind_int64(s, 1, after) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    for (;;) {
        int r = sqlite3_step(s);
        if (r == SQLITE_DONE) {
            break;
        }
        FK_ENSURE(r == SQLITE_ROW, db_fail(inv, diag, "audit list"));
        struct fk_inv_audit a;
        memset(&a, 0, sizeof a);
        a.seq = sqlite3_column_int64(s, 0);
        col_text(s, 1, a.at, sizeof a.at);
        col_text(s, 2, a.actor, sizeof a.actor);
        col_text(s, 3, a.kind, sizeof a.kind);
        col_text(s, 4, a.subject, sizeof a.subject);
        col_text(s, 5, a.hash, sizeof a.hash);
        if (fn(user, &a) != 0) {
            break;
        }
    }
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

static void read_presence(sqlite3_stmt *s, void *out) {
    struct fk_inv_presence *p = out;
    memset(p, 0, sizeof *p);
    col_text(s, 0, p->device_id, sizeof p->device_id);
    col_text(s, 1, p->first_seen, sizeof p->first_seen);
    col_text(s, 2, p->last_seen, sizeof p->last_seen);
    col_text(s, 3, p->peer, sizeof p->peer);
    col_text(s, 4, p->firmware_version, sizeof p->firmware_version);
    col_text(s, 5, p->credential_versions, sizeof p->credential_versions);
    col_text(s, 6, p->posture, sizeof p->posture);
    col_text(s, 7, p->ota, sizeof p->ota);
}

enum fk_err fk_inventory_presence_get(struct fk_inventory *inv, const char *id,
                                      struct fk_inv_presence *out, struct fk_diag *diag) {
    enum fk_err rc = get_by_id(inv, ST_SEEN_GET, id, "presence get", read_presence, out, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "%s never seen", id);
    }
    return rc;
}

enum fk_err fk_inventory_device_seen(struct fk_inventory *inv, const struct fk_inv_presence *p,
                                     int *first, int *posture_changed, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    char now[FK_INV_TIME_SIZE];
    struct fk_inv_presence *old = NULL;
    int was_seen = 0;
    int changed = 0;
    FK_ENSURE(p->device_id[0] != '\0', fk_diag_set(diag, FK_E_ARG, "device id is required"));
    old = malloc(sizeof *old);
    FK_ENSURE(old != NULL, FK_E_NOMEM);
    now_rfc3339(now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = fk_inventory_presence_get(inv, p->device_id, old, diag);
    FK_ENSURE(rc == FK_OK || rc == FK_E_NOTFOUND, rc);
    was_seen = rc == FK_OK;
    changed = was_seen && strcmp(old->posture, p->posture) != 0;
    FK_GUARD(stmt(inv, ST_SEEN_SET, &s, diag));
    FK_ENSURE(bind_text(s, 1, p->device_id, 0) == SQLITE_OK &&
                  bind_text(s, 2, p->last_seen[0] != '\0' ? p->last_seen : now, 0) == SQLITE_OK &&
                  bind_text(s, 3, p->peer, 1) == SQLITE_OK &&
                  bind_text(s, 4, p->firmware_version, 1) == SQLITE_OK &&
                  bind_text(s, 5, p->credential_versions, 1) == SQLITE_OK &&
                  bind_text(s, 6, p->posture, 1) == SQLITE_OK &&
                  bind_text(s, 7, p->ota, 1) == SQLITE_OK,
              db_fail(inv, diag, "bind"));
    int r = sqlite3_step(s);
    FK_ENSURE(r != SQLITE_CONSTRAINT_FOREIGNKEY && r != SQLITE_CONSTRAINT,
              fk_diag_set(diag, FK_E_NOTFOUND, "no device %s", p->device_id));
    FK_ENSURE(r == SQLITE_DONE, db_fail(inv, diag, "presence set"));
    rc = FK_OK;
out:
    if (s != NULL) {
        sqlite3_reset(s);
    }
    free(old);
    rc = auto_end(inv, own, rc, diag);
    if (rc == FK_OK) {
        if (first != NULL) {
            *first = !was_seen;
        }
        if (posture_changed != NULL) {
            *posture_changed = changed;
        }
    }
    return rc;
}

/* ---- OTA signing-key rotations ----------------------------------------------------------- */

enum fk_err fk_inventory_rotation_add(struct fk_inventory *inv, const char *old_fpr,
                                      const char *new_fpr, const uint8_t *der, size_t der_len,
                                      const uint8_t *endorsement, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    sqlite3_stmt *s = NULL;
    char now[FK_INV_TIME_SIZE];
    FK_ENSURE(old_fpr[0] != '\0' && new_fpr[0] != '\0',
              fk_diag_set(diag, FK_E_ARG, "rotation: both key fingerprints are required"));
    FK_ENSURE(der != NULL && der_len > 0 && der_len <= FK_INV_DER_MAX,
              fk_diag_set(diag, FK_E_ARG, "rotation: public key of %zu bytes (1..%u expected)",
                          der_len, (unsigned)FK_INV_DER_MAX));
    FK_ENSURE(endorsement != NULL, fk_diag_set(diag, FK_E_ARG, "rotation: no endorsement"));
    now_rfc3339(now);
    FK_GUARD(auto_begin(inv, &own, diag));
    /* Start is idempotent and the first record of a pair is the one that counts; a row from
     * before schema 4 gets its endorsement (and keeps its key and time). */
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "INSERT INTO ota_rotation(old_fpr, new_fpr, new_pubkey,"
                                 " started_at, endorsement) VALUES(?1, ?2, ?3, ?4, ?5)"
                                 " ON CONFLICT(old_fpr, new_fpr) DO UPDATE SET endorsement ="
                                 " excluded.endorsement WHERE endorsement IS NULL",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    FK_ENSURE(
        bind_text(s, 1, old_fpr, 0) == SQLITE_OK && bind_text(s, 2, new_fpr, 0) == SQLITE_OK &&
            sqlite3_bind_blob(s, 3, der, (int)der_len, SQLITE_TRANSIENT) == SQLITE_OK &&
            bind_text(s, 4, now, 0) == SQLITE_OK &&
            sqlite3_bind_blob(s, 5, endorsement, FK_INV_ENDORSE_LEN, SQLITE_TRANSIENT) == SQLITE_OK,
        db_fail(inv, diag, "bind"));
    FK_ENSURE(sqlite3_step(s) == SQLITE_DONE, db_fail(inv, diag, "rotation add"));
    rc = FK_OK;
out:
    sqlite3_finalize(s);
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_rotation_last(struct fk_inventory *inv, struct fk_inv_rotation *out,
                                       struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    sqlite3_stmt *s = NULL;
    memset(out, 0, sizeof *out);
    FK_ENSURE(sqlite3_prepare_v2(inv->db,
                                 "SELECT seq, old_fpr, new_fpr, new_pubkey, started_at,"
                                 " endorsement FROM ota_rotation ORDER BY seq DESC LIMIT 1",
                                 -1, &s, NULL) == SQLITE_OK,
              db_fail(inv, diag, "prepare"));
    int r = sqlite3_step(s);
    FK_ENSURE(r != SQLITE_DONE, fk_diag_set(diag, FK_E_NOTFOUND, "no OTA key rotation recorded"));
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
