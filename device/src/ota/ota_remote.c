/* OTA over the control channel (fkd/ota_remote.h; protocol: docs/wss-protocol.md).
 *
 * The request kinds are thin: each reads its body members in place (fkd_wss_json_get on the
 * slice the message parser validated), decodes base64 straight from the message into one
 * 2 KiB buffer, and calls the streaming update of ota.c, which does every check that matters
 * for what boots (signature against the trusted keys, app image re-read from flash,
 * anti-rollback, otadata switch). What this file adds is the transport's own check: a SHA-256
 * over every byte received, compared with the one ota_begin announced before ota.c looks at
 * the signature, so a transfer that lost or garbled bytes is reported as such
 * (transfer_corrupt) and not as a bad signature.
 *
 * Trusted keys: the set fkd_ota_begin borrows (keys) is kept here, in block form, with the
 * NVS slot each entry lives in and its Secure Boot V2 digest (the eFuse value; what the
 * inventory records as "sbv2:<hex>"). ota_key changes it only when no update is under way,
 * so an update never sees its keys change.
 *
 * Power cuts (NVS: each set or erase is atomic per key; see fkd/nvs.h):
 * - ota_pubkey2: one blob write. Cut: the old ota_pubkey2 (or none) or the new one.
 * - ota_pubkey (promotion): write ota_pubkey := the staged key, THEN erase ota_pubkey2. A cut
 *   in the first leaves old + staged (both trusted, as before); between the two, the new key
 *   is in both slots (trusted); in the second, it is in ota_pubkey (and maybe still
 *   ota_pubkey2). Every state trusts the new key, and a resend of the same promotion finishes
 *   the erase. The reverse order could leave a device trusting only the old key with the new
 *   one gone, which the server could then never promote (not_staged). */
#include "fkd/ota_remote.h"

#include "fkd/nvs.h"
#include "mbedtls_compat.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const slot_nvs_key[2] = {"ota_pubkey", "ota_pubkey2"};

/* ---- small helpers --------------------------------------------------------------------------- */

static void hex_lower(const uint8_t *b, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Exactly 2 * n hex digits into out. 0, or -1. */
static int hex_decode(const char *s, uint8_t *out, size_t n) {
    if (strlen(s) != 2 * n) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)s[2 * i]);
        int lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int b64val(uint8_t c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Standard base64 (RFC 4648 section 4, padded to a multiple of 4 characters) read from a JSON
 * string's raw contents, decoded into out[0..cap). The one escape accepted is "\/" (a JSON
 * writer may escape '/'); anything else (whitespace, other escapes, "=" inside) is refused.
 * 0; -1 malformed; -2 more than cap bytes. */
static int b64_decode(const uint8_t *s, size_t n, uint8_t *out, size_t cap, size_t *out_len) {
    uint32_t acc = 0;
    unsigned q = 0, pad = 0;
    size_t o = 0;
    *out_len = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '\\') {
            if (n - i < 2 || s[i + 1] != '/') {
                return -1;
            }
            c = '/';
            i++;
        }
        int v = 0;
        if (c == '=') {
            pad++;
        } else if (pad > 0 || (v = b64val(c)) < 0) {
            return -1; /* a data character after padding, or not in the alphabet */
        }
        acc = acc << 6 | (uint32_t)v;
        if (++q < 4) {
            continue;
        }
        if (pad > 2) {
            return -1;
        }
        size_t nb = 3u - pad;
        if (nb > cap - o) {
            return -2;
        }
        out[o++] = (uint8_t)(acc >> 16);
        if (nb > 1) {
            out[o++] = (uint8_t)(acc >> 8);
        }
        if (nb > 2) {
            out[o++] = (uint8_t)acc;
        }
        acc = 0;
        q = 0;
        if (pad > 0 && i + 1 != n) {
            return -1; /* padding only in the last quantum */
        }
    }
    if (q != 0) {
        return -1;
    }
    *out_len = o;
    return 0;
}

/* A protocol string we wrote ourselves or that is printable ASCII from an app description:
 * quoted with the escapes JSON needs. */
static void put_jstr(struct fkd_wss_out *o, const char *s) {
    if (o->over) {
        return;
    }
    size_t pos = o->n;
    if (fkd_wss_json_put_str(o->b, o->cap, &pos, s, strlen(s)) != 0) {
        o->over = 1;
        return;
    }
    o->n = pos;
}

/* A refusal of request kind: reply code and message, logged (fkd_wss_reply_fail). */
#define fail(kind, r, code, ...) fkd_wss_reply_fail((r), "ota", (kind), (code), __VA_ARGS__)

/* Finishes an ok reply from an appender. */
static void done(const char *kind, struct fkd_wss_reply *r, const struct fkd_wss_out *o) {
    if (o->over) {
        fail(kind, r, "internal", "answer does not fit");
        return;
    }
    r->body_len = o->n;
}

static const char *state_name(const struct fkd_ota_boot *b) {
    if (b->entry < 0) {
        return "undefined"; /* no otadata entry: a factory-flashed robot */
    }
    if (b->state == FKD_OTA_IMG_PENDING_VERIFY) {
        return "pending_verify"; /* the protocol's spelling; robot-sim prints pending-verify */
    }
    const char *n = fkd_ota_img_state_name(b->state);
    return strcmp(n, "?") == 0 ? "undefined" : n;
}

/* ---- trusted keys -----------------------------------------------------------------------------
 */

enum fkd_err fkd_ota_key_fingerprint(const struct fkd_sbv2_key *k,
                                     char out[FKD_OTA_REMOTE_FPR_LEN]) {
    uint8_t d[32];
    out[0] = '\0';
    if (k == NULL || k->enc_len == 0 || k->enc_len > sizeof k->enc ||
        fkd_mbedtls_sha256(k->enc, k->enc_len, d) != 0) {
        return FKD_E_CRYPTO;
    }
    memcpy(out, "sbv2:", 5);
    hex_lower(d, sizeof d, out + 5);
    return FKD_OK;
}

/* Index in r->keys of the key held in slot, -1. */
static int key_index(const struct fkd_ota_remote *r, int slot) {
    for (unsigned i = 0; i < r->keys.count; i++) {
        if (r->key_slot[i] == slot) {
            return (int)i;
        }
    }
    return -1;
}

/* Puts k (digest d) into slot, replacing what the slot held. */
static void key_set(struct fkd_ota_remote *r, int slot, const struct fkd_sbv2_key *k,
                    const uint8_t d[32]) {
    int i = key_index(r, slot);
    if (i < 0) {
        i = (int)r->keys.count++; /* at most one entry per slot: fits FKD_SBV2_KEYS_MAX */
    }
    r->keys.key[i] = *k;
    r->key_slot[i] = slot;
    memcpy(r->digest[i], d, 32);
}

static void key_drop(struct fkd_ota_remote *r, int slot) {
    int i = key_index(r, slot);
    if (i < 0) {
        return;
    }
    for (unsigned j = (unsigned)i; j + 1 < r->keys.count; j++) {
        r->keys.key[j] = r->keys.key[j + 1];
        r->key_slot[j] = r->key_slot[j + 1];
        memcpy(r->digest[j], r->digest[j + 1], 32);
    }
    r->keys.count--;
    memset(&r->keys.key[r->keys.count], 0, sizeof r->keys.key[0]);
}

/* DER SPKI -> block form + digest. FKD_OK, or fkd_sbv2_keys_add's error. */
static enum fkd_err key_parse(const uint8_t *der, size_t len, struct fkd_sbv2_key *k,
                              uint8_t d[32]) {
    struct fkd_sbv2_keys one;
    fkd_sbv2_keys_init(&one);
    enum fkd_err rc = fkd_sbv2_keys_add(&one, der, len);
    if (rc != FKD_OK) {
        return rc;
    }
    *k = one.key[0];
    return fkd_mbedtls_sha256(k->enc, k->enc_len, d) == 0 ? FKD_OK : FKD_E_CRYPTO;
}

/* The rotation's endorsement (fleetkey/rotation.h: FK_ROT_ENDORSE_*): one Secure Boot V2
 * block by the key in security/ota_pubkey over TAG || der, padded with 0xFF to 4096 bytes.
 * Without it whoever speaks for the server could add a firmware key; with it only the holder
 * of the current release key can. The block is decoded into the update's signature-sector
 * buffer, free while no update is under way (ota_key refuses during one). */
#define ENDORSE_TAG "fleetkey-ota-key-endorsement-v1\n"
#define ENDORSE_TAG_LEN 32u

enum fkd_err fkd_ota_endorsement_verify(uint8_t sector[FKD_SBV2_SECTOR], const uint8_t *der,
                                        size_t n, const struct fkd_sbv2_keys *keys,
                                        struct fkd_sbv2_result *res) {
    static const uint8_t ff[64] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t d256[32], d384[64];
    if (sector == NULL || der == NULL || keys == NULL || n == 0 ||
        n > FKD_SBV2_SECTOR - ENDORSE_TAG_LEN) {
        return FKD_E_ARG;
    }
    memset(sector + FKD_SBV2_BLOCK, 0xFF, FKD_SBV2_SECTOR - FKD_SBV2_BLOCK);
    /* the digests of TAG || der || 0xFF..., without a 4 KiB buffer for the data */
    mbedtls_sha256_context c256;
    mbedtls_sha512_context c384;
    mbedtls_sha256_init(&c256);
    mbedtls_sha512_init(&c384);
    int want384 = fkd_sbv2_keys_need_sha384(keys);
    int bad = fkd_mbedtls_sha256_starts(&c256) != 0 ||
              fkd_mbedtls_sha256_update(&c256, ENDORSE_TAG, ENDORSE_TAG_LEN) != 0 ||
              fkd_mbedtls_sha256_update(&c256, der, n) != 0;
    if (want384) {
        bad |= fkd_mbedtls_sha384_starts(&c384) != 0 ||
               fkd_mbedtls_sha384_update(&c384, ENDORSE_TAG, ENDORSE_TAG_LEN) != 0 ||
               fkd_mbedtls_sha384_update(&c384, der, n) != 0;
    }
    for (size_t left = FKD_SBV2_SECTOR - ENDORSE_TAG_LEN - n; left > 0 && !bad;) {
        size_t k = left < sizeof ff ? left : sizeof ff;
        bad |= fkd_mbedtls_sha256_update(&c256, ff, k) != 0;
        if (want384) {
            bad |= fkd_mbedtls_sha384_update(&c384, ff, k) != 0;
        }
        left -= k;
    }
    bad |= fkd_mbedtls_sha256_finish(&c256, d256) != 0;
    if (want384) {
        bad |= fkd_mbedtls_sha384_finish(&c384, d384) != 0;
    }
    mbedtls_sha256_free(&c256);
    mbedtls_sha512_free(&c384);
    if (bad) {
        return FKD_E_CRYPTO;
    }
    return fkd_sbv2_verify(sector, d256, want384 ? d384 : NULL, keys, res);
}

static const char *endorsement_problem(struct fkd_ota_remote *r, const uint8_t *der, size_t n,
                                       const uint8_t *body, size_t blen) {
    struct fkd_wss_jval e;
    size_t got = 0;
    uint8_t *sector = r->upd.sector;
    int primary = key_index(r, FKD_OTA_KEY_PRIMARY);
    if (primary < 0) {
        return "no security/ota_pubkey to check an endorsement with";
    }
    if (fkd_wss_json_get(body, blen, "endorsement", &e) != FKD_OK || e.type != FKD_WSS_J_STR ||
        b64_decode(e.p, e.len, sector, FKD_SBV2_SECTOR, &got) != 0 || got != FKD_SBV2_BLOCK) {
        return "endorsement: expected base64 of one 1216-byte signature block";
    }
    if (n > FKD_SBV2_SECTOR - ENDORSE_TAG_LEN) {
        return "key too long to endorse";
    }
    struct fkd_sbv2_result res;
    if (fkd_ota_endorsement_verify(sector, der, n, &r->keys, &res) != FKD_OK || res.key < 0 ||
        r->key_slot[res.key] != FKD_OTA_KEY_PRIMARY) {
        /* only security/ota_pubkey may vouch: a staged second key vouching for its successor
         * would let one delivered key bring in the next */
        return "the endorsement does not verify with security/ota_pubkey";
    }
    return NULL;
}

/* ---- context ------------------------------------------------------------------------------------
 */

void fkd_ota_remote_init(struct fkd_ota_remote *r) {
    memset(r, 0, sizeof *r);
    fkd_sbv2_keys_init(&r->keys);
    fkd_ota_update_init(&r->upd);
    mbedtls_sha256_init(&r->xfer);
}

enum fkd_err fkd_ota_remote_setup(struct fkd_ota_remote *r,
                                  const struct fkd_ota_remote_config *cfg) {
    if (r == NULL || cfg == NULL || cfg->flash == NULL || cfg->parts == NULL ||
        cfg->running == NULL) {
        return FKD_E_ARG;
    }
    r->cfg = *cfg;
    const uint8_t *der[2] = {cfg->ota_pubkey, cfg->ota_pubkey2};
    size_t len[2] = {cfg->ota_pubkey_len, cfg->ota_pubkey2_len};
    for (int s = 0; s < 2; s++) {
        struct fkd_sbv2_key k;
        uint8_t d[32];
        if (der[s] == NULL || len[s] == 0) {
            continue;
        }
        enum fkd_err rc = key_parse(der[s], len[s], &k, d);
        if (rc != FKD_OK) {
            fkd_log(FKD_LOG_ERROR,
                    "ota: security/%s is not a usable Secure Boot V2 key (%s): "
                    "not trusted",
                    slot_nvs_key[s], fkd_strerror(rc));
            continue;
        }
        key_set(r, s, &k, d);
    }
    return FKD_OK;
}

static void abandon(struct fkd_ota_remote *r) {
    if (r->active) {
        fkd_ota_abort(&r->upd);
    } else {
        fkd_ota_update_free(&r->upd);
    }
    mbedtls_sha256_free(&r->xfer);
    mbedtls_sha256_init(&r->xfer);
    r->active = 0;
}

void fkd_ota_remote_free(struct fkd_ota_remote *r) {
    if (r == NULL) {
        return;
    }
    abandon(r);
    fkd_ota_update_free(&r->upd);
    mbedtls_sha256_free(&r->xfer);
    fkd_wipe(r->buf, sizeof r->buf);
    fkd_ota_remote_init(r);
}

enum fkd_err fkd_ota_remote_trust(struct fkd_ota_remote *r, const uint8_t *der, size_t len) {
    struct fkd_sbv2_key k;
    uint8_t d[32];
    if (r == NULL || der == NULL || len == 0) {
        return FKD_E_ARG;
    }
    if (r->active) {
        return FKD_E_STATE; /* an update under way keeps the keys it began with */
    }
    enum fkd_err rc = key_parse(der, len, &k, d);
    if (rc != FKD_OK) {
        return rc;
    }
    key_set(r, FKD_OTA_KEY_PRIMARY, &k, d);
    return FKD_OK;
}

const struct fkd_sbv2_keys *fkd_ota_remote_keys(const struct fkd_ota_remote *r) {
    return &r->keys;
}

/* ---- state
 * ---------------------------------------------------------------------------------------- */

static void put_keys(struct fkd_wss_out *o, const struct fkd_ota_remote *r) {
    char hx[65];
    fkd_wss_out_put(o, "{");
    int first = 1;
    for (int s = 0; s < 2; s++) {
        int i = key_index(r, s);
        if (i < 0) {
            continue; /* "a key that is absent is left out" */
        }
        hex_lower(r->digest[i], 32, hx);
        fkd_wss_out_put(o, "%s\"%s\":\"sbv2:%s\"", first ? "" : ",", slot_nvs_key[s], hx);
        first = 0;
    }
    fkd_wss_out_put(o, "}");
}

size_t fkd_ota_remote_state_json(void *user, char *out, size_t size) {
    const struct fkd_ota_remote *r = user;
    if (r == NULL || out == NULL || size == 0 || r->cfg.running == NULL) {
        return 0;
    }
    const struct fkd_ota_boot *b = r->cfg.running;
    if (b->slot < 0) {
        return 0; /* no app image runs: "ota" is left out */
    }
    struct fkd_wss_out o = {out, size, 0, 0};
    fkd_wss_out_put(&o, "{\"slot\":\"ota_%d\",\"state\":\"%s\",\"version\":", b->slot,
                    state_name(b));
    put_jstr(&o, b->app.version);
    fkd_wss_out_put(&o, ",\"secure_version\":%lu", (unsigned long)b->app.secure_version);
    if (b->app.hash_appended) {
        char hx[65];
        hex_lower(b->app.sha256, sizeof b->app.sha256, hx);
        fkd_wss_out_put(&o, ",\"app_sha256\":\"%s\"", hx);
    }
    fkd_wss_out_put(&o, ",\"updates\":%s,\"keys\":", r->keys.count > 0 ? "true" : "false");
    put_keys(&o, r);
    fkd_wss_out_put(&o, "}");
    if (o.over) {
        out[0] = '\0';
        return 0;
    }
    return o.n;
}

/* ---- requests
 * ------------------------------------------------------------------------------------- */

/* Body members: absent or of the wrong type are the caller's bad_request. */
static enum fkd_err get_uint(const uint8_t *body, size_t len, const char *name, uint32_t max,
                             uint32_t *v) {
    struct fkd_wss_jval j;
    enum fkd_err rc = fkd_wss_json_get(body, len, name, &j);
    return rc != FKD_OK ? rc : fkd_wss_jval_uint(&j, max, v);
}

static enum fkd_err get_str(const uint8_t *body, size_t len, const char *name, char *out,
                            size_t size) {
    struct fkd_wss_jval j;
    enum fkd_err rc = fkd_wss_json_get(body, len, name, &j);
    return rc != FKD_OK ? rc : fkd_wss_jval_str(&j, out, size);
}

static void ota_begin(struct fkd_ota_remote *r, const uint8_t *body, size_t blen,
                      struct fkd_wss_reply *rep) {
    static const char kind[] = "ota_begin";
    uint32_t size = 0;
    char hx[65];
    uint8_t sha[32];
    char version[sizeof r->version];
    if (r->active) {
        fail(kind, rep, "busy", "an update is under way (%u of %u bytes): ota_abort first",
             (unsigned)r->upd.received, (unsigned)r->upd.total);
        return;
    }
    if (r->installed) {
        fail(kind, rep, "busy", "an update is installed: the device is rebooting into it");
        return;
    }
    if (get_uint(body, blen, "size", UINT32_MAX, &size) != FKD_OK) {
        fail(kind, rep, "bad_request", "size: expected a non-negative integer");
        return;
    }
    if (get_str(body, blen, "sha256", hx, sizeof hx) != FKD_OK || hex_decode(hx, sha, 32) != 0) {
        fail(kind, rep, "bad_request", "sha256: expected 64 hex digits");
        return;
    }
    if (get_str(body, blen, "version", version, sizeof version) != FKD_OK || version[0] == '\0') {
        fail(kind, rep, "bad_request", "version: expected a string of 1..64 bytes");
        return;
    }
    if (r->keys.count == 0) {
        /* Seed 004, development: "Can boot without public key (firmware updates disabled)" */
        fail(kind, rep, "updates_disabled", "no trusted OTA key (security/ota_pubkey)");
        return;
    }
    const struct fkd_ota_boot *run = r->cfg.running;
    if (run->slot >= 0 && run->entry >= 0 && run->state == FKD_OTA_IMG_PENDING_VERIFY) {
        fail(kind, rep, "pending_verify", "ota_%d has not confirmed itself yet", run->slot);
        return;
    }
    if (size % FKD_SBV2_SECTOR != 0 || size < FKD_OTA_MIN_IMAGE) {
        fail(kind, rep, "bad_request",
             "size %lu: a signed image is a multiple of 4096 bytes, "
             "at least 8192",
             (unsigned long)size);
        return;
    }
    enum fkd_err rc =
        fkd_ota_begin(&r->upd, r->cfg.flash, r->cfg.parts, &r->keys, r->cfg.nvs, run, size);
    if (rc != FKD_OK) {
        const char *code = rc == FKD_E_NOSPACE  ? "too_large"
                           : rc == FKD_E_POLICY ? "updates_disabled"
                           : rc == FKD_E_STATE  ? "pending_verify"
                           : rc == FKD_E_ARG    ? "bad_request"
                                                : "flash_error";
        fail(kind, rep, code, "%lu bytes: %s", (unsigned long)size, fkd_strerror(rc));
        fkd_ota_update_free(&r->upd);
        return;
    }
    mbedtls_sha256_free(&r->xfer);
    mbedtls_sha256_init(&r->xfer);
    if (fkd_mbedtls_sha256_starts(&r->xfer) != 0) {
        fkd_ota_abort(&r->upd);
        fail(kind, rep, "flash_error", "SHA-256 unavailable");
        return;
    }
    memcpy(r->want_sha256, sha, sizeof sha);
    memcpy(r->version, version, sizeof version);
    r->active = 1;
    fkd_log(FKD_LOG_INFO, "ota: remote update %s: %lu bytes into %s", r->version,
            (unsigned long)size, r->upd.target->label);
    struct fkd_wss_out o = {rep->body, rep->body_cap, 0, 0};
    fkd_wss_out_put(&o, "{\"slot\":\"%s\",\"chunk\":%u}", r->upd.target->label,
                    FKD_OTA_REMOTE_CHUNK);
    done(kind, rep, &o);
}

static void ota_chunk(struct fkd_ota_remote *r, const uint8_t *body, size_t blen,
                      struct fkd_wss_reply *rep) {
    static const char kind[] = "ota_chunk";
    uint32_t off = 0;
    struct fkd_wss_jval data;
    size_t n = 0;
    if (!r->active) {
        fail(kind, rep, "no_update", "no ota_begin in force");
        return;
    }
    if (get_uint(body, blen, "offset", UINT32_MAX, &off) != FKD_OK) {
        abandon(r);
        fail(kind, rep, "bad_request", "offset: expected a non-negative integer");
        return;
    }
    if (off != r->upd.received) {
        /* not abandoned: the server resumes from "received" */
        fail(kind, rep, "bad_offset", "offset %lu, expected %lu", (unsigned long)off,
             (unsigned long)r->upd.received);
        return;
    }
    if (fkd_wss_json_get(body, blen, "data", &data) != FKD_OK || data.type != FKD_WSS_J_STR) {
        abandon(r);
        fail(kind, rep, "bad_request", "data: expected a base64 string");
        return;
    }
    int b = b64_decode(data.p, data.len, r->buf, sizeof r->buf, &n);
    if (b != 0 || n == 0) {
        abandon(r);
        fail(kind, rep, "bad_request", "data: %s",
             b == -2  ? "more than 2048 decoded bytes"
             : b != 0 ? "not standard base64"
                      : "empty");
        return;
    }
    if (n > r->upd.total - r->upd.received) {
        abandon(r);
        fail(kind, rep, "too_large", "%zu bytes at %lu run past the %lu announced", n,
             (unsigned long)off, (unsigned long)r->upd.total);
        return;
    }
    enum fkd_err rc = fkd_ota_write(&r->upd, r->buf, n);
    if (rc == FKD_OK && fkd_mbedtls_sha256_update(&r->xfer, r->buf, n) != 0) {
        rc = FKD_E_CRYPTO;
    }
    if (rc != FKD_OK) {
        abandon(r);
        fail(kind, rep,
             rc == FKD_E_PARSE   ? "not_app_image"
             : rc == FKD_E_RANGE ? "too_large"
                                 : "flash_error",
             "at %lu: %s", (unsigned long)off, fkd_strerror(rc));
        return;
    }
    struct fkd_wss_out o = {rep->body, rep->body_cap, 0, 0};
    fkd_wss_out_put(&o, "{\"received\":%lu}", (unsigned long)r->upd.received);
    done(kind, rep, &o);
}

/* The protocol's name for what fkd_ota_finish refused. Before a block verified, the error is
 * the signature's; after, the app image's or anti-rollback's. */
static const char *finish_code(enum fkd_err rc, const struct fkd_sbv2_result *sig) {
    if (rc == FKD_E_IO || rc == FKD_E_POWERCUT) {
        return "flash_error";
    }
    if (rc == FKD_E_TRUNCATED && sig->block < 0) {
        return "truncated";
    }
    if (sig->block < 0) {
        return rc == FKD_E_CORRUPT                       ? "signature_mismatch"
               : rc == FKD_E_PARSE || rc == FKD_E_CRYPTO ? "signature_malformed"
                                                         : "signature_untrusted";
    }
    return rc == FKD_E_POLICY ? "anti_rollback" : "image_invalid";
}

static void ota_finish(struct fkd_ota_remote *r, struct fkd_wss_reply *rep) {
    static const char kind[] = "ota_finish";
    uint8_t got[32];
    if (!r->active) {
        fail(kind, rep, "no_update", "no ota_begin in force");
        return;
    }
    if (r->upd.received == r->upd.total) {
        /* The transport check comes first: bytes lost or garbled on the way are the
         * transfer's fault, not the signature's. */
        if (fkd_mbedtls_sha256_finish(&r->xfer, got) != 0 ||
            memcmp(got, r->want_sha256, sizeof got) != 0) { /* public data */
            abandon(r);
            fail(kind, rep, "transfer_corrupt",
                 "the SHA-256 of the bytes received differs "
                 "from ota_begin's");
            return;
        }
    }
    enum fkd_err rc = fkd_ota_finish(&r->upd);
    const struct fkd_sbv2_result *sig = fkd_ota_sig_result(&r->upd);
    if (rc != FKD_OK) {
        const char *code = finish_code(rc, sig);
        static const char *const why[][2] = {
            {"truncated", "bytes are missing"},
            {"signature_untrusted", "no signature block from a trusted key verifies"},
            {"signature_mismatch", "the image was changed after signing"},
            {"signature_malformed", "the signature sector is damaged"},
            {"image_invalid", "the app image in flash does not check"},
            {"anti_rollback", "secure_version below the committed one"},
        };
        const char *text = fkd_strerror(rc);
        for (size_t i = 0; i < sizeof why / sizeof why[0]; i++) {
            text = strcmp(code, why[i][0]) == 0 ? why[i][1] : text;
        }
        r->active = 0; /* finish ended the update either way */
        abandon(r);
        fail(kind, rep, code, "%s (%s)", text, fkd_errname(rc));
        return;
    }
    const struct fkd_app_info *a = fkd_ota_app(&r->upd);
    char fpr[FKD_OTA_REMOTE_FPR_LEN] = "";
    if (sig->key >= 0 && (unsigned)sig->key < r->keys.count) {
        memcpy(fpr, "sbv2:", 5);
        hex_lower(r->digest[sig->key], 32, fpr + 5);
    }
    if (strcmp(a->version, r->version) != 0) {
        fkd_log(FKD_LOG_WARN, "ota: ota_begin announced version %s, the image says %s", r->version,
                a->version);
    }
    struct fkd_wss_out o = {rep->body, rep->body_cap, 0, 0};
    fkd_wss_out_put(&o, "{\"slot\":\"%s\",\"version\":", r->upd.target->label);
    put_jstr(&o, a->version);
    fkd_wss_out_put(&o, ",\"secure_version\":%lu,\"key\":\"%s\",\"reboot\":true}",
                    (unsigned long)a->secure_version, fpr);
    fkd_log(FKD_LOG_INFO,
            "ota: remote update installed into %s (%s %s, secure_version %lu, "
            "key %s): rebooting",
            r->upd.target->label, a->project_name, a->version, (unsigned long)a->secure_version,
            fpr);
    r->active = 0;
    r->installed = 1;
    abandon(r);
    done(kind, rep, &o);
    rep->reboot = rep->code[0] == '\0';
}

static void ota_key(struct fkd_ota_remote *r, const uint8_t *body, size_t blen,
                    struct fkd_wss_reply *rep) {
    static const char kind[] = "ota_key";
    char slot_name[16];
    char fpr[FKD_OTA_REMOTE_FPR_LEN + 1];
    uint8_t want[32], d[32];
    struct fkd_wss_jval der;
    struct fkd_sbv2_key k;
    size_t n = 0;
    if (r->active) {
        fail(kind, rep, "busy", "an update is under way: its keys cannot change");
        return;
    }
    if (get_str(body, blen, "slot", slot_name, sizeof slot_name) != FKD_OK ||
        (strcmp(slot_name, "ota_pubkey") != 0 && strcmp(slot_name, "ota_pubkey2") != 0)) {
        fail(kind, rep, "bad_request", "slot: expected \"ota_pubkey\" or \"ota_pubkey2\"");
        return;
    }
    int slot = strcmp(slot_name, "ota_pubkey") == 0 ? FKD_OTA_KEY_PRIMARY : FKD_OTA_KEY_SECOND;
    if (get_str(body, blen, "fingerprint", fpr, sizeof fpr) != FKD_OK ||
        strncmp(fpr, "sbv2:", 5) != 0 || hex_decode(fpr + 5, want, 32) != 0) {
        fail(kind, rep, "bad_request", "fingerprint: expected sbv2: and 64 hex digits");
        return;
    }
    if (fkd_wss_json_get(body, blen, "der", &der) != FKD_OK || der.type != FKD_WSS_J_STR ||
        b64_decode(der.p, der.len, r->buf, sizeof r->buf, &n) == -1 || n == 0) {
        fail(kind, rep, "bad_request", "der: expected base64 of a DER SubjectPublicKeyInfo");
        return;
    }
    if (n > FKD_OTA_KEY_MAX) {
        fail(kind, rep, "bad_key", "%zu bytes: larger than any key this device takes", n);
        return;
    }
    enum fkd_err rc = key_parse(r->buf, n, &k, d);
    if (rc != FKD_OK) {
        fail(kind, rep, "bad_key", "not an RSA-3072, P-256 or P-384 public key (%s)",
             fkd_strerror(rc));
        return;
    }
    if (memcmp(d, want, sizeof d) != 0) { /* public data */
        fail(kind, rep, "fingerprint_mismatch", "the key's digest is not %s", fpr);
        return;
    }
    int cur = key_index(r, slot);
    int second = key_index(r, FKD_OTA_KEY_SECOND);
    int in_slot = cur >= 0 && memcmp(r->digest[cur], d, 32) == 0;
    int staged = second >= 0 && memcmp(r->digest[second], d, 32) == 0;
    if (slot == FKD_OTA_KEY_PRIMARY && !in_slot && !staged) {
        /* The channel never swaps the root of trust for a key the device did not already
         * hold next to the old one. */
        fail(kind, rep, "not_staged", "%s is not the staged security/ota_pubkey2", fpr);
        return;
    }
    if (slot == FKD_OTA_KEY_SECOND && !in_slot) {
        const char *why = endorsement_problem(r, r->buf, n, body, blen);
        if (why != NULL) {
            fail(kind, rep, "not_endorsed", "%s: %s", fpr, why);
            return;
        }
    }
    int erase_staged = slot == FKD_OTA_KEY_PRIMARY && staged;
    if (r->cfg.nvs == NULL && (!in_slot || erase_staged)) {
        fail(kind, rep, "flash_error", "no NVS to write security/%s to", slot_name);
        return;
    }
    if (!in_slot) {
        /* ota_pubkey2: one atomic blob write. ota_pubkey: step 1 of the promotion (see the
         * power-cut note at the top: the new key is written before the staged copy goes). */
        rc = fkd_nvs_set_blob(r->cfg.nvs, "security", slot_nvs_key[slot], r->buf, n);
        if (rc != FKD_OK) {
            fail(kind, rep, "flash_error", "writing security/%s: %s", slot_name, fkd_strerror(rc));
            return;
        }
        key_set(r, slot, &k, d);
        fkd_log(FKD_LOG_INFO, "ota: security/%s := %s (trusted)", slot_name, fpr);
    }
    if (erase_staged) {
        /* Step 2: the staged copy goes; also what a resend does after a cut between. */
        rc = fkd_nvs_erase_key(r->cfg.nvs, "security", slot_nvs_key[FKD_OTA_KEY_SECOND]);
        if (rc != FKD_OK && rc != FKD_E_NOTFOUND) {
            fail(kind, rep, "flash_error", "erasing security/ota_pubkey2: %s", fkd_strerror(rc));
            return;
        }
        key_drop(r, FKD_OTA_KEY_SECOND);
        fkd_log(FKD_LOG_INFO,
                "ota: security/ota_pubkey2 promoted to security/ota_pubkey "
                "(ota_pubkey2 erased): only %s is trusted",
                fpr);
    }
    struct fkd_wss_out o = {rep->body, rep->body_cap, 0, 0};
    fkd_wss_out_put(&o, "{\"keys\":");
    put_keys(&o, r);
    fkd_wss_out_put(&o, "}");
    done(kind, rep, &o);
}

enum fkd_wss_req_result fkd_ota_remote_request(void *user, const char *kind, const uint8_t *body,
                                               size_t body_len, struct fkd_wss_reply *reply) {
    struct fkd_ota_remote *r = user;
    if (r == NULL || kind == NULL || reply == NULL) {
        return FKD_WSS_REQ_UNKNOWN;
    }
    fkd_wss_reply_begin(reply, &body, &body_len);
    if (strcmp(kind, "ota_begin") == 0) {
        ota_begin(r, body, body_len, reply);
    } else if (strcmp(kind, "ota_chunk") == 0) {
        ota_chunk(r, body, body_len, reply);
    } else if (strcmp(kind, "ota_finish") == 0) {
        ota_finish(r, reply);
    } else if (strcmp(kind, "ota_abort") == 0) {
        if (r->active) {
            abandon(r);
            fkd_log(FKD_LOG_INFO, "ota: update abandoned by the server (ota_abort)");
        }
        struct fkd_wss_out o = {reply->body, reply->body_cap, 0, 0};
        fkd_wss_out_put(&o, "{}");
        done(kind, reply, &o);
    } else if (strcmp(kind, "ota_key") == 0) {
        ota_key(r, body, body_len, reply);
    } else {
        return FKD_WSS_REQ_UNKNOWN;
    }
    return FKD_WSS_REQ_DONE;
}

void fkd_ota_remote_welcomed(void *user) {
    struct fkd_ota_remote *r = user;
    if (r == NULL || r->cfg.running == NULL) {
        return;
    }
    struct fkd_ota_boot *b = r->cfg.running;
    if (b->slot < 0 || b->entry < 0 || b->state != FKD_OTA_IMG_PENDING_VERIFY) {
        return;
    }
    enum fkd_err rc = fkd_ota_mark_valid(r->cfg.flash, r->cfg.parts, r->cfg.nvs, b);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR,
                "ota: self-test passed (welcomed) but ota_%d could not be marked "
                "valid: %s",
                b->slot, fkd_strerror(rc));
        return;
    }
    fkd_log(FKD_LOG_INFO,
            "ota: self-test passed: welcomed by the control plane, ota_%d %s "
            "confirmed",
            b->slot, b->app.version);
}

const struct fkd_wss_handler fkd_ota_remote_handler = {
    fkd_ota_remote_state_json, fkd_ota_remote_request, fkd_ota_remote_welcomed, NULL, NULL,
};
