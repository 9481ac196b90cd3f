/* ESP32 app image parser.
 *
 * The layout is ESP-IDF's (components/bootloader_support/include/esp_app_format.h) as esptool's
 * elf2image writes it:
 *   esp_image_header_t (24 bytes) | segment_count x (8-byte header + data) |
 *   zero padding so that the checksum byte is the last byte of a 16-byte block | checksum |
 *   optional SHA-256 of everything before it (hash_appended).
 * The parser checks each length against what remains before touching the bytes, reports the
 * offset of the first problem, and copies nothing but the app description strings, which are
 * not guaranteed to be NUL-terminated in the image. */
#include "fleetkey/ota.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static enum fk_err fail_at(struct fk_diag *d, enum fk_err rc, size_t off, const char *fmt, ...)
    FK_PRINTF(4, 5);

static enum fk_err fail_at(struct fk_diag *d, enum fk_err rc, size_t off, const char *fmt, ...) {
    if (d != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
        d->offset = (long long)off;
    }
    return rc;
}

static void copy_str(char *dst, size_t dst_size, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; i < n && i + 1 < dst_size && src[i] != '\0'; i++) {
        dst[i] = (char)src[i];
    }
    dst[i] = '\0';
}

static void parse_app_desc(const uint8_t *p, struct fk_ota_app_desc *out) {
    /* esp_app_desc_t: magic_word, secure_version, reserv1[2], version[32], project_name[32],
     * time[16], date[16], idf_ver[32], app_elf_sha256[32], ... (256 bytes in all). */
    out->secure_version = fk_load_le32(p + 4);
    copy_str(out->version, sizeof out->version, p + 16, 32);
    copy_str(out->project_name, sizeof out->project_name, p + 48, 32);
    copy_str(out->time, sizeof out->time, p + 80, 16);
    copy_str(out->date, sizeof out->date, p + 96, 16);
    copy_str(out->idf_ver, sizeof out->idf_ver, p + 112, 32);
    memcpy(out->app_elf_sha256, p + 144, 32);
}

enum fk_err fk_ota_image_parse(const uint8_t *buf, size_t len, struct fk_ota_image *out,
                               struct fk_diag *diag) {
    memset(out, 0, sizeof *out);
    if (buf == NULL && len > 0) {
        return FK_E_ARG;
    }
    if (len < FK_OTA_IMAGE_HDR_LEN) {
        return fail_at(diag, FK_E_TRUNCATED, len,
                       "app image: %zu bytes, the image header alone needs %u", len,
                       FK_OTA_IMAGE_HDR_LEN);
    }
    /* esp_app_format.h: "#define ESP_IMAGE_HEADER_MAGIC 0xE9" */
    if (buf[0] != FK_OTA_IMAGE_MAGIC) {
        return fail_at(diag, FK_E_PARSE, 0, "app image: magic 0x%02x, expected 0xe9", buf[0]);
    }
    out->segment_count = buf[1];
    out->spi_mode = buf[2];
    out->spi_speed = buf[3] & 0x0f;
    out->spi_size = (uint8_t)(buf[3] >> 4);
    out->entry_addr = fk_load_le32(buf + 4);
    out->chip_id = fk_load_le16(buf + 12);
    out->min_chip_rev_full = fk_load_le16(buf + 15);
    out->max_chip_rev_full = fk_load_le16(buf + 17);
    /* esp_image_header_t.hash_appended: "If 1, a SHA256 digest 'simple hash' (of the entire
     * image) is appended after the checksum." Anything but 0 or 1 is not an image we know. */
    if (buf[23] > 1) {
        return fail_at(diag, FK_E_PARSE, 23, "app image: hash_appended is %u, expected 0 or 1",
                       buf[23]);
    }
    out->hash_appended = buf[23];
    /* "#define ESP_IMAGE_MAX_SEGMENTS 16" */
    if (out->segment_count == 0 || out->segment_count > FK_OTA_IMAGE_MAX_SEGMENTS) {
        return fail_at(diag, FK_E_PARSE, 1, "app image: %u segments, expected 1 to %u",
                       out->segment_count, FK_OTA_IMAGE_MAX_SEGMENTS);
    }

    size_t pos = FK_OTA_IMAGE_HDR_LEN;
    uint8_t sum = FK_OTA_CHECKSUM_SEED;
    for (unsigned i = 0; i < out->segment_count; i++) {
        if (len - pos < FK_OTA_SEGMENT_HDR_LEN) {
            return fail_at(diag, FK_E_TRUNCATED, pos,
                           "app image: segment %u header needs 8 bytes, %zu left", i, len - pos);
        }
        struct fk_ota_segment *seg = &out->segments[i];
        seg->load_addr = fk_load_le32(buf + pos);
        seg->len = fk_load_le32(buf + pos + 4);
        pos += FK_OTA_SEGMENT_HDR_LEN;
        /* Compare against what remains (never pos + len, which may wrap). */
        if (seg->len > len - pos) {
            return fail_at(diag, FK_E_TRUNCATED, pos - 4,
                           "app image: segment %u length %u runs past the end (%zu bytes left)", i,
                           (unsigned)seg->len, len - pos);
        }
        /* The bootloader rejects a segment whose length is not a multiple of 4
         * (esp_image_format.c, verify_segment_header: "unaligned segment length"). */
        if (seg->len % 4 != 0) {
            return fail_at(diag, FK_E_PARSE, pos - 4,
                           "app image: segment %u length %u is not a multiple of 4", i,
                           (unsigned)seg->len);
        }
        seg->offset = pos;
        seg->data = buf + pos;
        for (uint32_t k = 0; k < seg->len; k++) {
            sum ^= seg->data[k];
        }
        pos += seg->len;
    }

    /* esptool: the checksum byte sits at the end of the next 16-byte block (zero padding
     * before it), so that the checksummed image length is a multiple of 16. */
    size_t ck_pos = pos + (15 - pos % 16);
    if (ck_pos >= len) {
        return fail_at(diag, FK_E_TRUNCATED, len,
                       "app image: checksum byte expected at offset 0x%zx, image ends at 0x%zx",
                       ck_pos, len);
    }
    out->checksum = buf[ck_pos];
    if (out->checksum != sum) {
        return fail_at(diag, FK_E_CRC, ck_pos,
                       "app image: checksum byte 0x%02x, segments give 0x%02x", out->checksum, sum);
    }
    size_t end = ck_pos + 1;
    if (out->hash_appended) {
        if (len - end < 32) {
            return fail_at(diag, FK_E_TRUNCATED, end,
                           "app image: appended SHA-256 needs 32 bytes, %zu left", len - end);
        }
        uint8_t md[32];
        unsigned mdlen = 0;
        if (EVP_Digest(buf, end, md, &mdlen, EVP_sha256(), NULL) != 1) {
            return FK_E_CRYPTO;
        }
        /* A public hash, so memcmp's early exit leaks nothing worth having. */
        if (memcmp(md, buf + end, 32) != 0) {
            return fail_at(diag, FK_E_CRC, end,
                           "app image: appended SHA-256 does not match the image");
        }
        out->sha256 = buf + end;
        end += 32;
    }
    out->image_len = end;

    /* The app description is the first thing in the first (DROM) segment of an app. */
    const struct fk_ota_segment *first = &out->segments[0];
    if (first->len >= FK_OTA_APP_DESC_LEN && fk_load_le32(first->data) == FK_OTA_APP_DESC_MAGIC) {
        out->has_app_desc = 1;
        parse_app_desc(first->data, &out->app_desc);
    }
    return FK_OK;
}
