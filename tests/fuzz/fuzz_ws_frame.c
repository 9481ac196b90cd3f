/* Fuzz target: the device's WebSocket frame decoder (device/src/wss/ws_frame.c over wslay's frame
 * API), fed whatever the server can send inside the TLS connection as a byte stream. The first input byte picks the read size (1..64
 * bytes per read, so frame headers and payloads split at every offset) and the role; the rest
 * is the stream. Invariants: no read or write outside the buffers (ASan), every event is one
 * of the enum, a FAIL carries a close code the protocol uses, a message never exceeds the
 * buffer, and a text message re-encoded by the peer role decodes to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/wss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
    const uint8_t *in;
    size_t len;
    size_t off;
    size_t chunk;
    uint8_t *out;
    size_t out_len;
    size_t out_cap;
};

static int f_in(void *user, uint8_t *buf, size_t len) {
    struct feed *f = user;
    if (f->off == f->len) {
        return -1;
    }
    size_t n = f->len - f->off;
    n = n < len ? n : len;
    n = n < f->chunk ? n : f->chunk;
    memcpy(buf, f->in + f->off, n);
    f->off += n;
    return (int)n;
}

static int f_out(void *user, const uint8_t *buf, size_t len) {
    struct feed *f = user;
    if (f->out == NULL || len > f->out_cap - f->out_len) {
        return -1;
    }
    memcpy(f->out + f->out_len, buf, len);
    f->out_len += len;
    return 0;
}

static int f_mask(void *user, uint8_t *key, size_t len) {
    (void)user;
    for (size_t i = 0; i < len; i++) {
        key[i] = (uint8_t)(0x5A + i);
    }
    return 0;
}

/* The peer encodes msg; a fresh decoder of role must give it back unchanged. */
static void round_trip(enum fkd_ws_role role, const uint8_t *msg, size_t len) {
    static uint8_t wire[FKD_WSS_MSG_MAX + 16];
    static uint8_t back[FKD_WSS_MSG_MAX];
    struct feed enc = {NULL, 0, 0, 0, wire, 0, sizeof wire};
    struct fkd_ws e;
    fkd_ws_init(&e);
    enum fkd_ws_role peer = role == FKD_WS_CLIENT ? FKD_WS_SERVER : FKD_WS_CLIENT;
    if (fkd_ws_setup(&e, peer, f_in, f_out, f_mask, &enc, back, sizeof back) != FKD_OK ||
        fkd_ws_send(&e, FKD_WS_OP_TEXT, msg, len) != FKD_OK) {
        abort();
    }
    fkd_ws_free(&e);
    struct feed dec = {wire, enc.out_len, 0, 3, NULL, 0, 0};
    struct fkd_ws d;
    fkd_ws_init(&d);
    if (fkd_ws_setup(&d, role, f_in, f_out, f_mask, &dec, back, sizeof back) != FKD_OK ||
        fkd_ws_read(&d) != FKD_WS_TEXT || d.msg_len != len || memcmp(back, msg, len) != 0) {
        abort();
    }
    fkd_ws_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t msg[FKD_WSS_MSG_MAX];
    static uint8_t copy[FKD_WSS_MSG_MAX];
    if (size < 1) {
        return 0;
    }
    enum fkd_ws_role role = (data[0] & 0x80) ? FKD_WS_SERVER : FKD_WS_CLIENT;
    uint8_t out[256];
    struct feed f = {data + 1, size - 1, 0, (size_t)(data[0] & 0x3F) + 1, out, 0, sizeof out};
    struct fkd_ws ws;
    fkd_ws_init(&ws);
    if (fkd_ws_setup(&ws, role, f_in, f_out, f_mask, &f, msg, sizeof msg) != FKD_OK) {
        abort();
    }
    for (int events = 0; events < 10000; events++) {
        enum fkd_ws_event ev = fkd_ws_read(&ws);
        if (ev == FKD_WS_EOF || ev == FKD_WS_AGAIN) {
            break;
        }
        if (ev == FKD_WS_FAIL) {
            uint16_t c = ws.close_code;
            if ((c != 1002 && c != 1007 && c != 1009 && c != 1011) || ws.why == NULL) {
                abort();
            }
            /* the decoder's answer must be a well-formed close frame */
            if (fkd_ws_send_close(&ws, c, ws.why) != FKD_OK) {
                abort();
            }
            break;
        }
        if (ws.msg_len > sizeof msg || ws.ctl_len > sizeof ws.ctl) {
            abort();
        }
        if (ev == FKD_WS_TEXT) {
            struct fkd_wss_msg m;
            if (fkd_wss_msg_parse(ws.msg, ws.msg_len, &m, NULL) == FKD_OK &&
                memchr(m.type_str, '\0', sizeof m.type_str) == NULL) {
                abort();
            }
            memcpy(copy, ws.msg, ws.msg_len);
            round_trip(role, copy, ws.msg_len);
        } else if (ev == FKD_WS_CLOSE) {
            break;
        } else if (ev != FKD_WS_BINARY && ev != FKD_WS_PING && ev != FKD_WS_PONG) {
            abort();
        }
    }
    fkd_ws_free(&ws);
    return 0;
}
