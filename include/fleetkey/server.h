/* fleetkey server: the control plane inside fleetkey-server. One libwebsockets context
 * serving, on one TLS port, the fleetkey.v1 WebSocket protocol (docs/wss-protocol.md) at /ws
 * and plain HTTPS (/healthz, /metrics, /api/devices[/ID]); every peer must present a client
 * certificate chaining to the fleet CA, checked against the CRL at each handshake. TLS 1.2
 * and 1.3 only. docs/server.md is the operator's guide.
 *
 * Thread safety: a struct fk_server is used from one thread (the one calling
 * fk_server_run); fk_server_stop and fk_server_reload_crl only set flags and may be called
 * from a signal handler. The message parser (fk_wss_msg_parse) is pure and thread-safe. */
#ifndef FLEETKEY_SERVER_H
#define FLEETKEY_SERVER_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FK_WSS_SUBPROTOCOL "fleetkey.v1"
#define FK_WSS_PATH "/ws"
#define FK_WSS_MAX_MESSAGE 4096u /* bytes per message after reassembly, both directions */

/* WebSocket close codes the server sends (RFC 6455 7.4.1). */
#define FK_WSS_CLOSE_NORMAL 1000
#define FK_WSS_CLOSE_GOING_AWAY 1001
#define FK_WSS_CLOSE_UNSUPPORTED 1003
#define FK_WSS_CLOSE_INVALID 1007
#define FK_WSS_CLOSE_POLICY 1008
#define FK_WSS_CLOSE_TOO_BIG 1009
#define FK_WSS_CLOSE_INTERNAL 1011

/* ---- configuration ---------------------------------------------------------------------- */
struct fk_server_config {
    char listen[64];      /* address to bind, "0.0.0.0" (default), "127.0.0.1", "::" */
    unsigned port;        /* 1..65535; 0 = any free port (tests read fk_server_port) */
    char cert[1024];      /* server certificate chain PEM (leaf + issuing CA) */
    char key[1024];       /* its private key PEM */
    char ca[1024];        /* trust anchors for client certificates (ca-chain.pem) */
    char crl[1024];       /* CRL file (PEM, one or more CRLs); "" = no CRL (refused unless
                             allow_no_crl: without a CRL revocation cannot work) */
    char inventory[1024]; /* inventory database (SQLite) */
    unsigned max_connections; /* simultaneous TLS connections; default 1024 */
    unsigned hello_timeout;   /* seconds for the first message; default 10 */
    unsigned ping_interval;   /* seconds, announced in welcome; idle close at 3x; default 30 */
    enum fk_log_level log_level; /* default FK_LOG_INFO */
    int allow_no_crl;         /* development only */
    int status_request;       /* send a `status` request after each welcome (default 0) */
};

/* Fills the defaults above (no paths). Cannot fail. */
void fk_server_config_init(struct fk_server_config *cfg);

/* Applies one setting by name ("listen", "port", "cert", "key", "ca", "crl", "inventory",
 * "max_connections", "hello_timeout", "ping_interval", "log_level", "allow_no_crl",
 * "status_request"); the
 * command line uses the same names as --flags. FK_OK, FK_E_ARG (unknown name, bad value;
 * diag says which), FK_E_TOOBIG (path too long). */
FK_MUST_CHECK enum fk_err fk_server_config_set(struct fk_server_config *cfg, const char *name,
                                               const char *value, struct fk_diag *diag);

/* Reads a "key = value" file (one setting a line; '#' starts a comment line; blank lines
 * ignored; at most 64 KiB) and applies each line with fk_server_config_set. diag names the
 * file and line on failure. FK_OK, FK_E_IO, FK_E_TOOBIG, FK_E_PARSE, FK_E_ARG. */
FK_MUST_CHECK enum fk_err fk_server_config_load(struct fk_server_config *cfg, const char *path,
                                                struct fk_diag *diag);

/* ---- the server ------------------------------------------------------------------------- */
struct fk_server; /* opaque */

/* Opens the inventory, loads the certificates and the CRL, binds the port. Borrows cfg for
 * the call (copies it). *out is freed with fk_server_free. FK_OK, FK_E_ARG (missing setting),
 * FK_E_IO (a file cannot be read, the port cannot be bound), FK_E_CRYPTO (certificate, key or
 * CRL unusable), FK_E_DB, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_server_new(const struct fk_server_config *cfg,
                                        struct fk_server **out, struct fk_diag *diag);
/* The port actually bound (useful with port 0). */
unsigned fk_server_port(const struct fk_server *srv);
/* Serves until fk_server_stop; checks the CRL file once a second and reloads it when it
 * changed (or after fk_server_reload_crl) without dropping connections. FK_OK after a stop,
 * FK_E_INTERNAL when the event loop fails. */
FK_MUST_CHECK enum fk_err fk_server_run(struct fk_server *srv);
/* Async-signal-safe: ask fk_server_run to return (open WebSockets get close 1001). */
void fk_server_stop(struct fk_server *srv);
/* Async-signal-safe: ask for a CRL reload at the next loop turn (SIGHUP). */
void fk_server_reload_crl(struct fk_server *srv);
/* Closes every connection and frees. NULL is a no-op. */
void fk_server_free(struct fk_server *srv);

/* ---- the message parser (docs/wss-protocol.md) ------------------------------------------ */
enum fk_wss_type {
    FK_WSS_HELLO,
    FK_WSS_PING,
    FK_WSS_PONG,
    FK_WSS_RESPONSE,
    FK_WSS_OTHER, /* well-formed, type unknown to v1: answered with an error message */
};

#define FK_WSS_ID_MAX 64       /* device_id (as in the inventory) */
#define FK_WSS_STR_MAX 128     /* other strings unless stated */
#define FK_WSS_FW_MAX 64       /* firmware_version */
#define FK_WSS_REQID_MAX 36    /* request/response id */

/* A parsed message. Strings are copies, NUL-terminated. For hello, credential_versions and
 * posture are re-serialised compact JSON (what the inventory stores). */
struct fk_wss_msg {
    enum fk_wss_type type;
    char type_name[FK_WSS_STR_MAX + 1];
    char device_id[FK_WSS_ID_MAX + 1];
    char firmware_version[FK_WSS_FW_MAX + 1];
    char credential_versions[FK_WSS_MAX_MESSAGE];
    char posture[FK_WSS_MAX_MESSAGE];
    char posture_build[16];
    int has_id;    /* ping/pong: an id was present */
    long long id;  /* ping/pong id */
    char req_id[FK_WSS_REQID_MAX + 1]; /* response */
    int ok;        /* response */
};

/* Parses one message (buf, len), at most FK_WSS_MAX_MESSAGE bytes, valid UTF-8, one JSON
 * object with a string "type", members typed as the protocol says. Borrows buf for the call;
 * allocates only inside the call (cJSON) and frees it. On failure *close_code is the close
 * code to send (1009 too big, 1007 invalid) and diag says why (for the log). FK_OK,
 * FK_E_TOOBIG, FK_E_PARSE. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_wss_msg_parse(const uint8_t *buf, size_t len, struct fk_wss_msg *out,
                                           int *close_code, struct fk_diag *diag);

/* 1 when (buf, len) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
int fk_wss_utf8_valid(const uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
