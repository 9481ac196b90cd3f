/* Issuing leaf certificates (device, server, mobile, operator) from the issuing CA, with a
 * fresh key or a CSR's (csr.c), and saving them under the CA directory.
 *
 * Leaves carry their identity in two places: the CN (for humans and for peers that only look
 * there) and a URI SAN urn:fleetkey:<kind>:<name> (for the server, which must not confuse a
 * device with an operator of the same name). Serials are 16 random bytes (RFC 5280 4.1.2.2:
 * positive, at most 20 octets), checked for uniqueness in the index. */
#include "pki_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
        *nb = now - PKI_CLOCK_SKEW;
        *na = now + (int64_t)days * PKI_DAY;
    }
    /* A leaf that outlives its issuer would fail path validation at the end anyway; say so
     * now rather than let it surprise a fleet later. */
    int64_t ca_na = pki_asn1_to_unix(X509_get0_notAfter(ca->issuing));
    int64_t ca_nb = pki_asn1_to_unix(X509_get0_notBefore(ca->issuing));
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
        FK_GUARD(pki_csr_load(o->csr, o->csr_len, o->kind, o->name, &req, diag));
        pub = X509_REQ_get0_pubkey(req);
    } else {
        key = EVP_EC_gen("P-256");
        FK_ENSURE(key != NULL, FK_E_CRYPTO);
        pub = key;
        FK_GUARD(pki_key_pem(key, NULL, 0, &is->key_pem, &is->key_pem_len));
        FK_GUARD(key_der(key, &is->key_der, &is->key_der_len));
    }

    org = name_org(X509_get_subject_name(ca->issuing));
    FK_GUARD(pki_make_name(org, fk_pki_kind_name(o->kind), o->name, &subj));

    FK_GUARD(pki_index_lock(&ca->ix, ca->dir, diag));
    locked = 1;
    do {
        ASN1_INTEGER_free(serial);
        serial = NULL;
        FK_GUARD(pki_random_serial(&serial, is->serial));
    } while (pki_index_find(&ca->ix, is->serial) != NULL); /* 2^-126 per try; cheap to be sure */

    FK_GUARD(pki_build_cert(subj, pub, ca->issuing, nb, na, serial, &x));
    FK_GUARD(pki_add_ext(x, ca->issuing, NID_basic_constraints, "critical,CA:FALSE"));
    /* ECDSA keys only sign in TLS; an RSA key from a CSR may also need keyEncipherment for
     * TLS 1.2 RSA key exchange. */
    FK_GUARD(pki_add_ext(x, ca->issuing, NID_key_usage,
                         EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA
                             ? "critical,digitalSignature,keyEncipherment"
                             : "critical,digitalSignature"));
    FK_GUARD(pki_add_ext(x, ca->issuing, NID_ext_key_usage,
                         o->kind == FK_PKI_SERVER ? "serverAuth" : "clientAuth"));
    FK_GUARD(pki_add_ext(x, ca->issuing, NID_subject_key_identifier, "hash"));
    FK_GUARD(pki_add_ext(x, ca->issuing, NID_authority_key_identifier, "keyid:always"));
    FK_GUARD(add_san(x, o, diag));
    FK_GUARD(pki_sign_cert(x, ca->issuing_key));

    int n = i2d_X509(x, &der);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    is->cert_der = malloc((size_t)n);
    FK_ENSURE(is->cert_der != NULL, FK_E_NOMEM);
    memcpy(is->cert_der, der, (size_t)n);
    is->cert_der_len = (size_t)n;
    FK_GUARD(pki_cert_pem(x, &is->cert_pem));
    FK_GUARD(pki_fingerprint(x, is->fpr));
    {
        char *iss_pem = NULL;
        FK_GUARD(pki_cert_pem(ca->issuing, &iss_pem));
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
    FK_GUARD(
        fk_file_write_atomic(path, is->cert_pem, strlen(is->cert_pem), 0644, FK_WRITE_EXCL, diag));
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
        FK_ENSURE(errno == ENOENT,
                  fk_diag_at(diag, FK_E_IO, key, 0, "cannot remove: %s", strerror(errno)));
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
