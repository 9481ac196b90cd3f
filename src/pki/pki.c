/* The control-plane CA: creation and loading. Issuing is in issue.c (CSRs in csr.c),
 * revocation and CRLs in crl.c, the index in index.c, OpenSSL helpers in x509util.c.
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

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- ca open helpers -------------------------------------------------------------------- */
static enum fk_err load_cert_pem(const char *pem, size_t len, X509 **out) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL) {
        return FK_E_NOMEM;
    }
    *out = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return *out != NULL ? FK_OK : FK_E_PARSE;
}

/* ---- ca init ---------------------------------------------------------------------------- */
static const char *const ca_files[] = {"root.key.pem",    "root.crt.pem", "issuing.key.pem",
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
                                EVP_PKEY *ikey, int pathlen, int64_t nb, int64_t na, X509 **out) {
    enum fk_err rc = FK_E_INTERNAL;
    X509_NAME *subj = NULL;
    ASN1_INTEGER *serial = NULL;
    X509 *x = NULL;
    char hex[FK_PKI_SERIAL_HEX_LEN + 1];
    char bc[40];

    FK_GUARD(pki_make_name(org, NULL, cn, &subj));
    FK_GUARD(pki_random_serial(&serial, hex));
    FK_GUARD(pki_build_cert(subj, key, issuer, nb, na, serial, &x));
    /* RFC 5280 4.2.1.9: basicConstraints MUST be critical in CA certificates; 4.2.1.3: a
     * key that signs certificates/CRLs asserts keyCertSign/cRLSign. */
    snprintf(bc, sizeof bc, "critical,CA:TRUE,pathlen:%d", pathlen);
    FK_GUARD(pki_add_ext(x, x, NID_basic_constraints, bc));
    FK_GUARD(pki_add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign"));
    FK_GUARD(pki_add_ext(x, x, NID_subject_key_identifier, "hash"));
    FK_GUARD(
        pki_add_ext(x, issuer != NULL ? issuer : x, NID_authority_key_identifier, "keyid:always"));
    FK_GUARD(pki_sign_cert(x, ikey != NULL ? ikey : key));
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
    FK_ENSURE(opts->passphrase == NULL ||
                  (opts->passphrase_len > 0 && opts->passphrase_len <= 1024),
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
    int64_t nb = now - PKI_CLOCK_SKEW;
    int64_t iss_na = now + (int64_t)days * PKI_DAY;
    int64_t root_na = now + 2 * (int64_t)days * PKI_DAY;
    snprintf(cn, sizeof cn, "%s Root CA", org);
    FK_GUARD(make_ca_cert(org, cn, root_key, NULL, NULL, 1, nb, root_na, &root));
    snprintf(cn, sizeof cn, "%s Issuing CA", org);
    FK_GUARD(make_ca_cert(org, cn, iss_key, root, root_key, 0, nb, iss_na, &iss));
    /* The root's CRL only matters while the issuing CA lives: give it the same horizon. */
    FK_GUARD(pki_build_crl(root, root_key, NULL, 1, nb, iss_na, &crl_pem));

    FK_GUARD(pki_key_pem(root_key, opts->passphrase, opts->passphrase_len, &root_key_pem,
                         &root_key_len));
    FK_GUARD(pki_key_pem(iss_key, NULL, 0, &iss_key_pem, &iss_key_len));
    FK_GUARD(pki_cert_pem(root, &root_pem));
    FK_GUARD(pki_cert_pem(iss, &iss_pem));
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
    FK_GUARD(pki_fingerprint(root, fpr));
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
    rc = pki_read_in(dir, "root.crt.pem", &root_txt, &root_len, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, dir, 0, "no CA here (run 'ca init --dir %s')", dir);
    }
    FK_GUARD(rc);
    FK_GUARD(pki_read_in(dir, "issuing.crt.pem", &iss_txt, &iss_len, diag));
    FK_GUARD(pki_read_in(dir, "issuing.key.pem", &key_txt, &key_len, diag));
    FK_ENSURE(load_cert_pem(root_txt, root_len, &ca->root) == FK_OK,
              fk_diag_at(diag, FK_E_PARSE, dir, 0, "root.crt.pem: not a certificate"));
    FK_ENSURE(load_cert_pem(iss_txt, iss_len, &ca->issuing) == FK_OK,
              fk_diag_at(diag, FK_E_PARSE, dir, 0, "issuing.crt.pem: not a certificate"));
    FK_ENSURE(pki_load_key_pem(key_txt, key_len, NULL, 0, &ca->issuing_key) == FK_OK,
              fk_diag_at(diag, FK_E_PARSE, dir, 0, "issuing.key.pem: not an unencrypted key"));
    FK_ENSURE(
        X509_check_private_key(ca->issuing, ca->issuing_key) == 1,
        fk_diag_at(diag, FK_E_MISMATCH, dir, 0, "issuing.key.pem does not match issuing.crt.pem"));
    EVP_PKEY *root_pub = X509_get0_pubkey(ca->root);
    FK_ENSURE(root_pub != NULL && X509_verify(ca->issuing, root_pub) == 1,
              fk_diag_at(diag, FK_E_MISMATCH, dir, 0, "issuing CA is not signed by the root"));
    ERR_clear_error();
    FK_GUARD(pki_cert_pem(ca->root, &ca->root_pem));
    char *iss_pem = NULL;
    FK_GUARD(pki_cert_pem(ca->issuing, &iss_pem));
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
