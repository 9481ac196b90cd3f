/* ctl_client: the device library's side of the control-channel tests.
 *
 *   ctl_client dtls    --port P --psk-hex HEX --identity ID [--host IP] [--timeout-ms MS] REQ
 *       the Mbed TLS DTLS client (fkd_dtls_client): handshake, send REQ, print the response.
 *       Interop: works against openssl s_server as well as against the listener.
 *   ctl_client plain   --port P [--host IP] [--timeout-ms MS] REQ
 *       one bare UDP request (plaintext mode), prints the response.
 *   ctl_client flood   --port P --count N
 *       N ClientHellos without a cookie, each from a different loopback source address
 *       (127.1.x.y), never reading the answers: what a spoofing attacker can do.
 *   ctl_client stall   --port P
 *       answers the cookie challenge, receives the server's first flight, then goes silent:
 *       a peer that holds a session slot without ever finishing its handshake.
 *   ctl_client garbage --port P
 *       plaintext and malformed datagrams: a text request, random bytes, a truncated record,
 *       a ClientHello with a forged cookie, an oversized datagram.
 * Exit: 0 ok, 1 failure, 2 usage. Every wait is bounded by --timeout-ms (default 5000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/dtls_client.h"
#include "fkd/net.h"
#include "fleetkey/common.h"

static const char *opt_host = "127.0.0.1";
static unsigned long opt_port, opt_count = 100, opt_timeout = 5000;
static const char *opt_psk_hex, *opt_identity;

static int usage(void) {
    fprintf(stderr, "usage: ctl_client dtls|plain|flood|stall|garbage --port P [--host IP] "
                    "[--psk-hex HEX --identity ID] [--count N] [--timeout-ms MS] [REQUEST]\n");
    return 2;
}

static int run_dtls(const char *req) {
    uint8_t psk[64];
    size_t psk_len = 0;
    uint8_t resp[2048];
    size_t resp_len = 0;
    int rc = 1;
    struct fkd_dtls_client c;
    fkd_dtls_client_init(&c);
    if (opt_psk_hex == NULL || opt_identity == NULL ||
        fk_hex_decode(opt_psk_hex, strlen(opt_psk_hex), psk, sizeof psk, &psk_len, NULL) !=
            FK_OK) {
        fprintf(stderr, "ctl_client: need --psk-hex and --identity\n");
        rc = 2;
        goto out;
    }
    int r = fkd_dtls_client_setup(&c, opt_host, (uint16_t)opt_port,
                                  (const uint8_t *)opt_identity, strlen(opt_identity), psk,
                                  psk_len, (uint32_t)opt_timeout, NULL);
    if (r != FKD_CTL_OK) {
        fprintf(stderr, "ctl_client: setup: %s\n", fkd_ctl_strerror(r));
        goto out;
    }
    r = fkd_dtls_client_handshake(&c);
    if (r != FKD_CTL_OK) {
        fprintf(stderr, "ctl_client: handshake: %s (-0x%04x)\n", fkd_ctl_strerror(r),
                (unsigned)-c.last_ret);
        goto out;
    }
    fprintf(stderr, "ctl_client: handshake ok, %s\n", fkd_dtls_client_ciphersuite(&c));
    char line[256];
    int n = snprintf(line, sizeof line, "%s\n", req);
    if (n < 0 || (size_t)n >= sizeof line) {
        goto out;
    }
    r = fkd_dtls_client_request(&c, (const uint8_t *)line, (size_t)n, resp, sizeof resp - 1,
                                &resp_len);
    if (r != FKD_CTL_OK) {
        fprintf(stderr, "ctl_client: request: %s\n", fkd_ctl_strerror(r));
        goto out;
    }
    fwrite(resp, 1, resp_len, stdout);
    if (resp_len == 0 || resp[resp_len - 1] != '\n') {
        fputc('\n', stdout);
    }
    fkd_dtls_client_close(&c);
    rc = 0;
out:
    fk_wipe(psk, sizeof psk);
    fkd_dtls_client_free(&c);
    return rc;
}

static int run_plain(const char *req) {
    struct fkd_net_sock s;
    struct fkd_net_addr to, from;
    uint8_t resp[2048];
    fkd_net_sock_init(&s);
    if (fkd_net_addr_from(opt_host, (uint16_t)opt_port, &to) != FKD_NET_OK ||
        fkd_net_udp_bind(&s, "127.0.0.1", 0, NULL) != FKD_NET_OK) {
        return 1;
    }
    int rc = 1;
    if (fkd_net_sendto(&s, &to, (const uint8_t *)req, strlen(req)) < 0) {
        goto out;
    }
    if (fkd_net_wait(&s, (uint32_t)opt_timeout) != 1) {
        fprintf(stderr, "ctl_client: no plaintext answer\n");
        goto out;
    }
    int n = fkd_net_recvfrom(&s, resp, sizeof resp, &from);
    if (n < 0) {
        goto out;
    }
    fwrite(resp, 1, (size_t)n, stdout);
    rc = 0;
out:
    fkd_net_close(&s);
    return rc;
}

/* A minimal DTLS 1.2 ClientHello (RFC 6347 4.2.2) with the given cookie: one PSK suite, null
 * compression, no extensions. */
static size_t client_hello(uint8_t *out, const uint8_t *cookie, size_t cookie_len, uint16_t seq,
                           uint8_t msg_seq) {
    uint8_t body[128];
    size_t b = 0;
    body[b++] = 0xfe;
    body[b++] = 0xfd;
    for (int i = 0; i < 32; i++) {
        body[b++] = (uint8_t)(i * 7 + seq);
    }
    body[b++] = 0; /* session_id */
    body[b++] = (uint8_t)cookie_len;
    if (cookie_len > 0) {
        memcpy(body + b, cookie, cookie_len);
        b += cookie_len;
    }
    body[b++] = 0;
    body[b++] = 2;
    body[b++] = 0x00;
    body[b++] = 0xa8; /* TLS_PSK_WITH_AES_128_GCM_SHA256 */
    body[b++] = 1;
    body[b++] = 0; /* null compression */
    size_t o = 0;
    out[o++] = 22;
    out[o++] = 0xfe;
    out[o++] = 0xff;
    memset(out + o, 0, 8); /* epoch 0, sequence number */
    out[o + 7] = (uint8_t)seq;
    o += 8;
    out[o++] = (uint8_t)((12 + b) >> 8);
    out[o++] = (uint8_t)(12 + b);
    out[o++] = 1; /* client_hello */
    out[o++] = 0;
    out[o++] = (uint8_t)(b >> 8);
    out[o++] = (uint8_t)b;
    out[o++] = 0;
    out[o++] = msg_seq; /* message_seq: 1 for the ClientHello that answers a cookie */
    out[o++] = 0;
    out[o++] = 0;
    out[o++] = 0; /* fragment_offset */
    out[o++] = 0;
    out[o++] = (uint8_t)(b >> 8);
    out[o++] = (uint8_t)b;
    memcpy(out + o, body, b);
    return o + b;
}

static int run_flood(void) {
    struct fkd_net_addr to;
    uint8_t ch[256];
    unsigned long sent = 0;
    if (fkd_net_addr_from(opt_host, (uint16_t)opt_port, &to) != FKD_NET_OK) {
        return 1;
    }
    for (unsigned long i = 0; i < opt_count; i++) {
        char src[32];
        snprintf(src, sizeof src, "127.1.%lu.%lu", (i / 250) % 250, i % 250 + 1);
        struct fkd_net_sock s;
        fkd_net_sock_init(&s);
        if (fkd_net_udp_bind(&s, src, 0, NULL) != FKD_NET_OK) {
            continue;
        }
        size_t n = client_hello(ch, NULL, 0, (uint16_t)i, 0);
        if (fkd_net_sendto(&s, &to, ch, n) >= 0) {
            sent++;
        }
        fkd_net_close(&s);
    }
    printf("ctl_client: flood sent %lu cookieless ClientHellos from distinct sources\n", sent);
    return sent == opt_count ? 0 : 1;
}

static int run_stall(void) {
    struct fkd_net_sock s;
    struct fkd_net_addr to, from;
    uint8_t buf[2048];
    int rc = 1;
    fkd_net_sock_init(&s);
    if (fkd_net_addr_from(opt_host, (uint16_t)opt_port, &to) != FKD_NET_OK ||
        fkd_net_udp_bind(&s, "127.0.0.1", 0, NULL) != FKD_NET_OK) {
        return 1;
    }
    size_t n = client_hello(buf, NULL, 0, 0, 0);
    if (fkd_net_sendto(&s, &to, buf, n) < 0 || fkd_net_wait(&s, (uint32_t)opt_timeout) != 1) {
        fprintf(stderr, "ctl_client: no HelloVerifyRequest\n");
        goto out;
    }
    int r = fkd_net_recvfrom(&s, buf, sizeof buf, &from);
    /* HelloVerifyRequest: record(13) handshake(12) server_version(2) cookie<1> */
    if (r < 13 + 12 + 3 || buf[13] != 3 || buf[13 + 14] > r - (13 + 12 + 3)) {
        fprintf(stderr, "ctl_client: not a HelloVerifyRequest\n");
        goto out;
    }
    uint8_t cookie[255];
    size_t clen = buf[13 + 14];
    memcpy(cookie, buf + 13 + 15, clen);
    n = client_hello(buf, cookie, clen, 1, 1);
    if (fkd_net_sendto(&s, &to, buf, n) < 0 || fkd_net_wait(&s, (uint32_t)opt_timeout) != 1) {
        fprintf(stderr, "ctl_client: no ServerHello after the cookie\n");
        goto out;
    }
    r = fkd_net_recvfrom(&s, buf, sizeof buf, &from);
    if (r < 13 + 12 || buf[0] != 22 || buf[13] != 2) {
        fprintf(stderr, "ctl_client: expected a ServerHello\n");
        goto out;
    }
    printf("ctl_client: got the ServerHello, going silent\n");
    rc = 0;
out:
    fkd_net_close(&s);
    return rc;
}

static int run_garbage(void) {
    struct fkd_net_sock s;
    struct fkd_net_addr to;
    uint8_t buf[4096];
    fkd_net_sock_init(&s);
    if (fkd_net_addr_from(opt_host, (uint16_t)opt_port, &to) != FKD_NET_OK ||
        fkd_net_udp_bind(&s, "127.0.0.1", 0, NULL) != FKD_NET_OK) {
        return 1;
    }
    int sent = 0;
    const char *text = "ping\n";
    sent += fkd_net_sendto(&s, &to, (const uint8_t *)text, strlen(text)) >= 0;
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] = (uint8_t)(i * 31 + 7);
    }
    sent += fkd_net_sendto(&s, &to, buf, 200) >= 0;
    size_t n = client_hello(buf, NULL, 0, 1, 0);
    sent += fkd_net_sendto(&s, &to, buf, 20) >= 0; /* truncated ClientHello */
    static const uint8_t forged[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    n = client_hello(buf, forged, sizeof forged, 2, 1);
    sent += fkd_net_sendto(&s, &to, buf, n) >= 0;
    memset(buf, 'A', sizeof buf);
    sent += fkd_net_sendto(&s, &to, buf, sizeof buf) >= 0; /* larger than the rx buffer */
    fkd_net_close(&s);
    printf("ctl_client: sent %d garbage datagrams\n", sent);
    return sent == 5 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        return usage();
    }
    const char *mode = argv[1];
    const char *req = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            req = a;
            continue;
        }
        if (i + 1 >= argc) {
            return usage();
        }
        const char *v = argv[++i];
        if (strcmp(a, "--port") == 0) {
            if (fk_parse_ulong(v, 65535, &opt_port) != FK_OK) {
                return usage();
            }
        } else if (strcmp(a, "--host") == 0) {
            opt_host = v;
        } else if (strcmp(a, "--psk-hex") == 0) {
            opt_psk_hex = v;
        } else if (strcmp(a, "--identity") == 0) {
            opt_identity = v;
        } else if (strcmp(a, "--count") == 0) {
            if (fk_parse_ulong(v, 60000, &opt_count) != FK_OK) {
                return usage();
            }
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (fk_parse_ulong(v, 600000, &opt_timeout) != FK_OK || opt_timeout == 0) {
                return usage();
            }
        } else {
            return usage();
        }
    }
    if (opt_port == 0) {
        return usage();
    }
    if (strcmp(mode, "dtls") == 0 && req != NULL) {
        return run_dtls(req);
    }
    if (strcmp(mode, "plain") == 0 && req != NULL) {
        return run_plain(req);
    }
    if (strcmp(mode, "flood") == 0) {
        return run_flood();
    }
    if (strcmp(mode, "stall") == 0) {
        return run_stall();
    }
    if (strcmp(mode, "garbage") == 0) {
        return run_garbage();
    }
    return usage();
}
