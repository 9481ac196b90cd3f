/* Unit tests of the common module: error table, CRC32 variants, hex/base64 (valid and
 * invalid), constant-time compare, fingerprints and redaction, atomic file writes, array
 * growth. */
#include "fleetkey/common.h"
#include "fleetkey/jbuf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmpdir(void) {
    static char dir[4096];
    const char *base = getenv("FK_TMP");
    snprintf(dir, sizeof dir, "%s", base != NULL ? base : "/tmp/fk_test_common");
    assert_int_equal(fk_mkdirs(dir, 0700, NULL), FK_OK);
    return dir;
}

static void strerror_covers_every_code(void **state) {
    (void)state;
    for (int i = 0; i < FK_ERR_COUNT; i++) {
        assert_non_null(fk_strerror((enum fk_err)i));
        assert_true(strncmp(fk_errname((enum fk_err)i), "FK_", 3) == 0);
    }
    assert_string_equal(fk_strerror((enum fk_err)9999), "unknown error");
    assert_string_equal(fk_errname(FK_E_CRC), "FK_E_CRC");
}

static void crc32_matches_esp_idf_and_zlib_check_values(void **state) {
    (void)state;
    const char *s = "123456789";
    assert_int_equal(fk_crc32_le(0xFFFFFFFFu, s, 9), 0xD202D277u); /* NVS variant */
    assert_int_equal(fk_crc32_le(0, s, 9), 0xCBF43926u);           /* standard CRC-32 */
    /* Chaining over two halves equals one pass (NVS entries are CRC'd in two pieces). */
    uint32_t c = fk_crc32_le(0xFFFFFFFFu, s, 4);
    assert_int_equal(fk_crc32_le(c, s + 4, 5), 0xD202D277u);
}

static void hex_round_trip_and_rejects_bad_digits(void **state) {
    (void)state;
    uint8_t in[] = {0x00, 0x7f, 0x80, 0xff};
    char hex[9];
    assert_int_equal(fk_hex_encode(in, 4, hex, sizeof hex), FK_OK);
    assert_string_equal(hex, "007f80ff");
    assert_int_equal(fk_hex_encode(in, 4, hex, 8), FK_E_NOSPACE);
    uint8_t out[4];
    size_t n = 0;
    size_t bad = 0;
    assert_int_equal(fk_hex_decode("007F80fF", 8, out, 4, &n, &bad), FK_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, in, 4);
    assert_int_equal(fk_hex_decode("007", 3, out, 4, &n, &bad), FK_E_PARSE);
    assert_int_equal(fk_hex_decode("00g0", 4, out, 4, &n, &bad), FK_E_PARSE);
    assert_int_equal(bad, 2);
    assert_int_equal(fk_hex_decode("0000000000", 10, out, 4, &n, &bad), FK_E_NOSPACE);
}

static void parse_ulong_takes_bounded_decimal_only(void **state) {
    (void)state;
    unsigned long v = 7;
    assert_int_equal(fk_parse_ulong("0", 10, &v), FK_OK);
    assert_int_equal(v, 0);
    assert_int_equal(fk_parse_ulong("65535", 65535, &v), FK_OK);
    assert_int_equal(v, 65535);
    v = 7;
    const char *bad[] = {"65536", "", "-1", "12x", "0x10", "1 ", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fk_parse_ulong(bad[i], 65535, &v), FK_E_ARG);
        assert_int_equal(v, 7); /* untouched on failure */
    }
    assert_int_equal(fk_parse_ulong(NULL, 65535, &v), FK_E_ARG);
}

static void base64_round_trip_and_rejects_garbage(void **state) {
    (void)state;
    const char *cases[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
                              {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                              {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char enc[16];
        uint8_t dec[16];
        size_t n = 99;
        assert_int_equal(fk_base64_encode(cases[i][0], strlen(cases[i][0]), enc, sizeof enc),
                         FK_OK);
        assert_string_equal(enc, cases[i][1]);
        assert_int_equal(fk_base64_decode(enc, strlen(enc), dec, sizeof dec, &n), FK_OK);
        assert_int_equal(n, strlen(cases[i][0]));
        assert_memory_equal(dec, cases[i][0], n);
    }
    uint8_t dec[16];
    size_t n;
    assert_int_equal(fk_base64_decode("Zm9v\nYmFy", 9, dec, sizeof dec, &n), FK_OK);
    assert_int_equal(n, 6);
    assert_int_equal(fk_base64_decode("Zm9v!", 5, dec, sizeof dec, &n), FK_E_PARSE);
    assert_int_equal(fk_base64_decode("Zg==Zg==", 8, dec, sizeof dec, &n), FK_E_PARSE);
    assert_int_equal(fk_base64_decode("Zh==", 4, dec, sizeof dec, &n), FK_E_PARSE);
    assert_int_equal(fk_base64_decode("Zm9vYmFy", 8, dec, 5, &n), FK_E_NOSPACE);
}

static void name_valid_takes_fleet_identity_names_only(void **state) {
    (void)state;
    assert_true(fk_name_valid("robot-aabbccddeeff", 18, 64));
    assert_true(fk_name_valid("phone_1.lab", 11, 64));
    assert_true(fk_name_valid("a", 1, 1));
    assert_false(fk_name_valid("ab", 2, 1));   /* longer than max */
    assert_false(fk_name_valid("", 0, 64));    /* empty */
    assert_false(fk_name_valid("-x", 2, 64));  /* an option's look */
    assert_false(fk_name_valid(".x", 2, 64));  /* a hidden file's */
    assert_false(fk_name_valid("a/b", 3, 64)); /* a path */
    assert_false(fk_name_valid("a b", 3, 64));
    assert_false(fk_name_valid("a\0b", 3, 64));
    assert_false(fk_name_valid("caf\xc3\xa9", 5, 64));
}

static void ct_equal_compares_all_bytes(void **state) {
    (void)state;
    uint8_t a[32] = {0};
    uint8_t b[32] = {0};
    assert_true(fk_ct_equal(a, b, 32));
    b[31] = 1;
    assert_false(fk_ct_equal(a, b, 32));
    b[31] = 0;
    b[0] = 0x80;
    assert_false(fk_ct_equal(a, b, 32));
}

static void fingerprint_hides_secret_and_is_stable(void **state) {
    (void)state;
    char f1[FK_FPR_LEN];
    char f2[FK_FPR_LEN];
    /* SHA-256("abc") = ba7816bf8f01cfea... */
    assert_string_equal(fk_fpr("abc", 3, f1), "sha256:ba7816bf8f01cfea");
    assert_string_not_equal(fk_fpr("abd", 3, f2), f1);
}

static void redaction_covers_secret_fields(void **state) {
    (void)state;
    assert_true(fk_redact_field("psk_hex"));
    assert_true(fk_redact_field("wifi_password"));
    assert_true(fk_redact_field("client_key_pem"));
    assert_true(fk_redact_field("refresh_token"));
    assert_false(fk_redact_field("device_id"));
    assert_false(fk_redact_field("ota_public_key_der_hex"));
}

static void atomic_write_sets_mode_despite_umask(void **state) {
    (void)state;
    char *path = NULL;
    assert_int_equal(fk_path_join(tmpdir(), "secret", ".bin", &path), FK_OK);
    unlink(path);
    mode_t old = umask(0);
    assert_int_equal(fk_file_write_atomic(path, "abc", 3, 0600, 0, NULL), FK_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fk_file_read(path, 100, &buf, &len, NULL), FK_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "abc", 3);
    free(buf);
    /* Replacing keeps readers safe and leaves no temp file behind. */
    assert_int_equal(fk_file_write_atomic(path, "defg", 4, 0644, 0, NULL), FK_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(st.st_size, 4);
    assert_int_equal(fk_file_write_atomic(path, "x", 1, 0600, FK_WRITE_EXCL, NULL), FK_E_EXISTS);
    DIR *d = opendir(tmpdir());
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        assert_null(strstr(e->d_name, ".tmp."));
    }
    closedir(d);
    free(path);
}

static void atomic_write_failure_leaves_old_file(void **state) {
    (void)state;
    struct fk_diag diag;
    fk_diag_init(&diag);
    assert_int_equal(
        fk_file_write_atomic("/nonexistent-dir/x/file", "a", 1, 0600, 0, &diag), FK_E_IO);
    char line[1024];
    fk_diag_format(&diag, line, sizeof line);
    assert_non_null(strstr(line, "/nonexistent-dir/x/file"));
}

static void file_read_enforces_limit(void **state) {
    (void)state;
    char *path = NULL;
    assert_int_equal(fk_path_join(tmpdir(), "big", ".bin", &path), FK_OK);
    uint8_t data[10000];
    memset(data, 'x', sizeof data);
    assert_int_equal(fk_file_write_atomic(path, data, sizeof data, 0600, 0, NULL), FK_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fk_file_read(path, 9999, &buf, &len, NULL), FK_E_TOOBIG);
    assert_int_equal(fk_file_read(path, 10000, &buf, &len, NULL), FK_OK);
    assert_int_equal(len, 10000);
    free(buf);
    struct fk_diag diag;
    fk_diag_init(&diag);
    assert_int_equal(fk_file_read("/no/such/file", 10, &buf, &len, &diag), FK_E_IO);
    assert_string_equal(diag.file, "/no/such/file");
    free(path);
}

static void diag_formats_file_and_line(void **state) {
    (void)state;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_diag_at(&d, FK_E_PARSE, "devices.csv", 14, "mac: expected %s",
                                "AA:BB:CC:DD:EE:FF"),
                     FK_E_PARSE);
    char line[256];
    fk_diag_format(&d, line, sizeof line);
    assert_string_equal(line, "devices.csv:14: mac: expected AA:BB:CC:DD:EE:FF");
    fk_diag_init(&d);
    snprintf(d.file, sizeof d.file, "img.bin");
    d.offset = 0x1040;
    fk_diag_set(&d, FK_E_CRC, "entry CRC");
    fk_diag_format(&d, line, sizeof line);
    assert_string_equal(line, "img.bin: offset 0x1040: entry CRC");
}

static void rfc3339_is_utc_with_z(void **state) {
    (void)state;
    char out[21];
    fk_time_rfc3339(1736937000LL, out);
    assert_string_equal(out, "2025-01-15T10:30:00Z");
}

static void rfc3339_parse_round_trips_and_rejects_deviations(void **state) {
    (void)state;
    long long t = 0;
    char out[21];
    /* Round trip over dates around leap days, month ends and the far future. */
    const long long samples[] = {
        0, 951782400LL, 951868799LL, 1736937000LL, 4102444799LL, 253402300799LL};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        fk_time_rfc3339(samples[i], out);
        assert_int_equal(fk_time_parse_rfc3339(out, sizeof out, &t), FK_OK);
        assert_true(t == samples[i]);
        assert_int_equal(fk_time_parse_rfc3339(out, 20, &t), FK_OK); /* no NUL needed */
    }
    assert_int_equal(fk_time_parse_rfc3339("2024-02-29T00:00:00Z", 20, &t), FK_OK);
    assert_true(t == 1709164800LL);
    const char *bad[] = {
        "",
        "2025-01-15T10:30:00",       /* truncated: no zone */
        "2025-01-15T10:30:00+00:00", /* offsets are not what we write */
        "2025-01-15T10:30:00.5Z",    /* fractions neither */
        "2025-01-15 10:30:00Z",      /* space instead of T */
        "2025-13-15T10:30:00Z",      /* month */
        "2025-00-15T10:30:00Z",
        "2025-01-32T10:30:00Z", /* day */
        "2025-01-00T10:30:00Z",
        "2025-02-29T10:30:00Z", /* not a leap year */
        "1900-02-29T10:30:00Z", /* nor is 1900 (and before 1970 anyway) */
        "2025-04-31T10:30:00Z",
        "2025-01-15T24:00:00Z", /* hour */
        "2025-01-15T10:60:00Z", /* minute */
        "2025-01-15T10:30:60Z", /* no leap second */
        "1969-12-31T23:59:59Z", /* before the epoch */
        "2025-01-15T10:30:00z",
        "2O25-01-15T10:30:00Z", /* a letter O */
        "+025-01-15T10:30:00Z",
        "2025-01-15T10:30:00ZZ", /* trailing bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fk_time_parse_rfc3339(bad[i], strlen(bad[i]), &t), FK_E_PARSE);
    }
    /* Each truncation of a valid text is refused, and len bounds the read. */
    const char *ok = "2025-01-15T10:30:00Z";
    for (size_t n = 0; n < 20; n++) {
        assert_int_equal(fk_time_parse_rfc3339(ok, n, &t), FK_E_PARSE);
    }
    assert_int_equal(fk_time_parse_rfc3339(NULL, 20, &t), FK_E_PARSE);
}

static void jbuf_escapes_strings_and_keeps_text_across_growth(void **state) {
    (void)state;
    struct fk_jbuf t = {0};
    size_t len = 99;
    char *e = fk_jbuf_take(&t, &len); /* nothing put: an empty text, not NULL */
    assert_non_null(e);
    assert_string_equal(e, "");
    assert_int_equal(len, 0);
    free(e);
    fk_jbuf_str(&t, "a\"b\\c\n\x01\x1f \xc3\xa9/");
    fk_jbuf_put(&t, ",", 1);
    fk_jbuf_int(&t, -9223372036854775807LL - 1);
    fk_jbuf_put(&t, ",", 1);
    fk_jbuf_str(&t, "");
    char *s = fk_jbuf_take(&t, &len);
    assert_non_null(s);
    assert_string_equal(s,
                        "\"a\\\"b\\\\c\\u000a\\u0001\\u001f \xc3\xa9/\",-9223372036854775808,\"\"");
    assert_int_equal(len, strlen(s));
    assert_null(t.b);
    free(s);
    /* well past the first 4096 bytes, in pieces that straddle each growth */
    for (int i = 0; i < 3000; i++) {
        fk_jbuf_int(&t, i);
        fk_jbuf_put(&t, ";", 1);
    }
    s = fk_jbuf_take(&t, &len);
    assert_non_null(s);
    assert_true(len > 3 * 4096);
    char *p = s;
    for (int i = 0; i < 3000; i++) {
        char *end = NULL;
        assert_int_equal(strtol(p, &end, 10), i);
        assert_int_equal(*end, ';');
        p = end + 1;
    }
    assert_int_equal(*p, '\0');
    free(s);
    /* free of a half-built buffer leaves it empty and usable */
    fk_jbuf_puts(&t, "x");
    fk_jbuf_free(&t);
    assert_null(t.b);
    assert_int_equal(t.len, 0);
    fk_jbuf_puts(&t, "y");
    s = fk_jbuf_take(&t, NULL);
    assert_string_equal(s, "y");
    free(s);
}

static void grow_doubles_keeps_contents_and_refuses_overflow(void **state) {
    (void)state;
    size_t cap = 0;
    int *v = NULL;
    for (size_t n = 0; n < 1000; n++) {
        int *nv = fk_grow(v, &cap, n, sizeof *nv, 16);
        assert_non_null(nv);
        v = nv;
        assert_true(n < cap);
        v[n] = (int)n;
    }
    assert_int_equal(cap, 1024); /* 16, 32, ... 1024: doubled, never more */
    for (size_t n = 0; n < 1000; n++) {
        assert_int_equal(v[n], (int)n);
    }
    /* no growth while there is room: the same array, cap unchanged */
    assert_ptr_equal(fk_grow(v, &cap, 999, sizeof *v, 16), v);
    assert_int_equal(cap, 1024);
    /* past the end in one step: doubled until element n fits */
    int *nv = fk_grow(v, &cap, 5000, sizeof *v, 16);
    assert_non_null(nv);
    v = nv;
    assert_int_equal(cap, 8192);
    assert_int_equal(v[999], 999);
    /* a size that does not fit size_t: NULL, and the array and cap are left as they were */
    size_t huge = SIZE_MAX / 4 + 1;
    assert_null(fk_grow(v, &huge, huge, sizeof *v, 16));
    assert_int_equal(huge, SIZE_MAX / 4 + 1);
    size_t zero = 0;
    assert_null(fk_grow(NULL, &zero, 0, SIZE_MAX / 2, 4));
    assert_int_equal(zero, 0);
    assert_int_equal(v[0], 0);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strerror_covers_every_code),
        cmocka_unit_test(crc32_matches_esp_idf_and_zlib_check_values),
        cmocka_unit_test(hex_round_trip_and_rejects_bad_digits),
        cmocka_unit_test(name_valid_takes_fleet_identity_names_only),
        cmocka_unit_test(parse_ulong_takes_bounded_decimal_only),
        cmocka_unit_test(base64_round_trip_and_rejects_garbage),
        cmocka_unit_test(ct_equal_compares_all_bytes),
        cmocka_unit_test(fingerprint_hides_secret_and_is_stable),
        cmocka_unit_test(redaction_covers_secret_fields),
        cmocka_unit_test(atomic_write_sets_mode_despite_umask),
        cmocka_unit_test(atomic_write_failure_leaves_old_file),
        cmocka_unit_test(file_read_enforces_limit),
        cmocka_unit_test(diag_formats_file_and_line),
        cmocka_unit_test(rfc3339_is_utc_with_z),
        cmocka_unit_test(rfc3339_parse_round_trips_and_rejects_deviations),
        cmocka_unit_test(jbuf_escapes_strings_and_keeps_text_across_growth),
        cmocka_unit_test(grow_doubles_keeps_contents_and_refuses_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
