/* Secure Boot V2 signature sector verification on the device (fkd/ota.h), with mbedTLS.
 *
 * Layout (ESP-IDF "Secure Boot v2", espsecure sign_secure_boot_v2; the same offsets as the
 * host module src/ota, which signs): a 4096-byte sector of three 1216-byte slots, the rest
 * 0xFF. A block: magic 0xE7, version (0x02 RSA-3072 PSS, 0x03 ECDSA), for ECDSA a SHA version
 * byte (0 SHA-256, 1 SHA-384), a reserved byte, the image digest, the key fields, the
 * signature (all numbers little-endian), zeros, CRC-32 (zlib) of bytes 0..1195, 16 zero bytes.
 *
 *   scheme   digest      key field                     signature
 *   RSA      4..36       36..812  n, e, rinv, m'       812..1196  384 bytes
 *   P-256    4..36       36..101  curve 2, x, y        101..165   r, s
 *   P-384    4..52       52..149  curve 3, x, y        149..245   r, s
 *
 * Trust is what the ROM decides with the eFuse key digests: the key a block carries must be
 * exactly one of the trusted keys, all fields (so an RSA block with a forged rinv/m' for a
 * trusted modulus does not count). The trusted keys arrive as DER SubjectPublicKeyInfo from
 * NVS and are converted once into block form by fkd_sbv2_keys_add. The bootloader's own trust
 * is the eFuse's (fkd/efuse.h): a block whose key fields hash (SHA-256) to a burned digest
 * counts too (fkd_sbv2_keys_add_digest). The checks follow the host
 * verifier: a well-formed block whose digest differs from the data is a hard failure; a slot
 * that is neither erased nor well formed, or a fill byte other than 0xFF, fails too. */
#include "fkd/ota.h"

#include "fkd/nvs_format.h"
#include "mbedtls_compat.h"

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <string.h>

#define SLOTS_END (FKD_SBV2_BLOCKS * FKD_SBV2_BLOCK) /* 3648 */
#define RSA_BYTES 384u

enum { SCHEME_P192 = 100 }; /* well formed, never trusted: too weak to accept */

struct layout {
    size_t digest_len, key_off, key_len, sig_off, coord;
};

static const struct layout *layout_of(int scheme) {
    static const struct layout rsa = {32, 36, 776, 812, 0};
    static const struct layout p192 = {32, 36, 65, 101, 24};
    static const struct layout p256 = {32, 36, 65, 101, 32};
    static const struct layout p384 = {48, 52, 97, 149, 48};
    switch (scheme) {
    case FKD_SBV2_RSA3072:
        return &rsa;
    case FKD_SBV2_ECDSA_P256:
        return &p256;
    case FKD_SBV2_ECDSA_P384:
        return &p384;
    case SCHEME_P192:
        return &p192;
    default:
        return NULL;
    }
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v) {
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(p[i] ^ v);
    }
    return diff == 0;
}

static void reverse_copy(uint8_t *dst, const uint8_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[n - 1 - i];
    }
}

const char *fkd_sbv2_verdict_name(enum fkd_sbv2_verdict v) {
    switch (v) {
    case FKD_SBV2_V_ABSENT:
        return "absent";
    case FKD_SBV2_V_INVALID:
        return "invalid";
    case FKD_SBV2_V_UNTRUSTED:
        return "untrusted key";
    case FKD_SBV2_V_BAD_SIG:
        return "bad signature";
    case FKD_SBV2_V_OK:
        return "ok";
    }
    return "?";
}

void fkd_sbv2_keys_init(struct fkd_sbv2_keys *k) {
    memset(k, 0, sizeof *k);
}

enum fkd_err fkd_sbv2_keys_add_digest(struct fkd_sbv2_keys *k, const uint8_t digest[32]) {
    if (k == NULL || digest == NULL) {
        return FKD_E_ARG;
    }
    if (k->digest_count >= FKD_SBV2_DIGESTS_MAX) {
        return FKD_E_NOSPACE;
    }
    memcpy(k->digest[k->digest_count++], digest, 32);
    return FKD_OK;
}

int fkd_sbv2_keys_need_sha384(const struct fkd_sbv2_keys *k) {
    if (k != NULL && k->digest_count > 0) {
        return 1;
    }
    for (unsigned i = 0; k != NULL && i < k->count; i++) {
        if (k->key[i].scheme == FKD_SBV2_ECDSA_P384) {
            return 1;
        }
    }
    return 0;
}

/* RSA key fields as the block holds them: n (LE), e (u32), rinv = 2^6144 mod n (LE),
 * m' = -n^-1 mod 2^32. */
static enum fkd_err encode_rsa(mbedtls_rsa_context *rsa, uint8_t *enc) {
    enum fkd_err rc = FKD_E_CRYPTO;
    mbedtls_mpi n, e, rr;
    uint8_t be[RSA_BYTES];
    mbedtls_mpi_init(&n);
    mbedtls_mpi_init(&e);
    mbedtls_mpi_init(&rr);
    FKD_ENSURE(mbedtls_rsa_export(rsa, &n, NULL, NULL, NULL, &e) == 0, FKD_E_CRYPTO);
    /* "Secure boot v2 only supports RSA-3072" (espsecure); the ROM's exponent is 32 bits. */
    FKD_ENSURE(mbedtls_mpi_bitlen(&n) == 3072 && mbedtls_mpi_get_bit(&n, 0) == 1,
               FKD_E_UNSUPPORTED);
    FKD_ENSURE(mbedtls_mpi_bitlen(&e) <= 32 && mbedtls_mpi_cmp_int(&e, 0) > 0,
               FKD_E_UNSUPPORTED);
    FKD_ENSURE(mbedtls_mpi_write_binary(&n, be, RSA_BYTES) == 0, FKD_E_CRYPTO);
    reverse_copy(enc, be, RSA_BYTES);
    uint8_t ebe[4];
    FKD_ENSURE(mbedtls_mpi_write_binary(&e, ebe, 4) == 0, FKD_E_CRYPTO);
    enc[384] = ebe[3];
    enc[385] = ebe[2];
    enc[386] = ebe[1];
    enc[387] = ebe[0];
    FKD_ENSURE(mbedtls_mpi_lset(&rr, 1) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(mbedtls_mpi_shift_l(&rr, 2 * 3072) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(mbedtls_mpi_mod_mpi(&rr, &rr, &n) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(mbedtls_mpi_write_binary(&rr, be, RSA_BYTES) == 0, FKD_E_CRYPTO);
    reverse_copy(enc + 388, be, RSA_BYTES);
    /* n odd: Newton's x <- x(2 - n0 x) doubles the correct low bits: 3, 6, 12, 24, 48. */
    uint32_t n0 = fkd_load_le32(enc);
    uint32_t x = n0;
    for (int i = 0; i < 4; i++) {
        x *= 2u - n0 * x;
    }
    fkd_store_le32(enc + 772, (uint32_t)(0u - x));
    rc = FKD_OK;
out:
    mbedtls_mpi_free(&n);
    mbedtls_mpi_free(&e);
    mbedtls_mpi_free(&rr);
    return rc;
}

enum fkd_err fkd_sbv2_keys_add(struct fkd_sbv2_keys *k, const uint8_t *der, size_t der_len) {
    enum fkd_err rc = FKD_E_INTERNAL;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    FKD_ENSURE(k != NULL && der != NULL && der_len > 0, FKD_E_ARG);
    FKD_ENSURE(k->count < FKD_SBV2_KEYS_MAX, FKD_E_NOSPACE);
    struct fkd_sbv2_key *key = &k->key[k->count];
    memset(key, 0, sizeof *key);
    FKD_ENSURE(mbedtls_pk_parse_public_key(&pk, der, der_len) == 0, FKD_E_PARSE);
    if (mbedtls_pk_get_type(&pk) == MBEDTLS_PK_RSA) {
        FKD_GUARD(encode_rsa(mbedtls_pk_rsa(pk), key->enc));
        key->scheme = FKD_SBV2_RSA3072;
        key->enc_len = 776;
    } else if (mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY) {
        const mbedtls_ecp_keypair *kp = mbedtls_pk_ec(pk);
        const struct layout *l;
        uint8_t pt[1 + 2 * 48];
        size_t olen = 0;
        switch (fkd_mbedtls_ec_grp_id(kp)) {
        case MBEDTLS_ECP_DP_SECP256R1:
            key->scheme = FKD_SBV2_ECDSA_P256;
            key->enc[0] = 2; /* espsecure CURVE_ID_P256 */
            break;
        case MBEDTLS_ECP_DP_SECP384R1:
            key->scheme = FKD_SBV2_ECDSA_P384;
            key->enc[0] = 3; /* CURVE_ID_P384 */
            break;
        default:
            rc = FKD_E_UNSUPPORTED;
            goto out;
        }
        l = layout_of(key->scheme);
        FKD_ENSURE(fkd_mbedtls_ec_write_q(kp, pt, sizeof pt, &olen) == 0 &&
                       olen == 1 + 2 * l->coord,
                   FKD_E_CRYPTO);
        /* SEC1 04 || X || Y big-endian -> curve id, X, Y little-endian. */
        reverse_copy(key->enc + 1, pt + 1, l->coord);
        reverse_copy(key->enc + 1 + l->coord, pt + 1 + l->coord, l->coord);
        key->enc_len = (uint16_t)l->key_len;
    } else {
        rc = FKD_E_UNSUPPORTED;
        goto out;
    }
    k->count++;
    rc = FKD_OK;
out:
    mbedtls_pk_free(&pk);
    return rc;
}

/* Classifies one slot; returns the scheme of a well-formed block, FKD_SBV2_NONE for an erased
 * slot, -1 for a malformed one. */
static int parse_block(const uint8_t *raw) {
    if (all_bytes(raw, FKD_SBV2_BLOCK, 0xFF)) {
        return FKD_SBV2_NONE;
    }
    /* "SIG_BLOCK_MAGIC = 0xE7"; "calc_crc = zlib.crc32(sig_blk[:1196])" */
    if (raw[0] != FKD_SBV2_MAGIC ||
        fkd_crc32_le(0, raw, FKD_SBV2_CRC_LEN) != fkd_load_le32(raw + FKD_SBV2_CRC_LEN)) {
        return -1;
    }
    if (!all_bytes(raw + FKD_SBV2_CRC_LEN + 4, 16, 0x00)) {
        return -1;
    }
    if (raw[1] == 0x02) {
        return FKD_SBV2_RSA3072;
    }
    if (raw[1] == 0x03) {
        if (raw[2] == 0 && raw[36] == 1) {
            return SCHEME_P192;
        }
        if (raw[2] == 0 && raw[36] == 2) {
            return FKD_SBV2_ECDSA_P256;
        }
        if (raw[2] == 1 && raw[52] == 3) {
            return FKD_SBV2_ECDSA_P384;
        }
    }
    return -1;
}

static enum fkd_err verify_rsa(const uint8_t *key, const uint8_t *digest, const uint8_t *sig) {
    enum fkd_err rc = FKD_E_CRYPTO;
    mbedtls_rsa_context rsa;
    uint8_t n_be[RSA_BYTES];
    uint8_t e_be[4];
    uint8_t s_be[RSA_BYTES];
    fkd_mbedtls_rsa_init_pss(&rsa);
    reverse_copy(n_be, key, RSA_BYTES);
    reverse_copy(e_be, key + 384, 4);
    reverse_copy(s_be, sig, RSA_BYTES);
    FKD_ENSURE(mbedtls_rsa_import_raw(&rsa, n_be, RSA_BYTES, NULL, 0, NULL, 0, NULL, 0, e_be,
                                      4) == 0,
               FKD_E_CRYPTO);
    FKD_ENSURE(mbedtls_rsa_complete(&rsa) == 0, FKD_E_CRYPTO);
    /* padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), Prehashed(SHA256) */
    FKD_ENSURE(fkd_mbedtls_rsa_pss_verify(&rsa, digest, 32, s_be) == 0, FKD_E_AUTH);
    rc = FKD_OK;
out:
    mbedtls_rsa_free(&rsa);
    return rc;
}

static enum fkd_err verify_ecdsa(int scheme, const uint8_t *key, const uint8_t *digest,
                                 const uint8_t *sig) {
    enum fkd_err rc = FKD_E_CRYPTO;
    const struct layout *l = layout_of(scheme);
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r, s;
    uint8_t pt[1 + 2 * 48];
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    FKD_ENSURE(mbedtls_ecp_group_load(&grp, scheme == FKD_SBV2_ECDSA_P256
                                                ? MBEDTLS_ECP_DP_SECP256R1
                                                : MBEDTLS_ECP_DP_SECP384R1) == 0,
               FKD_E_CRYPTO);
    pt[0] = 0x04;
    reverse_copy(pt + 1, key + 1, l->coord);
    reverse_copy(pt + 1 + l->coord, key + 1 + l->coord, l->coord);
    FKD_ENSURE(mbedtls_ecp_point_read_binary(&grp, &q, pt, 1 + 2 * l->coord) == 0, FKD_E_AUTH);
    FKD_ENSURE(mbedtls_ecp_check_pubkey(&grp, &q) == 0, FKD_E_AUTH);
    FKD_ENSURE(mbedtls_mpi_read_binary_le(&r, sig, l->coord) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(mbedtls_mpi_read_binary_le(&s, sig + l->coord, l->coord) == 0, FKD_E_CRYPTO);
    /* espsecure: ECDSA(utils.Prehashed(SHA256 or SHA384)) over the image digest. */
    FKD_ENSURE(mbedtls_ecdsa_verify(&grp, digest, l->digest_len, &q, &r, &s) == 0, FKD_E_AUTH);
    rc = FKD_OK;
out:
    mbedtls_ecp_group_free(&grp);
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return rc;
}

enum fkd_err fkd_sbv2_verify(const uint8_t *sector, const uint8_t sha256[32],
                             const uint8_t *sha384, const struct fkd_sbv2_keys *keys,
                             struct fkd_sbv2_result *res) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct fkd_sbv2_result local;
    if (res == NULL) {
        res = &local;
    }
    memset(res, 0, sizeof *res);
    res->block = -1;
    res->key = -1;
    res->digest = -1;
    FKD_ENSURE(sector != NULL && sha256 != NULL, FKD_E_ARG);
    FKD_ENSURE(keys != NULL && (keys->count > 0 || keys->digest_count > 0), FKD_E_ARG);
    /* Nothing in the sector is left unchecked: the fill after the slots is 0xFF. */
    FKD_ENSURE(all_bytes(sector + SLOTS_END, FKD_SBV2_SECTOR - SLOTS_END, 0xFF), FKD_E_PARSE);
    int scheme[FKD_SBV2_BLOCKS];
    for (unsigned i = 0; i < FKD_SBV2_BLOCKS; i++) {
        const uint8_t *raw = sector + i * FKD_SBV2_BLOCK;
        scheme[i] = parse_block(raw);
        if (scheme[i] < 0) {
            res->verdict[i] = FKD_SBV2_V_INVALID;
            fkd_log(FKD_LOG_ERROR, "ota: signature slot %u is damaged (neither erased nor a "
                                   "well-formed block)", i);
            rc = FKD_E_PARSE;
            goto out;
        }
        if (scheme[i] == FKD_SBV2_NONE) {
            continue;
        }
        const struct layout *l = layout_of(scheme[i]);
        const uint8_t *want = l->digest_len == 48 ? sha384 : sha256;
        if (want == NULL) {
            /* No trusted key uses SHA-384, so nothing was hashed for it: this block cannot be
             * trusted, and its digest cannot be checked either. */
            res->verdict[i] = FKD_SBV2_V_UNTRUSTED;
            scheme[i] = FKD_SBV2_NONE;
            continue;
        }
        /* "Signature block image digest does not match the actual image digest" (espsecure):
         * a hard failure, whatever the other blocks say. */
        if (memcmp(raw + 4, want, l->digest_len) != 0) {
            res->verdict[i] = FKD_SBV2_V_INVALID;
            fkd_log(FKD_LOG_ERROR, "ota: signature block %u: image digest does not match the "
                                   "image (changed after signing)", i);
            rc = FKD_E_CORRUPT;
            goto out;
        }
    }
    for (unsigned i = 0; i < FKD_SBV2_BLOCKS; i++) {
        if (scheme[i] == FKD_SBV2_NONE) {
            continue;
        }
        const uint8_t *raw = sector + i * FKD_SBV2_BLOCK;
        const struct layout *l = layout_of(scheme[i]);
        res->verdict[i] = FKD_SBV2_V_UNTRUSTED;
        int key_idx = -1, digest_idx = -1;
        for (unsigned k = 0; k < keys->count && key_idx < 0; k++) {
            const struct fkd_sbv2_key *key = &keys->key[k];
            /* Public data: an ordinary comparison is fine. */
            if ((int)key->scheme == scheme[i] && key->enc_len == l->key_len &&
                memcmp(key->enc, raw + l->key_off, l->key_len) == 0) {
                key_idx = (int)k;
            }
        }
        if (key_idx < 0 && keys->digest_count > 0 && scheme[i] != SCHEME_P192) {
            /* What the ROM does: SHA-256 over the key fields, compared with the eFuse digests
             * (espsecure digest-sbv2-public-key hashes the same bytes). */
            uint8_t dg[32];
            FKD_ENSURE(fkd_mbedtls_sha256(raw + l->key_off, l->key_len, dg) == 0, FKD_E_CRYPTO);
            for (unsigned d = 0; d < keys->digest_count && digest_idx < 0; d++) {
                if (memcmp(keys->digest[d], dg, 32) == 0) {
                    digest_idx = (int)d;
                }
            }
            if (digest_idx < 0) {
                char hex[65];
                for (unsigned b = 0; b < 32; b++) {
                    hex[2 * b] = "0123456789abcdef"[dg[b] >> 4];
                    hex[2 * b + 1] = "0123456789abcdef"[dg[b] & 15];
                }
                hex[64] = '\0';
                fkd_log(FKD_LOG_ERROR,
                        "secure boot: signature block %u is signed by a key "
                        "whose digest %s is not burned in eFuse",
                        i, hex);
            }
        }
        if (key_idx < 0 && digest_idx < 0) {
            continue;
        }
        enum fkd_err v = scheme[i] == FKD_SBV2_RSA3072
                             ? verify_rsa(raw + l->key_off, raw + 4, raw + l->sig_off)
                             : verify_ecdsa(scheme[i], raw + l->key_off, raw + 4, raw + l->sig_off);
        if (v == FKD_OK) {
            res->verdict[i] = FKD_SBV2_V_OK;
            if (res->block < 0) {
                res->block = (int)i;
                res->key = key_idx;
                res->digest = digest_idx;
            }
        } else if (v == FKD_E_AUTH) {
            res->verdict[i] = FKD_SBV2_V_BAD_SIG;
        } else {
            rc = v;
            goto out;
        }
    }
    rc = res->block >= 0 ? FKD_OK : FKD_E_AUTH;
out:
    return rc;
}
