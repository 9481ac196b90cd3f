/* SLIP framing (RFC 1055) as the ESP32 ROM serial download protocol uses it: the one
 * implementation shared by the host flasher (src/flash) and the device-side ROM responder
 * (device/src/rom/rom.c).
 *
 * esptool "Serial Protocol", Low Level Protocol: "Each SLIP packet begins and ends with 0xC0.
 * Within the packet, all occurrences of 0xC0 and 0xDB are replaced with 0xDB 0xDC and 0xDB 0xDD,
 * respectively."
 *
 * Pure C: no OS header, no allocation. The decoder is a streaming state machine over a buffer
 * the caller hands in; a frame larger than that buffer is dropped, never truncated silently.
 * Thread safety: one decoder per thread; the encoder is reentrant. */
#ifndef FKD_SLIP_H
#define FKD_SLIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_SLIP_END 0xC0u
#define FKD_SLIP_ESC 0xDBu
#define FKD_SLIP_ESC_END 0xDCu
#define FKD_SLIP_ESC_ESC 0xDDu

/* Worst case encoded size of n payload bytes: every byte escaped, plus both delimiters. */
#define FKD_SLIP_ENCODED_MAX(n) (2u * (size_t)(n) + 2u)

/* Encodes one frame (0xC0, escaped payload, 0xC0) into out. Returns 0 and sets *out_len, or
 * -1 when out_size is too small (out is then unspecified). Never reads past in[len]. */
int fkd_slip_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_size,
                    size_t *out_len);

/* What fkd_slip_feed() stopped at. */
enum fkd_slip_event {
    FKD_SLIP_NEED_MORE = 0, /* every input byte consumed, no frame complete yet */
    FKD_SLIP_FRAME,         /* a frame is complete: fkd_slip_frame() returns it */
    FKD_SLIP_BAD_ESCAPE,    /* 0xDB followed by something other than 0xDC/0xDD: frame dropped */
    FKD_SLIP_TOO_BIG,       /* frame longer than the buffer: frame dropped */
};

/* Decoder state; fields are private. Bytes outside a frame (a boot log, line noise) are
 * skipped; an empty frame (0xC0 0xC0) is the start delimiter of the next frame, not a frame. */
struct fkd_slip {
    uint8_t *buf;
    size_t cap;
    size_t len;
    uint8_t state; /* 0 outside, 1 in frame, 2 after 0xDB, 3 dropping until 0xC0 */
    uint32_t noise; /* bytes skipped outside frames (diagnostics) */
};

/* Borrows buf (cap bytes) for the decoder's lifetime; cap is the maximum frame size. */
void fkd_slip_init(struct fkd_slip *s, uint8_t *buf, size_t cap);
/* Forgets any partial frame (after a timeout or a port flush). */
void fkd_slip_reset(struct fkd_slip *s);
/* Feeds up to len bytes; stops after the first event other than NEED_MORE, so a caller loops
 * until *consumed == len. A frame stays valid until the next feed or reset. */
enum fkd_slip_event fkd_slip_feed(struct fkd_slip *s, const uint8_t *in, size_t len,
                                  size_t *consumed);
/* The last complete frame (valid after FKD_SLIP_FRAME). */
const uint8_t *fkd_slip_frame(const struct fkd_slip *s, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
