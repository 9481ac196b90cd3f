/* The ESP32 ROM serial download protocol: wire constants shared by the host flasher
 * (src/flash) and a responder that answers the protocol the way the ESP32 ROM bootloader does,
 * writing into flash through callbacks. robot-sim runs the responder on a pty so that
 * `provision-keys flash` and an unmodified `esptool --no-stub` can write and read its flash.
 *
 * Protocol reference: esptool documentation, "Serial Protocol" (quoted at the enforcing lines
 * in rom.c). Summary: SLIP frames; a command is direction 0x00, command, u16 size, u32
 * checksum, data; a response is direction 0x01, the same command, u16 size, u32 value, data
 * ending in status bytes (the ESP32 ROM sends 4: status, error, 2 reserved). All multi-byte
 * fields are little-endian.
 *
 * Pure C: no OS header, no allocation; the context lives in caller memory (it holds the
 * receive buffer, about 17 KiB). MD5 comes from mbedTLS. Thread safety: one context per
 * thread. */
#ifndef FKD_ROM_H
#define FKD_ROM_H

#include "fkd/slip.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants ---------------------------------------------------------------------- */
enum fkd_rom_cmd {
    FKD_ROM_FLASH_BEGIN = 0x02,
    FKD_ROM_FLASH_DATA = 0x03,
    FKD_ROM_FLASH_END = 0x04,
    FKD_ROM_MEM_BEGIN = 0x05,
    FKD_ROM_MEM_END = 0x06,
    FKD_ROM_MEM_DATA = 0x07,
    FKD_ROM_SYNC = 0x08,
    FKD_ROM_WRITE_REG = 0x09,
    FKD_ROM_READ_REG = 0x0A,
    FKD_ROM_SPI_SET_PARAMS = 0x0B,
    FKD_ROM_SPI_ATTACH = 0x0D,
    FKD_ROM_READ_FLASH_SLOW = 0x0E,
    FKD_ROM_CHANGE_BAUDRATE = 0x0F,
    FKD_ROM_FLASH_DEFL_BEGIN = 0x10,
    FKD_ROM_FLASH_DEFL_DATA = 0x11,
    FKD_ROM_FLASH_DEFL_END = 0x12,
    FKD_ROM_SPI_FLASH_MD5 = 0x13,
    FKD_ROM_GET_SECURITY_INFO = 0x14,
};

/* ROM loader error codes (the byte after status 1). */
enum fkd_rom_error {
    FKD_ROM_ERR_INVALID_MSG = 0x05, /* "Received message is invalid" / unsupported command */
    FKD_ROM_ERR_FAILED = 0x06,      /* "Failed to act on received message" */
    FKD_ROM_ERR_BAD_CRC = 0x07,     /* "Invalid CRC in message" */
    FKD_ROM_ERR_FLASH_WRITE = 0x08, /* "flash write error" */
    FKD_ROM_ERR_FLASH_READ = 0x09,  /* "flash read error" */
    FKD_ROM_ERR_READ_LEN = 0x0A,    /* "flash read length error" */
    FKD_ROM_ERR_DEFLATE = 0x0B,     /* "Deflate error" */
};

#define FKD_ROM_DIR_REQUEST 0x00u
/* Command byte of the answer to an unsupported command (see rom.c send_unsupported). */
#define FKD_ROM_UNSUPPORTED_CMD 0x00u
#define FKD_ROM_DIR_RESPONSE 0x01u
#define FKD_ROM_HDR_LEN 8u
#define FKD_ROM_STATUS_LEN 4u          /* ESP32 ROM; the stub loader sends 2 */
#define FKD_ROM_CHECKSUM_SEED 0xEFu
#define FKD_ROM_SYNC_LEN 36u           /* 0x07 0x07 0x12 0x20 + 32 x 0x55 */
#define FKD_ROM_SYNC_REPLIES 8u        /* the ROM answers one SYNC several times */
#define FKD_ROM_DATA_HDR_LEN 16u       /* _DATA payload: size, seq, 0, 0 */
#define FKD_ROM_READ_SLOW_BLOCK 64u    /* READ_FLASH_SLOW: bytes per reply */
#define FKD_ROM_MD5_HEX_LEN 32u        /* SPI_FLASH_MD5 from the ROM: hex, not raw */
#define FKD_ROM_SECTOR 0x1000u
/* Largest FLASH_DATA / FLASH_DEFL_DATA block accepted: esptool sends 0x400 to the ROM, but
 * esptool-js sends 0x4000 (its FLASH_WRITE_SIZE) to the ROM as well. */
#define FKD_ROM_FLASH_BLOCK_MAX 0x4000u
#define FKD_ROM_RAM_BLOCK_MAX 0x1800u   /* esptool ESP_RAM_BLOCK */
#define FKD_ROM_FRAME_MAX (FKD_ROM_HDR_LEN + FKD_ROM_DATA_HDR_LEN + FKD_ROM_FLASH_BLOCK_MAX)

/* Chip detection and eFuse (esptool targets/esp32.py). */
#define FKD_ROM_CHIP_MAGIC_REG 0x40001000u
#define FKD_ROM_ESP32_MAGIC 0x00F01D83u
#define FKD_ROM_EFUSE_RD_BASE 0x3FF5A000u /* EFUSE_BLK0_RDATA0_REG; word n at base + 4n */
#define FKD_ROM_SPI_REG_BASE 0x3FF42000u
#define FKD_ROM_UART_CLKDIV_REG 0x3FF40014u

/* The ROM's payload checksum: seed 0xEF XORed with every "data to write" byte. */
uint8_t fkd_rom_checksum(const uint8_t *data, size_t len);

/* MAC <-> eFuse BLK0 words 1 and 2, as esptool's ESP32ROM.read_mac() reads them:
 * struct.pack(">II", word2, word1)[2:8] is the MAC; word2 bits 16..23 hold the MAC CRC8. */
void fkd_rom_mac_to_efuse(const uint8_t mac[6], uint32_t *word1, uint32_t *word2);
void fkd_rom_efuse_to_mac(uint32_t word1, uint32_t word2, uint8_t mac[6]);

/* ---- the responder ----------------------------------------------------------------------- */

/* Flash the responder writes into (device/include/fkd/flash.h will provide this once the
 * device library's flash abstraction exists; the callbacks adapt to it). Each returns 0 on
 * success, non-zero on failure. Offsets are checked against size before any call. */
struct fkd_rom_flash {
    void *ctx;
    uint32_t size; /* bytes; a power of two, at least 1 MiB, for the JEDEC ID */
    int (*read)(void *ctx, uint32_t off, void *buf, uint32_t len);
    /* NOR semantics are the port's business: the responder erases before it writes. */
    int (*write)(void *ctx, uint32_t off, const void *buf, uint32_t len);
    int (*erase)(void *ctx, uint32_t off, uint32_t len); /* sector-aligned */
};

/* Transmit callback: writes len bytes to the serial line. Returns 0, or non-zero when the
 * bytes could not be sent (the responder counts it and carries on, as a UART would). */
typedef int fkd_rom_tx_fn(void *user, const uint8_t *buf, size_t len);
/* CHANGE_BAUDRATE: called after the acknowledgement has been handed to tx. */
typedef void fkd_rom_baud_fn(void *user, uint32_t baud);

/* Fault injection for tests (robot-sim --fault). */
enum {
    FKD_ROM_FAULT_MD5 = 1 << 0,       /* SPI_FLASH_MD5 answers a wrong digest */
    FKD_ROM_FAULT_DROP = 1 << 1,      /* the first FLASH_DATA response is never sent */
    FKD_ROM_FAULT_CHECKSUM = 1 << 2,  /* the first FLASH_DATA is refused as "Invalid CRC" */
    FKD_ROM_FAULT_READBACK = 1 << 3,  /* READ_FLASH_SLOW flips one bit of the first block */
    FKD_ROM_FAULT_SILENT = 1 << 4,    /* never answer anything (a dead port) */
    FKD_ROM_FAULT_STICKY = 1 << 5,    /* the faults above fire every time, not once */
};

/* Why the responder stopped being a ROM loader. */
enum fkd_rom_exit {
    FKD_ROM_STAY = 0,
    FKD_ROM_EXIT_RUN = 1,    /* FLASH_END with "run user code" */
    FKD_ROM_EXIT_REBOOT = 2, /* FLASH_END with reboot */
};

struct fkd_rom_stats {
    uint32_t frames;      /* frames decoded */
    uint32_t bad_frames;  /* SLIP errors and malformed packets */
    uint32_t errors;      /* error statuses sent */
    uint32_t tx_failures; /* tx callback failures */
    uint32_t flash_bytes; /* bytes written by FLASH_DATA */
};

/* Fields are private. */
struct fkd_rom {
    struct fkd_slip slip;
    uint8_t rx[FKD_ROM_FRAME_MAX];
    struct fkd_rom_flash flash;
    fkd_rom_tx_fn *tx;
    fkd_rom_baud_fn *baud;
    void *user;
    uint32_t efuse[8];
    struct {
        uint32_t addr;
        uint32_t val;
    } regs[24];
    unsigned faults;
    unsigned faults_fired;
    uint8_t attached;
    uint8_t exit;
    /* FLASH_BEGIN / MEM_BEGIN / FLASH_DEFL_BEGIN state */
    uint8_t writing;    /* 0 none, 1 flash, 2 mem, 3 compressed flash */
    uint32_t w_offset;
    uint32_t w_erase_end;
    uint32_t w_blocks;
    uint32_t w_block_size;
    uint32_t w_next_seq;
    /* compressed download: the zlib stream is collected, then inflated into flash */
    uint8_t *defl;
    size_t defl_cap;
    size_t defl_len;
    uint8_t stage[1024]; /* inflated bytes not yet written */
    uint32_t stage_base; /* output index of stage[0] */
    uint32_t stage_len;
    struct fkd_rom_stats stats;
};

/* Cannot fail. mac is the chip's factory MAC (eFuse). */
void fkd_rom_init(struct fkd_rom *r, const uint8_t mac[6]);
/* Borrows flash (copied) and user until the context is no longer used. baud may be NULL.
 * Returns 0, or -1 when flash->size is not a power of two of at least 64 KiB or a callback is
 * missing. */
int fkd_rom_setup(struct fkd_rom *r, const struct fkd_rom_flash *flash, fkd_rom_tx_fn *tx,
                  fkd_rom_baud_fn *baud, void *user);
/* Enables the compressed download (FLASH_DEFL_BEGIN/DATA/END, what esptool's write-flash uses
 * unless --no-compress): the compressed stream of one FLASH_DEFL_BEGIN, up to cap bytes, is
 * collected in buf (borrowed) and inflated into flash when its last block arrives. Without a
 * buffer those commands are answered as unsupported. */
void fkd_rom_set_deflate_buffer(struct fkd_rom *r, uint8_t *buf, size_t cap);
/* FKD_ROM_FAULT_* bits. */
void fkd_rom_set_faults(struct fkd_rom *r, unsigned faults);
/* Feeds received bytes; every complete command is answered through tx before this returns.
 * Returns FKD_ROM_STAY, or the exit reason once FLASH_END asked to leave download mode
 * (bytes after that command are not consumed). */
enum fkd_rom_exit fkd_rom_feed(struct fkd_rom *r, const uint8_t *in, size_t len);
/* Handles one already de-SLIPped command packet (the fuzz target; fkd_rom_feed uses it). */
void fkd_rom_handle_packet(struct fkd_rom *r, const uint8_t *pkt, size_t len);
const struct fkd_rom_stats *fkd_rom_get_stats(const struct fkd_rom *r);
/* Safe after init; wipes the buffers that carried flash contents (NVS images hold keys). */
void fkd_rom_free(struct fkd_rom *r);

#ifdef __cplusplus
}
#endif
#endif
