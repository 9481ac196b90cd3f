/* Fuzz target: the request-head parser of `fleetctl dashboard` (tools/fleetctl/dash_req.c),
 * which reads whatever a local browser (or any local process) sends. Invariants checked (abort
 * on violation): never a read past size (the driver's buffer is exactly size bytes); an
 * accepted head has a NUL-terminated method, target and host, head_len within size, a target
 * without spaces or control characters; the decision is one of the documented answers, and a
 * forwarded target starts with /dashboard or /api/ and holds no dot segment. Corpus:
 * tests/fuzz/corpus/dash_req/. */
#include "dash_req.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fleetctl_dash_req r;
    if (fleetctl_dash_parse((const char *)data, size, &r) != FLEETCTL_DASH_OK) {
        return 0;
    }
    if (memchr(r.method, '\0', sizeof r.method) == NULL ||
        memchr(r.target, '\0', sizeof r.target) == NULL ||
        memchr(r.host, '\0', sizeof r.host) == NULL || r.head_len == 0 || r.head_len > size) {
        abort();
    }
    for (const char *t = r.target; *t != '\0'; t++) {
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f) {
            abort();
        }
    }
    int d = fleetctl_dash_decide(&r, "127.0.0.1:8080", "localhost:8080");
    if (d != 0 && d != 302 && d != 400 && d != 403 && d != 404 && d != 405) {
        abort();
    }
    if (d == 0 &&
        ((strncmp(r.target, "/dashboard", 10) != 0 && strncmp(r.target, "/api/", 5) != 0) ||
         strstr(r.target, "/.") != NULL || strcmp(r.method, "GET") != 0)) {
        abort();
    }
    return 0;
}
