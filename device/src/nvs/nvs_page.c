/* The NVS runtime's page and entry layer (nvs_internal.h): entries read, decrypted, encrypted
 * and written at (page, index), the entry-state bitmap, page states and their order, items
 * checked and visited, and new pages made active, with garbage collection when only the spare
 * is left. The on-flash format and the power-loss rules are in nvs.c's opening comment. */
#include "nvs_internal.h"

#include <mbedtls/platform_util.h>
#include <string.h>

/* ---- flash access --------------------------------------------------------------------- */

uint32_t fkd_nvs_page_addr(const struct fkd_nvs *n, uint32_t p) {
    return n->base + p * PAGE;
}

static uint32_t entry_rel(uint32_t p, unsigned i) {
    return p * PAGE + FKD_NVS_ENTRIES_OFFSET + (uint32_t)i * ESZ;
}

static void tweak(uint8_t unit[16], uint32_t rel) {
    memset(unit, 0, 16);
    fkd_store_le32(unit, rel);
}

int fkd_nvs_all_ff(const uint8_t *b, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0xFF) {
            return 0;
        }
    }
    return 1;
}

enum fkd_err fkd_nvs_read_raw(struct fkd_nvs *n, uint32_t p, unsigned i, uint8_t raw[ESZ]) {
    return fkd_flash_read(n->flash, n->base + entry_rel(p, i), raw, ESZ);
}

/* Reads and (if encrypted) decrypts one written entry. */
enum fkd_err fkd_nvs_read_entry(struct fkd_nvs *n, uint32_t p, unsigned i, uint8_t out[ESZ]) {
    uint8_t raw[ESZ];
    enum fkd_err rc = fkd_nvs_read_raw(n, p, i, raw);
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

enum fkd_err fkd_nvs_write_entry(struct fkd_nvs *n, uint32_t p, unsigned i,
                                 const uint8_t plain[ESZ]) {
    uint8_t buf[ESZ];
    if (n->encrypted) {
        uint8_t unit[16];
        tweak(unit, entry_rel(p, i));
        if (mbedtls_aes_crypt_xts(&n->xts_enc, MBEDTLS_AES_ENCRYPT, ESZ, unit, plain, buf) != 0) {
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
enum fkd_err fkd_nvs_set_state(struct fkd_nvs *n, uint32_t p, unsigned i, unsigned count,
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
    return fkd_flash_write(n->flash, fkd_nvs_page_addr(n, p) + FKD_NVS_BITMAP_OFFSET + b0,
                           pg->bitmap + b0, b1 - b0 + 1);
}

enum fkd_err fkd_nvs_set_page_state(struct fkd_nvs *n, uint32_t p, uint32_t state) {
    uint8_t w[4];
    fkd_store_le32(w, state);
    n->page[p].state = state;
    if (n->readonly) {
        return FKD_OK;
    }
    return fkd_flash_write(n->flash, fkd_nvs_page_addr(n, p), w, sizeof w);
}

void fkd_nvs_page_reset(struct fkd_nvs_page *pg) {
    memset(pg, 0, sizeof *pg);
    pg->state = FKD_NVS_PAGE_UNINIT;
    memset(pg->bitmap, 0xFF, sizeof pg->bitmap);
}

enum fkd_err fkd_nvs_erase_page(struct fkd_nvs *n, uint32_t p) {
    fkd_nvs_page_reset(&n->page[p]);
    if (n->readonly) {
        return FKD_OK;
    }
    return fkd_flash_erase(n->flash, fkd_nvs_page_addr(n, p));
}

int fkd_nvs_in_use(const struct fkd_nvs_page *pg) {
    return pg->state == FKD_NVS_PAGE_ACTIVE || pg->state == FKD_NVS_PAGE_FULL ||
           pg->state == FKD_NVS_PAGE_FREEING;
}

/* In-use pages, oldest first. Returns their count. */
unsigned fkd_nvs_sorted_pages(const struct fkd_nvs *n, uint32_t out[FKD_NVS_MAX_PAGES]) {
    unsigned cnt = 0;
    for (uint32_t p = 0; p < n->pages; p++) {
        if (!fkd_nvs_in_use(&n->page[p])) {
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

int fkd_nvs_is_var(uint8_t type) {
    return type == FKD_NVS_STR || type == FKD_NVS_BLOB || type == FKD_NVS_BLOB_DATA;
}

static int type_ok(uint8_t type) {
    return fkd_nvs_int_width(type) != 0 || fkd_nvs_is_var(type) || type == FKD_NVS_BLOB_IDX;
}

unsigned fkd_nvs_var_size(const struct fkd_nvs_entry *e) {
    return fkd_load_le16(e->data);
}

/* Reads a variable-length item's data (size bytes from the entries after (p, i)) into out
 * (may be NULL: CRC check only) and checks its CRC. */
enum fkd_err fkd_nvs_read_var(struct fkd_nvs *n, uint32_t p, unsigned i,
                              const struct fkd_nvs_entry *e, uint8_t *out) {
    unsigned size = fkd_nvs_var_size(e);
    uint32_t crc = 0xFFFFFFFFu;
    uint32_t want = fkd_load_le32(e->data + 4);
    unsigned off = 0;
    uint8_t blk[ESZ];
    enum fkd_err rc = FKD_OK;
    for (unsigned k = 1; off < size; k++) {
        rc = fkd_nvs_read_entry(n, p, i + k, blk);
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
int fkd_nvs_item_shape_ok(const struct fkd_nvs *n, uint32_t p, unsigned i,
                          const struct fkd_nvs_entry *e) {
    if (!type_ok(e->type) || e->span == 0 || e->span > ECOUNT - i || e->ns == 0xFF ||
        e->key[0] == '\0') {
        return 0;
    }
    if (e->ns == 0 && e->type != FKD_NVS_U8) {
        return 0;
    }
    if (!fkd_nvs_is_var(e->type)) {
        return e->span == 1;
    }
    unsigned size = fkd_nvs_var_size(e);
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

enum fkd_err fkd_nvs_visit(struct fkd_nvs *n, fkd_nvs_visit_fn *fn, void *user) {
    uint32_t order[FKD_NVS_MAX_PAGES];
    unsigned cnt = fkd_nvs_sorted_pages(n, order);
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
            rc = fkd_nvs_read_entry(n, p, i, raw);
            if (rc != FKD_OK) {
                goto out;
            }
            if (!fkd_nvs_entry_decode(raw, &e) || e.span == 0 || e.span > ECOUNT - i) {
                i++;
                continue;
            }
            struct fkd_nvs_pos at = {p, i};
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

int fkd_nvs_key_eq(const char *a, const char *b) {
    return strncmp(a, b, 16) == 0;
}

static int find_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                   const struct fkd_nvs_entry *e) {
    (void)n;
    struct fkd_nvs_find_q *q = user;
    if (e->ns != q->ns || !fkd_nvs_key_eq(e->key, q->key)) {
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

enum fkd_err fkd_nvs_item_find(struct fkd_nvs *n, struct fkd_nvs_find_q *q) {
    q->found = 0;
    enum fkd_err rc = fkd_nvs_visit(n, find_cb, q);
    if (rc != FKD_OK) {
        return rc;
    }
    return q->found ? FKD_OK : FKD_E_NOTFOUND;
}

void fkd_nvs_query(struct fkd_nvs_find_q *q, uint8_t ns, const char *key, uint8_t chunk) {
    memset(q, 0, sizeof *q);
    q->ns = ns;
    q->key = key;
    q->chunk = chunk;
    q->skip.page = UINT32_MAX;
}

enum fkd_err fkd_nvs_erase_item(struct fkd_nvs *n, struct fkd_nvs_pos at,
                                const struct fkd_nvs_entry *e) {
    return fkd_nvs_set_state(n, at.page, at.idx, e->span, FKD_NVS_ENTRY_ERASED);
}

/* ---- pages: activation and garbage collection -------------------------------------- */

enum fkd_err fkd_nvs_activate(struct fkd_nvs *n, uint32_t p) {
    uint8_t hdr[FKD_NVS_HEADER_SIZE];
    fkd_nvs_page_reset(&n->page[p]);
    n->max_seq++;
    fkd_nvs_header_encode(hdr, FKD_NVS_PAGE_ACTIVE, n->max_seq, FKD_NVS_V2);
    n->page[p].state = FKD_NVS_PAGE_ACTIVE;
    n->page[p].seq = n->max_seq;
    n->active = p;
    return fkd_flash_write(n->flash, fkd_nvs_page_addr(n, p), hdr, sizeof hdr);
}

/* Copies every live item of page `from` into the (fresh, active) page `to`, in order. */
enum fkd_err fkd_nvs_copy_items(struct fkd_nvs *n, uint32_t from, uint32_t to) {
    uint8_t raw[ESZ];
    struct fkd_nvs_entry e;
    enum fkd_err rc = FKD_OK;
    struct fkd_nvs_page *dst = &n->page[to];
    for (unsigned i = 0; i < ECOUNT;) {
        if (fkd_nvs_bitmap_get(n->page[from].bitmap, i) != FKD_NVS_ENTRY_WRITTEN) {
            i++;
            continue;
        }
        FKD_GUARD(fkd_nvs_read_entry(n, from, i, raw));
        if (!fkd_nvs_entry_decode(raw, &e) || !fkd_nvs_item_shape_ok(n, from, i, &e)) {
            i++;
            continue;
        }
        FKD_ENSURE(dst->next_free + e.span <= ECOUNT, FKD_E_INTERNAL);
        unsigned d = dst->next_free;
        FKD_GUARD(fkd_nvs_write_entry(n, to, d, raw));
        dst->next_free++;
        FKD_GUARD(fkd_nvs_set_state(n, to, d, 1, FKD_NVS_ENTRY_WRITTEN));
        for (unsigned k = 1; k < e.span; k++) {
            FKD_GUARD(fkd_nvs_read_entry(n, from, i + k, raw));
            FKD_GUARD(fkd_nvs_write_entry(n, to, d + k, raw));
            dst->next_free++;
        }
        FKD_GUARD(fkd_nvs_set_state(n, to, d + 1, e.span - 1u, FKD_NVS_ENTRY_WRITTEN));
        i += e.span;
    }
    rc = FKD_OK;
out:
    mbedtls_platform_zeroize(raw, sizeof raw);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}

unsigned fkd_nvs_count_free(const struct fkd_nvs *n, uint32_t *first) {
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
enum fkd_err fkd_nvs_new_page(struct fkd_nvs *n) {
    uint32_t fp = 0;
    unsigned nfree = fkd_nvs_count_free(n, &fp);
    if (nfree >= 2) {
        return fkd_nvs_activate(n, fp);
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
    enum fkd_err rc = fkd_nvs_set_page_state(n, victim, FKD_NVS_PAGE_FREEING);
    if (rc == FKD_OK) {
        rc = fkd_nvs_activate(n, fp);
    }
    if (rc == FKD_OK) {
        rc = fkd_nvs_copy_items(n, victim, fp);
    }
    if (rc == FKD_OK) {
        rc = fkd_nvs_erase_page(n, victim);
    }
    return rc;
}
