/* The event loop and listener (listener.c): the lws context, the one vhost (one TLS port,
 * protocols "http" and fleetkey.v1), the once-a-second tick (CRL and inventory revocations,
 * job saves, session time-outs, pushes to idle connections), lws's log routed to fk_log, and
 * the shutdown that sends every WebSocket close 1001. One thread: everything in src/server/
 * runs from its callbacks. */
#ifndef FK_SERVER_LISTENER_INTERNAL_H
#define FK_SERVER_LISTENER_INTERNAL_H

#include "server_internal.h"

/* Creates the context and the vhost on srv->cfg's address and port (TLS set up through
 * auth.c), and starts the tick. FK_OK; FK_E_INTERNAL, FK_E_IO (diag says what). The objects
 * made are in srv and freed by fk_srv_listener_free, also on failure. */
FK_MUST_CHECK enum fk_err fk_srv_listener_start(struct fk_server *srv, struct fk_diag *diag);

/* Serves until srv->stop, then closes every WebSocket 1001 (bounded wait). FK_OK, or
 * FK_E_INTERNAL when lws fails. */
FK_MUST_CHECK enum fk_err fk_srv_listener_run(struct fk_server *srv);

/* Wakes the loop from a signal handler or another thread (after setting a flag). */
void fk_srv_listener_wake(struct fk_server *srv);

/* The bound port, 0 before start. */
unsigned fk_srv_listener_port(const struct fk_server *srv);

/* Destroys the context (closing every connection). NULL context is a no-op. */
void fk_srv_listener_free(struct fk_server *srv);

#endif
