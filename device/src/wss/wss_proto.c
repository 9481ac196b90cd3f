/* The pure parts of the wss client (fkd/wss.h): the URI parser, the RFC 6125 host matcher,
 * the RFC 6455 opening-handshake helpers, UTF-8 validation, and the device-side JSON message
 * parser of docs/wss-protocol.md.
 *
 * Everything here works on (buf, len) slices with every length checked against what remains,
 * writes only into the caller's fixed-size outputs and never allocates, so each function can
 * be unit-tested and fuzzed on its own. The JSON parser is a single-pass validating scanner
 * (no tree, no heap: cJSON would allocate per node): it checks the whole text against
 * RFC 8259 with a depth limit and picks out the few top-level members the device reads. */
#include "fkd/wss.h"

#include "mbedtls_compat.h"

#include <mbedtls/base64.h>
#include <string.h>

/* ---- small ASCII helpers --------------------------------------------------------------------- */

static int lower(int c) {
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int ieq(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen) {
        return 0;
    }
    for (size_t i = 0; i < alen; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

static int is_digit(int c) {
    return c >= '0' && c <= '9';
}

static int is_ldh(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-';
}

static int is_hex(int c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* ---- URI ------------------------------------------------------------------------------------ */

/* Dotted-quad with each part 0..255 and no leading zeros beyond "0". */
static int is_ipv4(const char *h, size_t n) {
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit((unsigned char)h[i]) && i - start < 4) {
            v = v * 10u + (unsigned)(h[i] - '0');
            i++;
        }
        size_t dl = i - start;
        if (dl == 0 || dl > 3 || v > 255 || (dl > 1 && h[start] == '0')) {
            return 0;
        }
        parts++;
        if (i == n) {
            break;
        }
        if (h[i] != '.' || parts == 4) {
            return 0;
        }
        i++;
        if (i == n) {
            return 0;
        }
    }
    return parts == 4;
}

/* A DNS name in LDH form: labels of 1..63 LDH characters, not starting or ending with '-',
 * joined by single dots; total at most 253. */
static int is_dns_name(const char *h, size_t n) {
    if (n == 0 || n > 253) {
        return 0;
    }
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-') {
                return 0;
            }
            label = 0;
            continue;
        }
        if (!is_ldh(c) || (label == 0 && c == '-') || ++label > 63) {
            return 0;
        }
    }
    return label > 0 && h[n - 1] != '-';
}

enum fkd_err fkd_wss_uri_parse(const char *uri, size_t len, struct fkd_wss_uri *out,
                               const char **why) {
    static const char scheme[] = "wss://";
    const char *dummy = NULL;
    if (why == NULL) {
        why = &dummy;
    }
    *why = NULL;
    if (out == NULL) {
        *why = "no output";
        return FKD_E_ARG;
    }
    memset(out, 0, sizeof *out);
    if (uri == NULL) {
        *why = "no URI";
        return FKD_E_ARG;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c >= 0x7F) {
            *why = "space, control or non-ASCII character";
            return FKD_E_PARSE;
        }
    }
    if (len < sizeof scheme - 1 || !ieq(uri, sizeof scheme - 1, scheme, sizeof scheme - 1)) {
        *why = "scheme is not wss://";
        return FKD_E_PARSE;
    }
    const char *p = uri + (sizeof scheme - 1);
    size_t rest = len - (sizeof scheme - 1);
    /* authority = up to the first '/' or '?' (RFC 3986 3.2) */
    size_t auth = 0;
    while (auth < rest && p[auth] != '/' && p[auth] != '?' && p[auth] != '#') {
        auth++;
    }
    if (memchr(p, '@', auth) != NULL) {
        *why = "userinfo is not allowed";
        return FKD_E_PARSE;
    }
    const char *host = p;
    size_t hlen;
    const char *port = NULL;
    size_t plen = 0;
    if (auth > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', auth);
        if (close == NULL) {
            *why = "unterminated [IPv6] host";
            return FKD_E_PARSE;
        }
        host = p + 1;
        hlen = (size_t)(close - host);
        size_t after = (size_t)(close - p) + 1;
        if (hlen < 2) {
            *why = "empty [IPv6] host";
            return FKD_E_PARSE;
        }
        for (size_t i = 0; i < hlen; i++) {
            if (!is_hex((unsigned char)host[i]) && host[i] != ':' && host[i] != '.') {
                *why = "bad character in [IPv6] host";
                return FKD_E_PARSE;
            }
        }
        if (after < auth) {
            if (p[after] != ':') {
                *why = "text after [IPv6] host";
                return FKD_E_PARSE;
            }
            port = p + after + 1;
            plen = auth - after - 1;
        }
        out->host_is_ip = 1;
    } else {
        const char *colon = memchr(p, ':', auth);
        hlen = colon != NULL ? (size_t)(colon - p) : auth;
        if (colon != NULL) {
            port = colon + 1;
            plen = auth - hlen - 1;
        }
        if (hlen == 0) {
            *why = "empty host";
            return FKD_E_PARSE;
        }
        if (is_ipv4(host, hlen)) {
            out->host_is_ip = 1;
        } else if (!is_dns_name(host, hlen)) {
            *why = "host is not a DNS name or an IP address";
            return FKD_E_PARSE;
        }
    }
    if (hlen >= sizeof out->host) {
        *why = "host too long";
        return FKD_E_RANGE;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = FKD_WSS_DEFAULT_PORT;
    if (port != NULL) {
        unsigned long v = 0;
        if (plen == 0 || plen > 5) {
            *why = "bad port";
            return FKD_E_PARSE;
        }
        for (size_t i = 0; i < plen; i++) {
            if (!is_digit((unsigned char)port[i])) {
                *why = "bad port";
                return FKD_E_PARSE;
            }
            v = v * 10u + (unsigned long)(port[i] - '0');
        }
        if (v == 0 || v > 65535u) {
            *why = "port out of range";
            return FKD_E_PARSE;
        }
        out->port = (uint16_t)v;
    }
    const char *path = p + auth;
    size_t pathlen = rest - auth;
    /* RFC 6455 3: "Fragment identifiers are meaningless in the context of WebSocket URIs and
     * MUST NOT be used on these URIs." */
    if (memchr(path, '#', pathlen) != NULL) {
        *why = "fragment is not allowed";
        return FKD_E_PARSE;
    }
    if (pathlen == 0) {
        out->path[0] = '/';
        out->path[1] = '\0';
    } else {
        size_t off = 0;
        if (path[0] == '?') {
            out->path[off++] = '/'; /* "wss://h?q" requests "/?q" (RFC 6455 3) */
        }
        if (off + pathlen >= sizeof out->path) {
            *why = "path too long";
            memset(out, 0, sizeof *out);
            return FKD_E_RANGE;
        }
        memcpy(out->path + off, path, pathlen);
        out->path[off + pathlen] = '\0';
    }
    return FKD_OK;
}

/* ---- RFC 6125 host matching -------------------------------------------------------------------
 */

/* Splits off the first label of s[0..n): its length (up to the first dot). */
static size_t first_label(const char *s, size_t n) {
    const char *dot = memchr(s, '.', n);
    return dot != NULL ? (size_t)(dot - s) : n;
}

int fkd_wss_host_match(const char *pattern, size_t plen, const char *host) {
    if (pattern == NULL || host == NULL || plen == 0) {
        return 0;
    }
    size_t hlen = strlen(host);
    if (hlen > 0 && host[hlen - 1] == '.') {
        hlen--; /* an absolute name: "example.com." is "example.com" */
    }
    if (hlen == 0 || (!is_dns_name(host, hlen) && !is_ipv4(host, hlen))) {
        return 0;
    }
    int wildcard = plen >= 2 && pattern[0] == '*' && pattern[1] == '.';
    const char *rest = wildcard ? pattern + 2 : pattern;
    size_t rlen = wildcard ? plen - 2 : plen;
    /* The pattern, after an optional "*.", must itself be a proper DNS name: that refuses '*'
     * anywhere else ("f*o.example.com", "a.*.example.com"), empty labels and non-ASCII bytes
     * (U-labels; certificates carry A-labels). */
    if (!is_dns_name(rest, rlen)) {
        return 0;
    }
    if (!wildcard) {
        return ieq(pattern, plen, host, hlen);
    }
    /* RFC 6125 6.4.3 and the CA/B Forum rules: the wildcard is the whole left-most label and
     * stands for exactly one label; "*.com" (a single label after it, public-suffix-like) never
     * matches; IP addresses never match a wildcard. */
    if (memchr(rest, '.', rlen) == NULL || is_ipv4(host, hlen)) {
        return 0;
    }
    size_t l0 = first_label(host, hlen);
    if (l0 == 0 || l0 >= hlen) {
        return 0;
    }
    /* A wildcard never stands for an A-label (an IDN): "*.example.com" must not match
     * "xn--bcher-kva.example.com", whose user-visible form the CA never vetted. */
    if (l0 >= 4 && ieq(host, 4, "xn--", 4)) {
        return 0;
    }
    return ieq(rest, rlen, host + l0 + 1, hlen - l0 - 1);
}

int fkd_wss_names_match(const struct fkd_wss_names *n, const char *host) {
    if (n == NULL || host == NULL) {
        return 0;
    }
    if (n->has_san) {
        /* RFC 6125 6.4.4: the CN is checked only when there is no subjectAltName at all. */
        size_t count = n->n_dns < 16 ? n->n_dns : 16;
        for (size_t i = 0; i < count; i++) {
            if (n->dns[i] != NULL && fkd_wss_host_match(n->dns[i], n->dns_len[i], host)) {
                return 1;
            }
        }
        return 0;
    }
    return n->cn != NULL && fkd_wss_host_match(n->cn, n->cn_len, host);
}

/* ---- RFC 6455 opening handshake ---------------------------------------------------------------
 */

enum fkd_err fkd_wss_accept(const char *key, size_t key_len, char out[FKD_WSS_ACCEPT_LEN + 1]) {
    /* RFC 6455 4.2.2 step 5: "concatenate ... with the string
     * "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" ... take the SHA-1 hash ... base64-encode". */
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[64 + sizeof guid];
    uint8_t sha[20];
    size_t olen = 0;
    if (key == NULL || out == NULL || key_len == 0 || key_len > 64) {
        return FKD_E_ARG;
    }
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, guid, sizeof guid - 1);
    if (fkd_mbedtls_sha1(buf, key_len + sizeof guid - 1, sha) != 0 ||
        mbedtls_base64_encode((unsigned char *)out, FKD_WSS_ACCEPT_LEN + 1, &olen, sha,
                              sizeof sha) != 0 ||
        olen != FKD_WSS_ACCEPT_LEN) {
        return FKD_E_CRYPTO;
    }
    out[olen] = '\0';
    return FKD_OK;
}

/* Trims optional whitespace (RFC 7230 OWS) from both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n) {
    while (*n > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) {
        (*n)--;
    }
}

/* 1 when the comma-separated list v contains token (case-insensitive). */
static int list_has(const char *v, size_t n, const char *token) {
    size_t tl = strlen(token);
    while (n > 0) {
        const char *comma = memchr(v, ',', n);
        size_t item = comma != NULL ? (size_t)(comma - v) : n;
        const char *t = v;
        size_t tn = item;
        trim(&t, &tn);
        if (ieq(t, tn, token, tl)) {
            return 1;
        }
        if (comma == NULL) {
            break;
        }
        v += item + 1;
        n -= item + 1;
    }
    return 0;
}

enum fkd_err fkd_wss_check_response(const uint8_t *buf, size_t len, const char *accept, int *status,
                                    const char **why) {
    const char *dummy = NULL;
    int st_dummy = 0;
    if (why == NULL) {
        why = &dummy;
    }
    if (status == NULL) {
        status = &st_dummy;
    }
    *why = NULL;
    *status = 0;
    if (buf == NULL || accept == NULL) {
        *why = "no response";
        return FKD_E_ARG;
    }
    const char *s = (const char *)buf;
    /* Status line: "HTTP/1.1 101 Switching Protocols" */
    const char *eol = NULL;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] == '\r' && s[i + 1] == '\n') {
            eol = s + i;
            break;
        }
    }
    /* HTTP/1.0 is accepted for the status of a refusal (libwebsockets answers a refused
     * upgrade with "HTTP/1.0 403"); a 101 must be HTTP/1.1 (RFC 6455 4.1). */
    if (eol == NULL || (size_t)(eol - s) < 12 ||
        (memcmp(s, "HTTP/1.1 ", 9) != 0 && memcmp(s, "HTTP/1.0 ", 9) != 0) ||
        !is_digit((unsigned char)s[9]) || !is_digit((unsigned char)s[10]) ||
        !is_digit((unsigned char)s[11]) || ((size_t)(eol - s) > 12 && s[12] != ' ')) {
        *why = "malformed status line";
        return FKD_E_PARSE;
    }
    *status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (*status != 101) {
        *why = "HTTP status is not 101";
        return FKD_E_AUTH;
    }
    if (s[7] != '1') {
        *why = "101 over HTTP/1.0";
        return FKD_E_PROTOCOL;
    }
    int upgrade = 0, connection = 0, acc = 0, proto = 0;
    size_t off = (size_t)(eol - s) + 2;
    for (;;) {
        if (off + 2 > len) {
            *why = "headers not terminated";
            return FKD_E_PARSE;
        }
        if (s[off] == '\r' && s[off + 1] == '\n') {
            break; /* the blank line */
        }
        const char *line = s + off;
        size_t ll = 0;
        while (off + ll + 1 < len && !(line[ll] == '\r' && line[ll + 1] == '\n')) {
            ll++;
        }
        if (off + ll + 1 >= len) {
            *why = "headers not terminated";
            return FKD_E_PARSE;
        }
        const char *colon = memchr(line, ':', ll);
        if (colon == NULL || colon == line) {
            *why = "malformed header line";
            return FKD_E_PARSE;
        }
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vn = ll - nl - 1;
        trim(&v, &vn);
        for (size_t i = 0; i < ll; i++) {
            if ((unsigned char)line[i] < 0x20 && line[i] != '\t') {
                *why = "control character in a header";
                return FKD_E_PARSE;
            }
        }
        /* RFC 6455 4.1, client requirements 2..6 on the server's handshake. */
        if (ieq(line, nl, "Upgrade", 7)) {
            upgrade = ieq(v, vn, "websocket", 9);
        } else if (ieq(line, nl, "Connection", 10)) {
            connection = list_has(v, vn, "upgrade");
        } else if (ieq(line, nl, "Sec-WebSocket-Accept", 20)) {
            acc = vn == FKD_WSS_ACCEPT_LEN && memcmp(v, accept, vn) == 0;
        } else if (ieq(line, nl, "Sec-WebSocket-Protocol", 22)) {
            proto = vn == sizeof FKD_WSS_SUBPROTOCOL - 1 && memcmp(v, FKD_WSS_SUBPROTOCOL, vn) == 0;
        } else if (ieq(line, nl, "Sec-WebSocket-Extensions", 24) && vn > 0) {
            /* "If the response includes a Sec-WebSocket-Extensions header field and this
             * header field indicates the use of an extension that was not present in the
             * client's handshake ... the client MUST _Fail the WebSocket Connection_." */
            *why = "server selected an extension we did not offer";
            return FKD_E_PROTOCOL;
        }
        off += ll + 2;
    }
    if (!upgrade) {
        *why = "Upgrade: websocket missing";
    } else if (!connection) {
        *why = "Connection: Upgrade missing";
    } else if (!acc) {
        *why = "Sec-WebSocket-Accept missing or wrong";
    } else if (!proto) {
        *why = "Sec-WebSocket-Protocol is not " FKD_WSS_SUBPROTOCOL;
    } else {
        return FKD_OK;
    }
    return FKD_E_PROTOCOL;
}

/* ---- UTF-8 -------------------------------------------------------------------------------------
 */

int fkd_utf8_valid(const uint8_t *b, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        uint32_t min;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1Fu;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0Fu;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return 0;
        }
        if (need > n - i - 1) {
            return 0;
        }
        for (size_t k = 1; k <= need; k++) {
            uint8_t cc = b[i + k];
            if ((cc & 0xC0u) != 0x80u) {
                return 0;
            }
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFFu || (cp >= 0xD800u && cp <= 0xDFFFu)) {
            return 0;
        }
        i += need + 1;
    }
    return 1;
}

/* ---- JSON (RFC 8259), device side --------------------------------------------------------- */

#define JSON_DEPTH_MAX 16

enum jtype { J_NONE = 0, J_STR, J_NUM, J_OBJ, J_ARR, J_TRUE, J_FALSE, J_NULL };

struct jscan {
    const uint8_t *b;
    size_t n;
    size_t i;
    const char *why;
};

static void ws_skip(struct jscan *s) {
    while (s->i < s->n &&
           (s->b[s->i] == ' ' || s->b[s->i] == '\t' || s->b[s->i] == '\n' || s->b[s->i] == '\r')) {
        s->i++;
    }
}

/* A string starting at s->i ('"'); leaves s->i after the closing quote. The raw contents
 * (escapes included) are [*start, *start + *len). */
static int scan_str(struct jscan *s, size_t *start, size_t *len) {
    if (s->i >= s->n || s->b[s->i] != '"') {
        s->why = "expected a string";
        return -1;
    }
    s->i++;
    *start = s->i;
    while (s->i < s->n) {
        uint8_t c = s->b[s->i];
        if (c == '"') {
            *len = s->i - *start;
            s->i++;
            return 0;
        }
        if (c < 0x20) {
            s->why = "control character in a string";
            return -1;
        }
        if (c == '\\') {
            if (s->n - s->i < 2) {
                break;
            }
            uint8_t e = s->b[s->i + 1];
            if (e == 'u') {
                if (s->n - s->i < 6) {
                    break;
                }
                for (size_t k = 2; k < 6; k++) {
                    if (!is_hex(s->b[s->i + k])) {
                        s->why = "bad \\u escape";
                        return -1;
                    }
                }
                s->i += 6;
                continue;
            }
            if (memchr("\"\\/bfnrt", e, 8) == NULL) {
                s->why = "bad escape";
                return -1;
            }
            s->i += 2;
            continue;
        }
        s->i++;
    }
    s->why = "unterminated string";
    return -1;
}

static int scan_num(struct jscan *s) {
    size_t st = s->i;
    if (s->i < s->n && s->b[s->i] == '-') {
        s->i++;
    }
    if (s->i >= s->n || !is_digit(s->b[s->i])) {
        s->why = "bad number";
        return -1;
    }
    if (s->b[s->i] == '0') {
        s->i++;
    } else {
        while (s->i < s->n && is_digit(s->b[s->i])) {
            s->i++;
        }
    }
    if (s->i < s->n && s->b[s->i] == '.') {
        s->i++;
        if (s->i >= s->n || !is_digit(s->b[s->i])) {
            s->why = "bad number";
            return -1;
        }
        while (s->i < s->n && is_digit(s->b[s->i])) {
            s->i++;
        }
    }
    if (s->i < s->n && (s->b[s->i] == 'e' || s->b[s->i] == 'E')) {
        s->i++;
        if (s->i < s->n && (s->b[s->i] == '+' || s->b[s->i] == '-')) {
            s->i++;
        }
        if (s->i >= s->n || !is_digit(s->b[s->i])) {
            s->why = "bad number";
            return -1;
        }
        while (s->i < s->n && is_digit(s->b[s->i])) {
            s->i++;
        }
    }
    return s->i > st ? 0 : -1;
}

static int scan_lit(struct jscan *s, const char *lit) {
    size_t l = strlen(lit);
    if (s->n - s->i < l || memcmp(s->b + s->i, lit, l) != 0) {
        s->why = "bad literal";
        return -1;
    }
    s->i += l;
    return 0;
}

/* Any value, nested containers bounded by depth; *type says what it was. Iterative over
 * containers would be longer; the recursion is bounded by JSON_DEPTH_MAX frames. */
/* A member name and its ':' (whitespace around both skipped before the value). */
static int scan_key(struct jscan *s, size_t *start, size_t *len) {
    ws_skip(s);
    if (scan_str(s, start, len) != 0) {
        return -1;
    }
    ws_skip(s);
    if (s->i >= s->n || s->b[s->i] != ':') {
        s->why = "expected ':'";
        return -1;
    }
    s->i++;
    return 0;
}

static int scan_value(struct jscan *s, int depth, enum jtype *type) {
    ws_skip(s);
    if (s->i >= s->n) {
        s->why = "value expected";
        return -1;
    }
    uint8_t c = s->b[s->i];
    size_t a, b;
    enum jtype dummy;
    if (c == '"') {
        *type = J_STR;
        return scan_str(s, &a, &b);
    }
    if (c == '{' || c == '[') {
        if (depth >= JSON_DEPTH_MAX) {
            s->why = "nested too deep";
            return -1;
        }
        int obj = c == '{';
        uint8_t close = obj ? '}' : ']';
        *type = obj ? J_OBJ : J_ARR;
        s->i++;
        ws_skip(s);
        if (s->i < s->n && s->b[s->i] == close) {
            s->i++;
            return 0;
        }
        for (;;) {
            if (obj && scan_key(s, &a, &b) != 0) {
                return -1;
            }
            if (scan_value(s, depth + 1, &dummy) != 0) {
                return -1;
            }
            ws_skip(s);
            if (s->i >= s->n) {
                s->why = "unterminated container";
                return -1;
            }
            if (s->b[s->i] == ',') {
                s->i++;
                continue;
            }
            if (s->b[s->i] == close) {
                s->i++;
                return 0;
            }
            s->why = "expected ',' or the end of the container";
            return -1;
        }
    }
    if (c == 't') {
        *type = J_TRUE;
        return scan_lit(s, "true");
    }
    if (c == 'f') {
        *type = J_FALSE;
        return scan_lit(s, "false");
    }
    if (c == 'n') {
        *type = J_NULL;
        return scan_lit(s, "null");
    }
    *type = J_NUM;
    return scan_num(s);
}

/* One member of an object at a time, for the two object parsers below. The scanner stands on
 * '{' for obj_open (-1: not an object). obj_next: 1 a member (key: raw bytes [ks, ks + kl),
 * escapes not decoded, so an escaped name never equals ours; value: [vs, ve) of type t),
 * 0 the object ended ('}' consumed), -1 malformed (s->why says what). */
struct jmember {
    size_t ks, kl, vs, ve;
    enum jtype t;
};

static int obj_open(struct jscan *s) {
    ws_skip(s);
    if (s->i >= s->n || s->b[s->i] != '{') {
        s->why = "not a JSON object";
        return -1;
    }
    s->i++;
    return 0;
}

static int obj_next(struct jscan *s, int *first, struct jmember *m) {
    ws_skip(s);
    if (s->i < s->n && s->b[s->i] == '}' && *first) {
        s->i++;
        return 0;
    }
    if (!*first) {
        if (s->i < s->n && s->b[s->i] == '}') {
            s->i++;
            return 0;
        }
        if (s->i >= s->n || s->b[s->i] != ',') {
            s->why = "expected ',' or '}'";
            return -1;
        }
        s->i++;
        ws_skip(s);
    }
    *first = 0;
    if (scan_key(s, &m->ks, &m->kl) != 0) {
        return -1;
    }
    ws_skip(s);
    m->vs = s->i;
    m->t = J_NONE;
    if (scan_value(s, 1, &m->t) != 0) {
        if (s->why == NULL) {
            s->why = "bad value";
        }
        return -1;
    }
    m->ve = s->i;
    return 1;
}

static unsigned hexval(uint8_t c) {
    return is_digit(c) ? (unsigned)(c - '0') : (unsigned)(lower(c) - 'a' + 10);
}

/* Unescapes a scanned string into out (NUL-terminated). -1 when it does not fit, contains
 * NUL or a lone surrogate. */
static int unescape(const uint8_t *r, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        if (r[i] != '\\') {
            if (o + 1 >= cap) {
                return -1;
            }
            out[o++] = (char)r[i++];
            continue;
        }
        uint8_t e = r[i + 1]; /* the scanner guarantees a complete escape */
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *k = memchr(from, e, 8);
            if (o + 1 >= cap || k == NULL) {
                return -1;
            }
            out[o++] = to[k - from];
            i += 2;
            continue;
        }
        cp = (hexval(r[i + 2]) << 12) | (hexval(r[i + 3]) << 8) | (hexval(r[i + 4]) << 4) |
             hexval(r[i + 5]);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n - i < 6 || r[i] != '\\' || r[i + 1] != 'u') {
                return -1;
            }
            uint32_t lo = (hexval(r[i + 2]) << 12) | (hexval(r[i + 3]) << 8) |
                          (hexval(r[i + 4]) << 4) | hexval(r[i + 5]);
            if (lo < 0xDC00 || lo > 0xDFFF) {
                return -1;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return -1;
        }
        if (cp == 0) {
            return -1; /* a NUL would cut the C string */
        }
        uint8_t u[4];
        size_t ul;
        if (cp < 0x80) {
            u[0] = (uint8_t)cp;
            ul = 1;
        } else if (cp < 0x800) {
            u[0] = (uint8_t)(0xC0 | (cp >> 6));
            u[1] = (uint8_t)(0x80 | (cp & 0x3F));
            ul = 2;
        } else if (cp < 0x10000) {
            u[0] = (uint8_t)(0xE0 | (cp >> 12));
            u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (uint8_t)(0x80 | (cp & 0x3F));
            ul = 3;
        } else {
            u[0] = (uint8_t)(0xF0 | (cp >> 18));
            u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            u[3] = (uint8_t)(0x80 | (cp & 0x3F));
            ul = 4;
        }
        if (o + ul >= cap) {
            return -1;
        }
        memcpy(out + o, u, ul);
        o += ul;
    }
    out[o] = '\0';
    return 0;
}

/* A JSON integer 0..max (no fraction, no exponent, no sign). */
static int to_uint(const uint8_t *r, size_t n, uint32_t max, uint32_t *out) {
    uint64_t v = 0;
    if (n == 0 || n > 10 || (n > 1 && r[0] == '0')) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(r[i])) {
            return -1;
        }
        v = v * 10u + (uint64_t)(r[i] - '0');
    }
    if (v > max) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

struct member {
    const char *name;
    enum jtype want;
    int found;
    size_t start, len; /* value slice: string contents without quotes, or the number */
};

static const struct {
    const char *name;
    enum fkd_wss_msg_type type;
} msg_types[] = {
    {"welcome", FKD_WSS_MSG_WELCOME}, {"ping", FKD_WSS_MSG_PING},
    {"pong", FKD_WSS_MSG_PONG},       {"request", FKD_WSS_MSG_REQUEST},
    {"error", FKD_WSS_MSG_ERROR},     {"response", FKD_WSS_MSG_RESPONSE},
    {"hello", FKD_WSS_MSG_HELLO},
};

enum { M_TYPE, M_PING_INTERVAL, M_MAX_MESSAGE, M_ID, M_KIND, M_BODY, M_CODE, M_MESSAGE, M_N };

enum fkd_err fkd_wss_msg_parse(const uint8_t *buf, size_t len, struct fkd_wss_msg *out,
                               const char **why) {
    const char *dummy = NULL;
    if (why == NULL) {
        why = &dummy;
    }
    *why = NULL;
    if (out == NULL || (buf == NULL && len > 0)) {
        *why = "no input";
        return FKD_E_ARG;
    }
    memset(out, 0, sizeof *out);
    if (!fkd_utf8_valid(buf, len)) {
        *why = "not UTF-8";
        return FKD_E_PARSE;
    }
    struct member m[M_N] = {
        [M_TYPE] = {"type", J_STR, 0, 0, 0},
        [M_PING_INTERVAL] = {"ping_interval", J_NUM, 0, 0, 0},
        [M_MAX_MESSAGE] = {"max_message", J_NUM, 0, 0, 0},
        [M_ID] = {"id", J_NONE, 0, 0, 0}, /* string (request) or integer (ping): by type */
        [M_KIND] = {"kind", J_STR, 0, 0, 0},
        [M_BODY] = {"body", J_OBJ, 0, 0, 0},
        [M_CODE] = {"code", J_STR, 0, 0, 0},
        [M_MESSAGE] = {"message", J_STR, 0, 0, 0},
    };
    enum jtype id_type = J_NONE;
    struct jscan s = {buf, len, 0, NULL};
    struct jmember jm;
    int first = 1, r;
    if (obj_open(&s) != 0) {
        *why = s.why;
        return FKD_E_PARSE;
    }
    while ((r = obj_next(&s, &first, &jm)) == 1) {
        for (size_t k = 0; k < M_N; k++) {
            size_t nl = strlen(m[k].name);
            if (jm.kl != nl || memcmp(buf + jm.ks, m[k].name, nl) != 0) {
                continue;
            }
            if (m[k].found) {
                *why = "duplicate member";
                return FKD_E_PARSE;
            }
            m[k].found = 1;
            m[k].want = k == M_ID ? jm.t : m[k].want;
            if (k == M_ID) {
                id_type = jm.t;
            }
            if (jm.t != m[k].want) {
                /* checked per message type below, except "type" itself */
                m[k].want = J_NONE;
            }
            m[k].start = jm.t == J_STR ? jm.vs + 1 : jm.vs;
            m[k].len = jm.t == J_STR ? jm.ve - jm.vs - 2 : jm.ve - jm.vs;
        }
    }
    if (r < 0) {
        *why = s.why;
        return FKD_E_PARSE;
    }
    ws_skip(&s);
    if (s.i != s.n) {
        *why = "bytes after the object";
        return FKD_E_PARSE;
    }
    if (!m[M_TYPE].found || m[M_TYPE].want != J_STR) {
        *why = "no string member \"type\"";
        return FKD_E_PARSE;
    }
    if (unescape(buf + m[M_TYPE].start, m[M_TYPE].len, out->type_str, sizeof out->type_str) != 0) {
        *why = "\"type\" too long or not text";
        return FKD_E_TYPE;
    }
    out->type = FKD_WSS_MSG_UNKNOWN;
    for (size_t k = 0; k < sizeof msg_types / sizeof msg_types[0]; k++) {
        if (strcmp(out->type_str, msg_types[k].name) == 0) {
            out->type = msg_types[k].type;
        }
    }
#define WANT(k, label)                                                                             \
    do {                                                                                           \
        if (m[k].found && m[k].want == J_NONE) {                                                   \
            *why = label " has the wrong type";                                                    \
            return FKD_E_TYPE;                                                                     \
        }                                                                                          \
    } while (0)
    switch (out->type) {
    case FKD_WSS_MSG_WELCOME:
        WANT(M_PING_INTERVAL, "\"ping_interval\"");
        WANT(M_MAX_MESSAGE, "\"max_message\"");
        if (m[M_PING_INTERVAL].found &&
            (to_uint(buf + m[M_PING_INTERVAL].start, m[M_PING_INTERVAL].len, 86400,
                     &out->ping_interval_s) != 0 ||
             out->ping_interval_s == 0)) {
            *why = "\"ping_interval\" not an integer 1..86400";
            return FKD_E_TYPE;
        }
        if (m[M_MAX_MESSAGE].found && to_uint(buf + m[M_MAX_MESSAGE].start, m[M_MAX_MESSAGE].len,
                                              0x7fffffffu, &out->max_message) != 0) {
            *why = "\"max_message\" not a non-negative integer";
            return FKD_E_TYPE;
        }
        break;
    case FKD_WSS_MSG_PING:
    case FKD_WSS_MSG_PONG:
        if (m[M_ID].found) {
            /* "id is an optional integer 0..2^31-1" */
            if (id_type != J_NUM ||
                to_uint(buf + m[M_ID].start, m[M_ID].len, 0x7fffffffu, &out->id_num) != 0) {
                *why = "\"id\" not an integer 0..2^31-1";
                return FKD_E_TYPE;
            }
            out->has_id_num = 1;
        }
        break;
    case FKD_WSS_MSG_REQUEST:
        if (!m[M_ID].found || id_type != J_STR || !m[M_KIND].found) {
            *why = "request without string \"id\" and \"kind\"";
            return FKD_E_TYPE;
        }
        WANT(M_KIND, "\"kind\"");
        WANT(M_BODY, "\"body\"");
        /* "id: string 1..36 bytes" */
        if (unescape(buf + m[M_ID].start, m[M_ID].len, out->id, 37) != 0 || out->id[0] == '\0') {
            *why = "\"id\" not a string of 1..36 bytes";
            return FKD_E_TYPE;
        }
        if (unescape(buf + m[M_KIND].start, m[M_KIND].len, out->kind, sizeof out->kind) != 0) {
            *why = "\"kind\" longer than 128 bytes";
            return FKD_E_TYPE;
        }
        if (m[M_BODY].found) {
            out->has_body = 1;
            out->body_off = m[M_BODY].start;
            out->body_len = m[M_BODY].len;
        }
        break;
    case FKD_WSS_MSG_ERROR:
        WANT(M_CODE, "\"code\"");
        WANT(M_MESSAGE, "\"message\"");
        if ((m[M_CODE].found &&
             unescape(buf + m[M_CODE].start, m[M_CODE].len, out->code, sizeof out->code) != 0) ||
            (m[M_MESSAGE].found && unescape(buf + m[M_MESSAGE].start, m[M_MESSAGE].len,
                                            out->message, sizeof out->message) != 0)) {
            *why = "\"code\" or \"message\" longer than 128 bytes";
            return FKD_E_TYPE;
        }
        break;
    default:
        break;
    }
#undef WANT
    return FKD_OK;
}

int fkd_wss_json_put_str(char *out, size_t size, size_t *pos, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    if (out == NULL || p >= size) {
        return -1;
    }
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (p + 1 >= size) {                                                                       \
            return -1;                                                                             \
        }                                                                                          \
        out[p++] = (char)(ch);                                                                     \
    } while (0)
    PUT('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT(c);
        } else if (c < 0x20 || c == 0x7F) {
            PUT('\\');
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[c >> 4]);
            PUT(hex[c & 15]);
        } else {
            PUT(c);
        }
    }
    PUT('"');
#undef PUT
    out[p] = '\0';
    *pos = p;
    return 0;
}

/* ---- request bodies ------------------------------------------------------------------------ */

enum fkd_err fkd_wss_json_get(const uint8_t *obj, size_t len, const char *name,
                              struct fkd_wss_jval *out) {
    int found = 0;
    if (out == NULL || name == NULL) {
        return FKD_E_ARG;
    }
    memset(out, 0, sizeof *out);
    if (obj == NULL) {
        return FKD_E_PARSE;
    }
    size_t nl = strlen(name);
    struct jscan s = {obj, len, 0, NULL};
    struct jmember jm;
    int first = 1, r;
    if (obj_open(&s) != 0) {
        return FKD_E_PARSE;
    }
    while ((r = obj_next(&s, &first, &jm)) == 1) {
        if (jm.kl == nl && memcmp(obj + jm.ks, name, nl) == 0) {
            /* Two values for one name: which one counts is up to each parser (RFC 8259 4),
             * so the device refuses rather than guess differently from the server. */
            if (found) {
                memset(out, 0, sizeof *out);
                return FKD_E_PARSE;
            }
            found = 1;
            out->type = (enum fkd_wss_jtype)jm.t; /* same order as enum jtype */
            out->p = jm.t == J_STR ? obj + jm.vs + 1 : obj + jm.vs;
            out->len = jm.t == J_STR ? jm.ve - jm.vs - 2 : jm.ve - jm.vs;
        }
    }
    if (r < 0) {
        memset(out, 0, sizeof *out);
        return FKD_E_PARSE;
    }
    ws_skip(&s);
    if (s.i != s.n) {
        memset(out, 0, sizeof *out);
        return FKD_E_PARSE;
    }
    return found ? FKD_OK : FKD_E_NOTFOUND;
}

enum fkd_err fkd_wss_jval_uint(const struct fkd_wss_jval *v, uint32_t max, uint32_t *out) {
    if (v == NULL || out == NULL || v->type != FKD_WSS_J_NUM ||
        to_uint(v->p, v->len, max, out) != 0) {
        return FKD_E_TYPE;
    }
    return FKD_OK;
}

enum fkd_err fkd_wss_jval_str(const struct fkd_wss_jval *v, char *out, size_t out_size) {
    if (v == NULL || out == NULL || out_size == 0 || v->type != FKD_WSS_J_STR) {
        return FKD_E_TYPE;
    }
    if (unescape(v->p, v->len, out, out_size) != 0) {
        out[0] = '\0';
        return FKD_E_RANGE;
    }
    return FKD_OK;
}
