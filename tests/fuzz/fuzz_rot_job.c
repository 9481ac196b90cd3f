/* Fuzz target: fleetkey-server's reader of saved credential rotation jobs (fk_rot_job_check),
 * what it trusts in a rot_dir file at start and in a rot_plans row of a shared PostgreSQL
 * inventory at every merge (another instance, or whoever can write the database, wrote it).
 * Invariants checked (abort on violation): a refusal leaves no output; an accepted job has at
 * most FK_PLAN_MAX_DEVICES devices, and what the server would write back is accepted again,
 * with the same devices, and writes back to the same text (a merge that reads its own row
 * changes nothing). Corpus: tests/fuzz/corpus/rot_job/ (jobs written by fleetkey-server in
 * pg_rot and server_rot, and damaged ones). */
#include "fleetkey/plan.h"
#include "fleetkey/server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n = 1, n2 = 0;
    char *c1 = (char *)data, *c2 = NULL;
    if (fk_rot_job_check(data, size, &n, &c1, NULL) != FK_OK) {
        if (n != 0 || c1 != NULL) {
            abort();
        }
        return 0;
    }
    if (c1 == NULL || n > FK_PLAN_MAX_DEVICES ||
        fk_rot_job_check((const uint8_t *)c1, strlen(c1), &n2, &c2, NULL) != FK_OK || n2 != n ||
        c2 == NULL || strcmp(c1, c2) != 0) {
        abort();
    }
    free(c1);
    free(c2);
    return 0;
}
