/* The request side of `fleetctl dashboard`: see dash_req.h. Every length is checked against
 * what remains of buf before it is read; the output fields are bounded copies. */
#include "dash_req.h"

#include <string.h>
#include <strings.h>

/* The end of the line starting at buf[i] (index of its LF), or len when there is none. */
static size_t line_end(const char *buf, size_t len, size_t i) {
    const char *lf = memchr(buf + i, '\n', len - i);
    return lf != NULL ? (size_t)(lf - buf) : len;
}

/* Copies [s, s + n) into out (size bytes) with a NUL; -1 when it does not fit. */
static int copy(char *out, size_t size, const char *s, size_t n) {
    if (n >= size) {
        return -1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static int is_token_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9112 section 3: request-line = method SP request-target SP HTTP-version. */
static enum fleetctl_dash_parse request_line(const char *s, size_t n,
                                             struct fleetctl_dash_req *out) {
    const char *sp1 = memchr(s, ' ', n);
    if (sp1 == NULL || sp1 == s) {
        return FLEETCTL_DASH_MALFORMED;
    }
    size_t mlen = (size_t)(sp1 - s);
    for (size_t i = 0; i < mlen; i++) {
        if (!is_token_char(s[i])) {
            return FLEETCTL_DASH_MALFORMED;
        }
    }
    const char *t = sp1 + 1;
    size_t rest = n - mlen - 1;
    const char *sp2 = memchr(t, ' ', rest);
    if (sp2 == NULL || sp2 == t) {
        return FLEETCTL_DASH_MALFORMED;
    }
    size_t tlen = (size_t)(sp2 - t);
    for (size_t i = 0; i < tlen; i++) {
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) {
            return FLEETCTL_DASH_MALFORMED;
        }
    }
    size_t vlen = rest - tlen - 1;
    const char *v = sp2 + 1;
    if (vlen != 8 || (memcmp(v, "HTTP/1.1", 8) != 0 && memcmp(v, "HTTP/1.0", 8) != 0)) {
        return FLEETCTL_DASH_MALFORMED;
    }
    if (copy(out->method, sizeof out->method, s, mlen) != 0 ||
        copy(out->target, sizeof out->target, t, tlen) != 0) {
        return FLEETCTL_DASH_MALFORMED;
    }
    return FLEETCTL_DASH_OK;
}

enum fleetctl_dash_parse fleetctl_dash_parse(const char *buf, size_t len,
                                             struct fleetctl_dash_req *out) {
    memset(out, 0, sizeof *out);
    if (buf == NULL) {
        return FLEETCTL_DASH_MALFORMED;
    }
    size_t scan = len < FLEETCTL_DASH_HEAD_MAX ? len : FLEETCTL_DASH_HEAD_MAX;
    size_t e = line_end(buf, scan, 0);
    if (e == scan) {
        return len >= FLEETCTL_DASH_HEAD_MAX ? FLEETCTL_DASH_MALFORMED : FLEETCTL_DASH_MORE;
    }
    size_t n = e > 0 && buf[e - 1] == '\r' ? e - 1 : e;
    if (request_line(buf, n, out) != FLEETCTL_DASH_OK) {
        return FLEETCTL_DASH_MALFORMED;
    }
    int have_host = 0;
    for (size_t i = e + 1;;) {
        size_t le = line_end(buf, scan, i);
        if (le == scan) {
            return len >= FLEETCTL_DASH_HEAD_MAX ? FLEETCTL_DASH_MALFORMED : FLEETCTL_DASH_MORE;
        }
        size_t ln = le > i && buf[le - 1] == '\r' ? le - 1 - i : le - i;
        if (ln == 0) {
            out->head_len = le + 1;
            return FLEETCTL_DASH_OK;
        }
        const char *line = buf + i;
        const char *colon = memchr(line, ':', ln);
        if (colon == NULL || colon == line) {
            return FLEETCTL_DASH_MALFORMED;
        }
        size_t name_len = (size_t)(colon - line);
        if (name_len == 4 && strncasecmp(line, "host", 4) == 0) {
            if (have_host) {
                return FLEETCTL_DASH_MALFORMED; /* RFC 9112 3.2: more than one Host: 400 */
            }
            have_host = 1;
            const char *v = colon + 1;
            size_t vl = ln - name_len - 1;
            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) {
                vl--;
            }
            if (copy(out->host, sizeof out->host, v, vl) != 0) {
                return FLEETCTL_DASH_MALFORMED;
            }
        }
        i = le + 1;
    }
}

static int target_chars_ok(const char *t) {
    for (; *t != '\0'; t++) {
        char c = *t;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("-._~/?=&", c) != NULL)) {
            return 0;
        }
    }
    return 1;
}

int fleetctl_dash_decide(const struct fleetctl_dash_req *r, const char *host_ok,
                         const char *host_alt) {
    if (strcmp(r->method, "GET") != 0) {
        return 405;
    }
    if ((host_ok == NULL || strcmp(r->host, host_ok) != 0) &&
        (host_alt == NULL || strcmp(r->host, host_alt) != 0)) {
        return 403;
    }
    const char *t = r->target;
    if (t[0] != '/' || !target_chars_ok(t) || strstr(t, "/.") != NULL) {
        return 400;
    }
    size_t plen = strcspn(t, "?");
    if (plen == 1) {
        return 302;
    }
    if ((plen == 10 && strncmp(t, "/dashboard", 10) == 0) || strncmp(t, "/dashboard/", 11) == 0 ||
        (strncmp(t, "/api/", 5) == 0 && plen > 5)) {
        return 0;
    }
    return 404;
}
