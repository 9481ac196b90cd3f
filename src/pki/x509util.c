/* OpenSSL helpers shared by the CA's files (pki.c, issue.c, csr.c, crl.c) and the store
 * next to it (p12.c, devcfg.c): bounded file reads, serial numbers, PEM/DER conversion, names,
 * and the common skeleton of every certificate. Below everything else in src/pki/ except
 * names.c; it knows no CA object and no index. Only OpenSSL 3 APIs. */
#include "pki_internal.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum fk_err pki_read_text(const char *path, size_t max, char **out, size_t *out_len,
                          struct fk_diag *diag) {
    uint8_t *buf = NULL;
    size_t len = 0;
    enum fk_err rc = fk_file_read(path, max, &buf, &len, diag);
    if (rc == FK_E_IO && access(path, F_OK) != 0 && errno == ENOENT) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, path, 0, "no such file");
    }
    if (rc != FK_OK) {
        return rc;
    }
    *out = (char *)buf;
    if (out_len != NULL) {
        *out_len = len;
    }
    return FK_OK;
}

enum fk_err pki_name_path(const char *dir, enum fk_pki_kind kind, const char *name,
                          const char *suffix, char **out) {
    char sub[32];
    snprintf(sub, sizeof sub, "%ss", fk_pki_kind_name(kind));
    char *d = NULL;
    enum fk_err rc = fk_path_join(dir, sub, "", &d);
    if (rc != FK_OK) {
        return rc;
    }
    rc = fk_path_join(d, name, suffix, out);
    free(d);
    return rc;
}

enum fk_err pki_serial_normalise(const char *in, char out[FK_PKI_SERIAL_HEX_LEN * 2 + 1]) {
    if (in == NULL) {
        return FK_E_ARG;
    }
    if (in[0] == '0' && (in[1] == 'x' || in[1] == 'X')) {
        in += 2;
    }
    size_t n = 0;
    int leading = 1;
    for (; *in != '\0'; in++) {
        char c = *in;
        if (c == ':') {
            continue;
        }
        if (c >= 'A' && c <= 'F') {
            c = (char)(c - 'A' + 'a');
        }
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return FK_E_ARG;
        }
        if (leading && c == '0') {
            continue; /* "00ab" and "ab" are the same INTEGER */
        }
        leading = 0;
        if (n >= FK_PKI_SERIAL_HEX_LEN * 2) {
            return FK_E_ARG;
        }
        out[n++] = c;
    }
    if (n == 0) {
        return FK_E_ARG;
    }
    out[n] = '\0';
    return FK_OK;
}

enum fk_err fk_pki_serial_parse(const char *in, char out[FK_PKI_SERIAL_HEX_LEN * 2 + 1]) {
    return pki_serial_normalise(in, out);
}

/* Copies a memory BIO's contents into a fresh NUL-terminated buffer. */
enum fk_err pki_bio_take(BIO *bio, char **out, size_t *out_len) {
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0) {
        return FK_E_CRYPTO;
    }
    char *p = malloc((size_t)n + 1);
    if (p == NULL) {
        return FK_E_NOMEM;
    }
    memcpy(p, data, (size_t)n);
    p[n] = '\0';
    *out = p;
    if (out_len != NULL) {
        *out_len = (size_t)n;
    }
    return FK_OK;
}

enum fk_err pki_cert_pem(const X509 *x, char **out) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *b = BIO_new(BIO_s_mem());
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_X509(b, (X509 *)x), FK_E_CRYPTO);
    FK_GUARD(pki_bio_take(b, out, NULL));
    rc = FK_OK;
out:
    BIO_free(b);
    return rc;
}

/* PKCS#8 PEM of a private key, optionally encrypted (AES-256-CBC, PBKDF2). A secmem BIO
 * cleanses its buffer when freed, so no copy of the key is left in freed memory. */
enum fk_err pki_key_pem(EVP_PKEY *key, const char *pass, size_t pass_len, char **out,
                        size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *b = BIO_new(BIO_s_secmem());
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    if (pass != NULL) {
        FK_ENSURE(pass_len <= 1024, FK_E_ARG);
        FK_GUARD_OSSL(PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), pass, (int)pass_len,
                                                    NULL, NULL),
                      FK_E_CRYPTO);
    } else {
        FK_GUARD_OSSL(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), FK_E_CRYPTO);
    }
    FK_GUARD(pki_bio_take(b, out, out_len));
    rc = FK_OK;
out:
    BIO_free(b);
    return rc;
}

/* The PEM password callback: hands over exactly the bytes we were given and never prompts
 * (OpenSSL's default callback would read the terminal when the key is encrypted). */
struct pass_ref {
    const char *p;
    size_t n;
};
static int pass_cb(char *buf, int size, int rwflag, void *u) {
    (void)rwflag;
    const struct pass_ref *r = u;
    if (r == NULL || r->p == NULL || r->n == 0 || r->n > (size_t)size) {
        return -1;
    }
    memcpy(buf, r->p, r->n);
    return (int)r->n;
}

enum fk_err pki_load_key_pem(const char *pem, size_t len, const char *pass, size_t pass_len,
                             EVP_PKEY **out) {
    struct pass_ref ref = {pass, pass_len};
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL) {
        return FK_E_NOMEM;
    }
    *out = PEM_read_bio_PrivateKey(b, NULL, pass_cb, &ref);
    BIO_free(b);
    return *out != NULL ? FK_OK : FK_E_PARSE;
}

int64_t pki_asn1_to_unix(const ASN1_TIME *t) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    return (int64_t)timegm(&tm);
}

enum fk_err pki_set_time(ASN1_TIME *t, int64_t when) {
    return ASN1_TIME_set(t, (time_t)when) != NULL ? FK_OK : FK_E_CRYPTO;
}

enum fk_err pki_random_serial(ASN1_INTEGER **out, char hex[FK_PKI_SERIAL_HEX_LEN + 1]) {
    uint8_t b[FK_PKI_SERIAL_HEX_LEN / 2];
    enum fk_err rc = fk_random(b, sizeof b);
    if (rc != FK_OK) {
        return rc;
    }
    /* RFC 5280 4.1.2.2: positive and non-zero. Forcing the top bits to 01 also fixes the
     * length (no leading zero octet either way), so every serial prints as 32 hex digits. */
    b[0] = (uint8_t)((b[0] & 0x3f) | 0x40);
    rc = fk_hex_encode(b, sizeof b, hex, FK_PKI_SERIAL_HEX_LEN + 1);
    if (rc != FK_OK) {
        return rc;
    }
    BIGNUM *bn = BN_bin2bn(b, (int)sizeof b, NULL);
    *out = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    return *out != NULL ? FK_OK : FK_E_NOMEM;
}

enum fk_err pki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return FK_E_CRYPTO;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? FK_OK : FK_E_CRYPTO;
}

enum fk_err pki_fingerprint(const X509 *x, char out[7 + 64 + 1]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32) {
        return FK_E_CRYPTO;
    }
    memcpy(out, "sha256:", 7);
    return fk_hex_encode(md, n, out + 7, 65);
}

/* Subject "O=<org>, OU=<ou>, CN=<cn>"; org may be NULL. */
enum fk_err pki_make_name(const char *org, const char *ou, const char *cn, X509_NAME **out) {
    X509_NAME *n = X509_NAME_new();
    if (n == NULL) {
        return FK_E_NOMEM;
    }
    int ok = 1;
    if (org != NULL) {
        ok = ok && X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)org, -1,
                                              -1, 0) == 1;
    }
    if (ou != NULL) {
        ok = ok && X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1,
                                              -1, 0) == 1;
    }
    ok = ok && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                          0) == 1;
    if (!ok) {
        X509_NAME_free(n);
        return FK_E_CRYPTO;
    }
    *out = n;
    return FK_OK;
}

/* Builds and signs a certificate: the common skeleton of CA and leaf certificates. */
enum fk_err pki_build_cert(X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, int64_t nb, int64_t na,
                           ASN1_INTEGER *serial, X509 **out) {
    enum fk_err rc = FK_E_INTERNAL;
    X509 *x = X509_new();
    FK_ENSURE(x != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(X509_set_version(x, X509_VERSION_3), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_serialNumber(x, serial), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_subject_name(x, subject), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : subject),
                  FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_pubkey(x, pub), FK_E_CRYPTO);
    FK_GUARD(pki_set_time(X509_getm_notBefore(x), nb));
    FK_GUARD(pki_set_time(X509_getm_notAfter(x), na));
    *out = x;
    x = NULL;
    rc = FK_OK;
out:
    X509_free(x);
    return rc;
}

enum fk_err pki_sign_cert(X509 *x, EVP_PKEY *key) {
    return X509_sign(x, key, EVP_sha256()) > 0 ? FK_OK : FK_E_CRYPTO;
}

enum fk_err pki_read_in(const char *dir, const char *name, char **out, size_t *len,
                        struct fk_diag *diag) {
    char *p = NULL;
    enum fk_err rc = fk_path_join(dir, name, "", &p);
    if (rc == FK_OK) {
        rc = pki_read_text(p, PKI_PEM_MAX, out, len, diag);
    }
    free(p);
    return rc;
}
