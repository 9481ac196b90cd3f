/* Shared fixtures of the device OTA unit tests: see ota_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first */
#include <cmocka.h>

#include "ota_fixture.h"

#include "fleetkey/partition.h"
#include "mkappimage.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const FKT_KA[] = {"key_a.pem", NULL};
const char *const FKT_KB[] = {"key_b.pem", NULL};
const char *const FKT_KAB[] = {"key_a.pem", "key_b.pem", NULL};

static void vector_path(const char *name, char *path, size_t size) {
    const char *v = getenv("FK_VECTORS");
    snprintf(path, size, "%s/sbv2/%s", v != NULL ? v : "tests/vectors", name);
}

uint8_t *fkt_vector_load(const char *name, size_t *len) {
    char path[1024];
    vector_path(name, path, sizeof path);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

size_t fkt_vector_pub_der(const char *name, uint8_t *out, size_t out_size) {
    size_t len = 0;
    uint8_t *pem = fkt_vector_load(name, &len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (k == NULL) {
        BIO_free(bio);
        bio = BIO_new_mem_buf(pem, (int)len);
        k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    assert_non_null(k);
    int n = i2d_PUBKEY(k, NULL);
    assert_true(n > 0 && (size_t)n <= out_size);
    uint8_t *p = out;
    assert_int_equal(i2d_PUBKEY(k, &p), n);
    EVP_PKEY_free(k);
    BIO_free(bio);
    free(pem);
    return (size_t)n;
}

struct fk_ota_key *fkt_vector_key(const char *name) {
    char path[1024];
    vector_path(name, path, sizeof path);
    struct fk_ota_key *k = NULL;
    assert_int_equal(fk_ota_key_load(path, 1, &k, NULL), FK_OK);
    return k;
}

uint8_t *fkt_signed_app(const char *version, uint32_t secver, const char *const *keys,
                        size_t *len) {
    struct mkapp_opts o;
    mkapp_defaults(&o);
    o.version = version;
    o.secure_version = secver;
    o.segment_len = 3000;
    o.seed = secver * 7u + (uint32_t)strlen(version);
    size_t alen = mkapp_size(&o);
    uint8_t *app = malloc(alen);
    assert_non_null(app);
    assert_int_equal(mkapp_build(&o, app, alen), alen);
    struct fk_ota_key *k[3];
    size_t n = 0;
    for (; keys[n] != NULL && n < 3; n++) {
        k[n] = fkt_vector_key(keys[n]);
    }
    size_t cap = fk_ota_signed_size(alen);
    uint8_t *img = malloc(cap);
    assert_non_null(img);
    assert_int_equal(fk_ota_sign(app, alen, k, n, img, cap, len, NULL), FK_OK);
    for (size_t i = 0; i < n; i++) {
        fk_ota_key_free(k[i]);
    }
    free(app);
    return img;
}

void fkt_flash_new(struct fkt_flash *r) {
    static struct fk_partition_table ht;
    uint8_t table[FK_PARTITION_TABLE_SIZE];
    size_t tlen = 0;
    if (r->chip == NULL) {
        r->chip = malloc(FKT_CHIP);
        assert_non_null(r->chip);
    }
    memset(r->chip, 0xFF, FKT_CHIP);
    assert_int_equal(fk_partition_csv_parse(fk_partition_default_csv,
                                            strlen(fk_partition_default_csv), "d.csv", &ht, NULL),
                     FK_OK);
    assert_int_equal(fk_partition_encode(&ht, table, sizeof table, &tlen), FK_OK);
    memcpy(r->chip + FKD_PART_TABLE_OFFSET, table, tlen);
    fkd_flash_mem_init(&r->m, r->chip, FKT_CHIP, &r->f);
    assert_int_equal(fkd_part_load(&r->f, &r->t), FKD_OK);
    const struct fkd_part *np = fkt_flash_nvs(r);
    fkd_nvs_init(&r->nvs);
    assert_int_equal(fkd_nvs_format(&r->nvs, &r->f, np->offset, np->size, NULL), FKD_OK);
}

const struct fkd_part *fkt_flash_nvs(const struct fkt_flash *r) {
    const struct fkd_part *np = fkd_part_find(&r->t, FKD_PART_DATA, FKD_PART_SUB_NVS, NULL);
    assert_non_null(np);
    return np;
}

void fkt_flash_power_on(struct fkt_flash *r) {
    fkd_flash_mem_cut(&r->m, 0, 0);
    const struct fkd_part *np = fkt_flash_nvs(r);
    fkd_nvs_free(&r->nvs);
    fkd_nvs_init(&r->nvs);
    assert_int_equal(fkd_nvs_mount(&r->nvs, &r->f, np->offset, np->size, NULL, NULL), FKD_OK);
}
