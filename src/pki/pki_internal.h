/* Shared between the pki source files only: the CA object, the index and small OpenSSL
 * helpers. Not installed, not a contract outside src/pki/. */
#ifndef FLEETKEY_PKI_INTERNAL_H
#define FLEETKEY_PKI_INTERNAL_H

#include "fleetkey/pki.h"

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

/* ---- pki.c helpers shared with p12.c / devcfg.c ----------------------------------------- */
/* Reads a file of at most max bytes, NUL-terminated; fk_free_secret() it when secret. */
enum fk_err pki_read_text(const char *path, size_t max, char **out, size_t *out_len,
                          struct fk_diag *diag);
/* Normalises a serial written as hex (any case, "0x", ':' separators) to lower-case hex
 * without leading zero bytes stripped. FK_OK or FK_E_ARG. */
enum fk_err pki_serial_normalise(const char *in, char out[FK_PKI_SERIAL_HEX_LEN * 2 + 1]);
/* "<dir>/<kind>s/<name><suffix>" into a malloc'd string. */
enum fk_err pki_name_path(const char *dir, enum fk_pki_kind kind, const char *name,
                          const char *suffix, char **out);

#define PKI_PEM_MAX (1024u * 1024) /* any PEM file we read: certificates, keys, chains */
#define PKI_INDEX_MAX (64u * 1024 * 1024)

#endif
