/* fleetkey client: what a Linux (or phone-like) client of fleetkey-server needs around its
 * OAuth2 tokens (docs/oauth.md, "The C client"): an encrypted token store, the refresh
 * scheduler that refreshes a configurable lead before expiry (default 12 h), one refresh at a
 * time even across processes, the new tokens persisted before anyone uses them, and the
 * identity of a client certificate.
 *
 * The HTTP exchange itself is the caller's (fleetctl does it over its mTLS connection): the
 * scheduler calls a refresh function. Nothing here prints or exits; secrets are wiped.
 * Thread-safety: functions are reentrant; the store is shared between processes only through
 * fk_client_token_get's file lock. */
#ifndef FLEETKEY_CLIENT_H
#define FLEETKEY_CLIENT_H

#include "fleetkey/common.h"
#include "fleetkey/oauth.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_CLIENT_LEAD_DEFAULT_S (12LL * 3600) /* refresh this long before expiry */
#define FK_CLIENT_REFRESH_MAX 128              /* longest refresh token kept */
#define FK_CLIENT_STORE_MAX 16384u             /* largest store file read */
#define FK_CLIENT_LOCK_WAIT_S 60               /* longest wait for another process' refresh */

/* What the store holds. */
struct fk_client_tokens {
    char access_token[FK_OAUTH_TOKEN_MAX + 1];
    char refresh_token[FK_CLIENT_REFRESH_MAX + 1];
    char scope[FK_OAUTH_SCOPE_SIZE];
    char client_id[FK_OAUTH_NAME_MAX + 1];
    long long obtained_at; /* client clock when the token answer arrived */
    long long expires_at;  /* obtained_at + expires_in */
};

/* The store's key material: a passphrase (scrypt with the file's salt) or a 32-byte key. */
struct fk_client_secret {
    int is_key;
    uint8_t key[32];
    char *pass; /* malloc'd, wiped by fk_client_secret_wipe */
    size_t pass_len;
};

/* From a passphrase (copied). FK_OK, FK_E_ARG (empty), FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_client_secret_from_passphrase(const char *pass, size_t len,
                                                           struct fk_client_secret *out);
/* From a key file: exactly 32 bytes, not readable by group or others. FK_OK, FK_E_IO,
 * FK_E_POLICY (mode), FK_E_PARSE (size); diag names the file. */
FK_MUST_CHECK enum fk_err
fk_client_secret_from_keyfile(const char *path, struct fk_client_secret *out, struct fk_diag *diag);
/* Wipes and frees. Safe on a zeroed struct. */
void fk_client_secret_wipe(struct fk_client_secret *s);

/* ---- the store file (docs/oauth.md, "Token store format") ------------------------------
 * "FKTS", version 1, the key kind, scrypt N/r/p, a 16-byte salt and a 12-byte nonce (a 40-byte
 * header, authenticated as AAD), then AES-256-GCM of the tokens as JSON, then the 16-byte
 * tag. Written whole to a temp file, fsync, rename, mode 0600; a fresh salt and nonce each
 * time. */

/* Encrypts t into a fresh malloc'd buffer (*out, *out_len; the caller frees it). FK_OK,
 * FK_E_CRYPTO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_client_store_seal(const struct fk_client_secret *s,
                                               const struct fk_client_tokens *t, uint8_t **out,
                                               size_t *out_len);
/* Decrypts and parses a store file's bytes (buf, len). FK_OK; FK_E_TRUNCATED; FK_E_PARSE (not
 * a store, bad header or content); FK_E_UNSUPPORTED (another version); FK_E_MISMATCH (a key
 * file store opened with a passphrase or the reverse); FK_E_AUTH (wrong passphrase/key, or
 * the file was modified); FK_E_CRYPTO. diag says which. *t is filled only on FK_OK. */
FK_MUST_CHECK enum fk_err fk_client_store_open(const uint8_t *buf, size_t len,
                                               const struct fk_client_secret *s,
                                               struct fk_client_tokens *t, struct fk_diag *diag);
/* Reads the store at path. FK_E_NOTFOUND when it does not exist, else as fk_client_store_open
 * (diag names the file). */
FK_MUST_CHECK enum fk_err fk_client_store_read(const char *path, const struct fk_client_secret *s,
                                               struct fk_client_tokens *t, struct fk_diag *diag);
/* Writes t to path atomically (0600). On failure the old file is unchanged. FK_OK, FK_E_IO,
 * FK_E_CRYPTO, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_client_store_write(const char *path, const struct fk_client_secret *s,
                                                const struct fk_client_tokens *t,
                                                struct fk_diag *diag);
/* Removes the store and its lock file. FK_OK (also when absent), FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_client_store_remove(const char *path, struct fk_diag *diag);

/* ---- refresh -------------------------------------------------------------------------- */

/* Asks the server for new tokens with old->refresh_token; fills *fresh (obtained_at and
 * expires_at on the caller's clock). FK_OK, or any error (diag says what). */
typedef enum fk_err fk_client_refresh_fn(void *user, const struct fk_client_tokens *old,
                                         struct fk_client_tokens *fresh, struct fk_diag *diag);

/* The access token to use at time now (the caller's clock, injectable for tests): the
 * stored one while expires_at - now > lead; otherwise, under an exclusive flock on
 * "<path>.lock" (waiting at most FK_CLIENT_LOCK_WAIT_S), the store is read again: if another
 * process refreshed meanwhile its token is used, else refresh() runs once and its tokens are
 * written to the store before they are returned. When the refresh fails but the stored token
 * has not expired yet, that one is returned (*refreshed = 0) and the failure logged.
 * *refreshed (may be NULL): 1 when this call refreshed. FK_OK; FK_E_NOTFOUND (no store: log
 * in first); FK_E_TIMEOUT (lock); FK_E_STATE (expired and the refresh failed); the store's
 * errors. */
FK_MUST_CHECK enum fk_err fk_client_token_get(const char *path, const struct fk_client_secret *s,
                                              long long now, long long lead,
                                              fk_client_refresh_fn *refresh, void *user,
                                              struct fk_client_tokens *out, int *refreshed,
                                              struct fk_diag *diag);

/* Fills t from a token endpoint answer (JSON, len bytes) received at now: access_token,
 * refresh_token, expires_in (1..1 year), scope. FK_OK, FK_E_PARSE (diag names the field),
 * FK_E_TOOBIG. */
FK_MUST_CHECK enum fk_err fk_client_tokens_from_json(const uint8_t *buf, size_t len, long long now,
                                                     struct fk_client_tokens *t,
                                                     struct fk_diag *diag);

/* The identity of a fleetkey certificate (DER): kind ("mobile", "operator", "device") and
 * name from its URI SAN urn:fleetkey:<kind>:<name>. FK_OK, FK_E_PARSE, FK_E_NOTFOUND. */
FK_MUST_CHECK enum fk_err fk_client_cert_identity(const uint8_t *der, size_t len, char kind[16],
                                                  char name[FK_OAUTH_NAME_MAX + 1]);

#ifdef __cplusplus
}
#endif

#endif
