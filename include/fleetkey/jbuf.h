/* fleetkey common: JSON printed straight into one growing buffer, without a cJSON tree.
 *
 * For the large documents the server rewrites every second (a rotation plan of 10,000 devices):
 * a tree costs a malloc per value and a second pass to print. The text may hold secrets (staged
 * PSKs), so the buffer never goes through realloc, which could leave a copy behind: a larger
 * buffer takes over and the old one is wiped. Out of memory, the buffer turns bad: every later
 * call does nothing and fk_jbuf_take returns NULL. Not thread-safe (one buffer, one thread). */
#ifndef FLEETKEY_JBUF_H
#define FLEETKEY_JBUF_H

#include <stddef.h>

/* Caller-owned; start it zeroed: struct fk_jbuf t = {0}. */
struct fk_jbuf {
    char *b;    /* NUL-terminated after the first byte */
    size_t len; /* bytes of text */
    size_t cap; /* bytes allocated */
    int bad;    /* out of memory: the text is lost */
};

/* Makes room for more bytes (and the NUL) at once: a caller that knows the size saves the
 * copies of the growth. */
void fk_jbuf_reserve(struct fk_jbuf *t, size_t more);
/* Appends n bytes of s (borrowed), as they are. */
void fk_jbuf_put(struct fk_jbuf *t, const char *s, size_t n);
/* Appends the NUL-terminated s, as it is. */
void fk_jbuf_puts(struct fk_jbuf *t, const char *s);
/* Appends v in decimal. */
void fk_jbuf_int(struct fk_jbuf *t, long long v);
/* Appends s as a JSON string: quoted, with '"', '\' and the control characters escaped
 * (RFC 8259 section 7); other bytes, UTF-8 included, as they are (as cJSON prints them). */
void fk_jbuf_str(struct fk_jbuf *t, const char *s);
/* The text (malloc'd, NUL-terminated; the caller frees it, with fk_free_secret when it may be
 * secret) and its length in *len (may be NULL); NULL when the buffer went bad (then wiped and
 * freed). t is empty afterwards either way. */
char *fk_jbuf_take(struct fk_jbuf *t, size_t *len);
/* Wipes and frees what t holds; t is empty afterwards. */
void fk_jbuf_free(struct fk_jbuf *t);

#endif
