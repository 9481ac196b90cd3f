/* fleetkey keybackup: k-of-n backups of a signing key (seed 004: "Store OTA private keys in at
 * least 2 secure locations") as Shamir shares (fleetkey/shamir.h), one text file per share.
 *
 * Share file (format 1), ASCII, one "name: value" line each, in this order, LF line ends:
 *   fleetkey-key-share: 1
 *   backup: 16 hex digits        random id of this backup run (shares of two runs never mix)
 *   index: I                     1..255, the share's x
 *   threshold: K                 2..255, shares needed
 *   shares: N                    K..255, shares made
 *   key-fingerprint: sha256:HEX  SHA-256 of the public key's DER SubjectPublicKeyInfo
 *   public-key: BASE64           that DER (public: restore verifies the rebuilt key with it)
 *   secret-length: L             bytes of the secret (the private key's PKCS#8 DER)
 *   share: BASE64                L bytes, this share of the secret
 *   checksum: 32 hex digits      first 16 bytes of SHA-256 over every byte before this line
 * A single share reveals nothing about the key (K >= 2); the file is written 0600 anyway, since
 * K of them are the key. Nothing here logs or prints key material: only fingerprints. */
#ifndef FLEETKEY_KEYBACKUP_H
#define FLEETKEY_KEYBACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "fleetkey/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FK_KEYSHARE_VERSION 1u
#define FK_KEYSHARE_PUB_MAX 2048u    /* DER SPKI: RSA-8192 is 1062 bytes */
#define FK_KEYSHARE_SECRET_MAX 8192u /* PKCS#8 DER: RSA-8192 is about 4.8 KB */
#define FK_KEYSHARE_FILE_MAX 24576u  /* a share file is at most this long */
#define FK_KEYSHARE_FPR_SIZE 72u     /* "sha256:" + 64 hex digits + NUL */
#define FK_KEYSHARE_ID_LEN 8u

/* One parsed share. Caller memory (about 10 KiB); share[] is secret: fk_keyshare_wipe. */
struct fk_keyshare {
    unsigned version;
    uint8_t backup_id[FK_KEYSHARE_ID_LEN];
    unsigned index;
    unsigned threshold;
    unsigned shares;
    char fingerprint[FK_KEYSHARE_FPR_SIZE];
    uint8_t pub_der[FK_KEYSHARE_PUB_MAX];
    size_t pub_der_len;
    uint8_t share[FK_KEYSHARE_SECRET_MAX];
    size_t share_len;
};

/* Parses a share file held in buf (len bytes; no NUL needed, none trusted). The checksum is
 * checked first, then every field: range, order, the fingerprint against the public key, the
 * share length against secret-length. Never allocates; fills *out (wiped on failure).
 * FK_OK; FK_E_CRC (checksum mismatch: the file is damaged); FK_E_PARSE (diag->line names the
 * line and says what was expected); FK_E_UNSUPPORTED (another format version); FK_E_RANGE;
 * FK_E_TOOBIG (len over FK_KEYSHARE_FILE_MAX). Thread-safe. */
FK_MUST_CHECK enum fk_err fk_keyshare_parse(const uint8_t *buf, size_t len, struct fk_keyshare *out,
                                            struct fk_diag *diag);

/* Writes the text of a share (with its checksum) into out (out_size bytes, NUL-terminated);
 * *out_len gets the length without the NUL. FK_OK; FK_E_ARG (a field out of range);
 * FK_E_NOSPACE; FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_keyshare_format(const struct fk_keyshare *s, char *out,
                                             size_t out_size, size_t *out_len);

/* Wipes a share (its secret bytes included). NULL is a no-op. */
void fk_keyshare_wipe(struct fk_keyshare *s);

/* What backup and restore tell the caller (public facts only). */
struct fk_keybackup_info {
    char fingerprint[FK_KEYSHARE_FPR_SIZE];
    char key_type[32]; /* "EC P-256", "RSA-3072", "ED25519"... */
    unsigned threshold;
    unsigned shares;
    unsigned used; /* restore: the share indexes interpolated (the first K distinct) */
    char backup_id[2 * FK_KEYSHARE_ID_LEN + 1];
};

/* Splits the private key in pem (PEM, unencrypted: PKCS#8, SEC1 or PKCS#1; borrowed, not
 * wiped) into n share files DIR/key-share-I-of-N.txt (mode 0600, written atomically; DIR is
 * created 0700). Existing share files are never overwritten. Before anything is written, the
 * first k shares are combined again and compared with the key (constant time).
 * FK_OK; FK_E_ARG (k, n out of range); FK_E_PARSE (not a private key PEM; name, which may be
 * NULL, is used in diag); FK_E_TOOBIG; FK_E_EXISTS (a share file exists: diag names it; none
 * of this run is left behind); FK_E_IO; FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_keybackup_split(const uint8_t *pem, size_t pem_len, const char *name,
                                             unsigned n, unsigned k, const char *dir,
                                             struct fk_keybackup_info *info, struct fk_diag *diag);

/* Rebuilds the key from share files and proves it: the rebuilt key's public key must be the one
 * recorded in the shares, and a test message it signs must verify with that recorded key. Only
 * then is out_pem written (PKCS#8 PEM, mode 0600, atomically; an existing file is never
 * replaced). Shares from different backups or keys, a share given twice, a damaged share (the
 * file is named) and fewer shares than the threshold are refused.
 * FK_OK; FK_E_IO; FK_E_CRC; FK_E_PARSE (diag names file and line); FK_E_MISMATCH (mixed
 * backups); FK_E_ARG (duplicate index, no share); FK_E_RANGE (fewer than the threshold);
 * FK_E_VERIFY (the rebuilt key is not the recorded one); FK_E_EXISTS (out_pem exists);
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_keybackup_restore(const char *const *paths, size_t npaths,
                                               const char *out_pem, struct fk_keybackup_info *info,
                                               struct fk_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
