/* Unit tests of the pki module: CA creation and its refusal to overwrite, every certificate
 * kind checked by OpenSSL's own path validation (X509_verify_cert, with the CRL), CSR
 * signing and every way a CSR is refused (bad signature, each truncation, wrong CN, weak
 * key), revocation and CRL contents, explicit validity for expired/future certificates,
 * PKCS#12 in both forms opened by PKCS12_parse, the Kconfig/shell escapers and the rendered
 * device configuration read back by an independent unescaper, and concurrent issuers. The
 * CLI and the openssl/keytool cross-checks are in tests/integration/pki_cli.sh. */
#include "fleetkey/pki.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A fresh directory <FK_TMP>/<name> (removed first). */
static const char *fresh_dir(const char *name) {
    static char dir[4096];
    const char *base = getenv("FK_TMP");
    snprintf(dir, sizeof dir, "%s/%s", base != NULL ? base : "/tmp/fk_test_pki", name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(fk_mkdirs(dir, 0700, NULL), FK_OK);
    return dir;
}

static char *ca_dir_for(const char *name) {
    char *d = NULL;
    assert_int_equal(fk_path_join(fresh_dir(name), "pki", "", &d), FK_OK);
    return d;
}

static struct fk_pki_ca *new_ca(const char *name, char **dir_out) {
    char *dir = ca_dir_for(name);
    struct fk_pki_init_opts o = {"Unit Test Fleet", 0, NULL, 0};
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_pki_ca_init(dir, &o, &d), FK_OK);
    struct fk_pki_ca *ca = NULL;
    assert_int_equal(fk_pki_ca_open(dir, &ca, &d), FK_OK);
    *dir_out = dir;
    return ca;
}

static X509 *pem_cert(const char *pem) {
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

static mode_t file_mode(const char *dir, const char *name) {
    char *p = NULL;
    assert_int_equal(fk_path_join(dir, name, "", &p), FK_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    free(p);
    return st.st_mode & 0777;
}

/* Verifies leaf against root (trusted) + issuing (untrusted) with OpenSSL's path
 * validation, optionally with a CRL; returns the X509_V_ error (X509_V_OK on success). */
static int verify_leaf(const struct fk_pki_ca *ca, const char *leaf_pem, const char *crl_pem,
                       int purpose) {
    X509_STORE *st = X509_STORE_new();
    X509 *root = pem_cert(fk_pki_ca_root_pem(ca));
    assert_int_equal(X509_STORE_add_cert(st, root), 1);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509 *iss = pem_cert(fk_pki_ca_chain_pem(ca)); /* the chain starts with the issuing CA */
    sk_X509_push(untrusted, iss);
    if (crl_pem != NULL) {
        BIO *b = BIO_new_mem_buf(crl_pem, -1);
        X509_CRL *crl;
        while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
            X509_STORE_add_crl(st, crl);
            X509_CRL_free(crl);
        }
        ERR_clear_error();
        BIO_free(b);
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    X509 *leaf = pem_cert(leaf_pem);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, st, leaf, untrusted), 1);
    if (purpose != 0) {
        X509_STORE_CTX_set_purpose(ctx, purpose);
    }
    int ok = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_free(leaf);
    X509_free(root);
    sk_X509_pop_free(untrusted, X509_free);
    X509_STORE_free(st);
    ERR_clear_error();
    return ok == 1 ? X509_V_OK : (err != X509_V_OK ? err : -1);
}

static int has_eku(X509 *x, int nid) {
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    int found = 0;
    for (int i = 0; eku != NULL && i < sk_ASN1_OBJECT_num(eku); i++) {
        found |= OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == nid;
    }
    EXTENDED_KEY_USAGE_free(eku);
    return found;
}

/* 1 when the SAN holds an entry of that type whose text equals s (IP given as 4 bytes). */
static int has_san(X509 *x, int type, const char *s) {
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; g != NULL && i < sk_GENERAL_NAME_num(g); i++) {
        GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
        int t = 0;
        ASN1_STRING *v = GENERAL_NAME_get0_value(n, &t);
        if (t == type && (size_t)ASN1_STRING_length(v) == strlen(s) &&
            memcmp(ASN1_STRING_get0_data(v), s, strlen(s)) == 0) {
            found = 1;
        }
    }
    GENERAL_NAMES_free(g);
    return found;
}

/* ---- CA --------------------------------------------------------------------------------- */
static void ca_init_writes_keys_0600_and_refuses_to_overwrite(void **state) {
    (void)state;
    char *dir = ca_dir_for("init");
    mode_t old = umask(0); /* the widest umask: modes must still be exact */
    struct fk_pki_init_opts o = {NULL, 30, "root pass", 9};
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_pki_ca_init(dir, &o, &d), FK_OK);
    umask(old);
    assert_int_equal(file_mode(dir, "root.key.pem"), 0600);
    assert_int_equal(file_mode(dir, "issuing.key.pem"), 0600);
    assert_int_equal(file_mode(dir, ""), 0700);
    /* The root key is encrypted (PKCS#8), the issuing key is not. */
    char *p = NULL;
    assert_int_equal(fk_path_join(dir, "root.key.pem", "", &p), FK_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fk_file_read(p, 1 << 16, &buf, &len, NULL), FK_OK);
    assert_non_null(strstr((char *)buf, "BEGIN ENCRYPTED PRIVATE KEY"));
    free(buf);
    free(p);

    /* Same directory again: refused, and the existing CA is untouched. */
    fk_diag_init(&d);
    assert_int_equal(fk_pki_ca_init(dir, &o, &d), FK_E_EXISTS);
    assert_non_null(strstr(d.msg, "refusing"));
    struct fk_pki_ca *ca = NULL;
    assert_int_equal(fk_pki_ca_open(dir, &ca, NULL), FK_OK);
    X509 *root = pem_cert(fk_pki_ca_root_pem(ca));
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(root, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(root) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(root) & KU_CRL_SIGN);
    X509_free(root);
    X509 *iss = pem_cert(fk_pki_ca_chain_pem(ca));
    bc = X509_get_ext_d2i(iss, NID_basic_constraints, NULL, NULL);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_non_null(X509_get0_subject_key_id(iss));
    assert_non_null(X509_get0_authority_key_id(iss));
    X509_free(iss);

    /* The root CRL refresh needs the passphrase; a wrong one is refused. */
    assert_int_equal(fk_pki_root_crl_refresh(ca, "wrong", 5, 0, NULL), FK_E_AUTH);
    assert_int_equal(fk_pki_root_crl_refresh(ca, NULL, 0, 0, NULL), FK_E_AUTH);
    assert_int_equal(fk_pki_root_crl_refresh(ca, "root pass", 9, 30, NULL), FK_OK);
    fk_pki_ca_free(ca);
    free(dir);
}

static void ca_init_and_open_reject_bad_input(void **state) {
    (void)state;
    char *dir = ca_dir_for("init_bad");
    struct fk_pki_init_opts o = {NULL, FK_PKI_MAX_DAYS, NULL, 0};
    assert_int_equal(fk_pki_ca_init(dir, &o, NULL), FK_E_RANGE);
    o.days = 10;
    o.name = "this organisation name is far too long to fit in a common name";
    assert_int_equal(fk_pki_ca_init(dir, &o, NULL), FK_E_ARG);
    o.name = "bad\nname";
    assert_int_equal(fk_pki_ca_init(dir, &o, NULL), FK_E_ARG);
    struct fk_pki_ca *ca = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_pki_ca_open(dir, &ca, &d), FK_E_NOTFOUND);
    assert_null(ca);
    assert_int_equal(fk_pki_ca_open("/nonexistent/fk/pki", &ca, NULL), FK_E_NOTFOUND);
    free(dir);
}

/* ---- issuing ---------------------------------------------------------------------------- */
static void every_kind_verifies_with_its_purpose_and_identity(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("kinds", &dir);
    struct fk_pki_issued *dev = NULL;
    assert_int_equal(fk_pki_issue_device(ca, "robot-AABBCCDDEEFF", 0, &dev, NULL), FK_OK);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(dev), NULL, X509_PURPOSE_SSL_CLIENT),
                     X509_V_OK);
    X509 *x = pem_cert(fk_pki_issued_cert_pem(dev));
    assert_true(has_eku(x, NID_client_auth));
    assert_false(has_eku(x, NID_server_auth));
    assert_true(has_san(x, GEN_URI, "urn:fleetkey:device:robot-AABBCCDDEEFF"));
    char cn[80];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "robot-AABBCCDDEEFF");
    assert_int_equal(X509_check_ca(x), 0);
    /* The serial is 16 bytes, positive, and printed the way the index stores it. */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    assert_int_equal(ASN1_STRING_length(sn), 16);
    assert_int_equal(strlen(fk_pki_issued_serial(dev)), FK_PKI_SERIAL_HEX_LEN);
    /* Key DER and PEM are the same key, and it matches the certificate. */
    size_t kl = 0;
    const uint8_t *kd = fk_pki_issued_key_der(dev, &kl);
    assert_non_null(kd);
    const unsigned char *kp = kd;
    EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &kp, (long)kl);
    assert_non_null(k);
    assert_int_equal(X509_check_private_key(x, k), 1);
    EVP_PKEY_free(k);
    size_t cl = 0;
    const uint8_t *cd = fk_pki_issued_cert_der(dev, &cl);
    const unsigned char *cp = cd;
    X509 *fromder = d2i_X509(NULL, &cp, (long)cl);
    assert_int_equal(X509_cmp(x, fromder), 0);
    X509_free(fromder);
    X509_free(x);

    const char *sans[] = {"DNS:fleet.example.com", "IP:127.0.0.1", "*.fleet.example.com"};
    struct fk_pki_issue_opts o;
    memset(&o, 0, sizeof o);
    o.kind = FK_PKI_SERVER;
    o.name = "localhost";
    o.sans = sans;
    o.n_sans = 3;
    struct fk_pki_issued *srv = NULL;
    assert_int_equal(fk_pki_issue(ca, &o, &srv, NULL), FK_OK);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(srv), NULL, X509_PURPOSE_SSL_SERVER),
                     X509_V_OK);
    x = pem_cert(fk_pki_issued_cert_pem(srv));
    assert_true(has_eku(x, NID_server_auth));
    assert_false(has_eku(x, NID_client_auth));
    assert_true(has_san(x, GEN_DNS, "localhost"));
    assert_true(has_san(x, GEN_DNS, "fleet.example.com"));
    assert_true(has_san(x, GEN_DNS, "*.fleet.example.com"));
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    /* A server certificate is not a client certificate. */
    X509_free(x);
    assert_int_not_equal(
        verify_leaf(ca, fk_pki_issued_cert_pem(srv), NULL, X509_PURPOSE_SSL_CLIENT), X509_V_OK);

    enum fk_pki_kind kinds[] = {FK_PKI_MOBILE, FK_PKI_OPERATOR};
    const char *uris[] = {"urn:fleetkey:mobile:alice", "urn:fleetkey:operator:alice"};
    for (size_t i = 0; i < 2; i++) {
        memset(&o, 0, sizeof o);
        o.kind = kinds[i];
        o.name = "alice";
        struct fk_pki_issued *c = NULL;
        assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_OK);
        assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(c), NULL,
                                     X509_PURPOSE_SSL_CLIENT),
                         X509_V_OK);
        x = pem_cert(fk_pki_issued_cert_pem(c));
        assert_true(has_san(x, GEN_URI, uris[i]));
        assert_true(has_eku(x, NID_client_auth));
        X509_free(x);
        assert_int_equal(fk_pki_issued_save(ca, c, 0, NULL), FK_OK);
        fk_pki_issued_free(c);
    }

    /* Saving: key 0600 whatever the umask; a second certificate for the name needs replace. */
    mode_t old = umask(0);
    assert_int_equal(fk_pki_issued_save(ca, dev, 0, NULL), FK_OK);
    umask(old);
    assert_int_equal(file_mode(dir, "devices/robot-AABBCCDDEEFF.key.pem"), 0600);
    assert_int_equal(fk_pki_issued_save(ca, dev, 0, NULL), FK_E_EXISTS);
    assert_int_equal(fk_pki_issued_save(ca, dev, 1, NULL), FK_OK);
    fk_pki_issued_free(dev);
    fk_pki_issued_free(srv);
    fk_pki_ca_free(ca);
    free(dir);
}

static void explicit_validity_makes_expired_and_future_certs(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("validity", &dir);
    X509 *iss = pem_cert(fk_pki_ca_chain_pem(ca));
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(iss), &tm), 1);
    int64_t ca_nb = (int64_t)timegm(&tm);
    X509_free(iss);

    /* Expired: a window that closed right after the CA came into being. Times are taken
     * from the CA certificate, never from the wall clock. */
    struct fk_pki_issue_opts o;
    memset(&o, 0, sizeof o);
    o.kind = FK_PKI_DEVICE;
    o.name = "robot-expired";
    o.not_before = ca_nb;
    o.not_after = ca_nb + 1;
    struct fk_pki_issued *c = NULL;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_OK);
    assert_int_equal(fk_pki_issued_not_before(c), ca_nb);
    assert_int_equal(fk_pki_issued_not_after(c), ca_nb + 1);
    X509 *x = pem_cert(fk_pki_issued_cert_pem(c));
    assert_int_equal(X509_cmp_time(X509_get0_notAfter(x), NULL), -1); /* in the past */
    X509_free(x);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(c), NULL, 0),
                     X509_V_ERR_CERT_HAS_EXPIRED);
    fk_pki_issued_free(c);

    /* Not yet valid: starts 300 days after the CA's start (the CA is valid 3650 days). */
    o.name = "robot-future";
    o.not_before = ca_nb + 300LL * 86400;
    o.not_after = ca_nb + 400LL * 86400;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_OK);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(c), NULL, 0),
                     X509_V_ERR_CERT_NOT_YET_VALID);
    fk_pki_issued_free(c);

    /* Outside the issuing CA's validity, reversed, or too many days: refused. */
    o.not_before = ca_nb;
    o.not_after = ca_nb + 4000LL * 86400;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_RANGE);
    o.not_after = ca_nb - 1;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_RANGE);
    o.not_before = 0;
    o.not_after = 0;
    o.days = FK_PKI_MAX_DAYS + 1;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_RANGE);
    o.days = 5000; /* longer than the issuing CA */
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_RANGE);
    assert_null(c);
    fk_pki_ca_free(ca);
    free(dir);
}

static void issue_rejects_bad_names_and_sans(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("names", &dir);
    const char *bad[] = {"", "../etc", "a/b", ".hidden", "-x", "a b", "a,CN=evil",
                         "0123456789012345678901234567890123456789012345678901234567890123456789"};
    struct fk_pki_issued *c = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fk_pki_issue_device(ca, bad[i], 0, &c, NULL), FK_E_ARG);
    }
    assert_int_equal(fk_pki_issue_device(ca, NULL, 0, &c, NULL), FK_E_ARG);
    struct fk_pki_issue_opts o;
    memset(&o, 0, sizeof o);
    o.kind = FK_PKI_SERVER;
    o.name = "bad_host";
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_ARG);
    o.name = "ok.example";
    const char *sans[] = {"IP:300.1.1.1"};
    o.sans = sans;
    o.n_sans = 1;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_ARG);
    sans[0] = "DNS:has space";
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_ARG);
    sans[0] = "URI:http://x";
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_ARG);
    o.kind = FK_PKI_DEVICE; /* SANs on a device: refused */
    sans[0] = "DNS:ok.example";
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_E_ARG);
    assert_null(c);
    fk_pki_ca_free(ca);
    free(dir);
}

/* ---- CSR -------------------------------------------------------------------------------- */
/* A CSR made with OpenSSL directly: key type by name ("P-256", "RSA-1024"), optional CN. */
static uint8_t *make_csr(const char *keytype, const char *cn, int pem, size_t *len,
                         EVP_PKEY **key_out) {
    EVP_PKEY *k = strcmp(keytype, "RSA-1024") == 0 ? EVP_RSA_gen(1024) : EVP_EC_gen(keytype);
    assert_non_null(k);
    X509_REQ *r = X509_REQ_new();
    X509_REQ_set_version(r, 0);
    X509_NAME *n = X509_REQ_get_subject_name(r);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"Requester", -1, -1,
                               0);
    if (cn != NULL) {
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    }
    X509_REQ_set_pubkey(r, k);
    assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
    uint8_t *out = NULL;
    if (pem) {
        BIO *b = BIO_new(BIO_s_mem());
        PEM_write_bio_X509_REQ(b, r);
        char *data = NULL;
        long n2 = BIO_get_mem_data(b, &data);
        out = malloc((size_t)n2);
        memcpy(out, data, (size_t)n2);
        *len = (size_t)n2;
        BIO_free(b);
    } else {
        unsigned char *der = NULL;
        int n2 = i2d_X509_REQ(r, &der);
        out = malloc((size_t)n2);
        memcpy(out, der, (size_t)n2);
        *len = (size_t)n2;
        OPENSSL_free(der);
    }
    X509_REQ_free(r);
    if (key_out != NULL) {
        *key_out = k;
    } else {
        EVP_PKEY_free(k);
    }
    return out;
}

static void csr_signing_takes_only_the_public_key(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("csr", &dir);
    for (int pem = 0; pem <= 1; pem++) {
        size_t len = 0;
        EVP_PKEY *k = NULL;
        uint8_t *csr = make_csr("P-256", "robot-csr", pem, &len, &k);
        struct fk_pki_issue_opts o;
        memset(&o, 0, sizeof o);
        o.kind = FK_PKI_DEVICE;
        o.name = "robot-csr";
        o.csr = csr;
        o.csr_len = len;
        struct fk_pki_issued *c = NULL;
        assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_OK);
        X509 *x = pem_cert(fk_pki_issued_cert_pem(c));
        assert_int_equal(X509_check_private_key(x, k), 1); /* the requester's own key */
        /* The subject is ours: the requester's O= is not copied. */
        char org[80];
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, org,
                                  sizeof org);
        assert_string_equal(org, "Unit Test Fleet");
        X509_free(x);
        size_t kl = 99;
        assert_null(fk_pki_issued_key_der(c, &kl));
        assert_int_equal(kl, 0);
        assert_null(fk_pki_issued_key_pem(c));
        assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(c), NULL,
                                     X509_PURPOSE_SSL_CLIENT),
                         X509_V_OK);
        /* Saving writes no key file, and removes one left from an earlier issue. */
        assert_int_equal(fk_pki_issued_save(ca, c, 1, NULL), FK_OK);
        char *p = NULL;
        assert_int_equal(fk_path_join(dir, "devices/robot-csr.key.pem", "", &p), FK_OK);
        assert_int_not_equal(access(p, F_OK), 0);
        free(p);
        fk_pki_issued_free(c);
        EVP_PKEY_free(k);
        free(csr);
    }
    fk_pki_ca_free(ca);
    free(dir);
}

static void csr_refused_for_bad_signature_truncation_cn_and_weak_key(void **state) {
    (void)state;
    size_t len = 0;
    struct fk_diag d;
    uint8_t *csr = make_csr("P-256", "robot-1", 0, &len, NULL);
    assert_int_equal(fk_pki_csr_check(csr, len, FK_PKI_DEVICE, "robot-1", NULL), FK_OK);
    /* No CN at all is fine: the name comes from the command line. */
    size_t l2 = 0;
    uint8_t *nocn = make_csr("P-384", NULL, 1, &l2, NULL);
    assert_int_equal(fk_pki_csr_check(nocn, l2, FK_PKI_DEVICE, "robot-1", NULL), FK_OK);
    free(nocn);

    /* Each truncation of the DER is refused as malformed (never accepted, never a crash). */
    for (size_t n = 0; n < len; n++) {
        assert_int_equal(fk_pki_csr_check(csr, n, FK_PKI_DEVICE, "robot-1", NULL), FK_E_PARSE);
    }
    /* Trailing bytes after the DER request. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, csr, len);
    longer[len] = 0;
    assert_int_equal(fk_pki_csr_check(longer, len + 1, FK_PKI_DEVICE, "robot-1", NULL),
                     FK_E_PARSE);
    free(longer);
    /* The last byte is inside the ECDSA signature's s value: flip it. */
    csr[len - 1] ^= 0x01;
    fk_diag_init(&d);
    assert_int_equal(fk_pki_csr_check(csr, len, FK_PKI_DEVICE, "robot-1", &d), FK_E_VERIFY);
    assert_non_null(strstr(d.msg, "signature"));
    free(csr);

    /* The CN names another device. */
    csr = make_csr("P-256", "robot-2", 1, &len, NULL);
    fk_diag_init(&d);
    assert_int_equal(fk_pki_csr_check(csr, len, FK_PKI_DEVICE, "robot-1", &d), FK_E_POLICY);
    free(csr);
    /* Weak RSA and unsupported curves. */
    csr = make_csr("RSA-1024", "robot-1", 1, &len, NULL);
    assert_int_equal(fk_pki_csr_check(csr, len, FK_PKI_DEVICE, "robot-1", NULL), FK_E_POLICY);
    free(csr);
    csr = make_csr("secp256k1", "robot-1", 1, &len, NULL);
    assert_int_equal(fk_pki_csr_check(csr, len, FK_PKI_DEVICE, "robot-1", NULL), FK_E_POLICY);
    free(csr);
    /* Not a CSR at all, PEM armour around garbage, oversized. */
    const char *junk = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                       "REQUEST-----\n";
    assert_int_equal(fk_pki_csr_check((const uint8_t *)junk, strlen(junk), FK_PKI_DEVICE, "x",
                                      NULL),
                     FK_E_PARSE);
    assert_int_equal(fk_pki_csr_check((const uint8_t *)"x", 0, FK_PKI_DEVICE, "x", NULL),
                     FK_E_PARSE);
    uint8_t *big = calloc(1, FK_PKI_CSR_MAX + 1);
    assert_int_equal(fk_pki_csr_check(big, FK_PKI_CSR_MAX + 1, FK_PKI_DEVICE, "x", NULL),
                     FK_E_TOOBIG);
    free(big);
}

/* ---- revocation ------------------------------------------------------------------------- */
static void revoked_cert_fails_verification_with_the_crl(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("revoke", &dir);
    struct fk_pki_issued *a = NULL;
    struct fk_pki_issued *b = NULL;
    struct fk_pki_issued *b2 = NULL;
    assert_int_equal(fk_pki_issue_device(ca, "robot-a", 0, &a, NULL), FK_OK);
    assert_int_equal(fk_pki_issue_device(ca, "robot-b", 0, &b, NULL), FK_OK);
    assert_int_equal(fk_pki_issue_device(ca, "robot-b", 0, &b2, NULL), FK_OK);

    char *crl = NULL;
    size_t crl_len = 0;
    assert_int_equal(fk_pki_crl(ca, 0, 0, &crl, &crl_len, NULL), FK_OK);
    assert_int_equal(strlen(crl), crl_len);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(a), crl, 0), X509_V_OK);
    free(crl);

    /* By serial, in the spellings people paste: upper case with colons, 0x prefix. */
    char spelled[80];
    const char *s = fk_pki_issued_serial(a);
    size_t o = 0;
    for (size_t i = 0; s[i] != '\0'; i += 2) {
        o += (size_t)snprintf(spelled + o, sizeof spelled - o, "%s%c%c", i ? ":" : "",
                              s[i] >= 'a' ? s[i] - 32 : s[i],
                              s[i + 1] >= 'a' ? s[i + 1] - 32 : s[i + 1]);
    }
    assert_int_equal(fk_pki_revoke_serial(ca, spelled, FK_PKI_REASON_KEY_COMPROMISE, 0, NULL),
                     FK_OK);
    char hex0x[40];
    snprintf(hex0x, sizeof hex0x, "0x%s", s);
    assert_int_equal(fk_pki_revoke_serial(ca, hex0x, FK_PKI_REASON_SUPERSEDED, 0, NULL),
                     FK_E_STATE);
    assert_int_equal(fk_pki_revoke_serial(ca, "0123456789abcdef0123456789abcdef",
                                          FK_PKI_REASON_UNSPECIFIED, 0, NULL),
                     FK_E_NOTFOUND);
    assert_int_equal(fk_pki_revoke_serial(ca, "xyz", FK_PKI_REASON_UNSPECIFIED, 0, NULL),
                     FK_E_ARG);
    size_t count = 0;
    assert_int_equal(fk_pki_revoke_name(ca, FK_PKI_DEVICE, "robot-b",
                                        FK_PKI_REASON_CESSATION_OF_OPERATION, 0, &count, NULL),
                     FK_OK);
    assert_int_equal(count, 2);
    assert_int_equal(fk_pki_revoke_name(ca, FK_PKI_DEVICE, "robot-b", FK_PKI_REASON_UNSPECIFIED,
                                        0, &count, NULL),
                     FK_E_NOTFOUND);
    assert_int_equal(fk_pki_revoke_name(ca, FK_PKI_MOBILE, "robot-a", FK_PKI_REASON_UNSPECIFIED,
                                        0, &count, NULL),
                     FK_E_NOTFOUND);

    assert_int_equal(fk_pki_crl(ca, 0, 0, &crl, &crl_len, NULL), FK_OK);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(a), crl, 0),
                     X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify_leaf(ca, fk_pki_issued_cert_pem(b2), crl, 0),
                     X509_V_ERR_CERT_REVOKED);
    /* The CRL itself: v2, CRL number 2 (the second one signed), the reason of robot-a. */
    BIO *bio = BIO_new_mem_buf(crl, -1);
    X509_CRL *x = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    assert_int_equal(X509_CRL_get_version(x), X509_CRL_VERSION_2);
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(x, NID_crl_number, NULL, NULL);
    assert_int_equal(ASN1_INTEGER_get(num), 2);
    ASN1_INTEGER_free(num);
    assert_non_null(X509_CRL_get0_nextUpdate(x));
    AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);
    assert_non_null(aki);
    AUTHORITY_KEYID_free(aki);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(x)), 3);
    X509 *ax = pem_cert(fk_pki_issued_cert_pem(a));
    X509_REVOKED *rev = NULL;
    assert_int_equal(X509_CRL_get0_by_cert(x, &rev, ax), 1);
    ASN1_ENUMERATED *why = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
    assert_int_equal(ASN1_ENUMERATED_get(why), FK_PKI_REASON_KEY_COMPROMISE);
    ASN1_ENUMERATED_free(why);
    X509_free(ax);
    X509_CRL_free(x);
    free(crl);
    assert_int_equal(fk_pki_crl(ca, 0, FK_PKI_MAX_DAYS + 1, &crl, &crl_len, NULL), FK_E_RANGE);

    fk_pki_issued_free(a);
    fk_pki_issued_free(b);
    fk_pki_issued_free(b2);
    fk_pki_ca_free(ca);
    free(dir);
}

static void concurrent_issuers_lose_no_index_entry(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("concurrent", &dir);
    enum { KIDS = 4, EACH = 5 };
    pid_t pids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            int bad = 0;
            for (int i = 0; i < EACH; i++) {
                char id[32];
                snprintf(id, sizeof id, "robot-%d-%d", k, i);
                struct fk_pki_issued *c = NULL;
                bad |= fk_pki_issue_device(ca, id, 0, &c, NULL) != FK_OK;
                fk_pki_issued_free(c);
            }
            _exit(bad);
        }
    }
    for (int k = 0; k < KIDS; k++) {
        int st = 0;
        assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    /* Every certificate is in the index: each one can be revoked by name exactly once. */
    for (int k = 0; k < KIDS; k++) {
        for (int i = 0; i < EACH; i++) {
            char id[32];
            snprintf(id, sizeof id, "robot-%d-%d", k, i);
            size_t n = 0;
            assert_int_equal(fk_pki_revoke_name(ca, FK_PKI_DEVICE, id, FK_PKI_REASON_UNSPECIFIED,
                                                0, &n, NULL),
                             FK_OK);
            assert_int_equal(n, 1);
        }
    }
    fk_pki_ca_free(ca);
    free(dir);
}

/* ---- PKCS#12 ---------------------------------------------------------------------------- */
static void p12_both_forms_open_with_the_password_only(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("p12", &dir);
    struct fk_pki_issue_opts o;
    memset(&o, 0, sizeof o);
    o.kind = FK_PKI_MOBILE;
    o.name = "phone-1";
    struct fk_pki_issued *c = NULL;
    assert_int_equal(fk_pki_issue(ca, &o, &c, NULL), FK_OK);
    assert_int_equal(fk_pki_issued_save(ca, c, 0, NULL), FK_OK);
    enum fk_pki_p12_form forms[] = {FK_PKI_P12_MODERN, FK_PKI_P12_LEGACY};
    const int macs[] = {NID_sha256, NID_sha1};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *der = NULL;
        size_t len = 0;
        assert_int_equal(fk_pki_export_p12(ca, FK_PKI_MOBILE, "phone-1", "pw 1", 4, forms[i],
                                           &der, &len, NULL),
                         FK_OK);
        const unsigned char *p = der;
        PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
        assert_non_null(p12);
        assert_int_equal(PKCS12_verify_mac(p12, "pw 1", 4), 1);
        assert_int_equal(PKCS12_verify_mac(p12, "pw 2", 4), 0);
        const X509_ALGOR *macalg = NULL;
        PKCS12_get0_mac(NULL, &macalg, NULL, NULL, p12);
        const ASN1_OBJECT *obj = NULL;
        X509_ALGOR_get0(&obj, NULL, NULL, macalg);
        assert_int_equal(OBJ_obj2nid(obj), macs[i]);
        EVP_PKEY *k = NULL;
        X509 *x = NULL;
        STACK_OF(X509) *chain = NULL;
        assert_int_equal(PKCS12_parse(p12, "pw 1", &k, &x, &chain), 1);
        assert_int_equal(X509_check_private_key(x, k), 1);
        assert_int_equal(sk_X509_num(chain), 2); /* issuing + root */
        EVP_PKEY_free(k);
        X509_free(x);
        sk_X509_pop_free(chain, X509_free);
        assert_int_equal(PKCS12_parse(p12, "wrong", &k, &x, &chain), 0);
        ERR_clear_error();
        PKCS12_free(p12);
        free(der);
    }
    uint8_t *der = NULL;
    size_t len = 0;
    assert_int_equal(fk_pki_export_p12(ca, FK_PKI_MOBILE, "nobody", "pw", 2, FK_PKI_P12_MODERN,
                                       &der, &len, NULL),
                     FK_E_NOTFOUND);
    assert_int_equal(fk_pki_export_p12(ca, FK_PKI_MOBILE, "phone-1", "", 0, FK_PKI_P12_MODERN,
                                       &der, &len, NULL),
                     FK_E_ARG);
    /* A key that belongs to another certificate is refused. */
    struct fk_pki_issued *other = NULL;
    assert_int_equal(fk_pki_issue_device(ca, "robot-x", 0, &other, NULL), FK_OK);
    assert_int_equal(fk_pki_p12_build(fk_pki_issued_key_pem(other), fk_pki_issued_cert_pem(c),
                                      NULL, NULL, "pw", 2, FK_PKI_P12_MODERN, &der, &len, NULL),
                     FK_E_MISMATCH);
    fk_pki_issued_free(other);
    fk_pki_issued_free(c);
    fk_pki_ca_free(ca);
    free(dir);
}

/* ---- escaping and device configuration -------------------------------------------------- */
/* An independent reader of one sdkconfig string value: the text between the quotes with
 * \" \\ \n undone. Returns a malloc'd string or NULL when malformed. */
static char *kconfig_unescape(const char *line, const char *name) {
    size_t nl = strlen(name);
    if (strncmp(line, name, nl) != 0 || line[nl] != '=' || line[nl + 1] != '"') {
        return NULL;
    }
    const char *p = line + nl + 2;
    char *out = malloc(strlen(p) + 1);
    size_t o = 0;
    for (; *p != '"'; p++) {
        if (*p == '\0' || *p == '\n') {
            free(out);
            return NULL;
        }
        if (*p == '\\') {
            p++;
            if (*p == 'n') {
                out[o++] = '\n';
            } else if (*p == '"' || *p == '\\') {
                out[o++] = *p;
            } else {
                free(out);
                return NULL;
            }
        } else {
            out[o++] = *p;
        }
    }
    if (p[1] != '\n' && p[1] != '\0') {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    return out;
}

static void kconfig_and_shell_escaping(void **state) {
    (void)state;
    const char *in = "a\"b\\c\nd'e";
    char out[64];
    assert_int_equal(fk_pki_kconfig_escaped_len(in), strlen("a\\\"b\\\\c\\nd'e") + 1);
    assert_int_equal(fk_pki_kconfig_escape(in, out, sizeof out), FK_OK);
    assert_string_equal(out, "a\\\"b\\\\c\\nd'e");
    assert_int_equal(fk_pki_kconfig_escape(in, out, fk_pki_kconfig_escaped_len(in)), FK_OK);
    assert_int_equal(fk_pki_kconfig_escape(in, out, fk_pki_kconfig_escaped_len(in) - 1),
                     FK_E_NOSPACE);
    assert_int_equal(fk_pki_kconfig_escape("a\rb", out, sizeof out), FK_E_ARG);
    assert_int_equal(fk_pki_kconfig_escape("a\tb", out, sizeof out), FK_E_ARG);
    assert_int_equal(fk_pki_shell_quote(in, out, sizeof out), FK_OK);
    assert_string_equal(out, "'a\"b\\c\nd'\\''e'");
    assert_int_equal(fk_pki_shell_quoted_len(in), strlen(out) + 1);
    assert_int_equal(fk_pki_shell_quote(in, out, strlen(out)), FK_E_NOSPACE);
    assert_int_equal(fk_pki_shell_quote("", out, sizeof out), FK_OK);
    assert_string_equal(out, "''");
}

static void devcfg_round_trips_the_pems(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("devcfg", &dir);
    struct fk_pki_issued *c = NULL;
    assert_int_equal(fk_pki_issue_device(ca, "robot-AABBCCDDEEFF", 0, &c, NULL), FK_OK);
    assert_int_equal(fk_pki_issued_save(ca, c, 0, NULL), FK_OK);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(fk_pki_devcfg_render(ca, "robot-AABBCCDDEEFF", "wss://fleet.example:8443/ws",
                                          "fleet.example", FK_PKI_DEVCFG_SDKCONFIG, &text, &len,
                                          NULL),
                     FK_OK);
    assert_int_equal(strlen(text), len);
    const char *names[] = {"CONFIG_MINITRAIN_WSS_URI", "CONFIG_MINITRAIN_EXPECTED_HOST",
                           "CONFIG_MINITRAIN_CA_CERT_PEM", "CONFIG_MINITRAIN_CLIENT_CERT_PEM",
                           "CONFIG_MINITRAIN_CLIENT_KEY_PEM"};
    const char *want[] = {"wss://fleet.example:8443/ws", "fleet.example",
                          fk_pki_ca_chain_pem(ca), fk_pki_issued_cert_pem(c),
                          fk_pki_issued_key_pem(c)};
    int seen = 0;
    for (const char *line = text; *line != '\0';) {
        for (size_t i = 0; i < 5; i++) {
            char *v = kconfig_unescape(line, names[i]);
            if (v != NULL) {
                assert_string_equal(v, want[i]);
                seen |= 1 << i;
                free(v);
            }
        }
        const char *nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with a newline */
        line = nl + 1;
    }
    assert_int_equal(seen, 0x1f);
    fk_free_secret(text, len);

    /* Without URI/host those two lines are comments; the env form quotes for the shell. */
    assert_int_equal(fk_pki_devcfg_render(ca, "robot-AABBCCDDEEFF", NULL, NULL,
                                          FK_PKI_DEVCFG_ENV, &text, &len, NULL),
                     FK_OK);
    assert_null(strstr(text, "export MINITRAIN_WSS_URI"));
    assert_non_null(strstr(text, "# MINITRAIN_WSS_URI not given"));
    assert_non_null(strstr(text, "export MINITRAIN_CLIENT_KEY_PEM='-----BEGIN PRIVATE KEY-----\n"));
    fk_free_secret(text, len);

    assert_int_equal(fk_pki_devcfg_render(ca, "robot-none", NULL, NULL, FK_PKI_DEVCFG_ENV, &text,
                                          &len, NULL),
                     FK_E_NOTFOUND);
    assert_int_equal(fk_pki_devcfg_render(ca, "robot-AABBCCDDEEFF", "https://x", NULL,
                                          FK_PKI_DEVCFG_ENV, &text, &len, NULL),
                     FK_E_ARG);
    assert_int_equal(fk_pki_devcfg_render(ca, "robot-AABBCCDDEEFF", NULL, "a host",
                                          FK_PKI_DEVCFG_ENV, &text, &len, NULL),
                     FK_E_ARG);
    assert_int_equal(fk_pki_devcfg_render(ca, "../x", NULL, NULL, FK_PKI_DEVCFG_ENV, &text, &len,
                                          NULL),
                     FK_E_ARG);
    fk_pki_issued_free(c);
    fk_pki_ca_free(ca);
    free(dir);
}

static void secret_file_takes_the_first_line(void **state) {
    (void)state;
    const char *dir = fresh_dir("secret");
    const char *cases[][2] = {{"pw\n", "pw"}, {"pw\r\n", "pw"}, {"pw", "pw"},
                              {"p w\nsecond\n", "p w"}};
    char *path = NULL;
    assert_int_equal(fk_path_join(dir, "pw.txt", "", &path), FK_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(fk_file_write_atomic(path, cases[i][0], strlen(cases[i][0]), 0600, 0,
                                              NULL),
                         FK_OK);
        char *pw = NULL;
        size_t n = 0;
        assert_int_equal(fk_pki_read_secret_file(path, &pw, &n, NULL), FK_OK);
        assert_string_equal(pw, cases[i][1]);
        assert_int_equal(n, strlen(cases[i][1]));
        fk_free_secret(pw, n);
    }
    assert_int_equal(fk_file_write_atomic(path, "\n", 1, 0600, 0, NULL), FK_OK);
    char *pw = NULL;
    size_t n = 0;
    assert_int_equal(fk_pki_read_secret_file(path, &pw, &n, NULL), FK_E_ARG);
    assert_int_equal(fk_pki_read_secret_file("/nonexistent/pw", &pw, &n, NULL), FK_E_NOTFOUND);
    free(path);
}

struct list_count {
    size_t total;
    size_t revoked;
    enum fk_pki_reason last_reason;
};
static int count_cb(void *user, const struct fk_pki_cert_info *info) {
    struct list_count *c = user;
    c->total++;
    if (info->revoked) {
        c->revoked++;
        c->last_reason = info->reason;
    }
    assert_int_equal(strncmp(info->fingerprint, "sha256:", 7), 0);
    assert_true(info->not_before < info->not_after);
    return 0;
}

static void list_reports_index_and_serials_normalise(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("list", &dir);
    struct fk_pki_issued *c = NULL;
    assert_int_equal(fk_pki_issue_device(ca, "robot-l1", 0, &c, NULL), FK_OK);
    char serial[FK_PKI_SERIAL_HEX_LEN + 1];
    snprintf(serial, sizeof serial, "%s", fk_pki_issued_serial(c));
    fk_pki_issued_free(c);
    assert_int_equal(fk_pki_issue_device(ca, "robot-l2", 0, &c, NULL), FK_OK);
    fk_pki_issued_free(c);
    assert_int_equal(fk_pki_revoke_serial(ca, serial, FK_PKI_REASON_PRIVILEGE_WITHDRAWN, 1234,
                                          NULL),
                     FK_OK);
    /* A second handle on the same directory sees the first one's records and adds its own;
     * the first then catches up with the tail the second appended. */
    struct fk_pki_ca *ca2 = NULL;
    assert_int_equal(fk_pki_ca_open(dir, &ca2, NULL), FK_OK);
    assert_int_equal(fk_pki_revoke_serial(ca2, serial, FK_PKI_REASON_UNSPECIFIED, 0, NULL),
                     FK_E_STATE);
    assert_int_equal(fk_pki_issue_device(ca2, "robot-l3", 0, &c, NULL), FK_OK);
    assert_int_equal(fk_pki_revoke_serial(ca, fk_pki_issued_serial(c),
                                          FK_PKI_REASON_PRIVILEGE_WITHDRAWN, 0, NULL),
                     FK_OK);
    fk_pki_issued_free(c);
    fk_pki_ca_free(ca2);
    struct list_count n = {0, 0, FK_PKI_REASON_UNSPECIFIED};
    assert_int_equal(fk_pki_list(ca, count_cb, &n, NULL), FK_OK);
    assert_int_equal(n.total, 3);
    assert_int_equal(n.revoked, 2);
    assert_int_equal(n.last_reason, FK_PKI_REASON_PRIVILEGE_WITHDRAWN);
    n.total = 0;
    n.revoked = 0;
    assert_int_equal(fk_pki_list(ca, count_cb, &n, NULL), FK_OK); /* unchanged on re-read */
    assert_int_equal(n.total, 3);
    assert_int_equal(n.revoked, 2);

    char out[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
    assert_int_equal(fk_pki_serial_parse("0x00:0A:bC", out), FK_OK);
    assert_string_equal(out, "abc");
    assert_int_equal(fk_pki_serial_parse("", out), FK_E_ARG);
    assert_int_equal(fk_pki_serial_parse("0x", out), FK_E_ARG);
    assert_int_equal(fk_pki_serial_parse("00", out), FK_E_ARG);
    assert_int_equal(fk_pki_serial_parse("12g4", out), FK_E_ARG);
    assert_int_equal(fk_pki_serial_parse(
                         "11111111111111111111111111111111111111111111111111111111111111111", out),
                     FK_E_ARG);
    fk_pki_ca_free(ca);
    free(dir);
}

/* The bytes of <dir>/index.jsonl: what a refused batch must leave as it was. */
static char *index_text(const char *dir, size_t *len) {
    char *p = NULL;
    assert_int_equal(fk_path_join(dir, "index.jsonl", "", &p), FK_OK);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    free(p);
    return buf;
}

/* Runs cmd (printf-style) through the shell; its exit status. */
static int run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void batch_revoke_skips_revoked_refuses_unknown_and_openssl_verifies_crl(void **state) {
    (void)state;
    char *dir = NULL;
    struct fk_pki_ca *ca = new_ca("batch", &dir);
    enum { DEVICES = 6 };
    struct fk_pki_issued *c[DEVICES];
    char serial[DEVICES][FK_PKI_SERIAL_HEX_LEN + 1];
    for (int i = 0; i < DEVICES; i++) {
        char id[32];
        snprintf(id, sizeof id, "robot-batch%d", i);
        assert_int_equal(fk_pki_issue_device(ca, id, 0, &c[i], NULL), FK_OK);
        snprintf(serial[i], sizeof serial[i], "%s", fk_pki_issued_serial(c[i]));
    }
    assert_int_equal(fk_pki_revoke_serial(ca, serial[0], FK_PKI_REASON_KEY_COMPROMISE, 0, NULL),
                     FK_OK);

    /* Refused whole: a malformed serial, a serial of no certificate of ours. The index is
     * left byte for byte as it was, and so nothing of the batch is revoked. */
    size_t before_len = 0, after_len = 0;
    char *before = index_text(dir, &before_len);
    char unknown[] = "0123456789abcdef0123456789abcdef";
    const char *bad[] = {serial[1], serial[2], "xyz"};
    const char *missing[] = {serial[1], unknown, serial[2]};
    size_t n = 99;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_pki_revoke_serials(ca, bad, 3, FK_PKI_REASON_SUPERSEDED, 0, &n, &d),
                     FK_E_ARG);
    assert_int_equal(n, 0);
    assert_non_null(strstr(d.msg, "serial 2"));
    fk_diag_init(&d);
    assert_int_equal(fk_pki_revoke_serials(ca, missing, 3, FK_PKI_REASON_SUPERSEDED, 0, &n, &d),
                     FK_E_NOTFOUND);
    assert_non_null(strstr(d.msg, "serial 1"));
    char *after = index_text(dir, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    free(after);
    assert_int_equal(fk_pki_revoke_serials(ca, NULL, 0, FK_PKI_REASON_SUPERSEDED, 0, &n, NULL),
                     FK_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fk_pki_revoke_serials(ca, bad, 1, (enum fk_pki_reason)7, 0, &n, NULL),
                     FK_E_ARG);

    /* One batch: serial[0] was revoked before, serial[3] comes twice (once upper case):
     * skipped, not errors; four newly revoked in one append of four records. */
    char upper[FK_PKI_SERIAL_HEX_LEN + 3] = "0X";
    for (size_t i = 0; serial[3][i] != '\0'; i++) {
        upper[i + 2] = serial[3][i] >= 'a' ? (char)(serial[3][i] - 32) : serial[3][i];
    }
    const char *batch[] = {serial[0], serial[1], serial[2], serial[3], upper, serial[4]};
    assert_int_equal(fk_pki_revoke_serials(ca, batch, 6, FK_PKI_REASON_SUPERSEDED, 0, &n, NULL),
                     FK_OK);
    assert_int_equal(n, 4);
    after = index_text(dir, &after_len);
    size_t records = 0;
    for (const char *q = after + before_len; (q = strstr(q, "\"op\":\"revoke\"")) != NULL; q++) {
        records++;
    }
    assert_int_equal(records, 4);
    free(after);
    free(before);
    /* A retry of the same batch revokes nothing and writes nothing. */
    before = index_text(dir, &before_len);
    assert_int_equal(fk_pki_revoke_serials(ca, batch, 6, FK_PKI_REASON_SUPERSEDED, 0, &n, NULL),
                     FK_OK);
    assert_int_equal(n, 0);
    after = index_text(dir, &after_len);
    assert_int_equal(after_len, before_len);
    free(after);
    free(before);
    /* The first revocation keeps its reason: key compromise, not superseded. */
    struct list_count k = {0, 0, FK_PKI_REASON_UNSPECIFIED};
    assert_int_equal(fk_pki_list(ca, count_cb, &k, NULL), FK_OK);
    assert_int_equal(k.total, DEVICES);
    assert_int_equal(k.revoked, 5);

    /* The CRL signed afterwards: OpenSSL verifies its signature with the issuing CA and it
     * lists the five revoked serials and not the sixth. */
    char *crl = NULL;
    size_t crl_len = 0;
    assert_int_equal(fk_pki_crl(ca, 0, 0, &crl, &crl_len, NULL), FK_OK);
    char *crl_path = NULL, *chain_path = NULL;
    assert_int_equal(fk_path_join(dir, "batch-crl", ".pem", &crl_path), FK_OK);
    assert_int_equal(fk_path_join(dir, "batch-chain", ".pem", &chain_path), FK_OK);
    assert_int_equal(fk_file_write_atomic(crl_path, crl, crl_len, 0644, 0, NULL), FK_OK);
    const char *chain = fk_pki_ca_chain_pem(ca);
    assert_int_equal(fk_file_write_atomic(chain_path, chain, strlen(chain), 0644, 0, NULL), FK_OK);
    assert_int_equal(run("openssl crl -in '%s' -CAfile '%s' -noout -verify 2>&1 | grep -qx "
                         "'verify OK'",
                         crl_path, chain_path),
                     0);
    for (int i = 0; i < DEVICES; i++) {
        int listed = run("openssl crl -in '%s' -noout -text | tr -d ' :' | grep -qiE "
                         "'^SerialNumber0*%s$'",
                         crl_path, serial[i]);
        assert_int_equal(listed, i < 5 ? 0 : 1);
    }
    /* A CRL with one character of its signature changed fails that same check: it can fail.
     * The first line of the issuing CRL's last base64 line encodes the end of the
     * signature's last INTEGER. */
    char *end = strstr(crl, "\n-----END X509 CRL-----");
    assert_non_null(end);
    char *last = end;
    while (last > crl && last[-1] != '\n') {
        last--;
    }
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(fk_file_write_atomic(crl_path, crl, crl_len, 0644, 0, NULL), FK_OK);
    assert_int_not_equal(run("openssl crl -in '%s' -CAfile '%s' -noout -verify 2>&1 | grep -qx "
                             "'verify OK'",
                             crl_path, chain_path),
                         0);
    free(crl);
    free(crl_path);
    free(chain_path);
    for (int i = 0; i < DEVICES; i++) {
        fk_pki_issued_free(c[i]);
    }
    fk_pki_ca_free(ca);
    free(dir);
}

static void names_kinds_and_reasons_parse(void **state) {
    (void)state;
    enum fk_pki_kind k;
    assert_int_equal(fk_pki_kind_parse("operator", &k), FK_OK);
    assert_int_equal(k, FK_PKI_OPERATOR);
    assert_int_equal(fk_pki_kind_parse("root", &k), FK_E_ARG);
    enum fk_pki_reason r;
    assert_int_equal(fk_pki_reason_parse("keyCompromise", &r), FK_OK);
    assert_int_equal(r, FK_PKI_REASON_KEY_COMPROMISE);
    assert_int_equal(fk_pki_reason_parse("certificateHold", &r), FK_E_ARG);
    assert_string_equal(fk_pki_reason_name(FK_PKI_REASON_SUPERSEDED), "superseded");
    assert_true(fk_pki_name_valid("robot-AABBCCDDEEFF"));
    assert_true(fk_pki_name_valid("device_001"));
    assert_false(fk_pki_name_valid("a/b"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ca_init_writes_keys_0600_and_refuses_to_overwrite),
        cmocka_unit_test(ca_init_and_open_reject_bad_input),
        cmocka_unit_test(every_kind_verifies_with_its_purpose_and_identity),
        cmocka_unit_test(explicit_validity_makes_expired_and_future_certs),
        cmocka_unit_test(issue_rejects_bad_names_and_sans),
        cmocka_unit_test(csr_signing_takes_only_the_public_key),
        cmocka_unit_test(csr_refused_for_bad_signature_truncation_cn_and_weak_key),
        cmocka_unit_test(revoked_cert_fails_verification_with_the_crl),
        cmocka_unit_test(batch_revoke_skips_revoked_refuses_unknown_and_openssl_verifies_crl),
        cmocka_unit_test(concurrent_issuers_lose_no_index_entry),
        cmocka_unit_test(p12_both_forms_open_with_the_password_only),
        cmocka_unit_test(kconfig_and_shell_escaping),
        cmocka_unit_test(devcfg_round_trips_the_pems),
        cmocka_unit_test(secret_file_takes_the_first_line),
        cmocka_unit_test(list_reports_index_and_serials_normalise),
        cmocka_unit_test(names_kinds_and_reasons_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
