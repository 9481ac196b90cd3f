/* The control plane's shared state: private to src/server/, never installed.
 *
 * One struct fk_server holds everything the concerns share (config, lws objects, the
 * inventory, the list of device sessions, the update jobs, the rotation view, metrics); it is
 * touched only from the lws service thread, so nothing here locks. Each concern declares its
 * functions in its own header next to this one (listener_internal.h, auth_internal.h,
 * session_internal.h, jobs_internal.h, admin_internal.h); server.c says which file owns what.
 * The types below are shared because several concerns read them: a session is created and
 * freed by session.c, its OTA fields are driven by push.c, the admin API and the revocation
 * checks look sessions up; an ota_job is owned by jobs.c and created by admin_ota.c. */
#ifndef FK_SERVER_INTERNAL_H
#define FK_SERVER_INTERNAL_H

#include "fleetkey/server.h"

#include "fleetkey/inventory.h"
#include "fleetkey/rotation.h"

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#define SRV_ROT_KICKS_MAX 128 /* devices a wake-up pushes to by id (listener.c wake_rot) */

/* Why a connection was refused (auth.c counts them, /metrics shows them by name). */
enum reason {
    R_NO_CERT,
    R_BAD_CHAIN,
    R_EXPIRED,
    R_NOT_YET_VALID,
    R_REVOKED,
    R_UNKNOWN_IDENTITY,
    R_PROTOCOL_VERSION,
    R_OTHER,
    R_COUNT
};

/* What a peer certificate's URI SAN urn:fleetkey:<kind>:<name> says it is. */
enum id_kind { ID_NONE, ID_DEVICE, ID_MOBILE, ID_OPERATOR, ID_SERVER };

/* One queued outgoing WebSocket message (session.c). */
struct outmsg {
    struct outmsg *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the message */
};

#define FK_SRV_ID_BUCKETS 4096u /* buckets of fk_server.by_id (a power of two) */

/* One device WebSocket: the lws per-session user data of the fleetkey.v1 protocol, linked
 * into srv->sessions between ESTABLISHED and CLOSED (session.c). */
struct session {
    struct fk_server *srv;
    struct session *prev, *next;
    struct session *id_prev, *id_next; /* srv->by_id[hash of id] (session_io.c) */
    struct lws *wsi;
    char id[FK_WSS_ID_MAX + 1];
    char peer[64];
    int hello_done;
    time_t opened;
    time_t last_rx;
    uint8_t *rx; /* reassembly buffer, FK_WSS_MAX_MESSAGE bytes, only when fragmented */
    size_t rx_len;
    struct outmsg *q_head, *q_tail;
    unsigned q_n;
    int close_code;
    char close_reason[64];
    int closing;                        /* close frame queued: log and count once */
    int close_sent;                     /* scheduled close: our frame written (session.c) */
    time_t close_sent_at;               /* when; the peer's answer is awaited FK_SRV_CLOSE_WAIT */
    char pending[FK_WSS_REQID_MAX + 1]; /* id of the outstanding request, "" when none */
    time_t pending_since;
    /* OTA delivery (docs/wss-protocol.md, "What the server pushes, and when") */
    enum fk_ota_action pending_act; /* what the outstanding request is */
    struct fk_wss_ota ota;          /* the device's last report (hello, status, ota_key) */
    struct ota_job *job;            /* the job of target, when target is set */
    struct fk_ota_target *target;   /* the update this connection works on, or NULL */
    int status_sent;                /* status_request = 1: the one status was sent */
    int status_due;                 /* rebooted into a job's image: ask status first */
    int key_new_tried, key_promote_tried, need_abort;
    int rot_confirmed; /* fk_rotation_confirm done (or not needed) here */
    int superseded;    /* the device connected again: push nothing here */
    int kick;          /* something is due for it now (a PSK check passed): push at once */
    /* credential rotation (rot.c) */
    struct fk_wss_rot rot;           /* the device's last report; rot.present 0: never sent rot_* */
    long long dtls_port;             /* posture.dtls_port of hello, 0 when absent */
    char serial[FK_WSS_STR_MAX + 1]; /* this connection's client certificate serial, hex */
    int rot_act;                     /* enum rot_act of the outstanding request */
    int rot_cls;                     /* its class */
    /* A rot_* request given up after 30 s: its id and what it was. Its answer is still taken
     * while nothing else has been asked since (session.c): a robot busy with its share of a
     * fleet's crypto answers late, and dropping that answer left the delivery waiting for the
     * plan's own timeout (minutes at fleet scale) before it was sent again. */
    char late[FK_WSS_REQID_MAX + 1];
    int late_rot_act, late_rot_cls;
    /* a phone (mobile certificate + bearer token, mobile.c); not in srv->sessions */
    int mobile;
    char jti[24];    /* the token that opened it: closed when that token is revoked */
    unsigned scope;  /* FK_SCOPE_* bits of that token */
    long long exp;   /* and its expiry */
};

/* One update job: an image in the spool directory and one target per device. Jobs live as long
 * as the server and are saved in ota_dir (jobs.c); the audit log keeps what happened. */
struct ota_job {
    char id[16];
    char created_at[FK_INV_TIME_SIZE];
    char operator_name[FK_WSS_ID_MAX + 1];
    char path[1200];
    int fd; /* the spool file, read with pread for each chunk */
    struct fk_ota_image_info info;
    size_t n;
    struct fk_ota_target *t;
    char (*updated)[FK_OTA_TIME_SIZE]; /* per target: when its state last changed */
    int dirty; /* changed since its file was written (saved by the next tick) */
};

_Static_assert(FK_OTA_TIME_SIZE == FK_INV_TIME_SIZE, "one time format for jobs and inventory");

struct http_sess;
typedef int (*fk_srv_route_fn_ptr)(struct fk_server *srv, struct lws *wsi, struct http_sess *h,
                                   const char *path);

/* One HTTP connection: the lws per-session user data of the "http" protocol (admin.c,
 * admin_ota.c); a keep-alive connection reuses it for each request. */
struct http_sess {
    unsigned char *buf; /* LWS_PRE + body */
    size_t len;
    /* POST /api/ota in progress */
    int upload;  /* 1 while the body is being spooled */
    int refused; /* answered before the body ended: the rest is discarded */
    int fd;      /* temp file in ota_dir when has_fd (zeroed memory: fd 0 is not ours) */
    int has_fd;
    char tmp[1100];
    unsigned long long clen, got;
    int all;                        /* ?all=1 */
    char (*ids)[FK_WSS_ID_MAX + 1]; /* ?device=ID..., deduplicated */
    size_t nids;
    char operator_name[FK_WSS_ID_MAX + 1];
    /* a JSON body (the /api/rotation POSTs), at most 64 KiB */
    int jbody;
    char *jbuf;
    size_t jlen;
    char jpath[128];
    fk_srv_route_fn_ptr jdone;
};

/* The server: one per fk_server_new, used from the service thread only (fk_server_stop and
 * fk_server_reload_crl only set a flag and wake the loop). */
struct fk_server {
    struct fk_server_config cfg;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    SSL_CTX *ssl_ctx;
    struct fk_inventory *inv;
    struct fk_srv_loop *loop; /* the epoll loop lws runs on, and the tick (listener.c) */
    volatile sig_atomic_t stop;
    volatile sig_atomic_t reload;
    struct stat crl_st;
    struct session *sessions;
    /* The same sessions hashed by device id: looking a device up (every PSK check, delivery
     * and hello) walks one short chain instead of all connections, O(1) instead of O(n). */
    struct session *by_id[FK_SRV_ID_BUCKETS];
    time_t started;
    /* metrics */
    unsigned long long ws_open;
    unsigned long long handshakes_ok;
    unsigned long long rejections[R_COUNT];
    unsigned long long msgs_in, msgs_out;
    unsigned long long closes[8]; /* by close code, index from close_index() */
    unsigned long long http_requests;
    unsigned long long crl_reloads, crl_reload_failures;
    unsigned long long requests, responses, request_timeouts, late_responses;
    int load_error; /* set when LOAD_EXTRA could not configure TLS */
    /* OTA */
    char ota_dir[1024];
    struct ota_job **jobs;
    size_t njobs, jobs_cap;
    unsigned long next_job;  /* number of the next job id; above every job on disk */
    long long audit_seen;    /* newest audit row looked at for revocations */
    long long rot_audit_seq; /* audit_seen when the rotation state was last read */
    int rot_loaded;
    struct fk_rot_current rot; /* the rotation started last, re-read once a second */
    int rot_found, rot_old_retired, rot_new_retired;
    /* credential rotation (rot.c) */
    char rot_dir[1024];
    struct rot_job **rjobs;
    size_t nrjobs;
    unsigned long next_rjob;
    struct fk_pki_ca *ca; /* opened on first use */
    unsigned long long rot_delivered, rot_commits;
    unsigned long long rot_checks_ok, rot_checks_failed;
    unsigned rot_checks_running; /* PSK checks in flight (rot_check.c) */
    atomic_int rot_wake; /* a check finished: the loop collects it now, not at the next tick */
    /* The devices kicked since the last tick (rot_check.c), so a wake-up pushes to them alone;
     * n_rot_kicks > SRV_ROT_KICKS_MAX: too many to list, it walks every session. */
    char rot_kicks[SRV_ROT_KICKS_MAX][FK_WSS_ID_MAX + 1];
    size_t n_rot_kicks;
    unsigned long long ota_bytes, ota_states[FK_OTA_FAILED + 1], ota_keys[2], ota_uploads_refused;
    struct srv_oauth *oauth; /* OAuth2 tokens and phone sessions (oauth_internal.h) */
};

#endif
