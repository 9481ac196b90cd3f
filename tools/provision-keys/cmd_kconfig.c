/* provision-keys kconfig | env: a device's mTLS credentials as the five
 * CONFIG_MINITRAIN_* sdkconfig entries or MINITRAIN_* shell exports (the seed's development
 * path). The device id comes from the manifest (--keys device_001.json, field "device_id")
 * or --device; certificate and key come from the CA directory (DIR/devices/ID.crt.pem and
 * .key.pem, written by 'ca issue --device ID'). The output contains a private key, so it
 * goes to --output FILE (0600) or, only when asked with --stdout, to standard output. */
#include "cli.h"
#include "fleetkey/pki.h"

#include <cjson/cJSON.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_MAX (1024u * 1024)

static void help(const char *cmd, FILE *f) {
    fprintf(f,
            "usage: provision-keys %s (--keys MANIFEST.json | --device ID) --dir CA_DIR\n"
            "                      [--wss-uri wss://HOST[:PORT]/PATH] [--expected-host HOST]\n"
            "                      (--output FILE | --stdout)\n"
            "\n"
            "Prints the device's mTLS settings %s: WSS_URI, EXPECTED_HOST,\n"
            "CA_CERT_PEM (issuing + root), CLIENT_CERT_PEM and CLIENT_KEY_PEM, taking the\n"
            "device id from the manifest's \"device_id\" and the certificate and key from\n"
            "CA_DIR/devices/ID.crt.pem and ID.key.pem ('provision-keys ca issue --device ID').\n"
            "\n"
            "The output CONTAINS THE DEVICE'S PRIVATE KEY. It is written to --output FILE\n"
            "(mode 0600), or to standard output only when --stdout is given explicitly.\n",
            cmd,
            strcmp(cmd, "kconfig") == 0
                ? "as an sdkconfig fragment (CONFIG_MINITRAIN_X=\"...\",\nKconfig string escaping)"
                : "as shell exports (export MINITRAIN_X='...')");
}

/* The device id from a manifest (seed format: "device_id" at the top level). */
static enum fk_err manifest_device_id(const char *path, char *out, size_t out_size,
                                      struct fk_diag *diag) {
    uint8_t *buf = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    /* The manifest holds psk_hex: read it as a secret and wipe it afterwards. */
    enum fk_err rc = fk_file_read(path, MANIFEST_MAX, &buf, &len, diag);
    if (rc != FK_OK) {
        return rc;
    }
    root = cJSON_ParseWithLength((const char *)buf, len);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "device_id"));
    if (root == NULL) {
        rc = fk_diag_at(diag, FK_E_PARSE, path, 0, "not valid JSON");
    } else if (id == NULL || !fk_pki_name_valid(id) || strlen(id) >= out_size) {
        rc = fk_diag_at(diag, FK_E_PARSE, path, 0, "no valid \"device_id\" string");
    } else {
        snprintf(out, out_size, "%s", id);
    }
    if (root != NULL) {
        /* cJSON copied psk_hex too; wipe every string value before freeing the tree. */
        cJSON *it;
        cJSON_ArrayForEach(it, root) {
            if (cJSON_IsString(it) && it->valuestring != NULL) {
                fk_wipe(it->valuestring, strlen(it->valuestring));
            }
        }
        cJSON_Delete(root);
    }
    fk_free_secret(buf, len);
    return rc;
}

static int run(const char *cmd, enum fk_pki_devcfg_form form, int argc, char **argv) {
    static const struct option opts[] = {
        {"keys", required_argument, NULL, 'k'},  {"device", required_argument, NULL, 'D'},
        {"dir", required_argument, NULL, 'd'},   {"wss-uri", required_argument, NULL, 'u'},
        {"expected-host", required_argument, NULL, 'e'},
        {"output", required_argument, NULL, 'o'}, {"stdout", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char *keys = NULL;
    const char *device = NULL;
    const char *dir = NULL;
    const char *uri = NULL;
    const char *host = NULL;
    const char *outp = NULL;
    int to_stdout = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            keys = optarg;
            break;
        case 'D':
            device = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'u':
            uri = optarg;
            break;
        case 'e':
            host = optarg;
            break;
        case 'o':
            outp = optarg;
            break;
        case 's':
            to_stdout = 1;
            break;
        case 'h':
            help(cmd, stdout);
            return FK_EXIT_OK;
        case ':':
            return fk_cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            return fk_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return fk_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    }
    if (dir == NULL || (keys == NULL) == (device == NULL)) {
        return fk_cli_usage_error(cmd, "--dir and one of --keys/--device are required");
    }
    if ((outp == NULL) == (to_stdout == 0)) {
        return fk_cli_usage_error(cmd, "the output contains a private key: give either "
                                       "--output FILE (written 0600) or --stdout");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    char id[FK_PKI_NAME_MAX + 1] = "";
    struct fk_pki_ca *ca = NULL;
    char *text = NULL;
    size_t len = 0;
    enum fk_err rc = FK_OK;
    if (keys != NULL) {
        rc = manifest_device_id(keys, id, sizeof id, &diag);
    } else {
        snprintf(id, sizeof id, "%s", device);
    }
    if (rc == FK_OK) {
        rc = fk_pki_ca_open(dir, &ca, &diag);
    }
    if (rc == FK_OK) {
        rc = fk_pki_devcfg_render(ca, id, uri, host, form, &text, &len, &diag);
    }
    if (rc == FK_OK && outp != NULL) {
        rc = fk_file_write_atomic(outp, text, len, 0600, 0, &diag);
    } else if (rc == FK_OK) {
        if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
            rc = fk_diag_set(&diag, FK_E_IO, "cannot write to standard output");
        }
    }
    fk_free_secret(text, len);
    fk_pki_ca_free(ca);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    if (outp != NULL) {
        fprintf(stderr, "%s: credentials of %s written to %s (0600)\n", cmd, id, outp);
    }
    return FK_EXIT_OK;
}

int fk_cmd_kconfig(int argc, char **argv) {
    return run("kconfig", FK_PKI_DEVCFG_SDKCONFIG, argc, argv);
}

int fk_cmd_env(int argc, char **argv) {
    return run("env", FK_PKI_DEVCFG_ENV, argc, argv);
}
