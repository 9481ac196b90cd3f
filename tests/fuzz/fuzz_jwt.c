/* Fuzz target: what fleetkey-server parses of a client's tokens and requests before it trusts
 * anything: fk_oauth_jwt_verify (a bearer token), fk_oauth_claims_parse (a claims set),
 * fk_b64url_decode and fk_oauth_form_get (a token request body). Invariants checked (abort on
 * violation): a JWT never verifies without its signature (the key is made here, fresh per
 * process, so no corpus file can carry a valid one); accepted claims are NUL-terminated and
 * their scope in range; a base64url string that decodes re-encodes to itself; a form value is
 * NUL-terminated within its buffer and holds no control character.
 * Corpus: tests/fuzz/corpus/jwt/ (tokens of every shape, claims sets, form bodies). */
#include "fleetkey/oauth.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fk_oauth_key *key;

/* A fresh P-256 key per process (so no corpus file can hold a valid signature of it). */
static struct fk_oauth_key *key_make(void) {
    struct fk_oauth_key *k = NULL;
    EVP_PKEY *p = EVP_EC_gen("P-256");
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    if (p == NULL || b == NULL || PEM_write_bio_PrivateKey(b, p, NULL, NULL, 0, NULL, NULL) != 1) {
        abort();
    }
    long n = BIO_get_mem_data(b, &pem);
    if (n <= 0 || fk_oauth_key_from_pem((const uint8_t *)pem, (size_t)n, &k, NULL) != FK_OK) {
        abort();
    }
    BIO_free(b);
    EVP_PKEY_free(p);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (key == NULL) {
        key = key_make();
    }
    struct fk_oauth_claims c;
    if (fk_oauth_jwt_verify(key, (const char *)data, size, 1800000000LL, &c, NULL) == FK_OK) {
        abort(); /* nobody outside this process holds a signature of this key */
    }
    if (fk_oauth_claims_parse(data, size, &c, NULL) == FK_OK) {
        if (memchr(c.sub, '\0', sizeof c.sub) == NULL ||
            memchr(c.jti, '\0', sizeof c.jti) == NULL ||
            memchr(c.x5t, '\0', sizeof c.x5t) == NULL || (c.scope & ~(unsigned)FK_SCOPE_ALL) != 0) {
            abort();
        }
    }
    uint8_t *dec = malloc(size + 1);
    char *enc = malloc(size + 8);
    size_t dl = 0;
    if (dec == NULL || enc == NULL) {
        abort();
    }
    if (fk_b64url_decode((const char *)data, size, dec, size + 1, &dl) == FK_OK) {
        size_t el = 0;
        if (fk_b64url_encode(dec, dl, enc, size + 8, &el) != FK_OK || el != size ||
            memcmp(enc, data, size) != 0) {
            abort(); /* strict decoding: one spelling per value */
        }
    }
    char v[128];
    int found = 0;
    static const char *const names[] = {"grant_type", "refresh_token", "scope", "token"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (fk_oauth_form_get(data, size, names[i], v, sizeof v, &found) == FK_OK) {
            size_t n = strnlen(v, sizeof v);
            if (n == sizeof v) {
                abort();
            }
            for (size_t j = 0; j < n; j++) {
                if ((unsigned char)v[j] < 0x20) {
                    abort();
                }
            }
        }
    }
    free(dec);
    free(enc);
    return 0;
}
