/* Fuzz target: the SLIP decoder (device/src/rom/slip.c) that both the host flasher and the
 * device-side ROM responder run on untrusted serial input. Checks, beyond "no crash": a decoded
 * frame never exceeds the decoder's buffer, re-encoding a frame and decoding it again gives the
 * same bytes, and encoding the whole input then decoding it is the identity. */
#include "fkd/slip.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const uint8_t *in, size_t len) {
    static uint8_t wire[FKD_SLIP_ENCODED_MAX(4096)];
    static uint8_t buf[4096];
    size_t wlen = 0, used = 0, off = 0, flen = 0;
    struct fkd_slip s;
    if (len == 0 || len > sizeof buf) {
        return;
    }
    if (fkd_slip_encode(in, len, wire, sizeof wire, &wlen) != 0) {
        abort();
    }
    fkd_slip_init(&s, buf, sizeof buf);
    enum fkd_slip_event ev = FKD_SLIP_NEED_MORE;
    while (off < wlen && ev == FKD_SLIP_NEED_MORE) {
        ev = fkd_slip_feed(&s, wire + off, wlen - off, &used);
        off += used;
    }
    const uint8_t *f = fkd_slip_frame(&s, &flen);
    if (ev != FKD_SLIP_FRAME || flen != len || memcmp(f, in, len) != 0 || off != wlen) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t buf[64];
    struct fkd_slip s;
    size_t off = 0;
    fkd_slip_init(&s, buf, sizeof buf);
    while (off < size) {
        size_t used = 0, flen = 0;
        enum fkd_slip_event ev = fkd_slip_feed(&s, data + off, size - off, &used);
        if (used == 0 || used > size - off) {
            abort(); /* the decoder must always make progress */
        }
        off += used;
        if (ev == FKD_SLIP_FRAME) {
            const uint8_t *f = fkd_slip_frame(&s, &flen);
            if (flen == 0 || flen > sizeof buf) {
                abort();
            }
            uint8_t copy[64];
            memcpy(copy, f, flen);
            check_round_trip(copy, flen);
        }
    }
    check_round_trip(data, size);
    return 0;
}
