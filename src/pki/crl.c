/* Revocation and CRLs: revoking by serial or by name (recorded in the index), and signing
 * the issuing CA's CRL and the root's. The root signs only its own CRL, so its key stays
 * encrypted and offline; fk_pki_root_crl_refresh is the one place that decrypts it. */
#include "pki_internal.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Signs a CRL v2 of `issuer` listing the revoked entries of `certs` (a cJSON array from the
 * index; NULL for none). RFC 5280 5.2: AKI and CRL number are required in conforming CRLs. */
enum fk_err pki_build_crl(X509 *issuer, EVP_PKEY *key, const cJSON *certs, long long number,
                          int64_t this_update, int64_t next_update, char **pem) {
    enum fk_err rc = FK_E_INTERNAL;
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = ASN1_TIME_new();
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    BIO *b = NULL;
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *serial = NULL;
    BIGNUM *bn = NULL;
    ASN1_ENUMERATED *code = NULL;

    FK_ENSURE(crl != NULL && t != NULL && num != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(X509_CRL_set_version(crl, X509_CRL_VERSION_2), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)), FK_E_CRYPTO);
    FK_GUARD(pki_set_time(t, this_update));
    FK_GUARD_OSSL(X509_CRL_set1_lastUpdate(crl, t), FK_E_CRYPTO);
    FK_GUARD(pki_set_time(t, next_update));
    FK_GUARD_OSSL(X509_CRL_set1_nextUpdate(crl, t), FK_E_CRYPTO);

    const cJSON *c;
    cJSON_ArrayForEach(c, certs) {
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "status"));
        if (st == NULL || strcmp(st, "revoked") != 0) {
            continue;
        }
        const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "serial"));
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(c, "revoked_at");
        const char *rs = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "reason"));
        enum fk_pki_reason reason = FK_PKI_REASON_UNSPECIFIED;
        FK_ENSURE(hex != NULL && cJSON_IsNumber(at), FK_E_PARSE);
        if (rs != NULL) {
            FK_GUARD(fk_pki_reason_parse(rs, &reason));
        }
        rev = X509_REVOKED_new();
        FK_ENSURE(rev != NULL, FK_E_NOMEM);
        FK_ENSURE(BN_hex2bn(&bn, hex) > 0, FK_E_PARSE);
        serial = BN_to_ASN1_INTEGER(bn, NULL);
        FK_ENSURE(serial != NULL, FK_E_NOMEM);
        FK_GUARD_OSSL(X509_REVOKED_set_serialNumber(rev, serial), FK_E_CRYPTO);
        FK_GUARD(pki_set_time(t, (int64_t)at->valuedouble));
        FK_GUARD_OSSL(X509_REVOKED_set_revocationDate(rev, t), FK_E_CRYPTO);
        /* RFC 5280 5.3.1: "the reason code CRL entry extension SHOULD be absent instead of
         * using the unspecified (0) reasonCode value". */
        if (reason != FK_PKI_REASON_UNSPECIFIED) {
            code = ASN1_ENUMERATED_new();
            FK_ENSURE(code != NULL, FK_E_NOMEM);
            FK_GUARD_OSSL(ASN1_ENUMERATED_set(code, (long)reason), FK_E_CRYPTO);
            FK_GUARD_OSSL(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0), FK_E_CRYPTO);
            ASN1_ENUMERATED_free(code);
            code = NULL;
        }
        FK_GUARD_OSSL(X509_CRL_add0_revoked(crl, rev), FK_E_CRYPTO);
        rev = NULL;
        ASN1_INTEGER_free(serial);
        serial = NULL;
    }
    FK_GUARD_OSSL(X509_CRL_sort(crl), FK_E_CRYPTO);

    FK_GUARD_OSSL(ASN1_INTEGER_set_int64(num, number), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0), FK_E_CRYPTO);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, crl, 0);
    X509_EXTENSION *aki =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    FK_ENSURE(aki != NULL, FK_E_CRYPTO);
    int added = X509_CRL_add_ext(crl, aki, -1);
    X509_EXTENSION_free(aki);
    FK_ENSURE(added == 1, FK_E_CRYPTO);

    FK_ENSURE(X509_CRL_sign(crl, key, EVP_sha256()) > 0, FK_E_CRYPTO);
    b = BIO_new(BIO_s_mem());
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_X509_CRL(b, crl), FK_E_CRYPTO);
    FK_GUARD(pki_bio_take(b, pem, NULL));
    rc = FK_OK;
out:
    ASN1_ENUMERATED_free(code);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_REVOKED_free(rev);
    BIO_free(b);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

/* ---- revoke ----------------------------------------------------------------------------- */
static int reason_ok(enum fk_pki_reason r) {
    return strcmp(fk_pki_reason_name(r), "?") != 0;
}

enum fk_err fk_pki_revoke_serials(struct fk_pki_ca *ca, const char *const *serials, size_t n,
                                  enum fk_pki_reason reason, int64_t when, size_t *revoked,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    size_t done = 0;
    char norm[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
    FK_ENSURE(ca != NULL && (serials != NULL || n == 0) && reason_ok(reason), FK_E_ARG);
    /* Spelling first, without the lock: a bad batch costs no lock and no read. */
    for (size_t i = 0; i < n; i++) {
        FK_ENSURE(pki_serial_normalise(serials[i], norm) == FK_OK,
                  fk_diag_set(diag, FK_E_ARG, "serial %zu: '%s' is not a serial number (hex)", i,
                              serials[i] != NULL ? serials[i] : ""));
    }
    if (n == 0) {
        rc = FK_OK;
        goto out;
    }
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    /* Existence second, before any record: an unknown serial fails the batch whole. */
    for (size_t i = 0; i < n; i++) {
        (void)pki_serial_normalise(serials[i], norm);
        FK_ENSURE(
            pki_index_find(&ca->ix, norm) != NULL,
            fk_diag_set(diag, FK_E_NOTFOUND, "serial %zu: %s was not issued by this CA", i, norm));
    }
    int64_t at = when != 0 ? when : (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        (void)pki_serial_normalise(serials[i], norm);
        const cJSON *e = pki_index_find(&ca->ix, norm);
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "status"));
        if (st == NULL || strcmp(st, "revoked") == 0) {
            continue; /* revoked before, or earlier in this batch: nothing left to do */
        }
        FK_GUARD(pki_index_revoke(&ca->ix, norm, reason, at));
        fk_log(FK_LOG_DEBUG, "pki: revoking serial %s (%s)", norm, fk_pki_reason_name(reason));
        done++;
    }
    /* One append and one fsync for the whole batch (none when nothing changed). */
    FK_GUARD(pki_index_commit(&ca->ix, diag));
    if (done > 0) {
        fk_log(FK_LOG_INFO, "pki: revoked %zu of %zu serials (%s)", done, n,
               fk_pki_reason_name(reason));
    }
    rc = FK_OK;
out:
    if (revoked != NULL) {
        *revoked = rc == FK_OK ? done : 0;
    }
    if (locked) {
        pki_index_unlock(&ca->ix, rc == FK_OK);
    }
    return rc;
}

enum fk_err fk_pki_revoke_serial(struct fk_pki_ca *ca, const char *serial,
                                 enum fk_pki_reason reason, int64_t when, struct fk_diag *diag) {
    size_t done = 0;
    enum fk_err rc = fk_pki_revoke_serials(ca, &serial, 1, reason, when, &done, diag);
    if (rc == FK_OK && done == 0) {
        char norm[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
        (void)pki_serial_normalise(serial, norm); /* checked by the batch */
        rc = fk_diag_set(diag, FK_E_STATE, "serial %s is already revoked", norm);
    }
    return rc;
}

enum fk_err fk_pki_revoke_name(struct fk_pki_ca *ca, enum fk_pki_kind kind, const char *name,
                               enum fk_pki_reason reason, int64_t when, size_t *count,
                               struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    size_t n = 0;
    FK_ENSURE(ca != NULL && reason_ok(reason), FK_E_ARG);
    FK_ENSURE(fk_pki_name_valid(name), fk_diag_set(diag, FK_E_ARG, "invalid name"));
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    int64_t at = when != 0 ? when : (int64_t)time(NULL);
    cJSON *e;
    cJSON_ArrayForEach(e, pki_index_certs(&ca->ix)) {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "kind"));
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name"));
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "status"));
        if (k == NULL || nm == NULL || st == NULL || strcmp(k, fk_pki_kind_name(kind)) != 0 ||
            strcmp(nm, name) != 0 || strcmp(st, "revoked") == 0) {
            continue;
        }
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "serial"));
        FK_ENSURE(s != NULL, FK_E_PARSE);
        FK_GUARD(pki_index_revoke(&ca->ix, s, reason, at));
        fk_log(FK_LOG_INFO, "pki: revoked %s %s serial %s (%s)", fk_pki_kind_name(kind), name,
               s != NULL ? s : "?", fk_pki_reason_name(reason));
        n++;
    }
    FK_ENSURE(n > 0, fk_diag_set(diag, FK_E_NOTFOUND, "no unrevoked %s certificate for '%s'",
                                 fk_pki_kind_name(kind), name));
    FK_GUARD(pki_index_commit(&ca->ix, diag));
    rc = FK_OK;
out:
    if (count != NULL) {
        *count = rc == FK_OK ? n : 0;
    }
    if (locked) {
        pki_index_unlock(&ca->ix, rc == FK_OK);
    }
    return rc;
}

/* ---- CRLs ------------------------------------------------------------------------------- */
enum fk_err fk_pki_crl(struct fk_pki_ca *ca, int64_t this_update, unsigned days, char **out,
                       size_t *out_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    char *pem = NULL;
    char *root_crl = NULL;
    size_t root_len = 0;
    FK_ENSURE(ca != NULL && out != NULL, FK_E_ARG);
    unsigned d = days != 0 ? days : 7;
    FK_ENSURE(d <= FK_PKI_MAX_DAYS, fk_diag_set(diag, FK_E_RANGE, "days: 1..%d", FK_PKI_MAX_DAYS));
    int64_t tu = this_update != 0 ? this_update : (int64_t)time(NULL);
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    long long number = 0;
    FK_GUARD(pki_index_take_number(&ca->ix, 0, &number));
    FK_GUARD(pki_build_crl(ca->issuing, ca->issuing_key, pki_index_certs(&ca->ix), number, tu,
                           tu + (int64_t)d * PKI_DAY, &pem));
    FK_GUARD(pki_read_in(ca->dir, "root.crl.pem", &root_crl, &root_len, diag));
    /* The number is consumed only once the CRL exists: commit after signing. */
    FK_GUARD(pki_index_commit(&ca->ix, diag));
    size_t n = strlen(pem) + root_len + 1;
    *out = malloc(n);
    FK_ENSURE(*out != NULL, FK_E_NOMEM);
    snprintf(*out, n, "%s%s", pem, root_crl);
    if (out_len != NULL) {
        *out_len = n - 1;
    }
    fk_log(FK_LOG_INFO, "pki: CRL number %lld signed, next update in %u days", number, d);
    rc = FK_OK;
out:
    if (locked) {
        pki_index_unlock(&ca->ix, rc == FK_OK);
    }
    free(pem);
    free(root_crl);
    return rc;
}

enum fk_err fk_pki_root_crl_refresh(struct fk_pki_ca *ca, const char *passphrase,
                                    size_t passphrase_len, unsigned days, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    char *key_txt = NULL;
    size_t key_len = 0;
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    char *path = NULL;
    FK_ENSURE(ca != NULL, FK_E_ARG);
    FK_ENSURE(days <= FK_PKI_MAX_DAYS,
              fk_diag_set(diag, FK_E_RANGE, "days: 0..%d", FK_PKI_MAX_DAYS));
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    FK_GUARD(pki_read_in(ca->dir, "root.key.pem", &key_txt, &key_len, diag));
    FK_ENSURE(
        pki_load_key_pem(key_txt, key_len, passphrase, passphrase_len, &key) == FK_OK,
        fk_diag_set(diag, FK_E_AUTH, "root.key.pem: cannot decrypt (wrong or missing passphrase)"));
    FK_ENSURE(X509_check_private_key(ca->root, key) == 1,
              fk_diag_set(diag, FK_E_MISMATCH, "root.key.pem does not match root.crt.pem"));
    int64_t now = (int64_t)time(NULL);
    int64_t next = days != 0 ? now + (int64_t)days * PKI_DAY
                             : pki_asn1_to_unix(X509_get0_notAfter(ca->issuing));
    long long number = 0;
    FK_GUARD(pki_index_take_number(&ca->ix, 1, &number));
    FK_GUARD(pki_build_crl(ca->root, key, NULL, number, now - PKI_CLOCK_SKEW, next, &pem));
    /* Number first, file second: a crash in between skips a number, never reuses one. */
    FK_GUARD(pki_index_commit(&ca->ix, diag));
    FK_GUARD(fk_path_join(ca->dir, "root.crl.pem", "", &path));
    FK_GUARD(fk_file_write_atomic(path, pem, strlen(pem), 0644, 0, diag));
    rc = FK_OK;
out:
    if (locked) {
        pki_index_unlock(&ca->ix, rc == FK_OK);
    }
    fk_free_secret(key_txt, key_len);
    EVP_PKEY_free(key);
    free(pem);
    free(path);
    ERR_clear_error();
    return rc;
}
