/* NVS image builder: collects namespaces and items in CSV order and lays them out exactly as
 * ESP-IDF's nvs_partition_gen (v0.2.0) does, so the same input gives the same bytes.
 *
 * The layout rules are the generator's, not the runtime's (tests/vectors/nvs/README.md):
 * - a page is filled entry by entry; a primitive needs one free entry, a string (and any V1
 *   variable item) whose span would make entry_num + span >= 126 goes to a new page;
 * - a V2 blob is cut into chunks of (126 - entry_num - 1) * 32 bytes of the current page
 *   (possibly 0 bytes), and a new page is started after a chunk when data remains or fewer
 *   than 32 bytes of that room are left; the BLOB_IDX goes to the page current at that point;
 * - pages with data are FULL except the last, which stays ACTIVE; a read/write partition keeps
 *   its last page as the reserved (all 0xFF) page; sizes below 0x3000 are read-only and only
 *   the used pages are output.
 * Two places deliberately differ (README "Where we deliberately differ"): a revisited
 * namespace keeps its original index (the generator reuses the newest one), and a string of
 * span 126 (3969..4000 bytes with the NUL), which the generator cannot place, fills a fresh
 * page as the runtime allows.
 *
 * Rendering is a pure function of the item list, so it can run any number of times; it lays
 * out past the end of the buffer without writing there, to say how much room would be needed. */
#include "fleetkey/nvs.h"

#include "fkd/nvs_format.h"

#include <stdlib.h>
#include <string.h>

enum item_kind { ITEM_NS, ITEM_INT, ITEM_STR, ITEM_BLOB };

struct item {
    enum item_kind kind;
    uint8_t ns;     /* namespace index of the item; 0 for a namespace entry */
    uint8_t type;   /* FKD_NVS_* for ITEM_INT (and U8 for ITEM_NS) */
    char key[16];   /* NUL-terminated, at most 15 bytes */
    uint8_t ival[8]; /* little-endian value, padded with 0xFF as the generator does */
    uint8_t *data;  /* ITEM_STR: the string with its NUL; ITEM_BLOB: the bytes */
    size_t len;
};

struct fk_nvs_builder {
    unsigned version; /* 1 or 2 */
    struct item *items;
    size_t count;
    size_t cap;
    char ns_names[FKD_NVS_NS_MAX][16];
    unsigned ns_count;
    uint8_t cur_ns; /* 0 until the first namespace */
};

enum fk_err fk_nvs_builder_new(unsigned version, struct fk_nvs_builder **out) {
    if (out == NULL) {
        return FK_E_ARG;
    }
    *out = NULL;
    if (version != 1 && version != 2) {
        return FK_E_ARG;
    }
    struct fk_nvs_builder *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return FK_E_NOMEM;
    }
    b->version = version;
    *out = b;
    return FK_OK;
}

void fk_nvs_builder_free(struct fk_nvs_builder *b) {
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < b->count; i++) {
        fk_free_secret(b->items[i].data, b->items[i].len);
    }
    fk_wipe(b->items, b->cap * sizeof *b->items);
    free(b->items);
    fk_wipe(b, sizeof *b);
    free(b);
}

unsigned fk_nvs_builder_version(const struct fk_nvs_builder *b) {
    return b->version;
}

static enum fk_err check_key(const char *key, const char *what, struct fk_diag *diag) {
    if (key == NULL || key[0] == '\0') {
        return fk_diag_set(diag, FK_E_ARG, "%s name is empty", what);
    }
    size_t n = strlen(key);
    /* The on-flash key field is 16 bytes including the NUL (ESP-IDF NVS_KEY_NAME_MAX_SIZE). */
    if (n > FKD_NVS_KEY_MAX) {
        return fk_diag_set(diag, FK_E_RANGE,
                           "%s '%.40s' is %zu bytes long; NVS allows at most %u", what, key, n,
                           FKD_NVS_KEY_MAX);
    }
    return FK_OK;
}

static enum fk_err push(struct fk_nvs_builder *b, struct item *it) {
    if (b->count == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        struct item *n = calloc(ncap, sizeof *n);
        if (n == NULL) {
            return FK_E_NOMEM;
        }
        if (b->count) {
            memcpy(n, b->items, b->count * sizeof *n);
        }
        /* Items hold pointers to secrets, not the secrets; still wipe the old array so no
         * stale copy of an integer value (which may be a secret) is left on the heap. */
        fk_wipe(b->items, b->cap * sizeof *b->items);
        free(b->items);
        b->items = n;
        b->cap = ncap;
    }
    b->items[b->count++] = *it;
    return FK_OK;
}

static enum fk_err need_ns(const struct fk_nvs_builder *b, const char *key,
                           struct fk_diag *diag) {
    if (b->cur_ns == 0) {
        return fk_diag_set(diag, FK_E_STATE, "key '%s' comes before any namespace", key);
    }
    for (size_t i = 0; i < b->count; i++) {
        const struct item *it = &b->items[i];
        if (it->kind != ITEM_NS && it->ns == b->cur_ns && strcmp(it->key, key) == 0) {
            /* The generator would write both; the device would only ever see the first. */
            return fk_diag_set(diag, FK_E_EXISTS, "key '%s' appears twice in namespace '%s'", key,
                               b->ns_names[b->cur_ns - 1]);
        }
    }
    return FK_OK;
}

enum fk_err fk_nvs_builder_namespace(struct fk_nvs_builder *b, const char *name,
                                     struct fk_diag *diag) {
    enum fk_err rc = check_key(name, "namespace", diag);
    if (rc != FK_OK) {
        return rc;
    }
    for (unsigned i = 0; i < b->ns_count; i++) {
        if (strcmp(b->ns_names[i], name) == 0) {
            /* Revisit: no new entry, and later items keep the original index (the generator
             * uses the newest namespace's index here, which the device would not find). */
            b->cur_ns = (uint8_t)(i + 1);
            return FK_OK;
        }
    }
    if (b->ns_count >= FKD_NVS_NS_MAX) {
        return fk_diag_set(diag, FK_E_NOSPACE, "more than %u namespaces", FKD_NVS_NS_MAX);
    }
    struct item it;
    memset(&it, 0, sizeof it);
    it.kind = ITEM_NS;
    it.ns = 0;
    it.type = FKD_NVS_U8;
    memcpy(it.key, name, strlen(name) + 1);
    memset(it.ival, 0xFF, sizeof it.ival);
    it.ival[0] = (uint8_t)(b->ns_count + 1);
    rc = push(b, &it);
    if (rc != FK_OK) {
        return rc;
    }
    memcpy(b->ns_names[b->ns_count], name, strlen(name) + 1);
    b->ns_count++;
    b->cur_ns = (uint8_t)b->ns_count;
    return FK_OK;
}

static int is_signed_type(uint8_t type) {
    return (type & 0x10u) != 0;
}

enum fk_err fk_nvs_builder_add_int(struct fk_nvs_builder *b, const char *key, uint8_t type,
                                   int64_t svalue, uint64_t uvalue, struct fk_diag *diag) {
    enum fk_err rc = check_key(key, "key", diag);
    if (rc != FK_OK) {
        return rc;
    }
    unsigned width = fkd_nvs_int_width(type);
    if (width == 0) {
        return fk_diag_set(diag, FK_E_ARG, "key '%s': type 0x%02x is not an integer type", key,
                           type);
    }
    rc = need_ns(b, key, diag);
    if (rc != FK_OK) {
        return rc;
    }
    uint64_t bits;
    if (is_signed_type(type)) {
        int64_t lo = width == 8 ? INT64_MIN : -((int64_t)1 << (width * 8 - 1));
        int64_t hi = width == 8 ? INT64_MAX : ((int64_t)1 << (width * 8 - 1)) - 1;
        if (svalue < lo || svalue > hi) {
            return fk_diag_set(diag, FK_E_RANGE,
                               "key '%s': %lld does not fit i%u (%lld..%lld)", key,
                               (long long)svalue, width * 8, (long long)lo, (long long)hi);
        }
        bits = (uint64_t)svalue;
    } else {
        uint64_t hi = width == 8 ? UINT64_MAX : (((uint64_t)1 << (width * 8)) - 1);
        if (uvalue > hi) {
            return fk_diag_set(diag, FK_E_RANGE, "key '%s': %llu does not fit u%u (0..%llu)",
                               key, (unsigned long long)uvalue, width * 8,
                               (unsigned long long)hi);
        }
        bits = uvalue;
    }
    struct item it;
    memset(&it, 0, sizeof it);
    it.kind = ITEM_INT;
    it.ns = b->cur_ns;
    it.type = type;
    memcpy(it.key, key, strlen(key) + 1);
    memset(it.ival, 0xFF, sizeof it.ival);
    for (unsigned i = 0; i < width; i++) {
        it.ival[i] = (uint8_t)(bits >> (8 * i));
    }
    return push(b, &it);
}

static enum fk_err add_var(struct fk_nvs_builder *b, const char *key, enum item_kind kind,
                           const uint8_t *data, size_t len, int add_nul, struct fk_diag *diag) {
    enum fk_err rc = check_key(key, "key", diag);
    if (rc != FK_OK) {
        return rc;
    }
    rc = need_ns(b, key, diag);
    if (rc != FK_OK) {
        return rc;
    }
    size_t total = len + (add_nul ? 1u : 0u);
    if (b->version == 1 && total > FKD_NVS_V1_VAR_MAX) {
        return fk_diag_set(diag, FK_E_RANGE,
                           "key '%s': %zu bytes%s; format version 1 allows at most %u bytes of "
                           "variable-length data",
                           key, total, add_nul ? " with the NUL" : "", FKD_NVS_V1_VAR_MAX);
    }
    if (kind == ITEM_STR && total > FKD_NVS_STR_MAX) {
        return fk_diag_set(diag, FK_E_RANGE,
                           "key '%s': string of %zu bytes with the NUL; at most %u allowed", key,
                           total, FKD_NVS_STR_MAX);
    }
    /* V2 blobs: chunk indexes of one blob version are 0..127 on the device (VER_0 range). A
     * chunk holds at most 4000 bytes, so more than 127 full chunks can never be read back. */
    if (kind == ITEM_BLOB && total > (size_t)127 * FKD_NVS_V2_BLOB_MAX_CHUNK) {
        return fk_diag_set(diag, FK_E_RANGE, "key '%s': blob of %zu bytes is too large", key,
                           total);
    }
    struct item it;
    memset(&it, 0, sizeof it);
    it.kind = kind;
    it.ns = b->cur_ns;
    it.type = kind == ITEM_STR ? FKD_NVS_STR : FKD_NVS_BLOB;
    memcpy(it.key, key, strlen(key) + 1);
    it.len = total;
    it.data = malloc(total ? total : 1);
    if (it.data == NULL) {
        return FK_E_NOMEM;
    }
    if (len) {
        memcpy(it.data, data, len);
    }
    if (add_nul) {
        it.data[len] = 0;
    }
    rc = push(b, &it);
    if (rc != FK_OK) {
        fk_free_secret(it.data, total ? total : 1);
    }
    return rc;
}

enum fk_err fk_nvs_builder_add_str(struct fk_nvs_builder *b, const char *key, const char *value,
                                   struct fk_diag *diag) {
    if (value == NULL) {
        return FK_E_ARG;
    }
    return add_var(b, key, ITEM_STR, (const uint8_t *)value, strlen(value), 1, diag);
}

enum fk_err fk_nvs_builder_add_blob(struct fk_nvs_builder *b, const char *key,
                                    const uint8_t *data, size_t len, struct fk_diag *diag) {
    if (data == NULL && len != 0) {
        return FK_E_ARG;
    }
    return add_var(b, key, ITEM_BLOB, data, len, 0, diag);
}

/* ---- rendering -------------------------------------------------------------------------- */

struct writer {
    uint8_t *img;     /* max_pages pages */
    size_t max_pages; /* pages that may hold data */
    size_t page;      /* current page number (may be >= max_pages: counting only) */
    unsigned entry;   /* next free entry in the current page */
    uint8_t version;  /* on-flash version byte */
};

static uint8_t *page_ptr(const struct writer *w) {
    return w->page < w->max_pages ? w->img + w->page * FKD_NVS_PAGE_SIZE : NULL;
}

static void open_page(struct writer *w) {
    uint8_t *p = page_ptr(w);
    w->entry = 0;
    if (p != NULL) {
        /* Sequence number = page number, as the generator numbers pages. */
        fkd_nvs_header_encode(p, FKD_NVS_PAGE_ACTIVE, (uint32_t)w->page, w->version);
    }
}

static void next_page(struct writer *w) {
    uint8_t *p = page_ptr(w);
    if (p != NULL) {
        /* FULL is ACTIVE with one more bit cleared; the header CRC does not cover the state. */
        fk_store_le32(p, FKD_NVS_PAGE_FULL);
    }
    w->page++;
    open_page(w);
}

/* Writes n entries at the current position: raw holds len bytes (len <= n * 32), the rest of
 * the n entries stays 0xFF (the generator pads with 0xFF). */
static void put(struct writer *w, const uint8_t *raw, size_t len, unsigned n) {
    uint8_t *p = page_ptr(w);
    if (p != NULL) {
        uint8_t *dst = p + FKD_NVS_ENTRIES_OFFSET + (size_t)w->entry * FKD_NVS_ENTRY_SIZE;
        if (len) {
            memcpy(dst, raw, len);
        }
        for (unsigned i = 0; i < n; i++) {
            fkd_nvs_bitmap_set(p + FKD_NVS_BITMAP_OFFSET, w->entry + i, FKD_NVS_ENTRY_WRITTEN);
        }
    }
    w->entry += n;
}

static void put_entry(struct writer *w, const struct fkd_nvs_entry *e) {
    uint8_t raw[FKD_NVS_ENTRY_SIZE];
    fkd_nvs_entry_encode(e, raw);
    put(w, raw, sizeof raw, 1);
}

static void entry_init(struct fkd_nvs_entry *e, const struct item *it) {
    memset(e, 0, sizeof *e);
    e->ns = it->ns;
    e->chunk_index = FKD_NVS_CHUNK_ANY;
    memcpy(e->key, it->key, sizeof e->key);
    memset(e->data, 0xFF, sizeof e->data);
}

static unsigned entries_for(size_t len) {
    return (unsigned)((len + FKD_NVS_ENTRY_SIZE - 1) / FKD_NVS_ENTRY_SIZE);
}

static void write_primitive(struct writer *w, const struct item *it) {
    if (w->entry >= FKD_NVS_ENTRY_COUNT) {
        next_page(w);
    }
    struct fkd_nvs_entry e;
    entry_init(&e, it);
    e.type = it->type;
    e.span = 1;
    memcpy(e.data, it->ival, 8);
    put_entry(w, &e);
}

/* A string (V1/V2) or a V1 blob: header + data entries on one page. */
static void write_single(struct writer *w, const struct item *it, uint8_t type) {
    unsigned span = 1 + entries_for(it->len);
    /* Generator: entry_num + span >= 126 raises PageFullError, so such an item never fills
     * a page's last entry. A span of 126 can only go on a fresh page, where we place it. */
    if (w->entry >= FKD_NVS_ENTRY_COUNT ||
        (w->entry + span >= FKD_NVS_ENTRY_COUNT && !(w->entry == 0 && span == 126))) {
        next_page(w);
    }
    struct fkd_nvs_entry e;
    entry_init(&e, it);
    e.type = type;
    e.span = (uint8_t)span;
    fkd_nvs_var_header(&e, (uint16_t)it->len, fkd_crc32_le(0xFFFFFFFFu, it->data, it->len));
    put_entry(w, &e);
    put(w, it->data, it->len, span - 1);
}

static enum fk_err write_blob_v2(struct writer *w, const struct item *it,
                                 struct fk_diag *diag) {
    if (w->entry >= FKD_NVS_ENTRY_COUNT) {
        next_page(w);
    }
    size_t off = 0;
    size_t remaining = it->len;
    unsigned chunks = 0;
    struct fkd_nvs_entry e;
    entry_init(&e, it);
    for (;;) {
        size_t tailroom = (size_t)(FKD_NVS_ENTRY_COUNT - w->entry - 1) * FKD_NVS_ENTRY_SIZE;
        size_t chunk = tailroom < remaining ? tailroom : remaining;
        remaining -= chunk;
        if (chunks >= 128) {
            return fk_diag_set(diag, FK_E_RANGE,
                               "key '%s': blob needs more than 128 chunks", it->key);
        }
        unsigned n = entries_for(chunk);
        e.type = FKD_NVS_BLOB_DATA;
        e.span = (uint8_t)(n + 1);
        e.chunk_index = (uint8_t)chunks;
        fkd_nvs_var_header(&e, (uint16_t)chunk,
                           fkd_crc32_le(0xFFFFFFFFu, it->data + off, chunk));
        put_entry(w, &e);
        put(w, it->data + off, chunk, n);
        chunks++;
        if (remaining != 0 || tailroom - chunk < FKD_NVS_ENTRY_SIZE) {
            next_page(w);
        }
        off += chunk;
        if (remaining == 0) {
            break;
        }
    }
    memset(e.data, 0xFF, sizeof e.data);
    e.type = FKD_NVS_BLOB_IDX;
    e.span = 1;
    e.chunk_index = FKD_NVS_CHUNK_ANY;
    fkd_nvs_blob_index(&e, (uint32_t)it->len, (uint8_t)chunks, 0);
    put_entry(w, &e);
    return FK_OK;
}

enum fk_err fk_nvs_builder_render(const struct fk_nvs_builder *b, size_t size, uint8_t *out,
                                  size_t out_size, size_t *out_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    if (b == NULL || out_len == NULL || (out == NULL && out_size != 0)) {
        return FK_E_ARG;
    }
    *out_len = 0;
    if (size == 0 || size % FKD_NVS_PAGE_SIZE != 0) {
        return fk_diag_set(diag, FK_E_ARG, "partition size %zu is not a positive multiple of %u",
                           size, FKD_NVS_PAGE_SIZE);
    }
    /* Below 0x3000 the generator makes a read-only image: no reserved page, used pages only. */
    int read_only = size < FK_NVS_MIN_SIZE;
    size_t data_pages = size / FKD_NVS_PAGE_SIZE - (read_only ? 0u : 1u);
    if (!read_only && out_size < size) {
        return fk_diag_set(diag, FK_E_NOSPACE, "output buffer of %zu bytes, image is %zu",
                           out_size, size);
    }
    size_t usable = out_size / FKD_NVS_PAGE_SIZE;
    struct writer w = {
        .img = out,
        .max_pages = data_pages < usable ? data_pages : usable,
        .page = 0,
        .entry = 0,
        .version = b->version == 1 ? FKD_NVS_V1 : FKD_NVS_V2,
    };
    if (w.max_pages) {
        memset(out, 0xFF, w.max_pages * FKD_NVS_PAGE_SIZE);
    }
    open_page(&w);
    for (size_t i = 0; i < b->count; i++) {
        const struct item *it = &b->items[i];
        switch (it->kind) {
        case ITEM_NS:
        case ITEM_INT:
            write_primitive(&w, it);
            break;
        case ITEM_STR:
            write_single(&w, it, FKD_NVS_STR);
            break;
        case ITEM_BLOB:
            if (b->version == 1) {
                write_single(&w, it, FKD_NVS_BLOB);
            } else {
                FK_GUARD(write_blob_v2(&w, it, diag));
            }
            break;
        }
    }
    size_t used = w.page + 1;
    if (used > data_pages) {
        size_t need = (used + (read_only ? 0u : 1u)) * FKD_NVS_PAGE_SIZE;
        rc = fk_diag_set(diag, FK_E_NOSPACE, "data does not fit: needs %zu bytes, partition has %zu",
                         need, size);
        goto out;
    }
    size_t img_len = read_only ? used * FKD_NVS_PAGE_SIZE : size;
    FK_ENSURE(img_len <= out_size,
              fk_diag_set(diag, FK_E_NOSPACE, "output buffer of %zu bytes, image is %zu",
                          out_size, img_len));
    if (img_len > w.max_pages * FKD_NVS_PAGE_SIZE) {
        /* The remaining pages (and the reserved last page) stay erased. */
        memset(out + w.max_pages * FKD_NVS_PAGE_SIZE, 0xFF,
               img_len - w.max_pages * FKD_NVS_PAGE_SIZE);
    }
    *out_len = img_len;
    rc = FK_OK;
out:
    return rc;
}
