/* Unit tests of the control protocol (device/src/ctl/ctl_proto.c): the request parser (valid
 * forms, every kind of malformed input, each truncation), the handler's replies, the bounded
 * JSON writer, and the listener's setup checks that need no socket traffic. */
#include "fkd/ctl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static int parse(const char *s, struct fkd_ctl_req *r) {
    const char *why = NULL;
    int rc = fkd_ctl_proto_parse((const uint8_t *)s, strlen(s), r, &why);
    assert_non_null(why);
    return rc;
}

static void proto_parse_accepts_the_three_commands(void **state) {
    (void)state;
    struct fkd_ctl_req r;
    assert_int_equal(parse("ping", &r), FKD_CTL_OK);
    assert_int_equal(r.kind, FKD_CTL_REQ_PING);
    assert_int_equal(parse("ping\n", &r), FKD_CTL_OK);
    assert_int_equal(parse("ping\r\n", &r), FKD_CTL_OK);
    assert_int_equal(parse("status", &r), FKD_CTL_OK);
    assert_int_equal(r.kind, FKD_CTL_REQ_STATUS);
    assert_int_equal(parse("move 10 -20\n", &r), FKD_CTL_OK);
    assert_int_equal(r.kind, FKD_CTL_REQ_MOVE);
    assert_int_equal(r.dx, 10);
    assert_int_equal(r.dy, -20);
    assert_int_equal(parse("move -1000 1000", &r), FKD_CTL_OK);
    assert_int_equal(r.dx, -1000);
    assert_int_equal(parse("move 0 0", &r), FKD_CTL_OK);
}

static void proto_parse_rejects_malformed_requests(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",           "\n",          "PING",       "ping ",       " ping",       "ping\n\n",
        "ping\r",     "pingx",       "pin",        "status now",  "ping  ",      "move",
        "move 1",     "move 1 2 3",  "move a 1",   "move 1 b",    "move +1 1",   "move 01 1",
        "move - 1",   "move 1  2",   "move 1 2 ",  "move\t1 2",   "jump 1 2",    "move 1.5 2",
        "move 0x1 2", "mov 1 2",     "ping\x00",   "\xff\xfe",    "move 1 2\n\r",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fkd_ctl_req r;
        const char *why = NULL;
        size_t len = strlen(bad[i]);
        if (strcmp(bad[i], "ping\x00") == 0) {
            len = 5; /* the NUL is part of the datagram */
        }
        int rc = fkd_ctl_proto_parse((const uint8_t *)bad[i], len, &r, &why);
        if (rc == FKD_CTL_OK) {
            fail_msg("accepted: '%s'", bad[i]);
        }
        assert_true(why != NULL && why[0] != '\0');
    }
}

static void proto_parse_rejects_out_of_range_steps(void **state) {
    (void)state;
    struct fkd_ctl_req r;
    assert_int_equal(parse("move 1001 0", &r), FKD_CTL_E_RANGE);
    assert_int_equal(parse("move 0 -1001", &r), FKD_CTL_E_RANGE);
    assert_int_equal(parse("move 99999999999999999999 0", &r), FKD_CTL_E_RANGE);
    assert_int_equal(parse("move 2147483648 0", &r), FKD_CTL_E_RANGE);
}

static void proto_parse_rejects_every_truncation_of_move(void **state) {
    (void)state;
    const char *full = "move 12 -34";
    for (size_t n = 0; n < strlen(full); n++) {
        struct fkd_ctl_req r;
        int rc = fkd_ctl_proto_parse((const uint8_t *)full, n, &r, NULL);
        /* "move 12 -3" is a different valid request; every other prefix must fail. */
        if (n == strlen(full) - 1) {
            assert_int_equal(rc, FKD_CTL_OK);
            assert_int_equal(r.dy, -3);
        } else {
            assert_int_not_equal(rc, FKD_CTL_OK);
        }
    }
}

static void proto_parse_rejects_oversized_requests(void **state) {
    (void)state;
    uint8_t big[FKD_CTL_REQ_MAX + 1];
    memset(big, 'a', sizeof big);
    struct fkd_ctl_req r;
    assert_int_equal(fkd_ctl_proto_parse(big, sizeof big, &r, NULL), FKD_CTL_E_PARSE);
    assert_int_equal(fkd_ctl_proto_parse(NULL, 0, &r, NULL), FKD_CTL_E_PARSE);
}

static void handle(const char *req, struct fkd_ctl_robot *robot, char *out, size_t size,
                   const struct fkd_ctl_reqctx *ctx) {
    size_t n = 0;
    fkd_ctl_proto_handle((const uint8_t *)req, strlen(req), ctx, robot, (uint8_t *)out, size - 1,
                         &n);
    assert_true(n < size);
    out[n] = '\0';
}

static void many_members(void *user, struct fkd_ctl_json *w) {
    (void)user;
    for (int i = 0; i < 200; i++) {
        fkd_ctl_json_str(w, "filler", "0123456789");
    }
}

static void posture(void *user, struct fkd_ctl_json *w) {
    (void)user;
    fkd_ctl_json_begin(w, "posture");
    fkd_ctl_json_str(w, "build", "production");
    fkd_ctl_json_bool(w, "nvs_encrypted", 1);
    fkd_ctl_json_end(w);
}

static void proto_handle_answers_ping_status_move_and_errors(void **state) {
    (void)state;
    struct fkd_ctl_robot robot = {0, 0, 0};
    struct fkd_ctl_key keys[FKD_CTL_SLOT_COUNT];
    struct fkd_ctl_stats stats;
    memset(keys, 0, sizeof keys);
    memset(&stats, 0, sizeof stats);
    static const uint8_t psk[32] = {1, 2, 3};
    keys[0].psk_len = sizeof psk;
    keys[0].version = 7;
    fkd_ctl_fingerprint(psk, sizeof psk, keys[0].fpr);
    struct fkd_ctl_reqctx ctx = {"1.2.3", 65000, FKD_CTL_MODE_DTLS, "robot-\"x\"\n", 0, keys,
                                 &stats, 4, posture, NULL};
    char out[FKD_CTL_RESP_MAX + 1];

    handle("ping", &robot, out, sizeof out, &ctx);
    assert_string_equal(out, "pong\n");

    handle("status\n", &robot, out, sizeof out, &ctx);
    assert_non_null(strstr(out, "\"ok\":true"));
    assert_non_null(strstr(out, "\"fw\":\"1.2.3\""));
    assert_non_null(strstr(out, "\"uptime_s\":65"));
    assert_non_null(strstr(out, "\"identity\":\"robot-\\\"x\\\"\\u000a\"")); /* escaped */
    assert_non_null(strstr(out, "\"current\":{\"version\":7,\"fpr\":\"sha256:"));
    assert_null(strstr(out, "\"next\""));
    assert_non_null(strstr(out, "\"posture\":{\"build\":\"production\",\"nvs_encrypted\":true}"));
    assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1); /* one line */

    handle("move 5 -7", &robot, out, sizeof out, &ctx);
    assert_string_equal(out, "{\"ok\":true,\"x\":5,\"y\":-7,\"moves\":1}\n");
    assert_int_equal(robot.x, 5);

    handle("move 5000 0", &robot, out, sizeof out, &ctx);
    assert_non_null(strstr(out, "\"error\":\"out_of_range\""));
    assert_int_equal(robot.x, 5); /* unchanged */

    robot.x = FKD_CTL_POS_LIMIT - 1;
    handle("move 2 0", &robot, out, sizeof out, &ctx);
    assert_non_null(strstr(out, "leave the arena"));
    assert_int_equal(robot.x, FKD_CTL_POS_LIMIT - 1);

    handle("fly", &robot, out, sizeof out, &ctx);
    assert_string_equal(out, "{\"ok\":false,\"error\":\"bad_request\",\"detail\":\"unknown "
                             "command\"}\n");

    /* A status callback that writes too much gets a bounded error, never an overflow. */
    ctx.status = many_members;
    handle("status", &robot, out, sizeof out, &ctx);
    assert_non_null(strstr(out, "response too large"));
}

static void json_writer_never_overflows(void **state) {
    (void)state;
    char buf[16];
    memset(buf, 'X', sizeof buf);
    struct fkd_ctl_json w = {buf, 10, 0, 1, 0};
    fkd_ctl_json_str(&w, "key", "a long value that does not fit");
    assert_true(w.overflow);
    assert_true(w.len < 10);
    assert_int_equal(buf[10], 'X');
}

static void fingerprint_matches_the_host_format(void **state) {
    (void)state;
    char fpr[FKD_CTL_FPR_LEN];
    fkd_ctl_fingerprint((const uint8_t *)"abc", 3, fpr);
    /* SHA-256("abc") = ba7816bf8f01cfea... */
    assert_string_equal(fpr, "sha256:ba7816bf8f01cfea");
}

static void ctl_setup_refuses_dtls_without_a_psk(void **state) {
    (void)state;
    static struct fkd_ctl ctl;
    static struct fkd_ctl_session sessions[1];
    static uint8_t rx[FKD_CTL_RX_MAX];
    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bind_ip = "127.0.0.1";
    fkd_ctl_init(&ctl);
    assert_int_equal(fkd_ctl_setup(&ctl, &cfg, sessions, 1, rx, sizeof rx), FKD_CTL_E_NOKEY);
    fkd_ctl_free(&ctl);
    fkd_ctl_init(&ctl);
    assert_int_equal(fkd_ctl_setup(&ctl, &cfg, sessions, 0, rx, sizeof rx), FKD_CTL_E_ARG);
    assert_int_equal(fkd_ctl_setup(&ctl, &cfg, sessions, 1, rx, 16), FKD_CTL_E_ARG);
    fkd_ctl_free(&ctl);
    fkd_ctl_free(&ctl); /* idempotent */
}

static void ctl_set_psk_validates_and_wipes(void **state) {
    (void)state;
    static struct fkd_ctl ctl;
    static const uint8_t psk[32] = {9, 9, 9};
    fkd_ctl_init(&ctl);
    assert_int_equal(fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_CURRENT, (const uint8_t *)"id", 2, psk,
                                     8, 1),
                     FKD_CTL_E_ARG); /* too short */
    assert_int_equal(fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_COUNT, (const uint8_t *)"id", 2, psk,
                                     32, 1),
                     FKD_CTL_E_ARG);
    assert_int_equal(fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_NEXT, (const uint8_t *)"id", 2, psk, 32,
                                     2),
                     FKD_CTL_OK);
    assert_memory_equal(ctl.keys[FKD_CTL_SLOT_NEXT].psk, psk, 32);
    fkd_ctl_free(&ctl);
    static const uint8_t zero[sizeof ctl.keys[0]];
    assert_memory_equal(&ctl.keys[FKD_CTL_SLOT_NEXT], zero, sizeof zero);
}

static void ctl_plaintext_setup_binds_a_port(void **state) {
    (void)state;
    static struct fkd_ctl ctl;
    static uint8_t rx[FKD_CTL_RX_MAX];
    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = FKD_CTL_MODE_PLAINTEXT;
    cfg.bind_ip = "127.0.0.1";
    fkd_ctl_init(&ctl);
    assert_int_equal(fkd_ctl_setup(&ctl, &cfg, NULL, 0, rx, sizeof rx), FKD_CTL_OK);
    assert_int_not_equal(fkd_ctl_port(&ctl), 0);
    assert_int_equal(fkd_ctl_poll(&ctl, 0), 0);
    fkd_ctl_free(&ctl);
}

/* A DTLS 1.2 ClientHello as openssl s_client sends it after a HelloVerifyRequest, reduced to
 * the fields the gate reads: record header, handshake header, version, random, session id,
 * cookie, one suite, null compression. */
static size_t hello(uint8_t *out, const uint8_t *cookie, uint8_t cookie_len) {
    uint8_t body[128];
    size_t b = 0;
    body[b++] = 0xfe;
    body[b++] = 0xfd;
    memset(body + b, 0x42, 32);
    b += 32;
    body[b++] = 0;
    body[b++] = cookie_len;
    memcpy(body + b, cookie, cookie_len);
    b += cookie_len;
    static const uint8_t tail[] = {0, 2, 0x00, 0xa8, 1, 0};
    memcpy(body + b, tail, sizeof tail);
    b += sizeof tail;
    static const uint8_t rec[11] = {22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 1};
    memcpy(out, rec, sizeof rec);
    out[11] = (uint8_t)((12 + b) >> 8);
    out[12] = (uint8_t)(12 + b);
    uint8_t hs[12] = {1, 0, (uint8_t)(b >> 8), (uint8_t)b, 0, 1, 0, 0, 0, 0, (uint8_t)(b >> 8),
                      (uint8_t)b};
    memcpy(out + 13, hs, sizeof hs);
    memcpy(out + 25, body, b);
    return 25 + b;
}

static void hello_cookie_finds_the_cookie_and_rejects_each_truncation(void **state) {
    (void)state;
    uint8_t d[256];
    uint8_t c[32];
    for (size_t i = 0; i < sizeof c; i++) {
        c[i] = (uint8_t)(0xa0 + i);
    }
    size_t n = hello(d, c, sizeof c);
    const uint8_t *cookie = NULL;
    size_t len = 0;
    assert_int_equal(fkd_ctl_hello_cookie(d, n, &cookie, &len), 0);
    assert_int_equal(len, sizeof c);
    assert_memory_equal(cookie, c, sizeof c);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(fkd_ctl_hello_cookie(d, k, &cookie, &len), -1);
    }
    n = hello(d, c, 0);
    assert_int_equal(fkd_ctl_hello_cookie(d, n, &cookie, &len), 0);
    assert_int_equal(len, 0);
}

static void hello_cookie_rejects_what_is_not_a_whole_epoch0_client_hello(void **state) {
    (void)state;
    uint8_t d[256];
    uint8_t c[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t *cookie = NULL;
    size_t len = 0;
    size_t n = hello(d, c, sizeof c);
    struct {
        size_t at;
        uint8_t val;
    } bad[] = {
        {0, 23},          /* application data, not handshake */
        {1, 0x03},        /* TLS, not DTLS */
        {4, 1},           /* epoch 1 */
        {11, 0xff},       /* record longer than the datagram */
        {13, 2},          /* ServerHello */
        {21, 1},          /* fragment_offset != 0 */
        {24, 0},          /* fragment_length != length */
        {13 + 12 + 34, 33}, /* session id longer than 32 */
        {13 + 12 + 35, 200}, /* cookie past the message */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t t[256];
        memcpy(t, d, n);
        t[bad[i].at] = bad[i].val;
        if (fkd_ctl_hello_cookie(t, n, &cookie, &len) == 0) {
            fail_msg("accepted with byte %zu = 0x%02x", bad[i].at, bad[i].val);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(proto_parse_accepts_the_three_commands),
        cmocka_unit_test(proto_parse_rejects_malformed_requests),
        cmocka_unit_test(proto_parse_rejects_out_of_range_steps),
        cmocka_unit_test(proto_parse_rejects_every_truncation_of_move),
        cmocka_unit_test(proto_parse_rejects_oversized_requests),
        cmocka_unit_test(proto_handle_answers_ping_status_move_and_errors),
        cmocka_unit_test(json_writer_never_overflows),
        cmocka_unit_test(fingerprint_matches_the_host_format),
        cmocka_unit_test(ctl_setup_refuses_dtls_without_a_psk),
        cmocka_unit_test(ctl_set_psk_validates_and_wipes),
        cmocka_unit_test(ctl_plaintext_setup_binds_a_port),
        cmocka_unit_test(hello_cookie_finds_the_cookie_and_rejects_each_truncation),
        cmocka_unit_test(hello_cookie_rejects_what_is_not_a_whole_epoch0_client_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
