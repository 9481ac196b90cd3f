/* Secrets (wipe, constant-time compare, randomness), hex/base64, option numbers and CRC32. */
#include "fleetkey/common.h"

#include "fkd/nvs_format.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fk_wipe(void *p, size_t len) {
    if (p != NULL && len > 0) {
        /* glibc's explicit_bzero: the optimised memset behind a compiler barrier, so the
         * store cannot be dropped as dead. OPENSSL_cleanse on x86-64 stores 8 bytes per
         * iteration: the batch workers wipe each device's 24 KB NVS image and its buffers,
         * and spent 2.4 % of their CPU there (issue 19). */
        explicit_bzero(p, len);
    }
}

void *fk_grow(void *arr, size_t *cap, size_t n, size_t elem, size_t first) {
    if (n < *cap) {
        return arr;
    }
    size_t ncap = *cap != 0 ? *cap : first != 0 ? first : 1;
    while (ncap <= n || ncap == *cap) { /* doubles at least once, past n in any case */
        if (ncap > SIZE_MAX / 2) {
            return NULL;
        }
        ncap *= 2;
    }
    if (elem == 0 || ncap > SIZE_MAX / elem) {
        return NULL;
    }
    void *na = realloc(arr, ncap * elem);
    if (na != NULL) {
        *cap = ncap;
    }
    return na;
}

void fk_free_secret(void *p, size_t len) {
    fk_wipe(p, len);
    free(p);
}

int fk_ct_equal(const void *a, const void *b, size_t n) {
    /* CRYPTO_memcmp reads all n bytes whatever they hold: no early exit. */
    return CRYPTO_memcmp(a, b, n) == 0;
}

enum fk_err fk_random(void *buf, size_t len) {
    if (len > (size_t)INT32_MAX) {
        return FK_E_ARG;
    }
    return RAND_priv_bytes(buf, (int)len) == 1 ? FK_OK : FK_E_CRYPTO;
}

static const char hexdig[] = "0123456789abcdef";

enum fk_err fk_hex_encode(const void *in, size_t n, char *out, size_t out_size) {
    const uint8_t *p = in;
    if (out_size == 0 || n > (out_size - 1) / 2) {
        return FK_E_NOSPACE;
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[p[i] >> 4];
        out[2 * i + 1] = hexdig[p[i] & 15];
    }
    out[2 * n] = '\0';
    return FK_OK;
}

enum fk_err fk_parse_ulong(const char *s, unsigned long max, unsigned long *out) {
    char *end = NULL;
    /* Checked before strtoul, which would take "-1" as ULONG_MAX and "" as 0. */
    if (s == NULL || s[0] == '\0' || s[0] == '-') {
        return FK_E_ARG;
    }
    unsigned long v = strtoul(s, &end, 10);
    if (*end != '\0' || v > max) {
        return FK_E_ARG;
    }
    *out = v;
    return FK_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

enum fk_err fk_hex_decode(const char *in, size_t len, uint8_t *out, size_t out_size,
                          size_t *out_len, size_t *bad_at) {
    if (len % 2 != 0) {
        if (bad_at != NULL) {
            *bad_at = len;
        }
        return FK_E_PARSE;
    }
    if (len / 2 > out_size) {
        return FK_E_NOSPACE;
    }
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval(in[i]);
        int lo = hexval(in[i + 1]);
        if (hi < 0 || lo < 0) {
            if (bad_at != NULL) {
                *bad_at = hi < 0 ? i : i + 1;
            }
            return FK_E_PARSE;
        }
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    if (out_len != NULL) {
        *out_len = len / 2;
    }
    return FK_OK;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

enum fk_err fk_base64_encode(const void *in, size_t n, char *out, size_t out_size) {
    const uint8_t *p = in;
    size_t need = (n + 2) / 3 * 4 + 1;
    if (out_size < need) {
        return FK_E_NOSPACE;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t left = n - i;
        if (left > 1) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (left > 2) {
            v |= p[i + 2];
        }
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = left > 1 ? b64[(v >> 6) & 63] : '=';
        out[o++] = left > 2 ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return FK_OK;
}

static int b64val(char c) {
    const char *p = memchr(b64, c, 64);
    return (p != NULL && c != '\0') ? (int)(p - b64) : -1;
}

enum fk_err fk_base64_decode(const char *in, size_t len, uint8_t *out, size_t out_size,
                             size_t *out_len) {
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    size_t pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            continue;
        }
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64val(c);
        if (v < 0 || pad > 0) { /* a digit after padding, or not a base64 digit */
            return FK_E_PARSE;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_size) {
                return FK_E_NOSPACE;
            }
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be padding zeros, and at most two '=' can end a quantum. */
    if (pad > 2 || bits >= 6 || (acc & ((1u << bits) - 1u)) != 0) {
        return FK_E_PARSE;
    }
    if (out_len != NULL) {
        *out_len = o;
    }
    return FK_OK;
}

uint32_t fk_crc32_le(uint32_t crc, const void *buf, size_t len) {
    return fkd_crc32_le(crc, buf, len);
}

void fk_time_rfc3339(long long unix_seconds, char out[21]) {
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Digits buf[0..n) as a number; -1 when one is not a digit. */
static long digits(const char *buf, size_t n) {
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9') {
            return -1;
        }
        v = v * 10 + (buf[i] - '0');
    }
    return v;
}

enum fk_err fk_time_parse_rfc3339(const char *buf, size_t len, long long *out) {
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (buf == NULL || out == NULL || len < 20 || (len > 20 && buf[20] != '\0')) {
        return FK_E_PARSE;
    }
    /* RFC 3339 section 5.6 date-time, restricted to the one form we write: full-date "T"
     * partial-time "Z", no time-secfrac, no numeric offset. */
    if (buf[4] != '-' || buf[7] != '-' || buf[10] != 'T' || buf[13] != ':' || buf[16] != ':' ||
        buf[19] != 'Z') {
        return FK_E_PARSE;
    }
    long y = digits(buf, 4), mo = digits(buf + 5, 2), d = digits(buf + 8, 2);
    long h = digits(buf + 11, 2), mi = digits(buf + 14, 2), s = digits(buf + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 ||
        s > 59) {
        return FK_E_PARSE;
    }
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) {
        return FK_E_PARSE;
    }
    /* Days since 1970-01-01 (civil-from-days inverse, H. Hinnant), no time zone, no libc. */
    long yy = mo <= 2 ? y - 1 : y;
    long era = yy / 400;
    long yoe = yy - era * 400;
    long doy = (153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long long days = (long long)era * 146097 + doe - 719468;
    *out = days * 86400 + h * 3600 + mi * 60 + s;
    return FK_OK;
}

int fk_name_valid(const char *s, size_t n, size_t max) {
    if (n == 0 || n > max || s[0] == '.' || s[0] == '-') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}
