/* otadata: ESP-IDF's OTA boot selection data (fkd/ota.h).
 *
 * The "ota" data partition holds two 4 KiB sectors; each starts with one
 * esp_ota_select_entry_t (esp_flash_partitions.h):
 *   uint32_t ota_seq; uint8_t seq_label[20]; uint32_t ota_state; uint32_t crc;
 * with crc = bootloader_common_ota_select_crc(s) = esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4).
 * "bootloader_common_ota_select_valid: ota_seq != UINT32_MAX && crc matches"; the active entry
 * is the valid one with the larger ota_seq (bootloader_common_get_active_otadata), and it
 * selects app slot (ota_seq - 1) % ota_app_count. An entry is rewritten by erasing its sector
 * and writing 32 bytes, so a cut leaves it erased (invalid) or complete. */
#include "fkd/ota.h"

#include "fkd/nvs_format.h"

#include <string.h>

uint32_t fkd_otadata_crc(uint32_t seq) {
    uint8_t b[4];
    fkd_store_le32(b, seq);
    return fkd_crc32_le(UINT32_MAX, b, sizeof b);
}

int fkd_otadata_decode(const uint8_t buf[FKD_OTADATA_ENTRY_LEN], struct fkd_otadata_entry *e) {
    e->seq = fkd_load_le32(buf);
    memcpy(e->label, buf + 4, sizeof e->label);
    e->state = fkd_load_le32(buf + 24);
    e->crc = fkd_load_le32(buf + 28);
    return e->seq != UINT32_MAX && e->crc == fkd_otadata_crc(e->seq);
}

void fkd_otadata_encode(const struct fkd_otadata_entry *e, uint8_t buf[FKD_OTADATA_ENTRY_LEN]) {
    fkd_store_le32(buf, e->seq);
    memcpy(buf + 4, e->label, sizeof e->label);
    fkd_store_le32(buf + 24, e->state);
    fkd_store_le32(buf + 28, e->crc);
}

static void pick_active(struct fkd_otadata *od) {
    od->active = -1;
    if (od->valid[0] && od->valid[1]) {
        od->active = od->e[0].seq >= od->e[1].seq ? 0 : 1;
    } else if (od->valid[0]) {
        od->active = 0;
    } else if (od->valid[1]) {
        od->active = 1;
    }
}

void fkd_otadata_parse(const uint8_t *buf, size_t len, struct fkd_otadata *od) {
    memset(od, 0, sizeof *od);
    for (unsigned i = 0; i < 2; i++) {
        size_t off = (size_t)i * FKD_FLASH_SECTOR;
        if (buf == NULL || len < off + FKD_OTADATA_ENTRY_LEN) {
            memset(&od->e[i], 0xFF, sizeof od->e[i]);
            continue;
        }
        od->valid[i] = (uint8_t)fkd_otadata_decode(buf + off, &od->e[i]);
    }
    pick_active(od);
}

enum fkd_err fkd_otadata_read(const struct fkd_flash *f, const struct fkd_part *p,
                              struct fkd_otadata *od) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t b[FKD_OTADATA_ENTRY_LEN];
    fkd_otadata_parse(NULL, 0, od);
    FKD_ENSURE(f != NULL && p != NULL && p->size >= 2u * FKD_FLASH_SECTOR, FKD_E_ARG);
    for (unsigned i = 0; i < 2; i++) {
        FKD_GUARD(fkd_flash_read(f, p->offset + i * FKD_FLASH_SECTOR, b, sizeof b));
        od->valid[i] = (uint8_t)fkd_otadata_decode(b, &od->e[i]);
    }
    pick_active(od);
    rc = FKD_OK;
out:
    return rc;
}

enum fkd_err fkd_otadata_write(const struct fkd_flash *f, const struct fkd_part *p, unsigned i,
                               const struct fkd_otadata_entry *e) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t b[FKD_OTADATA_ENTRY_LEN];
    FKD_ENSURE(f != NULL && p != NULL && e != NULL && i < 2, FKD_E_ARG);
    FKD_ENSURE(p->size >= 2u * FKD_FLASH_SECTOR, FKD_E_ARG);
    fkd_otadata_encode(e, b);
    uint32_t addr = p->offset + i * FKD_FLASH_SECTOR;
    FKD_GUARD(fkd_flash_erase(f, addr));
    FKD_GUARD(fkd_flash_write(f, addr, b, sizeof b));
    rc = FKD_OK;
out:
    return rc;
}

unsigned fkd_otadata_slot(const struct fkd_otadata_entry *e) {
    return (unsigned)((e->seq - 1u) % FKD_OTA_SLOTS);
}

const char *fkd_ota_img_state_name(uint32_t state) {
    switch (state) {
    case FKD_OTA_IMG_NEW:
        return "new";
    case FKD_OTA_IMG_PENDING_VERIFY:
        return "pending-verify";
    case FKD_OTA_IMG_VALID:
        return "valid";
    case FKD_OTA_IMG_INVALID:
        return "invalid";
    case FKD_OTA_IMG_ABORTED:
        return "aborted";
    case FKD_OTA_IMG_UNDEFINED:
        return "undefined";
    default:
        return "?";
    }
}
