/* ESP-IDF binary partition table (see fkd/part.h). Checks every entry against the flash and
 * the others before anything uses an offset from it: a partition table is the map every later
 * flash access trusts. */
#include "fkd/part.h"

#include <mbedtls/md.h>
#include <string.h>

#define MAGIC0 0xAAu
#define MAGIC1 0x50u
#define MD5_MAGIC 0xEBu

static int md5(const uint8_t *buf, size_t len, uint8_t out[16]) {
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_MD5);
    return md != NULL && mbedtls_md(md, buf, len, out) == 0;
}

enum fkd_err fkd_part_parse(const uint8_t *buf, size_t len, uint32_t flash_size,
                            struct fkd_part_table *t) {
    enum fkd_err rc = FKD_E_INTERNAL;
    memset(t, 0, sizeof *t);
    size_t max = len < FKD_PART_TABLE_MAX_LEN ? len : FKD_PART_TABLE_MAX_LEN;
    size_t off = 0;
    for (; off + FKD_PART_ENTRY_SIZE <= max; off += FKD_PART_ENTRY_SIZE) {
        const uint8_t *e = buf + off;
        if (e[0] == 0xFF && e[1] == 0xFF) {
            break; /* end of table */
        }
        if (e[0] == MD5_MAGIC && e[1] == MD5_MAGIC) {
            uint8_t d[16];
            FKD_ENSURE(md5(buf, off, d), FKD_E_CRYPTO);
            FKD_ENSURE(memcmp(d, e + 16, 16) == 0, FKD_E_CRC);
            t->has_md5 = 1;
            continue;
        }
        FKD_ENSURE(e[0] == MAGIC0 && e[1] == MAGIC1, FKD_E_PARSE);
        FKD_ENSURE(t->count < FKD_PART_MAX, FKD_E_RANGE);
        struct fkd_part *p = &t->part[t->count];
        p->type = e[2];
        p->subtype = e[3];
        p->offset = fkd_load_le32(e + 4);
        p->size = fkd_load_le32(e + 8);
        memcpy(p->label, e + 12, FKD_PART_LABEL_MAX);
        p->label[FKD_PART_LABEL_MAX] = '\0';
        p->flags = fkd_load_le32(e + 28);
        uint32_t align = p->type == FKD_PART_APP ? 0x10000u : 0x1000u;
        FKD_ENSURE(p->size > 0 && p->offset % align == 0 && p->size % 0x1000u == 0,
                   FKD_E_PARSE);
        FKD_ENSURE(p->offset >= FKD_PART_TABLE_OFFSET + 0x1000u, FKD_E_PARSE);
        FKD_ENSURE(p->size <= UINT32_MAX - p->offset, FKD_E_RANGE);
        FKD_ENSURE(flash_size == 0 || p->offset + p->size <= flash_size, FKD_E_RANGE);
        for (unsigned i = 0; i < t->count; i++) {
            const struct fkd_part *q = &t->part[i];
            FKD_ENSURE(p->offset >= q->offset + q->size || q->offset >= p->offset + p->size,
                       FKD_E_PARSE);
            FKD_ENSURE(strcmp(p->label, q->label) != 0, FKD_E_PARSE);
        }
        t->count++;
    }
    FKD_ENSURE(t->count > 0, FKD_E_PARSE);
    rc = FKD_OK;
out:
    if (rc != FKD_OK) {
        t->count = 0;
    }
    return rc;
}

enum fkd_err fkd_part_load(const struct fkd_flash *f, struct fkd_part_table *t) {
    uint8_t buf[FKD_PART_TABLE_MAX_LEN];
    enum fkd_err rc = fkd_flash_read(f, FKD_PART_TABLE_OFFSET, buf, sizeof buf);
    if (rc != FKD_OK) {
        memset(t, 0, sizeof *t);
        return rc;
    }
    return fkd_part_parse(buf, sizeof buf, f->size, t);
}

enum fkd_err fkd_part_encode(const struct fkd_part_table *t,
                             uint8_t out[FKD_PART_TABLE_MAX_LEN]) {
    memset(out, 0xFF, FKD_PART_TABLE_MAX_LEN);
    /* Entries + the MD5 entry + at least one terminating 0xFF entry. */
    if (t->count > FKD_PART_TABLE_MAX_LEN / FKD_PART_ENTRY_SIZE - 2) {
        return FKD_E_RANGE;
    }
    size_t off = 0;
    for (unsigned i = 0; i < t->count; i++, off += FKD_PART_ENTRY_SIZE) {
        const struct fkd_part *p = &t->part[i];
        uint8_t *e = out + off;
        e[0] = MAGIC0;
        e[1] = MAGIC1;
        e[2] = p->type;
        e[3] = p->subtype;
        fkd_store_le32(e + 4, p->offset);
        fkd_store_le32(e + 8, p->size);
        memset(e + 12, 0, FKD_PART_LABEL_MAX);
        memcpy(e + 12, p->label, strnlen(p->label, FKD_PART_LABEL_MAX));
        fkd_store_le32(e + 28, p->flags);
    }
    uint8_t *m = out + off;
    m[0] = MD5_MAGIC;
    m[1] = MD5_MAGIC;
    if (!md5(out, off, m + 16)) {
        return FKD_E_CRYPTO;
    }
    return FKD_OK;
}

const struct fkd_part *fkd_part_find(const struct fkd_part_table *t, uint8_t type,
                                     uint8_t subtype, const char *label) {
    for (unsigned i = 0; i < t->count; i++) {
        const struct fkd_part *p = &t->part[i];
        if (label != NULL) {
            if (strncmp(p->label, label, FKD_PART_LABEL_MAX) == 0) {
                return p;
            }
        } else if (p->type == type && p->subtype == subtype) {
            return p;
        }
    }
    return NULL;
}

static void add(struct fkd_part_table *t, const char *label, uint8_t type, uint8_t sub,
                uint32_t off, uint32_t size, uint32_t flags) {
    struct fkd_part *p = &t->part[t->count++];
    memset(p, 0, sizeof *p);
    memcpy(p->label, label, strnlen(label, FKD_PART_LABEL_MAX));
    p->type = type;
    p->subtype = sub;
    p->offset = off;
    p->size = size;
    p->flags = flags;
}

void fkd_part_default(struct fkd_part_table *t) {
    memset(t, 0, sizeof *t);
    add(t, "nvs", FKD_PART_DATA, FKD_PART_SUB_NVS, 0x9000u, 0x6000u, 0);
    add(t, "nvs_keys", FKD_PART_DATA, FKD_PART_SUB_NVS_KEYS, 0xF000u, 0x1000u,
        FKD_PART_FLAG_ENCRYPTED);
    add(t, "otadata", FKD_PART_DATA, FKD_PART_SUB_OTADATA, 0x10000u, 0x2000u, 0);
    add(t, "phy_init", FKD_PART_DATA, FKD_PART_SUB_PHY, 0x12000u, 0x1000u, 0);
    add(t, "ota_0", FKD_PART_APP, FKD_PART_SUB_OTA_0, 0x20000u, 0x100000u, 0);
    add(t, "ota_1", FKD_PART_APP, FKD_PART_SUB_OTA_1, 0x120000u, 0x100000u, 0);
}
