/* provision-keys batch: mint every device of a CSV, idempotent and crash-safe.
 *
 * The engine (CSV validation, chunks, worker threads, durable per-chunk commits; the design
 * is at the top of src/batch/batch.c) is the batch library, fleetkey/batch.h. This file
 * parses the arguments, prints the CSV problems, the progress line and the summary, holds
 * the crash-test hooks and maps the result to an exit code. */
#include "cli.h"
#include "fleetkey/batch.h"
#include "fleetkey/inventory.h"
#include "fleetkey/keys.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define ERRORS_SHOWN 20

static const char help[] =
    "usage: provision-keys batch --csv devices.csv --output-dir keys/ [--jobs N]\n"
    "         [--encrypt-nvs] [--ota-key PEM] [--inventory PATH] [--nvs-size SIZE] [--json]\n"
    "         [--ca DIR [--cert-days N]]\n"
    "\n"
    "Mints one device per CSV row, as `generate` does, named by device id in OUTPUT-DIR:\n"
    "robot-XXXXXXXXXXXX.json, .nvs.bin and (with --encrypt-nvs) .nvs_keys.bin, all 0600.\n"
    "All devices trust one fleet OTA signing key: --ota-key PEM, or OUTPUT-DIR/\n"
    "ota_signing.key.pem (0600), created on the first run and reused afterwards.\n"
    "\n"
    "CSV: a header row naming the columns, then one device per row (RFC 4180 quoting):\n"
    "  mac            required, AA:BB:CC:DD:EE:FF (or aa-bb-...), unique\n"
    "  name           optional display name (at most 64 bytes)\n"
    "  wifi_ssid      optional (1-32 bytes); with it the image gets namespace wifi\n"
    "  wifi_password  optional (at most 64 bytes); needs wifi_ssid\n"
    "Any CSV error stops the run before anything is written, naming file:line: column.\n"
    "\n"
    "Idempotent and crash-safe: run the same command again after an interruption (Ctrl-C,\n"
    "kill, power loss) and it finishes the missing devices; a device recorded in the\n"
    "inventory is never minted again.\n"
    "\n"
    "  --ca DIR          also issue each device an mTLS certificate from the CA in DIR:\n"
    "                    certificate, key and CA chain go into its image (namespace mtls,\n"
    "                    DER), the certificate to robot-XXXXXXXXXXXX.crt.pem (0644), the\n"
    "                    key nowhere else; use --encrypt-nvs in production\n"
    "  --cert-days N     certificate validity (default: the CA's device default)\n"
    "  --jobs N          worker threads (default: the number of CPUs)\n"
    "  --inventory PATH  inventory database (default OUTPUT-DIR/inventory.db), or a\n"
    "                    PostgreSQL URI postgresql://USER@HOST/DB\n"
    "  --json            print the summary as JSON on stdout\n"
    "  --chunk N         devices per durable commit (default: 256, growing to 2048 while\n"
    "                    commits would hold up minting)\n";

enum {
    OPT_CSV = 256,
    OPT_OUTDIR,
    OPT_JOBS,
    OPT_ENCRYPT,
    OPT_OTA_KEY,
    OPT_INVENTORY,
    OPT_NVS_SIZE,
    OPT_JSON,
    OPT_CHUNK,
    OPT_CA,
    OPT_CERT_DAYS,
    OPT_HELP
};

static const struct option opts[] = {
    {"csv", required_argument, NULL, OPT_CSV},
    {"output-dir", required_argument, NULL, OPT_OUTDIR},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"encrypt-nvs", no_argument, NULL, OPT_ENCRYPT},
    {"ota-key", required_argument, NULL, OPT_OTA_KEY},
    {"inventory", required_argument, NULL, OPT_INVENTORY},
    {"nvs-size", required_argument, NULL, OPT_NVS_SIZE},
    {"json", no_argument, NULL, OPT_JSON},
    {"chunk", required_argument, NULL, OPT_CHUNK},
    {"ca", required_argument, NULL, OPT_CA},
    {"cert-days", required_argument, NULL, OPT_CERT_DAYS},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static volatile sig_atomic_t interrupted;

/* Fault injection for the crash test (tests/integration/batch/crash.sh), read once at start:
 *   FK_TEST_KILL_AFTER_FILES=N    SIGKILL this process once N devices' files are written
 *                                 (files on disk, no inventory row yet)
 *   FK_TEST_KILL_BEFORE_COMMIT=K  SIGKILL right before the K-th chunk commit (files synced,
 *                                 rows not committed)
 * Both model a crash or power cut at the worst moment; unset (the normal case) they cost one
 * integer compare. */
static long kill_after_files = -1;
static long kill_before_commit = -1;

static void maybe_die(long at, long now) {
    if (at >= 0 && now >= at) {
        raise(SIGKILL);
    }
}

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* The first ERRORS_SHOWN problems of the CSV are printed, all are counted. */
static void csv_error(void *user, const struct fk_diag *d) {
    int *count = user;
    if (*count < ERRORS_SHOWN) {
        char line[1024];
        fk_diag_format(d, line, sizeof line);
        fprintf(stderr, "provision-keys: %s\n", line);
    }
    (*count)++;
}

struct display {
    const char *csv;
    int progress; /* a progress line on stderr (a terminal, no --json) */
    struct timespec t0;
    double last_progress;
    size_t damaged;
};

static double seconds_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void progress(struct display *dp, const struct fk_batch_event *ev) {
    if (!dp->progress) {
        return;
    }
    double t = seconds_since(&dp->t0);
    if (!ev->final && t - dp->last_progress < 0.1) {
        return;
    }
    dp->last_progress = t;
    double rate = t > 0 ? (double)ev->minted / t : 0;
    double eta = rate > 0 ? (double)(ev->total - ev->done) / rate : 0;
    fprintf(stderr, "\r\033[Kbatch: %zu/%zu devices  %.0f/s  ETA %.0fs", ev->done, ev->total, rate,
            eta);
    if (ev->final) {
        fputs("\r\033[K", stderr);
    }
    fflush(stderr);
}

static void on_event(void *user, const struct fk_batch_event *ev) {
    struct display *dp = user;
    switch (ev->kind) {
    case FK_BATCH_EV_DAMAGED:
        if (dp->damaged++ < ERRORS_SHOWN) {
            fprintf(stderr, "provision-keys: %s:%ld: %s is recorded as minted but %s\n", dp->csv,
                    ev->device->line, ev->device->id, ev->why);
        }
        break;
    case FK_BATCH_EV_SUPERSEDED:
        fprintf(stderr,
                "provision-keys batch: revoked %zu certificate(s) of devices minted again "
                "(superseded)\n",
                ev->count);
        break;
    case FK_BATCH_EV_MINTING: {
        clock_gettime(CLOCK_MONOTONIC, &dp->t0);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        break;
    }
    case FK_BATCH_EV_FILES: /* a worker thread: maybe_die only reads */
        maybe_die(kill_after_files, (long)ev->count);
        break;
    case FK_BATCH_EV_COMMIT:
        maybe_die(kill_before_commit, (long)ev->count);
        break;
    case FK_BATCH_EV_PROGRESS:
        progress(dp, ev);
        break;
    }
}

int fk_cmd_batch(int argc, char **argv) {
    const char *csv = NULL;
    const char *outdir = NULL;
    const char *ota_path = NULL;
    const char *inv_path = NULL;
    const char *ca_dir = NULL;
    unsigned long long cert_days = 0;
    unsigned long long nvs_size = FK_KEYS_NVS_SIZE;
    unsigned long long jobs = 0;
    unsigned long long chunk_size = 0; /* adaptive */
    int encrypt = 0;
    int json = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CSV:
            csv = optarg;
            break;
        case OPT_OUTDIR:
            outdir = optarg;
            break;
        case OPT_ENCRYPT:
            encrypt = 1;
            break;
        case OPT_OTA_KEY:
            ota_path = optarg;
            break;
        case OPT_INVENTORY:
            inv_path = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_CA:
            ca_dir = optarg;
            break;
        case OPT_CERT_DAYS:
            if (fk_cli_parse_cert_days("batch", optarg, &cert_days) != 0) {
                return FK_EXIT_USAGE;
            }
            break;
        case OPT_JOBS:
            if (fk_cli_parse_size(optarg, &jobs) != 0 || jobs < 1 || jobs > FK_BATCH_JOBS_MAX) {
                return fk_cli_usage_error("batch", "--jobs: 1 to %d, not '%s'", FK_BATCH_JOBS_MAX,
                                          optarg);
            }
            break;
        case OPT_CHUNK:
            if (fk_cli_parse_size(optarg, &chunk_size) != 0 || chunk_size < 1 ||
                chunk_size > FK_BATCH_CHUNK_MAX) {
                return fk_cli_usage_error("batch", "--chunk: 1 to 100000, not '%s'", optarg);
            }
            break;
        case OPT_NVS_SIZE:
            if (fk_cli_parse_nvs_size("batch", optarg, &nvs_size) != 0) {
                return FK_EXIT_USAGE;
            }
            break;
        case OPT_HELP:
            fputs(help, stdout);
            return FK_EXIT_OK;
        default:
            return fk_cli_usage_error("batch", "unknown option");
        }
    }
    if (optind != argc) {
        return fk_cli_usage_error("batch", "unexpected argument '%s'", argv[optind]);
    }
    if (csv == NULL || outdir == NULL) {
        return fk_cli_usage_error("batch", "--csv and --output-dir are required");
    }
    if (cert_days != 0 && ca_dir == NULL) {
        return fk_cli_usage_error("batch", "--cert-days needs --ca");
    }
    if (ca_dir != NULL && !encrypt) {
        fprintf(stderr, "provision-keys batch: warning: --ca without --encrypt-nvs puts each "
                        "device's mTLS private key in a plain NVS image; production images "
                        "must be encrypted\n");
    }
    const char *hook = getenv("FK_TEST_KILL_AFTER_FILES");
    kill_after_files = hook != NULL ? strtol(hook, NULL, 10) : -1;
    hook = getenv("FK_TEST_KILL_BEFORE_COMMIT");
    kill_before_commit = hook != NULL ? strtol(hook, NULL, 10) : -1;

    int ret = FK_EXIT_FAIL;
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_diag diag;
    struct fk_batch_csv *data = NULL;
    struct fk_batch_result res;
    struct display dp;
    memset(&res, 0, sizeof res);
    memset(&dp, 0, sizeof dp);
    fk_diag_init(&diag);
    dp.csv = csv;
    dp.progress = fk_cli_stderr_is_tty() && !json;

    /* 1. Everything that can be wrong with the input, before anything is written. */
    int shown = 0;
    int errors = 0;
    if (fk_batch_csv_load(csv, csv_error, &shown, &data, &errors, &diag) != FK_OK) {
        rc = FK_E_IO;
        goto out;
    }
    if (errors > 0) {
        if (errors > ERRORS_SHOWN) {
            fprintf(stderr, "provision-keys: ... %d errors in all\n", errors);
        }
        fprintf(stderr, "provision-keys: %s: nothing was written\n", csv);
        rc = FK_OK; /* already reported */
        goto out;
    }

    /* 2. The run: checks, then minting in durable chunks. */
    size_t ndev = 0;
    const struct fk_batch_device *devs = fk_batch_csv_devices(data, &ndev);
    struct fk_batch_opts o = {.output_dir = outdir,
                              .ota_key_path = ota_path,
                              .inventory_path = inv_path,
                              .ca_dir = ca_dir,
                              .cert_days = (unsigned)cert_days,
                              .encrypt_nvs = encrypt,
                              .nvs_size = (size_t)nvs_size,
                              .jobs = (unsigned)jobs,
                              .chunk = (size_t)chunk_size,
                              .stop = &interrupted,
                              .on_event = on_event,
                              .user = &dp};
    FK_GUARD(fk_batch_run(&o, devs, ndev, &res, &diag));

    /* 3. Summary. */
    double secs = res.seconds;
    double rate = secs > 0 ? (double)res.minted / secs : 0;
    int complete = res.complete;
    if (json) {
        cJSON *oj = cJSON_CreateObject();
        FK_ENSURE(oj != NULL, FK_E_NOMEM);
        cJSON_AddBoolToObject(oj, "ok", complete);
        cJSON_AddBoolToObject(oj, "interrupted", !complete);
        cJSON_AddNumberToObject(oj, "devices", (double)res.total);
        cJSON_AddNumberToObject(oj, "minted", (double)res.minted);
        cJSON_AddNumberToObject(oj, "already_complete", (double)res.skipped);
        cJSON_AddNumberToObject(oj, "remaining", (double)(res.total - res.skipped - res.minted));
        cJSON_AddNumberToObject(oj, "seconds", secs);
        cJSON_AddNumberToObject(oj, "devices_per_second", rate);
        cJSON_AddNumberToObject(oj, "jobs", (double)res.jobs);
        cJSON_AddNumberToObject(oj, "commit_seconds", res.commit_seconds);
        cJSON_AddNumberToObject(oj, "commit_cpu_seconds", res.commit_cpu_seconds);
        cJSON_AddNumberToObject(oj, "chunks", (double)res.chunks);
        cJSON_AddNumberToObject(oj, "chunk", (double)res.chunk);
        cJSON_AddStringToObject(oj, "durability", res.durability != NULL ? res.durability : "");
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) {
            cJSON_AddNumberToObject(oj, "max_rss_kib", (double)ru.ru_maxrss);
            /* CPU of the whole process (CSV included), all threads: unlike devices/s it
             * hardly depends on what else the machine runs. */
            cJSON_AddNumberToObject(oj, "cpu_user_seconds",
                                    (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6);
            cJSON_AddNumberToObject(oj, "cpu_system_seconds",
                                    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
        }
        cJSON_AddStringToObject(oj, "output_dir", outdir);
        char inv_name[512]; /* a URI's password masked */
        fk_inventory_location_display(res.inventory_path, inv_name, sizeof inv_name);
        cJSON_AddStringToObject(oj, "inventory", inv_name);
        cJSON_AddStringToObject(oj, "ota_key", res.ota_key_path);
        cJSON_AddBoolToObject(oj, "ota_key_created", res.ota_key_created);
        cJSON_AddStringToObject(oj, "ota_public_key_fingerprint", res.ota_fingerprint);
        cJSON_AddBoolToObject(oj, "nvs_encrypted", encrypt);
        cJSON_AddBoolToObject(oj, "mtls", ca_dir != NULL);
        cJSON_AddNumberToObject(oj, "mtls_certs_superseded", (double)res.superseded);
        char *text = cJSON_PrintUnformatted(oj);
        cJSON_Delete(oj);
        FK_ENSURE(text != NULL, FK_E_NOMEM);
        puts(text);
        cJSON_free(text);
    } else {
        printf("batch: %zu devices in %s: %zu minted, %zu already complete%s; %.2f s, %.0f "
               "devices/s (%u jobs); fleet OTA key %s%s\n",
               res.total, outdir, res.minted, res.skipped,
               complete ? "" : ", INTERRUPTED (run the same command again to finish)", secs, rate,
               res.jobs, res.ota_fingerprint, res.ota_key_created ? " (new)" : "");
    }
    if (!complete) {
        fprintf(stderr,
                "provision-keys: interrupted after %zu of %zu devices; run the same "
                "command again to finish\n",
                res.skipped + res.minted, res.total);
        rc = FK_OK;
        goto out;
    }
    ret = FK_EXIT_OK;
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        if (dp.progress) {
            fputs("\r\033[K", stderr);
        }
        ret = fk_cli_fail(&diag, rc);
    }
    fk_batch_result_clear(&res);
    fk_batch_csv_free(data);
    return ret;
}
