/* Unit tests of the inventory's presence rows (schema 2): what fleetkey-server records when a
 * device connects. Kept apart from test_inventory.c so the two modules' owners never edit
 * one file. */
#include "fleetkey/inventory.h"

/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "inv_location.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char db_path[4096];

static struct fk_inventory *fresh(const char *name) {
    assert_int_equal(fk_test_inv_fresh(name, "/tmp/fk_test_presence", db_path, sizeof db_path), 0);
    struct fk_inventory *inv = NULL;
    assert_int_equal(fk_inventory_open(db_path, &inv, NULL), FK_OK);
    struct fk_inv_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "robot-000000000001");
    snprintf(d.mac, sizeof d.mac, "02:00:00:00:00:01");
    snprintf(d.state, sizeof d.state, "provisioned");
    assert_int_equal(fk_inventory_device_upsert(inv, &d, NULL), FK_OK);
    return inv;
}

static void presence_first_then_update_keeps_first_seen(void **state) {
    (void)state;
    struct fk_inventory *inv = fresh("first");
    static struct fk_inv_presence p, got;
    memset(&p, 0, sizeof p);
    snprintf(p.device_id, sizeof p.device_id, "robot-000000000001");
    snprintf(p.last_seen, sizeof p.last_seen, "2026-01-01T00:00:00Z");
    snprintf(p.peer, sizeof p.peer, "127.0.0.1:4000");
    snprintf(p.firmware_version, sizeof p.firmware_version, "1.0.0");
    snprintf(p.posture, sizeof p.posture, "{\"build\":\"development\"}");
    int first = -1;
    int changed = -1;
    assert_int_equal(fk_inventory_device_seen(inv, &p, &first, &changed, NULL), FK_OK);
    assert_int_equal(first, 1);
    assert_int_equal(changed, 0);

    snprintf(p.last_seen, sizeof p.last_seen, "2026-01-02T00:00:00Z");
    assert_int_equal(fk_inventory_device_seen(inv, &p, &first, &changed, NULL), FK_OK);
    assert_int_equal(first, 0);
    assert_int_equal(changed, 0);
    snprintf(p.posture, sizeof p.posture, "{\"build\":\"production\"}");
    snprintf(p.ota, sizeof p.ota, "{\"slot\":\"ota_1\",\"state\":\"valid\"}");
    snprintf(p.last_seen, sizeof p.last_seen, "2026-01-03T00:00:00Z");
    assert_int_equal(fk_inventory_device_seen(inv, &p, &first, &changed, NULL), FK_OK);
    assert_int_equal(first, 0);
    assert_int_equal(changed, 1);

    assert_int_equal(fk_inventory_presence_get(inv, "robot-000000000001", &got, NULL), FK_OK);
    assert_string_equal(got.first_seen, "2026-01-01T00:00:00Z");
    assert_string_equal(got.last_seen, "2026-01-03T00:00:00Z");
    assert_string_equal(got.posture, "{\"build\":\"production\"}");
    assert_string_equal(got.firmware_version, "1.0.0");
    assert_string_equal(got.peer, "127.0.0.1:4000");
    assert_string_equal(got.ota, "{\"slot\":\"ota_1\",\"state\":\"valid\"}");
    fk_inventory_close(inv);
}

static void presence_refuses_unknown_device_and_reports_never_seen(void **state) {
    (void)state;
    struct fk_inventory *inv = fresh("unknown");
    static struct fk_inv_presence p;
    memset(&p, 0, sizeof p);
    snprintf(p.device_id, sizeof p.device_id, "robot-0000000000FF");
    assert_int_equal(fk_inventory_device_seen(inv, &p, NULL, NULL, NULL), FK_E_NOTFOUND);
    assert_int_equal(fk_inventory_presence_get(inv, "robot-000000000001", &p, NULL),
                     FK_E_NOTFOUND);
    memset(&p, 0, sizeof p);
    assert_int_equal(fk_inventory_device_seen(inv, &p, NULL, NULL, NULL), FK_E_ARG);
    fk_inventory_close(inv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(presence_first_then_update_keeps_first_seen),
        cmocka_unit_test(presence_refuses_unknown_device_and_reports_never_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
