/* Fuzz harness: the device NVS runtime mounting arbitrary partition bytes (plain, and
 * encrypted with a fixed key), then reading every item it lists and writing one, as a robot
 * would after a corrupted flash. The input is repeated/truncated to a whole number of pages
 * (2..4). Must never crash, hang or read out of bounds; the read-only mount must not write. */
#include "fkd/flash.h"
#include "fkd/nvs.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results do not matter here; only crashes and sanitizer reports do. */
static void ignore(enum fkd_err rc) {
    (void)rc;
}

static struct fkd_nvs nvs;
static uint8_t out[16384];

static int each(void *user, const char *ns, const char *key, uint8_t type) {
    (void)user;
    (void)type;
    size_t len;
    struct fkd_nvs_int v;
    ignore(fkd_nvs_get_blob(&nvs, ns, key, out, sizeof out, &len));
    ignore(fkd_nvs_get_str(&nvs, ns, key, (char *)out, sizeof out, &len));
    ignore(fkd_nvs_get_int(&nvs, ns, key, &v));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t img[4 * FKD_NVS_PAGE_SIZE];
    static const uint8_t key[64] = {1, 2, 3, 4, 5, 6, 7, 8};
    if (size == 0) {
        return 0;
    }
    uint32_t pages = 2 + (uint32_t)(data[0] % 3);
    size_t len = pages * FKD_NVS_PAGE_SIZE;
    for (int enc = 0; enc < 2; enc++) {
        for (size_t i = 0; i < len; i++) {
            img[i] = data[(i + 1) % size];
        }
        struct fkd_flash_mem m;
        struct fkd_flash f;
        fkd_flash_mem_init(&m, img, (uint32_t)len, &f);
        /* Read-only first: it must leave every byte as it was. */
        fkd_nvs_init(&nvs);
        if (fkd_nvs_mount_readonly(&nvs, &f, 0, (uint32_t)len, enc ? key : NULL, NULL) ==
            FKD_OK) {
            ignore(fkd_nvs_foreach(&nvs, each, NULL));
        }
        fkd_nvs_free(&nvs);
        if (m.ops != 0) {
            __builtin_trap();
        }
        fkd_nvs_init(&nvs);
        if (fkd_nvs_mount(&nvs, &f, 0, (uint32_t)len, enc ? key : NULL, NULL) == FKD_OK) {
            ignore(fkd_nvs_foreach(&nvs, each, NULL));
            ignore(fkd_nvs_set_str(&nvs, "fz", "k", "value"));
            size_t l;
            if (fkd_nvs_get_str(&nvs, "fz", "k", (char *)out, sizeof out, &l) == FKD_OK &&
                strcmp((const char *)out, "value") != 0) {
                __builtin_trap(); /* a successful write must read back */
            }
        }
        fkd_nvs_free(&nvs);
    }
    return 0;
}
