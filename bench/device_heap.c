/* device_heap: the heap high-water of the robot's two Mbed TLS users together, as the example
 * app (examples/esp-idf-robot) runs them: the DTLS-PSK control listener with
 * CONFIG_FLEETKEY_CTL_SESSIONS (2) slots and both sessions open, plus the wss client doing its
 * TLS 1.2 mTLS handshake (ECDHE-ECDSA, P-256 certificates) and the WebSocket upgrade.
 *
 * bench/bench_dtls_device.sh builds this file twice, against Debian's libmbedtls (16 KiB
 * record buffers, every suite: the host figure) and against Mbed TLS 2.28 built from Debian's
 * source package with the example's configuration (examples/esp-idf-robot/main/mbedtls_user.h),
 * and prints the two side by side. Heap: every malloc/calloc/realloc/free of this process is
 * counted (heap_count.h); the DTLS clients and the TLS server live in forked processes, so
 * only the robot's side is measured. On a 64-bit host the structs are larger than on the
 * 32-bit chip (pointers), so the figure is an upper bound of the chip's.
 *
 *   device_heap CERT_DIR     (ca.pem, server.pem, server.key, client.pem, client.key)
 * Exit 0 with the figures, 1 when a step failed (named on stderr). Every wait is bounded. */
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mbedtls/version.h>

#include "fkd/config.h"
#include "fkd/ctl.h"
#include "fkd/dtls_client.h"
#include "fkd/net.h"
#include "fkd/policy.h"
#include "fkd/store.h"
#include "fkd/wss.h"
#include "fkd_posix.h"

#include "heap_count.h"

#define SESSIONS 2 /* CONFIG_FLEETKEY_CTL_SESSIONS in examples/esp-idf-robot/sdkconfig.defaults */

static const uint8_t psk[32] = {0x5a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};
static const char identity[] = "robot-BE0C4BE0C4BE";

static pid_t children[2] = {-1, -1}; /* the wss server and the DTLS clients */

/* Names the failed step and stops the children, so that nothing waits for a peer. */
static int fail(const char *what) {
    fprintf(stderr, "device_heap: %s\n", what);
    for (int i = 0; i < 2; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
    }
    return 1;
}

static int drbg_entropy(void *p, unsigned char *out, size_t len) {
    size_t olen = 0;
    return fkd_net_entropy(p, out, len, &olen) == 0 && olen == len ? 0 : -1;
}

/* ---- the DTLS clients (child process): SESSIONS sessions open until the parent says go ---- */
static int dtls_children(uint16_t port, int to_parent, int from_parent) {
    static struct fkd_dtls_client c[SESSIONS];
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, drbg_entropy, NULL, NULL, 0) != 0) {
        return 1;
    }
    char b = '1';
    for (int i = 0; i < SESSIONS; i++) {
        uint8_t resp[64];
        size_t n = 0;
        fkd_dtls_client_init(&c[i]);
        if (fkd_dtls_client_setup(&c[i], "127.0.0.1", port, (const uint8_t *)identity,
                                  sizeof identity - 1, psk, sizeof psk, 5000,
                                  &drbg) != FKD_CTL_OK ||
            fkd_dtls_client_handshake(&c[i]) != FKD_CTL_OK ||
            fkd_dtls_client_request(&c[i], (const uint8_t *)"ping\n", 5, resp, sizeof resp, &n) !=
                FKD_CTL_OK) {
            b = 'F';
        }
    }
    if (write(to_parent, &b, 1) != 1 || read(from_parent, &b, 1) != 1) {
        return 1;
    }
    for (int i = 0; i < SESSIONS; i++) {
        fkd_dtls_client_close(&c[i]);
        fkd_dtls_client_free(&c[i]);
    }
    mbedtls_ctr_drbg_free(&drbg);
    return b == 'F';
}

/* ---- the control plane (child process): OpenSSL, mTLS, answers one WebSocket upgrade ---- */
static int tls_server(int lfd, const char *dir) {
    char path[512];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int rc = 1;
    if (ctx == NULL) {
        return 1;
    }
    snprintf(path, sizeof path, "%s/server.pem", dir);
    int ok = SSL_CTX_use_certificate_chain_file(ctx, path) == 1;
    snprintf(path, sizeof path, "%s/server.key", dir);
    ok = ok && SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) == 1;
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    ok = ok && SSL_CTX_load_verify_locations(ctx, path, NULL) == 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    struct timeval tv = {10, 0}; /* accept and every read below are bounded */
    ok = ok && setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0;
    int fd = ok ? accept(lfd, NULL, NULL) : -1;
    SSL *ssl = fd >= 0 ? SSL_new(ctx) : NULL;
    if (ssl != NULL && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
        SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1) {
        char req[2048];
        int len = 0;
        while (len < (int)sizeof req - 1 && strstr(req, "\r\n\r\n") == NULL) {
            int n = SSL_read(ssl, req + len, (int)sizeof req - 1 - len);
            if (n <= 0) {
                break;
            }
            len += n;
            req[len] = '\0';
        }
        const char *k = strstr(req, "Sec-WebSocket-Key: ");
        char accept_key[FKD_WSS_ACCEPT_LEN + 1];
        if (k != NULL && fkd_wss_accept(k + 19, 24, accept_key) == FKD_OK) {
            char resp[256];
            int n = snprintf(resp, sizeof resp,
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Protocol: fleetkey.v1\r\n"
                             "Sec-WebSocket-Accept: %s\r\n\r\n",
                             accept_key);
            char hello[1024];
            /* The client's hello frame; then close: the measurement is over. */
            if (SSL_write(ssl, resp, n) == n && SSL_read(ssl, hello, sizeof hello) > 0) {
                rc = 0;
            }
        }
        SSL_shutdown(ssl);
    } else {
        ERR_print_errors_fp(stderr);
    }
    SSL_free(ssl);
    if (fd >= 0) {
        close(fd);
    }
    SSL_CTX_free(ctx);
    return rc;
}

static int read_pem(const char *dir, const char *name, char *out, size_t cap) {
    char path[512];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (fkd_posix_read_file(path, (uint8_t *)out, cap - 1, &len) != FKD_OK) {
        return -1;
    }
    out[len] = '\0';
    return 0;
}

static struct fkd_ctl ctl;
static struct fkd_ctl_session sessions[SESSIONS];
static uint8_t rx[FKD_CTL_RX_MAX];
static struct fkd_config cfg;
static struct fkd_store store;
static struct fkd_wss wss;
static struct fkd_posture posture;

int main(int argc, char **argv) {
    if (argc != 2) {
        return fail("usage: device_heap CERT_DIR");
    }
    const char *dir = argv[1];
    signal(SIGPIPE, SIG_IGN);

    /* The wss server, listening before anything is measured. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        return fail("wss server socket");
    }
    fflush(stdout);
    pid_t srv = fork();
    if (srv == 0) {
        _exit(tls_server(lfd, dir));
    }
    children[0] = srv;
    close(lfd);
    fkd_log_set(fkd_posix_log, "device_heap", FKD_LOG_WARN); /* why a step failed */

    /* The robot's configuration and credentials (a development build: from the config). */
    fkd_config_init(&cfg);
    snprintf(cfg.wss_uri, sizeof cfg.wss_uri, "wss://127.0.0.1:%u/device",
             (unsigned)ntohs(sa.sin_port));
    snprintf(cfg.expected_host, sizeof cfg.expected_host, "localhost");
    if (read_pem(dir, "ca.pem", cfg.ca_cert_pem, sizeof cfg.ca_cert_pem) != 0 ||
        read_pem(dir, "client.pem", cfg.client_cert_pem, sizeof cfg.client_cert_pem) != 0 ||
        read_pem(dir, "client.key", cfg.client_key_pem, sizeof cfg.client_key_pem) != 0) {
        return fail("reading the certificates");
    }
    fkd_store_init(&store);
    if (fkd_store_load(&store, NULL, &cfg) != FKD_OK) {
        return fail("credential store");
    }

    /* 1. The control listener: its slots reserve their record buffers at setup. */
    long long h0 = heap_get();
    peak_reset();
    struct fkd_ctl_config cc;
    memset(&cc, 0, sizeof cc);
    cc.bind_ip = "127.0.0.1";
    cc.fw_version = "device_heap";
    fkd_ctl_init(&ctl);
    if (fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_CURRENT, (const uint8_t *)identity, sizeof identity - 1,
                        psk, sizeof psk, 1) != FKD_CTL_OK ||
        fkd_ctl_setup(&ctl, &cc, sessions, SESSIONS, rx, sizeof rx) != FKD_CTL_OK) {
        return fail("control listener setup");
    }
    long long h_setup = heap_get();

    /* 2. Both sessions handshake and stay open. */
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0) {
        return fail("pipe");
    }
    pid_t cli = fork();
    if (cli == 0) {
        close(up[0]);
        close(down[1]);
        _exit(dtls_children(fkd_ctl_port(&ctl), up[1], down[0]));
    }
    children[1] = cli;
    close(up[1]);
    close(down[0]);
    fcntl(up[0], F_SETFL, O_NONBLOCK);
    char b = 0;
    for (int i = 0; i < 4000 && b == 0; i++) { /* at most 4000 polls of 5 ms */
        (void)fkd_ctl_poll(&ctl, 5);
        if (read(up[0], &b, 1) != 1) {
            b = 0;
        }
    }
    struct fkd_ctl_stats st;
    fkd_ctl_get_stats(&ctl, &st);
    if (b != '1' || st.active != SESSIONS) {
        return fail("the DTLS sessions did not open");
    }
    long long h_open = heap_get();
    long long peak_dtls = heap_peak;

    /* 3. The wss client connects (TCP, TLS 1.2 mTLS, upgrade, hello) with both open. */
    struct fkd_wss_config wc;
    memset(&wc, 0, sizeof wc);
    wc.store = &store;
    wc.cfg = &cfg;
    struct fkd_policy_input pin = {&store, &cfg, 0};
    fkd_log_set(NULL, NULL, FKD_LOG_ERROR); /* a bench robot has no PSK or Wi-Fi: not news */
    fkd_policy_evaluate(&pin, &posture);    /* what the hello reports */
    fkd_log_set(fkd_posix_log, "device_heap", FKD_LOG_ERROR); /* the close is expected */
    wc.posture = &posture;
    wc.fw_version = "device_heap";
    wc.connect_timeout_ms = 10000;
    wc.max_attempts = 1;
    fkd_wss_init(&wss);
    if (fkd_wss_setup(&wss, &wc) != FKD_OK) {
        return fail("wss setup");
    }
    long long h_wss_setup = heap_get();
    enum fkd_wss_reason why = fkd_wss_connect_and_serve(&wss);
    struct fkd_wss_stats ws;
    fkd_wss_get_stats(&wss, &ws);
    long long peak_all = heap_peak;
    fkd_wss_free(&wss);

    if (write(down[1], &b, 1) != 1) {
        return fail("pipe");
    }
    for (int i = 0; i < 400; i++) { /* the close_notify of the sessions, at most 2 s */
        (void)fkd_ctl_poll(&ctl, 5);
        if (waitpid(cli, NULL, WNOHANG) == cli) {
            cli = -1;
            break;
        }
    }
    if (cli > 0) {
        kill(cli, SIGKILL);
        waitpid(cli, NULL, 0);
    }
    int sst = 0;
    waitpid(srv, &sst, 0); /* bounded: the server's accept and reads time out after 10 s */
    children[0] = children[1] = -1;
    fkd_ctl_free(&ctl);
    fkd_store_free(&store);
    fkd_config_free(&cfg);
    if (ws.connects != 1 || !WIFEXITED(sst) || WEXITSTATUS(sst) != 0) {
        fprintf(stderr, "device_heap: the wss connection did not complete (%s)\n",
                fkd_wss_reason_name(why));
        return 1;
    }
    if (!COUNTING) {
        printf("device_heap: heap not measured (sanitizer build)\n");
        return 0;
    }
    printf("device_heap: Mbed TLS %s, SSL_IN_CONTENT_LEN %d, OUT %d, %d DTLS slots\n",
           MBEDTLS_VERSION_STRING, MBEDTLS_SSL_IN_CONTENT_LEN, MBEDTLS_SSL_OUT_CONTENT_LEN,
           SESSIONS);
    printf("  listener setup       %7lld bytes (%lld per slot)\n", h_setup - h0,
           (h_setup - h0) / SESSIONS);
    printf("  %d sessions open      %7lld bytes live, peak %lld\n", SESSIONS, h_open - h0,
           peak_dtls - h0);
    printf("  + wss client setup   %7lld bytes live (CA, certificate, key parsed)\n",
           h_wss_setup - h0);
    printf("  high-water           %7lld bytes = %.1f KiB (listener, %d sessions open, wss "
           "client through its TLS handshake and upgrade)\n",
           peak_all - h0, (double)(peak_all - h0) / 1024.0, SESSIONS);
    return 0;
}
