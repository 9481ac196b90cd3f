/* server_load: the load generator of bench/bench_server.sh (not a benchmark by itself).
 *
 *   server_load hs   --port P --ca CA --cert C --key K --seconds S [--tls 1.2|1.3]
 *                    [--workers W] [--groups G]
 *       Full mTLS handshakes in a loop (new TCP connection, no session reuse, ECDHE on P-256
 *       or the OpenSSL group list G, ECDSA P-256 certificates on both sides; the client sends
 *       exactly the certificates of C), W processes for S seconds. A handshake
 *       counts when the server has judged our certificate: after SSL_connect we send
 *       close_notify and wait for the server to close (in TLS 1.3 the server verifies the
 *       client's certificate after the client has finished). Prints "handshakes N seconds S".
 *   server_load idle --port P --ca CA --cert C --key K --conns N [--hold-file F]
 *                    [--ready-file R] [--timeout S]
 *       Opens N WebSocket connections (TLS + HTTP upgrade to fleetkey.v1), at most 64
 *       handshakes in flight, on one epoll loop; writes R when all are open, then holds them
 *       until F exists (bounded by --timeout) and prints "open N failed M".
 * Client memory stays small: SSL_MODE_RELEASE_BUFFERS, one SSL per connection, no copies. */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned port;
static const char *ca, *cert, *key;
static const char *groups = "P-256"; /* --groups: the key exchange offered */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static SSL_CTX *make_ctx(int tls) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        exit(1);
    }
    SSL_CTX_set_min_proto_version(ctx, tls == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, tls == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256");
    if (SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        fprintf(stderr, "server_load: --groups %s: not a group list OpenSSL knows\n", groups);
        exit(2);
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    /* The client sends what --cert holds and nothing more: without NO_AUTO_CHAIN, a file with
     * only the leaf would get the issuing CA and root added from the verify store. A robot
     * sends its leaf only (bench/fleet_load.c); a chain file sends leaf + issuing CA. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "server_load: cannot load CA/cert/key\n");
        exit(1);
    }
    return ctx;
}

static int tcp(int nonblock) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!nonblock) {
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static long hs_worker(SSL_CTX *ctx, double seconds, long *failed) {
    long n = 0;
    double end = now_s() + seconds;
    *failed = 0;
    while (now_s() < end) {
        int fd = tcp(0);
        if (fd < 0) {
            (*failed)++;
            continue;
        }
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        int ok = SSL_connect(ssl) == 1;
        if (ok) {
            char c;
            SSL_shutdown(ssl);
            /* Wait for the server's verdict: EOF/close_notify when it accepted us and we
             * closed; an alert when it refused (counted as failed). */
            int r = SSL_read(ssl, &c, 1);
            int e = SSL_get_error(ssl, r);
            ok = r <= 0 && (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) &&
                 ERR_peek_error() == 0;
        }
        ERR_clear_error();
        if (ok) {
            n++;
        } else {
            (*failed)++;
        }
        SSL_free(ssl);
        close(fd);
    }
    return n;
}

static int cmd_hs(double seconds, int tls, int workers) {
    int pipes[64][2];
    if (workers < 1 || workers > 64) {
        return 2;
    }
    for (int w = 0; w < workers; w++) {
        if (pipe(pipes[w]) != 0) {
            return 1;
        }
        pid_t pid = fork();
        if (pid == 0) {
            SSL_CTX *ctx = make_ctx(tls);
            long failed = 0;
            long n = hs_worker(ctx, seconds, &failed);
            long out[2] = {n, failed};
            if (write(pipes[w][1], out, sizeof out) != (ssize_t)sizeof out) {
                _exit(1);
            }
            _exit(0);
        }
        close(pipes[w][1]);
    }
    long total = 0, failed = 0;
    for (int w = 0; w < workers; w++) {
        long in[2] = {0, 0};
        if (read(pipes[w][0], in, sizeof in) == (ssize_t)sizeof in) {
            total += in[0];
            failed += in[1];
        }
        close(pipes[w][0]);
        wait(NULL);
    }
    printf("handshakes %ld failed %ld seconds %.1f\n", total, failed, seconds);
    return 0;
}

/* ---- idle connections ------------------------------------------------------------------- */
enum cstate { C_CONNECT, C_TLS, C_UPGRADE, C_RESPONSE, C_OPEN, C_DEAD };
struct conn {
    int fd;
    SSL *ssl;
    enum cstate st;
    unsigned char seen;  /* 1 once the status line was checked */
    unsigned char match; /* how much of "\r\n\r\n" the answer ends with so far */
};

static const char upgrade_req[] =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: fleetkey.v1\r\n\r\n";

static void want(int ep, struct conn *c, int err) {
    struct epoll_event ev;
    ev.events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void kill_conn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    c->st = C_DEAD;
}

/* Advances one connection as far as it goes without blocking. 1 when it became open. */
static int step(int ep, struct conn *c) {
    for (;;) {
        int r, e;
        switch (c->st) {
        case C_CONNECT: {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err != 0) {
                kill_conn(ep, c);
                return 0;
            }
            c->st = C_TLS;
            break;
        }
        case C_TLS:
            r = SSL_connect(c->ssl);
            if (r == 1) {
                c->st = C_UPGRADE;
                break;
            }
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want(ep, c, e);
                return 0;
            }
            kill_conn(ep, c);
            return 0;
        case C_UPGRADE:
            r = SSL_write(c->ssl, upgrade_req, (int)sizeof upgrade_req - 1);
            if (r <= 0) {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    want(ep, c, e);
                    return 0;
                }
                kill_conn(ep, c);
                return 0;
            }
            c->st = C_RESPONSE;
            break;
        case C_RESPONSE: {
            char buf[512];
            r = SSL_read(c->ssl, buf, sizeof buf);
            if (r <= 0) {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    want(ep, c, e);
                    return 0;
                }
                kill_conn(ep, c);
                return 0;
            }
            if (!c->seen && (r < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0)) {
                kill_conn(ep, c);
                return 0;
            }
            c->seen = 1;
            static const char end[] = "\r\n\r\n";
            for (int i = 0; i < r; i++) {
                unsigned m = c->match;
                m = buf[i] == end[m] ? m + 1 : (buf[i] == '\r' ? 1 : 0);
                c->match = (unsigned char)m;
                if (m == 4) {
                    c->st = C_OPEN;
                    want(ep, c, SSL_ERROR_WANT_READ);
                    return 1;
                }
            }
            break;
        }
        case C_OPEN: {
            char buf[256];
            r = SSL_read(c->ssl, buf, sizeof buf);
            if (r > 0) {
                break; /* a server message: read and ignore */
            }
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                return 0;
            }
            kill_conn(ep, c);
            return -1; /* an open connection was closed */
        }
        case C_DEAD:
        default:
            return 0;
        }
    }
}

static int cmd_idle(long n, const char *hold, const char *ready, unsigned timeout_s) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = (rlim_t)n + 64 < rl.rlim_max ? (rlim_t)n + 64 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)n + 64) {
            fprintf(stderr, "server_load: descriptor limit %llu is too low for %ld\n",
                    (unsigned long long)rl.rlim_cur, n);
            return 1;
        }
    }
    SSL_CTX *ctx = make_ctx(0);
    struct conn *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(0);
    long started = 0, open = 0, dead = 0, inflight = 0;
    double deadline = now_s() + timeout_s;
    struct epoll_event evs[256];
    while (open + dead < n && now_s() < deadline) {
        while (inflight < 64 && started < n) {
            struct conn *c = &cs[started++];
            c->fd = tcp(1);
            if (c->fd < 0) {
                c->st = C_DEAD;
                dead++;
                continue;
            }
            c->ssl = SSL_new(ctx);
            SSL_set_fd(c->ssl, c->fd);
            c->st = C_CONNECT;
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            inflight++;
        }
        int k = epoll_wait(ep, evs, 256, 1000);
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            enum cstate before = c->st;
            int r = step(ep, c);
            if (r == 1) {
                open++;
                inflight--;
            } else if (r == -1) {
                open--;
                dead++;
            } else if (c->st == C_DEAD && before != C_OPEN) {
                dead++;
                inflight--;
            }
        }
    }
    fprintf(stderr, "server_load: %ld open, %ld failed\n", open, dead);
    if (ready != NULL) {
        FILE *f = fopen(ready, "w");
        if (f != NULL) {
            fprintf(f, "%ld\n", open);
            fclose(f);
        }
    }
    /* Hold: keep answering reads until the hold file appears. */
    struct stat sb;
    while (hold != NULL && stat(hold, &sb) != 0 && now_s() < deadline + timeout_s) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            if (step(ep, evs[i].data.ptr) == -1) {
                open--;
                dead++;
            }
        }
    }
    printf("open %ld failed %ld\n", open, dead);
    for (long i = 0; i < started; i++) {
        if (cs[i].st != C_DEAD) {
            kill_conn(ep, &cs[i]);
        }
    }
    free(cs);
    close(ep);
    SSL_CTX_free(ctx);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: server_load hs|idle --port P --ca CA --cert C --key K ...\n");
        return 2;
    }
    const char *mode = argv[1];
    double seconds = 5;
    int tls = 12, workers = 1;
    long conns = 1000;
    const char *hold = NULL, *ready = NULL;
    unsigned timeout_s = 600;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--port") == 0) {
            port = (unsigned)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--ca") == 0) {
            ca = v;
        } else if (strcmp(a, "--cert") == 0) {
            cert = v;
        } else if (strcmp(a, "--key") == 0) {
            key = v;
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = strtod(v, NULL);
        } else if (strcmp(a, "--tls") == 0) {
            tls = strcmp(v, "1.3") == 0 ? 13 : 12;
        } else if (strcmp(a, "--groups") == 0) {
            groups = v;
        } else if (strcmp(a, "--workers") == 0) {
            workers = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--conns") == 0) {
            conns = strtol(v, NULL, 10);
        } else if (strcmp(a, "--hold-file") == 0) {
            hold = v;
        } else if (strcmp(a, "--ready-file") == 0) {
            ready = v;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout_s = (unsigned)strtoul(v, NULL, 10);
        }
    }
    if (port == 0 || ca == NULL || cert == NULL || key == NULL) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(mode, "hs") == 0) {
        return cmd_hs(seconds, tls, workers);
    }
    if (strcmp(mode, "idle") == 0 && conns > 0) {
        return cmd_idle(conns, hold, ready, timeout_s);
    }
    return 2;
}
