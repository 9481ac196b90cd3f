/* Fuzz target: the manifest parser (fk_keys_manifest_parse). Every input must be handled
 * without a crash or sanitizer report; an accepted manifest must render and parse back to the
 * same values (the writer and the parser agree on every field). */
#include "fleetkey/keys.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fk_manifest m;
    struct fk_manifest back;
    char *json = NULL;
    size_t len = 0;
    if (fk_keys_manifest_parse((const char *)data, size, &m, NULL) != FK_OK) {
        return 0;
    }
    if (fk_keys_manifest_render(&m, &json, &len) != FK_OK ||
        fk_keys_manifest_parse(json, len, &back, NULL) != FK_OK ||
        strcmp(m.device_id, back.device_id) != 0 || !fk_ct_equal(m.psk, back.psk, FK_PSK_LEN) ||
        strcmp(m.psk_identity, back.psk_identity) != 0 ||
        m.ota_pub_der_len != back.ota_pub_der_len ||
        memcmp(m.ota_pub_der, back.ota_pub_der, m.ota_pub_der_len) != 0 ||
        m.provisioned != back.provisioned || strcmp(m.provisioned_at, back.provisioned_at) != 0 ||
        strcmp(m.name, back.name) != 0 || strcmp(m.nvs_image, back.nvs_image) != 0 ||
        m.nvs_encrypted != back.nvs_encrypted || m.psk_version != back.psk_version) {
        abort();
    }
    fk_free_secret(json, len + 1);
    fk_keys_manifest_wipe(&m);
    fk_keys_manifest_wipe(&back);
    return 0;
}
