/* ESP-IDF binary partition table, read (and, for tools, written) on the device side.
 *
 * Layout (ESP-IDF "Partition Tables", gen_esp32part.py): at flash offset 0x8000, up to 0xC00
 * bytes of 32-byte entries: magic 0x50AA (bytes AA 50), type u8, subtype u8, offset u32,
 * size u32, label[16] (NUL-padded), flags u32 (bit 0: encrypted). An entry starting EB EB is
 * the MD5 entry: 14 bytes 0xFF then the MD5 of all preceding entries. The table ends at the
 * first entry of 0xFF bytes. Pure C, no allocation; the table lives in caller memory.
 *
 * Only the reader lives here: tables are written on the host (fleetkey/partition.h,
 * fk_partition_encode), which is also where the default layout is defined. */
#ifndef FKD_PART_H
#define FKD_PART_H

#include "fkd/common.h"
#include "fkd/flash.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_PART_TABLE_OFFSET 0x8000u
#define FKD_PART_TABLE_MAX_LEN 0xC00u
#define FKD_PART_ENTRY_SIZE 32u
#define FKD_PART_MAX 32u /* entries we keep (ESP-IDF allows 95) */
#define FKD_PART_LABEL_MAX 16u

enum fkd_part_type { FKD_PART_APP = 0x00, FKD_PART_DATA = 0x01 };
enum fkd_part_subtype {
    FKD_PART_SUB_FACTORY = 0x00,
    FKD_PART_SUB_OTA_0 = 0x10,
    FKD_PART_SUB_OTA_1 = 0x11,
    FKD_PART_SUB_OTADATA = 0x00,
    FKD_PART_SUB_PHY = 0x01,
    FKD_PART_SUB_NVS = 0x02,
    FKD_PART_SUB_COREDUMP = 0x03,
    FKD_PART_SUB_NVS_KEYS = 0x04,
};
#define FKD_PART_FLAG_ENCRYPTED 0x1u

struct fkd_part {
    uint8_t type;
    uint8_t subtype;
    uint32_t offset;
    uint32_t size;
    char label[FKD_PART_LABEL_MAX + 1];
    uint32_t flags;
};

struct fkd_part_table {
    struct fkd_part part[FKD_PART_MAX];
    unsigned count;
    int has_md5; /* an MD5 entry was present (and matched) */
};

/* Parses a table image (buf, len). Every entry must lie inside flash_size (0: unchecked) and
 * be 4 KiB aligned for data, 64 KiB for app partitions. FKD_OK; FKD_E_PARSE (bad magic,
 * no entries, overlapping, misaligned, duplicate label), FKD_E_CRC (MD5 mismatch),
 * FKD_E_RANGE (more than FKD_PART_MAX entries or outside the flash). */
FKD_MUST_CHECK enum fkd_err fkd_part_parse(const uint8_t *buf, size_t len, uint32_t flash_size,
                                           struct fkd_part_table *t);
/* Reads FKD_PART_TABLE_MAX_LEN bytes at 0x8000 of f and parses them. */
FKD_MUST_CHECK enum fkd_err fkd_part_load(const struct fkd_flash *f, struct fkd_part_table *t);

/* The first partition with this type/subtype (label NULL) or this label; NULL if none. */
const struct fkd_part *fkd_part_find(const struct fkd_part_table *t, uint8_t type,
                                     uint8_t subtype, const char *label);

#ifdef __cplusplus
}
#endif
#endif
