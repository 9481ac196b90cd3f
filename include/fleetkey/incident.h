/* fleetkey incident: the state of the "OTA signing key compromised" emergency plan (seed 004:
 * "If a signing key is compromised, rotate immediately and OTA all devices"), which
 * `fleetctl incident ota-key-compromised` drives step by step and saves after every step, so a
 * run that crashed or stopped at a gate continues where it stood.
 *
 * The state file is JSON (written temp + fsync + rename by the caller), public facts only:
 *   {"format":1,"incident":"ota-key-compromised","old_key":"sbv2:<64 hex>",
 *    "new_key":"sbv2:<64 hex>","new_key_file":"...","started_at":"RFC 3339",
 *    "done":["keygen","start",...],"dual_release":{"file":"...","sha256":"<64 hex>"},
 *    "dual_job":"j-000001","new_release":{...},"new_job":"j-000002","forced":["robot-..."]}
 * Members other than format, incident, old_key and done may be absent until their step ran.
 * Nothing here prints, exits or allocates outside the documented calls; thread-safe. */
#ifndef FLEETKEY_INCIDENT_H
#define FLEETKEY_INCIDENT_H

#include <stddef.h>

#include "fleetkey/common.h"
#include "fleetkey/inventory.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FK_INCIDENT_FORMAT 1
#define FK_INCIDENT_OTA_KEY "ota-key-compromised"
#define FK_INCIDENT_STATE_MAX 65536u /* bytes of a state file */
#define FK_INCIDENT_FORCED_MAX 64u
#define FK_INCIDENT_PATH_MAX 512u
#define FK_INCIDENT_JOB_MAX 32u

/* The steps, in the order the plan runs them (bit i of done = step i finished). */
#define FK_INCIDENT_STEPS(X)                                                                       \
    X(KEYGEN, "keygen")       /* the new key exists (generated here, or given) */                  \
    X(START, "start")         /* fk_rotation_start: every device holds the new key, staged */      \
    X(SIGN_DUAL, "sign_dual") /* release signed by old + new */                                    \
    X(PUSH_DUAL, "push_dual") /* pushed to the whole fleet (job dual_job) */                       \
    X(FORCE, "force")         /* offline devices named by the operator forced past the gates */    \
    X(SIGN_NEW, "sign_new")   /* release signed by the new key only */                             \
    X(RETIRE, "retire")       /* the old key retired: devices drop it, images with it refused */

enum fk_incident_step {
#define FK_INCIDENT_STEP_ENUM(n, s) FK_INCIDENT_##n,
    FK_INCIDENT_STEPS(FK_INCIDENT_STEP_ENUM)
#undef FK_INCIDENT_STEP_ENUM
        FK_INCIDENT_STEP_COUNT
};

/* "keygen", "start", ...; "?" outside the enum. Never NULL. */
const char *fk_incident_step_name(enum fk_incident_step s);

struct fk_incident_release {
    char file[FK_INCIDENT_PATH_MAX];
    char sha256[65]; /* hex of the signed file */
};

struct fk_incident_state {
    char old_fpr[FK_INV_FPR_SIZE];
    char new_fpr[FK_INV_FPR_SIZE]; /* "" before keygen */
    char new_key_file[FK_INCIDENT_PATH_MAX];
    char started_at[FK_INV_TIME_SIZE];
    unsigned done;                          /* bit per enum fk_incident_step */
    struct fk_incident_release dual, fresh; /* dual-signed; new-key-only */
    char dual_job[FK_INCIDENT_JOB_MAX];
    char new_job[FK_INCIDENT_JOB_MAX]; /* the last new-key-only push */
    char forced[FK_INCIDENT_FORCED_MAX][FK_INV_ID_SIZE];
    size_t nforced;
};

static inline int fk_incident_done(const struct fk_incident_state *s, enum fk_incident_step st) {
    return (s->done >> st) & 1u;
}

/* Parses a state file held in (buf, len) into *out (zeroed first). Every member is checked:
 * types, fingerprints ("sbv2:" + 64 hex digits), hex digests, job ids ("j-" + digits), step
 * names (known, each once), lengths against the fields above, and that each step's data is
 * present once the step is done. FK_OK; FK_E_PARSE (diag says which member and what was
 * expected); FK_E_UNSUPPORTED (another format or incident); FK_E_TOOBIG. Never keeps buf. */
FK_MUST_CHECK enum fk_err fk_incident_state_parse(const char *buf, size_t len,
                                                  struct fk_incident_state *out,
                                                  struct fk_diag *diag);

/* Renders s as the JSON above (one line and a newline) into a malloc'd string *out (free()),
 * *out_len without the NUL. FK_OK, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_incident_state_render(const struct fk_incident_state *s, char **out,
                                                   size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
