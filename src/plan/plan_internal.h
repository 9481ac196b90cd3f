/* Shared by the files of src/plan only: the order every plan keeps its targets in. */
#ifndef FK_PLAN_INTERNAL_H
#define FK_PLAN_INTERNAL_H

#include "fleetkey/plan.h"

#include <stdint.h>

/* The spread key of a device id (FNV-1a): a stable order, not a secret; the same id always
 * lands in the same wave. */
uint32_t fk_plan_order_key(const char *id);
/* qsort/bsearch order of struct fk_plan_target: by key, then by id. */
int fk_plan_cmp_target(const void *a, const void *b);

#endif
