/* fleetkey ota: the ESP32 app image format and Secure Boot V2 signature sectors.
 *
 * Two formats, both defined by Espressif and matched byte for byte:
 * - the app image (esp_image_header_t, segments, checksum, optional appended SHA-256,
 *   esp_app_desc_t at the start of the first segment), parsed in place;
 * - the Secure Boot V2 signature sector that espsecure and the ESP-IDF bootloader use: the
 *   signed data padded with 0xFF to a 4 KiB boundary, then one 4 KiB sector holding up to three
 *   1216-byte signature blocks (RSA-3072 PSS, version 0x02; ECDSA P-192/P-256/P-384,
 *   version 0x03), the rest of the sector 0xFF. Several blocks are how an image is dual-signed
 *   during a signing-key rotation.
 *
 * Parsers take (buf, len), never allocate and return slices into buf. Signing and verifying
 * use OpenSSL 3; keys come from PEM files or from a PKCS#11 token ("pkcs11:" URI, through the
 * OpenSSL pkcs11 engine). Nothing here prints or exits. All functions are thread-safe on
 * distinct objects; a struct fk_ota_key may be shared read-only between threads for verify. */
#ifndef FLEETKEY_OTA_H
#define FLEETKEY_OTA_H

#include <stddef.h>
#include <stdint.h>

#include "fleetkey/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- app image ----------------------------------------------------------------------- */
#define FK_OTA_IMAGE_MAGIC 0xE9u
#define FK_OTA_IMAGE_HDR_LEN 24u      /* esp_image_header_t */
#define FK_OTA_SEGMENT_HDR_LEN 8u     /* esp_image_segment_header_t */
#define FK_OTA_IMAGE_MAX_SEGMENTS 16u /* ESP_IMAGE_MAX_SEGMENTS */
#define FK_OTA_CHECKSUM_SEED 0xEFu    /* ESP_ROM_CHECKSUM_INITIAL */
#define FK_OTA_APP_DESC_MAGIC 0xABCD5432u
#define FK_OTA_APP_DESC_LEN 256u /* sizeof(esp_app_desc_t) */

/* One segment: a slice of the parsed buffer. */
struct fk_ota_segment {
    uint32_t load_addr;
    uint32_t len;
    size_t offset;       /* of the data (after the 8-byte segment header) in buf */
    const uint8_t *data; /* len bytes inside buf */
};

/* esp_app_desc_t, the strings copied NUL-terminated (the format does not promise a NUL). */
struct fk_ota_app_desc {
    uint32_t secure_version; /* anti-rollback counter */
    char version[33];
    char project_name[33];
    char time[17];
    char date[17];
    char idf_ver[33];
    uint8_t app_elf_sha256[32];
};

struct fk_ota_image {
    uint8_t segment_count;
    uint8_t spi_mode;
    uint8_t spi_speed; /* low nibble of byte 3 */
    uint8_t spi_size;  /* high nibble of byte 3 */
    uint32_t entry_addr;
    uint16_t chip_id; /* esp_chip_id_t: 0 ESP32, 2 S2, 5 C3, 9 S3, 12 C2, 13 C6, 16 H2 ... */
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
    int hash_appended; /* 1 when a SHA-256 of the image follows the checksum */
    struct fk_ota_segment segments[FK_OTA_IMAGE_MAX_SEGMENTS];
    uint8_t checksum;      /* the stored checksum byte (verified) */
    const uint8_t *sha256; /* 32 bytes inside buf when hash_appended (verified), else NULL */
    size_t image_len;      /* bytes of the image, up to and including the appended hash */
    int has_app_desc;      /* first segment starts with esp_app_desc_t (an app, not a loader) */
    struct fk_ota_app_desc app_desc;
};

/* Parses and checks an app image at the start of buf: header magic, segment count, each
 * segment length against what remains, the checksum byte (0xEF xor every segment byte, at the
 * last byte of a 16-byte block) and, when the header says so, the appended SHA-256. Bytes
 * after out->image_len are not looked at (a signature sector or padding may follow).
 * Borrows buf: the slices in *out point into it. Never allocates.
 * FK_OK; FK_E_TRUNCATED (the image ends early, diag->offset where); FK_E_PARSE (bad magic,
 * too many segments); FK_E_CRC (checksum byte or appended hash wrong). */
FK_MUST_CHECK enum fk_err fk_ota_image_parse(const uint8_t *buf, size_t len,
                                             struct fk_ota_image *out, struct fk_diag *diag);

/* ---- signature sector ------------------------------------------------------------------ */
#define FK_OTA_SECTOR_SIZE 4096u
#define FK_OTA_SIG_BLOCK_SIZE 1216u
#define FK_OTA_SIG_BLOCK_CRC_LEN 1196u /* the CRC-32 covers the block's first 1196 bytes */
#define FK_OTA_SIG_BLOCKS_MAX 3u
#define FK_OTA_SIG_MAGIC 0xE7u
#define FK_OTA_SIG_VERSION_RSA 0x02u
#define FK_OTA_SIG_VERSION_ECDSA 0x03u
#define FK_OTA_KEY_DIGEST_LEN 32u
#define FK_OTA_DIGEST_MAX 48u

enum fk_ota_scheme {
    FK_OTA_SCHEME_NONE = 0,
    FK_OTA_SCHEME_RSA3072,    /* RSA-PSS, SHA-256, MGF1-SHA-256, salt 32; block version 0x02 */
    FK_OTA_SCHEME_ECDSA_P192, /* block version 0x03, SHA-256 (verify only makes sense) */
    FK_OTA_SCHEME_ECDSA_P256, /* block version 0x03, SHA-256 */
    FK_OTA_SCHEME_ECDSA_P384, /* block version 0x03, SHA-384 */
};

/* "RSA-3072 PSS", "ECDSA P-256"...; never NULL. */
const char *fk_ota_scheme_name(enum fk_ota_scheme s);

enum fk_ota_block_state {
    FK_OTA_BLOCK_ABSENT,  /* the slot is erased flash (all 0xFF) */
    FK_OTA_BLOCK_INVALID, /* bad magic, version, CRC or field value: skipped, as espsecure does */
    FK_OTA_BLOCK_VALID,   /* well formed; says nothing yet about the signature */
};

/* One 1216-byte slot of the signature sector. Every pointer is a slice of the parsed buffer. */
struct fk_ota_sig_block {
    enum fk_ota_block_state state;
    const char *why; /* static text for INVALID ("bad CRC"), else "" */
    enum fk_ota_scheme scheme;
    const uint8_t *raw;          /* the 1216 bytes of the slot */
    const uint8_t *image_digest; /* digest_len bytes: SHA-256 (32) or SHA-384 (48) */
    size_t digest_len;
    const uint8_t *key; /* the public key as the eFuse digest hashes it: RSA n,e,rinv,m' (776
                           bytes), ECDSA curve id + x + y little-endian (1 + 2 * field bytes) */
    size_t key_len;
    const uint8_t *sig; /* RSA: 384 bytes little-endian; ECDSA: r then s, little-endian */
    size_t sig_len;
    uint32_t crc; /* stored CRC-32 */
};

struct fk_ota_sig_sector {
    size_t signed_len;      /* bytes covered by the signatures: len - 4096 */
    const uint8_t *sector;  /* the last 4096 bytes of buf */
    unsigned valid_blocks;  /* how many slots are VALID */
    unsigned leading_valid; /* VALID slots from slot 0 up to the first non-VALID one */
    struct fk_ota_sig_block blocks[FK_OTA_SIG_BLOCKS_MAX];
};

/* Parses the signature sector at the end of a signed image. buf is the whole signed file:
 * its length must be a non-zero multiple of 4096, as espsecure requires (a sector alone signs
 * empty data). Each slot is classified; the image digest inside
 * a block is NOT compared here (fk_ota_verify does that). Borrows buf, never allocates.
 * FK_OK (also when no slot is valid: check valid_blocks); FK_E_PARSE (length not a multiple
 * of 4096, or zero). */
FK_MUST_CHECK enum fk_err fk_ota_sig_sector_parse(const uint8_t *buf, size_t len,
                                                  struct fk_ota_sig_sector *out,
                                                  struct fk_diag *diag);

/* ---- keys ------------------------------------------------------------------------------ */
struct fk_ota_key; /* opaque: a private or public signing key */

/* Loads a key. spec is a PEM file path (private key: PKCS#8, traditional RSA or SEC1 EC,
 * unencrypted; or a SubjectPublicKeyInfo public key) or a PKCS#11 URI ("pkcs11:token=...;
 * object=...", PIN from "pin-value=" in the URI or the FK_PKCS11_PIN environment variable;
 * module from FK_PKCS11_MODULE, else the engine's default, p11-kit's proxy).
 * need_private: 1 to require a private key (signing). Only RSA-3072 and EC P-192/P-256/P-384
 * keys are accepted. *out is owned by the caller (fk_ota_key_free). Private key bytes are held
 * by OpenSSL only; the PEM buffer read from disk is wiped before it is freed.
 * FK_OK; FK_E_IO (diag names the file); FK_E_PARSE (not a PEM key); FK_E_UNSUPPORTED (other
 * algorithm or size, or PKCS#11 support missing); FK_E_ARG (public key where a private one is
 * needed); FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_key_load(const char *spec, int need_private,
                                          struct fk_ota_key **out, struct fk_diag *diag);
/* Same from a PEM buffer in memory (borrowed; not wiped: the caller owns it). name is used in
 * diagnostics only and may be NULL. */
FK_MUST_CHECK enum fk_err fk_ota_key_from_pem(const uint8_t *pem, size_t len, const char *name,
                                              int need_private, struct fk_ota_key **out,
                                              struct fk_diag *diag);
/* Frees a key (the private part is released by OpenSSL, which clears it). NULL is a no-op. */
void fk_ota_key_free(struct fk_ota_key *key);
enum fk_ota_scheme fk_ota_key_scheme(const struct fk_ota_key *key);
int fk_ota_key_is_private(const struct fk_ota_key *key);
/* The name the key was loaded from (path or URI without its pin-value); never NULL. */
const char *fk_ota_key_name(const struct fk_ota_key *key);

/* The SHA-256 of the public key as Secure Boot V2 burns it into eFuse (espsecure
 * digest-sbv2-public-key): over the key fields exactly as a signature block stores them.
 * FK_OK, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_key_digest(const struct fk_ota_key *key,
                                            uint8_t out[FK_OTA_KEY_DIGEST_LEN]);

/* The public half of a key as DER SubjectPublicKeyInfo (what the device stores in NVS
 * security/ota_pubkey). FK_OK; FK_E_NOSPACE (*len then says how much is needed);
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_key_public_der(const struct fk_ota_key *key, uint8_t *out,
                                                size_t cap, size_t *len);

/* The public key of a block (as stored in it) in PEM, for people and for other tools.
 * Writes a NUL-terminated PEM into out. FK_OK; FK_E_ARG (blk not VALID); FK_E_NOSPACE;
 * FK_E_PARSE (the key fields do not form a key, e.g. a point off the curve); FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_block_pubkey_pem(const struct fk_ota_sig_block *blk, char *out,
                                                  size_t out_size);
/* SHA-256 of a block's key fields (what signature-info prints); all zeros unless blk is
 * VALID. */
void fk_ota_block_key_digest(const struct fk_ota_sig_block *blk,
                             uint8_t out[FK_OTA_KEY_DIGEST_LEN]);

/* ---- sign ------------------------------------------------------------------------------ */
/* Size of the signed output for len input bytes: len rounded up to 4096, plus 4096. 0 when it
 * would overflow. */
size_t fk_ota_signed_size(size_t len);

/* Signs data: writes data, 0xFF padding to a 4096 boundary, then a signature sector with one
 * block per key (in order; 1 to 3 keys), the rest of the sector 0xFF. ECDSA keys sign the
 * SHA-256 (P-192, P-256) or SHA-384 (P-384) of the padded data; RSA keys sign its SHA-256 with
 * PSS (salt 32), exactly as espsecure sign-data --version 2 does. data is not checked to be an
 * app image (the caller does that with fk_ota_image_parse). out must hold
 * fk_ota_signed_size(len) bytes; *out_len receives it. The keys are borrowed.
 * out may be data itself (signing in place) when the buffer is large enough.
 * FK_OK; FK_E_ARG (no key, or a public key); FK_E_NOSPACE (more than 3 keys, or out too
 * small); FK_E_TOOBIG (len too large to pad); FK_E_CRYPTO (the signer failed, or the new
 * signature did not verify with the public key: diag says which key). Thread-safe. */
FK_MUST_CHECK enum fk_err fk_ota_sign(const uint8_t *data, size_t len,
                                      struct fk_ota_key *const *keys, size_t nkeys, uint8_t *out,
                                      size_t out_size, size_t *out_len, struct fk_diag *diag);

/* Adds signature blocks to an already signed image (the rotation flow: old-key image plus a
 * new-key block). The existing valid blocks (from slot 0 on) are copied unchanged, the new
 * ones follow, the rest of the sector is 0xFF; the signed data is unchanged. out must hold len
 * bytes. Refuses an image whose existing blocks do not match its data.
 * FK_OK; FK_E_PARSE (not a signed image: no valid block 0); FK_E_MISMATCH (an existing block's
 * image digest does not match the data); FK_E_NOSPACE (more than 3 blocks in all, or out too
 * small); FK_E_ARG; FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_sign_append(const uint8_t *signed_img, size_t len,
                                             struct fk_ota_key *const *keys, size_t nkeys,
                                             uint8_t *out, size_t out_size, size_t *out_len,
                                             struct fk_diag *diag);

/* ---- verify ---------------------------------------------------------------------------- */
enum fk_ota_verdict {
    FK_OTA_V_ABSENT,    /* erased slot */
    FK_OTA_V_INVALID,   /* malformed slot: fails verification (see fk_ota_verify) */
    FK_OTA_V_UNTRUSTED, /* well formed, its key is none of the trusted keys */
    FK_OTA_V_BAD_SIG,   /* its key is trusted but the signature does not verify */
    FK_OTA_V_OK,        /* verified with a trusted key */
};

struct fk_ota_verify_result {
    int block; /* first slot that verified, -1 when none */
    int key;   /* index in the trusted list of the key that verified it, -1 */
    enum fk_ota_verdict verdict[FK_OTA_SIG_BLOCKS_MAX];
    int key_of[FK_OTA_SIG_BLOCKS_MAX]; /* trusted key index per OK/BAD_SIG slot, else -1 */
};

/* Verifies a signed image against the trusted public (or private) keys. Every slot is looked
 * at, as espsecure verify-signature --version 2 does: a valid slot whose image digest differs
 * from the digest of the signed data is a hard failure (the data was changed after signing);
 * a valid slot verifies when the key it carries is one of the trusted keys (the comparison
 * the bootloader makes against the eFuse digests) and its signature verifies with that key.
 * Stricter than espsecure, which skips malformed slots: a slot that is neither erased nor a
 * well-formed block, or a sector fill byte that is not 0xFF, fails verification, so any
 * change to a signed file is detected (nothing in the sector is left unchecked).
 * res (optional) says which slot and key verified and what happened to each slot.
 * Borrows everything.
 * FK_OK (at least one slot verified); FK_E_VERIFY (none did; diag says why per slot);
 * FK_E_MISMATCH (a block's image digest does not match the data: diag names the block);
 * FK_E_PARSE (not a signed image layout, or a damaged slot/fill: diag says which);
 * FK_E_ARG (no trusted key); FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_verify(const uint8_t *buf, size_t len,
                                        struct fk_ota_key *const *trusted, size_t ntrusted,
                                        struct fk_ota_verify_result *res, struct fk_diag *diag);

/* Checks one VALID block on its own, as signature-info does: its image digest against the
 * signed data (*digest_ok) and its signature against the key it carries (*self_sig_ok; a
 * well-formed block signed by someone else's key, or whose key fields do not form a key,
 * fails this). This says nothing about trust: use fk_ota_verify for that. buf is the buffer
 * sec was parsed from. FK_OK; FK_E_ARG (slot out of range or not VALID); FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_ota_block_check(const struct fk_ota_sig_sector *sec,
                                             const uint8_t *buf, unsigned slot, int *digest_ok,
                                             int *self_sig_ok);

#ifdef __cplusplus
}
#endif
#endif
