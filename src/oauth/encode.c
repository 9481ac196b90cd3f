/* The encodings of the OAuth2 module (fleetkey/oauth.h): base64url, scopes, form bodies.
 *
 * Each decoder is strict on purpose: a token or parameter has exactly one accepted spelling,
 * so two different strings can never name the same token (a padded and an unpadded jti, a
 * non-canonical last character) and a log line or a denylist entry means one thing. */
#include "fleetkey/oauth.h"

#include <stdlib.h>
#include <string.h>

/* base64url is standard base64 with two letters swapped and no padding (RFC 4648 5): both
 * directions go through fk_base64_* so the project has one base64 codec. */

enum fk_err fk_b64url_encode(const void *in, size_t n, char *out, size_t out_size,
                             size_t *out_len) {
    size_t need = n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
    size_t padded = (n + 2) / 3 * 4;
    if (out == NULL || out_size <= need) {
        return FK_E_NOSPACE;
    }
    char *tmp = malloc(padded + 1);
    if (tmp == NULL) {
        return FK_E_NOMEM;
    }
    enum fk_err rc = fk_base64_encode(in, n, tmp, padded + 1);
    if (rc == FK_OK) {
        for (size_t i = 0; i < need; i++) {
            out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : tmp[i];
        }
        out[need] = '\0';
        if (out_len != NULL) {
            *out_len = need;
        }
    }
    fk_wipe(tmp, padded + 1); /* the input may be a secret (refresh tokens are random bytes) */
    free(tmp);
    return rc;
}

enum fk_err fk_b64url_decode(const char *in, size_t len, uint8_t *out, size_t out_size,
                             size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    char *tmp = NULL, *again = NULL;
    size_t n = 0;
    /* 6 bits cannot end a byte; padding, '+', '/' and white space are not base64url. */
    FK_ENSURE(len % 4 != 1, FK_E_PARSE);
    FK_ENSURE(len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1) <= out_size, FK_E_NOSPACE);
    tmp = malloc(len + 3);
    again = malloc(len + 1);
    FK_ENSURE(tmp != NULL && again != NULL, FK_E_NOMEM);
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        FK_ENSURE((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_',
                  FK_E_PARSE);
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    size_t padded = len;
    while (padded % 4 != 0) {
        tmp[padded++] = '=';
    }
    FK_GUARD(fk_base64_decode(tmp, padded, out, out_size, &n));
    /* RFC 4648 3.5: non-zero pad bits would give a second spelling of the same bytes: only
     * the canonical one (what encoding gives back) is accepted. */
    FK_GUARD(fk_b64url_encode(out, n, again, len + 1, NULL));
    FK_ENSURE(memcmp(again, in, len) == 0, FK_E_PARSE);
    if (out_len != NULL) {
        *out_len = n;
    }
    rc = FK_OK;
out:
    fk_free_secret(tmp, tmp != NULL ? len + 3 : 0);
    fk_free_secret(again, again != NULL ? len + 1 : 0);
    return rc;
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

/* Percent-decodes buf[0..len) into out. */
static enum fk_err form_decode(const uint8_t *buf, size_t len, char *out, size_t out_size) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = buf[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            uint8_t b = 0;
            size_t n = 0;
            if (len - i < 3 ||
                fk_hex_decode((const char *)buf + i + 1, 2, &b, 1, &n, NULL) != FK_OK) {
                return FK_E_PARSE;
            }
            c = b;
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
