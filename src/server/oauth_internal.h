/* OAuth2 in the control plane (oauth_auth.c, mobile.c, oauth.c; docs/oauth.md).
 *
 * oauth_auth.c, lowest: the signing key and the durable token state (oauth-state.json next to
 * the key, rewritten atomically after every change and before any token leaves), the bearer
 * check of a request (signature, iss/aud, exp, the denylist, cnf x5t#S256 = this connection's
 * certificate), the audit rows and the counters. mobile.c: phones on the fleetkey.v1 channel
 * (the upgrade check, hello/welcome, list_devices, ping, and closing a connection whose token
 * expired or was revoked). oauth.c, on top: the routes /oauth/token, /oauth/revoke,
 * /.well-known/jwks.json, /api/whoami, the bearer gate of /api/..., the metrics text.
 * Service thread only. */
#ifndef FK_SERVER_OAUTH_INTERNAL_H
#define FK_SERVER_OAUTH_INTERNAL_H

#include "admin_internal.h"

#include "fleetkey/oauth.h"

/* Grants counted in /metrics. */
enum oauth_grant { G_CLIENT_CREDENTIALS, G_REFRESH_TOKEN, G_OTHER, G_COUNT };

struct srv_oauth {
    struct fk_oauth_key *key;
    struct fk_oauth_state *st;
    char state_path[1100];
    struct session *mobiles; /* phone sessions, linked through prev/next */
    unsigned long long issued[G_COUNT], refused[G_COUNT];
    unsigned long long revocations, reuse_detected;
    unsigned long long bearer_ok, bearer_invalid, bearer_scope;
};

/* ---- oauth_auth.c ----------------------------------------------------------------------- */

/* Loads or creates the key (cfg.oauth_key, default oauth-key.pem next to the inventory) and
 * reads the token state. FK_OK, FK_E_IO, FK_E_CRYPTO, FK_E_POLICY, FK_E_PARSE (diag names the
 * file), FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_srv_oauth_open(struct fk_server *srv, struct fk_diag *diag);
void fk_srv_oauth_free(struct fk_server *srv);
/* Prunes and writes the token state atomically. FK_OK, or FK_E_IO/FK_E_NOMEM (logged). */
FK_MUST_CHECK enum fk_err fk_srv_oauth_save(struct fk_server *srv);

/* base64url(SHA-256(DER)) of the peer certificate of this connection. 0, or -1. */
int fk_srv_peer_x5t(struct lws *wsi, char out[FK_OAUTH_B64_32]);

enum bearer { BEARER_NONE, BEARER_OK, BEARER_BAD };
/* The Authorization: Bearer token of the request on wsi: NONE when there is no Authorization
 * header; OK with *c filled when it verifies, is not revoked and is bound to this
 * connection's certificate; BAD otherwise (why says which, for the log; counted). */
enum bearer fk_srv_bearer(struct fk_server *srv, struct lws *wsi, struct fk_oauth_claims *c,
                          char why[128]);

/* Appends an audit row kind/subject with detail JSON o (taken). Logged when it fails. */
void fk_srv_oauth_audit(struct fk_server *srv, const char *kind, const char *subject, cJSON *o);

/* ---- mobile.c --------------------------------------------------------------------------- */

/* The /ws upgrade of a mobile certificate (name): 0 to accept, else the HTTP status (401)
 * with why filled. */
unsigned fk_srv_mobile_upgrade(struct fk_server *srv, struct lws *wsi, const char *name,
                               char why[128]);
/* ESTABLISHED for a mobile certificate: links s into srv->oauth->mobiles. 0, or -1. */
int fk_srv_mobile_open(struct fk_server *srv, struct session *s, struct lws *wsi);
/* One complete text message of a phone. 0, or -1 to close. */
int fk_srv_mobile_message(struct session *s, struct lws *wsi, const uint8_t *buf, size_t len);
/* CLOSED: unlinks s. */
void fk_srv_mobile_closed(struct session *s);
/* Closes (1008) phone sessions whose token was revoked or expired, or that sent no hello in
 * time; 1001 after 3 ping intervals of silence. Called by the tick and after a revocation. */
void fk_srv_mobile_tick(struct fk_server *srv);

/* ---- oauth.c ---------------------------------------------------------------------------- */

fk_srv_route_fn fk_srv_oauth_token;  /* POST /oauth/token */
fk_srv_route_fn fk_srv_oauth_revoke; /* POST /oauth/revoke */
fk_srv_route_fn fk_srv_oauth_jwks;   /* GET /.well-known/jwks.json */
fk_srv_route_fn fk_srv_oauth_whoami; /* GET /api/whoami */

enum { FK_SRV_GATE_NONE, FK_SRV_GATE_OK, FK_SRV_GATE_SENT, FK_SRV_GATE_FAILED };
/* The bearer gate of an /api/ route (write: a POST). NONE: no Authorization header, the
 * operator-certificate rule applies. OK: the token is valid and has the scope
 * (h->operator_name = its sub). SENT: refused and answered (401/403); FAILED: answering
 * failed, drop the connection. */
int fk_srv_oauth_gate(struct fk_server *srv, struct lws *wsi, struct http_sess *h, int write);

/* The fleetkey_oauth_* lines of /metrics (malloc'd), or NULL. */
char *fk_srv_oauth_metrics(struct fk_server *srv);

#endif
