/* OTA signing-key rotation planner (fleetkey/rotation.h) on a small fleet in a real SQLite
 * inventory: every early step is refused with the exact list of blocking devices (and the
 * refusal is audited), then the whole sequence succeeds, the old key ends retired, and the
 * audit chain verifies. Keys: the Secure Boot V2 vectors' A (old) and B (new). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include "fleetkey/inventory.h"
#include "fleetkey/ota.h"
#include "fleetkey/rotation.h"
#include "inv_location.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct fk_inventory *inv;
static struct fk_rot_keys K;
static char db[1024];
static uint8_t new_der[FK_ROT_DER_MAX], old_der[FK_ROT_DER_MAX]; /* B and A, DER SPKI */
static size_t new_der_len, old_der_len;
static uint8_t endorse[FK_ROT_ENDORSE_LEN]; /* A's endorsement of B */

static struct fk_ota_key *key(const char *name) {
    const char *v = getenv("FK_VECTORS");
    char path[1024];
    snprintf(path, sizeof path, "%s/sbv2/%s", v != NULL ? v : "tests/vectors", name);
    struct fk_ota_key *k = NULL;
    assert_int_equal(fk_ota_key_load(path, 0, &k, NULL), FK_OK);
    return k;
}

static void add_device(const char *id, const char *mac, const char *state) {
    struct fk_inv_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "%s", id);
    snprintf(d.mac, sizeof d.mac, "%s", mac);
    snprintf(d.state, sizeof d.state, "%s", state);
    assert_int_equal(fk_inventory_device_upsert(inv, &d, NULL), FK_OK);
}

static int setup(void **state) {
    (void)state;
    assert_int_equal(fk_test_inv_fresh("rotation", "/tmp/test_rotation", db, sizeof db), 0);
    assert_int_equal(fk_inventory_open(db, &inv, NULL), FK_OK);
    add_device("robot-AAAAAAAAAA01", "AA:AA:AA:AA:AA:01", "provisioned");
    add_device("robot-AAAAAAAAAA02", "AA:AA:AA:AA:AA:02", "provisioned");
    add_device("robot-AAAAAAAAAA03", "AA:AA:AA:AA:AA:03", "provisioned");
    add_device("robot-AAAAAAAAAA09", "AA:AA:AA:AA:AA:09", "retired"); /* takes no part */
    struct fk_ota_key *a = key("key_a.pub.pem");
    struct fk_ota_key *b = key("key_b.pub.pem");
    assert_int_equal(fk_rotation_key_fpr(a, K.old_fpr), FK_OK);
    assert_int_equal(fk_rotation_key_fpr(b, K.new_fpr), FK_OK);
    assert_int_equal(fk_ota_key_public_der(b, new_der, sizeof new_der, &new_der_len), FK_OK);
    assert_int_equal(fk_ota_key_public_der(a, old_der, sizeof old_der, &old_der_len), FK_OK);
    /* the DER round-trips to the same fingerprint */
    char fpr[FK_INV_FPR_SIZE];
    assert_int_equal(fk_rotation_der_fpr(new_der, new_der_len, fpr), FK_OK);
    assert_string_equal(fpr, K.new_fpr);
    assert_int_equal(fk_rotation_der_fpr(new_der, new_der_len - 1, fpr), FK_E_PARSE);
    size_t need = 0;
    assert_int_equal(fk_ota_key_public_der(b, new_der, 10, &need), FK_E_NOSPACE);
    assert_int_equal(need, new_der_len);
    assert_int_equal(fk_ota_key_public_der(b, new_der, sizeof new_der, &new_der_len), FK_OK);
    fk_ota_key_free(a);
    /* A endorses B: a signature block checked against A's fingerprint, and nothing else */
    struct fk_ota_key *ap = key("key_a.pem");
    struct fk_ota_key *bp = key("key_b.pem");
    assert_int_equal(fk_rotation_endorse(ap, new_der, new_der_len, endorse, NULL), FK_OK);
    assert_int_equal(fk_rotation_endorsement_check(K.old_fpr, new_der, new_der_len, endorse, NULL),
                     FK_OK);
    assert_int_equal(fk_rotation_endorsement_check(K.new_fpr, new_der, new_der_len, endorse, NULL),
                     FK_E_VERIFY); /* not B's signature */
    assert_int_equal(fk_rotation_endorsement_check(K.old_fpr, old_der, old_der_len, endorse, NULL),
                     FK_E_VERIFY); /* not an endorsement of A */
    uint8_t bad[FK_ROT_ENDORSE_LEN];
    memcpy(bad, endorse, sizeof bad);
    bad[600] ^= 1;
    assert_int_equal(fk_rotation_endorsement_check(K.old_fpr, new_der, new_der_len, bad, NULL),
                     FK_E_VERIFY);
    uint8_t by_b[FK_ROT_ENDORSE_LEN];
    assert_int_equal(fk_rotation_endorse(bp, new_der, new_der_len, by_b, NULL), FK_OK);
    assert_int_equal(fk_rotation_endorsement_check(K.old_fpr, new_der, new_der_len, by_b, NULL),
                     FK_E_VERIFY); /* the new key vouching for itself */
    struct fk_ota_key *apub = key("key_a.pub.pem");
    assert_int_equal(fk_rotation_endorse(apub, new_der, new_der_len, by_b, NULL), FK_E_ARG);
    fk_ota_key_free(apub);
    fk_ota_key_free(ap);
    fk_ota_key_free(bp);
    fk_ota_key_free(b);
    /* The fingerprint is the eFuse key digest espsecure computes. */
    assert_true(strncmp(K.old_fpr, "sbv2:", 5) == 0 && strlen(K.old_fpr) == 5 + 64);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fk_inventory_close(inv);
    return 0;
}

static void expect_blockers(const struct fk_rot_status *st, int firmware, const char *want) {
    char got[512] = "";
    for (size_t i = 0; i < st->n; i++) {
        int ok = firmware ? st->dev[i].runs_new_only : st->dev[i].confirmed;
        if (!ok) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%s", l ? " " : "", st->dev[i].id);
        }
    }
    assert_string_equal(got, want);
}

static long long refusals;

static int count_refusals(void *user, const struct fk_inv_audit *a) {
    (void)user;
    refusals += strcmp(a->kind, "ota_rotation.refused") == 0;
    return 0;
}

static long long audited_refusals(void) {
    refusals = 0;
    assert_int_equal(fk_inventory_audit_list(inv, count_refusals, NULL, NULL), FK_OK);
    return refusals;
}

static void rotation_refuses_each_early_step_then_completes(void **state) {
    (void)state;
    struct fk_rot_status st;
    struct fk_diag d;
    fk_diag_init(&d);
    const char *all = "robot-AAAAAAAAAA01 robot-AAAAAAAAAA02 robot-AAAAAAAAAA03";

    /* Nothing before start. */
    assert_int_equal(fk_rotation_gate_release(inv, &K, 0, "t", &st, &d), FK_E_STATE);
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA01", 0, "t", &d), FK_E_STATE);
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", &st, &d), FK_E_STATE);
    fk_rot_status_free(&st);
    struct fk_rot_keys same = K;
    memcpy(same.new_fpr, same.old_fpr, sizeof same.new_fpr);
    assert_int_equal(fk_rotation_start(inv, &same, new_der, new_der_len, endorse, "t", &d),
                     FK_E_ARG);
    /* the public key handed in must be the key of new_fpr (it is what devices will get) */
    assert_int_equal(fk_rotation_start(inv, &K, old_der, old_der_len, endorse, "t", &d), FK_E_ARG);
    assert_int_equal(fk_rotation_start(inv, &K, new_der, 0, endorse, "t", &d), FK_E_ARG);
    /* an endorsement that does not verify with the old key is refused */
    uint8_t bad2[FK_ROT_ENDORSE_LEN];
    memcpy(bad2, endorse, sizeof bad2);
    bad2[1000] ^= 0x80;
    assert_int_equal(fk_rotation_start(inv, &K, new_der, new_der_len, bad2, "t", &d), FK_E_ARG);
    assert_int_equal(audited_refusals(), 3);
    struct fk_rot_current cur;
    int found = 1;
    assert_int_equal(fk_rotation_current(inv, &cur, &found, &d), FK_OK);
    assert_int_equal(found, 0);

    /* Start: every device holds the new key, staged; dual releases allowed. */
    assert_int_equal(fk_rotation_start(inv, &K, new_der, new_der_len, endorse, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_start(inv, &K, new_der, new_der_len, endorse, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_current(inv, &cur, &found, &d), FK_OK);
    assert_int_equal(found, 1);
    assert_string_equal(cur.keys.old_fpr, K.old_fpr);
    assert_string_equal(cur.keys.new_fpr, K.new_fpr);
    assert_int_equal(cur.new_der_len, new_der_len);
    assert_memory_equal(cur.new_der, new_der, new_der_len);
    assert_memory_equal(cur.endorsement, endorse, sizeof endorse);
    assert_true(cur.started_at[0] != '\0');
    assert_int_equal(fk_rotation_status(inv, &K, &st, &d), FK_OK);
    assert_int_equal(st.n, 3);
    assert_true(st.started);
    assert_int_equal(st.confirmed, 0);
    for (size_t i = 0; i < st.n; i++) {
        assert_true(st.dev[i].trusts_old && st.dev[i].holds_new && !st.dev[i].confirmed);
        assert_false(st.dev[i].seen);
    }
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_gate_release(inv, &K, 0, "t", NULL, &d), FK_OK);
    assert_int_equal(fk_rotation_record_release(inv, &K, 0, "v2.ab.bin", "00", "t", &d), FK_OK);

    /* New-key-only: refused with every device listed, then with the remaining ones. */
    assert_int_equal(fk_rotation_gate_release(inv, &K, 1, "t", &st, &d), FK_E_POLICY);
    expect_blockers(&st, 0, all);
    assert_non_null(strstr(d.msg, "3 of 3 devices have not confirmed"));
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA02", 0, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA02", 0, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-NOPE", 0, "t", &d), FK_E_NOTFOUND);
    /* a retired device takes no part */
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA09", 0, "t", &d), FK_E_NOTFOUND);
    /* A device that has only just been seen is listed all the same, with when. */
    struct fk_inv_presence p;
    memset(&p, 0, sizeof p);
    snprintf(p.device_id, sizeof p.device_id, "robot-AAAAAAAAAA03");
    snprintf(p.last_seen, sizeof p.last_seen, "2026-01-02T03:04:05Z");
    assert_int_equal(fk_inventory_device_seen(inv, &p, NULL, NULL, &d), FK_OK);
    assert_int_equal(fk_rotation_gate_release(inv, &K, 1, "t", &st, &d), FK_E_POLICY);
    expect_blockers(&st, 0, "robot-AAAAAAAAAA01 robot-AAAAAAAAAA03");
    char seen[64];
    assert_string_equal(fk_rot_seen_text(&st.dev[0], seen, sizeof seen), "never connected");
    assert_string_equal(fk_rot_seen_text(&st.dev[2], seen, sizeof seen),
                        "last seen 2026-01-02T03:04:05Z");
    fk_rot_status_free(&st);
    /* Retiring the old key: refused, same devices. */
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", &st, &d), FK_E_POLICY);
    expect_blockers(&st, 0, "robot-AAAAAAAAAA01 robot-AAAAAAAAAA03");
    fk_rot_status_free(&st);
    /* Firmware confirmation before any new-key-only release: refused. */
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA02", 1, "t", &d), FK_E_STATE);

    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA01", 0, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA03", 0, "t", &d), FK_OK);
    /* All confirmed, but no new-key-only release yet: retire-old still refused. */
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", &st, &d), FK_E_POLICY);
    assert_non_null(strstr(d.msg, "new key only"));
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_gate_release(inv, &K, 1, "t", NULL, &d), FK_OK);
    assert_int_equal(fk_rotation_record_release(inv, &K, 1, "v3.b.bin", "11", "t", &d), FK_OK);
    /* New-only release exists, but devices do not run it yet. */
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA02", 1, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", &st, &d), FK_E_POLICY);
    expect_blockers(&st, 1, "robot-AAAAAAAAAA01 robot-AAAAAAAAAA03");
    fk_rot_status_free(&st);
    int retired = 1;
    assert_int_equal(fk_rotation_key_retired(inv, K.old_fpr, &retired, &d), FK_OK);
    assert_false(retired);

    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA01", 1, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA03", 1, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", &st, &d), FK_OK);
    assert_true(st.old_retired);
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_key_retired(inv, K.old_fpr, &retired, &d), FK_OK);
    assert_true(retired);
    assert_int_equal(fk_rotation_key_retired(inv, K.new_fpr, &retired, &d), FK_OK);
    assert_false(retired);
    /* After retirement: dual releases refused, new-only fine, start again refused. */
    assert_int_equal(fk_rotation_gate_release(inv, &K, 0, "t", NULL, &d), FK_E_POLICY);
    assert_int_equal(fk_rotation_gate_release(inv, &K, 1, "t", NULL, &d), FK_OK);
    assert_int_equal(fk_rotation_start(inv, &K, new_der, new_der_len, endorse, "t", &d),
                     FK_E_POLICY);
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", NULL, &d), FK_OK); /* idempotent */

    /* Every step and refusal is in the chain, and the chain holds. */
    assert_true(audited_refusals() >= 10);
    struct fk_inv_audit_report rep;
    assert_int_equal(fk_inventory_audit_verify(inv, &rep, &d), FK_OK);
    assert_true(rep.rows >= 20);
}

/* The incident path: an offline device is forced past the gates, by name and only by exact
 * name; the others complete and the old key is retired. */
static void rotation_force_names_exactly_the_blocking_devices(void **state) {
    (void)state;
    struct fk_rot_status st;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(teardown(NULL), 0);
    assert_int_equal(setup(NULL), 0); /* a fresh inventory */
    const char *one[] = {"robot-AAAAAAAAAA01"};
    const char *three[] = {"robot-AAAAAAAAAA03"};
    const char *wrong[] = {"robot-AAAAAAAAAA03", "robot-AAAAAAAAAA02"};
    assert_int_equal(fk_rotation_force(inv, &K, three, 1, "t", NULL, &d), FK_E_STATE);
    assert_int_equal(fk_rotation_start(inv, &K, new_der, new_der_len, endorse, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA01", 0, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA02", 0, "t", &d), FK_OK);
    /* a confirmed device cannot be forced; a blocking one cannot be left out */
    assert_int_equal(fk_rotation_force(inv, &K, wrong, 2, "t", NULL, &d), FK_E_POLICY);
    assert_non_null(strstr(d.msg, "robot-AAAAAAAAAA02 does not block"));
    assert_int_equal(fk_rotation_force(inv, &K, one, 1, "t", NULL, &d), FK_E_POLICY);
    assert_int_equal(fk_rotation_force(inv, &K, NULL, 0, "t", NULL, &d), FK_E_ARG);
    assert_int_equal(fk_rotation_gate_release(inv, &K, 1, "t", NULL, &d), FK_E_POLICY);
    assert_int_equal(fk_rotation_force(inv, &K, three, 1, "t", &st, &d), FK_OK);
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_force(inv, &K, three, 1, "t", NULL, &d), FK_E_POLICY);
    assert_int_equal(fk_rotation_status(inv, &K, &st, &d), FK_OK);
    assert_true(st.dev[2].forced && !st.dev[2].confirmed && !st.dev[0].forced);
    fk_rot_status_free(&st);
    /* the forced device no longer holds the gates back; the confirmed ones still do */
    assert_int_equal(fk_rotation_gate_release(inv, &K, 1, "t", NULL, &d), FK_OK);
    assert_int_equal(fk_rotation_record_release(inv, &K, 1, "v3.b.bin", "11", "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA01", 1, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", &st, &d), FK_E_POLICY);
    assert_non_null(strstr(d.msg, "robot-AAAAAAAAAA02"));
    assert_null(strstr(d.msg, "robot-AAAAAAAAAA03"));
    fk_rot_status_free(&st);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA02", 1, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_retire_old(inv, &K, "t", NULL, &d), FK_OK);
    /* the forced device comes back later: it can still confirm key and firmware */
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA03", 0, "t", &d), FK_OK);
    assert_int_equal(fk_rotation_confirm(inv, &K, "robot-AAAAAAAAAA03", 1, "t", &d), FK_OK);
    struct fk_inv_audit_report rep;
    assert_int_equal(fk_inventory_audit_verify(inv, &rep, &d), FK_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rotation_refuses_each_early_step_then_completes),
        cmocka_unit_test(rotation_force_names_exactly_the_blocking_devices),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
