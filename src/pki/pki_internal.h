/* Shared between the pki source files only: the CA object, the index and small OpenSSL
 * helpers. Not installed, not a contract outside src/pki/. */
#ifndef FLEETKEY_PKI_INTERNAL_H
#define FLEETKEY_PKI_INTERNAL_H

#include "fleetkey/pki.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

struct cJSON;

struct fk_pki_ca {
    char *dir;
    X509 *root;
    X509 *issuing;
    EVP_PKEY *issuing_key;
    char *root_pem;
    char *chain_pem; /* issuing + root */
};

/* ---- index.c: index.json under an flock ----------------------------------------------- */
struct pki_index {
    int lock_fd;         /* the held flock on <dir>/.lock, -1 when none */
    struct cJSON *root;  /* {"version":1,"crl_number":N,"certs":[...]} */
    char *path;
};

/* Takes the directory lock (blocking) and loads index.json. create: start an empty index
 * when the file is missing (ca init only). */
enum fk_err pki_index_open(const char *dir, int create, struct pki_index *ix,
                           struct fk_diag *diag);
/* Rewrites index.json atomically (the lock stays held). */
enum fk_err pki_index_save(struct pki_index *ix, struct fk_diag *diag);
/* Releases the lock and frees. Safe on a zeroed/failed index. */
void pki_index_close(struct pki_index *ix);
/* The entry with this (normalised, lower-case) serial, or NULL. */
struct cJSON *pki_index_find(const struct pki_index *ix, const char *serial_hex);
/* Appends an entry for a freshly issued certificate. */
enum fk_err pki_index_add(struct pki_index *ix, const char *serial_hex, enum fk_pki_kind kind,
                          const char *name, const char *subject, int64_t not_before,
                          int64_t not_after, const char *fingerprint);
/* Takes and increments crl_number. */
long long pki_index_next_crl_number(struct pki_index *ix);

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
