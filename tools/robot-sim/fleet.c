/* robot-sim --fleet N (fleet.h): N robots in one process, each a struct robot_sim booted from
 * its own in-memory flash by the same code as a single robot-sim. */
#include "fleet.h"

#include "fleet_sched.h"
#include "robot_sim.h"
#include "wss_service.h"

#include "fleetkey/common.h"
#include "fleetkey/partition.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The fleet's flash: the partition table at 0x8000, nvs and nvs_keys after it, 64 KiB in all
 * (10,000 robots: 640 MiB). No app partitions: a fleet robot runs no OTA images. */
#define FLEET_FLASH_SIZE 0x10000u
static const char fleet_partitions[] = "# Name, Type, SubType, Offset, Size, Flags\n"
                                       "nvs, data, nvs, 0x9000, 0x6000,\n"
                                       "nvs_keys, data, nvs_keys, 0xF000, 0x1000, encrypted\n";
/* A power cut falls on one of the first FLEET_CUT_SPAN flash writes of a rotation (an mtls
 * rotation makes about this many: key, CSR state, staged certificate, trial, commit). */
#define FLEET_CUT_SPAN 24u
#define FLEET_SDK_MAX (512u * 1024u)
#define FLEET_FD_PER_ROBOT 2 /* the DTLS listener's UDP socket and the wss TCP socket */

struct fleet_robot {
    struct robot_sim rs;
    char name[64];
    uint8_t *flash;
    int offline;
    pthread_t thread;
    int started;
    atomic_int running; /* booted and serving */
    atomic_int power_cuts;
    int drop_planned;
    struct fkd_rot_info last[FKD_ROT_CLASS_COUNT]; /* the rotation states the last boot left */
    int have_last;
    int code; /* the last boot's exit code */
};

struct fleet {
    struct fleet_robot *robots;
    unsigned long n;
    char *sdk;
    size_t sdk_len;
    const char *sdk_name;
    int svc_argc;
    char **svc_argv;
    unsigned long seed;
};

/* The counts of the summary line and the status file. */
struct fleet_counts {
    unsigned long booted, online, offline, power_cuts, dropped;
    unsigned long rot[FKD_ROT_CLASS_COUNT][FKD_ROT_ROLLED_BACK + 1];
};

void robot_sim_fleet_usage(FILE *f) {
    fputs("fleet options (robot-sim --fleet N --fleet-keys DIR --sdkconfig FILE ...):\n"
          "  --fleet N                 run N robots in this process\n"
          "  --fleet-keys DIR          identities: DIR/robot-*.nvs.bin (+ .nvs_keys.bin), as\n"
          "                            provision-keys batch --ca writes them\n"
          "  --fleet-offset K          skip the first K identities (several processes)\n"
          "  --fleet-status FILE       the counts as one JSON object, rewritten every 500 ms\n"
          "  --fleet-threads T         run the robots as tasks on T threads (default: one per\n"
          "                            core; each waits on its sockets through epoll); 0: two\n"
          "                            threads per robot (its listener and its wss client)\n"
          "  --fleet-connects K        connection attempts (TLS handshakes) under way at once\n"
          "                            per thread (default 8); the others wait their turn\n"
          "  --fleet-stack-kb KB       stack of each robot task or thread (default 128)\n"
          "  --fleet-offline PCT       that share of robots never connects\n"
          "  --fleet-drop-confirm PCT  that share drops the connection instead of answering\n"
          "                            rot_commit (once)\n"
          "  --fleet-power-cut PCT     that share loses power at a random flash write of the\n"
          "                            rotation and boots again from its flash\n"
          "  --clock-skew-ms MS        each robot's clock is off by up to +-MS: its trial time\n"
          "                            limit (--rot-trial-ms) ends that much early or late\n"
          "  --fleet-ramp-per-s R      power robots on at R per second (default: all at once; a\n"
          "                            real fleet does not connect in the same instant)\n"
          "  --seed S                  which robots get which fault (default 1)\n",
          f);
}

/* splitmix64: a robot's fault draws depend only on the seed, its index and what is drawn. */
static uint64_t draw(unsigned long seed, unsigned long robot, unsigned what) {
    uint64_t z = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)robot * 0xBF58476D1CE4E5B9ull +
                 (uint64_t)what * 0x94D049BB133111EBull + 1u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Percentages as "5", "5%" or "2.5": parts per 10,000. */
static int parse_pct(const char *s, unsigned *out) {
    char *end = NULL;
    if (s == NULL) {
        return 0;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || (*end != '\0' && strcmp(end, "%") != 0) || v < 0 || v > 100) {
        return 0;
    }
    *out = (unsigned)(v * 100.0 + 0.5);
    return 1;
}

static void fleet_log(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    const struct robot_sim *self = robot_sim_self;
    fprintf(stderr, "robot-sim[%s]: %s %s\n", self != NULL && self->name ? self->name : "fleet",
            fkd_log_level_name(lvl), line);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The identities of KEYS_DIR, sorted: names of robot-*.nvs.bin without the suffix. */
static char **list_keys(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    *count = 0;
    if (d == NULL) {
        return NULL;
    }
    const char *suffix = ".nvs.bin";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= strlen(suffix) || strcmp(e->d_name + len - strlen(suffix), suffix) != 0) {
            continue;
        }
        char **nn = fk_grow(names, &cap, n, sizeof *nn, 256);
        if (nn == NULL) {
            break;
        }
        names = nn;
        names[n] = strndup(e->d_name, len - strlen(suffix));
        if (names[n] == NULL) {
            break;
        }
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    *count = n;
    return names;
}

/* Reads DIR/ID.SUFFIX into the robot's data partition of subtype. missing_ok: no file is fine. */
static int put_file(struct fkd_flash *flash, const struct fkd_part_table *t, uint8_t subtype,
                    const char *what, const char *dir, const char *id, const char *suffix,
                    int missing_ok) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s%s", dir, id, suffix);
    if (missing_ok && access(path, F_OK) != 0) {
        return 0;
    }
    return robot_sim_image_put_file(flash, t, subtype, what, path, 0);
}

/* One boot of robot r, as main.c boots a single robot, and its services until they stop. */
static int robot_boot(struct fleet *fl, struct fleet_robot *r) {
    struct robot_sim *rs = &r->rs;
    fkd_config_init(&rs->cfg);
    fkd_store_init(&rs->store);
    fkd_nvs_init(&rs->nvs);
    fkd_flash_mem_init(&rs->file.mem, r->flash, FLEET_FLASH_SIZE, &rs->flash); /* power back */
    rs->nvs_mounted = 0;
    rs->rot_loaded = 0;
    memset(&rs->ota, 0, sizeof rs->ota);
    pthread_mutex_lock(&rs->rot_lock); /* the status thread reads rs->rot */
    int code = robot_sim_boot_core(rs, fl->sdk, fl->sdk_len, fl->sdk_name);
    pthread_mutex_unlock(&rs->rot_lock);
    if (code == 0 && !rs->posture.boot_allowed) {
        fkd_log(FKD_LOG_ERROR, "boot refused by rule %s", fkd_rule_name(rs->posture.refused_by));
        code = 3;
    }
    if (code == 0) {
        atomic_store(&r->running, 1);
        code = start_services(rs, fl->svc_argc, fl->svc_argv);
        atomic_store(&r->running, 0);
    }
    if (rs->file.mem.dead) {
        code = ROBOT_SIM_POWER_CUT;
    }
    pthread_mutex_lock(&rs->rot_lock);
    if (rs->rot_loaded) {
        memcpy(r->last, rs->rot.cls, sizeof r->last);
        r->have_last = 1;
    }
    fkd_store_free(&rs->store);
    fkd_nvs_free(&rs->nvs);
    fkd_config_free(&rs->cfg);
    rs->rot_loaded = 0;
    pthread_mutex_unlock(&rs->rot_lock);
    return code;
}

static struct fleet *the_fleet; /* for the robot threads' boots */

static void *robot_thread(void *arg);

static void robot_task(void *arg) {
    (void)robot_thread(arg);
}

static void *robot_thread(void *arg) {
    struct fleet_robot *r = arg;
    robot_sim_self = &r->rs;
    for (;;) {
        r->code = robot_boot(the_fleet, r);
        if (r->code != ROBOT_SIM_POWER_CUT || robot_sim_stop_requested()) {
            break;
        }
        atomic_fetch_add(&r->power_cuts, 1);
        r->rs.fault.cut_at_rot = 0; /* once: the next boot runs to the end */
        fkd_log(FKD_LOG_WARN, "power cut: booting again from flash");
    }
    return NULL;
}

static void count(struct fleet *fl, struct fleet_counts *c) {
    memset(c, 0, sizeof *c);
    for (unsigned long i = 0; i < fl->n; i++) {
        struct fleet_robot *r = &fl->robots[i];
        c->booted += atomic_load(&r->running) != 0;
        c->online += atomic_load(&r->rs.wss.online_flag) != 0;
        c->offline += r->offline != 0;
        c->power_cuts += (unsigned long)atomic_load(&r->power_cuts);
        c->dropped += r->drop_planned && !r->rs.fault.drop_commit;
        pthread_mutex_lock(&r->rs.rot_lock);
        for (int k = 0; k < FKD_ROT_CLASS_COUNT; k++) {
            enum fkd_rot_state s = r->rs.rot_loaded ? r->rs.rot.cls[k].state
                                   : r->have_last   ? r->last[k].state
                                                    : FKD_ROT_IDLE;
            c->rot[k][s <= FKD_ROT_ROLLED_BACK ? s : FKD_ROT_IDLE]++;
        }
        pthread_mutex_unlock(&r->rs.rot_lock);
    }
}

static void write_status(const char *path, unsigned long n, const struct fleet_counts *c) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return;
    }
    fprintf(f,
            "{\"robots\":%lu,\"booted\":%lu,\"online\":%lu,\"offline\":%lu,\"power_cuts\":%lu,"
            "\"dropped\":%lu,\"rot\":{",
            n, c->booted, c->online, c->offline, c->power_cuts, c->dropped);
    for (int k = 0; k < FKD_ROT_CLASS_COUNT; k++) {
        fprintf(f, "%s\"%s\":{", k ? "," : "", fkd_rot_class_name((enum fkd_rot_class)k));
        for (int s = 0; s <= FKD_ROT_ROLLED_BACK; s++) {
            fprintf(f, "%s\"%s\":%lu", s ? "," : "", fkd_rot_state_name((enum fkd_rot_state)s),
                    c->rot[k][s]);
        }
        fputc('}', f);
    }
    fputs("}}\n", f);
    if (fclose(f) == 0) {
        (void)rename(tmp, path);
    }
}

static void print_summary(unsigned long n, unsigned long booted_ever,
                          const struct fleet_counts *c) {
    printf("fleet: %lu robots, %lu booted, %lu connected, %lu offline, %lu power cuts, "
           "%lu confirmations dropped;",
           n, booted_ever, c->online, c->offline, c->power_cuts, c->dropped);
    for (int k = 0; k < FKD_ROT_CLASS_COUNT; k++) {
        printf(" %s:", fkd_rot_class_name((enum fkd_rot_class)k));
        int first = 1;
        for (int s = 0; s <= FKD_ROT_ROLLED_BACK; s++) {
            if (c->rot[k][s] != 0) {
                printf("%s %lu %s", first ? "" : ",", c->rot[k][s],
                       fkd_rot_state_name((enum fkd_rot_state)s));
                first = 0;
            }
        }
        putchar(k + 1 < FKD_ROT_CLASS_COUNT ? ';' : '\n');
    }
    fflush(stdout);
}

/* Room for every robot's sockets: the soft limit raised to the hard one. */
static int fd_room(unsigned long n) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 1;
    }
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)n * FLEET_FD_PER_ROBOT + 64;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr,
                "robot-sim: --fleet %lu needs %lu file descriptors, the limit is %lu: split the "
                "fleet over several processes (--fleet-offset)\n",
                n, (unsigned long)need, (unsigned long)rl.rlim_cur);
        return 0;
    }
    return 1;
}

int robot_sim_fleet_wanted(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--fleet") == 0 || strcmp(argv[i], "--fleet-keys") == 0) {
            return 1;
        }
    }
    return 0;
}

int robot_sim_fleet(int argc, char **argv) {
    struct fleet fl;
    memset(&fl, 0, sizeof fl);
    const char *keys = NULL, *sdkconfig = NULL, *status = NULL;
    unsigned long n = 0, offset = 0, stack_kb = 128, skew_ms = 0, run_ms = 0;
    unsigned long trial_ms = 0, attempts = 0, ramp = 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long threads = cores > 0 ? (unsigned long)cores : 1;
    unsigned long connects = 8;
    struct fleet_sched *sched = NULL;
    unsigned offline_pct = 0, drop_pct = 0, cut_pct = 0;
    enum fkd_log_level lvl = FKD_LOG_WARN;
    int code = 2;
    char **names = NULL;
    size_t nnames = 0;
    fl.seed = 1;
    fl.svc_argv = calloc((size_t)argc + 3, sizeof *fl.svc_argv);
    if (fl.svc_argv == NULL) {
        return 4;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, used = 2;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            robot_sim_fleet_usage(stdout);
            code = 0;
            goto out;
        } else if (strcmp(a, "--fleet") == 0) {
            ok = fk_parse_ulong(v, 100000ul, &n) == FK_OK && n > 0;
        } else if (strcmp(a, "--fleet-keys") == 0) {
            keys = v;
            ok = v != NULL;
        } else if (strcmp(a, "--fleet-offset") == 0) {
            ok = fk_parse_ulong(v, 1000000ul, &offset) == FK_OK;
        } else if (strcmp(a, "--fleet-status") == 0) {
            status = v;
            ok = v != NULL;
        } else if (strcmp(a, "--fleet-stack-kb") == 0) {
            ok = fk_parse_ulong(v, 65536ul, &stack_kb) == FK_OK && stack_kb >= 32;
        } else if (strcmp(a, "--fleet-threads") == 0) {
            ok = fk_parse_ulong(v, 256ul, &threads) == FK_OK;
        } else if (strcmp(a, "--fleet-connects") == 0) {
            ok = fk_parse_ulong(v, 4096ul, &connects) == FK_OK && connects > 0;
        } else if (strcmp(a, "--fleet-offline") == 0) {
            ok = parse_pct(v, &offline_pct);
        } else if (strcmp(a, "--fleet-drop-confirm") == 0) {
            ok = parse_pct(v, &drop_pct);
        } else if (strcmp(a, "--fleet-power-cut") == 0) {
            ok = parse_pct(v, &cut_pct);
        } else if (strcmp(a, "--clock-skew-ms") == 0) {
            ok = fk_parse_ulong(v, 86400000ul, &skew_ms) == FK_OK;
        } else if (strcmp(a, "--fleet-ramp-per-s") == 0) {
            ok = fk_parse_ulong(v, 1000000ul, &ramp) == FK_OK;
        } else if (strcmp(a, "--seed") == 0) {
            ok = fk_parse_ulong(v, ULONG_MAX, &fl.seed) == FK_OK;
        } else if (strcmp(a, "--sdkconfig") == 0) {
            sdkconfig = v;
            ok = v != NULL;
        } else if (strcmp(a, "--run-ms") == 0) { /* the fleet stops all robots at once */
            ok = fk_parse_ulong(v, 86400000ul, &run_ms) == FK_OK;
        } else if (strcmp(a, "--rot-trial-ms") == 0) {
            ok = fk_parse_ulong(v, 86400000ul, &trial_ms) == FK_OK;
        } else if (strcmp(a, "--rot-attempts") == 0) {
            ok = fk_parse_ulong(v, 1000ul, &attempts) == FK_OK && attempts > 0;
        } else if (strcmp(a, "--verbose") == 0) {
            lvl = FKD_LOG_DEBUG;
            used = 1;
        } else if (strcmp(a, "--quiet") == 0) {
            lvl = FKD_LOG_ERROR;
            used = 1;
        } else {
            fl.svc_argv[fl.svc_argc++] = argv[i]; /* a service option: start_services parses */
            used = 1;
        }
        if (!ok) {
            fprintf(stderr, "robot-sim: %s: missing or bad value\n", a);
            goto out;
        }
        i += used - 1;
    }
    /* Every robot's listener on a port of its own; the last --ctl-port wins. */
    fl.svc_argv[fl.svc_argc++] = "--ctl-port";
    fl.svc_argv[fl.svc_argc++] = "0";
    if (n == 0 || keys == NULL || sdkconfig == NULL) {
        robot_sim_fleet_usage(stderr);
        goto out;
    }
    fkd_log_set(fleet_log, NULL, lvl);
    names = list_keys(keys, &nnames);
    if (nnames < offset + n) {
        fprintf(stderr, "robot-sim: %s: %zu identities (robot-*.nvs.bin), %lu needed\n", keys,
                nnames, offset + n);
        goto out;
    }
    fl.sdk = malloc(FLEET_SDK_MAX);
    if (fl.sdk == NULL ||
        fkd_posix_read_file(sdkconfig, (uint8_t *)fl.sdk, FLEET_SDK_MAX, &fl.sdk_len) != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot read\n", sdkconfig);
        goto out;
    }
    fl.sdk_name = sdkconfig;
    if (!fd_room(n)) {
        code = 4;
        goto out;
    }
    uint8_t table[FK_PARTITION_TABLE_SIZE];
    size_t tlen = 0;
    static struct fkd_part_table dt;
    code = robot_sim_image_table(fleet_partitions, strlen(fleet_partitions), "fleet partitions",
                                 FLEET_FLASH_SIZE, table, &tlen, &dt);
    if (code != 0) {
        goto out;
    }
    fl.robots = calloc(n, sizeof *fl.robots);
    if (fl.robots == NULL) {
        code = 4;
        goto out;
    }
    fl.n = n;
    for (unsigned long i = 0; i < n; i++) {
        struct fleet_robot *r = &fl.robots[i];
        struct robot_sim *rs = &r->rs;
        const char *id = names[offset + i];
        r->flash = malloc(FLEET_FLASH_SIZE);
        if (r->flash == NULL) {
            code = 4;
            goto out;
        }
        memset(r->flash, 0xFF, FLEET_FLASH_SIZE); /* a blank chip */
        fkd_flash_mem_init(&rs->file.mem, r->flash, FLEET_FLASH_SIZE, &rs->flash);
        if (fkd_flash_write(&rs->flash, FKD_PART_TABLE_OFFSET, table, tlen) != FKD_OK) {
            code = 4;
            goto out;
        }
        code = put_file(&rs->flash, &dt, FKD_PART_SUB_NVS, "nvs", keys, id, ".nvs.bin", 0);
        if (code == 0) {
            code = put_file(&rs->flash, &dt, FKD_PART_SUB_NVS_KEYS, "nvs_keys", keys, id,
                            ".nvs_keys.bin", 1);
        }
        if (code != 0) {
            goto out;
        }
        snprintf(r->name, sizeof r->name, "%s", id);
        rs->name = r->name;
        rs->flash_path = r->name;
        rs->file.fd = -1;
        pthread_mutex_init(&rs->rot_lock, NULL);
        rs->opt_rot_attempts = attempts;
        rs->opt_rot_trial_ms = trial_ms;
        if (skew_ms > 0 && trial_ms > 0) {
            /* The robot's clock runs off by skew in [-MS, +MS]: it measures its trial from a
             * start that is that far from the server's. */
            long skew = (long)(draw(fl.seed, i, 4) % (2 * skew_ms + 1)) - (long)skew_ms;
            long t = (long)trial_ms + skew;
            rs->opt_rot_trial_ms = t > 1 ? (unsigned long)t : 1;
        }
        rs->wss.opt_stack = (size_t)stack_kb * 1024u;
        r->offline = draw(fl.seed, i, 1) % 10000u < offline_pct;
        rs->wss.opt_disabled = r->offline; /* never connects: the control plane sees it offline */
        r->drop_planned = !r->offline && draw(fl.seed, i, 2) % 10000u < drop_pct;
        rs->fault.drop_commit = r->drop_planned;
        if (!r->offline && draw(fl.seed, i, 3) % 10000u < cut_pct) {
            uint64_t d = draw(fl.seed, i, 5);
            rs->fault.cut_at_rot = 1u + (unsigned long)(d % FLEET_CUT_SPAN);
            rs->fault.cut_torn = (int)((d >> 32) & 1u);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    the_fleet = &fl;
    unsigned long started = 0;
    uint64_t t_start = fkd_net_now_ms();
    if (threads > 0) {
        /* Every robot a task, powered on at its place in the ramp (fleet_sched.h). */
        if (fleet_sched_new(&sched, (unsigned)threads, (unsigned)connects) != 0) {
            code = 4;
            goto out;
        }
        for (unsigned long i = 0; i < n; i++) {
            uint64_t at = ramp > 0 ? t_start + (uint64_t)i * 1000u / ramp : t_start;
            if (fleet_sched_add(sched, i, (size_t)stack_kb * 1024u, at, robot_task, &fl.robots[i],
                                &fl.robots[i].rs) != 0) {
                fprintf(stderr, "robot-sim: robot %lu: cannot make its task (out of memory)\n", i);
                break;
            }
            started++;
        }
        if (started < n || fleet_sched_start(sched) != 0) {
            fprintf(stderr, "robot-sim: cannot start the fleet's threads\n");
            started = 0;
        }
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    (void)pthread_attr_setstacksize(&attr, (size_t)stack_kb * 1024u);
    for (unsigned long i = 0; i < n && threads == 0; i++) {
        while (ramp > 0 && fkd_net_now_ms() < t_start + (uint64_t)i * 1000u / ramp &&
               !robot_sim_stop_requested()) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        int prc = pthread_create(&fl.robots[i].thread, &attr, robot_thread, &fl.robots[i]);
        if (prc != 0) {
            fprintf(stderr, "robot-sim: robot %lu: cannot start its thread (%s)\n", i,
                    strerror(prc));
            break;
        }
        fl.robots[i].started = 1;
        started++;
    }
    pthread_attr_destroy(&attr);
    if (threads > 0) {
        fprintf(stderr,
                "robot-sim: fleet of %lu robots started as tasks on %lu threads (%lu KiB "
                "stacks)\n",
                started, threads, stack_kb);
    } else {
        fprintf(stderr, "robot-sim: fleet of %lu robots started (%lu KiB stacks)\n", started,
                stack_kb);
    }
    uint64_t deadline = run_ms != 0 ? fkd_net_now_ms() + run_ms : UINT64_MAX;
    struct fleet_counts c;
    unsigned long booted_ever = 0;
    count(&fl, &c);
    while (started == n && !robot_sim_stop_requested() && fkd_net_now_ms() < deadline) {
        struct timespec ts = {0, 500 * 1000 * 1000};
        nanosleep(&ts, NULL);
        count(&fl, &c); /* the last counts before the stop: who was connected then */
        booted_ever = c.booted > booted_ever ? c.booted : booted_ever;
        if (status != NULL) {
            write_status(status, n, &c);
        }
    }
    robot_sim_stop_all();
    if (sched != NULL) {
        fleet_sched_join_all(sched);
        struct fleet_sched_stats ss;
        fleet_sched_get_stats(sched, &ss);
        fprintf(stderr,
                "robot-sim: fleet scheduler: %u threads, %llu task switches, %llu socket "
                "waits, %llu connection attempts queued for a slot\n",
                ss.threads, ss.switches, ss.waits, ss.queued);
    }
    for (unsigned long i = 0; i < n; i++) {
        if (fl.robots[i].started) {
            pthread_join(fl.robots[i].thread, NULL);
        }
    }
    struct fleet_counts fin;
    count(&fl, &fin);
    memcpy(c.rot, fin.rot, sizeof c.rot); /* rotation states as the robots left them */
    c.power_cuts = fin.power_cuts;
    c.dropped = fin.dropped;
    print_summary(n, booted_ever, &c);
    code = started == n ? 0 : 4;
    for (unsigned long i = 0; i < n && code == 0; i++) {
        if (fl.robots[i].code == 3) {
            code = 3;
        }
    }
out:
    fleet_sched_free(sched);
    if (fl.robots != NULL) {
        for (unsigned long i = 0; i < fl.n; i++) {
            if (fl.robots[i].flash != NULL) {
                fk_wipe(fl.robots[i].flash, FLEET_FLASH_SIZE);
                free(fl.robots[i].flash);
            }
        }
        free(fl.robots);
    }
    for (size_t i = 0; i < nnames; i++) {
        free(names[i]);
    }
    free(names);
    if (fl.sdk != NULL) {
        fk_wipe(fl.sdk, FLEET_SDK_MAX);
        free(fl.sdk);
    }
    free(fl.svc_argv);
    return code;
}
