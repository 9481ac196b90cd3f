/* wss_client: a small, independent WebSocket-over-mTLS client for the fleetkey-server tests.
 * OpenSSL for TLS, RFC 6455 framing written here (client frames masked, Sec-WebSocket-Accept
 * checked), so the server is exercised by code that shares nothing with libwebsockets.
 *
 *   wss_client --port P --ca CA [--cert C --key K] [--host H] [--path /ws]
 *              [--subprotocol NAME|-] [--tls-max 1.2|1.3] [--timeout S] STEP...
 * Steps, run in order after the upgrade:
 *   hello ID          send a hello for ID, expect "welcome"
 *   send JSON         send one text message
 *   expect TYPE       read the next text message; its "type" must be TYPE
 *   ping              send {"type":"ping","id":7}, expect a pong with id 7
 *   big N             send one text frame of N bytes
 *   frag N            send a message of N bytes in 3 fragments
 *   binary            send a binary frame
 *   wait-file F       wait (bounded by --timeout) until file F exists
 *   expect-close CODE read until the server's close frame; its code must be CODE
 *   answer-close      answer that close frame with ours (RFC 6455 5.5.1: echo its code)
 *   expect-eof        read: the server must end the connection (TLS close or TCP end, within
 *                     --timeout) and send nothing more, no frame, not a second close
 *   idle S            read for S seconds; any message or close fails
 *   sleep MS          do nothing for MS milliseconds (a slow device)
 *   expect-request KIND  read the next message: a request of that kind (its id is kept)
 *   respond JSON      answer the last request: {"type":"response","id":ID,"ok":true,"body":JSON}
 *   respond-error CODE  answer the last request with ok false and error code CODE
 * Scripted device for OTA pushes (docs/wss-protocol.md, request kinds for updates):
 *   ota-recv FILE     answer ota_begin (chunk 2048), every ota_chunk (offsets checked, data
 *                     appended to FILE), then ota_finish (ok)
 *   ota-recv-refuse FILE CODE  the same, but ota_finish answered with error CODE
 *   ota-recv-partial FILE N    ota_begin and N chunks, then stop (the next step decides)
 *   drop              end the connection abruptly (no close frame): a device losing power
 * Special forms: --upgrade-status N expects the HTTP answer N instead of 101 and stops there;
 * --get PATH sends an HTTP GET instead of an upgrade and prints "STATUS\nBODY"; --post PATH
 * --body FILE sends FILE as a POST body (Content-Length) and prints the answer the same way.
 * Exit: 0 all steps passed, 1 a step failed, 2 usage, 3 TLS refused (handshake or the first
 * read after it: in TLS 1.3 the server judges the client certificate after the client has
 * finished), 4 connect failed. Every wait is bounded by --timeout (default 10 s). */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static SSL *ssl;
static int tls_ok_read; /* 1 once anything was read after the handshake */
static unsigned timeout_s = 10;

static void die_tls(const char *what) {
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    fprintf(stderr, "wss_client: TLS refused (%s): %s\n", what, e ? buf : "connection closed");
    exit(3);
}

/* Case-insensitive strstr (HTTP header names are case-insensitive). */
static const char *ci_find(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay != '\0'; hay++) {
        size_t k = 0;
        while (k < n && hay[k] != '\0' &&
               (hay[k] | 0x20) == (needle[k] | 0x20)) {
            k++;
        }
        if (k == n) {
            return hay;
        }
    }
    return NULL;
}

static int read_all(void *buf, size_t n) {
    uint8_t *p = buf;
    while (n > 0) {
        int r = SSL_read(ssl, p, n > 16384 ? 16384 : (int)n);
        if (r <= 0) {
            if (!tls_ok_read) {
                die_tls("first read");
            }
            return -1;
        }
        tls_ok_read = 1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_all(const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n > 0) {
        int r = SSL_write(ssl, p, (int)n);
        if (r <= 0) {
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One client frame: FIN flag, opcode, masked payload (RFC 6455 5.2, 5.3). */
static int send_frame(int fin, int opcode, const uint8_t *data, size_t len) {
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) {
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    uint8_t mask[4];
    RAND_bytes(mask, 4);
    memcpy(hdr + h, mask, 4);
    h += 4;
    if (write_all(hdr, h) != 0) {
        return -1;
    }
    uint8_t chunk[4096];
    for (size_t off = 0; off < len;) {
        size_t n = len - off < sizeof chunk ? len - off : sizeof chunk;
        for (size_t i = 0; i < n; i++) {
            chunk[i] = data[off + i] ^ mask[(off + i) & 3];
        }
        /* The server may close while we are still sending an oversized frame: that is the
         * expected outcome, not a failure of the write. */
        if (write_all(chunk, n) != 0) {
            return 0;
        }
        off += n;
    }
    return 0;
}

static int send_text(const char *s) {
    return send_frame(1, 1, (const uint8_t *)s, strlen(s));
}

/* Reads one message (answering pings). Returns the opcode (1 text, 2 binary, 8 close) with
 * the payload in buf (NUL-terminated), or -1. */
static int recv_msg(char *buf, size_t size, size_t *len) {
    for (;;) {
        uint8_t h[2];
        if (read_all(h, 2) != 0) {
            return -1;
        }
        int op = h[0] & 0x0F;
        uint64_t n = h[1] & 0x7F;
        if (h[1] & 0x80) {
            fprintf(stderr, "wss_client: server frame is masked (RFC 6455 5.1 forbids)\n");
            return -1;
        }
        if (n == 126) {
            uint8_t e[2];
            if (read_all(e, 2) != 0) {
                return -1;
            }
            n = ((uint64_t)e[0] << 8) | e[1];
        } else if (n == 127) {
            uint8_t e[8];
            if (read_all(e, 8) != 0) {
                return -1;
            }
            n = 0;
            for (int i = 0; i < 8; i++) {
                n = (n << 8) | e[i];
            }
        }
        if (n >= size) {
            fprintf(stderr, "wss_client: server message of %llu bytes too big\n",
                    (unsigned long long)n);
            return -1;
        }
        if (read_all(buf, (size_t)n) != 0) {
            return -1;
        }
        buf[n] = '\0';
        *len = (size_t)n;
        if (op == 9) {
            send_frame(1, 10, (const uint8_t *)buf, (size_t)n);
            continue;
        }
        if (op == 10) {
            continue;
        }
        return op;
    }
}

static int msg_type_is(const char *msg, const char *type) {
    char want[160];
    snprintf(want, sizeof want, "\"type\":\"%s\"", type);
    return strstr(msg, want) != NULL;
}

static int connect_tcp(const char *host, unsigned port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {(time_t)timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* A frame is written as header + payload (two TLS records): without this the second
     * waits for the server's delayed ACK on every message. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads the HTTP response head (bounded), returns the status code; body_out gets what
 * follows the head when non-NULL. */
static int read_http(char *head, size_t size, size_t *got) {
    size_t n = 0;
    while (n + 1 < size) {
        int r = SSL_read(ssl, head + n, 1);
        if (r <= 0) {
            if (n == 0) {
                die_tls("first read");
            }
            break;
        }
        tls_ok_read = 1;
        n++;
        head[n] = '\0';
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    head[n] = '\0';
    *got = n;
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    return status;
}

static void ws_accept_for(const char *key, char out[64]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 1.3 */
    char cat[128];
    uint8_t dg[SHA_DIGEST_LENGTH];
    snprintf(cat, sizeof cat, "%s%s", key, guid);
    SHA1((const uint8_t *)cat, strlen(cat), dg);
    EVP_EncodeBlock((unsigned char *)out, dg, SHA_DIGEST_LENGTH);
}

static char last_req_id[64];

/* The string value of "name" in a compact JSON text (what the server sends: cJSON, no
 * whitespace, no escapes in the members read here). */
static int json_str(const char *msg, const char *name, char *out, size_t size) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":\"", name);
    const char *p = strstr(msg, key);
    if (p == NULL) {
        return -1;
    }
    p += strlen(key);
    const char *e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= size) {
        return -1;
    }
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

static long long json_int(const char *msg, const char *name) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(msg, key);
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* Reads the next message, which must be a request of kind `kind`; keeps its id. */
static int expect_request(char *msg, size_t size, const char *kind) {
    size_t len = 0;
    char k[64];
    int op = recv_msg(msg, size, &len);
    if (op != 1 || !msg_type_is(msg, "request") || json_str(msg, "kind", k, sizeof k) != 0 ||
        strcmp(k, kind) != 0 || json_str(msg, "id", last_req_id, sizeof last_req_id) != 0) {
        fprintf(stderr, "wss_client: expected request %s, got op %d '%.300s'\n", kind, op, msg);
        return -1;
    }
    return 0;
}

static void respond(const char *body) {
    static char r[8192];
    snprintf(r, sizeof r, "{\"type\":\"response\",\"id\":\"%s\",\"ok\":true,\"body\":%s}",
             last_req_id, body);
    send_text(r);
}

static void respond_error(const char *code) {
    char r[512];
    snprintf(r, sizeof r,
             "{\"type\":\"response\",\"id\":\"%s\",\"ok\":false,\"error\":{\"code\":\"%s\","
             "\"message\":\"scripted refusal\"}}",
             last_req_id, code);
    send_text(r);
}

/* A device receiving an update: ota_begin, chunks (max_chunks, or all when < 0), ota_finish
 * answered ok or with finish_error. The bytes go to path. */
static int ota_recv(const char *path, long max_chunks, const char *finish_error) {
    static char msg[1 << 16];
    static uint8_t data[4096];
    FILE *f = fopen(path, "wb");
    if (f == NULL || expect_request(msg, sizeof msg, "ota_begin") != 0) {
        return -1;
    }
    long long size = json_int(msg, "size");
    respond("{\"slot\":\"ota_1\",\"chunk\":2048}");
    long long got = 0;
    for (long n = 0; max_chunks < 0 || n < max_chunks; n++) {
        size_t len = 0;
        char kind[64], b64[4096];
        int op = recv_msg(msg, sizeof msg, &len);
        if (op != 1 || json_str(msg, "kind", kind, sizeof kind) != 0 ||
            json_str(msg, "id", last_req_id, sizeof last_req_id) != 0) {
            fprintf(stderr, "wss_client: ota: expected a request, got op %d '%.200s'\n", op, msg);
            return -1;
        }
        if (strcmp(kind, "ota_finish") == 0) {
            if (got != size) {
                fprintf(stderr, "wss_client: ota_finish after %lld of %lld bytes\n", got, size);
                return -1;
            }
            if (finish_error != NULL) {
                respond_error(finish_error);
            } else {
                respond("{\"slot\":\"ota_1\",\"version\":\"2.0.0\",\"secure_version\":2,"
                        "\"key\":\"sbv2:00\",\"reboot\":true}");
            }
            printf("ota: received %lld bytes\n", got);
            fclose(f);
            return 0;
        }
        if (strcmp(kind, "ota_chunk") != 0 || json_int(msg, "offset") != got ||
            json_str(msg, "data", b64, sizeof b64) != 0) {
            fprintf(stderr, "wss_client: ota: bad chunk at %lld: '%.200s'\n", got, msg);
            return -1;
        }
        size_t bl = strlen(b64);
        int dl = EVP_DecodeBlock(data, (const unsigned char *)b64, (int)bl);
        if (dl < 0) {
            fprintf(stderr, "wss_client: ota: bad base64\n");
            return -1;
        }
        dl -= (bl > 0 && b64[bl - 1] == '=') + (bl > 1 && b64[bl - 2] == '=');
        if (dl <= 0 || dl > 2048) {
            fprintf(stderr, "wss_client: ota: chunk of %d bytes\n", dl);
            return -1;
        }
        fwrite(data, 1, (size_t)dl, f);
        fflush(f);
        got += dl;
        char body[64];
        snprintf(body, sizeof body, "{\"received\":%lld}", got);
        respond(body);
    }
    printf("ota: stopped after %lld bytes\n", got);
    fclose(f);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: wss_client --port P --ca CA [--cert C --key K] [options] STEP...\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *ca = NULL, *cert = NULL, *key = NULL, *path = "/ws";
    const char *subproto = "fleetkey.v1", *get = NULL, *post = NULL, *body_file = NULL;
    unsigned port = 0;
    int tls_max = 0, want_status = 101;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (i + 1 >= argc) {
            return usage();
        }
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--port") == 0) {
            port = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--host") == 0) {
            host = v;
        } else if (strcmp(a, "--ca") == 0) {
            ca = v;
        } else if (strcmp(a, "--cert") == 0) {
            cert = v;
        } else if (strcmp(a, "--key") == 0) {
            key = v;
        } else if (strcmp(a, "--path") == 0) {
            path = v;
        } else if (strcmp(a, "--subprotocol") == 0) {
            subproto = v;
        } else if (strcmp(a, "--get") == 0) {
            get = v;
        } else if (strcmp(a, "--post") == 0) {
            post = v;
        } else if (strcmp(a, "--body") == 0) {
            body_file = v;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_s = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--upgrade-status") == 0) {
            want_status = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--tls-max") == 0) {
            tls_max = strcmp(v, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
        } else {
            return usage();
        }
    }
    if (port == 0 || ca == NULL || timeout_s == 0) {
        return usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* tests watch stdout while the client runs */
    /* The server may close the TCP connection right after its close frame; our own close
     * frame then meets EPIPE, which must not kill the client. */
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (tls_max) {
        SSL_CTX_set_max_proto_version(ctx, tls_max);
    }
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
        (cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                          SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))) {
        fprintf(stderr, "wss_client: cannot load CA/cert/key\n");
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int fd = connect_tcp(host, port);
    if (fd < 0) {
        fprintf(stderr, "wss_client: connect %s:%u: %s\n", host, port, strerror(errno));
        return 4;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, host);
    if (SSL_connect(ssl) != 1) {
        die_tls("handshake");
    }
    fprintf(stderr, "wss_client: %s %s\n", SSL_get_version(ssl), SSL_get_cipher(ssl));

    char head[8192];
    size_t got = 0;
    if (get != NULL || post != NULL) {
        char req[512];
        if (post != NULL) {
            FILE *bf = body_file != NULL ? fopen(body_file, "rb") : NULL;
            if (bf == NULL) {
                fprintf(stderr, "wss_client: --post needs a readable --body FILE\n");
                return 2;
            }
            fseek(bf, 0, SEEK_END);
            long blen = ftell(bf);
            fseek(bf, 0, SEEK_SET);
            snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %ld\r\n\r\n",
                     post, host, blen);
            write_all(req, strlen(req));
            /* The server may answer (403, 413) before the body is in: stop sending then. */
            static uint8_t chunk[16384];
            size_t n;
            while ((n = fread(chunk, 1, sizeof chunk, bf)) > 0) {
                struct timeval tv0 = {0, 0};
                fd_set rs;
                FD_ZERO(&rs);
                FD_SET(fd, &rs);
                if (SSL_pending(ssl) > 0 || select(fd + 1, &rs, NULL, NULL, &tv0) > 0 ||
                    write_all(chunk, n) != 0) {
                    break;
                }
            }
            fclose(bf);
        } else {
            snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", get, host);
            write_all(req, strlen(req));
        }
        int st = read_http(head, sizeof head, &got);
        long clen = -1;
        const char *cl = ci_find(head, "\r\ncontent-length:");
        if (cl != NULL) {
            clen = strtol(cl + 17, NULL, 10);
        }
        printf("%d\n", st);
        char body[65536];
        size_t blen = 0;
        while (clen < 0 || (long)blen < clen) {
            int r = SSL_read(ssl, body + blen, (int)(sizeof body - 1 - blen));
            if (r <= 0 || blen + (size_t)r >= sizeof body - 1) {
                break;
            }
            blen += (size_t)r;
        }
        body[blen] = '\0';
        fputs(body, stdout);
        return st > 0 ? 0 : 1;
    }

    uint8_t nonce[16];
    char wskey[32], accept[64];
    RAND_bytes(nonce, sizeof nonce);
    EVP_EncodeBlock((unsigned char *)wskey, nonce, sizeof nonce);
    char req[1024];
    int rn = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n",
                      path, host, port, wskey);
    if (strcmp(subproto, "-") != 0) {
        rn += snprintf(req + rn, sizeof req - (size_t)rn, "Sec-WebSocket-Protocol: %s\r\n",
                       subproto);
    }
    snprintf(req + rn, sizeof req - (size_t)rn, "\r\n");
    if (write_all(req, strlen(req)) != 0) {
        die_tls("write");
    }
    int st = read_http(head, sizeof head, &got);
    fprintf(stderr, "wss_client: upgrade answer %d\n", st);
    if (st != 101 || want_status != 101) {
        if (st == want_status) {
            return 0;
        }
        fprintf(stderr, "wss_client: expected HTTP %d, got %d\n", want_status, st);
        return 1;
    }
    ws_accept_for(wskey, accept);
    if (ci_find(head, accept) == NULL || ci_find(head, "fleetkey.v1") == NULL) {
        fprintf(stderr, "wss_client: bad Sec-WebSocket-Accept or subprotocol:\n%s", head);
        return 1;
    }

    static char msg[1 << 16];
    size_t len = 0;
    for (; i < argc; i++) {
        const char *step = argv[i];
        const char *arg = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(step, "hello") == 0 && arg != NULL) {
            char h[1024];
            snprintf(h, sizeof h,
                     "{\"type\":\"hello\",\"device_id\":\"%s\",\"firmware_version\":\"1.2.3\","
                     "\"credential_versions\":{\"mtls_cert\":1,\"dtls_psk\":1},"
                     "\"posture\":{\"build\":\"development\",\"boot_allowed\":true,"
                     "\"rules\":{\"nvs-encrypted\":false,\"dtls-required\":true}}}",
                     arg);
            send_text(h);
            int op = recv_msg(msg, sizeof msg, &len);
            if (op != 1 || !msg_type_is(msg, "welcome")) {
                fprintf(stderr, "wss_client: hello: expected welcome, got op %d '%s'\n", op, msg);
                return 1;
            }
            printf("%s\n", msg);
            i++;
        } else if (strcmp(step, "send") == 0 && arg != NULL) {
            send_text(arg);
            i++;
        } else if (strcmp(step, "expect") == 0 && arg != NULL) {
            int op = recv_msg(msg, sizeof msg, &len);
            if (op != 1 || !msg_type_is(msg, arg)) {
                fprintf(stderr, "wss_client: expected %s, got op %d '%s'\n", arg, op, msg);
                return 1;
            }
            printf("%s\n", msg);
            i++;
        } else if (strcmp(step, "ping") == 0) {
            send_text("{\"type\":\"ping\",\"id\":7}");
            int op = recv_msg(msg, sizeof msg, &len);
            if (op != 1 || !msg_type_is(msg, "pong") || strstr(msg, "\"id\":7") == NULL) {
                fprintf(stderr, "wss_client: ping: expected pong 7, got op %d '%s'\n", op, msg);
                return 1;
            }
            printf("%s\n", msg);
        } else if ((strcmp(step, "big") == 0 || strcmp(step, "frag") == 0) && arg != NULL) {
            size_t n = (size_t)strtoul(arg, NULL, 10);
            uint8_t *b = malloc(n + 1);
            memset(b, ' ', n);
            if (n >= 2) {
                b[0] = '{';
                b[n - 1] = '}';
            }
            if (step[0] == 'b') {
                send_frame(1, 1, b, n);
            } else {
                size_t a = n / 3, c = 2 * n / 3;
                send_frame(0, 1, b, a);
                send_frame(0, 0, b + a, c - a);
                send_frame(1, 0, b + c, n - c);
            }
            free(b);
            i++;
        } else if (strcmp(step, "binary") == 0) {
            send_frame(1, 2, (const uint8_t *)"\x01\x02", 2);
        } else if (strcmp(step, "wait-file") == 0 && arg != NULL) {
            struct stat sb;
            time_t until = time(NULL) + (time_t)timeout_s;
            while (stat(arg, &sb) != 0) {
                if (time(NULL) > until) {
                    fprintf(stderr, "wss_client: %s did not appear\n", arg);
                    return 1;
                }
                usleep(50000);
            }
            i++;
        } else if (strcmp(step, "expect-close") == 0 && arg != NULL) {
            int op;
            while ((op = recv_msg(msg, sizeof msg, &len)) == 1) {
                fprintf(stderr, "wss_client: (message before close: %s)\n", msg);
            }
            int code = op == 8 && len >= 2 ? ((uint8_t)msg[0] << 8) | (uint8_t)msg[1] : -1;
            printf("close %d %s\n", code, len > 2 ? msg + 2 : "");
            if (code != atoi(arg)) {
                fprintf(stderr, "wss_client: expected close %s, got %d\n", arg, code);
                return 1;
            }
            i++;
        } else if (strcmp(step, "answer-close") == 0) {
            /* msg still holds the last close frame's payload (expect-close). */
            if (send_frame(1, 8, (const uint8_t *)msg, len >= 2 ? 2 : 0) != 0) {
                fprintf(stderr, "wss_client: answer-close: send failed\n");
                return 1;
            }
        } else if (strcmp(step, "expect-eof") == 0) {
            uint8_t b;
            int r = SSL_read(ssl, &b, 1);
            int e = SSL_get_error(ssl, r);
            /* The receive time-out (SO_RCVTIMEO: EAGAIN) is WANT_READ to OpenSSL's socket BIO,
             * or SYSCALL with EAGAIN; the end is ZERO_RETURN (close_notify), or SYSCALL with
             * errno 0 (FIN) or a reset. */
            int timed_out = e == SSL_ERROR_WANT_READ ||
                            (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
            if (r > 0 || timed_out) {
                fprintf(stderr, "wss_client: expect-eof: %s\n",
                        r > 0 ? "the server sent more after its close" : "time-out");
                return 1;
            }
        } else if (strcmp(step, "expect-request") == 0 && arg != NULL) {
            if (expect_request(msg, sizeof msg, arg) != 0) {
                return 1;
            }
            printf("%s\n", msg);
            i++;
        } else if (strcmp(step, "respond") == 0 && arg != NULL) {
            respond(arg);
            i++;
        } else if (strcmp(step, "respond-error") == 0 && arg != NULL) {
            respond_error(arg);
            i++;
        } else if (strcmp(step, "ota-recv") == 0 && arg != NULL) {
            if (ota_recv(arg, -1, NULL) != 0) {
                return 1;
            }
            i++;
        } else if (strcmp(step, "ota-recv-refuse") == 0 && arg != NULL && i + 2 < argc) {
            if (ota_recv(arg, -1, argv[i + 2]) != 0) {
                return 1;
            }
            i += 2;
        } else if (strcmp(step, "ota-recv-partial") == 0 && arg != NULL && i + 2 < argc) {
            if (ota_recv(arg, strtol(argv[i + 2], NULL, 10), NULL) != 0) {
                return 1;
            }
            i += 2;
        } else if (strcmp(step, "drop") == 0) {
            /* No close frame, no TLS close_notify: the TCP connection just ends. */
            close(fd);
            return 0;
        } else if (strcmp(step, "sleep") == 0 && arg != NULL) {
            unsigned long ms = strtoul(arg, NULL, 10);
            struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            i++;
        } else if (strcmp(step, "idle") == 0 && arg != NULL) {
            unsigned s = (unsigned)strtoul(arg, NULL, 10);
            struct timeval tv = {(time_t)s, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            int op = recv_msg(msg, sizeof msg, &len);
            if (op != -1) {
                fprintf(stderr, "wss_client: idle: got op %d '%s'\n", op, msg);
                return 1;
            }
            struct timeval tv2 = {(time_t)timeout_s, 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv2, sizeof tv2);
            i++;
        } else {
            fprintf(stderr, "wss_client: bad step '%s'\n", step);
            return 2;
        }
    }
    send_frame(1, 8, (const uint8_t *)"\x03\xe8", 2);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return 0;
}
