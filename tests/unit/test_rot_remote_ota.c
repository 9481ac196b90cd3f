/* The rotation class ota over the control channel (device/src/store/rot_remote.c), on an
 * in-memory flash with real NVS, with real keys (the Secure Boot V2 vectors' A and B) and
 * real signatures made by the host library (fk_rotation_endorse, fk_ota_sign), the requests
 * fed as the wss client feeds them:
 * - rot_stage ota: a key endorsed by the committed key stages, the manifest signed by the new
 *   key verifies with the staged slot, the answer is ota in trial; a repeat is idempotent;
 *   rot_commit flips the slot, erases the old key, and the store then loads the new key;
 * - refusals that write nothing: bad_request (members missing or malformed), bad_key,
 *   not_endorsed (endorsed by the new key itself, or by a key no longer committed), no_key
 *   (a robot without security/ota_pubkey);
 * - bad_manifest (signed by the old key, digest changed, members missing): the staged key is
 *   rolled back at once (reason invalid) and the spare slot erased.
 * FK_CORPUS_OUT=DIR also writes the committing exchange and a refused one as corpus files for
 * fuzz_rot_remote (one message a line; the test does not depend on them). */
#include "fkd/config.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/rot.h"
#include "fkd/rot_remote.h"
#include "fkd/store.h"
#include "fleetkey/common.h"
#include "fleetkey/ota.h"
#include "fleetkey/rotation.h"
#include "rot_remote_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key A (the committed key of a factory robot) and B (the successor). */
struct keys {
    struct fk_ota_key *k[2];
    uint8_t der[2][FK_ROT_DER_MAX];
    size_t len[2];
    uint8_t signed_by[2][2 * FK_OTA_SECTOR_SIZE]; /* 4096 bytes of data signed by A, by B */
};

static struct rr_dev D;
static struct keys K;

static void keys_load(void) {
    static const char *const names[2] = {"key_a.pem", "key_b.pem"};
    const char *dir = getenv("FK_VECTORS");
    assert_non_null(dir);
    uint8_t data[FK_OTA_SECTOR_SIZE];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 7u + 1u);
    }
    for (int k = 0; k < 2; k++) {
        char path[1024];
        struct fk_diag d;
        size_t n = 0;
        fk_diag_init(&d);
        snprintf(path, sizeof path, "%s/sbv2/%s", dir, names[k]);
        assert_int_equal(fk_ota_key_load(path, 1, &K.k[k], &d), FK_OK);
        assert_int_equal(fk_ota_key_public_der(K.k[k], K.der[k], sizeof K.der[k], &K.len[k]),
                         FK_OK);
        assert_int_equal(fk_ota_sign(data, sizeof data, &K.k[k], 1, K.signed_by[k],
                                     sizeof K.signed_by[k], &n, &d),
                         FK_OK);
        assert_int_equal(n, sizeof K.signed_by[k]);
    }
}

static void dev_factory(struct rr_dev *d, int with_key) {
    rr_format(d);
    if (with_key) {
        assert_int_equal(fkd_nvs_set_blob(&d->nvs, "security", "ota_pubkey", K.der[0], K.len[0]),
                         FKD_OK);
    }
}

static void dev_boot(struct rr_dev *d) {
    assert_int_equal(rr_boot(d), FKD_OK);
}

/* What the body's members are made of; NULL leaves a member out. */
struct ota_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *endorsement; /* FK_ROT_ENDORSE_LEN bytes */
    const uint8_t *sig;         /* FK_OTA_SIG_BLOCK_SIZE bytes */
    const uint8_t *sha256;      /* 32 bytes */
};

static const char *ota_body(uint32_t version, const struct ota_req *r) {
    static char body[8192];
    char k[1024] = "", e[2048] = "", s[2048] = "", h[64] = "";
    size_t n = (size_t)snprintf(body, sizeof body, "{\"class\":\"ota\",\"version\":%u", version);
    if (r->key != NULL) {
        rr_b64(r->key, r->key_len, k, sizeof k);
        n += (size_t)snprintf(body + n, sizeof body - n, ",\"key\":\"%s\"", k);
    }
    if (r->endorsement != NULL) {
        rr_b64(r->endorsement, FK_ROT_ENDORSE_LEN, e, sizeof e);
        n += (size_t)snprintf(body + n, sizeof body - n, ",\"endorsement\":\"%s\"", e);
    }
    if (r->sha256 != NULL) {
        rr_b64(r->sha256, 32, h, sizeof h);
        n += (size_t)snprintf(body + n, sizeof body - n, ",\"manifest_sha256\":\"%s\"", h);
    }
    if (r->sig != NULL) {
        rr_b64(r->sig, FK_OTA_SIG_BLOCK_SIZE, s, sizeof s);
        n += (size_t)snprintf(body + n, sizeof body - n, ",\"manifest_sig\":\"%s\"", s);
    }
    snprintf(body + n, sizeof body - n, "}");
    return body;
}

static void endorse(int by, int of, uint8_t out[FK_ROT_ENDORSE_LEN]) {
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_rotation_endorse(K.k[by], K.der[of], K.len[of], out, &d), FK_OK);
}

/* The manifest of the data signed by key k: its SHA-256 and block 0. */
static void manifest(int k, uint8_t sha[32], const uint8_t **sig) {
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(K.signed_by[k], FK_OTA_SECTOR_SIZE, sha, &n, EVP_sha256(), NULL),
                     1);
    assert_int_equal(n, 32);
    *sig = K.signed_by[k] + FK_OTA_SECTOR_SIZE;
}

/* Which key slot s holds: 0 (A), 1 (B), -1 empty, -2 anything else. */
static int slot_key(struct rr_dev *d, unsigned s) {
    uint8_t der[FKD_OTA_KEY_MAX + 1];
    size_t n = 0;
    enum fkd_err rc = fkd_rot_read(&d->rot, FKD_ROT_OTA, 0, s, der, sizeof der, &n);
    if (rc == FKD_E_NOTFOUND) {
        return -1;
    }
    for (int k = 0; rc == FKD_OK && k < 2; k++) {
        if (n == K.len[k] && memcmp(der, K.der[k], n) == 0) {
            return k;
        }
    }
    return -2;
}

static int setup(void **state) {
    (void)state;
    if (K.len[0] == 0) {
        keys_load();
    }
    fkd_rot_remote_init(&D.rem);
    dev_factory(&D, 1);
    dev_boot(&D);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fkd_rot_remote_free(&D.rem);
    return 0;
}

static int keys_free(void **state) {
    (void)state;
    fk_ota_key_free(K.k[0]);
    fk_ota_key_free(K.k[1]);
    return 0;
}

/* FK_CORPUS_OUT: one corpus file of fuzz_rot_remote, the requests as a server sends them. */
static void corpus_write(const char *name, const char *const *kinds, const char *const *bodies,
                         size_t n) {
    const char *dir = getenv("FK_CORPUS_OUT");
    char path[1024];
    if (dir == NULL) {
        return;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "{\"type\":\"request\",\"id\":\"%zu\",\"kind\":\"%s\",\"body\":%s}\n", i + 1,
                kinds[i], bodies[i]);
    }
    assert_int_equal(fclose(f), 0);
}

static void ota_stage_trial_commit(void **state) {
    (void)state;
    struct rr_dev *d = &D;
    uint8_t e[FK_ROT_ENDORSE_LEN], sha[32];
    const uint8_t *sig = NULL;
    endorse(0, 1, e);
    manifest(1, sha, &sig);
    struct ota_req r = {K.der[1], K.len[1], e, sig, sha};
    static const char *const kinds[] = {"rot_stage", "rot_commit"};
    const char *bodies[] = {ota_body(2, &r), "{\"class\":\"ota\",\"version\":2}"};
    corpus_write("ota_stage_commit", kinds, bodies, 2);
    uint8_t self[FK_ROT_ENDORSE_LEN];
    endorse(1, 1, self);
    struct ota_req bad = {K.der[1], K.len[1], self, sig, sha};
    corpus_write("ota_not_endorsed", kinds, (const char *const[]){ota_body(2, &bad), "{}"}, 1);
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "");
    assert_non_null(strstr(d->out, "\"ota\":{\"state\":\"trial\",\"version\":0,"
                                   "\"staged_version\":2"));
    /* the staged key is not trusted for images before the commit */
    static struct fkd_store st;
    static struct fkd_config cfg;
    const uint8_t *der = NULL;
    size_t n = 0;
    fkd_config_init(&cfg);
    fkd_store_init(&st);
    assert_int_equal(fkd_store_load_rot(&st, &d->nvs, &cfg, &d->rot), FKD_OK);
    assert_int_equal(fkd_store_get(&st, FKD_CRED_OTA_PUBKEY, &der, &n), FKD_OK);
    assert_memory_equal(der, K.der[0], K.len[0]);
    /* a repeat (the answer was lost) changes nothing */
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "");
    assert_int_equal(fkd_rot_info(&d->rot, FKD_ROT_OTA)->attempts, 1);
    assert_string_equal(rr_req(d, "rot_commit", "{\"class\":\"ota\",\"version\":3}"), "not_staged");
    assert_string_equal(rr_req(d, "rot_commit", "{\"class\":\"ota\",\"version\":2}"), "");
    const struct fkd_rot_info *i = fkd_rot_info(&d->rot, FKD_ROT_OTA);
    assert_int_equal(i->state, FKD_ROT_COMMITTED);
    assert_int_equal(i->active, FKD_ROT_SLOT_B);
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_B), 1);
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_A), -1); /* the old key is gone */
    /* after a reboot the store loads the new key */
    dev_boot(d);
    fkd_store_free(&st);
    fkd_store_init(&st);
    assert_int_equal(fkd_store_load_rot(&st, &d->nvs, &cfg, &d->rot), FKD_OK);
    assert_int_equal(fkd_store_get(&st, FKD_CRED_OTA_PUBKEY, &der, &n), FKD_OK);
    assert_int_equal(n, K.len[1]);
    assert_memory_equal(der, K.der[1], n);
    fkd_store_free(&st);
    /* the old key no longer vouches: a successor it endorses is refused, nothing written */
    struct ota_req again = {K.der[0], K.len[0], NULL, sig, sha};
    uint8_t e2[FK_ROT_ENDORSE_LEN];
    endorse(0, 0, e2);
    again.endorsement = e2;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(3, &again)), "not_endorsed");
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_A), -1);
}

static void ota_refusals_write_nothing(void **state) {
    (void)state;
    struct rr_dev *d = &D;
    uint8_t e[FK_ROT_ENDORSE_LEN], self[FK_ROT_ENDORSE_LEN], sha[32];
    const uint8_t *sig = NULL;
    endorse(0, 1, e);
    endorse(1, 1, self);
    manifest(1, sha, &sig);
    unsigned long ops = d->mem.ops;
    struct ota_req r = {NULL, 0, e, sig, sha};
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "bad_request"); /* no key */
    uint8_t junk[40];
    memset(junk, 0x30, sizeof junk);
    r.key = junk;
    r.key_len = sizeof junk;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "bad_key");
    r.key = K.der[1];
    r.key_len = K.len[1];
    r.endorsement = NULL;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "bad_request");
    assert_string_equal(rr_req(d, "rot_stage",
                               "{\"class\":\"ota\",\"version\":2,\"key\":\"AAAA\","
                               "\"endorsement\":\"AAAA\"}"),
                        "bad_key");
    /* the new key vouching for itself */
    r.endorsement = self;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "not_endorsed");
    /* an endorsement of another key */
    r.endorsement = e;
    r.key = K.der[0];
    r.key_len = K.len[0];
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "not_endorsed");
    assert_int_equal(d->mem.ops, ops); /* not one flash write */
    assert_int_equal(fkd_rot_info(&d->rot, FKD_ROT_OTA)->state, FKD_ROT_IDLE);
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_B), -1);
    /* a robot without an OTA key has nothing to check an endorsement with */
    dev_factory(d, 0);
    dev_boot(d);
    r.key = K.der[1];
    r.key_len = K.len[1];
    assert_string_equal(rr_req(d, "rot_stage", ota_body(2, &r)), "no_key");
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_B), -1);
}

static void ota_bad_manifest_rolls_back(void **state) {
    (void)state;
    struct rr_dev *d = &D;
    uint8_t e[FK_ROT_ENDORSE_LEN], sha_a[32], sha_b[32];
    const uint8_t *sig_a = NULL, *sig_b = NULL;
    endorse(0, 1, e);
    manifest(0, sha_a, &sig_a);
    manifest(1, sha_b, &sig_b);
    /* signed by the old key: the staged key does not verify it */
    struct ota_req r = {K.der[1], K.len[1], e, sig_a, sha_a};
    uint32_t v = 2;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(v, &r)), "bad_manifest");
    /* the new key's block over another digest */
    r.sig = sig_b;
    r.sha256 = sha_b;
    sha_b[0] ^= 1;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(++v, &r)), "bad_manifest");
    sha_b[0] ^= 1;
    /* members missing */
    r.sha256 = NULL;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(++v, &r)), "bad_manifest");
    r.sha256 = sha_b;
    r.sig = NULL;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(++v, &r)), "bad_manifest");
    const struct fkd_rot_info *i = fkd_rot_info(&d->rot, FKD_ROT_OTA);
    assert_int_equal(i->state, FKD_ROT_ROLLED_BACK);
    assert_int_equal(i->reason, FKD_ROT_R_INVALID);
    assert_int_equal(i->active, FKD_ROT_SLOT_A);
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_A), 0);
    assert_int_equal(slot_key(d, FKD_ROT_SLOT_B), -1); /* the spare slot was erased */
    /* and a good one still goes through after the rollbacks */
    r.sig = sig_b;
    assert_string_equal(rr_req(d, "rot_stage", ota_body(++v, &r)), "");
    assert_int_equal(fkd_rot_info(&d->rot, FKD_ROT_OTA)->state, FKD_ROT_TRIAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ota_stage_trial_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(ota_refusals_write_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(ota_bad_manifest_rolls_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, keys_free);
}
