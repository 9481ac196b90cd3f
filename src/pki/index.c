/* The CA index: index.json, one JSON document listing every certificate the issuing CA has
 * signed (serial, kind, name, subject, validity, fingerprint, revocation) and the CRL number.
 *
 * Why JSON and not OpenSSL's index.txt: the rest of fleetkey already speaks JSON (cJSON), a
 * malformed file is detected by one parser rather than by column counting, and the inventory
 * can import it as is. Robustness comes from how it is written, not from the format: every
 * change is read-modify-write under an exclusive flock on <dir>/.lock and the file is replaced
 * atomically (temp + fsync + rename), so concurrent `ca issue` runs neither lose an entry nor
 * leave a torn file, and a crash leaves the previous index. */
#include "pki_internal.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum fk_err index_validate(cJSON *root, const char *path, struct fk_diag *diag) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1) {
        return fk_diag_at(diag, FK_E_PARSE, path, 0, "unsupported index version");
    }
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "crl_number");
    if (!cJSON_IsNumber(n) || n->valuedouble < 1) {
        return fk_diag_at(diag, FK_E_PARSE, path, 0, "crl_number missing or invalid");
    }
    const cJSON *certs = cJSON_GetObjectItemCaseSensitive(root, "certs");
    if (!cJSON_IsArray(certs)) {
        return fk_diag_at(diag, FK_E_PARSE, path, 0, "certs is not an array");
    }
    long i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, certs) {
        const char *need[] = {"serial", "kind", "name", "status"};
        for (size_t k = 0; k < sizeof need / sizeof need[0]; k++) {
            if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, need[k]))) {
                return fk_diag_at(diag, FK_E_PARSE, path, 0, "certs[%ld]: %s missing", i,
                                  need[k]);
            }
        }
        i++;
    }
    return FK_OK;
}

enum fk_err pki_index_open(const char *dir, int create, struct pki_index *ix,
                           struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *lock_path = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;

    ix->lock_fd = -1;
    ix->root = NULL;
    ix->path = NULL;
    FK_GUARD(fk_path_join(dir, ".lock", "", &lock_path));
    FK_GUARD(fk_path_join(dir, "index.json", "", &ix->path));
    ix->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    FK_ENSURE(ix->lock_fd >= 0,
              fk_diag_at(diag, errno == ENOENT ? FK_E_NOTFOUND : FK_E_IO, lock_path, 0,
                         "cannot open lock file: %s", strerror(errno)));
    while (flock(ix->lock_fd, LOCK_EX) != 0) {
        FK_ENSURE(errno == EINTR,
                  fk_diag_at(diag, FK_E_IO, lock_path, 0, "flock: %s", strerror(errno)));
    }
    if (access(ix->path, F_OK) != 0 && errno == ENOENT && create) {
        ix->root = cJSON_CreateObject();
        FK_ENSURE(ix->root != NULL, FK_E_NOMEM);
        FK_ENSURE(cJSON_AddNumberToObject(ix->root, "version", 1) != NULL, FK_E_NOMEM);
        FK_ENSURE(cJSON_AddNumberToObject(ix->root, "crl_number", 1) != NULL, FK_E_NOMEM);
        FK_ENSURE(cJSON_AddArrayToObject(ix->root, "certs") != NULL, FK_E_NOMEM);
        rc = FK_OK;
        goto out;
    }
    rc = fk_file_read(ix->path, PKI_INDEX_MAX, &buf, &len, diag);
    if (rc == FK_E_IO && access(ix->path, F_OK) != 0) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, ix->path, 0, "no CA index (run 'ca init')");
    }
    FK_GUARD(rc);
    ix->root = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(ix->root != NULL, fk_diag_at(diag, FK_E_PARSE, ix->path, 0, "not valid JSON"));
    FK_GUARD(index_validate(ix->root, ix->path, diag));
    rc = FK_OK;
out:
    free(lock_path);
    free(buf);
    if (rc != FK_OK) {
        pki_index_close(ix);
    }
    return rc;
}

enum fk_err pki_index_save(struct pki_index *ix, struct fk_diag *diag) {
    char *text = cJSON_Print(ix->root);
    if (text == NULL) {
        return FK_E_NOMEM;
    }
    size_t n = strlen(text);
    /* The index is not secret (serials, names, dates), but the CA directory is 0700. */
    enum fk_err rc = fk_file_write_atomic(ix->path, text, n, 0644, 0, diag);
    free(text);
    return rc;
}

void pki_index_close(struct pki_index *ix) {
    if (ix->lock_fd >= 0) {
        close(ix->lock_fd); /* releases the flock */
    }
    ix->lock_fd = -1;
    cJSON_Delete(ix->root);
    ix->root = NULL;
    free(ix->path);
    ix->path = NULL;
}

cJSON *pki_index_find(const struct pki_index *ix, const char *serial_hex) {
    cJSON *certs = cJSON_GetObjectItemCaseSensitive(ix->root, "certs");
    cJSON *c;
    cJSON_ArrayForEach(c, certs) {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "serial"));
        if (s != NULL && strcmp(s, serial_hex) == 0) {
            return c;
        }
    }
    return NULL;
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
    int ok = cJSON_AddStringToObject(e, "serial", serial_hex) != NULL &&
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
    cJSON *certs = cJSON_GetObjectItemCaseSensitive(ix->root, "certs");
    if (!ok || !cJSON_AddItemToArray(certs, e)) {
        cJSON_Delete(e);
        return FK_E_NOMEM;
    }
    return FK_OK;
}

long long pki_index_next_crl_number(struct pki_index *ix) {
    cJSON *n = cJSON_GetObjectItemCaseSensitive(ix->root, "crl_number");
    long long v = (long long)n->valuedouble;
    cJSON_SetNumberValue(n, (double)(v + 1));
    return v;
}

enum fk_err fk_pki_list(struct fk_pki_ca *ca, fk_pki_cert_fn *fn, void *user,
                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct pki_index ix = {-1, NULL, NULL};
    FK_ENSURE(ca != NULL && fn != NULL, FK_E_ARG);
    FK_GUARD(pki_index_open(ca->dir, 0, &ix, diag));
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(ix.root, "certs")) {
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
                  fk_diag_at(diag, FK_E_PARSE, ix.path, 0, "malformed certificate entry"));
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
    pki_index_close(&ix);
    return rc;
}
