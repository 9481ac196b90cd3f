/* fleetkey common: the one error enum, diagnostics for people, logging with redaction, secure
 * wipe, constant-time compare, hex/base64, the NVS CRC32 variant and atomic file writes.
 *
 * Every other host module builds on this header. Nothing here exits, aborts or prints, except
 * the default log handler, which writes to stderr. */
#ifndef FLEETKEY_COMMON_H
#define FLEETKEY_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FK_MUST_CHECK __attribute__((warn_unused_result))
#define FK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FK_MUST_CHECK
#define FK_PRINTF(f, a)
#endif

/* The one error table. Add a row here (never reuse a value for a new meaning); fk_strerror()
 * and the enum are generated from it. */
#define FK_ERR_TABLE(X)                                                                        \
    X(FK_OK, "success")                                                                        \
    X(FK_E_INTERNAL, "internal error")                                                         \
    X(FK_E_NOMEM, "out of memory")                                                             \
    X(FK_E_ARG, "invalid argument")                                                            \
    X(FK_E_IO, "input/output error")                                                           \
    X(FK_E_PARSE, "malformed input")                                                           \
    X(FK_E_TRUNCATED, "input truncated")                                                       \
    X(FK_E_CRC, "checksum mismatch")                                                           \
    X(FK_E_RANGE, "value out of range")                                                        \
    X(FK_E_NOSPACE, "does not fit")                                                            \
    X(FK_E_CRYPTO, "cryptographic operation failed")                                           \
    X(FK_E_NOTFOUND, "not found")                                                              \
    X(FK_E_EXISTS, "already exists")                                                           \
    X(FK_E_DB, "database error")                                                               \
    X(FK_E_VERIFY, "verification failed")                                                      \
    X(FK_E_UNSUPPORTED, "unsupported")                                                         \
    X(FK_E_POLICY, "refused by policy")                                                        \
    X(FK_E_PROTOCOL, "protocol error")                                                         \
    X(FK_E_TIMEOUT, "timed out")                                                               \
    X(FK_E_MISMATCH, "mismatch")                                                               \
    X(FK_E_STATE, "not allowed in the current state")                                          \
    X(FK_E_AUTH, "authentication failed")                                                      \
    X(FK_E_TOOBIG, "input too large")

enum fk_err {
#define FK_ERR_ENUM(name, text) name,
    FK_ERR_TABLE(FK_ERR_ENUM)
#undef FK_ERR_ENUM
        FK_ERR_COUNT
};

/* A short English description of rc; never NULL, also for values outside the enum. */
const char *fk_strerror(enum fk_err rc);
/* The enumerator's name ("FK_E_CRC"), for logs and JSON; never NULL. */
const char *fk_errname(enum fk_err rc);

/* Guards: every function that uses them declares `enum fk_err rc` (starting as a failure) and
 * has a single `out:` label that releases everything. */
#define FK_ENSURE(c, e)                                                                        \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            rc = (e);                                                                          \
            goto out;                                                                          \
        }                                                                                      \
    } while (0)
#define FK_GUARD(call)                                                                         \
    do {                                                                                       \
        rc = (call);                                                                           \
        if (rc != FK_OK) {                                                                     \
            goto out;                                                                          \
        }                                                                                      \
    } while (0)
#define FK_GUARD_OSSL(call, e) FK_ENSURE((call) == 1, (e))

/* Detail for a person, owned by the caller: "devices.csv:14: mac: expected AA:BB:CC:DD:EE:FF".
 * Library functions fill it on failure when a non-NULL pointer is passed; a NULL diag is
 * allowed everywhere and simply receives nothing. */
struct fk_diag {
    char file[256];  /* input the message is about, "" when none */
    long line;       /* 1-based line in file, 0 when not applicable */
    long long offset; /* byte offset in file, -1 when not applicable */
    char msg[512];
};

void fk_diag_init(struct fk_diag *d);
/* Sets d->msg from fmt (when d is non-NULL) and returns rc, so callers can write
 * `return fk_diag_set(d, FK_E_PARSE, "...")`. File/line/offset are left as they are. */
enum fk_err fk_diag_set(struct fk_diag *d, enum fk_err rc, const char *fmt, ...) FK_PRINTF(3, 4);
/* Same, also setting the file and line the message is about (file may be NULL). */
enum fk_err fk_diag_at(struct fk_diag *d, enum fk_err rc, const char *file, long line,
                       const char *fmt, ...) FK_PRINTF(5, 6);
/* Formats "file:line: msg", "file: offset 0x1f: msg", "file: msg" or "msg" into buf. */
void fk_diag_format(const struct fk_diag *d, char *buf, size_t size);

/* ---- logging ------------------------------------------------------------------------- */
enum fk_log_level { FK_LOG_DEBUG, FK_LOG_INFO, FK_LOG_WARN, FK_LOG_ERROR };
typedef void fk_log_fn(void *user, enum fk_log_level lvl, const char *line);

/* Installs the handler for all library logging (NULL restores the default: stderr with a
 * level prefix). Not thread-safe against concurrent fk_log(); call it at start-up. */
void fk_log_set_handler(fk_log_fn *fn, void *user);
/* Messages below lvl are dropped (default FK_LOG_INFO). */
void fk_log_set_level(enum fk_log_level lvl);
/* Logs one line. Never pass secret bytes: log fk_fpr() of them. Thread-safe. */
void fk_log(enum fk_log_level lvl, const char *fmt, ...) FK_PRINTF(2, 3);

#define FK_FPR_LEN 24 /* "sha256:" + 16 hex digits + NUL */
/* Writes the fingerprint of a secret, "sha256:" + the first 8 bytes of SHA-256(buf) in hex,
 * into out[FK_FPR_LEN] and returns out, so it can be used inline in fk_log(). */
const char *fk_fpr(const void *buf, size_t len, char out[FK_FPR_LEN]);
/* SHA-256 of buf into out. The digest is fetched from OpenSSL once per process, not at each
 * call (EVP_sha256() in a one-shot digest looks it up every time: measurable when a batch
 * hashes five buffers per device). 0 on success, -1 when OpenSSL fails. Thread-safe. */
int fk_sha256(const void *buf, size_t len, uint8_t out[32]);
/* The SHA-256 EVP_MD that fk_sha256 uses (fetched once), for callers that hash
 * incrementally with their own EVP_MD_CTX: pass it to EVP_DigestInit_ex. Never NULL. */
struct evp_md_st;
const struct evp_md_st *fk_sha256_md(void);
/* True when a field of that name holds a secret and must be masked in dumps and logs:
 * psk_hex, dtls_psk, password, wifi_password, *_key_pem, *_key, *private*, token, secret. */
int fk_redact_field(const char *name);

/* ---- secrets ------------------------------------------------------------------------- */
/* Wipes len bytes in a way the compiler cannot drop (explicit_bzero). NULL is a no-op. */
void fk_wipe(void *p, size_t len);
/* 1 when the n bytes at a and b are equal. Time depends on n only (CRYPTO_memcmp). */
int fk_ct_equal(const void *a, const void *b, size_t n);

/* 1 when (s, n) is an identity name of the fleet (device ids, operator and phone names, token
 * subjects): 1..max bytes of [A-Za-z0-9._-], not starting with '.' or '-'. */
int fk_name_valid(const char *s, size_t n, size_t max);
/* Fills buf with bytes from the OS-seeded DRBG (RAND_priv_bytes). FK_OK or FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_random(void *buf, size_t len);

/* ---- encodings ----------------------------------------------------------------------- */
/* Lower-case hex of n bytes into out (needs 2n+1 bytes, NUL-terminated). FK_OK or
 * FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_hex_encode(const void *in, size_t n, char *out, size_t out_size);
/* Decodes len hex digits (either case, no separators; len must be even) into out.
 * FK_OK, FK_E_PARSE (odd length or a non-hex digit; *bad_at set to its index when bad_at is
 * non-NULL), FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_hex_decode(const char *in, size_t len, uint8_t *out, size_t out_size,
                                        size_t *out_len, size_t *bad_at);
/* Parses s as a decimal number with strtoul (leading white space allowed) for a command-line
 * option. FK_OK with *out set; FK_E_ARG, *out untouched, when s is NULL or empty, starts with
 * '-', has anything after the digits or is above max. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_parse_ulong(const char *s, unsigned long max, unsigned long *out);
/* Standard base64 (RFC 4648 with padding) of n bytes; out needs 4*ceil(n/3)+1 bytes. */
FK_MUST_CHECK enum fk_err fk_base64_encode(const void *in, size_t n, char *out, size_t out_size);
/* Decodes standard base64; whitespace (space, tab, CR, LF) is skipped, padding is optional at
 * the end only. FK_OK, FK_E_PARSE, FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_base64_decode(const char *in, size_t len, uint8_t *out,
                                           size_t out_size, size_t *out_len);

/* ESP-IDF's crc32_le(crc, buf, len): reflected polynomial 0xEDB88320, ~crc in and out.
 * NVS uses crc = 0xFFFFFFFF (check value for "123456789": 0xD202D277); crc = 0 gives the
 * standard CRC-32 (0xCBF43926) that zlib and Secure Boot V2 blocks use. */
uint32_t fk_crc32_le(uint32_t crc, const void *buf, size_t len);

/* Little-endian loads and stores (formats here are all little-endian). */
static inline uint16_t fk_load_le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t fk_load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline void fk_store_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void fk_store_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* ---- files --------------------------------------------------------------------------- */
enum {
    FK_WRITE_NOSYNC = 1 << 0, /* skip fsync of file and directory: the caller syncs a batch */
    FK_WRITE_EXCL = 1 << 1,   /* fail with FK_E_EXISTS when path already exists */
};

/* Writes len bytes to path atomically: a temp file in the same directory, fsync, rename over
 * path, fsync of the directory (unless FK_WRITE_NOSYNC). The file gets exactly `mode`
 * whatever the umask (0600 for secrets). On failure path is unchanged and no temp file is
 * left. FK_OK, FK_E_IO (diag names the file and errno text), FK_E_EXISTS. */
FK_MUST_CHECK enum fk_err fk_file_write_atomic(const char *path, const void *data, size_t len,
                                               unsigned mode, unsigned flags,
                                               struct fk_diag *diag);
/* Staged atomic writes: fk_file_write_atomic split in two halves so that a batch of files
 * is made durable at once instead of one fsync (one device cache flush) per file.
 * fk_file_stage_write writes an unnamed file (O_TMPFILE) in path's directory, or a temp file
 * beside path (same temp names as fk_file_write_atomic), with exactly `mode`, and starts its
 * write-back without waiting; fk_file_stage_flush waits until the
 * data of every staged file is on the device (or fdatasyncs each one, fdatasync_each set),
 * then links or renames each into place (atomically replacing any file there), in order. Neither syncs the directory: the renames
 * (and the file metadata the waits produced) are durable only after the caller's
 * fk_dir_sync / fsync of the directory, which therefore must come after the flush.
 * A stage holds one open descriptor per staged file: flush it every few hundred files. */
struct fk_file_staged {
    int fd;
    char *tmp; /* NULL: an unnamed (O_TMPFILE) file, linked in place by the flush */
    char *path;
};
struct fk_file_stage {
    struct fk_file_staged *v;
    size_t n;
    size_t cap;
    int fdatasync_each; /* the file system's directory fsync does not cover file data */
    int named;          /* set when O_TMPFILE is unavailable: named temp files */
    /* The caller makes the files durable with one syncfs() of their file system before
     * anything relies on them (it writes back every file's data and inode, links included):
     * the flush then links files without waiting for their data, and no write-back is
     * started per file (one request and one device doorbell per small file: syncfs writes
     * them in far fewer, merged requests). */
    int syncfs_after;
    int no_device; /* tmpfs and the like: nothing to write back, no sync_file_range at all */
};
/* FK_OK, FK_E_IO, FK_E_NOMEM; on failure nothing new is staged and no temp file is left. */
FK_MUST_CHECK enum fk_err fk_file_stage_write(struct fk_file_stage *s, const char *path,
                                              const void *data, size_t len, unsigned mode,
                                              struct fk_diag *diag);
/* Waits for, closes and renames every staged file; the stage is empty afterwards, also on
 * failure (files not renamed then are removed). FK_OK, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_file_stage_flush(struct fk_file_stage *s, struct fk_diag *diag);
/* Closes and removes every staged file still pending and frees the stage's memory. */
void fk_file_stage_free(struct fk_file_stage *s);
/* 1 when an fsync of a directory on fd's file system also makes durable the data and
 * metadata of files fully written back before it (ext4, XFS: one ordered journal; tmpfs:
 * nothing to make durable), 0 when each file needs its own fdatasync. */
int fk_dir_sync_covers_data(int fd);
/* 1 when fd's file system lives in memory only (tmpfs, ramfs): there is no device to write
 * back to, so write-back hints and waits are pointless; 0 otherwise or when unknown. */
int fk_fs_in_memory(int fd);
/* Reads a whole file of at most max bytes into a fresh malloc'd buffer (*out, NUL-terminated
 * past *out_len for convenience; free with free(), or fk_free_secret() for secrets).
 * FK_OK, FK_E_IO, FK_E_TOOBIG. */
FK_MUST_CHECK enum fk_err fk_file_read(const char *path, size_t max, uint8_t **out,
                                       size_t *out_len, struct fk_diag *diag);
/* fsyncs a directory (after a batch of FK_WRITE_NOSYNC writes and their renames). */
FK_MUST_CHECK enum fk_err fk_dir_sync(const char *dir, struct fk_diag *diag);
/* Creates dir and its parents (like mkdir -p) with the given mode. */
FK_MUST_CHECK enum fk_err fk_mkdirs(const char *dir, unsigned mode, struct fk_diag *diag);
/* Wipes then frees a buffer of len bytes. NULL is a no-op. */
void fk_free_secret(void *p, size_t len);
/* Room for element n of the array arr of *cap elements of elem bytes: arr itself while
 * n < *cap, else arr realloc'd to first elements (when *cap is 0), or to twice *cap, doubled
 * again until element n fits, and *cap updated. NULL when out of memory, or when the size
 * would not fit a size_t: arr and *cap are then unchanged, and arr is still the caller's to
 * use or free. realloc may leave the old block's bytes on the heap: not for arrays that hold
 * secrets (fk_jbuf wipes its old copy instead). */
FK_MUST_CHECK void *fk_grow(void *arr, size_t *cap, size_t n, size_t elem, size_t first);

/* Joins dir + "/" + name + suffix into a malloc'd string (*out). FK_OK or FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_path_join(const char *dir, const char *name, const char *suffix,
                                       char **out);

/* Current time as RFC 3339 UTC with a Z ("2025-01-15T10:30:00Z") into out[21]. */
void fk_time_rfc3339(long long unix_seconds, char out[21]);
/* Parses exactly what fk_time_rfc3339 writes: "YYYY-MM-DDTHH:MM:SSZ", 20 bytes (a NUL at
 * buf[20] or len == 20; nothing else may follow), year 1970..9999, every field in range
 * (February 29 only in leap years, no leap second), into seconds since the epoch. Reads at
 * most len bytes of buf. FK_OK; FK_E_PARSE (any deviation: another length, a zone other than
 * Z, fractions, a field out of range). */
FK_MUST_CHECK enum fk_err fk_time_parse_rfc3339(const char *buf, size_t len, long long *out);

#ifdef __cplusplus
}
#endif
#endif
