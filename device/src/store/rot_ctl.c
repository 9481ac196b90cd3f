/* The DTLS listener follows the psk rotation class (fkd/rot_remote.h, fkd_rot_ctl_sync):
 * current = the active slot, next = the staged slot while staged or in trial. The listener holds
 * copies of the keys (fkd_ctl_set_psk), so this compares what it was last given with what the
 * state machine says now and only touches what changed:
 *   - the active version became the one held as next: a commit. fkd_ctl_commit_next closes the
 *     sessions of the retired key and promotes next, whose own sessions stay open;
 *   - a next key withdrawn (rollback): its sessions are closed and the slot emptied;
 *   - a new staged version: read from its slot and installed as next.
 * Key bytes pass through a stack buffer that is wiped before returning. */
#include "fkd/ctl.h"
#include "fkd/rot_remote.h"
#include "fkd/store.h"

#include <string.h>

void fkd_rot_ctl_init(struct fkd_rot_ctl *s) {
    memset(s, 0, sizeof *s);
}

/* Installs the PSK and identity of slot as the listener's key slot k. */
static enum fkd_err install(struct fkd_rot *rot, unsigned slot, struct fkd_ctl *ctl,
                            enum fkd_ctl_slot k, uint32_t version) {
    uint8_t psk[FKD_PSK_LEN + 1];
    char id[FKD_PSK_ID_MAX + 1];
    size_t pl = 0, il = 0;
    enum fkd_err rc = fkd_rot_read(rot, FKD_ROT_PSK, 0, slot, psk, sizeof psk, &pl);
    if (rc == FKD_OK) {
        rc = fkd_rot_read(rot, FKD_ROT_PSK, 1, slot, (uint8_t *)id, sizeof id, &il);
    }
    if (rc == FKD_OK && (pl != FKD_PSK_LEN || fkd_ctl_set_psk(ctl, k, (const uint8_t *)id, il, psk,
                                                              pl, version) != FKD_CTL_OK)) {
        rc = FKD_E_ARG;
    }
    fkd_wipe(psk, sizeof psk);
    return rc;
}

enum fkd_err fkd_rot_ctl_sync(struct fkd_rot_ctl *s, struct fkd_rot *rot, struct fkd_ctl *ctl) {
    enum fkd_err rc = FKD_E_ARG;
    if (s == NULL || rot == NULL || ctl == NULL) {
        return rc;
    }
    const struct fkd_rot_info *i = fkd_rot_info(rot, FKD_ROT_PSK);
    int next_slot = fkd_rot_slot_next(rot, FKD_ROT_PSK);
    uint32_t want_next = next_slot >= 0 ? i->staged_version : 0;
    if (s->synced && s->has_next && i->version == s->next_version &&
        s->current_version != i->version) {
        (void)fkd_ctl_commit_next(ctl);
        s->current_version = i->version;
        s->has_next = 0;
        s->next_version = 0;
    } else if (!s->synced || s->current_version != i->version) {
        FKD_GUARD(install(rot, i->active, ctl, FKD_CTL_SLOT_CURRENT, i->version));
        s->current_version = i->version;
        s->synced = 1;
    }
    if (s->has_next && (want_next == 0 || want_next != s->next_version)) {
        size_t n = fkd_ctl_close_slot(ctl, FKD_CTL_SLOT_NEXT);
        fkd_ctl_clear_psk(ctl, FKD_CTL_SLOT_NEXT);
        fkd_log(FKD_LOG_INFO,
                "rot: psk: listener: next key version %lu withdrawn, %zu session(s) "
                "closed",
                (unsigned long)s->next_version, n);
        s->has_next = 0;
        s->next_version = 0;
    }
    if (want_next != 0 && !s->has_next) {
        FKD_GUARD(install(rot, (unsigned)next_slot, ctl, FKD_CTL_SLOT_NEXT, want_next));
        s->has_next = 1;
        s->next_version = want_next;
        fkd_log(FKD_LOG_INFO, "rot: psk: listener: version %lu accepted as the next key",
                (unsigned long)want_next);
    }
    rc = FKD_OK;
out:
    return rc;
}
