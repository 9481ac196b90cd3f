/* fleetkey inventory: the fleet's source of truth, in one SQLite file or in a PostgreSQL
 * database shared by several processes and hosts (the location decides, fk_inventory_open).
 *
 * Tables (docs/provision-keys.md has the full schema):
 *   devices      one row per device_id; a committed row is what makes a minted device
 *                "complete" (provision-keys batch uses it as its commit point)
 *   credentials  per device: kind ("psk", "ota_pubkey", "nvs_keys", ...), version,
 *                fingerprint (fk_fpr, never the secret), created, expires, state
 *   audit        append-only and hash-chained: hash = SHA-256(prev_hash || canonical row)
 *   audit_head   the newest (seq, hash), so that truncating the tail is detected as well
 *
 * A SQLite file is opened in WAL mode with synchronous=FULL (a commit that returned is on
 * disk), foreign keys on and a busy timeout; a PostgreSQL database is used with its defaults
 * (synchronous_commit on). Both are migrated to the newest schema on open (a schema_version
 * table; each migration applied once, under a lock, in a transaction) and hold the same
 * logical schema. Every statement binds its parameters; no value is ever pasted into SQL.
 *
 * Thread safety: one struct fk_inventory must be used by one thread at a time. Several
 * processes may open the same store; writers are serialised by the store (SQLite: BEGIN
 * IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock taken at begin), readers are not
 * blocked. */
#ifndef FLEETKEY_INVENTORY_H
#define FLEETKEY_INVENTORY_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_INVENTORY_SCHEMA_VERSION 7
#define FK_INV_ID_SIZE 32    /* "robot-AABBCCDDEEFF" and other ids, with NUL */
#define FK_INV_TEXT_SIZE 256 /* names, file names */
#define FK_INV_TIME_SIZE 21  /* RFC 3339 UTC "2025-01-15T10:30:00Z", "" when unset */
#define FK_INV_STATE_SIZE 16
#define FK_INV_FPR_SIZE 80 /* "sha256:" + hex digits */

struct fk_inventory; /* opaque */

/* A device row. Strings are NUL-terminated; "" means SQL NULL for the optional ones
 * (name, manifest, manifest_sha256, provisioned_at). state: "minted", "provisioned",
 * "retired". */
struct fk_inv_device {
    char id[FK_INV_ID_SIZE];
    char mac[18]; /* "AA:BB:CC:DD:EE:FF" */
    char name[FK_INV_TEXT_SIZE];
    char state[FK_INV_STATE_SIZE];
    char manifest[FK_INV_TEXT_SIZE]; /* manifest file name, relative to the directory the device
                                        was minted into (where a SQLite inventory sits by
                                        default; a database has no directory) */
    char manifest_sha256[65];        /* SHA-256 of the manifest file as written */
    char created_at[FK_INV_TIME_SIZE];
    char provisioned_at[FK_INV_TIME_SIZE];
};

/* A credential row. state: "active", "staged", "retired", "revoked". */
struct fk_inv_credential {
    char device_id[FK_INV_ID_SIZE];
    char kind[FK_INV_ID_SIZE];
    unsigned version;
    char fingerprint[FK_INV_FPR_SIZE];
    char created_at[FK_INV_TIME_SIZE];
    char expires_at[FK_INV_TIME_SIZE]; /* "" = no expiry */
    char state[FK_INV_STATE_SIZE];
};

/* One audit row as read back (verify, listing). */
struct fk_inv_audit {
    long long seq;
    char at[FK_INV_TIME_SIZE];
    char actor[FK_INV_ID_SIZE];
    char kind[FK_INV_ID_SIZE];
    char subject[FK_INV_TEXT_SIZE];
    char hash[65];
};

/* What fk_inventory_audit_verify() found. */
struct fk_inv_audit_report {
    long long rows;     /* rows checked */
    long long head_seq; /* seq of the newest row, 0 when empty */
    char head_hash[65]; /* its hash (hex), "" when empty; record it elsewhere to detect a
                           wholesale rewrite (see docs/provision-keys.md) */
    long long bad_seq;  /* first row that failed, 0 when none or not row-specific */
    char problem[256];  /* "" when the chain verifies */
};

typedef int fk_inv_device_fn(void *user, const struct fk_inv_device *d);
typedef int fk_inv_credential_fn(void *user, const struct fk_inv_credential *c);
typedef int fk_inv_audit_fn(void *user, const struct fk_inv_audit *a);

/* Opens the inventory at location and migrates it to FK_INVENTORY_SCHEMA_VERSION:
 * - "postgresql://..." or "postgres://..." is a libpq connection URI (the database must
 *   exist; e.g. postgresql://fleet@db.example/fleet, or a unix socket directory as
 *   postgresql:///fleet?host=/run/postgresql);
 * - anything else is the path of a SQLite file, created when missing with mode 0600.
 * *out is owned by the caller (fk_inventory_close). Messages name the location with its
 * password masked (fk_inventory_location_display). FK_OK, FK_E_DB (diag has the store's
 * message, e.g. the connection refused), FK_E_UNSUPPORTED (schema newer than this program, or
 * a PostgreSQL URI in a build without libpq), FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_inventory_open(const char *location, struct fk_inventory **out,
                                            struct fk_diag *diag);
/* 1 when location is a PostgreSQL URI (then it is no file: callers must not stat it, derive
 * directories from it or create it), 0 for a SQLite path. */
int fk_inventory_is_postgresql(const char *location);
/* Copies location into out (always NUL-terminated) with any password masked as "***" (the
 * userinfo password of a URI and a password= parameter): what may be printed or logged. */
void fk_inventory_location_display(const char *location, char *out, size_t size);
/* Rolls back an open transaction and closes. NULL is a no-op. */
void fk_inventory_close(struct fk_inventory *inv);

/* Transactions: begin takes the write lock at once (BEGIN IMMEDIATE) so that the audit
 * head read by later appends cannot change under us. Without an explicit transaction every
 * write function runs in a transaction of its own. FK_OK, FK_E_DB, FK_E_STATE (nested begin,
 * commit without begin). */
FK_MUST_CHECK enum fk_err fk_inventory_begin(struct fk_inventory *inv, struct fk_diag *diag);
FK_MUST_CHECK enum fk_err fk_inventory_commit(struct fk_inventory *inv, struct fk_diag *diag);
/* Rolls back the open transaction, if any. */
void fk_inventory_rollback(struct fk_inventory *inv);

/* Groups: one write transaction (and so one sync to disk) for many writes. Between
 * group_begin and group_commit every transaction, explicit (begin/commit/rollback) or per
 * call, is a savepoint inside the group's: each stays all or nothing, but none is durable
 * before group_commit, so the caller must not tell anyone about a write of the group (answer
 * a device or an operator) before group_commit returned FK_OK. The write lock is held from
 * group_begin to group_commit. *grouped = 1 when the group is open; 0 with FK_OK when the
 * backend has none (PostgreSQL): the writes are then transactions of their own, as without a
 * group, and group_commit must not be called. FK_OK, FK_E_STATE (a transaction or group is
 * open), FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_group_begin(struct fk_inventory *inv, int *grouped,
                                                   struct fk_diag *diag);
/* Commits the group (a transaction left open inside it is rolled back first): its writes are
 * durable once this returns FK_OK; on failure none of them is. FK_OK, FK_E_STATE (no group),
 * FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_group_commit(struct fk_inventory *inv,
                                                    struct fk_diag *diag);
/* Rolls back the open group, if any, with every write in it. */
void fk_inventory_group_rollback(struct fk_inventory *inv);

/* Inserts or replaces the row with d->id (mac must be unique across devices). created_at ""
 * means now. FK_OK, FK_E_ARG (empty id/mac, unknown state), FK_E_DB (e.g. the mac belongs to
 * another device). */
FK_MUST_CHECK enum fk_err fk_inventory_device_upsert(struct fk_inventory *inv,
                                                     const struct fk_inv_device *d,
                                                     struct fk_diag *diag);
/* Bulk writers (provision-keys batch): the same rows as n calls of the single-row functions,
 * all or none, and on SQLite in one statement, so that the per-statement cost (parse-free
 * but still: VM start, constraint and foreign-key bookkeeping, statement journal) is paid
 * once per FK_INV_MANY_MAX devices (32: measured 1,200 instructions per device fewer than 8
 * on provision-keys batch's writer; more gains little). n is 1 to FK_INV_MANY_MAX
 * (credentials: to FK_INV_CRED_MANY_MAX); anything else is FK_E_ARG with nothing written. */
#define FK_INV_MANY_MAX 32
#define FK_INV_CRED_MANY_MAX (4 * FK_INV_MANY_MAX)
/* fk_inventory_device_upsert of v[0..n-1], whose ids must differ. FK_OK, FK_E_ARG (also: an
 * id twice), FK_E_DB (none written). */
FK_MUST_CHECK enum fk_err fk_inventory_device_upsert_many(struct fk_inventory *inv,
                                                          const struct fk_inv_device *v, size_t n,
                                                          struct fk_diag *diag);
/* Reads the row of id into *out. FK_OK, FK_E_NOTFOUND, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_device_get(struct fk_inventory *inv, const char *id,
                                                  struct fk_inv_device *out, struct fk_diag *diag);
/* Calls fn for every device in id order; a non-zero return from fn stops the walk (FK_OK is
 * still returned). FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_device_list(struct fk_inventory *inv, fk_inv_device_fn *fn,
                                                   void *user, struct fk_diag *diag);
/* Sets a device's state (and provisioned_at when state is "provisioned" and at is non-NULL).
 * FK_OK, FK_E_NOTFOUND, FK_E_ARG, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_device_set_state(struct fk_inventory *inv, const char *id,
                                                        const char *state, const char *at,
                                                        struct fk_diag *diag);

/* Adds a credential (device_id must exist; (device_id, kind, version) must be new).
 * created_at "" means now. FK_OK, FK_E_ARG, FK_E_EXISTS, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_credential_add(struct fk_inventory *inv,
                                                      const struct fk_inv_credential *c,
                                                      struct fk_diag *diag);
/* fk_inventory_credential_add of v[0..n-1] (the credentials of up to FK_INV_MANY_MAX
 * devices). FK_OK, FK_E_ARG, FK_E_EXISTS (one of them is already recorded: none added),
 * FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_credential_add_many(struct fk_inventory *inv,
                                                           const struct fk_inv_credential *v,
                                                           size_t n, struct fk_diag *diag);
/* Calls fn for each credential of device_id (all devices when device_id is NULL), ordered
 * by device, kind, version. FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_credential_list(struct fk_inventory *inv,
                                                       const char *device_id,
                                                       fk_inv_credential_fn *fn, void *user,
                                                       struct fk_diag *diag);
/* Changes the state of one credential. FK_OK, FK_E_NOTFOUND, FK_E_ARG, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_credential_set_state(struct fk_inventory *inv,
                                                            const char *device_id, const char *kind,
                                                            unsigned version, const char *state,
                                                            struct fk_diag *diag);

/* Appends one audit row: who (actor), what (kind, e.g. "device.minted"), about what
 * (subject, e.g. a device id) and detail (a JSON object as text; fingerprints only, never a
 * secret). The row's hash chains to the previous row and the head is advanced in the same
 * transaction (written once per transaction, at fk_inventory_commit, however many rows it
 * appended). FK_OK, FK_E_ARG, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_audit_append(struct fk_inventory *inv, const char *actor,
                                                    const char *kind, const char *subject,
                                                    const char *detail_json, struct fk_diag *diag);
/* One audit entry of fk_inventory_audit_append_many; strings borrowed for the call. */
struct fk_inv_audit_entry {
    const char *subject;
    const char *detail_json; /* NULL: "{}" */
};
/* fk_inventory_audit_append(inv, actor, kind, v[i].subject, v[i].detail_json) for i in
 * 0..n-1, in that order (each row chains to the one before). FK_OK, FK_E_ARG, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_audit_append_many(struct fk_inventory *inv,
                                                         const char *actor, const char *kind,
                                                         const struct fk_inv_audit_entry *v,
                                                         size_t n, struct fk_diag *diag);
/* Walks the whole audit log in seq order and checks: seq runs 1, 2, 3... without gaps,
 * each prev_hash equals the previous row's hash, each hash equals SHA-256(prev_hash ||
 * canonical content), and the last row equals audit_head. Detected: an edited, deleted,
 * inserted or reordered row anywhere, a truncated tail, a head that does not match. Not
 * detected: someone with write access who recomputes every hash from some row on and the
 * head too (compare rep->head_hash with a copy kept elsewhere for that).
 * FK_OK (chain intact), FK_E_VERIFY (rep->problem and rep->bad_seq say what), FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_audit_verify(struct fk_inventory *inv,
                                                    struct fk_inv_audit_report *rep,
                                                    struct fk_diag *diag);
/* Calls fn for each audit row in seq order. FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_audit_list(struct fk_inventory *inv, fk_inv_audit_fn *fn,
                                                  void *user, struct fk_diag *diag);
/* *found = 1 when some audit row has this kind and subject. FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_audit_exists(struct fk_inventory *inv, const char *kind,
                                                    const char *subject, int *found,
                                                    struct fk_diag *diag);
/* The same for the rows with seq > after only (what another process appended since a reader
 * last looked; seq comes from the rows it saw, or 0). FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_audit_list_after(struct fk_inventory *inv, long long after,
                                                        fk_inv_audit_fn *fn, void *user,
                                                        struct fk_diag *diag);

/* ---- presence: what fleetkey-server records when a device connects ---------------------- */
#define FK_INV_PEER_SIZE 64   /* "[2001:db8::1]:65535" */
#define FK_INV_JSON_SIZE 4096 /* posture / credential versions, compact JSON text */

/* One device's presence row. Strings are NUL-terminated; "" is SQL NULL. */
struct fk_inv_presence {
    char device_id[FK_INV_ID_SIZE];
    char first_seen[FK_INV_TIME_SIZE]; /* set on the first call only */
    char last_seen[FK_INV_TIME_SIZE];  /* "" in a call means now */
    char peer[FK_INV_PEER_SIZE];       /* address the device came from */
    char firmware_version[FK_INV_TEXT_SIZE];
    char credential_versions[FK_INV_JSON_SIZE]; /* JSON object as text */
    char posture[FK_INV_JSON_SIZE];             /* JSON object as text, as the device sent it */
    char ota[FK_INV_JSON_SIZE]; /* hello's "ota" object as compact JSON text (running slot,
                                   state, version, trusted OTA key fingerprints); "" none */
};

/* Records that a device connected: inserts or updates its presence row with p's last_seen
 * (or now), peer, firmware version, credential versions, posture and ota; first_seen is set only
 * by the first call. *first (may be NULL) is set to 1 when the device had no presence row,
 * *posture_changed (may be NULL) to 1 when it had one with a different posture text. The
 * device must exist. Runs in its own transaction unless one is open. Borrows p for the call.
 * FK_OK, FK_E_ARG (empty id), FK_E_NOTFOUND (no such device), FK_E_DB, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_inventory_device_seen(struct fk_inventory *inv,
                                                   const struct fk_inv_presence *p, int *first,
                                                   int *posture_changed, struct fk_diag *diag);
/* Reads a device's presence row into *out. FK_OK, FK_E_NOTFOUND (never seen), FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_presence_get(struct fk_inventory *inv, const char *id,
                                                    struct fk_inv_presence *out,
                                                    struct fk_diag *diag);

/* ---- OTA signing-key rotations (written by fleetkey/rotation.h's start) --------------- */
#define FK_INV_DER_MAX 1024    /* a DER SubjectPublicKeyInfo (RSA-3072: 422 bytes) */
#define FK_INV_ENDORSE_LEN 1216 /* one Secure Boot V2 signature block */

/* One recorded rotation: the two key fingerprints and the new public key (public material,
 * kept so fleetkey-server can deliver it to the devices). */
struct fk_inv_rotation {
    long long seq; /* 1, 2, ...: later rotations have higher numbers */
    char old_fpr[FK_INV_FPR_SIZE];
    char new_fpr[FK_INV_FPR_SIZE];
    uint8_t new_der[FK_INV_DER_MAX];
    size_t new_der_len;
    uint8_t endorsement[FK_INV_ENDORSE_LEN]; /* the old key's signature block over the new key */
    char started_at[FK_INV_TIME_SIZE];
};

/* Records a rotation (old_fpr -> new_fpr) with the new key's DER and the old key's
 * endorsement of it (FK_INV_ENDORSE_LEN bytes; checked by the caller); the same pair again is
 * a no-op (the first record stays). Runs in its own transaction unless one is open.
 * FK_OK, FK_E_ARG (empty fingerprint, der empty or longer than FK_INV_DER_MAX), FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_rotation_add(struct fk_inventory *inv, const char *old_fpr,
                                                    const char *new_fpr, const uint8_t *der,
                                                    size_t der_len, const uint8_t *endorsement,
                                                    struct fk_diag *diag);
/* The rotation recorded last. FK_OK, FK_E_NOTFOUND (none ever), FK_E_DB (also: a row without
 * a well-formed key or endorsement, e.g. edited by hand). */
FK_MUST_CHECK enum fk_err fk_inventory_rotation_last(struct fk_inventory *inv,
                                                     struct fk_inv_rotation *out,
                                                     struct fk_diag *diag);


/* ---- credential rotation plans shared by several fleetkey-server instances -------------- */
/* A plan row: id allocated by the store (1, 2, ...; unique whichever instance adds it), body
 * (the server's plan JSON, opaque here; it holds staged PSKs, so the database is as secret as
 * a rot_dir) and version (1 when added, + 1 on every put: readers adopt a body only when the
 * version moved). Bodies are at most FK_INV_PLAN_MAX bytes. */
#define FK_INV_PLAN_MAX (256u << 20)
/* Borrows body (len bytes, NUL-terminated) for the call; non-zero stops the walk. */
typedef int fk_inv_plan_fn(void *user, long long id, long long version, const char *body,
                           size_t len);

/* Adds a plan with body; *id gets its number. Runs in its own transaction unless one is open
 * (open one with fk_inventory_begin to add and then put the body that names the id). FK_OK,
 * FK_E_ARG (empty or too long body), FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_plan_add(struct fk_inventory *inv, const char *body,
                                                size_t len, long long *id, struct fk_diag *diag);
/* Reads plan id: *body malloc'd and NUL-terminated (the caller wipes and frees it), *len, and
 * *version (may be NULL). Read inside fk_inventory_begin .. commit it is the newest committed
 * body and no other writer can change it before the commit (the writers' lock): that is how
 * several instances merge their progress into one row. FK_OK, FK_E_NOTFOUND, FK_E_DB
 * (also: a stored body that is empty or too long). */
FK_MUST_CHECK enum fk_err fk_inventory_plan_get(struct fk_inventory *inv, long long id,
                                                char **body, size_t *len, long long *version,
                                                struct fk_diag *diag);
/* Replaces the body of plan id and advances its version. Runs in its own transaction unless
 * one is open. FK_OK, FK_E_ARG, FK_E_NOTFOUND, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_plan_put(struct fk_inventory *inv, long long id,
                                                const char *body, size_t len,
                                                struct fk_diag *diag);
/* Calls fn for each plan with id > after, in id order. FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_inventory_plan_list(struct fk_inventory *inv, long long after,
                                                 fk_inv_plan_fn *fn, void *user,
                                                 struct fk_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
