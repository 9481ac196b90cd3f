/* fleetkey pki: the control-plane CA. A root CA and one issuing CA (both ECDSA P-256) in a
 * directory, device/server/mobile/operator certificates (a fresh P-256 key, or the public key
 * of a verified CSR whose private key never leaves its owner), revocation, CRL v2, PKCS#12
 * bundles for phones (modern PBES2/AES-256 or legacy 3DES/SHA-1) and the CONFIG_MINITRAIN_*
 * sdkconfig / MINITRAIN_* environment forms of a device's credentials.
 *
 * CA directory layout (docs/pki.md has the details):
 *   root.crt.pem  root.key.pem (0600, optionally encrypted)  root.crl.pem
 *   issuing.crt.pem  issuing.key.pem (0600)  ca-chain.pem (issuing + root)
 *   index.jsonl     append-only log: every issued cert (serial, name, validity,
 *                   fingerprint), every revocation, the CRL numbers used; appended and
 *                   fsync'd under an flock on .lock
 *   certs/<serial>.crt.pem       every certificate ever issued (never overwritten)
 *   <kind>s/<name>.crt.pem|.key.pem|.chain.pem   the current certificate of each name
 *
 * Private keys are wiped from memory when released and written with mode 0600 whatever the
 * umask; nothing here logs or prints key bytes (fingerprints only). Thread safety: distinct
 * objects may be used from distinct threads; one struct fk_pki_ca must not be used from two
 * threads at once. Processes sharing a CA directory are serialised by the .lock file. */
#ifndef FLEETKEY_PKI_H
#define FLEETKEY_PKI_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits that input is checked against. */
#define FK_PKI_NAME_MAX 64          /* device id / mobile / operator name, hostname */
#define FK_PKI_CA_NAME_MAX 48       /* --name; "<name> Issuing CA" must fit a 64-char CN */
#define FK_PKI_MAX_DAYS 36500       /* 100 years: anything longer is a typo */
#define FK_PKI_MAX_SANS 32
#define FK_PKI_CSR_MAX (64u * 1024) /* a CSR larger than this is refused before parsing */
#define FK_PKI_SERIAL_HEX_LEN 32    /* 16 random bytes */

enum fk_pki_kind {
    FK_PKI_DEVICE,   /* CN=id, URI urn:fleetkey:device:<id>, EKU clientAuth */
    FK_PKI_SERVER,   /* CN=host, DNS SANs (host + extras), EKU serverAuth */
    FK_PKI_MOBILE,   /* CN=name, URI urn:fleetkey:mobile:<name>, EKU clientAuth */
    FK_PKI_OPERATOR, /* CN=name, URI urn:fleetkey:operator:<name>, EKU clientAuth */
};

/* "device", "server", "mobile", "operator"; "?" for other values. */
const char *fk_pki_kind_name(enum fk_pki_kind kind);
/* Parses a kind name as above. FK_OK or FK_E_ARG. */
FK_MUST_CHECK enum fk_err fk_pki_kind_parse(const char *s, enum fk_pki_kind *out);

/* 1 when s is usable as a device id / mobile or operator name (and so as a file name):
 * 1..FK_PKI_NAME_MAX characters from [A-Za-z0-9._-], not starting with '.' or '-'. */
int fk_pki_name_valid(const char *s);

/* ---- creating a CA ---------------------------------------------------------------------- */
struct fk_pki_init_opts {
    const char *name;             /* organisation name; NULL → "fleetkey" */
    unsigned days;                /* issuing CA validity; the root gets twice this. 0 → 3650 */
    const char *passphrase;       /* encrypts root.key.pem (PKCS#8, AES-256-CBC + PBKDF2) */
    size_t passphrase_len;        /* when passphrase is non-NULL; 0 < len <= 1024 */
};

/* Creates a new CA in dir (created 0700 when missing): root and issuing key pairs, their
 * certificates (basicConstraints critical CA:TRUE with pathlen 1 and 0, keyUsage critical
 * keyCertSign+cRLSign, SKI/AKI), an empty root CRL valid as long as the issuing CA, the chain
 * file and an empty index. Refuses when any CA file already exists in dir (an existing CA is
 * never overwritten). Borrows every pointer for the call only. FK_OK, FK_E_EXISTS, FK_E_ARG,
 * FK_E_RANGE (days), FK_E_IO, FK_E_CRYPTO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_pki_ca_init(const char *dir, const struct fk_pki_init_opts *opts,
                                         struct fk_diag *diag);

/* ---- using a CA ------------------------------------------------------------------------- */
struct fk_pki_ca; /* opaque: the issuing CA's key and certificates, the root certificate */

/* Opens the CA in dir: loads and cross-checks the root and issuing certificates and the
 * issuing key (the root key stays on disk). *out is freed with fk_pki_ca_free. FK_OK,
 * FK_E_NOTFOUND (no CA there), FK_E_PARSE, FK_E_MISMATCH (key does not match certificate, or
 * issuing CA not signed by the root), FK_E_IO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_pki_ca_open(const char *dir, struct fk_pki_ca **out,
                                         struct fk_diag *diag);
/* Wipes the issuing key and frees. NULL is a no-op. */
void fk_pki_ca_free(struct fk_pki_ca *ca);
/* The directory the CA was opened from; valid until fk_pki_ca_free. */
const char *fk_pki_ca_dir(const struct fk_pki_ca *ca);
/* PEM of the root certificate, and of issuing + root (what a verifier needs besides the
 * leaf). NUL-terminated; valid until fk_pki_ca_free. */
const char *fk_pki_ca_root_pem(const struct fk_pki_ca *ca);
const char *fk_pki_ca_chain_pem(const struct fk_pki_ca *ca);

/* ---- issuing ---------------------------------------------------------------------------- */
struct fk_pki_issue_opts {
    enum fk_pki_kind kind;
    const char *name;             /* see fk_pki_name_valid; for a server, the DNS host name */
    const char *const *sans;      /* servers only: extra SANs "DNS:host", "IP:addr" or a bare
                                     host name; n_sans entries, at most FK_PKI_MAX_SANS */
    size_t n_sans;
    unsigned days;                /* 0 → default for the kind (device 730, server 397, mobile
                                     and operator 365), shortened to the issuing CA's end;
                                     an explicit value must fit inside the issuing CA's
                                     validity (FK_E_RANGE); at most FK_PKI_MAX_DAYS */
    /* Explicit validity in Unix seconds, for certificates that must be expired or not yet
     * valid (tests of the TLS peers). Both 0 → notBefore = now - 5 minutes (clock skew),
     * notAfter = now + days. When set, not_before < not_after is required; days is ignored. */
    int64_t not_before;
    int64_t not_after;
    /* A certificate request (PEM or DER) to take the public key from; NULL → a fresh P-256
     * key is generated and returned. The CSR's signature must verify, its key must be EC
     * P-256/P-384 or RSA >= 2048 bits, and when it carries a CN that CN must equal name.
     * Nothing else of the CSR (other subject fields, requested extensions) is used. */
    const uint8_t *csr;
    size_t csr_len;
};

struct fk_pki_issued; /* opaque: one freshly issued certificate (and key, when generated) */

/* Issues a certificate signed by the issuing CA, with a random 16-byte serial that is unique
 * in the index, and records it in index.jsonl and certs/<serial>.crt.pem. Does not write the
 * per-name files (fk_pki_issued_save does). The leaf may not outlive the issuing CA. Borrows
 * opts for the call; *out is NULL on failure. FK_OK, FK_E_ARG (bad name or SAN), FK_E_RANGE
 * (days, validity), FK_E_PARSE (CSR malformed or truncated), FK_E_VERIFY (CSR signature),
 * FK_E_POLICY (CSR key type or CN), FK_E_TOOBIG (CSR), FK_E_NOTFOUND (CA index missing),
 * FK_E_CRYPTO, FK_E_IO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_pki_issue(struct fk_pki_ca *ca, const struct fk_pki_issue_opts *opts,
                                       struct fk_pki_issued **out, struct fk_diag *diag);

/* The call for generate/batch: a device certificate for device_id with a fresh P-256 key and
 * the default validity (days 0) or `days`. Same codes as fk_pki_issue. */
FK_MUST_CHECK enum fk_err fk_pki_issue_device(struct fk_pki_ca *ca, const char *device_id,
                                              unsigned days, struct fk_pki_issued **out,
                                              struct fk_diag *diag);

/* Writes <dir>/<kind>s/<name>.crt.pem (0644), .chain.pem (leaf + issuing, 0644) and, when
 * the key was generated here, .key.pem (0600), atomically. Refuses (FK_E_EXISTS) to replace
 * an existing certificate of that name unless replace is set; the old certificate stays in
 * certs/ and in the index (revoke it by serial). FK_OK, FK_E_EXISTS, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_pki_issued_save(const struct fk_pki_ca *ca,
                                             const struct fk_pki_issued *issued, int replace,
                                             struct fk_diag *diag);

/* Wipes the private key and frees. NULL is a no-op. */
void fk_pki_issued_free(struct fk_pki_issued *issued);

/* Accessors; every pointer stays valid until fk_pki_issued_free. */
enum fk_pki_kind fk_pki_issued_kind(const struct fk_pki_issued *issued);
const char *fk_pki_issued_name(const struct fk_pki_issued *issued);
/* Lower-case hex of the serial, FK_PKI_SERIAL_HEX_LEN digits. */
const char *fk_pki_issued_serial(const struct fk_pki_issued *issued);
/* "sha256:" + 64 hex digits of the certificate DER (what the inventory and manifest record). */
const char *fk_pki_issued_fingerprint(const struct fk_pki_issued *issued);
const uint8_t *fk_pki_issued_cert_der(const struct fk_pki_issued *issued, size_t *len);
const char *fk_pki_issued_cert_pem(const struct fk_pki_issued *issued);
/* Leaf + issuing CA certificate, PEM. */
const char *fk_pki_issued_chain_pem(const struct fk_pki_issued *issued);
/* The generated private key as PKCS#8 DER / PEM; NULL (and *len 0) when issued from a CSR.
 * Secret: never log it. */
const uint8_t *fk_pki_issued_key_der(const struct fk_pki_issued *issued, size_t *len);
const char *fk_pki_issued_key_pem(const struct fk_pki_issued *issued);
int64_t fk_pki_issued_not_before(const struct fk_pki_issued *issued);
int64_t fk_pki_issued_not_after(const struct fk_pki_issued *issued);

/* ---- CSR checks (also the fuzzed parsing path) ------------------------------------------ */
/* Parses a CSR in PEM or DER from (buf, len), verifies its self-signature and applies the
 * issuing policy above for (kind, name): key type/size, CN equal to name when present.
 * Borrows buf; allocates nothing that outlives the call. FK_OK, FK_E_TOOBIG, FK_E_PARSE,
 * FK_E_VERIFY, FK_E_POLICY, FK_E_NOMEM. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_pki_csr_check(const uint8_t *buf, size_t len, enum fk_pki_kind kind,
                                           const char *name, struct fk_diag *diag);

/* ---- revocation and CRL ----------------------------------------------------------------- */
/* RFC 5280 5.3.1 reasons that make sense here; certificateHold and removeFromCRL are not
 * offered (revocation is final). Values are the CRLReason codes. */
enum fk_pki_reason {
    FK_PKI_REASON_UNSPECIFIED = 0,
    FK_PKI_REASON_KEY_COMPROMISE = 1,
    FK_PKI_REASON_CA_COMPROMISE = 2,
    FK_PKI_REASON_AFFILIATION_CHANGED = 3,
    FK_PKI_REASON_SUPERSEDED = 4,
    FK_PKI_REASON_CESSATION_OF_OPERATION = 5,
    FK_PKI_REASON_PRIVILEGE_WITHDRAWN = 9,
};
/* "keyCompromise" etc. (RFC 5280 spelling) ↔ value. parse: FK_OK or FK_E_ARG. */
FK_MUST_CHECK enum fk_err fk_pki_reason_parse(const char *s, enum fk_pki_reason *out);
const char *fk_pki_reason_name(enum fk_pki_reason r);

/* Normalises a serial as people paste it (hex in any case, optional "0x", ':' separators,
 * leading zeros) to the index's form: lower-case hex without leading zeros. FK_OK or
 * FK_E_ARG. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_pki_serial_parse(const char *in,
                                              char out[FK_PKI_SERIAL_HEX_LEN * 2 + 1]);

/* Marks the certificate with this serial (hex, any case, optional "0x" and ':' separators)
 * revoked at `when` (Unix seconds; 0 → now) in the index. FK_OK, FK_E_ARG (not a serial),
 * FK_E_NOTFOUND (not issued by this CA), FK_E_STATE (already revoked), FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_pki_revoke_serial(struct fk_pki_ca *ca, const char *serial,
                                               enum fk_pki_reason reason, int64_t when,
                                               struct fk_diag *diag);
/* Revokes a batch of certificates by serial (each spelled as for fk_pki_revoke_serial) with
 * reason, at `when` (0 → now), under one lock of the index and with one commit: one append
 * and one fsync however many serials, which is what revoking a whole fleet after a rotation
 * needs. The batch is checked before anything is recorded: a malformed serial (FK_E_ARG) or
 * one this CA never issued (FK_E_NOTFOUND) fails it whole, nothing revoked, diag naming its
 * position. A serial already revoked (before the call or earlier in the batch) is skipped,
 * not an error, and keeps its first date and reason: a retried batch revokes only what is
 * left. *revoked (may be NULL) receives how many were revoked by this call (0 on failure).
 * n = 0 is FK_OK with nothing written. Borrows serials for the call. FK_OK, FK_E_ARG,
 * FK_E_NOTFOUND, FK_E_PARSE (damaged index), FK_E_IO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_pki_revoke_serials(struct fk_pki_ca *ca, const char *const *serials,
                                                size_t n, enum fk_pki_reason reason, int64_t when,
                                                size_t *revoked, struct fk_diag *diag);
/* Revokes every certificate of (kind, name) that is not yet revoked, e.g. all of a
 * compromised device's certificates; *count (may be NULL) receives how many. FK_OK,
 * FK_E_NOTFOUND (none to revoke), FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_pki_revoke_name(struct fk_pki_ca *ca, enum fk_pki_kind kind,
                                             const char *name, enum fk_pki_reason reason,
                                             int64_t when, size_t *count, struct fk_diag *diag);

/* One certificate as recorded in the CA index. */
struct fk_pki_cert_info {
    char serial[FK_PKI_SERIAL_HEX_LEN * 2 + 1]; /* lower-case hex */
    enum fk_pki_kind kind;
    char name[FK_PKI_NAME_MAX + 1];
    char fingerprint[72]; /* "sha256:" + 64 hex digits of the certificate DER */
    int64_t not_before;
    int64_t not_after;
    int revoked;
    int64_t revoked_at;        /* when revoked */
    enum fk_pki_reason reason; /* when revoked */
};
/* Return non-zero to stop the walk. */
typedef int fk_pki_cert_fn(void *user, const struct fk_pki_cert_info *info);

/* Calls fn for every certificate in the index, in the order they were issued, under the
 * directory lock (fn must not call other fk_pki functions on the same CA directory). FK_OK,
 * FK_E_PARSE (damaged index), FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_pki_list(struct fk_pki_ca *ca, fk_pki_cert_fn *fn, void *user,
                                      struct fk_diag *diag);

/* Signs a CRL v2 of the issuing CA (every revoked serial with its date and reason, the next
 * CRL number from the index, nextUpdate = thisUpdate + days, AKI) and returns it as PEM
 * followed by the root CRL (root.crl.pem), so one file serves `openssl verify -crl_check_all`.
 * this_update 0 → now; days 0 → 7. *out is malloc'd (free()), NUL-terminated. FK_OK,
 * FK_E_RANGE, FK_E_CRYPTO, FK_E_IO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_pki_crl(struct fk_pki_ca *ca, int64_t this_update, unsigned days,
                                     char **out, size_t *out_len, struct fk_diag *diag);
/* Re-signs root.crl.pem with the root key (decrypted with passphrase when it is encrypted),
 * valid for `days` (0 → as long as the issuing CA). The root only ever issues the issuing CA,
 * so this CRL is normally empty. FK_OK, FK_E_AUTH (wrong or missing passphrase), FK_E_RANGE,
 * FK_E_CRYPTO, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_pki_root_crl_refresh(struct fk_pki_ca *ca, const char *passphrase,
                                                  size_t passphrase_len, unsigned days,
                                                  struct fk_diag *diag);

/* ---- secrets from files ----------------------------------------------------------------- */
/* Reads a passphrase/password file (at most 1024 bytes before the newline): the first line,
 * without its "\n" or "\r\n". An empty password or a NUL byte is refused. *out is malloc'd
 * and NUL-terminated; free it with fk_free_secret(*out, *out_len). FK_OK, FK_E_ARG,
 * FK_E_TOOBIG, FK_E_IO, FK_E_NOTFOUND. */
FK_MUST_CHECK enum fk_err fk_pki_read_secret_file(const char *path, char **out, size_t *out_len,
                                                  struct fk_diag *diag);

/* ---- PKCS#12 ---------------------------------------------------------------------------- */
enum fk_pki_p12_form {
    /* PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certificates, HMAC-SHA256 MAC. */
    FK_PKI_P12_MODERN,
    /* pbeWithSHA1And3-KeyTripleDES-CBC for key and certificates, HMAC-SHA1 MAC: what older
     * Android versions and some MDM systems require. */
    FK_PKI_P12_LEGACY,
};

/* Builds a PKCS#12 from a private key PEM, its certificate PEM and the CA chain PEM (any
 * number of certificates, may be NULL), protected by password (password_len bytes, UTF-8, no
 * NUL). friendly_name (may be NULL) becomes the key entry's alias. Checks the key matches the
 * certificate. *out is malloc'd (free()). FK_OK, FK_E_ARG, FK_E_PARSE, FK_E_MISMATCH,
 * FK_E_CRYPTO, FK_E_NOMEM. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_pki_p12_build(const char *key_pem, const char *cert_pem,
                                           const char *chain_pem, const char *friendly_name,
                                           const char *password, size_t password_len,
                                           enum fk_pki_p12_form form, uint8_t **out,
                                           size_t *out_len, struct fk_diag *diag);
/* The same for the current certificate of (kind, name) in the CA: reads
 * <kind>s/<name>.key.pem and .crt.pem, adds issuing + root. FK_E_NOTFOUND when there is no
 * such certificate or no key (issued from a CSR: the key is not ours to export). */
FK_MUST_CHECK enum fk_err fk_pki_export_p12(const struct fk_pki_ca *ca, enum fk_pki_kind kind,
                                            const char *name, const char *password,
                                            size_t password_len, enum fk_pki_p12_form form,
                                            uint8_t **out, size_t *out_len,
                                            struct fk_diag *diag);

/* ---- device configuration (the seed's development path) --------------------------------- */
enum fk_pki_devcfg_form {
    FK_PKI_DEVCFG_SDKCONFIG, /* CONFIG_MINITRAIN_X="..." lines, Kconfig string escaping */
    FK_PKI_DEVCFG_ENV,       /* export MINITRAIN_X='...' lines, POSIX shell single quotes */
};

/* Renders CONFIG_MINITRAIN_{WSS_URI,EXPECTED_HOST,CA_CERT_PEM,CLIENT_CERT_PEM,CLIENT_KEY_PEM}
 * (or the MINITRAIN_* environment form) for device_id from the CA: CA_CERT_PEM = issuing +
 * root, CLIENT_CERT_PEM = devices/<id>.crt.pem, CLIENT_KEY_PEM = devices/<id>.key.pem.
 * wss_uri / expected_host may be NULL (their lines are then a comment). The output contains a
 * private key: *out is malloc'd and NUL-terminated, *out_len its length; free it with
 * fk_free_secret(*out, *out_len). FK_OK, FK_E_MISMATCH (key does not match certificate),
 * FK_E_ARG (bad id, URI not wss://, control characters), FK_E_NOTFOUND (no certificate or key
 * for the device), FK_E_IO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_pki_devcfg_render(const struct fk_pki_ca *ca, const char *device_id,
                                               const char *wss_uri, const char *expected_host,
                                               enum fk_pki_devcfg_form form, char **out,
                                               size_t *out_len, struct fk_diag *diag);

/* Kconfig/sdkconfig string escaping: '"' → \", '\' → \\, newline → \n (the text between the
 * quotes); other control characters are refused (FK_E_ARG). Shell: the whole value in single
 * quotes, ' → '\''. Both write a NUL-terminated string into out; FK_OK or FK_E_NOSPACE.
 * *_len give the exact size needed including the NUL. Thread-safe. */
size_t fk_pki_kconfig_escaped_len(const char *s);
FK_MUST_CHECK enum fk_err fk_pki_kconfig_escape(const char *s, char *out, size_t out_size);
size_t fk_pki_shell_quoted_len(const char *s);
FK_MUST_CHECK enum fk_err fk_pki_shell_quote(const char *s, char *out, size_t out_size);

/* ---- device mTLS identities for minting (mint_cert.c) ------------------------------------ */
/* The `--ca` part of generate and batch: a device's mTLS identity issued from the CA and
 * handed to fk_keys_mint. The private key goes from the issued certificate (wiped when freed)
 * into the NVS image and nowhere else: no CA-directory key file, no manifest field, no .pem
 * next to the manifest. */
struct fk_keys_mtls;
struct fk_keys_mint_opts;

/* Opens the CA in dir and converts its chain (issuing, then root) to DER for the image.
 * *chain is malloc'd (free()). Codes of fk_pki_ca_open and fk_keys_pem_chain_to_der. */
FK_MUST_CHECK enum fk_err fk_pki_mtls_open(const char *dir, struct fk_pki_ca **ca, uint8_t **chain,
                                           size_t *chain_len, struct fk_diag *diag);

/* Issues a device certificate for id (days 0 = the CA's default) and points the mTLS fields
 * of *o at it; *blobs and *issued must outlive the fk_keys_mint call that uses *o, after
 * which the caller frees *issued (fk_pki_issued_free wipes the key). The CA object must not
 * be used by another thread during the call. Codes of fk_pki_issue_device. */
FK_MUST_CHECK enum fk_err fk_pki_mtls_issue(struct fk_pki_ca *ca, const char *id, unsigned days,
                                            const uint8_t *chain, size_t chain_len,
                                            struct fk_pki_issued **issued,
                                            struct fk_keys_mtls *blobs, struct fk_keys_mint_opts *o,
                                            struct fk_diag *diag);

/* Which device names fk_pki_mtls_supersede looks at. */
typedef int fk_pki_name_fn(void *user, const char *name);

/* Revokes, with reason superseded, every device certificate not yet revoked whose name
 * `wanted` accepts and whose fingerprint is not keep_fpr (NULL: keep none): the certificates
 * of earlier or interrupted mints of a device that is now minted again. *count (may be NULL)
 * receives how many were revoked. FK_OK, FK_E_NOMEM, FK_E_PARSE, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_pki_mtls_supersede(struct fk_pki_ca *ca, fk_pki_name_fn *wanted,
                                                void *user, const char *keep_fpr, size_t *count,
                                                struct fk_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
