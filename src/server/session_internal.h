/* Device sessions (session.c): the fleetkey.v1 WebSocket protocol state of each connection.
 *
 * Owns a session from ESTABLISHED to CLOSED: the bounded reassembly of fragmented messages
 * (FK_WSS_MAX_MESSAGE), parsing (msg.c), hello (device id = certificate identity, presence and
 * audit in the inventory, welcome), ping/pong, routing responses to push.c, the outgoing queue
 * whose overflow closes the connection, and the close (logged and counted once). What the
 * server pushes and when is push.c's; time-outs are driven by the listener's tick. The queue,
 * requests, scheduled closes and session look-ups are session_io.c's, below session.c, push.c,
 * rot.c and auth.c, so that none of those has to call back into session.c. */
#ifndef FK_SERVER_SESSION_INTERNAL_H
#define FK_SERVER_SESSION_INTERNAL_H

#include "server_internal.h"

#include <cjson/cJSON.h>

/* The close codes /metrics counts, in srv->closes[] order; the last (0) counts any other. */
extern const int fk_srv_close_codes[8];

/* The lws callback of the fleetkey.v1 protocol (user: struct session). */
int fk_srv_session_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);

/* ---- session_io.c: the low-level I/O every concern of a session uses -------------------- */

/* Queues o (taken, deleted here) as one text message. 0, or -1 when it cannot be printed or
 * queued (a full queue also schedules close 1008). */
int fk_srv_enqueue_json(struct session *s, struct lws *wsi, cJSON *o);

/* Sends close code / why at the next writable callback. */
void fk_srv_schedule_close(struct session *s, struct lws *wsi, int code, const char *why);

/* Seconds a peer has to answer a scheduled close before the connection is dropped (what lws'
 * own close handshake allows). */
#define FK_SRV_CLOSE_WAIT 5
/* The tick's part of a scheduled close: drops s once its close frame has gone unanswered for
 * FK_SRV_CLOSE_WAIT seconds at now. */
void fk_srv_close_overdue(struct session *s, time_t now);

/* Queues request kind with body (taken; NULL: {}) as s's one outstanding request. 0, or -1. */
int fk_srv_send_request(struct session *s, const char *kind, cJSON *body);

/* Links s (its id set) into / out of srv->by_id; session.c at ESTABLISHED and CLOSED. */
void fk_srv_session_index(struct session *s);
void fk_srv_session_unindex(struct session *s);
/* The first session of the chain device id hashes to; follow id_next and compare ids. */
struct session *fk_srv_sessions_hashed(const struct fk_server *srv, const char *id);

/* The live session of device id (said hello, not closing, not superseded), or NULL. */
struct session *fk_srv_session_of(struct fk_server *srv, const char *id);
/* 1 when some session of device id said hello (what /api/devices shows as "connected"). */
int fk_srv_connected(const struct fk_server *srv, const char *id);

/* The inventory writes of one event of the loop (a tick, a device's message) in one group
 * (fk_inventory_group_begin): one transaction and one sync to disk instead of one per
 * write. Why nothing is acknowledged before its commit: a callback only queues what it sends
 * (fk_srv_enqueue_json, fk_srv_send_request); lws writes a queue in the writable callback of
 * the connection (session.c, admin.c), never inside another callback, so the group is
 * committed when the callback that opened it ends, before any of its answers can leave.
 * begin: 1 when it opened a group (0: PostgreSQL, or one is open already: the writes go on as
 * they would without it). end: commits what begin opened; 0, or -1: none of the event's
 * writes is durable, logged, and every connection with a message queued is closed unsent. */
int fk_srv_group_begin(struct fk_server *srv);
int fk_srv_group_end(struct fk_server *srv, int opened, const char *what);

#endif
