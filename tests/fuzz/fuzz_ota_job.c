/* Fuzz target: fleetkey-server's reader of saved update jobs (fk_ota_job_parse), what it trusts
 * in ota_dir/j-NNNNNN.json at start. Invariants checked (abort on violation): an accepted job
 * has at least one device, each with a valid id, a known state that is never "sending" (a cut
 * transfer comes back queued, sent 0), at most 1000 attempts, NUL-terminated strings; sha256 is
 * 64 lowercase hex digits; a refusal leaves the record empty. Corpus:
 * tests/fuzz/corpus/ota_job/ (jobs written by fleetkey-server in the end-to-end test, and
 * damaged ones). */
#include "fleetkey/server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void terminated(const char *s, size_t size) {
    if (memchr(s, '\0', size) == NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fk_ota_job_record r;
    if (fk_ota_job_parse(data, size, &r, NULL) != FK_OK) {
        if (r.n != 0 || r.t != NULL || r.updated != NULL) {
            abort();
        }
        return 0;
    }
    terminated(r.sha256, sizeof r.sha256);
    if (r.n == 0 || strlen(r.sha256) != 64 || strspn(r.sha256, "0123456789abcdef") != 64) {
        abort();
    }
    terminated(r.created_at, sizeof r.created_at);
    terminated(r.operator_name, sizeof r.operator_name);
    for (size_t i = 0; i < r.n; i++) {
        const struct fk_ota_target *t = &r.t[i];
        terminated(t->device, sizeof t->device);
        terminated(t->error, sizeof t->error);
        terminated(r.updated[i], sizeof r.updated[i]);
        if (!fk_wss_id_valid(t->device, strlen(t->device)) || t->state > FK_OTA_FAILED ||
            t->state == FK_OTA_SENDING || t->attempts > 1000) {
            abort();
        }
    }
    fk_ota_job_record_free(&r);
    if (r.t != NULL || r.n != 0) {
        abort();
    }
    return 0;
}
