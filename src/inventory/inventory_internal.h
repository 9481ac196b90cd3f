/* Private to src/inventory: the backend interface behind fleetkey/inventory.h.
 *
 * inventory.c owns the public API: argument checks, the transaction bookkeeping (explicit and
 * per-call), the audit chain (hashing on append, the walk of verify) and the wording of
 * not-found/exists messages. A backend (inventory_sqlite.c, inventory_pg.c) only moves rows:
 * each op runs one or two statements with bound parameters and maps the store's errors to
 * FK_E_DB with the store's message, naming inv->where (the location, password masked).
 *
 * Contract of every op: FK_E_NOTFOUND / FK_E_EXISTS where stated are returned WITHOUT touching
 * diag (the caller words them); any other failure fills diag. Ops that write are only called
 * inside a write transaction (begin(write = 1)), which the backend serialises against every
 * other writer of the same store (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped
 * advisory lock), so audit_head + audit_insert_many see and advance the true head. */
#ifndef FLEETKEY_INVENTORY_INTERNAL_H
#define FLEETKEY_INVENTORY_INTERNAL_H

#include "fleetkey/inventory.h"

/* One audit row with every stored column; strings borrowed for the duration of a callback. */
struct fk_inv_audit_row {
    long long seq;
    const char *at;
    const char *actor;
    const char *kind;
    const char *subject;
    const char *detail;
    const char *prev_hash;
    const char *hash;
};

typedef int fk_inv_row_fn(void *user, const struct fk_inv_audit_row *r);

struct fk_inv_ops {
    const char *name; /* "sqlite", "postgresql" */
    /* Connects/opens location and migrates it to FK_INVENTORY_SCHEMA_VERSION; sets inv->be. */
    enum fk_err (*open)(struct fk_inventory *inv, const char *location, struct fk_diag *diag);
    void (*close)(struct fk_inventory *inv); /* inv->be may be NULL */
    /* write = 1: takes the writers' lock now; write = 0: one read-only snapshot. */
    enum fk_err (*begin)(struct fk_inventory *inv, int write, struct fk_diag *diag);
    /* Fails (and rolls back) when the transaction was aborted by an earlier error. */
    enum fk_err (*commit)(struct fk_inventory *inv, struct fk_diag *diag);
    void (*rollback)(struct fk_inventory *inv);
    /* Inside the write transaction of a group (fk_inventory_group_begin): a nested one that
     * release keeps and rollback_to undoes, alone. NULL: the backend has no groups. */
    enum fk_err (*savepoint)(struct fk_inventory *inv, struct fk_diag *diag);
    enum fk_err (*release)(struct fk_inventory *inv, struct fk_diag *diag);
    void (*rollback_to)(struct fk_inventory *inv);

    /* created_at is never empty here (the API fills in now). */
    enum fk_err (*device_upsert)(struct fk_inventory *inv, const struct fk_inv_device *d,
                                 const char *created_at, struct fk_diag *diag);
    enum fk_err (*device_get)(struct fk_inventory *inv, const char *id, struct fk_inv_device *out,
                              struct fk_diag *diag); /* FK_E_NOTFOUND */
    enum fk_err (*device_list)(struct fk_inventory *inv, fk_inv_device_fn *fn, void *user,
                               struct fk_diag *diag);
    enum fk_err (*device_set_state)(struct fk_inventory *inv, const char *id, const char *state,
                                    const char *at, struct fk_diag *diag); /* FK_E_NOTFOUND */
    enum fk_err (*credential_add)(struct fk_inventory *inv, const struct fk_inv_credential *c,
                                  const char *created_at, struct fk_diag *diag); /* FK_E_EXISTS */
    /* The *_many ops write n rows (fk_inv_many_sql) in one statement, all or none, each row
     * with created_at where its own is "" (FK_E_EXISTS: one credential already recorded). */
    enum fk_err (*device_upsert_many)(struct fk_inventory *inv, const struct fk_inv_device *v,
                                      size_t n, const char *created_at, struct fk_diag *diag);
    enum fk_err (*credential_add_many)(struct fk_inventory *inv, const struct fk_inv_credential *v,
                                       size_t n, const char *created_at, struct fk_diag *diag);
    enum fk_err (*credential_list)(struct fk_inventory *inv, const char *device_id,
                                   fk_inv_credential_fn *fn, void *user, struct fk_diag *diag);
    enum fk_err (*credential_set_state)(struct fk_inventory *inv, const char *device_id,
                                        const char *kind, unsigned version, const char *state,
                                        struct fk_diag *diag); /* FK_E_NOTFOUND */

    /* The head (seq, hash); FK_E_NOTFOUND when the log is empty. */
    enum fk_err (*audit_head)(struct fk_inventory *inv, long long *seq, char hash[65],
                              struct fk_diag *diag);
    /* Inserts r[0..n-1] (n <= FK_INV_MANY_MAX) in one statement. The head is not moved here:
     * inventory.c writes it once per transaction, with audit_head_set, before the commit (and
     * before a verify inside the transaction). */
    enum fk_err (*audit_insert_many)(struct fk_inventory *inv, const struct fk_inv_audit_row *r,
                                     size_t n, struct fk_diag *diag);
    /* Sets the head to (seq, hash), creating its row when the log was empty. */
    enum fk_err (*audit_head_set)(struct fk_inventory *inv, long long seq, const char *hash,
                                  struct fk_diag *diag);
    /* Rows with seq > after in seq order; a non-zero fn return stops the walk (FK_OK). */
    enum fk_err (*audit_walk)(struct fk_inventory *inv, long long after, fk_inv_row_fn *fn,
                              void *user, struct fk_diag *diag);
    enum fk_err (*audit_exists)(struct fk_inventory *inv, const char *kind, const char *subject,
                                int *found, struct fk_diag *diag);

    enum fk_err (*presence_get)(struct fk_inventory *inv, const char *id,
                                struct fk_inv_presence *out, struct fk_diag *diag); /* NOTFOUND */
    /* Upsert of p with last_seen (never empty); FK_E_NOTFOUND when the device does not exist. */
    enum fk_err (*presence_set)(struct fk_inventory *inv, const struct fk_inv_presence *p,
                                const char *last_seen, struct fk_diag *diag);

    enum fk_err (*rotation_add)(struct fk_inventory *inv, const char *old_fpr, const char *new_fpr,
                                const uint8_t *der, size_t der_len, const uint8_t *endorsement,
                                const char *started_at, struct fk_diag *diag);
    /* FK_E_NOTFOUND when none; a malformed stored row is FK_E_DB with a message. */
    enum fk_err (*rotation_last)(struct fk_inventory *inv, struct fk_inv_rotation *out,
                                 struct fk_diag *diag);

    /* Rotation plans (fleetkey/inventory.h). updated_at is never empty. */
    enum fk_err (*plan_add)(struct fk_inventory *inv, const char *body, const char *updated_at,
                            long long *id, struct fk_diag *diag);
    /* *body malloc'd; FK_E_NOTFOUND. */
    enum fk_err (*plan_get)(struct fk_inventory *inv, long long id, char **body, size_t *len,
                            long long *version, struct fk_diag *diag);
    enum fk_err (*plan_put)(struct fk_inventory *inv, long long id, const char *body,
                            const char *updated_at, struct fk_diag *diag); /* FK_E_NOTFOUND */
    enum fk_err (*plan_list)(struct fk_inventory *inv, long long after, fk_inv_plan_fn *fn,
                             void *user, struct fk_diag *diag);
};

struct fk_inventory {
    const struct fk_inv_ops *ops;
    void *be;  /* the backend's state */
    int in_tx; /* an explicit or per-call write transaction is open */
    int group; /* a group's transaction is open: each in_tx is a savepoint inside it */
    /* The audit head as this transaction last wrote it: while the writers' lock is held no
     * one else can move it, so appends after the first skip reading it back (one round trip
     * per row on PostgreSQL). Cleared by begin, commit, rollback and any failed append. */
    int head_known;
    int head_dirty; /* head_seq/head_hash not yet written to audit_head: done at commit */
    long long head_seq;
    char head_hash[65];
    /* now(): formatted once per second, not once per row (time() is cheap, strftime not) */
    long long now_sec;
    char now_text[FK_INV_TIME_SIZE];
    void *md;        /* EVP_MD_CTX reused by the audit hash of every append (one thread, see .h) */
    char where[512]; /* the location for messages, password masked */
};

extern const struct fk_inv_ops fk_inv_sqlite_ops;
#ifdef FK_HAVE_PG
extern const struct fk_inv_ops fk_inv_pg_ops;
#endif

/* Schema version 1..N: the shared check of a version read back from a store against this
 * program's. FK_OK, or FK_E_UNSUPPORTED naming both numbers. */
enum fk_err fk_inv_check_version(struct fk_inventory *inv, int version, int newest,
                                 struct fk_diag *diag);

/* The multi-row INSERTs of the *_many ops, the same SQL on both backends: "head (p1, ...,
 * pcols), (...), ... tail" for n rows, placeholders written with mark ('?' SQLite, '$'
 * PostgreSQL) and numbered from 1. Into out (size >= FK_INV_MANY_SQL_SIZE). */
enum fk_inv_many { FK_INV_MANY_DEV, FK_INV_MANY_CRED, FK_INV_MANY_AUDIT, FK_INV_MANY_COUNT };
#define FK_INV_MANY_SQL_SIZE 16384
void fk_inv_many_sql(enum fk_inv_many id, size_t n, char mark, char *out, size_t size);

/* Copies a nullable text column into a fixed buffer ("" for NULL). */
void fk_inv_copy(char *out, size_t size, const char *v);

/* Column i of the current row as text ("" for NULL): how each backend hands a row to the
 * shared readers below, which fill the public structs in the column order of the SELECTs
 * (devices: id, mac, name, state, manifest, manifest_sha256, created_at, provisioned_at;
 * credentials: device_id, kind, version, fingerprint, created_at, expires_at, state;
 * presence: device_id, first_seen, last_seen, peer, firmware_version, credential_versions,
 * posture, ota). */
typedef const char *fk_inv_col_fn(void *row, int i);
void fk_inv_read_device(struct fk_inv_device *d, fk_inv_col_fn *col, void *row);
void fk_inv_read_credential(struct fk_inv_credential *c, fk_inv_col_fn *col, void *row);
void fk_inv_read_presence(struct fk_inv_presence *p, fk_inv_col_fn *col, void *row);

#endif
