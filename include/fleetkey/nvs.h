/* fleetkey nvs: ESP-IDF NVS partition images on the host, byte-for-byte equal to ESP-IDF's
 * `nvs_partition_gen` (V1 and V2, multi-page blobs, AES-256-XTS encryption, the nvs_keys
 * partition), a reader that checks every CRC, and the generator's CSV input format.
 *
 * The entry/page format itself lives in device/include/fkd/nvs_format.h, shared with the
 * device runtime. Thread safety: distinct objects may be used from distinct threads. */
#ifndef FLEETKEY_NVS_H
#define FLEETKEY_NVS_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_NVS_MIN_SIZE 0x3000u  /* smaller sizes are "read-only" images (used pages only) */
#define FK_NVS_KEYS_SIZE 4096u   /* the nvs_keys partition image */
#define FK_NVS_KEY_LEN 32u       /* eky and tky are 32 bytes each (AES-256-XTS) */

/* ---- building an image ------------------------------------------------------------------
 * A builder collects namespaces and items in order, exactly as CSV rows would, and renders
 * the image. It copies every value it is given and wipes its copies on free. */
struct fk_nvs_builder;

/* version: 1 or 2 (FKD_NVS_V1/V2 are the on-flash bytes; pass the number). FK_OK, FK_E_ARG,
 * FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_new(unsigned version, struct fk_nvs_builder **out);
/* Wipes every stored value and frees. NULL is a no-op. */
void fk_nvs_builder_free(struct fk_nvs_builder *b);
/* The format version (1 or 2) the builder was made for. */
unsigned fk_nvs_builder_version(const struct fk_nvs_builder *b);
/* Starts (or returns to) a namespace; later items go into it. FK_E_RANGE for a name longer
 * than 15 characters, FK_E_NOSPACE past 254 namespaces. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_namespace(struct fk_nvs_builder *b, const char *name,
                                                   struct fk_diag *diag);
/* Fixed-width integer item; type is one of FKD_NVS_U8..FKD_NVS_I64. The value is given as a
 * signed or unsigned 64-bit number and must fit the type (FK_E_RANGE otherwise): signed types
 * (I8..I64) read svalue, unsigned types (U8..U64) read uvalue; the other one is ignored.
 * Keys are 1..15 bytes (FK_E_RANGE), unique within their namespace (FK_E_EXISTS), and need a
 * namespace first (FK_E_STATE); the same holds for strings and blobs. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_add_int(struct fk_nvs_builder *b, const char *key,
                                                 uint8_t type, int64_t svalue,
                                                 uint64_t uvalue, struct fk_diag *diag);
/* String item (stored with its NUL). FK_E_RANGE when too long for the version. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_add_str(struct fk_nvs_builder *b, const char *key,
                                                 const char *value, struct fk_diag *diag);
/* Binary item: V2 BLOB_DATA chunks + BLOB_IDX; V1 one BLOB (max 1984 bytes). */
FK_MUST_CHECK enum fk_err fk_nvs_builder_add_blob(struct fk_nvs_builder *b, const char *key,
                                                  const uint8_t *data, size_t len,
                                                  struct fk_diag *diag);
/* Renders the image for a partition of `size` bytes (a multiple of 4096). For size >=
 * 0x3000 the image is exactly size bytes; below that (read-only) only the used pages are
 * written, as the generator does. out must hold size bytes; *out_len receives the image
 * length. FK_E_NOSPACE ("needs N bytes, partition has M" in diag) when it does not fit.
 * May be called more than once. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_render(const struct fk_nvs_builder *b, size_t size,
                                                uint8_t *out, size_t out_size,
                                                size_t *out_len, struct fk_diag *diag);

/* Parses the generator's CSV (key,type,encoding,value) from (buf, len) into b. `file` rows
 * are read relative to base_dir. csv_name is used in diag ("devices.csv:14: ..."). */
FK_MUST_CHECK enum fk_err fk_nvs_csv_load(struct fk_nvs_builder *b, const char *buf, size_t len,
                                          const char *csv_name, const char *base_dir,
                                          struct fk_diag *diag);

/* ---- encryption --------------------------------------------------------------------- */
struct fk_nvs_keys {
    uint8_t eky[FK_NVS_KEY_LEN]; /* XTS data key */
    uint8_t tky[FK_NVS_KEY_LEN]; /* XTS tweak key */
};

/* Fresh random keys. FK_OK or FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_nvs_keys_generate(struct fk_nvs_keys *k);
/* The 4096-byte nvs_keys partition image: eky ‖ tky ‖ CRC32 ‖ 0xFF padding. */
void fk_nvs_keys_encode(const struct fk_nvs_keys *k, uint8_t out[FK_NVS_KEYS_SIZE]);
/* Parses a key partition image (at least 68 bytes are read; CRC checked). FK_E_TRUNCATED,
 * FK_E_CRC. */
FK_MUST_CHECK enum fk_err fk_nvs_keys_parse(const uint8_t *buf, size_t len,
                                            struct fk_nvs_keys *k, struct fk_diag *diag);
/* Encrypts (or decrypts) the entries of a plain image in place: AES-256-XTS over each 32-byte
 * entry with the tweak = the entry's byte offset in the partition. Page headers, bitmaps and
 * entries the bitmap marks empty stay plain (0xFF), as the generator leaves them. len must be a multiple of 4096. */
FK_MUST_CHECK enum fk_err fk_nvs_encrypt(uint8_t *img, size_t len, const struct fk_nvs_keys *k);
FK_MUST_CHECK enum fk_err fk_nvs_decrypt(uint8_t *img, size_t len, const struct fk_nvs_keys *k);

#ifdef __cplusplus
}
#endif
#endif
