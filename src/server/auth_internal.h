/* Authentication (auth.c): who may connect, and who is still allowed to stay connected.
 *
 * Owns the TLS policy of the one SSL_CTX (TLS 1.2 minimum, no resumption, our verify and info
 * callbacks counting each refusal once by reason), the trust store of fleet CA + CRL and its
 * reload (a fresh store swapped in; a failed reload keeps the old one), the identity read from
 * a peer certificate's URI SAN, the WebSocket upgrade checks (path, subprotocol, device
 * identity, inventory, revocation in the inventory) and the closing of connections whose
 * certificate a new CRL or a pki.cert_revoked audit row revokes. Service thread only. */
#ifndef FK_SERVER_AUTH_INTERNAL_H
#define FK_SERVER_AUTH_INTERNAL_H

#include "server_internal.h"

/* Indexed by enum reason: the names /metrics and the log use. */
extern const char *const fk_srv_reason_names[R_COUNT];

/* Allocates the OpenSSL ex_data indexes (once per process). 0, or -1 when OpenSSL cannot. */
int fk_srv_auth_init(void);

/* auth_trust.c: the signatures of the trust store's own objects (a CA certificate signed by
 * another CA of the store, a CRL signed by a CA of the store) are verified once, when the store
 * is built, instead of in every handshake. fk_srv_trust_init (called by fk_srv_auth_init) finds
 * OpenSSL's default hooks, once per process: 0, or -1. fk_srv_trust_prepare, on a store filled
 * with its certificates and CRLs (nothing may be added afterwards), verifies them, keeps the
 * pairs that verified as the store's ex_data (freed with the store) and installs the store's
 * check_crl and verify hooks, which take the same decisions with the same errors as OpenSSL's
 * and skip only a signature check recorded here. *n_cached gets the number of pairs. FK_OK, or
 * FK_E_NOMEM / FK_E_CRYPTO (the store is then unchanged). */
int fk_srv_trust_init(void);
enum fk_err fk_srv_trust_prepare(X509_STORE *st, size_t *n_cached);

/* LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS: configures ctx (the vhost's SSL_CTX)
 * and loads the CA and CRL. 0, or -1 (logged) when TLS cannot be set up. */
int fk_srv_setup_tls(struct fk_server *srv, SSL_CTX *ctx);

/* Reloads the CRL when asked (srv->reload) or when the file changed; after a reload, closes
 * 1008 the WebSockets whose certificate it revokes. Never fails: a bad file is logged. */
void fk_srv_crl_maybe_reload(struct fk_server *srv);

/* Reads the audit rows appended since the last call; a connected device named by a new
 * pki.cert_revoked row whose certificate the inventory marks revoked is closed 1008. */
void fk_srv_revocations_check(struct fk_server *srv);

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 to accept, 1 after answering the refusal (counted and
 * logged), -1 to drop the connection. */
int fk_srv_confirm_upgrade(struct fk_server *srv, struct lws *wsi);

/* The peer certificate's identity; name gets the <name> part ("" when ID_NONE). */
enum id_kind fk_srv_wsi_identity(struct lws *wsi, char name[FK_WSS_ID_MAX + 1]);
/* "device", "mobile", "operator", "none"; never NULL. */
const char *fk_srv_kind_name(enum id_kind k);

#endif
