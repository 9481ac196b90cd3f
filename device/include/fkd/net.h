/* fkd net: what the control channel needs from the platform: one UDP socket, a monotonic
 * millisecond clock and an entropy source; and what the wss client needs: one TCP socket.
 *
 * device/src calls only these functions; device/port/posix/net_posix.c implements them with BSD
 * sockets, clock_gettime and getrandom, and an ESP-IDF port does the same with lwIP's socket
 * API, esp_timer_get_time and esp_fill_random. Sockets are non-blocking: every call returns at
 * once, and fkd_net_wait() is the only place that sleeps. Nothing here allocates. */
#ifndef FKD_NET_H
#define FKD_NET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A peer address as opaque bytes (a zero-padded sockaddr on POSIX). Two addresses are equal
 * when len and the first len bytes are equal, which is also what DTLS cookies are bound to. */
#define FKD_NET_ADDR_MAX 28
struct fkd_net_addr {
    uint8_t raw[FKD_NET_ADDR_MAX];
    uint8_t len;
};

/* "192.0.2.1:5684" or "[2001:db8::1]:5684" fits in this. */
#define FKD_NET_ADDR_STR_MAX 56

struct fkd_net_sock {
    int fd; /* -1 when closed */
};

enum {
    FKD_NET_OK = 0,
    FKD_NET_E_AGAIN = -1,  /* nothing to read / would block */
    FKD_NET_E_IO = -2,     /* socket error (errno is the port's business) */
    FKD_NET_E_ARG = -3,    /* bad address or argument */
    FKD_NET_E_TOOBIG = -4, /* datagram larger than the buffer: it was dropped */
    FKD_NET_E_TIMEOUT = -5, /* TCP connect did not complete in time */
    FKD_NET_E_CLOSED = -6,  /* TCP peer closed the connection (orderly) */
};

/* Marks s closed; cannot fail. */
void fkd_net_sock_init(struct fkd_net_sock *s);
/* Opens a non-blocking UDP socket bound to ip (numeric IPv4/IPv6, NULL or "" for any IPv4
 * address) and port (0 = the OS picks); *bound_port receives the port actually bound when
 * bound_port is non-NULL. FKD_NET_OK, FKD_NET_E_ARG, FKD_NET_E_IO. */
int fkd_net_udp_bind(struct fkd_net_sock *s, const char *ip, uint16_t port, uint16_t *bound_port);
/* Receives one datagram into buf (never more than size bytes) and its source into *from.
 * Returns its length (>= 0), FKD_NET_E_AGAIN, FKD_NET_E_TOOBIG or FKD_NET_E_IO. */
int fkd_net_recvfrom(struct fkd_net_sock *s, uint8_t *buf, size_t size, struct fkd_net_addr *from);
/* Sends one datagram of len bytes to *to. Returns len, FKD_NET_E_AGAIN or FKD_NET_E_IO. */
int fkd_net_sendto(struct fkd_net_sock *s, const struct fkd_net_addr *to, const uint8_t *buf,
                   size_t len);
/* Waits until s is readable or timeout_ms passed: 1 readable, 0 timeout, FKD_NET_E_IO. */
int fkd_net_wait(struct fkd_net_sock *s, uint32_t timeout_ms);
/* Closes s (no-op when closed). */
void fkd_net_close(struct fkd_net_sock *s);

/* Builds an address from a numeric IP and a port. FKD_NET_OK or FKD_NET_E_ARG. */
int fkd_net_addr_from(const char *ip, uint16_t port, struct fkd_net_addr *out);
/* Formats a as "ip:port" into out (always NUL-terminated when size > 0). */
void fkd_net_addr_str(const struct fkd_net_addr *a, char *out, size_t size);
/* 1 when a and b are the same address and port. */
int fkd_net_addr_equal(const struct fkd_net_addr *a, const struct fkd_net_addr *b);

/* ---- TCP (the wss client, fkd/wss.h) -------------------------------------------------------
 * A stream socket, non-blocking like the UDP one: send/recv return at once, fkd_net_wait() and
 * fkd_net_wait_write() are where the caller sleeps, always with a bound. */

/* Connects s to host:port. host is a numeric IPv4/IPv6 address or a DNS name (the port's
 * resolver; the first address that answers within the time left wins). Waits at most
 * timeout_ms in total for the connection. FKD_NET_OK, FKD_NET_E_ARG (host does not resolve),
 * FKD_NET_E_TIMEOUT, FKD_NET_E_IO (refused, unreachable). On failure s stays closed. */
int fkd_net_tcp_connect(struct fkd_net_sock *s, const char *host, uint16_t port,
                        uint32_t timeout_ms);
/* Sends at most len bytes: the count sent (> 0), FKD_NET_E_AGAIN, FKD_NET_E_IO. Never raises
 * SIGPIPE. */
int fkd_net_send(struct fkd_net_sock *s, const uint8_t *buf, size_t len);
/* Receives at most size bytes: the count (> 0), FKD_NET_E_CLOSED (peer closed),
 * FKD_NET_E_AGAIN, FKD_NET_E_IO. */
int fkd_net_recv(struct fkd_net_sock *s, uint8_t *buf, size_t size);
/* Waits until s can take more bytes or timeout_ms passed: 1 writable, 0 timeout, FKD_NET_E_IO. */
int fkd_net_wait_write(struct fkd_net_sock *s, uint32_t timeout_ms);
/* Sleeps ms milliseconds (the wss client's backoff; callers keep each sleep short so that a
 * stop request is seen soon). */
void fkd_net_sleep_ms(uint32_t ms);

/* Milliseconds from an arbitrary start; never goes backwards. */
uint64_t fkd_net_now_ms(void);

/* An Mbed TLS entropy source (mbedtls_entropy_f_source_ptr): fills out with len bytes from the
 * platform's strong source and sets *olen. 0 or -1. */
int fkd_net_entropy(void *ctx, unsigned char *out, size_t len, size_t *olen);

#ifdef __cplusplus
}
#endif
#endif
