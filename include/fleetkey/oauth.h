/* fleetkey oauth: the token primitives of the control plane's OAuth2 endpoint (docs/oauth.md):
 * base64url (RFC 4648 section 5, no padding), ES256 JWT access tokens (RFC 7515/7519/9068)
 * signed and verified with a P-256 key, their claims, the JWKS document, the RFC 8705
 * certificate thumbprint (cnf "x5t#S256"), scopes, opaque random tokens and the
 * application/x-www-form-urlencoded bodies of the token and revocation requests.
 *
 * Every parser takes (buf, len), trusts no length and never reads past len; nothing here
 * prints, exits or keeps global state. Functions are thread-safe; a struct fk_oauth_key may be
 * shared by threads once loaded (it is only read). */
#ifndef FLEETKEY_OAUTH_H
#define FLEETKEY_OAUTH_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_OAUTH_ISSUER "fleetkey"
#define FK_OAUTH_AUDIENCE "fleetkey"
#define FK_OAUTH_LEEWAY_S 60     /* clock skew tolerated on exp and iat */
#define FK_OAUTH_TOKEN_MAX 2048u /* longest access token accepted, bytes */
#define FK_OAUTH_B64_32 44       /* base64url of 32 bytes (43 chars) + NUL */
#define FK_OAUTH_JTI_SIZE 23     /* base64url of 16 bytes (22 chars) + NUL */
#define FK_OAUTH_KID_SIZE 23     /* base64url of 16 bytes (22 chars) + NUL */
#define FK_OAUTH_NAME_MAX 64     /* sub / client_id, as FK_WSS_ID_MAX */
#define FK_OAUTH_SCOPE_SIZE 64   /* "fleet:read fleet:write robot:command" + NUL */

/* Scopes (docs/oauth.md, "Scopes"), as bits. */
enum {
    FK_SCOPE_FLEET_READ = 1u << 0,    /* GET /api/..., list_devices on wss */
    FK_SCOPE_FLEET_WRITE = 1u << 1,   /* POST /api/... */
    FK_SCOPE_ROBOT_COMMAND = 1u << 2, /* commands on wss */
    FK_SCOPE_ALL = 7u
};

/* ---- base64url ------------------------------------------------------------------------ */
/* base64url without padding of n bytes into out (NUL-terminated); *out_len (may be NULL) gets
 * the length without the NUL. FK_OK, FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_b64url_encode(const void *in, size_t n, char *out, size_t out_size,
                                           size_t *out_len);
/* Strict decode: only [A-Za-z0-9_-], no padding, no white space, len % 4 != 1 and the unused
 * low bits of the last character zero (one encoding per value). FK_OK, FK_E_PARSE,
 * FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_b64url_decode(const char *in, size_t len, uint8_t *out,
                                           size_t out_size, size_t *out_len);

/* ---- scopes --------------------------------------------------------------------------- */
/* Parses a space-separated scope list (len bytes, no NUL needed) into *mask. Empty → 0.
 * FK_OK; FK_E_PARSE (an unknown scope, a bad separator). */
FK_MUST_CHECK enum fk_err fk_oauth_scope_parse(const char *s, size_t len, unsigned *mask);
/* The canonical list of mask ("fleet:read robot:command"), into out[FK_OAUTH_SCOPE_SIZE]. */
void fk_oauth_scope_format(unsigned mask, char out[FK_OAUTH_SCOPE_SIZE]);

/* ---- claims --------------------------------------------------------------------------- */
/* The claims of a fleetkey access token (docs/oauth.md, "Access tokens"). */
struct fk_oauth_claims {
    char sub[FK_OAUTH_NAME_MAX + 1];
    char client_id[FK_OAUTH_NAME_MAX + 1];
    char jti[FK_OAUTH_JTI_SIZE];
    char x5t[FK_OAUTH_B64_32]; /* cnf "x5t#S256" */
    unsigned scope;            /* FK_SCOPE_* bits */
    long long iat, exp;
};

/* Parses a JWT claims set (JSON, len bytes) and checks its shape: iss and aud (a string or an
 * array holding it) are "fleetkey", sub/client_id are names (1..64 of [A-Za-z0-9._-]), jti is
 * 22 base64url characters, iat/exp are integers, scope lists known scopes, cnf.x5t#S256 is 43
 * base64url characters. Times are not compared here (fk_oauth_jwt_verify does).
 * FK_OK, FK_E_TOOBIG (len > FK_OAUTH_TOKEN_MAX), FK_E_PARSE (diag names the claim). */
FK_MUST_CHECK enum fk_err fk_oauth_claims_parse(const uint8_t *buf, size_t len,
                                                struct fk_oauth_claims *out, struct fk_diag *diag);

/* ---- keys, JWS, JWKS ------------------------------------------------------------------ */
struct fk_oauth_key; /* an ES256 (P-256) key pair, or a public key only */

/* Loads the PKCS#8/SEC1 PEM private key at path, or, when path does not exist, generates a
 * P-256 key and writes it there (0600, atomically); *created (may be NULL) says which. A key
 * file readable by group or others, or not P-256, is refused. FK_OK, FK_E_IO, FK_E_CRYPTO,
 * FK_E_POLICY (mode), FK_E_UNSUPPORTED (not P-256); diag names the file. */
FK_MUST_CHECK enum fk_err fk_oauth_key_load_or_create(const char *path, struct fk_oauth_key **out,
                                                      int *created, struct fk_diag *diag);
/* A key from PEM bytes: a private key (signs and verifies) or a public key (verifies only).
 * FK_OK, FK_E_CRYPTO, FK_E_UNSUPPORTED. */
FK_MUST_CHECK enum fk_err fk_oauth_key_from_pem(const uint8_t *pem, size_t len,
                                                struct fk_oauth_key **out, struct fk_diag *diag);
/* Frees (the private key is wiped by OpenSSL). NULL is a no-op. */
void fk_oauth_key_free(struct fk_oauth_key *k);
/* The key id: base64url of the first 16 bytes of SHA-256(SubjectPublicKeyInfo DER). Borrowed,
 * valid while k lives. */
const char *fk_oauth_key_kid(const struct fk_oauth_key *k);
/* The public key as SubjectPublicKeyInfo PEM (NUL-terminated). FK_OK, FK_E_NOSPACE. */
FK_MUST_CHECK enum fk_err fk_oauth_key_public_pem(const struct fk_oauth_key *k, char *out,
                                                  size_t out_size);
/* The JWKS document {"keys":[{"kty":"EC","crv":"P-256","x","y","kid","use":"sig",
 * "alg":"ES256"}]} into out (NUL-terminated). FK_OK, FK_E_NOSPACE, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_oauth_jwks(const struct fk_oauth_key *k, char *out, size_t out_size);

/* Signs c as an access token: header {"alg":"ES256","typ":"at+jwt","kid"}, claims iss, aud,
 * sub, client_id, iat, exp, jti, scope, cnf. out gets the compact JWS (NUL-terminated).
 * FK_OK, FK_E_ARG (k has no private key, a claim out of shape), FK_E_NOSPACE, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_oauth_jwt_sign(const struct fk_oauth_key *k,
                                            const struct fk_oauth_claims *c, char *out,
                                            size_t out_size);
/* Verifies the compact JWS tok (len bytes): three base64url parts, header alg exactly "ES256"
 * ("none", HS256 and any other refused), typ "at+jwt", kid = k's, no "crit"; the P-256
 * signature (64 bytes r||s, RFC 7518 3.4); then the claims (fk_oauth_claims_parse), exp >
 * now - FK_OAUTH_LEEWAY_S and iat <= now + FK_OAUTH_LEEWAY_S. *out is filled only on FK_OK.
 * FK_OK; FK_E_TOOBIG; FK_E_PARSE (malformed); FK_E_UNSUPPORTED (alg, typ, crit); FK_E_VERIFY
 * (signature, kid); FK_E_STATE (expired, issued in the future). diag says which. */
FK_MUST_CHECK enum fk_err fk_oauth_jwt_verify(const struct fk_oauth_key *k, const char *tok,
                                              size_t len, long long now,
                                              struct fk_oauth_claims *out, struct fk_diag *diag);

/* JOSE ES256 signature (r||s, 32 bytes each) <-> ASN.1 DER ECDSA-Sig-Value. raw_to_der:
 * out_size >= 72. FK_OK, FK_E_PARSE (DER not one canonical ECDSA-Sig-Value, r or s wider than
 * 32 bytes), FK_E_NOSPACE, FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_oauth_sig_der_to_raw(const uint8_t *der, size_t len, uint8_t raw[64]);
FK_MUST_CHECK enum fk_err fk_oauth_sig_raw_to_der(const uint8_t raw[64], uint8_t *out,
                                                  size_t out_size, size_t *out_len);

/* ---- certificates, random tokens, hashes ---------------------------------------------- */
/* RFC 8705 3.1: base64url(SHA-256(certificate DER)) into out. FK_OK, FK_E_ARG (len 0),
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_oauth_x5t_s256(const uint8_t *der, size_t len,
                                            char out[FK_OAUTH_B64_32]);
/* n (1..32) random bytes from the DRBG as base64url into out. FK_OK, FK_E_ARG, FK_E_NOSPACE,
 * FK_E_CRYPTO. */
FK_MUST_CHECK enum fk_err fk_oauth_random_b64(size_t n, char *out, size_t out_size);
/* base64url(SHA-256(s[0..len))) into out: what the server stores of a refresh token. */
FK_MUST_CHECK enum fk_err fk_oauth_sha256_b64(const void *s, size_t len, char out[FK_OAUTH_B64_32]);

/* ---- application/x-www-form-urlencoded ------------------------------------------------ */
/* Finds parameter name in the body buf[0..len) and percent-decodes its value ('+' = space)
 * into out (NUL-terminated). *found (may be NULL) 1 when present. A value may not contain a
 * NUL or control character. RFC 6749 3.1: a parameter sent twice is an error.
 * FK_OK (also when absent: out ""); FK_E_PARSE (bad %-escape, control character, repeated);
 * FK_E_TOOBIG (the value does not fit out). */
FK_MUST_CHECK enum fk_err fk_oauth_form_get(const uint8_t *buf, size_t len, const char *name,
                                            char *out, size_t out_size, int *found);

/* ---- the server's durable token state ------------------------------------------------- */
/* What fleetkey-server remembers of the tokens it issued (docs/oauth.md, "Storage"): refresh
 * token families (one per client_credentials grant; each refresh rotates the family's token,
 * the old one's hash is kept as spent so that its reuse is recognised) and the denylist of
 * revoked access token ids. Only SHA-256 hashes of refresh tokens are kept. The state
 * serialises to a versioned JSON document the server rewrites atomically. Not thread-safe. */
#define FK_OAUTH_SPENT_MAX 128 /* spent hashes remembered per family (oldest dropped) */
#define FK_OAUTH_STATE_MAX (16u * 1024u * 1024u) /* largest state document read */

struct fk_oauth_state;

struct fk_oauth_family {
    char id[FK_OAUTH_JTI_SIZE];         /* random, base64url */
    char client[FK_OAUTH_NAME_MAX + 1]; /* the certificate's name = client_id = sub */
    char kind[16];                      /* "mobile", "operator" */
    char x5t[FK_OAUTH_B64_32];          /* the certificate the family is bound to */
    unsigned scope;                     /* what the grant allowed (a refresh may narrow) */
    char rt_hash[FK_OAUTH_B64_32];      /* fk_oauth_sha256_b64 of the live refresh token */
    long long rt_exp;                   /* when the live refresh token expires */
    int revoked;
};

enum fk_oauth_rt {
    FK_OAUTH_RT_UNKNOWN, /* never issued, or forgotten after its family expired */
    FK_OAUTH_RT_ACTIVE,  /* the family's live refresh token, not expired */
    FK_OAUTH_RT_SPENT,   /* already used once: reuse (RFC 6819 5.2.2.3) */
    FK_OAUTH_RT_EXPIRED, /* live but past rt_exp */
    FK_OAUTH_RT_REVOKED  /* its family was revoked */
};

/* An empty state. FK_OK, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_new(struct fk_oauth_state **out);
/* Parses a state document (len bytes; version 1). FK_OK; FK_E_TOOBIG; FK_E_PARSE (diag names
 * the field); FK_E_UNSUPPORTED (another version); FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_parse(const uint8_t *buf, size_t len,
                                               struct fk_oauth_state **out, struct fk_diag *diag);
/* The document of st (malloc'd, NUL-terminated, *len without the NUL). FK_OK, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_serialize(const struct fk_oauth_state *st, char **out,
                                                   size_t *len);
/* Forgets what can no longer matter at now: families whose refresh token and access tokens
 * have all expired (plus leeway), denylist entries of expired tokens. */
void fk_oauth_state_prune(struct fk_oauth_state *st, long long now);
void fk_oauth_state_free(struct fk_oauth_state *st);

/* Adds family f (copied; f->id must be new) with its first access token jti. FK_OK, FK_E_ARG,
 * FK_E_EXISTS, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_family_add(struct fk_oauth_state *st,
                                                    const struct fk_oauth_family *f,
                                                    const char *jti, long long jti_exp);
/* Looks a refresh token up by its hash; *out (may be NULL) gets a copy of its family whenever
 * the answer is not UNKNOWN. Hashes are compared in constant time. */
enum fk_oauth_rt fk_oauth_state_rt_find(const struct fk_oauth_state *st,
                                        const char hash[FK_OAUTH_B64_32], long long now,
                                        struct fk_oauth_family *out);
/* Rotates family id's refresh token: the live hash becomes spent, new_hash is live until
 * rt_exp, jti joins the family's access tokens. FK_OK, FK_E_NOTFOUND, FK_E_STATE (revoked),
 * FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_rt_rotate(struct fk_oauth_state *st, const char *id,
                                                   const char new_hash[FK_OAUTH_B64_32],
                                                   long long rt_exp, const char *jti,
                                                   long long jti_exp);
/* Revokes family id: its refresh tokens stop working and every access token it issued joins
 * the denylist. FK_OK, FK_E_NOTFOUND, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_family_revoke(struct fk_oauth_state *st, const char *id);
/* Adds access token jti (valid until exp) to the denylist. FK_OK, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_oauth_state_jti_revoke(struct fk_oauth_state *st, const char *jti,
                                                    long long exp);
/* 1 when jti is on the denylist. */
int fk_oauth_state_jti_revoked(const struct fk_oauth_state *st, const char *jti);
/* Counts for metrics: live families, denylist entries. */
void fk_oauth_state_counts(const struct fk_oauth_state *st, size_t *families, size_t *denied);
/* The expiry horizon at now, over families not revoked: *rt_soonest the earliest expiry of a
 * live refresh token (after it, that client must log in again), *at_latest the latest expiry
 * of an access token issued (until then a token of the state may still be presented). 0 when
 * there is none. */
void fk_oauth_state_horizon(const struct fk_oauth_state *st, long long now, long long *rt_soonest,
                            long long *at_latest);

#ifdef __cplusplus
}
#endif

#endif
