/* WebSocket framing for the wss client (fkd/wss.h, struct fkd_ws), on wslay's frame API.
 *
 * Why the frame API and not wslay's event API: the event API (wslay_event_*) allocates on
 * every message: each queued outgoing message is malloc'd and copied
 * (wslay_event_queue_msg), and incoming fragments are gathered in buffers it grows with
 * malloc/realloc. The frame API (wslay_frame_*) only parses and writes one frame at a time
 * through our callbacks: its context (a 4 KiB input buffer plus state, ~4.2 KiB) is the only
 * allocation, made once per connection in fkd_ws_setup/fkd_ws_reset (wslay has no reset of a
 * context, and a connection that dies mid-frame leaves it mid-frame); nothing is allocated per
 * message. Reassembly, limits and every RFC 6455 rule wslay does not enforce are ours, in the
 * caller's buffer:
 *   - RSV1-3 must be 0 (no extension is negotiated), 5.2;
 *   - a client fails on a masked frame, a server on an unmasked one, 5.1;
 *   - reserved opcodes 0x3-0x7 and 0xB-0xF fail, 5.2;
 *   - continuation only inside a fragmented message, and no new data message inside one, 5.4;
 *   - a frame or reassembled message larger than the buffer: close 1009 (wss-protocol.md);
 *   - a close payload of 1 byte, a bad close code or a non-UTF-8 reason fail, 5.5.1, 7.4.
 * wslay itself refuses control frames longer than 125 bytes or fragmented (5.5), non-minimal
 * extended lengths and 64-bit lengths with the top bit set (5.2): WSLAY_ERR_PROTO -> 1002.
 *
 * Sending: wslay masks client frames through a 4 KiB buffer on the stack of the caller of
 * wslay_frame_send (mind the task stack on the chip); the mask key comes from the caller's
 * DRBG for every frame (RFC 6455 5.3: "unpredictable"). */
#include "fkd/wss.h"

#include <string.h>
#include <wslay/wslay.h>

struct io_state {
    struct fkd_ws *ws;
    int got_input;
};

static ssize_t recv_cb(uint8_t *buf, size_t len, int flags, void *user) {
    (void)flags;
    struct fkd_ws *ws = user;
    if (ws->io_end) {
        return -1;
    }
    int r = ws->in(ws->user, buf, len);
    if (r > 0) {
        ws->got_input = 1;
        return r > (int)len ? -1 : r;
    }
    if (r < 0) {
        ws->io_end = 1;
    }
    return -1; /* wslay: WSLAY_ERR_WANT_READ */
}

static ssize_t send_cb(const uint8_t *data, size_t len, int flags, void *user) {
    (void)flags;
    struct fkd_ws *ws = user;
    if (ws->out_err || ws->out(ws->user, data, len) != 0) {
        ws->out_err = 1;
        return -1;
    }
    return (ssize_t)len;
}

static int genmask_cb(uint8_t *buf, size_t len, void *user) {
    struct fkd_ws *ws = user;
    return ws->mask != NULL && ws->mask(ws->user, buf, len) == 0 ? 0 : -1;
}

void fkd_ws_init(struct fkd_ws *ws) {
    memset(ws, 0, sizeof *ws);
}

static enum fkd_err new_frame_ctx(struct fkd_ws *ws) {
    static const struct wslay_frame_callbacks cbs = {send_cb, recv_cb, genmask_cb};
    wslay_frame_context_ptr fr = NULL;
    if (wslay_frame_context_init(&fr, &cbs, ws) != 0) {
        return FKD_E_NOSPACE;
    }
    ws->frame = fr;
    return FKD_OK;
}

enum fkd_err fkd_ws_setup(struct fkd_ws *ws, enum fkd_ws_role role, fkd_ws_io_fn *in,
                          fkd_ws_out_fn *out, fkd_ws_mask_fn *mask, void *user, uint8_t *msg,
                          size_t msg_cap) {
    if (ws == NULL || in == NULL || out == NULL || msg == NULL || msg_cap == 0 ||
        (role == FKD_WS_CLIENT && mask == NULL) || ws->frame != NULL) {
        return FKD_E_ARG;
    }
    ws->role = role;
    ws->in = in;
    ws->out = out;
    ws->mask = mask;
    ws->user = user;
    ws->msg = msg;
    ws->msg_cap = msg_cap;
    return new_frame_ctx(ws);
}

enum fkd_err fkd_ws_reset(struct fkd_ws *ws) {
    if (ws->frame != NULL) {
        wslay_frame_context_free(ws->frame);
        ws->frame = NULL;
    }
    ws->io_end = 0;
    ws->out_err = 0;
    ws->msg_len = 0;
    ws->msg_op = 0;
    ws->frame_open = 0;
    ws->ctl_len = 0;
    ws->close_code = 0;
    ws->why = NULL;
    return ws->in != NULL ? new_frame_ctx(ws) : FKD_E_ARG;
}

void fkd_ws_free(struct fkd_ws *ws) {
    if (ws == NULL) {
        return;
    }
    if (ws->frame != NULL) {
        wslay_frame_context_free(ws->frame);
    }
    fkd_wipe(ws->ctl, sizeof ws->ctl);
    memset(ws, 0, sizeof *ws);
}

static enum fkd_ws_event fail(struct fkd_ws *ws, uint16_t code, const char *why) {
    ws->close_code = code;
    ws->why = why;
    ws->frame_open = 0;
    return FKD_WS_FAIL;
}

/* RFC 6455 7.4.1/7.4.2: codes a peer may send in a close frame. */
static int close_code_ok(unsigned c) {
    if (c >= 3000 && c <= 4999) {
        return 1;
    }
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011);
}

enum fkd_ws_event fkd_ws_read(struct fkd_ws *ws) {
    if (ws == NULL || ws->frame == NULL) {
        return FKD_WS_EOF;
    }
    for (;;) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof io);
        ws->got_input = 0;
        ssize_t r = wslay_frame_recv(ws->frame, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (ws->io_end) {
                return FKD_WS_EOF;
            }
            if (ws->got_input) {
                continue; /* wslay stops after one read even when it got too little */
            }
            return FKD_WS_AGAIN;
        }
        if (r == WSLAY_ERR_PROTO) {
            /* control frame > 125 bytes or fragmented, non-minimal or 2^63+ length */
            return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "malformed frame header");
        }
        if (r < 0) {
            return fail(ws, FKD_WSS_CLOSE_INTERNAL, "frame layer error");
        }
        if (!ws->frame_open) {
            uint8_t op = io.opcode;
            ws->frame_open = 1;
            ws->frame_op = op;
            ws->frame_fin = io.fin;
            ws->frame_len = io.payload_length;
            ws->frame_off = 0;
            /* RFC 6455 5.2: "MUST be 0 unless an extension is negotiated that defines
             * meanings for non-zero values." */
            if (io.rsv != 0) {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "reserved bits set");
            }
            /* 5.1: "A client MUST close a connection if it detects a masked frame." and
             * "The server MUST close the connection upon receiving a frame that is not
             * masked." */
            if (ws->role == FKD_WS_CLIENT && io.mask) {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "masked frame from the server");
            }
            if (ws->role == FKD_WS_SERVER && !io.mask) {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "unmasked frame from the client");
            }
            if (op == FKD_WS_OP_CLOSE || op == FKD_WS_OP_PING || op == FKD_WS_OP_PONG) {
                ws->ctl_len = 0;
            } else if (op == FKD_WS_OP_CONT) {
                if (ws->msg_op == 0) {
                    return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "continuation without a message");
                }
            } else if (op == FKD_WS_OP_TEXT || op == FKD_WS_OP_BINARY) {
                if (ws->msg_op != 0) {
                    return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "new message inside a fragmented one");
                }
                ws->msg_op = op;
                ws->msg_len = 0;
            } else {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "reserved opcode");
            }
            if (op < 0x8 && ws->frame_len > (uint64_t)(ws->msg_cap - ws->msg_len)) {
                return fail(ws, FKD_WSS_CLOSE_TOO_BIG, "message too big");
            }
        }
        size_t n = io.data_length;
        if (n > ws->frame_len - ws->frame_off) {
            return fail(ws, FKD_WSS_CLOSE_INTERNAL, "frame layer overrun");
        }
        if (ws->frame_op >= 0x8) {
            if (n > sizeof ws->ctl - ws->ctl_len) {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "control frame too long");
            }
            memcpy(ws->ctl + ws->ctl_len, io.data, n);
            ws->ctl_len += n;
        } else if (n > 0) {
            /* bounded above: frame_len <= msg_cap - msg_len at the header */
            memcpy(ws->msg + ws->msg_len, io.data, n);
            ws->msg_len += n;
        }
        ws->frame_off += n;
        if (ws->frame_off < ws->frame_len) {
            continue;
        }
        ws->frame_open = 0;
        switch (ws->frame_op) {
        case FKD_WS_OP_PING:
            return FKD_WS_PING;
        case FKD_WS_OP_PONG:
            return FKD_WS_PONG;
        case FKD_WS_OP_CLOSE:
            if (ws->ctl_len == 0) {
                ws->close_code = 1005; /* 7.1.5: "no status code was present" */
                return FKD_WS_CLOSE;
            }
            if (ws->ctl_len == 1) {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "close frame of one byte");
            }
            ws->close_code = (uint16_t)((ws->ctl[0] << 8) | ws->ctl[1]);
            if (!close_code_ok(ws->close_code)) {
                return fail(ws, FKD_WSS_CLOSE_PROTOCOL, "invalid close code");
            }
            if (!fkd_utf8_valid(ws->ctl + 2, ws->ctl_len - 2)) {
                return fail(ws, FKD_WSS_CLOSE_BAD_DATA, "close reason not UTF-8");
            }
            return FKD_WS_CLOSE;
        default:
            break;
        }
        if (!ws->frame_fin) {
            continue; /* more fragments of this message follow */
        }
        uint8_t op = ws->msg_op;
        ws->msg_op = 0;
        return op == FKD_WS_OP_TEXT ? FKD_WS_TEXT : FKD_WS_BINARY;
    }
}

enum fkd_err fkd_ws_send(struct fkd_ws *ws, uint8_t opcode, const uint8_t *data, size_t len) {
    if (ws == NULL || ws->frame == NULL || (data == NULL && len > 0) ||
        (opcode >= 0x8 && len > 125)) {
        return FKD_E_ARG;
    }
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof io);
    io.fin = 1;
    io.opcode = opcode;
    io.mask = ws->role == FKD_WS_CLIENT;
    io.payload_length = len;
    io.data = data;
    io.data_length = len;
    ssize_t r = wslay_frame_send(ws->frame, &io);
    /* Our send callback writes everything or fails, so one call sends the whole frame. */
    if (r < 0 || (size_t)r != len || ws->out_err) {
        ws->out_err = 1;
        return FKD_E_IO;
    }
    return FKD_OK;
}

enum fkd_err fkd_ws_send_close(struct fkd_ws *ws, uint16_t code, const char *reason) {
    uint8_t b[125];
    size_t rl = reason != NULL ? strlen(reason) : 0;
    if (rl > sizeof b - 2) {
        rl = sizeof b - 2;
    }
    b[0] = (uint8_t)(code >> 8);
    b[1] = (uint8_t)code;
    if (rl > 0) {
        memcpy(b + 2, reason, rl);
    }
    return fkd_ws_send(ws, FKD_WS_OP_CLOSE, b, rl + 2);
}
