/* provision-keys generate: mint one device (the seed's first step) and record it.
 *
 * Files are named after --output: keys/device_001.json -> device_001.json, .key.pem,
 * .nvs.bin, .nvs_keys.bin in keys/. Like batch, the inventory row is written last, after the
 * files are on disk, so an inventory row always points at complete files. An existing
 * manifest is never overwritten without --force: it may belong to a device already flashed.
 * Exit: 0 done, 1 failed, 2 bad command line. Prints fingerprints, never a secret. */
#include "cli.h"
#include "fleetkey/inventory.h"
#include "fleetkey/keys.h"
#include "fleetkey/pki.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: provision-keys generate --output keys/device_001.json [--mac AA:BB:CC:DD:EE:FF]\n"
    "         [--wifi-ssid SSID --wifi-password-file FILE] [--encrypt-nvs] [--ota-key PEM]\n"
    "         [--nvs-size SIZE] [--inventory PATH] [--ca DIR [--cert-days N]] [--force]\n"
    "         [--json]\n"
    "\n"
    "Mints one device: a 32-byte DTLS PSK, its OTA signing key pair (P-256; the private key\n"
    "goes to device_001.key.pem, mode 0600) or, with --ota-key, trust in an existing fleet\n"
    "key, and its NVS partition image (security/dtls_psk, psk_id, ota_pubkey; wifi/ssid,\n"
    "password). Writes next to --output:\n"
    "  device_001.json          manifest (seed fields + fingerprints, file names), 0600\n"
    "  device_001.key.pem       OTA private key (PKCS#8), 0600, unless --ota-key\n"
    "  device_001.nvs.bin       NVS image (default size 0x6000), 0600\n"
    "  device_001.nvs_keys.bin  NVS encryption keys partition, 0600, with --encrypt-nvs\n"
    "  device_001.crt.pem       mTLS device certificate, 0644, with --ca\n"
    "and records the device in the inventory (default: inventory.db next to --output).\n"
    "\n"
    "  --ca DIR                also issue the device's mTLS certificate from the CA in DIR\n"
    "                          (provision-keys ca init); certificate, key and CA chain go\n"
    "                          into the image (namespace mtls, DER), the key nowhere else:\n"
    "                          use --encrypt-nvs in production\n"
    "  --cert-days N           certificate validity (default: the CA's device default)\n"
    "  --mac M                 the device's Wi-Fi MAC (AA:BB:CC:DD:EE:FF or aa-bb-...);\n"
    "                          without it a random locally-administered MAC is used\n"
    "  --wifi-password-file F  first line of F is the password (never on the command line)\n"
    "  --force                 replace an existing manifest / re-mint a device already in\n"
    "                          the inventory (its old credentials are marked retired)\n"
    "  --json                  print the result as JSON\n";

enum {
    OPT_OUTPUT = 256,
    OPT_MAC,
    OPT_SSID,
    OPT_PASSFILE,
    OPT_ENCRYPT,
    OPT_OTA_KEY,
    OPT_NVS_SIZE,
    OPT_INVENTORY,
    OPT_FORCE,
    OPT_JSON,
    OPT_CA,
    OPT_CERT_DAYS,
    OPT_HELP
};

static const struct option opts[] = {
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"mac", required_argument, NULL, OPT_MAC},
    {"wifi-ssid", required_argument, NULL, OPT_SSID},
    {"wifi-password-file", required_argument, NULL, OPT_PASSFILE},
    {"encrypt-nvs", no_argument, NULL, OPT_ENCRYPT},
    {"ota-key", required_argument, NULL, OPT_OTA_KEY},
    {"nvs-size", required_argument, NULL, OPT_NVS_SIZE},
    {"inventory", required_argument, NULL, OPT_INVENTORY},
    {"force", no_argument, NULL, OPT_FORCE},
    {"json", no_argument, NULL, OPT_JSON},
    {"ca", required_argument, NULL, OPT_CA},
    {"cert-days", required_argument, NULL, OPT_CERT_DAYS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* The first line of a password file, without its line end. The buffer is a secret. */
static enum fk_err read_password(const char *path, char **out, size_t *cap, struct fk_diag *diag) {
    uint8_t *buf = NULL;
    size_t len = 0;
    enum fk_err rc = fk_file_read(path, 1024, &buf, &len, diag);
    if (rc != FK_OK) {
        return rc;
    }
    char *s = (char *)buf;
    size_t n = strcspn(s, "\r\n");
    fk_wipe(s + n, len - n);
    *out = s;
    *cap = len + 1;
    return FK_OK;
}

struct max_ver {
    unsigned max;
};

static int note_version(void *user, const struct fk_inv_credential *c) {
    struct max_ver *v = user;
    if (c->version > v->max) {
        v->max = c->version;
    }
    return 0;
}

static int retire_active(struct fk_inventory *inv, const char *id, struct fk_diag *diag);

struct retire_ctx {
    struct fk_inv_credential list[64];
    size_t n;
};

static int collect_active(void *user, const struct fk_inv_credential *c) {
    struct retire_ctx *r = user;
    if (strcmp(c->state, "active") == 0 && r->n < sizeof r->list / sizeof r->list[0]) {
        r->list[r->n++] = *c;
    }
    return 0;
}

static int retire_active(struct fk_inventory *inv, const char *id, struct fk_diag *diag) {
    struct retire_ctx r;
    r.n = 0;
    if (fk_inventory_credential_list(inv, id, collect_active, &r, diag) != FK_OK) {
        return -1;
    }
    for (size_t i = 0; i < r.n; i++) {
        if (fk_inventory_credential_set_state(inv, id, r.list[i].kind, r.list[i].version, "retired",
                                              diag) != FK_OK) {
            return -1;
        }
    }
    return 0;
}

static enum fk_err add_cred_exp(struct fk_inventory *inv, const struct fk_manifest *m,
                                const char *kind, unsigned version, const char *fpr,
                                const char *expires, struct fk_diag *diag) {
    struct fk_inv_credential c;
    memset(&c, 0, sizeof c);
    snprintf(c.device_id, sizeof c.device_id, "%s", m->device_id);
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    c.version = version;
    snprintf(c.fingerprint, sizeof c.fingerprint, "%s", fpr);
    snprintf(c.created_at, sizeof c.created_at, "%s", m->created_at);
    snprintf(c.expires_at, sizeof c.expires_at, "%s", expires);
    snprintf(c.state, sizeof c.state, "active");
    return fk_inventory_credential_add(inv, &c, diag);
}

static enum fk_err add_cred(struct fk_inventory *inv, const struct fk_manifest *m, const char *kind,
                            unsigned version, const char *fpr, struct fk_diag *diag) {
    return add_cred_exp(inv, m, kind, version, fpr, "", diag);
}

static int same_name(void *user, const char *name) {
    return strcmp(user, name) == 0;
}

/* Device row, credentials and the audit entry, in one transaction. */
static enum fk_err record(struct fk_inventory *inv, const struct fk_manifest *m,
                          const char *manifest_name, const char *manifest_sha, int again,
                          struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_inv_device d;
    char detail[1024];
    memset(&d, 0, sizeof d);
    FK_GUARD(fk_inventory_begin(inv, diag));
    if (again) {
        FK_ENSURE(retire_active(inv, m->device_id, diag) == 0, FK_E_DB);
    }
    snprintf(d.id, sizeof d.id, "%s", m->device_id);
    snprintf(d.mac, sizeof d.mac, "%s", m->mac);
    snprintf(d.name, sizeof d.name, "%s", m->name);
    snprintf(d.state, sizeof d.state, "minted");
    if (snprintf(d.manifest, sizeof d.manifest, "%s", manifest_name) >= (int)sizeof d.manifest) {
        rc = fk_diag_set(diag, FK_E_ARG, "manifest name too long");
        goto out;
    }
    snprintf(d.manifest_sha256, sizeof d.manifest_sha256, "%s", manifest_sha);
    snprintf(d.created_at, sizeof d.created_at, "%s", m->created_at);
    FK_GUARD(fk_inventory_device_upsert(inv, &d, diag));
    FK_GUARD(add_cred(inv, m, "psk", m->psk_version, m->psk_fingerprint, diag));
    FK_GUARD(add_cred(inv, m, "ota_pubkey", m->ota_key_version, m->ota_key_fingerprint, diag));
    if (m->nvs_encrypted) {
        FK_GUARD(add_cred(inv, m, "nvs_keys", m->psk_version, m->nvs_keys_fingerprint, diag));
    }
    if (m->mtls_cert_fingerprint[0] != '\0') {
        FK_GUARD(add_cred_exp(inv, m, "mtls_cert", m->psk_version, m->mtls_cert_fingerprint,
                              m->mtls_cert_not_after, diag));
    }
    snprintf(detail, sizeof detail,
             "{\"mac\":\"%s\",\"manifest\":\"%s\",\"manifest_sha256\":\"%s\","
             "\"psk_fingerprint\":\"%s\",\"psk_version\":%u,"
             "\"ota_public_key_fingerprint\":\"%s\",\"nvs_image_sha256\":\"%s\","
             "\"nvs_encrypted\":%s}",
             m->mac, manifest_name, manifest_sha, m->psk_fingerprint, m->psk_version,
             m->ota_key_fingerprint, m->nvs_image_sha256, m->nvs_encrypted ? "true" : "false");
    FK_GUARD(fk_inventory_audit_append(inv, "provision-keys generate",
                                       again ? "device.reminted" : "device.minted", m->device_id,
                                       detail, diag));
    FK_GUARD(fk_inventory_commit(inv, diag));
    rc = FK_OK;
out:
    fk_inventory_rollback(inv);
    return rc;
}

int fk_cmd_generate(int argc, char **argv) {
    const char *output = NULL;
    const char *mac_s = NULL;
    const char *ssid = NULL;
    const char *passfile = NULL;
    const char *ota_path = NULL;
    const char *inv_path = NULL;
    const char *ca_dir = NULL;
    unsigned long long cert_days = 0;
    unsigned long long nvs_size = FK_KEYS_NVS_SIZE;
    int encrypt = 0;
    int force = 0;
    int json = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_OUTPUT:
            output = optarg;
            break;
        case OPT_MAC:
            mac_s = optarg;
            break;
        case OPT_SSID:
            ssid = optarg;
            break;
        case OPT_PASSFILE:
            passfile = optarg;
            break;
        case OPT_ENCRYPT:
            encrypt = 1;
            break;
        case OPT_OTA_KEY:
            ota_path = optarg;
            break;
        case OPT_INVENTORY:
            inv_path = optarg;
            break;
        case OPT_FORCE:
            force = 1;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_CA:
            ca_dir = optarg;
            break;
        case OPT_CERT_DAYS:
            if (fk_cli_parse_cert_days("generate", optarg, &cert_days) != 0) {
                return FK_EXIT_USAGE;
            }
            break;
        case OPT_NVS_SIZE:
            if (fk_cli_parse_nvs_size("generate", optarg, &nvs_size) != 0) {
                return FK_EXIT_USAGE;
            }
            break;
        case OPT_HELP:
            fputs(help, stdout);
            return FK_EXIT_OK;
        default:
            return fk_cli_usage_error("generate", "unknown option");
        }
    }
    if (optind != argc) {
        return fk_cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
    }
    if (output == NULL) {
        return fk_cli_usage_error("generate", "--output is required");
    }
    if ((ssid == NULL) != (passfile == NULL)) {
        return fk_cli_usage_error("generate", "--wifi-ssid and --wifi-password-file go together");
    }
    if (cert_days != 0 && ca_dir == NULL) {
        return fk_cli_usage_error("generate", "--cert-days needs --ca");
    }
    uint8_t mac[FK_MAC_LEN];
    struct fk_diag diag;
    fk_diag_init(&diag);
    if (mac_s != NULL && fk_keys_mac_parse(mac_s, mac, &diag) != FK_OK) {
        return fk_cli_usage_error("generate", "--mac: %s", diag.msg);
    }
    if (ca_dir != NULL && !encrypt) {
        fprintf(stderr, "provision-keys generate: warning: --ca without --encrypt-nvs puts the "
                        "device's mTLS private key in a plain NVS image; production images "
                        "must be encrypted\n");
    }

    int ret = FK_EXIT_FAIL;
    enum fk_err rc = FK_E_INTERNAL;
    char *pass = NULL;
    size_t pass_cap = 0;
    struct fk_ota_key *fleet = NULL;
    struct fk_minted *dev = NULL;
    struct fk_inventory *inv = NULL;
    struct fk_pki_ca *ca = NULL;
    struct fk_pki_issued *issued = NULL;
    uint8_t *chain = NULL;
    size_t chain_len = 0;
    struct fk_keys_mtls blobs;
    size_t superseded = 0;
    char *default_inv = NULL;
    char *json_path = NULL;
    char dir[4096];
    char base[512];
    char manifest_sha[65];
    {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", output);
        snprintf(dir, sizeof dir, "%s", dirname(tmp));
        snprintf(tmp, sizeof tmp, "%s", output);
        snprintf(base, sizeof base, "%s", basename(tmp));
        size_t bl = strlen(base);
        if (bl > 5 && strcmp(base + bl - 5, ".json") == 0) {
            base[bl - 5] = '\0';
        }
    }
    if (passfile != NULL) {
        FK_GUARD(read_password(passfile, &pass, &pass_cap, &diag));
    }
    if (ota_path != NULL) {
        FK_GUARD(fk_keys_ota_load(ota_path, &fleet, &diag));
    }
    if (ca_dir != NULL) {
        FK_GUARD(fk_pki_mtls_open(ca_dir, &ca, &chain, &chain_len, &diag));
    }
    FK_GUARD(fk_mkdirs(dir, 0700, &diag));
    FK_GUARD(fk_path_join(dir, base, ".json", &json_path));
    if (!force && access(json_path, F_OK) == 0) {
        rc = fk_diag_at(&diag, FK_E_EXISTS, json_path, 0,
                        "already exists (it may belong to a flashed device); use --force to "
                        "replace it");
        goto out;
    }
    if (inv_path == NULL) {
        FK_GUARD(fk_path_join(dir, "inventory.db", "", &default_inv));
        inv_path = default_inv;
    }
    FK_GUARD(fk_inventory_open(inv_path, &inv, &diag));
    char inv_name[512]; /* what is printed: a URI's password masked */
    fk_inventory_location_display(inv_path, inv_name, sizeof inv_name);

    /* A device already in the inventory gets new credential versions, and only with --force. */
    unsigned version = 1;
    int again = 0;
    if (mac_s != NULL) {
        char id[FK_DEVICE_ID_SIZE];
        struct fk_inv_device existing;
        fk_keys_device_id(mac, id);
        rc = fk_inventory_device_get(inv, id, &existing, &diag);
        if (rc == FK_OK) {
            if (!force) {
                rc = fk_diag_at(&diag, FK_E_EXISTS, inv_name, 0,
                                "%s is already in the inventory (minted %s); use --force to "
                                "mint new credentials for it",
                                id, existing.created_at);
                goto out;
            }
            struct max_ver mv = {0};
            FK_GUARD(fk_inventory_credential_list(inv, id, note_version, &mv, &diag));
            version = mv.max + 1;
            again = 1;
        } else if (rc != FK_E_NOTFOUND) {
            goto out;
        }
        fk_diag_init(&diag);
    }

    /* The certificate names the device, so the MAC (the id) is fixed before minting. */
    int have_mac = mac_s != NULL;
    if (!have_mac && ca != NULL) {
        FK_GUARD(fk_keys_mac_random(mac));
        have_mac = 1;
    }
    struct fk_keys_mint_opts o = {.mac = have_mac ? mac : NULL,
                                  .wifi_ssid = ssid,
                                  .wifi_password = pass,
                                  .ota = fleet,
                                  .encrypt_nvs = encrypt,
                                  .nvs_size = (size_t)nvs_size,
                                  .version = version};
    if (ca != NULL) {
        char id[FK_DEVICE_ID_SIZE];
        fk_keys_device_id(mac, id);
        FK_GUARD(fk_pki_mtls_issue(ca, id, (unsigned)cert_days, chain, chain_len, &issued, &blobs,
                                   &o, &diag));
    }
    FK_GUARD(fk_keys_mint(&o, &dev, &diag));
    /* The key is in the image now; drop the issuer's copy at once. */
    fk_pki_issued_free(issued);
    issued = NULL;
    /* Files first (each fsynced), the inventory row last: the row is the commit point. */
    FK_GUARD(fk_keys_minted_write(dev, dir, base, 0, manifest_sha, &diag));
    const struct fk_manifest *m = fk_keys_minted_manifest(dev);
    char manifest_name[600];
    snprintf(manifest_name, sizeof manifest_name, "%s.json", base);
    FK_GUARD(record(inv, m, manifest_name, manifest_sha, again, &diag));
    if (ca != NULL) {
        /* The committed certificate supersedes every other one of this device in the CA
         * (an earlier mint, or an attempt that died before its inventory row). */
        FK_GUARD(fk_pki_mtls_supersede(ca, same_name, (void *)m->device_id,
                                       m->mtls_cert_fingerprint, &superseded, &diag));
    }
    fk_log(FK_LOG_DEBUG, "generate: psk %s minted for %s", m->psk_fingerprint, m->device_id);

    if (json) {
        char img_path[4400];
        if (snprintf(img_path, sizeof img_path, "%s/%s", dir, m->nvs_image) < 0) {
            img_path[0] = '\0';
        }
        cJSON *o_json = cJSON_CreateObject();
        cJSON_AddStringToObject(o_json, "device_id", m->device_id);
        cJSON_AddStringToObject(o_json, "mac", m->mac);
        cJSON_AddStringToObject(o_json, "manifest", json_path);
        cJSON_AddStringToObject(o_json, "psk_fingerprint", m->psk_fingerprint);
        cJSON_AddNumberToObject(o_json, "version", m->psk_version);
        cJSON_AddStringToObject(o_json, "ota_public_key_fingerprint", m->ota_key_fingerprint);
        cJSON_AddStringToObject(o_json, "nvs_image", img_path);
        cJSON_AddBoolToObject(o_json, "nvs_encrypted", m->nvs_encrypted);
        if (m->mtls_cert[0] != '\0') {
            cJSON_AddStringToObject(o_json, "mtls_cert", m->mtls_cert);
            cJSON_AddStringToObject(o_json, "mtls_cert_fingerprint", m->mtls_cert_fingerprint);
            cJSON_AddStringToObject(o_json, "mtls_cert_serial", m->mtls_cert_serial);
            cJSON_AddStringToObject(o_json, "mtls_cert_not_after", m->mtls_cert_not_after);
            cJSON_AddNumberToObject(o_json, "mtls_certs_superseded", (double)superseded);
        }
        cJSON_AddStringToObject(o_json, "inventory", inv_name);
        char *text = cJSON_PrintUnformatted(o_json);
        FK_ENSURE(text != NULL, FK_E_NOMEM);
        puts(text);
        cJSON_free(text);
        cJSON_Delete(o_json);
    } else {
        printf("%s  (MAC %s)\n", m->device_id, m->mac);
        printf("  manifest    %s\n", json_path);
        printf("  psk         %s (version %u)\n", m->psk_fingerprint, m->psk_version);
        if (m->ota_private_key[0] != '\0') {
            printf("  ota key     %s  private key %s/%s (0600, keep secret)\n",
                   m->ota_key_fingerprint, dir, m->ota_private_key);
        } else {
            printf("  ota key     %s  (fleet key %s)\n", m->ota_key_fingerprint, ota_path);
        }
        printf("  nvs image   %s/%s (0x%x bytes%s)\n", dir, m->nvs_image, m->nvs_size,
               m->nvs_encrypted ? ", encrypted" : "");
        if (m->nvs_encrypted) {
            printf("  nvs keys    %s/%s (0600)\n", dir, m->nvs_keys);
        }
        if (m->mtls_cert[0] != '\0') {
            printf("  mtls cert   %s/%s  %s (serial %s, until %s; key only in the image)\n", dir,
                   m->mtls_cert, m->mtls_cert_fingerprint, m->mtls_cert_serial,
                   m->mtls_cert_not_after);
            if (superseded > 0) {
                printf("  superseded  %zu earlier certificate(s) of %s revoked\n", superseded,
                       m->device_id);
            }
        }
        printf("  inventory   %s\n", inv_name);
    }
    ret = FK_EXIT_OK;
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        ret = fk_cli_fail(&diag, rc);
    }
    fk_inventory_close(inv);
    fk_keys_minted_free(dev);
    fk_pki_issued_free(issued);
    fk_pki_ca_free(ca);
    free(chain);
    fk_keys_ota_free(fleet);
    fk_free_secret(pass, pass_cap);
    free(default_inv);
    free(json_path);
    return ret;
}
