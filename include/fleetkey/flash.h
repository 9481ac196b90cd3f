/* fleetkey flash: writes and reads an ESP32's SPI flash through the ROM serial download
 * protocol (the protocol esptool speaks with --no-stub), over a real serial port or a pty.
 *
 * Layers, bottom up:
 *   - SLIP framing and the command/response packet format: device/include/fkd/slip.h and
 *     fkd/rom.h (written once, shared with the device-side responder), plus the packet
 *     builder/parser here;
 *   - struct fk_serial: a raw termios port with timeouts, baud rate and the DTR/RTS
 *     reset-into-bootloader sequence;
 *   - struct fk_flash: the ROM client (sync, registers, MAC, SPI attach, write with block
 *     retries, MD5, READ_FLASH_SLOW, baud change).
 *
 * Every wait has a deadline (no call blocks for longer than its documented timeout) and every
 * retry loop has a fixed bound. Nothing here prints or exits; detail for people goes into a
 * caller-owned struct fk_diag. Thread safety: one object per thread. */
#ifndef FLEETKEY_FLASH_H
#define FLEETKEY_FLASH_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- packets ------------------------------------------------------------------------- */

/* A parsed response. data points into the parsed buffer (borrowed). */
struct fk_flash_response {
    uint8_t cmd;
    uint32_t value;
    const uint8_t *data; /* the data field without the status bytes */
    size_t data_len;
    uint8_t status; /* 0 success, 1 failure */
    uint8_t error;  /* ROM error code when status is 1 */
};

/* Builds a command packet (direction 0x00, cmd, u16 size, u32 checksum, data) into out, not
 * yet SLIP-encoded. FK_OK, FK_E_TOOBIG (len > 65535), FK_E_NOSPACE (out too small). */
FK_MUST_CHECK enum fk_err fk_flash_packet_build(uint8_t cmd, const uint8_t *data, size_t len,
                                                uint32_t checksum, uint8_t *out,
                                                size_t out_size, size_t *out_len);
/* Parses a decoded response frame from (buf, len); status_len is 4 for the ESP32 ROM, 2 for a
 * stub loader. Borrows buf. FK_OK, FK_E_TRUNCATED (shorter than header + status, or than the
 * size field says), FK_E_PARSE (direction is not 0x01, or trailing bytes past the size
 * field). Never allocates. */
FK_MUST_CHECK enum fk_err fk_flash_response_parse(const uint8_t *buf, size_t len,
                                                  size_t status_len,
                                                  struct fk_flash_response *out);
/* A short English name for a ROM error code ("invalid CRC in message"); never NULL. */
const char *fk_flash_rom_strerror(uint8_t error);

/* ---- serial port ---------------------------------------------------------------------- */
struct fk_serial;

/* Opens path (a tty or pty) in raw 8N1 mode at baud, without flow control, and flushes stale
 * input. FK_OK, FK_E_IO (diag names the port and errno text), FK_E_ARG (baud not supported by
 * termios), FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_serial_open(const char *path, unsigned baud, struct fk_serial **out,
                                         struct fk_diag *diag);
/* Wraps an already open descriptor (a socketpair end in tests); termios is not touched.
 * Takes ownership of fd (closed by fk_serial_close). FK_OK or FK_E_NOMEM (fd then closed). */
FK_MUST_CHECK enum fk_err fk_serial_from_fd(int fd, const char *name, struct fk_serial **out);
/* Closes and frees. NULL is a no-op. */
void fk_serial_close(struct fk_serial *s);
/* FK_OK, FK_E_ARG (unsupported rate), FK_E_IO. A no-op on descriptors that are not ttys. */
FK_MUST_CHECK enum fk_err fk_serial_set_baud(struct fk_serial *s, unsigned baud);
/* esptool's "classic reset": DTR/RTS drive IO0 and EN through the usual two-transistor
 * circuit; EN low 100 ms with IO0 high, then IO0 low while EN rises, then IO0 high after
 * 50 ms, so the chip samples IO0 low and starts the ROM download mode. Ports without modem
 * lines (a pty) ignore it: FK_OK. */
FK_MUST_CHECK enum fk_err fk_serial_reset_to_bootloader(struct fk_serial *s);
/* Writes all len bytes within timeout_ms. FK_OK, FK_E_TIMEOUT, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_serial_write(struct fk_serial *s, const uint8_t *buf, size_t len,
                                          int timeout_ms);
/* Reads what is available, at most len bytes, waiting up to timeout_ms for the first byte.
 * FK_OK (*got > 0), FK_E_TIMEOUT (*got == 0), FK_E_IO (also on end of file). */
FK_MUST_CHECK enum fk_err fk_serial_read(struct fk_serial *s, uint8_t *buf, size_t len,
                                         size_t *got, int timeout_ms);
/* Discards unread input (tcflush, or a non-blocking drain for non-ttys). */
void fk_serial_flush_input(struct fk_serial *s);
/* The name given at open ("/dev/ttyUSB0"). */
const char *fk_serial_name(const struct fk_serial *s);

/* ---- ROM client ----------------------------------------------------------------------- */
struct fk_flash;

enum fk_flash_before {
    FK_FLASH_BEFORE_DEFAULT_RESET = 0, /* DTR/RTS classic reset into the bootloader */
    FK_FLASH_BEFORE_NO_RESET = 1,      /* the board is already in download mode */
};

struct fk_flash_opts {
    unsigned timeout_ms;     /* per command; 0: 3000 (esptool's DEFAULT_TIMEOUT) */
    unsigned sync_attempts;  /* 0: 7 */
    unsigned block_attempts; /* tries per FLASH_DATA block; 0: 3 */
    unsigned block_size;     /* FLASH_DATA payload; 0: 0x400, the ESP32 ROM's size */
};

struct fk_flash_stats {
    unsigned long long tx_bytes; /* bytes written to the port (SLIP-encoded) */
    unsigned long long rx_bytes; /* bytes read from the port */
    unsigned retries;            /* block or command retries after an error or timeout */
};

/* Progress: done of total bytes of the current operation. */
typedef void fk_flash_progress_fn(void *user, size_t done, size_t total);

/* Opens port at baud and, for FK_FLASH_BEFORE_DEFAULT_RESET, resets the chip into download
 * mode. Does not sync. opts may be NULL (defaults). FK_OK, FK_E_IO, FK_E_ARG, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_flash_open(const char *port, unsigned baud,
                                        enum fk_flash_before before,
                                        const struct fk_flash_opts *opts, struct fk_flash **out,
                                        struct fk_diag *diag);
/* Same over an open serial port; takes ownership of s (also on failure). */
FK_MUST_CHECK enum fk_err fk_flash_from_serial(struct fk_serial *s,
                                               const struct fk_flash_opts *opts,
                                               struct fk_flash **out);
/* Closes the port and frees. NULL is a no-op. */
void fk_flash_close(struct fk_flash *f);
void fk_flash_get_stats(const struct fk_flash *f, struct fk_flash_stats *out);

/* Sends SYNC until the ROM answers (sync_attempts tries, 100 ms each), then drains the extra
 * replies. FK_OK, FK_E_TIMEOUT ("no ESP32 bootloader answered on PORT: is the board in
 * download mode?"), FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_flash_sync(struct fk_flash *f, struct fk_diag *diag);
/* READ_REG / WRITE_REG. FK_OK, FK_E_TIMEOUT, FK_E_PROTOCOL (error status: diag has the ROM
 * error), FK_E_UNSUPPORTED (the ROM does not implement the command), FK_E_IO. The same codes
 * apply to every command below. */
FK_MUST_CHECK enum fk_err fk_flash_read_reg(struct fk_flash *f, uint32_t addr, uint32_t *val,
                                            struct fk_diag *diag);
FK_MUST_CHECK enum fk_err fk_flash_write_reg(struct fk_flash *f, uint32_t addr, uint32_t val,
                                             struct fk_diag *diag);
/* Reads the chip-detect magic at 0x40001000. FK_OK for an ESP32 (0x00F01D83),
 * FK_E_UNSUPPORTED for anything else (diag shows the value), or a transport error. */
FK_MUST_CHECK enum fk_err fk_flash_detect_chip(struct fk_flash *f, struct fk_diag *diag);
/* The factory MAC from eFuse BLK0 words 1 and 2, as esptool reads it for ESP32. */
FK_MUST_CHECK enum fk_err fk_flash_read_mac(struct fk_flash *f, uint8_t mac[6],
                                            struct fk_diag *diag);
/* SPI_ATTACH (default pins) then SPI_SET_PARAMS (flash_size bytes, 64 KiB blocks, 4 KiB
 * sectors, 256-byte pages), as esptool does before any flash command. */
FK_MUST_CHECK enum fk_err fk_flash_spi_attach(struct fk_flash *f, uint32_t flash_size,
                                              struct fk_diag *diag);
/* CHANGE_BAUDRATE (second word 0: ROM loader), then switches the port and drains. */
FK_MUST_CHECK enum fk_err fk_flash_change_baud(struct fk_flash *f, unsigned baud,
                                               struct fk_diag *diag);
/* FLASH_BEGIN (erases the covered sectors) + FLASH_DATA blocks (the last padded with 0xFF, as
 * the protocol asks). A block refused for a bad checksum or left unanswered is sent again, up
 * to block_attempts times. Does not send FLASH_END (the ROM would leave download mode).
 * offset must be 4 KiB aligned. FK_OK, FK_E_ARG, FK_E_TIMEOUT, FK_E_PROTOCOL, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_flash_write(struct fk_flash *f, uint32_t offset,
                                         const uint8_t *data, size_t len,
                                         fk_flash_progress_fn *progress, void *user,
                                         struct fk_diag *diag);
/* The same write, compressed: a zlib stream (level 9) sent with FLASH_DEFL_BEGIN (erase size =
 * len rounded up to the block size, as the ESP32 ROM expects) and FLASH_DEFL_DATA blocks (not
 * padded), with the same retries. What esptool's write-flash does by default; an NVS image,
 * mostly 0xFF, shrinks several times on the wire. Progress counts uncompressed bytes.
 * FK_E_NOMEM, FK_E_INTERNAL (zlib failed), or as fk_flash_write. */
FK_MUST_CHECK enum fk_err fk_flash_write_deflate(struct fk_flash *f, uint32_t offset,
                                                 const uint8_t *data, size_t len,
                                                 fk_flash_progress_fn *progress, void *user,
                                                 struct fk_diag *diag);
/* SPI_FLASH_MD5 of [offset, offset + len): the ROM's 32 hex characters decoded into md5.
 * FK_E_PARSE when the answer is not 32 hex digits. */
FK_MUST_CHECK enum fk_err fk_flash_md5(struct fk_flash *f, uint32_t offset, uint32_t len,
                                       uint8_t md5[16], struct fk_diag *diag);
/* READ_FLASH_SLOW, 64 bytes per command, into out[len]. */
FK_MUST_CHECK enum fk_err fk_flash_read(struct fk_flash *f, uint32_t offset, uint8_t *out,
                                        size_t len, fk_flash_progress_fn *progress, void *user,
                                        struct fk_diag *diag);
/* Verifies [offset, offset + len) against data: the device's MD5 first, then a full read-back
 * compare. FK_OK, FK_E_VERIFY (diag says which check failed and where), or a transport
 * error. */
FK_MUST_CHECK enum fk_err fk_flash_verify(struct fk_flash *f, uint32_t offset,
                                          const uint8_t *data, size_t len,
                                          fk_flash_progress_fn *progress, void *user,
                                          struct fk_diag *diag);
/* FLASH_END: run != 0 runs the user code, 0 reboots; either way the ROM leaves download mode. */
FK_MUST_CHECK enum fk_err fk_flash_end(struct fk_flash *f, int run, struct fk_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
