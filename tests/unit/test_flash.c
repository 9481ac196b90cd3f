/* flash module: SLIP and packet parsing (including every negative case), the device-side ROM
 * responder packet by packet, and the host client against the responder over a socketpair and
 * over a real pty, with the responder's fault injection. */
#define _GNU_SOURCE /* posix_openpt, ptsname_r */
#include "fkd/inflate.h"
#include "fkd/rom.h"
#include "fkd/slip.h"
#include "fleetkey/flash.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#define MEM_SIZE (1024u * 1024u)

/* ---- SLIP -------------------------------------------------------------------------------- */
static void slip_round_trips_every_byte_value(void **state) {
    (void)state;
    uint8_t in[512], wire[FKD_SLIP_ENCODED_MAX(512)], buf[600];
    for (size_t i = 0; i < sizeof in; i++) {
        in[i] = (uint8_t)(i * 7);
    }
    in[0] = 0xC0;
    in[1] = 0xDB;
    in[2] = 0xDC;
    size_t wlen = 0, used = 0, flen = 0;
    assert_int_equal(fkd_slip_encode(in, sizeof in, wire, sizeof wire, &wlen), 0);
    assert_int_equal(wire[0], 0xC0);
    assert_int_equal(wire[wlen - 1], 0xC0);
    for (size_t i = 1; i + 1 < wlen; i++) {
        assert_int_not_equal(wire[i], 0xC0); /* no END inside the frame */
    }
    struct fkd_slip s;
    fkd_slip_init(&s, buf, sizeof buf);
    /* Fed one byte at a time: a short read anywhere must not matter. */
    enum fkd_slip_event ev = FKD_SLIP_NEED_MORE;
    for (size_t i = 0; i < wlen; i++) {
        ev = fkd_slip_feed(&s, wire + i, 1, &used);
        assert_int_equal(used, 1);
        if (i + 1 < wlen) {
            assert_int_equal(ev, FKD_SLIP_NEED_MORE);
        }
    }
    assert_int_equal(ev, FKD_SLIP_FRAME);
    const uint8_t *f = fkd_slip_frame(&s, &flen);
    assert_int_equal(flen, sizeof in);
    assert_memory_equal(f, in, sizeof in);
}

static void slip_encode_rejects_small_buffer(void **state) {
    (void)state;
    uint8_t in[4] = {0xC0, 0xC0, 0xC0, 0xC0}, out[9];
    size_t n = 0;
    assert_int_equal(fkd_slip_encode(in, sizeof in, out, sizeof out, &n), -1);
    uint8_t out2[10];
    assert_int_equal(fkd_slip_encode(in, sizeof in, out2, sizeof out2, &n), 0);
    assert_int_equal(n, 10);
}

static void slip_rejects_bad_escape_and_resyncs(void **state) {
    (void)state;
    const uint8_t wire[] = {0xC0, 0x01, 0xDB, 0x42, 0x02, 0xC0, 0xC0, 0x07, 0xC0};
    uint8_t buf[16];
    struct fkd_slip s;
    size_t used = 0, off = 0, flen = 0;
    fkd_slip_init(&s, buf, sizeof buf);
    assert_int_equal(fkd_slip_feed(&s, wire, sizeof wire, &used), FKD_SLIP_BAD_ESCAPE);
    off += used;
    assert_int_equal(fkd_slip_feed(&s, wire + off, sizeof wire - off, &used), FKD_SLIP_FRAME);
    const uint8_t *f = fkd_slip_frame(&s, &flen);
    assert_int_equal(flen, 1);
    assert_int_equal(f[0], 0x07);
}

static void slip_drops_oversized_frame_then_decodes_next(void **state) {
    (void)state;
    uint8_t wire[40], buf[8];
    size_t n = 0;
    wire[n++] = 0xC0;
    for (int i = 0; i < 9; i++) {
        wire[n++] = 0x11; /* one more than the buffer holds */
    }
    wire[n++] = 0xC0;
    wire[n++] = 0xC0;
    wire[n++] = 0x22;
    wire[n++] = 0xC0;
    struct fkd_slip s;
    size_t used = 0, off = 0, flen = 0;
    fkd_slip_init(&s, buf, sizeof buf);
    assert_int_equal(fkd_slip_feed(&s, wire, n, &used), FKD_SLIP_TOO_BIG);
    off += used;
    assert_int_equal(fkd_slip_feed(&s, wire + off, n - off, &used), FKD_SLIP_FRAME);
    const uint8_t *f = fkd_slip_frame(&s, &flen);
    assert_int_equal(flen, 1);
    assert_int_equal(f[0], 0x22);
    /* Exactly cap bytes fit. */
    uint8_t exact[10] = {0xC0, 1, 2, 3, 4, 5, 6, 7, 8, 0xC0};
    assert_int_equal(fkd_slip_feed(&s, exact, sizeof exact, &used), FKD_SLIP_FRAME);
    (void)fkd_slip_frame(&s, &flen);
    assert_int_equal(flen, 8);
}

static void slip_truncated_frame_is_never_a_frame(void **state) {
    (void)state;
    const uint8_t wire[] = {'b', 'o', 'o', 't', 0xC0, 0x01, 0x02, 0xDB};
    uint8_t buf[16];
    struct fkd_slip s;
    size_t used = 0;
    fkd_slip_init(&s, buf, sizeof buf);
    assert_int_equal(fkd_slip_feed(&s, wire, sizeof wire, &used), FKD_SLIP_NEED_MORE);
    assert_int_equal(used, sizeof wire);
    fkd_slip_reset(&s); /* a timeout: the partial frame is forgotten */
    const uint8_t tail[] = {0xDC, 0xC0};
    assert_int_equal(fkd_slip_feed(&s, tail, sizeof tail, &used), FKD_SLIP_NEED_MORE);
    /* "boot" and the orphaned 0xDC were skipped as noise; the 0xC0 opened a new frame. */
    assert_int_equal(s.noise, 5u);
}

/* ---- packets ----------------------------------------------------------------------------- */
static void packet_build_and_response_parse(void **state) {
    (void)state;
    uint8_t data[3] = {1, 2, 3}, out[16];
    size_t n = 0;
    assert_int_equal(fk_flash_packet_build(0x0A, data, 3, 0xEF, out, sizeof out, &n), FK_OK);
    assert_int_equal(n, 11);
    assert_int_equal(out[0], 0x00);
    assert_int_equal(out[1], 0x0A);
    assert_int_equal(out[2], 3);
    assert_int_equal(out[4], 0xEF);
    assert_int_equal(fk_flash_packet_build(0x0A, data, 3, 0, out, 10, &n), FK_E_NOSPACE);
    assert_int_equal(fk_flash_packet_build(0x0A, NULL, 70000, 0, out, sizeof out, &n),
                     FK_E_TOOBIG);

    const uint8_t ok[] = {0x01, 0x0A, 0x04, 0x00, 0x83, 0x1D, 0xF0, 0x00, 0, 0, 0, 0};
    struct fk_flash_response r;
    assert_int_equal(fk_flash_response_parse(ok, sizeof ok, 4, &r), FK_OK);
    assert_int_equal(r.value, 0x00F01D83u);
    assert_int_equal(r.data_len, 0);
    assert_int_equal(r.status, 0);
    const uint8_t err[] = {0x01, 0x03, 0x04, 0x00, 0, 0, 0, 0, 1, 0x07, 0, 0};
    assert_int_equal(fk_flash_response_parse(err, sizeof err, 4, &r), FK_OK);
    assert_int_equal(r.status, 1);
    assert_int_equal(r.error, 0x07);
}

static void response_parse_rejects_malformed(void **state) {
    (void)state;
    struct fk_flash_response r;
    const uint8_t good[] = {0x01, 0x0A, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    uint8_t b[sizeof good + 1];
    /* Every truncation. */
    for (size_t n = 0; n < sizeof good; n++) {
        assert_int_not_equal(fk_flash_response_parse(good, n, 4, &r), FK_OK);
    }
    memcpy(b, good, sizeof good);
    b[0] = 0x00; /* a request, not a response */
    assert_int_equal(fk_flash_response_parse(b, sizeof good, 4, &r), FK_E_PARSE);
    memcpy(b, good, sizeof good);
    b[2] = 0x05; /* size says more than the frame holds */
    assert_int_equal(fk_flash_response_parse(b, sizeof good, 4, &r), FK_E_TRUNCATED);
    b[2] = 0xFF;
    b[3] = 0xFF;
    assert_int_equal(fk_flash_response_parse(b, sizeof good, 4, &r), FK_E_TRUNCATED);
    memcpy(b, good, sizeof good);
    b[2] = 0x02; /* less than the 4 status bytes */
    assert_int_equal(fk_flash_response_parse(b, 10, 4, &r), FK_E_TRUNCATED);
    memcpy(b, good, sizeof good);
    b[sizeof good] = 0x99; /* trailing byte past the size field */
    assert_int_equal(fk_flash_response_parse(b, sizeof b, 4, &r), FK_E_PARSE);
}

static void efuse_mac_matches_esptool_layout(void **state) {
    (void)state;
    const uint8_t mac[6] = {0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56};
    uint32_t w1 = 0, w2 = 0;
    uint8_t back[6];
    fkd_rom_mac_to_efuse(mac, &w1, &w2);
    /* esptool: struct.pack(">II", efuse(2), efuse(1))[2:8] */
    assert_int_equal(w1, 0xC4123456u);
    assert_int_equal(w2 & 0xFFFFu, 0x240Au);
    fkd_rom_efuse_to_mac(w1, w2, back);
    assert_memory_equal(back, mac, 6);
    assert_int_equal(fkd_rom_checksum(NULL, 0), 0xEF);
    const uint8_t d[2] = {0xEF, 0x01};
    assert_int_equal(fkd_rom_checksum(d, 2), 0x01);
}

/* ---- inflate ------------------------------------------------------------------------------ */
struct outbuf {
    uint8_t *buf;
    uint32_t len;
    uint32_t cap;
};

static int out_put(void *user, uint8_t b) {
    struct outbuf *o = user;
    if (o->len >= o->cap) {
        return -1;
    }
    o->buf[o->len++] = b;
    return 0;
}

static int out_get(void *user, uint32_t dist, uint8_t *b) {
    struct outbuf *o = user;
    assert_true(dist >= 1 && dist <= o->len); /* the inflater checked it */
    *b = o->buf[o->len - dist];
    return 0;
}

static enum fkd_inflate_result inflate_buf(const uint8_t *z, size_t zlen, uint8_t *out,
                                           uint32_t cap, uint32_t max_out, uint32_t *n) {
    struct outbuf o = {out, 0, cap};
    struct fkd_inflate_sink sink = {&o, out_put, out_get};
    return fkd_inflate_zlib(z, zlen, max_out, &sink, n);
}

static void inflate_matches_zlib_at_every_level(void **state) {
    (void)state;
    const size_t sizes[] = {0, 1, 100, 5000, 0x6000};
    uint8_t *in = malloc(0x6000), *z = malloc(0x8000), *out = malloc(0x6000);
    assert_non_null(in);
    assert_non_null(z);
    assert_non_null(out);
    for (int kind = 0; kind < 3; kind++) {
        for (size_t i = 0; i < 0x6000; i++) {
            /* erased flash, text-like repeats, noise */
            in[i] = kind == 0 ? 0xFF : kind == 1 ? (uint8_t)("nvs_psk_"[i % 8] + (i / 4096))
                                                 : (uint8_t)((i * 2654435761u) >> 13);
        }
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            for (int level = 0; level <= 9; level += 3) { /* 0: stored blocks */
                uLongf zlen = 0x8000;
                assert_int_equal(compress2(z, &zlen, in, (uLong)sizes[k], level), Z_OK);
                uint32_t n = 0;
                assert_int_equal(inflate_buf(z, zlen, out, 0x6000, 0x6000, &n), FKD_INFLATE_OK);
                assert_int_equal(n, sizes[k]);
                assert_memory_equal(out, in, sizes[k]);
            }
        }
    }
    free(in);
    free(z);
    free(out);
}

static void inflate_rejects_malformed_streams(void **state) {
    (void)state;
    uint8_t in[3000], z[4000], out[3000];
    for (size_t i = 0; i < sizeof in; i++) {
        in[i] = (uint8_t)(i % 13 == 0 ? i : 0xFF);
    }
    uLongf zlen = sizeof z;
    assert_int_equal(compress2(z, &zlen, in, sizeof in, 9), Z_OK);
    uint32_t n = 0;
    /* Every truncation fails. */
    for (size_t cut = 0; cut < zlen; cut++) {
        assert_int_not_equal(inflate_buf(z, cut, out, sizeof out, sizeof out, &n), FKD_INFLATE_OK);
    }
    /* More output than allowed. */
    assert_int_equal(inflate_buf(z, zlen, out, sizeof out, 2999, &n), FKD_INFLATE_TOOBIG);
    /* A wrong Adler-32. */
    z[zlen - 1] ^= 1;
    assert_int_equal(inflate_buf(z, zlen, out, sizeof out, sizeof out, &n), FKD_INFLATE_CHECK);
    z[zlen - 1] ^= 1;
    /* Bad header: not deflate, bad FCHECK, preset dictionary. */
    uint8_t h0 = z[0], h1 = z[1];
    z[0] = 0x79;
    assert_int_equal(inflate_buf(z, zlen, out, sizeof out, sizeof out, &n), FKD_INFLATE_BAD);
    z[0] = h0;
    z[1] ^= 1;
    assert_int_equal(inflate_buf(z, zlen, out, sizeof out, sizeof out, &n), FKD_INFLATE_BAD);
    z[1] = h1;
    /* Flipped bits anywhere: a clean failure or, rarely, the same bytes; never a crash. */
    for (size_t i = 2; i < zlen; i++) {
        z[i] ^= 0x10;
        enum fkd_inflate_result r = inflate_buf(z, zlen, out, sizeof out, sizeof out, &n);
        assert_true(r == FKD_INFLATE_OK || r < 0);
        z[i] ^= 0x10;
    }
    /* A stored block whose NLEN is not ~LEN. */
    const uint8_t bad_stored[] = {0x78, 0x01, 0x01, 0x05, 0x00, 0xFB, 0xFF, 1, 2, 3, 4, 5};
    assert_int_equal(inflate_buf(bad_stored, sizeof bad_stored, out, sizeof out, sizeof out, &n),
                     FKD_INFLATE_BAD);
    /* A distance before the start of the output (fixed block: literal, then a match of
     * distance 2 when one byte exists). Built by hand: BFINAL=1 BTYPE=01, literal 'A' (0x71
     * as 8 bits 00110000+0x41), length code 257 (7 bits 0000001), distance code 1 (5 bits). */
    const uint8_t far_back[] = {0x78, 0x01, 0x73, 0x04, 0x42, 0x00, 0x00};
    enum fkd_inflate_result r = inflate_buf(far_back, sizeof far_back, out, sizeof out,
                                            sizeof out, &n);
    assert_true(r < 0);
}

/* ---- the responder, packet by packet ----------------------------------------------------- */
struct mem {
    uint8_t *buf;
    uint8_t sent[4096]; /* responses, SLIP-encoded */
    size_t sent_len;
    int replies;
};

static int mem_read(void *ctx, uint32_t off, void *buf, uint32_t len) {
    struct mem *m = ctx;
    memcpy(buf, m->buf + off, len);
    return 0;
}

static int mem_write(void *ctx, uint32_t off, const void *buf, uint32_t len) {
    struct mem *m = ctx;
    const uint8_t *in = buf;
    for (uint32_t i = 0; i < len; i++) {
        m->buf[off + i] &= in[i]; /* NOR */
    }
    return 0;
}

static int mem_erase(void *ctx, uint32_t off, uint32_t len) {
    struct mem *m = ctx;
    memset(m->buf + off, 0xFF, len);
    return 0;
}

static int mem_tx(void *user, const uint8_t *buf, size_t len) {
    struct mem *m = user;
    if (len > sizeof m->sent - m->sent_len) {
        return -1;
    }
    memcpy(m->sent + m->sent_len, buf, len);
    m->sent_len += len;
    m->replies++;
    return 0;
}

static struct fkd_rom rom_ctx;
static const uint8_t test_mac[6] = {0x24, 0x0A, 0xC4, 0xAB, 0xCD, 0xEF};

static struct mem *rom_new(void) {
    struct mem *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->buf = malloc(MEM_SIZE);
    assert_non_null(m->buf);
    memset(m->buf, 0xFF, MEM_SIZE);
    struct fkd_rom_flash fl = {m, MEM_SIZE, mem_read, mem_write, mem_erase};
    fkd_rom_init(&rom_ctx, test_mac);
    assert_int_equal(fkd_rom_setup(&rom_ctx, &fl, mem_tx, NULL, m), 0);
    return m;
}

static void rom_del(struct mem *m) {
    free(m->buf);
    free(m);
}

/* Sends one command packet; returns the last response, parsed. */
static struct fk_flash_response rom_cmd(struct mem *m, uint8_t cmd, const uint8_t *d, size_t n,
                                        uint32_t chk) {
    static uint8_t pkt[8 + 16 + 0x1000], frame[256];
    size_t len = 0;
    assert_int_equal(fk_flash_packet_build(cmd, d, n, chk, pkt, sizeof pkt, &len), FK_OK);
    m->sent_len = 0;
    m->replies = 0;
    fkd_rom_handle_packet(&rom_ctx, pkt, len);
    assert_true(m->replies > 0); /* never silence */
    struct fkd_slip s;
    size_t used = 0, off = 0, flen = 0;
    fkd_slip_init(&s, frame, sizeof frame);
    const uint8_t *f = NULL;
    while (off < m->sent_len) {
        if (fkd_slip_feed(&s, m->sent + off, m->sent_len - off, &used) == FKD_SLIP_FRAME) {
            f = fkd_slip_frame(&s, &flen);
        }
        off += used;
    }
    assert_non_null(f);
    struct fk_flash_response r;
    assert_int_equal(fk_flash_response_parse(f, flen, FKD_ROM_STATUS_LEN, &r), FK_OK);
    /* The same command byte, or the ROM's "unsupported" answer under another one. */
    assert_true(r.cmd == cmd || (r.cmd == FKD_ROM_UNSUPPORTED_CMD && r.status == 1 &&
                                 r.error == FKD_ROM_ERR_INVALID_MSG));
    return r;
}

static void put32(uint8_t *p, uint32_t v) {
    fk_store_le32(p, v);
}

static void rom_answers_sync_eight_times_and_registers(void **state) {
    (void)state;
    struct mem *m = rom_new();
    uint8_t sync[36] = {0x07, 0x07, 0x12, 0x20};
    memset(sync + 4, 0x55, 32);
    struct fk_flash_response r = rom_cmd(m, FKD_ROM_SYNC, sync, sizeof sync, 0);
    assert_int_equal(m->replies, 8);
    assert_int_not_equal(r.value, 0); /* the ROM, not the stub */
    sync[10] = 0x54;
    r = rom_cmd(m, FKD_ROM_SYNC, sync, sizeof sync, 0);
    assert_int_equal(r.status, 1);

    uint8_t a[4];
    put32(a, FKD_ROM_CHIP_MAGIC_REG);
    r = rom_cmd(m, FKD_ROM_READ_REG, a, 4, 0);
    assert_int_equal(r.value, FKD_ROM_ESP32_MAGIC);
    assert_int_equal(r.status, 0);
    r = rom_cmd(m, FKD_ROM_READ_REG, a, 3, 0);
    assert_int_equal(r.error, FKD_ROM_ERR_INVALID_MSG);
    /* esptool's ESP32 crystal estimate from the UART divider: 347 * 115200 / 1e6 ~ 40 MHz. */
    put32(a, FKD_ROM_UART_CLKDIV_REG);
    assert_int_equal(rom_cmd(m, FKD_ROM_READ_REG, a, 4, 0).value & 0xFFFFFu, 347);
    /* esptool get_rom_cal_crystal_freq(): cali * 15625 * ck8m / 40 must be 40 MHz, or its
     * change_baud() would ask the ROM for a scaled (here: zero) rate. */
    put32(a, 0x3FF5F06C);
    uint32_t cali = (rom_cmd(m, FKD_ROM_READ_REG, a, 4, 0).value >> 7) & 0x01FFFFFFu;
    put32(a, FKD_ROM_EFUSE_RD_BASE + 16);
    uint32_t ck8m = rom_cmd(m, FKD_ROM_READ_REG, a, 4, 0).value & 0xFFu;
    assert_int_equal((unsigned long long)cali * 15625u * ck8m / 40u, 40000000ull);
    /* esptool flash_id(): USR2 = (7 << 28) | 0x9F, SPI_CMD_REG = USR, poll, read W0. */
    uint8_t w[32];
    put32(w, FKD_ROM_SPI_REG_BASE + 0x24);
    put32(w + 4, (7u << 28) | 0x9F);
    put32(w + 8, 0xFFFFFFFFu);
    put32(w + 12, 0);
    put32(w + 16, FKD_ROM_SPI_REG_BASE);
    put32(w + 20, 1u << 18);
    put32(w + 24, 0xFFFFFFFFu);
    put32(w + 28, 0);
    assert_int_equal(rom_cmd(m, FKD_ROM_WRITE_REG, w, 32, 0).status, 0);
    put32(a, FKD_ROM_SPI_REG_BASE);
    assert_int_equal(rom_cmd(m, FKD_ROM_READ_REG, a, 4, 0).value & (1u << 18), 0); /* done */
    put32(a, FKD_ROM_SPI_REG_BASE + 0x80);
    assert_int_equal(rom_cmd(m, FKD_ROM_READ_REG, a, 4, 0).value, 0x1440EFu); /* 1 MiB chip */

    /* Unsupported commands get the ROM's error status, not silence. */
    r = rom_cmd(m, FKD_ROM_GET_SECURITY_INFO, NULL, 0, 0);
    assert_int_equal(r.status, 1);
    assert_int_equal(r.error, FKD_ROM_ERR_INVALID_MSG);
    assert_int_not_equal(r.cmd, FKD_ROM_GET_SECURITY_INFO); /* how esptool tells "unsupported" */
    /* A supported command with a bad parameter keeps its command byte. */
    assert_int_equal(rom_cmd(m, FKD_ROM_READ_REG, a, 3, 0).cmd, FKD_ROM_READ_REG);
    r = rom_cmd(m, 0xD2, NULL, 0, 0);
    assert_int_equal(r.error, FKD_ROM_ERR_INVALID_MSG);
    rom_del(m);
}

static void rom_flash_commands_check_state_checksum_and_sequence(void **state) {
    (void)state;
    struct mem *m = rom_new();
    uint8_t b[16], att[8] = {0};
    put32(b, 0x2000);
    put32(b + 4, 2);
    put32(b + 8, 0x400);
    put32(b + 12, 0x9000);
    /* The ESP32 ROM needs SPI_ATTACH before flash commands. */
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_BEGIN, b, 16, 0).error, FKD_ROM_ERR_FAILED);
    assert_int_equal(rom_cmd(m, FKD_ROM_SPI_ATTACH, att, 8, 0).status, 0);
    m->buf[0x9000] = 0x00;
    m->buf[0xB000] = 0x00; /* just past the region: must survive */
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_BEGIN, b, 16, 0).status, 0);
    assert_int_equal(m->buf[0x9000], 0xFF); /* erased */
    assert_int_equal(m->buf[0xB000], 0x00);

    uint8_t d[16 + 0x400];
    memset(d + 16, 0x5A, 0x400);
    put32(d, 0x400);
    put32(d + 4, 0);
    put32(d + 8, 0);
    put32(d + 12, 0);
    uint8_t chk = fkd_rom_checksum(d + 16, 0x400);
    /* Wrong checksum: "Invalid CRC in message", nothing written. */
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk ^ 1u).error,
                     FKD_ROM_ERR_BAD_CRC);
    assert_int_equal(m->buf[0x9000], 0xFF);
    /* Out of sequence. */
    put32(d + 4, 1);
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).error,
                     FKD_ROM_ERR_INVALID_MSG);
    put32(d + 4, 0);
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).status, 0);
    assert_int_equal(m->buf[0x9000], 0x5A);
    /* A retransmission of the block just written is acknowledged. */
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).status, 0);
    /* Size field disagreeing with the payload. */
    put32(d, 0x3FF);
    put32(d + 4, 1);
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).error,
                     FKD_ROM_ERR_INVALID_MSG);
    /* 0xFF padding past the erased region is accepted (a no-op on NOR); data is not. */
    {
        uint8_t b2[16], pad[16 + 0x400];
        put32(b2, 0x100); /* erases one sector, 0x20000..0x21000 */
        put32(b2 + 4, 5);
        put32(b2 + 8, 0x400);
        put32(b2 + 12, 0x20000);
        assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_BEGIN, b2, 16, 0).status, 0);
        memset(pad + 16, 0xFF, 0x400);
        put32(pad, 0x400);
        put32(pad + 8, 0);
        put32(pad + 12, 0);
        m->buf[0x21000] = 0x00; /* outside: must survive */
        for (uint32_t q = 0; q < 5; q++) {
            put32(pad + 4, q);
            pad[16] = q == 0 ? 0x42 : 0xFF;
            assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, pad, sizeof pad,
                                     fkd_rom_checksum(pad + 16, 0x400)).status, 0);
        }
        assert_int_equal(m->buf[0x20000], 0x42);
        assert_int_equal(m->buf[0x21000], 0x00);
        put32(b2 + 4, 5);
        assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_BEGIN, b2, 16, 0).status, 0);
        for (uint32_t q = 0; q < 5; q++) {
            put32(pad + 4, q);
            pad[16] = q == 4 ? 0x42 : 0xFF; /* real data outside the erased region */
            struct fk_flash_response rr = rom_cmd(m, FKD_ROM_FLASH_DATA, pad, sizeof pad,
                                                  fkd_rom_checksum(pad + 16, 0x400));
            assert_int_equal(rr.error, q == 4 ? FKD_ROM_ERR_FLASH_WRITE : 0);
        }
        assert_int_equal(m->buf[0x21000], 0x00);
        /* Back to the first session's state for the checks below. */
        put32(b, 0x2000);
        put32(b + 4, 2);
        put32(b + 12, 0x9000);
        assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_BEGIN, b, 16, 0).status, 0);
        put32(d, 0x400);
        put32(d + 4, 0);
        assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).status, 0);
        put32(d, 0x3FF);
        put32(d + 4, 1);
    }
    /* Past the number of blocks announced. */
    put32(d, 0x400);
    put32(d + 4, 1);
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).status, 0);
    put32(d + 4, 2);
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_DATA, d, sizeof d, chk).error,
                     FKD_ROM_ERR_INVALID_MSG);

    /* READ_FLASH_SLOW: 64 data bytes per reply, at most 64 asked. */
    uint8_t rd[8];
    put32(rd, 0x9000);
    put32(rd + 4, 16);
    struct fk_flash_response r = rom_cmd(m, FKD_ROM_READ_FLASH_SLOW, rd, 8, 0);
    assert_int_equal(r.data_len, 64);
    assert_int_equal(r.data[0], 0x5A);
    put32(rd + 4, 65);
    assert_int_equal(rom_cmd(m, FKD_ROM_READ_FLASH_SLOW, rd, 8, 0).error, FKD_ROM_ERR_READ_LEN);
    put32(rd, MEM_SIZE - 8);
    put32(rd + 4, 16);
    assert_int_equal(rom_cmd(m, FKD_ROM_READ_FLASH_SLOW, rd, 8, 0).error, FKD_ROM_ERR_FLASH_READ);

    /* SPI_FLASH_MD5: 32 lower-case hex characters. */
    uint8_t md[16];
    put32(md, 0x9000);
    put32(md + 4, 0x800);
    put32(md + 8, 0);
    put32(md + 12, 0);
    r = rom_cmd(m, FKD_ROM_SPI_FLASH_MD5, md, 16, 0);
    assert_int_equal(r.data_len, 32);
    for (size_t i = 0; i < 32; i++) {
        assert_true((r.data[i] >= '0' && r.data[i] <= '9') ||
                    (r.data[i] >= 'a' && r.data[i] <= 'f'));
    }
    /* FLASH_BEGIN past the end of the chip. */
    put32(b, 0x2000);
    put32(b + 12, MEM_SIZE - 0x1000);
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_BEGIN, b, 16, 0).error, FKD_ROM_ERR_INVALID_MSG);
    /* FLASH_END "run" ends download mode. */
    uint8_t run[4] = {1, 0, 0, 0};
    assert_int_equal(rom_cmd(m, FKD_ROM_FLASH_END, run, 4, 0).status, 0);
    assert_int_equal(rom_ctx.exit, FKD_ROM_EXIT_RUN);
    rom_del(m);
}

/* ---- client against the responder over a descriptor ------------------------------------- */
struct peer {
    int fd;
    volatile int stop;
    int trickle; /* write responses one byte at a time (short reads on the host) */
    struct mem mem;
    struct fkd_rom rom;
    uint8_t defl[0x10000];
    pthread_t th;
};

static int peer_tx(void *user, const uint8_t *buf, size_t len) {
    struct peer *p = user;
    for (size_t done = 0; done < len;) {
        size_t n = p->trickle ? 1 : len - done;
        ssize_t w = write(p->fd, buf + done, n);
        if (w < 0) {
            struct pollfd pf = {p->fd, POLLOUT, 0};
            if (poll(&pf, 1, 1000) <= 0) {
                return -1;
            }
            continue;
        }
        done += (size_t)w;
    }
    return 0;
}

static void *peer_main(void *arg) {
    struct peer *p = arg;
    uint8_t buf[4096];
    while (!p->stop) {
        struct pollfd pf = {p->fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) {
            continue;
        }
        ssize_t n = read(p->fd, buf, sizeof buf);
        if (n <= 0) {
            if (n == 0) {
                break;
            }
            continue;
        }
        if (fkd_rom_feed(&p->rom, buf, (size_t)n) != FKD_ROM_STAY) {
            p->rom.exit = FKD_ROM_STAY; /* keep answering: the test decides when to stop */
        }
    }
    return NULL;
}

/* Starts a responder on one end of a socketpair (or on a pty master when pty_name is
 * non-NULL) and returns a client on the other end. */
static struct peer *peer_start(unsigned faults, int trickle, struct fk_flash **client,
                               int use_pty) {
    struct peer *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->mem.buf = malloc(MEM_SIZE);
    assert_non_null(p->mem.buf);
    memset(p->mem.buf, 0xFF, MEM_SIZE);
    p->trickle = trickle;
    struct fkd_rom_flash fl = {&p->mem, MEM_SIZE, mem_read, mem_write, mem_erase};
    fkd_rom_init(&p->rom, test_mac);
    assert_int_equal(fkd_rom_setup(&p->rom, &fl, peer_tx, NULL, p), 0);
    fkd_rom_set_faults(&p->rom, faults);
    fkd_rom_set_deflate_buffer(&p->rom, p->defl, sizeof p->defl);
    struct fk_flash_opts o = {.timeout_ms = 300, .sync_attempts = 3};
    struct fk_serial *s = NULL;
    if (use_pty) {
        char name[128];
        p->fd = posix_openpt(O_RDWR | O_NOCTTY);
        assert_true(p->fd >= 0);
        assert_int_equal(grantpt(p->fd), 0);
        assert_int_equal(unlockpt(p->fd), 0);
        assert_int_equal(ptsname_r(p->fd, name, sizeof name), 0);
        assert_int_equal(fk_serial_open(name, 115200, &s, NULL), FK_OK);
    } else {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        p->fd = sv[0];
        assert_int_equal(fk_serial_from_fd(sv[1], "socketpair", &s), FK_OK);
    }
    assert_int_equal(pthread_create(&p->th, NULL, peer_main, p), 0);
    assert_int_equal(fk_flash_from_serial(s, &o, client), FK_OK);
    return p;
}

static void peer_stop(struct peer *p) {
    p->stop = 1;
    pthread_join(p->th, NULL);
    close(p->fd);
    free(p->mem.buf);
    free(p);
}

static uint8_t *pattern(size_t len) {
    uint8_t *d = malloc(len);
    assert_non_null(d);
    for (size_t i = 0; i < len; i++) {
        d[i] = (uint8_t)((i * 131u) ^ (i >> 8)); /* includes 0xC0 and 0xDB */
    }
    return d;
}

static void connect_client(struct fk_flash *f) {
    struct fk_diag d;
    uint8_t mac[6];
    fk_diag_init(&d);
    assert_int_equal(fk_flash_sync(f, &d), FK_OK);
    assert_int_equal(fk_flash_detect_chip(f, &d), FK_OK);
    assert_int_equal(fk_flash_read_mac(f, mac, &d), FK_OK);
    assert_memory_equal(mac, test_mac, 6);
    assert_int_equal(fk_flash_spi_attach(f, MEM_SIZE, &d), FK_OK);
}

static void run_write_verify(int use_pty, int trickle) {
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(0, trickle, &f, use_pty);
    struct fk_diag d;
    fk_diag_init(&d);
    connect_client(f);
    uint8_t *data = pattern(0x6000 - 100); /* last block padded */
    assert_int_equal(fk_flash_write(f, 0x9000, data, 0x6000 - 100, NULL, NULL, &d), FK_OK);
    assert_int_equal(fk_flash_verify(f, 0x9000, data, 0x6000 - 100, NULL, NULL, &d), FK_OK);
    assert_memory_equal(p->mem.buf + 0x9000, data, 0x6000 - 100);
    assert_int_equal(p->mem.buf[0x9000 + 0x6000 - 100], 0xFF); /* the padding */
    uint8_t back[100];
    assert_int_equal(fk_flash_read(f, 0x9000 + 7, back, sizeof back, NULL, NULL, &d), FK_OK);
    assert_memory_equal(back, data + 7, sizeof back);
    assert_int_equal(fk_flash_change_baud(f, 921600, &d), FK_OK);
    assert_int_equal(fk_flash_end(f, 1, &d), FK_OK);
    struct fk_flash_stats st;
    fk_flash_get_stats(f, &st);
    assert_int_equal(st.retries, 0);
    assert_true(st.tx_bytes > 0x6000);
    fk_flash_close(f);
    free(data);
    peer_stop(p);
}

static void client_writes_and_verifies_over_socketpair(void **state) {
    (void)state;
    run_write_verify(0, 0);
}

static void client_survives_short_reads(void **state) {
    (void)state;
    run_write_verify(0, 1);
}

static void client_writes_and_verifies_over_pty(void **state) {
    (void)state;
    run_write_verify(1, 0);
}

static void client_retries_blocks_on_checksum_error_and_lost_ack(void **state) {
    (void)state;
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(FKD_ROM_FAULT_CHECKSUM | FKD_ROM_FAULT_DROP, 0, &f, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    connect_client(f);
    uint8_t *data = pattern(0x2000);
    assert_int_equal(fk_flash_write(f, 0x9000, data, 0x2000, NULL, NULL, &d), FK_OK);
    assert_int_equal(fk_flash_verify(f, 0x9000, data, 0x2000, NULL, NULL, &d), FK_OK);
    struct fk_flash_stats st;
    fk_flash_get_stats(f, &st);
    assert_int_equal(st.retries, 2); /* one refused block, one lost acknowledgement */
    fk_flash_close(f);
    free(data);
    peer_stop(p);
}

static void client_gives_up_after_bounded_retries(void **state) {
    (void)state;
    struct fk_flash *f = NULL;
    /* A line that corrupts every block: the ROM refuses each one as "Invalid CRC". */
    struct peer *p = peer_start(FKD_ROM_FAULT_CHECKSUM | FKD_ROM_FAULT_STICKY, 0, &f, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    connect_client(f);
    uint8_t *data = pattern(0x800);
    assert_int_equal(fk_flash_write(f, 0x9000, data, 0x800, NULL, NULL, &d), FK_E_PROTOCOL);
    assert_non_null(strstr(d.msg, "invalid CRC"));
    assert_non_null(strstr(d.msg, "gave up after 3 attempts"));
    struct fk_flash_stats st;
    fk_flash_get_stats(f, &st);
    assert_int_equal(st.retries, 2);
    fk_flash_close(f);
    free(data);
    peer_stop(p);
}

static void client_times_out_when_the_device_goes_silent(void **state) {
    (void)state;
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(0, 0, &f, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    connect_client(f);
    __atomic_store_n(&p->rom.faults, FKD_ROM_FAULT_SILENT, __ATOMIC_SEQ_CST);
    uint8_t *data = pattern(0x400);
    assert_int_equal(fk_flash_write(f, 0x9000, data, 0x400, NULL, NULL, &d), FK_E_TIMEOUT);
    assert_non_null(strstr(d.msg, "flash_begin: no answer"));
    fk_flash_close(f);
    free(data);
    peer_stop(p);
}

static void client_writes_compressed_and_saves_wire_bytes(void **state) {
    (void)state;
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(FKD_ROM_FAULT_CHECKSUM | FKD_ROM_FAULT_DROP, 0, &f, 0);
    struct fk_diag d;
    struct fk_flash_stats a, b;
    fk_diag_init(&d);
    connect_client(f);
    /* An NVS-like image: mostly erased, a few entries. */
    uint8_t *data = malloc(0x6000);
    assert_non_null(data);
    memset(data, 0xFF, 0x6000);
    for (size_t i = 0; i < 0x6000; i += 97) {
        data[i] = (uint8_t)(i >> 3);
    }
    fk_flash_get_stats(f, &a);
    assert_int_equal(fk_flash_write_deflate(f, 0x9000, data, 0x6000, NULL, NULL, &d), FK_OK);
    fk_flash_get_stats(f, &b);
    assert_true(b.tx_bytes - a.tx_bytes < 0x6000 / 2);
    assert_int_equal(b.retries, 2); /* the faults hit compressed blocks too, and are retried */
    assert_int_equal(fk_flash_verify(f, 0x9000, data, 0x6000, NULL, NULL, &d), FK_OK);
    assert_memory_equal(p->mem.buf + 0x9000, data, 0x6000);
    fk_flash_close(f);
    free(data);
    peer_stop(p);
}

static void rom_without_deflate_buffer_refuses_compressed_download(void **state) {
    (void)state;
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(0, 0, &f, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    connect_client(f);
    fkd_rom_set_deflate_buffer(&p->rom, NULL, 0); /* the thread is idle between commands */
    uint8_t data[0x1000];
    memset(data, 0x11, sizeof data);
    assert_int_equal(fk_flash_write_deflate(f, 0x9000, data, sizeof data, NULL, NULL, &d),
                     FK_E_UNSUPPORTED);
    assert_non_null(strstr(d.msg, "does not support command 0x10"));
    fk_flash_close(f);
    peer_stop(p);
}

/* A write the ROM accepts, then a verify that the injected fault makes fail with msg. */
static void check_verify_failure(unsigned fault, const char *msg) {
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(fault, 0, &f, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    connect_client(f);
    uint8_t *data = pattern(0x1000);
    assert_int_equal(fk_flash_write(f, 0x9000, data, 0x1000, NULL, NULL, &d), FK_OK);
    assert_int_equal(fk_flash_verify(f, 0x9000, data, 0x1000, NULL, NULL, &d), FK_E_VERIFY);
    assert_non_null(strstr(d.msg, msg));
    fk_flash_close(f);
    free(data);
    peer_stop(p);
}

static void md5_mismatch_is_a_verify_failure(void **state) {
    (void)state;
    check_verify_failure(FKD_ROM_FAULT_MD5, "MD5");
}

static void readback_mismatch_is_a_verify_failure(void **state) {
    (void)state;
    check_verify_failure(FKD_ROM_FAULT_READBACK, "read-back");
}

static void silent_port_times_out_with_clear_message(void **state) {
    (void)state;
    struct fk_flash *f = NULL;
    struct peer *p = peer_start(FKD_ROM_FAULT_SILENT, 0, &f, 0);
    struct fk_diag d;
    fk_diag_init(&d);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(fk_flash_sync(f, &d), FK_E_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_non_null(strstr(d.msg, "no ESP32 bootloader answered on socketpair"));
    assert_non_null(strstr(d.msg, "download mode"));
    assert_true(b.tv_sec - a.tv_sec < 30); /* an upper bound only: it must end */
    fk_flash_close(f);
    peer_stop(p);
}

/* A device that answers only garbage and corrupted frames. */
static void *garbage_main(void *arg) {
    int fd = *(int *)arg;
    uint8_t buf[256];
    for (int i = 0; i < 40; i++) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0) {
            continue;
        }
        if (read(fd, buf, sizeof buf) <= 0) {
            break;
        }
        /* A bad escape, a frame with a wrong direction, noise, a truncated header. */
        const uint8_t junk[] = {0xC0, 0x01, 0x08, 0xDB, 0x11, 0xC0, 'x', 'y',
                                0xC0, 0x00, 0x08, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xC0,
                                0xC0, 0x01, 0x08, 0xC0};
        if (write(fd, junk, sizeof junk) < 0) {
            break;
        }
    }
    return NULL;
}

static void corrupted_frames_never_count_as_answers(void **state) {
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct fk_serial *s = NULL;
    assert_int_equal(fk_serial_from_fd(sv[1], "garbage", &s), FK_OK);
    struct fk_flash_opts o = {.timeout_ms = 200, .sync_attempts = 2};
    struct fk_flash *f = NULL;
    assert_int_equal(fk_flash_from_serial(s, &o, &f), FK_OK);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, garbage_main, &sv[0]), 0);
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_flash_sync(f, &d), FK_E_TIMEOUT);
    fk_flash_close(f);
    pthread_join(th, NULL);
    close(sv[0]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slip_round_trips_every_byte_value),
        cmocka_unit_test(slip_encode_rejects_small_buffer),
        cmocka_unit_test(slip_rejects_bad_escape_and_resyncs),
        cmocka_unit_test(slip_drops_oversized_frame_then_decodes_next),
        cmocka_unit_test(slip_truncated_frame_is_never_a_frame),
        cmocka_unit_test(packet_build_and_response_parse),
        cmocka_unit_test(response_parse_rejects_malformed),
        cmocka_unit_test(efuse_mac_matches_esptool_layout),
        cmocka_unit_test(inflate_matches_zlib_at_every_level),
        cmocka_unit_test(inflate_rejects_malformed_streams),
        cmocka_unit_test(rom_answers_sync_eight_times_and_registers),
        cmocka_unit_test(rom_flash_commands_check_state_checksum_and_sequence),
        cmocka_unit_test(client_writes_and_verifies_over_socketpair),
        cmocka_unit_test(client_survives_short_reads),
        cmocka_unit_test(client_writes_and_verifies_over_pty),
        cmocka_unit_test(client_retries_blocks_on_checksum_error_and_lost_ack),
        cmocka_unit_test(client_gives_up_after_bounded_retries),
        cmocka_unit_test(client_times_out_when_the_device_goes_silent),
        cmocka_unit_test(client_writes_compressed_and_saves_wire_bytes),
        cmocka_unit_test(rom_without_deflate_buffer_refuses_compressed_download),
        cmocka_unit_test(md5_mismatch_is_a_verify_failure),
        cmocka_unit_test(readback_mismatch_is_a_verify_failure),
        cmocka_unit_test(silent_port_times_out_with_clear_message),
        cmocka_unit_test(corrupted_frames_never_count_as_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
