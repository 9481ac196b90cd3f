/* Unit tests of the nvs module against the golden images ESP-IDF's nvs_partition_gen made
 * (tests/vectors/nvs, see its README): every case of cases.tsv byte for byte, plain and
 * encrypted; decryption; the two places we deliberately differ; the CSV loader's and the
 * reader's negative cases; the partition table. */
#include "fleetkey/nvs.h"

#include "fkd/nvs_format.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char vdir[4096];

static const char *vec(const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", vdir, name);
    return buf;
}

static uint8_t *read_vec(const char *name, size_t *len) {
    char path[4200];
    uint8_t *data = NULL;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_file_read(vec(name, path, sizeof path), 64u << 20, &data, len, &d);
    if (rc != FK_OK) {
        fail_msg("cannot read vector %s: %s", path, d.msg);
    }
    return data;
}

static void sha256_hex(const uint8_t *data, size_t len, char out[65]) {
    uint8_t md[32];
    unsigned mdlen = 0;
    assert_int_equal(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_int_equal(fk_hex_encode(md, 32, out, 65), FK_OK);
}

/* Builds the image of a CSV vector; returns the rc and fills img/len/diag. */
static enum fk_err build_csv(const char *csv, size_t size, unsigned version, uint8_t **img,
                             size_t *img_len, struct fk_diag *d) {
    size_t clen = 0;
    uint8_t *cbuf = read_vec(csv, &clen);
    struct fk_nvs_builder *b = NULL;
    fk_diag_init(d);
    assert_int_equal(fk_nvs_builder_new(version, &b), FK_OK);
    enum fk_err rc = fk_nvs_csv_load(b, (const char *)cbuf, clen, csv, vdir, d);
    *img = malloc(size);
    assert_non_null(*img);
    *img_len = 0;
    if (rc == FK_OK) {
        rc = fk_nvs_builder_render(b, size, *img, size, img_len, d);
    }
    fk_nvs_builder_free(b);
    free(cbuf);
    return rc;
}

struct vcase {
    char name[64];
    char csv[64];
    size_t size;
    unsigned version;
    char keyfile[64];
    char sha[65];
};

static size_t load_cases(struct vcase *cases, size_t max) {
    size_t len = 0;
    uint8_t *tsv = read_vec("cases.tsv", &len);
    size_t n = 0;
    char *save = NULL;
    char *line = strtok_r((char *)tsv, "\n", &save); /* test code: strtok_r is reentrant */
    line = strtok_r(NULL, "\n", &save);              /* skip the header */
    while (line != NULL && n < max) {
        char size[32];
        struct vcase *c = &cases[n];
        assert_int_equal(sscanf(line, "%63s %63s %31s %u %63s %64s", c->name, c->csv, size,
                                &c->version, c->keyfile, c->sha),
                         6);
        c->size = (size_t)strtoull(size, NULL, 0);
        n++;
        line = strtok_r(NULL, "\n", &save);
    }
    free(tsv);
    return n;
}

static void every_vector_is_reproduced_byte_for_byte(void **state) {
    (void)state;
    struct vcase cases[32];
    size_t n = load_cases(cases, 32);
    assert_true(n >= 12);
    for (size_t i = 0; i < n; i++) {
        const struct vcase *c = &cases[i];
        uint8_t *img = NULL;
        size_t img_len = 0;
        struct fk_diag d;
        enum fk_err rc = build_csv(c->csv, c->size, c->version, &img, &img_len, &d);
        if (rc != FK_OK) {
            fail_msg("%s: %s: %s", c->name, fk_strerror(rc), d.msg);
        }
        if (strcmp(c->keyfile, "-") != 0) {
            size_t klen = 0;
            uint8_t *kbuf = read_vec(c->keyfile, &klen);
            struct fk_nvs_keys k;
            assert_int_equal(fk_nvs_keys_parse(kbuf, klen, &k, NULL), FK_OK);
            /* The key file itself is what our encoder makes from the same keys. */
            uint8_t kimg[FK_NVS_KEYS_SIZE];
            fk_nvs_keys_encode(&k, kimg);
            assert_int_equal(klen, FK_NVS_KEYS_SIZE);
            assert_memory_equal(kimg, kbuf, FK_NVS_KEYS_SIZE);
            uint8_t *plain = malloc(img_len);
            assert_non_null(plain);
            memcpy(plain, img, img_len);
            assert_int_equal(fk_nvs_encrypt(img, img_len, &k), FK_OK);
            /* decrypt(enc) == plain */
            size_t elen = 0;
            char enc_name[96];
            snprintf(enc_name, sizeof enc_name, "%.63s.bin", c->name);
            uint8_t *enc = read_vec(enc_name, &elen);
            assert_int_equal(elen, img_len);
            assert_int_equal(fk_nvs_decrypt(enc, elen, &k), FK_OK);
            if (memcmp(enc, plain, elen) != 0) {
                fail_msg("%s: decrypting the generator's image does not give the plain one",
                         c->name);
            }
            free(enc);
            free(plain);
            free(kbuf);
        }
        char hex[65];
        sha256_hex(img, img_len, hex);
        if (strcmp(hex, c->sha) != 0) {
            char bin[96];
            snprintf(bin, sizeof bin, "%.63s.bin", c->name);
            size_t glen = 0;
            uint8_t *gen = read_vec(bin, &glen);
            size_t at = 0;
            while (at < glen && at < img_len && gen[at] == img[at]) {
                at++;
            }
            fail_msg("%s: sha256 %s, expected %s (length %zu vs %zu, first difference at 0x%zx)",
                     c->name, hex, c->sha, img_len, glen, at);
        }
        free(img);
    }
}

int main(void) {
    const char *v = getenv("FK_VECTORS");
    snprintf(vdir, sizeof vdir, "%s/nvs", v != NULL ? v : "tests/vectors");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_vector_is_reproduced_byte_for_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
