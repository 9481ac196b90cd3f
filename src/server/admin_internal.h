/* The admin HTTP API (admin.c, admin_ota.c).
 *
 * admin.c owns the HTTP side of the "http" protocol: ONE table of routes (method, path, who may
 * call it, handler), the dispatch by that table, the answers (always Cache-Control: no-store),
 * /healthz, /metrics and /api/devices[/ID]. admin_ota.c owns the /api/ota routes: the upload
 * of a signed image (spooled to ota_dir while it arrives, checked, the interlock applied, then
 * a job) and the job views. Every /api/ route needs an operator certificate; a refusal is
 * logged, and for an upload also audited. Service thread only. */
#ifndef FK_SERVER_ADMIN_INTERNAL_H
#define FK_SERVER_ADMIN_INTERNAL_H

#include "server_internal.h"

#include <cjson/cJSON.h>

/* A route's handler: answers the request for path (already matched, caller authorised). 0 when
 * the answer is under way, -1 to drop the connection. */
typedef int fk_srv_route_fn(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                            const char *path);
/* A route's answer to a caller without an operator certificate (name: its identity's name). */
typedef int fk_srv_deny_fn(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                           const char *name);

/* ---- admin.c --------------------------------------------------------------------------- */

/* The HTTP events of the "http" protocol (request, body, writable, close); others go to
 * lws_callback_http_dummy. user: struct http_sess. */
int fk_srv_admin_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

/* ---- http.c: the answers, below every route file --------------------------------------- */

/* Answers status with body (copied) as ctype. 0, or -1. */
int fk_srv_http_reply(struct lws *wsi, struct http_sess *h, unsigned status, const char *ctype,
                      const char *body, size_t len);
/* The same with a WWW-Authenticate header (RFC 6750 3) when www_authenticate is non-NULL. */
int fk_srv_http_reply_auth(struct lws *wsi, struct http_sess *h, unsigned status,
                           const char *ctype, const char *body, size_t len,
                           const char *www_authenticate);
/* Answers status with {"error":"msg"} (msg: a constant without quotes). */
int fk_srv_http_json_error(struct lws *wsi, struct http_sess *h, unsigned status, const char *msg);
/* Answers status with o (taken) as compact JSON. */
int fk_srv_http_json(struct lws *wsi, struct http_sess *h, unsigned status, cJSON *o);

/* ---- admin_rot.c ----------------------------------------------------------------------- */

fk_srv_route_fn fk_srv_rot_post;   /* POST /api/rotation: a new plan (body JSON) */
fk_srv_route_fn fk_srv_rot_action; /* POST /api/rotation/ID/start|pause|resume|abort|force */
fk_srv_route_fn fk_srv_rot_list;   /* GET /api/rotation */
fk_srv_route_fn fk_srv_rot_get;    /* GET /api/rotation/ID[?devices=1] */
/* A JSON body's bytes (at most 64 KiB). 0, or -1 to drop the connection. */
int fk_srv_rot_body(struct http_sess *h, const uint8_t *in, size_t len);
/* The JSON body is complete: the route's handler. */
int fk_srv_rot_body_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h);

/* ---- admin_ota.c ----------------------------------------------------------------------- */

fk_srv_route_fn fk_srv_ota_post_start; /* POST /api/ota, headers read */
fk_srv_deny_fn fk_srv_ota_post_deny;   /* POST /api/ota by a non-operator: 403, audited */
fk_srv_route_fn fk_srv_ota_list;       /* GET /api/ota */
fk_srv_route_fn fk_srv_ota_job;        /* GET /api/ota/JOB */

/* POST /api/ota body bytes: spooled, or discarded (bounded) after an early refusal. 0, or -1
 * to drop the connection. */
int fk_srv_ota_post_body(struct http_sess *h, const uint8_t *in, size_t len);
/* POST /api/ota body complete: check, interlock, job, answer. 0, or -1. */
int fk_srv_ota_post_done(struct fk_server *srv, struct lws *wsi, struct http_sess *h);
/* Closes and removes an unfinished spool file and forgets the target list. Idempotent. */
void fk_srv_upload_cleanup(struct http_sess *h);

#endif
