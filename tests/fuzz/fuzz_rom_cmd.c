/* Fuzz target: the command parser of robot-sim's ROM responder (device/src/rom/rom.c), fed the
 * input both as one decoded packet and as a raw serial byte stream, over a 64 KiB flash in
 * memory. Every response it sends must be a well-formed SLIP frame holding a well-formed
 * response (direction 0x01, size field equal to the data, 4 status bytes), and flash accesses
 * must stay inside the chip (ASan checks the buffer). */
#include "fkd/rom.h"
#include "fkd/slip.h"
#include "fleetkey/flash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHIP 0x10000u
static uint8_t chip[CHIP];
static struct fkd_rom rom;

static int rd(void *ctx, uint32_t off, void *buf, uint32_t len) {
    (void)ctx;
    if (off > CHIP || len > CHIP - off) {
        abort();
    }
    memcpy(buf, chip + off, len);
    return 0;
}

static int wr(void *ctx, uint32_t off, const void *buf, uint32_t len) {
    (void)ctx;
    if (off > CHIP || len > CHIP - off) {
        abort();
    }
    const uint8_t *in = buf;
    for (uint32_t i = 0; i < len; i++) {
        chip[off + i] &= in[i];
    }
    return 0;
}

static int er(void *ctx, uint32_t off, uint32_t len) {
    (void)ctx;
    if (off > CHIP || len > CHIP - off || off % FKD_ROM_SECTOR != 0) {
        abort();
    }
    memset(chip + off, 0xFF, len);
    return 0;
}

static int tx(void *user, const uint8_t *buf, size_t len) {
    uint8_t frame[256];
    struct fkd_slip s;
    size_t used = 0, flen = 0;
    struct fk_flash_response r;
    (void)user;
    fkd_slip_init(&s, frame, sizeof frame);
    if (fkd_slip_feed(&s, buf, len, &used) != FKD_SLIP_FRAME || used != len) {
        abort();
    }
    const uint8_t *f = fkd_slip_frame(&s, &flen);
    if (fk_flash_response_parse(f, flen, FKD_ROM_STATUS_LEN, &r) != FK_OK) {
        abort();
    }
    return 0;
}

static void setup(void) {
    static const uint8_t mac[6] = {0x24, 0x0A, 0xC4, 1, 2, 3};
    static const uint8_t attach[] = {0x00, FKD_ROM_SPI_ATTACH, 8, 0, 0, 0, 0, 0,
                                     0, 0, 0, 0, 0, 0, 0, 0};
    struct fkd_rom_flash fl = {NULL, CHIP, rd, wr, er};
    memset(chip, 0xFF, sizeof chip);
    fkd_rom_init(&rom, mac);
    if (fkd_rom_setup(&rom, &fl, tx, NULL, NULL) != 0) {
        abort();
    }
    static uint8_t defl[0x4000];
    fkd_rom_set_deflate_buffer(&rom, defl, sizeof defl);
    fkd_rom_handle_packet(&rom, attach, sizeof attach);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    /* The first byte picks the fault set, so the fault paths are fuzzed too. */
    if (size > 0) {
        fkd_rom_set_faults(&rom, data[0] & 0x2Fu); /* every fault except SILENT */
    }
    fkd_rom_handle_packet(&rom, data, size);
    (void)fkd_rom_feed(&rom, data, size);
    return 0;
}
