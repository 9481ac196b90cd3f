/* ESP32 app image checker on the device (fkd/ota.h, fkd_app_check).
 *
 * Written for the device rather than reusing src/ota/image.c: that parser wants the whole
 * image in one buffer, hashes with OpenSSL and reports through fk_diag/vsnprintf, none of which
 * a 1.5 MiB partition on a microcontroller can use. This one pulls the image through a read
 * callback, 512 bytes at a time, so it checks a partition in flash with a fixed stack.
 *
 * Layout (ESP-IDF esp_app_format.h, esptool elf2image):
 *   esp_image_header_t (24): magic 0xE9, segment_count, spi_mode, spi_speed/size, entry_addr,
 *     wp_pin, spi_pin_drv[3], chip_id u16, min_chip_rev, min/max_chip_rev_full, reserved[4],
 *     hash_appended u8
 *   segment_count x (load_addr u32, data_len u32, data)
 *   zero padding so the checksum byte is the last byte of a 16-byte block; the checksum is
 *   0xEF ^ every data byte of every segment; then, if hash_appended, SHA-256 of everything
 *   before it.
 *   esp_app_desc_t (256) opens the first segment: magic 0xABCD5432, secure_version, reserv1[2],
 *   version[32], project_name[32], time[16], date[16], idf_ver[32], app_elf_sha256[32], ... */
#include "fkd/ota.h"

#include "mbedtls_compat.h"

#include <string.h>

#define CHUNK 512u

static void copy_str(char *dst, size_t dst_size, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; i < n && i + 1 < dst_size && src[i] != '\0'; i++) {
        dst[i] = (char)src[i];
    }
    dst[i] = '\0';
}

enum fkd_err fkd_app_check(fkd_read_fn *rd, void *user, uint32_t max_len,
                           struct fkd_app_info *out) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t buf[CHUNK];
    uint8_t hash[32];
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    memset(out, 0, sizeof *out);
    FKD_ENSURE(rd != NULL, FKD_E_ARG);
    FKD_ENSURE(max_len >= FKD_APP_HDR_LEN, FKD_E_TRUNCATED);
    FKD_GUARD(rd(user, 0, buf, FKD_APP_HDR_LEN));
    FKD_ENSURE(buf[0] == FKD_APP_MAGIC, FKD_E_PARSE);
    FKD_ENSURE(buf[1] >= 1 && buf[1] <= FKD_APP_MAX_SEGMENTS, FKD_E_PARSE);
    out->segments = buf[1];
    out->chip_id = fkd_load_le16(buf + 12);
    /* hash_appended: 1 appends a SHA-256; any other non-zero value is not a valid header. */
    FKD_ENSURE(buf[23] <= 1, FKD_E_PARSE);
    out->hash_appended = buf[23];
    FKD_ENSURE(fkd_mbedtls_sha256_starts(&sha) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(fkd_mbedtls_sha256_update(&sha, buf, FKD_APP_HDR_LEN) == 0, FKD_E_CRYPTO);

    uint8_t csum = 0xEF; /* ESP_ROM_CHECKSUM_INITIAL */
    uint32_t pos = FKD_APP_HDR_LEN;
    for (unsigned seg = 0; seg < out->segments; seg++) {
        FKD_ENSURE(max_len - pos >= FKD_APP_SEG_HDR_LEN, FKD_E_TRUNCATED);
        uint8_t sh[FKD_APP_SEG_HDR_LEN];
        FKD_GUARD(rd(user, pos, sh, sizeof sh));
        FKD_ENSURE(fkd_mbedtls_sha256_update(&sha, sh, sizeof sh) == 0, FKD_E_CRYPTO);
        pos += FKD_APP_SEG_HDR_LEN;
        uint32_t dlen = fkd_load_le32(sh + 4);
        FKD_ENSURE(dlen <= max_len - pos, FKD_E_TRUNCATED); /* not pos + dlen: may wrap */
        if (seg == 0) {
            /* An app (not a loader) opens with its description. */
            FKD_ENSURE(dlen >= FKD_APP_DESC_LEN, FKD_E_PARSE);
        }
        uint32_t done = 0;
        while (done < dlen) {
            size_t n = dlen - done < CHUNK ? dlen - done : CHUNK;
            FKD_GUARD(rd(user, pos + done, buf, n));
            if (seg == 0 && done == 0) {
                /* CHUNK >= FKD_APP_DESC_LEN, and dlen >= it: the description is in buf. */
                FKD_ENSURE(fkd_load_le32(buf) == FKD_APP_DESC_MAGIC, FKD_E_PARSE);
                out->secure_version = fkd_load_le32(buf + 4);
                copy_str(out->version, sizeof out->version, buf + 16, 32);
                copy_str(out->project_name, sizeof out->project_name, buf + 48, 32);
                copy_str(out->time, sizeof out->time, buf + 80, 16);
                copy_str(out->date, sizeof out->date, buf + 96, 16);
                copy_str(out->idf_ver, sizeof out->idf_ver, buf + 112, 32);
            }
            for (size_t i = 0; i < n; i++) {
                csum ^= buf[i];
            }
            FKD_ENSURE(fkd_mbedtls_sha256_update(&sha, buf, n) == 0, FKD_E_CRYPTO);
            done += (uint32_t)n;
        }
        pos += dlen;
    }
    /* Padding: the checksum byte sits at the last byte of a 16-byte block. */
    uint32_t pad = 15u - (pos % 16u);
    FKD_ENSURE(max_len - pos >= pad + 1u, FKD_E_TRUNCATED);
    FKD_GUARD(rd(user, pos, buf, pad + 1u));
    FKD_ENSURE(fkd_mbedtls_sha256_update(&sha, buf, pad + 1u) == 0, FKD_E_CRYPTO);
    pos += pad + 1u;
    FKD_ENSURE(buf[pad] == csum, FKD_E_CRC);
    if (out->hash_appended) {
        FKD_ENSURE(max_len - pos >= 32u, FKD_E_TRUNCATED);
        FKD_GUARD(rd(user, pos, buf, 32));
        FKD_ENSURE(fkd_mbedtls_sha256_finish(&sha, hash) == 0, FKD_E_CRYPTO);
        FKD_ENSURE(memcmp(hash, buf, 32) == 0, FKD_E_CRC); /* public data */
        memcpy(out->sha256, hash, sizeof out->sha256); /* reported as app_sha256 */
        pos += 32u;
    }
    out->image_len = pos;
    rc = FKD_OK;
out:
    mbedtls_sha256_free(&sha);
    return rc;
}

struct buf_src {
    const uint8_t *p;
    size_t len;
};

static enum fkd_err buf_read(void *user, uint32_t off, void *dst, size_t len) {
    const struct buf_src *s = user;
    if (off > s->len || len > s->len - off) {
        return FKD_E_TRUNCATED;
    }
    memcpy(dst, s->p + off, len);
    return FKD_OK;
}

enum fkd_err fkd_app_check_buf(const uint8_t *buf, size_t len, struct fkd_app_info *out) {
    struct buf_src s = {buf, len};
    uint32_t max = len > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)len;
    if (buf == NULL) {
        memset(out, 0, sizeof *out);
        return FKD_E_ARG;
    }
    return fkd_app_check(buf_read, &s, max, out);
}
