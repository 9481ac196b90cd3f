/* Unit tests of the virtual eFuse array (device/src/boot/efuse.c) and the Secure Boot V2
 * checks against its key digests (sbv2_verify.c, ota.c's bootloader): burns land where
 * espefuse.py puts them on an ESP32-C3, a second burn of the same digest or into a burned
 * block is refused and changes no bit, revocation, the file format and its refusals, and the
 * espsecure vector images verify against the burned digest of their own key only (the digests
 * are espsecure's digest-sbv2-public-key output, the .digest.bin files of tests/vectors/sbv2). */
#include "fkd/efuse.h"
#include "fkd/ota.h"
#include "fkd/part.h"
#include "ota_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

static void digest_of(const char *name, uint8_t out[32]) {
    size_t len = 0;
    uint8_t *b = fkt_vector_load(name, &len);
    assert_int_equal(len, 32);
    memcpy(out, b, 32);
    free(b);
}

static void burn(struct fkd_efuse *e, int key, const char *digest_file, enum fkd_err want,
                 unsigned want_key, unsigned want_purpose) {
    uint8_t d[32];
    unsigned k = 99, p = 99;
    const char *why = NULL;
    struct fkd_efuse before = *e;
    digest_of(digest_file, d);
    enum fkd_err rc = fkd_efuse_burn_key_digest(e, key, d, &k, &p, &why);
    assert_non_null(why);
    if (rc != want) {
        fail_msg("burn %s into %d: %s (%s), want %s", digest_file, key, fkd_errname(rc), why,
                 fkd_errname(want));
    }
    if (rc == FKD_OK) {
        assert_int_equal(k, want_key);
        assert_int_equal(p, want_purpose);
    } else {
        assert_true(why[0] != '\0');
        assert_memory_equal(&before, e, sizeof before); /* a refusal changes nothing */
    }
    /* One-way: every bit set before is still set. */
    for (size_t i = 0; i < sizeof e->raw; i++) {
        assert_int_equal(e->raw[i] & before.raw[i], before.raw[i]);
    }
}

static void efuse_burn_lands_where_espefuse_puts_it(void **st) {
    (void)st;
    struct fkd_efuse e;
    uint8_t d[32], got[3][32];
    fkd_efuse_blank(&e);
    assert_int_equal(fkd_efuse_sb_digests(&e, got), 0);
    burn(&e, -1, "key_a.digest.bin", FKD_OK, 0, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0);
    /* BLOCK_KEY0 = BLOCK4 at body offset 112 holds the digest as espsecure wrote it. */
    digest_of("key_a.digest.bin", d);
    assert_memory_equal(e.raw + 112, d, 32);
    assert_int_equal(fkd_efuse_key_purpose(&e, 0), 9);
    assert_int_equal(fkd_efuse_field(&e, 0, 88, 4), 9);
    assert_int_equal(fkd_efuse_field(&e, 0, 23, 1), 1); /* WR_DIS.BLOCK_KEY0 */
    assert_int_equal(fkd_efuse_field(&e, 0, 8, 1), 1);  /* WR_DIS.KEY_PURPOSE_0 */
    assert_int_equal(fkd_efuse_field(&e, 0, 32, 1), 0); /* RD_DIS.BLOCK_KEY0: readable */
    assert_int_equal(fkd_efuse_sb_digests(&e, got), 1);
    assert_memory_equal(got[0], d, 32);
    assert_string_equal(fkd_efuse_purpose_name(fkd_efuse_key_purpose(&e, 0)),
                        "SECURE_BOOT_DIGEST0");
}

static void efuse_second_burn_is_refused(void **st) {
    (void)st;
    struct fkd_efuse e;
    fkd_efuse_blank(&e);
    burn(&e, 0, "key_a.digest.bin", FKD_OK, 0, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0);
    burn(&e, 0, "key_a.digest.bin", FKD_E_STATE, 0, 0);  /* the same digest again */
    burn(&e, -1, "key_a.digest.bin", FKD_E_STATE, 0, 0); /* ... into any block */
    burn(&e, 0, "key_b.digest.bin", FKD_E_STATE, 0, 0);  /* another key into the burned block */
    /* The chip holds three digests: B and the RSA key go into the next blocks, then no more. */
    burn(&e, -1, "key_b.digest.bin", FKD_OK, 1, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST1);
    burn(&e, 4, "key_rsa.digest.bin", FKD_OK, 4, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST2);
    struct fkd_efuse full = e;
    uint8_t other[32];
    memset(other, 0x5a, sizeof other);
    unsigned k, p;
    const char *why;
    assert_int_equal(fkd_efuse_burn_key_digest(&e, -1, other, &k, &p, &why), FKD_E_NOSPACE);
    assert_memory_equal(&full, &e, sizeof e);
    uint8_t zero[32] = {0};
    assert_int_equal(fkd_efuse_burn_key_digest(&e, -1, zero, &k, &p, &why), FKD_E_ARG);
    assert_int_equal(fkd_efuse_burn_key_digest(&e, 6, other, &k, &p, &why), FKD_E_ARG);
}

static void efuse_blocks_with_a_purpose_or_data_are_skipped(void **st) {
    (void)st;
    struct fkd_efuse e;
    fkd_efuse_blank(&e);
    e.raw[112 + 5] = 0x01; /* BLOCK_KEY0 holds user data */
    e.raw[11] |= 0x40;     /* KEY_PURPOSE_1 (bits 92..95) = 4, XTS_AES_128_KEY */
    e.raw[3] |= 0x02;      /* WR_DIS bit 25: BLOCK_KEY2 write-protected */
    burn(&e, 0, "key_a.digest.bin", FKD_E_STATE, 0, 0);
    burn(&e, 1, "key_a.digest.bin", FKD_E_STATE, 0, 0);
    burn(&e, 2, "key_a.digest.bin", FKD_E_STATE, 0, 0);
    burn(&e, -1, "key_a.digest.bin", FKD_OK, 3, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0);
}

static void efuse_revoked_or_read_protected_digests_are_not_trusted(void **st) {
    (void)st;
    struct fkd_efuse e;
    uint8_t got[3][32], db[32];
    fkd_efuse_blank(&e);
    burn(&e, -1, "key_a.digest.bin", FKD_OK, 0, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0);
    burn(&e, -1, "key_b.digest.bin", FKD_OK, 1, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST1);
    assert_int_equal(fkd_efuse_sb_digests(&e, got), 2);
    assert_int_equal(fkd_efuse_revoke_digest(&e, 0), FKD_OK);
    assert_int_equal(fkd_efuse_field(&e, 0, 85, 1), 1);
    assert_int_equal(fkd_efuse_sb_digests(&e, got), 1);
    digest_of("key_b.digest.bin", db);
    assert_memory_equal(got[0], db, 32);
    assert_int_equal(fkd_efuse_revoke_digest(&e, 0), FKD_OK); /* idempotent */
    e.raw[0] |= 0x40;                                         /* WR_DIS bit 6: REVOKE1 locked */
    assert_int_equal(fkd_efuse_revoke_digest(&e, 1), FKD_E_STATE);
    assert_int_equal(fkd_efuse_revoke_digest(&e, 3), FKD_E_ARG);
    e.raw[4] |= 0x02; /* RD_DIS bit 33: BLOCK_KEY1 reads as zeros */
    assert_int_equal(fkd_efuse_sb_digests(&e, got), 0);
}

static void efuse_file_round_trip_and_refusals(void **st) {
    (void)st;
    struct fkd_efuse e, back;
    uint8_t file[FKD_EFUSE_FILE_LEN + 1];
    fkd_efuse_blank(&e);
    burn(&e, -1, "key_rsa.digest.bin", FKD_OK, 0, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0);
    fkd_efuse_encode(&e, file);
    assert_memory_equal(file, "FKEFUSE1esp32c3\0", 16);
    assert_int_equal(fkd_efuse_parse(file, FKD_EFUSE_FILE_LEN, &back), FKD_OK);
    assert_memory_equal(&back, &e, sizeof e);
    for (size_t n = 0; n < FKD_EFUSE_FILE_LEN; n++) {
        assert_int_equal(fkd_efuse_parse(file, n, &back), FKD_E_TRUNCATED);
    }
    file[FKD_EFUSE_FILE_LEN] = 0;
    assert_int_equal(fkd_efuse_parse(file, sizeof file, &back), FKD_E_PARSE);
    file[0] = 'X';
    assert_int_equal(fkd_efuse_parse(file, FKD_EFUSE_FILE_LEN, &back), FKD_E_PARSE);
    file[0] = 'F';
    file[13] = '6'; /* esp32c6 */
    assert_int_equal(fkd_efuse_parse(file, FKD_EFUSE_FILE_LEN, &back), FKD_E_PARSE);
}

/* The trusted set of a bootloader whose eFuse holds the digests of the named vector keys. */
static void efuse_keys(struct fkd_sbv2_keys *ks, const char *const *digest_files) {
    struct fkd_efuse e;
    uint8_t got[3][32];
    fkd_efuse_blank(&e);
    for (unsigned i = 0; digest_files[i] != NULL; i++) {
        uint8_t d[32];
        unsigned k, p;
        const char *why;
        digest_of(digest_files[i], d);
        assert_int_equal(fkd_efuse_burn_key_digest(&e, -1, d, &k, &p, &why), FKD_OK);
    }
    fkd_sbv2_keys_init(ks);
    unsigned n = fkd_efuse_sb_digests(&e, got);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(fkd_sbv2_keys_add_digest(ks, got[i]), FKD_OK);
    }
}

static enum fkd_err verify_image(const char *img, const char *const *digest_files,
                                 struct fkd_sbv2_result *r) {
    struct fkd_sbv2_keys ks;
    uint8_t d256[32], d384[48];
    size_t len = 0;
    efuse_keys(&ks, digest_files);
    uint8_t *b = fkt_vector_load(img, &len);
    SHA256(b, len - FKD_SBV2_SECTOR, d256);
    SHA384(b, len - FKD_SBV2_SECTOR, d384);
    enum fkd_err rc = fkd_sbv2_verify(b + len - FKD_SBV2_SECTOR, d256, d384, &ks, r);
    free(b);
    return rc;
}

static void vector_images_verify_against_their_burned_digest(void **st) {
    (void)st;
    static const char *const A[] = {"key_a.digest.bin", NULL};
    static const char *const B[] = {"key_b.digest.bin", NULL};
    static const char *const RSA[] = {"key_rsa.digest.bin", NULL};
    static const char *const ALL[] = {"key_rsa.digest.bin", "key_b.digest.bin", NULL};
    struct fkd_sbv2_result r;
    assert_int_equal(verify_image("app_signed_a.bin", A, &r), FKD_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(r.digest, 0);
    assert_int_equal(r.key, -1);
    assert_int_equal(verify_image("app_signed_a.bin", B, &r), FKD_E_AUTH);
    assert_int_equal(r.verdict[0], FKD_SBV2_V_UNTRUSTED);
    assert_int_equal(verify_image("app_signed_ab.bin", B, &r), FKD_OK);
    assert_int_equal(r.block, 1);
    assert_int_equal(verify_image("app_signed_a_plus_b.bin", B, &r), FKD_OK);
    assert_int_equal(r.block, 1);
    assert_int_equal(verify_image("app_signed_rsa.bin", RSA, &r), FKD_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(verify_image("app_signed_rsa.bin", A, &r), FKD_E_AUTH);
    assert_int_equal(verify_image("app_signed_ab.bin", ALL, &r), FKD_OK);
    assert_int_equal(r.digest, 1); /* B's digest is the second one burned */
    assert_int_equal(verify_image("app_signed_a_tampered.bin", A, &r), FKD_E_CORRUPT);
}

/* The simulated bootloader: with the eFuse digests as its trusted set, an app signed by
 * another key is not booted; one signed by the burned key is. */
static void bootloader_runs_only_apps_signed_by_a_burned_key(void **st) {
    (void)st;
    static struct fkt_flash R;
    static const char *const A[] = {"key_a.digest.bin", NULL};
    static const char *const B[] = {"key_b.digest.bin", NULL};
    struct fkd_sbv2_keys ks;
    struct fkd_ota_boot b;
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 1, FKT_KA, &len);
    for (int round = 0; round < 2; round++) {
        fkt_flash_new(&R);
        const struct fkd_part *p = fkd_part_find(&R.t, FKD_PART_APP, FKD_PART_SUB_OTA_0, NULL);
        assert_non_null(p);
        assert_int_equal(fkd_flash_write(&R.f, p->offset, img, len), FKD_OK);
        efuse_keys(&ks, round == 0 ? B : A);
        assert_int_equal(fkd_ota_boot_select(&R.f, &R.t, &ks, 0, &b), FKD_OK);
        if (round == 0) {
            assert_int_equal(b.slot, -1); /* signed by A, only B's digest burned */
        } else {
            assert_int_equal(b.slot, 0);
            assert_int_equal(b.signature_checked, 1);
            assert_string_equal(b.app.version, "2.0.0");
        }
    }
    free(img);
    free(R.chip);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(efuse_burn_lands_where_espefuse_puts_it),
        cmocka_unit_test(efuse_second_burn_is_refused),
        cmocka_unit_test(efuse_blocks_with_a_purpose_or_data_are_skipped),
        cmocka_unit_test(efuse_revoked_or_read_protected_digests_are_not_trusted),
        cmocka_unit_test(efuse_file_round_trip_and_refusals),
        cmocka_unit_test(vector_images_verify_against_their_burned_digest),
        cmocka_unit_test(bootloader_runs_only_apps_signed_by_a_burned_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
