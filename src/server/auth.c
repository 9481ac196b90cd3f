/* Authentication: see auth_internal.h.
 *
 * Everything that decides who may connect sits on the OpenSSL objects lws hands us in
 * LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
 *
 * - TLS 1.2 minimum, no renegotiation, no session resumption (no tickets, no cache), so every
 *   connection runs a full handshake and meets the CRL as it is now: a resumed session would
 *   skip the certificate check and let a revoked device back in.
 * - Our own verify callback (SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT) over a trust store of the
 *   fleet CA + the CRL with X509_V_FLAG_CRL_CHECK. Its first failure names the rejection
 *   reason; failures that never reach it (no certificate, protocol version) are recognised
 *   from the fatal alert the server sends (info callback).
 *   The store's own signatures (issuing CA, CRLs) are checked when it is built (auth_trust.c),
 *   so a handshake verifies only the client's certificate and CertificateVerify.
 * - The CRL is reloaded by building a fresh store and swapping it into the SSL_CTX: OpenSSL
 *   reads the store only while verifying a handshake, so established connections keep going.
 * - The identity is the certificate's URI SAN urn:fleetkey:<kind>:<name> (as pki issues it),
 *   read again from the peer certificate wherever it is needed rather than cached. */
#include "auth_internal.h"

#include "oauth_internal.h"
#include "session_internal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

const char *const fk_srv_reason_names[R_COUNT] = {
    "no_cert", "bad_chain",        "expired",          "not_yet_valid",
    "revoked", "unknown_identity", "protocol_version", "other"};

static int ctx_idx = -1; /* SSL_CTX ex_data: struct fk_server * */
static int ssl_idx = -1; /* SSL ex_data: per-connection flags (F_*) */
#define F_COUNTED 1u     /* a rejection was counted for this handshake */
#define F_DONE 2u        /* the handshake completed and was counted */

int fk_srv_auth_init(void) {
    if (ctx_idx < 0) {
        ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    return ctx_idx >= 0 && ssl_idx >= 0 && fk_srv_trust_init() == 0 ? 0 : -1;
}

/* ---- identity --------------------------------------------------------------------------- */

/* The name part of urn:fleetkey:<kind>:<name>, checked like fk_pki_name_valid (the same
 * character set), so a name is safe in logs, SQL parameters and JSON. */

static enum id_kind cert_identity(X509 *x, char name[FK_WSS_ID_MAX + 1]) {
    enum id_kind kind = ID_NONE;
    name[0] = '\0';
    if (x == NULL) {
        return ID_NONE;
    }
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && kind == ID_NONE; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI) {
            continue;
        }
        const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        static const struct {
            const char *prefix;
            enum id_kind kind;
        } kinds[] = {{"urn:fleetkey:device:", ID_DEVICE},
                     {"urn:fleetkey:mobile:", ID_MOBILE},
                     {"urn:fleetkey:operator:", ID_OPERATOR}};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            size_t pl = strlen(kinds[k].prefix);
            /* memchr: an embedded NUL must not shorten the name we compare and log. */
            if (n > pl && memcmp(u, kinds[k].prefix, pl) == 0 && memchr(u, '\0', n) == NULL &&
                fk_wss_id_valid(u + pl, n - pl)) {
                memcpy(name, u + pl, n - pl);
                name[n - pl] = '\0';
                kind = kinds[k].kind;
                break;
            }
        }
    }
    GENERAL_NAMES_free(gens);
    return kind;
}

const char *fk_srv_kind_name(enum id_kind k) {
    switch (k) {
    case ID_DEVICE:
        return "device";
    case ID_MOBILE:
        return "mobile";
    case ID_OPERATOR:
        return "operator";
    default:
        return "none";
    }
}

enum id_kind fk_srv_wsi_identity(struct lws *wsi, char name[FK_WSS_ID_MAX + 1]) {
    SSL *ssl = lws_get_ssl(wsi);
    return cert_identity(ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL, name);
}

static void ssl_peer(const SSL *ssl, char *out, size_t size) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    snprintf(out, size, "?");
    int fd = SSL_get_fd(ssl);
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(out, size, "%s:%u", host, port);
}

/* ---- TLS: verification, rejection reasons, CRL ------------------------------------------ */

static unsigned ssl_flags(const SSL *ssl) {
    return (unsigned)(uintptr_t)SSL_get_ex_data(ssl, ssl_idx);
}
static void ssl_flag(const SSL *ssl, unsigned f) {
    SSL_set_ex_data((SSL *)ssl, ssl_idx, (void *)(uintptr_t)(ssl_flags(ssl) | f));
}

static void reject(struct fk_server *srv, const SSL *ssl, enum reason r, const char *detail) {
    char peer[80];
    ssl_peer(ssl, peer, sizeof peer);
    srv->rejections[r]++;
    ssl_flag(ssl, F_COUNTED);
    fk_log(FK_LOG_WARN, "server: %s: handshake refused: %s (%s)", peer, fk_srv_reason_names[r],
           detail);
}

static int verify_cb(int ok, X509_STORE_CTX *xs) {
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct fk_server *srv = ssl != NULL ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx) : NULL;
    if (ok || srv == NULL) {
        return ok;
    }
    int err = X509_STORE_CTX_get_error(xs);
    enum reason r = R_BAD_CHAIN;
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        r = R_EXPIRED;
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        r = R_NOT_YET_VALID;
        break;
    case X509_V_ERR_CERT_REVOKED:
        r = R_REVOKED;
        break;
    default:
        break;
    }
    char subj[256] = "?";
    X509 *cur = X509_STORE_CTX_get_current_cert(xs);
    if (cur != NULL) {
        X509_NAME_oneline(X509_get_subject_name(cur), subj, sizeof subj);
    }
    char detail[512];
    snprintf(detail, sizeof detail, "depth %d %s: %s", X509_STORE_CTX_get_error_depth(xs), subj,
             X509_verify_cert_error_string(err));
    if (!(ssl_flags(ssl) & F_COUNTED)) {
        reject(srv, ssl, r, detail);
    }
    return 0;
}

static void info_cb(const SSL *ssl, int where, int ret) {
    struct fk_server *srv = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
    if (srv == NULL) {
        return;
    }
    unsigned f = ssl_flags(ssl);
    if ((where & SSL_CB_HANDSHAKE_DONE) && !(f & F_DONE)) {
        ssl_flag(ssl, F_DONE);
        srv->handshakes_ok++;
        return;
    }
    if ((where & SSL_CB_WRITE_ALERT) && ((ret >> 8) & 0xff) == SSL3_AL_FATAL &&
        !(f & (F_COUNTED | F_DONE))) {
        int desc = ret & 0xff;
        unsigned long e = ERR_peek_last_error();
        enum reason r = R_OTHER;
        if (desc == SSL_AD_PROTOCOL_VERSION) {
            r = R_PROTOCOL_VERSION;
        } else if (desc == SSL_AD_CERTIFICATE_REQUIRED ||
                   (ERR_GET_LIB(e) == ERR_LIB_SSL &&
                    ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)) {
            r = R_NO_CERT;
        }
        char detail[160];
        /* OpenSSL 3.0 has no text for TLS 1.3's certificate_required (RFC 8446 6.2). */
        snprintf(detail, sizeof detail, "alert %s, %s",
                 desc == SSL_AD_CERTIFICATE_REQUIRED ? "certificate required"
                                                     : SSL_alert_desc_string_long(ret),
                 e != 0 ? ERR_reason_error_string(e) : "no error queued");
        reject(srv, ssl, r, detail);
    }
}

/* A new trust store: the CA file plus every CRL in the CRL file, CRL checking on, and the
 * signatures of its own certificates and CRLs verified here once (auth_trust.c) rather than in
 * every handshake. */
static enum fk_err build_store(struct fk_server *srv, X509_STORE **out, int *n_crls, size_t *n_sigs,
                               struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    X509_STORE *st = X509_STORE_new();
    BIO *b = NULL;
    X509_CRL *crl = NULL;
    *n_crls = 0;
    FK_ENSURE(st != NULL, FK_E_NOMEM);
    FK_ENSURE(X509_STORE_load_file(st, srv->cfg.ca) == 1,
              fk_diag_at(diag, FK_E_CRYPTO, srv->cfg.ca, 0, "cannot load CA certificates"));
    if (srv->cfg.crl[0] != '\0') {
        b = BIO_new_file(srv->cfg.crl, "r");
        FK_ENSURE(b != NULL, fk_diag_at(diag, FK_E_IO, srv->cfg.crl, 0, "cannot open CRL"));
        while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
            FK_ENSURE(X509_STORE_add_crl(st, crl) == 1,
                      fk_diag_at(diag, FK_E_CRYPTO, srv->cfg.crl, 0, "cannot add CRL"));
            X509_CRL_free(crl);
            crl = NULL;
            ++*n_crls;
        }
        ERR_clear_error(); /* the loop ends on "no start line" */
        FK_ENSURE(*n_crls > 0, fk_diag_at(diag, FK_E_CRYPTO, srv->cfg.crl, 0, "no CRL in file"));
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    }
    FK_ENSURE(fk_srv_trust_prepare(st, n_sigs) == FK_OK,
              fk_diag_at(diag, FK_E_CRYPTO, srv->cfg.ca, 0, "cannot prepare the trust store"));
    *out = st;
    st = NULL;
    rc = FK_OK;
out:
    X509_CRL_free(crl);
    BIO_free(b);
    X509_STORE_free(st);
    return rc;
}

static enum fk_err crl_load(struct fk_server *srv, struct fk_diag *diag) {
    X509_STORE *st = NULL;
    int n = 0;
    size_t sigs = 0;
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    if (srv->cfg.crl[0] != '\0' && stat(srv->cfg.crl, &sb) != 0) {
        return fk_diag_at(diag, FK_E_IO, srv->cfg.crl, 0, "cannot stat CRL");
    }
    enum fk_err rc = build_store(srv, &st, &n, &sigs, diag);
    if (rc != FK_OK) {
        return rc;
    }
    SSL_CTX_set_cert_store(srv->ssl_ctx, st); /* frees the previous store */
    srv->crl_st = sb;
    if (srv->cfg.crl[0] != '\0') {
        fk_log(FK_LOG_INFO, "server: CRL %s loaded (%d CRLs; %zu CA/CRL signatures verified once)",
               srv->cfg.crl, n, sigs);
    }
    return FK_OK;
}

/* After a CRL reload: the WebSockets whose client certificate the new CRL revokes were admitted
 * under the old one. Each peer chain is verified again against the new store, and a connection
 * whose certificate is now revoked is closed 1008; other verdicts (an expiry during the
 * connection, say) are left to the next handshake. */
static void close_revoked_in(struct fk_server *srv, struct session *list) {
    X509_STORE *st = SSL_CTX_get_cert_store(srv->ssl_ctx);
    for (struct session *s = list; s != NULL; s = s->next) {
        if (s->wsi == NULL || s->closing || s->close_code != 0) {
            continue;
        }
        SSL *ssl = lws_get_ssl(s->wsi);
        X509 *leaf = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
        X509_STORE_CTX *ctx = leaf != NULL ? X509_STORE_CTX_new() : NULL;
        int revoked =
            ctx != NULL && X509_STORE_CTX_init(ctx, st, leaf, SSL_get_peer_cert_chain(ssl)) == 1 &&
            X509_verify_cert(ctx) != 1 && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CERT_REVOKED;
        if (revoked) {
            fk_log(FK_LOG_WARN, "server: %s %s: certificate revoked by the new CRL: closing",
                   s->peer, s->id[0] != '\0' ? s->id : "?");
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "certificate revoked");
        }
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
    }
}

/* Devices and phones: a phone holds its connection by certificate as much as by token. */
static void close_revoked(struct fk_server *srv) {
    close_revoked_in(srv, srv->sessions);
    if (srv->oauth != NULL) {
        close_revoked_in(srv, srv->oauth->mobiles);
    }
}

void fk_srv_crl_maybe_reload(struct fk_server *srv) {
    struct stat sb;
    int changed = srv->reload;
    srv->reload = 0;
    if (srv->cfg.crl[0] == '\0') {
        return;
    }
    if (stat(srv->cfg.crl, &sb) == 0 &&
        (sb.st_ino != srv->crl_st.st_ino || sb.st_size != srv->crl_st.st_size ||
         sb.st_mtim.tv_sec != srv->crl_st.st_mtim.tv_sec ||
         sb.st_mtim.tv_nsec != srv->crl_st.st_mtim.tv_nsec)) {
        changed = 1;
    }
    if (!changed) {
        return;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    if (crl_load(srv, &d) != FK_OK) {
        char msg[600];
        fk_diag_format(&d, msg, sizeof msg);
        srv->crl_reload_failures++;
        /* Keep the old store: a half-written file must not switch revocation off. */
        fk_log(FK_LOG_ERROR, "server: CRL reload failed, keeping the previous CRL: %s", msg);
        if (stat(srv->cfg.crl, &sb) == 0) {
            srv->crl_st = sb; /* retry when it changes again, not every second */
        }
        return;
    }
    srv->crl_reloads++;
    close_revoked(srv);
}

int fk_srv_setup_tls(struct fk_server *srv, SSL_CTX *ctx) {
    struct fk_diag d;
    fk_diag_init(&d);
    srv->ssl_ctx = ctx;
    SSL_CTX_set_ex_data(ctx, ctx_idx, srv);
    /* TLS 1.1 and below are refused: the peer gets a protocol_version alert. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
                                     "ECDHE-ECDSA-AES256-GCM-SHA384") != 1) {
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_verify_depth(ctx, 3);
    SSL_CTX_set_info_callback(ctx, info_cb);
    STACK_OF(X509_NAME) *cas = SSL_load_client_CA_file(srv->cfg.ca);
    if (cas != NULL) {
        SSL_CTX_set_client_CA_list(ctx, cas);
    }
    if (crl_load(srv, &d) != FK_OK) {
        char msg[600];
        fk_diag_format(&d, msg, sizeof msg);
        fk_log(FK_LOG_ERROR, "server: %s", msg);
        return -1;
    }
    return 0;
}

/* Does the comma-separated Sec-WebSocket-Protocol list name ours? */
static int offers_subprotocol(struct lws *wsi) {
    char list[256];
    if (lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) <= 0) {
        return 0;
    }
    const char *p = list;
    size_t want = strlen(FK_WSS_SUBPROTOCOL);
    while (*p != '\0') {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        size_t n = strcspn(p, ", ");
        if (n == want && memcmp(p, FK_WSS_SUBPROTOCOL, n) == 0) {
            return 1;
        }
        p += n;
    }
    return 0;
}

static int refuse_upgrade(struct fk_server *srv, struct lws *wsi, unsigned status, enum reason r,
                          const char *who, const char *why) {
    char peer[64];
    lws_get_peer_simple(wsi, peer, sizeof peer);
    if (r != R_COUNT) {
        srv->rejections[r]++;
    }
    fk_log(FK_LOG_WARN, "server: %s %s: WebSocket upgrade refused (%u): %s%s%s", peer, who, status,
           why, r != R_COUNT ? ", reason " : "", r != R_COUNT ? fk_srv_reason_names[r] : "");
    if (lws_return_http_status(wsi, status, why)) {
        return -1;
    }
    return 1;
}

struct fpr_match {
    const char *fpr;
    int revoked;
};

static int cred_revoked(void *user, const struct fk_inv_credential *c) {
    struct fpr_match *m = user;
    if (strcmp(c->fingerprint, m->fpr) == 0 && strcmp(c->state, "revoked") == 0) {
        m->revoked = 1;
        return 1;
    }
    return 0;
}

/* 1 when the inventory marks the peer's certificate (by its "sha256:<hex>" fingerprint, the
 * form pki records) revoked: `ca revoke --inventory` takes effect here before the next CRL
 * is published. */
static int inventory_revoked(struct fk_server *srv, struct lws *wsi, const char *id) {
    SSL *ssl = lws_get_ssl(wsi);
    X509 *x = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char fpr[8 + 2 * EVP_MAX_MD_SIZE + 1] = "sha256:";
    if (x == NULL || X509_digest(x, EVP_sha256(), md, &mdlen) != 1 ||
        fk_hex_encode(md, mdlen, fpr + 7, sizeof fpr - 7) != FK_OK) {
        return 0;
    }
    struct fpr_match m = {fpr, 0};
    if (fk_inventory_credential_list(srv->inv, id, cred_revoked, &m, NULL) != FK_OK) {
        return 0;
    }
    return m.revoked;
}

/* ---- revocations recorded in the inventory while devices are connected -------------------
 * `ca revoke --inventory` appends a pki.cert_revoked audit row naming the device; each tick
 * reads the rows appended since the last one, and a connected device so named whose own
 * certificate the inventory now marks revoked is closed 1008, without waiting for the next
 * CRL. Only new rows are read, so a tick costs nothing when nothing happened. */
static int on_new_audit(void *user, const struct fk_inv_audit *a) {
    struct fk_server *srv = user;
    srv->audit_seen = a->seq;
    if (strcmp(a->kind, "pki.cert_revoked") != 0) {
        return 0;
    }
    for (struct session *s = fk_srv_sessions_hashed(srv, a->subject); s != NULL; s = s->id_next) {
        if (s->hello_done && !s->closing && s->close_code == 0 && strcmp(s->id, a->subject) == 0 &&
            inventory_revoked(srv, s->wsi, s->id)) {
            fk_log(FK_LOG_WARN, "server: %s %s: certificate revoked in the inventory: closing",
                   s->peer, s->id);
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "certificate revoked");
        }
    }
    return 0;
}

void fk_srv_revocations_check(struct fk_server *srv) {
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_audit_list_after(srv->inv, srv->audit_seen, on_new_audit, srv, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: reading new audit rows failed: %s", d.msg);
    }
}

int fk_srv_confirm_upgrade(struct fk_server *srv, struct lws *wsi) {
    char path[128];
    char name[FK_WSS_ID_MAX + 1];
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
        strcmp(path, FK_WSS_PATH) != 0) {
        return refuse_upgrade(srv, wsi, 404, R_COUNT, "?", "no WebSocket here");
    }
    if (!offers_subprotocol(wsi)) {
        return refuse_upgrade(srv, wsi, 400, R_COUNT, "?", "subprotocol fleetkey.v1 required");
    }
    enum id_kind k = fk_srv_wsi_identity(wsi, name);
    if (k == ID_MOBILE) {
        char why[128];
        unsigned st = fk_srv_mobile_upgrade(srv, wsi, name, why);
        return st == 0 ? 0 : refuse_upgrade(srv, wsi, st, R_COUNT, name, why);
    }
    if (k != ID_DEVICE) {
        return refuse_upgrade(srv, wsi, 403, k == ID_NONE ? R_UNKNOWN_IDENTITY : R_COUNT,
                              fk_srv_kind_name(k), "not a device certificate");
    }
    struct fk_inv_device d;
    if (strlen(name) >= sizeof d.id) {
        return refuse_upgrade(srv, wsi, 403, R_UNKNOWN_IDENTITY, name, "device id too long");
    }
    enum fk_err rc = fk_inventory_device_get(srv->inv, name, &d, NULL);
    if (rc == FK_E_NOTFOUND || (rc == FK_OK && strcmp(d.state, "retired") == 0)) {
        return refuse_upgrade(srv, wsi, 403, R_UNKNOWN_IDENTITY, name,
                              rc == FK_OK ? "device retired" : "device not in the inventory");
    }
    if (rc != FK_OK) {
        return refuse_upgrade(srv, wsi, 503, R_COUNT, name, "inventory unavailable");
    }
    if (inventory_revoked(srv, wsi, name)) {
        return refuse_upgrade(srv, wsi, 403, R_REVOKED, name,
                              "certificate revoked in the inventory");
    }
    return 0;
}
