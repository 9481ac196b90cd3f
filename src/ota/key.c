/* Signing keys: loading (PEM or PKCS#11), the Secure Boot V2 encoding of a public key, its
 * eFuse digest, and the raw sign/verify primitives in block byte order.
 *
 * A block stores numbers little-endian, because the chip's RSA and ECDSA peripherals (and
 * micro-ecc's "native" mode on older loaders) take them that way; OpenSSL speaks big-endian
 * DER, so every number is reversed at this boundary and nowhere else.
 *
 * The RSA key fields also carry the two Montgomery constants the ROM needs, exactly as
 * espsecure computes them: rinv = 2^(2*3072) mod n and m' = -n^-1 mod 2^32. They are part of
 * what the eFuse digest covers, so getting them wrong would make a key "untrusted". */
#include "ota_internal.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_FILE_MAX (64u * 1024u)
#define RSA_BYTES 384u

/* Offsets inside a 1216-byte block (espsecure's struct formats "<BBxx32s384sI384sI384s" for
 * RSA, "<BBBx32sB64s64s1031x" for P-192/P-256, "<BBBx48sB96s96s951x" for P-384). */
static const struct fk_ota_layout layouts[] = {
    [FK_OTA_SCHEME_RSA3072] = {FK_OTA_SIG_VERSION_RSA, 0, 0, 32, 0, 36, 776, 812, 384, 384},
    [FK_OTA_SCHEME_ECDSA_P192] = {FK_OTA_SIG_VERSION_ECDSA, 0, 1, 32, 24, 36, 65, 101, 64, 48},
    [FK_OTA_SCHEME_ECDSA_P256] = {FK_OTA_SIG_VERSION_ECDSA, 0, 2, 32, 32, 36, 65, 101, 64, 64},
    [FK_OTA_SCHEME_ECDSA_P384] = {FK_OTA_SIG_VERSION_ECDSA, 1, 3, 48, 48, 52, 97, 149, 96, 96},
};

const struct fk_ota_layout *fk_ota_layout_of(enum fk_ota_scheme s) {
    if (s <= FK_OTA_SCHEME_NONE || s > FK_OTA_SCHEME_ECDSA_P384) {
        return NULL;
    }
    return &layouts[s];
}

const char *fk_ota_scheme_name(enum fk_ota_scheme s) {
    switch (s) {
    case FK_OTA_SCHEME_RSA3072:
        return "RSA-3072 PSS";
    case FK_OTA_SCHEME_ECDSA_P192:
        return "ECDSA P-192";
    case FK_OTA_SCHEME_ECDSA_P256:
        return "ECDSA P-256";
    case FK_OTA_SCHEME_ECDSA_P384:
        return "ECDSA P-384";
    case FK_OTA_SCHEME_NONE:
        break;
    }
    return "none";
}

static const char *curve_group(enum fk_ota_scheme s) {
    switch (s) {
    case FK_OTA_SCHEME_ECDSA_P192:
        return "prime192v1";
    case FK_OTA_SCHEME_ECDSA_P256:
        return "prime256v1";
    case FK_OTA_SCHEME_ECDSA_P384:
        return "secp384r1";
    default:
        return NULL;
    }
}

static void reverse_copy(uint8_t *dst, const uint8_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[n - 1 - i];
    }
}

/* ---- encoding ------------------------------------------------------------------------- */

static enum fk_err encode_rsa(const EVP_PKEY *pub, uint8_t *enc, size_t *enc_len) {
    enum fk_err rc = FK_E_CRYPTO;
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    BIGNUM *rr = NULL;
    BN_CTX *bn = BN_CTX_new();

    FK_ENSURE(bn != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e), FK_E_CRYPTO);
    /* "Secure boot v2 only supports RSA-3072" (espsecure); the ROM's exponent is 32 bits. */
    FK_ENSURE(BN_num_bits(n) == 3072, FK_E_UNSUPPORTED);
    FK_ENSURE(BN_num_bits(e) <= 32 && BN_is_odd(n), FK_E_UNSUPPORTED);
    FK_ENSURE(BN_bn2lebinpad(n, enc, RSA_BYTES) == (int)RSA_BYTES, FK_E_CRYPTO);
    fk_store_le32(enc + 384, (uint32_t)BN_get_word(e));
    /* rinv = (1 << (key_size * 2)) % n */
    rr = BN_new();
    FK_ENSURE(rr != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(BN_lshift(rr, BN_value_one(), 2 * 3072), FK_E_CRYPTO);
    FK_GUARD_OSSL(BN_mod(rr, rr, n, bn), FK_E_CRYPTO);
    FK_ENSURE(BN_bn2lebinpad(rr, enc + 388, RSA_BYTES) == (int)RSA_BYTES, FK_E_CRYPTO);
    /* m' = -n^-1 mod 2^32. n is odd, so Newton's iteration x <- x(2 - n0 x) doubles the number
     * of correct low bits each step: 3 bits from x = n0, then 6, 12, 24, 48 >= 32. */
    uint32_t n0 = fk_load_le32(enc);
    uint32_t x = n0;
    for (int i = 0; i < 4; i++) {
        x *= 2u - n0 * x;
    }
    fk_store_le32(enc + 772, (uint32_t)(0u - x));
    *enc_len = 776;
    rc = FK_OK;
out:
    BN_free(n);
    BN_free(e);
    BN_free(rr);
    BN_CTX_free(bn);
    return rc;
}

static enum fk_err ec_scheme(const EVP_PKEY *pub, enum fk_ota_scheme *s) {
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &glen) != 1) {
        return FK_E_CRYPTO;
    }
    int nid = OBJ_txt2nid(group);
    if (nid == NID_undef) {
        nid = EC_curve_nist2nid(group);
    }
    switch (nid) {
    case NID_X9_62_prime192v1:
        *s = FK_OTA_SCHEME_ECDSA_P192;
        return FK_OK;
    case NID_X9_62_prime256v1:
        *s = FK_OTA_SCHEME_ECDSA_P256;
        return FK_OK;
    case NID_secp384r1:
        *s = FK_OTA_SCHEME_ECDSA_P384;
        return FK_OK;
    default:
        return FK_E_UNSUPPORTED;
    }
}

static enum fk_err encode_ec(const EVP_PKEY *pub, enum fk_ota_scheme s, uint8_t *enc,
                             size_t *enc_len) {
    enum fk_err rc = FK_E_CRYPTO;
    const struct fk_ota_layout *l = fk_ota_layout_of(s);
    BIGNUM *x = NULL;
    BIGNUM *y = NULL;

    FK_GUARD_OSSL(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &x), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &y), FK_E_CRYPTO);
    /* struct.pack("<B64s", curve_id, x_le || y_le): P-192 points are zero-padded to 64. */
    memset(enc, 0, l->key_len);
    enc[0] = l->curve_id;
    FK_ENSURE(BN_bn2lebinpad(x, enc + 1, (int)l->coord_len) == (int)l->coord_len, FK_E_CRYPTO);
    FK_ENSURE(BN_bn2lebinpad(y, enc + 1 + l->coord_len, (int)l->coord_len) == (int)l->coord_len,
              FK_E_CRYPTO);
    *enc_len = l->key_len;
    rc = FK_OK;
out:
    BN_free(x);
    BN_free(y);
    return rc;
}

enum fk_err fk_ota_key_encode(const EVP_PKEY *pub, enum fk_ota_scheme *scheme, uint8_t *enc,
                              size_t *enc_len) {
    enum fk_err rc;
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_RSA:
        rc = encode_rsa(pub, enc, enc_len);
        if (rc == FK_OK) {
            *scheme = FK_OTA_SCHEME_RSA3072;
        }
        return rc;
    case EVP_PKEY_EC:
        rc = ec_scheme(pub, scheme);
        if (rc != FK_OK) {
            return rc;
        }
        return encode_ec(pub, *scheme, enc, enc_len);
    default:
        return FK_E_UNSUPPORTED;
    }
}

enum fk_err fk_ota_key_from_block(enum fk_ota_scheme s, const uint8_t *enc, size_t enc_len,
                                  EVP_PKEY **out) {
    enum fk_err rc = FK_E_CRYPTO;
    const struct fk_ota_layout *l = fk_ota_layout_of(s);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *n = NULL;
    BIGNUM *e = NULL;
    uint8_t point[1 + 2 * 48];

    *out = NULL;
    FK_ENSURE(bld != NULL, FK_E_NOMEM);
    FK_ENSURE(l != NULL && enc_len == l->key_len, FK_E_ARG);
    if (s == FK_OTA_SCHEME_RSA3072) {
        n = BN_lebin2bn(enc, (int)RSA_BYTES, NULL);
        e = BN_new();
        FK_ENSURE(n != NULL && e != NULL, FK_E_NOMEM);
        FK_GUARD_OSSL(BN_set_word(e, fk_load_le32(enc + 384)), FK_E_CRYPTO);
        FK_ENSURE(BN_num_bits(n) == 3072 && BN_is_odd(n) && !BN_is_zero(e), FK_E_PARSE);
        FK_GUARD_OSSL(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), FK_E_CRYPTO);
        FK_GUARD_OSSL(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), FK_E_CRYPTO);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else {
        FK_ENSURE(enc[0] == l->curve_id, FK_E_PARSE);
        /* SEC1 uncompressed point: 04 || X || Y, big-endian. */
        point[0] = 0x04;
        reverse_copy(point + 1, enc + 1, l->coord_len);
        reverse_copy(point + 1 + l->coord_len, enc + 1 + l->coord_len, l->coord_len);
        FK_GUARD_OSSL(
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve_group(s), 0),
            FK_E_CRYPTO);
        FK_GUARD_OSSL(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                       1 + 2 * l->coord_len),
                      FK_E_CRYPTO);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    }
    FK_ENSURE(ctx != NULL, FK_E_NOMEM);
    params = OSSL_PARAM_BLD_to_param(bld);
    FK_ENSURE(params != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_PKEY_fromdata_init(ctx), FK_E_CRYPTO);
    /* A point that is not on the curve makes fromdata fail: the block is malformed. */
    FK_ENSURE(EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) == 1, FK_E_PARSE);
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        ERR_clear_error();
    }
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    return rc;
}

/* ---- loading -------------------------------------------------------------------------- */

/* Never prompt for a passphrase: a release tool running in CI must not block on a TTY. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Finishes a key whose pkey is set: makes the public twin, the block encoding, the scheme. */
static enum fk_err key_finish(struct fk_ota_key *k, const char *name, struct fk_diag *diag) {
    enum fk_err rc = FK_E_CRYPTO;
    unsigned char *der = NULL;

    /* Re-reading the SubjectPublicKeyInfo gives a plain provider key whatever pkey is (a
     * token key behind an engine has no exportable parameters). */
    int der_len = i2d_PUBKEY(k->pkey, &der);
    FK_ENSURE(der_len > 0, FK_E_CRYPTO);
    const unsigned char *p = der;
    k->pub = d2i_PUBKEY(NULL, &p, der_len);
    FK_ENSURE(k->pub != NULL, FK_E_CRYPTO);
    rc = fk_ota_key_encode(k->pub, &k->scheme, k->enc, &k->enc_len);
    if (rc == FK_E_UNSUPPORTED) {
        fk_diag_set(diag, rc,
                    "%s: unsupported key: Secure Boot V2 takes RSA-3072 or ECDSA P-192, P-256, "
                    "P-384 keys",
                    name);
        goto out;
    }
    FK_GUARD(rc);
    rc = FK_OK;
out:
    OPENSSL_free(der);
    return rc;
}

static void set_name(struct fk_ota_key *k, const char *name) {
    /* Never keep a PIN given in a URI: the name ends up in logs and messages. */
    const char *pin = strstr(name, "pin-value=");
    if (pin == NULL) {
        snprintf(k->name, sizeof k->name, "%s", name);
        return;
    }
    int head = (int)(pin - name) + (int)strlen("pin-value=");
    const char *rest = pin + strlen("pin-value=");
    rest += strcspn(rest, ";?&");
    snprintf(k->name, sizeof k->name, "%.*s***%s", head, name, rest);
}

enum fk_err fk_ota_key_from_pem(const uint8_t *pem, size_t len, const char *name, int need_private,
                                struct fk_ota_key **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_ota_key *k = NULL;
    BIO *bio = NULL;
    const char *shown = name != NULL ? name : "key";

    *out = NULL;
    FK_ENSURE(pem != NULL && len <= INT32_MAX, FK_E_ARG);
    k = calloc(1, sizeof *k);
    FK_ENSURE(k != NULL, FK_E_NOMEM);
    set_name(k, shown);
    bio = BIO_new_mem_buf(pem, (int)len);
    FK_ENSURE(bio != NULL, FK_E_NOMEM);
    k->pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (k->pkey != NULL) {
        k->is_private = 1;
    } else {
        ERR_clear_error();
        FK_ENSURE(BIO_reset(bio) == 1, FK_E_INTERNAL);
        k->pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
    }
    if (k->pkey == NULL) {
        ERR_clear_error();
        rc = fk_diag_set(diag, FK_E_PARSE,
                         "%s: expected a PEM private key (unencrypted) or public key", shown);
        goto out;
    }
    if (need_private && !k->is_private) {
        rc = fk_diag_set(diag, FK_E_ARG, "%s: is a public key, signing needs the private key",
                         shown);
        goto out;
    }
    FK_GUARD(key_finish(k, shown, diag));
    *out = k;
    k = NULL;
    rc = FK_OK;
out:
    BIO_free(bio);
    fk_ota_key_free(k);
    return rc;
}

enum fk_err fk_ota_key_load(const char *spec, int need_private, struct fk_ota_key **out,
                            struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    struct fk_ota_key *k = NULL;

    *out = NULL;
    FK_ENSURE(spec != NULL && spec[0] != '\0', FK_E_ARG);
    if (strncmp(spec, "pkcs11:", 7) == 0) {
        k = calloc(1, sizeof *k);
        FK_ENSURE(k != NULL, FK_E_NOMEM);
        set_name(k, spec);
        FK_GUARD(fk_ota_pkcs11_load(spec, need_private, &k->pkey, &k->engine, diag));
        k->is_private = need_private;
        FK_GUARD(key_finish(k, k->name, diag));
        *out = k;
        k = NULL;
        rc = FK_OK;
        goto out;
    }
    FK_GUARD(fk_file_read(spec, KEY_FILE_MAX, &pem, &pem_len, diag));
    FK_GUARD(fk_ota_key_from_pem(pem, pem_len, spec, need_private, out, diag));
    rc = FK_OK;
out:
    fk_free_secret(pem, pem_len);
    fk_ota_key_free(k);
    return rc;
}

void fk_ota_key_free(struct fk_ota_key *key) {
    if (key == NULL) {
        return;
    }
    EVP_PKEY_free(key->pkey); /* OpenSSL clears private key material when freeing it */
    EVP_PKEY_free(key->pub);
    if (key->engine != NULL) {
        fk_ota_pkcs11_release(key->engine);
    }
    fk_wipe(key, sizeof *key);
    free(key);
}

enum fk_ota_scheme fk_ota_key_scheme(const struct fk_ota_key *key) {
    return key != NULL ? key->scheme : FK_OTA_SCHEME_NONE;
}

int fk_ota_key_is_private(const struct fk_ota_key *key) {
    return key != NULL && key->is_private;
}

const char *fk_ota_key_name(const struct fk_ota_key *key) {
    return key != NULL ? key->name : "";
}

enum fk_err fk_ota_key_digest(const struct fk_ota_key *key, uint8_t out[FK_OTA_KEY_DIGEST_LEN]) {
    unsigned n = 0;
    if (key == NULL || key->enc_len == 0) {
        return FK_E_ARG;
    }
    /* espsecure _digest_sbv2_public_key: hashlib.sha256(key fields as in the block). */
    return EVP_Digest(key->enc, key->enc_len, out, &n, EVP_sha256(), NULL) == 1 ? FK_OK
                                                                                : FK_E_CRYPTO;
}

enum fk_err fk_ota_key_public_der(const struct fk_ota_key *key, uint8_t *out, size_t cap,
                                  size_t *len) {
    *len = 0;
    if (key == NULL || key->pub == NULL) {
        return FK_E_ARG;
    }
    int n = i2d_PUBKEY(key->pub, NULL);
    if (n <= 0) {
        return FK_E_CRYPTO;
    }
    *len = (size_t)n;
    if ((size_t)n > cap) {
        return FK_E_NOSPACE;
    }
    unsigned char *p = out;
    return i2d_PUBKEY(key->pub, &p) == n ? FK_OK : FK_E_CRYPTO;
}

/* ---- sign / verify primitives ---------------------------------------------------------- */

static enum fk_err set_pss(EVP_PKEY_CTX *ctx) {
    /* padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), Prehashed(SHA256) */
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) <= 0) {
        return FK_E_CRYPTO;
    }
    return FK_OK;
}

enum fk_err fk_ota_sign_digest(const struct fk_ota_key *key, const uint8_t *digest,
                               size_t digest_len, uint8_t *sig) {
    enum fk_err rc = FK_E_CRYPTO;
    const struct fk_ota_layout *l = fk_ota_layout_of(key->scheme);
    EVP_PKEY_CTX *ctx = NULL;
    ECDSA_SIG *es = NULL;
    uint8_t der[RSA_BYTES + 16];
    size_t der_len = sizeof der;

    FK_ENSURE(l != NULL && key->is_private && digest_len == l->digest_len, FK_E_ARG);
    /* For a token key this runs inside the engine (the key's method), not in our process. */
    ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
    FK_ENSURE(ctx != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_PKEY_sign_init(ctx), FK_E_CRYPTO);
    if (key->scheme == FK_OTA_SCHEME_RSA3072) {
        FK_GUARD(set_pss(ctx));
    }
    FK_ENSURE(EVP_PKEY_sign(ctx, der, &der_len, digest, digest_len) == 1, FK_E_CRYPTO);
    if (key->scheme == FK_OTA_SCHEME_RSA3072) {
        FK_ENSURE(der_len == RSA_BYTES, FK_E_CRYPTO);
        /* signature[::-1]: the RSA peripheral wants little-endian. */
        reverse_copy(sig, der, RSA_BYTES);
    } else {
        const unsigned char *p = der;
        es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
        FK_ENSURE(es != NULL, FK_E_CRYPTO);
        const BIGNUM *r = ECDSA_SIG_get0_r(es);
        const BIGNUM *s = ECDSA_SIG_get0_s(es);
        /* _microecc_format(r, s): each number little-endian, field-sized, r first. */
        memset(sig, 0, l->sig_field_len);
        FK_ENSURE(BN_bn2lebinpad(r, sig, (int)l->coord_len) == (int)l->coord_len, FK_E_CRYPTO);
        FK_ENSURE(BN_bn2lebinpad(s, sig + l->coord_len, (int)l->coord_len) == (int)l->coord_len,
                  FK_E_CRYPTO);
    }
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        ERR_clear_error();
    }
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

enum fk_err fk_ota_verify_digest(EVP_PKEY *pub, enum fk_ota_scheme s, const uint8_t *digest,
                                 size_t digest_len, const uint8_t *sig) {
    enum fk_err rc = FK_E_CRYPTO;
    const struct fk_ota_layout *l = fk_ota_layout_of(s);
    EVP_PKEY_CTX *ctx = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL;
    BIGNUM *sv = NULL;
    uint8_t buf[RSA_BYTES + 16];
    unsigned char *der = NULL;
    const uint8_t *tbv = buf;
    size_t tbv_len = 0;

    FK_ENSURE(l != NULL && digest_len == l->digest_len, FK_E_ARG);
    if (s == FK_OTA_SCHEME_RSA3072) {
        reverse_copy(buf, sig, RSA_BYTES);
        tbv_len = RSA_BYTES;
    } else {
        r = BN_lebin2bn(sig, (int)l->coord_len, NULL);
        sv = BN_lebin2bn(sig + l->coord_len, (int)l->coord_len, NULL);
        es = ECDSA_SIG_new();
        FK_ENSURE(r != NULL && sv != NULL && es != NULL, FK_E_NOMEM);
        FK_GUARD_OSSL(ECDSA_SIG_set0(es, r, sv), FK_E_CRYPTO);
        r = NULL; /* owned by es now */
        sv = NULL;
        int n = i2d_ECDSA_SIG(es, &der);
        FK_ENSURE(n > 0, FK_E_CRYPTO);
        tbv = der;
        tbv_len = (size_t)n;
    }
    ctx = EVP_PKEY_CTX_new(pub, NULL);
    FK_ENSURE(ctx != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_PKEY_verify_init(ctx), FK_E_CRYPTO);
    if (s == FK_OTA_SCHEME_RSA3072) {
        FK_GUARD(set_pss(ctx));
    }
    int v = EVP_PKEY_verify(ctx, tbv, tbv_len, digest, digest_len);
    /* 0 is "does not verify"; a negative value is also a failed verification here (a
     * malformed signature), never a pass. */
    FK_ENSURE(v == 1, FK_E_VERIFY);
    rc = FK_OK;
out:
    ERR_clear_error();
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(es);
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}
