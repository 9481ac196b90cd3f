/* fk_ctl (fleetkey/ctl.h) against the device library's own control listener (fkd_ctl), run
 * in-process on 127.0.0.1 in a thread of this test: a request with the current PSK, the
 * server's staged-PSK check (fk_ctl_confirm_next) with the next PSK (passes) and with the
 * current one (refused: auth_slot current), a wrong PSK (refused handshake), and the answer
 * check on its own. */
#include "fkd/ctl.h"
#include "fleetkey/ctl.h"

/* cmocka needs these before it */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define ID "robot-a1b2c3d4e5f6"
#define NEXT_ID ID ".v2" /* the listener picks the slot by identity: the staged one differs */

static const uint8_t cur[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static uint8_t next[32];

static struct fkd_ctl ctl;
static struct fkd_ctl_session sessions[4];
static uint8_t rx[FKD_CTL_RX_MAX];
static volatile int stop;
static pthread_t th;
static char port[8];

static void *serve(void *arg) {
    (void)arg;
    for (int i = 0; i < 100000 && !stop; i++) {
        if (fkd_ctl_poll(&ctl, 20) < 0) {
            break;
        }
    }
    return NULL;
}

static int setup(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof next; i++) {
        next[i] = (uint8_t)(0xa0 + i);
    }
    fkd_ctl_init(&ctl);
    if (fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_CURRENT, (const uint8_t *)ID, strlen(ID), cur,
                        sizeof cur, 1) != FKD_CTL_OK ||
        fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_NEXT, (const uint8_t *)NEXT_ID, strlen(NEXT_ID), next,
                        sizeof next, 2) != FKD_CTL_OK) {
        return -1;
    }
    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = FKD_CTL_MODE_DTLS;
    cfg.bind_ip = "127.0.0.1";
    cfg.hs_timeout_min_ms = 200;
    cfg.hs_timeout_max_ms = 2000;
    cfg.fw_version = "test_ctl";
    if (fkd_ctl_setup(&ctl, &cfg, sessions, 4, rx, sizeof rx) != FKD_CTL_OK) {
        fkd_ctl_free(&ctl);
        return -1;
    }
    snprintf(port, sizeof port, "%u", (unsigned)fkd_ctl_port(&ctl));
    return pthread_create(&th, NULL, serve, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    stop = 1;
    pthread_join(th, NULL);
    fkd_ctl_free(&ctl);
    return 0;
}

static void request_current(void **state) {
    (void)state;
    char resp[2048];
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ctl_request("127.0.0.1", port, ID, cur, sizeof cur, "status", resp,
                                    sizeof resp, 5000, &d),
                     FK_OK);
    assert_non_null(strstr(resp, "\"auth_slot\":\"current\""));
    assert_non_null(strstr(resp, "\"identity\":\"" ID "\""));
    assert_int_equal(
        fk_ctl_request("127.0.0.1", port, ID, cur, sizeof cur, "ping", resp, sizeof resp, 5000, &d),
        FK_OK);
    assert_int_equal(strncmp(resp, "pong", 4), 0);
}

static void confirm_next(void **state) {
    (void)state;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ctl_confirm_next("127.0.0.1", port, NEXT_ID, next, sizeof next, 5000, &d),
                     FK_OK);
    /* the answer must name the identity asked for */
    fk_diag_init(&d);
    assert_int_equal(
        fk_ctl_confirm_next("127.0.0.1", port, ID, next, sizeof next, 3000, &d) == FK_OK, 0);
    /* the current PSK authenticates too, but as current: not a confirmation */
    fk_diag_init(&d);
    assert_int_equal(fk_ctl_confirm_next("127.0.0.1", port, ID, cur, sizeof cur, 5000, &d),
                     FK_E_PROTOCOL);
    assert_non_null(strstr(d.msg, "current"));
}

/* A control plane that lost its confirmation in a kill -9 proves a committed PSK with the
 * current slot: only the current key passes, the next one is named as such. */
static void confirm_current(void **state) {
    (void)state;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ctl_confirm_current("127.0.0.1", port, ID, cur, sizeof cur, 5000, &d),
                     FK_OK);
    fk_diag_init(&d);
    assert_int_equal(
        fk_ctl_confirm_current("127.0.0.1", port, NEXT_ID, next, sizeof next, 5000, &d),
        FK_E_PROTOCOL);
    assert_non_null(strstr(d.msg, "auth_slot is next, not current"));
    /* the answer must name the identity asked for */
    fk_diag_init(&d);
    assert_int_equal(
        fk_ctl_confirm_current("127.0.0.1", port, NEXT_ID, cur, sizeof cur, 3000, &d) == FK_OK, 0);
}

static void wrong_psk(void **state) {
    (void)state;
    uint8_t bad[32];
    memset(bad, 0x55, sizeof bad);
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_ctl_confirm_next("127.0.0.1", port, ID, bad, sizeof bad, 3000, &d);
    assert_true(rc == FK_E_AUTH || rc == FK_E_TIMEOUT);
    /* the diagnosis never carries key bytes */
    assert_null(strstr(d.msg, "5555"));
}

static void bad_args(void **state) {
    (void)state;
    char resp[64];
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ctl_request("127.0.0.1", port, "", cur, sizeof cur, "status", resp,
                                    sizeof resp, 1000, &d),
                     FK_E_ARG);
    assert_int_equal(
        fk_ctl_request("127.0.0.1", port, ID, cur, 0, "status", resp, sizeof resp, 1000, &d),
        FK_E_ARG);
}

static void status_check(void **state) {
    (void)state;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_ctl_status_is_next(
                         "{\"ok\":true,\"identity\":\"" ID "\",\"auth_slot\":\"next\"}", ID, &d),
                     FK_OK);
    assert_int_equal(fk_ctl_status_is_next("{\"ok\":true,\"identity\":\"robot-other\","
                                           "\"auth_slot\":\"next\"}",
                                           ID, &d),
                     FK_E_PROTOCOL);
    assert_int_equal(fk_ctl_status_is_next("{\"ok\":false,\"auth_slot\":\"next\"}", ID, &d),
                     FK_E_PROTOCOL);
    assert_int_equal(fk_ctl_status_is_next("{\"ok\":true,\"identity\":\"" ID "\"}", ID, &d),
                     FK_E_PROTOCOL);
    assert_int_equal(fk_ctl_status_is_next("pong", ID, &d), FK_E_PROTOCOL);
    assert_int_equal(fk_ctl_status_is_next(NULL, ID, &d), FK_E_PROTOCOL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_current), cmocka_unit_test(confirm_next),
        cmocka_unit_test(confirm_current), cmocka_unit_test(wrong_psk),
        cmocka_unit_test(bad_args),        cmocka_unit_test(status_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
