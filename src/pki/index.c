/* The CA index: index.jsonl, an append-only log of JSON records, one per line:
 *   {"op":"init","version":1}
 *   {"op":"issue","serial":"…","kind":"device","name":"…","subject":"…","not_before":N,
 *    "not_after":N,"not_before_utc":"…","not_after_utc":"…","issued_at":"…",
 *    "fingerprint":"sha256:…","status":"valid"}
 *   {"op":"revoke","serial":"…","revoked_at":N,"revoked_at_utc":"…","reason":"keyCompromise"}
 *   {"op":"crl","number":N}        an issuing-CA CRL with this number was signed
 *   {"op":"root_crl","number":N}   a root CRL with this number was signed
 * Folding the log gives the state: every certificate with its revocation, and the next CRL
 * numbers.
 *
 * Why a log: a factory batch issues thousands of certificates, and rewriting a whole index per
 * certificate would cost O(n) bytes written and fsync'd each time (O(n^2) for the batch). An
 * append costs one short line. The struct fk_pki_ca keeps the folded state and the log offset
 * it has read, so each operation only reads what other processes appended since.
 * Why JSON: the rest of fleetkey speaks JSON (cJSON), a damaged record is found by one parser,
 * and the inventory can import the records as they are.
 *
 * Robustness: every operation holds an exclusive flock on <dir>/.lock from reading the tail to
 * appending its records, so concurrent `ca issue` runs neither lose nor duplicate anything.
 * Records of one operation are appended in one write and fsync'd before the operation returns
 * (and so before a certificate is handed out). A crash can only leave an incomplete last line;
 * the next operation cuts it off (the operation that wrote it never reported success). A
 * malformed line anywhere else is corruption and is reported, never skipped. */
#include "pki_internal.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void pki_index_init(struct pki_index *ix) {
    memset(ix, 0, sizeof *ix);
    ix->lock_fd = -1;
}

static void drop_cache(struct pki_index *ix) {
    free(ix->by_serial);
    ix->by_serial = NULL;
    ix->by_serial_cap = 0;
    ix->by_serial_n = 0;
    cJSON_Delete(ix->root);
    ix->root = NULL;
    cJSON_Delete(ix->pending);
    ix->pending = NULL;
    ix->offset = 0;
}

void pki_index_free(struct pki_index *ix) {
    pki_index_unlock(ix, 0);
    drop_cache(ix);
    free(ix->path);
    ix->path = NULL;
}

enum fk_err pki_lock_dir(const char *dir, int *fd, struct fk_diag *diag) {
    char *lock_path = NULL;
    enum fk_err rc = fk_path_join(dir, ".lock", "", &lock_path);
    if (rc != FK_OK) {
        return rc;
    }
    *fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0) {
        rc = fk_diag_at(diag, errno == ENOENT ? FK_E_NOTFOUND : FK_E_IO, lock_path, 0,
                        "cannot open lock file: %s", strerror(errno));
        free(lock_path);
        return rc;
    }
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rc = fk_diag_at(diag, FK_E_IO, lock_path, 0, "flock: %s", strerror(errno));
            close(*fd);
            *fd = -1;
            free(lock_path);
            return rc;
        }
    }
    free(lock_path);
    return FK_OK;
}

/* ---- folding records into the state ------------------------------------------------------ */
static enum fk_err apply_revoke(cJSON *entry, const cJSON *rec) {
    static const char *const fields[] = {"revoked_at", "revoked_at_utc", "reason"};
    cJSON *st = cJSON_GetObjectItemCaseSensitive(entry, "status");
    if (!cJSON_IsString(st) || cJSON_SetValuestring(st, "revoked") == NULL) {
        return FK_E_NOMEM;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, fields[i]);
        cJSON_DeleteItemFromObjectCaseSensitive(entry, fields[i]);
        if (v != NULL) {
            cJSON *copy = cJSON_Duplicate(v, 1);
            if (copy == NULL || !cJSON_AddItemToObject(entry, fields[i], copy)) {
                cJSON_Delete(copy);
                return FK_E_NOMEM;
            }
        }
    }
    return FK_OK;
}

static enum fk_err set_number(cJSON *root, const char *key, double v) {
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    return cJSON_AddNumberToObject(root, key, v) != NULL ? FK_OK : FK_E_NOMEM;
}

/* ---- the serial table ---------------------------------------------------------------------- */
static const char *entry_serial(const cJSON *e) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "serial"));
}

/* FNV-1a: serials are random hex, any cheap mix spreads them. */
static size_t serial_hash(const char *s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    }
    return (size_t)h;
}

/* The slot of serial: its entry, or the empty slot where it would go. cap must be > 0. */
static size_t serial_slot(cJSON *const *tab, size_t cap, const char *serial) {
    size_t i = serial_hash(serial) & (cap - 1);
    while (tab[i] != NULL && strcmp(entry_serial(tab[i]), serial) != 0) {
        i = (i + 1) & (cap - 1);
    }
    return i;
}

/* Adds entry e (whose serial is not in the table yet); grows the table at half full. */
static enum fk_err serial_put(struct pki_index *ix, cJSON *e) {
    if (2 * (ix->by_serial_n + 1) > ix->by_serial_cap) {
        size_t cap = ix->by_serial_cap != 0 ? 2 * ix->by_serial_cap : 256;
        cJSON **tab = calloc(cap, sizeof *tab);
        if (tab == NULL) {
            return FK_E_NOMEM;
        }
        for (size_t i = 0; i < ix->by_serial_cap; i++) {
            if (ix->by_serial[i] != NULL) {
                tab[serial_slot(tab, cap, entry_serial(ix->by_serial[i]))] = ix->by_serial[i];
            }
        }
        free(ix->by_serial);
        ix->by_serial = tab;
        ix->by_serial_cap = cap;
    }
    ix->by_serial[serial_slot(ix->by_serial, ix->by_serial_cap, entry_serial(e))] = e;
    ix->by_serial_n++;
    return FK_OK;
}

/* Applies one record to the folded state (creating it for "init"). */
static enum fk_err apply(struct pki_index *ix, const cJSON *rec) {
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "op"));
    if (op == NULL) {
        return FK_E_PARSE;
    }
    if (strcmp(op, "init") == 0) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "version");
        if (ix->root != NULL || !cJSON_IsNumber(v) || v->valuedouble != 1) {
            return FK_E_PARSE;
        }
        ix->root = cJSON_CreateObject();
        if (ix->root == NULL || cJSON_AddNumberToObject(ix->root, "crl_number", 1) == NULL ||
            cJSON_AddNumberToObject(ix->root, "root_crl_number", 1) == NULL ||
            cJSON_AddArrayToObject(ix->root, "certs") == NULL) {
            return FK_E_NOMEM;
        }
        return FK_OK;
    }
    if (ix->root == NULL) {
        return FK_E_PARSE; /* the log must start with init */
    }
    const char *serial = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "serial"));
    if (strcmp(op, "issue") == 0) {
        static const char *const need[] = {"serial", "kind", "name", "status"};
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
            if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, need[i]))) {
                return FK_E_PARSE;
            }
        }
        if (pki_index_find(ix, serial) != NULL) {
            return FK_E_PARSE; /* a serial is issued once */
        }
        cJSON *e = cJSON_Duplicate(rec, 1);
        if (e == NULL) {
            return FK_E_NOMEM;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(e, "op");
        if (!cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(ix->root, "certs"), e)) {
            cJSON_Delete(e);
            return FK_E_NOMEM;
        }
        return serial_put(ix, e); /* on failure the caller drops the whole cache */
    }
    if (strcmp(op, "revoke") == 0) {
        cJSON *e = serial != NULL ? pki_index_find(ix, serial) : NULL;
        if (e == NULL || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rec, "revoked_at"))) {
            return FK_E_PARSE;
        }
        return apply_revoke(e, rec);
    }
    if (strcmp(op, "crl") == 0 || strcmp(op, "root_crl") == 0) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(rec, "number");
        if (!cJSON_IsNumber(n) || n->valuedouble < 1) {
            return FK_E_PARSE;
        }
        return set_number(ix->root, op[0] == 'c' ? "crl_number" : "root_crl_number",
                          n->valuedouble + 1);
    }
    return FK_E_PARSE;
}

/* ---- reading the tail --------------------------------------------------------------------- */
/* Folds what was appended since ix->offset. Cuts off an incomplete last line (a crash while
 * appending). Called with the lock held. */
static enum fk_err catch_up(struct pki_index *ix, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *buf = NULL;
    int fd = open(ix->path, O_RDWR | O_CLOEXEC);
    FK_ENSURE(fd >= 0, fk_diag_at(diag, errno == ENOENT ? FK_E_NOTFOUND : FK_E_IO, ix->path, 0,
                                  errno == ENOENT ? "no CA index (run 'ca init')" : "%s",
                                  strerror(errno)));
    struct stat st;
    FK_ENSURE(fstat(fd, &st) == 0, fk_diag_at(diag, FK_E_IO, ix->path, 0, "stat: %s",
                                              strerror(errno)));
    if ((long long)st.st_size < ix->offset) {
        drop_cache(ix); /* replaced behind our back (a restore?): start over */
    }
    FK_ENSURE(st.st_size <= (off_t)PKI_INDEX_MAX,
              fk_diag_at(diag, FK_E_TOOBIG, ix->path, 0, "index larger than %u bytes",
                         PKI_INDEX_MAX));
    size_t want = (size_t)((long long)st.st_size - ix->offset);
    if (want == 0) {
        FK_ENSURE(ix->root != NULL, fk_diag_at(diag, FK_E_PARSE, ix->path, 0, "empty index"));
        rc = FK_OK;
        goto out;
    }
    buf = malloc(want + 1);
    FK_ENSURE(buf != NULL, FK_E_NOMEM);
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, (off_t)(ix->offset + (long long)got));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        FK_ENSURE(r > 0, fk_diag_at(diag, FK_E_IO, ix->path, 0, "read: %s",
                                    r == 0 ? "unexpected end" : strerror(errno)));
        got += (size_t)r;
    }
    buf[want] = '\0';
    size_t pos = 0;
    long long base = ix->offset;
    while (pos < want) {
        char *nl = memchr(buf + pos, '\n', want - pos);
        if (nl == NULL) {
            /* An incomplete last line: the append that wrote it crashed before it could report
             * success. Cut it off so the next append starts on a fresh line. */
            long long keep = base + (long long)pos;
            fk_log(FK_LOG_WARN, "pki: %s: dropping an incomplete last record (%zu bytes)",
                   ix->path, want - pos);
            FK_ENSURE(ftruncate(fd, (off_t)keep) == 0 && fsync(fd) == 0,
                      fk_diag_at(diag, FK_E_IO, ix->path, 0, "truncate: %s", strerror(errno)));
            break;
        }
        size_t len = (size_t)(nl - (buf + pos));
        cJSON *rec = cJSON_ParseWithLength(buf + pos, len);
        rc = rec != NULL ? apply(ix, rec) : FK_E_PARSE;
        cJSON_Delete(rec);
        if (rc != FK_OK) {
            drop_cache(ix);
            if (rc == FK_E_PARSE) {
                rc = fk_diag_at(diag, FK_E_PARSE, ix->path, 0, "damaged record at byte %lld",
                                base + (long long)pos);
            }
            goto out;
        }
        pos += len + 1;
        ix->offset = base + (long long)pos;
    }
    FK_ENSURE(ix->root != NULL, fk_diag_at(diag, FK_E_PARSE, ix->path, 0, "no init record"));
    rc = FK_OK;
out:
    free(buf);
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

enum fk_err pki_index_lock(struct pki_index *ix, const char *dir, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    if (ix->path == NULL) {
        FK_GUARD(fk_path_join(dir, PKI_INDEX_FILE, "", &ix->path));
    }
    FK_GUARD(pki_lock_dir(dir, &ix->lock_fd, diag));
    FK_GUARD(catch_up(ix, diag));
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        pki_index_unlock(ix, 0);
    }
    return rc;
}

enum fk_err pki_index_commit(struct pki_index *ix, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *text = NULL;
    size_t len = 0;
    int fd = -1;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, ix->pending) {
        char *line = cJSON_PrintUnformatted(rec);
        FK_ENSURE(line != NULL, FK_E_NOMEM);
        size_t n = strlen(line);
        char *nt = realloc(text, len + n + 2);
        if (nt == NULL) {
            free(line);
        }
        FK_ENSURE(nt != NULL, FK_E_NOMEM);
        text = nt;
        memcpy(text + len, line, n);
        text[len + n] = '\n';
        len += n + 1;
        free(line);
    }
    if (len > 0) {
        fd = open(ix->path, O_WRONLY | O_APPEND | O_CLOEXEC);
        FK_ENSURE(fd >= 0, fk_diag_at(diag, FK_E_IO, ix->path, 0, "open: %s", strerror(errno)));
        size_t done = 0;
        while (done < len) {
            ssize_t w = write(fd, text + done, len - done);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            FK_ENSURE(w > 0, fk_diag_at(diag, FK_E_IO, ix->path, 0, "write: %s",
                                        strerror(errno)));
            done += (size_t)w;
        }
        /* Durable before the caller hands the certificate out or reports the revocation. */
        FK_ENSURE(fsync(fd) == 0, fk_diag_at(diag, FK_E_IO, ix->path, 0, "fsync: %s",
                                             strerror(errno)));
        ix->offset += (long long)len;
    }
    cJSON_Delete(ix->pending);
    ix->pending = NULL;
    rc = FK_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    free(text);
    return rc;
}

void pki_index_unlock(struct pki_index *ix, int ok) {
    if (!ok) {
        /* The in-memory state may hold changes that never reached the log: forget it, the
         * next operation re-reads the log from the start. */
        drop_cache(ix);
    }
    if (ix->lock_fd >= 0) {
        close(ix->lock_fd); /* releases the flock */
    }
    ix->lock_fd = -1;
}

/* Applies a record and queues it for pki_index_commit; takes ownership of rec. */
static enum fk_err record(struct pki_index *ix, cJSON *rec) {
    enum fk_err rc = apply(ix, rec);
    if (rc != FK_OK) {
        cJSON_Delete(rec);
        return rc;
    }
    if (ix->pending == NULL) {
        ix->pending = cJSON_CreateArray();
    }
    if (ix->pending == NULL || !cJSON_AddItemToArray(ix->pending, rec)) {
        cJSON_Delete(rec);
        return FK_E_NOMEM;
    }
    return FK_OK;
}

enum fk_err pki_index_initial(char **text, size_t *len) {
    static const char init[] = "{\"op\":\"init\",\"version\":1}\n"
                               "{\"op\":\"root_crl\",\"number\":1}\n";
    *text = strdup(init);
    *len = sizeof init - 1;
    return *text != NULL ? FK_OK : FK_E_NOMEM;
}

cJSON *pki_index_certs(const struct pki_index *ix) {
    return cJSON_GetObjectItemCaseSensitive(ix->root, "certs");
}

cJSON *pki_index_find(const struct pki_index *ix, const char *serial_hex) {
    if (serial_hex == NULL || ix->by_serial_cap == 0) {
        return NULL;
    }
    return ix->by_serial[serial_slot(ix->by_serial, ix->by_serial_cap, serial_hex)];
}

enum fk_err pki_index_add(struct pki_index *ix, const char *serial_hex, enum fk_pki_kind kind,
                          const char *name, const char *subject, int64_t not_before,
                          int64_t not_after, const char *fingerprint) {
    char nb[21];
    char na[21];
    char now[21];
    fk_time_rfc3339(not_before, nb);
    fk_time_rfc3339(not_after, na);
    fk_time_rfc3339((long long)time(NULL), now);
    cJSON *e = cJSON_CreateObject();
    if (e == NULL) {
        return FK_E_NOMEM;
    }
    int ok = cJSON_AddStringToObject(e, "op", "issue") != NULL &&
             cJSON_AddStringToObject(e, "serial", serial_hex) != NULL &&
             cJSON_AddStringToObject(e, "kind", fk_pki_kind_name(kind)) != NULL &&
             cJSON_AddStringToObject(e, "name", name) != NULL &&
             cJSON_AddStringToObject(e, "subject", subject) != NULL &&
             cJSON_AddNumberToObject(e, "not_before", (double)not_before) != NULL &&
             cJSON_AddNumberToObject(e, "not_after", (double)not_after) != NULL &&
             cJSON_AddStringToObject(e, "not_before_utc", nb) != NULL &&
             cJSON_AddStringToObject(e, "not_after_utc", na) != NULL &&
             cJSON_AddStringToObject(e, "issued_at", now) != NULL &&
             cJSON_AddStringToObject(e, "fingerprint", fingerprint) != NULL &&
             cJSON_AddStringToObject(e, "status", "valid") != NULL;
    if (!ok) {
        cJSON_Delete(e);
        return FK_E_NOMEM;
    }
    return record(ix, e);
}

enum fk_err pki_index_revoke(struct pki_index *ix, const char *serial_hex,
                             enum fk_pki_reason reason, int64_t when) {
    char at[21];
    fk_time_rfc3339(when, at);
    cJSON *r = cJSON_CreateObject();
    if (r == NULL) {
        return FK_E_NOMEM;
    }
    int ok = cJSON_AddStringToObject(r, "op", "revoke") != NULL &&
             cJSON_AddStringToObject(r, "serial", serial_hex) != NULL &&
             cJSON_AddNumberToObject(r, "revoked_at", (double)when) != NULL &&
             cJSON_AddStringToObject(r, "revoked_at_utc", at) != NULL &&
             cJSON_AddStringToObject(r, "reason", fk_pki_reason_name(reason)) != NULL;
    if (!ok) {
        cJSON_Delete(r);
        return FK_E_NOMEM;
    }
    return record(ix, r);
}

enum fk_err pki_index_take_number(struct pki_index *ix, int root, long long *out) {
    const cJSON *n =
        cJSON_GetObjectItemCaseSensitive(ix->root, root ? "root_crl_number" : "crl_number");
    if (!cJSON_IsNumber(n)) {
        return FK_E_PARSE;
    }
    long long v = (long long)n->valuedouble;
    cJSON *r = cJSON_CreateObject();
    if (r == NULL || cJSON_AddStringToObject(r, "op", root ? "root_crl" : "crl") == NULL ||
        cJSON_AddNumberToObject(r, "number", (double)v) == NULL) {
        cJSON_Delete(r);
        return FK_E_NOMEM;
    }
    *out = v;
    return record(ix, r);
}

enum fk_err fk_pki_list(struct fk_pki_ca *ca, fk_pki_cert_fn *fn, void *user,
                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    FK_ENSURE(ca != NULL && fn != NULL, FK_E_ARG);
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    cJSON *e;
    cJSON_ArrayForEach(e, pki_index_certs(&ca->ix)) {
        struct fk_pki_cert_info info;
        memset(&info, 0, sizeof info);
        const char *serial = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "serial"));
        const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "kind"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name"));
        const char *fpr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "fingerprint"));
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "status"));
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "reason"));
        const cJSON *nb = cJSON_GetObjectItemCaseSensitive(e, "not_before");
        const cJSON *na = cJSON_GetObjectItemCaseSensitive(e, "not_after");
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "revoked_at");
        FK_ENSURE(serial != NULL && strlen(serial) < sizeof info.serial && name != NULL &&
                      strlen(name) < sizeof info.name && st != NULL &&
                      fk_pki_kind_parse(kind, &info.kind) == FK_OK,
                  fk_diag_at(diag, FK_E_PARSE, ca->ix.path, 0, "malformed certificate entry"));
        snprintf(info.serial, sizeof info.serial, "%s", serial);
        snprintf(info.name, sizeof info.name, "%s", name);
        snprintf(info.fingerprint, sizeof info.fingerprint, "%s", fpr != NULL ? fpr : "");
        info.not_before = cJSON_IsNumber(nb) ? (int64_t)nb->valuedouble : 0;
        info.not_after = cJSON_IsNumber(na) ? (int64_t)na->valuedouble : 0;
        info.revoked = strcmp(st, "revoked") == 0;
        if (info.revoked) {
            info.revoked_at = cJSON_IsNumber(at) ? (int64_t)at->valuedouble : 0;
            if (why == NULL || fk_pki_reason_parse(why, &info.reason) != FK_OK) {
                info.reason = FK_PKI_REASON_UNSPECIFIED;
            }
        }
        if (fn(user, &info) != 0) {
            break;
        }
    }
    rc = FK_OK;
out:
    if (locked) {
        pki_index_unlock(&ca->ix, 1); /* read only: the cached state is still right */
    }
    return rc;
}
