/* Host writer -> device reader: every image the host builder makes from the vectors' CSVs
 * (plain and encrypted), and the 3969/4000-byte strings the generator cannot place, is mounted
 * by the device NVS runtime (device/src/nvs/nvs.c, on a flash model in memory) and every key our
 * host reader lists reads back with the same type and value. The two sides share only the
 * entry codec, so this checks the page rules and the encryption against an independent
 * reader. */
#include "fleetkey/nvs.h"

#include "fkd/flash.h"
#include "fkd/nvs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char vdir[4096];

static uint8_t *read_vec(const char *name, size_t *len) {
    char path[4200];
    uint8_t *data = NULL;
    snprintf(path, sizeof path, "%s/%s", vdir, name);
    if (fk_file_read(path, 1u << 20, &data, len, NULL) != FK_OK) {
        fail_msg("cannot read %s", path);
    }
    return data;
}

/* Builds csv at size; encrypts with keyfile unless it is "-". */
static uint8_t *build(const char *csv, size_t size, unsigned version, const char *keyfile,
                      struct fk_nvs_keys *k) {
    size_t clen = 0;
    uint8_t *cbuf = read_vec(csv, &clen);
    struct fk_nvs_builder *b = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_nvs_builder_new(version, &b), FK_OK);
    if (fk_nvs_csv_load(b, (const char *)cbuf, clen, csv, vdir, &d) != FK_OK) {
        fail_msg("%s: %s", csv, d.msg);
    }
    uint8_t *img = malloc(size);
    size_t len = 0;
    assert_int_equal(fk_nvs_builder_render(b, size, img, size, &len, &d), FK_OK);
    assert_int_equal(len, size);
    if (strcmp(keyfile, "-") != 0) {
        size_t klen = 0;
        uint8_t *kb = read_vec(keyfile, &klen);
        assert_int_equal(fk_nvs_keys_parse(kb, klen, k, NULL), FK_OK);
        free(kb);
    }
    fk_nvs_builder_free(b);
    free(cbuf);
    return img;
}

/* Every key of the plain image, as our reader sees it, read through the device runtime from
 * dev_img (the same image, encrypted when k is non-NULL). Returns the number of keys. */
static size_t cross_check(const char *what, const uint8_t *plain, uint8_t *dev_img, size_t size,
                          const struct fk_nvs_keys *k) {
    struct fk_nvs_image *img = NULL;
    assert_int_equal(fk_nvs_image_read(plain, size, &img), FK_OK);
    struct fkd_flash_mem mem;
    struct fkd_flash flash;
    fkd_flash_mem_init(&mem, dev_img, (uint32_t)size, &flash);
    static struct fkd_nvs n;
    fkd_nvs_init(&n);
    uint8_t xts[64];
    if (k != NULL) {
        memcpy(xts, k->eky, 32);
        memcpy(xts + 32, k->tky, 32);
    }
    struct fkd_nvs_stats st;
    enum fkd_err rc = fkd_nvs_mount(&n, &flash, 0, (uint32_t)size, k != NULL ? xts : NULL, &st);
    if (rc != FKD_OK) {
        fail_msg("%s: device mount: %s", what, fkd_strerror(rc));
    }
    assert_int_equal(st.repaired, 0); /* nothing in our image needed repair */
    static uint8_t buf[16384];
    size_t count = fk_nvs_image_item_count(img);
    for (size_t i = 0; i < count; i++) {
        const struct fk_nvs_item *it = fk_nvs_image_item(img, i);
        uint8_t type = 0;
        rc = fkd_nvs_find(&n, it->ns, it->key, &type);
        if (rc != FKD_OK) {
            fail_msg("%s: device does not find %s:%s (%s)", what, it->ns, it->key,
                     fkd_strerror(rc));
        }
        assert_int_equal(type, it->type);
        size_t len = 0;
        if (it->type == FKD_NVS_STR) {
            assert_int_equal(fkd_nvs_get_str(&n, it->ns, it->key, (char *)buf, sizeof buf, &len),
                             FKD_OK);
            assert_int_equal(len, it->len);
            assert_memory_equal(buf, it->data, len);
        } else if (it->type == FKD_NVS_BLOB || it->type == FKD_NVS_BLOB_IDX) {
            assert_int_equal(fkd_nvs_get_blob(&n, it->ns, it->key, buf, sizeof buf, &len),
                             FKD_OK);
            assert_int_equal(len, it->len);
            if (len) {
                assert_memory_equal(buf, it->data, len);
            }
        } else {
            struct fkd_nvs_int v;
            assert_int_equal(fkd_nvs_get_int(&n, it->ns, it->key, &v), FKD_OK);
            assert_int_equal(v.type, it->type);
            assert_int_equal(v.u, it->u);
        }
    }
    fkd_nvs_free(&n);
    fk_nvs_image_free(img);
    fk_wipe(xts, sizeof xts);
    return count;
}

static void device_runtime_reads_every_host_built_vector(void **state) {
    (void)state;
    static const struct {
        const char *csv;
        size_t size;
        unsigned version;
        const char *keyfile;
        size_t keys;
    } cases[] = {
        {"v2.csv", 0x6000, 2, "-", 7},
        {"v2.csv", 0x6000, 2, "nvs_keys_1122.bin", 7},
        {"v1.csv", 0x6000, 1, "nvs_keys_1122.bin", 6},
        {"prov.csv", 0x6000, 2, "nvs_keys_prov.bin", 5},
        {"edge.csv", 0x8000, 2, "nvs_keys_1122.bin", 30},
        {"boundary.csv", 0x6000, 2, "nvs_keys_prov.bin", 24},
        {"v1_edge.csv", 0x4000, 1, "-", 6},
        {"ns_revisit.csv", 0x3000, 2, "-", 3},
        {"reject_str3969.csv", 0x6000, 2, "-", 1},
        {"reject_str4000.csv", 0x6000, 2, "nvs_keys_1122.bin", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fk_nvs_keys k;
        uint8_t *plain = build(cases[i].csv, cases[i].size, cases[i].version, cases[i].keyfile,
                               &k);
        uint8_t *dev = malloc(cases[i].size);
        memcpy(dev, plain, cases[i].size);
        int enc = strcmp(cases[i].keyfile, "-") != 0;
        if (enc) {
            assert_int_equal(fk_nvs_encrypt(dev, cases[i].size, &k), FK_OK);
        }
        size_t n = cross_check(cases[i].csv, plain, dev, cases[i].size, enc ? &k : NULL);
        if (n != cases[i].keys) {
            fail_msg("%s: %zu keys, expected %zu", cases[i].csv, n, cases[i].keys);
        }
        free(dev);
        free(plain);
        fk_wipe(&k, sizeof k);
    }
}

static void device_finds_revisited_namespace_key_where_we_put_it(void **state) {
    (void)state;
    struct fk_nvs_keys k;
    uint8_t *img = build("ns_revisit.csv", 0x3000, 2, "-", &k);
    struct fkd_flash_mem mem;
    struct fkd_flash flash;
    fkd_flash_mem_init(&mem, img, 0x3000, &flash);
    static struct fkd_nvs n;
    fkd_nvs_init(&n);
    assert_int_equal(fkd_nvs_mount(&n, &flash, 0, 0x3000, NULL, NULL), FKD_OK);
    struct fkd_nvs_int v;
    assert_int_equal(fkd_nvs_get_int(&n, "first", "c", &v), FKD_OK);
    assert_int_equal(v.u, 3);
    assert_int_equal(fkd_nvs_get_int(&n, "second", "c", &v), FKD_E_NOTFOUND);
    fkd_nvs_free(&n);
    free(img);
}

int main(void) {
    const char *v = getenv("FK_VECTORS");
    snprintf(vdir, sizeof vdir, "%s/nvs", v != NULL ? v : "tests/vectors");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(device_runtime_reads_every_host_built_vector),
        cmocka_unit_test(device_finds_revisited_namespace_key_where_we_put_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
