/* SLIP codec: see fkd/slip.h. The decoder never writes past buf[cap - 1]: the length is checked
 * before every store, and a frame that would not fit is dropped whole (state 3) so a truncated
 * frame can never be mistaken for a complete one. */
#include "fkd/slip.h"

enum { ST_OUT = 0, ST_IN = 1, ST_ESC = 2, ST_DROP = 3 };

int fkd_slip_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_size,
                    size_t *out_len) {
    size_t o = 0;
    if (out_size < 2) {
        return -1;
    }
    out[o++] = FKD_SLIP_END;
    for (size_t i = 0; i < len; i++) {
        /* Two bytes for an escape plus one for the closing END must still fit. */
        if (out_size - o < 3) {
            return -1;
        }
        if (in[i] == FKD_SLIP_END) {
            out[o++] = FKD_SLIP_ESC;
            out[o++] = FKD_SLIP_ESC_END;
        } else if (in[i] == FKD_SLIP_ESC) {
            out[o++] = FKD_SLIP_ESC;
            out[o++] = FKD_SLIP_ESC_ESC;
        } else {
            out[o++] = in[i];
        }
    }
    out[o++] = FKD_SLIP_END;
    *out_len = o;
    return 0;
}

void fkd_slip_init(struct fkd_slip *s, uint8_t *buf, size_t cap) {
    s->buf = buf;
    s->cap = cap;
    s->len = 0;
    s->state = ST_OUT;
    s->noise = 0;
}

void fkd_slip_reset(struct fkd_slip *s) {
    s->len = 0;
    s->state = ST_OUT;
}

static int put(struct fkd_slip *s, uint8_t b) {
    if (s->len >= s->cap) {
        return -1;
    }
    s->buf[s->len++] = b;
    return 0;
}

enum fkd_slip_event fkd_slip_feed(struct fkd_slip *s, const uint8_t *in, size_t len,
                                  size_t *consumed) {
    size_t i = 0;
    enum fkd_slip_event ev = FKD_SLIP_NEED_MORE;
    while (i < len && ev == FKD_SLIP_NEED_MORE) {
        uint8_t b = in[i++];
        switch (s->state) {
        case ST_OUT:
            if (b == FKD_SLIP_END) {
                s->len = 0;
                s->state = ST_IN;
            } else {
                s->noise++;
            }
            break;
        case ST_IN:
            if (b == FKD_SLIP_END) {
                /* An empty frame is the opening delimiter of the next one. */
                if (s->len > 0) {
                    s->state = ST_OUT;
                    ev = FKD_SLIP_FRAME;
                }
            } else if (b == FKD_SLIP_ESC) {
                s->state = ST_ESC;
            } else if (put(s, b) != 0) {
                s->state = ST_DROP;
                ev = FKD_SLIP_TOO_BIG;
            }
            break;
        case ST_ESC:
            if (b == FKD_SLIP_ESC_END || b == FKD_SLIP_ESC_ESC) {
                if (put(s, b == FKD_SLIP_ESC_END ? FKD_SLIP_END : FKD_SLIP_ESC) != 0) {
                    s->state = ST_DROP;
                    ev = FKD_SLIP_TOO_BIG;
                } else {
                    s->state = ST_IN;
                }
            } else {
                /* "0xDB 0xC0" ends the broken frame right here; anything else drops the rest
                 * of it up to its closing 0xC0. */
                s->state = b == FKD_SLIP_END ? ST_OUT : ST_DROP;
                s->len = 0;
                ev = FKD_SLIP_BAD_ESCAPE;
            }
            break;
        default: /* ST_DROP */
            if (b == FKD_SLIP_END) {
                s->state = ST_OUT;
                s->len = 0;
            }
            break;
        }
    }
    *consumed = i;
    return ev;
}

const uint8_t *fkd_slip_frame(const struct fkd_slip *s, size_t *len) {
    *len = s->len;
    return s->buf;
}
