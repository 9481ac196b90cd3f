/* robot-sim OTA: boot-time slot selection, self-test, and `robot-sim ota` (ota_cmd.h).
 *
 * Everything here goes through the device library (fkd/ota.h) exactly as firmware would: the
 * image file is read in chunks and each chunk handed to fkd_ota_write, so the factory path
 * and a network transport share one code path. The trusted keys are the store's
 * security/ota_pubkey and security/ota_pubkey2 (DER SPKI from NVS). */
#include "ota_cmd.h"

#include "fkd/efuse.h"
#include "fkd/ota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The trusted keys of the store; count 0 when none is valid (updates disabled). */
static void store_keys(const struct fkd_store *s, struct fkd_sbv2_keys *ks) {
    static const enum fkd_cred ids[2] = {FKD_CRED_OTA_PUBKEY, FKD_CRED_OTA_PUBKEY2};
    fkd_sbv2_keys_init(ks);
    for (int i = 0; i < 2; i++) {
        const uint8_t *der = NULL;
        size_t len = 0;
        if (fkd_store_get(s, ids[i], &der, &len) != FKD_OK) {
            continue;
        }
        enum fkd_err rc = fkd_sbv2_keys_add(ks, der, len);
        if (rc != FKD_OK) {
            fkd_log(FKD_LOG_ERROR,
                    "ota: %s is not a usable Secure Boot V2 key (%s): not "
                    "trusted",
                    fkd_cred_name(ids[i]), fkd_strerror(rc));
        }
    }
}

/* The virtual eFuse beside the flash image (FLASH.efuse, fkd/efuse.h): its Secure Boot key
 * digests (burned, not revoked, readable) go into *ks. Returns 1 when some key block has a
 * SECURE_BOOT_DIGEST purpose (secure boot keyed), 0 when not (no file, nothing burned), -1 when
 * the file is there but unreadable (said on stderr). */
static int efuse_keys(const struct robot_sim *rs, struct fkd_sbv2_keys *ks) {
    char path[4096];
    uint8_t buf[FKD_EFUSE_FILE_LEN + 1];
    uint8_t dg[FKD_EFUSE_SB_DIGESTS][32];
    struct fkd_efuse e;
    size_t len = 0;
    fkd_sbv2_keys_init(ks);
    if (rs->flash_path == NULL || rs->name != NULL ||
        (size_t)snprintf(path, sizeof path, "%s.efuse", rs->flash_path) >= sizeof path) {
        return 0; /* a fleet's in-memory robots have no eFuse file */
    }
    if (access(path, F_OK) != 0) {
        return 0; /* no eFuse file: nothing burned, as on a fresh chip */
    }
    enum fkd_err rc = fkd_posix_read_file(path, buf, sizeof buf, &len);
    if (rc == FKD_OK) {
        rc = fkd_efuse_parse(buf, len, &e);
    }
    if (rc != FKD_OK) {
        fprintf(stderr,
                "robot-sim: %s: not a virtual eFuse file (%s; expected %u bytes, see "
                "docs/formats.md)\n",
                path, fkd_strerror(rc), FKD_EFUSE_FILE_LEN);
        return -1;
    }
    unsigned burned = 0;
    for (unsigned k = 0; k < FKD_EFUSE_KEY_BLOCKS; k++) {
        unsigned p = fkd_efuse_key_purpose(&e, k);
        burned += p >= FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0 &&
                  p <= FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST2;
    }
    unsigned n = fkd_efuse_sb_digests(&e, dg);
    for (unsigned i = 0; i < n; i++) {
        if (fkd_sbv2_keys_add_digest(ks, dg[i]) != FKD_OK) {
            return -1;
        }
    }
    if (burned > 0) {
        /* Once a digest is burned the chip is secure-boot keyed for good: revoking every
         * digest leaves nothing it trusts, not a chip without secure boot. */
        fkd_log(n > 0 ? FKD_LOG_INFO : FKD_LOG_ERROR,
                "boot: eFuse %s: %u Secure Boot key digest(s) burned, %u trusted", path, burned,
                n);
    }
    return burned > 0 ? 1 : 0;
}

/* A development build's bootloader runs what it finds, and says what production would refuse. */
static void efuse_warn(struct robot_sim *rs, const struct fkd_sbv2_keys *efk) {
    const struct fkd_ota_boot *b = &rs->ota.running;
    struct fkd_app_info app;
    if (b->slot < 0 || b->part == NULL) {
        return;
    }
    if (fkd_ota_slot_verify(&rs->flash, b->part, efk, &app, NULL) != FKD_OK) {
        fkd_log(FKD_LOG_WARN,
                "secure boot (development build): %s is not signed by a key whose "
                "digest is burned in eFuse; a production build refuses it",
                b->part->label);
    }
}

int robot_sim_ota_boot(struct robot_sim *rs, int text) {
    struct fkd_sbv2_keys ks, efk;
    store_keys(&rs->store, &ks);
    /* Secure Boot V2: the bootloader runs only signed images. With key digests burned in the
     * eFuse, those are what it trusts (the ROM's check), enforced in production builds. */
    int efuse = efuse_keys(rs, &efk);
    if (efuse < 0) {
        return 2;
    }
    const struct fkd_sbv2_keys *verify = rs->cfg.secure_boot_v2 ? &ks : NULL;
    if (efuse > 0) {
        verify = rs->cfg.production_build ? &efk : NULL;
    }
    uint32_t secver = fkd_ota_committed_secver(rs->nvs_mounted ? &rs->nvs : NULL);
    enum fkd_err rc = fkd_ota_boot_select(&rs->flash, &rs->parts, verify, secver, &rs->ota.running);
    if (rc == FKD_E_NOTFOUND) {
        fkd_log(FKD_LOG_WARN, "boot: no otadata/ota_0 partition: no app image is run");
        rs->ota.booted = 0;
        return 0;
    }
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "boot: otadata: %s", fkd_strerror(rc));
        return 4;
    }
    rs->ota.booted = 1;
    const struct fkd_app_info *a = &rs->ota.running.app;
    if (efuse > 0 && !rs->cfg.production_build) {
        efuse_warn(rs, &efk);
    }
    if (rs->ota.running.slot < 0 && efuse > 0 && rs->cfg.production_build) {
        printf("running: none: secure boot refused every app image (no valid signature by a "
               "key whose digest is burned in eFuse)\n");
        fflush(stdout);
        fkd_log(FKD_LOG_ERROR, "boot: refused by secure boot: no app image in ota_0/ota_1 is "
                               "signed by a key whose digest is burned in eFuse");
        return 3;
    }
    if (rs->ota.running.slot < 0) {
        if (text) {
            printf("running: none (no bootable app image in ota_0/ota_1)\n");
        }
        fkd_log(FKD_LOG_WARN, "boot: no bootable app image in ota_0/ota_1");
        return 0;
    }
    const char *state = rs->ota.running.entry >= 0 ? fkd_ota_img_state_name(rs->ota.running.state)
                                                   : "first boot (no otadata entry)";
    if (text) {
        printf("running: %s at 0x%x\n", rs->ota.running.part->label,
               (unsigned)rs->ota.running.part->offset);
        printf("app: %s %s, secure_version %u, built %s %s\n", a->project_name, a->version,
               (unsigned)a->secure_version, a->date, a->time);
        printf("app state: %s%s\n", state, rs->ota.running.rolled_back ? " (rolled back)" : "");
        printf("app signature: %s\n",
               rs->ota.running.signature_checked ? "verified" : "not checked");
    }
    fkd_log(FKD_LOG_INFO, "boot: running %s: %s %s (secure_version %u, %s)%s",
            rs->ota.running.part->label, a->project_name, a->version, (unsigned)a->secure_version,
            state, rs->ota.running.rolled_back ? ", after a rollback" : "");
    return 0;
}

int robot_sim_ota_self_test(struct robot_sim *rs, const char *verdict) {
    if (verdict == NULL) {
        if (rs->ota.booted && rs->ota.running.slot >= 0 &&
            rs->ota.running.state == FKD_OTA_IMG_PENDING_VERIFY) {
            fkd_log(FKD_LOG_WARN,
                    "ota: %s not confirmed yet: it is rolled back at the next "
                    "boot unless it passes its self-test",
                    rs->ota.running.part->label);
        }
        return 0;
    }
    if (strcmp(verdict, "pass") != 0 && strcmp(verdict, "fail") != 0) {
        fprintf(stderr, "robot-sim: --self-test %s: expected pass or fail\n", verdict);
        return 2;
    }
    if (!rs->ota.booted || rs->ota.running.slot < 0) {
        fkd_log(FKD_LOG_WARN, "ota: no running app image: --self-test %s ignored", verdict);
        return 0;
    }
    enum fkd_err rc;
    if (strcmp(verdict, "pass") == 0) {
        rc = fkd_ota_mark_valid(&rs->flash, &rs->parts, rs->nvs_mounted ? &rs->nvs : NULL,
                                &rs->ota.running);
        if (rc == FKD_OK) {
            printf("self-test: pass: %s %s marked valid\n", rs->ota.running.part->label,
                   rs->ota.running.app.version);
        }
    } else {
        rc = fkd_ota_mark_invalid(&rs->flash, &rs->parts, &rs->ota.running);
        if (rc == FKD_OK) {
            printf("self-test: fail: %s %s marked invalid; rolling back at the next boot\n",
                   rs->ota.running.part->label, rs->ota.running.app.version);
        } else if (rc == FKD_E_STATE) {
            printf("self-test: fail: nothing to roll back to\n");
            return 5;
        }
    }
    fflush(stdout);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "ota: self-test %s: %s", verdict, fkd_strerror(rc));
        return 4;
    }
    return 0;
}

int robot_sim_ota_confirm(struct robot_sim *rs) {
    if (!robot_sim_ota_pending(rs)) {
        return 0; /* already valid (or nothing runs): nothing to confirm */
    }
    fkd_log(FKD_LOG_INFO, "ota: self-test: %s reached the control plane (welcomed)",
            rs->ota.running.part->label);
    return robot_sim_ota_self_test(rs, "pass");
}

int robot_sim_ota_pending(const struct robot_sim *rs) {
    return rs->ota.booted && rs->ota.running.slot >= 0 && rs->ota.running.entry >= 0 &&
           rs->ota.running.state == FKD_OTA_IMG_PENDING_VERIFY;
}

struct fkd_ota_boot *robot_sim_ota_running(struct robot_sim *rs) {
    return rs->ota.booted ? &rs->ota.running : NULL;
}

int robot_sim_ota_rollback(struct robot_sim *rs) {
    if (!robot_sim_ota_pending(rs)) {
        return 0;
    }
    enum fkd_err rc = fkd_ota_mark_invalid(&rs->flash, &rs->parts, &rs->ota.running);
    if (rc == FKD_E_STATE) {
        return 5;
    }
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "ota: rollback: %s", fkd_strerror(rc));
        return 4;
    }
    return 0;
}

/* ---- robot-sim ota ------------------------------------------------------------------------ */
#define SDKCONFIG_MAX (512u * 1024u)
#define CHUNK_MAX (64u * 1024u)

static struct robot_sim ors;
static uint8_t cfg_buf[SDKCONFIG_MAX];
static uint8_t chunk_buf[CHUNK_MAX];
static struct fkd_ota_update upd;

static void ota_usage(FILE *f) {
    fputs("usage: robot-sim ota --flash FILE --sdkconfig FILE --image SIGNED.bin\n"
          "                     [--chunk N] [--cut-after N [--torn]] [--verbose|--quiet]\n"
          "  streams a signed app image into the inactive ota_N slot through the device's\n"
          "  update API (N-byte chunks, default 4096); the next boot runs it pending\n"
          "  verification (--self-test pass|fail on that boot)\n"
          "  exit: 0 installed, 2 usage, 3 boot refused, 4 flash error, 5 refused, 6 power cut\n",
          f);
}

static int parse_ulong(const char *v, unsigned long *out) {
    char *end = NULL;
    if (v == NULL || *v == '\0' || *v == '-') {
        return 0;
    }
    *out = strtoul(v, &end, 0);
    return *end == '\0' && *out > 0;
}

static int map_rc(enum fkd_err rc) {
    switch (rc) {
    case FKD_OK:
        return 0;
    case FKD_E_POWERCUT:
        return 6;
    case FKD_E_IO:
        return 4;
    default:
        return 5;
    }
}

int robot_sim_ota(int argc, char **argv) {
    const char *sdkconfig = NULL, *image = NULL;
    unsigned long chunk = 4096, cut = 0;
    int torn = 0;
    enum fkd_log_level lvl = FKD_LOG_INFO;
    int code = 2;
    FILE *in = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--torn") == 0) {
            torn = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            lvl = FKD_LOG_DEBUG;
        } else if (strcmp(a, "--quiet") == 0) {
            lvl = FKD_LOG_WARN;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            ota_usage(stdout);
            return 0;
        } else if (v == NULL) {
            fprintf(stderr, "robot-sim: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "--flash") == 0) {
            ors.flash_path = argv[++i];
        } else if (strcmp(a, "--sdkconfig") == 0) {
            sdkconfig = argv[++i];
        } else if (strcmp(a, "--image") == 0) {
            image = argv[++i];
        } else if (strcmp(a, "--chunk") == 0) {
            if (!parse_ulong(argv[++i], &chunk) || chunk > CHUNK_MAX) {
                fprintf(stderr, "robot-sim: --chunk %s: expected 1..%u\n", v, CHUNK_MAX);
                return 2;
            }
        } else if (strcmp(a, "--cut-after") == 0) {
            if (!parse_ulong(argv[++i], &cut)) {
                fprintf(stderr, "robot-sim: --cut-after %s: expected a positive number\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "robot-sim: unknown option %s\n", a);
            return 2;
        }
    }
    if (ors.flash_path == NULL || sdkconfig == NULL || image == NULL) {
        ota_usage(stderr);
        return 2;
    }
    fkd_log_set(fkd_posix_log, "robot-sim", lvl);
    fkd_config_init(&ors.cfg);
    fkd_store_init(&ors.store);
    fkd_nvs_init(&ors.nvs);
    fkd_ota_update_init(&upd);
    ors.file.fd = -1;

    /* Boot, as main.c does. */
    enum fkd_err rc = fkd_flash_file_open(&ors.file, ors.flash_path, 0, 0, &ors.flash);
    if (rc == FKD_OK) {
        rc = fkd_part_load(&ors.flash, &ors.parts);
    }
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: %s\n", ors.flash_path, fkd_strerror(rc));
        goto out;
    }
    size_t len = 0;
    rc = fkd_posix_read_file(sdkconfig, cfg_buf, sizeof cfg_buf, &len);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot read (%s)\n", sdkconfig, fkd_strerror(rc));
        goto out;
    }
    struct fkd_cfg_diag diag = {0, ""};
    rc = fkd_config_parse(&ors.cfg, (const char *)cfg_buf, len, &diag);
    fkd_wipe(cfg_buf, len);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s:%u: %s\n", sdkconfig, diag.line, diag.msg);
        goto out;
    }
    if (fkd_config_apply_env(&ors.cfg, fkd_posix_getenv, NULL) != FKD_OK) {
        goto out;
    }
    robot_sim_mount_nvs(&ors, ors.cfg.nvs_encryption, 1, 0);
    /* The committed OTA key of a rotation (class ota) may live in slot B: load the records as
     * a boot does, so the store reads the slot they name. */
    fkd_rot_init(&ors.rot);
    ors.rot_loaded = ors.nvs_mounted && fkd_rot_load(&ors.rot, &ors.nvs, 0, 0) == FKD_OK;
    if (fkd_store_load_rot(&ors.store, ors.nvs_mounted ? &ors.nvs : NULL, &ors.cfg,
                           ors.rot_loaded ? &ors.rot : NULL) != FKD_OK) {
        code = 4;
        goto out;
    }
    struct fkd_policy_input pin = {&ors.store, &ors.cfg, ors.nvs_encrypted};
    fkd_policy_evaluate(&pin, &ors.posture);
    if (!ors.posture.boot_allowed) {
        fprintf(stderr, "robot-sim: boot refused by rule %s: no update\n",
                fkd_rule_name(ors.posture.refused_by));
        code = 3;
        goto out;
    }
    code = robot_sim_ota_boot(&ors, 0);
    if (code != 0) {
        goto out;
    }
    struct fkd_sbv2_keys ks;
    store_keys(&ors.store, &ks);
    if (!ors.posture.updates_enabled) {
        /* Development without an OTA key (seed 004): firmware updates disabled. */
        ks.count = 0;
    }

    in = fopen(image, "rb");
    long size = -1;
    if (in == NULL || fseek(in, 0, SEEK_END) != 0 || (size = ftell(in)) < 0 ||
        fseek(in, 0, SEEK_SET) != 0 || (unsigned long)size > 0xFFFFFFFFul) {
        fprintf(stderr, "robot-sim: %s: cannot read\n", image);
        code = 2;
        goto out;
    }
    rc = fkd_ota_begin(&upd, &ors.flash, &ors.parts, &ks, ors.nvs_mounted ? &ors.nvs : NULL,
                       &ors.ota.running, (uint32_t)size);
    if (rc == FKD_OK && cut > 0) {
        fkd_flash_mem_cut(&ors.file.mem, cut, torn);
    }
    size_t chunks = 0;
    while (rc == FKD_OK) {
        size_t n = fread(chunk_buf, 1, chunk, in);
        if (n == 0) {
            break;
        }
        rc = fkd_ota_write(&upd, chunk_buf, n);
        chunks++;
    }
    if (rc == FKD_OK && ferror(in)) {
        fprintf(stderr, "robot-sim: %s: read error\n", image);
        code = 2;
        fkd_ota_abort(&upd);
        goto out;
    }
    if (rc == FKD_OK) {
        rc = fkd_ota_finish(&upd);
    }
    code = map_rc(rc);
    if (rc == FKD_OK) {
        const struct fkd_app_info *a = fkd_ota_app(&upd);
        const struct fkd_sbv2_result *sr = fkd_ota_sig_result(&upd);
        printf("ota: installed %s %s (secure_version %u) into ota_%u in %zu chunks; signature "
               "block %d verified with %s; boots next, pending its self-test\n",
               a->project_name, a->version, (unsigned)a->secure_version, upd.target_slot, chunks,
               sr->block, sr->key == 0 ? "security/ota_pubkey" : "security/ota_pubkey2");
    } else if (rc == FKD_E_POWERCUT) {
        fprintf(stderr, "robot-sim: power cut after %lu flash operations%s\n", cut,
                torn ? " (last one torn)" : "");
    } else {
        fprintf(stderr, "robot-sim: ota: update refused (%s)\n", fkd_errname(rc));
    }
out:
    if (in != NULL) {
        fclose(in);
    }
    fkd_ota_update_free(&upd);
    fkd_store_free(&ors.store);
    fkd_nvs_free(&ors.nvs);
    fkd_config_free(&ors.cfg);
    if (ors.file.map != NULL && fkd_flash_file_close(&ors.file) != FKD_OK && code == 0) {
        code = 4;
    }
    return code;
}
