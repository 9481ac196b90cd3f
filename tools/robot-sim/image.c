/* `robot-sim flash-image create`: a blank chip image with the partition table at 0x8000 and,
 * optionally, an NVS image and an nvs_keys image at their partitions' offsets. The table is
 * encoded by the host library (fleetkey/partition.h: partitions.csv, or its default layout)
 * and read back with the device's reader before anything is written, so both agree. */
#include "robot_sim.h"

#include "fleetkey/partition.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int robot_sim_parse_size(const char *s, uint32_t *out) {
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-') {
        return 0;
    }
    unsigned long long v = strtoull(s, &end, 0);
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') {
        mul = 1024;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        mul = 1024 * 1024;
        end++;
    }
    if (*end != '\0' || v == 0 || v > 0xFFFFFFFFull / mul) {
        return 0;
    }
    *out = (uint32_t)(v * mul);
    return 1;
}

static void image_usage(FILE *f) {
    fputs("usage: robot-sim flash-image create --out FILE [--size 4M] [--partitions CSV]\n"
          "                 [--nvs NVS.bin] [--nvs-keys NVS_KEYS.bin]\n"
          "  --size        flash size (default 4M; K/M suffixes or 0x hex)\n"
          "  --partitions  partitions.csv (default: the built-in two-OTA layout with nvs 0x6000\n"
          "                and an encrypted nvs_keys partition)\n"
          "  --nvs         image for the data/nvs partition (e.g. from provision-keys nvs)\n"
          "  --nvs-keys    image for the data/nvs_keys partition\n",
          f);
}

/* Reads a whole file (at most max bytes). */
static uint8_t *slurp(const char *path, size_t max, size_t *len) {
    uint8_t *buf = NULL;
    if (fk_file_read(path, max, &buf, len, NULL) != FK_OK) {
        return NULL;
    }
    return buf;
}

int robot_sim_image_put(struct fkd_flash *flash, const struct fkd_part_table *t, uint8_t subtype,
                        const char *what, const char *name, const uint8_t *img, size_t len,
                        int verbose) {
    const struct fkd_part *p = fkd_part_find(t, FKD_PART_DATA, subtype, NULL);
    if (p == NULL) {
        fprintf(stderr, "robot-sim: the partition table has no data/%s partition for %s\n", what,
                name);
        return 2;
    }
    if (len == 0 || len > p->size) {
        fprintf(stderr, "robot-sim: %s: %zu bytes do not fit partition %s (0x%x bytes)\n", name,
                len, p->label, (unsigned)p->size);
        return 2;
    }
    if ((subtype == FKD_PART_SUB_NVS || subtype == FKD_PART_SUB_NVS_KEYS) &&
        len % FKD_FLASH_SECTOR != 0) {
        /* NVS is made of whole 4 KiB pages (nvs_keys of one): anything else is truncated or
         * not an NVS image, and a robot booting it would lose its credentials. */
        fprintf(stderr,
                "robot-sim: %s: %zu bytes: expected an %s image of whole %u-byte pages "
                "(truncated?)\n",
                name, len, what, FKD_FLASH_SECTOR);
        return 2;
    }
    if (fkd_flash_write(flash, p->offset, img, len) != FKD_OK) {
        fprintf(stderr, "robot-sim: cannot write %s into the image\n", name);
        return 4;
    }
    if (verbose) {
        fprintf(stderr, "robot-sim: %s -> %s at 0x%x (%zu bytes)\n", name, p->label,
                (unsigned)p->offset, len);
    }
    return 0;
}

int robot_sim_image_put_file(struct fkd_flash *flash, const struct fkd_part_table *t,
                             uint8_t subtype, const char *what, const char *path, int verbose) {
    if (fkd_part_find(t, FKD_PART_DATA, subtype, NULL) == NULL) {
        fprintf(stderr, "robot-sim: the partition table has no data/%s partition for %s\n", what,
                path);
        return 2;
    }
    size_t len = 0;
    uint8_t *img = slurp(path, 16u * 1024u * 1024u, &len);
    if (img == NULL) {
        fprintf(stderr, "robot-sim: %s: cannot read\n", path);
        return 2;
    }
    int code = robot_sim_image_put(flash, t, subtype, what, path, img, len, verbose);
    fk_wipe(img, len);
    free(img);
    return code;
}

int robot_sim_image_table(const char *csv_text, size_t csv_len, const char *csv_name, uint32_t size,
                          uint8_t *table, size_t *tlen, struct fkd_part_table *dt) {
    static struct fk_partition_table ht; /* large; callers run one at a time */
    struct fk_diag diag;
    fk_diag_init(&diag);
    enum fk_err hrc;
    if (csv_text != NULL) {
        hrc = fk_partition_csv_parse(csv_text, csv_len, csv_name, &ht, &diag);
    } else {
        hrc = fk_partition_csv_parse(fk_partition_default_csv, strlen(fk_partition_default_csv),
                                     "default partitions", &ht, &diag);
    }
    char msg[1024];
    if (hrc != FK_OK) {
        fk_diag_format(&diag, msg, sizeof msg);
        fprintf(stderr, "robot-sim: %s\n", msg);
        return 2;
    }
    if (fk_partition_encode(&ht, table, FK_PARTITION_TABLE_SIZE, tlen) != FK_OK) {
        fprintf(stderr, "robot-sim: cannot encode the partition table\n");
        return 2;
    }
    enum fkd_err rc = fkd_part_parse(table, *tlen, size, dt);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: partition table does not fit a %u-byte flash (%s)\n",
                (unsigned)size, fkd_strerror(rc));
        return 2;
    }
    return 0;
}

int robot_sim_image(int argc, char **argv) {
    const char *out = NULL, *csv = NULL, *nvs = NULL, *keys = NULL;
    uint32_t size = FKD_FLASH_DEFAULT_SIZE;
    if (argc < 1 || strcmp(argv[0], "create") != 0) {
        image_usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            image_usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "robot-sim: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--out") == 0) {
            out = v;
        } else if (strcmp(a, "--partitions") == 0) {
            csv = v;
        } else if (strcmp(a, "--nvs") == 0) {
            nvs = v;
        } else if (strcmp(a, "--nvs-keys") == 0) {
            keys = v;
        } else if (strcmp(a, "--size") == 0) {
            if (!robot_sim_parse_size(v, &size) || size % FKD_FLASH_SECTOR != 0 ||
                size < 0x10000u || size > 16u * 1024u * 1024u) {
                fprintf(stderr, "robot-sim: --size %s: expected 64K..16M, a multiple of 4K\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "robot-sim: unknown option %s\n", a);
            return 2;
        }
    }
    if (out == NULL) {
        image_usage(stderr);
        return 2;
    }

    /* The table, from partitions.csv or the built-in layout. */
    uint8_t table[FK_PARTITION_TABLE_SIZE];
    size_t tlen = 0;
    static struct fkd_part_table dt;
    uint8_t *text = NULL;
    size_t text_len = 0;
    if (csv != NULL) {
        text = slurp(csv, 1024u * 1024u, &text_len);
        if (text == NULL) {
            fprintf(stderr, "robot-sim: %s: cannot read\n", csv);
            return 2;
        }
    }
    int tcode = robot_sim_image_table((const char *)text, text_len, csv, size, table, &tlen, &dt);
    free(text);
    if (tcode != 0) {
        return tcode;
    }

    /* Built under a temporary name and renamed over OUT only when complete: a refused input
     * leaves an existing OUT byte for byte as it was. */
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", out) >= sizeof tmp) {
        fprintf(stderr, "robot-sim: %s: path too long\n", out);
        return 2;
    }
    static struct fkd_flash_file ff;
    struct fkd_flash flash;
    enum fkd_err rc = fkd_flash_file_open(&ff, tmp, 1, size, &flash);
    if (rc != FKD_OK) {
        fprintf(stderr, "robot-sim: %s: cannot create (%s)\n", tmp, fkd_strerror(rc));
        return 4;
    }
    int code = 0;
    if (fkd_flash_write(&flash, FKD_PART_TABLE_OFFSET, table, tlen) != FKD_OK) {
        code = 4;
    }
    if (code == 0 && nvs != NULL) {
        code = robot_sim_image_put_file(&flash, &dt, FKD_PART_SUB_NVS, "nvs", nvs, 1);
    }
    if (code == 0 && keys != NULL) {
        code = robot_sim_image_put_file(&flash, &dt, FKD_PART_SUB_NVS_KEYS, "nvs_keys", keys, 1);
    }
    if (fkd_flash_file_close(&ff) != FKD_OK && code == 0) {
        code = 4;
    }
    if (code == 0 && rename(tmp, out) != 0) {
        fprintf(stderr, "robot-sim: %s: cannot rename %s over it\n", out, tmp);
        code = 4;
    }
    if (code == 0) {
        fprintf(stderr, "robot-sim: %s: %u bytes, %u partitions\n", out, (unsigned)size, dt.count);
    } else {
        remove(tmp); /* never leave a half-made image behind */
    }
    return code;
}
