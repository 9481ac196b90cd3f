/* Fuzz target: the reader of saved rotation plans (fk_plan_from_json), what fleetkey-server
 * trusts at start. Invariants checked (abort on violation): a refusal leaves *out NULL; an
 * accepted plan has targets sorted by (order, id) with no duplicate, every state and class
 * in range, strings NUL-terminated; it serialises, and what it serialises parses back to the
 * same text; the engine can step it, report to it and judge its interlock without a crash.
 * Corpus: tests/fuzz/corpus/plan/ (plans written by fk_plan_to_json at several stages, and
 * damaged ones). */
#include "fleetkey/plan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int deliver(void *user, const char *device, enum fk_plan_class c, unsigned attempt,
                   char reason[FK_PLAN_REASON_SIZE]) {
    (void)user;
    (void)c;
    (void)attempt;
    (void)reason;
    return (device[0] + (int)attempt) % 3 - 1; /* offline, refused and delivered, spread */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fk_plan *p = (struct fk_plan *)1;
    if (fk_plan_from_json(data, size, &p, NULL) != FK_OK) {
        if (p != NULL) {
            abort();
        }
        return 0;
    }
    for (size_t i = 0; i < p->n; i++) {
        const struct fk_plan_target *t = &p->t[i];
        if (memchr(t->device, '\0', sizeof t->device) == NULL ||
            memchr(t->reason, '\0', sizeof t->reason) == NULL || t->device[0] == '\0') {
            abort();
        }
        for (unsigned c = 0; c < FK_PLAN_CLASSES; c++) {
            if (t->state[c] > FK_PLAN_T_ROLLED_BACK) {
                abort();
            }
        }
        if (i > 0 && (p->t[i - 1].order > t->order ||
                      (p->t[i - 1].order == t->order &&
                       strcmp(p->t[i - 1].device, t->device) >= 0))) {
            abort();
        }
        if (fk_plan_find(p, t->device) != t) {
            abort();
        }
    }
    char *a = NULL;
    char *b = NULL;
    size_t alen = 0;
    size_t blen = 0;
    struct fk_plan *q = NULL;
    if (fk_plan_to_json(p, &a, &alen) != FK_OK ||
        fk_plan_from_json((const uint8_t *)a, alen, &q, NULL) != FK_OK ||
        fk_plan_to_json(q, &b, &blen) != FK_OK || alen != blen || memcmp(a, b, alen) != 0) {
        abort();
    }
    (void)fk_plan_step(p, 1000, deliver, NULL);
    if (p->n > 0) {
        enum fk_err r = fk_plan_report(p, p->t[0].device, FK_PLAN_PSK, FK_PLAN_T_CONFIRMED, NULL);
        if (r != FK_OK && r != FK_E_STATE) {
            abort(); /* the device is in the plan */
        }
    }
    char(*bl)[FK_PLAN_DEV_SIZE] = NULL;
    size_t nb = 0;
    enum fk_err il = fk_plan_interlock(p, &bl, &nb);
    if ((il == FK_OK && p->state == FK_PLAN_DONE && nb != 0 && !p->forced) ||
        (nb > 0 && bl == NULL)) {
        abort(); /* done without force means nobody blocks; blockers are listed */
    }
    free(bl);
    free(a);
    free(b);
    fk_plan_free(q);
    fk_plan_free(p);
    return 0;
}
