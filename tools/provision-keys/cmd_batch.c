/* provision-keys batch: mint every device of a CSV, idempotent and crash-safe.
 *
 * Crash-safety design (docs/provision-keys.md, "Crash safety"):
 *   - The whole CSV is read and validated first; any error stops before a byte is written.
 *   - The committed inventory row of a device is its commit point. Files are written first
 *     (each atomically: temp + rename, so a file is old or new, never a prefix), made durable
 *     for a whole chunk at once with one syncfs(), and only then are the chunk's rows, their
 *     credentials and audit entries committed in one SQLite transaction.
 *   - A re-run skips every device whose row is committed (after a cheap check that its
 *     manifest is still the one recorded: SHA-256 of the file, and that the image exists);
 *     it never re-mints one. A device with files but no committed row was interrupted before
 *     its commit point: it is minted again from scratch and its files are replaced, so
 *     nothing of the interrupted attempt survives (stale optional files are removed too).
 *   - Temp files left by a killed run are removed at start, under an exclusive lock on
 *     OUTPUT_DIR/.batch.lock that also keeps two batches from minting into one directory.
 *   - The fleet OTA key is written (synced) before any device refers to it and reused when
 *     present, so re-runs and interrupted runs keep one fleet key.
 *
 * Throughput: worker threads (--jobs) mint and write chunk k+1 while the main thread syncs
 * and commits chunk k; SQLite is only ever touched by the main thread. */
#define _GNU_SOURCE /* syncfs() */
#include "cli.h"
#include "fleetkey/csv.h"
#include "fleetkey/inventory.h"
#include "fleetkey/keys.h"
#include "fleetkey/pki.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CSV_MAX (64u * 1024u * 1024u)
#define ROWS_MAX 1000000u
#define ERRORS_SHOWN 20
#define JOBS_MAX 64
#define CHUNK_DEFAULT 256
#define ACTOR "provision-keys batch"

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
    "  --inventory PATH  inventory database (default OUTPUT-DIR/inventory.db)\n"
    "  --json            print the summary as JSON on stdout\n"
    "  --chunk N         devices per durable commit (default 256)\n";

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
static atomic_long files_written;

static void maybe_die(long at, long now) {
    if (at >= 0 && now >= at) {
        raise(SIGKILL);
    }
}

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* ---- CSV (RFC 4180) --------------------------------------------------------------------- */

struct record {
    long line; /* line the record starts on */
    size_t nf;
    char **f; /* NUL-terminated fields (may hold a password: wiped on free) */
};

static void record_free(struct record *r) {
    for (size_t i = 0; i < r->nf; i++) {
        fk_free_secret(r->f[i], strlen(r->f[i]) + 1);
    }
    free(r->f);
    r->f = NULL;
    r->nf = 0;
}

/* Reads one record (fleetkey/csv.h, strict dialect: RFC 4180). Returns 1 with a record, 0 at
 * the end of input, -1 on error (diag set). */
static int csv_next(struct fk_csv *csv, const char *file, struct record *r, struct fk_diag *diag) {
    memset(r, 0, sizeof *r);
    for (;;) {
        struct fk_csv_field f;
        enum fk_csv_status st = fk_csv_next(csv, &f);
        if (st == FK_CSV_END) {
            return 0;
        }
        if (st == FK_CSV_ERROR) {
            size_t n = csv->error_field + 1;
            long at = csv->error_line;
            switch (csv->error) {
            case FK_CSV_E_UNCLOSED:
                fk_diag_at(diag, FK_E_PARSE, file, at, "field %zu: quoted field is never closed",
                           n);
                break;
            case FK_CSV_E_AFTER_QUOTE:
                fk_diag_at(diag, FK_E_PARSE, file, at,
                           "field %zu: expected ',' or the end of the line after a closing quote",
                           n);
                break;
            case FK_CSV_E_STRAY_QUOTE:
                fk_diag_at(diag, FK_E_PARSE, file, at,
                           "field %zu: expected a quote only at the start of a field "
                           "(write \"\" inside a quoted field)",
                           n);
                break;
            case FK_CSV_E_NUL:
                fk_diag_at(diag, FK_E_PARSE, file, at, "field %zu: NUL byte", n);
                break;
            default:
                fk_diag_at(diag, FK_E_PARSE, file, at, "expected CR LF or LF line ends");
                break;
            }
            goto fail;
        }
        r->line = f.line;
        char **nf = realloc(r->f, (r->nf + 1) * sizeof *nf);
        if (nf == NULL) {
            goto nomem;
        }
        r->f = nf;
        /* Allocated at its final size: no copy of a password is left behind by growing. */
        char *v = malloc(f.len + 1);
        if (v == NULL) {
            goto nomem;
        }
        if (fk_csv_field_value(csv, &f, v, f.len + 1, NULL) != FK_OK) {
            fk_free_secret(v, f.len + 1);
            goto nomem;
        }
        r->f[r->nf++] = v;
        if (f.last) {
            return 1;
        }
    }
nomem:
    fk_diag_set(diag, FK_E_NOMEM, "out of memory reading %s", file);
fail:
    record_free(r);
    return -1;
}

/* ---- devices from the CSV ---------------------------------------------------------------- */

struct dev {
    long line;
    uint8_t mac[FK_MAC_LEN];
    char id[FK_DEVICE_ID_SIZE];
    const char *name; /* NULL when the column is absent or the field empty */
    const char *ssid;
    const char *pass;
};

struct csv_data {
    struct record *recs;
    size_t nrecs;
    struct dev *devs;
    size_t ndev;
};

static void csv_data_free(struct csv_data *c) {
    for (size_t i = 0; i < c->nrecs; i++) {
        record_free(&c->recs[i]);
    }
    free(c->recs);
    free(c->devs);
    memset(c, 0, sizeof *c);
}

static void show_value(const char *v, char *out, size_t size) {
    size_t n = strlen(v);
    if (n > 40) {
        snprintf(out, size, "'%.40s...'", v);
    } else {
        snprintf(out, size, "'%s'", v);
    }
    for (char *p = out; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20) {
            *p = '?';
        }
    }
}

static int errors_report(int *count, const struct fk_diag *d) {
    if (*count < ERRORS_SHOWN) {
        char line[1024];
        fk_diag_format(d, line, sizeof line);
        fprintf(stderr, "provision-keys: %s\n", line);
    }
    (*count)++;
    return 0;
}

static int cmp_mac(const void *a, const void *b) {
    const struct dev *x = *(const struct dev *const *)a;
    const struct dev *y = *(const struct dev *const *)b;
    int c = memcmp(x->mac, y->mac, FK_MAC_LEN);
    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/* Reads and validates the whole CSV. Prints every error (up to ERRORS_SHOWN); returns the
 * number of errors, or -1 when the file itself cannot be read (diag set). */
static int csv_load(const char *path, struct csv_data *out, struct fk_diag *diag) {
    uint8_t *buf = NULL;
    size_t len = 0;
    int errors = 0;
    struct fk_diag d;
    memset(out, 0, sizeof *out);
    if (fk_file_read(path, CSV_MAX, &buf, &len, diag) != FK_OK) {
        return -1;
    }
    struct fk_csv csv;
    fk_csv_init(&csv, (const char *)buf, len, FK_CSV_STRICT);
    size_t cap = 0;
    for (;;) {
        struct record r;
        fk_diag_init(&d);
        int got = csv_next(&csv, path, &r, &d);
        if (got < 0) {
            errors_report(&errors, &d);
            break; /* after a quoting error the rest cannot be trusted */
        }
        if (got == 0) {
            break;
        }
        if (r.nf == 1 && r.f[0][0] == '\0') {
            record_free(&r); /* blank line */
            continue;
        }
        if (out->nrecs == cap) {
            size_t ncap = cap == 0 ? 1024 : cap * 2;
            struct record *nr = realloc(out->recs, ncap * sizeof *nr);
            if (nr == NULL) {
                record_free(&r);
                fk_diag_set(diag, FK_E_NOMEM, "out of memory");
                fk_free_secret(buf, len);
                return -1;
            }
            out->recs = nr;
            cap = ncap;
        }
        out->recs[out->nrecs++] = r;
        if (out->nrecs > ROWS_MAX + 1) {
            fk_diag_at(&d, FK_E_TOOBIG, path, r.line, "more than %u devices", ROWS_MAX);
            errors_report(&errors, &d);
            break;
        }
    }
    fk_free_secret(buf, len);
    /* After a quoting error the rows read so far are still checked, so one run reports as
     * much as it can. */
    if (out->nrecs == 0) {
        if (errors == 0) {
            fk_diag_at(&d, FK_E_PARSE, path, 1,
                       "header: expected a header row naming the "
                       "columns (at least mac)");
            errors_report(&errors, &d);
        }
        return errors;
    }

    /* Header. */
    const struct record *h = &out->recs[0];
    int col_mac = -1, col_name = -1, col_ssid = -1, col_pass = -1;
    for (size_t i = 0; i < h->nf; i++) {
        char name[64];
        const char *s = h->f[i];
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        snprintf(name, sizeof name, "%s", s);
        for (size_t n = strlen(name); n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t');) {
            name[--n] = '\0';
        }
        int *slot = strcmp(name, "mac") == 0             ? &col_mac
                    : strcmp(name, "name") == 0          ? &col_name
                    : strcmp(name, "wifi_ssid") == 0     ? &col_ssid
                    : strcmp(name, "wifi_password") == 0 ? &col_pass
                                                         : NULL;
        char shown[64];
        show_value(h->f[i], shown, sizeof shown);
        fk_diag_init(&d);
        if (slot == NULL) {
            fk_diag_at(&d, FK_E_PARSE, path, h->line,
                       "header: column %zu: expected one of mac, name, wifi_ssid, wifi_password, "
                       "found %s",
                       i + 1, shown);
            errors_report(&errors, &d);
        } else if (*slot >= 0) {
            fk_diag_at(&d, FK_E_PARSE, path, h->line, "header: column %s appears twice", name);
            errors_report(&errors, &d);
        } else {
            *slot = (int)i;
        }
    }
    if (col_mac < 0) {
        fk_diag_at(&d, FK_E_PARSE, path, h->line, "header: expected a column named mac");
        errors_report(&errors, &d);
    }
    if (col_pass >= 0 && col_ssid < 0) {
        fk_diag_at(&d, FK_E_PARSE, path, h->line,
                   "header: wifi_password: expected a wifi_ssid column too");
        errors_report(&errors, &d);
    }
    if (col_mac < 0 || (col_pass >= 0 && col_ssid < 0)) {
        return errors;
    }

    /* Rows. */
    out->devs = calloc(out->nrecs, sizeof *out->devs);
    if (out->devs == NULL) {
        fk_diag_set(diag, FK_E_NOMEM, "out of memory");
        return -1;
    }
    for (size_t i = 1; i < out->nrecs; i++) {
        const struct record *r = &out->recs[i];
        struct dev *dv = &out->devs[out->ndev];
        fk_diag_init(&d);
        if (r->nf != h->nf) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line,
                       "expected %zu fields as in the header, found %zu", h->nf, r->nf);
            errors_report(&errors, &d);
            continue;
        }
        dv->line = r->line;
        const char *mac = r->f[col_mac];
        char mac_trim[32];
        while (*mac == ' ') {
            mac++;
        }
        snprintf(mac_trim, sizeof mac_trim, "%.31s", mac);
        for (size_t n = strlen(mac_trim); n > 0 && mac_trim[n - 1] == ' ';) {
            mac_trim[--n] = '\0';
        }
        struct fk_diag why;
        fk_diag_init(&why);
        if (strlen(mac) >= sizeof mac_trim || fk_keys_mac_parse(mac_trim, dv->mac, &why) != FK_OK) {
            char shown[64];
            show_value(r->f[col_mac], shown, sizeof shown);
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "mac: %s, found %s",
                       why.msg[0] != '\0' ? why.msg : "expected AA:BB:CC:DD:EE:FF", shown);
            errors_report(&errors, &d);
            continue;
        }
        fk_keys_device_id(dv->mac, dv->id);
        dv->name = col_name >= 0 && r->f[col_name][0] != '\0' ? r->f[col_name] : NULL;
        dv->ssid = col_ssid >= 0 && r->f[col_ssid][0] != '\0' ? r->f[col_ssid] : NULL;
        dv->pass = col_pass >= 0 ? r->f[col_pass] : "";
        if (dv->name != NULL && strlen(dv->name) > FK_KEYS_NAME_MAX) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "name: expected at most %d bytes",
                       FK_KEYS_NAME_MAX);
            errors_report(&errors, &d);
            continue;
        }
        if (dv->ssid != NULL && strlen(dv->ssid) > FK_KEYS_SSID_MAX) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "wifi_ssid: expected 1 to %d bytes",
                       FK_KEYS_SSID_MAX);
            errors_report(&errors, &d);
            continue;
        }
        if (strlen(dv->pass) > FK_KEYS_WIFI_PASS_MAX) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "wifi_password: expected at most %d bytes",
                       FK_KEYS_WIFI_PASS_MAX);
            errors_report(&errors, &d);
            continue;
        }
        if (dv->ssid == NULL && dv->pass[0] != '\0') {
            fk_diag_at(&d, FK_E_PARSE, path, r->line,
                       "wifi_password: expected a wifi_ssid on the same row");
            errors_report(&errors, &d);
            continue;
        }
        out->ndev++;
    }
    if (errors == 0 && out->ndev == 0) {
        fk_diag_at(&d, FK_E_PARSE, path, 2, "expected at least one device row");
        errors_report(&errors, &d);
    }
    /* Duplicates: sort pointers by MAC (then line) and compare neighbours. */
    struct dev **by_mac = malloc(out->ndev * sizeof *by_mac);
    if (by_mac == NULL) {
        fk_diag_set(diag, FK_E_NOMEM, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < out->ndev; i++) {
        by_mac[i] = &out->devs[i];
    }
    qsort(by_mac, out->ndev, sizeof *by_mac, cmp_mac);
    for (size_t i = 1; i < out->ndev; i++) {
        if (memcmp(by_mac[i]->mac, by_mac[i - 1]->mac, FK_MAC_LEN) == 0) {
            char m[18];
            fk_keys_mac_format(by_mac[i]->mac, m);
            fk_diag_at(&d, FK_E_PARSE, path, by_mac[i]->line,
                       "mac: expected a MAC not used before, found %s (already on line %ld)", m,
                       by_mac[i - 1]->line);
            errors_report(&errors, &d);
        }
    }
    free(by_mac);
    return errors;
}

/* ---- the run ------------------------------------------------------------------------------ */

struct result {
    enum fk_err rc;
    struct fk_diag diag;
    struct fk_manifest m; /* PSK wiped: only fingerprints and names are used afterwards */
    char manifest_sha[65];
};

struct run {
    const char *outdir;
    const struct fk_ota_key *fleet;
    int encrypt;
    size_t nvs_size;
    /* --ca: one CA object shared by the workers, used under ca_lock (pki objects are not
     * thread-safe; the CA index append is serialised anyway by its directory lock). */
    struct fk_pki_ca *ca;
    const uint8_t *chain;
    size_t chain_len;
    unsigned cert_days;
    pthread_mutex_t ca_lock;
    int progress;
    size_t total;   /* CSV devices */
    size_t skipped; /* already complete */
    size_t minted;  /* committed in this run */
    struct timespec t0;
    double last_progress;
};

struct chunk {
    struct run *run;
    struct dev **devs;
    struct result *res;
    size_t n;
    atomic_size_t next;
    atomic_int failed;
    pthread_t threads[JOBS_MAX];
    int nthreads;
};

static void mint_one(struct chunk *c, size_t i) {
    struct dev *dv = c->devs[i];
    struct result *r = &c->res[i];
    struct fk_minted *m = NULL;
    fk_diag_init(&r->diag);
    struct fk_keys_mint_opts o = {.mac = dv->mac,
                                  .name = dv->name,
                                  .wifi_ssid = dv->ssid,
                                  .wifi_password = dv->ssid != NULL ? dv->pass : NULL,
                                  .ota = c->run->fleet,
                                  .encrypt_nvs = c->run->encrypt,
                                  .nvs_size = c->run->nvs_size};
    struct fk_pki_issued *issued = NULL;
    struct fk_keys_mtls blobs;
    r->rc = FK_OK;
    if (c->run->ca != NULL) {
        pthread_mutex_lock(&c->run->ca_lock);
        r->rc = fk_pki_mtls_issue(c->run->ca, dv->id, c->run->cert_days, c->run->chain,
                                  c->run->chain_len, &issued, &blobs, &o, &r->diag);
        pthread_mutex_unlock(&c->run->ca_lock);
    }
    if (r->rc == FK_OK) {
        r->rc = fk_keys_mint(&o, &m, &r->diag);
    }
    fk_pki_issued_free(issued); /* wipes the key: the image holds the only copy now */
    if (r->rc == FK_OK) {
        r->rc = fk_keys_minted_write(m, c->run->outdir, dv->id, FK_WRITE_NOSYNC, r->manifest_sha,
                                     &r->diag);
    }
    if (r->rc == FK_OK) {
        maybe_die(kill_after_files, atomic_fetch_add(&files_written, 1) + 1);
        r->m = *fk_keys_minted_manifest(m);
        fk_wipe(r->m.psk, sizeof r->m.psk);
    } else {
        if (r->diag.line == 0 && r->diag.file[0] == '\0') {
            fk_diag_at(&r->diag, r->rc, NULL, 0, "%s: %s", dv->id,
                       r->diag.msg[0] != '\0' ? r->diag.msg : fk_strerror(r->rc));
        }
        atomic_store(&c->failed, 1);
    }
    fk_keys_minted_free(m);
}

static void *worker(void *arg) {
    struct chunk *c = arg;
    for (;;) {
        if (atomic_load(&c->failed)) {
            break;
        }
        size_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n) {
            break;
        }
        mint_one(c, i);
    }
    return NULL;
}

static int chunk_start(struct chunk *c, int jobs) {
    atomic_store(&c->next, 0);
    atomic_store(&c->failed, 0);
    c->nthreads = 0;
    for (int t = 0; t < jobs && (size_t)t < c->n; t++) {
        if (pthread_create(&c->threads[t], NULL, worker, c) != 0) {
            break;
        }
        c->nthreads++;
    }
    return c->nthreads > 0 ? 0 : -1;
}

static void chunk_join(struct chunk *c) {
    for (int t = 0; t < c->nthreads; t++) {
        pthread_join(c->threads[t], NULL);
    }
    c->nthreads = 0;
}

static double seconds_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void progress(struct run *run, int final) {
    if (!run->progress) {
        return;
    }
    double t = seconds_since(&run->t0);
    if (!final && t - run->last_progress < 0.1) {
        return;
    }
    run->last_progress = t;
    size_t done = run->skipped + run->minted;
    double rate = t > 0 ? (double)run->minted / t : 0;
    double eta = rate > 0 ? (double)(run->total - done) / rate : 0;
    fprintf(stderr, "\r\033[Kbatch: %zu/%zu devices  %.0f/s  ETA %.0fs", done, run->total, rate,
            eta);
    if (final) {
        fputs("\r\033[K", stderr);
    }
    fflush(stderr);
}

static enum fk_err add_cred(struct fk_inventory *inv, const struct fk_manifest *m, const char *kind,
                            unsigned version, const char *fpr, const char *expires,
                            struct fk_diag *diag) {
    struct fk_inv_credential c;
    memset(&c, 0, sizeof c);
    memcpy(c.device_id, m->device_id, sizeof m->device_id);
    snprintf(c.kind, sizeof c.kind, "%s", kind);
    c.version = version;
    snprintf(c.fingerprint, sizeof c.fingerprint, "%s", fpr);
    memcpy(c.created_at, m->created_at, sizeof m->created_at);
    snprintf(c.expires_at, sizeof c.expires_at, "%s", expires);
    snprintf(c.state, sizeof c.state, "active");
    return fk_inventory_credential_add(inv, &c, diag);
}

/* Makes the chunk's files durable, then commits its rows: the commit point of every device
 * in it. */
static enum fk_err chunk_commit(struct run *run, struct chunk *c, int dirfd,
                                struct fk_inventory *inv, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    /* One syncfs() covers every file and rename of the chunk; fsync per file would cost
     * a journal commit each. */
    static long commits;
    FK_ENSURE(syncfs(dirfd) == 0,
              fk_diag_at(diag, FK_E_IO, run->outdir, 0, "syncfs: %s", strerror(errno)));
    maybe_die(kill_before_commit, ++commits);
    FK_GUARD(fk_inventory_begin(inv, diag));
    for (size_t i = 0; i < c->n; i++) {
        const struct fk_manifest *m = &c->res[i].m;
        struct fk_inv_device d;
        char detail[1024];
        memset(&d, 0, sizeof d);
        memcpy(d.id, m->device_id, sizeof m->device_id);
        memcpy(d.mac, m->mac, sizeof m->mac);
        memcpy(d.name, m->name, sizeof m->name);
        snprintf(d.state, sizeof d.state, "minted");
        snprintf(d.manifest, sizeof d.manifest, "%s.json", m->device_id);
        memcpy(d.manifest_sha256, c->res[i].manifest_sha, sizeof d.manifest_sha256);
        memcpy(d.created_at, m->created_at, sizeof m->created_at);
        FK_GUARD(fk_inventory_device_upsert(inv, &d, diag));
        FK_GUARD(add_cred(inv, m, "psk", m->psk_version, m->psk_fingerprint, "", diag));
        FK_GUARD(
            add_cred(inv, m, "ota_pubkey", m->ota_key_version, m->ota_key_fingerprint, "", diag));
        if (m->nvs_encrypted) {
            FK_GUARD(
                add_cred(inv, m, "nvs_keys", m->psk_version, m->nvs_keys_fingerprint, "", diag));
        }
        if (m->mtls_cert_fingerprint[0] != '\0') {
            FK_GUARD(add_cred(inv, m, "mtls_cert", m->psk_version, m->mtls_cert_fingerprint,
                              m->mtls_cert_not_after, diag));
        }
        snprintf(
            detail, sizeof detail,
            "{\"mac\":\"%s\",\"manifest_sha256\":\"%s\",\"psk_fingerprint\":\"%s\","
            "\"ota_public_key_fingerprint\":\"%s\",\"nvs_image_sha256\":\"%s\","
            "\"nvs_encrypted\":%s,\"mtls_cert_fingerprint\":\"%s\",\"mtls_cert_serial\":\"%s\"}",
            m->mac, c->res[i].manifest_sha, m->psk_fingerprint, m->ota_key_fingerprint,
            m->nvs_image_sha256, m->nvs_encrypted ? "true" : "false", m->mtls_cert_fingerprint,
            m->mtls_cert_serial);
        FK_GUARD(
            fk_inventory_audit_append(inv, ACTOR, "device.minted", m->device_id, detail, diag));
    }
    FK_GUARD(fk_inventory_commit(inv, diag));
    run->minted += c->n;
    for (size_t i = 0; i < c->n; i++) {
        fk_log(FK_LOG_DEBUG, "batch: psk %s minted for %s", c->res[i].m.psk_fingerprint,
               c->res[i].m.device_id);
    }
    rc = FK_OK;
out:
    fk_inventory_rollback(inv);
    return rc;
}

/* Removes NAME.tmp.PID.N files a killed run left (file.c's temp names). Runs under the
 * directory lock, so no live batch is writing them. */
static void remove_stale_temps(const char *dir, int dirfd) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *t = strstr(e->d_name, ".tmp.");
        if (t == NULL) {
            continue;
        }
        const char *p = t + 5;
        int dots = 0;
        int ok = *p != '\0';
        for (; *p != '\0'; p++) {
            if (*p == '.') {
                dots++;
            } else if (*p < '0' || *p > '9') {
                ok = 0;
            }
        }
        if (ok && dots == 1) {
            unlinkat(dirfd, e->d_name, 0);
        }
    }
    closedir(d);
}

struct committed {
    struct fk_inv_device *v;
    size_t n;
    size_t cap;
    int oom; /* a partial list must never be taken for the whole: it would re-mint */
};

static int collect_device(void *user, const struct fk_inv_device *d) {
    struct committed *c = user;
    if (c->n == c->cap) {
        size_t ncap = c->cap == 0 ? 1024 : c->cap * 2;
        struct fk_inv_device *nv = realloc(c->v, ncap * sizeof *nv);
        if (nv == NULL) {
            c->oom = 1;
            return 1;
        }
        c->v = nv;
        c->cap = ncap;
    }
    c->v[c->n++] = *d;
    return 0;
}

static int cmp_inv_id(const void *key, const void *elem) {
    return strcmp(key, ((const struct fk_inv_device *)elem)->id);
}

/* A committed device is "complete" when its manifest is byte for byte the one recorded and
 * its image is there. Cheap: one small file hashed, one stat. */
static int complete_ok(const char *outdir, const struct fk_inv_device *d, char *why,
                       size_t why_size) {
    char *path = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int ok = 0;
    if (fk_path_join(outdir, d->manifest[0] != '\0' ? d->manifest : d->id,
                     d->manifest[0] != '\0' ? "" : ".json", &path) != FK_OK) {
        snprintf(why, why_size, "out of memory");
        return 0;
    }
    if (fk_file_read(path, FK_MANIFEST_MAX, &buf, &len, NULL) != FK_OK) {
        snprintf(why, why_size, "its manifest %s is missing or unreadable", path);
        goto out;
    }
    char sha[65];
    fk_keys_sha256_hex(buf, len, sha);
    if (strcmp(sha, d->manifest_sha256) != 0) {
        snprintf(why, why_size, "its manifest %s differs from the one recorded", path);
        goto out;
    }
    free(path);
    path = NULL;
    struct stat st;
    if (fk_path_join(outdir, d->id, ".nvs.bin", &path) != FK_OK || stat(path, &st) != 0 ||
        st.st_size < 4096) {
        snprintf(why, why_size, "its NVS image %s is missing", path != NULL ? path : d->id);
        goto out;
    }
    ok = 1;
out:
    fk_free_secret(buf, len + 1);
    free(path);
    return ok;
}

static int cmp_dev_id(const void *a, const void *b) {
    return strcmp((*(struct dev *const *)a)->id, (*(struct dev *const *)b)->id);
}

static int cmp_key_dev(const void *key, const void *elem) {
    return strcmp(key, (*(struct dev *const *)elem)->id);
}

struct pending_set {
    struct dev **sorted;
    size_t n;
};

static int is_pending(void *user, const char *name) {
    const struct pending_set *p = user;
    return p->n > 0 && bsearch(name, p->sorted, p->n, sizeof *p->sorted, cmp_key_dev) != NULL;
}

/* The fleet key: --ota-key, or OUTDIR/ota_signing.key.pem (created once, synced, audited). */
static enum fk_err fleet_key(const char *outdir, struct fk_inventory *inv, struct fk_ota_key **key,
                             int *created, char **key_path, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char detail[256];
    FK_GUARD(fk_path_join(outdir, "ota_signing.key.pem", "", key_path));
    if (access(*key_path, F_OK) == 0) {
        return fk_keys_ota_load(*key_path, key, diag);
    }
    FK_GUARD(fk_keys_ota_generate(key));
    FK_GUARD(fk_keys_ota_write_pem(*key, *key_path, FK_WRITE_EXCL, diag));
    *created = 1;
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    char fpr[FK_FPR_LEN];
    FK_GUARD(fk_keys_ota_public_der(*key, der, sizeof der, &der_len));
    snprintf(detail, sizeof detail,
             "{\"file\":\"ota_signing.key.pem\",\"ota_public_key_fingerprint\":\"%s\"}",
             fk_fpr(der, der_len, fpr));
    FK_GUARD(fk_inventory_audit_append(inv, ACTOR, "ota_key.created", "fleet", detail, diag));
    rc = FK_OK;
out:
    return rc;
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
    unsigned long long chunk_size = CHUNK_DEFAULT;
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
            if (fk_cli_parse_size(optarg, &jobs) != 0 || jobs < 1 || jobs > JOBS_MAX) {
                return fk_cli_usage_error("batch", "--jobs: 1 to %d, not '%s'", JOBS_MAX, optarg);
            }
            break;
        case OPT_CHUNK:
            if (fk_cli_parse_size(optarg, &chunk_size) != 0 || chunk_size < 1 ||
                chunk_size > 100000) {
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
    if (jobs == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        jobs = n < 1 ? 1 : n > JOBS_MAX ? JOBS_MAX : (unsigned long long)n;
    }

    int ret = FK_EXIT_FAIL;
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_diag diag;
    struct csv_data data;
    struct fk_ota_key *fleet = NULL;
    struct fk_inventory *inv = NULL;
    struct committed done = {NULL, 0, 0, 0};
    struct dev **pending = NULL;
    struct dev **pending_sorted = NULL;
    uint8_t *chain = NULL;
    size_t chain_len = 0;
    size_t superseded = 0;
    struct result *res[2] = {NULL, NULL};
    struct chunk ch[2];
    char *default_inv = NULL;
    char *lock_path = NULL;
    char *key_path = NULL;
    int lock_fd = -1;
    int dirfd = -1;
    int key_created = 0;
    size_t npending = 0;
    size_t bad_complete = 0;
    struct run run;
    memset(&run, 0, sizeof run);
    pthread_mutex_init(&run.ca_lock, NULL);
    memset(&data, 0, sizeof data);
    memset(ch, 0, sizeof ch);
    fk_diag_init(&diag);

    /* 1. Everything that can be wrong with the input, before anything is written. */
    int errors = csv_load(csv, &data, &diag);
    if (errors < 0) {
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
    if (ota_path != NULL) {
        FK_GUARD(fk_keys_ota_load(ota_path, &fleet, &diag));
    }
    if (ca_dir != NULL) {
        FK_GUARD(fk_pki_mtls_open(ca_dir, &run.ca, &chain, &chain_len, &diag));
    }

    /* 2. The output directory, its lock, leftovers of a killed run, the inventory. */
    FK_GUARD(fk_mkdirs(outdir, 0700, &diag));
    FK_GUARD(fk_path_join(outdir, ".batch.lock", "", &lock_path));
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    FK_ENSURE(lock_fd >= 0, fk_diag_at(&diag, FK_E_IO, lock_path, 0, "%s", strerror(errno)));
    FK_ENSURE(
        flock(lock_fd, LOCK_EX | LOCK_NB) == 0,
        fk_diag_at(&diag, FK_E_STATE, outdir, 0, "another batch is writing into this directory"));
    dirfd = open(outdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FK_ENSURE(dirfd >= 0, fk_diag_at(&diag, FK_E_IO, outdir, 0, "%s", strerror(errno)));
    remove_stale_temps(outdir, dirfd);
    if (inv_path == NULL) {
        FK_GUARD(fk_path_join(outdir, "inventory.db", "", &default_inv));
        inv_path = default_inv;
    }
    FK_GUARD(fk_inventory_open(inv_path, &inv, &diag));
    if (fleet == NULL) {
        FK_GUARD(fleet_key(outdir, inv, &fleet, &key_created, &key_path, &diag));
    }

    /* 3. Which devices are complete (committed and intact), which are to be minted. */
    FK_GUARD(fk_inventory_device_list(inv, collect_device, &done, &diag));
    FK_ENSURE(!done.oom, FK_E_NOMEM);
    pending = malloc((data.ndev + 1) * sizeof *pending);
    FK_ENSURE(pending != NULL, FK_E_NOMEM);
    for (size_t i = 0; i < data.ndev; i++) {
        struct dev *dv = &data.devs[i];
        const struct fk_inv_device *row =
            done.n > 0 ? bsearch(dv->id, done.v, done.n, sizeof *done.v, cmp_inv_id) : NULL;
        if (row == NULL) {
            pending[npending++] = dv;
            continue;
        }
        char why[600];
        if (!complete_ok(outdir, row, why, sizeof why)) {
            if (bad_complete < ERRORS_SHOWN) {
                fprintf(stderr, "provision-keys: %s:%ld: %s is recorded as minted but %s\n", csv,
                        dv->line, dv->id, why);
            }
            bad_complete++;
            continue;
        }
        run.skipped++;
    }
    FK_ENSURE(bad_complete == 0,
              fk_diag_set(&diag, FK_E_MISMATCH,
                          "%zu recorded device(s) are damaged; a recorded device is never "
                          "minted again: restore its files (or retire it) and re-run",
                          bad_complete));

    /* A device to be minted may have certificates from an attempt that died before its
     * commit point (or from an earlier mint elsewhere): it is minted from scratch with a new
     * certificate, so those are superseded. Revoked before anything new is issued, so a
     * crash anywhere leaves at most the certificates of uncommitted attempts unrevoked, and
     * the next run revokes them here. A complete device is never touched. */
    if (run.ca != NULL && npending > 0) {
        pending_sorted = malloc(npending * sizeof *pending_sorted);
        FK_ENSURE(pending_sorted != NULL, FK_E_NOMEM);
        memcpy(pending_sorted, pending, npending * sizeof *pending_sorted);
        qsort(pending_sorted, npending, sizeof *pending_sorted, cmp_dev_id);
        struct pending_set ps = {pending_sorted, npending};
        FK_GUARD(fk_pki_mtls_supersede(run.ca, is_pending, &ps, NULL, &superseded, &diag));
        if (superseded > 0) {
            char detail[128];
            snprintf(detail, sizeof detail, "{\"revoked\":%zu,\"reason\":\"superseded\"}",
                     superseded);
            FK_GUARD(fk_inventory_audit_append(inv, ACTOR, "mtls_cert.superseded", "batch", detail,
                                               &diag));
            fprintf(stderr,
                    "provision-keys batch: revoked %zu certificate(s) of devices minted again "
                    "(superseded)\n",
                    superseded);
        }
    }

    /* 4. Mint in chunks: workers fill chunk k+1 while this thread commits chunk k. */
    run.outdir = outdir;
    run.fleet = fleet;
    run.encrypt = encrypt;
    run.nvs_size = (size_t)nvs_size;
    run.chain = chain;
    run.chain_len = chain_len;
    run.cert_days = (unsigned)cert_days;
    run.total = data.ndev;
    run.progress = fk_cli_stderr_is_tty() && !json;
    clock_gettime(CLOCK_MONOTONIC, &run.t0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (int k = 0; k < 2; k++) {
        res[k] = calloc((size_t)chunk_size, sizeof *res[k]);
        FK_ENSURE(res[k] != NULL, FK_E_NOMEM);
        ch[k].run = &run;
        ch[k].res = res[k];
    }
    struct chunk *prev = NULL;
    size_t next = 0;
    int cur = 0;
    rc = FK_OK;
    while (next < npending && !interrupted) {
        struct chunk *now = &ch[cur];
        now->devs = pending + next;
        now->n = npending - next < chunk_size ? npending - next : (size_t)chunk_size;
        next += now->n;
        FK_ENSURE(chunk_start(now, (int)jobs) == 0,
                  fk_diag_set(&diag, FK_E_NOMEM, "cannot start worker threads"));
        enum fk_err crc = FK_OK;
        if (prev != NULL) {
            crc = chunk_commit(&run, prev, dirfd, inv, &diag);
            prev = NULL;
            progress(&run, 0);
        }
        chunk_join(now);
        FK_GUARD(crc);
        if (atomic_load(&now->failed)) {
            for (size_t i = 0; i < now->n; i++) {
                if (now->res[i].rc != FK_OK) {
                    diag = now->res[i].diag;
                    rc = now->res[i].rc;
                    break;
                }
            }
            goto out;
        }
        prev = now;
        cur ^= 1;
    }
    if (prev != NULL) {
        FK_GUARD(chunk_commit(&run, prev, dirfd, inv, &diag));
    }
    progress(&run, 1);

    /* 5. Summary. */
    double secs = seconds_since(&run.t0);
    double rate = secs > 0 ? (double)run.minted / secs : 0;
    int complete = run.skipped + run.minted == run.total;
    char fpr[FK_FPR_LEN];
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    FK_GUARD(fk_keys_ota_public_der(fleet, der, sizeof der, &der_len));
    fk_fpr(der, der_len, fpr);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        FK_ENSURE(o != NULL, FK_E_NOMEM);
        cJSON_AddBoolToObject(o, "ok", complete);
        cJSON_AddBoolToObject(o, "interrupted", !complete);
        cJSON_AddNumberToObject(o, "devices", (double)run.total);
        cJSON_AddNumberToObject(o, "minted", (double)run.minted);
        cJSON_AddNumberToObject(o, "already_complete", (double)run.skipped);
        cJSON_AddNumberToObject(o, "remaining", (double)(run.total - run.skipped - run.minted));
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "devices_per_second", rate);
        cJSON_AddNumberToObject(o, "jobs", (double)jobs);
        cJSON_AddStringToObject(o, "output_dir", outdir);
        cJSON_AddStringToObject(o, "inventory", inv_path);
        cJSON_AddStringToObject(o, "ota_key", ota_path != NULL ? ota_path : key_path);
        cJSON_AddBoolToObject(o, "ota_key_created", key_created);
        cJSON_AddStringToObject(o, "ota_public_key_fingerprint", fpr);
        cJSON_AddBoolToObject(o, "nvs_encrypted", encrypt);
        cJSON_AddBoolToObject(o, "mtls", run.ca != NULL);
        cJSON_AddNumberToObject(o, "mtls_certs_superseded", (double)superseded);
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        FK_ENSURE(text != NULL, FK_E_NOMEM);
        puts(text);
        cJSON_free(text);
    } else {
        printf("batch: %zu devices in %s: %zu minted, %zu already complete%s; %.2f s, %.0f "
               "devices/s (%llu jobs); fleet OTA key %s%s\n",
               run.total, outdir, run.minted, run.skipped,
               complete ? "" : ", INTERRUPTED (run the same command again to finish)", secs, rate,
               jobs, fpr, key_created ? " (new)" : "");
    }
    if (!complete) {
        fprintf(stderr,
                "provision-keys: interrupted after %zu of %zu devices; run the same "
                "command again to finish\n",
                run.skipped + run.minted, run.total);
        rc = FK_OK;
        goto out;
    }
    ret = FK_EXIT_OK;
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        if (run.progress) {
            fputs("\r\033[K", stderr);
        }
        ret = fk_cli_fail(&diag, rc);
    }
    for (int k = 0; k < 2; k++) {
        chunk_join(&ch[k]);
        if (res[k] != NULL) {
            fk_wipe(res[k], (size_t)chunk_size * sizeof *res[k]);
            free(res[k]);
        }
    }
    fk_inventory_close(inv);
    fk_pki_ca_free(run.ca);
    pthread_mutex_destroy(&run.ca_lock);
    free(chain);
    free(pending_sorted);
    fk_keys_ota_free(fleet);
    csv_data_free(&data);
    free(pending);
    free(done.v);
    free(default_inv);
    free(key_path);
    if (dirfd >= 0) {
        close(dirfd);
    }
    if (lock_fd >= 0) {
        close(lock_fd); /* releases the lock */
    }
    free(lock_path);
    return ret;
}
