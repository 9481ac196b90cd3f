/* fkd rot_remote: credential rotation driven over the control channel (docs/wss-protocol.md,
 * "Credential rotation (request kinds rot_*, server → device)"), on top of the two-slot state
 * machine of fkd/rot.h. A handler for the wss client (fkd/wss.h, struct fkd_wss_handler) for
 * the classes psk (DTLS PSK + identity), mtls (device key + client certificate), ca (the
 * trust anchors the client verifies the server with) and ota (the OTA signing public key):
 *
 * - state: the "rot" member of hello and of the status body, one object per class
 *   (fkd_rot_state_json; the client writes it from the struct fkd_rot it is given);
 * - rot_csr: a fresh P-256 key pair from the context's DRBG and a PKCS#10 request for it
 *   (CN = subject); the private key stays in this context only (wiped when replaced or freed);
 * - rot_stage: checks the successor (PSK 32 bytes, identity; for mtls the certificate parses
 *   and carries the pending key's public key), writes it (fkd_rot_stage) and starts the trial
 *   (fkd_rot_trial_begin, attempt 1). mtls: the reply asks the client to reconnect, presenting
 *   the staged key and certificate (fkd_rot_remote_credentials); ca: the bundle must parse as
 *   X.509 (DER certificates back to back, at most FKD_CA_CHAIN_MAX, or PEM), and the reply
 *   asks the client to reconnect verifying the server with the staged anchors; ota: the new
 *   OTA public key must come with the endorsement of the committed security/ota_pubkey
 *   (checked before anything is written: "not_endorsed" otherwise), and once staged, a
 *   manifest signature by the new key must verify with the key read back from the staged slot
 *   (the trial; "bad_manifest" rolls the staged key back at once); the answer, ota in trial
 *   with the staged version, is what the server confirms with rot_commit. Images are checked
 *   with the committed key only (fkd_store_load_rot; fkd_ota_remote_trust after a commit);
 * - rot_commit: the version (and for mtls the serial of the staged certificate) must be the
 *   staged one, then fkd_rot_commit;
 * - rot_rollback: fkd_rot_rollback(FKD_ROT_R_SERVER).
 * Errors answer with the protocol's codes; every refusal is one ERROR log line
 * "rot: REFUSED: <kind>: ...". Secrets never reach the log (PSK fingerprints only).
 *
 * The DTLS listener follows the psk class through fkd_rot_ctl_sync (below), called by whoever
 * drives the listener: the staged PSK is its "next" key during a trial, and at commit it becomes
 * the current one while every session that authenticated with the retired key is closed.
 *
 * Memory: struct fkd_rot_remote is caller memory (about 7.5 KiB: a 4 KiB buffer a body member is
 * copied into, a 3 KiB one it is decoded into, the pending key as DER, a DRBG); nothing is
 * allocated here (class ota reuses the two buffers for the keys, a signature block and the
 * 4 KiB signature sector; a rot_stage ota puts one struct fkd_sbv2_keys, about 1.6 KiB, on the
 * stack). mbedTLS allocates bignums and the parsed certificate inside one request and frees
 * them before it returns. Threads: none; every call on one context from one thread (the wss
 * client's), and the struct fkd_rot it borrows is not used by anyone else meanwhile. */
#ifndef FKD_ROT_REMOTE_H
#define FKD_ROT_REMOTE_H

#include "fkd/common.h"
#include "fkd/rot.h"
#include "fkd/wss.h"

#include <mbedtls/ctr_drbg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_ctl;

#define FKD_ROT_REMOTE_BUF 3072u /* a decoded certificate (DER) or a written CSR (PEM) */
#define FKD_ROT_REMOTE_SUBJECT_MAX 65u

/* Fields are private; here so the context can live in caller memory. */
struct fkd_rot_remote {
    struct fkd_rot *rot;
    mbedtls_ctr_drbg_context drbg;
    int drbg_ready;
    int pending;          /* a rot_csr key waits for its certificate */
    uint8_t key_der[160]; /* its private key, SEC1 DER (secret) */
    size_t key_len;
    uint8_t pub_der[128]; /* its SubjectPublicKeyInfo, DER */
    size_t pub_len;
    unsigned trial_counted; /* bit (1u << class): rot_stage counted the attempt of the next
                               connection */
    uint32_t conn_tag;      /* mtls credentials of the connection being made or open */
    uint32_t boot_tag;      /* the store's mtls credentials (what the client loaded at setup) */
    uint32_t ca_conn_tag;   /* the same two for the trust anchors (class ca) */
    uint32_t ca_boot_tag;
    uint8_t buf[FKD_ROT_REMOTE_BUF];
    char b64[4096]; /* a base64 member as received (unescaped) */
};

/* Empties r. Cannot fail. */
void fkd_rot_remote_init(struct fkd_rot_remote *r);
/* Borrows rot (loaded by fkd_rot_load; it outlives r) and seeds the DRBG from the port's
 * entropy. The store's mtls credentials are taken to be the slot fkd_rot_slot_in_use names now
 * (fkd_store_load_rot). FKD_OK, FKD_E_ARG, FKD_E_CRYPTO. */
FKD_MUST_CHECK enum fkd_err fkd_rot_remote_setup(struct fkd_rot_remote *r, struct fkd_rot *rot);
/* Wipes the pending key and frees the DRBG. Safe after init; idempotent. */
void fkd_rot_remote_free(struct fkd_rot_remote *r);

/* The "rot" object of hello and status: {"psk":{...},"mtls":{...},"ca":{...},"ota":{...}}
 * (wss-protocol.md). Returns
 * its length, or 0 when it does not fit size (out then holds ""). */
size_t fkd_rot_state_json(const struct fkd_rot *rot, char *out, size_t size);

/* fkd_wss_request_fn (user = the context): rot_csr, rot_stage, rot_commit and rot_rollback; any
 * other kind is FKD_WSS_REQ_UNKNOWN. A successful mtls or ca rot_stage, and a rot_rollback of
 * an mtls or ca trial, set reply->reconnect. */
enum fkd_wss_req_result fkd_rot_remote_request(void *user, const char *kind, const uint8_t *body,
                                               size_t body_len, struct fkd_wss_reply *reply);
/* fkd_wss_credentials_fn (user = the context), before each connection: fkd_rot_poll, then, for
 * each of mtls and ca that is staged or in trial, fkd_rot_trial_begin (each connection one
 * attempt; the one rot_stage already counted is not counted twice; used up: rolled back).
 * Fills *c with the key and certificate of the slot in use, read from NVS into c's buffers, or
 * leaves c->cert NULL when they are still the store's; likewise c->ca with the anchors of the
 * ca slot in use (read into this context's b64 buffer), NULL when they are the store's. */
void fkd_rot_remote_credentials(void *user, struct fkd_wss_creds *c);
/* fkd_wss_tick_fn (user = the context), on the client's timer: fkd_rot_poll; 1 when the
 * connection presents an mtls credential, or trusts anchors, that are no longer the ones to use
 * (the trial timed out or was rolled back): the client then closes and reconnects. */
int fkd_rot_remote_tick(void *user);

/* What a DTLS listener was last given by fkd_rot_ctl_sync. Zero it (or fkd_rot_ctl_init) before
 * the first sync. */
struct fkd_rot_ctl {
    int synced;
    uint32_t current_version;
    int has_next;
    uint32_t next_version;
};
void fkd_rot_ctl_init(struct fkd_rot_ctl *s);
/* Makes the listener's keys follow the psk class of rot: current = the active slot's PSK and
 * identity; next = the staged slot's while the class is staged or in trial, none otherwise.
 * When the active version became the one the listener held as next (a commit), the next key
 * becomes current and every session that authenticated with the retired key is closed
 * (fkd_ctl_commit_next); when a next key is withdrawn (rollback), its sessions are closed.
 * Call it on the listener's thread after anything that may have changed rot. FKD_OK (also when
 * nothing changed); FKD_E_NOTFOUND (the active PSK is not in NVS: the listener keeps what it
 * has); flash errors. */
FKD_MUST_CHECK enum fkd_err fkd_rot_ctl_sync(struct fkd_rot_ctl *s, struct fkd_rot *rot,
                                             struct fkd_ctl *ctl);

#ifdef __cplusplus
}
#endif
#endif
