/* robot-sim: boots the device library from a flash image file, as a robot boots from flash.
 *
 *   robot-sim --flash robot.bin --sdkconfig sdkconfig [--boot-only] [--status-json]
 *             [--verbose|--quiet] [service options...]
 *   robot-sim flash-image create --out robot.bin [--size 4M] [--partitions partitions.csv]
 *             [--nvs nvs.bin] [--nvs-keys nvs_keys.bin]
 *   robot-sim nvs set|get|erase|list --flash robot.bin ...
 *   robot-sim --flash robot.bin --download-mode [--pty-link PATH] [--mac M] ... [-- BOOT-ARGS]
 *             (ESP32 ROM download mode on a pty: download.c, docs/flash.md)
 *
 * Boot: partition table at 0x8000 -> sdkconfig (+ MINITRAIN_* env in development) -> NVS
 * (encrypted with the nvs_keys partition when CONFIG_NVS_ENCRYPTION=y) -> credential store ->
 * policy -> posture on stdout -> start_services(). Exit codes: 0 booted (and services ended
 * well), 2 usage or unreadable input, 3 boot refused by policy, 4 flash error. */
#include "download.h"
#include "fleet.h"   /* issue 14: robot-sim --fleet N */
#include "ota_cmd.h" /* issue 7: OTA boot step, self-test, `robot-sim ota` */
#include "portal.h"  /* issue 17: Wi-Fi re-provisioning portal */
#include "robot_sim.h"

#include "fleetkey/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SDKCONFIG_MAX (512u * 1024u)

static struct robot_sim rs;
static uint8_t sdkconfig_buf[SDKCONFIG_MAX];

static void usage(FILE *f) {
    fputs(
        "usage: robot-sim --flash FILE --sdkconfig FILE [boot options] [service options]\n"
        "       robot-sim flash-image create --out FILE [--size 4M] [--partitions CSV]\n"
        "                 [--nvs NVS.bin] [--nvs-keys NVS_KEYS.bin]\n"
        "       robot-sim nvs set|get|erase|list --flash FILE [--ns NS --key KEY] ...\n"
        "                 (robot-sim nvs --help for details)\n"
        "       robot-sim ota --flash FILE --sdkconfig FILE --image SIGNED.bin ...\n"
        "                 (robot-sim ota --help for details)\n"
        "       robot-sim --fleet N --fleet-keys DIR --sdkconfig FILE [fleet options] ...\n"
        "       robot-sim --flash FILE --download-mode [--pty-link PATH] [--mac M] ... [-- "
        "BOOT-ARGS]\n"
        "\n"
        "boot options:\n"
        "  --boot-only               boot, print the posture, exit\n"
        "  --status-json             print the boot status as one JSON line\n"
        "  --self-test pass|fail     the new app image's own verdict (OTA)\n"
        "  --verbose | --quiet       log level debug | warnings only\n"
        "  --rot-trial-ms MS         a credential trial not confirmed within MS of boot rolls\n"
        "                            back (default: no time limit)\n"
        "  --rot-attempts N          trial connections before a rollback (default 3)\n"
        "  --power-cut-at-write K    the power fails at the K-th flash write or erase from\n"
        "                            boot on: the robot stops there (exit 6)\n"
        "  --power-cut-torn          ... and that write is half applied\n"
        "  --rot-answer-delay-ms MS  the first rot_* request is answered MS late (a robot\n"
        "                            busy with other work; the server stops waiting at 30 s)\n"
        "  --portal-listen IP:PORT   Wi-Fi re-provisioning portal (simulated soft-AP) when the\n"
        "                            robot has no usable Wi-Fi credential, or on SIGUSR1 (the\n"
        "                            button); port 0: any free port (printed)\n"
        "  --wifi-fail               the Wi-Fi credential found at boot does not join (opens\n"
        "                            the portal when --portal-listen is given)\n"
        "service options (control listener, wss client):\n"
        "  --ctl-port P              DTLS listener UDP port (default CONFIG_MINITRAIN_DTLS_PORT;\n"
        "                            0: any free port)\n"
        "  --ctl-bind IP             address to bind (default 0.0.0.0)\n"
        "  --run-ms MS               stop after MS milliseconds (default: until a signal)\n"
        "  --self-test-timeout-ms MS a pending app image not welcomed within MS fails its\n"
        "                            self-test (default 60000)\n"
        "  --wss-uri URI             override CONFIG_MINITRAIN_WSS_URI\n"
        "  --wss-host HOST           override CONFIG_MINITRAIN_EXPECTED_HOST\n"
        "  --wss-attempts N          give up after N connections (default: never)\n"
        "  --wss-backoff-ms MS       first retry delay (default 1000)\n"
        "  --wss-connect-timeout-ms MS  TCP + TLS + upgrade deadline (default 10000)\n"
        "  --no-wss                  do not start the wss client\n",
        f);
    robot_sim_fleet_usage(f);
}

/* JSON string with the escapes RFC 8259 requires. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void print_status_json(void) {
    char posture[1024];
    fkd_posture_json(&rs.posture, posture, sizeof posture);
    printf("{\"flash\":");
    json_str(stdout, rs.flash_path);
    printf(",\"nvs_mounted\":%s,\"posture\":%s,\"credentials\":{",
           rs.nvs_mounted ? "true" : "false", posture);
    for (int i = 0; i < FKD_CRED_COUNT; i++) {
        const struct fkd_cred_info *in = fkd_store_info(&rs.store, (enum fkd_cred)i);
        printf("%s\"%s\":{\"source\":\"%s\",\"valid\":%s,\"bytes\":%zu,\"fingerprint\":",
               i ? "," : "", fkd_cred_name((enum fkd_cred)i), fkd_cred_source_name(in->source),
               in->valid ? "true" : "false", in->len);
        if (in->source == FKD_SRC_NONE) {
            printf("null}");
        } else {
            json_str(stdout, in->fpr);
            printf("}");
        }
    }
    printf("},\"config\":{\"wss_uri\":");
    json_str(stdout, rs.cfg.wss_uri);
    printf(",\"wss_uri_source\":\"%s\",\"expected_host\":",
           fkd_cfg_source_name(rs.cfg.source[FKD_CFG_WSS_URI]));
    json_str(stdout, rs.cfg.expected_host);
    printf(",\"expected_host_source\":\"%s\",\"env_ignored\":%s}}\n",
           fkd_cfg_source_name(rs.cfg.source[FKD_CFG_EXPECTED_HOST]),
           rs.cfg.env_ignored ? "true" : "false");
}

static void print_status_text(void) {
    const struct fkd_posture *p = &rs.posture;
    printf("build: %s\n", fkd_build_name(p->build));
    printf("boot: %s%s%s\n", p->boot_allowed ? "allowed" : "refused",
           p->boot_allowed ? "" : " by rule ", p->boot_allowed ? "" : fkd_rule_name(p->refused_by));
    printf("control listener: %s (udp port %u)\n", fkd_listener_name(p->listener),
           (unsigned)p->dtls_port);
    printf("updates: %s\n", p->updates_enabled ? "enabled" : "disabled");
    printf("wifi: %s\n", fkd_wifi_mode_name(p->wifi));
    printf("nvs: %s\n", p->nvs_encrypted ? "encrypted" : "unencrypted");
    for (int r = 0; r < FKD_RULE_COUNT; r++) {
        printf("rule %s: %s\n", fkd_rule_name((enum fkd_rule)r), p->held[r] ? "held" : "NOT held");
    }
    for (int i = 0; i < FKD_CRED_COUNT; i++) {
        const struct fkd_cred_info *in = fkd_store_info(&rs.store, (enum fkd_cred)i);
        printf("credential %s: %s%s%s\n", fkd_cred_name((enum fkd_cred)i),
               fkd_cred_source_name(in->source), in->source == FKD_SRC_NONE ? "" : " ",
               in->source == FKD_SRC_NONE ? "" : in->fpr);
    }
}

static int boot(int argc, char **argv) {
    const char *sdkconfig = NULL;
    int boot_only = 0, status_json = 0;
    const char *self_test = NULL; /* issue 7: --self-test pass|fail */
    enum fkd_log_level lvl = FKD_LOG_INFO;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0;
    int code = 2;
    if (rest == NULL) {
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--flash") == 0 && i + 1 < argc) {
            rs.flash_path = argv[++i];
        } else if (strcmp(a, "--sdkconfig") == 0 && i + 1 < argc) {
            sdkconfig = argv[++i];
        } else if (strcmp(a, "--self-test") == 0 && i + 1 < argc) {
            self_test = argv[++i];
        } else if (strcmp(a, "--boot-only") == 0) {
            boot_only = 1;
        } else if (strcmp(a, "--status-json") == 0) {
            status_json = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            lvl = FKD_LOG_DEBUG;
        } else if (strcmp(a, "--quiet") == 0) {
            lvl = FKD_LOG_WARN;
        } else if (strcmp(a, "--rot-trial-ms") == 0 && i + 1 < argc) {
            if (fk_parse_ulong(argv[++i], 86400000ul, &rs.opt_rot_trial_ms) != FK_OK) {
                fprintf(stderr, "robot-sim: --rot-trial-ms: expected milliseconds\n");
                free(rest);
                return 2;
            }
        } else if (strcmp(a, "--rot-attempts") == 0 && i + 1 < argc) {
            if (fk_parse_ulong(argv[++i], 1000ul, &rs.opt_rot_attempts) != FK_OK ||
                rs.opt_rot_attempts == 0) {
                fprintf(stderr, "robot-sim: --rot-attempts: expected 1..1000\n");
                free(rest);
                return 2;
            }
        } else if (strcmp(a, "--power-cut-at-write") == 0 && i + 1 < argc) {
            if (fk_parse_ulong(argv[++i], 1000000000ul, &rs.opt_cut_at) != FK_OK ||
                rs.opt_cut_at == 0) {
                fprintf(stderr, "robot-sim: --power-cut-at-write: expected a positive number\n");
                free(rest);
                return 2;
            }
        } else if (strcmp(a, "--power-cut-torn") == 0) {
            rs.opt_cut_torn = 1;
        } else if (strcmp(a, "--rot-answer-delay-ms") == 0 && i + 1 < argc) {
            if (fk_parse_ulong(argv[++i], 600000ul, &rs.fault.answer_delay_ms) != FK_OK) {
                fprintf(stderr, "robot-sim: --rot-answer-delay-ms: expected 0..600000\n");
                free(rest);
                return 2;
            }
        } else if (robot_sim_portal_option(argc, argv, i) != 0) { /* issue 17: portal.h */
            int took = robot_sim_portal_option(argc, argv, i);
            if (took < 0) {
                free(rest);
                return 2;
            }
            i += took - 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            free(rest);
            return 0;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (rs.flash_path == NULL || sdkconfig == NULL) {
        usage(stderr);
        free(rest);
        return 2;
    }
    fkd_log_set(fkd_posix_log, "robot-sim", lvl);
    fkd_config_init(&rs.cfg);
    fkd_store_init(&rs.store);
    pthread_mutex_init(&rs.rot_lock, NULL);
    fkd_nvs_init(&rs.nvs);
    rs.file.fd = -1;

    enum fkd_err rc = fkd_flash_file_open(&rs.file, rs.flash_path, 0, 0, &rs.flash);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot open flash image (%s)\n", rs.flash_path,
                fkd_strerror(rc));
        goto out;
    }
    size_t len = 0;
    rc = fkd_posix_read_file(sdkconfig, sdkconfig_buf, sizeof sdkconfig_buf, &len);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot read (%s)\n", sdkconfig, fkd_strerror(rc));
        goto out;
    }
    code = robot_sim_boot_core(&rs, (const char *)sdkconfig_buf, len, sdkconfig);
    fkd_wipe(sdkconfig_buf, len); /* it may hold the client key */
    if (code == ROBOT_SIM_POWER_CUT) {
        goto power_cut;
    }
    if (code != 0) {
        goto out;
    }
    code = 2;
    if (status_json) {
        print_status_json();
    } else {
        print_status_text();
    }
    /* ---- OTA (issue 7, ota_cmd.c): the bootloader's slot choice, the running image ---- */
    code = robot_sim_ota_boot(&rs, !status_json);
    if (code != 0) {
        goto out;
    }
    code = 2;
    /* ---- end of the OTA boot step ---- */
    fflush(stdout);
    if (!rs.posture.boot_allowed) {
        code = 3;
        goto out;
    }
    /* ---- OTA (issue 7): the app's self-test verdict; later the control-plane reconnect ---- */
    code = robot_sim_ota_self_test(&rs, self_test);
    if (code != 0) {
        goto out;
    }
    /* ---- end of the OTA self-test ---- */
    /* ---- Wi-Fi re-provisioning (issue 17, portal.c): no usable credential, or --wifi-fail ---- */
    if (robot_sim_portal_needed(&rs)) {
        code = robot_sim_portal_run(&rs);
        if (code != 0) {
            goto power_cut;
        }
        code = 2;
    }
    if (robot_sim_portal_enabled()) {
        robot_sim_button_arm(); /* SIGUSR1 opens the portal while the services run */
    }
    /* ---- end of the portal step ---- */
    if (boot_only) {
        code = nrest > 0 ? 2 : 0;
        if (nrest > 0) {
            fprintf(stderr, "robot-sim: unknown option %s\n", rest[0]);
        }
        goto out;
    }
    code = start_services(&rs, nrest, rest);
    while (code == ROBOT_SIM_PORTAL) { /* the button (SIGUSR1): portal, then services again */
        code = robot_sim_portal_run(&rs);
        if (code == 0) {
            code = start_services(&rs, nrest, rest);
        }
    }
power_cut:
    if (rs.file.mem.dead) {
        printf("robot-sim: power cut at flash write %lu%s\n", rs.opt_cut_at,
               rs.opt_cut_torn ? " (torn)" : "");
        fflush(stdout);
        code = ROBOT_SIM_POWER_CUT;
    }
out:
    fkd_store_free(&rs.store);
    fkd_nvs_free(&rs.nvs);
    fkd_config_free(&rs.cfg);
    if (rs.file.map != NULL) {
        fkd_flash_file_close(&rs.file);
    }
    free(rest);
    return code;
}

int main(int argc, char **argv) {
    /* ---- flash (issue 5): ESP32 ROM download mode on a pty, tools/robot-sim/download.c ---- */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--download-mode") == 0) {
            return fk_sim_download_main(argc, argv);
        }
    }
    /* ---- end of the download-mode hook ---- */
    if (robot_sim_fleet_wanted(argc, argv)) { /* issue 14: N robots in this process, fleet.c */
        return robot_sim_fleet(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "flash-image") == 0) {
        return robot_sim_image(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "nvs") == 0) {
        return robot_sim_nvs(argc - 2, argv + 2);
    }
    if (argc >= 2 && strcmp(argv[1], "ota") == 0) { /* issue 7, ota_cmd.c */
        return robot_sim_ota(argc - 1, argv + 1);
    }
    int code = boot(argc, argv);
    if (code == ROBOT_SIM_REBOOT) {
        /* A reboot (issue 7): the same program, the same arguments, the same pid; the boot
         * that follows runs the bootloader again on the flash file closed above. */
        fflush(NULL);
        execv("/proc/self/exe", argv);
        perror("robot-sim: reboot: execv /proc/self/exe");
        return 4;
    }
    return code;
}
