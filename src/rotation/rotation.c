/* OTA signing-key rotation planner (fleetkey/rotation.h).
 *
 * Design: the inventory is the only state. Each device carries one credential row per signing
 * key it is known to trust (kind "ota_signing_key", fingerprint = Secure Boot V2 key digest)
 * and, once it reports running new-key-only firmware, an "ota_fw_new_only" row. Every gate is
 * recomputed from those rows at the moment a step is attempted, inside the same transaction
 * that performs the step, so two operators cannot race a step past its gate. A refusal is an
 * audit row too: who tried what, and which devices blocked it. */
#include "fleetkey/rotation.h"

#include "fleetkey/ota.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FPR_PREFIX "sbv2:"
#define STATE_ACTIVE "active"
#define STATE_STAGED "staged"
#define STATE_RETIRED "retired"

enum fk_err fk_rotation_key_fpr(const struct fk_ota_key *k, char out[FK_INV_FPR_SIZE]) {
    uint8_t dg[FK_OTA_KEY_DIGEST_LEN];
    char hex[2 * FK_OTA_KEY_DIGEST_LEN + 1];
    out[0] = '\0';
    if (fk_ota_key_digest(k, dg) != FK_OK ||
        fk_hex_encode(dg, sizeof dg, hex, sizeof hex) != FK_OK) {
        return FK_E_CRYPTO;
    }
    snprintf(out, FK_INV_FPR_SIZE, "%s%s", FPR_PREFIX, hex);
    return FK_OK;
}

void fk_rot_status_free(struct fk_rot_status *s) {
    if (s == NULL) {
        return;
    }
    free(s->dev);
    memset(s, 0, sizeof *s);
}

const char *fk_rot_seen_text(const struct fk_rot_device *d, char *buf, size_t size) {
    if (!d->seen) {
        snprintf(buf, size, "never connected");
    } else {
        snprintf(buf, size, "last seen %s", d->last_seen);
    }
    return buf;
}

/* ---- loading ------------------------------------------------------------------------------ */
struct loader {
    struct fk_rot_status *st;
    const struct fk_rot_keys *k;
    size_t cap;
    int nomem;
    unsigned *max_version; /* per device, kind KEY (for start) */
};

static int on_device(void *user, const struct fk_inv_device *d) {
    struct loader *l = user;
    if (strcmp(d->state, "retired") == 0) {
        return 0;
    }
    /* Two parallel arrays, one capacity: both grow from l->cap by the same rule. */
    size_t dev_cap = l->cap;
    size_t mv_cap = l->cap;
    struct fk_rot_device *v = fk_grow(l->st->dev, &dev_cap, l->st->n, sizeof *v, 64);
    unsigned *mv = fk_grow(l->max_version, &mv_cap, l->st->n, sizeof *mv, 64);
    if (v != NULL) {
        l->st->dev = v;
    }
    if (mv != NULL) {
        l->max_version = mv;
    }
    if (v == NULL || mv == NULL) {
        l->nomem = 1;
        return 1;
    }
    l->cap = dev_cap;
    struct fk_rot_device *r = &l->st->dev[l->st->n];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", d->id);
    l->max_version[l->st->n] = 0;
    l->st->n++;
    return 0;
}

static int cmp_id(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const struct fk_rot_device *)elem)->id);
}

static int on_cred(void *user, const struct fk_inv_credential *c) {
    struct loader *l = user;
    if (l->st->n == 0) {
        return 0; /* no device takes part (dev is NULL: not a bsearch base) */
    }
    struct fk_rot_device *d =
        bsearch(c->device_id, l->st->dev, l->st->n, sizeof *l->st->dev, cmp_id);
    if (d == NULL) {
        return 0; /* a retired device */
    }
    size_t i = (size_t)(d - l->st->dev);
    int active = strcmp(c->state, STATE_ACTIVE) == 0;
    int retired = strcmp(c->state, STATE_RETIRED) == 0;
    if (strcmp(c->kind, FK_ROT_KIND_KEY) == 0) {
        if (c->version > l->max_version[i]) {
            l->max_version[i] = c->version;
        }
        if (strcmp(c->fingerprint, l->k->old_fpr) == 0) {
            d->trusts_old |= active;
            l->st->old_retired |= retired;
        } else if (strcmp(c->fingerprint, l->k->new_fpr) == 0) {
            d->holds_new |= !retired;
            d->confirmed |= active;
            l->st->new_retired |= retired;
        }
    } else if (strcmp(c->kind, FK_ROT_KIND_FW) == 0 && strcmp(c->fingerprint, l->k->new_fpr) == 0) {
        d->runs_new_only |= active;
    } else if (strcmp(c->kind, FK_ROT_KIND_FORCED) == 0 &&
               strcmp(c->fingerprint, l->k->new_fpr) == 0) {
        d->forced |= active;
    }
    return 0;
}

static int on_audit(void *user, const struct fk_inv_audit *a) {
    struct loader *l = user;
    if (strcmp(a->kind, "ota_rotation.release_new_only") == 0 &&
        strcmp(a->subject, l->k->new_fpr) == 0) {
        l->st->new_only_release = 1;
    }
    return 0;
}

/* Fills st (and, when max_version is non-NULL, a malloc'd per-device max version). */
static enum fk_err load(struct fk_inventory *inv, const struct fk_rot_keys *k,
                        struct fk_rot_status *st, unsigned **max_version, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct loader l = {st, k, 0, 0, NULL};
    memset(st, 0, sizeof *st);
    FK_GUARD(fk_inventory_device_list(inv, on_device, &l, diag));
    FK_ENSURE(!l.nomem, FK_E_NOMEM);
    FK_GUARD(fk_inventory_credential_list(inv, NULL, on_cred, &l, diag));
    FK_GUARD(fk_inventory_audit_list(inv, on_audit, &l, diag));
    for (size_t i = 0; i < st->n; i++) {
        struct fk_rot_device *d = &st->dev[i];
        struct fk_inv_presence p;
        enum fk_err prc = fk_inventory_presence_get(inv, d->id, &p, NULL);
        if (prc == FK_OK && p.last_seen[0] != '\0') {
            d->seen = 1;
            snprintf(d->last_seen, sizeof d->last_seen, "%s", p.last_seen);
        }
        st->started |= d->holds_new;
        st->confirmed += (size_t)d->confirmed;
        st->runs_new_only += (size_t)d->runs_new_only;
    }
    rc = FK_OK;
out:
    if (rc == FK_OK && max_version != NULL) {
        *max_version = l.max_version;
        l.max_version = NULL;
    }
    free(l.max_version);
    if (rc != FK_OK) {
        fk_rot_status_free(st);
    }
    return rc;
}

/* One device's part (for confirm, which the server calls once per device: loading the whole
 * fleet each time would make a fleet's confirmations quadratic). st gets that device only
 * (n 0 when it does not exist or is retired) and new_only_release. */
static enum fk_err load_one(struct fk_inventory *inv, const struct fk_rot_keys *k,
                            const char *device, struct fk_rot_status *st, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct loader l = {st, k, 0, 0, NULL};
    struct fk_inv_device dev;
    int found = 0;
    memset(st, 0, sizeof *st);
    rc = fk_inventory_device_get(inv, device, &dev, diag);
    if (rc == FK_E_NOTFOUND) {
        return FK_OK;
    }
    FK_GUARD(rc);
    if (on_device(&l, &dev) != 0 || l.nomem) {
        rc = FK_E_NOMEM;
        goto out;
    }
    FK_GUARD(fk_inventory_credential_list(inv, device, on_cred, &l, diag));
    FK_GUARD(
        fk_inventory_audit_exists(inv, "ota_rotation.release_new_only", k->new_fpr, &found, diag));
    st->new_only_release = found;
    rc = FK_OK;
out:
    free(l.max_version);
    if (rc != FK_OK) {
        fk_rot_status_free(st);
    }
    return rc;
}

enum fk_err fk_rotation_status(struct fk_inventory *inv, const struct fk_rot_keys *k,
                               struct fk_rot_status *out, struct fk_diag *diag) {
    return load(inv, k, out, NULL, diag);
}

/* ---- audit -------------------------------------------------------------------------------- */
static enum fk_err audit(struct fk_inventory *inv, const char *actor, const char *kind,
                         const char *subject, cJSON *detail, struct fk_diag *diag) {
    enum fk_err rc = FK_E_NOMEM;
    char *txt = detail != NULL ? cJSON_PrintUnformatted(detail) : NULL;
    if (detail == NULL || txt != NULL) {
        rc = fk_inventory_audit_append(inv, actor != NULL ? actor : "provision-keys", kind, subject,
                                       txt != NULL ? txt : "{}", diag);
    }
    cJSON_free(txt);
    cJSON_Delete(detail);
    return rc;
}

static cJSON *detail_keys(const struct fk_rot_keys *k) {
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "old_key", k->old_fpr);
        cJSON_AddStringToObject(o, "new_key", k->new_fpr);
    }
    return o;
}

/* The devices that fail a gate, into the detail object and into diag's message. */
enum gate { GATE_CONFIRMED, GATE_FIRMWARE };

static size_t blockers(const struct fk_rot_status *st, enum gate g, cJSON *detail,
                       struct fk_diag *diag, const char *what) {
    cJSON *arr = detail != NULL ? cJSON_AddArrayToObject(detail, "blocking") : NULL;
    char list[384] = "";
    size_t used = 0, n = 0;
    for (size_t i = 0; i < st->n; i++) {
        const struct fk_rot_device *d = &st->dev[i];
        int ok = g == GATE_CONFIRMED ? d->confirmed : d->runs_new_only;
        if (ok || d->forced) { /* a forced device holds no gate back (fk_rotation_force) */
            continue;
        }
        n++;
        if (arr != NULL) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(d->id));
        }
        if (used + strlen(d->id) + 8 < sizeof list) {
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", n > 1 ? ", " : "", d->id);
        } else if (used + 6 < sizeof list && list[used - 1] != '.') {
            used += (size_t)snprintf(list + used, sizeof list - used, ", ...");
        }
    }
    if (n > 0) {
        fk_diag_set(diag, FK_E_POLICY, "refused: %zu of %zu devices %s: %s", n, st->n, what, list);
    }
    return n;
}

static enum fk_err refuse(struct fk_inventory *inv, const char *actor, const char *step,
                          cJSON *detail, enum fk_err rc, struct fk_diag *diag) {
    if (detail != NULL) {
        cJSON_AddStringToObject(detail, "step", step);
        cJSON_AddStringToObject(detail, "reason", diag != NULL ? diag->msg : fk_strerror(rc));
    }
    /* The refusal is recorded even though the step did not happen. */
    enum fk_err arc = audit(inv, actor, "ota_rotation.refused", step, detail, NULL);
    return arc == FK_OK ? rc : arc;
}

/* ---- steps -------------------------------------------------------------------------------- */
struct third_key {
    const struct fk_rot_keys *k;
    char device[FK_INV_ID_SIZE];
    char fpr[FK_INV_FPR_SIZE];
};

static int on_third(void *user, const struct fk_inv_credential *c) {
    struct third_key *t = user;
    if (strcmp(c->kind, FK_ROT_KIND_KEY) == 0 && strcmp(c->state, STATE_RETIRED) != 0 &&
        strcmp(c->fingerprint, t->k->old_fpr) != 0 && strcmp(c->fingerprint, t->k->new_fpr) != 0) {
        snprintf(t->device, sizeof t->device, "%s", c->device_id);
        snprintf(t->fpr, sizeof t->fpr, "%s", c->fingerprint);
        return 1;
    }
    return 0;
}

enum fk_err fk_rotation_der_fpr(const uint8_t *der, size_t len, char out[FK_INV_FPR_SIZE]) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_key *key = NULL;
    char *pem = NULL;
    static const char head[] = "-----BEGIN PUBLIC KEY-----\n",
                      tail[] = "\n-----END PUBLIC KEY-----\n";
    out[0] = '\0';
    FK_ENSURE(der != NULL && len > 0 && len <= FK_ROT_DER_MAX, FK_E_PARSE);
    size_t b64 = 4 * ((len + 2) / 3) + 1;
    size_t cap = sizeof head + b64 + sizeof tail;
    pem = malloc(cap);
    FK_ENSURE(pem != NULL, FK_E_NOMEM);
    /* The ota module reads keys as PEM; one base64 line is valid PEM for OpenSSL's reader. */
    memcpy(pem, head, sizeof head - 1);
    FK_GUARD(fk_base64_encode(der, len, pem + sizeof head - 1, b64));
    size_t n = strlen(pem);
    memcpy(pem + n, tail, sizeof tail);
    FK_GUARD(fk_ota_key_from_pem((const uint8_t *)pem, strlen(pem), "public key", 0, &key, NULL));
    FK_GUARD(fk_rotation_key_fpr(key, out));
    rc = FK_OK;
out:
    fk_ota_key_free(key);
    free(pem);
    return rc;
}

/* TAG || der, the data an endorsement signs (fk_ota_sign pads it to 4096). */
static uint8_t *endorsed_data(const uint8_t *der, size_t len, size_t *n) {
    if (der == NULL || len == 0 || len > FK_OTA_SECTOR_SIZE - FK_ROT_ENDORSE_TAG_LEN) {
        return NULL;
    }
    uint8_t *d = malloc(FK_ROT_ENDORSE_TAG_LEN + len);
    if (d != NULL) {
        memcpy(d, FK_ROT_ENDORSE_TAG, FK_ROT_ENDORSE_TAG_LEN);
        memcpy(d + FK_ROT_ENDORSE_TAG_LEN, der, len);
        *n = FK_ROT_ENDORSE_TAG_LEN + len;
    }
    return d;
}

enum fk_err fk_rotation_endorse(struct fk_ota_key *old, const uint8_t *der, size_t der_len,
                                uint8_t out[FK_ROT_ENDORSE_LEN], struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    size_t n = 0, signed_len = 0;
    uint8_t *data = endorsed_data(der, der_len, &n);
    uint8_t *img = malloc(2 * FK_OTA_SECTOR_SIZE);
    struct fk_ota_key *const keys[1] = {old};
    FK_ENSURE(data != NULL && img != NULL,
              fk_diag_set(diag, data == NULL && der_len > 0 ? FK_E_ARG : FK_E_NOMEM,
                          "endorsement: a public key of %zu bytes", der_len));
    FK_ENSURE(
        fk_ota_key_is_private(old),
        fk_diag_set(diag, FK_E_ARG, "endorsement: %s is not a private key", fk_ota_key_name(old)));
    FK_GUARD(fk_ota_sign(data, n, keys, 1, img, 2 * FK_OTA_SECTOR_SIZE, &signed_len, diag));
    FK_ENSURE(signed_len == 2 * FK_OTA_SECTOR_SIZE, FK_E_INTERNAL);
    memcpy(out, img + FK_OTA_SECTOR_SIZE, FK_ROT_ENDORSE_LEN);
    rc = FK_OK;
out:
    free(img);
    free(data);
    return rc;
}

enum fk_err fk_rotation_endorsement_check(const char *old_fpr, const uint8_t *der, size_t der_len,
                                          const uint8_t block[FK_ROT_ENDORSE_LEN],
                                          struct fk_diag *diag) {
    enum fk_err rc = FK_E_VERIFY;
    size_t n = 0;
    uint8_t *data = endorsed_data(der, der_len, &n);
    uint8_t *img = malloc(2 * FK_OTA_SECTOR_SIZE);
    struct fk_ota_key *key = NULL;
    struct fk_ota_sig_sector sec;
    char pem[4096], fpr[FK_INV_FPR_SIZE];
    FK_ENSURE(data != NULL && img != NULL, fk_diag_set(diag, FK_E_VERIFY, "endorsement: no key"));
    /* the signed layout: data padded with 0xFF to 4096, then the sector with this block */
    memset(img, 0xFF, 2 * FK_OTA_SECTOR_SIZE);
    memcpy(img, data, n);
    memcpy(img + FK_OTA_SECTOR_SIZE, block, FK_ROT_ENDORSE_LEN);
    FK_ENSURE(fk_ota_sig_sector_parse(img, 2 * FK_OTA_SECTOR_SIZE, &sec, NULL) == FK_OK &&
                  sec.blocks[0].state == FK_OTA_BLOCK_VALID &&
                  fk_ota_block_pubkey_pem(&sec.blocks[0], pem, sizeof pem) == FK_OK &&
                  fk_ota_key_from_pem((const uint8_t *)pem, strlen(pem), "endorser", 0, &key,
                                      NULL) == FK_OK &&
                  fk_rotation_key_fpr(key, fpr) == FK_OK,
              fk_diag_set(diag, FK_E_VERIFY, "endorsement: not a signature block"));
    FK_ENSURE(strcmp(fpr, old_fpr) == 0,
              fk_diag_set(diag, FK_E_VERIFY, "endorsement signed by %s, not by the old key %s", fpr,
                          old_fpr));
    struct fk_ota_verify_result res;
    struct fk_ota_key *const one[1] = {key};
    FK_ENSURE(fk_ota_verify(img, 2 * FK_OTA_SECTOR_SIZE, one, 1, &res, NULL) == FK_OK &&
                  res.block == 0,
              fk_diag_set(diag, FK_E_VERIFY, "endorsement: the signature does not verify"));
    rc = FK_OK;
out:
    fk_ota_key_free(key);
    free(img);
    free(data);
    return rc;
}

enum fk_err fk_rotation_current(struct fk_inventory *inv, struct fk_rot_current *out, int *found,
                                struct fk_diag *diag) {
    struct fk_inv_rotation *r = malloc(sizeof *r);
    enum fk_err rc = FK_E_NOMEM;
    memset(out, 0, sizeof *out);
    *found = 0;
    if (r == NULL) {
        return rc;
    }
    rc = fk_inventory_rotation_last(inv, r, diag);
    if (rc == FK_OK) {
        snprintf(out->keys.old_fpr, sizeof out->keys.old_fpr, "%s", r->old_fpr);
        snprintf(out->keys.new_fpr, sizeof out->keys.new_fpr, "%s", r->new_fpr);
        memcpy(out->new_der, r->new_der, r->new_der_len);
        out->new_der_len = r->new_der_len;
        memcpy(out->endorsement, r->endorsement, sizeof out->endorsement);
        snprintf(out->started_at, sizeof out->started_at, "%s", r->started_at);
        *found = 1;
    } else if (rc == FK_E_NOTFOUND) {
        rc = FK_OK;
    }
    free(r);
    return rc;
}

enum fk_err fk_rotation_start(struct fk_inventory *inv, const struct fk_rot_keys *k,
                              const uint8_t *new_der, size_t new_der_len,
                              const uint8_t endorsement[FK_ROT_ENDORSE_LEN], const char *actor,
                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_rot_status st;
    unsigned *maxv = NULL;
    int in_tx = 0;
    memset(&st, 0, sizeof st);
    FK_ENSURE(strcmp(k->old_fpr, k->new_fpr) != 0,
              fk_diag_set(diag, FK_E_ARG, "the new key is the old key"));
    char der_fpr[FK_INV_FPR_SIZE];
    /* The key the server will deliver must be the key the inventory gates on. */
    FK_ENSURE(
        fk_rotation_der_fpr(new_der, new_der_len, der_fpr) == FK_OK &&
            strcmp(der_fpr, k->new_fpr) == 0,
        fk_diag_set(diag, FK_E_ARG, "the new public key does not have fingerprint %s", k->new_fpr));
    /* Devices will refuse a key whose endorsement does not verify with their ota_pubkey:
     * refuse to record one here rather than let the server deliver it in vain. */
    FK_ENSURE(endorsement != NULL, fk_diag_set(diag, FK_E_ARG, "no endorsement of the new key"));
    FK_ENSURE(fk_rotation_endorsement_check(k->old_fpr, new_der, new_der_len, endorsement, diag) ==
                  FK_OK,
              FK_E_ARG); /* diag says why */
    FK_GUARD(fk_inventory_begin(inv, diag));
    in_tx = 1;
    FK_GUARD(load(inv, k, &st, &maxv, diag));
    if (st.old_retired || st.new_retired) {
        rc = fk_diag_set(diag, FK_E_POLICY, "refused: the %s key is retired",
                         st.old_retired ? "old" : "new");
        goto refused;
    }
    /* A device that trusts some third key would be left behind by releases signed with the
     * old and the new key: it must be rotated first (or retired). */
    struct third_key t = {k, "", ""};
    FK_GUARD(fk_inventory_credential_list(inv, NULL, on_third, &t, diag));
    if (t.device[0] != '\0') {
        rc = fk_diag_set(diag, FK_E_POLICY,
                         "refused: device %s trusts OTA key %s, which is neither the old nor the "
                         "new key",
                         t.device, t.fpr);
        goto refused;
    }
    size_t added = 0;
    for (size_t i = 0; i < st.n; i++) {
        struct fk_rot_device *d = &st.dev[i];
        struct fk_inv_credential c;
        memset(&c, 0, sizeof c);
        snprintf(c.device_id, sizeof c.device_id, "%s", d->id);
        snprintf(c.kind, sizeof c.kind, "%s", FK_ROT_KIND_KEY);
        if (!d->trusts_old && !d->holds_new) {
            /* The fleet's devices trust the old key (the planner's premise): record it. */
            c.version = ++maxv[i];
            snprintf(c.fingerprint, sizeof c.fingerprint, "%s", k->old_fpr);
            snprintf(c.state, sizeof c.state, "%s", STATE_ACTIVE);
            FK_GUARD(fk_inventory_credential_add(inv, &c, diag));
        }
        if (!d->holds_new) {
            c.version = ++maxv[i];
            snprintf(c.fingerprint, sizeof c.fingerprint, "%s", k->new_fpr);
            snprintf(c.state, sizeof c.state, "%s", STATE_STAGED);
            FK_GUARD(fk_inventory_credential_add(inv, &c, diag));
            added++;
        }
    }
    cJSON *det = detail_keys(k);
    if (det != NULL) {
        cJSON_AddNumberToObject(det, "devices", (double)st.n);
        cJSON_AddNumberToObject(det, "staged", (double)added);
    }
    FK_GUARD(fk_inventory_rotation_add(inv, k->old_fpr, k->new_fpr, new_der, new_der_len,
                                       endorsement, diag));
    FK_GUARD(audit(inv, actor, "ota_rotation.start", k->new_fpr, det, diag));
    FK_GUARD(fk_inventory_commit(inv, diag));
    in_tx = 0;
    rc = FK_OK;
    goto out;
refused:
    rc = refuse(inv, actor, "start", detail_keys(k), rc, diag);
    if (fk_inventory_commit(inv, NULL) == FK_OK) {
        in_tx = 0;
    }
out:
    if (in_tx) {
        fk_inventory_rollback(inv);
    }
    free(maxv);
    fk_rot_status_free(&st);
    return rc;
}

static unsigned new_version_of(struct fk_inventory *inv, const struct fk_rot_keys *k,
                               const char *device);

struct find_ver {
    const char *kind, *fpr;
    unsigned version;
};

static int on_find(void *user, const struct fk_inv_credential *c) {
    struct find_ver *f = user;
    if (strcmp(c->kind, f->kind) == 0 && strcmp(c->fingerprint, f->fpr) == 0) {
        f->version = c->version;
        return 1;
    }
    return 0;
}

static unsigned new_version_of(struct fk_inventory *inv, const struct fk_rot_keys *k,
                               const char *device) {
    struct find_ver f = {FK_ROT_KIND_KEY, k->new_fpr, 0};
    if (fk_inventory_credential_list(inv, device, on_find, &f, NULL) != FK_OK) {
        return 0;
    }
    return f.version;
}

enum fk_err fk_rotation_confirm(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                const char *device, int firmware, const char *actor,
                                struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_rot_status st;
    int in_tx = 0;
    memset(&st, 0, sizeof st);
    const char *step = firmware ? "confirm-firmware" : "confirm";
    cJSON *rdet = NULL;
    FK_GUARD(fk_inventory_begin(inv, diag));
    in_tx = 1;
    FK_GUARD(load_one(inv, k, device, &st, diag));
    /* load_one gives this device or none (st.dev NULL: no bsearch on it) */
    struct fk_rot_device *d = st.n == 1 ? &st.dev[0] : NULL;
    FK_ENSURE(d != NULL, fk_diag_set(diag, FK_E_NOTFOUND, "no device %s in the inventory", device));
    if (!d->holds_new) {
        rc = fk_diag_set(diag, FK_E_STATE, "refused: %s does not hold the new key (run start)",
                         device);
        goto refused;
    }
    unsigned ver = new_version_of(inv, k, device);
    if (!firmware) {
        if (!d->confirmed) {
            FK_GUARD(fk_inventory_credential_set_state(inv, device, FK_ROT_KIND_KEY, ver,
                                                       STATE_ACTIVE, diag));
        }
    } else {
        if (!d->confirmed) {
            rc = fk_diag_set(diag, FK_E_STATE, "refused: %s has not confirmed the new key yet",
                             device);
            goto refused;
        }
        if (!st.new_only_release) {
            rc = fk_diag_set(diag, FK_E_STATE,
                             "refused: no release signed with the new key only exists yet");
            goto refused;
        }
        if (!d->runs_new_only) {
            struct fk_inv_credential c;
            memset(&c, 0, sizeof c);
            snprintf(c.device_id, sizeof c.device_id, "%s", device);
            snprintf(c.kind, sizeof c.kind, "%s", FK_ROT_KIND_FW);
            c.version = ver;
            snprintf(c.fingerprint, sizeof c.fingerprint, "%s", k->new_fpr);
            snprintf(c.state, sizeof c.state, "%s", STATE_ACTIVE);
            FK_GUARD(fk_inventory_credential_add(inv, &c, diag));
        }
    }
    cJSON *det = detail_keys(k);
    FK_GUARD(audit(inv, actor, firmware ? "ota_rotation.confirm_firmware" : "ota_rotation.confirm",
                   device, det, diag));
    FK_GUARD(fk_inventory_commit(inv, diag));
    in_tx = 0;
    rc = FK_OK;
    goto out;
refused:
    rdet = detail_keys(k);
    if (rdet != NULL) {
        cJSON_AddStringToObject(rdet, "device", device);
    }
    rc = refuse(inv, actor, step, rdet, rc, diag);
    if (fk_inventory_commit(inv, NULL) == FK_OK) {
        in_tx = 0;
    }
out:
    if (in_tx) {
        fk_inventory_rollback(inv);
    }
    fk_rot_status_free(&st);
    return rc;
}

enum fk_err fk_rotation_gate_release(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                     int new_only, const char *actor, struct fk_rot_status *st_out,
                                     struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_rot_status st;
    cJSON *det = NULL;
    const char *step = new_only ? "sign-release --new-only" : "sign-release";
    FK_GUARD(load(inv, k, &st, NULL, diag));
    det = detail_keys(k);
    if (st.new_retired) {
        rc = fk_diag_set(diag, FK_E_POLICY, "refused: the new key is retired");
    } else if (!st.started) {
        rc = fk_diag_set(diag, FK_E_STATE, "refused: the rotation has not started (run start)");
    } else if (!new_only && st.old_retired) {
        rc = fk_diag_set(diag, FK_E_POLICY,
                         "refused: the old key is retired; releases are signed with the new key "
                         "only (--new-only)");
    } else if (new_only &&
               blockers(&st, GATE_CONFIRMED, det, diag, "have not confirmed the new key") > 0) {
        rc = FK_E_POLICY;
    } else {
        rc = FK_OK;
    }
    if (rc != FK_OK) {
        rc = refuse(inv, actor, step, det, rc, diag);
        det = NULL;
    }
out:
    cJSON_Delete(det);
    if (st_out != NULL) {
        *st_out = st;
    } else {
        fk_rot_status_free(&st);
    }
    return rc;
}

enum fk_err fk_rotation_record_release(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                       int new_only, const char *image_name,
                                       const char *image_sha256, const char *actor,
                                       struct fk_diag *diag) {
    cJSON *det = detail_keys(k);
    if (det != NULL) {
        cJSON_AddStringToObject(det, "image", image_name != NULL ? image_name : "");
        cJSON_AddStringToObject(det, "sha256", image_sha256 != NULL ? image_sha256 : "");
        cJSON_AddBoolToObject(det, "new_only", new_only);
    }
    return audit(inv, actor,
                 new_only ? "ota_rotation.release_new_only" : "ota_rotation.release_dual",
                 k->new_fpr, det, diag);
}

enum fk_err fk_rotation_retire_old(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                   const char *actor, struct fk_rot_status *st_out,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_rot_status st;
    cJSON *det = NULL;
    int in_tx = 0;
    memset(&st, 0, sizeof st);
    FK_GUARD(fk_inventory_begin(inv, diag));
    in_tx = 1;
    FK_GUARD(load(inv, k, &st, NULL, diag));
    det = detail_keys(k);
    if (!st.started) {
        rc = fk_diag_set(diag, FK_E_STATE, "refused: the rotation has not started (run start)");
    } else if (st.old_retired) {
        rc = FK_OK; /* already done: idempotent */
        goto commit;
    } else if (blockers(&st, GATE_CONFIRMED, det, diag, "have not confirmed the new key") > 0) {
        rc = FK_E_POLICY;
    } else if (!st.new_only_release) {
        rc = fk_diag_set(diag, FK_E_POLICY,
                         "refused: no release signed with the new key only exists yet "
                         "(sign-release --new-only)");
    } else if (blockers(&st, GATE_FIRMWARE, det, diag, "do not run new-key-only firmware yet") >
               0) {
        rc = FK_E_POLICY;
    } else {
        rc = FK_OK;
    }
    if (rc != FK_OK) {
        rc = refuse(inv, actor, "retire-old", det, rc, diag);
        det = NULL;
        goto commit;
    }
    for (size_t i = 0; i < st.n; i++) {
        struct find_ver f = {FK_ROT_KIND_KEY, k->old_fpr, 0};
        FK_GUARD(fk_inventory_credential_list(inv, st.dev[i].id, on_find, &f, diag));
        if (f.version > 0) {
            FK_GUARD(fk_inventory_credential_set_state(inv, st.dev[i].id, FK_ROT_KIND_KEY,
                                                       f.version, STATE_RETIRED, diag));
        }
        st.dev[i].trusts_old = 0;
    }
    st.old_retired = 1;
    cJSON_AddNumberToObject(det, "devices", (double)st.n);
    FK_GUARD(audit(inv, actor, "ota_rotation.retire_old", k->old_fpr, det, diag));
    det = NULL;
    rc = FK_OK;
commit : {
    enum fk_err crc = fk_inventory_commit(inv, rc == FK_OK ? diag : NULL);
    if (crc == FK_OK) {
        in_tx = 0;
    } else if (rc == FK_OK) {
        rc = crc;
    }
}
out:
    if (in_tx) {
        fk_inventory_rollback(inv);
    }
    cJSON_Delete(det);
    if (st_out != NULL) {
        *st_out = st;
    } else {
        fk_rot_status_free(&st);
    }
    return rc;
}

static int named(const char *id, const char *const *devices, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(devices[i], id) == 0) {
            return 1;
        }
    }
    return 0;
}

enum fk_err fk_rotation_force(struct fk_inventory *inv, const struct fk_rot_keys *k,
                              const char *const *devices, size_t ndevices, const char *actor,
                              struct fk_rot_status *st_out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_rot_status st;
    cJSON *det = NULL;
    int in_tx = 0;
    memset(&st, 0, sizeof st);
    FK_ENSURE(ndevices > 0, fk_diag_set(diag, FK_E_ARG, "force: no device named"));
    FK_GUARD(fk_inventory_begin(inv, diag));
    in_tx = 1;
    FK_GUARD(load(inv, k, &st, NULL, diag));
    det = detail_keys(k);
    cJSON *arr = det != NULL ? cJSON_AddArrayToObject(det, "devices") : NULL;
    if (!st.started) {
        rc = fk_diag_set(diag, FK_E_STATE, "refused: the rotation has not started (run start)");
        goto refused;
    }
    /* The named set must equal the blocking set: check both directions. */
    for (size_t i = 0; i < ndevices; i++) {
        struct fk_rot_device *d =
            st.n > 0 ? bsearch(devices[i], st.dev, st.n, sizeof *st.dev, cmp_id) : NULL;
        if (d == NULL || d->confirmed || d->forced) {
            rc = fk_diag_set(diag, FK_E_POLICY, "refused: %s does not block the rotation (%s)",
                             devices[i],
                             d == NULL      ? "no such device"
                             : d->confirmed ? "confirmed"
                                            : "forced");
            goto refused;
        }
    }
    for (size_t i = 0; i < st.n; i++) {
        const struct fk_rot_device *d = &st.dev[i];
        if (!d->confirmed && !d->forced && !named(d->id, devices, ndevices)) {
            rc = fk_diag_set(diag, FK_E_POLICY,
                             "refused: %s blocks the rotation too and is not named: force names "
                             "exactly the blocking devices",
                             d->id);
            goto refused;
        }
    }
    for (size_t i = 0; i < ndevices; i++) {
        struct fk_inv_credential c;
        memset(&c, 0, sizeof c);
        snprintf(c.device_id, sizeof c.device_id, "%s", devices[i]);
        snprintf(c.kind, sizeof c.kind, "%s", FK_ROT_KIND_FORCED);
        c.version = 1;
        snprintf(c.fingerprint, sizeof c.fingerprint, "%s", k->new_fpr);
        snprintf(c.state, sizeof c.state, "%s", STATE_ACTIVE);
        FK_GUARD(fk_inventory_credential_add(inv, &c, diag));
        if (arr != NULL) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(devices[i]));
        }
    }
    FK_GUARD(audit(inv, actor, "ota_rotation.forced", k->new_fpr, det, diag));
    det = NULL;
    FK_GUARD(fk_inventory_commit(inv, diag));
    in_tx = 0;
    rc = FK_OK;
    goto out;
refused:
    rc = refuse(inv, actor, "force", det, rc, diag);
    det = NULL;
    if (fk_inventory_commit(inv, NULL) == FK_OK) {
        in_tx = 0;
    }
out:
    if (in_tx) {
        fk_inventory_rollback(inv);
    }
    cJSON_Delete(det);
    if (st_out != NULL) {
        *st_out = st;
    } else {
        fk_rot_status_free(&st);
    }
    return rc;
}

struct retired_scan {
    const char *fpr;
    int retired;
};

static int on_retired(void *user, const struct fk_inv_credential *c) {
    struct retired_scan *r = user;
    if (strcmp(c->kind, FK_ROT_KIND_KEY) == 0 && strcmp(c->fingerprint, r->fpr) == 0 &&
        strcmp(c->state, STATE_RETIRED) == 0) {
        r->retired = 1;
        return 1;
    }
    return 0;
}

enum fk_err fk_rotation_key_retired(struct fk_inventory *inv, const char *fpr, int *retired,
                                    struct fk_diag *diag) {
    struct retired_scan r = {fpr, 0};
    enum fk_err rc = fk_inventory_credential_list(inv, NULL, on_retired, &r, diag);
    *retired = r.retired;
    return rc;
}
