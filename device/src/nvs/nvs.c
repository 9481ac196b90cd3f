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
 * never-written entries (0xFF), which is how empty space is recognised.
 *
 * Files: this one is the key-value API (namespaces, set, get, erase, iteration);
 * nvs_page.c the page and entry layer under it (entry I/O and encryption, bitmaps, page
 * states, item scans, new pages and garbage collection); nvs_mount.c the mount and the repairs
 * after a power cut; nvs_internal.h joins the three. nvs_format.c is the on-flash format,
 * shared with the host (fkd_format). */
#include "fkd/nvs.h"

#include "nvs_internal.h"

#include <mbedtls/platform_util.h>
#include <string.h>

/* ---- namespaces ----------------------------------------------------------------------- */

static int name_ok(const char *s) {
    size_t len = s == NULL ? 0 : strnlen(s, FKD_NVS_KEY_MAX + 1);
    return len >= 1 && len <= FKD_NVS_KEY_MAX;
}

struct ns_used {
    uint8_t bits[32];
};

static int ns_used_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
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
            enum fkd_err rc = fkd_nvs_set_page_state(n, n->active, FKD_NVS_PAGE_FULL);
            if (rc != FKD_OK) {
                return rc;
            }
        }
        n->active = n->pages;
        if (tries > n->pages) {
            return FKD_E_NOSPACE;
        }
        enum fkd_err rc = fkd_nvs_new_page(n);
        if (rc != FKD_OK) {
            return rc;
        }
    }
}

/* Appends one item to the active page; *at receives where. data/size only for var types. */
static enum fkd_err write_item(struct fkd_nvs *n, uint8_t ns, uint8_t type, const char *key,
                               uint8_t chunk, const uint8_t *data, size_t size,
                               const uint8_t fixed[8], struct fkd_nvs_pos *at) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct fkd_nvs_entry e;
    uint8_t raw[ESZ];
    unsigned span = fkd_nvs_is_var(type) ? 1u + (unsigned)((size + ESZ - 1) / ESZ) : 1u;
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
    if (fkd_nvs_is_var(type)) {
        fkd_nvs_var_header(&e, (uint16_t)size, fkd_crc32_le(0xFFFFFFFFu, data, size));
    } else {
        memcpy(e.data, fixed, 8);
    }
    fkd_nvs_entry_encode(&e, raw);
    pg->next_free = (uint8_t)(i + span); /* claimed even if the writes below fail */
    FKD_GUARD(fkd_nvs_write_entry(n, p, i, raw));
    FKD_GUARD(fkd_nvs_set_state(n, p, i, 1, FKD_NVS_ENTRY_WRITTEN));
    for (unsigned k = 1; k < span; k++) {
        size_t off = (size_t)(k - 1) * ESZ;
        size_t take = size - off < ESZ ? size - off : ESZ;
        memset(raw, 0xFF, ESZ);
        memcpy(raw, data + off, take);
        FKD_GUARD(fkd_nvs_write_entry(n, p, i + k, raw));
    }
    FKD_GUARD(fkd_nvs_set_state(n, p, i + 1, span - 1, FKD_NVS_ENTRY_WRITTEN));
    at->page = p;
    at->idx = i;
    rc = FKD_OK;
out:
    mbedtls_platform_zeroize(raw, sizeof raw);
    mbedtls_platform_zeroize(&e, sizeof e);
    return rc;
}

static enum fkd_err ns_index(struct fkd_nvs *n, const char *name, int create, uint8_t *out) {
    struct fkd_nvs_find_q q;
    if (!name_ok(name)) {
        return FKD_E_ARG;
    }
    fkd_nvs_query(&q, 0, name, FKD_NVS_CHUNK_ANY);
    enum fkd_err rc = fkd_nvs_item_find(n, &q);
    if (rc == FKD_OK) {
        *out = q.e.data[0];
        return FKD_OK;
    }
    if (rc != FKD_E_NOTFOUND || !create) {
        return rc;
    }
    struct ns_used u;
    memset(&u, 0, sizeof u);
    rc = fkd_nvs_visit(n, ns_used_cb, &u);
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
        struct fkd_nvs_pos at;
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
    struct fkd_nvs_pos at;
    struct fkd_nvs_entry e;
};

static int stale_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                    const struct fkd_nvs_entry *e) {
    (void)n;
    struct stale_q *q = user;
    if (e->type != FKD_NVS_BLOB_DATA || e->ns != q->ns || !fkd_nvs_key_eq(e->key, q->key)) {
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
                                 struct fkd_nvs_pos keep, unsigned cstart, unsigned ccount) {
    struct fkd_nvs_find_q q;
    enum fkd_err rc;
    fkd_nvs_query(&q, ns, key, FKD_NVS_CHUNK_ANY);
    q.skip = keep;
    while ((rc = fkd_nvs_item_find(n, &q)) == FKD_OK) {
        rc = fkd_nvs_erase_item(n, q.at, &q.e);
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
        rc = fkd_nvs_visit(n, stale_cb, &sq);
        if (rc != FKD_OK || !sq.found) {
            return rc;
        }
        rc = fkd_nvs_erase_item(n, sq.at, &sq.e);
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
    struct fkd_nvs_pos at;
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
    struct fkd_nvs_pos at;
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
    unsigned nfree = fkd_nvs_count_free(n, NULL);
    for (uint32_t p = 0; p < n->pages; p++) {
        const struct fkd_nvs_page *pg = &n->page[p];
        if (fkd_nvs_in_use(pg)) {
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
    struct fkd_nvs_find_q q;
    fkd_nvs_query(&q, idx, key, FKD_NVS_CHUNK_ANY);
    rc = fkd_nvs_item_find(n, &q);
    if (rc != FKD_OK && rc != FKD_E_NOTFOUND) {
        return rc;
    }
    unsigned start =
        (rc == FKD_OK && q.e.type == FKD_NVS_BLOB_IDX && q.e.data[5] == VER_0) ? VER_1 : VER_0;
    unsigned count = 0;
    size_t off = 0;
    struct fkd_nvs_pos at;
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
        rc = write_item(n, idx, FKD_NVS_BLOB_DATA, key, (uint8_t)(start + count), data + off, chunk,
                        NULL, &at);
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
            struct fkd_nvs_find_q cq;
            fkd_nvs_query(&cq, idx, key, (uint8_t)c);
            if (fkd_nvs_item_find(n, &cq) == FKD_OK && cq.e.type == FKD_NVS_BLOB_DATA) {
                (void)fkd_nvs_erase_item(n, cq.at, &cq.e);
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
    struct fkd_nvs_find_q q;
    fkd_nvs_query(&q, idx, key, FKD_NVS_CHUNK_ANY);
    rc = fkd_nvs_item_find(n, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    struct fkd_nvs_pos none = {UINT32_MAX, 0};
    return erase_others(n, idx, key, none, 0, 0);
}

/* ---- reading -------------------------------------------------------------------------- */

static enum fkd_err lookup(struct fkd_nvs *n, const char *ns, const char *key,
                           struct fkd_nvs_find_q *q) {
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
    fkd_nvs_query(q, idx, key, FKD_NVS_CHUNK_ANY);
    return fkd_nvs_item_find(n, q);
}

enum fkd_err fkd_nvs_find(struct fkd_nvs *n, const char *ns, const char *key, uint8_t *type) {
    struct fkd_nvs_find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc == FKD_OK) {
        *type = q.e.type;
    }
    return rc;
}

enum fkd_err fkd_nvs_get_int(struct fkd_nvs *n, const char *ns, const char *key,
                             struct fkd_nvs_int *out) {
    struct fkd_nvs_find_q q;
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
    struct fkd_nvs_find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    if (q.e.type != FKD_NVS_STR) {
        return FKD_E_TYPE;
    }
    unsigned size = fkd_nvs_var_size(&q.e);
    if (size == 0) {
        return FKD_E_CORRUPT;
    }
    *out_len = size - 1u;
    if (out_size < size) {
        return FKD_E_NOSPACE;
    }
    rc = fkd_nvs_read_var(n, q.at.page, q.at.idx, &q.e, (uint8_t *)out);
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
    struct fkd_nvs_find_q q;
    enum fkd_err rc = lookup(n, ns, key, &q);
    if (rc != FKD_OK) {
        return rc;
    }
    if (q.e.type == FKD_NVS_BLOB) {
        unsigned size = fkd_nvs_var_size(&q.e);
        *out_len = size;
        if (out_size < size) {
            return FKD_E_NOSPACE;
        }
        rc = fkd_nvs_read_var(n, q.at.page, q.at.idx, &q.e, out);
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
        struct fkd_nvs_find_q cq;
        fkd_nvs_query(&cq, nsidx, key, (uint8_t)c);
        rc = fkd_nvs_item_find(n, &cq);
        if (rc == FKD_E_NOTFOUND || (rc == FKD_OK && cq.e.type != FKD_NVS_BLOB_DATA)) {
            rc = FKD_E_CORRUPT;
        }
        if (rc == FKD_OK && fkd_nvs_var_size(&cq.e) > size - off) {
            rc = FKD_E_CORRUPT;
        }
        if (rc == FKD_OK) {
            rc = fkd_nvs_read_var(n, cq.at.page, cq.at.idx, &cq.e, out + off);
        }
        if (rc != FKD_OK) {
            fkd_wipe(out, size);
            return rc;
        }
        off += fkd_nvs_var_size(&cq.e);
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

static int ns_name_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
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

static int each_cb(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                   const struct fkd_nvs_entry *e) {
    (void)at;
    struct each_q *q = user;
    if (e->ns == 0 || e->type == FKD_NVS_BLOB_DATA) {
        return 0;
    }
    struct ns_name_q nq;
    memset(&nq, 0, sizeof nq);
    nq.idx = e->ns;
    if (fkd_nvs_visit(n, ns_name_cb, &nq) != FKD_OK || !nq.found) {
        return 0; /* an item of an unknown namespace is unreachable, as in ESP-IDF */
    }
    return q->fn(q->user, nq.name, e->key, e->type) != 0;
}

enum fkd_err fkd_nvs_foreach(struct fkd_nvs *n, fkd_nvs_item_fn *fn, void *user) {
    if (n == NULL || !n->mounted || fn == NULL) {
        return FKD_E_STATE;
    }
    struct each_q q = {fn, user};
    return fkd_nvs_visit(n, each_cb, &q);
}
