/* fleetkey rotation: the OTA signing-key rotation planner (seed 004, "Rotating OTA Signing
 * Key"), with the inventory as its gate.
 *
 * The seed's steps and what guards each one here:
 *   1. new key pair                       (made by the release engineer or in an HSM)
 *   2. releases dual-signed (old + new)   start records the new key for every device as
 *                                         "staged"; from then on sign-release signs with both
 *   3./4. firmware that trusts the new key; the server delivers security/ota_pubkey2 and the
 *         device reports that it holds and trusts it: confirm --device (the server's call
 *         later; a command for now) turns the device's new-key row "active"
 *   5. new-key-only images                allowed only when EVERY device confirmed
 *   6. old key retired                    allowed only when every device confirmed and runs
 *                                         new-key-only firmware (confirm --firmware); marks
 *                                         the old key "retired": signing with it is refused
 * A step attempted before its gate holds is refused with the list of devices that block it,
 * offline ones included ("a mis-signed OTA leaves devices unable to update").
 *
 * Inventory rows (credentials table, per device; fingerprints only, never key material):
 *   kind "ota_signing_key", fingerprint "sbv2:<64 hex>" (the Secure Boot V2 key digest, the
 *     eFuse value), state "active" (the device trusts it), "staged" (recorded, the device has
 *     not confirmed it), "retired";
 *   kind "ota_fw_new_only", fingerprint of the new key: the device runs firmware signed with
 *     the new key only.
 * Every step (and every refusal) is an audit row, kind "ota_rotation.<step>".
 * Retired devices (device state "retired") take no part.
 *
 * Thread safety: as the inventory (one struct fk_inventory per thread). */
#ifndef FLEETKEY_ROTATION_H
#define FLEETKEY_ROTATION_H

#include "fleetkey/common.h"
#include "fleetkey/inventory.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fk_ota_key;

#define FK_ROT_KIND_KEY "ota_signing_key"
#define FK_ROT_KIND_FW "ota_fw_new_only"
#define FK_ROT_KIND_FORCED "ota_rot_forced" /* fk_rotation_force: the device no longer gates */

/* The two keys of a rotation, by fingerprint ("sbv2:" + hex SHA-256 key digest). */
struct fk_rot_keys {
    char old_fpr[FK_INV_FPR_SIZE];
    char new_fpr[FK_INV_FPR_SIZE];
};

#define FK_ROT_DER_MAX 1024 /* a DER SubjectPublicKeyInfo: RSA-3072 is 422 bytes */

/* The endorsement of a new OTA key by the old one: a Secure Boot V2 signature block (1216
 * bytes, the old key's scheme) over FK_ROT_ENDORSE_TAG (32 bytes) || the new key's DER SPKI,
 * padded with 0xFF to 4096 bytes, exactly as espsecure signs data. A device accepts
 * security/ota_pubkey2 over the channel only with an endorsement that verifies with its
 * security/ota_pubkey, so whoever controls the control plane cannot add a firmware key to the
 * fleet: only the holder of the current release key can. The tag's first byte is not an app
 * image's 0xE9, so no endorsement is a firmware signature and no firmware signature is an
 * endorsement. */
#define FK_ROT_ENDORSE_LEN 1216
#define FK_ROT_ENDORSE_TAG "fleetkey-ota-key-endorsement-v1\n" /* 32 bytes, no NUL */
#define FK_ROT_ENDORSE_TAG_LEN 32

/* The rotation `start` recorded last (the one under way, or the one that ended last):
 * its two keys and the new public key itself, which fleetkey-server delivers to each device
 * as security/ota_pubkey2 (a public key: not a secret). */
struct fk_rot_current {
    struct fk_rot_keys keys;
    uint8_t new_der[FK_ROT_DER_MAX]; /* DER SubjectPublicKeyInfo of the new key */
    size_t new_der_len;
    uint8_t endorsement[FK_ROT_ENDORSE_LEN]; /* the old key's endorsement of new_der */
    char started_at[FK_INV_TIME_SIZE];
};

/* One device's part in the rotation. */
struct fk_rot_device {
    char id[FK_INV_ID_SIZE];
    int trusts_old;    /* old key row "active" */
    int holds_new;     /* new key row present (staged or active) */
    int confirmed;     /* new key row "active": the device holds and trusts ota_pubkey2 */
    int runs_new_only; /* ota_fw_new_only row "active" */
    int forced;        /* named in fk_rotation_force: it no longer holds the gates back */
    int seen;          /* the control plane has seen it at least once */
    char last_seen[FK_INV_TIME_SIZE];
};

struct fk_rot_status {
    struct fk_rot_device *dev; /* n entries, device id order; owned (fk_rot_status_free) */
    size_t n;
    size_t confirmed, runs_new_only;
    int started;          /* start ran: some device holds the new key */
    int old_retired;      /* the old key is retired */
    int new_retired;      /* the new key is retired (a rotation after this one) */
    int new_only_release; /* a release signed with the new key only exists */
};

/* The fingerprint of a key: "sbv2:" + the hex of fk_ota_key_digest. FK_OK, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_rotation_key_fpr(const struct fk_ota_key *k,
                                              char out[FK_INV_FPR_SIZE]);

/* Reads every (non-retired) device's state for this rotation. *out is owned by the caller.
 * FK_OK, FK_E_DB, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_rotation_status(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                             struct fk_rot_status *out, struct fk_diag *diag);
void fk_rot_status_free(struct fk_rot_status *s);
/* "never connected" or "last seen <time>"; never NULL. */
const char *fk_rot_seen_text(const struct fk_rot_device *d, char *buf, size_t size);

/* Signs the endorsement of der (the new key, DER SPKI, at most 4064 bytes) with old (a
 * private key, PEM or PKCS#11). FK_OK; FK_E_ARG (der empty or too long, old not private);
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_rotation_endorse(struct fk_ota_key *old, const uint8_t *der,
                                              size_t der_len, uint8_t out[FK_ROT_ENDORSE_LEN],
                                              struct fk_diag *diag);
/* Checks an endorsement of der against the key whose fingerprint is old_fpr: the block's own
 * key must have that fingerprint and its signature must verify. FK_OK; FK_E_VERIFY. */
FK_MUST_CHECK enum fk_err fk_rotation_endorsement_check(const char *old_fpr, const uint8_t *der,
                                                        size_t der_len,
                                                        const uint8_t block[FK_ROT_ENDORSE_LEN],
                                                        struct fk_diag *diag);

/* Step 2: records the new key for every device ("staged"; the old key "active" where no row
 * says so yet) and the rotation itself with the new public key (new_der, DER SPKI, whose
 * fingerprint must be k->new_fpr) and the old key's endorsement of it
 * (fk_rotation_endorsement_check must pass), so the server can deliver it. Idempotent. One
 * transaction, one audit row.
 * FK_OK; FK_E_ARG (old == new, new_der empty/too long or not the key of new_fpr, the
 * endorsement does not verify with the old key); FK_E_POLICY (the old or the new key is
 * retired; a device trusts a third key: diag names it); FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_start(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                            const uint8_t *new_der, size_t new_der_len,
                                            const uint8_t endorsement[FK_ROT_ENDORSE_LEN],
                                            const char *actor, struct fk_diag *diag);

/* The rotation started last. *found = 0 (out zeroed) when none was ever started.
 * FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_current(struct fk_inventory *inv, struct fk_rot_current *out,
                                              int *found, struct fk_diag *diag);

/* The "sbv2:<hex>" fingerprint of a DER SubjectPublicKeyInfo (RSA-3072, EC P-256/P-384), as
 * fk_rotation_key_fpr gives for the same key. FK_OK, FK_E_PARSE, FK_E_UNSUPPORTED,
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_rotation_der_fpr(const uint8_t *der, size_t len,
                                              char out[FK_INV_FPR_SIZE]);

/* Steps 3/4: the device holds and trusts the new key (firmware == 0), or runs new-key-only
 * firmware (firmware == 1: needs the key confirmed and a new-key-only release to exist).
 * FK_OK; FK_E_NOTFOUND (no such device); FK_E_STATE (rotation not started / gate not met,
 * audited as a refusal); FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_confirm(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                              const char *device, int firmware, const char *actor,
                                              struct fk_diag *diag);

/* The gate of sign-release: dual (new_only 0) needs the rotation started and the old key not
 * retired; new_only needs every device confirmed. On FK_E_POLICY / FK_E_STATE *st (filled in
 * any case when non-NULL; free it) lists the blocking devices and a refusal row is audited.
 * FK_OK; FK_E_STATE (not started); FK_E_POLICY (gate not met, or a key retired); FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_gate_release(struct fk_inventory *inv,
                                                   const struct fk_rot_keys *k, int new_only,
                                                   const char *actor, struct fk_rot_status *st,
                                                   struct fk_diag *diag);
/* Audits a release that was signed (image_sha256: hex of the signed file). FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_record_release(struct fk_inventory *inv,
                                                     const struct fk_rot_keys *k, int new_only,
                                                     const char *image_name,
                                                     const char *image_sha256, const char *actor,
                                                     struct fk_diag *diag);

/* Step 6: retires the old key when every device confirmed the new one, a new-key-only
 * release exists and every device runs it. Otherwise FK_E_POLICY with *st (when non-NULL)
 * listing the blockers, audited as a refusal. FK_OK, FK_E_STATE (not started), FK_E_POLICY,
 * FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_retire_old(struct fk_inventory *inv,
                                                 const struct fk_rot_keys *k, const char *actor,
                                                 struct fk_rot_status *st, struct fk_diag *diag);

/* The incident path (seed 004: "If a signing key is compromised, rotate immediately"): lets
 * devices that have not confirmed the new key (offline ones) stop holding back the new-key-only
 * release and the old key's retirement, so the compromised key leaves the trust of every
 * device that did confirm. Like fk_plan_force, the operator must name exactly the devices that
 * block now (not confirmed, not forced before): nobody forces more than they looked at. Each
 * gets a credential row FK_ROT_KIND_FORCED (fingerprint of the new key), one audit row
 * "ota_rotation.forced" names them all. A forced device is not covered: it still trusts only the
 * old key until it reconnects, takes the new key and runs new-key-only firmware.
 * *st (when non-NULL; free it) is the status before the force.
 * FK_OK; FK_E_STATE (not started); FK_E_ARG (no device named); FK_E_POLICY (the names are not
 * exactly the blocking devices: diag lists the difference; audited as a refusal); FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_force(struct fk_inventory *inv, const struct fk_rot_keys *k,
                                            const char *const *devices, size_t ndevices,
                                            const char *actor, struct fk_rot_status *st,
                                            struct fk_diag *diag);

/* *retired = 1 when some device row marks the key with this fingerprint retired (signing
 * with it is then refused). FK_OK, FK_E_DB. */
FK_MUST_CHECK enum fk_err fk_rotation_key_retired(struct fk_inventory *inv, const char *fpr,
                                                  int *retired, struct fk_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
