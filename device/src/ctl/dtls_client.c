/* A blocking DTLS 1.2 PSK client: the device stack's side of the interop tests and the load
 * generator of bench_dtls. It waits with fkd_net_wait() (bounded by the caller's timeout and
 * Mbed TLS's retransmission timer) and accepts datagrams from the server's address only. */
#include <string.h>

#include "fkd/dtls_client.h"
#include "mbedtls_compat.h"

static void timer_set(void *p, uint32_t int_ms, uint32_t fin_ms) {
    struct fkd_dtls_client *c = p;
    c->timer_start_ms = fkd_net_now_ms();
    c->timer_int_ms = int_ms;
    c->timer_fin_ms = fin_ms;
}

static int timer_get(void *p) {
    struct fkd_dtls_client *c = p;
    if (c->timer_fin_ms == 0) {
        return -1;
    }
    uint64_t el = fkd_net_now_ms() - c->timer_start_ms;
    return el >= c->timer_fin_ms ? 2 : (el >= c->timer_int_ms ? 1 : 0);
}

static int bio_send(void *p, const unsigned char *buf, size_t len) {
    struct fkd_dtls_client *c = p;
    int r = fkd_net_sendto(&c->sock, &c->peer, buf, len);
    if (r == FKD_NET_E_AGAIN) {
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    return r < 0 ? FKD_MBEDTLS_ERR_NET_SEND_FAILED : r;
}

static int bio_recv_timeout(void *p, unsigned char *buf, size_t len, uint32_t timeout) {
    struct fkd_dtls_client *c = p;
    uint32_t wait = timeout == 0 || timeout > c->timeout_ms ? c->timeout_ms : timeout;
    uint64_t deadline = fkd_net_now_ms() + wait;
    for (int i = 0; i < 64; i++) {
        uint64_t now = fkd_net_now_ms();
        if (now >= deadline) {
            break;
        }
        int r = fkd_net_wait(&c->sock, (uint32_t)(deadline - now));
        if (r < 0) {
            return FKD_MBEDTLS_ERR_NET_RECV_FAILED;
        }
        if (r == 0) {
            break;
        }
        struct fkd_net_addr from;
        int n = fkd_net_recvfrom(&c->sock, buf, len, &from);
        if (n == FKD_NET_E_AGAIN || n == FKD_NET_E_TOOBIG) {
            continue;
        }
        if (n < 0) {
            return FKD_MBEDTLS_ERR_NET_RECV_FAILED;
        }
        if (!fkd_net_addr_equal(&from, &c->peer)) {
            continue; /* not our server */
        }
        return n;
    }
    return MBEDTLS_ERR_SSL_TIMEOUT;
}

void fkd_dtls_client_init(struct fkd_dtls_client *c) {
    memset(c, 0, sizeof *c);
    mbedtls_ssl_init(&c->ssl);
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_ctr_drbg_init(&c->drbg);
    fkd_net_sock_init(&c->sock);
}

int fkd_dtls_client_setup(struct fkd_dtls_client *c, const char *ip, uint16_t port,
                          const uint8_t *identity, size_t identity_len, const uint8_t *psk,
                          size_t psk_len, uint32_t timeout_ms, mbedtls_ctr_drbg_context *drbg) {
    if (ip == NULL || identity == NULL || psk == NULL || identity_len == 0 || psk_len == 0 ||
        timeout_ms == 0) {
        return FKD_CTL_E_ARG;
    }
    c->timeout_ms = timeout_ms;
    if (fkd_net_addr_from(ip, port, &c->peer) != FKD_NET_OK) {
        return FKD_CTL_E_ARG;
    }
    const char *any = c->peer.len > 16 ? "::" : "0.0.0.0";
    if (fkd_net_udp_bind(&c->sock, any, 0, NULL) != FKD_NET_OK) {
        return FKD_CTL_E_NET;
    }
    int ret = fkd_mbedtls_global_init();
    if (ret == 0 && drbg == NULL) {
        ret = fkd_mbedtls_drbg_seed(&c->drbg, "fkd_dtls_client");
        drbg = &c->drbg;
    }
    if (ret == 0) {
        ret = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_DATAGRAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    }
    if (ret == 0) {
        c->ciphersuites[0] = MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256;
        c->ciphersuites[1] = MBEDTLS_TLS_PSK_WITH_AES_128_CCM;
        c->ciphersuites[2] = MBEDTLS_TLS_PSK_WITH_AES_128_CCM_8;
        c->ciphersuites[3] = MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384;
        c->ciphersuites[4] = 0;
        mbedtls_ssl_conf_ciphersuites(&c->conf, c->ciphersuites);
        fkd_mbedtls_conf_tls12_only(&c->conf);
        mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, drbg);
        mbedtls_ssl_conf_handshake_timeout(&c->conf, 500, timeout_ms);
        mbedtls_ssl_conf_read_timeout(&c->conf, timeout_ms);
        ret = mbedtls_ssl_conf_psk(&c->conf, psk, psk_len, identity, identity_len);
    }
    if (ret == 0) {
        ret = mbedtls_ssl_setup(&c->ssl, &c->conf);
    }
    c->last_ret = ret;
    if (ret != 0) {
        return FKD_CTL_E_CRYPTO;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, bio_send, NULL, bio_recv_timeout);
    mbedtls_ssl_set_timer_cb(&c->ssl, c, timer_set, timer_get);
    mbedtls_ssl_set_mtu(&c->ssl, 1200);
    return FKD_CTL_OK;
}

int fkd_dtls_client_handshake(struct fkd_dtls_client *c) {
    uint64_t deadline = fkd_net_now_ms() + c->timeout_ms;
    int ret;
    for (int i = 0; i < 1000; i++) {
        ret = mbedtls_ssl_handshake(&c->ssl);
        c->last_ret = ret;
        if (ret == 0) {
            return FKD_CTL_OK;
        }
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            return ret == MBEDTLS_ERR_SSL_TIMEOUT ? FKD_CTL_E_TIMEOUT : FKD_CTL_E_HANDSHAKE;
        }
        if (fkd_net_now_ms() >= deadline) {
            break;
        }
    }
    return FKD_CTL_E_TIMEOUT;
}

int fkd_dtls_client_request(struct fkd_dtls_client *c, const uint8_t *req, size_t req_len,
                            uint8_t *resp, size_t resp_size, size_t *resp_len) {
    *resp_len = 0;
    int ret = mbedtls_ssl_write(&c->ssl, req, req_len);
    c->last_ret = ret;
    if (ret < 0) {
        return FKD_CTL_E_NET;
    }
    for (int i = 0; i < 16; i++) {
        ret = mbedtls_ssl_read(&c->ssl, resp, resp_size);
        c->last_ret = ret;
        if (ret > 0) {
            *resp_len = (size_t)ret;
            return FKD_CTL_OK;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
            return FKD_CTL_E_TIMEOUT;
        }
        return ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ? FKD_CTL_E_CLOSED
                                                                    : FKD_CTL_E_NET;
    }
    return FKD_CTL_E_TIMEOUT;
}

const char *fkd_dtls_client_ciphersuite(const struct fkd_dtls_client *c) {
    const char *s = mbedtls_ssl_get_ciphersuite(&c->ssl);
    return s != NULL ? s : "";
}

void fkd_dtls_client_close(struct fkd_dtls_client *c) {
    (void)mbedtls_ssl_close_notify(&c->ssl);
}

void fkd_dtls_client_free(struct fkd_dtls_client *c) {
    mbedtls_ssl_free(&c->ssl); /* wipes the handshake PSK */
    mbedtls_ssl_config_free(&c->conf); /* wipes the configured PSK */
    mbedtls_ctr_drbg_free(&c->drbg);
    fkd_net_close(&c->sock);
}
