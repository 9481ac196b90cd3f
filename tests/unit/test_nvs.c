/* Unit tests of the nvs module against the golden images ESP-IDF's nvs_partition_gen made
 * (tests/vectors/nvs, see its README): every case of cases.tsv byte for byte, plain and
 * encrypted; decryption; the two places we deliberately differ; the CSV loader's and the
 * reader's negative cases; the partition table. */
#include "fleetkey/nvs.h"
#include "fleetkey/partition.h"

#include "fkd/nvs_format.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
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


/* ---- the reader against ESP-IDF's own reader (nvs_tool.py JSON) ---------------------- */

static size_t b64_decode(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    assert_int_equal(fk_base64_decode(s, strlen(s), out, cap, &n), FK_OK);
    return n;
}

static const char *json_str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double json_num(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* Data bytes of an entry as nvs_tool shows them: its children's raw entries joined. */
static size_t children_data(const cJSON *entry, uint8_t *out, size_t cap) {
    size_t n = 0;
    const cJSON *c = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(entry, "children")) {
        assert_true(n + 32 <= cap);
        assert_int_equal(b64_decode(json_str(c, "raw"), out + n, cap - n), 32);
        n += 32;
    }
    return n;
}

static void check_against_nvs_tool(const char *bin_name, const char *json_name) {
    size_t len = 0;
    uint8_t *bin = read_vec(bin_name, &len);
    size_t jlen = 0;
    uint8_t *jbuf = read_vec(json_name, &jlen);
    cJSON *root = cJSON_ParseWithLength((const char *)jbuf, jlen);
    assert_non_null(root);
    struct fk_nvs_image *img = NULL;
    assert_int_equal(fk_nvs_image_read(bin, len, &img), FK_OK);
    assert_int_equal(fk_nvs_image_problem_count(img), 0);

    char ns_names[256][16];
    memset(ns_names, 0, sizeof ns_names);
    uint8_t *data = malloc(8192);
    uint8_t *blob = malloc(1 << 16);
    assert_non_null(data);
    assert_non_null(blob);
    size_t items = 0;
    size_t pages = 0;
    const cJSON *page = NULL;
    /* Two passes: namespaces are defined before use in generator images, but do not rely on
     * it. Pass 0 collects namespaces, pass 1 compares items. */
    for (int pass = 0; pass < 2; pass++) {
        pages = 0;
        cJSON_ArrayForEach(page, cJSON_GetObjectItemCaseSensitive(root, "pages")) {
            const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(page, "header");
            const struct fk_nvs_page_info *pi = fk_nvs_image_page(img, pages);
            assert_non_null(pi);
            const char *status = json_str(hdr, "status");
            if (strcmp(status, "Empty") == 0) {
                assert_string_equal(pi->status, "empty");
            } else {
                assert_true(strcasecmp(status, pi->status) == 0);
                assert_int_equal(pi->seq, (uint32_t)json_num(hdr, "page_index"));
            }
            const cJSON *e = NULL;
            cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(page, "entries")) {
                if (strcmp(json_str(e, "state"), "Written") != 0) {
                    continue;
                }
                const cJSON *md = cJSON_GetObjectItemCaseSensitive(e, "metadata");
                unsigned ns = (unsigned)json_num(md, "namespace");
                const char *type = json_str(md, "type");
                const char *key = json_str(e, "key");
                const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "data");
                uint8_t raw[33];
                assert_int_equal(b64_decode(json_str(e, "raw"), raw, sizeof raw), 32);
                if (ns == 0) {
                    unsigned idx = (unsigned)json_num(d, "value");
                    if (pass == 0) {
                        snprintf(ns_names[idx], 16, "%s", key);
                    } else {
                        assert_string_equal(fk_nvs_image_namespace(img, idx), key);
                    }
                    continue;
                }
                if (pass == 0 || strcmp(type, "blob_data") == 0) {
                    continue; /* chunks are checked through their blob_index */
                }
                const struct fk_nvs_item *it = fk_nvs_image_find(img, ns_names[ns], key);
                if (it == NULL) {
                    fail_msg("%s: %s:%s not found by our reader", bin_name, ns_names[ns], key);
                }
                items++;
                size_t entry_off = pages * 4096 + 64 + 32 * (size_t)json_num(e, "index");
                assert_int_equal(it->offset, entry_off);
                assert_int_equal(it->ns_index, ns);
                if (strstr(type, "int") != NULL) {
                    unsigned w = fkd_nvs_int_width(it->type);
                    assert_true(w > 0);
                    for (unsigned b = 0; b < w; b++) {
                        assert_int_equal((it->u >> (8 * b)) & 0xFF, raw[24 + b]);
                    }
                    /* nvs_tool's number (a double in cJSON) for the values that fit one. */
                    double v = json_num(d, "value");
                    if (v > -9.0e15 && v < 9.0e15) {
                        if (type[0] == 'u') {
                            assert_true((double)it->u == v);
                        } else {
                            assert_true((double)it->i == v);
                        }
                    }
                } else if (strcmp(type, "string") == 0 || strcmp(type, "blob") == 0) {
                    size_t size = (size_t)json_num(d, "size");
                    size_t n = children_data(e, data, 8192);
                    assert_true(size <= n);
                    if (type[0] == 's') {
                        assert_int_equal(it->type, FKD_NVS_STR);
                        assert_int_equal(it->len + 1, size);
                        assert_int_equal(data[size - 1], 0);
                    } else {
                        assert_int_equal(it->type, FKD_NVS_BLOB);
                        assert_int_equal(it->len, size);
                    }
                    assert_memory_equal(it->data, data, it->len);
                } else if (strcmp(type, "blob_index") == 0) {
                    size_t size = (size_t)json_num(d, "size");
                    unsigned count = (unsigned)json_num(d, "chunk_count");
                    assert_int_equal(it->type, FKD_NVS_BLOB_IDX);
                    assert_int_equal(it->len, size);
                    assert_int_equal(it->chunks, count);
                    /* Join the blob_data entries of this key in chunk order, as nvs_tool
                     * shows them. */
                    size_t have = 0;
                    for (unsigned c = 0; c < count; c++) {
                        const cJSON *p2 = NULL;
                        int found = 0;
                        cJSON_ArrayForEach(p2, cJSON_GetObjectItemCaseSensitive(root, "pages")) {
                            const cJSON *e2 = NULL;
                            cJSON_ArrayForEach(e2,
                                               cJSON_GetObjectItemCaseSensitive(p2, "entries")) {
                                const cJSON *md2 = cJSON_GetObjectItemCaseSensitive(e2, "metadata");
                                if (strcmp(json_str(e2, "state"), "Written") != 0 ||
                                    strcmp(json_str(md2, "type"), "blob_data") != 0 ||
                                    (unsigned)json_num(md2, "namespace") != ns ||
                                    (unsigned)json_num(md2, "chunk_index") != c ||
                                    strcmp(json_str(e2, "key"), key) != 0) {
                                    continue;
                                }
                                const cJSON *d2 = cJSON_GetObjectItemCaseSensitive(e2, "data");
                                size_t csize = (size_t)json_num(d2, "size");
                                size_t n = children_data(e2, data, 8192);
                                assert_true(csize <= n && have + csize <= (1u << 16));
                                memcpy(blob + have, data, csize);
                                have += csize;
                                found = 1;
                            }
                        }
                        assert_true(found);
                    }
                    assert_int_equal(have, size);
                    assert_memory_equal(it->data, blob, size);
                } else {
                    fail_msg("%s: unexpected nvs_tool type %s", bin_name, type);
                }
            }
            pages++;
        }
    }
    assert_int_equal(pages, fk_nvs_image_page_count(img));
    assert_int_equal(items, fk_nvs_image_item_count(img));
    free(data);
    free(blob);
    fk_nvs_image_free(img);
    cJSON_Delete(root);
    free(jbuf);
    free(bin);
}

static void reader_matches_nvs_tool_on_every_plain_vector(void **state) {
    (void)state;
    struct vcase cases[32];
    size_t n = load_cases(cases, 32);
    size_t checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cases[i].keyfile, "-") != 0) {
            continue;
        }
        char bin[96];
        char json[128];
        snprintf(bin, sizeof bin, "%.63s.bin", cases[i].name);
        snprintf(json, sizeof json, "%.63s.nvs_tool.json", cases[i].name);
        check_against_nvs_tool(bin, json);
        checked++;
    }
    check_against_nvs_tool("ns_revisit.bin", "ns_revisit.nvs_tool.json");
    assert_int_equal(checked, 7);
}

static void reader_reads_encrypted_vectors_with_their_keys(void **state) {
    (void)state;
    const char *pairs[][3] = {{"v2_enc.bin", "nvs_keys_1122.bin", "v2_plain.bin"},
                              {"prov_enc.bin", "nvs_keys_prov.bin", "prov_plain.bin"},
                              {"edge_enc.bin", "nvs_keys_1122.bin", "edge_plain.bin"}};
    for (size_t i = 0; i < 3; i++) {
        size_t elen = 0;
        size_t klen = 0;
        size_t plen = 0;
        uint8_t *enc = read_vec(pairs[i][0], &elen);
        uint8_t *kb = read_vec(pairs[i][1], &klen);
        uint8_t *plain = read_vec(pairs[i][2], &plen);
        struct fk_nvs_keys k;
        assert_int_equal(fk_nvs_keys_parse(kb, klen, &k, NULL), FK_OK);
        struct fk_nvs_image *a = NULL;
        struct fk_nvs_image *b = NULL;
        assert_int_equal(fk_nvs_image_read_encrypted(enc, elen, &k, &a), FK_OK);
        assert_int_equal(fk_nvs_image_read(plain, plen, &b), FK_OK);
        assert_int_equal(fk_nvs_image_item_count(a), fk_nvs_image_item_count(b));
        for (size_t j = 0; j < fk_nvs_image_item_count(a); j++) {
            const struct fk_nvs_item *x = fk_nvs_image_item(a, j);
            const struct fk_nvs_item *y = fk_nvs_image_item(b, j);
            assert_string_equal(x->key, y->key);
            assert_int_equal(x->len, y->len);
            assert_int_equal(x->u, y->u);
            if (x->len) {
                assert_memory_equal(x->data, y->data, x->len);
            }
        }
        fk_nvs_image_free(a);
        fk_nvs_image_free(b);
        /* The wrong keys: every written entry fails its CRC, nothing is read. */
        k.eky[0] ^= 1;
        assert_int_equal(fk_nvs_image_read_encrypted(enc, elen, &k, &a), FK_E_CRC);
        assert_int_equal(fk_nvs_image_item_count(a), 0);
        assert_true(fk_nvs_image_problem_count(a) > 0);
        fk_nvs_image_free(a);
        /* Reading the encrypted image as plain finds no valid entry either. */
        assert_int_equal(fk_nvs_image_read(enc, elen, &a), FK_E_CRC);
        assert_int_equal(fk_nvs_image_item_count(a), 0);
        fk_nvs_image_free(a);
        free(enc);
        free(kb);
        free(plain);
    }
}

/* ---- where we deliberately differ from the generator --------------------------------- */

static void revisited_namespace_keeps_its_original_index(void **state) {
    (void)state;
    /* The generator's image: `c` lands in `second` (its bug), and our reader says so. */
    size_t glen = 0;
    uint8_t *gen = read_vec("ns_revisit.bin", &glen);
    struct fk_nvs_image *img = NULL;
    assert_int_equal(fk_nvs_image_read(gen, glen, &img), FK_OK);
    const struct fk_nvs_item *c = fk_nvs_image_find(img, "second", "c");
    assert_non_null(c);
    assert_int_equal(c->u, 3);
    assert_int_equal(c->ns_index, 2);
    assert_null(fk_nvs_image_find(img, "first", "c"));
    fk_nvs_image_free(img);

    /* Ours: `c` is in `first` (index 1), so the image differs from the generator's. */
    uint8_t *ours = NULL;
    size_t olen = 0;
    struct fk_diag d;
    assert_int_equal(build_csv("ns_revisit.csv", 0x3000, 2, &ours, &olen, &d), FK_OK);
    assert_int_equal(olen, glen);
    assert_true(memcmp(ours, gen, glen) != 0);
    assert_int_equal(fk_nvs_image_read(ours, olen, &img), FK_OK);
    c = fk_nvs_image_find(img, "first", "c");
    assert_non_null(c);
    assert_int_equal(c->u, 3);
    assert_int_equal(c->ns_index, 1);
    assert_null(fk_nvs_image_find(img, "second", "c"));
    assert_non_null(fk_nvs_image_find(img, "first", "a"));
    assert_non_null(fk_nvs_image_find(img, "second", "b"));
    assert_int_equal(fk_nvs_image_namespace_count(img), 2); /* no second `first` entry */
    fk_nvs_image_free(img);
    /* Only the namespace byte (and the entry CRC) of `c` differ. */
    size_t diffs = 0;
    for (size_t i = 0; i < glen; i++) {
        diffs += ours[i] != gen[i];
    }
    assert_true(diffs >= 1 && diffs <= 5);
    free(ours);
    free(gen);
}

static void strings_of_3969_and_4000_bytes_are_accepted_and_read_back(void **state) {
    (void)state;
    const char *csvs[] = {"reject_str3969.csv", "reject_str4000.csv"};
    const size_t lens[] = {3968, 3999};
    const char *keys[] = {"str3968", "str4000"};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *img = NULL;
        size_t len = 0;
        struct fk_diag d;
        enum fk_err rc = build_csv(csvs[i], 0x6000, 2, &img, &len, &d);
        if (rc != FK_OK) {
            fail_msg("%s: %s", csvs[i], d.msg);
        }
        struct fk_nvs_image *r = NULL;
        assert_int_equal(fk_nvs_image_read(img, len, &r), FK_OK);
        const struct fk_nvs_item *it = fk_nvs_image_find(r, "n", keys[i]);
        assert_non_null(it);
        assert_int_equal(it->len, lens[i]);
        for (size_t j = 0; j < it->len; j++) {
            /* The README's pattern: (a-z A-Z 0-9)[i % 62]. */
            static const char abc[] =
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            assert_int_equal(it->data[j], abc[j % 62]);
        }
        /* Span 126 only fits a fresh page: it sits at entry 0 of page 1 and fills it. */
        assert_int_equal(it->page, 1);
        assert_int_equal(it->entry, 0);
        assert_int_equal(img[4096 + 64 + 2], 126);
        fk_nvs_image_free(r);
        free(img);
    }
}

/* ---- CSV and builder errors ----------------------------------------------------------- */

static void generator_rejects_are_rejected_with_clear_messages(void **state) {
    (void)state;
    struct {
        const char *csv;
        unsigned version;
        enum fk_err rc;
        long line;
        const char *words;
    } cases[] = {
        {"reject_key16.csv", 2, FK_E_RANGE, 3, "at most 15"},
        {"reject_v1_blob1985.csv", 1, FK_E_RANGE, 3, "1984"},
        {"v2.csv", 1, FK_E_RANGE, 8, "5000 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *img = NULL;
        size_t len = 0;
        struct fk_diag d;
        assert_int_equal(build_csv(cases[i].csv, 0x6000, cases[i].version, &img, &len, &d),
                         cases[i].rc);
        assert_string_equal(d.file, cases[i].csv);
        assert_int_equal(d.line, cases[i].line);
        if (strstr(d.msg, cases[i].words) == NULL) {
            fail_msg("%s: message '%s' lacks '%s'", cases[i].csv, d.msg, cases[i].words);
        }
        free(img);
    }
}

static enum fk_err load_text(const char *csv, unsigned version, size_t size, struct fk_diag *d,
                             const char *base_dir) {
    struct fk_nvs_builder *b = NULL;
    fk_diag_init(d);
    assert_int_equal(fk_nvs_builder_new(version, &b), FK_OK);
    enum fk_err rc = fk_nvs_csv_load(b, csv, strlen(csv), "t.csv", base_dir, d);
    if (rc == FK_OK && size) {
        uint8_t *img = malloc(size);
        size_t len = 0;
        rc = fk_nvs_builder_render(b, size, img, size, &len, d);
        free(img);
    }
    fk_nvs_builder_free(b);
    return rc;
}

static void csv_loader_rejects_bad_input_naming_the_line(void **state) {
    (void)state;
    struct {
        const char *body; /* rows after "key,type,encoding,value\nns,namespace,,\n" */
        enum fk_err rc;
        const char *words;
    } cases[] = {
        {"a,data,u8,abc\n", FK_E_PARSE, "not a decimal u8"},
        {"a,data,u8,\n", FK_E_PARSE, "not a decimal"},
        {"a,data,u8,256\n", FK_E_RANGE, "does not fit u8"},
        {"a,data,u8,-1\n", FK_E_RANGE, "does not fit u8"},
        {"a,data,i8,-129\n", FK_E_RANGE, "does not fit i8"},
        {"a,data,i8,128\n", FK_E_RANGE, "does not fit i8"},
        {"a,data,u16,65536\n", FK_E_RANGE, "does not fit u16"},
        {"a,data,i32,2147483648\n", FK_E_RANGE, "does not fit i32"},
        {"a,data,u64,18446744073709551616\n", FK_E_RANGE, "does not fit u64"},
        {"a,data,i64,-9223372036854775809\n", FK_E_RANGE, "does not fit i64"},
        {"a,data,u7,1\n", FK_E_PARSE, "unknown encoding 'u7'"},
        {"a,data,String,x\n", FK_E_PARSE, "unknown encoding"},
        {"a,blob,u8,1\n", FK_E_PARSE, "unknown type 'blob'"},
        {"a,data,hex2bin,zz\n", FK_E_PARSE, "non-hex character at position 1"},
        {"a,data,hex2bin,abc\n", FK_E_PARSE, "odd number"},
        {"a,data,base64,@@@@\n", FK_E_PARSE, "base64"},
        {"a,file,binary,does_not_exist.bin\n", FK_E_IO, "does_not_exist.bin"},
        {"a,file,u8,x\n", FK_E_PARSE, "file row cannot use"},
        {"key_of_16_chars_,data,u8,1\n", FK_E_RANGE, "at most 15"},
        {"a,data,string,\"unclosed\n", FK_E_PARSE, "not closed"},
        {"a,data,u8,1\na,data,u8,2\n", FK_E_EXISTS, "appears twice"},
        {"namespace_16_chr,namespace,,\n", FK_E_RANGE, "at most 15"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char csv[512];
        snprintf(csv, sizeof csv, "key,type,encoding,value\nns,namespace,,\n%s", cases[i].body);
        struct fk_diag d;
        enum fk_err rc = load_text(csv, 2, 0, &d, vdir);
        if (rc != cases[i].rc || strstr(d.msg, cases[i].words) == NULL || d.line < 3) {
            fail_msg("case %zu (%s): rc %s, line %ld, msg '%s'", i, cases[i].body,
                     fk_errname(rc), d.line, d.msg);
        }
        assert_string_equal(d.file, "t.csv");
    }
    /* The line number is the row's, counting comments, blank lines and quoted line breaks. */
    struct fk_diag d;
    assert_int_equal(load_text("# comment\nkey,type,encoding,value\n\nns,namespace,,\n"
                               "s,data,string,\"two\nlines\"\nbad,data,u8,x\n",
                               2, 0, &d, NULL),
                     FK_E_PARSE);
    assert_int_equal(d.line, 7);
    /* A key before any namespace. */
    assert_int_equal(load_text("key,type,encoding,value\na,data,u8,1\n", 2, 0, &d, NULL),
                     FK_E_STATE);
    assert_int_equal(d.line, 2);
    /* File rows need a base directory (the fuzzer and untrusted CSVs run without one). */
    assert_int_equal(load_text("key,type,encoding,value\nn,namespace,,\nf,file,binary,x\n", 2, 0,
                               &d, NULL),
                     FK_E_POLICY);
    /* A header without the four columns. */
    assert_int_equal(load_text("name,type,value\n", 2, 0, &d, NULL), FK_E_PARSE);
    assert_int_equal(load_text("", 2, 0, &d, NULL), FK_E_PARSE);
    /* Strings: 4000 bytes with the NUL are fine in V2, 4001 are not; V1 stops at 1984. */
    static char big[4200];
    memset(big, 0, sizeof big);
    memcpy(big, "key,type,encoding,value\nn,namespace,,\ns,data,string,", 52);
    memset(big + 52, 'x', 4000);
    assert_int_equal(load_text(big, 2, 0x6000, &d, NULL), FK_E_RANGE);
    assert_non_null(strstr(d.msg, "4001 bytes"));
    big[52 + 3999] = '\0';
    assert_int_equal(load_text(big, 2, 0x6000, &d, NULL), FK_OK);
    assert_int_equal(load_text(big, 1, 0x6000, &d, NULL), FK_E_RANGE);
    assert_non_null(strstr(d.msg, "version 1"));
    big[52 + 1983] = '\0';
    assert_int_equal(load_text(big, 1, 0x6000, &d, NULL), FK_OK);
}

static void data_that_does_not_fit_says_how_much_is_needed(void **state) {
    (void)state;
    struct fk_diag d;
    /* v2.csv needs two data pages + the reserved page: 0x3000 is not enough for... it is, so
     * use edge.csv (five data pages) in 0x4000. */
    uint8_t *img = NULL;
    size_t len = 0;
    assert_int_equal(build_csv("edge.csv", 0x4000, 2, &img, &len, &d), FK_E_NOSPACE);
    assert_non_null(strstr(d.msg, "needs 24576 bytes, partition has 16384"));
    free(img);
    /* Read-only sizes have no reserved page: small.csv needs exactly one page. */
    assert_int_equal(build_csv("small.csv", 0x1000, 2, &img, &len, &d), FK_OK);
    assert_int_equal(len, 4096);
    free(img);
    assert_int_equal(build_csv("v2.csv", 0x1000, 2, &img, &len, &d), FK_E_NOSPACE);
    assert_non_null(strstr(d.msg, "needs 8192 bytes, partition has 4096"));
    free(img);
    assert_int_equal(build_csv("small.csv", 0x1800, 2, &img, &len, &d), FK_E_ARG);
    free(img);
}

static void csv_quoting_comments_and_crlf_do_not_change_the_image(void **state) {
    (void)state;
    const char *a = "key,type,encoding,value\nn,namespace,,\ns,data,string,\"a,b \"\"q\"\"\"\n"
                    "h,data,hex2bin, 0A0b \n";
    const char *b = "# leading comment\r\nkey,type,encoding,value\r\n\r\nn,namespace,,\r\n"
                    "# between rows\r\ns,data,string,\"a,b \"\"q\"\"\"\r\nh,data,hex2bin,0a0B";
    uint8_t ia[0x3000];
    uint8_t ib[0x3000];
    size_t la = 0;
    size_t lb = 0;
    struct fk_nvs_builder *x = NULL;
    struct fk_nvs_builder *y = NULL;
    assert_int_equal(fk_nvs_builder_new(2, &x), FK_OK);
    assert_int_equal(fk_nvs_builder_new(2, &y), FK_OK);
    assert_int_equal(fk_nvs_csv_load(x, a, strlen(a), "a", NULL, NULL), FK_OK);
    assert_int_equal(fk_nvs_csv_load(y, b, strlen(b), "b", NULL, NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_render(x, 0x3000, ia, sizeof ia, &la, NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_render(y, 0x3000, ib, sizeof ib, &lb, NULL), FK_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(ia, ib, la);
    struct fk_nvs_image *img = NULL;
    assert_int_equal(fk_nvs_image_read(ia, la, &img), FK_OK);
    const struct fk_nvs_item *s = fk_nvs_image_find(img, "n", "s");
    assert_non_null(s);
    assert_string_equal((const char *)s->data, "a,b \"q\"");
    const struct fk_nvs_item *h = fk_nvs_image_find(img, "n", "h");
    assert_non_null(h);
    assert_int_equal(h->len, 2);
    assert_int_equal(h->data[0], 0x0A);
    assert_int_equal(h->data[1], 0x0B);
    fk_nvs_image_free(img);
    fk_nvs_builder_free(x);
    fk_nvs_builder_free(y);
}

/* The generator's blob_fill(N;0xPP) / blob_sz_fill(N;0xPP) encodings: value bytes padded to N
 * with 0xPP, the second with the value's length (u32 LE) in front. */
static void blob_fill_encodings_pad_as_the_generator_does(void **state) {
    (void)state;
    const char *csv = "key,type,encoding,value\nn,namespace,,\n"
                      "f,data,blob_fill(8;0xAA),abc\n"
                      "g,data,blob_sz_fill(4;0x00),ab\n"
                      "h,data,blob_fill(3;0xff),\n";
    struct fk_nvs_builder *b = NULL;
    assert_int_equal(fk_nvs_builder_new(2, &b), FK_OK);
    assert_int_equal(fk_nvs_csv_load(b, csv, strlen(csv), "t.csv", NULL, NULL), FK_OK);
    uint8_t img[0x3000];
    size_t len = 0;
    assert_int_equal(fk_nvs_builder_render(b, sizeof img, img, sizeof img, &len, NULL), FK_OK);
    fk_nvs_builder_free(b);
    struct fk_nvs_image *r = NULL;
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_OK);
    const struct fk_nvs_item *f = fk_nvs_image_find(r, "n", "f");
    const struct fk_nvs_item *g = fk_nvs_image_find(r, "n", "g");
    const struct fk_nvs_item *h = fk_nvs_image_find(r, "n", "h");
    assert_non_null(f);
    assert_non_null(g);
    assert_non_null(h);
    assert_int_equal(f->len, 8);
    assert_memory_equal(f->data, "abc\xaa\xaa\xaa\xaa\xaa", 8);
    assert_int_equal(g->len, 8);
    assert_memory_equal(g->data, "\x02\x00\x00\x00" "ab\x00\x00", 8);
    assert_int_equal(h->len, 3);
    assert_memory_equal(h->data, "\xff\xff\xff", 3);
    fk_nvs_image_free(r);
    struct fk_diag d;
    assert_int_equal(load_text("key,type,encoding,value\nn,namespace,,\nf,data,blob_fill(2;0xAA),abc\n",
                               2, 0, &d, NULL),
                     FK_E_RANGE);
    assert_int_equal(d.line, 3);
    assert_int_equal(load_text("key,type,encoding,value\nn,namespace,,\nf,data,blob_fill(2;0xZZ),a\n",
                               2, 0, &d, NULL),
                     FK_E_PARSE);
    assert_non_null(strstr(d.msg, "blob_fill(N;0xPP)"));
}

/* The provisioning image through the builder API (what the keys module does) equals the
 * generator's prov_plain.bin. */
static void builder_api_reproduces_the_provisioning_vector(void **state) {
    (void)state;
    uint8_t psk[32];
    unsigned n = 0;
    assert_int_equal(EVP_Digest("fleetkey-vector-psk-1", 21, psk, &n, EVP_sha256(), NULL), 1);
    size_t dlen = 0;
    uint8_t *der = read_vec("prov_ota_pub.der", &dlen);
    struct fk_nvs_builder *b = NULL;
    assert_int_equal(fk_nvs_builder_new(2, &b), FK_OK);
    assert_int_equal(fk_nvs_builder_version(b), 2);
    assert_int_equal(fk_nvs_builder_namespace(b, "security", NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_add_blob(b, "dtls_psk", psk, sizeof psk, NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_add_str(b, "psk_id", "robot-AABBCCDDEEFF", NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_add_blob(b, "ota_pubkey", der, dlen, NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_namespace(b, "wifi", NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_add_str(b, "ssid", "FleetLab-5G", NULL), FK_OK);
    assert_int_equal(fk_nvs_builder_add_str(b, "password", "Tr41n-R0b0t#2026", NULL), FK_OK);
    uint8_t *img = malloc(0x6000);
    size_t len = 0;
    assert_int_equal(fk_nvs_builder_render(b, 0x6000, img, 0x6000, &len, NULL), FK_OK);
    size_t glen = 0;
    uint8_t *gen = read_vec("prov_plain.bin", &glen);
    assert_int_equal(len, glen);
    assert_memory_equal(img, gen, len);
    /* Rendering twice gives the same bytes; a too-small buffer is refused. */
    assert_int_equal(fk_nvs_builder_render(b, 0x6000, img, 0x6000, &len, NULL), FK_OK);
    assert_memory_equal(img, gen, len);
    assert_int_equal(fk_nvs_builder_render(b, 0x6000, img, 0x5000, &len, NULL), FK_E_NOSPACE);
    /* Integer ranges through the API: signed types read svalue, unsigned uvalue. */
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_nvs_builder_add_int(b, "a", FKD_NVS_I8, -128, 0, &d), FK_OK);
    assert_int_equal(fk_nvs_builder_add_int(b, "b", FKD_NVS_I8, 128, 0, &d), FK_E_RANGE);
    assert_int_equal(fk_nvs_builder_add_int(b, "c", FKD_NVS_U32, -1, 0xFFFFFFFFu, &d), FK_OK);
    assert_int_equal(fk_nvs_builder_add_int(b, "d", FKD_NVS_U32, 0, 0x100000000u, &d),
                     FK_E_RANGE);
    assert_int_equal(fk_nvs_builder_add_int(b, "e", FKD_NVS_STR, 0, 0, &d), FK_E_ARG);
    assert_int_equal(fk_nvs_builder_add_str(b, "", "x", &d), FK_E_ARG);
    fk_nvs_builder_free(b);
    assert_int_equal(fk_nvs_builder_new(3, &b), FK_E_ARG);
    assert_null(b);
    free(gen);
    free(img);
    free(der);
    fk_wipe(psk, sizeof psk);
}

/* ---- the reader on damaged images ----------------------------------------------------- */

static int has_problem(const struct fk_nvs_image *img, enum fk_err code, size_t offset,
                       const char *words) {
    for (size_t i = 0; i < fk_nvs_image_problem_count(img); i++) {
        const struct fk_nvs_problem *p = fk_nvs_image_problem(img, i);
        if (p->code == code && p->offset == offset && strstr(p->reason, words) != NULL) {
            return 1;
        }
    }
    for (size_t i = 0; i < fk_nvs_image_problem_count(img); i++) {
        const struct fk_nvs_problem *p = fk_nvs_image_problem(img, i);
        print_message("  problem: %s at 0x%zx: %s\n", fk_errname(p->code), p->offset,
                      p->reason);
    }
    return 0;
}

/* Rewrites the entry at off with f applied, keeping its CRC valid (a forged entry). */
static void forge(uint8_t *img, size_t off, void (*f)(uint8_t *raw)) {
    f(img + off);
    fk_store_le32(img + off + 4, fkd_nvs_entry_crc(img + off));
}

static void span_200(uint8_t *raw) {
    raw[2] = 200;
}
static void size_4000(uint8_t *raw) {
    fk_store_le16(raw + 24, 4000);
}
static void idx_size_huge(uint8_t *raw) {
    fk_store_le32(raw + 24, 0x7FFFFFFFu);
}
static void idx_three_chunks(uint8_t *raw) {
    raw[28] = 3;
}
static void type_0x33(uint8_t *raw) {
    raw[1] = 0x33;
}

static void reader_reports_each_damage_with_offset_and_reason(void **state) {
    (void)state;
    size_t len = 0;
    uint8_t *orig = read_vec("v2_plain.bin", &len);
    uint8_t *img = malloc(len);
    struct fk_nvs_image *r = NULL;
    /* v2_plain: page 0 entry 0 ns 'security', 1-2 dtls_psk chunk, 3 its index, 9 boot_count,
     * 12 fw_blob chunk 0; page 1 entry 0 fw_blob chunk 1, 45 fw_blob index, 47 password. */
    const size_t e1 = 64 + 32, e3 = 64 + 3 * 32, e9 = 64 + 9 * 32;
    const size_t p1e45 = 4096 + 64 + 45 * 32, p1e0 = 4096 + 64, p1e47 = 4096 + 64 + 47 * 32;

    memcpy(img, orig, len);
    img[5] ^= 1; /* sequence number: page header CRC */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_CRC);
    assert_true(has_problem(r, FK_E_CRC, 28, "page header CRC"));
    assert_null(fk_nvs_image_find(r, "security", "boot_count")); /* page skipped */
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    img[e9 + 10] ^= 0x20; /* a key byte of boot_count: entry CRC */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_CRC);
    assert_true(has_problem(r, FK_E_CRC, e9, "entry CRC"));
    assert_null(fk_nvs_image_find(r, "security", "boot_count"));
    assert_non_null(fk_nvs_image_find(r, "security", "dev_id")); /* the rest is still read */
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    img[e1 + 32 + 5] ^= 0xFF; /* dtls_psk data: data CRC */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_CRC);
    assert_true(has_problem(r, FK_E_CRC, e1 + 32, "data CRC"));
    assert_true(has_problem(r, FK_E_NOTFOUND, e3, "chunk 0, which is missing"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    forge(img, e9, span_200);
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_PARSE);
    assert_true(has_problem(r, FK_E_PARSE, e9, "runs past the page end"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    forge(img, p1e47, span_200); /* near the end of a page: 47 + 200 > 126 */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_PARSE);
    assert_true(has_problem(r, FK_E_PARSE, p1e47, "runs past the page end"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    forge(img, p1e47, size_4000); /* string size larger than its span */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_PARSE);
    assert_true(has_problem(r, FK_E_PARSE, p1e47, "needs span 126"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    forge(img, p1e45, idx_size_huge);
    /* rc is the first problem by offset: fw_blob's chunk 0 on page 0 is now an orphan. */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_NOTFOUND);
    assert_true(has_problem(r, FK_E_NOTFOUND, 64 + 12 * 32, "belongs to no blob index"));
    assert_true(has_problem(r, FK_E_PARSE, p1e45, "larger than the image"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    forge(img, p1e45, idx_three_chunks);
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_NOTFOUND);
    assert_true(has_problem(r, FK_E_NOTFOUND, p1e45, "chunk 2, which is missing"));
    assert_null(fk_nvs_image_find(r, "security", "fw_blob"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    fkd_nvs_bitmap_set(img + 4096 + 32, 1, FKD_NVS_ENTRY_ERASED); /* a data entry of chunk 1 */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_PARSE);
    assert_true(has_problem(r, FK_E_PARSE, p1e0, "not all marked written"));
    assert_true(has_problem(r, FK_E_NOTFOUND, p1e45, "chunk 1, which is missing"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    forge(img, e9, type_0x33);
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_PARSE);
    assert_true(has_problem(r, FK_E_PARSE, e9, "unknown item type 0x33"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    fk_store_le32(img + 4096, 0x12345678u); /* page state: page 1 skipped, chunk 0 orphaned */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_NOTFOUND);
    assert_true(has_problem(r, FK_E_PARSE, 4096, "page state 0x12345678"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    img[3 * 4096 + 100] = 0; /* data in an erased page */
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_PARSE);
    assert_true(has_problem(r, FK_E_PARSE, 3 * 4096, "uninitialised"));
    fk_nvs_image_free(r);

    memcpy(img, orig, len);
    img[8] = 0x01; /* page version (the header CRC covers it: fix the CRC) */
    fk_store_le32(img + 28, fkd_nvs_header_crc(img));
    assert_int_equal(fk_nvs_image_read(img, len, &r), FK_E_UNSUPPORTED);
    assert_true(has_problem(r, FK_E_UNSUPPORTED, 8, "version byte 0x01"));
    fk_nvs_image_free(r);

    /* Every truncation: an image cut anywhere is read without a crash and a cut inside a
     * page is reported. */
    for (size_t cut = 0; cut <= len; cut += (cut < 8192 ? 1 : 97)) {
        assert_int_equal(fk_nvs_image_read(orig, cut, &r) == FK_OK, cut % 4096 == 0 && cut >= 8192);
        if (cut % 4096 != 0 || cut == 0) {
            assert_true(has_problem(r, FK_E_TRUNCATED, cut - cut % 4096, cut ? "truncated" : "empty"));
        }
        fk_nvs_image_free(r);
    }
    /* Cut after page 0: fw_blob lost its second chunk and index; the chunk is an orphan. */
    assert_int_equal(fk_nvs_image_read(orig, 4096, &r), FK_E_NOTFOUND);
    assert_true(has_problem(r, FK_E_NOTFOUND, 64 + 12 * 32, "belongs to no blob index"));
    fk_nvs_image_free(r);
    assert_int_equal(fk_nvs_image_read(NULL, 0, &r), FK_E_TRUNCATED);
    fk_nvs_image_free(r);
    assert_int_equal(fk_nvs_image_read(NULL, 5, &r), FK_E_ARG);
    assert_null(r);
    free(img);
    free(orig);
}

/* Tamper test per vector: one flipped byte in any written entry of any vector (plain, or
 * encrypted and read with its keys) is reported; the untouched vector reads clean. */
static void every_written_entry_of_every_vector_is_tamper_evident(void **state) {
    (void)state;
    struct vcase cases[32];
    size_t n = load_cases(cases, 32);
    for (size_t c = 0; c < n; c++) {
        char bin[96];
        snprintf(bin, sizeof bin, "%.63s.bin", cases[c].name);
        size_t len = 0;
        uint8_t *orig = read_vec(bin, &len);
        int enc = strcmp(cases[c].keyfile, "-") != 0;
        struct fk_nvs_keys k;
        if (enc) {
            size_t klen = 0;
            uint8_t *kb = read_vec(cases[c].keyfile, &klen);
            assert_int_equal(fk_nvs_keys_parse(kb, klen, &k, NULL), FK_OK);
            free(kb);
        }
        uint8_t *img = malloc(len);
        struct fk_nvs_image *r = NULL;
        assert_int_equal(enc ? fk_nvs_image_read_encrypted(orig, len, &k, &r)
                             : fk_nvs_image_read(orig, len, &r),
                         FK_OK);
        fk_nvs_image_free(r);
        size_t flips = 0;
        for (size_t p = 0; p + 4096 <= len; p += 4096) {
            for (unsigned e = 0; e < 126; e++) {
                if (fkd_nvs_bitmap_get(orig + p + 32, e) != FKD_NVS_ENTRY_WRITTEN) {
                    continue;
                }
                size_t off = p + 64 + 32 * (size_t)e + (e * 7) % 32; /* vary the byte */
                memcpy(img, orig, len);
                img[off] ^= 0x04;
                enum fk_err rc = enc ? fk_nvs_image_read_encrypted(img, len, &k, &r)
                                     : fk_nvs_image_read(img, len, &r);
                if (rc == FK_OK || fk_nvs_image_problem_count(r) == 0) {
                    fail_msg("%s: byte 0x%zx flipped, not detected", bin, off);
                }
                fk_nvs_image_free(r);
                flips++;
            }
        }
        assert_true(flips > 0);
        free(img);
        free(orig);
    }
}

/* ---- keys ----------------------------------------------------------------------------- */

static void keys_round_trip_and_reject_bad_crc(void **state) {
    (void)state;
    struct fk_nvs_keys k;
    struct fk_nvs_keys k2;
    assert_int_equal(fk_nvs_keys_generate(&k), FK_OK);
    assert_false(fk_ct_equal(k.eky, k.tky, 32));
    uint8_t buf[FK_NVS_KEYS_SIZE];
    fk_nvs_keys_encode(&k, buf);
    assert_int_equal(fk_nvs_keys_parse(buf, sizeof buf, &k2, NULL), FK_OK);
    assert_memory_equal(&k, &k2, sizeof k);
    for (size_t i = 68; i < sizeof buf; i++) {
        assert_int_equal(buf[i], 0xFF);
    }
    struct fk_diag d;
    fk_diag_init(&d);
    buf[40] ^= 1;
    assert_int_equal(fk_nvs_keys_parse(buf, sizeof buf, &k2, &d), FK_E_CRC);
    assert_non_null(strstr(d.msg, "bad key file CRC"));
    buf[40] ^= 1;
    assert_int_equal(fk_nvs_keys_parse(buf, 67, &k2, &d), FK_E_TRUNCATED);
    assert_int_equal(fk_nvs_keys_parse(buf, 68, &k2, &d), FK_OK);
    struct fk_nvs_keys same;
    memset(&same, 0x33, sizeof same); /* eky == tky */
    fk_nvs_keys_encode(&same, buf);
    assert_int_equal(fk_nvs_keys_parse(buf, sizeof buf, &k2, &d), FK_E_CRYPTO);
    assert_non_null(strstr(d.msg, "eky == tky"));
    memset(buf, 0xFF, sizeof buf); /* an erased partition */
    assert_int_equal(fk_nvs_keys_parse(buf, sizeof buf, &k2, &d), FK_E_CRC);
    /* Encrypt then decrypt is the identity on a real image, and changes every entry. */
    size_t len = 0;
    uint8_t *orig = read_vec("edge_plain.bin", &len);
    uint8_t *img = malloc(len);
    memcpy(img, orig, len);
    assert_int_equal(fk_nvs_encrypt(img, len, &k), FK_OK);
    assert_memory_equal(img, orig, 64); /* header and bitmap stay plain */
    assert_true(memcmp(img + 64, orig + 64, 32) != 0);
    assert_int_equal(fk_nvs_decrypt(img, len, &k), FK_OK);
    assert_memory_equal(img, orig, len);
    assert_int_equal(fk_nvs_encrypt(img, len - 1, &k), FK_E_ARG);
    free(img);
    free(orig);
    fk_wipe(&k, sizeof k);
}

/* ---- partition table ------------------------------------------------------------------ */

static void partition_default_table_round_trips(void **state) {
    (void)state;
    struct fk_partition_table t;
    struct fk_partition_table u;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_partition_csv_parse(fk_partition_default_csv,
                                            strlen(fk_partition_default_csv), "default", &t, &d),
                     FK_OK);
    assert_int_equal(t.count, 6);
    const struct fk_partition *nvs = fk_partition_find(&t, "nvs");
    assert_non_null(nvs);
    assert_int_equal(nvs->offset, 0x9000);
    assert_int_equal(nvs->size, 0x6000);
    assert_int_equal(nvs->subtype, FK_PART_SUB_NVS);
    const struct fk_partition *keys = fk_partition_find_type(&t, FK_PART_DATA,
                                                             FK_PART_SUB_NVS_KEYS);
    assert_non_null(keys);
    assert_string_equal(keys->name, "nvs_keys");
    assert_int_equal(keys->offset, 0xF000);
    assert_int_equal(keys->flags, FK_PART_FLAG_ENCRYPTED);
    const struct fk_partition *ota1 = fk_partition_find(&t, "ota_1");
    assert_int_equal(ota1->subtype, 0x11);
    assert_true(ota1->offset + ota1->size <= 4u * 1024 * 1024);
    assert_null(fk_partition_find(&t, "factory"));

    uint8_t bin[FK_PARTITION_TABLE_SIZE];
    size_t n = 0;
    assert_int_equal(fk_partition_encode(&t, bin, sizeof bin, &n), FK_OK);
    assert_int_equal(n, FK_PARTITION_TABLE_SIZE);
    /* The first entry, byte by byte, as gen_esp32part.py packs it ('<2sBBLL16sL'). */
    static const uint8_t first[32] = {0xAA, 0x50, 0x01, 0x02, 0x00, 0x90, 0x00, 0x00,
                                      0x00, 0x60, 0x00, 0x00, 'n',  'v',  's',  0};
    assert_memory_equal(bin, first, 28);
    assert_int_equal(bin[6 * 32], 0xEB);
    assert_int_equal(bin[7 * 32], 0xFF);
    assert_int_equal(fk_partition_parse(bin, n, &u, &d), FK_OK);
    assert_int_equal(u.count, t.count);
    assert_memory_equal(u.parts, t.parts, t.count * sizeof t.parts[0]);

    char csv[2048];
    size_t clen = 0;
    assert_int_equal(fk_partition_csv_write(&t, csv, sizeof csv, &clen), FK_OK);
    assert_int_equal(fk_partition_csv_parse(csv, clen, "written", &u, &d), FK_OK);
    assert_memory_equal(u.parts, t.parts, t.count * sizeof t.parts[0]);
    assert_int_equal(fk_partition_csv_write(&t, csv, 40, &clen), FK_E_NOSPACE);
}

static void partition_offsets_are_computed_like_gen_esp32part(void **state) {
    (void)state;
    const char *csv = "# Name, Type, SubType, Offset, Size, Flags\n"
                      "nvs,      data, nvs,     ,        0x4000,\n"
                      "otadata,  data, ota,     ,        0x2000,\n"
                      "phy_init, data, phy,     ,        0x1000,\n"
                      "factory,  app,  factory, ,        1M,\n"
                      "ota_0,    app,  ota_0,   ,        1M,\n"
                      "ota_15,   app,  ota_15,  ,        64K,\n"
                      "store,    data, spiffs,  ,        128K, readonly:encrypted\n";
    struct fk_partition_table t;
    assert_int_equal(fk_partition_csv_parse(csv, strlen(csv), "p.csv", &t, NULL), FK_OK);
    /* ESP-IDF's partitions_two_ota.csv lays out as nvs 0x9000, otadata 0xd000, phy 0xf000,
     * factory 0x10000, ota_0 0x110000. */
    const uint32_t offs[] = {0x9000, 0xd000, 0xf000, 0x10000, 0x110000, 0x210000, 0x220000};
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(t.parts[i].offset, offs[i]);
    }
    assert_int_equal(t.parts[3].size, 0x100000);
    assert_int_equal(t.parts[5].subtype, 0x1F);
    assert_int_equal(t.parts[6].flags, FK_PART_FLAG_ENCRYPTED | FK_PART_FLAG_READONLY);
}

static void partition_parsers_reject_bad_tables(void **state) {
    (void)state;
    struct {
        const char *csv;
        enum fk_err rc;
        const char *words;
    } bad[] = {
        {"nvs, data, nvs, 0x9000, 0x6000\nnvs, data, nvs, , 0x1000\n", FK_E_EXISTS, "twice"},
        {"a_name_of_17_char, data, nvs, , 0x1000\n", FK_E_RANGE, "1..16"},
        {"x, data, nope, , 0x1000\n", FK_E_PARSE, "unknown subtype"},
        {"x, flash, nvs, , 0x1000\n", FK_E_PARSE, "type"},
        {"x, app, ota_16, , 0x10000\n", FK_E_PARSE, "unknown subtype"},
        {"x, app, factory, 0x18000, 0x10000\n", FK_E_RANGE, "not aligned"},
        {"x, data, nvs, 0x9000, 0x6000\ny, data, nvs, 0xA000, 0x1000\n", FK_E_RANGE,
         "overlaps"},
        {"x, data, nvs, 0x8000, 0x1000\n", FK_E_RANGE, "partition table"},
        {"x, data, nvs, , 0x1001\n", FK_E_RANGE, "multiple"},
        {"x, data, nvs, , \n", FK_E_PARSE, "size"},
        {"x, data, nvs, , 0x1000, secret\n", FK_E_PARSE, "unknown flag"},
        {"x, data, nvs, , 0x1000, , extra\n", FK_E_PARSE, "more than 6"},
        {"# only a comment\n", FK_E_PARSE, "no partitions"},
    };
    struct fk_partition_table t;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fk_diag d;
        fk_diag_init(&d);
        enum fk_err rc = fk_partition_csv_parse(bad[i].csv, strlen(bad[i].csv), "p.csv", &t, &d);
        if (rc != bad[i].rc || strstr(d.msg, bad[i].words) == NULL) {
            fail_msg("case %zu: %s: %s", i, fk_errname(rc), d.msg);
        }
    }
    /* 94 partitions + the MD5 entry + the end marker fill the 0xC00-byte table; 95 do not
     * fit (gen_esp32part.py refuses them too). */
    static char many[96 * 40];
    size_t used = 0;
    for (int i = 0; i < 95; i++) {
        if (i == 94) {
            assert_int_equal(fk_partition_csv_parse(many, used, "p.csv", &t, NULL), FK_OK);
            uint8_t full[FK_PARTITION_TABLE_SIZE];
            size_t fn = 0;
            struct fk_partition_table back;
            assert_int_equal(fk_partition_encode(&t, full, sizeof full, &fn), FK_OK);
            assert_int_equal(full[94 * 32], 0xEB);
            assert_int_equal(full[95 * 32], 0xFF);
            assert_int_equal(fk_partition_parse(full, fn, &back, NULL), FK_OK);
            assert_int_equal(back.count, 94);
        }
        used += (size_t)snprintf(many + used, sizeof many - used, "p%d, data, nvs, , 0x1000\n", i);
    }
    assert_int_equal(fk_partition_csv_parse(many, used, "p.csv", &t, NULL), FK_E_TOOBIG);

    assert_int_equal(fk_partition_csv_parse(fk_partition_default_csv,
                                            strlen(fk_partition_default_csv), NULL, &t, NULL),
                     FK_OK);
    uint8_t bin[FK_PARTITION_TABLE_SIZE];
    uint8_t img[FK_PARTITION_TABLE_SIZE];
    size_t n = 0;
    assert_int_equal(fk_partition_encode(&t, bin, sizeof bin, &n), FK_OK);
    struct fk_diag d;
    fk_diag_init(&d);
    memcpy(img, bin, n);
    img[32 + 1] = 0x51; /* magic of entry 1 */
    assert_int_equal(fk_partition_parse(img, n, &t, &d), FK_E_PARSE);
    assert_int_equal(d.offset, 32);
    memcpy(img, bin, n);
    img[4] ^= 1; /* nvs offset: MD5 mismatch */
    assert_int_equal(fk_partition_parse(img, n, &t, &d), FK_E_CRC);
    assert_int_equal(d.offset, 6 * 32);
    /* Every truncation before the end marker is reported; none reads past len. */
    for (size_t cut = 0; cut < 7 * 32 + 32; cut++) {
        assert_int_equal(fk_partition_parse(bin, cut, &t, NULL), FK_E_TRUNCATED);
    }
    assert_int_equal(fk_partition_parse(bin, 8 * 32, &t, NULL), FK_OK);
    assert_int_equal(fk_partition_encode(&t, bin, 100, &n), FK_E_NOSPACE);
}

int main(void) {
    const char *v = getenv("FK_VECTORS");
    snprintf(vdir, sizeof vdir, "%s/nvs", v != NULL ? v : "tests/vectors");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_vector_is_reproduced_byte_for_byte),
        cmocka_unit_test(reader_matches_nvs_tool_on_every_plain_vector),
        cmocka_unit_test(reader_reads_encrypted_vectors_with_their_keys),
        cmocka_unit_test(revisited_namespace_keeps_its_original_index),
        cmocka_unit_test(strings_of_3969_and_4000_bytes_are_accepted_and_read_back),
        cmocka_unit_test(generator_rejects_are_rejected_with_clear_messages),
        cmocka_unit_test(csv_loader_rejects_bad_input_naming_the_line),
        cmocka_unit_test(data_that_does_not_fit_says_how_much_is_needed),
        cmocka_unit_test(csv_quoting_comments_and_crlf_do_not_change_the_image),
        cmocka_unit_test(builder_api_reproduces_the_provisioning_vector),
        cmocka_unit_test(blob_fill_encodings_pad_as_the_generator_does),
        cmocka_unit_test(reader_reports_each_damage_with_offset_and_reason),
        cmocka_unit_test(every_written_entry_of_every_vector_is_tamper_evident),
        cmocka_unit_test(keys_round_trip_and_reject_bad_crc),
        cmocka_unit_test(partition_default_table_round_trips),
        cmocka_unit_test(partition_offsets_are_computed_like_gen_esp32part),
        cmocka_unit_test(partition_parsers_reject_bad_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
