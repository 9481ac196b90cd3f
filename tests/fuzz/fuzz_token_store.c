/* Fuzz target: what the C client reads that it did not just write itself: a token store file
 * (fk_client_store_open, with a fixed key file secret, and with a passphrase for inputs that
 * are small so scrypt runs only on what reaches it) and a token endpoint answer
 * (fk_client_tokens_from_json). Invariants checked (abort on violation): nothing is accepted
 * unless its GCM tag verifies (the corpus holds files sealed with this harness' key, the
 * reason they can be opened); accepted tokens are NUL-terminated, expires_at >= 0.
 * Corpus: tests/fuzz/corpus/token_store/ (sealed stores, damaged ones, token answers). */
#include "fleetkey/client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fk_client_tokens t;
    struct fk_client_secret key;
    memset(&key, 0, sizeof key);
    key.is_key = 1;
    memset(key.key, 0x5a, sizeof key.key);
    if (fk_client_store_open(data, size, &key, &t, NULL) == FK_OK) {
        if (memchr(t.access_token, '\0', sizeof t.access_token) == NULL ||
            memchr(t.refresh_token, '\0', sizeof t.refresh_token) == NULL || t.expires_at < 0 ||
            size < 56) {
            abort();
        }
    }
    if (fk_client_tokens_from_json(data, size, 1800000000LL, &t, NULL) == FK_OK) {
        if (memchr(t.access_token, '\0', sizeof t.access_token) == NULL ||
            t.expires_at <= 1800000000LL) {
            abort();
        }
    }
    return 0;
}
