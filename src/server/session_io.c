/* The low-level I/O of device sessions (session_io.c): see session_internal.h. Below
 * session.c, push.c, rot.c and auth.c: each of them queues, requests, closes or looks a session
 * up through here, and this file calls none of them. */
#include "session_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTQ_MAX 8 /* queued messages per connection before it is closed as a flood */

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

int fk_srv_enqueue_json(struct session *s, struct lws *wsi, cJSON *o) {
    char buf[FK_WSS_MAX_MESSAGE];
    int ok = o != NULL && cJSON_PrintPreallocated(o, buf, (int)sizeof buf, 0);
    cJSON_Delete(o);
    return ok ? enqueue(s, wsi, buf, strlen(buf)) : -1;
}

void fk_srv_schedule_close(struct session *s, struct lws *wsi, int code, const char *why) {
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", why);
    lws_callback_on_writable(wsi);
}

void fk_srv_close_overdue(struct session *s, time_t now) {
    if (s->close_sent && now - s->close_sent_at >= FK_SRV_CLOSE_WAIT) {
        lws_callback_on_writable(s->wsi); /* session.c's writable callback drops it */
    }
}

int fk_srv_send_request(struct session *s, const char *kind, cJSON *body) {
    struct fk_server *srv = s->srv;
    /* One outstanding request per connection (docs/wss-protocol.md); ids are unique per
     * server run, so also per connection. */
    snprintf(s->pending, sizeof s->pending, "r-%06llu", ++srv->requests);
    s->pending_since = time(NULL);
    s->late[0] = '\0'; /* something else asked: a late answer to an older request is moot */
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "request");
    cJSON_AddStringToObject(r, "id", s->pending);
    cJSON_AddStringToObject(r, "kind", kind);
    cJSON_AddItemToObject(r, "body", body != NULL ? body : cJSON_CreateObject());
    return fk_srv_enqueue_json(s, s->wsi, r) == 0 ? 0 : -1;
}

static size_t id_bucket(const char *id) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
        h = (h ^ *p) * 16777619u;
    }
    return h & (FK_SRV_ID_BUCKETS - 1u);
}

void fk_srv_session_index(struct session *s) {
    struct session **head = &s->srv->by_id[id_bucket(s->id)];
    s->id_prev = NULL;
    s->id_next = *head;
    if (*head != NULL) {
        (*head)->id_prev = s;
    }
    *head = s;
}

void fk_srv_session_unindex(struct session *s) {
    if (s->id_prev != NULL) {
        s->id_prev->id_next = s->id_next;
    } else {
        s->srv->by_id[id_bucket(s->id)] = s->id_next;
    }
    if (s->id_next != NULL) {
        s->id_next->id_prev = s->id_prev;
    }
    s->id_prev = s->id_next = NULL;
}

struct session *fk_srv_sessions_hashed(const struct fk_server *srv, const char *id) {
    return srv->by_id[id_bucket(id)];
}

int fk_srv_connected(const struct fk_server *srv, const char *id) {
    for (const struct session *s = fk_srv_sessions_hashed(srv, id); s != NULL; s = s->id_next) {
        if (s->hello_done && strcmp(s->id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

struct session *fk_srv_session_of(struct fk_server *srv, const char *id) {
    for (struct session *s = fk_srv_sessions_hashed(srv, id); s != NULL; s = s->id_next) {
        if (s->hello_done && s->close_code == 0 && !s->superseded && strcmp(s->id, id) == 0) {
            return s;
        }
    }
    return NULL;
}

int fk_srv_group_begin(struct fk_server *srv) {
    int opened = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_group_begin(srv->inv, &opened, &d) != FK_OK) {
        fk_log(FK_LOG_DEBUG, "server: inventory writes not grouped: %s", d.msg);
        return 0; /* each write is then its own transaction, as without groups */
    }
    return opened;
}

int fk_srv_group_end(struct fk_server *srv, int opened, const char *what) {
    struct fk_diag d;
    fk_diag_init(&d);
    if (!opened || fk_inventory_group_commit(srv->inv, &d) == FK_OK) {
        return 0;
    }
    fk_log(FK_LOG_ERROR, "server: %s: inventory writes not committed: %s", what, d.msg);
    /* What the event queued must not leave: every connection with something queued is closed
     * instead (the devices reconnect; a plan delivers again at its timeout). */
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->q_n > 0 && s->close_code == 0) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_INTERNAL, "internal error");
        }
    }
    return -1;
}
