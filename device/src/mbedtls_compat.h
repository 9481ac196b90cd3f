/* The one place where Mbed TLS 2.28 (Debian 12) and 3.x differ for the device library.
 *
 * Device sources include this header instead of reaching for version-specific names: the
 * configuration header moved (config.h -> build_info.h), SHA-256 lost its _ret suffix, and 3.x
 * needs psa_crypto_init() before any TLS when MBEDTLS_USE_PSA_CRYPTO is on. Everything else the
 * device code uses (ssl, ssl_cookie, ctr_drbg, entropy, platform_util) kept its API. Nothing
 * here allocates or touches the OS. */
#ifndef FKD_MBEDTLS_COMPAT_H
#define FKD_MBEDTLS_COMPAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fkd/net.h"

#include <mbedtls/version.h>
#if MBEDTLS_VERSION_MAJOR >= 3
#include <mbedtls/build_info.h>
#else
#if defined(MBEDTLS_CONFIG_FILE)
#include MBEDTLS_CONFIG_FILE
#else
#include <mbedtls/config.h>
#endif
#endif

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl_cookie.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_USE_PSA_CRYPTO)
#include <psa/crypto.h>
#endif

/* Values of MBEDTLS_ERR_NET_SEND_FAILED / _RECV_FAILED, which live in net_sockets.h, a header
 * that pulls in the OS socket layer the device sources must not see. Stable across 2.x/3.x. */
#define FKD_MBEDTLS_ERR_NET_SEND_FAILED (-0x004E)
#define FKD_MBEDTLS_ERR_NET_RECV_FAILED (-0x004C)

/* SHA-256 of len bytes into out[32]; 0 or an Mbed TLS error code. */
static inline int fkd_mbedtls_sha256(const void *in, size_t len, uint8_t out[32]) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha256((const unsigned char *)in, len, out, 0);
#else
    return mbedtls_sha256_ret((const unsigned char *)in, len, out, 0);
#endif
}

/* SHA-1 of len bytes into out[20] (the WebSocket accept key, RFC 6455 4.2.2; not a security
 * use of SHA-1); 0 or an Mbed TLS error code. */
static inline int fkd_mbedtls_sha1(const void *in, size_t len, uint8_t out[20]) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha1((const unsigned char *)in, len, out);
#else
    return mbedtls_sha1_ret((const unsigned char *)in, len, out);
#endif
}

/* Parses a private key (PEM with its NUL counted in len, or DER); 3.0 added the RNG used for
 * blinding during the pairwise check. */
static inline int fkd_mbedtls_pk_parse_key(mbedtls_pk_context *pk, const uint8_t *key, size_t len,
                                           mbedtls_ctr_drbg_context *drbg) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_pk_parse_key(pk, key, len, NULL, 0, mbedtls_ctr_drbg_random, drbg);
#else
    (void)drbg;
    return mbedtls_pk_parse_key(pk, key, len, NULL, 0);
#endif
}

/* 1 when certificate and key belong together; 3.0 added the RNG. */
static inline int fkd_mbedtls_pk_pair_ok(const mbedtls_pk_context *pub, const mbedtls_pk_context *prv,
                                         mbedtls_ctr_drbg_context *drbg) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_pk_check_pair(pub, prv, mbedtls_ctr_drbg_random, drbg) == 0;
#else
    (void)drbg;
    return mbedtls_pk_check_pair(pub, prv) == 0;
#endif
}

/* TLS 1.2 as the lowest version a client offers (1.3 too where the library has it). */
static inline void fkd_mbedtls_conf_min_tls12(mbedtls_ssl_config *conf) {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

/* 1 when crt carries a subjectAltName extension, whatever name types it lists (2.28 keeps only
 * dNSName and otherName entries in subject_alt_names, so an IP-only SAN looks empty there). */
static inline int fkd_mbedtls_crt_has_san(const mbedtls_x509_crt *crt) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_x509_crt_has_ext_type(crt, MBEDTLS_X509_EXT_SUBJECT_ALT_NAME);
#else
    return (crt->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME) != 0;
#endif
}

/* A TLS client whose input record buffer is smaller than the 16 KiB a server may send asks
 * for the largest RFC 6066 max_fragment_length that fits (a chip build of the wss client sets
 * MBEDTLS_SSL_IN_CONTENT_LEN to a few KiB); with the full 16 KiB buffer nothing is asked. */
static inline int fkd_mbedtls_conf_fit_records(mbedtls_ssl_config *conf) {
#if defined(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)
    unsigned char code;
    if (MBEDTLS_SSL_IN_CONTENT_LEN >= 16384) {
        return 0;
    } else if (MBEDTLS_SSL_IN_CONTENT_LEN >= 4096) {
        code = MBEDTLS_SSL_MAX_FRAG_LEN_4096;
    } else if (MBEDTLS_SSL_IN_CONTENT_LEN >= 2048) {
        code = MBEDTLS_SSL_MAX_FRAG_LEN_2048;
    } else if (MBEDTLS_SSL_IN_CONTENT_LEN >= 1024) {
        code = MBEDTLS_SSL_MAX_FRAG_LEN_1024;
    } else {
        code = MBEDTLS_SSL_MAX_FRAG_LEN_512;
    }
    return mbedtls_ssl_conf_max_frag_len(conf, code);
#else
    (void)conf;
    return 0;
#endif
}

/* Seeds a CTR-DRBG straight from the port's strong entropy source (fkd_net_entropy). No
 * mbedtls_entropy_context in between: on Debian's configuration (HAVEGE on) that context alone
 * is 38 KB, and the port's source (getrandom, esp_fill_random) is already a full-entropy
 * source as CTR-DRBG expects. */
static inline int fkd_mbedtls_entropy_cb(void *ctx, unsigned char *out, size_t len) {
    size_t olen = 0;
    if (fkd_net_entropy(ctx, out, len, &olen) != 0 || olen != len) {
        return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
    }
    return 0;
}
static inline int fkd_mbedtls_drbg_seed(mbedtls_ctr_drbg_context *drbg, const char *pers) {
    return mbedtls_ctr_drbg_seed(drbg, fkd_mbedtls_entropy_cb, NULL, (const unsigned char *)pers,
                                 strlen(pers));
}

/* Library-wide start-up that some versions need before the first handshake; idempotent. */
static inline int fkd_mbedtls_global_init(void) {
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_USE_PSA_CRYPTO)
    return psa_crypto_init() == PSA_SUCCESS ? 0 : -1;
#else
    return 0;
#endif
}

/* Restricts a configuration to (D)TLS 1.2: 3.2 replaced the major/minor pair by one enum. */
static inline void fkd_mbedtls_conf_tls12_only(mbedtls_ssl_config *conf) {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    mbedtls_ssl_conf_min_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_max_tls_version(conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

/* A handshake failure code in words, for the listener's log. 3.0 folded the per-message
 * BAD_HS_* codes into generic ones, so each is mapped only where it exists. */
static inline const char *fkd_mbedtls_reason(int ret) {
    switch (ret) {
    case MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY:
        return "unknown PSK identity";
    case MBEDTLS_ERR_SSL_INVALID_MAC:
        return "bad record MAC in handshake (wrong PSK?)";
    case MBEDTLS_ERR_SSL_TIMEOUT:
        return "handshake timed out";
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        return "peer sent a fatal alert";
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        return "peer closed";
    case MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED:
        return "cookie required";
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
        return "out of memory";
#if defined(MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN)
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        return "no common PSK ciphersuite";
#endif
#if defined(MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE)
    case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
        return "no common PSK ciphersuite or parameters";
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO)
    case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO:
        return "bad ClientHello";
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_HS_CLIENT_KEY_EXCHANGE)
    case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_KEY_EXCHANGE:
        return "bad ClientKeyExchange";
#endif
#if defined(MBEDTLS_ERR_SSL_BAD_HS_FINISHED)
    case MBEDTLS_ERR_SSL_BAD_HS_FINISHED:
        return "Finished did not verify (wrong PSK?)";
#endif
#if defined(MBEDTLS_ERR_SSL_DECODE_ERROR)
    case MBEDTLS_ERR_SSL_DECODE_ERROR:
        return "malformed handshake message";
#endif
    default:
        return "protocol error";
    }
}

/* 1 once the handshake of ssl has completed. */
static inline int fkd_mbedtls_handshake_over(const mbedtls_ssl_context *ssl) {
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
    return mbedtls_ssl_is_handshake_over((mbedtls_ssl_context *)ssl);
#elif MBEDTLS_VERSION_MAJOR >= 3
    return ssl->MBEDTLS_PRIVATE(state) == MBEDTLS_SSL_HANDSHAKE_OVER;
#else
    return ssl->state == MBEDTLS_SSL_HANDSHAKE_OVER;
#endif
}

/* ---- OTA (ota.c, app_image.c, sbv2_verify.c): hashing in pieces, RSA-PSS verify, EC key
 * fields. ---- */
#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

static inline int fkd_mbedtls_sha256_starts(mbedtls_sha256_context *c) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha256_starts(c, 0);
#else
    return mbedtls_sha256_starts_ret(c, 0);
#endif
}
static inline int fkd_mbedtls_sha256_update(mbedtls_sha256_context *c, const void *p, size_t n) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha256_update(c, (const unsigned char *)p, n);
#else
    return mbedtls_sha256_update_ret(c, (const unsigned char *)p, n);
#endif
}
static inline int fkd_mbedtls_sha256_finish(mbedtls_sha256_context *c, uint8_t out[32]) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha256_finish(c, out);
#else
    return mbedtls_sha256_finish_ret(c, out);
#endif
}
/* SHA-384 through the SHA-512 module (is384 = 1). */
static inline int fkd_mbedtls_sha384_starts(mbedtls_sha512_context *c) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha512_starts(c, 1);
#else
    return mbedtls_sha512_starts_ret(c, 1);
#endif
}
static inline int fkd_mbedtls_sha384_update(mbedtls_sha512_context *c, const void *p, size_t n) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha512_update(c, (const unsigned char *)p, n);
#else
    return mbedtls_sha512_update_ret(c, (const unsigned char *)p, n);
#endif
}
static inline int fkd_mbedtls_sha384_finish(mbedtls_sha512_context *c, uint8_t out[64]) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_sha512_finish(c, out);
#else
    return mbedtls_sha512_finish_ret(c, out);
#endif
}
/* An RSA public-key context set up for PKCS#1 v2.1 (PSS). */
static inline void fkd_mbedtls_rsa_init_pss(mbedtls_rsa_context *rsa) {
#if MBEDTLS_VERSION_MAJOR >= 3
    mbedtls_rsa_init(rsa);
    (void)mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
#else
    mbedtls_rsa_init(rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
#endif
}
/* RSASSA-PSS verify over a SHA-256 digest, MGF1-SHA-256, the given salt length. 3.0 dropped
 * the rng and mode arguments. */
static inline int fkd_mbedtls_rsa_pss_verify(mbedtls_rsa_context *rsa, const uint8_t hash[32],
                                             int salt_len, const uint8_t *sig) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_rsa_rsassa_pss_verify_ext(rsa, MBEDTLS_MD_SHA256, 32, hash, MBEDTLS_MD_SHA256,
                                             salt_len, sig);
#else
    return mbedtls_rsa_rsassa_pss_verify_ext(rsa, NULL, NULL, MBEDTLS_RSA_PUBLIC,
                                             MBEDTLS_MD_SHA256, 32, hash, MBEDTLS_MD_SHA256,
                                             salt_len, sig);
#endif
}
/* The group id and public point of a parsed EC key (fields are private in 3.x). */
static inline mbedtls_ecp_group_id fkd_mbedtls_ec_grp_id(const mbedtls_ecp_keypair *kp) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return kp->MBEDTLS_PRIVATE(grp).id;
#else
    return kp->grp.id;
#endif
}
static inline int fkd_mbedtls_ec_write_q(const mbedtls_ecp_keypair *kp, uint8_t *out,
                                         size_t out_size, size_t *olen) {
#if MBEDTLS_VERSION_MAJOR >= 3
    return mbedtls_ecp_point_write_binary(&kp->MBEDTLS_PRIVATE(grp), &kp->MBEDTLS_PRIVATE(Q),
                                          MBEDTLS_ECP_PF_UNCOMPRESSED, olen, out, out_size);
#else
    return mbedtls_ecp_point_write_binary(&kp->grp, &kp->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, olen,
                                          out, out_size);
#endif
}

#endif
