/* The ESP-IDF port's pure decisions (device/port/esp-idf/idf_logic.c), run on the host: the
 * partition view the port builds from esp_partition_find() must equal what the library's own
 * table reader (fkd_part_parse) makes of the same table, and the posture and rollback answers
 * must follow the rules written in fkd_idf_logic.h. */
#include "fkd/ota.h"
#include "fkd/part.h"
#include "fkd_idf_logic.h"
#include "fleetkey/partition.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first. */
#include <cmocka.h>

#include <string.h>

/* The default table as the library reads it from flash (host encoder -> device parser). */
static void default_table(struct fkd_part_table *t) {
    static struct fk_partition_table ht;
    static uint8_t bin[FK_PARTITION_TABLE_SIZE];
    size_t len = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    assert_int_equal(fk_partition_csv_parse(fk_partition_default_csv,
                                            strlen(fk_partition_default_csv), "default", &ht, &d),
                     FK_OK);
    assert_int_equal(fk_partition_encode(&ht, bin, sizeof bin, &len), FK_OK);
    assert_int_equal(fkd_part_parse(bin, len, 4u << 20, t), FKD_OK);
}

/* What the port builds: the same partitions, as esp_partition_find() lists them. */
static void port_table(const struct fkd_part_table *from, struct fkd_part_table *t) {
    memset(t, 0, sizeof *t);
    for (unsigned i = 0; i < from->count; i++) {
        const struct fkd_part *p = &from->part[i];
        struct fkd_idf_part ip = {p->type, p->subtype, p->offset,
                                  p->size, p->label,   (p->flags & FKD_PART_FLAG_ENCRYPTED) != 0};
        assert_int_equal(fkd_idf_table_add(t, &ip), FKD_OK);
    }
}

static void idf_table_equals_library_reader(void **state) {
    (void)state;
    static struct fkd_part_table lib, port;
    default_table(&lib);
    port_table(&lib, &port);
    assert_int_equal(port.count, lib.count);
    for (unsigned i = 0; i < lib.count; i++) {
        assert_int_equal(port.part[i].type, lib.part[i].type);
        assert_int_equal(port.part[i].subtype, lib.part[i].subtype);
        assert_int_equal(port.part[i].offset, lib.part[i].offset);
        assert_int_equal(port.part[i].size, lib.part[i].size);
        assert_int_equal(port.part[i].flags, lib.part[i].flags);
        assert_string_equal(port.part[i].label, lib.part[i].label);
    }
    /* Every role resolves, by subtype and by its default label, to the partition the library
     * finds by type/subtype: the two lookups never disagree on the default table. */
    for (int r = 0; r < FKD_IDF_ROLE_COUNT; r++) {
        uint8_t type = 0xFF, sub = 0xFF;
        const char *label = fkd_idf_role_label((enum fkd_idf_role)r, &type, &sub);
        assert_non_null(label);
        const struct fkd_part *want = fkd_part_find(&lib, type, sub, NULL);
        assert_non_null(want);
        enum fkd_err why = FKD_E_INTERNAL;
        const struct fkd_part *a = fkd_idf_part_lookup(&port, (enum fkd_idf_role)r, NULL, &why);
        assert_int_equal(why, FKD_OK);
        assert_non_null(a);
        assert_int_equal(a->offset, want->offset);
        const struct fkd_part *b = fkd_idf_part_lookup(&port, (enum fkd_idf_role)r, label, &why);
        assert_int_equal(why, FKD_OK);
        assert_ptr_equal(a, b);
    }
    assert_null(fkd_idf_role_label(FKD_IDF_ROLE_COUNT, NULL, NULL));
}

static void idf_lookup_refuses_wrong_kind_and_missing(void **state) {
    (void)state;
    static struct fkd_part_table lib, port;
    default_table(&lib);
    port_table(&lib, &port);
    enum fkd_err why = FKD_OK;
    /* "phy_init" exists but is data/phy: naming it as the NVS is a configuration error. */
    assert_null(fkd_idf_part_lookup(&port, FKD_IDF_ROLE_NVS, "phy_init", &why));
    assert_int_equal(why, FKD_E_TYPE);
    assert_null(fkd_idf_part_lookup(&port, FKD_IDF_ROLE_NVS, "nvs_creds", &why));
    assert_int_equal(why, FKD_E_NOTFOUND);
    assert_null(fkd_idf_part_lookup(&port, FKD_IDF_ROLE_OTA_0, "ota_1", &why));
    assert_int_equal(why, FKD_E_TYPE);
    assert_null(fkd_idf_part_lookup(&port, FKD_IDF_ROLE_COUNT, NULL, &why));
    assert_int_equal(why, FKD_E_ARG);
    assert_null(fkd_idf_part_lookup(NULL, FKD_IDF_ROLE_NVS, NULL, NULL));
    /* A table without nvs_keys: found by neither subtype nor label. */
    struct fkd_part_table small;
    memset(&small, 0, sizeof small);
    struct fkd_idf_part nvs = {FKD_PART_DATA, FKD_PART_SUB_NVS, 0x9000, 0x6000, "nvs", 0};
    assert_int_equal(fkd_idf_table_add(&small, &nvs), FKD_OK);
    assert_null(fkd_idf_part_lookup(&small, FKD_IDF_ROLE_NVS_KEYS, NULL, &why));
    assert_int_equal(why, FKD_E_NOTFOUND);
}

static void idf_table_add_rejects_bad_partitions(void **state) {
    (void)state;
    struct fkd_part_table t;
    memset(&t, 0, sizeof t);
    struct fkd_idf_part ok = {FKD_PART_DATA, FKD_PART_SUB_NVS, 0x9000, 0x6000, "nvs", 0};
    assert_int_equal(fkd_idf_table_add(&t, &ok), FKD_OK);
    struct fkd_idf_part p = ok;
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE); /* duplicate label */
    p.label = "other";
    p.address = 0xA000; /* overlaps nvs */
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    p.address = 0x8000; /* ends inside nvs */
    p.size = 0x2000;
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    p.address = 0xF800; /* data not 4 KiB aligned */
    p.size = 0x1000;
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    p.address = 0xF000;
    p.size = 0;
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    p.size = 0x800; /* size not a sector multiple */
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    struct fkd_idf_part app = {FKD_PART_APP, FKD_PART_SUB_OTA_0, 0x21000, 0x10000, "ota_0", 0};
    assert_int_equal(fkd_idf_table_add(&t, &app), FKD_E_PARSE); /* app not 64 KiB aligned */
    app.address = 0xFFFF0000u;
    app.size = 0x20000; /* wraps */
    assert_int_equal(fkd_idf_table_add(&t, &app), FKD_E_RANGE);
    p.size = 0x1000;
    p.label = "";
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    p.label = "seventeen_chars_x";
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_PARSE);
    p.label = NULL;
    assert_int_equal(fkd_idf_table_add(&t, &p), FKD_E_ARG);
    assert_int_equal(t.count, 1);
    /* Full. */
    char labels[FKD_PART_MAX][8];
    for (unsigned i = 1; i < FKD_PART_MAX; i++) {
        labels[i][0] = 'p';
        labels[i][1] = (char)('a' + i / 10);
        labels[i][2] = (char)('0' + i % 10);
        labels[i][3] = '\0';
        struct fkd_idf_part q = {FKD_PART_DATA, 0x80,      0x100000u + i * 0x1000u,
                                 0x1000,        labels[i], 0};
        assert_int_equal(fkd_idf_table_add(&t, &q), FKD_OK);
    }
    struct fkd_idf_part last = {FKD_PART_DATA, 0x80, 0x200000u, 0x1000, "last", 0};
    assert_int_equal(fkd_idf_table_add(&t, &last), FKD_E_RANGE);
}

static void idf_part_at_serves_only_whole_ranges_inside_one_partition(void **state) {
    (void)state;
    static struct fkd_part_table lib, port;
    default_table(&lib);
    port_table(&lib, &port);
    int nvs = fkd_idf_part_at(&port, 0x9000, 4096);
    assert_true(nvs >= 0);
    assert_string_equal(port.part[nvs].label, "nvs");
    assert_int_equal(fkd_idf_part_at(&port, 0xEFFF, 1), nvs);        /* last byte */
    assert_int_equal(fkd_idf_part_at(&port, 0x9000, 0x6000), nvs);   /* all of it */
    assert_int_equal(fkd_idf_part_at(&port, 0xEFFF, 2), -1);         /* into nvs_keys */
    assert_int_equal(fkd_idf_part_at(&port, 0x8000, 16), -1);        /* the table itself */
    assert_int_equal(fkd_idf_part_at(&port, 0x0, 16), -1);           /* the bootloader */
    assert_int_equal(fkd_idf_part_at(&port, 0x12000, 0x2000), -1);   /* otadata end + gap */
    assert_int_equal(fkd_idf_part_at(&port, 0xFFFFFFF0u, 0x20), -1); /* wraps */
    int ota1 = fkd_idf_part_at(&port, 0x1A0000u + 0x17F000u, 0x1000);
    assert_true(ota1 >= 0);
    assert_string_equal(port.part[ota1].label, "ota_1");
    assert_int_equal(fkd_idf_part_at(NULL, 0x9000, 1), -1);
}

static void idf_posture_believes_the_efuse_not_the_kconfig(void **state) {
    (void)state;
    struct fkd_idf_hw hard = {1, 1, 1, 1, 1, 1};
    struct fkd_idf_posture p;
    fkd_idf_posture_eval(&hard, 1, 1, &p);
    assert_true(p.secure_boot);
    assert_true(p.nvs_encrypted);
    assert_int_equal(p.findings, 0);

    /* sdkconfig says secure boot, the eFuse does not: the rule does not hold. */
    struct fkd_idf_hw hw = hard;
    hw.secure_boot = 0;
    fkd_idf_posture_eval(&hw, 1, 1, &p);
    assert_false(p.secure_boot);
    assert_int_equal(p.findings, FKD_IDF_F_SECURE_BOOT_OFF | FKD_IDF_F_SB_KCONFIG_ONLY);
    fkd_idf_posture_eval(&hw, 0, 0, &p);
    assert_int_equal(p.findings, FKD_IDF_F_SECURE_BOOT_OFF);

    /* Keys loaded but flash encryption off: the keys lie beside the data in plaintext. */
    hw = hard;
    hw.flash_encryption = 0;
    hw.flash_enc_release = 0;
    fkd_idf_posture_eval(&hw, 1, 0, &p);
    assert_false(p.nvs_encrypted);
    assert_int_equal(p.findings, FKD_IDF_F_FLASH_ENC_OFF);

    /* Development mode of flash encryption: enough for development, not for production. */
    hw = hard;
    hw.flash_enc_release = 0;
    fkd_idf_posture_eval(&hw, 1, 0, &p);
    assert_true(p.nvs_encrypted);
    assert_int_equal(p.findings, FKD_IDF_F_FLASH_ENC_DEV);
    fkd_idf_posture_eval(&hw, 1, 1, &p);
    assert_false(p.nvs_encrypted);

    /* No keys: plaintext NVS whatever else holds. */
    hw = hard;
    hw.nvs_keys_loaded = 0;
    fkd_idf_posture_eval(&hw, 1, 1, &p);
    assert_false(p.nvs_encrypted);
    assert_true(p.secure_boot);
    assert_int_equal(p.findings, FKD_IDF_F_NVS_PLAIN);

    /* Debug and download paths open. */
    hw = hard;
    hw.jtag_disabled = 0;
    hw.download_protected = 0;
    fkd_idf_posture_eval(&hw, 1, 1, &p);
    assert_true(p.nvs_encrypted);
    assert_int_equal(p.findings, FKD_IDF_F_JTAG_OPEN | FKD_IDF_F_DOWNLOAD_OPEN);

    /* A blank development chip: every finding but the Kconfig one and development mode
     * (flash encryption is off, not in a mode). */
    struct fkd_idf_hw blank = {0, 0, 0, 0, 0, 0};
    fkd_idf_posture_eval(&blank, 0, 0, &p);
    assert_int_equal(p.findings, (1u << FKD_IDF_F_COUNT) - 1u - FKD_IDF_F_SB_KCONFIG_ONLY -
                                     FKD_IDF_F_FLASH_ENC_DEV);
    for (unsigned i = 0; i < FKD_IDF_F_COUNT; i++) {
        assert_string_not_equal(fkd_idf_finding_text(1u << i), "unknown finding");
    }
    assert_string_equal(fkd_idf_finding_text(3), "unknown finding");
}

static void idf_ota_decides_like_the_self_test(void **state) {
    (void)state;
    struct fkd_idf_ota_in in = {FKD_OTA_IMG_PENDING_VERIFY, 1, 0, 1000, 60000, 1};
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_WAIT);
    in.welcomed = 1;
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_MARK_VALID);
    in.since_boot_ms = 120000; /* a welcome that came late still confirms */
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_MARK_VALID);
    in.welcomed = 0;
    in.since_boot_ms = 59999;
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_WAIT);
    in.since_boot_ms = 60000;
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_ROLLBACK);
    in.rollback_possible = 0;
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_KEEP);
    static const uint32_t settled[] = {FKD_OTA_IMG_NEW, FKD_OTA_IMG_VALID, FKD_OTA_IMG_INVALID,
                                       FKD_OTA_IMG_ABORTED, FKD_OTA_IMG_UNDEFINED};
    for (size_t i = 0; i < sizeof settled / sizeof settled[0]; i++) {
        in.state = settled[i];
        assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_NONE);
    }
    in.state = FKD_OTA_IMG_PENDING_VERIFY;
    in.state_known = 0; /* esp_ota_get_state_partition failed: factory / first flash */
    assert_int_equal(fkd_idf_ota_decide(&in), FKD_IDF_OTA_NONE);
    assert_string_equal(fkd_idf_ota_action_name(FKD_IDF_OTA_MARK_VALID), "mark-valid");
    assert_string_equal(fkd_idf_ota_action_name((enum fkd_idf_ota_action)99), "unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idf_table_equals_library_reader),
        cmocka_unit_test(idf_lookup_refuses_wrong_kind_and_missing),
        cmocka_unit_test(idf_table_add_rejects_bad_partitions),
        cmocka_unit_test(idf_part_at_serves_only_whole_ranges_inside_one_partition),
        cmocka_unit_test(idf_posture_believes_the_efuse_not_the_kconfig),
        cmocka_unit_test(idf_ota_decides_like_the_self_test),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
