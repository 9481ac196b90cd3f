/* Fuzz target: fk_oauth_state_parse, the token state fleetkey-server reads at start
 * (oauth-state.json). Invariants checked (abort on violation): a refusal leaves *out NULL; an
 * accepted state serialises, and its serialisation parses back to the same text; look-ups,
 * rotation, revocation and pruning on it do not crash.
 * Corpus: tests/fuzz/corpus/oauth_state/ (saved states and damaged ones). */
#include "fleetkey/oauth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fk_oauth_state *st = (struct fk_oauth_state *)1;
    if (fk_oauth_state_parse(data, size, &st, NULL) != FK_OK) {
        if (st != NULL) {
            abort();
        }
        return 0;
    }
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    struct fk_oauth_state *st2 = NULL;
    if (fk_oauth_state_serialize(st, &a, &al) != FK_OK ||
        fk_oauth_state_parse((const uint8_t *)a, al, &st2, NULL) != FK_OK ||
        fk_oauth_state_serialize(st2, &b, &bl) != FK_OK || al != bl || memcmp(a, b, al) != 0) {
        abort();
    }
    const char h[FK_OAUTH_B64_32] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFE";
    struct fk_oauth_family f;
    if (fk_oauth_state_rt_find(st, h, 1000, &f) != FK_OAUTH_RT_UNKNOWN) {
        if (fk_oauth_state_rt_rotate(st, f.id, h, 2000, "JJJJJJJJJJJJJJJJJJJJJA", 2000) ==
                FK_E_NOTFOUND ||
            fk_oauth_state_family_revoke(st, f.id) != FK_OK) {
            abort(); /* the family was just found */
        }
    }
    fk_oauth_state_prune(st, 1000);
    free(a);
    free(b);
    fk_oauth_state_free(st);
    fk_oauth_state_free(st2);
    return 0;
}
