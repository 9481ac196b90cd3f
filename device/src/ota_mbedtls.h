/* Mbed TLS 2.28 / 3.x differences for the OTA code (ota.c, sbv2_verify.c): hashing in
 * pieces, RSA-PSS verify, EC key fields. Kept apart from mbedtls_compat.h only because that
 * file was being changed by the wss work at the same time; it belongs there and can move in
 * one piece. Nothing here allocates or touches the OS. */
#ifndef FKD_OTA_MBEDTLS_H
#define FKD_OTA_MBEDTLS_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/version.h>
#if MBEDTLS_VERSION_MAJOR >= 3
#include <mbedtls/build_info.h>
#elif defined(MBEDTLS_CONFIG_FILE)
#include MBEDTLS_CONFIG_FILE
#else
#include <mbedtls/config.h>
#endif

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
