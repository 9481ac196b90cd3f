/* Helpers shared by the inventory's backends (inventory_internal.h). Kept out of inventory.c,
 * which dispatches to the backends: the backends depend on these, inventory.c on them. */
#include "inventory_internal.h"

#include <stdio.h>

void fk_inv_copy(char *out, size_t size, const char *v) {
    snprintf(out, size, "%s", v != NULL ? v : "");
}

enum fk_err fk_inv_check_version(struct fk_inventory *inv, int version, int newest,
                                 struct fk_diag *diag) {
    if (version > newest) {
        return fk_diag_at(diag, FK_E_UNSUPPORTED, inv->where, 0,
                          "inventory schema version %d is newer than this program (%d)", version,
                          newest);
    }
    return FK_OK;
}
