/* The OAuth2 routes and the bearer gate of the admin API: see oauth_internal.h and
 * docs/oauth.md.
 *
 * The client authenticates with its TLS certificate only (RFC 8705 2.1 tls_client_auth): the
 * certificate's identity name is the client_id, its kind decides the scopes it may have, and
 * every token is bound to the certificate's SHA-256 (cnf x5t#S256). Each outcome of the token
 * and revocation endpoints is one audit row and one log line naming the client, the token's
 * jti or family id, never a token. */
#include "oauth_internal.h"

#include "auth_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FORM_MAX 8192u /* largest token / revocation request body */

static const char *const grant_names[G_COUNT] = {"client_credentials", "refresh_token", "other"};

/* ---- answers ---------------------------------------------------------------------------- */

/* RFC 6749 5.2: {"error","error_description"}; 401 for invalid_client, else 400. */
static int oauth_error(struct lws *wsi, struct http_sess *h, unsigned status, const char *err,
                       const char *desc) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", err);
    cJSON_AddStringToObject(o, "error_description", desc);
    return fk_srv_http_json(wsi, h, status, o);
}

/* RFC 6750 3: 401 with WWW-Authenticate: Bearer [error="invalid_token"], or 403
 * insufficient_scope. */
static int bearer_error(struct lws *wsi, struct http_sess *h, unsigned status, const char *err) {
    char www[96], body[96];
    if (err == NULL) {
        snprintf(www, sizeof www, "Bearer realm=\"fleetkey\"");
        snprintf(body, sizeof body, "{\"error\":\"bearer token required\"}");
    } else {
        snprintf(www, sizeof www, "Bearer realm=\"fleetkey\", error=\"%s\"", err);
        snprintf(body, sizeof body, "{\"error\":\"%s\"}", err);
    }
    return fk_srv_http_reply_auth(wsi, h, status, "application/json", body, strlen(body), www);
}

/* ---- bodies ----------------------------------------------------------------------------- */

/* Reads the form body into h->jbuf (admin.c feeds it), then calls done. */
static int want_form(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path,
                     fk_srv_route_fn *done) {
    char v[128];
    unsigned long n = 0;
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_TYPE) <= 0 ||
        strncmp(v, "application/x-www-form-urlencoded", 33) != 0) {
        return oauth_error(wsi, h, 400, "invalid_request",
                           "body must be application/x-www-form-urlencoded");
    }
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
        fk_parse_ulong(v, FORM_MAX, &n) != FK_OK || n == 0) {
        return oauth_error(wsi, h, 400, "invalid_request", "Content-Length 1..8192 required");
    }
    snprintf(h->jpath, sizeof h->jpath, "%s", path);
    free(h->jbuf);
    h->jbuf = NULL;
    h->jlen = 0;
    h->jbody = 1;
    h->jdone = done;
    (void)srv;
    return 0;
}

/* The body holds refresh tokens and access tokens: wiped, not just freed. */
static void body_wipe(struct http_sess *h) {
    if (h->jbuf != NULL) {
        fk_wipe(h->jbuf, h->jlen);
        free(h->jbuf);
        h->jbuf = NULL;
    }
    h->jlen = 0;
}

/* ---- POST /oauth/token ------------------------------------------------------------------ */

struct treq {
    char peer[64];
    char name[FK_WSS_ID_MAX + 1];
    enum id_kind kind;
    char x5t[FK_OAUTH_B64_32];
    enum oauth_grant grant;
};

/* Who asks (peer, certificate identity) and the body of the request. */
static void req_init(struct lws *wsi, struct http_sess *h, struct treq *q, const uint8_t **b,
                     size_t *bl) {
    memset(q, 0, sizeof *q);
    lws_get_peer_simple(wsi, q->peer, sizeof q->peer);
    q->kind = fk_srv_wsi_identity(wsi, q->name);
    q->grant = G_OTHER;
    *b = (const uint8_t *)(h->jbuf != NULL ? h->jbuf : "");
    *bl = h->jbuf != NULL ? h->jlen : 0;
}

static int refuse(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const struct treq *q,
                  unsigned status, const char *err, const char *desc) {
    srv->oauth->refused[q->grant]++;
    fk_log(FK_LOG_WARN, "server: %s %s %s: token request (%s) refused: %s: %s", q->peer,
           fk_srv_kind_name(q->kind), q->name[0] ? q->name : "?", grant_names[q->grant], err, desc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "grant", grant_names[q->grant]);
    cJSON_AddStringToObject(o, "error", err);
    cJSON_AddStringToObject(o, "reason", desc);
    cJSON_AddStringToObject(o, "peer", q->peer);
    fk_srv_oauth_audit(srv, "oauth.token_refused", q->name[0] ? q->name : "?", o);
    return oauth_error(wsi, h, status, err, desc);
}

/* Signs an access token for family f with scope, persists the state (the caller already
 * changed it), answers. */
static int issue(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const struct treq *q,
                 const struct fk_oauth_family *f, const char *family_id, const char *rt,
                 const char *jti, long long now, unsigned scope) {
    struct srv_oauth *o = srv->oauth;
    struct fk_oauth_claims c;
    char jwt[FK_OAUTH_TOKEN_MAX + 1];
    char sc[FK_OAUTH_SCOPE_SIZE];
    int r = -1;
    memset(&c, 0, sizeof c);
    snprintf(c.sub, sizeof c.sub, "%s", f->client);
    snprintf(c.client_id, sizeof c.client_id, "%s", f->client);
    snprintf(c.jti, sizeof c.jti, "%s", jti);
    snprintf(c.x5t, sizeof c.x5t, "%s", f->x5t);
    c.scope = scope;
    c.iat = now;
    c.exp = now + (long long)srv->cfg.token_lifetime;
    if (fk_oauth_jwt_sign(o->key, &c, jwt, sizeof jwt) != FK_OK) {
        return refuse(srv, wsi, h, q, 500, "server_error", "signing failed");
    }
    /* Persisted before it is handed out: a token the server forgot could not be revoked. */
    if (fk_srv_oauth_save(srv) != FK_OK) {
        fk_wipe(jwt, sizeof jwt);
        return refuse(srv, wsi, h, q, 500, "server_error", "token state not saved");
    }
    fk_oauth_scope_format(scope, sc);
    o->issued[q->grant]++;
    fk_log(FK_LOG_INFO, "server: %s %s %s: %s: access token %s (family %s, scope \"%s\")", q->peer,
           fk_srv_kind_name(q->kind), q->name, grant_names[q->grant], jti, family_id, sc);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "grant", grant_names[q->grant]);
    cJSON_AddStringToObject(a, "jti", jti);
    cJSON_AddStringToObject(a, "family", family_id);
    cJSON_AddStringToObject(a, "scope", sc);
    cJSON_AddNumberToObject(a, "exp", (double)c.exp);
    cJSON_AddStringToObject(a, "x5t", f->x5t);
    cJSON_AddStringToObject(a, "peer", q->peer);
    fk_srv_oauth_audit(srv,
                       q->grant == G_REFRESH_TOKEN ? "oauth.token_refreshed" : "oauth.token_issued",
                       q->name, a);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "access_token", jwt);
    cJSON_AddStringToObject(res, "token_type", "Bearer");
    cJSON_AddNumberToObject(res, "expires_in", (double)srv->cfg.token_lifetime);
    cJSON_AddStringToObject(res, "refresh_token", rt);
    cJSON_AddStringToObject(res, "scope", sc);
    char *text = cJSON_PrintUnformatted(res);
    cJSON_Delete(res); /* cJSON does not wipe: the copies die with the heap, tokens are short */
    if (text != NULL) {
        r = fk_srv_http_reply(wsi, h, 200, "application/json", text, strlen(text));
        fk_wipe(text, strlen(text));
        cJSON_free(text);
    }
    fk_wipe(jwt, sizeof jwt);
    return r;
}

static int grant_client_credentials(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                                    const struct treq *q, unsigned scope) {
    struct fk_oauth_family f;
    char rt[FK_OAUTH_B64_32], jti[FK_OAUTH_JTI_SIZE];
    memset(&f, 0, sizeof f);
    long long now = (long long)time(NULL);
    if (fk_oauth_random_b64(16, f.id, sizeof f.id) != FK_OK ||
        fk_oauth_random_b64(32, rt, sizeof rt) != FK_OK ||
        fk_oauth_random_b64(16, jti, sizeof jti) != FK_OK ||
        fk_oauth_sha256_b64(rt, strlen(rt), f.rt_hash) != FK_OK) {
        return refuse(srv, wsi, h, q, 500, "server_error", "no randomness");
    }
    snprintf(f.client, sizeof f.client, "%s", q->name);
    snprintf(f.kind, sizeof f.kind, "%s", fk_srv_kind_name(q->kind));
    snprintf(f.x5t, sizeof f.x5t, "%s", q->x5t);
    f.scope = scope;
    f.rt_exp = now + (long long)srv->cfg.refresh_lifetime;
    if (fk_oauth_state_family_add(srv->oauth->st, &f, jti,
                                  now + (long long)srv->cfg.token_lifetime) != FK_OK) {
        return refuse(srv, wsi, h, q, 500, "server_error", "token state full");
    }
    int r = issue(srv, wsi, h, q, &f, f.id, rt, jti, now, scope);
    fk_wipe(rt, sizeof rt);
    return r;
}

/* Revokes family id (reuse, logout): its access tokens join the denylist, open phone
 * connections using them close now. */
static enum fk_err family_revoke(struct fk_server *srv, const char *id) {
    enum fk_err rc = fk_oauth_state_family_revoke(srv->oauth->st, id);
    if (rc == FK_OK) {
        srv->oauth->revocations++;
        rc = fk_srv_oauth_save(srv);
        fk_srv_mobile_tick(srv); /* the revocation holds in memory even when the save failed */
    }
    return rc;
}

static int grant_refresh(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         const struct treq *q, const char *rt_in, int has_scope, unsigned scope) {
    struct fk_oauth_family f;
    char hash[FK_OAUTH_B64_32], rt[FK_OAUTH_B64_32], jti[FK_OAUTH_JTI_SIZE];
    long long now = (long long)time(NULL);
    if (fk_oauth_sha256_b64(rt_in, strlen(rt_in), hash) != FK_OK) {
        return refuse(srv, wsi, h, q, 500, "server_error", "hash failed");
    }
    enum fk_oauth_rt st = fk_oauth_state_rt_find(srv->oauth->st, hash, now, &f);
    if (st == FK_OAUTH_RT_SPENT) {
        /* RFC 6819 5.2.2.3 / OAuth 2.1 4.3.1: a used refresh token came back, so someone holds
         * a copy; the family is revoked, the rightful client logs in again. */
        srv->oauth->reuse_detected++;
        fk_log(FK_LOG_WARN,
               "server: %s %s %s: spent refresh token of family %s reused: "
               "family revoked",
               q->peer, fk_srv_kind_name(q->kind), q->name, f.id);
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "family", f.id);
        cJSON_AddStringToObject(a, "peer", q->peer);
        fk_srv_oauth_audit(srv, "oauth.refresh_reuse", q->name, a);
        if (family_revoke(srv, f.id) != FK_OK) {
            fk_log(FK_LOG_ERROR, "server: oauth: family %s revoked but not saved", f.id);
        }
        return refuse(srv, wsi, h, q, 400, "invalid_grant", "refresh token already used");
    }
    if (st == FK_OAUTH_RT_UNKNOWN) {
        return refuse(srv, wsi, h, q, 400, "invalid_grant", "unknown refresh token");
    }
    if (st != FK_OAUTH_RT_ACTIVE) {
        return refuse(srv, wsi, h, q, 400, "invalid_grant",
                      st == FK_OAUTH_RT_EXPIRED ? "refresh token expired"
                                                : "refresh token revoked");
    }
    /* Bound to the client and the certificate it was issued to (RFC 8705 4). */
    if (strcmp(f.client, q->name) != 0 || strcmp(f.kind, fk_srv_kind_name(q->kind)) != 0 ||
        !fk_ct_equal(f.x5t, q->x5t, sizeof f.x5t)) {
        return refuse(srv, wsi, h, q, 400, "invalid_grant",
                      "refresh token issued to another certificate");
    }
    if (has_scope && (scope & ~f.scope) != 0) {
        return refuse(srv, wsi, h, q, 400, "invalid_scope", "scope wider than the grant's");
    }
    if (fk_oauth_random_b64(32, rt, sizeof rt) != FK_OK ||
        fk_oauth_random_b64(16, jti, sizeof jti) != FK_OK ||
        fk_oauth_sha256_b64(rt, strlen(rt), hash) != FK_OK ||
        fk_oauth_state_rt_rotate(srv->oauth->st, f.id, hash,
                                 now + (long long)srv->cfg.refresh_lifetime, jti,
                                 now + (long long)srv->cfg.token_lifetime) != FK_OK) {
        return refuse(srv, wsi, h, q, 500, "server_error", "rotation failed");
    }
    int r = issue(srv, wsi, h, q, &f, f.id, rt, jti, now, has_scope ? scope : f.scope);
    fk_wipe(rt, sizeof rt);
    return r;
}

static int token_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                      const char *path) {
    (void)path;
    struct treq q;
    char grant[32], client_id[FK_WSS_ID_MAX + 2], scope_s[128], rt[128];
    int has_scope = 0, has_rt = 0;
    unsigned scope = 0;
    int r = -1;
    rt[0] = '\0';
    const uint8_t *b = NULL;
    size_t bl = 0;
    req_init(wsi, h, &q, &b, &bl);
    if (fk_oauth_form_get(b, bl, "grant_type", grant, sizeof grant, NULL) != FK_OK ||
        fk_oauth_form_get(b, bl, "client_id", client_id, sizeof client_id, NULL) != FK_OK ||
        fk_oauth_form_get(b, bl, "scope", scope_s, sizeof scope_s, &has_scope) != FK_OK ||
        fk_oauth_form_get(b, bl, "refresh_token", rt, sizeof rt, &has_rt) != FK_OK) {
        r = refuse(srv, wsi, h, &q, 400, "invalid_request",
                   "malformed body (bad escape, repeated or oversized parameter)");
        goto out;
    }
    q.grant = strcmp(grant, "client_credentials") == 0 ? G_CLIENT_CREDENTIALS
              : strcmp(grant, "refresh_token") == 0    ? G_REFRESH_TOKEN
                                                       : G_OTHER;
    /* Devices never get tokens: their channel is mTLS alone. */
    if (q.kind != ID_MOBILE && q.kind != ID_OPERATOR) {
        r = refuse(srv, wsi, h, &q, 401, "invalid_client",
                   "only mobile and operator certificates get tokens");
        goto out;
    }
    if (strcmp(client_id, q.name) != 0) {
        r = refuse(srv, wsi, h, &q, 401, "invalid_client",
                   "client_id is not the certificate's identity");
        goto out;
    }
    if (fk_srv_peer_x5t(wsi, q.x5t) != 0) {
        r = refuse(srv, wsi, h, &q, 401, "invalid_client", "no client certificate");
        goto out;
    }
    if (q.grant == G_OTHER) {
        r = refuse(srv, wsi, h, &q, 400, grant[0] ? "unsupported_grant_type" : "invalid_request",
                   grant[0] ? "grant_type must be client_credentials or refresh_token"
                            : "grant_type missing");
        goto out;
    }
    unsigned allowed = q.kind == ID_OPERATOR
                           ? (unsigned)FK_SCOPE_ALL
                           : (unsigned)(FK_SCOPE_FLEET_READ | FK_SCOPE_ROBOT_COMMAND);
    has_scope = has_scope && scope_s[0] != '\0';
    if (has_scope && (fk_oauth_scope_parse(scope_s, strlen(scope_s), &scope) != FK_OK ||
                      (scope & ~allowed) != 0)) {
        r = refuse(srv, wsi, h, &q, 400, "invalid_scope",
                   "scope unknown or not allowed for this certificate");
        goto out;
    }
    if (q.grant == G_CLIENT_CREDENTIALS) {
        r = grant_client_credentials(srv, wsi, h, &q, has_scope ? scope : allowed);
    } else if (!has_rt || rt[0] == '\0') {
        r = refuse(srv, wsi, h, &q, 400, "invalid_request", "refresh_token missing");
    } else {
        r = grant_refresh(srv, wsi, h, &q, rt, has_scope, scope & allowed);
    }
out:
    fk_wipe(rt, sizeof rt);
    body_wipe(h);
    return r;
}

int fk_srv_oauth_token(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                       const char *path) {
    return want_form(srv, wsi, h, path, token_done);
}

/* ---- POST /oauth/revoke ----------------------------------------------------------------- */

static int revoke_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                       const char *path) {
    (void)path;
    struct srv_oauth *o = srv->oauth;
    char tok[FK_OAUTH_TOKEN_MAX + 1], hint[32];
    const char *outcome = "unknown token";
    char what[64] = "";
    struct treq q;
    const uint8_t *b = NULL;
    size_t bl = 0;
    req_init(wsi, h, &q, &b, &bl);
    const char *peer = q.peer, *name = q.name;
    enum id_kind k = q.kind;
    int r = -1;
    if (k != ID_MOBILE && k != ID_OPERATOR) {
        r = oauth_error(wsi, h, 401, "invalid_client",
                        "only mobile and operator certificates hold tokens");
        goto out;
    }
    if (fk_oauth_form_get(b, bl, "token", tok, sizeof tok, NULL) != FK_OK ||
        fk_oauth_form_get(b, bl, "token_type_hint", hint, sizeof hint, NULL) != FK_OK ||
        tok[0] == '\0') {
        r = oauth_error(wsi, h, 400, "invalid_request", "token missing or malformed");
        goto out;
    }
    /* The hint only orders the look-ups (RFC 7009 2.1); a JWT has dots, a refresh token not. */
    struct fk_oauth_claims c;
    struct fk_oauth_family f;
    char hash[FK_OAUTH_B64_32];
    if (strchr(tok, '.') != NULL) {
        if (fk_oauth_jwt_verify(o->key, tok, strlen(tok), (long long)time(NULL), &c, NULL) ==
            FK_OK) {
            snprintf(what, sizeof what, "access token %s", c.jti);
            if (strcmp(c.client_id, name) != 0) {
                outcome = "refused: another client's token";
            } else if (fk_oauth_state_jti_revoke(o->st, c.jti, c.exp) != FK_OK ||
                       fk_srv_oauth_save(srv) != FK_OK) {
                r = oauth_error(wsi, h, 503, "temporarily_unavailable", "state not saved");
                goto out;
            } else {
                outcome = "revoked";
                o->revocations++;
                fk_srv_mobile_tick(srv);
            }
        }
    } else if (fk_oauth_sha256_b64(tok, strlen(tok), hash) == FK_OK &&
               fk_oauth_state_rt_find(o->st, hash, (long long)time(NULL), &f) !=
                   FK_OAUTH_RT_UNKNOWN) {
        snprintf(what, sizeof what, "refresh token family %s", f.id);
        if (strcmp(f.client, name) != 0 || strcmp(f.kind, fk_srv_kind_name(k)) != 0) {
            outcome = "refused: another client's token";
        } else if (family_revoke(srv, f.id) != FK_OK) {
            r = oauth_error(wsi, h, 503, "temporarily_unavailable", "state not saved");
            goto out;
        } else {
            outcome = "revoked";
        }
    }
    fk_log(strcmp(outcome, "revoked") == 0 ? FK_LOG_INFO : FK_LOG_WARN,
           "server: %s %s %s: revocation of %s: %s", peer, fk_srv_kind_name(k), name,
           what[0] ? what : "a token", outcome);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "token", what[0] ? what : "unknown");
    cJSON_AddStringToObject(a, "outcome", outcome);
    cJSON_AddStringToObject(a, "peer", peer);
    fk_srv_oauth_audit(
        srv, strcmp(outcome, "revoked") == 0 ? "oauth.token_revoked" : "oauth.revoke_refused", name,
        a);
    /* RFC 7009 2.2: 200 also for an unknown token (nothing to learn from the answer). */
    r = fk_srv_http_reply(wsi, h, 200, "application/json", "{}", 2);
out:
    fk_wipe(tok, sizeof tok);
    body_wipe(h);
    return r;
}

int fk_srv_oauth_revoke(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                        const char *path) {
    return want_form(srv, wsi, h, path, revoke_done);
}

/* ---- GET /.well-known/jwks.json, GET /api/whoami ---------------------------------------- */

int fk_srv_oauth_jwks(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                      const char *path) {
    (void)path;
    char jwks[512];
    if (fk_oauth_jwks(srv->oauth->key, jwks, sizeof jwks) != FK_OK) {
        return fk_srv_http_json_error(wsi, h, 500, "jwks unavailable");
    }
    return fk_srv_http_reply(wsi, h, 200, "application/json", jwks, strlen(jwks));
}

static int bearer_refused(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                          enum bearer b, const char *why) {
    char peer[64], name[FK_WSS_ID_MAX + 1], path[128] = "?";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    enum id_kind k = fk_srv_wsi_identity(wsi, name);
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0) {
        (void)lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_POST_URI);
    }
    fk_log(FK_LOG_WARN, "server: %s %s %s: %s refused (401): %s", peer, fk_srv_kind_name(k), name,
           path, b == BEARER_NONE ? "bearer token required" : why);
    if (b == BEARER_BAD) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "path", path);
        cJSON_AddStringToObject(a, "reason", why);
        cJSON_AddStringToObject(a, "peer", peer);
        fk_srv_oauth_audit(srv, "oauth.bearer_refused", name[0] ? name : "?", a);
    }
    return bearer_error(wsi, h, 401, b == BEARER_NONE ? NULL : "invalid_token");
}

int fk_srv_oauth_whoami(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                        const char *path) {
    (void)path;
    struct fk_oauth_claims c;
    char why[128], name[FK_WSS_ID_MAX + 1], sc[FK_OAUTH_SCOPE_SIZE];
    enum bearer b = fk_srv_bearer(srv, wsi, &c, why, 1);
    if (b != BEARER_OK) {
        return bearer_refused(srv, wsi, h, b, why);
    }
    enum id_kind k = fk_srv_wsi_identity(wsi, name);
    fk_oauth_scope_format(c.scope, sc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sub", c.sub);
    cJSON_AddStringToObject(o, "client_id", c.client_id);
    cJSON_AddStringToObject(o, "scope", sc);
    cJSON_AddNumberToObject(o, "exp", (double)c.exp);
    cJSON_AddStringToObject(o, "kind", fk_srv_kind_name(k));
    return fk_srv_http_json(wsi, h, 200, o);
}

int fk_srv_oauth_gate(struct fk_server *srv, struct lws *wsi, struct http_sess *h, int write) {
    struct fk_oauth_claims c;
    char why[128];
    enum bearer b = fk_srv_bearer(srv, wsi, &c, why, 1);
    if (b == BEARER_NONE) {
        return FK_SRV_GATE_NONE;
    }
    if (b != BEARER_OK) {
        return bearer_refused(srv, wsi, h, b, why) == 0 ? FK_SRV_GATE_SENT : FK_SRV_GATE_FAILED;
    }
    unsigned need = write ? FK_SCOPE_FLEET_WRITE : FK_SCOPE_FLEET_READ;
    if (!(c.scope & need)) {
        srv->oauth->bearer_scope++;
        fk_log(FK_LOG_WARN, "server: %s: token %s lacks %s (403)", c.sub, c.jti,
               write ? "fleet:write" : "fleet:read");
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "jti", c.jti);
        cJSON_AddStringToObject(a, "reason",
                                write ? "fleet:write required" : "fleet:read required");
        fk_srv_oauth_audit(srv, "oauth.scope_refused", c.sub, a);
        return bearer_error(wsi, h, 403, "insufficient_scope") == 0 ? FK_SRV_GATE_SENT
                                                                    : FK_SRV_GATE_FAILED;
    }
    snprintf(h->operator_name, sizeof h->operator_name, "%s", c.sub);
    return FK_SRV_GATE_OK;
}

/* ---- metrics ---------------------------------------------------------------------------- */

char *fk_srv_oauth_metrics(struct fk_server *srv) {
    struct srv_oauth *o = srv->oauth;
    size_t fams = 0, denied = 0;
    fk_oauth_state_counts(o->st, &fams, &denied);
    size_t cap = 4096;
    char *p = malloc(cap);
    if (p == NULL) {
        return NULL;
    }
    int n = snprintf(p, cap,
                     "# HELP fleetkey_oauth_token_requests_total Token endpoint requests, by "
                     "grant and result.\n"
                     "# TYPE fleetkey_oauth_token_requests_total counter\n");
    for (int g = 0; g < G_COUNT && n > 0 && (size_t)n < cap; g++) {
        n += snprintf(p + n, cap - (size_t)n,
                      "fleetkey_oauth_token_requests_total{grant=\"%s\",result=\"issued\"} %llu\n"
                      "fleetkey_oauth_token_requests_total{grant=\"%s\",result=\"refused\"} "
                      "%llu\n",
                      grant_names[g], o->issued[g], grant_names[g], o->refused[g]);
    }
    if (n > 0 && (size_t)n < cap) {
        n += snprintf(
            p + n, cap - (size_t)n,
            "# HELP fleetkey_oauth_revocations_total Tokens or families revoked.\n"
            "# TYPE fleetkey_oauth_revocations_total counter\n"
            "fleetkey_oauth_revocations_total %llu\n"
            "# HELP fleetkey_oauth_refresh_reuse_total Spent refresh tokens presented again.\n"
            "# TYPE fleetkey_oauth_refresh_reuse_total counter\n"
            "fleetkey_oauth_refresh_reuse_total %llu\n"
            "# HELP fleetkey_oauth_bearer_total Bearer tokens checked, by result.\n"
            "# TYPE fleetkey_oauth_bearer_total counter\n"
            "fleetkey_oauth_bearer_total{result=\"ok\"} %llu\n"
            "fleetkey_oauth_bearer_total{result=\"invalid\"} %llu\n"
            "fleetkey_oauth_bearer_total{result=\"insufficient_scope\"} %llu\n"
            "# HELP fleetkey_oauth_families Refresh token families not revoked (gauge).\n"
            "# TYPE fleetkey_oauth_families gauge\n"
            "fleetkey_oauth_families %zu\n"
            "# HELP fleetkey_oauth_revoked_tokens Access tokens on the denylist (gauge).\n"
            "# TYPE fleetkey_oauth_revoked_tokens gauge\n"
            "fleetkey_oauth_revoked_tokens %zu\n",
            o->revocations, o->reuse_detected, o->bearer_ok, o->bearer_invalid, o->bearer_scope,
            fams, denied);
    }
    /* The token expiry horizon: an operator sees when phones will have to log in again before
     * they do. No sample while no token is live. */
    long long now = (long long)time(NULL);
    long long rt = 0, at = 0;
    fk_oauth_state_horizon(o->st, now, &rt, &at);
    if (n > 0 && (size_t)n < cap) {
        n += snprintf(p + n, cap - (size_t)n,
                      "# HELP fleetkey_oauth_refresh_expiry_seconds Seconds until the soonest "
                      "live refresh token expires (its client must log in again).\n"
                      "# TYPE fleetkey_oauth_refresh_expiry_seconds gauge\n");
    }
    if (rt != 0 && n > 0 && (size_t)n < cap) {
        n += snprintf(p + n, cap - (size_t)n, "fleetkey_oauth_refresh_expiry_seconds %lld\n",
                      rt - now);
    }
    if (n > 0 && (size_t)n < cap) {
        n += snprintf(p + n, cap - (size_t)n,
                      "# HELP fleetkey_oauth_access_expiry_seconds Seconds until the last access "
                      "token issued expires.\n"
                      "# TYPE fleetkey_oauth_access_expiry_seconds gauge\n");
    }
    if (at != 0 && n > 0 && (size_t)n < cap) {
        n += snprintf(p + n, cap - (size_t)n, "fleetkey_oauth_access_expiry_seconds %lld\n",
                      at - now);
    }
    if (n <= 0 || (size_t)n >= cap) {
        free(p);
        return NULL;
    }
    return p;
}
