/* robot-sim download mode: see download.h.
 *
 * The pty: posix_openpt + grantpt + unlockpt; the master stays here, the host opens the slave.
 * We do not keep the slave open ourselves, so the master reports POLLHUP whenever no host is
 * attached: that is how --boot-after sees the host leave. While nobody is attached the loop
 * sleeps between polls instead of spinning. Every host open sets raw mode itself (our client and
 * pyserial both do), and this side also sets raw mode on the slave at creation.
 *
 * The default MAC: 24:0A:C4 (an Espressif OUI) followed by the first three bytes of
 * SHA-256(realpath(IMAGE)): stable for one image file, different between robots, and not
 * changed by what is flashed into it. */
/* posix_openpt, grantpt, unlockpt (XSI) and ptsname_r (GNU). */
#define _GNU_SOURCE
#include "download.h"

#include "fkd/flash.h"
#include "fkd/rom.h"
#include "fkd_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_FLASH_SIZE (4u * 1024u * 1024u)

struct link {
    int master;
    int slave_cfg; /* slave fd used only to set raw mode/baud; closed right after setup */
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

/* The responder's flash callbacks over the device library's flash (fkd/flash.h): the POSIX
 * port maps the image file onto the NOR model, so erase sets 0xFF, a write can only clear
 * bits, and the file holds exactly what a chip would. */
static int img_read(void *ctx, uint32_t off, void *buf, uint32_t len) {
    return fkd_flash_read(ctx, off, buf, len) == FKD_OK ? 0 : -1;
}

static int img_write(void *ctx, uint32_t off, const void *buf, uint32_t len) {
    return fkd_flash_write(ctx, off, buf, len) == FKD_OK ? 0 : -1;
}

static int img_erase(void *ctx, uint32_t off, uint32_t len) {
    for (uint32_t done = 0; done < len; done += FKD_FLASH_SECTOR) {
        if (fkd_flash_erase(ctx, off + done) != FKD_OK) {
            return -1;
        }
    }
    return 0;
}

static int tx(void *user, const uint8_t *buf, size_t len) {
    struct link *l = user;
    size_t done = 0;
    /* A UART drops what nobody reads; give a slow reader one second, then drop. */
    for (int waits = 0; done < len && waits < 10;) {
        ssize_t n = write(l->master, buf + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -1;
        }
        struct pollfd p = {l->master, POLLOUT, 0};
        (void)poll(&p, 1, 100);
        waits++;
    }
    return done == len ? 0 : -1;
}

static void set_baud(void *user, uint32_t baud) {
    (void)user;
    /* A pty carries bytes at whatever rate; the new rate only matters to a real UART. */
    fprintf(stderr, "robot-sim: download mode: host switched to %u baud\n", (unsigned)baud);
}

static int parse_mac(const char *s, uint8_t mac[6]) {
    unsigned v[6];
    char tail;
    if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
                                  &v[5], &tail) != 6) {
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        mac[i] = (uint8_t)v[i];
    }
    return 0;
}

static int parse_fault(const char *s, unsigned *faults) {
    static const struct {
        const char *name;
        unsigned bit;
    } table[] = {
        {"md5", FKD_ROM_FAULT_MD5},           {"drop", FKD_ROM_FAULT_DROP},
        {"checksum", FKD_ROM_FAULT_CHECKSUM}, {"readback", FKD_ROM_FAULT_READBACK},
        {"silent", FKD_ROM_FAULT_SILENT},     {"sticky", FKD_ROM_FAULT_STICKY},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(s, table[i].name) == 0) {
            *faults |= table[i].bit;
            return 0;
        }
    }
    return -1;
}

static void default_mac(const char *path, uint8_t mac[6]) {
    char real[PATH_MAX];
    uint8_t h[SHA256_DIGEST_LENGTH];
    const char *p = realpath(path, real) != NULL ? real : path;
    SHA256((const unsigned char *)p, strlen(p), h);
    mac[0] = 0x24;
    mac[1] = 0x0A;
    mac[2] = 0xC4;
    mac[3] = h[0];
    mac[4] = h[1];
    mac[5] = h[2];
}

/* Opens the flash image through the POSIX port, creating an erased 4 MiB chip when missing. */
static int open_image(const char *path, struct fkd_flash_file *ff, struct fkd_flash *fl) {
    int create = access(path, F_OK) != 0;
    enum fkd_err rc =
        fkd_flash_file_open(ff, path, create, create ? FKD_FLASH_DEFAULT_SIZE : 0, fl);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot open the flash image (%s)\n", path,
                fkd_strerror(rc));
        return -1;
    }
    if (fl->size < 0x10000u || (fl->size & (fl->size - 1u)) != 0) {
        fprintf(stderr,
                "robot-sim: %s: a flash chip is a power of two of at least 64 KiB, this "
                "image has %u bytes\n",
                path, (unsigned)fl->size);
        return -1;
    }
    return 0;
}

static int open_pty(struct link *l, char *name, size_t name_size) {
    struct termios t;
    l->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (l->master < 0 || grantpt(l->master) != 0 || unlockpt(l->master) != 0 ||
        ptsname_r(l->master, name, name_size) != 0) {
        fprintf(stderr, "robot-sim: cannot create a pty: %s\n", strerror(errno));
        return -1;
    }
    int fl = fcntl(l->master, F_GETFL);
    if (fl < 0 || fcntl(l->master, F_SETFL, fl | O_NONBLOCK) != 0) {
        return -1;
    }
    /* Raw from the start: no echo, no CR/LF mapping, 8 bits (the host sets it again). */
    l->slave_cfg = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (l->slave_cfg >= 0) {
        if (tcgetattr(l->slave_cfg, &t) == 0) {
            cfmakeraw(&t);
            cfsetspeed(&t, B115200);
            (void)tcsetattr(l->slave_cfg, TCSANOW, &t);
        }
        close(l->slave_cfg);
        l->slave_cfg = -1;
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: robot-sim --flash IMAGE --download-mode [--pty-link PATH]\n"
        "       [--mac AA:BB:CC:DD:EE:FF] [--fault md5|drop|checksum|readback|silent|sticky]...\n"
        "       [--boot-after] [-- BOOT-ARGS...]\n");
}

/* Hands over to the normal boot: robot-sim (this program, or the one next to robot-sim-dl)
 * with --flash IMAGE and the BOOT-ARGS given after "--". Without BOOT-ARGS there is nothing to
 * boot with (robot-sim needs at least --sdkconfig), so download mode just ends. */
static int boot(const char *image, int argc, char **argv) {
    char dir[PATH_MAX], prog[PATH_MAX + 16];
    if (argv == NULL) {
        printf("robot-sim: left download mode (no boot arguments after --: not booting)\n");
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) {
        return 1;
    }
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        return 1;
    }
    *slash = '\0';
    snprintf(prog, sizeof prog, "%s/robot-sim", dir);
    if (access(prog, X_OK) != 0) {
        fprintf(stderr, "robot-sim: left download mode; %s not found: not booting\n", prog);
        return 1;
    }
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL) {
        return 1;
    }
    int k = 0;
    args[k++] = prog;
    args[k++] = (char *)"--flash";
    args[k++] = (char *)image;
    for (int i = 0; i < argc; i++) {
        args[k++] = argv[i];
    }
    args[k] = NULL;
    printf("robot-sim: left download mode, booting from %s\n", image);
    fflush(stdout);
    execv(prog, args);
    fprintf(stderr, "robot-sim: cannot run %s: %s\n", prog, strerror(errno));
    free(args);
    return 1;
}

int fk_sim_download_main(int argc, char **argv) {
    const char *image_path = NULL, *link_path = NULL;
    uint8_t mac[6];
    int have_mac = 0, boot_after = 0, boot_argc = 0;
    char **boot_argv = NULL;
    unsigned faults = 0;
    static struct fkd_rom rom; /* ~17 KiB receive buffer: not on the stack */
    static struct fkd_flash_file ff;
    struct fkd_flash fl;
    struct link l = {-1, -1};
    char pty[128];
    uint8_t *defl = NULL;
    int rc = 1, hosted = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            boot_argc = argc - i - 1;
            boot_argv = argv + i + 1;
            break;
        } else if (strcmp(a, "--download-mode") == 0) {
            continue;
        } else if (strcmp(a, "--boot-after") == 0) {
            boot_after = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        } else if (strcmp(a, "--flash") == 0) {
            image_path = argv[++i];
        } else if (strcmp(a, "--pty-link") == 0) {
            link_path = argv[++i];
        } else if (strcmp(a, "--mac") == 0) {
            if (parse_mac(argv[++i], mac) != 0) {
                fprintf(stderr, "robot-sim: --mac: expected AA:BB:CC:DD:EE:FF, got '%s'\n",
                        argv[i]);
                return 2;
            }
            have_mac = 1;
        } else if (strcmp(a, "--fault") == 0) {
            if (parse_fault(argv[++i], &faults) != 0) {
                fprintf(stderr, "robot-sim: --fault: unknown kind '%s'\n", argv[i]);
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (image_path == NULL) {
        usage(stderr);
        return 2;
    }
    if (!have_mac) {
        default_mac(image_path, mac);
    }
    ff.fd = -1;
    if (open_image(image_path, &ff, &fl) != 0 || open_pty(&l, pty, sizeof pty) != 0) {
        goto out;
    }
    if (link_path != NULL) {
        struct stat st;
        /* Replace a stale link from an earlier run, never a regular file. */
        if (lstat(link_path, &st) == 0 && S_ISLNK(st.st_mode)) {
            (void)unlink(link_path);
        }
        if (symlink(pty, link_path) != 0) {
            fprintf(stderr, "robot-sim: --pty-link %s: %s\n", link_path, strerror(errno));
            goto out;
        }
    }
    struct fkd_rom_flash rf = {&fl, fl.size, img_read, img_write, img_erase};
    fkd_rom_init(&rom, mac);
    if (fkd_rom_setup(&rom, &rf, tx, set_baud, &l) != 0) {
        goto out;
    }
    fkd_rom_set_faults(&rom, faults);
    /* Compressed downloads (esptool's default) collect their stream here: at most the chip. */
    defl = malloc(fl.size);
    if (defl == NULL) {
        fprintf(stderr, "robot-sim: out of memory\n");
        goto out;
    }
    fkd_rom_set_deflate_buffer(&rom, defl, fl.size);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    printf("robot-sim: download mode on %s (mac %02x:%02x:%02x:%02x:%02x:%02x, flash %u KiB)\n",
           pty, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], (unsigned)(fl.size / 1024));
    fflush(stdout);

    enum fkd_rom_exit ex = FKD_ROM_STAY;
    while (!stop_flag && ex == FKD_ROM_STAY) {
        struct pollfd p = {l.master, POLLIN, 0};
        int pr = poll(&p, 1, 200);
        if (pr < 0 && errno != EINTR) {
            break;
        }
        if (pr <= 0) {
            continue;
        }
        if ((p.revents & POLLIN) != 0) {
            uint8_t buf[4096];
            ssize_t n = read(l.master, buf, sizeof buf);
            if (n > 0) {
                ex = fkd_rom_feed(&rom, buf, (size_t)n);
                hosted = hosted || fkd_rom_get_stats(&rom)->frames > 0;
                continue;
            }
        }
        if ((p.revents & POLLHUP) != 0) {
            /* Nobody has the port open. */
            if (boot_after && hosted) {
                break;
            }
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (fkd_flash_file_close(&ff) != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot write the flash image back\n", image_path);
        goto out;
    }
    fkd_rom_free(&rom);
    const struct fkd_rom_stats *st = fkd_rom_get_stats(&rom);
    printf("robot-sim: download mode done: %u frames, %u bad, %u error replies, %u bytes "
           "written\n",
           st->frames, st->bad_frames, st->errors, st->flash_bytes);
    fflush(stdout);
    if (link_path != NULL) {
        (void)unlink(link_path);
    }
    rc = 0;
    if (!stop_flag && (ex != FKD_ROM_STAY || boot_after)) {
        close(l.master);
        l.master = -1;
        free(defl);
        defl = NULL;
        rc = boot(image_path, boot_argc, boot_argv);
    }
out:
    free(defl);
    if (l.master >= 0) {
        close(l.master);
    }
    (void)fkd_flash_file_close(&ff); /* safe when closed or never opened */
    return rc;
}
