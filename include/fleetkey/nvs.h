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
/* String item (stored with its NUL). FK_E_RANGE when too long for the version: V2 allows
 * 4000 bytes with the NUL (3969..4000 fill a fresh page, as the runtime allows and the
 * generator cannot), V1 1984. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_add_str(struct fk_nvs_builder *b, const char *key,
                                                 const char *value, struct fk_diag *diag);
/* Binary item: V2 BLOB_DATA chunks + BLOB_IDX (FK_E_RANGE past 127 * 4000 bytes); V1 one BLOB
 * (max 1984 bytes). data may be NULL when len is 0. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_add_blob(struct fk_nvs_builder *b, const char *key,
                                                  const uint8_t *data, size_t len,
                                                  struct fk_diag *diag);
/* Renders the image for a partition of `size` bytes (a multiple of 4096). For size >=
 * 0x3000 the image is exactly size bytes; below that (read-only) only the used pages are
 * written, as the generator does. out must hold size bytes; *out_len receives the image
 * length. FK_E_NOSPACE ("needs N bytes, partition has M" in diag) when it does not fit,
 * FK_E_ARG for a size that is not a positive multiple of 4096, FK_E_RANGE for a blob that
 * would need more than 128 chunks. May be called more than once; b is not changed. */
FK_MUST_CHECK enum fk_err fk_nvs_builder_render(const struct fk_nvs_builder *b, size_t size,
                                                uint8_t *out, size_t out_size,
                                                size_t *out_len, struct fk_diag *diag);

/* Parses the generator's CSV (key,type,encoding,value) from (buf, len) into b. `file` rows
 * are read relative to base_dir (absolute paths as they are; at most 1 MiB each); with a NULL
 * base_dir they are refused (FK_E_POLICY), which is how untrusted CSVs are loaded. Encodings:
 * u8..i64, string, hex2bin, base64, binary, blob_fill(N;0xPP), blob_sz_fill(N;0xPP).
 * csv_name is used in diag ("devices.csv:14: ..."). FK_OK, FK_E_PARSE (syntax, unknown type
 * or encoding, bad number/hex/base64), FK_E_RANGE (key > 15 bytes, value too large for its
 * type or the version), FK_E_STATE (key before any namespace), FK_E_EXISTS (key twice),
 * FK_E_IO / FK_E_TOOBIG (file rows), FK_E_NOMEM. Rows before the failing one stay in b. */
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
 * FK_E_CRC, FK_E_CRYPTO (eky == tky, which XTS refuses). */
FK_MUST_CHECK enum fk_err fk_nvs_keys_parse(const uint8_t *buf, size_t len,
                                            struct fk_nvs_keys *k, struct fk_diag *diag);
/* Encrypts (or decrypts) the entries of a plain image in place: AES-256-XTS over each 32-byte
 * entry with the tweak = the entry's byte offset in the partition. Page headers, bitmaps and
 * entries the bitmap marks empty stay plain (0xFF), as the generator leaves them. len must be a multiple of 4096. */
FK_MUST_CHECK enum fk_err fk_nvs_encrypt(uint8_t *img, size_t len, const struct fk_nvs_keys *k);
FK_MUST_CHECK enum fk_err fk_nvs_decrypt(uint8_t *img, size_t len, const struct fk_nvs_keys *k);

/* ---- reading an image -----------------------------------------------------------------
 * The reader walks every page of an image the way the device runtime would, checks each CRC
 * (page header, entry, data) and every length against the page it is in, and collects the
 * namespaces and items it finds plus a list of problems (offset + reason). It never trusts a
 * length field: a span, size or chunk reference that does not fit is a problem, not a read.
 * Values are copied out of the image (blob chunks from several pages are joined), so the
 * image object does not borrow buf; the copies are wiped on free. */
struct fk_nvs_image;

/* One key as the device would read it. Pointers are owned by the image and live until
 * fk_nvs_image_free(). */
struct fk_nvs_item {
    uint8_t ns_index;     /* namespace index in the entries */
    const char *ns;       /* its name, "" when no namespace entry defines that index */
    const char *key;      /* NUL-terminated, at most 15 bytes */
    uint8_t type;         /* FKD_NVS_U8..FKD_NVS_I64, FKD_NVS_STR, FKD_NVS_BLOB (V1 blob) or
                             FKD_NVS_BLOB_IDX (V2 blob, its chunks joined) */
    uint64_t u;           /* integers: the value zero-extended (unsigned types) */
    int64_t i;            /* integers: the value sign-extended (signed types) */
    const uint8_t *data;  /* strings (without their NUL, but NUL-terminated here) and blobs */
    size_t len;           /* bytes at data */
    unsigned chunks;      /* V2 blobs: number of chunks; 0 otherwise */
    size_t page;          /* page of the item's entry (the BLOB_IDX for a V2 blob) */
    unsigned entry;       /* entry index in that page */
    size_t offset;        /* byte offset of that entry in the image */
};

/* Something wrong in the image. */
struct fk_nvs_problem {
    size_t offset;     /* byte offset the problem is about */
    long page;         /* page number, -1 for the image as a whole */
    int entry;         /* entry index, -1 for the page header (or the image) */
    enum fk_err code;  /* FK_E_CRC, FK_E_TRUNCATED, FK_E_PARSE, FK_E_NOTFOUND, FK_E_EXISTS,
                          FK_E_UNSUPPORTED */
    char reason[192];  /* "entry CRC 0x12345678, computed 0x9abcdef0" */
};

/* One page's header. */
struct fk_nvs_page_info {
    size_t index;        /* position in the image */
    uint32_t state;      /* enum fkd_nvs_page_state, or another value if damaged */
    uint32_t seq;        /* sequence number */
    uint8_t version;     /* FKD_NVS_V1 / FKD_NVS_V2 */
    const char *status;  /* "empty", "active", "full", "freeing", "corrupt", "invalid" or
                            "unknown" */
    int header_ok;       /* 1 when the header CRC matches (always 1 for an empty page) */
    unsigned written;    /* entries the bitmap marks written */
    unsigned erased;     /* entries the bitmap marks erased (or illegal) */
};

/* Reads a plain image of len bytes (normally a multiple of 4096; a trailing partial page is
 * reported as FK_E_TRUNCATED and not read). Borrows buf for the call only. On FK_OK the image
 * is clean; on a format error (FK_E_CRC, FK_E_TRUNCATED, FK_E_PARSE, FK_E_NOTFOUND,
 * FK_E_EXISTS, FK_E_UNSUPPORTED: the first problem's code) *out is still set and lists every
 * problem and every item that could be read. On FK_E_ARG / FK_E_NOMEM *out is NULL.
 * Thread-safe for distinct images. */
FK_MUST_CHECK enum fk_err fk_nvs_image_read(const uint8_t *buf, size_t len,
                                            struct fk_nvs_image **out);
/* Same for an encrypted image: decrypts a copy with k first (the copy is wiped). With the
 * wrong keys every written entry fails its CRC. */
FK_MUST_CHECK enum fk_err fk_nvs_image_read_encrypted(const uint8_t *buf, size_t len,
                                                      const struct fk_nvs_keys *k,
                                                      struct fk_nvs_image **out);
/* Wipes the values and frees. NULL is a no-op. */
void fk_nvs_image_free(struct fk_nvs_image *img);

size_t fk_nvs_image_item_count(const struct fk_nvs_image *img);
/* Item i (0-based, in page and entry order) or NULL past the end. */
const struct fk_nvs_item *fk_nvs_image_item(const struct fk_nvs_image *img, size_t i);
/* The item ns/key, or NULL. */
const struct fk_nvs_item *fk_nvs_image_find(const struct fk_nvs_image *img, const char *ns,
                                            const char *key);
size_t fk_nvs_image_problem_count(const struct fk_nvs_image *img);
const struct fk_nvs_problem *fk_nvs_image_problem(const struct fk_nvs_image *img, size_t i);
size_t fk_nvs_image_page_count(const struct fk_nvs_image *img);
const struct fk_nvs_page_info *fk_nvs_image_page(const struct fk_nvs_image *img, size_t i);
/* Namespaces defined in the image: count, and the name of index 1..254 ("" when undefined). */
size_t fk_nvs_image_namespace_count(const struct fk_nvs_image *img);
const char *fk_nvs_image_namespace(const struct fk_nvs_image *img, unsigned index);

/* "u8", "i8", ..., "u64", "i64", "string", "blob" (FKD_NVS_BLOB: V1 blobs, and
 * FKD_NVS_BLOB_IDX: joined V2 blobs), "blob_data"; "unknown" otherwise. Never NULL. */
const char *fk_nvs_type_name(uint8_t type);

#ifdef __cplusplus
}
#endif
#endif
