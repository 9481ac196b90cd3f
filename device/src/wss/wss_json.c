/* The device side of the wss client's JSON (fkd/wss.h; docs/wss-protocol.md): the message
 * parser, the string writer and the request-body accessors.
 *
 * Everything here works on (buf, len) slices with every length checked against what remains,
 * writes only into the caller's fixed-size outputs and never allocates, so each function can
 * be unit-tested and fuzzed on its own. The parser is a single-pass validating scanner (no
 * tree, no heap: cJSON would allocate per node): it checks the whole text against RFC 8259
 * with a depth limit and picks out the few top-level members the device reads. */
#include "fkd/wss.h"

#include "wss_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
                    if (!fkd_wss_is_hex(s->b[s->i + k])) {
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
    if (s->i >= s->n || !fkd_wss_is_digit(s->b[s->i])) {
        s->why = "bad number";
        return -1;
    }
    if (s->b[s->i] == '0') {
        s->i++;
    } else {
        while (s->i < s->n && fkd_wss_is_digit(s->b[s->i])) {
            s->i++;
        }
    }
    if (s->i < s->n && s->b[s->i] == '.') {
        s->i++;
        if (s->i >= s->n || !fkd_wss_is_digit(s->b[s->i])) {
            s->why = "bad number";
            return -1;
        }
        while (s->i < s->n && fkd_wss_is_digit(s->b[s->i])) {
            s->i++;
        }
    }
    if (s->i < s->n && (s->b[s->i] == 'e' || s->b[s->i] == 'E')) {
        s->i++;
        if (s->i < s->n && (s->b[s->i] == '+' || s->b[s->i] == '-')) {
            s->i++;
        }
        if (s->i >= s->n || !fkd_wss_is_digit(s->b[s->i])) {
            s->why = "bad number";
            return -1;
        }
        while (s->i < s->n && fkd_wss_is_digit(s->b[s->i])) {
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
    return fkd_wss_is_digit(c) ? (unsigned)(c - '0') : (unsigned)(fkd_wss_lower(c) - 'a' + 10);
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
        if (!fkd_wss_is_digit(r[i])) {
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

void fkd_wss_reply_begin(struct fkd_wss_reply *reply, const uint8_t **body, size_t *body_len) {
    static const uint8_t empty[] = "{}";
    if (*body == NULL) {
        *body = empty;
        *body_len = 2;
    }
    reply->code[0] = '\0';
    reply->message[0] = '\0';
    reply->body_len = 0;
    reply->reboot = 0;
    reply->reconnect = 0;
}

void fkd_wss_reply_fail(struct fkd_wss_reply *reply, const char *who, const char *kind,
                        const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(reply->message, sizeof reply->message, fmt, ap);
    va_end(ap);
    (void)snprintf(reply->code, sizeof reply->code, "%s", code);
    reply->body_len = 0;
    reply->reboot = 0;
    reply->reconnect = 0;
    fkd_log(FKD_LOG_ERROR, "%s: REFUSED: %s: %s (%s)", who, kind, reply->message, code);
}

void fkd_wss_out_put(struct fkd_wss_out *o, const char *fmt, ...) {
    if (o->over) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->b + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= o->cap - o->n) {
        o->over = 1;
        return;
    }
    o->n += (size_t)k;
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
