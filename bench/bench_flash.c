/* bench_flash: time to flash and verify one device through a pty, the way the factory does it
 * (`provision-keys flash`: sync, MAC, SPI attach, write the 0x6000-byte NVS and the 0x1000-byte
 * nvs_keys partitions, verify both by MD5 and a full read-back), against robot-sim's ROM
 * responder running in a thread on the pty master.
 *
 * Prints the measured time (a pty moves bytes at memory speed, so this is the protocol's CPU
 * and round-trip cost), the bytes on the wire per payload byte (SLIP escaping, headers, 4-byte
 * status replies, READ_FLASH_SLOW's 64-byte replies), and the time the same bytes would take on
 * a real UART: bytes x 10 bits (8N1) / baud, at 115200 and 921600. No baseline is asserted. */
#define _GNU_SOURCE /* posix_openpt, ptsname_r */
#include "fkd/rom.h"
#include "fleetkey/flash.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHIP (4u * 1024u * 1024u)
#define NVS_OFF 0x9000u
#define NVS_LEN 0x6000u
#define KEYS_OFF 0xF000u
#define KEYS_LEN 0x1000u
#define ROUNDS 5

static uint8_t *chip;
static struct fkd_rom rom;
static int master = -1;
static volatile int stop;

static int rd(void *c, uint32_t off, void *buf, uint32_t len) {
    (void)c;
    memcpy(buf, chip + off, len);
    return 0;
}
static int wr(void *c, uint32_t off, const void *buf, uint32_t len) {
    (void)c;
    const uint8_t *in = buf;
    for (uint32_t i = 0; i < len; i++) {
        chip[off + i] &= in[i];
    }
    return 0;
}
static int er(void *c, uint32_t off, uint32_t len) {
    (void)c;
    memset(chip + off, 0xFF, len);
    return 0;
}
static int tx(void *u, const uint8_t *buf, size_t len) {
    (void)u;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(master, buf + done, len - done);
        if (n < 0) {
            struct pollfd p = {master, POLLOUT, 0};
            if (poll(&p, 1, 1000) <= 0) {
                return -1;
            }
            continue;
        }
        done += (size_t)n;
    }
    return 0;
}

static void *responder(void *arg) {
    uint8_t buf[4096];
    (void)arg;
    while (!stop) {
        struct pollfd p = {master, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0 || (p.revents & POLLIN) == 0) {
            continue;
        }
        ssize_t n = read(master, buf, sizeof buf);
        if (n > 0 && fkd_rom_feed(&rom, buf, (size_t)n) != FKD_ROM_STAY) {
            rom.exit = FKD_ROM_STAY;
        }
    }
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int check(enum fk_err rc, const struct fk_diag *d, const char *what) {
    if (rc != FK_OK) {
        fprintf(stderr, "bench_flash: %s: %s (%s)\n", what, d->msg, fk_strerror(rc));
        return -1;
    }
    return 0;
}

static char pty_name[128];

/* One mode, ROUNDS devices: prints time, wire bytes per payload byte and the UART estimate. */
static void run(const char *title, int compress, const uint8_t *nvs, const uint8_t *keys) {
    double best = 1e9, sum = 0;
    struct fk_flash_stats st = {0}, st_write = {0};
    for (int round = 0; round < ROUNDS; round++) {
        struct fk_flash *f = NULL;
        struct fk_diag d;
        uint8_t got[6];
        fk_diag_init(&d);
        memset(chip, 0xFF, CHIP);
        double t0 = now();
        if (check(fk_flash_open(pty_name, 115200, FK_FLASH_BEFORE_NO_RESET, NULL, &f, &d), &d,
                  "open") ||
            check(fk_flash_sync(f, &d), &d, "sync") ||
            check(fk_flash_read_mac(f, got, &d), &d, "mac") ||
            check(fk_flash_spi_attach(f, CHIP, &d), &d, "attach") ||
            check((compress ? fk_flash_write_deflate : fk_flash_write)(f, NVS_OFF, nvs, NVS_LEN,
                                                                       NULL, NULL, &d),
                  &d, "write nvs") ||
            check((compress ? fk_flash_write_deflate : fk_flash_write)(f, KEYS_OFF, keys,
                                                                       KEYS_LEN, NULL, NULL, &d),
                  &d, "write keys")) {
            exit(1);
        }
        fk_flash_get_stats(f, &st_write);
        if (check(fk_flash_verify(f, NVS_OFF, nvs, NVS_LEN, NULL, NULL, &d), &d, "verify nvs") ||
            check(fk_flash_verify(f, KEYS_OFF, keys, KEYS_LEN, NULL, NULL, &d), &d,
                  "verify keys")) {
            exit(1);
        }
        double t = now() - t0;
        fk_flash_get_stats(f, &st);
        fk_flash_close(f);
        best = t < best ? t : best;
        sum += t;
    }
    const double payload = NVS_LEN + KEYS_LEN;
    const double wire = (double)(st.tx_bytes + st.rx_bytes);
    const double wire_write = (double)(st_write.tx_bytes + st_write.rx_bytes);
    printf("%s: nvs 0x%x + nvs_keys 0x%x = %.0f payload bytes, %d devices\n", title, NVS_LEN,
           KEYS_LEN, payload, ROUNDS);
    printf("  measured over a pty: best %.3f s, mean %.3f s per device (memory speed: "
           "protocol cost only)\n", best, sum / ROUNDS);
    printf("  wire bytes: %.0f (tx %llu, rx %llu) = %.2f per payload byte; write phase %.2f, "
           "verify phase (MD5 + READ_FLASH_SLOW) %.2f\n", wire, st.tx_bytes, st.rx_bytes,
           wire / payload, wire_write / payload, (wire - wire_write) / payload);
    printf("  on a real UART (bytes x 10 / baud): %.2f s at 115200, %.3f s at 921600 baud\n",
           wire * 10 / 115200, wire * 10 / 921600);
}

int main(void) {
    static const uint8_t mac[6] = {0x24, 0x0A, 0xC4, 0xBE, 0x4C, 0x01};
    uint8_t *nvs = malloc(NVS_LEN), *keys = malloc(KEYS_LEN);
    chip = malloc(CHIP);
    if (nvs == NULL || keys == NULL || chip == NULL) {
        return 1;
    }
    memset(chip, 0xFF, CHIP);
    /* Random bytes: SLIP escapes 2 of every 256 of them, as it does real key material. (A
     * plain NVS image is mostly 0xFF and escapes less, so this errs on the costly side.) */
    if (fk_random(nvs, NVS_LEN) != FK_OK || fk_random(keys, KEYS_LEN) != FK_OK) {
        return 1;
    }
    master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
        ptsname_r(master, pty_name, sizeof pty_name) != 0) {
        perror("bench_flash: pty");
        return 1;
    }
    struct fkd_rom_flash fl = {NULL, CHIP, rd, wr, er};
    fkd_rom_init(&rom, mac);
    if (fkd_rom_setup(&rom, &fl, tx, NULL, NULL) != 0) {
        return 1;
    }
    static uint8_t defl[0x10000];
    fkd_rom_set_deflate_buffer(&rom, defl, sizeof defl);
    pthread_t th;
    if (pthread_create(&th, NULL, responder, NULL) != 0) {
        return 1;
    }

    run("plain FLASH_DATA, random bytes (worst case)", 0, nvs, keys);
    /* What the factory flashes: a 0x6000 NVS with a page or so of entries and the rest erased,
     * and an nvs_keys partition of 64 key bytes + CRC, the rest 0xFF. */
    memset(nvs + 0x1000, 0xFF, NVS_LEN - 0x1000);
    memset(keys + 68, 0xFF, KEYS_LEN - 68);
    run("plain FLASH_DATA, NVS-shaped images", 0, nvs, keys);
    run("compressed FLASH_DEFL_DATA (default), NVS-shaped images", 1, nvs, keys);
    stop = 1;
    pthread_join(th, NULL);
    close(master);
    free(nvs);
    free(keys);
    free(chip);
    return 0;
}
