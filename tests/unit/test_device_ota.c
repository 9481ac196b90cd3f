/* Device OTA (fkd/ota.h): the Secure Boot V2 verifier against espsecure's vectors, otadata,
 * the streaming update into a 4 MiB flash in memory with the default partition table, boot
 * selection, rollback, anti-rollback, and a power cut at every flash operation of an update,
 * its first boot and its confirmation. Signed images are real: app images from
 * tests/tools/mkappimage, signed by the host module (src/ota) with the vectors' keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/part.h"
#include "fleetkey/ota.h"
#include "fleetkey/partition.h"
#include "mkappimage.h"
#include "ota_fixture.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void trust(struct fkd_sbv2_keys *ks, const char *name) {
    uint8_t der[1024];
    size_t n = fkt_vector_pub_der(name, der, sizeof der);
    assert_int_equal(fkd_sbv2_keys_add(ks, der, n), FKD_OK);
}

/* A P-384 signing key made here (the vectors have none), as a host key and as DER SPKI. */
static struct fk_ota_key *p384_key(uint8_t *der, size_t *der_len) {
    EVP_PKEY *k = EVP_EC_gen("P-384");
    assert_non_null(k);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    char *pem = NULL;
    long plen = BIO_get_mem_data(bio, &pem);
    struct fk_ota_key *hk = NULL;
    assert_int_equal(fk_ota_key_from_pem((const uint8_t *)pem, (size_t)plen, "p384", 1, &hk, NULL),
                     FK_OK);
    uint8_t *p = der;
    int n = i2d_PUBKEY(k, &p);
    assert_true(n > 0);
    *der_len = (size_t)n;
    BIO_free(bio);
    EVP_PKEY_free(k);
    return hk;
}

static void digests(const uint8_t *img, size_t len, uint8_t d256[32], uint8_t d384[48]) {
    SHA256(img, len - FKD_SBV2_SECTOR, d256);
    SHA384(img, len - FKD_SBV2_SECTOR, d384);
}

static enum fkd_err verify_buf(const uint8_t *img, size_t len, const struct fkd_sbv2_keys *ks,
                               struct fkd_sbv2_result *res) {
    uint8_t d256[32], d384[48];
    digests(img, len, d256, d384);
    return fkd_sbv2_verify(img + len - FKD_SBV2_SECTOR, d256, d384, ks, res);
}

static enum fkd_err verify_vector(const char *img, const char *pub, struct fkd_sbv2_result *r) {
    struct fkd_sbv2_keys ks;
    fkd_sbv2_keys_init(&ks);
    trust(&ks, pub);
    size_t len = 0;
    uint8_t *b = fkt_vector_load(img, &len);
    enum fkd_err rc = verify_buf(b, len, &ks, r);
    free(b);
    return rc;
}

/* ---- Secure Boot V2 verifier ---------------------------------------------------------------- */
static void sbv2_vectors_verify_as_espsecure_does(void **state) {
    (void)state;
    struct fkd_sbv2_result r;
    assert_int_equal(verify_vector("app_signed_a.bin", "key_a.pub.pem", &r), FKD_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(r.verdict[1], FKD_SBV2_V_ABSENT);
    assert_int_equal(verify_vector("app_signed_a.bin", "key_b.pub.pem", &r), FKD_E_AUTH);
    assert_int_equal(r.verdict[0], FKD_SBV2_V_UNTRUSTED);
    assert_int_equal(verify_vector("app_signed_ab.bin", "key_a.pub.pem", &r), FKD_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(verify_vector("app_signed_ab.bin", "key_b.pub.pem", &r), FKD_OK);
    assert_int_equal(r.block, 1);
    assert_int_equal(r.verdict[0], FKD_SBV2_V_UNTRUSTED);
    assert_int_equal(verify_vector("app_signed_a_plus_b.bin", "key_a.pub.pem", &r), FKD_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(verify_vector("app_signed_a_plus_b.bin", "key_b.pub.pem", &r), FKD_OK);
    assert_int_equal(r.block, 1);
    assert_int_equal(verify_vector("app_signed_rsa.bin", "key_rsa.pub.pem", &r), FKD_OK);
    assert_int_equal(r.block, 0);
    assert_int_equal(verify_vector("app_signed_rsa.bin", "key_a.pub.pem", &r), FKD_E_AUTH);
    /* "Signature block image digest does not match the actual image digest" */
    assert_int_equal(verify_vector("app_signed_a_tampered.bin", "key_a.pub.pem", &r),
                     FKD_E_CORRUPT);
}

static void sbv2_keys_from_der_match_espsecure_digests(void **state) {
    (void)state;
    /* The eFuse digest espsecure burns is SHA-256 over the block's key fields: converting the
     * DER key into block form must give exactly those fields. */
    static const char *const names[][2] = {{"key_a.pub.pem", "key_a.digest.bin"},
                                           {"key_b.pub.pem", "key_b.digest.bin"},
                                           {"key_rsa.pub.pem", "key_rsa.digest.bin"}};
    for (size_t i = 0; i < 3; i++) {
        struct fkd_sbv2_keys ks;
        fkd_sbv2_keys_init(&ks);
        trust(&ks, names[i][0]);
        uint8_t d[32];
        SHA256(ks.key[0].enc, ks.key[0].enc_len, d);
        size_t len = 0;
        uint8_t *want = fkt_vector_load(names[i][1], &len);
        assert_int_equal(len, 32);
        assert_memory_equal(d, want, 32);
        free(want);
    }
}

static void sbv2_rejects_damage_anywhere_in_the_sector(void **state) {
    (void)state;
    struct fkd_sbv2_keys ks;
    fkd_sbv2_keys_init(&ks);
    trust(&ks, "key_a.pub.pem");
    trust(&ks, "key_b.pub.pem");
    size_t len = 0;
    uint8_t *img = fkt_vector_load("app_signed_ab.bin", &len);
    uint8_t *sec = img + len - FKD_SBV2_SECTOR;
    assert_int_equal(verify_buf(img, len, &ks, NULL), FKD_OK);
    /* Every 7th byte of the sector, one at a time: a changed block fails its CRC or its
     * reserved bytes, a changed empty slot or fill byte is no longer erased: a damaged
     * sector, refused before any signature is looked at. */
    for (size_t i = 0; i < FKD_SBV2_SECTOR; i += 7) {
        sec[i] ^= 0x01;
        assert_int_equal(verify_buf(img, len, &ks, NULL), FKD_E_PARSE);
        sec[i] ^= 0x01;
    }
    /* A signature byte changed and the CRC recomputed: a well-formed block that does not
     * verify; the other block still does. */
    sec[110] ^= 0x01;
    uint32_t crc = (uint32_t)~0u;
    {
        /* zlib CRC-32 of the first 1196 bytes */
        crc = 0xFFFFFFFFu;
        for (size_t j = 0; j < FKD_SBV2_CRC_LEN; j++) {
            crc ^= sec[j];
            for (int b = 0; b < 8; b++) {
                crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
            }
        }
        crc = ~crc;
    }
    fkd_store_le32(sec + FKD_SBV2_CRC_LEN, crc);
    struct fkd_sbv2_result r;
    assert_int_equal(verify_buf(img, len, &ks, &r), FKD_OK);
    assert_int_equal(r.verdict[0], FKD_SBV2_V_BAD_SIG);
    assert_int_equal(r.verdict[1], FKD_SBV2_V_OK);
    assert_int_equal(r.block, 1);
    struct fkd_sbv2_keys only_a;
    fkd_sbv2_keys_init(&only_a);
    trust(&only_a, "key_a.pub.pem");
    assert_int_equal(verify_buf(img, len, &only_a, &r), FKD_E_AUTH);
    /* The data changed: hard failure. */
    img[5] ^= 0x80;
    assert_int_equal(verify_buf(img, len, &ks, &r), FKD_E_CORRUPT);
    free(img);
    /* No keys, bad keys. */
    static uint8_t zsec[FKD_SBV2_SECTOR];
    uint8_t zero[32] = {0};
    assert_int_equal(fkd_sbv2_verify(zsec, zero, NULL, &only_a, NULL), FKD_E_PARSE);
    fkd_sbv2_keys_init(&only_a);
    assert_int_equal(fkd_sbv2_verify(zsec, zero, NULL, &only_a, NULL), FKD_E_ARG);
    assert_int_equal(fkd_sbv2_keys_add(&only_a, zero, sizeof zero), FKD_E_PARSE);
    trust(&only_a, "key_a.pub.pem");
    trust(&only_a, "key_b.pub.pem");
    uint8_t der[1024];
    size_t n = fkt_vector_pub_der("key_rsa.pub.pem", der, sizeof der);
    assert_int_equal(fkd_sbv2_keys_add(&only_a, der, n), FKD_E_NOSPACE);
}

static void sbv2_verifies_host_signed_p384_and_rsa(void **state) {
    (void)state;
    uint8_t der[256];
    size_t der_len = 0;
    struct fk_ota_key *k384 = p384_key(der, &der_len);
    struct fk_ota_key *krsa = fkt_vector_key("key_rsa.pem");
    uint8_t data[10000];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 13u);
    }
    struct fk_ota_key *both[2] = {krsa, k384};
    size_t cap = fk_ota_signed_size(sizeof data), len = 0;
    uint8_t *img = malloc(cap);
    assert_int_equal(fk_ota_sign(data, sizeof data, both, 2, img, cap, &len, NULL), FK_OK);
    struct fkd_sbv2_keys ks;
    struct fkd_sbv2_result r;
    fkd_sbv2_keys_init(&ks);
    assert_int_equal(fkd_sbv2_keys_add(&ks, der, der_len), FKD_OK);
    assert_true(fkd_sbv2_keys_need_sha384(&ks));
    assert_int_equal(verify_buf(img, len, &ks, &r), FKD_OK);
    assert_int_equal(r.block, 1);
    assert_int_equal(r.verdict[0], FKD_SBV2_V_UNTRUSTED);
    fkd_sbv2_keys_init(&ks);
    trust(&ks, "key_rsa.pub.pem");
    assert_int_equal(verify_buf(img, len, &ks, &r), FKD_OK);
    assert_int_equal(r.block, 0);
    /* Without SHA-384 computed, a P-384 block can only be untrusted. */
    uint8_t d256[32], d384[48];
    digests(img, len, d256, d384);
    assert_int_equal(fkd_sbv2_verify(img + len - FKD_SBV2_SECTOR, d256, NULL, &ks, &r), FKD_OK);
    assert_int_equal(r.verdict[1], FKD_SBV2_V_UNTRUSTED);
    free(img);
    fk_ota_key_free(k384);
    fk_ota_key_free(krsa);
}

/* ---- otadata -------------------------------------------------------------------------------- */
static void otadata_crc_and_selection_follow_esp_idf(void **state) {
    (void)state;
    /* Values of esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4) as found in ESP-IDF otadata dumps. */
    assert_int_equal(fkd_otadata_crc(1), 0x4743989Au);
    assert_int_equal(fkd_otadata_crc(2), 0x55F63774u);
    uint8_t buf[2 * 4096];
    memset(buf, 0xFF, sizeof buf);
    struct fkd_otadata od;
    fkd_otadata_parse(buf, sizeof buf, &od);
    assert_int_equal(od.active, -1);
    struct fkd_otadata_entry e;
    memset(&e, 0xFF, sizeof e);
    e.seq = 5;
    e.state = FKD_OTA_IMG_VALID;
    e.crc = fkd_otadata_crc(5);
    fkd_otadata_encode(&e, buf);
    e.seq = 6;
    e.crc = fkd_otadata_crc(6);
    fkd_otadata_encode(&e, buf + 4096);
    fkd_otadata_parse(buf, sizeof buf, &od);
    assert_int_equal(od.active, 1);
    assert_int_equal(fkd_otadata_slot(&od.e[1]), 1); /* (6 - 1) % 2 */
    buf[4096 + 28] ^= 1;                             /* bad CRC: the other one wins */
    fkd_otadata_parse(buf, sizeof buf, &od);
    assert_int_equal(od.active, 0);
    assert_int_equal(fkd_otadata_slot(&od.e[0]), 0);
    fkd_otadata_parse(buf, 100, &od); /* short: only sector 0 is there */
    assert_int_equal(od.active, 0);
    assert_string_equal(fkd_ota_img_state_name(FKD_OTA_IMG_PENDING_VERIFY), "pending-verify");
}

/* ---- a robot in memory ------------------------------------------------------------------------
 */
static struct fkt_flash R;
static uint8_t *base; /* snapshot of a robot before an update */

static void robot_new(void) {
    fkt_flash_new(&R);
    if (base == NULL) {
        base = malloc(FKT_CHIP);
        assert_non_null(base);
    }
}

static void robot_power_on(void) {
    fkt_flash_power_on(&R);
}

/* Streams img in chunks of `chunk` bytes; returns the first error (begin, write or finish). */
static enum fkd_err stream(const uint8_t *img, size_t len, size_t chunk,
                           const struct fkd_sbv2_keys *ks, const struct fkd_ota_boot *running,
                           struct fkd_ota_update *u) {
    fkd_ota_update_init(u);
    enum fkd_err rc = fkd_ota_begin(u, &R.f, &R.t, ks, &R.nvs, running, (uint32_t)len);
    for (size_t off = 0; rc == FKD_OK && off < len; off += chunk) {
        rc = fkd_ota_write(u, img + off, len - off < chunk ? len - off : chunk);
    }
    if (rc == FKD_OK) {
        rc = fkd_ota_finish(u);
    }
    fkd_ota_update_free(u);
    return rc;
}

static void keys_a(struct fkd_sbv2_keys *ks) {
    fkd_sbv2_keys_init(ks);
    trust(ks, "key_a.pub.pem");
}

/* The factory state: v1 (secure_version 1) in ota_0, no otadata, booted once and confirmed. */
static void robot_with_v1(const struct fkd_sbv2_keys *ks) {
    robot_new();
    struct fkd_ota_boot b;
    assert_int_equal(fkd_ota_boot_select(&R.f, &R.t, ks, 0, &b), FKD_OK);
    assert_int_equal(b.slot, -1); /* nothing to boot yet */
    size_t len = 0;
    uint8_t *img = fkt_signed_app("1.0.0", 1, FKT_KA, &len);
    struct fkd_ota_update u;
    assert_int_equal(stream(img, len, 4096, ks, &b, &u), FKD_OK);
    free(img);
    assert_int_equal(fkd_ota_boot_select(&R.f, &R.t, ks, 0, &b), FKD_OK);
    assert_int_equal(b.slot, 0);
    assert_int_equal(b.state, FKD_OTA_IMG_PENDING_VERIFY);
    assert_int_equal(fkd_ota_mark_valid(&R.f, &R.t, &R.nvs, &b), FKD_OK);
    assert_int_equal(fkd_ota_committed_secver(&R.nvs), 1);
}

static struct fkd_ota_boot boot(const struct fkd_sbv2_keys *ks) {
    struct fkd_ota_boot b;
    assert_int_equal(fkd_ota_boot_select(&R.f, &R.t, ks, fkd_ota_committed_secver(&R.nvs), &b),
                     FKD_OK);
    return b;
}

static void ota_update_boots_new_image_and_confirms(void **state) {
    (void)state;
    struct fkd_sbv2_keys ks;
    keys_a(&ks);
    robot_with_v1(&ks);
    struct fkd_ota_boot b = boot(&ks);
    assert_int_equal(b.slot, 0);
    assert_string_equal(b.app.version, "1.0.0");
    assert_int_equal(b.state, FKD_OTA_IMG_VALID);
    assert_true(b.signature_checked);
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);
    struct fkd_ota_update u;
    /* Odd chunk sizes cross every sector and the signature sector boundary. */
    assert_int_equal(stream(img, len, 777, &ks, &b, &u), FKD_OK);
    free(img);
    b = boot(&ks);
    assert_int_equal(b.slot, 1);
    assert_string_equal(b.app.version, "2.0.0");
    assert_string_equal(b.app.project_name, "robot");
    assert_int_equal(b.app.secure_version, 2);
    assert_int_equal(b.state, FKD_OTA_IMG_PENDING_VERIFY);
    assert_int_equal(fkd_ota_committed_secver(&R.nvs), 1); /* not before confirmation */
    assert_int_equal(fkd_ota_mark_valid(&R.f, &R.t, &R.nvs, &b), FKD_OK);
    assert_int_equal(fkd_ota_committed_secver(&R.nvs), 2);
    b = boot(&ks);
    assert_int_equal(b.slot, 1);
    assert_int_equal(b.state, FKD_OTA_IMG_VALID);
    assert_false(b.rolled_back);
    printf("# struct fkd_ota_update: %zu bytes of caller memory\n", sizeof(struct fkd_ota_update));
}

static void ota_rolls_back_an_image_that_never_confirms(void **state) {
    (void)state;
    struct fkd_sbv2_keys ks;
    keys_a(&ks);
    robot_with_v1(&ks);
    struct fkd_ota_boot b = boot(&ks);
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);
    struct fkd_ota_update u;
    assert_int_equal(stream(img, len, 4096, &ks, &b, &u), FKD_OK);
    b = boot(&ks);
    assert_int_equal(b.slot, 1);
    /* No update while the running image is unconfirmed (ESP-IDF refuses it too). */
    assert_int_equal(stream(img, len, 4096, &ks, &b, &u), FKD_E_STATE);
    /* It crashes before its self-test passes: the next boot rolls back. */
    b = boot(&ks);
    assert_true(b.rolled_back);
    assert_int_equal(b.slot, 0);
    assert_string_equal(b.app.version, "1.0.0");
    b = boot(&ks);
    assert_false(b.rolled_back);
    assert_int_equal(b.slot, 0);
    /* An explicit self-test failure: INVALID, previous slot next. */
    assert_int_equal(stream(img, len, 4096, &ks, &b, &u), FKD_OK);
    b = boot(&ks);
    assert_int_equal(b.slot, 1);
    assert_int_equal(fkd_ota_mark_invalid(&R.f, &R.t, &b), FKD_OK);
    b = boot(&ks);
    assert_int_equal(b.slot, 0);
    assert_string_equal(b.app.version, "1.0.0");
    assert_int_equal(fkd_ota_committed_secver(&R.nvs), 1);
    /* The only image cannot roll back to anything. */
    robot_new();
    b = boot(&ks);
    assert_int_equal(stream(img, len, 4096, &ks, &b, &u), FKD_OK);
    b = boot(&ks);
    assert_int_equal(b.slot, 0);
    assert_int_equal(fkd_ota_mark_invalid(&R.f, &R.t, &b), FKD_E_STATE);
    free(img);
}

static void ota_refuses_unsigned_wrong_key_tampered_and_rollback(void **state) {
    (void)state;
    struct fkd_sbv2_keys ks;
    keys_a(&ks);
    robot_with_v1(&ks);
    struct fkd_ota_boot b = boot(&ks);
    struct fkd_ota_update u;
    uint8_t before[2 * 4096];
    const struct fkd_part *odp = fkd_part_find(&R.t, FKD_PART_DATA, FKD_PART_SUB_OTADATA, NULL);
    memcpy(before, R.chip + odp->offset, sizeof before);

    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);
    /* Unsigned: the same app image, its signature sector erased. */
    uint8_t *uns = malloc(len);
    memcpy(uns, img, len);
    memset(uns + len - FKD_SBV2_SECTOR, 0xFF, FKD_SBV2_SECTOR);
    assert_int_equal(stream(uns, len, 1000, &ks, &b, &u), FKD_E_AUTH);
    /* An unsigned app image as built (not padded): not a signed image at all. */
    assert_int_equal(stream(uns, len - FKD_SBV2_SECTOR - 100, 1000, &ks, &b, &u), FKD_E_ARG);
    /* Signed by a key the robot does not trust. */
    size_t blen = 0;
    uint8_t *imgb = fkt_signed_app("2.0.0", 2, FKT_KB, &blen);
    assert_int_equal(stream(imgb, blen, 1000, &ks, &b, &u), FKD_E_AUTH);
    /* Changed after signing, in the app and in the signature sector. */
    memcpy(uns, img, len);
    uns[300] ^= 0x04;
    assert_int_equal(stream(uns, len, 1000, &ks, &b, &u), FKD_E_CORRUPT);
    memcpy(uns, img, len);
    uns[len - FKD_SBV2_SECTOR + 60] ^= 0x04;
    assert_int_equal(stream(uns, len, 1000, &ks, &b, &u), FKD_E_PARSE);
    /* Not an app image: refused at the header, before the slot is erased further. */
    memcpy(uns, img, len);
    uns[0] = 0x00;
    assert_int_equal(stream(uns, len, 1000, &ks, &b, &u), FKD_E_PARSE);
    /* Too short, too long. */
    fkd_ota_update_init(&u);
    assert_int_equal(fkd_ota_begin(&u, &R.f, &R.t, &ks, &R.nvs, &b, (uint32_t)len), FKD_OK);
    assert_int_equal(fkd_ota_write(&u, img, 100), FKD_OK);
    assert_int_equal(fkd_ota_finish(&u), FKD_E_TRUNCATED);
    assert_int_equal(fkd_ota_begin(&u, &R.f, &R.t, &ks, &R.nvs, &b, (uint32_t)len), FKD_OK);
    assert_int_equal(fkd_ota_write(&u, img, len), FKD_OK);
    assert_int_equal(fkd_ota_write(&u, img, 1), FKD_E_RANGE);
    fkd_ota_abort(&u);
    assert_int_equal(fkd_ota_begin(&u, &R.f, &R.t, &ks, &R.nvs, &b, 0x200000), FKD_E_NOSPACE);
    fkd_ota_update_free(&u);
    /* Anti-rollback: secure_version 0 below the committed 1. */
    size_t olen = 0;
    uint8_t *old = fkt_signed_app("0.9.0", 0, FKT_KA, &olen);
    assert_int_equal(stream(old, olen, 1000, &ks, &b, &u), FKD_E_POLICY);
    /* Development without a key: updates disabled. */
    struct fkd_sbv2_keys none;
    fkd_sbv2_keys_init(&none);
    assert_int_equal(stream(img, len, 1000, &none, &b, &u), FKD_E_POLICY);
    assert_int_equal(stream(img, len, 1000, NULL, &b, &u), FKD_E_POLICY);
    /* None of it touched otadata; the robot still runs v1. */
    assert_memory_equal(before, R.chip + odp->offset, sizeof before);
    b = boot(&ks);
    assert_int_equal(b.slot, 0);
    assert_string_equal(b.app.version, "1.0.0");
    /* The bootloader's own anti-rollback: a committed version above v1's refuses to boot it. */
    struct fkd_ota_boot b2;
    assert_int_equal(fkd_ota_boot_select(&R.f, &R.t, &ks, 5, &b2), FKD_OK);
    assert_int_equal(b2.slot, -1);
    free(img);
    free(imgb);
    free(uns);
    free(old);
}

static void ota_dual_signed_image_accepted_by_old_and_new_key(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KAB, &len);
    static const char *const trusted[][2] = {
        {"key_a.pub.pem", NULL}, {"key_b.pub.pem", NULL}, {"key_a.pub.pem", "key_b.pub.pem"}};
    for (int i = 0; i < 3; i++) {
        struct fkd_sbv2_keys ks;
        fkd_sbv2_keys_init(&ks);
        trust(&ks, trusted[i][0]);
        if (trusted[i][1] != NULL) {
            trust(&ks, trusted[i][1]);
        }
        robot_new();
        struct fkd_ota_boot b = boot(&ks);
        struct fkd_ota_update u;
        fkd_ota_update_init(&u);
        assert_int_equal(fkd_ota_begin(&u, &R.f, &R.t, &ks, &R.nvs, &b, (uint32_t)len), FKD_OK);
        assert_int_equal(fkd_ota_write(&u, img, len), FKD_OK);
        assert_int_equal(fkd_ota_finish(&u), FKD_OK);
        assert_int_equal(fkd_ota_sig_result(&u)->block, i == 1 ? 1 : 0);
        fkd_ota_update_free(&u);
        b = boot(&ks);
        assert_int_equal(b.slot, 0);
        assert_true(b.signature_checked);
    }
    /* A device that trusts only the new key refuses an old-key-only image. */
    struct fkd_sbv2_keys kb;
    fkd_sbv2_keys_init(&kb);
    trust(&kb, "key_b.pub.pem");
    robot_new();
    size_t alen = 0;
    uint8_t *olda = fkt_signed_app("2.0.0", 2, FKT_KA, &alen);
    struct fkd_ota_boot b = boot(&kb);
    struct fkd_ota_update u;
    assert_int_equal(stream(olda, alen, 4096, &kb, &b, &u), FKD_E_AUTH);
    free(olda);
    free(img);
}

/* ---- power cut sweep ------------------------------------------------------------------------ */
/* Everything an update costs in flash operations: stream v2, first boot, self-test passes. */
static enum fkd_err update_boot_confirm(const uint8_t *img, size_t len,
                                        const struct fkd_sbv2_keys *ks) {
    struct fkd_ota_boot b;
    enum fkd_err rc = fkd_ota_boot_select(&R.f, &R.t, ks, fkd_ota_committed_secver(&R.nvs), &b);
    if (rc != FKD_OK) {
        return rc;
    }
    struct fkd_ota_update u;
    rc = stream(img, len, 1500, ks, &b, &u);
    if (rc != FKD_OK) {
        return rc;
    }
    rc = fkd_ota_boot_select(&R.f, &R.t, ks, fkd_ota_committed_secver(&R.nvs), &b);
    if (rc != FKD_OK) {
        return rc;
    }
    return fkd_ota_mark_valid(&R.f, &R.t, &R.nvs, &b);
}

static void ota_power_cut_at_every_write_still_boots(void **state) {
    (void)state;
    struct fkd_sbv2_keys ks;
    keys_a(&ks);
    robot_with_v1(&ks);
    memcpy(base, R.chip, FKT_CHIP);
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);
    /* Count the operations of a clean run. */
    unsigned long before = R.m.ops;
    assert_int_equal(update_boot_confirm(img, len, &ks), FKD_OK);
    unsigned long total = R.m.ops - before;
    assert_true(total > 5);
    unsigned points = 0, saw_old = 0, saw_new = 0;
    for (int torn = 0; torn <= 1; torn++) {
        for (unsigned long k = 1; k <= total; k++) {
            memcpy(R.chip, base, FKT_CHIP);
            robot_power_on();
            fkd_flash_mem_cut(&R.m, k, torn);
            enum fkd_err rc = update_boot_confirm(img, len, &ks);
            assert_int_equal(rc, FKD_E_POWERCUT);
            /* Power back: the robot boots a valid image, old or new, never neither; and it
             * keeps booting one on the boot after (a rollback, if any, is complete). */
            robot_power_on();
            for (int again = 0; again < 3; again++) {
                struct fkd_ota_boot b = boot(&ks);
                assert_true(b.slot == 0 || b.slot == 1);
                assert_true(b.signature_checked);
                if (strcmp(b.app.version, "1.0.0") == 0) {
                    assert_int_equal(b.slot, 0);
                    saw_old += again == 0;
                } else {
                    assert_string_equal(b.app.version, "2.0.0");
                    assert_int_equal(b.slot, 1);
                    saw_new += again == 0;
                    /* The new image confirms this time; then it stays. */
                    assert_int_equal(fkd_ota_mark_valid(&R.f, &R.t, &R.nvs, &b), FKD_OK);
                }
            }
            points++;
        }
    }
    assert_true(saw_old > 0 && saw_new > 0);
    printf("# power cut swept at %u points (%lu operations x clean/torn): %u booted the old "
           "image, %u the new\n",
           points, total, saw_old, saw_new);
    free(img);
}

/* The bootloader's own writes: NEW -> PENDING_VERIFY on the first boot, PENDING_VERIFY ->
 * ABORTED on the boot after an unconfirmed one, INVALID after a failed self-test. A cut in any
 * of them (clean or torn) still leaves a bootable image on the next power-on. */
static void ota_power_cut_in_boot_state_changes(void **state) {
    (void)state;
    struct fkd_sbv2_keys ks;
    keys_a(&ks);
    robot_with_v1(&ks);
    struct fkd_ota_boot b = boot(&ks);
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);
    struct fkd_ota_update u;
    assert_int_equal(stream(img, len, 4096, &ks, &b, &u), FKD_OK);
    free(img);
    memcpy(base, R.chip, FKT_CHIP); /* v2 installed, NEW */
    unsigned points = 0;
    for (int phase = 0; phase < 3; phase++) {
        for (int torn = 0; torn <= 1; torn++) {
            for (unsigned long k = 1; k <= 2; k++) { /* each state change: erase + write */
                memcpy(R.chip, base, FKT_CHIP);
                robot_power_on();
                if (phase >= 1) {
                    b = boot(&ks); /* v2 now PENDING_VERIFY */
                    assert_int_equal(b.slot, 1);
                }
                fkd_flash_mem_cut(&R.m, k, torn);
                struct fkd_ota_boot c;
                enum fkd_err rc = phase == 2 ? fkd_ota_mark_invalid(&R.f, &R.t, &b)
                                             : fkd_ota_boot_select(&R.f, &R.t, &ks, 1, &c);
                assert_int_equal(rc, FKD_E_POWERCUT);
                robot_power_on();
                for (int again = 0; again < 2; again++) {
                    c = boot(&ks);
                    assert_true(c.slot == 0 || c.slot == 1);
                    assert_string_equal(c.app.version, c.slot == 0 ? "1.0.0" : "2.0.0");
                }
                points++;
            }
        }
    }
    assert_int_equal(points, 12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sbv2_vectors_verify_as_espsecure_does),
        cmocka_unit_test(sbv2_keys_from_der_match_espsecure_digests),
        cmocka_unit_test(sbv2_rejects_damage_anywhere_in_the_sector),
        cmocka_unit_test(sbv2_verifies_host_signed_p384_and_rsa),
        cmocka_unit_test(otadata_crc_and_selection_follow_esp_idf),
        cmocka_unit_test(ota_update_boots_new_image_and_confirms),
        cmocka_unit_test(ota_rolls_back_an_image_that_never_confirms),
        cmocka_unit_test(ota_refuses_unsigned_wrong_key_tampered_and_rollback),
        cmocka_unit_test(ota_dual_signed_image_accepted_by_old_and_new_key),
        cmocka_unit_test(ota_power_cut_at_every_write_still_boots),
        cmocka_unit_test(ota_power_cut_in_boot_state_changes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(R.chip);
    free(base);
    fkd_nvs_free(&R.nvs);
    return rc;
}
