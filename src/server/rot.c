/* Credential rotation jobs, delivery, confirmation and revocation (rot.c): see rot_internal.h. */
#include "rot_internal.h"

#include "jobs_internal.h"
#include "session_internal.h"

#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- delivery ----------------------------------------------------------------------------- */

static size_t index_of(const struct rot_job *j, const char *device) {
    const struct fk_plan_target *t = fk_plan_find(j->p, device);
    return t == NULL ? (size_t)-1 : (size_t)(t - j->p->t);
}

/* fk_plan_step's delivery: only marks it due for a connected rotation-capable device. */
static int send_cb(void *user, const char *device, enum fk_plan_class c, unsigned attempt,
                   char reason[FK_PLAN_REASON_SIZE]) {
    struct fk_server *srv = user;
    struct rot_job *j = fk_srv_rot_current(srv);
    struct session *s = fk_srv_session_of(srv, device);
    size_t i = j != NULL ? index_of(j, device) : (size_t)-1;
    if (i == (size_t)-1) {
        snprintf(reason, FK_PLAN_REASON_SIZE, "internal: no job");
        return -1;
    }
    if (s == NULL || !s->rot.present) {
        return 0;
    }
    if (!s->rot.c[c].present) {
        snprintf(reason, FK_PLAN_REASON_SIZE, "device does not rotate %s", fk_plan_class_name(c));
        return -1;
    }
    j->d[i].due[c] = 1;
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: %s delivery due (attempt %u)", j->id, device,
           fk_plan_class_name(c), attempt);
    return 1;
}

struct vmax {
    const char *kind;
    unsigned max;
};

static int vmax_cb(void *user, const struct fk_inv_credential *c) {
    struct vmax *v = user;
    if (strcmp(c->kind, v->kind) == 0 && c->version > v->max) {
        v->max = c->version;
    }
    return 0;
}

/* The successor's version: above what the device reports and what the inventory holds. */
static unsigned next_version(struct fk_server *srv, struct session *s, struct rot_dev *rd,
                             enum fk_plan_class c) {
    struct vmax v = {fk_srv_rot_cred_kind[c], 0};
    if (fk_inventory_credential_list(srv->inv, s->id, vmax_cb, &v, NULL) != FK_OK) {
        v.max = 0; /* the device's report and our record still count */
    }
    unsigned m = v.max;
    const struct fk_wss_rot_class *rc = &s->rot.c[c];
    if ((unsigned long long)rc->version > m) {
        m = (unsigned)rc->version;
    }
    if ((unsigned long long)rc->staged_version > m) {
        m = (unsigned)rc->staged_version;
    }
    if (rd->version[c] > m) {
        m = rd->version[c];
    }
    return m + 1;
}

/* The successor as an inventory row in state staged (a retry replaces nothing: new version);
 * not_after: the certificate's expiry (unix seconds), 0 for a credential without one. */
static void record_staged(struct fk_server *srv, const char *dev, enum fk_plan_class c,
                          unsigned version, const char *fpr, long long not_after) {
    struct fk_inv_credential cr;
    struct fk_diag d;
    fk_diag_init(&d);
    memset(&cr, 0, sizeof cr);
    snprintf(cr.device_id, sizeof cr.device_id, "%s", dev);
    snprintf(cr.kind, sizeof cr.kind, "%s", fk_srv_rot_cred_kind[c]);
    cr.version = version;
    snprintf(cr.fingerprint, sizeof cr.fingerprint, "%s", fpr);
    fk_time_rfc3339((long long)time(NULL), cr.created_at);
    if (not_after > 0) {
        fk_time_rfc3339(not_after, cr.expires_at); /* what /metrics' expiry horizon reads */
    }
    snprintf(cr.state, sizeof cr.state, "staged");
    if (fk_inventory_credential_add(srv->inv, &cr, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: %s v%u not recorded: %s", dev, fk_srv_rot_cred_kind[c],
               version, d.msg);
    }
}

static int send_rot(struct session *s, enum rot_act a, enum fk_plan_class c, const char *kind,
                    cJSON *body) {
    s->rot_act = a;
    s->rot_cls = c;
    return fk_srv_send_request(s, kind, body);
}

static int stage_psk(struct fk_server *srv, struct session *s, struct rot_job *j,
                     struct rot_dev *rd) {
    char b64[64], fpr[FK_FPR_LEN];
    if (RAND_priv_bytes(rd->psk, ROT_PSK_LEN) != 1 ||
        fk_base64_encode(rd->psk, ROT_PSK_LEN, b64, sizeof b64) != FK_OK) {
        return 0;
    }
    unsigned v = next_version(srv, s, rd, FK_PLAN_PSK);
    /* Durable before it leaves: a PSK the device holds but the server lost could never be
     * confirmed (recover_psk). Not written: nothing sent, the plan's timeout delivers again. */
    if (fk_srv_rot_write_psk(srv, s->id, v, rd->psk, 1) != 0) {
        fk_wipe(rd->psk, ROT_PSK_LEN);
        rd->has_psk = 0;
        return 0;
    }
    rd->has_psk = 1;
    rd->version[FK_PLAN_PSK] = v;
    snprintf(rd->fpr[FK_PLAN_PSK], sizeof rd->fpr[FK_PLAN_PSK], "%s",
             fk_fpr(rd->psk, ROT_PSK_LEN, fpr));
    record_staged(srv, s->id, FK_PLAN_PSK, rd->version[FK_PLAN_PSK], rd->fpr[FK_PLAN_PSK], 0);
    fk_srv_rot_dirty(j);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "class", "psk");
    cJSON_AddNumberToObject(b, "version", rd->version[FK_PLAN_PSK]);
    cJSON_AddStringToObject(b, "psk", b64);
    char identity[FK_WSS_ID_MAX + 16];
    fk_srv_rot_psk_identity(s->id, rd->version[FK_PLAN_PSK], identity, sizeof identity);
    cJSON_AddStringToObject(b, "identity", identity);
    fk_wipe(b64, sizeof b64);
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: rot_stage psk v%u %s", j->id, s->id,
           rd->version[FK_PLAN_PSK], rd->fpr[FK_PLAN_PSK]);
    int r = send_rot(s, ROT_ACT_STAGE, FK_PLAN_PSK, "rot_stage", b);
    return r;
}

/* The trust anchors of cfg.ca_bundle in rot_stage ca. */
static int stage_ca(struct fk_server *srv, struct session *s, struct rot_job *j,
                    struct rot_dev *rd) {
    uint8_t *der = NULL;
    size_t dl = 0, nc = 0;
    char why[256];
    char *b64 = NULL;
    size_t bl = (ROT_CA_DER_MAX + 2) / 3 * 4 + 1;
    if (fk_srv_rot_ca_bundle(srv, &der, &dl, &nc, rd->fpr[FK_PLAN_CA], why, sizeof why) != 0 ||
        (b64 = malloc(bl)) == NULL || fk_base64_encode(der, dl, b64, bl) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: %s: ca not staged: %s", j->id, s->id,
               der == NULL ? why : "out of memory");
        if (fk_plan_report(j->p, s->id, FK_PLAN_CA, FK_PLAN_T_FAILED, "ca_bundle unusable") ==
            FK_OK) {
            fk_srv_rot_dirty(j);
        }
        free(der);
        free(b64);
        return 0;
    }
    free(der);
    rd->version[FK_PLAN_CA] = next_version(srv, s, rd, FK_PLAN_CA);
    record_staged(srv, s->id, FK_PLAN_CA, rd->version[FK_PLAN_CA], rd->fpr[FK_PLAN_CA], 0);
    fk_srv_rot_dirty(j);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "class", "ca");
    cJSON_AddNumberToObject(b, "version", rd->version[FK_PLAN_CA]);
    cJSON_AddStringToObject(b, "cert", b64);
    free(b64);
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: rot_stage ca v%u (%zu certificates) %s", j->id,
           s->id, rd->version[FK_PLAN_CA], nc, rd->fpr[FK_PLAN_CA]);
    return send_rot(s, ROT_ACT_STAGE, FK_PLAN_CA, "rot_stage", b);
}

/* The new OTA key, its endorsement and the trial manifest in rot_stage ota (rot_ota.c). */
static int stage_ota(struct fk_server *srv, struct session *s, struct rot_job *j,
                     struct rot_dev *rd) {
    char why[512];
    cJSON *b = fk_srv_rot_ota_body(srv, rd->fpr[FK_PLAN_OTA], why, sizeof why);
    if (b == NULL) {
        fk_log(FK_LOG_WARN, "server: rotation %s: %s: ota not staged: %s", j->id, s->id, why);
        if (fk_plan_report(j->p, s->id, FK_PLAN_OTA, FK_PLAN_T_FAILED, why) == FK_OK) {
            fk_srv_rot_dirty(j);
        }
        return 0;
    }
    rd->version[FK_PLAN_OTA] = next_version(srv, s, rd, FK_PLAN_OTA);
    record_staged(srv, s->id, FK_PLAN_OTA, rd->version[FK_PLAN_OTA], rd->fpr[FK_PLAN_OTA], 0);
    fk_srv_rot_dirty(j);
    cJSON_AddStringToObject(b, "class", "ota");
    cJSON_AddNumberToObject(b, "version", rd->version[FK_PLAN_OTA]);
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: rot_stage ota v%u %s", j->id, s->id,
           rd->version[FK_PLAN_OTA], rd->fpr[FK_PLAN_OTA]);
    return send_rot(s, ROT_ACT_STAGE, FK_PLAN_OTA, "rot_stage", b);
}

static int is_state(const struct fk_wss_rot_class *c, const char *st) {
    return c->present && strcmp(c->state, st) == 0;
}

static void recover_mtls(struct session *s, struct rot_job *j, struct rot_dev *rd,
                         const struct fk_wss_rot_class *dc);

struct staged_row {
    const char *kind, *since;
    unsigned long long version;
    int found;
};

static int staged_cb(void *user, const struct fk_inv_credential *c) {
    struct staged_row *r = user;
    if (strcmp(c->kind, r->kind) == 0 && (unsigned long long)c->version == r->version &&
        strcmp(c->state, "staged") == 0 && strcmp(c->created_at, r->since) >= 0) {
        r->found = 1;
    }
    return 0;
}

/* 1 when the plans are shared and the inventory holds a staged row of class c, version v,
 * for dev, recorded since j was created: another instance of this plan delivered it and its
 * next merge brings it here (then this instance confirms it, or the device's own trial limits
 * roll it back), so it is not rolled back as a stranger. */
static int issued_elsewhere(struct fk_server *srv, const struct rot_job *j, const char *dev,
                            enum fk_plan_class c, unsigned long long v) {
    struct staged_row r = {fk_srv_rot_cred_kind[c], j->created_at, v, 0};
    return fk_srv_rot_shared(srv) && j->db_id != 0 &&
           fk_inventory_credential_list(srv->inv, dev, staged_cb, &r, NULL) == FK_OK && r.found;
}

int fk_srv_rot_push(struct session *s) {
    struct fk_server *srv = s->srv;
    struct rot_job *j = fk_srv_rot_current(srv);
    if (!s->rot.present || j == NULL) {
        return 0;
    }
    size_t i = index_of(j, s->id);
    if (i == (size_t)-1) {
        return 0;
    }
    struct rot_dev *rd = &j->d[i];
    for (int c = 0; c < FK_PLAN_CLASSES; c++) {
        if (rd->commit_due[c]) {
            rd->commit_due[c] = 0;
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "class", fk_plan_class_name((enum fk_plan_class)c));
            cJSON_AddNumberToObject(b, "version", rd->version[c]);
            if (c == FK_PLAN_MTLS) {
                cJSON_AddStringToObject(b, "serial", rd->serial);
            }
            fk_log(FK_LOG_INFO, "server: rotation %s: %s: rot_commit %s v%u", j->id, s->id,
                   fk_plan_class_name((enum fk_plan_class)c), rd->version[c]);
            return send_rot(s, ROT_ACT_COMMIT, (enum fk_plan_class)c, "rot_commit", b);
        }
    }
    if (j->p->state != FK_PLAN_RUNNING && j->p->state != FK_PLAN_SETTLED) {
        return 0;
    }
    for (int c = 0; c < FK_WSS_ROT_CLASSES; c++) {
        if (!rd->due[c]) {
            continue;
        }
        if (j->p->t[i].state[c] != FK_PLAN_T_SENT) {
            /* Confirmed (or failed) since the delivery was asked for: a new credential now
             * would replace the one the device just committed, and the interlock would then
             * revoke the committed one, cutting the device off. */
            rd->due[c] = 0;
            continue;
        }
        const struct fk_wss_rot_class *dc = &s->rot.c[c];
        if ((is_state(dc, "trial") || is_state(dc, "staged")) && dc->staged_version > 0 &&
            (unsigned long long)dc->staged_version != rd->version[c]) {
            if (c == FK_PLAN_MTLS && is_state(dc, "trial")) {
                /* issued by this plan (a restart, another instance) and proven by the
                 * handshake: confirm it rather than roll it back */
                recover_mtls(s, j, rd, dc);
                if ((unsigned long long)dc->staged_version == rd->version[c]) {
                    rd->due[c] = 0;
                    fk_srv_rot_recheck(s);
                    return fk_srv_rot_push(s);
                }
            }
            if (issued_elsewhere(srv, j, s->id, (enum fk_plan_class)c, dc->staged_version)) {
                return 0; /* another instance's delivery: its merge brings it in a second */
            }
            /* another version in trial: the device says busy until it is rolled back */
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "class", fk_plan_class_name((enum fk_plan_class)c));
            cJSON_AddStringToObject(b, "reason", "server");
            return send_rot(s, ROT_ACT_ROLLBACK, (enum fk_plan_class)c, "rot_rollback", b);
        }
        rd->due[c] = 0;
        srv->rot_delivered++;
        if (c == FK_PLAN_PSK) {
            return stage_psk(srv, s, j, rd);
        }
        if (c == FK_PLAN_CA) {
            return stage_ca(srv, s, j, rd);
        }
        if (c == FK_PLAN_OTA) {
            return stage_ota(srv, s, j, rd);
        }
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "class", "mtls");
        cJSON_AddStringToObject(b, "subject", s->id);
        return send_rot(s, ROT_ACT_CSR, FK_PLAN_MTLS, "rot_csr", b);
    }
    return 0;
}

/* rot_csr answered: sign it, record it, stage it. */
static int stage_mtls(struct fk_server *srv, struct session *s, struct rot_job *j,
                      struct rot_dev *rd, const char *csr) {
    struct fk_diag d;
    fk_diag_init(&d);
    struct fk_pki_issued *is = NULL;
    char b64[4096];
    const char *why = NULL;
    if (srv->ca == NULL && fk_pki_ca_open(srv->cfg.ca_dir, &srv->ca, &d) != FK_OK) {
        why = "CA unavailable";
    } else {
        struct fk_pki_issue_opts o;
        memset(&o, 0, sizeof o);
        o.kind = FK_PKI_DEVICE;
        o.name = s->id;
        o.csr = (const uint8_t *)csr;
        o.csr_len = strlen(csr);
        size_t dl = 0;
        if (fk_pki_issue(srv->ca, &o, &is, &d) != FK_OK) {
            why = "CSR refused";
        } else {
            const uint8_t *der = fk_pki_issued_cert_der(is, &dl);
            if (fk_base64_encode(der, dl, b64, sizeof b64) != FK_OK) {
                why = "certificate too big";
            }
        }
    }
    if (why != NULL) {
        /* A CA outage or a bad CSR: the plan's timeout delivers again (a new CSR). */
        fk_log(FK_LOG_WARN, "server: rotation %s: %s: %s: %s", j->id, s->id, why, d.msg);
        fk_pki_issued_free(is);
        return 0;
    }
    rd->version[FK_PLAN_MTLS] = next_version(srv, s, rd, FK_PLAN_MTLS);
    snprintf(rd->serial, sizeof rd->serial, "%s", fk_pki_issued_serial(is));
    snprintf(rd->fpr[FK_PLAN_MTLS], sizeof rd->fpr[FK_PLAN_MTLS], "%s",
             fk_pki_issued_fingerprint(is));
    long long not_after = (long long)fk_pki_issued_not_after(is);
    fk_pki_issued_free(is);
    record_staged(srv, s->id, FK_PLAN_MTLS, rd->version[FK_PLAN_MTLS], rd->fpr[FK_PLAN_MTLS],
                  not_after);
    fk_srv_rot_dirty(j);
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: rot_stage mtls v%u serial %s", j->id, s->id,
           rd->version[FK_PLAN_MTLS], rd->serial);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "class", "mtls");
    cJSON_AddNumberToObject(b, "version", rd->version[FK_PLAN_MTLS]);
    cJSON_AddStringToObject(b, "cert", b64);
    return send_rot(s, ROT_ACT_STAGE, FK_PLAN_MTLS, "rot_stage", b);
}

struct rows {
    const char *kind;
    size_t n;
    unsigned v[64];
    char state[64][FK_INV_STATE_SIZE];
};

static int rows_cb(void *user, const struct fk_inv_credential *c) {
    struct rows *r = user;
    if (strcmp(c->kind, r->kind) == 0 && r->n < 64) {
        r->v[r->n] = c->version;
        snprintf(r->state[r->n], sizeof r->state[r->n], "%s", c->state);
        r->n++;
    }
    return 0;
}

/* Rows of kind for dev: version keep (0: none) becomes keep_state (unless NULL); every other
 * row not yet revoked becomes other_state when it is active or staged (retire) or any state
 * (revoke). A staged row other than the confirmed version is a delivery the device never took
 * (timed out and sent again, or lost in a kill -9): left staged, nothing would ever end it
 * for a class whose revocation touches no rows (ca). */
static size_t set_states(struct fk_server *srv, const char *dev, const char *kind, unsigned keep,
                         const char *keep_state, const char *other_state) {
    struct rows r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    size_t changed = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_credential_list(srv->inv, dev, rows_cb, &r, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: %s: credentials not read: %s", dev, d.msg);
        return 0;
    }
    int revoking = strcmp(other_state, "revoked") == 0;
    for (size_t k = 0; k < r.n; k++) {
        const char *to = NULL;
        if (r.v[k] == keep) {
            to = keep_state;
        } else if (strcmp(r.state[k], "revoked") != 0 &&
                   (revoking || strcmp(r.state[k], "active") == 0 ||
                    strcmp(r.state[k], "staged") == 0)) {
            to = other_state;
        }
        if (to != NULL && strcmp(to, r.state[k]) != 0) {
            if (fk_inventory_credential_set_state(srv->inv, dev, kind, r.v[k], to, &d) == FK_OK) {
                changed++;
            } else {
                fk_log(FK_LOG_WARN, "server: %s: %s v%u not set %s: %s", dev, kind, r.v[k], to,
                       d.msg);
            }
        }
    }
    return changed;
}

/* The device confirmed class c: inventory successor active, predecessors retired (revoked
 * only after the interlock). */
static void confirmed(struct fk_server *srv, struct rot_job *j, size_t i, enum fk_plan_class c) {
    struct rot_dev *rd = &j->d[i];
    const char *dev = j->p->t[i].device;
    enum fk_err rc = fk_plan_report(j->p, dev, c, FK_PLAN_T_CONFIRMED, "");
    if (rc != FK_OK) {
        fk_log(FK_LOG_INFO, "server: rotation %s: %s: stale confirmation (%s)", j->id, dev,
               fk_strerror(rc));
        return;
    }
    srv->rot_commits++;
    if (c == FK_PLAN_PSK && rd->has_psk &&
        fk_srv_rot_write_psk(srv, dev, rd->version[c], rd->psk, 0) == 0) {
        fk_srv_rot_drop_staged_psk(srv, dev);
    }
    if (c == FK_PLAN_OTA) {
        fk_srv_rot_confirm(srv, dev, 0); /* the OTA key rotation's record: it trusts the new key */
    }
    (void)set_states(srv, dev, fk_srv_rot_cred_kind[c], rd->version[c], "active", "retired");
    rd->audited[c] = 1;
    fk_srv_rot_dirty(j);
    if (!fk_srv_rot_shared(srv)) { /* shared: by the merge that records it (rot_shared.c) */
        fk_srv_rot_audit(srv, j, ROT_ACTOR, "rotation.confirmed", dev,
                         fk_srv_rot_cls_detail(c, rd->version[c], ""));
    }
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: %s v%u confirmed", j->id, dev,
           fk_plan_class_name(c), rd->version[c]);
}

/* Device i may be in a PSK trial now (its session reported a psk state): queued for a check,
 * which the loop starts once this turn ends (wake_rot), not at the next tick. */
static void queue_check(struct fk_server *srv, struct rot_job *j, size_t i) {
    fk_srv_rot_check_queue(j, i);
    atomic_store(&srv->rot_wake, 1);
}

static void take_rot(struct session *s, const struct fk_wss_msg *m, int c) {
    if (c >= FK_WSS_ROT_CLASSES) {
        return;
    }
    if (m->rot.c[c].present) {
        s->rot.c[c] = m->rot.c[c];
    } else if (m->rot.single.present) {
        s->rot.c[c] = m->rot.single;
    }
}

void fk_srv_rot_response(struct session *s, const struct fk_wss_msg *m) {
    struct fk_server *srv = s->srv;
    enum rot_act a = (enum rot_act)s->rot_act;
    enum fk_plan_class c = (enum fk_plan_class)s->rot_cls;
    s->rot_act = ROT_ACT_NONE;
    struct rot_job *j = fk_srv_rot_current(srv);
    size_t i = j != NULL ? index_of(j, s->id) : (size_t)-1;
    char code[FK_WSS_STR_MAX + 1];
    fk_srv_log_safe(m->err_code, code, sizeof code);
    if (i == (size_t)-1) {
        return;
    }
    struct rot_dev *rd = &j->d[i];
    take_rot(s, m, c);
    if (c == FK_PLAN_PSK && j->p->t[i].state[FK_PLAN_PSK] == FK_PLAN_T_SENT) {
        queue_check(srv, j, i); /* rot_stage's answer: the device is in trial now */
    }
    if (!m->ok) {
        fk_log(FK_LOG_WARN, "server: rotation %s: %s: %s refused: %s", j->id, s->id,
               a == ROT_ACT_CSR      ? "rot_csr"
               : a == ROT_ACT_STAGE  ? "rot_stage"
               : a == ROT_ACT_COMMIT ? "rot_commit"
                                     : "rot_rollback",
               code);
        if (strcmp(m->err_code, "busy") == 0 && a != ROT_ACT_COMMIT) {
            rd->due[c] = 1; /* after a rollback */
        } else if (a == ROT_ACT_STAGE || a == ROT_ACT_CSR) {
            if (fk_plan_report(j->p, s->id, c, FK_PLAN_T_FAILED, code) == FK_OK) {
                fk_srv_rot_dirty(j);
            }
        }
        return;
    }
    switch (a) {
    case ROT_ACT_CSR:
        if (j->p->t[i].state[FK_PLAN_MTLS] != FK_PLAN_T_SENT) {
            /* confirmed or failed while the device made its key: issue nothing */
            fk_log(FK_LOG_INFO, "server: rotation %s: %s: stale CSR ignored (mtls %s)", j->id,
                   s->id, fk_plan_tstate_name(j->p->t[i].state[FK_PLAN_MTLS]));
        } else if (m->csr[0] == '\0' || stage_mtls(srv, s, j, rd, m->csr) != 0) {
            fk_log(FK_LOG_WARN, "server: rotation %s: %s: no usable CSR", j->id, s->id);
        }
        break;
    case ROT_ACT_STAGE:
        fk_srv_rot_audit(srv, j, ROT_ACTOR, "rotation.staged", s->id,
                         fk_srv_rot_cls_detail(c, rd->version[c], ""));
        if (c == FK_PLAN_OTA && is_state(&s->rot.c[c], "trial") &&
            (unsigned long long)s->rot.c[c].staged_version == rd->version[c] &&
            j->p->t[i].state[c] != FK_PLAN_T_CONFIRMED) {
            /* the robot enters trial only after the staged key verified the manifest */
            rd->commit_due[c] = 1;
        }
        break;
    case ROT_ACT_COMMIT:
        confirmed(srv, j, i, c);
        break;
    case ROT_ACT_ROLLBACK:
        if (!m->rot.c[c].present && !m->rot.single.present) {
            s->rot.c[c].staged_version = 0;
            snprintf(s->rot.c[c].state, sizeof s->rot.c[c].state, "rolled_back");
        }
        break;
    case ROT_ACT_NONE:
        break;
    }
}

/* This connection's client certificate serial, in the CA index's form. */
static void conn_serial(struct session *s) {
    s->serial[0] = '\0';
    SSL *ssl = lws_get_ssl(s->wsi);
    X509 *x = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    BIGNUM *bn = x != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL) {
        char norm[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
        if (fk_pki_serial_parse(hex, norm) == FK_OK) {
            snprintf(s->serial, sizeof s->serial, "%s", norm);
        }
    }
    OPENSSL_free(hex);
    BN_free(bn);
}

static int same_serial(const char *a, const char *b) {
    char x[FK_PKI_SERIAL_HEX_LEN * 2 + 1], y[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
    return a[0] != '\0' && b[0] != '\0' && fk_pki_serial_parse(a, x) == FK_OK &&
           fk_pki_serial_parse(b, y) == FK_OK && strcmp(x, y) == 0;
}

/* "sha256:" + the hex SHA-256 of this connection's client certificate (the CA index's and
 * the inventory's fingerprint form); "" when there is none. */
static void conn_fingerprint(struct session *s, char out[72]) {
    out[0] = '\0';
    SSL *ssl = lws_get_ssl(s->wsi);
    X509 *x = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char md[32];
    unsigned int ml = 0;
    if (x == NULL || X509_digest(x, EVP_sha256(), md, &ml) != 1 || ml != sizeof md) {
        return;
    }
    memcpy(out, "sha256:", 7);
    for (unsigned k = 0; k < ml; k++) {
        snprintf(out + 7 + 2 * k, 3, "%02x", md[k]);
    }
}

struct issued_row {
    const char *kind, *fpr, *since;
    unsigned version;
};

/* The version of the row of r->kind with fingerprint r->fpr recorded since r->since. */
static int issued_cb(void *user, const struct fk_inv_credential *c) {
    struct issued_row *r = user;
    if (strcmp(c->kind, r->kind) == 0 && strcasecmp(c->fingerprint, r->fpr) == 0 &&
        strcmp(c->created_at, r->since) >= 0) {
        r->version = c->version;
    }
    return 0;
}

/* The plan file is saved at most once a second, the inventory row of a delivery at once: after
 * a kill -9 the reloaded plan may lack an mtls delivery that the device staged, tried or even
 * committed in that last second. When the device comes back in trial or committed with a
 * version the plan does not know, and this connection's certificate is the one an inventory
 * row recorded since the plan was created (so this plan issued it and the handshake proved
 * the device holds its key), that delivery is taken back: the device is confirmed instead of
 * being sent yet another certificate. The pre-plan certificate never matches: its row is
 * older than the plan. */
static void recover_mtls(struct session *s, struct rot_job *j, struct rot_dev *rd,
                         const struct fk_wss_rot_class *dc) {
    unsigned long long v = is_state(dc, "trial") ? dc->staged_version : dc->version;
    if (v == 0 || v == rd->version[FK_PLAN_MTLS] || s->serial[0] == '\0') {
        return;
    }
    char fpr[72];
    conn_fingerprint(s, fpr);
    struct issued_row r = {fk_srv_rot_cred_kind[FK_PLAN_MTLS], fpr, j->created_at, 0};
    if (fpr[0] == '\0' ||
        fk_inventory_credential_list(s->srv->inv, s->id, issued_cb, &r, NULL) != FK_OK ||
        (unsigned long long)r.version != v) {
        return;
    }
    rd->version[FK_PLAN_MTLS] = r.version;
    /* s->serial was normalised by conn_serial: it fits (same form as the CA index's) */
    snprintf(rd->serial, sizeof rd->serial, "%.*s", (int)sizeof rd->serial - 1, s->serial);
    snprintf(rd->fpr[FK_PLAN_MTLS], sizeof rd->fpr[FK_PLAN_MTLS], "%s", fpr);
    fk_srv_rot_dirty(j);
    fk_log(FK_LOG_INFO,
           "server: rotation %s: %s: mtls v%u serial %s taken back after a restart (%s)", j->id,
           s->id, r.version, s->serial, dc->state);
}

/* The PSK counterpart of recover_mtls: the device is in trial (or committed) with a PSK
 * version the reloaded plan does not know, or knows without its key. The copy of that version
 * on disk (rot_dir/psk/staged, written before rot_stage left; or the confirmed copy, written
 * when the device's rot_commit was answered) whose fingerprint an inventory row recorded since
 * the plan was created is taken back; the DTLS check then decides as for any delivery (the
 * device proves it holds that key, next in trial, current once committed). */
static void recover_psk(struct session *s, struct rot_job *j, struct rot_dev *rd,
                        const struct fk_wss_rot_class *dc) {
    unsigned long long v = is_state(dc, "trial") ? dc->staged_version : dc->version;
    if (v == 0 || (v == rd->version[FK_PLAN_PSK] && rd->has_psk)) {
        return;
    }
    uint8_t psk[ROT_PSK_LEN];
    unsigned sv = 0;
    char fpr[FK_FPR_LEN];
    for (int staged = 1; staged >= 0; staged--) {
        if (fk_srv_rot_read_psk(s->srv, s->id, staged, &sv, psk) != 0) {
            continue;
        }
        struct issued_row r = {fk_srv_rot_cred_kind[FK_PLAN_PSK], fk_fpr(psk, sizeof psk, fpr),
                               j->created_at, 0};
        if ((unsigned long long)sv == v &&
            fk_inventory_credential_list(s->srv->inv, s->id, issued_cb, &r, NULL) == FK_OK &&
            (unsigned long long)r.version == v) {
            memcpy(rd->psk, psk, sizeof psk);
            fk_wipe(psk, sizeof psk);
            rd->has_psk = 1;
            rd->version[FK_PLAN_PSK] = sv;
            snprintf(rd->fpr[FK_PLAN_PSK], sizeof rd->fpr[FK_PLAN_PSK], "%s", fpr);
            fk_srv_rot_dirty(j);
            fk_log(FK_LOG_INFO,
                   "server: rotation %s: %s: psk v%u %s taken back after a restart (%s)", j->id,
                   s->id, sv, fpr, dc->state);
            return;
        }
        fk_wipe(psk, sizeof psk);
    }
}

struct ca_row {
    const char *since;
    unsigned long long version;
    char fpr[FK_INV_FPR_SIZE];
};

static int ca_row_cb(void *user, const struct fk_inv_credential *c) {
    struct ca_row *r = user;
    if (strcmp(c->kind, fk_srv_rot_cred_kind[FK_PLAN_CA]) == 0 && c->version == r->version &&
        strcmp(c->created_at, r->since) >= 0) {
        snprintf(r->fpr, sizeof r->fpr, "%s", c->fingerprint);
    }
    return 0;
}

/* The ca counterpart of recover_mtls: the device reports ca in trial or committed with a
 * version the reloaded plan does not know. When an inventory row of that version was recorded
 * since the plan was created (this plan delivered it), the delivery is taken back; this
 * connection's handshake verified our chain with those anchors, so fk_srv_rot_hello's check
 * below then confirms it as it would have before the restart. */
static void recover_ca(struct session *s, struct rot_job *j, struct rot_dev *rd,
                       const struct fk_wss_rot_class *dc) {
    unsigned long long v = is_state(dc, "trial") ? dc->staged_version : dc->version;
    if (v == 0 || v == rd->version[FK_PLAN_CA]) {
        return;
    }
    struct ca_row r = {j->created_at, v, ""};
    if (fk_inventory_credential_list(s->srv->inv, s->id, ca_row_cb, &r, NULL) != FK_OK ||
        r.fpr[0] == '\0') {
        return;
    }
    rd->version[FK_PLAN_CA] = (unsigned)v;
    snprintf(rd->fpr[FK_PLAN_CA], sizeof rd->fpr[FK_PLAN_CA], "%.*s",
             (int)sizeof rd->fpr[FK_PLAN_CA] - 1, r.fpr);
    fk_srv_rot_dirty(j);
    fk_log(FK_LOG_INFO, "server: rotation %s: %s: ca v%u %s taken back after a restart (%s)", j->id,
           s->id, (unsigned)v, r.fpr, dc->state);
}

void fk_srv_rot_hello(struct session *s, const struct fk_wss_msg *m) {
    s->rot = m->rot;
    s->dtls_port = m->dtls_port;
    s->rot_act = ROT_ACT_NONE;
    conn_serial(s);
    fk_srv_rot_recheck(s);
}

void fk_srv_rot_recheck(struct session *s) {
    struct fk_server *srv = s->srv;
    struct rot_job *j = fk_srv_rot_current(srv);
    size_t i = j != NULL && s->rot.present ? index_of(j, s->id) : (size_t)-1;
    if (i == (size_t)-1) {
        return;
    }
    struct rot_dev *rd = &j->d[i];
    const struct fk_plan_target *t = &j->p->t[i];
    if (s->rot.c[FK_PLAN_PSK].present && t->state[FK_PLAN_PSK] == FK_PLAN_T_SENT) {
        queue_check(srv, j, i);
    }
    for (int c = 0; c < FK_WSS_ROT_CLASSES; c++) {
        const struct fk_wss_rot_class *dc = &s->rot.c[c];
        if (c == FK_PLAN_MTLS && dc->present && t->state[c] == FK_PLAN_T_SENT &&
            (is_state(dc, "trial") || is_state(dc, "committed"))) {
            recover_mtls(s, j, rd, dc);
        }
        if (c == FK_PLAN_CA && dc->present && t->state[c] == FK_PLAN_T_SENT &&
            (is_state(dc, "trial") || is_state(dc, "committed"))) {
            recover_ca(s, j, rd, dc);
        }
        if (c == FK_PLAN_PSK && dc->present && t->state[c] == FK_PLAN_T_SENT &&
            (is_state(dc, "trial") || is_state(dc, "committed"))) {
            recover_psk(s, j, rd, dc);
        }
        if (!dc->present || rd->version[c] == 0) {
            continue;
        }
        /* A rollback the server asked for (another version in trial, see fk_srv_rot_push) is
         * ours, not the device's failure: after a kill -9 its hello may still report it. */
        if (t->state[c] == FK_PLAN_T_SENT && is_state(dc, "rolled_back") &&
            strcmp(dc->reason, "server") != 0) {
            if (fk_plan_report(j->p, s->id, (enum fk_plan_class)c, FK_PLAN_T_ROLLED_BACK,
                               dc->reason) == FK_OK) {
                fk_log(FK_LOG_WARN, "server: rotation %s: %s: %s rolled back (%s)", j->id, s->id,
                       fk_plan_class_name((enum fk_plan_class)c), dc->reason);
                fk_srv_rot_dirty(j);
            }
            continue;
        }
        int in_trial =
            is_state(dc, "trial") && (unsigned long long)dc->staged_version == rd->version[c];
        int committed = (unsigned long long)dc->version == rd->version[c];
        if (c == FK_PLAN_MTLS && (in_trial || committed) && t->state[c] != FK_PLAN_T_CONFIRMED &&
            same_serial(s->serial, rd->serial)) {
            /* the handshake of this connection authenticated with the issued certificate */
            rd->commit_due[c] = 1;
        }
        if ((c == FK_PLAN_CA || c == FK_PLAN_OTA) && (in_trial || committed) &&
            t->state[c] != FK_PLAN_T_CONFIRMED) {
            /* ca: this connection's handshake verified our chain with the staged anchors; ota:
             * the robot verified the manifest with its staged key before it entered trial */
            rd->commit_due[c] = 1;
        }
    }
}

/* ---- the tick: step, audit of outcomes, interlock, revocation --------------------------- */

void fk_srv_rot_audit_outcomes(struct fk_server *srv, struct rot_job *j) {
    for (size_t i = 0; i < j->p->n; i++) {
        const struct fk_plan_target *t = &j->p->t[i];
        for (int c = 0; c < FK_PLAN_CLASSES; c++) {
            if (j->d[i].audited[c] ||
                (t->state[c] != FK_PLAN_T_FAILED && t->state[c] != FK_PLAN_T_ROLLED_BACK)) {
                continue;
            }
            j->d[i].audited[c] = 1;
            fk_srv_rot_audit(
                srv, j, ROT_ACTOR,
                t->state[c] == FK_PLAN_T_FAILED ? "rotation.device_failed"
                                                : "rotation.device_rolled_back",
                t->device,
                fk_srv_rot_cls_detail((enum fk_plan_class)c, j->d[i].version[c], t->reason));
            fk_srv_rot_dirty(j);
        }
    }
}

/* ---- revocation --------------------------------------------------------------------------
 * At 10,000 devices it runs in the event loop in slices (bench/README.md, "10,000 robots, to
 * the end"). The first tick: one pass over the CA index (not one per device), one batch
 * revocation (the index locked, appended and fsynced once), the certificates' audit rows, one
 * CRL. Each tick after: the credential states and PSK / OTA key rows of ROT_REVOKE_SLICE
 * devices, in one inventory transaction. Every step is idempotent, which makes it
 * restart-safe without saving where it stood: the batch skips what is revoked (so a rerun
 * finds no certificate to revoke or audit again), set_states changes and audits only rows not
 * yet revoked, and the CRL is written again. The one step a rerun cannot redo, the
 * certificates' audit rows after the index committed, is recovered from a start marker
 * (rev_begin). A plan in a PostgreSQL inventory is revoked in one call inside the merge's
 * transaction (rot_shared.c), which commits it with the plan, the merge after the one that
 * committed the marker. */

/* Devices per tick: about 70 us of CPU each (SQLite), so ~0.15 s of loop time per slice. */
#define ROT_REVOKE_SLICE 2000

/* The old certificates of the plan's devices: every device certificate of a plan device
 * that is not revoked and not the one it confirmed (a device that never confirmed keeps
 * nothing: it was named by the force). */
struct old_cert {
    size_t dev;    /* index of the device in the plan */
    size_t seq;    /* position in the index: the order of the audit rows within a device */
    int recovered; /* revoked by a run cut before its audit rows: only the row is due */
    char serial[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
};
struct old_certs {
    const struct rot_job *j;
    struct old_cert *v;
    size_t n, cap, seen;
    size_t to_revoke; /* entries not recovered */
    int nomem;
    /* a resumed run (rev_marks): the revocation began at since (Unix seconds) */
    int recover;
    long long since;
};

static int old_certs_cb(void *user, const struct fk_pki_cert_info *info) {
    struct old_certs *x = user;
    x->seen++;
    /* revoked as superseded since the run began, so by it (the reason and date are those the
     * batch writes; a serial revoked otherwise, or before, keeps no row of ours) */
    int recovered = info->revoked && x->recover && info->reason == FK_PKI_REASON_SUPERSEDED &&
                    info->revoked_at >= x->since;
    if (info->kind != FK_PKI_DEVICE || (info->revoked && !recovered)) {
        return 0;
    }
    size_t i = index_of(x->j, info->name); /* bsearch over the plan's sorted targets */
    if (i == (size_t)-1) {
        return 0;
    }
    const char *keep =
        x->j->p->t[i].state[FK_PLAN_MTLS] == FK_PLAN_T_CONFIRMED ? x->j->d[i].serial : "";
    if (same_serial(info->serial, keep)) {
        return 0;
    }
    struct old_cert *v = fk_grow(x->v, &x->cap, x->n, sizeof *v, 256);
    if (v == NULL) {
        x->nomem = 1;
        return 1;
    }
    x->v = v;
    struct old_cert *c = &x->v[x->n++];
    c->dev = i;
    c->seq = x->seen;
    c->recovered = recovered;
    x->to_revoke += !recovered;
    snprintf(c->serial, sizeof c->serial, "%s", info->serial);
    return 0;
}

/* Collects the old certificates (one walk of the index) and revokes them in one batch.
 * -1 when the CA could not be used (nothing revoked: retried by the next tick). */
static int revoke_certs(struct fk_server *srv, const struct rot_job *j, struct old_certs *x,
                        size_t *certs) {
    struct fk_diag d;
    fk_diag_init(&d);
    const char **v = NULL;
    int rc = -1;
    if (srv->ca == NULL && fk_pki_ca_open(srv->cfg.ca_dir, &srv->ca, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: CA unavailable, revocation retried: %s", j->id,
               d.msg);
        goto out;
    }
    if (fk_pki_list(srv->ca, old_certs_cb, x, &d) != FK_OK || x->nomem) {
        fk_log(FK_LOG_WARN, "server: rotation %s: CA index: %s", j->id,
               x->nomem ? "out of memory" : d.msg);
        goto out;
    }
    if (x->to_revoke > 0 && (v = malloc(x->to_revoke * sizeof *v)) == NULL) {
        fk_log(FK_LOG_WARN, "server: rotation %s: out of memory, revocation retried", j->id);
        goto out;
    }
    size_t nv = 0;
    for (size_t k = 0; k < x->n; k++) {
        if (!x->v[k].recovered) {
            v[nv++] = x->v[k].serial;
        }
    }
    if (fk_pki_revoke_serials(srv->ca, v, nv, FK_PKI_REASON_SUPERSEDED, 0, certs, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: revocation retried: %s", j->id, d.msg);
        goto out;
    }
    if (getenv("FK_TEST_ROT_EXIT_AFTER_CA") != NULL && nv > 0) {
        _exit(86); /* tests only (rot_revoke_crash): a kill -9 right after the index's fsync */
    }
    rc = 0;
out:
    free(v);
    return rc;
}

/* "rotation.revoked" audit rows gathered and appended FK_INV_MANY_MAX at a time. */
struct revoked_rows {
    struct fk_server *srv;
    const struct rot_job *j;
    size_t n;
    struct fk_inv_audit_entry e[FK_INV_MANY_MAX];
    char detail[FK_INV_MANY_MAX][256];
};

static void rows_flush(struct revoked_rows *r) {
    struct fk_diag d;
    fk_diag_init(&d);
    if (r->n > 0 && fk_inventory_audit_append_many(r->srv->inv, ROT_ACTOR, "rotation.revoked", r->e,
                                                   r->n, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: audit rotation.revoked not written: %s", r->j->id,
               d.msg);
    }
    r->n = 0;
}

/* Queues a row about dev with detail (consumed), "plan" added as fk_srv_rot_audit does. */
static void rows_add(struct revoked_rows *r, const char *dev, cJSON *detail) {
    fk_srv_rot_detail_text(r->j, detail, r->detail[r->n], sizeof r->detail[0]);
    r->e[r->n].subject = dev;
    r->e[r->n].detail_json = r->detail[r->n];
    if (++r->n == FK_INV_MANY_MAX) {
        rows_flush(r);
    }
}

/* Begins a transaction of our own unless the caller holds one (FK_E_STATE: rot_shared.c's
 * merge, which commits our rows with the plan's). 1: ours, to commit. */
static int txn_begin(struct fk_server *srv, const struct rot_job *j) {
    struct fk_diag d;
    fk_diag_init(&d);
    enum fk_err rc = fk_inventory_begin(srv->inv, &d);
    if (rc != FK_OK && rc != FK_E_STATE) {
        fk_log(FK_LOG_WARN, "server: rotation %s: no transaction (%s): row by row", j->id, d.msg);
    }
    return rc == FK_OK;
}

static void txn_commit(struct fk_server *srv, const struct rot_job *j) {
    struct fk_diag d;
    fk_diag_init(&d);
    if (fk_inventory_commit(srv->inv, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: revocation rows not committed: %s", j->id, d.msg);
        fk_inventory_rollback(srv->inv);
    }
}

/* The certificates' audit rows: one per serial revoked, about its device (x sorted). */
static void cert_rows(const struct rot_job *j, const struct old_certs *x, struct revoked_rows *r) {
    for (size_t k = 0; k < x->n; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "serial", x->v[k].serial);
        if (x->v[k].recovered) {
            cJSON_AddBoolToObject(o, "recovered", 1);
        }
        rows_add(r, j->p->t[x->v[k].dev].device, o);
    }
    rows_flush(r);
}

/* The inventory side of device i: its credential states and its PSK / OTA key rows. */
static void revoke_rows(struct fk_server *srv, struct rot_job *j, size_t i,
                        struct revoked_rows *r) {
    const struct fk_plan_target *t = &j->p->t[i];
    const struct rot_dev *rd = &j->d[i];
    if (j->p->spec.classes & (1u << FK_PLAN_MTLS)) {
        (void)set_states(srv, t->device, fk_srv_rot_cred_kind[FK_PLAN_MTLS],
                         t->state[FK_PLAN_MTLS] == FK_PLAN_T_CONFIRMED ? rd->version[FK_PLAN_MTLS]
                                                                       : 0,
                         NULL, "revoked");
    }
    if (j->p->spec.classes & (1u << FK_PLAN_PSK)) {
        size_t n =
            set_states(srv, t->device, fk_srv_rot_cred_kind[FK_PLAN_PSK],
                       t->state[FK_PLAN_PSK] == FK_PLAN_T_CONFIRMED ? rd->version[FK_PLAN_PSK] : 0,
                       NULL, "revoked");
        if (n > 0) {
            j->rv.psks += n;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "class", "psk");
            cJSON_AddNumberToObject(o, "credentials", (double)n);
            rows_add(r, t->device, o);
        }
    }
    if ((j->p->spec.classes & (1u << FK_PLAN_OTA)) && fk_srv_rot_ota_retire(srv, t->device) == 1) {
        j->rv.ota_keys++;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "class", "ota");
        cJSON_AddStringToObject(o, "fingerprint", srv->rot.keys.old_fpr);
        rows_add(r, t->device, o);
    }
}

static int old_cert_cmp(const void *a, const void *b) {
    const struct old_cert *x = a, *y = b;
    if (x->dev != y->dev) {
        return x->dev < y->dev ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Writes the CRL with what the index holds now: also when this run revoked nothing, since a
 * run before a restart may have revoked without getting this far. */
static void write_crl(struct fk_server *srv, const struct rot_job *j) {
    struct fk_diag d;
    fk_diag_init(&d);
    char *pem = NULL;
    size_t pl = 0;
    if (srv->cfg.crl[0] == '\0') {
        if (j->rv.certs > 0) {
            fk_log(FK_LOG_WARN, "server: rotation %s: no crl configured: new CRL not written",
                   j->id);
        }
    } else if (fk_pki_crl(srv->ca, 0, 0, &pem, &pl, &d) != FK_OK ||
               fk_file_write_atomic(srv->cfg.crl, pem, pl, 0644, 0, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: CRL not written: %s", j->id, d.msg);
    } else {
        srv->reload = 1; /* the next tick reloads it and closes old-certificate sessions */
    }
    free(pem);
}

/* Where a revocation began. The CA index and the inventory are two stores: a kill -9 after
 * the index's fsync and before the commit of the certificates' audit rows would leave serials
 * revoked that no row records, and the rerun's batch finds nothing left to revoke (nor to
 * audit). So a REV_BEGUN row about the plan is committed before the batch, and the
 * certificates' rows are committed together with a REV_CERTS row. A start that finds the
 * newest REV_BEGUN without a REV_CERTS after it resumes a run cut in between: the serials the
 * index shows revoked (superseded) since that row get their rows now, marked "recovered". */
#define REV_BEGUN "rotation.revoking"
#define REV_CERTS "rotation.certs_revoked"

/* An audit row of kind about the plan, in the caller's transaction or one of ours, committed
 * before this returns. 0, or -1 (logged). */
static int rev_mark(struct fk_server *srv, const struct rot_job *j, const char *kind,
                    cJSON *detail) {
    struct fk_diag d;
    fk_diag_init(&d);
    int own = txn_begin(srv, j);
    if (fk_srv_rot_audit(srv, j, ROT_ACTOR, kind, j->id, detail) != 0) {
        if (own) {
            fk_inventory_rollback(srv->inv);
        }
        return -1;
    }
    if (own && fk_inventory_commit(srv->inv, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: audit %s not written: %s", j->id, kind, d.msg);
        fk_inventory_rollback(srv->inv);
        return -1;
    }
    return 0;
}

/* The newest REV_BEGUN row of a plan, and whether a REV_CERTS row follows it. */
struct rev_scan {
    const char *plan;
    int begun, certs;
    char at[FK_INV_TIME_SIZE];
};

static int rev_scan_cb(void *user, const struct fk_inv_audit *a) {
    struct rev_scan *s = user;
    if (strcmp(a->subject, s->plan) != 0) {
        return 0;
    }
    if (strcmp(a->kind, REV_BEGUN) == 0) {
        s->begun = 1;
        s->certs = 0;
        snprintf(s->at, sizeof s->at, "%s", a->at);
    } else if (strcmp(a->kind, REV_CERTS) == 0) {
        s->certs = 1;
    }
    return 0;
}

/* Before the batch: a fresh run commits REV_BEGUN; a run resuming one cut before its
 * certificates' rows sets x->recover and x->since. 0, 1 (REV_BEGUN appended in the caller's
 * transaction: the batch waits for the next call, once it is committed), or -1 (nothing
 * revoked: retried). */
static int rev_begin(struct fk_server *srv, const struct rot_job *j, struct old_certs *x) {
    struct fk_diag d;
    fk_diag_init(&d);
    int found = 0;
    /* the common case (a first run) costs one lookup; the walk of the log only on a resume */
    if (fk_inventory_audit_exists(srv->inv, REV_BEGUN, j->id, &found, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: audit log: %s", j->id, d.msg);
        return -1;
    }
    struct rev_scan s = {.plan = j->id};
    if (found && fk_inventory_audit_list_after(srv->inv, 0, rev_scan_cb, &s, &d) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: audit log: %s", j->id, d.msg);
        return -1;
    }
    if (!s.begun || s.certs) {
        /* a new start (also for a plan id an earlier plan of a reset rot_dir used). A shared
         * plan's merge (rot_shared.c) holds a transaction that the CA index is no part of: the
         * row must be committed by that merge before the batch, so the next merge revokes. */
        if (rev_mark(srv, j, REV_BEGUN, cJSON_CreateObject()) != 0) {
            return -1;
        }
        return fk_srv_rot_shared(srv) ? 1 : 0;
    }
    if (fk_time_parse_rfc3339(s.at, strlen(s.at), &x->since) != FK_OK) {
        fk_log(FK_LOG_WARN, "server: rotation %s: %s row dated \"%s\"", j->id, REV_BEGUN, s.at);
        return -1;
    }
    x->recover = 1; /* the batch's start was committed, its certificates' rows not (yet) */
    return 0;
}

/* The first slice: the certificates (see the top of this part). 0, 1 (a shared plan's start
 * recorded: the certificates from the next merge on), or -1 to retry. */
static int revoke_start(struct fk_server *srv, struct rot_job *j, struct revoked_rows *r) {
    struct old_certs x;
    memset(&x, 0, sizeof x);
    x.j = j;
    int rc = 0;
    if (j->p->spec.classes & (1u << FK_PLAN_MTLS)) {
        if ((rc = rev_begin(srv, j, &x)) != 0 || revoke_certs(srv, j, &x, &j->rv.certs) != 0) {
            rc = rc != 0 ? rc : -1;
            goto out;
        }
        if (x.n > 1) { /* by device: each device's rows together */
            qsort(x.v, x.n, sizeof *x.v, old_cert_cmp);
        }
        j->rv.recovered = x.n - x.to_revoke;
        if (j->rv.recovered > 0) {
            fk_log(FK_LOG_WARN,
                   "server: rotation %s: %zu certificates revoked by a run cut before their "
                   "audit rows: rows written now, marked recovered",
                   j->id, j->rv.recovered);
        }
        int own = txn_begin(srv, j);
        cert_rows(j, &x, r);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "certificates", (double)x.n);
        (void)rev_mark(srv, j, REV_CERTS, o); /* in our transaction: committed with the rows */
        if (own) {
            txn_commit(srv, j);
        }
        write_crl(srv, j);
    }
    j->rv.started = 1;
    j->rv.next = 0;
out:
    free(x.v);
    return rc;
}

/* After the interlock (or force): every device's old credentials go, over one or more calls
 * (one per tick) until j->revoked; see the top of this part. */
static double thread_cpu(void) {
    struct timespec t;
    return clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0
               ? (double)t.tv_sec + (double)t.tv_nsec / 1e9
               : 0;
}

/* The CPU the loop thread spent in this call, for the log: how long the loop was held. */
static void slice_done(struct rot_job *j, double t0) {
    double dt = thread_cpu() - t0;
    j->rv.slices++;
    j->rv.slice_max = dt > j->rv.slice_max ? dt : j->rv.slice_max;
}

void fk_srv_rot_revoke_old(struct fk_server *srv, struct rot_job *j) {
    double t0 = thread_cpu();
    struct revoked_rows r;
    memset(&r, 0, sizeof r);
    r.srv = srv;
    r.j = j;
    int shared = fk_srv_rot_shared(srv);
    if (!j->rv.started) {
        if (revoke_start(srv, j, &r) != 0) {
            return; /* nothing revoked yet: the next tick (or merge) goes on */
        }
        if (!shared && j->p->n > ROT_REVOKE_SLICE) {
            slice_done(j, t0);
            return; /* a large plan's rows from the next tick on: this one did enough */
        }
    }
    /* one go inside the caller's transaction: its merge commits the plan with it */
    size_t slice = shared ? j->p->n : ROT_REVOKE_SLICE;
    size_t end = j->rv.next + slice < j->p->n ? j->rv.next + slice : j->p->n;
    int own = txn_begin(srv, j);
    for (; j->rv.next < end; j->rv.next++) {
        revoke_rows(srv, j, j->rv.next, &r);
    }
    rows_flush(&r);
    if (own) {
        txn_commit(srv, j);
    }
    slice_done(j, t0);
    if (j->rv.next < j->p->n) {
        return;
    }
    j->revoked = 1;
    fk_srv_rot_dirty(j);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "certificates", (double)j->rv.certs);
    if (j->rv.recovered > 0) {
        cJSON_AddNumberToObject(o, "certificates_recovered", (double)j->rv.recovered);
    }
    cJSON_AddNumberToObject(o, "psks", (double)j->rv.psks);
    cJSON_AddNumberToObject(o, "ota_keys", (double)j->rv.ota_keys);
    cJSON_AddBoolToObject(o, "forced", j->p->forced);
    fk_srv_rot_audit(srv, j, ROT_ACTOR, "rotation.old_revoked", j->id, o);
    fk_log(FK_LOG_INFO,
           "server: rotation %s: old credentials revoked (%zu certificates, %zu PSKs, %zu OTA "
           "key rows retired) in %u tick%s, the longest %.0f ms of CPU",
           j->id, j->rv.certs, j->rv.psks, j->rv.ota_keys, j->rv.slices,
           j->rv.slices == 1 ? "" : "s", j->rv.slice_max * 1e3);
}

void fk_srv_rot_step(struct fk_server *srv) {
    struct rot_job *j = fk_srv_rot_current(srv);
    if (j == NULL) {
        return;
    }
    enum fk_plan_state was = j->p->state;
    unsigned wave = j->p->wave;
    /* The step's inventory writes (outcomes audited, waves, states) in one group, committed
     * before the plan file that records them as done is written (fk_srv_rot_tick). The
     * revocation stays out of it: at 10,000 devices it would hold the write lock for long. */
    int opened = fk_srv_group_begin(srv);
    if (was == FK_PLAN_RUNNING || was == FK_PLAN_SETTLED) {
        if (fk_plan_step(j->p, (int64_t)time(NULL), send_cb, srv) > 0) {
            fk_srv_rot_dirty(j);
        }
    }
    fk_srv_rot_checks(srv, j);
    /* A shared plan's outcomes, waves, state changes and revocation are audited (and the
     * revocation done) once, by the instance whose merge makes them (rot_shared.c). */
    int shared = fk_srv_rot_shared(srv);
    if (!shared) {
        fk_srv_rot_audit_outcomes(srv, j);
    }
    if (j->p->wave != wave && !shared) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "wave", j->p->wave);
        cJSON_AddNumberToObject(o, "percent", j->p->spec.waves[j->p->wave]);
        fk_srv_rot_audit(srv, j, ROT_ACTOR, "rotation.wave_opened", j->id, o);
        fk_srv_rot_dirty(j);
    }
    if (j->p->state != was && !shared) {
        fk_log(FK_LOG_INFO, "server: rotation %s: %s -> %s %s", j->id, fk_plan_state_name(was),
               fk_plan_state_name(j->p->state), j->p->pause_reason);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "reason", j->p->pause_reason);
        fk_srv_rot_audit(srv, j, ROT_ACTOR,
                         j->p->state == FK_PLAN_PAUSED ? "rotation.paused" : "rotation.settled",
                         j->id, o);
        fk_srv_rot_dirty(j);
    }
    if (j->p->state == FK_PLAN_SETTLED) {
        char(*b)[FK_PLAN_DEV_SIZE] = NULL;
        size_t nb = 0;
        if (fk_plan_interlock(j->p, &b, &nb) == FK_OK && !shared) {
            fk_srv_rot_audit(srv, j, ROT_ACTOR, "rotation.interlock_held", j->id, NULL);
            fk_srv_rot_dirty(j);
        }
        free(b);
    }
    (void)fk_srv_group_end(srv, opened, "rotation step"); /* failed: logged, queues closed */
    if (j->p->state == FK_PLAN_DONE && !j->revoked && !shared) {
        fk_srv_rot_revoke_old(srv, j);
    }
}
