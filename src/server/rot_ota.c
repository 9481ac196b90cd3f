/* The class ota of a rotation plan (see rot_internal.h; docs/rotation.md, the table of
 * classes): what rot_stage ota carries, and the old key's retirement after the interlock.
 *
 * The server holds no OTA private key, so everything it sends was signed offline by the
 * release engineer: the new public key with the current key's endorsement (what `provision-keys
 * rotate ota-key start` recorded in the inventory, re-read once a second into srv->rot), and a
 * block by the new key out of a release it signed (cfg.ota_trial_image, e.g. the dual-signed
 * release of `rotate ota-key sign-release`). The robot checks the endorsement with its committed
 * key before it writes anything, and the block with the key read back from its staged slot:
 * its answer "ota in trial" is the proof the server confirms. The image file is read at each
 * delivery, so replacing it needs no restart. */
#include "rot_internal.h"

#include "fleetkey/ota.h"
#include "fleetkey/rotation.h"

#include <openssl/evp.h>

#include <stdint.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The block of sec whose key is the one with fingerprint fpr, checked against the data and
 * with its own key; -1 when there is none. */
static int block_of(const struct fk_ota_sig_sector *sec, const uint8_t *img, const char *fpr) {
    for (unsigned k = 0; k < FK_OTA_SIG_BLOCKS_MAX; k++) {
        uint8_t kd[FK_OTA_KEY_DIGEST_LEN];
        char hex[2 * FK_OTA_KEY_DIGEST_LEN + 1];
        int digest_ok = 0, sig_ok = 0;
        if (sec->blocks[k].state != FK_OTA_BLOCK_VALID) {
            continue;
        }
        fk_ota_block_key_digest(&sec->blocks[k], kd);
        if (fk_hex_encode(kd, sizeof kd, hex, sizeof hex) != FK_OK ||
            strncmp(fpr, "sbv2:", 5) != 0 || strcmp(fpr + 5, hex) != 0) {
            continue;
        }
        if (fk_ota_block_check(sec, img, k, &digest_ok, &sig_ok) == FK_OK && digest_ok && sig_ok) {
            return (int)k;
        }
    }
    return -1;
}

static int add_b64(cJSON *b, const char *name, const void *data, size_t n) {
    char out[2 * FK_OTA_SIG_BLOCK_SIZE];
    if (fk_base64_encode(data, n, out, sizeof out) != FK_OK) {
        return -1;
    }
    cJSON_AddStringToObject(b, name, out);
    return 0;
}

cJSON *fk_srv_rot_ota_body(struct fk_server *srv, char fpr[72], char *why, size_t why_size) {
    const struct fk_rot_current *cur = &srv->rot;
    uint8_t *img = NULL;
    size_t len = 0;
    struct fk_ota_sig_sector sec;
    struct fk_diag d;
    cJSON *b = NULL;
    fk_diag_init(&d);
    if (!srv->rot_found || cur->new_der_len == 0 || srv->rot_new_retired) {
        snprintf(why, why_size,
                 "no OTA key rotation under way (provision-keys rotate ota-key start records "
                 "the new key and its endorsement)");
        goto out;
    }
    if (srv->cfg.ota_trial_image[0] == '\0') {
        snprintf(why, why_size, "ota_trial_image not configured (an image signed by the new key)");
        goto out;
    }
    if (fk_file_read(srv->cfg.ota_trial_image, (size_t)srv->cfg.ota_max_image, &img, &len, &d) !=
            FK_OK ||
        fk_ota_sig_sector_parse(img, len, &sec, &d) != FK_OK) {
        snprintf(why, why_size, "ota_trial_image %s: %s", srv->cfg.ota_trial_image, d.msg);
        goto out;
    }
    int k = block_of(&sec, img, cur->keys.new_fpr);
    if (k < 0) {
        snprintf(why, why_size, "ota_trial_image %s: no valid signature block by the new key %s",
                 srv->cfg.ota_trial_image, cur->keys.new_fpr);
        goto out;
    }
    const struct fk_ota_sig_block *blk = &sec.blocks[k];
    uint8_t sha256[32];
    unsigned int ml = 0;
    if (EVP_Digest(img, sec.signed_len, sha256, &ml, EVP_sha256(), NULL) != 1 ||
        ml != sizeof sha256) {
        snprintf(why, why_size, "SHA-256 failed");
        goto out;
    }
    b = cJSON_CreateObject();
    /* the block's own digest is the SHA-384 a P-384 block signs (fk_ota_block_check matched it
     * with the data); the device's verifier takes the SHA-256 in every case */
    if (b == NULL || add_b64(b, "key", cur->new_der, cur->new_der_len) != 0 ||
        add_b64(b, "endorsement", cur->endorsement, sizeof cur->endorsement) != 0 ||
        add_b64(b, "manifest_sha256", sha256, sizeof sha256) != 0 ||
        (blk->digest_len == 48 && add_b64(b, "manifest_sha384", blk->image_digest, 48) != 0) ||
        add_b64(b, "manifest_sig", blk->raw, FK_OTA_SIG_BLOCK_SIZE) != 0) {
        snprintf(why, why_size, "out of memory");
        cJSON_Delete(b);
        b = NULL;
        goto out;
    }
    /* The request around it (type, id, kind, class, version) takes under 128 bytes: the
     * largest keys (RSA-3072 old and new) come to about 4,010 of the robot's 4,096. */
    char *text = cJSON_PrintUnformatted(b);
    size_t tl = text != NULL ? strlen(text) : SIZE_MAX;
    free(text);
    if (tl > FK_WSS_MAX_MESSAGE - 128) {
        snprintf(why, why_size, "rot_stage ota would not fit a %u-byte message",
                 FK_WSS_MAX_MESSAGE);
        cJSON_Delete(b);
        b = NULL;
        goto out;
    }
    /* "sbv2:" + 64 hex digits: 69 characters, well within the 72 of a plan's fingerprint */
    snprintf(fpr, 72, "%.71s", cur->keys.new_fpr);
out:
    free(img);
    return b;
}

struct old_key {
    const char *fpr;
    unsigned version;
    int active;
};

static int old_key_cb(void *user, const struct fk_inv_credential *c) {
    struct old_key *o = user;
    if (strcmp(c->kind, FK_ROT_KIND_KEY) == 0 && strcmp(c->fingerprint, o->fpr) == 0) {
        o->version = c->version;
        o->active = strcmp(c->state, "retired") != 0;
    }
    return 0;
}

int fk_srv_rot_ota_retire(struct fk_server *srv, const char *dev) {
    const char *old = srv->rot.keys.old_fpr;
    struct old_key o = {old, 0, 0};
    struct fk_diag d;
    fk_diag_init(&d);
    if (!srv->rot_found || old[0] == '\0') {
        return 0;
    }
    if (fk_inventory_credential_list(srv->inv, dev, old_key_cb, &o, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: credentials not read: %s", dev, d.msg);
        return -1;
    }
    if (!o.active) {
        return 0;
    }
    if (fk_inventory_credential_set_state(srv->inv, dev, FK_ROT_KIND_KEY, o.version, "retired",
                                          &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: OTA key %s not retired: %s", dev, old, d.msg);
        return -1;
    }
    return 1;
}
