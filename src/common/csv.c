/* The CSV tokenizer shared by the device CSV (src/batch) and the NVS CSV (src/nvs/csv.c); the
 * dialects are described in fleetkey/csv.h.
 *
 * fk_csv_next() finds where a field ends, counts lines and computes the length of the value
 * without copying anything; fk_csv_field_value() walks the same slice again to write the
 * value. Both walks follow the same rules, so the length is exact. Fields may hold secrets
 * (a Wi-Fi password, a PSK in hex): nothing is copied except into the caller's buffer. */
#include "fleetkey/csv.h"

#include <string.h>

void fk_csv_init(struct fk_csv *c, const char *buf, size_t len, unsigned flags) {
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->len = buf != NULL ? len : 0;
    c->line = 1;
    c->flags = flags;
    if (c->len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        c->pos = 3; /* a UTF-8 byte order mark, as spreadsheet programs and editors write it */
    }
}

static enum fk_csv_status fail(struct fk_csv *c, enum fk_csv_error e, long line) {
    c->error = e;
    c->error_line = line;
    c->error_field = c->field_index;
    c->pos = c->len; /* nothing after an error can be trusted */
    c->in_record = 0;
    return FK_CSV_ERROR;
}

/* Skips comment and empty lines between records, as the flags ask. */
static void skip_between_records(struct fk_csv *c) {
    const char *b = c->buf;
    int strict = (c->flags & FK_CSV_STRICT) != 0;
    while (c->pos < c->len) {
        size_t p = c->pos;
        if ((c->flags & FK_CSV_COMMENTS) && b[p] == '#') {
            /* nvs_partition_gen drops these lines before its CSV reader sees them. */
            while (p < c->len && b[p] != '\n' && b[p] != '\r') {
                p++;
            }
            c->pos = p;
            if (p >= c->len) {
                return;
            }
        } else if (!(c->flags & FK_CSV_SKIP_EMPTY)) {
            return;
        }
        if (b[p] == '\r' && p + 1 < c->len && b[p + 1] == '\n') {
            p++;
        } else if (b[p] != '\n' && !(b[p] == '\r' && !strict)) {
            return; /* a record starts here */
        }
        c->pos = p + 1;
        c->line++;
    }
}

enum fk_csv_status fk_csv_next(struct fk_csv *c, struct fk_csv_field *f) {
    const char *b = c->buf;
    int strict = (c->flags & FK_CSV_STRICT) != 0;
    if (!c->in_record) {
        skip_between_records(c);
        if (c->pos >= c->len) {
            return FK_CSV_END;
        }
        c->in_record = 1;
        c->record_line = c->line;
        c->field_index = 0;
    }
    size_t p = c->pos;
    size_t vlen = 0;
    memset(f, 0, sizeof *f);
    f->raw = b + p;
    f->index = c->field_index;
    f->line = c->record_line;
    if (p < c->len && b[p] == '"') { /* a quote opens a field only at its start */
        long opened = c->line;
        p++;
        for (;;) {
            if (p >= c->len) {
                return fail(c, FK_CSV_E_UNCLOSED, opened);
            }
            if (b[p] == '"') {
                if (p + 1 < c->len && b[p + 1] == '"') { /* RFC 4180 2.7: "" is one quote */
                    vlen++;
                    p += 2;
                    continue;
                }
                p++;
                break;
            }
            if (strict) {
                c->line += b[p] == '\n';
            } else if (b[p] == '\n' || b[p] == '\r') {
                /* Text mode: CR LF, CR and LF are each one line end, read as LF. */
                if (b[p] == '\r' && p + 1 < c->len && b[p + 1] == '\n') {
                    p++;
                }
                c->line++;
            }
            vlen++;
            p++;
        }
        if (strict && p < c->len && b[p] != ',' && b[p] != '\n' && b[p] != '\r') {
            return fail(c, FK_CSV_E_AFTER_QUOTE, c->line);
        }
    }
    /* An unquoted field, or (Python dialect) what follows a closing quote: kept literally. */
    while (p < c->len && b[p] != ',' && b[p] != '\n' && b[p] != '\r') {
        if (strict && b[p] == '"') {
            return fail(c, FK_CSV_E_STRAY_QUOTE, c->line);
        }
        if (strict && b[p] == '\0') {
            return fail(c, FK_CSV_E_NUL, c->line);
        }
        vlen++;
        p++;
    }
    f->raw_len = (size_t)(b + p - f->raw);
    f->len = vlen;
    if (p >= c->len) {
        f->last = 1;
    } else if (b[p] == ',') {
        p++;
    } else {
        if (b[p] == '\r') {
            if (p + 1 < c->len && b[p + 1] == '\n') {
                p++;
            } else if (strict) {
                return fail(c, FK_CSV_E_BARE_CR, c->line);
            }
        }
        p++;
        c->line++;
        f->last = 1;
    }
    c->pos = p;
    c->field_index++;
    c->in_record = !f->last;
    return FK_CSV_FIELD;
}

enum fk_err fk_csv_field_value(const struct fk_csv *c, const struct fk_csv_field *f, char *out,
                               size_t out_size, size_t *out_len) {
    if (out_size < f->len + 1) {
        return FK_E_NOSPACE;
    }
    const char *s = f->raw;
    size_t i = 0;
    size_t o = 0;
    if (f->raw_len > 0 && s[0] == '"') {
        for (i = 1; i < f->raw_len; i++) {
            char ch = s[i];
            if (ch == '"') {
                if (i + 1 < f->raw_len && s[i + 1] == '"') {
                    out[o++] = '"';
                    i++;
                    continue;
                }
                i++;
                break;
            }
            if (!(c->flags & FK_CSV_STRICT) && ch == '\r') {
                if (i + 1 < f->raw_len && s[i + 1] == '\n') {
                    i++;
                }
                ch = '\n';
            }
            out[o++] = ch;
        }
    }
    for (; i < f->raw_len; i++) {
        out[o++] = s[i];
    }
    out[o] = '\0';
    if (out_len != NULL) {
        *out_len = o;
    }
    return FK_OK;
}
