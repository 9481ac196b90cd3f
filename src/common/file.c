/* Files: atomic replace (temp + fsync + rename + directory fsync), bounded reads, mkdir -p.
 *
 * Why this shape: a reader (or a re-run after a crash) must see either the old file or the new
 * one, never a prefix. The temp file lives in the target's directory so rename() stays atomic
 * (same file system), and its name carries the pid and a counter so concurrent writers in one
 * directory never collide. */
#include "fleetkey/common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

enum fk_err fk_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                                 unsigned flags, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char tmp[4096];
    char dir[4096];
    int fd = -1;
    int made = 0;

    FK_GUARD(dir_of(path, dir, sizeof dir));
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
                     atomic_fetch_add(&tmp_counter, 1u));
    FK_ENSURE(n > 0 && (size_t)n < sizeof tmp,
              fk_diag_at(diag, FK_E_ARG, path, 0, "path too long"));
    if ((flags & FK_WRITE_EXCL) && access(path, F_OK) == 0) {
        rc = fk_diag_at(diag, FK_E_EXISTS, path, 0, "already exists");
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FK_ENSURE(fd >= 0, io_fail(diag, tmp, "cannot create", errno));
    made = 1;
    /* The umask may have narrowed (or a caller asked for wider) permissions: set them
     * exactly, before any byte is written, so a secret is never readable by others. */
    FK_ENSURE(fchmod(fd, (mode_t)mode) == 0, io_fail(diag, tmp, "chmod", errno));
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        FK_ENSURE(w > 0, io_fail(diag, tmp, "write", errno));
        p += w;
        left -= (size_t)w;
    }
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
