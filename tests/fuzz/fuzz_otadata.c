/* Fuzz harness: what a robot reads from flash before it runs anything. The input is split:
 * the first 64 bytes are the two otadata entries, the rest is what ota_0 and ota_1 hold
 * (the same bytes in both, an app image or garbage). The otadata parser, the app image
 * checker and the bootloader's selection (which writes state changes) run over it on a 4 MiB
 * flash in memory with the default partition table. Must never crash or read out of bounds,
 * and a slot it picks must hold an image that checks. */
#include "fkd/flash.h"
#include "fkd/ota.h"
#include "fkd/part.h"
#include "fleetkey/partition.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results do not matter here; only crashes and sanitizer reports do. */
static void ignore(enum fkd_err rc) {
    (void)rc;
}

#define CHIP (4u << 20)
#define SLOT_MAX (64u * 1024u)

static uint8_t *chip;
static struct fkd_flash_mem m;
static struct fkd_flash f;
static struct fkd_part_table t;

static int setup(void) {
    static struct fk_partition_table ht;
    uint8_t table[FK_PARTITION_TABLE_SIZE];
    size_t tlen = 0;
    chip = malloc(CHIP);
    if (chip == NULL) {
        return -1;
    }
    memset(chip, 0xFF, CHIP);
    if (fk_partition_csv_parse(fk_partition_default_csv, strlen(fk_partition_default_csv),
                               "default", &ht, NULL) != FK_OK ||
        fk_partition_encode(&ht, table, sizeof table, &tlen) != FK_OK) {
        return -1;
    }
    memcpy(chip + FKD_PART_TABLE_OFFSET, table, tlen);
    fkd_flash_mem_init(&m, chip, CHIP, &f);
    return fkd_part_load(&f, &t) == FKD_OK ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (chip == NULL && setup() != 0) {
        abort();
    }
    struct fkd_otadata od;
    fkd_otadata_parse(data, size, &od);
    struct fkd_app_info app;
    ignore(fkd_app_check_buf(data, size, &app));

    const struct fkd_part *odp = fkd_part_find(&t, FKD_PART_DATA, FKD_PART_SUB_OTADATA, NULL);
    const struct fkd_part *s0 = fkd_part_find(&t, FKD_PART_APP, FKD_PART_SUB_OTA_0, NULL);
    const struct fkd_part *s1 = fkd_part_find(&t, FKD_PART_APP, FKD_PART_SUB_OTA_1, NULL);
    memset(chip + odp->offset, 0xFF, odp->size);
    memset(chip + s0->offset, 0xFF, SLOT_MAX);
    memset(chip + s1->offset, 0xFF, SLOT_MAX);
    for (unsigned i = 0; i < 2 && size >= (i + 1) * FKD_OTADATA_ENTRY_LEN; i++) {
        memcpy(chip + odp->offset + i * FKD_FLASH_SECTOR, data + i * FKD_OTADATA_ENTRY_LEN,
               FKD_OTADATA_ENTRY_LEN);
    }
    if (size > 2 * FKD_OTADATA_ENTRY_LEN) {
        size_t n = size - 2 * FKD_OTADATA_ENTRY_LEN;
        n = n > SLOT_MAX ? SLOT_MAX : n;
        memcpy(chip + s0->offset, data + 2 * FKD_OTADATA_ENTRY_LEN, n);
        memcpy(chip + s1->offset, data + 2 * FKD_OTADATA_ENTRY_LEN, n);
    }
    fkd_flash_mem_cut(&m, 0, 0);
    struct fkd_ota_boot b;
    for (int round = 0; round < 3; round++) {
        if (fkd_ota_boot_select(&f, &t, NULL, 0, &b) != FKD_OK) {
            abort(); /* no cut is set: flash operations cannot fail here */
        }
        if (b.slot >= 0) {
            struct fkd_app_info again;
            if (b.part == NULL ||
                fkd_app_check_buf(chip + b.part->offset, b.part->size, &again) != FKD_OK) {
                abort(); /* booted something that does not check */
            }
            if (round == 1) {
                ignore(fkd_ota_mark_invalid(&f, &t, &b));
            }
        }
    }
    return 0;
}
