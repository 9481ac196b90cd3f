/* POSIX flash: the image file is mapped and handed to the pure-C NOR flash model, so the file
 * always holds exactly the bytes a chip would (including a torn last write after a simulated
 * power cut), and esptool / provision-keys read the same layout. */
#include "fkd_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MAX (16u * 1024u * 1024u)

enum fkd_err fkd_flash_file_open(struct fkd_flash_file *ff, const char *path, int create,
                                 uint32_t size, struct fkd_flash *out) {
    memset(ff, 0, sizeof *ff);
    ff->fd = -1;
    if (path == NULL || (create && (size == 0 || size % FKD_FLASH_SECTOR != 0)) ||
        size > FILE_MAX) {
        return FKD_E_ARG;
    }
    int flags = create ? O_RDWR | O_CREAT | O_TRUNC : O_RDWR;
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0) {
        return FKD_E_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return FKD_E_IO;
    }
    if (create) {
        if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
            close(fd);
            return FKD_E_IO;
        }
    } else {
        if (st.st_size <= 0 || (uint64_t)st.st_size > FILE_MAX ||
            st.st_size % FKD_FLASH_SECTOR != 0 || (size != 0 && (off_t)size != st.st_size)) {
            close(fd);
            return FKD_E_ARG;
        }
        size = (uint32_t)st.st_size;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return FKD_E_IO;
    }
    if (create) {
        memset(map, 0xFF, size); /* a new chip is erased */
    }
    ff->fd = fd;
    ff->map = map;
    ff->size = size;
    fkd_flash_mem_init(&ff->mem, ff->map, size, out);
    return FKD_OK;
}

enum fkd_err fkd_flash_file_close(struct fkd_flash_file *ff) {
    enum fkd_err rc = FKD_OK;
    if (ff->map != NULL) {
        if (msync(ff->map, ff->size, MS_SYNC) != 0) {
            rc = FKD_E_IO;
        }
        munmap(ff->map, ff->size);
        ff->map = NULL;
    }
    if (ff->fd >= 0) {
        if (fsync(ff->fd) != 0) {
            rc = FKD_E_IO;
        }
        close(ff->fd);
        ff->fd = -1;
    }
    return rc;
}

enum fkd_err fkd_posix_read_file(const char *path, uint8_t *buf, size_t cap, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return FKD_E_IO;
    }
    size_t got = 0;
    enum fkd_err rc = FKD_OK;
    for (;;) {
        if (got == cap) {
            int c = fgetc(f);
            if (c != EOF) {
                rc = FKD_E_RANGE;
            }
            break;
        }
        size_t r = fread(buf + got, 1, cap - got, f);
        if (r == 0) {
            if (ferror(f)) {
                rc = FKD_E_IO;
            }
            break;
        }
        got += r;
    }
    fclose(f);
    *len = got;
    return rc;
}

const char *fkd_posix_getenv(void *user, const char *name) {
    (void)user;
    return getenv(name);
}

void fkd_posix_log(void *user, enum fkd_log_level lvl, const char *line) {
    const char *prog = user != NULL ? (const char *)user : "fkd";
    fprintf(stderr, "%s: %s %s\n", prog, fkd_log_level_name(lvl), line);
}
