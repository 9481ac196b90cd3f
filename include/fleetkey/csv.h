/* fleetkey csv: the one CSV tokenizer behind the device CSV of `provision-keys batch`
 * (src/batch) and the nvs_partition_gen CSV (src/nvs/csv.c).
 *
 * It cuts (buf, len) into records and fields, one field at a time, and keeps the line
 * numbers messages need; it never allocates and never interprets a field: each reader keeps
 * its own columns, field semantics and messages. Fields come back as slices of buf as
 * written (quotes included); fk_csv_field_value() copies the value out with the quoting
 * undone. Two dialects, chosen by flags:
 *
 *   strict (FK_CSV_STRICT, the device CSV, RFC 4180): a quote opens a field only at its
 *     start; a quote anywhere else in an unquoted field, anything but ',' or a line end
 *     after a closing quote, a NUL byte in an unquoted field and a CR not followed by LF are
 *     errors. Inside quotes every byte is kept as is (CR too); only LF counts as a line.
 *   Python (no FK_CSV_STRICT, nvs_partition_gen's csv.DictReader on a file opened in text
 *     mode): a quote opens a field only at its start; text after a closing quote and stray
 *     quotes are kept literally; CR, LF and CR LF all end a line, and inside quotes they
 *     become LF.
 *
 * In both, "" inside a quoted field is one quote, a quoted field may span lines, a UTF-8
 * byte order mark at the very start is skipped, and a quoted field still open at the end of
 * input is an error. There is no line length limit; callers bound the input size. */
#ifndef FLEETKEY_CSV_H
#define FLEETKEY_CSV_H

#include "fleetkey/common.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    FK_CSV_STRICT = 1 << 0,     /* RFC 4180 as above; otherwise Python's csv module */
    FK_CSV_COMMENTS = 1 << 1,   /* lines starting with '#' between records are skipped */
    FK_CSV_SKIP_EMPTY = 1 << 2, /* empty lines between records are skipped, not records */
};

/* What went wrong (fk_csv_next's FK_CSV_ERROR). */
enum fk_csv_error {
    FK_CSV_E_NONE,
    FK_CSV_E_UNCLOSED,    /* a quoted field is still open at the end of input */
    FK_CSV_E_AFTER_QUOTE, /* strict: not ',' or a line end after a closing quote */
    FK_CSV_E_STRAY_QUOTE, /* strict: a quote inside an unquoted field */
    FK_CSV_E_NUL,         /* strict: a NUL byte in an unquoted field */
    FK_CSV_E_BARE_CR,     /* strict: CR not followed by LF */
};

/* A cursor over one input. Fields are private to csv.c except the error report. */
struct fk_csv {
    const char *buf;
    size_t len;
    size_t pos;
    long line; /* physical line at pos, 1-based */
    unsigned flags;
    int in_record;      /* a field of the current record is still to come */
    long record_line;   /* line the current record starts on */
    size_t field_index; /* 0-based index of the next field of the current record */
    /* After FK_CSV_ERROR: */
    enum fk_csv_error error;
    long error_line;    /* the line of the problem; for FK_CSV_E_UNCLOSED, where the quote opened */
    size_t error_field; /* 0-based index of the field it is in */
};

/* One field: a slice of the input. */
struct fk_csv_field {
    const char *raw; /* the field as written, quotes included; points into buf */
    size_t raw_len;
    size_t len;   /* length of its value (fk_csv_field_value), <= raw_len */
    size_t index; /* 0-based position in its record */
    long line;    /* line its record starts on */
    int last;     /* 1 when it is the last field of its record */
};

enum fk_csv_status { FK_CSV_FIELD, FK_CSV_END, FK_CSV_ERROR };

/* Starts reading buf (len bytes; borrowed, must outlive the cursor) with the FK_CSV_* flags.
 * Skips a UTF-8 byte order mark at the start. Cannot fail. */
void fk_csv_init(struct fk_csv *c, const char *buf, size_t len, unsigned flags);

/* The next field. FK_CSV_FIELD with *f set (f->last says whether its record ends with it);
 * FK_CSV_END when no record is left (only ever between records: input ending inside a record
 * ends that record's last field); FK_CSV_ERROR with c->error, c->error_line and
 * c->error_field set, after which the cursor must not be used again. An empty line, when not
 * skipped, is a record of one empty field. Never allocates. Thread-safe for distinct cursors. */
FK_MUST_CHECK enum fk_csv_status fk_csv_next(struct fk_csv *c, struct fk_csv_field *f);

/* Copies f's value (quotes removed, "" as one quote, line ends inside quotes as the dialect
 * says) into out and NUL-terminates it; *out_len (may be NULL) receives f->len. The value may
 * itself hold NUL bytes (inside quotes). c must be the cursor f came from. FK_OK, or
 * FK_E_NOSPACE when out_size < f->len + 1. */
FK_MUST_CHECK enum fk_err fk_csv_field_value(const struct fk_csv *c, const struct fk_csv_field *f,
                                             char *out, size_t out_size, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
