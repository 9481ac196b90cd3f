/* zlib (RFC 1950) / DEFLATE (RFC 1951) decompression for the ROM responder's compressed
 * download (FLASH_DEFL_*): esptool sends zlib.compress() output, which the ESP32 ROM inflates.
 *
 * Pure C: no OS header, no allocation, no window of its own: output goes through a callback
 * that also reads back earlier output for back-references (the responder reads it from flash,
 * where it has just been written). Every input read is checked against len, every distance
 * against what was produced, every Huffman table against over-subscription, and the output
 * against max_out, so a hostile stream can only fail. Reentrant. */
#ifndef FKD_INFLATE_H
#define FKD_INFLATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_inflate_sink {
    void *user;
    /* Appends one byte; 0 or non-zero to stop. */
    int (*put)(void *user, uint8_t b);
    /* The byte dist positions back from the end of the output (1 <= dist <= produced). */
    int (*get)(void *user, uint32_t dist, uint8_t *b);
};

enum fkd_inflate_result {
    FKD_INFLATE_OK = 0,
    FKD_INFLATE_TRUNCATED = -1, /* the stream ended early */
    FKD_INFLATE_BAD = -2,       /* malformed header, block, code or distance */
    FKD_INFLATE_CHECK = -3,     /* Adler-32 mismatch */
    FKD_INFLATE_TOOBIG = -4,    /* more than max_out bytes */
    FKD_INFLATE_SINK = -5,      /* the sink refused */
};

/* Inflates the complete zlib stream in (in, len). *produced receives the bytes emitted (also on
 * failure). Trailing bytes after the Adler-32 are ignored. */
enum fkd_inflate_result fkd_inflate_zlib(const uint8_t *in, size_t len, uint32_t max_out,
                                         const struct fkd_inflate_sink *sink,
                                         uint32_t *produced);

#ifdef __cplusplus
}
#endif
#endif
