/* Fuzz target: the keys module's NVS read-back (fk_keys_nvs_extract), which checks a device
 * image against its manifest. Any bytes (cut to whole pages) must be handled without a crash;
 * what it returns must be within the buffers it was given. */
#include "fleetkey/keys.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t psk[FK_PSK_LEN];
    char id[FK_KEYS_PSK_ID_MAX];
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    size_t len = size - size % 4096;
    if (len == 0) {
        return 0;
    }
    if (fk_keys_nvs_extract(data, len, NULL, psk, id, der, sizeof der, &der_len, NULL) == FK_OK) {
        if (der_len > sizeof der || memchr(id, '\0', sizeof id) == NULL) {
            abort();
        }
    }
    return 0;
}
