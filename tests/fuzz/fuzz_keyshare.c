/* Fuzz target: the key-backup share file parser (fk_keyshare_parse). Every input must be
 * handled without a crash or sanitizer report; an accepted share must format and parse back
 * to the same fields (the text may differ: hex case, base64 padding bits). */
#include "fleetkey/keybackup.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fk_keyshare s, back;
    static char text[FK_KEYSHARE_FILE_MAX + 1];
    size_t len = 0;
    if (fk_keyshare_parse(data, size, &s, NULL) != FK_OK) {
        return 0;
    }
    if (fk_keyshare_format(&s, text, sizeof text, &len) != FK_OK ||
        fk_keyshare_parse((const uint8_t *)text, len, &back, NULL) != FK_OK ||
        back.index != s.index || back.threshold != s.threshold || back.shares != s.shares ||
        memcmp(back.backup_id, s.backup_id, sizeof s.backup_id) != 0 ||
        strcmp(back.fingerprint, s.fingerprint) != 0 || back.share_len != s.share_len ||
        memcmp(back.share, s.share, s.share_len) != 0 || back.pub_der_len != s.pub_der_len ||
        memcmp(back.pub_der, s.pub_der, s.pub_der_len) != 0) {
        abort();
    }
    fk_keyshare_wipe(&s);
    fk_keyshare_wipe(&back);
    return 0;
}
