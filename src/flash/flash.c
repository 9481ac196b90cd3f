/* ESP32 ROM client: see fleetkey/flash.h.
 *
 * Every exchange is one command frame out and a search for the matching response in, within a
 * deadline: frames whose command byte differs (the ROM answers SYNC eight times; a response
 * that arrived after its timeout) are skipped, at most MAX_SKIP of them. Block writes are
 * retried a fixed number of times, only for the two failures a retry can cure: a checksum the
 * ROM refused ("Invalid CRC in message", a line error) and a response that never came. The
 * device side (device/src/rom/rom.c) acknowledges a repeated sequence number, so a retry after a
 * lost acknowledgement is safe. */
#include "fleetkey/flash.h"

#include "fkd/rom.h"
#include "fkd/slip.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define RX_FRAME_MAX 512u /* the largest ROM response is 8 + 64 + 4 bytes */
#define MAX_SKIP 100      /* unrelated frames tolerated while waiting for one response */
#define SYNC_TIMEOUT_MS 100
#define DEFAULT_TIMEOUT_MS 3000u

struct fk_flash {
    struct fk_serial *port;
    struct fk_flash_opts o;
    struct fkd_slip slip;
    uint8_t frame[RX_FRAME_MAX];
    uint8_t in[512]; /* bytes read but not yet fed to the decoder */
    size_t in_off;
    size_t in_len;
    uint8_t *pkt;  /* one command packet */
    size_t pkt_cap;
    uint8_t *wire; /* its SLIP encoding */
    size_t wire_cap;
    struct fk_flash_stats st;
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *fk_flash_rom_strerror(uint8_t error) {
    switch (error) {
    case FKD_ROM_ERR_INVALID_MSG:
        return "received message is invalid or the command is not supported";
    case FKD_ROM_ERR_FAILED:
        return "failed to act on received message";
    case FKD_ROM_ERR_BAD_CRC:
        return "invalid CRC in message";
    case FKD_ROM_ERR_FLASH_WRITE:
        return "flash write error";
    case FKD_ROM_ERR_FLASH_READ:
        return "flash read error";
    case FKD_ROM_ERR_READ_LEN:
        return "flash read length error";
    case FKD_ROM_ERR_DEFLATE:
        return "deflate error";
    default:
        return "unknown ROM error";
    }
}

enum fk_err fk_flash_packet_build(uint8_t cmd, const uint8_t *data, size_t len,
                                  uint32_t checksum, uint8_t *out, size_t out_size,
                                  size_t *out_len) {
    /* "Size: length of Data field, in bytes" is a u16: 0-65535. */
    if (len > 0xFFFFu) {
        return FK_E_TOOBIG;
    }
    if (out_size < FKD_ROM_HDR_LEN || len > out_size - FKD_ROM_HDR_LEN) {
        return FK_E_NOSPACE;
    }
    out[0] = FKD_ROM_DIR_REQUEST;
    out[1] = cmd;
    fk_store_le16(out + 2, (uint16_t)len);
    fk_store_le32(out + 4, checksum);
    if (len > 0) {
        memcpy(out + FKD_ROM_HDR_LEN, data, len);
    }
    *out_len = FKD_ROM_HDR_LEN + len;
    return FK_OK;
}

enum fk_err fk_flash_response_parse(const uint8_t *buf, size_t len, size_t status_len,
                                    struct fk_flash_response *out) {
    if (len < FKD_ROM_HDR_LEN) {
        return FK_E_TRUNCATED;
    }
    if (buf[0] != FKD_ROM_DIR_RESPONSE) {
        return FK_E_PARSE;
    }
    size_t size = fk_load_le16(buf + 2);
    /* "Size of data field. At least the length of the Status Bytes." */
    if (size < status_len || size > len - FKD_ROM_HDR_LEN) {
        return FK_E_TRUNCATED;
    }
    if (size != len - FKD_ROM_HDR_LEN) {
        return FK_E_PARSE;
    }
    out->cmd = buf[1];
    out->value = fk_load_le32(buf + 4);
    out->data = buf + FKD_ROM_HDR_LEN;
    out->data_len = size - status_len;
    out->status = out->data[out->data_len];
    out->error = out->data[out->data_len + 1];
    return FK_OK;
}

enum fk_err fk_flash_from_serial(struct fk_serial *s, const struct fk_flash_opts *opts,
                                 struct fk_flash **out) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_flash *f = NULL;

    *out = NULL;
    f = calloc(1, sizeof *f);
    FK_ENSURE(f != NULL, FK_E_NOMEM);
    f->port = s;
    s = NULL;
    if (opts != NULL) {
        f->o = *opts;
    }
    f->o.timeout_ms = f->o.timeout_ms ? f->o.timeout_ms : DEFAULT_TIMEOUT_MS;
    f->o.sync_attempts = f->o.sync_attempts ? f->o.sync_attempts : 7;
    f->o.block_attempts = f->o.block_attempts ? f->o.block_attempts : 3;
    f->o.block_size = f->o.block_size ? f->o.block_size : 0x400;
    FK_ENSURE(f->o.block_size <= FKD_ROM_FLASH_BLOCK_MAX && f->o.block_size % 4 == 0, FK_E_ARG);
    fkd_slip_init(&f->slip, f->frame, sizeof f->frame);
    f->pkt_cap = FKD_ROM_HDR_LEN + FKD_ROM_DATA_HDR_LEN + f->o.block_size;
    f->wire_cap = FKD_SLIP_ENCODED_MAX(f->pkt_cap);
    f->pkt = malloc(f->pkt_cap);
    f->wire = malloc(f->wire_cap);
    FK_ENSURE(f->pkt != NULL && f->wire != NULL, FK_E_NOMEM);
    *out = f;
    f = NULL;
    rc = FK_OK;
out:
    fk_serial_close(s);
    fk_flash_close(f);
    return rc;
}

enum fk_err fk_flash_open(const char *port, unsigned baud, enum fk_flash_before before,
                          const struct fk_flash_opts *opts, struct fk_flash **out,
                          struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_serial *s = NULL;

    *out = NULL;
    FK_GUARD(fk_serial_open(port, baud, &s, diag));
    if (before == FK_FLASH_BEFORE_DEFAULT_RESET) {
        FK_GUARD(fk_serial_reset_to_bootloader(s));
        fk_serial_flush_input(s); /* the boot log the reset printed */
    }
    rc = fk_flash_from_serial(s, opts, out);
    s = NULL;
out:
    fk_serial_close(s);
    return rc;
}

void fk_flash_close(struct fk_flash *f) {
    if (f == NULL) {
        return;
    }
    fk_serial_close(f->port);
    /* Packets, their SLIP encoding and the read-back frames held key material on their way to
     * and from the NVS partition. */
    fk_free_secret(f->pkt, f->pkt_cap);
    fk_free_secret(f->wire, f->wire_cap);
    fk_free_secret(f, sizeof *f);
}

void fk_flash_get_stats(const struct fk_flash *f, struct fk_flash_stats *out) {
    *out = f->st;
}

static void drop_input(struct fk_flash *f) {
    fk_serial_flush_input(f->port);
    fkd_slip_reset(&f->slip);
    f->in_off = f->in_len = 0;
}

/* The next complete frame before deadline. FK_OK (*frame, *len), FK_E_TIMEOUT, FK_E_IO. */
static enum fk_err read_frame(struct fk_flash *f, long long deadline, const uint8_t **frame,
                              size_t *len) {
    for (;;) {
        while (f->in_off < f->in_len) {
            size_t used = 0;
            enum fkd_slip_event ev =
                fkd_slip_feed(&f->slip, f->in + f->in_off, f->in_len - f->in_off, &used);
            f->in_off += used;
            if (ev == FKD_SLIP_FRAME) {
                *frame = fkd_slip_frame(&f->slip, len);
                return FK_OK;
            }
            /* A corrupted or oversized frame is dropped; its command times out or the next
             * frame answers it. */
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            return FK_E_TIMEOUT;
        }
        size_t got = 0;
        enum fk_err rc = fk_serial_read(f->port, f->in, sizeof f->in, &got, (int)left);
        if (rc != FK_OK) {
            return rc;
        }
        f->st.rx_bytes += got;
        f->in_off = 0;
        f->in_len = got;
    }
}

static enum fk_err send_cmd(struct fk_flash *f, uint8_t cmd, const uint8_t *data, size_t len,
                            uint32_t chk) {
    enum fk_err rc = FK_E_INTERNAL;
    size_t pkt_len = 0, wire_len = 0;
    FK_GUARD(fk_flash_packet_build(cmd, data, len, chk, f->pkt, f->pkt_cap, &pkt_len));
    FK_ENSURE(fkd_slip_encode(f->pkt, pkt_len, f->wire, f->wire_cap, &wire_len) == 0,
              FK_E_NOSPACE);
    FK_GUARD(fk_serial_write(f->port, f->wire, wire_len, (int)f->o.timeout_ms));
    f->st.tx_bytes += wire_len;
    rc = FK_OK;
out:
    return rc;
}

/* Waits for the response to cmd. FK_OK with status 0, FK_E_PROTOCOL (error status: *resp is
 * valid, diag says which), FK_E_TIMEOUT, FK_E_IO. */
static enum fk_err wait_resp(struct fk_flash *f, uint8_t cmd, unsigned timeout_ms,
                             struct fk_flash_response *resp, struct fk_diag *diag,
                             const char *what) {
    long long deadline = now_ms() + timeout_ms;
    for (int skipped = 0; skipped <= MAX_SKIP; skipped++) {
        const uint8_t *frame = NULL;
        size_t len = 0;
        enum fk_err rc = read_frame(f, deadline, &frame, &len);
        if (rc == FK_E_TIMEOUT) {
            return fk_diag_set(diag, rc, "%s: %s: no answer within %u ms",
                               fk_serial_name(f->port), what, timeout_ms);
        }
        if (rc != FK_OK) {
            return fk_diag_set(diag, rc, "%s: %s: the port failed (device gone?)",
                               fk_serial_name(f->port), what);
        }
        if (fk_flash_response_parse(frame, len, FKD_ROM_STATUS_LEN, resp) != FK_OK) {
            continue;
        }
        if (resp->cmd != cmd) {
            /* esptool's rule: another command byte with status 1 and "invalid message" is the
             * ROM refusing a command it does not implement. */
            if (resp->status != 0 && resp->error == FKD_ROM_ERR_INVALID_MSG) {
                return fk_diag_set(diag, FK_E_UNSUPPORTED,
                                   "%s: %s: the ROM does not support command 0x%02x",
                                   fk_serial_name(f->port), what, cmd);
            }
            continue;
        }
        if (resp->status != 0) {
            return fk_diag_set(diag, FK_E_PROTOCOL, "%s: %s: the ROM answered error 0x%02x (%s)",
                               fk_serial_name(f->port), what, resp->error,
                               fk_flash_rom_strerror(resp->error));
        }
        return FK_OK;
    }
    return fk_diag_set(diag, FK_E_PROTOCOL, "%s: %s: no matching response among %d frames",
                       fk_serial_name(f->port), what, MAX_SKIP);
}

static enum fk_err command(struct fk_flash *f, uint8_t cmd, const uint8_t *data, size_t len,
                           uint32_t chk, unsigned timeout_ms, struct fk_flash_response *resp,
                           struct fk_diag *diag, const char *what) {
    enum fk_err rc = send_cmd(f, cmd, data, len, chk);
    if (rc != FK_OK) {
        return fk_diag_set(diag, rc, "%s: %s: cannot write to the port",
                           fk_serial_name(f->port), what);
    }
    return wait_resp(f, cmd, timeout_ms, resp, diag, what);
}

enum fk_err fk_flash_sync(struct fk_flash *f, struct fk_diag *diag) {
    uint8_t body[FKD_ROM_SYNC_LEN];
    struct fk_flash_response resp;

    body[0] = 0x07;
    body[1] = 0x07;
    body[2] = 0x12;
    body[3] = 0x20;
    memset(body + 4, 0x55, sizeof body - 4);
    for (unsigned attempt = 0; attempt < f->o.sync_attempts; attempt++) {
        drop_input(f);
        enum fk_err rc = command(f, FKD_ROM_SYNC, body, sizeof body, 0, SYNC_TIMEOUT_MS, &resp,
                                 NULL, "sync");
        if (rc == FK_OK) {
            /* The ROM answers several times; take the others off the line so the next
             * command does not have to wade through them. */
            for (unsigned i = 1; i < FKD_ROM_SYNC_REPLIES; i++) {
                if (wait_resp(f, FKD_ROM_SYNC, SYNC_TIMEOUT_MS, &resp, NULL, "sync") != FK_OK) {
                    break;
                }
            }
            return FK_OK;
        }
        if (rc == FK_E_IO) {
            break;
        }
        f->st.retries += attempt > 0;
        sleep_ms(50);
    }
    return fk_diag_set(diag, FK_E_TIMEOUT,
                       "no ESP32 bootloader answered on %s: is the board in download mode?",
                       fk_serial_name(f->port));
}

enum fk_err fk_flash_read_reg(struct fk_flash *f, uint32_t addr, uint32_t *val,
                              struct fk_diag *diag) {
    uint8_t d[4];
    struct fk_flash_response resp;
    fk_store_le32(d, addr);
    enum fk_err rc =
        command(f, FKD_ROM_READ_REG, d, sizeof d, 0, f->o.timeout_ms, &resp, diag, "read_reg");
    if (rc == FK_OK) {
        *val = resp.value;
    }
    return rc;
}

enum fk_err fk_flash_write_reg(struct fk_flash *f, uint32_t addr, uint32_t val,
                               struct fk_diag *diag) {
    uint8_t d[16];
    struct fk_flash_response resp;
    fk_store_le32(d, addr);
    fk_store_le32(d + 4, val);
    fk_store_le32(d + 8, 0xFFFFFFFFu);
    fk_store_le32(d + 12, 0);
    return command(f, FKD_ROM_WRITE_REG, d, sizeof d, 0, f->o.timeout_ms, &resp, diag,
                   "write_reg");
}

enum fk_err fk_flash_detect_chip(struct fk_flash *f, struct fk_diag *diag) {
    uint32_t magic = 0;
    enum fk_err rc = fk_flash_read_reg(f, FKD_ROM_CHIP_MAGIC_REG, &magic, diag);
    if (rc != FK_OK) {
        return rc;
    }
    if (magic != FKD_ROM_ESP32_MAGIC) {
        return fk_diag_set(diag, FK_E_UNSUPPORTED,
                           "%s: chip magic 0x%08x at 0x%08x is not an ESP32 (0x%08x)",
                           fk_serial_name(f->port), magic, FKD_ROM_CHIP_MAGIC_REG,
                           FKD_ROM_ESP32_MAGIC);
    }
    return FK_OK;
}

enum fk_err fk_flash_read_mac(struct fk_flash *f, uint8_t mac[6], struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint32_t w1 = 0, w2 = 0;
    FK_GUARD(fk_flash_read_reg(f, FKD_ROM_EFUSE_RD_BASE + 4u, &w1, diag));
    FK_GUARD(fk_flash_read_reg(f, FKD_ROM_EFUSE_RD_BASE + 8u, &w2, diag));
    fkd_rom_efuse_to_mac(w1, w2, mac);
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_flash_spi_attach(struct fk_flash *f, uint32_t flash_size, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t att[8] = {0};
    uint8_t p[24];
    struct fk_flash_response resp;

    /* "On ESP32 ROM loader only, there is an additional 4 bytes in the data payload of this
     * command. These bytes should all be set to zero." */
    FK_GUARD(command(f, FKD_ROM_SPI_ATTACH, att, sizeof att, 0, f->o.timeout_ms, &resp, diag,
                     "spi_attach"));
    fk_store_le32(p, 0);               /* id */
    fk_store_le32(p + 4, flash_size);  /* total size */
    fk_store_le32(p + 8, 64 * 1024);   /* block size */
    fk_store_le32(p + 12, 4 * 1024);   /* sector size */
    fk_store_le32(p + 16, 256);        /* page size */
    fk_store_le32(p + 20, 0xFFFF);     /* status mask */
    FK_GUARD(command(f, FKD_ROM_SPI_SET_PARAMS, p, sizeof p, 0, f->o.timeout_ms, &resp, diag,
                     "spi_set_params"));
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_flash_change_baud(struct fk_flash *f, unsigned baud, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t d[8];
    struct fk_flash_response resp;
    fk_store_le32(d, baud);
    fk_store_le32(d + 4, 0);
    FK_GUARD(command(f, FKD_ROM_CHANGE_BAUDRATE, d, sizeof d, 0, f->o.timeout_ms, &resp, diag,
                     "change_baudrate"));
    rc = fk_serial_set_baud(f->port, baud);
    if (rc != FK_OK) {
        rc = fk_diag_set(diag, rc, "%s: cannot switch to %u baud", fk_serial_name(f->port), baud);
        goto out;
    }
    sleep_ms(50); /* what the UART sent while both ends switched is garbage */
    drop_input(f);
    rc = FK_OK;
out:
    return rc;
}

static unsigned per_mb_timeout(const struct fk_flash *f, size_t len, unsigned ms_per_mb) {
    unsigned long long t = (unsigned long long)ms_per_mb * len / 1000000u;
    return t > f->o.timeout_ms ? (unsigned)t : f->o.timeout_ms;
}

/* Sends stream in block-sized FLASH_DATA / FLASH_DEFL_DATA commands (pad: fill the last block
 * with 0xFF, as plain writes must), retrying each block on a refused checksum or a lost
 * answer. progress reports `scale`-mapped bytes (the uncompressed size for compressed writes). */
static enum fk_err send_blocks(struct fk_flash *f, uint8_t cmd, uint32_t offset,
                               const uint8_t *stream, size_t len, int pad, size_t progress_total,
                               fk_flash_progress_fn *progress, void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_flash_response resp;
    uint8_t *block = NULL;
    const size_t bs = f->o.block_size;
    char what[128];
    size_t blocks = (len + bs - 1) / bs;

    block = malloc(FKD_ROM_DATA_HDR_LEN + bs);
    FK_ENSURE(block != NULL, FK_E_NOMEM);
    for (size_t seq = 0; seq < blocks; seq++) {
        size_t take = len - seq * bs < bs ? len - seq * bs : bs;
        size_t size = pad ? bs : take;
        /* "The last data block should be padded to the block size with 0xFF bytes." */
        memset(block + FKD_ROM_DATA_HDR_LEN, 0xFF, bs);
        memcpy(block + FKD_ROM_DATA_HDR_LEN, stream + seq * bs, take);
        fk_store_le32(block, (uint32_t)size);
        fk_store_le32(block + 4, (uint32_t)seq);
        fk_store_le32(block + 8, 0);
        fk_store_le32(block + 12, 0);
        uint8_t chk = fkd_rom_checksum(block + FKD_ROM_DATA_HDR_LEN, size);
        snprintf(what, sizeof what, "%s block %zu of %zu for 0x%x",
                 cmd == FKD_ROM_FLASH_DATA ? "flash_data" : "flash_defl_data", seq + 1, blocks,
                 (unsigned)offset);
        for (unsigned attempt = 1;; attempt++) {
            rc = command(f, cmd, block, FKD_ROM_DATA_HDR_LEN + size, chk, f->o.timeout_ms, &resp,
                         diag, what);
            if (rc == FK_OK) {
                break;
            }
            int retryable = rc == FK_E_TIMEOUT ||
                            (rc == FK_E_PROTOCOL && resp.error == FKD_ROM_ERR_BAD_CRC);
            if (!retryable || attempt >= f->o.block_attempts) {
                if (retryable) {
                    char first[sizeof diag->msg];
                    snprintf(first, sizeof first, "%s", diag != NULL ? diag->msg : "");
                    fk_diag_set(diag, rc, "%s (gave up after %u attempts)", first, attempt);
                }
                goto out;
            }
            f->st.retries++;
            if (rc == FK_E_TIMEOUT) {
                drop_input(f); /* a late answer must not be taken for the retry's */
            }
        }
        if (progress != NULL) {
            size_t done = (size_t)((unsigned long long)(seq * bs + take) * progress_total / len);
            progress(user, done < progress_total ? done : progress_total, progress_total);
        }
    }
    rc = FK_OK;
out:
    fk_free_secret(block, block != NULL ? FKD_ROM_DATA_HDR_LEN + bs : 0);
    return rc;
}

static enum fk_err begin(struct fk_flash *f, uint8_t cmd, uint32_t erase, size_t blocks,
                         uint32_t offset, size_t len, struct fk_diag *diag) {
    struct fk_flash_response resp;
    uint8_t b[16];
    fk_store_le32(b, erase);
    fk_store_le32(b + 4, (uint32_t)blocks);
    fk_store_le32(b + 8, f->o.block_size);
    fk_store_le32(b + 12, offset);
    /* The ROM erases before it answers: esptool allows 40 s per MB. */
    return command(f, cmd, b, sizeof b, 0, per_mb_timeout(f, len, 40000), &resp, diag,
                   cmd == FKD_ROM_FLASH_BEGIN ? "flash_begin" : "flash_defl_begin");
}

enum fk_err fk_flash_write(struct fk_flash *f, uint32_t offset, const uint8_t *data, size_t len,
                           fk_flash_progress_fn *progress, void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    const size_t bs = f->o.block_size;

    FK_ENSURE(offset % FKD_ROM_SECTOR == 0 && len <= 0xFFFFFFFFu - offset, FK_E_ARG);
    /* ESP32ROM.get_erase_size() is the size itself. */
    FK_GUARD(begin(f, FKD_ROM_FLASH_BEGIN, (uint32_t)len, (len + bs - 1) / bs, offset, len,
                   diag));
    FK_GUARD(send_blocks(f, FKD_ROM_FLASH_DATA, offset, data, len, 1, len, progress, user, diag));
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_flash_write_deflate(struct fk_flash *f, uint32_t offset, const uint8_t *data,
                                   size_t len, fk_flash_progress_fn *progress, void *user,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    const size_t bs = f->o.block_size;
    uLongf zlen = 0;
    uint8_t *z = NULL;

    FK_ENSURE(offset % FKD_ROM_SECTOR == 0 && len <= 0xFFFFFFFFu - offset && len <= 0x7FFFFFFF,
              FK_E_ARG);
    zlen = compressBound((uLong)len);
    z = malloc(zlen);
    FK_ENSURE(z != NULL, FK_E_NOMEM);
    FK_ENSURE(compress2(z, &zlen, data, (uLong)len, 9) == Z_OK, FK_E_INTERNAL);
    /* esptool flash_defl_begin for the ROM: "write_size = erase_blocks * FLASH_WRITE_SIZE
     * (ROM expects rounded up to erase block size)"; the packets carry the compressed data. */
    size_t erase = (len + bs - 1) / bs * bs;
    FK_GUARD(begin(f, FKD_ROM_FLASH_DEFL_BEGIN, (uint32_t)erase, (zlen + bs - 1) / bs, offset, len,
                   diag));
    FK_GUARD(send_blocks(f, FKD_ROM_FLASH_DEFL_DATA, offset, z, zlen, 0, len, progress, user,
                         diag));
    rc = FK_OK;
out:
    fk_free_secret(z, z != NULL ? zlen : 0);
    return rc;
}

enum fk_err fk_flash_md5(struct fk_flash *f, uint32_t offset, uint32_t len, uint8_t md5[16],
                         struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t d[16];
    struct fk_flash_response resp;
    size_t out_len = 0;

    fk_store_le32(d, offset);
    fk_store_le32(d + 4, len);
    fk_store_le32(d + 8, 0);
    fk_store_le32(d + 12, 0);
    FK_GUARD(command(f, FKD_ROM_SPI_FLASH_MD5, d, sizeof d, 0, per_mb_timeout(f, len, 8000),
                     &resp, diag, "spi_flash_md5"));
    /* "the ESP32 ROM loader returns the md5sum as 32 hex encoded ASCII bytes" */
    if (resp.data_len != FKD_ROM_MD5_HEX_LEN ||
        fk_hex_decode((const char *)resp.data, FKD_ROM_MD5_HEX_LEN, md5, 16, &out_len, NULL) !=
            FK_OK) {
        rc = fk_diag_set(diag, FK_E_PARSE, "%s: spi_flash_md5: expected 32 hex digits, got %zu "
                         "bytes", fk_serial_name(f->port), resp.data_len);
        goto out;
    }
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_flash_read(struct fk_flash *f, uint32_t offset, uint8_t *out, size_t len,
                          fk_flash_progress_fn *progress, void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_flash_response resp;
    uint8_t d[8];

    FK_ENSURE(len <= 0xFFFFFFFFu - offset, FK_E_ARG);
    for (size_t done = 0; done < len;) {
        uint32_t take = len - done < FKD_ROM_READ_SLOW_BLOCK ? (uint32_t)(len - done)
                                                             : FKD_ROM_READ_SLOW_BLOCK;
        fk_store_le32(d, offset + (uint32_t)done);
        fk_store_le32(d + 4, take);
        for (unsigned attempt = 1;; attempt++) {
            rc = command(f, FKD_ROM_READ_FLASH_SLOW, d, sizeof d, 0, f->o.timeout_ms, &resp,
                         diag, "read_flash_slow");
            if (rc == FK_OK || rc != FK_E_TIMEOUT || attempt >= f->o.block_attempts) {
                break;
            }
            f->st.retries++;
            drop_input(f);
        }
        FK_GUARD(rc);
        /* The ROM "always returns 64 byte buffer, regardless of how many bytes were actually
         * read from flash": the first `take` bytes are ours. */
        if (resp.data_len < take) {
            rc = fk_diag_set(diag, FK_E_PROTOCOL, "%s: read_flash_slow: expected %u bytes, got "
                             "%zu", fk_serial_name(f->port), take, resp.data_len);
            goto out;
        }
        memcpy(out + done, resp.data, take);
        done += take;
        if (progress != NULL && (done % 1024 == 0 || done == len)) {
            progress(user, done, len);
        }
    }
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_flash_verify(struct fk_flash *f, uint32_t offset, const uint8_t *data, size_t len,
                            fk_flash_progress_fn *progress, void *user, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t dev[16], want[16];
    unsigned int md_len = 0;
    uint8_t *back = NULL;
    char hd[33], hw[33];

    FK_ENSURE(len <= 0xFFFFFFFFu, FK_E_ARG);
    FK_GUARD_OSSL(EVP_Digest(data, len, want, &md_len, EVP_md5(), NULL), FK_E_CRYPTO);
    FK_GUARD(fk_flash_md5(f, offset, (uint32_t)len, dev, diag));
    if (!fk_ct_equal(dev, want, sizeof dev)) {
        if (fk_hex_encode(dev, 16, hd, sizeof hd) != FK_OK ||
            fk_hex_encode(want, 16, hw, sizeof hw) != FK_OK) {
            hd[0] = hw[0] = '\0';
        }
        rc = fk_diag_set(diag, FK_E_VERIFY,
                         "%s: MD5 of flash 0x%x+0x%zx is %s, the image's is %s: the write did "
                         "not take", fk_serial_name(f->port), offset, len, hd, hw);
        goto out;
    }
    back = malloc(len ? len : 1);
    FK_ENSURE(back != NULL, FK_E_NOMEM);
    FK_GUARD(fk_flash_read(f, offset, back, len, progress, user, diag));
    for (size_t i = 0; i < len; i++) {
        if (back[i] != data[i]) {
            rc = fk_diag_set(diag, FK_E_VERIFY,
                             "%s: read-back of flash differs from the image at 0x%zx",
                             fk_serial_name(f->port), (size_t)offset + i);
            goto out;
        }
    }
    rc = FK_OK;
out:
    fk_free_secret(back, back != NULL ? (len ? len : 1) : 0);
    return rc;
}

enum fk_err fk_flash_end(struct fk_flash *f, int run, struct fk_diag *diag) {
    uint8_t d[4];
    struct fk_flash_response resp;
    /* "One 32-bit word: 0 to reboot, 1 run to user code." */
    fk_store_le32(d, run ? 1u : 0u);
    return command(f, FKD_ROM_FLASH_END, d, sizeof d, 0, f->o.timeout_ms, &resp, diag,
                   "flash_end");
}
