/* ES256 access tokens, the signing key, JWKS and certificate thumbprints (fleetkey/oauth.h).
 *
 * OpenSSL speaks ECDSA signatures as DER (ECDSA-Sig-Value, variable length); JOSE (RFC 7518
 * 3.4) wants r and s as two 32-byte big-endian integers back to back. The conversion is done
 * both ways through ECDSA_SIG so that a DER signature that is not canonical never reaches
 * the wire, and a 64-byte JOSE signature maps to exactly one DER value.
 *
 * Verification parses the header before anything else and refuses every alg but ES256: the
 * classic JWT mistakes ("none", or HS256 keyed with the public key) are refused by name, not by
 * accident. The claims are parsed only after the signature verified. */
#include "fleetkey/oauth.h"

#include <cjson/cJSON.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HDR_MAX 256u      /* decoded JOSE header, bytes */
#define PAYLOAD_MAX 1024u /* decoded claims, bytes */

struct fk_oauth_key {
    EVP_PKEY *pkey;
    int has_private;
    char kid[FK_OAUTH_KID_SIZE];
};

/* ---- keys ------------------------------------------------------------------------------- */

static enum fk_err key_wrap(EVP_PKEY *pkey, int has_private, struct fk_oauth_key **out,
                            struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_oauth_key *k = NULL;
    unsigned char *spki = NULL;
    char group[32];
    uint8_t md[32];
    size_t glen = 0;
    FK_ENSURE(EVP_PKEY_is_a(pkey, "EC") &&
                  EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                 sizeof group, &glen) == 1 &&
                  strcmp(group, "prime256v1") == 0,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "the OAuth key must be an EC P-256 key"));
    k = calloc(1, sizeof *k);
    FK_ENSURE(k != NULL, FK_E_NOMEM);
    int n = i2d_PUBKEY(pkey, &spki);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    unsigned mdlen = 0;
    FK_GUARD_OSSL(EVP_Digest(spki, (size_t)n, md, &mdlen, EVP_sha256(), NULL), FK_E_CRYPTO);
    FK_GUARD(fk_b64url_encode(md, 16, k->kid, sizeof k->kid, NULL));
    k->pkey = pkey;
    k->has_private = has_private;
    *out = k;
    k = NULL;
    rc = FK_OK;
out:
    OPENSSL_free(spki);
    free(k);
    return rc;
}

enum fk_err fk_oauth_key_from_pem(const uint8_t *pem, size_t len, struct fk_oauth_key **out,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_PKEY *pkey = NULL;
    int priv = 1;
    FK_ENSURE(len <= INT_MAX, FK_E_TOOBIG);
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    if (pkey == NULL) {
        (void)BIO_reset(b);
        pkey = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
        priv = 0;
    }
    BIO_free(b);
    FK_ENSURE(pkey != NULL, fk_diag_set(diag, FK_E_CRYPTO, "not a PEM private or public key"));
    FK_GUARD(key_wrap(pkey, priv, out, diag));
    pkey = NULL;
    rc = FK_OK;
out:
    EVP_PKEY_free(pkey);
    return rc;
}

enum fk_err fk_oauth_key_load_or_create(const char *path, struct fk_oauth_key **out, int *created,
                                        struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_PKEY *pkey = NULL;
    BIO *mem = NULL;
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    struct stat st;
    if (created != NULL) {
        *created = 0;
    }
    if (stat(path, &st) == 0) {
        /* The key signs every token of the fleet: like ssh, refuse a key others can read. */
        FK_ENSURE((st.st_mode & 077) == 0,
                  fk_diag_at(diag, FK_E_POLICY, path, 0,
                             "mode %03o: the OAuth signing key must be readable by its owner only "
                             "(chmod 600)",
                             (unsigned)(st.st_mode & 0777)));
        FK_GUARD(fk_file_read(path, 64 * 1024, &pem, &pem_len, diag));
        rc = fk_oauth_key_from_pem(pem, pem_len, out, diag);
        if (rc == FK_OK && !(*out)->has_private) {
            fk_oauth_key_free(*out);
            *out = NULL;
            rc = fk_diag_set(diag, FK_E_CRYPTO, "a public key: the private key is needed");
        }
        if (rc != FK_OK && diag != NULL) {
            snprintf(diag->file, sizeof diag->file, "%.255s", path);
        }
        goto out;
    }
    FK_ENSURE(errno == ENOENT, fk_diag_at(diag, FK_E_IO, path, 0, "%s", strerror(errno)));
    pkey = EVP_EC_gen("P-256");
    FK_ENSURE(pkey != NULL, fk_diag_set(diag, FK_E_CRYPTO, "P-256 key generation failed"));
    mem = BIO_new(BIO_s_secmem());
    FK_ENSURE(mem != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL), FK_E_CRYPTO);
    char *data = NULL;
    long n = BIO_get_mem_data(mem, &data);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    FK_GUARD(fk_file_write_atomic(path, data, (size_t)n, 0600, FK_WRITE_EXCL, diag));
    FK_GUARD(key_wrap(pkey, 1, out, diag));
    pkey = NULL;
    if (created != NULL) {
        *created = 1;
    }
    rc = FK_OK;
out:
    fk_free_secret(pem, pem_len);
    BIO_free(mem);
    EVP_PKEY_free(pkey);
    return rc;
}

void fk_oauth_key_free(struct fk_oauth_key *k) {
    if (k != NULL) {
        EVP_PKEY_free(k->pkey);
        free(k);
    }
}

const char *fk_oauth_key_kid(const struct fk_oauth_key *k) {
    return k->kid;
}

enum fk_err fk_oauth_key_public_pem(const struct fk_oauth_key *k, char *out, size_t out_size) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *mem = BIO_new(BIO_s_mem());
    FK_ENSURE(mem != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_PUBKEY(mem, k->pkey), FK_E_CRYPTO);
    char *data = NULL;
    long n = BIO_get_mem_data(mem, &data);
    FK_ENSURE(n > 0 && (size_t)n < out_size, FK_E_NOSPACE);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    rc = FK_OK;
out:
    BIO_free(mem);
    return rc;
}

enum fk_err fk_oauth_jwks(const struct fk_oauth_key *k, char *out, size_t out_size) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t pt[65];
    size_t ptlen = 0;
    char x[FK_OAUTH_B64_32], y[FK_OAUTH_B64_32];
    FK_GUARD_OSSL(EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                  sizeof pt, &ptlen),
                  FK_E_CRYPTO);
    FK_ENSURE(ptlen == 65 && pt[0] == 0x04, FK_E_CRYPTO); /* uncompressed point 04||x||y */
    FK_GUARD(fk_b64url_encode(pt + 1, 32, x, sizeof x, NULL));
    FK_GUARD(fk_b64url_encode(pt + 33, 32, y, sizeof y, NULL));
    int n = snprintf(out, out_size,
                     "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
                     "\"kid\":\"%s\",\"use\":\"sig\",\"alg\":\"ES256\"}]}",
                     x, y, k->kid);
    FK_ENSURE(n > 0 && (size_t)n < out_size, FK_E_NOSPACE);
    rc = FK_OK;
out:
    return rc;
}

/* ---- signatures ------------------------------------------------------------------------- */

enum fk_err fk_oauth_sig_der_to_raw(const uint8_t *der, size_t len, uint8_t raw[64]) {
    enum fk_err rc = FK_E_INTERNAL;
    const unsigned char *p = der;
    unsigned char *re = NULL;
    FK_ENSURE(len > 0 && len <= 72, FK_E_PARSE);
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (sig != NULL && p != der + len) {
        ECDSA_SIG_free(sig); /* bytes after the value */
        sig = NULL;
    }
    FK_ENSURE(sig != NULL, FK_E_PARSE);
    /* Canonical DER only: re-encoding must give back the same bytes. */
    int n = i2d_ECDSA_SIG(sig, &re);
    int canon = n == (int)len && memcmp(re, der, len) == 0;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = canon && BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    FK_ENSURE(ok, FK_E_PARSE);
    rc = FK_OK;
out:
    OPENSSL_free(re);
    return rc;
}

enum fk_err fk_oauth_sig_raw_to_der(const uint8_t raw[64], uint8_t *out, size_t out_size,
                                    size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL);
    BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
    unsigned char *der = NULL;
    FK_ENSURE(sig != NULL && r != NULL && s != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(ECDSA_SIG_set0(sig, r, s), FK_E_CRYPTO);
    r = s = NULL; /* owned by sig now */
    int n = i2d_ECDSA_SIG(sig, &der);
    FK_ENSURE(n > 0, FK_E_CRYPTO);
    FK_ENSURE((size_t)n <= out_size, FK_E_NOSPACE);
    memcpy(out, der, (size_t)n);
    *out_len = (size_t)n;
    rc = FK_OK;
out:
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return rc;
}

/* ---- sign ------------------------------------------------------------------------------- */

static int name_valid(const char *s, size_t n) {
    return fk_name_valid(s, n, FK_OAUTH_NAME_MAX);
}

static int b64url_valid(const char *s, size_t n, size_t want) {
    uint8_t tmp[48];
    size_t got = 0;
    return n == want && fk_b64url_decode(s, n, tmp, sizeof tmp, &got) == FK_OK;
}

enum fk_err fk_oauth_jwt_sign(const struct fk_oauth_key *k, const struct fk_oauth_claims *c,
                              char *out, size_t out_size) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *hdr = NULL, *cl = NULL;
    char *hjs = NULL, *cjs = NULL;
    EVP_MD_CTX *md = NULL;
    uint8_t der[80], raw[64];
    size_t derlen = sizeof der;
    char scope[FK_OAUTH_SCOPE_SIZE];
    FK_ENSURE(k->has_private && name_valid(c->sub, strlen(c->sub)) &&
                  name_valid(c->client_id, strlen(c->client_id)) &&
                  b64url_valid(c->jti, strlen(c->jti), FK_OAUTH_JTI_SIZE - 1) &&
                  b64url_valid(c->x5t, strlen(c->x5t), FK_OAUTH_B64_32 - 1) &&
                  (c->scope & ~(unsigned)FK_SCOPE_ALL) == 0,
              FK_E_ARG);
    hdr = cJSON_CreateObject();
    cl = cJSON_CreateObject();
    FK_ENSURE(hdr != NULL && cl != NULL, FK_E_NOMEM);
    cJSON_AddStringToObject(hdr, "alg", "ES256");
    cJSON_AddStringToObject(hdr, "typ", "at+jwt");
    cJSON_AddStringToObject(hdr, "kid", k->kid);
    fk_oauth_scope_format(c->scope, scope);
    cJSON_AddStringToObject(cl, "iss", FK_OAUTH_ISSUER);
    cJSON_AddStringToObject(cl, "aud", FK_OAUTH_AUDIENCE);
    cJSON_AddStringToObject(cl, "sub", c->sub);
    cJSON_AddStringToObject(cl, "client_id", c->client_id);
    cJSON_AddNumberToObject(cl, "iat", (double)c->iat);
    cJSON_AddNumberToObject(cl, "exp", (double)c->exp);
    cJSON_AddStringToObject(cl, "jti", c->jti);
    cJSON_AddStringToObject(cl, "scope", scope);
    cJSON *cnf = cJSON_AddObjectToObject(cl, "cnf");
    FK_ENSURE(cnf != NULL && cJSON_AddStringToObject(cnf, "x5t#S256", c->x5t) != NULL, FK_E_NOMEM);
    hjs = cJSON_PrintUnformatted(hdr);
    cjs = cJSON_PrintUnformatted(cl);
    FK_ENSURE(hjs != NULL && cjs != NULL, FK_E_NOMEM);
    size_t o = 0, n = 0;
    FK_GUARD(fk_b64url_encode(hjs, strlen(hjs), out, out_size, &n));
    o += n;
    FK_ENSURE(o + 1 < out_size, FK_E_NOSPACE);
    out[o++] = '.';
    FK_GUARD(fk_b64url_encode(cjs, strlen(cjs), out + o, out_size - o, &n));
    o += n;
    md = EVP_MD_CTX_new();
    FK_ENSURE(md != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->pkey), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_DigestSign(md, der, &derlen, (const unsigned char *)out, o), FK_E_CRYPTO);
    FK_GUARD(fk_oauth_sig_der_to_raw(der, derlen, raw));
    FK_ENSURE(o + 1 < out_size, FK_E_NOSPACE);
    out[o++] = '.';
    FK_GUARD(fk_b64url_encode(raw, sizeof raw, out + o, out_size - o, &n));
    rc = FK_OK;
out:
    EVP_MD_CTX_free(md);
    cJSON_free(hjs);
    cJSON_free(cjs);
    cJSON_Delete(hdr);
    cJSON_Delete(cl);
    if (rc != FK_OK && out != NULL && out_size > 0) {
        out[0] = '\0';
    }
    return rc;
}

/* ---- claims ----------------------------------------------------------------------------- */

static enum fk_err get_str(const cJSON *o, const char *name, const char **v, size_t *n,
                           struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        return fk_diag_set(diag, FK_E_PARSE, "claim %s: expected a string", name);
    }
    *v = it->valuestring;
    *n = strlen(it->valuestring);
    return FK_OK;
}

static enum fk_err get_time(const cJSON *o, const char *name, long long *out,
                            struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    /* NumericDate, integral, within what a double holds exactly and far from overflow. */
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e12 ||
        it->valuedouble != (double)(long long)it->valuedouble) {
        return fk_diag_set(diag, FK_E_PARSE, "claim %s: expected an integer NumericDate", name);
    }
    *out = (long long)it->valuedouble;
    return FK_OK;
}

static int aud_ok(const cJSON *aud) {
    if (cJSON_IsString(aud)) {
        return strcmp(aud->valuestring, FK_OAUTH_AUDIENCE) == 0;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, aud) {
        if (cJSON_IsString(e) && strcmp(e->valuestring, FK_OAUTH_AUDIENCE) == 0) {
            return 1;
        }
    }
    return 0;
}

enum fk_err fk_oauth_claims_parse(const uint8_t *buf, size_t len, struct fk_oauth_claims *out,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *o = NULL;
    const char *v = NULL;
    size_t n = 0;
    struct fk_oauth_claims c;
    memset(&c, 0, sizeof c);
    FK_ENSURE(
        len <= FK_OAUTH_TOKEN_MAX,
        fk_diag_set(diag, FK_E_TOOBIG, "claims: %zu bytes (max %u)", len, FK_OAUTH_TOKEN_MAX));
    o = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "claims: not a JSON object"));
    FK_GUARD(get_str(o, "iss", &v, &n, diag));
    FK_ENSURE(strcmp(v, FK_OAUTH_ISSUER) == 0,
              fk_diag_set(diag, FK_E_PARSE, "claim iss: expected \"%s\"", FK_OAUTH_ISSUER));
    FK_ENSURE(aud_ok(cJSON_GetObjectItemCaseSensitive(o, "aud")),
              fk_diag_set(diag, FK_E_PARSE, "claim aud: expected \"%s\"", FK_OAUTH_AUDIENCE));
    FK_GUARD(get_str(o, "sub", &v, &n, diag));
    FK_ENSURE(name_valid(v, n), fk_diag_set(diag, FK_E_PARSE, "claim sub: expected a name"));
    memcpy(c.sub, v, n + 1);
    FK_GUARD(get_str(o, "client_id", &v, &n, diag));
    FK_ENSURE(name_valid(v, n), fk_diag_set(diag, FK_E_PARSE, "claim client_id: expected a name"));
    memcpy(c.client_id, v, n + 1);
    FK_GUARD(get_str(o, "jti", &v, &n, diag));
    FK_ENSURE(b64url_valid(v, n, FK_OAUTH_JTI_SIZE - 1),
              fk_diag_set(diag, FK_E_PARSE, "claim jti: expected 22 base64url characters"));
    memcpy(c.jti, v, n + 1);
    FK_GUARD(get_time(o, "iat", &c.iat, diag));
    FK_GUARD(get_time(o, "exp", &c.exp, diag));
    FK_GUARD(get_str(o, "scope", &v, &n, diag));
    FK_ENSURE(fk_oauth_scope_parse(v, n, &c.scope) == FK_OK,
              fk_diag_set(diag, FK_E_PARSE, "claim scope: unknown scope or bad spacing"));
    const cJSON *cnf = cJSON_GetObjectItemCaseSensitive(o, "cnf");
    FK_ENSURE(cJSON_IsObject(cnf), fk_diag_set(diag, FK_E_PARSE, "claim cnf: expected an object"));
    FK_GUARD(get_str(cnf, "x5t#S256", &v, &n, diag));
    FK_ENSURE(b64url_valid(v, n, FK_OAUTH_B64_32 - 1),
              fk_diag_set(diag, FK_E_PARSE, "claim cnf.x5t#S256: expected 43 base64url chars"));
    memcpy(c.x5t, v, n + 1);
    *out = c;
    rc = FK_OK;
out:
    cJSON_Delete(o);
    return rc;
}

/* ---- verify ----------------------------------------------------------------------------- */

static enum fk_err check_header(const struct fk_oauth_key *k, const uint8_t *h, size_t hlen,
                                struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *o = cJSON_ParseWithLength((const char *)h, hlen);
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "header: not a JSON object"));
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(o, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(o, "typ");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(o, "kid");
    FK_ENSURE(cJSON_IsString(alg), fk_diag_set(diag, FK_E_PARSE, "header: alg missing"));
    /* RFC 8725 3.1: the algorithm is ours to choose, never the token's. */
    FK_ENSURE(strcmp(alg->valuestring, "ES256") == 0,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "header: alg %.16s refused (only ES256)",
                          alg->valuestring));
    /* RFC 9068 4: typ at+jwt, so that an ID token or other JWT is not taken for ours. */
    FK_ENSURE(cJSON_IsString(typ) && strcmp(typ->valuestring, "at+jwt") == 0,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "header: typ must be at+jwt"));
    FK_ENSURE(cJSON_GetObjectItemCaseSensitive(o, "crit") == NULL,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "header: crit not supported"));
    FK_ENSURE(cJSON_IsString(kid) && strcmp(kid->valuestring, k->kid) == 0,
              fk_diag_set(diag, FK_E_VERIFY, "header: kid is not the server's key"));
    rc = FK_OK;
out:
    cJSON_Delete(o);
    return rc;
}

enum fk_err fk_oauth_jwt_verify(const struct fk_oauth_key *k, const char *tok, size_t len,
                                long long now, struct fk_oauth_claims *out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_MD_CTX *md = NULL;
    uint8_t hdr[HDR_MAX], pay[PAYLOAD_MAX], raw[64], der[80];
    size_t hlen = 0, plen = 0, rawlen = 0, derlen = 0;
    struct fk_oauth_claims c;
    FK_ENSURE(len <= FK_OAUTH_TOKEN_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "token: %zu bytes (max %u)", len, FK_OAUTH_TOKEN_MAX));
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    FK_ENSURE(d2 != NULL && memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) == NULL,
              fk_diag_set(diag, FK_E_PARSE, "token: expected three dot-separated parts"));
    FK_ENSURE(fk_b64url_decode(tok, (size_t)(d1 - tok), hdr, sizeof hdr, &hlen) == FK_OK,
              fk_diag_set(diag, FK_E_PARSE, "token: header is not base64url (or too long)"));
    FK_GUARD(check_header(k, hdr, hlen, diag));
    FK_ENSURE(fk_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), raw, sizeof raw, &rawlen) ==
                      FK_OK &&
                  rawlen == 64,
              fk_diag_set(diag, FK_E_PARSE, "token: signature is not 64 bytes of base64url"));
    FK_GUARD(fk_oauth_sig_raw_to_der(raw, der, sizeof der, &derlen));
    md = EVP_MD_CTX_new();
    FK_ENSURE(md != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey), FK_E_CRYPTO);
    FK_ENSURE(EVP_DigestVerify(md, der, derlen, (const unsigned char *)tok, (size_t)(d2 - tok)) ==
                  1,
              fk_diag_set(diag, FK_E_VERIFY, "token: bad signature"));
    FK_ENSURE(fk_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pay, sizeof pay, &plen) == FK_OK,
              fk_diag_set(diag, FK_E_PARSE, "token: claims are not base64url (or too long)"));
    FK_GUARD(fk_oauth_claims_parse(pay, plen, &c, diag));
    FK_ENSURE(c.exp > now - FK_OAUTH_LEEWAY_S,
              fk_diag_set(diag, FK_E_STATE, "token: expired %lld s ago", now - c.exp));
    FK_ENSURE(c.iat <= now + FK_OAUTH_LEEWAY_S,
              fk_diag_set(diag, FK_E_STATE, "token: issued in the future"));
    *out = c;
    rc = FK_OK;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

/* ---- thumbprints, random tokens --------------------------------------------------------- */

enum fk_err fk_oauth_sha256_b64(const void *s, size_t len, char out[FK_OAUTH_B64_32]) {
    uint8_t md[32];
    unsigned mdlen = 0;
    if (EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        return FK_E_CRYPTO;
    }
    return fk_b64url_encode(md, sizeof md, out, FK_OAUTH_B64_32, NULL);
}

enum fk_err fk_oauth_x5t_s256(const uint8_t *der, size_t len, char out[FK_OAUTH_B64_32]) {
    if (der == NULL || len == 0) {
        return FK_E_ARG;
    }
    return fk_oauth_sha256_b64(der, len, out);
}

enum fk_err fk_oauth_random_b64(size_t n, char *out, size_t out_size) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t r[32];
    FK_ENSURE(n >= 1 && n <= sizeof r, FK_E_ARG);
    FK_GUARD(fk_random(r, n));
    FK_GUARD(fk_b64url_encode(r, n, out, out_size, NULL));
    rc = FK_OK;
out:
    fk_wipe(r, sizeof r);
    return rc;
}
