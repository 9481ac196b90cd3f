/* The device NVS runtime: reads and writes an ESP-IDF NVS partition in place, the way
 * ESP-IDF's nvs_flash does, using the one entry/page format in fkd/nvs_format.h.
 *
 * - Pages: UNINIT -> ACTIVE -> FULL -> FREEING -> erased; sequence numbers order them.
 * - A set appends the new item to the active page, then marks the old copy erased, so a power
 *   cut leaves the old value or the new one, never garbage. Entry bytes are written before
 *   their bitmap state; a variable-length item's header is marked written before its data,
 *   whose range is marked written last.
 * - Strings (V2: up to 4000 bytes with the NUL, one page), integers, blobs (V2: BLOB_DATA
 *   chunks across pages + BLOB_IDX, chunk indexes alternate between versions 0 and 128 so old
 *   and new never collide; V1 single-page BLOB is read and replaced), namespaces (entries of
 *   namespace 0).
 * - One page is always kept free: when the active page is full and only that spare is left,
 *   the full page with the most erased entries is marked FREEING, its live items copied into
 *   the spare, and it is erased.
 * - Mount recovers: corrupt headers and half-erased pages are erased; entries with bad CRC,
 *   incomplete spans or bytes written without a bitmap state are marked erased; an
 *   interrupted FREEING is redone; a duplicate left by a cut between "write new" and "erase
 *   old" keeps the newer; blob chunks without an index are erased.
 * - Encrypted partitions (CONFIG_NVS_ENCRYPTION): every 32-byte entry is AES-256-XTS with the
 *   keys of the nvs_keys partition (eky ‖ tky ‖ CRC32), tweak = the entry's byte offset in the
 *   partition (16 bytes little-endian); headers and bitmaps stay plain.
 *
 * No allocation: the context (caller memory) keeps 44 bytes per page and the expanded XTS
 * keys; lookups scan the flash (partitions are a few pages).
 * Thread safety: one context, one thread (ESP-IDF adds a mutex around the same calls). */
#ifndef FKD_NVS_H
#define FKD_NVS_H

#include "fkd/common.h"
#include "fkd/flash.h"
#include "fkd/nvs_format.h"

#include <mbedtls/aes.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_NVS_MAX_PAGES 64u /* 256 KiB partitions */
#define FKD_NVS_XTS_KEY_LEN 64u /* eky ‖ tky */
#define FKD_NVS_KEYS_PART_MIN 68u

/* Per-page state kept in RAM. */
struct fkd_nvs_page {
    uint32_t state; /* enum fkd_nvs_page_state */
    uint32_t seq;
    uint8_t bitmap[32];
    uint8_t next_free; /* first entry never written (FKD_NVS_ENTRY_COUNT when none) */
    uint8_t erased;    /* entries in state ERASED */
    uint8_t used;      /* entries in state WRITTEN */
    uint8_t order;     /* rank by seq among in-use pages */
};

/* Fields are private; here so the struct can live in caller memory. */
struct fkd_nvs {
    const struct fkd_flash *flash;
    uint32_t base;
    uint32_t pages;
    struct fkd_nvs_page page[FKD_NVS_MAX_PAGES];
    uint32_t active; /* index of the active page, or pages (none) */
    uint32_t max_seq;
    int encrypted;
    int readonly;
    mbedtls_aes_xts_context xts_enc; /* keys expanded once at mount */
    mbedtls_aes_xts_context xts_dec;
    int mounted;
};

/* One integer value, any width; both views are filled (sign-extended for signed types). */
struct fkd_nvs_int {
    uint8_t type; /* FKD_NVS_U8 .. FKD_NVS_I64 */
    uint64_t u;
    int64_t s;
};

/* What mount found and repaired; for tests and the boot log. */
struct fkd_nvs_stats {
    unsigned pages_active, pages_full, pages_free, pages_freeing, pages_corrupt;
    unsigned entries_used, entries_erased, entries_free;
    unsigned repaired; /* entries or pages mount had to erase or redo */
};

void fkd_nvs_init(struct fkd_nvs *n);
/* Wipes the XTS keys; the flash is untouched. Safe after init and idempotent. */
void fkd_nvs_free(struct fkd_nvs *n);

/* Parses an nvs_keys partition image (eky[32] ‖ tky[32] ‖ u32 CRC32(eky‖tky) ‖ ...). Returns
 * FKD_OK, FKD_E_NOTFOUND (all 0xFF: no keys written yet), FKD_E_TRUNCATED, FKD_E_CRC.
 * key receives eky ‖ tky; wiped on failure. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_keys_parse(const uint8_t *buf, size_t len,
                                               uint8_t key[FKD_NVS_XTS_KEY_LEN]);

/* Mounts the partition at [offset, offset + size) of flash (size a multiple of 4096, at
 * least 2 pages unless read-only use; at most FKD_NVS_MAX_PAGES). xts_key NULL: plain;
 * otherwise the 64-byte key (copied into n). Repairs as described above, so it writes.
 * FKD_OK, FKD_E_ARG, FKD_E_IO/FKD_E_POWERCUT, FKD_E_NOSPACE (no free page could be made). */
FKD_MUST_CHECK enum fkd_err fkd_nvs_mount(struct fkd_nvs *n, const struct fkd_flash *flash,
                                          uint32_t offset, uint32_t size,
                                          const uint8_t *xts_key, struct fkd_nvs_stats *stats);
/* Same, but never writes: what mount would repair is repaired in the RAM view only (an
 * interrupted collection is seen as if finished), and every setter then fails with
 * FKD_E_STATE. For tools that inspect an image (robot-sim nvs get/list) without changing it,
 * e.g. when unsure whether the keys are right: a wrong key makes every entry fail its CRC,
 * which a read-write mount would erase. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_mount_readonly(struct fkd_nvs *n,
                                                   const struct fkd_flash *flash,
                                                   uint32_t offset, uint32_t size,
                                                   const uint8_t *xts_key,
                                                   struct fkd_nvs_stats *stats);
/* Erases every page of the partition (nvs_flash_erase_partition) and mounts it empty. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_format(struct fkd_nvs *n, const struct fkd_flash *flash,
                                           uint32_t offset, uint32_t size,
                                           const uint8_t *xts_key);

/* Readers. ns and key are NUL-terminated names (key up to 15 chars, ns up to 15).
 * FKD_OK; FKD_E_NOTFOUND (no such namespace or key); FKD_E_TYPE (stored as another kind);
 * FKD_E_NOSPACE (out_size too small; *out_len set to the size needed); FKD_E_CRC (stored data
 * corrupt); FKD_E_IO. A string's out_len excludes the NUL, and out is NUL-terminated. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_get_int(struct fkd_nvs *n, const char *ns, const char *key,
                                            struct fkd_nvs_int *out);
FKD_MUST_CHECK enum fkd_err fkd_nvs_get_str(struct fkd_nvs *n, const char *ns, const char *key,
                                            char *out, size_t out_size, size_t *out_len);
/* Reads a V2 multi-page blob or a V1 BLOB. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_get_blob(struct fkd_nvs *n, const char *ns, const char *key,
                                             uint8_t *out, size_t out_size, size_t *out_len);
/* Type of a stored key (FKD_NVS_U8.., FKD_NVS_STR, FKD_NVS_BLOB_IDX or FKD_NVS_BLOB for V1).
 * FKD_OK or FKD_E_NOTFOUND. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_find(struct fkd_nvs *n, const char *ns, const char *key,
                                         uint8_t *type);

/* Writers. A set replaces any value of that key, whatever its type. The namespace is created
 * on first use. FKD_OK; FKD_E_ARG (bad name, bad type); FKD_E_RANGE (value too long);
 * FKD_E_NOSPACE; FKD_E_IO/FKD_E_POWERCUT (the flash stopped: the old value or the new one is
 * what the next mount finds). */
FKD_MUST_CHECK enum fkd_err fkd_nvs_set_int(struct fkd_nvs *n, const char *ns, const char *key,
                                            uint8_t type, uint64_t value);
FKD_MUST_CHECK enum fkd_err fkd_nvs_set_str(struct fkd_nvs *n, const char *ns, const char *key,
                                            const char *value);
FKD_MUST_CHECK enum fkd_err fkd_nvs_set_blob(struct fkd_nvs *n, const char *ns, const char *key,
                                             const uint8_t *data, size_t len);
/* Erases one key (all its entries). FKD_OK or FKD_E_NOTFOUND. */
FKD_MUST_CHECK enum fkd_err fkd_nvs_erase_key(struct fkd_nvs *n, const char *ns,
                                              const char *key);

/* Calls fn for every live item (blob chunks folded into their index), in flash order.
 * ns is the namespace name. Stops early when fn returns non-zero. FKD_OK or FKD_E_IO. */
typedef int fkd_nvs_item_fn(void *user, const char *ns, const char *key, uint8_t type);
FKD_MUST_CHECK enum fkd_err fkd_nvs_foreach(struct fkd_nvs *n, fkd_nvs_item_fn *fn, void *user);

/* Current page/entry counts. */
void fkd_nvs_stats(const struct fkd_nvs *n, struct fkd_nvs_stats *out);

#ifdef __cplusplus
}
#endif
#endif
