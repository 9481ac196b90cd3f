/* Unit tests of the Wi-Fi re-provisioning portal (device/src/portal/portal.c): the HTTP
 * request parser (valid requests, every truncation, malformed heads), the form decoder, the
 * IEEE 802.11 credential rules at their edges, the handler's answers, that the password never
 * reaches the log, and a power cut at every flash write of a save: after each cut and the next
 * boot's recovery the NVS holds the old pair or the new pair, never a mix. */
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/portal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static char logbuf[8192];

static void capture(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    size_t l = strlen(logbuf);
    snprintf(logbuf + l, sizeof logbuf - l, "%s %s\n", fkd_log_level_name(lvl), line);
}

#define NVS_SIZE 0x3000u
static uint8_t flashbuf[NVS_SIZE];
static struct fkd_flash_mem mem;
static struct fkd_flash flash;
static struct fkd_nvs nvs;

static void fresh_nvs(void) {
    memset(flashbuf, 0xFF, sizeof flashbuf);
    fkd_flash_mem_init(&mem, flashbuf, sizeof flashbuf, &flash);
    fkd_nvs_init(&nvs);
    assert_int_equal(fkd_nvs_mount(&nvs, &flash, 0, NVS_SIZE, NULL, NULL), FKD_OK);
}

static enum fkd_err parse(const char *s, struct fkd_http_req *rq) {
    return fkd_http_req_parse((const uint8_t *)s, strlen(s), FKD_PORTAL_REQ_MAX, rq);
}

static void http_parse_accepts_a_form_post(void **st) {
    (void)st;
    static const char req[] = "POST /wifi HTTP/1.1\r\nHost: 192.168.4.1\r\n"
                              "Content-Type: application/x-www-form-urlencoded\r\n"
                              "Content-Length: 30\r\n\r\nssid=Lab&password=abcdefgh1234";
    struct fkd_http_req rq;
    assert_int_equal(parse(req, &rq), FKD_OK);
    assert_int_equal(rq.method.len, 4);
    assert_memory_equal(rq.method.p, "POST", 4);
    assert_int_equal(rq.target.len, 5);
    assert_int_equal(rq.content_length, 30);
    assert_int_equal(rq.head_len, strlen(req) - 30);
    assert_int_equal(rq.content_type.len, strlen("application/x-www-form-urlencoded"));
}

static void http_parse_reports_every_truncation(void **st) {
    (void)st;
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    struct fkd_http_req rq;
    for (size_t n = 0; n < strlen(req); n++) {
        enum fkd_err rc = fkd_http_req_parse((const uint8_t *)req, n, 100, &rq);
        /* Every proper prefix is incomplete, never accepted. */
        assert_true(rc == FKD_E_TRUNCATED || rc == FKD_E_PARSE);
        assert_int_not_equal(rc, FKD_OK);
    }
    assert_int_equal(fkd_http_req_parse((const uint8_t *)req, strlen(req), 100, &rq), FKD_OK);
}

static void http_parse_rejects_malformed_heads(void **st) {
    (void)st;
    static const struct {
        const char *req;
        enum fkd_err want;
    } cases[] = {
        {"GET  / HTTP/1.1\r\n\r\n", FKD_E_PARSE}, /* two spaces */
        {"GET / HTTP/1.1\n\n", FKD_E_TRUNCATED},  /* bare LF: no CRLF line */
        {"GET x HTTP/1.1\r\n\r\n", FKD_E_PARSE},  /* not origin-form */
        {"GET / HTTP/2.0\r\n\r\n", FKD_E_PARSE},
        {"GET / HTTP/1.2\r\n\r\n", FKD_E_UNSUPPORTED},
        {"GET / HTTP/1.1 \r\n\r\n", FKD_E_PARSE},            /* trailing space */
        {"G(T / HTTP/1.1\r\n\r\n", FKD_E_PARSE},             /* not a token */
        {"GET / HTTP/1.1\r\nHost x\r\n\r\n", FKD_E_PARSE},   /* no colon */
        {"GET / HTTP/1.1\r\n Host: x\r\n\r\n", FKD_E_PARSE}, /* obs-fold */
        {"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", FKD_E_PARSE}, /* space in the name */
        {"GET / HTTP/1.1\r\nX: a\x01"
         "b\r\n\r\n",
         FKD_E_PARSE},                                      /* control character */
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", FKD_E_PARSE}, /* bare CR */
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", FKD_E_PARSE},
        {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", FKD_E_PARSE},
        {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", FKD_E_PARSE},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", FKD_E_PARSE},
        {"POST / HTTP/1.1\r\nContent-Length: 2049\r\n\r\n", FKD_E_RANGE},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", FKD_E_RANGE},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", FKD_E_UNSUPPORTED},
    };
    struct fkd_http_req rq;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum fkd_err rc = parse(cases[i].req, &rq);
        if (rc != cases[i].want) {
            fail_msg("case %zu (%s): got %s, want %s", i, cases[i].req, fkd_errname(rc),
                     fkd_errname(cases[i].want));
        }
    }
    /* The same length twice is fine. */
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n", &rq), FKD_OK);
    /* 33 header fields: one too many. */
    char big[1024] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 33; i++) {
        strcat(big, "A: b\r\n");
    }
    strcat(big, "\r\n");
    assert_int_equal(parse(big, &rq), FKD_E_PARSE);
}

static void form_get_decodes_and_refuses(void **st) {
    (void)st;
    char out[33];
    size_t n = 0;
    const uint8_t *b = (const uint8_t *)"a=1&ssid=My+Lab%21%2b&x";
    assert_int_equal(fkd_form_get(b, strlen((const char *)b), "ssid", out, sizeof out, &n), FKD_OK);
    assert_string_equal(out, "My Lab!+");
    assert_int_equal(n, 8);
    assert_int_equal(fkd_form_get(b, strlen((const char *)b), "x", out, sizeof out, &n), FKD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fkd_form_get(b, strlen((const char *)b), "nope", out, sizeof out, &n),
                     FKD_E_NOTFOUND);
    static const char *bad[] = {"ssid=%4", "ssid=%zz", "ssid=a%00b", "ssid=a&ssid=b", "%g=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            fkd_form_get((const uint8_t *)bad[i], strlen(bad[i]), "ssid", out, sizeof out, &n),
            FKD_E_PARSE);
    }
    static const char longv[] = "ssid=0123456789012345678901234567890123";
    assert_int_equal(
        fkd_form_get((const uint8_t *)longv, strlen(longv), "ssid", out, sizeof out, &n),
        FKD_E_NOSPACE);
}

static void wifi_rules_at_their_edges(void **st) {
    (void)st;
    const char *why;
    uint8_t b[70];
    memset(b, 'a', sizeof b);
    assert_int_equal(fkd_wifi_ssid_check(b, 0, &why), FKD_E_RANGE);
    assert_int_equal(fkd_wifi_ssid_check(b, 1, &why), FKD_OK);
    assert_int_equal(fkd_wifi_ssid_check(b, 32, &why), FKD_OK);
    assert_int_equal(fkd_wifi_ssid_check(b, 33, &why), FKD_E_RANGE);
    assert_int_equal(fkd_wifi_pass_check(b, 7, &why), FKD_E_RANGE);
    assert_int_equal(fkd_wifi_pass_check(b, 8, &why), FKD_OK);
    assert_int_equal(fkd_wifi_pass_check(b, 63, &why), FKD_OK);
    assert_int_equal(fkd_wifi_pass_check(b, 64, &why), FKD_OK); /* 'a' is a hex digit */
    assert_int_equal(fkd_wifi_pass_check(b, 65, &why), FKD_E_RANGE);
    b[10] = 'g';
    assert_int_equal(fkd_wifi_pass_check(b, 64, &why), FKD_E_RANGE); /* not hex */
    assert_int_equal(fkd_wifi_pass_check(b, 63, &why), FKD_OK);      /* fine as a passphrase */
    b[10] = 0x7f;
    assert_int_equal(fkd_wifi_pass_check(b, 20, &why), FKD_E_RANGE);
    b[10] = 0x1f;
    assert_int_equal(fkd_wifi_pass_check(b, 20, &why), FKD_E_RANGE);
    b[10] = ' ';
    assert_int_equal(fkd_wifi_pass_check(b, 20, &why), FKD_OK);
    b[5] = 0;
    assert_int_equal(fkd_wifi_ssid_check(b, 10, &why), FKD_E_RANGE);
}

static enum fkd_portal_outcome handle(const char *req, char *resp, size_t cap) {
    size_t n = 0;
    enum fkd_err err = FKD_OK;
    enum fkd_portal_outcome o = fkd_portal_handle(&nvs, (const uint8_t *)req, strlen(req),
                                                  (uint8_t *)resp, cap - 1, &n, &err);
    resp[n] = '\0';
    return o;
}

static void post(const char *body, char *resp, size_t cap, enum fkd_portal_outcome want) {
    char req[1024];
    snprintf(req, sizeof req,
             "POST /wifi HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; "
             "charset=UTF-8\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    assert_int_equal(handle(req, resp, cap), want);
}

static void portal_serves_form_redirects_and_saves(void **st) {
    (void)st;
    static char resp[FKD_PORTAL_RESP_MAX + 1];
    char v[80];
    size_t n = 0;
    fresh_nvs();
    logbuf[0] = '\0';
    fkd_log_set(capture, NULL, FKD_LOG_DEBUG);
    assert_int_equal(handle("GET / HTTP/1.1\r\nHost: a\r\n\r\n", resp, sizeof resp),
                     FKD_PORTAL_SERVED);
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(resp, "name=\"password\""));
    handle("GET /generate_204 HTTP/1.1\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "302 Found\r\n"));
    assert_non_null(strstr(resp, "Location: /\r\n"));
    handle("HEAD / HTTP/1.0\r\n\r\n", resp, sizeof resp);
    assert_null(strstr(resp, "<form"));
    handle("DELETE / HTTP/1.1\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "405 "));
    handle("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "501 "));
    handle("POST /wifi HTTP/1.1\r\nContent-Length: 3000\r\n\r\n", resp, sizeof resp);
    assert_non_null(strstr(resp, "413 "));
    handle("POST /wifi HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nssid", resp,
           sizeof resp);
    assert_non_null(strstr(resp, "415 "));
    /* Refusals, each naming the rule, none echoing the password, nothing written. */
    post("ssid=&password=abcdefgh", resp, sizeof resp, FKD_PORTAL_SERVED);
    assert_non_null(strstr(resp, "400 Bad Request"));
    assert_non_null(strstr(resp, "SSID is empty"));
    post("ssid=Lab&password=short77", resp, sizeof resp, FKD_PORTAL_SERVED);
    assert_non_null(strstr(resp, "8 to 63"));
    assert_null(strstr(resp, "short77"));
    post("ssid=Lab&password=tab%09inside", resp, sizeof resp, FKD_PORTAL_SERVED);
    assert_non_null(strstr(resp, "printable ASCII"));
    post("password=abcdefgh1", resp, sizeof resp, FKD_PORTAL_SERVED);
    assert_non_null(strstr(resp, "no ssid field"));
    assert_int_equal(fkd_nvs_get_str(&nvs, "wifi", "ssid", v, sizeof v, &n), FKD_E_NOTFOUND);
    /* A good form: saved, 303 to /saved. */
    post("ssid=Fleet+Lab+5G&password=S3cret%21pass", resp, sizeof resp, FKD_PORTAL_SAVED);
    assert_non_null(strstr(resp, "303 See Other"));
    assert_int_equal(fkd_nvs_get_str(&nvs, "wifi", "ssid", v, sizeof v, &n), FKD_OK);
    assert_string_equal(v, "Fleet Lab 5G");
    assert_int_equal(fkd_nvs_get_str(&nvs, "wifi", "password", v, sizeof v, &n), FKD_OK);
    assert_string_equal(v, "S3cret!pass");
    assert_int_equal(fkd_nvs_find(&nvs, "wifi", "pending", (uint8_t *)v), FKD_E_NOTFOUND);
    /* The log names the SSID and never the password. */
    assert_non_null(strstr(logbuf, "Fleet Lab 5G"));
    assert_null(strstr(logbuf, "S3cret"));
    assert_non_null(strstr(logbuf, "sha256:"));
    /* A control character in the SSID (allowed by 802.11) cannot forge a log line. */
    post("ssid=Evil%0AE+forged&password=abcdefgh1", resp, sizeof resp, FKD_PORTAL_SAVED);
    assert_non_null(strstr(logbuf, "ssid 'Evil?E forged'"));
    assert_null(strstr(logbuf, "\nE forged"));
    assert_int_equal(fkd_nvs_get_str(&nvs, "wifi", "ssid", v, sizeof v, &n), FKD_OK);
    assert_string_equal(v, "Evil\nE forged"); /* stored as given */
    fkd_log_set(NULL, NULL, FKD_LOG_ERROR);
    fkd_nvs_free(&nvs);
}

static void journal_parse_refuses_bad_blobs(void **st) {
    (void)st;
    char s[FKD_WIFI_SSID_MAX + 1], p[FKD_WIFI_PASS_MAX + 1];
    static const uint8_t good[] = {3, 'L', 'a', 'b', 8, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};
    assert_int_equal(fkd_wifi_journal_parse(good, sizeof good, s, p), FKD_OK);
    assert_string_equal(s, "Lab");
    for (size_t n = 0; n < sizeof good; n++) {
        assert_int_not_equal(fkd_wifi_journal_parse(good, n, s, p), FKD_OK);
    }
    uint8_t bad[sizeof good + 1];
    memcpy(bad, good, sizeof good);
    bad[sizeof good] = 'x';
    assert_int_equal(fkd_wifi_journal_parse(bad, sizeof bad, s, p), FKD_E_PARSE);
    memcpy(bad, good, sizeof good);
    bad[0] = 33;
    assert_int_equal(fkd_wifi_journal_parse(bad, sizeof good, s, p), FKD_E_PARSE);
    memcpy(bad, good, sizeof good);
    bad[4] = 7; /* password of 7: too short */
    assert_int_equal(fkd_wifi_journal_parse(bad, sizeof good - 1, s, p), FKD_E_PARSE);
}

/* Reads the pair; 0 old, 1 new, -1 anything else. */
static int which_pair(void) {
    char s[80], p[80];
    size_t n;
    if (fkd_nvs_get_str(&nvs, "wifi", "ssid", s, sizeof s, &n) != FKD_OK ||
        fkd_nvs_get_str(&nvs, "wifi", "password", p, sizeof p, &n) != FKD_OK) {
        return -1;
    }
    if (strcmp(s, "OldNet") == 0 && strcmp(p, "old-password-1") == 0) {
        return 0;
    }
    if (strcmp(s, "NewNet") == 0 && strcmp(p, "new-password-22") == 0) {
        return 1;
    }
    return -1;
}

static void wifi_save_survives_a_power_cut_at_every_write(void **st) {
    (void)st;
    static uint8_t base[NVS_SIZE];
    fresh_nvs();
    assert_int_equal(fkd_nvs_set_str(&nvs, "wifi", "ssid", "OldNet"), FKD_OK);
    assert_int_equal(fkd_nvs_set_str(&nvs, "wifi", "password", "old-password-1"), FKD_OK);
    memcpy(base, flashbuf, sizeof base);
    /* How many program operations a save takes. */
    unsigned long before = mem.ops;
    assert_int_equal(fkd_wifi_save(&nvs, "NewNet", "new-password-22"), FKD_OK);
    unsigned long total = mem.ops - before;
    assert_true(total > 3);
    unsigned seen_old = 0, seen_new = 0;
    for (int torn = 0; torn <= 1; torn++) {
        for (unsigned long cut = 1; cut <= total; cut++) {
            memcpy(flashbuf, base, sizeof base);
            fkd_flash_mem_init(&mem, flashbuf, sizeof flashbuf, &flash);
            fkd_nvs_init(&nvs);
            assert_int_equal(fkd_nvs_mount(&nvs, &flash, 0, NVS_SIZE, NULL, NULL), FKD_OK);
            fkd_flash_mem_cut(&mem, cut, torn);
            assert_int_equal(fkd_wifi_save(&nvs, "NewNet", "new-password-22"), FKD_E_POWERCUT);
            /* Reboot: mount repairs, recover finishes or drops the journal. */
            fkd_flash_mem_cut(&mem, 0, 0);
            mem.dead = 0;
            fkd_nvs_free(&nvs);
            fkd_nvs_init(&nvs);
            assert_int_equal(fkd_nvs_mount(&nvs, &flash, 0, NVS_SIZE, NULL, NULL), FKD_OK);
            assert_int_equal(fkd_wifi_recover(&nvs), FKD_OK);
            int w = which_pair();
            if (w < 0) {
                fail_msg("cut %lu torn %d: wifi/ssid and wifi/password are a mix", cut, torn);
            }
            seen_old += w == 0;
            seen_new += w == 1;
            uint8_t t;
            assert_int_equal(fkd_nvs_find(&nvs, "wifi", "pending", &t), FKD_E_NOTFOUND);
            fkd_nvs_free(&nvs);
        }
    }
    /* Both outcomes happen: the sweep crosses the journal's commit point. */
    assert_true(seen_old > 0 && seen_new > 0);
    print_message("wifi save: %lu program operations, %lu cut points, %u old, %u new\n", total,
                  2 * total, seen_old, seen_new);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(http_parse_accepts_a_form_post),
        cmocka_unit_test(http_parse_reports_every_truncation),
        cmocka_unit_test(http_parse_rejects_malformed_heads),
        cmocka_unit_test(form_get_decodes_and_refuses),
        cmocka_unit_test(wifi_rules_at_their_edges),
        cmocka_unit_test(portal_serves_form_redirects_and_saves),
        cmocka_unit_test(journal_parse_refuses_bad_blobs),
        cmocka_unit_test(wifi_save_survives_a_power_cut_at_every_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
