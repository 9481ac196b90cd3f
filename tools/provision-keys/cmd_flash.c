/* provision-keys flash: writes one device's NVS (and nvs_keys) partition images through the
 * ESP32 ROM serial download protocol, verifies them by the ROM's MD5 and a full read-back, and
 * only then marks the manifest provisioned and records the flash in the inventory.
 *
 *   provision-keys flash --keys keys/device_001.json --port PORT [--baud 115200]
 *       [--before default-reset|no-reset] [--after run|no-reset] [--partition-table CSV]
 *       [--force] [--json] [--inventory PATH] [--timeout MS] [--no-compress]
 *   provision-keys flash --read OFFSET LEN --out FILE --port PORT [...]
 *
 * Exit codes (docs/flash.md): 0 flashed and verified; 1 any other failure; 2 usage; 3 the chip
 * is not the manifest's device (refused without --force); 4 no ESP32 bootloader answered;
 * 5 verification failed. On every non-zero exit the manifest and the inventory are unchanged.
 *
 * The manifest is edited as JSON (cJSON), not re-rendered from a struct: every field this
 * command does not own (including ones added by later versions) is kept as it was, in order. */
#include "cli.h"

#include "fleetkey/flash.h"
#include "fleetkey/partition.h"
#if __has_include("fleetkey/inventory.h")
#include "fleetkey/inventory.h"
#define HAVE_INVENTORY 1
#endif

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    EXIT_WRONG_DEVICE = 3,
    EXIT_NO_BOOTLOADER = 4,
    EXIT_VERIFY = 5,
};

#define ROM_BAUD 115200u            /* the ESP32 ROM starts at 115200 and auto-bauds SYNC */
#define MANIFEST_MAX (64 * 1024)
#define IMAGE_MAX (1024 * 1024)
#define DEFAULT_FLASH_SIZE (4u * 1024u * 1024u)


struct region {
    const char *name;
    uint32_t offset;
    uint32_t size; /* partition size */
    uint8_t *data; /* the image (SECRET) */
    size_t len;
    char md5[33];
};

struct opts {
    const char *keys, *port, *pt, *inventory, *out;
    unsigned baud;
    enum fk_flash_before before;
    int run_after, force, json, no_compress;
    unsigned timeout_ms;
    int read_mode;
    unsigned long long read_off, read_len;
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: provision-keys flash --keys MANIFEST.json --port PORT [--baud N]\n"
            "           [--before default-reset|no-reset] [--after run|no-reset]\n"
            "           [--partition-table partitions.csv] [--force] [--json] [--inventory DB]\n"
            "           [--no-compress] [--timeout MS]\n"
            "       provision-keys flash --read OFFSET LEN --out FILE --port PORT [--baud N]\n"
            "\n"
            "Writes the manifest's NVS image (and nvs_keys image when encrypted) through the\n"
            "ESP32 ROM serial bootloader, verifies by MD5 and read-back, then marks the\n"
            "manifest provisioned. Refuses a chip whose MAC is not the manifest's device_id\n"
            "unless --force. Exit codes: 0 ok, 1 failure, 2 usage, 3 wrong device,\n"
            "4 no bootloader answered, 5 verification failed.\n");
}

/* ---- progress ------------------------------------------------------------------------- */
struct progress {
    const char *label;
    int on;
};

static void progress_cb(void *user, size_t done, size_t total) {
    struct progress *p = user;
    if (!p->on || total == 0) {
        return;
    }
    char bar[31];
    size_t fill = done * 30 / total;
    for (size_t i = 0; i < 30; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[30] = '\0';
    fprintf(stderr, "\r  %-14s [%s] %3zu%% %zu/%zu", p->label, bar, done * 100 / total, done,
            total);
    if (done == total) {
        fprintf(stderr, "\n");
    }
}

/* ---- JSON helpers --------------------------------------------------------------------- */
/* Wipes secret string values in place before the tree is freed (cJSON_Delete only frees). */
static void json_wipe(cJSON *n) {
    for (; n != NULL; n = n->next) {
        if (cJSON_IsString(n) && n->valuestring != NULL && n->string != NULL &&
            fk_redact_field(n->string)) {
            fk_wipe(n->valuestring, strlen(n->valuestring));
        }
        json_wipe(n->child);
    }
}

static void json_free(cJSON *j) {
    json_wipe(j);
    cJSON_Delete(j);
}

static const char *json_str(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) && v->valuestring[0] != '\0' ? v->valuestring : NULL;
}

/* ---- manifest ------------------------------------------------------------------------- */
static enum fk_err mac_from_device_id(const char *id, uint8_t mac[6], struct fk_diag *diag) {
    size_t n = 0;
    if (id == NULL || strncmp(id, "robot-", 6) != 0 || strlen(id) != 18 ||
        fk_hex_decode(id + 6, 12, mac, 6, &n, NULL) != FK_OK) {
        return fk_diag_set(diag, FK_E_PARSE,
                           "device_id: expected \"robot-\" and 12 hex digits of the MAC, got "
                           "\"%s\"", id != NULL ? id : "");
    }
    return FK_OK;
}

static void device_id_of(const uint8_t mac[6], char out[19]) {
    snprintf(out, 19, "robot-%02X%02X%02X%02X%02X%02X", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
}

/* snprintf that reports truncation (paths longer than the buffer are refused, not cut). */
static int fmt(char *out, size_t size, const char *f, ...) FK_PRINTF(3, 4);
static int fmt(char *out, size_t size, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(out, size, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

/* dir of path (without the slash) into out; "." when path has no directory part. */
static void dir_of(const char *path, char *out, size_t size) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(out, size, ".");
    } else if (slash == path) {
        snprintf(out, size, "/");
    } else {
        (void)fmt(out, size, "%.*s", (int)(slash - path), path);
    }
}

/* <dir>/<stem><suffix>, stem = manifest file name without ".json". */
static void sibling(const char *manifest, const char *suffix, char *out, size_t size) {
    const char *base = strrchr(manifest, '/');
    base = base != NULL ? base + 1 : manifest;
    size_t stem = strlen(base);
    if (stem > 5 && strcmp(base + stem - 5, ".json") == 0) {
        stem -= 5;
    }
    char dir[4096];
    dir_of(manifest, dir, sizeof dir);
    (void)fmt(out, size, "%s/%.*s%s", dir, (int)stem, base, suffix);
}

static enum fk_err load_image(const char *path, const char *want_sha256, size_t max,
                              struct region *r, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t md[32];
    unsigned md_len = 0;
    char hex[65];

    FK_GUARD(fk_file_read(path, IMAGE_MAX, &r->data, &r->len, diag));
    if (r->len == 0 || r->len > max || r->len % 4096 != 0) {
        rc = fk_diag_at(diag, FK_E_RANGE, path, 0,
                        "%zu bytes: the %s partition holds 0x%zx (images are whole 4 KiB "
                        "sectors)", r->len, r->name, max);
        goto out;
    }
    if (want_sha256 != NULL) {
        FK_GUARD_OSSL(EVP_Digest(r->data, r->len, md, &md_len, EVP_sha256(), NULL), FK_E_CRYPTO);
        FK_GUARD(fk_hex_encode(md, sizeof md, hex, sizeof hex));
        if (strcmp(hex, want_sha256) != 0) {
            rc = fk_diag_at(diag, FK_E_MISMATCH, path, 0,
                            "SHA-256 %s differs from the manifest's nvs_image_sha256: the "
                            "image is not the one minted with these keys", hex);
            goto out;
        }
    }
    rc = FK_OK;
out:
    return rc;
}

/* ---- partition table ------------------------------------------------------------------
 * The nvs and nvs_keys partitions come from the table the robot boots with: the built-in
 * default (fk_partition_default_csv, the one robot-sim lays out) or --partition-table. */
static enum fk_err load_partitions(const char *path, struct region *nvs, struct region *keys,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    struct fk_partition_table *t = NULL;
    const char *text = fk_partition_default_csv;
    const char *name = "built-in partition table";

    t = calloc(1, sizeof *t);
    FK_ENSURE(t != NULL, FK_E_NOMEM);
    if (path != NULL) {
        FK_GUARD(fk_file_read(path, 64 * 1024, &buf, &len, diag));
        text = (const char *)buf;
        name = path;
    } else {
        len = strlen(text);
    }
    FK_GUARD(fk_partition_csv_parse(text, len, name, t, diag));
    const struct fk_partition *p = fk_partition_find_type(t, FK_PART_DATA, FK_PART_SUB_NVS);
    if (p == NULL) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, name, 0, "no data/nvs partition");
        goto out;
    }
    nvs->offset = p->offset;
    nvs->size = p->size;
    p = fk_partition_find_type(t, FK_PART_DATA, FK_PART_SUB_NVS_KEYS);
    keys->offset = p != NULL ? p->offset : 0;
    keys->size = p != NULL ? p->size : 0;
    rc = FK_OK;
out:
    free(buf);
    free(t);
    return rc;
}

/* ---- the flash session ---------------------------------------------------------------- */
static int exit_for(enum fk_err rc, int sync_failed) {
    if (sync_failed) {
        return EXIT_NO_BOOTLOADER;
    }
    return rc == FK_E_VERIFY ? EXIT_VERIFY : FK_EXIT_FAIL;
}

static enum fk_err connect(const struct opts *o, struct fk_flash **f, uint8_t mac[6],
                           int *sync_failed, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_flash_opts fo = {0};
    fo.timeout_ms = o->timeout_ms;
    *sync_failed = 0;
    FK_GUARD(fk_flash_open(o->port, ROM_BAUD, o->before, &fo, f, diag));
    rc = fk_flash_sync(*f, diag);
    if (rc != FK_OK) {
        *sync_failed = 1;
        goto out;
    }
    FK_GUARD(fk_flash_detect_chip(*f, diag));
    FK_GUARD(fk_flash_read_mac(*f, mac, diag));
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err attach_and_baud(const struct opts *o, struct fk_flash *f,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_GUARD(fk_flash_spi_attach(f, DEFAULT_FLASH_SIZE, diag));
    if (o->baud != ROM_BAUD) {
        FK_GUARD(fk_flash_change_baud(f, o->baud, diag));
    }
    rc = FK_OK;
out:
    return rc;
}

static void print_failure(const struct opts *o, enum fk_err rc, const struct fk_diag *diag) {
    if (o->json) {
        char line[1024];
        fk_diag_format(diag, line, sizeof line);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", 0);
        cJSON_AddStringToObject(j, "error", fk_errname(rc));
        cJSON_AddStringToObject(j, "message", line[0] != '\0' ? line : fk_strerror(rc));
        char *s = cJSON_PrintUnformatted(j);
        if (s != NULL) {
            printf("%s\n", s);
        }
        free(s);
        cJSON_Delete(j);
    } else {
        (void)fk_cli_fail(diag, rc);
    }
}

static int do_read(const struct opts *o) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_diag diag;
    struct fk_flash *f = NULL;
    uint8_t mac[6];
    uint8_t *buf = NULL;
    int sync_failed = 0;
    struct progress pr = {"read", fk_cli_stderr_is_tty() && !o->json};

    fk_diag_init(&diag);
    FK_ENSURE(o->read_len > 0 && o->read_len <= 0x1000000ull &&
                  o->read_off <= 0xFFFFFFFFull - o->read_len,
              FK_E_RANGE);
    buf = malloc((size_t)o->read_len);
    FK_ENSURE(buf != NULL, FK_E_NOMEM);
    FK_GUARD(connect(o, &f, mac, &sync_failed, &diag));
    FK_GUARD(attach_and_baud(o, f, &diag));
    FK_GUARD(fk_flash_read(f, (uint32_t)o->read_off, buf, (size_t)o->read_len, progress_cb, &pr,
                           &diag));
    /* A flash dump may hold key material: 0600. */
    FK_GUARD(fk_file_write_atomic(o->out, buf, (size_t)o->read_len, 0600, 0, &diag));
    if (o->json) {
        printf("{\"ok\":true,\"offset\":%llu,\"length\":%llu,\"out\":\"%s\"}\n", o->read_off,
               o->read_len, o->out);
    } else {
        printf("read 0x%llx bytes at 0x%llx into %s\n", o->read_len, o->read_off, o->out);
    }
    rc = FK_OK;
out:
    fk_flash_close(f);
    fk_free_secret(buf, buf != NULL ? (size_t)o->read_len : 0);
    if (rc != FK_OK) {
        print_failure(o, rc, &diag);
        return exit_for(rc, sync_failed);
    }
    return FK_EXIT_OK;
}

/* The "regions" array of what was written, the same in the audit detail and in --json. */
static void add_regions(cJSON *j, const struct region *regs, size_t nregs) {
    cJSON *arr = cJSON_AddArrayToObject(j, "regions");
    for (size_t i = 0; i < nregs; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "partition", regs[i].name);
        cJSON_AddNumberToObject(r, "offset", regs[i].offset);
        cJSON_AddNumberToObject(r, "length", (double)regs[i].len);
        cJSON_AddStringToObject(r, "md5", regs[i].md5);
        cJSON_AddItemToArray(arr, r);
    }
}

#ifdef HAVE_INVENTORY
/* Records the flash; runs inside the caller's inventory transaction. */
static enum fk_err inventory_record(struct fk_inventory *inv, const char *id, const char *mac,
                                    const char *manifest, const char *manifest_sha256,
                                    const char *at, const char *port, const struct region *regs,
                                    size_t nregs, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_inv_device d;
    char *detail = NULL;
    cJSON *j = NULL;

    /* The row keeps what batch/generate recorded (name, created_at); the state, the time and
     * the manifest's new hash change (upsert is INSERT .. ON CONFLICT DO UPDATE). */
    rc = fk_inventory_device_get(inv, id, &d, diag);
    if (rc == FK_E_NOTFOUND) {
        memset(&d, 0, sizeof d);
        snprintf(d.id, sizeof d.id, "%s", id);
        snprintf(d.mac, sizeof d.mac, "%s", mac);
    } else {
        FK_GUARD(rc);
    }
    snprintf(d.state, sizeof d.state, "provisioned");
    snprintf(d.manifest, sizeof d.manifest, "%s", manifest);
    snprintf(d.manifest_sha256, sizeof d.manifest_sha256, "%s", manifest_sha256);
    snprintf(d.provisioned_at, sizeof d.provisioned_at, "%s", at);
    FK_GUARD(fk_inventory_device_upsert(inv, &d, diag));
    j = cJSON_CreateObject();
    FK_ENSURE(j != NULL, FK_E_NOMEM);
    cJSON_AddStringToObject(j, "port", port);
    cJSON_AddStringToObject(j, "mac", mac);
    add_regions(j, regs, nregs);
    detail = cJSON_PrintUnformatted(j);
    FK_ENSURE(detail != NULL, FK_E_NOMEM);
    FK_GUARD(fk_inventory_audit_append(inv, "provision-keys", "device.flashed", id, detail,
                                       diag));
    rc = FK_OK;
out:
    free(detail);
    cJSON_Delete(j);
    return rc;
}
#endif

static int do_flash(const struct opts *o) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_diag diag;
    struct fk_flash *f = NULL;
    uint8_t *mbuf = NULL;
    size_t mlen = 0;
    cJSON *m = NULL;
    char *rendered = NULL;
    uint8_t want_mac[6], mac[6];
    char chip_id[19], mac_text[18], at[21], path[4096], dir[4096];
    struct region regs[2] = {
        {"nvs", 0, 0, NULL, 0, ""},
        {"nvs_keys", 0, 0, NULL, 0, ""},
    };
    size_t nregs = 1;
    int sync_failed = 0, exit_code = FK_EXIT_FAIL;
    const char *inv_path = o->inventory;
#ifdef HAVE_INVENTORY
    struct fk_inventory *inv = NULL;
#endif
    long long t0 = (long long)time(NULL);

    fk_diag_init(&diag);
    /* 1. What to write, checked before the port is touched. */
    FK_GUARD(fk_file_read(o->keys, MANIFEST_MAX, &mbuf, &mlen, &diag));
    m = cJSON_ParseWithLength((const char *)mbuf, mlen);
    if (!cJSON_IsObject(m)) {
        rc = fk_diag_at(&diag, FK_E_PARSE, o->keys, 0, "not a JSON object");
        goto out;
    }
    const char *device_id = json_str(m, "device_id");
    rc = mac_from_device_id(device_id, want_mac, &diag);
    if (rc != FK_OK) {
        snprintf(diag.file, sizeof diag.file, "%s", o->keys);
        goto out;
    }
    FK_GUARD(load_partitions(o->pt, &regs[0], &regs[1], &diag));
    dir_of(o->keys, dir, sizeof dir);
    const char *img = json_str(m, "nvs_image");
    if (img != NULL) {
        FK_ENSURE(fmt(path, sizeof path, "%s/%s", dir, img) == 0, FK_E_TOOBIG);
    } else {
        sibling(o->keys, ".nvs.bin", path, sizeof path);
    }
    FK_GUARD(load_image(path, json_str(m, "nvs_image_sha256"), regs[0].size, &regs[0], &diag));
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(m, "nvs_encrypted");
    const char *keys_img = json_str(m, "nvs_keys");
    if (cJSON_IsTrue(enc) || keys_img != NULL) {
        if (keys_img != NULL) {
            FK_ENSURE(fmt(path, sizeof path, "%s/%s", dir, keys_img) == 0, FK_E_TOOBIG);
        } else {
            sibling(o->keys, ".nvs_keys.bin", path, sizeof path);
        }
        if (regs[1].size == 0) {
            rc = fk_diag_set(&diag, FK_E_NOTFOUND, "the NVS is encrypted but the partition "
                                                   "table has no nvs_keys partition");
            goto out;
        }
        FK_GUARD(load_image(path, NULL, regs[1].size, &regs[1], &diag));
        nregs = 2;
    }

    /* 2. Which robot is on the port. */
    FK_GUARD(connect(o, &f, mac, &sync_failed, &diag));
    device_id_of(mac, chip_id);
    if (memcmp(mac, want_mac, sizeof mac) != 0) {
        if (!o->force) {
            rc = fk_diag_set(&diag, FK_E_MISMATCH,
                             "this is %s, the keys are for %s: refusing to flash another "
                             "robot's keys (--force to override)", chip_id, device_id);
            exit_code = EXIT_WRONG_DEVICE;
            goto out;
        }
        fprintf(stderr, "provision-keys flash: warning: this is %s, the keys are for %s "
                        "(--force)\n", chip_id, device_id);
    }
    FK_GUARD(attach_and_baud(o, f, &diag));

    /* 3. Write, 4. verify: nothing is recorded unless both partitions verify. */
    int tty = fk_cli_stderr_is_tty() && !o->json;
    for (size_t i = 0; i < nregs; i++) {
        struct progress pw = {regs[i].name, tty};
        /* Compressed like esptool's default: an NVS image is mostly 0xFF. */
        FK_GUARD((o->no_compress ? fk_flash_write : fk_flash_write_deflate)(
            f, regs[i].offset, regs[i].data, regs[i].len, progress_cb, &pw, &diag));
    }
    for (size_t i = 0; i < nregs; i++) {
        char label[32];
        uint8_t md5[16];
        unsigned md_len = 0;
        snprintf(label, sizeof label, "verify %s", regs[i].name);
        struct progress pv = {label, tty};
        FK_GUARD(fk_flash_verify(f, regs[i].offset, regs[i].data, regs[i].len, progress_cb, &pv,
                                 &diag));
        FK_GUARD_OSSL(EVP_Digest(regs[i].data, regs[i].len, md5, &md_len, EVP_md5(), NULL),
                      FK_E_CRYPTO);
        FK_GUARD(fk_hex_encode(md5, sizeof md5, regs[i].md5, sizeof regs[i].md5));
    }
    if (o->run_after) {
        /* Leave download mode and run the firmware, as esptool's --after does; the data is
         * already verified, so a lost acknowledgement here is only worth a warning. */
        struct fk_diag d2;
        fk_diag_init(&d2);
        if (fk_flash_end(f, 1, &d2) != FK_OK && !o->json) {
            fprintf(stderr, "provision-keys flash: warning: %s\n", d2.msg);
        }
    }
    struct fk_flash_stats st;
    fk_flash_get_stats(f, &st);
    fk_flash_close(f);
    f = NULL;

    /* 5. Record: the inventory transaction is open while the manifest is replaced, and the
     * manifest is put back if the commit fails, so both change or neither does. */
    fk_time_rfc3339((long long)time(NULL), at);
    snprintf(mac_text, sizeof mac_text, "%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2],
             mac[3], mac[4], mac[5]);
    cJSON_ReplaceItemInObjectCaseSensitive(m, "provisioned", cJSON_CreateTrue());
    if (cJSON_GetObjectItemCaseSensitive(m, "provisioned") == NULL) {
        cJSON_AddTrueToObject(m, "provisioned");
    }
    if (cJSON_GetObjectItemCaseSensitive(m, "provisioned_at") != NULL) {
        cJSON_ReplaceItemInObjectCaseSensitive(m, "provisioned_at", cJSON_CreateString(at));
    } else {
        cJSON_AddStringToObject(m, "provisioned_at", at);
    }
    char *printed = cJSON_Print(m);
    FK_ENSURE(printed != NULL, FK_E_NOMEM);
    /* The file is the JSON text and a final newline; its SHA-256 goes to the inventory. */
    size_t plen = strlen(printed);
    rendered = malloc(plen + 2);
    if (rendered != NULL) {
        memcpy(rendered, printed, plen);
        rendered[plen] = '\n';
        rendered[plen + 1] = '\0';
    }
    fk_free_secret(printed, plen);
    FK_ENSURE(rendered != NULL, FK_E_NOMEM);
    if (inv_path == NULL) {
        if (fmt(path, sizeof path, "%s/inventory.db", dir) == 0 && access(path, F_OK) == 0) {
            inv_path = path;
        }
    }
#ifdef HAVE_INVENTORY
    if (inv_path != NULL) {
        const char *base = strrchr(o->keys, '/');
        uint8_t msha[32];
        unsigned msha_len = 0;
        char msha_hex[65];
        FK_GUARD_OSSL(EVP_Digest(rendered, strlen(rendered), msha, &msha_len, EVP_sha256(), NULL),
                      FK_E_CRYPTO);
        FK_GUARD(fk_hex_encode(msha, sizeof msha, msha_hex, sizeof msha_hex));
        FK_GUARD(fk_inventory_open(inv_path, &inv, &diag));
        FK_GUARD(fk_inventory_begin(inv, &diag));
        FK_GUARD(inventory_record(inv, device_id, mac_text, base != NULL ? base + 1 : o->keys,
                                  msha_hex, at, o->port, regs, nregs, &diag));
    }
#else
    if (inv_path != NULL) {
        rc = fk_diag_set(&diag, FK_E_UNSUPPORTED, "this build has no inventory module");
        goto out;
    }
#endif
    FK_GUARD(fk_file_write_atomic(o->keys, rendered, strlen(rendered), 0600, 0, &diag));
#ifdef HAVE_INVENTORY
    if (inv != NULL) {
        rc = fk_inventory_commit(inv, &diag);
        if (rc != FK_OK) {
            struct fk_diag d3;
            fk_diag_init(&d3);
            if (fk_file_write_atomic(o->keys, mbuf, mlen, 0600, 0, &d3) != FK_OK) {
                fprintf(stderr, "provision-keys flash: could not restore %s: %s\n", o->keys,
                        d3.msg);
            }
            goto out;
        }
    }
#endif

    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", 1);
        cJSON_AddStringToObject(j, "device_id", device_id);
        cJSON_AddStringToObject(j, "mac", mac_text);
        cJSON_AddStringToObject(j, "port", o->port);
        cJSON_AddStringToObject(j, "provisioned_at", at);
        add_regions(j, regs, nregs);
        cJSON_AddNumberToObject(j, "wire_tx_bytes", (double)st.tx_bytes);
        cJSON_AddNumberToObject(j, "wire_rx_bytes", (double)st.rx_bytes);
        cJSON_AddNumberToObject(j, "retries", st.retries);
        cJSON_AddNumberToObject(j, "seconds", (double)((long long)time(NULL) - t0));
        char *s = cJSON_PrintUnformatted(j);
        if (s != NULL) {
            printf("%s\n", s);
        }
        free(s);
        cJSON_Delete(j);
    } else {
        printf("flashed %s on %s:", device_id, o->port);
        for (size_t i = 0; i < nregs; i++) {
            printf(" %s 0x%x+0x%zx", regs[i].name, (unsigned)regs[i].offset, regs[i].len);
        }
        printf("; verified (MD5 + read-back); %s marked provisioned at %s\n", o->keys, at);
    }
    rc = FK_OK;
    exit_code = FK_EXIT_OK;
out:
    fk_flash_close(f);
#ifdef HAVE_INVENTORY
    fk_inventory_close(inv); /* rolls back an uncommitted transaction */
#endif
    if (rendered != NULL) {
        fk_free_secret(rendered, strlen(rendered));
    }
    json_free(m);
    fk_free_secret(mbuf, mlen);
    for (size_t i = 0; i < 2; i++) {
        fk_free_secret(regs[i].data, regs[i].len);
    }
    if (rc != FK_OK) {
        print_failure(o, rc, &diag);
        return exit_code != FK_EXIT_FAIL ? exit_code : exit_for(rc, sync_failed);
    }
    return exit_code;
}

int fk_cmd_flash(int argc, char **argv) {
    struct opts o = {0};
    o.baud = ROM_BAUD;
    o.run_after = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return FK_EXIT_OK;
        } else if (strcmp(a, "--force") == 0) {
            o.force = 1;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--no-compress") == 0 || strcmp(a, "-u") == 0) {
            o.no_compress = 1;
        } else if (strcmp(a, "--read") == 0) {
            if (i + 2 >= argc || fk_cli_parse_size(argv[i + 1], &o.read_off) != 0 ||
                fk_cli_parse_size(argv[i + 2], &o.read_len) != 0) {
                return fk_cli_usage_error("flash", "--read takes OFFSET LEN (e.g. 0x9000 0x6000)");
            }
            o.read_mode = 1;
            i += 2;
        } else if (i + 1 >= argc) {
            return fk_cli_usage_error("flash", "%s: missing value or unknown option", a);
        } else if (strcmp(a, "--keys") == 0) {
            o.keys = argv[++i];
        } else if (strcmp(a, "--port") == 0) {
            o.port = argv[++i];
        } else if (strcmp(a, "--partition-table") == 0) {
            o.pt = argv[++i];
        } else if (strcmp(a, "--inventory") == 0) {
            o.inventory = argv[++i];
        } else if (strcmp(a, "--out") == 0) {
            o.out = argv[++i];
        } else if (strcmp(a, "--baud") == 0 || strcmp(a, "--timeout") == 0) {
            unsigned long long v = 0;
            if (fk_cli_parse_size(argv[i + 1], &v) != 0 || v == 0 || v > 10000000ull) {
                return fk_cli_usage_error("flash", "%s: expected a number", a);
            }
            *(strcmp(a, "--baud") == 0 ? &o.baud : &o.timeout_ms) = (unsigned)v;
            i++;
        } else if (strcmp(a, "--before") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "default-reset") == 0 || strcmp(v, "default_reset") == 0) {
                o.before = FK_FLASH_BEFORE_DEFAULT_RESET;
            } else if (strcmp(v, "no-reset") == 0 || strcmp(v, "no_reset") == 0) {
                o.before = FK_FLASH_BEFORE_NO_RESET;
            } else {
                return fk_cli_usage_error("flash", "--before: default-reset or no-reset");
            }
        } else if (strcmp(a, "--after") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "run") != 0 && strcmp(v, "no-reset") != 0) {
                return fk_cli_usage_error("flash", "--after: run or no-reset");
            }
            o.run_after = strcmp(v, "run") == 0;
        } else {
            return fk_cli_usage_error("flash", "unknown option %s", a);
        }
    }
    if (o.port == NULL) {
        return fk_cli_usage_error("flash", "--port is required");
    }
    if (o.read_mode) {
        if (o.out == NULL) {
            return fk_cli_usage_error("flash", "--read needs --out FILE");
        }
        return do_read(&o);
    }
    if (o.keys == NULL) {
        return fk_cli_usage_error("flash", "--keys MANIFEST.json is required");
    }
    return do_flash(&o);
}
