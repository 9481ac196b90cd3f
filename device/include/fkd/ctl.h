/* fkd ctl: the robot's control channel: a DTLS 1.2 PSK server (Mbed TLS) on UDP, default port
 * 5684, carrying one text request per datagram (docs/control-protocol.md).
 *
 * Memory: everything lives in caller memory: the struct fkd_ctl, an array of sessions and one
 * receive buffer, all handed in at setup. fkd_ctl_setup() reserves each session's Mbed TLS
 * record buffers up front (mbedtls_ssl_setup); a session that ends is reset, never freed, so the
 * number of concurrent sessions and the memory they hold are fixed at start-up. Mbed TLS still
 * allocates its per-handshake state through its platform allocator (on the chip: a static arena
 * via MBEDTLS_MEMORY_BUFFER_ALLOC_C); bench/bench_dtls measures that peak.
 *
 * Security: a source address gets a session slot only after it returned a valid
 * HelloVerifyRequest cookie (RFC 6347 4.2.1), which the listener answers statelessly, so spoofed
 * sources cannot make it allocate or fill the session table. The PSK callback accepts the
 * identity of the current key slot and, during a rotation, the next slot (which must carry its
 * own identity: PSK has no way to try two keys under one identity). Wrong key, unknown identity,
 * garbage: the handshake fails, the slot is reset, the log names the peer, the identity and the
 * reason, never key bytes (keys appear only as "sha256:" fingerprints).
 *
 * Plaintext mode (development without a PSK, as the policy allows) runs the same protocol over
 * bare UDP. The caller decides and logs that as an error; the listener only obeys the flag.
 *
 * Thread safety: one struct fkd_ctl is driven by one thread (fkd_ctl_poll); distinct listeners
 * are independent. */
#ifndef FKD_CTL_H
#define FKD_CTL_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cookie.h>

#include "fkd/net.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_CTL_DEFAULT_PORT 5684
#define FKD_CTL_PSK_MAX 64       /* bytes; NVS security/dtls_psk holds 32 */
#define FKD_CTL_IDENTITY_MAX 64  /* bytes of a PSK identity we accept */
#define FKD_CTL_REQ_MAX 128      /* longest request line */
#define FKD_CTL_RESP_MAX 1100    /* longest response: one record within a 1200-byte MTU */
#define FKD_CTL_RX_MAX 1536      /* receive buffer to hand to fkd_ctl_setup() */
#define FKD_CTL_RX_MIN 512
#define FKD_CTL_FPR_LEN 24       /* "sha256:" + 16 hex + NUL, same as the host's fk_fpr() */
#define FKD_CTL_MOVE_STEP_MAX 1000   /* |dx|, |dy| of one move */
#define FKD_CTL_POS_LIMIT 100000     /* |x|, |y| of the simulated position */

#if FKD_CTL_RESP_MAX > MBEDTLS_SSL_OUT_CONTENT_LEN || FKD_CTL_REQ_MAX > MBEDTLS_SSL_IN_CONTENT_LEN
#error "Mbed TLS record buffers are smaller than a control message"
#endif

/* Return codes of this module. */
#define FKD_CTL_ERR_TABLE(X)                                                                   \
    X(FKD_CTL_OK, "success")                                                                   \
    X(FKD_CTL_E_ARG, "invalid argument")                                                       \
    X(FKD_CTL_E_NET, "socket error")                                                           \
    X(FKD_CTL_E_CRYPTO, "Mbed TLS setup failed")                                               \
    X(FKD_CTL_E_NOKEY, "no PSK configured")                                                    \
    X(FKD_CTL_E_PARSE, "malformed request")                                                    \
    X(FKD_CTL_E_RANGE, "value out of range")                                                   \
    X(FKD_CTL_E_NOSPACE, "does not fit")                                                       \
    X(FKD_CTL_E_HANDSHAKE, "handshake failed")                                                 \
    X(FKD_CTL_E_TIMEOUT, "timed out")                                                          \
    X(FKD_CTL_E_CLOSED, "peer closed the session")

enum fkd_ctl_err {
#define FKD_CTL_ERR_ENUM(name, text) name,
    FKD_CTL_ERR_TABLE(FKD_CTL_ERR_ENUM)
#undef FKD_CTL_ERR_ENUM
        FKD_CTL_ERR_COUNT
};
/* Never NULL, also for values outside the enum. */
const char *fkd_ctl_strerror(int rc);

enum fkd_ctl_mode {
    FKD_CTL_MODE_DTLS = 0,      /* DTLS 1.2 PSK (production and normal development) */
    FKD_CTL_MODE_PLAINTEXT = 1, /* development without a PSK only: no encryption at all */
};

enum fkd_ctl_slot { FKD_CTL_SLOT_CURRENT = 0, FKD_CTL_SLOT_NEXT = 1, FKD_CTL_SLOT_COUNT = 2 };

enum fkd_ctl_level { FKD_CTL_LOG_DEBUG, FKD_CTL_LOG_INFO, FKD_CTL_LOG_WARN, FKD_CTL_LOG_ERROR };
typedef void fkd_ctl_log_fn(void *user, enum fkd_ctl_level lvl, const char *line);

/* A bounded JSON object writer, handed to the status callback so the caller can add members
 * (posture, credential versions) without the listener knowing their types. Writes past the end
 * are dropped and remembered (overflow), never out of bounds. */
struct fkd_ctl_json {
    char *buf;
    size_t size;
    size_t len;
    int first;    /* no member written yet at this nesting level */
    int overflow; /* something did not fit */
};
void fkd_ctl_json_str(struct fkd_ctl_json *w, const char *key, const char *val);
void fkd_ctl_json_int(struct fkd_ctl_json *w, const char *key, long long val);
void fkd_ctl_json_bool(struct fkd_ctl_json *w, const char *key, int val);
/* "key":<json> with json already serialised by the caller's own writer (e.g.
 * fkd_posture_json); it must be one complete JSON value. */
void fkd_ctl_json_raw(struct fkd_ctl_json *w, const char *key, const char *json);
void fkd_ctl_json_begin(struct fkd_ctl_json *w, const char *key); /* opens "key":{ */
void fkd_ctl_json_end(struct fkd_ctl_json *w);                     /* closes } */

/* Called while answering `status`: add members to w (e.g. "posture":{...},
 * "credentials":{...}). Never put secrets in. */
typedef void fkd_ctl_status_fn(void *user, struct fkd_ctl_json *w);

struct fkd_ctl_config {
    enum fkd_ctl_mode mode;
    const char *bind_ip;        /* numeric; NULL = any IPv4 address */
    uint16_t port;              /* 0 = pick one (fkd_ctl_port() tells which) */
    uint32_t idle_timeout_ms;   /* an open session quiet this long is closed; 0 = 60000 */
    uint32_t hs_timeout_min_ms; /* DTLS retransmission timer start; 0 = 1000 */
    uint32_t hs_timeout_max_ms; /* handshake given up after this; 0 = 8000 */
    uint16_t mtu;               /* 0 = 1200 */
    const char *fw_version;     /* reported by `status`; NULL = "unknown" */
    fkd_ctl_log_fn *log;        /* NULL = silent */
    fkd_ctl_status_fn *status;  /* NULL = only the listener's own members */
    void *user;                 /* passed to log and status */
};

/* What the listener has seen since setup. */
struct fkd_ctl_stats {
    uint32_t active;             /* sessions holding a slot now (handshaking or open) */
    uint32_t active_hwm;         /* most slots ever held at once */
    uint32_t handshakes_ok;
    uint32_t handshakes_failed;
    uint32_t hello_verify_sent;  /* stateless cookie challenges sent */
    uint32_t dropped;            /* datagrams dropped before any session (garbage, bad cookie) */
    uint32_t busy;               /* valid cookie but every slot taken */
    uint32_t requests;           /* requests answered */
};

struct fkd_ctl;

enum fkd_ctl_session_state { FKD_CTL_S_FREE = 0, FKD_CTL_S_HANDSHAKE, FKD_CTL_S_OPEN };

/* One session slot. Fields are private; the caller only provides the storage. */
struct fkd_ctl_session {
    mbedtls_ssl_context ssl; /* first member: the PSK callback maps ssl back to its session */
    struct fkd_ctl *ctl;
    struct fkd_net_addr peer;
    enum fkd_ctl_session_state state;
    int slot;        /* key slot that authenticated, -1 before */
    int ready;       /* mbedtls_ssl_setup done */
    int need_reset;  /* mbedtls_ssl_session_reset still owed */
    uint64_t last_ms;
    uint64_t timer_start_ms;
    uint32_t timer_int_ms;
    uint32_t timer_fin_ms;
    const uint8_t *pending; /* the datagram waiting for Mbed TLS to read it */
    size_t pending_len;
    char identity[FKD_CTL_IDENTITY_MAX * 4 + 1]; /* printable form, for logs */
};

struct fkd_ctl_key {
    uint8_t psk[FKD_CTL_PSK_MAX];
    size_t psk_len; /* 0 = slot empty */
    uint8_t identity[FKD_CTL_IDENTITY_MAX];
    size_t identity_len;
    uint32_t version;
    char fpr[FKD_CTL_FPR_LEN];
};

/* The simulated robot the `move` command drives. */
struct fkd_ctl_robot {
    int32_t x;
    int32_t y;
    uint32_t moves;
};

struct fkd_ctl {
    struct fkd_ctl_config cfg;
    mbedtls_ssl_config conf;
    mbedtls_ssl_cookie_ctx cookie;
    mbedtls_ctr_drbg_context drbg;
    struct fkd_net_sock sock;
    struct fkd_ctl_session *sessions;
    size_t n_sessions;
    uint8_t *rx;
    size_t rx_size;
    struct fkd_ctl_key keys[FKD_CTL_SLOT_COUNT];
    struct fkd_ctl_stats stats;
    struct fkd_ctl_robot robot;
    uint16_t port;
    uint64_t start_ms;
    int ready; /* setup completed */
    int ciphersuites[5];
    uint8_t resp[FKD_CTL_RESP_MAX];
    uint8_t req[FKD_CTL_REQ_MAX + 1];
    uint64_t log_window_ms; /* rate limit for per-datagram warnings */
    uint32_t log_window_count;
};

/* Prepares ctl for fkd_ctl_free()/fkd_ctl_setup(); cannot fail. */
void fkd_ctl_init(struct fkd_ctl *ctl);

/* Installs the PSK of a key slot (copied; the caller may wipe its copy). identity_len 1..64,
 * psk_len 16..64. Allowed before and after setup; a new key applies to new handshakes.
 * FKD_CTL_OK, FKD_CTL_E_ARG. */
int fkd_ctl_set_psk(struct fkd_ctl *ctl, enum fkd_ctl_slot slot, const uint8_t *identity,
                    size_t identity_len, const uint8_t *psk, size_t psk_len, uint32_t version);
/* Wipes and empties a key slot. Sessions that authenticated with it stay (fkd_ctl_close_slot). */
void fkd_ctl_clear_psk(struct fkd_ctl *ctl, enum fkd_ctl_slot slot);
/* Closes every session (open: close_notify; or still handshaking) that authenticated with the
 * key of slot. Returns how many. */
size_t fkd_ctl_close_slot(struct fkd_ctl *ctl, enum fkd_ctl_slot slot);
/* The end of a PSK rotation: closes every session of the current key, makes the next key the
 * current one (its sessions stay open and now report auth_slot current) and empties next. From
 * then on the retired key is refused. No next key: nothing happens. Returns the sessions
 * closed. */
size_t fkd_ctl_commit_next(struct fkd_ctl *ctl);

/* Opens the UDP socket and, in DTLS mode, sets up Mbed TLS and every session slot (reserving
 * their record buffers now). cfg is copied (its strings must outlive ctl); sessions[n] and
 * rx[rx_size] are borrowed until fkd_ctl_free(). DTLS mode needs a current PSK.
 * FKD_CTL_OK, FKD_CTL_E_ARG (n == 0, rx_size < FKD_CTL_RX_MIN), FKD_CTL_E_NOKEY, FKD_CTL_E_NET
 * (bind failed), FKD_CTL_E_CRYPTO. On failure fkd_ctl_free() is still required and enough. */
int fkd_ctl_setup(struct fkd_ctl *ctl, const struct fkd_ctl_config *cfg,
                  struct fkd_ctl_session *sessions, size_t n, uint8_t *rx, size_t rx_size);

/* The UDP port the listener is bound to (after setup). */
uint16_t fkd_ctl_port(const struct fkd_ctl *ctl);

/* Waits up to max_wait_ms for datagrams, handles every datagram that arrived (at most 32 per
 * call), then runs retransmission and idle timers. Returns the number of datagrams handled
 * (>= 0) or FKD_CTL_E_NET when the socket failed. */
int fkd_ctl_poll(struct fkd_ctl *ctl, uint32_t max_wait_ms);

/* A copy of the counters. */
void fkd_ctl_get_stats(const struct fkd_ctl *ctl, struct fkd_ctl_stats *out);

/* Closes every session (close_notify to open ones), frees Mbed TLS state, closes the socket,
 * wipes the keys. Safe after fkd_ctl_init() whether or not setup ran or succeeded. */
void fkd_ctl_free(struct fkd_ctl *ctl);

/* ---- the request protocol (ctl_proto.c), also used in plaintext mode and by fuzzing ---- */

enum fkd_ctl_req_kind { FKD_CTL_REQ_PING = 1, FKD_CTL_REQ_STATUS, FKD_CTL_REQ_MOVE };

struct fkd_ctl_req {
    enum fkd_ctl_req_kind kind;
    int32_t dx;
    int32_t dy;
};

/* Parses one request datagram: `ping`, `status` or `move <dx> <dy>` (decimal, |d| <=
 * FKD_CTL_MOVE_STEP_MAX), single spaces, an optional trailing "\n" or "\r\n", at most
 * FKD_CTL_REQ_MAX bytes, printable ASCII only. Borrows buf; never allocates.
 * FKD_CTL_OK, FKD_CTL_E_PARSE (with *why set to a static reason), FKD_CTL_E_RANGE. */
int fkd_ctl_proto_parse(const uint8_t *buf, size_t len, struct fkd_ctl_req *out,
                        const char **why);

/* Context the request handler reads; the listener fills it per session. */
struct fkd_ctl_reqctx {
    const char *fw_version;
    uint64_t uptime_ms;
    enum fkd_ctl_mode mode;
    const char *identity;             /* authenticated identity ("" in plaintext mode) */
    int slot;                         /* key slot that authenticated, -1 in plaintext */
    const struct fkd_ctl_key *keys;   /* [FKD_CTL_SLOT_COUNT], for versions and fingerprints */
    const struct fkd_ctl_stats *stats;
    uint32_t max_sessions;
    fkd_ctl_status_fn *status;
    void *user;
};

/* Parses buf and writes the response into out (at most out_size bytes, no NUL counted in
 * *out_len): "pong\n" for ping, a one-line JSON object otherwise ({"ok":true,...} or
 * {"ok":false,"error":"..."}). Updates robot on a valid move. Never fails: every input gets a
 * response that fits, as long as out_size >= FKD_CTL_RESP_MAX. */
void fkd_ctl_proto_handle(const uint8_t *buf, size_t len, const struct fkd_ctl_reqctx *ctx,
                          struct fkd_ctl_robot *robot, uint8_t *out, size_t out_size,
                          size_t *out_len);

/* The listener's pre-session parser, public for tests and fuzzing: finds the cookie in a
 * datagram that starts with an unfragmented DTLS ClientHello in epoch 0. Borrows d; *cookie
 * points into it. 0, or -1 when the datagram is anything else. */
int fkd_ctl_hello_cookie(const uint8_t *d, size_t n, const uint8_t **cookie, size_t *cookie_len);

/* "sha256:" + first 8 bytes of SHA-256(buf) in hex, the host's fk_fpr() format. */
void fkd_ctl_fingerprint(const uint8_t *buf, size_t len, char out[FKD_CTL_FPR_LEN]);

#ifdef __cplusplus
}
#endif
#endif
