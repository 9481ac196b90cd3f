/* The encodings of the OAuth2 module (fleetkey/oauth.h): base64url, scopes, form bodies.
 *
 * Each decoder is strict on purpose: a token or parameter has exactly one accepted spelling,
 * so two different strings can never name the same token (a padded and an unpadded jti, a
 * non-canonical last character) and a log line or a denylist entry means one thing. */
#include "fleetkey/oauth.h"

#include <string.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

enum fk_err fk_b64url_encode(const void *in, size_t n, char *out, size_t out_size,
                             size_t *out_len) {
    const uint8_t *p = in;
    size_t need = n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
    if (out == NULL || out_size <= need) {
        return FK_E_NOSPACE;
    }
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
    }
    out[o] = '\0';
    if (out_len != NULL) {
        *out_len = o;
    }
    return FK_OK;
}

static int b64url_val(char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

enum fk_err fk_b64url_decode(const char *in, size_t len, uint8_t *out, size_t out_size,
                             size_t *out_len) {
    if (len % 4 == 1) {
        return FK_E_PARSE; /* 6 bits cannot end a byte */
    }
    size_t need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (need > out_size) {
        return FK_E_NOSPACE;
    }
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val(in[i]);
        if (v < 0) {
            return FK_E_PARSE;
        }
        acc = (acc << 6 | (uint32_t)v) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* RFC 4648 3.5: the pad bits of the last character must be zero (canonical form). */
    if (bits > 0 && (acc & ((1u << bits) - 1u)) != 0) {
        return FK_E_PARSE;
    }
    if (out_len != NULL) {
        *out_len = o;
    }
    return FK_OK;
}

/* ---- scopes ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
} SCOPES[] = {{"fleet:read", FK_SCOPE_FLEET_READ},
              {"fleet:write", FK_SCOPE_FLEET_WRITE},
              {"robot:command", FK_SCOPE_ROBOT_COMMAND}};

enum fk_err fk_oauth_scope_parse(const char *s, size_t len, unsigned *mask) {
    unsigned m = 0;
    size_t i = 0;
    while (i < len) {
        /* RFC 6749 3.3: scope-tokens separated by single spaces. */
        size_t j = i;
        while (j < len && s[j] != ' ') {
            j++;
        }
        if (j == i) {
            return FK_E_PARSE; /* leading, trailing or double space */
        }
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof SCOPES / sizeof SCOPES[0]; k++) {
            if (strlen(SCOPES[k].name) == j - i && memcmp(SCOPES[k].name, s + i, j - i) == 0) {
                bit = SCOPES[k].bit;
            }
        }
        if (bit == 0) {
            return FK_E_PARSE;
        }
        m |= bit;
        i = j + 1;
        if (j < len && i == len) {
            return FK_E_PARSE; /* trailing space */
        }
    }
    *mask = m;
    return FK_OK;
}

void fk_oauth_scope_format(unsigned mask, char out[FK_OAUTH_SCOPE_SIZE]) {
    size_t o = 0;
    out[0] = '\0';
    for (size_t k = 0; k < sizeof SCOPES / sizeof SCOPES[0]; k++) {
        if (mask & SCOPES[k].bit) {
            size_t n = strlen(SCOPES[k].name);
            if (o > 0) {
                out[o++] = ' ';
            }
            memcpy(out + o, SCOPES[k].name, n);
            o += n;
            out[o] = '\0';
        }
    }
}

/* ---- form bodies ------------------------------------------------------------------------ */

static int hexval(uint8_t c) {
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

/* Percent-decodes buf[0..len) into out. */
static enum fk_err form_decode(const uint8_t *buf, size_t len, char *out, size_t out_size) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = buf[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (len - i < 3 || hexval(buf[i + 1]) < 0 || hexval(buf[i + 2]) < 0) {
                return FK_E_PARSE;
            }
            c = hexval(buf[i + 1]) << 4 | hexval(buf[i + 2]);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            return FK_E_PARSE; /* no NUL or control character reaches a name, a log or SQL */
        }
        if (o + 1 >= out_size) {
            return FK_E_TOOBIG;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return FK_OK;
}

enum fk_err fk_oauth_form_get(const uint8_t *buf, size_t len, const char *name, char *out,
                              size_t out_size, int *found) {
    enum fk_err rc = FK_E_INTERNAL;
    size_t nlen = strlen(name);
    int seen = 0;
    FK_ENSURE(out != NULL && out_size > 0, FK_E_ARG);
    out[0] = '\0';
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && buf[end] != '&') {
            end++;
        }
        size_t eq = i;
        while (eq < end && buf[eq] != '=') {
            eq++;
        }
        /* Names are compared raw: ours are plain ASCII, and an escaped spelling of one is not
         * accepted as it. */
        if (eq - i == nlen && memcmp(buf + i, name, nlen) == 0) {
            FK_ENSURE(!seen, FK_E_PARSE);
            seen = 1;
            FK_GUARD(form_decode(buf + (eq < end ? eq + 1 : end), eq < end ? end - eq - 1 : 0, out,
                                 out_size));
        }
        i = end + 1;
    }
    if (found != NULL) {
        *found = seen;
    }
    rc = FK_OK;
out:
    if (rc != FK_OK && out != NULL && out_size > 0) {
        fk_wipe(out, out_size); /* a half-decoded refresh token is still a secret */
        out[0] = '\0';
    }
    return rc;
}
