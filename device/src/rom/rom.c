/* ESP32 ROM download-mode responder: see fkd/rom.h.
 *
 * Design: fkd_rom_feed() runs the SLIP decoder over received bytes; each complete frame goes to
 * fkd_rom_handle_packet(), which parses the command header, checks every length against what
 * the frame holds, acts on flash through the caller's callbacks and sends exactly one response
 * (SYNC: eight) through tx. Nothing here blocks, allocates or loops on input-controlled counts
 * other than lengths already bounded by the frame buffer (FKD_ROM_FRAME_MAX) or the flash
 * size. Quotes are from esptool's "Serial Protocol" documentation. */
#include "fkd/rom.h"

#include "fkd/inflate.h"

#include <mbedtls/md5.h>
#include <mbedtls/version.h>
#include <string.h>

#define SPI_CMD_REG (FKD_ROM_SPI_REG_BASE + 0x00u)
#define SPI_USR2_REG (FKD_ROM_SPI_REG_BASE + 0x24u)
#define SPI_W0_REG (FKD_ROM_SPI_REG_BASE + 0x80u)
#define SPI_CMD_USR (1u << 18)
#define APB_CTL_DATE_REG 0x3FF6607Cu
#define RTCCALICFG1_REG 0x3FF5F06Cu
#define RESP_DATA_MAX (FKD_ROM_READ_SLOW_BLOCK + FKD_ROM_STATUS_LEN)

static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void st32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint8_t fkd_rom_checksum(const uint8_t *data, size_t len) {
    /* "start with seed value 0xEF and XOR each individual byte in the data to write" */
    uint8_t c = FKD_ROM_CHECKSUM_SEED;
    for (size_t i = 0; i < len; i++) {
        c ^= data[i];
    }
    return c;
}

/* The eFuse MAC CRC (CRC-8, reflected polynomial 0x8C), as espefuse computes it for ESP32. */
static uint8_t mac_crc8(const uint8_t mac[6]) {
    uint8_t crc = 0;
    for (int i = 0; i < 6; i++) {
        crc ^= mac[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc & 1u) ? (uint8_t)((crc >> 1) ^ 0x8Cu) : (uint8_t)(crc >> 1);
        }
    }
    return crc;
}

void fkd_rom_mac_to_efuse(const uint8_t mac[6], uint32_t *word1, uint32_t *word2) {
    *word1 = ((uint32_t)mac[2] << 24) | ((uint32_t)mac[3] << 16) | ((uint32_t)mac[4] << 8) |
             mac[5];
    *word2 = ((uint32_t)mac_crc8(mac) << 16) | ((uint32_t)mac[0] << 8) | mac[1];
}

void fkd_rom_efuse_to_mac(uint32_t word1, uint32_t word2, uint8_t mac[6]) {
    /* esptool: struct.pack(">II", efuse(2), efuse(1))[2:8] */
    mac[0] = (uint8_t)(word2 >> 8);
    mac[1] = (uint8_t)word2;
    mac[2] = (uint8_t)(word1 >> 24);
    mac[3] = (uint8_t)(word1 >> 16);
    mac[4] = (uint8_t)(word1 >> 8);
    mac[5] = (uint8_t)word1;
}

void fkd_rom_init(struct fkd_rom *r, const uint8_t mac[6]) {
    memset(r, 0, sizeof *r);
    fkd_slip_init(&r->slip, r->rx, sizeof r->rx);
    fkd_rom_mac_to_efuse(mac, &r->efuse[1], &r->efuse[2]);
    /* EFUSE_RD_CK8M_FREQ (word 4, bits 0..7): with RTCCALICFG1 below it gives esptool's
     * get_rom_cal_crystal_freq() 40 MHz, so its ESP32 change_baud() sends the rate asked for
     * (cali 1024 * 15625 * 100 / 40 = 40,000,000). */
    r->efuse[4] = 100;
}

int fkd_rom_setup(struct fkd_rom *r, const struct fkd_rom_flash *flash, fkd_rom_tx_fn *tx,
                  fkd_rom_baud_fn *baud, void *user) {
    if (flash == NULL || tx == NULL || flash->read == NULL || flash->write == NULL ||
        flash->erase == NULL || flash->size < 0x10000u ||
        (flash->size & (flash->size - 1u)) != 0) {
        return -1;
    }
    r->flash = *flash;
    r->tx = tx;
    r->baud = baud;
    r->user = user;
    return 0;
}

void fkd_rom_set_deflate_buffer(struct fkd_rom *r, uint8_t *buf, size_t cap) {
    r->defl = buf;
    r->defl_cap = buf != NULL ? cap : 0;
    r->defl_len = 0;
}

void fkd_rom_set_faults(struct fkd_rom *r, unsigned faults) {
    r->faults = faults;
    r->faults_fired = 0;
}

const struct fkd_rom_stats *fkd_rom_get_stats(const struct fkd_rom *r) {
    return &r->stats;
}

/* Clears n bytes through a volatile pointer, so the stores cannot be dropped as dead. */
static void wipe(void *p, size_t n) {
    volatile uint8_t *v = p;
    while (n-- > 0) {
        *v++ = 0;
    }
}

void fkd_rom_free(struct fkd_rom *r) {
    /* The receive buffer, the stage and the compressed stream carried NVS images: keys. */
    wipe(r->rx, sizeof r->rx);
    wipe(r->stage, sizeof r->stage);
    if (r->defl != NULL) {
        wipe(r->defl, r->defl_cap);
    }
}

/* One fault of each kind fires once, so a client's retry can succeed (every time with
 * FKD_ROM_FAULT_STICKY, so that it cannot). */
static int fault_once(struct fkd_rom *r, unsigned bit) {
    if ((r->faults & bit) == 0 ||
        ((r->faults_fired & bit) != 0 && (r->faults & FKD_ROM_FAULT_STICKY) == 0)) {
        return 0;
    }
    r->faults_fired |= bit;
    return 1;
}

static void send(struct fkd_rom *r, uint8_t cmd, uint32_t value, const uint8_t *data,
                 size_t data_len, uint8_t error) {
    uint8_t pkt[FKD_ROM_HDR_LEN + RESP_DATA_MAX];
    uint8_t wire[FKD_SLIP_ENCODED_MAX(sizeof pkt)];
    size_t wire_len = 0;

    if (r->faults & FKD_ROM_FAULT_SILENT) {
        return;
    }
    if (data_len > FKD_ROM_READ_SLOW_BLOCK) {
        data_len = FKD_ROM_READ_SLOW_BLOCK; /* callers never pass more; keeps pkt in bounds */
    }
    /* "Size: size of data field. At least the length of the Status Bytes"; ESP32 ROM: "the
     * final four bytes are used, but only the first two bytes contain status information". */
    size_t size = data_len + FKD_ROM_STATUS_LEN;
    pkt[0] = FKD_ROM_DIR_RESPONSE;
    pkt[1] = cmd;
    pkt[2] = (uint8_t)size;
    pkt[3] = (uint8_t)(size >> 8);
    st32(pkt + 4, value);
    if (data_len > 0) {
        memcpy(pkt + FKD_ROM_HDR_LEN, data, data_len);
    }
    uint8_t *status = pkt + FKD_ROM_HDR_LEN + data_len;
    status[0] = error != 0 ? 1u : 0u;
    status[1] = error;
    status[2] = 0;
    status[3] = 0;
    if (error != 0) {
        r->stats.errors++;
    }
    if (fkd_slip_encode(pkt, FKD_ROM_HDR_LEN + size, wire, sizeof wire, &wire_len) != 0 ||
        r->tx(r->user, wire, wire_len) != 0) {
        r->stats.tx_failures++;
    }
}

static void send_status(struct fkd_rom *r, uint8_t cmd, uint8_t error) {
    send(r, cmd, 0, NULL, 0, error);
}

/* A command the ROM does not implement. esptool.py and esptool-js both recognise the ESP32
 * ROM's answer by a response whose command byte is NOT the request's, with status 1 and error
 * 0x05 (esptool: "if op_ret != op and data[0] != 0 and data[1] == ROM_INVALID_RECV_MSG: raise
 * UnsupportedCommandError"); esptool-js relies on that to fall back from GET_SECURITY_INFO to
 * the chip magic on an ESP32. The command byte used here is 0x00, which no request has. */
static void send_unsupported(struct fkd_rom *r) {
    send(r, FKD_ROM_UNSUPPORTED_CMD, 0, NULL, 0, FKD_ROM_ERR_INVALID_MSG);
}

/* A range [off, off + len) inside the flash, computed without wrapping. */
static int in_flash(const struct fkd_rom *r, uint32_t off, uint32_t len) {
    return off <= r->flash.size && len <= r->flash.size - off;
}

static uint32_t reg_read(const struct fkd_rom *r, uint32_t addr) {
    if (addr == FKD_ROM_CHIP_MAGIC_REG) {
        return FKD_ROM_ESP32_MAGIC;
    }
    if (addr >= FKD_ROM_EFUSE_RD_BASE && addr < FKD_ROM_EFUSE_RD_BASE + 4u * 8u &&
        (addr & 3u) == 0) {
        return r->efuse[(addr - FKD_ROM_EFUSE_RD_BASE) / 4u];
    }
    for (size_t i = 0; i < sizeof r->regs / sizeof r->regs[0]; i++) {
        if (r->regs[i].addr == addr && addr != 0) {
            return r->regs[i].val;
        }
    }
    if (addr == FKD_ROM_UART_CLKDIV_REG) {
        return 347; /* 40 MHz APB / 115200 baud: what esptool's crystal estimate expects */
    }
    if (addr == APB_CTL_DATE_REG) {
        return 0x16042000u;
    }
    if (addr == RTCCALICFG1_REG) {
        return 1024u << 7; /* TIMERS_RTC_CALI_VALUE, bits 7..31 */
    }
    return 0;
}

static int reg_store(struct fkd_rom *r, uint32_t addr, uint32_t val) {
    size_t free_slot = sizeof r->regs / sizeof r->regs[0];
    for (size_t i = 0; i < sizeof r->regs / sizeof r->regs[0]; i++) {
        if (r->regs[i].addr == addr) {
            r->regs[i].val = val;
            return 0;
        }
        if (r->regs[i].addr == 0 && free_slot == sizeof r->regs / sizeof r->regs[0]) {
            free_slot = i;
        }
    }
    if (free_slot == sizeof r->regs / sizeof r->regs[0]) {
        return -1;
    }
    r->regs[free_slot].addr = addr;
    r->regs[free_slot].val = val;
    return 0;
}

/* A user command on the SPI peripheral (esptool's run_spiflash_command: it programs USR2 with
 * the opcode, sets SPI_CMD_USR and polls until the bit clears, then reads W0). */
static void spi_user_command(struct fkd_rom *r) {
    uint8_t op = (uint8_t)reg_read(r, SPI_USR2_REG);
    uint32_t w0 = 0;
    if (op == 0x9F) {
        /* RDID: manufacturer (Winbond 0xEF), memory type 0x40, capacity = log2(size). */
        uint32_t cap = 0;
        while ((1u << cap) < r->flash.size) {
            cap++;
        }
        w0 = 0xEFu | (0x40u << 8) | (cap << 16);
    }
    (void)reg_store(r, SPI_W0_REG, w0);
    (void)reg_store(r, SPI_CMD_REG, 0);
}

static void handle_write_reg(struct fkd_rom *r, uint8_t cmd, const uint8_t *d, size_t n) {
    /* "Four 32-bit words: address, value, mask and delay (in microseconds)"; esptool may send
     * two such groups in one command. */
    if (n == 0 || n % 16u != 0) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    for (size_t i = 0; i < n; i += 16) {
        uint32_t addr = ld32(d + i);
        uint32_t val = ld32(d + i + 4);
        uint32_t mask = ld32(d + i + 8);
        uint32_t v = (reg_read(r, addr) & ~mask) | (val & mask);
        if (addr == SPI_CMD_REG && (v & SPI_CMD_USR) != 0) {
            spi_user_command(r);
            continue;
        }
        if (reg_store(r, addr, v) != 0) {
            send_status(r, cmd, FKD_ROM_ERR_FAILED);
            return;
        }
    }
    send_status(r, cmd, 0);
}

static void handle_begin(struct fkd_rom *r, uint8_t cmd, const uint8_t *d, size_t n) {
    /* FLASH_BEGIN: "Four 32-bit words: size to erase, number of data packets, data size in one
     * packet, flash offset." esptool leaves out the fifth (encrypted write) word for the ESP32
     * ROM, esptool-js sends it as 0: both are accepted; an encrypted write is not supported. */
    if ((n != 16 && n != 20) || (n == 20 && ld32(d + 16) != 0)) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    uint32_t size = ld32(d), blocks = ld32(d + 4), bsize = ld32(d + 8), off = ld32(d + 12);
    if (cmd == FKD_ROM_MEM_BEGIN) {
        if (bsize > FKD_ROM_RAM_BLOCK_MAX) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            return;
        }
        r->writing = 2;
        r->w_blocks = blocks;
        r->w_block_size = bsize;
        r->w_next_seq = 0;
        send_status(r, cmd, 0);
        return;
    }
    int defl = cmd == FKD_ROM_FLASH_DEFL_BEGIN;
    if (defl && r->defl_cap == 0) {
        send_unsupported(r); /* without a buffer this responder has no compressed download */
        return;
    }
    if (!r->attached) {
        send_status(r, cmd, FKD_ROM_ERR_FAILED); /* the ESP32 ROM needs SPI_ATTACH first */
        return;
    }
    /* FLASH_DEFL_BEGIN: "uncompressed size, number of data packets, data packet size, flash
     * offset"; on the ROM the size "is rounded up to flash erase block size". The packets
     * carry the compressed stream, which has to fit the collection buffer. */
    uint64_t data_max = defl ? (uint64_t)r->defl_cap : (uint64_t)r->flash.size - off;
    if (bsize > FKD_ROM_FLASH_BLOCK_MAX || !in_flash(r, off, size) ||
        (blocks != 0 && (uint64_t)blocks * bsize > data_max)) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    /* "The ROM loaders erase the to-be-written region in response to the FLASH_BEGIN
     * command": every sector the region touches. */
    uint32_t start = off & ~(FKD_ROM_SECTOR - 1u);
    uint64_t end = ((uint64_t)off + size + FKD_ROM_SECTOR - 1u) & ~(uint64_t)(FKD_ROM_SECTOR - 1u);
    if (end > r->flash.size) {
        end = r->flash.size;
    }
    if (size > 0 && r->flash.erase(r->flash.ctx, start, (uint32_t)(end - start)) != 0) {
        send_status(r, cmd, FKD_ROM_ERR_FLASH_WRITE);
        return;
    }
    r->writing = defl ? 3 : 1;
    r->defl_len = 0;
    r->stage_base = 0;
    r->stage_len = 0;
    r->w_offset = off;
    r->w_erase_end = size > 0 ? (uint32_t)end : off;
    r->w_blocks = blocks;
    r->w_block_size = bsize;
    r->w_next_seq = 0;
    send_status(r, cmd, 0);
}

/* Inflate sink: bytes go through a small stage into flash; back-references read the stage or,
 * further back, the flash just written. */
static int stage_flush(struct fkd_rom *r) {
    if (r->stage_len > 0 &&
        r->flash.write(r->flash.ctx, r->w_offset + r->stage_base, r->stage, r->stage_len) != 0) {
        return -1;
    }
    r->stage_base += r->stage_len;
    r->stage_len = 0;
    return 0;
}

static int sink_put(void *user, uint8_t b) {
    struct fkd_rom *r = user;
    if (r->stage_len == sizeof r->stage && stage_flush(r) != 0) {
        return -1;
    }
    r->stage[r->stage_len++] = b;
    return 0;
}

static int sink_get(void *user, uint32_t dist, uint8_t *b) {
    struct fkd_rom *r = user;
    uint32_t pos = r->stage_base + r->stage_len - dist; /* dist <= produced: checked */
    if (pos >= r->stage_base) {
        *b = r->stage[pos - r->stage_base];
        return 0;
    }
    return r->flash.read(r->flash.ctx, r->w_offset + pos, b, 1);
}

/* The last compressed block is in: inflate the whole stream into the erased region. */
static uint8_t inflate_into_flash(struct fkd_rom *r) {
    struct fkd_inflate_sink sink = {r, sink_put, sink_get};
    uint32_t produced = 0;
    enum fkd_inflate_result ir = fkd_inflate_zlib(r->defl, r->defl_len,
                                                  r->w_erase_end - r->w_offset, &sink, &produced);
    wipe(r->defl, r->defl_len); /* the stream is an NVS image: keys; it is used up */
    r->defl_len = 0;
    if (ir != FKD_INFLATE_OK) {
        return ir == FKD_INFLATE_SINK ? FKD_ROM_ERR_FLASH_WRITE : FKD_ROM_ERR_DEFLATE;
    }
    if (stage_flush(r) != 0) {
        return FKD_ROM_ERR_FLASH_WRITE;
    }
    r->stats.flash_bytes += produced;
    return 0;
}

static void handle_data(struct fkd_rom *r, uint8_t cmd, uint32_t chk, const uint8_t *d,
                        size_t n) {
    uint8_t want = cmd == FKD_ROM_FLASH_DATA ? 1 : cmd == FKD_ROM_MEM_DATA ? 2 : 3;
    int flashing = want != 2;
    /* "Four 32-bit words: data size, sequence number, 0, 0, then data." */
    if (n < FKD_ROM_DATA_HDR_LEN) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    uint32_t len = ld32(d), seq = ld32(d + 4);
    const uint8_t *payload = d + FKD_ROM_DATA_HDR_LEN;
    if (r->writing != want || len != n - FKD_ROM_DATA_HDR_LEN || len > r->w_block_size) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    /* "The checksum is only applied to this final data to write section"; "The 8-bit result is
     * stored in the checksum field of the packet header (as a little endian 32-bit value)". */
    if (chk != fkd_rom_checksum(payload, len) ||
        (flashing && fault_once(r, FKD_ROM_FAULT_CHECKSUM))) {
        send_status(r, cmd, FKD_ROM_ERR_BAD_CRC);
        return;
    }
    /* "The sequence numbers are 0 based." A repeat of the previous block is a retransmission
     * after a lost response: writing the same bytes again is harmless, so it is acknowledged. */
    int repeat = r->w_next_seq > 0 && seq == r->w_next_seq - 1u;
    if ((seq != r->w_next_seq && !repeat) || seq >= r->w_blocks) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    if (want == 1) {
        uint64_t at = (uint64_t)r->w_offset + (uint64_t)seq * r->w_block_size;
        /* The last block is "padded to the block size with 0xFF bytes", and with esptool-js's
         * 0x4000-byte blocks the padding runs past the region FLASH_BEGIN erased. Writing 0xFF
         * to NOR flash changes nothing, so padding there is accepted (and not written); any
         * other byte outside the erased region would corrupt flash: "flash write error". */
        uint32_t inside = at >= r->w_erase_end ? 0
                          : (uint32_t)(r->w_erase_end - at < len ? r->w_erase_end - at : len);
        for (uint32_t i = inside; i < len; i++) {
            if (payload[i] != 0xFF) {
                send_status(r, cmd, FKD_ROM_ERR_FLASH_WRITE);
                return;
            }
        }
        if (inside > 0 && r->flash.write(r->flash.ctx, (uint32_t)at, payload, inside) != 0) {
            send_status(r, cmd, FKD_ROM_ERR_FLASH_WRITE);
            return;
        }
        if (!repeat) {
            r->stats.flash_bytes += len;
        }
    }
    if (want == 3 && !repeat) {
        /* "Compressed Flash Download is the same, only the data is compressed using the gzip
         * Deflate algorithm" (zlib framing): collect, and inflate once the stream is whole. */
        if (len > r->defl_cap - r->defl_len) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            return;
        }
        memcpy(r->defl + r->defl_len, payload, len);
        r->defl_len += len;
        if (seq + 1u == r->w_blocks) {
            uint8_t err = inflate_into_flash(r);
            if (err != 0) {
                r->writing = 0;
                send_status(r, cmd, err);
                return;
            }
        }
    }
    if (!repeat) {
        r->w_next_seq++;
    }
    if (flashing && fault_once(r, FKD_ROM_FAULT_DROP)) {
        return;
    }
    send_status(r, cmd, 0);
}

static void handle_read_slow(struct fkd_rom *r, uint8_t cmd, const uint8_t *d, size_t n) {
    uint8_t block[FKD_ROM_READ_SLOW_BLOCK];
    if (n != 8) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    uint32_t off = ld32(d), len = ld32(d + 4);
    if (!r->attached) {
        send_status(r, cmd, FKD_ROM_ERR_FAILED);
        return;
    }
    if (len > FKD_ROM_READ_SLOW_BLOCK) {
        send_status(r, cmd, FKD_ROM_ERR_READ_LEN);
        return;
    }
    if (!in_flash(r, off, len)) {
        send_status(r, cmd, FKD_ROM_ERR_FLASH_READ);
        return;
    }
    /* esptool: "command always returns 64 byte buffer, regardless of how many bytes were
     * actually read from flash". */
    memset(block, 0xFF, sizeof block);
    if (len > 0 && r->flash.read(r->flash.ctx, off, block, len) != 0) {
        send_status(r, cmd, FKD_ROM_ERR_FLASH_READ);
        return;
    }
    if (len > 0 && fault_once(r, FKD_ROM_FAULT_READBACK)) {
        block[0] ^= 0x01;
    }
    send(r, cmd, 0, block, sizeof block, 0);
}

static void handle_md5(struct fkd_rom *r, uint8_t cmd, const uint8_t *d, size_t n) {
    static const char hex[] = "0123456789abcdef";
    uint8_t chunk[256];
    uint8_t digest[16];
    uint8_t out[FKD_ROM_MD5_HEX_LEN];
    mbedtls_md5_context md5;
    int ok = 1;

    /* "Four 32-bit words: address, size, 0, 0" */
    if (n != 16) {
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    uint32_t off = ld32(d), len = ld32(d + 4);
    if (!r->attached) {
        send_status(r, cmd, FKD_ROM_ERR_FAILED);
        return;
    }
    if (!in_flash(r, off, len)) {
        send_status(r, cmd, FKD_ROM_ERR_FLASH_READ);
        return;
    }
    mbedtls_md5_init(&md5);
#if MBEDTLS_VERSION_MAJOR >= 3
    ok = mbedtls_md5_starts(&md5) == 0;
#else
    ok = mbedtls_md5_starts_ret(&md5) == 0;
#endif
    for (uint32_t done = 0; ok && done < len;) {
        uint32_t take = len - done < sizeof chunk ? len - done : (uint32_t)sizeof chunk;
        ok = r->flash.read(r->flash.ctx, off + done, chunk, take) == 0;
#if MBEDTLS_VERSION_MAJOR >= 3
        ok = ok && mbedtls_md5_update(&md5, chunk, take) == 0;
#else
        ok = ok && mbedtls_md5_update_ret(&md5, chunk, take) == 0;
#endif
        done += take;
    }
#if MBEDTLS_VERSION_MAJOR >= 3
    ok = ok && mbedtls_md5_finish(&md5, digest) == 0;
#else
    ok = ok && mbedtls_md5_finish_ret(&md5, digest) == 0;
#endif
    mbedtls_md5_free(&md5);
    if (!ok) {
        send_status(r, cmd, FKD_ROM_ERR_FLASH_READ);
        return;
    }
    if (fault_once(r, FKD_ROM_FAULT_MD5)) {
        digest[15] ^= 0x5A;
    }
    /* "the ESP32 ROM loader returns the md5sum as 32 hex encoded ASCII bytes" */
    for (size_t i = 0; i < 16; i++) {
        out[2 * i] = (uint8_t)hex[digest[i] >> 4];
        out[2 * i + 1] = (uint8_t)hex[digest[i] & 15u];
    }
    send(r, cmd, 0, out, sizeof out, 0);
}

void fkd_rom_handle_packet(struct fkd_rom *r, const uint8_t *pkt, size_t len) {
    static const uint8_t sync_body[4] = {0x07, 0x07, 0x12, 0x20};

    /* Direction 0x00, command, u16 size, u32 checksum: anything shorter or pointing the other
     * way is not a request, and the ROM has nobody to answer. */
    if (len < FKD_ROM_HDR_LEN || pkt[0] != FKD_ROM_DIR_REQUEST) {
        r->stats.bad_frames++;
        return;
    }
    uint8_t cmd = pkt[1];
    size_t size = (size_t)pkt[2] | ((size_t)pkt[3] << 8);
    uint32_t chk = ld32(pkt + 4);
    const uint8_t *d = pkt + FKD_ROM_HDR_LEN;
    /* "Length of Data field, in bytes": the frame must hold exactly that much. */
    if (size != len - FKD_ROM_HDR_LEN) {
        r->stats.bad_frames++;
        send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
        return;
    }
    switch (cmd) {
    case FKD_ROM_SYNC: {
        int good = size == FKD_ROM_SYNC_LEN && memcmp(d, sync_body, sizeof sync_body) == 0;
        for (size_t i = sizeof sync_body; good && i < size; i++) {
            good = d[i] == 0x55;
        }
        if (!good) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        /* The ROM answers a SYNC several times, with a non-zero value (the stub answers 0,
         * which is how esptool tells them apart). */
        for (unsigned i = 0; i < FKD_ROM_SYNC_REPLIES; i++) {
            send(r, cmd, ld32(sync_body), NULL, 0, 0);
        }
        break;
    }
    case FKD_ROM_READ_REG:
        if (size != 4) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        send(r, cmd, reg_read(r, ld32(d)), NULL, 0, 0);
        break;
    case FKD_ROM_WRITE_REG:
        handle_write_reg(r, cmd, d, size);
        break;
    case FKD_ROM_SPI_ATTACH:
        /* "32-bit word ... A second 32-bit word (should be 0) is passed to ROM loader only" */
        if (size != 8 && size != 4) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        r->attached = 1;
        send_status(r, cmd, 0);
        break;
    case FKD_ROM_SPI_SET_PARAMS:
        /* "Six 32-bit words: id, total size in bytes, block size, sector size, page size,
         * status mask." */
        if (size != 24 || ld32(d + 4) == 0) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        send_status(r, cmd, 0);
        break;
    case FKD_ROM_FLASH_BEGIN:
    case FKD_ROM_FLASH_DEFL_BEGIN:
    case FKD_ROM_MEM_BEGIN:
        handle_begin(r, cmd, d, size);
        break;
    case FKD_ROM_FLASH_DATA:
    case FKD_ROM_FLASH_DEFL_DATA:
    case FKD_ROM_MEM_DATA:
        handle_data(r, cmd, chk, d, size);
        break;
    case FKD_ROM_FLASH_END:
    case FKD_ROM_FLASH_DEFL_END:
        /* "One 32-bit word: 0 to reboot, 1 run to user code." */
        if (cmd == FKD_ROM_FLASH_DEFL_END && r->defl_cap == 0) {
            send_unsupported(r);
            break;
        }
        if (size != 4) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        r->writing = 0;
        send_status(r, cmd, 0);
        r->exit = ld32(d) != 0 ? FKD_ROM_EXIT_RUN : FKD_ROM_EXIT_REBOOT;
        break;
    case FKD_ROM_MEM_END:
        /* "Two 32-bit words: execute flag, entry point address". Nothing is executed: RAM
         * images (the esptool stub) are accepted and dropped, so use --no-stub. */
        if (size != 8) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        r->writing = 0;
        send_status(r, cmd, 0);
        break;
    case FKD_ROM_READ_FLASH_SLOW:
        handle_read_slow(r, cmd, d, size);
        break;
    case FKD_ROM_SPI_FLASH_MD5:
        handle_md5(r, cmd, d, size);
        break;
    case FKD_ROM_CHANGE_BAUDRATE:
        /* "Two 32-bit words: new baud rate, 0 if we are talking to the ROM flasher" */
        if (size != 8 || ld32(d) == 0) {
            send_status(r, cmd, FKD_ROM_ERR_INVALID_MSG);
            break;
        }
        send_status(r, cmd, 0);
        if (r->baud != NULL) {
            r->baud(r->user, ld32(d));
        }
        break;
    default:
        /* Commands the ESP32 ROM does not implement (GET_SECURITY_INFO, the stub-only 0xD0..)
         * are answered as unsupported, never with silence. */
        send_unsupported(r);
        break;
    }
}

enum fkd_rom_exit fkd_rom_feed(struct fkd_rom *r, const uint8_t *in, size_t len) {
    size_t off = 0;
    while (off < len && r->exit == FKD_ROM_STAY) {
        size_t used = 0;
        enum fkd_slip_event ev = fkd_slip_feed(&r->slip, in + off, len - off, &used);
        off += used;
        if (ev == FKD_SLIP_FRAME) {
            size_t flen = 0;
            const uint8_t *frame = fkd_slip_frame(&r->slip, &flen);
            r->stats.frames++;
            fkd_rom_handle_packet(r, frame, flen);
        } else if (ev != FKD_SLIP_NEED_MORE) {
            r->stats.bad_frames++; /* a broken frame is dropped: the host times out, retries */
        }
    }
    return (enum fkd_rom_exit)r->exit;
}
