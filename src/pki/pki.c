/* The control-plane CA: creation, loading, issuing (fresh key or CSR), revocation, CRLs.
 *
 * Design: a two-level hierarchy. The root (pathlen 1) signs exactly one issuing CA (pathlen
 * 0) and then only ever its own CRL, so its key can stay encrypted and offline; the issuing CA
 * signs every leaf and the leaf CRL. Leaves carry their identity in two places: the CN (for
 * humans and for peers that only look there) and a URI SAN urn:fleetkey:<kind>:<name> (for
 * the server, which must not confuse a device with an operator of the same name). Serials are
 * 16 random bytes (RFC 5280 4.1.2.2: positive, at most 20 octets), checked for uniqueness in
 * the index. With a CSR only the public key is used; the subject and every extension are
 * ours, so a requester cannot ask for CA:TRUE or someone else's name.
 *
 * Only OpenSSL 3 APIs: EVP_PKEY for keys, X509/X509_CRL builders, EVP_EC_gen. */
#include "pki_internal.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cjson/cJSON.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CLOCK_SKEW 300 /* default notBefore is this many seconds in the past */
#define DAY 86400LL

/* ---- names ------------------------------------------------------------------------------ */
static const char *const kind_names[] = {"device", "server", "mobile", "operator"};

const char *fk_pki_kind_name(enum fk_pki_kind kind) {
    if ((unsigned)kind < sizeof kind_names / sizeof kind_names[0]) {
        return kind_names[kind];
    }
    return "?";
}

enum fk_err fk_pki_kind_parse(const char *s, enum fk_pki_kind *out) {
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
        if (s != NULL && strcmp(s, kind_names[i]) == 0) {
            *out = (enum fk_pki_kind)i;
            return FK_OK;
        }
    }
    return FK_E_ARG;
}

int fk_pki_name_valid(const char *s) {
    if (s == NULL || s[0] == '\0' || s[0] == '.' || s[0] == '-') {
        return 0;
    }
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || n >= FK_PKI_NAME_MAX) {
            return 0;
        }
    }
    return 1;
}

/* A DNS name for a SAN: labels of [A-Za-z0-9-] (1..63, no leading/trailing '-'), at most 253
 * characters; allow_wildcard permits a leftmost "*" label (RFC 6125 6.4.3). */
static int dns_name_valid(const char *s, int allow_wildcard) {
    size_t n = strlen(s);
    if (n == 0 || n > 253) {
        return 0;
    }
    if (allow_wildcard && s[0] == '*') {
        if (s[1] != '.') {
            return 0;
        }
        s += 2;
    }
    size_t label = 0;
    char prev = '.';
    for (const char *p = s;; p++) {
        char c = *p;
        if (c == '.' || c == '\0') {
            if (label == 0 || prev == '-') {
                return 0;
            }
            if (c == '\0') {
                return 1;
            }
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-') {
            if (label == 0 && c == '-') {
                return 0;
            }
            if (++label > 63) {
                return 0;
            }
        } else {
            return 0;
        }
        prev = c;
    }
}

struct reason_name {
    enum fk_pki_reason r;
    const char *name;
};
static const struct reason_name reasons[] = {
    {FK_PKI_REASON_UNSPECIFIED, "unspecified"},
    {FK_PKI_REASON_KEY_COMPROMISE, "keyCompromise"},
    {FK_PKI_REASON_CA_COMPROMISE, "cACompromise"},
    {FK_PKI_REASON_AFFILIATION_CHANGED, "affiliationChanged"},
    {FK_PKI_REASON_SUPERSEDED, "superseded"},
    {FK_PKI_REASON_CESSATION_OF_OPERATION, "cessationOfOperation"},
    {FK_PKI_REASON_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn"},
};

enum fk_err fk_pki_reason_parse(const char *s, enum fk_pki_reason *out) {
    for (size_t i = 0; s != NULL && i < sizeof reasons / sizeof reasons[0]; i++) {
        if (strcmp(s, reasons[i].name) == 0) {
            *out = reasons[i].r;
            return FK_OK;
        }
    }
    return FK_E_ARG;
}

const char *fk_pki_reason_name(enum fk_pki_reason r) {
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (reasons[i].r == r) {
            return reasons[i].name;
        }
    }
    return "?";
}

/* ---- small helpers ---------------------------------------------------------------------- */
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
static enum fk_err bio_take(BIO *bio, char **out, size_t *out_len) {
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

static enum fk_err cert_pem(const X509 *x, char **out) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *b = BIO_new(BIO_s_mem());
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_X509(b, (X509 *)x), FK_E_CRYPTO);
    FK_GUARD(bio_take(b, out, NULL));
    rc = FK_OK;
out:
    BIO_free(b);
    return rc;
}

/* PKCS#8 PEM of a private key, optionally encrypted (AES-256-CBC, PBKDF2). A secmem BIO
 * cleanses its buffer when freed, so no copy of the key is left in freed memory. */
static enum fk_err key_pem(EVP_PKEY *key, const char *pass, size_t pass_len, char **out,
                           size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *b = BIO_new(BIO_s_secmem());
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    if (pass != NULL) {
        FK_ENSURE(pass_len <= 1024, FK_E_ARG);
        FK_GUARD_OSSL(PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), pass,
                                                    (int)pass_len, NULL, NULL),
                      FK_E_CRYPTO);
    } else {
        FK_GUARD_OSSL(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), FK_E_CRYPTO);
    }
    FK_GUARD(bio_take(b, out, out_len));
    rc = FK_OK;
out:
    BIO_free(b);
    return rc;
}

static enum fk_err key_der(EVP_PKEY *key, uint8_t **out, size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
    uint8_t *der = NULL;
    int n = 0;
    FK_ENSURE(p8 != NULL, FK_E_CRYPTO);
    n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    *out = malloc((size_t)n);
    FK_ENSURE(*out != NULL, FK_E_NOMEM);
    memcpy(*out, der, (size_t)n);
    *out_len = (size_t)n;
    rc = FK_OK;
out:
    if (der != NULL) {
        OPENSSL_clear_free(der, (size_t)n);
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
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

static enum fk_err load_key_pem(const char *pem, size_t len, const char *pass, size_t pass_len,
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

static enum fk_err load_cert_pem(const char *pem, size_t len, X509 **out) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL) {
        return FK_E_NOMEM;
    }
    *out = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return *out != NULL ? FK_OK : FK_E_PARSE;
}

static int64_t asn1_to_unix(const ASN1_TIME *t) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    return (int64_t)timegm(&tm);
}

static enum fk_err set_time(ASN1_TIME *t, int64_t when) {
    return ASN1_TIME_set(t, (time_t)when) != NULL ? FK_OK : FK_E_CRYPTO;
}

static enum fk_err random_serial(ASN1_INTEGER **out, char hex[FK_PKI_SERIAL_HEX_LEN + 1]) {
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

static enum fk_err add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
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

static enum fk_err fingerprint(const X509 *x, char out[7 + 64 + 1]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32) {
        return FK_E_CRYPTO;
    }
    memcpy(out, "sha256:", 7);
    return fk_hex_encode(md, n, out + 7, 65);
}

/* Subject "O=<org>, OU=<ou>, CN=<cn>"; org may be NULL. */
static enum fk_err make_name(const char *org, const char *ou, const char *cn, X509_NAME **out) {
    X509_NAME *n = X509_NAME_new();
    if (n == NULL) {
        return FK_E_NOMEM;
    }
    int ok = 1;
    if (org != NULL) {
        ok = ok && X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)org,
                                              -1, -1, 0) == 1;
    }
    if (ou != NULL) {
        ok = ok && X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou,
                                              -1, -1, 0) == 1;
    }
    ok = ok && X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                          -1, 0) == 1;
    if (!ok) {
        X509_NAME_free(n);
        return FK_E_CRYPTO;
    }
    *out = n;
    return FK_OK;
}

/* The organisation of the issuing CA, copied into leaf subjects (malloc'd, may be NULL). */
static char *name_org(const X509_NAME *n) {
    int i = X509_NAME_get_index_by_NID(n, NID_organizationName, -1);
    if (i < 0) {
        return NULL;
    }
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
    if (len < 0) {
        return NULL;
    }
    char *s = malloc((size_t)len + 1);
    if (s != NULL) {
        memcpy(s, utf8, (size_t)len);
        s[len] = '\0';
    }
    OPENSSL_free(utf8);
    return s;
}

/* Builds and signs a certificate: the common skeleton of CA and leaf certificates. */
static enum fk_err build_cert(X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, int64_t nb,
                              int64_t na, ASN1_INTEGER *serial, X509 **out) {
    enum fk_err rc = FK_E_INTERNAL;
    X509 *x = X509_new();
    FK_ENSURE(x != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(X509_set_version(x, X509_VERSION_3), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_serialNumber(x, serial), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_subject_name(x, subject), FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
                                                         : subject),
                  FK_E_CRYPTO);
    FK_GUARD_OSSL(X509_set_pubkey(x, pub), FK_E_CRYPTO);
    FK_GUARD(set_time(X509_getm_notBefore(x), nb));
    FK_GUARD(set_time(X509_getm_notAfter(x), na));
    *out = x;
    x = NULL;
    rc = FK_OK;
out:
    X509_free(x);
    return rc;
}

static enum fk_err sign_cert(X509 *x, EVP_PKEY *key) {
    return X509_sign(x, key, EVP_sha256()) > 0 ? FK_OK : FK_E_CRYPTO;
}

/* ---- CRL -------------------------------------------------------------------------------- */
/* Signs a CRL v2 of `issuer` listing the revoked entries of `certs` (a cJSON array from the
 * index; NULL for none). RFC 5280 5.2: AKI and CRL number are required in conforming CRLs. */
static enum fk_err build_crl(X509 *issuer, EVP_PKEY *key, const cJSON *certs, long long number,
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
    FK_GUARD(set_time(t, this_update));
    FK_GUARD_OSSL(X509_CRL_set1_lastUpdate(crl, t), FK_E_CRYPTO);
    FK_GUARD(set_time(t, next_update));
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
        FK_GUARD(set_time(t, (int64_t)at->valuedouble));
        FK_GUARD_OSSL(X509_REVOKED_set_revocationDate(rev, t), FK_E_CRYPTO);
        /* RFC 5280 5.3.1: "the reason code CRL entry extension SHOULD be absent instead of
         * using the unspecified (0) reasonCode value". */
        if (reason != FK_PKI_REASON_UNSPECIFIED) {
            code = ASN1_ENUMERATED_new();
            FK_ENSURE(code != NULL, FK_E_NOMEM);
            FK_GUARD_OSSL(ASN1_ENUMERATED_set(code, (long)reason), FK_E_CRYPTO);
            FK_GUARD_OSSL(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0),
                          FK_E_CRYPTO);
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
    X509_EXTENSION *aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier,
                                              "keyid:always");
    FK_ENSURE(aki != NULL, FK_E_CRYPTO);
    int added = X509_CRL_add_ext(crl, aki, -1);
    X509_EXTENSION_free(aki);
    FK_ENSURE(added == 1, FK_E_CRYPTO);

    FK_ENSURE(X509_CRL_sign(crl, key, EVP_sha256()) > 0, FK_E_CRYPTO);
    b = BIO_new(BIO_s_mem());
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_X509_CRL(b, crl), FK_E_CRYPTO);
    FK_GUARD(bio_take(b, pem, NULL));
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

/* ---- ca init ---------------------------------------------------------------------------- */
static const char *const ca_files[] = {"root.key.pem", "root.crt.pem", "issuing.key.pem",
                                       "issuing.crt.pem", "ca-chain.pem", "root.crl.pem",
                                       PKI_INDEX_FILE};

static enum fk_err write_in(const char *dir, const char *name, const void *data, size_t len,
                            unsigned mode, struct fk_diag *diag) {
    char *p = NULL;
    enum fk_err rc = fk_path_join(dir, name, "", &p);
    if (rc == FK_OK) {
        rc = fk_file_write_atomic(p, data, len, mode, FK_WRITE_EXCL, diag);
    }
    free(p);
    return rc;
}

static enum fk_err make_ca_cert(const char *org, const char *cn, EVP_PKEY *key, X509 *issuer,
                                EVP_PKEY *ikey, int pathlen, int64_t nb, int64_t na,
                                X509 **out) {
    enum fk_err rc = FK_E_INTERNAL;
    X509_NAME *subj = NULL;
    ASN1_INTEGER *serial = NULL;
    X509 *x = NULL;
    char hex[FK_PKI_SERIAL_HEX_LEN + 1];
    char bc[40];

    FK_GUARD(make_name(org, NULL, cn, &subj));
    FK_GUARD(random_serial(&serial, hex));
    FK_GUARD(build_cert(subj, key, issuer, nb, na, serial, &x));
    /* RFC 5280 4.2.1.9: basicConstraints MUST be critical in CA certificates; 4.2.1.3: a
     * key that signs certificates/CRLs asserts keyCertSign/cRLSign. */
    snprintf(bc, sizeof bc, "critical,CA:TRUE,pathlen:%d", pathlen);
    FK_GUARD(add_ext(x, x, NID_basic_constraints, bc));
    FK_GUARD(add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign"));
    FK_GUARD(add_ext(x, x, NID_subject_key_identifier, "hash"));
    FK_GUARD(add_ext(x, issuer != NULL ? issuer : x, NID_authority_key_identifier,
                     "keyid:always"));
    FK_GUARD(sign_cert(x, ikey != NULL ? ikey : key));
    *out = x;
    x = NULL;
    rc = FK_OK;
out:
    X509_free(x);
    ASN1_INTEGER_free(serial);
    X509_NAME_free(subj);
    return rc;
}

enum fk_err fk_pki_ca_init(const char *dir, const struct fk_pki_init_opts *opts,
                           struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int lock_fd = -1;
    char *index_txt = NULL;
    size_t index_len = 0;
    EVP_PKEY *root_key = NULL;
    EVP_PKEY *iss_key = NULL;
    X509 *root = NULL;
    X509 *iss = NULL;
    char *root_key_pem = NULL;
    size_t root_key_len = 0;
    char *iss_key_pem = NULL;
    size_t iss_key_len = 0;
    char *root_pem = NULL;
    char *iss_pem = NULL;
    char *crl_pem = NULL;
    char *chain = NULL;
    char *sub = NULL;
    char cn[80];

    FK_ENSURE(dir != NULL && opts != NULL, FK_E_ARG);
    const char *org = opts->name != NULL ? opts->name : "fleetkey";
    unsigned days = opts->days != 0 ? opts->days : 3650;
    FK_ENSURE(org[0] != '\0' && strlen(org) <= FK_PKI_CA_NAME_MAX,
              fk_diag_set(diag, FK_E_ARG, "--name: 1..%d characters", FK_PKI_CA_NAME_MAX));
    for (const char *p = org; *p != '\0'; p++) {
        FK_ENSURE((unsigned char)*p >= 0x20 && *p != 0x7f,
                  fk_diag_set(diag, FK_E_ARG, "--name: control characters are not allowed"));
    }
    FK_ENSURE(days <= FK_PKI_MAX_DAYS / 2,
              fk_diag_set(diag, FK_E_RANGE, "days: 1..%d", FK_PKI_MAX_DAYS / 2));
    FK_ENSURE(opts->passphrase == NULL || (opts->passphrase_len > 0 &&
                                           opts->passphrase_len <= 1024),
              fk_diag_set(diag, FK_E_ARG, "passphrase: 1..1024 bytes"));

    FK_GUARD(fk_mkdirs(dir, 0700, diag));
    FK_GUARD(pki_lock_dir(dir, &lock_fd, diag));
    /* Never overwrite a CA: checked under the lock, so two concurrent inits cannot both pass. */
    for (size_t i = 0; i < sizeof ca_files / sizeof ca_files[0]; i++) {
        char *p = NULL;
        FK_GUARD(fk_path_join(dir, ca_files[i], "", &p));
        int exists = access(p, F_OK) == 0;
        free(p);
        FK_ENSURE(!exists, fk_diag_at(diag, FK_E_EXISTS, dir, 0,
                                      "a CA already exists here (%s); refusing to overwrite it",
                                      ca_files[i]));
    }

    root_key = EVP_EC_gen("P-256");
    iss_key = EVP_EC_gen("P-256");
    FK_ENSURE(root_key != NULL && iss_key != NULL, FK_E_CRYPTO);
    int64_t now = (int64_t)time(NULL);
    int64_t nb = now - CLOCK_SKEW;
    int64_t iss_na = now + (int64_t)days * DAY;
    int64_t root_na = now + 2 * (int64_t)days * DAY;
    snprintf(cn, sizeof cn, "%s Root CA", org);
    FK_GUARD(make_ca_cert(org, cn, root_key, NULL, NULL, 1, nb, root_na, &root));
    snprintf(cn, sizeof cn, "%s Issuing CA", org);
    FK_GUARD(make_ca_cert(org, cn, iss_key, root, root_key, 0, nb, iss_na, &iss));
    /* The root's CRL only matters while the issuing CA lives: give it the same horizon. */
    FK_GUARD(build_crl(root, root_key, NULL, 1, nb, iss_na, &crl_pem));

    FK_GUARD(key_pem(root_key, opts->passphrase, opts->passphrase_len, &root_key_pem,
                     &root_key_len));
    FK_GUARD(key_pem(iss_key, NULL, 0, &iss_key_pem, &iss_key_len));
    FK_GUARD(cert_pem(root, &root_pem));
    FK_GUARD(cert_pem(iss, &iss_pem));
    size_t chain_len = strlen(iss_pem) + strlen(root_pem) + 1;
    chain = malloc(chain_len);
    FK_ENSURE(chain != NULL, FK_E_NOMEM);
    snprintf(chain, chain_len, "%s%s", iss_pem, root_pem);

    for (enum fk_pki_kind k = FK_PKI_DEVICE; k <= FK_PKI_OPERATOR; k++) {
        char sname[32];
        snprintf(sname, sizeof sname, "%ss", fk_pki_kind_name(k));
        FK_GUARD(fk_path_join(dir, sname, "", &sub));
        FK_GUARD(fk_mkdirs(sub, 0700, diag));
        free(sub);
        sub = NULL;
    }
    FK_GUARD(fk_path_join(dir, "certs", "", &sub));
    FK_GUARD(fk_mkdirs(sub, 0700, diag));

    /* Keys first, index last: the index is what makes a directory "a CA" for ca_open. */
    FK_GUARD(write_in(dir, "root.key.pem", root_key_pem, root_key_len, 0600, diag));
    FK_GUARD(write_in(dir, "issuing.key.pem", iss_key_pem, iss_key_len, 0600, diag));
    FK_GUARD(write_in(dir, "root.crt.pem", root_pem, strlen(root_pem), 0644, diag));
    FK_GUARD(write_in(dir, "issuing.crt.pem", iss_pem, strlen(iss_pem), 0644, diag));
    FK_GUARD(write_in(dir, "ca-chain.pem", chain, strlen(chain), 0644, diag));
    FK_GUARD(write_in(dir, "root.crl.pem", crl_pem, strlen(crl_pem), 0644, diag));
    FK_GUARD(pki_index_initial(&index_txt, &index_len));
    FK_GUARD(write_in(dir, PKI_INDEX_FILE, index_txt, index_len, 0644, diag));

    char fpr[72];
    FK_GUARD(fingerprint(root, fpr));
    fk_log(FK_LOG_INFO, "pki: CA created in %s (root %s%s)", dir, fpr,
           opts->passphrase != NULL ? ", key encrypted" : "");
    rc = FK_OK;
out:
    if (lock_fd >= 0) {
        close(lock_fd);
    }
    free(index_txt);
    fk_free_secret(root_key_pem, root_key_len);
    fk_free_secret(iss_key_pem, iss_key_len);
    free(root_pem);
    free(iss_pem);
    free(crl_pem);
    free(chain);
    free(sub);
    X509_free(root);
    X509_free(iss);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(iss_key);
    return rc;
}

/* ---- ca open ---------------------------------------------------------------------------- */
static enum fk_err read_in(const char *dir, const char *name, char **out, size_t *len,
                           struct fk_diag *diag) {
    char *p = NULL;
    enum fk_err rc = fk_path_join(dir, name, "", &p);
    if (rc == FK_OK) {
        rc = pki_read_text(p, PKI_PEM_MAX, out, len, diag);
    }
    free(p);
    return rc;
}

enum fk_err fk_pki_ca_open(const char *dir, struct fk_pki_ca **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_pki_ca *ca = NULL;
    char *root_txt = NULL;
    size_t root_len = 0;
    char *iss_txt = NULL;
    size_t iss_len = 0;
    char *key_txt = NULL;
    size_t key_len = 0;

    FK_ENSURE(dir != NULL && out != NULL, FK_E_ARG);
    ca = calloc(1, sizeof *ca);
    FK_ENSURE(ca != NULL, FK_E_NOMEM);
    pki_index_init(&ca->ix);
    ca->dir = strdup(dir);
    FK_ENSURE(ca->dir != NULL, FK_E_NOMEM);
    rc = read_in(dir, "root.crt.pem", &root_txt, &root_len, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, dir, 0, "no CA here (run 'ca init --dir %s')", dir);
    }
    FK_GUARD(rc);
    FK_GUARD(read_in(dir, "issuing.crt.pem", &iss_txt, &iss_len, diag));
    FK_GUARD(read_in(dir, "issuing.key.pem", &key_txt, &key_len, diag));
    FK_ENSURE(load_cert_pem(root_txt, root_len, &ca->root) == FK_OK,
              fk_diag_at(diag, FK_E_PARSE, dir, 0, "root.crt.pem: not a certificate"));
    FK_ENSURE(load_cert_pem(iss_txt, iss_len, &ca->issuing) == FK_OK,
              fk_diag_at(diag, FK_E_PARSE, dir, 0, "issuing.crt.pem: not a certificate"));
    FK_ENSURE(load_key_pem(key_txt, key_len, NULL, 0, &ca->issuing_key) == FK_OK,
              fk_diag_at(diag, FK_E_PARSE, dir, 0, "issuing.key.pem: not an unencrypted key"));
    FK_ENSURE(X509_check_private_key(ca->issuing, ca->issuing_key) == 1,
              fk_diag_at(diag, FK_E_MISMATCH, dir, 0,
                         "issuing.key.pem does not match issuing.crt.pem"));
    EVP_PKEY *root_pub = X509_get0_pubkey(ca->root);
    FK_ENSURE(root_pub != NULL && X509_verify(ca->issuing, root_pub) == 1,
              fk_diag_at(diag, FK_E_MISMATCH, dir, 0, "issuing CA is not signed by the root"));
    ERR_clear_error();
    FK_GUARD(cert_pem(ca->root, &ca->root_pem));
    char *iss_pem = NULL;
    FK_GUARD(cert_pem(ca->issuing, &iss_pem));
    size_t n = strlen(iss_pem) + strlen(ca->root_pem) + 1;
    ca->chain_pem = malloc(n);
    if (ca->chain_pem != NULL) {
        snprintf(ca->chain_pem, n, "%s%s", iss_pem, ca->root_pem);
    }
    free(iss_pem);
    FK_ENSURE(ca->chain_pem != NULL, FK_E_NOMEM);
    *out = ca;
    ca = NULL;
    rc = FK_OK;
out:
    free(root_txt);
    free(iss_txt);
    fk_free_secret(key_txt, key_len);
    fk_pki_ca_free(ca);
    return rc;
}

void fk_pki_ca_free(struct fk_pki_ca *ca) {
    if (ca == NULL) {
        return;
    }
    pki_index_free(&ca->ix);
    EVP_PKEY_free(ca->issuing_key); /* OpenSSL cleanses key material on free */
    X509_free(ca->root);
    X509_free(ca->issuing);
    free(ca->root_pem);
    free(ca->chain_pem);
    free(ca->dir);
    free(ca);
}

const char *fk_pki_ca_dir(const struct fk_pki_ca *ca) {
    return ca->dir;
}
const char *fk_pki_ca_root_pem(const struct fk_pki_ca *ca) {
    return ca->root_pem;
}
const char *fk_pki_ca_chain_pem(const struct fk_pki_ca *ca) {
    return ca->chain_pem;
}

/* ---- CSR -------------------------------------------------------------------------------- */
static int has_pem_header(const uint8_t *buf, size_t len) {
    static const char tag[] = "-----BEGIN";
    for (size_t i = 0; i + sizeof tag - 1 <= len; i++) {
        if (memcmp(buf + i, tag, sizeof tag - 1) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Parses, verifies and policy-checks a CSR; *out (may be NULL) receives the request. */
static enum fk_err csr_load(const uint8_t *buf, size_t len, enum fk_pki_kind kind,
                            const char *name, X509_REQ **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    X509_REQ *req = NULL;
    BIO *b = NULL;
    unsigned char *utf8 = NULL;

    FK_ENSURE(buf != NULL && len > 0, fk_diag_set(diag, FK_E_PARSE, "CSR: empty"));
    FK_ENSURE(len <= FK_PKI_CSR_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "CSR: larger than %u bytes", FK_PKI_CSR_MAX));
    if (has_pem_header(buf, len)) {
        b = BIO_new_mem_buf(buf, (int)len);
        FK_ENSURE(b != NULL, FK_E_NOMEM);
        req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    } else {
        const unsigned char *p = buf;
        req = d2i_X509_REQ(NULL, &p, (long)len);
        /* DER must be exactly one request: trailing bytes mean a damaged or spliced file. */
        FK_ENSURE(req == NULL || p == buf + len,
                  fk_diag_set(diag, FK_E_PARSE, "CSR: trailing data after the request"));
    }
    FK_ENSURE(req != NULL,
              fk_diag_set(diag, FK_E_PARSE, "CSR: not a PKCS#10 request (PEM or DER)"));
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    FK_ENSURE(pub != NULL, fk_diag_set(diag, FK_E_PARSE, "CSR: unreadable public key"));
    /* The self-signature proves the requester holds the private key (RFC 2986 4.2). */
    FK_ENSURE(X509_REQ_verify(req, pub) == 1,
              fk_diag_set(diag, FK_E_VERIFY, "CSR: signature does not verify"));

    int id = EVP_PKEY_get_base_id(pub);
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        FK_ENSURE(EVP_PKEY_get_group_name(pub, group, sizeof group, &glen) == 1,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: EC key without a named curve"));
        FK_ENSURE(strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
                      strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: curve %s not allowed (P-256, P-384)",
                              group));
    } else if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pub);
        FK_ENSURE(bits >= 2048 && bits <= 8192,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: RSA-%d not allowed (2048..8192)", bits));
    } else {
        FK_ENSURE(0, fk_diag_set(diag, FK_E_POLICY,
                                 "CSR: key type not allowed (EC P-256/P-384 or RSA)"));
    }

    /* Policy on the subject: the name is ours (from the command line); a CSR may carry a CN,
     * but then it must be that name, so a request for "robot-A" cannot become "robot-B". */
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i >= 0) {
        FK_ENSURE(X509_NAME_get_index_by_NID(subj, NID_commonName, i) < 0,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: more than one CN"));
        int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
        FK_ENSURE(n >= 0, fk_diag_set(diag, FK_E_PARSE, "CSR: unreadable CN"));
        int same = name != NULL && strlen(name) == (size_t)n &&
                   (kind == FK_PKI_SERVER ? strncasecmp((const char *)utf8, name, (size_t)n)
                                          : memcmp(utf8, name, (size_t)n)) == 0;
        FK_ENSURE(same, fk_diag_set(diag, FK_E_POLICY,
                                    "CSR: CN does not match the %s name '%s'",
                                    fk_pki_kind_name(kind), name != NULL ? name : ""));
    }
    if (out != NULL) {
        *out = req;
        req = NULL;
    }
    rc = FK_OK;
out:
    OPENSSL_free(utf8);
    X509_REQ_free(req);
    BIO_free(b);
    ERR_clear_error(); /* failures are reported through rc/diag, not the OpenSSL queue */
    return rc;
}

enum fk_err fk_pki_csr_check(const uint8_t *buf, size_t len, enum fk_pki_kind kind,
                             const char *name, struct fk_diag *diag) {
    return csr_load(buf, len, kind, name, NULL, diag);
}

/* ---- issue ------------------------------------------------------------------------------ */
struct fk_pki_issued {
    enum fk_pki_kind kind;
    char name[FK_PKI_NAME_MAX + 1];
    char serial[FK_PKI_SERIAL_HEX_LEN + 1];
    char fpr[72];
    uint8_t *cert_der;
    size_t cert_der_len;
    char *cert_pem;
    char *chain_pem;
    uint8_t *key_der;
    size_t key_der_len;
    char *key_pem;
    size_t key_pem_len;
    int64_t not_before;
    int64_t not_after;
};

void fk_pki_issued_free(struct fk_pki_issued *is) {
    if (is == NULL) {
        return;
    }
    fk_free_secret(is->key_der, is->key_der_len);
    fk_free_secret(is->key_pem, is->key_pem_len);
    free(is->cert_der);
    free(is->cert_pem);
    free(is->chain_pem);
    free(is);
}

enum fk_pki_kind fk_pki_issued_kind(const struct fk_pki_issued *is) {
    return is->kind;
}
const char *fk_pki_issued_name(const struct fk_pki_issued *is) {
    return is->name;
}
const char *fk_pki_issued_serial(const struct fk_pki_issued *is) {
    return is->serial;
}
const char *fk_pki_issued_fingerprint(const struct fk_pki_issued *is) {
    return is->fpr;
}
const uint8_t *fk_pki_issued_cert_der(const struct fk_pki_issued *is, size_t *len) {
    *len = is->cert_der_len;
    return is->cert_der;
}
const char *fk_pki_issued_cert_pem(const struct fk_pki_issued *is) {
    return is->cert_pem;
}
const char *fk_pki_issued_chain_pem(const struct fk_pki_issued *is) {
    return is->chain_pem;
}
const uint8_t *fk_pki_issued_key_der(const struct fk_pki_issued *is, size_t *len) {
    *len = is->key_der_len;
    return is->key_der;
}
const char *fk_pki_issued_key_pem(const struct fk_pki_issued *is) {
    return is->key_pem;
}
int64_t fk_pki_issued_not_before(const struct fk_pki_issued *is) {
    return is->not_before;
}
int64_t fk_pki_issued_not_after(const struct fk_pki_issued *is) {
    return is->not_after;
}

/* subjectAltName: the URI identity for clients, DNS/IP names for servers. Built as
 * GENERAL_NAMEs rather than a config string so no input can inject another entry. */
static enum fk_err add_san(X509 *x, const struct fk_pki_issue_opts *o, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *g = NULL;
    ASN1_IA5STRING *ia5 = NULL;
    FK_ENSURE(gens != NULL, FK_E_NOMEM);
    if (o->kind != FK_PKI_SERVER) {
        char uri[128];
        snprintf(uri, sizeof uri, "urn:fleetkey:%s:%s", fk_pki_kind_name(o->kind), o->name);
        ia5 = ASN1_IA5STRING_new();
        FK_ENSURE(ia5 != NULL, FK_E_NOMEM);
        FK_GUARD_OSSL(ASN1_STRING_set(ia5, uri, -1), FK_E_NOMEM);
        g = GENERAL_NAME_new();
        FK_ENSURE(g != NULL, FK_E_NOMEM);
        GENERAL_NAME_set0_value(g, GEN_URI, ia5);
        ia5 = NULL;
        FK_ENSURE(sk_GENERAL_NAME_push(gens, g) > 0, FK_E_NOMEM);
        g = NULL;
    } else {
        for (size_t i = 0; i <= o->n_sans; i++) {
            const char *s = i == 0 ? o->name : o->sans[i - 1];
            if (strncmp(s, "IP:", 3) == 0) {
                ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s + 3);
                FK_ENSURE(ip != NULL,
                          fk_diag_set(diag, FK_E_ARG, "--san %s: not an IP address", s));
                g = GENERAL_NAME_new();
                if (g == NULL) {
                    ASN1_OCTET_STRING_free(ip);
                }
                FK_ENSURE(g != NULL, FK_E_NOMEM);
                GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
            } else {
                const char *dns = strncmp(s, "DNS:", 4) == 0 ? s + 4 : s;
                FK_ENSURE(dns_name_valid(dns, i > 0),
                          fk_diag_set(diag, FK_E_ARG, "%s '%s': not a DNS name",
                                      i == 0 ? "server name" : "--san", s));
                ia5 = ASN1_IA5STRING_new();
                FK_ENSURE(ia5 != NULL, FK_E_NOMEM);
                FK_GUARD_OSSL(ASN1_STRING_set(ia5, dns, -1), FK_E_NOMEM);
                g = GENERAL_NAME_new();
                FK_ENSURE(g != NULL, FK_E_NOMEM);
                GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
                ia5 = NULL;
            }
            FK_ENSURE(sk_GENERAL_NAME_push(gens, g) > 0, FK_E_NOMEM);
            g = NULL;
        }
    }
    FK_GUARD_OSSL(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT),
                  FK_E_CRYPTO);
    rc = FK_OK;
out:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(g);
    GENERAL_NAMES_free(gens);
    return rc;
}

static unsigned default_days(enum fk_pki_kind k) {
    switch (k) {
    case FK_PKI_DEVICE:
        return 730;
    case FK_PKI_SERVER:
        return 397;
    default:
        return 365;
    }
}

static enum fk_err check_opts(const struct fk_pki_ca *ca, const struct fk_pki_issue_opts *o,
                              int64_t *nb, int64_t *na, struct fk_diag *diag) {
    if ((unsigned)o->kind > FK_PKI_OPERATOR) {
        return fk_diag_set(diag, FK_E_ARG, "unknown certificate kind");
    }
    if (!fk_pki_name_valid(o->name)) {
        return fk_diag_set(diag, FK_E_ARG,
                           "%s name '%s': 1..%d characters of A-Z a-z 0-9 . _ - (not leading "
                           ". or -)",
                           fk_pki_kind_name(o->kind), o->name != NULL ? o->name : "",
                           FK_PKI_NAME_MAX);
    }
    if (o->kind == FK_PKI_SERVER && !dns_name_valid(o->name, 0)) {
        return fk_diag_set(diag, FK_E_ARG, "server name '%s': not a DNS host name", o->name);
    }
    if (o->n_sans > 0 && o->kind != FK_PKI_SERVER) {
        return fk_diag_set(diag, FK_E_ARG, "--san applies to server certificates only");
    }
    if (o->n_sans > FK_PKI_MAX_SANS || (o->n_sans > 0 && o->sans == NULL)) {
        return fk_diag_set(diag, FK_E_ARG, "at most %d SANs", FK_PKI_MAX_SANS);
    }
    if (o->not_before != 0 || o->not_after != 0) {
        if (o->not_before < 0 || o->not_after <= o->not_before) {
            return fk_diag_set(diag, FK_E_RANGE, "validity: not_before must precede not_after");
        }
        *nb = o->not_before;
        *na = o->not_after;
    } else {
        unsigned days = o->days != 0 ? o->days : default_days(o->kind);
        if (days > FK_PKI_MAX_DAYS) {
            return fk_diag_set(diag, FK_E_RANGE, "days: 1..%d", FK_PKI_MAX_DAYS);
        }
        int64_t now = (int64_t)time(NULL);
        *nb = now - CLOCK_SKEW;
        *na = now + (int64_t)days * DAY;
    }
    /* A leaf that outlives its issuer would fail path validation at the end anyway; say so
     * now rather than let it surprise a fleet later. */
    int64_t ca_na = asn1_to_unix(X509_get0_notAfter(ca->issuing));
    int64_t ca_nb = asn1_to_unix(X509_get0_notBefore(ca->issuing));
    if (o->days == 0 && o->not_after == 0 && *na > ca_na) {
        *na = ca_na; /* a default, not a request: shorten it to what the CA can vouch for */
    }
    if (*nb < ca_nb && o->not_before == 0) {
        *nb = ca_nb; /* the clock-skew allowance may not reach before the CA itself */
    }
    if (*na > ca_na || *nb < ca_nb) {
        char when[21];
        fk_time_rfc3339(ca_na, when);
        return fk_diag_set(diag, FK_E_RANGE,
                           "validity outside the issuing CA's (which ends %s); use fewer days",
                           when);
    }
    return FK_OK;
}

enum fk_err fk_pki_issue(struct fk_pki_ca *ca, const struct fk_pki_issue_opts *o,
                         struct fk_pki_issued **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    struct fk_pki_issued *is = NULL;
    X509_REQ *req = NULL;
    EVP_PKEY *key = NULL;
    X509_NAME *subj = NULL;
    ASN1_INTEGER *serial = NULL;
    X509 *x = NULL;
    char *org = NULL;
    char *path = NULL;
    uint8_t *der = NULL;
    int64_t nb = 0;
    int64_t na = 0;

    FK_ENSURE(ca != NULL && o != NULL && out != NULL, FK_E_ARG);
    *out = NULL;
    FK_GUARD(check_opts(ca, o, &nb, &na, diag));
    is = calloc(1, sizeof *is);
    FK_ENSURE(is != NULL, FK_E_NOMEM);
    is->kind = o->kind;
    snprintf(is->name, sizeof is->name, "%s", o->name);
    is->not_before = nb;
    is->not_after = na;

    EVP_PKEY *pub = NULL;
    if (o->csr != NULL) {
        FK_GUARD(csr_load(o->csr, o->csr_len, o->kind, o->name, &req, diag));
        pub = X509_REQ_get0_pubkey(req);
    } else {
        key = EVP_EC_gen("P-256");
        FK_ENSURE(key != NULL, FK_E_CRYPTO);
        pub = key;
        FK_GUARD(key_pem(key, NULL, 0, &is->key_pem, &is->key_pem_len));
        FK_GUARD(key_der(key, &is->key_der, &is->key_der_len));
    }

    org = name_org(X509_get_subject_name(ca->issuing));
    FK_GUARD(make_name(org, fk_pki_kind_name(o->kind), o->name, &subj));

    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    do {
        ASN1_INTEGER_free(serial);
        serial = NULL;
        FK_GUARD(random_serial(&serial, is->serial));
    } while (pki_index_find(&ca->ix, is->serial) != NULL); /* 2^-126 per try; cheap to be sure */

    FK_GUARD(build_cert(subj, pub, ca->issuing, nb, na, serial, &x));
    FK_GUARD(add_ext(x, ca->issuing, NID_basic_constraints, "critical,CA:FALSE"));
    /* ECDSA keys only sign in TLS; an RSA key from a CSR may also need keyEncipherment for
     * TLS 1.2 RSA key exchange. */
    FK_GUARD(add_ext(x, ca->issuing, NID_key_usage,
                     EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA
                         ? "critical,digitalSignature,keyEncipherment"
                         : "critical,digitalSignature"));
    FK_GUARD(add_ext(x, ca->issuing, NID_ext_key_usage,
                     o->kind == FK_PKI_SERVER ? "serverAuth" : "clientAuth"));
    FK_GUARD(add_ext(x, ca->issuing, NID_subject_key_identifier, "hash"));
    FK_GUARD(add_ext(x, ca->issuing, NID_authority_key_identifier, "keyid:always"));
    FK_GUARD(add_san(x, o, diag));
    FK_GUARD(sign_cert(x, ca->issuing_key));

    int n = i2d_X509(x, &der);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    is->cert_der = malloc((size_t)n);
    FK_ENSURE(is->cert_der != NULL, FK_E_NOMEM);
    memcpy(is->cert_der, der, (size_t)n);
    is->cert_der_len = (size_t)n;
    FK_GUARD(cert_pem(x, &is->cert_pem));
    FK_GUARD(fingerprint(x, is->fpr));
    {
        char *iss_pem = NULL;
        FK_GUARD(cert_pem(ca->issuing, &iss_pem));
        size_t cl = strlen(is->cert_pem) + strlen(iss_pem) + 1;
        is->chain_pem = malloc(cl);
        if (is->chain_pem != NULL) {
            snprintf(is->chain_pem, cl, "%s%s", is->cert_pem, iss_pem);
        }
        free(iss_pem);
        FK_ENSURE(is->chain_pem != NULL, FK_E_NOMEM);
    }

    /* Archive first, index second: a crash in between leaves an orphan file no one was
     * given, never an index entry without its certificate. */
    char sname[FK_PKI_SERIAL_HEX_LEN + 16];
    snprintf(sname, sizeof sname, "certs/%s.crt.pem", is->serial);
    FK_GUARD(fk_path_join(ca->dir, sname, "", &path));
    FK_GUARD(fk_file_write_atomic(path, is->cert_pem, strlen(is->cert_pem), 0644, FK_WRITE_EXCL,
                                  diag));
    char *oneline = X509_NAME_oneline(subj, NULL, 0);
    FK_ENSURE(oneline != NULL, FK_E_NOMEM);
    rc = pki_index_add(&ca->ix, is->serial, o->kind, o->name, oneline, nb, na, is->fpr);
    OPENSSL_free(oneline);
    FK_GUARD(rc);
    FK_GUARD(pki_index_commit(&ca->ix, diag));
    fk_log(FK_LOG_INFO, "pki: issued %s certificate for %s, serial %s, %s%s",
           fk_pki_kind_name(o->kind), o->name, is->serial, is->fpr,
           req != NULL ? " (from CSR)" : "");
    *out = is;
    is = NULL;
    rc = FK_OK;
out:
    if (locked) {
        pki_index_unlock(&ca->ix, rc == FK_OK);
    }
    OPENSSL_free(der);
    free(path);
    free(org);
    X509_free(x);
    ASN1_INTEGER_free(serial);
    X509_NAME_free(subj);
    EVP_PKEY_free(key);
    X509_REQ_free(req);
    fk_pki_issued_free(is);
    ERR_clear_error();
    return rc;
}

enum fk_err fk_pki_issue_device(struct fk_pki_ca *ca, const char *device_id, unsigned days,
                                struct fk_pki_issued **out, struct fk_diag *diag) {
    struct fk_pki_issue_opts o;
    memset(&o, 0, sizeof o);
    o.kind = FK_PKI_DEVICE;
    o.name = device_id;
    o.days = days;
    return fk_pki_issue(ca, &o, out, diag);
}

enum fk_err fk_pki_issued_save(const struct fk_pki_ca *ca, const struct fk_pki_issued *is,
                               int replace, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *crt = NULL;
    char *key = NULL;
    char *chain = NULL;
    FK_ENSURE(ca != NULL && is != NULL, FK_E_ARG);
    FK_GUARD(pki_name_path(ca->dir, is->kind, is->name, ".crt.pem", &crt));
    FK_GUARD(pki_name_path(ca->dir, is->kind, is->name, ".key.pem", &key));
    FK_GUARD(pki_name_path(ca->dir, is->kind, is->name, ".chain.pem", &chain));
    FK_ENSURE(replace || access(crt, F_OK) != 0,
              fk_diag_at(diag, FK_E_EXISTS, crt, 0,
                         "a certificate for this name exists (replace it explicitly)"));
    if (is->key_pem != NULL) {
        FK_GUARD(fk_file_write_atomic(key, is->key_pem, is->key_pem_len, 0600, 0, diag));
    } else if (unlink(key) != 0) {
        /* Issued from a CSR: a key left from an earlier certificate of this name would no
         * longer match, so it must not stay next to the new certificate. */
        FK_ENSURE(errno == ENOENT, fk_diag_at(diag, FK_E_IO, key, 0, "cannot remove: %s",
                                              strerror(errno)));
    }
    FK_GUARD(fk_file_write_atomic(chain, is->chain_pem, strlen(is->chain_pem), 0644, 0, diag));
    /* The certificate last: it is what marks the name as issued. */
    FK_GUARD(fk_file_write_atomic(crt, is->cert_pem, strlen(is->cert_pem), 0644, 0, diag));
    rc = FK_OK;
out:
    free(crt);
    free(key);
    free(chain);
    return rc;
}

/* ---- revoke ----------------------------------------------------------------------------- */
static int reason_ok(enum fk_pki_reason r) {
    return strcmp(fk_pki_reason_name(r), "?") != 0;
}

enum fk_err fk_pki_revoke_serial(struct fk_pki_ca *ca, const char *serial,
                                 enum fk_pki_reason reason, int64_t when,
                                 struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    char norm[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
    FK_ENSURE(ca != NULL && reason_ok(reason), FK_E_ARG);
    FK_ENSURE(pki_serial_normalise(serial, norm) == FK_OK,
              fk_diag_set(diag, FK_E_ARG, "'%s' is not a serial number (hex)",
                          serial != NULL ? serial : ""));
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    cJSON *e = pki_index_find(&ca->ix, norm);
    FK_ENSURE(e != NULL, fk_diag_set(diag, FK_E_NOTFOUND,
                                     "serial %s was not issued by this CA", norm));
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "status"));
    FK_ENSURE(st != NULL && strcmp(st, "revoked") != 0,
              fk_diag_set(diag, FK_E_STATE, "serial %s is already revoked", norm));
    FK_GUARD(pki_index_revoke(&ca->ix, norm, reason, when != 0 ? when : (int64_t)time(NULL)));
    FK_GUARD(pki_index_commit(&ca->ix, diag));
    fk_log(FK_LOG_INFO, "pki: revoked serial %s (%s)", norm, fk_pki_reason_name(reason));
    rc = FK_OK;
out:
    if (locked) {
        pki_index_unlock(&ca->ix, rc == FK_OK);
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
    FK_ENSURE(d <= FK_PKI_MAX_DAYS, fk_diag_set(diag, FK_E_RANGE, "days: 1..%d",
                                                FK_PKI_MAX_DAYS));
    int64_t tu = this_update != 0 ? this_update : (int64_t)time(NULL);
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    long long number = 0;
    FK_GUARD(pki_index_take_number(&ca->ix, 0, &number));
    FK_GUARD(build_crl(ca->issuing, ca->issuing_key, pki_index_certs(&ca->ix), number, tu,
                       tu + (int64_t)d * DAY, &pem));
    FK_GUARD(read_in(ca->dir, "root.crl.pem", &root_crl, &root_len, diag));
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
                                    size_t passphrase_len, unsigned days,
                                    struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int locked = 0;
    char *key_txt = NULL;
    size_t key_len = 0;
    EVP_PKEY *key = NULL;
    char *pem = NULL;
    char *path = NULL;
    FK_ENSURE(ca != NULL, FK_E_ARG);
    FK_ENSURE(days <= FK_PKI_MAX_DAYS, fk_diag_set(diag, FK_E_RANGE, "days: 0..%d",
                                                   FK_PKI_MAX_DAYS));
    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    FK_GUARD(read_in(ca->dir, "root.key.pem", &key_txt, &key_len, diag));
    FK_ENSURE(load_key_pem(key_txt, key_len, passphrase, passphrase_len, &key) == FK_OK,
              fk_diag_set(diag, FK_E_AUTH,
                          "root.key.pem: cannot decrypt (wrong or missing passphrase)"));
    FK_ENSURE(X509_check_private_key(ca->root, key) == 1,
              fk_diag_set(diag, FK_E_MISMATCH, "root.key.pem does not match root.crt.pem"));
    int64_t now = (int64_t)time(NULL);
    int64_t next = days != 0 ? now + (int64_t)days * DAY
                             : asn1_to_unix(X509_get0_notAfter(ca->issuing));
    long long number = 0;
    FK_GUARD(pki_index_take_number(&ca->ix, 1, &number));
    FK_GUARD(build_crl(ca->root, key, NULL, number, now - CLOCK_SKEW, next, &pem));
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
