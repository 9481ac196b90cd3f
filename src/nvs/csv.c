/* The generator's CSV input (key,type,encoding,value), read into a builder.
 *
 * nvs_partition_gen reads its CSV with Python's csv.DictReader after dropping lines that start
 * with '#': columns are found by their header name, fields may be quoted ("a,b ""c"""), quoted
 * fields may hold line breaks, and empty lines are skipped. We follow that, and are stricter
 * where the generator would write an image the device cannot use or would crash: an unknown
 * row type, a key before any namespace, bad hex, an integer that does not fit its type, and
 * keys longer than 15 bytes are errors naming the CSV line.
 *
 * Records and fields come from the shared tokenizer (fleetkey/csv.h) in its Python dialect with
 * comment and empty-line skipping; this file keeps the columns, the row semantics and the
 * messages.
 *
 * Every value may be a secret (a PSK in hex), so every scratch buffer is wiped after use. */
#include "fleetkey/csv.h"
#include "fleetkey/nvs.h"

#include "fkd/nvs_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 16
#define MAX_FILE (1024u * 1024u) /* no valid NVS item is larger than a 1 MiB partition */

struct record {
    char *buf; /* the fields, each NUL-terminated, one after the other */
    size_t cap;
    size_t used;
    size_t start[MAX_FIELDS];
    size_t len[MAX_FIELDS];
    size_t n;
    long line; /* line the record starts on */
};

/* Room for n more bytes in r->buf. Growing wipes the old buffer: it may hold a secret. */
static enum fk_err rec_reserve(struct record *r, size_t n) {
    if (r->cap - r->used >= n) {
        return FK_OK;
    }
    size_t ncap = r->cap ? r->cap : 256;
    while (ncap - r->used < n) {
        ncap *= 2;
    }
    char *nb = malloc(ncap);
    if (nb == NULL) {
        return FK_E_NOMEM;
    }
    if (r->used) {
        memcpy(nb, r->buf, r->used);
    }
    fk_free_secret(r->buf, r->cap);
    r->buf = nb;
    r->cap = ncap;
    return FK_OK;
}

/* Reads the next non-empty, non-comment record (fleetkey/csv.h, Python dialect). Returns
 * FK_OK with r->n == 0 at the end of input. */
static enum fk_err next_record(struct fk_csv *csv, struct record *r, const char *name,
                               struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    r->used = 0;
    r->n = 0;
    for (;;) {
        struct fk_csv_field f;
        enum fk_csv_status st = fk_csv_next(csv, &f);
        if (st == FK_CSV_END) {
            break;
        }
        FK_ENSURE(st == FK_CSV_FIELD,
                  fk_diag_at(diag, FK_E_PARSE, name, csv->record_line,
                             "quoted field is not closed before the end of input"));
        r->line = f.line;
        FK_ENSURE(r->n < MAX_FIELDS,
                  fk_diag_at(diag, FK_E_PARSE, name, r->line, "more than %d columns", MAX_FIELDS));
        FK_GUARD(rec_reserve(r, f.len + 1));
        FK_GUARD(fk_csv_field_value(csv, &f, r->buf + r->used, r->cap - r->used, NULL));
        r->start[r->n] = r->used;
        r->len[r->n] = f.len;
        r->n++;
        r->used += f.len + 1;
        if (f.last) {
            break;
        }
    }
    rc = FK_OK;
out:
    return rc;
}

static const char *field(const struct record *r, int idx, size_t *flen) {
    if (idx < 0 || (size_t)idx >= r->n) {
        *flen = 0;
        return NULL;
    }
    *flen = r->len[idx];
    return r->buf + r->start[idx];
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Decimal integer as Python's int() reads it: optional surrounding whitespace and sign. */
static enum fk_err parse_int(const char *s, size_t n, int *neg, uint64_t *mag) {
    size_t i = 0;
    while (i < n && is_space(s[i])) {
        i++;
    }
    while (n > i && is_space(s[n - 1])) {
        n--;
    }
    *neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        *neg = s[i] == '-';
        i++;
    }
    if (i == n) {
        return FK_E_PARSE;
    }
    uint64_t v = 0;
    int overflow = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return FK_E_PARSE;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10u) {
            overflow = 1;
        } else {
            v = v * 10u + d;
        }
    }
    *mag = v;
    return overflow ? FK_E_RANGE : FK_OK;
}

struct enc {
    const char *name;
    uint8_t type; /* integer type, or 0 for the variable-length encodings */
};

static const struct enc encodings[] = {
    {"u8", FKD_NVS_U8},   {"i8", FKD_NVS_I8},   {"u16", FKD_NVS_U16}, {"i16", FKD_NVS_I16},
    {"u32", FKD_NVS_U32}, {"i32", FKD_NVS_I32}, {"u64", FKD_NVS_U64}, {"i64", FKD_NVS_I64},
    {"string", 0},        {"hex2bin", 0},       {"base64", 0},        {"binary", 0},
};

static const struct enc *find_encoding(const char *s) {
    for (size_t i = 0; i < sizeof encodings / sizeof encodings[0]; i++) {
        if (strcmp(encodings[i].name, s) == 0) {
            return &encodings[i];
        }
    }
    return NULL;
}

/* Builder errors carry only a message; add the CSV line to it. */
static enum fk_err at_line(struct fk_diag *diag, enum fk_err rc, const char *name, long line) {
    if (diag != NULL && rc != FK_OK) {
        snprintf(diag->file, sizeof diag->file, "%s", name);
        diag->line = line;
        if (diag->msg[0] == '\0') {
            snprintf(diag->msg, sizeof diag->msg, "%s", fk_strerror(rc));
        }
    }
    return rc;
}

static enum fk_err add_int_row(struct fk_nvs_builder *b, const char *key, const struct enc *e,
                               const char *v, size_t vlen, const char *name, long line,
                               struct fk_diag *diag) {
    int neg = 0;
    uint64_t mag = 0;
    enum fk_err rc = parse_int(v, vlen, &neg, &mag);
    int is_signed = (e->type & 0x10u) != 0;
    if (rc == FK_E_PARSE) {
        return fk_diag_at(diag, FK_E_PARSE, name, line, "key '%s': '%.40s' is not a decimal %s",
                          key, v, e->name);
    }
    if (rc == FK_E_RANGE || (neg && !is_signed && mag != 0) ||
        (is_signed && !neg && mag > (uint64_t)INT64_MAX) ||
        (is_signed && neg && mag > (uint64_t)INT64_MAX + 1u)) {
        return fk_diag_at(diag, FK_E_RANGE, name, line, "key '%s': %.40s does not fit %s", key,
                          v, e->name);
    }
    int64_t sv = 0;
    if (is_signed) {
        sv = neg ? (mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
    rc = fk_nvs_builder_add_int(b, key, e->type, sv, mag, diag);
    if (rc == FK_E_RANGE) {
        return fk_diag_at(diag, FK_E_RANGE, name, line, "key '%s': %.40s does not fit %s", key,
                          v, e->name);
    }
    return at_line(diag, rc, name, line);
}

/* Adds a variable-length item from raw bytes (a CSV field or a file's content). */
static enum fk_err add_var_row(struct fk_nvs_builder *b, const char *key, const char *encname,
                               const uint8_t *v, size_t vlen, const char *name, long line,
                               struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *bin = NULL;
    size_t bin_cap = 0;
    size_t bin_len = 0;
    char *str = NULL;
    if (strcmp(encname, "string") == 0) {
        FK_ENSURE(memchr(v, '\0', vlen) == NULL,
                  fk_diag_at(diag, FK_E_PARSE, name, line, "key '%s': string holds a NUL byte",
                             key));
        str = malloc(vlen + 1);
        FK_ENSURE(str != NULL, FK_E_NOMEM);
        if (vlen) {
            memcpy(str, v, vlen);
        }
        str[vlen] = '\0';
        rc = fk_nvs_builder_add_str(b, key, str, diag);
        FK_GUARD(at_line(diag, rc, name, line));
    } else if (strcmp(encname, "binary") == 0) {
        rc = fk_nvs_builder_add_blob(b, key, v, vlen, diag);
        FK_GUARD(at_line(diag, rc, name, line));
    } else if (strcmp(encname, "hex2bin") == 0) {
        const char *s = (const char *)v;
        size_t i = 0;
        size_t n = vlen;
        while (i < n && is_space(s[i])) { /* the generator strips the value first */
            i++;
        }
        while (n > i && is_space(s[n - 1])) {
            n--;
        }
        FK_ENSURE((n - i) % 2 == 0, fk_diag_at(diag, FK_E_PARSE, name, line,
                                               "key '%s': hex2bin value has an odd number (%zu) "
                                               "of digits",
                                               key, n - i));
        bin_cap = (n - i) / 2 + 1;
        bin = malloc(bin_cap);
        FK_ENSURE(bin != NULL, FK_E_NOMEM);
        size_t bad = 0;
        rc = fk_hex_decode(s + i, n - i, bin, bin_cap, &bin_len, &bad);
        FK_ENSURE(rc == FK_OK, fk_diag_at(diag, FK_E_PARSE, name, line,
                                          "key '%s': hex2bin value has a non-hex character at "
                                          "position %zu",
                                          key, bad + i + 1));
        rc = fk_nvs_builder_add_blob(b, key, bin, bin_len, diag);
        FK_GUARD(at_line(diag, rc, name, line));
    } else { /* base64 */
        bin_cap = vlen / 4 * 3 + 4;
        bin = malloc(bin_cap);
        FK_ENSURE(bin != NULL, FK_E_NOMEM);
        rc = fk_base64_decode((const char *)v, vlen, bin, bin_cap, &bin_len);
        FK_ENSURE(rc == FK_OK, fk_diag_at(diag, FK_E_PARSE, name, line,
                                          "key '%s': value is not valid base64", key));
        rc = fk_nvs_builder_add_blob(b, key, bin, bin_len, diag);
        FK_GUARD(at_line(diag, rc, name, line));
    }
    rc = FK_OK;
out:
    fk_free_secret(bin, bin_cap);
    fk_free_secret(str, str != NULL ? vlen + 1 : 0);
    return rc;
}

static enum fk_err file_row(struct fk_nvs_builder *b, const char *key, const char *encname,
                            const char *path, const char *base_dir, const char *name,
                            long line, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *full = NULL;
    uint8_t *data = NULL;
    size_t dlen = 0;
    struct fk_diag fd;
    fk_diag_init(&fd);
    FK_ENSURE(base_dir != NULL, fk_diag_at(diag, FK_E_POLICY, name, line,
                                           "key '%s': file rows are not allowed here", key));
    FK_ENSURE(path[0] != '\0',
              fk_diag_at(diag, FK_E_PARSE, name, line, "key '%s': file row without a path", key));
    if (path[0] == '/') {
        full = strdup(path);
        FK_ENSURE(full != NULL, FK_E_NOMEM);
    } else {
        FK_GUARD(fk_path_join(base_dir, path, "", &full));
    }
    rc = fk_file_read(full, MAX_FILE, &data, &dlen, &fd);
    if (rc != FK_OK) {
        char why[600];
        fk_diag_format(&fd, why, sizeof why);
        rc = fk_diag_at(diag, rc == FK_E_TOOBIG ? FK_E_TOOBIG : FK_E_IO, name, line,
                        "key '%s': cannot read file '%s': %s", key, full, why);
        goto out;
    }
    FK_GUARD(add_var_row(b, key, encname, data, dlen, name, line, diag));
    rc = FK_OK;
out:
    fk_free_secret(data, dlen + 1);
    free(full);
    return rc;
}

/* nvs_partition_gen's blob_fill(N;0xPP) and blob_sz_fill(N;0xPP) encodings: the value's
 * bytes padded with 0xPP to N bytes, the second one preceded by the value's length as a
 * little-endian u32. Both are stored as blobs. Returns 1 and fills n/pad/with_size when enc
 * has that form (N decimal, PP two hex digits), 0 otherwise. */
static int parse_fill(const char *enc, size_t *n, uint8_t *pad, int *with_size) {
    const char *p;
    if (strncmp(enc, "blob_fill(", 10) == 0) {
        p = enc + 10;
        *with_size = 0;
    } else if (strncmp(enc, "blob_sz_fill(", 13) == 0) {
        p = enc + 13;
        *with_size = 1;
    } else {
        return 0;
    }
    size_t v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9' && p - start < 7) {
        v = v * 10u + (size_t)(*p - '0');
        p++;
    }
    if (p == start || p[0] != ';' || p[1] != '0' || (p[2] != 'x' && p[2] != 'X')) {
        return 0;
    }
    uint8_t b = 0;
    size_t got = 0;
    if (fk_hex_decode(p + 3, 2, &b, 1, &got, NULL) != FK_OK || p[5] != ')' || p[6] != '\0') {
        return 0;
    }
    *n = v;
    *pad = b;
    return 1;
}

static enum fk_err add_fill_row(struct fk_nvs_builder *b, const char *key, const char *enc,
                                const char *v, size_t vlen, const char *name, long line,
                                struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    size_t n = 0;
    uint8_t pad = 0;
    int with_size = 0;
    uint8_t *data = NULL;
    size_t dlen = 0;
    FK_ENSURE(parse_fill(enc, &n, &pad, &with_size),
              fk_diag_at(diag, FK_E_PARSE, name, line,
                         "key '%s': bad encoding '%.40s' (expected blob_fill(N;0xPP) or "
                         "blob_sz_fill(N;0xPP))",
                         key, enc));
    FK_ENSURE(vlen <= n, fk_diag_at(diag, FK_E_RANGE, name, line,
                                    "key '%s': value of %zu bytes is longer than %s's %zu", key,
                                    vlen, with_size ? "blob_sz_fill" : "blob_fill", n));
    dlen = n + (with_size ? 4u : 0u);
    data = malloc(dlen ? dlen : 1);
    FK_ENSURE(data != NULL, FK_E_NOMEM);
    size_t off = 0;
    if (with_size) {
        fk_store_le32(data, (uint32_t)vlen);
        off = 4;
    }
    if (vlen) {
        memcpy(data + off, v, vlen);
    }
    memset(data + off + vlen, pad, n - vlen);
    rc = fk_nvs_builder_add_blob(b, key, data, dlen, diag);
    FK_GUARD(at_line(diag, rc, name, line));
    rc = FK_OK;
out:
    fk_free_secret(data, dlen ? dlen : 1);
    return rc;
}

enum fk_err fk_nvs_csv_load(struct fk_nvs_builder *b, const char *buf, size_t len,
                            const char *csv_name, const char *base_dir, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct record r;
    memset(&r, 0, sizeof r);
    const char *name = csv_name != NULL ? csv_name : "<csv>";
    struct fk_csv csv;
    int col_key = -1;
    int col_type = -1;
    int col_enc = -1;
    int col_val = -1;
    FK_ENSURE(b != NULL && (buf != NULL || len == 0), FK_E_ARG);
    /* The generator filters '#' lines, then csv.DictReader skips empty rows; the UTF-8 byte
     * order mark some editors add is skipped by the tokenizer. */
    fk_csv_init(&csv, buf, len, FK_CSV_COMMENTS | FK_CSV_SKIP_EMPTY);

    FK_GUARD(next_record(&csv, &r, name, diag));
    FK_ENSURE(r.n > 0, fk_diag_at(diag, FK_E_PARSE, name, csv.line,
                                  "empty CSV: expected the header key,type,encoding,value"));
    for (size_t i = 0; i < r.n; i++) {
        const char *h = r.buf + r.start[i];
        if (strcmp(h, "key") == 0) {
            col_key = (int)i;
        } else if (strcmp(h, "type") == 0) {
            col_type = (int)i;
        } else if (strcmp(h, "encoding") == 0) {
            col_enc = (int)i;
        } else if (strcmp(h, "value") == 0) {
            col_val = (int)i;
        }
    }
    FK_ENSURE(col_key >= 0 && col_type >= 0 && col_enc >= 0 && col_val >= 0,
              fk_diag_at(diag, FK_E_PARSE, name, r.line,
                         "header must name the columns key,type,encoding,value"));

    for (;;) {
        FK_GUARD(next_record(&csv, &r, name, diag));
        if (r.n == 0) {
            break;
        }
        size_t klen = 0;
        size_t tlen = 0;
        size_t elen = 0;
        size_t vlen = 0;
        const char *key = field(&r, col_key, &klen);
        const char *type = field(&r, col_type, &tlen);
        const char *enc = field(&r, col_enc, &elen);
        const char *val = field(&r, col_val, &vlen);
        FK_ENSURE(key != NULL && klen > 0,
                  fk_diag_at(diag, FK_E_PARSE, name, r.line, "row without a key"));
        FK_ENSURE(memchr(key, '\0', klen) == NULL,
                  fk_diag_at(diag, FK_E_PARSE, name, r.line, "key holds a NUL byte"));
        FK_ENSURE(klen <= FKD_NVS_KEY_MAX,
                  fk_diag_at(diag, FK_E_RANGE, name, r.line,
                             "key '%.40s' is %zu characters long; NVS keys are at most %u", key,
                             klen, FKD_NVS_KEY_MAX));
        FK_ENSURE(type != NULL,
                  fk_diag_at(diag, FK_E_PARSE, name, r.line, "key '%s': no type column", key));
        if (strcmp(type, "namespace") == 0) {
            rc = fk_nvs_builder_namespace(b, key, diag);
            FK_GUARD(at_line(diag, rc, name, r.line));
            continue;
        }
        FK_ENSURE(strcmp(type, "data") == 0 || strcmp(type, "file") == 0,
                  fk_diag_at(diag, FK_E_PARSE, name, r.line,
                             "key '%s': unknown type '%.40s' (expected namespace, data or file)",
                             key, type));
        if (enc != NULL && strcmp(type, "data") == 0 &&
            (strncmp(enc, "blob_fill(", 10) == 0 || strncmp(enc, "blob_sz_fill(", 13) == 0)) {
            FK_ENSURE(val != NULL, fk_diag_at(diag, FK_E_PARSE, name, r.line,
                                              "key '%s': no value column", key));
            FK_GUARD(add_fill_row(b, key, enc, val, vlen, name, r.line, diag));
            continue;
        }
        const struct enc *e = enc != NULL ? find_encoding(enc) : NULL;
        FK_ENSURE(e != NULL,
                  fk_diag_at(diag, FK_E_PARSE, name, r.line,
                             "key '%s': unknown encoding '%.40s' (expected u8, i8, u16, i16, "
                             "u32, i32, u64, i64, string, hex2bin, base64, binary, blob_fill(N;0xPP) or "
                             "blob_sz_fill(N;0xPP))",
                             key, enc != NULL ? enc : ""));
        FK_ENSURE(val != NULL,
                  fk_diag_at(diag, FK_E_PARSE, name, r.line, "key '%s': no value column", key));
        if (strcmp(type, "file") == 0) {
            FK_ENSURE(e->type == 0, fk_diag_at(diag, FK_E_PARSE, name, r.line,
                                               "key '%s': a file row cannot use encoding %s",
                                               key, e->name));
            FK_GUARD(file_row(b, key, e->name, val, base_dir, name, r.line, diag));
        } else if (e->type != 0) {
            FK_GUARD(add_int_row(b, key, e, val, vlen, name, r.line, diag));
        } else {
            FK_GUARD(add_var_row(b, key, e->name, (const uint8_t *)val, vlen, name, r.line,
                                 diag));
        }
    }
    rc = FK_OK;
out:
    fk_free_secret(r.buf, r.cap);
    return rc;
}
