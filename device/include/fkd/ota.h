/* Firmware updates on the device: verify, write, switch and roll back, the model of ESP-IDF's
 * app_update component and its bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE and
 * Secure Boot V2.
 *
 * Four pieces, each usable on its own:
 * - app image: a bounded reader of the ESP32 app image (esp_image_header_t, segments, the XOR
 *   checksum, the appended SHA-256, esp_app_desc_t) through a read callback, so the same code
 *   checks a buffer (fuzzing) or a partition in flash, 512 bytes at a time;
 * - Secure Boot V2 signature sector (sbv2_verify.c): up to three 1216-byte blocks, RSA-3072
 *   PSS (version 0x02) and ECDSA P-256/P-384 (version 0x03), verified with mbedTLS against the
 *   trusted public keys from NVS (security/ota_pubkey, security/ota_pubkey2: DER
 *   SubjectPublicKeyInfo). A block counts when the key it carries is, field for field, one of
 *   the trusted keys (what the ROM does with the eFuse key digests) and its signature over the
 *   image digest verifies;
 * - otadata (otadata.c): ESP-IDF's two 4 KiB sectors, each starting with an
 *   esp_ota_select_entry_t {ota_seq, seq_label[20], ota_state, crc = crc32_le(UINT32_MAX,
 *   &ota_seq, 4)}; the entry with the highest valid sequence number names the boot slot
 *   ((seq - 1) % 2); a switch writes the sector that does NOT hold the active entry, so a power
 *   cut leaves the old choice in force;
 * - the streaming update (ota.c): begin / write / finish, fed by any transport in chunks of any
 *   size, and the boot-side calls (select, mark valid, roll back).
 *
 * Memory: every context lives in caller memory; no heap of ours. mbedTLS allocates its bignums
 * inside fkd_sbv2_verify (freed before it returns), as it does on ESP-IDF.
 * Thread safety: none; one update at a time, from one thread. */
#ifndef FKD_OTA_H
#define FKD_OTA_H

#include "fkd/common.h"
#include "fkd/flash.h"
#include "fkd/part.h"

#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_nvs;

/* ---- app image ------------------------------------------------------------------------- */
#define FKD_APP_MAGIC 0xE9u
#define FKD_APP_HDR_LEN 24u
#define FKD_APP_SEG_HDR_LEN 8u
#define FKD_APP_MAX_SEGMENTS 16u
#define FKD_APP_DESC_MAGIC 0xABCD5432u
#define FKD_APP_DESC_LEN 256u

/* What a booted robot shows of its "running" image (esp_app_desc_t, strings NUL-terminated). */
struct fkd_app_info {
    uint32_t image_len;      /* header .. checksum (.. appended SHA-256) */
    uint32_t secure_version; /* anti-rollback counter */
    uint16_t chip_id;
    uint8_t segments;
    uint8_t hash_appended;
    char version[33];
    char project_name[33];
    char time[17];
    char date[17];
    char idf_ver[33];
    uint8_t sha256[32]; /* the appended SHA-256 (valid when hash_appended; else zeros) */
};

/* Reads len bytes at off of the image source into buf. FKD_OK or an error passed through. */
typedef enum fkd_err fkd_read_fn(void *user, uint32_t off, void *buf, size_t len);

/* Checks the app image at offset 0 of a source of max_len bytes, reading it in bounded pieces:
 * magic 0xE9, segment count <= 16, every segment inside max_len, esp_app_desc_t (magic
 * 0xABCD5432) at the start of the first segment, the checksum byte (0xEF ^ every segment
 * byte, the last byte of a 16-byte block) and, when the header says so, the appended
 * SHA-256. FKD_OK; FKD_E_PARSE (magic, counts, no app description); FKD_E_TRUNCATED (a
 * segment runs past max_len); FKD_E_CRC (checksum or hash wrong); the reader's error. */
FKD_MUST_CHECK enum fkd_err fkd_app_check(fkd_read_fn *rd, void *user, uint32_t max_len,
                                          struct fkd_app_info *out);
/* The same over a buffer (borrowed). */
FKD_MUST_CHECK enum fkd_err fkd_app_check_buf(const uint8_t *buf, size_t len,
                                              struct fkd_app_info *out);

/* ---- Secure Boot V2 signature sector --------------------------------------------------- */
#define FKD_SBV2_SECTOR 4096u
#define FKD_SBV2_BLOCK 1216u
#define FKD_SBV2_CRC_LEN 1196u
#define FKD_SBV2_BLOCKS 3u
#define FKD_SBV2_MAGIC 0xE7u
#define FKD_SBV2_KEYS_MAX 2u     /* security/ota_pubkey and security/ota_pubkey2 */
#define FKD_SBV2_KEY_ENC_MAX 776u /* RSA n, e, rinv, m' */

enum fkd_sbv2_scheme {
    FKD_SBV2_NONE = 0,
    FKD_SBV2_RSA3072,    /* version 0x02, RSA-PSS SHA-256, MGF1-SHA-256, salt 32 */
    FKD_SBV2_ECDSA_P256, /* version 0x03, SHA-256 */
    FKD_SBV2_ECDSA_P384, /* version 0x03, SHA-384 */
};

/* A trusted key, converted once from DER SPKI into the fields a block carries. */
struct fkd_sbv2_key {
    enum fkd_sbv2_scheme scheme;
    uint8_t enc[FKD_SBV2_KEY_ENC_MAX];
    uint16_t enc_len;
};

/* The trusted keys (0..2), and the eFuse key digests (0..3: what the bootloader trusts, see
 * fkd/efuse.h). A block is trusted when its key is one of the keys, or when the SHA-256 of its
 * key fields is one of the digests. Plain data, caller memory. */
#define FKD_SBV2_DIGESTS_MAX 3u
struct fkd_sbv2_keys {
    struct fkd_sbv2_key key[FKD_SBV2_KEYS_MAX];
    unsigned count;
    uint8_t digest[FKD_SBV2_DIGESTS_MAX][32];
    unsigned digest_count;
};

enum fkd_sbv2_verdict {
    FKD_SBV2_V_ABSENT = 0, /* erased slot */
    FKD_SBV2_V_INVALID,    /* malformed slot */
    FKD_SBV2_V_UNTRUSTED,  /* well formed, its key is not trusted */
    FKD_SBV2_V_BAD_SIG,    /* trusted key, signature does not verify */
    FKD_SBV2_V_OK,
};

struct fkd_sbv2_result {
    int block; /* first slot that verified, -1 */
    int key;   /* index of the trusted key that verified it, -1 */
    int digest; /* or of the eFuse digest that trusted its key, -1 */
    uint8_t verdict[FKD_SBV2_BLOCKS];
};

void fkd_sbv2_keys_init(struct fkd_sbv2_keys *k);
/* Adds a DER SubjectPublicKeyInfo (RSA-3072, EC P-256 or P-384). FKD_OK; FKD_E_NOSPACE (two
 * already); FKD_E_PARSE (not a key); FKD_E_UNSUPPORTED (other algorithm or size). */
FKD_MUST_CHECK enum fkd_err fkd_sbv2_keys_add(struct fkd_sbv2_keys *k, const uint8_t *der,
                                              size_t der_len);
/* Adds an eFuse key digest (espsecure digest-sbv2-public-key: SHA-256 over the key fields as
 * a block stores them). FKD_OK; FKD_E_NOSPACE (three already); FKD_E_ARG. */
FKD_MUST_CHECK enum fkd_err fkd_sbv2_keys_add_digest(struct fkd_sbv2_keys *k,
                                                     const uint8_t digest[32]);
/* 1 when some trusted key needs a SHA-384 image digest (P-384), or digests are trusted (their
 * scheme is unknown until a block names it). */
int fkd_sbv2_keys_need_sha384(const struct fkd_sbv2_keys *k);

/* Verifies the 4096-byte sector against the digests of the signed data (sha384 may be NULL
 * when no trusted key is P-384). Every slot is classified; the sector bytes after the third
 * slot must be 0xFF and a slot must be erased or a well-formed block (stricter than
 * espsecure, like the host verifier). res may be NULL.
 * With digests, each well-formed block whose key is not trusted is logged with its key digest.
 * FKD_OK (a block verified with a trusted key); FKD_E_AUTH (none did); FKD_E_CORRUPT (a
 * well-formed block's image digest differs from the data: it was changed after signing);
 * FKD_E_PARSE (a damaged slot or fill); FKD_E_ARG (no trusted key or digest); FKD_E_CRYPTO. */
FKD_MUST_CHECK enum fkd_err fkd_sbv2_verify(const uint8_t *sector, const uint8_t sha256[32],
                                            const uint8_t *sha384,
                                            const struct fkd_sbv2_keys *keys,
                                            struct fkd_sbv2_result *res);
const char *fkd_sbv2_verdict_name(enum fkd_sbv2_verdict v);

/* ---- otadata --------------------------------------------------------------------------- */
#define FKD_OTADATA_ENTRY_LEN 32u
#define FKD_OTA_SLOTS 2u

enum fkd_ota_img_state {
    FKD_OTA_IMG_NEW = 0x0,
    FKD_OTA_IMG_PENDING_VERIFY = 0x1,
    FKD_OTA_IMG_VALID = 0x2,
    FKD_OTA_IMG_INVALID = 0x3,
    FKD_OTA_IMG_ABORTED = 0x4,
    FKD_OTA_IMG_UNDEFINED = 0xFFFFFFFFu,
};

/* esp_ota_select_entry_t */
struct fkd_otadata_entry {
    uint32_t seq;
    uint8_t label[20];
    uint32_t state;
    uint32_t crc;
};

/* What was read from the two sectors. */
struct fkd_otadata {
    struct fkd_otadata_entry e[2];
    uint8_t valid[2]; /* seq != 0xFFFFFFFF and CRC matches */
    int active;       /* bootloader_common_get_active_otadata: highest valid seq, -1 none */
};

/* The CRC of an entry: crc32_le(UINT32_MAX, &ota_seq, 4). */
uint32_t fkd_otadata_crc(uint32_t seq);
/* Decodes one 32-byte entry; returns 1 when it is valid. */
int fkd_otadata_decode(const uint8_t buf[FKD_OTADATA_ENTRY_LEN], struct fkd_otadata_entry *e);
void fkd_otadata_encode(const struct fkd_otadata_entry *e, uint8_t buf[FKD_OTADATA_ENTRY_LEN]);
/* Parses both sectors' first entries (buf: 2 * 4096 bytes, or at least 4096 + 32). */
void fkd_otadata_parse(const uint8_t *buf, size_t len, struct fkd_otadata *od);
/* Reads the otadata partition (at least 2 sectors). FKD_OK, FKD_E_ARG, flash errors. */
FKD_MUST_CHECK enum fkd_err fkd_otadata_read(const struct fkd_flash *f, const struct fkd_part *p,
                                             struct fkd_otadata *od);
/* Rewrites entry i (0 or 1) of the partition: erase its sector, write the 32 bytes. */
FKD_MUST_CHECK enum fkd_err fkd_otadata_write(const struct fkd_flash *f,
                                              const struct fkd_part *p, unsigned i,
                                              const struct fkd_otadata_entry *e);
/* The app slot an entry selects: (seq - 1) % 2. */
unsigned fkd_otadata_slot(const struct fkd_otadata_entry *e);
const char *fkd_ota_img_state_name(uint32_t state);

/* ---- boot ------------------------------------------------------------------------------- */
/* The bootloader's choice, and then the running app's view of itself. */
struct fkd_ota_boot {
    int slot;               /* 0 or 1: ota_N running; -1: no bootable image */
    const struct fkd_part *part;
    int entry;              /* otadata entry in force, -1 (none: first boot from ota_0) */
    uint32_t state;         /* its ota_state after the bootloader ran */
    int rolled_back;        /* a PENDING_VERIFY image was not confirmed: ABORTED, other slot */
    int signature_checked;  /* the slot's signature was verified (keys were given) */
    struct fkd_app_info app;
};

/* The bootloader: reads otadata; an entry left PENDING_VERIFY by the last boot is set ABORTED
 * (its image never confirmed itself: rollback); a NEW entry becomes PENDING_VERIFY; entries in
 * state INVALID or ABORTED are skipped; the slot of the highest remaining sequence number is
 * booted if its app image checks, its secure_version is >= min_secver and, when keys is not
 * NULL (production: Secure Boot V2 on), its signature sector verifies; otherwise the other
 * candidate, then ota_0 as on a first boot. Writes otadata (state changes only).
 * FKD_OK (out->slot may be -1: nothing bootable); FKD_E_NOTFOUND (no otadata/ota partitions);
 * flash errors (FKD_E_POWERCUT: the state change was cut; the next boot redoes it). */
FKD_MUST_CHECK enum fkd_err fkd_ota_boot_select(const struct fkd_flash *f,
                                                const struct fkd_part_table *t,
                                                const struct fkd_sbv2_keys *keys,
                                                uint32_t min_secver, struct fkd_ota_boot *out);
/* Checks the app image in partition p and its signature against keys, as the bootloader does,
 * without choosing or changing anything (no otadata write): for a development build that
 * reports what a production bootloader would refuse. app and res receive what was found (res
 * may be NULL). FKD_OK; the errors of fkd_app_check and fkd_sbv2_verify; FKD_E_AUTH (no room
 * for a signature sector); FKD_E_ARG (keys NULL). */
FKD_MUST_CHECK enum fkd_err fkd_ota_slot_verify(const struct fkd_flash *f,
                                                const struct fkd_part *p,
                                                const struct fkd_sbv2_keys *keys,
                                                struct fkd_app_info *app,
                                                struct fkd_sbv2_result *res);
/* The running app passed its self-test (esp_ota_mark_app_valid_cancel_rollback): its entry
 * becomes VALID and its secure_version is committed to NVS ota/secver (anti-rollback; never
 * lowered). No-op FKD_OK when the entry is already VALID or there is none. */
FKD_MUST_CHECK enum fkd_err fkd_ota_mark_valid(const struct fkd_flash *f,
                                               const struct fkd_part_table *t,
                                               struct fkd_nvs *nvs, struct fkd_ota_boot *b);
/* The running app failed its self-test (esp_ota_mark_app_invalid_rollback_and_reboot): its
 * entry becomes INVALID, so the next boot takes the previous slot. FKD_E_STATE when the
 * running image is the only one (nothing to roll back to; the entry is left alone). */
FKD_MUST_CHECK enum fkd_err fkd_ota_mark_invalid(const struct fkd_flash *f,
                                                 const struct fkd_part_table *t,
                                                 struct fkd_ota_boot *b);

/* The committed security version (NVS ota/secver, u32; absent: 0). nvs may be NULL (0). */
uint32_t fkd_ota_committed_secver(struct fkd_nvs *nvs);

/* ---- streaming update ------------------------------------------------------------------- */
#define FKD_OTA_MIN_IMAGE (2u * FKD_SBV2_SECTOR) /* one data sector + the signature sector */

enum fkd_ota_phase { FKD_OTA_IDLE = 0, FKD_OTA_WRITING, FKD_OTA_DONE, FKD_OTA_FAILED };

/* Fields are private; here so the context can live in caller memory (about 4.6 KiB). */
struct fkd_ota_update {
    const struct fkd_flash *flash;
    const struct fkd_part_table *parts;
    const struct fkd_part *target;
    const struct fkd_part *otadata;
    unsigned target_slot;
    const struct fkd_sbv2_keys *keys;
    struct fkd_nvs *nvs;
    uint32_t total;    /* signed image size: data padded to 4 KiB + 4 KiB signature sector */
    uint32_t received;
    uint32_t erased;   /* bytes of the target erased so far (sector multiple) */
    int phase;
    int want384;
    mbedtls_sha256_context sha256;
    mbedtls_sha512_context sha384;
    uint8_t head[FKD_APP_HDR_LEN]; /* first bytes, checked as soon as they arrive */
    uint8_t sector[FKD_SBV2_SECTOR]; /* the signature sector, kept for finish */
    struct fkd_sbv2_result sig;
    struct fkd_app_info app;
};

/* Cannot fail. */
void fkd_ota_update_init(struct fkd_ota_update *u);
/* Frees the hash contexts; safe after init, idempotent. */
void fkd_ota_update_free(struct fkd_ota_update *u);

/* Starts an update of total bytes (a signed image: a multiple of 4096, at least 8192) into the
 * slot that is not running (running: what fkd_ota_boot_select said; NULL or slot -1 when
 * nothing runs: ota_0). All pointers are borrowed until finish/free. keys NULL or empty:
 * updates are disabled (development without an OTA key, seed 004): FKD_E_POLICY.
 * FKD_OK; FKD_E_POLICY; FKD_E_ARG; FKD_E_NOSPACE (larger than the slot); FKD_E_NOTFOUND (no
 * ota_0/ota_1/otadata partition); FKD_E_STATE (an update is under way, or the running image
 * is still PENDING_VERIFY: it must confirm itself or roll back first, as in ESP-IDF). */
FKD_MUST_CHECK enum fkd_err fkd_ota_begin(struct fkd_ota_update *u, const struct fkd_flash *f,
                                          const struct fkd_part_table *t,
                                          const struct fkd_sbv2_keys *keys, struct fkd_nvs *nvs,
                                          const struct fkd_ota_boot *running, uint32_t total);
/* Writes the next len bytes (any chunking), erasing sectors just ahead of the data and hashing
 * the signed part as it passes. The first 24 bytes must be an app image header (magic 0xE9),
 * checked as soon as they are in. FKD_OK; FKD_E_RANGE (more than total); FKD_E_PARSE (not an
 * app image); FKD_E_STATE; flash errors. Any error fails the update (begin again). */
FKD_MUST_CHECK enum fkd_err fkd_ota_write(struct fkd_ota_update *u, const void *data,
                                          size_t len);
/* Ends the update: all bytes received; the signature sector verified against the trusted keys
 * (a block from a trusted key must verify); the app image re-read from flash and checked
 * (checksum, hash, description) and its SHA-256 compared with the one streamed (what was
 * verified is what is in flash); the signed length equals the image padded to 4 KiB;
 * secure_version >= the committed one; then otadata switches to the new slot, state NEW.
 * FKD_OK; FKD_E_TRUNCATED (bytes missing); FKD_E_AUTH / FKD_E_CORRUPT / FKD_E_PARSE (signature
 * refused); FKD_E_CRC (image check failed, or flash holds other bytes than were streamed);
 * FKD_E_POLICY (anti-rollback: secure_version too low); flash errors (otadata unchanged or
 * switched: the next boot finds one or the other). Every refusal is logged. */
FKD_MUST_CHECK enum fkd_err fkd_ota_finish(struct fkd_ota_update *u);
/* Abandons an update (the half-written slot is never selected). */
void fkd_ota_abort(struct fkd_ota_update *u);
/* What finish found (valid after fkd_ota_finish returned, whatever it returned). */
const struct fkd_sbv2_result *fkd_ota_sig_result(const struct fkd_ota_update *u);
const struct fkd_app_info *fkd_ota_app(const struct fkd_ota_update *u);

#ifdef __cplusplus
}
#endif
#endif
