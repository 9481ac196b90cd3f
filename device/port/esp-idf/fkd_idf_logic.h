/* The ESP-IDF port's decisions, without ESP-IDF: which partition serves which role, what the
 * eFuse and bootloader answers make of the security posture, and what a running image pending
 * verification does next. port_idf.c asks ESP-IDF the questions (esp_partition_find,
 * esp_secure_boot_enabled, esp_ota_get_state_partition ...) and hands the answers here as plain
 * values, so the same functions run on the host in CTest (tests/unit/test_device_idf.c).
 *
 * Pure C: no OS or ESP-IDF header, no allocation; every function is reentrant. */
#ifndef FKD_IDF_LOGIC_H
#define FKD_IDF_LOGIC_H

#include "fkd/common.h"
#include "fkd/part.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- partitions ----------------------------------------------------------------------------
 * One partition as esp_partition_find() reports it (the esp_partition_t fields we use). */
struct fkd_idf_part {
    uint8_t type;
    uint8_t subtype;
    uint32_t address;
    uint32_t size;
    const char *label; /* NUL-terminated, at most FKD_PART_LABEL_MAX characters */
    int encrypted;     /* flash encryption applies to it (esp_partition_t.encrypted) */
};

/* Adds p to t, the library's view of the table (fkd/part.h), in the order ESP-IDF listed them.
 * Refuses what the library's own table reader refuses: FKD_OK; FKD_E_RANGE (t already holds
 * FKD_PART_MAX, or the partition wraps the 32-bit address space); FKD_E_PARSE (empty or too long
 * label, zero size, a data partition not 4 KiB aligned, an app partition not 64 KiB aligned,
 * a label already present, or an overlap with a partition already added). */
FKD_MUST_CHECK enum fkd_err fkd_idf_table_add(struct fkd_part_table *t,
                                              const struct fkd_idf_part *p);

/* What the library uses a partition for. */
enum fkd_idf_role {
    FKD_IDF_ROLE_NVS,      /* data/nvs: the credentials (label CONFIG_FLEETKEY_NVS_PARTITION) */
    FKD_IDF_ROLE_NVS_KEYS, /* data/nvs_keys: the XTS keys of that NVS */
    FKD_IDF_ROLE_OTADATA,  /* data/ota */
    FKD_IDF_ROLE_OTA_0,    /* app/ota_0 */
    FKD_IDF_ROLE_OTA_1,    /* app/ota_1 */
    FKD_IDF_ROLE_COUNT
};

/* The role's type and subtype, and the label the default partition table gives it ("nvs",
 * "nvs_keys", "otadata", "ota_0", "ota_1"). Out-of-range roles: NULL. */
const char *fkd_idf_role_label(enum fkd_idf_role role, uint8_t *type, uint8_t *subtype);

/* The partition serving role. label non-empty: the partition of that label, which must have
 * the role's type and subtype (else NULL and *why = FKD_E_TYPE: a table that names the wrong
 * kind of partition is a configuration error, never silently replaced by another); label NULL
 * or "": the first partition of the role's type and subtype. Not found: NULL, *why =
 * FKD_E_NOTFOUND. why may be NULL. */
const struct fkd_part *fkd_idf_part_lookup(const struct fkd_part_table *t, enum fkd_idf_role role,
                                           const char *label, enum fkd_err *why);

/* Index in t of the partition that wholly holds [addr, addr + len), or -1 (outside every
 * partition, across two of them, or addr + len wraps). The port's flash ops serve only what
 * lies inside a listed partition: the bootloader and the table itself stay out of reach. */
int fkd_idf_part_at(const struct fkd_part_table *t, uint32_t addr, size_t len);

/* ---- posture -------------------------------------------------------------------------------
 * The chip's answers. Each is 0 or 1. */
struct fkd_idf_hw {
    int secure_boot;        /* esp_secure_boot_enabled(): the eFuse, not the Kconfig option */
    int flash_encryption;   /* esp_flash_encryption_enabled() */
    int flash_enc_release;  /* esp_get_flash_encryption_mode() == ESP_FLASH_ENC_MODE_RELEASE */
    int jtag_disabled;      /* eFuse DIS_PAD_JTAG (ESP32: JTAG_DISABLE) */
    int download_protected; /* eFuse DIS_DOWNLOAD_MODE or ENABLE_SECURITY_DOWNLOAD */
    int nvs_keys_loaded;    /* the NVS was mounted with the XTS keys from nvs_keys */
};

/* What the answers say beyond the two posture flags; a bit set is one log line. */
enum {
    FKD_IDF_F_SECURE_BOOT_OFF = 1u << 0, /* eFuse: secure boot not enabled */
    FKD_IDF_F_SB_KCONFIG_ONLY = 1u << 1, /* sdkconfig claims secure boot, the eFuse does not */
    FKD_IDF_F_FLASH_ENC_OFF = 1u << 2,   /* nvs_keys (and the apps) lie in plaintext flash */
    FKD_IDF_F_FLASH_ENC_DEV = 1u << 3,   /* development mode: re-flashable over UART */
    FKD_IDF_F_JTAG_OPEN = 1u << 4,       /* a debugger can read RAM and the keys in it */
    FKD_IDF_F_DOWNLOAD_OPEN = 1u << 5,   /* UART download mode can read flash */
    FKD_IDF_F_NVS_PLAIN = 1u << 6,       /* NVS mounted without keys */
};
#define FKD_IDF_F_COUNT 7u

struct fkd_idf_posture {
    int secure_boot;   /* what fkd_config.secure_boot_v2 becomes: the secure-boot rule */
    int nvs_encrypted; /* what fkd_policy_input.nvs_encrypted becomes: the nvs-encrypted rule */
    unsigned findings; /* FKD_IDF_F_* */
};

/* Turns the chip's answers into the posture the policy (fkd/policy.h) evaluates:
 * - secure-boot holds when the eFuse says so; the sdkconfig flag alone proves nothing (an
 *   unsigned build can set it), so it only adds FKD_IDF_F_SB_KCONFIG_ONLY when it disagrees;
 * - nvs-encrypted holds when NVS was mounted with its keys AND flash encryption protects the
 *   nvs_keys partition (without it the XTS keys lie in plaintext beside the data they guard),
 *   and in a production build only in the release mode of flash encryption (development mode
 *   lets anyone with the UART flash a plaintext image that reads them).
 * kconfig_secure_boot: CONFIG_SECURE_BOOT_V2_ENABLED; production: CONFIG_PRODUCTION_BUILD. */
void fkd_idf_posture_eval(const struct fkd_idf_hw *hw, int kconfig_secure_boot, int production,
                          struct fkd_idf_posture *out);
/* One sentence per FKD_IDF_F_* bit (a single bit), for the log; never NULL. */
const char *fkd_idf_finding_text(unsigned bit);

/* ---- rollback ------------------------------------------------------------------------------
 * A running image that the bootloader left PENDING_VERIFY (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE)
 * confirms itself once the control plane welcomed it on the authenticated wss channel (the same
 * self-test robot-sim runs), else rolls back when the self-test time is up. */
struct fkd_idf_ota_in {
    uint32_t state;  /* esp_ota_get_state_partition(running): FKD_OTA_IMG_* (fkd/ota.h) */
    int state_known; /* 0: the call failed (no otadata entry: factory or first flash) */
    int welcomed;    /* the control plane answered hello with welcome */
    uint64_t since_boot_ms;
    uint32_t self_test_ms; /* CONFIG_FLEETKEY_SELF_TEST_TIMEOUT_MS */
    int rollback_possible; /* esp_ota_check_rollback_is_possible() */
};

enum fkd_idf_ota_action {
    FKD_IDF_OTA_NONE = 0,   /* nothing pending: the image is already valid (or untracked) */
    FKD_IDF_OTA_WAIT,       /* pending, self-test still running */
    FKD_IDF_OTA_MARK_VALID, /* esp_ota_mark_app_valid_cancel_rollback() */
    FKD_IDF_OTA_ROLLBACK,   /* esp_ota_mark_app_invalid_rollback_and_reboot() */
    FKD_IDF_OTA_KEEP,       /* self-test failed but no other image can boot: keep running */
};

enum fkd_idf_ota_action fkd_idf_ota_decide(const struct fkd_idf_ota_in *in);
const char *fkd_idf_ota_action_name(enum fkd_idf_ota_action a);

#ifdef __cplusplus
}
#endif
#endif
