/* fleetkey batch: the fleet minting engine. Devices (rows of a device CSV, or records the
 * caller builds, e.g. rotation minting successors) → chunks → worker threads → a durable
 * per-chunk commit of files + inventory rows. Used by `provision-keys batch`.
 *
 * Crash safety (docs/provision-keys.md, "Crash safety"): the committed inventory row of a
 * device is its commit point. Files are written first (each atomically), made durable for a
 * whole chunk (data waited for, then renamed into place, then one fsync of the directory;
 * see chunk_commit in batch.c), and only then are the chunk's rows, credentials and audit
 * entries committed in one SQLite transaction. A re-run skips every device whose row is
 * committed and whose manifest is still the one recorded; a device with files but no row is
 * minted again from scratch. One exclusive lock on OUTPUT_DIR/.batch.lock keeps two runs
 * out of one directory; temp files of a killed run are removed under it.
 *
 * Nothing here prints or exits: problems come back as enum fk_err + struct fk_diag, and what
 * a program shows while the run goes (progress, damaged devices, superseded certificates)
 * comes through an event callback. */
#ifndef FLEETKEY_BATCH_H
#define FLEETKEY_BATCH_H

#include "fleetkey/common.h"
#include "fleetkey/keys.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_BATCH_JOBS_MAX 64
#define FK_BATCH_CHUNK_DEFAULT 256
#define FK_BATCH_CHUNK_MAX 100000
#define FK_BATCH_ROWS_MAX 1000000u             /* devices in one CSV */
#define FK_BATCH_CSV_MAX (64u * 1024u * 1024u) /* bytes of one CSV */

/* One device to mint. The strings are borrowed and must outlive fk_batch_run. */
struct fk_batch_device {
    long line; /* where it comes from, for messages; 0 when not from a file */
    uint8_t mac[FK_MAC_LEN];
    char id[FK_DEVICE_ID_SIZE]; /* fk_keys_device_id(mac) */
    const char *name;           /* NULL: none */
    const char *ssid;           /* NULL: no wifi namespace in the image */
    const char *pass;           /* the Wi-Fi password ("" when none): SECRET */
};

/* ---- the device CSV (devices.c) -------------------------------------------------------- */
/* Columns mac (required, unique), name, wifi_ssid, wifi_password (needs wifi_ssid), RFC 4180
 * quoting (fleetkey/csv.h, strict dialect); see `provision-keys batch --help`. */
struct fk_batch_csv; /* opaque: the validated devices of one CSV and the strings they use */

/* Receives each problem of the CSV, "devices.csv:14: mac: expected AA:BB:CC:DD:EE:FF". */
typedef void fk_batch_error_fn(void *user, const struct fk_diag *d);

/* Reads and validates the whole device CSV at path (at most FK_BATCH_CSV_MAX bytes). Every
 * problem goes to on_error (may be NULL) and reading goes on, so one run reports as much as it
 * can (after a quoting error the rows before it are still checked); *errors receives how
 * many. FK_OK with *out set when *errors is 0, *out NULL otherwise; FK_E_IO, FK_E_TOOBIG,
 * FK_E_NOMEM (diag set) when the file cannot be read at all. Free *out with
 * fk_batch_csv_free. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_batch_csv_load(const char *path, fk_batch_error_fn *on_error,
                                            void *user, struct fk_batch_csv **out, int *errors,
                                            struct fk_diag *diag);
/* Same on a buffer already in memory (borrowed for the call only); name is used in messages. */
FK_MUST_CHECK enum fk_err fk_batch_csv_parse(const char *buf, size_t len, const char *name,
                                             fk_batch_error_fn *on_error, void *user,
                                             struct fk_batch_csv **out, int *errors,
                                             struct fk_diag *diag);
/* The devices in CSV order; they live as long as c. */
const struct fk_batch_device *fk_batch_csv_devices(const struct fk_batch_csv *c, size_t *n);
/* Wipes (passwords) and frees; NULL is a no-op. */
void fk_batch_csv_free(struct fk_batch_csv *c);

/* ---- the run (batch.c) ----------------------------------------------------------------- */
enum fk_batch_event_kind {
    FK_BATCH_EV_DAMAGED,    /* device is recorded as minted but `why` (its files are damaged) */
    FK_BATCH_EV_SUPERSEDED, /* count certificates of devices minted again were revoked */
    FK_BATCH_EV_MINTING,    /* every check passed: minting starts now */
    FK_BATCH_EV_FILES,      /* a worker wrote one more device's files, count so far (not yet
                               committed); called from worker threads */
    FK_BATCH_EV_COMMIT,     /* chunk number count (1-based) is synced and about to commit */
    FK_BATCH_EV_PROGRESS,   /* after a commit: done of total devices, minted in this run; with
                               final set once, after the last commit */
};

struct fk_batch_event {
    enum fk_batch_event_kind kind;
    const struct fk_batch_device *device; /* DAMAGED */
    const char *why;                      /* DAMAGED */
    size_t count;                         /* SUPERSEDED, FILES, COMMIT */
    size_t done;                          /* PROGRESS: complete devices (skipped + minted) */
    size_t total;                         /* PROGRESS */
    size_t minted;                        /* PROGRESS */
    int final;                            /* PROGRESS */
};

/* Called on the thread running fk_batch_run, except FK_BATCH_EV_FILES (any worker thread, so
 * it must be thread-safe). ev and what it points to live for the call only. */
typedef void fk_batch_event_fn(void *user, const struct fk_batch_event *ev);

struct fk_batch_opts {
    const char *output_dir;     /* required; created (0700) when missing */
    const char *ota_key_path;   /* the fleet OTA key; NULL: OUTPUT_DIR/ota_signing.key.pem,
                                   created (0600, audited) on the first run, reused after */
    const char *inventory_path; /* NULL: OUTPUT_DIR/inventory.db */
    const char *ca_dir;         /* non-NULL: each device also gets an mTLS certificate */
    unsigned cert_days;         /* with ca_dir; 0: the CA's device default */
    int encrypt_nvs;
    size_t nvs_size;   /* 0: FK_KEYS_NVS_SIZE */
    unsigned jobs;     /* worker threads, 1..FK_BATCH_JOBS_MAX; 0: the number of CPUs */
    size_t chunk;      /* devices per durable commit; 0: adaptive, FK_BATCH_CHUNK_DEFAULT
                          growing (to 2048) while the commits would hold up the workers */
    const char *actor; /* audit actor; NULL: "provision-keys batch" */
    const volatile sig_atomic_t *stop; /* may be NULL; when it turns nonzero (a signal
                                          handler), no new chunk is started */
    fk_batch_event_fn *on_event;       /* may be NULL */
    void *user;
};

struct fk_batch_result {
    size_t total;          /* devices given */
    size_t minted;         /* committed in this run */
    size_t skipped;        /* already complete */
    int complete;          /* every device is committed (else the run was stopped: run it again) */
    double seconds;        /* from FK_BATCH_EV_MINTING to the end */
    double commit_seconds; /* of which the main thread spent making chunks durable and
                              committing them (overlapped with the workers' minting) */
    /* CPU time of the main thread in those commits (SQLite rows, audit chain): the single
     * writer's share of the work, which --jobs does not spread */
    double commit_cpu_seconds;
    size_t chunks;          /* chunks minted */
    size_t chunk;           /* devices per chunk at the end (grows from the default) */
    const char *durability; /* "dir", "fdatasync" or "syncfs": how files were made durable
                               (static string; see chunk_commit in batch.c) */
    unsigned jobs;          /* worker threads used */
    size_t superseded;      /* mTLS certificates revoked as superseded */
    int ota_key_created;
    char ota_fingerprint[FK_FPR_LEN]; /* of the fleet OTA public key */
    char *inventory_path; /* the paths used (malloc'd, fk_batch_result_clear frees them) */
    char *ota_key_path;
};

/* Mints every device of devs[0..n) (ids unique) that is not yet complete into
 * o->output_dir, as described at the top. *res is filled (also on failure, as far as the run
 * got); clear it with fk_batch_result_clear. FK_OK when the run completed or was stopped
 * through o->stop (res->complete tells); otherwise the first failure: FK_E_STATE (another
 * run holds the directory), FK_E_MISMATCH (recorded devices are damaged: each was reported
 * as FK_BATCH_EV_DAMAGED, nothing was minted), FK_E_IO, FK_E_NOMEM, FK_E_DB and the codes of
 * fk_keys_mint, fk_pki_mtls_open, fk_pki_mtls_issue; devices committed before a failure stay
 * committed. One run per output directory at a time (the lock enforces it). */
FK_MUST_CHECK enum fk_err fk_batch_run(const struct fk_batch_opts *o,
                                       const struct fk_batch_device *devs, size_t n,
                                       struct fk_batch_result *res, struct fk_diag *diag);
/* Frees the strings of res; safe on a zeroed or already cleared result. */
void fk_batch_result_clear(struct fk_batch_result *res);

#ifdef __cplusplus
}
#endif
#endif
