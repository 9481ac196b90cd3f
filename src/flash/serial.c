/* Serial port layer for the ROM client: raw termios, baud rates, DTR/RTS, reads and writes with
 * deadlines. Ports are opened O_NONBLOCK and every wait goes through poll() with the time that
 * is left, so nothing here can block past its timeout, whatever the other end does. */
#include "fleetkey/flash.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct fk_serial {
    int fd;
    int is_tty;
    char name[256];
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int baud_const(unsigned baud, speed_t *out) {
    static const struct {
        unsigned baud;
        speed_t c;
    } table[] = {
        {9600, B9600},       {19200, B19200},     {38400, B38400},     {57600, B57600},
        {115200, B115200},   {230400, B230400},   {460800, B460800},   {921600, B921600},
        {1500000, B1500000}, {2000000, B2000000},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].baud == baud) {
            *out = table[i].c;
            return 0;
        }
    }
    return -1;
}

static enum fk_err apply_termios(struct fk_serial *s, unsigned baud) {
    struct termios t;
    speed_t sp;
    if (baud_const(baud, &sp) != 0) {
        return FK_E_ARG;
    }
    if (!s->is_tty) {
        return FK_OK;
    }
    if (tcgetattr(s->fd, &t) != 0) {
        return FK_E_IO;
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~(tcflag_t)(CSTOPB | PARENB | CRTSCTS);
    t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, sp) != 0 || cfsetospeed(&t, sp) != 0 ||
        tcsetattr(s->fd, TCSANOW, &t) != 0) {
        return FK_E_IO;
    }
    return FK_OK;
}

enum fk_err fk_serial_open(const char *path, unsigned baud, struct fk_serial **out,
                           struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_serial *s = NULL;
    speed_t sp;

    *out = NULL;
    if (baud_const(baud, &sp) != 0) {
        return fk_diag_set(diag, FK_E_ARG, "baud rate %u is not supported", baud);
    }
    s = calloc(1, sizeof *s);
    FK_ENSURE(s != NULL, FK_E_NOMEM);
    s->fd = -1;
    snprintf(s->name, sizeof s->name, "%s", path);
    s->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (s->fd < 0) {
        rc = fk_diag_set(diag, FK_E_IO, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    s->is_tty = isatty(s->fd);
    rc = apply_termios(s, baud);
    if (rc != FK_OK) {
        rc = fk_diag_set(diag, rc, "%s: cannot set raw mode at %u baud: %s", path, baud,
                         strerror(errno));
        goto out;
    }
    fk_serial_flush_input(s);
    *out = s;
    s = NULL;
    rc = FK_OK;
out:
    fk_serial_close(s);
    return rc;
}

enum fk_err fk_serial_from_fd(int fd, const char *name, struct fk_serial **out) {
    struct fk_serial *s = calloc(1, sizeof *s);
    *out = NULL;
    if (s == NULL) {
        close(fd);
        return FK_E_NOMEM;
    }
    s->fd = fd;
    s->is_tty = isatty(fd);
    snprintf(s->name, sizeof s->name, "%s", name != NULL ? name : "(fd)");
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) {
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    *out = s;
    return FK_OK;
}

void fk_serial_close(struct fk_serial *s) {
    if (s == NULL) {
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    free(s);
}

const char *fk_serial_name(const struct fk_serial *s) {
    return s->name;
}

enum fk_err fk_serial_set_baud(struct fk_serial *s, unsigned baud) {
    return apply_termios(s, baud);
}

/* Sets or clears one modem line. Ports without modem lines (ptys, sockets) answer ENOTTY or
 * EINVAL; that is not an error for a reset sequence that has nothing to drive. */
static void set_line(struct fk_serial *s, int bit, int on) {
    if (!s->is_tty) {
        return;
    }
    (void)ioctl(s->fd, on ? TIOCMBIS : TIOCMBIC, &bit);
}

enum fk_err fk_serial_reset_to_bootloader(struct fk_serial *s) {
    /* esptool ClassicReset: DTR drives IO0 and RTS drives EN, both inverted. */
    set_line(s, TIOCM_DTR, 0); /* IO0 high */
    set_line(s, TIOCM_RTS, 1); /* EN low: chip held in reset */
    sleep_ms(100);
    set_line(s, TIOCM_DTR, 1); /* IO0 low */
    set_line(s, TIOCM_RTS, 0); /* EN high: chip leaves reset and samples IO0 low */
    sleep_ms(50);
    set_line(s, TIOCM_DTR, 0); /* IO0 high again */
    return FK_OK;
}

enum fk_err fk_serial_write(struct fk_serial *s, const uint8_t *buf, size_t len,
                            int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(s->fd, buf + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return FK_E_IO;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            return FK_E_TIMEOUT;
        }
        struct pollfd p = {s->fd, POLLOUT, 0};
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR) {
            return FK_E_IO;
        }
    }
    return FK_OK;
}

enum fk_err fk_serial_read(struct fk_serial *s, uint8_t *buf, size_t len, size_t *got,
                           int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    *got = 0;
    for (;;) {
        ssize_t n = read(s->fd, buf, len);
        if (n > 0) {
            *got = (size_t)n;
            return FK_OK;
        }
        if (n == 0 && !s->is_tty) {
            /* A closed socket: nothing more will ever come. (A tty in raw mode with VMIN 0
             * returns 0 for "nothing yet"; a hung-up one shows POLLHUP below.) */
            return FK_E_IO;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return FK_E_IO;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            return FK_E_TIMEOUT;
        }
        struct pollfd p = {s->fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno != EINTR) {
            return FK_E_IO;
        }
        if (pr > 0 && (p.revents & POLLIN) == 0 &&
            (p.revents & (POLLERR | POLLNVAL | POLLHUP)) != 0) {
            return FK_E_IO;
        }
    }
}

void fk_serial_flush_input(struct fk_serial *s) {
    uint8_t junk[256];
    if (s->is_tty) {
        (void)tcflush(s->fd, TCIFLUSH);
    }
    /* Bounded drain: a peer that streams forever cannot keep us here. */
    for (int i = 0; i < 64; i++) {
        if (read(s->fd, junk, sizeof junk) <= 0) {
            break;
        }
    }
}
