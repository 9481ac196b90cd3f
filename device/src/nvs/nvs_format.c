/* NVS entry and page format, shared by host and device. See nvs_format.h for the layout.
 * Kept free of OS headers so it builds for the ESP32 as it is. */
#include "fkd/nvs_format.h"

#include <string.h>

static uint32_t crc_table[256];
static int crc_table_ready;

/* The table is built on first use rather than stored, to keep 1 KiB out of flash on the
 * device; building it twice from two threads writes the same values, so no lock is needed. */
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        }
        crc_table[i] = c;
    }
    crc_table_ready = 1;
}

uint32_t fkd_crc32_le(uint32_t crc, const uint8_t *buf, size_t len) {
    if (!crc_table_ready) {
        crc_init();
    }
    uint32_t c = ~crc;
    for (size_t i = 0; i < len; i++) {
        c = crc_table[(c ^ buf[i]) & 0xFFu] ^ (c >> 8);
    }
    return ~c;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

uint32_t fkd_nvs_entry_crc(const uint8_t raw[FKD_NVS_ENTRY_SIZE]) {
    /* ESP-IDF Item::calculateCrc32: nsIndex..chunkIndex, then key and data; the CRC field
     * itself (bytes 4..7) is skipped. */
    uint32_t c = fkd_crc32_le(0xFFFFFFFFu, raw, 4);
    return fkd_crc32_le(c, raw + 8, FKD_NVS_ENTRY_SIZE - 8);
}

void fkd_nvs_entry_encode(const struct fkd_nvs_entry *e, uint8_t raw[FKD_NVS_ENTRY_SIZE]) {
    raw[0] = e->ns;
    raw[1] = e->type;
    raw[2] = e->span;
    raw[3] = e->chunk_index;
    memset(raw + 8, 0, 16);
    size_t klen = strnlen(e->key, FKD_NVS_KEY_MAX);
    memcpy(raw + 8, e->key, klen);
    memcpy(raw + 24, e->data, 8);
    put_le32(raw + 4, fkd_nvs_entry_crc(raw));
}

int fkd_nvs_entry_decode(const uint8_t raw[FKD_NVS_ENTRY_SIZE], struct fkd_nvs_entry *e) {
    e->ns = raw[0];
    e->type = raw[1];
    e->span = raw[2];
    e->chunk_index = raw[3];
    e->crc = get_le32(raw + 4);
    memcpy(e->key, raw + 8, 16);
    e->key[15] = '\0'; /* a corrupt key may fill all 16 bytes */
    memcpy(e->data, raw + 24, 8);
    return e->crc == fkd_nvs_entry_crc(raw);
}

void fkd_nvs_var_header(struct fkd_nvs_entry *e, uint16_t size, uint32_t data_crc) {
    e->data[0] = (uint8_t)size;
    e->data[1] = (uint8_t)(size >> 8);
    e->data[2] = 0xFF;
    e->data[3] = 0xFF;
    put_le32(e->data + 4, data_crc);
}

void fkd_nvs_blob_index(struct fkd_nvs_entry *e, uint32_t size, uint8_t chunks, uint8_t start) {
    put_le32(e->data, size);
    e->data[4] = chunks;
    e->data[5] = start;
    e->data[6] = 0xFF;
    e->data[7] = 0xFF;
}

uint32_t fkd_nvs_header_crc(const uint8_t hdr[FKD_NVS_HEADER_SIZE]) {
    return fkd_crc32_le(0xFFFFFFFFu, hdr + 4, 24);
}

void fkd_nvs_header_encode(uint8_t hdr[FKD_NVS_HEADER_SIZE], uint32_t state, uint32_t seq,
                           uint8_t version) {
    memset(hdr, 0xFF, FKD_NVS_HEADER_SIZE);
    put_le32(hdr, state);
    put_le32(hdr + 4, seq);
    hdr[8] = version;
    put_le32(hdr + 28, fkd_nvs_header_crc(hdr));
}

enum fkd_nvs_entry_state fkd_nvs_bitmap_get(const uint8_t bitmap[32], unsigned index) {
    return (enum fkd_nvs_entry_state)((bitmap[index / 4] >> ((index % 4) * 2)) & 3u);
}

void fkd_nvs_bitmap_set(uint8_t bitmap[32], unsigned index, enum fkd_nvs_entry_state st) {
    unsigned shift = (index % 4) * 2;
    bitmap[index / 4] = (uint8_t)((bitmap[index / 4] & ~(3u << shift)) | ((unsigned)st << shift));
}

unsigned fkd_nvs_int_width(uint8_t type) {
    switch (type) {
    case FKD_NVS_U8:
    case FKD_NVS_I8:
        return 1;
    case FKD_NVS_U16:
    case FKD_NVS_I16:
        return 2;
    case FKD_NVS_U32:
    case FKD_NVS_I32:
        return 4;
    case FKD_NVS_U64:
    case FKD_NVS_I64:
        return 8;
    default:
        return 0;
    }
}
