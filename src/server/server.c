/* fleetkey-server's control plane on libwebsockets.
 *
 * Design: one lws context, one vhost, one TLS port, one thread. lws owns the sockets, the
 * HTTP parser and the RFC 6455 framing; everything that decides who may connect is ours and
 * sits on the OpenSSL objects lws hands us in LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
 *
 * - TLS 1.2 minimum, no renegotiation, no session resumption (no tickets, no cache), so every
 *   connection runs a full handshake and meets the CRL as it is now: a resumed session would
 *   skip the certificate check and let a revoked device back in.
 * - Our own verify callback (SSL_VERIFY_PEER | FAIL_IF_NO_PEER_CERT) over a trust store of the
 *   fleet CA + the CRL with X509_V_FLAG_CRL_CHECK. Its first failure names the rejection
 *   reason; failures that never reach it (no certificate, protocol version) are recognised
 *   from the fatal alert the server sends (info callback).
 * - The CRL is reloaded by building a fresh store and swapping it into the SSL_CTX: OpenSSL
 *   reads the store only while verifying a handshake, so established connections keep going.
 * - The identity is the certificate's URI SAN urn:fleetkey:<kind>:<name> (as pki issues it),
 *   read again from the peer certificate wherever it is needed rather than cached.
 *
 * WebSocket messages are bounded (FK_WSS_MAX_MESSAGE) and reassembled into a buffer that is
 * only allocated when a message arrives in several pieces; outgoing messages wait in a short
 * per-connection queue whose overflow closes that connection. */
#include "fleetkey/server.h"

#include "fleetkey/inventory.h"

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define OUTQ_MAX 8 /* queued messages per connection before it is closed as a flood */

enum reason {
    R_NO_CERT,
    R_BAD_CHAIN,
    R_EXPIRED,
    R_NOT_YET_VALID,
    R_REVOKED,
    R_UNKNOWN_IDENTITY,
    R_PROTOCOL_VERSION,
    R_OTHER,
    R_COUNT
};
static const char *const reason_names[R_COUNT] = {
    "no_cert", "bad_chain", "expired", "not_yet_valid", "revoked", "unknown_identity",
    "protocol_version", "other"};

enum id_kind { ID_NONE, ID_DEVICE, ID_MOBILE, ID_OPERATOR, ID_SERVER };

struct outmsg {
    struct outmsg *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the message */
};

struct session {
    struct fk_server *srv;
    struct session *prev, *next;
    struct lws *wsi;
    char id[FK_WSS_ID_MAX + 1];
    char peer[64];
    int hello_done;
    time_t opened;
    time_t last_rx;
    uint8_t *rx; /* reassembly buffer, FK_WSS_MAX_MESSAGE bytes, only when fragmented */
    size_t rx_len;
    struct outmsg *q_head, *q_tail;
    unsigned q_n;
    int close_code;
    char close_reason[64];
    int closing; /* close frame queued: log and count once */
    char pending[FK_WSS_REQID_MAX + 1]; /* id of the outstanding request, "" when none */
    time_t pending_since;
};

struct http_sess {
    unsigned char *buf; /* LWS_PRE + body */
    size_t len;
};

struct fk_server {
    struct fk_server_config cfg;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    SSL_CTX *ssl_ctx;
    struct fk_inventory *inv;
    lws_sorted_usec_list_t tick;
    volatile sig_atomic_t stop;
    volatile sig_atomic_t reload;
    struct stat crl_st;
    struct session *sessions;
    time_t started;
    /* metrics */
    unsigned long long ws_open;
    unsigned long long handshakes_ok;
    unsigned long long rejections[R_COUNT];
    unsigned long long msgs_in, msgs_out;
    unsigned long long closes[8]; /* by close code, index from close_index() */
    unsigned long long http_requests;
    unsigned long long crl_reloads, crl_reload_failures;
    unsigned long long requests, responses, request_timeouts;
    int load_error; /* set when LOAD_EXTRA could not configure TLS */
};

static int ctx_idx = -1; /* SSL_CTX ex_data: struct fk_server * */
static int ssl_idx = -1; /* SSL ex_data: per-connection flags (F_*) */
#define F_COUNTED 1u     /* a rejection was counted for this handshake */
#define F_DONE 2u        /* the handshake completed and was counted */

static const int close_codes[8] = {1000, 1001, 1003, 1007, 1008, 1009, 1011, 0};
static int close_index(int code) {
    for (int i = 0; i < 7; i++) {
        if (close_codes[i] == code) {
            return i;
        }
    }
    return 7;
}

/* ---- identity --------------------------------------------------------------------------- */

/* The name part of urn:fleetkey:<kind>:<name>, checked like fk_pki_name_valid (the same
 * character set), so a name is safe in logs, SQL parameters and JSON. */
static int name_ok(const char *s, size_t n) {
    if (n == 0 || n > FK_WSS_ID_MAX || s[0] == '.' || s[0] == '-') {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

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
                name_ok(u + pl, n - pl)) {
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

static const char *kind_name(enum id_kind k) {
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

static enum id_kind wsi_identity(struct lws *wsi, char name[FK_WSS_ID_MAX + 1]) {
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
    fk_log(FK_LOG_WARN, "server: %s: handshake refused: %s (%s)", peer, reason_names[r], detail);
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

/* A new trust store: the CA file plus every CRL in the CRL file, CRL checking on. */
static enum fk_err build_store(struct fk_server *srv, X509_STORE **out, int *n_crls,
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
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    if (srv->cfg.crl[0] != '\0' && stat(srv->cfg.crl, &sb) != 0) {
        return fk_diag_at(diag, FK_E_IO, srv->cfg.crl, 0, "cannot stat CRL");
    }
    enum fk_err rc = build_store(srv, &st, &n, diag);
    if (rc != FK_OK) {
        return rc;
    }
    SSL_CTX_set_cert_store(srv->ssl_ctx, st); /* frees the previous store */
    srv->crl_st = sb;
    if (srv->cfg.crl[0] != '\0') {
        fk_log(FK_LOG_INFO, "server: CRL %s loaded (%d CRLs)", srv->cfg.crl, n);
    }
    return FK_OK;
}

static void crl_maybe_reload(struct fk_server *srv) {
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
}

static int setup_tls(struct fk_server *srv, SSL_CTX *ctx) {
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

/* ---- WebSocket sessions ----------------------------------------------------------------- */

static int enqueue(struct session *s, struct lws *wsi, const char *text, size_t len) {
    if (s->q_n >= OUTQ_MAX || len > FK_WSS_MAX_MESSAGE) {
        s->close_code = FK_WSS_CLOSE_POLICY;
        snprintf(s->close_reason, sizeof s->close_reason, "send queue full");
        lws_callback_on_writable(wsi);
        return -1;
    }
    struct outmsg *m = malloc(sizeof *m + LWS_PRE + len);
    if (m == NULL) {
        return -1;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->data + LWS_PRE, text, len);
    if (s->q_tail != NULL) {
        s->q_tail->next = m;
    } else {
        s->q_head = m;
    }
    s->q_tail = m;
    s->q_n++;
    lws_callback_on_writable(wsi);
    return 0;
}

static int enqueue_json(struct session *s, struct lws *wsi, cJSON *o) {
    char buf[FK_WSS_MAX_MESSAGE];
    int ok = o != NULL && cJSON_PrintPreallocated(o, buf, (int)sizeof buf, 0);
    cJSON_Delete(o);
    return ok ? enqueue(s, wsi, buf, strlen(buf)) : -1;
}

static void schedule_close(struct session *s, struct lws *wsi, int code, const char *why) {
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", why);
    lws_callback_on_writable(wsi);
}

static int close_now(struct session *s, struct lws *wsi, int code, const char *why,
                     const char *detail) {
    if (s->closing) {
        return -1;
    }
    s->closing = 1;
    fk_log(code == FK_WSS_CLOSE_GOING_AWAY ? FK_LOG_INFO : FK_LOG_WARN,
           "server: %s %s: closing %d (%s)%s%s", s->peer, s->id[0] ? s->id : "?", code, why,
           detail != NULL ? ": " : "", detail != NULL ? detail : "");
    s->srv->closes[close_index(code)]++;
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
    return -1;
}

static int on_hello(struct session *s, struct lws *wsi, const struct fk_wss_msg *m) {
    struct fk_server *srv = s->srv;
    if (s->hello_done) {
        return close_now(s, wsi, FK_WSS_CLOSE_POLICY, "second hello", NULL);
    }
    if (strcmp(m->device_id, s->id) != 0) {
        return close_now(s, wsi, FK_WSS_CLOSE_POLICY, "device_id is not the certificate's",
                         m->device_id);
    }
    struct fk_inv_presence *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return close_now(s, wsi, FK_WSS_CLOSE_INTERNAL, "internal error", "out of memory");
    }
    /* confirm_upgrade refused ids that do not fit an inventory id. */
    snprintf(p->device_id, sizeof p->device_id, "%.*s", (int)sizeof p->device_id - 1, s->id);
    snprintf(p->peer, sizeof p->peer, "%s", s->peer);
    snprintf(p->firmware_version, sizeof p->firmware_version, "%s", m->firmware_version);
    snprintf(p->credential_versions, sizeof p->credential_versions, "%s",
             m->credential_versions);
    snprintf(p->posture, sizeof p->posture, "%s", m->posture);
    int first = 0;
    int changed = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_inventory_device_seen(srv->inv, p, &first, &changed, &d);
    free(p);
    if (rc == FK_OK && (first || changed)) {
        char detail[FK_WSS_MAX_MESSAGE + 256];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "peer", s->peer);
        cJSON_AddStringToObject(o, "firmware_version", m->firmware_version);
        cJSON_AddStringToObject(o, "build", m->posture_build);
        if (!cJSON_PrintPreallocated(o, detail, (int)sizeof detail, 0)) {
            snprintf(detail, sizeof detail, "{}");
        }
        cJSON_Delete(o);
        rc = fk_inventory_audit_append(srv->inv, "fleetkey-server",
                                       first ? "device.connected" : "device.posture_changed",
                                       s->id, detail, &d);
    }
    if (rc != FK_OK) {
        char msg[600];
        fk_diag_format(&d, msg, sizeof msg);
        return close_now(s, wsi, FK_WSS_CLOSE_INTERNAL, "internal error", msg);
    }
    s->hello_done = 1;
    fk_log(FK_LOG_INFO, "server: %s %s: hello, firmware %s, %s build%s", s->peer, s->id,
           m->firmware_version, m->posture_build, first ? " (first connection)" : "");
    char now[21];
    fk_time_rfc3339((long long)time(NULL), now);
    cJSON *w = cJSON_CreateObject();
    cJSON_AddStringToObject(w, "type", "welcome");
    cJSON_AddStringToObject(w, "device_id", s->id);
    cJSON_AddStringToObject(w, "server_time", now);
    cJSON_AddNumberToObject(w, "ping_interval", srv->cfg.ping_interval);
    cJSON_AddNumberToObject(w, "max_message", FK_WSS_MAX_MESSAGE);
    if (enqueue_json(s, wsi, w) != 0) {
        return -1;
    }
    if (srv->cfg.status_request) {
        /* One outstanding request per connection (docs/wss-protocol.md); ids are unique per
         * server run, so also per connection. */
        snprintf(s->pending, sizeof s->pending, "r-%06llu", ++srv->requests);
        s->pending_since = time(NULL);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "type", "request");
        cJSON_AddStringToObject(r, "id", s->pending);
        cJSON_AddStringToObject(r, "kind", "status");
        cJSON_AddItemToObject(r, "body", cJSON_CreateObject());
        return enqueue_json(s, wsi, r) == 0 ? 0 : -1;
    }
    return 0;
}

static int on_message(struct session *s, struct lws *wsi, const uint8_t *buf, size_t len) {
    static struct fk_wss_msg m; /* 8 KiB: one thread, so one static instead of the stack */
    int code = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    s->srv->msgs_in++;
    if (fk_wss_msg_parse(buf, len, &m, &code, &d) != FK_OK) {
        return close_now(s, wsi, code,
                         code == FK_WSS_CLOSE_TOO_BIG ? "message too big" : "invalid payload",
                         d.msg);
    }
    if (!s->hello_done && m.type != FK_WSS_HELLO) {
        return close_now(s, wsi, FK_WSS_CLOSE_POLICY, "hello must come first", m.type_name);
    }
    switch (m.type) {
    case FK_WSS_HELLO:
        return on_hello(s, wsi, &m);
    case FK_WSS_PING: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "pong");
        if (m.has_id) {
            cJSON_AddNumberToObject(o, "id", (double)m.id);
        }
        return enqueue_json(s, wsi, o) == 0 ? 0 : -1;
    }
    case FK_WSS_PONG:
        return 0;
    case FK_WSS_RESPONSE:
        if (s->pending[0] == '\0' || strcmp(m.req_id, s->pending) != 0) {
            fk_log(FK_LOG_DEBUG, "server: %s: response %s to no outstanding request", s->id,
                   m.req_id);
            return 0;
        }
        s->srv->responses++;
        fk_log(FK_LOG_INFO, "server: %s %s: response %s: %s", s->peer, s->id, m.req_id,
               m.ok ? "ok" : "refused");
        s->pending[0] = '\0';
        return 0;
    case FK_WSS_OTHER:
    default: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "error");
        cJSON_AddStringToObject(o, "code", "unknown_type");
        cJSON_AddStringToObject(o, "message", "message type not known to fleetkey.v1");
        cJSON_AddStringToObject(o, "ref", m.type_name);
        return enqueue_json(s, wsi, o) == 0 ? 0 : -1;
    }
    }
}

static int on_receive(struct session *s, struct lws *wsi, const uint8_t *in, size_t len) {
    s->last_rx = time(NULL);
    if (lws_frame_is_binary(wsi)) {
        return close_now(s, wsi, FK_WSS_CLOSE_UNSUPPORTED, "binary frames not accepted", NULL);
    }
    int first = lws_is_first_fragment(wsi);
    int final = lws_is_final_fragment(wsi);
    size_t remaining = lws_remaining_packet_payload(wsi);
    if (first) {
        s->rx_len = 0;
    }
    /* The frame header already says how much is still coming: refuse an oversized frame at
     * its first piece instead of reading it all. */
    if (len > FK_WSS_MAX_MESSAGE || remaining > FK_WSS_MAX_MESSAGE - len ||
        s->rx_len > FK_WSS_MAX_MESSAGE - len - remaining) {
        char detail[96];
        snprintf(detail, sizeof detail, "%zu bytes and more announced (max %u)",
                 s->rx_len + len + remaining, FK_WSS_MAX_MESSAGE);
        return close_now(s, wsi, FK_WSS_CLOSE_TOO_BIG, "message too big", detail);
    }
    if (first && final) {
        return on_message(s, wsi, in, len);
    }
    if (s->rx == NULL) {
        s->rx = malloc(FK_WSS_MAX_MESSAGE);
        if (s->rx == NULL) {
            return close_now(s, wsi, FK_WSS_CLOSE_INTERNAL, "internal error", "out of memory");
        }
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!final) {
        return 0;
    }
    int r = on_message(s, wsi, s->rx, s->rx_len);
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
    return r;
}

static void session_free(struct session *s) {
    while (s->q_head != NULL) {
        struct outmsg *m = s->q_head;
        s->q_head = m->next;
        free(m);
    }
    s->q_tail = NULL;
    s->q_n = 0;
    free(s->rx);
    s->rx = NULL;
}

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len) {
    struct session *s = user;
    struct fk_server *srv = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        memset(s, 0, sizeof *s);
        if (wsi_identity(wsi, s->id) != ID_DEVICE) {
            return -1; /* cannot happen: the upgrade was refused before; s->srv stays NULL,
                          so CLOSED does not unlink a session that was never linked */
        }
        s->srv = srv;
        s->wsi = wsi;
        lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
        s->opened = s->last_rx = time(NULL);
        s->next = srv->sessions;
        if (srv->sessions != NULL) {
            srv->sessions->prev = s;
        }
        srv->sessions = s;
        srv->ws_open++;
        fk_log(FK_LOG_DEBUG, "server: %s %s: WebSocket open", s->peer, s->id);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return on_receive(s, wsi, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->close_code != 0) {
            return close_now(s, wsi, s->close_code, s->close_reason, NULL);
        }
        struct outmsg *m = s->q_head;
        if (m == NULL) {
            return 0;
        }
        if (lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int)m->len) {
            return -1;
        }
        srv->msgs_out++;
        s->q_head = m->next;
        if (s->q_head == NULL) {
            s->q_tail = NULL;
        }
        s->q_n--;
        free(m);
        if (s->q_head != NULL) {
            lws_callback_on_writable(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        if (s->srv != NULL) {
            if (s->prev != NULL) {
                s->prev->next = s->next;
            } else {
                srv->sessions = s->next;
            }
            if (s->next != NULL) {
                s->next->prev = s->prev;
            }
            srv->ws_open--;
            fk_log(FK_LOG_DEBUG, "server: %s %s: WebSocket closed", s->peer, s->id);
        }
        session_free(s);
        s->srv = NULL;
        return 0;
    default:
        return 0;
    }
}

/* ---- HTTP: upgrade checks, health, metrics, admin API ----------------------------------- */

static int http_reply(struct lws *wsi, struct http_sess *h, unsigned status, const char *ctype,
                      const char *body, size_t len) {
    unsigned char hdr[LWS_PRE + 512];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    free(h->buf);
    h->buf = malloc(LWS_PRE + len + 1);
    if (h->buf == NULL) {
        return -1;
    }
    memcpy(h->buf + LWS_PRE, body, len);
    h->len = len;
    if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        return -1;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_json_error(struct lws *wsi, struct http_sess *h, unsigned status,
                           const char *msg) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", msg);
    return http_reply(wsi, h, status, "application/json", body, (size_t)n);
}

struct strbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void sb_printf(struct strbuf *b, const char *fmt, ...) FK_PRINTF(2, 3);
static void sb_printf(struct strbuf *b, const char *fmt, ...) {
    for (int tries = 0; tries < 2 && !b->failed; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p != NULL ? b->p + b->len : NULL, b->p != NULL ? b->cap - b->len : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->p != NULL && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static int http_metrics(struct fk_server *srv, struct lws *wsi, struct http_sess *h) {
    struct strbuf b = {0};
    sb_printf(&b, "# HELP fleetkey_connections_open WebSocket connections open now.\n"
                  "# TYPE fleetkey_connections_open gauge\n"
                  "fleetkey_connections_open %llu\n",
              srv->ws_open);
    sb_printf(&b, "# HELP fleetkey_handshakes_total TLS handshakes completed (client "
                  "certificate verified).\n# TYPE fleetkey_handshakes_total counter\n"
                  "fleetkey_handshakes_total %llu\n",
              srv->handshakes_ok);
    sb_printf(&b, "# HELP fleetkey_rejections_total Connections refused, by reason.\n"
                  "# TYPE fleetkey_rejections_total counter\n");
    for (int r = 0; r < R_COUNT; r++) {
        sb_printf(&b, "fleetkey_rejections_total{reason=\"%s\"} %llu\n", reason_names[r],
                  srv->rejections[r]);
    }
    sb_printf(&b, "# HELP fleetkey_messages_total WebSocket messages, by direction.\n"
                  "# TYPE fleetkey_messages_total counter\n"
                  "fleetkey_messages_total{direction=\"in\"} %llu\n"
                  "fleetkey_messages_total{direction=\"out\"} %llu\n",
              srv->msgs_in, srv->msgs_out);
    sb_printf(&b, "# HELP fleetkey_ws_closes_total WebSocket closes sent by the server, by "
                  "code.\n# TYPE fleetkey_ws_closes_total counter\n");
    for (int i = 0; i < 7; i++) {
        sb_printf(&b, "fleetkey_ws_closes_total{code=\"%d\"} %llu\n", close_codes[i],
                  srv->closes[i]);
    }
    sb_printf(&b, "# HELP fleetkey_http_requests_total HTTP requests served.\n"
                  "# TYPE fleetkey_http_requests_total counter\n"
                  "fleetkey_http_requests_total %llu\n"
                  "# HELP fleetkey_crl_reloads_total CRL reloads, by result.\n"
                  "# TYPE fleetkey_crl_reloads_total counter\n"
                  "fleetkey_crl_reloads_total{result=\"ok\"} %llu\n"
                  "fleetkey_crl_reloads_total{result=\"failed\"} %llu\n"
                  "# HELP fleetkey_requests_total Server-initiated requests, by outcome.\n"
                  "# TYPE fleetkey_requests_total counter\n"
                  "fleetkey_requests_total{outcome=\"sent\"} %llu\n"
                  "fleetkey_requests_total{outcome=\"answered\"} %llu\n"
                  "fleetkey_requests_total{outcome=\"timed_out\"} %llu\n"
                  "# HELP fleetkey_uptime_seconds Seconds since start.\n"
                  "# TYPE fleetkey_uptime_seconds gauge\n"
                  "fleetkey_uptime_seconds %lld\n",
              srv->http_requests, srv->crl_reloads, srv->crl_reload_failures, srv->requests,
              srv->responses, srv->request_timeouts, (long long)(time(NULL) - srv->started));
    int r = b.failed ? -1
                     : http_reply(wsi, h, 200, "text/plain; version=0.0.4; charset=utf-8", b.p,
                                  b.len);
    free(b.p);
    return r;
}

static int connected(const struct fk_server *srv, const char *id) {
    for (const struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->hello_done && strcmp(s->id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

static cJSON *device_json(struct fk_server *srv, const struct fk_inv_device *d) {
    static struct fk_inv_presence p; /* 8 KiB; one thread */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", d->id);
    cJSON_AddStringToObject(o, "mac", d->mac);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "state", d->state);
    cJSON_AddStringToObject(o, "created_at", d->created_at);
    cJSON_AddStringToObject(o, "provisioned_at", d->provisioned_at);
    cJSON_AddBoolToObject(o, "connected", connected(srv, d->id));
    if (fk_inventory_presence_get(srv->inv, d->id, &p, NULL) == FK_OK) {
        cJSON_AddStringToObject(o, "first_seen", p.first_seen);
        cJSON_AddStringToObject(o, "last_seen", p.last_seen);
        cJSON_AddStringToObject(o, "last_peer", p.peer);
        cJSON_AddStringToObject(o, "firmware_version", p.firmware_version);
        cJSON *cv = cJSON_Parse(p.credential_versions);
        cJSON *po = cJSON_Parse(p.posture);
        cJSON_AddItemToObject(o, "credential_versions", cv != NULL ? cv : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "posture", po != NULL ? po : cJSON_CreateNull());
    } else {
        cJSON_AddNullToObject(o, "last_seen");
    }
    return o;
}

static int list_one(void *user, const struct fk_inv_device *d) {
    void **u = user;
    cJSON_AddItemToArray(u[1], device_json(u[0], d));
    return 0;
}

static int cred_one(void *user, const struct fk_inv_credential *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", c->kind);
    cJSON_AddNumberToObject(o, "version", c->version);
    cJSON_AddStringToObject(o, "fingerprint", c->fingerprint);
    cJSON_AddStringToObject(o, "state", c->state);
    cJSON_AddStringToObject(o, "created_at", c->created_at);
    cJSON_AddStringToObject(o, "expires_at", c->expires_at);
    cJSON_AddItemToArray(user, o);
    return 0;
}

static int http_api(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                    const char *path) {
    cJSON *o = NULL;
    if (strcmp(path, "/api/devices") == 0) {
        cJSON *arr = cJSON_CreateArray();
        void *u[2] = {srv, arr};
        if (fk_inventory_device_list(srv->inv, list_one, u, NULL) != FK_OK) {
            cJSON_Delete(arr);
            return http_json_error(wsi, h, 500, "inventory error");
        }
        o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "devices", arr);
    } else {
        const char *id = path + strlen("/api/devices/");
        struct fk_inv_device d;
        if (!name_ok(id, strlen(id))) {
            return http_json_error(wsi, h, 404, "no such device");
        }
        enum fk_err rc = fk_inventory_device_get(srv->inv, id, &d, NULL);
        if (rc == FK_E_NOTFOUND) {
            return http_json_error(wsi, h, 404, "no such device");
        } else if (rc != FK_OK) {
            return http_json_error(wsi, h, 500, "inventory error");
        }
        o = device_json(srv, &d);
        cJSON *creds = cJSON_CreateArray();
        if (fk_inventory_credential_list(srv->inv, id, cred_one, creds, NULL) != FK_OK) {
            cJSON_Delete(creds);
            cJSON_Delete(o);
            return http_json_error(wsi, h, 500, "inventory error");
        }
        cJSON_AddItemToObject(o, "credentials", creds);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL) {
        return -1;
    }
    int r = http_reply(wsi, h, 200, "application/json", text, strlen(text));
    cJSON_free(text);
    return r;
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

static int refuse_upgrade(struct fk_server *srv, struct lws *wsi, unsigned status,
                          enum reason r, const char *who, const char *why) {
    char peer[64];
    lws_get_peer_simple(wsi, peer, sizeof peer);
    if (r != R_COUNT) {
        srv->rejections[r]++;
    }
    fk_log(FK_LOG_WARN, "server: %s %s: WebSocket upgrade refused (%u): %s%s%s", peer, who,
           status, why, r != R_COUNT ? ", reason " : "", r != R_COUNT ? reason_names[r] : "");
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

static int confirm_upgrade(struct fk_server *srv, struct lws *wsi) {
    char path[128];
    char name[FK_WSS_ID_MAX + 1];
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
        strcmp(path, FK_WSS_PATH) != 0) {
        return refuse_upgrade(srv, wsi, 404, R_COUNT, "?", "no WebSocket here");
    }
    if (!offers_subprotocol(wsi)) {
        return refuse_upgrade(srv, wsi, 400, R_COUNT, "?", "subprotocol fleetkey.v1 required");
    }
    enum id_kind k = wsi_identity(wsi, name);
    if (k != ID_DEVICE) {
        return refuse_upgrade(srv, wsi, 403, k == ID_NONE ? R_UNKNOWN_IDENTITY : R_COUNT,
                              kind_name(k), "not a device certificate");
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

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len) {
    struct http_sess *h = user;
    struct fk_server *srv = lws_context_user(lws_get_context(wsi));
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        if (setup_tls(srv, user) != 0) {
            srv->load_error = 1;
            return 1;
        }
        return 0;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: {
        /* The TLS handshake flights are several records, each its own write: with Nagle,
         * the second waits for the peer's delayed ACK (40 ms on Linux) on every handshake. */
        int one = 1;
        setsockopt(lws_get_socket_fd(wsi), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return 0;
    }
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(srv, wsi);
    case LWS_CALLBACK_HTTP: {
        const char *path = in;
        char name[FK_WSS_ID_MAX + 1];
        srv->http_requests++;
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
            return http_json_error(wsi, h, 405, "only GET");
        }
        if (strcmp(path, "/healthz") == 0) {
            return http_reply(wsi, h, 200, "text/plain", "ok\n", 3);
        }
        if (strcmp(path, "/metrics") == 0) {
            return http_metrics(srv, wsi, h);
        }
        if (strcmp(path, "/api/devices") == 0 || strncmp(path, "/api/devices/", 13) == 0) {
            enum id_kind k = wsi_identity(wsi, name);
            if (k != ID_OPERATOR) {
                char peer[64];
                lws_get_peer_simple(wsi, peer, sizeof peer);
                fk_log(FK_LOG_WARN, "server: %s %s %s: admin API refused (403): not an operator",
                       peer, kind_name(k), name);
                return http_json_error(wsi, h, 403, "operator certificate required");
            }
            return http_api(srv, wsi, h, path);
        }
        return http_json_error(wsi, h, 404, "not found");
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (h->buf == NULL) {
            return 0;
        }
        if (lws_write(wsi, h->buf + LWS_PRE, h->len, LWS_WRITE_HTTP_FINAL) < (int)h->len) {
            return -1;
        }
        free(h->buf);
        h->buf = NULL;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h != NULL) {
            free(h->buf);
            h->buf = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    {"http", cb_http, sizeof(struct http_sess), 0, 0, NULL, 0},
    {FK_WSS_SUBPROTOCOL, cb_ws, sizeof(struct session), FK_WSS_MAX_MESSAGE, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* ---- loop ------------------------------------------------------------------------------- */

static void tick(lws_sorted_usec_list_t *sul) {
    struct fk_server *srv = lws_container_of(sul, struct fk_server, tick);
    time_t now = time(NULL);
    crl_maybe_reload(srv);
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->close_code != 0) {
            continue;
        }
        if (!s->hello_done && now - s->opened >= (time_t)srv->cfg.hello_timeout) {
            schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "no hello in time");
        } else if (now - s->last_rx >= 3 * (time_t)srv->cfg.ping_interval) {
            schedule_close(s, s->wsi, FK_WSS_CLOSE_GOING_AWAY, "idle");
        }
        if (s->pending[0] != '\0' && now - s->pending_since >= 30) {
            /* docs/wss-protocol.md: the server gives up after 30 s; the connection stays. */
            fk_log(FK_LOG_WARN, "server: %s %s: request %s unanswered after 30 s", s->peer,
                   s->id, s->pending);
            srv->request_timeouts++;
            s->pending[0] = '\0';
        }
    }
    lws_sul_schedule(srv->ctx, 0, &srv->tick, tick, LWS_US_PER_SEC);
}

static void lws_log_emit(int level, const char *line) {
    char buf[512];
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }
    snprintf(buf, sizeof buf, "%.*s", (int)(n < 400 ? n : 400), line);
    fk_log(level == LLL_ERR ? FK_LOG_WARN : FK_LOG_DEBUG, "lws: %s", buf);
}

enum fk_err fk_server_new(const struct fk_server_config *cfg, struct fk_server **out,
                          struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_server *srv = NULL;
    *out = NULL;
    FK_ENSURE(cfg->cert[0] && cfg->key[0] && cfg->ca[0] && cfg->inventory[0],
              fk_diag_set(diag, FK_E_ARG, "cert, key, ca and inventory must all be set"));
    FK_ENSURE(cfg->crl[0] || cfg->allow_no_crl,
              fk_diag_set(diag, FK_E_ARG, "crl must be set (allow_no_crl = 1 for development)"));
    srv = calloc(1, sizeof *srv);
    FK_ENSURE(srv != NULL, FK_E_NOMEM);
    srv->cfg = *cfg;
    srv->started = time(NULL);
    FK_GUARD(fk_inventory_open(cfg->inventory, &srv->inv, diag));
    if (ctx_idx < 0) {
        ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    FK_ENSURE(ctx_idx >= 0 && ssl_idx >= 0, FK_E_CRYPTO);

    lws_set_log_level(cfg->log_level == FK_LOG_DEBUG ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : LLL_ERR,
                      lws_log_emit);
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ci.user = srv;
    ci.fd_limit_per_thread = cfg->max_connections + 32;
    ci.count_threads = 1;
    srv->ctx = lws_create_context(&ci);
    FK_ENSURE(srv->ctx != NULL, fk_diag_set(diag, FK_E_INTERNAL, "lws_create_context failed"));

    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (strchr(cfg->listen, ':') == NULL) {
        vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    }
    vi.vhost_name = "fleetkey";
    vi.port = (int)cfg->port;
    vi.iface = strcmp(cfg->listen, "0.0.0.0") == 0 || strcmp(cfg->listen, "::") == 0
                   ? NULL
                   : cfg->listen;
    vi.protocols = protocols;
    vi.ssl_cert_filepath = cfg->cert;
    vi.ssl_private_key_filepath = cfg->key;
    vi.alpn = "http/1.1"; /* WebSockets ride HTTP/1.1 upgrades (docs/wss-protocol.md) */
    vi.timeout_secs = 10; /* TLS handshake and HTTP request deadline */
    vi.user = srv;
    srv->vh = lws_create_vhost(srv->ctx, &vi);
    FK_ENSURE(srv->vh != NULL && !srv->load_error && srv->ssl_ctx != NULL,
              fk_diag_set(diag, FK_E_IO,
                          "cannot serve on %s:%u (port busy, or certificate/key/CA/CRL unusable:"
                          " see the log)",
                          cfg->listen, cfg->port));
    lws_sul_schedule(srv->ctx, 0, &srv->tick, tick, LWS_US_PER_SEC);
    fk_log(FK_LOG_INFO, "server: listening on %s:%u (wss %s, TLS 1.2-1.3, client certificates "
                        "required)",
           cfg->listen, fk_server_port(srv), FK_WSS_PATH);
    *out = srv;
    srv = NULL;
    rc = FK_OK;
out:
    fk_server_free(srv);
    return rc;
}

unsigned fk_server_port(const struct fk_server *srv) {
    return srv->vh != NULL ? (unsigned)lws_get_vhost_listen_port(srv->vh) : 0;
}

void fk_server_stop(struct fk_server *srv) {
    srv->stop = 1;
    if (srv->ctx != NULL) {
        lws_cancel_service(srv->ctx);
    }
}

void fk_server_reload_crl(struct fk_server *srv) {
    srv->reload = 1;
    if (srv->ctx != NULL) {
        lws_cancel_service(srv->ctx);
    }
}

enum fk_err fk_server_run(struct fk_server *srv) {
    while (!srv->stop) {
        if (lws_service(srv->ctx, 0) < 0) {
            return FK_E_INTERNAL;
        }
        if (srv->reload) {
            crl_maybe_reload(srv);
        }
    }
    /* Going away: every WebSocket gets close 1001; a bounded number of loop turns to send
     * them, then the context is destroyed by fk_server_free. */
    fk_log(FK_LOG_INFO, "server: stopping");
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        schedule_close(s, s->wsi, FK_WSS_CLOSE_GOING_AWAY, "server shutting down");
    }
    time_t until = time(NULL) + 2;
    while (srv->sessions != NULL && time(NULL) < until) {
        if (lws_service(srv->ctx, 0) < 0) {
            break;
        }
    }
    return FK_OK;
}

void fk_server_free(struct fk_server *srv) {
    if (srv == NULL) {
        return;
    }
    if (srv->ctx != NULL) {
        lws_context_destroy(srv->ctx);
    }
    fk_inventory_close(srv->inv);
    free(srv);
}
