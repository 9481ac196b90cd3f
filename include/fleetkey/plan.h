/* fleetkey plan: one rotation plan for every credential class, rolled out in waves with a
 * failure threshold, and the interlock that keeps anything old from being revoked before
 * every device confirmed its successor.
 *
 * A plan rotates one or more classes on a set of devices. Each device takes its classes in
 * dependency order (trust anchor, then its certificate, then the PSK, then the OTA key): the
 * next class is delivered only once the device confirmed the previous one. Devices are taken
 * in waves: wave w covers the first waves[w] percent of the devices, in an order spread by a
 * hash of the device id (so 1 % is a sample, not the first rack of the factory). A wave is
 * settled when each of its devices has confirmed every class, has failed, or is offline; then
 * the next wave opens. When the failures of the open waves exceed max_failure_pct of their
 * devices the plan pauses itself with the reason; an operator resumes or aborts it.
 *
 * A delivered credential that is not confirmed within timeout_s is delivered again, at most
 * retries times, then the device counts as failed (a device that reports a rollback fails at
 * once). Failed devices keep their old, working credential.
 *
 * The interlock (fk_plan_interlock) holds when every device confirmed every class; otherwise
 * it lists the devices that block it. fk_plan_force lets an operator go ahead only by naming
 * exactly those devices. The caller revokes (CRL entries, old PSKs, OTA key) only after it.
 *
 * The engine is pure: no I/O, no clock, no database. The caller hands it the time and a
 * delivery callback, and stores it with fk_plan_to_json / fk_plan_from_json (the parser takes
 * (buf, len), trusts no length and never reads past len).
 *
 * Thread safety: a plan belongs to one thread at a time. */
#ifndef FLEETKEY_PLAN_H
#define FLEETKEY_PLAN_H

#include "fleetkey/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The dependency order: a device gets a class only after confirming every earlier one. */
enum fk_plan_class {
    FK_PLAN_CA = 0,   /* trust anchor (mtls/ca_cert) */
    FK_PLAN_MTLS = 1, /* device key + certificate */
    FK_PLAN_PSK = 2,  /* DTLS PSK + identity */
    FK_PLAN_OTA = 3,  /* OTA signing key */
    FK_PLAN_CLASSES
};

enum fk_plan_state {
    FK_PLAN_RUNNING = 0,
    FK_PLAN_PAUSED = 1,  /* by the threshold or an operator; pause_reason says which */
    FK_PLAN_SETTLED = 2, /* every wave is settled; the interlock decides what comes next */
    FK_PLAN_DONE = 3,    /* the interlock held (or was forced): the old credentials may go */
    FK_PLAN_ABORTED = 4,
};

/* Per device and class. */
enum fk_plan_tstate {
    FK_PLAN_T_PENDING = 0, /* not delivered yet (or the device was offline) */
    FK_PLAN_T_SENT = 1,    /* delivered; waiting for the confirmation */
    FK_PLAN_T_CONFIRMED = 2,
    FK_PLAN_T_FAILED = 3,      /* refused, or no confirmation after every retry */
    FK_PLAN_T_ROLLED_BACK = 4, /* the device went back to its old credential */
};

#define FK_PLAN_WAVES_MAX 8
#define FK_PLAN_ID_SIZE 32
#define FK_PLAN_DEV_SIZE 32
#define FK_PLAN_REASON_SIZE 48
#define FK_PLAN_MAX_DEVICES 1000000u

struct fk_plan_spec {
    unsigned classes; /* bit (1u << enum fk_plan_class) per class rotated; at least one */
    unsigned waves[FK_PLAN_WAVES_MAX]; /* cumulative percent, strictly rising, last = 100 */
    size_t n_waves;
    unsigned max_failure_pct; /* 0..100: failures above this share of the open waves pause */
    unsigned timeout_s;       /* per delivery; >= 1 */
    unsigned retries;         /* deliveries after the first */
};

struct fk_plan_target {
    char device[FK_PLAN_DEV_SIZE];
    uint32_t order; /* the spread order key (a hash of the device id) */
    uint8_t state[FK_PLAN_CLASSES];
    uint8_t attempts[FK_PLAN_CLASSES];
    int64_t deadline[FK_PLAN_CLASSES]; /* seconds, the caller's clock; 0 when not sent */
    char reason[FK_PLAN_REASON_SIZE];  /* the last failure or rollback, "" when none */
    int offline;                       /* the last delivery found it offline */
};

struct fk_plan {
    char id[FK_PLAN_ID_SIZE];
    struct fk_plan_spec spec;
    enum fk_plan_state state;
    unsigned wave;               /* index of the newest open wave */
    char pause_reason[160];
    int forced;                  /* fk_plan_force was used */
    size_t acked;                /* failures acknowledged by the last resume */
    struct fk_plan_target *t;    /* n targets, in wave order; owned */
    size_t n;
};

/* A summary for status lines and gates. */
struct fk_plan_counts {
    size_t devices, open;        /* all, and those in open waves */
    size_t confirmed;            /* devices that confirmed every class */
    size_t failed, rolled_back;  /* devices with a failed / rolled-back class */
    size_t in_flight, offline, pending;
};

/* Delivery: asked to deliver class c to device (attempt 1..1+retries). Returns 1 when it was
 * handed to the device, 0 when the device is offline (it stays pending and is tried again at
 * the next step), -1 when delivery failed for good (the device fails with reason). */
typedef int fk_plan_send_fn(void *user, const char *device, enum fk_plan_class c,
                            unsigned attempt, char reason[FK_PLAN_REASON_SIZE]);

/* Parses a class list "psk,mtls" into spec->classes and a wave list "1,5,25,100" into
 * spec->waves. FK_OK; FK_E_PARSE, diag->msg naming the offending item. */
FK_MUST_CHECK enum fk_err fk_plan_parse_classes(const char *text, unsigned *classes,
                                                struct fk_diag *diag);
FK_MUST_CHECK enum fk_err fk_plan_parse_waves(const char *text, struct fk_plan_spec *spec,
                                              struct fk_diag *diag);

/* A new running plan over devices (n ids, each 1..31 characters, no duplicates), wave 0 open.
 * *out is owned by the caller (fk_plan_free). FK_OK; FK_E_ARG (spec, ids, duplicates: diag
 * names them); FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_plan_new(const char *id, const struct fk_plan_spec *spec,
                                      const char *const *devices, size_t n, struct fk_plan **out,
                                      struct fk_diag *diag);
void fk_plan_free(struct fk_plan *p);

/* One pass of the engine at time now: re-delivers what timed out, fails what used up its
 * retries, delivers the next class to each device of the open waves that needs one, then
 * pauses (threshold), opens the next wave or settles. Does nothing unless running. Returns
 * the number of deliveries handed to send. */
size_t fk_plan_step(struct fk_plan *p, int64_t now, fk_plan_send_fn *send, void *user);

/* What a device reported for class c: confirmed (the control plane saw the new credential
 * authenticate), or rolled back / refused (reason: the device's words). FK_OK; FK_E_NOTFOUND
 * (device not in the plan); FK_E_STATE (the class is not part of the plan, or was not
 * delivered: a stale report changes nothing). */
FK_MUST_CHECK enum fk_err fk_plan_report(struct fk_plan *p, const char *device,
                                         enum fk_plan_class c, enum fk_plan_tstate outcome,
                                         const char *reason);

/* Operator controls. pause: running → paused; resume: paused → running, and the failures
 * counted so far are acknowledged: only failures after it count against the threshold;
 * abort: any state but done → aborted (nothing is revoked; devices keep whatever they
 * committed). FK_OK or FK_E_STATE. fk_plan_step on a settled plan only delivers to devices
 * that were offline when their wave settled. */
FK_MUST_CHECK enum fk_err fk_plan_pause(struct fk_plan *p, const char *why);
FK_MUST_CHECK enum fk_err fk_plan_resume(struct fk_plan *p);
FK_MUST_CHECK enum fk_err fk_plan_abort(struct fk_plan *p);

/* The interlock: FK_OK and the plan done when it is settled and every device confirmed
 * every class. Otherwise FK_E_STATE (not settled yet) or FK_E_POLICY; in both cases
 * *blockers (when non-NULL; free() it) lists the device ids that are not confirmed, *nb of
 * them. */
FK_MUST_CHECK enum fk_err fk_plan_interlock(struct fk_plan *p, char (**blockers)[FK_PLAN_DEV_SIZE],
                                            size_t *nb);
/* Goes past the interlock of a settled plan when names (n ids) are exactly the devices that
 * block it, in any order: an operator cannot force more than they looked at. FK_OK (plan
 * done, forced); FK_E_STATE (not settled); FK_E_MISMATCH (diag names the first device
 * missing from names, or named but not blocking). */
FK_MUST_CHECK enum fk_err fk_plan_force(struct fk_plan *p, const char *const *names, size_t n,
                                        struct fk_diag *diag);

void fk_plan_counts(const struct fk_plan *p, struct fk_plan_counts *out);
/* The same for the devices wave w adds (targets [wave_end(w - 1), wave_end(w)), not
 * cumulative); open is all of them when the wave is open (every wave of a settled, done or
 * aborted plan counts as open), else 0. All zero when w is not a wave of p. */
void fk_plan_wave_counts(const struct fk_plan *p, unsigned w, struct fk_plan_counts *out);
/* The cumulative number of targets waves 0..w cover: ceil(n * waves[w] / 100), at least 1 for
 * a non-empty plan; targets [0, end) in p->t. 0 when w is not a wave of p. */
size_t fk_plan_wave_end(const struct fk_plan *p, unsigned w);
/* The target of device, or NULL. */
const struct fk_plan_target *fk_plan_find(const struct fk_plan *p, const char *device);

/* Several control-plane instances driving one stored plan merge per device: each copies the
 * targets of the devices it changed into the stored plan (fk_plan_copy_target) and adopts the
 * rest. fk_plan_copy_target copies device's per-class states, attempts, deadlines, reason and
 * offline flag from src into dst (both plans must hold device). FK_OK; FK_E_NOTFOUND (device
 * missing from either plan). fk_plan_target_same is 1 when a and b hold the same state (what
 * fk_plan_copy_target copies), else 0. Neither allocates. */
FK_MUST_CHECK enum fk_err fk_plan_copy_target(struct fk_plan *dst, const struct fk_plan *src,
                                              const char *device);
int fk_plan_target_same(const struct fk_plan_target *a, const struct fk_plan_target *b);

/* Serialises the whole plan as one JSON object; *out is malloc'd (free it), NUL-terminated.
 * FK_OK, FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_plan_to_json(const struct fk_plan *p, char **out, size_t *out_len);
/* Parses what fk_plan_to_json wrote. Every field is checked (types, ranges, enum values,
 * string lengths, duplicate devices). *out owned by the caller. FK_OK; FK_E_PARSE (diag->msg
 * names what is wrong); FK_E_TOOBIG (len over 256 MiB); FK_E_NOMEM. */
FK_MUST_CHECK enum fk_err fk_plan_from_json(const uint8_t *buf, size_t len, struct fk_plan **out,
                                            struct fk_diag *diag);

/* "ca", "mtls", "psk", "ota"; "running", "paused", "settled", "done", "aborted"; "pending",
 * "sent", "confirmed", "failed", "rolled_back". Never NULL ("?" when out of range). */
const char *fk_plan_class_name(enum fk_plan_class c);
const char *fk_plan_state_name(enum fk_plan_state s);
const char *fk_plan_tstate_name(enum fk_plan_tstate s);

#ifdef __cplusplus
}
#endif
#endif
