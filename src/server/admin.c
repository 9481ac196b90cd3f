/* The admin HTTP API: see admin_internal.h. Every request goes through the one table of routes
 * below; what a route needs (method, path, operator certificate) is a row, not a branch. */
#include "admin_internal.h"

#include "auth_internal.h"
#include "oauth_internal.h"
#include "rot_internal.h"
#include "session_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Credential rotation: the devices of the current plan by class and state (gauges: they move
 * both ways, and a new plan starts again from pending), and the rotation's counters. */
static void rot_metrics(struct fk_server *srv, struct strbuf *b) {
    const struct rot_job *j = fk_srv_rot_current(srv);
    sb_printf(b, "# HELP fleetkey_rotation_devices Devices of the current rotation plan, by "
                 "class and state.\n"
                 "# TYPE fleetkey_rotation_devices gauge\n");
    for (int c = 0; j != NULL && c < FK_PLAN_CLASSES; c++) {
        if (!(j->p->spec.classes & (1u << c))) {
            continue;
        }
        size_t n[FK_PLAN_T_ROLLED_BACK + 1] = {0};
        for (size_t i = 0; i < j->p->n; i++) {
            if (j->p->t[i].state[c] <= FK_PLAN_T_ROLLED_BACK) {
                n[j->p->t[i].state[c]]++;
            }
        }
        for (int st = FK_PLAN_T_PENDING; st <= FK_PLAN_T_ROLLED_BACK; st++) {
            sb_printf(b, "fleetkey_rotation_devices{plan=\"%s\",class=\"%s\",state=\"%s\"} %zu\n",
                      j->id, fk_plan_class_name((enum fk_plan_class)c),
                      fk_plan_tstate_name((enum fk_plan_tstate)st), n[st]);
        }
    }
    struct fk_plan_counts k;
    memset(&k, 0, sizeof k);
    if (j != NULL) {
        fk_plan_counts(j->p, &k);
    }
    sb_printf(b,
              "# HELP fleetkey_rotation_devices_offline Devices of the current rotation plan "
              "offline when their delivery was due.\n"
              "# TYPE fleetkey_rotation_devices_offline gauge\n"
              "fleetkey_rotation_devices_offline %zu\n"
              "# HELP fleetkey_rotation_deliveries_total Rotation deliveries started (rot_csr or "
              "rot_stage).\n"
              "# TYPE fleetkey_rotation_deliveries_total counter\n"
              "fleetkey_rotation_deliveries_total %llu\n"
              "# HELP fleetkey_rotation_commits_total Successors confirmed (rot_commit "
              "answered ok).\n"
              "# TYPE fleetkey_rotation_commits_total counter\n"
              "fleetkey_rotation_commits_total %llu\n"
              "# HELP fleetkey_rotation_psk_checks_total DTLS checks of staged PSKs, by result.\n"
              "# TYPE fleetkey_rotation_psk_checks_total counter\n"
              "fleetkey_rotation_psk_checks_total{result=\"ok\"} %llu\n"
              "fleetkey_rotation_psk_checks_total{result=\"failed\"} %llu\n",
              k.offline, srv->rot_delivered, srv->rot_commits, srv->rot_checks_ok,
              srv->rot_checks_failed);
}

/* GET /metrics: Prometheus text format. */
static int route_metrics(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         const char *path) {
    (void)path;
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
        sb_printf(&b, "fleetkey_rejections_total{reason=\"%s\"} %llu\n", fk_srv_reason_names[r],
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
        sb_printf(&b, "fleetkey_ws_closes_total{code=\"%d\"} %llu\n", fk_srv_close_codes[i],
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
              "fleetkey_requests_total{outcome=\"answered_late\"} %llu\n"
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
              srv->responses, srv->request_timeouts, srv->late_responses, srv->njobs, srv->ota_uploads_refused,
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
    rot_metrics(srv, &b);
    char *fleet = fk_srv_metrics_fleet(srv);
    b.failed |= fleet == NULL;
    sb_printf(&b, "%s", fleet != NULL ? fleet : "");
    free(fleet);
    char *om = fk_srv_oauth_metrics(srv);
    sb_printf(&b, "%s", om != NULL ? om : "");
    free(om);
    int r = b.failed ? -1
                     : fk_srv_http_reply(wsi, h, 200, "text/plain; version=0.0.4; charset=utf-8",
                                         b.p, b.len);
    free(b.p);
    return r;
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
    cJSON_AddBoolToObject(o, "connected", fk_srv_connected(srv, d->id));
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

struct list_ctx {
    struct fk_server *srv;
    cJSON *arr;
    int creds;  /* ?credentials=1: each device with its credentials */
    int failed; /* a credential list could not be read */
};

static int list_one(void *user, const struct fk_inv_device *d) {
    struct list_ctx *u = user;
    cJSON *o = device_json(u->srv, d);
    cJSON_AddItemToArray(u->arr, o);
    if (u->creds &&
        fk_inventory_credential_list(u->srv->inv, d->id, cred_one,
                                     cJSON_AddArrayToObject(o, "credentials"), NULL) != FK_OK) {
        u->failed = 1;
        return 1; /* stops the walk */
    }
    return 0;
}

/* GET /api/devices[?credentials=1] */
static int route_devices(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         const char *path) {
    (void)path;
    char arg[32];
    int with_creds = 0;
    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
        with_creds |= strcmp(arg, "credentials=1") == 0;
    }
    struct list_ctx u = {srv, cJSON_CreateArray(), with_creds, 0};
    cJSON *arr = u.arr;
    if (fk_inventory_device_list(srv->inv, list_one, &u, NULL) != FK_OK || u.failed) {
        cJSON_Delete(arr);
        return fk_srv_http_json_error(wsi, h, 500, "inventory error");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "devices", arr);
    return fk_srv_http_json(wsi, h, 200, o);
}

/* GET /api/devices/ID */
static int route_device(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                        const char *path) {
    const char *id = path + strlen("/api/devices/");
    struct fk_inv_device d;
    if (!fk_wss_id_valid(id, strlen(id))) {
        return fk_srv_http_json_error(wsi, h, 404, "no such device");
    }
    enum fk_err rc = fk_inventory_device_get(srv->inv, id, &d, NULL);
    if (rc == FK_E_NOTFOUND) {
        return fk_srv_http_json_error(wsi, h, 404, "no such device");
    } else if (rc != FK_OK) {
        return fk_srv_http_json_error(wsi, h, 500, "inventory error");
    }
    cJSON *o = device_json(srv, &d);
    cJSON *creds = cJSON_CreateArray();
    if (fk_inventory_credential_list(srv->inv, id, cred_one, creds, NULL) != FK_OK) {
        cJSON_Delete(creds);
        cJSON_Delete(o);
        return fk_srv_http_json_error(wsi, h, 500, "inventory error");
    }
    cJSON_AddItemToObject(o, "credentials", creds);
    return fk_srv_http_json(wsi, h, 200, o);
}

/* GET /healthz */
static int route_healthz(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                         const char *path) {
    (void)srv;
    (void)path;
    return fk_srv_http_reply(wsi, h, 200, "text/plain", "ok\n", 3);
}

/* A GET of the admin API by a non-operator. */
static int deny_json(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                     const char *name) {
    (void)srv;
    (void)name;
    return fk_srv_http_json_error(wsi, h, 403, "operator certificate required");
}

/* ---- the routes ------------------------------------------------------------------------- */

enum method { M_GET, M_POST, M_OTHER };

struct route {
    enum method method;
    const char *path;
    int prefix;           /* 1: path is a prefix, the rest names an object ("" included) */
    fk_srv_deny_fn *deny; /* non-NULL: operator certificate required, this answers others */
    fk_srv_route_fn *handle;
};

/* The whole admin HTTP API. No route for a GET: 404; for any other method: 405. */
static const struct route routes[] = {
    {M_POST, "/api/ota", 0, fk_srv_ota_post_deny, fk_srv_ota_post_start},
    {M_GET, "/healthz", 0, NULL, route_healthz},
    {M_GET, "/metrics", 0, NULL, route_metrics},
    {M_GET, "/api/devices", 0, deny_json, route_devices},
    {M_GET, "/api/devices/", 1, deny_json, route_device},
    {M_GET, "/api/ota", 0, deny_json, fk_srv_ota_list},
    {M_GET, "/api/ota/", 1, deny_json, fk_srv_ota_job},
    {M_POST, "/api/rotation", 0, deny_json, fk_srv_rot_post},
    {M_POST, "/api/rotation/", 1, deny_json, fk_srv_rot_action},
    {M_GET, "/api/rotation", 0, deny_json, fk_srv_rot_list},
    {M_GET, "/api/rotation/", 1, deny_json, fk_srv_rot_get},
    {M_GET, "/dashboard", 0, deny_json, fk_srv_dash_page},
    {M_GET, "/dashboard/", 1, deny_json, fk_srv_dash_file},
    {M_GET, "/api/audit", 0, deny_json, fk_srv_audit_tail},
    {M_POST, "/oauth/token", 0, NULL, fk_srv_oauth_token},
    {M_POST, "/oauth/revoke", 0, NULL, fk_srv_oauth_revoke},
    {M_GET, "/.well-known/jwks.json", 0, NULL, fk_srv_oauth_jwks},
    {M_GET, "/api/whoami", 0, NULL, fk_srv_oauth_whoami},
};

static const struct route *route_find(enum method m, const char *path) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if (r->method == m && (r->prefix ? strncmp(path, r->path, strlen(r->path)) == 0
                                         : strcmp(path, r->path) == 0)) {
            return r;
        }
    }
    return NULL;
}

static int dispatch(struct fk_server *srv, struct lws *wsi, struct http_sess *h, const char *path) {
    enum method m = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0  ? M_POST
                    : lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0 ? M_GET
                                                                       : M_OTHER;
    const struct route *r = route_find(m, path);
    if (r == NULL) {
        return m == M_GET ? fk_srv_http_json_error(wsi, h, 404, "not found")
                          : fk_srv_http_json_error(wsi, h, 405,
                                                   "only GET (and POST /api/ota, /api/rotation)");
    }
    /* A bearer token, when sent, decides (docs/oauth.md); without one, the certificate does. */
    int gate = r->deny != NULL ? fk_srv_oauth_gate(srv, wsi, h, m == M_POST) : FK_SRV_GATE_NONE;
    if (gate != FK_SRV_GATE_NONE) {
        return gate == FK_SRV_GATE_OK     ? r->handle(srv, wsi, h, path)
               : gate == FK_SRV_GATE_SENT ? 0
                                          : -1;
    }
    if (r->deny != NULL) {
        char name[FK_WSS_ID_MAX + 1];
        enum id_kind k = fk_srv_wsi_identity(wsi, name);
        if (k != ID_OPERATOR) {
            char peer[64];
            lws_get_peer_simple(wsi, peer, sizeof peer);
            fk_log(FK_LOG_WARN, "server: %s %s %s: admin API refused (403): not an operator", peer,
                   fk_srv_kind_name(k), name);
            return r->deny(srv, wsi, h, name);
        }
        snprintf(h->operator_name, sizeof h->operator_name, "%s", name);
    }
    return r->handle(srv, wsi, h, path);
}

int fk_srv_admin_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len) {
    struct http_sess *h = user;
    struct fk_server *srv = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        srv->http_requests++;
        /* A keep-alive connection reuses h: each request starts clean. */
        fk_srv_upload_cleanup(h);
        h->upload = h->refused = h->all = h->jbody = 0;
        h->clen = h->got = 0;
        h->operator_name[0] = '\0';
        return dispatch(srv, wsi, h, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (h->jbody) {
            return fk_srv_rot_body(h, in, len);
        }
        if (!h->upload) {
            return -1;
        }
        return fk_srv_ota_post_body(h, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (h->jbody) {
            return fk_srv_rot_body_done(srv, wsi, h);
        }
        if (!h->upload) {
            return -1;
        }
        if (h->refused) {
            /* Answered before the body ended: close once the answer is out. */
            h->upload = 0;
            return h->buf == NULL ? -1 : 0;
        }
        return fk_srv_ota_post_done(srv, wsi, h);
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
            fk_srv_upload_cleanup(h);
            free(h->buf);
            h->buf = NULL;
            free(h->jbuf);
            h->jbuf = NULL;
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
