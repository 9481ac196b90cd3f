/* Credential rotation on the device: two NVS slots per credential class and a state machine
 * per class, every step of which survives a power cut.
 *
 * Classes and their items (slot A keeps the seed's names, slot B adds "_b"):
 *   FKD_ROT_PSK   security/dtls_psk (blob, 32 bytes) + security/psk_id (string, 1..64)
 *   FKD_ROT_MTLS  mtls/client_key (blob) + mtls/client_cert (blob)
 *   FKD_ROT_CA    mtls/ca_cert (blob)
 *   FKD_ROT_OTA   security/ota_pubkey (blob, DER SubjectPublicKeyInfo)
 * The state of each class is one NVS blob, fk_rot/<class>: which slot is active, the version of
 * the active and of the staged credential, the state, trial attempts, and why the last
 * rotation rolled back. No record means the factory state: slot A active, version 0, idle.
 *
 *   idle ──stage──▶ staged ──trial_begin──▶ trial ──commit(version)──▶ committed
 *                     │                       │ attempts > max, timeout,
 *                     └──────rollback─────────┴─server refusal──▶ rolled_back
 * committed and rolled_back rest like idle: the next stage starts from them.
 *
 * Why it cannot brick: the only good copy is never overwritten. stage writes the spare slot
 * and only then the record that names it staged; commit is a single record write that flips
 * the active slot; the retired slot is erased after the flip. NVS writes one item atomically
 * (a cut leaves the old or the new value), so after a cut at any write fkd_rot_load finds
 * either the old state with the old credential intact, or the new state with the new one; a
 * half-written spare slot behind a record that does not name it staged is erased on load.
 *
 * Memory: struct fkd_rot lives in caller memory; no allocation. Thread safety: none; one
 * user (the device's control task). */
#ifndef FKD_ROT_H
#define FKD_ROT_H

#include "fkd/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_nvs;

enum fkd_rot_class { FKD_ROT_PSK, FKD_ROT_MTLS, FKD_ROT_CA, FKD_ROT_OTA, FKD_ROT_CLASS_COUNT };

/* The stored values are part of the record format: never renumber. */
enum fkd_rot_state {
    FKD_ROT_IDLE = 0,
    FKD_ROT_STAGED = 1,
    FKD_ROT_TRIAL = 2,
    FKD_ROT_COMMITTED = 3,
    FKD_ROT_ROLLED_BACK = 4,
};

enum fkd_rot_reason {
    FKD_ROT_R_NONE = 0,
    FKD_ROT_R_ATTEMPTS = 1, /* no confirmation within the allowed trial connections */
    FKD_ROT_R_TIMEOUT = 2,  /* no confirmation within the trial time */
    FKD_ROT_R_SERVER = 3,   /* the control plane refused or cancelled the staged credential */
    FKD_ROT_R_INVALID = 4,  /* the staged slot was found incomplete on load */
};

#define FKD_ROT_ITEMS_MAX 2u
#define FKD_ROT_SLOT_A 0u
#define FKD_ROT_SLOT_B 1u
#define FKD_ROT_DEFAULT_ATTEMPTS 3u

/* What the device knows about one class. */
struct fkd_rot_info {
    enum fkd_rot_state state;
    unsigned active;         /* FKD_ROT_SLOT_A or _B: the committed credential */
    unsigned attempts;       /* trial connections begun for the staged credential */
    enum fkd_rot_reason reason; /* why the last rotation rolled back */
    uint32_t version;        /* of the active credential (0: as minted) */
    uint32_t staged_version; /* of the staged one, 0 when none */
};

/* Fields are private; they are here so the struct can live in caller memory. */
struct fkd_rot {
    struct fkd_nvs *nvs;
    struct fkd_rot_info cls[FKD_ROT_CLASS_COUNT];
    uint64_t trial_start_ms[FKD_ROT_CLASS_COUNT];
    unsigned max_attempts;
    uint64_t trial_ms; /* 0: no time limit */
    int loaded;
};

/* One value handed to fkd_rot_stage; borrowed for the call. */
struct fkd_rot_value {
    const uint8_t *data;
    size_t len;
};

/* Empties r. Cannot fail. */
void fkd_rot_init(struct fkd_rot *r);

/* Reads every class's record from nvs (borrowed until the last fkd_rot_ call) and finishes
 * what a power cut interrupted: a spare slot that the record does not name staged is erased
 * (an interrupted stage, or the retired credential after a commit or a rollback); a staged or
 * trial class whose spare slot is incomplete is rolled back (FKD_ROT_R_INVALID). max_attempts
 * (0: FKD_ROT_DEFAULT_ATTEMPTS) trial connections, trial_ms of trial time per boot (0: none).
 * FKD_OK; FKD_E_ARG; FKD_E_IO/FKD_E_POWERCUT/FKD_E_NOSPACE from the flash (r is then loaded
 * as read, and a later load finishes the repair). A damaged record is logged and replaced by
 * the slot that holds a credential (A first). */
FKD_MUST_CHECK enum fkd_err fkd_rot_load(struct fkd_rot *r, struct fkd_nvs *nvs,
                                         unsigned max_attempts, uint64_t trial_ms);

/* Never NULL for a class in range (a static idle record otherwise). */
const struct fkd_rot_info *fkd_rot_info(const struct fkd_rot *r, enum fkd_rot_class c);

/* Writes a successor of class c into the spare slot, then marks it staged with version (>
 * the active version). vals holds the class's items in the order above. Allowed from idle,
 * committed, rolled_back and staged (replaces the staged credential); not during a trial.
 * Values are checked first (PSK exactly 32 bytes, identity 1..64 printable characters, blobs
 * 1..FKD_PEM_MAX bytes). FKD_OK; FKD_E_ARG (count or value), FKD_E_RANGE (version not newer),
 * FKD_E_STATE; flash errors (the staged credential then does not exist). */
FKD_MUST_CHECK enum fkd_err fkd_rot_stage(struct fkd_rot *r, enum fkd_rot_class c,
                                          uint32_t version, const struct fkd_rot_value *vals,
                                          size_t n);

/* Called before each connection that tries the staged credential (now_ms: a monotonic clock
 * of this boot). staged → trial with 1 attempt; in a trial, one more attempt is counted in
 * NVS before it is made, so a crash during a trial connection still counts. When the
 * attempts are used up the class is rolled back (FKD_ROT_R_ATTEMPTS) and FKD_E_TIMEOUT
 * returned: connect with the active credential. FKD_OK; FKD_E_STATE (nothing staged); flash
 * errors. */
FKD_MUST_CHECK enum fkd_err fkd_rot_trial_begin(struct fkd_rot *r, enum fkd_rot_class c,
                                                uint64_t now_ms);

/* Rolls back every trial that has lasted longer than trial_ms this boot (FKD_ROT_R_TIMEOUT).
 * Returns how many classes it rolled back; flash errors leave them in trial for the next
 * load or poll. */
unsigned fkd_rot_poll(struct fkd_rot *r, uint64_t now_ms);

/* The control plane confirmed that the staged credential authenticated, naming its version:
 * one record write makes it active, then the retired slot is erased. FKD_OK; FKD_E_STATE (no
 * trial); FKD_E_AUTH (version is not the staged one: nothing changes); flash errors (before
 * the flip nothing changed; after it the retired slot is erased by the next load). */
FKD_MUST_CHECK enum fkd_err fkd_rot_commit(struct fkd_rot *r, enum fkd_rot_class c,
                                           uint32_t version);

/* Abandons the staged credential: the record says rolled_back (why), then the spare slot is
 * erased. FKD_OK; FKD_E_STATE (nothing staged); flash errors. */
FKD_MUST_CHECK enum fkd_err fkd_rot_rollback(struct fkd_rot *r, enum fkd_rot_class c,
                                             enum fkd_rot_reason why);

/* The slot to authenticate with now: the staged one during a trial, else the active one. */
unsigned fkd_rot_slot_in_use(const struct fkd_rot *r, enum fkd_rot_class c);
/* The staged slot when the class is staged or in trial (a listener that accepts the current
 * and the next PSK takes it as "next"); -1 when there is none. */
int fkd_rot_slot_next(const struct fkd_rot *r, enum fkd_rot_class c);

/* NVS namespace and key of item i of class c in slot s. FKD_OK or FKD_E_ARG. */
FKD_MUST_CHECK enum fkd_err fkd_rot_key(enum fkd_rot_class c, unsigned i, unsigned s,
                                        const char **ns, const char **key);
/* Number of items of class c (0 when out of range). */
unsigned fkd_rot_items(enum fkd_rot_class c);
/* Reads item i of class c from slot s: fkd_nvs_get_blob / _get_str semantics (strings
 * NUL-terminated, *out_len without the NUL). */
FKD_MUST_CHECK enum fkd_err fkd_rot_read(struct fkd_rot *r, enum fkd_rot_class c, unsigned i,
                                         unsigned s, uint8_t *out, size_t out_size,
                                         size_t *out_len);

/* "psk", "mtls", "ca", "ota"; "idle", "staged", "trial", "committed", "rolled_back"; "none",
 * "attempts", "timeout", "server", "invalid". Never NULL. */
const char *fkd_rot_class_name(enum fkd_rot_class c);
const char *fkd_rot_state_name(enum fkd_rot_state s);
const char *fkd_rot_reason_name(enum fkd_rot_reason r);

#ifdef __cplusplus
}
#endif
#endif
