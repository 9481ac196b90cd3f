/* The Wi-Fi re-provisioning portal (fkd/portal.h): HTTP request parser, form decoder, IEEE
 * 802.11 credential rules, the journaled NVS write and the request handler.
 *
 * The parser is deliberately small and strict (RFC 9112): a phone's browser sends well-formed
 * requests, so anything unusual is refused rather than interpreted. Nothing is allocated; the
 * request stays in the caller's buffer and fields are slices into it. */
#include "fkd/portal.h"

#include "fkd/nvs.h"

#include <stdio.h>
#include <string.h>

#define JOURNAL_MAX (2u + FKD_WIFI_SSID_MAX + FKD_WIFI_PASS_MAX)

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
 * "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static int is_tchar(uint8_t c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return 1;
    }
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int lower(uint8_t c) {
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int slice_ieq(struct fkd_slice s, const char *lit) {
    size_t n = strlen(lit);
    if (s.len != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower(s.p[i]) != lower((uint8_t)lit[i])) {
            return 0;
        }
    }
    return 1;
}

static int slice_eq(struct fkd_slice s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Index of the next CRLF at or after pos, or len when none. */
static size_t find_crlf(const uint8_t *buf, size_t len, size_t pos) {
    for (size_t i = pos; i + 1 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n') {
            return i;
        }
    }
    return len;
}

static enum fkd_err parse_request_line(const uint8_t *p, size_t n, struct fkd_http_req *out) {
    enum fkd_err rc = FKD_E_PARSE;
    size_t i = 0;
    /* request-line = method SP request-target SP HTTP-version */
    while (i < n && is_tchar(p[i])) {
        i++;
    }
    FKD_ENSURE(i > 0 && i < n && p[i] == ' ', FKD_E_PARSE);
    out->method.p = p;
    out->method.len = i;
    size_t t = ++i;
    while (i < n && p[i] > 0x20 && p[i] < 0x7f) {
        i++;
    }
    FKD_ENSURE(i > t && i < n && p[i] == ' ' && p[t] == '/', FKD_E_PARSE);
    out->target.p = p + t;
    out->target.len = i - t;
    i++;
    FKD_ENSURE(n - i == 8 && memcmp(p + i, "HTTP/1.", 7) == 0, FKD_E_PARSE);
    FKD_ENSURE(p[i + 7] == '0' || p[i + 7] == '1', FKD_E_UNSUPPORTED);
    rc = FKD_OK;
out:
    return rc;
}

static enum fkd_err parse_length(struct fkd_slice v, size_t max_body, size_t *out) {
    size_t n = 0;
    if (v.len == 0) {
        return FKD_E_PARSE;
    }
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') {
            return FKD_E_PARSE; /* no sign, no spaces, no list: "1*DIGIT" only */
        }
        size_t d = (size_t)(v.p[i] - '0');
        if (d > max_body || n > (max_body - d) / 10) {
            return FKD_E_RANGE; /* checked before the multiply: cannot wrap */
        }
        n = n * 10 + d;
    }
    *out = n;
    return FKD_OK;
}

enum fkd_err fkd_http_req_parse(const uint8_t *buf, size_t len, size_t max_body,
                                struct fkd_http_req *out) {
    enum fkd_err rc = FKD_E_INTERNAL;
    int have_length = 0;
    unsigned fields = 0;
    memset(out, 0, sizeof *out);
    FKD_ENSURE(buf != NULL || len == 0, FKD_E_ARG);
    size_t eol = find_crlf(buf, len, 0);
    FKD_ENSURE(eol < len, FKD_E_TRUNCATED);
    FKD_GUARD(parse_request_line(buf, eol, out));
    size_t pos = eol + 2;
    for (;;) {
        eol = find_crlf(buf, len, pos);
        FKD_ENSURE(eol < len, FKD_E_TRUNCATED);
        if (eol == pos) {
            out->head_len = pos + 2;
            break;
        }
        /* field-line = field-name ":" OWS field-value OWS; obs-fold (a line starting with
         * SP/HT) is refused, RFC 9112 5.2. */
        const uint8_t *l = buf + pos;
        size_t n = eol - pos, c = 0;
        while (c < n && is_tchar(l[c])) {
            c++;
        }
        FKD_ENSURE(c > 0 && c < n && l[c] == ':', FKD_E_PARSE);
        FKD_ENSURE(++fields <= FKD_PORTAL_HEADERS_MAX, FKD_E_PARSE);
        struct fkd_slice name = {l, c};
        size_t vs = c + 1, ve = n;
        while (vs < ve && (l[vs] == ' ' || l[vs] == '\t')) {
            vs++;
        }
        while (ve > vs && (l[ve - 1] == ' ' || l[ve - 1] == '\t')) {
            ve--;
        }
        for (size_t i = vs; i < ve; i++) {
            /* field-vchar / SP / HTAB; no control characters (a bare CR or LF among them). */
            FKD_ENSURE(l[i] == '\t' || (l[i] >= 0x20 && l[i] != 0x7f), FKD_E_PARSE);
        }
        struct fkd_slice value = {l + vs, ve - vs};
        if (slice_ieq(name, "content-length")) {
            size_t v = 0;
            FKD_GUARD(parse_length(value, max_body, &v));
            /* RFC 9112 6.3: differing repeated lengths are an unrecoverable error. */
            FKD_ENSURE(!have_length || v == out->content_length, FKD_E_PARSE);
            out->content_length = v;
            have_length = 1;
        } else if (slice_ieq(name, "transfer-encoding")) {
            rc = FKD_E_UNSUPPORTED;
            goto out;
        } else if (slice_ieq(name, "content-type")) {
            out->content_type = value;
        }
        pos = eol + 2;
    }
    rc = FKD_OK;
out:
    return rc;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (uint8_t)lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes one urlencoded component into out; FKD_E_NOSPACE when it does not fit. */
static enum fkd_err decode(const uint8_t *p, size_t n, char *out, size_t out_size,
                           size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = p[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3 || hexval(p[i + 1]) < 0 || hexval(p[i + 2]) < 0) {
                return FKD_E_PARSE;
            }
            c = hexval(p[i + 1]) * 16 + hexval(p[i + 2]);
            i += 2;
            if (c == 0) {
                return FKD_E_PARSE; /* NVS strings end at NUL: it could not be stored */
            }
        }
        if (o + 1 >= out_size) {
            return FKD_E_NOSPACE;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    *out_len = o;
    return FKD_OK;
}

enum fkd_err fkd_form_get(const uint8_t *body, size_t len, const char *name, char *out,
                          size_t out_size, size_t *out_len) {
    enum fkd_err rc = FKD_E_NOTFOUND;
    char key[16];
    size_t klen = 0;
    int found = 0;
    FKD_ENSURE(name != NULL && out != NULL && out_size > 0 && out_len != NULL, FKD_E_ARG);
    FKD_ENSURE(body != NULL || len == 0, FKD_E_ARG);
    out[0] = '\0';
    *out_len = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && body[end] != '&') {
            end++;
        }
        size_t eq = pos;
        while (eq < end && body[eq] != '=') {
            eq++;
        }
        /* A name longer than key cannot be the one asked for: skip it without decoding. */
        enum fkd_err kr = decode(body + pos, eq - pos, key, sizeof key, &klen);
        if (kr == FKD_E_PARSE) {
            rc = kr;
            goto out;
        }
        if (kr == FKD_OK && strcmp(key, name) == 0) {
            FKD_ENSURE(!found, FKD_E_PARSE);
            found = 1;
            size_t vs = eq < end ? eq + 1 : end;
            FKD_GUARD(decode(body + vs, end - vs, out, out_size, out_len));
        }
        pos = end + 1;
    }
    rc = found ? FKD_OK : FKD_E_NOTFOUND;
out:
    if (rc != FKD_OK && out != NULL && out_size > 0) {
        fkd_wipe(out, out_size);
        if (out_len != NULL) {
            *out_len = 0;
        }
    }
    return rc;
}

enum fkd_err fkd_wifi_ssid_check(const uint8_t *ssid, size_t len, const char **why) {
    *why = "";
    if (ssid == NULL || len == 0) {
        *why = "the SSID is empty (1 to 32 bytes)";
        return FKD_E_RANGE;
    }
    /* IEEE 802.11-2020 9.4.2.2: "The length of the SSID field is between 0 and 32 octets." */
    if (len > FKD_WIFI_SSID_MAX) {
        *why = "the SSID is longer than 32 bytes";
        return FKD_E_RANGE;
    }
    if (memchr(ssid, 0, len) != NULL) {
        *why = "the SSID contains a NUL byte";
        return FKD_E_RANGE;
    }
    return FKD_OK;
}

enum fkd_err fkd_wifi_pass_check(const uint8_t *pass, size_t len, const char **why) {
    *why = "";
    if (pass == NULL) {
        len = 0;
    }
    /* IEEE 802.11i H.4.1: "A pass-phrase is a sequence of between 8 and 63 ASCII-encoded
     * characters ... limited to ASCII characters 32 to 126 (decimal)"; the PSK itself may be
     * given as 64 hexadecimal digits. */
    if (len == 64) {
        for (size_t i = 0; i < len; i++) {
            if (hexval(pass[i]) < 0) {
                *why = "a 64-character password must be 64 hexadecimal digits (a raw PSK)";
                return FKD_E_RANGE;
            }
        }
        return FKD_OK;
    }
    if (len < 8 || len > 63) {
        *why = "the password must be 8 to 63 characters, or 64 hexadecimal digits";
        return FKD_E_RANGE;
    }
    for (size_t i = 0; i < len; i++) {
        if (pass[i] < 0x20 || pass[i] > 0x7e) {
            *why = "the password may hold printable ASCII characters only (32 to 126)";
            return FKD_E_RANGE;
        }
    }
    return FKD_OK;
}

static enum fkd_err check_pair(const char *ssid, const char *pass, const char **why) {
    enum fkd_err rc = fkd_wifi_ssid_check((const uint8_t *)ssid, strlen(ssid), why);
    if (rc == FKD_OK) {
        rc = fkd_wifi_pass_check((const uint8_t *)pass, strlen(pass), why);
    }
    return rc;
}

enum fkd_err fkd_wifi_journal_parse(const uint8_t *buf, size_t len, char *ssid, char *pass) {
    enum fkd_err rc = FKD_E_INTERNAL;
    const char *why = "";
    ssid[0] = '\0';
    pass[0] = '\0';
    FKD_ENSURE(buf != NULL && len >= 1, FKD_E_TRUNCATED);
    size_t sl = buf[0];
    FKD_ENSURE(sl <= FKD_WIFI_SSID_MAX, FKD_E_PARSE);
    FKD_ENSURE(len - 1 >= sl + 1u, FKD_E_TRUNCATED);
    size_t pl = buf[1 + sl];
    FKD_ENSURE(pl <= FKD_WIFI_PASS_MAX, FKD_E_PARSE);
    FKD_ENSURE(len - 2 - sl >= pl, FKD_E_TRUNCATED);
    FKD_ENSURE(len - 2 - sl == pl, FKD_E_PARSE);
    memcpy(ssid, buf + 1, sl);
    ssid[sl] = '\0';
    memcpy(pass, buf + 2 + sl, pl);
    pass[pl] = '\0';
    /* The lengths must be what strlen sees (no NUL inside) and the rules must hold. */
    FKD_ENSURE(strlen(ssid) == sl && strlen(pass) == pl, FKD_E_PARSE);
    FKD_ENSURE(check_pair(ssid, pass, &why) == FKD_OK, FKD_E_PARSE);
    rc = FKD_OK;
out:
    if (rc != FKD_OK) {
        fkd_wipe(ssid, FKD_WIFI_SSID_MAX + 1);
        fkd_wipe(pass, FKD_WIFI_PASS_MAX + 1);
    }
    return rc;
}

/* The two strings, then the journal goes: the order that makes recover idempotent. */
static enum fkd_err apply(struct fkd_nvs *nvs, const char *ssid, const char *pass) {
    enum fkd_err rc = FKD_E_INTERNAL;
    FKD_GUARD(fkd_nvs_set_str(nvs, "wifi", "ssid", ssid));
    FKD_GUARD(fkd_nvs_set_str(nvs, "wifi", "password", pass));
    FKD_GUARD(fkd_nvs_erase_key(nvs, "wifi", "pending"));
out:
    return rc;
}

enum fkd_err fkd_wifi_save(struct fkd_nvs *nvs, const char *ssid, const char *pass) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t j[JOURNAL_MAX];
    const char *why = "";
    size_t jl = 0;
    FKD_ENSURE(nvs != NULL && ssid != NULL && pass != NULL, FKD_E_ARG);
    FKD_GUARD(check_pair(ssid, pass, &why));
    size_t sl = strlen(ssid), pl = strlen(pass);
    j[jl++] = (uint8_t)sl;
    memcpy(j + jl, ssid, sl);
    jl += sl;
    j[jl++] = (uint8_t)pl;
    memcpy(j + jl, pass, pl);
    jl += pl;
    /* One NVS item: after a cut it is there whole or not at all (nvs.h). */
    FKD_GUARD(fkd_nvs_set_blob(nvs, "wifi", "pending", j, jl));
    FKD_GUARD(apply(nvs, ssid, pass));
out:
    fkd_wipe(j, sizeof j);
    return rc;
}

enum fkd_err fkd_wifi_recover(struct fkd_nvs *nvs) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t j[JOURNAL_MAX];
    char ssid[FKD_WIFI_SSID_MAX + 1];
    char pass[FKD_WIFI_PASS_MAX + 1];
    size_t jl = 0;
    ssid[0] = pass[0] = '\0';
    FKD_ENSURE(nvs != NULL, FKD_E_ARG);
    rc = fkd_nvs_get_blob(nvs, "wifi", "pending", j, sizeof j, &jl);
    if (rc == FKD_E_NOTFOUND) {
        rc = FKD_OK;
        goto out;
    }
    if (rc == FKD_OK) {
        rc = fkd_wifi_journal_parse(j, jl, ssid, pass);
    }
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR,
                "wifi: re-provisioning journal unreadable (%s): dropped, the "
                "previous credentials stay",
                fkd_strerror(rc));
        rc = fkd_nvs_erase_key(nvs, "wifi", "pending");
        goto out;
    }
    fkd_log(FKD_LOG_WARN, "wifi: finishing a re-provisioning a power cut interrupted (ssid '%s')",
            ssid);
    rc = apply(nvs, ssid, pass);
out:
    fkd_wipe(j, sizeof j);
    fkd_wipe(pass, sizeof pass);
    return rc;
}

/* ---- the handler ------------------------------------------------------------------------ */
static const char form_page[] =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\"><title>Robot Wi-Fi setup</title>"
    "</head><body><h1>Robot Wi-Fi setup</h1>"
    "<form method=\"post\" action=\"/wifi\">"
    "<p><label>Network name (SSID)<br><input name=\"ssid\" maxlength=\"32\" required>"
    "</label></p><p><label>Password<br><input name=\"password\" type=\"password\" "
    "minlength=\"8\" maxlength=\"64\" required></label></p>"
    "<p><button type=\"submit\">Save</button></p></form></body></html>\n";

static const char saved_page[] =
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Saved</title></head><body>"
    "<h1>Saved</h1><p>The robot now joins the network.</p></body></html>\n";

static void respond(uint8_t *out, size_t out_size, size_t *out_len, const char *status,
                    const char *extra, const char *body) {
    int n = snprintf((char *)out, out_size,
                     "HTTP/1.1 %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n"
                     "%s\r\n%s",
                     status, strlen(body), extra, body);
    /* The bodies are constants or short messages that fit FKD_PORTAL_RESP_MAX; a smaller
     * caller buffer gets a truncated answer rather than an overrun. */
    *out_len = n < 0 ? 0 : ((size_t)n >= out_size ? out_size - 1 : (size_t)n);
}

void fkd_portal_too_large(int head, uint8_t *out, size_t out_size, size_t *out_len) {
    respond(out, out_size, out_len,
            head ? "431 Request Header Fields Too Large" : "413 Content Too Large", "",
            "<p>Request too large.</p>\n");
}

static void bad_request(uint8_t *out, size_t out_size, size_t *out_len, const char *why) {
    char body[256];
    /* why is static text from this file: no user input is echoed (no markup injection). */
    snprintf(body, sizeof body, "<p>Not saved: %s.</p><p><a href=\"/\">Back</a></p>\n", why);
    respond(out, out_size, out_len, "400 Bad Request", "", body);
}

static enum fkd_portal_outcome post_wifi(struct fkd_nvs *nvs, const struct fkd_http_req *rq,
                                         const uint8_t *body, uint8_t *out, size_t out_size,
                                         size_t *out_len, enum fkd_err *err) {
    enum fkd_portal_outcome res = FKD_PORTAL_SERVED;
    char ssid[FKD_WIFI_SSID_MAX + 1];
    char pass[FKD_WIFI_PASS_MAX + 1];
    size_t sl = 0, pl = 0;
    const char *why = "";
    char fpr[FKD_FPR_LEN];
    struct fkd_slice ct = rq->content_type;
    /* "application/x-www-form-urlencoded", parameters (charset) allowed after ';'. */
    size_t base = 0;
    while (base < ct.len && ct.p[base] != ';') {
        base++;
    }
    while (base > 0 && (ct.p[base - 1] == ' ' || ct.p[base - 1] == '\t')) {
        base--;
    }
    struct fkd_slice ctb = {ct.p, base};
    if (!slice_ieq(ctb, "application/x-www-form-urlencoded")) {
        respond(out, out_size, out_len, "415 Unsupported Media Type", "",
                "<p>Expected a form (application/x-www-form-urlencoded).</p>\n");
        goto out;
    }
    enum fkd_err rc = fkd_form_get(body, rq->content_length, "ssid", ssid, sizeof ssid, &sl);
    if (rc != FKD_OK) {
        bad_request(out, out_size, out_len,
                    rc == FKD_E_NOTFOUND  ? "the form has no ssid field"
                    : rc == FKD_E_NOSPACE ? "the SSID is longer than 32 bytes"
                                          : "the ssid field is malformed");
        goto out;
    }
    rc = fkd_form_get(body, rq->content_length, "password", pass, sizeof pass, &pl);
    if (rc != FKD_OK) {
        bad_request(out, out_size, out_len,
                    rc == FKD_E_NOTFOUND ? "the form has no password field"
                    : rc == FKD_E_NOSPACE
                        ? "the password must be 8 to 63 characters, or 64 hexadecimal digits"
                        : "the password field is malformed");
        goto out;
    }
    if (check_pair(ssid, pass, &why) != FKD_OK) {
        bad_request(out, out_size, out_len, why);
        goto out;
    }
    if (nvs == NULL) {
        respond(out, out_size, out_len, "503 Service Unavailable", "", "<p>No storage.</p>\n");
        goto out;
    }
    *err = fkd_wifi_save(nvs, ssid, pass);
    if (*err != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "portal: Wi-Fi credentials not saved: %s", fkd_strerror(*err));
        respond(out, out_size, out_len, "500 Internal Server Error", "",
                "<p>Not saved: storage error.</p>\n");
        res = FKD_PORTAL_FAILED;
        goto out;
    }
    /* The SSID may hold any byte but NUL: control characters are masked so a name cannot
     * forge log lines. */
    char shown[FKD_WIFI_SSID_MAX + 1];
    for (size_t i = 0; i <= sl; i++) {
        uint8_t c = (uint8_t)ssid[i];
        shown[i] = i == sl ? '\0' : (c < 0x20 || c == 0x7f ? '?' : (char)c);
    }
    fkd_log(FKD_LOG_INFO, "portal: Wi-Fi credentials saved: ssid '%s', password %s", shown,
            fkd_fpr((const uint8_t *)pass, pl, fpr));
    respond(out, out_size, out_len, "303 See Other", "Location: /saved\r\n", "");
    res = FKD_PORTAL_SAVED;
out:
    fkd_wipe(pass, sizeof pass);
    return res;
}

enum fkd_portal_outcome fkd_portal_handle(struct fkd_nvs *nvs, const uint8_t *buf, size_t len,
                                          uint8_t *out, size_t out_size, size_t *out_len,
                                          enum fkd_err *err) {
    struct fkd_http_req rq;
    *err = FKD_OK;
    *out_len = 0;
    enum fkd_err rc = fkd_http_req_parse(buf, len, FKD_PORTAL_REQ_MAX, &rq);
    if (rc == FKD_E_RANGE) {
        fkd_portal_too_large(0, out, out_size, out_len);
        return FKD_PORTAL_SERVED;
    }
    if (rc != FKD_OK || rq.content_length > len - rq.head_len) {
        respond(out, out_size, out_len,
                rc == FKD_E_UNSUPPORTED ? "501 Not Implemented" : "400 Bad Request", "",
                "<p>Bad request.</p>\n");
        return FKD_PORTAL_SERVED;
    }
    /* The path without its query: a captive-portal probe may carry one. */
    struct fkd_slice path = rq.target;
    for (size_t i = 0; i < path.len; i++) {
        if (path.p[i] == '?') {
            path.len = i;
            break;
        }
    }
    int get = slice_eq(rq.method, "GET") || slice_eq(rq.method, "HEAD");
    if (slice_eq(rq.method, "POST") && slice_eq(path, "/wifi")) {
        return post_wifi(nvs, &rq, buf + rq.head_len, out, out_size, out_len, err);
    }
    if (get && slice_eq(path, "/")) {
        respond(out, out_size, out_len, "200 OK", "", form_page);
    } else if (get && slice_eq(path, "/saved")) {
        respond(out, out_size, out_len, "200 OK", "", saved_page);
    } else if (get) {
        /* Any other URL leads to the form: what makes a phone show the portal. */
        respond(out, out_size, out_len, "302 Found", "Location: /\r\n", "");
    } else {
        respond(out, out_size, out_len, "405 Method Not Allowed", "Allow: GET, HEAD, POST\r\n",
                "<p>Method not allowed.</p>\n");
    }
    if (slice_eq(rq.method, "HEAD")) {
        /* Same headers, no body (RFC 9110 9.3.2). */
        for (size_t i = 0; i + 3 < *out_len; i++) {
            if (memcmp(out + i, "\r\n\r\n", 4) == 0) {
                *out_len = i + 4;
                break;
            }
        }
    }
    return FKD_PORTAL_SERVED;
}
