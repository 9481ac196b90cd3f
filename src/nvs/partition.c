/* ESP-IDF partition table: partitions.csv <-> the binary table at 0x8000, following
 * gen_esp32part.py (ESP-IDF components/partition_table) for the formats, the automatic offsets
 * and the validation rules, so a table we write boots and a table ESP-IDF wrote parses.
 *
 * The binary parser trusts nothing: it reads 32-byte slots only while 32 bytes remain, stops
 * at the all-0xFF end marker, checks the magic of every entry and the MD5 entry's digest. */
#include "fleetkey/partition.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#define FIRST_OFFSET (FK_PARTITION_TABLE_OFFSET + 0x1000u) /* right after the table sector */
#define ALIGN_APP 0x10000u
#define ALIGN_DATA 0x1000u

const char fk_partition_default_csv[] =
    "# fleetkey default: 4 MiB flash, two OTA app slots, NVS encryption keys\n"
    "# Name,   Type, SubType,  Offset,   Size,     Flags\n"
    "nvs,      data, nvs,      0x9000,   0x6000,\n"
    "nvs_keys, data, nvs_keys, 0xF000,   0x1000,   encrypted\n"
    "phy_init, data, phy,      0x10000,  0x1000,\n"
    "otadata,  data, ota,      0x11000,  0x2000,\n"
    "ota_0,    app,  ota_0,    0x20000,  0x180000,\n"
    "ota_1,    app,  ota_1,    0x1A0000, 0x180000,\n";

struct name_val {
    const char *name;
    uint8_t val;
};

static const struct name_val data_subtypes[] = {
    {"ota", FK_PART_SUB_OTA},           {"phy", FK_PART_SUB_PHY},
    {"nvs", FK_PART_SUB_NVS},           {"coredump", FK_PART_SUB_COREDUMP},
    {"nvs_keys", FK_PART_SUB_NVS_KEYS}, {"efuse", FK_PART_SUB_EFUSE},
    {"undefined", FK_PART_SUB_UNDEFINED}, {"esphttpd", FK_PART_SUB_ESPHTTPD},
    {"fat", FK_PART_SUB_FAT},           {"spiffs", FK_PART_SUB_SPIFFS},
    {"littlefs", FK_PART_SUB_LITTLEFS},
};

const char *fk_partition_type_name(uint8_t type, char buf[8]) {
    if (type == FK_PART_APP) {
        return "app";
    }
    if (type == FK_PART_DATA) {
        return "data";
    }
    snprintf(buf, 8, "0x%02x", type);
    return buf;
}

const char *fk_partition_subtype_name(uint8_t type, uint8_t subtype, char buf[8]) {
    if (type == FK_PART_APP) {
        if (subtype == 0x00) {
            return "factory";
        }
        if (subtype == 0x20) {
            return "test";
        }
        if (subtype >= 0x10 && subtype <= 0x1F) {
            snprintf(buf, 8, "ota_%u", (unsigned)(subtype - 0x10));
            return buf;
        }
    } else if (type == FK_PART_DATA) {
        for (size_t i = 0; i < sizeof data_subtypes / sizeof data_subtypes[0]; i++) {
            if (data_subtypes[i].val == subtype) {
                return data_subtypes[i].name;
            }
        }
    }
    snprintf(buf, 8, "0x%02x", subtype);
    return buf;
}

/* Number as gen_esp32part.py parse_int reads it: decimal, 0x hex, or with a K / M suffix. */
static int parse_num(const char *s, uint64_t *out) {
    size_t n = strlen(s);
    uint64_t mult = 1;
    if (n > 0 && (s[n - 1] == 'K' || s[n - 1] == 'k')) {
        mult = 1024;
        n--;
    } else if (n > 0 && (s[n - 1] == 'M' || s[n - 1] == 'm')) {
        mult = 1024 * 1024;
        n--;
    }
    unsigned base = 10;
    size_t i = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i == n) {
        return -1;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d;
        char c = s[i];
        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (base == 16 && c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else if (base == 16 && c >= 'A' && c <= 'F') {
            d = (unsigned)(c - 'A' + 10);
        } else {
            return -1;
        }
        v = v * base + d;
        if (v > 0xFFFFFFFFu) {
            return -1;
        }
    }
    v *= mult;
    if (v > 0xFFFFFFFFu) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Trims spaces and tabs in place. */
static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

static enum fk_err parse_line(char *line, long lineno, const char *name, uint32_t *next_free,
                              struct fk_partition_table *t, struct fk_diag *diag) {
    char *f[6] = {"", "", "", "", "", ""};
    size_t nf = 0;
    char *p = line;
    for (;;) {
        char *comma = strchr(p, ',');
        if (nf == 6) {
            if (*trim(p) != '\0') {
                return fk_diag_at(diag, FK_E_PARSE, name, lineno,
                                  "more than 6 columns (Name, Type, SubType, Offset, Size, "
                                  "Flags)");
            }
            break;
        }
        if (comma != NULL) {
            *comma = '\0';
        }
        f[nf++] = trim(p);
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    if (t->count >= FK_PARTITION_MAX) {
        return fk_diag_at(diag, FK_E_TOOBIG, name, lineno, "more than %u partitions",
                          FK_PARTITION_MAX);
    }
    struct fk_partition part;
    memset(&part, 0, sizeof part);
    if (f[0][0] == '\0' || strlen(f[0]) > FK_PARTITION_NAME_MAX) {
        return fk_diag_at(diag, FK_E_RANGE, name, lineno,
                          "partition name '%.40s' must be 1..%u characters", f[0],
                          FK_PARTITION_NAME_MAX);
    }
    memcpy(part.name, f[0], strlen(f[0]) + 1);
    for (size_t i = 0; i < t->count; i++) {
        if (strcmp(t->parts[i].name, part.name) == 0) {
            return fk_diag_at(diag, FK_E_EXISTS, name, lineno, "partition name '%s' used twice",
                              part.name);
        }
    }
    uint64_t v = 0;
    if (strcmp(f[1], "app") == 0) {
        part.type = FK_PART_APP;
    } else if (strcmp(f[1], "data") == 0) {
        part.type = FK_PART_DATA;
    } else if (parse_num(f[1], &v) == 0 && v <= 0xFE) {
        part.type = (uint8_t)v;
    } else {
        return fk_diag_at(diag, FK_E_PARSE, name, lineno,
                          "partition '%s': type '%.20s' (expected app, data or a number 0..0xfe)",
                          part.name, f[1]);
    }
    int found = 0;
    if (part.type == FK_PART_APP) {
        if (strcmp(f[2], "factory") == 0) {
            part.subtype = 0x00;
            found = 1;
        } else if (strcmp(f[2], "test") == 0) {
            part.subtype = 0x20;
            found = 1;
        } else if (strncmp(f[2], "ota_", 4) == 0 && f[2][4] >= '0' && f[2][4] <= '9') {
            /* ota_0 .. ota_15, decimal */
            unsigned n = (unsigned)(f[2][4] - '0');
            const char *rest = f[2] + 5;
            if (*rest >= '0' && *rest <= '9' && n != 0) {
                n = n * 10 + (unsigned)(*rest - '0');
                rest++;
            }
            if (*rest == '\0' && n <= 15) {
                part.subtype = (uint8_t)(0x10 + n);
                found = 1;
            }
        }
    } else if (part.type == FK_PART_DATA) {
        for (size_t i = 0; i < sizeof data_subtypes / sizeof data_subtypes[0]; i++) {
            if (strcmp(f[2], data_subtypes[i].name) == 0) {
                part.subtype = data_subtypes[i].val;
                found = 1;
            }
        }
    }
    if (!found) {
        if (parse_num(f[2], &v) == 0 && v <= 0xFE) {
            part.subtype = (uint8_t)v;
        } else {
            return fk_diag_at(diag, FK_E_PARSE, name, lineno,
                              "partition '%s': unknown subtype '%.20s'", part.name, f[2]);
        }
    }
    uint32_t align = part.type == FK_PART_APP ? ALIGN_APP : ALIGN_DATA;
    if (f[4][0] == '\0' || parse_num(f[4], &v) != 0 || v == 0) {
        return fk_diag_at(diag, FK_E_PARSE, name, lineno,
                          "partition '%s': size '%.20s' (expected e.g. 0x6000, 24K or 1M)",
                          part.name, f[4]);
    }
    part.size = (uint32_t)v;
    if (part.size % ALIGN_DATA != 0) {
        return fk_diag_at(diag, FK_E_RANGE, name, lineno,
                          "partition '%s': size 0x%x is not a multiple of 0x%x (a flash sector)",
                          part.name, part.size, ALIGN_DATA);
    }
    if (f[3][0] == '\0') {
        uint64_t off = *next_free;
        if (off % align != 0) {
            off += align - off % align;
        }
        if (off > 0xFFFFFFFFu) {
            return fk_diag_at(diag, FK_E_RANGE, name, lineno, "partition '%s' does not fit",
                              part.name);
        }
        part.offset = (uint32_t)off;
    } else {
        if (parse_num(f[3], &v) != 0) {
            return fk_diag_at(diag, FK_E_PARSE, name, lineno,
                              "partition '%s': offset '%.20s' is not a number", part.name, f[3]);
        }
        part.offset = (uint32_t)v;
        if (part.offset % align != 0) {
            return fk_diag_at(diag, FK_E_RANGE, name, lineno,
                              "partition '%s': offset 0x%x is not aligned to 0x%x", part.name,
                              part.offset, align);
        }
    }
    if (part.offset < FIRST_OFFSET) {
        return fk_diag_at(diag, FK_E_RANGE, name, lineno,
                          "partition '%s' at 0x%x overlaps the bootloader or the partition "
                          "table (partitions start at 0x%x)",
                          part.name, part.offset, FIRST_OFFSET);
    }
    if ((uint64_t)part.offset + part.size > 0xFFFFFFFFu) {
        return fk_diag_at(diag, FK_E_RANGE, name, lineno, "partition '%s' ends past 4 GiB",
                          part.name);
    }
    for (size_t i = 0; i < t->count; i++) {
        const struct fk_partition *o = &t->parts[i];
        if (part.offset < o->offset + o->size && o->offset < part.offset + part.size) {
            return fk_diag_at(diag, FK_E_RANGE, name, lineno,
                              "partition '%s' (0x%x..0x%x) overlaps '%s' (0x%x..0x%x)",
                              part.name, part.offset, part.offset + part.size, o->name,
                              o->offset, o->offset + o->size);
        }
    }
    /* Flags: "encrypted", "readonly", separated by ':' (gen_esp32part.py). */
    char *flags = f[5];
    while (*flags != '\0') {
        char *colon = strchr(flags, ':');
        if (colon != NULL) {
            *colon = '\0';
        }
        char *fl = trim(flags);
        if (strcmp(fl, "encrypted") == 0) {
            part.flags |= FK_PART_FLAG_ENCRYPTED;
        } else if (strcmp(fl, "readonly") == 0) {
            part.flags |= FK_PART_FLAG_READONLY;
        } else if (fl[0] != '\0') {
            return fk_diag_at(diag, FK_E_PARSE, name, lineno,
                              "partition '%s': unknown flag '%.20s' (expected encrypted or "
                              "readonly)",
                              part.name, fl);
        }
        if (colon == NULL) {
            break;
        }
        flags = colon + 1;
    }
    *next_free = part.offset + part.size;
    t->parts[t->count++] = part;
    return FK_OK;
}

enum fk_err fk_partition_csv_parse(const char *buf, size_t len, const char *csv_name,
                                   struct fk_partition_table *out, struct fk_diag *diag) {
    char line[512];
    const char *name = csv_name != NULL ? csv_name : "<partitions.csv>";
    if (out == NULL || (buf == NULL && len != 0)) {
        return FK_E_ARG;
    }
    memset(out, 0, sizeof *out);
    uint32_t next_free = FIRST_OFFSET;
    long lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && buf[end] != '\n') {
            end++;
        }
        lineno++;
        size_t n = end - pos;
        if (n >= sizeof line) {
            return fk_diag_at(diag, FK_E_TOOBIG, name, lineno, "line longer than %zu bytes",
                              sizeof line - 1);
        }
        memcpy(line, buf + pos, n);
        line[n] = '\0';
        pos = end < len ? end + 1 : end;
        if (memchr(line, '\0', n) != NULL) {
            return fk_diag_at(diag, FK_E_PARSE, name, lineno, "NUL byte in the line");
        }
        char *l = trim(line);
        if (l[0] == '\0' || l[0] == '#') {
            continue;
        }
        enum fk_err rc = parse_line(l, lineno, name, &next_free, out, diag);
        if (rc != FK_OK) {
            return rc;
        }
    }
    if (out->count == 0) {
        return fk_diag_at(diag, FK_E_PARSE, name, lineno, "no partitions");
    }
    return FK_OK;
}

static void size_str(uint32_t v, char out[16]) {
    if (v % 0x100000u == 0) {
        snprintf(out, 16, "%uM", v / 0x100000u);
    } else if (v % 0x400u == 0) {
        snprintf(out, 16, "%uK", v / 0x400u);
    } else {
        snprintf(out, 16, "0x%x", v);
    }
}

enum fk_err fk_partition_csv_write(const struct fk_partition_table *t, char *out,
                                   size_t out_size, size_t *out_len) {
    if (t == NULL || out == NULL || out_len == NULL || out_size == 0) {
        return FK_E_ARG;
    }
    size_t used = 0;
    int n = snprintf(out, out_size, "# Name, Type, SubType, Offset, Size, Flags\n");
    if (n < 0 || (size_t)n >= out_size) {
        return FK_E_NOSPACE;
    }
    used = (size_t)n;
    for (size_t i = 0; i < t->count; i++) {
        const struct fk_partition *p = &t->parts[i];
        char tb[8];
        char sb[8];
        char size[16];
        size_str(p->size, size);
        const char *flags = "";
        if ((p->flags & FK_PART_FLAG_ENCRYPTED) && (p->flags & FK_PART_FLAG_READONLY)) {
            flags = "encrypted:readonly";
        } else if (p->flags & FK_PART_FLAG_ENCRYPTED) {
            flags = "encrypted";
        } else if (p->flags & FK_PART_FLAG_READONLY) {
            flags = "readonly";
        }
        n = snprintf(out + used, out_size - used, "%s,%s,%s,0x%x,%s,%s\n", p->name,
                     fk_partition_type_name(p->type, tb),
                     fk_partition_subtype_name(p->type, p->subtype, sb), p->offset, size, flags);
        if (n < 0 || (size_t)n >= out_size - used) {
            return FK_E_NOSPACE;
        }
        used += (size_t)n;
    }
    *out_len = used;
    return FK_OK;
}

static int md5(const uint8_t *buf, size_t len, uint8_t out[16]) {
    unsigned n = 0;
    return EVP_Digest(buf, len, out, &n, EVP_md5(), NULL) == 1 && n == 16;
}

enum fk_err fk_partition_encode(const struct fk_partition_table *t, uint8_t *out,
                                size_t out_size, size_t *out_len) {
    if (t == NULL || out == NULL || out_len == NULL) {
        return FK_E_ARG;
    }
    if (out_size < FK_PARTITION_TABLE_SIZE) {
        return FK_E_NOSPACE;
    }
    if (t->count > FK_PARTITION_MAX) {
        return FK_E_RANGE;
    }
    memset(out, 0xFF, FK_PARTITION_TABLE_SIZE);
    uint8_t *e = out;
    for (size_t i = 0; i < t->count; i++, e += FK_PARTITION_ENTRY_SIZE) {
        const struct fk_partition *p = &t->parts[i];
        e[0] = 0xAA;
        e[1] = 0x50;
        e[2] = p->type;
        e[3] = p->subtype;
        fk_store_le32(e + 4, p->offset);
        fk_store_le32(e + 8, p->size);
        memset(e + 12, 0, 16);
        memcpy(e + 12, p->name, strnlen(p->name, FK_PARTITION_NAME_MAX));
        fk_store_le32(e + 28, p->flags);
    }
    /* gen_esp32part.py MD5_PARTITION_BEGIN = 0xEB 0xEB + 14 x 0xFF, then the digest. */
    e[0] = 0xEB;
    e[1] = 0xEB;
    if (!md5(out, (size_t)(e - out), e + 16)) {
        return FK_E_CRYPTO;
    }
    *out_len = FK_PARTITION_TABLE_SIZE;
    return FK_OK;
}

static int is_end(const uint8_t *e) {
    for (unsigned i = 0; i < FK_PARTITION_ENTRY_SIZE; i++) {
        if (e[i] != 0xFF) {
            return 0;
        }
    }
    return 1;
}

enum fk_err fk_partition_parse(const uint8_t *buf, size_t len, struct fk_partition_table *out,
                               struct fk_diag *diag) {
    if (buf == NULL || out == NULL) {
        return FK_E_ARG;
    }
    memset(out, 0, sizeof *out);
    static const uint8_t md5_magic[16] = {0xEB, 0xEB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                          0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    size_t off = 0;
    for (;;) {
        if (len - off < FK_PARTITION_ENTRY_SIZE) {
            if (diag != NULL) {
                diag->offset = (long long)off;
            }
            return fk_diag_set(diag, FK_E_TRUNCATED,
                               "partition table ends without its 0xFF end marker");
        }
        const uint8_t *e = buf + off;
        if (is_end(e)) {
            break;
        }
        if (memcmp(e, md5_magic, 16) == 0) {
            uint8_t d[16];
            if (!md5(buf, off, d)) {
                return FK_E_CRYPTO;
            }
            if (memcmp(d, e + 16, 16) != 0) {
                if (diag != NULL) {
                    diag->offset = (long long)off;
                }
                return fk_diag_set(diag, FK_E_CRC, "partition table MD5 does not match");
            }
            off += FK_PARTITION_ENTRY_SIZE;
            continue;
        }
        if (e[0] != 0xAA || e[1] != 0x50) {
            if (diag != NULL) {
                diag->offset = (long long)off;
            }
            return fk_diag_set(diag, FK_E_PARSE,
                               "entry %zu: magic %02x %02x (expected aa 50)",
                               off / FK_PARTITION_ENTRY_SIZE, e[0], e[1]);
        }
        if (out->count >= FK_PARTITION_MAX) {
            if (diag != NULL) {
                diag->offset = (long long)off;
            }
            return fk_diag_set(diag, FK_E_TOOBIG, "more than %u partitions", FK_PARTITION_MAX);
        }
        struct fk_partition *p = &out->parts[out->count++];
        p->type = e[2];
        p->subtype = e[3];
        p->offset = fk_load_le32(e + 4);
        p->size = fk_load_le32(e + 8);
        memcpy(p->name, e + 12, FK_PARTITION_NAME_MAX);
        p->name[FK_PARTITION_NAME_MAX] = '\0';
        p->flags = fk_load_le32(e + 28);
        off += FK_PARTITION_ENTRY_SIZE;
    }
    return FK_OK;
}

const struct fk_partition *fk_partition_find(const struct fk_partition_table *t,
                                             const char *name) {
    if (t == NULL || name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < t->count && i < FK_PARTITION_MAX; i++) {
        if (strcmp(t->parts[i].name, name) == 0) {
            return &t->parts[i];
        }
    }
    return NULL;
}

const struct fk_partition *fk_partition_find_type(const struct fk_partition_table *t,
                                                  uint8_t type, uint8_t subtype) {
    if (t == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < t->count && i < FK_PARTITION_MAX; i++) {
        if (t->parts[i].type == type && (subtype == 0xFF || t->parts[i].subtype == subtype)) {
            return &t->parts[i];
        }
    }
    return NULL;
}
