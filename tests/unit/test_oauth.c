/* OAuth2 token primitives (src/oauth): base64url both ways and its strictness, ES256 JWTs
 * signed by us and verified by us and by OpenSSL directly (DER signature built here from r||s
 * by hand, not by our converter), every refusal of fk_oauth_jwt_verify (alg none/HS256,
 * typ, kid, bad signature, expired, future iat, wrong aud/iss, malformed base64url and JSON,
 * oversized), JWKS, thumbprints, scopes and form bodies. */
#include "fleetkey/oauth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOW 1800000000LL

/* A fresh P-256 key as OpenSSL holds it (*pkey, when non-NULL; the caller frees it) and as
 * fk_oauth loads it from PEM. */
static struct fk_oauth_key *key_pair(EVP_PKEY **pkey) {
    EVP_PKEY *p = EVP_EC_gen("P-256");
    assert_non_null(p);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, p, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    struct fk_oauth_key *k = NULL;
    assert_int_equal(fk_oauth_key_from_pem((const uint8_t *)data, (size_t)n, &k, NULL), FK_OK);
    BIO_free(b);
    if (pkey != NULL) {
        *pkey = p;
    } else {
        EVP_PKEY_free(p);
    }
    return k;
}

static struct fk_oauth_key *key_new(void) {
    return key_pair(NULL);
}

static void claims_fill(struct fk_oauth_claims *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->sub, "alice");
    strcpy(c->client_id, "alice");
    assert_int_equal(fk_oauth_random_b64(16, c->jti, sizeof c->jti), FK_OK);
    assert_int_equal(fk_oauth_x5t_s256((const uint8_t *)"cert", 4, c->x5t), FK_OK);
    c->scope = FK_SCOPE_FLEET_READ | FK_SCOPE_ROBOT_COMMAND;
    c->iat = NOW;
    c->exp = NOW + 3600;
}

static char tok[FK_OAUTH_TOKEN_MAX + 1];

static void sign(struct fk_oauth_key *k, const struct fk_oauth_claims *c) {
    assert_int_equal(fk_oauth_jwt_sign(k, c, tok, sizeof tok), FK_OK);
}

static enum fk_err verify(struct fk_oauth_key *k, const char *t, long long now) {
    struct fk_oauth_claims out;
    struct fk_diag d;
    fk_diag_init(&d);
    return fk_oauth_jwt_verify(k, t, strlen(t), now, &out, &d);
}

/* A token of our own making from raw header and claims JSON, signed by OpenSSL with pkey (a
 * bogus signature when pkey is NULL). */
static void forge(EVP_PKEY *pkey, const char *hdr, const char *claims, char *out, size_t size) {
    size_t n = 0, o = 0;
    assert_int_equal(fk_b64url_encode(hdr, strlen(hdr), out, size, &n), FK_OK);
    o = n;
    out[o++] = '.';
    assert_int_equal(fk_b64url_encode(claims, strlen(claims), out + o, size - o, &n), FK_OK);
    o += n;
    uint8_t raw[64];
    memset(raw, 0x11, sizeof raw);
    if (pkey != NULL) {
        uint8_t der[80];
        size_t dl = sizeof der;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey), 1);
        assert_int_equal(EVP_DigestSign(md, der, &dl, (const unsigned char *)out, o), 1);
        EVP_MD_CTX_free(md);
        assert_int_equal(fk_oauth_sig_der_to_raw(der, dl, raw), FK_OK);
    }
    out[o++] = '.';
    assert_int_equal(fk_b64url_encode(raw, 64, out + o, size - o, &n), FK_OK);
}

/* ---- base64url -------------------------------------------------------------------------- */

static void b64url_round_trips_every_length(void **state) {
    (void)state;
    uint8_t in[40], back[40];
    char enc[64];
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++) {
            in[i] = (uint8_t)(i * 37 + n + 0xf0);
        }
        size_t el = 0, bl = 0;
        assert_int_equal(fk_b64url_encode(in, n, enc, sizeof enc, &el), FK_OK);
        assert_null(strpbrk(enc, "+/="));
        assert_int_equal(fk_b64url_decode(enc, el, back, sizeof back, &bl), FK_OK);
        assert_int_equal(bl, n);
        assert_memory_equal(in, back, n);
    }
}

static void b64url_matches_rfc4648_vectors(void **state) {
    (void)state;
    char enc[16];
    assert_int_equal(fk_b64url_encode("foobar", 6, enc, sizeof enc, NULL), FK_OK);
    assert_string_equal(enc, "Zm9vYmFy");
    assert_int_equal(fk_b64url_encode("fo", 2, enc, sizeof enc, NULL), FK_OK);
    assert_string_equal(enc, "Zm8");
    uint8_t x[3] = {0xfb, 0xff, 0xbf};
    assert_int_equal(fk_b64url_encode(x, 3, enc, sizeof enc, NULL), FK_OK);
    assert_string_equal(enc, "-_-_");
    assert_int_equal(fk_b64url_encode(x, 3, enc, 4, NULL), FK_E_NOSPACE);
}

static void b64url_decode_rejects_non_canonical_input(void **state) {
    (void)state;
    uint8_t out[16];
    size_t n = 0;
    assert_int_equal(fk_b64url_decode("Zm8=", 4, out, sizeof out, &n), FK_E_PARSE); /* padding */
    assert_int_equal(fk_b64url_decode("Zm+v", 4, out, sizeof out, &n), FK_E_PARSE); /* std */
    assert_int_equal(fk_b64url_decode("Zm 9", 4, out, sizeof out, &n), FK_E_PARSE);
    assert_int_equal(fk_b64url_decode("Zm9vY", 5, out, sizeof out, &n), FK_E_PARSE); /* %4==1 */
    assert_int_equal(fk_b64url_decode("Zm9", 3, out, sizeof out, &n), FK_E_PARSE);   /* pad bits */
    assert_int_equal(fk_b64url_decode("Zm8", 3, out, sizeof out, &n), FK_OK);
    assert_int_equal(fk_b64url_decode("Zm9vYmFy", 8, out, 5, &n), FK_E_NOSPACE);
    assert_int_equal(fk_b64url_decode("Zm\0v", 4, out, sizeof out, &n), FK_E_PARSE);
}

/* ---- JWT -------------------------------------------------------------------------------- */

static void jwt_sign_then_verify_gives_the_claims(void **state) {
    (void)state;
    struct fk_oauth_key *k = key_new();
    struct fk_oauth_claims c, out;
    claims_fill(&c);
    sign(k, &c);
    assert_int_equal(fk_oauth_jwt_verify(k, tok, strlen(tok), NOW + 10, &out, NULL), FK_OK);
    assert_string_equal(out.sub, "alice");
    assert_string_equal(out.client_id, "alice");
    assert_string_equal(out.jti, c.jti);
    assert_string_equal(out.x5t, c.x5t);
    assert_int_equal(out.scope, c.scope);
    assert_true(out.exp == c.exp && out.iat == c.iat);
    /* The header is exactly what the contract says. */
    uint8_t h[128];
    size_t hl = 0;
    assert_int_equal(fk_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok), h, sizeof h, &hl),
                     FK_OK);
    char want[96];
    snprintf(want, sizeof want, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}",
             fk_oauth_key_kid(k));
    assert_int_equal(hl, strlen(want));
    assert_memory_equal(h, want, hl);
    fk_oauth_key_free(k);
}

/* Independent check: OpenSSL verifies our r||s after a DER re-encoding written out here by
 * hand (INTEGERs with a 0x00 in front when the top bit is set, leading zeros dropped). */
static size_t der_int(uint8_t *o, const uint8_t *v) {
    size_t i = 0;
    while (i < 31 && v[i] == 0 && !(v[i + 1] & 0x80)) {
        i++;
    }
    size_t n = 32 - i;
    size_t p = 0;
    o[p++] = 0x02;
    if (v[i] & 0x80) {
        o[p++] = (uint8_t)(n + 1);
        o[p++] = 0;
    } else {
        o[p++] = (uint8_t)n;
    }
    memcpy(o + p, v + i, n);
    return p + n;
}

static void jwt_signature_verifies_with_openssl_directly(void **state) {
    (void)state;
    for (int round = 0; round < 16; round++) {
        EVP_PKEY *p = NULL;
        struct fk_oauth_key *k = key_pair(&p);
        struct fk_oauth_claims c;
        claims_fill(&c);
        sign(k, &c);
        const char *d2 = strrchr(tok, '.');
        uint8_t raw[64], der[80], body[72];
        size_t rl = 0;
        assert_int_equal(fk_b64url_decode(d2 + 1, strlen(d2 + 1), raw, sizeof raw, &rl), FK_OK);
        assert_int_equal(rl, 64);
        size_t bl = der_int(body, raw);
        bl += der_int(body + bl, raw + 32);
        der[0] = 0x30;
        der[1] = (uint8_t)bl;
        memcpy(der + 2, body, bl);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, p), 1);
        assert_int_equal(
            EVP_DigestVerify(md, der, bl + 2, (const unsigned char *)tok, (size_t)(d2 - tok)), 1);
        /* and our converter agrees byte for byte */
        uint8_t der2[80];
        size_t dl2 = 0;
        assert_int_equal(fk_oauth_sig_raw_to_der(raw, der2, sizeof der2, &dl2), FK_OK);
        assert_int_equal(dl2, bl + 2);
        assert_memory_equal(der2, der, dl2);
        EVP_MD_CTX_free(md);
        fk_oauth_key_free(k);
        EVP_PKEY_free(p);
    }
}

static void jwt_verify_accepts_a_token_signed_by_openssl(void **state) {
    (void)state;
    EVP_PKEY *p = NULL;
    struct fk_oauth_key *k = key_pair(&p);
    char hdr[128], cl[512], t[1024];
    snprintf(hdr, sizeof hdr, "{\"typ\":\"at+jwt\",\"alg\":\"ES256\",\"kid\":\"%s\"}",
             fk_oauth_key_kid(k));
    snprintf(cl, sizeof cl,
             "{\"iss\":\"fleetkey\",\"aud\":[\"x\",\"fleetkey\"],\"sub\":\"bob\",\"client_id\":"
             "\"bob\",\"iat\":%lld,\"exp\":%lld,\"jti\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"scope\":"
             "\"fleet:read\",\"cnf\":{\"x5t#S256\":\"%s\"}}",
             NOW, NOW + 60, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFE");
    forge(p, hdr, cl, t, sizeof t);
    struct fk_oauth_claims out;
    assert_int_equal(fk_oauth_jwt_verify(k, t, strlen(t), NOW, &out, NULL), FK_OK);
    assert_string_equal(out.sub, "bob");
    assert_int_equal(out.scope, FK_SCOPE_FLEET_READ);
    fk_oauth_key_free(k);
    EVP_PKEY_free(p);
}

static void jwt_verify_refuses_alg_none_hs256_and_other_typ(void **state) {
    (void)state;
    struct fk_oauth_key *k = key_new();
    EVP_PKEY *p = NULL; /* bogus signatures: the header is refused before it is checked */
    char cl[512], t[1024], hdr[128];
    snprintf(cl, sizeof cl,
             "{\"iss\":\"fleetkey\",\"aud\":\"fleetkey\",\"sub\":\"bob\",\"client_id\":\"bob\","
             "\"iat\":%lld,\"exp\":%lld,\"jti\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"scope\":\"\","
             "\"cnf\":{\"x5t#S256\":\"0123456789abcdefghijklmnopqrstuvwxyzABCDEFE\"}}",
             NOW, NOW + 60);
    const char *algs[] = {"none", "HS256", "ES384", "RS256", "es256"};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", algs[i],
                 fk_oauth_key_kid(k));
        forge(p, hdr, cl, t, sizeof t);
        assert_int_equal(verify(k, t, NOW), FK_E_UNSUPPORTED);
    }
    /* "none" with an empty signature part */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"none\"}");
    size_t n = 0;
    assert_int_equal(fk_b64url_encode(hdr, strlen(hdr), t, sizeof t, &n), FK_OK);
    t[n++] = '.';
    size_t m = 0;
    assert_int_equal(fk_b64url_encode(cl, strlen(cl), t + n, sizeof t - n, &m), FK_OK);
    strcat(t, ".");
    assert_int_equal(verify(k, t, NOW), FK_E_UNSUPPORTED);
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
             fk_oauth_key_kid(k));
    forge(p, hdr, cl, t, sizeof t);
    assert_int_equal(verify(k, t, NOW), FK_E_UNSUPPORTED);
    snprintf(hdr, sizeof hdr,
             "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"crit\":[\"exp\"]}",
             fk_oauth_key_kid(k));
    forge(p, hdr, cl, t, sizeof t);
    assert_int_equal(verify(k, t, NOW), FK_E_UNSUPPORTED);
    fk_oauth_key_free(k);
}

static void jwt_verify_refuses_bad_signature_and_other_key(void **state) {
    (void)state;
    struct fk_oauth_key *k = key_new();
    struct fk_oauth_key *k2 = key_new();
    struct fk_oauth_claims c;
    claims_fill(&c);
    sign(k, &c);
    assert_int_equal(verify(k, tok, NOW), FK_OK);
    assert_int_equal(verify(k2, tok, NOW), FK_E_VERIFY); /* kid differs */
    /* flip one bit in each part in turn: always refused */
    size_t len = strlen(tok);
    for (size_t i = 0; i < len; i += 7) {
        if (tok[i] == '.') {
            continue;
        }
        char save = tok[i];
        tok[i] = tok[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(verify(k, tok, NOW), FK_OK);
        tok[i] = save;
    }
    /* a claims part swapped for another token's: signature check fails */
    char other[FK_OAUTH_TOKEN_MAX + 1];
    strcpy(other, tok);
    c.scope = FK_SCOPE_ALL;
    sign(k, &c);
    char *a1 = strchr(other, '.'), *a2 = strrchr(other, '.');
    char *b1 = strchr(tok, '.'), *b2 = strrchr(tok, '.');
    char mixed[FK_OAUTH_TOKEN_MAX * 2];
    snprintf(mixed, sizeof mixed, "%.*s%.*s%s", (int)(a1 - other), other, (int)(b2 - b1), b1, a2);
    assert_int_equal(verify(k, mixed, NOW), FK_E_VERIFY);
    fk_oauth_key_free(k);
    fk_oauth_key_free(k2);
}

static void jwt_verify_applies_exp_and_iat_with_leeway(void **state) {
    (void)state;
    struct fk_oauth_key *k = key_new();
    struct fk_oauth_claims c;
    claims_fill(&c);
    sign(k, &c);
    assert_int_equal(verify(k, tok, c.exp + FK_OAUTH_LEEWAY_S - 1), FK_OK);
    assert_int_equal(verify(k, tok, c.exp + FK_OAUTH_LEEWAY_S), FK_E_STATE);
    assert_int_equal(verify(k, tok, c.iat - FK_OAUTH_LEEWAY_S), FK_OK);
    assert_int_equal(verify(k, tok, c.iat - FK_OAUTH_LEEWAY_S - 1), FK_E_STATE);
    fk_oauth_key_free(k);
}

static void jwt_verify_refuses_malformed_and_oversized_tokens(void **state) {
    (void)state;
    struct fk_oauth_key *k = key_new();
    struct fk_oauth_claims c;
    claims_fill(&c);
    sign(k, &c);
    char t[FK_OAUTH_TOKEN_MAX * 2];
    assert_int_equal(verify(k, "", NOW), FK_E_PARSE);
    assert_int_equal(verify(k, "a.b", NOW), FK_E_PARSE);
    assert_int_equal(verify(k, "a.b.c.d", NOW), FK_E_PARSE);
    snprintf(t, sizeof t, "%s.x", tok); /* four parts */
    assert_int_equal(verify(k, t, NOW), FK_E_PARSE);
    snprintf(t, sizeof t, "=%s", tok); /* not base64url */
    assert_int_equal(verify(k, t, NOW), FK_E_PARSE);
    snprintf(t, sizeof t, "%sAA", tok); /* signature of 65 bytes */
    assert_int_equal(verify(k, t, NOW), FK_E_PARSE);
    memset(t, 'A', FK_OAUTH_TOKEN_MAX + 1);
    t[10] = '.';
    t[20] = '.';
    t[FK_OAUTH_TOKEN_MAX + 1] = '\0';
    assert_int_equal(verify(k, t, NOW), FK_E_TOOBIG);
    /* the length given is what counts, not a NUL */
    struct fk_oauth_claims out;
    assert_int_equal(fk_oauth_jwt_verify(k, tok, strlen(tok) - 1, NOW, &out, NULL), FK_E_PARSE);
    fk_oauth_key_free(k);
}

static void claims_parse_refuses_wrong_aud_iss_and_shapes(void **state) {
    (void)state;
    const char *x5t = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFE";
    struct {
        const char *aud, *iss, *sub, *jti, *scope;
        const char *iat;
        enum fk_err want;
    } cases[] = {
        {"\"fleetkey\"", "\"fleetkey\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1", FK_OK},
        {"\"other\"", "\"fleetkey\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1",
         FK_E_PARSE},
        {"[\"other\"]", "\"fleetkey\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1",
         FK_E_PARSE},
        {"\"fleetkey\"", "\"evil\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1",
         FK_E_PARSE},
        {"\"fleetkey\"", "\"fleetkey\"", "\"a b\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1",
         FK_E_PARSE},
        {"\"fleetkey\"", "\"fleetkey\"", "\"a\"", "\"AAAA\"", "\"\"", "1", FK_E_PARSE},
        {"\"fleetkey\"", "\"fleetkey\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"root\"", "1",
         FK_E_PARSE},
        {"\"fleetkey\"", "\"fleetkey\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1.5",
         FK_E_PARSE},
        {"\"fleetkey\"", "\"fleetkey\"", "\"a\"", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "\"1\"",
         FK_E_PARSE},
        {"\"fleetkey\"", "\"fleetkey\"", "7", "\"AAAAAAAAAAAAAAAAAAAAAA\"", "\"\"", "1",
         FK_E_PARSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char js[640];
        int n = snprintf(js, sizeof js,
                         "{\"iss\":%s,\"aud\":%s,\"sub\":%s,\"client_id\":\"a\",\"iat\":%s,"
                         "\"exp\":2,\"jti\":%s,\"scope\":%s,\"cnf\":{\"x5t#S256\":\"%s\"}}",
                         cases[i].iss, cases[i].aud, cases[i].sub, cases[i].iat, cases[i].jti,
                         cases[i].scope, x5t);
        struct fk_oauth_claims c;
        assert_int_equal(fk_oauth_claims_parse((const uint8_t *)js, (size_t)n, &c, NULL),
                         cases[i].want);
        /* every truncation is refused */
        for (int cut = 0; cases[i].want == FK_OK && cut < n; cut++) {
            assert_int_equal(fk_oauth_claims_parse((const uint8_t *)js, (size_t)cut, &c, NULL),
                             FK_E_PARSE);
        }
    }
    static uint8_t big[FK_OAUTH_TOKEN_MAX + 1];
    struct fk_oauth_claims c;
    assert_int_equal(fk_oauth_claims_parse(big, sizeof big, &c, NULL), FK_E_TOOBIG);
    assert_int_equal(fk_oauth_claims_parse((const uint8_t *)"[1]", 3, &c, NULL), FK_E_PARSE);
}

static void sig_der_to_raw_refuses_non_canonical_der(void **state) {
    (void)state;
    uint8_t raw[64];
    /* r = 1 with a superfluous leading zero */
    const uint8_t bad[] = {0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01};
    assert_int_equal(fk_oauth_sig_der_to_raw(bad, sizeof bad, raw), FK_E_PARSE);
    const uint8_t good[] = {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02};
    assert_int_equal(fk_oauth_sig_der_to_raw(good, sizeof good, raw), FK_OK);
    assert_int_equal(raw[31], 1);
    assert_int_equal(raw[63], 2);
    assert_int_equal(fk_oauth_sig_der_to_raw(good, sizeof good - 1, raw), FK_E_PARSE);
    uint8_t trail[sizeof good + 1];
    memcpy(trail, good, sizeof good);
    trail[sizeof good] = 0;
    assert_int_equal(fk_oauth_sig_der_to_raw(trail, sizeof trail, raw), FK_E_PARSE);
}

/* ---- keys, JWKS ------------------------------------------------------------------------- */

static void key_is_created_0600_then_loaded_with_the_same_kid(void **state) {
    (void)state;
    const char *tmp = getenv("FK_TMP");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tmp != NULL ? tmp : "/tmp/test_oauth");
    assert_int_equal(fk_mkdirs(dir, 0700, NULL), FK_OK);
    snprintf(path, sizeof path, "%s/oauth-key.pem", dir);
    unlink(path);
    mode_t old = umask(0);
    struct fk_oauth_key *k = NULL, *k2 = NULL;
    int created = 0;
    assert_int_equal(fk_oauth_key_load_or_create(path, &k, &created, NULL), FK_OK);
    umask(old);
    assert_true(created);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(fk_oauth_key_load_or_create(path, &k2, &created, NULL), FK_OK);
    assert_false(created);
    assert_string_equal(fk_oauth_key_kid(k), fk_oauth_key_kid(k2));
    /* kid = base64url(SHA-256(SPKI DER))[0..16) */
    char pem[512];
    assert_int_equal(fk_oauth_key_public_pem(k, pem, sizeof pem), FK_OK);
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    unsigned char *spki = NULL;
    int n = i2d_PUBKEY(pub, &spki);
    uint8_t md[32];
    unsigned ml = 0;
    assert_int_equal(EVP_Digest(spki, (size_t)n, md, &ml, EVP_sha256(), NULL), 1);
    char kid[32];
    assert_int_equal(fk_b64url_encode(md, 16, kid, sizeof kid, NULL), FK_OK);
    assert_string_equal(kid, fk_oauth_key_kid(k));
    /* JWKS: x and y are the public point */
    char jwks[512];
    assert_int_equal(fk_oauth_jwks(k, jwks, sizeof jwks), FK_OK);
    cJSON *o = cJSON_Parse(jwks);
    cJSON *k0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "keys"), 0);
    assert_string_equal(cJSON_GetObjectItem(k0, "kty")->valuestring, "EC");
    assert_string_equal(cJSON_GetObjectItem(k0, "crv")->valuestring, "P-256");
    assert_string_equal(cJSON_GetObjectItem(k0, "alg")->valuestring, "ES256");
    assert_string_equal(cJSON_GetObjectItem(k0, "use")->valuestring, "sig");
    assert_string_equal(cJSON_GetObjectItem(k0, "kid")->valuestring, kid);
    uint8_t pt[65], x[40];
    size_t pl = 0, xl = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                     sizeof pt, &pl),
                     1);
    const char *xs = cJSON_GetObjectItem(k0, "x")->valuestring;
    assert_int_equal(fk_b64url_decode(xs, strlen(xs), x, sizeof x, &xl), FK_OK);
    assert_int_equal(xl, 32);
    assert_memory_equal(x, pt + 1, 32);
    cJSON_Delete(o);
    OPENSSL_free(spki);
    EVP_PKEY_free(pub);
    BIO_free(b);
    /* a key readable by others is refused */
    assert_int_equal(chmod(path, 0644), 0);
    struct fk_diag d;
    fk_diag_init(&d);
    struct fk_oauth_key *k3 = NULL;
    assert_int_equal(fk_oauth_key_load_or_create(path, &k3, NULL, &d), FK_E_POLICY);
    assert_non_null(strstr(d.msg, "chmod 600"));
    fk_oauth_key_free(k);
    fk_oauth_key_free(k2);
}

static void x5t_is_base64url_sha256(void **state) {
    (void)state;
    char x[FK_OAUTH_B64_32];
    /* SHA-256("abc") = ba7816bf... */
    assert_int_equal(fk_oauth_x5t_s256((const uint8_t *)"abc", 3, x), FK_OK);
    assert_string_equal(x, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    assert_int_equal(fk_oauth_x5t_s256((const uint8_t *)"", 0, x), FK_E_ARG);
}

/* ---- scopes and forms ------------------------------------------------------------------- */

static void scope_parse_and_format(void **state) {
    (void)state;
    unsigned m = 99;
    char s[FK_OAUTH_SCOPE_SIZE];
    assert_int_equal(fk_oauth_scope_parse("", 0, &m), FK_OK);
    assert_int_equal(m, 0);
    assert_int_equal(fk_oauth_scope_parse("robot:command fleet:read", 24, &m), FK_OK);
    assert_int_equal(m, FK_SCOPE_FLEET_READ | FK_SCOPE_ROBOT_COMMAND);
    fk_oauth_scope_format(m, s);
    assert_string_equal(s, "fleet:read robot:command");
    fk_oauth_scope_format(FK_SCOPE_ALL, s);
    assert_string_equal(s, "fleet:read fleet:write robot:command");
    assert_int_equal(fk_oauth_scope_parse("fleet:read ", 11, &m), FK_E_PARSE);
    assert_int_equal(fk_oauth_scope_parse(" fleet:read", 11, &m), FK_E_PARSE);
    assert_int_equal(fk_oauth_scope_parse("fleet:read  fleet:write", 23, &m), FK_E_PARSE);
    assert_int_equal(fk_oauth_scope_parse("admin", 5, &m), FK_E_PARSE);
    assert_int_equal(fk_oauth_scope_parse("fleet:readX", 10, &m), FK_OK); /* len counts */
}

static void form_get_decodes_and_refuses_bad_input(void **state) {
    (void)state;
    const char *b = "grant_type=refresh_token&scope=fleet%3Aread+robot%3Acommand&x=&y";
    char v[64];
    int f = 0;
    assert_int_equal(fk_oauth_form_get((const uint8_t *)b, strlen(b), "scope", v, sizeof v, &f),
                     FK_OK);
    assert_true(f);
    assert_string_equal(v, "fleet:read robot:command");
    assert_int_equal(fk_oauth_form_get((const uint8_t *)b, strlen(b), "x", v, sizeof v, &f), FK_OK);
    assert_true(f);
    assert_string_equal(v, "");
    assert_int_equal(fk_oauth_form_get((const uint8_t *)b, strlen(b), "y", v, sizeof v, &f), FK_OK);
    assert_true(f);
    assert_int_equal(fk_oauth_form_get((const uint8_t *)b, strlen(b), "z", v, sizeof v, &f), FK_OK);
    assert_false(f);
    assert_int_equal(fk_oauth_form_get((const uint8_t *)b, strlen(b), "grant_type", v, 5, &f),
                     FK_E_TOOBIG);
    const char *bads[] = {"a=%", "a=%4", "a=%zz", "a=%00", "a=%0a", "a=1&a=2", "a=\x01"};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        assert_int_equal(
            fk_oauth_form_get((const uint8_t *)bads[i], strlen(bads[i]), "a", v, sizeof v, &f),
            FK_E_PARSE);
    }
}

/* ---- the server's token state ----------------------------------------------------------- */

static void fam_fill(struct fk_oauth_family *f, const char *id, const char *rt) {
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", id);
    strcpy(f->client, "phone1");
    strcpy(f->kind, "mobile");
    assert_int_equal(fk_oauth_x5t_s256((const uint8_t *)"c", 1, f->x5t), FK_OK);
    f->scope = FK_SCOPE_FLEET_READ;
    assert_int_equal(fk_oauth_sha256_b64(rt, strlen(rt), f->rt_hash), FK_OK);
    f->rt_exp = NOW + 1000;
}

static void state_rotates_detects_reuse_and_revokes_the_family(void **state) {
    (void)state;
    struct fk_oauth_state *st = NULL;
    struct fk_oauth_family f, got;
    char h1[FK_OAUTH_B64_32], h2[FK_OAUTH_B64_32];
    assert_int_equal(fk_oauth_state_new(&st), FK_OK);
    fam_fill(&f, "FFFFFFFFFFFFFFFFFFFFFA", "rt1");
    assert_int_equal(fk_oauth_state_family_add(st, &f, "JJJJJJJJJJJJJJJJJJJJJA", NOW + 100), FK_OK);
    assert_int_equal(fk_oauth_state_family_add(st, &f, NULL, 0), FK_E_EXISTS);
    assert_int_equal(fk_oauth_sha256_b64("rt1", 3, h1), FK_OK);
    assert_int_equal(fk_oauth_sha256_b64("rt2", 3, h2), FK_OK);
    assert_int_equal(fk_oauth_state_rt_find(st, h1, NOW, &got), FK_OAUTH_RT_ACTIVE);
    assert_string_equal(got.id, f.id);
    assert_int_equal(fk_oauth_state_rt_find(st, h1, NOW + 1000, NULL), FK_OAUTH_RT_EXPIRED);
    assert_int_equal(fk_oauth_state_rt_find(st, h2, NOW, NULL), FK_OAUTH_RT_UNKNOWN);
    assert_int_equal(
        fk_oauth_state_rt_rotate(st, f.id, h2, NOW + 2000, "JJJJJJJJJJJJJJJJJJJJJB", NOW + 200),
        FK_OK);
    assert_int_equal(fk_oauth_state_rt_find(st, h1, NOW, NULL), FK_OAUTH_RT_SPENT);
    assert_int_equal(fk_oauth_state_rt_find(st, h2, NOW, NULL), FK_OAUTH_RT_ACTIVE);
    assert_false(fk_oauth_state_jti_revoked(st, "JJJJJJJJJJJJJJJJJJJJJA"));
    assert_int_equal(fk_oauth_state_family_revoke(st, f.id), FK_OK);
    assert_int_equal(fk_oauth_state_rt_find(st, h2, NOW, NULL), FK_OAUTH_RT_REVOKED);
    assert_true(fk_oauth_state_jti_revoked(st, "JJJJJJJJJJJJJJJJJJJJJA"));
    assert_true(fk_oauth_state_jti_revoked(st, "JJJJJJJJJJJJJJJJJJJJJB"));
    assert_int_equal(
        fk_oauth_state_rt_rotate(st, f.id, h1, NOW + 2000, "JJJJJJJJJJJJJJJJJJJJJC", NOW + 200),
        FK_E_STATE);
    assert_int_equal(fk_oauth_state_family_revoke(st, "nope"), FK_E_NOTFOUND);
    /* survives a save and a load */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(fk_oauth_state_serialize(st, &text, &len), FK_OK);
    assert_null(strstr(text, "rt1")); /* hashes only */
    struct fk_oauth_state *st2 = NULL;
    assert_int_equal(fk_oauth_state_parse((const uint8_t *)text, len, &st2, NULL), FK_OK);
    assert_int_equal(fk_oauth_state_rt_find(st2, h1, NOW, NULL), FK_OAUTH_RT_SPENT);
    assert_int_equal(fk_oauth_state_rt_find(st2, h2, NOW, NULL), FK_OAUTH_RT_REVOKED);
    assert_true(fk_oauth_state_jti_revoked(st2, "JJJJJJJJJJJJJJJJJJJJJB"));
    /* the horizon counts live families only: f is revoked, a second one is not */
    long long rt = -1, at = -1;
    fk_oauth_state_horizon(st2, NOW, &rt, &at);
    assert_true(rt == 0 && at == 0);
    struct fk_oauth_family g;
    fam_fill(&g, "GGGGGGGGGGGGGGGGGGGGGA", "rt3");
    g.rt_exp = NOW + 3000;
    assert_int_equal(fk_oauth_state_family_add(st2, &g, "JJJJJJJJJJJJJJJJJJJJJD", NOW + 300), FK_OK);
    fk_oauth_state_horizon(st2, NOW, &rt, &at);
    assert_true(rt == NOW + 3000 && at == NOW + 300);
    fk_oauth_state_horizon(st2, NOW + 300, &rt, &at); /* the access token has expired */
    assert_true(rt == NOW + 3000 && at == 0);
    assert_int_equal(fk_oauth_state_family_revoke(st2, g.id), FK_OK);
    /* pruning forgets what expired: denylist entries after their exp (+ leeway), families
     * whose refresh and access tokens all expired */
    fk_oauth_state_prune(st2, NOW + 150 + FK_OAUTH_LEEWAY_S);
    assert_false(fk_oauth_state_jti_revoked(st2, "JJJJJJJJJJJJJJJJJJJJJA"));
    assert_true(fk_oauth_state_jti_revoked(st2, "JJJJJJJJJJJJJJJJJJJJJB"));
    fk_oauth_state_prune(st2, NOW + 5000);
    size_t nf = 9, nd = 9;
    fk_oauth_state_counts(st2, &nf, &nd);
    assert_int_equal(nf, 0);
    assert_int_equal(nd, 0);
    assert_int_equal(fk_oauth_state_rt_find(st2, h1, NOW, NULL), FK_OAUTH_RT_UNKNOWN);
    free(text);
    fk_oauth_state_free(st);
    fk_oauth_state_free(st2);
}

static void state_parse_refuses_damaged_documents(void **state) {
    (void)state;
    const char *h = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFE";
    char good[1024];
    int n = snprintf(good, sizeof good,
                     "{\"version\":1,\"families\":[{\"id\":\"FFFFFFFFFFFFFFFFFFFFFA\","
                     "\"client\":\"p\",\"kind\":\"mobile\",\"x5t\":\"%s\",\"scope\":1,"
                     "\"rt_hash\":\"%s\",\"rt_exp\":5,\"revoked\":false,\"spent\":[\"%s\"],"
                     "\"jtis\":[{\"jti\":\"JJJJJJJJJJJJJJJJJJJJJA\",\"exp\":3}]}],"
                     "\"revoked_jti\":[]}",
                     h, h, h);
    struct fk_oauth_state *st = NULL;
    assert_int_equal(fk_oauth_state_parse((const uint8_t *)good, (size_t)n, &st, NULL), FK_OK);
    fk_oauth_state_free(st);
    for (int cut = 0; cut < n; cut++) {
        assert_int_not_equal(fk_oauth_state_parse((const uint8_t *)good, (size_t)cut, &st, NULL),
                             FK_OK);
        assert_null(st);
    }
    struct {
        const char *from, *to;
        enum fk_err want;
    } edits[] = {
        {"\"version\":1", "\"version\":2", FK_E_UNSUPPORTED},
        {"\"scope\":1", "\"scope\":9", FK_E_PARSE},
        {"\"rt_exp\":5", "\"rt_exp\":-5", FK_E_PARSE},
        {"\"revoked\":false", "\"revoked\":0", FK_E_PARSE},
        {"\"exp\":3", "\"exp\":\"3\"", FK_E_PARSE},
        {"JJJJJJJJJJJJJJJJJJJJJA", "JJJ", FK_E_PARSE},
        {"\"client\":\"p\"", "\"client\":\"\"", FK_E_PARSE},
        {"\"revoked_jti\":[]", "\"revoked_jti\":{}", FK_E_PARSE},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char bad[1100];
        const char *at = strstr(good, edits[i].from);
        assert_non_null(at);
        int m = snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - good), good, edits[i].to,
                         at + strlen(edits[i].from));
        struct fk_diag d;
        fk_diag_init(&d);
        assert_int_equal(fk_oauth_state_parse((const uint8_t *)bad, (size_t)m, &st, &d),
                         edits[i].want);
        assert_true(d.msg[0] != '\0');
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64url_round_trips_every_length),
        cmocka_unit_test(b64url_matches_rfc4648_vectors),
        cmocka_unit_test(b64url_decode_rejects_non_canonical_input),
        cmocka_unit_test(jwt_sign_then_verify_gives_the_claims),
        cmocka_unit_test(jwt_signature_verifies_with_openssl_directly),
        cmocka_unit_test(jwt_verify_accepts_a_token_signed_by_openssl),
        cmocka_unit_test(jwt_verify_refuses_alg_none_hs256_and_other_typ),
        cmocka_unit_test(jwt_verify_refuses_bad_signature_and_other_key),
        cmocka_unit_test(jwt_verify_applies_exp_and_iat_with_leeway),
        cmocka_unit_test(jwt_verify_refuses_malformed_and_oversized_tokens),
        cmocka_unit_test(claims_parse_refuses_wrong_aud_iss_and_shapes),
        cmocka_unit_test(sig_der_to_raw_refuses_non_canonical_der),
        cmocka_unit_test(key_is_created_0600_then_loaded_with_the_same_kid),
        cmocka_unit_test(x5t_is_base64url_sha256),
        cmocka_unit_test(scope_parse_and_format),
        cmocka_unit_test(form_get_decodes_and_refuses_bad_input),
        cmocka_unit_test(state_rotates_detects_reuse_and_revokes_the_family),
        cmocka_unit_test(state_parse_refuses_damaged_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
