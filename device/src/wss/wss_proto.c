/* The pure parts of the wss client (fkd/wss.h): the URI parser, the RFC 6125 host matcher,
 * the RFC 6455 opening-handshake helpers and UTF-8 validation; the device-side JSON message
 * parser of docs/wss-protocol.md, pure too, is wss_json.c.
 *
 * Everything here works on (buf, len) slices with every length checked against what remains,
 * writes only into the caller's fixed-size outputs and never allocates, so each function can
 * be unit-tested and fuzzed on its own. */
#include "fkd/wss.h"

#include "wss_internal.h"

#include "mbedtls_compat.h"

#include <mbedtls/base64.h>
#include <string.h>

/* ---- small ASCII helpers --------------------------------------------------------------------- */

static int ieq(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen) {
        return 0;
    }
    for (size_t i = 0; i < alen; i++) {
        if (fkd_wss_lower((unsigned char)a[i]) != fkd_wss_lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

static int is_ldh(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || fkd_wss_is_digit(c) || c == '-';
}

/* ---- URI ------------------------------------------------------------------------------------ */

/* Dotted-quad with each part 0..255 and no leading zeros beyond "0". */
static int is_ipv4(const char *h, size_t n) {
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        unsigned v = 0;
        while (i < n && fkd_wss_is_digit((unsigned char)h[i]) && i - start < 4) {
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
            if (!fkd_wss_is_hex((unsigned char)host[i]) && host[i] != ':' && host[i] != '.') {
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
            if (!fkd_wss_is_digit((unsigned char)port[i])) {
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
        !fkd_wss_is_digit((unsigned char)s[9]) || !fkd_wss_is_digit((unsigned char)s[10]) ||
        !fkd_wss_is_digit((unsigned char)s[11]) || ((size_t)(eol - s) > 12 && s[12] != ' ')) {
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
