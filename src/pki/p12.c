/* PKCS#12 bundles for phones: key + certificate + CA chain under one password.
 *
 * Two forms, because the receiving side decides (docs/pki.md):
 *   modern: PBES2 (PBKDF2 with HMAC-SHA256, AES-256-CBC) for the key bag and the certificate
 *           bag, MAC HMAC-SHA256 - what OpenSSL 3 and current Android/Java write and read;
 *   legacy: pbeWithSHA1And3-KeyTripleDES-CBC for both bags, MAC HMAC-SHA1 - the only form
 *           older Android KeyChain versions and several MDM systems import.
 * OpenSSL's `pkcs12 -legacy` also uses RC2-40 for certificates; we deliberately use 3DES for
 * both bags, which the default provider implements, so the legacy provider (and RC2) is never
 * loaded: the receiving side only has to support 3DES + SHA-1.
 *
 * The MAC is set separately (PKCS12_create_ex with mac_iter -1, then PKCS12_set_mac) because
 * PKCS12_create would otherwise pick the MAC digest itself. */
#include "pki_internal.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include <stdlib.h>
#include <string.h>

#define P12_ITER 10000 /* PBKDF2 / PKCS#12 KDF iterations, for both bags and the MAC */

static int no_prompt_cb(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* an encrypted key here is an error, never a terminal prompt */
}

static enum fk_err parse_chain(const char *pem, STACK_OF(X509) **out) {
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *b = NULL;
    if (sk == NULL) {
        return FK_E_NOMEM;
    }
    if (pem != NULL) {
        b = BIO_new_mem_buf(pem, -1);
        if (b == NULL) {
            sk_X509_free(sk);
            return FK_E_NOMEM;
        }
        X509 *x;
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (sk_X509_push(sk, x) <= 0) {
                X509_free(x);
                BIO_free(b);
                sk_X509_pop_free(sk, X509_free);
                return FK_E_NOMEM;
            }
        }
        ERR_clear_error(); /* the loop ends on "no start line" */
        BIO_free(b);
    }
    *out = sk;
    return FK_OK;
}

enum fk_err fk_pki_p12_build(const char *key_pem, const char *cert_pem, const char *chain_pem,
                             const char *friendly_name, const char *password,
                             size_t password_len, enum fk_pki_p12_form form, uint8_t **out,
                             size_t *out_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    PKCS12 *p12 = NULL;
    BIO *b = NULL;
    char *pass = NULL;
    uint8_t *der = NULL;
    int der_len = 0;

    FK_ENSURE(key_pem != NULL && cert_pem != NULL && password != NULL && out != NULL &&
                  out_len != NULL,
              FK_E_ARG);
    FK_ENSURE(form == FK_PKI_P12_MODERN || form == FK_PKI_P12_LEGACY, FK_E_ARG);
    FK_ENSURE(password_len > 0 && password_len <= 1024,
              fk_diag_set(diag, FK_E_ARG, "password: 1..1024 bytes"));
    FK_ENSURE(memchr(password, '\0', password_len) == NULL,
              fk_diag_set(diag, FK_E_ARG, "password: contains a NUL byte"));
    /* PKCS12_create wants a C string: a private, NUL-terminated copy, wiped below. */
    pass = malloc(password_len + 1);
    FK_ENSURE(pass != NULL, FK_E_NOMEM);
    memcpy(pass, password, password_len);
    pass[password_len] = '\0';

    b = BIO_new_mem_buf(key_pem, -1);
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    key = PEM_read_bio_PrivateKey(b, NULL, no_prompt_cb, NULL);
    FK_ENSURE(key != NULL, fk_diag_set(diag, FK_E_PARSE, "private key: not an unencrypted PEM key"));
    BIO_free(b);
    b = BIO_new_mem_buf(cert_pem, -1);
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    FK_ENSURE(cert != NULL, fk_diag_set(diag, FK_E_PARSE, "certificate: not a PEM certificate"));
    FK_ENSURE(X509_check_private_key(cert, key) == 1,
              fk_diag_set(diag, FK_E_MISMATCH, "the key does not match the certificate"));
    FK_GUARD(parse_chain(chain_pem, &chain));

    int nid = form == FK_PKI_P12_MODERN ? NID_aes_256_cbc : NID_pbe_WithSHA1And3_Key_TripleDES_CBC;
    p12 = PKCS12_create_ex(pass, friendly_name, key, cert, chain, nid, nid, P12_ITER, -1, 0,
                           NULL, NULL);
    FK_ENSURE(p12 != NULL, fk_diag_set(diag, FK_E_CRYPTO, "PKCS12_create failed"));
    FK_GUARD_OSSL(PKCS12_set_mac(p12, pass, (int)password_len, NULL, 0, P12_ITER,
                                 form == FK_PKI_P12_MODERN ? EVP_sha256() : EVP_sha1()),
                  FK_E_CRYPTO);
    der_len = i2d_PKCS12(p12, &der);
    FK_ENSURE(der_len > 0, FK_E_CRYPTO);
    *out = malloc((size_t)der_len);
    FK_ENSURE(*out != NULL, FK_E_NOMEM);
    memcpy(*out, der, (size_t)der_len);
    *out_len = (size_t)der_len;
    rc = FK_OK;
out:
    if (der != NULL) {
        OPENSSL_free(der); /* encrypted under the password: not plaintext key material */
    }
    PKCS12_free(p12);
    sk_X509_pop_free(chain, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(b);
    fk_free_secret(pass, password_len + 1);
    ERR_clear_error();
    return rc;
}

enum fk_err fk_pki_export_p12(const struct fk_pki_ca *ca, enum fk_pki_kind kind,
                              const char *name, const char *password, size_t password_len,
                              enum fk_pki_p12_form form, uint8_t **out, size_t *out_len,
                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *crt_path = NULL;
    char *key_path = NULL;
    char *crt = NULL;
    char *key = NULL;
    size_t key_len = 0;

    FK_ENSURE(ca != NULL, FK_E_ARG);
    FK_ENSURE(fk_pki_name_valid(name), fk_diag_set(diag, FK_E_ARG, "invalid name"));
    FK_GUARD(pki_name_path(ca->dir, kind, name, ".crt.pem", &crt_path));
    FK_GUARD(pki_name_path(ca->dir, kind, name, ".key.pem", &key_path));
    rc = pki_read_text(crt_path, PKI_PEM_MAX, &crt, NULL, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, crt_path, 0, "no %s certificate '%s' (ca issue)",
                        fk_pki_kind_name(kind), name);
    }
    FK_GUARD(rc);
    rc = pki_read_text(key_path, PKI_PEM_MAX, &key, &key_len, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, key_path, 0,
                        "no private key: issued from a CSR, the key stays with its owner");
    }
    FK_GUARD(rc);
    FK_GUARD(fk_pki_p12_build(key, crt, ca->chain_pem, name, password, password_len, form, out,
                              out_len, diag));
    rc = FK_OK;
out:
    free(crt_path);
    free(key_path);
    free(crt);
    fk_free_secret(key, key_len);
    return rc;
}

enum fk_err fk_pki_read_secret_file(const char *path, char **out, size_t *out_len,
                                    struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *buf = NULL;
    size_t len = 0;
    FK_ENSURE(path != NULL && out != NULL && out_len != NULL, FK_E_ARG);
    FK_GUARD(pki_read_text(path, 4096, &buf, &len, diag));
    /* The first line only: editors add a final newline, and a password never contains one. */
    char *nl = memchr(buf, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - buf) : len;
    if (n > 0 && buf[n - 1] == '\r') {
        n--;
    }
    FK_ENSURE(n > 0, fk_diag_at(diag, FK_E_ARG, path, 1, "empty password"));
    FK_ENSURE(n <= 1024, fk_diag_at(diag, FK_E_TOOBIG, path, 1, "password longer than 1024"));
    FK_ENSURE(memchr(buf, '\0', n) == NULL, fk_diag_at(diag, FK_E_ARG, path, 1, "NUL byte"));
    fk_wipe(buf + n, len - n); /* anything after the first line is not ours to keep */
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    buf = NULL;
    len = 0;
    rc = FK_OK;
out:
    fk_free_secret(buf, len);
    return rc;
}
