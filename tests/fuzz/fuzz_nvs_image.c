/* Fuzz target: the NVS image reader (fk_nvs_image_read). Every input must be handled without
 * a crash, leak or sanitizer report, and what the reader returns must be self-consistent:
 * each item's entry inside the image, each value's length within what the image can hold, and
 * a clean result only when no problem was recorded. The first byte picks plain or encrypted
 * (fixed keys) reading so the decryption path is covered too. */
#include "fleetkey/nvs.h"

#include "fkd/nvs_format.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (256u << 10)) {
        return 0;
    }
    int encrypted = data[0] & 1;
    data++;
    size--;
    struct fk_nvs_image *img = NULL;
    enum fk_err rc;
    if (encrypted) {
        struct fk_nvs_keys k;
        memset(k.eky, 0x11, sizeof k.eky);
        memset(k.tky, 0x22, sizeof k.tky);
        rc = fk_nvs_image_read_encrypted(data, size, &k, &img);
    } else {
        rc = fk_nvs_image_read(data, size, &img);
    }
    if (img == NULL) {
        if (rc != FK_E_NOMEM) {
            abort(); /* only allocation failure may leave no image */
        }
        return 0;
    }
    size_t np = fk_nvs_image_problem_count(img);
    if ((rc == FK_OK) != (np == 0) || fk_nvs_image_page_count(img) != size / 4096) {
        abort();
    }
    uint8_t x = 0;
    for (size_t i = 0; i < fk_nvs_image_item_count(img); i++) {
        const struct fk_nvs_item *it = fk_nvs_image_item(img, i);
        if (it->offset + FKD_NVS_ENTRY_SIZE > size || it->len > size || it->key == NULL ||
            it->ns == NULL || strlen(it->key) > FKD_NVS_KEY_MAX) {
            abort();
        }
        for (size_t j = 0; j < it->len; j++) {
            x ^= it->data[j];
        }
        if (fk_nvs_image_find(img, it->ns, it->key) == NULL) {
            abort();
        }
        x ^= (uint8_t)fk_nvs_type_name(it->type)[0];
    }
    for (size_t i = 0; i < np; i++) {
        const struct fk_nvs_problem *p = fk_nvs_image_problem(img, i);
        if (p->offset > size || p->code == FK_OK || memchr(p->reason, '\0', sizeof p->reason) == NULL) {
            abort();
        }
    }
    sink = x;
    fk_nvs_image_free(img);
    return 0;
}
