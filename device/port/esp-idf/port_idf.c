/* The ESP-IDF port (fkd_idf.h): the only file of the device library that calls ESP-IDF for
 * flash, NVS keys, posture, OTA state, logging and restart. Decisions are in idf_logic.c, which
 * includes nothing of ESP-IDF and runs in CTest; this file asks the questions and acts. */
#include "fkd_idf.h"

#include "sdkconfig.h"

#include "esp_err.h"
#include "esp_flash_encrypt.h"
#include "esp_idf_version.h"
#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_secure_boot.h"
#include "esp_system.h"
#include "nvs_flash.h"
#if !CONFIG_IDF_TARGET_LINUX
#include "esp_efuse.h"
#include "esp_efuse_table.h"
#endif

#include <string.h>

static const char TAG[] = "fleetkey";

/* The library's image states are ESP-IDF's esp_ota_img_states_t, value for value: the
 * rollback decision compares one with the other. */
_Static_assert((int)ESP_OTA_IMG_NEW == (int)FKD_OTA_IMG_NEW, "ota state NEW");
_Static_assert((int)ESP_OTA_IMG_PENDING_VERIFY == (int)FKD_OTA_IMG_PENDING_VERIFY,
               "ota state PENDING");
_Static_assert((int)ESP_OTA_IMG_VALID == (int)FKD_OTA_IMG_VALID, "ota state VALID");
_Static_assert((int)ESP_OTA_IMG_INVALID == (int)FKD_OTA_IMG_INVALID, "ota state INVALID");
_Static_assert((int)ESP_OTA_IMG_ABORTED == (int)FKD_OTA_IMG_ABORTED, "ota state ABORTED");
_Static_assert((int)ESP_PARTITION_SUBTYPE_DATA_NVS == (int)FKD_PART_SUB_NVS, "subtype nvs");
_Static_assert((int)ESP_PARTITION_SUBTYPE_DATA_NVS_KEYS == (int)FKD_PART_SUB_NVS_KEYS,
               "subtype nvs_keys");
_Static_assert((int)ESP_PARTITION_SUBTYPE_APP_OTA_0 == (int)FKD_PART_SUB_OTA_0, "subtype ota_0");
_Static_assert(NVS_KEY_SIZE * 2 == FKD_NVS_XTS_KEY_LEN, "XTS key = eky || tky");

/* ---- flash ops over esp_partition -------------------------------------------------------- */

/* The partition holding [addr, addr + len), and the offset inside it. */
static const esp_partition_t *window(const struct fkd_idf_flash *f, uint32_t addr, size_t len,
                                     size_t *off) {
    int i = fkd_idf_part_at(&f->parts, addr, len);
    if (i < 0) {
        return NULL;
    }
    *off = addr - f->parts.part[i].offset;
    return (const esp_partition_t *)f->esp[i];
}

static enum fkd_err op_read(void *user, uint32_t addr, void *buf, size_t len) {
    size_t off = 0;
    const esp_partition_t *p = window(user, addr, len, &off);
    if (p == NULL) {
        return FKD_E_RANGE;
    }
    return esp_partition_read(p, off, buf, len) == ESP_OK ? FKD_OK : FKD_E_IO;
}

static enum fkd_err op_write(void *user, uint32_t addr, const void *buf, size_t len) {
    size_t off = 0;
    const esp_partition_t *p = window(user, addr, len, &off);
    if (p == NULL) {
        return FKD_E_RANGE;
    }
    /* An encrypted partition is written in whole 16-byte AES blocks (ESP-IDF refuses others):
     * NVS, the library's only small writer, lives in a partition that is not. */
    return esp_partition_write(p, off, buf, len) == ESP_OK ? FKD_OK : FKD_E_IO;
}

static enum fkd_err op_erase(void *user, uint32_t addr) {
    size_t off = 0;
    const esp_partition_t *p = window(user, addr, FKD_FLASH_SECTOR, &off);
    if (p == NULL) {
        return FKD_E_RANGE;
    }
    return esp_partition_erase_range(p, off, FKD_FLASH_SECTOR) == ESP_OK ? FKD_OK : FKD_E_IO;
}

static const struct fkd_flash_ops idf_ops = {op_read, op_write, op_erase};

enum fkd_err fkd_idf_flash_open(struct fkd_idf_flash *f, struct fkd_flash *out) {
    enum fkd_err rc = FKD_E_INTERNAL;
    memset(f, 0, sizeof *f);
    memset(out, 0, sizeof *out);
    uint32_t end = 0;
    esp_partition_iterator_t it =
        esp_partition_find(ESP_PARTITION_TYPE_ANY, ESP_PARTITION_SUBTYPE_ANY, NULL);
    for (; it != NULL; it = esp_partition_next(it)) {
        const esp_partition_t *p = esp_partition_get(it);
        if (p->type != ESP_PARTITION_TYPE_APP && p->type != ESP_PARTITION_TYPE_DATA) {
            continue; /* the bootloader and the table itself: never the library's business */
        }
        struct fkd_idf_part ip = {(uint8_t)p->type, (uint8_t)p->subtype, p->address, p->size,
                                  p->label,         p->encrypted};
        unsigned i = f->parts.count;
        rc = fkd_idf_table_add(&f->parts, &ip);
        if (rc != FKD_OK) {
            ESP_LOGE(TAG, "partition '%s' at 0x%" PRIx32 ": %s", p->label, p->address,
                     fkd_strerror(rc));
            goto out;
        }
        f->esp[i] = p;
        if (p->address + p->size > end) {
            end = p->address + p->size;
        }
    }
    FKD_ENSURE(f->parts.count > 0, FKD_E_NOTFOUND);
    out->ops = &idf_ops;
    out->user = f;
    out->size = end;
    rc = FKD_OK;
out:
    esp_partition_iterator_release(it); /* NULL is fine */
    return rc;
}

const struct fkd_part *fkd_idf_part(const struct fkd_idf_flash *f, enum fkd_idf_role role) {
    const char *label = role == FKD_IDF_ROLE_NVS ? CONFIG_FLEETKEY_NVS_PARTITION : NULL;
    enum fkd_err why = FKD_E_INTERNAL;
    const struct fkd_part *p = fkd_idf_part_lookup(&f->parts, role, label, &why);
    if (p == NULL) {
        ESP_LOGE(TAG, "no %s partition%s%s%s: %s", fkd_idf_role_label(role, NULL, NULL),
                 label != NULL ? " labelled '" : "", label != NULL ? label : "",
                 label != NULL ? "'" : "",
                 why == FKD_E_TYPE ? "the label names another kind of partition"
                                   : fkd_strerror(why));
    }
    return p;
}

/* ---- NVS ----------------------------------------------------------------------------------- */

enum fkd_err fkd_idf_nvs_mount(const struct fkd_idf_flash *f, const struct fkd_flash *flash,
                               struct fkd_nvs *nvs, int want_encrypted, int *with_keys) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t key[FKD_NVS_XTS_KEY_LEN];
    nvs_sec_cfg_t sec;
    memset(&sec, 0, sizeof sec);
    *with_keys = 0;
    const struct fkd_part *np = fkd_idf_part(f, FKD_IDF_ROLE_NVS);
    FKD_ENSURE(np != NULL, FKD_E_NOTFOUND);
    if (want_encrypted) {
        const struct fkd_part *kp = fkd_idf_part(f, FKD_IDF_ROLE_NVS_KEYS);
        FKD_ENSURE(kp != NULL, FKD_E_NOTFOUND);
        const esp_partition_t *kpe = f->esp[kp - f->parts.part];
        /* ESP-IDF reads the keys (decrypted by flash encryption when it is on) and checks
         * their CRC; a blank partition is ESP_ERR_NVS_KEYS_NOT_INITIALIZED: provision-keys
         * writes it, the device never generates keys of its own. */
        esp_err_t err = nvs_flash_read_security_cfg(kpe, &sec);
        if (err != ESP_OK) {
            ESP_LOGE(TAG, "nvs_keys '%s': %s: NVS not mounted", kp->label, esp_err_to_name(err));
            rc = FKD_E_NOTFOUND;
            goto out;
        }
        memcpy(key, sec.eky, NVS_KEY_SIZE);
        memcpy(key + NVS_KEY_SIZE, sec.tky, NVS_KEY_SIZE);
    }
    struct fkd_nvs_stats st;
    fkd_nvs_init(nvs);
    FKD_GUARD(fkd_nvs_mount(nvs, flash, np->offset, np->size, want_encrypted ? key : NULL, &st));
    *with_keys = want_encrypted;
    ESP_LOGI(TAG, "NVS '%s' mounted %s: %u pages in use, %u free, %u repaired", np->label,
             want_encrypted ? "encrypted" : "unencrypted", st.pages_active + st.pages_full,
             st.pages_free, st.repaired);
    rc = FKD_OK;
out:
    fkd_wipe(key, sizeof key);
    fkd_wipe(&sec, sizeof sec);
    return rc;
}

/* ---- configuration from sdkconfig.h -------------------------------------------------------- */

static enum fkd_err put(char *dst, size_t cap, const char *src, const char *name) {
    size_t n = strlen(src);
    if (n >= cap) {
        ESP_LOGE(TAG, "%s: %u bytes, at most %u fit", name, (unsigned)n, (unsigned)cap - 1u);
        return FKD_E_RANGE;
    }
    memcpy(dst, src, n + 1);
    return FKD_OK;
}

enum fkd_err fkd_idf_config_load(struct fkd_config *c) {
    enum fkd_err rc = FKD_E_INTERNAL;
    fkd_config_init(c);
    FKD_GUARD(put(c->wss_uri, sizeof c->wss_uri, CONFIG_MINITRAIN_WSS_URI, "WSS_URI"));
    FKD_GUARD(put(c->expected_host, sizeof c->expected_host, CONFIG_MINITRAIN_EXPECTED_HOST,
                  "EXPECTED_HOST"));
    FKD_GUARD(put(c->ca_cert_pem, sizeof c->ca_cert_pem, CONFIG_MINITRAIN_CA_CERT_PEM, "CA"));
#if !CONFIG_PRODUCTION_BUILD
    /* Development fallbacks: device/Kconfig declares them only when !PRODUCTION_BUILD. */
    FKD_GUARD(put(c->client_cert_pem, sizeof c->client_cert_pem, CONFIG_MINITRAIN_CLIENT_CERT_PEM,
                  "CLIENT_CERT_PEM"));
    FKD_GUARD(put(c->client_key_pem, sizeof c->client_key_pem, CONFIG_MINITRAIN_CLIENT_KEY_PEM,
                  "CLIENT_KEY_PEM"));
    FKD_GUARD(put(c->wifi_ssid, sizeof c->wifi_ssid, CONFIG_WIFI_SSID, "WIFI_SSID"));
    FKD_GUARD(
        put(c->wifi_password, sizeof c->wifi_password, CONFIG_WIFI_PASSWORD, "WIFI_PASSWORD"));
    c->production_build = 0;
#else
    c->production_build = 1;
#endif
#if CONFIG_NVS_ENCRYPTION
    c->nvs_encryption = 1;
#endif
#if CONFIG_SECURE_BOOT_V2_ENABLED
    c->secure_boot_v2 = 1; /* what the build claims; fkd_idf_posture_apply asks the eFuse */
#endif
    c->dtls_port = (uint16_t)CONFIG_MINITRAIN_DTLS_PORT;
    for (int i = 0; i < FKD_CFG_STR_COUNT; i++) {
        c->source[i] = fkd_config_get_str(c, (enum fkd_cfg_str)i)[0] != '\0' ? FKD_CFG_SDKCONFIG
                                                                             : FKD_CFG_DEFAULT;
    }
    rc = FKD_OK;
out:
    if (rc != FKD_OK) {
        fkd_config_free(c);
    }
    return rc;
}

/* ---- posture ------------------------------------------------------------------------------- */

static void read_hw(struct fkd_idf_hw *hw, int nvs_keys_loaded) {
    memset(hw, 0, sizeof *hw);
    hw->secure_boot = esp_secure_boot_enabled();
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(6, 0, 0)
    hw->flash_encryption = esp_efuse_is_flash_encryption_enabled();
#else
    hw->flash_encryption = esp_flash_encryption_enabled();
#endif
    hw->flash_enc_release = esp_get_flash_encryption_mode() == ESP_FLASH_ENC_MODE_RELEASE;
#if CONFIG_IDF_TARGET_ESP32
    hw->jtag_disabled = esp_efuse_read_field_bit(ESP_EFUSE_DISABLE_JTAG);
    hw->download_protected = esp_efuse_read_field_bit(ESP_EFUSE_UART_DOWNLOAD_DIS);
#elif !CONFIG_IDF_TARGET_LINUX
    hw->jtag_disabled = esp_efuse_read_field_bit(ESP_EFUSE_DIS_PAD_JTAG);
    hw->download_protected = esp_efuse_read_field_bit(ESP_EFUSE_DIS_DOWNLOAD_MODE) ||
                             esp_efuse_read_field_bit(ESP_EFUSE_ENABLE_SECURITY_DOWNLOAD);
#endif
    hw->nvs_keys_loaded = nvs_keys_loaded;
}

unsigned fkd_idf_posture_apply(struct fkd_config *cfg, int nvs_keys_loaded, int *nvs_encrypted) {
    struct fkd_idf_hw hw;
    struct fkd_idf_posture p;
    read_hw(&hw, nvs_keys_loaded);
    fkd_idf_posture_eval(&hw, cfg->secure_boot_v2, cfg->production_build, &p);
    for (unsigned i = 0; i < FKD_IDF_F_COUNT; i++) {
        if (p.findings & (1u << i)) {
            fkd_log(cfg->production_build ? FKD_LOG_ERROR : FKD_LOG_WARN, "posture: %s",
                    fkd_idf_finding_text(1u << i));
        }
    }
    cfg->secure_boot_v2 = p.secure_boot;
    *nvs_encrypted = p.nvs_encrypted;
    return p.findings;
}

/* ---- OTA ----------------------------------------------------------------------------------- */

static enum fkd_err read_part(void *user, uint32_t off, void *buf, size_t len) {
    const esp_partition_t *p = user;
    return esp_partition_read(p, off, buf, len) == ESP_OK ? FKD_OK : FKD_E_IO;
}

enum fkd_err fkd_idf_ota_running(const struct fkd_idf_flash *f, struct fkd_ota_boot *b) {
    enum fkd_err rc = FKD_E_INTERNAL;
    memset(b, 0, sizeof *b);
    b->slot = -1;
    b->entry = -1;
    b->state = FKD_OTA_IMG_UNDEFINED;
    const esp_partition_t *run = esp_ota_get_running_partition();
    FKD_ENSURE(run != NULL && (run->subtype == ESP_PARTITION_SUBTYPE_APP_OTA_0 ||
                               run->subtype == ESP_PARTITION_SUBTYPE_APP_OTA_1),
               FKD_E_NOTFOUND);
    int i = fkd_idf_part_at(&f->parts, run->address, run->size);
    FKD_ENSURE(i >= 0, FKD_E_NOTFOUND);
    b->slot = run->subtype == ESP_PARTITION_SUBTYPE_APP_OTA_0 ? 0 : 1;
    b->part = &f->parts.part[i];
    esp_ota_img_states_t st;
    if (esp_ota_get_state_partition(run, &st) == ESP_OK) {
        b->state = (uint32_t)st;
    }
    /* b->entry stays -1: the otadata entries are ESP-IDF's (esp_ota_ops confirms and rolls
     * back), so the library's fkd_ota_mark_valid/_invalid never write them on the chip. */
    /* The secure boot signature was checked by the ROM and bootloader before we ran. */
    b->signature_checked = esp_secure_boot_enabled();
    FKD_GUARD(fkd_app_check(read_part, (void *)run, run->size, &b->app));
    rc = FKD_OK;
out:
    return rc;
}

enum fkd_idf_ota_action fkd_idf_ota_step(const struct fkd_idf_flash *f,
                                         const struct fkd_flash *flash, struct fkd_ota_boot *b,
                                         struct fkd_nvs *nvs, int welcomed,
                                         uint64_t since_boot_ms) {
    struct fkd_idf_ota_in in = {b->state,
                                b->state != FKD_OTA_IMG_UNDEFINED,
                                welcomed,
                                since_boot_ms,
                                (uint32_t)CONFIG_FLEETKEY_SELF_TEST_TIMEOUT_MS,
                                esp_ota_check_rollback_is_possible()};
    enum fkd_idf_ota_action a = fkd_idf_ota_decide(&in);
    switch (a) {
    case FKD_IDF_OTA_MARK_VALID: {
        esp_err_t err = esp_ota_mark_app_valid_cancel_rollback();
        if (err != ESP_OK) {
            fkd_log(FKD_LOG_ERROR, "ota: confirming ota_%d failed: %s", b->slot,
                    esp_err_to_name(err));
            return FKD_IDF_OTA_WAIT; /* asked again on the next step */
        }
        b->state = FKD_OTA_IMG_VALID;
        fkd_log(FKD_LOG_INFO, "ota: ota_%d %s confirmed (welcomed by the control plane)", b->slot,
                b->app.version);
        /* The otadata entry is ESP-IDF's now VALID; what is left of the library's own
         * confirmation is the anti-rollback commit of secure_version to NVS ota/secver (the
         * eFuse counter is the bootloader's): with state VALID and no entry, that is all
         * fkd_ota_mark_valid does. */
        enum fkd_err rc = fkd_ota_mark_valid(flash, &f->parts, nvs, b);
        if (rc != FKD_OK) {
            fkd_log(FKD_LOG_ERROR, "ota: secure_version %u not committed: %s",
                    (unsigned)b->app.secure_version, fkd_strerror(rc));
        }
        break;
    }
    case FKD_IDF_OTA_ROLLBACK:
        fkd_log(FKD_LOG_ERROR,
                "ota: self-test failed: ota_%d %s not welcomed within %u ms: "
                "rolling back",
                b->slot, b->app.version, (unsigned)CONFIG_FLEETKEY_SELF_TEST_TIMEOUT_MS);
        (void)esp_ota_mark_app_invalid_rollback_and_reboot(); /* returns only on failure */
        fkd_log(FKD_LOG_ERROR, "ota: rollback failed: ota_%d keeps running", b->slot);
        break;
    case FKD_IDF_OTA_KEEP:
        fkd_log(FKD_LOG_ERROR,
                "ota: self-test failed but no previous image can boot: ota_%d "
                "keeps running unconfirmed",
                b->slot);
        break;
    case FKD_IDF_OTA_NONE:
    case FKD_IDF_OTA_WAIT:
        break;
    }
    return a;
}

enum fkd_err fkd_idf_ota_check_switch(const struct fkd_part *target) {
    const esp_partition_t *boot = esp_ota_get_boot_partition();
    if (boot == NULL || target == NULL || boot->address != target->offset) {
        fkd_log(FKD_LOG_ERROR, "ota: ESP-IDF's otadata reader does not boot the new image next");
        return FKD_E_STATE;
    }
    return FKD_OK;
}

/* ---- log, restart -------------------------------------------------------------------------- */

void fkd_idf_log(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    switch (lvl) {
    case FKD_LOG_ERROR:
        ESP_LOGE(TAG, "%s", line);
        break;
    case FKD_LOG_WARN:
        ESP_LOGW(TAG, "%s", line);
        break;
    case FKD_LOG_INFO:
        ESP_LOGI(TAG, "%s", line);
        break;
    case FKD_LOG_DEBUG:
        ESP_LOGD(TAG, "%s", line);
        break;
    }
}

void fkd_idf_restart(void) {
    esp_restart();
}
