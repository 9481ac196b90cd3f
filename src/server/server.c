/* fleetkey-server's control plane on libwebsockets: start, stop, and the wiring of its parts.
 *
 * One lws context, one vhost, one TLS port, one thread; all state is one struct fk_server
 * (server_internal.h). Each concern is one file with a private header stating its contract:
 *
 *   server.c      fk_server_new/run/stop/free: config checks, inventory, ota_dir, start order
 *   listener.c    the lws context and vhost, the protocols table, the 1 s tick (timers), the
 *                 service loop and the going-away shutdown
 *   auth.c        mTLS: TLS policy, verify/info callbacks and rejection reasons, CA + CRL
 *                 store and its reload, certificate identity, WebSocket upgrade checks,
 *                 revocations (new CRL, inventory audit rows) closing live connections
 *   session.c     device WebSockets: fleetkey.v1 state per connection, reassembly, hello,
 *                 ping, closes; session_io.c below it: the send queue, requests, scheduled
 *                 closes and session look-ups every concern uses
 *   push.c        the OTA channel of a session: next request, responses, time-outs
 *   jobs.c        update jobs and their files in ota_dir, target state changes, the
 *                 OTA-key rotation view (rotation jobs join here)
 *   rot.c         credential rotation: rot_* requests, confirmation from handshakes,
 *                 interlock, revocation; rot_store.c the jobs and their files in rot_dir;
 *                 rot_check.c the PSK check (a DTLS handshake in a worker thread);
 *                 admin_rot.c their routes
 *   admin.c       the admin HTTP API: one route table and its dispatch, /healthz, /metrics,
 *                 /api/devices; admin_ota.c: the /api/ota routes (upload, interlock, jobs);
 *                 http.c below them: the answers
 *   ota.c, msg.c, config.c   pure parts behind fleetkey/server.h (OTA decisions, wss message
 *                 parsing, the config file), tested without sockets */
#include "fleetkey/server.h"

#include "auth_internal.h"
#include "jobs_internal.h"
#include "oauth_internal.h"
#include "listener_internal.h"
#include "rot_internal.h"
#include "server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum fk_err fk_server_new(const struct fk_server_config *cfg, struct fk_server **out,
                          struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_server *srv = NULL;
    *out = NULL;
    FK_ENSURE(cfg->cert[0] && cfg->key[0] && cfg->ca[0] && cfg->inventory[0],
              fk_diag_set(diag, FK_E_ARG, "cert, key, ca and inventory must all be set"));
    FK_ENSURE(cfg->crl[0] || cfg->allow_no_crl,
              fk_diag_set(diag, FK_E_ARG, "crl must be set (allow_no_crl = 1 for development)"));
    srv = calloc(1, sizeof *srv);
    FK_ENSURE(srv != NULL, FK_E_NOMEM);
    srv->cfg = *cfg;
    srv->started = time(NULL);
    FK_GUARD(fk_inventory_open(cfg->inventory, &srv->inv, diag));
    if (cfg->ota_dir[0] != '\0') {
        snprintf(srv->ota_dir, sizeof srv->ota_dir, "%s", cfg->ota_dir);
    } else {
        /* Default: "ota" next to the inventory file; a database has no "next to". */
        FK_ENSURE(!fk_inventory_is_postgresql(cfg->inventory),
                  fk_diag_set(diag, FK_E_ARG,
                              "ota_dir must be set when inventory is a PostgreSQL URI"));
        const char *slash = strrchr(cfg->inventory, '/');
        int n = slash != NULL ? (int)(slash - cfg->inventory) : 1;
        FK_ENSURE(snprintf(srv->ota_dir, sizeof srv->ota_dir, "%.*s/ota", n,
                           slash != NULL ? cfg->inventory : ".") < (int)sizeof srv->ota_dir,
                  fk_diag_set(diag, FK_E_TOOBIG, "ota_dir path too long"));
    }
    FK_GUARD(fk_mkdirs(srv->ota_dir, 0700, diag));
    FK_GUARD(fk_srv_oauth_open(srv, diag)); /* its default place may be ota_dir */
    fk_srv_revocations_check(
        srv); /* from now on only new rows: older ones were judged at upgrade */
    fk_srv_jobs_load(srv);
    snprintf(srv->rot_dir, sizeof srv->rot_dir, "%s",
             cfg->rot_dir[0] != '\0' ? cfg->rot_dir : srv->ota_dir);
    FK_GUARD(fk_mkdirs(srv->rot_dir, 0700, diag));
    fk_srv_rot_load(srv);
    fk_srv_rot_refresh(srv);
    FK_ENSURE(fk_srv_auth_init() == 0, FK_E_CRYPTO);
    FK_GUARD(fk_srv_listener_start(srv, diag));
    *out = srv;
    srv = NULL;
    rc = FK_OK;
out:
    fk_server_free(srv);
    return rc;
}

unsigned fk_server_port(const struct fk_server *srv) {
    return fk_srv_listener_port(srv);
}

void fk_server_stop(struct fk_server *srv) {
    srv->stop = 1;
    fk_srv_listener_wake(srv);
}

void fk_server_reload_crl(struct fk_server *srv) {
    srv->reload = 1;
    fk_srv_listener_wake(srv);
}

enum fk_err fk_server_run(struct fk_server *srv) {
    return fk_srv_listener_run(srv);
}

void fk_server_free(struct fk_server *srv) {
    if (srv == NULL) {
        return;
    }
    fk_srv_listener_free(srv); /* sessions close: transfers in flight go back to the queue */
    fk_srv_oauth_free(srv);
    fk_srv_jobs_save_dirty(srv);
    fk_srv_rot_checks_stop(srv);
    fk_srv_rot_save_dirty(srv); /* a shared plan's last merge writes the inventory */
    fk_inventory_close(srv->inv);
    fk_srv_rot_free(srv);
    for (size_t j = 0; j < srv->njobs; j++) {
        fk_srv_job_free(srv->jobs[j]);
    }
    free(srv->jobs);
    free(srv);
}
