/* robot-sim: what several commands do with a struct robot_sim (robot_sim.h). The boot in
 * main.c, `robot-sim ota` (ota_cmd.c) and `robot-sim nvs` (nvs_cmd.c) each open a flash and
 * mount its NVS the same way; the step lives here, below all of them, so none of them calls
 * into another. */
#include "robot_sim.h"

#include "fkd/portal.h"

#include <stdio.h>

_Thread_local const struct robot_sim *robot_sim_self;

void robot_sim_mount_nvs(struct robot_sim *r, int want_encrypted, int require_keys, int readonly) {
    const struct fkd_part *np = fkd_part_find(&r->parts, FKD_PART_DATA, FKD_PART_SUB_NVS, NULL);
    const struct fkd_part *kp =
        fkd_part_find(&r->parts, FKD_PART_DATA, FKD_PART_SUB_NVS_KEYS, NULL);
    uint8_t key[FKD_NVS_XTS_KEY_LEN];
    enum fkd_err krc = FKD_E_NOTFOUND;
    r->nvs_mounted = 0;
    r->nvs_encrypted = 0;
    if (np == NULL) {
        fkd_log(FKD_LOG_ERROR, "boot: no data/nvs partition in the partition table");
        return;
    }
    if (kp != NULL) {
        uint8_t kbuf[FKD_NVS_KEYS_PART_MIN];
        krc = fkd_flash_read(&r->flash, kp->offset, kbuf, sizeof kbuf);
        if (krc == FKD_OK) {
            krc = fkd_nvs_keys_parse(kbuf, sizeof kbuf, key);
        }
        fkd_wipe(kbuf, sizeof kbuf);
    }
    if (want_encrypted && krc != FKD_OK) {
        if (kp == NULL) {
            fkd_log(FKD_LOG_ERROR, "boot: CONFIG_NVS_ENCRYPTION is set but there is no "
                                   "nvs_keys partition");
        } else {
            fkd_log(FKD_LOG_ERROR,
                    "boot: CONFIG_NVS_ENCRYPTION is set but nvs_keys '%s' holds "
                    "no usable keys (%s)",
                    kp->label, krc == FKD_E_NOTFOUND ? "blank" : fkd_strerror(krc));
        }
        if (require_keys) {
            fkd_log(FKD_LOG_ERROR, "boot: NVS not mounted: it cannot be read without its keys");
            return;
        }
    }
    if (!want_encrypted && krc == FKD_OK) {
        fkd_log(FKD_LOG_WARN, "boot: nvs_keys holds keys but CONFIG_NVS_ENCRYPTION is not set: "
                              "mounting NVS unencrypted");
    }
    int enc = want_encrypted && krc == FKD_OK;
    struct fkd_nvs_stats st;
    fkd_nvs_init(&r->nvs);
    enum fkd_err rc =
        readonly ? fkd_nvs_mount_readonly(&r->nvs, &r->flash, np->offset, np->size,
                                          enc ? key : NULL, &st)
                 : fkd_nvs_mount(&r->nvs, &r->flash, np->offset, np->size, enc ? key : NULL, &st);
    fkd_wipe(key, sizeof key);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "boot: NVS partition '%s' at 0x%x: mount failed: %s", np->label,
                (unsigned)np->offset, fkd_strerror(rc));
        return;
    }
    if (st.repaired > 0) {
        fkd_log(FKD_LOG_WARN, "boot: NVS: %s %u entries/pages left by an interrupted write%s",
                readonly ? "would repair" : "repaired", st.repaired,
                readonly ? " (read-only: flash left as it is)" : "");
    }
    fkd_log(FKD_LOG_INFO, "boot: NVS '%s' at 0x%x+0x%x mounted %s: %u pages in use, %u free",
            np->label, (unsigned)np->offset, (unsigned)np->size,
            enc ? "encrypted (AES-XTS, keys from nvs_keys)" : "unencrypted",
            st.pages_active + st.pages_full, st.pages_free);
    r->nvs_mounted = 1;
    r->nvs_encrypted = enc;
}

int robot_sim_boot_core(struct robot_sim *rs, const char *sdk, size_t sdk_len,
                        const char *sdk_name) {
    enum fkd_err rc = fkd_part_load(&rs->flash, &rs->parts);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: no valid partition table at 0x8000 (%s)\n", rs->flash_path,
                fkd_strerror(rc));
        return 2;
    }
    struct fkd_cfg_diag diag = {0, ""};
    rc = fkd_config_parse(&rs->cfg, sdk, sdk_len, &diag);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s:%u: %s\n", sdk_name, diag.line, diag.msg);
        return 2;
    }
    rc = fkd_config_apply_env(&rs->cfg, fkd_posix_getenv, NULL);
    if (rc != FKD_OK) {
        return 2;
    }
    if (rs->opt_cut_at > 0) {
        /* Fault injection: counted from here, so the boot's own repairs are writes too. */
        fkd_flash_mem_cut(&rs->file.mem, rs->opt_cut_at, rs->opt_cut_torn);
    }
    fkd_log(FKD_LOG_INFO, "boot: %s build, flash %s (%u bytes), %u partitions",
            rs->cfg.production_build ? "production" : "development", rs->flash_path,
            (unsigned)rs->flash.size, rs->parts.count);
    robot_sim_mount_nvs(rs, rs->cfg.nvs_encryption, 1, 0);
    /* Credential rotation: which slot each class uses, finishing what a power cut left. */
    fkd_rot_init(&rs->rot);
    if (rs->nvs_mounted) {
        rc = fkd_rot_load(&rs->rot, &rs->nvs, (unsigned)rs->opt_rot_attempts, rs->opt_rot_trial_ms);
        rs->rot_loaded = rc == FKD_OK;
        if (rc != FKD_OK) {
            fkd_log(FKD_LOG_ERROR, "boot: rotation records: %s (repaired at the next boot)",
                    fkd_strerror(rc));
        }
    }
    /* Wi-Fi re-provisioning (issue 17): finish a save a power cut interrupted, before the
     * store reads wifi/ssid and wifi/password. */
    if (rs->nvs_mounted && fkd_wifi_recover(&rs->nvs) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "boot: wifi journal not applied (retried at the next boot)");
    }
    if (rs->file.mem.dead) {
        return ROBOT_SIM_POWER_CUT;
    }
    rc = fkd_store_load_rot(&rs->store, rs->nvs_mounted ? &rs->nvs : NULL, &rs->cfg,
                            rs->rot_loaded ? &rs->rot : NULL);
    if (rc != FKD_OK) {
        return 4;
    }
    struct fkd_policy_input in = {&rs->store, &rs->cfg, rs->nvs_encrypted};
    fkd_policy_evaluate(&in, &rs->posture);
    return 0;
}
