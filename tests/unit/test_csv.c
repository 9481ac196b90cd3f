/* Unit tests of the shared CSV tokenizer (fleetkey/csv.h): both dialects, line numbers,
 * quoting, comments and empty lines, and every error it reports. */
#include "fleetkey/csv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokenizes (buf, len) into a readable transcript: "L<line>:[field][field]|" per record,
 * then "END" or "ERR<error>@<line>#<field>". Field values are shown with NUL as '@'. */
static void transcript(const char *buf, size_t len, unsigned flags, char *out, size_t size) {
    struct fk_csv c;
    struct fk_csv_field f;
    size_t o = 0;
    fk_csv_init(&c, buf, len, flags);
    out[0] = '\0';
    for (;;) {
        enum fk_csv_status st = fk_csv_next(&c, &f);
        if (st == FK_CSV_END) {
            o += (size_t)snprintf(out + o, size - o, "END");
            return;
        }
        if (st == FK_CSV_ERROR) {
            o += (size_t)snprintf(out + o, size - o, "ERR%d@%ld#%zu", (int)c.error, c.error_line,
                                  c.error_field);
            return;
        }
        char v[256];
        size_t vlen = 0;
        assert_int_equal(fk_csv_field_value(&c, &f, v, sizeof v, &vlen), FK_OK);
        assert_int_equal(vlen, f.len);
        assert_int_equal(v[vlen], '\0');
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] == '\0') {
                v[i] = '@';
            }
        }
        if (f.index == 0) {
            o += (size_t)snprintf(out + o, size - o, "L%ld:", f.line);
        }
        o += (size_t)snprintf(out + o, size - o, "[%s]%s", v, f.last ? "|" : "");
        assert_true(o < size);
    }
}

#define STRICT FK_CSV_STRICT
#define PY (FK_CSV_COMMENTS | FK_CSV_SKIP_EMPTY)

static void check(const char *in, size_t len, unsigned flags, const char *want) {
    char got[2048];
    transcript(in, len, flags, got, sizeof got);
    if (strcmp(got, want) != 0) {
        fail_msg("input '%s': got %s, want %s", in, got, want);
    }
}
#define CHECK(in, flags, want) check(in, sizeof(in) - 1, flags, want)

static void csv_splits_records_and_fields(void **state) {
    (void)state;
    CHECK("a,b\nc,d\n", STRICT, "L1:[a][b]|L2:[c][d]|END");
    CHECK("a,b\r\nc,d", STRICT, "L1:[a][b]|L2:[c][d]|END");
    CHECK("a,\n,b", STRICT, "L1:[a][]|L2:[][b]|END");
    CHECK("a,", PY, "L1:[a][]|END");
    CHECK("", STRICT, "END");
    CHECK("", PY, "END");
}

static void csv_unquotes_and_counts_lines_inside_quotes(void **state) {
    (void)state;
    CHECK("\"a,b\",\"say \"\"hi\"\"\"\nx", STRICT, "L1:[a,b][say \"hi\"]|L2:[x]|END");
    CHECK("\"multi\nline\",z\nnext", STRICT, "L1:[multi\nline][z]|L3:[next]|END");
    /* Strict keeps CR inside quotes and counts only LF; Python reads text mode. */
    CHECK("\"a\r\nb\"\n", STRICT, "L1:[a\r\nb]|END");
    CHECK("\"a\r\nb\"\nc", PY, "L1:[a\nb]|L3:[c]|END");
    CHECK("\"a\rb\"\rc", PY, "L1:[a\nb]|L3:[c]|END");
    CHECK("\"\"", STRICT, "L1:[]|END");
}

static void csv_skips_bom_comments_and_empty_lines_when_asked(void **state) {
    (void)state;
    CHECK("\xEF\xBB\xBF"
          "a\n",
          STRICT, "L1:[a]|END");
    CHECK("\n\na\n", STRICT, "L1:[]|L2:[]|L3:[a]|END");
    CHECK("\n\r\n\ra\n", PY, "L4:[a]|END");
    CHECK("# comment, \"not\" a record\nk,v\n#x", PY, "L2:[k][v]|END");
    CHECK("#x\r\n\nk", PY, "L3:[k]|END");
    CHECK("#x\n", STRICT, "L1:[#x]|END"); /* '#' is data in the device CSV */
    CHECK("k,#v\n", PY, "L1:[k][#v]|END");
}

static void csv_python_dialect_keeps_stray_quotes(void **state) {
    (void)state;
    CHECK("ab\"c,\"x\"y\"z\n", PY, "L1:[ab\"c][xy\"z]|END");
    CHECK("a\0b,\"c\0d\"", PY, "L1:[a@b][c@d]|END");
}

static void csv_rejects_unterminated_quote(void **state) {
    (void)state;
    CHECK("a,b\nc,\"open\nmore", STRICT, "L1:[a][b]|L2:[c]ERR1@2#1");
    CHECK("a\n\"", PY, "L1:[a]|ERR1@2#0");
    CHECK("\"ab\"\"", STRICT, "ERR1@1#0");
}

static void csv_strict_rejects_text_after_closing_quote(void **state) {
    (void)state;
    CHECK("\"a\nb\"c,d", STRICT, "ERR2@2#0");
}

static void csv_strict_rejects_stray_quote(void **state) {
    (void)state;
    CHECK("a,b\"c", STRICT, "L1:[a]ERR3@1#1");
}

static void csv_strict_rejects_nul_outside_quotes(void **state) {
    (void)state;
    CHECK("a,b\0c\n", STRICT, "L1:[a]ERR4@1#1");
    CHECK("\"b\0c\"\n", STRICT, "L1:[b@c]|END"); /* inside quotes it is data */
}

static void csv_strict_rejects_bare_cr(void **state) {
    (void)state;
    CHECK("a\rb", STRICT, "ERR5@1#0");
    CHECK("a\rb", PY, "L1:[a]|L2:[b]|END");
}

static void csv_has_no_line_length_limit(void **state) {
    (void)state;
    size_t n = 1u << 20;
    char *buf = malloc(n + 4);
    assert_non_null(buf);
    buf[0] = '"';
    memset(buf + 1, 'x', n);
    memcpy(buf + 1 + n, "\",y", 3);
    struct fk_csv c;
    struct fk_csv_field f;
    fk_csv_init(&c, buf, n + 4, STRICT);
    assert_int_equal(fk_csv_next(&c, &f), FK_CSV_FIELD);
    assert_int_equal(f.len, n);
    assert_int_equal(f.raw_len, n + 2);
    assert_int_equal(f.last, 0);
    char *v = malloc(n + 1);
    assert_non_null(v);
    assert_int_equal(fk_csv_field_value(&c, &f, v, n, NULL), FK_E_NOSPACE);
    assert_int_equal(fk_csv_field_value(&c, &f, v, n + 1, NULL), FK_OK);
    assert_int_equal(strlen(v), n);
    assert_int_equal(fk_csv_next(&c, &f), FK_CSV_FIELD); /* y */
    assert_int_equal(f.len, 1);
    assert_int_equal(f.last, 1);
    assert_int_equal(fk_csv_next(&c, &f), FK_CSV_END);
    free(v);
    free(buf);
}

static void csv_stays_at_the_end_after_an_error(void **state) {
    (void)state;
    struct fk_csv c;
    struct fk_csv_field f;
    fk_csv_init(&c, "a\"b\nc", 5, STRICT);
    assert_int_equal(fk_csv_next(&c, &f), FK_CSV_ERROR);
    assert_int_equal(fk_csv_next(&c, &f), FK_CSV_END);
    fk_csv_init(&c, NULL, 10, STRICT); /* NULL input reads as empty */
    assert_int_equal(fk_csv_next(&c, &f), FK_CSV_END);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csv_splits_records_and_fields),
        cmocka_unit_test(csv_unquotes_and_counts_lines_inside_quotes),
        cmocka_unit_test(csv_skips_bom_comments_and_empty_lines_when_asked),
        cmocka_unit_test(csv_python_dialect_keeps_stray_quotes),
        cmocka_unit_test(csv_rejects_unterminated_quote),
        cmocka_unit_test(csv_strict_rejects_text_after_closing_quote),
        cmocka_unit_test(csv_strict_rejects_stray_quote),
        cmocka_unit_test(csv_strict_rejects_nul_outside_quotes),
        cmocka_unit_test(csv_strict_rejects_bare_cr),
        cmocka_unit_test(csv_has_no_line_length_limit),
        cmocka_unit_test(csv_stays_at_the_end_after_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
