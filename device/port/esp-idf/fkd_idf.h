/* The ESP-IDF port of the device library: what device/port/posix does on the host, done with
 * ESP-IDF's own APIs (docs/esp-idf.md).
 *
 * - flash: the library's flash ops (fkd/flash.h) over esp_partition_read/write/erase_range.
 *   Addresses stay absolute, as in the partition table, so every library function works
 *   unchanged; an access is served only when it lies wholly inside one partition ESP-IDF
 *   lists (the bootloader and the table itself are out of reach). With flash encryption on,
 *   ESP-IDF decrypts/encrypts the partitions flagged encrypted (otadata, the apps, nvs_keys).
 * - NVS: the library's own NVS runtime mounts the credentials partition (two-slot rotation
 *   writes that survive power loss); its XTS keys come from ESP-IDF's
 *   nvs_flash_read_security_cfg() on the nvs_keys partition. ESP-IDF's nvs_flash runtime is
 *   never initialised on the same partition (docs/esp-idf.md says why).
 * - posture: secure boot, flash encryption, JTAG and download mode read from the chip
 *   (esp_secure_boot_enabled, esp_flash_encryption_enabled, eFuse) into the policy's input.
 * - OTA: the running slot and its state from esp_ota_ops; confirmation with
 *   esp_ota_mark_app_valid_cancel_rollback, rollback with
 *   esp_ota_mark_app_invalid_rollback_and_reboot.
 * - log over ESP_LOGx (tag "fleetkey"), configuration from sdkconfig.h, esp_restart.
 * net_idf.c implements fkd/net.h over lwIP's BSD sockets, esp_timer and esp_fill_random.
 *
 * Thread safety: the flash and NVS belong to one task at a time, as on the host. */
#ifndef FKD_IDF_H
#define FKD_IDF_H

#include "fkd/common.h"
#include "fkd/config.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/part.h"
#include "fkd/policy.h"
#include "fkd_idf_logic.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The chip's partitions as the library sees them. Caller memory; lives as long as the flash. */
struct fkd_idf_flash {
    struct fkd_part_table parts;
    const void *esp[FKD_PART_MAX]; /* the esp_partition_t behind parts.part[i] */
};

/* Lists every partition (esp_partition_find, any type) into f->parts and wires *out to the
 * ops. FKD_OK; FKD_E_NOTFOUND (ESP-IDF lists none); fkd_idf_table_add's errors (logged with
 * the partition's label). */
FKD_MUST_CHECK enum fkd_err fkd_idf_flash_open(struct fkd_idf_flash *f, struct fkd_flash *out);

/* The partition serving role (CONFIG_FLEETKEY_NVS_PARTITION names the NVS; others by their
 * subtype); logs and returns NULL when it is missing or of the wrong kind. */
const struct fkd_part *fkd_idf_part(const struct fkd_idf_flash *f, enum fkd_idf_role role);

/* Mounts the credentials NVS with the library's runtime. want_encrypted (CONFIG_NVS_ENCRYPTION):
 * the XTS keys are read with nvs_flash_read_security_cfg() from the nvs_keys partition, and
 * without them the NVS is not mounted (it could not be read). *with_keys: mounted encrypted.
 * The keys are wiped before return. FKD_OK; FKD_E_NOTFOUND (no NVS or no keys); the mount's
 * errors. */
FKD_MUST_CHECK enum fkd_err fkd_idf_nvs_mount(const struct fkd_idf_flash *f,
                                              const struct fkd_flash *flash, struct fkd_nvs *nvs,
                                              int want_encrypted, int *with_keys);

/* Fills c from sdkconfig.h (CONFIG_MINITRAIN_*, CONFIG_PRODUCTION_BUILD, and in development
 * builds the CONFIG_WIFI_* fallback). On the chip there is no environment: MINITRAIN_*
 * overrides do not exist. FKD_OK or FKD_E_RANGE (a value longer than its field: the build's
 * sdkconfig is wrong). */
FKD_MUST_CHECK enum fkd_err fkd_idf_config_load(struct fkd_config *c);

/* Asks the chip (fkd_idf_hw) and turns the answers into the posture the policy evaluates:
 * cfg->secure_boot_v2 and *nvs_encrypted are overwritten with what the chip says (rules in
 * fkd_idf_logic.h); every finding is one log line, ERROR in a production build. Returns the
 * findings (FKD_IDF_F_*). */
unsigned fkd_idf_posture_apply(struct fkd_config *cfg, int nvs_keys_loaded, int *nvs_encrypted);

/* The running image as the bootloader chose it (esp_ota_get_running_partition,
 * esp_ota_get_state_partition; b->state FKD_OTA_IMG_UNDEFINED when ESP-IDF has no entry for
 * it; b->entry always -1: the otadata entries are ESP-IDF's), its app description read
 * through the library's image check.
 * b is what fkd_ota_remote_config.running borrows. FKD_OK; FKD_E_NOTFOUND (not running from
 * ota_0/ota_1); the image check's errors. */
FKD_MUST_CHECK enum fkd_err fkd_idf_ota_running(const struct fkd_idf_flash *f,
                                                struct fkd_ota_boot *b);
/* One step of the self-test of a running image pending verification (fkd_idf_ota_decide),
 * b from fkd_idf_ota_running: MARK_VALID calls esp_ota_mark_app_valid_cancel_rollback(), sets
 * b->state VALID and commits the image's secure_version to NVS ota/secver (fkd_ota_mark_valid;
 * never lowered; nvs may be NULL); ROLLBACK calls esp_ota_mark_app_invalid_rollback_and_reboot()
 * (it does not return when it works); KEEP logs. ROLLBACK and KEEP are final: the caller stops
 * stepping. Returns what was decided (WAIT when the confirmation call failed: step again). */
enum fkd_idf_ota_action fkd_idf_ota_step(const struct fkd_idf_flash *f,
                                         const struct fkd_flash *flash, struct fkd_ota_boot *b,
                                         struct fkd_nvs *nvs, int welcomed, uint64_t since_boot_ms);
/* After fkd_ota_finish switched otadata itself: FKD_OK when ESP-IDF's own reader
 * (esp_ota_get_boot_partition) agrees that the next boot runs target, else FKD_E_STATE. */
FKD_MUST_CHECK enum fkd_err fkd_idf_ota_check_switch(const struct fkd_part *target);

/* fkd_log_fn over ESP_LOGx with the tag "fleetkey"; user unused. */
void fkd_idf_log(void *user, enum fkd_log_level lvl, const char *line);
/* esp_restart(); does not return. */
void fkd_idf_restart(void);

#ifdef __cplusplus
}
#endif
#endif
