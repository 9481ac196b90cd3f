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
#include "fleetkey/rotation.h"

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    "no_cert", "bad_chain",        "expired",          "not_yet_valid",
    "revoked", "unknown_identity", "protocol_version", "other"};

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
    int closing;                        /* close frame queued: log and count once */
    char pending[FK_WSS_REQID_MAX + 1]; /* id of the outstanding request, "" when none */
    time_t pending_since;
    /* OTA delivery (docs/wss-protocol.md, "What the server pushes, and when") */
    enum fk_ota_action pending_act; /* what the outstanding request is */
    struct fk_wss_ota ota;          /* the device's last report (hello, status, ota_key) */
    struct ota_job *job;            /* the job of target, when target is set */
    struct fk_ota_target *target;   /* the update this connection works on, or NULL */
    int status_sent;                /* status_request = 1: the one status was sent */
    int status_due;                 /* rebooted into a job's image: ask status first */
    int key_new_tried, key_promote_tried, need_abort;
    int rot_confirmed; /* fk_rotation_confirm done (or not needed) here */
    int superseded;    /* the device connected again: push nothing here */
};

/* One update job: an image in the spool directory and one target per device. Jobs live as long
 * as the server (v1: not persisted; the audit log keeps what happened). */
struct ota_job {
    char id[16];
    char created_at[FK_INV_TIME_SIZE];
    char operator_name[FK_WSS_ID_MAX + 1];
    char path[1200];
    int fd; /* the spool file, read with pread for each chunk */
    struct fk_ota_image_info info;
    size_t n;
    struct fk_ota_target *t;
    char (*updated)[FK_OTA_TIME_SIZE]; /* per target: when its state last changed */
    int dirty; /* changed since its file was written (saved by the next tick) */
};

_Static_assert(FK_OTA_TIME_SIZE == FK_INV_TIME_SIZE, "one time format for jobs and inventory");

struct http_sess {
    unsigned char *buf; /* LWS_PRE + body */
    size_t len;
    /* POST /api/ota in progress */
    int upload;  /* 1 while the body is being spooled */
    int refused; /* answered before the body ended: the rest is discarded */
    int fd;      /* temp file in ota_dir when has_fd (zeroed memory: fd 0 is not ours) */
    int has_fd;
    char tmp[1100];
    unsigned long long clen, got;
    int all;                        /* ?all=1 */
    char (*ids)[FK_WSS_ID_MAX + 1]; /* ?device=ID..., deduplicated */
    size_t nids;
    char operator_name[FK_WSS_ID_MAX + 1];
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
    /* OTA */
    char ota_dir[1024];
    struct ota_job **jobs;
    size_t njobs, jobs_cap;
    unsigned long next_job;  /* number of the next job id; above every job on disk */
    long long audit_seen;    /* newest audit row looked at for revocations */
    long long rot_audit_seq; /* audit_seen when the rotation state was last read */
    int rot_loaded;
    struct fk_rot_current rot; /* the rotation started last, re-read once a second */
    int rot_found, rot_old_retired, rot_new_retired;
    unsigned long long ota_bytes, ota_states[FK_OTA_FAILED + 1], ota_keys[2], ota_uploads_refused;
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

static void schedule_close(struct session *s, struct lws *wsi, int code, const char *why);

/* After a CRL reload: the WebSockets whose client certificate the new CRL revokes were admitted
 * under the old one. Each peer chain is verified again against the new store, and a connection
 * whose certificate is now revoked is closed 1008; other verdicts (an expiry during the
 * connection, say) are left to the next handshake. */
static void close_revoked(struct fk_server *srv) {
    X509_STORE *st = SSL_CTX_get_cert_store(srv->ssl_ctx);
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
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
            schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "certificate revoked");
        }
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
    }
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
    close_revoked(srv);
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

/* ---- OTA delivery: jobs, pushes, key rotation (docs/wss-protocol.md) -------------------- */

/* A device-supplied string made safe for one log line: printable ASCII only. */
static const char *log_safe(const char *in, char *out, size_t size) {
    size_t i = 0;
    for (; in[i] != '\0' && i + 1 < size; i++) {
        out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
    }
    out[i] = '\0';
    return out;
}

/* The rotation state, re-read from the inventory (operators run `provision-keys rotate` on
 * the same file while the server runs). On a database error the previous view stays. */
static void rot_refresh(struct fk_server *srv) {
    struct fk_rot_current cur;
    int found = 0, old_ret = 0, new_ret = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    /* Every rotation step appends an audit row; without a new row (revocations_check reads
     * them each tick) nothing can have changed, and the reads below scan every credential. */
    if (srv->rot_loaded && srv->rot_audit_seq == srv->audit_seen) {
        return;
    }
    if (fk_rotation_current(srv->inv, &cur, &found, &d) != FK_OK ||
        (found && (fk_rotation_key_retired(srv->inv, cur.keys.old_fpr, &old_ret, &d) != FK_OK ||
                   fk_rotation_key_retired(srv->inv, cur.keys.new_fpr, &new_ret, &d) != FK_OK))) {
        fk_log(FK_LOG_DEBUG, "server: rotation state not read (kept): %s", d.msg);
        return;
    }
    if (found && (!srv->rot_found || strcmp(cur.keys.new_fpr, srv->rot.keys.new_fpr) != 0)) {
        fk_log(FK_LOG_INFO, "server: OTA-key rotation %s -> %s under way", cur.keys.old_fpr,
               cur.keys.new_fpr);
    }
    srv->rot = cur;
    srv->rot_found = found;
    srv->rot_old_retired = old_ret;
    srv->rot_new_retired = new_ret;
    srv->rot_loaded = 1;
    srv->rot_audit_seq = srv->audit_seen;
}

/* Does the report list fpr (under NVS key name, or under any name when name is NULL)? */
static int reports_key(const struct fk_wss_ota *o, const char *name, const char *fpr) {
    for (size_t i = 0; i < o->nkeys; i++) {
        if ((name == NULL || strcmp(o->keys[i].name, name) == 0) &&
            strcasecmp(o->keys[i].fpr, fpr) == 0) {
            return 1;
        }
    }
    return 0;
}

struct cred_find {
    const char *kind;
    const char *fpr;
    int active;
};

static int cred_find_active(void *user, const struct fk_inv_credential *c) {
    struct cred_find *f = user;
    if (strcmp(c->kind, f->kind) == 0 && strcasecmp(c->fingerprint, f->fpr) == 0 &&
        strcmp(c->state, "active") == 0) {
        f->active = 1;
        return 1;
    }
    return 0;
}

/* 1 when the device's credential (kind, fpr) is already "active" in the inventory: then
 * fk_rotation_confirm has nothing to do (and would audit a second confirm). -1 on error. */
static int cred_active(struct fk_server *srv, const char *id, const char *kind, const char *fpr) {
    struct cred_find f = {kind, fpr, 0};
    if (fk_inventory_credential_list(srv->inv, id, cred_find_active, &f, NULL) != FK_OK) {
        return -1;
    }
    return f.active;
}

/* Records in the inventory that a device holds the rotation's new key (firmware 0) or runs
 * an image signed by the new key only (firmware 1). Once per fact: already active rows are
 * skipped; FK_E_STATE (gate not met) is logged, fk_rotation_confirm audits the refusal. */
static void rot_confirm(struct fk_server *srv, const char *id, int firmware) {
    const char *kind = firmware ? FK_ROT_KIND_FW : FK_ROT_KIND_KEY;
    if (!srv->rot_found || cred_active(srv, id, kind, srv->rot.keys.new_fpr) != 0) {
        return;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc =
        fk_rotation_confirm(srv->inv, &srv->rot.keys, id, firmware, "fleetkey-server", &d);
    if (rc == FK_OK) {
        fk_log(FK_LOG_INFO, "server: %s: rotation %s confirmed (%s)", id,
               firmware ? "firmware" : "key", srv->rot.keys.new_fpr);
    } else {
        fk_log(rc == FK_E_STATE ? FK_LOG_INFO : FK_LOG_WARN,
               "server: %s: rotation %s not confirmed: %s", id, firmware ? "firmware" : "key",
               d.msg[0] ? d.msg : fk_strerror(rc));
    }
}

static const char *const state_audit[FK_OTA_FAILED + 1] = {
    "device.ota_queued",    NULL,
    "device.ota_installed", "device.ota_confirmed",
    "device.ota_refused",   "device.ota_rolled_back",
    "device.ota_failed"};

static void audit_target(struct fk_server *srv, const struct ota_job *job,
                         const struct fk_ota_target *t, const char *kind, const char *actor) {
    char detail[512];
    struct fk_diag d;
    fk_diag_init(&d);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job", job->id);
    cJSON_AddStringToObject(o, "version", job->info.version);
    char pre[17];
    snprintf(pre, sizeof pre, "%.16s", job->info.sha256);
    cJSON_AddStringToObject(o, "sha256", pre);
    if (t->error[0] != '\0') {
        cJSON_AddStringToObject(o, "error", t->error);
    }
    if (!cJSON_PrintPreallocated(o, detail, (int)sizeof detail, 0)) {
        snprintf(detail, sizeof detail, "{}");
    }
    cJSON_Delete(o);
    if (fk_inventory_audit_append(srv->inv, actor, kind, t->device, detail, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: audit %s not written: %s", t->device, kind, d.msg);
    }
}

/* ---- jobs on disk --------------------------------------------------------------------------
 * Each job is also a file, ota_dir/j-NNNNNN.json (what GET /api/ota/JOB shows), written when
 * the job is accepted and then rewritten atomically at most once a second while its targets
 * change (a fleet-wide job changes thousands of times; one write per change would be quadratic)
 * and at shutdown, so a restarted server knows its jobs: finished ones for
 * `fleetctl ota-status`, open ones to push again (a transfer cut by the restart starts over
 * from byte 0, as after any disconnect). The image itself is the spool file named by its
 * SHA-256 next to it, checked again when the job is loaded. */
static cJSON *job_json(const struct ota_job *j, int detail);

static void job_save(struct fk_server *srv, const struct ota_job *job) {
    char path[1200];
    struct fk_diag d;
    fk_diag_init(&d);
    cJSON *o = job_json(job, 1);
    char *txt = o != NULL ? cJSON_Print(o) : NULL;
    snprintf(path, sizeof path, "%s/%s.json", srv->ota_dir, job->id);
    if (txt == NULL || fk_file_write_atomic(path, txt, strlen(txt), 0600, 0, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: ota %s: job not saved (%s): a restart would forget it",
               job->id, txt == NULL ? "out of memory" : d.msg);
    }
    cJSON_free(txt);
    cJSON_Delete(o);
}

/* The jobs changed since they were last written. A crash loses at most a second of
 * transitions, which the robots' next reports re-establish (running the image valid:
 * confirmed) or which a transfer restart repeats. */
static void jobs_save_dirty(struct fk_server *srv) {
    for (size_t j = 0; j < srv->njobs; j++) {
        if (srv->jobs[j]->dirty) {
            srv->jobs[j]->dirty = 0;
            job_save(srv, srv->jobs[j]);
        }
    }
}

static int job_append(struct fk_server *srv, struct ota_job *job) {
    if (srv->njobs == srv->jobs_cap) {
        size_t cap = srv->jobs_cap ? 2 * srv->jobs_cap : 16;
        void *q = realloc(srv->jobs, cap * sizeof *srv->jobs);
        if (q == NULL) {
            return -1;
        }
        srv->jobs = q;
        srv->jobs_cap = cap;
    }
    srv->jobs[srv->njobs++] = job;
    return 0;
}

static void job_free(struct ota_job *job) {
    if (job == NULL) {
        return;
    }
    if (job->fd > 0) {
        close(job->fd);
    }
    free(job->t);
    free(job->updated);
    free(job);
}

/* One saved job: its JSON (fk_ota_job_parse), then its image checked again. Returns the job
 * or NULL (why in *why; the file is left for the operator). */
static struct ota_job *job_load(struct fk_server *srv, const char *name, unsigned long num,
                                const char **why) {
    char path[1200];
    uint8_t *txt = NULL, *img = NULL;
    size_t len = 0, ilen = 0;
    struct ota_job *job = NULL;
    struct fk_ota_job_record rec;
    memset(&rec, 0, sizeof rec);
    *why = "unreadable";
    snprintf(path, sizeof path, "%s/%s", srv->ota_dir, name);
    if (fk_file_read(path, 4u << 20, &txt, &len, NULL) != FK_OK) {
        goto fail;
    }
    *why = "not a job";
    if (fk_ota_job_parse(txt, len, &rec, NULL) != FK_OK) {
        goto fail;
    }
    *why = "out of memory";
    job = calloc(1, sizeof *job);
    if (job == NULL) {
        goto fail;
    }
    snprintf(job->id, sizeof job->id, "j-%06lu", num);
    snprintf(job->created_at, sizeof job->created_at, "%s", rec.created_at);
    snprintf(job->operator_name, sizeof job->operator_name, "%s", rec.operator_name);
    snprintf(job->path, sizeof job->path, "%s/%s.bin", srv->ota_dir, rec.sha256);
    *why = "its image is missing or no longer checks";
    if (fk_file_read(job->path, srv->cfg.ota_max_image, &img, &ilen, NULL) != FK_OK ||
        fk_ota_image_check(img, ilen, &job->info, NULL) != FK_OK ||
        strcmp(job->info.sha256, rec.sha256) != 0) {
        goto fail;
    }
    job->fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (job->fd < 0) {
        goto fail;
    }
    job->n = rec.n;
    job->t = rec.t;
    job->updated = rec.updated;
    rec.t = NULL;
    rec.updated = NULL;
    for (size_t i = 0; i < job->n; i++) {
        if (job->t[i].sent > job->info.size) {
            job->t[i].sent = job->info.size;
        }
    }
    free(txt);
    free(img);
    return job;
fail:
    fk_ota_job_record_free(&rec);
    free(txt);
    free(img);
    job_free(job);
    return NULL;
}

/* At start: every saved job, in id order; next_job above the highest id seen. */
static void jobs_load(struct fk_server *srv) {
    DIR *dir = opendir(srv->ota_dir);
    struct dirent *de;
    unsigned long *nums = NULL;
    size_t n = 0, cap = 0;
    srv->next_job = 1;
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        unsigned long num = 0;
        char tail[8] = "";
        if (sscanf(de->d_name, "j-%6lu%7s", &num, tail) != 2 || strcmp(tail, ".json") != 0 ||
            strlen(de->d_name) != 2 + 6 + 5 || num == 0) {
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            unsigned long *q = realloc(nums, cap * sizeof *nums);
            if (q == NULL) {
                break;
            }
            nums = q;
        }
        nums[n++] = num;
        if (num >= srv->next_job) {
            srv->next_job = num + 1;
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
    /* creation order: the order pushes are served in */
    for (size_t a = 1; a < n; a++) {
        for (size_t b = a; b > 0 && nums[b - 1] > nums[b]; b--) {
            unsigned long x = nums[b];
            nums[b] = nums[b - 1];
            nums[b - 1] = x;
        }
    }
    size_t open_jobs = 0;
    for (size_t k = 0; k < n; k++) {
        char name[32];
        const char *why = NULL;
        snprintf(name, sizeof name, "j-%06lu.json", nums[k]);
        struct ota_job *job = job_load(srv, name, nums[k], &why);
        if (job == NULL || job_append(srv, job) != 0) {
            fk_log(FK_LOG_ERROR, "server: %s/%s: job not loaded: %s", srv->ota_dir, name,
                   job == NULL ? why : "out of memory");
            job_free(job);
            continue;
        }
        for (size_t i = 0; i < job->n; i++) {
            srv->ota_states[job->t[i].state]++;
            open_jobs += !fk_ota_tstate_final(job->t[i].state);
        }
    }
    free(nums);
    if (n > 0) {
        fk_log(FK_LOG_INFO,
               "server: %zu update job(s) loaded from %s, %zu device(s) still to update",
               srv->njobs, srv->ota_dir, open_jobs);
    }
}

/* A target changed state: log, count, audit, and the rotation's firmware confirmation. */
static void target_changed(struct fk_server *srv, struct ota_job *job, struct fk_ota_target *t,
                           enum fk_ota_tstate was) {
    size_t idx = (size_t)(t - job->t);
    fk_time_rfc3339((long long)time(NULL), job->updated[idx]);
    srv->ota_states[t->state]++;
    char why[FK_WSS_STR_MAX + 1];
    fk_log(
        fk_ota_tstate_final(t->state) && t->state != FK_OTA_CONFIRMED ? FK_LOG_WARN : FK_LOG_INFO,
        "server: ota %s: %s: %s -> %s%s%s", job->id, t->device, fk_ota_tstate_name(was),
        fk_ota_tstate_name(t->state), t->error[0] ? ": " : "", log_safe(t->error, why, sizeof why));
    if (state_audit[t->state] != NULL && t->state != FK_OTA_QUEUED) {
        audit_target(srv, job, t, state_audit[t->state], "fleetkey-server");
    }
    /* An image signed ONLY by the rotation's new key, running valid: the device is on
     * new-key-only firmware (rotation step 5). */
    if (t->state == FK_OTA_CONFIRMED && srv->rot_found && job->info.signers.n == 1 &&
        strcasecmp(job->info.signers.fpr[0], srv->rot.keys.new_fpr) == 0) {
        rot_confirm(srv, t->device, 1);
    }
    job->dirty = 1;
}

/* The first job (in creation order) with a target for id that is not final. */
static struct fk_ota_target *find_target(struct fk_server *srv, const char *id,
                                         struct ota_job **jobp) {
    for (size_t j = 0; j < srv->njobs; j++) {
        struct ota_job *job = srv->jobs[j];
        for (size_t i = 0; i < job->n; i++) {
            if (!fk_ota_tstate_final(job->t[i].state) && strcmp(job->t[i].device, id) == 0) {
                *jobp = job;
                return &job->t[i];
            }
        }
    }
    *jobp = NULL;
    return NULL;
}

/* Applies a report (hello or status "ota") to every open target of the device. */
static void apply_report(struct session *s, const struct fk_wss_ota *ota) {
    struct fk_server *srv = s->srv;
    for (size_t j = 0; j < srv->njobs; j++) {
        struct ota_job *job = srv->jobs[j];
        for (size_t i = 0; i < job->n; i++) {
            struct fk_ota_target *t = &job->t[i];
            if (strcmp(t->device, s->id) != 0) {
                continue;
            }
            enum fk_ota_tstate was = t->state;
            if (fk_ota_target_report(t, job->info.app_sha256, ota)) {
                target_changed(srv, job, t, was);
            }
        }
    }
    s->target = find_target(srv, s->id, &s->job);
}

static int send_request(struct session *s, enum fk_ota_action a, cJSON *body) {
    struct fk_server *srv = s->srv;
    /* One outstanding request per connection (docs/wss-protocol.md); ids are unique per
     * server run, so also per connection. */
    snprintf(s->pending, sizeof s->pending, "r-%06llu", ++srv->requests);
    s->pending_since = time(NULL);
    s->pending_act = a;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "request");
    cJSON_AddStringToObject(r, "id", s->pending);
    cJSON_AddStringToObject(r, "kind", a == FK_OTA_ACT_NONE ? "status" : fk_ota_action_kind(a));
    cJSON_AddItemToObject(r, "body", body != NULL ? body : cJSON_CreateObject());
    return enqueue_json(s, s->wsi, r) == 0 ? 0 : -1;
}

static cJSON *key_body(struct fk_server *srv, const char *slot) {
    char der[2 * FK_ROT_DER_MAX];
    char endorsement[2 * FK_ROT_ENDORSE_LEN];
    if (fk_base64_encode(srv->rot.new_der, srv->rot.new_der_len, der, sizeof der) != FK_OK ||
        fk_base64_encode(srv->rot.endorsement, sizeof srv->rot.endorsement, endorsement,
                         sizeof endorsement) != FK_OK) {
        return NULL;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "slot", slot);
    cJSON_AddStringToObject(b, "der", der);
    cJSON_AddStringToObject(b, "fingerprint", srv->rot.keys.new_fpr);
    /* the old key's signature over the new one: the device's own check, so that this server
     * cannot introduce a firmware key (rotation.h, FK_ROT_ENDORSE_TAG) */
    cJSON_AddStringToObject(b, "endorsement", endorsement);
    return b;
}

/* After welcome and after each response: at most one next request, in the protocol's order. */
static int push_next(struct session *s) {
    struct fk_server *srv = s->srv;
    if (!s->hello_done || s->pending[0] != '\0' || s->close_code != 0 || s->closing ||
        s->superseded) {
        return 0;
    }
    if (srv->cfg.status_request && !s->status_sent) {
        s->status_sent = 1;
        return send_request(s, FK_OTA_ACT_STATUS, NULL);
    }
    if (s->target == NULL || fk_ota_tstate_final(s->target->state)) {
        s->target = find_target(srv, s->id, &s->job);
    }
    const char *newf = srv->rot.keys.new_fpr, *oldf = srv->rot.keys.old_fpr;
    struct fk_ota_view v;
    memset(&v, 0, sizeof v);
    v.has_ota = s->ota.present;
    v.status_due = s->status_due;
    v.rot_active = srv->rot_found && !srv->rot_new_retired && srv->rot.new_der_len > 0;
    v.reports_new = v.rot_active && reports_key(&s->ota, NULL, newf);
    v.has_trusted_key = s->ota.nkeys > 0;
    v.key_new_tried = s->key_new_tried;
    v.old_retired = srv->rot_old_retired;
    v.old_in_primary = v.rot_active && reports_key(&s->ota, "ota_pubkey", oldf);
    v.new_in_secondary = v.rot_active && reports_key(&s->ota, "ota_pubkey2", newf);
    v.key_promote_tried = s->key_promote_tried;
    v.need_abort = s->need_abort;
    v.t = s->target;
    v.size = s->job != NULL ? s->job->info.size : 0;
    enum fk_ota_action a = fk_ota_next(&v);
    cJSON *b = NULL;
    switch (a) {
    case FK_OTA_ACT_NONE:
        return 0;
    case FK_OTA_ACT_STATUS:
        s->status_due = 0;
        break;
    case FK_OTA_ACT_KEY_NEW:
    case FK_OTA_ACT_KEY_PROMOTE:
        if (a == FK_OTA_ACT_KEY_NEW) {
            s->key_new_tried = 1;
        } else {
            s->key_promote_tried = 1;
        }
        b = key_body(srv, a == FK_OTA_ACT_KEY_NEW ? "ota_pubkey2" : "ota_pubkey");
        if (b == NULL) {
            return 0;
        }
        fk_log(FK_LOG_INFO, "server: %s %s: sending OTA key %s as %s", s->peer, s->id, newf,
               a == FK_OTA_ACT_KEY_NEW ? "ota_pubkey2" : "ota_pubkey");
        break;
    case FK_OTA_ACT_ABORT:
    case FK_OTA_ACT_FINISH:
        break;
    case FK_OTA_ACT_BEGIN:
        s->target->attempts++;
        b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "size", (double)s->job->info.size);
        cJSON_AddStringToObject(b, "sha256", s->job->info.sha256);
        cJSON_AddStringToObject(b, "version", s->job->info.version);
        fk_log(FK_LOG_INFO, "server: ota %s: %s: ota_begin, %llu bytes, version %s (attempt %u)",
               s->job->id, s->id, (unsigned long long)s->job->info.size, s->job->info.version,
               s->target->attempts);
        break;
    case FK_OTA_ACT_CHUNK: {
        uint8_t data[FK_OTA_CHUNK];
        char b64[4 * (FK_OTA_CHUNK / 3 + 1) + 1];
        uint64_t off = s->target->sent;
        size_t n = s->target->chunk;
        if (n == 0 || n > FK_OTA_CHUNK) {
            n = FK_OTA_CHUNK;
        }
        if (n > s->job->info.size - off) {
            n = (size_t)(s->job->info.size - off);
        }
        ssize_t r = pread(s->job->fd, data, n, (off_t)off);
        if (r != (ssize_t)n || fk_base64_encode(data, n, b64, sizeof b64) != FK_OK) {
            enum fk_ota_tstate was = s->target->state;
            s->target->attempts = FK_OTA_MAX_ATTEMPTS;
            if (fk_ota_target_lost(s->target, "spool file unreadable")) {
                target_changed(srv, s->job, s->target, was);
            }
            return 0;
        }
        b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "offset", (double)off);
        cJSON_AddStringToObject(b, "data", b64);
        srv->ota_bytes += n;
        break;
    }
    }
    return send_request(s, a, b);
}

/* The presence row keeps the device's newest "ota" report, not only hello's: a status answer
 * (valid after a reboot) or a new key set (ota_key) is what the next job's interlock and
 * idempotence check must see, also when the device is offline by then. keys (may be NULL)
 * replaces the "keys" member of the stored report; else ota_json replaces it whole. */
static void presence_update_ota(struct fk_server *srv, const char *id, const char *ota_json,
                                const struct fk_wss_ota_key *keys, size_t nkeys) {
    struct fk_inv_presence *p = malloc(sizeof *p);
    struct fk_diag d;
    fk_diag_init(&d);
    if (p == NULL || fk_inventory_presence_get(srv->inv, id, p, &d) != FK_OK) {
        free(p);
        return;
    }
    if (keys != NULL) {
        cJSON *o = cJSON_Parse(p->ota);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            o = cJSON_CreateObject();
        }
        cJSON *k = cJSON_CreateObject();
        for (size_t i = 0; i < nkeys; i++) {
            cJSON_AddStringToObject(k, keys[i].name, keys[i].fpr);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(o, "keys");
        cJSON_AddItemToObject(o, "keys", k);
        if (!cJSON_PrintPreallocated(o, p->ota, (int)sizeof p->ota, 0)) {
            p->ota[0] = '\0';
        }
        cJSON_Delete(o);
    } else {
        snprintf(p->ota, sizeof p->ota, "%s", ota_json);
    }
    p->last_seen[0] = '\0';
    if (p->ota[0] == '\0' || fk_inventory_device_seen(srv->inv, p, NULL, NULL, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: OTA state not recorded: %s", id, d.msg);
    }
    free(p);
}

/* A response to one of our requests (already matched to s->pending). */
static void on_push_response(struct session *s, const struct fk_wss_msg *m) {
    struct fk_server *srv = s->srv;
    enum fk_ota_action a = s->pending_act;
    char code[FK_WSS_STR_MAX + 1], msg[FK_WSS_STR_MAX + 1];
    log_safe(m->err_code, code, sizeof code);
    log_safe(m->err_msg, msg, sizeof msg);
    switch (a) {
    case FK_OTA_ACT_STATUS:
        if (m->ok && m->ota.present) {
            s->ota = m->ota;
            presence_update_ota(srv, s->id, m->ota_json, NULL, 0);
            apply_report(s, &m->ota);
        }
        break;
    case FK_OTA_ACT_KEY_NEW:
    case FK_OTA_ACT_KEY_PROMOTE: {
        const char *slot = a == FK_OTA_ACT_KEY_NEW ? "ota_pubkey2" : "ota_pubkey";
        if (!m->ok) {
            fk_log(FK_LOG_WARN, "server: %s %s: ota_key %s refused: %s (%s)", s->peer, s->id, slot,
                   code, msg);
            break;
        }
        if (m->has_keys) {
            s->ota.nkeys = m->nkeys;
            memcpy(s->ota.keys, m->keys, sizeof s->ota.keys);
            presence_update_ota(srv, s->id, NULL, m->keys, m->nkeys);
        }
        srv->ota_keys[a == FK_OTA_ACT_KEY_NEW ? 0 : 1]++;
        fk_log(FK_LOG_INFO, "server: %s %s: ota_key %s %s accepted", s->peer, s->id, slot,
               srv->rot.keys.new_fpr);
        char detail[256];
        snprintf(detail, sizeof detail, "{\"slot\":\"%s\",\"fingerprint\":\"%s\"}", slot,
                 srv->rot.keys.new_fpr);
        struct fk_diag d;
        fk_diag_init(&d);
        if (fk_inventory_audit_append(srv->inv, "fleetkey-server", "device.ota_key_delivered",
                                      s->id, detail, &d) != FK_OK) {
            fk_log(FK_LOG_WARN, "server: %s: audit not written: %s", s->id, d.msg);
        }
        if (reports_key(&s->ota, NULL, srv->rot.keys.new_fpr) && !s->rot_confirmed) {
            s->rot_confirmed = 1;
            rot_confirm(srv, s->id, 0);
        }
        break;
    }
    case FK_OTA_ACT_ABORT:
        s->need_abort = 0;
        break;
    case FK_OTA_ACT_BEGIN:
    case FK_OTA_ACT_CHUNK:
    case FK_OTA_ACT_FINISH: {
        struct fk_ota_target *t = s->target;
        if (t == NULL || s->job == NULL) {
            break;
        }
        if (!m->ok) {
            fk_log(FK_LOG_WARN, "server: ota %s: %s: %s refused: %s (%s)", s->job->id, s->id,
                   fk_ota_action_kind(a), code, msg);
        } else if (a == FK_OTA_ACT_FINISH) {
            char key[FK_WSS_FPR_MAX + 1];
            fk_log(FK_LOG_INFO, "server: ota %s: %s: installed into %s, key %s", s->job->id, s->id,
                   log_safe(m->slot, code, sizeof code), log_safe(m->key, key, sizeof key));
        }
        enum fk_ota_tstate was = t->state;
        int abort_first = 0;
        if (fk_ota_target_response(t, a, s->job->info.size, m->ok, m->err_code, m->chunk,
                                   m->received, &abort_first)) {
            target_changed(srv, s->job, t, was);
        }
        if (abort_first) {
            s->need_abort = 1;
        }
        break;
    }
    case FK_OTA_ACT_NONE:
        break;
    }
}

/* A pending request went unanswered for 30 s. */
static void on_push_timeout(struct session *s) {
    enum fk_ota_action a = s->pending_act;
    struct fk_ota_target *t = s->target;
    if (t == NULL || s->job == NULL) {
        return;
    }
    enum fk_ota_tstate was = t->state;
    int changed = 0, abort_first = 0;
    if (a == FK_OTA_ACT_BEGIN) {
        changed =
            fk_ota_target_response(t, a, s->job->info.size, 0, "timeout", -1, -1, &abort_first);
        abort_first = 1;
    } else if (a == FK_OTA_ACT_CHUNK || a == FK_OTA_ACT_FINISH) {
        changed = fk_ota_target_lost(t, "request timed out");
        abort_first = 1;
    }
    s->need_abort = abort_first;
    if (changed) {
        target_changed(s->srv, s->job, t, was);
    }
}

/* The connection is going away: a transfer in flight goes back to the queue. */
static void on_push_closed(struct session *s) {
    struct fk_ota_target *t = s->target;
    if (t != NULL && s->job != NULL && t->state == FK_OTA_SENDING) {
        enum fk_ota_tstate was = t->state;
        if (fk_ota_target_lost(t, "connection closed during the transfer")) {
            target_changed(s->srv, s->job, t, was);
        }
    }
}

/* After a hello with "ota": update targets, confirm a delivered key, decide on status. */
static void on_hello_ota(struct session *s) {
    struct fk_server *srv = s->srv;
    /* A device that reconnects while its previous connection lingers (power lost: no FIN
     * until the idle time-out): the new connection takes the transfer over, and the old one
     * must neither answer for it nor, when it finally closes, reset it. */
    for (struct session *o = srv->sessions; o != NULL; o = o->next) {
        if (o != s && o->hello_done && strcmp(o->id, s->id) == 0) {
            o->target = NULL;
            o->job = NULL;
            o->superseded = 1;
        }
    }
    rot_refresh(srv);
    if (!s->ota.present) {
        return;
    }
    apply_report(s, &s->ota);
    /* "status, when hello said state: pending_verify and an update job targets the device" */
    s->status_due = strcmp(s->ota.state, "pending_verify") == 0 && s->target != NULL;
    if (srv->rot_found && reports_key(&s->ota, NULL, srv->rot.keys.new_fpr)) {
        s->rot_confirmed = 1;
        rot_confirm(srv, s->id, 0);
    }
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
    snprintf(p->credential_versions, sizeof p->credential_versions, "%s", m->credential_versions);
    snprintf(p->posture, sizeof p->posture, "%s", m->posture);
    snprintf(p->ota, sizeof p->ota, "%s", m->ota_json);
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
                                       first ? "device.connected" : "device.posture_changed", s->id,
                                       detail, &d);
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
    s->ota = m->ota;
    on_hello_ota(s);
    return push_next(s);
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
        fk_log(s->pending_act == FK_OTA_ACT_CHUNK ? FK_LOG_DEBUG : FK_LOG_INFO,
               "server: %s %s: response %s: %s", s->peer, s->id, m.req_id, m.ok ? "ok" : "refused");
        s->pending[0] = '\0';
        on_push_response(s, &m);
        return push_next(s);
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
            on_push_closed(s);
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

static int http_json_error(struct lws *wsi, struct http_sess *h, unsigned status, const char *msg) {
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
    sb_printf(&b,
              "# HELP fleetkey_connections_open WebSocket connections open now.\n"
              "# TYPE fleetkey_connections_open gauge\n"
              "fleetkey_connections_open %llu\n",
              srv->ws_open);
    sb_printf(&b,
              "# HELP fleetkey_handshakes_total TLS handshakes completed (client "
              "certificate verified).\n# TYPE fleetkey_handshakes_total counter\n"
              "fleetkey_handshakes_total %llu\n",
              srv->handshakes_ok);
    sb_printf(&b, "# HELP fleetkey_rejections_total Connections refused, by reason.\n"
                  "# TYPE fleetkey_rejections_total counter\n");
    for (int r = 0; r < R_COUNT; r++) {
        sb_printf(&b, "fleetkey_rejections_total{reason=\"%s\"} %llu\n", reason_names[r],
                  srv->rejections[r]);
    }
    sb_printf(&b,
              "# HELP fleetkey_messages_total WebSocket messages, by direction.\n"
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
    sb_printf(&b,
              "# HELP fleetkey_http_requests_total HTTP requests served.\n"
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
              "# HELP fleetkey_ota_jobs_total Update jobs accepted (POST /api/ota).\n"
              "# TYPE fleetkey_ota_jobs_total counter\n"
              "fleetkey_ota_jobs_total %zu\n"
              "# HELP fleetkey_ota_uploads_refused_total Update images refused.\n"
              "# TYPE fleetkey_ota_uploads_refused_total counter\n"
              "fleetkey_ota_uploads_refused_total %llu\n"
              "# HELP fleetkey_ota_bytes_total Image bytes pushed in ota_chunk requests.\n"
              "# TYPE fleetkey_ota_bytes_total counter\n"
              "fleetkey_ota_bytes_total %llu\n"
              "# HELP fleetkey_ota_keys_delivered_total OTA keys a device accepted, by slot.\n"
              "# TYPE fleetkey_ota_keys_delivered_total counter\n"
              "fleetkey_ota_keys_delivered_total{slot=\"ota_pubkey2\"} %llu\n"
              "fleetkey_ota_keys_delivered_total{slot=\"ota_pubkey\"} %llu\n"
              "# HELP fleetkey_uptime_seconds Seconds since start.\n"
              "# TYPE fleetkey_uptime_seconds gauge\n"
              "fleetkey_uptime_seconds %lld\n",
              srv->http_requests, srv->crl_reloads, srv->crl_reload_failures, srv->requests,
              srv->responses, srv->request_timeouts, srv->njobs, srv->ota_uploads_refused,
              srv->ota_bytes, srv->ota_keys[0], srv->ota_keys[1],
              (long long)(time(NULL) - srv->started));
    sb_printf(&b, "# HELP fleetkey_ota_devices_total Device update transitions, by new state.\n"
                  "# TYPE fleetkey_ota_devices_total counter\n");
    for (int st = FK_OTA_QUEUED; st <= FK_OTA_FAILED; st++) {
        if (st != FK_OTA_SENDING) {
            sb_printf(&b, "fleetkey_ota_devices_total{state=\"%s\"} %llu\n",
                      fk_ota_tstate_name((enum fk_ota_tstate)st), srv->ota_states[st]);
        }
    }
    int r = b.failed
                ? -1
                : http_reply(wsi, h, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
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

/* ---- admin API: update jobs (POST/GET /api/ota) --------------------------------------- */

#define DISCARD_MAX (1024u * 1024u) /* body bytes read after an early refusal, then close */

static int http_json(struct lws *wsi, struct http_sess *h, unsigned status, cJSON *o) {
    char *text = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL) {
        return -1;
    }
    int r = http_reply(wsi, h, status, "application/json", text, strlen(text));
    cJSON_free(text);
    return r;
}

static void upload_cleanup(struct http_sess *h) {
    if (h->has_fd) {
        close(h->fd);
        h->has_fd = 0;
    }
    if (h->tmp[0] != '\0') {
        unlink(h->tmp);
        h->tmp[0] = '\0';
    }
    free(h->ids);
    h->ids = NULL;
    h->nids = 0;
}

/* Refuses an upload: one warn line, one audit row (kind ota.upload_refused), the JSON answer
 * {"error": why, ...extra}. Takes extra (may be NULL). */
static int upload_refuse(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         unsigned status, const char *why, const char *subject, cJSON *extra) {
    cJSON *o = extra != NULL ? extra : cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", why);
    char detail[2048];
    cJSON *a = cJSON_Duplicate(o, 1);
    cJSON_AddNumberToObject(a, "status", status);
    if (!cJSON_PrintPreallocated(a, detail, (int)sizeof detail, 0)) {
        snprintf(detail, sizeof detail, "{\"status\":%u}", status);
    }
    cJSON_Delete(a);
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_audit_append(srv->inv,
                                  h->operator_name[0] ? h->operator_name : "fleetkey-server",
                                  "ota.upload_refused", subject, detail, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: audit ota.upload_refused not written: %s", d.msg);
    }
    fk_log(FK_LOG_WARN, "server: POST /api/ota by %s refused (%u): %s",
           h->operator_name[0] ? h->operator_name : "?", status, why);
    srv->ota_uploads_refused++;
    h->refused = 1;
    upload_cleanup(h);
    return http_json(wsi, h, status, o);
}

static int add_target_id(struct http_sess *h, const char *id) {
    for (size_t i = 0; i < h->nids; i++) {
        if (strcmp(h->ids[i], id) == 0) {
            return 0;
        }
    }
    void *p = realloc(h->ids, (h->nids + 1) * sizeof *h->ids);
    if (p == NULL) {
        return -1;
    }
    h->ids = p;
    snprintf(h->ids[h->nids++], sizeof h->ids[0], "%s", id);
    return 0;
}

static int all_one(void *user, const struct fk_inv_device *d) {
    struct http_sess *h = user;
    if (strcmp(d->state, "retired") != 0 && add_target_id(h, d->id) != 0) {
        return 1;
    }
    return 0;
}

/* POST /api/ota?device=ID[&device=ID...] | ?all=1, headers read: who, which devices, how big.
 * Everything that can be refused before the image arrives is refused here. */
static int ota_post_start(struct fk_server *srv, struct lws *wsi, struct http_sess *h) {
    char arg[128], cl[32];
    h->upload = 1;
    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
        if (strncmp(arg, "device=", 7) == 0) {
            const char *id = arg + 7;
            struct fk_inv_device d;
            if (!fk_wss_id_valid(id, strlen(id)) || strlen(id) >= sizeof d.id) {
                return upload_refuse(srv, wsi, h, 404, "no such device", "-", NULL);
            }
            enum fk_err rc = fk_inventory_device_get(srv->inv, id, &d, NULL);
            if (rc == FK_E_NOTFOUND || (rc == FK_OK && strcmp(d.state, "retired") == 0)) {
                char why[160];
                snprintf(why, sizeof why, "no such device: %s%s", id,
                         rc == FK_OK ? " (retired)" : "");
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "device", id);
                return upload_refuse(srv, wsi, h, 404, why, id, o);
            } else if (rc != FK_OK) {
                return upload_refuse(srv, wsi, h, 500, "inventory error", id, NULL);
            }
            if (add_target_id(h, id) != 0) {
                return -1;
            }
        } else if (strcmp(arg, "all=1") == 0) {
            h->all = 1;
        } else {
            return upload_refuse(srv, wsi, h, 400, "expected ?device=ID[&device=ID...] or ?all=1",
                                 "-", NULL);
        }
    }
    if ((h->nids > 0) == (h->all != 0)) {
        return upload_refuse(srv, wsi, h, 400, "expected ?device=ID[&device=ID...] or ?all=1", "-",
                             NULL);
    }
    if (h->all && (fk_inventory_device_list(srv->inv, all_one, h, NULL) != FK_OK)) {
        return upload_refuse(srv, wsi, h, 500, "inventory error", "-", NULL);
    }
    if (h->nids == 0) {
        return upload_refuse(srv, wsi, h, 404, "no device to update", "-", NULL);
    }
    unsigned long n = 0;
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0 ||
        fk_parse_ulong(cl, ~0ul, &n) != FK_OK) {
        return upload_refuse(srv, wsi, h, 411, "Content-Length required", "-", NULL);
    }
    if (n > srv->cfg.ota_max_image) {
        char why[128];
        snprintf(why, sizeof why, "image of %lu bytes is larger than ota_max_image (%llu)", n,
                 srv->cfg.ota_max_image);
        return upload_refuse(srv, wsi, h, 413, why, "-", NULL);
    }
    h->clen = n;
    int w = snprintf(h->tmp, sizeof h->tmp, "%s/.upload-XXXXXX", srv->ota_dir);
    if (w < 0 || (size_t)w >= sizeof h->tmp) {
        h->tmp[0] = '\0';
        return upload_refuse(srv, wsi, h, 500, "ota_dir path too long", "-", NULL);
    }
    h->fd = mkstemp(h->tmp);
    h->has_fd = h->fd >= 0;
    if (!h->has_fd) {
        fk_log(FK_LOG_ERROR, "server: cannot create a spool file in %s: %s", srv->ota_dir,
               strerror(errno));
        h->tmp[0] = '\0';
        return upload_refuse(srv, wsi, h, 500, "cannot spool the image", "-", NULL);
    }
    (void)fchmod(h->fd, 0600);
    if (n == 0) {
        return upload_refuse(srv, wsi, h, 422, "empty body: expected a signed image", "-", NULL);
    }
    return 0;
}

static int ota_post_body(struct http_sess *h, const uint8_t *in, size_t len) {
    if (h->refused || !h->has_fd) {
        h->got += len;
        return h->got > DISCARD_MAX ? -1 : 0; /* refused already: read a little, then close */
    }
    if (len > h->clen - h->got) {
        return -1;
    }
    while (len > 0) {
        ssize_t w = write(h->fd, in, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            fk_log(FK_LOG_ERROR, "server: spool write %s: %s", h->tmp, strerror(errno));
            upload_cleanup(h);
            h->refused = 1; /* answered at the end of the body */
            return 0;
        }
        in += w;
        len -= (size_t)w;
        h->got += (size_t)w;
    }
    return 0;
}

struct trust_ctx {
    struct fk_ota_fprs *set;
};

struct trust_walk {
    struct fk_ota_fprs *set;
    const struct fk_ota_image_info *info;
};

static int trust_cred(void *user, const struct fk_inv_credential *c) {
    struct trust_walk *w = user;
    if (strcmp(c->state, "active") != 0) {
        return 0;
    }
    if (strcmp(c->kind, FK_ROT_KIND_KEY) == 0) {
        fk_ota_fprs_add(w->set, c->fingerprint);
    } else if (strcmp(c->kind, "ota_pubkey") == 0) {
        /* provision-keys generate/batch record the OTA key written into the device's NVS as
         * fk_fpr(DER): a device never connected still trusts the key it was minted with */
        for (size_t i = 0; i < w->info->signers_der.n; i++) {
            if (strcmp(c->fingerprint, w->info->signers_der.fpr[i]) == 0) {
                fk_ota_fprs_add(w->set, w->info->signers.fpr[i]);
            }
        }
    }
    return 0;
}

static struct session *session_of(struct fk_server *srv, const char *id) {
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->hello_done && s->close_code == 0 && !s->superseded && strcmp(s->id, id) == 0) {
            return s;
        }
    }
    return NULL;
}

/* What a device trusts as far as the server knows: the keys its last hello reported (or the
 * live connection's report), plus its inventory rows ota_signing_key "active". *seen: it sent
 * an "ota" report once. Fills *p (scratch) with the presence row; *have_p says it did. */
static enum fk_err device_trust(struct fk_server *srv, const char *id,
                                const struct fk_ota_image_info *info, struct fk_ota_fprs *set,
                                struct fk_inv_presence *p, int *have_p) {
    memset(set, 0, sizeof *set);
    *have_p = fk_inventory_presence_get(srv->inv, id, p, NULL) == FK_OK;
    if (*have_p && p->ota[0] != '\0') {
        cJSON *o = cJSON_Parse(p->ota);
        const cJSON *keys = cJSON_GetObjectItemCaseSensitive(o, "keys");
        const cJSON *e = NULL;
        cJSON_ArrayForEach(e, keys) {
            if (cJSON_IsString(e)) {
                fk_ota_fprs_add(set, e->valuestring);
            }
        }
        cJSON_Delete(o);
    }
    const struct session *s = session_of(srv, id);
    for (size_t i = 0; s != NULL && i < s->ota.nkeys; i++) {
        fk_ota_fprs_add(set, s->ota.keys[i].fpr);
    }
    struct trust_walk w = {set, info};
    return fk_inventory_credential_list(srv->inv, id, trust_cred, &w, NULL);
}

static cJSON *fprs_json(const struct fk_ota_fprs *set) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < set->n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateString(set->fpr[i]));
    }
    return a;
}

static int ota_post_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h) {
    uint8_t *img = NULL;
    size_t len = 0;
    struct fk_ota_image_info info;
    struct fk_inv_presence *p = NULL;
    struct ota_job *job = NULL;
    cJSON *blocking = NULL;
    char why[700], pre[17] = "-", final[1200];
    int r = -1;
    struct fk_diag d;
    fk_diag_init(&d);
    h->upload = 0;
    if (!h->has_fd || h->got != h->clen) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", "-", NULL);
        goto out;
    }
    if (fsync(h->fd) != 0 || fk_file_read(h->tmp, (size_t)h->clen, &img, &len, &d) != FK_OK) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", "-", NULL);
        goto out;
    }
    if (fk_ota_image_check(img, len, &info, &d) != FK_OK) {
        snprintf(why, sizeof why, "not a signed app image: %s", d.msg);
        r = upload_refuse(srv, wsi, h, 422, why, "-", NULL);
        goto out;
    }
    snprintf(pre, sizeof pre, "%.16s", info.sha256);
    /* No signing key of the image may be retired (rotation step 6: signing with it is
     * refused, so is delivering what it signed). */
    cJSON *retired = cJSON_CreateArray();
    for (size_t i = 0; i < info.signers.n; i++) {
        int ret = 0;
        if (fk_rotation_key_retired(srv->inv, info.signers.fpr[i], &ret, &d) != FK_OK) {
            cJSON_Delete(retired);
            r = upload_refuse(srv, wsi, h, 500, "inventory error", pre, NULL);
            goto out;
        }
        if (ret) {
            cJSON_AddItemToArray(retired, cJSON_CreateString(info.signers.fpr[i]));
        }
    }
    if (cJSON_GetArraySize(retired) > 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "keys", retired);
        r = upload_refuse(srv, wsi, h, 409, "the image is signed with a retired OTA key", pre, o);
        goto out;
    }
    cJSON_Delete(retired);
    /* The interlock: "a mis-signed OTA leaves devices unable to update". Every target must
     * trust at least one key that signed the image, or nothing is sent to anyone. */
    p = malloc(sizeof *p);
    if (p == NULL) {
        goto out;
    }
    blocking = cJSON_CreateArray();
    cJSON *ids = cJSON_CreateArray();
    for (size_t i = 0; i < h->nids; i++) {
        struct fk_ota_fprs trusted;
        int have_p = 0;
        if (device_trust(srv, h->ids[i], &info, &trusted, p, &have_p) != FK_OK) {
            cJSON_Delete(ids);
            r = upload_refuse(srv, wsi, h, 500, "inventory error", pre, NULL);
            goto out;
        }
        if (!fk_ota_trusts_any(&trusted, &info.signers)) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "id", h->ids[i]);
            cJSON_AddItemToObject(b, "trusts", fprs_json(&trusted));
            if (have_p) {
                cJSON_AddStringToObject(b, "last_seen", p->last_seen);
            } else {
                cJSON_AddNullToObject(b, "last_seen");
            }
            cJSON_AddItemToArray(blocking, b);
            cJSON_AddItemToArray(ids, cJSON_CreateString(h->ids[i]));
        }
    }
    if (cJSON_GetArraySize(ids) > 0) {
        cJSON *o = cJSON_CreateObject();
        snprintf(why, sizeof why,
                 "%d device(s) trust none of the keys that signed the image and would refuse it",
                 cJSON_GetArraySize(ids));
        cJSON_AddItemToObject(o, "devices", ids);
        cJSON_AddItemToObject(o, "blocking", blocking);
        blocking = NULL;
        cJSON_AddItemToObject(o, "signers", fprs_json(&info.signers));
        r = upload_refuse(srv, wsi, h, 409, why, pre, o);
        goto out;
    }
    cJSON_Delete(ids);
    /* Accepted: the spool file gets its name (the SHA-256), then the job. */
    snprintf(final, sizeof final, "%s/%s.bin", srv->ota_dir, info.sha256);
    if (rename(h->tmp, final) != 0 || fk_dir_sync(srv->ota_dir, NULL) != FK_OK) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", pre, NULL);
        goto out;
    }
    h->tmp[0] = '\0';
    job = calloc(1, sizeof *job);
    if (job == NULL || (job->t = calloc(h->nids, sizeof *job->t)) == NULL ||
        (job->updated = calloc(h->nids, sizeof *job->updated)) == NULL) {
        goto out;
    }
    job->fd = open(final, O_RDONLY | O_CLOEXEC);
    if (job->fd < 0) {
        r = upload_refuse(srv, wsi, h, 500, "cannot spool the image", pre, NULL);
        goto out;
    }
    snprintf(job->id, sizeof job->id, "j-%06lu", srv->next_job);
    fk_time_rfc3339((long long)time(NULL), job->created_at);
    snprintf(job->operator_name, sizeof job->operator_name, "%s", h->operator_name);
    snprintf(job->path, sizeof job->path, "%s", final);
    job->info = info;
    job->n = h->nids;
    if (job_append(srv, job) != 0) {
        goto out;
    }
    srv->next_job++;
    struct ota_job *j = job;
    job = NULL;
    cJSON *resp = cJSON_CreateObject();
    cJSON_AddStringToObject(resp, "job", j->id);
    cJSON *devs = cJSON_AddArrayToObject(resp, "devices");
    for (size_t i = 0; i < j->n; i++) {
        struct fk_ota_target *t = &j->t[i];
        snprintf(t->device, sizeof t->device, "%s", h->ids[i]);
        t->state = FK_OTA_QUEUED;
        memcpy(j->updated[i], j->created_at, sizeof j->updated[i]);
        cJSON_AddItemToArray(devs, cJSON_CreateString(t->device));
        audit_target(srv, j, t, "device.ota_queued", h->operator_name);
        srv->ota_states[FK_OTA_QUEUED]++;
        /* Idempotent re-runs: a device already running this image valid is confirmed. */
        struct session *s = session_of(srv, t->device);
        struct fk_wss_ota rep;
        memset(&rep, 0, sizeof rep);
        if (s != NULL) {
            rep = s->ota;
        } else if (fk_inventory_presence_get(srv->inv, t->device, p, NULL) == FK_OK &&
                   p->ota[0] != '\0') {
            cJSON *o = cJSON_Parse(p->ota);
            const cJSON *sha = cJSON_GetObjectItemCaseSensitive(o, "app_sha256");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
            if (cJSON_IsString(sha) && cJSON_IsString(st)) {
                rep.present = 1;
                snprintf(rep.app_sha256, sizeof rep.app_sha256, "%s", sha->valuestring);
                snprintf(rep.state, sizeof rep.state, "%s", st->valuestring);
            }
            cJSON_Delete(o);
        }
        if (fk_ota_target_report(t, j->info.app_sha256, &rep)) {
            snprintf(t->error, sizeof t->error, "already running it");
            target_changed(srv, j, t, FK_OTA_QUEUED);
        }
    }
    j->dirty = 0;
    job_save(srv, j); /* on disk before the operator hears 202 */
    cJSON_AddStringToObject(resp, "version", j->info.version);
    cJSON_AddStringToObject(resp, "sha256", j->info.sha256);
    cJSON_AddNumberToObject(resp, "size", (double)j->info.size);
    cJSON_AddItemToObject(resp, "signers", fprs_json(&j->info.signers));
    fk_log(FK_LOG_INFO,
           "server: ota %s: %s queued by %s for %zu device(s): version %s, %llu "
           "bytes, sha256 %s",
           j->id, final, h->operator_name, j->n, j->info.version, (unsigned long long)j->info.size,
           pre);
    upload_cleanup(h);
    r = http_json(wsi, h, 202, resp);
    /* Connected targets start now rather than at the next tick. */
    for (size_t i = 0; i < j->n; i++) {
        struct session *s = session_of(srv, j->t[i].device);
        if (s != NULL && push_next(s) != 0) {
            schedule_close(s, s->wsi, FK_WSS_CLOSE_INTERNAL, "internal error");
        }
    }
out:
    job_free(job);
    cJSON_Delete(blocking);
    free(p);
    free(img);
    if (r < 0) {
        upload_cleanup(h);
    }
    return r;
}

static cJSON *job_json(const struct ota_job *j, int detail) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job", j->id);
    cJSON_AddStringToObject(o, "created_at", j->created_at);
    cJSON_AddStringToObject(o, "operator", j->operator_name);
    cJSON_AddStringToObject(o, "version", j->info.version);
    cJSON_AddNumberToObject(o, "secure_version", j->info.secure_version);
    cJSON_AddNumberToObject(o, "size", (double)j->info.size);
    cJSON_AddStringToObject(o, "sha256", j->info.sha256);
    cJSON_AddStringToObject(o, "app_sha256", j->info.app_sha256);
    cJSON_AddItemToObject(o, "signers", fprs_json(&j->info.signers));
    unsigned long counts[FK_OTA_FAILED + 1] = {0};
    int done = 1;
    cJSON *devs = detail ? cJSON_AddArrayToObject(o, "devices") : NULL;
    for (size_t i = 0; i < j->n; i++) {
        const struct fk_ota_target *t = &j->t[i];
        counts[t->state]++;
        done &= fk_ota_tstate_final(t->state);
        if (devs != NULL) {
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "id", t->device);
            cJSON_AddStringToObject(d, "state", fk_ota_tstate_name(t->state));
            cJSON_AddNumberToObject(d, "sent", (double)t->sent);
            cJSON_AddNumberToObject(d, "attempts", t->attempts);
            if (t->error[0] != '\0') {
                cJSON_AddStringToObject(d, "error", t->error);
            } else {
                cJSON_AddNullToObject(d, "error");
            }
            cJSON_AddStringToObject(d, "updated_at", j->updated[i]);
            cJSON_AddItemToArray(devs, d);
        }
    }
    cJSON *c = cJSON_AddObjectToObject(o, "counts");
    for (int st = FK_OTA_QUEUED; st <= FK_OTA_FAILED; st++) {
        cJSON_AddNumberToObject(c, fk_ota_tstate_name((enum fk_ota_tstate)st), counts[st]);
    }
    cJSON_AddBoolToObject(o, "done", done);
    return o;
}

static int ota_get(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    if (strcmp(path, "/api/ota") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "jobs");
        for (size_t j = 0; j < srv->njobs; j++) {
            cJSON_AddItemToArray(arr, job_json(srv->jobs[j], 0));
        }
        return http_json(wsi, h, 200, o);
    }
    const char *id = path + strlen("/api/ota/");
    for (size_t j = 0; j < srv->njobs; j++) {
        if (strcmp(srv->jobs[j]->id, id) == 0) {
            return http_json(wsi, h, 200, job_json(srv->jobs[j], 1));
        }
    }
    return http_json_error(wsi, h, 404, "no such job");
}

static int http_api(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
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
        if (!fk_wss_id_valid(id, strlen(id))) {
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

static int refuse_upgrade(struct fk_server *srv, struct lws *wsi, unsigned status, enum reason r,
                          const char *who, const char *why) {
    char peer[64];
    lws_get_peer_simple(wsi, peer, sizeof peer);
    if (r != R_COUNT) {
        srv->rejections[r]++;
    }
    fk_log(FK_LOG_WARN, "server: %s %s: WebSocket upgrade refused (%u): %s%s%s", peer, who, status,
           why, r != R_COUNT ? ", reason " : "", r != R_COUNT ? reason_names[r] : "");
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
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->hello_done && !s->closing && s->close_code == 0 && strcmp(s->id, a->subject) == 0 &&
            inventory_revoked(srv, s->wsi, s->id)) {
            fk_log(FK_LOG_WARN, "server: %s %s: certificate revoked in the inventory: closing",
                   s->peer, s->id);
            schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "certificate revoked");
        }
    }
    return 0;
}

static void revocations_check(struct fk_server *srv) {
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_audit_list_after(srv->inv, srv->audit_seen, on_new_audit, srv, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: reading new audit rows failed: %s", d.msg);
    }
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
        /* A keep-alive connection reuses h: each request starts clean. */
        upload_cleanup(h);
        h->upload = h->refused = h->all = 0;
        h->clen = h->got = 0;
        h->operator_name[0] = '\0';
        if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0 && strcmp(path, "/api/ota") == 0) {
            enum id_kind k = wsi_identity(wsi, name);
            if (k != ID_OPERATOR) {
                char peer[64];
                lws_get_peer_simple(wsi, peer, sizeof peer);
                fk_log(FK_LOG_WARN, "server: %s %s %s: admin API refused (403): not an operator",
                       peer, kind_name(k), name);
                h->upload = 1;
                return upload_refuse(srv, wsi, h, 403, "operator certificate required",
                                     name[0] ? name : "-", NULL);
            }
            snprintf(h->operator_name, sizeof h->operator_name, "%s", name);
            return ota_post_start(srv, wsi, h);
        }
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
            return http_json_error(wsi, h, 405, "only GET (and POST /api/ota)");
        }
        if (strcmp(path, "/healthz") == 0) {
            return http_reply(wsi, h, 200, "text/plain", "ok\n", 3);
        }
        if (strcmp(path, "/metrics") == 0) {
            return http_metrics(srv, wsi, h);
        }
        int devices = strcmp(path, "/api/devices") == 0 || strncmp(path, "/api/devices/", 13) == 0;
        int ota = strcmp(path, "/api/ota") == 0 || strncmp(path, "/api/ota/", 9) == 0;
        if (devices || ota) {
            enum id_kind k = wsi_identity(wsi, name);
            if (k != ID_OPERATOR) {
                char peer[64];
                lws_get_peer_simple(wsi, peer, sizeof peer);
                fk_log(FK_LOG_WARN, "server: %s %s %s: admin API refused (403): not an operator",
                       peer, kind_name(k), name);
                return http_json_error(wsi, h, 403, "operator certificate required");
            }
            return devices ? http_api(srv, wsi, h, path) : ota_get(srv, wsi, h, path);
        }
        return http_json_error(wsi, h, 404, "not found");
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (!h->upload) {
            return -1;
        }
        return ota_post_body(h, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!h->upload) {
            return -1;
        }
        if (h->refused) {
            /* Answered before the body ended: close once the answer is out. */
            h->upload = 0;
            return h->buf == NULL ? -1 : 0;
        }
        return ota_post_done(srv, wsi, h);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (h->buf == NULL) {
            return 0;
        }
        if (lws_write(wsi, h->buf + LWS_PRE, h->len, LWS_WRITE_HTTP_FINAL) < (int)h->len) {
            return -1;
        }
        free(h->buf);
        h->buf = NULL;
        if (h->refused) {
            /* An early refusal: the rest of the body is read and dropped (bounded), then the
             * connection closes; closing with unread data would reset it and could lose this
             * answer before the client reads it. */
            return h->upload ? 0 : -1;
        }
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h != NULL) {
            upload_cleanup(h);
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
    revocations_check(srv);
    jobs_save_dirty(srv);
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
            fk_log(FK_LOG_WARN, "server: %s %s: request %s unanswered after 30 s", s->peer, s->id,
                   s->pending);
            srv->request_timeouts++;
            s->pending[0] = '\0';
            on_push_timeout(s);
        }
    }
    /* Rotation steps taken meanwhile (provision-keys rotate on the same inventory) and new
     * jobs reach idle connections within a second. */
    if (srv->sessions != NULL) {
        rot_refresh(srv);
    }
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->close_code == 0 && push_next(s) != 0) {
            schedule_close(s, s->wsi, FK_WSS_CLOSE_INTERNAL, "internal error");
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
    if (cfg->ota_dir[0] != '\0') {
        snprintf(srv->ota_dir, sizeof srv->ota_dir, "%s", cfg->ota_dir);
    } else {
        /* Default: "ota" next to the inventory file. */
        const char *slash = strrchr(cfg->inventory, '/');
        int n = slash != NULL ? (int)(slash - cfg->inventory) : 1;
        FK_ENSURE(snprintf(srv->ota_dir, sizeof srv->ota_dir, "%.*s/ota", n,
                           slash != NULL ? cfg->inventory : ".") < (int)sizeof srv->ota_dir,
                  fk_diag_set(diag, FK_E_TOOBIG, "ota_dir path too long"));
    }
    FK_GUARD(fk_mkdirs(srv->ota_dir, 0700, diag));
    revocations_check(srv); /* from now on only new rows: older ones were judged at upgrade */
    jobs_load(srv);
    rot_refresh(srv);
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
    vi.iface =
        strcmp(cfg->listen, "0.0.0.0") == 0 || strcmp(cfg->listen, "::") == 0 ? NULL : cfg->listen;
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
    fk_log(FK_LOG_INFO,
           "server: listening on %s:%u (wss %s, TLS 1.2-1.3, client certificates "
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
    jobs_save_dirty(srv);
    for (size_t j = 0; j < srv->njobs; j++) {
        job_free(srv->jobs[j]);
    }
    free(srv->jobs);
    free(srv);
}
