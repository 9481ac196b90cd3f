/* Fuzz target: what fkd_rot_load trusts at boot, the rotation records fk_rot/<class> and the
 * slots they point at. The input's first byte picks which PSK slots hold a credential; the rest
 * is split in four and written as the records of the four classes (a blob, or a string when
 * the split piece starts with 's'). Invariants (abort on violation): load never fails on a
 * healthy flash; every class ends in a state in range with an active slot A or B; when slot A
 * or B held a PSK, the slot in use for PSK holds one after load (a damaged record never
 * leaves the robot on an empty slot it could have avoided). */
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/rot.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SIZE (4u * FKD_FLASH_SECTOR)
static uint8_t buf[SIZE];

static void put_psk(struct fkd_nvs *n, const char *k, const char *idk, uint8_t fill) {
    uint8_t psk[32];
    memset(psk, fill, sizeof psk);
    if (fkd_nvs_set_blob(n, "security", k, psk, sizeof psk) != FKD_OK ||
        fkd_nvs_set_str(n, "security", idk, "robot-aabbccddeeff") != FKD_OK) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fkd_flash_mem mem;
    static struct fkd_nvs nvs;
    static struct fkd_rot rot;
    struct fkd_flash flash;
    if (size < 1) {
        return 0;
    }
    memset(buf, 0xff, sizeof buf);
    fkd_flash_mem_init(&mem, buf, SIZE, &flash);
    fkd_nvs_init(&nvs);
    if (fkd_nvs_format(&nvs, &flash, 0, SIZE, NULL) != FKD_OK) {
        abort();
    }
    uint8_t slots = data[0];
    if (slots & 1u) {
        put_psk(&nvs, "dtls_psk", "psk_id", 0xa0);
    }
    if (slots & 2u) {
        put_psk(&nvs, "dtls_psk_b", "psk_id_b", 0xb0);
    }
    static const char *const rec[4] = {"psk", "mtls", "ca", "ota"};
    size_t rest = size - 1;
    size_t piece = rest / 4;
    for (unsigned c = 0; c < 4 && piece > 0; c++) {
        const uint8_t *p = data + 1 + c * piece;
        size_t n = piece > 64 ? 64 : piece;
        if (p[0] == 's') {
            char s[65];
            size_t k = 0;
            for (size_t i = 1; i < n; i++) {
                if (p[i] != 0) {
                    s[k++] = (char)p[i];
                }
            }
            s[k] = '\0';
            if (fkd_nvs_set_str(&nvs, "fk_rot", rec[c], s) != FKD_OK) {
                abort(); /* a string of 0..63 printable bytes always fits */
            }
        } else if (fkd_nvs_set_blob(&nvs, "fk_rot", rec[c], p, n) != FKD_OK) {
            abort();
        }
    }
    fkd_rot_init(&rot);
    if (fkd_rot_load(&rot, &nvs, data[0] >> 4, 0) != FKD_OK) {
        abort();
    }
    for (unsigned c = 0; c < FKD_ROT_CLASS_COUNT; c++) {
        const struct fkd_rot_info *i = fkd_rot_info(&rot, (enum fkd_rot_class)c);
        if (i->state > FKD_ROT_ROLLED_BACK || i->active > FKD_ROT_SLOT_B) {
            abort();
        }
    }
    if (slots & 3u) {
        uint8_t psk[33];
        size_t len = 0;
        unsigned use = fkd_rot_slot_in_use(&rot, FKD_ROT_PSK);
        if (fkd_rot_read(&rot, FKD_ROT_PSK, 0, use, psk, sizeof psk, &len) != FKD_OK ||
            len != 32) {
            abort();
        }
    }
    return 0;
}
