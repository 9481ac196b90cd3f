/* provision-keys: the factory and release engineer's tool. main() only dispatches to the
 * subcommand; each cmd_<name>.c is built in when it exists (CMake defines FK_HAVE_CMD_<name>). */
#include "cli.h"

#include "fleetkey/pki.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct command {
    const char *name; /* as typed: underscores become dashes */
    const char *summary;
    int (*run)(int argc, char **argv);
};

/* Commands whose source file is not in this build have a NULL run and are not listed. */
#define FK_CLI_ENTRY(n, s) {#n, s, FK_CMD_PTR_##n},
#include "commands.h" /* generated: FK_CMD_PTR_<n> is fk_cmd_<n> or NULL */

static const struct command commands[] = {FK_CLI_COMMANDS(FK_CLI_ENTRY)};

static int name_matches(const char *table_name, const char *typed) {
    for (; *table_name != '\0' && *typed != '\0'; table_name++, typed++) {
        char t = *table_name == '_' ? '-' : *table_name;
        if (t != *typed) {
            return 0;
        }
    }
    return *table_name == '\0' && *typed == '\0';
}

static void usage(FILE *f) {
    fprintf(f, "usage: provision-keys COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (commands[i].run == NULL) {
            continue;
        }
        char shown[32];
        snprintf(shown, sizeof shown, "%s", commands[i].name);
        for (char *p = shown; *p != '\0'; p++) {
            *p = *p == '_' ? '-' : *p;
        }
        fprintf(f, "  %-16s %s\n", shown, commands[i].summary);
    }
    fprintf(f, "\nRun 'provision-keys COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? FK_EXIT_USAGE : FK_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("provision-keys (fleetkey) %s\n", FK_VERSION);
        return FK_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (commands[i].run != NULL && name_matches(commands[i].name, argv[1])) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "provision-keys: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return FK_EXIT_USAGE;
}

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
        return fk_cli_usage_error(cmd, "--nvs-size: a multiple of 4096 from 0x3000 to 0x100000, "
                                       "not '%s'", arg);
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
