/* What fkd/net.h's ports share: the parts that read the same over any BSD socket API, glibc's
 * (port/posix/net_posix.c) or lwIP's (port/esp-idf/net_idf.c; ESP-IDF exposes it under the
 * BSD names). Each port includes this once, after its own socket and netdb headers, and keeps
 * what differs: how a socket becomes non-blocking, how a wait sleeps, clock and entropy.
 * Static functions: no symbols of their own, so the two ports never clash. */
#ifndef FKD_PORT_NET_BSD_H
#define FKD_PORT_NET_BSD_H

#include "fkd/net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A send/recv/sendto/recvfrom result as fkd/net.h reports it: n itself, FKD_NET_E_AGAIN for the
 * errors that mean "not now", FKD_NET_E_IO otherwise; 0 from a stream recv is
 * FKD_NET_E_CLOSED when zero_is_closed. */
static int fkd_net_bsd_result(long n, int zero_is_closed) {
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? FKD_NET_E_AGAIN
                                                                           : FKD_NET_E_IO;
    }
    if (n == 0 && zero_is_closed) {
        return FKD_NET_E_CLOSED;
    }
    return n > 0x7fffffffL ? 0x7fffffff : (int)n;
}

/* Connects one resolved address within timeout_ms: FKD_NET_OK with *fd open, else an error
 * with nothing left open. The port's own (non-blocking connect, then its wait). */
typedef int fkd_net_bsd_dial_fn(const struct addrinfo *ai, uint32_t timeout_ms, int *fd);

/* fkd_net_tcp_connect over the port's dial: resolves host (getaddrinfo, numeric service) and
 * tries each address in turn, all within one deadline of timeout_ms. */
static int fkd_net_bsd_connect(struct fkd_net_sock *s, const char *host, uint16_t port,
                               uint32_t timeout_ms, fkd_net_bsd_dial_fn *dial) {
    if (s == NULL || host == NULL || host[0] == '\0' || port == 0) {
        return FKD_NET_E_ARG;
    }
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0 || res == NULL) {
        return FKD_NET_E_ARG;
    }
    uint64_t deadline = fkd_net_now_ms() + timeout_ms;
    int rc = FKD_NET_E_IO;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        uint64_t now = fkd_net_now_ms();
        if (now >= deadline) {
            rc = FKD_NET_E_TIMEOUT;
            break;
        }
        int fd = -1;
        rc = dial(ai, (uint32_t)(deadline - now), &fd);
        if (rc == FKD_NET_OK) {
            s->fd = fd;
            break;
        }
    }
    freeaddrinfo(res);
    return rc;
}

#endif
