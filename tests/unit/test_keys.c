/* Unit tests of the keys module: MAC parsing (valid and invalid), identities, OTA keys, the
 * manifest (round trip and every kind of bad input), file modes whatever the umask, and the
 * device NVS image against the golden provisioning vector made by ESP-IDF's generator. */
#include "fleetkey/keys.h"
#include "fleetkey/pki.h"

/* cmocka needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <dirent.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmpdir(void) {
    static char dir[3000];
    const char *base = getenv("FK_TMP");
    snprintf(dir, sizeof dir, "%s", base != NULL ? base : "/tmp/fk_test_keys");
    assert_int_equal(fk_mkdirs(dir, 0700, NULL), FK_OK);
    return dir;
}

static uint8_t *read_vector(const char *name, size_t *len) {
    const char *v = getenv("FK_VECTORS");
    assert_non_null(v);
    char path[4096];
    snprintf(path, sizeof path, "%s/nvs/%s", v, name);
    uint8_t *buf = NULL;
    assert_int_equal(fk_file_read(path, 1 << 20, &buf, len, NULL), FK_OK);
    return buf;
}

static mode_t file_mode(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* ---- MAC and identity ------------------------------------------------------------------ */

static void mac_parse_accepts_both_separators_and_cases(void **state) {
    (void)state;
    uint8_t mac[6];
    const uint8_t want[6] = {0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFE};
    assert_int_equal(fk_keys_mac_parse("AA:BB:CC:DD:EE:FE", mac, NULL), FK_OK);
    assert_memory_equal(mac, want, 6);
    assert_int_equal(fk_keys_mac_parse("aa-bb-cc-dd-ee-fe", mac, NULL), FK_OK);
    assert_memory_equal(mac, want, 6);
    assert_int_equal(fk_keys_mac_parse("aA:bB:Cc:dD:eE:Fe", mac, NULL), FK_OK);
    char s[18];
    fk_keys_mac_format(mac, s);
    assert_string_equal(s, "AA:BB:CC:DD:EE:FE");
    char id[FK_DEVICE_ID_SIZE];
    fk_keys_device_id(mac, id);
    assert_string_equal(id, "robot-AABBCCDDEEFE");
}

static void mac_parse_rejects_malformed(void **state) {
    (void)state;
    const char *bad[] = {
        "",
        "AA:BB:CC:DD:EE",       /* too short */
        "AA:BB:CC:DD:EE:FF:00", /* too long */
        "AA:BB:CC:DD:EE:F",     /* missing digit */
        "AA:BB:CC:DD:EE:FG",    /* not hex */
        "AA-BB:CC:DD:EE:FF",    /* mixed separators */
        "AA.BB.CC.DD.EE.FF",    /* other separator */
        "AABBCCDDEEFF",         /* no separators */
        "AABB:CCDD:EEFF:00",    /* wrong grouping, right length */
        " AA:BB:CC:DD:EE:F",    /* leading space */
        "01:00:5E:00:00:01",    /* multicast */
        "FF:FF:FF:FF:FF:FF",    /* broadcast (multicast bit) */
        "00:00:00:00:00:00",    /* all zero */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t mac[6] = {1, 2, 3, 4, 5, 6};
        struct fk_diag d;
        fk_diag_init(&d);
        assert_int_equal(fk_keys_mac_parse(bad[i], mac, &d), FK_E_PARSE);
        assert_true(strstr(d.msg, "expected") != NULL);
        const uint8_t untouched[6] = {1, 2, 3, 4, 5, 6};
        assert_memory_equal(mac, untouched, 6);
    }
    assert_int_equal(fk_keys_mac_parse(NULL, (uint8_t[6]){0}, NULL), FK_E_PARSE);
}

static void random_mac_is_local_unicast(void **state) {
    (void)state;
    uint8_t a[6];
    uint8_t b[6];
    for (int i = 0; i < 64; i++) {
        assert_int_equal(fk_keys_mac_random(a), FK_OK);
        assert_int_equal(a[0] & 0x03, 0x02);
    }
    assert_int_equal(fk_keys_mac_random(b), FK_OK);
    assert_memory_not_equal(a, b, 6);
}

/* ---- OTA keys --------------------------------------------------------------------------- */

static void ota_key_pem_round_trip_and_p256_only(void **state) {
    (void)state;
    const char *dir = tmpdir();
    struct fk_ota_key *k = NULL;
    assert_int_equal(fk_keys_ota_generate(&k), FK_OK);
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    assert_int_equal(fk_keys_ota_public_der(k, der, sizeof der, &der_len), FK_OK);
    assert_int_equal(der_len, 91);
    char path[4096];
    snprintf(path, sizeof path, "%s/ota.pem", dir);
    mode_t old = umask(0);
    assert_int_equal(fk_keys_ota_write_pem(k, path, 0, NULL), FK_OK);
    umask(old);
    assert_int_equal(file_mode(dir, "ota.pem"), 0600);
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    assert_int_equal(fk_file_read(path, 16384, &pem, &pem_len, NULL), FK_OK);
    assert_non_null(strstr((char *)pem, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */
    fk_free_secret(pem, pem_len);
    struct fk_ota_key *k2 = NULL;
    assert_int_equal(fk_keys_ota_load(path, &k2, NULL), FK_OK);
    assert_true(fk_keys_ota_has_private(k2));
    uint8_t der2[FK_OTA_PUB_DER_MAX];
    size_t der2_len = 0;
    assert_int_equal(fk_keys_ota_public_der(k2, der2, sizeof der2, &der2_len), FK_OK);
    assert_int_equal(der2_len, der_len);
    assert_memory_equal(der, der2, der_len);
    fk_keys_ota_free(k2);
    fk_keys_ota_free(k);

    /* P-384 and garbage are refused. */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    assert_non_null(p384);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, p384, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    EVP_PKEY_free(p384);
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_keys_ota_load(path, &k2, &d), FK_E_UNSUPPORTED);
    assert_non_null(strstr(d.msg, "P-256"));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(fk_keys_ota_load(path, &k2, NULL), FK_E_PARSE);
}

/* ---- manifest ---------------------------------------------------------------------------- */

static struct fk_minted *mint_one(int encrypt, const struct fk_ota_key *fleet) {
    const uint8_t mac[6] = {0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFE};
    struct fk_keys_mint_opts o = {.mac = mac,
                                  .name = "lab \"bot\" 1",
                                  .wifi_ssid = "FleetLab-5G",
                                  .wifi_password = "Tr41n-R0b0t#2026",
                                  .ota = fleet,
                                  .encrypt_nvs = encrypt};
    struct fk_minted *d = NULL;
    struct fk_diag diag;
    fk_diag_init(&diag);
    assert_int_equal(fk_keys_mint(&o, &d, &diag), FK_OK);
    return d;
}

static void manifest_round_trip_keeps_seed_order(void **state) {
    (void)state;
    struct fk_minted *d = mint_one(1, NULL);
    char sha[65];
    assert_int_equal(fk_keys_minted_write(d, tmpdir(), "rt", FK_WRITE_NOSYNC, sha, NULL), FK_OK);
    const struct fk_manifest *m = fk_keys_minted_manifest(d);
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(fk_keys_manifest_render(m, &json, &len), FK_OK);
    /* The seed's six fields come first, in the seed's order. */
    const char *order[] = {
        "\"device_id\"",   "\"psk_hex\"",        "\"psk_identity\"",  "\"ota_public_key_der_hex\"",
        "\"provisioned\"", "\"provisioned_at\"", "\"schema_version\""};
    const char *prev = json;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *at = strstr(json, order[i]);
        assert_non_null(at);
        assert_true(at >= prev);
        prev = at;
    }
    assert_non_null(strstr(json, "\"provisioned\": false"));
    assert_non_null(strstr(json, "\"provisioned_at\": null"));
    assert_non_null(strstr(json, "\"device_id\": \"robot-AABBCCDDEEFE\""));
    assert_non_null(strstr(json, "\"name\": \"lab \\\"bot\\\" 1\""));
    assert_null(strstr(json, "Tr41n")); /* the Wi-Fi password is not in the manifest */

    struct fk_manifest back;
    struct fk_diag diag;
    fk_diag_init(&diag);
    assert_int_equal(fk_keys_manifest_parse(json, len, &back, &diag), FK_OK);
    assert_string_equal(back.device_id, m->device_id);
    assert_true(fk_ct_equal(back.psk, m->psk, FK_PSK_LEN));
    assert_string_equal(back.psk_identity, m->device_id);
    assert_int_equal(back.ota_pub_der_len, 91);
    assert_memory_equal(back.ota_pub_der, m->ota_pub_der, 91);
    assert_false(back.provisioned);
    assert_string_equal(back.provisioned_at, "");
    assert_string_equal(back.name, "lab \"bot\" 1");
    assert_string_equal(back.wifi_ssid, "FleetLab-5G");
    assert_string_equal(back.nvs_image, "rt.nvs.bin");
    assert_string_equal(back.nvs_keys, "rt.nvs_keys.bin");
    assert_string_equal(back.ota_private_key, "rt.key.pem");
    assert_true(back.nvs_encrypted);
    assert_string_equal(back.psk_fingerprint, m->psk_fingerprint);
    assert_string_equal(back.nvs_image_sha256, m->nvs_image_sha256);
    assert_int_equal(back.nvs_size, 0x6000);
    assert_int_equal(back.psk_version, 1);
    assert_string_equal(back.created_at, m->created_at);
    /* The file on disk is exactly this rendering. */
    char path[4096];
    snprintf(path, sizeof path, "%s/rt.json", tmpdir());
    struct fk_manifest loaded;
    assert_int_equal(fk_keys_manifest_load(path, &loaded, NULL), FK_OK);
    assert_true(fk_ct_equal(loaded.psk, m->psk, FK_PSK_LEN));
    char sha2[65];
    fk_keys_sha256_hex(json, len, sha2);
    assert_string_equal(sha, sha2);
    fk_keys_manifest_wipe(&back);
    fk_keys_manifest_wipe(&loaded);
    fk_free_secret(json, len + 1);
    fk_keys_minted_free(d);
}

static const char good_json[] =
    "{\"device_id\":\"robot-AABBCCDDEEFF\","
    "\"psk_hex\":\"50b3f7f7c416ce0937abf4ac096bdb5b08f8a528fa31c0a3253601bd6656cfc4\","
    "\"psk_identity\":\"robot-AABBCCDDEEFF\","
    "\"ota_public_key_der_hex\":\"@DER@\","
    "\"provisioned\":true,\"provisioned_at\":\"2025-01-15T10:30:00Z\"}";

static char der_hex[2 * 91 + 1];

static char *with(const char *from, const char *to) {
    /* good_json with its first `from` replaced by `to` (and @DER@ filled in). */
    static char out[4096];
    char base[4096];
    const char *at = strstr(good_json, "@DER@");
    snprintf(base, sizeof base, "%.*s%s%s", (int)(at - good_json), good_json, der_hex, at + 5);
    if (from == NULL) {
        snprintf(out, sizeof out, "%s", base);
        return out;
    }
    const char *p = strstr(base, from);
    assert_non_null(p);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(p - base), base, to, p + strlen(from));
    return out;
}

static void load_vector_der(void) {
    size_t len = 0;
    uint8_t *der = read_vector("prov_ota_pub.der", &len);
    assert_int_equal(len, 91);
    assert_int_equal(fk_hex_encode(der, len, der_hex, sizeof der_hex), FK_OK);
    free(der);
}

static void manifest_parse_accepts_the_seed_example(void **state) {
    (void)state;
    load_vector_der();
    struct fk_manifest m;
    const char *j = with(NULL, NULL);
    assert_int_equal(fk_keys_manifest_parse(j, strlen(j), &m, NULL), FK_OK);
    assert_true(m.provisioned);
    assert_string_equal(m.provisioned_at, "2025-01-15T10:30:00Z");
    assert_int_equal(m.psk[0], 0x50);
    assert_int_equal(m.schema_version, 0); /* extras absent: fine */
}

static void expect_parse_error(const char *json, const char *field) {
    struct fk_manifest m;
    struct fk_diag d;
    fk_diag_init(&d);
    memset(&m, 0x5a, sizeof m);
    enum fk_err rc = fk_keys_manifest_parse(json, strlen(json), &m, &d);
    if (rc != FK_E_PARSE) {
        fprintf(stderr, "accepted: %s\n", json);
    }
    assert_int_equal(rc, FK_E_PARSE);
    if (field != NULL && strstr(d.msg, field) == NULL) {
        fprintf(stderr, "diag '%s' does not name %s\n", d.msg, field);
        fail();
    }
    /* A failed parse leaves no PSK behind. */
    uint8_t zero[FK_PSK_LEN] = {0};
    assert_memory_equal(m.psk, zero, FK_PSK_LEN);
}

static void manifest_parse_rejects_missing_fields(void **state) {
    (void)state;
    load_vector_der();
    const char *fields[] = {"device_id",    "psk_hex",
                            "psk_identity", "ota_public_key_der_hex",
                            "provisioned",  "provisioned_at"};
    for (size_t i = 0; i < 6; i++) {
        char key[64];
        char renamed[64];
        snprintf(key, sizeof key, "\"%s\":", fields[i]);
        snprintf(renamed, sizeof renamed, "\"x%s\":", fields[i]);
        expect_parse_error(with(key, renamed), fields[i]);
    }
}

static void manifest_parse_rejects_wrong_types_and_values(void **state) {
    (void)state;
    load_vector_der();
    expect_parse_error(with("\"robot-AABBCCDDEEFF\",", "42,"), "device_id");
    expect_parse_error(with("robot-AABBCCDDEEFF", "robot-aabbccddeeff"), "device_id");
    expect_parse_error(with("robot-AABBCCDDEEFF", "device-AABBCCDDEE"), "device_id");
    expect_parse_error(with("\"psk_hex\":\"", "\"psk_hex\":\"zz"), "psk_hex");
    expect_parse_error(with("50b3f7f7", "50b3f7g7"), "psk_hex");
    expect_parse_error(with("50b3f7f7", "50b3f7"), "psk_hex");
    expect_parse_error(
        with("\"psk_hex\":\"50b3f7f7c416ce0937abf4ac096bdb5b08f8a528fa31c0a3253601bd6656cfc4\"",
             "\"psk_hex\":64"),
        "psk_hex");
    expect_parse_error(with("\"psk_identity\":\"robot-AABBCCDDEEFF\"", "\"psk_identity\":\"\""),
                       "psk_identity");
    expect_parse_error(with("\"ota_public_key_der_hex\":\"30", "\"ota_public_key_der_hex\":\"3"),
                       "ota_public_key_der_hex");
    expect_parse_error(with("\"ota_public_key_der_hex\":\"30", "\"ota_public_key_der_hex\":\"31"),
                       "ota_public_key_der_hex");
    expect_parse_error(with("\"provisioned\":true", "\"provisioned\":\"yes\""), "provisioned");
    expect_parse_error(with("\"provisioned\":true", "\"provisioned\":1"), "provisioned");
    expect_parse_error(with("\"2025-01-15T10:30:00Z\"", "\"2025-01-15 10:30:00\""),
                       "provisioned_at");
    expect_parse_error(with("\"2025-01-15T10:30:00Z\"", "0"), "provisioned_at");
    expect_parse_error(with("\"provisioned\":true", "\"schema_version\":99,\"provisioned\":true"),
                       "schema_version");
    expect_parse_error(with("\"provisioned\":true", "\"nvs_image\":\"../x\",\"provisioned\":true"),
                       "nvs_image");
    expect_parse_error(with("\"provisioned\":true", "\"mac\":\"AA:BB:CC:DD:EE:00\","
                                                    "\"provisioned\":true"),
                       "mac");
    expect_parse_error("[]", NULL);
    expect_parse_error("", NULL);
}

static void manifest_parse_rejects_every_truncation(void **state) {
    (void)state;
    load_vector_der();
    char full[4096];
    snprintf(full, sizeof full, "%s", with(NULL, NULL));
    size_t n = strlen(full);
    for (size_t cut = 0; cut < n; cut++) {
        struct fk_manifest m;
        assert_int_equal(fk_keys_manifest_parse(full, cut, &m, NULL), FK_E_PARSE);
    }
    char *big = malloc(FK_MANIFEST_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', FK_MANIFEST_MAX + 1);
    struct fk_manifest m;
    assert_int_equal(fk_keys_manifest_parse(big, FK_MANIFEST_MAX + 1, &m, NULL), FK_E_TOOBIG);
    free(big);
}

/* ---- files and modes ---------------------------------------------------------------------- */

static void minted_files_are_0600_whatever_the_umask(void **state) {
    (void)state;
    const char *dir = tmpdir();
    mode_t masks[] = {0, 022, 077};
    for (size_t i = 0; i < 3; i++) {
        mode_t old = umask(masks[i]);
        struct fk_minted *d = mint_one(1, NULL);
        assert_int_equal(fk_keys_minted_write(d, dir, "modes", 0, NULL, NULL), FK_OK);
        umask(old);
        assert_int_equal(file_mode(dir, "modes.json"), 0600);
        assert_int_equal(file_mode(dir, "modes.key.pem"), 0600);
        assert_int_equal(file_mode(dir, "modes.nvs.bin"), 0600);
        assert_int_equal(file_mode(dir, "modes.nvs_keys.bin"), 0600);
        fk_keys_minted_free(d);
    }
    /* Redone with a fleet key and no encryption: the stale key files go. */
    struct fk_ota_key *fleet = NULL;
    assert_int_equal(fk_keys_ota_generate(&fleet), FK_OK);
    struct fk_minted *d = mint_one(0, fleet);
    assert_int_equal(fk_keys_minted_write(d, dir, "modes", 0, NULL, NULL), FK_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/modes.key.pem", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/modes.nvs_keys.bin", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    const struct fk_manifest *m = fk_keys_minted_manifest(d);
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    assert_int_equal(fk_keys_ota_public_der(fleet, der, sizeof der, &der_len), FK_OK);
    assert_memory_equal(m->ota_pub_der, der, der_len);
    assert_string_equal(m->ota_private_key, "");
    fk_keys_minted_free(d);
    fk_keys_ota_free(fleet);
}

/* ---- NVS image ---------------------------------------------------------------------------- */

static void vector_manifest(struct fk_manifest *m) {
    memset(m, 0, sizeof *m);
    const char seed[] = "fleetkey-vector-psk-1";
    unsigned n = 0;
    assert_int_equal(EVP_Digest(seed, strlen(seed), m->psk, &n, EVP_sha256(), NULL), 1);
    snprintf(m->device_id, sizeof m->device_id, "robot-AABBCCDDEEFF");
    snprintf(m->psk_identity, sizeof m->psk_identity, "robot-AABBCCDDEEFF");
    size_t len = 0;
    uint8_t *der = read_vector("prov_ota_pub.der", &len);
    assert_int_equal(len, 91);
    memcpy(m->ota_pub_der, der, len);
    m->ota_pub_der_len = len;
    free(der);
}

static void nvs_image_equals_the_generators_prov_vector(void **state) {
    (void)state;
    struct fk_manifest m;
    vector_manifest(&m);
    size_t want_len = 0;
    uint8_t *want = read_vector("prov_plain.bin", &want_len);
    assert_int_equal(want_len, 0x6000);
    uint8_t *img = malloc(0x6000);
    size_t len = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_keys_nvs_render(&m, "FleetLab-5G", "Tr41n-R0b0t#2026", NULL, 0, NULL, img,
                                        0x6000, &len, &d),
                     FK_OK);
    assert_int_equal(len, want_len);
    assert_memory_equal(img, want, len);

    /* Encrypted with the vector's keys: equal to the generator's encrypted image. */
    size_t klen = 0;
    uint8_t *kimg = read_vector("nvs_keys_prov.bin", &klen);
    struct fk_nvs_keys k;
    assert_int_equal(fk_nvs_keys_parse(kimg, klen, &k, NULL), FK_OK);
    size_t enc_len = 0;
    uint8_t *enc_want = read_vector("prov_enc.bin", &enc_len);
    assert_int_equal(fk_keys_nvs_render(&m, "FleetLab-5G", "Tr41n-R0b0t#2026", NULL, 0x6000, &k,
                                        img, 0x6000, &len, &d),
                     FK_OK);
    assert_int_equal(len, enc_len);
    assert_memory_equal(img, enc_want, len);

    /* Our reader gets the PSK, identity and key back from both. */
    uint8_t psk[FK_PSK_LEN];
    char id[FK_KEYS_PSK_ID_MAX];
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    assert_int_equal(
        fk_keys_nvs_extract(want, want_len, NULL, psk, id, der, sizeof der, &der_len, &d), FK_OK);
    assert_memory_equal(psk, m.psk, FK_PSK_LEN);
    assert_string_equal(id, "robot-AABBCCDDEEFF");
    assert_int_equal(der_len, 91);
    assert_memory_equal(der, m.ota_pub_der, 91);
    memset(psk, 0, sizeof psk);
    assert_int_equal(
        fk_keys_nvs_extract(enc_want, enc_len, &k, psk, id, der, sizeof der, &der_len, &d), FK_OK);
    assert_memory_equal(psk, m.psk, FK_PSK_LEN);
    free(enc_want);
    free(kimg);
    free(img);
    free(want);
}

static void nvs_extract_rejects_tampered_and_wrong_key(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *img = read_vector("prov_plain.bin", &len);
    uint8_t psk[FK_PSK_LEN];
    char id[FK_KEYS_PSK_ID_MAX];
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    /* Flip one bit of the dtls_psk data (entry 2 of page 0: after the namespace entry and the
     * BLOB_DATA header). */
    img[64 + 2 * 32 + 5] ^= 0x01;
    assert_int_equal(fk_keys_nvs_extract(img, len, NULL, psk, id, der, sizeof der, &der_len, NULL),
                     FK_E_CRC);
    img[64 + 2 * 32 + 5] ^= 0x01;
    /* A damaged entry header. */
    img[64 + 1 * 32 + 9] ^= 0x40;
    assert_int_equal(fk_keys_nvs_extract(img, len, NULL, psk, id, der, sizeof der, &der_len, NULL),
                     FK_E_CRC);
    img[64 + 1 * 32 + 9] ^= 0x40;
    assert_int_equal(
        fk_keys_nvs_extract(img, len - 1, NULL, psk, id, der, sizeof der, &der_len, NULL),
        FK_E_PARSE);
    free(img);

    size_t enc_len = 0;
    uint8_t *enc = read_vector("prov_enc.bin", &enc_len);
    struct fk_nvs_keys wrong;
    memset(&wrong, 0x11, sizeof wrong);
    assert_int_not_equal(
        fk_keys_nvs_extract(enc, enc_len, &wrong, psk, id, der, sizeof der, &der_len, NULL), FK_OK);
    free(enc);
}

static void minted_image_holds_the_manifest_psk(void **state) {
    (void)state;
    const char *dir = tmpdir();
    struct fk_minted *d = mint_one(1, NULL);
    assert_int_equal(fk_keys_minted_write(d, dir, "img", FK_WRITE_NOSYNC, NULL, NULL), FK_OK);
    const struct fk_manifest *m = fk_keys_minted_manifest(d);
    char path[4096];
    snprintf(path, sizeof path, "%s/img.nvs.bin", dir);
    uint8_t *img = NULL;
    size_t len = 0;
    assert_int_equal(fk_file_read(path, 1 << 20, &img, &len, NULL), FK_OK);
    char sha[65];
    fk_keys_sha256_hex(img, len, sha);
    assert_string_equal(sha, m->nvs_image_sha256);
    snprintf(path, sizeof path, "%s/img.nvs_keys.bin", dir);
    uint8_t *kimg = NULL;
    size_t klen = 0;
    assert_int_equal(fk_file_read(path, 8192, &kimg, &klen, NULL), FK_OK);
    assert_int_equal(klen, FK_NVS_KEYS_SIZE);
    struct fk_nvs_keys k;
    assert_int_equal(fk_nvs_keys_parse(kimg, klen, &k, NULL), FK_OK);
    uint8_t psk[FK_PSK_LEN];
    char id[FK_KEYS_PSK_ID_MAX];
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    /* Encrypted: unreadable without the keys, readable with them. */
    assert_int_not_equal(
        fk_keys_nvs_extract(img, len, NULL, psk, id, der, sizeof der, &der_len, NULL), FK_OK);
    assert_int_equal(fk_keys_nvs_extract(img, len, &k, psk, id, der, sizeof der, &der_len, NULL),
                     FK_OK);
    assert_true(fk_ct_equal(psk, m->psk, FK_PSK_LEN));
    assert_string_equal(id, m->device_id);
    assert_memory_equal(der, m->ota_pub_der, m->ota_pub_der_len);
    fk_free_secret(img, len);
    fk_free_secret(kimg, klen);
    fk_keys_minted_free(d);
}

static void mint_rejects_oversized_inputs(void **state) {
    (void)state;
    struct fk_keys_mint_opts o = {.wifi_ssid = "0123456789012345678901234567890123",
                                  .wifi_password = "x"};
    struct fk_minted *d = NULL;
    assert_int_equal(fk_keys_mint(&o, &d, NULL), FK_E_RANGE);
    assert_null(d);
    o.wifi_ssid = "ok";
    o.nvs_size = 0x2000;
    assert_int_equal(fk_keys_mint(&o, &d, NULL), FK_E_ARG);
    o.nvs_size = 0;
    o.wifi_ssid = NULL;
    assert_int_equal(fk_keys_mint(&o, &d, NULL), FK_OK);
    /* No MAC given: a random locally-administered one, and the id follows from it. */
    const struct fk_manifest *m = fk_keys_minted_manifest(d);
    uint8_t mac[6];
    assert_int_equal(fk_keys_mac_parse(m->mac, mac, NULL), FK_OK);
    assert_int_equal(mac[0] & 3, 2);
    char id[FK_DEVICE_ID_SIZE];
    fk_keys_device_id(mac, id);
    assert_string_equal(id, m->device_id);
    fk_keys_minted_free(d);
}

/* ---- mTLS identity (generate/batch --ca) ------------------------------------------------ */

/* 1 when needle occurs in the file at path. */
static int file_contains(const char *path, const uint8_t *needle, size_t n) {
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fk_file_read(path, 1 << 22, &buf, &len, NULL), FK_OK);
    int hit = 0;
    for (size_t i = 0; !hit && n <= len && i <= len - n; i++) {
        hit = memcmp(buf + i, needle, n) == 0;
    }
    free(buf);
    return hit;
}

/* Every regular file under dir (recursively): none may hold any form of the key. */
static size_t scan_tree(const char *dir, const uint8_t *const *needles, const size_t *lens,
                        size_t n_needles) {
    size_t files = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            files += scan_tree(path, needles, lens, n_needles);
            continue;
        }
        files++;
        for (size_t k = 0; k < n_needles; k++) {
            if (file_contains(path, needles[k], lens[k])) {
                fail_msg("%s holds the device's mTLS private key (form %zu)", path, k);
            }
        }
    }
    closedir(d);
    return files;
}

static void mint_with_ca_puts_mtls_identity_in_image_only(void **state) {
    (void)state;
    char root[3200], ca_dir[3300], out_dir[3300], path[4096];
    snprintf(root, sizeof root, "%s/mtls", tmpdir());
    snprintf(ca_dir, sizeof ca_dir, "%s/pki", root);
    snprintf(out_dir, sizeof out_dir, "%s/out", root);
    snprintf(path, sizeof path, "rm -rf '%s'", root);
    assert_int_equal(system(path), 0);
    assert_int_equal(fk_mkdirs(out_dir, 0700, NULL), FK_OK);
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_pki_init_opts io = {0};
    assert_int_equal(fk_pki_ca_init(ca_dir, &io, &diag), FK_OK);
    struct fk_pki_ca *ca = NULL;
    assert_int_equal(fk_pki_ca_open(ca_dir, &ca, &diag), FK_OK);
    uint8_t *chain = NULL;
    size_t chain_len = 0;
    assert_int_equal(fk_keys_pem_chain_to_der(fk_pki_ca_chain_pem(ca), &chain, &chain_len), FK_OK);

    const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
    struct fk_pki_issued *iss = NULL;
    assert_int_equal(fk_pki_issue_device(ca, "robot-021122334455", 0, &iss, &diag), FK_OK);
    struct fk_keys_mtls blobs = {0};
    blobs.cert_der = fk_pki_issued_cert_der(iss, &blobs.cert_der_len);
    blobs.key_der = fk_pki_issued_key_der(iss, &blobs.key_der_len);
    blobs.ca_der = chain;
    blobs.ca_der_len = chain_len;
    /* The forms the key could leak in: PKCS#8 DER, its PEM body's first line, the scalar. */
    uint8_t *key_der = malloc(blobs.key_der_len);
    assert_non_null(key_der);
    memcpy(key_der, blobs.key_der, blobs.key_der_len);
    size_t key_der_len = blobs.key_der_len;
    const char *kp = strchr(fk_pki_issued_key_pem(iss), '\n') + 1;
    uint8_t pem_line[64];
    memcpy(pem_line, kp, sizeof pem_line);
    const unsigned char *p = key_der;
    EVP_PKEY *pkey = d2i_AutoPrivateKey(NULL, &p, (long)key_der_len);
    assert_non_null(pkey);
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pkey, "priv", &bn), 1);
    uint8_t scalar[32];
    assert_int_equal(BN_bn2binpad(bn, scalar, sizeof scalar), 32);
    BN_clear_free(bn);

    struct fk_keys_mint_opts o = {.mac = mac,
                                  .encrypt_nvs = 1,
                                  .mtls = &blobs,
                                  .mtls_cert_pem = fk_pki_issued_cert_pem(iss),
                                  .mtls_fingerprint = fk_pki_issued_fingerprint(iss),
                                  .mtls_serial = fk_pki_issued_serial(iss),
                                  .mtls_not_after = fk_pki_issued_not_after(iss)};
    struct fk_minted *d = NULL;
    assert_int_equal(fk_keys_mint(&o, &d, &diag), FK_OK);
    fk_pki_issued_free(iss);
    char sha[65];
    assert_int_equal(fk_keys_minted_write(d, out_dir, "dev", FK_WRITE_NOSYNC, sha, &diag), FK_OK);
    fk_keys_minted_free(d);

    /* The manifest: fingerprint, serial, expiry, certificate file; never the key. */
    struct fk_manifest m;
    snprintf(path, sizeof path, "%s/dev.json", out_dir);
    assert_int_equal(fk_keys_manifest_load(path, &m, &diag), FK_OK);
    assert_string_equal(m.mtls_cert, "dev.crt.pem");
    assert_int_equal(strlen(m.mtls_cert_serial), 32);
    assert_int_equal(strlen(m.mtls_cert_not_after), 20);
    assert_int_equal(file_mode(out_dir, "dev.crt.pem"), 0644);

    /* The image, decrypted with its keys partition: the three items, DER. */
    uint8_t *img = NULL, *kimg = NULL;
    size_t len = 0, klen = 0;
    snprintf(path, sizeof path, "%s/dev.nvs.bin", out_dir);
    assert_int_equal(fk_file_read(path, 1 << 20, &img, &len, NULL), FK_OK);
    snprintf(path, sizeof path, "%s/dev.nvs_keys.bin", out_dir);
    assert_int_equal(fk_file_read(path, 1 << 20, &kimg, &klen, NULL), FK_OK);
    struct fk_nvs_keys nk;
    assert_int_equal(fk_nvs_keys_parse(kimg, klen, &nk, NULL), FK_OK);
    assert_int_equal(fk_nvs_decrypt(img, len, &nk), FK_OK);
    uint8_t cert[4096], key[4096], cas[4096];
    size_t cert_len = 0, key_len = 0, cas_len = 0;
    assert_int_equal(
        fk_keys_nvs_read_blob(img, len, "mtls", "client_cert", cert, sizeof cert, &cert_len, &diag),
        FK_OK);
    assert_int_equal(
        fk_keys_nvs_read_blob(img, len, "mtls", "client_key", key, sizeof key, &key_len, &diag),
        FK_OK);
    assert_int_equal(
        fk_keys_nvs_read_blob(img, len, "mtls", "ca_cert", cas, sizeof cas, &cas_len, &diag),
        FK_OK);
    fk_free_secret(img, len);
    free(kimg);
    /* The certificate parses with OpenSSL; its SHA-256 is the manifest's fingerprint, and it
     * is the .crt.pem file's certificate. */
    p = cert;
    X509 *x = d2i_X509(NULL, &p, (long)cert_len);
    assert_non_null(x);
    assert_ptr_equal(p, cert + cert_len);
    uint8_t md[32];
    unsigned mdlen = 0;
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &mdlen), 1);
    char fpr[72] = "sha256:";
    assert_int_equal(fk_hex_encode(md, 32, fpr + 7, sizeof fpr - 7), FK_OK);
    assert_string_equal(fpr, m.mtls_cert_fingerprint);
    snprintf(path, sizeof path, "%s/dev.crt.pem", out_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *xf = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(xf);
    assert_int_equal(X509_cmp(x, xf), 0);
    X509_free(xf);
    /* The key in the image is the certificate's key. */
    assert_int_equal(key_len, key_der_len);
    assert_memory_equal(key, key_der, key_len);
    p = key;
    EVP_PKEY *ik = d2i_AutoPrivateKey(NULL, &p, (long)key_len);
    assert_non_null(ik);
    assert_int_equal(X509_check_private_key(x, ik), 1);
    EVP_PKEY_free(ik);
    /* The chain: issuing then root, DER back to back, exactly ca-chain.pem's certificates. */
    assert_int_equal(cas_len, chain_len);
    assert_memory_equal(cas, chain, chain_len);
    p = cas;
    X509 *issuing = d2i_X509(NULL, &p, (long)cas_len);
    assert_non_null(issuing);
    X509 *rootc = d2i_X509(NULL, &p, (long)(cas + cas_len - p));
    assert_non_null(rootc);
    assert_ptr_equal(p, cas + cas_len);
    assert_int_equal(X509_check_issued(issuing, x), X509_V_OK);
    assert_int_equal(X509_check_issued(rootc, issuing), X509_V_OK);
    X509_free(issuing);
    X509_free(rootc);
    X509_free(x);
    fk_wipe(key, sizeof key);

    /* No file written (the device's, the CA directory's) holds the key in any form: the
     * encrypted image holds it only as ciphertext. */
    const uint8_t *needles[] = {key_der, pem_line, scalar};
    const size_t lens[] = {key_der_len, sizeof pem_line, sizeof scalar};
    assert_true(scan_tree(root, needles, lens, 3) >= 8);

    fk_keys_manifest_wipe(&m);
    fk_wipe(scalar, sizeof scalar);
    fk_free_secret(key_der, key_der_len);
    EVP_PKEY_free(pkey);
    free(chain);
    fk_pki_ca_free(ca);
}

static void manifest_without_mtls_has_no_mtls_fields(void **state) {
    (void)state;
    struct fk_minted *d = mint_one(0, NULL);
    char *json = NULL;
    size_t len = 0;
    assert_int_equal(fk_keys_manifest_render(fk_keys_minted_manifest(d), &json, &len), FK_OK);
    assert_null(strstr(json, "mtls"));
    fk_free_secret(json, len + 1);
    fk_keys_minted_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mac_parse_accepts_both_separators_and_cases),
        cmocka_unit_test(mac_parse_rejects_malformed),
        cmocka_unit_test(random_mac_is_local_unicast),
        cmocka_unit_test(ota_key_pem_round_trip_and_p256_only),
        cmocka_unit_test(manifest_round_trip_keeps_seed_order),
        cmocka_unit_test(manifest_parse_accepts_the_seed_example),
        cmocka_unit_test(manifest_parse_rejects_missing_fields),
        cmocka_unit_test(manifest_parse_rejects_wrong_types_and_values),
        cmocka_unit_test(manifest_parse_rejects_every_truncation),
        cmocka_unit_test(minted_files_are_0600_whatever_the_umask),
        cmocka_unit_test(nvs_image_equals_the_generators_prov_vector),
        cmocka_unit_test(nvs_extract_rejects_tampered_and_wrong_key),
        cmocka_unit_test(minted_image_holds_the_manifest_psk),
        cmocka_unit_test(mint_rejects_oversized_inputs),
        cmocka_unit_test(mint_with_ca_puts_mtls_identity_in_image_only),
        cmocka_unit_test(manifest_without_mtls_has_no_mtls_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
