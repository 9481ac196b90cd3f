/* Shared between the pki source files only: the CA object, the index and small OpenSSL
 * helpers. Not installed, not a contract outside src/pki/. */
#ifndef FLEETKEY_PKI_INTERNAL_H
#define FLEETKEY_PKI_INTERNAL_H

#include "fleetkey/pki.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

struct cJSON;


/* ---- index.c: the append-only index.jsonl under an flock -------------------------- */
#define PKI_INDEX_FILE "index.jsonl"

struct pki_index {
    int lock_fd;        /* the held flock on <dir>/.lock, -1 when not held */
    struct cJSON *root; /* folded state {"crl_number","root_crl_number","certs":[...]}, NULL
                           until first read */
    struct cJSON *pending; /* records to append at commit */
    char *path;            /* <dir>/index.jsonl */
    long long offset;      /* bytes of the log folded into root */
    /* Serial -> entry of root's "certs" (open addressing, borrowed pointers, rebuilt with
     * root): a find is O(1), so folding or revoking n records is O(n), not O(n^2). */
    struct cJSON **by_serial;
    size_t by_serial_cap; /* a power of two, or 0 */
    size_t by_serial_n;
};

void pki_index_init(struct pki_index *ix);
/* Unlocks (dropping uncommitted state) and frees. */
void pki_index_free(struct pki_index *ix);
/* Takes <dir>/.lock exclusively (blocking). For ca init, before the index exists. */
enum fk_err pki_lock_dir(const char *dir, int *fd, struct fk_diag *diag);
/* Takes the lock and folds whatever other processes appended since the last call. */
enum fk_err pki_index_lock(struct pki_index *ix, const char *dir, struct fk_diag *diag);
/* Appends the records of this operation in one write and fsyncs. */
enum fk_err pki_index_commit(struct pki_index *ix, struct fk_diag *diag);
/* Releases the lock; ok = 0 forgets the cached state (it may hold uncommitted changes). */
void pki_index_unlock(struct pki_index *ix, int ok);
/* The first lines of a new index (init + root CRL number 1). */
enum fk_err pki_index_initial(char **text, size_t *len);
struct cJSON *pki_index_certs(const struct pki_index *ix);
/* The entry with this (normalised, lower-case) serial, or NULL. */
struct cJSON *pki_index_find(const struct pki_index *ix, const char *serial_hex);
/* Records a freshly issued certificate / a revocation (state updated, record queued). */
enum fk_err pki_index_add(struct pki_index *ix, const char *serial_hex, enum fk_pki_kind kind,
                          const char *name, const char *subject, int64_t not_before,
                          int64_t not_after, const char *fingerprint);
enum fk_err pki_index_revoke(struct pki_index *ix, const char *serial_hex,
                             enum fk_pki_reason reason, int64_t when);
/* Takes the next CRL number (root: the root CRL's) and records it as used. */
enum fk_err pki_index_take_number(struct pki_index *ix, int root, long long *out);

struct fk_pki_ca {
    char *dir;
    X509 *root;
    X509 *issuing;
    EVP_PKEY *issuing_key;
    char *root_pem;
    char *chain_pem; /* issuing + root */
    struct pki_index ix; /* cached folded index; each operation locks and catches up */
};

/* ---- x509util.c: helpers shared by every file of src/pki/ -------------------------------- */
/* Reads a file of at most max bytes, NUL-terminated; fk_free_secret() it when secret. */
enum fk_err pki_read_text(const char *path, size_t max, char **out, size_t *out_len,
                          struct fk_diag *diag);
/* pki_read_text of <dir>/<name>, at most PKI_PEM_MAX bytes. */
enum fk_err pki_read_in(const char *dir, const char *name, char **out, size_t *len,
                        struct fk_diag *diag);
/* Normalises a serial written as hex (any case, "0x", ':' separators) to lower-case hex
 * without leading zero bytes stripped. FK_OK or FK_E_ARG. */
enum fk_err pki_serial_normalise(const char *in, char out[FK_PKI_SERIAL_HEX_LEN * 2 + 1]);
/* "<dir>/<kind>s/<name><suffix>" into a malloc'd string. */
enum fk_err pki_name_path(const char *dir, enum fk_pki_kind kind, const char *name,
                          const char *suffix, char **out);
/* Copies a memory BIO's contents into a fresh NUL-terminated buffer (free()). */
enum fk_err pki_bio_take(BIO *bio, char **out, size_t *out_len);
/* PEM of a certificate into a malloc'd string. */
enum fk_err pki_cert_pem(const X509 *x, char **out);
/* PKCS#8 PEM of a private key, encrypted (AES-256-CBC, PBKDF2) when pass is non-NULL, in a
 * malloc'd buffer: fk_free_secret() it. */
enum fk_err pki_key_pem(EVP_PKEY *key, const char *pass, size_t pass_len, char **out,
                        size_t *out_len);
/* Loads a PEM private key, decrypting it with exactly (pass, pass_len); never prompts. */
enum fk_err pki_load_key_pem(const char *pem, size_t len, const char *pass, size_t pass_len,
                             EVP_PKEY **out);
/* Unix seconds of an ASN1_TIME, -1 when unreadable. */
int64_t pki_asn1_to_unix(const ASN1_TIME *t);
enum fk_err pki_set_time(ASN1_TIME *t, int64_t when);
/* A fresh random serial (RFC 5280 4.1.2.2), as an ASN1_INTEGER and as 32 hex digits. */
enum fk_err pki_random_serial(ASN1_INTEGER **out, char hex[FK_PKI_SERIAL_HEX_LEN + 1]);
/* Adds the extension nid = value (OpenSSL config syntax) to cert, issued by issuer. */
enum fk_err pki_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);
/* "sha256:" + 64 hex digits of the certificate's DER. */
enum fk_err pki_fingerprint(const X509 *x, char out[7 + 64 + 1]);
/* Subject "O=<org>, OU=<ou>, CN=<cn>"; org and ou may be NULL. */
enum fk_err pki_make_name(const char *org, const char *ou, const char *cn, X509_NAME **out);
/* The common skeleton of CA and leaf certificates (v3, serial, names, key, validity);
 * issuer NULL: self-issued. Unsigned: extensions go on, then pki_sign_cert. */
enum fk_err pki_build_cert(X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, int64_t nb,
                           int64_t na, ASN1_INTEGER *serial, X509 **out);
enum fk_err pki_sign_cert(X509 *x, EVP_PKEY *key);

/* ---- csr.c, crl.c: used by issue.c and by CA creation (pki.c) --------------------------- */
/* Parses, verifies and policy-checks a CSR; *out (may be NULL) receives the request. */
enum fk_err pki_csr_load(const uint8_t *buf, size_t len, enum fk_pki_kind kind, const char *name,
                         X509_REQ **out, struct fk_diag *diag);
/* Signs a CRL v2 of `issuer` listing the revoked entries of `certs` (a cJSON array from the
 * index; NULL for none) as PEM into a malloc'd *pem. */
enum fk_err pki_build_crl(X509 *issuer, EVP_PKEY *key, const struct cJSON *certs,
                          long long number, int64_t this_update, int64_t next_update, char **pem);

#define PKI_CLOCK_SKEW 300 /* default notBefore is this many seconds in the past */
#define PKI_DAY 86400LL
#define PKI_PEM_MAX (1024u * 1024) /* any PEM file we read: certificates, keys, chains */
#define PKI_INDEX_MAX (64u * 1024 * 1024)

#endif
