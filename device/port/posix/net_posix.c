/* POSIX implementation of fkd/net.h: BSD UDP and TCP sockets (non-blocking), poll(2) for waiting,
 * CLOCK_MONOTONIC for time and getrandom(2) for entropy. The only file of the control channel
 * that includes OS headers. */
#include "fkd/net.h"

#include "fkd_posix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../net_bsd.h" /* after the socket headers: what the ports share */

_Static_assert(sizeof(struct sockaddr_in6) <= FKD_NET_ADDR_MAX, "fkd_net_addr too small");

static _Thread_local fkd_posix_wait_fn *waiter; /* fkd_posix_set_waiter; NULL: poll(2) */

void fkd_posix_set_waiter(fkd_posix_wait_fn *fn) {
    waiter = fn;
}

/* The one place the port waits on a descriptor: poll(2), or the thread's waiter. */
static int wait_fd(int fd, short events, int timeout_ms) {
    if (waiter != NULL) {
        return waiter(fd, events, (uint32_t)timeout_ms);
    }
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    return poll(&p, 1, timeout_ms);
}

void fkd_net_sock_init(struct fkd_net_sock *s) {
    s->fd = -1;
}

int fkd_net_addr_from(const char *ip, uint16_t port, struct fkd_net_addr *out) {
    memset(out, 0, sizeof *out);
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    memset(&sin, 0, sizeof sin);
    memset(&sin6, 0, sizeof sin6);
    if (ip == NULL || ip[0] == '\0') {
        ip = "0.0.0.0";
    }
    if (inet_pton(AF_INET, ip, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        memcpy(out->raw, &sin, sizeof sin);
        out->len = (uint8_t)sizeof sin;
        return FKD_NET_OK;
    }
    if (inet_pton(AF_INET6, ip, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(port);
        memcpy(out->raw, &sin6, sizeof sin6);
        out->len = (uint8_t)sizeof sin6;
        return FKD_NET_OK;
    }
    return FKD_NET_E_ARG;
}

int fkd_net_udp_bind(struct fkd_net_sock *s, const char *ip, uint16_t port, uint16_t *bound_port) {
    struct fkd_net_addr a;
    if (fkd_net_addr_from(ip, port, &a) != FKD_NET_OK) {
        return FKD_NET_E_ARG;
    }
    const struct sockaddr *sa = (const struct sockaddr *)(const void *)a.raw;
    int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return FKD_NET_E_IO;
    }
    if (bind(fd, sa, a.len) != 0) {
        close(fd);
        return FKD_NET_E_IO;
    }
    if (bound_port != NULL) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        memset(&ss, 0, sizeof ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
            close(fd);
            return FKD_NET_E_IO;
        }
        *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    s->fd = fd;
    return FKD_NET_OK;
}

int fkd_net_recvfrom(struct fkd_net_sock *s, uint8_t *buf, size_t size, struct fkd_net_addr *from) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    ssize_t n = recvfrom(s->fd, buf, size, MSG_TRUNC, (struct sockaddr *)&ss, &sl);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? FKD_NET_E_AGAIN
                                                                           : FKD_NET_E_IO;
    }
    memset(from, 0, sizeof *from);
    if (sl > FKD_NET_ADDR_MAX) {
        return FKD_NET_E_IO;
    }
    memcpy(from->raw, &ss, sl);
    from->len = (uint8_t)sl;
    if ((size_t)n > size) {
        return FKD_NET_E_TOOBIG;
    }
    return (int)n;
}

int fkd_net_sendto(struct fkd_net_sock *s, const struct fkd_net_addr *to, const uint8_t *buf,
                   size_t len) {
    ssize_t n = sendto(s->fd, buf, len, 0, (const struct sockaddr *)(const void *)to->raw, to->len);
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? FKD_NET_E_AGAIN
                                                                           : FKD_NET_E_IO;
    }
    return (int)n;
}

int fkd_net_wait(struct fkd_net_sock *s, uint32_t timeout_ms) {
    int timeout = timeout_ms > 0x7fffffffu ? 0x7fffffff : (int)timeout_ms;
    int r = wait_fd(s->fd, POLLIN, timeout);
    if (r < 0) {
        return errno == EINTR ? 0 : FKD_NET_E_IO;
    }
    return r > 0 ? 1 : 0;
}

void fkd_net_close(struct fkd_net_sock *s) {
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

void fkd_net_addr_str(const struct fkd_net_addr *a, char *out, size_t size) {
    if (size == 0) {
        return;
    }
    out[0] = '\0';
    char ip[INET6_ADDRSTRLEN];
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    if (a->len == sizeof sin) {
        memcpy(&sin, a->raw, sizeof sin);
        if (sin.sin_family == AF_INET && inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip)) {
            snprintf(out, size, "%s:%u", ip, (unsigned)ntohs(sin.sin_port));
            return;
        }
    } else if (a->len == sizeof sin6) {
        memcpy(&sin6, a->raw, sizeof sin6);
        if (sin6.sin6_family == AF_INET6 && inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof ip)) {
            snprintf(out, size, "[%s]:%u", ip, (unsigned)ntohs(sin6.sin6_port));
            return;
        }
    }
    snprintf(out, size, "?");
}

int fkd_net_addr_equal(const struct fkd_net_addr *a, const struct fkd_net_addr *b) {
    return a->len == b->len && memcmp(a->raw, b->raw, a->len) == 0;
}

/* ---- TCP ---------------------------------------------------------------------------------- */

/* One non-blocking connect to ai, finished within timeout_ms. */
static int connect_one(const struct addrinfo *ai, uint32_t timeout_ms, int *out_fd) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return FKD_NET_E_IO;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            return FKD_NET_E_IO;
        }
        int timeout = timeout_ms > 0x7fffffffu ? 0x7fffffff : (int)timeout_ms;
        int r;
        do {
            r = wait_fd(fd, POLLOUT, timeout); /* an EINTR restarts the full wait: bounded */
        } while (r < 0 && errno == EINTR);
        if (r <= 0) {
            close(fd);
            return r == 0 ? FKD_NET_E_TIMEOUT : FKD_NET_E_IO;
        }
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return FKD_NET_E_IO;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out_fd = fd;
    return FKD_NET_OK;
}

int fkd_net_tcp_connect(struct fkd_net_sock *s, const char *host, uint16_t port,
                        uint32_t timeout_ms) {
    return fkd_net_bsd_connect(s, host, port, timeout_ms, connect_one);
}

int fkd_net_send(struct fkd_net_sock *s, const uint8_t *buf, size_t len) {
    return fkd_net_bsd_result(send(s->fd, buf, len, MSG_NOSIGNAL), 0);
}

int fkd_net_recv(struct fkd_net_sock *s, uint8_t *buf, size_t size) {
    return fkd_net_bsd_result(recv(s->fd, buf, size > 0x7fffffffu ? 0x7fffffffu : size, 0), 1);
}

int fkd_net_wait_write(struct fkd_net_sock *s, uint32_t timeout_ms) {
    int timeout = timeout_ms > 0x7fffffffu ? 0x7fffffff : (int)timeout_ms;
    int r = wait_fd(s->fd, POLLOUT, timeout);
    if (r < 0) {
        return errno == EINTR ? 0 : FKD_NET_E_IO;
    }
    return r > 0 ? 1 : 0;
}

void fkd_net_sleep_ms(uint32_t ms) {
    if (waiter != NULL) {
        (void)waiter(-1, 0, ms);
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000u), .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t fkd_net_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int fkd_net_entropy(void *ctx, unsigned char *out, size_t len, size_t *olen) {
    (void)ctx;
    size_t done = 0;
    while (done < len) {
        ssize_t r = getrandom(out + done, len - done, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        done += (size_t)r;
    }
    *olen = len;
    return 0;
}
