/* fleetctl incident ota-key-compromised: the seed's "If a signing key is compromised, rotate
 * immediately and OTA all devices" as one plan (docs/incident-response.md).
 *
 * Steps (fleetkey/incident.h): new key (same scheme as the old one) -> rotation start (the old
 * key endorses the new one, devices take it over the channel) -> release signed by old + new
 * -> pushed to every device through fleetkey-server's OTA job API (devices that trust only the
 * old key accept it, and the server hands them the new key) -> wait for the confirmations ->
 * [force the offline devices the operator names] -> release signed by the new key only, pushed
 * to the devices that confirmed -> old key retired (the server then promotes the new key on
 * each device, and refuses images signed by the old one) -> report of devices not covered.
 * Every step is an audit row ("incident.ota_key_compromised.<step>", besides the rotation's
 * own rows) and is saved in the state file (temp + fsync + rename) before the next one starts,
 * so a re-run after a crash or a refused gate continues where it stood. No key material is
 * printed; the new private key is written 0600 to --new-key. */
#include "https.h"
#include "server_cmd.h"

#include "fleetkey/incident.h"
#include "fleetkey/inventory.h"
#include "fleetkey/ota.h"
#include "fleetkey/pki.h"
#include "fleetkey/rotation.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IMAGE_MAX (16u * 1024u * 1024u + 8192u)
#define ACTOR "fleetctl incident"
#define EXIT_UNCOVERED 3

struct inc {
    const struct fleetctl_incident_args *a;
    SSL_CTX *ctx;
    const struct fleetctl_url *u;
    unsigned timeout_s;
    int json;
    struct fk_inventory *inv;
    struct fk_ota_key *oldk, *newk;
    struct fk_rot_keys k;
    struct fk_incident_state st;
    struct fk_diag d;
};

static int usage_incident(void) {
    fprintf(stderr,
            "usage: fleetctl --p12 F.p12 --password-file F --server https://HOST:PORT --ca CA.pem\n"
            "         [--json] incident ota-key-compromised --inventory DB --old-key OLD\n"
            "         --new-key NEW.pem --image FW.bin --state STATE.json [--out DIR]\n"
            "         [--force-device ID ...] [--wait S] [--poll-ms MS]\n"
            "  OLD          the compromised key (PEM or pkcs11: URI, private: it endorses NEW\n"
            "               and dual-signs the transition release)\n"
            "  NEW.pem      the new key: generated (same scheme as OLD, mode 0600) when absent\n"
            "  FW.bin       the app image to release (signed old + new, then new only)\n"
            "  STATE.json   the plan's state: a re-run continues where it stood\n"
            "  --force-device  an offline device that must not hold the retirement back (name\n"
            "               exactly the devices the report lists as blocking)\n"
            "exit status: 0 every device covered, old key retired; 3 old key retired, some\n"
            "devices not covered (listed); 1 stopped at a gate or failed (re-run to continue);\n"
            "2 usage\n");
    return 2;
}

int fleetctl_incident_parse(int argc, char **argv, struct fleetctl_incident_args *a) {
    memset(a, 0, sizeof *a);
    a->wait_s = 300;
    a->poll_ms = 500;
    a->force = calloc((size_t)argc + 1, sizeof *a->force);
    if (a->force == NULL) {
        return 1;
    }
    if (argc < 1 || strcmp(argv[0], FK_INCIDENT_OTA_KEY) != 0) {
        fprintf(stderr, "fleetctl incident: the only incident is '%s'\n", FK_INCIDENT_OTA_KEY);
        return usage_incident();
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **slot = NULL;
        if (strcmp(o, "--inventory") == 0) {
            slot = &a->inventory;
        } else if (strcmp(o, "--old-key") == 0) {
            slot = &a->old_key;
        } else if (strcmp(o, "--new-key") == 0) {
            slot = &a->new_key;
        } else if (strcmp(o, "--image") == 0) {
            slot = &a->image;
        } else if (strcmp(o, "--state") == 0) {
            slot = &a->state;
        } else if (strcmp(o, "--out") == 0) {
            slot = &a->out;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fleetctl incident: %s needs a value\n", o);
            return usage_incident();
        }
        const char *v = argv[++i];
        long n = 0;
        char *end = NULL;
        if (slot != NULL) {
            *slot = v;
        } else if (strcmp(o, "--force-device") == 0) {
            if (!fk_pki_name_valid(v)) {
                fprintf(stderr, "fleetctl incident: --force-device: '%s' is not a device id\n", v);
                return 2;
            }
            a->force[a->nforce++] = v;
        } else if (strcmp(o, "--wait") == 0 || strcmp(o, "--poll-ms") == 0) {
            n = strtol(v, &end, 10);
            int wait = o[2] == 'w';
            if (end == NULL || *end != '\0' || n < (wait ? 1 : 10) || n > (wait ? 86400 : 60000)) {
                fprintf(stderr, "fleetctl incident: %s: expected %s\n", o,
                        wait ? "1..86400 seconds" : "10..60000 milliseconds");
                return 2;
            }
            *(wait ? &a->wait_s : &a->poll_ms) = n;
        } else {
            fprintf(stderr, "fleetctl incident: unexpected argument '%s'\n", o);
            return usage_incident();
        }
    }
    if (a->inventory == NULL || a->old_key == NULL || a->new_key == NULL || a->image == NULL ||
        a->state == NULL) {
        fprintf(stderr,
                "fleetctl incident: --inventory, --old-key, --new-key, --image and --state are "
                "required\n");
        return usage_incident();
    }
    return 0;
}

/* ---- small helpers ------------------------------------------------------------------------ */
static int fail(struct inc *c, const char *what, enum fk_err rc) {
    char msg[1024];
    if (c->d.msg[0] != '\0') {
        fk_diag_format(&c->d, msg, sizeof msg);
    } else {
        snprintf(msg, sizeof msg, "%s", fk_strerror(rc));
    }
    fprintf(stderr, "fleetctl incident: %s: %s\n", what, msg);
    return 1;
}

static void say(const struct inc *c, const char *fmt, ...) FK_PRINTF(2, 3);
static void say(const struct inc *c, const char *fmt, ...) {
    if (!c->json) {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
    }
}

/* Audits "incident.ota_key_compromised.<what>" (detail is consumed) and saves the state
 * atomically: the record that a step happened, before the next one starts. */
static enum fk_err record(struct inc *c, const char *what, cJSON *detail) {
    enum fk_err rc = FK_E_NOMEM;
    char *txt = NULL, *det = NULL;
    size_t len = 0;
    if (detail == NULL) {
        detail = cJSON_CreateObject();
    }
    if (detail != NULL) {
        cJSON_AddStringToObject(detail, "old_key", c->k.old_fpr);
        det = cJSON_PrintUnformatted(detail);
    }
    FK_ENSURE(det != NULL, FK_E_NOMEM);
    char kind[64];
    snprintf(kind, sizeof kind, "incident.ota_key_compromised.%s", what);
    FK_GUARD(fk_inventory_audit_append(c->inv, ACTOR, kind, c->k.new_fpr, det, &c->d));
    FK_GUARD(fk_incident_state_render(&c->st, &txt, &len));
    FK_GUARD(fk_file_write_atomic(c->a->state, txt, len, 0600, 0, &c->d));
    rc = FK_OK;
out:
    cJSON_Delete(detail);
    cJSON_free(det);
    free(txt);
    return rc;
}

static enum fk_err step_done(struct inc *c, enum fk_incident_step s, cJSON *detail) {
    c->st.done |= 1u << s;
    enum fk_err rc = record(c, fk_incident_step_name(s), detail);
    if (rc == FK_OK) {
        say(c, "step %s: done", fk_incident_step_name(s));
    }
    return rc;
}

/* ---- step 1: the new key -------------------------------------------------------------------- */
static enum fk_err generate_like(const struct fk_ota_key *old, const char *path,
                                 struct fk_diag *d) {
    enum fk_err rc = FK_E_INTERNAL;
    EVP_PKEY *k = NULL;
    BIO *bio = NULL;
    BUF_MEM *mem = NULL;
    switch (fk_ota_key_scheme(old)) {
    case FK_OTA_SCHEME_RSA3072:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
        break;
    case FK_OTA_SCHEME_ECDSA_P384:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        break;
    default:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    }
    FK_ENSURE(k != NULL, fk_diag_set(d, FK_E_CRYPTO, "key generation failed"));
    bio = BIO_new(BIO_s_secmem());
    FK_ENSURE(bio != NULL, FK_E_NOMEM);
    FK_GUARD_OSSL(PEM_write_bio_PKCS8PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), FK_E_CRYPTO);
    FK_ENSURE(BIO_get_mem_ptr(bio, &mem) == 1 && mem != NULL, FK_E_CRYPTO);
    FK_GUARD(fk_file_write_atomic(path, mem->data, mem->length, 0600, FK_WRITE_EXCL, d));
    rc = FK_OK;
out:
    BIO_free(bio); /* secure-heap BIO: cleansed on free */
    EVP_PKEY_free(k);
    return rc;
}

static enum fk_err step_keygen(struct inc *c) {
    enum fk_err rc = FK_E_INTERNAL;
    int generated = 0;
    if (!fk_incident_done(&c->st, FK_INCIDENT_KEYGEN) && access(c->a->new_key, F_OK) != 0) {
        FK_GUARD(generate_like(c->oldk, c->a->new_key, &c->d));
        generated = 1;
    }
    FK_GUARD(fk_ota_key_load(c->a->new_key, 1, &c->newk, &c->d));
    FK_GUARD(fk_rotation_key_fpr(c->newk, c->k.new_fpr));
    if (fk_incident_done(&c->st, FK_INCIDENT_KEYGEN)) {
        FK_ENSURE(strcmp(c->st.new_fpr, c->k.new_fpr) == 0,
                  fk_diag_at(&c->d, FK_E_MISMATCH, c->a->new_key, 0,
                             "key %s, but this incident's new key is %s", c->k.new_fpr,
                             c->st.new_fpr));
        return FK_OK;
    }
    FK_ENSURE(strcmp(c->k.new_fpr, c->k.old_fpr) != 0,
              fk_diag_at(&c->d, FK_E_ARG, c->a->new_key, 0, "the new key is the old key"));
    snprintf(c->st.new_fpr, sizeof c->st.new_fpr, "%s", c->k.new_fpr);
    snprintf(c->st.new_key_file, sizeof c->st.new_key_file, "%s", c->a->new_key);
    cJSON *det = cJSON_CreateObject();
    cJSON_AddStringToObject(det, "file", c->a->new_key);
    cJSON_AddBoolToObject(det, "generated", generated);
    cJSON_AddStringToObject(det, "scheme", fk_ota_scheme_name(fk_ota_key_scheme(c->newk)));
    FK_GUARD(step_done(c, FK_INCIDENT_KEYGEN, det));
    say(c, "new key: %s (back it up: provision-keys backup)", c->k.new_fpr);
    rc = FK_OK;
out:
    return rc;
}

/* ---- steps 2, 3, 6: rotation start and the two releases -------------------------------------- */
static enum fk_err step_start(struct inc *c) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t der[FK_ROT_DER_MAX], endorsement[FK_ROT_ENDORSE_LEN];
    size_t der_len = 0;
    FK_GUARD(fk_ota_key_public_der(c->newk, der, sizeof der, &der_len));
    FK_GUARD(fk_rotation_endorse(c->oldk, der, der_len, endorsement, &c->d));
    FK_GUARD(fk_rotation_start(c->inv, &c->k, der, der_len, endorsement, ACTOR, &c->d));
    FK_GUARD(step_done(c, FK_INCIDENT_START, NULL));
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err sign_release(struct inc *c, int new_only, struct fk_incident_release *r) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *in = NULL, *out = NULL;
    size_t in_len = 0, out_len = 0;
    struct fk_rot_status rs;
    memset(&rs, 0, sizeof rs);
    FK_GUARD(fk_rotation_gate_release(c->inv, &c->k, new_only, ACTOR, &rs, &c->d));
    FK_GUARD(fk_file_read(c->a->image, IMAGE_MAX, &in, &in_len, &c->d));
    struct fk_ota_image im;
    rc = fk_ota_image_parse(in, in_len, &im, &c->d);
    if (rc != FK_OK) {
        snprintf(c->d.file, sizeof c->d.file, "%s", c->a->image);
        goto out;
    }
    struct fk_ota_key *keys[2] = {c->oldk, c->newk};
    size_t cap = fk_ota_signed_size(in_len);
    out = malloc(cap ? cap : 1);
    FK_ENSURE(out != NULL, FK_E_NOMEM);
    FK_GUARD(fk_ota_sign(in, in_len, new_only ? keys + 1 : keys, new_only ? 1 : 2, out, cap,
                         &out_len, &c->d));
    char name[64];
    snprintf(name, sizeof name, "incident-release-%s", new_only ? "new" : "dual");
    char *path = NULL;
    FK_GUARD(fk_path_join(c->a->out, name, ".bin", &path));
    snprintf(r->file, sizeof r->file, "%s", path);
    free(path);
    FK_GUARD(fk_file_write_atomic(r->file, out, out_len, 0644, 0, &c->d));
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256(out, out_len, h);
    FK_GUARD(fk_hex_encode(h, sizeof h, r->sha256, sizeof r->sha256));
    FK_GUARD(fk_rotation_record_release(c->inv, &c->k, new_only, r->file, r->sha256, ACTOR, &c->d));
    cJSON *det = cJSON_CreateObject();
    cJSON_AddStringToObject(det, "file", r->file);
    cJSON_AddStringToObject(det, "sha256", r->sha256);
    cJSON_AddStringToObject(det, "version", im.app_desc.version);
    FK_GUARD(step_done(c, new_only ? FK_INCIDENT_SIGN_NEW : FK_INCIDENT_SIGN_DUAL, det));
    rc = FK_OK;
out:
    if (rc == FK_E_POLICY && new_only) {
        for (size_t i = 0; i < rs.n; i++) {
            if (!rs.dev[i].confirmed && !rs.dev[i].forced) {
                char seen[64];
                fprintf(stderr, "  blocking: %s (new key not confirmed; %s)\n", rs.dev[i].id,
                        fk_rot_seen_text(&rs.dev[i], seen, sizeof seen));
            }
        }
    }
    fk_rot_status_free(&rs);
    free(in);
    free(out);
    return rc;
}

/* ---- steps 4, 7: pushes through fleetkey-server ------------------------------------------- */
/* POSTs the release to /api/ota for every device (ids NULL) or for ids; job id into job. */
static enum fk_err push(struct inc *c, const char *file, const char *const *ids, size_t n,
                        char job[FK_INCIDENT_JOB_MAX]) {
    enum fk_err rc = FK_E_INTERNAL;
    size_t cap = 32 + n * (FK_INV_ID_SIZE + 8);
    char *path = malloc(cap);
    char *body = NULL;
    cJSON *o = NULL;
    int status = 0;
    FK_ENSURE(path != NULL, FK_E_NOMEM);
    size_t used = (size_t)snprintf(path, cap, "/api/ota?%s", ids == NULL ? "all=1" : "");
    for (size_t i = 0; ids != NULL && i < n; i++) {
        used += (size_t)snprintf(path + used, cap - used, "%sdevice=%s", i ? "&" : "", ids[i]);
    }
    FK_ENSURE(fleetctl_https(c->ctx, c->u, "POST", path, file, c->timeout_s, &status, &body) == 0,
              fk_diag_set(&c->d, FK_E_IO, "POST /api/ota: no answer from the server"));
    o = cJSON_Parse(body != NULL ? body : "");
    FK_ENSURE(status == 202,
              fk_diag_set(&c->d, FK_E_PROTOCOL, "POST /api/ota: server answered %d: %s", status,
                          o != NULL ? fleetctl_jstr(o, "error") : "(no detail)"));
    const char *id = fleetctl_jstr(o, "job");
    FK_ENSURE(strncmp(id, "j-", 2) == 0 && strlen(id) < FK_INCIDENT_JOB_MAX,
              fk_diag_set(&c->d, FK_E_PROTOCOL, "POST /api/ota: no job id in the answer"));
    snprintf(job, FK_INCIDENT_JOB_MAX, "%s", id);
    rc = FK_OK;
out:
    cJSON_Delete(o);
    free(body);
    free(path);
    return rc;
}

/* Waits (bounded by --wait) until every device that is not forced has confirmed the new key
 * (firmware 0) or, among the devices in ids, runs new-key-only firmware (firmware 1). */
static enum fk_err wait_for(struct inc *c, int firmware, const char *const *ids, size_t n) {
    time_t until = time(NULL) + c->a->wait_s;
    for (;;) {
        struct fk_rot_status rs;
        enum fk_err rc = fk_rotation_status(c->inv, &c->k, &rs, &c->d);
        if (rc != FK_OK) {
            return rc;
        }
        size_t open = 0;
        for (size_t i = 0; i < rs.n; i++) {
            const struct fk_rot_device *d = &rs.dev[i];
            int in = ids == NULL;
            for (size_t j = 0; !in && j < n; j++) {
                in = strcmp(ids[j], d->id) == 0;
            }
            open += in && !d->forced && !(firmware ? d->runs_new_only : d->confirmed);
        }
        fk_rot_status_free(&rs);
        if (open == 0) {
            return FK_OK;
        }
        if (time(NULL) >= until) {
            return fk_diag_set(&c->d, FK_E_TIMEOUT,
                               "%zu device(s) did not confirm the new %s "
                               "within %ld s",
                               open, firmware ? "firmware" : "key", c->a->wait_s);
        }
        struct timespec ts = {c->a->poll_ms / 1000, (c->a->poll_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static enum fk_err step_push_dual(struct inc *c) {
    enum fk_err rc = push(c, c->st.dual.file, NULL, 0, c->st.dual_job);
    if (rc == FK_OK) {
        say(c, "dual-signed release pushed to every device: job %s", c->st.dual_job);
        cJSON *det = cJSON_CreateObject();
        cJSON_AddStringToObject(det, "job", c->st.dual_job);
        rc = step_done(c, FK_INCIDENT_PUSH_DUAL, det);
    }
    return rc;
}

/* Every run: the new-key-only release to the devices that confirmed the key and do not run it
 * yet (a forced device that came back is among them on a later run). */
static enum fk_err push_new(struct inc *c) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_rot_status rs;
    const char **ids = NULL;
    size_t n = 0;
    memset(&rs, 0, sizeof rs);
    FK_GUARD(fk_rotation_status(c->inv, &c->k, &rs, &c->d));
    ids = calloc(rs.n + 1, sizeof *ids);
    FK_ENSURE(ids != NULL, FK_E_NOMEM);
    for (size_t i = 0; i < rs.n; i++) {
        if (rs.dev[i].confirmed && !rs.dev[i].runs_new_only) {
            ids[n++] = rs.dev[i].id;
        }
    }
    if (n > 0) {
        FK_GUARD(push(c, c->st.fresh.file, ids, n, c->st.new_job));
        say(c, "new-key-only release pushed: job %s", c->st.new_job);
        cJSON *det = cJSON_CreateObject();
        cJSON_AddStringToObject(det, "job", c->st.new_job);
        cJSON_AddNumberToObject(det, "devices", (double)n);
        FK_GUARD(record(c, "push_new", det));
        FK_GUARD(wait_for(c, 1, ids, n));
    }
    rc = FK_OK;
out:
    free(ids);
    fk_rot_status_free(&rs);
    return rc;
}

static enum fk_err step_force(struct inc *c) {
    enum fk_err rc =
        fk_rotation_force(c->inv, &c->k, c->a->force, (size_t)c->a->nforce, ACTOR, NULL, &c->d);
    if (rc != FK_OK) {
        return rc;
    }
    cJSON *det = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(det, "devices");
    for (int i = 0; i < c->a->nforce && c->st.nforced < FK_INCIDENT_FORCED_MAX; i++) {
        snprintf(c->st.forced[c->st.nforced++], FK_INV_ID_SIZE, "%s", c->a->force[i]);
        cJSON_AddItemToArray(arr, cJSON_CreateString(c->a->force[i]));
    }
    return step_done(c, FK_INCIDENT_FORCE, det);
}

/* ---- the report ----------------------------------------------------------------------------- */
static int report(struct inc *c) {
    struct fk_rot_status rs;
    if (fk_rotation_status(c->inv, &c->k, &rs, &c->d) != FK_OK) {
        return fail(c, "status", FK_E_DB);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "incident", FK_INCIDENT_OTA_KEY);
    cJSON_AddStringToObject(o, "old_key", c->k.old_fpr);
    cJSON_AddStringToObject(o, "new_key", c->k.new_fpr);
    cJSON_AddBoolToObject(o, "old_key_retired", rs.old_retired);
    cJSON *done = cJSON_AddArrayToObject(o, "done");
    for (unsigned i = 0; i < FK_INCIDENT_STEP_COUNT; i++) {
        if (fk_incident_done(&c->st, (enum fk_incident_step)i)) {
            cJSON_AddItemToArray(done, cJSON_CreateString(fk_incident_step_name(i)));
        }
    }
    cJSON *devs = cJSON_AddArrayToObject(o, "devices");
    cJSON *nc = cJSON_AddArrayToObject(o, "not_covered");
    size_t uncovered = 0;
    if (!c->json) {
        printf("incident %s: old key %s %s; new key %s\n", FK_INCIDENT_OTA_KEY, c->k.old_fpr,
               rs.old_retired ? "RETIRED" : "still trusted", c->k.new_fpr);
    }
    for (size_t i = 0; i < rs.n; i++) {
        const struct fk_rot_device *d = &rs.dev[i];
        char seen[64];
        int covered = d->confirmed && d->runs_new_only && rs.old_retired;
        const char *why = covered             ? "covered"
                          : !d->confirmed     ? "does not hold the new key"
                          : !d->runs_new_only ? "does not run new-key-only firmware"
                                              : "old key not retired yet";
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "id", d->id);
        cJSON_AddBoolToObject(x, "new_key_confirmed", d->confirmed);
        cJSON_AddBoolToObject(x, "new_only_firmware", d->runs_new_only);
        cJSON_AddBoolToObject(x, "forced", d->forced);
        cJSON_AddBoolToObject(x, "covered", covered);
        cJSON_AddStringToObject(x, "reason", why);
        if (d->seen) {
            cJSON_AddStringToObject(x, "last_seen", d->last_seen);
        } else {
            cJSON_AddNullToObject(x, "last_seen");
        }
        cJSON_AddItemToArray(devs, x);
        if (!covered) {
            uncovered++;
            cJSON_AddItemToArray(nc, cJSON_CreateString(d->id));
        }
        if (!c->json) {
            printf("  %-24s %s%s (%s)\n", d->id,
                   covered ? "covered" : "NOT COVERED: ", covered ? "" : why,
                   fk_rot_seen_text(d, seen, sizeof seen));
        }
    }
    cJSON_AddNumberToObject(o, "devices_total", (double)rs.n);
    cJSON_AddNumberToObject(o, "devices_not_covered", (double)uncovered);
    if (c->json) {
        char *txt = cJSON_Print(o);
        if (txt != NULL) {
            puts(txt);
        }
        cJSON_free(txt);
    } else {
        printf("%zu of %zu devices covered", rs.n - uncovered, rs.n);
        if (uncovered > 0) {
            printf("; the others trust the compromised key until they are covered: re-run this "
                   "command when they are online, or re-flash them");
        }
        printf("\n");
    }
    int retired = rs.old_retired;
    cJSON_Delete(o);
    fk_rot_status_free(&rs);
    return !retired ? 1 : uncovered > 0 ? EXIT_UNCOVERED : 0;
}

/* ---- the plan ------------------------------------------------------------------------------- */
static enum fk_err load_state(struct inc *c) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if (access(c->a->state, F_OK) != 0) {
        memset(&c->st, 0, sizeof c->st);
        snprintf(c->st.old_fpr, sizeof c->st.old_fpr, "%s", c->k.old_fpr);
        fk_time_rfc3339((long long)time(NULL), c->st.started_at);
        return FK_OK;
    }
    enum fk_err rc = fk_file_read(c->a->state, FK_INCIDENT_STATE_MAX, &buf, &len, &c->d);
    if (rc == FK_OK) {
        rc = fk_incident_state_parse((const char *)buf, len, &c->st, &c->d);
        if (rc != FK_OK) {
            snprintf(c->d.file, sizeof c->d.file, "%s", c->a->state);
        }
    }
    free(buf);
    if (rc == FK_OK && strcmp(c->st.old_fpr, c->k.old_fpr) != 0) {
        rc =
            fk_diag_at(&c->d, FK_E_MISMATCH, c->a->state, 0,
                       "an incident about key %s, not %s (--old-key)", c->st.old_fpr, c->k.old_fpr);
    }
    return rc;
}

int fleetctl_incident_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                          const struct fleetctl_incident_args *a) {
    struct inc c;
    int ret = 1;
    enum fk_err rc = FK_E_INTERNAL;
    const char *what = "";
    char outdir[FK_INCIDENT_PATH_MAX];
    struct fleetctl_incident_args args = *a;
    memset(&c, 0, sizeof c);
    fk_diag_init(&c.d);
    if (args.out == NULL) {
        /* releases go next to the state file */
        snprintf(outdir, sizeof outdir, "%s", a->state);
        char *slash = strrchr(outdir, '/');
        if (slash != NULL) {
            *slash = '\0';
        } else {
            snprintf(outdir, sizeof outdir, ".");
        }
        args.out = outdir;
    }
    c.a = &args;
    c.ctx = ctx;
    c.u = u;
    c.timeout_s = timeout_s;
    c.json = json;
#define STEP(name, call)                                                                           \
    do {                                                                                           \
        what = (name);                                                                             \
        rc = (call);                                                                               \
        if (rc != FK_OK) {                                                                         \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
    STEP("--old-key", fk_ota_key_load(a->old_key, 1, &c.oldk, &c.d));
    STEP("--old-key", fk_rotation_key_fpr(c.oldk, c.k.old_fpr));
    STEP("--inventory", fk_inventory_open(a->inventory, &c.inv, &c.d));
    STEP("--state", load_state(&c));
    STEP("keygen", step_keygen(&c));
    if (!fk_incident_done(&c.st, FK_INCIDENT_START)) {
        STEP("start", step_start(&c));
    }
    if (!fk_incident_done(&c.st, FK_INCIDENT_SIGN_DUAL)) {
        STEP("sign_dual", sign_release(&c, 0, &c.st.dual));
    }
    if (!fk_incident_done(&c.st, FK_INCIDENT_PUSH_DUAL)) {
        STEP("push_dual", step_push_dual(&c));
    }
    if (!fk_incident_done(&c.st, FK_INCIDENT_FORCE) && a->nforce > 0) {
        /* the operator looked at the report and names the offline devices: don't wait */
        STEP("force", step_force(&c));
    }
    if (!fk_incident_done(&c.st, FK_INCIDENT_SIGN_NEW)) {
        what = "waiting for the new key";
        rc = wait_for(&c, 0, NULL, 0);
        if (rc == FK_E_TIMEOUT) {
            fprintf(stderr, "fleetctl incident: %s\n", c.d.msg);
            fk_diag_init(&c.d);
        } else if (rc != FK_OK) {
            goto out;
        }
        STEP("sign_new", sign_release(&c, 1, &c.st.fresh));
    }
    STEP("push_new", push_new(&c));
    if (!fk_incident_done(&c.st, FK_INCIDENT_RETIRE)) {
        struct fk_rot_status rs;
        what = "retire";
        rc = fk_rotation_retire_old(c.inv, &c.k, ACTOR, &rs, &c.d);
        fk_rot_status_free(&rs);
        if (rc != FK_OK) {
            goto out;
        }
        STEP("retire", step_done(&c, FK_INCIDENT_RETIRE, NULL));
    }
#undef STEP
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        fail(&c, what, rc);
        if (c.inv != NULL && c.k.new_fpr[0] != '\0') {
            report(&c); /* where it stands, with the devices that block */
        }
        ret = 1;
    } else {
        ret = report(&c);
    }
    fk_inventory_close(c.inv);
    fk_ota_key_free(c.oldk);
    fk_ota_key_free(c.newk);
    return ret;
}
