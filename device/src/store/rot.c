/* Credential rotation on the device: see fkd/rot.h for the state machine and why every step
 * survives a power cut.
 *
 * The ordering rules, in one place:
 *   stage:    (record → idle if a staged credential is being replaced) → spare items → record
 *             staged. A cut before the last write leaves a spare slot the record does not
 *             name; load erases it.
 *   commit:   record (active = spare) → erase the retired items. The record write is the
 *             commit point; a cut after it leaves retired items that load erases.
 *   rollback: record rolled_back → erase the spare items.
 * The record is the only thing that decides which slot is used, so no cut can make the
 * device use a slot that is half written. */
#include "fkd/rot.h"

#include "fkd/nvs.h"
#include "fkd/store.h"

#include <string.h>

#define REC_NS "fk_rot"
#define REC_LEN 16u
#define REC_MAGIC0 'F'
#define REC_MAGIC1 'R'
#define REC_FORMAT 1u

struct item {
    const char *ns;
    const char *key[2]; /* slot A (the seed's name), slot B */
    int is_str;
    size_t min, max;
};

struct class_def {
    const char *name;
    unsigned n;
    struct item items[FKD_ROT_ITEMS_MAX];
};

static const struct class_def classes[FKD_ROT_CLASS_COUNT] = {
    [FKD_ROT_PSK] = {"psk",
                     2,
                     {{"security", {"dtls_psk", "dtls_psk_b"}, 0, FKD_PSK_LEN, FKD_PSK_LEN},
                      {"security", {"psk_id", "psk_id_b"}, 1, 1, FKD_PSK_ID_MAX}}},
    [FKD_ROT_MTLS] = {"mtls",
                      2,
                      {{"mtls", {"client_key", "client_key_b"}, 0, 1, FKD_PEM_MAX},
                       {"mtls", {"client_cert", "client_cert_b"}, 0, 1, FKD_PEM_MAX}}},
    [FKD_ROT_CA] = {"ca", 1, {{"mtls", {"ca_cert", "ca_cert_b"}, 0, 1, FKD_PEM_MAX}}},
    [FKD_ROT_OTA] = {"ota",
                     1,
                     {{"security", {"ota_pubkey", "ota_pubkey_b"}, 0, 1, FKD_OTA_KEY_MAX}}},
};

static int class_ok(enum fkd_rot_class c) {
    return (unsigned)c < FKD_ROT_CLASS_COUNT;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The record is written whole, in one NVS item: NVS replaces an item atomically. */
static enum fkd_err rec_write(struct fkd_rot *r, enum fkd_rot_class c,
                              const struct fkd_rot_info *in) {
    uint8_t rec[REC_LEN] = {REC_MAGIC0, REC_MAGIC1, REC_FORMAT};
    rec[3] = (uint8_t)in->state;
    rec[4] = (uint8_t)in->active;
    rec[5] = (uint8_t)(in->attempts > 255u ? 255u : in->attempts);
    rec[6] = (uint8_t)in->reason;
    put_le32(rec + 8, in->version);
    put_le32(rec + 12, in->staged_version);
    enum fkd_err rc = fkd_nvs_set_blob(r->nvs, REC_NS, classes[c].name, rec, sizeof rec);
    if (rc == FKD_OK) {
        r->cls[c] = *in;
    }
    return rc;
}

/* Parses a record; FKD_E_CORRUPT when it is not one this code wrote. */
static enum fkd_err rec_parse(const uint8_t *buf, size_t len, struct fkd_rot_info *out) {
    if (len != REC_LEN || buf[0] != REC_MAGIC0 || buf[1] != REC_MAGIC1 || buf[2] != REC_FORMAT ||
        buf[3] > FKD_ROT_ROLLED_BACK || buf[4] > FKD_ROT_SLOT_B || buf[6] > FKD_ROT_R_INVALID) {
        return FKD_E_CORRUPT;
    }
    out->state = (enum fkd_rot_state)buf[3];
    out->active = buf[4];
    out->attempts = buf[5];
    out->reason = (enum fkd_rot_reason)buf[6];
    out->version = get_le32(buf + 8);
    out->staged_version = get_le32(buf + 12);
    return FKD_OK;
}

static int item_present(struct fkd_rot *r, enum fkd_rot_class c, unsigned i, unsigned s) {
    uint8_t type;
    return fkd_nvs_find(r->nvs, classes[c].items[i].ns, classes[c].items[i].key[s], &type) ==
           FKD_OK;
}

static int slot_complete(struct fkd_rot *r, enum fkd_rot_class c, unsigned s) {
    for (unsigned i = 0; i < classes[c].n; i++) {
        if (!item_present(r, c, i, s)) {
            return 0;
        }
    }
    return 1;
}

/* Erases every item of slot s; absent items are fine. */
static enum fkd_err slot_erase(struct fkd_rot *r, enum fkd_rot_class c, unsigned s) {
    for (unsigned i = 0; i < classes[c].n; i++) {
        enum fkd_err rc =
            fkd_nvs_erase_key(r->nvs, classes[c].items[i].ns, classes[c].items[i].key[s]);
        if (rc != FKD_OK && rc != FKD_E_NOTFOUND) {
            return rc;
        }
    }
    return FKD_OK;
}

static int slot_any(struct fkd_rot *r, enum fkd_rot_class c, unsigned s) {
    for (unsigned i = 0; i < classes[c].n; i++) {
        if (item_present(r, c, i, s)) {
            return 1;
        }
    }
    return 0;
}

static enum fkd_err check_value(const struct item *it, const struct fkd_rot_value *v) {
    if (v->data == NULL || v->len < it->min || v->len > it->max) {
        return FKD_E_ARG;
    }
    if (it->is_str) {
        for (size_t k = 0; k < v->len; k++) {
            if (v->data[k] < 0x21 || v->data[k] > 0x7e) { /* printable, no space, no NUL */
                return FKD_E_ARG;
            }
        }
    }
    return FKD_OK;
}

void fkd_rot_init(struct fkd_rot *r) {
    memset(r, 0, sizeof *r);
}

/* Brings one class to a state in which the record alone says which slot to use. */
static enum fkd_err load_class(struct fkd_rot *r, enum fkd_rot_class c) {
    uint8_t buf[REC_LEN + 1];
    size_t len = 0;
    struct fkd_rot_info *ci = &r->cls[c];
    memset(ci, 0, sizeof *ci);
    enum fkd_err rc = fkd_nvs_get_blob(r->nvs, REC_NS, classes[c].name, buf, sizeof buf, &len);
    if (rc == FKD_E_NOTFOUND) {
        ci->active = FKD_ROT_SLOT_A; /* as minted */
    } else if (rc != FKD_OK || rec_parse(buf, len, ci) != FKD_OK) {
        /* Not one of ours: fall back to whichever slot holds a credential, A first, and make
         * the record say so. */
        memset(ci, 0, sizeof *ci);
        ci->active = slot_complete(r, c, FKD_ROT_SLOT_A) || !slot_complete(r, c, FKD_ROT_SLOT_B)
                         ? FKD_ROT_SLOT_A
                         : FKD_ROT_SLOT_B;
        fkd_log(FKD_LOG_ERROR, "rot: %s: damaged record (%s): using slot %c", classes[c].name,
                fkd_strerror(rc == FKD_OK ? FKD_E_CORRUPT : rc), ci->active ? 'B' : 'A');
        struct fkd_rot_info fixed = *ci;
        rc = rec_write(r, c, &fixed);
        if (rc != FKD_OK) {
            return rc;
        }
    }
    unsigned spare = ci->active ^ 1u;
    if (ci->state == FKD_ROT_STAGED || ci->state == FKD_ROT_TRIAL) {
        if (!slot_complete(r, c, ci->active) && slot_complete(r, c, spare)) {
            /* The credential in use vanished behind our back (a tool rewrote NVS) while a
             * successor waits: a rollback would land on nothing, so the successor becomes
             * the credential in use. Found by fuzz_rot_record. */
            fkd_log(FKD_LOG_ERROR,
                    "rot: %s: slot %c incomplete, staged version %lu whole: using it",
                    classes[c].name, ci->active ? 'B' : 'A', (unsigned long)ci->staged_version);
            struct fkd_rot_info fixed = *ci;
            fixed.active = spare;
            fixed.state = FKD_ROT_IDLE;
            fixed.version = ci->staged_version;
            fixed.staged_version = 0;
            fixed.attempts = 0;
            return rec_write(r, c, &fixed);
        }
        if (!slot_complete(r, c, spare)) {
            fkd_log(FKD_LOG_ERROR, "rot: %s: staged version %lu incomplete: rolled back",
                    classes[c].name, (unsigned long)ci->staged_version);
            return fkd_rot_rollback(r, c, FKD_ROT_R_INVALID);
        }
        return FKD_OK;
    }
    /* Idle, committed or rolled back: nothing may be left in the spare slot (an interrupted
     * stage, or the retired credential of a commit whose erase was cut) - unless the active
     * slot is empty or incomplete and the spare is whole (NVS changed behind our back, e.g. a
     * tool rewrote slot A under a record that names B): never erase the only good copy. */
    if (!slot_complete(r, c, ci->active) && slot_complete(r, c, spare)) {
        fkd_log(FKD_LOG_ERROR, "rot: %s: slot %c incomplete, slot %c whole: using %c",
                classes[c].name, ci->active ? 'B' : 'A', spare ? 'B' : 'A', spare ? 'B' : 'A');
        struct fkd_rot_info fixed = *ci;
        fixed.active = spare;
        fixed.state = FKD_ROT_IDLE;
        return rec_write(r, c, &fixed);
    }
    if (slot_any(r, c, spare)) {
        fkd_log(FKD_LOG_INFO, "rot: %s: erasing slot %c (not in use)", classes[c].name,
                spare ? 'B' : 'A');
        return slot_erase(r, c, spare);
    }
    return FKD_OK;
}

enum fkd_err fkd_rot_load(struct fkd_rot *r, struct fkd_nvs *nvs, unsigned max_attempts,
                          uint64_t trial_ms) {
    if (r == NULL || nvs == NULL) {
        return FKD_E_ARG;
    }
    r->nvs = nvs;
    r->max_attempts = max_attempts ? max_attempts : FKD_ROT_DEFAULT_ATTEMPTS;
    r->trial_ms = trial_ms;
    enum fkd_err first = FKD_OK;
    for (unsigned c = 0; c < FKD_ROT_CLASS_COUNT; c++) {
        r->trial_start_ms[c] = 0;
        enum fkd_err rc = load_class(r, (enum fkd_rot_class)c);
        if (rc != FKD_OK && first == FKD_OK) {
            first = rc; /* keep going: every class gets its record read */
        }
    }
    r->loaded = 1;
    return first;
}

const struct fkd_rot_info *fkd_rot_info(const struct fkd_rot *r, enum fkd_rot_class c) {
    static const struct fkd_rot_info none;
    return r != NULL && class_ok(c) ? &r->cls[c] : &none;
}

enum fkd_err fkd_rot_stage(struct fkd_rot *r, enum fkd_rot_class c, uint32_t version,
                           const struct fkd_rot_value *vals, size_t n) {
    if (r == NULL || !r->loaded || !class_ok(c) || vals == NULL || n != classes[c].n) {
        return FKD_E_ARG;
    }
    for (unsigned i = 0; i < classes[c].n; i++) {
        if (check_value(&classes[c].items[i], &vals[i]) != FKD_OK) {
            return FKD_E_ARG;
        }
    }
    struct fkd_rot_info next = r->cls[c];
    if (next.state == FKD_ROT_TRIAL) {
        return FKD_E_STATE; /* a trial ends in commit or rollback, never in a new stage */
    }
    if (version <= next.version) {
        return FKD_E_RANGE;
    }
    enum fkd_err rc;
    if (next.state == FKD_ROT_STAGED) {
        /* The spare slot is about to change under a record that names it staged: first say
         * it is not, so a cut mid-way leaves nothing half-staged in use. */
        next.state = FKD_ROT_IDLE;
        next.staged_version = 0;
        if ((rc = rec_write(r, c, &next)) != FKD_OK) {
            return rc;
        }
    }
    unsigned spare = next.active ^ 1u;
    for (unsigned i = 0; i < classes[c].n; i++) {
        const struct item *it = &classes[c].items[i];
        if (it->is_str) {
            char s[FKD_PSK_ID_MAX + 1];
            memcpy(s, vals[i].data, vals[i].len);
            s[vals[i].len] = '\0';
            rc = fkd_nvs_set_str(r->nvs, it->ns, it->key[spare], s);
        } else {
            rc = fkd_nvs_set_blob(r->nvs, it->ns, it->key[spare], vals[i].data, vals[i].len);
        }
        if (rc != FKD_OK) {
            return rc;
        }
    }
    next.state = FKD_ROT_STAGED;
    next.staged_version = version;
    next.attempts = 0;
    next.reason = FKD_ROT_R_NONE;
    rc = rec_write(r, c, &next);
    if (rc == FKD_OK) {
        fkd_log(FKD_LOG_INFO, "rot: %s: version %lu staged in slot %c", classes[c].name,
                (unsigned long)version, spare ? 'B' : 'A');
    }
    return rc;
}

enum fkd_err fkd_rot_trial_begin(struct fkd_rot *r, enum fkd_rot_class c, uint64_t now_ms) {
    if (r == NULL || !r->loaded || !class_ok(c)) {
        return FKD_E_ARG;
    }
    struct fkd_rot_info next = r->cls[c];
    if (next.state != FKD_ROT_STAGED && next.state != FKD_ROT_TRIAL) {
        return FKD_E_STATE;
    }
    if (next.state == FKD_ROT_TRIAL && next.attempts >= r->max_attempts) {
        fkd_log(FKD_LOG_WARN, "rot: %s: version %lu not confirmed after %u attempts",
                classes[c].name, (unsigned long)next.staged_version, next.attempts);
        enum fkd_err rc = fkd_rot_rollback(r, c, FKD_ROT_R_ATTEMPTS);
        return rc == FKD_OK ? FKD_E_TIMEOUT : rc;
    }
    int first_this_boot = r->trial_start_ms[c] == 0;
    next.state = FKD_ROT_TRIAL;
    next.attempts++;
    /* Counted before the attempt is made: a crash during it still counts. */
    enum fkd_err rc = rec_write(r, c, &next);
    if (rc == FKD_OK && first_this_boot) {
        r->trial_start_ms[c] = now_ms ? now_ms : 1;
    }
    return rc;
}

unsigned fkd_rot_poll(struct fkd_rot *r, uint64_t now_ms) {
    unsigned n = 0;
    if (r == NULL || !r->loaded || r->trial_ms == 0) {
        return 0;
    }
    for (unsigned c = 0; c < FKD_ROT_CLASS_COUNT; c++) {
        uint64_t t0 = r->trial_start_ms[c];
        if (r->cls[c].state != FKD_ROT_TRIAL || t0 == 0 || now_ms < t0 ||
            now_ms - t0 <= r->trial_ms) {
            continue;
        }
        fkd_log(FKD_LOG_WARN, "rot: %s: version %lu not confirmed within %lu ms", classes[c].name,
                (unsigned long)r->cls[c].staged_version, (unsigned long)r->trial_ms);
        if (fkd_rot_rollback(r, (enum fkd_rot_class)c, FKD_ROT_R_TIMEOUT) == FKD_OK) {
            n++;
        }
    }
    return n;
}

enum fkd_err fkd_rot_commit(struct fkd_rot *r, enum fkd_rot_class c, uint32_t version) {
    if (r == NULL || !r->loaded || !class_ok(c)) {
        return FKD_E_ARG;
    }
    struct fkd_rot_info next = r->cls[c];
    if (next.state != FKD_ROT_TRIAL) {
        return FKD_E_STATE;
    }
    if (version != next.staged_version) {
        fkd_log(FKD_LOG_WARN, "rot: %s: server confirmed version %lu, staged is %lu: no commit",
                classes[c].name, (unsigned long)version, (unsigned long)next.staged_version);
        return FKD_E_AUTH;
    }
    unsigned retired = next.active;
    next.state = FKD_ROT_COMMITTED;
    next.active = retired ^ 1u;
    next.version = version;
    next.staged_version = 0;
    next.attempts = 0;
    next.reason = FKD_ROT_R_NONE;
    enum fkd_err rc = rec_write(r, c, &next); /* the commit point */
    if (rc != FKD_OK) {
        return rc;
    }
    r->trial_start_ms[c] = 0;
    fkd_log(FKD_LOG_INFO, "rot: %s: version %lu committed (slot %c)", classes[c].name,
            (unsigned long)version, next.active ? 'B' : 'A');
    return slot_erase(r, c, retired);
}

enum fkd_err fkd_rot_rollback(struct fkd_rot *r, enum fkd_rot_class c, enum fkd_rot_reason why) {
    if (r == NULL || r->nvs == NULL || !class_ok(c) || (unsigned)why > FKD_ROT_R_INVALID) {
        return FKD_E_ARG;
    }
    struct fkd_rot_info next = r->cls[c];
    if (next.state != FKD_ROT_STAGED && next.state != FKD_ROT_TRIAL) {
        return FKD_E_STATE;
    }
    unsigned long was = (unsigned long)next.staged_version;
    next.state = FKD_ROT_ROLLED_BACK;
    next.reason = why;
    next.staged_version = 0;
    enum fkd_err rc = rec_write(r, c, &next);
    if (rc != FKD_OK) {
        return rc;
    }
    r->trial_start_ms[c] = 0;
    fkd_log(FKD_LOG_WARN, "rot: %s: version %lu rolled back (%s)", classes[c].name, was,
            fkd_rot_reason_name(why));
    return slot_erase(r, c, next.active ^ 1u);
}

unsigned fkd_rot_slot_in_use(const struct fkd_rot *r, enum fkd_rot_class c) {
    const struct fkd_rot_info *ci = fkd_rot_info(r, c);
    return ci->state == FKD_ROT_TRIAL ? ci->active ^ 1u : ci->active;
}

int fkd_rot_slot_next(const struct fkd_rot *r, enum fkd_rot_class c) {
    const struct fkd_rot_info *ci = fkd_rot_info(r, c);
    if (ci->state == FKD_ROT_STAGED || ci->state == FKD_ROT_TRIAL) {
        return (int)(ci->active ^ 1u);
    }
    return -1;
}

unsigned fkd_rot_items(enum fkd_rot_class c) {
    return class_ok(c) ? classes[c].n : 0;
}

enum fkd_err fkd_rot_key(enum fkd_rot_class c, unsigned i, unsigned s, const char **ns,
                         const char **key) {
    if (!class_ok(c) || i >= classes[c].n || s > FKD_ROT_SLOT_B) {
        return FKD_E_ARG;
    }
    *ns = classes[c].items[i].ns;
    *key = classes[c].items[i].key[s];
    return FKD_OK;
}

enum fkd_err fkd_rot_read(struct fkd_rot *r, enum fkd_rot_class c, unsigned i, unsigned s,
                          uint8_t *out, size_t out_size, size_t *out_len) {
    const char *ns;
    const char *key;
    if (r == NULL || r->nvs == NULL || fkd_rot_key(c, i, s, &ns, &key) != FKD_OK) {
        return FKD_E_ARG;
    }
    if (classes[c].items[i].is_str) {
        return fkd_nvs_get_str(r->nvs, ns, key, (char *)out, out_size, out_len);
    }
    return fkd_nvs_get_blob(r->nvs, ns, key, out, out_size, out_len);
}

const char *fkd_rot_class_name(enum fkd_rot_class c) {
    return class_ok(c) ? classes[c].name : "?";
}

const char *fkd_rot_state_name(enum fkd_rot_state s) {
    static const char *const names[] = {"idle", "staged", "trial", "committed", "rolled_back"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

const char *fkd_rot_reason_name(enum fkd_rot_reason r) {
    static const char *const names[] = {"none", "attempts", "timeout", "server", "invalid"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}
