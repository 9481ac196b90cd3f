/* fleet_load: the fleet-scale load client of bench/bench_server.sh (not a benchmark by itself).
 *
 *   fleet_load prep --keys DIR --out FILE
 *       Reads every DIR/<id>.nvs.bin that `provision-keys batch --ca` wrote (plain images),
 *       takes each device's mTLS certificate and private key from NVS namespace "mtls" (what
 *       the robot reads at boot) and writes them to FILE (0600: it holds private keys) as
 *       records "u16 cert_len, u16 key_len, cert DER, key DER". Prints "creds N".
 *   fleet_load hold --port P --ca CA --creds FILE --conns N [--procs K] [--addrs A]
 *                   [--inflight M] [--ready-file R] [--storm-file S] [--hold-file H]
 *                   [--timeout T] [--reconnect] [--tls-max 1.2|1.3]
 *       Opens N WebSocket connections (TLS with device i's own certificate, HTTP upgrade to
 *       fleetkey.v1), device i = credential i, from K processes (each takes N/K of them, so each
 *       stays inside its descriptor limit, which it raises to its hard limit), bound to A
 *       loopback source addresses 127.1.0.1... (about 28,000 ephemeral ports per source
 *       address and server port), at most M handshakes in flight per process, non-blocking
 *       OpenSSL over epoll. Writes R ("open N") when all are open, or when no connection opened
 *       for 30 s. Then holds them until H exists or T seconds passed. With --reconnect a
 *       connection the server closes is opened again at once (failed attempts retry after
 *       100 ms): after a server restart, S gets the seconds from the first close until all N
 *       were open again. --tls-max 1.2 caps the version at TLS 1.2, what a robot's mbedTLS 2.28
 *       negotiates (default: TLS 1.3 when the server offers it). Prints "open N failed F ...",
 *       the opening rate and the client RSS.
 * Per connection the client keeps 16 bytes plus OpenSSL's SSL object (SSL_MODE_RELEASE_BUFFERS:
 * no record buffers while idle); the certificate and key are decoded from the mapped file for
 * each handshake and owned by that SSL only. */
#include "fleetkey/common.h"
#include "fleetkey/nvs.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64
#define RETRY_NS 100000000LL /* a failed attempt is retried after 100 ms */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- prep: credentials out of the NVS images -------------------------------------------- */

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_prep(const char *dir, const char *out) {
    int rc = 1;
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0, blen = 0, bcap = 0;
    uint8_t *buf = NULL;
    struct fk_diag diag;
    fk_diag_init(&diag);
    if (d == NULL) {
        fprintf(stderr, "fleet_load: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l <= 8 || strcmp(e->d_name + l - 8, ".nvs.bin") != 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **nn = realloc(names, cap * sizeof *names);
            if (nn == NULL) {
                goto out;
            }
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n++] == NULL) {
            goto out;
        }
    }
    qsort(names, n, sizeof *names, name_cmp); /* device i is the same device in every run */
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        uint8_t *img = NULL;
        size_t len = 0;
        struct fk_nvs_image *im = NULL;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (fk_file_read(path, 1u << 20, &img, &len, &diag) != FK_OK ||
            fk_nvs_image_read(img, len, &im) != FK_OK) {
            fprintf(stderr, "fleet_load: %s: not a readable plain NVS image (%s)\n", path,
                    diag.msg);
            fk_free_secret(img, len);
            fk_nvs_image_free(im);
            goto out;
        }
        fk_free_secret(img, len);
        const struct fk_nvs_item *c = fk_nvs_image_find(im, "mtls", "client_cert");
        const struct fk_nvs_item *k = fk_nvs_image_find(im, "mtls", "client_key");
        if (c == NULL || k == NULL || c->len > 0xffff || k->len > 0xffff) {
            fprintf(stderr,
                    "fleet_load: %s: no mtls/client_cert and client_key (minted "
                    "without --ca?)\n",
                    path);
            fk_nvs_image_free(im);
            goto out;
        }
        size_t need = 4 + c->len + k->len;
        if (blen + need > bcap) {
            size_t nc = (bcap + need) * 2;
            uint8_t *nb = malloc(nc);
            if (nb == NULL) {
                fk_nvs_image_free(im);
                goto out;
            }
            if (buf != NULL) {
                memcpy(nb, buf, blen);
                fk_free_secret(buf, bcap);
            }
            buf = nb;
            bcap = nc;
        }
        uint8_t *p = buf + blen;
        p[0] = (uint8_t)(c->len >> 8);
        p[1] = (uint8_t)c->len;
        p[2] = (uint8_t)(k->len >> 8);
        p[3] = (uint8_t)k->len;
        memcpy(p + 4, c->data, c->len);
        memcpy(p + 4 + c->len, k->data, k->len);
        blen += need;
        fk_nvs_image_free(im);
    }
    if (fk_file_write_atomic(out, buf, blen, 0600, 0, &diag) != FK_OK) {
        fprintf(stderr, "fleet_load: %s\n", diag.msg);
        goto out;
    }
    printf("creds %zu\n", n);
    rc = 0;
out:
    if (buf != NULL) {
        fk_free_secret(buf, bcap);
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    closedir(d);
    return rc;
}

/* ---- hold: N connections ---------------------------------------------------------------- */

/* Shared between the processes (MAP_SHARED): what the parent reports. */
struct shared {
    atomic_long open;        /* connections open now */
    atomic_long opened;      /* times a connection became open */
    atomic_long failed;      /* attempts that failed before the upgrade answer */
    atomic_llong first_drop; /* CLOCK_MONOTONIC ns of the first close of an open one, 0 */
    atomic_int stop;
};

enum cstate { C_WAIT, C_CONNECT, C_TLS, C_UPGRADE, C_RESPONSE, C_OPEN };
struct conn { /* 16 bytes + the SSL */
    SSL *ssl;
    int fd;
    uint8_t st;
    uint8_t seen;  /* the status line was checked */
    uint8_t match; /* how much of "\r\n\r\n" the answer ends with so far */
};

struct loop {
    struct shared *sh;
    SSL_CTX *ctx;
    const uint8_t *creds;
    const uint32_t *off; /* record offsets in creds */
    struct conn *cs;
    long first, n; /* this process serves devices first .. first + n - 1 */
    int ep, reconnect;
    unsigned port, addrs, inflight_max;
    long inflight;
    /* FIFO of connections to (re)start with the time they are due (nondecreasing) */
    long *q;
    int64_t *due;
    long qh, qn;
};

static const char upgrade_req[] =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: fleetkey.v1\r\n\r\n";

static void enqueue(struct loop *L, long i, int64_t due) {
    long t = (L->qh + L->qn) % L->n;
    L->q[t] = i;
    L->due[t] = due;
    L->qn++;
}

static void want(struct loop *L, struct conn *c, int err) {
    struct epoll_event ev = {.events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN,
                             .data.u64 = (uint64_t)(c - L->cs)};
    epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Ends an attempt or an open connection; queues it again when it is to come back. */
static void drop(struct loop *L, struct conn *c) {
    int was_open = c->st == C_OPEN;
    epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    c->st = C_WAIT;
    if (was_open) {
        long long zero = 0;
        atomic_fetch_sub(&L->sh->open, 1);
        atomic_compare_exchange_strong(&L->sh->first_drop, &zero, (long long)now_ns());
        if (L->reconnect) {
            enqueue(L, c - L->cs, 0);
        }
        return;
    }
    L->inflight--;
    atomic_fetch_add(&L->sh->failed, 1);
    enqueue(L, c - L->cs, now_ns() + RETRY_NS);
}

static int start(struct loop *L, long i) {
    struct conn *c = &L->cs[i];
    long dev = L->first + i;
    const uint8_t *r = L->creds + L->off[dev];
    size_t cl = (size_t)r[0] << 8 | r[1], kl = (size_t)r[2] << 8 | r[3];
    const unsigned char *cp = r + 4, *kp = r + 4 + cl;
    X509 *x = d2i_X509(NULL, &cp, (long)cl);
    EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &kp, (long)kl);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f010001u + (uint32_t)(dev % L->addrs)); /* 127.1.0.1 + */
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    dst.sin_port = htons((uint16_t)L->port);
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    c->ssl = SSL_new(L->ctx);
    c->seen = c->match = 0;
    /* IP_BIND_ADDRESS_NO_PORT: the port is picked at connect, per 4-tuple, so each source
     * address has its own ephemeral range. */
    int ok = x != NULL && k != NULL && c->fd >= 0 && c->ssl != NULL &&
             setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 &&
             setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) == 0 &&
             bind(c->fd, (struct sockaddr *)&src, sizeof src) == 0 &&
             (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) == 0 || errno == EINPROGRESS) &&
             SSL_use_certificate(c->ssl, x) == 1 && SSL_use_PrivateKey(c->ssl, k) == 1 &&
             SSL_set_fd(c->ssl, c->fd) == 1;
    X509_free(x);
    EVP_PKEY_free(k);
    if (!ok) {
        if (c->fd < 0 && errno == EMFILE) {
            fprintf(stderr, "fleet_load: out of descriptors\n");
        }
        SSL_free(c->ssl);
        if (c->fd >= 0) {
            close(c->fd);
        }
        c->ssl = NULL;
        c->fd = -1;
        atomic_fetch_add(&L->sh->failed, 1);
        enqueue(L, i, now_ns() + RETRY_NS);
        return -1;
    }
    c->st = C_CONNECT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
    epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev);
    L->inflight++;
    return 0;
}

/* After an SSL call on c returned r (failure or would-block): waits for the socket event it
 * needs, or ends the attempt. */
static void wait_or_drop(struct loop *L, struct conn *c, int r) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        want(L, c, e);
        return;
    }
    ERR_clear_error();
    drop(L, c);
}

/* Advances one connection as far as it goes without blocking. */
static void step(struct loop *L, struct conn *c) {
    for (;;) {
        int r;
        char buf[512];
        switch (c->st) {
        case C_CONNECT: {
            int err = 0;
            socklen_t l = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0 || err != 0) {
                drop(L, c);
                return;
            }
            c->st = C_TLS;
            break;
        }
        case C_TLS:
            r = SSL_connect(c->ssl);
            if (r != 1) {
                wait_or_drop(L, c, r);
                return;
            }
            c->st = C_UPGRADE;
            break;
        case C_UPGRADE:
            r = SSL_write(c->ssl, upgrade_req, (int)sizeof upgrade_req - 1);
            if (r <= 0) {
                wait_or_drop(L, c, r);
                return;
            }
            c->st = C_RESPONSE;
            break;
        case C_RESPONSE:
        case C_OPEN:
            r = SSL_read(c->ssl, buf, sizeof buf);
            if (r <= 0) {
                wait_or_drop(L, c, r); /* would block; or refused, or closed by the server */
                return;
            }
            if (c->st == C_OPEN) {
                break; /* a server message (close frame, ping): read and ignore */
            }
            if (!c->seen && (r < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0)) {
                drop(L, c);
                return;
            }
            c->seen = 1;
            for (int i = 0; i < r && c->st == C_RESPONSE; i++) {
                static const char end[] = "\r\n\r\n";
                unsigned m = c->match;
                m = buf[i] == end[m] ? m + 1 : (buf[i] == '\r' ? 1 : 0);
                c->match = (uint8_t)m;
                if (m == 4) {
                    c->st = C_OPEN;
                    L->inflight--;
                    atomic_fetch_add(&L->sh->open, 1);
                    atomic_fetch_add(&L->sh->opened, 1);
                }
            }
            break;
        case C_WAIT:
        default:
            return;
        }
    }
}

static void run_loop(struct loop *L) {
    struct epoll_event evs[256];
    L->ep = epoll_create1(0);
    for (long i = 0; i < L->n; i++) {
        L->cs[i].fd = -1;
        enqueue(L, i, 0);
    }
    while (!atomic_load(&L->sh->stop)) {
        int64_t t = now_ns();
        while (L->qn > 0 && L->inflight < (long)L->inflight_max && L->due[L->qh] <= t) {
            long i = L->q[L->qh];
            L->qh = (L->qh + 1) % L->n;
            L->qn--;
            start(L, i);
        }
        int wait_ms = 100;
        if (L->qn > 0 && L->inflight < (long)L->inflight_max) {
            int64_t d = (L->due[L->qh] - t) / 1000000;
            wait_ms = d < 0 ? 0 : (d < 100 ? (int)d + 1 : 100);
        }
        int k = epoll_wait(L->ep, evs, 256, wait_ms);
        for (int i = 0; i < k; i++) {
            step(L, &L->cs[evs[i].data.u64]);
        }
    }
    for (long i = 0; i < L->n; i++) {
        if (L->cs[i].ssl != NULL) {
            SSL_free(L->cs[i].ssl);
            close(L->cs[i].fd);
        }
    }
    close(L->ep);
}

static long rss_kib(pid_t pid) {
    char path[64], line[256];
    long v = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", &v) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return v;
}

static void write_line(const char *path, const char *v) {
    FILE *f = path != NULL ? fopen(path, "w") : NULL;
    if (f != NULL) {
        fprintf(f, "%s\n", v);
        fclose(f);
    }
}

struct hold_opts {
    unsigned port, addrs, inflight, procs, timeout;
    long n;
    int reconnect;
    int tls_max; /* TLS1_2_VERSION or TLS1_3_VERSION */
    const char *ca, *creds, *ready, *storm, *hold;
};

static int cmd_hold(const struct hold_opts *o) {
    int fd = open(o->creds, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size == 0) {
        fprintf(stderr, "fleet_load: %s: cannot read credentials\n", o->creds);
        return 1;
    }
    const uint8_t *creds = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (creds == MAP_FAILED) {
        return 1;
    }
    /* Index the records; a record that runs past the end is a damaged file. */
    uint32_t *off = malloc((size_t)o->n * sizeof *off);
    size_t pos = 0, size = (size_t)sb.st_size;
    long have = 0;
    while (off != NULL && have < o->n && pos + 4 <= size) {
        size_t l = 4 + ((size_t)creds[pos] << 8 | creds[pos + 1]) +
                   ((size_t)creds[pos + 2] << 8 | creds[pos + 3]);
        if (pos + l > size) {
            fprintf(stderr, "fleet_load: %s: record %ld truncated\n", o->creds, have);
            return 1;
        }
        off[have++] = (uint32_t)pos;
        pos += l;
    }
    if (have < o->n) {
        fprintf(stderr, "fleet_load: %s holds %ld devices, %ld asked\n", o->creds, have, o->n);
        return 1;
    }
    /* Each process raises its descriptor limit as far as the hard limit lets it. */
    struct rlimit rl;
    long per = (o->n + o->procs - 1) / o->procs;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if ((long)rl.rlim_cur < per + 32) {
            fprintf(stderr,
                    "fleet_load: descriptor limit %llu (hard) is below %ld per process: use "
                    "--procs %ld or more\n",
                    (unsigned long long)rl.rlim_cur, per + 32,
                    (o->n + (long)rl.rlim_cur - 33) / ((long)rl.rlim_cur - 32));
            return 1;
        }
    }
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        return 1;
    }
    memset(sh, 0, sizeof *sh);
    pid_t pids[MAX_PROCS];
    int64_t t0 = now_ns();
    for (unsigned p = 0; p < o->procs; p++) {
        long first = (long)p * o->n / o->procs, last = (long)(p + 1) * o->n / o->procs;
        pids[p] = fork();
        if (pids[p] == 0) {
            struct loop L;
            memset(&L, 0, sizeof L);
            L.sh = sh;
            L.creds = creds;
            L.off = off;
            L.first = first;
            L.n = last - first;
            L.port = o->port;
            L.addrs = o->addrs;
            L.inflight_max = o->inflight;
            L.reconnect = o->reconnect;
            L.cs = calloc((size_t)L.n, sizeof *L.cs);
            L.q = malloc((size_t)L.n * sizeof *L.q);
            L.due = malloc((size_t)L.n * sizeof *L.due);
            L.ctx = SSL_CTX_new(TLS_client_method());
            if (L.cs == NULL || L.q == NULL || L.due == NULL || L.ctx == NULL ||
                SSL_CTX_load_verify_locations(L.ctx, o->ca, NULL) != 1) {
                fprintf(stderr, "fleet_load: cannot set up (memory, or CA %s)\n", o->ca);
                _exit(1);
            }
            SSL_CTX_set_min_proto_version(L.ctx, TLS1_2_VERSION);
            SSL_CTX_set_max_proto_version(L.ctx, o->tls_max);
            SSL_CTX_set_session_cache_mode(L.ctx, SSL_SESS_CACHE_OFF);
            SSL_CTX_set_options(L.ctx, SSL_OP_NO_TICKET);
            /* A robot sends only its certificate (NVS mtls/client_cert is the leaf); without
             * NO_AUTO_CHAIN OpenSSL would add the issuing CA and the root from the verify
             * store, and the server would keep three parsed certificates per connection. */
            SSL_CTX_set_mode(L.ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
            SSL_CTX_set_verify(L.ctx, SSL_VERIFY_PEER, NULL);
            if (L.n > 0) {
                run_loop(&L);
            }
            _exit(0);
        }
    }
    /* Parent: report. */
    long last_open = -1;
    int64_t last_change = now_ns(), ready_at = 0, back_at = 0;
    int64_t deadline = t0 + (int64_t)o->timeout * 1000000000LL;
    struct stat hs;
    for (;;) {
        int64_t t = now_ns();
        long open = atomic_load(&sh->open);
        if (open != last_open) {
            last_open = open;
            last_change = t;
        }
        if (ready_at == 0 && (open == o->n || t - last_change > 30000000000LL)) {
            ready_at = t;
            long rss = 0;
            for (unsigned p = 0; p < o->procs; p++) {
                rss += rss_kib(pids[p]);
            }
            printf("opened %ld of %ld in %.2f s (%.0f connections/s), failed attempts %ld, "
                   "client RSS %ld KiB (%.1f KiB per connection)\n",
                   open, o->n, (double)(t - t0) / 1e9, (double)open * 1e9 / (double)(t - t0),
                   atomic_load(&sh->failed), rss, open > 0 ? (double)rss / (double)open : 0.0);
            fflush(stdout);
            char v[32];
            snprintf(v, sizeof v, "%ld", open);
            write_line(o->ready, v);
        }
        long long drop = atomic_load(&sh->first_drop);
        if (ready_at != 0 && drop != 0 && back_at == 0 && open == o->n) {
            back_at = t;
            double s = (double)(t - drop) / 1e9;
            printf("reconnect storm: all %ld back %.2f s after the first close (%.0f "
                   "connections/s), failed attempts so far %ld\n",
                   o->n, s, (double)o->n / s, atomic_load(&sh->failed));
            fflush(stdout);
            char v[32];
            snprintf(v, sizeof v, "%.2f", s);
            write_line(o->storm, v);
        }
        if (t > deadline || (o->hold != NULL && stat(o->hold, &hs) == 0) ||
            (o->hold == NULL && ready_at != 0 && (!o->reconnect || back_at != 0))) {
            break;
        }
        usleep(20000);
    }
    printf("open %ld failed %ld\n", atomic_load(&sh->open), atomic_load(&sh->failed));
    atomic_store(&sh->stop, 1);
    int bad = 0;
    for (unsigned p = 0; p < o->procs; p++) {
        int st = 0;
        waitpid(pids[p], &st, 0);
        bad |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    free(off);
    return bad || last_open != o->n;
}

int main(int argc, char **argv) {
    struct hold_opts o = {.addrs = 0,
                          .inflight = 32,
                          .procs = 1,
                          .timeout = 600,
                          .n = 1000,
                          .tls_max = TLS1_3_VERSION};
    const char *keys = NULL, *out = NULL;
    if (argc < 2) {
        fprintf(stderr, "usage: fleet_load prep --keys DIR --out FILE | hold --port P --ca CA "
                        "--creds FILE --conns N ...\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--reconnect") == 0) {
            o.reconnect = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "fleet_load: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--port") == 0) {
            o.port = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--ca") == 0) {
            o.ca = v;
        } else if (strcmp(a, "--creds") == 0) {
            o.creds = v;
        } else if (strcmp(a, "--conns") == 0) {
            o.n = strtol(v, NULL, 10);
        } else if (strcmp(a, "--procs") == 0) {
            o.procs = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--addrs") == 0) {
            o.addrs = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--inflight") == 0) {
            o.inflight = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--ready-file") == 0) {
            o.ready = v;
        } else if (strcmp(a, "--storm-file") == 0) {
            o.storm = v;
        } else if (strcmp(a, "--hold-file") == 0) {
            o.hold = v;
        } else if (strcmp(a, "--timeout") == 0) {
            o.timeout = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--tls-max") == 0 &&
                   (strcmp(v, "1.2") == 0 || strcmp(v, "1.3") == 0)) {
            o.tls_max = strcmp(v, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
        } else if (strcmp(a, "--keys") == 0) {
            keys = v;
        } else if (strcmp(a, "--out") == 0) {
            out = v;
        } else {
            fprintf(stderr, "fleet_load: unknown option %s\n", a);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[1], "prep") == 0 && keys != NULL && out != NULL) {
        return cmd_prep(keys, out);
    }
    if (strcmp(argv[1], "hold") != 0 || o.port == 0 || o.port > 65535 || o.ca == NULL ||
        o.creds == NULL || o.n < 1 || o.procs < 1 || o.procs > MAX_PROCS || o.inflight < 1) {
        fprintf(stderr, "fleet_load: bad arguments (see the comment at the top of "
                        "bench/fleet_load.c)\n");
        return 2;
    }
    if (o.addrs == 0) {
        o.addrs = (unsigned)(o.n / 10000 + 1); /* 10,000 per source address: ports to spare */
    }
    return cmd_hold(&o);
}
