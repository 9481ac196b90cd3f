/* Unit tests of the device's partition table reader (device/src/boot/part.c) against tables the
 * host library encodes (fleetkey/partition.h), and its negative cases. */
#include "fkd/flash.h"
#include "fkd/part.h"
#include "fleetkey/partition.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static uint8_t table[FK_PARTITION_TABLE_SIZE];
static size_t tlen;

static void encode_csv(const char *csv) {
    static struct fk_partition_table ht;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_partition_csv_parse(csv, strlen(csv), "t.csv", &ht, &d), FK_OK);
    assert_int_equal(fk_partition_encode(&ht, table, sizeof table, &tlen), FK_OK);
}

static void part_reads_host_default_table(void **state) {
    (void)state;
    encode_csv(fk_partition_default_csv);
    struct fkd_part_table t;
    assert_int_equal(fkd_part_parse(table, tlen, 4u << 20, &t), FKD_OK);
    assert_true(t.has_md5);
    const struct fkd_part *nvs = fkd_part_find(&t, FKD_PART_DATA, FKD_PART_SUB_NVS, NULL);
    assert_non_null(nvs);
    assert_int_equal(nvs->offset, 0x9000);
    assert_int_equal(nvs->size, 0x6000);
    assert_string_equal(nvs->label, "nvs");
    const struct fkd_part *keys = fkd_part_find(&t, 0, 0, "nvs_keys");
    assert_non_null(keys);
    assert_int_equal(keys->subtype, FKD_PART_SUB_NVS_KEYS);
    assert_true(keys->flags & FKD_PART_FLAG_ENCRYPTED);
    assert_non_null(fkd_part_find(&t, FKD_PART_APP, FKD_PART_SUB_OTA_1, NULL));
    assert_null(fkd_part_find(&t, 0, 0, "missing"));
    /* Through a flash. */
    static uint8_t chip[0x20000];
    memset(chip, 0xFF, sizeof chip);
    memcpy(chip + FKD_PART_TABLE_OFFSET, table, tlen);
    struct fkd_flash_mem m;
    struct fkd_flash f;
    fkd_flash_mem_init(&m, chip, sizeof chip, &f);
    assert_int_equal(fkd_part_load(&f, &t), FKD_E_RANGE); /* ota_0 lies past 128 KiB */
}

static void part_rejects_tampering_and_bad_layouts(void **state) {
    (void)state;
    struct fkd_part_table t;
    encode_csv(fk_partition_default_csv);
    uint8_t bad[FK_PARTITION_TABLE_SIZE];
    memcpy(bad, table, tlen);
    bad[12] ^= 0x01; /* label "nvs" -> "ovs": the MD5 entry no longer matches */
    assert_int_equal(fkd_part_parse(bad, tlen, 0, &t), FKD_E_CRC);
    assert_int_equal(t.count, 0);
    memcpy(bad, table, tlen);
    bad[0] = 0xAB; /* bad magic */
    assert_int_equal(fkd_part_parse(bad, tlen, 0, &t), FKD_E_PARSE);
    memset(bad, 0xFF, sizeof bad);
    assert_int_equal(fkd_part_parse(bad, sizeof bad, 0, &t), FKD_E_PARSE); /* empty */
    assert_int_equal(fkd_part_parse(table, 31, 0, &t), FKD_E_PARSE);       /* truncated */

    /* Hand-made entries without an MD5 entry: overlap, misalignment, duplicate label. */
    static const struct {
        uint32_t off2, size2;
        const char *label2;
        enum fkd_err rc;
    } cases[] = {
        {0xA000, 0x1000, "b", FKD_E_PARSE},  /* overlaps a */
        {0xF800, 0x1000, "b", FKD_E_PARSE},  /* not 4 KiB aligned */
        {0xF000, 0x1000, "a", FKD_E_PARSE},  /* duplicate label */
        {0xF000, 0x1000, "b", FKD_OK},
        {0xF000, 0xFFFFF000u, "b", FKD_E_RANGE}, /* wraps */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(bad, 0xFF, sizeof bad);
        uint8_t *e = bad;
        for (int k = 0; k < 2; k++, e += 32) {
            memset(e, 0, 32);
            e[0] = 0xAA;
            e[1] = 0x50;
            e[2] = FKD_PART_DATA;
            e[3] = FKD_PART_SUB_NVS;
            fkd_store_le32(e + 4, k == 0 ? 0x9000 : cases[i].off2);
            fkd_store_le32(e + 8, k == 0 ? 0x6000 : cases[i].size2);
            memcpy(e + 12, k == 0 ? "a" : cases[i].label2, 1);
        }
        assert_int_equal(fkd_part_parse(bad, sizeof bad, 0, &t), cases[i].rc);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(part_reads_host_default_table),
        cmocka_unit_test(part_rejects_tampering_and_bad_layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
