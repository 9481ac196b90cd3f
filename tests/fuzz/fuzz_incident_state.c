/* Fuzz target: the incident state file parser (fk_incident_state_parse). Every input must be
 * handled without a crash or sanitizer report; an accepted state must render and parse back
 * to the same state, and render again to the same text. */
#include "fleetkey/incident.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fk_incident_state s, back;
    char *txt = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    if (fk_incident_state_parse((const char *)data, size, &s, NULL) != FK_OK) {
        return 0;
    }
    if (fk_incident_state_render(&s, &txt, &len) != FK_OK ||
        fk_incident_state_parse(txt, len, &back, NULL) != FK_OK ||
        fk_incident_state_render(&back, &again, &len2) != FK_OK || len != len2 ||
        memcmp(txt, again, len) != 0 || back.done != s.done ||
        strcmp(back.new_fpr, s.new_fpr) != 0 || back.nforced != s.nforced) {
        abort();
    }
    free(txt);
    free(again);
    return 0;
}
