/* Device identity and OTA signing keys: the key types everything else in fleetkey/keys.h is
 * built on. Nothing here knows the manifest (manifest.c) or minting (mint.c): they depend on
 * this file, not the other way round.
 *
 * The fleet OTA key is shared read-only by worker threads, so its public DER is encoded once
 * at load/generation time and copied afterwards; no OpenSSL object is touched by two threads
 * at once. */
#include "fleetkey/keys.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- identity ----------------------------------------------------------------------- */

static int hex_val(char c) {
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

enum fk_err fk_keys_mac_parse(const char *s, uint8_t mac[FK_MAC_LEN], struct fk_diag *diag) {
    static const char expect[] = "expected AA:BB:CC:DD:EE:FF (hex pairs separated by ':' or '-')";
    if (s == NULL || strlen(s) != 17) {
        return fk_diag_set(diag, FK_E_PARSE, "%s", expect);
    }
    char sep = s[2];
    if (sep != ':' && sep != '-') {
        return fk_diag_set(diag, FK_E_PARSE, "%s", expect);
    }
    uint8_t tmp[FK_MAC_LEN];
    for (int i = 0; i < FK_MAC_LEN; i++) {
        const char *p = s + 3 * i;
        int hi = hex_val(p[0]);
        int lo = hex_val(p[1]);
        if (hi < 0 || lo < 0 || (i < FK_MAC_LEN - 1 && p[2] != sep)) {
            return fk_diag_set(diag, FK_E_PARSE, "%s", expect);
        }
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    if (tmp[0] & 1u) {
        return fk_diag_set(diag, FK_E_PARSE,
                           "expected a unicast MAC (first byte even), got a multicast address");
    }
    int zero = 1;
    for (int i = 0; i < FK_MAC_LEN; i++) {
        zero &= tmp[i] == 0;
    }
    if (zero) {
        return fk_diag_set(diag, FK_E_PARSE, "expected a device MAC, got 00:00:00:00:00:00");
    }
    memcpy(mac, tmp, FK_MAC_LEN);
    return FK_OK;
}

void fk_keys_mac_format(const uint8_t mac[FK_MAC_LEN], char out[18]) {
    snprintf(out, 18, "%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
}

enum fk_err fk_keys_mac_random(uint8_t mac[FK_MAC_LEN]) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_GUARD(fk_random(mac, FK_MAC_LEN));
    /* IEEE 802: bit 1 of the first octet = locally administered, bit 0 = group. A made-up
     * address must never collide with a vendor's (universal) one, nor be multicast. */
    mac[0] = (uint8_t)((mac[0] | 0x02u) & ~0x01u);
    rc = FK_OK;
out:
    return rc;
}

void fk_keys_device_id(const uint8_t mac[FK_MAC_LEN], char out[FK_DEVICE_ID_SIZE]) {
    snprintf(out, FK_DEVICE_ID_SIZE, "robot-%02X%02X%02X%02X%02X%02X", mac[0], mac[1], mac[2],
             mac[3], mac[4], mac[5]);
}

void fk_keys_sha256_hex(const void *buf, size_t len, char out[65]) {
    uint8_t d[32];
    if (fk_sha256(buf, len, d) != 0 || fk_hex_encode(d, sizeof d, out, 65) != FK_OK) {
        out[0] = '\0'; /* only on allocation failure inside OpenSSL */
    }
}

/* ---- OTA key ------------------------------------------------------------------------ */

struct fk_ota_key {
    EVP_PKEY *pkey;
    int has_private;
    uint8_t der[FK_OTA_PUB_DER_MAX];
    size_t der_len;
};

static enum fk_err ota_wrap(EVP_PKEY *pkey, int has_private, struct fk_ota_key **out,
                            struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_key *k = NULL;
    char group[32] = "";
    size_t glen = 0;
    FK_ENSURE(EVP_PKEY_is_a(pkey, "EC"),
              fk_diag_set(diag, FK_E_UNSUPPORTED, "OTA key must be ECDSA P-256"));
    FK_ENSURE(EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                             &glen) == 1 &&
                  strcmp(group, "prime256v1") == 0,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "OTA key must be on P-256, not %s",
                          group[0] != '\0' ? group : "an unknown curve"));
    k = calloc(1, sizeof *k);
    FK_ENSURE(k != NULL, FK_E_NOMEM);
    int n = i2d_PUBKEY(pkey, NULL);
    FK_ENSURE(n > 0 && (size_t)n <= sizeof k->der, FK_E_CRYPTO);
    unsigned char *p = k->der;
    FK_ENSURE(i2d_PUBKEY(pkey, &p) == n, FK_E_CRYPTO);
    k->der_len = (size_t)n;
    k->pkey = pkey;
    k->has_private = has_private;
    *out = k;
    k = NULL;
    rc = FK_OK;
out:
    free(k);
    return rc;
}

enum fk_err fk_keys_ota_generate(struct fk_ota_key **out) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    FK_ENSURE(pkey != NULL, FK_E_CRYPTO);
    FK_GUARD(ota_wrap(pkey, 1, out, NULL));
    pkey = NULL;
    rc = FK_OK;
out:
    EVP_PKEY_free(pkey);
    return rc;
}

enum fk_err fk_keys_ota_load(const char *path, struct fk_ota_key **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    int priv = 1;
    FK_GUARD(fk_file_read(path, 16 * 1024, &buf, &len, diag));
    FK_ENSURE(len <= INT32_MAX, FK_E_TOOBIG);
    bio = BIO_new_mem_buf(buf, (int)len);
    FK_ENSURE(bio != NULL, FK_E_NOMEM);
    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (pkey == NULL) {
        priv = 0;
        BIO_free(bio);
        bio = BIO_new_mem_buf(buf, (int)len);
        FK_ENSURE(bio != NULL, FK_E_NOMEM);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    FK_ENSURE(pkey != NULL,
              fk_diag_at(diag, FK_E_PARSE, path, 0, "expected a PEM P-256 private or public key"));
    struct fk_diag why;
    fk_diag_init(&why);
    rc = ota_wrap(pkey, priv, out, &why);
    FK_ENSURE(rc == FK_OK, fk_diag_at(diag, rc, path, 0, "%s", why.msg));
    pkey = NULL;
    rc = FK_OK;
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    fk_free_secret(buf, len);
    return rc;
}

void fk_keys_ota_free(struct fk_ota_key *k) {
    if (k == NULL) {
        return;
    }
    EVP_PKEY_free(k->pkey); /* OpenSSL clears private key material on free */
    free(k);
}

enum fk_err fk_keys_ota_public_der(const struct fk_ota_key *k, uint8_t *out, size_t out_size,
                                   size_t *out_len) {
    if (out_size < k->der_len) {
        return FK_E_NOSPACE;
    }
    memcpy(out, k->der, k->der_len);
    *out_len = k->der_len;
    return FK_OK;
}

int fk_keys_ota_has_private(const struct fk_ota_key *k) {
    return k != NULL && k->has_private;
}

enum fk_err fk_keys_ota_write_pem(const struct fk_ota_key *k, const char *path, unsigned flags,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *bio = NULL;
    BUF_MEM *mem = NULL;
    FK_ENSURE(k->has_private, fk_diag_at(diag, FK_E_STATE, path, 0, "no private key to write"));
    bio = BIO_new(BIO_s_secmem());
    FK_ENSURE(bio != NULL, FK_E_NOMEM);
    /* PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted: the file's 0600 mode and the machine's
     * custody are its protection, as in the seed's workflow. */
    FK_GUARD_OSSL(PEM_write_bio_PKCS8PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL),
                  FK_E_CRYPTO);
    FK_ENSURE(BIO_get_mem_ptr(bio, &mem) == 1 && mem != NULL, FK_E_CRYPTO);
    FK_GUARD(fk_file_write_atomic(path, mem->data, mem->length, 0600, flags, diag));
    rc = FK_OK;
out:
    BIO_free(bio); /* secure-heap BIO: its buffer is cleansed on free */
    return rc;
}

enum fk_err fk_keys_pem_chain_to_der(const char *pem, uint8_t **out, size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *bio = NULL;
    X509 *x = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    size_t n_certs = 0;
    size_t pem_len = strlen(pem);
    FK_ENSURE(pem_len <= INT32_MAX, FK_E_TOOBIG);
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    FK_ENSURE(bio != NULL, FK_E_NOMEM);
    /* DER is never longer than the PEM that encodes it, so one buffer of that size holds the
     * whole chain. */
    buf = malloc(pem_len + 1);
    FK_ENSURE(buf != NULL, FK_E_NOMEM);
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int n = i2d_X509(x, NULL);
        FK_ENSURE(n > 0 && (size_t)n <= pem_len - len, FK_E_PARSE);
        unsigned char *p = buf + len;
        FK_ENSURE(i2d_X509(x, &p) == n, FK_E_CRYPTO);
        len += (size_t)n;
        n_certs++;
        X509_free(x);
        x = NULL;
    }
    ERR_clear_error(); /* the end of input is reported as an error */
    FK_ENSURE(n_certs > 0, FK_E_PARSE);
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = FK_OK;
out:
    X509_free(x);
    BIO_free(bio);
    free(buf);
    return rc;
}
