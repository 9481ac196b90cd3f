/* provision-keys sign | verify | signature-info | key-digest: firmware signing with Secure
 * Boot V2 signature sectors (docs/ota-signing.md). Parses arguments, calls the ota library,
 * prints what happened (key digests and names, never key material) and maps the result to an
 * exit code: 0 done / verified, 1 failed (with the reason), 2 bad command line. */
#include "cli.h"
#include "fleetkey/inventory.h"
#include "fleetkey/ota.h"
#include "fleetkey/rotation.h" /* --inventory: refuse retired keys (issue 7, section 3) */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ESP32 app partitions are at most 16 MiB (the largest flash); leave room for the sector. */
#define IMAGE_MAX (16u * 1024u * 1024u + 8192u)
/* A PEM key read from a pipe: RSA-3072 PKCS#8 is about 2.5 KB. */
#define PIPE_KEY_MAX 16384u

static const char sign_help[] =
    "usage: provision-keys sign --key KEY [--key KEY2 [--key KEY3]] [--raw] --output OUT IMAGE\n"
    "       provision-keys sign --append --key KEY [--key ...] --output OUT SIGNED\n"
    "\n"
    "Signs IMAGE for ESP32 Secure Boot V2, as espsecure sign-data --version 2 does: the image\n"
    "is padded with 0xFF to a 4 KiB boundary and followed by a 4 KiB signature sector with one\n"
    "block per --key (at most 3; dual-signing = two keys). Keys: RSA-3072 (RSA-PSS, classic\n"
    "ESP32 ECO3+), ECDSA P-256 or P-384 (C2/C6/H2 and later).\n"
    "\n"
    "  --key KEY     a PEM private key file, or a PKCS#11 URI (pkcs11:token=...;object=...);\n"
    "                the token PIN comes from FK_PKCS11_PIN, the module from FK_PKCS11_MODULE;\n"
    "                '-' reads the PEM text from standard input (a pipe: no key file on disk)\n"
    "  --key-fd N    reads a PEM key from file descriptor N (a second piped key)\n"
    "  --raw         sign any data; without it IMAGE must be a valid ESP32 app image\n"
    "  --append      add blocks to an already signed image; existing blocks stay unchanged\n"
    "  --output OUT  the signed image (written atomically)\n"
    "  --inventory DB  refuse keys the OTA key rotation retired (provision-keys rotate)\n";

static const char verify_help[] =
    "usage: provision-keys verify --pubkey PUB [--pubkey PUB2 ...] SIGNED\n"
    "\n"
    "Checks the signature sector of SIGNED. Passes (exit 0) when at least one signature block\n"
    "carries one of the trusted keys and its signature verifies; says which block and key.\n"
    "Fails (exit 1) when none does, when any block's image digest does not match the image\n"
    "(the image changed after signing), or when the signature sector is damaged.\n"
    "\n"
    "  --pubkey PUB  a trusted key: PEM public key, PEM private key or pkcs11: URI;\n"
    "                '-' reads PEM text from standard input, --key-fd N from descriptor N\n";

static const char info_help[] =
    "usage: provision-keys signature-info SIGNED\n"
    "\n"
    "Lists the signature blocks of SIGNED: scheme, public key digest (the eFuse value), whether\n"
    "the block's image digest matches the image and its signature verifies with the key it\n"
    "carries; and the app description when the signed data is an app image. Exit 0 when at\n"
    "least one block is valid and every valid block matches the image, else 1.\n";

static const char digest_help[] =
    "usage: provision-keys key-digest --key KEY [--output FILE]\n"
    "\n"
    "Prints the SHA-256 digest of a Secure Boot V2 public key, the value burnt into eFuse\n"
    "(espsecure digest-sbv2-public-key). KEY is a PEM private or public key, a pkcs11: URI, or\n"
    "'-' for PEM text on standard input.\n"
    "--output also writes the 32 raw bytes to FILE.\n";

enum {
    OPT_KEY = 256,
    OPT_PUBKEY,
    OPT_OUTPUT,
    OPT_RAW,
    OPT_APPEND,
    OPT_INVENTORY,
    OPT_KEY_FD,
    OPT_HELP
};

static const struct option sign_opts[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"pubkey", required_argument, NULL, OPT_PUBKEY},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"raw", no_argument, NULL, OPT_RAW},
    {"append", no_argument, NULL, OPT_APPEND},
    {"inventory", required_argument, NULL, OPT_INVENTORY},
    {"key-fd", required_argument, NULL, OPT_KEY_FD},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct args {
    const char *keys[FK_OTA_SIG_BLOCKS_MAX + 8];
    int key_fd[FK_OTA_SIG_BLOCKS_MAX + 8]; /* -1: keys[i] is a path or URI; else read this fd */
    size_t nkeys;
    const char *output;
    const char *input;
    int raw;
    int append;
    int help;
    const char *inventory;
};

/* Which options a command takes, as a mask of 1 << (OPT_x - OPT_KEY). */
#define BIT(o) (1u << ((o)-OPT_KEY))

/* Records one --key/--pubkey (path, URI or "-") or --key-fd N. A descriptor may be read once:
 * a pipe holds one key. */
static int key_source(const char *cmd, int is_fd, const char *arg, struct args *a) {
    int fd = -1;
    if (is_fd) {
        unsigned long v = 0;
        if (fk_parse_ulong(arg, 1024, &v) != FK_OK) {
            return fk_cli_usage_error(cmd, "--key-fd: expected a file descriptor number, not '%s'",
                                      arg);
        }
        fd = (int)v;
    } else if (strcmp(arg, "-") == 0) {
        fd = STDIN_FILENO;
    }
    for (size_t i = 0; fd >= 0 && i < a->nkeys; i++) {
        if (a->key_fd[i] == fd) {
            return fk_cli_usage_error(cmd, "descriptor %d is given twice: one key per pipe", fd);
        }
    }
    a->key_fd[a->nkeys] = fd;
    a->keys[a->nkeys++] = arg;
    return 0;
}

/* Reads a PEM key from a pipe (or any descriptor) into buf, bounded; never a file of ours. */
static enum fk_err read_key_fd(int fd, uint8_t *buf, size_t cap, size_t *len, struct fk_diag *d) {
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            return fk_diag_set(d, FK_E_TOOBIG, "key on descriptor %d: over %zu bytes", fd, cap);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return fk_diag_set(d, FK_E_IO, "key on descriptor %d: %s", fd, strerror(errno));
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    if (n == 0) {
        return fk_diag_set(d, FK_E_PARSE, "key on descriptor %d: empty (expected PEM text)", fd);
    }
    *len = n;
    return FK_OK;
}

static int parse(const char *cmd, int argc, char **argv, unsigned allowed, struct args *a) {
    memset(a, 0, sizeof *a);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", sign_opts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            a->help = 1;
            return 0;
        }
        if (c < OPT_KEY || c > OPT_HELP || (allowed & BIT(c)) == 0) {
            return fk_cli_usage_error(cmd, "unknown or misplaced option '%s'", argv[optind - 1]);
        }
        switch (c) {
        case OPT_KEY:
        case OPT_PUBKEY:
        case OPT_KEY_FD:
            if (a->nkeys == sizeof a->keys / sizeof a->keys[0]) {
                return fk_cli_usage_error(cmd, "too many keys");
            }
            if (key_source(cmd, c == OPT_KEY_FD, optarg, a) != 0) {
                return FK_EXIT_USAGE;
            }
            break;
        case OPT_OUTPUT:
            a->output = optarg;
            break;
        case OPT_RAW:
            a->raw = 1;
            break;
        case OPT_APPEND:
            a->append = 1;
            break;
        case OPT_INVENTORY:
            a->inventory = optarg;
            break;
        default:
            break;
        }
    }
    if (optind != argc - 1) {
        return fk_cli_usage_error(cmd, optind >= argc ? "no input file given"
                                                      : "exactly one input file expected");
    }
    a->input = argv[optind];
    return 0;
}

static void hex_spaced(const uint8_t *p, size_t n, char *out, size_t out_size) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 <= out_size; i++) {
        o += (size_t)snprintf(out + o, out_size - o, i ? " %02x" : "%02x", p[i]);
    }
    if (o < out_size) {
        out[o] = '\0';
    }
}

static int load_keys(const struct args *a, int need_private, struct fk_ota_key **keys,
                     struct fk_diag *d) {
    for (size_t i = 0; i < a->nkeys; i++) {
        enum fk_err rc;
        if (a->key_fd[i] >= 0) {
            /* Piped key: it lives in this stack buffer only, wiped at once. */
            uint8_t pem[PIPE_KEY_MAX];
            size_t len = 0;
            char name[32];
            snprintf(name, sizeof name, a->key_fd[i] == 0 ? "stdin" : "fd %d", a->key_fd[i]);
            rc = read_key_fd(a->key_fd[i], pem, sizeof pem, &len, d);
            if (rc == FK_OK) {
                rc = fk_ota_key_from_pem(pem, len, name, need_private, &keys[i], d);
            }
            fk_wipe(pem, sizeof pem);
        } else {
            rc = fk_ota_key_load(a->keys[i], need_private, &keys[i], d);
        }
        if (rc != FK_OK) {
            if (d->msg[0] == '\0') {
                fk_diag_set(d, rc, "%s: %s", a->keys[i], fk_strerror(rc));
            }
            return fk_cli_fail(d, rc);
        }
    }
    return 0;
}

static void free_keys(struct fk_ota_key **keys, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fk_ota_key_free(keys[i]);
    }
}

static void print_key_line(const char *prefix, const struct fk_ota_key *k) {
    uint8_t dg[FK_OTA_KEY_DIGEST_LEN];
    char hex[2 * FK_OTA_KEY_DIGEST_LEN + 1];
    if (fk_ota_key_digest(k, dg) != FK_OK ||
        fk_hex_encode(dg, sizeof dg, hex, sizeof hex) != FK_OK) {
        hex[0] = '\0';
    }
    printf("%s%s (%s, key digest %s)\n", prefix, fk_ota_key_name(k),
           fk_ota_scheme_name(fk_ota_key_scheme(k)), hex);
}

/* Checks that a file to be signed afresh is what the user thinks it is. */
static int check_sign_input(const struct args *a, const uint8_t *buf, size_t len,
                            struct fk_diag *d) {
    struct fk_ota_sig_sector sec;
    if (fk_ota_sig_sector_parse(buf, len, &sec, NULL) == FK_OK && sec.leading_valid > 0) {
        fk_diag_at(d, FK_E_EXISTS, a->input, 0,
                   "already signed (%u signature block(s)); use --append to add a signature",
                   sec.leading_valid);
        return fk_cli_fail(d, FK_E_EXISTS);
    }
    if (a->raw) {
        return 0;
    }
    struct fk_ota_image im;
    enum fk_err rc = fk_ota_image_parse(buf, len, &im, d);
    if (rc != FK_OK) {
        snprintf(d->file, sizeof d->file, "%s", a->input);
        int ret = fk_cli_fail(d, rc);
        fprintf(stderr,
                "provision-keys sign: %s: expected an ESP32 app image; use --raw to "
                "sign other data\n",
                a->input);
        return ret;
    }
    /* Erased-flash padding after the image is fine (an image pre-padded for secure boot);
     * anything else would be signed without being part of the app. */
    for (size_t i = im.image_len; i < len; i++) {
        if (buf[i] != 0xFF) {
            fk_diag_at(d, FK_E_PARSE, a->input, 0,
                       "unexpected data after the app image end (offset 0x%zx, image is %zu "
                       "bytes); expected nothing or 0xff padding",
                       i, im.image_len);
            d->offset = (long long)i;
            return fk_cli_fail(d, FK_E_PARSE);
        }
    }
    if (im.has_app_desc) {
        printf("app image: project '%s' version '%s' secure_version %u, chip id %u, %u "
               "segments\n",
               im.app_desc.project_name, im.app_desc.version, (unsigned)im.app_desc.secure_version,
               (unsigned)im.chip_id, (unsigned)im.segment_count);
    } else {
        printf("app image: %u segments, chip id %u (no app description)\n",
               (unsigned)im.segment_count, (unsigned)im.chip_id);
    }
    return 0;
}

/* Section 3 of issue 7: a key the OTA key rotation retired never signs again. */
static int refuse_retired(const struct args *a, struct fk_ota_key **keys, struct fk_diag *d) {
    struct fk_inventory *inv = NULL;
    enum fk_err rc = fk_inventory_open(a->inventory, &inv, d);
    int ret = 0;
    for (size_t i = 0; rc == FK_OK && i < a->nkeys && ret == 0; i++) {
        char fpr[FK_INV_FPR_SIZE];
        int retired = 0;
        rc = fk_rotation_key_fpr(keys[i], fpr);
        if (rc == FK_OK) {
            rc = fk_rotation_key_retired(inv, fpr, &retired, d);
        }
        if (rc == FK_OK && retired) {
            char where[512]; /* a URI's password is masked */
            fk_inventory_location_display(a->inventory, where, sizeof where);
            fk_diag_set(d, FK_E_POLICY,
                        "%s: this OTA signing key (%s) is retired in %s: signing with it is "
                        "refused",
                        fk_ota_key_name(keys[i]), fpr, where);
            ret = fk_cli_fail(d, FK_E_POLICY);
        }
    }
    if (rc != FK_OK && ret == 0) {
        ret = fk_cli_fail(d, rc);
    }
    fk_inventory_close(inv);
    return ret;
}

int fk_cmd_sign(int argc, char **argv) {
    struct args a;
    struct fk_diag d;
    struct fk_ota_key *keys[sizeof a.keys / sizeof a.keys[0]] = {NULL};
    uint8_t *in = NULL;
    size_t in_len = 0;
    uint8_t *out = NULL;
    size_t out_len = 0;
    int ret = parse("sign", argc, argv,
                    BIT(OPT_KEY) | BIT(OPT_KEY_FD) | BIT(OPT_OUTPUT) | BIT(OPT_RAW) |
                        BIT(OPT_APPEND) | BIT(OPT_INVENTORY),
                    &a);

    fk_diag_init(&d);
    if (ret != 0 || a.help) {
        if (a.help) {
            fputs(sign_help, stdout);
        }
        return ret;
    }
    if (a.nkeys == 0) {
        return fk_cli_usage_error("sign", "--key is required");
    }
    if (a.nkeys > FK_OTA_SIG_BLOCKS_MAX) {
        return fk_cli_usage_error("sign", "at most %u keys (a signature sector has %u blocks)",
                                  FK_OTA_SIG_BLOCKS_MAX, FK_OTA_SIG_BLOCKS_MAX);
    }
    if (a.output == NULL) {
        return fk_cli_usage_error("sign", "--output is required");
    }
    if (a.append && a.raw) {
        return fk_cli_usage_error("sign", "--raw and --append do not go together");
    }
    enum fk_err rc = fk_file_read(a.input, IMAGE_MAX, &in, &in_len, &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    if (!a.append && (ret = check_sign_input(&a, in, in_len, &d)) != 0) {
        goto out;
    }
    if ((ret = load_keys(&a, 1, keys, &d)) != 0) {
        goto out;
    }
    if (a.inventory != NULL && (ret = refuse_retired(&a, keys, &d)) != 0) {
        goto out;
    }
    size_t out_size = a.append ? in_len : fk_ota_signed_size(in_len);
    out = malloc(out_size ? out_size : 1);
    if (out == NULL) {
        ret = fk_cli_fail(NULL, FK_E_NOMEM);
        goto out;
    }
    rc = a.append ? fk_ota_sign_append(in, in_len, keys, a.nkeys, out, out_size, &out_len, &d)
                  : fk_ota_sign(in, in_len, keys, a.nkeys, out, out_size, &out_len, &d);
    if (rc != FK_OK) {
        if (d.file[0] == '\0') {
            snprintf(d.file, sizeof d.file, "%s", a.input);
        }
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    /* A signed image is public: 0644. */
    rc = fk_file_write_atomic(a.output, out, out_len, 0644, 0, &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    struct fk_ota_sig_sector sec;
    if (fk_ota_sig_sector_parse(out, out_len, &sec, NULL) == FK_OK) {
        unsigned first = sec.leading_valid - (unsigned)a.nkeys;
        if (a.append) {
            printf("%s: %zu bytes, %u signature block(s), %zu appended\n", a.output, out_len,
                   sec.leading_valid, a.nkeys);
        } else {
            printf("%s: %zu bytes (data %zu bytes padded to %zu + signature sector), %u "
                   "signature block(s)\n",
                   a.output, out_len, in_len, sec.signed_len, sec.leading_valid);
        }
        for (size_t i = 0; i < a.nkeys; i++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "  block %u: ", first + (unsigned)i);
            print_key_line(prefix, keys[i]);
        }
    }
    ret = FK_EXIT_OK;
out:
    free_keys(keys, a.nkeys);
    free(in);
    free(out);
    return ret;
}

static const char *verdict_name(enum fk_ota_verdict v) {
    switch (v) {
    case FK_OTA_V_ABSENT:
        return "absent";
    case FK_OTA_V_INVALID:
        return "damaged";
    case FK_OTA_V_UNTRUSTED:
        return "signed by a key that is not trusted";
    case FK_OTA_V_BAD_SIG:
        return "trusted key, signature does NOT verify";
    case FK_OTA_V_OK:
        return "verified";
    }
    return "?";
}

int fk_cmd_verify(int argc, char **argv) {
    struct args a;
    struct fk_diag d;
    struct fk_ota_key *keys[sizeof a.keys / sizeof a.keys[0]] = {NULL};
    uint8_t *in = NULL;
    size_t in_len = 0;
    int ret = parse("verify", argc, argv, BIT(OPT_PUBKEY) | BIT(OPT_KEY) | BIT(OPT_KEY_FD), &a);

    fk_diag_init(&d);
    if (ret != 0 || a.help) {
        if (a.help) {
            fputs(verify_help, stdout);
        }
        return ret;
    }
    if (a.nkeys == 0) {
        return fk_cli_usage_error("verify", "--pubkey is required (the trusted key)");
    }
    enum fk_err rc = fk_file_read(a.input, IMAGE_MAX, &in, &in_len, &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    if ((ret = load_keys(&a, 0, keys, &d)) != 0) {
        goto out;
    }
    struct fk_ota_verify_result r;
    rc = fk_ota_verify(in, in_len, keys, a.nkeys, &r, &d);
    if (rc == FK_OK || rc == FK_E_VERIFY) {
        for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
            printf("block %u: %s", i, verdict_name(r.verdict[i]));
            if (r.key_of[i] >= 0) {
                printf(" (%s)", fk_ota_key_name(keys[r.key_of[i]]));
            }
            printf("\n");
        }
    }
    if (rc != FK_OK) {
        snprintf(d.file, sizeof d.file, "%s", a.input);
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    printf("%s: signature OK: block %d verified with ", a.input, r.block);
    print_key_line("", keys[r.key]);
    ret = FK_EXIT_OK;
out:
    free_keys(keys, a.nkeys);
    free(in);
    return ret;
}

int fk_cmd_signature_info(int argc, char **argv) {
    struct args a;
    struct fk_diag d;
    uint8_t *in = NULL;
    size_t in_len = 0;
    int ret = parse("signature-info", argc, argv, 0, &a);

    fk_diag_init(&d);
    if (ret != 0 || a.help) {
        if (a.help) {
            fputs(info_help, stdout);
        }
        return ret;
    }
    enum fk_err rc = fk_file_read(a.input, IMAGE_MAX, &in, &in_len, &d);
    if (rc != FK_OK) {
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    struct fk_ota_sig_sector sec;
    rc = fk_ota_sig_sector_parse(in, in_len, &sec, &d);
    if (rc != FK_OK) {
        snprintf(d.file, sizeof d.file, "%s", a.input);
        ret = fk_cli_fail(&d, rc);
        goto out;
    }
    printf("%s: %zu bytes signed data, signature sector at 0x%zx\n", a.input, sec.signed_len,
           sec.signed_len);
    struct fk_ota_image im;
    if (fk_ota_image_parse(in, sec.signed_len, &im, NULL) == FK_OK && im.has_app_desc) {
        printf("app: project '%s' version '%s' secure_version %u idf '%s' chip id %u\n",
               im.app_desc.project_name, im.app_desc.version, (unsigned)im.app_desc.secure_version,
               im.app_desc.idf_ver, (unsigned)im.chip_id);
    }
    int bad = 0;
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        const struct fk_ota_sig_block *b = &sec.blocks[i];
        if (b->state == FK_OTA_BLOCK_ABSENT) {
            printf("block %u: absent\n", i);
            continue;
        }
        if (b->state == FK_OTA_BLOCK_INVALID) {
            printf("block %u: invalid (%s)\n", i, b->why);
            continue;
        }
        uint8_t kd[FK_OTA_KEY_DIGEST_LEN];
        char hex[3 * FK_OTA_KEY_DIGEST_LEN + 1];
        int dok = 0;
        int sok = 0;
        fk_ota_block_key_digest(b, kd);
        hex_spaced(kd, sizeof kd, hex, sizeof hex);
        rc = fk_ota_block_check(&sec, in, i, &dok, &sok);
        if (rc != FK_OK) {
            ret = fk_cli_fail(NULL, rc);
            goto out;
        }
        printf("block %u: valid (%s, %s)\n", i, fk_ota_scheme_name(b->scheme),
               b->digest_len == 48 ? "SHA-384" : "SHA-256");
        printf("  public key digest: %s\n", hex);
        printf("  image digest: %s\n", dok ? "matches the image" : "DOES NOT match the image");
        printf("  signature: %s\n",
               sok ? "valid for the key in the block" : "INVALID for the key in the block");
        bad |= !dok || !sok;
    }
    if (sec.valid_blocks == 0) {
        fk_diag_at(&d, FK_E_VERIFY, a.input, 0, "no valid signature block");
        ret = fk_cli_fail(&d, FK_E_VERIFY);
        goto out;
    }
    if (bad) {
        fk_diag_at(&d, FK_E_VERIFY, a.input, 0, "a signature block does not match the image");
        ret = fk_cli_fail(&d, FK_E_VERIFY);
        goto out;
    }
    ret = FK_EXIT_OK;
out:
    free(in);
    return ret;
}

int fk_cmd_key_digest(int argc, char **argv) {
    struct args a;
    struct fk_diag d;
    struct fk_ota_key *k = NULL;
    int ret = FK_EXIT_FAIL;

    fk_diag_init(&d);
    /* The key is an option, not a positional argument: accept "--key K" alone. */
    memset(&a, 0, sizeof a);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", sign_opts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            fputs(digest_help, stdout);
            return FK_EXIT_OK;
        } else if ((c == OPT_KEY || c == OPT_KEY_FD) && a.nkeys == 0) {
            if (key_source("key-digest", c == OPT_KEY_FD, optarg, &a) != 0) {
                return FK_EXIT_USAGE;
            }
        } else if (c == OPT_OUTPUT) {
            a.output = optarg;
        } else {
            return fk_cli_usage_error("key-digest", "unexpected option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc) {
        return fk_cli_usage_error("key-digest", "unexpected argument '%s' (use --key)",
                                  argv[optind]);
    }
    if (a.nkeys != 1) {
        return fk_cli_usage_error("key-digest", "--key is required");
    }
    if ((ret = load_keys(&a, 0, &k, &d)) != 0) {
        goto out;
    }
    enum fk_err rc;
    uint8_t dg[FK_OTA_KEY_DIGEST_LEN];
    char hex[2 * FK_OTA_KEY_DIGEST_LEN + 1];
    if ((rc = fk_ota_key_digest(k, dg)) != FK_OK ||
        (rc = fk_hex_encode(dg, sizeof dg, hex, sizeof hex)) != FK_OK) {
        ret = fk_cli_fail(NULL, rc);
        goto out;
    }
    if (a.output != NULL) {
        rc = fk_file_write_atomic(a.output, dg, sizeof dg, 0644, 0, &d);
        if (rc != FK_OK) {
            ret = fk_cli_fail(&d, rc);
            goto out;
        }
    }
    printf("%s  %s (%s)\n", hex, fk_ota_key_name(k), fk_ota_scheme_name(fk_ota_key_scheme(k)));
    ret = FK_EXIT_OK;
out:
    fk_ota_key_free(k);
    return ret;
}
