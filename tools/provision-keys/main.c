/* provision-keys: the factory and release engineer's tool. main() only dispatches to the
 * subcommand; each cmd_<name>.c is built in when it exists (CMake defines FK_HAVE_CMD_<name>). */
#include "cli.h"


#include <stdio.h>
#include <string.h>

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
