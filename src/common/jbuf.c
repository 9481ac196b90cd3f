/* JSON printed straight into one buffer: see fleetkey/jbuf.h (jbuf.c). */
#include "fleetkey/jbuf.h"

#include "fleetkey/common.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fk_jbuf_reserve(struct fk_jbuf *t, size_t more) {
    if (t->bad || (t->cap > t->len && t->cap - t->len > more)) {
        return; /* room for more bytes and the NUL */
    }
    size_t cap = t->cap > 0 ? t->cap : 4096;
    while (cap - t->len <= more) {
        if (cap > SIZE_MAX / 2) {
            fk_jbuf_free(t);
            t->bad = 1;
            return;
        }
        cap *= 2;
    }
    char *b = malloc(cap);
    if (b == NULL) {
        fk_jbuf_free(t);
        t->bad = 1;
        return;
    }
    if (t->b != NULL) {
        memcpy(b, t->b, t->len + 1);
        fk_free_secret(t->b, t->cap); /* not realloc: the old copy may be secret */
    } else {
        b[0] = '\0';
    }
    t->b = b;
    t->cap = cap;
}

void fk_jbuf_put(struct fk_jbuf *t, const char *s, size_t n) {
    fk_jbuf_reserve(t, n);
    if (!t->bad) {
        memcpy(t->b + t->len, s, n);
        t->len += n;
        t->b[t->len] = '\0';
    }
}

void fk_jbuf_puts(struct fk_jbuf *t, const char *s) {
    fk_jbuf_put(t, s, strlen(s));
}

void fk_jbuf_int(struct fk_jbuf *t, long long v) {
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    fk_jbuf_put(t, num, (size_t)n);
}

void fk_jbuf_str(struct fk_jbuf *t, const char *s) {
    fk_jbuf_put(t, "\"", 1);
    for (const char *run = s;; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch != '\0' && ch != '"' && ch != '\\' && ch >= 0x20) {
            continue;
        }
        fk_jbuf_put(t, run, (size_t)(s - run)); /* the run of plain bytes before ch */
        if (ch == '\0') {
            break;
        }
        char esc[8];
        int n = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch)
                                        : snprintf(esc, sizeof esc, "\\u%04x", ch);
        fk_jbuf_put(t, esc, (size_t)n);
        run = s + 1;
    }
    fk_jbuf_put(t, "\"", 1);
}

char *fk_jbuf_take(struct fk_jbuf *t, size_t *len) {
    if (len != NULL) {
        *len = 0;
    }
    if (t->bad || t->b == NULL) {
        fk_jbuf_reserve(t, 0); /* an empty text is "" */
    }
    if (t->bad) {
        t->bad = 0;
        return NULL;
    }
    char *b = t->b;
    if (len != NULL) {
        *len = t->len;
    }
    t->b = NULL;
    t->len = t->cap = 0;
    return b;
}

void fk_jbuf_free(struct fk_jbuf *t) {
    if (t->b != NULL) {
        fk_free_secret(t->b, t->cap);
    }
    t->b = NULL;
    t->len = t->cap = 0;
}
