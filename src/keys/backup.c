/* k-of-n signing-key backups (fleetkey/keybackup.h): the share file format and the backup /
 * restore operations on top of fleetkey/shamir.h.
 *
 * The secret that is split is the key's PKCS#8 DER, so any key type OpenSSL reads comes back
 * exactly (RSA, EC, Ed25519). The public key travels in clear in every share: restore cannot
 * tell a right secret from a wrong one otherwise (k-1 shares interpolate to *some* secret), and
 * it is what the rebuilt key is proven against. Every buffer that held the secret or a share is
 * wiped on every path. */
#include "fleetkey/keybackup.h"

#include "fleetkey/shamir.h"

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC_LINE "fleetkey-key-share"
#define CHECKSUM_LEN 16u
#define PROOF_MSG "fleetkey key-backup restore proof v1"

void fk_keyshare_wipe(struct fk_keyshare *s) {
    fk_wipe(s, s != NULL ? sizeof *s : 0);
}

/* ---- parsing ------------------------------------------------------------------------------ */
struct cursor {
    const uint8_t *buf;
    size_t len; /* bytes before the checksum line */
    size_t pos;
    long line;
};

/* The next line must be "name: value\n"; val and vlen slice the value. */
static enum fk_err field(struct cursor *c, const char *name, const char **val, size_t *vlen,
                         struct fk_diag *d) {
    size_t nlen = strlen(name);
    c->line++;
    size_t left = c->len - c->pos;
    const uint8_t *p = c->buf + c->pos;
    const uint8_t *nl = memchr(p, '\n', left);
    if (nl == NULL || (size_t)(nl - p) < nlen + 2 || memcmp(p, name, nlen) != 0 || p[nlen] != ':' ||
        p[nlen + 1] != ' ') {
        return fk_diag_at(d, FK_E_PARSE, NULL, c->line, "expected a line '%s: ...'", name);
    }
    *val = (const char *)p + nlen + 2;
    *vlen = (size_t)(nl - p) - nlen - 2;
    c->pos += (size_t)(nl - p) + 1;
    return FK_OK;
}

/* A decimal number lo..hi without sign, spaces or leading zeros. */
static enum fk_err number(struct cursor *c, const char *name, unsigned lo, unsigned hi,
                          unsigned *out, struct fk_diag *d) {
    const char *v = NULL;
    size_t n = 0;
    enum fk_err rc = field(c, name, &v, &n, d);
    if (rc != FK_OK) {
        return rc;
    }
    unsigned long x = 0;
    int ok = n > 0 && n <= 6 && !(n > 1 && v[0] == '0');
    for (size_t i = 0; ok && i < n; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        x = x * 10 + (unsigned long)(v[i] - '0');
    }
    if (!ok || x < lo || x > hi) {
        return fk_diag_at(d, ok ? FK_E_RANGE : FK_E_PARSE, NULL, c->line,
                          "%s: expected a number from %u to %u", name, lo, hi);
    }
    *out = (unsigned)x;
    return FK_OK;
}

static enum fk_err b64_field(struct cursor *c, const char *name, uint8_t *out, size_t cap,
                             size_t *out_len, struct fk_diag *d) {
    const char *v = NULL;
    size_t n = 0;
    enum fk_err rc = field(c, name, &v, &n, d);
    if (rc != FK_OK) {
        return rc;
    }
    /* Every base64 quantum decodes to at most 3 bytes: refuse what cannot fit before decoding. */
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > cap + 2 ||
        fk_base64_decode(v, n, out, cap, out_len) != FK_OK || *out_len == 0) {
        return fk_diag_at(d, FK_E_PARSE, NULL, c->line,
                          "%s: expected padded base64 of 1 to %zu bytes", name, cap);
    }
    return FK_OK;
}

static void fingerprint(const uint8_t *der, size_t len, char out[FK_KEYSHARE_FPR_SIZE]) {
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256(der, len, h);
    memcpy(out, "sha256:", 7);
    if (fk_hex_encode(h, sizeof h, out + 7, FK_KEYSHARE_FPR_SIZE - 7) != FK_OK) {
        out[0] = '\0'; /* cannot happen: the buffer is sized for it */
    }
}

/* The checksum line is the last line; checks it over everything before it. Sets *body_len. */
static enum fk_err check_sum(const uint8_t *buf, size_t len, size_t *body_len, struct fk_diag *d) {
    static const char tag[] = "checksum: ";
    const size_t line_len = sizeof tag - 1 + 2 * CHECKSUM_LEN + 1;
    if (len < line_len || buf[len - 1] != '\n') {
        return fk_diag_set(d, FK_E_PARSE, "expected the last line 'checksum: <32 hex digits>'");
    }
    size_t start = len - line_len;
    if ((start > 0 && buf[start - 1] != '\n') || memcmp(buf + start, tag, sizeof tag - 1) != 0) {
        return fk_diag_set(d, FK_E_PARSE, "expected the last line 'checksum: <32 hex digits>'");
    }
    uint8_t want[CHECKSUM_LEN];
    size_t n = 0;
    if (fk_hex_decode((const char *)buf + start + sizeof tag - 1, 2 * CHECKSUM_LEN, want,
                      sizeof want, &n, NULL) != FK_OK) {
        return fk_diag_set(d, FK_E_PARSE, "checksum: expected 32 hex digits");
    }
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256(buf, start, h);
    if (!fk_ct_equal(h, want, sizeof want)) {
        return fk_diag_set(d, FK_E_CRC, "checksum mismatch: the share file is damaged (refused)");
    }
    *body_len = start;
    return FK_OK;
}

enum fk_err fk_keyshare_parse(const uint8_t *buf, size_t len, struct fk_keyshare *out,
                              struct fk_diag *d) {
    enum fk_err rc = FK_E_INTERNAL;
    struct cursor c = {buf, 0, 0, 0};
    const char *v = NULL;
    size_t n = 0;
    unsigned secret_len = 0;
    memset(out, 0, sizeof *out);
    FK_ENSURE(buf != NULL, FK_E_ARG);
    FK_ENSURE(len <= FK_KEYSHARE_FILE_MAX,
              fk_diag_set(d, FK_E_TOOBIG, "%zu bytes: a share file is at most %u", len,
                          FK_KEYSHARE_FILE_MAX));
    FK_GUARD(check_sum(buf, len, &c.len, d));
    FK_GUARD(number(&c, MAGIC_LINE, 0, 999999, &out->version, d));
    FK_ENSURE(out->version == FK_KEYSHARE_VERSION,
              fk_diag_at(d, FK_E_UNSUPPORTED, NULL, c.line,
                         "share format %u; this program reads format %u", out->version,
                         FK_KEYSHARE_VERSION));
    FK_GUARD(field(&c, "backup", &v, &n, d));
    FK_ENSURE(n == 2 * FK_KEYSHARE_ID_LEN &&
                  fk_hex_decode(v, n, out->backup_id, sizeof out->backup_id, &n, NULL) == FK_OK,
              fk_diag_at(d, FK_E_PARSE, NULL, c.line, "backup: expected 16 hex digits"));
    FK_GUARD(number(&c, "index", 1, FK_SHAMIR_MAX_SHARES, &out->index, d));
    FK_GUARD(number(&c, "threshold", 2, FK_SHAMIR_MAX_SHARES, &out->threshold, d));
    FK_GUARD(number(&c, "shares", out->threshold, FK_SHAMIR_MAX_SHARES, &out->shares, d));
    FK_ENSURE(out->index <= out->shares,
              fk_diag_at(d, FK_E_RANGE, NULL, c.line - 2, "index: %u is above shares: %u",
                         out->index, out->shares));
    FK_GUARD(field(&c, "key-fingerprint", &v, &n, d));
    long fpr_line = c.line;
    FK_ENSURE(n == FK_KEYSHARE_FPR_SIZE - 1 && memcmp(v, "sha256:", 7) == 0,
              fk_diag_at(d, FK_E_PARSE, NULL, c.line,
                         "key-fingerprint: expected sha256: and 64 hex digits"));
    memcpy(out->fingerprint, v, n);
    FK_GUARD(b64_field(&c, "public-key", out->pub_der, sizeof out->pub_der, &out->pub_der_len, d));
    char want[FK_KEYSHARE_FPR_SIZE];
    fingerprint(out->pub_der, out->pub_der_len, want);
    FK_ENSURE(strcmp(want, out->fingerprint) == 0,
              fk_diag_at(d, FK_E_PARSE, NULL, fpr_line,
                         "key-fingerprint: not the SHA-256 of public-key (%s)", want));
    FK_GUARD(number(&c, "secret-length", 1, FK_KEYSHARE_SECRET_MAX, &secret_len, d));
    FK_GUARD(b64_field(&c, "share", out->share, sizeof out->share, &out->share_len, d));
    FK_ENSURE(out->share_len == secret_len,
              fk_diag_at(d, FK_E_PARSE, NULL, c.line, "share: %zu bytes, expected secret-length %u",
                         out->share_len, secret_len));
    FK_ENSURE(c.pos == c.len, fk_diag_at(d, FK_E_PARSE, NULL, c.line + 1,
                                         "expected the checksum line, found another line"));
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        fk_keyshare_wipe(out);
    }
    return rc;
}

enum fk_err fk_keyshare_format(const struct fk_keyshare *s, char *out, size_t out_size,
                               size_t *out_len) {
    enum fk_err rc = FK_E_INTERNAL;
    char id[2 * FK_KEYSHARE_ID_LEN + 1];
    /* base64 of the largest share and key, plus the fixed lines */
    size_t b64_cap = 4 * ((FK_KEYSHARE_SECRET_MAX + 2) / 3) + 1;
    char *pub = malloc(b64_cap);
    char *share = malloc(b64_cap);
    FK_ENSURE(pub != NULL && share != NULL, FK_E_NOMEM);
    FK_ENSURE(s->index >= 1 && s->index <= s->shares && s->threshold >= 2 &&
                  s->threshold <= s->shares && s->shares <= FK_SHAMIR_MAX_SHARES &&
                  s->pub_der_len > 0 && s->pub_der_len <= FK_KEYSHARE_PUB_MAX && s->share_len > 0 &&
                  s->share_len <= FK_KEYSHARE_SECRET_MAX,
              FK_E_ARG);
    FK_GUARD(fk_hex_encode(s->backup_id, sizeof s->backup_id, id, sizeof id));
    FK_GUARD(fk_base64_encode(s->pub_der, s->pub_der_len, pub, b64_cap));
    FK_GUARD(fk_base64_encode(s->share, s->share_len, share, b64_cap));
    int n = snprintf(out, out_size,
                     MAGIC_LINE ": %u\nbackup: %s\nindex: %u\nthreshold: %u\nshares: %u\n"
                                "key-fingerprint: %s\npublic-key: %s\nsecret-length: %zu\n"
                                "share: %s\n",
                     FK_KEYSHARE_VERSION, id, s->index, s->threshold, s->shares, s->fingerprint,
                     pub, s->share_len, share);
    size_t body = (size_t)n;
    size_t total = body + 10 + 2 * CHECKSUM_LEN + 1;
    FK_ENSURE(n > 0 && total < out_size, FK_E_NOSPACE);
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)out, body, h);
    memcpy(out + body, "checksum: ", 10);
    FK_GUARD(fk_hex_encode(h, CHECKSUM_LEN, out + body + 10, out_size - body - 10));
    out[total - 1] = '\n';
    out[total] = '\0';
    *out_len = total;
    rc = FK_OK;
out:
    fk_free_secret(share, b64_cap);
    free(pub);
    return rc;
}

/* ---- keys --------------------------------------------------------------------------------- */
static void key_type(EVP_PKEY *k, char *out, size_t size) {
    char group[64] = "";
    size_t glen = 0;
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_EC &&
        EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, &glen) == 1) {
        snprintf(out, size, "EC %s", group);
    } else if (id == EVP_PKEY_RSA) {
        snprintf(out, size, "RSA-%d", EVP_PKEY_get_bits(k));
    } else {
        snprintf(out, size, "%s", OBJ_nid2sn(id));
    }
}

/* DER SubjectPublicKeyInfo of k into a fresh OpenSSL buffer (OPENSSL_free). */
static enum fk_err public_der(EVP_PKEY *k, uint8_t **der, size_t *len) {
    *der = NULL;
    int n = i2d_PUBKEY(k, der);
    if (n <= 0 || (size_t)n > FK_KEYSHARE_PUB_MAX) {
        OPENSSL_free(*der);
        *der = NULL;
        return n <= 0 ? FK_E_CRYPTO : FK_E_TOOBIG;
    }
    *len = (size_t)n;
    return FK_OK;
}

/* Signs PROOF_MSG || backup id with priv and verifies it with the recorded public key. */
static enum fk_err prove(EVP_PKEY *priv, EVP_PKEY *pub, const uint8_t id[FK_KEYSHARE_ID_LEN],
                         struct fk_diag *d) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t msg[sizeof PROOF_MSG - 1 + FK_KEYSHARE_ID_LEN];
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    int id_k = EVP_PKEY_get_base_id(priv);
    /* Ed25519/Ed448 hash internally and take no digest; everything else signs SHA-256. */
    const EVP_MD *md = id_k == EVP_PKEY_ED25519 || id_k == EVP_PKEY_ED448 ? NULL : EVP_sha256();
    memcpy(msg, PROOF_MSG, sizeof PROOF_MSG - 1);
    memcpy(msg + sizeof PROOF_MSG - 1, id, FK_KEYSHARE_ID_LEN);
    FK_ENSURE(ctx != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_DigestSignInit(ctx, NULL, md, NULL, priv), FK_E_CRYPTO);
    FK_GUARD_OSSL(EVP_DigestSign(ctx, NULL, &sig_len, msg, sizeof msg), FK_E_CRYPTO);
    sig = malloc(sig_len);
    FK_ENSURE(sig != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(EVP_DigestSign(ctx, sig, &sig_len, msg, sizeof msg), FK_E_CRYPTO);
    EVP_MD_CTX_reset(ctx);
    FK_GUARD_OSSL(EVP_DigestVerifyInit(ctx, NULL, md, NULL, pub), FK_E_CRYPTO);
    FK_ENSURE(EVP_DigestVerify(ctx, sig, sig_len, msg, sizeof msg) == 1,
              fk_diag_set(d, FK_E_VERIFY,
                          "the rebuilt key's test signature does not verify with the public "
                          "key recorded in the shares"));
    rc = FK_OK;
out:
    free(sig);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---- backup ------------------------------------------------------------------------------- */
static enum fk_err share_path(const char *dir, unsigned i, unsigned n, char **out) {
    char name[48];
    snprintf(name, sizeof name, "key-share-%u-of-%u", i, n);
    return fk_path_join(dir, name, ".txt", out);
}

/* Wrapper so every early return of split() releases what it holds. */
struct split_state {
    EVP_PKEY *key;
    uint8_t *secret; /* PKCS#8 DER, OpenSSL-allocated */
    size_t secret_len;
    uint8_t *pub;
    size_t pub_len;
    uint8_t *shares; /* n * secret_len */
    uint8_t *check;
    struct fk_keyshare *one;
    char *text;
    char **paths;
    unsigned n;
    unsigned written;
};

static void split_state_free(struct split_state *s) {
    EVP_PKEY_free(s->key);
    OPENSSL_clear_free(s->secret, s->secret_len);
    OPENSSL_free(s->pub);
    fk_free_secret(s->shares, (size_t)s->n * s->secret_len);
    fk_free_secret(s->check, s->secret_len);
    fk_keyshare_wipe(s->one);
    free(s->one);
    fk_free_secret(s->text, FK_KEYSHARE_FILE_MAX);
    for (unsigned i = 0; s->paths != NULL && i < s->n; i++) {
        free(s->paths[i]);
    }
    free(s->paths);
}

static enum fk_err load_private(const uint8_t *pem, size_t len, const char *name, EVP_PKEY **out,
                                struct fk_diag *d) {
    if (len > INT32_MAX) {
        return fk_diag_at(d, FK_E_TOOBIG, name, 0, "too large for a key file");
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return FK_E_NOMEM;
    }
    /* No passphrase callback: an encrypted PEM fails here instead of prompting. */
    *out = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    BIO_free(bio);
    if (*out == NULL) {
        return fk_diag_at(d, FK_E_PARSE, name, 0,
                          "expected an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1)");
    }
    return FK_OK;
}

enum fk_err fk_keybackup_split(const uint8_t *pem, size_t pem_len, const char *name, unsigned n,
                               unsigned k, const char *dir, struct fk_keybackup_info *info,
                               struct fk_diag *d) {
    enum fk_err rc = FK_E_INTERNAL;
    struct split_state s;
    memset(&s, 0, sizeof s);
    memset(info, 0, sizeof *info);
    FK_ENSURE(k >= 2 && k <= n && n <= FK_SHAMIR_MAX_SHARES,
              fk_diag_set(d, FK_E_ARG, "expected 2 <= threshold <= shares <= %u, got %u of %u",
                          FK_SHAMIR_MAX_SHARES, k, n));
    FK_GUARD(load_private(pem, pem_len, name, &s.key, d));
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(s.key);
    FK_ENSURE(p8 != NULL, FK_E_CRYPTO);
    int dl = i2d_PKCS8_PRIV_KEY_INFO(p8, &s.secret);
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key bytes it held */
    FK_ENSURE(dl > 0, FK_E_CRYPTO);
    s.secret_len = (size_t)dl;
    FK_ENSURE(s.secret_len <= FK_KEYSHARE_SECRET_MAX,
              fk_diag_at(d, FK_E_TOOBIG, name, 0, "key of %zu DER bytes; at most %u", s.secret_len,
                         FK_KEYSHARE_SECRET_MAX));
    FK_GUARD(public_der(s.key, &s.pub, &s.pub_len));
    s.n = n;
    s.shares = malloc((size_t)n * s.secret_len);
    s.check = malloc(s.secret_len);
    s.one = calloc(1, sizeof *s.one);
    s.text = malloc(FK_KEYSHARE_FILE_MAX);
    s.paths = calloc(n, sizeof *s.paths);
    FK_ENSURE(s.shares != NULL && s.check != NULL && s.one != NULL && s.text != NULL &&
                  s.paths != NULL,
              FK_E_NOMEM);
    uint8_t *rows[FK_SHAMIR_MAX_SHARES];
    uint8_t xs[FK_SHAMIR_MAX_SHARES];
    for (unsigned i = 0; i < n; i++) {
        rows[i] = s.shares + (size_t)i * s.secret_len;
        xs[i] = (uint8_t)(i + 1);
    }
    FK_GUARD(fk_shamir_split(s.secret, s.secret_len, n, k, rows));
    /* Our own arithmetic checked before anything is written: k shares give the key back. */
    FK_GUARD(fk_shamir_combine(xs, (const uint8_t *const *)rows, k, s.secret_len, s.check));
    FK_ENSURE(fk_ct_equal(s.check, s.secret, s.secret_len), FK_E_INTERNAL);

    struct fk_keyshare *one = s.one;
    one->version = FK_KEYSHARE_VERSION;
    FK_GUARD(fk_random(one->backup_id, sizeof one->backup_id));
    one->threshold = k;
    one->shares = n;
    fingerprint(s.pub, s.pub_len, one->fingerprint);
    memcpy(one->pub_der, s.pub, s.pub_len);
    one->pub_der_len = s.pub_len;
    one->share_len = s.secret_len;
    FK_GUARD(fk_mkdirs(dir, 0700, d));
    for (unsigned i = 0; i < n; i++) {
        size_t tlen = 0;
        one->index = i + 1;
        memcpy(one->share, rows[i], s.secret_len);
        FK_GUARD(share_path(dir, i + 1, n, &s.paths[i]));
        FK_GUARD(fk_keyshare_format(one, s.text, FK_KEYSHARE_FILE_MAX, &tlen));
        rc = fk_file_write_atomic(s.paths[i], s.text, tlen, 0600, FK_WRITE_EXCL, d);
        if (rc != FK_OK) {
            goto out;
        }
        s.written++;
    }
    snprintf(info->fingerprint, sizeof info->fingerprint, "%s", one->fingerprint);
    key_type(s.key, info->key_type, sizeof info->key_type);
    info->threshold = k;
    info->shares = n;
    if (fk_hex_encode(one->backup_id, sizeof one->backup_id, info->backup_id,
                      sizeof info->backup_id) != FK_OK) {
        info->backup_id[0] = '\0';
    }
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        /* A partial backup is no backup: remove what this run wrote, never older files. */
        for (unsigned i = 0; i < s.written; i++) {
            remove(s.paths[i]);
        }
    }
    split_state_free(&s);
    return rc;
}

/* ---- restore ------------------------------------------------------------------------------ */
static int same_backup(const struct fk_keyshare *a, const struct fk_keyshare *b) {
    return memcmp(a->backup_id, b->backup_id, sizeof a->backup_id) == 0 &&
           a->threshold == b->threshold && a->shares == b->shares &&
           strcmp(a->fingerprint, b->fingerprint) == 0 && a->share_len == b->share_len &&
           a->pub_der_len == b->pub_der_len && memcmp(a->pub_der, b->pub_der, a->pub_der_len) == 0;
}

struct restore_state {
    struct fk_keyshare *sh; /* up to threshold shares kept */
    size_t cap;
    uint8_t *file;
    size_t file_len;
    uint8_t *secret;
    size_t secret_len;
    EVP_PKEY *key;
    EVP_PKEY *pub;
    uint8_t *der;
    BIO *pem;
};

static enum fk_err read_share(const char *path, struct restore_state *s, struct fk_keyshare *out,
                              struct fk_diag *d) {
    enum fk_err rc = fk_file_read(path, FK_KEYSHARE_FILE_MAX, &s->file, &s->file_len, d);
    if (rc == FK_E_TOOBIG) {
        rc =
            fk_diag_at(d, rc, path, 0, "larger than a share file (%u bytes)", FK_KEYSHARE_FILE_MAX);
    }
    if (rc == FK_OK) {
        rc = fk_keyshare_parse(s->file, s->file_len, out, d);
        if (rc != FK_OK && d != NULL) {
            snprintf(d->file, sizeof d->file, "%s", path);
        }
    }
    fk_free_secret(s->file, s->file_len);
    s->file = NULL;
    return rc;
}

enum fk_err fk_keybackup_restore(const char *const *paths, size_t npaths, const char *out_pem,
                                 struct fk_keybackup_info *info, struct fk_diag *d) {
    enum fk_err rc = FK_E_INTERNAL;
    struct restore_state s;
    size_t kept = 0;
    memset(&s, 0, sizeof s);
    memset(info, 0, sizeof *info);
    FK_ENSURE(npaths > 0, fk_diag_set(d, FK_E_ARG, "no share file given"));
    s.cap = npaths < FK_SHAMIR_MAX_SHARES ? npaths : FK_SHAMIR_MAX_SHARES;
    s.sh = calloc(s.cap + 1, sizeof *s.sh);
    FK_ENSURE(s.sh != NULL, FK_E_NOMEM);
    const char *kept_path[FK_SHAMIR_MAX_SHARES];
    for (size_t i = 0; i < npaths; i++) {
        struct fk_keyshare *cur = &s.sh[kept < s.cap ? kept : s.cap];
        FK_GUARD(read_share(paths[i], &s, cur, d));
        if (kept > 0 && !same_backup(cur, &s.sh[0])) {
            char a[2 * FK_KEYSHARE_ID_LEN + 1], b[2 * FK_KEYSHARE_ID_LEN + 1];
            FK_GUARD(fk_hex_encode(cur->backup_id, sizeof cur->backup_id, a, sizeof a));
            FK_GUARD(fk_hex_encode(s.sh[0].backup_id, sizeof s.sh[0].backup_id, b, sizeof b));
            rc = fk_diag_at(d, FK_E_MISMATCH, paths[i], 0,
                            "from another backup (key %s, backup %s, %u of %u) than %s (key %s, "
                            "backup %s, %u of %u): shares of different backups do not mix",
                            cur->fingerprint, a, cur->threshold, cur->shares, kept_path[0],
                            s.sh[0].fingerprint, b, s.sh[0].threshold, s.sh[0].shares);
            goto out;
        }
        for (size_t j = 0; j < kept && j < s.cap; j++) {
            FK_ENSURE(s.sh[j].index != cur->index,
                      fk_diag_at(d, FK_E_ARG, paths[i], 0, "share %u given twice (also %s)",
                                 cur->index, kept_path[j]));
        }
        if (kept < s.sh[0].threshold && kept < s.cap) {
            kept_path[kept] = paths[i];
            kept++;
        } else {
            fk_keyshare_wipe(cur); /* more than needed: checked for mixing, not used */
        }
    }
    const struct fk_keyshare *first = &s.sh[0];
    FK_ENSURE(kept >= first->threshold,
              fk_diag_set(d, FK_E_RANGE,
                          "%zu distinct share(s) given; this backup of key %s needs %u of its %u",
                          kept, first->fingerprint, first->threshold, first->shares));
    uint8_t xs[FK_SHAMIR_MAX_SHARES];
    const uint8_t *ys[FK_SHAMIR_MAX_SHARES];
    for (size_t i = 0; i < kept; i++) {
        xs[i] = (uint8_t)s.sh[i].index;
        ys[i] = s.sh[i].share;
    }
    s.secret_len = first->share_len;
    s.secret = malloc(s.secret_len);
    FK_ENSURE(s.secret != NULL, FK_E_NOMEM);
    FK_GUARD(fk_shamir_combine(xs, ys, (unsigned)kept, s.secret_len, s.secret));
    const uint8_t *p = s.secret;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)s.secret_len);
    if (p8 != NULL) {
        s.key = EVP_PKCS82PKEY(p8);
        PKCS8_PRIV_KEY_INFO_free(p8);
    }
    FK_ENSURE(s.key != NULL,
              fk_diag_set(d, FK_E_VERIFY,
                          "the shares do not combine into a private key (a share is wrong)"));
    size_t der_len = 0;
    FK_GUARD(public_der(s.key, &s.der, &der_len));
    FK_ENSURE(der_len == first->pub_der_len && memcmp(s.der, first->pub_der, der_len) == 0,
              fk_diag_set(d, FK_E_VERIFY,
                          "the rebuilt key is not the key recorded in the shares (%s)",
                          first->fingerprint));
    p = first->pub_der;
    s.pub = d2i_PUBKEY(NULL, &p, (long)first->pub_der_len);
    FK_ENSURE(s.pub != NULL, fk_diag_set(d, FK_E_PARSE, "public-key: not a public key"));
    FK_GUARD(prove(s.key, s.pub, first->backup_id, d));
    s.pem = BIO_new(BIO_s_secmem());
    FK_ENSURE(s.pem != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_PKCS8PrivateKey(s.pem, s.key, NULL, NULL, 0, NULL, NULL),
                  FK_E_CRYPTO);
    BUF_MEM *mem = NULL;
    FK_ENSURE(BIO_get_mem_ptr(s.pem, &mem) == 1 && mem != NULL, FK_E_CRYPTO);
    FK_GUARD(fk_file_write_atomic(out_pem, mem->data, mem->length, 0600, FK_WRITE_EXCL, d));
    snprintf(info->fingerprint, sizeof info->fingerprint, "%s", first->fingerprint);
    key_type(s.key, info->key_type, sizeof info->key_type);
    info->threshold = first->threshold;
    info->shares = first->shares;
    info->used = (unsigned)kept;
    if (fk_hex_encode(first->backup_id, sizeof first->backup_id, info->backup_id,
                      sizeof info->backup_id) != FK_OK) {
        info->backup_id[0] = '\0';
    }
    rc = FK_OK;
out:
    for (size_t i = 0; s.sh != NULL && i <= s.cap; i++) {
        fk_keyshare_wipe(&s.sh[i]);
    }
    free(s.sh);
    fk_free_secret(s.secret, s.secret_len);
    EVP_PKEY_free(s.key);
    EVP_PKEY_free(s.pub);
    OPENSSL_free(s.der);
    BIO_free(s.pem); /* secure-heap BIO: cleansed on free */
    return rc;
}
