/* NVS encryption (ESP-IDF "NVS Encryption"): AES-256-XTS over each 32-byte entry, the data
 * unit being the entry and the tweak its byte offset in the partition (16 bytes,
 * little-endian). Page headers and entry-state bitmaps stay plain, and so do entries the
 * bitmap marks empty: the generator encrypts exactly the entries it writes, so encrypting
 * the written entries of its plain image gives its encrypted image.
 *
 * The keys live in the nvs_keys partition: eky[32] || tky[32] || CRC32 || 0xFF... (4096 B),
 * CRC = crc32_le(0xFFFFFFFF, eky || tky). OpenSSL's XTS key is key1 || key2 with key1 the
 * data key and key2 the tweak key, which is eky || tky as stored. */
#include "fleetkey/nvs.h"

#include "fkd/nvs_format.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

enum fk_err fk_nvs_keys_generate(struct fk_nvs_keys *k) {
    enum fk_err rc = FK_E_INTERNAL;
    if (k == NULL) {
        return FK_E_ARG;
    }
    /* XTS needs two independent keys; OpenSSL refuses eky == tky, so draw again on the
     * (2^-256) chance they collide. */
    do {
        FK_GUARD(fk_random(k->eky, sizeof k->eky));
        FK_GUARD(fk_random(k->tky, sizeof k->tky));
    } while (fk_ct_equal(k->eky, k->tky, sizeof k->eky));
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        fk_wipe(k, sizeof *k);
    }
    return rc;
}

void fk_nvs_keys_encode(const struct fk_nvs_keys *k, uint8_t out[FK_NVS_KEYS_SIZE]) {
    memset(out, 0xFF, FK_NVS_KEYS_SIZE);
    memcpy(out, k->eky, FK_NVS_KEY_LEN);
    memcpy(out + FK_NVS_KEY_LEN, k->tky, FK_NVS_KEY_LEN);
    fk_store_le32(out + 2 * FK_NVS_KEY_LEN, fk_crc32_le(0xFFFFFFFFu, out, 2 * FK_NVS_KEY_LEN));
}

enum fk_err fk_nvs_keys_parse(const uint8_t *buf, size_t len, struct fk_nvs_keys *k,
                              struct fk_diag *diag) {
    if (buf == NULL || k == NULL) {
        return FK_E_ARG;
    }
    if (len < 2 * FK_NVS_KEY_LEN + 4) {
        return fk_diag_set(diag, FK_E_TRUNCATED,
                           "key file is %zu bytes; an nvs_keys image holds at least %u", len,
                           2 * FK_NVS_KEY_LEN + 4);
    }
    uint32_t stored = fk_load_le32(buf + 2 * FK_NVS_KEY_LEN);
    uint32_t computed = fk_crc32_le(0xFFFFFFFFu, buf, 2 * FK_NVS_KEY_LEN);
    if (stored != computed) {
        if (diag != NULL) {
            diag->offset = 2 * FK_NVS_KEY_LEN;
        }
        return fk_diag_set(diag, FK_E_CRC,
                           "bad key file CRC: stored 0x%08x, computed 0x%08x (not an nvs_keys "
                           "image, or damaged)",
                           stored, computed);
    }
    /* XTS with key1 == key2 is refused by OpenSSL (and Python's cryptography): say so here
     * rather than fail later with a bare crypto error. */
    if (fk_ct_equal(buf, buf + FK_NVS_KEY_LEN, FK_NVS_KEY_LEN)) {
        return fk_diag_set(diag, FK_E_CRYPTO,
                           "key file holds the same key twice (eky == tky); AES-XTS needs two "
                           "different keys");
    }
    memcpy(k->eky, buf, FK_NVS_KEY_LEN);
    memcpy(k->tky, buf + FK_NVS_KEY_LEN, FK_NVS_KEY_LEN);
    return FK_OK;
}

static enum fk_err xts(uint8_t *img, size_t len, const struct fk_nvs_keys *k, int enc) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t key[2 * FK_NVS_KEY_LEN];
    if (img == NULL || k == NULL || len % FKD_NVS_PAGE_SIZE != 0) {
        return FK_E_ARG;
    }
    memcpy(key, k->eky, FK_NVS_KEY_LEN);
    memcpy(key + FK_NVS_KEY_LEN, k->tky, FK_NVS_KEY_LEN);
    ctx = EVP_CIPHER_CTX_new();
    FK_ENSURE(ctx != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_CipherInit_ex(ctx, EVP_aes_256_xts(), NULL, key, NULL, enc), FK_E_CRYPTO);
    for (size_t p = 0; p < len; p += FKD_NVS_PAGE_SIZE) {
        const uint8_t *bitmap = img + p + FKD_NVS_BITMAP_OFFSET;
        for (unsigned i = 0; i < FKD_NVS_ENTRY_COUNT; i++) {
            if (fkd_nvs_bitmap_get(bitmap, i) == FKD_NVS_ENTRY_EMPTY) {
                continue;
            }
            size_t off = p + FKD_NVS_ENTRIES_OFFSET + (size_t)i * FKD_NVS_ENTRY_SIZE;
            uint8_t tweak[16];
            memset(tweak, 0, sizeof tweak);
            for (unsigned j = 0; j < 8; j++) {
                tweak[j] = (uint8_t)((uint64_t)off >> (8 * j));
            }
            int outl = 0;
            uint8_t *e = img + off;
            FK_GUARD_OSSL(EVP_CipherInit_ex(ctx, NULL, NULL, NULL, tweak, enc), FK_E_CRYPTO);
            FK_GUARD_OSSL(EVP_CipherUpdate(ctx, e, &outl, e, (int)FKD_NVS_ENTRY_SIZE),
                          FK_E_CRYPTO);
            FK_ENSURE(outl == (int)FKD_NVS_ENTRY_SIZE, FK_E_CRYPTO);
        }
    }
    rc = FK_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    fk_wipe(key, sizeof key);
    return rc;
}

enum fk_err fk_nvs_encrypt(uint8_t *img, size_t len, const struct fk_nvs_keys *k) {
    return xts(img, len, k, 1);
}

enum fk_err fk_nvs_decrypt(uint8_t *img, size_t len, const struct fk_nvs_keys *k) {
    return xts(img, len, k, 0);
}
