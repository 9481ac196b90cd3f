/* The helpers every provision-keys subcommand shares (cli.h): error printing and the option
 * rules common to several commands. Kept apart from main.c so the subcommands depend on these
 * and main.c on the subcommands, never both ways. */
#include "cli.h"

#include "fleetkey/pki.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fk_cli_fail(const struct fk_diag *diag, enum fk_err rc) {
    char line[1024];
    if (diag != NULL && diag->msg[0] != '\0') {
        fk_diag_format(diag, line, sizeof line);
    } else {
        snprintf(line, sizeof line, "%s", fk_strerror(rc));
    }
    fprintf(stderr, "provision-keys: %s\n", line);
    return FK_EXIT_FAIL;
}

int fk_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "provision-keys %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'provision-keys %s --help'.\n", cmd);
    return FK_EXIT_USAGE;
}

int fk_cli_parse_size(const char *s, unsigned long long *out) {
    unsigned long long v = 0;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (*s == '\0') {
        return -1;
    }
    for (; *s != '\0'; s++) {
        int d;
        if (*s >= '0' && *s <= '9') {
            d = *s - '0';
        } else if (base == 16 && *s >= 'a' && *s <= 'f') {
            d = *s - 'a' + 10;
        } else if (base == 16 && *s >= 'A' && *s <= 'F') {
            d = *s - 'A' + 10;
        } else {
            return -1;
        }
        if (v > (~0ULL - (unsigned)d) / (unsigned)base) {
            return -1;
        }
        v = v * (unsigned)base + (unsigned)d;
    }
    *out = v;
    return 0;
}

int fk_cli_parse_nvs_size(const char *cmd, const char *arg, unsigned long long *out) {
    unsigned long long v = 0;
    if (fk_cli_parse_size(arg, &v) != 0 || v % 4096 != 0 || v < 0x3000 || v > 0x100000) {
        return fk_cli_usage_error(cmd,
                                  "--nvs-size: a multiple of 4096 from 0x3000 to 0x100000, "
                                  "not '%s'",
                                  arg);
    }
    *out = v;
    return 0;
}

int fk_cli_parse_cert_days(const char *cmd, const char *arg, unsigned long long *out) {
    unsigned long long v = 0;
    if (fk_cli_parse_size(arg, &v) != 0 || v < 1 || v > FK_PKI_MAX_DAYS) {
        return fk_cli_usage_error(cmd, "--cert-days: 1 to %d, not '%s'", FK_PKI_MAX_DAYS, arg);
    }
    *out = v;
    return 0;
}

int fk_cli_stderr_is_tty(void) {
    return isatty(STDERR_FILENO);
}
