/* provision-keys efuse: the virtual eFuse of a robot-sim flash image (docs/efuse.md).
 *
 *   provision-keys efuse burn-key-digest --image FLASH --key PUB.pem [--block N]
 *   provision-keys efuse revoke-key-digest --image FLASH --digest K
 *   provision-keys efuse summary --image FLASH
 *   (--efuse-file PATH instead of FLASH.efuse)
 *
 * The eFuse array lives in FLASH.efuse beside the flash image (format in docs/formats.md); the
 * bit logic is the device library's (fkd/efuse.h), so what this tool burns is exactly what the
 * simulated bootloader reads. The digest is the host module's fk_ota_key_digest, which is
 * espsecure digest-sbv2-public-key. A burn is one-way, as on the chip: a second burn of the
 * same key, or any burn into a write-protected block, is refused and the file is not touched. */
#include "cli.h"

#include "fkd/efuse.h"
#include "fleetkey/common.h"
#include "fleetkey/ota.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char efuse_help[] =
    "usage: provision-keys efuse burn-key-digest --image FLASH --key KEY.pem [--block N]\n"
    "       provision-keys efuse revoke-key-digest --image FLASH --digest K\n"
    "       provision-keys efuse summary --image FLASH\n"
    "  The virtual eFuse (ESP32-C3 layout) of a robot-sim flash image, kept in FLASH.efuse\n"
    "  (--efuse-file PATH to name it). Bits are one-way: nothing burned can be undone.\n"
    "  burn-key-digest    burns the Secure Boot V2 digest of KEY (public or private PEM,\n"
    "                     RSA-3072 or ECDSA; espsecure digest-sbv2-public-key) into a free key\n"
    "                     block (--block 0..5 or BLOCK_KEY0..5) with the next free purpose\n"
    "                     SECURE_BOOT_DIGEST0..2, and write-protects block and purpose; a second\n"
    "                     burn of the same key, or into a burned block, is refused\n"
    "  revoke-key-digest  burns SECURE_BOOT_KEY_REVOKEK (K 0..2): that digest is no longer\n"
    "                     trusted by the bootloader\n"
    "  summary            every field, as espefuse.py summary shows it\n"
    "  exit: 0 done, 1 refused or failed, 2 usage\n";

enum { OPT_IMAGE = 1000, OPT_KEY, OPT_BLOCK, OPT_FILE, OPT_DIGEST, OPT_HELP };

static const struct option efuse_opts[] = {
    {"image", required_argument, NULL, OPT_IMAGE},
    {"key", required_argument, NULL, OPT_KEY},
    {"block", required_argument, NULL, OPT_BLOCK},
    {"efuse-file", required_argument, NULL, OPT_FILE},
    {"digest", required_argument, NULL, OPT_DIGEST},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct eargs {
    const char *image, *key, *block, *file, *digest;
};

/* The eFuse file of the image; a missing file is a blank chip (*exists = 0). */
static enum fk_err efuse_load(const char *path, struct fkd_efuse *e, int *exists,
                              struct fk_diag *d) {
    uint8_t *buf = NULL;
    size_t len = 0;
    struct stat st;
    *exists = 0;
    fkd_efuse_blank(e);
    if (stat(path, &st) != 0) {
        return FK_OK;
    }
    enum fk_err rc = fk_file_read(path, FKD_EFUSE_FILE_LEN + 1, &buf, &len, d);
    if (rc != FK_OK) {
        return rc;
    }
    enum fkd_err drc = fkd_efuse_parse(buf, len, e);
    free(buf);
    if (drc != FKD_OK) {
        return fk_diag_at(d, FK_E_PARSE, path, 0,
                          "not a virtual eFuse file: expected %u bytes starting with "
                          "\"" FKD_EFUSE_MAGIC "\" and chip \"" FKD_EFUSE_CHIP "\" (%zu bytes)",
                          FKD_EFUSE_FILE_LEN, len);
    }
    *exists = 1;
    return FK_OK;
}

static enum fk_err efuse_store(const char *path, const struct fkd_efuse *e, struct fk_diag *d) {
    uint8_t out[FKD_EFUSE_FILE_LEN];
    fkd_efuse_encode(e, out);
    /* Key digests are public: 0644. Temp file, fsync, rename: a crash leaves old or new. */
    return fk_file_write_atomic(path, out, sizeof out, 0644, 0, d);
}

static void hex_spaced(const uint8_t *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 3 * i, 4, "%02x%s", p[i], i + 1 < n ? " " : "");
    }
}

/* "R/W" as espefuse prints it: readable unless read-protected, writable unless WR_DIS. */
static const char *rw(int rd_dis, int wr_dis) {
    return rd_dis ? (wr_dis ? "-/-" : "-/W") : (wr_dis ? "R/-" : "R/W");
}

static void summary(const struct fkd_efuse *e, const char *path, int exists) {
    printf("eFuse file: %s%s (chip %s)\n", path, exists ? "" : " (absent: a blank chip)",
           FKD_EFUSE_CHIP);
    printf("EFUSE_NAME (Block) Description  = [Meaningful Value] [Readable/Writeable] (Hex "
           "Value)\n");
    printf("------------------------------------------------------------------------------"
           "----------\n");
    printf("Security fuses:\n");
    uint32_t wr = fkd_efuse_field(e, 0, 0, 32);
    printf("%-40s = 0x%08x R/W\n", "WR_DIS (BLOCK0) Disable programming", (unsigned)wr);
    uint32_t rd = fkd_efuse_field(e, 0, FKD_EFUSE_RD_DIS_BLOCK_KEY0, 7);
    printf("%-40s = 0x%02x %s (0b", "RD_DIS (BLOCK0) Disable reading", (unsigned)rd,
           rw(0, (int)(wr & 1u)));
    for (int i = 6; i >= 0; i--) {
        putchar((rd >> i) & 1u ? '1' : '0');
    }
    printf(")\n");
    int sb = (int)fkd_efuse_field(e, 0, FKD_EFUSE_SECURE_BOOT_EN, 1);
    printf("%-40s = %s %s (0b%d)\n", "SECURE_BOOT_EN (BLOCK0)", sb ? "True" : "False",
           rw(0, (int)((wr >> FKD_EFUSE_WR_DIS_SECURE_BOOT_EN) & 1u)), sb);
    for (unsigned k = 0; k < FKD_EFUSE_SB_DIGESTS; k++) {
        char name[64];
        int v = (int)fkd_efuse_field(e, 0, FKD_EFUSE_SB_KEY_REVOKE0 + k, 1);
        snprintf(name, sizeof name, "SECURE_BOOT_KEY_REVOKE%u (BLOCK0)", k);
        printf("%-40s = %s %s (0b%d)\n", name, v ? "True" : "False",
               rw(0, (int)((wr >> (FKD_EFUSE_WR_DIS_SB_KEY_REVOKE0 + k)) & 1u)), v);
    }
    for (unsigned n = 0; n < FKD_EFUSE_KEY_BLOCKS; n++) {
        char name[64];
        unsigned p = fkd_efuse_key_purpose(e, n);
        snprintf(name, sizeof name, "KEY_PURPOSE_%u (BLOCK0)", n);
        printf("%-40s = %s %s (0x%x)\n", name, fkd_efuse_purpose_name(p),
               rw(0, (int)((wr >> (FKD_EFUSE_WR_DIS_KEY_PURPOSE0 + n)) & 1u)), p);
    }
    printf("\nKey blocks:\n");
    for (unsigned n = 0; n < FKD_EFUSE_KEY_BLOCKS; n++) {
        size_t len;
        size_t off = fkd_efuse_block_off(4u + n, &len);
        int rdis = (int)((rd >> n) & 1u);
        int wdis = (int)((wr >> (FKD_EFUSE_WR_DIS_BLOCK_KEY0 + n)) & 1u);
        char hex[3 * 32];
        if (rdis) {
            /* A read-protected block reads as zeros, as espefuse shows it. */
            static const uint8_t zeros[32];
            hex_spaced(zeros, 32, hex);
        } else {
            hex_spaced(e->raw + off, 32, hex);
        }
        printf("BLOCK_KEY%u (BLOCK%u)\n  Purpose: %s\n  Key%u or user data = %s %s\n", n, 4 + n,
               fkd_efuse_purpose_name(fkd_efuse_key_purpose(e, n)), n, hex, rw(rdis, wdis));
    }
    uint8_t dg[FKD_EFUSE_SB_DIGESTS][32];
    unsigned count = fkd_efuse_sb_digests(e, dg);
    printf("\nSecure Boot V2: %u trusted key digest(s) (not revoked, readable)\n", count);
}

static int parse_block(const char *s, int *out) {
    if (strncmp(s, "BLOCK_KEY", 9) == 0) {
        s += 9;
    }
    if (s[0] < '0' || s[0] > '5' || s[1] != '\0') {
        return -1;
    }
    *out = s[0] - '0';
    return 0;
}

static int burn(const struct eargs *a, const char *path) {
    struct fk_diag d;
    struct fk_ota_key *k = NULL;
    struct fkd_efuse e;
    int exists = 0, block = -1, ret = FK_EXIT_FAIL;
    uint8_t dg[FK_OTA_KEY_DIGEST_LEN];
    char hex[2 * FK_OTA_KEY_DIGEST_LEN + 1];
    fk_diag_init(&d);
    if (a->key == NULL) {
        return fk_cli_usage_error("efuse burn-key-digest", "--key is required");
    }
    if (a->block != NULL && parse_block(a->block, &block) != 0) {
        return fk_cli_usage_error("efuse burn-key-digest",
                                  "--block %s: expected 0..5 or BLOCK_KEY0..BLOCK_KEY5", a->block);
    }
    enum fk_err rc = fk_ota_key_load(a->key, 0, &k, &d);
    if (rc == FK_OK) {
        rc = fk_ota_key_digest(k, dg);
    }
    if (rc == FK_OK) {
        rc = efuse_load(path, &e, &exists, &d);
    }
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    unsigned used_key = 0, used_purpose = 0;
    const char *why = "";
    enum fkd_err drc = fkd_efuse_burn_key_digest(&e, block, dg, &used_key, &used_purpose, &why);
    if (fk_hex_encode(dg, sizeof dg, hex, sizeof hex) != FK_OK) {
        hex[0] = '\0';
    }
    if (drc != FKD_OK) {
        char where[24] = "";
        if (block >= 0) {
            snprintf(where, sizeof where, "BLOCK_KEY%d: ", block);
        }
        fprintf(stderr,
                "provision-keys efuse burn-key-digest: %s: refused: %s%s (digest %s of %s); "
                "nothing was burned\n",
                path, where, why, hex, a->key);
        goto out;
    }
    rc = efuse_store(path, &e, &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    printf("burned: BLOCK_KEY%u = %s (%s, %s)\n", used_key, hex, fk_ota_key_name(k),
           fk_ota_scheme_name(fk_ota_key_scheme(k)));
    printf("KEY_PURPOSE_%u = %s; write-protected: BLOCK_KEY%u, KEY_PURPOSE_%u\n", used_key,
           fkd_efuse_purpose_name(used_purpose), used_key, used_key);
    ret = FK_EXIT_OK;
out:
    fk_ota_key_free(k);
    return ret;
}

static int revoke(const struct eargs *a, const char *path) {
    struct fk_diag d;
    struct fkd_efuse e;
    int exists = 0;
    unsigned long k = 0;
    fk_diag_init(&d);
    if (a->digest == NULL || fk_parse_ulong(a->digest, 2, &k) != FK_OK) {
        return fk_cli_usage_error("efuse revoke-key-digest", "--digest: expected 0, 1 or 2");
    }
    enum fk_err rc = efuse_load(path, &e, &exists, &d);
    if (rc != FK_OK) {
        return fk_cli_fail(&d, rc);
    }
    if (fkd_efuse_revoke_digest(&e, (unsigned)k) != FKD_OK) {
        fprintf(stderr,
                "provision-keys efuse revoke-key-digest: %s: refused: SECURE_BOOT_KEY_REVOKE%lu "
                "is write-protected (WR_DIS bit %lu)\n",
                path, k, FKD_EFUSE_WR_DIS_SB_KEY_REVOKE0 + k);
        return FK_EXIT_FAIL;
    }
    rc = efuse_store(path, &e, &d);
    if (rc != FK_OK) {
        return fk_cli_fail(&d, rc);
    }
    printf("burned: SECURE_BOOT_KEY_REVOKE%lu = True\n", k);
    return FK_EXIT_OK;
}

int fk_cmd_efuse(int argc, char **argv) {
    struct eargs a;
    char path[4096];
    memset(&a, 0, sizeof a);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(efuse_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? FK_EXIT_USAGE : FK_EXIT_OK;
    }
    const char *sub = argv[1];
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "h", efuse_opts, NULL)) != -1) {
        switch (c) {
        case OPT_IMAGE:
            a.image = optarg;
            break;
        case OPT_KEY:
            a.key = optarg;
            break;
        case OPT_BLOCK:
            a.block = optarg;
            break;
        case OPT_FILE:
            a.file = optarg;
            break;
        case OPT_DIGEST:
            a.digest = optarg;
            break;
        case 'h':
        case OPT_HELP:
            fputs(efuse_help, stdout);
            return FK_EXIT_OK;
        default:
            return fk_cli_usage_error("efuse", "unexpected option '%s'", argv[optind]);
        }
    }
    if (optind != argc - 1) {
        return fk_cli_usage_error("efuse", "unexpected argument '%s'", argv[optind + 1]);
    }
    if (a.image == NULL) {
        return fk_cli_usage_error("efuse", "--image is required (the robot-sim flash image)");
    }
    struct stat st;
    if (stat(a.image, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr,
                "provision-keys efuse: %s: no such flash image (expected the file "
                "robot-sim flash-image create wrote)\n",
                a.image);
        return FK_EXIT_FAIL;
    }
    int n = a.file != NULL ? snprintf(path, sizeof path, "%s", a.file)
                           : snprintf(path, sizeof path, "%s.efuse", a.image);
    if (n < 0 || (size_t)n >= sizeof path) {
        return fk_cli_usage_error("efuse", "path too long");
    }
    if (strcmp(sub, "burn-key-digest") == 0) {
        return burn(&a, path);
    }
    if (strcmp(sub, "revoke-key-digest") == 0) {
        return revoke(&a, path);
    }
    if (strcmp(sub, "summary") == 0) {
        struct fk_diag d;
        struct fkd_efuse e;
        int exists = 0;
        fk_diag_init(&d);
        enum fk_err rc = efuse_load(path, &e, &exists, &d);
        if (rc != FK_OK) {
            return fk_cli_fail(&d, rc);
        }
        summary(&e, path, exists);
        return FK_EXIT_OK;
    }
    return fk_cli_usage_error("efuse",
                              "unknown subcommand '%s' (burn-key-digest, revoke-key-digest, "
                              "summary)",
                              sub);
}
