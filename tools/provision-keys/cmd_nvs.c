/* provision-keys nvs: NVS partition images, with the commands and arguments of ESP-IDF's
 * nvs_partition_gen (generate, encrypt, decrypt, generate-key) plus dump (a checking reader)
 * and partition-table (partitions.csv <-> the binary table). Argument parsing and output
 * only; the work is done by fk_nvs (include/fleetkey/nvs.h, partition.h).
 *
 * Every output goes through fk_file_write_atomic, so a failed run leaves no file behind;
 * images and key files are written 0600 because a plain image holds the device's secrets. */
#include "cli.h"

#include "fleetkey/nvs.h"
#include "fleetkey/partition.h"

#include "fkd/nvs_format.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CSV (16u << 20)
#define MAX_IMAGE (32u << 20) /* no ESP32 flash is larger */
#define MAX_SHOWN 64u         /* blob bytes shown in text dumps */

static const char usage_text[] =
    "usage: provision-keys nvs COMMAND ...\n"
    "\n"
    "  generate INPUT.csv OUTPUT.bin SIZE [--version 1|2] [--read-only] [--base-dir DIR]\n"
    "  encrypt  INPUT.csv OUTPUT.bin SIZE (--inputkey KEYS.bin | --keygen --keyfile KEYS.bin)\n"
    "           [--version 1|2] [--read-only] [--base-dir DIR] [--force]\n"
    "  decrypt  INPUT.bin KEYS.bin OUTPUT.bin\n"
    "  generate-key --keyfile KEYS.bin [--force]\n"
    "  dump IMAGE.bin [--keys KEYS.bin] [--json] [--show-secrets]\n"
    "  partition-table encode PARTITIONS.csv OUTPUT.bin\n"
    "  partition-table decode TABLE.bin [--json]\n"
    "  partition-table default\n"
    "\n"
    "Run 'provision-keys nvs COMMAND --help' for details. docs/provision-keys-nvs.md has more.\n";

static const char help_generate[] =
    "usage: provision-keys nvs generate INPUT.csv OUTPUT.bin SIZE [--version 1|2]\n"
    "                                   [--read-only] [--base-dir DIR]\n"
    "\n"
    "Builds an NVS partition image from a CSV in nvs_partition_gen's format (key,type,\n"
    "encoding,value; namespace, data and file rows), byte for byte what ESP-IDF's generator\n"
    "makes from the same input.\n"
    "\n"
    "  SIZE           partition size, hex (0x6000) or decimal: a multiple of 4096, at least\n"
    "                 0x3000 (one page stays reserved, as ESP-IDF needs)\n"
    "  --version V    1: blobs up to 1984 bytes in one page; 2 (default): multi-page blobs\n"
    "  --read-only    allow SIZE 0x1000 or 0x2000 for a partition flagged readonly; the\n"
    "                 image then holds only the used pages (what the generator does)\n"
    "  --base-dir DIR resolve relative paths of file rows against DIR (default: the CSV's\n"
    "                 directory; the generator uses the current directory: pass '.')\n"
    "\n"
    "Exit status: 0 written, 1 input error (file:line: reason; no output left), 2 usage.\n";

static const char help_encrypt[] =
    "usage: provision-keys nvs encrypt INPUT.csv OUTPUT.bin SIZE\n"
    "           (--inputkey KEYS.bin | --keygen --keyfile KEYS.bin)\n"
    "           [--version 1|2] [--read-only] [--base-dir DIR] [--force]\n"
    "\n"
    "As generate, then encrypts every written entry with AES-256-XTS (ESP-IDF NVS\n"
    "encryption). KEYS.bin is a 4096-byte nvs_keys partition image (eky, tky, CRC32).\n"
    "\n"
    "  --inputkey KEYS.bin  use existing keys (the CRC is checked)\n"
    "  --keygen             make fresh keys and write them to --keyfile (mode 0600)\n"
    "  --force              let --keygen replace an existing key file\n";

static const char help_decrypt[] =
    "usage: provision-keys nvs decrypt INPUT.bin KEYS.bin OUTPUT.bin\n"
    "\n"
    "Decrypts an encrypted NVS image with the keys of an nvs_keys partition image.\n"
    "The output (mode 0600) holds the plain secrets.\n";

static const char help_genkey[] =
    "usage: provision-keys nvs generate-key --keyfile KEYS.bin [--force]\n"
    "\n"
    "Writes a fresh nvs_keys partition image (4096 bytes, mode 0600). An existing file is\n"
    "kept unless --force is given: replacing a device's keys makes its NVS unreadable.\n";

static const char help_dump[] =
    "usage: provision-keys nvs dump IMAGE.bin [--keys KEYS.bin] [--json] [--show-secrets]\n"
    "\n"
    "Reads an NVS image the way the device does and prints its pages, namespaces, keys,\n"
    "types and values. Every page header CRC, entry CRC and data CRC is checked; each bad\n"
    "page or entry is listed with its offset and reason.\n"
    "\n"
    "  --keys KEYS.bin  decrypt first (an encrypted image)\n"
    "  --json           machine-readable output\n"
    "  --show-secrets   print secret values (PSKs, passwords, keys, blobs of the 'security'\n"
    "                   namespace); by default they are masked with their fingerprint\n"
    "\n"
    "Exit status: 0 image clean, 1 problems found (or unreadable), 2 usage.\n";

static const char help_ptable[] =
    "usage: provision-keys nvs partition-table encode PARTITIONS.csv OUTPUT.bin\n"
    "       provision-keys nvs partition-table decode TABLE.bin [--json]\n"
    "       provision-keys nvs partition-table default\n"
    "\n"
    "encode: partitions.csv (ESP-IDF format; empty offsets computed as gen_esp32part.py does)\n"
    "        to the binary table flashed at 0x8000 (0xC00 bytes, MD5 entry included).\n"
    "decode: a binary table (or a flash image holding one at 0x8000) to partitions.csv text.\n"
    "default: the built-in 4 MiB two-OTA layout with nvs and nvs_keys.\n";

struct args {
    const char *pos[4];
    int npos;
    const char *version;
    const char *inputkey;
    const char *keyfile;
    const char *keys;
    const char *base_dir;
    int keygen;
    int read_only;
    int force;
    int json;
    int show_secrets;
    int help;
};

/* Options that take a value, and flags; anything else starting with "--" is an error. */
static int parse_args(const char *cmd, int argc, char **argv, struct args *a, int maxpos) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char **val = NULL;
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            a->help = 1;
            return 0;
        } else if (strcmp(s, "--version") == 0) {
            val = &a->version;
        } else if (strcmp(s, "--inputkey") == 0) {
            val = &a->inputkey;
        } else if (strcmp(s, "--keyfile") == 0) {
            val = &a->keyfile;
        } else if (strcmp(s, "--keys") == 0) {
            val = &a->keys;
        } else if (strcmp(s, "--base-dir") == 0) {
            val = &a->base_dir;
        } else if (strcmp(s, "--keygen") == 0) {
            a->keygen = 1;
            continue;
        } else if (strcmp(s, "--read-only") == 0) {
            a->read_only = 1;
            continue;
        } else if (strcmp(s, "--force") == 0) {
            a->force = 1;
            continue;
        } else if (strcmp(s, "--json") == 0) {
            a->json = 1;
            continue;
        } else if (strcmp(s, "--show-secrets") == 0) {
            a->show_secrets = 1;
            continue;
        } else if (s[0] == '-' && s[1] != '\0') {
            fk_cli_usage_error(cmd, "unknown option '%s'", s);
            return -1;
        } else {
            if (a->npos >= maxpos) {
                fk_cli_usage_error(cmd, "unexpected argument '%s'", s);
                return -1;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        if (i + 1 >= argc) {
            fk_cli_usage_error(cmd, "option '%s' needs a value", s);
            return -1;
        }
        *val = argv[++i];
    }
    return 0;
}

/* Options a subcommand does not take are usage errors rather than silently ignored. */
static int only(const char *cmd, const struct args *a, const char *allowed) {
    struct {
        const char *name;
        int set;
    } opts[] = {
        {"--version", a->version != NULL},   {"--inputkey", a->inputkey != NULL},
        {"--keyfile", a->keyfile != NULL},   {"--keys", a->keys != NULL},
        {"--base-dir", a->base_dir != NULL}, {"--keygen", a->keygen},
        {"--read-only", a->read_only},       {"--force", a->force},
        {"--json", a->json},                 {"--show-secrets", a->show_secrets},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (opts[i].set && strstr(allowed, opts[i].name) == NULL) {
            fk_cli_usage_error(cmd, "option %s does not apply here", opts[i].name);
            return -1;
        }
    }
    return 0;
}

static int read_keys(const char *path, struct fk_nvs_keys *k, struct fk_diag *diag) {
    uint8_t *buf = NULL;
    size_t len = 0;
    enum fk_err rc = fk_file_read(path, 1u << 20, &buf, &len, diag);
    if (rc == FK_OK) {
        rc = fk_nvs_keys_parse(buf, len, k, diag);
        if (rc != FK_OK && diag != NULL) {
            snprintf(diag->file, sizeof diag->file, "%s", path);
            diag->line = 0;
        }
    }
    fk_free_secret(buf, len + 1);
    return rc == FK_OK ? 0 : fk_cli_fail(diag, rc);
}

/* SIZE as the issue fixes it: hex or decimal, a multiple of 4096, at least 0x3000; 0x1000 and
 * 0x2000 only for --read-only (the generator's read-only images). */
static int parse_size(const char *cmd, const char *s, int read_only, size_t *out) {
    unsigned long long v = 0;
    if (fk_cli_parse_size(s, &v) != 0) {
        return fk_cli_usage_error(cmd, "SIZE '%s' is not a number (e.g. 0x6000 or 24576)", s);
    }
    if (v == 0 || v % FKD_NVS_PAGE_SIZE != 0) {
        return fk_cli_usage_error(cmd, "SIZE 0x%llx is not a multiple of 4096 (0x1000)", v);
    }
    if (v > MAX_IMAGE) {
        return fk_cli_usage_error(cmd, "SIZE 0x%llx is larger than any flash (max 0x%x)", v,
                                  MAX_IMAGE);
    }
    if (read_only && v >= FK_NVS_MIN_SIZE) {
        return fk_cli_usage_error(cmd, "--read-only is for sizes below 0x3000; 0x%llx makes a "
                                       "normal read/write image",
                                  v);
    }
    if (!read_only && v < FK_NVS_MIN_SIZE) {
        return fk_cli_usage_error(cmd,
                                  "SIZE 0x%llx is below 0x3000, the minimum for a read/write "
                                  "NVS partition (use --read-only for a readonly partition)",
                                  v);
    }
    *out = (size_t)v;
    return 0;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        return strdup(".");
    }
    if (slash == path) {
        return strdup("/");
    }
    return strndup(path, (size_t)(slash - path));
}

/* generate and encrypt: CSV -> image (-> encrypted image). */
static int cmd_build(int argc, char **argv, int encrypt) {
    const char *cmd = encrypt ? "nvs encrypt" : "nvs generate";
    struct args a;
    if (parse_args(cmd, argc, argv, &a, 3) != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.help) {
        fputs(encrypt ? help_encrypt : help_generate, stdout);
        return FK_EXIT_OK;
    }
    if (only(cmd, &a,
             encrypt ? "--version --inputkey --keyfile --keygen --read-only --base-dir --force"
                     : "--version --read-only --base-dir") != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.npos != 3) {
        return fk_cli_usage_error(cmd, "expected INPUT.csv OUTPUT.bin SIZE");
    }
    unsigned version = 2;
    if (a.version != NULL) {
        if (strcmp(a.version, "1") == 0) {
            version = 1;
        } else if (strcmp(a.version, "2") != 0) {
            return fk_cli_usage_error(cmd, "--version must be 1 or 2, not '%s'", a.version);
        }
    }
    if (encrypt) {
        if ((a.inputkey != NULL) == (a.keygen != 0)) {
            return fk_cli_usage_error(cmd, "give exactly one of --inputkey KEYS.bin or --keygen");
        }
        if (a.keygen && a.keyfile == NULL) {
            return fk_cli_usage_error(cmd, "--keygen needs --keyfile KEYS.bin");
        }
        if (!a.keygen && (a.keyfile != NULL || a.force)) {
            return fk_cli_usage_error(cmd, "--keyfile and --force go with --keygen");
        }
    }
    size_t size = 0;
    if (parse_size(cmd, a.pos[2], a.read_only, &size) != 0) {
        return FK_EXIT_USAGE;
    }

    int ret = FK_EXIT_FAIL;
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_diag diag;
    fk_diag_init(&diag);
    uint8_t *csv = NULL;
    size_t csv_len = 0;
    uint8_t *img = NULL;
    size_t img_len = 0;
    struct fk_nvs_builder *b = NULL;
    struct fk_nvs_keys keys;
    memset(&keys, 0, sizeof keys);
    char *base = a.base_dir != NULL ? strdup(a.base_dir) : dir_of(a.pos[0]);
    int wrote_keys = 0;

    if (base == NULL) {
        rc = FK_E_NOMEM;
        goto fail;
    }
    if (encrypt && a.inputkey != NULL && read_keys(a.inputkey, &keys, &diag) != 0) {
        goto out; /* already reported */
    }
    rc = fk_file_read(a.pos[0], MAX_CSV, &csv, &csv_len, &diag);
    if (rc != FK_OK) {
        goto fail;
    }
    rc = fk_nvs_builder_new(version, &b);
    if (rc != FK_OK) {
        goto fail;
    }
    rc = fk_nvs_csv_load(b, (const char *)csv, csv_len, a.pos[0], base, &diag);
    if (rc != FK_OK) {
        goto fail;
    }
    img = malloc(size);
    if (img == NULL) {
        rc = FK_E_NOMEM;
        goto fail;
    }
    rc = fk_nvs_builder_render(b, size, img, size, &img_len, &diag);
    if (rc != FK_OK) {
        if (rc == FK_E_NOSPACE) {
            snprintf(diag.file, sizeof diag.file, "%s", a.pos[0]);
            diag.line = 0;
        }
        goto fail;
    }
    if (encrypt) {
        if (a.keygen) {
            rc = fk_nvs_keys_generate(&keys);
            if (rc != FK_OK) {
                goto fail;
            }
        }
        rc = fk_nvs_encrypt(img, img_len, &keys);
        if (rc != FK_OK) {
            goto fail;
        }
        if (a.keygen) {
            uint8_t kimg[FK_NVS_KEYS_SIZE];
            fk_nvs_keys_encode(&keys, kimg);
            rc = fk_file_write_atomic(a.keyfile, kimg, sizeof kimg, 0600,
                                      a.force ? 0u : (unsigned)FK_WRITE_EXCL, &diag);
            fk_wipe(kimg, sizeof kimg);
            if (rc == FK_E_EXISTS) {
                rc = fk_diag_at(&diag, rc, a.keyfile, 0,
                                "key file exists; pass --force to replace it");
            }
            if (rc != FK_OK) {
                goto fail;
            }
            wrote_keys = 1;
        }
    }
    rc = fk_file_write_atomic(a.pos[1], img, img_len, 0600, 0, &diag);
    if (rc != FK_OK) {
        if (wrote_keys) {
            unlink(a.keyfile); /* a key file without its image would only mislead */
        }
        goto fail;
    }
    printf("%s: %zu bytes, NVS format version %u%s%s\n", a.pos[1], img_len, version,
           encrypt ? ", encrypted" : "", a.read_only ? ", read-only" : "");
    if (a.keygen) {
        printf("%s: nvs_keys partition image (keep it secret)\n", a.keyfile);
    }
    ret = FK_EXIT_OK;
    goto out;
fail:
    ret = fk_cli_fail(&diag, rc);
out:
    fk_nvs_builder_free(b);
    fk_free_secret(csv, csv_len + 1);
    fk_free_secret(img, img != NULL ? size : 0);
    fk_wipe(&keys, sizeof keys);
    free(base);
    return ret;
}

static int cmd_decrypt(int argc, char **argv) {
    const char *cmd = "nvs decrypt";
    struct args a;
    if (parse_args(cmd, argc, argv, &a, 3) != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.help) {
        fputs(help_decrypt, stdout);
        return FK_EXIT_OK;
    }
    if (only(cmd, &a, "") != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.npos != 3) {
        return fk_cli_usage_error(cmd, "expected INPUT.bin KEYS.bin OUTPUT.bin");
    }
    int ret = FK_EXIT_FAIL;
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_nvs_keys keys;
    uint8_t *img = NULL;
    size_t len = 0;
    if (read_keys(a.pos[1], &keys, &diag) != 0) {
        return FK_EXIT_FAIL;
    }
    enum fk_err rc = fk_file_read(a.pos[0], MAX_IMAGE, &img, &len, &diag);
    if (rc == FK_OK && (len == 0 || len % FKD_NVS_PAGE_SIZE != 0)) {
        rc = fk_diag_at(&diag, FK_E_TRUNCATED, a.pos[0], 0,
                        "%zu bytes is not a whole number of 4096-byte pages", len);
    }
    if (rc == FK_OK) {
        rc = fk_nvs_decrypt(img, len, &keys);
    }
    if (rc == FK_OK) {
        rc = fk_file_write_atomic(a.pos[2], img, len, 0600, 0, &diag);
    }
    if (rc == FK_OK) {
        printf("%s: %zu bytes, decrypted\n", a.pos[2], len);
        ret = FK_EXIT_OK;
    } else {
        ret = fk_cli_fail(&diag, rc);
    }
    fk_free_secret(img, len + 1);
    fk_wipe(&keys, sizeof keys);
    return ret;
}

static int cmd_genkey(int argc, char **argv) {
    const char *cmd = "nvs generate-key";
    struct args a;
    if (parse_args(cmd, argc, argv, &a, 0) != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.help) {
        fputs(help_genkey, stdout);
        return FK_EXIT_OK;
    }
    if (only(cmd, &a, "--keyfile --force") != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.keyfile == NULL) {
        return fk_cli_usage_error(cmd, "--keyfile KEYS.bin is required");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_nvs_keys keys;
    uint8_t kimg[FK_NVS_KEYS_SIZE];
    enum fk_err rc = fk_nvs_keys_generate(&keys);
    if (rc == FK_OK) {
        fk_nvs_keys_encode(&keys, kimg);
        rc = fk_file_write_atomic(a.keyfile, kimg, sizeof kimg, 0600,
                                  a.force ? 0u : (unsigned)FK_WRITE_EXCL, &diag);
        if (rc == FK_E_EXISTS) {
            rc = fk_diag_at(&diag, rc, a.keyfile, 0, "key file exists; pass --force to replace it");
        }
    }
    fk_wipe(&keys, sizeof keys);
    fk_wipe(kimg, sizeof kimg);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    printf("%s: nvs_keys partition image (keep it secret)\n", a.keyfile);
    return FK_EXIT_OK;
}

/* ---- dump ------------------------------------------------------------------------------ */

/* A value is masked unless --show-secrets: names the logger redacts (psk, password, *_key...)
 * and every blob of the 'security' namespace (PSKs and keys live there, whatever the name). */
static int is_secret(const struct fk_nvs_item *it) {
    return fk_redact_field(it->key) ||
           (strcmp(it->ns, "security") == 0 && fkd_nvs_int_width(it->type) == 0 &&
            it->type != FKD_NVS_STR) ||
           strstr(it->key, "pass") != NULL;
}

static void print_quoted(const uint8_t *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", stdout);
        } else if (c < 0x20 || c == 0x7F) {
            printf("\\x%02x", c);
        } else {
            putchar(c); /* UTF-8 passes through */
        }
    }
    putchar('"');
}

static void print_value(const struct fk_nvs_item *it, int show) {
    char fpr[FK_FPR_LEN];
    if (!show && is_secret(it)) {
        if (fkd_nvs_int_width(it->type)) {
            printf("<secret, %s>", fk_fpr(&it->u, sizeof it->u, fpr));
        } else {
            printf("<secret: %zu bytes, %s>", it->len, fk_fpr(it->data, it->len, fpr));
        }
        return;
    }
    if (fkd_nvs_int_width(it->type)) {
        if (it->type & 0x10u) {
            printf("%lld", (long long)it->i);
        } else {
            printf("%llu", (unsigned long long)it->u);
        }
    } else if (it->type == FKD_NVS_STR) {
        print_quoted(it->data, it->len);
    } else {
        size_t n = show || it->len <= MAX_SHOWN ? it->len : MAX_SHOWN;
        printf("%zu bytes", it->len);
        if (it->len) {
            fputs(": ", stdout);
            for (size_t i = 0; i < n; i++) {
                printf("%02x", it->data[i]);
            }
            if (n < it->len) {
                fputs("...", stdout);
            }
        }
    }
}

static void dump_text(const char *name, const struct fk_nvs_image *img, int show) {
    size_t np = fk_nvs_image_page_count(img);
    size_t ni = fk_nvs_image_item_count(img);
    size_t nq = fk_nvs_image_problem_count(img);
    printf("%s: %zu pages, %zu namespaces, %zu keys, %zu problem%s\n", name, np,
           fk_nvs_image_namespace_count(img), ni, nq, nq == 1 ? "" : "s");
    for (size_t p = 0; p < np; p++) {
        const struct fk_nvs_page_info *pi = fk_nvs_image_page(img, p);
        if (pi->state == FKD_NVS_PAGE_UNINIT) {
            printf("page %zu @0x%06zx: empty\n", p, p * FKD_NVS_PAGE_SIZE);
            continue;
        }
        printf("page %zu @0x%06zx: %s, seq %u, version %u%s, %u written, %u erased\n", p,
               p * FKD_NVS_PAGE_SIZE, pi->status, pi->seq,
               pi->version == FKD_NVS_V1 ? 1u : pi->version == FKD_NVS_V2 ? 2u : 0u,
               pi->header_ok ? "" : " (header CRC bad)", pi->written, pi->erased);
        for (size_t i = 0; i < ni; i++) {
            const struct fk_nvs_item *it = fk_nvs_image_item(img, i);
            if (it->page != p) {
                continue;
            }
            printf("  %3u  %s:%s  %s  ", it->entry, it->ns[0] ? it->ns : "?", it->key,
                   fk_nvs_type_name(it->type));
            print_value(it, show);
            if (it->chunks) {
                printf(" (%u chunk%s)", it->chunks, it->chunks == 1 ? "" : "s");
            }
            putchar('\n');
        }
    }
    for (size_t q = 0; q < nq; q++) {
        const struct fk_nvs_problem *pr = fk_nvs_image_problem(img, q);
        if (pr->entry >= 0) {
            printf("problem: offset 0x%06zx (page %ld, entry %d): %s\n", pr->offset, pr->page,
                   pr->entry, pr->reason);
        } else if (pr->page >= 0) {
            printf("problem: offset 0x%06zx (page %ld header): %s\n", pr->offset, pr->page,
                   pr->reason);
        } else {
            printf("problem: offset 0x%06zx: %s\n", pr->offset, pr->reason);
        }
    }
}

static cJSON *item_json(const struct fk_nvs_item *it, int show) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    char num[32];
    char fpr[FK_FPR_LEN];
    cJSON_AddStringToObject(o, "namespace", it->ns);
    cJSON_AddNumberToObject(o, "namespace_index", it->ns_index);
    cJSON_AddStringToObject(o, "key", it->key);
    cJSON_AddStringToObject(o, "type", fk_nvs_type_name(it->type));
    cJSON_AddNumberToObject(o, "page", (double)it->page);
    cJSON_AddNumberToObject(o, "entry", it->entry);
    cJSON_AddNumberToObject(o, "offset", (double)it->offset);
    int secret = !show && is_secret(it);
    if (secret) {
        cJSON_AddBoolToObject(o, "redacted", 1);
        cJSON_AddStringToObject(o, "fingerprint",
                                fkd_nvs_int_width(it->type)
                                    ? fk_fpr(&it->u, sizeof it->u, fpr)
                                    : fk_fpr(it->data, it->len, fpr));
    }
    if (fkd_nvs_int_width(it->type)) {
        if (!secret) {
            /* Raw decimal: a double cannot hold every u64/i64. */
            if (it->type & 0x10u) {
                snprintf(num, sizeof num, "%lld", (long long)it->i);
            } else {
                snprintf(num, sizeof num, "%llu", (unsigned long long)it->u);
            }
            cJSON_AddRawToObject(o, "value", num);
        }
        return o;
    }
    cJSON_AddNumberToObject(o, "size", (double)it->len);
    if (it->chunks) {
        cJSON_AddNumberToObject(o, "chunks", it->chunks);
    }
    if (secret) {
        return o;
    }
    if (it->type == FKD_NVS_STR) {
        cJSON_AddStringToObject(o, "value", (const char *)it->data);
    } else {
        char *hex = malloc(it->len * 2 + 1);
        if (hex == NULL || fk_hex_encode(it->data, it->len, hex, it->len * 2 + 1) != FK_OK) {
            free(hex);
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddStringToObject(o, "value_hex", hex);
        fk_free_secret(hex, it->len * 2 + 1);
    }
    return o;
}

static int dump_json(const char *name, const struct fk_nvs_image *img, int show) {
    cJSON *root = cJSON_CreateObject();
    cJSON *pages = cJSON_AddArrayToObject(root, "pages");
    cJSON *nss = cJSON_AddArrayToObject(root, "namespaces");
    cJSON *items = cJSON_AddArrayToObject(root, "items");
    cJSON *probs = cJSON_AddArrayToObject(root, "problems");
    if (root == NULL || pages == NULL || nss == NULL || items == NULL || probs == NULL) {
        cJSON_Delete(root);
        return -1;
    }
    cJSON_AddStringToObject(root, "file", name);
    cJSON_AddBoolToObject(root, "ok", fk_nvs_image_problem_count(img) == 0);
    for (size_t p = 0; p < fk_nvs_image_page_count(img); p++) {
        const struct fk_nvs_page_info *pi = fk_nvs_image_page(img, p);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(pages, o);
        cJSON_AddNumberToObject(o, "index", (double)p);
        cJSON_AddNumberToObject(o, "offset", (double)(p * FKD_NVS_PAGE_SIZE));
        cJSON_AddStringToObject(o, "status", pi->status);
        if (pi->state != FKD_NVS_PAGE_UNINIT) {
            cJSON_AddNumberToObject(o, "seq", pi->seq);
            cJSON_AddNumberToObject(o, "version",
                                    pi->version == FKD_NVS_V1 ? 1 : pi->version == FKD_NVS_V2 ? 2
                                                                                              : 0);
            cJSON_AddBoolToObject(o, "header_crc_ok", pi->header_ok);
            cJSON_AddNumberToObject(o, "written", pi->written);
            cJSON_AddNumberToObject(o, "erased", pi->erased);
        }
    }
    for (unsigned i = 1; i <= 254; i++) {
        const char *ns = fk_nvs_image_namespace(img, i);
        if (ns[0] != '\0') {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(nss, o);
            cJSON_AddNumberToObject(o, "index", i);
            cJSON_AddStringToObject(o, "name", ns);
        }
    }
    for (size_t i = 0; i < fk_nvs_image_item_count(img); i++) {
        cJSON *o = item_json(fk_nvs_image_item(img, i), show);
        if (o == NULL) {
            cJSON_Delete(root);
            return -1;
        }
        cJSON_AddItemToArray(items, o);
    }
    for (size_t q = 0; q < fk_nvs_image_problem_count(img); q++) {
        const struct fk_nvs_problem *pr = fk_nvs_image_problem(img, q);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(probs, o);
        cJSON_AddNumberToObject(o, "offset", (double)pr->offset);
        cJSON_AddNumberToObject(o, "page", (double)pr->page);
        cJSON_AddNumberToObject(o, "entry", pr->entry);
        cJSON_AddStringToObject(o, "code", fk_errname(pr->code));
        cJSON_AddStringToObject(o, "reason", pr->reason);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (text == NULL) {
        return -1;
    }
    puts(text);
    /* With --show-secrets the text holds secrets: wipe it before it returns to the heap. */
    fk_wipe(text, strlen(text));
    cJSON_free(text);
    return 0;
}

static int cmd_dump(int argc, char **argv) {
    const char *cmd = "nvs dump";
    struct args a;
    if (parse_args(cmd, argc, argv, &a, 1) != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.help) {
        fputs(help_dump, stdout);
        return FK_EXIT_OK;
    }
    if (only(cmd, &a, "--keys --json --show-secrets") != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.npos != 1) {
        return fk_cli_usage_error(cmd, "expected IMAGE.bin");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_nvs_keys keys;
    uint8_t *buf = NULL;
    size_t len = 0;
    struct fk_nvs_image *img = NULL;
    if (a.keys != NULL && read_keys(a.keys, &keys, &diag) != 0) {
        return FK_EXIT_FAIL;
    }
    enum fk_err rc = fk_file_read(a.pos[0], MAX_IMAGE, &buf, &len, &diag);
    if (rc != FK_OK) {
        fk_wipe(&keys, sizeof keys);
        return fk_cli_fail(&diag, rc);
    }
    rc = a.keys != NULL ? fk_nvs_image_read_encrypted(buf, len, &keys, &img)
                        : fk_nvs_image_read(buf, len, &img);
    fk_free_secret(buf, len + 1);
    fk_wipe(&keys, sizeof keys);
    if (img == NULL) {
        return fk_cli_fail(NULL, rc);
    }
    int ret = rc == FK_OK ? FK_EXIT_OK : FK_EXIT_FAIL;
    if (a.json) {
        if (dump_json(a.pos[0], img, a.show_secrets) != 0) {
            ret = fk_cli_fail(NULL, FK_E_NOMEM);
        }
    } else {
        dump_text(a.pos[0], img, a.show_secrets);
    }
    if (ret != FK_EXIT_OK && rc != FK_OK) {
        fprintf(stderr, "provision-keys: %s: %zu problem(s) found (%s)\n", a.pos[0],
                fk_nvs_image_problem_count(img), fk_strerror(rc));
        if (a.keys == NULL && rc == FK_E_CRC && fk_nvs_image_item_count(img) == 0) {
            fprintf(stderr, "provision-keys: no entry is readable: if the image is encrypted, "
                            "pass --keys KEYS.bin\n");
        }
    }
    fk_nvs_image_free(img);
    return ret;
}

/* ---- partition-table ------------------------------------------------------------------ */

static int ptable_decode(const char *path, int json) {
    struct fk_diag diag;
    fk_diag_init(&diag);
    uint8_t *buf = NULL;
    size_t len = 0;
    struct fk_partition_table t;
    enum fk_err rc = fk_file_read(path, MAX_IMAGE, &buf, &len, &diag);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    /* A whole flash image holds the table at 0x8000. */
    size_t at = 0;
    if (len >= FK_PARTITION_TABLE_OFFSET + FK_PARTITION_TABLE_SIZE &&
        !(buf[0] == 0xAA && buf[1] == 0x50)) {
        at = FK_PARTITION_TABLE_OFFSET;
    }
    rc = fk_partition_parse(buf + at, len - at, &t, &diag);
    free(buf);
    if (rc != FK_OK) {
        snprintf(diag.file, sizeof diag.file, "%s", path);
        if (diag.offset >= 0) {
            diag.offset += (long long)at;
        }
        return fk_cli_fail(&diag, rc);
    }
    if (json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < t.count && arr != NULL; i++) {
            const struct fk_partition *p = &t.parts[i];
            char tb[8];
            char sb[8];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(arr, o);
            cJSON_AddStringToObject(o, "name", p->name);
            cJSON_AddStringToObject(o, "type", fk_partition_type_name(p->type, tb));
            cJSON_AddStringToObject(o, "subtype", fk_partition_subtype_name(p->type, p->subtype, sb));
            cJSON_AddNumberToObject(o, "offset", p->offset);
            cJSON_AddNumberToObject(o, "size", p->size);
            cJSON_AddBoolToObject(o, "encrypted", (p->flags & FK_PART_FLAG_ENCRYPTED) != 0);
            cJSON_AddBoolToObject(o, "readonly", (p->flags & FK_PART_FLAG_READONLY) != 0);
        }
        char *text = arr != NULL ? cJSON_Print(arr) : NULL;
        cJSON_Delete(arr);
        if (text == NULL) {
            return fk_cli_fail(NULL, FK_E_NOMEM);
        }
        puts(text);
        cJSON_free(text);
        return FK_EXIT_OK;
    }
    char out[FK_PARTITION_MAX * 96 + 128];
    size_t olen = 0;
    rc = fk_partition_csv_write(&t, out, sizeof out, &olen);
    if (rc != FK_OK) {
        return fk_cli_fail(NULL, rc);
    }
    fwrite(out, 1, olen, stdout);
    return FK_EXIT_OK;
}

static int cmd_ptable(int argc, char **argv) {
    const char *cmd = "nvs partition-table";
    struct args a;
    if (parse_args(cmd, argc, argv, &a, 3) != 0) {
        return FK_EXIT_USAGE;
    }
    if (a.help || a.npos == 0) {
        fputs(help_ptable, a.help ? stdout : stderr);
        return a.help ? FK_EXIT_OK : FK_EXIT_USAGE;
    }
    if (strcmp(a.pos[0], "default") == 0) {
        if (a.npos != 1 || only(cmd, &a, "") != 0) {
            return fk_cli_usage_error(cmd, "default takes no arguments");
        }
        fputs(fk_partition_default_csv, stdout);
        return FK_EXIT_OK;
    }
    if (strcmp(a.pos[0], "decode") == 0) {
        if (a.npos != 2 || only(cmd, &a, "--json") != 0) {
            return fk_cli_usage_error(cmd, "expected decode TABLE.bin [--json]");
        }
        return ptable_decode(a.pos[1], a.json);
    }
    if (strcmp(a.pos[0], "encode") != 0) {
        return fk_cli_usage_error(cmd, "unknown action '%s' (encode, decode or default)",
                                  a.pos[0]);
    }
    if (a.npos != 3 || only(cmd, &a, "") != 0) {
        return fk_cli_usage_error(cmd, "expected encode PARTITIONS.csv OUTPUT.bin");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    uint8_t *csv = NULL;
    size_t clen = 0;
    static struct fk_partition_table t;
    uint8_t bin[FK_PARTITION_TABLE_SIZE];
    size_t blen = 0;
    enum fk_err rc = fk_file_read(a.pos[1], 1u << 20, &csv, &clen, &diag);
    if (rc == FK_OK) {
        rc = fk_partition_csv_parse((const char *)csv, clen, a.pos[1], &t, &diag);
    }
    if (rc == FK_OK) {
        rc = fk_partition_encode(&t, bin, sizeof bin, &blen);
    }
    if (rc == FK_OK) {
        rc = fk_file_write_atomic(a.pos[2], bin, blen, 0644, 0, &diag);
    }
    free(csv);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    printf("%s: %zu partitions, %zu bytes (flash at 0x%x)\n", a.pos[2], t.count, blen,
           FK_PARTITION_TABLE_OFFSET);
    return FK_EXIT_OK;
}

int fk_cmd_nvs(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? FK_EXIT_USAGE : FK_EXIT_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "generate") == 0) {
        return cmd_build(argc - 1, argv + 1, 0);
    }
    if (strcmp(sub, "encrypt") == 0) {
        return cmd_build(argc - 1, argv + 1, 1);
    }
    if (strcmp(sub, "decrypt") == 0) {
        return cmd_decrypt(argc - 1, argv + 1);
    }
    if (strcmp(sub, "generate-key") == 0) {
        return cmd_genkey(argc - 1, argv + 1);
    }
    if (strcmp(sub, "dump") == 0) {
        return cmd_dump(argc - 1, argv + 1);
    }
    if (strcmp(sub, "partition-table") == 0) {
        return cmd_ptable(argc - 1, argv + 1);
    }
    fprintf(stderr, "provision-keys nvs: unknown command '%s'\n\n%s", sub, usage_text);
    return FK_EXIT_USAGE;
}
