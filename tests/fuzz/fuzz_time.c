/* Fuzz target: fk_time_parse_rfc3339, the reader of the inventory's timestamps (credential
 * expiries in /metrics and the dashboard). Invariants checked (abort on violation): an
 * accepted text is one fk_time_rfc3339 writes back byte for byte from the parsed value, and
 * the parser never reads past len (the driver's buffer is exactly size bytes).
 * Corpus: tests/fuzz/corpus/time/. */
#include "fleetkey/common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long long t = -1;
    if (fk_time_parse_rfc3339((const char *)data, size, &t) != FK_OK) {
        return 0;
    }
    char back[21];
    fk_time_rfc3339(t, back);
    if (t < 0 || memcmp(back, data, 20) != 0) {
        abort();
    }
    return 0;
}
