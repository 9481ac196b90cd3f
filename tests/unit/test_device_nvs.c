/* Unit tests of the device NVS runtime (device/src/nvs/nvs.c) and the NOR flash model.
 *
 * - Every plain image of tests/vectors/nvs (made by ESP-IDF's nvs_partition_gen) mounts with
 *   nothing to repair and every CSV row reads back equal; the encrypted images with their
 *   nvs_keys; GEN's namespace-revisit bug is seen as GEN wrote it.
 * - Writes read back, survive a remount, replace values of another type, erase keys.
 * - Garbage collection: one key written 5000 times into a 0x6000 partition.
 * - The power-cut sweep: a sequence of operations is cut at every program operation
 *   N = 1..total (clean cut and torn write); after a remount every key holds its old or its
 *   new value, never anything else, and the store stays writable. */
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fleetkey/common.h"
#include "fleetkey/nvs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char vdir[4096];

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)sz + 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    assert_int_equal(got, (size_t)sz);
    buf[sz] = 0;
    *len = (size_t)sz;
    return buf;
}

static uint8_t *read_vec(const char *name, size_t *len) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", vdir, name);
    uint8_t *b = read_file(path, len);
    if (b == NULL) {
        fail_msg("cannot read %s", path);
    }
    return b;
}

/* ---- the CSVs ---------------------------------------------------------------------------- */

/* Splits one CSV line into up to 4 fields (RFC 4180 quoting, "" inside quotes). */
static int csv_fields(const char *line, char f[4][16384]) {
    int nf = 0;
    const char *p = line;
    for (;;) {
        size_t o = 0;
        if (nf == 4) {
            return -1;
        }
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0') {
                    return -1;
                }
                if (*p == '"' && p[1] == '"') {
                    f[nf][o++] = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    f[nf][o++] = *p++;
                }
            }
        } else {
            while (*p != ',' && *p != '\0' && *p != '\n' && *p != '\r') {
                f[nf][o++] = *p++;
            }
        }
        f[nf][o] = '\0';
        nf++;
        if (*p != ',') {
            break;
        }
        p++;
    }
    for (int i = nf; i < 4; i++) {
        f[i][0] = '\0';
    }
    return nf;
}

static size_t strip_ws(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] != '\n' && s[i] != '\r' && s[i] != ' ' && s[i] != '\t') {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

/* Checks every row of csv against the mounted partition. ns_override: a namespace name every
 * item is looked up in instead (NULL: the CSV's). Returns rows checked. */
static int check_csv(struct fkd_nvs *n, const char *csv) {
    size_t len;
    char *text = (char *)read_vec(csv, &len);
    static char f[4][16384];
    static uint8_t want[16384];
    static uint8_t got[16384];
    char ns[32] = "";
    int rows = 0;
    char *save = NULL;
    int first = 1;
    for (char *line = text; line != NULL && *line; line = save) {
        char *nl = strchr(line, '\n');
        save = nl != NULL ? nl + 1 : NULL;
        if (nl != NULL) {
            *nl = '\0';
        }
        if (first) {
            first = 0;
            continue;
        }
        assert_true(csv_fields(line, f) >= 2);
        if (strcmp(f[1], "namespace") == 0) {
            assert_true(strlen(f[0]) < sizeof ns);
            memcpy(ns, f[0], strlen(f[0]) + 1);
            continue;
        }
        const char *key = f[0];
        const char *enc = f[2];
        char *val = f[3];
        size_t wlen = 0;
        int is_str = 0;
        if (strcmp(f[1], "file") == 0) {
            size_t flen;
            uint8_t *fb = read_vec(val, &flen);
            assert_true(flen < sizeof f[3]);
            memcpy(val, fb, flen);
            val[flen] = '\0';
            free(fb);
            if (strcmp(enc, "binary") == 0) {
                memcpy(want, val, flen);
                wlen = flen;
                enc = "raw";
            }
        }
        if (strcmp(enc, "string") == 0) {
            is_str = 1;
        } else if (strcmp(enc, "hex2bin") == 0) {
            size_t hl = strip_ws(val);
            assert_int_equal(fk_hex_decode(val, hl, want, sizeof want, &wlen, NULL), FK_OK);
        } else if (strcmp(enc, "base64") == 0) {
            assert_int_equal(fk_base64_decode(val, strlen(val), want, sizeof want, &wlen), FK_OK);
        } else if (strcmp(enc, "raw") == 0) {
            /* already in want */
        } else {
            struct fkd_nvs_int iv;
            assert_int_equal(fkd_nvs_get_int(n, ns, key, &iv), FKD_OK);
            if (enc[0] == 'u') {
                assert_int_equal(iv.u, strtoull(val, NULL, 10));
            } else {
                assert_int_equal(iv.s, strtoll(val, NULL, 10));
            }
            rows++;
            continue;
        }
        size_t glen = 0;
        if (is_str) {
            assert_int_equal(fkd_nvs_get_str(n, ns, key, (char *)got, sizeof got, &glen), FKD_OK);
            assert_int_equal(glen, strlen(val));
            assert_memory_equal(got, val, glen);
        } else {
            assert_int_equal(fkd_nvs_get_blob(n, ns, key, got, sizeof got, &glen), FKD_OK);
            assert_int_equal(glen, wlen);
            assert_memory_equal(got, want, wlen);
        }
        rows++;
    }
    free(text);
    return rows;
}

struct mem_dev {
    uint8_t *buf;
    struct fkd_flash_mem mem;
    struct fkd_flash flash;
};

static void dev_from_image(struct mem_dev *d, const uint8_t *img, size_t len) {
    d->buf = malloc(len);
    assert_non_null(d->buf);
    memcpy(d->buf, img, len);
    fkd_flash_mem_init(&d->mem, d->buf, (uint32_t)len, &d->flash);
}

static void vector_case(const char *bin, const char *csv, const char *keys, int expect_rows) {
    size_t len;
    uint8_t *img = read_vec(bin, &len);
    uint8_t key[FKD_NVS_XTS_KEY_LEN];
    const uint8_t *kp = NULL;
    if (keys != NULL) {
        size_t klen;
        uint8_t *kb = read_vec(keys, &klen);
        assert_int_equal(fkd_nvs_keys_parse(kb, klen, key), FKD_OK);
        free(kb);
        kp = key;
    }
    struct mem_dev d;
    dev_from_image(&d, img, len);
    struct fkd_nvs n;
    struct fkd_nvs_stats st;
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, (uint32_t)len, kp, &st), FKD_OK);
    assert_int_equal(st.repaired, 0);
    assert_memory_equal(d.buf, img, len); /* a clean image is not touched by mount */
    assert_int_equal(check_csv(&n, csv), expect_rows);
    fkd_nvs_free(&n);
    free(d.buf);
    free(img);
}

static void nvs_reads_v2_plain(void **state) {
    (void)state;
    vector_case("v2_plain.bin", "v2.csv", NULL, 7);
}
static void nvs_reads_v2_encrypted(void **state) {
    (void)state;
    vector_case("v2_enc.bin", "v2.csv", "nvs_keys_1122.bin", 7);
}
static void nvs_reads_v1_plain(void **state) {
    (void)state;
    vector_case("v1_plain.bin", "v1.csv", NULL, 6);
}
static void nvs_reads_v1_encrypted(void **state) {
    (void)state;
    vector_case("v1_enc.bin", "v1.csv", "nvs_keys_1122.bin", 6);
}
static void nvs_reads_prov(void **state) {
    (void)state;
    vector_case("prov_plain.bin", "prov.csv", NULL, 5);
    vector_case("prov_enc.bin", "prov.csv", "nvs_keys_prov.bin", 5);
}
static void nvs_reads_edge(void **state) {
    (void)state;
    vector_case("edge_plain.bin", "edge.csv", NULL, 30);
    vector_case("edge_enc.bin", "edge.csv", "nvs_keys_1122.bin", 30);
}
static void nvs_reads_boundary(void **state) {
    (void)state;
    vector_case("boundary_plain.bin", "boundary.csv", NULL, 24);
    vector_case("boundary_enc.bin", "boundary.csv", "nvs_keys_prov.bin", 24);
}
static void nvs_reads_v1_edge_and_small_ro(void **state) {
    (void)state;
    vector_case("v1_edge.bin", "v1_edge.csv", NULL, 6);
    vector_case("small_ro.bin", "small.csv", NULL, 3);
}

/* GEN wrote `c` with the index of `second` (README: a generator bug); the device reads what
 * is on flash, so `c` is found under `second` and not under `first`. */
static void nvs_reads_ns_revisit_as_gen_wrote_it(void **state) {
    (void)state;
    size_t len;
    uint8_t *img = read_vec("ns_revisit.bin", &len);
    struct mem_dev d;
    dev_from_image(&d, img, len);
    struct fkd_nvs n;
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, (uint32_t)len, NULL, NULL), FKD_OK);
    struct fkd_nvs_int v;
    assert_int_equal(fkd_nvs_get_int(&n, "second", "c", &v), FKD_OK);
    assert_int_equal(v.u, 3);
    assert_int_equal(fkd_nvs_get_int(&n, "first", "c", &v), FKD_E_NOTFOUND);
    assert_int_equal(fkd_nvs_get_int(&n, "first", "a", &v), FKD_OK);
    assert_int_equal(v.u, 1);
    fkd_nvs_free(&n);
    free(d.buf);
    free(img);
}

static void nvs_wrong_key_reads_nothing(void **state) {
    (void)state;
    size_t len, klen;
    uint8_t *img = read_vec("prov_enc.bin", &len);
    uint8_t *kb = read_vec("nvs_keys_1122.bin", &klen); /* not the key of this image */
    uint8_t key[FKD_NVS_XTS_KEY_LEN];
    assert_int_equal(fkd_nvs_keys_parse(kb, klen, key), FKD_OK);
    struct mem_dev d;
    dev_from_image(&d, img, len);
    struct fkd_nvs n;
    struct fkd_nvs_stats st;
    uint8_t psk[64];
    size_t plen;
    /* Read-only: nothing readable, nothing written. */
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount_readonly(&n, &d.flash, 0, (uint32_t)len, key, &st), FKD_OK);
    assert_true(st.repaired > 0);
    assert_int_equal(fkd_nvs_get_blob(&n, "security", "dtls_psk", psk, sizeof psk, &plen),
                     FKD_E_NOTFOUND);
    assert_int_equal(fkd_nvs_set_str(&n, "a", "b", "c"), FKD_E_STATE);
    fkd_nvs_free(&n);
    assert_memory_equal(d.buf, img, len);
    assert_int_equal(d.mem.ops, 0);
    /* Read-write: the device treats undecryptable entries as corrupt and erases them, as
     * ESP-IDF would: the data is gone for good. */
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, (uint32_t)len, key, NULL), FKD_OK);
    assert_int_equal(fkd_nvs_get_blob(&n, "security", "dtls_psk", psk, sizeof psk, &plen),
                     FKD_E_NOTFOUND);
    fkd_nvs_free(&n);
    assert_true(memcmp(d.buf, img, len) != 0);
    free(d.buf);
    free(kb);
    free(img);
}

static void nvs_keys_parse_rejects_bad_crc_and_blank(void **state) {
    (void)state;
    size_t klen;
    uint8_t *kb = read_vec("nvs_keys_prov.bin", &klen);
    uint8_t key[FKD_NVS_XTS_KEY_LEN];
    assert_int_equal(fkd_nvs_keys_parse(kb, klen, key), FKD_OK);
    assert_int_equal(key[0], 0xa0);
    assert_int_equal(key[32], 0xc0);
    assert_int_equal(fkd_nvs_keys_parse(kb, 67, key), FKD_E_TRUNCATED);
    kb[10] ^= 1;
    assert_int_equal(fkd_nvs_keys_parse(kb, klen, key), FKD_E_CRC);
    memset(kb, 0xFF, klen);
    assert_int_equal(fkd_nvs_keys_parse(kb, klen, key), FKD_E_NOTFOUND);
    free(kb);
}

/* A flipped bit in a written entry is found at mount and that entry alone is erased. */
static void nvs_mount_erases_entry_with_bad_crc(void **state) {
    (void)state;
    size_t len;
    uint8_t *img = read_vec("prov_plain.bin", &len);
    struct mem_dev d;
    dev_from_image(&d, img, len);
    /* Page 0 entries: 0 ns security, 1 ns wifi?, ... find psk_id's header by key. */
    size_t at = 0;
    for (size_t off = 64; off < 4096; off += 32) {
        if (memcmp(d.buf + off + 8, "psk_id", 7) == 0) {
            at = off;
            break;
        }
    }
    assert_true(at != 0);
    d.buf[at + 9] ^= 0x01; /* "psk_id" -> "pjk_id": entry CRC now wrong */
    struct fkd_nvs n;
    struct fkd_nvs_stats st;
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, (uint32_t)len, NULL, &st), FKD_OK);
    assert_true(st.repaired >= 1);
    char s[64];
    size_t slen;
    assert_int_equal(fkd_nvs_get_str(&n, "security", "psk_id", s, sizeof s, &slen),
                     FKD_E_NOTFOUND);
    assert_int_equal(fkd_nvs_get_str(&n, "wifi", "ssid", s, sizeof s, &slen), FKD_OK);
    assert_string_equal(s, "FleetLab-5G");
    assert_int_equal(d.mem.set_bits, 0);
    fkd_nvs_free(&n);
    free(d.buf);
    free(img);
}

/* ---- writing ----------------------------------------------------------------------------- */

static void blank_dev(struct mem_dev *d, size_t len) {
    d->buf = malloc(len);
    assert_non_null(d->buf);
    memset(d->buf, 0xFF, len);
    fkd_flash_mem_init(&d->mem, d->buf, (uint32_t)len, &d->flash);
}

static void fill(uint8_t *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
    }
}

static void nvs_writes_read_back_after_remount(void **state) {
    (void)state;
    const uint8_t *keys[2] = {NULL, NULL};
    uint8_t xk[64];
    for (int i = 0; i < 64; i++) {
        xk[i] = (uint8_t)(i * 5 + 1);
    }
    keys[1] = xk;
    for (int e = 0; e < 2; e++) {
        struct mem_dev d;
        blank_dev(&d, 0x6000);
        struct fkd_nvs n;
        fkd_nvs_init(&n);
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x6000, keys[e], NULL), FKD_OK);
        static uint8_t blob[9000], got[9000];
        fill(blob, sizeof blob, 3);
        assert_int_equal(fkd_nvs_set_str(&n, "wifi", "ssid", "FleetLab"), FKD_OK);
        assert_int_equal(fkd_nvs_set_blob(&n, "security", "dtls_psk", blob, 32), FKD_OK);
        assert_int_equal(fkd_nvs_set_blob(&n, "security", "big", blob, sizeof blob), FKD_OK);
        assert_int_equal(fkd_nvs_set_int(&n, "security", "cnt", FKD_NVS_I16, (uint64_t)-5),
                         FKD_OK);
        assert_int_equal(fkd_nvs_set_blob(&n, "security", "empty", blob, 0), FKD_OK);
        char longs[4000];
        memset(longs, 'x', sizeof longs - 1);
        longs[3999] = '\0';
        assert_int_equal(fkd_nvs_set_str(&n, "s", "long", longs), FKD_OK);
        longs[3999] = 'x';
        char toolong[4001];
        memset(toolong, 'y', 4000);
        toolong[4000] = '\0';
        assert_int_equal(fkd_nvs_set_str(&n, "s", "toolong", toolong), FKD_E_RANGE);
        assert_int_equal(fkd_nvs_set_str(&n, "s", "sixteen_chars_ab", "v"), FKD_E_ARG);
        fkd_nvs_free(&n);
        fkd_nvs_init(&n);
        struct fkd_nvs_stats st;
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x6000, keys[e], &st), FKD_OK);
        assert_int_equal(st.repaired, 0);
        char s[4001];
        size_t len;
        assert_int_equal(fkd_nvs_get_str(&n, "wifi", "ssid", s, sizeof s, &len), FKD_OK);
        assert_string_equal(s, "FleetLab");
        assert_int_equal(fkd_nvs_get_str(&n, "wifi", "ssid", s, 8, &len), FKD_E_NOSPACE);
        assert_int_equal(len, 8);
        assert_int_equal(fkd_nvs_get_blob(&n, "security", "dtls_psk", got, sizeof got, &len),
                         FKD_OK);
        assert_int_equal(len, 32);
        assert_memory_equal(got, blob, 32);
        assert_int_equal(fkd_nvs_get_blob(&n, "security", "big", got, sizeof got, &len), FKD_OK);
        assert_int_equal(len, sizeof blob);
        assert_memory_equal(got, blob, sizeof blob);
        assert_int_equal(fkd_nvs_get_blob(&n, "security", "empty", got, sizeof got, &len),
                         FKD_OK);
        assert_int_equal(len, 0);
        struct fkd_nvs_int v;
        assert_int_equal(fkd_nvs_get_int(&n, "security", "cnt", &v), FKD_OK);
        assert_int_equal(v.s, -5);
        assert_int_equal(v.type, FKD_NVS_I16);
        assert_int_equal(fkd_nvs_get_str(&n, "s", "long", s, sizeof s, &len), FKD_OK);
        assert_int_equal(len, 3999);
        assert_int_equal(fkd_nvs_get_str(&n, "security", "cnt", s, sizeof s, &len),
                         FKD_E_TYPE);
        /* Replacing with another type, and erasing. */
        assert_int_equal(fkd_nvs_set_str(&n, "security", "big", "now a string"), FKD_OK);
        assert_int_equal(fkd_nvs_get_blob(&n, "security", "big", got, sizeof got, &len),
                         FKD_E_TYPE);
        assert_int_equal(fkd_nvs_erase_key(&n, "wifi", "ssid"), FKD_OK);
        assert_int_equal(fkd_nvs_get_str(&n, "wifi", "ssid", s, sizeof s, &len),
                         FKD_E_NOTFOUND);
        assert_int_equal(fkd_nvs_erase_key(&n, "wifi", "ssid"), FKD_E_NOTFOUND);
        fkd_nvs_free(&n);
        fkd_nvs_init(&n);
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x6000, keys[e], &st), FKD_OK);
        assert_int_equal(st.repaired, 0); /* no stale chunk was left behind */
        assert_int_equal(fkd_nvs_get_str(&n, "security", "big", s, sizeof s, &len), FKD_OK);
        assert_string_equal(s, "now a string");
        assert_int_equal(d.mem.set_bits, 0); /* never rewrote a programmed bit */
        if (e == 1) {
            /* Encrypted: the plaintext is nowhere on flash. */
            for (size_t i = 0; i + 8 <= 0x6000; i++) {
                assert_true(memcmp(d.buf + i, "now a st", 8) != 0);
            }
        }
        fkd_nvs_free(&n);
        free(d.buf);
    }
}

/* What the device runtime writes (after many updates and garbage collections, plain and
 * encrypted) is a clean image for the host reader, which checks every CRC and length on its
 * own, and both read the same values. */
static void nvs_device_writes_pass_the_host_reader(void **state) {
    (void)state;
    struct fk_nvs_keys hk;
    for (int i = 0; i < 32; i++) {
        hk.eky[i] = (uint8_t)(0x11 + i);
        hk.tky[i] = (uint8_t)(0x77 ^ i);
    }
    uint8_t xk[64];
    memcpy(xk, hk.eky, 32);
    memcpy(xk + 32, hk.tky, 32);
    for (int e = 0; e < 2; e++) {
        struct mem_dev d;
        blank_dev(&d, 0x6000);
        struct fkd_nvs n;
        fkd_nvs_init(&n);
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x6000, e ? xk : NULL, NULL), FKD_OK);
        static uint8_t blob[6000];
        for (unsigned i = 0; i < 300; i++) {
            fill(blob, sizeof blob, i);
            assert_int_equal(fkd_nvs_set_int(&n, "cnt", "n", FKD_NVS_I32, (uint64_t)-(int)i),
                             FKD_OK);
            if (i % 20 == 0) {
                assert_int_equal(fkd_nvs_set_blob(&n, "security", "fw", blob, 4100 + i), FKD_OK);
                assert_int_equal(fkd_nvs_set_str(&n, "wifi", "ssid", i % 40 ? "a" : "bbbbbbbbb"),
                                 FKD_OK);
            }
        }
        assert_true(d.mem.erases > 0);
        struct fk_nvs_image *img = NULL;
        enum fk_err hrc = e ? fk_nvs_image_read_encrypted(d.buf, 0x6000, &hk, &img)
                            : fk_nvs_image_read(d.buf, 0x6000, &img);
        assert_non_null(img);
        for (size_t i = 0; i < fk_nvs_image_problem_count(img); i++) {
            print_message("host reader: %s\n", fk_nvs_image_problem(img, i)->reason);
        }
        assert_int_equal(hrc, FK_OK);
        const struct fk_nvs_item *it = fk_nvs_image_find(img, "cnt", "n");
        assert_non_null(it);
        assert_int_equal(it->i, -299);
        it = fk_nvs_image_find(img, "security", "fw");
        assert_non_null(it);
        fill(blob, sizeof blob, 280);
        assert_int_equal(it->len, 4100 + 280);
        assert_memory_equal(it->data, blob, it->len);
        it = fk_nvs_image_find(img, "wifi", "ssid");
        assert_non_null(it);
        assert_string_equal((const char *)it->data, "bbbbbbbbb"); /* i = 280 */
        assert_int_equal(fk_nvs_image_item_count(img), 3);
        fk_nvs_image_free(img);
        fkd_nvs_free(&n);
        free(d.buf);
    }
}

static void nvs_gc_survives_5000_updates(void **state) {
    (void)state;
    struct mem_dev d;
    blank_dev(&d, 0x6000);
    struct fkd_nvs n;
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x6000, NULL, NULL), FKD_OK);
    assert_int_equal(fkd_nvs_set_str(&n, "keep", "me", "constant"), FKD_OK);
    uint8_t blob[700];
    unsigned long erases0 = 0;
    for (unsigned i = 0; i < 5000; i++) {
        assert_int_equal(fkd_nvs_set_int(&n, "gc", "counter", FKD_NVS_U32, i), FKD_OK);
        if (i % 250 == 0) {
            fill(blob, sizeof blob, i);
            assert_int_equal(fkd_nvs_set_blob(&n, "gc", "blob", blob, sizeof blob), FKD_OK);
        }
    }
    erases0 = d.mem.ops;
    struct fkd_nvs_stats st;
    fkd_nvs_stats(&n, &st);
    assert_true(st.pages_free >= 1); /* the spare page is always kept */
    fkd_nvs_free(&n);
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x6000, NULL, &st), FKD_OK);
    assert_int_equal(st.repaired, 0);
    struct fkd_nvs_int v;
    assert_int_equal(fkd_nvs_get_int(&n, "gc", "counter", &v), FKD_OK);
    assert_int_equal(v.u, 4999);
    char s[32];
    size_t len;
    assert_int_equal(fkd_nvs_get_str(&n, "keep", "me", s, sizeof s, &len), FKD_OK);
    assert_string_equal(s, "constant");
    uint8_t got[700];
    fill(blob, sizeof blob, 4750);
    assert_int_equal(fkd_nvs_get_blob(&n, "gc", "blob", got, sizeof got, &len), FKD_OK);
    assert_memory_equal(got, blob, sizeof blob);
    assert_int_equal(d.mem.set_bits, 0);
    assert_true(erases0 > 5000);
    fkd_nvs_free(&n);
    free(d.buf);
}

static void nvs_full_partition_reports_nospace_and_stays_readable(void **state) {
    (void)state;
    struct mem_dev d;
    blank_dev(&d, 0x3000);
    struct fkd_nvs n;
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, 0x3000, NULL, NULL), FKD_OK);
    char key[16];
    enum fkd_err rc = FKD_OK;
    unsigned i;
    for (i = 0; i < 1000 && rc == FKD_OK; i++) {
        snprintf(key, sizeof key, "k%u", i);
        rc = fkd_nvs_set_int(&n, "full", key, FKD_NVS_U32, i);
    }
    assert_int_equal(rc, FKD_E_NOSPACE);
    assert_true(i > 200);
    struct fkd_nvs_int v;
    assert_int_equal(fkd_nvs_get_int(&n, "full", "k0", &v), FKD_OK);
    assert_int_equal(fkd_nvs_erase_key(&n, "full", "k0"), FKD_OK);
    assert_int_equal(fkd_nvs_set_int(&n, "full", "k0", FKD_NVS_U32, 7), FKD_OK);
    assert_int_equal(fkd_nvs_get_int(&n, "full", "k0", &v), FKD_OK);
    assert_int_equal(v.u, 7);
    /* nvs_flash_erase_partition: everything gone, all pages free, writable again. */
    assert_int_equal(fkd_nvs_format(&n, &d.flash, 0, 0x3000, NULL), FKD_OK);
    assert_int_equal(fkd_nvs_get_int(&n, "full", "k0", &v), FKD_E_NOTFOUND);
    struct fkd_nvs_stats st;
    fkd_nvs_stats(&n, &st);
    assert_int_equal(st.pages_free, 3);
    assert_int_equal(fkd_nvs_set_int(&n, "full", "k1", FKD_NVS_U8, 1), FKD_OK);
    assert_int_equal(fkd_nvs_format(&n, &d.flash, 0, 0x3001, NULL), FKD_E_ARG);
    fkd_nvs_free(&n);
    free(d.buf);
}

/* ---- the power-cut sweep ----------------------------------------------------------------- */

#define SWEEP_SIZE 0x5000u /* 5 pages: GC happens within the sequence */
#define NKEYS 5

struct value {
    int present;
    int is_blob;
    size_t len;
    uint8_t bytes[6000];
};

struct model {
    struct value v[NKEYS];
};

static const char *const sweep_keys[NKEYS] = {"name", "blob", "psk", "filler", "count"};

/* One step of the sequence: applies it to the model (the "new" state). */
static enum fkd_err step(struct fkd_nvs *n, unsigned k, struct model *m) {
    struct value *v;
    char s[64];
    switch (k) {
    case 0: /* a string */
        v = &m->v[0];
        snprintf(s, sizeof s, "robot-0001");
        v->present = 1;
        v->is_blob = 0;
        v->len = strlen(s);
        memcpy(v->bytes, s, v->len);
        return fkd_nvs_set_str(n, "sw", "name", s);
    case 1: /* a blob spanning pages */
    case 5: /* overwritten with another multi-page blob */
        v = &m->v[1];
        v->present = 1;
        v->is_blob = 1;
        v->len = k == 1 ? 5000 : 4500;
        fill(v->bytes, v->len, k);
        return fkd_nvs_set_blob(n, "sw", "blob", v->bytes, v->len);
    case 2:
    case 6: /* a 32-byte secret, then rotated */
        v = &m->v[2];
        v->present = 1;
        v->is_blob = 1;
        v->len = 32;
        fill(v->bytes, 32, 100 + k);
        return fkd_nvs_set_blob(n, "security", "psk", v->bytes, 32);
    case 3:
    case 4:
    case 8:
    case 9: /* fill pages so that later writes collect garbage */
        v = &m->v[3];
        v->present = 1;
        v->is_blob = 0;
        v->len = 3000 + k * 10;
        memset(v->bytes, 'a' + (int)k, v->len);
        v->bytes[v->len] = 0;
        return fkd_nvs_set_str(n, "sw", "filler", (const char *)v->bytes);
    case 7: /* erase */
        m->v[0].present = 0;
        return fkd_nvs_erase_key(n, "sw", "name");
    case 10:
        v = &m->v[0];
        v->present = 1;
        v->is_blob = 0;
        v->len = 5;
        memcpy(v->bytes, "again", 5);
        return fkd_nvs_set_str(n, "sw", "name", "again");
    default: { /* 11..: an integer updated, forcing more GC */
        v = &m->v[4];
        v->present = 1;
        v->is_blob = 0;
        v->len = 8;
        uint64_t x = k;
        memcpy(v->bytes, &x, 8);
        return fkd_nvs_set_int(n, "sw", "count", FKD_NVS_U64, k);
    }
    }
}
#define STEPS 30u

static int matches(struct fkd_nvs *n, unsigned key, const struct value *v) {
    static uint8_t got[6000];
    size_t len = 0;
    enum fkd_err rc;
    const char *ns = key == 2 ? "security" : "sw";
    if (key == 4) {
        struct fkd_nvs_int iv;
        rc = fkd_nvs_get_int(n, ns, sweep_keys[key], &iv);
        if (!v->present) {
            return rc == FKD_E_NOTFOUND;
        }
        return rc == FKD_OK && memcmp(&iv.u, v->bytes, 8) == 0;
    }
    if (!v->present) {
        rc = fkd_nvs_get_blob(n, ns, sweep_keys[key], got, sizeof got, &len);
        return rc == FKD_E_NOTFOUND;
    }
    if (v->is_blob) {
        rc = fkd_nvs_get_blob(n, ns, sweep_keys[key], got, sizeof got, &len);
    } else {
        rc = fkd_nvs_get_str(n, ns, sweep_keys[key], (char *)got, sizeof got, &len);
    }
    return rc == FKD_OK && len == v->len && memcmp(got, v->bytes, len) == 0;
}

static void check_old_or_new(struct fkd_nvs *n, const struct model *before,
                             const struct model *after, unsigned long cut, unsigned long cut2,
                             unsigned k, int torn) {
    for (unsigned key = 0; key < NKEYS; key++) {
        if (!matches(n, key, &before->v[key]) && !matches(n, key, &after->v[key])) {
            fail_msg("cut %lu, recovery cut %lu (step %u, torn %d): key %s is neither old nor "
                     "new",
                     cut, cut2, k, torn, sweep_keys[key]);
        }
    }
}

/* nested: also cut the recovery mount itself at each of its program operations. */
static unsigned long sweep(const uint8_t *xts, int torn, int nested, unsigned *cuts_checked,
                           unsigned *nested_checked) {
    static uint8_t base[SWEEP_SIZE];
    static uint8_t after_cut[SWEEP_SIZE];
    struct mem_dev d;
    struct fkd_nvs n;
    static struct model before, after;
    /* Dry run: count the program operations of the whole sequence. */
    blank_dev(&d, SWEEP_SIZE);
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL), FKD_OK);
    memset(&after, 0, sizeof after);
    unsigned long start = d.mem.ops;
    for (unsigned k = 0; k < STEPS; k++) {
        assert_int_equal(step(&n, k, &after), FKD_OK);
    }
    unsigned long total = d.mem.ops - start;
    assert_true(d.mem.erases >= 2); /* the sequence collects garbage */
    fkd_nvs_free(&n);
    memset(base, 0xFF, sizeof base);
    for (unsigned long cut = 1; cut <= total; cut++) {
        memcpy(d.buf, base, SWEEP_SIZE);
        fkd_flash_mem_init(&d.mem, d.buf, SWEEP_SIZE, &d.flash);
        fkd_nvs_init(&n);
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL), FKD_OK);
        memset(&before, 0, sizeof before);
        fkd_flash_mem_cut(&d.mem, cut, torn);
        unsigned k;
        enum fkd_err rc = FKD_OK;
        for (k = 0; k < STEPS; k++) {
            after = before;
            rc = step(&n, k, &after);
            if (rc != FKD_OK) {
                break;
            }
            before = after;
        }
        assert_int_equal(rc, FKD_E_POWERCUT);
        fkd_nvs_free(&n);
        fkd_flash_mem_cut(&d.mem, 0, 0);
        /* A read-only mount sees what the repair will give, and writes nothing. */
        memcpy(after_cut, d.buf, SWEEP_SIZE);
        unsigned long ro0 = d.mem.ops;
        fkd_nvs_init(&n);
        assert_int_equal(fkd_nvs_mount_readonly(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL),
                         FKD_OK);
        check_old_or_new(&n, &before, &after, cut, 0, k, torn);
        assert_int_equal(fkd_nvs_set_str(&n, "sw", "after", "ok"), FKD_E_STATE);
        fkd_nvs_free(&n);
        assert_int_equal(d.mem.ops, ro0);
        assert_memory_equal(d.buf, after_cut, SWEEP_SIZE);
        if (nested) {
            /* The power fails again while the reboot's mount repairs: cut it at each of its
             * own program operations, then reboot cleanly. */
            memcpy(after_cut, d.buf, SWEEP_SIZE);
            unsigned long m0 = d.mem.ops;
            fkd_nvs_init(&n);
            assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL), FKD_OK);
            fkd_nvs_free(&n);
            unsigned long repair_ops = d.mem.ops - m0;
            for (unsigned long c2 = 1; c2 <= repair_ops; c2++) {
                memcpy(d.buf, after_cut, SWEEP_SIZE);
                fkd_flash_mem_cut(&d.mem, c2, torn);
                fkd_nvs_init(&n);
                assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL),
                                 FKD_E_POWERCUT);
                fkd_nvs_free(&n);
                fkd_flash_mem_cut(&d.mem, 0, 0);
                fkd_nvs_init(&n);
                assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL), FKD_OK);
                check_old_or_new(&n, &before, &after, cut, c2, k, torn);
                assert_int_equal(fkd_nvs_set_str(&n, "sw", "after", "ok"), FKD_OK);
                fkd_nvs_free(&n);
                (*nested_checked)++;
            }
            memcpy(d.buf, after_cut, SWEEP_SIZE);
        }
        /* Reboot. */
        fkd_nvs_init(&n);
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, NULL), FKD_OK);
        check_old_or_new(&n, &before, &after, cut, 0, k, torn);
        /* The spare page survived, the store is still writable, and a second mount finds
         * nothing more to repair. */
        struct fkd_nvs_stats st0;
        fkd_nvs_stats(&n, &st0);
        assert_true(st0.pages_free >= 1);
        assert_int_equal(fkd_nvs_set_str(&n, "sw", "after", "ok"), FKD_OK);
        fkd_nvs_free(&n);
        fkd_nvs_init(&n);
        struct fkd_nvs_stats st;
        assert_int_equal(fkd_nvs_mount(&n, &d.flash, 0, SWEEP_SIZE, xts, &st), FKD_OK);
        assert_int_equal(st.repaired, 0);
        char s[8];
        size_t len;
        assert_int_equal(fkd_nvs_get_str(&n, "sw", "after", s, sizeof s, &len), FKD_OK);
        fkd_nvs_free(&n);
        /* What mount left is a clean image for the host reader too. */
        struct fk_nvs_image *img = NULL;
        struct fk_nvs_keys hk;
        if (xts != NULL) {
            memcpy(hk.eky, xts, 32);
            memcpy(hk.tky, xts + 32, 32);
        }
        enum fk_err hrc = xts != NULL ? fk_nvs_image_read_encrypted(d.buf, SWEEP_SIZE, &hk, &img)
                                      : fk_nvs_image_read(d.buf, SWEEP_SIZE, &img);
        if (hrc != FK_OK) {
            fail_msg("cut %lu: host reader: %s", cut,
                     img != NULL && fk_nvs_image_problem_count(img) > 0
                         ? fk_nvs_image_problem(img, 0)->reason
                         : "no image");
        }
        fk_nvs_image_free(img);
        (*cuts_checked)++;
    }
    free(d.buf);
    return total;
}

static void nvs_power_cut_sweep_plain(void **state) {
    (void)state;
    unsigned checked = 0, nested = 0;
    unsigned long total = sweep(NULL, 0, 0, &checked, &nested);
    print_message("power-cut sweep (plain, clean cut): %lu program operations, %u cut points "
                  "checked\n",
                  total, checked);
    assert_true(total > 100);
    assert_int_equal(checked, total);
}

static void nvs_power_cut_sweep_torn(void **state) {
    (void)state;
    unsigned checked = 0, nested = 0;
    unsigned long total = sweep(NULL, 1, 1, &checked, &nested);
    print_message("power-cut sweep (plain, torn write): %u cut points checked, plus %u cuts "
                  "of the recovery mount after them\n",
                  checked, nested);
    assert_int_equal(checked, total);
    assert_true(nested > 0);
}

static void nvs_power_cut_sweep_encrypted_torn(void **state) {
    (void)state;
    uint8_t xk[64];
    for (int i = 0; i < 64; i++) {
        xk[i] = (uint8_t)(0xA0 + i);
    }
    unsigned checked = 0, nested = 0;
    unsigned long total = sweep(xk, 1, 0, &checked, &nested);
    print_message("power-cut sweep (encrypted, torn write): %u cut points checked\n", checked);
    assert_int_equal(checked, total);
}

static void flash_mem_is_nor(void **state) {
    (void)state;
    uint8_t buf[8192];
    memset(buf, 0xFF, sizeof buf);
    struct fkd_flash_mem m;
    struct fkd_flash f;
    fkd_flash_mem_init(&m, buf, sizeof buf, &f);
    uint8_t a = 0xF0, b = 0x0F, r;
    assert_int_equal(fkd_flash_write(&f, 5, &a, 1), FKD_OK);
    assert_int_equal(fkd_flash_write(&f, 5, &b, 1), FKD_OK);
    assert_int_equal(fkd_flash_read(&f, 5, &r, 1), FKD_OK);
    assert_int_equal(r, 0x00); /* bits only clear */
    assert_int_equal(m.set_bits, 1);
    assert_int_equal(fkd_flash_erase(&f, 4096), FKD_OK);
    assert_int_equal(fkd_flash_erase(&f, 5), FKD_E_RANGE);
    assert_int_equal(fkd_flash_write(&f, 8190, buf, 4), FKD_E_RANGE);
    assert_int_equal(fkd_flash_read(&f, UINT32_MAX - 1, &r, 4), FKD_E_RANGE);
    /* Cut at the 2nd operation, torn: half of it lands, nothing after. */
    uint8_t z[4] = {0, 0, 0, 0};
    fkd_flash_mem_cut(&m, 2, 1);
    assert_int_equal(fkd_flash_write(&f, 100, z, 4), FKD_OK);
    assert_int_equal(fkd_flash_write(&f, 200, z, 4), FKD_E_POWERCUT);
    assert_int_equal(fkd_flash_write(&f, 300, z, 4), FKD_E_POWERCUT);
    assert_int_equal(buf[200], 0);
    assert_int_equal(buf[201], 0);
    assert_int_equal(buf[202], 0xFF);
    assert_int_equal(buf[300], 0xFF);
    fkd_flash_mem_cut(&m, 0, 0);
    assert_int_equal(fkd_flash_write(&f, 300, z, 4), FKD_OK);
}

int main(void) {
    const char *v = getenv("FK_VECTORS");
    snprintf(vdir, sizeof vdir, "%s/nvs", v != NULL ? v : "tests/vectors");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flash_mem_is_nor),
        cmocka_unit_test(nvs_reads_v2_plain),
        cmocka_unit_test(nvs_reads_v2_encrypted),
        cmocka_unit_test(nvs_reads_v1_plain),
        cmocka_unit_test(nvs_reads_v1_encrypted),
        cmocka_unit_test(nvs_reads_prov),
        cmocka_unit_test(nvs_reads_edge),
        cmocka_unit_test(nvs_reads_boundary),
        cmocka_unit_test(nvs_reads_v1_edge_and_small_ro),
        cmocka_unit_test(nvs_reads_ns_revisit_as_gen_wrote_it),
        cmocka_unit_test(nvs_wrong_key_reads_nothing),
        cmocka_unit_test(nvs_keys_parse_rejects_bad_crc_and_blank),
        cmocka_unit_test(nvs_mount_erases_entry_with_bad_crc),
        cmocka_unit_test(nvs_writes_read_back_after_remount),
        cmocka_unit_test(nvs_device_writes_pass_the_host_reader),
        cmocka_unit_test(nvs_gc_survives_5000_updates),
        cmocka_unit_test(nvs_full_partition_reports_nospace_and_stays_readable),
        cmocka_unit_test(nvs_power_cut_sweep_plain),
        cmocka_unit_test(nvs_power_cut_sweep_torn),
        cmocka_unit_test(nvs_power_cut_sweep_encrypted_torn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
