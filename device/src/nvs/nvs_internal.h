/* Pieces shared by the NVS runtime's files (device/src/nvs); not part of the public contract
 * (fkd/nvs.h). nvs_page.c is the page and entry layer, nvs_mount.c the mount and its
 * power-loss repairs, nvs.c the key-value API on top. Every function works on the caller's
 * struct fkd_nvs and allocates nothing. */
#ifndef FKD_NVS_INTERNAL_H
#define FKD_NVS_INTERNAL_H

#include "fkd/nvs.h"

#include <stddef.h>
#include <stdint.h>

/* Shorthands of the format's sizes and of the blob chunk versions, private to device/src/nvs. */
#define PAGE FKD_NVS_PAGE_SIZE
#define ESZ FKD_NVS_ENTRY_SIZE
#define ECOUNT FKD_NVS_ENTRY_COUNT
#define VER_0 0x00u
#define VER_1 0x80u
#define CHUNKS_MAX 127u /* chunk indexes per version (0..127, 128..254) */

struct fkd_nvs_pos {
    uint32_t page;
    unsigned idx;
};

/* ---- nvs_page.c: entries and pages ---- */

/* The flash address of page p of the partition. */
uint32_t fkd_nvs_page_addr(const struct fkd_nvs *n, uint32_t p);
/* 1 when all len bytes of b are 0xFF (never written). */
int fkd_nvs_all_ff(const uint8_t *b, size_t len);
/* Reads one entry as it is on flash (still encrypted, if the partition is). */
enum fkd_err fkd_nvs_read_raw(struct fkd_nvs *n, uint32_t p, unsigned i, uint8_t raw[ESZ]);
/* Reads and (if encrypted) decrypts one written entry. */
enum fkd_err fkd_nvs_read_entry(struct fkd_nvs *n, uint32_t p, unsigned i, uint8_t out[ESZ]);
/* Encrypts (if the partition is) and writes one entry; its bitmap state is set apart. */
enum fkd_err fkd_nvs_write_entry(struct fkd_nvs *n, uint32_t p, unsigned i,
                                 const uint8_t plain[ESZ]);
/* Sets entries [i, i + count) of page p to st in RAM and on flash (one write of the bitmap
 * bytes that hold them). Only ever clears bits: EMPTY -> WRITTEN -> ERASED. */
enum fkd_err fkd_nvs_set_state(struct fkd_nvs *n, uint32_t p, unsigned i, unsigned count,
                               enum fkd_nvs_entry_state st);
/* Writes page p's state word (RAM only on a read-only mount). */
enum fkd_err fkd_nvs_set_page_state(struct fkd_nvs *n, uint32_t p, uint32_t state);
/* RAM state of a page as if erased. */
void fkd_nvs_page_reset(struct fkd_nvs_page *pg);
/* Erases page p (RAM only on a read-only mount). */
enum fkd_err fkd_nvs_erase_page(struct fkd_nvs *n, uint32_t p);
/* 1 for an ACTIVE, FULL or FREEING page. */
int fkd_nvs_in_use(const struct fkd_nvs_page *pg);
/* In-use pages, oldest first. Returns their count. */
unsigned fkd_nvs_sorted_pages(const struct fkd_nvs *n, uint32_t out[FKD_NVS_MAX_PAGES]);

/* 1 for the types whose data follows in entries of their own (string, blob, blob chunk). */
int fkd_nvs_is_var(uint8_t type);
/* The data size of a variable-length item. */
unsigned fkd_nvs_var_size(const struct fkd_nvs_entry *e);
/* Reads a variable-length item's data (size bytes from the entries after (p, i)) into out
 * (may be NULL: CRC check only) and checks its CRC. */
enum fkd_err fkd_nvs_read_var(struct fkd_nvs *n, uint32_t p, unsigned i,
                              const struct fkd_nvs_entry *e, uint8_t *out);
/* Checks that an entry decoded with a good CRC is a well-formed item at (p, i). */
int fkd_nvs_item_shape_ok(const struct fkd_nvs *n, uint32_t p, unsigned i,
                          const struct fkd_nvs_entry *e);

/* Visits every item of the in-use pages, oldest first. fn returns 0 to go on, 1 to stop. Only
 * entries whose CRC checks are visited (mount has erased the others). */
typedef int fkd_nvs_visit_fn(struct fkd_nvs *n, void *user, struct fkd_nvs_pos at,
                             const struct fkd_nvs_entry *e);
enum fkd_err fkd_nvs_visit(struct fkd_nvs *n, fkd_nvs_visit_fn *fn, void *user);

/* Finding the newest item with a given identity. */
struct fkd_nvs_find_q {
    uint8_t ns;
    const char *key;
    uint8_t chunk;           /* FKD_NVS_CHUNK_ANY for non-chunk items */
    int any_chunk;           /* match BLOB_DATA of any chunk index (used with skip) */
    struct fkd_nvs_pos skip; /* position to ignore (page = UINT32_MAX: none) */
    int found;
    struct fkd_nvs_pos at;
    struct fkd_nvs_entry e;
};
/* Keys compare over at most 16 bytes, NUL-padded as on flash. */
int fkd_nvs_key_eq(const char *a, const char *b);
/* The newest item q asks for: FKD_OK (q->at, q->e set), FKD_E_NOTFOUND, or a read error. */
enum fkd_err fkd_nvs_item_find(struct fkd_nvs *n, struct fkd_nvs_find_q *q);
/* Prepares q to ask for (ns, key, chunk), skipping nothing. */
void fkd_nvs_query(struct fkd_nvs_find_q *q, uint8_t ns, const char *key, uint8_t chunk);
/* Marks the item at `at` (all its span) ERASED. */
enum fkd_err fkd_nvs_erase_item(struct fkd_nvs *n, struct fkd_nvs_pos at,
                                const struct fkd_nvs_entry *e);

/* Makes the erased page p the active page, with the next sequence number. */
enum fkd_err fkd_nvs_activate(struct fkd_nvs *n, uint32_t p);
/* Copies every live item of page `from` into the (fresh, active) page `to`, in order. */
enum fkd_err fkd_nvs_copy_items(struct fkd_nvs *n, uint32_t from, uint32_t to);
/* The number of erased (UNINIT) pages; *first (may be NULL) the first of them. */
unsigned fkd_nvs_count_free(const struct fkd_nvs *n, uint32_t *first);
/* Makes a fresh active page, collecting garbage when only the spare page is left. */
enum fkd_err fkd_nvs_new_page(struct fkd_nvs *n);

#endif
