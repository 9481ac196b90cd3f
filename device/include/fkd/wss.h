/* fkd wss: the device's secure-WebSocket client to the control plane (docs/wss-protocol.md,
 * subprotocol `fleetkey.v1`), over mutually-authenticated TLS (mbedTLS) on one TCP socket of
 * the port layer (fkd/net.h), WebSocket framing by wslay's frame API.
 *
 * What it does: parses CONFIG_MINITRAIN_WSS_URI (wss://host[:port][/path]); connects; presents
 * the device certificate; verifies the server chain against the control-plane CA and checks
 * CONFIG_MINITRAIN_EXPECTED_HOST against the server certificate's DNS SANs (the CN only when
 * the certificate has no subjectAltName) with our own RFC 6125 matcher; upgrades with a random
 * Sec-WebSocket-Key and checks Sec-WebSocket-Accept and the subprotocol; sends `hello`;
 * answers pings, server requests and control frames; keeps the connection alive with `ping`
 * every ping_interval; closes with the protocol's close code on a bad frame or message; and
 * reconnects with exponential backoff and jitter. Every refusal is one log line naming the
 * reason ("wss: refused: server certificate expired", "... host mismatch", ...).
 *
 * Credentials come from the credential store (fkd/store.h: NVS first; the Kconfig/env fallback
 * exists in development builds only). In a production build a client certificate or key that
 * did not come from NVS means no connection (rule `mtls-nvs-only`).
 *
 * Memory: struct fkd_wss lives in caller memory and holds every buffer the client uses (see
 * FKD_WSS_MSG_MAX); nothing here calls malloc except, once per connection, wslay's frame
 * context (about 4.2 KiB, freed when the next connection starts and by fkd_wss_free) and,
 * inside mbedTLS, what mbedTLS allocates for certificates, record buffers and handshakes
 * (ESP-IDF: its heap, sized by its menuconfig). Nothing is allocated per message.
 *
 * Threads: one context is driven by one thread (fkd_wss_run); the store, config and posture it
 * borrows must stay unchanged while it runs. The helpers in the second half are pure and
 * reentrant. device/src code: no OS header, no allocation of its own. */
#ifndef FKD_WSS_H
#define FKD_WSS_H

#include "fkd/common.h"
#include "fkd/config.h"
#include "fkd/net.h"
#include "fkd/policy.h"
#include "fkd/store.h"

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_rot;

#define FKD_WSS_SUBPROTOCOL "fleetkey.v1"
#define FKD_WSS_MSG_MAX 4096u     /* wss-protocol.md: per message after reassembly */
#define FKD_WSS_PATH_MAX 128u     /* URI path (and query) including the NUL */
#define FKD_WSS_DEFAULT_PORT 443u /* RFC 6455 3: wss default */
#define FKD_WSS_HTTP_MAX 1024u    /* the server's 101 response headers */
#define FKD_WSS_ID_MAX 65u        /* device id (certificate CN) including the NUL */

/* RFC 6455 7.4.1 close codes used by the protocol. */
enum fkd_wss_close {
    FKD_WSS_CLOSE_NORMAL = 1000,
    FKD_WSS_CLOSE_GOING_AWAY = 1001,
    FKD_WSS_CLOSE_PROTOCOL = 1002,
    FKD_WSS_CLOSE_UNSUPPORTED = 1003,
    FKD_WSS_CLOSE_BAD_DATA = 1007,
    FKD_WSS_CLOSE_POLICY = 1008,
    FKD_WSS_CLOSE_TOO_BIG = 1009,
    FKD_WSS_CLOSE_INTERNAL = 1011,
};

/* ---- URI -------------------------------------------------------------------------------- */

struct fkd_wss_uri {
    char host[FKD_CFG_HOST_MAX]; /* DNS name or IPv4 literal; IPv6 without the brackets */
    char path[FKD_WSS_PATH_MAX]; /* "/" when the URI has none; may carry "?query" */
    uint16_t port;               /* 443 when the URI has none */
    int host_is_ip;              /* 1 for an IPv4/IPv6 literal */
};

/* Parses "wss://host[:port][/path[?query]]" (len bytes, need not be NUL-terminated; scheme
 * case-insensitive). Refused (FKD_E_PARSE, *why set to a static reason): another scheme,
 * userinfo ('@'), a fragment ('#'), an empty host, a host of other than LDH characters and
 * dots (or a malformed [IPv6]), port 0, > 65535 or not digits, spaces or control characters.
 * FKD_E_RANGE when host or path do not fit. Never allocates; out is zeroed first. */
FKD_MUST_CHECK enum fkd_err fkd_wss_uri_parse(const char *uri, size_t len, struct fkd_wss_uri *out,
                                              const char **why);

/* ---- host names (RFC 6125) ----------------------------------------------------------------- */

/* 1 when the reference identifier host (the expected host) matches the presented identifier
 * pattern (a DNS SAN or, without SANs, the CN), else 0. ASCII case-insensitive; one trailing
 * dot on host is ignored. A wildcard is accepted only as the whole left-most label ("*.b.c"),
 * matches exactly one non-empty label, and needs at least two labels after it ("*.com" and "*"
 * never match). Patterns with '*' elsewhere, empty labels, or bytes outside LDH never match;
 * A-labels ("xn--...") are compared like any label and a wildcard never matches one
 * (RFC 6125 6.4.3). An IP-literal host never matches a wildcard. */
int fkd_wss_host_match(const char *pattern, size_t pattern_len, const char *host);

/* The names a certificate presents, as the matcher needs them. */
struct fkd_wss_names {
    const char *dns[16]; /* DNS SAN values (not NUL-terminated), dns_len[i] bytes each */
    size_t dns_len[16];
    size_t n_dns;
    int has_san; /* the certificate has a subjectAltName extension (of any name type) */
    const char *cn; /* subject CN, or NULL */
    size_t cn_len;
};
/* 1 when host matches: any DNS SAN when has_san, else the CN (RFC 6125 6.4.4). */
int fkd_wss_names_match(const struct fkd_wss_names *n, const char *host);

/* ---- HTTP upgrade ----------------------------------------------------------------------- */

#define FKD_WSS_KEY_LEN 24u    /* base64 of 16 random bytes */
#define FKD_WSS_ACCEPT_LEN 28u /* base64 of a SHA-1 */

/* Sec-WebSocket-Accept for key (RFC 6455 4.2.2: base64(SHA-1(key ++ GUID))); out gets 28
 * characters and a NUL. FKD_OK, FKD_E_ARG, FKD_E_CRYPTO. */
FKD_MUST_CHECK enum fkd_err fkd_wss_accept(const char *key, size_t key_len,
                                           char out[FKD_WSS_ACCEPT_LEN + 1]);

/* Checks the server's handshake response (the bytes up to and including the blank line):
 * status 101, `Upgrade: websocket`, `Connection` containing `upgrade`, the expected
 * Sec-WebSocket-Accept and `Sec-WebSocket-Protocol: fleetkey.v1`. FKD_OK; FKD_E_AUTH with
 * *status = the HTTP status when it is not 101 (403: not admitted); FKD_E_PROTOCOL with *why
 * naming the header that is wrong; FKD_E_PARSE on malformed HTTP. Never allocates. */
FKD_MUST_CHECK enum fkd_err fkd_wss_check_response(const uint8_t *buf, size_t len,
                                                   const char *accept, int *status,
                                                   const char **why);

/* ---- frames (RFC 6455 5; wslay's frame API underneath) --------------------------------------
 * struct fkd_ws is one direction-aware framing endpoint. A client sends masked frames and
 * accepts only unmasked ones; the server role (tests, fuzzing) is the mirror image. Incoming
 * data messages are reassembled into the caller's buffer; anything the protocol forbids ends
 * in FKD_WS_FAIL with the close code to send. */
typedef int fkd_ws_io_fn(void *user, uint8_t *buf, size_t len); /* >0 bytes, 0 would block, <0 end */
typedef int fkd_ws_out_fn(void *user, const uint8_t *buf, size_t len); /* 0 all written, <0 error */
typedef int fkd_ws_mask_fn(void *user, uint8_t *key, size_t len);    /* 0 ok */

enum fkd_ws_role { FKD_WS_CLIENT = 0, FKD_WS_SERVER = 1 };

enum fkd_ws_event {
    FKD_WS_AGAIN = 0, /* need more input */
    FKD_WS_TEXT,      /* a complete text message: msg, msg_len */
    FKD_WS_BINARY,    /* a complete binary message (the protocol closes with 1003) */
    FKD_WS_PING,      /* ctl, ctl_len: answer with a pong carrying the same bytes */
    FKD_WS_PONG,
    FKD_WS_CLOSE,     /* peer's close: close_code (1005 when it sent none) */
    FKD_WS_FAIL,      /* protocol violation: send close close_code, reason why */
    FKD_WS_EOF,       /* the input ended (io returned < 0) */
};

enum {
    FKD_WS_OP_CONT = 0x0,
    FKD_WS_OP_TEXT = 0x1,
    FKD_WS_OP_BINARY = 0x2,
    FKD_WS_OP_CLOSE = 0x8,
    FKD_WS_OP_PING = 0x9,
    FKD_WS_OP_PONG = 0xA,
};

struct fkd_ws {
    void *frame;  /* wslay_frame_context_ptr */
    enum fkd_ws_role role;
    fkd_ws_io_fn *in;
    fkd_ws_out_fn *out;
    fkd_ws_mask_fn *mask;
    void *user;
    int io_end;        /* in() reported the end of the input */
    int out_err;       /* out() failed */
    int got_input;     /* in() delivered bytes during the current wslay call */
    /* reassembly */
    uint8_t *msg;      /* caller's buffer, msg_cap bytes */
    size_t msg_cap;
    size_t msg_len;
    uint8_t msg_op;    /* opcode of the message being reassembled; 0: none */
    int frame_open;    /* inside a frame's payload */
    uint8_t frame_op;
    int frame_fin;
    uint64_t frame_len;
    uint64_t frame_off;
    uint8_t ctl[125];
    size_t ctl_len;
    /* results */
    uint16_t close_code;
    const char *why;
};

/* Empties ws (no frame context). Cannot fail. */
void fkd_ws_init(struct fkd_ws *ws);
/* Creates the wslay frame context (the one allocation) and binds the callbacks and the
 * message buffer (msg_cap: the largest message accepted; borrowed until fkd_ws_free).
 * FKD_OK, FKD_E_ARG, FKD_E_NOSPACE (no memory). */
FKD_MUST_CHECK enum fkd_err fkd_ws_setup(struct fkd_ws *ws, enum fkd_ws_role role, fkd_ws_io_fn *in,
                                         fkd_ws_out_fn *out, fkd_ws_mask_fn *mask, void *user,
                                         uint8_t *msg, size_t msg_cap);
/* Forgets any partial frame or message (a new connection): wslay has no reset, so its frame
 * context is freed and made again (one allocation per connection, none per message).
 * FKD_OK, FKD_E_ARG (not set up), FKD_E_NOSPACE. */
FKD_MUST_CHECK enum fkd_err fkd_ws_reset(struct fkd_ws *ws);
/* Frees the frame context. Safe after init; idempotent. */
void fkd_ws_free(struct fkd_ws *ws);
/* Reads until one event (see enum). FKD_WS_TEXT/BINARY: ws->msg holds ws->msg_len bytes until
 * the next call. FKD_WS_FAIL: ws->close_code and ws->why say what to send. */
enum fkd_ws_event fkd_ws_read(struct fkd_ws *ws);
/* Sends one complete frame (fin set; masked in the client role). Control frames carry at most
 * 125 bytes. FKD_OK, FKD_E_ARG, FKD_E_IO (out failed). */
FKD_MUST_CHECK enum fkd_err fkd_ws_send(struct fkd_ws *ws, uint8_t opcode, const uint8_t *data,
                                        size_t len);
/* Sends a close frame: code (network order) and reason (at most 123 bytes). */
FKD_MUST_CHECK enum fkd_err fkd_ws_send_close(struct fkd_ws *ws, uint16_t code, const char *reason);

/* 1 when buf is valid UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). */
int fkd_utf8_valid(const uint8_t *buf, size_t len);

/* ---- messages (the JSON of wss-protocol.md, device side) ------------------------------------ */

enum fkd_wss_msg_type {
    FKD_WSS_MSG_UNKNOWN = 0, /* a type this version does not know: logged, ignored */
    FKD_WSS_MSG_WELCOME,
    FKD_WSS_MSG_PING,
    FKD_WSS_MSG_PONG,
    FKD_WSS_MSG_REQUEST,
    FKD_WSS_MSG_ERROR,
    FKD_WSS_MSG_RESPONSE,
    FKD_WSS_MSG_HELLO,
};

#define FKD_WSS_STR_MAX 129u /* protocol strings: at most 128 bytes + NUL */

struct fkd_wss_msg {
    enum fkd_wss_msg_type type;
    char type_str[FKD_WSS_STR_MAX];
    /* welcome */
    uint32_t ping_interval_s; /* 0: absent */
    uint32_t max_message;     /* 0: absent */
    /* ping / pong */
    int has_id_num;
    uint32_t id_num;
    /* request */
    char id[FKD_WSS_STR_MAX]; /* 1..36 bytes */
    char kind[FKD_WSS_STR_MAX];
    /* error */
    char code[FKD_WSS_STR_MAX];
    char message[FKD_WSS_STR_MAX];
    /* request: the "body" object as a slice of the parsed bytes (has_body 0: absent) */
    int has_body;
    size_t body_off;
    size_t body_len;
};

/* Parses one message (a UTF-8 JSON object with a string "type"; nesting at most 16 deep; the
 * members this device reads are type-checked, others are skipped). FKD_OK; FKD_E_PARSE (not
 * JSON, not an object, no string "type", trailing bytes) or FKD_E_TYPE (a listed member of the
 * wrong JSON type, or out of range), both to be answered with close 1007; *why says what.
 * Never allocates; the strings in out are unescaped copies (cut messages are refused). */
FKD_MUST_CHECK enum fkd_err fkd_wss_msg_parse(const uint8_t *buf, size_t len, struct fkd_wss_msg *out,
                                              const char **why);

/* Appends s to out[*pos..size) as a JSON string (quoted, escaped). 0, or -1 when it did not
 * fit (*pos then unchanged). */
int fkd_wss_json_put_str(char *out, size_t size, size_t *pos, const char *s, size_t len);

/* ---- reading a request body ------------------------------------------------------------------
 * A request's "body" is handed to a handler as the slice fkd_wss_msg_parse validated (body_off,
 * body_len). These read its top-level members in place: no copy, no allocation, each length
 * checked against what remains. They expect a slice that is one valid JSON object (what the
 * message parser accepted); anything else is FKD_E_PARSE. */

enum fkd_wss_jtype {
    FKD_WSS_J_NONE = 0,
    FKD_WSS_J_STR,
    FKD_WSS_J_NUM,
    FKD_WSS_J_OBJ,
    FKD_WSS_J_ARR,
    FKD_WSS_J_TRUE,
    FKD_WSS_J_FALSE,
    FKD_WSS_J_NULL,
};

/* One member's value, borrowed from the object's bytes: a string's raw contents between the
 * quotes (escapes still in), a number's text, a container's text with its brackets. */
struct fkd_wss_jval {
    enum fkd_wss_jtype type;
    const uint8_t *p;
    size_t len;
};

/* Finds the top-level member name of the JSON object (obj, len). Member names are compared
 * raw (a name written with escapes never matches). FKD_OK; FKD_E_NOTFOUND (no such member);
 * FKD_E_PARSE (not one JSON object, or the member appears twice). */
FKD_MUST_CHECK enum fkd_err fkd_wss_json_get(const uint8_t *obj, size_t len, const char *name,
                                             struct fkd_wss_jval *out);
/* A JSON integer 0..max (no sign, fraction or exponent). FKD_OK or FKD_E_TYPE. */
FKD_MUST_CHECK enum fkd_err fkd_wss_jval_uint(const struct fkd_wss_jval *v, uint32_t max,
                                              uint32_t *out);
/* A string, unescaped into out (NUL-terminated). FKD_OK; FKD_E_TYPE (not a string);
 * FKD_E_RANGE (does not fit out_size, or holds a NUL / lone surrogate escape). */
FKD_MUST_CHECK enum fkd_err fkd_wss_jval_str(const struct fkd_wss_jval *v, char *out,
                                             size_t out_size);

/* A bounded snprintf-style appender for a handler's reply body (reply->body, body_cap): once
 * something does not fit it stays overflowed (over), and n never passes cap. */
struct fkd_wss_out {
    char *b;
    size_t cap;
    size_t n;
    int over;
};
void fkd_wss_out_put(struct fkd_wss_out *o, const char *fmt, ...) FKD_PRINTF(2, 3);

/* ---- the client ------------------------------------------------------------------------- */

enum fkd_wss_state {
    FKD_WSS_IDLE = 0,
    FKD_WSS_CONNECTING,
    FKD_WSS_OPEN,     /* upgraded, hello sent */
    FKD_WSS_WELCOMED, /* the server answered hello */
    FKD_WSS_BACKOFF,
    FKD_WSS_STOPPED,
};

/* Why a connection attempt or a connection ended (stats.last_error, logged in words). */
enum fkd_wss_reason {
    FKD_WSS_R_NONE = 0,
    FKD_WSS_R_CONFIG,       /* no or bad URI, no credentials, production rule */
    FKD_WSS_R_CONNECT,      /* TCP: refused, unreachable, unresolvable, timed out */
    FKD_WSS_R_TLS,          /* handshake failed (alert, protocol, timeout) */
    FKD_WSS_R_BAD_CHAIN,    /* server certificate not from our CA */
    FKD_WSS_R_EXPIRED,      /* server certificate expired */
    FKD_WSS_R_NOT_YET,      /* server certificate not yet valid */
    FKD_WSS_R_HOST,         /* expected host not in the certificate */
    FKD_WSS_R_UPGRADE,      /* the HTTP upgrade was refused or malformed */
    FKD_WSS_R_CLOSED,       /* the server closed */
    FKD_WSS_R_PROTOCOL,     /* we closed: bad frame or message */
    FKD_WSS_R_TIMEOUT,      /* no pong / no traffic in time */
    FKD_WSS_R_IO,           /* socket or TLS error on an open connection */
    FKD_WSS_R_STOPPED,      /* fkd_wss_run was asked to stop */
    FKD_WSS_R_REBOOT,       /* a handler asked for a reboot: closed with 1000 "rebooting" */
    FKD_WSS_R_TRIAL,        /* closed with 1000 "credential trial": reconnecting at once */
    FKD_WSS_R_COUNT
};
const char *fkd_wss_reason_name(enum fkd_wss_reason r); /* never NULL */

typedef int fkd_wss_stop_fn(void *user); /* non-zero: stop as soon as possible */

/* ---- the handler: what an application adds to the channel -------------------------------------
 * Optional. All three callbacks run on the client's thread, one at a time, between messages;
 * none may block for long (the connection is not served meanwhile). */

#define FKD_WSS_ERR_CODE_MAX 33u /* error codes: at most 32 bytes + NUL */

/* What a request handler answers. The client points body at the part of its outgoing buffer
 * that follows `"body":` (body_cap bytes, about 3.9 KiB); the handler writes one JSON object
 * there and sets body_len, or sets code (and optionally message) for ok:false. */
struct fkd_wss_reply {
    char *body;
    size_t body_cap;
    size_t body_len;
    char code[FKD_WSS_ERR_CODE_MAX];  /* "" : ok */
    char message[FKD_WSS_STR_MAX];    /* for people; may be "" */
    int reboot; /* set with an ok answer: after sending it, close 1000 "rebooting" and return
                 * FKD_WSS_R_REBOOT from fkd_wss_run */
    int reconnect; /* set with an ok answer: after sending it, close 1000 "credential trial"
                    * and connect again at once (the credentials callback says with what) */
};

enum fkd_wss_req_result {
    FKD_WSS_REQ_DONE = 0, /* *reply is filled in (ok or error) */
    FKD_WSS_REQ_UNKNOWN,  /* not a kind of this handler: answered unsupported_kind */
};

/* What every request handler does first: an empty ok reply (code, message, body, flags
 * cleared) and an absent body read as "{}" (*body, *body_len updated). */
void fkd_wss_reply_begin(struct fkd_wss_reply *reply, const uint8_t **body, size_t *body_len);
/* A refusal: code and message (printf-style) into reply, no body, no reboot or reconnect, and
 * the error log line "<who>: REFUSED: <kind>: <message> (<code>)". */
void fkd_wss_reply_fail(struct fkd_wss_reply *reply, const char *who, const char *kind,
                        const char *code, const char *fmt, ...) FKD_PRINTF(5, 6);

/* Writes the JSON value of the "ota" member of hello and of the status body (one object) into
 * out[0..size). Returns its length, or 0 when there is nothing to add (member left out) or it
 * did not fit (logged by the client). */
typedef size_t fkd_wss_state_fn(void *user, char *out, size_t size);
/* Answers a request of kind (NUL-terminated, at most 128 bytes) whose body is (body, body_len)
 * (a JSON object validated by the message parser; NULL/0 when the request had none).
 * body is borrowed for the call only. */
typedef enum fkd_wss_req_result fkd_wss_request_fn(void *user, const char *kind,
                                                   const uint8_t *body, size_t body_len,
                                                   struct fkd_wss_reply *reply);
/* The server answered hello with welcome (each connection). Runs before any later message of
 * that connection is handled. */
typedef void fkd_wss_welcome_fn(void *user);

/* The client certificate and key to present on the next connection (credential rotation,
 * fkd/rot_remote.h). The client hands two buffers it does not use between connections; the
 * callback fills them (PEM with its NUL counted, or DER) and sets cert, or leaves cert NULL:
 * present the store's credentials, as loaded at setup. tag names the credential: the client
 * parses again only when it differs from the last one it loaded. */
struct fkd_wss_creds {
    uint8_t *cert_buf; /* FKD_WSS_MSG_MAX bytes each, handed in by the client */
    uint8_t *key_buf;
    const uint8_t *cert; /* NULL: the store's */
    size_t cert_len;
    const uint8_t *key;
    size_t key_len;
    uint32_t tag;
    /* The trust anchors to verify the server with (class ca, fkd/rot.h): DER certificates back
     * to back or PEM (NUL after len), in the callback's own memory, valid until the next
     * callback; NULL: the store's. ca_tag names them like tag. */
    const uint8_t *ca;
    size_t ca_len;
    uint32_t ca_tag;
};
/* Called before each connection attempt. The key buffer is wiped after parsing. */
typedef void fkd_wss_credentials_fn(void *user, struct fkd_wss_creds *c);
/* Called on the client's timer (every few hundred ms while connected). Non-zero: close 1000
 * "credential trial" and connect again (the credentials in use are no longer the ones to use). */
typedef int fkd_wss_tick_fn(void *user);

struct fkd_wss_handler {
    fkd_wss_state_fn *state_json;        /* may be NULL */
    fkd_wss_request_fn *request;         /* may be NULL: every kind but status is unsupported */
    fkd_wss_welcome_fn *welcomed;        /* may be NULL */
    fkd_wss_credentials_fn *credentials; /* may be NULL: always the store's */
    fkd_wss_tick_fn *tick;               /* may be NULL */
};

struct fkd_wss_config {
    const struct fkd_store *store;     /* credentials; borrowed while the client lives */
    const struct fkd_config *cfg;      /* URI, expected host, build type */
    const struct fkd_posture *posture; /* for hello and status; may be NULL */
    const char *fw_version;            /* "1.4.2"; 1..64 bytes */
    const char *uri;                   /* overrides cfg->wss_uri when non-NULL (robot-sim) */
    const char *expected_host;         /* overrides cfg->expected_host when non-NULL */
    uint32_t connect_timeout_ms;       /* TCP + TLS + upgrade; 0: 10000 */
    uint32_t backoff_min_ms;           /* first retry delay; 0: 1000 */
    uint32_t backoff_max_ms;           /* cap; 0: 60000 */
    uint32_t ping_interval_ms;         /* until welcome says otherwise; 0: 30000 */
    unsigned max_attempts;             /* fkd_wss_run gives up after this many; 0: never */
    fkd_wss_stop_fn *stop;             /* polled at least every 200 ms; may be NULL */
    void *user;
    const struct fkd_wss_handler *handler; /* may be NULL; borrowed while the client lives */
    void *handler_user;
    /* Credential rotation state for the "rot" member of hello and status (fkd/rot_remote.h,
     * fkd_rot_state_json); NULL: no rotation support, the member is left out. Read on the
     * client's thread only while a message is written. */
    const struct fkd_rot *rot;
};

struct fkd_wss_stats {
    unsigned attempts;
    unsigned connects;    /* upgrades that succeeded */
    unsigned welcomes;
    unsigned pings_sent;
    unsigned pongs_received;
    unsigned requests;
    enum fkd_wss_reason last_error;
    uint32_t last_backoff_ms;
};

/* Fields are private; they are here so the struct can live in caller memory. */
struct fkd_wss {
    struct fkd_wss_config cfg;
    struct fkd_wss_uri uri;
    char expected_host[FKD_CFG_HOST_MAX];
    char device_id[FKD_WSS_ID_MAX];
    enum fkd_wss_state state;
    struct fkd_net_sock sock;
    struct fkd_ws ws;
    uint8_t msg[FKD_WSS_MSG_MAX];    /* incoming message (reassembled) */
    char tx[FKD_WSS_MSG_MAX];        /* outgoing message */
    uint8_t http[FKD_WSS_HTTP_MAX];  /* upgrade request / response */
    size_t pre_len;                  /* bytes after the 101 headers, read before framing */
    size_t pre_off;
    uint32_t ping_interval_ms;
    uint64_t last_rx_ms;
    uint64_t last_ping_ms;
    uint32_t ping_id;
    unsigned backoff_step;
    int host_mismatch;               /* set by the verify callback */
    int io_ret;                      /* why mbedtls_ssl_read ended the input (0: EOF) */
    unsigned pongs_this_conn;
    int setup_done;
    int ssl_ready;                   /* mbedtls_ssl_setup done (record buffers held) */
    struct fkd_wss_stats stats;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt own;
    mbedtls_pk_context key;
    uint32_t cred_tag; /* tag of the credentials own/key hold; FKD_WSS_TAG_STORE: the store's */
    uint32_t ca_tag;   /* tag of the anchors ca holds; FKD_WSS_TAG_STORE: the store's */
};
#define FKD_WSS_TAG_STORE 0xffffffffu

/* Empties w. Cannot fail. */
void fkd_wss_init(struct fkd_wss *w);
/* Checks the configuration and loads the credentials: the URI parses, the expected host is
 * set (else the URI's host, logged), the client certificate and key parse and match, the CA
 * parses; in a production build the certificate and key must come from NVS (rule
 * mtls-nvs-only). *cfg is copied; the pointers in it are borrowed until fkd_wss_free.
 * FKD_OK; FKD_E_ARG (bad URI or settings), FKD_E_NOTFOUND (a credential is missing),
 * FKD_E_POLICY (production rule), FKD_E_CRYPTO (a credential does not parse), FKD_E_NOSPACE.
 * Each failure is one ERROR log line naming the reason. */
FKD_MUST_CHECK enum fkd_err fkd_wss_setup(struct fkd_wss *w, const struct fkd_wss_config *cfg);
/* One connection: connect, verify, upgrade, hello, then serve until the connection ends or
 * stop() asks; returns why it ended (never FKD_WSS_R_NONE). */
enum fkd_wss_reason fkd_wss_connect_and_serve(struct fkd_wss *w);
/* Connections in a loop with backoff between them until stop(), max_attempts, or a handler's
 * reply asking for a reboot (FKD_WSS_R_REBOOT: the caller reboots the device). Returns the
 * reason the last connection ended. */
enum fkd_wss_reason fkd_wss_run(struct fkd_wss *w);
/* The delay before retry number step (0-based): min(max, min * 2^step), then "equal jitter":
 * half of it fixed, the other half uniformly random from rnd. Pure; exposed for tests. */
uint32_t fkd_wss_backoff_ms(uint32_t min_ms, uint32_t max_ms, unsigned step, uint32_t rnd);
void fkd_wss_get_stats(const struct fkd_wss *w, struct fkd_wss_stats *out);
const char *fkd_wss_state_name(enum fkd_wss_state s);
/* Closes any connection, frees wslay's context and every mbedTLS structure (the parsed key is
 * wiped by mbedTLS). Safe after init; idempotent. */
void fkd_wss_free(struct fkd_wss *w);

#ifdef __cplusplus
}
#endif
#endif
