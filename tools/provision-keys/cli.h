/* Shared pieces of the provision-keys subcommands: the command table entry, exit codes and
 * error printing. Each subcommand lives in cmd_<name>.c and only parses arguments, calls the
 * library and maps the result to an exit code. */
#ifndef PROVISION_KEYS_CLI_H
#define PROVISION_KEYS_CLI_H

#include "fleetkey/common.h"

/* Exit codes (documented in docs/provision-keys.md). */
enum {
    FK_EXIT_OK = 0,
    FK_EXIT_FAIL = 1,  /* the operation failed: bad input, verification failure, I/O */
    FK_EXIT_USAGE = 2, /* the command line itself is wrong */
};

/* Prints "provision-keys: <diag or strerror>" to stderr and returns FK_EXIT_FAIL. */
int fk_cli_fail(const struct fk_diag *diag, enum fk_err rc);
/* Prints "provision-keys <cmd>: <msg>" and the hint to run --help; returns FK_EXIT_USAGE. */
int fk_cli_usage_error(const char *cmd, const char *fmt, ...) FK_PRINTF(2, 3);
/* Parses a size such as 0x6000 or 24576 into *out. 0 on success, -1 when not a number. */
int fk_cli_parse_size(const char *s, unsigned long long *out);
/* Parses the --nvs-size option of generate and batch: a multiple of 4096 from 0x3000 (one
 * spare page, as the device runtime needs) to 0x100000. Returns 0 and sets *out, or prints
 * the usage error for cmd and returns FK_EXIT_USAGE. */
int fk_cli_parse_nvs_size(const char *cmd, const char *arg, unsigned long long *out);
/* Parses the --cert-days option of generate and batch: 1 to FK_PKI_MAX_DAYS. Returns 0 and
 * sets *out, or prints the usage error for cmd and returns FK_EXIT_USAGE. */
int fk_cli_parse_cert_days(const char *cmd, const char *arg, unsigned long long *out);
/* 1 when stderr is a terminal (progress output goes there only then). */
int fk_cli_stderr_is_tty(void);

#define FK_CLI_COMMANDS(X)                                                                     \
    X(nvs, "NVS partition images: generate, encrypt, decrypt, generate-key, dump")             \
    X(generate, "mint one device's keys, manifest and NVS image")                              \
    X(batch, "mint keys for every device in a CSV, crash-safe and idempotent")                 \
    X(inventory, "query the fleet inventory and verify its audit log")                         \
    X(flash, "write a device's NVS over the ESP32 ROM serial protocol")                        \
    X(ca, "control-plane CA: init, issue, revoke, crl")                                        \
    X(export_p12, "export a mobile identity as a password-protected PKCS#12")                  \
    X(kconfig, "print the CONFIG_MINITRAIN_* sdkconfig fragment for a device")                 \
    X(env, "print the MINITRAIN_* environment exports for a device")                           \
    X(sign, "sign a firmware image (Secure Boot V2 signature sector)")                         \
    X(verify, "verify a signed firmware image against trusted public keys")                    \
    X(signature_info, "show the signature blocks of a signed image")                           \
    X(key_digest, "SHA-256 digest of a signing public key (the eFuse value)")                  \
    X(efuse, "virtual eFuse of a robot-sim image: burn-key-digest, summary")                   \
    X(rotate, "plan and drive credential rotations")                                          \
    X(backup, "split a signing key into k-of-n share files (Shamir)")                          \
    X(restore, "rebuild a signing key from k share files and prove it")

#define FK_CLI_DECLARE(name, summary) int fk_cmd_##name(int argc, char **argv);
FK_CLI_COMMANDS(FK_CLI_DECLARE)
#undef FK_CLI_DECLARE

#endif
