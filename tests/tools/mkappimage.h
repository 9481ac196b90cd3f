/* mkappimage: builds small but valid ESP32 app images for tests (esp_image_header_t,
 * segments, checksum, optional appended SHA-256, esp_app_desc_t carrying a version and a
 * secure_version). The segment contents are a deterministic pattern, not code: robot-sim and
 * the OTA tests only read the header and the app description. Independent of src/ota on
 * purpose (it is the "other implementation" the parser is tested against). */
#ifndef FK_TEST_MKAPPIMAGE_H
#define FK_TEST_MKAPPIMAGE_H

#include <stddef.h>
#include <stdint.h>

struct mkapp_opts {
    const char *version;      /* esp_app_desc_t.version, at most 31 characters */
    const char *project_name; /* at most 31 characters */
    uint32_t secure_version;
    uint16_t chip_id;        /* 0 ESP32, 5 C3, 13 C6 ... */
    unsigned extra_segments; /* code segments after the DROM one, 0..15 */
    uint32_t segment_len;    /* bytes of each extra segment (rounded up to 4) */
    int hash_appended;       /* 1: append the SHA-256 of the image */
    uint32_t seed;           /* pattern seed for segment data */
};

/* Fills o with defaults: version "1.0.0", project "robot", secure_version 0, chip 0 (ESP32),
 * 2 extra segments of 1000 bytes, hash appended, seed 1. */
void mkapp_defaults(struct mkapp_opts *o);
/* Bytes mkapp_build will write for o. */
size_t mkapp_size(const struct mkapp_opts *o);
/* Writes the image into out (out_size >= mkapp_size(o)). Returns the length, 0 on a bad
 * option or a short buffer. */
size_t mkapp_build(const struct mkapp_opts *o, uint8_t *out, size_t out_size);

#endif
