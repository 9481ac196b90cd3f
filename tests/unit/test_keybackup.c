/* Unit tests of the signing-key backup: the GF(256) field against the AES field (FIPS-197
 * values and a plain reference multiply), Shamir split/combine (a hand-made polynomial, every
 * k-subset of 3-of-5 and 4-of-7, k-1 shares giving a wrong secret, bad parameters), the share
 * file (round trip, every truncation, every flipped byte, each bad field with a correct
 * checksum) and backup/restore on files (modes, P-256/Ed25519/RSA keys, fewer shares than the
 * threshold, mixed backups, a share twice, a damaged share named, no overwrite). */
#include "fleetkey/keybackup.h"
#include "fleetkey/shamir.h"

/* cmocka needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The textbook multiply with branches: the reference our masked one is checked against. */
static uint8_t ref_mul(uint8_t a, uint8_t b) {
    uint8_t p = 0;
    while (b != 0) {
        if (b & 1) {
            p ^= a;
        }
        a = (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1B : 0));
        b >>= 1;
    }
    return p;
}

static void gf256_matches_the_aes_field(void **state) {
    (void)state;
    assert_int_equal(fk_gf256_mul(0x53, 0xCA), 0x01); /* FIPS-197 section 4.2 */
    assert_int_equal(fk_gf256_mul(0x57, 0x83), 0xC1);
    assert_int_equal(fk_gf256_mul(0x57, 0x13), 0xFE);
    assert_int_equal(fk_gf256_inv(0x53), 0xCA);
    assert_int_equal(fk_gf256_inv(0x00), 0x00);
    assert_int_equal(fk_gf256_inv(0x01), 0x01);
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            assert_int_equal(fk_gf256_mul((uint8_t)a, (uint8_t)b), ref_mul((uint8_t)a, (uint8_t)b));
        }
        if (a != 0) {
            assert_int_equal(fk_gf256_mul((uint8_t)a, fk_gf256_inv((uint8_t)a)), 1);
        }
    }
}

static void combine_finds_the_constant_of_a_known_polynomial(void **state) {
    (void)state;
    /* f(x) = 0x42 + 0x17 x + 0xA5 x^2 per byte 0, g(x) = 0x00 + 0xFF x + 0x01 x^2 per byte 1,
     * evaluated with the reference multiply at x = 2, 5, 9. */
    const uint8_t xs[3] = {2, 5, 9};
    uint8_t rows[3][2];
    for (int i = 0; i < 3; i++) {
        uint8_t x = xs[i], x2 = ref_mul(xs[i], xs[i]);
        rows[i][0] = (uint8_t)(0x42 ^ ref_mul(0x17, x) ^ ref_mul(0xA5, x2));
        rows[i][1] = (uint8_t)(0x00 ^ ref_mul(0xFF, x) ^ ref_mul(0x01, x2));
    }
    const uint8_t *ys[3] = {rows[0], rows[1], rows[2]};
    uint8_t out[2];
    assert_int_equal(fk_shamir_combine(xs, ys, 3, 2, out), FK_OK);
    assert_int_equal(out[0], 0x42);
    assert_int_equal(out[1], 0x00);
}

/* Every k-subset of n shares of a len-byte secret gives it back; every (k-1)-subset does not. */
static void check_subsets(unsigned n, unsigned k, size_t len) {
    uint8_t *secret = malloc(len), *out = malloc(len), *mem = malloc(n * len);
    uint8_t *rows[FK_SHAMIR_MAX_SHARES];
    assert_non_null(secret);
    assert_non_null(out);
    assert_non_null(mem);
    assert_int_equal(fk_random(secret, len), FK_OK);
    for (unsigned i = 0; i < n; i++) {
        rows[i] = mem + i * len;
    }
    assert_int_equal(fk_shamir_split(secret, len, n, k, rows), FK_OK);
    unsigned full = 0, wrong = 0;
    for (unsigned mask = 0; mask < (1u << n); mask++) {
        unsigned m = (unsigned)__builtin_popcount(mask);
        if (m != k && m != k - 1) {
            continue;
        }
        uint8_t xs[16];
        const uint8_t *ys[16];
        unsigned c = 0;
        for (unsigned i = 0; i < n; i++) {
            if (mask & (1u << i)) {
                xs[c] = (uint8_t)(i + 1);
                ys[c++] = rows[i];
            }
        }
        assert_int_equal(fk_shamir_combine(xs, ys, c, len, out), FK_OK);
        if (m == k) {
            assert_memory_equal(out, secret, len);
            full++;
        } else {
            assert_memory_not_equal(out, secret, len);
            wrong++;
        }
    }
    assert_true(full > 0 && wrong > 0);
    free(secret);
    free(out);
    free(mem);
}

static void every_k_subset_reconstructs_and_k_minus_1_does_not(void **state) {
    (void)state;
    check_subsets(5, 3, 121); /* 121: not a multiple of the 8 lanes */
    check_subsets(7, 4, 8);
    check_subsets(2, 2, 1);
}

static void split_is_randomised(void **state) {
    (void)state;
    uint8_t secret[32] = {0};
    uint8_t a[2][32], b[2][32];
    uint8_t *ra[2] = {a[0], a[1]}, *rb[2] = {b[0], b[1]};
    assert_int_equal(fk_shamir_split(secret, sizeof secret, 2, 2, ra), FK_OK);
    assert_int_equal(fk_shamir_split(secret, sizeof secret, 2, 2, rb), FK_OK);
    assert_memory_not_equal(a[0], b[0], 32);
    assert_memory_not_equal(a[0], secret, 32); /* a share is not the secret */
}

static void split_and_combine_reject_bad_parameters(void **state) {
    (void)state;
    uint8_t s[4] = {1, 2, 3, 4}, r0[4], r1[4], r2[4], out[4];
    uint8_t *rows[3] = {r0, r1, r2};
    assert_int_equal(fk_shamir_split(s, 4, 3, 1, rows), FK_E_ARG);
    assert_int_equal(fk_shamir_split(s, 4, 2, 3, rows), FK_E_ARG);
    assert_int_equal(fk_shamir_split(s, 0, 3, 2, rows), FK_E_ARG);
    assert_int_equal(fk_shamir_split(s, 4, 256, 2, rows), FK_E_ARG);
    assert_int_equal(fk_shamir_split(s, 4, 3, 2, rows), FK_OK);
    const uint8_t *ys[2] = {r0, r1};
    const uint8_t dup[2] = {1, 1}, zero[2] = {0, 1};
    assert_int_equal(fk_shamir_combine(dup, ys, 2, 4, out), FK_E_ARG);
    assert_int_equal(fk_shamir_combine(zero, ys, 2, 4, out), FK_E_ARG);
    assert_int_equal(fk_shamir_combine(dup, ys, 0, 4, out), FK_E_ARG);
}

/* ---- share files ------------------------------------------------------------------------ */
static void sample_share(struct fk_keyshare *s) {
    memset(s, 0, sizeof *s);
    s->version = FK_KEYSHARE_VERSION;
    memcpy(s->backup_id, "\x01\x23\x45\x67\x89\xab\xcd\xef", 8);
    s->index = 2;
    s->threshold = 2;
    s->shares = 3;
    for (size_t i = 0; i < 91; i++) {
        s->pub_der[i] = (uint8_t)(i * 7);
        s->share[i] = (uint8_t)(i * 13 + 1);
    }
    s->pub_der_len = 91;
    s->share_len = 91;
    uint8_t h[32];
    SHA256(s->pub_der, s->pub_der_len, h);
    strcpy(s->fingerprint, "sha256:");
    assert_int_equal(fk_hex_encode(h, 32, s->fingerprint + 7, sizeof s->fingerprint - 7), FK_OK);
}

/* Replaces the checksum line of text (len bytes) by the right one for its body. */
static void resum(char *text, size_t len) {
    char *c = text + len - 43; /* "checksum: " + 32 hex + "\n" */
    assert_memory_equal(c, "checksum: ", 10);
    uint8_t h[32];
    SHA256((const uint8_t *)text, (size_t)(c - text), h);
    char hex[65];
    assert_int_equal(fk_hex_encode(h, 32, hex, sizeof hex), FK_OK);
    memcpy(c + 10, hex, 32);
}

static void share_round_trips(void **state) {
    (void)state;
    static struct fk_keyshare s, back;
    static char text[FK_KEYSHARE_FILE_MAX];
    size_t len = 0;
    sample_share(&s);
    assert_int_equal(fk_keyshare_format(&s, text, sizeof text, &len), FK_OK);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "fleetkey-key-share: 1\nbackup: 0123456789abcdef\nindex: 2\n"));
    assert_int_equal(fk_keyshare_parse((const uint8_t *)text, len, &back, NULL), FK_OK);
    assert_int_equal(back.index, 2);
    assert_int_equal(back.threshold, 2);
    assert_int_equal(back.shares, 3);
    assert_string_equal(back.fingerprint, s.fingerprint);
    assert_int_equal(back.share_len, 91);
    assert_memory_equal(back.share, s.share, 91);
    assert_memory_equal(back.pub_der, s.pub_der, 91);
    assert_memory_equal(back.backup_id, s.backup_id, 8);
}

static void share_parse_refuses_every_truncation_and_flipped_byte(void **state) {
    (void)state;
    static struct fk_keyshare s, back;
    static char text[FK_KEYSHARE_FILE_MAX];
    size_t len = 0;
    sample_share(&s);
    assert_int_equal(fk_keyshare_format(&s, text, sizeof text, &len), FK_OK);
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_not_equal(fk_keyshare_parse((const uint8_t *)text, cut, &back, NULL), FK_OK);
    }
    for (size_t i = 0; i < len; i++) {
        struct fk_diag d;
        fk_diag_init(&d);
        text[i] ^= 0x04;
        enum fk_err rc = fk_keyshare_parse((const uint8_t *)text, len, &back, &d);
        text[i] ^= 0x04;
        assert_int_not_equal(rc, FK_OK);
        if (i < len - 44) {
            assert_int_equal(rc, FK_E_CRC); /* the body: the checksum names the damage */
            assert_non_null(strstr(d.msg, "damaged"));
        }
    }
    /* one byte more is refused too */
    text[len] = '\n';
    assert_int_not_equal(fk_keyshare_parse((const uint8_t *)text, len + 1, &back, NULL), FK_OK);
}

/* Replaces the first occurrence of from by to in the formatted sample, fixes the checksum,
 * and expects rc with diag->line == line. */
static void bad_field(const char *from, const char *to, enum fk_err want, long line) {
    static struct fk_keyshare s, back;
    static char text[FK_KEYSHARE_FILE_MAX], edited[FK_KEYSHARE_FILE_MAX];
    size_t len = 0;
    sample_share(&s);
    assert_int_equal(fk_keyshare_format(&s, text, sizeof text, &len), FK_OK);
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t pre = (size_t)(at - text);
    int n = snprintf(edited, sizeof edited, "%.*s%s%s", (int)pre, text, to, at + strlen(from));
    assert_true(n > 0);
    resum(edited, (size_t)n);
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_keyshare_parse((const uint8_t *)edited, (size_t)n, &back, &d);
    if (rc != want || d.line != line) {
        fprintf(stderr, "%s -> %s: %s line %ld: %s\n", from, to, fk_errname(rc), d.line, d.msg);
    }
    assert_int_equal(rc, want);
    assert_int_equal(d.line, line);
    assert_true(d.msg[0] != '\0');
}

static void share_parse_refuses_bad_fields(void **state) {
    (void)state;
    bad_field("fleetkey-key-share: 1", "fleetkey-key-share: 2", FK_E_UNSUPPORTED, 1);
    bad_field("fleetkey-key-share: 1", "fleetkey-key-share 1", FK_E_PARSE, 1);
    bad_field("backup: 0123456789abcdef", "backup: 0123456789abcdeg", FK_E_PARSE, 2);
    bad_field("backup: 0123456789abcdef", "backup: 0123", FK_E_PARSE, 2);
    bad_field("index: 2", "index: 0", FK_E_RANGE, 3);
    bad_field("index: 2", "index: 02", FK_E_PARSE, 3);
    bad_field("index: 2", "index: -2", FK_E_PARSE, 3);
    bad_field("index: 2", "index: 4", FK_E_RANGE, 3);
    bad_field("threshold: 2", "threshold: 1", FK_E_RANGE, 4);
    bad_field("shares: 3", "shares: 1", FK_E_RANGE, 5);
    bad_field("shares: 3", "shares: 256", FK_E_RANGE, 5);
    bad_field("key-fingerprint: sha256:", "key-fingerprint: sha512:", FK_E_PARSE, 6);
    bad_field("public-key: ", "public-key: A", FK_E_PARSE, 7);
    bad_field("secret-length: 91", "secret-length: 92", FK_E_PARSE, 9);
    bad_field("secret-length: 91", "secret-length: 8193", FK_E_RANGE, 8);
    bad_field("\nshare: ", "\nshare: !!!!", FK_E_PARSE, 9);
    bad_field("\nchecksum", "\nextra: 1\nchecksum", FK_E_PARSE, 10);
    bad_field("index: 2\n", "", FK_E_PARSE, 3);
}

static void share_fingerprint_must_match_the_public_key(void **state) {
    (void)state;
    static struct fk_keyshare s, back;
    static char text[FK_KEYSHARE_FILE_MAX];
    size_t len = 0;
    sample_share(&s);
    s.fingerprint[10] = s.fingerprint[10] == '0' ? '1' : '0';
    assert_int_equal(fk_keyshare_format(&s, text, sizeof text, &len), FK_OK);
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_keyshare_parse((const uint8_t *)text, len, &back, &d), FK_E_PARSE);
    assert_int_equal(d.line, 6);
}

/* ---- backup and restore on files -------------------------------------------------------- */
static char tmp[2048];

static void setup_dir(const char *name) {
    const char *base = getenv("FK_TMP");
    snprintf(tmp, sizeof tmp, "%s/%s", base != NULL ? base : "/tmp/fk_test_keybackup", name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(fk_mkdirs(tmp, 0700, NULL), FK_OK);
}

static char *path(const char *name) {
    static char p[64][2200];
    static int next;
    next = (next + 1) % 64;
    snprintf(p[next], sizeof p[next], "%s/%s", tmp, name);
    return p[next];
}

static uint8_t *key_pem(EVP_PKEY *k, size_t *len) {
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    uint8_t *out = malloc((size_t)n);
    assert_non_null(out);
    memcpy(out, data, (size_t)n);
    *len = (size_t)n;
    BIO_free(b);
    return out;
}

static EVP_PKEY *read_key(const char *p) {
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(k);
    return k;
}

static void backup_restore_round_trip(EVP_PKEY *key, const char *name) {
    size_t pem_len = 0;
    uint8_t *pem = key_pem(key, &pem_len);
    struct fk_keybackup_info info, rinfo;
    struct fk_diag d;
    fk_diag_init(&d);
    setup_dir(name);
    mode_t old = umask(0);
    enum fk_err rc = fk_keybackup_split(pem, pem_len, "key.pem", 5, 3, path("shares"), &info, &d);
    umask(old);
    assert_int_equal(rc, FK_OK);
    assert_int_equal(info.threshold, 3);
    for (int i = 1; i <= 5; i++) {
        char n[64];
        snprintf(n, sizeof n, "shares/key-share-%d-of-5.txt", i);
        struct stat st;
        assert_int_equal(stat(path(n), &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
    }
    const char *three[3] = {path("shares/key-share-5-of-5.txt"),
                            path("shares/key-share-2-of-5.txt"),
                            path("shares/key-share-4-of-5.txt")};
    assert_int_equal(fk_keybackup_restore(three, 3, path("restored.pem"), &rinfo, &d), FK_OK);
    assert_string_equal(rinfo.fingerprint, info.fingerprint);
    assert_int_equal(rinfo.used, 3);
    struct stat st;
    assert_int_equal(stat(path("restored.pem"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    EVP_PKEY *back = read_key(path("restored.pem"));
    assert_int_equal(EVP_PKEY_eq(back, key), 1);
    EVP_PKEY_free(back);
    free(pem);
}

static void backup_restores_p256_ed25519_and_rsa(void **state) {
    (void)state;
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(ec);
    assert_non_null(ed);
    assert_non_null(rsa);
    backup_restore_round_trip(ec, "p256");
    backup_restore_round_trip(ed, "ed25519");
    backup_restore_round_trip(rsa, "rsa");
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(rsa);
}

static void restore_refuses_what_is_not_one_backup(void **state) {
    (void)state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    size_t len = 0, olen = 0;
    uint8_t *pem = key_pem(k, &len), *opem = key_pem(other, &olen);
    struct fk_keybackup_info info;
    struct fk_diag d;
    setup_dir("refusals");
    assert_int_equal(fk_keybackup_split(pem, len, "k", 5, 3, path("a"), &info, NULL), FK_OK);
    assert_int_equal(fk_keybackup_split(pem, len, "k", 5, 3, path("b"), &info, NULL), FK_OK);
    assert_int_equal(fk_keybackup_split(opem, olen, "o", 5, 3, path("o"), &info, NULL), FK_OK);

    /* fewer than the threshold */
    const char *two[2] = {path("a/key-share-1-of-5.txt"), path("a/key-share-3-of-5.txt")};
    fk_diag_init(&d);
    assert_int_equal(fk_keybackup_restore(two, 2, path("x.pem"), &info, &d), FK_E_RANGE);
    assert_non_null(strstr(d.msg, "needs 3 of its 5"));
    /* the same key backed up twice: the polynomials differ, the backups do not mix */
    const char *mix[3] = {path("a/key-share-1-of-5.txt"), path("a/key-share-2-of-5.txt"),
                          path("b/key-share-3-of-5.txt")};
    fk_diag_init(&d);
    assert_int_equal(fk_keybackup_restore(mix, 3, path("x.pem"), &info, &d), FK_E_MISMATCH);
    assert_string_equal(d.file, mix[2]);
    /* another key's share */
    mix[2] = path("o/key-share-3-of-5.txt");
    fk_diag_init(&d);
    assert_int_equal(fk_keybackup_restore(mix, 3, path("x.pem"), &info, &d), FK_E_MISMATCH);
    assert_non_null(strstr(d.msg, "another backup"));
    /* a share twice */
    const char *twice[3] = {two[0], two[1], two[0]};
    fk_diag_init(&d);
    assert_int_equal(fk_keybackup_restore(twice, 3, path("x.pem"), &info, &d), FK_E_ARG);
    assert_non_null(strstr(d.msg, "given twice"));
    /* a damaged share is named */
    char *bad = path("a/key-share-2-of-5.txt");
    FILE *f = fopen(bad, "r+");
    assert_non_null(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 200, SEEK_SET), 0);
    fputc(c == 'A' ? 'B' : 'A', f);
    fclose(f);
    const char *dmg[3] = {two[0], bad, two[1]};
    fk_diag_init(&d);
    assert_int_equal(fk_keybackup_restore(dmg, 3, path("x.pem"), &info, &d), FK_E_CRC);
    assert_string_equal(d.file, bad);
    assert_int_equal(access(path("x.pem"), F_OK), -1);
    /* an existing output is never replaced */
    const char *ok[3] = {two[0], two[1], path("a/key-share-5-of-5.txt")};
    FILE *e = fopen(path("x.pem"), "w");
    assert_non_null(e);
    fclose(e);
    assert_int_equal(fk_keybackup_restore(ok, 3, path("x.pem"), &info, NULL), FK_E_EXISTS);
    /* and a second backup into the same directory leaves the first one alone */
    fk_diag_init(&d);
    assert_int_equal(fk_keybackup_split(opem, olen, "o", 5, 3, path("a"), &info, &d), FK_E_EXISTS);
    assert_int_equal(access(path("a/key-share-1-of-5.txt"), F_OK), 0);
    /* not a key */
    assert_int_equal(
        fk_keybackup_split((const uint8_t *)"hello", 5, "k", 5, 3, path("z"), &info, NULL),
        FK_E_PARSE);
    assert_int_equal(fk_keybackup_split(pem, len, "k", 2, 3, path("z"), &info, NULL), FK_E_ARG);
    free(pem);
    free(opem);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gf256_matches_the_aes_field),
        cmocka_unit_test(combine_finds_the_constant_of_a_known_polynomial),
        cmocka_unit_test(every_k_subset_reconstructs_and_k_minus_1_does_not),
        cmocka_unit_test(split_is_randomised),
        cmocka_unit_test(split_and_combine_reject_bad_parameters),
        cmocka_unit_test(share_round_trips),
        cmocka_unit_test(share_parse_refuses_every_truncation_and_flipped_byte),
        cmocka_unit_test(share_parse_refuses_bad_fields),
        cmocka_unit_test(share_fingerprint_must_match_the_public_key),
        cmocka_unit_test(backup_restores_p256_ed25519_and_rsa),
        cmocka_unit_test(restore_refuses_what_is_not_one_backup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
