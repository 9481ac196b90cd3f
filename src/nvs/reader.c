/* NVS image reader: walks the pages as the device runtime does (ESP-IDF nvs::Page::load),
 * checks every CRC and length, and lists namespaces, items and problems.
 *
 * Two passes. The first walks each page and keeps every entry that passes its checks (page
 * header CRC, entry CRC, span inside the page, size matching the span, data entries marked
 * written, data CRC). The second resolves them: namespace entries (ns 0, type u8, value =
 * index) name the indexes, V2 BLOB_IDX entries gather their BLOB_DATA chunks from any page,
 * and anything left dangling (a chunk without an index, an index without its chunks, a key
 * seen twice) is a problem. Nothing read from the image is used as a length before it has
 * been checked against what is left of the page. */
#include "fleetkey/nvs.h"

#include "fkd/nvs_format.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An entry that passed the first pass. */
struct rec {
    size_t page;
    unsigned entry;
    struct fkd_nvs_entry e;
    const uint8_t *data; /* variable-length data inside the image copy */
    size_t size;
    int used; /* consumed by an item (chunks) */
};

struct fk_nvs_image {
    uint8_t *buf; /* our copy of the image (decrypted when needed) */
    size_t len;
    struct fk_nvs_page_info *pages;
    size_t npages;
    struct rec *recs;
    size_t nrecs;
    size_t rec_cap;
    struct fk_nvs_item *items;
    size_t nitems;
    size_t item_cap;
    char (*keys)[16]; /* item keys, parallel to items */
    uint8_t **values;  /* item values, parallel to items */
    size_t *value_lens;
    struct fk_nvs_problem *problems;
    size_t nproblems;
    size_t problem_cap;
    char ns_names[256][16];
    size_t ns_count;
    int nomem;
};

const char *fk_nvs_type_name(uint8_t type) {
    switch (type) {
    case FKD_NVS_U8:
        return "u8";
    case FKD_NVS_I8:
        return "i8";
    case FKD_NVS_U16:
        return "u16";
    case FKD_NVS_I16:
        return "i16";
    case FKD_NVS_U32:
        return "u32";
    case FKD_NVS_I32:
        return "i32";
    case FKD_NVS_U64:
        return "u64";
    case FKD_NVS_I64:
        return "i64";
    case FKD_NVS_STR:
        return "string";
    case FKD_NVS_BLOB:
    case FKD_NVS_BLOB_IDX:
        return "blob";
    case FKD_NVS_BLOB_DATA:
        return "blob_data";
    default:
        return "unknown";
    }
}

static void problem(struct fk_nvs_image *img, enum fk_err code, size_t offset, long page,
                    int entry, const char *fmt, ...) FK_PRINTF(6, 7);

static void problem(struct fk_nvs_image *img, enum fk_err code, size_t offset, long page,
                    int entry, const char *fmt, ...) {
    struct fk_nvs_problem *np = fk_grow(img->problems, &img->problem_cap, img->nproblems,
                                        sizeof *np, 32);
    if (np == NULL) {
        img->nomem = 1;
        return;
    }
    img->problems = np;
    struct fk_nvs_problem *p = &img->problems[img->nproblems++];
    p->offset = offset;
    p->page = page;
    p->entry = entry;
    p->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof p->reason, fmt, ap);
    va_end(ap);
}

static size_t entry_off(size_t page, unsigned i) {
    return page * FKD_NVS_PAGE_SIZE + FKD_NVS_ENTRIES_OFFSET + (size_t)i * FKD_NVS_ENTRY_SIZE;
}

static const char *state_name(uint32_t st) {
    switch (st) {
    case FKD_NVS_PAGE_UNINIT:
        return "empty";
    case FKD_NVS_PAGE_ACTIVE:
        return "active";
    case FKD_NVS_PAGE_FULL:
        return "full";
    case FKD_NVS_PAGE_FREEING:
        return "freeing";
    case FKD_NVS_PAGE_CORRUPT:
        return "corrupt";
    case FKD_NVS_PAGE_INVALID:
        return "invalid";
    default:
        return "unknown";
    }
}

static int all_ff(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0xFF) {
            return 0;
        }
    }
    return 1;
}

static int is_var_type(uint8_t t) {
    return t == FKD_NVS_STR || t == FKD_NVS_BLOB || t == FKD_NVS_BLOB_DATA;
}

static int is_known_type(uint8_t t) {
    return fkd_nvs_int_width(t) != 0 || is_var_type(t) || t == FKD_NVS_BLOB_IDX;
}

static void add_rec(struct fk_nvs_image *img, size_t page, unsigned i,
                    const struct fkd_nvs_entry *e, const uint8_t *data, size_t size) {
    struct rec *nr = fk_grow(img->recs, &img->rec_cap, img->nrecs, sizeof *nr, 32);
    if (nr == NULL) {
        img->nomem = 1;
        return;
    }
    img->recs = nr;
    struct rec *r = &img->recs[img->nrecs++];
    r->page = page;
    r->entry = i;
    r->e = *e;
    r->data = data;
    r->size = size;
    r->used = 0;
}

/* First pass over one page. */
static void walk_page(struct fk_nvs_image *img, size_t page) {
    const uint8_t *p = img->buf + page * FKD_NVS_PAGE_SIZE;
    size_t base = page * FKD_NVS_PAGE_SIZE;
    struct fk_nvs_page_info *pi = &img->pages[page];
    long pg = (long)page;
    pi->index = page;
    pi->state = fk_load_le32(p);
    pi->seq = fk_load_le32(p + 4);
    pi->version = p[8];
    pi->status = state_name(pi->state);
    pi->header_ok = 1;

    if (pi->state == FKD_NVS_PAGE_UNINIT) {
        if (!all_ff(p, FKD_NVS_PAGE_SIZE)) {
            problem(img, FK_E_PARSE, base, pg, -1,
                    "page header says uninitialised but the page holds data");
        }
        return;
    }
    uint32_t stored = fk_load_le32(p + 28);
    uint32_t computed = fkd_nvs_header_crc(p);
    if (stored != computed) {
        pi->header_ok = 0;
        problem(img, FK_E_CRC, base + 28, pg, -1,
                "page header CRC 0x%08x, computed 0x%08x: page skipped", stored, computed);
        return;
    }
    if (pi->state == FKD_NVS_PAGE_CORRUPT || pi->state == FKD_NVS_PAGE_INVALID ||
        strcmp(pi->status, "unknown") == 0) {
        problem(img, FK_E_PARSE, base, pg, -1, "page state 0x%08x (%s): page skipped", pi->state,
                pi->status);
        return;
    }
    if (pi->version != FKD_NVS_V1 && pi->version != FKD_NVS_V2) {
        problem(img, FK_E_UNSUPPORTED, base + 8, pg, -1,
                "page format version byte 0x%02x (expected 0xfe or 0xff): page skipped",
                pi->version);
        return;
    }
    const uint8_t *bitmap = p + FKD_NVS_BITMAP_OFFSET;
    for (unsigned i = 0; i < FKD_NVS_ENTRY_COUNT; i++) {
        enum fkd_nvs_entry_state st = fkd_nvs_bitmap_get(bitmap, i);
        if (st == FKD_NVS_ENTRY_WRITTEN) {
            pi->written++;
        } else if (st != FKD_NVS_ENTRY_EMPTY) {
            pi->erased++;
        }
    }
    unsigned i = 0;
    while (i < FKD_NVS_ENTRY_COUNT) {
        if (fkd_nvs_bitmap_get(bitmap, i) != FKD_NVS_ENTRY_WRITTEN) {
            i++;
            continue;
        }
        const uint8_t *raw = p + FKD_NVS_ENTRIES_OFFSET + (size_t)i * FKD_NVS_ENTRY_SIZE;
        size_t off = base + FKD_NVS_ENTRIES_OFFSET + (size_t)i * FKD_NVS_ENTRY_SIZE;
        struct fkd_nvs_entry e;
        if (!fkd_nvs_entry_decode(raw, &e)) {
            problem(img, FK_E_CRC, off, pg, (int)i, "entry CRC 0x%08x, computed 0x%08x", e.crc,
                    fkd_nvs_entry_crc(raw));
            i++;
            continue;
        }
        /* From here the header is authentic, so its span can be used to step, once it has
         * been checked against the page. */
        if (e.span == 0 || e.span > FKD_NVS_ENTRY_COUNT - i) {
            problem(img, FK_E_PARSE, off, pg, (int)i,
                    "key '%s': span %u runs past the page end (entry %u of %u)", e.key, e.span,
                    i, FKD_NVS_ENTRY_COUNT);
            i++;
            continue;
        }
        unsigned span = e.span;
        if (!is_known_type(e.type)) {
            problem(img, FK_E_PARSE, off, pg, (int)i, "key '%s': unknown item type 0x%02x",
                    e.key, e.type);
            i += span;
            continue;
        }
        if (e.ns == 0xFF || (e.ns == 0 && e.type != FKD_NVS_U8)) {
            problem(img, FK_E_PARSE, off, pg, (int)i,
                    "key '%s': namespace index %u with type %s", e.key, e.ns,
                    fk_nvs_type_name(e.type));
            i += span;
            continue;
        }
        if (!is_var_type(e.type)) {
            if (span != 1) {
                problem(img, FK_E_PARSE, off, pg, (int)i,
                        "key '%s': %s item with span %u (expected 1)", e.key,
                        fk_nvs_type_name(e.type), span);
            } else {
                add_rec(img, page, i, &e, NULL, 0);
            }
            i += span;
            continue;
        }
        size_t size = fk_load_le16(e.data);
        unsigned need = 1 + (unsigned)((size + FKD_NVS_ENTRY_SIZE - 1) / FKD_NVS_ENTRY_SIZE);
        if (need != span) {
            problem(img, FK_E_PARSE, off, pg, (int)i,
                    "key '%s': data size %zu needs span %u, entry says %u", e.key, size, need,
                    span);
            i += span;
            continue;
        }
        int unwritten = 0;
        for (unsigned k = 1; k < span; k++) {
            if (fkd_nvs_bitmap_get(bitmap, i + k) != FKD_NVS_ENTRY_WRITTEN) {
                unwritten = 1;
            }
        }
        if (unwritten) {
            problem(img, FK_E_PARSE, off, pg, (int)i,
                    "key '%s': data entries %u..%u are not all marked written", e.key, i + 1,
                    i + span - 1);
            i += span;
            continue;
        }
        const uint8_t *data = raw + FKD_NVS_ENTRY_SIZE;
        uint32_t dstored = fk_load_le32(e.data + 4);
        uint32_t dcomp = fkd_crc32_le(0xFFFFFFFFu, data, size);
        if (dstored != dcomp) {
            problem(img, FK_E_CRC, off + FKD_NVS_ENTRY_SIZE, pg, (int)i,
                    "key '%s': data CRC 0x%08x, computed 0x%08x", e.key, dstored, dcomp);
            i += span;
            continue;
        }
        /* The data CRC does not cover the padding of the last data entry; writers (the
         * generator, ESP-IDF, device/src/nvs/nvs.c) fill it with 0xFF, so anything else there is
         * damage the CRC cannot see. */
        size_t pad_end = (size_t)(span - 1) * FKD_NVS_ENTRY_SIZE;
        size_t bad_pad = size;
        while (bad_pad < pad_end && data[bad_pad] == 0xFF) {
            bad_pad++;
        }
        if (bad_pad < pad_end) {
            problem(img, FK_E_PARSE, off + FKD_NVS_ENTRY_SIZE + bad_pad, pg, (int)i,
                    "key '%s': padding after its %zu data bytes is not 0xFF", e.key, size);
            i += span;
            continue;
        }
        add_rec(img, page, i, &e, data, size);
        i += span;
    }
}

static enum fk_err add_item(struct fk_nvs_image *img, const struct rec *r, const uint8_t *data,
                            size_t len, unsigned chunks) {
    size_t cap = img->item_cap;
    struct fk_nvs_item *ni = fk_grow(img->items, &cap, img->nitems, sizeof *ni, 32);
    if (ni == NULL) {
        return FK_E_NOMEM;
    }
    img->items = ni;
    if (cap != img->item_cap) {
        char(*nk)[16] = realloc(img->keys, cap * sizeof *nk);
        if (nk == NULL) {
            return FK_E_NOMEM;
        }
        img->keys = nk;
        uint8_t **nv = realloc(img->values, cap * sizeof *nv);
        if (nv == NULL) {
            return FK_E_NOMEM;
        }
        img->values = nv;
        size_t *nl = realloc(img->value_lens, cap * sizeof *nl);
        if (nl == NULL) {
            return FK_E_NOMEM;
        }
        img->value_lens = nl;
        img->item_cap = cap;
    }
    size_t k = img->nitems;
    uint8_t *copy = malloc(len + 1);
    if (copy == NULL) {
        return FK_E_NOMEM;
    }
    if (len) {
        memcpy(copy, data, len);
    }
    copy[len] = 0;
    img->values[k] = copy;
    img->value_lens[k] = len + 1;
    memcpy(img->keys[k], r->e.key, 16);
    struct fk_nvs_item *it = &img->items[k];
    memset(it, 0, sizeof *it);
    it->ns_index = r->e.ns;
    it->ns = ""; /* resolved once all namespaces are known */
    it->type = r->e.type;
    it->data = copy;
    it->len = len;
    it->chunks = chunks;
    it->page = r->page;
    it->entry = r->entry;
    it->offset = entry_off(r->page, r->entry);
    unsigned w = fkd_nvs_int_width(r->e.type);
    if (w) {
        uint64_t v = 0;
        for (unsigned b = 0; b < w; b++) {
            v |= (uint64_t)r->e.data[b] << (8 * b);
        }
        it->u = v;
        if ((r->e.type & 0x10u) && w < 8 && (v >> (w * 8 - 1)) & 1u) {
            v |= ~(uint64_t)0 << (w * 8);
        }
        it->i = (int64_t)v;
    }
    img->nitems++;
    return FK_OK;
}

/* Sort key of a record: items of one ns/key sit together, the item before its chunks, chunks
 * by index, ties in page order (so the first written wins). */
struct ord {
    uint8_t ns;
    uint8_t is_chunk;
    uint8_t chunk;
    char key[16];
    size_t idx;
};

static int ord_cmp_key(const struct ord *x, const struct ord *y) {
    if (x->ns != y->ns) {
        return x->ns < y->ns ? -1 : 1;
    }
    int c = strcmp(x->key, y->key);
    if (c != 0) {
        return c;
    }
    if (x->is_chunk != y->is_chunk) {
        return x->is_chunk < y->is_chunk ? -1 : 1;
    }
    if (x->is_chunk && x->chunk != y->chunk) {
        return x->chunk < y->chunk ? -1 : 1;
    }
    return 0;
}

static int ord_cmp(const void *a, const void *b) {
    const struct ord *x = a;
    const struct ord *y = b;
    int c = ord_cmp_key(x, y);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The first record equal to want (ignoring idx), or NULL. */
static const struct ord *ord_find(const struct ord *o, size_t n, const struct ord *want) {
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ord_cmp_key(&o[mid], want) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && ord_cmp_key(&o[lo], want) == 0 ? &o[lo] : NULL;
}

static void join_blob(struct fk_nvs_image *img, struct rec *r, const struct ord *o, size_t no,
                      uint8_t *joined, int *ok, size_t *have) {
    size_t off = entry_off(r->page, r->entry);
    uint32_t total = fk_load_le32(r->e.data);
    unsigned count = r->e.data[4];
    unsigned start = r->e.data[5];
    *ok = 0;
    *have = 0;
    for (unsigned c = start; c < start + count; c++) {
        struct ord want;
        memset(&want, 0, sizeof want);
        want.ns = r->e.ns;
        want.is_chunk = 1;
        want.chunk = (uint8_t)c;
        memcpy(want.key, r->e.key, 16);
        const struct ord *hit = ord_find(o, no, &want);
        if (hit == NULL) {
            problem(img, FK_E_NOTFOUND, off, (long)r->page, (int)r->entry,
                    "key '%s': blob index names chunk %u, which is missing", r->e.key, c);
            return;
        }
        struct rec *chunk = &img->recs[hit->idx];
        if (chunk->size > total - *have) {
            problem(img, FK_E_PARSE, off, (long)r->page, (int)r->entry,
                    "key '%s': chunks hold more than the index size %u", r->e.key, total);
            return;
        }
        memcpy(joined + *have, chunk->data, chunk->size);
        *have += chunk->size;
        chunk->used = 1;
    }
    if (*have != total) {
        problem(img, FK_E_PARSE, off, (long)r->page, (int)r->entry,
                "key '%s': chunks hold %zu bytes, the index says %u", r->e.key, *have, total);
        return;
    }
    *ok = 1;
}

static enum fk_err resolve(struct fk_nvs_image *img) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *joined = NULL;
    size_t joined_cap = 0;
    struct ord *o = NULL;
    uint8_t *dup = NULL;
    size_t no = 0;
    /* Namespaces first: items may come before their namespace entry in page order. */
    for (size_t n = 0; n < img->nrecs; n++) {
        const struct rec *r = &img->recs[n];
        if (r->e.ns != 0) {
            continue;
        }
        uint8_t idx = r->e.data[0];
        size_t off = entry_off(r->page, r->entry);
        if (idx == 0 || idx == 0xFF) {
            problem(img, FK_E_PARSE, off, (long)r->page, (int)r->entry,
                    "namespace '%s' has index %u (expected 1..254)", r->e.key, idx);
        } else if (img->ns_names[idx][0] != '\0') {
            problem(img, FK_E_EXISTS, off, (long)r->page, (int)r->entry,
                    "namespace index %u defined twice ('%s' and '%s')", idx,
                    img->ns_names[idx], r->e.key);
        } else {
            memcpy(img->ns_names[idx], r->e.key, 16);
            img->ns_count++;
        }
    }
    if (img->nrecs) {
        o = calloc(img->nrecs, sizeof *o);
        dup = calloc(img->nrecs, 1);
        FK_ENSURE(o != NULL && dup != NULL, FK_E_NOMEM);
    }
    for (size_t n = 0; n < img->nrecs; n++) {
        const struct rec *r = &img->recs[n];
        if (r->e.ns == 0) {
            continue;
        }
        struct ord *x = &o[no++];
        x->ns = r->e.ns;
        x->is_chunk = r->e.type == FKD_NVS_BLOB_DATA;
        x->chunk = r->e.chunk_index;
        memcpy(x->key, r->e.key, 16);
        x->idx = n;
    }
    if (no > 1) {
        qsort(o, no, sizeof *o, ord_cmp);
    }
    for (size_t j = 1; j < no; j++) {
        if (ord_cmp_key(&o[j - 1], &o[j]) == 0) {
            const struct rec *first = &img->recs[o[j - 1].idx];
            const struct rec *r = &img->recs[o[j].idx];
            dup[o[j].idx] = 1;
            problem(img, FK_E_EXISTS, entry_off(r->page, r->entry), (long)r->page,
                    (int)r->entry, "key '%s' in namespace %u written twice (first at 0x%zx)",
                    r->e.key, r->e.ns, entry_off(first->page, first->entry));
        }
    }
    for (size_t n = 0; n < img->nrecs; n++) {
        struct rec *r = &img->recs[n];
        if (r->e.ns == 0 || r->e.type == FKD_NVS_BLOB_DATA || dup[n]) {
            continue; /* chunks are taken by their index below */
        }
        size_t off = entry_off(r->page, r->entry);
        if (r->e.type == FKD_NVS_BLOB_IDX) {
            uint32_t total = fk_load_le32(r->e.data);
            unsigned count = r->e.data[4];
            unsigned start = r->e.data[5];
            if (count == 0 || start + count > 255u) {
                problem(img, FK_E_PARSE, off, (long)r->page, (int)r->entry,
                        "key '%s': blob index with %u chunks from %u", r->e.key, count, start);
                continue;
            }
            /* No blob is larger than the image holding its chunks; checking this before
             * allocating keeps a forged size from asking for gigabytes. */
            if (total > img->len) {
                problem(img, FK_E_PARSE, off, (long)r->page, (int)r->entry,
                        "key '%s': blob index size %u is larger than the image", r->e.key,
                        total);
                continue;
            }
            if (joined_cap < (size_t)total + 1) {
                fk_free_secret(joined, joined_cap);
                joined_cap = (size_t)total + 1;
                joined = malloc(joined_cap);
                FK_ENSURE(joined != NULL, FK_E_NOMEM);
            }
            int ok = 0;
            size_t have = 0;
            join_blob(img, r, o, no, joined, &ok, &have);
            if (ok) {
                FK_GUARD(add_item(img, r, joined, have, count));
            }
        } else if (r->e.type == FKD_NVS_STR) {
            if (r->size == 0 || r->data[r->size - 1] != '\0') {
                problem(img, FK_E_PARSE, off, (long)r->page, (int)r->entry,
                        "key '%s': string is not NUL-terminated", r->e.key);
                continue;
            }
            FK_GUARD(add_item(img, r, r->data, r->size - 1, 0));
        } else if (r->e.type == FKD_NVS_BLOB) {
            FK_GUARD(add_item(img, r, r->data, r->size, 0));
        } else {
            FK_GUARD(add_item(img, r, NULL, 0, 0));
        }
    }
    for (size_t n = 0; n < img->nrecs; n++) {
        const struct rec *r = &img->recs[n];
        if (r->e.type == FKD_NVS_BLOB_DATA && !r->used && !dup[n]) {
            problem(img, FK_E_NOTFOUND, entry_off(r->page, r->entry), (long)r->page,
                    (int)r->entry, "key '%s': blob chunk %u belongs to no blob index", r->e.key,
                    r->e.chunk_index);
        }
    }
    for (size_t n = 0; n < img->nitems; n++) {
        struct fk_nvs_item *it = &img->items[n];
        it->key = img->keys[n];
        it->ns = img->ns_names[it->ns_index];
        if (it->ns[0] == '\0') {
            problem(img, FK_E_NOTFOUND, it->offset, (long)it->page, (int)it->entry,
                    "key '%s': namespace index %u is not defined", it->key, it->ns_index);
        }
    }
    rc = FK_OK;
out:
    fk_free_secret(joined, joined_cap);
    free(o);
    free(dup);
    return rc;
}

static int problem_cmp(const void *a, const void *b) {
    const struct fk_nvs_problem *x = a;
    const struct fk_nvs_problem *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static enum fk_err read_owned(uint8_t *copy, size_t len, struct fk_nvs_image **out) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_nvs_image *img = calloc(1, sizeof *img);
    if (img == NULL) {
        fk_free_secret(copy, len);
        return FK_E_NOMEM;
    }
    img->buf = copy;
    img->len = len;
    img->npages = len / FKD_NVS_PAGE_SIZE;
    if (len == 0) {
        problem(img, FK_E_TRUNCATED, 0, -1, -1, "empty image");
    } else if (len % FKD_NVS_PAGE_SIZE != 0) {
        problem(img, FK_E_TRUNCATED, img->npages * FKD_NVS_PAGE_SIZE, -1, -1,
                "image is %zu bytes, %zu bytes into page %zu (truncated?): partial page not "
                "read",
                len, len % FKD_NVS_PAGE_SIZE, img->npages);
    }
    if (img->npages) {
        img->pages = calloc(img->npages, sizeof *img->pages);
        FK_ENSURE(img->pages != NULL, FK_E_NOMEM);
    }
    for (size_t p = 0; p < img->npages; p++) {
        walk_page(img, p);
    }
    FK_GUARD(resolve(img));
    FK_ENSURE(!img->nomem, FK_E_NOMEM);
    /* Stable for equal offsets is not needed: one problem per offset and reason. */
    if (img->nproblems > 1) {
        qsort(img->problems, img->nproblems, sizeof *img->problems, problem_cmp);
    }
    *out = img;
    img = NULL;
    rc = (*out)->nproblems ? (*out)->problems[0].code : FK_OK;
out:
    fk_nvs_image_free(img);
    return rc;
}

enum fk_err fk_nvs_image_read(const uint8_t *buf, size_t len, struct fk_nvs_image **out) {
    if (out == NULL) {
        return FK_E_ARG;
    }
    *out = NULL;
    if (buf == NULL && len != 0) {
        return FK_E_ARG;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return FK_E_NOMEM;
    }
    if (len) {
        memcpy(copy, buf, len);
    }
    return read_owned(copy, len, out);
}

enum fk_err fk_nvs_image_read_encrypted(const uint8_t *buf, size_t len,
                                        const struct fk_nvs_keys *k,
                                        struct fk_nvs_image **out) {
    if (out == NULL) {
        return FK_E_ARG;
    }
    *out = NULL;
    if ((buf == NULL && len != 0) || k == NULL) {
        return FK_E_ARG;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        return FK_E_NOMEM;
    }
    if (len) {
        memcpy(copy, buf, len);
    }
    /* Only whole pages are decrypted; a partial tail is reported by the reader. */
    size_t whole = len - len % FKD_NVS_PAGE_SIZE;
    enum fk_err rc = fk_nvs_decrypt(copy, whole, k);
    if (rc != FK_OK) {
        fk_free_secret(copy, len ? len : 1);
        return rc;
    }
    return read_owned(copy, len, out);
}

void fk_nvs_image_free(struct fk_nvs_image *img) {
    if (img == NULL) {
        return;
    }
    for (size_t i = 0; i < img->nitems; i++) {
        fk_free_secret(img->values[i], img->value_lens[i]);
    }
    fk_free_secret(img->buf, img->len ? img->len : 1);
    free(img->values);
    free(img->value_lens);
    free(img->keys);
    free(img->items);
    free(img->recs); /* pointers into buf only; buf is wiped above */
    free(img->problems);
    free(img->pages);
    free(img);
}

size_t fk_nvs_image_item_count(const struct fk_nvs_image *img) {
    return img != NULL ? img->nitems : 0;
}

const struct fk_nvs_item *fk_nvs_image_item(const struct fk_nvs_image *img, size_t i) {
    return img != NULL && i < img->nitems ? &img->items[i] : NULL;
}

const struct fk_nvs_item *fk_nvs_image_find(const struct fk_nvs_image *img, const char *ns,
                                            const char *key) {
    if (img == NULL || ns == NULL || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < img->nitems; i++) {
        if (strcmp(img->items[i].ns, ns) == 0 && strcmp(img->items[i].key, key) == 0) {
            return &img->items[i];
        }
    }
    return NULL;
}

size_t fk_nvs_image_problem_count(const struct fk_nvs_image *img) {
    return img != NULL ? img->nproblems : 0;
}

const struct fk_nvs_problem *fk_nvs_image_problem(const struct fk_nvs_image *img, size_t i) {
    return img != NULL && i < img->nproblems ? &img->problems[i] : NULL;
}

size_t fk_nvs_image_page_count(const struct fk_nvs_image *img) {
    return img != NULL ? img->npages : 0;
}

const struct fk_nvs_page_info *fk_nvs_image_page(const struct fk_nvs_image *img, size_t i) {
    return img != NULL && i < img->npages ? &img->pages[i] : NULL;
}

size_t fk_nvs_image_namespace_count(const struct fk_nvs_image *img) {
    return img != NULL ? img->ns_count : 0;
}

const char *fk_nvs_image_namespace(const struct fk_nvs_image *img, unsigned index) {
    if (img == NULL || index == 0 || index > 254) {
        return "";
    }
    return img->ns_names[index];
}
