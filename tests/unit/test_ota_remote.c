/* OTA over the control channel (fkd/ota_remote.h): every request is a complete JSON message as
 * fleetkey-server sends it, parsed by the device's message parser (fkd_wss_msg_parse) and its
 * body slice handed to the handler, as the wss client does. The robot is a 4 MiB flash in
 * memory with the default partition table and NVS; the images are real app images
 * (tests/tools/mkappimage) signed by the host module with the espsecure vector keys, sent as
 * real base64 (OpenSSL's encoder, not ours). Expected key fingerprints are espsecure's digests
 * (tests/vectors/sbv2/key_*.digest.bin). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/ota_remote.h"
#include "fkd/part.h"
#include "fkd/wss.h"
#include "fleetkey/ota.h"
#include "fleetkey/partition.h"
#include "fleetkey/rotation.h"
#include "mkappimage.h"
#include "ota_fixture.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "sbv2:" + espsecure's digest of a vector key. */
static void espsecure_fpr(const char *digest_file, char out[FKD_OTA_REMOTE_FPR_LEN]) {
    size_t len = 0;
    uint8_t *d = fkt_vector_load(digest_file, &len);
    assert_int_equal(len, 32);
    strcpy(out, "sbv2:");
    for (size_t i = 0; i < 32; i++) {
        snprintf(out + 5 + 2 * i, 3, "%02x", d[i]);
    }
    free(d);
}

/* ---- a robot in memory ---------------------------------------------------------------------- */
struct robot {
    struct fkt_flash hw;
    struct fkd_ota_boot running;
    struct fkd_ota_remote rem;
    uint8_t der[2][1024]; /* the keys as the store would hold them (read from NVS) */
    size_t der_len[2];
};

static struct robot R;
static uint8_t *snap;

static const struct fkd_part *nvs_part(void) {
    return fkt_flash_nvs(&R.hw);
}

static void robot_new(void) {
    fkt_flash_new(&R.hw);
    if (snap == NULL) {
        snap = malloc(FKT_CHIP);
        assert_non_null(snap);
    }
    fkd_ota_remote_init(&R.rem);
}

/* A boot: NVS mounted afresh (repairing what a cut left), the keys loaded from NVS as the
 * store does, the bootloader's choice, a new handler. */
static void robot_boot(void) {
    static const char *const names[2] = {"ota_pubkey", "ota_pubkey2"};
    fkd_flash_mem_cut(&R.hw.m, 0, 0);
    fkd_ota_remote_free(&R.rem);
    fkd_nvs_free(&R.hw.nvs);
    fkd_nvs_init(&R.hw.nvs);
    assert_int_equal(
        fkd_nvs_mount(&R.hw.nvs, &R.hw.f, nvs_part()->offset, nvs_part()->size, NULL, NULL),
        FKD_OK);
    struct fkd_sbv2_keys ks;
    fkd_sbv2_keys_init(&ks);
    for (int i = 0; i < 2; i++) {
        R.der_len[i] = 0;
        enum fkd_err rc = fkd_nvs_get_blob(&R.hw.nvs, "security", names[i], R.der[i],
                                           sizeof R.der[i], &R.der_len[i]);
        assert_true(rc == FKD_OK || rc == FKD_E_NOTFOUND);
        if (rc != FKD_OK) {
            R.der_len[i] = 0;
        } else {
            assert_int_equal(fkd_sbv2_keys_add(&ks, R.der[i], R.der_len[i]), FKD_OK);
        }
    }
    /* Secure Boot V2 on while there is a key (production); without one, a development
     * bootloader checks no signature. */
    assert_int_equal(fkd_ota_boot_select(&R.hw.f, &R.hw.t, ks.count > 0 ? &ks : NULL,
                                         fkd_ota_committed_secver(&R.hw.nvs), &R.running),
                     FKD_OK);
    struct fkd_ota_remote_config c = {&R.hw.f,
                                      &R.hw.t,
                                      &R.hw.nvs,
                                      &R.running,
                                      R.der_len[0] ? R.der[0] : NULL,
                                      R.der_len[0],
                                      R.der_len[1] ? R.der[1] : NULL,
                                      R.der_len[1]};
    fkd_ota_remote_init(&R.rem);
    assert_int_equal(fkd_ota_remote_setup(&R.rem, &c), FKD_OK);
}

static void nvs_put_key(const char *slot, const char *pem) {
    uint8_t der[1024];
    size_t n = fkt_vector_pub_der(pem, der, sizeof der);
    assert_int_equal(fkd_nvs_set_blob(&R.hw.nvs, "security", slot, der, n), FKD_OK);
}

/* ---- requests as the server sends them --------------------------------------------------------
 */
static char reply_body[FKD_WSS_MSG_MAX];
static struct fkd_wss_reply rep;
static cJSON *last; /* the last ok body, parsed */

static char *b64(const uint8_t *d, size_t n) {
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    assert_int_equal(EVP_EncodeBlock((unsigned char *)out, d, (int)n), 4 * ((n + 2) / 3));
    return out;
}

/* Sends one request; returns its error code, "" when ok. The whole message must fit the
 * protocol's 4096 bytes and parse as the device parses it. */
static const char *req(const char *kind, const char *body) {
    static char msg[FKD_WSS_MSG_MAX + 1];
    int n =
        snprintf(msg, sizeof msg, "{\"type\":\"request\",\"id\":\"r-000001\",\"kind\":\"%s\"%s%s}",
                 kind, body != NULL ? ",\"body\":" : "", body != NULL ? body : "");
    assert_true(n > 0 && (size_t)n <= FKD_WSS_MSG_MAX);
    struct fkd_wss_msg m;
    assert_int_equal(fkd_wss_msg_parse((const uint8_t *)msg, (size_t)n, &m, NULL), FKD_OK);
    assert_int_equal(m.type, FKD_WSS_MSG_REQUEST);
    assert_int_equal(m.has_body, body != NULL);
    memset(&rep, 0, sizeof rep);
    rep.body = reply_body;
    rep.body_cap = sizeof reply_body - 64; /* what the client leaves after the envelope */
    enum fkd_wss_req_result rr = fkd_ota_remote_request(
        &R.rem, m.kind, m.has_body ? (const uint8_t *)msg + m.body_off : NULL,
        m.has_body ? m.body_len : 0, &rep);
    assert_int_equal(rr, FKD_WSS_REQ_DONE);
    cJSON_Delete(last);
    last = NULL;
    if (rep.code[0] == '\0') {
        assert_true(rep.body_len > 0 && rep.body_len < rep.body_cap);
        last = cJSON_ParseWithLength(reply_body, rep.body_len);
        assert_true(cJSON_IsObject(last));
    } else {
        assert_int_equal(rep.reboot, 0);
    }
    return rep.code;
}

static const char *begin(size_t size, const uint8_t *img, size_t len) {
    uint8_t d[32];
    char hx[65], body[256];
    SHA256(img, len, d);
    for (int i = 0; i < 32; i++) {
        snprintf(hx + 2 * i, 3, "%02x", d[i]);
    }
    snprintf(body, sizeof body, "{\"size\":%zu,\"sha256\":\"%s\",\"version\":\"2.0.0\"}", size, hx);
    return req("ota_begin", body);
}

static const char *chunk(size_t off, const uint8_t *d, size_t n) {
    static char body[4096];
    char *s = b64(d, n);
    snprintf(body, sizeof body, "{\"offset\":%zu,\"data\":\"%s\"}", off, s);
    free(s);
    return req("ota_chunk", body);
}

/* The whole transfer in chunks of `step`; the first error code, or "" with finish's answer
 * in `last`. */
static const char *send_image(const uint8_t *img, size_t len, size_t step) {
    const char *c = begin(len, img, len);
    if (c[0] != '\0') {
        return c;
    }
    assert_int_equal(cJSON_GetObjectItem(last, "chunk")->valueint, 2048);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        c = chunk(off, img + off, n);
        if (c[0] != '\0') {
            return c;
        }
        assert_int_equal(cJSON_GetObjectItem(last, "received")->valueint, (int)(off + n));
    }
    return req("ota_finish", "{}");
}

static const char *jstr(const cJSON *o, const char *name) {
    const cJSON *it = cJSON_GetObjectItem(o, name);
    assert_true(cJSON_IsString(it));
    return it->valuestring;
}

/* The "ota" object as hello carries it, parsed by cJSON. */
static cJSON *state(void) {
    char buf[1024];
    size_t n = fkd_ota_remote_state_json(&R.rem, buf, sizeof buf);
    assert_true(n > 0 && n < sizeof buf);
    cJSON *o = cJSON_ParseWithLength(buf, n);
    assert_true(cJSON_IsObject(o));
    return o;
}

/* v1 (secure_version 1, signed with A and B, so it still boots once B replaced A) installed
 * in ota_0, booted and confirmed; security/ota_pubkey = A. */
static void robot_with_v1(void) {
    robot_new();
    nvs_put_key("ota_pubkey", "key_a.pub.pem");
    robot_boot();
    assert_int_equal(R.running.slot, -1);
    size_t len = 0;
    uint8_t *img = fkt_signed_app("1.0.0", 1, FKT_KAB, &len);
    assert_string_equal(send_image(img, len, 2048), "");
    free(img);
    robot_boot();
    assert_int_equal(R.running.slot, 0);
    assert_int_equal(R.running.state, FKD_OTA_IMG_PENDING_VERIFY);
    fkd_ota_remote_welcomed(&R.rem);
    assert_int_equal(R.running.state, FKD_OTA_IMG_VALID);
    robot_boot();
}

/* ---- tests
 * ------------------------------------------------------------------------------------------ */
static void ota_remote_update_fed_as_messages_boots_and_confirms_on_welcome(void **st) {
    (void)st;
    robot_with_v1();
    char fa[FKD_OTA_REMOTE_FPR_LEN];
    espsecure_fpr("key_a.digest.bin", fa);
    cJSON *o = state();
    assert_string_equal(jstr(o, "slot"), "ota_0");
    assert_string_equal(jstr(o, "state"), "valid");
    assert_string_equal(jstr(o, "version"), "1.0.0");
    assert_int_equal(cJSON_GetObjectItem(o, "secure_version")->valueint, 1);
    assert_int_equal(strlen(jstr(o, "app_sha256")), 64);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "updates")));
    cJSON *keys = cJSON_GetObjectItem(o, "keys");
    assert_string_equal(jstr(keys, "ota_pubkey"), fa);
    assert_null(cJSON_GetObjectItem(keys, "ota_pubkey2"));
    cJSON_Delete(o);

    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);
    assert_string_equal(send_image(img, len, 2048), "");
    assert_string_equal(jstr(last, "slot"), "ota_1");
    assert_string_equal(jstr(last, "version"), "2.0.0");
    assert_int_equal(cJSON_GetObjectItem(last, "secure_version")->valueint, 2);
    assert_string_equal(jstr(last, "key"), fa);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(last, "reboot")));
    assert_int_equal(rep.reboot, 1);
    /* Installed and about to reboot: no second update into the slot otadata now selects. */
    assert_string_equal(begin(len, img, len), "busy");

    robot_boot(); /* the reboot: the bootloader picks the new image */
    assert_int_equal(R.running.slot, 1);
    assert_int_equal(R.running.state, FKD_OTA_IMG_PENDING_VERIFY);
    o = state();
    assert_string_equal(jstr(o, "slot"), "ota_1");
    assert_string_equal(jstr(o, "state"), "pending_verify");
    assert_string_equal(jstr(o, "version"), "2.0.0");
    /* app_sha256 is the SHA-256 appended to the app image: the 32 bytes after its checksum. */
    char hx[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hx + 2 * i, 3, "%02x", img[R.running.app.image_len - 32 + (uint32_t)i]);
    }
    assert_string_equal(jstr(o, "app_sha256"), hx);
    cJSON_Delete(o);
    assert_string_equal(begin(len, img, len), "pending_verify");
    assert_int_equal(fkd_ota_committed_secver(&R.hw.nvs), 1);
    fkd_ota_remote_welcomed(&R.rem); /* the self-test: welcomed by the control plane */
    o = state();
    assert_string_equal(jstr(o, "state"), "valid");
    cJSON_Delete(o);
    assert_int_equal(fkd_ota_committed_secver(&R.hw.nvs), 2);
    robot_boot();
    assert_int_equal(R.running.slot, 1);
    assert_int_equal(R.running.state, FKD_OTA_IMG_VALID);
    free(img);
    printf("# struct fkd_ota_remote: %zu bytes of caller memory\n", sizeof(struct fkd_ota_remote));
}

static void ota_remote_answers_every_error_with_its_code(void **st) {
    (void)st;
    robot_with_v1();
    const struct fkd_part *odp = fkd_part_find(&R.hw.t, FKD_PART_DATA, FKD_PART_SUB_OTADATA, NULL);
    uint8_t before[2 * 4096];
    memcpy(before, R.hw.chip + odp->offset, sizeof before);
    size_t len = 0;
    uint8_t *img = fkt_signed_app("2.0.0", 2, FKT_KA, &len);

    /* No update in force. */
    assert_string_equal(chunk(0, img, 100), "no_update");
    assert_string_equal(req("ota_finish", "{}"), "no_update");
    assert_string_equal(req("ota_abort", "{}"), ""); /* ok also when there is none */
    assert_string_equal(req("ota_abort", NULL), "");
    /* Bodies: missing members, wrong types, out of range. */
    assert_string_equal(req("ota_begin", NULL), "bad_request");
    assert_string_equal(req("ota_begin", "{\"size\":\"8192\",\"sha256\":\"00\",\"version\":\"x\"}"),
                        "bad_request");
    assert_string_equal(begin(len + 1, img, len), "bad_request"); /* not a signed size */
    assert_string_equal(begin(4096, img, len), "bad_request");    /* below 8192 */
    assert_string_equal(begin(0x200000, img, len), "too_large");  /* larger than the slot */
    /* busy: a second begin while one is under way */
    assert_string_equal(begin(len, img, len), "");
    assert_string_equal(begin(len, img, len), "busy");
    assert_string_equal(req("ota_key", "{}"), "busy");
    /* bad_offset leaves the update in force; the right offset then goes on */
    assert_string_equal(chunk(100, img, 100), "bad_offset");
    assert_string_equal(chunk(0, img, 2048), "");
    assert_string_equal(chunk(0, img, 100), "bad_offset");
    /* bad base64 abandons it */
    assert_string_equal(req("ota_chunk", "{\"offset\":2048,\"data\":\"AAA\"}"), "bad_request");
    assert_string_equal(chunk(2048, img + 2048, 100), "no_update");
    static const char *const bad_b64[] = {"\"A===\"", "\"AA=A\"",    "\"AA==AAAA\"", "\"A A=\"",
                                          "\"\"",     "\"AA\\nA=\"", "12",           "null"};
    for (size_t i = 0; i < sizeof bad_b64 / sizeof bad_b64[0]; i++) {
        char body[64];
        assert_string_equal(begin(len, img, len), "");
        snprintf(body, sizeof body, "{\"offset\":0,\"data\":%s}", bad_b64[i]);
        assert_string_equal(req("ota_chunk", body), "bad_request");
        assert_string_equal(req("ota_finish", "{}"), "no_update");
    }
    /* "\/" is base64's '/' as a JSON writer may escape it */
    assert_string_equal(begin(len, img, len), "");
    char esc[256] = "{\"offset\":0,\"data\":\"";
    for (int i = 0; i < 32; i++) {
        strcat(esc, "\\/"); /* 32 x "\/": 24 bytes of 0xFF, not an app image header */
    }
    strcat(esc, "\"}");
    assert_string_equal(req("ota_chunk", esc), "not_app_image");
    /* more than chunk (2048 decoded bytes) */
    assert_string_equal(begin(len, img, len), "");
    assert_string_equal(chunk(0, img, 2049), "bad_request");
    assert_string_equal(chunk(0, img, 100), "no_update");
    /* not an app image: the first bytes */
    uint8_t *bad = malloc(len);
    memcpy(bad, img, len);
    bad[0] = 0x00;
    assert_string_equal(send_image(bad, len, 2048), "not_app_image");
    /* past size */
    assert_string_equal(begin(8192, img, len), "");
    for (size_t off = 0; off < 8192; off += 2048) {
        assert_string_equal(chunk(off, img + off, 2048), "");
    }
    assert_string_equal(chunk(8192, img + 8192, 1), "too_large");
    /* truncated: finish before every byte is in */
    assert_string_equal(begin(len, img, len), "");
    assert_string_equal(chunk(0, img, 2048), "");
    assert_string_equal(req("ota_finish", "{}"), "truncated");
    /* transfer_corrupt: a byte garbled on the way (the announced hash is of the real image) */
    memcpy(bad, img, len);
    bad[5000] ^= 1;
    assert_string_equal(begin(len, img, len), "");
    for (size_t off = 0; off < len; off += 2048) {
        assert_string_equal(chunk(off, bad + off, len - off < 2048 ? len - off : 2048), "");
    }
    assert_string_equal(req("ota_finish", "{}"), "transfer_corrupt");
    /* changed after signing, announced as sent: the signature's verdict */
    assert_string_equal(send_image(bad, len, 2048), "signature_mismatch");
    memcpy(bad, img, len);
    bad[len - FKD_SBV2_SECTOR + 60] ^= 4;
    assert_string_equal(send_image(bad, len, 2048), "signature_malformed");
    memcpy(bad, img, len);
    memset(bad + len - FKD_SBV2_SECTOR, 0xFF, FKD_SBV2_SECTOR);
    assert_string_equal(send_image(bad, len, 2048), "signature_untrusted"); /* unsigned */
    /* untrusted signature */
    size_t blen = 0;
    uint8_t *imgb = fkt_signed_app("2.0.0", 2, FKT_KB, &blen);
    assert_string_equal(send_image(imgb, blen, 2048), "signature_untrusted");
    /* anti-rollback: secure_version 0 below the committed 1 */
    size_t olen = 0;
    uint8_t *old = fkt_signed_app("0.9.0", 0, FKT_KA, &olen);
    assert_string_equal(send_image(old, olen, 1500), "anti_rollback");
    /* unknown kinds are the client's unsupported_kind */
    memset(&rep, 0, sizeof rep);
    rep.body = reply_body;
    rep.body_cap = sizeof reply_body;
    assert_int_equal(fkd_ota_remote_request(&R.rem, "rotate", (const uint8_t *)"{}", 2, &rep),
                     FKD_WSS_REQ_UNKNOWN);
    /* None of it touched otadata. */
    assert_memory_equal(before, R.hw.chip + odp->offset, sizeof before);
    robot_boot();
    assert_int_equal(R.running.slot, 0);
    assert_string_equal(R.running.app.version, "1.0.0");
    /* Development without a key: updates disabled, and said so in the state. */
    assert_int_equal(fkd_nvs_erase_key(&R.hw.nvs, "security", "ota_pubkey"), FKD_OK);
    robot_boot();
    cJSON *o = state();
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "updates")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "keys")), 0);
    cJSON_Delete(o);
    assert_string_equal(begin(len, img, len), "updates_disabled");
    free(img);
    free(imgb);
    free(old);
    free(bad);
}

/* Who endorses the keys key_body sends (the rotation's old key, a private vector key);
 * NULL: no endorsement member. */
static const char *endorser = "key_a.pem";
static char body2[4096];

static char *key_body(const char *slot, const char *pem, const char *fpr) {
    static char body[4096];
    uint8_t der[1024], e[FK_ROT_ENDORSE_LEN];
    size_t n = fkt_vector_pub_der(pem, der, sizeof der);
    char *s = b64(der, n);
    int w = snprintf(body, sizeof body, "{\"slot\":\"%s\",\"der\":\"%s\",\"fingerprint\":\"%s\"",
                     slot, s, fpr);
    free(s);
    if (endorser != NULL) {
        /* the host's endorsement (provision-keys rotate ota-key start makes the same) */
        struct fk_ota_key *k = fkt_vector_key(endorser);
        assert_int_equal(fk_rotation_endorse(k, der, n, e, NULL), FK_OK);
        fk_ota_key_free(k);
        char *es = b64(e, sizeof e);
        w += snprintf(body + w, sizeof body - (size_t)w, ",\"endorsement\":\"%s\"", es);
        free(es);
    }
    snprintf(body + w, sizeof body - (size_t)w, "}");
    return body;
}

static void nvs_key_is(const char *slot, const char *pem) {
    uint8_t want[1024], got[1024];
    size_t wn = 0, gn = 0;
    enum fkd_err rc = fkd_nvs_get_blob(&R.hw.nvs, "security", slot, got, sizeof got, &gn);
    if (pem == NULL) {
        assert_int_equal(rc, FKD_E_NOTFOUND);
        return;
    }
    assert_int_equal(rc, FKD_OK);
    wn = fkt_vector_pub_der(pem, want, sizeof want);
    assert_int_equal(gn, wn);
    assert_memory_equal(got, want, wn);
}

static void ota_remote_key_stage_then_promote(void **st) {
    (void)st;
    robot_with_v1();
    char fa[FKD_OTA_REMOTE_FPR_LEN], fb[FKD_OTA_REMOTE_FPR_LEN], fr[FKD_OTA_REMOTE_FPR_LEN];
    espsecure_fpr("key_a.digest.bin", fa);
    espsecure_fpr("key_b.digest.bin", fb);
    espsecure_fpr("key_rsa.digest.bin", fr);
    /* Refusals first: nothing changes. */
    assert_string_equal(req("ota_key", key_body("ota_pubkey3", "key_b.pub.pem", fb)),
                        "bad_request");
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", "sbv2:00")),
                        "bad_request");
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fa)),
                        "fingerprint_mismatch");
    char body[512];
    snprintf(body, sizeof body,
             "{\"slot\":\"ota_pubkey2\",\"der\":\"AAAA\",\"fingerprint\":\"%s\"}", fb);
    assert_string_equal(req("ota_key", body), "bad_key");
    snprintf(body, sizeof body,
             "{\"slot\":\"ota_pubkey2\",\"der\":\"AA!A\",\"fingerprint\":\"%s\"}", fb);
    assert_string_equal(req("ota_key", body), "bad_request");
    snprintf(body, sizeof body, "{\"slot\":\"ota_pubkey2\",\"der\":7,\"fingerprint\":\"%s\"}", fb);
    assert_string_equal(req("ota_key", body), "bad_request");
    /* A second key needs the endorsement of security/ota_pubkey (A): none, one by B itself,
     * one by A of another key (the RSA key's endorsement replayed for B). */
    endorser = NULL;
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fb)),
                        "not_endorsed");
    endorser = "key_b.pem";
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fb)),
                        "not_endorsed");
    endorser = "key_a.pem";
    {
        char other[4096], *p = NULL, *q = NULL;
        snprintf(other, sizeof other, "%s", key_body("ota_pubkey2", "key_rsa.pub.pem", fr));
        const char *replay = strstr(other, "\"endorsement\"");
        assert_non_null(replay);
        snprintf(body2, sizeof body2, "%s", key_body("ota_pubkey2", "key_b.pub.pem", fb));
        p = strstr(body2, "\"endorsement\"");
        assert_non_null(p);
        q = p;
        snprintf(q, sizeof body2 - (size_t)(q - body2), "%s", replay);
        assert_string_equal(req("ota_key", body2), "not_endorsed");
    }
    nvs_key_is("ota_pubkey2", NULL);
    /* Promoting a key the device does not hold next to the old one: never. */
    assert_string_equal(req("ota_key", key_body("ota_pubkey", "key_b.pub.pem", fb)), "not_staged");
    nvs_key_is("ota_pubkey", "key_a.pub.pem");
    nvs_key_is("ota_pubkey2", NULL);
    /* The current key sent again: ok, nothing written. */
    unsigned long ops = R.hw.m.ops;
    assert_string_equal(req("ota_key", key_body("ota_pubkey", "key_a.pub.pem", fa)), "");
    assert_int_equal(R.hw.m.ops, ops);

    /* Step 3: stage B; trusted at once, next to A. */
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fb)), "");
    cJSON *k = cJSON_GetObjectItem(last, "keys");
    assert_string_equal(jstr(k, "ota_pubkey"), fa);
    assert_string_equal(jstr(k, "ota_pubkey2"), fb);
    nvs_key_is("ota_pubkey2", "key_b.pub.pem");
    assert_int_equal(fkd_ota_remote_keys(&R.rem)->count, 2);
    ops = R.hw.m.ops;
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fb)), "");
    assert_int_equal(R.hw.m.ops, ops); /* idempotent */
    /* A B-signed update is accepted now (then dropped: abort after the check). */
    size_t blen = 0;
    uint8_t *imgb = fkt_signed_app("2.0.0", 2, FKT_KB, &blen);
    /* Replaced by another second key (RSA), then staged B again. */
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_rsa.pub.pem", fr)), "");
    nvs_key_is("ota_pubkey2", "key_rsa.pub.pem");
    assert_string_equal(req("ota_key", key_body("ota_pubkey", "key_b.pub.pem", fb)), "not_staged");
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fb)), "");

    /* Step 4: promote B; from then on only B. */
    assert_string_equal(req("ota_key", key_body("ota_pubkey", "key_b.pub.pem", fb)), "");
    k = cJSON_GetObjectItem(last, "keys");
    assert_string_equal(jstr(k, "ota_pubkey"), fb);
    assert_null(cJSON_GetObjectItem(k, "ota_pubkey2"));
    nvs_key_is("ota_pubkey", "key_b.pub.pem");
    nvs_key_is("ota_pubkey2", NULL);
    assert_int_equal(fkd_ota_remote_keys(&R.rem)->count, 1);
    ops = R.hw.m.ops;
    assert_string_equal(req("ota_key", key_body("ota_pubkey", "key_b.pub.pem", fb)), "");
    assert_int_equal(R.hw.m.ops, ops);
    size_t alen = 0;
    uint8_t *imga = fkt_signed_app("2.0.0", 2, FKT_KA, &alen);
    assert_string_equal(send_image(imga, alen, 2048), "signature_untrusted");
    assert_string_equal(send_image(imgb, blen, 2048), "");
    assert_string_equal(jstr(last, "key"), fb);
    /* The next boot reads the same from NVS. */
    robot_boot();
    cJSON *o = state();
    k = cJSON_GetObjectItem(o, "keys");
    assert_string_equal(jstr(k, "ota_pubkey"), fb);
    assert_null(cJSON_GetObjectItem(k, "ota_pubkey2"));
    cJSON_Delete(o);
    free(imga);
    free(imgb);
}

/* A power cut at every flash operation of the promotion (clean and torn): the device that
 * powers up trusts the new key, and the server's resend completes the promotion. */
static void ota_remote_key_promote_survives_a_power_cut_anywhere(void **st) {
    (void)st;
    robot_with_v1();
    char fb[FKD_OTA_REMOTE_FPR_LEN];
    espsecure_fpr("key_b.digest.bin", fb);
    assert_string_equal(req("ota_key", key_body("ota_pubkey2", "key_b.pub.pem", fb)), "");
    robot_boot();
    memcpy(snap, R.hw.chip, FKT_CHIP);
    char promote[2048];
    snprintf(promote, sizeof promote, "%s", key_body("ota_pubkey", "key_b.pub.pem", fb));
    unsigned long ops = R.hw.m.ops;
    assert_string_equal(req("ota_key", promote), "");
    unsigned long total = R.hw.m.ops - ops;
    assert_true(total >= 2);
    unsigned points = 0, both = 0;
    for (int torn = 0; torn <= 1; torn++) {
        for (unsigned long k = 1; k <= total; k++) {
            memcpy(R.hw.chip, snap, FKT_CHIP);
            robot_boot();
            fkd_flash_mem_cut(&R.hw.m, k, torn);
            assert_string_equal(req("ota_key", promote), "flash_error");
            robot_boot(); /* power back on */
            cJSON *o = state();
            cJSON *keys = cJSON_GetObjectItem(o, "keys");
            const cJSON *p1 = cJSON_GetObjectItem(keys, "ota_pubkey");
            const cJSON *p2 = cJSON_GetObjectItem(keys, "ota_pubkey2");
            /* The new key is trusted in one slot or both. */
            assert_true((cJSON_IsString(p1) && strcmp(p1->valuestring, fb) == 0) ||
                        (cJSON_IsString(p2) && strcmp(p2->valuestring, fb) == 0));
            both += cJSON_IsString(p1) && cJSON_IsString(p2) && strcmp(p1->valuestring, fb) == 0 &&
                    strcmp(p2->valuestring, fb) == 0;
            cJSON_Delete(o);
            assert_string_equal(req("ota_key", promote), "");
            nvs_key_is("ota_pubkey", "key_b.pub.pem");
            nvs_key_is("ota_pubkey2", NULL);
            robot_boot();
            assert_int_equal(fkd_ota_remote_keys(&R.rem)->count, 1);
            points++;
        }
    }
    assert_true(both > 0); /* some cut fell between the write and the erase */
    printf("# ota_key promotion: power cut swept at %u points (%lu operations x clean/torn), "
           "%u left the new key in both slots\n",
           points, total, both);
}

static int teardown(void **st) {
    (void)st;
    fkd_ota_remote_free(&R.rem);
    fkd_nvs_free(&R.hw.nvs);
    cJSON_Delete(last);
    last = NULL;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(ota_remote_update_fed_as_messages_boots_and_confirms_on_welcome,
                                  teardown),
        cmocka_unit_test_teardown(ota_remote_answers_every_error_with_its_code, teardown),
        cmocka_unit_test_teardown(ota_remote_key_stage_then_promote, teardown),
        cmocka_unit_test_teardown(ota_remote_key_promote_survives_a_power_cut_anywhere, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(R.hw.chip);
    free(snap);
    return rc;
}
