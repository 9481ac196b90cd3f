/* Fuzz target: the partition table parsers. The input is tried as a binary table and as
 * partitions.csv text. A CSV that parses must survive encode -> parse and CSV write -> parse
 * unchanged: the two formats and both directions agree. */
#include "fleetkey/partition.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const struct fk_partition_table *a, const struct fk_partition_table *b) {
    return a->count == b->count &&
           memcmp(a->parts, b->parts, a->count * sizeof a->parts[0]) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fk_partition_table t;
    static struct fk_partition_table u;
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_partition_parse(data, size, &t, &d) == FK_OK && t.count > FK_PARTITION_MAX) {
        abort();
    }
    if (fk_partition_csv_parse((const char *)data, size, "fuzz.csv", &t, &d) != FK_OK) {
        return 0;
    }
    uint8_t bin[FK_PARTITION_TABLE_SIZE];
    size_t n = 0;
    if (fk_partition_encode(&t, bin, sizeof bin, &n) != FK_OK ||
        fk_partition_parse(bin, n, &u, &d) != FK_OK || !same(&t, &u)) {
        abort();
    }
    static char csv[FK_PARTITION_MAX * 96 + 128];
    size_t clen = 0;
    if (fk_partition_csv_write(&t, csv, sizeof csv, &clen) != FK_OK ||
        fk_partition_csv_parse(csv, clen, "again.csv", &u, &d) != FK_OK || !same(&t, &u)) {
        abort();
    }
    return 0;
}
