/* Secure Boot V2 signature sectors: parse, sign, append, verify.
 *
 * Layout (ESP-IDF "Secure Boot v2" guide, espsecure sign_secure_boot_v2):
 *   signed data, padded with 0xFF to a multiple of 4096 |
 *   4096-byte sector: block 0 | block 1 | block 2 (1216 bytes each, absent = 0xFF) | 0xFF fill
 * Block: magic 0xE7, version (0x02 RSA-PSS, 0x03 ECDSA), for ECDSA a SHA version byte (0
 * SHA-256, 1 SHA-384), a reserved byte, the digest of the signed data, the key fields, the
 * signature, zeros up to byte 1196, the CRC-32 of bytes 0..1195 (little-endian), 16 zero bytes.
 *
 * Verification follows espsecure verify-signature (every slot, invalid ones skipped, a digest
 * mismatch is fatal) and adds the bootloader's key check: a block counts only when the key it
 * carries hashes to a trusted key's digest, as the ROM compares it with the eFuse digests.
 * It is also stricter than both, on purpose: a slot that is neither erased nor well formed
 * fails verification instead of being skipped, and the bytes no CRC or signature covers (the
 * 16 bytes after each CRC, the sector fill after the third slot) must be exactly what
 * espsecure writes. So any change to a signed file is detected, and a signed release has one
 * byte representation whose file hash can identify it. */
#include "ota_internal.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS_END (FK_OTA_SIG_BLOCKS_MAX * FK_OTA_SIG_BLOCK_SIZE) /* 3648 */

static int all_bytes(const uint8_t *p, size_t n, uint8_t v) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] != v) {
            return 0;
        }
    }
    return 1;
}

static void parse_block(const uint8_t *raw, struct fk_ota_sig_block *b) {
    memset(b, 0, sizeof *b);
    b->raw = raw;
    b->why = "";
    if (all_bytes(raw, FK_OTA_SIG_BLOCK_SIZE, 0xFF)) {
        b->state = FK_OTA_BLOCK_ABSENT;
        return;
    }
    b->state = FK_OTA_BLOCK_INVALID;
    b->crc = fk_load_le32(raw + FK_OTA_SIG_BLOCK_CRC_LEN);
    /* "SIG_BLOCK_MAGIC = 0xE7" */
    if (raw[0] != FK_OTA_SIG_MAGIC) {
        b->why = "bad magic (expected 0xe7)";
        return;
    }
    /* validate_signature_block: calc_crc = zlib.crc32(sig_blk[:1196]) */
    if (fk_crc32_le(0, raw, FK_OTA_SIG_BLOCK_CRC_LEN) != b->crc) {
        b->why = "bad CRC";
        return;
    }
    if (raw[1] == FK_OTA_SIG_VERSION_RSA) {
        b->scheme = FK_OTA_SCHEME_RSA3072;
    } else if (raw[1] == FK_OTA_SIG_VERSION_ECDSA) {
        /* ECDSA: byte 2 says the digest (0 SHA-256, 1 SHA-384); the curve id follows the
         * digest, and the two must agree (P-384 uses SHA-384, P-192/P-256 SHA-256). */
        if (raw[2] == 0 && raw[36] == 1) {
            b->scheme = FK_OTA_SCHEME_ECDSA_P192;
        } else if (raw[2] == 0 && raw[36] == 2) {
            b->scheme = FK_OTA_SCHEME_ECDSA_P256;
        } else if (raw[2] == 1 && raw[52] == 3) {
            b->scheme = FK_OTA_SCHEME_ECDSA_P384;
        } else {
            b->why = "ECDSA block with an unknown curve/digest combination";
            return;
        }
    } else {
        b->why = "unknown block version (expected 0x02 RSA or 0x03 ECDSA)";
        return;
    }
    if (!all_bytes(raw + FK_OTA_SIG_BLOCK_CRC_LEN + 4, 16, 0x00)) {
        b->scheme = FK_OTA_SCHEME_NONE;
        b->why = "padding after the CRC is not zero";
        return;
    }
    const struct fk_ota_layout *l = fk_ota_layout_of(b->scheme);
    b->state = FK_OTA_BLOCK_VALID;
    b->image_digest = raw + 4;
    b->digest_len = l->digest_len;
    b->key = raw + l->key_off;
    b->key_len = l->key_len;
    b->sig = raw + l->sig_off;
    b->sig_len = l->sig_len;
}

enum fk_err fk_ota_sig_sector_parse(const uint8_t *buf, size_t len, struct fk_ota_sig_sector *out,
                                    struct fk_diag *diag) {
    memset(out, 0, sizeof *out);
    /* espsecure: "Invalid datafile. Data size should be non-zero & a multiple of 4096." */
    if (buf == NULL || len == 0 || len % FK_OTA_SECTOR_SIZE != 0) {
        return fk_diag_set(diag, FK_E_PARSE,
                           "signed image is %zu bytes, expected a non-zero multiple of 4096 "
                           "(data padded to 4 KiB plus a 4 KiB signature sector)",
                           len);
    }
    out->signed_len = len - FK_OTA_SECTOR_SIZE;
    out->sector = buf + out->signed_len;
    int leading = 1;
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        parse_block(out->sector + i * FK_OTA_SIG_BLOCK_SIZE, &out->blocks[i]);
        if (out->blocks[i].state == FK_OTA_BLOCK_VALID) {
            out->valid_blocks++;
            if (leading) {
                out->leading_valid++;
            }
        } else {
            leading = 0;
        }
    }
    return FK_OK;
}

size_t fk_ota_signed_size(size_t len) {
    size_t pad = (FK_OTA_SECTOR_SIZE - len % FK_OTA_SECTOR_SIZE) % FK_OTA_SECTOR_SIZE;
    if (len > SIZE_MAX - pad - FK_OTA_SECTOR_SIZE) {
        return 0;
    }
    return len + pad + FK_OTA_SECTOR_SIZE;
}

/* SHA-256 and (when needed) SHA-384 of the signed data, each computed once. */
struct digests {
    uint8_t sha256[32];
    uint8_t sha384[48];
    int have256, have384;
};

static enum fk_err digest_for(struct digests *d, const uint8_t *data, size_t len, size_t dlen,
                              const uint8_t **out) {
    unsigned n = 0;
    if (dlen == 32) {
        if (!d->have256) {
            if (EVP_Digest(data, len, d->sha256, &n, EVP_sha256(), NULL) != 1) {
                return FK_E_CRYPTO;
            }
            d->have256 = 1;
        }
        *out = d->sha256;
        return FK_OK;
    }
    if (!d->have384) {
        if (EVP_Digest(data, len, d->sha384, &n, EVP_sha384(), NULL) != 1) {
            return FK_E_CRYPTO;
        }
        d->have384 = 1;
    }
    *out = d->sha384;
    return FK_OK;
}

/* Writes one complete block for key into blk (1216 bytes), signing the data digest. The new
 * signature is checked with the public key before it is accepted, so a faulty signer (an HSM
 * glitch, a fault attack on the host) cannot produce a release that bricks an update. */
static enum fk_err make_block(const struct fk_ota_key *key, struct digests *dg, const uint8_t *data,
                              size_t len, uint8_t *blk, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    const struct fk_ota_layout *l = fk_ota_layout_of(key->scheme);
    const uint8_t *digest = NULL;

    FK_ENSURE(l != NULL, FK_E_ARG);
    FK_GUARD(digest_for(dg, data, len, l->digest_len, &digest));
    memset(blk, 0, FK_OTA_SIG_BLOCK_SIZE);
    blk[0] = FK_OTA_SIG_MAGIC;
    blk[1] = l->version;
    blk[2] = l->sha_version; /* 0 for RSA: a reserved byte there */
    memcpy(blk + 4, digest, l->digest_len);
    memcpy(blk + l->key_off, key->enc, key->enc_len);
    rc = fk_ota_sign_digest(key, digest, l->digest_len, blk + l->sig_off);
    if (rc != FK_OK) {
        fk_diag_set(diag, rc, "%s: signing failed (%s)", key->name, fk_strerror(rc));
        goto out;
    }
    rc = fk_ota_verify_digest(key->pub, key->scheme, digest, l->digest_len, blk + l->sig_off);
    if (rc != FK_OK) {
        fk_diag_set(diag, FK_E_CRYPTO, "%s: the new signature does not verify; not written",
                    key->name);
        rc = FK_E_CRYPTO;
        goto out;
    }
    /* "signature_block += struct.pack("<I", zlib.crc32(signature_block))" then 16 zeros. */
    fk_store_le32(blk + FK_OTA_SIG_BLOCK_CRC_LEN, fk_crc32_le(0, blk, FK_OTA_SIG_BLOCK_CRC_LEN));
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err check_keys(struct fk_ota_key *const *keys, size_t nkeys, size_t room,
                              struct fk_diag *diag) {
    if (keys == NULL || nkeys == 0) {
        return fk_diag_set(diag, FK_E_ARG, "no signing key given");
    }
    if (nkeys > room) {
        return fk_diag_set(diag, FK_E_NOSPACE,
                           "%zu signing keys but only %zu free signature block(s) (a sector "
                           "holds %u)",
                           nkeys, room, FK_OTA_SIG_BLOCKS_MAX);
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (keys[i] == NULL || !keys[i]->is_private) {
            return fk_diag_set(diag, FK_E_ARG, "%s: signing needs a private key",
                               keys[i] != NULL ? keys[i]->name : "key");
        }
    }
    return FK_OK;
}

enum fk_err fk_ota_sign(const uint8_t *data, size_t len, struct fk_ota_key *const *keys,
                        size_t nkeys, uint8_t *out, size_t out_size, size_t *out_len,
                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct digests dg;
    size_t total = fk_ota_signed_size(len);

    memset(&dg, 0, sizeof dg);
    FK_ENSURE(data != NULL || len == 0, FK_E_ARG);
    FK_GUARD(check_keys(keys, nkeys, FK_OTA_SIG_BLOCKS_MAX, diag));
    FK_ENSURE(total != 0, FK_E_TOOBIG);
    FK_ENSURE(out != NULL && out_size >= total, FK_E_NOSPACE);
    size_t signed_len = total - FK_OTA_SECTOR_SIZE;
    if (len > 0 && out != data) {
        memmove(out, data, len);
    }
    /* "contents += b"\xff" * pad_by" so the signature sector starts on a 4 KiB boundary. */
    memset(out + len, 0xFF, total - len);
    uint8_t *sector = out + signed_len;
    for (size_t i = 0; i < nkeys; i++) {
        FK_GUARD(
            make_block(keys[i], &dg, out, signed_len, sector + i * FK_OTA_SIG_BLOCK_SIZE, diag));
    }
    *out_len = total;
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_ota_sign_append(const uint8_t *signed_img, size_t len,
                               struct fk_ota_key *const *keys, size_t nkeys, uint8_t *out,
                               size_t out_size, size_t *out_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_sig_sector sec;
    struct digests dg;

    memset(&dg, 0, sizeof dg);
    FK_GUARD(fk_ota_sig_sector_parse(signed_img, len, &sec, diag));
    if (sec.leading_valid == 0) {
        rc = fk_diag_set(diag, FK_E_PARSE,
                         "no valid signature block 0 (%s): not a signed image, sign it first",
                         sec.blocks[0].state == FK_OTA_BLOCK_ABSENT ? "absent" : sec.blocks[0].why);
        goto out;
    }
    /* Appending to an image whose data no longer matches its blocks would produce a file
     * that looks dual-signed but fails on every device. */
    for (unsigned i = 0; i < sec.leading_valid; i++) {
        const struct fk_ota_sig_block *b = &sec.blocks[i];
        const uint8_t *digest = NULL;
        FK_GUARD(digest_for(&dg, signed_img, sec.signed_len, b->digest_len, &digest));
        if (memcmp(digest, b->image_digest, b->digest_len) != 0) {
            rc = fk_diag_set(diag, FK_E_MISMATCH,
                             "signature block %u: image digest does not match the data (the "
                             "image was changed after signing)",
                             i);
            goto out;
        }
    }
    FK_GUARD(check_keys(keys, nkeys, FK_OTA_SIG_BLOCKS_MAX - sec.leading_valid, diag));
    FK_ENSURE(out != NULL && out_size >= len, FK_E_NOSPACE);
    if (out != signed_img) {
        memmove(out, signed_img, len);
    }
    uint8_t *sector = out + sec.signed_len;
    size_t keep = sec.leading_valid * FK_OTA_SIG_BLOCK_SIZE;
    /* Existing blocks stay byte for byte; everything after them is rewritten. */
    memset(sector + keep, 0xFF, FK_OTA_SECTOR_SIZE - keep);
    for (size_t i = 0; i < nkeys; i++) {
        FK_GUARD(make_block(keys[i], &dg, out, sec.signed_len,
                            sector + keep + i * FK_OTA_SIG_BLOCK_SIZE, diag));
    }
    *out_len = len;
    rc = FK_OK;
out:
    return rc;
}

void fk_ota_block_key_digest(const struct fk_ota_sig_block *blk,
                             uint8_t out[FK_OTA_KEY_DIGEST_LEN]) {
    unsigned n = 0;
    /* signature_info_v2: sha256(sig_blk[36:812]) for RSA, [36:101] or [52:149] for ECDSA. */
    if (blk->state != FK_OTA_BLOCK_VALID ||
        EVP_Digest(blk->key, blk->key_len, out, &n, EVP_sha256(), NULL) != 1) {
        memset(out, 0, FK_OTA_KEY_DIGEST_LEN);
    }
}

static const char *verdict_text(enum fk_ota_verdict v) {
    switch (v) {
    case FK_OTA_V_ABSENT:
        return "absent";
    case FK_OTA_V_INVALID:
        return "invalid";
    case FK_OTA_V_UNTRUSTED:
        return "signed by a key that is not trusted";
    case FK_OTA_V_BAD_SIG:
        return "key trusted but the signature does not verify";
    case FK_OTA_V_OK:
        return "verified";
    }
    return "?";
}

enum fk_err fk_ota_verify(const uint8_t *buf, size_t len, struct fk_ota_key *const *trusted,
                          size_t ntrusted, struct fk_ota_verify_result *res, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_sig_sector sec;
    struct fk_ota_verify_result local;
    struct digests dg;

    memset(&dg, 0, sizeof dg);
    if (res == NULL) {
        res = &local;
    }
    res->block = -1;
    res->key = -1;
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        res->verdict[i] = FK_OTA_V_ABSENT;
        res->key_of[i] = -1;
    }
    if (trusted == NULL || ntrusted == 0) {
        return fk_diag_set(diag, FK_E_ARG, "no trusted public key given");
    }
    FK_GUARD(fk_ota_sig_sector_parse(buf, len, &sec, diag));
    if (!all_bytes(sec.sector + SLOTS_END, FK_OTA_SECTOR_SIZE - SLOTS_END, 0xFF)) {
        rc = fk_diag_set(diag, FK_E_PARSE,
                         "signature sector: bytes after the third block are not 0xff (the "
                         "file was changed after signing)");
        goto out;
    }
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        if (sec.blocks[i].state == FK_OTA_BLOCK_INVALID) {
            res->verdict[i] = FK_OTA_V_INVALID;
            rc = fk_diag_set(diag, FK_E_PARSE,
                             "signature block %u is damaged (%s): the signature sector was "
                             "changed after signing",
                             i, sec.blocks[i].why);
            goto out;
        }
    }
    /* Pass 1, the fatal check: "Signature block image digest does not match the actual image
     * digest" ends verification whatever the other blocks hold. */
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        const struct fk_ota_sig_block *b = &sec.blocks[i];
        if (b->state != FK_OTA_BLOCK_VALID) {
            res->verdict[i] = b->state == FK_OTA_BLOCK_ABSENT ? FK_OTA_V_ABSENT : FK_OTA_V_INVALID;
            continue;
        }
        const uint8_t *digest = NULL;
        FK_GUARD(digest_for(&dg, buf, sec.signed_len, b->digest_len, &digest));
        if (memcmp(digest, b->image_digest, b->digest_len) != 0) {
            rc = fk_diag_set(diag, FK_E_MISMATCH,
                             "signature block %u: image digest does not match the image (the "
                             "image was changed after signing)",
                             i);
            goto out;
        }
        res->verdict[i] = FK_OTA_V_UNTRUSTED;
    }
    /* Pass 2: per block, the trusted key whose encoding the block carries, then its signature.
     * The encodings are public, so a plain memcmp is fine here. */
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        const struct fk_ota_sig_block *b = &sec.blocks[i];
        if (res->verdict[i] != FK_OTA_V_UNTRUSTED) {
            continue;
        }
        for (size_t k = 0; k < ntrusted; k++) {
            const struct fk_ota_key *t = trusted[k];
            if (t == NULL || t->scheme != b->scheme || t->enc_len != b->key_len ||
                memcmp(t->enc, b->key, b->key_len) != 0) {
                continue;
            }
            res->key_of[i] = (int)k;
            const uint8_t *digest = NULL;
            FK_GUARD(digest_for(&dg, buf, sec.signed_len, b->digest_len, &digest));
            enum fk_err v = fk_ota_verify_digest(t->pub, b->scheme, digest, b->digest_len, b->sig);
            if (v == FK_OK) {
                res->verdict[i] = FK_OTA_V_OK;
                if (res->block < 0) {
                    res->block = (int)i;
                    res->key = (int)k;
                }
            } else {
                res->verdict[i] = FK_OTA_V_BAD_SIG;
            }
            break;
        }
    }
    if (res->block < 0) {
        rc = fk_diag_set(diag, FK_E_VERIFY,
                         "no signature block verifies with the trusted key(s): block 0: %s%s%s; "
                         "block 1: %s; block 2: %s",
                         verdict_text(res->verdict[0]),
                         res->verdict[0] == FK_OTA_V_INVALID ? ", " : "",
                         res->verdict[0] == FK_OTA_V_INVALID ? sec.blocks[0].why : "",
                         verdict_text(res->verdict[1]), verdict_text(res->verdict[2]));
        goto out;
    }
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_ota_block_check(const struct fk_ota_sig_sector *sec, const uint8_t *buf,
                               unsigned slot, int *digest_ok, int *self_sig_ok) {
    enum fk_err rc = FK_E_INTERNAL;
    struct digests dg;
    EVP_PKEY *pub = NULL;
    const uint8_t *digest = NULL;

    memset(&dg, 0, sizeof dg);
    *digest_ok = 0;
    *self_sig_ok = 0;
    FK_ENSURE(slot < FK_OTA_SIG_BLOCKS_MAX, FK_E_ARG);
    const struct fk_ota_sig_block *b = &sec->blocks[slot];
    FK_ENSURE(b->state == FK_OTA_BLOCK_VALID, FK_E_ARG);
    FK_GUARD(digest_for(&dg, buf, sec->signed_len, b->digest_len, &digest));
    *digest_ok = memcmp(digest, b->image_digest, b->digest_len) == 0;
    /* The bootloader's view: the key the block carries, then its signature. */
    if (fk_ota_key_from_block(b->scheme, b->key, b->key_len, &pub) != FK_OK) {
        rc = FK_OK; /* malformed key fields: *self_sig_ok stays 0 */
        goto out;
    }
    if (b->scheme == FK_OTA_SCHEME_RSA3072) {
        /* The Montgomery constants must be the ones n implies, or the ROM computes garbage. */
        uint8_t enc[FK_OTA_KEY_ENC_MAX];
        size_t enc_len = 0;
        enum fk_ota_scheme s;
        FK_GUARD(fk_ota_key_encode(pub, &s, enc, &enc_len));
        if (enc_len != b->key_len || memcmp(enc, b->key, enc_len) != 0) {
            rc = FK_OK;
            goto out;
        }
    }
    *self_sig_ok =
        fk_ota_verify_digest(pub, b->scheme, b->image_digest, b->digest_len, b->sig) == FK_OK;
    rc = FK_OK;
out:
    EVP_PKEY_free(pub);
    return rc;
}

enum fk_err fk_ota_block_pubkey_pem(const struct fk_ota_sig_block *blk, char *out,
                                    size_t out_size) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_PKEY *pub = NULL;
    BIO *bio = NULL;
    char *mem = NULL;

    FK_ENSURE(blk != NULL && blk->state == FK_OTA_BLOCK_VALID && out != NULL, FK_E_ARG);
    FK_GUARD(fk_ota_key_from_block(blk->scheme, blk->key, blk->key_len, &pub));
    bio = BIO_new(BIO_s_mem());
    FK_ENSURE(bio != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_PUBKEY(bio, pub), FK_E_CRYPTO);
    long n = BIO_get_mem_data(bio, &mem);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    FK_ENSURE((size_t)n < out_size, FK_E_NOSPACE);
    memcpy(out, mem, (size_t)n);
    out[n] = '\0';
    rc = FK_OK;
out:
    BIO_free(bio);
    EVP_PKEY_free(pub);
    return rc;
}
