/* Unit tests of fleetkey-server's OTA delivery, without sockets: the "ota" member and the OTA
 * response bodies in fk_wss_msg_parse (typed members, negative cases -> 1007), the image check
 * on the Secure Boot V2 vectors, the interlock, a device target's state machine and the order
 * of pushes (docs/wss-protocol.md, "What the server pushes, and when"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fleetkey/ota.h"
#include "fleetkey/server.h"
#include "mkappimage.h"

static struct fk_wss_msg m;

static enum fk_err parse(const char *s, int *code) {
    return fk_wss_msg_parse((const uint8_t *)s, strlen(s), &m, code, NULL);
}

#define HELLO_HEAD                                                                                 \
    "{\"type\":\"hello\",\"device_id\":\"robot-1\",\"firmware_version\":\"2.0.0\","                \
    "\"credential_versions\":{},\"posture\":{\"build\":\"production\",\"rules\":{}}"
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define FA "sbv2:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define FB "sbv2:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* ---- parsing ------------------------------------------------------------------------------ */

static void hello_ota_is_parsed_and_reserialised(void **state) {
    (void)state;
    int code = -1;
    const char *s = HELLO_HEAD ",\"ota\": {\"slot\": \"ota_1\", \"state\": \"pending_verify\","
                               " \"version\": \"2.0.0\", \"secure_version\": 2,"
                               " \"app_sha256\": \"" SHA "\", \"updates\": true,"
                               " \"keys\": {\"ota_pubkey\": \"" FA "\", \"ota_pubkey2\": \"" FB
                               "\"}, \"future\": [1]}}";
    assert_int_equal(parse(s, &code), FK_OK);
    assert_int_equal(code, 0);
    assert_int_equal(m.ota.present, 1);
    assert_string_equal(m.ota.slot, "ota_1");
    assert_string_equal(m.ota.state, "pending_verify");
    assert_string_equal(m.ota.version, "2.0.0");
    assert_int_equal(m.ota.secure_version, 2);
    assert_string_equal(m.ota.app_sha256, SHA);
    assert_int_equal(m.ota.updates, 1);
    assert_int_equal(m.ota.nkeys, 2);
    assert_string_equal(m.ota.keys[0].name, "ota_pubkey");
    assert_string_equal(m.ota.keys[0].fpr, FA);
    assert_string_equal(m.ota.keys[1].name, "ota_pubkey2");
    /* compact, unknown members kept as sent */
    assert_non_null(strstr(m.ota_json, "{\"slot\":\"ota_1\",\"state\":\"pending_verify\""));
    assert_non_null(strstr(m.ota_json, "\"future\":[1]"));
    assert_null(strchr(m.ota_json, ' '));
}

static void hello_without_ota_is_no_app_images(void **state) {
    (void)state;
    int code = -1;
    assert_int_equal(parse(HELLO_HEAD "}", &code), FK_OK);
    assert_int_equal(m.ota.present, 0);
    assert_string_equal(m.ota_json, "");
    assert_int_equal(m.ota.secure_version, -1);
    assert_int_equal(m.ota.updates, -1);
    /* every member optional */
    assert_int_equal(parse(HELLO_HEAD ",\"ota\":{}}", &code), FK_OK);
    assert_int_equal(m.ota.present, 1);
    assert_string_equal(m.ota_json, "{}");
}

static void hello_ota_wrong_types_close_1007(void **state) {
    (void)state;
    static const char *const bad[] = {
        "\"ota\":[]",
        "\"ota\":\"valid\"",
        "\"ota\":{\"slot\":1}",
        "\"ota\":{\"state\":true}",
        "\"ota\":{\"version\":2}",
        "\"ota\":{\"secure_version\":\"2\"}",
        "\"ota\":{\"secure_version\":-1}",
        "\"ota\":{\"secure_version\":1.5}",
        "\"ota\":{\"app_sha256\":12}",
        "\"ota\":{\"app_sha256\":\"abc\"}",
        "\"ota\":{\"app_sha256\":\"" SHA "0\"}",
        "\"ota\":{\"app_sha256\":"
        "\"zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
        "\"ota\":{\"updates\":1}",
        "\"ota\":{\"keys\":[]}",
        "\"ota\":{\"keys\":{\"ota_pubkey\":5}}",
        "\"ota\":{\"keys\":{\"ota_pubkey\":\"\"}}",
        "\"ota\":{\"keys\":{\"\":\"" FA "\"}}",
        "\"ota\":{\"slot\":\"a_slot_name_longer_than_fifteen\"}",
        "\"ota\":{\"keys\":{\"a\":\"x\",\"b\":\"x\",\"c\":\"x\",\"d\":\"x\",\"e\":\"x\",\"f\":"
        "\"x\","
        "\"g\":\"x\",\"h\":\"x\",\"i\":\"x\"}}",
    };
    char buf[1024];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int code = 0;
        snprintf(buf, sizeof buf, HELLO_HEAD ",%s}", bad[i]);
        if (parse(buf, &code) != FK_E_PARSE || code != FK_WSS_CLOSE_INVALID) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
}

static void app_sha256_is_lower_cased(void **state) {
    (void)state;
    int code = 0;
    assert_int_equal(parse(HELLO_HEAD
                           ",\"ota\":{\"app_sha256\":"
                           "\"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\","
                           "\"keys\":{\"ota_pubkey\":\"SBV2:AA\"}}}",
                           &code),
                     FK_OK);
    assert_string_equal(m.ota.app_sha256, SHA);
    assert_string_equal(m.ota.keys[0].fpr, "sbv2:aa");
}

static void response_bodies_of_the_ota_kinds(void **state) {
    (void)state;
    int code = 0;
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-1\",\"ok\":true,"
                           "\"body\":{\"slot\":\"ota_1\",\"chunk\":2048}}",
                           &code),
                     FK_OK);
    assert_int_equal(m.ok, 1);
    assert_int_equal(m.chunk, 2048);
    assert_string_equal(m.slot, "ota_1");
    assert_int_equal(m.received, -1);
    assert_string_equal(m.err_code, "");
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-2\",\"ok\":true,"
                           "\"body\":{\"received\":4096}}",
                           &code),
                     FK_OK);
    assert_int_equal(m.received, 4096);
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-3\",\"ok\":true,\"body\":{"
                           "\"slot\":\"ota_1\",\"version\":\"2.0.0\",\"secure_version\":2,"
                           "\"key\":\"" FA "\",\"reboot\":true}}",
                           &code),
                     FK_OK);
    assert_string_equal(m.version, "2.0.0");
    assert_int_equal(m.secure_version, 2);
    assert_string_equal(m.key, FA);
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-4\",\"ok\":true,\"body\":{"
                           "\"keys\":{\"ota_pubkey\":\"" FA "\",\"ota_pubkey2\":\"" FB "\"}}}",
                           &code),
                     FK_OK);
    assert_int_equal(m.has_keys, 1);
    assert_int_equal(m.nkeys, 2);
    assert_string_equal(m.keys[1].fpr, FB);
    /* status: the body carries hello's members, "ota" among them */
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-5\",\"ok\":true,\"body\":{"
                           "\"firmware_version\":\"2.0.0\",\"credential_versions\":{},"
                           "\"posture\":{},\"ota\":{\"state\":\"valid\",\"app_sha256\":\"" SHA
                           "\"}}}",
                           &code),
                     FK_OK);
    assert_int_equal(m.ota.present, 1);
    assert_string_equal(m.ota.state, "valid");
    assert_string_equal(m.ota_json, "{\"state\":\"valid\",\"app_sha256\":\"" SHA "\"}");
    /* errors */
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-6\",\"ok\":false,\"error\":{"
                           "\"code\":\"signature_untrusted\",\"message\":\"no trusted block\"}}",
                           &code),
                     FK_OK);
    assert_int_equal(m.ok, 0);
    assert_string_equal(m.err_code, "signature_untrusted");
    assert_string_equal(m.err_msg, "no trusted block");
    assert_int_equal(parse("{\"type\":\"response\",\"id\":\"r-7\",\"ok\":false}", &code), FK_OK);
    assert_string_equal(m.err_code, "unspecified");
}

static void response_members_wrong_types_close_1007(void **state) {
    (void)state;
    static const char *const bad[] = {
        "\"body\":{\"chunk\":\"2048\"}",
        "\"body\":{\"chunk\":0}",
        "\"body\":{\"chunk\":65537}",
        "\"body\":{\"received\":-1}",
        "\"body\":{\"received\":1.5}",
        "\"body\":{\"slot\":1}",
        "\"body\":{\"key\":[]}",
        "\"body\":{\"reboot\":\"yes\"}",
        "\"body\":{\"keys\":\"x\"}",
        "\"body\":{\"ota\":{\"state\":1}}",
        "\"body\":{\"posture\":[]}",
        "\"error\":{\"code\":7}",
        "\"error\":{\"code\":\"x\",\"message\":7}",
    };
    char buf[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int code = 0;
        snprintf(buf, sizeof buf, "{\"type\":\"response\",\"id\":\"r-1\",\"ok\":true,%s}", bad[i]);
        if (parse(buf, &code) != FK_E_PARSE || code != FK_WSS_CLOSE_INVALID) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
}

/* ---- the image check ---------------------------------------------------------------------- */

static uint8_t *read_vector(const char *name, size_t *len) {
    char path[1024];
    const char *dir = getenv("FK_VECTORS");
    snprintf(path, sizeof path, "%s/sbv2/%s", dir != NULL ? dir : "tests/vectors", name);
    uint8_t *buf = NULL;
    assert_int_equal(fk_file_read(path, 1 << 24, &buf, len, NULL), FK_OK);
    return buf;
}

static void digest_fpr(const char *name, char out[FK_WSS_FPR_MAX + 1]) {
    size_t n = 0;
    uint8_t *d = read_vector(name, &n);
    assert_int_equal(n, 32);
    memcpy(out, "sbv2:", 5);
    assert_int_equal(fk_hex_encode(d, n, out + 5, FK_WSS_FPR_MAX + 1 - 5), FK_OK);
    free(d);
}

/* An app image (mkappimage, independent of src/ota) signed with the vector keys given. */
static uint8_t *signed_app(const char *const *keys, size_t nkeys, int hash, size_t *len) {
    struct mkapp_opts o;
    mkapp_defaults(&o);
    o.version = "2.0.0";
    o.secure_version = 2;
    o.segment_len = 5000;
    o.hash_appended = hash;
    size_t n = mkapp_size(&o);
    size_t cap = fk_ota_signed_size(n);
    uint8_t *app = malloc(n);
    uint8_t *out = malloc(cap);
    assert_non_null(app);
    assert_non_null(out);
    assert_int_equal(mkapp_build(&o, app, n), n);
    struct fk_ota_key *k[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < nkeys; i++) {
        char path[1024];
        const char *dir = getenv("FK_VECTORS");
        snprintf(path, sizeof path, "%s/sbv2/%s", dir != NULL ? dir : "tests/vectors", keys[i]);
        assert_int_equal(fk_ota_key_load(path, 1, &k[i], NULL), FK_OK);
    }
    assert_int_equal(fk_ota_sign(app, n, k, nkeys, out, cap, len, NULL), FK_OK);
    for (size_t i = 0; i < nkeys; i++) {
        fk_ota_key_free(k[i]);
    }
    free(app);
    return out;
}

static void image_check_names_each_signer(void **state) {
    (void)state;
    char fa[FK_WSS_FPR_MAX + 1], fb[FK_WSS_FPR_MAX + 1];
    digest_fpr("key_a.digest.bin", fa);
    digest_fpr("key_b.digest.bin", fb);
    struct fk_ota_image_info info;
    size_t len = 0;
    static const char *const a[] = {"key_a.pem"};
    uint8_t *img = signed_app(a, 1, 1, &len);
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ota_image_check(img, len, &info, &d), FK_OK);
    assert_int_equal(info.size, len);
    assert_int_equal(len % 4096, 0);
    assert_int_equal(info.signers.n, 1);
    assert_string_equal(info.signers.fpr[0], fa);
    /* the signer in the inventory's ota_pubkey spelling: fk_fpr of its DER public key */
    {
        char path[1024];
        const char *v = getenv("FK_VECTORS");
        snprintf(path, sizeof path, "%s/sbv2/key_a.pub.pem", v != NULL ? v : "tests/vectors");
        struct fk_ota_key *ka = NULL;
        uint8_t der[1024];
        size_t der_len = 0;
        char want[FK_FPR_LEN];
        assert_int_equal(fk_ota_key_load(path, 0, &ka, NULL), FK_OK);
        assert_int_equal(fk_ota_key_public_der(ka, der, sizeof der, &der_len), FK_OK);
        fk_ota_key_free(ka);
        assert_int_equal(info.signers_der.n, 1);
        assert_string_equal(info.signers_der.fpr[0], fk_fpr(der, der_len, want));
    }
    assert_string_equal(info.version, "2.0.0");
    assert_int_equal(info.secure_version, 2);
    assert_int_equal(strlen(info.sha256), 64);
    assert_int_equal(strlen(info.app_sha256), 64);
    assert_string_not_equal(info.sha256, info.app_sha256);
    free(img);
    static const char *const ab[] = {"key_a.pem", "key_b.pem"};
    img = signed_app(ab, 2, 1, &len);
    assert_int_equal(fk_ota_image_check(img, len, &info, NULL), FK_OK);
    assert_int_equal(info.signers.n, 2);
    assert_true(fk_ota_fprs_has(&info.signers, fa));
    assert_true(fk_ota_fprs_has(&info.signers, fb));
    free(img);
}

static void image_check_refuses_bad_images(void **state) {
    (void)state;
    struct fk_ota_image_info info;
    struct fk_diag d;
    size_t len = 0;
    static const char *const a[] = {"key_a.pem"};
    /* no appended hash: the server could not tell when a device runs it */
    uint8_t *img = signed_app(a, 1, 0, &len);
    fk_diag_init(&d);
    assert_int_equal(fk_ota_image_check(img, len, &info, &d), FK_E_UNSUPPORTED);
    assert_non_null(strstr(d.msg, "appended SHA-256"));
    free(img);
    img = signed_app(a, 1, 1, &len);
    /* changed after signing */
    img[300] ^= 1;
    assert_int_not_equal(fk_ota_image_check(img, len, &info, NULL), FK_OK);
    img[300] ^= 1;
    img[len - 4096 - 1] ^= 1; /* in the padding, covered by the signature */
    assert_int_not_equal(fk_ota_image_check(img, len, &info, NULL), FK_OK);
    img[len - 4096 - 1] ^= 1;
    assert_int_equal(fk_ota_image_check(img, len, &info, NULL), FK_OK);
    /* a block's signature bytes changed: it does not verify with its own key */
    img[len - 4096 + 1216 - 30] ^= 1;
    assert_int_not_equal(fk_ota_image_check(img, len, &info, NULL), FK_OK);
    img[len - 4096 + 1216 - 30] ^= 1;
    /* truncations */
    assert_int_not_equal(fk_ota_image_check(img, len - 4096, &info, NULL), FK_OK);
    assert_int_not_equal(fk_ota_image_check(img, len - 1, &info, NULL), FK_OK);
    assert_int_not_equal(fk_ota_image_check(img, 4096, &info, NULL), FK_OK);
    assert_int_not_equal(fk_ota_image_check(img, 0, &info, NULL), FK_OK);
    /* signature sector erased: unsigned */
    memset(img + len - 4096, 0xFF, 4096);
    fk_diag_init(&d);
    assert_int_equal(fk_ota_image_check(img, len, &info, &d), FK_E_VERIFY);
    assert_non_null(strstr(d.msg, "not signed"));
    /* not an app image at all, but signed (espsecure's vector signs raw data) */
    free(img);
    img = read_vector("app_signed_a.bin", &len);
    assert_int_not_equal(fk_ota_image_check(img, len, &info, NULL), FK_OK);
    free(img);
}

/* ---- the interlock ------------------------------------------------------------------------ */

static void interlock_needs_one_common_key(void **state) {
    (void)state;
    struct fk_ota_fprs trusted, signers;
    memset(&trusted, 0, sizeof trusted);
    memset(&signers, 0, sizeof signers);
    fk_ota_fprs_add(&signers, FA);
    /* never seen, no inventory row: blocks */
    assert_false(fk_ota_trusts_any(&trusted, &signers));
    fk_ota_fprs_add(&trusted, FB);
    assert_false(fk_ota_trusts_any(&trusted, &signers));
    fk_ota_fprs_add(&signers, FB); /* dual-signed */
    assert_true(fk_ota_trusts_any(&trusted, &signers));
    /* case-insensitive, deduplicated */
    memset(&trusted, 0, sizeof trusted);
    fk_ota_fprs_add(&trusted,
                    "SBV2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    fk_ota_fprs_add(&trusted, FA);
    assert_int_equal(trusted.n, 1);
    assert_true(fk_ota_trusts_any(&trusted, &signers));
    /* an empty set of signers is trusted by nobody */
    memset(&signers, 0, sizeof signers);
    assert_false(fk_ota_trusts_any(&trusted, &signers));
}

/* ---- a device's target ---------------------------------------------------------------------- */

static struct fk_wss_ota report(const char *st, const char *sha) {
    struct fk_wss_ota o;
    memset(&o, 0, sizeof o);
    o.present = 1;
    snprintf(o.state, sizeof o.state, "%s", st);
    snprintf(o.app_sha256, sizeof o.app_sha256, "%s", sha);
    return o;
}

static struct fk_ota_target target(void) {
    struct fk_ota_target t;
    memset(&t, 0, sizeof t);
    snprintf(t.device, sizeof t.device, "robot-1");
    return t;
}

#define OTHER "1111111111111111111111111111111111111111111111111111111111111111"

static void target_goes_through_a_whole_update(void **state) {
    (void)state;
    struct fk_ota_target t = target();
    int abort_first = 0;
    struct fk_wss_ota r = report("valid", OTHER);
    assert_false(fk_ota_target_report(&t, SHA, &r));
    assert_int_equal(t.state, FK_OTA_QUEUED);
    t.attempts = 1;
    assert_true(fk_ota_target_response(&t, FK_OTA_ACT_BEGIN, 8192, 1, "", 1000, -1, &abort_first));
    assert_int_equal(t.state, FK_OTA_SENDING);
    assert_int_equal(t.chunk, 1000); /* the device's smaller chunk */
    assert_false(fk_ota_target_response(&t, FK_OTA_ACT_CHUNK, 8192, 1, "", -1, 1000, &abort_first));
    assert_int_equal(t.sent, 1000);
    assert_true(fk_ota_target_response(&t, FK_OTA_ACT_FINISH, 8192, 1, "", -1, -1, &abort_first));
    assert_int_equal(t.state, FK_OTA_INSTALLED);
    /* rebooted, pending_verify: nothing yet; then valid: confirmed */
    r = report("pending_verify", SHA);
    assert_false(fk_ota_target_report(&t, SHA, &r));
    r = report("valid", SHA);
    assert_true(fk_ota_target_report(&t, SHA, &r));
    assert_int_equal(t.state, FK_OTA_CONFIRMED);
    assert_true(fk_ota_tstate_final(t.state));
    /* final states do not move again */
    r = report("valid", OTHER);
    assert_false(fk_ota_target_report(&t, SHA, &r));
    assert_string_equal(fk_ota_tstate_name(t.state), "confirmed");
}

static void target_already_running_is_confirmed_at_once(void **state) {
    (void)state;
    struct fk_ota_target t = target();
    struct fk_wss_ota r = report("valid", SHA);
    assert_true(fk_ota_target_report(&t, SHA, &r));
    assert_int_equal(t.state, FK_OTA_CONFIRMED);
    /* no ota member: no change */
    t = target();
    memset(&r, 0, sizeof r);
    assert_false(fk_ota_target_report(&t, SHA, &r));
    assert_false(fk_ota_target_report(&t, SHA, NULL));
}

static void target_rolls_back(void **state) {
    (void)state;
    static const char *const states[] = {"invalid", "aborted"};
    for (size_t i = 0; i < 2; i++) {
        struct fk_ota_target t = target();
        t.state = FK_OTA_INSTALLED;
        struct fk_wss_ota r = report(states[i], SHA);
        assert_true(fk_ota_target_report(&t, SHA, &r));
        assert_int_equal(t.state, FK_OTA_ROLLED_BACK);
    }
    struct fk_ota_target t = target();
    t.state = FK_OTA_INSTALLED;
    struct fk_wss_ota r = report("valid", OTHER);
    assert_true(fk_ota_target_report(&t, SHA, &r));
    assert_int_equal(t.state, FK_OTA_ROLLED_BACK);
    assert_string_equal(fk_ota_tstate_name(t.state), "rolled_back");
}

static void target_refusals_keep_the_device_code(void **state) {
    (void)state;
    int abort_first = 0;
    static const char *const finish[] = {"signature_untrusted", "signature_mismatch",
                                         "signature_malformed", "image_invalid", "anti_rollback"};
    for (size_t i = 0; i < sizeof finish / sizeof finish[0]; i++) {
        struct fk_ota_target t = target();
        t.state = FK_OTA_SENDING;
        t.sent = 8192;
        assert_true(fk_ota_target_response(&t, FK_OTA_ACT_FINISH, 8192, 0, finish[i], -1, -1,
                                           &abort_first));
        assert_int_equal(t.state, FK_OTA_REFUSED);
        assert_string_equal(t.error, finish[i]);
    }
    struct fk_ota_target t = target();
    t.attempts = 1;
    assert_true(fk_ota_target_response(&t, FK_OTA_ACT_BEGIN, 8192, 0, "updates_disabled", -1, -1,
                                       &abort_first));
    assert_int_equal(t.state, FK_OTA_REFUSED);
    t = target();
    t.state = FK_OTA_SENDING;
    assert_true(fk_ota_target_response(&t, FK_OTA_ACT_CHUNK, 8192, 0, "not_app_image", -1, -1,
                                       &abort_first));
    assert_int_equal(t.state, FK_OTA_REFUSED);
}

static void target_transfer_errors_retry_then_fail(void **state) {
    (void)state;
    int abort_first = 0;
    struct fk_ota_target t = target();
    for (unsigned a = 1; a <= FK_OTA_MAX_ATTEMPTS; a++) {
        t.attempts = a;
        assert_true(
            fk_ota_target_response(&t, FK_OTA_ACT_BEGIN, 8192, 1, "", 2048, -1, &abort_first));
        assert_false(
            fk_ota_target_response(&t, FK_OTA_ACT_CHUNK, 8192, 1, "", -1, 2048, &abort_first));
        /* the connection drops mid-transfer */
        assert_true(fk_ota_target_lost(&t, "connection closed"));
        if (a < FK_OTA_MAX_ATTEMPTS) {
            assert_int_equal(t.state, FK_OTA_QUEUED);
            assert_int_equal(t.sent, 0); /* restarts from byte 0 */
        }
    }
    assert_int_equal(t.state, FK_OTA_FAILED);
    assert_string_equal(t.error, "connection closed");
    /* a chunk error abandons the attempt and asks for ota_abort */
    t = target();
    t.state = FK_OTA_SENDING;
    t.attempts = 1;
    t.sent = 2048;
    assert_true(
        fk_ota_target_response(&t, FK_OTA_ACT_CHUNK, 8192, 0, "bad_offset", -1, -1, &abort_first));
    assert_int_equal(abort_first, 1);
    assert_int_equal(t.state, FK_OTA_QUEUED);
    /* a received count that does not advance is a transfer error too */
    t.state = FK_OTA_SENDING;
    t.sent = 2048;
    assert_true(fk_ota_target_response(&t, FK_OTA_ACT_CHUNK, 8192, 1, "", -1, 2048, &abort_first));
    assert_int_equal(t.state, FK_OTA_QUEUED);
    /* transfer_corrupt at finish: another attempt */
    t.state = FK_OTA_SENDING;
    assert_true(fk_ota_target_response(&t, FK_OTA_ACT_FINISH, 8192, 0, "transfer_corrupt", -1, -1,
                                       &abort_first));
    assert_int_equal(t.state, FK_OTA_QUEUED);
    /* busy: abort first, no state change until attempts run out */
    t = target();
    t.attempts = 1;
    assert_false(
        fk_ota_target_response(&t, FK_OTA_ACT_BEGIN, 8192, 0, "busy", -1, -1, &abort_first));
    assert_int_equal(abort_first, 1);
    t.attempts = FK_OTA_MAX_ATTEMPTS;
    assert_true(
        fk_ota_target_response(&t, FK_OTA_ACT_BEGIN, 8192, 0, "busy", -1, -1, &abort_first));
    assert_int_equal(t.state, FK_OTA_FAILED);
    /* lost outside a transfer changes nothing */
    t = target();
    t.state = FK_OTA_INSTALLED;
    assert_false(fk_ota_target_lost(&t, "rebooting"));
}

/* ---- what comes next ---------------------------------------------------------------------- */

static void next_follows_the_protocol_order(void **state) {
    (void)state;
    struct fk_ota_target t = target();
    struct fk_ota_view v;
    memset(&v, 0, sizeof v);
    v.t = &t;
    v.size = 8192;
    /* no ota member: nothing, whatever is pending */
    v.status_due = 1;
    v.rot_active = 1;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_NONE);
    v.has_ota = 1;
    v.has_trusted_key = 1;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_STATUS);
    v.status_due = 0;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_KEY_NEW);
    assert_string_equal(fk_ota_action_kind(FK_OTA_ACT_KEY_NEW), "ota_key");
    v.key_new_tried = 1; /* refused once on this connection: not again */
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_BEGIN);
    v.key_new_tried = 0;
    v.reports_new = 1;
    v.new_in_secondary = 1;
    v.old_in_primary = 1;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_BEGIN);
    v.old_retired = 1;
    v.promote_hold = 1; /* forced past the interlock, not on new-key-only firmware yet */
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_BEGIN);
    v.promote_hold = 0;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_KEY_PROMOTE);
    v.key_promote_tried = 1;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_BEGIN);
    v.need_abort = 1;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_ABORT);
    v.need_abort = 0;
    t.state = FK_OTA_SENDING;
    t.sent = 4096;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_CHUNK);
    t.sent = 8192;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_FINISH);
    t.state = FK_OTA_INSTALLED;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_NONE);
    v.t = NULL;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_NONE);
    /* no trusted key: the rotation's key is not pushed (updates are off anyway) */
    v.has_trusted_key = 0;
    v.reports_new = 0;
    v.key_new_tried = 0;
    assert_int_equal(fk_ota_next(&v), FK_OTA_ACT_NONE);
}

/* A saved job read back: a cut transfer comes back queued from byte 0; damage is refused. */
static void saved_job_is_read_back_and_damage_refused(void **state) {
    (void)state;
    static const char good[] =
        "{\"job\":\"j-000007\",\"created_at\":\"2026-11-25T17:00:00Z\",\"operator\":\"ops\","
        "\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"devices\":[{\"id\":\"robot-020000000001\",\"state\":\"sending\",\"sent\":4096,"
        "\"attempts\":2,\"error\":null,\"updated_at\":\"2026-11-25T17:00:01Z\"},"
        "{\"id\":\"robot-020000000002\",\"state\":\"refused\",\"sent\":0,\"attempts\":1,"
        "\"error\":\"anti_rollback\",\"updated_at\":\"2026-11-25T17:00:02Z\"}]}";
    struct fk_ota_job_record r;
    assert_int_equal(fk_ota_job_parse((const uint8_t *)good, strlen(good), &r, NULL), FK_OK);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.operator_name, "ops");
    assert_string_equal(r.t[0].device, "robot-020000000001");
    assert_int_equal(r.t[0].state, FK_OTA_QUEUED); /* was sending: starts over */
    assert_int_equal(r.t[0].sent, 0);
    assert_int_equal(r.t[0].attempts, 2);
    assert_int_equal(r.t[1].state, FK_OTA_REFUSED);
    assert_string_equal(r.t[1].error, "anti_rollback");
    assert_string_equal(r.updated[1], "2026-11-25T17:00:02Z");
    fk_ota_job_record_free(&r);
    static const char *const bad[] = {
        "",
        "[]",
        "{\"sha256\":\"0123\",\"devices\":[{\"id\":\"robot-1\",\"state\":\"queued\","
        "\"attempts\":0}]}",
        "{\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"devices\":[]}",
        "{\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"devices\":[{\"id\":\"../x\",\"state\":\"queued\",\"attempts\":0}]}",
        "{\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"devices\":[{\"id\":\"robot-1\",\"state\":\"lost\",\"attempts\":0}]}",
        "{\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"devices\":[{\"id\":\"robot-1\",\"state\":\"queued\",\"attempts\":1001}]}",
        "{\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"devices\":[{\"id\":\"robot-1\",\"state\":\"queued\",\"attempts\":0,"
        "\"sent\":-1}]}",
        "{\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"operator\":\"a b\",\"devices\":[{\"id\":\"robot-1\",\"state\":\"queued\","
        "\"attempts\":0}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fk_diag d;
        fk_diag_init(&d);
        assert_int_equal(fk_ota_job_parse((const uint8_t *)bad[i], strlen(bad[i]), &r, &d),
                         FK_E_PARSE);
        assert_null(r.t);
        assert_true(d.msg[0] != '\0');
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hello_ota_is_parsed_and_reserialised),
        cmocka_unit_test(hello_without_ota_is_no_app_images),
        cmocka_unit_test(hello_ota_wrong_types_close_1007),
        cmocka_unit_test(app_sha256_is_lower_cased),
        cmocka_unit_test(response_bodies_of_the_ota_kinds),
        cmocka_unit_test(response_members_wrong_types_close_1007),
        cmocka_unit_test(image_check_names_each_signer),
        cmocka_unit_test(image_check_refuses_bad_images),
        cmocka_unit_test(interlock_needs_one_common_key),
        cmocka_unit_test(target_goes_through_a_whole_update),
        cmocka_unit_test(target_already_running_is_confirmed_at_once),
        cmocka_unit_test(target_rolls_back),
        cmocka_unit_test(target_refusals_keep_the_device_code),
        cmocka_unit_test(target_transfer_errors_retry_then_fail),
        cmocka_unit_test(next_follows_the_protocol_order),
        cmocka_unit_test(saved_job_is_read_back_and_damage_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
