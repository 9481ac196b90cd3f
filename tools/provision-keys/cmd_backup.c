/* provision-keys backup | restore: k-of-n Shamir backups of a signing key (seed 004: "Store
 * OTA private keys in at least 2 secure locations"; fleetkey/keybackup.h, docs/key-backup.md).
 * Parses arguments, calls the keys library, prints fingerprints and file names (never key
 * material) and maps the result to an exit code: 0 done, 1 failed, 2 bad command line. */
#include "cli.h"
#include "fleetkey/keybackup.h"
#include "fleetkey/shamir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A PEM private key is a few KiB; anything far larger is not one. */
#define KEY_FILE_MAX (64u * 1024u)

static const char backup_help[] =
    "usage: provision-keys backup --key KEY.pem --shares N --threshold K --out DIR\n"
    "\n"
    "Splits a signing private key (unencrypted PEM: PKCS#8, SEC1 or PKCS#1; RSA, EC, Ed25519)\n"
    "into N share files DIR/key-share-I-of-N.txt (mode 0600), any K of which rebuild it\n"
    "(Shamir secret sharing over GF(256)); fewer than K reveal nothing about it. Each share\n"
    "records the key's public key and fingerprint and a checksum. Keep the shares in N\n"
    "different places (seed: at least 2 secure locations). 2 <= K <= N <= 255.\n";

static const char restore_help[] =
    "usage: provision-keys restore --out KEY.pem SHARE [SHARE...]\n"
    "\n"
    "Rebuilds a key from at least K share files of one backup, proves it (its public key is\n"
    "the one recorded in the shares and a test signature verifies with it) and only then\n"
    "writes it to KEY.pem (PKCS#8 PEM, mode 0600; an existing file is never replaced).\n"
    "Refused: fewer than K shares, shares of different backups or keys, a share given twice,\n"
    "a damaged share (named).\n";

static int want_value(const char *cmd, int argc, char **argv, int i) {
    if (i + 1 >= argc) {
        return fk_cli_usage_error(cmd, "%s needs a value", argv[i]);
    }
    return 0;
}

static int parse_count(const char *cmd, const char *opt, const char *v, unsigned *out) {
    unsigned long x = 0;
    if (fk_parse_ulong(v, FK_SHAMIR_MAX_SHARES, &x) != FK_OK || x < 2) {
        return fk_cli_usage_error(cmd, "%s: expected a number from 2 to %u, not '%s'", opt,
                                  FK_SHAMIR_MAX_SHARES, v);
    }
    *out = (unsigned)x;
    return 0;
}

int fk_cmd_backup(int argc, char **argv) {
    const char *key = NULL, *dir = NULL;
    unsigned n = 0, k = 0;
    int ret = 0;
    for (int i = 1; i < argc && ret == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(backup_help, stdout);
            return FK_EXIT_OK;
        } else if (strcmp(a, "--key") == 0 || strcmp(a, "--out") == 0) {
            if ((ret = want_value("backup", argc, argv, i)) == 0) {
                *(strcmp(a, "--key") == 0 ? &key : &dir) = argv[++i];
            }
        } else if (strcmp(a, "--shares") == 0 || strcmp(a, "--threshold") == 0) {
            if ((ret = want_value("backup", argc, argv, i)) == 0) {
                ret = parse_count("backup", a, argv[i + 1], a[2] == 's' ? &n : &k);
                i++;
            }
        } else {
            ret = fk_cli_usage_error("backup", "unexpected argument '%s'", a);
        }
    }
    if (ret != 0) {
        return ret;
    }
    if (key == NULL || dir == NULL || n == 0 || k == 0) {
        return fk_cli_usage_error("backup", "--key, --shares, --threshold and --out are required");
    }
    if (k > n) {
        return fk_cli_usage_error("backup", "--threshold %u is above --shares %u", k, n);
    }
    struct fk_diag d;
    struct fk_keybackup_info info;
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    fk_diag_init(&d);
    enum fk_err rc = fk_file_read(key, KEY_FILE_MAX, &pem, &pem_len, &d);
    if (rc == FK_OK) {
        rc = fk_keybackup_split(pem, pem_len, key, n, k, dir, &info, &d);
    }
    fk_free_secret(pem, pem_len);
    if (rc != FK_OK) {
        return fk_cli_fail(&d, rc);
    }
    printf("key %s (%s) split into %u shares, any %u rebuild it (backup %s):\n", info.fingerprint,
           info.key_type, n, k, info.backup_id);
    for (unsigned i = 1; i <= n; i++) {
        printf("  %s/key-share-%u-of-%u.txt\n", dir, i, n);
    }
    printf("store each share in a different secure place; fewer than %u reveal nothing\n", k);
    return FK_EXIT_OK;
}

int fk_cmd_restore(int argc, char **argv) {
    const char *out = NULL;
    const char **shares = calloc((size_t)argc, sizeof *shares);
    size_t nshares = 0;
    int ret = 0;
    if (shares == NULL) {
        return fk_cli_fail(NULL, FK_E_NOMEM);
    }
    for (int i = 1; i < argc && ret == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(restore_help, stdout);
            free(shares);
            return FK_EXIT_OK;
        } else if (strcmp(a, "--out") == 0) {
            if ((ret = want_value("restore", argc, argv, i)) == 0) {
                out = argv[++i];
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            ret = fk_cli_usage_error("restore", "unknown option '%s'", a);
        } else {
            shares[nshares++] = a;
        }
    }
    if (ret == 0 && (out == NULL || nshares == 0)) {
        ret = fk_cli_usage_error("restore", "--out and at least one SHARE file are required");
    }
    if (ret != 0) {
        free(shares);
        return ret;
    }
    struct fk_diag d;
    struct fk_keybackup_info info;
    fk_diag_init(&d);
    enum fk_err rc = fk_keybackup_restore(shares, nshares, out, &info, &d);
    free(shares);
    if (rc != FK_OK) {
        return fk_cli_fail(&d, rc);
    }
    printf("key %s (%s) rebuilt from %u of %u shares (backup %s)\n", info.fingerprint,
           info.key_type, info.used, info.shares, info.backup_id);
    printf("proof: its public key is the recorded one and a test signature verifies with it\n");
    printf("%s written (0600)\n", out);
    return FK_EXIT_OK;
}
