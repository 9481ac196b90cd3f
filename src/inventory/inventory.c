/* Inventory: the public API and what every backend shares.
 *
 * The location picks the backend: "postgresql://" or "postgres://" (a libpq URI) opens
 * PostgreSQL (inventory_pg.c), anything else is a SQLite file (inventory_sqlite.c). Both hold
 * the same logical schema at the same version and behave alike: a write transaction excludes
 * every other writer of the store from its first statement on (SQLite BEGIN IMMEDIATE,
 * PostgreSQL an advisory lock taken by BEGIN), so the audit head an append reads cannot
 * change before it commits, whichever process or host the other writers run in.
 *
 * The audit log is hash-chained here, above the backends: row n stores prev_hash = hash(n-1)
 * (32 zero bytes for row 1) and hash = SHA-256(prev_hash || canonical(n)), where canonical()
 * is a domain tag, the seq as 8 big-endian bytes and each text field length-prefixed (4 bytes
 * big-endian), so no two different rows serialise alike. Because seq is hashed, moving,
 * inserting or deleting a row breaks the chain at that point. audit_head keeps the newest
 * (seq, hash) and is updated in the same transaction as the append, which makes a cut-off
 * tail visible too. A transaction holds the writers' lock, so the head it read cannot move
 * under it: it is read at the first append and written once, before the commit (a batch
 * chunk appends thousands of rows). */
#include "inventory_internal.h"

#include <openssl/evp.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUDIT_TAG "fleetkey-audit-v1"

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

int fk_inventory_is_postgresql(const char *location) {
    return location != NULL && (strncmp(location, "postgresql://", 13) == 0 ||
                                strncmp(location, "postgres://", 11) == 0);
}

/* Appends n bytes of src to out (capacity size, used *len), always NUL-terminated. */
static void put(char *out, size_t size, size_t *len, const char *src, size_t n) {
    if (n > size - 1 - *len) {
        n = size - 1 - *len;
    }
    memcpy(out + *len, src, n);
    *len += n;
    out[*len] = '\0';
}

/* put() of [p, end) with the value of every "password=" (up to the next '&') as "***". */
static void put_masked(char *out, size_t size, size_t *len, const char *p, const char *end) {
    while (p < end) {
        const char *q = p;
        while (end - q >= 9 && memcmp(q, "password=", 9) != 0) {
            q++;
        }
        if (end - q < 9) {
            put(out, size, len, p, (size_t)(end - p));
            return;
        }
        put(out, size, len, p, (size_t)(q + 9 - p));
        put(out, size, len, "***", 3);
        for (p = q + 9; p < end && *p != '&'; p++) {
        }
    }
}

void fk_inventory_location_display(const char *location, char *out, size_t size) {
    if (size == 0) {
        return;
    }
    const char *s = location != NULL ? location : "";
    size_t len = 0;
    out[0] = '\0';
    if (!fk_inventory_is_postgresql(s)) {
        put(out, size, &len, s, strlen(s));
        return;
    }
    /* scheme://[user[:password]@]host[/db][?k=v&...]: the userinfo ends at the last '@'
     * before the query (not before the path: a password with an unescaped '/' is still
     * masked; a ':' in the rest is masked too, which hides more, never less); the query may
     * carry password=. Masked while copying, so a cut at size never leaves part of a
     * password in view. */
    const char *auth = strstr(s, "://") + 3;
    size_t hostpart = strcspn(auth, "?");
    const char *at = NULL;
    for (const char *p = auth; p < auth + hostpart; p++) {
        if (*p == '@') {
            at = p;
        }
    }
    const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    const char *end = s + strlen(s);
    if (colon != NULL) {
        put_masked(out, size, &len, s, colon + 1);
        put(out, size, &len, "***", 3);
        put_masked(out, size, &len, at, end);
    } else {
        put_masked(out, size, &len, s, end);
    }
}

enum fk_err fk_inventory_open(const char *location, struct fk_inventory **out,
                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    *out = NULL;
    struct fk_inventory *inv = calloc(1, sizeof *inv);
    FK_ENSURE(inv != NULL, FK_E_NOMEM);
    FK_ENSURE(location != NULL && location[0] != '\0' && strlen(location) < 4096,
              fk_diag_set(diag, FK_E_ARG, "inventory location missing or too long"));
    fk_inventory_location_display(location, inv->where, sizeof inv->where);
    if (fk_inventory_is_postgresql(location)) {
#ifdef FK_HAVE_PG
        inv->ops = &fk_inv_pg_ops;
#else
        rc = fk_diag_at(diag, FK_E_UNSUPPORTED, inv->where, 0,
                        "this build has no PostgreSQL support (install libpq-dev and rebuild)");
        goto out;
#endif
    } else {
        inv->ops = &fk_inv_sqlite_ops;
    }
    FK_GUARD(inv->ops->open(inv, location, diag));
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
    fk_inventory_rollback(inv);
    fk_inventory_group_rollback(inv);
    if (inv->ops != NULL) {
        inv->ops->close(inv);
    }
    EVP_MD_CTX_free(inv->md);
    free(inv);
}

enum fk_err fk_inventory_begin(struct fk_inventory *inv, struct fk_diag *diag) {
    if (inv->in_tx) {
        return fk_diag_set(diag, FK_E_STATE, "a transaction is already open");
    }
    enum fk_err rc =
        inv->group ? inv->ops->savepoint(inv, diag) : inv->ops->begin(inv, 1, diag);
    inv->in_tx = rc == FK_OK;
    inv->head_known = 0;
    inv->head_dirty = 0;
    return rc;
}

/* Writes the head the appends of this transaction advanced, if any. */
static enum fk_err head_flush(struct fk_inventory *inv, struct fk_diag *diag) {
    if (!inv->head_dirty) {
        return FK_OK;
    }
    enum fk_err rc = inv->ops->audit_head_set(inv, inv->head_seq, inv->head_hash, diag);
    inv->head_dirty = rc != FK_OK;
    return rc;
}

enum fk_err fk_inventory_commit(struct fk_inventory *inv, struct fk_diag *diag) {
    if (!inv->in_tx) {
        return fk_diag_set(diag, FK_E_STATE, "no transaction is open");
    }
    enum fk_err rc = head_flush(inv, diag);
    if (rc != FK_OK) {
        fk_inventory_rollback(inv); /* rows without their head must not commit */
        return rc;
    }
    inv->in_tx = 0;
    inv->head_known = 0;
    if (inv->group) {
        rc = inv->ops->release(inv, diag);
        if (rc != FK_OK) {
            inv->ops->rollback_to(inv);
        }
        return rc;
    }
    return inv->ops->commit(inv, diag); /* rolls back itself when it fails */
}

void fk_inventory_rollback(struct fk_inventory *inv) {
    if (inv != NULL && inv->in_tx) {
        if (inv->group) {
            inv->ops->rollback_to(inv);
        } else {
            inv->ops->rollback(inv);
        }
        inv->in_tx = 0;
        inv->head_known = 0;
        inv->head_dirty = 0;
    }
}

enum fk_err fk_inventory_group_begin(struct fk_inventory *inv, int *grouped,
                                     struct fk_diag *diag) {
    *grouped = 0;
    if (inv->in_tx || inv->group) {
        return fk_diag_set(diag, FK_E_STATE, "a transaction is already open");
    }
    if (inv->ops->savepoint == NULL) {
        return FK_OK; /* no groups here: every write stays a transaction of its own */
    }
    enum fk_err rc = inv->ops->begin(inv, 1, diag);
    inv->group = rc == FK_OK;
    *grouped = inv->group;
    inv->head_known = 0;
    inv->head_dirty = 0;
    return rc;
}

enum fk_err fk_inventory_group_commit(struct fk_inventory *inv, struct fk_diag *diag) {
    if (!inv->group) {
        return fk_diag_set(diag, FK_E_STATE, "no group is open");
    }
    fk_inventory_rollback(inv); /* a transaction left open inside is not part of the group */
    inv->group = 0;
    inv->head_known = 0;
    return inv->ops->commit(inv, diag); /* rolls back itself when it fails */
}

void fk_inventory_group_rollback(struct fk_inventory *inv) {
    if (inv != NULL && inv->group) {
        fk_inventory_rollback(inv);
        inv->ops->rollback(inv);
        inv->group = 0;
        inv->head_known = 0;
        inv->head_dirty = 0;
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

static void now_rfc3339(struct fk_inventory *inv, char out[FK_INV_TIME_SIZE]) {
    long long t = (long long)time(NULL);
    if (t != inv->now_sec || inv->now_text[0] == '\0') {
        fk_time_rfc3339(t, inv->now_text);
        inv->now_sec = t;
    }
    memcpy(out, inv->now_text, FK_INV_TIME_SIZE);
}

static int valid_device_state(const char *s) {
    return strcmp(s, "minted") == 0 || strcmp(s, "provisioned") == 0 || strcmp(s, "retired") == 0;
}

static int valid_cred_state(const char *s) {
    return strcmp(s, "active") == 0 || strcmp(s, "staged") == 0 || strcmp(s, "retired") == 0 ||
           strcmp(s, "revoked") == 0;
}

static enum fk_err device_check(const struct fk_inv_device *d, struct fk_diag *diag) {
    if (d->id[0] == '\0' || d->mac[0] == '\0') {
        return fk_diag_set(diag, FK_E_ARG, "device id and mac are required");
    }
    if (!valid_device_state(d->state)) {
        return fk_diag_set(diag, FK_E_ARG, "unknown device state '%s'", d->state);
    }
    return FK_OK;
}

enum fk_err fk_inventory_device_upsert(struct fk_inventory *inv, const struct fk_inv_device *d,
                                       struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char now[FK_INV_TIME_SIZE];
    FK_GUARD(device_check(d, diag));
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->device_upsert(inv, d, d->created_at[0] != '\0' ? d->created_at : now, diag);
out:
    return auto_end(inv, own, rc, diag);
}

/* FK_E_ARG unless 1 <= n <= max. */
static enum fk_err many_check(size_t n, size_t max, struct fk_diag *diag) {
    if (n < 1 || n > max) {
        return fk_diag_set(diag, FK_E_ARG, "%zu rows in one call (1..%zu expected)", n, max);
    }
    return FK_OK;
}

enum fk_err fk_inventory_device_upsert_many(struct fk_inventory *inv, const struct fk_inv_device *v,
                                            size_t n, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char now[FK_INV_TIME_SIZE];
    FK_GUARD(many_check(n, FK_INV_MANY_MAX, diag));
    for (size_t i = 0; i < n; i++) {
        FK_GUARD(device_check(&v[i], diag));
        /* One statement may not upsert a row twice (PostgreSQL refuses it; SQLite would
         * apply both): the same answer on both backends. */
        for (size_t j = 0; j < i; j++) {
            FK_ENSURE(strcmp(v[i].id, v[j].id) != 0,
                      fk_diag_set(diag, FK_E_ARG, "device %s twice in one call", v[i].id));
        }
    }
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->device_upsert_many(inv, v, n, now, diag);
out:
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_device_get(struct fk_inventory *inv, const char *id,
                                    struct fk_inv_device *out, struct fk_diag *diag) {
    enum fk_err rc = inv->ops->device_get(inv, id, out, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "no device %s", id);
    }
    return rc;
}

enum fk_err fk_inventory_device_list(struct fk_inventory *inv, fk_inv_device_fn *fn, void *user,
                                     struct fk_diag *diag) {
    return inv->ops->device_list(inv, fn, user, diag);
}

enum fk_err fk_inventory_device_set_state(struct fk_inventory *inv, const char *id,
                                          const char *state, const char *at, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    FK_ENSURE(valid_device_state(state),
              fk_diag_set(diag, FK_E_ARG, "unknown device state '%s'", state));
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->device_set_state(inv, id, state, at, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "no device %s", id);
    }
out:
    return auto_end(inv, own, rc, diag);
}

static enum fk_err credential_check(const struct fk_inv_credential *c, struct fk_diag *diag) {
    if (c->device_id[0] == '\0' || c->kind[0] == '\0' || c->fingerprint[0] == '\0' ||
        c->version < 1) {
        return fk_diag_set(diag, FK_E_ARG, "credential needs device, kind, version, fingerprint");
    }
    if (!valid_cred_state(c->state)) {
        return fk_diag_set(diag, FK_E_ARG, "unknown credential state '%s'", c->state);
    }
    return FK_OK;
}

enum fk_err fk_inventory_credential_add(struct fk_inventory *inv, const struct fk_inv_credential *c,
                                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char now[FK_INV_TIME_SIZE];
    FK_GUARD(credential_check(c, diag));
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->credential_add(inv, c, c->created_at[0] != '\0' ? c->created_at : now, diag);
    if (rc == FK_E_EXISTS) {
        rc = fk_diag_set(diag, FK_E_EXISTS, "%s %s version %u already recorded", c->device_id,
                         c->kind, c->version);
    }
out:
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_credential_add_many(struct fk_inventory *inv,
                                             const struct fk_inv_credential *v, size_t n,
                                             struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char now[FK_INV_TIME_SIZE];
    FK_GUARD(many_check(n, FK_INV_CRED_MANY_MAX, diag));
    for (size_t i = 0; i < n; i++) {
        FK_GUARD(credential_check(&v[i], diag));
    }
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->credential_add_many(inv, v, n, now, diag);
    if (rc == FK_E_EXISTS) {
        rc = fk_diag_set(diag, FK_E_EXISTS,
                         "%s: one of %zu credentials (%s version %u, ...) "
                         "already recorded",
                         v[0].device_id, n, v[0].kind, v[0].version);
    }
out:
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_credential_list(struct fk_inventory *inv, const char *device_id,
                                         fk_inv_credential_fn *fn, void *user,
                                         struct fk_diag *diag) {
    return inv->ops->credential_list(inv, device_id, fn, user, diag);
}

enum fk_err fk_inventory_credential_set_state(struct fk_inventory *inv, const char *device_id,
                                              const char *kind, unsigned version, const char *state,
                                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    FK_ENSURE(valid_cred_state(state),
              fk_diag_set(diag, FK_E_ARG, "unknown credential state '%s'", state));
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->credential_set_state(inv, device_id, kind, version, state, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "no credential %s %s version %u", device_id, kind,
                         version);
    }
out:
    return auto_end(inv, own, rc, diag);
}

/* ---- audit ------------------------------------------------------------------------- */

/* The canonical row goes through a small buffer, so that a usual row (a batch device's is
 * about 700 bytes) costs one EVP_DigestUpdate instead of 13: each is a provider dispatch,
 * and the single writer of provision-keys batch hashes one row per device (issue 19). */
struct feed {
    EVP_MD_CTX *md;
    size_t n;
    int ok;
    uint8_t buf[1024];
};

static void feed(struct feed *f, const void *p, size_t n) {
    if (n > sizeof f->buf - f->n) {
        f->ok &= EVP_DigestUpdate(f->md, f->buf, f->n) == 1;
        f->n = 0;
        if (n > sizeof f->buf) {
            f->ok &= EVP_DigestUpdate(f->md, p, n) == 1;
            return;
        }
    }
    memcpy(f->buf + f->n, p, n);
    f->n += n;
}

static void feed_len_text(struct feed *f, const char *t) {
    size_t n = strlen(t);
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    feed(f, len, sizeof len);
    feed(f, t, n);
}

/* hash = SHA-256(prev || canonical row), both 32 bytes; out may be prev. md: a context to
 * (re)use, or NULL for one of its own; digest: SHA-256 fetched once. */
static enum fk_err row_hash_bin(EVP_MD_CTX *reuse, const uint8_t prev[32], long long seq,
                                const char *at, const char *actor, const char *kind,
                                const char *subject, const char *detail, uint8_t out[32]) {
    enum fk_err rc = FK_E_INTERNAL;
    struct feed fd; /* buf is not cleared: only its first n bytes are ever read */
    struct feed *f = &fd;
    EVP_MD_CTX *md = reuse != NULL ? reuse : EVP_MD_CTX_new();
    FK_ENSURE(md != NULL, FK_E_NOMEM);
    f->md = md;
    f->n = 0;
    f->ok = 1;
    uint8_t seq_be[8];
    for (int i = 0; i < 8; i++) {
        seq_be[i] = (uint8_t)((unsigned long long)seq >> (56 - 8 * i));
    }
    FK_GUARD_OSSL(EVP_DigestInit_ex(md, fk_sha256_md(), NULL), FK_E_CRYPTO);
    feed(f, prev, 32);
    feed(f, AUDIT_TAG, sizeof AUDIT_TAG);
    feed(f, seq_be, sizeof seq_be);
    feed_len_text(f, at);
    feed_len_text(f, actor);
    feed_len_text(f, kind);
    feed_len_text(f, subject);
    feed_len_text(f, detail);
    FK_ENSURE(f->ok && EVP_DigestUpdate(md, f->buf, f->n) == 1, FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_DigestFinal_ex(md, out, NULL), FK_E_CRYPTO);
    rc = FK_OK;
out:
    if (md != reuse) {
        EVP_MD_CTX_free(md);
    }
    return rc;
}

/* A stored hash (64 hex digits) as 32 bytes; FK_E_VERIFY when it is not one. */
static enum fk_err hash_decode(const char *hex, uint8_t out[32]) {
    size_t n = 0;
    if (strlen(hex) != 64 || fk_hex_decode(hex, 64, out, 32, &n, NULL) != FK_OK || n != 32) {
        return FK_E_VERIFY;
    }
    return FK_OK;
}

/* row_hash_bin with the hashes as 64 lower-case hex digits (how they are stored). */
static enum fk_err row_hash(EVP_MD_CTX *reuse, const char *prev_hex, long long seq, const char *at,
                            const char *actor, const char *kind, const char *subject,
                            const char *detail, char out[65]) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t prev[32];
    uint8_t digest[32];
    FK_GUARD(hash_decode(prev_hex, prev));
    FK_GUARD(row_hash_bin(reuse, prev, seq, at, actor, kind, subject, detail, digest));
    FK_GUARD(fk_hex_encode(digest, sizeof digest, out, 65));
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_inventory_audit_append(struct fk_inventory *inv, const char *actor, const char *kind,
                                      const char *subject, const char *detail_json,
                                      struct fk_diag *diag) {
    struct fk_inv_audit_entry e = {subject, detail_json};
    return fk_inventory_audit_append_many(inv, actor, kind, &e, 1, diag);
}

enum fk_err fk_inventory_audit_append_many(struct fk_inventory *inv, const char *actor,
                                           const char *kind, const struct fk_inv_audit_entry *v,
                                           size_t n, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char at[FK_INV_TIME_SIZE];
    char hash[FK_INV_MANY_MAX + 1][65]; /* [0]: the head before, [i + 1]: row i's */
    struct fk_inv_audit_row r[FK_INV_MANY_MAX];
    uint8_t prev[32];
    long long seq = 0;
    FK_GUARD(many_check(n, FK_INV_MANY_MAX, diag));
    FK_ENSURE(actor != NULL && actor[0] != '\0' && kind != NULL && kind[0] != '\0',
              fk_diag_set(diag, FK_E_ARG, "audit entry needs actor, kind and subject"));
    for (size_t i = 0; i < n; i++) {
        FK_ENSURE(v[i].subject != NULL,
                  fk_diag_set(diag, FK_E_ARG, "audit entry needs actor, kind and subject"));
    }
    now_rfc3339(inv, at);
    FK_GUARD(auto_begin(inv, &own, diag));
    /* Inside the write transaction: no other writer can move the head until we commit. */
    if (inv->head_known) {
        seq = inv->head_seq;
        memcpy(hash[0], inv->head_hash, sizeof hash[0]);
        rc = FK_OK;
    } else {
        rc = inv->ops->audit_head(inv, &seq, hash[0], diag);
    }
    if (rc == FK_E_NOTFOUND) {
        seq = 0;
        memcpy(hash[0], zero_hash, sizeof hash[0]);
    } else if (rc != FK_OK) {
        goto out;
    }
    if (inv->md == NULL) {
        inv->md = EVP_MD_CTX_new();
    }
    FK_ENSURE(inv->md != NULL, FK_E_NOMEM);
    /* The chain runs in binary: the head is decoded once per call, not once per row. */
    FK_ENSURE(hash_decode(hash[0], prev) == FK_OK,
              fk_diag_at(diag, FK_E_VERIFY, inv->where, 0, "audit head hash is malformed"));
    for (size_t i = 0; i < n; i++) {
        const char *detail = v[i].detail_json != NULL ? v[i].detail_json : "{}";
        r[i] = (struct fk_inv_audit_row){seq + 1 + (long long)i, at,      actor,      kind,
                                         v[i].subject,          detail, hash[i], hash[i + 1]};
        FK_GUARD(
            row_hash_bin(inv->md, prev, r[i].seq, at, actor, kind, v[i].subject, detail, prev));
        FK_GUARD(fk_hex_encode(prev, sizeof prev, hash[i + 1], sizeof hash[i + 1]));
    }
    FK_GUARD(inv->ops->audit_insert_many(inv, r, n, diag));
    /* A failed insert changed nothing: the cached head (if any) stays what it was. */
    inv->head_known = 1;
    inv->head_dirty = 1;
    inv->head_seq = seq + (long long)n;
    memcpy(inv->head_hash, hash[n], sizeof inv->head_hash);
out:
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

struct verify_walk {
    struct fk_inv_audit_report *rep;
    EVP_MD_CTX *md;
    char prev[65];
    long long want;
    enum fk_err rc;
};

static int verify_row(void *user, const struct fk_inv_audit_row *a) {
    struct verify_walk *w = user;
    struct fk_inv_audit_report *rep = w->rep;
    char expect[65];
    rep->rows++;
    if (a->seq != w->want) {
        w->rc = verify_fail(rep, w->want,
                            a->seq < w->want ? "row %lld out of order (found seq %lld)"
                                             : "row %lld missing (next is seq %lld)",
                            w->want, a->seq);
        return 1;
    }
    if (strcmp(a->prev_hash, w->prev) != 0) {
        w->rc = verify_fail(rep, a->seq, "row %lld: prev_hash does not match row %lld", a->seq,
                            a->seq - 1);
        return 1;
    }
    if (row_hash(w->md, w->prev, a->seq, a->at, a->actor, a->kind, a->subject, a->detail, expect) !=
            FK_OK ||
        strcmp(expect, a->hash) != 0) {
        w->rc = verify_fail(rep, a->seq, "row %lld: content does not match its hash", a->seq);
        return 1;
    }
    memcpy(w->prev, expect, sizeof w->prev);
    rep->head_seq = a->seq;
    w->want++;
    return 0;
}

enum fk_err fk_inventory_audit_verify(struct fk_inventory *inv, struct fk_inv_audit_report *rep,
                                      struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct verify_walk w = {rep, inv->md, "", 1, FK_OK};
    long long head_seq = 0;
    char head_hash[65] = "";
    memset(rep, 0, sizeof *rep);
    memcpy(w.prev, zero_hash, sizeof w.prev);
    int own_read = !inv->in_tx && !inv->group;
    /* Read everything in one snapshot: a concurrent append must not look like a broken
     * tail. Inside our own write transaction, the head our appends moved is written first. */
    if (own_read) {
        FK_GUARD(inv->ops->begin(inv, 0, diag));
    } else {
        FK_GUARD(head_flush(inv, diag));
    }
    FK_GUARD(inv->ops->audit_walk(inv, 0, verify_row, &w, diag));
    FK_GUARD(w.rc);
    rc = inv->ops->audit_head(inv, &head_seq, head_hash, diag);
    FK_ENSURE(rc == FK_OK || rc == FK_E_NOTFOUND, rc);
    if (head_seq != rep->head_seq) {
        rc = verify_fail(rep, rep->head_seq + 1,
                         "log ends at row %lld but the head says %lld (tail cut off or "
                         "head edited)",
                         rep->head_seq, head_seq);
        goto out;
    }
    if (head_seq > 0 && strcmp(head_hash, w.prev) != 0) {
        rc = verify_fail(rep, head_seq, "row %lld: hash differs from the recorded head", head_seq);
        goto out;
    }
    snprintf(rep->head_hash, sizeof rep->head_hash, "%s", head_seq > 0 ? w.prev : "");
    rc = FK_OK;
out:
    if (own_read) {
        inv->ops->rollback(inv); /* read-only: nothing to keep */
    }
    if (rc == FK_E_VERIFY) {
        fk_diag_at(diag, FK_E_VERIFY, inv->where, 0, "audit log: %s", rep->problem);
    }
    return rc;
}

enum fk_err fk_inventory_audit_list(struct fk_inventory *inv, fk_inv_audit_fn *fn, void *user,
                                    struct fk_diag *diag) {
    return fk_inventory_audit_list_after(inv, 0, fn, user, diag);
}

enum fk_err fk_inventory_audit_exists(struct fk_inventory *inv, const char *kind,
                                      const char *subject, int *found, struct fk_diag *diag) {
    *found = 0;
    return inv->ops->audit_exists(inv, kind, subject, found, diag);
}

struct list_walk {
    fk_inv_audit_fn *fn;
    void *user;
};

static int list_row(void *user, const struct fk_inv_audit_row *r) {
    struct list_walk *w = user;
    struct fk_inv_audit a;
    memset(&a, 0, sizeof a);
    a.seq = r->seq;
    fk_inv_copy(a.at, sizeof a.at, r->at);
    fk_inv_copy(a.actor, sizeof a.actor, r->actor);
    fk_inv_copy(a.kind, sizeof a.kind, r->kind);
    fk_inv_copy(a.subject, sizeof a.subject, r->subject);
    fk_inv_copy(a.hash, sizeof a.hash, r->hash);
    return w->fn(w->user, &a);
}

enum fk_err fk_inventory_audit_list_after(struct fk_inventory *inv, long long after,
                                          fk_inv_audit_fn *fn, void *user, struct fk_diag *diag) {
    struct list_walk w = {fn, user};
    return inv->ops->audit_walk(inv, after, list_row, &w, diag);
}

/* ---- presence ---------------------------------------------------------------------- */

enum fk_err fk_inventory_presence_get(struct fk_inventory *inv, const char *id,
                                      struct fk_inv_presence *out, struct fk_diag *diag) {
    enum fk_err rc = inv->ops->presence_get(inv, id, out, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "%s never seen", id);
    }
    return rc;
}

enum fk_err fk_inventory_device_seen(struct fk_inventory *inv, const struct fk_inv_presence *p,
                                     int *first, int *posture_changed, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char now[FK_INV_TIME_SIZE];
    struct fk_inv_presence *old = NULL;
    int was_seen = 0;
    int changed = 0;
    FK_ENSURE(p->device_id[0] != '\0', fk_diag_set(diag, FK_E_ARG, "device id is required"));
    old = malloc(sizeof *old);
    FK_ENSURE(old != NULL, FK_E_NOMEM);
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->presence_get(inv, p->device_id, old, diag);
    FK_ENSURE(rc == FK_OK || rc == FK_E_NOTFOUND, rc);
    was_seen = rc == FK_OK;
    changed = was_seen && strcmp(old->posture, p->posture) != 0;
    rc = inv->ops->presence_set(inv, p, p->last_seen[0] != '\0' ? p->last_seen : now, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "no device %s", p->device_id);
    }
out:
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
    char now[FK_INV_TIME_SIZE];
    FK_ENSURE(old_fpr[0] != '\0' && new_fpr[0] != '\0',
              fk_diag_set(diag, FK_E_ARG, "rotation: both key fingerprints are required"));
    FK_ENSURE(der != NULL && der_len > 0 && der_len <= FK_INV_DER_MAX,
              fk_diag_set(diag, FK_E_ARG, "rotation: public key of %zu bytes (1..%u expected)",
                          der_len, (unsigned)FK_INV_DER_MAX));
    FK_ENSURE(endorsement != NULL, fk_diag_set(diag, FK_E_ARG, "rotation: no endorsement"));
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = inv->ops->rotation_add(inv, old_fpr, new_fpr, der, der_len, endorsement, now, diag);
out:
    return auto_end(inv, own, rc, diag);
}

enum fk_err fk_inventory_rotation_last(struct fk_inventory *inv, struct fk_inv_rotation *out,
                                       struct fk_diag *diag) {
    memset(out, 0, sizeof *out);
    enum fk_err rc = inv->ops->rotation_last(inv, out, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "no OTA key rotation recorded");
    }
    return rc;
}

/* ---- rotation plans ------------------------------------------------------------------------ */

static enum fk_err plan_body_ok(const char *body, size_t len, struct fk_diag *diag) {
    if (body == NULL || len == 0 || len > FK_INV_PLAN_MAX || memchr(body, '\0', len) != NULL) {
        return fk_diag_set(diag, FK_E_ARG, "plan: body of %zu bytes (1..%u, no NUL expected)", len,
                           FK_INV_PLAN_MAX);
    }
    return FK_OK;
}

/* The backends bind the body as a C string: a copy ends it at len. */
static char *plan_text(const char *body, size_t len) {
    char *t = malloc(len + 1);
    if (t != NULL) {
        memcpy(t, body, len);
        t[len] = '\0';
    }
    return t;
}

/* Adds (*id == 0 on entry: *id gets the new row) or replaces row *id with body. */
static enum fk_err plan_write(struct fk_inventory *inv, const char *body, size_t len, long long *id,
                              int add, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int own = 0;
    char now[FK_INV_TIME_SIZE];
    char *t = NULL;
    FK_GUARD(plan_body_ok(body, len, diag));
    FK_ENSURE((t = plan_text(body, len)) != NULL, fk_diag_set(diag, FK_E_NOMEM, "plan: memory"));
    now_rfc3339(inv, now);
    FK_GUARD(auto_begin(inv, &own, diag));
    rc = add ? inv->ops->plan_add(inv, t, now, id, diag)
             : inv->ops->plan_put(inv, *id, t, now, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "plan %lld: no such plan", *id);
    }
    rc = auto_end(inv, own, rc, diag);
out:
    if (t != NULL) {
        fk_free_secret(t, len + 1); /* a body holds staged PSKs */
    }
    return rc;
}

enum fk_err fk_inventory_plan_add(struct fk_inventory *inv, const char *body, size_t len,
                                  long long *id, struct fk_diag *diag) {
    *id = 0;
    return plan_write(inv, body, len, id, 1, diag);
}

enum fk_err fk_inventory_plan_get(struct fk_inventory *inv, long long id, char **body, size_t *len,
                                  long long *version, struct fk_diag *diag) {
    long long v = 0;
    *body = NULL;
    *len = 0;
    enum fk_err rc = inv->ops->plan_get(inv, id, body, len, &v, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "plan %lld: no such plan", id);
    }
    if (version != NULL) {
        *version = v;
    }
    return rc;
}

enum fk_err fk_inventory_plan_put(struct fk_inventory *inv, long long id, const char *body,
                                  size_t len, struct fk_diag *diag) {
    return plan_write(inv, body, len, &id, 0, diag);
}

enum fk_err fk_inventory_plan_list(struct fk_inventory *inv, long long after, fk_inv_plan_fn *fn,
                                   void *user, struct fk_diag *diag) {
    return inv->ops->plan_list(inv, after, fn, user, diag);
}
