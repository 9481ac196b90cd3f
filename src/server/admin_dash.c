/* The fleet dashboard and the audit tail (admin_internal.h, "admin_dash.c").
 *
 * The page is three static files (src/server/dashboard/: index.html, dashboard.js,
 * dashboard.css) compiled into the binary at build time; it holds no data. Its script reads
 * the fleet from the admin API (/api/devices?credentials=1, /api/rotation, /api/audit), so
 * what it shows is exactly what an operator's fleetctl sees, and like the API it is served to
 * operator certificates only (the route table says so). A browser cannot easily present the
 * operator's client certificate: `fleetctl dashboard` is the local proxy that does.
 *
 * GET /api/audit?tail=N answers the newest N rows of the hash-chained audit log (default 50,
 * at most 1000), oldest first. It reads from a little before the newest row the server has
 * looked at (srv->audit_seen, kept by the revocation watcher each second) and keeps the last N
 * in a ring, so it costs N rows plus whatever arrived since, not the whole log. */
#include "admin_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUDIT_TAIL_DEFAULT 50
#define AUDIT_TAIL_MAX 1000

static const struct fk_srv_asset *asset_find(const char *name) {
    for (size_t i = 0; i < fk_srv_dash_nassets; i++) {
        if (strcmp(fk_srv_dash_assets[i].name, name) == 0) {
            return &fk_srv_dash_assets[i];
        }
    }
    return NULL;
}

int fk_srv_dash_page(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                     const char *path) {
    (void)srv;
    (void)path;
    const struct fk_srv_asset *a = asset_find("index.html");
    if (a == NULL) {
        return fk_srv_http_json_error(wsi, h, 500, "dashboard not built in");
    }
    return fk_srv_http_page(wsi, h, a->ctype, a->data, a->len);
}

int fk_srv_dash_file(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                     const char *path) {
    (void)srv;
    /* Names are looked up in the table, never used as a path: "../x" is just not found. */
    const struct fk_srv_asset *a = asset_find(path + strlen("/dashboard/"));
    if (a == NULL) {
        return fk_srv_http_json_error(wsi, h, 404, "not found");
    }
    return fk_srv_http_page(wsi, h, a->ctype, a->data, a->len);
}

struct tail {
    struct fk_inv_audit *ring;
    size_t cap;
    unsigned long long seen; /* rows handed to us; the newest cap are in ring */
};

static int tail_one(void *user, const struct fk_inv_audit *a) {
    struct tail *t = user;
    t->ring[t->seen % t->cap] = *a;
    t->seen++;
    return 0;
}

/* The N of ?tail=N: AUDIT_TAIL_DEFAULT without it; 0 when it is not 1..AUDIT_TAIL_MAX. */
static size_t tail_arg(struct lws *wsi) {
    char arg[64];
    size_t n = AUDIT_TAIL_DEFAULT;
    for (int i = 0; lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
        unsigned long v = 0;
        if (strncmp(arg, "tail=", 5) != 0) {
            continue;
        }
        if (fk_parse_ulong(arg + 5, AUDIT_TAIL_MAX, &v) != FK_OK || v == 0 ||
            !(arg[5] >= '0' && arg[5] <= '9')) {
            return 0;
        }
        n = (size_t)v;
    }
    return n;
}

int fk_srv_audit_tail(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                      const char *path) {
    (void)path;
    struct tail t = {.cap = tail_arg(wsi)};
    if (t.cap == 0) {
        return fk_srv_http_json_error(wsi, h, 400, "tail: expected 1..1000");
    }
    t.ring = calloc(t.cap, sizeof *t.ring);
    if (t.ring == NULL) {
        return fk_srv_http_json_error(wsi, h, 500, "out of memory");
    }
    struct fk_diag d;
    fk_diag_init(&d);
    long long after = srv->audit_seen > (long long)t.cap ? srv->audit_seen - (long long)t.cap : 0;
    if (fk_inventory_audit_list_after(srv->inv, after, tail_one, &t, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: GET /api/audit: %s", d.msg);
        free(t.ring);
        return fk_srv_http_json_error(wsi, h, 500, "inventory error");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "audit");
    size_t n = t.seen < t.cap ? (size_t)t.seen : t.cap;
    for (size_t i = 0; i < n; i++) {
        const struct fk_inv_audit *a = &t.ring[(t.seen - n + i) % t.cap];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "seq", (double)a->seq);
        cJSON_AddStringToObject(e, "at", a->at);
        cJSON_AddStringToObject(e, "actor", a->actor);
        cJSON_AddStringToObject(e, "kind", a->kind);
        cJSON_AddStringToObject(e, "subject", a->subject);
        cJSON_AddItemToArray(arr, e);
    }
    free(t.ring);
    return fk_srv_http_json(wsi, h, 200, o);
}
