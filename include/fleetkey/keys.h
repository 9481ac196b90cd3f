/* fleetkey keys: one device's secrets and identity, its manifest JSON and its NVS image.
 *
 * A device is identified by its Wi-Fi station MAC: device_id = "robot-" + the 12 upper-case
 * hex digits of the MAC (the seed's "robot-AABBCCDDEEFF"); a device without a known MAC gets
 * a random locally-administered unicast MAC. Minting a device draws a 32-byte DTLS PSK from
 * the OS-seeded DRBG and binds the device to an OTA signing key (P-256): either a fresh key
 * pair of its own (`provision-keys generate`) or the fleet key (`batch`, `--ota-key`).
 *
 * The manifest (docs/provision-keys.md) holds exactly the seed's fields in the seed's order,
 * then extra fields. Its NVS image (docs/nvs-layout.md) is the contract the firmware reads.
 *
 * Secrets (the PSK, private keys, NVS encryption keys, Wi-Fi password) are wiped when the
 * objects holding them are freed and are never logged; logs and the inventory carry fk_fpr()
 * fingerprints. Thread safety: distinct objects may be used from distinct threads; an
 * fk_ota_key may be shared read-only by several threads once loaded. */
#ifndef FLEETKEY_KEYS_H
#define FLEETKEY_KEYS_H

#include "fleetkey/common.h"
#include "fleetkey/nvs.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_MAC_LEN 6
#define FK_PSK_LEN 32
#define FK_DEVICE_ID_SIZE 19     /* "robot-" + 12 hex digits + NUL */
#define FK_OTA_PUB_DER_MAX 128   /* a P-256 SubjectPublicKeyInfo is 91 bytes */
#define FK_KEYS_NVS_SIZE 0x6000u /* default NVS partition size */
#define FK_MANIFEST_SCHEMA 1
#define FK_MANIFEST_MAX (64 * 1024) /* manifests larger than this are refused when read */
#define FK_KEYS_NAME_MAX 64         /* device display name (CSV `name`) */
#define FK_KEYS_SSID_MAX 32         /* 802.11 SSID */
#define FK_KEYS_WIFI_PASS_MAX 64    /* WPA2 passphrase (8..63) or 64 hex digits */
#define FK_KEYS_FILE_MAX 200        /* file names recorded in a manifest */
#define FK_KEYS_PSK_ID_MAX 64       /* psk_id read back from an image, with NUL */

/* ---- identity ----------------------------------------------------------------------- */

/* Parses a MAC address: six pairs of hex digits, upper or lower case, separated all by ':'
 * or all by '-' ("AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff"). Refused: other separators or a
 * mix, missing or extra digits, a group (multicast) address (bit 0 of the first byte), and
 * the all-zero and all-ones addresses, none of which a device's own interface can have.
 * diag->msg says what was expected. FK_OK or FK_E_PARSE. */
FK_MUST_CHECK enum fk_err fk_keys_mac_parse(const char *s, uint8_t mac[FK_MAC_LEN],
                                            struct fk_diag *diag);
/* "AA:BB:CC:DD:EE:FF" into out[18]. */
void fk_keys_mac_format(const uint8_t mac[FK_MAC_LEN], char out[18]);
/* A random locally-administered (bit 1 set) unicast (bit 0 clear) MAC. FK_OK, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_keys_mac_random(uint8_t mac[FK_MAC_LEN]);
/* "robot-" + 12 upper-case hex digits of mac into out[FK_DEVICE_ID_SIZE]. */
void fk_keys_device_id(const uint8_t mac[FK_MAC_LEN], char out[FK_DEVICE_ID_SIZE]);

/* ---- OTA signing key (P-256) ---------------------------------------------------------- */
struct fk_ota_key; /* opaque: an EVP_PKEY, with or without its private half */

/* A fresh P-256 key pair. FK_OK, FK_E_CRYPTO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_keys_ota_generate(struct fk_ota_key **out);
/* Loads a PEM private key (PKCS#8 or SEC1) or a PEM public key from path (at most 16 KiB).
 * Only P-256 keys are accepted. FK_OK, FK_E_IO, FK_E_TOOBIG, FK_E_PARSE, FK_E_UNSUPPORTED
 * (another curve or algorithm). */
FK_MUST_CHECK enum fk_err fk_keys_ota_load(const char *path, struct fk_ota_key **out,
                                           struct fk_diag *diag);
void fk_keys_ota_free(struct fk_ota_key *k);
/* The public key as DER SubjectPublicKeyInfo (91 bytes for P-256). FK_OK, FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_keys_ota_public_der(const struct fk_ota_key *k, uint8_t *out,
                                                 size_t out_size, size_t *out_len);
/* 1 when k holds a private key. */
int fk_keys_ota_has_private(const struct fk_ota_key *k);
/* Writes the private key as unencrypted PKCS#8 PEM to path with mode 0600 (atomically;
 * flags as fk_file_write_atomic). FK_OK, FK_E_STATE (public key only), FK_E_IO, FK_E_EXISTS,
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_keys_ota_write_pem(const struct fk_ota_key *k, const char *path,
                                                unsigned flags, struct fk_diag *diag);

/* ---- manifest ----------------------------------------------------------------------- */

/* A device manifest. A plain value: it holds the PSK, so wipe it with fk_keys_manifest_wipe
 * when done. Strings are NUL-terminated; "" means absent (JSON null or field left out). */
struct fk_manifest {
    /* the seed's fields, in its order */
    char device_id[FK_DEVICE_ID_SIZE];
    uint8_t psk[FK_PSK_LEN];                 /* psk_hex: SECRET */
    char psk_identity[FK_DEVICE_ID_SIZE];    /* = device_id */
    uint8_t ota_pub_der[FK_OTA_PUB_DER_MAX]; /* ota_public_key_der_hex */
    size_t ota_pub_der_len;
    int provisioned;         /* false until flashed */
    char provisioned_at[21]; /* RFC 3339 UTC, "" = null */
    /* extra fields, after the seed's */
    unsigned schema_version; /* FK_MANIFEST_SCHEMA */
    char mac[18];
    char name[FK_KEYS_NAME_MAX + 1];
    char wifi_ssid[FK_KEYS_SSID_MAX + 1]; /* the SSID in the image; the password never */
    char nvs_image[FK_KEYS_FILE_MAX];     /* file name, relative to the manifest's dir */
    char nvs_image_sha256[65];            /* of the file as written (encrypted if so) */
    unsigned nvs_size;
    int nvs_encrypted;
    char nvs_keys[FK_KEYS_FILE_MAX];        /* nvs_keys partition file, "" when plain */
    char ota_private_key[FK_KEYS_FILE_MAX]; /* the device's own PEM, "" with a fleet key */
    char psk_fingerprint[FK_FPR_LEN];       /* fk_fpr(psk) */
    char ota_key_fingerprint[FK_FPR_LEN];   /* fk_fpr(ota_pub_der) */
    char nvs_keys_fingerprint[FK_FPR_LEN];  /* fk_fpr(eky || tky), "" when plain */
    unsigned psk_version;
    unsigned ota_key_version;
    char created_at[21];
    /* mTLS identity (`--ca`), all "" without one; the private key is never in a manifest */
    char mtls_cert[FK_KEYS_FILE_MAX]; /* certificate PEM file name (0644) */
    char mtls_cert_fingerprint[72];   /* "sha256:" + 64 hex digits of the DER */
    char mtls_cert_serial[33];        /* lower-case hex, as the CA index records it */
    char mtls_cert_not_after[21];     /* RFC 3339 UTC */
};

void fk_keys_manifest_wipe(struct fk_manifest *m);
/* Renders m as JSON (pretty, 2-space indent, trailing newline) into a fresh malloc'd buffer
 * *out of *out_len bytes plus a NUL. The buffer holds the PSK: free it with
 * fk_free_secret(*out, *out_len + 1). FK_OK, FK_E_NOMEM, FK_E_ARG (m not well formed). */
FK_MUST_CHECK enum fk_err fk_keys_manifest_render(const struct fk_manifest *m, char **out,
                                                  size_t *out_len);
/* Parses a manifest from (buf, len) (cJSON_ParseWithLength; len at most FK_MANIFEST_MAX).
 * Every seed field is required with its JSON type; psk_hex must be 64 hex digits,
 * device_id "robot-" + 12 hex digits, psk_identity a non-empty string; extra fields are
 * optional but checked when present; unknown fields are ignored (newer writers). The parsed
 * tree's copy of the PSK is wiped before it is freed. diag names the field at fault.
 * FK_OK, FK_E_PARSE, FK_E_TOOBIG. */
FK_MUST_CHECK enum fk_err fk_keys_manifest_parse(const char *buf, size_t len,
                                                 struct fk_manifest *out, struct fk_diag *diag);
/* Reads (bounded by FK_MANIFEST_MAX) and parses the manifest at path. diag->file = path. */
FK_MUST_CHECK enum fk_err fk_keys_manifest_load(const char *path, struct fk_manifest *out,
                                                struct fk_diag *diag);

/* ---- NVS image ---------------------------------------------------------------------- */

/* A device's mTLS identity as it goes into the NVS image: DER blobs. Borrowed. */
#define FK_KEYS_MTLS_BLOB_MAX 4000u /* each blob; the device buffers hold 4096 bytes */
struct fk_keys_mtls {
    const uint8_t *cert_der; /* the device certificate */
    size_t cert_der_len;
    const uint8_t *key_der; /* its private key, PKCS#8: SECRET */
    size_t key_der_len;
    const uint8_t *ca_der; /* the CA chain: DER certificates back to back, issuing first,
                              then the root */
    size_t ca_der_len;
};

/* Builds the device's NVS image (docs/nvs-layout.md): namespace "security" with dtls_psk
 * (blob, 32 bytes), psk_id (string) and ota_pubkey (blob, DER); then, when wifi_ssid is
 * non-NULL, namespace "wifi" with ssid and password (strings; password may be "" for an open
 * network); then, when mtls is non-NULL, namespace "mtls" with ca_cert, client_cert and
 * client_key (blobs, DER). size is the partition size (0 = FK_KEYS_NVS_SIZE). With enc
 * non-NULL the image is encrypted with it (AES-256-XTS). out must hold size bytes. FK_OK,
 * FK_E_NOSPACE, FK_E_RANGE, FK_E_ARG, FK_E_NOMEM, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err
fk_keys_nvs_render(const struct fk_manifest *m, const char *wifi_ssid, const char *wifi_password,
                   const struct fk_keys_mtls *mtls, size_t size, const struct fk_nvs_keys *enc,
                   uint8_t *out, size_t out_size, size_t *out_len, struct fk_diag *diag);

/* Converts a PEM bundle of certificates (e.g. issuing + root) into their DER encodings back
 * to back, in the same order. *out is malloc'd (free()). FK_OK, FK_E_PARSE (no certificate
 * or a damaged one), FK_E_NOMEM. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_keys_pem_chain_to_der(const char *pem, uint8_t **out, size_t *out_len);

/* ---- minting a device ----------------------------------------------------------------- */

struct fk_keys_mint_opts {
    const uint8_t *mac;           /* FK_MAC_LEN bytes, or NULL for a random LAA MAC */
    const char *name;             /* optional display name (CSV `name`) */
    const char *wifi_ssid;        /* optional; with it, wifi_password (may be "") */
    const char *wifi_password;    /* SECRET: copied and wiped on free */
    const struct fk_ota_key *ota; /* the fleet key the device trusts (public half used), or
                                     NULL: mint a key pair of the device's own */
    int encrypt_nvs;              /* encrypted image + nvs_keys partition image */
    size_t nvs_size;              /* 0 = FK_KEYS_NVS_SIZE */
    unsigned version;             /* psk_version / ota_key_version to record, 0 = 1 */
    /* An mTLS identity issued by the caller (pki: fk_pki_issue_device) or NULL. Its blobs go
     * into the image (the key only there: it is copied nowhere else and the image buffer is
     * wiped on free); cert_pem, fingerprint, serial and not_after go to base.crt.pem and the
     * manifest. Borrowed for the call. */
    const struct fk_keys_mtls *mtls;
    const char *mtls_cert_pem;
    const char *mtls_fingerprint; /* "sha256:<64 hex>" */
    const char *mtls_serial;      /* hex */
    int64_t mtls_not_after;       /* Unix seconds */
};

struct fk_minted; /* opaque: everything one device needs, in memory until written */

/* Mints one device: PSK, OTA binding, NVS image (and keys), manifest. *out is owned by the
 * caller (fk_keys_minted_free). FK_OK, FK_E_ARG, FK_E_RANGE (SSID/password/name too long),
 * FK_E_CRYPTO, FK_E_NOMEM, FK_E_NOSPACE. Thread-safe (opts->ota may be shared). */
FK_MUST_CHECK enum fk_err fk_keys_mint(const struct fk_keys_mint_opts *opts, struct fk_minted **out,
                                       struct fk_diag *diag);
/* Wipes every secret and frees. NULL is a no-op. */
void fk_keys_minted_free(struct fk_minted *d);
/* The manifest (file names and hashes are filled in by fk_keys_minted_write). Borrowed. */
const struct fk_manifest *fk_keys_minted_manifest(const struct fk_minted *d);

/* Writes the device's files into dir, named base + suffix:
 *   base.nvs.bin (0600), base.nvs_keys.bin (0600, encrypted only), base.key.pem (0600, own
 *   key only), base.crt.pem (0644, the mTLS certificate, with an mTLS identity only; its key
 *   is in the image and nowhere else), then base.json (0600: it holds the PSK) last.
 * A stale base.nvs_keys.bin / base.key.pem that this device does not have is removed, so a
 * redone device never keeps another run's files. flags as fk_file_write_atomic
 * (FK_WRITE_NOSYNC when the caller syncs a whole chunk). On return *manifest_sha256 (65
 * bytes, may be NULL) is the SHA-256 of the manifest file. FK_OK, FK_E_IO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_keys_minted_write(struct fk_minted *d, const char *dir,
                                               const char *base, unsigned flags,
                                               char manifest_sha256[65], struct fk_diag *diag);
/* The same files, staged into stage (fk_file_stage_write) instead of written: they are in
 * place only after fk_file_stage_flush and durable only after the directory's fsync that
 * follows it. Stale files are NOT removed here: the caller removes the base.nvs_keys.bin /
 * base.key.pem / base.crt.pem this device will not have before staging it (batch does it
 * for all its devices with one directory scan instead of two lookups per device). */
FK_MUST_CHECK enum fk_err fk_keys_minted_stage(struct fk_minted *d, const char *dir,
                                               const char *base, struct fk_file_stage *stage,
                                               char manifest_sha256[65], struct fk_diag *diag);

/* SHA-256 of a buffer in lower-case hex (out[65]). */
void fk_keys_sha256_hex(const void *buf, size_t len, char out[65]);

/* Reads blob ns/key from a plain (decrypted) image into out (at most out_size bytes),
 * checking every CRC. FK_OK, FK_E_NOTFOUND, FK_E_NOSPACE, FK_E_CRC, FK_E_PARSE. */
FK_MUST_CHECK enum fk_err fk_keys_nvs_read_blob(const uint8_t *img, size_t len, const char *ns,
                                                const char *key, uint8_t *out, size_t out_size,
                                                size_t *out_len, struct fk_diag *diag);

/* Extracts security/dtls_psk, security/psk_id and security/ota_pubkey from a device image
 * (decrypting a copy first when enc is non-NULL), checking every CRC on the way; used to
 * check that a device's image and its manifest agree. psk is SECRET. FK_OK, FK_E_NOTFOUND
 * (a key is missing), FK_E_CRC, FK_E_PARSE, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err
fk_keys_nvs_extract(const uint8_t *img, size_t len, const struct fk_nvs_keys *enc,
                    uint8_t psk[FK_PSK_LEN], char psk_id[FK_KEYS_PSK_ID_MAX], uint8_t *der,
                    size_t der_size, size_t *der_len, struct fk_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
