/* Credential rotation jobs (rot.c, admin_rot.c): the server side of docs/wss-protocol.md,
 * "Credential rotation (request kinds rot_*, server -> device)".
 *
 * One rotation plan (fleetkey/plan.h) at a time drives what is delivered: each 1 s tick calls
 * fk_plan_step, whose send callback only marks a delivery due for a connected device that
 * reports "rot" (an offline one stays pending); the device's session then sends it at its
 * next free request slot (fk_srv_rot_push, after the OTA items): rot_csr -> CSR signed by the
 * fleet CA (cfg.ca_dir) -> rot_stage for mtls, a fresh 32-byte PSK -> rot_stage for psk, the
 * trust anchors of cfg.ca_bundle (DER certificates back to back) -> rot_stage for ca, the new
 * OTA key with the old key's endorsement and a manifest signed by the new key -> rot_stage for
 * ota (rot_ota.c).
 * Confirmation comes from a handshake, never from the device's word: an mtls device in trial
 * whose connection presents the certificate issued for the staged version gets rot_commit;
 * for ca, a hello on a new connection reporting ca in trial with the staged version is the
 * proof (the device verified this server's chain with the staged anchors, or the TLS
 * handshake would have failed) and gets rot_commit; for psk the server opens its own DTLS 1.2
 * PSK handshake with the staged PSK to the device's listener (rot_check.c, a worker thread)
 * and needs status auth_slot "next"; for ota, the rot_stage answer (or a later hello)
 * reporting ota in trial with the staged version: the robot verified the manifest with the key
 * read back from its staged slot, which it enters trial only after. Once the plan is
 * settled the interlock (or an operator's force naming exactly the blockers) lets the old
 * credentials be revoked: CRL entries + a new CRL file (reloaded at once) for mtls, inventory
 * rows for psk, the old OTA key's rows retired for ota; nothing for ca (the devices simply stop trusting the old anchors; the old
 * ca_cert rows were retired at confirmation). Every step is an audit row.
 *
 * Each job is saved as rot_dir/rot-NNNNNN.json (0600: it holds staged PSKs), atomically, on
 * every change at most once a second and at shutdown, and reloaded at start: a kill -9
 * resumes where the file stood. Service thread only, except the PSK check worker, which
 * touches nothing but its own struct rot_check. */
#ifndef FK_SERVER_ROT_INTERNAL_H
#define FK_SERVER_ROT_INTERNAL_H

#include "server_internal.h"

#include "fleetkey/pki.h"
#include "fleetkey/plan.h"

#include <cjson/cJSON.h>

#include <pthread.h>
#include <stdatomic.h>

#define ROT_PSK_LEN 32
#define ROT_CHECK_TRIES 5 /* PSK checks of one staged version before the plan's timeout */
#define ROT_CHECK_RETRY_MS 1000 /* a failed PSK check is tried again no sooner */
#define ROT_CHECKS_MAX 64 /* PSK checks in flight at once (one thread each) */
#define ROT_CHECK_TIMEOUT_MS 3000
#define ROT_CA_CERTS_MAX 4  /* certificates in a ca bundle (FKD_CA_CHAIN_MAX on the device) */
#define ROT_CA_DER_MAX 3072 /* bytes of a ca bundle's DER (FKD_ROT_REMOTE_BUF on the device) */

/* One PSK check in flight (rot_check.c): the worker reads its inputs and writes rc/why, then
 * sets done; the service thread reads the result only after done, then joins. */
struct rot_check {
    pthread_t th;
    atomic_int done;
    atomic_int *wake;        /* &srv->rot_wake, set when done */
    struct lws_context *ctx; /* woken with lws_cancel_service (thread-safe) */
    char host[64];
    char port[8];
    char identity[FK_WSS_ID_MAX + 16];
    uint8_t psk[ROT_PSK_LEN]; /* secret: wiped before the struct is freed */
    unsigned version;
    int current; /* the device reports this version committed: auth_slot current proves it */
    enum fk_err rc;
    char why[256];
};

_Static_assert((int)FK_WSS_ROT_MTLS == (int)FK_PLAN_MTLS &&
                   (int)FK_WSS_ROT_PSK == (int)FK_PLAN_PSK && (int)FK_WSS_ROT_CA == (int)FK_PLAN_CA &&
                   (int)FK_WSS_ROT_OTA == (int)FK_PLAN_OTA,
               "the classes of rot in a hello are indexed like the plan's");

/* What the outstanding rot_* request of a session is. */
enum rot_act { ROT_ACT_NONE, ROT_ACT_CSR, ROT_ACT_STAGE, ROT_ACT_COMMIT, ROT_ACT_ROLLBACK };

/* The server's side of one plan target (same index as plan->t). */
struct rot_dev {
    unsigned version[FK_PLAN_CLASSES];          /* the version delivered last, 0: none yet */
    char serial[FK_PKI_SERIAL_HEX_LEN * 2 + 1]; /* mtls: the serial issued for version[MTLS] */
    char fpr[FK_PLAN_CLASSES][72];              /* fingerprint of the delivered credential */
    uint8_t psk[ROT_PSK_LEN];                   /* psk: the staged key (secret) */
    int has_psk;
    int due[FK_PLAN_CLASSES];        /* fk_plan_step asked for a delivery not sent yet */
    int commit_due[FK_PLAN_CLASSES]; /* seen authenticate: rot_commit to send */
    int audited[FK_PLAN_CLASSES];    /* the final state of the class was audited */
    /* psk confirmation (rot_check.c; not saved: a restart checks again) */
    struct rot_check *chk; /* in flight, or NULL */
    unsigned chk_version;  /* the staged version chk_tries counts for */
    unsigned chk_tries;
    long long chk_after_ms; /* a failed try: the next one not before this (monotonic ms) */
    int chk_queued; /* in j->chk_q */
};

struct rot_job {
    char id[16];
    char created_at[FK_INV_TIME_SIZE];
    char operator_name[FK_WSS_ID_MAX + 1];
    struct fk_plan *p;
    struct rot_dev *d;
    int revoked; /* the old credentials were revoked (done plans) */
    int dirty;
    /* A plan in a PostgreSQL inventory (rot_shared.c): its row, the row's version this
     * instance adopted last, and the plan as adopted then (what this instance changed since
     * is what differs from it). 0 and NULL for a plan in a rot_dir file. */
    long long db_id;
    long long db_version;
    struct rot_job *base;
    /* The revocation under way (fk_srv_rot_revoke_old, sliced over ticks). Not saved: every
     * step of it is idempotent, so a restart simply starts it over (the certificates' audit
     * rows a crash lost are recovered from the audit log's rotation.revoking row, rot.c). */
    struct {
        int started; /* certificates revoked, their audit rows appended, the CRL written */
        size_t next; /* the next device whose credential rows are due */
        size_t certs, psks, ota_keys;
        size_t recovered; /* certificates' audit rows a run cut by a crash had not written */
        unsigned slices;  /* calls so far */
        double slice_max; /* the longest call, CPU seconds of the loop thread (logged) */
    } rv;
    /* PSK checks (rot_check.c; not saved): the devices with a check in flight, and a queue
     * (ring of p->n, each device at most once) of those whose session reported a PSK state
     * since: a wake-up by a finished check looks at these, not at the whole fleet. */
    size_t chk_run[ROT_CHECKS_MAX];
    size_t n_chk_run;
    size_t *chk_q;
    size_t chk_q_head, chk_q_len;
};

/* Who the rotation's own audit rows name as actor. */
#define ROT_ACTOR "fleetkey-server"

/* ---- rot_store.c: jobs, their JSON and their files --------------------------------------- */

/* The inventory credential kind of each class (indexed by enum fk_plan_class). */
extern const char *const fk_srv_rot_cred_kind[FK_PLAN_CLASSES];
/* {"class":..., "version":v (when > 0), "reason":... (when not empty)}, for an audit row. */
cJSON *fk_srv_rot_cls_detail(enum fk_plan_class c, unsigned version, const char *reason);

/* Writes rot_dir/psk/DEV.json (0600, atomically): the confirmed PSK of dev in the manifest's
 * fields (psk_hex, psk_identity "<dev>.v<version>", psk_version), for `fleetctl robot --keys`;
 * with staged set, rot_dir/psk/staged/DEV.json instead: the PSK of a delivery, made durable
 * before rot_stage leaves (the plan file is saved at most once a second, and a PSK a kill -9
 * lost could never be confirmed: fk_srv_rot_read_psk takes it back). 0 or -1
 * (logged). */
int fk_srv_rot_write_psk(struct fk_server *srv, const char *dev, unsigned version,
                         const uint8_t psk[ROT_PSK_LEN], int staged);
/* Reads rot_dir/psk/staged/DEV.json (staged set) or rot_dir/psk/DEV.json (at most 4 KiB): its
 * version and PSK (secret: the caller wipes it). 0, or -1 when absent, unreadable or not one
 * of ours (psk untouched or wiped). */
int fk_srv_rot_read_psk(struct fk_server *srv, const char *dev, int staged, unsigned *version,
                        uint8_t psk[ROT_PSK_LEN]);
/* Removes rot_dir/psk/staged/DEV.json (after the confirmation: nothing left to take back). */
void fk_srv_rot_drop_staged_psk(struct fk_server *srv, const char *dev);
/* At start: loads every rot-*.json of rot_dir (a bad one is logged and left on disk). */
void fk_srv_rot_load(struct fk_server *srv);
/* Writes the jobs changed since their last write (rot_dir files, or the merge of shared
 * plans: rot_shared.c); once a second, after an operator's action, at shutdown. */
void fk_srv_rot_save_dirty(struct fk_server *srv);
/* The rot_dir file part of fk_srv_rot_load / fk_srv_rot_save_dirty, and one job's file. */
void fk_srv_rot_load_files(struct fk_server *srv);
void fk_srv_rot_save_files(struct fk_server *srv);
void fk_srv_rot_save_file(struct fk_server *srv, struct rot_job *j);
/* 1 when the plans live in the inventory (a PostgreSQL URI), 0 for rot_dir files. */
int fk_srv_rot_shared(const struct fk_server *srv);
/* Frees every job (and the CA); at shutdown, after fk_srv_rot_save_dirty. */
void fk_srv_rot_free(struct fk_server *srv);
/* The job that is running, paused or settled (or done, not yet revoked), or NULL. */
struct rot_job *fk_srv_rot_current(struct fk_server *srv);
/* JSON of a job; detail adds per-device states. NULL when out of memory. */
cJSON *fk_srv_rot_json(const struct rot_job *j, int detail);
/* detail (consumed; NULL: {}) with "plan": j's id added, as compact JSON into buf (size
 * bytes); when it does not fit, just {"plan": id}. What every rotation audit row carries. */
void fk_srv_rot_detail_text(const struct rot_job *j, cJSON *detail, char *buf, size_t size);
/* Audits kind about subject with detail (fk_srv_rot_detail_text) as actor. 0, or -1 (logged). */
int fk_srv_rot_audit(struct fk_server *srv, const struct rot_job *j, const char *actor,
                     const char *kind, const char *subject, cJSON *detail);
/* fk_srv_rot_create's parts: the refusals (409 while a plan is under way, 400 for what the
 * configuration cannot rotate), and the job itself, appended to srv->rjobs and audited, not
 * yet saved. 0, or -1 with *status and why set. */
int fk_srv_rot_create_check(struct fk_server *srv, const struct fk_plan_spec *spec,
                            unsigned *status, char *why, size_t why_size);
int fk_srv_rot_create_job(struct fk_server *srv, const struct fk_plan_spec *spec,
                          const char *const *devices, size_t n, const char *operator_name,
                          const char *id, long long db_id, struct rot_job **out,
                          unsigned *status, char *why, size_t why_size);
/* A new plan (created paused, "not started") from an admin request (rot_shared.c: a rot_dir
 * file or a row of the shared inventory); 0, or -1 with *status and *why set. */
int fk_srv_rot_create(struct fk_server *srv, const struct fk_plan_spec *spec,
                      const char *const *devices, size_t n, const char *operator_name,
                      struct rot_job **out, unsigned *status, char *why, size_t why_size);
/* Marks j changed (saved by the next tick). */
void fk_srv_rot_dirty(struct rot_job *j);
/* The text of j as saved (plan, issued serials, staged PSKs: secret): NULL when out of
 * memory; free with fk_srv_rot_text_free, which wipes it. */
char *fk_srv_rot_text(const struct rot_job *j);
void fk_srv_rot_text_free(char *body);
/* A job from what fk_srv_rot_text wrote (len bytes, not trusted), named id. NULL with diag
 * set when it is not one. The caller owns it (fk_srv_rot_job_free, which frees its base). */
struct rot_job *fk_srv_rot_parse(const char *buf, size_t len, const char *id,
                                 struct fk_diag *diag);
void fk_srv_rot_job_free(struct rot_job *j);
/* Appends j to srv->rjobs, which owns it from then on. 0, or -1 when out of memory. */
int fk_srv_rot_job_append(struct fk_server *srv, struct rot_job *j);

/* ---- rot_shared.c: plans in a PostgreSQL inventory, driven by every instance ------------- */

/* Once a second, after an operator's action, at start and at shutdown: loads the plans other
 * instances created, then for each unfinished plan merges this instance's changes into the
 * stored row under the inventory's writers' lock (or adopts the row when this instance
 * changed nothing) and revokes the old credentials of a done plan exactly once. */
void fk_srv_rot_shared_sync(struct fk_server *srv);
/* fk_srv_rot_create's part: opens a write transaction, loads the plans other instances
 * created, and refuses (409) when one is under way; else allocates the plan's row and names
 * the job id after it. 0 (transaction left open: fk_srv_rot_shared_created commits it), or -1
 * with *status and why set (transaction closed). */
int fk_srv_rot_shared_claim(struct fk_server *srv, char id[16], long long *db_id,
                            unsigned *status, char *why, size_t why_size);
/* Writes the new job j (appended to srv->rjobs) into its row and commits; j's base is set.
 * 0, or -1 (rolled back with the row and the audit rows written since the claim; logged). */
int fk_srv_rot_shared_created(struct fk_server *srv, struct rot_job *j);

/* Reads cfg.ca_bundle (PEM, 1..ROT_CA_CERTS_MAX certificates) into *der (the certificates'
 * DER back to back, what rot_stage ca carries; malloc'd, the caller frees), their count and
 * the fingerprint of the DER bundle. 0, or -1 with why set (file missing, not PEM, too many
 * certificates, larger than a device takes). */
int fk_srv_rot_ca_bundle(struct fk_server *srv, uint8_t **der, size_t *len, size_t *count,
                         char fpr[FK_FPR_LEN], char *why, size_t why_size);

/* ---- rot.c: delivery, confirmation, interlock and revocation ----------------------------- */

/* The 1 s tick (rot_shared.c): loads a plan another instance created, steps, saves. */
void fk_srv_rot_tick(struct fk_server *srv);
/* Its engine part: plan step, PSK check results, interlock and revocation (a file plan's;
 * a shared plan's are the merge's). */
void fk_srv_rot_step(struct fk_server *srv);
/* Audits each failed or rolled-back class of j not audited yet, and marks it audited. */
void fk_srv_rot_audit_outcomes(struct fk_server *srv, struct rot_job *j);
/* After the interlock (or force): revokes every device's old credentials of j (CRL entries
 * and a new CRL file, PSK rows), audits them and sets j->revoked. Idempotent. */
void fk_srv_rot_revoke_old(struct fk_server *srv, struct rot_job *j);
/* After hello: the session's rotation state, confirmation or rollback outcome. */
void fk_srv_rot_hello(struct session *s, const struct fk_wss_msg *m);
/* The outcome part of fk_srv_rot_hello again, from the hello s already stored: after another
 * instance's delivery to this device was adopted (rot_shared.c), the connection that came
 * here in trial with it is the proof that confirms it. */
void fk_srv_rot_recheck(struct session *s);
/* The next rot_* request of s, if any (called when no OTA request is due). 0, or -1 when
 * the message could not be queued. */
int fk_srv_rot_push(struct session *s);
/* The answer to s's outstanding rot_* request (s->rot_act, already cleared pending). */
void fk_srv_rot_response(struct session *s, const struct fk_wss_msg *m);

/* ---- rot_check.c: PSK confirmation by a DTLS handshake of the server's own ---------------- */

/* The identity a staged PSK is delivered with: "<device>.v<version>". The device's listener
 * picks its key slot by identity, so the staged PSK needs one of its own for the check to
 * reach the "next" slot. */
void fk_srv_rot_psk_identity(const char *device, unsigned version, char *out, size_t size);
/* The 1 s tick's part: collects finished checks (ok: rot_commit due; failed: counted, retried
 * by this scan ROT_CHECK_RETRY_MS later at the earliest, up to ROT_CHECK_TRIES, then left to
 * the plan's timeout) and starts a check for each live
 * session that reports psk "trial" of the staged version (slot next), or that version
 * "committed" (slot current: a confirmation lost in a kill -9). Never blocks. */
void fk_srv_rot_checks(struct fk_server *srv, struct rot_job *j);
/* The loop was woken by a finished check (srv->rot_wake): collects the finished checks and
 * starts the queued ones (fk_srv_rot_check_queue) while fewer than ROT_CHECKS_MAX run; a
 * session whose rot_commit became due gets kick = 1 and its device id in srv->rot_kicks.
 * O(checks in flight + devices queued), not O(fleet): the tick's full scan is the net for
 * anything the queue missed. */
void fk_srv_rot_checks_wake(struct fk_server *srv);
/* Device i of j may now need a PSK check (its session reported a psk state): queued for the next wake-up. Allocates the queue on first use; out of memory, the
 * device waits for the tick. */
void fk_srv_rot_check_queue(struct rot_job *j, size_t i);
/* At shutdown: waits for the checks in flight (each bounded by ROT_CHECK_TIMEOUT_MS). */
void fk_srv_rot_checks_stop(struct fk_server *srv);

/* ---- rot_ota.c: the class ota ------------------------------------------------------------ */

/* The members of rot_stage ota (docs/wss-protocol.md): "key" (the new OTA public key of the
 * rotation `rotate ota-key start` recorded, DER SPKI), "endorsement" (the old key's block over
 * it), "manifest_sha256" (+ "manifest_sha384" for a P-384 key) and "manifest_sig": the digest
 * of cfg.ota_trial_image's signed data and that image's block by the new key (checked here
 * against the data and the key). fpr gets the new key's fingerprint. NULL with why set: no
 * rotation under way, the new key retired, no or no usable ota_trial_image. */
cJSON *fk_srv_rot_ota_body(struct fk_server *srv, char fpr[72], char *why, size_t why_size);
/* After the interlock: dev's row of the old OTA key (kind FK_ROT_KIND_KEY) becomes "retired",
 * so the inventory refuses signing with it (`provision-keys sign --inventory`) and the server
 * stops pushing it. 1 retired now, 0 nothing to do, -1 failed (logged). */
int fk_srv_rot_ota_retire(struct fk_server *srv, const char *dev);

/* ---- admin_rot.c ----------------------------------------------------------------------- */
/* (declared in admin_internal.h with the other route handlers) */

#endif
