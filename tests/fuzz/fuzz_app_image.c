/* Fuzz target: the ESP32 app image parser (fk_ota_image_parse). Every input must be handled
 * without a crash or sanitizer report, and an accepted image must describe itself
 * consistently: every slice inside the input, the image length within it. */
#include "fleetkey/ota.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fk_ota_image im;
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_ota_image_parse(data, size, &im, &d) != FK_OK) {
        return 0;
    }
    if (im.image_len > size || im.segment_count == 0 ||
        im.segment_count > FK_OTA_IMAGE_MAX_SEGMENTS) {
        abort();
    }
    uint8_t x = 0;
    for (unsigned i = 0; i < im.segment_count; i++) {
        const struct fk_ota_segment *s = &im.segments[i];
        if (s->data != data + s->offset || s->offset > im.image_len ||
            s->len > im.image_len - s->offset) {
            abort();
        }
        if (s->len > 0) {
            x ^= s->data[0] ^ s->data[s->len - 1]; /* touch both ends: ASan checks them */
        }
    }
    if (im.hash_appended && (im.sha256 == NULL || im.sha256 + 32 != data + im.image_len)) {
        abort();
    }
    sink = x; /* keeps the reads from being optimised away */
    return 0;
}
