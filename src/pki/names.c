/* Names of certificate kinds and revocation reasons, and the rule for a certificate's name:
 * the vocabulary of fleetkey/pki.h. The lowest layer of src/pki/: it calls nothing else here,
 * so the index (index.c) can use it without reaching back into the CA. */
#include "pki_internal.h"

#include <string.h>

static const char *const kind_names[] = {"device", "server", "mobile", "operator"};

const char *fk_pki_kind_name(enum fk_pki_kind kind) {
    if ((unsigned)kind < sizeof kind_names / sizeof kind_names[0]) {
        return kind_names[kind];
    }
    return "?";
}

enum fk_err fk_pki_kind_parse(const char *s, enum fk_pki_kind *out) {
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
        if (s != NULL && strcmp(s, kind_names[i]) == 0) {
            *out = (enum fk_pki_kind)i;
            return FK_OK;
        }
    }
    return FK_E_ARG;
}

int fk_pki_name_valid(const char *s) {
    if (s == NULL || s[0] == '\0' || s[0] == '.' || s[0] == '-') {
        return 0;
    }
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || n >= FK_PKI_NAME_MAX) {
            return 0;
        }
    }
    return 1;
}

struct reason_name {
    enum fk_pki_reason r;
    const char *name;
};
static const struct reason_name reasons[] = {
    {FK_PKI_REASON_UNSPECIFIED, "unspecified"},
    {FK_PKI_REASON_KEY_COMPROMISE, "keyCompromise"},
    {FK_PKI_REASON_CA_COMPROMISE, "cACompromise"},
    {FK_PKI_REASON_AFFILIATION_CHANGED, "affiliationChanged"},
    {FK_PKI_REASON_SUPERSEDED, "superseded"},
    {FK_PKI_REASON_CESSATION_OF_OPERATION, "cessationOfOperation"},
    {FK_PKI_REASON_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn"},
};

enum fk_err fk_pki_reason_parse(const char *s, enum fk_pki_reason *out) {
    for (size_t i = 0; s != NULL && i < sizeof reasons / sizeof reasons[0]; i++) {
        if (strcmp(s, reasons[i].name) == 0) {
            *out = reasons[i].r;
            return FK_OK;
        }
    }
    return FK_E_ARG;
}

const char *fk_pki_reason_name(enum fk_pki_reason r) {
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        if (reasons[i].r == r) {
            return reasons[i].name;
        }
    }
    return "?";
}
