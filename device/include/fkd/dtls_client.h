/* fkd dtls_client: a small blocking DTLS 1.2 PSK client on Mbed TLS, the counterpart of the
 * control listener. The robot uses it nowhere yet; it exists so the device's DTLS stack can be
 * tested against an independent server (openssl s_server) and driven by the benchmark.
 *
 * Context in caller memory: fkd_dtls_client_init() cannot fail, fkd_dtls_client_setup() can,
 * fkd_dtls_client_free() is safe after init and wipes the PSK. One thread per client. */
#ifndef FKD_DTLS_CLIENT_H
#define FKD_DTLS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ssl.h>

#include "fkd/ctl.h"
#include "fkd/net.h"

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_dtls_client {
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_ctr_drbg_context drbg;
    struct fkd_net_sock sock;
    struct fkd_net_addr peer;
    uint32_t timeout_ms;
    uint64_t timer_start_ms;
    uint32_t timer_int_ms;
    uint32_t timer_fin_ms;
    int ciphersuites[5];
    int last_ret; /* last Mbed TLS code, for diagnostics */
};

/* Cannot fail. */
void fkd_dtls_client_init(struct fkd_dtls_client *c);
/* Prepares a client for the server at ip:port with the given PSK (copied into Mbed TLS) and a
 * bound on every blocking wait. Optionally shares an already seeded DRBG (drbg non-NULL; it
 * must outlive c), which the benchmark uses to skip reseeding per connection.
 * FKD_CTL_OK, FKD_CTL_E_ARG, FKD_CTL_E_NET, FKD_CTL_E_CRYPTO. */
int fkd_dtls_client_setup(struct fkd_dtls_client *c, const char *ip, uint16_t port,
                          const uint8_t *identity, size_t identity_len, const uint8_t *psk,
                          size_t psk_len, uint32_t timeout_ms, mbedtls_ctr_drbg_context *drbg);
/* Runs the handshake to completion. FKD_CTL_OK, FKD_CTL_E_HANDSHAKE, FKD_CTL_E_TIMEOUT. */
int fkd_dtls_client_handshake(struct fkd_dtls_client *c);
/* Sends req and waits for one response datagram (at most resp_size bytes).
 * FKD_CTL_OK, FKD_CTL_E_NET, FKD_CTL_E_TIMEOUT, FKD_CTL_E_CLOSED. */
int fkd_dtls_client_request(struct fkd_dtls_client *c, const uint8_t *req, size_t req_len,
                            uint8_t *resp, size_t resp_size, size_t *resp_len);
/* The negotiated ciphersuite name, or "". */
const char *fkd_dtls_client_ciphersuite(const struct fkd_dtls_client *c);
/* Sends close_notify (best effort). */
void fkd_dtls_client_close(struct fkd_dtls_client *c);
/* Frees everything; safe after init. */
void fkd_dtls_client_free(struct fkd_dtls_client *c);

#ifdef __cplusplus
}
#endif
#endif
