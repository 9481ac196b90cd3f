/* Pieces shared by the ota module's files; not part of the public contract. */
#ifndef FK_OTA_INTERNAL_H
#define FK_OTA_INTERNAL_H

#include "fleetkey/ota.h"

#include <openssl/evp.h>

/* Largest key field of a block: RSA n (384) + e (4) + rinv (384) + m' (4). */
#define FK_OTA_KEY_ENC_MAX 776u
/* Largest signature field: RSA-3072 (384 bytes). */
#define FK_OTA_SIG_MAX 384u

struct fk_ota_key {
    EVP_PKEY *pkey; /* as loaded: may be private, may live in a PKCS#11 token */
    EVP_PKEY *pub;  /* the public half, a plain provider key (for encoding and verify) */
    void *engine;   /* ENGINE * that pkey belongs to, NULL for PEM keys */
    int is_private;
    enum fk_ota_scheme scheme;
    uint8_t enc[FK_OTA_KEY_ENC_MAX]; /* the key fields exactly as a signature block holds them */
    size_t enc_len;
    char name[256];
};

/* Field sizes per scheme (as espsecure lays them out). */
struct fk_ota_layout {
    uint8_t version;         /* block version byte */
    uint8_t sha_version;     /* ECDSA only: 0 SHA-256, 1 SHA-384 */
    uint8_t curve_id;        /* ECDSA only: 1 P-192, 2 P-256, 3 P-384 */
    size_t digest_len;       /* 32 or 48 */
    size_t coord_len;        /* ECDSA field element bytes: 24, 32, 48 */
    size_t key_off, key_len; /* key field in the block (what the eFuse digest covers) */
    size_t sig_off, sig_field_len, sig_len; /* sig_len: meaningful bytes of the field */
};

/* The layout of a scheme; NULL for FK_OTA_SCHEME_NONE. */
const struct fk_ota_layout *fk_ota_layout_of(enum fk_ota_scheme s);

/* Loads a key from a "pkcs11:" URI through the OpenSSL pkcs11 engine (pkcs11.c). On success
 * *pkey and *engine are owned by the caller (release with fk_ota_pkcs11_release). */
enum fk_err fk_ota_pkcs11_load(const char *uri, int need_private, EVP_PKEY **pkey, void **engine,
                               struct fk_diag *diag);
void fk_ota_pkcs11_release(void *engine);

/* Makes a public key from the key fields of a block (the reverse of the encoding).
 * FK_OK, FK_E_PARSE (fields do not form a key of that scheme), FK_E_CRYPTO. */
enum fk_err fk_ota_key_from_block(enum fk_ota_scheme s, const uint8_t *enc, size_t enc_len,
                                  EVP_PKEY **out);
/* Encodes the public key of pub as a block holds it. FK_OK, FK_E_UNSUPPORTED, FK_E_CRYPTO. */
enum fk_err fk_ota_key_encode(const EVP_PKEY *pub, enum fk_ota_scheme *scheme, uint8_t *enc,
                              size_t *enc_len);

/* Signs digest (digest_len bytes, the block's image digest) with key and writes the signature
 * in block format (little-endian) into sig (sig_len bytes for the scheme). */
enum fk_err fk_ota_sign_digest(const struct fk_ota_key *key, const uint8_t *digest,
                               size_t digest_len, uint8_t *sig);
/* Verifies a block-format signature over digest with pub. FK_OK, FK_E_VERIFY, FK_E_CRYPTO. */
enum fk_err fk_ota_verify_digest(EVP_PKEY *pub, enum fk_ota_scheme s, const uint8_t *digest,
                                 size_t digest_len, const uint8_t *sig);

#endif
