/* fs_bound: the file system's share of `provision-keys batch`, measured alone (issue 19).
 *
 *   fs_bound DIR DEVICES JOBS CHUNK SUFFIX=SIZE...
 *
 * Does, per device, the file work batch does and nothing else: for each SUFFIX one unnamed
 * file (O_TMPFILE) of SIZE bytes (bench_batch.sh passes the names and sizes of the files
 * batch wrote for its first device: manifest, NVS image, nvs_keys image), 0xff bytes with
 * the device number in front, fchmod 0600, one linkat into DIR as robot-<12 hex>.SUFFIX,
 * close. JOBS threads claim devices 4 at a time, as batch's workers do. The main thread
 * makes every CHUNK devices (batch's adaptive chunk reaches 2,048 at 100,000 rows) durable
 * with one syncfs() while the workers go on, as batch's writer does with DUR_SYNCFS (on
 * tmpfs a syncfs writes nothing, as batch's directory fsync does not there).
 * No crypto, no SQLite: the devices/s it prints is what the kernel and the disk allow for
 * these files, whatever computes them, so batch's figure divided by it is the share of the
 * physical bound that batch reaches, and its jobs-2/jobs-1 ratio bounds batch's.
 *
 * Prints one line: devices/s, seconds, CPU user/sys per device, syncfs count and seconds. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { MAX_FILES = 8, MAX_SIZE = 1 << 20, CLAIM = 4 };
static size_t file_size[MAX_FILES];
static const char *file_ext[MAX_FILES];
static int nfiles;

struct run {
    const char *dir;
    int dirfd;
    long devices;
    atomic_long next;  /* next device to claim */
    atomic_long done;  /* devices whose three files are linked */
    atomic_int failed; /* errno of the first failure, 0 if none */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One file as batch's fk_file_stage writes it on a file system with O_TMPFILE. */
static int write_one(struct run *r, long dev, int k, unsigned char *buf) {
    char name[64], proc[64];
    int fd = openat(r->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    memset(buf, 0xff, file_size[k]);
    memcpy(buf, &dev, sizeof dev); /* distinct content per device */
    int err = 0;
    if (write(fd, buf, file_size[k]) != (ssize_t)file_size[k] || fchmod(fd, 0600) != 0)
        err = errno ? errno : EIO;
    snprintf(name, sizeof name, "robot-%012lX.%s", 0x020000000000L + dev, file_ext[k]);
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    if (err == 0 && linkat(fd, "", r->dirfd, name, AT_EMPTY_PATH) != 0 &&
        linkat(AT_FDCWD, proc, r->dirfd, name, AT_SYMLINK_FOLLOW) != 0)
        err = errno;
    close(fd);
    return err;
}

static void *worker(void *arg) {
    struct run *r = arg;
    unsigned char *buf = malloc(MAX_SIZE);
    if (buf == NULL) {
        int zero = 0;
        atomic_compare_exchange_strong(&r->failed, &zero, ENOMEM);
        return NULL;
    }
    for (;;) {
        long first = atomic_fetch_add(&r->next, CLAIM);
        if (first >= r->devices || atomic_load(&r->failed))
            break;
        long last = first + CLAIM < r->devices ? first + CLAIM : r->devices;
        for (long d = first; d < last; d++)
            for (int k = 0; k < nfiles; k++) {
                int err = write_one(r, d, k, buf);
                if (err) {
                    int zero = 0;
                    atomic_compare_exchange_strong(&r->failed, &zero, err);
                    goto out;
                }
            }
        atomic_fetch_add(&r->done, last - first);
    }
out:
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 6 || argc - 5 > MAX_FILES) {
        fprintf(stderr, "usage: fs_bound DIR DEVICES JOBS CHUNK SUFFIX=SIZE... (1-%d files)\n",
                MAX_FILES);
        return 2;
    }
    struct run r = {.dir = argv[1], .devices = atol(argv[2])};
    int jobs = atoi(argv[3]);
    long chunk = atol(argv[4]);
    if (r.devices <= 0 || jobs <= 0 || jobs > 64 || chunk <= 0) {
        fprintf(stderr, "fs_bound: DEVICES, JOBS (1-64) and CHUNK must be positive numbers\n");
        return 2;
    }
    for (int i = 5; i < argc; i++) {
        char *eq = strchr(argv[i], '='), *end = NULL;
        long size = eq != NULL ? strtol(eq + 1, &end, 10) : 0;
        if (eq == NULL || eq == argv[i] || end == eq + 1 || *end != '\0' || size <= 0 ||
            size > MAX_SIZE) {
            fprintf(stderr, "fs_bound: argument %d \"%s\": expected SUFFIX=SIZE, SIZE 1-%d\n", i,
                    argv[i], MAX_SIZE);
            return 2;
        }
        *eq = '\0';
        file_ext[nfiles] = argv[i];
        file_size[nfiles++] = (size_t)size;
    }
    if (mkdir(r.dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fs_bound: %s: mkdir: %s\n", r.dir, strerror(errno));
        return 1;
    }
    r.dirfd = open(r.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r.dirfd < 0) {
        fprintf(stderr, "fs_bound: %s: %s\n", r.dir, strerror(errno));
        return 1;
    }
    pthread_t t[64];
    double t0 = now_s(), sync_s = 0;
    long synced = 0, syncs = 0;
    for (int i = 0; i < jobs; i++)
        pthread_create(&t[i], NULL, worker, &r);
    /* The writer: one syncfs per CHUNK devices done, the workers going on meanwhile. */
    while (synced < r.devices && !atomic_load(&r.failed)) {
        long done = atomic_load(&r.done);
        if (done - synced < chunk && done < r.devices) {
            usleep(200);
            continue;
        }
        double s0 = now_s();
        if (syncfs(r.dirfd) != 0) {
            fprintf(stderr, "fs_bound: %s: syncfs: %s\n", r.dir, strerror(errno));
            return 1;
        }
        sync_s += now_s() - s0;
        syncs++;
        synced = done;
    }
    for (int i = 0; i < jobs; i++)
        pthread_join(t[i], NULL);
    double secs = now_s() - t0;
    if (atomic_load(&r.failed)) {
        fprintf(stderr, "fs_bound: %s: %s\n", r.dir, strerror(atomic_load(&r.failed)));
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double us = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sy = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("%.0f devices/s %.2f s, %.0f us CPU/device (user %.0f, sys %.0f), %ld syncfs %.2f s\n",
           (double)r.devices / secs, secs, (us + sy) * 1e6 / (double)r.devices,
           us * 1e6 / (double)r.devices, sy * 1e6 / (double)r.devices, syncs, sync_s);
    close(r.dirfd);
    return 0;
}
