/* The event loop and listener: see listener_internal.h. lws owns the sockets, the HTTP parser
 * and the RFC 6455 framing; the protocols' callbacks hand each event to the concern that owns
 * it (auth.c: TLS setup and upgrade checks; admin.c: HTTP requests; session.c: WebSockets).
 *
 * lws runs on a libev loop (epoll) that this file creates and hands to lws as a "foreign"
 * loop; lws loads its libev back end from the Debian plugin libwebsockets-evlib-ev. Without
 * it, lws 4.1 calls poll(2) over every descriptor at each turn: O(connections) per event,
 * 35 % of the server's CPU at 10,000 robots (bench/README.md). With epoll a turn costs what
 * is ready. The loop being ours, fk_srv_listener_run keeps running it one turn at a time and
 * looks at its flags (stop, reload, rot_wake) after each turn as it did around lws_service;
 * lws_cancel_service (a write to lws' event pipe, which sits in the loop like any socket)
 * still ends a turn from a signal handler or another thread. The 1 s tick is a libev timer:
 * lws 4.1's libev back end only re-arms its own timer (lws_sul) after socket events, so a
 * lws_sul tick would not start on a server that nobody has connected to yet. */
#include "listener_internal.h"
#include "rot_internal.h"

#include "admin_internal.h"
#include "auth_internal.h"
#include "jobs_internal.h"
#include "oauth_internal.h"
#include "session_internal.h"

#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The connection-level events of the "http" protocol; a request's own events are admin.c's. */
static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len) {
    struct fk_server *srv = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        if (fk_srv_setup_tls(srv, user) != 0) {
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
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        /* Stopping: the listener is still open while the closes drain (fk_srv_listener_run),
         * and a device that reconnects at once (after its close 1001) must not be admitted
         * only to be dropped when the process exits; refused now, it retries the next one. */
        if (srv->stop) {
            return 1;
        }
        /* max_connections. Descriptors are handed out lowest first, so a new connection's
         * number is at least the count of descriptors open; the margin covers the listener,
         * the inventory and the logs. (lws' fd_limit_per_thread would cap it too, but below
         * the descriptor limit it makes lws look every event's descriptor up by a linear
         * scan of its table: O(max_connections) per event, 19 % of the CPU at 12,000.) */
        const struct lws_filter_network_conn_args *a = user;
        if (a != NULL && a->accept_fd >= (int)srv->cfg.max_connections + 40) {
            fk_log(FK_LOG_WARN, "server: max_connections (%u) reached: connection refused",
                   srv->cfg.max_connections);
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return fk_srv_confirm_upgrade(srv, wsi);
    default:
        return fk_srv_admin_http(wsi, reason, user, in, len);
    }
}

/* lws keeps a receive buffer of rx_buffer_size bytes for the whole life of each WebSocket;
 * with the message bound (4 KiB) that was an eighth of an idle connection's memory. An idle
 * device sends only pings and short answers, so the buffer is sized to those: a longer
 * message (hello, an OTA status) arrives in pieces that session.c reassembles into a buffer
 * it allocates for that message only. */
#define FK_SRV_WS_RX_BUFFER 512
static const struct lws_protocols protocols[] = {
    {"http", cb_http, sizeof(struct http_sess), 0, 0, NULL, 0},
    {FK_WSS_SUBPROTOCOL, fk_srv_session_cb, sizeof(struct session), FK_SRV_WS_RX_BUFFER, 0, NULL,
     0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* No lws "validity" keepalive: lws would keep one timer per connection in its single sorted
 * timer list (default: a WebSocket ping after 300 s idle, hang-up at 310 s), and inserting a
 * connection's timer walks that list, so opening N connections cost O(N^2) (36 % of the server's
 * CPU with 12,000 devices connected). Idle connections are the tick's business
 * (3 x ping_interval without a message closes 1001 "idle", docs/wss-protocol.md).
 * secs_since_valid_hangup = 0 is lws' "no validity timer". */
static const lws_retry_bo_t no_validity_timer = {.secs_since_valid_ping = 0,
                                                 .secs_since_valid_hangup = 0};

/* ---- loop ------------------------------------------------------------------------------- */

struct fk_srv_loop {
    struct ev_loop *ev;
    ev_timer tick;
};

/* What the next message to s is, now (fk_srv_push_next); kick served. */
static void kick(struct session *s) {
    s->kick = 0;
    if (s->close_code == 0 && fk_srv_push_next(s) != 0) {
        fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_INTERNAL, "internal error");
    }
}

static void tick(struct ev_loop *ev, ev_timer *w, int revents) {
    struct fk_server *srv = w->data;
    (void)ev;
    (void)revents;
    time_t now = time(NULL);
    fk_srv_crl_maybe_reload(srv);
    fk_srv_revocations_check(srv);
    fk_srv_jobs_save_dirty(srv);
    fk_srv_rot_tick(srv);
    fk_srv_mobile_tick(srv);
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        if (s->close_code != 0) {
            fk_srv_close_overdue(s, now);
            continue;
        }
        if (!s->hello_done && now - s->opened >= (time_t)srv->cfg.hello_timeout) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_POLICY, "no hello in time");
        } else if (now - s->last_rx >= 3 * (time_t)srv->cfg.ping_interval) {
            fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_GOING_AWAY, "idle");
        }
        if (s->pending[0] != '\0' && now - s->pending_since >= 30) {
            /* docs/wss-protocol.md: the server gives up after 30 s; the connection stays. */
            fk_log(FK_LOG_WARN, "server: %s %s: request %s unanswered after 30 s", s->peer, s->id,
                   s->pending);
            srv->request_timeouts++;
            memcpy(s->late, s->pending, sizeof s->late);
            s->pending[0] = '\0';
            fk_srv_push_timeout(s);
        }
    }
    /* Rotation steps taken meanwhile (provision-keys rotate on the same inventory) and new
     * jobs reach idle connections within a second. */
    if (srv->sessions != NULL) {
        fk_srv_rot_refresh(srv);
    }
    /* The deliveries' inventory rows and audit entries, one group (fk_srv_group_begin). */
    int opened = fk_srv_group_begin(srv);
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        kick(s); /* every session is pushed: the kicks listed so far are served */
    }
    srv->n_rot_kicks = 0;
    (void)fk_srv_group_end(srv, opened, "tick"); /* failed: logged, queues closed */
    /* lws' own time-outs (TLS handshake, HTTP request, header table: the slowloris limits)
     * are its lws_sul timers, which its libev back end runs from an idle watcher started by
     * socket events and from one libev timer that it re-arms with ev_timer_set + start: a no-op
     * while that timer is still pending for a later deadline, so a nearer time-out was missed
     * until then (fault_slowloris: connections that never sent their request stayed open). A
     * turn through lws' event pipe each second runs every ripe one, at most a second late. */
    lws_cancel_service(srv->ctx);
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

enum fk_err fk_srv_listener_start(struct fk_server *srv, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    const struct fk_server_config *cfg = &srv->cfg;
    /* Not LLL_NOTICE even at debug: lws' libev back end logs every watcher start and stop
     * there (three quarters of a debug log under load). */
    lws_set_log_level(cfg->log_level == FK_LOG_DEBUG ? (LLL_ERR | LLL_WARN) : LLL_ERR,
                      lws_log_emit);
    srv->loop = calloc(1, sizeof *srv->loop);
    FK_ENSURE(srv->loop != NULL, FK_E_NOMEM);
    /* EVFLAG_AUTO: epoll on Linux. No signal watcher is installed on a loop made by
     * ev_loop_new, so SIGTERM/SIGHUP stay the program's (tools/fleetkey-server). */
    srv->loop->ev = ev_loop_new(EVFLAG_AUTO);
    FK_ENSURE(srv->loop->ev != NULL, fk_diag_set(diag, FK_E_INTERNAL, "ev_loop_new failed"));
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                 LWS_SERVER_OPTION_LIBEV;
    void *foreign[1] = {srv->loop->ev};
    ci.foreign_loops = foreign;
    ci.user = srv;
    ci.count_threads = 1;
    srv->ctx = lws_create_context(&ci);
    FK_ENSURE(srv->ctx != NULL,
              fk_diag_set(diag, FK_E_INTERNAL,
                          "lws_create_context failed (is libwebsockets-evlib-ev installed?)"));

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
    vi.timeout_secs = (int)srv->cfg.handshake_timeout; /* TLS handshake and HTTP request */
    /* A connection that never sends its request (slowloris: no byte, a ClientHello dribbled,
     * TLS done but no upgrade) holds a header table; lws drops it after this, 10 s when 0,
     * whatever timeout_secs says. */
    vi.timeout_secs_ah_idle = srv->cfg.handshake_timeout;
    vi.retry_and_idle_policy = &no_validity_timer;
    vi.user = srv;
    srv->vh = lws_create_vhost(srv->ctx, &vi);
    FK_ENSURE(srv->vh != NULL && !srv->load_error && srv->ssl_ctx != NULL,
              fk_diag_set(diag, FK_E_IO,
                          "cannot serve on %s:%u (port busy, or certificate/key/CA/CRL unusable:"
                          " see the log)",
                          cfg->listen, cfg->port));
    ev_timer_init(&srv->loop->tick, tick, 1.0, 1.0);
    srv->loop->tick.data = srv;
    ev_timer_start(srv->loop->ev, &srv->loop->tick);
    fk_log(FK_LOG_INFO,
           "server: listening on %s:%u (wss %s, TLS 1.2-1.3, client certificates "
           "required; event loop libev/%s)",
           cfg->listen, fk_srv_listener_port(srv), FK_WSS_PATH,
           ev_backend(srv->loop->ev) == EVBACKEND_EPOLL ? "epoll" : "not epoll");
    rc = FK_OK;
out:
    return rc;
}

unsigned fk_srv_listener_port(const struct fk_server *srv) {
    return srv->vh != NULL ? (unsigned)lws_get_vhost_listen_port(srv->vh) : 0;
}

void fk_srv_listener_wake(struct fk_server *srv) {
    if (srv->ctx != NULL) {
        lws_cancel_service(srv->ctx);
    }
}

/* A PSK check finished (rot_check.c woke the loop): collect it, start the next ones, and send
 * rot_commit to the devices it confirmed without waiting for the tick. */
/* The kicked sessions are found by id (srv->rot_kicks): a walk of every session per wake-up
 * was O(fleet) per confirmed device, O(fleet^2) per rotation. */
static void wake_rot(struct fk_server *srv) {
    int opened = fk_srv_group_begin(srv);
    fk_srv_rot_checks_wake(srv);
    if (srv->n_rot_kicks > SRV_ROT_KICKS_MAX) {
        for (struct session *s = srv->sessions; s != NULL; s = s->next) {
            if (s->kick) {
                kick(s);
            }
        }
    } else {
        for (size_t k = 0; k < srv->n_rot_kicks; k++) {
            struct session *s = fk_srv_session_of(srv, srv->rot_kicks[k]);
            if (s != NULL && s->kick) {
                kick(s);
            }
        }
    }
    srv->n_rot_kicks = 0;
    (void)fk_srv_group_end(srv, opened, "psk checks"); /* failed: logged, queues closed */
}

enum fk_err fk_srv_listener_run(struct fk_server *srv) {
    while (!srv->stop) {
        /* One turn: waits for a socket, lws' event pipe (lws_cancel_service) or the tick,
         * and runs what is ready; a signal that interrupts the wait also ends the turn. */
        ev_run(srv->loop->ev, EVRUN_ONCE);
        if (srv->reload) {
            fk_srv_crl_maybe_reload(srv);
        }
        if (atomic_exchange(&srv->rot_wake, 0)) {
            wake_rot(srv);
        }
    }
    /* Going away: every WebSocket gets close 1001; a bounded number of loop turns to send
     * them, then the context is destroyed by fk_server_free. */
    fk_log(FK_LOG_INFO, "server: stopping");
    for (struct session *s = srv->sessions; s != NULL; s = s->next) {
        fk_srv_schedule_close(s, s->wsi, FK_WSS_CLOSE_GOING_AWAY, "server shutting down");
    }
    time_t until = time(NULL) + 2;
    while (srv->sessions != NULL && time(NULL) < until) {
        ev_run(srv->loop->ev, EVRUN_ONCE); /* the tick bounds each turn to 1 s */
    }
    return FK_OK;
}

void fk_srv_listener_free(struct fk_server *srv) {
    if (srv->ctx != NULL) {
        /* On a foreign libev loop lws finishes in this one call: its watchers are stopped
         * synchronously, the loop itself is left to us. */
        lws_context_destroy(srv->ctx);
        srv->ctx = NULL;
        srv->vh = NULL;
    }
    if (srv->loop != NULL) {
        if (srv->loop->ev != NULL) {
            ev_timer_stop(srv->loop->ev, &srv->loop->tick);
            ev_loop_destroy(srv->loop->ev);
        }
        free(srv->loop);
        srv->loop = NULL;
    }
}
