/* The NVS runtime's mount (fkd_nvs_mount, _mount_readonly, _format; nvs_internal.h): every
 * page loaded, and whatever a power cut left half-done undone (a garbage collection redone,
 * a duplicate item or orphaned blob chunks erased), so each key reads its old or its new
 * value. Also init, free, the nvs_keys partition and the statistics. */
#include "nvs_internal.h"

#include <mbedtls/platform_util.h>
#include <string.h>

/* ---- mount ---------------------------------------------------------------------------- */

static enum fkd_err load_page(struct fkd_nvs *n, uint32_t p, unsigned *repaired) {
    struct fkd_nvs_page *pg = &n->page[p];
    enum fkd_err rc = fkd_flash_read(n->flash, fkd_nvs_page_addr(n, p) + FKD_NVS_BITMAP_OFFSET,
                                     pg->bitmap, sizeof pg->bitmap);
    uint8_t raw[ESZ];
    struct fkd_nvs_entry e;
    if (rc != FKD_OK) {
        return rc;
    }
    /* Entries with bytes but no state were being written when the power went: they are
     * erased, and nothing is appended before the last entry that holds anything. */
    unsigned last = 0;
    for (unsigned i = 0; i < ECOUNT; i++) {
        enum fkd_nvs_entry_state st = fkd_nvs_bitmap_get(pg->bitmap, i);
        if (st == FKD_NVS_ENTRY_EMPTY) {
            FKD_GUARD(fkd_nvs_read_raw(n, p, i, raw));
            if (fkd_nvs_all_ff(raw, ESZ)) {
                continue;
            }
            FKD_GUARD(fkd_nvs_set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
        } else if (st == FKD_NVS_ENTRY_ILLEGAL) {
            FKD_GUARD(fkd_nvs_set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
        }
        last = i + 1;
    }
    for (unsigned i = 0; i < last; i++) {
        if (fkd_nvs_bitmap_get(pg->bitmap, i) == FKD_NVS_ENTRY_EMPTY) {
            FKD_GUARD(fkd_nvs_set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
        }
    }
    pg->next_free = (uint8_t)last;
    /* Written entries: bad CRC, bad shape or bad data are erased. */
    for (unsigned i = 0; i < ECOUNT;) {
        if (fkd_nvs_bitmap_get(pg->bitmap, i) != FKD_NVS_ENTRY_WRITTEN) {
            i++;
            continue;
        }
        FKD_GUARD(fkd_nvs_read_entry(n, p, i, raw));
        if (!fkd_nvs_entry_decode(raw, &e)) {
            FKD_GUARD(fkd_nvs_set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
            i++;
            continue;
        }
        int ok = fkd_nvs_item_shape_ok(n, p, i, &e);
        if (ok && fkd_nvs_is_var(e.type)) {
            rc = fkd_nvs_read_var(n, p, i, &e, NULL);
            if (rc == FKD_E_CRC) {
                ok = 0;
            } else if (rc != FKD_OK) {
                goto out;
            }
        }
        if (!ok) {
            unsigned span = e.span >= 1 && e.span <= ECOUNT - i ? e.span : 1;
            /* Only the entries still marked written belong to this item. */
            for (unsigned k = i; k < i + span; k++) {
                if (k > i && fkd_nvs_bitmap_get(pg->bitmap, k) != FKD_NVS_ENTRY_WRITTEN) {
                    span = k - i;
                    break;
                }
            }
            FKD_GUARD(fkd_nvs_set_state(n, p, i, span, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
            i += span;
            continue;
        }
        i += e.span;
    }
    rc = FKD_OK;
out:
    mbedtls_platform_zeroize(raw, sizeof raw);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}

/* Redoes a garbage collection that a power cut interrupted. */
static enum fkd_err finish_freeing(struct fkd_nvs *n, unsigned *repaired) {
    for (uint32_t v = 0; v < n->pages; v++) {
        if (n->page[v].state != FKD_NVS_PAGE_FREEING) {
            continue;
        }
        /* The newest page, if ACTIVE, is the half-filled copy target: start it again. */
        uint32_t order[FKD_NVS_MAX_PAGES];
        unsigned cnt = fkd_nvs_sorted_pages(n, order);
        uint32_t newest = order[cnt - 1];
        enum fkd_err rc = FKD_OK;
        if (newest != v && n->page[newest].state == FKD_NVS_PAGE_ACTIVE) {
            rc = fkd_nvs_erase_page(n, newest);
        }
        if (n->readonly) {
            /* The view a finished collection would give: the victim's items, in place. */
            n->page[v].state = FKD_NVS_PAGE_FULL;
            (*repaired)++;
            continue;
        }
        uint32_t fp = 0;
        if (rc == FKD_OK && fkd_nvs_count_free(n, &fp) == 0) {
            rc = FKD_E_NOSPACE;
        }
        if (rc == FKD_OK) {
            rc = fkd_nvs_activate(n, fp);
        }
        if (rc == FKD_OK) {
            rc = fkd_nvs_copy_items(n, v, fp);
        }
        if (rc == FKD_OK) {
            rc = fkd_nvs_erase_page(n, v);
        }
        if (rc != FKD_OK) {
            return rc;
        }
        (*repaired)++;
    }
    return FKD_OK;
}

/* The newest item overall: the only one a cut can have left duplicated. */
static int last_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                   const struct fkd_nvs_entry *e) {
    (void)n;
    struct fkd_nvs_find_q *q = user;
    q->found = 1;
    q->at = at;
    q->e = *e;
    return 0;
}

static enum fkd_err drop_duplicate(struct fkd_nvs *n, unsigned *repaired) {
    struct fkd_nvs_find_q last;
    memset(&last, 0, sizeof last);
    enum fkd_err rc = fkd_nvs_visit(n, last_cb, &last);
    if (rc != FKD_OK || !last.found) {
        return rc;
    }
    struct fkd_nvs_find_q q;
    fkd_nvs_query(&q, last.e.ns, last.e.key, last.e.chunk_index);
    q.skip = last.at;
    for (;;) {
        rc = fkd_nvs_item_find(n, &q);
        if (rc == FKD_E_NOTFOUND) {
            return FKD_OK;
        }
        if (rc != FKD_OK) {
            return rc;
        }
        rc = fkd_nvs_erase_item(n, q.at, &q.e);
        if (rc != FKD_OK) {
            return rc;
        }
        (*repaired)++;
    }
}

/* Blob chunks that no index claims (left by a cut in the middle of a blob set) are erased. */
struct orphan_q {
    const struct fkd_nvs_entry *chunk;
    int claimed;
};

static int claim_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                    const struct fkd_nvs_entry *e) {
    (void)n;
    (void)at;
    struct orphan_q *q = user;
    if (e->type != FKD_NVS_BLOB_IDX || e->ns != q->chunk->ns ||
        !fkd_nvs_key_eq(e->key, q->chunk->key)) {
        return 0;
    }
    unsigned start = e->data[5];
    unsigned count = e->data[4];
    unsigned c = q->chunk->chunk_index;
    if (c >= start && c < start + count) {
        q->claimed = 1;
        return 1;
    }
    return 0;
}

struct chunks_q {
    struct fkd_nvs_pos at;
    struct fkd_nvs_entry e;
    int found;
    struct fkd_nvs_pos after; /* resume point: only chunks at or after it */
};

static int next_orphan_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                          const struct fkd_nvs_entry *e) {
    struct chunks_q *q = user;
    if (e->type != FKD_NVS_BLOB_DATA) {
        return 0;
    }
    struct orphan_q oq = {e, 0};
    if (fkd_nvs_visit(n, claim_cb, &oq) != FKD_OK || oq.claimed) {
        return 0;
    }
    q->found = 1;
    q->at = at;
    q->e = *e;
    return 1;
}

static enum fkd_err drop_orphans(struct fkd_nvs *n, unsigned *repaired) {
    for (;;) {
        struct chunks_q q;
        memset(&q, 0, sizeof q);
        enum fkd_err rc = fkd_nvs_visit(n, next_orphan_cb, &q);
        if (rc != FKD_OK) {
            return rc;
        }
        if (!q.found) {
            return FKD_OK;
        }
        rc = fkd_nvs_erase_item(n, q.at, &q.e);
        if (rc != FKD_OK) {
            return rc;
        }
        (*repaired)++;
    }
}

void fkd_nvs_init(struct fkd_nvs *n) {
    memset(n, 0, sizeof *n);
    mbedtls_aes_xts_init(&n->xts_enc);
    mbedtls_aes_xts_init(&n->xts_dec);
}

void fkd_nvs_free(struct fkd_nvs *n) {
    if (n == NULL) {
        return;
    }
    mbedtls_aes_xts_free(&n->xts_enc); /* zeroizes the expanded keys */
    mbedtls_aes_xts_free(&n->xts_dec);
    mbedtls_aes_xts_init(&n->xts_enc);
    mbedtls_aes_xts_init(&n->xts_dec);
    n->encrypted = 0;
    n->mounted = 0;
}

enum fkd_err fkd_nvs_keys_parse(const uint8_t *buf, size_t len, uint8_t key[FKD_NVS_XTS_KEY_LEN]) {
    if (len < FKD_NVS_KEYS_PART_MIN) {
        return FKD_E_TRUNCATED;
    }
    if (fkd_nvs_all_ff(buf, FKD_NVS_KEYS_PART_MIN)) {
        return FKD_E_NOTFOUND;
    }
    /* nvs_keys partition: eky[32] ‖ tky[32] ‖ crc32 (zlib.crc32(eky‖tky, 0xFFFFFFFF) in the
     * generator, which is crc32_le with that seed). */
    if (fkd_crc32_le(0xFFFFFFFFu, buf, FKD_NVS_XTS_KEY_LEN) != fkd_load_le32(buf + 64)) {
        return FKD_E_CRC;
    }
    memcpy(key, buf, FKD_NVS_XTS_KEY_LEN);
    return FKD_OK;
}

void fkd_nvs_stats(const struct fkd_nvs *n, struct fkd_nvs_stats *out) {
    memset(out, 0, sizeof *out);
    for (uint32_t p = 0; p < n->pages; p++) {
        const struct fkd_nvs_page *pg = &n->page[p];
        switch (pg->state) {
        case FKD_NVS_PAGE_ACTIVE:
            out->pages_active++;
            break;
        case FKD_NVS_PAGE_FULL:
            out->pages_full++;
            break;
        case FKD_NVS_PAGE_FREEING:
            out->pages_freeing++;
            break;
        case FKD_NVS_PAGE_UNINIT:
            out->pages_free++;
            break;
        default:
            out->pages_corrupt++;
            break;
        }
        if (fkd_nvs_in_use(pg)) {
            out->entries_used += pg->used;
            out->entries_erased += pg->erased;
            out->entries_free += ECOUNT - pg->used - pg->erased;
        } else {
            out->entries_free += ECOUNT;
        }
    }
}

static enum fkd_err mount_pages(struct fkd_nvs *n, unsigned *repaired) {
    uint8_t hdr[FKD_NVS_HEADER_SIZE];
    uint8_t chunk[256];
    enum fkd_err rc = FKD_OK;
    n->max_seq = 0;
    for (uint32_t p = 0; p < n->pages; p++) {
        struct fkd_nvs_page *pg = &n->page[p];
        fkd_nvs_page_reset(pg);
        FKD_GUARD(fkd_flash_read(n->flash, fkd_nvs_page_addr(n, p), hdr, sizeof hdr));
        uint32_t state = fkd_load_le32(hdr);
        int good = 0;
        if (state == FKD_NVS_PAGE_UNINIT) {
            /* An uninitialised page must be blank; anything else is a torn erase or a torn
             * header write, and nothing in it was ever live. */
            good = 1;
            for (uint32_t off = 0; off < PAGE && good; off += sizeof chunk) {
                FKD_GUARD(
                    fkd_flash_read(n->flash, fkd_nvs_page_addr(n, p) + off, chunk, sizeof chunk));
                good = fkd_nvs_all_ff(chunk, sizeof chunk);
            }
            if (good) {
                continue;
            }
        } else if ((state == FKD_NVS_PAGE_ACTIVE || state == FKD_NVS_PAGE_FULL ||
                    state == FKD_NVS_PAGE_FREEING) &&
                   fkd_load_le32(hdr + 28) == fkd_nvs_header_crc(hdr)) {
            FKD_ENSURE(hdr[8] == FKD_NVS_V2 || hdr[8] == FKD_NVS_V1, FKD_E_UNSUPPORTED);
            good = 1;
            pg->state = state;
            pg->seq = fkd_load_le32(hdr + 4);
            if (pg->seq > n->max_seq) {
                n->max_seq = pg->seq;
            }
            FKD_GUARD(load_page(n, p, repaired));
            continue;
        }
        /* ESP-IDF erases a page whose header is corrupt (PageManager::load). */
        FKD_GUARD(fkd_nvs_erase_page(n, p));
        (*repaired)++;
    }
    rc = FKD_OK;
out:
    return rc;
}

static enum fkd_err mount(struct fkd_nvs *n, const struct fkd_flash *flash, uint32_t offset,
                          uint32_t size, const uint8_t *xts_key, struct fkd_nvs_stats *stats,
                          int readonly) {
    enum fkd_err rc = FKD_E_INTERNAL;
    unsigned repaired = 0;
    fkd_nvs_free(n);
    n->readonly = readonly;
    FKD_ENSURE(flash != NULL && size % PAGE == 0 && size >= PAGE, FKD_E_ARG);
    FKD_ENSURE(size / PAGE <= FKD_NVS_MAX_PAGES, FKD_E_ARG);
    FKD_ENSURE(offset <= flash->size && size <= flash->size - offset, FKD_E_ARG);
    n->flash = flash;
    n->base = offset;
    n->pages = size / PAGE;
    n->active = n->pages;
    if (xts_key != NULL) {
        FKD_ENSURE(mbedtls_aes_xts_setkey_enc(&n->xts_enc, xts_key, 512) == 0, FKD_E_CRYPTO);
        FKD_ENSURE(mbedtls_aes_xts_setkey_dec(&n->xts_dec, xts_key, 512) == 0, FKD_E_CRYPTO);
        n->encrypted = 1;
    }
    FKD_GUARD(mount_pages(n, &repaired));
    FKD_GUARD(finish_freeing(n, &repaired));
    FKD_GUARD(drop_duplicate(n, &repaired));
    FKD_GUARD(drop_orphans(n, &repaired));
    /* The active page is the newest ACTIVE one; an older ACTIVE page (only possible on a
     * damaged image) is closed so that appends stay in sequence order. */
    uint32_t order[FKD_NVS_MAX_PAGES];
    unsigned cnt = fkd_nvs_sorted_pages(n, order);
    for (unsigned k = 0; k < cnt; k++) {
        uint32_t p = order[k];
        if (n->page[p].state != FKD_NVS_PAGE_ACTIVE) {
            continue;
        }
        if (k + 1 == cnt) {
            n->active = p;
        } else {
            FKD_GUARD(fkd_nvs_set_page_state(n, p, FKD_NVS_PAGE_FULL));
            repaired++;
        }
    }
    n->mounted = 1;
    rc = FKD_OK;
out:
    if (stats != NULL) {
        fkd_nvs_stats(n, stats);
        stats->repaired = repaired;
    }
    if (rc != FKD_OK) {
        fkd_nvs_free(n);
    }
    return rc;
}

enum fkd_err fkd_nvs_mount(struct fkd_nvs *n, const struct fkd_flash *flash, uint32_t offset,
                           uint32_t size, const uint8_t *xts_key, struct fkd_nvs_stats *stats) {
    return mount(n, flash, offset, size, xts_key, stats, 0);
}

enum fkd_err fkd_nvs_mount_readonly(struct fkd_nvs *n, const struct fkd_flash *flash,
                                    uint32_t offset, uint32_t size, const uint8_t *xts_key,
                                    struct fkd_nvs_stats *stats) {
    return mount(n, flash, offset, size, xts_key, stats, 1);
}

enum fkd_err fkd_nvs_format(struct fkd_nvs *n, const struct fkd_flash *flash, uint32_t offset,
                            uint32_t size, const uint8_t *xts_key) {
    if (flash == NULL || size % PAGE != 0 || offset > flash->size || size > flash->size - offset) {
        return FKD_E_ARG;
    }
    for (uint32_t off = 0; off < size; off += PAGE) {
        enum fkd_err rc = fkd_flash_erase(flash, offset + off);
        if (rc != FKD_OK) {
            return rc;
        }
    }
    return fkd_nvs_mount(n, flash, offset, size, xts_key, NULL);
}
