/* Fuzz target: the virtual eFuse file parser and burn logic (device/src/boot/efuse.c), on any
 * file robot-sim or provision-keys may be handed. Properties: a parsed file encodes back to the
 * same bytes; a burn never clears a bit; a refused burn changes nothing; the digests the
 * bootloader trusts are at most three. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/efuse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fkd_efuse e, before;
    uint8_t out[FKD_EFUSE_FILE_LEN];
    uint8_t got[FKD_EFUSE_SB_DIGESTS][32];
    if (fkd_efuse_parse(data, size, &e) != FKD_OK) {
        /* Not a file: fuzz the body instead, so the burn logic sees every bit pattern. */
        fkd_efuse_blank(&e);
        memcpy(e.raw, data, size < sizeof e.raw ? size : sizeof e.raw);
    } else {
        fkd_efuse_encode(&e, out);
        if (memcmp(out, data, sizeof out) != 0) {
            abort();
        }
    }
    if (fkd_efuse_sb_digests(&e, got) > FKD_EFUSE_SB_DIGESTS) {
        abort();
    }
    uint8_t d[32];
    memset(d, 0xA5, sizeof d);
    if (size > 40) {
        memcpy(d, data + size - 32, 32);
    }
    for (int key = -1; key < 7; key++) {
        unsigned k, p;
        const char *why = NULL;
        before = e;
        enum fkd_err rc = fkd_efuse_burn_key_digest(&e, key, d, &k, &p, &why);
        if (why == NULL) {
            abort();
        }
        for (size_t i = 0; i < sizeof e.raw; i++) {
            if ((e.raw[i] & before.raw[i]) != before.raw[i]) {
                abort(); /* a bit went from 1 to 0 */
            }
        }
        if (rc != FKD_OK && memcmp(&e, &before, sizeof e) != 0) {
            abort();
        }
        before = e;
        if (fkd_efuse_revoke_digest(&e, (unsigned)(key + 1) % 4) != FKD_OK &&
            memcmp(&e, &before, sizeof e) != 0) {
            abort();
        }
    }
    for (unsigned f = 0; f < 400; f += 7) {
        (void)fkd_efuse_field(&e, f % 12, f, f % 33);
    }
    return 0;
}
