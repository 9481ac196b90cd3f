/* The encrypted token store (fleetkey/client.h, docs/oauth.md "Token store format").
 *
 * AES-256-GCM with a fresh random nonce per write (a file is never rewritten with the nonce of
 * its predecessor, and a 96-bit random nonce is safe for far more writes than a client makes).
 * The whole header is the AAD, so changing the KDF parameters or the salt breaks the tag like
 * changing the ciphertext does: a tampered file is one error, "wrong passphrase or key, or the
 * file was modified", and nothing of it is used. The key comes from scrypt (N = 2^15, r = 8,
 * p = 1: 32 MiB, about 0.1 s) over the passphrase and the file's salt, or is a 32-byte key
 * file. */
#include "fleetkey/client.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "FKTS"
#define VERSION 1
#define KIND_PASS 1
#define KIND_KEY 2
#define HDR_LEN 40
#define SALT_OFF 12
#define NONCE_OFF 28
#define TAG_LEN 16
#define SCRYPT_LOG_N 15
#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_MAXMEM (64u * 1024u * 1024u)

enum fk_err fk_client_secret_from_passphrase(const char *pass, size_t len,
                                             struct fk_client_secret *out) {
    memset(out, 0, sizeof *out);
    if (pass == NULL || len == 0) {
        return FK_E_ARG;
    }
    out->pass = malloc(len + 1);
    if (out->pass == NULL) {
        return FK_E_NOMEM;
    }
    memcpy(out->pass, pass, len);
    out->pass[len] = '\0';
    out->pass_len = len;
    return FK_OK;
}

enum fk_err fk_client_secret_from_keyfile(const char *path, struct fk_client_secret *out,
                                          struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    struct stat st;
    memset(out, 0, sizeof *out);
    FK_ENSURE(stat(path, &st) == 0, fk_diag_at(diag, FK_E_IO, path, 0, "%s", strerror(errno)));
    FK_ENSURE((st.st_mode & 077) == 0,
              fk_diag_at(diag, FK_E_POLICY, path, 0,
                         "mode %03o: a token store key must be readable by its owner only "
                         "(chmod 600)",
                         (unsigned)(st.st_mode & 0777)));
    FK_GUARD(fk_file_read(path, 64, &buf, &len, diag));
    FK_ENSURE(len == sizeof out->key, fk_diag_at(diag, FK_E_PARSE, path, 0,
                                                 "%zu bytes: expected exactly 32 random bytes "
                                                 "(head -c 32 /dev/urandom)",
                                                 len));
    memcpy(out->key, buf, sizeof out->key);
    out->is_key = 1;
    rc = FK_OK;
out:
    fk_free_secret(buf, len);
    return rc;
}

void fk_client_secret_wipe(struct fk_client_secret *s) {
    if (s->pass != NULL) {
        fk_free_secret(s->pass, s->pass_len);
    }
    fk_wipe(s, sizeof *s);
}

/* The AES key for header hdr. */
static enum fk_err derive(const struct fk_client_secret *s, const uint8_t *hdr, uint8_t key[32]) {
    if (s->is_key) {
        memcpy(key, s->key, 32);
        return FK_OK;
    }
    unsigned log_n = hdr[6], r = hdr[7], p = hdr[8];
    /* Bounds on what a file may ask for: it is attacker-controlled until the tag checks. */
    if (log_n < 10 || log_n > 20 || r < 1 || r > 16 || p < 1 || p > 4) {
        return FK_E_PARSE;
    }
    if (EVP_PBE_scrypt(s->pass, s->pass_len, hdr + SALT_OFF, 16, 1ull << log_n, r, p, SCRYPT_MAXMEM,
                       key, 32) != 1) {
        return FK_E_CRYPTO;
    }
    return FK_OK;
}

/* AES-256-GCM over in (len bytes) with hdr as AAD; enc: tag written to/checked from tag. */
static enum fk_err gcm(int enc, const uint8_t key[32], const uint8_t *hdr, const uint8_t *in,
                       size_t len, uint8_t *out, uint8_t tag[TAG_LEN]) {
    enum fk_err rc = FK_E_CRYPTO;
    int n = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    FK_ENSURE(c != NULL && len <= INT32_MAX, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, hdr + NONCE_OFF, enc),
                  FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_CipherUpdate(c, NULL, &n, hdr, HDR_LEN), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_CipherUpdate(c, out, &n, in, (int)len), FK_E_CRYPTO);
    if (!enc) {
        FK_GUARD_OSSL(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag), FK_E_CRYPTO);
    }
    /* Decryption: this is where a wrong key or any modified byte shows. */
    FK_ENSURE(EVP_CipherFinal_ex(c, out + n, &n) == 1, enc ? FK_E_CRYPTO : FK_E_AUTH);
    if (enc) {
        FK_GUARD_OSSL(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag), FK_E_CRYPTO);
    }
    rc = FK_OK;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

static cJSON *tokens_json(const struct fk_client_tokens *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "access_token", t->access_token);
    cJSON_AddStringToObject(o, "refresh_token", t->refresh_token);
    cJSON_AddStringToObject(o, "scope", t->scope);
    cJSON_AddStringToObject(o, "client_id", t->client_id);
    cJSON_AddNumberToObject(o, "obtained_at", (double)t->obtained_at);
    cJSON_AddNumberToObject(o, "expires_at", (double)t->expires_at);
    return o;
}

enum fk_err fk_client_store_seal(const struct fk_client_secret *s, const struct fk_client_tokens *t,
                                 uint8_t **out, size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t key[32];
    uint8_t *buf = NULL;
    size_t plen = 0;
    cJSON *o = tokens_json(t);
    char *plain = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    FK_ENSURE(plain != NULL, FK_E_NOMEM);
    plen = strlen(plain);
    buf = calloc(1, HDR_LEN + plen + TAG_LEN);
    FK_ENSURE(buf != NULL, FK_E_NOMEM);
    memcpy(buf, MAGIC, 4);
    buf[4] = VERSION;
    buf[5] = s->is_key ? KIND_KEY : KIND_PASS;
    buf[6] = s->is_key ? 0 : SCRYPT_LOG_N;
    buf[7] = s->is_key ? 0 : SCRYPT_R;
    buf[8] = s->is_key ? 0 : SCRYPT_P;
    FK_GUARD(fk_random(buf + SALT_OFF, 16));
    FK_GUARD(fk_random(buf + NONCE_OFF, 12));
    FK_GUARD(derive(s, buf, key));
    FK_GUARD(gcm(1, key, buf, (const uint8_t *)plain, plen, buf + HDR_LEN, buf + HDR_LEN + plen));
    *out = buf;
    *out_len = HDR_LEN + plen + TAG_LEN;
    buf = NULL;
    rc = FK_OK;
out:
    fk_wipe(key, sizeof key);
    if (plain != NULL) {
        fk_wipe(plain, plen);
        cJSON_free(plain);
    }
    free(buf);
    return rc;
}

static enum fk_err copy_str(const cJSON *o, const char *name, char *out, size_t size, int need,
                            struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(it) || strlen(it->valuestring) >= size ||
        (need && it->valuestring[0] == '\0')) {
        return fk_diag_set(diag, FK_E_PARSE, "%s: expected a string of at most %zu bytes", name,
                           size - 1);
    }
    memcpy(out, it->valuestring, strlen(it->valuestring) + 1);
    return FK_OK;
}

static enum fk_err copy_time(const cJSON *o, const char *name, long long *out,
                             struct fk_diag *diag) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e12 ||
        it->valuedouble != (double)(long long)it->valuedouble) {
        return fk_diag_set(diag, FK_E_PARSE, "%s: expected seconds since 1970", name);
    }
    *out = (long long)it->valuedouble;
    return FK_OK;
}

enum fk_err fk_client_store_open(const uint8_t *buf, size_t len, const struct fk_client_secret *s,
                                 struct fk_client_tokens *t, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t key[32];
    uint8_t tag[TAG_LEN];
    uint8_t *plain = NULL;
    size_t plen = 0;
    cJSON *o = NULL;
    struct fk_client_tokens tk;
    memset(&tk, 0, sizeof tk);
    FK_ENSURE(len >= 4 && memcmp(buf, MAGIC, 4) == 0,
              fk_diag_set(diag, FK_E_PARSE, "not a fleetkey token store (no FKTS header)"));
    FK_ENSURE(len >= HDR_LEN + TAG_LEN + 2,
              fk_diag_set(diag, FK_E_TRUNCATED, "%zu bytes: truncated", len));
    FK_ENSURE(len <= FK_CLIENT_STORE_MAX,
              fk_diag_set(diag, FK_E_PARSE, "%zu bytes: larger than a token store", len));
    FK_ENSURE(buf[4] == VERSION,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "store version %u: this build reads version %u",
                          buf[4], VERSION));
    FK_ENSURE(buf[5] == KIND_PASS || buf[5] == KIND_KEY,
              fk_diag_set(diag, FK_E_PARSE, "key kind %u unknown", buf[5]));
    FK_ENSURE((buf[5] == KIND_KEY) == (s->is_key != 0),
              fk_diag_set(diag, FK_E_MISMATCH, "the store is protected by a %s, not a %s",
                          buf[5] == KIND_KEY ? "key file" : "passphrase",
                          s->is_key ? "key file" : "passphrase"));
    rc = derive(s, buf, key);
    FK_ENSURE(rc == FK_OK, fk_diag_set(diag, rc, "scrypt parameters out of range or failed"));
    plen = len - HDR_LEN - TAG_LEN;
    plain = malloc(plen + 1);
    FK_ENSURE(plain != NULL, FK_E_NOMEM);
    memcpy(tag, buf + len - TAG_LEN, TAG_LEN);
    rc = gcm(0, key, buf, buf + HDR_LEN, plen, plain, tag);
    FK_ENSURE(rc == FK_OK, fk_diag_set(diag, rc, "%s",
                                       rc == FK_E_AUTH ? "cannot be decrypted: wrong passphrase "
                                                         "or key, or the file was modified"
                                                       : "decryption failed"));
    plain[plen] = '\0';
    o = cJSON_ParseWithLength((const char *)plain, plen);
    FK_ENSURE(cJSON_IsObject(o), fk_diag_set(diag, FK_E_PARSE, "content is not a JSON object"));
    FK_GUARD(copy_str(o, "access_token", tk.access_token, sizeof tk.access_token, 1, diag));
    FK_GUARD(copy_str(o, "refresh_token", tk.refresh_token, sizeof tk.refresh_token, 0, diag));
    FK_GUARD(copy_str(o, "scope", tk.scope, sizeof tk.scope, 0, diag));
    FK_GUARD(copy_str(o, "client_id", tk.client_id, sizeof tk.client_id, 0, diag));
    FK_GUARD(copy_time(o, "obtained_at", &tk.obtained_at, diag));
    FK_GUARD(copy_time(o, "expires_at", &tk.expires_at, diag));
    *t = tk;
    rc = FK_OK;
out:
    fk_wipe(key, sizeof key);
    fk_wipe(&tk, sizeof tk);
    fk_free_secret(plain, plen + 1);
    cJSON_Delete(
        o); /* holds copies of the tokens: cJSON cannot wipe, the heap keeps them briefly */
    return rc;
}

enum fk_err fk_client_store_read(const char *path, const struct fk_client_secret *s,
                                 struct fk_client_tokens *t, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        return fk_diag_at(diag, FK_E_NOTFOUND, path, 0, "no token store (fleetctl login first)");
    }
    FK_GUARD(fk_file_read(path, FK_CLIENT_STORE_MAX, &buf, &len, diag));
    rc = fk_client_store_open(buf, len, s, t, diag);
    if (rc != FK_OK && diag != NULL) {
        snprintf(diag->file, sizeof diag->file, "%.255s", path);
    }
out:
    fk_free_secret(buf, len);
    return rc;
}

enum fk_err fk_client_store_write(const char *path, const struct fk_client_secret *s,
                                  const struct fk_client_tokens *t, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    FK_GUARD(fk_client_store_seal(s, t, &buf, &len));
    FK_GUARD(fk_file_write_atomic(path, buf, len, 0600, 0, diag));
    rc = FK_OK;
out:
    free(buf); /* ciphertext */
    return rc;
}

enum fk_err fk_client_store_remove(const char *path, struct fk_diag *diag) {
    char lock[1100];
    snprintf(lock, sizeof lock, "%.1000s.lock", path);
    if (unlink(path) != 0 && errno != ENOENT) {
        return fk_diag_at(diag, FK_E_IO, path, 0, "%s", strerror(errno));
    }
    (void)unlink(lock);
    return FK_OK;
}

enum fk_err fk_client_cert_identity(const uint8_t *der, size_t len, char kind[16],
                                    char name[FK_OAUTH_NAME_MAX + 1]) {
    enum fk_err rc = FK_E_NOTFOUND;
    const unsigned char *p = der;
    X509 *x = len <= 65536 ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (x == NULL) {
        return FK_E_PARSE;
    }
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    static const char pre[] = "urn:fleetkey:";
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && rc != FK_OK; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI) {
            continue;
        }
        const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (n <= sizeof pre - 1 || memcmp(u, pre, sizeof pre - 1) != 0 ||
            memchr(u, '\0', n) != NULL) {
            continue;
        }
        const char *k = u + sizeof pre - 1;
        const char *colon = memchr(k, ':', n - (sizeof pre - 1));
        size_t kl = colon != NULL ? (size_t)(colon - k) : 0;
        size_t nl = colon != NULL ? n - (size_t)(colon + 1 - u) : 0;
        if (kl == 0 || kl >= 16 || nl == 0 || nl > FK_OAUTH_NAME_MAX) {
            continue;
        }
        memcpy(kind, k, kl);
        kind[kl] = '\0';
        memcpy(name, colon + 1, nl);
        name[nl] = '\0';
        rc = FK_OK;
    }
    GENERAL_NAMES_free(gens);
    X509_free(x);
    return rc;
}
