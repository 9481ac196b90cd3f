/* Fuzz target: fk_inventory_location_display, which masks the password of a PostgreSQL URI
 * (from a config file or a command line) before it is printed or logged. The first byte picks
 * the output size. Checked: the output is NUL-terminated inside its buffer; a location that is
 * no URI comes out as a prefix of itself; a shorter buffer gets a prefix of what a long one
 * gets (the mask is applied before the cut, never after); every "password=" in the output
 * of a URI is followed by "***" (a file path is printed as it is). */
#include "fleetkey/inventory.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) {
        return 0;
    }
    size_t cap = (size_t)data[0] + 1;
    char *in = malloc(size);
    char *small = malloc(cap);
    char *big = malloc(size * 2 + 16);
    if (in == NULL || small == NULL || big == NULL) {
        goto out;
    }
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0'; /* a string: stops at the first NUL of the input */
    memset(small, 0xA5, cap);
    fk_inventory_location_display(in, small, cap);
    fk_inventory_location_display(in, big, size * 2 + 16);
    if (memchr(small, '\0', cap) == NULL || strncmp(big, small, strlen(small)) != 0) {
        abort();
    }
    if (!fk_inventory_is_postgresql(in) && strncmp(in, small, strlen(small)) != 0) {
        abort();
    }
    if (!fk_inventory_is_postgresql(in)) {
        goto out;
    }
    for (const char *p = strstr(big, "password="); p != NULL; p = strstr(p + 1, "password=")) {
        if (strncmp(p + 9, "***", 3) != 0) {
            abort();
        }
    }
out:
    free(in);
    free(small);
    free(big);
    return 0;
}
