/* fkd ota_remote: firmware updates and trusted OTA keys delivered over the control channel
 * (docs/wss-protocol.md, "OTA state in hello and in the status body" and "Request kinds for
 * updates and OTA keys"). A handler for the wss client (fkd/wss.h, struct fkd_wss_handler):
 *
 * - state: the "ota" member of hello and of the status body (running slot, its otadata state,
 *   version, secure_version, appended SHA-256, whether updates are possible, the digests of
 *   the trusted keys);
 * - ota_begin / ota_chunk / ota_finish / ota_abort: a streaming update on top of
 *   fkd_ota_begin/write/finish/abort (fkd/ota.h), with a SHA-256 over every byte received as
 *   the transport check (transfer_corrupt) before the signature is even looked at; a
 *   successful finish asks the client to close 1000 "rebooting" (the caller reboots);
 * - ota_key: a new trusted key into NVS security/ota_pubkey2, or the promotion of the staged
 *   ota_pubkey2 to security/ota_pubkey (never a key the device did not already hold);
 * - welcomed: the running image confirms itself (fkd_ota_mark_valid) when it is still
 *   pending verification: reaching the control plane is its self-test.
 *
 * Errors answer with the protocol's codes (bad_request, busy, updates_disabled, ...); every
 * refusal is one ERROR log line "ota: REFUSED: <kind>: ...".
 *
 * Memory: struct fkd_ota_remote is caller memory, 8,632 bytes on rv32imc (8,688 on x86-64):
 * the update context (4.7 KiB: signature sector and
 * hash contexts), the trusted keys in block form (2 x 780 bytes), a transfer SHA-256 context
 * and one 2 KiB buffer a chunk or a DER key is decoded into. Nothing is allocated; mbedTLS
 * allocates bignums inside key parsing and signature verification and frees them before
 * returning.
 * Threads: none; every call on one context from one thread (the wss client's). */
#ifndef FKD_OTA_REMOTE_H
#define FKD_OTA_REMOTE_H

#include "fkd/common.h"
#include "fkd/ota.h"
#include "fkd/wss.h"

#include <mbedtls/sha256.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_nvs;

#define FKD_OTA_REMOTE_CHUNK 2048u    /* decoded bytes one ota_chunk may carry (v1) */
#define FKD_OTA_REMOTE_B64_MAX 2732u  /* base64 characters of a full chunk */
#define FKD_OTA_REMOTE_FPR_LEN 70u    /* "sbv2:" + 64 hex + NUL */

/* Trusted key slots, in NVS namespace "security". */
enum fkd_ota_key_slot { FKD_OTA_KEY_PRIMARY = 0 /* ota_pubkey */, FKD_OTA_KEY_SECOND = 1 };

struct fkd_ota_remote_config {
    const struct fkd_flash *flash;      /* borrowed while the context lives */
    const struct fkd_part_table *parts; /* borrowed */
    struct fkd_nvs *nvs;          /* mounted NVS, borrowed; NULL: ota_key answers flash_error */
    struct fkd_ota_boot *running; /* the bootloader's choice, borrowed; its state turns VALID
                                   * when the image confirms itself (welcomed) */
    const uint8_t *ota_pubkey;    /* DER SPKI of security/ota_pubkey as loaded; NULL: none */
    size_t ota_pubkey_len;
    const uint8_t *ota_pubkey2;   /* security/ota_pubkey2; NULL: none */
    size_t ota_pubkey2_len;
};

/* Fields are private; here so the context can live in caller memory. */
struct fkd_ota_remote {
    struct fkd_ota_remote_config cfg;
    struct fkd_sbv2_keys keys;              /* the trusted set fkd_ota_begin uses */
    int key_slot[FKD_SBV2_KEYS_MAX];        /* keys.key[i] is held in NVS slot key_slot[i] */
    uint8_t digest[FKD_SBV2_KEYS_MAX][32];  /* Secure Boot V2 digest of keys.key[i] */
    struct fkd_ota_update upd;
    mbedtls_sha256_context xfer; /* SHA-256 of every byte received (transport check) */
    uint8_t want_sha256[32];     /* from ota_begin */
    char version[65];            /* from ota_begin, for the log */
    int active;                  /* an update is under way */
    int installed;               /* an update finished: the device is about to reboot */
    uint8_t buf[FKD_OTA_REMOTE_CHUNK]; /* one decoded chunk or DER key */
};

/* Empties r. Cannot fail. */
void fkd_ota_remote_init(struct fkd_ota_remote *r);
/* Copies *cfg (pointers in it are borrowed) and converts the given keys into the trusted set;
 * a key that does not parse is logged and not trusted (as at boot). FKD_OK or FKD_E_ARG
 * (flash, parts or running missing). */
FKD_MUST_CHECK enum fkd_err fkd_ota_remote_setup(struct fkd_ota_remote *r,
                                                 const struct fkd_ota_remote_config *cfg);
/* Abandons an update under way and frees the hash contexts. Safe after init; idempotent. */
void fkd_ota_remote_free(struct fkd_ota_remote *r);

/* fkd_wss_state_fn (user = the context): the "ota" object. 0 when no app image runs (the
 * member is left out: "this device does not run app images") or when it does not fit. */
size_t fkd_ota_remote_state_json(void *user, char *out, size_t size);
/* fkd_wss_request_fn (user = the context): ota_begin, ota_chunk, ota_finish, ota_abort and
 * ota_key as the protocol says; any other kind is FKD_WSS_REQ_UNKNOWN. A successful
 * ota_finish sets reply->reboot. */
enum fkd_wss_req_result fkd_ota_remote_request(void *user, const char *kind, const uint8_t *body,
                                               size_t body_len, struct fkd_wss_reply *reply);
/* fkd_wss_welcome_fn (user = the context): marks a running image still pending verification
 * valid (and commits its secure_version). Errors are logged; the image then stays pending
 * and is rolled back at the next boot. */
void fkd_ota_remote_welcomed(void *user);
/* The handler with all three callbacks above; handler_user must be the context. */
extern const struct fkd_wss_handler fkd_ota_remote_handler;

/* Replaces the trusted key of slot ota_pubkey with der (DER SPKI), in memory only: the
 * rotation's class ota committed a new key to NVS (fkd/rot.h, fkd/rot_remote.h) and images
 * are to be checked with it from now on, without a reboot. FKD_OK; FKD_E_ARG; FKD_E_STATE (an
 * update is under way: it keeps the keys it began with; the next boot loads the new one);
 * fkd_sbv2_keys_add's errors (the set is then unchanged). */
FKD_MUST_CHECK enum fkd_err fkd_ota_remote_trust(struct fkd_ota_remote *r, const uint8_t *der,
                                                 size_t len);

/* The rotation's endorsement of a new OTA key (fleetkey/rotation.h, FK_ROT_ENDORSE_*): a
 * Secure Boot V2 block, by a key of keys, over the 32-byte tag "fleetkey-ota-key-endorsement-
 * v1\n" followed by der (n bytes) and padded with 0xFF to 4096 bytes, as espsecure signs data.
 * sector holds the decoded block in its first FKD_SBV2_BLOCK bytes; the rest is overwritten
 * with 0xFF (so a caller lends any free 4 KiB buffer). Used by ota_key and by the rotation
 * class ota (rot_remote.c). FKD_OK with res->key the index in keys of the key that verified;
 * FKD_E_ARG (n is 0 or too long); fkd_sbv2_verify's errors; FKD_E_CRYPTO. */
FKD_MUST_CHECK enum fkd_err fkd_ota_endorsement_verify(uint8_t sector[FKD_SBV2_SECTOR],
                                                       const uint8_t *der, size_t n,
                                                       const struct fkd_sbv2_keys *keys,
                                                       struct fkd_sbv2_result *res);

/* The trusted set as it stands (changes with ota_key). Borrowed from r. */
const struct fkd_sbv2_keys *fkd_ota_remote_keys(const struct fkd_ota_remote *r);
/* "sbv2:" + lowercase hex of the key's Secure Boot V2 digest (SHA-256 over its block key
 * fields, espsecure digest-sbv2-public-key) into out. FKD_OK or FKD_E_CRYPTO. */
FKD_MUST_CHECK enum fkd_err fkd_ota_key_fingerprint(const struct fkd_sbv2_key *k,
                                                    char out[FKD_OTA_REMOTE_FPR_LEN]);

#ifdef __cplusplus
}
#endif
#endif
