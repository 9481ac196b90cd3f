/* Fuzz target: the shared CSV tokenizer (fleetkey/csv.h). The first byte picks the flags
 * (dialect, comments, empty lines). Every field must lie inside the input, its value must be
 * exactly f->len bytes and never longer than what was written, and the cursor must move
 * forward: the tokenizer ends on every input. */
#include "fleetkey/csv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (64u << 10)) {
        return 0;
    }
    unsigned flags = data[0] & (FK_CSV_STRICT | FK_CSV_COMMENTS | FK_CSV_SKIP_EMPTY);
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    char *v = malloc(len + 1);
    if (v == NULL) {
        return 0;
    }
    struct fk_csv c;
    struct fk_csv_field f;
    fk_csv_init(&c, buf, len, flags);
    size_t fields = 0;
    long line = 1;
    for (;;) {
        enum fk_csv_status st = fk_csv_next(&c, &f);
        if (st != FK_CSV_FIELD) {
            break;
        }
        if (f.raw < buf || f.raw_len > len || (size_t)(f.raw - buf) > len - f.raw_len ||
            f.len > f.raw_len || f.line < line || c.line < f.line) {
            abort();
        }
        line = f.line;
        size_t vlen = 0;
        memset(v, 0xA5, len + 1);
        if (fk_csv_field_value(&c, &f, v, f.len + 1, &vlen) != FK_OK || vlen != f.len ||
            v[vlen] != '\0') {
            abort();
        }
        if (++fields > len + 1) {
            abort(); /* each field but the last of the input consumes at least one byte */
        }
    }
    free(v);
    return 0;
}
