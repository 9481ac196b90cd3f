/* Unit tests of the device wss client's pure parts (fkd/wss.h): the URI parser, the RFC 6125
 * host matcher, the RFC 6455 handshake helpers, the frame layer (wslay underneath) in both
 * roles over memory buffers, UTF-8, the JSON message parser and the backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fkd/wss.h"

/* ---- URI ------------------------------------------------------------------------------------ */

static void uri_parse_accepts_the_usual_forms(void **state) {
    (void)state;
    struct fkd_wss_uri u;
    const char *why = NULL;
    const char *s = "wss://fleet.example.com:8443/ws";
    assert_int_equal(fkd_wss_uri_parse(s, strlen(s), &u, &why), FKD_OK);
    assert_string_equal(u.host, "fleet.example.com");
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.path, "/ws");
    assert_int_equal(u.host_is_ip, 0);

    s = "WSS://Fleet.Example.com";
    assert_int_equal(fkd_wss_uri_parse(s, strlen(s), &u, &why), FKD_OK);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/");
    assert_string_equal(u.host, "Fleet.Example.com");

    s = "wss://127.0.0.1:1/ws?x=1";
    assert_int_equal(fkd_wss_uri_parse(s, strlen(s), &u, &why), FKD_OK);
    assert_int_equal(u.host_is_ip, 1);
    assert_int_equal(u.port, 1);
    assert_string_equal(u.path, "/ws?x=1");

    s = "wss://[::1]:65535/a";
    assert_int_equal(fkd_wss_uri_parse(s, strlen(s), &u, &why), FKD_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.host_is_ip, 1);

    s = "wss://h?q";
    assert_int_equal(fkd_wss_uri_parse(s, strlen(s), &u, &why), FKD_OK);
    assert_string_equal(u.path, "/?q");

    /* len bounds the input: the bytes after it are not read */
    s = "wss://host:99/pathXXXX";
    assert_int_equal(fkd_wss_uri_parse(s, strlen(s) - 4, &u, &why), FKD_OK);
    assert_string_equal(u.path, "/path");
}

static void uri_parse_rejects_bad_uris(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "wss:/",
        "wss://",
        "ws://host/",
        "https://host/",
        "wss://user@host/",
        "wss://user:pw@host/",
        "wss://host/#frag",
        "wss://host#frag",
        "wss://:443/",
        "wss://host:/",
        "wss://host:0/",
        "wss://host:65536/",
        "wss://host:123456/",
        "wss://host:8a/",
        "wss://host:-1/",
        "wss://ho st/",
        "wss://host/a b",
        "wss://host/\x01",
        "wss://h\xc3\xa9.example/",
        "wss://-a.example/",
        "wss://a-.example/",
        "wss://a..example/",
        "wss://.example/",
        "wss://example./",
        "wss://under_score.example/",
        "wss://[::1/",
        "wss://[]/",
        "wss://[::1]x/",
        "wss://[::g]/",
        "wss://*.example.com/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fkd_wss_uri u;
        const char *why = NULL;
        enum fkd_err rc = fkd_wss_uri_parse(bad[i], strlen(bad[i]), &u, &why);
        if (rc == FKD_OK) {
            fail_msg("accepted %s", bad[i]);
        }
        assert_non_null(why);
    }
    struct fkd_wss_uri u;
    assert_int_not_equal(fkd_wss_uri_parse(NULL, 0, &u, NULL), FKD_OK);
}

static void uri_parse_bounds_host_and_path(void **state) {
    (void)state;
    char uri[600];
    struct fkd_wss_uri u;
    const char *why = NULL;
    /* host of 130 characters (labels of 10): longer than FKD_CFG_HOST_MAX - 1 */
    size_t n = (size_t)snprintf(uri, sizeof uri, "wss://");
    for (int i = 0; i < 13; i++) {
        n += (size_t)snprintf(uri + n, sizeof uri - n, "%saaaaaaaaa", i ? "." : "");
    }
    n += (size_t)snprintf(uri + n, sizeof uri - n, "x/");
    assert_int_equal(fkd_wss_uri_parse(uri, n, &u, &why), FKD_E_RANGE);
    /* path of FKD_WSS_PATH_MAX characters: one too many */
    n = (size_t)snprintf(uri, sizeof uri, "wss://h/");
    memset(uri + n, 'p', FKD_WSS_PATH_MAX - 1);
    n += FKD_WSS_PATH_MAX - 1;
    assert_int_equal(fkd_wss_uri_parse(uri, n, &u, &why), FKD_E_RANGE);
    assert_int_equal(fkd_wss_uri_parse(uri, n - 1, &u, &why), FKD_OK);
    assert_int_equal(strlen(u.path), FKD_WSS_PATH_MAX - 1);
}

/* ---- host matching ---------------------------------------------------------------------------- */

static void host_match_table(void **state) {
    (void)state;
    static const struct {
        const char *pattern;
        const char *host;
        int match;
    } t[] = {
        {"fleet.example.com", "fleet.example.com", 1},
        {"FLEET.Example.COM", "fleet.example.com", 1},
        {"fleet.example.com", "FLEET.EXAMPLE.COM", 1},
        {"fleet.example.com", "fleet.example.com.", 1}, /* absolute reference name */
        {"fleet.example.com", "fleet.example.org", 0},
        {"fleet.example.com", "example.com", 0},
        {"fleet.example.com", "a.fleet.example.com", 0},
        {"localhost", "localhost", 1},
        /* wildcard: the whole left-most label, exactly one label */
        {"*.example.com", "fleet.example.com", 1},
        {"*.Example.com", "FLEET.example.COM", 1},
        {"*.example.com", "example.com", 0},
        {"*.example.com", "a.b.example.com", 0},
        {"*.example.com", ".example.com", 0},
        {"*.example.com", "fleetexample.com", 0},
        /* never a public-suffix-like single label after the wildcard */
        {"*.com", "example.com", 0},
        {"*.local", "robot.local", 0},
        {"*", "localhost", 0},
        {"*.", "a.", 0},
        /* '*' anywhere else, or partial-label wildcards */
        {"f*.example.com", "fleet.example.com", 0},
        {"*leet.example.com", "fleet.example.com", 0},
        {"fleet.*.com", "fleet.example.com", 0},
        {"*.*.example.com", "a.b.example.com", 0},
        {"**.example.com", "a.example.com", 0},
        /* IDN: A-labels compare exactly; a wildcard never stands for one */
        {"xn--bcher-kva.example", "xn--bcher-kva.example", 1},
        {"XN--BCHER-KVA.example", "xn--bcher-kva.example", 1},
        {"*.xn--bcher-kva.example", "shop.xn--bcher-kva.example", 1},
        {"*.example.com", "xn--bcher-kva.example.com", 0},
        {"b\xc3\xbc" "cher.example", "b\xc3\xbc" "cher.example", 0}, /* U-labels: never */
        {"xn--bcher-kva.example", "bucher.example", 0},
        /* malformed patterns and hosts */
        {"", "example.com", 0},
        {"example..com", "example..com", 0},
        {"-a.example.com", "-a.example.com", 0},
        {"exa mple.com", "exa mple.com", 0},
        {"example.com", "", 0},
        {"*.0.0.1", "127.0.0.1", 0}, /* no wildcard over an IP address */
        {"127.0.0.1", "127.0.0.1", 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int got = fkd_wss_host_match(t[i].pattern, strlen(t[i].pattern), t[i].host);
        if (got != t[i].match) {
            fail_msg("pattern '%s' host '%s': got %d want %d", t[i].pattern, t[i].host, got,
                     t[i].match);
        }
    }
    /* the pattern length bounds the read: a NUL-less SAN from a certificate */
    assert_int_equal(fkd_wss_host_match("example.comXX", 11, "example.com"), 1);
    assert_int_equal(fkd_wss_host_match(NULL, 3, "a.b"), 0);
    assert_int_equal(fkd_wss_host_match("a.b", 3, NULL), 0);
}

static void names_match_uses_cn_only_without_san(void **state) {
    (void)state;
    struct fkd_wss_names n;
    memset(&n, 0, sizeof n);
    n.cn = "fleet.example.com";
    n.cn_len = strlen(n.cn);
    /* no subjectAltName: the CN counts */
    assert_int_equal(fkd_wss_names_match(&n, "fleet.example.com"), 1);
    assert_int_equal(fkd_wss_names_match(&n, "other.example.com"), 0);
    /* a SAN extension without a matching DNS name: the CN no longer counts */
    n.has_san = 1;
    assert_int_equal(fkd_wss_names_match(&n, "fleet.example.com"), 0);
    n.dns[0] = "other.example.com";
    n.dns_len[0] = strlen(n.dns[0]);
    n.dns[1] = "*.fleet.example.com";
    n.dns_len[1] = strlen(n.dns[1]);
    n.n_dns = 2;
    assert_int_equal(fkd_wss_names_match(&n, "fleet.example.com"), 0);
    assert_int_equal(fkd_wss_names_match(&n, "other.example.com"), 1);
    assert_int_equal(fkd_wss_names_match(&n, "a.fleet.example.com"), 1);
    /* a SAN of another type only (an IP SAN): still no CN fallback */
    n.n_dns = 0;
    assert_int_equal(fkd_wss_names_match(&n, "fleet.example.com"), 0);
    /* no names at all */
    memset(&n, 0, sizeof n);
    assert_int_equal(fkd_wss_names_match(&n, "fleet.example.com"), 0);
}

/* ---- opening handshake --------------------------------------------------------------------- */

static void accept_matches_rfc6455_example(void **state) {
    (void)state;
    char out[FKD_WSS_ACCEPT_LEN + 1];
    /* RFC 6455 1.3 */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(fkd_wss_accept(key, strlen(key), out), FKD_OK);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(fkd_wss_accept(key, 0, out), FKD_E_ARG);
}

static const char ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static enum fkd_err check(const char *resp, int *status, const char **why) {
    return fkd_wss_check_response((const uint8_t *)resp, strlen(resp), ACCEPT, status, why);
}

static void check_response_accepts_a_good_101(void **state) {
    (void)state;
    int status = 0;
    const char *why = NULL;
    assert_int_equal(check("HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
                           "Connection: keep-alive, Upgrade\r\n"
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                           "sec-websocket-protocol:  fleetkey.v1 \r\n\r\n",
                           &status, &why),
                     FKD_OK);
    assert_int_equal(status, 101);
}

static void check_response_rejects_bad_answers(void **state) {
    (void)state;
    int status = 0;
    const char *why = NULL;
    assert_int_equal(check("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &status, &why),
                     FKD_E_AUTH);
    assert_int_equal(status, 403);
    assert_int_equal(check("HTTP/1.1 400 Bad Request\r\n\r\n", &status, &why), FKD_E_AUTH);
    assert_int_equal(status, 400);
    /* libwebsockets refuses an upgrade with HTTP/1.0 */
    assert_int_equal(check("HTTP/1.0 403 Forbidden\r\ncontent-length: 0\r\n\r\n", &status, &why),
                     FKD_E_AUTH);
    assert_int_equal(status, 403);
    assert_int_equal(check("HTTP/1.0 101 x\r\nUpgrade: websocket\r\n\r\n", &status, &why),
                     FKD_E_PROTOCOL);
    static const char *const proto[] = {
        /* wrong accept */
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOO=\r\nSec-WebSocket-Protocol: "
        "fleetkey.v1\r\n\r\n",
        /* no subprotocol */
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        /* another subprotocol */
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
        "fleetkey.v2\r\n\r\n",
        /* no Upgrade */
        "HTTP/1.1 101 x\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
        "fleetkey.v1\r\n\r\n",
        /* Connection without upgrade */
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
        "fleetkey.v1\r\n\r\n",
        /* an extension we never offered */
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: "
        "fleetkey.v1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof proto / sizeof proto[0]; i++) {
        assert_int_equal(check(proto[i], &status, &why), FKD_E_PROTOCOL);
        assert_non_null(why);
    }
    static const char *const malformed[] = {
        "",
        "HTTP/2 101 x\r\n\r\n",
        "HTTP/1.2 101 x\r\n\r\n",
        "HTTP/1.1 1O1 x\r\n\r\n",
        "HTTP/1.1 101x\r\n\r\n",
        "HTTP/1.1 101 x\r\nUpgrade websocket\r\n\r\n",
        "HTTP/1.1 101 x\r\nUpgrade: websocket\r\n",
        "HTTP/1.1 101 x\r\nUpgrade: web\x01socket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        assert_int_equal(check(malformed[i], &status, &why), FKD_E_PARSE);
    }
    /* every truncation of a good response fails */
    const char *good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                       "\r\nSec-WebSocket-Protocol: fleetkey.v1\r\n\r\n";
    for (size_t n = 0; n < strlen(good); n++) {
        assert_int_not_equal(
            fkd_wss_check_response((const uint8_t *)good, n, ACCEPT, &status, &why), FKD_OK);
    }
}

/* ---- frames -------------------------------------------------------------------------------- */

struct pipe {
    const uint8_t *in;
    size_t in_len;
    size_t in_off;
    size_t chunk;   /* bytes per read (tests partial reads) */
    int end_is_eof; /* at the end: -1 (EOF) or 0 (would block) */
    uint8_t out[20000];
    size_t out_len;
    uint8_t seed;
};

static int p_in(void *user, uint8_t *buf, size_t len) {
    struct pipe *p = user;
    if (p->in_off == p->in_len) {
        return p->end_is_eof ? -1 : 0;
    }
    size_t n = p->in_len - p->in_off;
    n = n < len ? n : len;
    n = n < p->chunk ? n : p->chunk;
    memcpy(buf, p->in + p->in_off, n);
    p->in_off += n;
    return (int)n;
}

static int p_out(void *user, const uint8_t *buf, size_t len) {
    struct pipe *p = user;
    if (len > sizeof p->out - p->out_len) {
        return -1;
    }
    memcpy(p->out + p->out_len, buf, len);
    p->out_len += len;
    return 0;
}

static int p_mask(void *user, uint8_t *key, size_t len) {
    struct pipe *p = user;
    for (size_t i = 0; i < len; i++) {
        key[i] = (uint8_t)(0xA5 ^ (p->seed++ * 37));
    }
    return 0;
}

static uint8_t msgbuf[FKD_WSS_MSG_MAX];

static int contains(const uint8_t *h, size_t hl, const uint8_t *n, size_t nl) {
    for (size_t i = 0; i + nl <= hl; i++) {
        if (memcmp(h + i, n, nl) == 0) {
            return 1;
        }
    }
    return 0;
}

static void ws_open(struct fkd_ws *ws, enum fkd_ws_role role, struct pipe *p) {
    fkd_ws_init(ws);
    assert_int_equal(fkd_ws_setup(ws, role, p_in, p_out, p_mask, p, msgbuf, sizeof msgbuf),
                     FKD_OK);
}

/* Decodes in[] with a fresh endpoint of role; returns the first event that is not AGAIN. */
static enum fkd_ws_event decode(enum fkd_ws_role role, const uint8_t *in, size_t len,
                                struct fkd_ws *ws, struct pipe *p) {
    memset(p, 0, sizeof *p);
    p->in = in;
    p->in_len = len;
    p->chunk = 7;
    p->end_is_eof = 1;
    ws_open(ws, role, p);
    return fkd_ws_read(ws);
}

static void frame_round_trips_in_both_roles(void **state) {
    (void)state;
    static const size_t sizes[] = {0, 1, 125, 126, 127, 65535, 65536 > FKD_WSS_MSG_MAX ? 4000 : 0,
                                   FKD_WSS_MSG_MAX};
    static uint8_t payload[FKD_WSS_MSG_MAX];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(i * 7 + 3);
    }
    for (int role = 0; role < 2; role++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k] > FKD_WSS_MSG_MAX ? FKD_WSS_MSG_MAX : sizes[k];
            struct pipe tx;
            struct fkd_ws enc;
            memset(&tx, 0, sizeof tx);
            ws_open(&enc, (enum fkd_ws_role)role, &tx);
            assert_int_equal(fkd_ws_send(&enc, FKD_WS_OP_BINARY, payload, n), FKD_OK);
            /* a client masks: the payload is not on the wire in clear */
            if (role == FKD_WS_CLIENT && n >= 16) {
                assert_int_equal(tx.out[1] & 0x80, 0x80);
                assert_false(contains(tx.out, tx.out_len, payload, 16));
            }
            if (role == FKD_WS_SERVER) {
                assert_int_equal(tx.out[1] & 0x80, 0);
            }
            struct pipe rx;
            struct fkd_ws dec;
            enum fkd_ws_role other = role == FKD_WS_CLIENT ? FKD_WS_SERVER : FKD_WS_CLIENT;
            assert_int_equal(decode(other, tx.out, tx.out_len, &dec, &rx), FKD_WS_BINARY);
            assert_int_equal(dec.msg_len, n);
            assert_memory_equal(dec.msg, payload, n);
            assert_int_equal(fkd_ws_read(&dec), FKD_WS_EOF);
            fkd_ws_free(&dec);
            fkd_ws_free(&enc);
        }
    }
}

static void frame_text_ping_close_and_fragments(void **state) {
    (void)state;
    /* server -> client, unmasked: "Hel" + "lo" fragments with a ping between, then close */
    static const uint8_t in[] = {0x01, 0x03, 'H', 'e', 'l', 0x89, 0x02, 'p', '1',
                                 0x80, 0x02, 'l', 'o', 0x88, 0x05, 0x03, 0xE8, 'b',
                                 'y',  'e'};
    struct pipe p;
    struct fkd_ws ws;
    assert_int_equal(decode(FKD_WS_CLIENT, in, sizeof in, &ws, &p), FKD_WS_PING);
    assert_int_equal(ws.ctl_len, 2);
    assert_memory_equal(ws.ctl, "p1", 2);
    assert_int_equal(fkd_ws_read(&ws), FKD_WS_TEXT);
    assert_int_equal(ws.msg_len, 5);
    assert_memory_equal(ws.msg, "Hello", 5);
    assert_int_equal(fkd_ws_read(&ws), FKD_WS_CLOSE);
    assert_int_equal(ws.close_code, 1000);
    assert_int_equal(fkd_ws_read(&ws), FKD_WS_EOF);
    fkd_ws_free(&ws);

    /* input that stops mid-frame: AGAIN, not an event */
    memset(&p, 0, sizeof p);
    p.in = in;
    p.in_len = 4;
    p.chunk = 100;
    ws_open(&ws, FKD_WS_CLIENT, &p);
    assert_int_equal(fkd_ws_read(&ws), FKD_WS_AGAIN);
    p.in_len = 9;
    assert_int_equal(fkd_ws_read(&ws), FKD_WS_PING);
    /* a reset forgets the half message */
    assert_int_equal(fkd_ws_reset(&ws), FKD_OK);
    p.in = (const uint8_t *)"\x81\x02ok";
    p.in_len = 4;
    p.in_off = 0;
    assert_int_equal(fkd_ws_read(&ws), FKD_WS_TEXT);
    assert_memory_equal(ws.msg, "ok", 2);
    fkd_ws_free(&ws);

    /* an empty close: 1005 */
    assert_int_equal(decode(FKD_WS_CLIENT, (const uint8_t *)"\x88\x00", 2, &ws, &p),
                     FKD_WS_CLOSE);
    assert_int_equal(ws.close_code, 1005);
    fkd_ws_free(&ws);
}

static void expect_fail(const uint8_t *in, size_t len, enum fkd_ws_role role, uint16_t code) {
    struct pipe p;
    struct fkd_ws ws;
    enum fkd_ws_event ev = decode(role, in, len, &ws, &p);
    if (ev != FKD_WS_FAIL || ws.close_code != code) {
        fail_msg("event %d close %u, want FAIL %u", (int)ev, (unsigned)ws.close_code,
                 (unsigned)code);
    }
    assert_non_null(ws.why);
    fkd_ws_free(&ws);
}

static void frame_decode_rejects_bad_frames(void **state) {
    (void)state;
    /* a length larger than the message buffer, 16-bit form: 1009 at the first payload byte
     * (wslay reports a header together with the first payload bytes), never buffered */
    expect_fail((const uint8_t *)"\x81\x7e\x10\x01x", 5, FKD_WS_CLIENT, 1009);
    /* 64-bit form of 70000 and of 2^62 */
    expect_fail((const uint8_t *)"\x82\x7f\x00\x00\x00\x00\x00\x01\x11\x70x", 11,
                FKD_WS_CLIENT, 1009);
    expect_fail((const uint8_t *)"\x82\x7f\x40\x00\x00\x00\x00\x00\x00\x00x", 11,
                FKD_WS_CLIENT, 1009);
    /* 64-bit length with the top bit set: 1002 */
    expect_fail((const uint8_t *)"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01", 10, FKD_WS_CLIENT,
                1002);
    /* non-minimal lengths: 1002 */
    expect_fail((const uint8_t *)"\x81\x7e\x00\x05hello", 9, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x00\x00\x05hello", 15,
                FKD_WS_CLIENT, 1002);
    /* a message that grows past the buffer over fragments: 1009 */
    {
        static uint8_t big[2 * (4 + 3000)];
        size_t o = 0;
        big[o++] = 0x01;
        big[o++] = 0x7e;
        big[o++] = 3000 >> 8;
        big[o++] = 3000 & 0xff;
        memset(big + o, 'a', 3000);
        o += 3000;
        big[o++] = 0x80;
        big[o++] = 0x7e;
        big[o++] = 3000 >> 8;
        big[o++] = 3000 & 0xff;
        memset(big + o, 'b', 3000);
        o += 3000;
        expect_fail(big, o, FKD_WS_CLIENT, 1009);
    }
    /* reserved bits */
    expect_fail((const uint8_t *)"\xc1\x01x", 3, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\xa1\x01x", 3, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x91\x01x", 3, FKD_WS_CLIENT, 1002);
    /* a masked frame from the server */
    expect_fail((const uint8_t *)"\x81\x81\x01\x02\x03\x04x", 7, FKD_WS_CLIENT, 1002);
    /* an unmasked frame from a client (server role) */
    expect_fail((const uint8_t *)"\x81\x01x", 3, FKD_WS_SERVER, 1002);
    /* fragmented control frames and control frames over 125 bytes */
    expect_fail((const uint8_t *)"\x09\x00", 2, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x08\x02\x03\xe8", 4, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x89\x7e\x00\x7e", 4, FKD_WS_CLIENT, 1002);
    /* reserved opcodes */
    expect_fail((const uint8_t *)"\x83\x00", 2, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x8b\x00", 2, FKD_WS_CLIENT, 1002);
    /* continuation without a message, a new message inside a fragmented one */
    expect_fail((const uint8_t *)"\x80\x01x", 3, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x01\x01x\x81\x01y", 6, FKD_WS_CLIENT, 1002);
    /* close: one byte, invalid codes, non-UTF-8 reason */
    expect_fail((const uint8_t *)"\x88\x01\x03", 3, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x88\x02\x03\xed", 4, FKD_WS_CLIENT, 1002); /* 1005 */
    expect_fail((const uint8_t *)"\x88\x02\x00\x00", 4, FKD_WS_CLIENT, 1002);
    expect_fail((const uint8_t *)"\x88\x03\x03\xe8\xff", 5, FKD_WS_CLIENT, 1007);
}

static void frame_send_refuses_oversized_control(void **state) {
    (void)state;
    struct pipe p;
    struct fkd_ws ws;
    uint8_t big[126];
    memset(&p, 0, sizeof p);
    memset(big, 'x', sizeof big);
    ws_open(&ws, FKD_WS_CLIENT, &p);
    assert_int_equal(fkd_ws_send(&ws, FKD_WS_OP_PING, big, sizeof big), FKD_E_ARG);
    assert_int_equal(fkd_ws_send(&ws, FKD_WS_OP_PING, big, 125), FKD_OK);
    assert_int_equal(fkd_ws_send_close(&ws, 1009, "message too big"), FKD_OK);
    fkd_ws_free(&ws);
    fkd_ws_free(&ws); /* idempotent */
}

/* ---- UTF-8 and JSON ---------------------------------------------------------------------------- */

static void utf8_validation(void **state) {
    (void)state;
    assert_true(fkd_utf8_valid((const uint8_t *)"abc", 3));
    assert_true(fkd_utf8_valid((const uint8_t *)"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    assert_false(fkd_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
    assert_false(fkd_utf8_valid((const uint8_t *)"\xe0\x80\xaf", 3));     /* overlong */
    assert_false(fkd_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    assert_false(fkd_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(fkd_utf8_valid((const uint8_t *)"\xc3", 1));             /* truncated */
    assert_false(fkd_utf8_valid((const uint8_t *)"\x80", 1));
    assert_false(fkd_utf8_valid((const uint8_t *)"\xff", 1));
}

static enum fkd_err parse(const char *s, struct fkd_wss_msg *m) {
    const char *why = NULL;
    return fkd_wss_msg_parse((const uint8_t *)s, strlen(s), m, &why);
}

static void msg_parse_reads_server_messages(void **state) {
    (void)state;
    struct fkd_wss_msg m;
    assert_int_equal(parse("{\"type\": \"welcome\", \"device_id\": \"robot-a1\", \"server_time\": "
                           "\"2026-11-25T15:00:00Z\", \"ping_interval\": 30, \"max_message\": 4096}",
                           &m),
                     FKD_OK);
    assert_int_equal(m.type, FKD_WSS_MSG_WELCOME);
    assert_int_equal(m.ping_interval_s, 30);
    assert_int_equal(m.max_message, 4096);

    assert_int_equal(parse(" {\"type\":\"ping\",\"id\":7}\n", &m), FKD_OK);
    assert_int_equal(m.type, FKD_WSS_MSG_PING);
    assert_int_equal(m.has_id_num, 1);
    assert_int_equal(m.id_num, 7);
    assert_int_equal(parse("{\"type\":\"ping\"}", &m), FKD_OK);
    assert_int_equal(m.has_id_num, 0);
    assert_int_equal(parse("{\"type\":\"pong\",\"id\":2147483647}", &m), FKD_OK);
    assert_int_equal(m.id_num, 2147483647u);

    assert_int_equal(parse("{\"type\":\"request\",\"id\":\"r-000001\",\"kind\":\"status\","
                           "\"body\":{\"a\":[1,2,{\"b\":null}],\"c\":-1.5e3}}",
                           &m),
                     FKD_OK);
    assert_int_equal(m.type, FKD_WSS_MSG_REQUEST);
    assert_string_equal(m.id, "r-000001");
    assert_string_equal(m.kind, "status");

    assert_int_equal(parse("{\"kind\":\"rot\\u0061te\",\"type\":\"request\",\"id\":\"a\\\"b\"}", &m),
                     FKD_OK);
    assert_string_equal(m.kind, "rotate");
    assert_string_equal(m.id, "a\"b");

    assert_int_equal(parse("{\"type\":\"error\",\"code\":\"unknown_type\",\"message\":\"x\","
                           "\"ref\":\"hullo\"}",
                           &m),
                     FKD_OK);
    assert_int_equal(m.type, FKD_WSS_MSG_ERROR);
    assert_string_equal(m.code, "unknown_type");

    assert_int_equal(parse("{\"type\":\"future-thing\",\"x\":[true,false]}", &m), FKD_OK);
    assert_int_equal(m.type, FKD_WSS_MSG_UNKNOWN);
    assert_string_equal(m.type_str, "future-thing");

    assert_int_equal(parse("{\"type\":\"\\ud83d\\ude00\"}", &m), FKD_OK);
    assert_string_equal(m.type_str, "\xf0\x9f\x98\x80");
}

static void msg_parse_rejects_bad_messages(void **state) {
    (void)state;
    static const struct {
        const char *s;
        enum fkd_err rc;
    } bad[] = {
        {"", FKD_E_PARSE},
        {"[]", FKD_E_PARSE},
        {"\"type\"", FKD_E_PARSE},
        {"{}", FKD_E_PARSE},
        {"{\"type\":1}", FKD_E_PARSE},
        {"{\"type\":null}", FKD_E_PARSE},
        {"{\"type\":\"ping\"} x", FKD_E_PARSE},
        {"{\"type\":\"ping\"}{}", FKD_E_PARSE},
        {"{\"type\":\"ping\",}", FKD_E_PARSE},
        {"{\"type\" \"ping\"}", FKD_E_PARSE},
        {"{\"type\":\"ping\"", FKD_E_PARSE},
        {"{\"type\":\"pi\\xng\"}", FKD_E_PARSE},
        {"{\"type\":\"pi\\u12\"}", FKD_E_PARSE},
        {"{\"type\":\"p\x01ng\"}", FKD_E_PARSE},
        {"{\"type\":\"ping\",\"a\":01}", FKD_E_PARSE},
        {"{\"type\":\"ping\",\"a\":1.}", FKD_E_PARSE},
        {"{\"type\":\"ping\",\"a\":-}", FKD_E_PARSE},
        {"{\"type\":\"ping\",\"a\":tru}", FKD_E_PARSE},
        {"{\"type\":\"ping\",\"type\":\"pong\"}", FKD_E_PARSE},
        {"{\"type\":\"p\xc3\"}", FKD_E_PARSE},
        {"{\"type\":\"ping\",\"id\":\"7\"}", FKD_E_TYPE},
        {"{\"type\":\"ping\",\"id\":-1}", FKD_E_TYPE},
        {"{\"type\":\"ping\",\"id\":2147483648}", FKD_E_TYPE},
        {"{\"type\":\"ping\",\"id\":1.5}", FKD_E_TYPE},
        {"{\"type\":\"welcome\",\"ping_interval\":\"30\"}", FKD_E_TYPE},
        {"{\"type\":\"welcome\",\"ping_interval\":0}", FKD_E_TYPE},
        {"{\"type\":\"welcome\",\"max_message\":true}", FKD_E_TYPE},
        {"{\"type\":\"request\",\"kind\":\"status\"}", FKD_E_TYPE},
        {"{\"type\":\"request\",\"id\":7,\"kind\":\"status\"}", FKD_E_TYPE},
        {"{\"type\":\"request\",\"id\":\"\",\"kind\":\"status\"}", FKD_E_TYPE},
        {"{\"type\":\"request\",\"id\":\"0123456789012345678901234567890123456\",\"kind\":\"s\"}",
         FKD_E_TYPE},
        {"{\"type\":\"request\",\"id\":\"r\",\"kind\":[]}", FKD_E_TYPE},
        {"{\"type\":\"request\",\"id\":\"r\",\"kind\":\"s\",\"body\":[]}", FKD_E_TYPE},
        {"{\"type\":\"error\",\"code\":5}", FKD_E_TYPE},
        {"{\"type\":\"request\",\"id\":\"r\\u0000\",\"kind\":\"s\"}", FKD_E_TYPE},
        {"{\"type\":\"\\udc00\"}", FKD_E_TYPE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fkd_wss_msg m;
        const char *why = NULL;
        enum fkd_err rc = fkd_wss_msg_parse((const uint8_t *)bad[i].s, strlen(bad[i].s), &m, &why);
        if (rc != bad[i].rc || why == NULL) {
            fail_msg("%s: rc %d want %d", bad[i].s, (int)rc, (int)bad[i].rc);
        }
    }
    /* nesting: 16 levels pass, 17 fail */
    char deep[128];
    size_t o = (size_t)snprintf(deep, sizeof deep, "{\"type\":\"x\",\"a\":");
    for (int i = 0; i < 15; i++) {
        deep[o++] = '[';
    }
    for (int i = 0; i < 15; i++) {
        deep[o++] = ']';
    }
    deep[o++] = '}';
    deep[o] = '\0';
    struct fkd_wss_msg m;
    assert_int_equal(parse(deep, &m), FKD_OK);
    o = (size_t)snprintf(deep, sizeof deep, "{\"type\":\"x\",\"a\":");
    for (int i = 0; i < 16; i++) {
        deep[o++] = '[';
    }
    for (int i = 0; i < 16; i++) {
        deep[o++] = ']';
    }
    deep[o++] = '}';
    deep[o] = '\0';
    assert_int_equal(parse(deep, &m), FKD_E_PARSE);
    /* every truncation of a good message fails */
    const char *good = "{\"type\":\"request\",\"id\":\"r-1\",\"kind\":\"status\",\"body\":{}}";
    for (size_t n = 0; n < strlen(good); n++) {
        assert_int_not_equal(fkd_wss_msg_parse((const uint8_t *)good, n, &m, NULL), FKD_OK);
    }
}

static void json_put_str_escapes_and_bounds(void **state) {
    (void)state;
    char out[32];
    size_t pos = 0;
    assert_int_equal(fkd_wss_json_put_str(out, sizeof out, &pos, "a\"b\\c\n\x01", 7), 0);
    assert_string_equal(out, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    /* the result parses back */
    char msg[96];
    snprintf(msg, sizeof msg, "{\"type\":\"error\",\"code\":%s}", out);
    struct fkd_wss_msg m;
    assert_int_equal(parse(msg, &m), FKD_OK);
    assert_string_equal(m.code, "a\"b\\c\n\x01");
    char small[6];
    pos = 0;
    assert_int_equal(fkd_wss_json_put_str(small, sizeof small, &pos, "abcd", 4), -1);
    assert_int_equal(pos, 0);
    assert_int_equal(fkd_wss_json_put_str(small, sizeof small, &pos, "abc", 3), 0);
    assert_string_equal(small, "\"abc\"");
}

/* ---- backoff -------------------------------------------------------------------------------- */

static void backoff_grows_caps_and_jitters(void **state) {
    (void)state;
    uint32_t rnds[] = {0, 1, 12345, 0xffffffffu};
    for (size_t r = 0; r < 4; r++) {
        uint32_t prev_hi = 0;
        for (unsigned step = 0; step < 40; step++) {
            uint32_t d = fkd_wss_backoff_ms(1000, 60000, step, rnds[r]);
            uint64_t full = 1000ull << (step < 20 ? step : 20);
            if (full > 60000) {
                full = 60000;
            }
            assert_true(d >= full - full / 2);
            assert_true(d <= full);
            assert_true(full >= prev_hi);
            prev_hi = (uint32_t)full;
        }
    }
    assert_int_equal(fkd_wss_backoff_ms(1000, 60000, 0, 0), 500);
    assert_int_equal(fkd_wss_backoff_ms(1000, 60000, 0, 500), 1000);
    assert_int_equal(fkd_wss_backoff_ms(1000, 60000, 100, 0), 30000);
    assert_true(fkd_wss_backoff_ms(0, 0, 5, 7) <= 1);
}

static void client_setup_refuses_bad_configuration(void **state) {
    (void)state;
    static struct fkd_store st;
    static struct fkd_config cfg;
    static struct fkd_wss w;
    struct fkd_posture posture;
    memset(&posture, 0, sizeof posture);
    fkd_store_init(&st);
    fkd_config_init(&cfg);
    fkd_wss_init(&w);
    struct fkd_wss_config wc;
    memset(&wc, 0, sizeof wc);
    wc.store = &st;
    wc.cfg = &cfg;
    wc.posture = &posture;
    wc.fw_version = "1.0.0";
    /* no URI */
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_ARG);
    fkd_wss_free(&w);
    /* a bad URI */
    wc.uri = "ws://fleet.example.com/ws";
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_ARG);
    fkd_wss_free(&w);
    /* an IP URI without an expected host */
    wc.uri = "wss://127.0.0.1:8443/ws";
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_ARG);
    fkd_wss_free(&w);
    /* no credentials */
    wc.expected_host = "localhost";
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_NOTFOUND);
    fkd_wss_free(&w);
    /* not set up: nothing runs */
    assert_int_equal(fkd_wss_run(&w), FKD_WSS_R_CONFIG);
    fkd_wss_free(&w);
    fkd_wss_free(&w);
}

/* A production build connects only with the client certificate and key from NVS
 * (rule mtls-nvs-only), whatever the store holds otherwise. */
static void client_setup_production_requires_nvs_credentials(void **state) {
    (void)state;
    static struct fkd_store st;
    static struct fkd_config cfg;
    static struct fkd_wss w;
    struct fkd_posture posture;
    memset(&posture, 0, sizeof posture);
    fkd_store_init(&st);
    fkd_config_init(&cfg);
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    static const enum fkd_cred ids[] = {FKD_CRED_CA_CERT, FKD_CRED_CLIENT_CERT,
                                        FKD_CRED_CLIENT_KEY};
    char *bufs[] = {st.ca_cert, st.client_cert, st.client_key};
    for (size_t i = 0; i < 3; i++) {
        memcpy(bufs[i], pem, sizeof pem);
        st.info[ids[i]].source = FKD_SRC_KCONFIG;
        st.info[ids[i]].len = sizeof pem - 1;
        st.info[ids[i]].valid = 1;
    }
    st.loaded = 1;
    struct fkd_wss_config wc;
    memset(&wc, 0, sizeof wc);
    wc.store = &st;
    wc.cfg = &cfg;
    wc.posture = &posture;
    wc.fw_version = "1.0.0";
    wc.uri = "wss://fleet.example.com:8443/ws";
    cfg.production_build = 1;
    fkd_wss_init(&w);
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_POLICY);
    fkd_wss_free(&w);
    /* the client certificate from NVS but the key from Kconfig: still refused */
    st.info[FKD_CRED_CLIENT_CERT].source = FKD_SRC_NVS;
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_POLICY);
    fkd_wss_free(&w);
    /* both from NVS: the policy passes, and this fake PEM is then refused as unparsable */
    st.info[FKD_CRED_CLIENT_KEY].source = FKD_SRC_NVS;
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_CRYPTO);
    fkd_wss_free(&w);
    /* development: the Kconfig credentials are acceptable (and equally unparsable here) */
    cfg.production_build = 0;
    st.info[FKD_CRED_CLIENT_KEY].source = FKD_SRC_KCONFIG;
    assert_int_equal(fkd_wss_setup(&w, &wc), FKD_E_CRYPTO);
    fkd_wss_free(&w);
    fkd_store_free(&st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uri_parse_accepts_the_usual_forms),
        cmocka_unit_test(uri_parse_rejects_bad_uris),
        cmocka_unit_test(uri_parse_bounds_host_and_path),
        cmocka_unit_test(host_match_table),
        cmocka_unit_test(names_match_uses_cn_only_without_san),
        cmocka_unit_test(accept_matches_rfc6455_example),
        cmocka_unit_test(check_response_accepts_a_good_101),
        cmocka_unit_test(check_response_rejects_bad_answers),
        cmocka_unit_test(frame_round_trips_in_both_roles),
        cmocka_unit_test(frame_text_ping_close_and_fragments),
        cmocka_unit_test(frame_decode_rejects_bad_frames),
        cmocka_unit_test(frame_send_refuses_oversized_control),
        cmocka_unit_test(utf8_validation),
        cmocka_unit_test(msg_parse_reads_server_messages),
        cmocka_unit_test(msg_parse_rejects_bad_messages),
        cmocka_unit_test(json_put_str_escapes_and_bounds),
        cmocka_unit_test(backoff_grows_caps_and_jitters),
        cmocka_unit_test(client_setup_refuses_bad_configuration),
        cmocka_unit_test(client_setup_production_requires_nvs_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
