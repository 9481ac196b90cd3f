/* fleetkey device library: the one error enum, logging through a callback, secure wipe,
 * constant-time compare and credential fingerprints.
 *
 * Pure C: no OS header, no allocation. The log handler is one process-wide pointer set at
 * start-up by the program (robot-sim, or the ESP-IDF port that forwards to ESP_LOGx); the
 * library never prints. Nothing logged by the device library ever contains secret bytes: at
 * most a fingerprint (fkd_fpr). */
#ifndef FKD_COMMON_H
#define FKD_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FKD_MUST_CHECK __attribute__((warn_unused_result))
#define FKD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FKD_MUST_CHECK
#define FKD_PRINTF(f, a)
#endif

/* The one device error table; fkd_strerror() and the enum come from it. Never reuse a value. */
#define FKD_ERR_TABLE(X)                                                                       \
    X(FKD_OK, "success")                                                                       \
    X(FKD_E_INTERNAL, "internal error")                                                        \
    X(FKD_E_ARG, "invalid argument")                                                           \
    X(FKD_E_IO, "flash input/output error")                                                    \
    X(FKD_E_PARSE, "malformed input")                                                          \
    X(FKD_E_TRUNCATED, "input truncated")                                                      \
    X(FKD_E_CRC, "checksum mismatch")                                                          \
    X(FKD_E_RANGE, "value out of range")                                                       \
    X(FKD_E_NOSPACE, "not enough space")                                                       \
    X(FKD_E_CRYPTO, "cryptographic operation failed")                                          \
    X(FKD_E_NOTFOUND, "not found")                                                             \
    X(FKD_E_TYPE, "stored type differs")                                                       \
    X(FKD_E_CORRUPT, "storage corrupt")                                                        \
    X(FKD_E_POLICY, "refused by policy")                                                       \
    X(FKD_E_STATE, "not allowed in the current state")                                         \
    X(FKD_E_POWERCUT, "flash stopped (simulated power loss)")                                  \
    X(FKD_E_UNSUPPORTED, "unsupported")                                                        \
    X(FKD_E_PROTOCOL, "protocol error")                                                        \
    X(FKD_E_AUTH, "authentication failed")                                                     \
    X(FKD_E_TIMEOUT, "timed out")

enum fkd_err {
#define FKD_ERR_ENUM(name, text) name,
    FKD_ERR_TABLE(FKD_ERR_ENUM)
#undef FKD_ERR_ENUM
        FKD_ERR_COUNT
};

/* English description of rc; never NULL, also for values outside the enum. */
const char *fkd_strerror(enum fkd_err rc);
/* The enumerator's name ("FKD_E_CRC"); never NULL. */
const char *fkd_errname(enum fkd_err rc);

/* Guards: the function declares `enum fkd_err rc` (starting as a failure) and one `out:`. */
#define FKD_ENSURE(c, e)                                                                       \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            rc = (e);                                                                          \
            goto out;                                                                          \
        }                                                                                      \
    } while (0)
#define FKD_GUARD(call)                                                                        \
    do {                                                                                       \
        rc = (call);                                                                           \
        if (rc != FKD_OK) {                                                                    \
            goto out;                                                                          \
        }                                                                                      \
    } while (0)

/* ---- logging ------------------------------------------------------------------------------ */
enum fkd_log_level { FKD_LOG_ERROR = 0, FKD_LOG_WARN = 1, FKD_LOG_INFO = 2, FKD_LOG_DEBUG = 3 };

/* One formatted line without a trailing newline; line is valid during the call only. */
typedef void fkd_log_fn(void *user, enum fkd_log_level lvl, const char *line);

/* Sets the process-wide handler (NULL: drop everything) and the most verbose level passed to
 * it. Call before any other fkd_ function; not thread-safe against concurrent fkd_log. */
void fkd_log_set(fkd_log_fn *fn, void *user, enum fkd_log_level max_level);
/* Formats into a bounded stack buffer (FKD_LOG_LINE_MAX; longer lines are cut) and hands it to
 * the handler. Never pass secret bytes; use fkd_fpr. */
#define FKD_LOG_LINE_MAX 256u
void fkd_log(enum fkd_log_level lvl, const char *fmt, ...) FKD_PRINTF(2, 3);
const char *fkd_log_level_name(enum fkd_log_level lvl);

/* ---- secrets ------------------------------------------------------------------------------ */
/* Zeroes n bytes in a way the compiler cannot drop (mbedtls_platform_zeroize). NULL is ok. */
void fkd_wipe(void *p, size_t n);
/* 1 when a and b (n bytes each) are equal. Time depends on n only, never on the contents. */
int fkd_ct_equal(const void *a, const void *b, size_t n);

/* Fingerprint of a credential for logs: "sha256:" + the first 8 bytes of SHA-256 in hex
 * (23 characters + NUL). Reveals nothing useful about a 32-byte random secret. Returns out. */
#define FKD_FPR_LEN 24u
const char *fkd_fpr(const uint8_t *data, size_t len, char out[FKD_FPR_LEN]);

/* Little-endian helpers used across the device library. */
static inline uint32_t fkd_load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline uint16_t fkd_load_le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void fkd_store_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#ifdef __cplusplus
}
#endif
#endif
