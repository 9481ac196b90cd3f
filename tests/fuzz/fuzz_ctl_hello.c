/* Fuzz target: the control listener's pre-session gate parser (fkd_ctl_hello_cookie), the one
 * piece of DTLS parsing the listener does itself, on bytes from any source address before any
 * authentication. The cookie it returns must lie inside the datagram. */
#include <stdint.h>
#include <stdlib.h>

#include "fkd/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *cookie = NULL;
    size_t len = 0;
    if (fkd_ctl_hello_cookie(data, size, &cookie, &len) == 0) {
        if (cookie < data || len > size || (size_t)(cookie - data) > size - len) {
            abort();
        }
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < len; i++) {
            sink ^= cookie[i]; /* touch every byte: ASan checks the bounds */
        }
        (void)sink;
    }
    return 0;
}
