/* fleetkey partition: the ESP-IDF partition table, as `partitions.csv` text and as the binary
 * table flashed at 0x8000 (gen_esp32part.py's formats), so robot-sim and `provision-keys flash`
 * can find the nvs and nvs_keys partitions the same way the bootloader does.
 *
 * Binary: up to 94 entries of 32 bytes (magic 0xAA 0x50, type, subtype, offset u32, size u32,
 * label[16] NUL-padded, flags u32; little-endian), then an MD5 entry (0xEB 0xEB, 14 x 0xFF, MD5
 * of all preceding entry bytes), then 0xFF up to FK_PARTITION_TABLE_SIZE. An all-0xFF entry
 * ends the table. Thread safety: all functions are pure over their arguments. */
#ifndef FLEETKEY_PARTITION_H
#define FLEETKEY_PARTITION_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_PARTITION_TABLE_OFFSET 0x8000u
#define FK_PARTITION_TABLE_SIZE 0xC00u /* gen_esp32part.py MAX_PARTITION_LENGTH */
#define FK_PARTITION_ENTRY_SIZE 32u
/* 0xC00 / 32 = 96 slots: gen_esp32part.py wants the entries plus the MD5 entry to stay
 * shorter than 0xC00, so one slot is left for the 0xFF end marker. */
#define FK_PARTITION_MAX 94u
#define FK_PARTITION_NAME_MAX 16u

enum fk_partition_type { FK_PART_APP = 0x00, FK_PART_DATA = 0x01 };

/* Data subtypes (app subtypes: factory 0x00, ota_N 0x10 + N, test 0x20). */
enum fk_partition_data_subtype {
    FK_PART_SUB_OTA = 0x00,
    FK_PART_SUB_PHY = 0x01,
    FK_PART_SUB_NVS = 0x02,
    FK_PART_SUB_COREDUMP = 0x03,
    FK_PART_SUB_NVS_KEYS = 0x04,
    FK_PART_SUB_EFUSE = 0x05,
    FK_PART_SUB_UNDEFINED = 0x06,
    FK_PART_SUB_ESPHTTPD = 0x80,
    FK_PART_SUB_FAT = 0x81,
    FK_PART_SUB_SPIFFS = 0x82,
    FK_PART_SUB_LITTLEFS = 0x83,
};

enum { FK_PART_FLAG_ENCRYPTED = 1u << 0, FK_PART_FLAG_READONLY = 1u << 1 };

struct fk_partition {
    char name[FK_PARTITION_NAME_MAX + 1]; /* NUL-terminated; up to 16 characters */
    uint8_t type;
    uint8_t subtype;
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
};

struct fk_partition_table {
    struct fk_partition parts[FK_PARTITION_MAX];
    size_t count;
};

/* The built-in layout for a 4 MiB flash with two OTA slots (see docs/formats.md):
 * nvs 0x9000+0x6000, nvs_keys 0xF000+0x1000 (encrypted), phy_init 0x10000+0x1000,
 * otadata 0x11000+0x2000, ota_0 0x20000+0x180000, ota_1 0x1A0000+0x180000. */
extern const char fk_partition_default_csv[];

/* Parses partitions.csv text (Name, Type, SubType, Offset, Size, Flags; '#' comments; sizes
 * as decimal, 0x hex or with K/M suffix; empty offsets computed as gen_esp32part.py does:
 * after the previous partition, data aligned to 0x1000, app to 0x10000, the first one at
 * 0x9000). Checks names (unique, <= 16 chars), alignment, overlaps and the 94-entry limit.
 * csv_name is used in diag ("partitions.csv:4: ..."). FK_OK, FK_E_PARSE, FK_E_RANGE,
 * FK_E_EXISTS, FK_E_TOOBIG (more than FK_PARTITION_MAX). */
FK_MUST_CHECK enum fk_err fk_partition_csv_parse(const char *buf, size_t len,
                                                 const char *csv_name,
                                                 struct fk_partition_table *out,
                                                 struct fk_diag *diag);
/* Writes the table as partitions.csv text into out (NUL-terminated). FK_OK or FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_partition_csv_write(const struct fk_partition_table *t, char *out,
                                                 size_t out_size, size_t *out_len);
/* Encodes the binary table: FK_PARTITION_TABLE_SIZE bytes (entries, MD5 entry, 0xFF).
 * FK_OK, FK_E_NOSPACE (out_size too small), FK_E_RANGE (more than FK_PARTITION_MAX),
 * FK_E_CRYPTO (MD5 unavailable). */
FK_MUST_CHECK enum fk_err fk_partition_encode(const struct fk_partition_table *t, uint8_t *out,
                                              size_t out_size, size_t *out_len);
/* Parses a binary table from (buf, len): entries until an all-0xFF entry or the end of buf;
 * an MD5 entry, when present, must match (FK_E_CRC). Any other entry must carry the magic
 * (FK_E_PARSE, diag->offset set). A table without its end marker before len is FK_E_TRUNCATED.
 * Borrows buf for the call; *out is a copy. */
FK_MUST_CHECK enum fk_err fk_partition_parse(const uint8_t *buf, size_t len,
                                             struct fk_partition_table *out,
                                             struct fk_diag *diag);
/* The partition called name, or NULL. */
const struct fk_partition *fk_partition_find(const struct fk_partition_table *t,
                                             const char *name);
/* The first partition of type/subtype (subtype 0xFF matches any), or NULL. */
const struct fk_partition *fk_partition_find_type(const struct fk_partition_table *t,
                                                  uint8_t type, uint8_t subtype);
/* Names as partitions.csv spells them: "app"/"data", "nvs", "ota_0", ...; a number in hex
 * ("0x40") for anything else, written into buf[8] when needed. Never NULL. */
const char *fk_partition_type_name(uint8_t type, char buf[8]);
const char *fk_partition_subtype_name(uint8_t type, uint8_t subtype, char buf[8]);

#ifdef __cplusplus
}
#endif
#endif
