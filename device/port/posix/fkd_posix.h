/* The POSIX port of the device library: the robot's flash as one image file, the sdkconfig
 * file, the environment, and a log handler. Everything the core (device/src) may not touch
 * because it is OS-specific lives here; the ESP-IDF port maps the same calls onto
 * esp_partition / nvs_flash / ESP_LOGx. */
#ifndef FKD_POSIX_H
#define FKD_POSIX_H

#include "fkd/common.h"
#include "fkd/flash.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A flash image file mapped into memory (MAP_SHARED: every write lands in the file). The
 * NOR rules and power-loss injection are those of fkd_flash_mem (flash.h), reached through
 * .mem (fkd_flash_mem_cut(&ff.mem, n, torn)). */
struct fkd_flash_file {
    struct fkd_flash_mem mem;
    int fd;
    uint8_t *map;
    uint32_t size;
};

/* Opens path. create: make (or truncate) it as a blank chip of size bytes (all 0xFF, mode
 * 0600: it holds secrets); otherwise size 0 takes the file's size, which must be a multiple of
 * 4096 and at most 16 MiB. FKD_OK, FKD_E_IO (errno kept), FKD_E_ARG. */
FKD_MUST_CHECK enum fkd_err fkd_flash_file_open(struct fkd_flash_file *ff, const char *path,
                                                int create, uint32_t size,
                                                struct fkd_flash *out);
/* Flushes (msync) and unmaps. Safe on a struct that failed to open (fd < 0). */
enum fkd_err fkd_flash_file_close(struct fkd_flash_file *ff);

/* Reads a whole file of at most cap bytes into buf. FKD_OK, FKD_E_IO, FKD_E_RANGE (larger). */
FKD_MUST_CHECK enum fkd_err fkd_posix_read_file(const char *path, uint8_t *buf, size_t cap,
                                                size_t *len);

/* fkd_getenv_fn over getenv(3); user unused. */
const char *fkd_posix_getenv(void *user, const char *name);

/* fkd_log_fn writing "robot-sim: E message" lines to stderr; user is the program name or
 * NULL. */
void fkd_posix_log(void *user, enum fkd_log_level lvl, const char *line);

/* Where the port's network calls wait (fkd_net_wait, fkd_net_wait_write, the TCP connect,
 * fkd_net_sleep_ms): by default poll(2) / nanosleep on the calling thread. A host that runs
 * many device instances on a few threads (robot-sim --fleet: cooperative tasks, see
 * tools/robot-sim/fleet_sched.c) installs a waiter for its threads, which parks the calling
 * task instead of the thread. fd: the socket, or -1 for a plain sleep; events: POLLIN or
 * POLLOUT; timeout_ms bounded. Returns as poll(2) on one descriptor: 1 ready, 0 timed out,
 * < 0 an error (errno set). The device library's own behaviour is unchanged: every wait is
 * still bounded by the same timeouts. */
typedef int fkd_posix_wait_fn(int fd, short events, uint32_t timeout_ms);
/* Sets the waiter of the calling thread (thread-local); NULL restores poll(2). */
void fkd_posix_set_waiter(fkd_posix_wait_fn *fn);

#ifdef __cplusplus
}
#endif
#endif
