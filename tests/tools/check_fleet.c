/* check_fleet: the consistency oracle of the batch crash test.
 *
 *   check_fleet DIR EXPECTED_DEVICES [INVENTORY]
 *
 * Exit 0 only when all of this holds:
 *   - the inventory has exactly EXPECTED_DEVICES devices, and DIR has exactly one
 *     manifest robot-*.json and one image robot-*.nvs.bin for each of them and no other;
 *   - no temp file (NAME.tmp.PID.N) is left in DIR;
 *   - every manifest parses, its SHA-256 is the one the inventory row recorded, and its
 *     psk_fingerprint is fk_fpr of its PSK;
 *   - the NVS image's SHA-256 is the manifest's nvs_image_sha256, and the PSK, psk_id and
 *     OTA key read from the image (decrypted with its nvs_keys file when encrypted) equal the
 *     manifest's, read by two independent readers (keys' and the nvs module's);
 *   - the inventory's active psk credential fingerprint equals the manifest's;
 *   - the OTA key is the fleet key (DIR/ota_signing.key.pem) for every device;
 *   - the audit chain verifies and holds exactly one device.minted entry per device.
 * Prints one line per problem (never a secret). */
#include "fleetkey/inventory.h"
#include "fleetkey/keys.h"
#include "fleetkey/nvs.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int problems;

static void problem(const char *id, const char *what) {
    if (problems < 50) {
        fprintf(stderr, "check_fleet: %s: %s\n", id, what);
    }
    problems++;
}

struct devs {
    struct fk_inv_device *v;
    size_t n;
    size_t cap;
};

static int collect(void *user, const struct fk_inv_device *d) {
    struct devs *s = user;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL) {
            abort();
        }
    }
    s->v[s->n++] = *d;
    return 0;
}

struct cred_find {
    char psk_fpr[FK_INV_FPR_SIZE];
    int active_psk;
};

static int cred(void *user, const struct fk_inv_credential *c) {
    struct cred_find *f = user;
    if (strcmp(c->kind, "psk") == 0 && strcmp(c->state, "active") == 0) {
        f->active_psk++;
        snprintf(f->psk_fpr, sizeof f->psk_fpr, "%s", c->fingerprint);
    }
    return 0;
}

struct audit_count {
    struct devs *devs;
    int *minted; /* per device index */
    long other;
};

static int cmp_id(const void *key, const void *elem) {
    return strcmp(key, ((const struct fk_inv_device *)elem)->id);
}

static int audit(void *user, const struct fk_inv_audit *a) {
    struct audit_count *c = user;
    if (strcmp(a->kind, "device.minted") != 0) {
        c->other++;
        return 0;
    }
    const struct fk_inv_device *d =
        bsearch(a->subject, c->devs->v, c->devs->n, sizeof *c->devs->v, cmp_id);
    if (d == NULL) {
        problem(a->subject, "device.minted audit entry for a device not in the inventory");
    } else {
        c->minted[d - c->devs->v]++;
    }
    return 0;
}

static uint8_t *read_all(const char *dir, const char *name, size_t max, size_t *len) {
    char *p = NULL;
    uint8_t *buf = NULL;
    if (fk_path_join(dir, name, "", &p) != FK_OK ||
        fk_file_read(p, max, &buf, len, NULL) != FK_OK) {
        buf = NULL;
    }
    free(p);
    return buf;
}

static void check_device(const char *dir, const struct fk_inv_device *d, const uint8_t *fleet_der,
                         size_t fleet_der_len, struct fk_inventory *inv) {
    size_t mlen = 0;
    size_t ilen = 0;
    size_t klen = 0;
    uint8_t *kbuf = NULL;
    uint8_t *img = NULL;
    struct fk_manifest m;
    struct fk_nvs_keys k;
    struct fk_nvs_image *parsed = NULL;
    memset(&m, 0, sizeof m);
    char mname[64];
    snprintf(mname, sizeof mname, "%s.json", d->id);
    uint8_t *mbuf = read_all(dir, mname, FK_MANIFEST_MAX, &mlen);
    if (mbuf == NULL) {
        problem(d->id, "manifest missing");
        return;
    }
    char sha[65];
    fk_keys_sha256_hex(mbuf, mlen, sha);
    if (strcmp(sha, d->manifest_sha256) != 0) {
        problem(d->id, "manifest SHA-256 differs from the inventory row");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    if (fk_keys_manifest_parse((const char *)mbuf, mlen, &m, &diag) != FK_OK) {
        problem(d->id, diag.msg);
        goto out;
    }
    char fpr[FK_FPR_LEN];
    if (strcmp(m.device_id, d->id) != 0 || strcmp(m.psk_identity, d->id) != 0) {
        problem(d->id, "manifest device_id / psk_identity differ from the file name");
    }
    if (strcmp(fk_fpr(m.psk, sizeof m.psk, fpr), m.psk_fingerprint) != 0) {
        problem(d->id, "manifest psk_fingerprint is not the fingerprint of psk_hex");
    }
    if (m.ota_pub_der_len != fleet_der_len ||
        memcmp(m.ota_pub_der, fleet_der, fleet_der_len) != 0) {
        problem(d->id, "OTA public key is not the fleet key");
    }
    struct cred_find cf;
    memset(&cf, 0, sizeof cf);
    if (fk_inventory_credential_list(inv, d->id, cred, &cf, NULL) != FK_OK || cf.active_psk != 1 ||
        strcmp(cf.psk_fpr, m.psk_fingerprint) != 0) {
        problem(d->id, "inventory psk credential does not match the manifest");
    }
    img = read_all(dir, m.nvs_image, 1 << 20, &ilen);
    if (img == NULL) {
        problem(d->id, "NVS image missing");
        goto out;
    }
    fk_keys_sha256_hex(img, ilen, sha);
    if (strcmp(sha, m.nvs_image_sha256) != 0) {
        problem(d->id, "NVS image SHA-256 differs from the manifest");
    }
    if (m.nvs_encrypted) {
        kbuf = read_all(dir, m.nvs_keys, 8192, &klen);
        if (kbuf == NULL || fk_nvs_keys_parse(kbuf, klen, &k, NULL) != FK_OK) {
            problem(d->id, "nvs_keys file missing or damaged");
            goto out;
        }
    }
    /* Reader 1: the keys module's own extractor. */
    uint8_t psk[FK_PSK_LEN];
    char psk_id[FK_KEYS_PSK_ID_MAX];
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len = 0;
    if (fk_keys_nvs_extract(img, ilen, m.nvs_encrypted ? &k : NULL, psk, psk_id, der, sizeof der,
                            &der_len, &diag) != FK_OK) {
        problem(d->id, diag.msg);
        goto out;
    }
    if (!fk_ct_equal(psk, m.psk, FK_PSK_LEN) || strcmp(psk_id, m.device_id) != 0 ||
        der_len != m.ota_pub_der_len || memcmp(der, m.ota_pub_der, der_len) != 0) {
        problem(d->id, "NVS image (keys reader) does not hold the manifest's PSK/id/key");
    }
    fk_wipe(psk, sizeof psk);
    /* Reader 2: the nvs module's full reader, which checks every CRC. */
    enum fk_err rc = m.nvs_encrypted ? fk_nvs_image_read_encrypted(img, ilen, &k, &parsed)
                                     : fk_nvs_image_read(img, ilen, &parsed);
    if (rc != FK_OK) {
        problem(d->id, "NVS image has problems (nvs reader)");
        goto out;
    }
    const struct fk_nvs_item *it = fk_nvs_image_find(parsed, "security", "dtls_psk");
    if (it == NULL || it->len != FK_PSK_LEN || !fk_ct_equal(it->data, m.psk, FK_PSK_LEN)) {
        problem(d->id, "NVS image (nvs reader) dtls_psk differs from the manifest");
    }
    it = fk_nvs_image_find(parsed, "security", "psk_id");
    if (it == NULL || strcmp((const char *)it->data, m.device_id) != 0) {
        problem(d->id, "NVS image (nvs reader) psk_id differs from the manifest");
    }
out:
    fk_nvs_image_free(parsed);
    fk_keys_manifest_wipe(&m);
    fk_wipe(&k, sizeof k);
    fk_free_secret(mbuf, mlen);
    fk_free_secret(img, ilen);
    fk_free_secret(kbuf, klen);
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: check_fleet DIR EXPECTED_DEVICES [INVENTORY]\n");
        return 2;
    }
    const char *dir = argv[1];
    long expected = strtol(argv[2], NULL, 10);
    char *inv_path = NULL;
    if (argc == 4) {
        inv_path = strdup(argv[3]);
    } else if (fk_path_join(dir, "inventory.db", "", &inv_path) != FK_OK) {
        return 2;
    }
    struct fk_inventory *inv = NULL;
    struct fk_diag diag;
    fk_diag_init(&diag);
    if (fk_inventory_open(inv_path, &inv, &diag) != FK_OK) {
        fprintf(stderr, "check_fleet: %s\n", diag.msg);
        return 1;
    }
    struct devs devs = {NULL, 0, 0};
    if (fk_inventory_device_list(inv, collect, &devs, NULL) != FK_OK) {
        return 1;
    }
    if ((long)devs.n != expected) {
        char msg[128];
        snprintf(msg, sizeof msg, "inventory has %zu devices, expected %ld", devs.n, expected);
        problem("fleet", msg);
    }

    /* Fleet key. */
    char *key_path = NULL;
    struct fk_ota_key *fleet = NULL;
    uint8_t fleet_der[FK_OTA_PUB_DER_MAX];
    size_t fleet_der_len = 0;
    if (fk_path_join(dir, "ota_signing.key.pem", "", &key_path) != FK_OK ||
        fk_keys_ota_load(key_path, &fleet, NULL) != FK_OK ||
        fk_keys_ota_public_der(fleet, fleet_der, sizeof fleet_der, &fleet_der_len) != FK_OK) {
        problem("fleet", "ota_signing.key.pem missing or unreadable");
    }

    /* Files in DIR: exactly the inventory's devices, no temp files. */
    size_t manifests = 0;
    size_t images = 0;
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh != NULL && (e = readdir(dh)) != NULL) {
        const char *n = e->d_name;
        if (strstr(n, ".tmp.") != NULL) {
            problem(n, "temp file left behind");
            continue;
        }
        if (strncmp(n, "robot-", 6) != 0) {
            continue;
        }
        char id[FK_DEVICE_ID_SIZE];
        snprintf(id, sizeof id, "%.18s", n);
        const char *suffix = n + strlen(id);
        if (bsearch(id, devs.v, devs.n, sizeof *devs.v, cmp_id) == NULL) {
            problem(n, "file of a device that is not in the inventory");
        }
        if (strcmp(suffix, ".json") == 0) {
            manifests++;
        } else if (strcmp(suffix, ".nvs.bin") == 0) {
            images++;
        }
    }
    if (dh != NULL) {
        closedir(dh);
    }
    if (manifests != devs.n || images != devs.n) {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu manifests and %zu images for %zu devices", manifests, images,
                 devs.n);
        problem("fleet", msg);
    }

    for (size_t i = 0; i < devs.n; i++) {
        check_device(dir, &devs.v[i], fleet_der, fleet_der_len, inv);
    }

    /* Audit: intact, one device.minted per device. */
    struct fk_inv_audit_report rep;
    if (fk_inventory_audit_verify(inv, &rep, NULL) != FK_OK) {
        problem("audit", rep.problem[0] != '\0' ? rep.problem : "cannot verify");
    }
    int *minted = calloc(devs.n + 1, sizeof *minted);
    struct audit_count ac = {&devs, minted, 0};
    if (minted == NULL || fk_inventory_audit_list(inv, audit, &ac, NULL) != FK_OK) {
        problem("audit", "cannot list");
    }
    for (size_t i = 0; minted != NULL && i < devs.n; i++) {
        if (minted[i] != 1) {
            char msg[96];
            snprintf(msg, sizeof msg, "%d device.minted audit entries, expected exactly 1",
                     minted[i]);
            problem(devs.v[i].id, msg);
        }
    }
    printf("check_fleet: %zu devices, %lld audit rows, %d problem(s)\n", devs.n, rep.rows,
           problems);
    free(minted);
    free(devs.v);
    free(key_path);
    free(inv_path);
    fk_keys_ota_free(fleet);
    fk_inventory_close(inv);
    return problems == 0 ? 0 : 1;
}
