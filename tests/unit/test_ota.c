/* ota module tests: Secure Boot V2 vectors made by Espressif's espsecure (every row of the
 * README's verification table), our signatures against the vectors' deterministic bytes,
 * tampering, key digests, and the app image parser against images from tests/tools/mkappimage.
 * FK_VECTORS points at tests/vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fleetkey/ota.h"
#include "mkappimage.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_OFF 102400u /* app.bin (100000 bytes) padded to 4 KiB */

static const char *vec_dir(void) {
    const char *v = getenv("FK_VECTORS");
    return v != NULL ? v : "tests/vectors";
}

static char *vpath(const char *name) {
    static char buf[4][1024];
    static int n;
    char *p = buf[n++ % 4];
    snprintf(p, sizeof buf[0], "%s/sbv2/%s", vec_dir(), name);
    return p;
}

static uint8_t *load(const char *name, size_t *len) {
    uint8_t *buf = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_file_read(vpath(name), 4u << 20, &buf, len, &d);
    if (rc != FK_OK) {
        fprintf(stderr, "%s: %s\n", vpath(name), d.msg);
    }
    assert_int_equal(rc, FK_OK);
    return buf;
}

static struct fk_ota_key *key(const char *name, int need_private) {
    struct fk_ota_key *k = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_ota_key_load(vpath(name), need_private, &k, &d);
    if (rc != FK_OK) {
        fprintf(stderr, "%s: %s\n", name, d.msg);
    }
    assert_int_equal(rc, FK_OK);
    return k;
}

static enum fk_err verify_file(const char *img, const char *pub, struct fk_ota_verify_result *r) {
    size_t len = 0;
    uint8_t *buf = load(img, &len);
    struct fk_ota_key *k = key(pub, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_ota_verify(buf, len, &k, 1, r, &d);
    fk_ota_key_free(k);
    free(buf);
    return rc;
}

/* README "Verification results (real espsecure verify-signature --version 2)", row by row. */
static void ota_vectors_verify_as_espsecure_does(void **state) {
    (void)state;
    static const struct {
        const char *img, *pub;
        enum fk_err rc;
        int block;
    } rows[] = {
        {"app_signed_a.bin", "key_a.pub.pem", FK_OK, 0},
        {"app_signed_a.bin", "key_b.pub.pem", FK_E_VERIFY, -1},
        {"app_signed_ab.bin", "key_a.pub.pem", FK_OK, 0},
        {"app_signed_ab.bin", "key_b.pub.pem", FK_OK, 1},
        {"app_signed_a_plus_b.bin", "key_a.pub.pem", FK_OK, 0},
        {"app_signed_a_plus_b.bin", "key_b.pub.pem", FK_OK, 1},
        {"app_signed_rsa.bin", "key_rsa.pub.pem", FK_OK, 0},
        {"app_signed_rsa.bin", "key_a.pub.pem", FK_E_VERIFY, -1},
        /* "Signature block image digest does not match the actual image digest" */
        {"app_signed_a_tampered.bin", "key_a.pub.pem", FK_E_MISMATCH, -1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct fk_ota_verify_result r;
        enum fk_err rc = verify_file(rows[i].img, rows[i].pub, &r);
        if (rc != rows[i].rc) {
            fprintf(stderr, "row %zu: %s with %s: got %s\n", i, rows[i].img, rows[i].pub,
                    fk_errname(rc));
        }
        assert_int_equal(rc, rows[i].rc);
        assert_int_equal(r.block, rows[i].block);
    }
    /* Each image also fails with the other ECDSA key where that key signed nothing. */
    assert_int_equal(verify_file("app_signed_rsa.bin", "key_b.pub.pem", NULL), FK_E_VERIFY);
    assert_int_equal(verify_file("app_signed_a_tampered.bin", "key_b.pub.pem", NULL),
                     FK_E_MISMATCH);
}

/* A tamper test per vector: a changed image byte is a digest mismatch, a changed block byte
 * (under the CRC) a damaged sector; both fail for every key that verified before. */
static void ota_vectors_fail_when_tampered(void **state) {
    (void)state;
    static const struct {
        const char *img, *pub;
    } rows[] = {
        {"app_signed_a.bin", "key_a.pub.pem"},     {"app_signed_ab.bin", "key_a.pub.pem"},
        {"app_signed_ab.bin", "key_b.pub.pem"},    {"app_signed_a_plus_b.bin", "key_b.pub.pem"},
        {"app_signed_rsa.bin", "key_rsa.pub.pem"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t len = 0;
        uint8_t *buf = load(rows[i].img, &len);
        struct fk_ota_key *k = key(rows[i].pub, 0);
        assert_int_equal(fk_ota_verify(buf, len, &k, 1, NULL, NULL), FK_OK);
        const size_t spots[] = {77, 100500, SIG_OFF + 10, SIG_OFF + 600, SIG_OFF + 1216 + 900};
        for (size_t j = 0; j < sizeof spots / sizeof spots[0]; j++) {
            buf[spots[j]] ^= 0x20;
            enum fk_err rc = fk_ota_verify(buf, len, &k, 1, NULL, NULL);
            assert_int_equal(rc, j < 2 ? FK_E_MISMATCH : FK_E_PARSE);
            buf[spots[j]] ^= 0x20;
        }
        fk_ota_key_free(k);
        free(buf);
    }
}

/* A block with a correct CRC but key fields that are not a key (a point off the curve, an even
 * RSA modulus) is well formed yet verifies with nothing, and has no PEM. */
static void ota_block_with_bogus_key_fields_verifies_with_nothing(void **state) {
    (void)state;
    static const struct {
        const char *img, *pub;
        size_t off;
    } rows[] = {{"app_signed_a.bin", "key_a.pub.pem", 40},
                {"app_signed_rsa.bin", "key_rsa.pub.pem", 36}};
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        uint8_t *buf = load(rows[i].img, &len);
        uint8_t *blk = buf + SIG_OFF;
        blk[rows[i].off] ^= 0x01; /* x changes / n becomes even */
        fk_store_le32(blk + 1196, fk_crc32_le(0, blk, 1196));
        struct fk_ota_sig_sector sec;
        assert_int_equal(fk_ota_sig_sector_parse(buf, len, &sec, NULL), FK_OK);
        assert_int_equal(sec.blocks[0].state, FK_OTA_BLOCK_VALID);
        int dok = 0;
        int sok = 1;
        assert_int_equal(fk_ota_block_check(&sec, buf, 0, &dok, &sok), FK_OK);
        assert_true(dok);
        assert_false(sok);
        char pem[2048];
        assert_int_not_equal(fk_ota_block_pubkey_pem(&sec.blocks[0], pem, sizeof pem), FK_OK);
        struct fk_ota_verify_result r;
        struct fk_ota_key *k = key(rows[i].pub, 0);
        assert_int_equal(fk_ota_verify(buf, len, &k, 1, &r, NULL), FK_E_VERIFY);
        assert_int_equal(r.verdict[0], FK_OTA_V_UNTRUSTED);
        fk_ota_key_free(k);
        free(buf);
    }
}

static void ota_verify_reports_block_verdicts(void **state) {
    (void)state;
    struct fk_ota_verify_result r;
    assert_int_equal(verify_file("app_signed_ab.bin", "key_b.pub.pem", &r), FK_OK);
    assert_int_equal(r.verdict[0], FK_OTA_V_UNTRUSTED);
    assert_int_equal(r.verdict[1], FK_OTA_V_OK);
    assert_int_equal(r.verdict[2], FK_OTA_V_ABSENT);
    assert_int_equal(r.key, 0);
}

static void ota_verify_takes_several_trusted_keys(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *buf = load("app_signed_a.bin", &len);
    struct fk_ota_key *keys[3] = {key("key_rsa.pub.pem", 0), key("key_b.pub.pem", 0),
                                  key("key_a.pem", 0)}; /* a private key is trusted too */
    struct fk_ota_verify_result r;
    assert_int_equal(fk_ota_verify(buf, len, keys, 3, &r, NULL), FK_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(r.key, 2);
    assert_int_equal(fk_ota_verify(buf, len, keys, 2, &r, NULL), FK_E_VERIFY);
    assert_int_equal(fk_ota_verify(buf, len, keys, 0, &r, NULL), FK_E_ARG);
    for (int i = 0; i < 3; i++) {
        fk_ota_key_free(keys[i]);
    }
    free(buf);
}

static void check_digest(const char *keyfile, const char *digestfile) {
    size_t dlen = 0;
    uint8_t *want = load(digestfile, &dlen);
    assert_int_equal(dlen, 32);
    for (int priv = 0; priv < 2; priv++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s", keyfile, priv ? ".pem" : ".pub.pem");
        struct fk_ota_key *k = key(name, 0);
        uint8_t got[32];
        assert_int_equal(fk_ota_key_digest(k, got), FK_OK);
        assert_memory_equal(got, want, 32);
        fk_ota_key_free(k);
    }
    free(want);
}

static void ota_key_digest_matches_espsecure(void **state) {
    (void)state;
    check_digest("key_a", "key_a.digest.bin");
    check_digest("key_b", "key_b.digest.bin");
    check_digest("key_rsa", "key_rsa.digest.bin");
}

static void ota_sig_sector_parse_vectors(void **state) {
    (void)state;
    static const struct {
        const char *img;
        unsigned valid;
        const char *digests[2];
    } rows[] = {
        {"app_signed_a.bin", 1, {"key_a.digest.bin", NULL}},
        {"app_signed_ab.bin", 2, {"key_a.digest.bin", "key_b.digest.bin"}},
        {"app_signed_a_plus_b.bin", 2, {"key_a.digest.bin", "key_b.digest.bin"}},
        {"app_signed_rsa.bin", 1, {"key_rsa.digest.bin", NULL}},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t len = 0;
        uint8_t *buf = load(rows[i].img, &len);
        struct fk_ota_sig_sector sec;
        assert_int_equal(fk_ota_sig_sector_parse(buf, len, &sec, NULL), FK_OK);
        assert_int_equal(sec.signed_len, SIG_OFF);
        assert_int_equal(sec.valid_blocks, rows[i].valid);
        assert_int_equal(sec.leading_valid, rows[i].valid);
        for (unsigned b = 0; b < rows[i].valid; b++) {
            size_t dl = 0;
            uint8_t *want = load(rows[i].digests[b], &dl);
            uint8_t got[32];
            fk_ota_block_key_digest(&sec.blocks[b], got);
            assert_memory_equal(got, want, 32);
            int dok = 0;
            int sok = 0;
            assert_int_equal(fk_ota_block_check(&sec, buf, b, &dok, &sok), FK_OK);
            assert_true(dok);
            assert_true(sok);
            free(want);
        }
        for (unsigned b = rows[i].valid; b < 3; b++) {
            assert_int_equal(sec.blocks[b].state, FK_OTA_BLOCK_ABSENT);
        }
        free(buf);
    }
    uint8_t small[100] = {0};
    struct fk_ota_sig_sector sec;
    assert_int_equal(fk_ota_sig_sector_parse(small, sizeof small, &sec, NULL), FK_E_PARSE);
    assert_int_equal(fk_ota_sig_sector_parse(small, 0, &sec, NULL), FK_E_PARSE);
}

static void ota_block_pubkey_pem_equals_extracted_key(void **state) {
    (void)state;
    static const char *pairs[][2] = {{"app_signed_a.bin", "key_a.pub.pem"},
                                     {"app_signed_rsa.bin", "key_rsa.pub.pem"}};
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        size_t plen = 0;
        uint8_t *buf = load(pairs[i][0], &len);
        uint8_t *pem = load(pairs[i][1], &plen);
        struct fk_ota_sig_sector sec;
        char out[2048];
        assert_int_equal(fk_ota_sig_sector_parse(buf, len, &sec, NULL), FK_OK);
        assert_int_equal(fk_ota_block_pubkey_pem(&sec.blocks[0], out, sizeof out), FK_OK);
        assert_int_equal(strlen(out), plen);
        assert_memory_equal(out, pem, plen);
        free(buf);
        free(pem);
    }
}

/* Everything but the signature bytes and the CRC is deterministic: compare it. */
static void assert_block_like(const uint8_t *ours, const uint8_t *theirs) {
    assert_int_equal(ours[1], theirs[1]);
    size_t sig_off = ours[1] == FK_OTA_SIG_VERSION_RSA ? 812 : (ours[2] == 1 ? 149 : 101);
    size_t sig_len = ours[1] == FK_OTA_SIG_VERSION_RSA ? 384 : (ours[2] == 1 ? 96 : 64);
    assert_memory_equal(ours, theirs, sig_off);
    assert_memory_equal(ours + sig_off + sig_len, theirs + sig_off + sig_len,
                        1196 - sig_off - sig_len);
    assert_memory_equal(ours + 1200, theirs + 1200, 16);
    assert_int_equal(fk_load_le32(ours + 1196), fk_crc32_le(0, ours, 1196));
}

static uint8_t *sign_app(const char *const *keynames, size_t n, size_t *out_len) {
    size_t len = 0;
    uint8_t *app = load("app.bin", &len);
    struct fk_ota_key *keys[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < n; i++) {
        keys[i] = key(keynames[i], 1);
    }
    size_t total = fk_ota_signed_size(len);
    assert_int_equal(total, SIG_OFF + 4096);
    uint8_t *out = malloc(total);
    assert_non_null(out);
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ota_sign(app, len, keys, n, out, total - 1, out_len, &d), FK_E_NOSPACE);
    assert_int_equal(fk_ota_sign(app, len, keys, n, out, total, out_len, &d), FK_OK);
    assert_int_equal(*out_len, total);
    for (size_t i = 0; i < n; i++) {
        fk_ota_key_free(keys[i]);
    }
    free(app);
    return out;
}

static void assert_same_layout(const uint8_t *ours, const char *vector, unsigned blocks) {
    size_t vlen = 0;
    uint8_t *v = load(vector, &vlen);
    assert_int_equal(vlen, SIG_OFF + 4096);
    assert_memory_equal(ours, v, SIG_OFF); /* data + 0xFF padding */
    for (unsigned b = 0; b < blocks; b++) {
        assert_block_like(ours + SIG_OFF + b * 1216, v + SIG_OFF + b * 1216);
    }
    size_t rest = SIG_OFF + blocks * 1216;
    assert_memory_equal(ours + rest, v + rest, vlen - rest);
    free(v);
}

static void expect_verify(const uint8_t *img, size_t len, const char *pub, enum fk_err want,
                          int block) {
    struct fk_ota_key *k = key(pub, 0);
    struct fk_ota_verify_result r;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_ota_verify(img, len, &k, 1, &r, &d);
    if (rc != want) {
        fprintf(stderr, "verify with %s: %s (%s)\n", pub, fk_errname(rc), d.msg);
    }
    assert_int_equal(rc, want);
    assert_int_equal(r.block, block);
    fk_ota_key_free(k);
}

static void ota_sign_p256_matches_espsecure_layout(void **state) {
    (void)state;
    static const char *const keys[] = {"key_a.pem"};
    size_t len = 0;
    uint8_t *out = sign_app(keys, 1, &len);
    assert_same_layout(out, "app_signed_a.bin", 1);
    expect_verify(out, len, "key_a.pub.pem", FK_OK, 0);
    expect_verify(out, len, "key_b.pub.pem", FK_E_VERIFY, -1);
    free(out);
}

static void ota_sign_dual_matches_espsecure_layout(void **state) {
    (void)state;
    static const char *const keys[] = {"key_a.pem", "key_b.pem"};
    size_t len = 0;
    uint8_t *out = sign_app(keys, 2, &len);
    assert_same_layout(out, "app_signed_ab.bin", 2);
    expect_verify(out, len, "key_a.pub.pem", FK_OK, 0);
    expect_verify(out, len, "key_b.pub.pem", FK_OK, 1);
    expect_verify(out, len, "key_rsa.pub.pem", FK_E_VERIFY, -1);
    free(out);
}

static void ota_sign_rsa_matches_espsecure_layout(void **state) {
    (void)state;
    static const char *const keys[] = {"key_rsa.pem"};
    size_t len = 0;
    uint8_t *out = sign_app(keys, 1, &len);
    assert_same_layout(out, "app_signed_rsa.bin", 1);
    expect_verify(out, len, "key_rsa.pub.pem", FK_OK, 0);
    expect_verify(out, len, "key_a.pub.pem", FK_E_VERIFY, -1);
    free(out);
}

static void ota_append_keeps_block0_and_matches_espsecure(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *in = load("app_signed_a.bin", &len);
    struct fk_ota_key *kb = key("key_b.pem", 1);
    uint8_t *out = malloc(len);
    size_t out_len = 0;
    assert_int_equal(fk_ota_sign_append(in, len, &kb, 1, out, len, &out_len, NULL), FK_OK);
    assert_int_equal(out_len, len);
    /* Block 0 is espsecure's, untouched; block 1 is laid out as espsecure's append. */
    assert_memory_equal(out, in, SIG_OFF + 1216);
    assert_same_layout(out, "app_signed_a_plus_b.bin", 2);
    expect_verify(out, len, "key_a.pub.pem", FK_OK, 0);
    expect_verify(out, len, "key_b.pub.pem", FK_OK, 1);

    /* A third block fits, a fourth does not. */
    struct fk_ota_key *kr = key("key_rsa.pem", 1);
    assert_int_equal(fk_ota_sign_append(out, len, &kr, 1, out, len, &out_len, NULL), FK_OK);
    expect_verify(out, len, "key_rsa.pub.pem", FK_OK, 2);
    expect_verify(out, len, "key_b.pub.pem", FK_OK, 1);
    assert_int_equal(fk_ota_sign_append(out, len, &kb, 1, out, len, &out_len, NULL), FK_E_NOSPACE);

    /* Appending to a tampered image or to unsigned data is refused. */
    size_t tlen = 0;
    uint8_t *t = load("app_signed_a_tampered.bin", &tlen);
    assert_int_equal(fk_ota_sign_append(t, tlen, &kb, 1, out, len, &out_len, NULL), FK_E_MISMATCH);
    memset(t + SIG_OFF, 0xFF, 4096);
    assert_int_equal(fk_ota_sign_append(t, tlen, &kb, 1, out, len, &out_len, NULL), FK_E_PARSE);
    fk_ota_key_free(kb);
    fk_ota_key_free(kr);
    free(t);
    free(in);
    free(out);
}

static struct fk_ota_key *gen_key(const char *alg, const char *param) {
    EVP_PKEY *pk = strcmp(alg, "EC") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", param)
                                          : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    assert_non_null(pk);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
    char *mem = NULL;
    long n = BIO_get_mem_data(b, &mem);
    struct fk_ota_key *k = NULL;
    assert_int_equal(fk_ota_key_from_pem((const uint8_t *)mem, (size_t)n, "gen", 1, &k, NULL),
                     FK_OK);
    BIO_free(b);
    EVP_PKEY_free(pk);
    return k;
}

static void ota_sign_p384_uses_sha384_and_verifies(void **state) {
    (void)state;
    struct fk_ota_key *k = gen_key("EC", "P-384");
    assert_int_equal(fk_ota_key_scheme(k), FK_OTA_SCHEME_ECDSA_P384);
    uint8_t data[5000];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 13);
    }
    size_t total = fk_ota_signed_size(sizeof data);
    assert_int_equal(total, 8192 + 4096);
    uint8_t *out = malloc(total);
    size_t len = 0;
    assert_int_equal(fk_ota_sign(data, sizeof data, &k, 1, out, total, &len, NULL), FK_OK);
    const uint8_t *blk = out + 8192;
    assert_int_equal(blk[0], 0xE7);
    assert_int_equal(blk[1], 0x03);
    assert_int_equal(blk[2], 0x01); /* ECDSA_SHA_384 */
    assert_int_equal(blk[52], 3);   /* CURVE_ID_P384 */
    uint8_t md[48];
    unsigned mdn = 0;
    assert_int_equal(EVP_Digest(out, 8192, md, &mdn, EVP_sha384(), NULL), 1);
    assert_memory_equal(blk + 4, md, 48);
    /* The key digest is SHA-256 over curve id + x + y little-endian (97 bytes). */
    uint8_t kd[32];
    uint8_t want[32];
    assert_int_equal(fk_ota_key_digest(k, kd), FK_OK);
    assert_int_equal(EVP_Digest(blk + 52, 97, want, &mdn, EVP_sha256(), NULL), 1);
    assert_memory_equal(kd, want, 32);
    struct fk_ota_verify_result r;
    assert_int_equal(fk_ota_verify(out, len, &k, 1, &r, NULL), FK_OK);
    assert_int_equal(r.block, 0);
    /* The block's key round-trips to the same public key. */
    struct fk_ota_sig_sector sec;
    char pem[1024];
    assert_int_equal(fk_ota_sig_sector_parse(out, len, &sec, NULL), FK_OK);
    assert_int_equal(fk_ota_block_pubkey_pem(&sec.blocks[0], pem, sizeof pem), FK_OK);
    struct fk_ota_key *again = NULL;
    assert_int_equal(fk_ota_key_from_pem((const uint8_t *)pem, strlen(pem), "blk", 0, &again, NULL),
                     FK_OK);
    assert_int_equal(fk_ota_verify(out, len, &again, 1, &r, NULL), FK_OK);
    fk_ota_key_free(again);
    assert_int_equal(fk_ota_block_pubkey_pem(&sec.blocks[1], pem, sizeof pem), FK_E_ARG);
    struct fk_ota_key *other = gen_key("EC", "P-384");
    assert_int_equal(fk_ota_verify(out, len, &other, 1, &r, NULL), FK_E_VERIFY);
    fk_ota_key_free(other);
    fk_ota_key_free(k);
    free(out);
}

static void ota_sign_rsa_generated_key_and_aligned_input(void **state) {
    (void)state;
    struct fk_ota_key *k = gen_key("RSA", NULL);
    uint8_t data[8192];
    memset(data, 0x5A, sizeof data);
    size_t total = fk_ota_signed_size(sizeof data); /* already aligned: no padding */
    assert_int_equal(total, 8192 + 4096);
    uint8_t *out = malloc(total);
    size_t len = 0;
    assert_int_equal(fk_ota_sign(data, sizeof data, &k, 1, out, total, &len, NULL), FK_OK);
    assert_memory_equal(out, data, sizeof data);
    struct fk_ota_sig_sector sec;
    assert_int_equal(fk_ota_sig_sector_parse(out, len, &sec, NULL), FK_OK);
    int dok = 0;
    int sok = 0;
    assert_int_equal(fk_ota_block_check(&sec, out, 0, &dok, &sok), FK_OK);
    assert_true(dok && sok);
    assert_int_equal(fk_ota_verify(out, len, &k, 1, NULL, NULL), FK_OK);
    fk_ota_key_free(k);
    free(out);
}

static void ota_sign_refuses_bad_keys(void **state) {
    (void)state;
    struct fk_ota_key *pub = key("key_a.pub.pem", 0);
    struct fk_ota_key *priv = key("key_a.pem", 1);
    uint8_t data[16] = {0};
    uint8_t out[8192];
    size_t len = 0;
    assert_int_equal(fk_ota_sign(data, sizeof data, &pub, 1, out, sizeof out, &len, NULL),
                     FK_E_ARG);
    assert_int_equal(fk_ota_sign(data, sizeof data, &priv, 0, out, sizeof out, &len, NULL),
                     FK_E_ARG);
    struct fk_ota_key *four[4] = {priv, priv, priv, priv};
    assert_int_equal(fk_ota_sign(data, sizeof data, four, 4, out, sizeof out, &len, NULL),
                     FK_E_NOSPACE);
    struct fk_ota_key *k = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ota_key_load(vpath("key_a.pub.pem"), 1, &k, &d), FK_E_ARG);
    assert_non_null(strstr(d.msg, "key_a.pub.pem"));
    assert_int_equal(fk_ota_key_load(vpath("key_a.digest.bin"), 0, &k, &d), FK_E_PARSE);
    assert_int_equal(fk_ota_key_load(vpath("app.bin"), 0, &k, &d), FK_E_TOOBIG);
    assert_int_equal(fk_ota_key_load(vpath("no-such.pem"), 0, &k, &d), FK_E_IO);
    assert_null(k);
    /* RSA-2048 and P-521 are not Secure Boot V2 keys. */
    static const char *bad[][2] = {{"RSA", NULL}, {"EC", "P-521"}};
    for (int i = 0; i < 2; i++) {
        EVP_PKEY *pk = i == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                              : EVP_PKEY_Q_keygen(NULL, NULL, bad[i][0], bad[i][1]);
        BIO *b = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL), 1);
        char *mem = NULL;
        long n = BIO_get_mem_data(b, &mem);
        assert_int_equal(fk_ota_key_from_pem((const uint8_t *)mem, (size_t)n, "x", 1, &k, NULL),
                         FK_E_UNSUPPORTED);
        BIO_free(b);
        EVP_PKEY_free(pk);
    }
    fk_ota_key_free(pub);
    fk_ota_key_free(priv);
}

/* Flip one byte at off in a copy of img and expect verification to fail. */
static void expect_tamper_detected(const uint8_t *img, size_t len, size_t off, const char *pub) {
    uint8_t *t = malloc(len);
    memcpy(t, img, len);
    t[off] ^= 0x01;
    struct fk_ota_key *k = key(pub, 0);
    enum fk_err rc = fk_ota_verify(t, len, &k, 1, NULL, NULL);
    if (rc == FK_OK) {
        fprintf(stderr, "tamper at 0x%zx not detected\n", off);
    }
    assert_int_not_equal(rc, FK_OK);
    fk_ota_key_free(k);
    free(t);
}

static void ota_verify_detects_tampering_anywhere(void **state) {
    (void)state;
    static const char *const keys[] = {"key_a.pem", "key_b.pem"};
    size_t len = 0;
    uint8_t *out = sign_app(keys, 2, &len);
    const size_t s = SIG_OFF;
    const size_t spots[] = {
        0,
        0x1000,
        99999, /* image bytes */
        100000,
        101000,
        SIG_OFF - 1, /* the 0xFF padding */
        s + 0,
        s + 1,
        s + 2,
        s + 3, /* magic, version, sha version, reserved */
        s + 4,
        s + 35, /* image digest */
        s + 36,
        s + 37,
        s + 100, /* curve id, key */
        s + 101,
        s + 164, /* r, s */
        s + 165,
        s + 1195, /* zero padding under the CRC */
        s + 1196,
        s + 1199, /* CRC */
        s + 1200,
        s + 1215, /* padding after the CRC */
        s + 1216 + 101,
        s + 1216 + 1196, /* block 1: signature, CRC */
        s + 2432,
        s + 3000,
        s + 3647, /* erased slot 2 */
        s + 3648,
        s + 4095, /* sector fill */
    };
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        expect_tamper_detected(out, len, spots[i], "key_a.pub.pem");
        expect_tamper_detected(out, len, spots[i], "key_b.pub.pem");
    }
    /* A consistent forgery: change the signature and recompute the CRC. */
    uint8_t *t = malloc(len);
    memcpy(t, out, len);
    t[s + 120] ^= 0x80;
    fk_store_le32(t + s + 1196, fk_crc32_le(0, t + s, 1196));
    expect_verify(t, len, "key_a.pub.pem", FK_E_VERIFY, -1);
    expect_verify(t, len, "key_b.pub.pem", FK_OK, 1); /* block 1 is untouched */
    struct fk_ota_key *ka = key("key_a.pub.pem", 0);
    struct fk_ota_verify_result r;
    assert_int_equal(fk_ota_verify(t, len, &ka, 1, &r, NULL), FK_E_VERIFY);
    assert_int_equal(r.verdict[0], FK_OTA_V_BAD_SIG);
    fk_ota_key_free(ka);
    /* Truncated or extended files are not signed images. */
    expect_verify(out, len - 1, "key_a.pub.pem", FK_E_PARSE, -1);
    free(t);
    free(out);
}

/* ---- app image ------------------------------------------------------------------------ */

static uint8_t *mkimg(const struct mkapp_opts *o, size_t *len) {
    size_t n = mkapp_size(o);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    *len = mkapp_build(o, buf, n);
    assert_int_equal(*len, n);
    return buf;
}

static void ota_image_parse_reads_header_segments_and_desc(void **state) {
    (void)state;
    struct mkapp_opts o;
    mkapp_defaults(&o);
    o.version = "2.4.1-rc1";
    o.project_name = "minitrain";
    o.secure_version = 7;
    o.chip_id = 13;
    o.extra_segments = 3;
    o.segment_len = 77; /* rounded up to 80 */
    size_t len = 0;
    uint8_t *img = mkimg(&o, &len);
    struct fk_ota_image im;
    assert_int_equal(fk_ota_image_parse(img, len, &im, NULL), FK_OK);
    assert_int_equal(im.segment_count, 4);
    assert_int_equal(im.chip_id, 13);
    assert_int_equal(im.entry_addr, 0x40080400u);
    assert_int_equal(im.image_len, len);
    assert_int_equal(im.hash_appended, 1);
    assert_ptr_equal(im.sha256, img + len - 32);
    assert_int_equal(im.segments[0].load_addr, 0x3F400020u);
    assert_int_equal(im.segments[0].len, 256);
    assert_int_equal(im.segments[0].offset, 32);
    assert_int_equal(im.segments[3].len, 80);
    assert_ptr_equal(im.segments[1].data, img + 32 + 256 + 8);
    assert_true(im.has_app_desc);
    assert_string_equal(im.app_desc.version, "2.4.1-rc1");
    assert_string_equal(im.app_desc.project_name, "minitrain");
    assert_int_equal(im.app_desc.secure_version, 7);
    assert_int_equal((len - 32) % 16, 0);
    /* Trailing bytes (padding, a signature sector) are not part of the image. */
    uint8_t *big = malloc(len + 100);
    memcpy(big, img, len);
    memset(big + len, 0xFF, 100);
    assert_int_equal(fk_ota_image_parse(big, len + 100, &im, NULL), FK_OK);
    assert_int_equal(im.image_len, len);
    free(big);
    free(img);

    o.hash_appended = 0;
    o.extra_segments = 0;
    img = mkimg(&o, &len);
    assert_int_equal(fk_ota_image_parse(img, len, &im, NULL), FK_OK);
    assert_null(im.sha256);
    assert_int_equal(im.image_len, len);
    assert_int_equal(len % 16, 0);
    free(img);
}

static void ota_image_parse_rejects_every_truncation(void **state) {
    (void)state;
    for (int hash = 0; hash < 2; hash++) {
        struct mkapp_opts o;
        mkapp_defaults(&o);
        o.hash_appended = hash;
        o.segment_len = 40;
        size_t len = 0;
        uint8_t *img = mkimg(&o, &len);
        for (size_t n = 0; n < len; n++) {
            /* An exact-size heap copy, so ASan sees any read past n. */
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, img, n);
            struct fk_ota_image im;
            struct fk_diag d;
            fk_diag_init(&d);
            enum fk_err rc = fk_ota_image_parse(cut, n, &im, &d);
            if (rc != FK_E_TRUNCATED) {
                fprintf(stderr, "prefix %zu: %s\n", n, fk_errname(rc));
            }
            assert_int_equal(rc, FK_E_TRUNCATED);
            free(cut);
        }
        free(img);
    }
}

static enum fk_err parse_modified(size_t off, uint8_t val, int xor_it, struct fk_diag *d) {
    struct mkapp_opts o;
    mkapp_defaults(&o);
    size_t len = 0;
    uint8_t *img = mkimg(&o, &len);
    img[off] = xor_it ? (uint8_t)(img[off] ^ val) : val;
    struct fk_ota_image im;
    fk_diag_init(d);
    enum fk_err rc = fk_ota_image_parse(img, len, &im, d);
    free(img);
    return rc;
}

static void ota_image_parse_rejects_bad_fields(void **state) {
    (void)state;
    struct fk_diag d;
    struct mkapp_opts o;
    mkapp_defaults(&o);
    size_t len = mkapp_size(&o);
    assert_int_equal(parse_modified(0, 0xE8, 0, &d), FK_E_PARSE); /* magic */
    assert_non_null(strstr(d.msg, "magic"));
    assert_int_equal(d.offset, 0);
    assert_int_equal(parse_modified(1, 0, 0, &d), FK_E_PARSE);  /* no segments */
    assert_int_equal(parse_modified(1, 17, 0, &d), FK_E_PARSE); /* > ESP_IMAGE_MAX_SEGMENTS */
    /* One segment more than there are: the checksum and hash bytes are read as a segment
     * header, which fails one way or another. */
    assert_int_not_equal(parse_modified(1, 4, 0, &d), FK_OK);
    assert_int_equal(parse_modified(23, 2, 0, &d), FK_E_PARSE); /* hash_appended */
    /* Segment 1 length (at 24 + 8 + 256 + 4) past the end, huge (wrap), unaligned. */
    assert_int_equal(parse_modified(24 + 8 + 256 + 5, 0x40, 1, &d), FK_E_TRUNCATED);
    assert_int_equal(d.offset, 24 + 8 + 256 + 4);
    assert_int_equal(parse_modified(24 + 8 + 256 + 7, 0xFF, 0, &d), FK_E_TRUNCATED);
    assert_int_equal(parse_modified(24 + 8 + 256 + 4, 0x01, 1, &d), FK_E_PARSE);
    /* A data byte, the checksum byte, the appended hash. */
    assert_int_equal(parse_modified(500, 0x10, 1, &d), FK_E_CRC);
    assert_int_equal(parse_modified(len - 33, 0x01, 1, &d), FK_E_CRC);
    assert_int_equal(d.offset, (long long)(len - 33));
    assert_int_equal(parse_modified(len - 1, 0x01, 1, &d), FK_E_CRC);
    assert_non_null(strstr(d.msg, "SHA-256"));
    /* A data byte with the hash off: only the checksum catches it. */
    o.hash_appended = 0;
    size_t n = 0;
    uint8_t *img = mkimg(&o, &n);
    img[600] ^= 0x04;
    struct fk_ota_image im;
    assert_int_equal(fk_ota_image_parse(img, n, &im, NULL), FK_E_CRC);
    free(img);
    /* The vectors' app.bin is raw data, not an app image. */
    size_t alen = 0;
    uint8_t *app = load("app.bin", &alen);
    assert_int_equal(fk_ota_image_parse(app, alen, &im, NULL), FK_E_PARSE);
    free(app);
}

static void ota_signed_app_image_round_trip(void **state) {
    (void)state;
    struct mkapp_opts o;
    mkapp_defaults(&o);
    o.extra_segments = 5;
    o.segment_len = 3000;
    size_t len = 0;
    uint8_t *img = mkimg(&o, &len);
    struct fk_ota_key *k[2] = {key("key_a.pem", 1), key("key_rsa.pem", 1)};
    size_t total = fk_ota_signed_size(len);
    uint8_t *out = malloc(total);
    size_t olen = 0;
    assert_int_equal(fk_ota_sign(img, len, k, 2, out, total, &olen, NULL), FK_OK);
    struct fk_ota_image im;
    assert_int_equal(fk_ota_image_parse(out, olen, &im, NULL), FK_OK);
    assert_int_equal(im.image_len, len);
    assert_int_equal(fk_ota_verify(out, olen, &k[1], 1, NULL, NULL), FK_OK);
    expect_verify(out, olen, "key_a.pub.pem", FK_OK, 0);
    expect_verify(out, olen, "key_rsa.pub.pem", FK_OK, 1);
    fk_ota_key_free(k[0]);
    fk_ota_key_free(k[1]);
    free(img);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ota_vectors_verify_as_espsecure_does),
        cmocka_unit_test(ota_vectors_fail_when_tampered),
        cmocka_unit_test(ota_block_with_bogus_key_fields_verifies_with_nothing),
        cmocka_unit_test(ota_verify_reports_block_verdicts),
        cmocka_unit_test(ota_verify_takes_several_trusted_keys),
        cmocka_unit_test(ota_key_digest_matches_espsecure),
        cmocka_unit_test(ota_sig_sector_parse_vectors),
        cmocka_unit_test(ota_block_pubkey_pem_equals_extracted_key),
        cmocka_unit_test(ota_sign_p256_matches_espsecure_layout),
        cmocka_unit_test(ota_sign_dual_matches_espsecure_layout),
        cmocka_unit_test(ota_sign_rsa_matches_espsecure_layout),
        cmocka_unit_test(ota_append_keeps_block0_and_matches_espsecure),
        cmocka_unit_test(ota_sign_p384_uses_sha384_and_verifies),
        cmocka_unit_test(ota_sign_rsa_generated_key_and_aligned_input),
        cmocka_unit_test(ota_sign_refuses_bad_keys),
        cmocka_unit_test(ota_verify_detects_tampering_anywhere),
        cmocka_unit_test(ota_image_parse_reads_header_segments_and_desc),
        cmocka_unit_test(ota_image_parse_rejects_every_truncation),
        cmocka_unit_test(ota_image_parse_rejects_bad_fields),
        cmocka_unit_test(ota_signed_app_image_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
