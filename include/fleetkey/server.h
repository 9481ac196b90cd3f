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
    char inventory[1024]; /* inventory: SQLite file or postgresql:// URI (fk_inventory_open) */
    unsigned max_connections; /* simultaneous TLS connections; default 1024 */
    unsigned hello_timeout;   /* seconds for the first message; default 10 */
    unsigned handshake_timeout; /* seconds for a TLS handshake and an HTTP request; default 10
                                   (a simulated fleet of thousands on two cores needs more) */
    unsigned ping_interval;   /* seconds, announced in welcome; idle close at 3x; default 30 */
    enum fk_log_level log_level; /* default FK_LOG_INFO */
    int allow_no_crl;         /* development only */
    int status_request;       /* send a `status` request after each welcome (default 0) */
    char ota_dir[1024];       /* spool directory of update images; "" = "ota" next to the
                                 inventory file. Created 0700 */
    unsigned long long ota_max_image; /* largest image POST /api/ota accepts (default 16 MiB) */
    char rot_dir[1024];       /* credential rotation plans (rot-NNNNNN.json, 0600: they hold
                                 staged PSKs); "" = ota_dir. Created 0700 */
    char ca_dir[1024];        /* the fleet CA (provision-keys ca init) whose issuing key signs
                                 the CSRs of an mtls rotation and whose CRL revokes the old
                                 certificates (written to crl); "" = mtls rotations refused */
    char ca_bundle[1024];     /* PEM file: the trust anchors the devices should hold next (e.g.
                                 the old root plus a new one), delivered by a ca rotation;
                                 "" = ca rotations refused */
    char ota_trial_image[1024]; /* a signed image with a block by the new OTA key (e.g. the
                                   dual-signed release of `rotate ota-key sign-release`): an ota
                                   rotation's trial, the robot verifies that block with the
                                   staged key; "" = ota rotations fail their deliveries */
    char oauth_key[1024];     /* the ES256 key signing access tokens (P-256 PEM, 0600, created
                                 when absent); "" = "oauth-key.pem" next to the inventory. The
                                 token state (oauth-state.json) lives in the same directory */
    unsigned long token_lifetime;   /* access token lifetime, seconds (default 86400) */
    unsigned long refresh_lifetime; /* refresh token lifetime, seconds (default 2592000) */
};

/* Fills the defaults above (no paths). Cannot fail. */
void fk_server_config_init(struct fk_server_config *cfg);

/* Applies one setting by name ("listen", "port", "cert", "key", "ca", "crl", "inventory",
 * "max_connections", "hello_timeout", "handshake_timeout", "ping_interval", "log_level",
 * "allow_no_crl", "status_request", "ota_dir", "ota_max_image", "rot_dir", "ca_dir", "ca_bundle",
 * "ota_trial_image", "oauth_key", "token_lifetime", "refresh_lifetime");
 * the command line uses the same names as --flags. FK_OK, FK_E_ARG (unknown name, bad value; diag
 * says which), FK_E_TOOBIG (path too long). */
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

#define FK_WSS_OTA_KEYS_MAX 8  /* entries of ota.keys / a response body's keys */
#define FK_WSS_FPR_MAX 79      /* "sbv2:<64 hex>" and longer forms, without NUL */

/* One trusted OTA key as a device reports it: NVS key name -> fingerprint. */
struct fk_wss_ota_key {
    char name[33];                 /* "ota_pubkey", "ota_pubkey2" */
    char fpr[FK_WSS_FPR_MAX + 1];  /* "sbv2:<64 hex>", lower-cased */
};

/* The "ota" object of hello and of a status response (docs/wss-protocol.md, "OTA state in
 * hello and in the status body"). Every member is optional; present says the object was. */
struct fk_wss_ota {
    int present;
    char slot[16];
    char state[16];          /* new, pending_verify, valid, invalid, aborted, undefined */
    char version[33];
    long long secure_version; /* -1 when absent */
    char app_sha256[65];     /* 64 lowercase hex, "" when absent */
    int updates;             /* -1 absent, 0, 1 */
    size_t nkeys;
    struct fk_wss_ota_key keys[FK_WSS_OTA_KEYS_MAX];
};

/* One class of the "rot" object of hello and of a status or rot_* response body
 * (docs/wss-protocol.md, "Credential rotation"). present says the class was reported. */
struct fk_wss_rot_class {
    int present;
    char state[16];           /* idle, staged, trial, committed, rolled_back */
    long long version;        /* active credential's version (0: as minted) */
    long long staged_version; /* 0: none */
    long long attempts;
    char reason[16];          /* none, attempts, timeout, server, invalid */
};
enum fk_wss_rot_cls {
    FK_WSS_ROT_CA,
    FK_WSS_ROT_MTLS,
    FK_WSS_ROT_PSK,
    FK_WSS_ROT_OTA,
    FK_WSS_ROT_CLASSES
};
struct fk_wss_rot {
    int present;
    struct fk_wss_rot_class c[FK_WSS_ROT_CLASSES]; /* indexed like enum fk_plan_class */
    struct fk_wss_rot_class single; /* a rot_* answer's "rot" when it is one class's state */
};
#define FK_WSS_CSR_MAX 2048 /* PEM PKCS#10 of a P-256 key, with room */

/* A parsed message. Strings are copies, NUL-terminated. For hello, credential_versions,
 * posture and ota are re-serialised compact JSON (what the inventory stores). */
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
    /* hello's "ota", or a response body's "ota" (status); ota_json its compact text ("" when
     * absent). */
    struct fk_wss_ota ota;
    char ota_json[FK_WSS_MAX_MESSAGE];
    /* response: error.code / error.message ("" when absent; message cut to fit) */
    char err_code[FK_WSS_STR_MAX + 1];
    char err_msg[FK_WSS_STR_MAX + 1];
    /* response body members of the OTA kinds; -1 / "" when absent */
    long long chunk;          /* ota_begin: 1..65536 */
    long long received;       /* ota_chunk: 0..2^53 */
    long long secure_version; /* ota_finish */
    char slot[16];            /* ota_begin, ota_finish */
    char version[33];         /* ota_finish */
    char key[FK_WSS_FPR_MAX + 1]; /* ota_finish: the key that verified */
    int has_keys;             /* ota_key: body.keys was present */
    size_t nkeys;
    struct fk_wss_ota_key keys[FK_WSS_OTA_KEYS_MAX];
    /* hello's or a response body's "rot"; hello's posture.dtls_port (0 when absent) */
    struct fk_wss_rot rot;
    long long dtls_port;
    char csr[FK_WSS_CSR_MAX + 1]; /* rot_csr answer: body.csr ("" when absent) */
};

/* Parses one message (buf, len), at most FK_WSS_MAX_MESSAGE bytes, valid UTF-8, one JSON
 * object with a string "type", members typed as the protocol says. Borrows buf for the call;
 * allocates only inside the call (cJSON) and frees it. On failure *close_code is the close
 * code to send (1009 too big, 1007 invalid) and diag says why (for the log). FK_OK,
 * FK_E_TOOBIG, FK_E_PARSE. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_wss_msg_parse(const uint8_t *buf, size_t len, struct fk_wss_msg *out,
                                           int *close_code, struct fk_diag *diag);

/* ---- OTA delivery: the pure parts (src/server/ota.c) ----------------------------------- */
/* What the server decides for OTA updates and OTA-key rotation, as functions of plain data so
 * that they are tested without sockets (tests/unit/test_server_ota.c). */

#define FK_OTA_CHUNK 2048u      /* decoded bytes per ota_chunk (docs/wss-protocol.md) */
#define FK_OTA_MAX_ATTEMPTS 3u  /* ota_begin attempts before a device's transfer is failed */
#define FK_OTA_SIGNERS_MAX 3u   /* signature blocks in a sector */
#define FK_OTA_TRUST_MAX 16u

/* A set of key fingerprints ("sbv2:<hex>", compared case-insensitively). */
struct fk_ota_fprs {
    size_t n;
    char fpr[FK_OTA_TRUST_MAX][FK_WSS_FPR_MAX + 1];
};
/* Adds fpr unless present or the set is full (then ignored). Cannot fail. */
void fk_ota_fprs_add(struct fk_ota_fprs *set, const char *fpr);
int fk_ota_fprs_has(const struct fk_ota_fprs *set, const char *fpr);
/* The interlock: 1 when the device trusting `trusted` trusts at least one of `signers`. */
int fk_ota_trusts_any(const struct fk_ota_fprs *trusted, const struct fk_ota_fprs *signers);

/* What the server checked of an uploaded image. */
struct fk_ota_image_info {
    uint64_t size;              /* bytes of the signed file (a multiple of 4096, >= 8192) */
    char sha256[65];            /* SHA-256 of the whole file, hex (ota_begin's "sha256") */
    char app_sha256[65];        /* the app image's appended SHA-256, hex: what a device
                                   running it reports as ota.app_sha256 */
    char version[33];
    uint32_t secure_version;
    struct fk_ota_fprs signers; /* "sbv2:<hex>" of each block that verified with its own key */
    struct fk_ota_fprs signers_der; /* signers_der.fpr[i]: fk_fpr() of signer i's DER public
                                       key, the form provision-keys generate records for the
                                       device's ota_pubkey credential */
};

/* Checks a signed update image (buf, len): an ESP32 app image with an appended SHA-256, padded
 * to 4096, then a Secure Boot V2 signature sector whose every valid block verifies with the
 * key it carries (public keys only: this says who signed, not whom to trust). Borrows buf.
 * FK_OK; FK_E_PARSE / FK_E_TRUNCATED / FK_E_CRC (not such an image), FK_E_VERIFY (no block,
 * or a block that does not verify), FK_E_UNSUPPORTED (no appended SHA-256); diag says what.
 * Thread-safe. */
FK_MUST_CHECK enum fk_err fk_ota_image_check(const uint8_t *buf, size_t len,
                                             struct fk_ota_image_info *out,
                                             struct fk_diag *diag);

/* One device's part in an update job. */
enum fk_ota_tstate {
    FK_OTA_QUEUED,      /* waiting for the device (or for a new attempt) */
    FK_OTA_SENDING,     /* ota_begin accepted, chunks flowing */
    FK_OTA_INSTALLED,   /* ota_finish accepted: the device reboots into it */
    FK_OTA_CONFIRMED,   /* final: the device runs the image (same app_sha256), state valid */
    FK_OTA_REFUSED,     /* final: the device refused it (error holds its code) */
    FK_OTA_ROLLED_BACK, /* final: came back running another image, or it is invalid/aborted */
    FK_OTA_FAILED,      /* final: transfer errors in FK_OTA_MAX_ATTEMPTS attempts */
};
/* "queued", "sending", ...; never NULL. */
const char *fk_ota_tstate_name(enum fk_ota_tstate st);
/* The state named name. FK_OK, FK_E_PARSE. */
FK_MUST_CHECK enum fk_err fk_ota_tstate_parse(const char *name, enum fk_ota_tstate *out);

/* 1 when (s, n) is an identity name the fleet uses (device ids, operator names): 1..64 bytes of
 * [A-Za-z0-9._-], not starting with '.' or '-'. */
int fk_wss_id_valid(const char *s, size_t n);
int fk_ota_tstate_final(enum fk_ota_tstate st);

struct fk_ota_target {
    char device[FK_WSS_ID_MAX + 1];
    enum fk_ota_tstate state;
    uint64_t sent;      /* bytes the device acknowledged in this attempt */
    unsigned attempts;  /* ota_begin requests sent */
    unsigned chunk;     /* decoded bytes per ota_chunk in this attempt */
    char error[FK_WSS_STR_MAX + 1]; /* refused/failed/rolled_back: why */
};

#define FK_OTA_TIME_SIZE 21 /* RFC 3339 UTC "2026-11-25T17:00:00Z" + NUL */

/* A saved job as read back at start: fleetkey-server keeps each as ota_dir/j-NNNNNN.json,
 * the object that GET on /api/ota/JOB answers. */
struct fk_ota_job_record {
    char created_at[FK_OTA_TIME_SIZE];
    char operator_name[FK_WSS_ID_MAX + 1];
    char sha256[65]; /* of the signed file: the spool file is <sha256>.bin */
    size_t n;
    struct fk_ota_target *t;             /* n targets (sent, attempts, state, error) */
    char (*updated)[FK_OTA_TIME_SIZE];   /* n times of the last state change */
};

/* Parses a saved job (buf, len: JSON, at most 4 MiB). Every device entry must have a valid id
 * (fk_wss_id_valid), a known state and 0..1000 attempts; "sent" (non-negative) and "error"
 * (cut to fit) are optional; sha256 must be 64 lowercase hex digits; at least one device. A
 * transfer the file shows under way (sending) is returned as queued with sent 0: whoever reads
 * it back starts that transfer over. out is owned by the caller (fk_ota_job_record_free).
 * FK_OK; FK_E_PARSE (diag says what); FK_E_TOOBIG; FK_E_NOMEM. Thread-safe. */
FK_MUST_CHECK enum fk_err fk_ota_job_parse(const uint8_t *buf, size_t len,
                                           struct fk_ota_job_record *out, struct fk_diag *diag);
/* Frees what fk_ota_job_parse allocated; zeroes r. NULL-safe. */
void fk_ota_job_record_free(struct fk_ota_job_record *r);

/* Reads a saved credential rotation job the way fleetkey-server does at start (a rot_dir
 * file) and at each merge of a shared plan (a rot_plans row of a PostgreSQL inventory): the
 * plan (fk_plan_from_json) and the server's per-device part (versions, serials, fingerprints,
 * staged PSKs). Borrows buf (len bytes, not trusted, need not be NUL-terminated). *devices
 * (may be NULL) gets the plan's device count; *canonical (may be NULL) the job as the server
 * would write it back (malloc'd; it may hold staged PSKs: wipe and free it). Nothing else is
 * kept. FK_OK; FK_E_PARSE (diag says what); FK_E_TOOBIG (over 256 MiB); FK_E_NOMEM.
 * Thread-safe. */
FK_MUST_CHECK enum fk_err fk_rot_job_check(const uint8_t *buf, size_t len, size_t *devices,
                                           char **canonical, struct fk_diag *diag);

/* Applies a device's report (hello or status "ota") to its target of the job whose app image
 * hash is app_sha256. Returns 1 when the state changed. A report without "ota" changes
 * nothing; running the image in state valid confirms (also straight from queued: an
 * idempotent re-run); after installed, another image or state invalid/aborted is a roll-back;
 * a transfer interrupted by a reconnect goes back to queued. */
int fk_ota_target_report(struct fk_ota_target *t, const char *app_sha256,
                         const struct fk_wss_ota *ota);

/* The request kinds of the OTA channel, and what the server does next. */
enum fk_ota_action {
    FK_OTA_ACT_NONE,
    FK_OTA_ACT_STATUS,      /* status: after a reboot into a job's image (pending_verify) */
    FK_OTA_ACT_KEY_NEW,     /* ota_key ota_pubkey2: the rotation's new key */
    FK_OTA_ACT_KEY_PROMOTE, /* ota_key ota_pubkey: the old key is retired */
    FK_OTA_ACT_ABORT,       /* ota_abort: the device said busy */
    FK_OTA_ACT_BEGIN,
    FK_OTA_ACT_CHUNK,
    FK_OTA_ACT_FINISH,
};
const char *fk_ota_action_kind(enum fk_ota_action a); /* "ota_begin"...; "" for NONE */

/* A device's response to the OTA request `a` for target t (of an image of `size` bytes):
 * ok, the error code ("" when none), and the ints of the body (-1 when absent). Updates t
 * (state, sent, chunk, attempts, error). Returns 1 when the state changed. *need_abort is set
 * when the device must get ota_abort before the next ota_begin (busy). */
int fk_ota_target_response(struct fk_ota_target *t, enum fk_ota_action a, uint64_t size, int ok,
                           const char *err_code, long long chunk, long long received,
                           int *need_abort);

/* The connection carrying t's transfer went away (or a request timed out) while sending:
 * back to queued from byte 0, or failed once FK_OTA_MAX_ATTEMPTS were used. 1 when changed. */
int fk_ota_target_lost(struct fk_ota_target *t, const char *why);

/* Everything fk_ota_next looks at for one connection. */
struct fk_ota_view {
    int has_ota;           /* the device reports "ota" (it runs app images) */
    int status_due;        /* hello said pending_verify and a job waits on it; no status yet */
    int rot_active;        /* an OTA-key rotation is under way (new key not retired) */
    int reports_new;       /* the device reports the rotation's new key (any slot) */
    int has_trusted_key;   /* the device reports at least one key */
    int key_new_tried;     /* ota_key ota_pubkey2 already sent on this connection */
    int old_retired;       /* the rotation's old key is retired */
    int old_in_primary;    /* the device reports the old key as ota_pubkey */
    int new_in_secondary;  /* ... and the new one as ota_pubkey2 */
    int key_promote_tried; /* ota_key ota_pubkey already sent on this connection */
    int promote_hold;      /* the device does not run new-key-only firmware (one forced past the
                              interlock): promoting would leave its running image untrusted */
    int need_abort;        /* the device answered busy: abort first */
    const struct fk_ota_target *t; /* the device's current update target, or NULL */
    uint64_t size;         /* its image size */
};
/* The next request for a device, in the order docs/wss-protocol.md gives ("What the server
 * pushes, and when"). Pure. */
enum fk_ota_action fk_ota_next(const struct fk_ota_view *v);

/* 1 when (buf, len) is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
int fk_wss_utf8_valid(const uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
