/* fleetctl dashboard --listen 127.0.0.1:PORT: the fleet dashboard in a browser, through a
 * local proxy (like `kubectl proxy`).
 *
 * fleetkey-server serves the page and its API to operator certificates only, and a browser
 * cannot easily present one. This command listens on a loopback address only, speaks plain
 * HTTP to the browser, and forwards GET /dashboard[/...] and GET /api/... to the server, each
 * over a fresh mTLS connection with the operator identity of --p12 (https.c), verifying the
 * server against --ca. Nothing else is forwarded: other methods get 405, other paths 404, a
 * Host that is not the address we listen on 403 (dash_req.c says exactly what passes). Anyone
 * who can reach the port reads the fleet as this operator, which is why it is loopback only.
 *
 * One thread: poll() over the listening socket and the browsers' connections, each read into
 * a bounded buffer until its request head is complete; then the upstream request (bounded by
 * --timeout), the answer, and the connection is closed. An idle connection (a browser's
 * preconnect) costs a slot, never a wait. SIGINT/SIGTERM end it with exit status 0. */
#include "dash_req.h"
#include "https.h"
#include "server_cmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS_MAX 32
#define IDLE_S 30 /* a browser connection without a complete request for this long is closed */

/* The headers of every answer: nothing cached, nothing sniffed, and for the page the same
 * policy the server sends (the proxy does not pass the server's headers on). */
#define DASH_HEADERS                                                                               \
    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"                               \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "                \
    "form-action 'none'\r\nConnection: close\r\n"

struct client {
    int fd; /* -1: free */
    time_t since;
    size_t len;
    char buf[FLEETCTL_DASH_HEAD_MAX];
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

int fleetctl_dashboard_parse(int argc, char **argv, struct fleetctl_dash_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            a->listen = argv[++i];
        } else {
            fprintf(stderr,
                    "fleetctl dashboard: unexpected argument '%s' (expected --listen "
                    "127.0.0.1:PORT)\n",
                    argv[i]);
            return 2;
        }
    }
    if (a->listen == NULL) {
        fprintf(stderr, "fleetctl dashboard: --listen 127.0.0.1:PORT is required\n");
        return 2;
    }
    /* HOST:PORT or [V6]:PORT; HOST must be a loopback address. */
    const char *s = a->listen, *colon = strrchr(s, ':');
    size_t hl = colon != NULL ? (size_t)(colon - s) : 0;
    if (hl > 1 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (colon == NULL || hl == 0 || hl >= sizeof a->host) {
        fprintf(stderr, "fleetctl dashboard: --listen %s: expected HOST:PORT\n", a->listen);
        return 2;
    }
    memcpy(a->host, s, hl);
    a->host[hl] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || port > 65535) {
        fprintf(stderr, "fleetctl dashboard: --listen %s: port: expected 0..65535\n", a->listen);
        return 2;
    }
    a->port = (unsigned)port;
    struct in_addr v4;
    struct in6_addr v6;
    int loop = (inet_pton(AF_INET, a->host, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) ||
               (inet_pton(AF_INET6, a->host, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6));
    if (!loop) {
        fprintf(stderr,
                "fleetctl dashboard: --listen %s: not a loopback address (127.0.0.0/8 or ::1): "
                "whoever reaches the port reads the fleet as this operator\n",
                a->listen);
        return 2;
    }
    return 0;
}

static int listen_on(const struct fleetctl_dash_args *a, unsigned *port) {
    struct addrinfo hints, *res = NULL;
    char ps[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    snprintf(ps, sizeof ps, "%u", a->port);
    if (getaddrinfo(a->host, ps, &hints, &res) != 0) {
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        fprintf(stderr, "fleetctl dashboard: cannot listen on %s: %s\n", a->listen,
                strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Writes all of buf (blocking, bounded by the socket's send time-out). */
static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w <= 0) {
            return;
        }
        buf += w;
        len -= (size_t)w;
    }
}

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 302:
        return "Found";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    default:
        return "Status";
    }
}

static void answer(int fd, int status, const char *ctype, const char *extra, const char *body,
                   size_t len) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s" DASH_HEADERS
                     "\r\n",
                     status, reason(status), ctype, len, extra);
    if (n > 0 && (size_t)n < sizeof head) {
        write_all(fd, head, (size_t)n);
        write_all(fd, body, len);
    }
}

static void answer_error(int fd, int status, const char *msg) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", msg);
    answer(fd, status, "application/json", status == 405 ? "Allow: GET\r\n" : "", body, (size_t)n);
}

/* A complete request head from a browser: refuse it, or forward it and pass the answer on. */
static void serve(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int fd,
                  const struct fleetctl_dash_req *r, const char *host_ok, const char *host_alt) {
    int d = fleetctl_dash_decide(r, host_ok, host_alt);
    static const char *const why[] = {"only GET /dashboard and GET /api/... are forwarded",
                                      "this proxy answers for its own address only",
                                      "not a path the dashboard uses", "bad request target"};
    if (d == 302) {
        answer(fd, 302, "text/plain", "Location: /dashboard\r\n", "", 0);
    } else if (d != 0) {
        answer_error(fd, d, d == 405 ? why[0] : d == 403 ? why[1] : d == 404 ? why[2] : why[3]);
    }
    if (d != 0) {
        fprintf(stderr, "fleetctl dashboard: %s %s refused (%d)\n", r->method, r->target, d);
        return;
    }
    int status = 0;
    char *body = NULL;
    size_t blen = 0;
    char ctype[128];
    if (fleetctl_https_get(ctx, u, r->target, timeout_s, &status, &body, &blen, ctype,
                           sizeof ctype) != 0) {
        answer_error(fd, 502, "fleetkey-server did not answer (see fleetctl's log)");
        fprintf(stderr, "fleetctl dashboard: GET %s -> upstream failed\n", r->target);
        return;
    }
    answer(fd, status, ctype[0] != '\0' ? ctype : "application/octet-stream", "", body, blen);
    fprintf(stderr, "fleetctl dashboard: GET %s -> %d\n", r->target, status);
    free(body);
}

int fleetctl_dashboard_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s,
                           const struct fleetctl_dash_args *a) {
    unsigned port = 0;
    int lfd = listen_on(a, &port);
    if (lfd < 0) {
        return 1;
    }
    int v6 = strchr(a->host, ':') != NULL;
    char host_ok[300], host_alt[300];
    snprintf(host_ok, sizeof host_ok, v6 ? "[%s]:%u" : "%s:%u", a->host, port);
    snprintf(host_alt, sizeof host_alt, "localhost:%u", port);
    printf("fleetctl dashboard: http://%s/dashboard (Ctrl-C to stop)\n", host_ok);
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    static struct client cl[CLIENTS_MAX];
    for (size_t i = 0; i < CLIENTS_MAX; i++) {
        cl[i].fd = -1;
    }
    while (!stop_flag) {
        struct pollfd pf[CLIENTS_MAX + 1];
        size_t map[CLIENTS_MAX + 1], n = 0;
        pf[n].fd = lfd;
        pf[n++].events = POLLIN;
        for (size_t i = 0; i < CLIENTS_MAX; i++) {
            if (cl[i].fd >= 0) {
                map[n] = i;
                pf[n].fd = cl[i].fd;
                pf[n++].events = POLLIN;
            }
        }
        if (poll(pf, n, 500) < 0) {
            continue; /* EINTR: the loop condition sees the signal */
        }
        time_t now = time(NULL);
        for (size_t k = 1; k < n; k++) {
            struct client *c = &cl[map[k]];
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) {
                if (now - c->since > IDLE_S) {
                    close(c->fd);
                    c->fd = -1;
                }
                continue;
            }
            ssize_t got = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (got <= 0) {
                close(c->fd);
                c->fd = -1;
                continue;
            }
            c->len += (size_t)got;
            struct fleetctl_dash_req r;
            enum fleetctl_dash_parse pr = fleetctl_dash_parse(c->buf, c->len, &r);
            if (pr == FLEETCTL_DASH_MORE) {
                continue;
            }
            /* Blocking from here: the answer is written, then the connection closed. */
            fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
            if (pr == FLEETCTL_DASH_OK) {
                serve(ctx, u, timeout_s, c->fd, &r, host_ok, host_alt);
            } else {
                answer_error(c->fd, 400, "not an HTTP/1.1 request");
            }
            shutdown(c->fd, SHUT_WR);
            close(c->fd);
            c->fd = -1;
        }
        if (pf[0].revents & POLLIN) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0 && (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
                            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)) {
                close(fd);
                fd = -1;
            }
            size_t i = 0;
            while (fd >= 0 && i < CLIENTS_MAX && cl[i].fd >= 0) {
                i++;
            }
            if (fd >= 0 && i == CLIENTS_MAX) {
                close(fd); /* every slot busy: the browser retries */
            } else if (fd >= 0) {
                struct timeval tv = {(time_t)timeout_s, 0};
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                cl[i].fd = fd;
                cl[i].len = 0;
                cl[i].since = now;
            }
        }
    }
    for (size_t i = 0; i < CLIENTS_MAX; i++) {
        if (cl[i].fd >= 0) {
            close(cl[i].fd);
        }
    }
    close(lfd);
    fprintf(stderr, "fleetctl dashboard: stopped\n");
    return 0;
}
