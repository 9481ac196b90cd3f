/* robot-sim: the device library built for the host, booting from a flash image file.
 *
 * main.c parses arguments and boots (partition table -> sdkconfig -> NVS -> credential store
 * -> policy); robot_sim.c mounts NVS for every command; image.c makes flash images;
 * nvs_cmd.c is `robot-sim nvs ...`; services.c holds
 * start_services(), where the robot's network services (the DTLS-PSK control listener of
 * issue 4, section 4) are started after a successful boot. */
#ifndef ROBOT_SIM_H
#define ROBOT_SIM_H

#include "fkd/config.h"
#include "fkd/ctl.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/ota_remote.h"
#include "fkd/part.h"
#include "fkd/policy.h"
#include "fkd/rot.h"
#include "fkd/rot_remote.h"
#include "fkd/store.h"
#include "fkd/wss.h"
#include "fkd_posix.h"

#include <pthread.h>
#include <stdatomic.h>

/* ota_cmd.c's part of the context: what the bootloader chose for this boot. */
struct robot_sim_ota {
    struct fkd_ota_boot running;
    int booted; /* robot_sim_ota_boot found OTA partitions; running is meaningful */
};

/* services.c's part: the DTLS-PSK control listener, in caller memory as on the chip. */
#define ROBOT_SIM_CTL_SESSIONS 4
struct robot_sim_ctl {
    struct fkd_ctl ctl;
    struct fkd_rot_ctl rot_sync; /* which rotation keys the listener holds (fkd_rot_ctl_sync) */
    struct fkd_ctl_session sessions[ROBOT_SIM_CTL_SESSIONS];
    uint8_t rx[FKD_CTL_RX_MAX];
};

/* wss_service.c's part: the client thread, what it shares with the listener's loop (the
 * atomic flags) and the --wss-* options. */
struct fleet_task; /* fleet_sched.h */

struct robot_sim_wss {
    struct fkd_wss client;        /* ~11 KiB of caller memory: the whole client */
    struct fkd_ota_remote remote; /* ~8.5 KiB: OTA over the channel (fkd/ota_remote.h) */
    int ota_ready;                /* remote was set up: the robot runs app images */
    struct fkd_rot_remote rot;    /* ~7.5 KiB: credential rotation (fkd/rot_remote.h) */
    int rot_ready;
    struct fkd_wss_handler handler; /* OTA, then rotation (wss_service.c) */
    pthread_t thread;
    struct fleet_task *task; /* instead of thread: a task of the fleet's scheduler */
    int started;
    atomic_int stop_flag;
    atomic_int reboot_flag; /* the client ended with FKD_WSS_R_REBOOT */
    atomic_int welcomed_flag;
    atomic_int online_flag; /* welcomed on the current connection (robot-sim --fleet counts) */
    size_t opt_stack;       /* the thread's stack size; 0: the system's default (fleet.c) */
    const char *opt_uri;
    const char *opt_host;
    unsigned long opt_attempts;
    unsigned long opt_backoff_ms;
    unsigned long opt_connect_timeout_ms; /* 0: the client's default (10 s) */
    int opt_disabled;
};

/* Fault injection of a fleet rehearsal (fleet.c; all 0 for a single robot): done at the
 * network and flash level around the device library, never inside it. */
struct robot_sim_fault {
    int drop_commit;          /* the next rot_commit: drop the connection, do not answer (once) */
    unsigned long cut_at_rot; /* power cut at this flash write counted from the first rot_*
                               * request of this boot (0: none) */
    int cut_torn;             /* ... and that write is half applied */
    int cut_armed;
    unsigned long answer_delay_ms; /* the first rot_* request: answered this late (once) */
};

/* Everything a booted robot holds, the one context every part of robot-sim takes as a
 * parameter: boot state (main.c), the running image (ota_cmd.c), the control listener
 * (services.c) and the wss client (wss_service.c). One static instance per command (main.c,
 * ota_cmd.c, nvs_cmd.c): no heap in the device parts, and no part reaches into another's
 * file-scope state. */
struct robot_sim {
    const char *flash_path;
    const char *name; /* the robot's name in log lines of a fleet (NULL: a single robot) */
    struct fkd_flash_file file;
    struct fkd_flash flash;
    struct fkd_part_table parts;
    struct fkd_config cfg;
    struct fkd_nvs nvs;
    int nvs_mounted;   /* NVS is usable (store loaded from it) */
    int nvs_encrypted; /* mounted with XTS keys from nvs_keys */
    struct fkd_store store;
    struct fkd_posture posture;
    /* Credential rotation (fkd/rot.h): loaded at boot over the mounted NVS; the wss thread's
     * handler writes it, the listener's loop follows it: both under rot_lock. */
    struct fkd_rot rot;
    int rot_loaded;
    pthread_mutex_t rot_lock;
    unsigned long opt_rot_trial_ms; /* --rot-trial-ms (0: no time limit) */
    unsigned long opt_rot_attempts; /* --rot-attempts (0: FKD_ROT_DEFAULT_ATTEMPTS) */
    unsigned long opt_cut_at;       /* --power-cut-at-write K (0: never) */
    int opt_cut_torn;               /* --power-cut-torn */
    struct robot_sim_ota ota;
    struct robot_sim_ctl ctl;
    struct robot_sim_wss wss;
    struct robot_sim_fault fault;
};

/* The robot whose thread this is, for the log lines of a fleet (fleet.c's log handler); set by
 * each robot thread and its wss thread. */
extern _Thread_local const struct robot_sim *robot_sim_self;

/* Exit code of a robot whose power was cut (--power-cut-at-write). */
#define ROBOT_SIM_POWER_CUT 6

/* Runs the services of a booted robot until they stop; returns the process exit code.
 * rs->posture says what policy allows: posture.listener is FKD_LISTENER_DTLS (use
 * fkd_store_psk(&rs->store, ...)), FKD_LISTENER_PLAINTEXT (development only) or
 * FKD_LISTENER_REFUSED (do not start it); posture.dtls_port is the port. argv holds the
 * command-line options main did not recognise (argc of them), for the services to parse. */
int start_services(struct robot_sim *rs, int argc, char **argv);
/* Every robot's services stop as on SIGTERM (robot-sim --fleet at its --run-ms); whether that
 * was asked (a signal, or robot_sim_stop_all). */
void robot_sim_stop_all(void);
int robot_sim_stop_requested(void);
/* The re-provisioning button (issue 17): robot_sim_button_arm makes SIGUSR1 the button; a press
 * while the services run makes start_services stop them and return ROBOT_SIM_PORTAL, and main.c
 * serves the Wi-Fi portal (portal.h) before starting them again. */
void robot_sim_button_arm(void);
#define ROBOT_SIM_PORTAL 101
/* start_services' answer when the robot must reboot (an OTA update was installed, or the new
 * image failed its self-test): main.c closes the flash and re-executes robot-sim with its
 * original arguments. */
#define ROBOT_SIM_REBOOT 100

/* `robot-sim flash-image create ...` and `robot-sim nvs ...`; argv[0] is the subcommand
 * word. Return the exit code. */
int robot_sim_image(int argc, char **argv);
int robot_sim_nvs(int argc, char **argv);

/* Mounts the NVS partition of an opened flash: encrypted when want_encrypted and nvs_keys
 * holds valid keys (logs why not otherwise). Sets rs->nvs_mounted / rs->nvs_encrypted.
 * require_keys: with want_encrypted, refuse to mount plain when keys are missing (a boot with
 * CONFIG_NVS_ENCRYPTION); otherwise mount plain. readonly: repair nothing on flash
 * (fkd_nvs_mount_readonly), for commands that only look. */
void robot_sim_mount_nvs(struct robot_sim *rs, int want_encrypted, int require_keys, int readonly);

/* The boot of a robot whose flash is open (rs->flash; rs->file.mem for power cuts): partition
 * table -> sdkconfig text (sdk, sdk_len; named sdk_name in messages) -> MINITRAIN_* env ->
 * --power-cut-at-write armed -> NVS -> rotation records -> credential store -> policy
 * (rs->posture). rs->cfg, store and nvs must have been initialised. Used by main.c for one
 * robot and by fleet.c for each robot of a fleet. Returns 0 (booted: rs->posture says whether
 * policy allows it), 2 unusable table or sdkconfig, 4 store error, ROBOT_SIM_POWER_CUT. */
int robot_sim_boot_core(struct robot_sim *rs, const char *sdk, size_t sdk_len,
                        const char *sdk_name);

/* image.c, shared by `flash-image create` and the fleet's in-memory images (fleet.c):
 * robot_sim_image_table encodes the partition table of csv_text (NULL: the built-in layout)
 * into table (FK_PARTITION_TABLE_SIZE bytes; *tlen used) and reads it back into *dt for a
 * flash of size bytes; robot_sim_image_put writes img into the data partition of subtype
 * (what names it, name names img in messages); robot_sim_image_put_file does it with the
 * file at path. 0, 2 (bad input, said on stderr) or 4. */
int robot_sim_image_table(const char *csv_text, size_t csv_len, const char *csv_name, uint32_t size,
                          uint8_t *table, size_t *tlen, struct fkd_part_table *dt);
int robot_sim_image_put(struct fkd_flash *flash, const struct fkd_part_table *t, uint8_t subtype,
                        const char *what, const char *name, const uint8_t *img, size_t len,
                        int verbose);
int robot_sim_image_put_file(struct fkd_flash *flash, const struct fkd_part_table *t,
                             uint8_t subtype, const char *what, const char *path, int verbose);

/* Parses "4M", "64K", "0x400000", "4194304" (image.c). 1 on success. */
int robot_sim_parse_size(const char *s, uint32_t *out);

#endif
