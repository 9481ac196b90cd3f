/* tls_floor: OpenSSL's own heap per idle mTLS connection on the server side, measured alone
 * (issue 15's "<= 16 KiB per connection"; not a benchmark by itself: bench_server.sh runs it).
 *
 *   tls_floor --ca CA --crl CRL --cert C --key K --client-cert CC --client-key CK
 *             --conns N [--tls 1.2|1.3] [--sites K] [--cpu 1]
 *   (--crl none: no revocation check at all)
 *
 * Opens N connections in one process over socketpair(2)s, each a server SSL configured as
 * fleetkey-server's (src/server/auth.c fk_srv_setup_tls: TLS 1.2+, no tickets, no session
 * cache, SSL_MODE_RELEASE_BUFFERS, peer verified against CA with its CRL checked, the
 * ECDHE-ECDSA AES-128-GCM suite a robot negotiates) and a client SSL sending only its leaf,
 * as a robot does. Every allocation OpenSSL makes goes through a counting allocator
 * (CRYPTO_set_mem_functions) that charges it to the side whose SSL call made it, so the
 * client's objects are not counted. After all handshakes, with nothing in flight, it prints
 * the server side's live heap per connection: the bytes OpenSSL asked for, and the bytes
 * glibc's malloc holds for them (each request rounded to its 16-byte chunk with header). That is
 * the floor any server on this OpenSSL pays per idle connection before its own WebSocket and
 * session state; the server's VmRSS delta per connection (bench_server.sh) sits on top of it.
 * --sites K also lists the K allocation sites (OpenSSL source file:line) holding the most.
 * --cpu 1 measures CPU instead (no counting allocator): the server thread's CPU time inside
 * SSL_do_handshake over the N full handshakes, printed as handshakes per server CPU-second:
 * what OpenSSL's handshake alone costs, without TCP, an event loop or a WebSocket. */
#define _GNU_SOURCE
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Side charged for allocations: 0 setup/client, 1 server connection. */
static int side;
static long long live_req[2], live_held[2];

/* Each block starts with a 32-byte header: requested size, side, and the allocation site. */
struct hdr {
    size_t size;
    const char *file;
    int side, line;
    long long pad;
};

/* Live server-side bytes by allocation site (OpenSSL passes file and line), for --sites. */
enum { SITES = 1024 };
static struct site {
    const char *file;
    int line;
    long long bytes;
} sites[SITES];

static void site_add(const char *file, int line, long long bytes) {
    size_t i = ((size_t)(uintptr_t)file * 31u + (size_t)line) % SITES;
    for (size_t k = 0; k < SITES; k++, i = (i + 1) % SITES) {
        if (sites[i].file == NULL || (sites[i].file == file && sites[i].line == line)) {
            sites[i].file = file;
            sites[i].line = line;
            sites[i].bytes += bytes;
            return;
        }
    }
}

static int site_cmp(const void *a, const void *b) {
    long long x = ((const struct site *)a)->bytes, y = ((const struct site *)b)->bytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The chunk glibc's malloc carves for a request of n bytes on 64-bit: n plus its 8-byte size
 * field, rounded up to 16, at least 32. */
static long long chunk_of(size_t n) {
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return (long long)(c < 32 ? 32 : c);
}

static void *count_malloc(size_t n, const char *file, int line) {
    struct hdr *h = malloc(sizeof *h + n);
    if (h == NULL)
        return NULL;
    h->size = n;
    h->side = side;
    h->file = file;
    h->line = line;
    live_req[side] += (long long)n;
    live_held[side] += chunk_of(n);
    if (side == 1)
        site_add(file, line, (long long)n);
    return h + 1;
}

static void count_free(void *p, const char *file, int line) {
    (void)file;
    (void)line;
    if (p == NULL)
        return;
    struct hdr *h = (struct hdr *)p - 1;
    if (h->side == 1)
        site_add(h->file, h->line, -(long long)h->size);
    live_req[h->side] -= (long long)h->size;
    live_held[h->side] -= chunk_of(h->size);
    free(h);
}

/* A resized block stays charged to the side that made it. */
static void *count_realloc(void *p, size_t n, const char *file, int line) {
    if (p == NULL)
        return count_malloc(n, file, line);
    struct hdr *old = (struct hdr *)p - 1;
    int saved = side;
    side = old->side;
    void *q = count_malloc(n, old->file, old->line);
    side = saved;
    if (q == NULL)
        return NULL;
    memcpy(q, p, old->size < n ? old->size : n);
    count_free(p, file, line);
    return q;
}

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "tls_floor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static SSL_CTX *server_ctx(const char *ca, const char *crl, const char *cert, const char *key,
                           int tls) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, tls == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256") != 1 ||
        SSL_CTX_set1_groups_list(ctx, "P-256") != 1)
        die("cipher/groups");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 3);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("server CA/cert/key");
    if (strcmp(crl, "none") == 0)
        return ctx; /* the floor without revocation: no CRL signature verified per handshake */
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    if (X509_STORE_load_file(st, crl) != 1)
        die("CRL");
    X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    return ctx;
}

static SSL_CTX *client_ctx(const char *ca, const char *cert, const char *key, int tls) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, tls == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256");
    SSL_CTX_set1_groups_list(ctx, "P-256");
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
        SSL_CTX_use_certificate_file(ctx, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("client CA/cert/key");
    return ctx;
}

/* The server side's live heap per connection, since before the first connection. */
static long long heap_req0, heap_held0;

static void print_heap(long n, int tls) {
    long long req = live_req[1] - heap_req0, held = live_held[1] - heap_held0;
    printf("TLS %s, %ld idle connections: OpenSSL server-side live heap %.2f KiB requested, "
           "%.2f KiB held by glibc per connection (%s)\n",
           tls == 13 ? "1.3" : "1.2", n, (double)req / 1024.0 / (double)n,
           (double)held / 1024.0 / (double)n, OpenSSL_version(OPENSSL_VERSION));
}

/* Setup (both SSL_CTXs) was charged to side 0, so what is left at side 1 is per connection. */
static void print_sites(long n, int k) {
    qsort(sites, SITES, sizeof sites[0], site_cmp);
    for (int i = 0; i < k && i < SITES && sites[i].bytes > 0; i++)
        printf("  %7.0f B  %s:%d\n", (double)sites[i].bytes / (double)n,
               sites[i].file ? sites[i].file : "?", sites[i].line);
}

int main(int argc, char **argv) {
    const char *ca = NULL, *crl = NULL, *cert = NULL, *key = NULL, *ccert = NULL, *ckey = NULL,
               *conns = "0", *tlsv = "1.2", *nsites = "0", *cpuv = "0";
    const struct {
        const char *name, **dst;
    } opt[] = {{"--ca", &ca},       {"--crl", &crl},           {"--cert", &cert},
               {"--key", &key},     {"--client-cert", &ccert}, {"--client-key", &ckey},
               {"--conns", &conns}, {"--tls", &tlsv},          {"--sites", &nsites},
               {"--cpu", &cpuv}};
    for (int i = 1; i < argc; i += 2) {
        size_t k = 0;
        while (k < sizeof opt / sizeof opt[0] && strcmp(argv[i], opt[k].name) != 0)
            k++;
        if (k == sizeof opt / sizeof opt[0] || i + 1 >= argc) {
            fprintf(stderr, "tls_floor: %s option %s\n",
                    k == sizeof opt / sizeof opt[0] ? "unknown" : "no value for", argv[i]);
            return 2;
        }
        *opt[k].dst = argv[i + 1];
    }
    long n = atol(conns);
    int tls = strcmp(tlsv, "1.3") == 0 ? 13 : strcmp(tlsv, "1.2") == 0 ? 12 : 0;
    int show_sites = atoi(nsites), cpu = strcmp(cpuv, "1") == 0;
    if (!ca || !crl || !cert || !key || !ccert || !ckey || n <= 0 || n > 100000 || !tls) {
        fprintf(stderr,
                "usage: tls_floor --ca CA --crl CRL --cert C --key K --client-cert CC "
                "--client-key CK --conns N (1-100000) [--tls 1.2|1.3] [--sites K] [--cpu 1]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if ((rlim_t)(2 * n + 64) > rl.rlim_max) {
            fprintf(stderr, "tls_floor: %ld connections need %ld descriptors, limit %lu\n", n,
                    2 * n + 64, (unsigned long)rl.rlim_max);
            return 1;
        }
    }
    if (!cpu && !CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
        die("CRYPTO_set_mem_functions (must come before any OpenSSL allocation)");
    SSL_CTX *sctx = server_ctx(ca, crl, cert, key, tls);
    SSL_CTX *cctx = client_ctx(ca, ccert, ckey, tls);
    SSL **s = calloc((size_t)n, sizeof *s), **c = calloc((size_t)n, sizeof *c);
    if (s == NULL || c == NULL)
        die("out of memory");
    heap_req0 = live_req[1];
    heap_held0 = live_held[1];
    double server_cpu = 0;
    for (long i = 0; i < n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
            die("socketpair");
        side = 1;
        s[i] = SSL_new(sctx);
        if (s[i] == NULL || SSL_set_fd(s[i], sv[0]) != 1)
            die("server SSL");
        SSL_set_accept_state(s[i]);
        side = 0;
        c[i] = SSL_new(cctx);
        if (c[i] == NULL || SSL_set_fd(c[i], sv[1]) != 1)
            die("client SSL");
        SSL_set_connect_state(c[i]);
        for (int turn = 0, sdone = 0, cdone = 0; !(sdone && cdone); turn++) {
            if (turn > 64)
                die("handshake did not finish");
            side = 0;
            if (!cdone) {
                int r = SSL_do_handshake(c[i]);
                if (r == 1)
                    cdone = 1;
                else if (SSL_get_error(c[i], r) != SSL_ERROR_WANT_READ)
                    die("client handshake");
            }
            side = 1;
            if (!sdone) {
                double t0 = cpu ? thread_cpu_s() : 0;
                int r = SSL_do_handshake(s[i]);
                if (cpu)
                    server_cpu += thread_cpu_s() - t0;
                if (r == 1)
                    sdone = 1;
                else if (SSL_get_error(s[i], r) != SSL_ERROR_WANT_READ)
                    die("server handshake");
            }
        }
        /* TLS 1.3: the server's session state after the client's Finished; read nothing. */
        side = 0;
    }
    if (cpu) {
        printf("TLS %s, %ld full handshakes: OpenSSL server side %.0f per CPU-second (%.3f ms "
               "each, SSL_do_handshake only: no TCP, no event loop) (%s)\n",
               tls == 13 ? "1.3" : "1.2", n, (double)n / server_cpu, server_cpu * 1e3 / (double)n,
               OpenSSL_version(OPENSSL_VERSION));
    } else {
        print_heap(n, tls);
        print_sites(n, show_sites);
    }
    for (long i = 0; i < n; i++) {
        int fds[2] = {SSL_get_fd(s[i]), SSL_get_fd(c[i])};
        SSL_free(s[i]);
        SSL_free(c[i]);
        close(fds[0]);
        close(fds[1]);
    }
    free(s);
    free(c);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return 0;
}
