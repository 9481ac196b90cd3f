/* ESP-IDF NVS on-flash format: the one implementation of pages, entries and their CRCs that
 * both the host image writer/reader (src/nvs) and the device runtime (device/src) use.
 *
 * Pure C: no OS header, no allocation, no I/O. Every function works on caller buffers whose
 * sizes are fixed by the format (FKD_NVS_PAGE_SIZE, FKD_NVS_ENTRY_SIZE).
 *
 * Layout (ESP-IDF "Non-Volatile Storage", section "Internals"): a page is 4096 bytes: a 32-byte
 * header (state, seq, version, 19 reserved bytes 0xFF, CRC32 of bytes 4..27), a 32-byte entry
 * state bitmap (2 bits per entry: 11 empty, 10 written, 00 erased), then 126 entries of 32
 * bytes: ns, type, span, chunk index, CRC32 (of bytes 0..3 and 8..31), key[16], data[8].
 * Multi-byte fields are little-endian. */
#ifndef FKD_NVS_FORMAT_H
#define FKD_NVS_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_NVS_PAGE_SIZE 4096u
#define FKD_NVS_ENTRY_SIZE 32u
#define FKD_NVS_ENTRY_COUNT 126u
#define FKD_NVS_HEADER_SIZE 32u
#define FKD_NVS_BITMAP_OFFSET 32u
#define FKD_NVS_ENTRIES_OFFSET 64u
#define FKD_NVS_KEY_MAX 15u          /* key chars, without the NUL that fills key[16] */
#define FKD_NVS_NS_MAX 254u          /* namespace indexes 1..254; 0 holds the namespace table */
#define FKD_NVS_CHUNK_ANY 0xFFu      /* chunk index of non-blob-data entries */
#define FKD_NVS_V2_BLOB_MAX_CHUNK ((FKD_NVS_ENTRY_COUNT - 1u) * FKD_NVS_ENTRY_SIZE) /* 4000 */
#define FKD_NVS_V1_VAR_MAX 1984u     /* V1: variable-length item incl. NUL, one page */
#define FKD_NVS_STR_MAX 4000u        /* V2 string incl. NUL (runtime limit) */

/* Page header states (written by clearing bits, so each is a superset of the next). */
enum fkd_nvs_page_state {
    FKD_NVS_PAGE_UNINIT = 0xFFFFFFFFu,
    FKD_NVS_PAGE_ACTIVE = 0xFFFFFFFEu,
    FKD_NVS_PAGE_FULL = 0xFFFFFFFCu,
    FKD_NVS_PAGE_FREEING = 0xFFFFFFF8u,
    FKD_NVS_PAGE_CORRUPT = 0xFFFFFFF0u,
    FKD_NVS_PAGE_INVALID = 0x00000000u,
};

enum fkd_nvs_version { FKD_NVS_V1 = 0xFF, FKD_NVS_V2 = 0xFE };

enum fkd_nvs_type {
    FKD_NVS_U8 = 0x01,
    FKD_NVS_I8 = 0x11,
    FKD_NVS_U16 = 0x02,
    FKD_NVS_I16 = 0x12,
    FKD_NVS_U32 = 0x04,
    FKD_NVS_I32 = 0x14,
    FKD_NVS_U64 = 0x08,
    FKD_NVS_I64 = 0x18,
    FKD_NVS_STR = 0x21,
    FKD_NVS_BLOB = 0x41, /* V1 single-page blob */
    FKD_NVS_BLOB_DATA = 0x42,
    FKD_NVS_BLOB_IDX = 0x48,
    FKD_NVS_ANY = 0xFF,
};

enum fkd_nvs_entry_state {
    FKD_NVS_ENTRY_EMPTY = 3,
    FKD_NVS_ENTRY_WRITTEN = 2,
    FKD_NVS_ENTRY_ERASED = 0,
    FKD_NVS_ENTRY_ILLEGAL = 1,
};

/* One decoded entry. key is NUL-terminated (key[16] on flash holds up to 15 chars + NULs). */
struct fkd_nvs_entry {
    uint8_t ns;
    uint8_t type;
    uint8_t span;
    uint8_t chunk_index;
    uint32_t crc;
    char key[16];
    uint8_t data[8];
};

/* ESP-IDF crc32_le: reflected 0xEDB88320, ~crc in and out. NVS passes 0xFFFFFFFF. */
uint32_t fkd_crc32_le(uint32_t crc, const uint8_t *buf, size_t len);

/* CRC of an encoded 32-byte entry (bytes 0..3 and 8..31), as stored in bytes 4..7. */
uint32_t fkd_nvs_entry_crc(const uint8_t raw[FKD_NVS_ENTRY_SIZE]);
/* Encodes e into raw, computing and storing the CRC (e->crc is ignored). */
void fkd_nvs_entry_encode(const struct fkd_nvs_entry *e, uint8_t raw[FKD_NVS_ENTRY_SIZE]);
/* Decodes raw into e. Returns 1 when the stored CRC matches, 0 otherwise (e is filled either
 * way; key is always NUL-terminated). */
int fkd_nvs_entry_decode(const uint8_t raw[FKD_NVS_ENTRY_SIZE], struct fkd_nvs_entry *e);

/* Variable-length item header in data[8]: size u16, 0xFFFF, data CRC32. */
void fkd_nvs_var_header(struct fkd_nvs_entry *e, uint16_t size, uint32_t data_crc);
/* BLOB_IDX data[8]: total size u32, chunk count u8, chunk start u8, 0xFFFF. */
void fkd_nvs_blob_index(struct fkd_nvs_entry *e, uint32_t size, uint8_t chunks, uint8_t start);

/* Fills a page header: state, seq, version, reserved 0xFF, CRC over bytes 4..27. */
void fkd_nvs_header_encode(uint8_t hdr[FKD_NVS_HEADER_SIZE], uint32_t state, uint32_t seq,
                           uint8_t version);
/* CRC a header should hold (over bytes 4..27). */
uint32_t fkd_nvs_header_crc(const uint8_t hdr[FKD_NVS_HEADER_SIZE]);

/* Entry state from / into the page's 32-byte bitmap. index < FKD_NVS_ENTRY_COUNT. */
enum fkd_nvs_entry_state fkd_nvs_bitmap_get(const uint8_t bitmap[32], unsigned index);
void fkd_nvs_bitmap_set(uint8_t bitmap[32], unsigned index, enum fkd_nvs_entry_state st);

/* Size in bytes of a fixed-width integer type (1, 2, 4, 8), or 0 for other types. */
unsigned fkd_nvs_int_width(uint8_t type);

#ifdef __cplusplus
}
#endif
#endif
