/* Unit tests of the incident plan's state file (fleetkey/incident.h): a full state round trips,
 * a fresh one too, and each kind of damage is refused with the member named. */
#include "fleetkey/incident.h"

/* cmocka needs these first, in this order. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define A "sbv2:a8b1f7194ebb421acc3ccb4a00fea332e4e125ba78ec8a50f33e8cc9001cc969"
#define B "sbv2:72fe4d9118ecdff41c60840ab41588c7b313750dd18cedc7e41f97915ef00f25"
#define H "6205e1ec1438372b3ce281835e4493f5c55ac9290efb7cd0988b2ca090f2cf49"

static const char full[] =
    "{\"format\":1,\"incident\":\"ota-key-compromised\",\"old_key\":\"" A "\",\"new_key\":\"" B
    "\",\"new_key_file\":\"inc/new.pem\",\"started_at\":\"2026-12-07T01:19:57Z\",\"done\":["
    "\"keygen\",\"start\",\"sign_dual\",\"push_dual\",\"force\",\"sign_new\",\"retire\"],"
    "\"dual_release\":{\"file\":\"inc/d.bin\",\"sha256\":\"" H "\"},\"dual_job\":\"j-000001\","
    "\"new_release\":{\"file\":\"inc/n.bin\",\"sha256\":\"" H "\"},\"new_job\":\"j-000003\","
    "\"forced\":[\"robot-020000002003\"]}\n";

static void state_round_trips(void **state) {
    (void)state;
    struct fk_incident_state s;
    char *txt = NULL;
    size_t len = 0;
    assert_int_equal(fk_incident_state_parse(full, strlen(full), &s, NULL), FK_OK);
    assert_true(fk_incident_done(&s, FK_INCIDENT_RETIRE));
    assert_string_equal(s.forced[0], "robot-020000002003");
    assert_string_equal(s.dual_job, "j-000001");
    assert_int_equal(fk_incident_state_render(&s, &txt, &len), FK_OK);
    assert_string_equal(txt, full); /* byte for byte the same file */
    free(txt);
    /* a fresh incident: nothing done yet */
    const char *fresh =
        "{\"format\":1,\"incident\":\"ota-key-compromised\",\"old_key\":\"" A "\",\"done\":[]}";
    assert_int_equal(fk_incident_state_parse(fresh, strlen(fresh), &s, NULL), FK_OK);
    assert_int_equal(s.done, 0);
    assert_string_equal(fk_incident_step_name(FK_INCIDENT_SIGN_NEW), "sign_new");
    assert_string_equal(fk_incident_step_name(FK_INCIDENT_STEP_COUNT), "?");
}

/* Replaces from by to in the full state; expects rc and a message naming what. */
static void bad(const char *from, const char *to, enum fk_err want, const char *what) {
    char buf[4096];
    const char *at = strstr(full, from);
    assert_non_null(at);
    int n = snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - full), full, to, at + strlen(from));
    struct fk_incident_state s;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_incident_state_parse(buf, (size_t)n, &s, &d), want);
    if (strstr(d.msg, what) == NULL) {
        fprintf(stderr, "%s -> %s: '%s' lacks '%s'\n", from, to, d.msg, what);
    }
    assert_non_null(strstr(d.msg, what));
    assert_int_equal(s.done, 0); /* nothing half-filled is left */
}

static void state_parse_refuses_damage(void **state) {
    (void)state;
    bad("\"format\":1", "\"format\":2", FK_E_UNSUPPORTED, "format 2");
    bad("\"format\":1", "\"format\":\"1\"", FK_E_PARSE, "format");
    bad("ota-key-compromised", "psk-leaked", FK_E_UNSUPPORTED, "incident");
    bad("\"old_key\":\"sbv2:a8", "\"old_key\":\"sha2:a8", FK_E_PARSE, "old_key");
    bad("\"new_key\":\"sbv2:72fe", "\"new_key\":\"sbv2:72FE", FK_E_PARSE, "new_key");
    bad("\"new_key\":\"" B, "\"new_key\":\"" A, FK_E_PARSE, "same key");
    bad("\"keygen\",", "\"keygen\",\"keygen\",", FK_E_PARSE, "at most once");
    bad("\"retire\"", "\"reboot\"", FK_E_PARSE, "done");
    bad("\"done\":[", "\"done\":\"x\",\"y\":[", FK_E_PARSE, "done: expected an array");
    bad("\"dual_job\":\"j-000001\"", "\"dual_job\":\"j-00x\"", FK_E_PARSE, "dual_job");
    bad("\"dual_job\":\"j-000001\",", "", FK_E_PARSE, "push_dual done but dual_job missing");
    bad("\"sha256\":\"6205", "\"sha256\":\"zz05", FK_E_PARSE, "dual_release");
    bad("\"forced\":[\"robot-020000002003\"]", "\"forced\":[]", FK_E_PARSE,
        "force done but no forced device");
    bad("\"forced\":[\"robot-020000002003\"]", "\"forced\":[7]", FK_E_PARSE, "forced");
    bad("\"new_key_file\":\"inc/new.pem\",", "", FK_E_PARSE, "keygen done");
    bad("\"keygen\",", "", FK_E_PARSE, "without keygen");
    bad("{\"format\"", "[{\"format\"", FK_E_PARSE, "JSON object");
    struct fk_incident_state s;
    for (size_t cut = 0; cut < strlen(full) - 2; cut++) {
        assert_int_not_equal(fk_incident_state_parse(full, cut, &s, NULL), FK_OK);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_round_trips),
        cmocka_unit_test(state_parse_refuses_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
