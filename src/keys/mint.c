/* Minting one device: the layer above keys.c (identity, OTA keys), manifest.c (its JSON)
 * and nvs_image.c (its NVS image), which it combines; none of them calls back up here.
 *
 * Design: fk_keys_mint() does all the work in memory (secrets, image, manifest) so that
 * nothing reaches the disk for a device whose inputs are bad; fk_keys_minted_write() then
 * writes the files with the manifest last, because the manifest is what names the other
 * files and what a person or `flash` opens first. Every file is written atomically (temp +
 * rename) with mode 0600: the plain image and the manifest both hold the PSK. */
#include "fleetkey/keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- minting ----------------------------------------------------------------------- */

struct fk_minted {
    struct fk_manifest m;
    struct fk_ota_key *own; /* the device's own key pair, NULL with a fleet key */
    uint8_t *img;           /* NVS image, encrypted when m.nvs_encrypted */
    size_t img_len;
    uint8_t keys_img[FK_NVS_KEYS_SIZE];
    char *cert_pem; /* the mTLS certificate (public), NULL without one */
};

static size_t bounded_len(const char *s, size_t max) {
    return s == NULL ? 0 : strnlen(s, max + 1);
}

enum fk_err fk_keys_mint(const struct fk_keys_mint_opts *o, struct fk_minted **out,
                         struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_nvs_keys nk;
    uint8_t mac[FK_MAC_LEN];
    struct fk_minted *d = calloc(1, sizeof *d);
    memset(&nk, 0, sizeof nk);
    FK_ENSURE(d != NULL, FK_E_NOMEM);
    struct fk_manifest *m = &d->m;
    size_t size = o->nvs_size != 0 ? o->nvs_size : FK_KEYS_NVS_SIZE;
    FK_ENSURE(size >= FK_NVS_MIN_SIZE && size % 4096 == 0 && size <= 0x100000,
              fk_diag_set(diag, FK_E_ARG, "NVS size must be a multiple of 4096, 0x3000..1 MiB"));
    FK_ENSURE(o->mtls == NULL || (o->mtls_cert_pem != NULL && o->mtls_fingerprint != NULL &&
                                  o->mtls_serial != NULL && strlen(o->mtls_fingerprint) < 72 &&
                                  strlen(o->mtls_serial) < 33 && o->mtls_not_after > 0),
              fk_diag_set(diag, FK_E_ARG, "mtls: certificate PEM, fingerprint, serial required"));
    FK_ENSURE(bounded_len(o->name, FK_KEYS_NAME_MAX) <= FK_KEYS_NAME_MAX,
              fk_diag_set(diag, FK_E_RANGE, "name: at most %d bytes", FK_KEYS_NAME_MAX));
    if (o->wifi_ssid != NULL) {
        size_t sl = bounded_len(o->wifi_ssid, FK_KEYS_SSID_MAX);
        FK_ENSURE(sl >= 1 && sl <= FK_KEYS_SSID_MAX,
                  fk_diag_set(diag, FK_E_RANGE, "wifi_ssid: 1 to %d bytes", FK_KEYS_SSID_MAX));
        FK_ENSURE(bounded_len(o->wifi_password, FK_KEYS_WIFI_PASS_MAX) <= FK_KEYS_WIFI_PASS_MAX,
                  fk_diag_set(diag, FK_E_RANGE, "wifi_password: at most %d bytes",
                              FK_KEYS_WIFI_PASS_MAX));
    }

    if (o->mac != NULL) {
        memcpy(mac, o->mac, sizeof mac);
    } else {
        FK_GUARD(fk_keys_mac_random(mac));
    }
    fk_keys_device_id(mac, m->device_id);
    memcpy(m->psk_identity, m->device_id, sizeof m->psk_identity);
    fk_keys_mac_format(mac, m->mac);
    FK_GUARD(fk_random(m->psk, sizeof m->psk));
    const struct fk_ota_key *ota = o->ota;
    if (ota == NULL) {
        FK_GUARD(fk_keys_ota_generate(&d->own));
        ota = d->own;
    }
    FK_GUARD(
        fk_keys_ota_public_der(ota, m->ota_pub_der, sizeof m->ota_pub_der, &m->ota_pub_der_len));
    m->provisioned = 0;
    m->schema_version = FK_MANIFEST_SCHEMA;
    snprintf(m->name, sizeof m->name, "%s", o->name != NULL ? o->name : "");
    snprintf(m->wifi_ssid, sizeof m->wifi_ssid, "%s", o->wifi_ssid != NULL ? o->wifi_ssid : "");
    m->nvs_size = (unsigned)size;
    m->nvs_encrypted = o->encrypt_nvs != 0;
    fk_fpr(m->psk, sizeof m->psk, m->psk_fingerprint);
    fk_fpr(m->ota_pub_der, m->ota_pub_der_len, m->ota_key_fingerprint);
    m->psk_version = o->version != 0 ? o->version : 1;
    m->ota_key_version = m->psk_version;
    fk_time_rfc3339((long long)time(NULL), m->created_at);
    if (o->encrypt_nvs) {
        FK_GUARD(fk_nvs_keys_generate(&nk));
        fk_nvs_keys_encode(&nk, d->keys_img);
        fk_fpr(d->keys_img, 2 * FK_NVS_KEY_LEN, m->nvs_keys_fingerprint);
    }
    if (o->mtls != NULL) {
        d->cert_pem = strdup(o->mtls_cert_pem);
        FK_ENSURE(d->cert_pem != NULL, FK_E_NOMEM);
        snprintf(m->mtls_cert_fingerprint, sizeof m->mtls_cert_fingerprint, "%s",
                 o->mtls_fingerprint);
        snprintf(m->mtls_cert_serial, sizeof m->mtls_cert_serial, "%s", o->mtls_serial);
        fk_time_rfc3339((long long)o->mtls_not_after, m->mtls_cert_not_after);
    }
    d->img = malloc(size);
    FK_ENSURE(d->img != NULL, FK_E_NOMEM);
    FK_GUARD(fk_keys_nvs_render(m, o->wifi_ssid, o->wifi_password, o->mtls, size,
                                o->encrypt_nvs ? &nk : NULL, d->img, size, &d->img_len, diag));
    *out = d;
    d = NULL;
    rc = FK_OK;
out:
    fk_wipe(&nk, sizeof nk);
    fk_keys_minted_free(d);
    return rc;
}

void fk_keys_minted_free(struct fk_minted *d) {
    if (d == NULL) {
        return;
    }
    fk_free_secret(d->img, d->img_len);
    free(d->cert_pem);
    fk_keys_ota_free(d->own);
    fk_wipe(d, sizeof *d);
    free(d);
}

const struct fk_manifest *fk_keys_minted_manifest(const struct fk_minted *d) {
    return &d->m;
}

static enum fk_err remove_stale(const char *path, struct fk_diag *diag) {
    /* Almost always absent: a lookup (shared) first, not unlink's exclusive directory lock,
     * which every worker minting into the directory would contend on. */
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        return FK_OK;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        return fk_diag_at(diag, FK_E_IO, path, 0, "cannot remove stale file: %s", strerror(errno));
    }
    return FK_OK;
}

/* One file of the device: staged when the caller collects a chunk, else written atomically. */
static enum fk_err put(struct fk_file_stage *stage, const char *path, const void *data, size_t len,
                       unsigned mode, unsigned flags, struct fk_diag *diag) {
    return stage != NULL ? fk_file_stage_write(stage, path, data, len, mode, diag)
                         : fk_file_write_atomic(path, data, len, mode, flags, diag);
}

static enum fk_err minted_write(struct fk_minted *d, const char *dir, const char *base,
                                unsigned flags, struct fk_file_stage *stage,
                                char manifest_sha256[65], struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char *p_img = NULL;
    char *p_keys = NULL;
    char *p_pem = NULL;
    char *p_json = NULL;
    char *p_crt = NULL;
    char *json = NULL;
    size_t json_len = 0;
    struct fk_manifest *m = &d->m;
    FK_ENSURE(strlen(base) + 16 < FK_KEYS_FILE_MAX,
              fk_diag_set(diag, FK_E_ARG, "file name too long: %s", base));
    FK_GUARD(fk_path_join(dir, base, ".nvs.bin", &p_img));
    FK_GUARD(fk_path_join(dir, base, ".nvs_keys.bin", &p_keys));
    FK_GUARD(fk_path_join(dir, base, ".key.pem", &p_pem));
    FK_GUARD(fk_path_join(dir, base, ".json", &p_json));
    FK_GUARD(fk_path_join(dir, base, ".crt.pem", &p_crt));

    snprintf(m->nvs_image, sizeof m->nvs_image, "%s.nvs.bin", base);
    fk_keys_sha256_hex(d->img, d->img_len, m->nvs_image_sha256);
    FK_GUARD(put(stage, p_img, d->img, d->img_len, 0600, flags, diag));
    if (m->nvs_encrypted) {
        snprintf(m->nvs_keys, sizeof m->nvs_keys, "%s.nvs_keys.bin", base);
        FK_GUARD(put(stage, p_keys, d->keys_img, sizeof d->keys_img, 0600, flags, diag));
    } else {
        m->nvs_keys[0] = '\0';
        FK_GUARD(stage != NULL ? FK_OK : remove_stale(p_keys, diag));
    }
    if (d->own != NULL) {
        snprintf(m->ota_private_key, sizeof m->ota_private_key, "%s.key.pem", base);
        /* Rare (no fleet key): written and synced on its own even when staging. */
        FK_GUARD(fk_keys_ota_write_pem(d->own, p_pem, stage != NULL ? 0 : flags, diag));
    } else {
        m->ota_private_key[0] = '\0';
        FK_GUARD(stage != NULL ? FK_OK : remove_stale(p_pem, diag));
    }
    if (d->cert_pem != NULL) {
        /* Public: 0644. Its private key exists only inside the image. */
        snprintf(m->mtls_cert, sizeof m->mtls_cert, "%s.crt.pem", base);
        FK_GUARD(put(stage, p_crt, d->cert_pem, strlen(d->cert_pem), 0644, flags, diag));
    } else {
        m->mtls_cert[0] = '\0';
        FK_GUARD(stage != NULL ? FK_OK : remove_stale(p_crt, diag));
    }
    FK_GUARD(fk_keys_manifest_render(m, &json, &json_len));
    if (manifest_sha256 != NULL) {
        fk_keys_sha256_hex(json, json_len, manifest_sha256);
    }
    FK_GUARD(put(stage, p_json, json, json_len, 0600, flags, diag));
    rc = FK_OK;
out:
    if (json != NULL) {
        fk_free_secret(json, json_len + 1);
    }
    free(p_img);
    free(p_keys);
    free(p_pem);
    free(p_json);
    free(p_crt);
    return rc;
}

enum fk_err fk_keys_minted_write(struct fk_minted *d, const char *dir, const char *base,
                                 unsigned flags, char manifest_sha256[65], struct fk_diag *diag) {
    return minted_write(d, dir, base, flags, NULL, manifest_sha256, diag);
}

enum fk_err fk_keys_minted_stage(struct fk_minted *d, const char *dir, const char *base,
                                 struct fk_file_stage *stage, char manifest_sha256[65],
                                 struct fk_diag *diag) {
    return minted_write(d, dir, base, 0, stage, manifest_sha256, diag);
}
