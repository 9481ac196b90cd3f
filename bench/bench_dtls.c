/* bench_dtls: what one control listener (fkd_ctl) costs on loopback.
 *
 *   1. handshakes/s: a client process runs sequential DTLS-PSK handshakes (+ one ping each,
 *      then close_notify) against the listener, which runs alone in this process;
 *   2. heap: Debian's Mbed TLS has no MBEDTLS_MEMORY_BUFFER_ALLOC_C / MBEDTLS_PLATFORM_MEMORY,
 *      so this program interposes malloc/calloc/realloc/free (forwarding to glibc's __libc_*)
 *      and counts live bytes (malloc_usable_size) and the peak. The clients live in a forked
 *      process, so only the listener's allocations are counted. Reported: bytes reserved at
 *      setup per session slot, the peak during handshakes, and the peak with N sessions open.
 * Figures only; nothing here asserts on time. Under ASan the counting allocator is off (ASan
 * owns malloc) and only the rate is printed. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/version.h>

#include "fkd/ctl.h"
#include "fkd/dtls_client.h"
#include "fkd/net.h"

#define N_SESSIONS 8
#define N_HANDSHAKES 2000

#include "heap_count.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const uint8_t psk[32] = {0x5a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
                                0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};
static const char identity[] = "robot-BE0C4BE0C4BE";

static int one_client(struct fkd_dtls_client *c, uint16_t port, mbedtls_ctr_drbg_context *drbg) {
    uint8_t resp[64];
    size_t n = 0;
    fkd_dtls_client_init(c);
    if (fkd_dtls_client_setup(c, "127.0.0.1", port, (const uint8_t *)identity,
                              sizeof identity - 1, psk, sizeof psk, 5000, drbg) != FKD_CTL_OK ||
        fkd_dtls_client_handshake(c) != FKD_CTL_OK ||
        fkd_dtls_client_request(c, (const uint8_t *)"ping\n", 5, resp, sizeof resp, &n) !=
            FKD_CTL_OK ||
        n < 4 || memcmp(resp, "pong", 4) != 0) {
        return -1;
    }
    return 0;
}

static int drbg_entropy(void *p, unsigned char *out, size_t len) {
    size_t olen = 0;
    return fkd_net_entropy(p, out, len, &olen) == 0 && olen == len ? 0 : -1;
}

/* The client process: N_HANDSHAKES sequential sessions, then N_SESSIONS held open together. */
static int client_main(uint16_t port, int to_parent, int from_parent) {
    static struct fkd_dtls_client clients[N_SESSIONS];
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, drbg_entropy, NULL, NULL, 0) != 0) {
        return 1;
    }
    int fails = 0;
    for (int i = 0; i < N_HANDSHAKES; i++) {
        if (one_client(&clients[0], port, &drbg) != 0) {
            fails++;
        }
        fkd_dtls_client_close(&clients[0]);
        fkd_dtls_client_free(&clients[0]);
    }
    char b = fails ? 'F' : '1';
    if (write(to_parent, &b, 1) != 1) {
        return 1;
    }
    for (int i = 0; i < N_SESSIONS; i++) {
        if (one_client(&clients[i], port, &drbg) != 0) {
            fails++;
        }
    }
    b = fails ? 'F' : '2';
    if (write(to_parent, &b, 1) != 1 || read(from_parent, &b, 1) != 1) {
        return 1;
    }
    for (int i = 0; i < N_SESSIONS; i++) {
        fkd_dtls_client_close(&clients[i]);
        fkd_dtls_client_free(&clients[i]);
    }
    mbedtls_ctr_drbg_free(&drbg);
    return fails ? 1 : 0;
}

static struct fkd_ctl ctl;
static struct fkd_ctl_session sessions[N_SESSIONS];
static uint8_t rx[FKD_CTL_RX_MAX];

int main(void) {
    struct fkd_ctl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.bind_ip = "127.0.0.1";
    cfg.fw_version = "bench";
    cfg.idle_timeout_ms = 60000;

    fkd_ctl_init(&ctl);
    if (fkd_ctl_set_psk(&ctl, FKD_CTL_SLOT_CURRENT, (const uint8_t *)identity,
                        sizeof identity - 1, psk, sizeof psk, 1) != FKD_CTL_OK) {
        return 1;
    }
    long long h0 = heap_get();
    if (fkd_ctl_setup(&ctl, &cfg, sessions, N_SESSIONS, rx, sizeof rx) != FKD_CTL_OK) {
        fprintf(stderr, "bench_dtls: setup failed\n");
        return 1;
    }
    long long h1 = heap_get();
    uint16_t port = fkd_ctl_port(&ctl);

    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0) {
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        return 1;
    }
    if (pid == 0) {
        close(up[0]);
        close(down[1]);
        _exit(client_main(port, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    fcntl(up[0], F_SETFL, O_NONBLOCK);

    double t0 = now_s(), t1 = 0;
    long long peak_hs = 0, peak_open = 0, heap_open = 0;
    int phase = 0;
    peak_reset();
    /* Bounded: at most 200000 polls of at most 5 ms, and the child's own time-outs. */
    for (int i = 0; i < 200000 && phase < 3; i++) {
        if (fkd_ctl_poll(&ctl, 5) < 0) {
            break;
        }
        char b;
        if (read(up[0], &b, 1) != 1) {
            continue;
        }
        if (b == 'F') {
            fprintf(stderr, "bench_dtls: a client failed\n");
            phase = 4;
            break;
        }
        if (b == '1') {
            t1 = now_s();
            peak_hs = heap_peak;
            phase = 1;
            peak_reset();
        } else if (b == '2') {
            peak_open = heap_peak;
            heap_open = heap_get();
            phase = 3;
            if (write(down[1], &b, 1) != 1) {
                break;
            }
        }
    }
    /* Serve the close_notify of the held sessions while the child exits. */
    for (int i = 0; i < 200; i++) {
        fkd_ctl_poll(&ctl, 5);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            break;
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    struct fkd_ctl_stats st;
    fkd_ctl_get_stats(&ctl, &st);
    fkd_ctl_free(&ctl);
    if (phase != 3 || t1 <= t0) {
        fprintf(stderr, "bench_dtls: run incomplete (phase %d)\n", phase);
        return 1;
    }

    printf("bench_dtls: Mbed TLS %s, MBEDTLS_SSL_IN_CONTENT_LEN %d, OUT %d, %d session slots\n",
           MBEDTLS_VERSION_STRING, MBEDTLS_SSL_IN_CONTENT_LEN, MBEDTLS_SSL_OUT_CONTENT_LEN,
           N_SESSIONS);
    printf("handshakes: %d sequential DTLS 1.2 PSK handshakes (+ping, close) in %.3f s = "
           "%.0f handshakes/s (one listener, loopback, client in another process)\n",
           N_HANDSHAKES, t1 - t0, N_HANDSHAKES / (t1 - t0));
    printf("sessions: ok=%u failed=%u hello_verify=%u hwm=%u\n", st.handshakes_ok,
           st.handshakes_failed, st.hello_verify_sent, st.active_hwm);
    if (COUNTING) {
        printf("heap: reserved at setup: %lld bytes for %d slots = %lld bytes/session\n", h1 - h0,
               N_SESSIONS, (h1 - h0) / N_SESSIONS);
        printf("heap: peak during sequential handshakes: %lld bytes (%lld above setup = one "
               "handshake's transient state)\n",
               peak_hs - h0, peak_hs - h1);
        printf("heap: with %d sessions open: %lld bytes live, peak %lld = %lld bytes/session "
               "peak\n",
               N_SESSIONS, heap_open - h0, peak_open - h0, (peak_open - h0) / N_SESSIONS);
    } else {
        printf("heap: not measured (sanitizer build)\n");
    }
    return 0;
}
