/* mkappimage: see mkappimage.h. Built as a library for the unit tests and, with
 * MKAPPIMAGE_MAIN, as the command-line tool
 *   mkappimage [--version V] [--project P] [--secure-version N] [--chip ID] [--segments N]
 *              [--segment-len N] [--no-hash] [--seed N] OUT.bin
 * Layout as esptool's elf2image writes it (esp_app_format.h). */
#include "mkappimage.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_LEN 24u
#define SEG_HDR_LEN 8u
#define DESC_LEN 256u

void mkapp_defaults(struct mkapp_opts *o) {
    memset(o, 0, sizeof *o);
    o->version = "1.0.0";
    o->project_name = "robot";
    o->chip_id = 0;
    o->extra_segments = 2;
    o->segment_len = 1000;
    o->hash_appended = 1;
    o->seed = 1;
}

static uint32_t seg_len(const struct mkapp_opts *o) {
    return (o->segment_len + 3u) & ~3u;
}

size_t mkapp_size(const struct mkapp_opts *o) {
    size_t n = HDR_LEN + SEG_HDR_LEN + DESC_LEN;
    n += (size_t)o->extra_segments * (SEG_HDR_LEN + seg_len(o));
    n += 16 - n % 16; /* zero padding + checksum byte ends a 16-byte block */
    return n + (o->hash_appended ? 32u : 0u);
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

size_t mkapp_build(const struct mkapp_opts *o, uint8_t *out, size_t out_size) {
    size_t total = mkapp_size(o);
    if (o->extra_segments > 15 || out_size < total || strlen(o->version) > 31 ||
        strlen(o->project_name) > 31) {
        return 0;
    }
    memset(out, 0, total);
    /* esp_image_header_t */
    out[0] = 0xE9;
    out[1] = (uint8_t)(1 + o->extra_segments);
    out[2] = 2;    /* SPI mode DIO */
    out[3] = 0x20; /* 4 MB flash, 40 MHz */
    put32(out + 4, 0x40080400u);
    out[8] = 0xEE; /* wp_pin: disabled */
    out[12] = (uint8_t)o->chip_id;
    out[13] = (uint8_t)(o->chip_id >> 8);
    out[17] = 0xFF; /* max_chip_rev_full: any */
    out[18] = 0xFF;
    out[23] = o->hash_appended ? 1 : 0;

    uint8_t sum = 0xEF;
    size_t pos = HDR_LEN;
    /* Segment 0: DROM, starting with esp_app_desc_t. */
    put32(out + pos, 0x3F400020u);
    put32(out + pos + 4, DESC_LEN);
    pos += SEG_HDR_LEN;
    uint8_t *d = out + pos;
    put32(d, 0xABCD5432u);
    put32(d + 4, o->secure_version);
    memcpy(d + 16, o->version, strlen(o->version));
    memcpy(d + 48, o->project_name, strlen(o->project_name));
    memcpy(d + 80, "12:00:00", 8);
    memcpy(d + 96, "Jan  1 2026", 11);
    memcpy(d + 112, "v5.3-test", 9);
    for (unsigned i = 0; i < 32; i++) {
        d[144 + i] = (uint8_t)(o->seed + i);
    }
    for (unsigned i = 0; i < DESC_LEN; i++) {
        sum ^= d[i];
    }
    pos += DESC_LEN;
    uint32_t x = o->seed * 2654435761u + 1;
    for (unsigned s = 0; s < o->extra_segments; s++) {
        put32(out + pos, 0x40080000u + s * 0x10000u);
        put32(out + pos + 4, seg_len(o));
        pos += SEG_HDR_LEN;
        for (uint32_t i = 0; i < seg_len(o); i++) {
            x = x * 1103515245u + 12345u;
            out[pos + i] = (uint8_t)(x >> 16);
            sum ^= out[pos + i];
        }
        pos += seg_len(o);
    }
    pos += 15 - pos % 16;
    out[pos++] = sum;
    if (o->hash_appended) {
        unsigned n = 0;
        if (EVP_Digest(out, pos, out + pos, &n, EVP_sha256(), NULL) != 1) {
            return 0;
        }
        pos += 32;
    }
    return pos;
}

#ifdef MKAPPIMAGE_MAIN
static int num(const char *s, uint32_t *v) {
    char *end = NULL;
    unsigned long x = strtoul(s, &end, 0);
    if (end == s || *end != '\0' || x > 0xFFFFFFFFul) {
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

int main(int argc, char **argv) {
    struct mkapp_opts o;
    const char *outp = NULL;
    uint32_t v = 0;
    mkapp_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-hash") == 0) {
            o.hash_appended = 0;
        } else if (strcmp(a, "--version") == 0 && val) {
            o.version = val;
            i++;
        } else if (strcmp(a, "--project") == 0 && val) {
            o.project_name = val;
            i++;
        } else if (a[0] == '-' && a[1] == '-' && val && num(val, &v) == 0) {
            if (strcmp(a, "--secure-version") == 0) {
                o.secure_version = v;
            } else if (strcmp(a, "--chip") == 0) {
                o.chip_id = (uint16_t)v;
            } else if (strcmp(a, "--segments") == 0) {
                o.extra_segments = v;
            } else if (strcmp(a, "--segment-len") == 0) {
                o.segment_len = v;
            } else if (strcmp(a, "--seed") == 0) {
                o.seed = v;
            } else {
                fprintf(stderr, "mkappimage: unknown option %s\n", a);
                return 2;
            }
            i++;
        } else if (a[0] != '-' && outp == NULL) {
            outp = a;
        } else {
            fprintf(stderr, "usage: mkappimage [--version V] [--project P] [--secure-version N] "
                            "[--chip ID] [--segments N] [--segment-len N] [--no-hash] "
                            "[--seed N] OUT.bin\n");
            return 2;
        }
    }
    if (outp == NULL) {
        fprintf(stderr, "mkappimage: no output file\n");
        return 2;
    }
    size_t n = mkapp_size(&o);
    uint8_t *buf = malloc(n);
    if (buf == NULL || mkapp_build(&o, buf, n) != n) {
        fprintf(stderr, "mkappimage: bad options\n");
        free(buf);
        return 2;
    }
    FILE *f = fopen(outp, "wb");
    if (f == NULL || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "mkappimage: cannot write %s\n", outp);
        free(buf);
        return 1;
    }
    free(buf);
    return 0;
}
#endif
