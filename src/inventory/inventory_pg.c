/* Inventory backend: PostgreSQL through libpq, for several fleetkey-server instances (and
 * provision-keys runs) sharing one fleet.
 *
 * Same logical schema as inventory_sqlite.c, step for step (migration N here is migration N
 * there; TEXT stays TEXT so times compare as the same RFC 3339 strings, BLOB is BYTEA).
 *
 * Concurrency: a write transaction starts with pg_advisory_xact_lock(WRITER_LOCK), the
 * counterpart of SQLite's BEGIN IMMEDIATE: every writer of the database, in any process on
 * any host, waits there until the previous one commits or rolls back. Two consequences the
 * audit chain needs: the head an append reads (READ COMMITTED, fresh snapshot per statement,
 * taken after the lock) is the newest committed one and cannot move before we commit, so
 * appends from two servers and a batch interleave into one valid chain; and writers take
 * the lock before any row lock, so fleetkey's writers never deadlock among themselves.
 * Readers (lists, verify) take no lock; verify reads one REPEATABLE READ snapshot. The lock
 * wait is bounded by lock_timeout (10 s, the SQLite busy timeout). Migrations take the same
 * lock, so two programs opening a new database at once do not both run migration 0.
 *
 * An error inside a PostgreSQL transaction aborts it (SQLite keeps it usable): commit then
 * refuses and rolls back instead of reporting a success that did not happen. A connection
 * found dead outside a transaction (the database restarted) is re-established once and the
 * statement tried again; inside one, the transaction fails as it must. */
#include "inventory_internal.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys of pg_advisory_xact_lock, per database: "fk" + "inv". */
#define WRITER_LOCK "7020133426302838"

enum pst {
    P_DEV_UPSERT,
    P_DEV_GET,
    P_DEV_LIST,
    P_DEV_STATE,
    P_CRED_ADD,
    P_CRED_LIST,
    P_CRED_LIST_ONE,
    P_CRED_STATE,
    P_HEAD_GET,
    P_HEAD_SET,
    P_AUDIT_PAGE,
    P_AUDIT_EXISTS,
    P_SEEN_GET,
    P_SEEN_SET,
    P_ROT_ADD,
    P_ROT_LAST,
    P_PLAN_ADD,
    P_PLAN_GET,
    P_PLAN_PUT,
    P_PLAN_LIST,
    P_COUNT
};

static const char *const pst_sql[P_COUNT] = {
    [P_DEV_UPSERT] =
        "INSERT INTO devices(id, mac, name, state, manifest, manifest_sha256, created_at,"
        " provisioned_at) VALUES($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT(id) DO UPDATE SET mac = excluded.mac, name = excluded.name,"
        " state = excluded.state, manifest = excluded.manifest,"
        " manifest_sha256 = excluded.manifest_sha256, created_at = excluded.created_at,"
        " provisioned_at = excluded.provisioned_at",
    [P_DEV_GET] = "SELECT id, mac, name, state, manifest, manifest_sha256, created_at,"
                  " provisioned_at FROM devices WHERE id = $1",
    [P_DEV_LIST] = "SELECT id, mac, name, state, manifest, manifest_sha256, created_at,"
                   " provisioned_at FROM devices ORDER BY id COLLATE \"C\"",
    [P_DEV_STATE] = "UPDATE devices SET state = $2, provisioned_at = COALESCE($3, provisioned_at)"
                    " WHERE id = $1",
    [P_CRED_ADD] = "INSERT INTO credentials(device_id, kind, version, fingerprint, created_at,"
                   " expires_at, state) VALUES($1, $2, $3, $4, $5, $6, $7)",
    /* One device gets its own statement, which the unique (device_id, kind, version) index
     * answers; "$1 IS NULL OR device_id = $1" would read the whole fleet's credentials. */
    [P_CRED_LIST] = "SELECT device_id, kind, version, fingerprint, created_at, expires_at, state"
                    " FROM credentials"
                    " ORDER BY device_id COLLATE \"C\", kind COLLATE \"C\", version",
    [P_CRED_LIST_ONE] = "SELECT device_id, kind, version, fingerprint, created_at, expires_at,"
                        " state FROM credentials WHERE device_id = $1"
                        " ORDER BY kind COLLATE \"C\", version",
    [P_CRED_STATE] = "UPDATE credentials SET state = $4"
                     " WHERE device_id = $1 AND kind = $2 AND version = $3",
    [P_HEAD_GET] = "SELECT seq, hash FROM audit_head WHERE id = 1",
    [P_HEAD_SET] = "INSERT INTO audit_head(id, seq, hash) VALUES(1, $1, $2)"
                   " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    [P_AUDIT_PAGE] = "SELECT seq, at, actor, kind, subject, detail, prev_hash, hash FROM audit"
                     " WHERE seq > $1 ORDER BY seq LIMIT 5000",
    [P_AUDIT_EXISTS] = "SELECT 1 FROM audit WHERE kind = $1 AND subject = $2 LIMIT 1",
    [P_SEEN_GET] = "SELECT device_id, first_seen, last_seen, peer, firmware_version,"
                   " credential_versions, posture, ota FROM device_presence WHERE device_id = $1",
    [P_SEEN_SET] =
        "INSERT INTO device_presence(device_id, first_seen, last_seen, peer, firmware_version,"
        " credential_versions, posture, ota) VALUES($1, $2, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen,"
        " peer = excluded.peer, firmware_version = excluded.firmware_version,"
        " credential_versions = excluded.credential_versions, posture = excluded.posture,"
        " ota = excluded.ota",
    /* The first record of a pair counts; a row from before schema 4 gets its endorsement. */
    [P_ROT_ADD] = "INSERT INTO ota_rotation(old_fpr, new_fpr, new_pubkey, started_at,"
                  " endorsement) VALUES($1, $2, $3, $4, $5)"
                  " ON CONFLICT(old_fpr, new_fpr) DO UPDATE SET endorsement ="
                  " excluded.endorsement WHERE ota_rotation.endorsement IS NULL",
    [P_ROT_LAST] = "SELECT seq, old_fpr, new_fpr, new_pubkey, started_at, endorsement"
                   " FROM ota_rotation ORDER BY seq DESC LIMIT 1",
    [P_PLAN_ADD] = "INSERT INTO rot_plans(body, version, updated_at) VALUES($1, 1, $2)"
                   " RETURNING id",
    [P_PLAN_GET] = "SELECT body, version FROM rot_plans WHERE id = $1",
    [P_PLAN_PUT] = "UPDATE rot_plans SET body = $2, version = version + 1, updated_at = $3"
                   " WHERE id = $1",
    [P_PLAN_LIST] = "SELECT id, version, body FROM rot_plans WHERE id > $1 ORDER BY id",
};

/* Migration i takes the schema from version i to i + 1; the same steps as SQLite's. */
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
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE RESTRICT,"
    " kind TEXT NOT NULL,"
    " version BIGINT NOT NULL CHECK (version >= 1),"
    " fingerprint TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " expires_at TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('active', 'staged', 'retired', 'revoked')),"
    " UNIQUE(device_id, kind, version));"
    "CREATE INDEX credentials_fpr ON credentials(fingerprint);"
    "CREATE TABLE audit("
    " seq BIGINT PRIMARY KEY,"
    " at TEXT NOT NULL,"
    " actor TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE TABLE audit_head("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN RAISE EXCEPTION 'audit log is append-only'; END$$;"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " FOR EACH ROW EXECUTE FUNCTION audit_append_only();"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " FOR EACH ROW EXECUTE FUNCTION audit_append_only();"
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();",
    "CREATE TABLE device_presence("
    " device_id TEXT PRIMARY KEY NOT NULL REFERENCES devices(id) ON DELETE RESTRICT,"
    " first_seen TEXT NOT NULL,"
    " last_seen TEXT NOT NULL,"
    " peer TEXT,"
    " firmware_version TEXT,"
    " credential_versions TEXT,"
    " posture TEXT);",
    "ALTER TABLE device_presence ADD COLUMN ota TEXT;"
    "CREATE TABLE ota_rotation("
    " seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " old_fpr TEXT NOT NULL,"
    " new_fpr TEXT NOT NULL,"
    " new_pubkey BYTEA NOT NULL,"
    " started_at TEXT NOT NULL,"
    " UNIQUE(old_fpr, new_fpr));",
    "ALTER TABLE ota_rotation ADD COLUMN endorsement BYTEA;",
    /* 4 -> 5: no query looks a credential up by fingerprint (SQLite's migration 5 also
     * rewrites its state CHECKs, the same constraints, which PostgreSQL evaluates cheaply). */
    "DROP INDEX IF EXISTS credentials_fpr;",
    /* 5 -> 6: credential rotation plans, shared by every instance (docs/server.md). */
    "CREATE TABLE rot_plans("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " body TEXT NOT NULL,"
    " version BIGINT NOT NULL,"
    " updated_at TEXT NOT NULL);",
    /* 6 -> 7: (device_id, kind, version) is the key of a credential, as in SQLite's WITHOUT
     * ROWID table: it becomes the primary key in place of the UNIQUE constraint (an index
     * that belongs to a constraint cannot be taken over, so it is built again, once), and
     * the surrogate id (never read) goes with its index: one index insert per credential
     * less. */
    "ALTER TABLE credentials DROP COLUMN id,"
    " DROP CONSTRAINT credentials_device_id_kind_version_key,"
    " ADD PRIMARY KEY (device_id, kind, version);",
};
#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(MIGRATION_COUNT == FK_INVENTORY_SCHEMA_VERSION, "one migration per version");

struct pg {
    PGconn *conn;
    int tx_open; /* a transaction (read or write) is open on conn */
    unsigned char prepared[P_COUNT];
    unsigned char many_prepared[FK_INV_MANY_COUNT][FK_INV_CRED_MANY_MAX + 1];
};

static PGconn *conn_of(struct fk_inventory *inv) {
    return ((struct pg *)inv->be)->conn;
}

/* libpq messages end in "\n" and may span lines ("DETAIL: ..."): one line for a diag. */
static enum fk_err pg_fail(struct fk_inventory *inv, struct fk_diag *diag, const char *what,
                           const char *msg) {
    char line[400];
    size_t n = 0;
    for (const char *p = msg != NULL ? msg : ""; *p != '\0' && n < sizeof line - 1; p++) {
        int space = *p == '\n' || *p == '\r' || *p == '\t' || *p == ' ';
        if (!space) {
            line[n++] = *p;
        } else if (n > 0 && line[n - 1] != ' ') {
            line[n++] = ' '; /* runs of white space, line breaks included, become one space */
        }
    }
    while (n > 0 && line[n - 1] == ' ') {
        n--;
    }
    line[n] = '\0';
    return fk_diag_at(diag, FK_E_DB, inv->where, 0, "%s: %s", what,
                      line[0] != '\0' ? line : PQerrorMessage(conn_of(inv)));
}

/* Runs sql (no parameters, possibly several statements) and discards the result. */
static enum fk_err exec(struct fk_inventory *inv, const char *sql, const char *what,
                        struct fk_diag *diag) {
    PGresult *r = PQexec(conn_of(inv), sql);
    ExecStatusType st = PQresultStatus(r);
    enum fk_err rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK
                         ? FK_OK
                         : pg_fail(inv, diag, what, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* Runs prepared statement id (prepared on first use) with text parameters, except where
 * fmt[i] is 1 (binary, len[i] bytes). *out (may be NULL) gets the result on FK_OK. When the
 * statement fails with SQLSTATE `quiet` (e.g. "23505"), returns FK_E_EXISTS and leaves diag
 * alone: the caller decides what that means. */
static enum fk_err run_named(struct fk_inventory *inv, const char *name, const char *sql,
                             unsigned char *prepared, int n, const char *const *val,
                             const int *len, const int *fmt, PGresult **out, const char *quiet,
                             struct fk_diag *diag);

static enum fk_err run_once(struct fk_inventory *inv, enum pst id, int n, const char *const *val,
                            const int *len, const int *fmt, PGresult **out, const char *quiet,
                            struct fk_diag *diag) {
    struct pg *p = inv->be;
    char name[16];
    snprintf(name, sizeof name, "fk_inv_%d", (int)id);
    return run_named(inv, name, pst_sql[id], &p->prepared[id], n, val, len, fmt, out, quiet,
                     diag);
}

/* run_once of a statement by name and text: sql is prepared under name once per session
 * (*prepared), then executed. */
static enum fk_err run_named(struct fk_inventory *inv, const char *name, const char *sql,
                             unsigned char *prepared, int n, const char *const *val,
                             const int *len, const int *fmt, PGresult **out, const char *quiet,
                             struct fk_diag *diag) {
    struct pg *p = inv->be;
    if (!*prepared) {
        PGresult *r = PQprepare(p->conn, name, sql, 0, NULL);
        enum fk_err rc = PQresultStatus(r) == PGRES_COMMAND_OK
                             ? FK_OK
                             : pg_fail(inv, diag, "prepare", PQresultErrorMessage(r));
        PQclear(r);
        if (rc != FK_OK) {
            return rc;
        }
        *prepared = 1;
    }
    PGresult *r = PQexecPrepared(p->conn, name, n, val, len, fmt, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out != NULL) {
            *out = r;
        } else {
            PQclear(r);
        }
        return FK_OK;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    enum fk_err rc = quiet != NULL && state != NULL && strcmp(state, quiet) == 0
                         ? FK_E_EXISTS
                         : pg_fail(inv, diag, "query", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

static enum fk_err pg_session(struct fk_inventory *inv, struct fk_diag *diag);

/* After the database restarted (or a network cut), conn is dead: outside a transaction
 * nothing is lost by connecting again, and a long-running server must not stay cut off. Bound
 * the wait with connect_timeout in the URI when the database is reached over TCP. */
static int reconnect(struct fk_inventory *inv) {
    struct pg *p = inv->be;
    if (p->tx_open || PQstatus(p->conn) != CONNECTION_BAD) {
        return 0;
    }
    PQreset(p->conn);
    return PQstatus(p->conn) == CONNECTION_OK && pg_session(inv, NULL) == FK_OK;
}

/* run_once(), tried a second time on a new connection when the first failed because the old
 * one was dead (outside a transaction only). */
static enum fk_err run(struct fk_inventory *inv, enum pst id, int n, const char *const *val,
                       const int *len, const int *fmt, PGresult **out, const char *quiet,
                       struct fk_diag *diag) {
    enum fk_err rc = run_once(inv, id, n, val, len, fmt, out, quiet, diag);
    if (rc == FK_E_DB && reconnect(inv)) {
        rc = run_once(inv, id, n, val, len, fmt, out, quiet, diag);
    }
    return rc;
}

/* "" is NULL for the optional columns, as in SQLite. */
static const char *opt(const char *v) {
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static const char *cell(PGresult *r, int row, int c) {
    return PQgetisnull(r, row, c) ? "" : PQgetvalue(r, row, c);
}

static void cell_copy(PGresult *r, int row, int c, char *out, size_t size) {
    fk_inv_copy(out, size, cell(r, row, c));
}

static enum fk_err read_version(struct fk_inventory *inv, int *version, struct fk_diag *diag) {
    PGresult *r = PQexec(conn_of(inv), "SELECT max(version) FROM schema_version");
    enum fk_err rc = PQresultStatus(r) == PGRES_TUPLES_OK
                         ? FK_OK
                         : pg_fail(inv, diag, "read schema version", PQresultErrorMessage(r));
    if (rc == FK_OK) {
        *version = PQntuples(r) == 1 ? (int)strtol(cell(r, 0, 0), NULL, 10) : 0;
    }
    PQclear(r);
    return rc;
}

/* One migration per transaction, each under the writers' lock, re-reading the version after
 * taking it: whoever comes second finds the work done. */
static enum fk_err migrate(struct fk_inventory *inv, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int current = 0;
    /* Fast path, no lock: opening an up-to-date database never waits for a running batch's
     * transaction (a missing table is an error here and takes the slow path). */
    if (read_version(inv, &current, NULL) == FK_OK && current == MIGRATION_COUNT) {
        return FK_OK;
    }
    for (;;) {
        int version = 0;
        FK_GUARD(exec(inv,
                      "BEGIN; SELECT pg_advisory_xact_lock(" WRITER_LOCK ");"
                      " CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
                      "migrate", diag));
        FK_GUARD(read_version(inv, &version, diag));
        FK_GUARD(fk_inv_check_version(inv, version, MIGRATION_COUNT, diag));
        if (version == MIGRATION_COUNT) {
            FK_GUARD(exec(inv, "COMMIT", "migrate", diag));
            break;
        }
        char set[96];
        snprintf(set, sizeof set,
                 "DELETE FROM schema_version; INSERT INTO schema_version VALUES(%d)", version + 1);
        FK_GUARD(exec(inv, migrations[version], "migration", diag));
        FK_GUARD(exec(inv, set, "migration", diag));
        FK_GUARD(exec(inv, "COMMIT", "migration", diag));
    }
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        PQclear(PQexec(conn_of(inv), "ROLLBACK"));
    }
    return rc;
}

/* libpq prints NOTICEs ("relation already exists, skipping") on stderr by default. */
static void quiet_notice(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

static enum fk_err pg_session(struct fk_inventory *inv, struct fk_diag *diag) {
    PQsetNoticeProcessor(conn_of(inv), quiet_notice, NULL);
    struct pg *p = inv->be;
    memset(p->prepared, 0, sizeof p->prepared);
    memset(p->many_prepared, 0, sizeof p->many_prepared);
    return exec(inv, "SET lock_timeout = '10s'; SET client_min_messages = warning", "session",
                diag);
}

static enum fk_err pg_open(struct fk_inventory *inv, const char *uri, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct pg *p = calloc(1, sizeof *p);
    FK_ENSURE(p != NULL, FK_E_NOMEM);
    inv->be = p;
    p->conn = PQconnectdb(uri);
    FK_ENSURE(p->conn != NULL, FK_E_NOMEM);
    /* PQerrorMessage names the host or socket and the reason; never the password. */
    FK_ENSURE(PQstatus(p->conn) == CONNECTION_OK,
              pg_fail(inv, diag, "cannot connect", PQerrorMessage(p->conn)));
    FK_GUARD(pg_session(inv, diag));
    FK_GUARD(migrate(inv, diag));
    rc = FK_OK;
out:
    return rc; /* on failure the API calls close */
}

static void pg_close(struct fk_inventory *inv) {
    struct pg *p = inv->be;
    if (p == NULL) {
        return;
    }
    PQfinish(p->conn);
    free(p);
    inv->be = NULL;
}

static enum fk_err pg_begin(struct fk_inventory *inv, int write, struct fk_diag *diag) {
    struct pg *p = inv->be;
    const char *sql = write ? "BEGIN; SELECT pg_advisory_xact_lock(" WRITER_LOCK ")"
                            : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const char *what = write ? "begin (waiting for the other writers)" : "begin";
    p->tx_open = 0;
    enum fk_err rc = exec(inv, sql, what, diag);
    if (rc != FK_OK && reconnect(inv)) {
        rc = exec(inv, sql, what, diag);
    }
    if (rc != FK_OK) {
        PQclear(PQexec(p->conn, "ROLLBACK"));
    }
    p->tx_open = rc == FK_OK;
    return rc;
}

static enum fk_err pg_commit(struct fk_inventory *inv, struct fk_diag *diag) {
    PGconn *c = conn_of(inv);
    ((struct pg *)inv->be)->tx_open = 0;
    if (PQtransactionStatus(c) == PQTRANS_INERROR) {
        PQclear(PQexec(c, "ROLLBACK"));
        return fk_diag_at(diag, FK_E_DB, inv->where, 0,
                          "commit: the transaction was aborted by an earlier error; rolled back");
    }
    PGresult *r = PQexec(c, "COMMIT");
    enum fk_err rc = FK_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = pg_fail(inv, diag, "commit", PQresultErrorMessage(r));
    } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        rc = fk_diag_at(diag, FK_E_DB, inv->where, 0, "commit: the server rolled back");
    }
    PQclear(r);
    if (rc != FK_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PQclear(PQexec(c, "ROLLBACK"));
    }
    return rc;
}

static void pg_rollback(struct fk_inventory *inv) {
    ((struct pg *)inv->be)->tx_open = 0;
    PQclear(PQexec(conn_of(inv), "ROLLBACK"));
}

static enum fk_err pg_device_upsert(struct fk_inventory *inv, const struct fk_inv_device *d,
                                    const char *created_at, struct fk_diag *diag) {
    const char *v[8] = {d->id,
                        d->mac,
                        opt(d->name),
                        d->state,
                        opt(d->manifest),
                        opt(d->manifest_sha256),
                        created_at,
                        opt(d->provisioned_at)};
    return run(inv, P_DEV_UPSERT, 8, v, NULL, NULL, NULL, NULL, diag);
}

/* Row row of result r, for the shared readers (fk_inv_col_fn). */
struct pg_row {
    PGresult *r;
    int row;
};

static const char *row_col(void *row, int i) {
    struct pg_row *x = row;
    return cell(x->r, x->row, i);
}

static void read_device(PGresult *r, int i, struct fk_inv_device *d) {
    struct pg_row x = {r, i};
    fk_inv_read_device(d, row_col, &x);
}

static enum fk_err pg_device_get(struct fk_inventory *inv, const char *id,
                                 struct fk_inv_device *out, struct fk_diag *diag) {
    PGresult *r = NULL;
    enum fk_err rc = run(inv, P_DEV_GET, 1, &id, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK) {
        if (PQntuples(r) == 1) {
            read_device(r, 0, out);
        } else {
            rc = FK_E_NOTFOUND;
        }
    }
    PQclear(r);
    return rc;
}

/* The whole result is fetched before the first callback, so a callback may query the
 * inventory itself (as with SQLite). */
static enum fk_err pg_device_list(struct fk_inventory *inv, fk_inv_device_fn *fn, void *user,
                                  struct fk_diag *diag) {
    PGresult *r = NULL;
    enum fk_err rc = run(inv, P_DEV_LIST, 0, NULL, NULL, NULL, &r, NULL, diag);
    for (int i = 0; rc == FK_OK && i < PQntuples(r); i++) {
        struct fk_inv_device d;
        read_device(r, i, &d);
        if (fn(user, &d) != 0) {
            break;
        }
    }
    PQclear(r);
    return rc;
}

/* Runs the UPDATE id, which must change exactly one row: FK_E_NOTFOUND when it changed none. */
static enum fk_err update_one(struct fk_inventory *inv, enum pst id, int n, const char *const *v,
                              struct fk_diag *diag) {
    PGresult *r = NULL;
    enum fk_err rc = run(inv, id, n, v, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK && strcmp(PQcmdTuples(r), "1") != 0) {
        rc = FK_E_NOTFOUND;
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_device_set_state(struct fk_inventory *inv, const char *id, const char *state,
                                       const char *at, struct fk_diag *diag) {
    const char *v[3] = {id, state, at != NULL ? opt(at) : NULL};
    return update_one(inv, P_DEV_STATE, 3, v, diag);
}

static enum fk_err pg_credential_add(struct fk_inventory *inv, const struct fk_inv_credential *c,
                                     const char *created_at, struct fk_diag *diag) {
    char ver[16];
    snprintf(ver, sizeof ver, "%u", c->version);
    const char *v[7] = {c->device_id,       c->kind, ver, c->fingerprint, created_at,
                        opt(c->expires_at), c->state};
    /* unique_violation: (device_id, kind, version) exists */
    return run(inv, P_CRED_ADD, 7, v, NULL, NULL, NULL, "23505", diag);
}

/* The multi-row statement id of n rows (fk_inv_many_sql) with vals: one round trip for a
 * batch chunk's FK_INV_MANY_MAX devices instead of one per row. Only ever inside a write
 * transaction (the *_many ops), where a dead connection fails the transaction anyway: no retry. */
static enum fk_err run_many(struct fk_inventory *inv, enum fk_inv_many id, size_t n,
                            const char *const *val, int nval, const char *quiet,
                            struct fk_diag *diag) {
    struct pg *p = inv->be;
    char name[32];
    char sql[FK_INV_MANY_SQL_SIZE] = "";
    snprintf(name, sizeof name, "fk_inv_m%d_%zu", (int)id, n);
    if (!p->many_prepared[id][n]) {
        fk_inv_many_sql(id, n, '$', sql, sizeof sql);
    }
    return run_named(inv, name, sql, &p->many_prepared[id][n], nval, val, NULL, NULL, NULL, quiet,
                     diag);
}

static enum fk_err pg_device_upsert_many(struct fk_inventory *inv, const struct fk_inv_device *v,
                                         size_t n, const char *created_at, struct fk_diag *diag) {
    const char *val[FK_INV_MANY_MAX * 8];
    for (size_t i = 0; i < n; i++) {
        const struct fk_inv_device *d = &v[i];
        const char **x = &val[i * 8];
        x[0] = d->id;
        x[1] = d->mac;
        x[2] = opt(d->name);
        x[3] = d->state;
        x[4] = opt(d->manifest);
        x[5] = opt(d->manifest_sha256);
        x[6] = d->created_at[0] != '\0' ? d->created_at : created_at;
        x[7] = opt(d->provisioned_at);
    }
    return run_many(inv, FK_INV_MANY_DEV, n, val, (int)n * 8, NULL, diag);
}

static enum fk_err pg_credential_add_many(struct fk_inventory *inv,
                                          const struct fk_inv_credential *v, size_t n,
                                          const char *created_at, struct fk_diag *diag) {
    const char *val[FK_INV_CRED_MANY_MAX * 7];
    char ver[FK_INV_CRED_MANY_MAX][16];
    for (size_t i = 0; i < n; i++) {
        const struct fk_inv_credential *c = &v[i];
        const char **x = &val[i * 7];
        snprintf(ver[i], sizeof ver[i], "%u", c->version);
        x[0] = c->device_id;
        x[1] = c->kind;
        x[2] = ver[i];
        x[3] = c->fingerprint;
        x[4] = c->created_at[0] != '\0' ? c->created_at : created_at;
        x[5] = opt(c->expires_at);
        x[6] = c->state;
    }
    /* unique_violation: one (device_id, kind, version) exists */
    return run_many(inv, FK_INV_MANY_CRED, n, val, (int)n * 7, "23505", diag);
}

static enum fk_err pg_credential_list(struct fk_inventory *inv, const char *device_id,
                                      fk_inv_credential_fn *fn, void *user, struct fk_diag *diag) {
    PGresult *r = NULL;
    enum fk_err rc = device_id != NULL
                         ? run(inv, P_CRED_LIST_ONE, 1, &device_id, NULL, NULL, &r, NULL, diag)
                         : run(inv, P_CRED_LIST, 0, NULL, NULL, NULL, &r, NULL, diag);
    for (int i = 0; rc == FK_OK && i < PQntuples(r); i++) {
        struct fk_inv_credential c;
        struct pg_row x = {r, i};
        fk_inv_read_credential(&c, row_col, &x);
        if (fn(user, &c) != 0) {
            break;
        }
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_credential_set_state(struct fk_inventory *inv, const char *device_id,
                                           const char *kind, unsigned version, const char *state,
                                           struct fk_diag *diag) {
    char ver[16];
    snprintf(ver, sizeof ver, "%u", version);
    const char *v[4] = {device_id, kind, ver, state};
    return update_one(inv, P_CRED_STATE, 4, v, diag);
}

static enum fk_err pg_audit_head(struct fk_inventory *inv, long long *seq, char hash[65],
                                 struct fk_diag *diag) {
    PGresult *r = NULL;
    enum fk_err rc = run(inv, P_HEAD_GET, 0, NULL, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK) {
        if (PQntuples(r) == 1) {
            *seq = strtoll(cell(r, 0, 0), NULL, 10);
            cell_copy(r, 0, 1, hash, 65);
        } else {
            rc = FK_E_NOTFOUND;
        }
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_audit_insert_many(struct fk_inventory *inv, const struct fk_inv_audit_row *a,
                                        size_t n, struct fk_diag *diag) {
    const char *val[FK_INV_MANY_MAX * 8];
    char seq[FK_INV_MANY_MAX][24];
    for (size_t i = 0; i < n; i++) {
        const char **x = &val[i * 8];
        snprintf(seq[i], sizeof seq[i], "%lld", a[i].seq);
        x[0] = seq[i];
        x[1] = a[i].at;
        x[2] = a[i].actor;
        x[3] = a[i].kind;
        x[4] = a[i].subject;
        x[5] = a[i].detail;
        x[6] = a[i].prev_hash;
        x[7] = a[i].hash;
    }
    return run_many(inv, FK_INV_MANY_AUDIT, n, val, (int)n * 8, NULL, diag);
}

static enum fk_err pg_audit_head_set(struct fk_inventory *inv, long long seq, const char *hash,
                                     struct fk_diag *diag) {
    char s[24];
    snprintf(s, sizeof s, "%lld", seq);
    const char *v[2] = {s, hash};
    return run(inv, P_HEAD_SET, 2, v, NULL, NULL, NULL, NULL, diag);
}

/* In pages of 5000 rows by seq (keyset), so verifying a long log never holds it all in
 * memory; inside verify's REPEATABLE READ transaction all pages come from one snapshot. */
static enum fk_err pg_audit_walk(struct fk_inventory *inv, long long after, fk_inv_row_fn *fn,
                                 void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_OK;
    int stop = 0;
    while (rc == FK_OK && !stop) {
        char from[24];
        snprintf(from, sizeof from, "%lld", after);
        const char *v[1] = {from};
        PGresult *r = NULL;
        rc = run(inv, P_AUDIT_PAGE, 1, v, NULL, NULL, &r, NULL, diag);
        int n = rc == FK_OK ? PQntuples(r) : 0;
        stop = n == 0;
        for (int i = 0; i < n && !stop; i++) {
            struct fk_inv_audit_row a = {strtoll(cell(r, i, 0), NULL, 10),
                                         cell(r, i, 1),
                                         cell(r, i, 2),
                                         cell(r, i, 3),
                                         cell(r, i, 4),
                                         cell(r, i, 5),
                                         cell(r, i, 6),
                                         cell(r, i, 7)};
            after = a.seq;
            stop = fn(user, &a) != 0;
        }
        PQclear(r);
    }
    return rc;
}

static enum fk_err pg_audit_exists(struct fk_inventory *inv, const char *kind, const char *subject,
                                   int *found, struct fk_diag *diag) {
    const char *v[2] = {kind, subject};
    PGresult *r = NULL;
    enum fk_err rc = run(inv, P_AUDIT_EXISTS, 2, v, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK) {
        *found = PQntuples(r) > 0;
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_presence_get(struct fk_inventory *inv, const char *id,
                                   struct fk_inv_presence *p, struct fk_diag *diag) {
    PGresult *r = NULL;
    enum fk_err rc = run(inv, P_SEEN_GET, 1, &id, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK && PQntuples(r) != 1) {
        rc = FK_E_NOTFOUND;
    }
    if (rc == FK_OK) {
        struct pg_row x = {r, 0};
        fk_inv_read_presence(p, row_col, &x);
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_presence_set(struct fk_inventory *inv, const struct fk_inv_presence *p,
                                   const char *last_seen, struct fk_diag *diag) {
    const char *v[7] = {p->device_id,
                        last_seen,
                        opt(p->peer),
                        opt(p->firmware_version),
                        opt(p->credential_versions),
                        opt(p->posture),
                        opt(p->ota)};
    /* foreign_key_violation: no such device */
    enum fk_err rc = run(inv, P_SEEN_SET, 7, v, NULL, NULL, NULL, "23503", diag);
    return rc == FK_E_EXISTS ? FK_E_NOTFOUND : rc;
}

static enum fk_err pg_rotation_add(struct fk_inventory *inv, const char *old_fpr,
                                   const char *new_fpr, const uint8_t *der, size_t der_len,
                                   const uint8_t *endorsement, const char *started_at,
                                   struct fk_diag *diag) {
    const char *v[5] = {old_fpr, new_fpr, (const char *)der, started_at, (const char *)endorsement};
    const int len[5] = {0, 0, (int)der_len, 0, FK_INV_ENDORSE_LEN};
    const int fmt[5] = {0, 0, 1, 0, 1}; /* the keys go as raw bytes */
    return run(inv, P_ROT_ADD, 5, v, len, fmt, NULL, NULL, diag);
}

/* Decodes a bytea column (text form "\x...") into out, which must hold exactly want bytes
 * (want 0: any length up to size). Returns the length, or -1. Nothing in the row is trusted. */
static long unbytea(PGresult *r, int c, uint8_t *out, size_t size, size_t want) {
    if (PQgetisnull(r, 0, c)) {
        return -1;
    }
    size_t n = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, c), &n);
    long got = -1;
    if (b != NULL && n > 0 && n <= size && (want == 0 || n == want)) {
        memcpy(out, b, n);
        got = (long)n;
    }
    PQfreemem(b);
    return got;
}

static enum fk_err pg_rotation_last(struct fk_inventory *inv, struct fk_inv_rotation *out,
                                    struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    PGresult *r = NULL;
    FK_GUARD(run(inv, P_ROT_LAST, 0, NULL, NULL, NULL, &r, NULL, diag));
    FK_ENSURE(PQntuples(r) == 1, FK_E_NOTFOUND);
    out->seq = strtoll(cell(r, 0, 0), NULL, 10);
    cell_copy(r, 0, 1, out->old_fpr, sizeof out->old_fpr);
    cell_copy(r, 0, 2, out->new_fpr, sizeof out->new_fpr);
    long n = unbytea(r, 3, out->new_der, sizeof out->new_der, 0);
    FK_ENSURE(n > 0, fk_diag_set(diag, FK_E_DB,
                                 "rotation %lld: stored public key is empty or "
                                 "longer than %d bytes",
                                 out->seq, FK_INV_DER_MAX));
    out->new_der_len = (size_t)n;
    cell_copy(r, 0, 4, out->started_at, sizeof out->started_at);
    FK_ENSURE(unbytea(r, 5, out->endorsement, sizeof out->endorsement, FK_INV_ENDORSE_LEN) > 0,
              fk_diag_set(diag, FK_E_DB,
                          "rotation %lld has no endorsement (recorded before schema 4): run "
                          "rotate ota-key start again",
                          out->seq));
    rc = FK_OK;
out:
    PQclear(r);
    return rc;
}

static enum fk_err pg_plan_add(struct fk_inventory *inv, const char *body, const char *updated_at,
                               long long *id, struct fk_diag *diag) {
    PGresult *r = NULL;
    const char *v[2] = {body, updated_at};
    enum fk_err rc = run(inv, P_PLAN_ADD, 2, v, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK) {
        rc = PQntuples(r) == 1 ? FK_OK : fk_diag_set(diag, FK_E_DB, "plan add: no id returned");
        *id = rc == FK_OK ? strtoll(cell(r, 0, 0), NULL, 10) : 0;
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_plan_get(struct fk_inventory *inv, long long id, char **body, size_t *len,
                               long long *version, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    PGresult *r = NULL;
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *v[1] = {ids};
    FK_GUARD(run(inv, P_PLAN_GET, 1, v, NULL, NULL, &r, NULL, diag));
    FK_ENSURE(PQntuples(r) == 1, FK_E_NOTFOUND);
    size_t n = (size_t)PQgetlength(r, 0, 0);
    FK_ENSURE(n > 0 && n <= FK_INV_PLAN_MAX,
              fk_diag_set(diag, FK_E_DB, "plan %lld: stored body of %zu bytes", id, n));
    FK_ENSURE((*body = malloc(n + 1)) != NULL,
              fk_diag_set(diag, FK_E_NOMEM, "plan %lld: memory", id));
    memcpy(*body, PQgetvalue(r, 0, 0), n);
    (*body)[n] = '\0';
    *len = n;
    *version = strtoll(cell(r, 0, 1), NULL, 10);
    rc = FK_OK;
out:
    if (r != NULL && PQntuples(r) == 1) {
        fk_wipe(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)); /* staged PSKs */
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_plan_put(struct fk_inventory *inv, long long id, const char *body,
                               const char *updated_at, struct fk_diag *diag) {
    PGresult *r = NULL;
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", id);
    const char *v[3] = {ids, body, updated_at};
    enum fk_err rc = run(inv, P_PLAN_PUT, 3, v, NULL, NULL, &r, NULL, diag);
    if (rc == FK_OK && strcmp(PQcmdTuples(r), "0") == 0) {
        rc = FK_E_NOTFOUND;
    }
    PQclear(r);
    return rc;
}

static enum fk_err pg_plan_list(struct fk_inventory *inv, long long after, fk_inv_plan_fn *fn,
                                void *user, struct fk_diag *diag) {
    PGresult *r = NULL;
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", after);
    const char *v[1] = {ids};
    enum fk_err rc = run(inv, P_PLAN_LIST, 1, v, NULL, NULL, &r, NULL, diag);
    for (int i = 0; rc == FK_OK && i < PQntuples(r); i++) {
        const char *b = cell(r, i, 2);
        int stop = fn(user, strtoll(cell(r, i, 0), NULL, 10), strtoll(cell(r, i, 1), NULL, 10), b,
                      strlen(b));
        fk_wipe(PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
        if (stop != 0) {
            break;
        }
    }
    PQclear(r);
    return rc;
}

const struct fk_inv_ops fk_inv_pg_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .device_upsert = pg_device_upsert,
    .device_upsert_many = pg_device_upsert_many,
    .device_get = pg_device_get,
    .device_list = pg_device_list,
    .device_set_state = pg_device_set_state,
    .credential_add = pg_credential_add,
    .credential_add_many = pg_credential_add_many,
    .credential_list = pg_credential_list,
    .credential_set_state = pg_credential_set_state,
    .audit_head = pg_audit_head,
    .audit_head_set = pg_audit_head_set,
    .audit_insert_many = pg_audit_insert_many,
    .audit_walk = pg_audit_walk,
    .audit_exists = pg_audit_exists,
    .presence_get = pg_presence_get,
    .presence_set = pg_presence_set,
    .rotation_add = pg_rotation_add,
    .rotation_last = pg_rotation_last,
    .plan_add = pg_plan_add,
    .plan_get = pg_plan_get,
    .plan_put = pg_plan_put,
    .plan_list = pg_plan_list,
};
