/* The example robot's Mbed TLS 2.28 configuration, as MBEDTLS_USER_CONFIG_FILE on top of the
 * default config.h: the same choices sdkconfig.defaults makes through CONFIG_MBEDTLS_* on the
 * chip, written in Mbed TLS's own terms so that the host can build and measure it
 * (`make check-idf` compiles the library with it; bench/bench_dtls_device measures its heap).
 *
 * - record buffers sized to the protocols: the control listener's requests fit 128 bytes and
 *   its replies one 1100-byte record (fkd/ctl.h), the wss client's messages 4096 bytes
 *   (fkd/wss.h); the client asks the server for RFC 6066 max_fragment_length 4096
 *   (mbedtls_compat.h), so nothing larger ever arrives;
 * - only the suites the fleet uses: DTLS 1.2 PSK with AES-GCM/CCM (control listener) and TLS
 *   1.2 ECDHE-ECDSA with AES-GCM (wss mTLS, P-256/P-384 certificates); RSA stays for verifying
 *   RSA-3072 Secure Boot V2 signatures, not for key exchange;
 * - no OS services: no threads, no sockets, no files, entropy from the port (esp_fill_random
 *   on the chip, fkd_net_entropy). */
#ifndef FKD_EXAMPLE_MBEDTLS_USER_H
#define FKD_EXAMPLE_MBEDTLS_USER_H

/* ---- no OS ---- */
#undef MBEDTLS_THREADING_C
#undef MBEDTLS_THREADING_PTHREAD
#undef MBEDTLS_NET_C
#undef MBEDTLS_TIMING_C
#undef MBEDTLS_HAVEGE_C
#undef MBEDTLS_FS_IO
#undef MBEDTLS_PSA_ITS_FILE_C
#undef MBEDTLS_PSA_CRYPTO_STORAGE_C
#define MBEDTLS_NO_PLATFORM_ENTROPY

/* ---- record buffers (CONFIG_MBEDTLS_SSL_IN/OUT_CONTENT_LEN) ---- */
#define MBEDTLS_SSL_IN_CONTENT_LEN 4096
#define MBEDTLS_SSL_OUT_CONTENT_LEN 4096
#define MBEDTLS_SSL_MAX_FRAGMENT_LENGTH
/* DTLS handshake reassembly buffer: a PSK handshake's flights are a few hundred bytes. */
#define MBEDTLS_SSL_DTLS_MAX_BUFFERING 4096

/* ---- protocols: TLS 1.2 and DTLS 1.2 only ---- */
#undef MBEDTLS_SSL_PROTO_TLS1
#undef MBEDTLS_SSL_PROTO_TLS1_1
#undef MBEDTLS_SSL_CBC_RECORD_SPLITTING
#undef MBEDTLS_SSL_RENEGOTIATION
#undef MBEDTLS_SSL_SESSION_TICKETS
#undef MBEDTLS_SSL_TICKET_C
#undef MBEDTLS_SSL_CACHE_C
#undef MBEDTLS_SSL_DTLS_SRTP

/* ---- key exchanges: PSK (control) and ECDHE-ECDSA (wss) ---- */
#undef MBEDTLS_KEY_EXCHANGE_DHE_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDHE_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_RSA_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_DHE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDHE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDH_ECDSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDH_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED
#define MBEDTLS_SSL_CIPHERSUITES                                                                   \
    MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256, MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384,              \
        MBEDTLS_TLS_PSK_WITH_AES_128_CCM, MBEDTLS_TLS_PSK_WITH_AES_256_CCM,                        \
        MBEDTLS_TLS_PSK_WITH_AES_128_CCM_8, MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,       \
        MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384

/* ---- ciphers and curves the suites and the certificates need ---- */
#undef MBEDTLS_DHM_C
#undef MBEDTLS_ARC4_C
#undef MBEDTLS_BLOWFISH_C
#undef MBEDTLS_CAMELLIA_C
#undef MBEDTLS_ARIA_C
#undef MBEDTLS_DES_C
#undef MBEDTLS_XTEA_C
#undef MBEDTLS_CHACHA20_C
#undef MBEDTLS_CHACHAPOLY_C
#undef MBEDTLS_POLY1305_C
#undef MBEDTLS_CIPHER_MODE_CBC
#undef MBEDTLS_CIPHER_MODE_CFB
#undef MBEDTLS_CIPHER_MODE_OFB
#undef MBEDTLS_CIPHER_MODE_CTR
/* MBEDTLS_CIPHER_MODE_XTS stays: encrypted NVS is AES-256-XTS. */
#undef MBEDTLS_MD5_C
#undef MBEDTLS_RIPEMD160_C
/* MBEDTLS_SHA1_C stays: Sec-WebSocket-Accept is base64(SHA-1(key ++ GUID)), RFC 6455. */
#undef MBEDTLS_ECP_DP_SECP192R1_ENABLED
#undef MBEDTLS_ECP_DP_SECP224R1_ENABLED
#undef MBEDTLS_ECP_DP_SECP521R1_ENABLED
#undef MBEDTLS_ECP_DP_SECP192K1_ENABLED
#undef MBEDTLS_ECP_DP_SECP224K1_ENABLED
#undef MBEDTLS_ECP_DP_SECP256K1_ENABLED
#undef MBEDTLS_ECP_DP_BP256R1_ENABLED
#undef MBEDTLS_ECP_DP_BP384R1_ENABLED
#undef MBEDTLS_ECP_DP_BP512R1_ENABLED
#undef MBEDTLS_ECP_DP_CURVE25519_ENABLED
#undef MBEDTLS_ECP_DP_CURVE448_ENABLED
#undef MBEDTLS_ECJPAKE_C
/* A smaller ECP window: less heap per scalar multiplication, a little slower. */
#define MBEDTLS_ECP_WINDOW_SIZE 2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0

#endif
