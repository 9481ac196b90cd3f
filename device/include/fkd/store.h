/* The device credential store: every secret and credential the robot uses, loaded once at
 * boot from NVS (and, in development builds only, from the Kconfig/env fallback), each with
 * a record of where it came from. Consumers (the DTLS control listener, the wss client, OTA)
 * borrow the bytes from here; nothing is copied elsewhere and nothing is ever logged except
 * fingerprints.
 *
 * NVS layout (seed 004; namespaces/keys as written there, plus the ones this project adds):
 *   security/dtls_psk    blob, 32 bytes   DTLS pre-shared key
 *   security/psk_id      string           PSK identity ("robot-AABBCCDDEEFF")
 *   security/ota_pubkey  blob, DER SPKI   OTA signing public key
 *   security/ota_pubkey2 blob, DER SPKI   second trusted OTA key (dual-sign transition)
 *   wifi/ssid            string
 *   wifi/password        string
 *   mtls/ca_cert         string or blob   the control-plane CA chain: PEM, or DER
 *                                         certificates back to back (issuing, then root)
 *   mtls/client_cert     string or blob   the device certificate, PEM or DER
 *   mtls/client_key      string or blob   the device private key, PEM or DER (PKCS#8/SEC1)
 * A blob whose first byte is 0x30 (an ASN.1 SEQUENCE) is DER; `provision-keys generate/batch
 * --ca` writes DER. Anything else must be PEM text without NUL bytes.
 *
 * Precedence: development: NVS, then Kconfig (CONFIG_WIFI_*, CONFIG_MINITRAIN_*_PEM) with
 * MINITRAIN_* environment overrides; production: NVS only, except the CA certificate, which is
 * trust configuration compiled into the (secure-boot signed) firmware and may come from
 * Kconfig in both modes. The Kconfig Wi-Fi fallback does not exist in a production firmware
 * (compiled out under CONFIG_PRODUCTION_BUILD) and robot-sim never takes it in production.
 *
 * Slots: fkd_store_load reads the seed's items (slot A); fkd_store_load_rot reads the PSK and
 * the mtls key/certificate from the slot the rotation state machine (fkd/rot.h) says is in
 * use, and security/ota_pubkey from the class ota's committed slot (a staged OTA key is not
 * trusted for images until it is committed). The other credentials have one slot here.
 *
 * Memory: the struct lives in caller memory (about 14 KiB); no allocation. fkd_store_free
 * wipes every buffer. Thread safety: load once, then read-only use from any thread. */
#ifndef FKD_STORE_H
#define FKD_STORE_H

#include "fkd/common.h"
#include "fkd/config.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_nvs;

#define FKD_PSK_LEN 32u
#define FKD_PSK_ID_MAX 64u      /* identity characters, without the NUL */
#define FKD_OTA_KEY_MAX 600u    /* DER SubjectPublicKeyInfo (P-256: 91, RSA-3072: 422) */
#define FKD_PEM_MAX FKD_CFG_PEM_MAX

enum fkd_cred {
    FKD_CRED_DTLS_PSK,
    FKD_CRED_PSK_ID,
    FKD_CRED_OTA_PUBKEY,
    FKD_CRED_OTA_PUBKEY2,
    FKD_CRED_WIFI_SSID,
    FKD_CRED_WIFI_PASSWORD,
    FKD_CRED_CA_CERT,
    FKD_CRED_CLIENT_CERT,
    FKD_CRED_CLIENT_KEY,
    FKD_CRED_COUNT
};

enum fkd_cred_source {
    FKD_SRC_NONE = 0, /* absent */
    FKD_SRC_NVS,
    FKD_SRC_KCONFIG,
    FKD_SRC_ENV,
};

/* What the store knows about one credential; never the value. */
struct fkd_cred_info {
    enum fkd_cred_source source;
    size_t len;            /* bytes (strings: without the NUL) */
    int valid;             /* present and well-formed (PSK: exactly 32 bytes; OTA key: parses) */
    enum fkd_err nvs_error; /* FKD_OK, FKD_E_NOTFOUND, or why the NVS copy was unusable */
    char fpr[FKD_FPR_LEN]; /* fkd_fpr of the value, "" when absent */
};

/* Fields are private; they are here so the struct can live in caller memory. */
struct fkd_store {
    uint8_t psk[FKD_PSK_LEN * 2]; /* room to notice a wrong-length PSK */
    char psk_id[FKD_PSK_ID_MAX + 1];
    uint8_t ota_pubkey[FKD_OTA_KEY_MAX];
    uint8_t ota_pubkey2[FKD_OTA_KEY_MAX];
    char wifi_ssid[FKD_CFG_SSID_MAX];
    char wifi_password[FKD_CFG_WIFI_PASS_MAX];
    char ca_cert[FKD_PEM_MAX];
    char client_cert[FKD_PEM_MAX];
    char client_key[FKD_PEM_MAX];
    struct fkd_cred_info info[FKD_CRED_COUNT];
    int production;
    int loaded;
};

/* Empties the store. Cannot fail. */
void fkd_store_init(struct fkd_store *s);
/* Wipes every credential buffer. Safe after init, idempotent. */
void fkd_store_free(struct fkd_store *s);

/* Loads every credential: from nvs (may be NULL: no usable NVS), then, in a development build
 * (cfg->production_build == 0), the Kconfig/env fallback for what NVS lacked. cfg is only
 * read during the call. Logs one INFO line per credential: name, source and fingerprint, or
 * that it is absent. Missing credentials are not an error here (policy decides): returns
 * FKD_OK, or FKD_E_ARG. */
FKD_MUST_CHECK enum fkd_err fkd_store_load(struct fkd_store *s, struct fkd_nvs *nvs,
                                           const struct fkd_config *cfg);
/* The same, under credential rotation (fkd/rot.h; rot loaded from the same nvs, or NULL: as
 * fkd_store_load): security/dtls_psk and psk_id come from the psk class's active slot, the
 * mtls client key and certificate from the slot fkd_rot_slot_in_use names (the staged one
 * during a trial); slot B items carry the "_b" names. */
struct fkd_rot;
FKD_MUST_CHECK enum fkd_err fkd_store_load_rot(struct fkd_store *s, struct fkd_nvs *nvs,
                                               const struct fkd_config *cfg,
                                               const struct fkd_rot *rot);

/* Borrows a credential: *data points into s (valid until fkd_store_free), *len its length
 * (strings: without the NUL, and they are NUL-terminated). FKD_OK or FKD_E_NOTFOUND. */
FKD_MUST_CHECK enum fkd_err fkd_store_get(const struct fkd_store *s, enum fkd_cred id,
                                          const uint8_t **data, size_t *len);
/* Never NULL (s must be non-NULL, id in range; otherwise a static empty record). */
const struct fkd_cred_info *fkd_store_info(const struct fkd_store *s, enum fkd_cred id);

/* Convenience for the DTLS listener: the 32-byte PSK and its NUL-terminated identity. FKD_OK
 * only when both are valid; FKD_E_NOTFOUND otherwise (outputs untouched). */
FKD_MUST_CHECK enum fkd_err fkd_store_psk(const struct fkd_store *s, const uint8_t **psk,
                                          const char **identity);

/* DER structure checks for the mtls items; bounded, no allocation. The length of the DER
 * SEQUENCE (tag 0x30, definite length of at most 4 length bytes) at the start of (buf, len),
 * header included, or 0 when buf does not start with one that fits in len. */
size_t fkd_der_seq_len(const uint8_t *buf, size_t len);
/* How many DER SEQUENCEs lie back to back in (buf, len), filling it exactly; 0 when anything
 * is left over or malformed, or when there are more than max. */
size_t fkd_der_seq_count(const uint8_t *buf, size_t len, size_t max);
#define FKD_CA_CHAIN_MAX 4u /* certificates accepted in mtls/ca_cert (DER form) */

/* "security/dtls_psk", ...; and "none" / "nvs" / "kconfig" / "env". Never NULL. */
const char *fkd_cred_name(enum fkd_cred id);
const char *fkd_cred_source_name(enum fkd_cred_source src);

#ifdef __cplusplus
}
#endif
#endif
