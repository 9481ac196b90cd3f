/* OAuth2 key, token state, bearer check and audit: see oauth_internal.h.
 *
 * The state file is rewritten whole (temp + fsync + rename) after each change and before the
 * answer that depends on it is sent: a token the server has handed out is always one it will
 * remember after a crash, and a revocation it confirmed survives a restart. */
#include "oauth_internal.h"

#include "fleetkey/inventory.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define BEARER_HDR_MAX (FK_OAUTH_TOKEN_MAX + 16u)

/* The directory of path, "." when it has none. */
static void dir_of(const char *path, char *out, size_t size) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(out, size, ".");
    } else if (slash == path) {
        snprintf(out, size, "/");
    } else {
        snprintf(out, size, "%.*s", (int)(slash - path), path);
    }
}

enum fk_err fk_srv_oauth_open(struct fk_server *srv, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    char dir[1024], key_path[1100];
    uint8_t *buf = NULL;
    size_t len = 0;
    int created = 0;
    struct srv_oauth *o = calloc(1, sizeof *o);
    FK_ENSURE(o != NULL, FK_E_NOMEM);
    srv->oauth = o;
    if (srv->cfg.oauth_key[0] != '\0') {
        snprintf(key_path, sizeof key_path, "%s", srv->cfg.oauth_key);
    } else if (fk_inventory_is_postgresql(srv->cfg.inventory)) {
        /* A database URI has no directory: the instance's own ota_dir holds it. */
        snprintf(key_path, sizeof key_path, "%s/oauth-key.pem", srv->ota_dir);
    } else {
        dir_of(srv->cfg.inventory, dir, sizeof dir);
        snprintf(key_path, sizeof key_path, "%s/oauth-key.pem", dir);
    }
    FK_GUARD(fk_oauth_key_load_or_create(key_path, &o->key, &created, diag));
    dir_of(key_path, dir, sizeof dir);
    FK_ENSURE(snprintf(o->state_path, sizeof o->state_path, "%s/oauth-state.json", dir) <
                  (int)sizeof o->state_path,
              fk_diag_set(diag, FK_E_TOOBIG, "oauth_key path too long"));
    struct stat st;
    if (stat(o->state_path, &st) == 0 || errno != ENOENT) {
        FK_GUARD(fk_file_read(o->state_path, FK_OAUTH_STATE_MAX, &buf, &len, diag));
        rc = fk_oauth_state_parse(buf, len, &o->st, diag);
        if (rc != FK_OK && diag != NULL) {
            snprintf(diag->file, sizeof diag->file, "%.255s", o->state_path);
        }
        FK_GUARD(rc);
    } else {
        FK_GUARD(fk_oauth_state_new(&o->st));
    }
    size_t fams = 0, denied = 0;
    fk_oauth_state_counts(o->st, &fams, &denied);
    fk_log(FK_LOG_INFO, "server: oauth: %s key %s (kid %s), %zu token families, %zu revoked",
           created ? "created" : "loaded", key_path, fk_oauth_key_kid(o->key), fams, denied);
    rc = FK_OK;
out:
    fk_free_secret(buf, len);
    return rc;
}

void fk_srv_oauth_free(struct fk_server *srv) {
    if (srv->oauth != NULL) {
        fk_oauth_key_free(srv->oauth->key);
        fk_oauth_state_free(srv->oauth->st);
        free(srv->oauth);
        srv->oauth = NULL;
    }
}

enum fk_err fk_srv_oauth_save(struct fk_server *srv) {
    enum fk_err rc = FK_E_INTERNAL;
    char *text = NULL;
    size_t len = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    fk_oauth_state_prune(srv->oauth->st, (long long)time(NULL));
    FK_GUARD(fk_oauth_state_serialize(srv->oauth->st, &text, &len));
    FK_GUARD(fk_file_write_atomic(srv->oauth->state_path, text, len, 0600, 0, &d));
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        char msg[700];
        fk_diag_format(&d, msg, sizeof msg);
        fk_log(FK_LOG_ERROR, "server: oauth: saving %s failed: %s", srv->oauth->state_path, msg);
    }
    free(text);
    return rc;
}

int fk_srv_peer_x5t(struct lws *wsi, char out[FK_OAUTH_B64_32]) {
    SSL *ssl = lws_get_ssl(wsi);
    X509 *x = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char *der = NULL;
    int n = x != NULL ? i2d_X509(x, &der) : -1;
    int r = n > 0 && fk_oauth_x5t_s256(der, (size_t)n, out) == FK_OK ? 0 : -1;
    OPENSSL_free(der);
    return r;
}

enum bearer fk_srv_bearer(struct fk_server *srv, struct lws *wsi, struct fk_oauth_claims *c,
                          char why[128], int count) {
    struct srv_oauth *o = srv->oauth;
    char hdr[BEARER_HDR_MAX + 1];
    char x5t[FK_OAUTH_B64_32];
    enum bearer b = BEARER_BAD;
    why[0] = '\0';
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0) {
        return BEARER_NONE;
    }
    if ((size_t)n > BEARER_HDR_MAX) {
        snprintf(why, 128, "Authorization header of %d bytes", n);
        goto out;
    }
    if (lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION) != n) {
        snprintf(why, 128, "Authorization header unreadable");
        goto out;
    }
    /* RFC 6750 2.1: "Bearer" (the scheme is case-insensitive, RFC 7235 2.1) SP token. */
    if (n < 8 || strncasecmp(hdr, "Bearer ", 7) != 0) {
        snprintf(why, 128, "not a Bearer authorization");
        goto out;
    }
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_oauth_jwt_verify(o->key, hdr + 7, (size_t)n - 7, (long long)time(NULL), c, &d) !=
        FK_OK) {
        snprintf(why, 128, "%.127s", d.msg);
        goto out;
    }
    if (fk_oauth_state_jti_revoked(o->st, c->jti)) {
        snprintf(why, 128, "token %s revoked", c->jti);
        goto out;
    }
    /* RFC 8705 3: the token is only good on a connection made with its own certificate. */
    if (fk_srv_peer_x5t(wsi, x5t) != 0 || !fk_ct_equal(x5t, c->x5t, sizeof x5t)) {
        snprintf(why, 128, "token %s bound to another certificate", c->jti);
        goto out;
    }
    b = BEARER_OK;
out:
    fk_wipe(hdr, sizeof hdr);
    if (count) {
        *(b == BEARER_OK ? &o->bearer_ok : &o->bearer_invalid) += 1;
    }
    return b;
}

void fk_srv_oauth_audit(struct fk_server *srv, const char *kind, const char *subject, cJSON *o) {
    char *detail = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_audit_append(srv->inv, "fleetkey-server", kind, subject,
                                  detail != NULL ? detail : "{}", &d) != FK_OK) {
        fk_log(FK_LOG_ERROR, "server: oauth: audit %s for %s failed: %s", kind, subject, d.msg);
    }
    cJSON_free(detail);
}
