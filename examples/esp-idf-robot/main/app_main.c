/* examples/esp-idf-robot: a minimal robot on the fleetkey component (docs/esp-idf.md).
 *
 * Boot: the partitions ESP-IDF lists -> the credentials NVS (keys from nvs_keys when
 * CONFIG_NVS_ENCRYPTION) -> credential store -> the chip's posture (secure boot, flash
 * encryption, JTAG, download mode) -> policy. A production build whose policy refuses the boot
 * stops here, and so does every build whose NVS cannot be read. Then Wi-Fi (credentials from
 * NVS; development builds may fall back to CONFIG_WIFI_*), the wss mTLS channel to the control
 * plane in a task of its own (it serves OTA updates: fkd/ota_remote.h), and the DTLS-PSK control
 * listener in app_main's task, which also runs the OTA self-test: a new image confirms itself
 * once the control plane welcomed it, else rolls back.
 *
 * Memory: every context is static (no heap of ours); Mbed TLS allocates its record buffers
 * (CONFIG_MBEDTLS_SSL_IN/OUT_CONTENT_LEN) per session from the heap. */
#include "fkd/common.h"
#include "fkd/config.h"
#include "fkd/ctl.h"
#include "fkd/net.h"
#include "fkd/ota_remote.h"
#include "fkd/policy.h"
#include "fkd/store.h"
#include "fkd/wss.h"
#include "fkd_idf.h"

#include "sdkconfig.h"

#include "esp_event.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"

#include <string.h>

#define FW_VERSION "esp-idf-robot 0.1.0"
#define WSS_TASK_STACK 8192

struct robot {
    struct fkd_idf_flash parts;
    struct fkd_flash flash;
    struct fkd_nvs nvs;
    int nvs_mounted;
    struct fkd_config cfg;
    struct fkd_store store;
    struct fkd_posture posture;
    struct fkd_ota_boot running;
    int running_known;
    struct fkd_ota_remote ota;
    struct fkd_wss_handler handler;
    struct fkd_wss wss;
    struct fkd_ctl ctl;
    struct fkd_ctl_session sessions[CONFIG_FLEETKEY_CTL_SESSIONS];
    uint8_t rx[FKD_CTL_RX_MAX];
    SemaphoreHandle_t ota_lock; /* the self-test runs on both tasks: one decision at a time */
    volatile int reboot;        /* an update was installed: restart into it */
    uint64_t booted_ms;
};

static struct robot robot;

/* ---- boot ---------------------------------------------------------------------------------- */

static int boot(struct robot *r) {
    enum fkd_err rc = fkd_idf_config_load(&r->cfg);
    if (rc != FKD_OK) {
        return -1;
    }
    rc = fkd_idf_flash_open(&r->parts, &r->flash);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "boot: partitions: %s", fkd_strerror(rc));
        return -1;
    }
    int with_keys = 0;
    rc = fkd_idf_nvs_mount(&r->parts, &r->flash, &r->nvs, r->cfg.nvs_encryption, &with_keys);
    r->nvs_mounted = rc == FKD_OK;
    if (!r->nvs_mounted) {
        fkd_log(FKD_LOG_ERROR, "boot: NVS not mounted: %s", fkd_strerror(rc));
    }
    rc = fkd_store_load(&r->store, r->nvs_mounted ? &r->nvs : NULL, &r->cfg);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "boot: credential store: %s", fkd_strerror(rc));
        return -1;
    }
    int nvs_encrypted = 0;
    (void)fkd_idf_posture_apply(&r->cfg, with_keys, &nvs_encrypted);
    struct fkd_policy_input in = {&r->store, &r->cfg, nvs_encrypted};
    fkd_policy_evaluate(&in, &r->posture);
    if (!r->posture.boot_allowed) {
        fkd_log(FKD_LOG_ERROR, "boot: refused by policy rule %s",
                fkd_rule_name(r->posture.refused_by));
        return -1;
    }
    r->running_known = fkd_idf_ota_running(&r->parts, &r->running) == FKD_OK;
    return 0;
}

/* ---- Wi-Fi --------------------------------------------------------------------------------- */

static void on_wifi(void *arg, esp_event_base_t base, int32_t id, void *data) {
    (void)arg;
    (void)data;
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
        (void)esp_wifi_connect(); /* the driver retries; the wss client backs off meanwhile */
    }
}

static int wifi_start(struct robot *r) {
    const uint8_t *ssid = NULL;
    const uint8_t *pass = NULL;
    size_t ssid_len = 0;
    size_t pass_len = 0;
    if (r->posture.wifi == FKD_WIFI_OFF ||
        fkd_store_get(&r->store, FKD_CRED_WIFI_SSID, &ssid, &ssid_len) != FKD_OK ||
        fkd_store_get(&r->store, FKD_CRED_WIFI_PASSWORD, &pass, &pass_len) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wifi: no usable credentials (policy: %s)",
                fkd_wifi_mode_name(r->posture.wifi));
        return -1;
    }
    wifi_config_t wc;
    memset(&wc, 0, sizeof wc);
    if (ssid_len >= sizeof wc.sta.ssid || pass_len >= sizeof wc.sta.password) {
        return -1;
    }
    memcpy(wc.sta.ssid, ssid, ssid_len);
    memcpy(wc.sta.password, pass, pass_len);
    wc.sta.threshold.authmode = WIFI_AUTH_WPA2_PSK;
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    int ok = esp_netif_init() == ESP_OK && esp_event_loop_create_default() == ESP_OK &&
             esp_netif_create_default_wifi_sta() != NULL && esp_wifi_init(&init) == ESP_OK &&
             esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi, NULL) == ESP_OK &&
             esp_wifi_set_storage(WIFI_STORAGE_RAM) == ESP_OK && /* nothing into nvs_flash */
             esp_wifi_set_mode(WIFI_MODE_STA) == ESP_OK &&
             esp_wifi_set_config(WIFI_IF_STA, &wc) == ESP_OK && esp_wifi_start() == ESP_OK;
    fkd_wipe(&wc, sizeof wc);
    fkd_log(ok ? FKD_LOG_INFO : FKD_LOG_ERROR, "wifi: %s (%s)", ok ? "started" : "failed",
            fkd_wifi_mode_name(r->posture.wifi));
    return ok ? 0 : -1;
}

/* ---- wss channel --------------------------------------------------------------------------- */

/* One self-test step under the lock. welcomed: called from the welcome on the wss task, the
 * only task that writes NVS (the confirmation commits ota/secver there, as the OTA handler
 * does its writes); app_main's task only times out and rolls back, which writes no NVS. */
static enum fkd_idf_ota_action self_test(struct robot *r, int welcomed) {
    xSemaphoreTake(r->ota_lock, portMAX_DELAY);
    enum fkd_idf_ota_action a =
        fkd_idf_ota_step(&r->parts, &r->flash, &r->running, r->nvs_mounted ? &r->nvs : NULL,
                         welcomed, fkd_net_now_ms() - r->booted_ms);
    xSemaphoreGive(r->ota_lock);
    return a;
}

/* The control plane welcomed this image: the OTA self-test passes. It replaces
 * fkd_ota_remote_welcomed, whose otadata writer ESP-IDF's esp_ota_ops stands in for here. The
 * handler's user is the OTA context, so the robot is the one static instance. */
static void on_welcome(void *user) {
    (void)user;
    if (robot.running_known) {
        (void)self_test(&robot, 1);
    }
}

static int wss_stop(void *user) {
    const struct robot *r = user;
    return r->reboot;
}

static void wss_task(void *arg) {
    struct robot *r = arg;
    for (;;) {
        enum fkd_wss_reason why = fkd_wss_run(&r->wss);
        if (why == FKD_WSS_R_REBOOT) {
            r->reboot = 1; /* an update was installed and switched to */
            break;
        }
        fkd_net_sleep_ms(1000);
    }
    vTaskDelete(NULL);
}

static int wss_start(struct robot *r) {
    const uint8_t *k1 = NULL;
    const uint8_t *k2 = NULL;
    size_t k1_len = 0;
    size_t k2_len = 0;
    if (fkd_store_get(&r->store, FKD_CRED_OTA_PUBKEY, &k1, &k1_len) != FKD_OK) {
        k1 = NULL;
        k1_len = 0;
    }
    if (fkd_store_get(&r->store, FKD_CRED_OTA_PUBKEY2, &k2, &k2_len) != FKD_OK) {
        k2 = NULL;
        k2_len = 0;
    }
    struct fkd_ota_remote_config oc = {&r->flash,
                                       &r->parts.parts,
                                       r->nvs_mounted ? &r->nvs : NULL,
                                       r->running_known ? &r->running : NULL,
                                       k1,
                                       k1_len,
                                       k2,
                                       k2_len};
    fkd_ota_remote_init(&r->ota);
    if (fkd_ota_remote_setup(&r->ota, &oc) != FKD_OK) {
        return -1;
    }
    r->handler = fkd_ota_remote_handler;
    r->handler.welcomed = on_welcome;
    struct fkd_wss_config wc;
    memset(&wc, 0, sizeof wc);
    wc.store = &r->store;
    wc.cfg = &r->cfg;
    wc.posture = &r->posture;
    wc.fw_version = r->running_known ? r->running.app.version : FW_VERSION;
    wc.stop = wss_stop;
    wc.user = r;
    wc.handler = &r->handler;
    wc.handler_user = &r->ota; /* fkd_ota_remote_handler's callbacks take the OTA context */
    fkd_wss_init(&r->wss);
    if (fkd_wss_setup(&r->wss, &wc) != FKD_OK) {
        return -1;
    }
    return xTaskCreate(wss_task, "fkd_wss", WSS_TASK_STACK, r, 5, NULL) == pdPASS ? 0 : -1;
}

/* ---- DTLS control listener ------------------------------------------------------------------ */

static void ctl_log(void *user, enum fkd_ctl_level lvl, const char *line) {
    (void)user;
    static const enum fkd_log_level map[] = {FKD_LOG_DEBUG, FKD_LOG_INFO, FKD_LOG_WARN,
                                             FKD_LOG_ERROR};
    fkd_log(map[lvl], "%s", line);
}

static int ctl_start(struct robot *r) {
    struct fkd_ctl_config cc;
    memset(&cc, 0, sizeof cc);
    cc.port = r->posture.dtls_port;
    cc.fw_version = r->running_known ? r->running.app.version : FW_VERSION;
    cc.log = ctl_log;
    cc.user = r;
    fkd_ctl_init(&r->ctl);
    if (r->posture.listener == FKD_LISTENER_REFUSED) {
        fkd_log(FKD_LOG_ERROR, "ctl: not started (policy: dtls-required)");
        return -1;
    }
    if (r->posture.listener == FKD_LISTENER_DTLS) {
        const uint8_t *psk = NULL;
        const char *id = NULL;
        if (fkd_store_psk(&r->store, &psk, &id) != FKD_OK ||
            fkd_ctl_set_psk(&r->ctl, FKD_CTL_SLOT_CURRENT, (const uint8_t *)id, strlen(id), psk,
                            FKD_PSK_LEN, 1) != FKD_CTL_OK) {
            return -1;
        }
        cc.mode = FKD_CTL_MODE_DTLS;
    } else {
        fkd_log(FKD_LOG_ERROR, "ctl: no valid DTLS PSK: control channel runs UNENCRYPTED "
                               "(development build only)");
        cc.mode = FKD_CTL_MODE_PLAINTEXT;
    }
    int rc =
        fkd_ctl_setup(&r->ctl, &cc, r->sessions, CONFIG_FLEETKEY_CTL_SESSIONS, r->rx, sizeof r->rx);
    if (rc != FKD_CTL_OK) {
        fkd_log(FKD_LOG_ERROR, "ctl: %s", fkd_ctl_strerror(rc));
        return -1;
    }
    fkd_log(FKD_LOG_INFO, "ctl: listening on udp port %u", (unsigned)fkd_ctl_port(&r->ctl));
    return 0;
}

void app_main(void) {
    struct robot *r = &robot;
    fkd_log_set(fkd_idf_log, NULL, FKD_LOG_INFO);
    fkd_store_init(&r->store);
    r->booted_ms = fkd_net_now_ms();
    r->ota_lock = xSemaphoreCreateMutex();
    if (r->ota_lock == NULL || boot(r) != 0) {
        fkd_log(FKD_LOG_ERROR, "boot: stopped; the robot stays offline until re-provisioned");
        return; /* the idle task keeps the chip up: the log says why over the console */
    }
    int online = wifi_start(r) == 0 && wss_start(r) == 0;
    int listening = ctl_start(r) == 0;
    int testing = r->running_known;
    for (;;) {
        if (listening && fkd_ctl_poll(&r->ctl, 200) < 0) {
            fkd_log(FKD_LOG_ERROR, "ctl: socket failed");
            listening = 0;
        } else if (!listening) {
            fkd_net_sleep_ms(200);
        }
        if (testing) {
            /* NONE once the welcome confirmed it; ROLLBACK reboots; KEEP is final. */
            testing = self_test(r, 0) == FKD_IDF_OTA_WAIT;
        }
        if (online && r->reboot) {
            fkd_log(FKD_LOG_INFO, "ota: update installed, restarting");
            fkd_ctl_free(&r->ctl);
            fkd_idf_restart();
        }
    }
}
