/* The OTA channel of a device session (docs/wss-protocol.md, "What the server pushes, and
 * when"): see jobs_internal.h. */
#include "jobs_internal.h"

#include "rot_internal.h"
#include "session_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int send_request(struct session *s, enum fk_ota_action a, cJSON *body) {
    s->pending_act = a;
    return fk_srv_send_request(s, a == FK_OTA_ACT_NONE ? "status" : fk_ota_action_kind(a), body);
}

static cJSON *key_body(struct fk_server *srv, const char *slot) {
    char der[2 * FK_ROT_DER_MAX];
    char endorsement[2 * FK_ROT_ENDORSE_LEN];
    if (fk_base64_encode(srv->rot.new_der, srv->rot.new_der_len, der, sizeof der) != FK_OK ||
        fk_base64_encode(srv->rot.endorsement, sizeof srv->rot.endorsement, endorsement,
                         sizeof endorsement) != FK_OK) {
        return NULL;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "slot", slot);
    cJSON_AddStringToObject(b, "der", der);
    cJSON_AddStringToObject(b, "fingerprint", srv->rot.keys.new_fpr);
    /* the old key's signature over the new one: the device's own check, so that this server
     * cannot introduce a firmware key (rotation.h, FK_ROT_ENDORSE_TAG) */
    cJSON_AddStringToObject(b, "endorsement", endorsement);
    return b;
}

/* After welcome and after each response: at most one next request, in the protocol's order. */
int fk_srv_push_next(struct session *s) {
    struct fk_server *srv = s->srv;
    if (!s->hello_done || s->pending[0] != '\0' || s->close_code != 0 || s->closing ||
        s->superseded) {
        return 0;
    }
    if (srv->cfg.status_request && !s->status_sent) {
        s->status_sent = 1;
        return send_request(s, FK_OTA_ACT_STATUS, NULL);
    }
    if (s->target == NULL || fk_ota_tstate_final(s->target->state)) {
        s->target = fk_srv_find_target(srv, s->id, &s->job);
    }
    const char *newf = srv->rot.keys.new_fpr, *oldf = srv->rot.keys.old_fpr;
    struct fk_ota_view v;
    memset(&v, 0, sizeof v);
    v.has_ota = s->ota.present;
    v.status_due = s->status_due;
    v.rot_active = srv->rot_found && !srv->rot_new_retired && srv->rot.new_der_len > 0;
    v.reports_new = v.rot_active && fk_srv_reports_key(&s->ota, NULL, newf);
    v.has_trusted_key = s->ota.nkeys > 0;
    v.key_new_tried = s->key_new_tried;
    v.old_retired = srv->rot_old_retired;
    v.old_in_primary = v.rot_active && fk_srv_reports_key(&s->ota, "ota_pubkey", oldf);
    v.new_in_secondary = v.rot_active && fk_srv_reports_key(&s->ota, "ota_pubkey2", newf);
    v.key_promote_tried = s->key_promote_tried;
    /* Promotion drops the old key from the device: only once it runs an image signed by the
     * new key alone (always so after a normal retire-old; not for a device forced past the
     * interlock by the incident path until it installed one). Asked only when it matters. */
    if (v.old_retired && v.old_in_primary && v.new_in_secondary && !v.key_promote_tried) {
        v.promote_hold = fk_srv_cred_active(srv, s->id, FK_ROT_KIND_FW, newf) != 1;
    }
    v.need_abort = s->need_abort;
    v.t = s->target;
    v.size = s->job != NULL ? s->job->info.size : 0;
    enum fk_ota_action a = fk_ota_next(&v);
    cJSON *b = NULL;
    switch (a) {
    case FK_OTA_ACT_NONE:
        /* docs/wss-protocol.md: the rotation's pushes come after the OTA items */
        s->pending_act = FK_OTA_ACT_NONE;
        return fk_srv_rot_push(s);
    case FK_OTA_ACT_STATUS:
        s->status_due = 0;
        break;
    case FK_OTA_ACT_KEY_NEW:
    case FK_OTA_ACT_KEY_PROMOTE:
        if (a == FK_OTA_ACT_KEY_NEW) {
            s->key_new_tried = 1;
        } else {
            s->key_promote_tried = 1;
        }
        b = key_body(srv, a == FK_OTA_ACT_KEY_NEW ? "ota_pubkey2" : "ota_pubkey");
        if (b == NULL) {
            return 0;
        }
        fk_log(FK_LOG_INFO, "server: %s %s: sending OTA key %s as %s", s->peer, s->id, newf,
               a == FK_OTA_ACT_KEY_NEW ? "ota_pubkey2" : "ota_pubkey");
        break;
    case FK_OTA_ACT_ABORT:
    case FK_OTA_ACT_FINISH:
        break;
    case FK_OTA_ACT_BEGIN:
        s->target->attempts++;
        b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "size", (double)s->job->info.size);
        cJSON_AddStringToObject(b, "sha256", s->job->info.sha256);
        cJSON_AddStringToObject(b, "version", s->job->info.version);
        fk_log(FK_LOG_INFO, "server: ota %s: %s: ota_begin, %llu bytes, version %s (attempt %u)",
               s->job->id, s->id, (unsigned long long)s->job->info.size, s->job->info.version,
               s->target->attempts);
        break;
    case FK_OTA_ACT_CHUNK: {
        uint8_t data[FK_OTA_CHUNK];
        char b64[4 * (FK_OTA_CHUNK / 3 + 1) + 1];
        uint64_t off = s->target->sent;
        size_t n = s->target->chunk;
        if (n == 0 || n > FK_OTA_CHUNK) {
            n = FK_OTA_CHUNK;
        }
        if (n > s->job->info.size - off) {
            n = (size_t)(s->job->info.size - off);
        }
        ssize_t r = pread(s->job->fd, data, n, (off_t)off);
        if (r != (ssize_t)n || fk_base64_encode(data, n, b64, sizeof b64) != FK_OK) {
            enum fk_ota_tstate was = s->target->state;
            s->target->attempts = FK_OTA_MAX_ATTEMPTS;
            if (fk_ota_target_lost(s->target, "spool file unreadable")) {
                fk_srv_target_changed(srv, s->job, s->target, was);
            }
            return 0;
        }
        b = cJSON_CreateObject();
        cJSON_AddNumberToObject(b, "offset", (double)off);
        cJSON_AddStringToObject(b, "data", b64);
        srv->ota_bytes += n;
        break;
    }
    }
    return send_request(s, a, b);
}

/* The presence row keeps the device's newest "ota" report, not only hello's: a status answer
 * (valid after a reboot) or a new key set (ota_key) is what the next job's interlock and
 * idempotence check must see, also when the device is offline by then. keys (may be NULL)
 * replaces the "keys" member of the stored report; else ota_json replaces it whole. */
static void presence_update_ota(struct fk_server *srv, const char *id, const char *ota_json,
                                const struct fk_wss_ota_key *keys, size_t nkeys) {
    struct fk_inv_presence *p = malloc(sizeof *p);
    struct fk_diag d;
    fk_diag_init(&d);
    if (p == NULL || fk_inventory_presence_get(srv->inv, id, p, &d) != FK_OK) {
        free(p);
        return;
    }
    if (keys != NULL) {
        cJSON *o = cJSON_Parse(p->ota);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            o = cJSON_CreateObject();
        }
        cJSON *k = cJSON_CreateObject();
        for (size_t i = 0; i < nkeys; i++) {
            cJSON_AddStringToObject(k, keys[i].name, keys[i].fpr);
        }
        cJSON_DeleteItemFromObjectCaseSensitive(o, "keys");
        cJSON_AddItemToObject(o, "keys", k);
        if (!cJSON_PrintPreallocated(o, p->ota, (int)sizeof p->ota, 0)) {
            p->ota[0] = '\0';
        }
        cJSON_Delete(o);
    } else {
        snprintf(p->ota, sizeof p->ota, "%s", ota_json);
    }
    p->last_seen[0] = '\0';
    if (p->ota[0] == '\0' || fk_inventory_device_seen(srv->inv, p, NULL, NULL, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: OTA state not recorded: %s", id, d.msg);
    }
    free(p);
}

/* A response to one of our requests (already matched to s->pending). */
void fk_srv_push_response(struct session *s, const struct fk_wss_msg *m) {
    struct fk_server *srv = s->srv;
    enum fk_ota_action a = s->pending_act;
    if (s->rot_act != ROT_ACT_NONE) {
        fk_srv_rot_response(s, m);
        return;
    }
    char code[FK_WSS_STR_MAX + 1], msg[FK_WSS_STR_MAX + 1];
    fk_srv_log_safe(m->err_code, code, sizeof code);
    fk_srv_log_safe(m->err_msg, msg, sizeof msg);
    switch (a) {
    case FK_OTA_ACT_STATUS:
        if (m->ok && m->ota.present) {
            s->ota = m->ota;
            presence_update_ota(srv, s->id, m->ota_json, NULL, 0);
            fk_srv_apply_report(s, &m->ota);
        }
        break;
    case FK_OTA_ACT_KEY_NEW:
    case FK_OTA_ACT_KEY_PROMOTE: {
        const char *slot = a == FK_OTA_ACT_KEY_NEW ? "ota_pubkey2" : "ota_pubkey";
        if (!m->ok) {
            fk_log(FK_LOG_WARN, "server: %s %s: ota_key %s refused: %s (%s)", s->peer, s->id, slot,
                   code, msg);
            break;
        }
        if (m->has_keys) {
            s->ota.nkeys = m->nkeys;
            memcpy(s->ota.keys, m->keys, sizeof s->ota.keys);
            presence_update_ota(srv, s->id, NULL, m->keys, m->nkeys);
        }
        srv->ota_keys[a == FK_OTA_ACT_KEY_NEW ? 0 : 1]++;
        fk_log(FK_LOG_INFO, "server: %s %s: ota_key %s %s accepted", s->peer, s->id, slot,
               srv->rot.keys.new_fpr);
        char detail[256];
        snprintf(detail, sizeof detail, "{\"slot\":\"%s\",\"fingerprint\":\"%s\"}", slot,
                 srv->rot.keys.new_fpr);
        struct fk_diag d;
        fk_diag_init(&d);
        if (fk_inventory_audit_append(srv->inv, "fleetkey-server", "device.ota_key_delivered",
                                      s->id, detail, &d) != FK_OK) {
            fk_log(FK_LOG_WARN, "server: %s: audit not written: %s", s->id, d.msg);
        }
        if (fk_srv_reports_key(&s->ota, NULL, srv->rot.keys.new_fpr) && !s->rot_confirmed) {
            s->rot_confirmed = 1;
            fk_srv_rot_confirm(srv, s->id, 0);
        }
        break;
    }
    case FK_OTA_ACT_ABORT:
        s->need_abort = 0;
        break;
    case FK_OTA_ACT_BEGIN:
    case FK_OTA_ACT_CHUNK:
    case FK_OTA_ACT_FINISH: {
        struct fk_ota_target *t = s->target;
        if (t == NULL || s->job == NULL) {
            break;
        }
        if (!m->ok) {
            fk_log(FK_LOG_WARN, "server: ota %s: %s: %s refused: %s (%s)", s->job->id, s->id,
                   fk_ota_action_kind(a), code, msg);
        } else if (a == FK_OTA_ACT_FINISH) {
            char key[FK_WSS_FPR_MAX + 1];
            fk_log(FK_LOG_INFO, "server: ota %s: %s: installed into %s, key %s", s->job->id, s->id,
                   fk_srv_log_safe(m->slot, code, sizeof code),
                   fk_srv_log_safe(m->key, key, sizeof key));
        }
        enum fk_ota_tstate was = t->state;
        int abort_first = 0;
        if (fk_ota_target_response(t, a, s->job->info.size, m->ok, m->err_code, m->chunk,
                                   m->received, &abort_first)) {
            fk_srv_target_changed(srv, s->job, t, was);
        }
        if (abort_first) {
            s->need_abort = 1;
        }
        break;
    }
    case FK_OTA_ACT_NONE:
        break;
    }
}

/* A pending request went unanswered for 30 s. */
void fk_srv_push_timeout(struct session *s) {
    enum fk_ota_action a = s->pending_act;
    /* The plan's own timeout delivers again, unless the answer still comes (s->late). */
    s->late_rot_act = s->rot_act;
    s->late_rot_cls = s->rot_cls;
    s->rot_act = ROT_ACT_NONE;
    struct fk_ota_target *t = s->target;
    if (t == NULL || s->job == NULL) {
        return;
    }
    enum fk_ota_tstate was = t->state;
    int changed = 0, abort_first = 0;
    if (a == FK_OTA_ACT_BEGIN) {
        changed =
            fk_ota_target_response(t, a, s->job->info.size, 0, "timeout", -1, -1, &abort_first);
        abort_first = 1;
    } else if (a == FK_OTA_ACT_CHUNK || a == FK_OTA_ACT_FINISH) {
        changed = fk_ota_target_lost(t, "request timed out");
        abort_first = 1;
    }
    s->need_abort = abort_first;
    if (changed) {
        fk_srv_target_changed(s->srv, s->job, t, was);
    }
}

/* The connection is going away: a transfer in flight goes back to the queue. */
void fk_srv_push_closed(struct session *s) {
    struct fk_ota_target *t = s->target;
    if (t != NULL && s->job != NULL && t->state == FK_OTA_SENDING) {
        enum fk_ota_tstate was = t->state;
        if (fk_ota_target_lost(t, "connection closed during the transfer")) {
            fk_srv_target_changed(s->srv, s->job, t, was);
        }
    }
}

/* After a hello with "ota": update targets, confirm a delivered key, decide on status. */
void fk_srv_hello_ota(struct session *s) {
    struct fk_server *srv = s->srv;
    /* A device that reconnects while its previous connection lingers (power lost: no FIN
     * until the idle time-out): the new connection takes the transfer over, and the old one
     * must neither answer for it nor, when it finally closes, reset it. */
    for (struct session *o = fk_srv_sessions_hashed(srv, s->id); o != NULL; o = o->id_next) {
        if (o != s && o->hello_done && strcmp(o->id, s->id) == 0) {
            o->target = NULL;
            o->job = NULL;
            o->superseded = 1;
        }
    }
    fk_srv_rot_refresh(srv);
    if (!s->ota.present) {
        return;
    }
    fk_srv_apply_report(s, &s->ota);
    /* "status, when hello said state: pending_verify and an update job targets the device" */
    s->status_due = strcmp(s->ota.state, "pending_verify") == 0 && s->target != NULL;
    if (srv->rot_found && fk_srv_reports_key(&s->ota, NULL, srv->rot.keys.new_fpr)) {
        s->rot_confirmed = 1;
        fk_srv_rot_confirm(srv, s->id, 0);
    }
}
