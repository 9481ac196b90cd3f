/* fkd/net.h on ESP-IDF: lwIP's BSD socket API (called by its lwip_ names, so a reader sees
 * which stack it is), lwip_select for the bounded waits, esp_timer for the clock, FreeRTOS for
 * sleeping and esp_fill_random (the hardware RNG, fed by RF noise while Wi-Fi runs) as the
 * entropy source mbedTLS draws from.
 *
 * Differences from the POSIX port that matter: lwIP has no SOCK_NONBLOCK flag (O_NONBLOCK is
 * set with lwip_fcntl), reports a truncated datagram only through recvmsg's msg_flags, and
 * has no SIGPIPE to suppress. */
#include "fkd/net.h"

#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "lwip/inet.h"
#include "lwip/netdb.h"
#include "lwip/sockets.h"

#include "../net_bsd.h" /* after the socket headers: what the ports share */

#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct sockaddr_in) <= FKD_NET_ADDR_MAX, "fkd_net_addr too small");
#if LWIP_IPV6
_Static_assert(sizeof(struct sockaddr_in6) <= FKD_NET_ADDR_MAX, "fkd_net_addr too small");
#endif

void fkd_net_sock_init(struct fkd_net_sock *s) {
    s->fd = -1;
}

static int nonblocking(int fd) {
    int fl = lwip_fcntl(fd, F_GETFL, 0);
    return fl >= 0 && lwip_fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

int fkd_net_addr_from(const char *ip, uint16_t port, struct fkd_net_addr *out) {
    memset(out, 0, sizeof *out);
    const char *text = ip == NULL || ip[0] == '\0' ? "0.0.0.0" : ip;
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    if (lwip_inet_pton(AF_INET, text, &v4.sin_addr) == 1) {
        v4.sin_len = sizeof v4;
        v4.sin_family = AF_INET;
        v4.sin_port = lwip_htons(port);
        memcpy(out->raw, &v4, sizeof v4);
        out->len = sizeof v4;
        return FKD_NET_OK;
    }
#if LWIP_IPV6
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof v6);
    if (lwip_inet_pton(AF_INET6, text, &v6.sin6_addr) == 1) {
        v6.sin6_len = sizeof v6;
        v6.sin6_family = AF_INET6;
        v6.sin6_port = lwip_htons(port);
        memcpy(out->raw, &v6, sizeof v6);
        out->len = sizeof v6;
        return FKD_NET_OK;
    }
#endif
    return FKD_NET_E_ARG;
}

int fkd_net_udp_bind(struct fkd_net_sock *s, const char *ip, uint16_t port, uint16_t *bound_port) {
    struct fkd_net_addr a;
    if (fkd_net_addr_from(ip, port, &a) != FKD_NET_OK) {
        return FKD_NET_E_ARG;
    }
    const struct sockaddr *sa = (const struct sockaddr *)(const void *)a.raw;
    int fd = lwip_socket(sa->sa_family, SOCK_DGRAM, 0);
    if (fd < 0) {
        return FKD_NET_E_IO;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    memset(&got, 0, sizeof got);
    if (!nonblocking(fd) || lwip_bind(fd, sa, a.len) != 0 ||
        lwip_getsockname(fd, (struct sockaddr *)&got, &gl) != 0) {
        lwip_close(fd);
        return FKD_NET_E_IO;
    }
    if (bound_port != NULL) {
        /* sin_port and sin6_port sit at the same offset in lwIP's sockaddrs. */
        *bound_port = lwip_ntohs(((const struct sockaddr_in *)(const void *)&got)->sin_port);
    }
    s->fd = fd;
    return FKD_NET_OK;
}

int fkd_net_recvfrom(struct fkd_net_sock *s, uint8_t *buf, size_t size, struct fkd_net_addr *from) {
    struct sockaddr_storage src;
    memset(&src, 0, sizeof src);
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &src;
    mh.msg_namelen = sizeof src;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n = lwip_recvmsg(s->fd, &mh, 0);
    if (n < 0) {
        return fkd_net_bsd_result(n, 0);
    }
    memset(from, 0, sizeof *from);
    if (mh.msg_namelen > FKD_NET_ADDR_MAX) {
        return FKD_NET_E_IO;
    }
    memcpy(from->raw, &src, mh.msg_namelen);
    from->len = (uint8_t)mh.msg_namelen;
    if (mh.msg_flags & MSG_TRUNC) {
        return FKD_NET_E_TOOBIG; /* lwIP dropped the rest: never hand half a record to DTLS */
    }
    return (int)n;
}

int fkd_net_sendto(struct fkd_net_sock *s, const struct fkd_net_addr *to, const uint8_t *buf,
                   size_t len) {
    ssize_t n =
        lwip_sendto(s->fd, buf, len, 0, (const struct sockaddr *)(const void *)to->raw, to->len);
    return fkd_net_bsd_result(n, 0);
}

/* Waits for fd to become readable (write 0) or writable (write 1), at most timeout_ms. */
static int wait_fd(int fd, int write, uint32_t timeout_ms) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000u),
                         .tv_usec = (suseconds_t)((timeout_ms % 1000u) * 1000u)};
    int r = lwip_select(fd + 1, write ? NULL : &set, write ? &set : NULL, NULL, &tv);
    if (r < 0) {
        return errno == EINTR ? 0 : FKD_NET_E_IO;
    }
    return r > 0 ? 1 : 0;
}

int fkd_net_wait(struct fkd_net_sock *s, uint32_t timeout_ms) {
    return wait_fd(s->fd, 0, timeout_ms);
}

int fkd_net_wait_write(struct fkd_net_sock *s, uint32_t timeout_ms) {
    return wait_fd(s->fd, 1, timeout_ms);
}

void fkd_net_close(struct fkd_net_sock *s) {
    if (s->fd >= 0) {
        lwip_close(s->fd);
        s->fd = -1;
    }
}

void fkd_net_addr_str(const struct fkd_net_addr *a, char *out, size_t size) {
    if (size == 0) {
        return;
    }
    char ip[48] = "?";
    unsigned port = 0;
    const struct sockaddr *sa = (const struct sockaddr *)(const void *)a->raw;
    if (a->len == sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)a->raw;
        lwip_inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
        port = lwip_ntohs(v4->sin_port);
        snprintf(out, size, "%s:%u", ip, port);
        return;
    }
#if LWIP_IPV6
    if (a->len == sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)a->raw;
        lwip_inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
        port = lwip_ntohs(v6->sin6_port);
        snprintf(out, size, "[%s]:%u", ip, port);
        return;
    }
#endif
    snprintf(out, size, "?");
}

int fkd_net_addr_equal(const struct fkd_net_addr *a, const struct fkd_net_addr *b) {
    return a->len == b->len && memcmp(a->raw, b->raw, a->len) == 0;
}

/* ---- TCP ---------------------------------------------------------------------------------- */

/* Starts a non-blocking connect to one resolved address and waits for it, at most
 * timeout_ms. FKD_NET_OK with *out_fd set, or an error with nothing left open. */
static int dial(const struct addrinfo *ai, uint32_t timeout_ms, int *out_fd) {
    int fd = lwip_socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        return FKD_NET_E_IO;
    }
    int rc = FKD_NET_E_IO;
    if (!nonblocking(fd)) {
        goto out;
    }
    if (lwip_connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            goto out;
        }
        int w = wait_fd(fd, 1, timeout_ms);
        if (w <= 0) {
            rc = w == 0 ? FKD_NET_E_TIMEOUT : FKD_NET_E_IO;
            goto out;
        }
        int err = 0;
        socklen_t el = sizeof err;
        if (lwip_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            goto out;
        }
    }
    int one = 1;
    (void)lwip_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out_fd = fd;
    fd = -1;
    rc = FKD_NET_OK;
out:
    if (fd >= 0) {
        lwip_close(fd);
    }
    return rc;
}

int fkd_net_tcp_connect(struct fkd_net_sock *s, const char *host, uint16_t port,
                        uint32_t timeout_ms) {
    /* lwIP's resolver blocks for at most its DNS timeout (DNS_MAX_RETRIES x DNS_TMR_INTERVAL). */
    return fkd_net_bsd_connect(s, host, port, timeout_ms, dial);
}

int fkd_net_send(struct fkd_net_sock *s, const uint8_t *buf, size_t len) {
    return fkd_net_bsd_result(lwip_send(s->fd, buf, len, MSG_DONTWAIT), 0);
}

int fkd_net_recv(struct fkd_net_sock *s, uint8_t *buf, size_t size) {
    return fkd_net_bsd_result(lwip_recv(s->fd, buf, size, MSG_DONTWAIT), 1);
}

void fkd_net_sleep_ms(uint32_t ms) {
    /* At least one tick, so a 1 ms sleep still yields to the other tasks. */
    TickType_t t = pdMS_TO_TICKS(ms);
    vTaskDelay(t > 0 ? t : 1);
}

uint64_t fkd_net_now_ms(void) {
    return (uint64_t)esp_timer_get_time() / 1000u; /* microseconds since boot, monotonic */
}

int fkd_net_entropy(void *ctx, unsigned char *out, size_t len, size_t *olen) {
    (void)ctx;
    esp_fill_random(out, len);
    *olen = len;
    return 0;
}
