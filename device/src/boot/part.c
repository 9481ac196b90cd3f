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
