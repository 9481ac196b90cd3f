/* The fleet minting engine (fleetkey/batch.h): mint every device given, idempotent and
 * crash-safe. Moved out of `provision-keys batch` so rotation can mint successors too.
 *
 * Crash-safety design (docs/provision-keys.md, "Crash safety"):
 *   - The whole input is validated first (devices.c for a CSV); any error stops before a byte
 *     is written.
 *   - The committed inventory row of a device is its commit point. Files are written first
 *     (each atomically: temp + rename, so a file is old or new, never a prefix), made durable
 *     for a whole chunk at once (chunk_commit says how, and in which order), and only then
 *     are the chunk's rows, their
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
 * Throughput: worker threads (opts->jobs) mint and write chunk k+1 while the main thread syncs
 * and commits chunk k; SQLite is only ever touched by the main thread. */
#define _GNU_SOURCE /* syncfs() */
#include "fleetkey/batch.h"
#include "fleetkey/inventory.h"
#include "fleetkey/keys.h"
#include "fleetkey/pki.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How a chunk's files are made durable (chunk_commit explains the order):
 *   DUR_DIR        data waited for (sync_file_range), then one directory fsync per chunk;
 *                  only where that fsync covers file data (fk_dir_sync_covers_data)
 *   DUR_FDATASYNC  each file fdatasync'd by its worker, then one directory fsync per chunk
 *   DUR_SYNCFS     data waited for, then one syncfs() of the file system per chunk
 * Chosen per output directory; FK_BATCH_DURABILITY=fdatasync|syncfs forces one of the two
 * that are safe everywhere (for measuring; dir is taken only where it is safe). */
enum durability { DUR_DIR, DUR_FDATASYNC, DUR_SYNCFS };
static const char *const durability_name[] = {"dir", "fdatasync", "syncfs"};

struct run;
static void emit(struct run *run, const struct fk_batch_event *ev);

/* A minted device's outcome. Its inventory rows (fingerprints and names, never a secret)
 * are built by its worker so that the single writer only binds them (chunk_commit): the
 * device row in chunk.dev[i], the credential rows in chunk.cred[i * run.ncred ...], the audit
 * detail here. The rows sit in arrays of their own, as the inventory's *_many calls take
 * them: the writer hands them over without copying them (issue 19). */
struct result {
    enum fk_err rc;
    struct fk_diag diag;
    char manifest_sha[65];
    char detail[640]; /* the device.minted audit entry's JSON */
};

/* Credential rows per device at most: psk, ota_pubkey, nvs_keys, mtls_cert. */
#define CRED_MAX 4
_Static_assert((CRED_MAX * FK_INV_MANY_MAX) <= FK_INV_CRED_MANY_MAX,
               "one call per FK_INV_MANY_MAX devices");

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
    const char *actor;
    size_t ncred; /* credential rows of every device of this run (rows_of) */
    fk_batch_event_fn *on_event;
    void *user;
    enum durability durability;  /* how chunk_commit makes files durable */
    int in_memory;               /* tmpfs: no write-back to start or wait for */
    size_t stage_files;          /* STAGE_FILES / jobs, at least 8 */
    atomic_size_t files_written; /* devices whose files are written, for FK_BATCH_EV_FILES */
    size_t commits;              /* chunks committed or being committed */
    size_t total;                /* devices given */
    size_t skipped;              /* already complete */
    size_t minted;               /* committed in this run */
    double commit_seconds;       /* main thread in chunk_commit */
    double commit_cpu_seconds;   /* CPU time of the main thread in chunk_commit */
    size_t chunks;               /* chunks minted */
    struct timespec t0;
};

/* Files staged by all workers before each flushes its own (one open descriptor each): bounds
 * the descriptors a run holds whatever the chunk size, well under the usual limit of 1024. */
#define STAGE_FILES 384
/* Devices a worker claims at a time: one shared atomic add per claim, not per device. */
#define CLAIM 4
/* The largest chunk the default (adaptive) chunk size grows to. */
#define CHUNK_ADAPT_MAX 2048

struct chunk;
struct worker {
    struct chunk *c;
    enum fk_err rc; /* a flush failure (a device's own failure is in its result) */
    struct fk_diag diag;
};

struct chunk {
    struct run *run;
    const struct fk_batch_device **devs;
    struct result *res;
    struct fk_inv_device *dev;      /* [cap] */
    struct fk_inv_credential *cred; /* [cap * CRED_MAX], run.ncred used per device */
    size_t n;
    atomic_size_t next;
    atomic_int failed;
    pthread_t threads[FK_BATCH_JOBS_MAX];
    struct worker w[FK_BATCH_JOBS_MAX];
    int nthreads;
    size_t cap; /* results allocated */
};

/* Fills credential row *n of v (at most CRED_MAX). */
static void add_cred(struct fk_inv_credential *v, size_t *n, const struct fk_manifest *m,
                     const char *kind, unsigned version, const char *fpr, const char *expires) {
    if (*n == CRED_MAX) {
        return;
    }
    struct fk_inv_credential *c = &v[(*n)++];
    memset(c, 0, sizeof *c);
    memcpy(c->device_id, m->device_id, sizeof m->device_id);
    snprintf(c->kind, sizeof c->kind, "%s", kind);
    c->version = version;
    snprintf(c->fingerprint, sizeof c->fingerprint, "%s", fpr);
    memcpy(c->created_at, m->created_at, sizeof m->created_at);
    snprintf(c->expires_at, sizeof c->expires_at, "%s", expires);
    memcpy(c->state, "active", sizeof "active");
}

/* Device i's row, its credentials and its audit detail, from the manifest as written. Every
 * device of a run has the same credential rows (what it has depends on the run's options
 * only), so those of a chunk are contiguous: FK_E_INTERNAL if one differs. */
static enum fk_err rows_of(struct chunk *c, size_t i, const struct fk_manifest *m) {
    struct result *r = &c->res[i];
    struct fk_inv_device *d = &c->dev[i];
    struct fk_inv_credential *cred = &c->cred[i * c->run->ncred];
    size_t ncred = 0;
    memset(d, 0, sizeof *d);
    memcpy(d->id, m->device_id, sizeof m->device_id);
    memcpy(d->mac, m->mac, sizeof m->mac);
    memcpy(d->name, m->name, sizeof m->name);
    memcpy(d->state, "minted", sizeof "minted");
    snprintf(d->manifest, sizeof d->manifest, "%s.json", m->device_id);
    memcpy(d->manifest_sha256, r->manifest_sha, sizeof d->manifest_sha256);
    memcpy(d->created_at, m->created_at, sizeof m->created_at);
    struct fk_inv_credential mine[CRED_MAX];
    add_cred(mine, &ncred, m, "psk", m->psk_version, m->psk_fingerprint, "");
    add_cred(mine, &ncred, m, "ota_pubkey", m->ota_key_version, m->ota_key_fingerprint, "");
    if (m->nvs_encrypted) {
        add_cred(mine, &ncred, m, "nvs_keys", m->psk_version, m->nvs_keys_fingerprint, "");
    }
    if (m->mtls_cert_fingerprint[0] != '\0') {
        add_cred(mine, &ncred, m, "mtls_cert", m->psk_version, m->mtls_cert_fingerprint,
                 m->mtls_cert_not_after);
    }
    if (ncred != c->run->ncred) {
        return fk_diag_set(&r->diag, FK_E_INTERNAL, "%s: %zu credentials, the run has %zu",
                           m->device_id, ncred, c->run->ncred);
    }
    memcpy(cred, mine, ncred * sizeof *cred);
    int n = snprintf(
        r->detail, sizeof r->detail,
        "{\"mac\":\"%s\",\"manifest_sha256\":\"%s\",\"psk_fingerprint\":\"%s\","
        "\"ota_public_key_fingerprint\":\"%s\",\"nvs_image_sha256\":\"%s\","
        "\"nvs_encrypted\":%s,\"mtls_cert_fingerprint\":\"%s\",\"mtls_cert_serial\":\"%s\"}",
        m->mac, r->manifest_sha, m->psk_fingerprint, m->ota_key_fingerprint, m->nvs_image_sha256,
        m->nvs_encrypted ? "true" : "false", m->mtls_cert_fingerprint, m->mtls_cert_serial);
    /* every field has a bounded size: a cut would be a bug, and must not be recorded */
    return n > 0 && (size_t)n < sizeof r->detail ? FK_OK : FK_E_INTERNAL;
}

static void mint_one(struct chunk *c, size_t i, struct fk_file_stage *stage) {
    const struct fk_batch_device *dv = c->devs[i];
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
        r->rc = fk_keys_minted_stage(m, c->run->outdir, dv->id, stage, r->manifest_sha, &r->diag);
    }
    if (r->rc == FK_OK) {
        r->rc = rows_of(c, i, fk_keys_minted_manifest(m));
    }
    if (r->rc != FK_OK) {
        if (r->diag.line == 0 && r->diag.file[0] == '\0') {
            fk_diag_at(&r->diag, r->rc, NULL, 0, "%s: %s", dv->id,
                       r->diag.msg[0] != '\0' ? r->diag.msg : fk_strerror(r->rc));
        }
        atomic_store(&c->failed, 1);
    }
    fk_keys_minted_free(m);
}

/* Puts the staged files in place (data written back first, see fk_file_stage_flush); the
 * devices they belong to now have their files, not yet durable: chunk_commit's directory
 * fsync does that. */
static int flush(struct worker *w, struct fk_file_stage *stage, size_t *devices) {
    struct run *run = w->c->run;
    w->rc = fk_file_stage_flush(stage, &w->diag);
    if (w->rc != FK_OK) {
        atomic_store(&w->c->failed, 1);
        return -1;
    }
    /* One event per device (the contract), one shared atomic add per flush. */
    size_t base = atomic_fetch_add(&run->files_written, *devices);
    for (size_t k = 1; k <= *devices; k++) {
        struct fk_batch_event ev = {.kind = FK_BATCH_EV_FILES, .count = base + k};
        emit(run, &ev);
    }
    *devices = 0;
    return 0;
}

/* One worker thread: claims devices CLAIM at a time and mints them into its own stage.
 * Nothing shared is touched per device but the claim counter (and the CA lock with --ca):
 * OpenSSL's DRBG is per thread, buffers are per device, results go to the device's slot. */
static void *worker(void *arg) {
    struct worker *w = arg;
    struct chunk *c = w->c;
    struct fk_file_stage stage;
    size_t staged = 0;
    memset(&stage, 0, sizeof stage);
    stage.fdatasync_each = c->run->durability == DUR_FDATASYNC;
    /* Unnamed files (O_TMPFILE, then one linkat: one directory-locked operation per file
     * instead of create + rename) wherever what makes the chunk durable also writes the
     * inodes' link counts: the journal (DUR_DIR) or syncfs (DUR_SYNCFS, every dirty inode
     * of the file system). Not with DUR_FDATASYNC: the fdatasync comes before the link and
     * the directory fsync after it writes only the directory, so a power cut could leave a
     * committed name on an inode whose link count on disk is still 0 (fsck clears it). */
    stage.named = c->run->durability == DUR_FDATASYNC;
    /* With syncfs the data and the links become durable together before the rows commit,
     * so the workers do not wait for each file's data (chunk_commit, step 2). */
    stage.syncfs_after = c->run->durability == DUR_SYNCFS;
    stage.no_device = c->run->in_memory;
    fk_diag_init(&w->diag);
    w->rc = FK_OK;
    for (;;) {
        size_t i0 = atomic_fetch_add(&c->next, CLAIM);
        if (i0 >= c->n) {
            break;
        }
        size_t end = i0 + CLAIM < c->n ? i0 + CLAIM : c->n;
        for (size_t i = i0; i < end && !atomic_load(&c->failed); i++) {
            mint_one(c, i, &stage);
            staged++;
            if (stage.n >= c->run->stage_files && flush(w, &stage, &staged) != 0) {
                break;
            }
        }
        if (atomic_load(&c->failed)) {
            break;
        }
    }
    if (!atomic_load(&c->failed)) {
        (void)flush(w, &stage, &staged);
    }
    fk_file_stage_free(&stage); /* after a failure: removes the temp files not renamed */
    return NULL;
}

/* Frees the chunk's results and rows (wiped first, like everything a device was minted
 * with, although none of it is secret). */
static void chunk_free_rows(struct chunk *c) {
    if (c->res != NULL) {
        fk_wipe(c->res, c->cap * sizeof *c->res);
    }
    free(c->res);
    free(c->dev);
    free(c->cred);
    c->res = NULL;
    c->dev = NULL;
    c->cred = NULL;
    c->cap = 0;
}

/* Room for n devices' results and rows; -1 (and none) when out of memory. */
static int chunk_grow(struct chunk *c, size_t n) {
    chunk_free_rows(c);
    c->res = calloc(n, sizeof *c->res);
    c->dev = calloc(n, sizeof *c->dev);
    c->cred = calloc(n * CRED_MAX, sizeof *c->cred);
    if (c->res == NULL || c->dev == NULL || c->cred == NULL) {
        chunk_free_rows(c);
        return -1;
    }
    c->cap = n;
    return 0;
}

static int chunk_start(struct chunk *c, int jobs) {
    atomic_store(&c->next, 0);
    atomic_store(&c->failed, 0);
    c->nthreads = 0;
    for (int t = 0; t < jobs && (size_t)t < c->n; t++) {
        c->w[t].c = c;
        c->w[t].rc = FK_OK;
        if (pthread_create(&c->threads[t], NULL, worker, &c->w[t]) != 0) {
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

static double seconds_since_on(clockid_t clock, const struct timespec *t0) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static double seconds_since(const struct timespec *t0) {
    return seconds_since_on(CLOCK_MONOTONIC, t0);
}

static void progress(struct run *run, int final) {
    struct fk_batch_event ev = {.kind = FK_BATCH_EV_PROGRESS,
                                .done = run->skipped + run->minted,
                                .total = run->total,
                                .minted = run->minted,
                                .final = final};
    emit(run, &ev);
}

/* Makes the chunk's files durable, then commits its rows: the commit point of every device
 * in it.
 *
 * Durability ordering, the invariant the crash guarantee rests on: A DEVICE'S FILES ARE
 * DURABLE BEFORE ITS INVENTORY ROW COMMITS. A row without its files would be a recorded
 * device that a re-run cannot repair (it never re-mints a recorded device); files without
 * a row are harmless (the re-run mints that device again and replaces them). The chain:
 *   1. worker: each file is written to an unnamed file (O_TMPFILE; a temp name with
 *      DUR_FDATASYNC), and its write-back started (fk_file_stage_write);
 *   2. worker, before the chunk is joined: the data of each file is waited for on the
 *      device (sync_file_range WAIT, or fdatasync each file where the file system needs
 *      it), only then linked or renamed into place (fk_file_stage_flush). Not waited for
 *      with DUR_SYNCFS (step 3 writes data, inodes and links of the whole chunk before any
 *      row commits; a crash before it leaves only uncommitted devices, minted again from
 *      scratch by the re-run), nor on tmpfs (no device);
 *   3. here, after every worker of the chunk joined: one fsync of the output directory. It
 *      makes the renames (and unlinks of stale files) durable and, on a journalling file
 *      system, forces the journal up to the last rename, which carries every allocation and
 *      size update of step 2 and is written behind a device cache flush
 *      (DUR_DIR, fk_dir_sync_covers_data); DUR_FDATASYNC: step 2 fdatasync'd each file;
 *      DUR_SYNCFS: a syncfs() here instead, which writes every inode of the file system;
 *   4. here: the chunk's rows, credentials and audit entries in one SQLite transaction
 *      (WAL, synchronous=FULL: durable when fk_inventory_commit returns).
 * With DUR_DIR this replaces a syncfs() per chunk, which wrote back the whole file system
 * (other programs' dirty pages included): the cost is one directory fsync and one WAL fsync
 * per chunk, and the waits of step 2 run in the workers, in parallel, while this thread
 * commits the previous chunk. Measurements: bench/README.md. */
static enum fk_err chunk_commit(struct run *run, struct chunk *c, int dirfd,
                                struct fk_inventory *inv, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct timespec t0;
    struct timespec cpu0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    if (run->durability == DUR_SYNCFS) {
        FK_ENSURE(syncfs(dirfd) == 0,
                  fk_diag_at(diag, FK_E_IO, run->outdir, 0, "syncfs: %s", strerror(errno)));
    } else {
        FK_ENSURE(fsync(dirfd) == 0,
                  fk_diag_at(diag, FK_E_IO, run->outdir, 0, "fsync: %s", strerror(errno)));
    }
    struct fk_batch_event ev = {.kind = FK_BATCH_EV_COMMIT, .count = ++run->commits};
    emit(run, &ev);
    FK_GUARD(fk_inventory_begin(inv, diag));
    /* FK_INV_MANY_MAX devices per statement: the rows were built by the workers, in the
     * arrays these calls take (no copy: reading them is already a cache miss per line). */
    for (size_t i0 = 0; i0 < c->n; i0 += FK_INV_MANY_MAX) {
        size_t n = c->n - i0 < FK_INV_MANY_MAX ? c->n - i0 : FK_INV_MANY_MAX;
        struct fk_inv_audit_entry audit[FK_INV_MANY_MAX];
        for (size_t k = 0; k < n; k++) {
            audit[k] = (struct fk_inv_audit_entry){c->dev[i0 + k].id, c->res[i0 + k].detail};
        }
        FK_GUARD(fk_inventory_device_upsert_many(inv, &c->dev[i0], n, diag));
        FK_GUARD(
            fk_inventory_credential_add_many(inv, &c->cred[i0 * run->ncred], n * run->ncred, diag));
        FK_GUARD(
            fk_inventory_audit_append_many(inv, run->actor, "device.minted", audit, n, diag));
    }
    FK_GUARD(fk_inventory_commit(inv, diag));
    run->minted += c->n;
    run->commit_seconds += seconds_since(&t0);
    run->commit_cpu_seconds += seconds_since_on(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    for (size_t i = 0; i < c->n; i++) {
        fk_log(FK_LOG_DEBUG, "batch: psk %s minted for %s", c->cred[i * run->ncred].fingerprint,
               c->dev[i].id); /* psk: the first row */
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
    struct fk_inv_device *nv = fk_grow(c->v, &c->cap, c->n, sizeof *nv, 1024);
    if (nv == NULL) {
        c->oom = 1;
        return 1;
    }
    c->v = nv;
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
    return strcmp((*(const struct fk_batch_device *const *)a)->id,
                  (*(const struct fk_batch_device *const *)b)->id);
}

static int cmp_key_dev(const void *key, const void *elem) {
    return strcmp(key, (*(const struct fk_batch_device *const *)elem)->id);
}

struct pending_set {
    const struct fk_batch_device **sorted;
    size_t n;
};

static int is_pending(void *user, const char *name) {
    const struct pending_set *p = user;
    return p->n > 0 && bsearch(name, p->sorted, p->n, sizeof *p->sorted, cmp_key_dev) != NULL;
}

/* Removes the optional files of devices about to be minted that this run will not write
 * again (fk_keys_minted_stage leaves that to its caller): ID.key.pem (devices of a batch use
 * the fleet key), ID.crt.pem without --ca, ID.nvs_keys.bin without --encrypt-nvs. One scan
 * of the directory instead of two failing lookups per device. Only devices without a
 * committed row are pending, so this never touches a complete device; the unlinks are made
 * durable by the first chunk's directory fsync or syncfs, before any row commits. */
static enum fk_err remove_stale_optional(const char *dir, int dirfd, const struct pending_set *p,
                                         int certs, int encrypt, struct fk_diag *diag) {
    static const char *const suffix[] = {".key.pem", ".crt.pem", ".nvs_keys.bin"};
    const int stale[] = {1, !certs, !encrypt};
    enum fk_err rc = FK_OK;
    DIR *d = opendir(dir);
    if (d == NULL) {
        return fk_diag_at(diag, FK_E_IO, dir, 0, "%s", strerror(errno));
    }
    struct dirent *e;
    while (rc == FK_OK && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        for (size_t k = 0; k < sizeof suffix / sizeof suffix[0]; k++) {
            size_t sl = strlen(suffix[k]);
            char id[FK_DEVICE_ID_SIZE];
            if (!stale[k] || len <= sl || len - sl >= sizeof id ||
                strcmp(e->d_name + len - sl, suffix[k]) != 0) {
                continue;
            }
            memcpy(id, e->d_name, len - sl);
            id[len - sl] = '\0';
            if (is_pending((void *)p, id) && unlinkat(dirfd, e->d_name, 0) != 0 &&
                errno != ENOENT) {
                rc = fk_diag_at(diag, FK_E_IO, e->d_name, 0, "cannot remove stale file: %s",
                                strerror(errno));
            }
        }
    }
    closedir(d);
    return rc;
}

/* The fleet key: --ota-key, or OUTDIR/ota_signing.key.pem (created once, synced, audited). */
static enum fk_err fleet_key(const char *outdir, const char *actor, struct fk_inventory *inv,
                             struct fk_ota_key **key, int *created, char **key_path,
                             struct fk_diag *diag) {
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
    FK_GUARD(fk_inventory_audit_append(inv, actor, "ota_key.created", "fleet", detail, diag));
    rc = FK_OK;
out:
    return rc;
}

static void emit(struct run *run, const struct fk_batch_event *ev) {
    if (run->on_event != NULL) {
        run->on_event(run->user, ev);
    }
}

void fk_batch_result_clear(struct fk_batch_result *res) {
    free(res->inventory_path);
    free(res->ota_key_path);
    memset(res, 0, sizeof *res);
}

enum fk_err fk_batch_run(const struct fk_batch_opts *o, const struct fk_batch_device *devs,
                         size_t n, struct fk_batch_result *res, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_key *fleet = NULL;
    struct fk_inventory *inv = NULL;
    struct committed done = {NULL, 0, 0, 0};
    const struct fk_batch_device **pending = NULL;
    const struct fk_batch_device **pending_sorted = NULL;
    uint8_t *chain = NULL;
    size_t chain_len = 0;
    struct chunk ch[2];
    char *lock_path = NULL;
    int lock_fd = -1;
    int dirfd = -1;
    size_t npending = 0;
    size_t bad_complete = 0;
    const char *outdir = o->output_dir;
    size_t chunk_size = o->chunk != 0 ? o->chunk : FK_BATCH_CHUNK_DEFAULT;
    int adapt = o->chunk == 0;
    unsigned jobs = o->jobs;
    struct run run;
    memset(&run, 0, sizeof run);
    pthread_mutex_init(&run.ca_lock, NULL);
    memset(ch, 0, sizeof ch);
    memset(res, 0, sizeof *res);
    run.actor = o->actor != NULL ? o->actor : "provision-keys batch";
    run.on_event = o->on_event;
    run.user = o->user;
    if (jobs == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        jobs = ncpu < 1 ? 1 : ncpu > FK_BATCH_JOBS_MAX ? FK_BATCH_JOBS_MAX : (unsigned)ncpu;
    }
    res->jobs = jobs;
    res->total = n;
    FK_ENSURE(outdir != NULL && (devs != NULL || n == 0) && jobs <= FK_BATCH_JOBS_MAX &&
                  chunk_size <= FK_BATCH_CHUNK_MAX,
              FK_E_ARG);

    /* 1. The keys the devices will refer to. */
    if (o->ota_key_path != NULL) {
        FK_GUARD(fk_keys_ota_load(o->ota_key_path, &fleet, diag));
        res->ota_key_path = strdup(o->ota_key_path);
        FK_ENSURE(res->ota_key_path != NULL, FK_E_NOMEM);
    }
    if (o->ca_dir != NULL) {
        FK_GUARD(fk_pki_mtls_open(o->ca_dir, &run.ca, &chain, &chain_len, diag));
    }

    /* 2. The output directory, its lock, leftovers of a killed run, the inventory. */
    FK_GUARD(fk_mkdirs(outdir, 0700, diag));
    FK_GUARD(fk_path_join(outdir, ".batch.lock", "", &lock_path));
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    FK_ENSURE(lock_fd >= 0, fk_diag_at(diag, FK_E_IO, lock_path, 0, "%s", strerror(errno)));
    FK_ENSURE(
        flock(lock_fd, LOCK_EX | LOCK_NB) == 0,
        fk_diag_at(diag, FK_E_STATE, outdir, 0, "another batch is writing into this directory"));
    dirfd = open(outdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FK_ENSURE(dirfd >= 0, fk_diag_at(diag, FK_E_IO, outdir, 0, "%s", strerror(errno)));
    remove_stale_temps(outdir, dirfd);
    /* Where a directory fsync does not cover file data (ext4 without a journal, as on the
     * machine of issue 19, btrfs, NFS...) per-file fdatasync costs a device cache flush per
     * file: measured 3-6x slower there than one syncfs() per chunk (bench/README.md), so
     * syncfs stays the default in that case, overlapped with minting like every commit. */
    run.durability = fk_dir_sync_covers_data(dirfd) ? DUR_DIR : DUR_SYNCFS;
    const char *force = getenv("FK_BATCH_DURABILITY");
    if (force != NULL && strcmp(force, "fdatasync") == 0) {
        run.durability = DUR_FDATASYNC;
    } else if (force != NULL && strcmp(force, "syncfs") == 0) {
        run.durability = DUR_SYNCFS;
    }
    res->durability = durability_name[run.durability];
    run.in_memory = fk_fs_in_memory(dirfd);
    run.stage_files = STAGE_FILES / jobs > 8 ? STAGE_FILES / jobs : 8;
    if (o->inventory_path != NULL) {
        res->inventory_path = strdup(o->inventory_path);
        FK_ENSURE(res->inventory_path != NULL, FK_E_NOMEM);
    } else {
        FK_GUARD(fk_path_join(outdir, "inventory.db", "", &res->inventory_path));
    }
    FK_GUARD(fk_inventory_open(res->inventory_path, &inv, diag));
    if (fleet == NULL) {
        FK_GUARD(fleet_key(outdir, run.actor, inv, &fleet, &res->ota_key_created,
                           &res->ota_key_path, diag));
    }

    /* 3. Which devices are complete (committed and intact), which are to be minted. */
    FK_GUARD(fk_inventory_device_list(inv, collect_device, &done, diag));
    FK_ENSURE(!done.oom, FK_E_NOMEM);
    pending = malloc((n + 1) * sizeof *pending);
    FK_ENSURE(pending != NULL, FK_E_NOMEM);
    for (size_t i = 0; i < n; i++) {
        const struct fk_batch_device *dv = &devs[i];
        const struct fk_inv_device *row =
            done.n > 0 ? bsearch(dv->id, done.v, done.n, sizeof *done.v, cmp_inv_id) : NULL;
        if (row == NULL) {
            pending[npending++] = dv;
            continue;
        }
        char why[600];
        if (!complete_ok(outdir, row, why, sizeof why)) {
            struct fk_batch_event ev = {.kind = FK_BATCH_EV_DAMAGED, .device = dv, .why = why};
            emit(&run, &ev);
            bad_complete++;
            continue;
        }
        run.skipped++;
    }
    FK_ENSURE(bad_complete == 0,
              fk_diag_set(diag, FK_E_MISMATCH,
                          "%zu recorded device(s) are damaged; a recorded device is never "
                          "minted again: restore its files (or retire it) and re-run",
                          bad_complete));

    /* A device to be minted may have certificates from an attempt that died before its
     * commit point (or from an earlier mint elsewhere): it is minted from scratch with a new
     * certificate, so those are superseded. Revoked before anything new is issued, so a
     * crash anywhere leaves at most the certificates of uncommitted attempts unrevoked, and
     * the next run revokes them here. A complete device is never touched. */
    struct pending_set ps = {NULL, 0};
    if (npending > 0) {
        pending_sorted = malloc(npending * sizeof *pending_sorted);
        FK_ENSURE(pending_sorted != NULL, FK_E_NOMEM);
        memcpy(pending_sorted, pending, npending * sizeof *pending_sorted);
        qsort(pending_sorted, npending, sizeof *pending_sorted, cmp_dev_id);
        ps.sorted = pending_sorted;
        ps.n = npending;
        FK_GUARD(
            remove_stale_optional(outdir, dirfd, &ps, o->ca_dir != NULL, o->encrypt_nvs, diag));
    }
    if (run.ca != NULL && npending > 0) {
        FK_GUARD(fk_pki_mtls_supersede(run.ca, is_pending, &ps, NULL, &res->superseded, diag));
        if (res->superseded > 0) {
            char detail[128];
            snprintf(detail, sizeof detail, "{\"revoked\":%zu,\"reason\":\"superseded\"}",
                     res->superseded);
            FK_GUARD(fk_inventory_audit_append(inv, run.actor, "mtls_cert.superseded", "batch",
                                               detail, diag));
            struct fk_batch_event ev = {.kind = FK_BATCH_EV_SUPERSEDED, .count = res->superseded};
            emit(&run, &ev);
        }
    }

    /* 4. Mint in chunks: workers fill chunk k+1 while this thread commits chunk k. */
    run.outdir = outdir;
    run.fleet = fleet;
    run.encrypt = o->encrypt_nvs;
    run.nvs_size = o->nvs_size != 0 ? o->nvs_size : FK_KEYS_NVS_SIZE;
    run.chain = chain;
    run.chain_len = chain_len;
    run.cert_days = o->cert_days;
    run.ncred = 2 + (run.encrypt ? 1 : 0) + (run.ca != NULL ? 1 : 0); /* rows_of */
    run.total = n;
    clock_gettime(CLOCK_MONOTONIC, &run.t0);
    struct fk_batch_event start = {.kind = FK_BATCH_EV_MINTING};
    emit(&run, &start);
    for (int k = 0; k < 2; k++) {
        ch[k].run = &run;
    }
    struct chunk *prev = NULL;
    size_t next = 0;
    int cur = 0;
    rc = FK_OK;
    while (next < npending && (o->stop == NULL || !*o->stop)) {
        struct chunk *now = &ch[cur];
        now->devs = pending + next;
        now->n = npending - next < chunk_size ? npending - next : chunk_size;
        if (now->cap < now->n) { /* this buffer's previous chunk is committed: free to grow */
            FK_ENSURE(chunk_grow(now, now->n) == 0, FK_E_NOMEM);
        }
        next += now->n;
        struct timespec tm;
        clock_gettime(CLOCK_MONOTONIC, &tm);
        FK_ENSURE(chunk_start(now, (int)jobs) == 0,
                  fk_diag_set(diag, FK_E_NOMEM, "cannot start worker threads"));
        enum fk_err crc = FK_OK;
        double commit_s = 0;
        if (prev != NULL) {
            double before = run.commit_seconds;
            crc = chunk_commit(&run, prev, dirfd, inv, diag);
            commit_s = run.commit_seconds - before;
            prev = NULL;
            progress(&run, 0);
        }
        chunk_join(now);
        run.chunks++;
        FK_GUARD(crc);
        /* Adaptive chunk size (the default): the commit of chunk k runs while the workers
         * mint chunk k+1. When it takes more than half as long, the workers are about to
         * wait for it: bigger chunks spread its fixed cost (two fsyncs, thread starts) over
         * more devices. Never shrinks; bounded so that results stay a few MB. */
        if (adapt && commit_s > seconds_since(&tm) / 2 && chunk_size < CHUNK_ADAPT_MAX) {
            chunk_size *= 2;
        }
        if (atomic_load(&now->failed)) {
            for (int t = 0; t < (int)jobs && t < FK_BATCH_JOBS_MAX; t++) {
                if (now->w[t].c == now && now->w[t].rc != FK_OK) {
                    if (diag != NULL) {
                        *diag = now->w[t].diag;
                    }
                    rc = now->w[t].rc;
                }
            }
            for (size_t i = 0; i < now->n; i++) {
                if (now->res[i].rc != FK_OK) {
                    if (diag != NULL) {
                        *diag = now->res[i].diag;
                    }
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
        FK_GUARD(chunk_commit(&run, prev, dirfd, inv, diag));
    }
    progress(&run, 1);

    /* 5. What the run did. */
    res->seconds = seconds_since(&run.t0);
    res->commit_seconds = run.commit_seconds;
    res->commit_cpu_seconds = run.commit_cpu_seconds;
    res->chunks = run.chunks;
    res->chunk = chunk_size;
    res->complete = run.skipped + run.minted == run.total;
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    FK_GUARD(fk_keys_ota_public_der(fleet, der, sizeof der, &der_len));
    fk_fpr(der, der_len, res->ota_fingerprint);
    rc = FK_OK;
out:
    for (int k = 0; k < 2; k++) {
        chunk_join(&ch[k]);
        chunk_free_rows(&ch[k]);
    }
    res->minted = run.minted;
    res->skipped = run.skipped;
    fk_inventory_close(inv);
    fk_pki_ca_free(run.ca);
    pthread_mutex_destroy(&run.ca_lock);
    free(chain);
    free(pending_sorted);
    fk_keys_ota_free(fleet);
    free(pending);
    free(done.v);
    if (dirfd >= 0) {
        close(dirfd);
    }
    if (lock_fd >= 0) {
        close(lock_fd); /* releases the lock */
    }
    free(lock_path);
    return rc;
}
