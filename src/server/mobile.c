/* Phones on the fleetkey.v1 channel: see oauth_internal.h and docs/oauth.md ("Phones on the
 * wss channel").
 *
 * A phone's connection is a struct session like a device's (same reassembly, queue and close
 * path in session.c / session_io.c) with mobile set, kept in its own list so that nothing
 * meant for devices (OTA pushes, rotation, device look-ups by id) ever sees it. The token
 * that opened it is remembered by jti: revoking that token, or its family, closes the
 * connection at once (fk_srv_mobile_tick is called right after a revocation, and each second). */
#include "oauth_internal.h"

#include "session_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned fk_srv_mobile_upgrade(struct fk_server *srv, struct lws *wsi, const char *name,
                               char why[128]) {
    struct fk_oauth_claims c;
    enum bearer b = fk_srv_bearer(srv, wsi, &c, why, 1);
    if (b == BEARER_NONE) {
        snprintf(why, 128, "bearer token required");
    } else if (b == BEARER_OK && strcmp(c.sub, name) != 0) {
        snprintf(why, 128, "token %s is not this certificate's", c.jti);
        b = BEARER_BAD;
    } else if (b == BEARER_OK && !(c.scope & (FK_SCOPE_FLEET_READ | FK_SCOPE_ROBOT_COMMAND))) {
        srv->oauth->bearer_scope++;
        snprintf(why, 128, "token %s has neither fleet:read nor robot:command", c.jti);
        b = BEARER_BAD;
    }
    if (b == BEARER_OK) {
        return 0;
    }
    char peer[64];
    lws_get_peer_simple(wsi, peer, sizeof peer);
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "path", FK_WSS_PATH);
    cJSON_AddStringToObject(a, "reason", why);
    cJSON_AddStringToObject(a, "peer", peer);
    fk_srv_oauth_audit(srv, "oauth.bearer_refused", name, a);
    return 401;
}

int fk_srv_mobile_open(struct fk_server *srv, struct session *s, struct lws *wsi) {
    struct fk_oauth_claims c;
    char why[128];
    /* The upgrade checked the token a moment ago; its headers are still here, so read it again
     * rather than carry it across callbacks. */
    if (fk_srv_bearer(srv, wsi, &c, why, 0) != BEARER_OK) {
        return -1;
    }
    s->mobile = 1;
    s->srv = srv;
    s->wsi = wsi;
    snprintf(s->id, sizeof s->id, "%s", c.sub);
    snprintf(s->jti, sizeof s->jti, "%s", c.jti);
    s->scope = c.scope;
    s->exp = c.exp;
    lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
    s->opened = s->last_rx = time(NULL);
    s->next = srv->oauth->mobiles;
    if (s->next != NULL) {
        s->next->prev = s;
    }
    srv->oauth->mobiles = s;
    srv->ws_open++;
    fk_log(FK_LOG_INFO, "server: %s mobile %s: WebSocket open (token %s)", s->peer, s->id, s->jti);
    return 0;
}

void fk_srv_mobile_closed(struct session *s) {
    struct fk_server *srv = s->srv;
    if (srv == NULL) {
        return;
    }
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        srv->oauth->mobiles = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    srv->ws_open--;
    fk_log(FK_LOG_DEBUG, "server: %s mobile %s: WebSocket closed", s->peer, s->id);
}

static int send_error(struct session *s, struct lws *wsi, const cJSON *id, const char *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    if (cJSON_IsNumber(id)) {
        cJSON_AddNumberToObject(o, "id", id->valuedouble);
    }
    cJSON_AddStringToObject(o, "error", err);
    return fk_srv_enqueue_json(s, wsi, o) == 0 ? 0 : -1;
}

static int device_one(void *user, const struct fk_inv_device *d) {
    void **u = user;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device_id", d->id);
    cJSON_AddStringToObject(o, "state", d->state);
    cJSON_AddBoolToObject(o, "online", fk_srv_connected(u[0], d->id));
    cJSON_AddItemToArray(u[1], o);
    return 0;
}

static int on_hello(struct session *s, struct lws *wsi, const cJSON *m) {
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(m, "client");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(m, "app_version");
    if (s->hello_done) {
        fk_srv_schedule_close(s, wsi, FK_WSS_CLOSE_POLICY, "second hello");
        return 0;
    }
    if (!cJSON_IsString(client) || strcmp(client->valuestring, "mobile") != 0 ||
        (ver != NULL && (!cJSON_IsString(ver) || strlen(ver->valuestring) > 32))) {
        fk_srv_schedule_close(s, wsi, FK_WSS_CLOSE_POLICY, "hello: client must be \"mobile\"");
        return 0;
    }
    s->hello_done = 1;
    char scope[FK_OAUTH_SCOPE_SIZE];
    fk_oauth_scope_format(s->scope, scope);
    fk_log(FK_LOG_INFO, "server: %s mobile %s: hello, app %.32s", s->peer, s->id,
           cJSON_IsString(ver) ? ver->valuestring : "?");
    cJSON *w = cJSON_CreateObject();
    cJSON_AddStringToObject(w, "type", "welcome");
    cJSON_AddStringToObject(w, "client", "mobile");
    cJSON_AddStringToObject(w, "sub", s->id);
    cJSON_AddStringToObject(w, "scope", scope);
    cJSON_AddNumberToObject(w, "ping_interval", s->srv->cfg.ping_interval);
    return fk_srv_enqueue_json(s, wsi, w) == 0 ? 0 : -1;
}

int fk_srv_mobile_message(struct session *s, struct lws *wsi, const uint8_t *buf, size_t len) {
    int r = 0;
    cJSON *m = cJSON_ParseWithLength((const char *)buf, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
    if (!cJSON_IsObject(m) || !cJSON_IsString(type)) {
        fk_srv_schedule_close(s, wsi, FK_WSS_CLOSE_INVALID, "invalid payload");
        goto out;
    }
    const char *t = type->valuestring;
    if (strcmp(t, "hello") == 0) {
        r = on_hello(s, wsi, m);
    } else if (!s->hello_done) {
        fk_srv_schedule_close(s, wsi, FK_WSS_CLOSE_POLICY, "hello must come first");
    } else if (strcmp(t, "ping") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "pong");
        if (cJSON_IsNumber(id)) {
            cJSON_AddNumberToObject(o, "id", id->valuedouble);
        }
        r = fk_srv_enqueue_json(s, wsi, o) == 0 ? 0 : -1;
    } else if (strcmp(t, "list_devices") == 0) {
        if (!(s->scope & FK_SCOPE_FLEET_READ)) {
            s->srv->oauth->bearer_scope++;
            r = send_error(s, wsi, id, "insufficient_scope");
            goto out;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "devices");
        if (cJSON_IsNumber(id)) {
            cJSON_AddNumberToObject(o, "id", id->valuedouble);
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "devices");
        void *u[2] = {s->srv, arr};
        if (fk_inventory_device_list(s->srv->inv, device_one, u, NULL) != FK_OK) {
            cJSON_Delete(o);
            r = send_error(s, wsi, id, "internal_error");
            goto out;
        }
        /* A big fleet does not fit one message (FK_WSS_MAX_MESSAGE): say so, do not cut. */
        char *text = cJSON_PrintUnformatted(o);
        size_t n = text != NULL ? strlen(text) : 0;
        cJSON_free(text);
        if (n == 0 || n > FK_WSS_MAX_MESSAGE) {
            cJSON_Delete(o);
            r = send_error(s, wsi, id, "too_many_devices");
            goto out;
        }
        r = fk_srv_enqueue_json(s, wsi, o) == 0 ? 0 : -1;
    } else {
        r = send_error(s, wsi, id, "unknown_type");
    }
out:
    cJSON_Delete(m);
    return r;
}

void fk_srv_mobile_tick(struct fk_server *srv) {
    time_t now = time(NULL);
    for (struct session *s = srv->oauth->mobiles; s != NULL; s = s->next) {
        if (s->close_code != 0 || s->closing) {
            fk_srv_close_overdue(s, now);
            continue;
        }
        if (fk_oauth_state_jti_revoked(srv->oauth->st, s->jti)) {
            fk_log(FK_LOG_WARN, "server: %s mobile %s: token %s revoked: closing", s->peer, s->id,
                   s->jti);
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "token revoked");
        } else if ((long long)now >= s->exp + FK_OAUTH_LEEWAY_S) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "token expired");
        } else if (!s->hello_done && now - s->opened >= (time_t)srv->cfg.hello_timeout) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "no hello in time");
        } else if (now - s->last_rx >= 3 * (time_t)srv->cfg.ping_interval) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_GOING_AWAY, "idle");
        }
    }
}
