/* Files: atomic replace (temp + fsync + rename + directory fsync), bounded reads, mkdir -p.
 *
 * Why this shape: a reader (or a re-run after a crash) must see either the old file or the new
 * one, never a prefix. The temp file lives in the target's directory so rename() stays atomic
 * (same file system), and its name carries the pid and a counter so concurrent writers in one
 * directory never collide. */
#define _GNU_SOURCE /* sync_file_range */
#include "fleetkey/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

static atomic_uint tmp_counter;

static enum fk_err io_fail(struct fk_diag *diag, const char *path, const char *what, int err) {
    return fk_diag_at(diag, FK_E_IO, path, 0, "%s: %s", what, strerror(err));
}

static enum fk_err dir_of(const char *path, char *out, size_t size) {
    char *copy = strdup(path);
    if (copy == NULL) {
        return FK_E_NOMEM;
    }
    snprintf(out, size, "%s", dirname(copy));
    free(copy);
    return FK_OK;
}

enum fk_err fk_dir_sync(const char *dir, struct fk_diag *diag) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return io_fail(diag, dir, "cannot open directory", errno);
    }
    int r = fsync(fd);
    int err = errno;
    close(fd);
    return r == 0 ? FK_OK : io_fail(diag, dir, "fsync", err);
}

static enum fk_err write_all(int fd, const void *data, size_t len, const char *name,
                             struct fk_diag *diag) {
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return io_fail(diag, name, "write", errno);
        }
        p += w;
        left -= (size_t)w;
    }
    return FK_OK;
}

/* Creates path's temp file (NAME.tmp.PID.N, the names a killed batch's cleanup knows) with
 * exactly `mode` and writes data into it; *fd stays open. On failure nothing is left. */
static enum fk_err temp_write(const char *path, const void *data, size_t len, unsigned mode,
                              char *tmp, size_t tmp_size, int *fd_out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    int fd = -1;
    int n = snprintf(tmp, tmp_size, "%s.tmp.%ld.%u", path, (long)getpid(),
                     atomic_fetch_add(&tmp_counter, 1u));
    FK_ENSURE(n > 0 && (size_t)n < tmp_size, fk_diag_at(diag, FK_E_ARG, path, 0, "path too long"));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FK_ENSURE(fd >= 0, io_fail(diag, tmp, "cannot create", errno));
    /* The umask may have narrowed (or a caller asked for wider) permissions: set them
     * exactly, before any byte is written, so a secret is never readable by others. */
    FK_ENSURE(fchmod(fd, (mode_t)mode) == 0, io_fail(diag, tmp, "chmod", errno));
    FK_GUARD(write_all(fd, data, len, tmp, diag));
    *fd_out = fd;
    fd = -1;
    rc = FK_OK;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    return rc;
}

enum fk_err fk_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                                 unsigned flags, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char tmp[4096];
    char dir[4096];
    int fd = -1;
    int made = 0;

    FK_GUARD(dir_of(path, dir, sizeof dir));
    if ((flags & FK_WRITE_EXCL) && access(path, F_OK) == 0) {
        rc = fk_diag_at(diag, FK_E_EXISTS, path, 0, "already exists");
        goto out;
    }
    FK_GUARD(temp_write(path, data, len, mode, tmp, sizeof tmp, &fd, diag));
    made = 1;
    if (!(flags & FK_WRITE_NOSYNC)) {
        FK_ENSURE(fsync(fd) == 0, io_fail(diag, tmp, "fsync", errno));
    }
    FK_ENSURE(close(fd) == 0, io_fail(diag, tmp, "close", errno));
    fd = -1;
    FK_ENSURE(rename(tmp, path) == 0, io_fail(diag, path, "rename", errno));
    made = 0;
    if (!(flags & FK_WRITE_NOSYNC)) {
        FK_GUARD(fk_dir_sync(dir, diag));
    }
    rc = FK_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (made) {
        unlink(tmp);
    }
    return rc;
}

/* linkat(fd, "", AT_EMPTY_PATH) is refused without CAP_DAC_READ_SEARCH on kernels before
 * 6.10; the /proc/self/fd/N form always works but costs a walk through procfs. The first
 * refusal switches to it for the rest of the process. */
static atomic_int empty_path_refused;

/* Links unnamed file fd as path; -1 with errno on failure. */
static int link_fd(int fd, const char *path) {
    if (!atomic_load(&empty_path_refused)) {
        if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0) {
            return 0;
        }
        if (errno != EPERM && errno != ENOENT && errno != EINVAL) {
            return -1;
        }
        atomic_store(&empty_path_refused, 1);
    }
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

/* 1 when /proc/self/fd is there to link unnamed files by (checked once). */
static int proc_fd_ok(void) {
    static atomic_int known = -1;
    int v = atomic_load(&known);
    if (v < 0) {
        v = access("/proc/self/fd", X_OK) == 0;
        atomic_store(&known, v);
    }
    return v;
}

enum fk_err fk_file_stage_write(struct fk_file_stage *s, const char *path, const void *data,
                                size_t len, unsigned mode, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char tmp[4096];
    int fd = -1;
    struct fk_file_staged e = {-1, NULL, NULL};
    struct fk_file_staged *nv = fk_grow(s->v, &s->cap, s->n, sizeof *nv, 64);
    FK_ENSURE(nv != NULL, FK_E_NOMEM);
    s->v = nv;
    /* An unnamed file (O_TMPFILE) when the file system has them: it needs no directory
     * entry until the flush links it in place, so creating it does not take the
     * directory's lock (the one lock every worker writing into one directory contends
     * on), and a killed run leaves no temp file behind. */
    tmp[0] = '\0';
    if (!s->named) {
        char dir[4096];
        FK_GUARD(dir_of(path, dir, sizeof dir));
        fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0 || !proc_fd_ok()) {
            s->named = 1; /* not supported here (or no /proc to link it by): named temps */
            if (fd >= 0) {
                close(fd);
                fd = -1;
            }
        } else {
            FK_ENSURE(fchmod(fd, (mode_t)mode) == 0, io_fail(diag, path, "chmod", errno));
            FK_GUARD(write_all(fd, data, len, path, diag));
        }
    }
    if (fd < 0) {
        FK_GUARD(temp_write(path, data, len, mode, tmp, sizeof tmp, &fd, diag));
        e.tmp = strdup(tmp);
        FK_ENSURE(e.tmp != NULL, FK_E_NOMEM);
    }
    /* Start the write-back now, without waiting: by the time the stage is flushed the data
     * is usually on the device already, so the flush mostly finds nothing left to wait for.
     * Advisory: where it is not supported the flush's wait does the work. */
    if (!s->no_device && !s->syncfs_after) {
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    e.path = strdup(path);
    FK_ENSURE(e.path != NULL, FK_E_NOMEM);
    e.fd = fd;
    fd = -1;
    s->v[s->n++] = e;
    e.tmp = NULL;
    e.path = NULL;
    rc = FK_OK;
out:
    if (fd >= 0) {
        close(fd);
        if (tmp[0] != '\0') {
            unlink(tmp);
        }
    }
    free(e.tmp);
    free(e.path);
    return rc;
}

/* Gives the unnamed file e->fd the name e->path, replacing any file there atomically. */
static enum fk_err link_unnamed(struct fk_file_staged *e, struct fk_diag *diag) {
    char tmp[4096];
    if (link_fd(e->fd, e->path) == 0) {
        return FK_OK;
    }
    if (errno != EEXIST) {
        return io_fail(diag, e->path, "link", errno);
    }
    /* A file of that name exists (a device minted again): link under a temp name, then
     * rename over it, so the name never points at nothing. */
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", e->path, (long)getpid(),
                     atomic_fetch_add(&tmp_counter, 1u));
    if (n <= 0 || (size_t)n >= sizeof tmp) {
        return fk_diag_at(diag, FK_E_ARG, e->path, 0, "path too long");
    }
    if (link_fd(e->fd, tmp) != 0) {
        return io_fail(diag, tmp, "link", errno);
    }
    if (rename(tmp, e->path) != 0) {
        int err = errno;
        unlink(tmp);
        return io_fail(diag, e->path, "rename", err);
    }
    return FK_OK;
}

enum fk_err fk_file_stage_flush(struct fk_file_stage *s, struct fk_diag *diag) {
    enum fk_err rc = FK_OK;
    for (size_t i = 0; i < s->n; i++) {
        struct fk_file_staged *e = &s->v[i];
        /* Nothing to wait for: no device (tmpfs), or the caller's syncfs() writes the data
         * and the link together before anything relies on either. */
        int wait = !s->no_device && (s->fdatasync_each || !s->syncfs_after);
        if (rc == FK_OK && wait) {
            /* The data must be on the device before the name points at it: a rename made
             * durable (by the caller's directory fsync) ahead of its data would leave a
             * complete-looking file of zeros after a power cut. */
            int r = s->fdatasync_each
                        ? fdatasync(e->fd)
                        : sync_file_range(e->fd, 0, 0,
                                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                              SYNC_FILE_RANGE_WAIT_AFTER);
            if (r != 0 && !s->fdatasync_each && (errno == ENOSYS || errno == EINVAL)) {
                r = fdatasync(e->fd);
            }
            if (r != 0) {
                rc = io_fail(diag, e->path, s->fdatasync_each ? "fdatasync" : "sync_file_range",
                             errno);
            }
        }
        if (rc == FK_OK && e->tmp == NULL) {
            rc = link_unnamed(e, diag);
        }
        if (close(e->fd) != 0 && rc == FK_OK) {
            rc = io_fail(diag, e->path, "close", errno);
        }
        e->fd = -1;
        if (rc == FK_OK && e->tmp != NULL && rename(e->tmp, e->path) != 0) {
            rc = io_fail(diag, e->path, "rename", errno);
        }
        if (rc != FK_OK && e->tmp != NULL) {
            unlink(e->tmp);
        }
        free(e->tmp);
        free(e->path);
    }
    s->n = 0;
    return rc;
}

void fk_file_stage_free(struct fk_file_stage *s) {
    for (size_t i = 0; i < s->n; i++) {
        close(s->v[i].fd);
        if (s->v[i].tmp != NULL) {
            unlink(s->v[i].tmp);
        }
        free(s->v[i].tmp);
        free(s->v[i].path);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* 1 when the ext4 file system on device dev has a journal: jbd2 lists each journal it runs
 * as /proc/fs/jbd2/<device>-8, the device named as in /sys/dev/block/MAJ:MIN/uevent. Any
 * doubt answers 0 (the safe side). */
static int ext4_has_journal(dev_t dev) {
    char path[128];
    char line[256];
    char name[64] = "";
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/uevent", major(dev), minor(dev));
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "DEVNAME=", 8) == 0) {
            snprintf(name, sizeof name, "%.*s", (int)strcspn(line + 8, "\n"), line + 8);
        }
    }
    fclose(f);
    if (name[0] == '\0' || strchr(name, '/') != NULL) {
        return 0;
    }
    snprintf(path, sizeof path, "/proc/fs/jbd2/%s-8", name);
    return access(path, F_OK) == 0;
}

int fk_dir_sync_covers_data(int fd) {
    struct statfs st;
    struct stat sb;
    if (fstatfs(fd, &st) != 0 || fstat(fd, &sb) != 0) {
        return 0;
    }
    /* ext4 with a journal and XFS keep one ordered journal/log: forcing it up to the
     * directory's last change also forces every metadata change made before (block
     * allocation, size updates done when write-back completed), and the commit is written
     * behind a cache flush, so data already written back is stable too. ext4 without a
     * journal (same magic) writes only the directory's own blocks: each file needs its own
     * sync there. tmpfs has no disk. */
    switch ((unsigned long)st.f_type) {
    case 0xEF53UL: /* ext2/3/4 */
        return ext4_has_journal(sb.st_dev);
    case 0x58465342UL: /* XFS */
    case 0x01021994UL: /* tmpfs */
        return 1;
    default:
        return 0;
    }
}

int fk_fs_in_memory(int fd) {
    struct statfs st;
    if (fstatfs(fd, &st) != 0) {
        return 0;
    }
    switch ((unsigned long)st.f_type) {
    case 0x01021994UL: /* tmpfs */
    case 0x858458F6UL: /* ramfs */
        return 1;
    default:
        return 0;
    }
}

enum fk_err fk_file_read(const char *path, size_t max, uint8_t **out, size_t *out_len,
                         struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    FK_ENSURE(fd >= 0, io_fail(diag, path, "cannot open", errno));
    for (;;) {
        if (len + 1 >= cap) {
            /* Grow geometrically but never past max + 2: one byte to detect "too big", one
             * for the NUL. */
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            if (ncap > max + 2) {
                ncap = max + 2;
            }
            FK_ENSURE(ncap > cap, fk_diag_at(diag, FK_E_TOOBIG, path, 0,
                                            "larger than the limit of %zu bytes", max));
            uint8_t *nb = realloc(buf, ncap);
            FK_ENSURE(nb != NULL, FK_E_NOMEM);
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        FK_ENSURE(r >= 0, io_fail(diag, path, "read", errno));
        if (r == 0) {
            break;
        }
        len += (size_t)r;
        FK_ENSURE(len <= max, fk_diag_at(diag, FK_E_TOOBIG, path, 0,
                                         "larger than the limit of %zu bytes", max));
    }
    if (buf == NULL) {
        buf = malloc(1);
        FK_ENSURE(buf != NULL, FK_E_NOMEM);
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = FK_OK;
out:
    if (fd >= 0) {
        close(fd);
    }
    /* The file may have been a secret: wipe what was read before freeing on failure. */
    fk_free_secret(buf, cap);
    return rc;
}

enum fk_err fk_mkdirs(const char *dir, unsigned mode, struct fk_diag *diag) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof path) {
        return fk_diag_at(diag, FK_E_ARG, dir, 0, "path too long");
    }
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST) {
            return io_fail(diag, path, "cannot create directory", errno);
        }
        *p = '/';
    }
    if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST) {
        return io_fail(diag, path, "cannot create directory", errno);
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return fk_diag_at(diag, FK_E_IO, path, 0, "not a directory");
    }
    return FK_OK;
}

enum fk_err fk_path_join(const char *dir, const char *name, const char *suffix, char **out) {
    size_t n = strlen(dir) + strlen(name) + strlen(suffix != NULL ? suffix : "") + 2;
    char *p = malloc(n);
    if (p == NULL) {
        return FK_E_NOMEM;
    }
    snprintf(p, n, "%s%s%s%s", dir, (dir[0] != '\0' && dir[strlen(dir) - 1] != '/') ? "/" : "",
             name, suffix != NULL ? suffix : "");
    *out = p;
    return FK_OK;
}
