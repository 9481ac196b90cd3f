/* provision-keys export-p12: a mobile (or operator) identity as a password-protected
 * PKCS#12 for a phone's MDM / KeyChain (docs/pki.md). The password comes from a file and is
 * never printed; the bundle is written 0600. */
#include "cli.h"
#include "fleetkey/pki.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char p12_help[] =
    "usage: provision-keys export-p12 --dir DIR (--mobile NAME | --operator NAME)\n"
    "                                 --password-file F --out NAME.p12 [--legacy]\n"
    "\n"
    "Bundles DIR/mobiles/NAME.key.pem, its certificate and the CA chain (issuing + root)\n"
    "into a PKCS#12 protected by the first line of F, written 0600.\n"
    "  default   PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC, HMAC-SHA256 MAC\n"
    "  --legacy  pbeWithSHA1And3-KeyTripleDES-CBC, HMAC-SHA1 MAC, for older Android\n"
    "            versions and MDM systems that reject the modern form\n";

int fk_cmd_export_p12(int argc, char **argv) {
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},     {"mobile", required_argument, NULL, 'm'},
        {"operator", required_argument, NULL, 'o'}, {"password-file", required_argument, NULL, 'p'},
        {"out", required_argument, NULL, 'O'},     {"legacy", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    const char *name = NULL;
    const char *passfile = NULL;
    const char *outp = NULL;
    enum fk_pki_kind kind = FK_PKI_MOBILE;
    int kinds = 0;
    enum fk_pki_p12_form form = FK_PKI_P12_MODERN;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'm':
        case 'o':
            kind = c == 'm' ? FK_PKI_MOBILE : FK_PKI_OPERATOR;
            name = optarg;
            kinds++;
            break;
        case 'p':
            passfile = optarg;
            break;
        case 'O':
            outp = optarg;
            break;
        case 'l':
            form = FK_PKI_P12_LEGACY;
            break;
        case 'h':
            fputs(p12_help, stdout);
            return FK_EXIT_OK;
        case ':':
            return fk_cli_usage_error("export-p12", "option '%s' needs a value",
                                      argv[optind - 1]);
        default:
            return fk_cli_usage_error("export-p12", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return fk_cli_usage_error("export-p12", "unexpected argument '%s'", argv[optind]);
    }
    if (dir == NULL || kinds != 1 || passfile == NULL || outp == NULL) {
        return fk_cli_usage_error("export-p12", "--dir, one of --mobile/--operator, "
                                                "--password-file and --out are required");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_pki_ca *ca = NULL;
    char *pass = NULL;
    size_t pass_len = 0;
    uint8_t *p12 = NULL;
    size_t p12_len = 0;
    enum fk_err rc = fk_pki_read_secret_file(passfile, &pass, &pass_len, &diag);
    if (rc == FK_OK) {
        rc = fk_pki_ca_open(dir, &ca, &diag);
    }
    if (rc == FK_OK) {
        rc = fk_pki_export_p12(ca, kind, name, pass, pass_len, form, &p12, &p12_len, &diag);
    }
    if (rc == FK_OK) {
        rc = fk_file_write_atomic(outp, p12, p12_len, 0600, 0, &diag);
    }
    fk_free_secret(pass, pass_len);
    free(p12);
    fk_pki_ca_free(ca);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    printf("PKCS#12 (%s) for %s written to %s (0600)\n",
           form == FK_PKI_P12_MODERN ? "AES-256-CBC, PBKDF2-SHA256, SHA-256 MAC"
                                     : "legacy 3DES, SHA-1 MAC",
           name, outp);
    return FK_EXIT_OK;
}
