/* Unit tests of what `fleetctl dashboard` accepts from a browser (tools/fleetctl/dash_req.c):
 * the request-head parser (every truncation, oversize fields, bad lines) and the decision of
 * what is forwarded with the operator's identity. */
#include "dash_req.h"

/* clang-format off: cmocka.h needs these first */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char good[] = "GET /api/devices?credentials=1 HTTP/1.1\r\n"
                           "Host: 127.0.0.1:8080\r\n"
                           "Accept: */*\r\n"
                           "\r\n";

static void dash_parse_reads_a_complete_head(void **state) {
    (void)state;
    struct fleetctl_dash_req r;
    assert_int_equal(fleetctl_dash_parse(good, strlen(good), &r), FLEETCTL_DASH_OK);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.target, "/api/devices?credentials=1");
    assert_string_equal(r.host, "127.0.0.1:8080");
    assert_int_equal(r.head_len, strlen(good));
    /* Bare LF line ends, a body after the head, Host in another case with spaces. */
    const char lf[] = "GET /dashboard HTTP/1.0\nhOsT:   localhost:1  \n\nBODY";
    assert_int_equal(fleetctl_dash_parse(lf, strlen(lf), &r), FLEETCTL_DASH_OK);
    assert_string_equal(r.host, "localhost:1");
    assert_int_equal(r.head_len, strlen(lf) - 4);
}

static void dash_parse_wants_more_for_every_truncation(void **state) {
    (void)state;
    struct fleetctl_dash_req r;
    for (size_t n = 0; n < strlen(good); n++) {
        /* A prefix is never accepted, and never read past n (the copy has no NUL). */
        char *p = malloc(n + 1);
        assert_non_null(p);
        memcpy(p, good, n);
        assert_int_equal(fleetctl_dash_parse(p, n, &r), FLEETCTL_DASH_MORE);
        free(p);
    }
}

static void dash_parse_refuses_malformed_heads(void **state) {
    (void)state;
    struct fleetctl_dash_req r;
    const char *bad[] = {
        "GET /x HTTP/2.0\r\n\r\n",                       /* version */
        "GET /x\r\n\r\n",                                /* no version */
        "GET  /x HTTP/1.1\r\n\r\n",                      /* empty target */
        " GET /x HTTP/1.1\r\n\r\n",                      /* empty method */
        "G(T /x HTTP/1.1\r\n\r\n",                       /* not a token */
        "GET /x\x01y HTTP/1.1\r\n\r\n",                  /* control character */
        "GET /x HTTP/1.1 extra\r\n\r\n",                 /* trailing field */
        "GET /x HTTP/1.1\r\nNoColon\r\n\r\n",            /* header without a colon */
        "GET /x HTTP/1.1\r\n: empty name\r\n\r\n",       /* empty header name */
        "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", /* two Hosts */
        "VERYLONGMETHODNAME /x HTTP/1.1\r\n\r\n",        /* method over 15 bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fleetctl_dash_parse(bad[i], strlen(bad[i]), &r), FLEETCTL_DASH_MALFORMED);
    }
    /* A target too long for the buffer, a Host too long, a head over the limit. */
    static char big[FLEETCTL_DASH_HEAD_MAX + 64];
    int n = snprintf(big, sizeof big, "GET /%0*d HTTP/1.1\r\n\r\n", FLEETCTL_DASH_TARGET_MAX, 0);
    assert_int_equal(fleetctl_dash_parse(big, (size_t)n, &r), FLEETCTL_DASH_MALFORMED);
    n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: %0300d\r\n\r\n", 0);
    assert_int_equal(fleetctl_dash_parse(big, (size_t)n, &r), FLEETCTL_DASH_MALFORMED);
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(fleetctl_dash_parse(big, sizeof big, &r), FLEETCTL_DASH_MALFORMED);
    assert_int_equal(fleetctl_dash_parse(NULL, 0, &r), FLEETCTL_DASH_MALFORMED);
}

static int decide(const char *method, const char *target, const char *host) {
    struct fleetctl_dash_req r;
    memset(&r, 0, sizeof r);
    snprintf(r.method, sizeof r.method, "%s", method);
    snprintf(r.target, sizeof r.target, "%s", target);
    snprintf(r.host, sizeof r.host, "%s", host);
    return fleetctl_dash_decide(&r, "127.0.0.1:8080", "localhost:8080");
}

static void dash_decide_forwards_the_dashboard_and_the_api_only(void **state) {
    (void)state;
    const char *h = "127.0.0.1:8080";
    assert_int_equal(decide("GET", "/dashboard", h), 0);
    assert_int_equal(decide("GET", "/dashboard/dashboard.js", h), 0);
    assert_int_equal(decide("GET", "/api/devices?credentials=1", h), 0);
    assert_int_equal(decide("GET", "/api/audit?tail=20", "localhost:8080"), 0);
    assert_int_equal(decide("GET", "/", h), 302);
    assert_int_equal(decide("POST", "/api/rotation", h), 405);
    assert_int_equal(decide("HEAD", "/dashboard", h), 405);
    assert_int_equal(decide("get", "/dashboard", h), 405);
    assert_int_equal(decide("GET", "/metrics", h), 404);
    assert_int_equal(decide("GET", "/healthz", h), 404);
    assert_int_equal(decide("GET", "/api/", h), 404);
    assert_int_equal(decide("GET", "/dashboardx", h), 404);
    assert_int_equal(decide("GET", "/api/../metrics", h), 400);
    assert_int_equal(decide("GET", "/api/./devices", h), 400);
    assert_int_equal(decide("GET", "/api/%2e%2e/metrics", h), 400);
    assert_int_equal(decide("GET", "/api/devices#x", h), 400);
    assert_int_equal(decide("GET", "http://evil/api/devices", h), 400);
    assert_int_equal(decide("GET", "/api/devices", "evil.example:8080"), 403);
    assert_int_equal(decide("GET", "/api/devices", ""), 403);
    assert_int_equal(decide("GET", "/api/devices", "127.0.0.1:8081"), 403);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dash_parse_reads_a_complete_head),
        cmocka_unit_test(dash_parse_wants_more_for_every_truncation),
        cmocka_unit_test(dash_parse_refuses_malformed_heads),
        cmocka_unit_test(dash_decide_forwards_the_dashboard_and_the_api_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
