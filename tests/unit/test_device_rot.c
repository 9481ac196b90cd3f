/* Device credential rotation (device/src/store/rot.c) on an in-memory flash with real NVS:
 * - the state machine's transitions and refusals (wrong version, trial restage, bad values);
 * - attempts and time limits rolling a trial back;
 * - a damaged record falling back to the slot that holds a credential;
 * - the power-cut sweeps: a PSK rotation (stage, trial, commit) and a failed one (stage,
 *   trials until the attempts run out) cut at every flash program operation, clean and torn,
 *   and again at every operation of the recovery boot. After every cut the robot boots with
 *   a complete credential, old or new (never half of each), and driven on it converges: new
 *   PSK in use and the old one erased, or the old one kept after a rollback;
 * - the same sweeps for the OTA signing key (class ota, real P-256 keys from the Secure Boot V2
 *   vectors): after every cut the store loads a security/ota_pubkey that the image verifier
 *   takes, the committed one (old until the commit, new after it). */
#include "fkd/config.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/rot.h"
#include "fkd/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <mbedtls/pk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVS_PAGES 4u
#define NVS_SIZE (NVS_PAGES * FKD_FLASH_SECTOR)

struct dev {
    uint8_t buf[NVS_SIZE];
    struct fkd_flash_mem mem;
    struct fkd_flash flash;
    struct fkd_nvs nvs;
    struct fkd_rot rot;
};

static const char *const ID_OLD = "robot-aabbccddeeff";
static const char *const ID_NEW = "robot-aabbccddeeff-v1";

static void fill_psk(uint8_t psk[FKD_PSK_LEN], uint8_t seed) {
    for (unsigned i = 0; i < FKD_PSK_LEN; i++) {
        psk[i] = (uint8_t)(seed * 31u + i);
    }
}

/* The OTA keys of the class ota tests: version 0 (as minted) is the vectors' key A, version 1
 * key B; DER SubjectPublicKeyInfo, as security/ota_pubkey holds them. */
static uint8_t ota_der[2][FKD_OTA_KEY_MAX];
static size_t ota_len[2];

static void ota_keys_load(void) {
    static const char *const names[2] = {"key_a.pub.pem", "key_b.pub.pem"};
    const char *dir = getenv("FK_VECTORS");
    assert_non_null(dir);
    for (int k = 0; k < 2; k++) {
        char path[1024];
        unsigned char pem[4096];
        snprintf(path, sizeof path, "%s/sbv2/%s", dir, names[k]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t n = fread(pem, 1, sizeof pem - 1, f);
        fclose(f);
        pem[n] = 0;
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        assert_int_equal(mbedtls_pk_parse_public_key(&pk, pem, n + 1), 0);
        int l = mbedtls_pk_write_pubkey_der(&pk, ota_der[k], sizeof ota_der[k]);
        mbedtls_pk_free(&pk);
        assert_true(l > 0);
        /* mbedTLS writes at the end of the buffer */
        memmove(ota_der[k], ota_der[k] + sizeof ota_der[k] - (size_t)l, (size_t)l);
        ota_len[k] = (size_t)l;
    }
}

/* A factory-fresh robot: NVS with the seed's slot-A items, no rotation record. */
static void dev_factory(struct dev *d) {
    memset(d->buf, 0xff, sizeof d->buf);
    fkd_flash_mem_init(&d->mem, d->buf, NVS_SIZE, &d->flash);
    fkd_nvs_init(&d->nvs);
    assert_int_equal(fkd_nvs_format(&d->nvs, &d->flash, 0, NVS_SIZE, NULL), FKD_OK);
    uint8_t psk[FKD_PSK_LEN];
    fill_psk(psk, 0);
    assert_int_equal(fkd_nvs_set_blob(&d->nvs, "security", "dtls_psk", psk, sizeof psk), FKD_OK);
    assert_int_equal(fkd_nvs_set_str(&d->nvs, "security", "psk_id", ID_OLD), FKD_OK);
    if (ota_len[0] > 0) {
        assert_int_equal(
            fkd_nvs_set_blob(&d->nvs, "security", "ota_pubkey", ota_der[0], ota_len[0]), FKD_OK);
    }
}

/* Power back on: mount NVS and load the rotation records (which repairs). */
static enum fkd_err dev_boot(struct dev *d, unsigned attempts, uint64_t trial_ms) {
    fkd_nvs_init(&d->nvs);
    enum fkd_err rc = fkd_nvs_mount(&d->nvs, &d->flash, 0, NVS_SIZE, NULL, NULL);
    if (rc != FKD_OK) {
        return rc;
    }
    fkd_rot_init(&d->rot);
    return fkd_rot_load(&d->rot, &d->nvs, attempts, trial_ms);
}

static enum fkd_err stage_new(struct dev *d, uint32_t version) {
    uint8_t psk[FKD_PSK_LEN];
    fill_psk(psk, (uint8_t)version);
    struct fkd_rot_value v[2] = {{psk, sizeof psk},
                                 {(const uint8_t *)ID_NEW, strlen(ID_NEW)}};
    return fkd_rot_stage(&d->rot, FKD_ROT_PSK, version, v, 2);
}

/* Which PSK version the slot holds: 0 or 1 for a complete, consistent credential, -1 for an
 * empty slot, -2 for anything else (half of each, wrong bytes). */
static int slot_version(struct dev *d, unsigned slot) {
    uint8_t psk[FKD_PSK_LEN + 1];
    char id[FKD_PSK_ID_MAX + 1];
    size_t plen = 0;
    size_t ilen = 0;
    enum fkd_err a = fkd_rot_read(&d->rot, FKD_ROT_PSK, 0, slot, psk, sizeof psk, &plen);
    enum fkd_err b =
        fkd_rot_read(&d->rot, FKD_ROT_PSK, 1, slot, (uint8_t *)id, sizeof id, &ilen);
    if (a == FKD_E_NOTFOUND && b == FKD_E_NOTFOUND) {
        return -1;
    }
    if (a != FKD_OK || b != FKD_OK || plen != FKD_PSK_LEN) {
        return -2;
    }
    for (int v = 0; v <= 1; v++) {
        uint8_t want[FKD_PSK_LEN];
        fill_psk(want, (uint8_t)v);
        if (memcmp(psk, want, sizeof want) == 0 && strcmp(id, v ? ID_NEW : ID_OLD) == 0) {
            return v;
        }
    }
    return -2;
}

static void rot_factory_state_is_idle_slot_a(void **state) {
    (void)state;
    static struct dev d;
    dev_factory(&d);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    const struct fkd_rot_info *i = fkd_rot_info(&d.rot, FKD_ROT_PSK);
    assert_int_equal(i->state, FKD_ROT_IDLE);
    assert_int_equal(i->active, FKD_ROT_SLOT_A);
    assert_int_equal(i->version, 0);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_A);
    assert_int_equal(fkd_rot_slot_next(&d.rot, FKD_ROT_PSK), -1);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_A), 0);
    assert_string_equal(fkd_rot_state_name(i->state), "idle");
    assert_string_equal(fkd_rot_class_name(FKD_ROT_MTLS), "mtls");
    assert_string_equal(fkd_rot_state_name((enum fkd_rot_state)99), "?");
}

static void rot_commit_flips_slot_and_erases_old(void **state) {
    (void)state;
    static struct dev d;
    dev_factory(&d);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    assert_int_equal(stage_new(&d, 1), FKD_OK);
    assert_int_equal(fkd_rot_info(&d.rot, FKD_ROT_PSK)->state, FKD_ROT_STAGED);
    assert_int_equal(fkd_rot_slot_next(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
    /* Staged is not used yet: the listener still authenticates with A, accepts B as next. */
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_A);
    assert_int_equal(fkd_rot_commit(&d.rot, FKD_ROT_PSK, 1), FKD_E_STATE);
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 10), FKD_OK);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
    /* A staged credential cannot be replaced mid-trial. */
    assert_int_equal(stage_new(&d, 2), FKD_E_STATE);
    /* The server confirmed another version: nothing changes. */
    assert_int_equal(fkd_rot_commit(&d.rot, FKD_ROT_PSK, 7), FKD_E_AUTH);
    assert_int_equal(fkd_rot_info(&d.rot, FKD_ROT_PSK)->state, FKD_ROT_TRIAL);
    assert_int_equal(fkd_rot_commit(&d.rot, FKD_ROT_PSK, 1), FKD_OK);
    const struct fkd_rot_info *i = fkd_rot_info(&d.rot, FKD_ROT_PSK);
    assert_int_equal(i->state, FKD_ROT_COMMITTED);
    assert_int_equal(i->active, FKD_ROT_SLOT_B);
    assert_int_equal(i->version, 1);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_B), 1);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_A), -1); /* the old PSK is gone */
    /* Survives a reboot; the next rotation goes into A. */
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
    assert_int_equal(stage_new(&d, 1), FKD_E_RANGE); /* not newer */
    assert_int_equal(stage_new(&d, 2), FKD_OK);
    assert_int_equal(fkd_rot_slot_next(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_A);
}

static void rot_stage_rejects_bad_values(void **state) {
    (void)state;
    static struct dev d;
    dev_factory(&d);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    uint8_t psk[FKD_PSK_LEN + 1] = {0};
    struct fkd_rot_value v[2] = {{psk, FKD_PSK_LEN - 1}, {(const uint8_t *)"id", 2}};
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_PSK, 1, v, 2), FKD_E_ARG); /* short PSK */
    v[0].len = FKD_PSK_LEN + 1;
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_PSK, 1, v, 2), FKD_E_ARG); /* long PSK */
    v[0].len = FKD_PSK_LEN;
    v[1] = (struct fkd_rot_value){(const uint8_t *)"a b", 3};
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_PSK, 1, v, 2), FKD_E_ARG); /* space */
    v[1] = (struct fkd_rot_value){(const uint8_t *)"", 0};
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_PSK, 1, v, 2), FKD_E_ARG); /* empty id */
    v[1] = (struct fkd_rot_value){(const uint8_t *)"id", 2};
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_PSK, 1, v, 1), FKD_E_ARG); /* count */
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_CLASS_COUNT, 1, v, 2), FKD_E_ARG);
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_PSK, 0, v, 2), FKD_E_RANGE);
    assert_int_equal(fkd_rot_info(&d.rot, FKD_ROT_PSK)->state, FKD_ROT_IDLE);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_B), -1); /* nothing was written */
    /* Other classes: one item each for CA and OTA, two for mTLS. */
    assert_int_equal(fkd_rot_items(FKD_ROT_CA), 1);
    assert_int_equal(fkd_rot_items(FKD_ROT_MTLS), 2);
    struct fkd_rot_value ca = {(const uint8_t *)"\x30\x03\x02\x01\x01", 5};
    assert_int_equal(fkd_rot_stage(&d.rot, FKD_ROT_CA, 1, &ca, 1), FKD_OK);
    const char *ns;
    const char *key;
    assert_int_equal(fkd_rot_key(FKD_ROT_CA, 0, FKD_ROT_SLOT_B, &ns, &key), FKD_OK);
    assert_string_equal(ns, "mtls");
    assert_string_equal(key, "ca_cert_b");
    assert_int_equal(fkd_rot_key(FKD_ROT_CA, 1, FKD_ROT_SLOT_B, &ns, &key), FKD_E_ARG);
}

static void rot_attempts_run_out_then_roll_back(void **state) {
    (void)state;
    static struct dev d;
    dev_factory(&d);
    assert_int_equal(dev_boot(&d, 2, 0), FKD_OK);
    assert_int_equal(stage_new(&d, 1), FKD_OK);
    /* Each boot tries once; attempts are counted in NVS, so reboots do not reset them. */
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 5), FKD_OK);
    assert_int_equal(dev_boot(&d, 2, 0), FKD_OK);
    assert_int_equal(fkd_rot_info(&d.rot, FKD_ROT_PSK)->attempts, 1);
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 5), FKD_OK);
    assert_int_equal(dev_boot(&d, 2, 0), FKD_OK);
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 5), FKD_E_TIMEOUT);
    const struct fkd_rot_info *i = fkd_rot_info(&d.rot, FKD_ROT_PSK);
    assert_int_equal(i->state, FKD_ROT_ROLLED_BACK);
    assert_int_equal(i->reason, FKD_ROT_R_ATTEMPTS);
    assert_int_equal(i->version, 0);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_A);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_A), 0);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_B), -1);
    assert_int_equal(fkd_rot_rollback(&d.rot, FKD_ROT_PSK, FKD_ROT_R_SERVER), FKD_E_STATE);
    /* A later rotation starts again from here. */
    assert_int_equal(stage_new(&d, 1), FKD_OK);
    assert_int_equal(fkd_rot_rollback(&d.rot, FKD_ROT_PSK, FKD_ROT_R_SERVER), FKD_OK);
    assert_int_equal(fkd_rot_info(&d.rot, FKD_ROT_PSK)->reason, FKD_ROT_R_SERVER);
}

static void rot_trial_time_limit_rolls_back(void **state) {
    (void)state;
    static struct dev d;
    dev_factory(&d);
    assert_int_equal(dev_boot(&d, 5, 1000), FKD_OK);
    assert_int_equal(stage_new(&d, 1), FKD_OK);
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 100), FKD_OK);
    assert_int_equal(fkd_rot_poll(&d.rot, 1100), 0); /* exactly at the limit: still on */
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 600), FKD_OK);
    assert_int_equal(fkd_rot_poll(&d.rot, 1101), 1); /* measured from the first attempt */
    assert_int_equal(fkd_rot_info(&d.rot, FKD_ROT_PSK)->reason, FKD_ROT_R_TIMEOUT);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_B), -1);
}

static void rot_damaged_record_falls_back_to_a_complete_slot(void **state) {
    (void)state;
    static struct dev d;
    dev_factory(&d);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    assert_int_equal(stage_new(&d, 1), FKD_OK);
    assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 1), FKD_OK);
    assert_int_equal(fkd_rot_commit(&d.rot, FKD_ROT_PSK, 1), FKD_OK);
    /* Only B holds a PSK now; a record that is not ours must not send the robot to A. */
    const uint8_t junk[16] = {'X'};
    assert_int_equal(fkd_nvs_set_blob(&d.nvs, "fk_rot", "psk", junk, sizeof junk), FKD_OK);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_B), 1);
    /* A record of the wrong length or a wrong type is handled the same way. */
    assert_int_equal(fkd_nvs_set_str(&d.nvs, "fk_rot", "psk", "staged"), FKD_OK);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
    /* A tool rewrote slot A and erased B under a record that names B: the record follows the
     * whole slot; the only good copy is never erased. */
    assert_int_equal(fkd_nvs_erase_key(&d.nvs, "security", "dtls_psk_b"), FKD_OK);
    uint8_t psk[FKD_PSK_LEN];
    fill_psk(psk, 0);
    assert_int_equal(fkd_nvs_set_blob(&d.nvs, "security", "dtls_psk", psk, sizeof psk), FKD_OK);
    assert_int_equal(fkd_nvs_set_str(&d.nvs, "security", "psk_id", ID_OLD), FKD_OK);
    assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
    assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_A);
    assert_int_equal(slot_version(&d, FKD_ROT_SLOT_A), 0);
}

/* A staged successor waits, and the credential in use vanishes behind the record's back (found
 * by fuzz_rot_record): the robot adopts the successor instead of sitting on an empty slot. */
static void rot_staged_successor_replaces_a_vanished_current(void **state) {
    (void)state;
    static struct dev d;
    for (int trial = 0; trial <= 1; trial++) {
        dev_factory(&d);
        assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
        assert_int_equal(stage_new(&d, 1), FKD_OK);
        if (trial) {
            assert_int_equal(fkd_rot_trial_begin(&d.rot, FKD_ROT_PSK, 1), FKD_OK);
        }
        assert_int_equal(fkd_nvs_erase_key(&d.nvs, "security", "dtls_psk"), FKD_OK);
        assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
        const struct fkd_rot_info *i = fkd_rot_info(&d.rot, FKD_ROT_PSK);
        assert_int_equal(i->state, FKD_ROT_IDLE);
        assert_int_equal(i->version, 1);
        assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
        assert_int_equal(slot_version(&d, FKD_ROT_SLOT_B), 1);
        /* and it is what the next boot finds, too */
        assert_int_equal(dev_boot(&d, 0, 0), FKD_OK);
        assert_int_equal(fkd_rot_slot_in_use(&d.rot, FKD_ROT_PSK), FKD_ROT_SLOT_B);
    }
}

/* ---- the power-cut sweeps ---------------------------------------------------------------- */

enum scenario { SC_COMMIT, SC_ROLLBACK };
#define SWEEP_ATTEMPTS 2u

/* The class a sweep rotates: psk (PSK + identity) or ota (the OTA signing key). */
static enum fkd_rot_class sweep_cls = FKD_ROT_PSK;

static enum fkd_err sweep_stage(struct dev *d, uint32_t version) {
    if (sweep_cls == FKD_ROT_PSK) {
        return stage_new(d, version);
    }
    struct fkd_rot_value v = {ota_der[version & 1u], ota_len[version & 1u]};
    return fkd_rot_stage(&d->rot, FKD_ROT_OTA, version, &v, 1);
}

/* As slot_version, for the class of the sweep. */
static int sweep_slot_version(struct dev *d, unsigned slot) {
    if (sweep_cls == FKD_ROT_PSK) {
        return slot_version(d, slot);
    }
    uint8_t der[FKD_OTA_KEY_MAX + 1];
    size_t n = 0;
    enum fkd_err rc = fkd_rot_read(&d->rot, FKD_ROT_OTA, 0, slot, der, sizeof der, &n);
    if (rc == FKD_E_NOTFOUND) {
        return -1;
    }
    for (int v = 0; rc == FKD_OK && v <= 1; v++) {
        if (n == ota_len[v] && memcmp(der, ota_der[v], n) == 0) {
            return v;
        }
    }
    return -2;
}

/* The key images are checked with after this boot: the store's security/ota_pubkey must be
 * the committed key, whole, and one the Secure Boot V2 verifier takes. */
static void check_ota_store(struct dev *d, unsigned long cut, int torn) {
    static struct fkd_store st;
    static struct fkd_config cfg;
    fkd_config_init(&cfg);
    fkd_store_init(&st);
    assert_int_equal(fkd_store_load_rot(&st, &d->nvs, &cfg, &d->rot), FKD_OK);
    const uint8_t *der = NULL;
    size_t n = 0;
    uint32_t v = fkd_rot_info(&d->rot, FKD_ROT_OTA)->version;
    if (fkd_store_get(&st, FKD_CRED_OTA_PUBKEY, &der, &n) != FKD_OK || n != ota_len[v & 1u] ||
        memcmp(der, ota_der[v & 1u], n) != 0) {
        fail_msg("ota cut %lu torn %d: the store's OTA key is not the committed version %lu", cut,
                 torn, (unsigned long)v);
    }
    struct fkd_sbv2_keys ks;
    fkd_sbv2_keys_init(&ks);
    assert_int_equal(fkd_sbv2_keys_add(&ks, der, n), FKD_OK);
    fkd_store_free(&st);
}

/* The rotation as the robot runs it, one step per boot where a boot would happen. Returns the
 * first error (a power cut). */
static enum fkd_err run_scenario(struct dev *d, enum scenario sc) {
    enum fkd_err rc;
    if ((rc = dev_boot(d, SWEEP_ATTEMPTS, 0)) != FKD_OK || (rc = sweep_stage(d, 1)) != FKD_OK) {
        return rc;
    }
    if (sc == SC_COMMIT) {
        if ((rc = fkd_rot_trial_begin(&d->rot, sweep_cls, 1)) != FKD_OK) {
            return rc;
        }
        return fkd_rot_commit(&d->rot, sweep_cls, 1);
    }
    for (unsigned k = 0; k <= SWEEP_ATTEMPTS; k++) {
        if ((rc = dev_boot(d, SWEEP_ATTEMPTS, 0)) != FKD_OK) {
            return rc;
        }
        rc = fkd_rot_trial_begin(&d->rot, sweep_cls, 1);
        if (rc == FKD_E_TIMEOUT) {
            return FKD_OK; /* rolled back */
        }
        if (rc != FKD_OK) {
            return rc;
        }
    }
    return FKD_E_INTERNAL; /* the attempts never ran out */
}

/* After a cut and a boot: the credential the robot authenticates with is complete, and the
 * rest of the rotation converges. */
static void check_and_converge(struct dev *d, enum scenario sc, unsigned long cut, int torn) {
    unsigned use = fkd_rot_slot_in_use(&d->rot, sweep_cls);
    int v = sweep_slot_version(d, use);
    if (v < 0) {
        fail_msg("%s cut %lu torn %d: the slot in use (%c) holds %s",
                 sc == SC_COMMIT ? "commit" : "rollback", cut, torn, use ? 'B' : 'A',
                 v == -1 ? "nothing" : "a mixed or damaged credential");
    }
    const struct fkd_rot_info *i = fkd_rot_info(&d->rot, sweep_cls);
    if ((uint32_t)v != (i->state == FKD_ROT_TRIAL ? i->staged_version : i->version)) {
        fail_msg("cut %lu: slot in use holds version %d, the record says otherwise", cut, v);
    }
    if (sweep_cls == FKD_ROT_OTA) {
        check_ota_store(d, cut, torn);
    }
    /* Drive it on: a robot whose rotation was cut before it was staged is re-sent the
     * successor; then trials until commit (or rollback). */
    for (int step = 0; step < 8; step++) {
        i = fkd_rot_info(&d->rot, sweep_cls);
        if (sc == SC_COMMIT && i->state == FKD_ROT_COMMITTED) {
            break;
        }
        if (sc == SC_ROLLBACK && i->state == FKD_ROT_ROLLED_BACK) {
            break;
        }
        if (i->state == FKD_ROT_IDLE) {
            assert_int_equal(sweep_stage(d, 1), FKD_OK);
        } else if (i->state == FKD_ROT_STAGED || i->state == FKD_ROT_TRIAL) {
            enum fkd_err rc = fkd_rot_trial_begin(&d->rot, sweep_cls, 1);
            if (sc == SC_COMMIT) {
                assert_int_equal(rc, FKD_OK);
                assert_int_equal(fkd_rot_commit(&d->rot, sweep_cls, 1), FKD_OK);
            } else if (rc != FKD_E_TIMEOUT) {
                assert_int_equal(rc, FKD_OK);
                assert_int_equal(dev_boot(d, SWEEP_ATTEMPTS, 0), FKD_OK);
            }
        } else {
            fail_msg("cut %lu: unexpected state %s", cut, fkd_rot_state_name(i->state));
        }
    }
    assert_int_equal(dev_boot(d, SWEEP_ATTEMPTS, 0), FKD_OK);
    i = fkd_rot_info(&d->rot, sweep_cls);
    unsigned want_v = sc == SC_COMMIT ? 1u : 0u;
    if (i->version != want_v || sweep_slot_version(d, i->active) != (int)want_v ||
        sweep_slot_version(d, i->active ^ 1u) != -1) {
        fail_msg("%s cut %lu torn %d: did not converge (state %s, version %lu)",
                 sc == SC_COMMIT ? "commit" : "rollback", cut, torn, fkd_rot_state_name(i->state),
                 (unsigned long)i->version);
    }
}

static unsigned long sweep(enum scenario sc, int torn, unsigned long *nested) {
    static struct dev d;
    static uint8_t after_cut[NVS_SIZE];
    dev_factory(&d);
    unsigned long base = d.mem.ops;
    assert_int_equal(run_scenario(&d, sc), FKD_OK);
    unsigned long total = d.mem.ops - base;
    assert_true(total > 3);
    unsigned long cuts = 0;
    for (unsigned long cut = 1; cut <= total; cut++) {
        dev_factory(&d);
        fkd_flash_mem_cut(&d.mem, cut, torn);
        enum fkd_err rc = run_scenario(&d, sc);
        assert_int_not_equal(rc, FKD_OK); /* the cut happened inside the scenario */
        fkd_flash_mem_cut(&d.mem, 0, 0);
        memcpy(after_cut, d.buf, NVS_SIZE);
        /* The boot after the cut is itself cut at each of its program operations. */
        unsigned long before = d.mem.ops;
        assert_int_equal(dev_boot(&d, SWEEP_ATTEMPTS, 0), FKD_OK);
        unsigned long boot_ops = d.mem.ops - before;
        for (unsigned long c2 = 1; c2 <= boot_ops; c2++) {
            memcpy(d.buf, after_cut, NVS_SIZE);
            fkd_flash_mem_cut(&d.mem, c2, torn);
            (void)dev_boot(&d, SWEEP_ATTEMPTS, 0);
            fkd_flash_mem_cut(&d.mem, 0, 0);
            assert_int_equal(dev_boot(&d, SWEEP_ATTEMPTS, 0), FKD_OK);
            check_and_converge(&d, sc, cut, torn);
            (*nested)++;
        }
        memcpy(d.buf, after_cut, NVS_SIZE);
        assert_int_equal(dev_boot(&d, SWEEP_ATTEMPTS, 0), FKD_OK);
        check_and_converge(&d, sc, cut, torn);
        cuts++;
    }
    return cuts;
}

static void rot_power_cut_at_every_write(void **state) {
    (void)state;
    unsigned long nested = 0;
    unsigned long cuts = 0;
    sweep_cls = FKD_ROT_PSK;
    for (int sc = SC_COMMIT; sc <= SC_ROLLBACK; sc++) {
        for (int torn = 0; torn <= 1; torn++) {
            cuts += sweep((enum scenario)sc, torn, &nested);
        }
    }
    printf("rot power-cut sweep: %lu cut points (commit and rollback, clean and torn), "
           "%lu cuts of the recovery boot: 0 failures\n",
           cuts, nested);
}

static void rot_ota_key_power_cut_at_every_write(void **state) {
    (void)state;
    unsigned long nested = 0;
    unsigned long cuts = 0;
    ota_keys_load();
    sweep_cls = FKD_ROT_OTA;
    for (int sc = SC_COMMIT; sc <= SC_ROLLBACK; sc++) {
        for (int torn = 0; torn <= 1; torn++) {
            cuts += sweep((enum scenario)sc, torn, &nested);
        }
    }
    sweep_cls = FKD_ROT_PSK;
    printf("rot ota power-cut sweep: %lu cut points (commit and rollback, clean and torn), "
           "%lu cuts of the recovery boot, each booting with a usable OTA key: 0 failures\n",
           cuts, nested);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rot_factory_state_is_idle_slot_a),
        cmocka_unit_test(rot_commit_flips_slot_and_erases_old),
        cmocka_unit_test(rot_stage_rejects_bad_values),
        cmocka_unit_test(rot_attempts_run_out_then_roll_back),
        cmocka_unit_test(rot_trial_time_limit_rolls_back),
        cmocka_unit_test(rot_damaged_record_falls_back_to_a_complete_slot),
        cmocka_unit_test(rot_staged_successor_replaces_a_vanished_current),
        cmocka_unit_test(rot_power_cut_at_every_write),
        cmocka_unit_test(rot_ota_key_power_cut_at_every_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
