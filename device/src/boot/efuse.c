/* The virtual eFuse array (fkd/efuse.h): ESP32-C3 layout, one-way bits.
 *
 * Every change goes through program(), which ORs bits in: a 1 can never become a 0, which is
 * the one property of eFuses everything else (write protection, revocation) rests on. */
#include "fkd/efuse.h"

#include <string.h>

/* BLOCK0 and BLOCK1 hold 6 words, BLOCK2..10 8 words (ESP32-C3 TRM, eFuse chapter). */
size_t fkd_efuse_block_off(unsigned blk, size_t *len) {
    if (blk >= FKD_EFUSE_BLOCKS) {
        *len = 0;
        return 0;
    }
    if (blk < 2) {
        *len = 24;
        return 24u * blk;
    }
    *len = 32;
    return 48u + 32u * (blk - 2);
}

void fkd_efuse_blank(struct fkd_efuse *e) {
    memset(e, 0, sizeof *e);
}

enum fkd_err fkd_efuse_parse(const uint8_t *buf, size_t len, struct fkd_efuse *out) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t chip[8] = {0};
    fkd_efuse_blank(out);
    FKD_ENSURE(buf != NULL && len >= FKD_EFUSE_FILE_LEN, FKD_E_TRUNCATED);
    FKD_ENSURE(len == FKD_EFUSE_FILE_LEN, FKD_E_PARSE);
    FKD_ENSURE(memcmp(buf, FKD_EFUSE_MAGIC, 8) == 0, FKD_E_PARSE);
    memcpy(chip, FKD_EFUSE_CHIP, sizeof FKD_EFUSE_CHIP - 1);
    FKD_ENSURE(memcmp(buf + 8, chip, 8) == 0, FKD_E_PARSE);
    memcpy(out->raw, buf + FKD_EFUSE_HDR_LEN, FKD_EFUSE_BODY_LEN);
    rc = FKD_OK;
out:
    return rc;
}

void fkd_efuse_encode(const struct fkd_efuse *e, uint8_t out[FKD_EFUSE_FILE_LEN]) {
    memset(out, 0, FKD_EFUSE_HDR_LEN);
    memcpy(out, FKD_EFUSE_MAGIC, 8);
    memcpy(out + 8, FKD_EFUSE_CHIP, sizeof FKD_EFUSE_CHIP - 1);
    memcpy(out + FKD_EFUSE_HDR_LEN, e->raw, FKD_EFUSE_BODY_LEN);
}

uint32_t fkd_efuse_field(const struct fkd_efuse *e, unsigned blk, unsigned bit, unsigned width) {
    size_t len;
    size_t off = fkd_efuse_block_off(blk, &len);
    uint32_t v = 0;
    if (width > 32 || bit > len * 8 || width > len * 8 - bit) {
        return 0;
    }
    for (unsigned i = 0; i < width; i++) {
        unsigned b = bit + i;
        v |= (uint32_t)((e->raw[off + b / 8] >> (b % 8)) & 1u) << i;
    }
    return v;
}

/* Programs width bits of value into BLOCK0 at bit: the OR of a real eFuse programming. */
static void program0(struct fkd_efuse *e, unsigned bit, unsigned width, uint32_t value) {
    for (unsigned i = 0; i < width; i++) {
        if ((value >> i) & 1u) {
            unsigned b = bit + i;
            e->raw[b / 8] |= (uint8_t)(1u << (b % 8));
        }
    }
}

static int bit0(const struct fkd_efuse *e, unsigned bit) {
    return (int)fkd_efuse_field(e, 0, bit, 1);
}

enum fkd_efuse_purpose fkd_efuse_key_purpose(const struct fkd_efuse *e, unsigned key) {
    return (enum fkd_efuse_purpose)fkd_efuse_field(e, 0, FKD_EFUSE_KEY_PURPOSE0 + 4u * key, 4);
}

const char *fkd_efuse_purpose_name(unsigned purpose) {
    switch (purpose) {
    case FKD_EFUSE_PURPOSE_USER:
        return "USER";
    case FKD_EFUSE_PURPOSE_RESERVED:
        return "RESERVED";
    case FKD_EFUSE_PURPOSE_XTS_AES_128_KEY:
        return "XTS_AES_128_KEY";
    case FKD_EFUSE_PURPOSE_HMAC_DOWN_ALL:
        return "HMAC_DOWN_ALL";
    case FKD_EFUSE_PURPOSE_HMAC_DOWN_JTAG:
        return "HMAC_DOWN_JTAG";
    case FKD_EFUSE_PURPOSE_HMAC_DOWN_DIGITAL_SIGNATURE:
        return "HMAC_DOWN_DIGITAL_SIGNATURE";
    case FKD_EFUSE_PURPOSE_HMAC_UP:
        return "HMAC_UP";
    case FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0:
        return "SECURE_BOOT_DIGEST0";
    case FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST1:
        return "SECURE_BOOT_DIGEST1";
    case FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST2:
        return "SECURE_BOOT_DIGEST2";
    default:
        return "UNDEFINED";
    }
}

static const uint8_t *key_block(const struct fkd_efuse *e, unsigned key) {
    size_t len;
    return e->raw + fkd_efuse_block_off(4u + key, &len);
}

static int all_zero(const uint8_t *p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= p[i];
    }
    return acc == 0;
}

/* The key block holding SECURE_BOOT_DIGESTk, -1. */
static int digest_block(const struct fkd_efuse *e, unsigned k) {
    for (unsigned n = 0; n < FKD_EFUSE_KEY_BLOCKS; n++) {
        if (fkd_efuse_key_purpose(e, n) == FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0 + k) {
            return (int)n;
        }
    }
    return -1;
}

/* Why key block n cannot take a new key, NULL when it can. */
static const char *block_busy(const struct fkd_efuse *e, unsigned n) {
    if (bit0(e, FKD_EFUSE_WR_DIS_BLOCK_KEY0 + n)) {
        return "the key block is write-protected (WR_DIS): a burned key cannot be changed";
    }
    if (bit0(e, FKD_EFUSE_WR_DIS_KEY_PURPOSE0 + n)) {
        return "the key block's KEY_PURPOSE is write-protected (WR_DIS)";
    }
    if (fkd_efuse_key_purpose(e, n) != FKD_EFUSE_PURPOSE_USER) {
        return "the key block already has a purpose";
    }
    if (!all_zero(key_block(e, n), FKD_EFUSE_KEY_LEN)) {
        return "the key block is not empty";
    }
    return NULL;
}

enum fkd_err fkd_efuse_burn_key_digest(struct fkd_efuse *e, int key, const uint8_t digest[32],
                                       unsigned *used_key, unsigned *used_purpose,
                                       const char **why) {
    enum fkd_err rc = FKD_E_INTERNAL;
    *why = "";
    FKD_ENSURE(e != NULL && digest != NULL && key < (int)FKD_EFUSE_KEY_BLOCKS, FKD_E_ARG);
    /* An all-zero digest would be indistinguishable from a blank block. */
    FKD_ENSURE(!all_zero(digest, 32), FKD_E_ARG);
    for (unsigned k = 0; k < FKD_EFUSE_SB_DIGESTS; k++) {
        int n = digest_block(e, k);
        if (n >= 0 && memcmp(key_block(e, (unsigned)n), digest, 32) == 0) {
            *why = "this key's digest is burned already (eFuses are written once)";
            rc = FKD_E_STATE;
            goto out;
        }
    }
    unsigned k = 0;
    while (k < FKD_EFUSE_SB_DIGESTS && digest_block(e, k) >= 0) {
        k++;
    }
    if (k == FKD_EFUSE_SB_DIGESTS) {
        *why = "SECURE_BOOT_DIGEST0..2 are all burned (the chip holds three key digests)";
        rc = FKD_E_NOSPACE;
        goto out;
    }
    unsigned n = 0;
    if (key >= 0) {
        n = (unsigned)key;
        *why = block_busy(e, n);
        if (*why != NULL) {
            rc = FKD_E_STATE;
            goto out;
        }
    } else {
        while (n < FKD_EFUSE_KEY_BLOCKS && block_busy(e, n) != NULL) {
            n++;
        }
        if (n == FKD_EFUSE_KEY_BLOCKS) {
            *why = "no free key block (BLOCK_KEY0..5 are all used)";
            rc = FKD_E_NOSPACE;
            goto out;
        }
    }
    /* Checked: now program, bits only ever set. */
    size_t len;
    size_t off = fkd_efuse_block_off(4u + n, &len);
    for (size_t i = 0; i < FKD_EFUSE_KEY_LEN; i++) {
        e->raw[off + i] |= digest[i];
    }
    program0(e, FKD_EFUSE_KEY_PURPOSE0 + 4u * n, 4, FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0 + k);
    program0(e, FKD_EFUSE_WR_DIS_BLOCK_KEY0 + n, 1, 1);
    program0(e, FKD_EFUSE_WR_DIS_KEY_PURPOSE0 + n, 1, 1);
    *used_key = n;
    *used_purpose = FKD_EFUSE_PURPOSE_SECURE_BOOT_DIGEST0 + k;
    *why = "";
    rc = FKD_OK;
out:
    if (*why == NULL) {
        *why = "";
    }
    return rc;
}

enum fkd_err fkd_efuse_revoke_digest(struct fkd_efuse *e, unsigned k) {
    if (e == NULL || k >= FKD_EFUSE_SB_DIGESTS) {
        return FKD_E_ARG;
    }
    if (bit0(e, FKD_EFUSE_SB_KEY_REVOKE0 + k)) {
        return FKD_OK;
    }
    if (bit0(e, FKD_EFUSE_WR_DIS_SB_KEY_REVOKE0 + k)) {
        return FKD_E_STATE;
    }
    program0(e, FKD_EFUSE_SB_KEY_REVOKE0 + k, 1, 1);
    return FKD_OK;
}

unsigned fkd_efuse_sb_digests(const struct fkd_efuse *e, uint8_t out[FKD_EFUSE_SB_DIGESTS][32]) {
    unsigned count = 0;
    for (unsigned k = 0; k < FKD_EFUSE_SB_DIGESTS; k++) {
        int n = digest_block(e, k);
        if (n < 0 || bit0(e, FKD_EFUSE_SB_KEY_REVOKE0 + k) ||
            bit0(e, FKD_EFUSE_RD_DIS_BLOCK_KEY0 + (unsigned)n)) {
            continue;
        }
        memcpy(out[count++], key_block(e, (unsigned)n), 32);
    }
    return count;
}
