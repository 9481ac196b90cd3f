/* The wss client's transport (wss_internal.h): the socket under mbedTLS, bounded waits, the
 * frame layer's I/O over TLS, the TLS configuration from the credential store, and the server
 * certificate check with the reasons a handshake is refused. The design (two host-name checks,
 * memory kept for the life of the context) is in wss.c's opening comment. */
#include "wss_internal.h"

#include "mbedtls_compat.h"

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/x509.h>
#include <string.h>

/* ---- socket <-> mbedTLS -------------------------------------------------------------------- */

static int bio_send(void *p, const unsigned char *buf, size_t len) {
    struct fkd_wss *w = p;
    int r = fkd_net_send(&w->sock, buf, len);
    if (r == FKD_NET_E_AGAIN) {
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    return r < 0 ? FKD_MBEDTLS_ERR_NET_SEND_FAILED : r;
}

static int bio_recv(void *p, unsigned char *buf, size_t len) {
    struct fkd_wss *w = p;
    int r = fkd_net_recv(&w->sock, buf, len);
    if (r == FKD_NET_E_AGAIN) {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    if (r == FKD_NET_E_CLOSED) {
        return 0; /* mbedTLS: EOF */
    }
    return r < 0 ? FKD_MBEDTLS_ERR_NET_RECV_FAILED : r;
}

/* Waits (at most until deadline, in slices) for what ret asks. 0 go on, -1 deadline or stop. */
int fkd_wss_wait_io(struct fkd_wss *w, int ret, uint64_t deadline) {
    uint64_t now = fkd_net_now_ms();
    if (now >= deadline || fkd_wss_stopping(w)) {
        return -1;
    }
    uint32_t slice =
        deadline - now < FKD_WSS_SLICE_MS ? (uint32_t)(deadline - now) : FKD_WSS_SLICE_MS;
    int r = ret == MBEDTLS_ERR_SSL_WANT_WRITE ? fkd_net_wait_write(&w->sock, slice)
                                              : fkd_net_wait(&w->sock, slice);
    return r < 0 ? -1 : 0;
}

/* Writes all of buf through TLS before deadline. 0 or -1. */
int fkd_wss_tls_write_all(struct fkd_wss *w, const uint8_t *buf, size_t len, uint64_t deadline) {
    size_t off = 0;
    while (off < len) {
        int r = mbedtls_ssl_write(&w->ssl, buf + off, len - off);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE) {
            return -1;
        }
        if (fkd_wss_wait_io(w, r, deadline) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the frame layer's I/O ----------------------------------------------------------------- */

static int ws_in(void *user, uint8_t *buf, size_t len) {
    struct fkd_wss *w = user;
    if (w->pre_off < w->pre_len) {
        /* bytes that arrived with the 101 response belong to the first frames */
        size_t n = w->pre_len - w->pre_off;
        n = n < len ? n : len;
        memcpy(buf, w->http + w->pre_off, n);
        w->pre_off += n;
        return (int)n;
    }
    size_t want = len > 0x7fffffffu ? 0x7fffffffu : len;
    int r = mbedtls_ssl_read(&w->ssl, buf, want);
    if (r > 0) {
        return r;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        return 0;
    }
    w->io_ret = r; /* 0 or PEER_CLOSE_NOTIFY: the server went away; else an error */
    return -1;
}

static int ws_out(void *user, const uint8_t *buf, size_t len) {
    struct fkd_wss *w = user;
    uint64_t deadline = fkd_net_now_ms() + w->cfg.connect_timeout_ms;
    return fkd_wss_tls_write_all(w, buf, len, deadline);
}

static int ws_mask(void *user, uint8_t *key, size_t len) {
    struct fkd_wss *w = user;
    return mbedtls_ctr_drbg_random(&w->drbg, key, len) == 0 ? 0 : -1;
}

/* ---- the server certificate ------------------------------------------------------------------ */

static void cert_names(const mbedtls_x509_crt *crt, struct fkd_wss_names *n) {
    memset(n, 0, sizeof *n);
    n->has_san = fkd_mbedtls_crt_has_san(crt);
    for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next) {
        if (s->buf.p == NULL ||
            s->buf.tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) {
            continue;
        }
        if (n->n_dns == sizeof n->dns / sizeof n->dns[0]) {
            fkd_log(FKD_LOG_WARN,
                    "wss: server certificate lists more than %zu DNS names; "
                    "only the first are checked",
                    n->n_dns);
            break;
        }
        n->dns[n->n_dns] = (const char *)s->buf.p;
        n->dns_len[n->n_dns] = s->buf.len;
        n->n_dns++;
    }
    /* RFC 6125 6.4.4 uses "the" CN; with several, the last (most specific) one counts. */
    for (const mbedtls_x509_name *nm = &crt->subject; nm != NULL; nm = nm->next) {
        if (nm->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &nm->oid) == 0) {
            n->cn = (const char *)nm->val.p;
            n->cn_len = nm->val.len;
        }
    }
}

static int verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    struct fkd_wss *w = p;
    if (depth != 0) {
        return 0;
    }
    struct fkd_wss_names n;
    cert_names(crt, &n);
    if (!fkd_wss_names_match(&n, w->expected_host)) {
        w->host_mismatch = 1;
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    return 0;
}

enum fkd_wss_reason fkd_wss_tls_refused(struct fkd_wss *w, int ret) {
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        uint32_t f = mbedtls_ssl_get_verify_result(&w->ssl);
        if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
            fkd_log(FKD_LOG_ERROR,
                    "wss: refused: bad chain: the server certificate does not "
                    "chain to our CA (verify flags 0x%lx)",
                    (unsigned long)f);
            return FKD_WSS_R_BAD_CHAIN;
        }
        if (f & MBEDTLS_X509_BADCERT_EXPIRED) {
            fkd_log(FKD_LOG_ERROR,
                    "wss: refused: expired: the server certificate has expired "
                    "(verify flags 0x%lx)",
                    (unsigned long)f);
            return FKD_WSS_R_EXPIRED;
        }
        if (f & MBEDTLS_X509_BADCERT_FUTURE) {
            fkd_log(FKD_LOG_ERROR,
                    "wss: refused: not yet valid: the server certificate is not "
                    "valid yet (verify flags 0x%lx)",
                    (unsigned long)f);
            return FKD_WSS_R_NOT_YET;
        }
        if ((f & MBEDTLS_X509_BADCERT_CN_MISMATCH) || w->host_mismatch) {
            fkd_log(FKD_LOG_ERROR,
                    "wss: refused: host mismatch: the server certificate does "
                    "not name %s",
                    w->expected_host);
            return FKD_WSS_R_HOST;
        }
        fkd_log(FKD_LOG_ERROR,
                "wss: refused: bad chain: server certificate rejected (verify "
                "flags 0x%lx)",
                (unsigned long)f);
        return FKD_WSS_R_BAD_CHAIN;
    }
    const char *what = fkd_mbedtls_reason(ret);
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
        what = "the server sent a fatal alert (our client certificate refused?)";
    }
    fkd_log(FKD_LOG_ERROR, "wss: refused: TLS handshake failed: %s (-0x%04x)", what,
            (unsigned)-ret);
    return FKD_WSS_R_TLS;
}

/* PEM (NUL counted, as mbedTLS wants) or DER. */
static size_t parse_len(const uint8_t *d, size_t len) {
    return len >= 11 && memcmp(d, "-----BEGIN ", 11) == 0 ? len + 1 : len;
}

static enum fkd_err get_cred(const struct fkd_store *st, enum fkd_cred id, const uint8_t **d,
                             size_t *len) {
    const struct fkd_cred_info *in = fkd_store_info(st, id);
    if (fkd_store_get(st, id, d, len) != FKD_OK || !in->valid || *len == 0) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: %s is missing", fkd_cred_name(id));
        return FKD_E_NOTFOUND;
    }
    return FKD_OK;
}

static void own_id(struct fkd_wss *w) {
    const mbedtls_x509_name *cn = NULL;
    for (const mbedtls_x509_name *nm = &w->own.subject; nm != NULL; nm = nm->next) {
        if (nm->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &nm->oid) == 0) {
            cn = nm;
        }
    }
    size_t o = 0;
    if (cn != NULL) {
        for (size_t i = 0; i < cn->val.len && o + 1 < sizeof w->device_id; i++) {
            unsigned char c = cn->val.p[i];
            w->device_id[o++] = (c >= 0x21 && c < 0x7F && c != '"' && c != '\\') ? (char)c : '?';
        }
    }
    w->device_id[o] = '\0';
}

/* Parses the client certificate and key into w->own / w->key (emptied first: the TLS
 * configuration keeps pointing at the same structures) and checks that they belong together. */
static enum fkd_err load_own(struct fkd_wss *w, const uint8_t *crt, size_t crt_len,
                             const uint8_t *key, size_t key_len) {
    mbedtls_x509_crt_free(&w->own);
    mbedtls_x509_crt_init(&w->own);
    mbedtls_pk_free(&w->key); /* mbedTLS zeroizes the private key */
    mbedtls_pk_init(&w->key);
    int ret = mbedtls_x509_crt_parse(&w->own, crt, parse_len(crt, crt_len));
    if (ret != 0) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: %s does not parse (-0x%04x)",
                fkd_cred_name(FKD_CRED_CLIENT_CERT), (unsigned)-ret);
        return FKD_E_CRYPTO;
    }
    ret = fkd_mbedtls_pk_parse_key(&w->key, key, parse_len(key, key_len), &w->drbg);
    if (ret != 0) {
        /* the key's bytes are never logged; its fingerprint is in the store's boot log */
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: %s does not parse (-0x%04x)",
                fkd_cred_name(FKD_CRED_CLIENT_KEY), (unsigned)-ret);
        return FKD_E_CRYPTO;
    }
    if (!fkd_mbedtls_pk_pair_ok(&w->own.pk, &w->key, &w->drbg)) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: the client key does not match the client "
                               "certificate");
        return FKD_E_CRYPTO;
    }
    own_id(w);
    if (w->device_id[0] == '\0') {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: the client certificate has no CN");
        return FKD_E_CRYPTO;
    }
    return FKD_OK;
}

/* Parses the trust anchors into w->ca (emptied first, like w->own: the TLS configuration
 * keeps pointing at it). */
static enum fkd_err load_ca(struct fkd_wss *w, const uint8_t *ca, size_t ca_len) {
    int ret;
    mbedtls_x509_crt_free(&w->ca);
    mbedtls_x509_crt_init(&w->ca);
    if (ca_len > 0 && ca[0] == 0x30) {
        /* DER chain (NVS from generate/batch --ca): certificates back to back, each length
         * checked against what remains by the store; parse_der takes one at a time. */
        ret = 0;
        for (size_t off = 0; off < ca_len && ret == 0;) {
            size_t e = fkd_der_seq_len(ca + off, ca_len - off);
            ret = e == 0 ? MBEDTLS_ERR_X509_INVALID_FORMAT
                         : mbedtls_x509_crt_parse_der(&w->ca, ca + off, e);
            off += e;
        }
    } else {
        ret = mbedtls_x509_crt_parse(&w->ca, ca, parse_len(ca, ca_len));
    }
    if (ret != 0) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: %s does not parse (-0x%04x)",
                fkd_cred_name(FKD_CRED_CA_CERT), (unsigned)-ret);
        return FKD_E_CRYPTO;
    }
    return FKD_OK;
}

enum fkd_err fkd_wss_tls_credentials(struct fkd_wss *w) {
    const struct fkd_wss_handler *h = w->cfg.handler;
    if (h == NULL || h->credentials == NULL) {
        return FKD_OK;
    }
    /* Between connections msg and tx hold nothing: they lend their room to the credentials. */
    struct fkd_wss_creds c;
    memset(&c, 0, sizeof c);
    c.cert_buf = w->msg;
    c.key_buf = (uint8_t *)w->tx;
    h->credentials(w->cfg.handler_user, &c);
    uint32_t tag = c.cert != NULL ? c.tag : FKD_WSS_TAG_STORE;
    enum fkd_err rc = FKD_OK;
    if (tag != w->cred_tag) {
        const uint8_t *crt = c.cert, *key = c.key;
        size_t crt_len = c.cert_len, key_len = c.key_len;
        if (c.cert == NULL) {
            rc = get_cred(w->cfg.store, FKD_CRED_CLIENT_CERT, &crt, &crt_len);
            if (rc == FKD_OK) {
                rc = get_cred(w->cfg.store, FKD_CRED_CLIENT_KEY, &key, &key_len);
            }
        }
        if (rc == FKD_OK) {
            rc = load_own(w, crt, crt_len, key, key_len);
        }
        w->cred_tag = rc == FKD_OK ? tag : FKD_WSS_TAG_STORE - 1u; /* retry next time */
        if (rc == FKD_OK) {
            fkd_log(FKD_LOG_INFO, "wss: presenting the %s client certificate",
                    c.cert != NULL ? "rotation slot's" : "store's");
        }
    }
    fkd_wipe(w->tx, sizeof w->tx);
    uint32_t ca_tag = c.ca != NULL ? c.ca_tag : FKD_WSS_TAG_STORE;
    if (rc == FKD_OK && ca_tag != w->ca_tag) {
        const uint8_t *ca = c.ca;
        size_t ca_len = c.ca_len;
        if (ca == NULL) {
            rc = get_cred(w->cfg.store, FKD_CRED_CA_CERT, &ca, &ca_len);
        }
        if (rc == FKD_OK) {
            rc = load_ca(w, ca, ca_len);
        }
        w->ca_tag = rc == FKD_OK ? ca_tag : FKD_WSS_TAG_STORE - 1u; /* retry next time */
        if (rc == FKD_OK) {
            fkd_log(FKD_LOG_INFO, "wss: verifying the server with the %s trust anchors",
                    c.ca != NULL ? "rotation slot's" : "store's");
        }
    }
    return rc;
}

/* The TLS half of fkd_wss_setup: the credentials from the store, parsed, the TLS
 * configuration, the SSL context and the frame layer over it. */
enum fkd_err fkd_wss_tls_setup(struct fkd_wss *w, const struct fkd_wss_config *cfg) {
    enum fkd_err rc = FKD_E_INTERNAL;
    const uint8_t *ca = NULL, *crt = NULL, *key = NULL;
    size_t ca_len = 0, crt_len = 0, key_len = 0;
    int ret;
    /* Credentials: the store already applied NVS-first and the development-only fallback. */
    FKD_GUARD(get_cred(cfg->store, FKD_CRED_CA_CERT, &ca, &ca_len));
    FKD_GUARD(get_cred(cfg->store, FKD_CRED_CLIENT_CERT, &crt, &crt_len));
    FKD_GUARD(get_cred(cfg->store, FKD_CRED_CLIENT_KEY, &key, &key_len));
    if (cfg->cfg->production_build &&
        (fkd_store_info(cfg->store, FKD_CRED_CLIENT_CERT)->source != FKD_SRC_NVS ||
         fkd_store_info(cfg->store, FKD_CRED_CLIENT_KEY)->source != FKD_SRC_NVS)) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting (policy: mtls-nvs-only): a production build "
                               "takes the client certificate and key from NVS only");
        rc = FKD_E_POLICY;
        goto out;
    }

    rc = FKD_E_CRYPTO;
    ret = fkd_mbedtls_global_init();
    if (ret == 0) {
        ret = fkd_mbedtls_drbg_seed(&w->drbg, "fkd_wss");
    }
    if (ret != 0) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: random generator failed");
        goto out;
    }
    if (load_ca(w, ca, ca_len) != FKD_OK) {
        goto out;
    }
    FKD_GUARD(load_own(w, crt, crt_len, key, key_len));
    rc = FKD_E_CRYPTO;

    ret = mbedtls_ssl_config_defaults(&w->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        mbedtls_ssl_conf_authmode(&w->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&w->conf, &w->ca, NULL);
        mbedtls_ssl_conf_rng(&w->conf, mbedtls_ctr_drbg_random, &w->drbg);
        mbedtls_ssl_conf_verify(&w->conf, verify_cb, w);
        fkd_mbedtls_conf_min_tls12(&w->conf);
        ret = fkd_mbedtls_conf_fit_records(&w->conf);
    }
    if (ret == 0) {
        ret = mbedtls_ssl_conf_own_cert(&w->conf, &w->own, &w->key);
    }
    if (ret == 0) {
        ret = mbedtls_ssl_setup(&w->ssl, &w->conf);
    }
    if (ret != 0) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: TLS setup failed (-0x%04x)", (unsigned)-ret);
        rc = ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? FKD_E_NOSPACE : FKD_E_CRYPTO;
        goto out;
    }
    w->ssl_ready = 1;
    mbedtls_ssl_set_bio(&w->ssl, w, bio_send, bio_recv, NULL);
    rc = fkd_ws_setup(&w->ws, FKD_WS_CLIENT, ws_in, ws_out, ws_mask, w, w->msg, sizeof w->msg);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "wss: not connecting: no memory for the frame layer");
        goto out;
    }
    rc = FKD_OK;
out:
    return rc;
}
