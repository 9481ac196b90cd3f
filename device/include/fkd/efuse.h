/* A virtual eFuse array modelled on the ESP32-C3's (docs/formats.md, "Virtual eFuse file"),
 * for what Secure Boot V2 keeps in it: up to three SHA-256 digests of the public signing keys
 * in the key blocks BLOCK_KEY0..5, each block given the purpose SECURE_BOOT_DIGEST0..2, plus
 * the write-protect (WR_DIS), read-protect (RD_DIS), SECURE_BOOT_EN and
 * SECURE_BOOT_KEY_REVOKE0..2 bits of BLOCK0. Seed 004: "Secure Boot Key | ESP32 eFuse
 * (one-time write) | Cannot rotate (hardware fuse)".
 *
 * One-way bits, as on the chip: programming can only turn a 0 into a 1 (fkd_efuse_program ORs),
 * nothing ever clears a bit, and a write-protected field or block cannot be programmed at all.
 * Field positions are the ESP32-C3's (ESP-IDF components/efuse/esp32c3/esp_efuse_table.csv):
 * bit n of a block is bit n % 8 of its byte n / 8 (the chip's little-endian 32-bit words).
 * The Reed-Solomon coding the chip adds to BLOCK1..10 is not modelled.
 *
 * Pure C, no allocation, no OS header: the host tool (provision-keys efuse) and the simulated
 * bootloader (robot-sim) share this file. Thread safety: none; the struct is plain data. */
#ifndef FKD_EFUSE_H
#define FKD_EFUSE_H

#include "fkd/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_EFUSE_MAGIC "FKEFUSE1" /* 8 bytes, then the chip name, 8 bytes NUL-padded */
#define FKD_EFUSE_CHIP "esp32c3"
#define FKD_EFUSE_HDR_LEN 16u
#define FKD_EFUSE_BLOCKS 11u    /* BLOCK0..BLOCK10 */
#define FKD_EFUSE_BODY_LEN 336u /* BLOCK0, BLOCK1: 24 bytes; BLOCK2..10: 32 bytes */
#define FKD_EFUSE_FILE_LEN (FKD_EFUSE_HDR_LEN + FKD_EFUSE_BODY_LEN) /* 352 */
#define FKD_EFUSE_KEY_BLOCKS 6u                                     /* BLOCK_KEY0..5 = BLOCK4..9 */
#define FKD_EFUSE_KEY_LEN 32u
#define FKD_EFUSE_SB_DIGESTS 3u /* SECURE_BOOT_DIGEST0..2 */

/* KEY_PURPOSE_n values (esp_efuse_chip.h, esp_efuse_purpose_t). */
enum fkd_efuse_purpose {
    FKD_EFUSE_PURPOSE_USER = 0,
    FKD_EFUSE_PURPOSE_RESERVED = 1,
    FKD_EFUSE_PURPOSE_XTS_AES_128_KEY = 4,
    FKD_EFUSE_PURPOSE_HMAC_DOWN_ALL = 5,
    FKD_EFUSE_PURPOSE_HMAC_DOWN_JTAG = 6,
    FKD_EFUSE_PURPOSE_HMAC_DOWN_DIGITAL_SIGNATURE = 7,
    FKD_EFUSE_PURPOSE_HMAC_UP = 8,
    FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0 = 9,
    FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST1 = 10,
    FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST2 = 11,
};

/* BLOCK0 bit positions used here (esp_efuse_table.csv, ESP32-C3). */
#define FKD_EFUSE_WR_DIS_RD_DIS 0u
#define FKD_EFUSE_WR_DIS_SB_KEY_REVOKE0 5u /* + k */
#define FKD_EFUSE_WR_DIS_KEY_PURPOSE0 8u   /* + n */
#define FKD_EFUSE_WR_DIS_SECURE_BOOT_EN 15u
#define FKD_EFUSE_WR_DIS_BLOCK_KEY0 23u /* + n */
#define FKD_EFUSE_RD_DIS_BLOCK_KEY0 32u /* + n */
#define FKD_EFUSE_SB_KEY_REVOKE0 85u    /* + k */
#define FKD_EFUSE_KEY_PURPOSE0 88u      /* + 4 n, 4 bits each */
#define FKD_EFUSE_SECURE_BOOT_EN 116u

/* The eFuse array: the 336 body bytes, BLOCK0 first. Caller memory. */
struct fkd_efuse {
    uint8_t raw[FKD_EFUSE_BODY_LEN];
};

/* A fresh chip: every bit 0. Cannot fail. */
void fkd_efuse_blank(struct fkd_efuse *e);
/* Parses a file image: exactly FKD_EFUSE_FILE_LEN bytes, the magic, the chip name.
 * FKD_OK; FKD_E_TRUNCATED / FKD_E_PARSE (length, magic, chip). Borrows buf. */
FKD_MUST_CHECK enum fkd_err fkd_efuse_parse(const uint8_t *buf, size_t len, struct fkd_efuse *out);
/* Writes the file image (header + body) into out. */
void fkd_efuse_encode(const struct fkd_efuse *e, uint8_t out[FKD_EFUSE_FILE_LEN]);

/* Offset of BLOCKn in the body and its length (24 or 32); 0 length for n > 10. */
size_t fkd_efuse_block_off(unsigned blk, size_t *len);
/* Reads width (<= 32) bits of block blk at bit; 0 outside the block. */
uint32_t fkd_efuse_field(const struct fkd_efuse *e, unsigned blk, unsigned bit, unsigned width);
enum fkd_efuse_purpose fkd_efuse_key_purpose(const struct fkd_efuse *e, unsigned key);
/* "USER", "SECURE_BOOT_DIGEST0", ...; never NULL. */
const char *fkd_efuse_purpose_name(unsigned purpose);

/* Burns the Secure Boot V2 digest of a public key (32 bytes, espsecure digest-sbv2-public-key)
 * as espefuse.py burn-key-digest does on an ESP32-C3: into key block `key` (0..5; -1: the
 * first key block that is all zero, of purpose USER and not protected), with the first
 * SECURE_BOOT_DIGESTk purpose no key block holds yet; then KEY_PURPOSE_n is set and both the
 * block and its purpose are write-protected (WR_DIS), so the digest can never change. Read
 * protection is not set: the bootloader must read the digest. Everything is checked before
 * any bit is programmed: a refusal changes nothing.
 * FKD_OK (*used_key, *used_purpose set); FKD_E_STATE (*why: the block is write-protected, not
 * empty, or has a purpose; or this digest is burned already); FKD_E_NOSPACE (three digests
 * burned, or no free key block); FKD_E_ARG. *why is static text (never NULL). */
FKD_MUST_CHECK enum fkd_err fkd_efuse_burn_key_digest(struct fkd_efuse *e, int key,
                                                      const uint8_t digest[32], unsigned *used_key,
                                                      unsigned *used_purpose, const char **why);
/* Sets SECURE_BOOT_KEY_REVOKEk (k 0..2): the digest of purpose SECURE_BOOT_DIGESTk is no
 * longer trusted. FKD_OK (also when already revoked); FKD_E_STATE (the revoke bit is
 * write-protected); FKD_E_ARG. */
FKD_MUST_CHECK enum fkd_err fkd_efuse_revoke_digest(struct fkd_efuse *e, unsigned k);

/* The digests the bootloader trusts: each key block of purpose SECURE_BOOT_DIGESTk whose
 * SECURE_BOOT_KEY_REVOKEk is 0 and which is not read-protected (a read-protected block reads
 * as zeros). Copies them into out (in k order); returns how many (0..3). */
unsigned fkd_efuse_sb_digests(const struct fkd_efuse *e, uint8_t out[FKD_EFUSE_SB_DIGESTS][32]);

#ifdef __cplusplus
}
#endif
#endif
