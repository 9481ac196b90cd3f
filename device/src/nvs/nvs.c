/* The device NVS runtime (see fkd/nvs.h): ESP-IDF's nvs_flash, in place, over fkd_flash.
 *
 * Design. The on-flash format (entries, headers, bitmaps, CRCs) is fkd/nvs_format.h, shared
 * with the host image writer. RAM holds only per-page state (header state, sequence number,
 * a copy of the entry-state bitmap, counts); items are found by scanning the flash, which is
 * cheap for the few pages an NVS partition has and keeps the context free of heap.
 *
 * Power-loss rules (ESP-IDF nvs_page.cpp / nvs_pagemanager.cpp, restated):
 * - an entry's bytes are written before its bitmap state; a variable-length item marks its
 *   header WRITTEN, then writes its data entries, then marks them WRITTEN in one bitmap write;
 * - a set writes the new item completely before it marks the old one ERASED, and a blob writes
 *   its chunks (under the other chunk version) before its new index, then erases the old index
 *   and only then the old chunks;
 * - garbage collection marks the victim FREEING before it writes the new page's header, copies
 *   the live items, then erases the victim.
 * Mount then undoes whatever a cut left half-done, so every key reads old or new.
 *
 * Encryption: AES-256-XTS per 32-byte entry, tweak = the entry's byte offset inside the
 * partition as a 16-byte little-endian number (ESP-IDF nvs_encrypted_partition.cpp: data unit
 * = entry, "relAddr" as tweak); page headers and bitmaps are not encrypted, and neither are
 * never-written entries (0xFF), which is how empty space is recognised. */
#include "fkd/nvs.h"

#include <mbedtls/platform_util.h>
#include <string.h>

#define PAGE FKD_NVS_PAGE_SIZE
#define ESZ FKD_NVS_ENTRY_SIZE
#define ECOUNT FKD_NVS_ENTRY_COUNT
#define VER_0 0x00u
#define VER_1 0x80u
#define CHUNKS_MAX 127u /* chunk indexes per version (0..127, 128..254) */

struct pos {
    uint32_t page;
    unsigned idx;
};

/* ---- flash access --------------------------------------------------------------------- */

static uint32_t page_addr(const struct fkd_nvs *n, uint32_t p) {
    return n->base + p * PAGE;
}

static uint32_t entry_rel(uint32_t p, unsigned i) {
    return p * PAGE + FKD_NVS_ENTRIES_OFFSET + (uint32_t)i * ESZ;
}

static void tweak(uint8_t unit[16], uint32_t rel) {
    memset(unit, 0, 16);
    fkd_store_le32(unit, rel);
}

static int all_ff(const uint8_t *b, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0xFF) {
            return 0;
        }
    }
    return 1;
}

static enum fkd_err read_raw(struct fkd_nvs *n, uint32_t p, unsigned i, uint8_t raw[ESZ]) {
    return fkd_flash_read(n->flash, n->base + entry_rel(p, i), raw, ESZ);
}

/* Reads and (if encrypted) decrypts one written entry. */
static enum fkd_err read_entry(struct fkd_nvs *n, uint32_t p, unsigned i, uint8_t out[ESZ]) {
    uint8_t raw[ESZ];
    enum fkd_err rc = read_raw(n, p, i, raw);
    if (rc != FKD_OK) {
        return rc;
    }
    if (!n->encrypted) {
        memcpy(out, raw, ESZ);
        return FKD_OK;
    }
    uint8_t unit[16];
    tweak(unit, entry_rel(p, i));
    if (mbedtls_aes_crypt_xts(&n->xts_dec, MBEDTLS_AES_DECRYPT, ESZ, unit, raw, out) != 0) {
        return FKD_E_CRYPTO;
    }
    return FKD_OK;
}

static enum fkd_err write_entry(struct fkd_nvs *n, uint32_t p, unsigned i,
                                const uint8_t plain[ESZ]) {
    uint8_t buf[ESZ];
    if (n->encrypted) {
        uint8_t unit[16];
        tweak(unit, entry_rel(p, i));
        if (mbedtls_aes_crypt_xts(&n->xts_enc, MBEDTLS_AES_ENCRYPT, ESZ, unit, plain, buf) !=
            0) {
            return FKD_E_CRYPTO;
        }
    } else {
        memcpy(buf, plain, ESZ);
    }
    enum fkd_err rc = fkd_flash_write(n->flash, n->base + entry_rel(p, i), buf, ESZ);
    mbedtls_platform_zeroize(buf, sizeof buf);
    return rc;
}

/* Sets entries [i, i + count) of page p to st in RAM and on flash (one write of the bitmap
 * bytes that hold them). Only ever clears bits: EMPTY -> WRITTEN -> ERASED. */
static enum fkd_err set_state(struct fkd_nvs *n, uint32_t p, unsigned i, unsigned count,
                              enum fkd_nvs_entry_state st) {
    struct fkd_nvs_page *pg = &n->page[p];
    if (count == 0) {
        return FKD_OK;
    }
    for (unsigned k = i; k < i + count; k++) {
        enum fkd_nvs_entry_state old = fkd_nvs_bitmap_get(pg->bitmap, k);
        if (old == st) {
            continue;
        }
        if (old == FKD_NVS_ENTRY_WRITTEN && pg->used > 0) {
            pg->used--;
        }
        if (old == FKD_NVS_ENTRY_ERASED && pg->erased > 0) {
            pg->erased--;
        }
        if (st == FKD_NVS_ENTRY_WRITTEN) {
            pg->used++;
        } else if (st == FKD_NVS_ENTRY_ERASED) {
            pg->erased++;
        }
        fkd_nvs_bitmap_set(pg->bitmap, k, st);
    }
    unsigned b0 = i / 4;
    unsigned b1 = (i + count - 1) / 4;
    if (n->readonly) {
        return FKD_OK; /* a read-only mount repairs its view, never the flash */
    }
    return fkd_flash_write(n->flash, page_addr(n, p) + FKD_NVS_BITMAP_OFFSET + b0,
                           pg->bitmap + b0, b1 - b0 + 1);
}

static enum fkd_err set_page_state(struct fkd_nvs *n, uint32_t p, uint32_t state) {
    uint8_t w[4];
    fkd_store_le32(w, state);
    n->page[p].state = state;
    if (n->readonly) {
        return FKD_OK;
    }
    return fkd_flash_write(n->flash, page_addr(n, p), w, sizeof w);
}

static void page_reset(struct fkd_nvs_page *pg) {
    memset(pg, 0, sizeof *pg);
    pg->state = FKD_NVS_PAGE_UNINIT;
    memset(pg->bitmap, 0xFF, sizeof pg->bitmap);
}

static enum fkd_err erase_page(struct fkd_nvs *n, uint32_t p) {
    page_reset(&n->page[p]);
    if (n->readonly) {
        return FKD_OK;
    }
    return fkd_flash_erase(n->flash, page_addr(n, p));
}

static int in_use(const struct fkd_nvs_page *pg) {
    return pg->state == FKD_NVS_PAGE_ACTIVE || pg->state == FKD_NVS_PAGE_FULL ||
           pg->state == FKD_NVS_PAGE_FREEING;
}

/* In-use pages, oldest first. Returns their count. */
static unsigned sorted_pages(const struct fkd_nvs *n, uint32_t out[FKD_NVS_MAX_PAGES]) {
    unsigned cnt = 0;
    for (uint32_t p = 0; p < n->pages; p++) {
        if (!in_use(&n->page[p])) {
            continue;
        }
        unsigned k = cnt++;
        while (k > 0 && n->page[out[k - 1]].seq > n->page[p].seq) {
            out[k] = out[k - 1];
            k--;
        }
        out[k] = p;
    }
    return cnt;
}

/* ---- items ---------------------------------------------------------------------------- */

static int is_var(uint8_t type) {
    return type == FKD_NVS_STR || type == FKD_NVS_BLOB || type == FKD_NVS_BLOB_DATA;
}

static int type_ok(uint8_t type) {
    return fkd_nvs_int_width(type) != 0 || is_var(type) || type == FKD_NVS_BLOB_IDX;
}

static unsigned var_size(const struct fkd_nvs_entry *e) {
    return fkd_load_le16(e->data);
}

/* Reads a variable-length item's data (size bytes from the entries after (p, i)) into out
 * (may be NULL: CRC check only) and checks its CRC. */
static enum fkd_err read_var(struct fkd_nvs *n, uint32_t p, unsigned i,
                             const struct fkd_nvs_entry *e, uint8_t *out) {
    unsigned size = var_size(e);
    uint32_t crc = 0xFFFFFFFFu;
    uint32_t want = fkd_load_le32(e->data + 4);
    unsigned off = 0;
    uint8_t blk[ESZ];
    enum fkd_err rc = FKD_OK;
    for (unsigned k = 1; off < size; k++) {
        rc = read_entry(n, p, i + k, blk);
        if (rc != FKD_OK) {
            break;
        }
        unsigned take = size - off < ESZ ? size - off : ESZ;
        /* crc32_le(0xFFFFFFFF, data) computed piecewise: the result chains as the seed. */
        crc = fkd_crc32_le(crc, blk, take);
        if (out != NULL) {
            memcpy(out + off, blk, take);
        }
        off += take;
    }
    mbedtls_platform_zeroize(blk, sizeof blk);
    if (rc == FKD_OK && crc != want) {
        rc = FKD_E_CRC;
    }
    return rc;
}

/* Checks that an entry decoded with a good CRC is a well-formed item at (p, i). */
static int item_shape_ok(const struct fkd_nvs *n, uint32_t p, unsigned i,
                         const struct fkd_nvs_entry *e) {
    if (!type_ok(e->type) || e->span == 0 || e->span > ECOUNT - i || e->ns == 0xFF ||
        e->key[0] == '\0') {
        return 0;
    }
    if (e->ns == 0 && e->type != FKD_NVS_U8) {
        return 0;
    }
    if (!is_var(e->type)) {
        return e->span == 1;
    }
    unsigned size = var_size(e);
    if (e->span != 1 + (size + ESZ - 1) / ESZ) {
        return 0;
    }
    for (unsigned k = 1; k < e->span; k++) {
        if (fkd_nvs_bitmap_get(n->page[p].bitmap, i + k) != FKD_NVS_ENTRY_WRITTEN) {
            return 0;
        }
    }
    return 1;
}

/* Visits every item of the in-use pages, oldest first. fn returns 0 to go on, 1 to stop. Only
 * entries whose CRC checks are visited (mount has erased the others). */
typedef int visit_fn(struct fkd_nvs *n, void *user, struct pos at, const struct fkd_nvs_entry *e);

static enum fkd_err visit(struct fkd_nvs *n, visit_fn *fn, void *user) {
    uint32_t order[FKD_NVS_MAX_PAGES];
    unsigned cnt = sorted_pages(n, order);
    uint8_t raw[ESZ];
    struct fkd_nvs_entry e;
    enum fkd_err rc = FKD_OK;
    for (unsigned k = 0; k < cnt; k++) {
        uint32_t p = order[k];
        if (n->page[p].state == FKD_NVS_PAGE_FREEING) {
            continue; /* its items live on (or are being copied to) the newest page */
        }
        for (unsigned i = 0; i < ECOUNT;) {
            if (fkd_nvs_bitmap_get(n->page[p].bitmap, i) != FKD_NVS_ENTRY_WRITTEN) {
                i++;
                continue;
            }
            rc = read_entry(n, p, i, raw);
            if (rc != FKD_OK) {
                goto out;
            }
            if (!fkd_nvs_entry_decode(raw, &e) || e.span == 0 || e.span > ECOUNT - i) {
                i++;
                continue;
            }
            struct pos at = {p, i};
            if (fn(n, user, at, &e)) {
                goto out;
            }
            i += e.span;
        }
    }
out:
    mbedtls_platform_zeroize(raw, sizeof raw);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}

/* Finding the newest item with a given identity. */
struct find_q {
    uint8_t ns;
    const char *key;
    uint8_t chunk;      /* FKD_NVS_CHUNK_ANY for non-chunk items */
    int any_chunk;      /* match BLOB_DATA of any chunk index (used with skip) */
    struct pos skip;    /* position to ignore (page = UINT32_MAX: none) */
    int found;
    struct pos at;
    struct fkd_nvs_entry e;
};

static int key_eq(const char *a, const char *b) {
    return strncmp(a, b, 16) == 0;
}

static int find_cb(struct fkd_nvs *n, void *user, struct pos at, const struct fkd_nvs_entry *e) {
    (void)n;
    struct find_q *q = user;
    if (e->ns != q->ns || !key_eq(e->key, q->key)) {
        return 0;
    }
    if (q->any_chunk ? e->type != FKD_NVS_BLOB_DATA : e->chunk_index != q->chunk) {
        return 0;
    }
    if (q->skip.page == at.page && q->skip.idx == at.idx) {
        return 0;
    }
    q->found = 1; /* keep going: the newest copy wins */
    q->at = at;
    q->e = *e;
    return 0;
}

static enum fkd_err find(struct fkd_nvs *n, struct find_q *q) {
    q->found = 0;
    enum fkd_err rc = visit(n, find_cb, q);
    if (rc != FKD_OK) {
        return rc;
    }
    return q->found ? FKD_OK : FKD_E_NOTFOUND;
}

static void query(struct find_q *q, uint8_t ns, const char *key, uint8_t chunk) {
    memset(q, 0, sizeof *q);
    q->ns = ns;
    q->key = key;
    q->chunk = chunk;
    q->skip.page = UINT32_MAX;
}

static enum fkd_err erase_item(struct fkd_nvs *n, struct pos at, const struct fkd_nvs_entry *e) {
    return set_state(n, at.page, at.idx, e->span, FKD_NVS_ENTRY_ERASED);
}

/* ---- mount ---------------------------------------------------------------------------- */

static enum fkd_err load_page(struct fkd_nvs *n, uint32_t p, unsigned *repaired) {
    struct fkd_nvs_page *pg = &n->page[p];
    enum fkd_err rc = fkd_flash_read(n->flash, page_addr(n, p) + FKD_NVS_BITMAP_OFFSET,
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
            FKD_GUARD(read_raw(n, p, i, raw));
            if (all_ff(raw, ESZ)) {
                continue;
            }
            FKD_GUARD(set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
        } else if (st == FKD_NVS_ENTRY_ILLEGAL) {
            FKD_GUARD(set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
        }
        last = i + 1;
    }
    for (unsigned i = 0; i < last; i++) {
        if (fkd_nvs_bitmap_get(pg->bitmap, i) == FKD_NVS_ENTRY_EMPTY) {
            FKD_GUARD(set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
        }
    }
    pg->next_free = (uint8_t)last;
    /* Written entries: bad CRC, bad shape or bad data are erased. */
    for (unsigned i = 0; i < ECOUNT;) {
        if (fkd_nvs_bitmap_get(pg->bitmap, i) != FKD_NVS_ENTRY_WRITTEN) {
            i++;
            continue;
        }
        FKD_GUARD(read_entry(n, p, i, raw));
        if (!fkd_nvs_entry_decode(raw, &e)) {
            FKD_GUARD(set_state(n, p, i, 1, FKD_NVS_ENTRY_ERASED));
            (*repaired)++;
            i++;
            continue;
        }
        int ok = item_shape_ok(n, p, i, &e);
        if (ok && is_var(e.type)) {
            rc = read_var(n, p, i, &e, NULL);
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
            FKD_GUARD(set_state(n, p, i, span, FKD_NVS_ENTRY_ERASED));
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

static enum fkd_err activate(struct fkd_nvs *n, uint32_t p) {
    uint8_t hdr[FKD_NVS_HEADER_SIZE];
    page_reset(&n->page[p]);
    n->max_seq++;
    fkd_nvs_header_encode(hdr, FKD_NVS_PAGE_ACTIVE, n->max_seq, FKD_NVS_V2);
    n->page[p].state = FKD_NVS_PAGE_ACTIVE;
    n->page[p].seq = n->max_seq;
    n->active = p;
    return fkd_flash_write(n->flash, page_addr(n, p), hdr, sizeof hdr);
}

/* Copies every live item of page `from` into the (fresh, active) page `to`, in order. */
static enum fkd_err copy_items(struct fkd_nvs *n, uint32_t from, uint32_t to) {
    uint8_t raw[ESZ];
    struct fkd_nvs_entry e;
    enum fkd_err rc = FKD_OK;
    struct fkd_nvs_page *dst = &n->page[to];
    for (unsigned i = 0; i < ECOUNT;) {
        if (fkd_nvs_bitmap_get(n->page[from].bitmap, i) != FKD_NVS_ENTRY_WRITTEN) {
            i++;
            continue;
        }
        FKD_GUARD(read_entry(n, from, i, raw));
        if (!fkd_nvs_entry_decode(raw, &e) || !item_shape_ok(n, from, i, &e)) {
            i++;
            continue;
        }
        FKD_ENSURE(dst->next_free + e.span <= ECOUNT, FKD_E_INTERNAL);
        unsigned d = dst->next_free;
        FKD_GUARD(write_entry(n, to, d, raw));
        dst->next_free++;
        FKD_GUARD(set_state(n, to, d, 1, FKD_NVS_ENTRY_WRITTEN));
        for (unsigned k = 1; k < e.span; k++) {
            FKD_GUARD(read_entry(n, from, i + k, raw));
            FKD_GUARD(write_entry(n, to, d + k, raw));
            dst->next_free++;
        }
        FKD_GUARD(set_state(n, to, d + 1, e.span - 1u, FKD_NVS_ENTRY_WRITTEN));
        i += e.span;
    }
    rc = FKD_OK;
out:
    mbedtls_platform_zeroize(raw, sizeof raw);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}

static unsigned count_free(const struct fkd_nvs *n, uint32_t *first) {
    unsigned c = 0;
    for (uint32_t p = 0; p < n->pages; p++) {
        if (n->page[p].state == FKD_NVS_PAGE_UNINIT) {
            if (c == 0 && first != NULL) {
                *first = p;
            }
            c++;
        }
    }
    return c;
}

/* Makes a fresh active page, collecting garbage when only the spare page is left. */
static enum fkd_err new_page(struct fkd_nvs *n) {
    uint32_t fp = 0;
    unsigned nfree = count_free(n, &fp);
    if (nfree >= 2) {
        return activate(n, fp);
    }
    if (nfree == 0) {
        return FKD_E_NOSPACE;
    }
    /* ESP-IDF PageManager::requestNewPage: the page with the most unused entries. */
    uint32_t victim = n->pages;
    unsigned best = 0;
    for (uint32_t p = 0; p < n->pages; p++) {
        const struct fkd_nvs_page *pg = &n->page[p];
        if (pg->state != FKD_NVS_PAGE_FULL) {
            continue;
        }
        unsigned unused = ECOUNT - pg->used;
        if (unused > best) {
            best = unused;
            victim = p;
        }
    }
    if (victim == n->pages) {
        return FKD_E_NOSPACE;
    }
    enum fkd_err rc = set_page_state(n, victim, FKD_NVS_PAGE_FREEING);
    if (rc == FKD_OK) {
        rc = activate(n, fp);
    }
    if (rc == FKD_OK) {
        rc = copy_items(n, victim, fp);
    }
    if (rc == FKD_OK) {
        rc = erase_page(n, victim);
    }
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
        unsigned cnt = sorted_pages(n, order);
        uint32_t newest = order[cnt - 1];
        enum fkd_err rc = FKD_OK;
        if (newest != v && n->page[newest].state == FKD_NVS_PAGE_ACTIVE) {
            rc = erase_page(n, newest);
        }
        if (n->readonly) {
            /* The view a finished collection would give: the victim's items, in place. */
            n->page[v].state = FKD_NVS_PAGE_FULL;
            (*repaired)++;
            continue;
        }
        uint32_t fp = 0;
        if (rc == FKD_OK && count_free(n, &fp) == 0) {
            rc = FKD_E_NOSPACE;
        }
        if (rc == FKD_OK) {
            rc = activate(n, fp);
        }
        if (rc == FKD_OK) {
            rc = copy_items(n, v, fp);
        }
        if (rc == FKD_OK) {
            rc = erase_page(n, v);
        }
        if (rc != FKD_OK) {
            return rc;
        }
        (*repaired)++;
    }
    return FKD_OK;
}

/* The newest item overall: the only one a cut can have left duplicated. */
static int last_cb(struct fkd_nvs *n, void *user, struct pos at, const struct fkd_nvs_entry *e) {
    (void)n;
    struct find_q *q = user;
    q->found = 1;
    q->at = at;
    q->e = *e;
    return 0;
}

static enum fkd_err drop_duplicate(struct fkd_nvs *n, unsigned *repaired) {
    struct find_q last;
    memset(&last, 0, sizeof last);
    enum fkd_err rc = visit(n, last_cb, &last);
    if (rc != FKD_OK || !last.found) {
        return rc;
    }
    struct find_q q;
    query(&q, last.e.ns, last.e.key, last.e.chunk_index);
    q.skip = last.at;
    for (;;) {
        rc = find(n, &q);
        if (rc == FKD_E_NOTFOUND) {
            return FKD_OK;
        }
        if (rc != FKD_OK) {
            return rc;
        }
        rc = erase_item(n, q.at, &q.e);
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

static int claim_cb(struct fkd_nvs *n, void *user, struct pos at, const struct fkd_nvs_entry *e) {
    (void)n;
    (void)at;
    struct orphan_q *q = user;
    if (e->type != FKD_NVS_BLOB_IDX || e->ns != q->chunk->ns || !key_eq(e->key, q->chunk->key)) {
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
    struct pos at;
    struct fkd_nvs_entry e;
    int found;
    struct pos after; /* resume point: only chunks at or after it */
};

static int next_orphan_cb(struct fkd_nvs *n, void *user, struct pos at,
                          const struct fkd_nvs_entry *e) {
    struct chunks_q *q = user;
    if (e->type != FKD_NVS_BLOB_DATA) {
        return 0;
    }
    struct orphan_q oq = {e, 0};
    if (visit(n, claim_cb, &oq) != FKD_OK || oq.claimed) {
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
        enum fkd_err rc = visit(n, next_orphan_cb, &q);
        if (rc != FKD_OK) {
            return rc;
        }
        if (!q.found) {
            return FKD_OK;
        }
        rc = erase_item(n, q.at, &q.e);
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

enum fkd_err fkd_nvs_keys_parse(const uint8_t *buf, size_t len,
                                uint8_t key[FKD_NVS_XTS_KEY_LEN]) {
    if (len < FKD_NVS_KEYS_PART_MIN) {
        return FKD_E_TRUNCATED;
    }
    if (all_ff(buf, FKD_NVS_KEYS_PART_MIN)) {
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
        if (in_use(pg)) {
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
        page_reset(pg);
        FKD_GUARD(fkd_flash_read(n->flash, page_addr(n, p), hdr, sizeof hdr));
        uint32_t state = fkd_load_le32(hdr);
        int good = 0;
        if (state == FKD_NVS_PAGE_UNINIT) {
            /* An uninitialised page must be blank; anything else is a torn erase or a torn
             * header write, and nothing in it was ever live. */
            good = 1;
            for (uint32_t off = 0; off < PAGE && good; off += sizeof chunk) {
                FKD_GUARD(fkd_flash_read(n->flash, page_addr(n, p) + off, chunk, sizeof chunk));
                good = all_ff(chunk, sizeof chunk);
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
        FKD_GUARD(erase_page(n, p));
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
    unsigned cnt = sorted_pages(n, order);
    for (unsigned k = 0; k < cnt; k++) {
        uint32_t p = order[k];
        if (n->page[p].state != FKD_NVS_PAGE_ACTIVE) {
            continue;
        }
        if (k + 1 == cnt) {
            n->active = p;
        } else {
            FKD_GUARD(set_page_state(n, p, FKD_NVS_PAGE_FULL));
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
    if (flash == NULL || size % PAGE != 0 || offset > flash->size ||
        size > flash->size - offset) {
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

/* ---- namespaces ----------------------------------------------------------------------- */

static int name_ok(const char *s) {
    size_t len = s == NULL ? 0 : strnlen(s, FKD_NVS_KEY_MAX + 1);
    return len >= 1 && len <= FKD_NVS_KEY_MAX;
}

struct ns_used {
    uint8_t bits[32];
};

static int ns_used_cb(struct fkd_nvs *n, void *user, struct pos at,
                      const struct fkd_nvs_entry *e) {
    (void)n;
    (void)at;
    struct ns_used *u = user;
    if (e->ns == 0 && e->type == FKD_NVS_U8) {
        u->bits[e->data[0] / 8] |= (uint8_t)(1u << (e->data[0] % 8));
    }
    return 0;
}

/* Index of namespace `name`; with create, makes it when missing. */
static enum fkd_err ns_index(struct fkd_nvs *n, const char *name, int create, uint8_t *out);

/* ---- writing -------------------------------------------------------------------------- */

static enum fkd_err ensure_room(struct fkd_nvs *n, unsigned span) {
    /* Bounded like ESP-IDF's single retry, but allowing a few collections: closing a page
     * that then gets collected into the spare can repeat without freeing anything. */
    for (unsigned tries = 0;; tries++) {
        if (n->active < n->pages && n->page[n->active].state == FKD_NVS_PAGE_ACTIVE &&
            n->page[n->active].next_free + span <= ECOUNT) {
            return FKD_OK;
        }
        if (n->active < n->pages && n->page[n->active].state == FKD_NVS_PAGE_ACTIVE) {
            enum fkd_err rc = set_page_state(n, n->active, FKD_NVS_PAGE_FULL);
            if (rc != FKD_OK) {
                return rc;
            }
        }
        n->active = n->pages;
        if (tries > n->pages) {
            return FKD_E_NOSPACE;
        }
        enum fkd_err rc = new_page(n);
        if (rc != FKD_OK) {
            return rc;
        }
    }
}

/* Appends one item to the active page; *at receives where. data/size only for var types. */
static enum fkd_err write_item(struct fkd_nvs *n, uint8_t ns, uint8_t type, const char *key,
                               uint8_t chunk, const uint8_t *data, size_t size,
                               const uint8_t fixed[8], struct pos *at) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct fkd_nvs_entry e;
    uint8_t raw[ESZ];
    unsigned span = is_var(type) ? 1u + (unsigned)((size + ESZ - 1) / ESZ) : 1u;
    FKD_ENSURE(span <= ECOUNT, FKD_E_RANGE);
    FKD_GUARD(ensure_room(n, span));
    uint32_t p = n->active;
    struct fkd_nvs_page *pg = &n->page[p];
    unsigned i = pg->next_free;
    memset(&e, 0, sizeof e);
    e.ns = ns;
    e.type = type;
    e.span = (uint8_t)span;
    e.chunk_index = chunk;
    memcpy(e.key, key, strnlen(key, FKD_NVS_KEY_MAX));
    if (is_var(type)) {
        fkd_nvs_var_header(&e, (uint16_t)size, fkd_crc32_le(0xFFFFFFFFu, data, size));
    } else {
        memcpy(e.data, fixed, 8);
    }
    fkd_nvs_entry_encode(&e, raw);
    pg->next_free = (uint8_t)(i + span); /* claimed even if the writes below fail */
    FKD_GUARD(write_entry(n, p, i, raw));
    FKD_GUARD(set_state(n, p, i, 1, FKD_NVS_ENTRY_WRITTEN));
    for (unsigned k = 1; k < span; k++) {
        size_t off = (size_t)(k - 1) * ESZ;
        size_t take = size - off < ESZ ? size - off : ESZ;
        memset(raw, 0xFF, ESZ);
        memcpy(raw, data + off, take);
        FKD_GUARD(write_entry(n, p, i + k, raw));
    }
    FKD_GUARD(set_state(n, p, i + 1, span - 1, FKD_NVS_ENTRY_WRITTEN));
    at->page = p;
    at->idx = i;
    rc = FKD_OK;
out:
    mbedtls_platform_zeroize(raw, sizeof raw);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}

static enum fkd_err ns_index(struct fkd_nvs *n, const char *name, int create, uint8_t *out) {
    struct find_q q;
    if (!name_ok(name)) {
        return FKD_E_ARG;
    }
    query(&q, 0, name, FKD_NVS_CHUNK_ANY);
    enum fkd_err rc = find(n, &q);
    if (rc == FKD_OK) {
        *out = q.e.data[0];
        return FKD_OK;
    }
    if (rc != FKD_E_NOTFOUND || !create) {
        return rc;
    }
    struct ns_used u;
    memset(&u, 0, sizeof u);
    rc = visit(n, ns_used_cb, &u);
    if (rc != FKD_OK) {
        return rc;
    }
    for (unsigned idx = 1; idx <= FKD_NVS_NS_MAX; idx++) {
        if (u.bits[idx / 8] & (1u << (idx % 8))) {
            continue;
        }
        uint8_t fixed[8];
        memset(fixed, 0xFF, sizeof fixed);
        fixed[0] = (uint8_t)idx;
        struct pos at;
        rc = write_item(n, 0, FKD_NVS_U8, name, FKD_NVS_CHUNK_ANY, NULL, 0, fixed, &at);
        if (rc == FKD_OK) {
            *out = (uint8_t)idx;
        }
        return rc;
    }
    return FKD_E_NOSPACE;
}

/* The first blob chunk of (ns, key) whose index is outside [cstart, cstart + ccount). */
struct stale_q {
    uint8_t ns;
    const char *key;
    unsigned cstart, ccount;
    int found;
    struct pos at;
    struct fkd_nvs_entry e;
};

static int stale_cb(struct fkd_nvs *n, void *user, struct pos at, const struct fkd_nvs_entry *e) {
    (void)n;
    struct stale_q *q = user;
    if (e->type != FKD_NVS_BLOB_DATA || e->ns != q->ns || !key_eq(e->key, q->key)) {
        return 0;
    }
    if (e->chunk_index >= q->cstart && e->chunk_index < q->cstart + q->ccount) {
        return 0;
    }
    q->found = 1;
    q->at = at;
    q->e = *e;
    return 1;
}

/* Erases every copy of (ns, key) other than the one at keep: first the non-chunk items (so a
 * cut never leaves an index without its chunks), then chunks outside [cstart, cstart+ccount). */
static enum fkd_err erase_others(struct fkd_nvs *n, uint8_t ns, const char *key,
                                 struct pos keep, unsigned cstart, unsigned ccount) {
    struct find_q q;
    enum fkd_err rc;
    query(&q, ns, key, FKD_NVS_CHUNK_ANY);
    q.skip = keep;
    while ((rc = find(n, &q)) == FKD_OK) {
        rc = erase_item(n, q.at, &q.e);
        if (rc != FKD_OK) {
            return rc;
        }
    }
    if (rc != FKD_E_NOTFOUND) {
        return rc;
    }
    for (;;) {
        struct stale_q sq;
        memset(&sq, 0, sizeof sq);
        sq.ns = ns;
        sq.key = key;
        sq.cstart = cstart;
        sq.ccount = ccount;
        rc = visit(n, stale_cb, &sq);
        if (rc != FKD_OK || !sq.found) {
            return rc;
        }
        rc = erase_item(n, sq.at, &sq.e);
        if (rc != FKD_OK) {
            return rc;
        }
    }
}

static enum fkd_err writable(struct fkd_nvs *n, const char *ns, const char *key) {
    if (n == NULL || !n->mounted || n->readonly) {
        return FKD_E_STATE;
    }
    if (!name_ok(ns) || !name_ok(key)) {
        return FKD_E_ARG;
    }
    return FKD_OK;
}

enum fkd_err fkd_nvs_set_int(struct fkd_nvs *n, const char *ns, const char *key, uint8_t type,
                             uint64_t value) {
    enum fkd_err rc = writable(n, ns, key);
    unsigned w = fkd_nvs_int_width(type);
    if (rc != FKD_OK) {
        return rc;
    }
    if (w == 0) {
        return FKD_E_ARG;
    }
    uint8_t fixed[8];
    memset(fixed, 0xFF, sizeof fixed);
    for (unsigned k = 0; k < w; k++) {
        fixed[k] = (uint8_t)(value >> (8 * k));
    }
    uint8_t idx;
    struct pos at;
    rc = ns_index(n, ns, 1, &idx);
    if (rc == FKD_OK) {
        rc = write_item(n, idx, type, key, FKD_NVS_CHUNK_ANY, NULL, 0, fixed, &at);
    }
    if (rc == FKD_OK) {
        rc = erase_others(n, idx, key, at, 0, 0);
    }
    return rc;
}

enum fkd_err fkd_nvs_set_str(struct fkd_nvs *n, const char *ns, const char *key,
                             const char *value) {
    enum fkd_err rc = writable(n, ns, key);
    if (rc != FKD_OK) {
        return rc;
    }
    if (value == NULL) {
        return FKD_E_ARG;
    }
    size_t len = strnlen(value, FKD_NVS_STR_MAX);
    if (len + 1 > FKD_NVS_STR_MAX) {
        return FKD_E_RANGE;
    }
    uint8_t idx;
    struct pos at;
    rc = ns_index(n, ns, 1, &idx);
    if (rc == FKD_OK) {
        rc = write_item(n, idx, FKD_NVS_STR, key, FKD_NVS_CHUNK_ANY, (const uint8_t *)value,
                        len + 1, NULL, &at);
    }
    if (rc == FKD_OK) {
        rc = erase_others(n, idx, key, at, 0, 0);
    }
    return rc;
}

/* Rough capacity check before a multi-page blob, so that a blob that cannot fit fails before
 * it writes anything: reclaimable entries on every page except the spare. */
static unsigned reclaimable(const struct fkd_nvs *n) {
    unsigned total = 0;
    unsigned nfree = count_free(n, NULL);
    for (uint32_t p = 0; p < n->pages; p++) {
        const struct fkd_nvs_page *pg = &n->page[p];
        if (in_use(pg)) {
            total += ECOUNT - pg->used;
        }
    }
    total += (nfree > 0 ? nfree - 1 : 0) * ECOUNT;
    return total;
}

enum fkd_err fkd_nvs_set_blob(struct fkd_nvs *n, const char *ns, const char *key,
                              const uint8_t *data, size_t len) {
    enum fkd_err rc = writable(n, ns, key);
    if (rc != FKD_OK) {
        return rc;
    }
    if (data == NULL && len > 0) {
        return FKD_E_ARG;
    }
    /* Each chunk costs one header entry; a page carries at most 4000 bytes. */
    size_t max_chunks = (len + FKD_NVS_V2_BLOB_MAX_CHUNK - 1) / FKD_NVS_V2_BLOB_MAX_CHUNK + 1;
    size_t need = len / ESZ + 2 * max_chunks + 2;
    if (len > UINT32_MAX / 2 || need > reclaimable(n)) {
        return len > (size_t)(n->pages - 1) * FKD_NVS_V2_BLOB_MAX_CHUNK ? FKD_E_RANGE
                                                                     : FKD_E_NOSPACE;
    }
    uint8_t idx;
    rc = ns_index(n, ns, 1, &idx);
    if (rc != FKD_OK) {
        return rc;
    }
    struct find_q q;
    query(&q, idx, key, FKD_NVS_CHUNK_ANY);
    rc = find(n, &q);
    if (rc != FKD_OK && rc != FKD_E_NOTFOUND) {
        return rc;
    }
    unsigned start = (rc == FKD_OK && q.e.type == FKD_NVS_BLOB_IDX && q.e.data[5] == VER_0)
                         ? VER_1
                         : VER_0;
    unsigned count = 0;
    size_t off = 0;
    struct pos at;
    do {
        rc = ensure_room(n, 2);
        if (rc != FKD_OK) {
            break;
        }
        const struct fkd_nvs_page *pg = &n->page[n->active];
        size_t tail = (size_t)(ECOUNT - pg->next_free - 1u) * ESZ;
        size_t chunk = len - off < tail ? len - off : tail;
        if (count >= CHUNKS_MAX) {
            rc = FKD_E_RANGE;
            break;
        }
        rc = write_item(n, idx, FKD_NVS_BLOB_DATA, key, (uint8_t)(start + count), data + off,
                        chunk, NULL, &at);
        if (rc != FKD_OK) {
            break;
        }
        count++;
        off += chunk; /* a chunk takes all the room, so the next one starts a new page */
    } while (off < len);
    if (rc == FKD_OK) {
        uint8_t fixed[8];
        struct fkd_nvs_entry tmp;
        fkd_nvs_blob_index(&tmp, (uint32_t)len, (uint8_t)count, (uint8_t)start);
        memcpy(fixed, tmp.data, 8);
        rc = write_item(n, idx, FKD_NVS_BLOB_IDX, key, FKD_NVS_CHUNK_ANY, NULL, 0, fixed, &at);
    }
    if (rc == FKD_OK) {
        return erase_others(n, idx, key, at, start, count);
    }
    if (rc != FKD_E_POWERCUT && rc != FKD_E_IO) {
        /* Out of space half-way: take back the chunks of the new version. */
        for (unsigned c = start; c < start + count; c++) {
            struct find_q cq;
            query(&cq, idx, key, (uint8_t)c);
            if (find(n, &cq) == FKD_OK && cq.e.type == FKD_NVS_BLOB_DATA) {
                (void)erase_item(n, cq.at, &cq.e);
            }
        }
    }
    return rc;
}

enum fkd_err fkd_nvs_erase_key(struct fkd_nvs *n, const char *ns, const char *key) {
    enum fkd_err rc = writable(n, ns, key);
    uint8_t idx;
    if (rc != FKD_OK) {
        return rc;
    }
    rc = ns_index(n, ns, 0, &idx);
    if (rc != FKD_OK) {
        return rc;
    }
    struct find_q q;
    query(&q, idx, key, FKD_NVS_CHUNK_ANY);
    rc = find(n, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    struct pos none = {UINT32_MAX, 0};
    return erase_others(n, idx, key, none, 0, 0);
}

/* ---- reading -------------------------------------------------------------------------- */

static enum fkd_err lookup(struct fkd_nvs *n, const char *ns, const char *key,
                           struct find_q *q) {
    if (n == NULL || !n->mounted) {
        return FKD_E_STATE;
    }
    if (!name_ok(ns) || !name_ok(key)) {
        return FKD_E_ARG;
    }
    uint8_t idx;
    enum fkd_err rc = ns_index(n, ns, 0, &idx);
    if (rc != FKD_OK) {
        return rc;
    }
    query(q, idx, key, FKD_NVS_CHUNK_ANY);
    return find(n, q);
}

enum fkd_err fkd_nvs_find(struct fkd_nvs *n, const char *ns, const char *key, uint8_t *type) {
    struct find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc == FKD_OK) {
        *type = q.e.type;
    }
    return rc;
}

enum fkd_err fkd_nvs_get_int(struct fkd_nvs *n, const char *ns, const char *key,
                             struct fkd_nvs_int *out) {
    struct find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    unsigned w = fkd_nvs_int_width(q.e.type);
    if (w == 0) {
        return FKD_E_TYPE;
    }
    uint64_t v = 0;
    for (unsigned k = 0; k < w; k++) {
        v |= (uint64_t)q.e.data[k] << (8 * k);
    }
    out->type = q.e.type;
    out->u = v;
    if ((q.e.type & 0x10u) && w < 8 && (v >> (8 * w - 1)) & 1u) {
        v |= ~(uint64_t)0 << (8 * w); /* sign-extend */
    }
    out->s = (int64_t)v;
    if (!(q.e.type & 0x10u)) {
        out->s = (int64_t)out->u;
    }
    return FKD_OK;
}

enum fkd_err fkd_nvs_get_str(struct fkd_nvs *n, const char *ns, const char *key, char *out,
                             size_t out_size, size_t *out_len) {
    struct find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    if (q.e.type != FKD_NVS_STR) {
        return FKD_E_TYPE;
    }
    unsigned size = var_size(&q.e);
    if (size == 0) {
        return FKD_E_CORRUPT;
    }
    *out_len = size - 1u;
    if (out_size < size) {
        return FKD_E_NOSPACE;
    }
    rc = read_var(n, q.at.page, q.at.idx, &q.e, (uint8_t *)out);
    if (rc != FKD_OK || out[size - 1] != '\0') {
        fkd_wipe(out, out_size);
        if (out_size > 0) {
            out[0] = '\0';
        }
        return rc != FKD_OK ? rc : FKD_E_CORRUPT;
    }
    *out_len = strnlen(out, size);
    return FKD_OK;
}

enum fkd_err fkd_nvs_get_blob(struct fkd_nvs *n, const char *ns, const char *key, uint8_t *out,
                              size_t out_size, size_t *out_len) {
    struct find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    if (q.e.type == FKD_NVS_BLOB) {
        unsigned size = var_size(&q.e);
        *out_len = size;
        if (out_size < size) {
            return FKD_E_NOSPACE;
        }
        rc = read_var(n, q.at.page, q.at.idx, &q.e, out);
        if (rc != FKD_OK) {
            fkd_wipe(out, size);
        }
        return rc;
    }
    if (q.e.type != FKD_NVS_BLOB_IDX) {
        return FKD_E_TYPE;
    }
    uint32_t size = fkd_load_le32(q.e.data);
    unsigned count = q.e.data[4];
    unsigned start = q.e.data[5];
    *out_len = size;
    if (out_size < size) {
        return FKD_E_NOSPACE;
    }
    uint8_t nsidx = q.e.ns;
    size_t off = 0;
    for (unsigned c = start; c < start + count; c++) {
        struct find_q cq;
        query(&cq, nsidx, key, (uint8_t)c);
        rc = find(n, &cq);
        if (rc == FKD_E_NOTFOUND || (rc == FKD_OK && cq.e.type != FKD_NVS_BLOB_DATA)) {
            rc = FKD_E_CORRUPT;
        }
        if (rc == FKD_OK && var_size(&cq.e) > size - off) {
            rc = FKD_E_CORRUPT;
        }
        if (rc == FKD_OK) {
            rc = read_var(n, cq.at.page, cq.at.idx, &cq.e, out + off);
        }
        if (rc != FKD_OK) {
            fkd_wipe(out, size);
            return rc;
        }
        off += var_size(&cq.e);
    }
    if (off != size) {
        fkd_wipe(out, size);
        return FKD_E_CORRUPT;
    }
    return FKD_OK;
}

/* ---- iteration ------------------------------------------------------------------------ */

struct each_q {
    fkd_nvs_item_fn *fn;
    void *user;
};

struct ns_name_q {
    uint8_t idx;
    char name[16];
    int found;
};

static int ns_name_cb(struct fkd_nvs *n, void *user, struct pos at,
                      const struct fkd_nvs_entry *e) {
    (void)n;
    (void)at;
    struct ns_name_q *q = user;
    if (e->ns == 0 && e->type == FKD_NVS_U8 && e->data[0] == q->idx) {
        memcpy(q->name, e->key, sizeof q->name);
        q->found = 1;
    }
    return 0;
}

static int each_cb(struct fkd_nvs *n, void *user, struct pos at, const struct fkd_nvs_entry *e) {
    (void)at;
    struct each_q *q = user;
    if (e->ns == 0 || e->type == FKD_NVS_BLOB_DATA) {
        return 0;
    }
    struct ns_name_q nq;
    memset(&nq, 0, sizeof nq);
    nq.idx = e->ns;
    if (visit(n, ns_name_cb, &nq) != FKD_OK || !nq.found) {
        return 0; /* an item of an unknown namespace is unreachable, as in ESP-IDF */
    }
    return q->fn(q->user, nq.name, e->key, e->type) != 0;
}

enum fkd_err fkd_nvs_foreach(struct fkd_nvs *n, fkd_nvs_item_fn *fn, void *user) {
    if (n == NULL || !n->mounted || fn == NULL) {
        return FKD_E_STATE;
    }
    struct each_q q = {fn, user};
    return visit(n, each_cb, &q);
}
