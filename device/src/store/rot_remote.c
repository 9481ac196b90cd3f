/* Credential rotation over the control channel (fkd/rot_remote.h; protocol:
 * docs/wss-protocol.md, "Credential rotation"; state machine: fkd/rot.h, docs/rotation.md).
 *
 * The request kinds are thin: each reads its body members in place (fkd_wss_json_get on the
 * slice the message parser validated), checks what the state machine cannot (the PSK's base64,
 * the certificate against the pending key, the serial the server saw) and calls rot.c, which
 * owns every write and its order. Refusals that leave nothing changed come first, so a request
 * answered with an error never touched the flash.
 *
 * The pending key of rot_csr is kept as DER (SEC1 private key, SubjectPublicKeyInfo) in this
 * context: the CSR is made from it, the certificate's public key is compared with it, and
 * rot_stage writes it into the spare slot next to the certificate. It never leaves the device
 * any other way and is wiped when replaced, staged or freed.
 *
 * mtls trial connections: each credential the client may present is named by a tag, the
 * version it belongs to and its slot (versions only grow, so a tag is never reused). The client
 * parses again only when the tag changes; the tick compares the tag of the open connection with
 * the one to use, which is how a trial that timed out or was rolled back ends its connection.
 * The trust anchors (class ca) are tagged the same way and follow the same path: the client
 * verifies the server with the anchors of the slot in use, so a trial connection whose TLS
 * handshake succeeds is itself the proof that the staged anchors validate the server. */
#include "fkd/rot_remote.h"

#include "fkd/net.h"
#include "fkd/ota_remote.h"
#include "fkd/store.h"
#include "mbedtls_compat.h"

#include <mbedtls/base64.h>
#include <mbedtls/ecp.h>
#include <mbedtls/x509_csr.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Classes this device rotates over the channel (the "rot" members, in this order). */
static const enum fkd_rot_class served[] = {FKD_ROT_PSK, FKD_ROT_MTLS, FKD_ROT_CA, FKD_ROT_OTA};

/* Class ota lays its members out in r->buf side by side: the delivered key, the key that
 * checks it (the committed one, or the staged one read back), and one decoded signature block.
 * The signature sector the verifier wants (4 KiB) is r->b64, free once the block is decoded. */
#define OTA_NEW_KEY 0u
#define OTA_CHECK_KEY FKD_OTA_KEY_MAX
#define OTA_BLOCK (2u * FKD_OTA_KEY_MAX)
_Static_assert(OTA_BLOCK + FKD_SBV2_BLOCK <= FKD_ROT_REMOTE_BUF, "class ota fits r->buf");
_Static_assert(sizeof(((struct fkd_rot_remote *)0)->b64) >= FKD_SBV2_SECTOR,
               "r->b64 holds a signature sector");

/* ---- replies ----------------------------------------------------------------------------------
 */

static void put_class(struct fkd_wss_out *o, const struct fkd_rot *rot, enum fkd_rot_class c) {
    const struct fkd_rot_info *i = fkd_rot_info(rot, c);
    fkd_wss_out_put(
        o,
        "\"%s\":{\"state\":\"%s\",\"version\":%lu,\"staged_version\":%lu,\"reason\":\"%s\","
        "\"attempts\":%u}",
        fkd_rot_class_name(c), fkd_rot_state_name(i->state), (unsigned long)i->version,
        (unsigned long)i->staged_version, fkd_rot_reason_name(i->reason), i->attempts);
}

size_t fkd_rot_state_json(const struct fkd_rot *rot, char *out, size_t size) {
    if (rot == NULL || out == NULL || size == 0) {
        return 0;
    }
    struct fkd_wss_out o = {out, size, 0, 0};
    fkd_wss_out_put(&o, "{");
    for (size_t k = 0; k < sizeof served / sizeof served[0]; k++) {
        if (k > 0) {
            fkd_wss_out_put(&o, ",");
        }
        put_class(&o, rot, served[k]);
    }
    fkd_wss_out_put(&o, "}");
    if (o.over) {
        out[0] = '\0';
        return 0;
    }
    return o.n;
}

/* A refusal of request kind: reply code and message, logged (fkd_wss_reply_fail). */
#define fail(kind, r, code, ...) fkd_wss_reply_fail((r), "rot", (kind), (code), __VA_ARGS__)

/* ok body {"rot":{"<class>":{...}}}: the class's state after the request. */
static void answer_state(const char *kind, struct fkd_rot_remote *r, enum fkd_rot_class c,
                         struct fkd_wss_reply *rep) {
    struct fkd_wss_out o = {rep->body, rep->body_cap, 0, 0};
    fkd_wss_out_put(&o, "{\"rot\":{");
    put_class(&o, r->rot, c);
    fkd_wss_out_put(&o, "}}");
    if (o.over) {
        fail(kind, rep, "internal", "answer does not fit");
        return;
    }
    rep->body_len = o.n;
}

/* ---- body members -------------------------------------------------------------------------- */

static enum fkd_err get_str(const uint8_t *body, size_t len, const char *name, char *out,
                            size_t size) {
    struct fkd_wss_jval j;
    enum fkd_err rc = fkd_wss_json_get(body, len, name, &j);
    return rc != FKD_OK ? rc : fkd_wss_jval_str(&j, out, size);
}

static enum fkd_err get_uint(const uint8_t *body, size_t len, const char *name, uint32_t *v) {
    struct fkd_wss_jval j;
    enum fkd_err rc = fkd_wss_json_get(body, len, name, &j);
    return rc != FKD_OK ? rc : fkd_wss_jval_uint(&j, UINT32_MAX, v);
}

/* "class": one this device serves over the channel. 0, or -1. */
static int get_class(const uint8_t *body, size_t len, enum fkd_rot_class *c) {
    char name[8];
    if (get_str(body, len, "class", name, sizeof name) != FKD_OK) {
        return -1;
    }
    for (size_t k = 0; k < sizeof served / sizeof served[0]; k++) {
        if (strcmp(name, fkd_rot_class_name(served[k])) == 0) {
            *c = served[k];
            return 0;
        }
    }
    return -1;
}

/* A base64 string member decoded into out[0..cap) (through r->b64). 0; -1 absent, not a
 * string, not base64 or longer than cap. */
static int get_b64_to(struct fkd_rot_remote *r, const uint8_t *body, size_t len, const char *name,
                      uint8_t *out, size_t cap, size_t *out_len) {
    size_t n = 0;
    if (get_str(body, len, name, r->b64, sizeof r->b64) != FKD_OK ||
        mbedtls_base64_decode(out, cap, &n, (const unsigned char *)r->b64, strlen(r->b64)) != 0) {
        return -1;
    }
    *out_len = n;
    return 0;
}

/* A base64 string member decoded into r->buf. */
static int get_b64(struct fkd_rot_remote *r, const uint8_t *body, size_t len, const char *name,
                   size_t *out_len) {
    return get_b64_to(r, body, len, name, r->buf, sizeof r->buf, out_len);
}

/* 1..64 bytes of [A-Za-z0-9._-]: safe inside an X.509 name string and a log line. */
static int subject_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= FKD_ROT_REMOTE_SUBJECT_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-')) {
            return 0;
        }
    }
    return 1;
}

/* ---- context ----------------------------------------------------------------------------- */

/* The credential of class c (mtls or ca) to use now: version and slot (see the file
 * comment). */
static uint32_t cls_tag(const struct fkd_rot *rot, enum fkd_rot_class c) {
    const struct fkd_rot_info *i = fkd_rot_info(rot, c);
    uint32_t v = i->state == FKD_ROT_TRIAL ? i->staged_version : i->version;
    return v * 2u + fkd_rot_slot_in_use(rot, c);
}

static uint32_t tag_now(const struct fkd_rot *rot) {
    return cls_tag(rot, FKD_ROT_MTLS);
}

static void drop_pending(struct fkd_rot_remote *r) {
    fkd_wipe(r->key_der, sizeof r->key_der);
    fkd_wipe(r->pub_der, sizeof r->pub_der);
    r->key_len = 0;
    r->pub_len = 0;
    r->pending = 0;
}

void fkd_rot_remote_init(struct fkd_rot_remote *r) {
    memset(r, 0, sizeof *r);
    mbedtls_ctr_drbg_init(&r->drbg);
}

enum fkd_err fkd_rot_remote_setup(struct fkd_rot_remote *r, struct fkd_rot *rot) {
    if (r == NULL || rot == NULL) {
        return FKD_E_ARG;
    }
    r->rot = rot;
    r->boot_tag = tag_now(rot);
    r->conn_tag = r->boot_tag;
    r->ca_boot_tag = cls_tag(rot, FKD_ROT_CA);
    r->ca_conn_tag = r->ca_boot_tag;
    if (fkd_mbedtls_global_init() != 0 || fkd_mbedtls_drbg_seed(&r->drbg, "fkd_rot") != 0) {
        fkd_log(FKD_LOG_ERROR, "rot: random generator failed: rot_csr will answer crypto_error");
        return FKD_E_CRYPTO;
    }
    r->drbg_ready = 1;
    return FKD_OK;
}

void fkd_rot_remote_free(struct fkd_rot_remote *r) {
    if (r == NULL) {
        return;
    }
    drop_pending(r);
    fkd_wipe(r->buf, sizeof r->buf);
    fkd_wipe(r->b64, sizeof r->b64);
    mbedtls_ctr_drbg_free(&r->drbg);
    r->drbg_ready = 0;
}

/* ---- rot_csr ------------------------------------------------------------------------------- */

static void rot_csr(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                    struct fkd_wss_reply *rep) {
    static const char kind[] = "rot_csr";
    enum fkd_rot_class c;
    char subject[FKD_ROT_REMOTE_SUBJECT_MAX];
    char name[FKD_ROT_REMOTE_SUBJECT_MAX + 4];
    if (get_class(body, blen, &c) != 0 || c != FKD_ROT_MTLS) {
        fail(kind, rep, "bad_request", "class must be mtls");
        return;
    }
    if (get_str(body, blen, "subject", subject, sizeof subject) != FKD_OK || !subject_ok(subject)) {
        fail(kind, rep, "bad_request", "subject must be 1..64 characters of [A-Za-z0-9._-]");
        return;
    }
    if (fkd_rot_info(r->rot, c)->state == FKD_ROT_TRIAL) {
        fail(kind, rep, "busy", "an mtls trial is under way");
        return;
    }
    drop_pending(r); /* a second rot_csr replaces the pending key */
    mbedtls_pk_context pk;
    mbedtls_x509write_csr csr;
    mbedtls_pk_init(&pk);
    mbedtls_x509write_csr_init(&csr);
    int ret = r->drbg_ready ? 0 : -1;
    if (ret == 0) {
        ret = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    }
    if (ret == 0) {
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                  mbedtls_ctr_drbg_random, &r->drbg);
    }
    /* The *_der writers fill the end of the buffer and return the length. */
    int kl = ret == 0 ? mbedtls_pk_write_key_der(&pk, r->key_der, sizeof r->key_der) : -1;
    int pl = kl > 0 ? mbedtls_pk_write_pubkey_der(&pk, r->pub_der, sizeof r->pub_der) : -1;
    if (pl > 0) {
        memmove(r->key_der, r->key_der + sizeof r->key_der - (size_t)kl, (size_t)kl);
        memmove(r->pub_der, r->pub_der + sizeof r->pub_der - (size_t)pl, (size_t)pl);
        r->key_len = (size_t)kl;
        r->pub_len = (size_t)pl;
        (void)snprintf(name, sizeof name, "CN=%s", subject);
        mbedtls_x509write_csr_set_key(&csr, &pk);
        mbedtls_x509write_csr_set_md_alg(&csr, MBEDTLS_MD_SHA256);
        ret = mbedtls_x509write_csr_set_subject_name(&csr, name);
        if (ret == 0) {
            ret = mbedtls_x509write_csr_pem(&csr, r->buf, sizeof r->buf, mbedtls_ctr_drbg_random,
                                            &r->drbg);
        }
    } else {
        ret = -1;
    }
    mbedtls_x509write_csr_free(&csr);
    mbedtls_pk_free(&pk); /* zeroizes the private key; our copy is key_der */
    if (ret != 0) {
        drop_pending(r);
        fail(kind, rep, "crypto_error", "key generation or CSR failed (-0x%04x)",
             (unsigned)(ret < 0 ? -ret : ret));
        return;
    }
    r->pending = 1;
    struct fkd_wss_out o = {rep->body, rep->body_cap, 0, 0};
    fkd_wss_out_put(&o, "{\"csr\":");
    if (!o.over && fkd_wss_json_put_str(o.b, o.cap, &o.n, (const char *)r->buf,
                                        strlen((const char *)r->buf)) != 0) {
        o.over = 1;
    }
    fkd_wss_out_put(&o, "}");
    if (o.over) {
        fail(kind, rep, "internal", "answer does not fit");
        return;
    }
    rep->body_len = o.n;
    fkd_log(FKD_LOG_INFO, "rot: mtls: new P-256 key and CSR for CN=%s (the key stays here)",
            subject);
}

/* ---- rot_stage ------------------------------------------------------------------------------ */

/* Maps what fkd_rot_stage / _commit / _rollback / _trial_begin return onto the protocol. */
static const char *rot_code(enum fkd_err rc) {
    switch (rc) {
    case FKD_E_RANGE:
        return "not_newer";
    case FKD_E_STATE:
        return "busy";
    case FKD_E_ARG:
        return "bad_request";
    default:
        return "flash_error";
    }
}

/* Reads and checks the psk successor into vals (r->buf holds the key, id the identity). */
static const char *psk_values(struct fkd_rot_remote *r, const uint8_t *body, size_t blen, char *id,
                              size_t id_size, struct fkd_rot_value vals[2]) {
    size_t n = 0;
    if (get_b64(r, body, blen, "psk", &n) != 0 || n != FKD_PSK_LEN) {
        return "psk must be the base64 of 32 bytes";
    }
    if (get_str(body, blen, "identity", id, id_size) != FKD_OK || id[0] == '\0') {
        return "identity must be a string of 1..64 bytes";
    }
    for (const char *p = id; *p; p++) {
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
            return "identity must be printable ASCII";
        }
    }
    /* The listener picks the key by identity (fkd/ctl.h): current and next need their own. */
    char cur[FKD_PSK_ID_MAX + 1];
    size_t cl = 0;
    const struct fkd_rot_info *i = fkd_rot_info(r->rot, FKD_ROT_PSK);
    if (fkd_rot_read(r->rot, FKD_ROT_PSK, 1, i->active, (uint8_t *)cur, sizeof cur, &cl) ==
            FKD_OK &&
        strcmp(cur, id) == 0) {
        return "identity must differ from the active PSK's";
    }
    vals[0].data = r->buf;
    vals[0].len = FKD_PSK_LEN;
    vals[1].data = (const uint8_t *)id;
    vals[1].len = strlen(id);
    return NULL;
}

/* Reads and checks the mtls successor: the certificate (DER, in r->buf) carries the pending
 * key. NULL, or the problem with *code set. */
static const char *mtls_values(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                               const char **code, struct fkd_rot_value vals[2]) {
    size_t n = 0;
    uint8_t pub[sizeof r->pub_der];
    *code = "bad_request";
    if (get_b64(r, body, blen, "cert", &n) != 0 || n == 0) {
        return "cert must be the base64 of a DER certificate";
    }
    if (!r->pending) {
        *code = "no_csr";
        return "no pending key: send rot_csr first";
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int ret = mbedtls_x509_crt_parse_der(&crt, r->buf, n);
    int pl = ret == 0 ? mbedtls_pk_write_pubkey_der(&crt.pk, pub, sizeof pub) : -1;
    mbedtls_x509_crt_free(&crt);
    if (ret != 0) {
        *code = "bad_cert";
        return "the certificate does not parse";
    }
    if (pl <= 0 || (size_t)pl != r->pub_len ||
        memcmp(pub + sizeof pub - (size_t)pl, r->pub_der, r->pub_len) != 0) {
        *code = "key_mismatch";
        return "the certificate's public key is not the pending key's";
    }
    vals[0].data = r->key_der;
    vals[0].len = r->key_len;
    vals[1].data = r->buf;
    vals[1].len = n;
    return NULL;
}

/* Reads and checks the ca successor: the bundle (in r->buf) must parse as X.509, DER
 * certificates back to back (at most FKD_CA_CHAIN_MAX, what the store accepts) or PEM. NULL,
 * or the problem with *code set. */
static const char *ca_values(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                             const char **code, struct fkd_rot_value vals[1]) {
    size_t n = 0;
    *code = "bad_request";
    if (get_b64(r, body, blen, "cert", &n) != 0 || n == 0) {
        return "cert must be the base64 of the trust anchors (DER certificates or PEM)";
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int ret = MBEDTLS_ERR_X509_INVALID_FORMAT;
    if (r->buf[0] == 0x30) {
        if (fkd_der_seq_count(r->buf, n, FKD_CA_CHAIN_MAX) > 0) {
            ret = 0;
            for (size_t off = 0; off < n && ret == 0;) {
                size_t e = fkd_der_seq_len(r->buf + off, n - off);
                ret = mbedtls_x509_crt_parse_der(&crt, r->buf + off, e);
                off += e;
            }
        }
    } else if (n < sizeof r->buf) {
        r->buf[n] = 0; /* mbedTLS parses PEM with its NUL; the NUL is not stored */
        ret = mbedtls_x509_crt_parse(&crt, r->buf, n + 1);
    }
    mbedtls_x509_crt_free(&crt);
    if (ret != 0) {
        *code = "bad_cert";
        return "the trust anchors do not parse as X.509";
    }
    vals[0].data = r->buf;
    vals[0].len = n;
    return NULL;
}

/* Reads and checks the ota successor: "key" (DER SPKI) must be a Secure Boot V2 key and
 * "endorsement" a signature block over it by the committed security/ota_pubkey (what
 * `provision-keys rotate ota-key start` signs, fleetkey/rotation.h): the control plane can only
 * deliver a key the holder of the current release key vouched for. Checked before anything is
 * written. NULL, or the problem with *code set. */
static const char *ota_values(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                              const char **code, struct fkd_rot_value vals[1]) {
    uint8_t *key = r->buf + OTA_NEW_KEY, *cur = r->buf + OTA_CHECK_KEY, *blk = r->buf + OTA_BLOCK;
    size_t n = 0, kl = 0, bl = 0;
    struct fkd_sbv2_keys ks;
    struct fkd_sbv2_result res;
    *code = "bad_request";
    if (get_b64_to(r, body, blen, "key", key, FKD_OTA_KEY_MAX, &n) != 0 || n == 0) {
        return "key must be the base64 of a DER SubjectPublicKeyInfo of at most 600 bytes";
    }
    fkd_sbv2_keys_init(&ks);
    if (fkd_sbv2_keys_add(&ks, key, n) != FKD_OK) {
        *code = "bad_key";
        return "key is not an RSA-3072, P-256 or P-384 public key";
    }
    if (get_b64_to(r, body, blen, "endorsement", blk, FKD_SBV2_BLOCK, &bl) != 0 ||
        bl != FKD_SBV2_BLOCK) {
        return "endorsement must be the base64 of one 1216-byte signature block";
    }
    unsigned active = fkd_rot_info(r->rot, FKD_ROT_OTA)->active;
    fkd_sbv2_keys_init(&ks);
    if (fkd_rot_read(r->rot, FKD_ROT_OTA, 0, active, cur, FKD_OTA_KEY_MAX, &kl) != FKD_OK ||
        fkd_sbv2_keys_add(&ks, cur, kl) != FKD_OK) {
        *code = "no_key";
        return "no usable security/ota_pubkey to check the endorsement with";
    }
    uint8_t *sector = (uint8_t *)r->b64;
    memcpy(sector, blk, FKD_SBV2_BLOCK);
    if (fkd_ota_endorsement_verify(sector, key, n, &ks, &res) != FKD_OK) {
        *code = "not_endorsed";
        return "the endorsement does not verify with the committed security/ota_pubkey";
    }
    vals[0].data = key;
    vals[0].len = n;
    return NULL;
}

/* The trial of class ota: "manifest_sig", a signature block by the new key over the digest
 * "manifest_sha256" (and "manifest_sha384" for a P-384 key; both base64) of a release the
 * new key signed, must verify with the key read back from the staged slot: the bytes this
 * robot will check images with are the right ones and its verifier takes them. NULL, or the
 * problem. */
static const char *ota_manifest_problem(struct fkd_rot_remote *r, const uint8_t *body,
                                        size_t blen) {
    uint8_t *key = r->buf + OTA_CHECK_KEY, *blk = r->buf + OTA_BLOCK;
    uint8_t d256[32], d384[64];
    size_t n = 0, kl = 0;
    struct fkd_sbv2_keys ks;
    int slot = fkd_rot_slot_next(r->rot, FKD_ROT_OTA);
    if (get_b64_to(r, body, blen, "manifest_sha256", d256, sizeof d256, &n) != 0 || n != 32) {
        return "manifest_sha256 must be the base64 of a SHA-256 digest";
    }
    int has384 = get_b64_to(r, body, blen, "manifest_sha384", d384, sizeof d384, &n) == 0;
    if (has384 && n != 48) {
        return "manifest_sha384 must be the base64 of a SHA-384 digest";
    }
    if (get_b64_to(r, body, blen, "manifest_sig", blk, FKD_SBV2_BLOCK, &n) != 0 ||
        n != FKD_SBV2_BLOCK) {
        return "manifest_sig must be the base64 of one 1216-byte signature block";
    }
    fkd_sbv2_keys_init(&ks);
    if (slot < 0 ||
        fkd_rot_read(r->rot, FKD_ROT_OTA, 0, (unsigned)slot, key, FKD_OTA_KEY_MAX, &kl) != FKD_OK ||
        fkd_sbv2_keys_add(&ks, key, kl) != FKD_OK) {
        return "the staged key cannot be read back";
    }
    if (fkd_sbv2_keys_need_sha384(&ks) && !has384) {
        return "manifest_sha384 is required for a P-384 key";
    }
    uint8_t *sector = (uint8_t *)r->b64;
    memcpy(sector, blk, FKD_SBV2_BLOCK);
    memset(sector + FKD_SBV2_BLOCK, 0xFF, FKD_SBV2_SECTOR - FKD_SBV2_BLOCK);
    if (fkd_sbv2_verify(sector, d256, has384 ? d384 : NULL, &ks, NULL) != FKD_OK) {
        return "the manifest's signature does not verify with the staged key";
    }
    return NULL;
}

static void begin_trial(struct fkd_rot_remote *r, enum fkd_rot_class c, uint32_t version,
                        struct fkd_wss_reply *rep);

/* Class ota after its stage: the manifest check, then the trial (whose answer, ota in trial
 * with the staged version, is what the server confirms); a manifest that does not verify
 * rolls the staged key back at once (reason invalid). */
static void ota_trial(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                      uint32_t version, struct fkd_wss_reply *rep) {
    const char *why = ota_manifest_problem(r, body, blen);
    if (why != NULL) {
        enum fkd_err rc = fkd_rot_rollback(r->rot, FKD_ROT_OTA, FKD_ROT_R_INVALID);
        fail("rot_stage", rep, "bad_manifest", "ota version %lu: %s: %s", (unsigned long)version,
             why, rc == FKD_OK ? "rolled back" : "rollback failed, the next boot finishes it");
        return;
    }
    fkd_log(FKD_LOG_INFO,
            "rot: ota: version %lu: the staged key verified a manifest signed by the new key",
            (unsigned long)version);
    begin_trial(r, FKD_ROT_OTA, version, rep);
}

/* The second half of rot_stage: the trial begins at once (attempt 1) and the class's state is
 * the answer; for mtls the client reconnects presenting the staged credential. */
static void begin_trial(struct fkd_rot_remote *r, enum fkd_rot_class c, uint32_t version,
                        struct fkd_wss_reply *rep) {
    enum fkd_err rc = fkd_rot_trial_begin(r->rot, c, fkd_net_now_ms());
    if (rc != FKD_OK) {
        fail("rot_stage", rep, "flash_error", "%s version %lu staged, trial not begun: %s",
             fkd_rot_class_name(c), (unsigned long)version, fkd_strerror(rc));
        return;
    }
    fkd_log(FKD_LOG_INFO, "rot: %s: version %lu in trial, attempt 1", fkd_rot_class_name(c),
            (unsigned long)version);
    if (c == FKD_ROT_MTLS || c == FKD_ROT_CA) {
        r->trial_counted |= 1u << c; /* the reconnection that follows is attempt 1 */
        rep->reconnect = 1;
    }
    answer_state("rot_stage", r, c, rep);
}

static void rot_stage(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                      struct fkd_wss_reply *rep) {
    static const char kind[] = "rot_stage";
    enum fkd_rot_class c;
    uint32_t version = 0;
    if (get_class(body, blen, &c) != 0 || get_uint(body, blen, "version", &version) != FKD_OK ||
        version == 0) {
        fail(kind, rep, "bad_request",
             "class (psk, mtls, ca or ota) and version (> 0) are required");
        return;
    }
    const struct fkd_rot_info *i = fkd_rot_info(r->rot, c);
    const char *cls = fkd_rot_class_name(c);
    if (i->state == FKD_ROT_TRIAL && i->staged_version == version) {
        fkd_log(FKD_LOG_INFO, "rot: %s: version %lu already in trial (repeat)", cls,
                (unsigned long)version);
        answer_state(kind, r, c, rep);
        return;
    }
    if (i->state == FKD_ROT_STAGED && i->staged_version == version) {
        /* Staged, but the trial did not begin (a power cut between the two): begin it now. */
        if (c == FKD_ROT_OTA) {
            ota_trial(r, body, blen, version, rep);
        } else {
            begin_trial(r, c, version, rep);
        }
        return;
    }
    if (version <= i->version) {
        fail(kind, rep, "not_newer", "%s version %lu is not newer than the active %lu", cls,
             (unsigned long)version, (unsigned long)i->version);
        return;
    }
    if (i->state == FKD_ROT_TRIAL) {
        fail(kind, rep, "busy", "%s version %lu is in trial", cls,
             (unsigned long)i->staged_version);
        return;
    }
    struct fkd_rot_value vals[2];
    char id[FKD_PSK_ID_MAX + 1];
    const char *code = "bad_request";
    const char *why = c == FKD_ROT_PSK    ? psk_values(r, body, blen, id, sizeof id, vals)
                      : c == FKD_ROT_MTLS ? mtls_values(r, body, blen, &code, vals)
                      : c == FKD_ROT_OTA  ? ota_values(r, body, blen, &code, vals)
                                          : ca_values(r, body, blen, &code, vals);
    if (why != NULL) {
        fkd_wipe(r->buf, sizeof r->buf);
        fail(kind, rep, code, "%s", why);
        return;
    }
    char fpr[FKD_FPR_LEN];
    size_t fi = c == FKD_ROT_MTLS ? 1 : 0; /* the PSK, the certificate, the bundle, the key */
    fkd_fpr(vals[fi].data, vals[fi].len, fpr);
    enum fkd_err rc = fkd_rot_stage(r->rot, c, version, vals, fkd_rot_items(c));
    fkd_wipe(r->buf, sizeof r->buf);
    fkd_wipe(r->b64, sizeof r->b64);
    if (rc != FKD_OK) {
        fail(kind, rep, rot_code(rc), "%s version %lu not staged: %s", cls, (unsigned long)version,
             fkd_strerror(rc));
        return;
    }
    if (c == FKD_ROT_MTLS) {
        drop_pending(r); /* the key now lives in the staged slot */
    }
    fkd_log(FKD_LOG_INFO, "rot: %s: version %lu staged (%s)", cls, (unsigned long)version, fpr);
    if (c == FKD_ROT_OTA) {
        ota_trial(r, body, blen, version, rep);
        return;
    }
    begin_trial(r, c, version, rep);
}

/* ---- rot_commit / rot_rollback --------------------------------------------------------------- */

/* Lowercase hex of a serial without leading zero digits (both sides normalised the same way:
 * "0a1b" and "A1B" name the same number). */
static void serial_norm(const char *in, char *out, size_t size) {
    size_t o = 0;
    while (*in == '0' && in[1] != '\0') {
        in++;
    }
    for (; *in && o + 1 < size; in++) {
        char ch = *in;
        out[o++] = (char)(ch >= 'A' && ch <= 'F' ? ch - 'A' + 'a' : ch);
    }
    out[o] = '\0';
}

/* 1 when serial (hex) is the staged certificate's. */
static int staged_serial_is(struct fkd_rot_remote *r, const char *serial) {
    int slot = fkd_rot_slot_next(r->rot, FKD_ROT_MTLS);
    size_t n = 0;
    if (slot < 0 || fkd_rot_read(r->rot, FKD_ROT_MTLS, 1, (unsigned)slot, r->buf, sizeof r->buf,
                                 &n) != FKD_OK) {
        return 0;
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    char hex[2 * 32 + 1];
    char a[sizeof hex], b[sizeof hex];
    int ok = 0;
    if (mbedtls_x509_crt_parse_der(&crt, r->buf, n) == 0 && crt.serial.len <= 32) {
        static const char hx[] = "0123456789abcdef";
        for (size_t k = 0; k < crt.serial.len; k++) {
            hex[2 * k] = hx[crt.serial.p[k] >> 4];
            hex[2 * k + 1] = hx[crt.serial.p[k] & 15];
        }
        hex[2 * crt.serial.len] = '\0';
        serial_norm(hex, a, sizeof a);
        serial_norm(serial, b, sizeof b);
        ok = a[0] != '\0' && strcmp(a, b) == 0;
    }
    mbedtls_x509_crt_free(&crt);
    return ok;
}

static void rot_commit(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                       struct fkd_wss_reply *rep) {
    static const char kind[] = "rot_commit";
    enum fkd_rot_class c;
    uint32_t version = 0;
    char serial[FKD_WSS_STR_MAX];
    if (get_class(body, blen, &c) != 0 || get_uint(body, blen, "version", &version) != FKD_OK) {
        fail(kind, rep, "bad_request", "class (psk, mtls, ca or ota) and version are required");
        return;
    }
    if (c == FKD_ROT_MTLS && get_str(body, blen, "serial", serial, sizeof serial) != FKD_OK) {
        fail(kind, rep, "bad_request", "serial is required for mtls");
        return;
    }
    const struct fkd_rot_info *i = fkd_rot_info(r->rot, c);
    const char *cls = fkd_rot_class_name(c);
    if (i->version == version && version != 0 && i->state != FKD_ROT_TRIAL) {
        answer_state(kind, r, c, rep); /* the response to an earlier commit was lost */
        return;
    }
    if (i->state != FKD_ROT_TRIAL || i->staged_version != version) {
        fail(kind, rep, "not_staged", "%s version %lu is not in trial", cls,
             (unsigned long)version);
        return;
    }
    if (c == FKD_ROT_MTLS && !staged_serial_is(r, serial)) {
        fail(kind, rep, "not_staged", "serial is not the staged certificate's");
        return;
    }
    enum fkd_err rc = fkd_rot_commit(r->rot, c, version);
    if (rc != FKD_OK) {
        fail(kind, rep, rc == FKD_E_AUTH || rc == FKD_E_STATE ? "not_staged" : "flash_error",
             "%s version %lu not committed: %s", cls, (unsigned long)version, fkd_strerror(rc));
        return;
    }
    fkd_log(FKD_LOG_INFO, "rot: %s: version %lu committed (confirmed by the control plane)", cls,
            (unsigned long)version);
    answer_state(kind, r, c, rep);
}

static void rot_rollback(struct fkd_rot_remote *r, const uint8_t *body, size_t blen,
                         struct fkd_wss_reply *rep) {
    static const char kind[] = "rot_rollback";
    enum fkd_rot_class c;
    if (get_class(body, blen, &c) != 0) {
        fail(kind, rep, "bad_request", "class (psk, mtls, ca or ota) is required");
        return;
    }
    const struct fkd_rot_info *i = fkd_rot_info(r->rot, c);
    if (i->state == FKD_ROT_STAGED || i->state == FKD_ROT_TRIAL) {
        uint32_t v = i->staged_version;
        enum fkd_err rc = fkd_rot_rollback(r->rot, c, FKD_ROT_R_SERVER);
        if (rc != FKD_OK) {
            fail(kind, rep, "flash_error", "%s not rolled back: %s", fkd_rot_class_name(c),
                 fkd_strerror(rc));
            return;
        }
        fkd_log(FKD_LOG_WARN, "rot: %s: version %lu rolled back (server)", fkd_rot_class_name(c),
                (unsigned long)v);
    }
    if ((c == FKD_ROT_MTLS && tag_now(r->rot) != r->conn_tag) ||
        (c == FKD_ROT_CA && cls_tag(r->rot, FKD_ROT_CA) != r->ca_conn_tag)) {
        rep->reconnect = 1; /* this connection uses the abandoned credential */
    }
    answer_state(kind, r, c, rep);
}

enum fkd_wss_req_result fkd_rot_remote_request(void *user, const char *kind, const uint8_t *body,
                                               size_t body_len, struct fkd_wss_reply *reply) {
    struct fkd_rot_remote *r = user;
    if (r == NULL || r->rot == NULL || kind == NULL || reply == NULL) {
        return FKD_WSS_REQ_UNKNOWN;
    }
    fkd_wss_reply_begin(reply, &body, &body_len);
    if (strcmp(kind, "rot_csr") == 0) {
        rot_csr(r, body, body_len, reply);
    } else if (strcmp(kind, "rot_stage") == 0) {
        rot_stage(r, body, body_len, reply);
    } else if (strcmp(kind, "rot_commit") == 0) {
        rot_commit(r, body, body_len, reply);
    } else if (strcmp(kind, "rot_rollback") == 0) {
        rot_rollback(r, body, body_len, reply);
    } else {
        return FKD_WSS_REQ_UNKNOWN;
    }
    return FKD_WSS_REQ_DONE;
}

/* ---- the client's connections ---------------------------------------------------------------- */

/* Counts the trial attempt of the coming connection for class c when it is staged or in
 * trial (see fkd_rot_remote_credentials). */
static void count_attempt(struct fkd_rot_remote *r, enum fkd_rot_class c, uint64_t now) {
    const struct fkd_rot_info *i = fkd_rot_info(r->rot, c);
    const char *cls = fkd_rot_class_name(c);
    if (i->state != FKD_ROT_STAGED && i->state != FKD_ROT_TRIAL) {
        return;
    }
    if ((r->trial_counted & (1u << c)) && i->state == FKD_ROT_TRIAL) {
        r->trial_counted &= ~(1u << c); /* rot_stage counted this one */
        return;
    }
    r->trial_counted &= ~(1u << c);
    enum fkd_err rc = fkd_rot_trial_begin(r->rot, c, now);
    if (rc == FKD_E_TIMEOUT) {
        fkd_log(FKD_LOG_WARN,
                "rot: %s: trial attempts used up: rolled back, connecting with the "
                "active credential",
                cls);
    } else if (rc != FKD_OK) {
        /* An attempt that cannot be counted is not made. */
        fkd_log(FKD_LOG_ERROR, "rot: %s: trial attempt not counted (%s): rolling back", cls,
                fkd_strerror(rc));
        if (fkd_rot_rollback(r->rot, c, FKD_ROT_R_ATTEMPTS) != FKD_OK) {
            fkd_log(FKD_LOG_ERROR, "rot: %s: rollback failed too: the next boot finishes it", cls);
        }
    } else {
        fkd_log(FKD_LOG_INFO, "rot: %s: trial connection, attempt %u", cls,
                fkd_rot_info(r->rot, c)->attempts);
    }
}

/* The trust anchors of the ca slot in use, into r->b64 (free between connections), unless
 * they are what the store loaded at boot. */
static void ca_credentials(struct fkd_rot_remote *r, struct fkd_wss_creds *c) {
    uint32_t tag = cls_tag(r->rot, FKD_ROT_CA);
    r->ca_conn_tag = tag;
    if (tag == r->ca_boot_tag) {
        return;
    }
    unsigned slot = fkd_rot_slot_in_use(r->rot, FKD_ROT_CA);
    uint8_t *b = (uint8_t *)r->b64;
    size_t n = 0;
    if (fkd_rot_read(r->rot, FKD_ROT_CA, 0, slot, b, sizeof r->b64 - 1, &n) != FKD_OK || n == 0) {
        fkd_log(FKD_LOG_ERROR, "rot: ca: slot %c unreadable: trusting the store's anchors",
                slot == FKD_ROT_SLOT_A ? 'A' : 'B');
        return;
    }
    b[n] = 0; /* PEM is parsed with its NUL */
    c->ca = b;
    c->ca_len = n;
    c->ca_tag = tag;
}

void fkd_rot_remote_credentials(void *user, struct fkd_wss_creds *c) {
    struct fkd_rot_remote *r = user;
    if (r == NULL || r->rot == NULL || c == NULL) {
        return;
    }
    uint64_t now = fkd_net_now_ms();
    (void)fkd_rot_poll(r->rot, now);
    count_attempt(r, FKD_ROT_MTLS, now);
    count_attempt(r, FKD_ROT_CA, now);
    ca_credentials(r, c);
    uint32_t tag = tag_now(r->rot);
    r->conn_tag = tag;
    if (tag == r->boot_tag) {
        return; /* what the store loaded at boot */
    }
    unsigned slot = fkd_rot_slot_in_use(r->rot, FKD_ROT_MTLS);
    size_t kl = 0, cl = 0;
    if (fkd_rot_read(r->rot, FKD_ROT_MTLS, 0, slot, c->key_buf, FKD_WSS_MSG_MAX, &kl) != FKD_OK ||
        fkd_rot_read(r->rot, FKD_ROT_MTLS, 1, slot, c->cert_buf, FKD_WSS_MSG_MAX, &cl) != FKD_OK) {
        fkd_wipe(c->key_buf, FKD_WSS_MSG_MAX);
        fkd_log(FKD_LOG_ERROR, "rot: mtls: slot %c unreadable: presenting the store's credential",
                slot == FKD_ROT_SLOT_A ? 'A' : 'B');
        return;
    }
    c->cert = c->cert_buf;
    c->cert_len = cl;
    c->key = c->key_buf;
    c->key_len = kl;
    c->tag = tag;
}

int fkd_rot_remote_tick(void *user) {
    struct fkd_rot_remote *r = user;
    if (r == NULL || r->rot == NULL) {
        return 0;
    }
    if (fkd_rot_poll(r->rot, fkd_net_now_ms()) > 0) {
        fkd_log(FKD_LOG_WARN, "rot: a trial timed out: rolled back");
    }
    return tag_now(r->rot) != r->conn_tag || cls_tag(r->rot, FKD_ROT_CA) != r->ca_conn_tag;
}
