/* The control protocol: one request per datagram, a text line in, one line out.
 *
 * The parser is the first code that touches bytes an authenticated (or, in plaintext mode,
 * anonymous) peer chose, so it is deliberately small: a length cap, a printable-ASCII check,
 * an exact keyword match, and a decimal parser that refuses anything it cannot bound (no
 * leading '+', no leading zeros beyond "0", at most 7 digits). It never allocates and never
 * reads past len. Responses are built with a bounded JSON writer that cannot overflow.
 * The grammar and the replies are in docs/control-protocol.md. */
#include <stdio.h>
#include <string.h>

#include "fkd/ctl.h"
#include "mbedtls_compat.h"

#define ERR_TEXT(name, text) text,
static const char *const err_text[] = {FKD_CTL_ERR_TABLE(ERR_TEXT)};
#undef ERR_TEXT

const char *fkd_ctl_strerror(int rc) {
    if (rc < 0 || rc >= FKD_CTL_ERR_COUNT) {
        return "unknown error";
    }
    return err_text[rc];
}

void fkd_ctl_fingerprint(const uint8_t *buf, size_t len, char out[FKD_CTL_FPR_LEN]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t d[32];
    if (fkd_mbedtls_sha256(buf, len, d) != 0) {
        memcpy(out, "sha256:?", sizeof "sha256:?");
        return;
    }
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < 8; i++) {
        out[7 + 2 * i] = hex[d[i] >> 4];
        out[8 + 2 * i] = hex[d[i] & 15];
    }
    out[23] = '\0';
    mbedtls_platform_zeroize(d, sizeof d);
}

/* ---- bounded JSON writer ------------------------------------------------------------- */

static void put(struct fkd_ctl_json *w, const char *s, size_t n) {
    if (w->overflow || n > w->size - w->len - 1) {
        w->overflow = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(struct fkd_ctl_json *w, const char *s) {
    put(w, s, strlen(s));
}

/* A JSON string literal; control bytes and non-ASCII become \u00XX so the output stays one
 * printable line whatever a peer put in its identity. */
static void put_qstr(struct fkd_ctl_json *w, const char *s) {
    static const char hex[] = "0123456789abcdef";
    put(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            put(w, e, 2);
        } else if (*p < 0x20 || *p >= 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            put(w, e, 6);
        } else {
            put(w, (const char *)p, 1);
        }
    }
    put(w, "\"", 1);
}

static void key(struct fkd_ctl_json *w, const char *k) {
    if (!w->first) {
        put(w, ",", 1);
    }
    w->first = 0;
    put_qstr(w, k);
    put(w, ":", 1);
}

void fkd_ctl_json_str(struct fkd_ctl_json *w, const char *k, const char *val) {
    key(w, k);
    put_qstr(w, val != NULL ? val : "");
}

void fkd_ctl_json_int(struct fkd_ctl_json *w, const char *k, long long val) {
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", val);
    key(w, k);
    put(w, num, n > 0 ? (size_t)n : 0);
}

void fkd_ctl_json_bool(struct fkd_ctl_json *w, const char *k, int val) {
    key(w, k);
    puts_(w, val ? "true" : "false");
}

void fkd_ctl_json_raw(struct fkd_ctl_json *w, const char *k, const char *json) {
    key(w, k);
    puts_(w, json != NULL && json[0] != '\0' ? json : "null");
}

void fkd_ctl_json_begin(struct fkd_ctl_json *w, const char *k) {
    key(w, k);
    put(w, "{", 1);
    w->first = 1;
}

void fkd_ctl_json_end(struct fkd_ctl_json *w) {
    put(w, "}", 1);
    w->first = 0;
}

/* ---- parser -------------------------------------------------------------------------- */

/* Parses a decimal integer in [-FKD_CTL_MOVE_STEP_MAX, FKD_CTL_MOVE_STEP_MAX] spanning exactly
 * s[0..n). */
static int parse_step(const uint8_t *s, size_t n, int32_t *out, const char **why) {
    size_t i = 0;
    int neg = 0;
    if (n > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n) {
        *why = "expected a number";
        return FKD_CTL_E_PARSE;
    }
    if (n - i > 7) {
        *why = "number too long";
        return FKD_CTL_E_RANGE;
    }
    if (s[i] == '0' && n - i > 1) {
        *why = "leading zero";
        return FKD_CTL_E_PARSE;
    }
    int32_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = "expected a number";
            return FKD_CTL_E_PARSE;
        }
        v = v * 10 + (int32_t)(s[i] - '0'); /* at most 7 digits: cannot overflow */
    }
    if (v > FKD_CTL_MOVE_STEP_MAX) {
        *why = "step out of range";
        return FKD_CTL_E_RANGE;
    }
    *out = neg ? -v : v;
    return FKD_CTL_OK;
}

int fkd_ctl_proto_parse(const uint8_t *buf, size_t len, struct fkd_ctl_req *out,
                        const char **why) {
    static const char *unused;
    if (why == NULL) {
        why = &unused;
    }
    *why = "";
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0) {
        *why = "empty request";
        return FKD_CTL_E_PARSE;
    }
    if (len > FKD_CTL_REQ_MAX) {
        *why = "request too long";
        return FKD_CTL_E_PARSE;
    }
    /* One optional line ending, nothing after it. */
    if (buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r') {
            len--;
        }
    }
    for (size_t i = 0; i < len; i++) {
        if (buf[i] < 0x20 || buf[i] > 0x7e) {
            *why = "non-printable byte";
            return FKD_CTL_E_PARSE;
        }
    }
    /* Split into at most 3 words at single spaces. */
    const uint8_t *w[3];
    size_t wl[3];
    size_t nw = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || buf[i] == ' ') {
            if (i == start) {
                *why = "empty word";
                return FKD_CTL_E_PARSE;
            }
            if (nw == 3) {
                *why = "too many words";
                return FKD_CTL_E_PARSE;
            }
            w[nw] = buf + start;
            wl[nw] = i - start;
            nw++;
            start = i + 1;
        }
    }
    if (nw == 1 && wl[0] == 4 && memcmp(w[0], "ping", 4) == 0) {
        out->kind = FKD_CTL_REQ_PING;
        return FKD_CTL_OK;
    }
    if (nw == 1 && wl[0] == 6 && memcmp(w[0], "status", 6) == 0) {
        out->kind = FKD_CTL_REQ_STATUS;
        return FKD_CTL_OK;
    }
    if (wl[0] == 4 && memcmp(w[0], "move", 4) == 0) {
        if (nw != 3) {
            *why = "usage: move <dx> <dy>";
            return FKD_CTL_E_PARSE;
        }
        int rc = parse_step(w[1], wl[1], &out->dx, why);
        if (rc == FKD_CTL_OK) {
            rc = parse_step(w[2], wl[2], &out->dy, why);
        }
        if (rc == FKD_CTL_OK) {
            out->kind = FKD_CTL_REQ_MOVE;
        }
        return rc;
    }
    if ((wl[0] == 4 && memcmp(w[0], "ping", 4) == 0) ||
        (wl[0] == 6 && memcmp(w[0], "status", 6) == 0)) {
        *why = "command takes no arguments";
        return FKD_CTL_E_PARSE;
    }
    *why = "unknown command";
    return FKD_CTL_E_PARSE;
}

/* ---- handler ------------------------------------------------------------------------- */

static void error_reply(struct fkd_ctl_json *w, const char *code, const char *detail) {
    fkd_ctl_json_bool(w, "ok", 0);
    fkd_ctl_json_str(w, "error", code);
    fkd_ctl_json_str(w, "detail", detail);
}

static void status_reply(struct fkd_ctl_json *w, const struct fkd_ctl_reqctx *ctx) {
    static const char *const slot_name[FKD_CTL_SLOT_COUNT] = {"current", "next"};
    fkd_ctl_json_bool(w, "ok", 1);
    fkd_ctl_json_str(w, "fw", ctx->fw_version != NULL ? ctx->fw_version : "unknown");
    fkd_ctl_json_int(w, "uptime_s", (long long)(ctx->uptime_ms / 1000u));
    fkd_ctl_json_str(w, "channel", ctx->mode == FKD_CTL_MODE_DTLS ? "dtls-psk" : "plaintext");
    if (ctx->mode == FKD_CTL_MODE_DTLS) {
        fkd_ctl_json_str(w, "identity", ctx->identity);
        fkd_ctl_json_str(w, "auth_slot",
                         ctx->slot >= 0 && ctx->slot < FKD_CTL_SLOT_COUNT ? slot_name[ctx->slot]
                                                                          : "none");
    }
    if (ctx->keys != NULL) {
        fkd_ctl_json_begin(w, "dtls_psk");
        for (int i = 0; i < FKD_CTL_SLOT_COUNT; i++) {
            const struct fkd_ctl_key *k = &ctx->keys[i];
            if (k->psk_len == 0) {
                continue;
            }
            fkd_ctl_json_begin(w, slot_name[i]);
            fkd_ctl_json_int(w, "version", k->version);
            fkd_ctl_json_str(w, "fpr", k->fpr);
            fkd_ctl_json_end(w);
        }
        fkd_ctl_json_end(w);
    }
    if (ctx->stats != NULL) {
        fkd_ctl_json_begin(w, "sessions");
        fkd_ctl_json_int(w, "active", ctx->stats->active);
        fkd_ctl_json_int(w, "max", ctx->max_sessions);
        fkd_ctl_json_int(w, "hwm", ctx->stats->active_hwm);
        fkd_ctl_json_int(w, "handshakes_ok", ctx->stats->handshakes_ok);
        fkd_ctl_json_int(w, "handshakes_failed", ctx->stats->handshakes_failed);
        fkd_ctl_json_int(w, "hello_verify_sent", ctx->stats->hello_verify_sent);
        fkd_ctl_json_int(w, "dropped", ctx->stats->dropped);
        fkd_ctl_json_int(w, "busy", ctx->stats->busy);
        fkd_ctl_json_end(w);
    }
    if (ctx->status != NULL) {
        ctx->status(ctx->user, w);
    }
}

void fkd_ctl_proto_handle(const uint8_t *buf, size_t len, const struct fkd_ctl_reqctx *ctx,
                          struct fkd_ctl_robot *robot, uint8_t *out, size_t out_size,
                          size_t *out_len) {
    *out_len = 0;
    if (out_size < 2) {
        return;
    }
    struct fkd_ctl_req req;
    const char *why = "";
    int rc = fkd_ctl_proto_parse(buf, len, &req, &why);
    if (rc == FKD_CTL_OK && req.kind == FKD_CTL_REQ_PING) {
        static const char pong[] = "pong\n";
        if (out_size >= sizeof pong) {
            memcpy(out, pong, sizeof pong - 1);
            *out_len = sizeof pong - 1;
        }
        return;
    }
    /* Leave room for "\n". */
    struct fkd_ctl_json w = {(char *)out, out_size - 1, 0, 1, 0};
    out[0] = '\0';
    put(&w, "{", 1);
    if (rc != FKD_CTL_OK) {
        error_reply(&w, rc == FKD_CTL_E_RANGE ? "out_of_range" : "bad_request", why);
    } else if (req.kind == FKD_CTL_REQ_STATUS) {
        status_reply(&w, ctx);
    } else {
        int64_t nx = (int64_t)robot->x + req.dx;
        int64_t ny = (int64_t)robot->y + req.dy;
        if (nx > FKD_CTL_POS_LIMIT || nx < -FKD_CTL_POS_LIMIT || ny > FKD_CTL_POS_LIMIT ||
            ny < -FKD_CTL_POS_LIMIT) {
            error_reply(&w, "out_of_range", "move would leave the arena");
        } else {
            robot->x = (int32_t)nx;
            robot->y = (int32_t)ny;
            robot->moves++;
            fkd_ctl_json_bool(&w, "ok", 1);
            fkd_ctl_json_int(&w, "x", robot->x);
            fkd_ctl_json_int(&w, "y", robot->y);
            fkd_ctl_json_int(&w, "moves", robot->moves);
        }
    }
    put(&w, "}", 1);
    if (w.overflow) {
        /* A status callback that wrote too much: answer with an error that always fits. */
        w.len = 0;
        w.overflow = 0;
        w.first = 1;
        put(&w, "{", 1);
        error_reply(&w, "internal", "response too large");
        put(&w, "}", 1);
    }
    out[w.len] = '\n';
    *out_len = w.len + 1;
}
