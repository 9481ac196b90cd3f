/* Device-wide basics: the error table, the log callback, wipe, constant-time compare and
 * fingerprints. Digests go through mbedTLS's generic md API, which is the same in 2.28 and
 * 3.x, so nothing version-specific lives here. */
#include "fkd/common.h"

#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <stdio.h>
#include <string.h>

static const char *const err_text[] = {
#define FKD_ERR_TEXT(name, text) text,
    FKD_ERR_TABLE(FKD_ERR_TEXT)
#undef FKD_ERR_TEXT
};
static const char *const err_name[] = {
#define FKD_ERR_NAME(name, text) #name,
    FKD_ERR_TABLE(FKD_ERR_NAME)
#undef FKD_ERR_NAME
};

const char *fkd_strerror(enum fkd_err rc) {
    if ((unsigned)rc >= FKD_ERR_COUNT) {
        return "unknown error";
    }
    return err_text[rc];
}

const char *fkd_errname(enum fkd_err rc) {
    if ((unsigned)rc >= FKD_ERR_COUNT) {
        return "FKD_E_UNKNOWN";
    }
    return err_name[rc];
}

static fkd_log_fn *log_fn;
static void *log_user;
static enum fkd_log_level log_max = FKD_LOG_INFO;

void fkd_log_set(fkd_log_fn *fn, void *user, enum fkd_log_level max_level) {
    log_fn = fn;
    log_user = user;
    log_max = max_level;
}

void fkd_log(enum fkd_log_level lvl, const char *fmt, ...) {
    if (log_fn == NULL || lvl > log_max) {
        return;
    }
    char line[FKD_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    log_fn(log_user, lvl, line);
}

const char *fkd_log_level_name(enum fkd_log_level lvl) {
    switch (lvl) {
    case FKD_LOG_ERROR:
        return "E";
    case FKD_LOG_WARN:
        return "W";
    case FKD_LOG_INFO:
        return "I";
    case FKD_LOG_DEBUG:
        return "D";
    }
    return "?";
}

void fkd_wipe(void *p, size_t n) {
    if (p != NULL && n > 0) {
        mbedtls_platform_zeroize(p, n);
    }
}

int fkd_ct_equal(const void *a, const void *b, size_t n) {
    const volatile uint8_t *x = a;
    const volatile uint8_t *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(x[i] ^ y[i]); /* no early exit: time depends on n only */
    }
    return diff == 0;
}

const char *fkd_fpr(const uint8_t *data, size_t len, char out[FKD_FPR_LEN]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (md == NULL || mbedtls_md(md, data, len, d) != 0) {
        memcpy(out, "sha256:?", 9);
        return out;
    }
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < 8; i++) {
        out[7 + 2 * i] = hex[d[i] >> 4];
        out[8 + 2 * i] = hex[d[i] & 15u];
    }
    out[23] = '\0';
    fkd_wipe(d, sizeof d);
    return out;
}
