/* OTA delivery over the wss channel: the decisions, as pure functions of plain data.
 *
 * Design: the rest of src/server/ owns sockets, the inventory and the job list (session.c,
 * push.c, jobs.c); everything it decides about an update or an OTA-key rotation is asked of
 * this file, which sees only structs: which image may be accepted (fk_ota_image_check),
 * which device would refuse it (the interlock, fk_ota_trusts_any), how a device's target
 * moves through queued -> sending -> installed -> confirmed / refused / rolled_back / failed,
 * and which request a connection gets next, in the order docs/wss-protocol.md ("What the
 * server pushes, and when") lays down. So the state machine is tested without a socket
 * (tests/unit/test_server_ota.c). */
#include "fleetkey/server.h"

#include "fleetkey/ota.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#define FK_OTA_DER_MAX 1024 /* DER SubjectPublicKeyInfo: RSA-3072 is 422 bytes */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- fingerprint sets ------------------------------------------------------------------- */

int fk_ota_fprs_has(const struct fk_ota_fprs *set, const char *fpr) {
    for (size_t i = 0; i < set->n; i++) {
        if (strcasecmp(set->fpr[i], fpr) == 0) {
            return 1;
        }
    }
    return 0;
}

void fk_ota_fprs_add(struct fk_ota_fprs *set, const char *fpr) {
    if (fpr == NULL || fpr[0] == '\0' || set->n >= FK_OTA_TRUST_MAX ||
        strlen(fpr) >= sizeof set->fpr[0] || fk_ota_fprs_has(set, fpr)) {
        return;
    }
    memcpy(set->fpr[set->n], fpr, strlen(fpr) + 1);
    set->n++;
}

int fk_ota_trusts_any(const struct fk_ota_fprs *trusted, const struct fk_ota_fprs *signers) {
    for (size_t i = 0; i < signers->n; i++) {
        if (fk_ota_fprs_has(trusted, signers->fpr[i])) {
            return 1;
        }
    }
    return 0;
}

/* ---- the uploaded image ----------------------------------------------------------------- */

enum fk_err fk_ota_image_check(const uint8_t *buf, size_t len, struct fk_ota_image_info *out,
                               struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_image img;
    struct fk_ota_sig_sector sec;
    struct fk_ota_key *key = NULL;
    char pem[4096];
    memset(out, 0, sizeof *out);
    /* ota_begin: "N bytes (a multiple of 4096, at least 8192)": an image sector and the
     * signature sector at least. */
    FK_ENSURE(len >= 2 * FK_OTA_SECTOR_SIZE && len % FK_OTA_SECTOR_SIZE == 0,
              fk_diag_set(diag, FK_E_PARSE,
                          "%zu bytes: a signed image is a multiple of 4096 bytes, at least 8192",
                          len));
    FK_GUARD(fk_ota_image_parse(buf, len - FK_OTA_SECTOR_SIZE, &img, diag));
    FK_ENSURE(img.has_app_desc,
              fk_diag_set(diag, FK_E_PARSE, "not an app image (no esp_app_desc_t)"));
    /* The device reports the appended hash of what it runs; without one the server could not
     * tell when a device runs this image. */
    FK_ENSURE(img.hash_appended && img.sha256 != NULL,
              fk_diag_set(diag, FK_E_UNSUPPORTED,
                          "the app image has no appended SHA-256 (hash_appended)"));
    FK_GUARD(fk_ota_sig_sector_parse(buf, len, &sec, diag));
    FK_ENSURE(sec.valid_blocks > 0,
              fk_diag_set(diag, FK_E_VERIFY, "no signature block: the image is not signed"));
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        const struct fk_ota_sig_block *b = &sec.blocks[i];
        if (b->state != FK_OTA_BLOCK_VALID) {
            continue;
        }
        /* Each block verifies with the key it carries: the image says who signed it. Whom a
         * device trusts is the interlock's business. */
        FK_ENSURE(fk_ota_block_pubkey_pem(b, pem, sizeof pem) == FK_OK,
                  fk_diag_set(diag, FK_E_VERIFY, "signature block %u: its key does not parse", i));
        FK_GUARD(
            fk_ota_key_from_pem((const uint8_t *)pem, strlen(pem), "block key", 0, &key, diag));
        struct fk_ota_verify_result res;
        struct fk_ota_key *const one[1] = {key};
        rc = fk_ota_verify(buf, len, one, 1, &res, diag);
        FK_ENSURE(rc == FK_OK && res.verdict[i] == FK_OTA_V_OK,
                  fk_diag_set(diag, FK_E_VERIFY,
                              "signature block %u does not verify with its own key%s%s", i,
                              rc != FK_OK ? ": " : "", rc != FK_OK ? fk_strerror(rc) : ""));
        uint8_t dg[FK_OTA_KEY_DIGEST_LEN];
        char fpr[FK_WSS_FPR_MAX + 1] = "sbv2:";
        FK_GUARD(fk_ota_key_digest(key, dg));
        FK_GUARD(fk_hex_encode(dg, sizeof dg, fpr + 5, sizeof fpr - 5));
        size_t before = out->signers.n;
        fk_ota_fprs_add(&out->signers, fpr);
        if (out->signers.n > before) {
            /* the same key in the inventory's other spelling, index for index */
            uint8_t der[FK_OTA_DER_MAX];
            size_t der_len = 0;
            char dfpr[FK_FPR_LEN];
            FK_GUARD(fk_ota_key_public_der(key, der, sizeof der, &der_len));
            snprintf(out->signers_der.fpr[before], sizeof out->signers_der.fpr[before], "%s",
                     fk_fpr(der, der_len, dfpr));
            out->signers_der.n = out->signers.n;
        }
        fk_ota_key_free(key);
        key = NULL;
    }
    uint8_t md[32];
    unsigned int mdlen = 0;
    FK_ENSURE(EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) == 1, FK_E_CRYPTO);
    FK_GUARD(fk_hex_encode(md, 32, out->sha256, sizeof out->sha256));
    FK_GUARD(fk_hex_encode(img.sha256, 32, out->app_sha256, sizeof out->app_sha256));
    out->size = len;
    snprintf(out->version, sizeof out->version, "%s", img.app_desc.version);
    out->secure_version = img.app_desc.secure_version;
    rc = FK_OK;
out:
    fk_ota_key_free(key);
    return rc;
}

/* ---- a device's target ------------------------------------------------------------------ */

int fk_wss_id_valid(const char *s, size_t n) {
    return fk_name_valid(s, n, FK_WSS_ID_MAX);
}

enum fk_err fk_ota_tstate_parse(const char *name, enum fk_ota_tstate *out) {
    for (int st = FK_OTA_QUEUED; st <= FK_OTA_FAILED; st++) {
        if (strcmp(name, fk_ota_tstate_name((enum fk_ota_tstate)st)) == 0) {
            *out = (enum fk_ota_tstate)st;
            return FK_OK;
        }
    }
    return FK_E_PARSE;
}

const char *fk_ota_tstate_name(enum fk_ota_tstate st) {
    switch (st) {
    case FK_OTA_QUEUED:
        return "queued";
    case FK_OTA_SENDING:
        return "sending";
    case FK_OTA_INSTALLED:
        return "installed";
    case FK_OTA_CONFIRMED:
        return "confirmed";
    case FK_OTA_REFUSED:
        return "refused";
    case FK_OTA_ROLLED_BACK:
        return "rolled_back";
    case FK_OTA_FAILED:
        return "failed";
    }
    return "unknown";
}

int fk_ota_tstate_final(enum fk_ota_tstate st) {
    return st == FK_OTA_CONFIRMED || st == FK_OTA_REFUSED || st == FK_OTA_ROLLED_BACK ||
           st == FK_OTA_FAILED;
}

static int set_state(struct fk_ota_target *t, enum fk_ota_tstate st, const char *why) {
    if (why != NULL) {
        snprintf(t->error, sizeof t->error, "%s", why);
    }
    if (t->state == st) {
        return 0;
    }
    t->state = st;
    if (st == FK_OTA_QUEUED) {
        t->sent = 0;
    }
    return 1;
}

int fk_ota_target_report(struct fk_ota_target *t, const char *app_sha256,
                         const struct fk_wss_ota *ota) {
    if (ota == NULL || !ota->present || fk_ota_tstate_final(t->state)) {
        return 0;
    }
    int runs = ota->app_sha256[0] != '\0' && strcasecmp(ota->app_sha256, app_sha256) == 0;
    if (runs && strcmp(ota->state, "valid") == 0) {
        return set_state(t, FK_OTA_CONFIRMED, "");
    }
    switch (t->state) {
    case FK_OTA_INSTALLED:
        if (!runs) {
            return set_state(t, FK_OTA_ROLLED_BACK, "came back running another image");
        }
        if (strcmp(ota->state, "invalid") == 0 || strcmp(ota->state, "aborted") == 0) {
            char why[64];
            snprintf(why, sizeof why, "image state %s", ota->state);
            return set_state(t, FK_OTA_ROLLED_BACK, why);
        }
        return 0; /* pending_verify / new: the status request will tell */
    case FK_OTA_SENDING:
        /* A new connection while a transfer was in flight: the old one is gone. */
        return fk_ota_target_lost(t, "reconnected during the transfer");
    default:
        return 0;
    }
}

int fk_ota_target_lost(struct fk_ota_target *t, const char *why) {
    if (t->state != FK_OTA_SENDING) {
        return 0;
    }
    if (t->attempts >= FK_OTA_MAX_ATTEMPTS) {
        return set_state(t, FK_OTA_FAILED, why);
    }
    t->sent = 0;
    return set_state(t, FK_OTA_QUEUED, why);
}

/* Device error codes that say the image will never be accepted as sent: a refusal, not a
 * transfer problem worth another attempt. */
static int permanent(enum fk_ota_action a, const char *code) {
    static const char *const begin[] = {"updates_disabled", "pending_verify", "too_large",
                                        "bad_request", NULL};
    static const char *const chunk[] = {"not_app_image", "too_large", NULL};
    static const char *const finish[] = {"signature_untrusted", "signature_mismatch",
                                         "signature_malformed", "image_invalid",
                                         "anti_rollback",       NULL};
    const char *const *list = a == FK_OTA_ACT_BEGIN    ? begin
                              : a == FK_OTA_ACT_CHUNK  ? chunk
                              : a == FK_OTA_ACT_FINISH ? finish
                                                       : NULL;
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        if (strcmp(code, list[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

int fk_ota_target_response(struct fk_ota_target *t, enum fk_ota_action a, uint64_t size, int ok,
                           const char *err_code, long long chunk, long long received,
                           int *need_abort) {
    char why[FK_WSS_STR_MAX + 1];
    *need_abort = 0;
    if (err_code == NULL) {
        err_code = "";
    }
    if (a == FK_OTA_ACT_BEGIN && t->state == FK_OTA_QUEUED) {
        if (ok) {
            t->sent = 0;
            t->chunk =
                chunk > 0 && chunk < (long long)FK_OTA_CHUNK ? (unsigned)chunk : FK_OTA_CHUNK;
            t->error[0] = '\0';
            return set_state(t, FK_OTA_SENDING, NULL);
        }
        if (strcmp(err_code, "busy") == 0) {
            /* "an update is already under way: the server sends ota_abort first" */
            *need_abort = 1;
            if (t->attempts >= FK_OTA_MAX_ATTEMPTS) {
                return set_state(t, FK_OTA_FAILED, "busy");
            }
            return 0;
        }
        if (permanent(a, err_code)) {
            return set_state(t, FK_OTA_REFUSED, err_code);
        }
        return t->attempts >= FK_OTA_MAX_ATTEMPTS ? set_state(t, FK_OTA_FAILED, err_code) : 0;
    }
    if (t->state != FK_OTA_SENDING) {
        return 0; /* an answer that no longer matters (e.g. after a time-out) */
    }
    if (a == FK_OTA_ACT_CHUNK) {
        if (ok && received >= 0 && (uint64_t)received > t->sent && (uint64_t)received <= size) {
            t->sent = (uint64_t)received;
            return 0;
        }
        if (ok) {
            snprintf(why, sizeof why, "ota_chunk answered received %lld", received);
            *need_abort = 1;
            return fk_ota_target_lost(t, why);
        }
        if (permanent(a, err_code)) {
            return set_state(t, FK_OTA_REFUSED, err_code);
        }
        /* bad_offset and no_update leave the device's update as it was; the others abandon
         * it. Either way this attempt is over: abort and start again from byte 0. */
        *need_abort = 1;
        return fk_ota_target_lost(t, err_code);
    }
    if (a == FK_OTA_ACT_FINISH) {
        if (ok) {
            t->error[0] = '\0';
            return set_state(t, FK_OTA_INSTALLED, NULL);
        }
        if (permanent(a, err_code)) {
            return set_state(t, FK_OTA_REFUSED, err_code);
        }
        return fk_ota_target_lost(t, err_code); /* transfer_corrupt, truncated, flash_error */
    }
    return 0;
}

/* ---- what comes next -------------------------------------------------------------------- */

const char *fk_ota_action_kind(enum fk_ota_action a) {
    switch (a) {
    case FK_OTA_ACT_STATUS:
        return "status";
    case FK_OTA_ACT_KEY_NEW:
    case FK_OTA_ACT_KEY_PROMOTE:
        return "ota_key";
    case FK_OTA_ACT_ABORT:
        return "ota_abort";
    case FK_OTA_ACT_BEGIN:
        return "ota_begin";
    case FK_OTA_ACT_CHUNK:
        return "ota_chunk";
    case FK_OTA_ACT_FINISH:
        return "ota_finish";
    case FK_OTA_ACT_NONE:
        break;
    }
    return "";
}

enum fk_ota_action fk_ota_next(const struct fk_ota_view *v) {
    /* "a missing ota means this device does not run app images (nothing is pushed to it)" */
    if (!v->has_ota) {
        return FK_OTA_ACT_NONE;
    }
    /* 1. status, when hello said pending_verify and an update job targets the device. */
    if (v->status_due) {
        return FK_OTA_ACT_STATUS;
    }
    /* 2. ota_key ota_pubkey2, when a rotation is under way and the device lacks the new key
     *    (and trusts some key: a device without one takes no updates at all). */
    if (v->rot_active && !v->reports_new && v->has_trusted_key && !v->key_new_tried) {
        return FK_OTA_ACT_KEY_NEW;
    }
    /* 3. ota_key ota_pubkey, when the old key is retired and the device still trusts it. */
    if (v->rot_active && v->old_retired && v->old_in_primary && v->new_in_secondary &&
        !v->key_promote_tried && !v->promote_hold) {
        return FK_OTA_ACT_KEY_PROMOTE;
    }
    /* 4. the next step of an update job. */
    const struct fk_ota_target *t = v->t;
    if (t == NULL) {
        return FK_OTA_ACT_NONE;
    }
    if (t->state == FK_OTA_QUEUED) {
        return v->need_abort ? FK_OTA_ACT_ABORT : FK_OTA_ACT_BEGIN;
    }
    if (t->state == FK_OTA_SENDING) {
        return t->sent < v->size ? FK_OTA_ACT_CHUNK : FK_OTA_ACT_FINISH;
    }
    return FK_OTA_ACT_NONE;
}

/* ---- saved jobs ------------------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void fk_ota_job_record_free(struct fk_ota_job_record *r) {
    if (r == NULL) {
        return;
    }
    free(r->t);
    free(r->updated);
    memset(r, 0, sizeof *r);
}

enum fk_err fk_ota_job_parse(const uint8_t *buf, size_t len, struct fk_ota_job_record *out,
                             struct fk_diag *diag) {
    enum fk_err rc = FK_E_PARSE;
    cJSON *o = NULL;
    memset(out, 0, sizeof *out);
    FK_ENSURE(len <= (4u << 20), fk_diag_set(diag, FK_E_TOOBIG, "job: %zu bytes", len));
    o = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "job: not a JSON object"));
    const char *sha = jstr(o, "sha256");
    FK_ENSURE(sha != NULL && strlen(sha) == 64 && strspn(sha, "0123456789abcdef") == 64,
              fk_diag_set(diag, FK_E_PARSE, "job: sha256: expected 64 lowercase hex digits"));
    memcpy(out->sha256, sha, 65);
    snprintf(out->created_at, sizeof out->created_at, "%s",
             jstr(o, "created_at") != NULL ? jstr(o, "created_at") : "");
    const char *op = jstr(o, "operator");
    FK_ENSURE(op == NULL || op[0] == '\0' || fk_wss_id_valid(op, strlen(op)),
              fk_diag_set(diag, FK_E_PARSE, "job: operator: not a name"));
    snprintf(out->operator_name, sizeof out->operator_name, "%s", op != NULL ? op : "");
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(o, "devices");
    int nd = cJSON_IsArray(devs) ? cJSON_GetArraySize(devs) : 0;
    FK_ENSURE(nd >= 1, fk_diag_set(diag, FK_E_PARSE, "job: devices: expected a non-empty array"));
    out->t = calloc((size_t)nd, sizeof *out->t);
    out->updated = calloc((size_t)nd, sizeof *out->updated);
    FK_ENSURE(out->t != NULL && out->updated != NULL, FK_E_NOMEM);
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, devs) {
        size_t i = out->n;
        struct fk_ota_target *t = &out->t[i];
        const char *id = jstr(e, "id");
        const char *state = jstr(e, "state");
        const cJSON *att = cJSON_GetObjectItemCaseSensitive(e, "attempts");
        const cJSON *sent = cJSON_GetObjectItemCaseSensitive(e, "sent");
        FK_ENSURE(id != NULL && fk_wss_id_valid(id, strlen(id)),
                  fk_diag_set(diag, FK_E_PARSE, "job: devices[%zu].id: not a device id", i));
        FK_ENSURE(state != NULL && fk_ota_tstate_parse(state, &t->state) == FK_OK,
                  fk_diag_set(diag, FK_E_PARSE, "job: devices[%zu].state: unknown", i));
        FK_ENSURE(cJSON_IsNumber(att) && att->valuedouble >= 0 && att->valuedouble <= 1000,
                  fk_diag_set(diag, FK_E_PARSE, "job: devices[%zu].attempts: expected 0..1000", i));
        FK_ENSURE(sent == NULL || (cJSON_IsNumber(sent) && sent->valuedouble >= 0 &&
                                   sent->valuedouble <= 9007199254740992.0),
                  fk_diag_set(diag, FK_E_PARSE, "job: devices[%zu].sent: expected a size", i));
        snprintf(t->device, sizeof t->device, "%s", id);
        t->attempts = (unsigned)att->valuedouble;
        t->sent = sent != NULL ? (uint64_t)sent->valuedouble : 0;
        const char *err = jstr(e, "error");
        snprintf(t->error, sizeof t->error, "%s", err != NULL ? err : "");
        const char *upd = jstr(e, "updated_at");
        snprintf(out->updated[i], sizeof out->updated[i], "%s", upd != NULL ? upd : "");
        if (t->state == FK_OTA_SENDING) {
            t->state = FK_OTA_QUEUED; /* the transfer the file shows under way starts over */
            t->sent = 0;
        }
        out->n++;
    }
    rc = FK_OK;
out:
    cJSON_Delete(o);
    if (rc != FK_OK) {
        fk_ota_job_record_free(out);
    }
    return rc;
}
