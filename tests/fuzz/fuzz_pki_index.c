/* Fuzz target: the CA index (index.jsonl, src/pki/index.c) as read back by a CA: the log
 * folded record by record (with its serial table), then walked, batch-revoked and signed
 * into a CRL. The input replaces the index of a real CA made once in $FK_TMP. Invariants
 * checked: a batch of serials the index lists succeeds and a retry of it revokes nothing, and
 * the walk then counts exactly the revocations the batch reported.
 * Corpus: tests/fuzz/corpus/pki_index/ (indexes written by `provision-keys ca` and the unit
 * tests, and damaged ones: a serial issued twice, a revoke of an unknown serial, a cut line). */
#include "fleetkey/pki.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SERIALS 64

static char *ca_dir;
static char *index_path;

static void setup(void) {
    const char *base = getenv("FK_TMP");
    char cmd[4200];
    if (base == NULL) {
        base = "fuzz_pki_index.tmp";
    }
    /* mkdir -p: parents the umask's way, as the other tests make tmp/ (a 0700 tmp/ made here
     * first would lock out the PostgreSQL tests' server, which runs as nobody) */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", base, base);
    if (system(cmd) != 0 || fk_path_join(base, "pki", "", &ca_dir) != FK_OK ||
        fk_path_join(ca_dir, "index.jsonl", "", &index_path) != FK_OK) {
        abort();
    }
    struct fk_pki_init_opts o = {"Fuzz Fleet", 0, NULL, 0};
    if (fk_pki_ca_init(ca_dir, &o, NULL) != FK_OK) {
        abort();
    }
}

struct walk {
    size_t total, revoked, n;
    char serial[MAX_SERIALS][FK_PKI_SERIAL_HEX_LEN * 2 + 1];
};

static int walk_cb(void *user, const struct fk_pki_cert_info *info) {
    struct walk *w = user;
    w->total++;
    w->revoked += info->revoked != 0;
    if (w->n < MAX_SERIALS) {
        memcpy(w->serial[w->n++], info->serial, sizeof w->serial[0]);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ca_dir == NULL) {
        setup();
    }
    if (fk_file_write_atomic(index_path, data, size, 0600, 0, NULL) != FK_OK) {
        abort();
    }
    struct fk_pki_ca *ca = NULL;
    if (fk_pki_ca_open(ca_dir, &ca, NULL) != FK_OK) {
        return 0;
    }
    struct walk before;
    memset(&before, 0, sizeof before);
    int listed = fk_pki_list(ca, walk_cb, &before, NULL) == FK_OK;
    if (listed) {
        const char *v[MAX_SERIALS];
        for (size_t i = 0; i < before.n; i++) {
            v[i] = before.serial[i];
        }
        size_t revoked = 0, again = 1;
        enum fk_err rc =
            fk_pki_revoke_serials(ca, v, before.n, FK_PKI_REASON_SUPERSEDED, 0, &revoked, NULL);
        /* listed serials are issued ones: the batch cannot refuse them, only fail on I/O */
        if (rc != FK_OK && rc != FK_E_IO && rc != FK_E_NOMEM) {
            abort();
        }
        if (rc == FK_OK) {
            if (fk_pki_revoke_serials(ca, v, before.n, FK_PKI_REASON_SUPERSEDED, 0, &again, NULL) !=
                    FK_OK ||
                again != 0) {
                abort();
            }
            struct walk after;
            memset(&after, 0, sizeof after);
            if (fk_pki_list(ca, walk_cb, &after, NULL) != FK_OK || after.total != before.total ||
                after.revoked != before.revoked + revoked) {
                abort();
            }
        }
        char *crl = NULL;
        size_t len = 0;
        if (fk_pki_crl(ca, 0, 0, &crl, &len, NULL) == FK_OK && strlen(crl) != len) {
            abort();
        }
        free(crl);
    }
    const char *unknown = "0123456789abcdef0123456789abcdef";
    enum fk_err urc =
        fk_pki_revoke_serials(ca, &unknown, 1, FK_PKI_REASON_UNSPECIFIED, 0, NULL, NULL);
    int in_input = 0;
    for (size_t i = 0; i < before.n; i++) {
        in_input |= strcmp(before.serial[i], unknown) == 0;
    }
    if (urc == FK_OK && listed && before.total <= MAX_SERIALS && !in_input) {
        abort(); /* a serial the index does not list is never revoked */
    }
    fk_pki_ca_free(ca);
    return 0;
}
