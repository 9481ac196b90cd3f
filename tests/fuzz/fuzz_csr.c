/* Fuzz target: the CSR parsing path of the pki module (PEM or DER detection, PKCS#10
 * decoding, signature verification, key and subject policy), for each certificate kind, and
 * the Kconfig/shell escapers, whose output must undo to the input exactly.
 * Corpus: tests/fuzz/corpus/csr/ (CSRs made by `openssl req`, truncated and armoured junk). */
#include "fleetkey/pki.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Undoes fk_pki_kconfig_escape; aborts on anything the escaper must not produce. */
static void check_kconfig_round_trip(const char *in) {
    size_t need = fk_pki_kconfig_escaped_len(in);
    char *esc = malloc(need);
    if (esc == NULL) {
        return;
    }
    if (fk_pki_kconfig_escape(in, esc, need) == FK_OK) {
        char *back = malloc(strlen(esc) + 1);
        size_t o = 0;
        for (const char *p = esc; *p != '\0'; p++) {
            if (*p == '"' || *p == '\n') {
                abort(); /* a raw quote or newline would end the sdkconfig value */
            }
            if (*p == '\\') {
                p++;
                back[o++] = *p == 'n' ? '\n' : *p;
                if (*p != 'n' && *p != '"' && *p != '\\') {
                    abort();
                }
            } else {
                back[o++] = *p;
            }
        }
        back[o] = '\0';
        if (strcmp(back, in) != 0) {
            abort();
        }
        free(back);
    }
    free(esc);
    size_t qn = fk_pki_shell_quoted_len(in);
    char *q = malloc(qn);
    if (q != NULL && (fk_pki_shell_quote(in, q, qn) != FK_OK || q[0] != '\'' ||
                      strlen(q) + 1 != qn)) {
        abort();
    }
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const enum fk_pki_kind kinds[] = {FK_PKI_DEVICE, FK_PKI_SERVER, FK_PKI_MOBILE};
    static const char *const names[] = {"robot-1", "ROBOT-1", "fleet.example"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        struct fk_diag d;
        fk_diag_init(&d);
        enum fk_err rc = fk_pki_csr_check(data, size, kinds[i], names[i], &d);
        if (rc != FK_OK && rc != FK_E_PARSE && rc != FK_E_VERIFY && rc != FK_E_POLICY &&
            rc != FK_E_TOOBIG && rc != FK_E_NOMEM) {
            abort(); /* an undocumented result */
        }
    }
    char *s = malloc(size + 1);
    if (s != NULL) {
        memcpy(s, data, size);
        s[size] = '\0';
        check_kconfig_round_trip(s);
        free(s);
    }
    return 0;
}
