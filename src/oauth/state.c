/* The server's durable token state (fleetkey/oauth.h, "the server's durable token state").
 *
 * Small by design: one entry per grant (family) and one per revoked access token still
 * unexpired, searched linearly; a fleet's operators and phones make hundreds of these, not
 * millions. The document is versioned so a later layout can be told apart, and the parser
 * checks every field's shape: the server trusts this file at start, so a damaged one is
 * refused with the field named rather than half-read. */
#include "fleetkey/oauth.h"

#include <cjson/cJSON.h>

#include <stdlib.h>
#include <string.h>

#define STATE_VERSION 1

struct jti_ent {
    char jti[FK_OAUTH_JTI_SIZE];
    long long exp;
};

struct fam {
    struct fk_oauth_family f;
    char (*spent)[FK_OAUTH_B64_32];
    size_t nspent;
    struct jti_ent *jtis;
    size_t njtis;
};

struct fk_oauth_state {
    struct fam *fams;
    size_t nfams;
    struct jti_ent *denied;
    size_t ndenied;
};

enum fk_err fk_oauth_state_new(struct fk_oauth_state **out) {
    *out = calloc(1, sizeof **out);
    return *out != NULL ? FK_OK : FK_E_NOMEM;
}

static void fam_clear(struct fam *f) {
    fk_wipe(f->spent, f->nspent * sizeof *f->spent);
    free(f->spent);
    free(f->jtis);
    memset(f, 0, sizeof *f);
}

void fk_oauth_state_free(struct fk_oauth_state *st) {
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->nfams; i++) {
        fam_clear(&st->fams[i]);
    }
    free(st->fams);
    free(st->denied);
    free(st);
}

static struct fam *fam_find(const struct fk_oauth_state *st, const char *id) {
    for (size_t i = 0; i < st->nfams; i++) {
        if (strcmp(st->fams[i].f.id, id) == 0) {
            return &st->fams[i];
        }
    }
    return NULL;
}

static enum fk_err jti_push(struct jti_ent **v, size_t *n, const char *jti, long long exp) {
    if (strlen(jti) >= FK_OAUTH_JTI_SIZE) {
        return FK_E_ARG;
    }
    struct jti_ent *q = realloc(*v, (*n + 1) * sizeof *q);
    if (q == NULL) {
        return FK_E_NOMEM;
    }
    *v = q;
    memcpy(q[*n].jti, jti, strlen(jti) + 1);
    q[*n].exp = exp;
    (*n)++;
    return FK_OK;
}

static int fam_shape_ok(const struct fk_oauth_family *f) {
    return f->id[0] != '\0' && f->client[0] != '\0' && f->kind[0] != '\0' && f->x5t[0] != '\0' &&
           (f->scope & ~(unsigned)FK_SCOPE_ALL) == 0;
}

enum fk_err fk_oauth_state_family_add(struct fk_oauth_state *st, const struct fk_oauth_family *f,
                                      const char *jti, long long jti_exp) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_ENSURE(fam_shape_ok(f), FK_E_ARG);
    FK_ENSURE(fam_find(st, f->id) == NULL, FK_E_EXISTS);
    struct fam *q = realloc(st->fams, (st->nfams + 1) * sizeof *q);
    FK_ENSURE(q != NULL, FK_E_NOMEM);
    st->fams = q;
    struct fam *n = &st->fams[st->nfams];
    memset(n, 0, sizeof *n);
    n->f = *f;
    if (jti != NULL) {
        FK_GUARD(jti_push(&n->jtis, &n->njtis, jti, jti_exp));
    }
    st->nfams++;
    rc = FK_OK;
out:
    return rc;
}

enum fk_oauth_rt fk_oauth_state_rt_find(const struct fk_oauth_state *st,
                                        const char hash[FK_OAUTH_B64_32], long long now,
                                        struct fk_oauth_family *out) {
    for (size_t i = 0; i < st->nfams; i++) {
        const struct fam *f = &st->fams[i];
        enum fk_oauth_rt r = FK_OAUTH_RT_UNKNOWN;
        if (fk_ct_equal(f->f.rt_hash, hash, FK_OAUTH_B64_32)) {
            r = f->f.revoked         ? FK_OAUTH_RT_REVOKED
                : now >= f->f.rt_exp ? FK_OAUTH_RT_EXPIRED
                                     : FK_OAUTH_RT_ACTIVE;
        }
        for (size_t j = 0; r == FK_OAUTH_RT_UNKNOWN && j < f->nspent; j++) {
            if (fk_ct_equal(f->spent[j], hash, FK_OAUTH_B64_32)) {
                r = FK_OAUTH_RT_SPENT;
            }
        }
        if (r != FK_OAUTH_RT_UNKNOWN) {
            if (out != NULL) {
                *out = f->f;
            }
            return r;
        }
    }
    return FK_OAUTH_RT_UNKNOWN;
}

enum fk_err fk_oauth_state_rt_rotate(struct fk_oauth_state *st, const char *id,
                                     const char new_hash[FK_OAUTH_B64_32], long long rt_exp,
                                     const char *jti, long long jti_exp) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fam *f = fam_find(st, id);
    FK_ENSURE(f != NULL, FK_E_NOTFOUND);
    FK_ENSURE(!f->f.revoked, FK_E_STATE);
    FK_GUARD(jti_push(&f->jtis, &f->njtis, jti, jti_exp));
    if (f->nspent == FK_OAUTH_SPENT_MAX) {
        memmove(f->spent, f->spent + 1, (f->nspent - 1) * sizeof *f->spent);
        f->nspent--;
    } else {
        char(*q)[FK_OAUTH_B64_32] = realloc(f->spent, (f->nspent + 1) * sizeof *q);
        FK_ENSURE(q != NULL, FK_E_NOMEM);
        f->spent = q;
    }
    memcpy(f->spent[f->nspent++], f->f.rt_hash, FK_OAUTH_B64_32);
    memcpy(f->f.rt_hash, new_hash, FK_OAUTH_B64_32);
    f->f.rt_exp = rt_exp;
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_oauth_state_jti_revoke(struct fk_oauth_state *st, const char *jti, long long exp) {
    if (fk_oauth_state_jti_revoked(st, jti)) {
        return FK_OK;
    }
    return jti_push(&st->denied, &st->ndenied, jti, exp);
}

int fk_oauth_state_jti_revoked(const struct fk_oauth_state *st, const char *jti) {
    for (size_t i = 0; i < st->ndenied; i++) {
        if (strcmp(st->denied[i].jti, jti) == 0) {
            return 1;
        }
    }
    return 0;
}

enum fk_err fk_oauth_state_family_revoke(struct fk_oauth_state *st, const char *id) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fam *f = fam_find(st, id);
    FK_ENSURE(f != NULL, FK_E_NOTFOUND);
    f->f.revoked = 1;
    for (size_t i = 0; i < f->njtis; i++) {
        FK_GUARD(fk_oauth_state_jti_revoke(st, f->jtis[i].jti, f->jtis[i].exp));
    }
    rc = FK_OK;
out:
    return rc;
}

void fk_oauth_state_prune(struct fk_oauth_state *st, long long now) {
    long long gone = now - FK_OAUTH_LEEWAY_S; /* a token with exp before this verifies nowhere */
    size_t k = 0;
    for (size_t i = 0; i < st->ndenied; i++) {
        if (st->denied[i].exp >= gone) {
            st->denied[k++] = st->denied[i];
        }
    }
    st->ndenied = k;
    k = 0;
    for (size_t i = 0; i < st->nfams; i++) {
        struct fam *f = &st->fams[i];
        size_t m = 0;
        for (size_t j = 0; j < f->njtis; j++) {
            if (f->jtis[j].exp >= gone) {
                f->jtis[m++] = f->jtis[j];
            }
        }
        f->njtis = m;
        if (f->f.rt_exp < now && f->njtis == 0) {
            fam_clear(f);
            continue;
        }
        st->fams[k++] = *f;
    }
    st->nfams = k;
}

void fk_oauth_state_counts(const struct fk_oauth_state *st, size_t *families, size_t *denied) {
    size_t live = 0;
    for (size_t i = 0; i < st->nfams; i++) {
        live += !st->fams[i].f.revoked;
    }
    *families = live;
    *denied = st->ndenied;
}

void fk_oauth_state_horizon(const struct fk_oauth_state *st, long long now, long long *rt_soonest,
                            long long *at_latest) {
    *rt_soonest = 0;
    *at_latest = 0;
    for (size_t i = 0; i < st->nfams; i++) {
        const struct fam *f = &st->fams[i];
        if (f->f.revoked) {
            continue;
        }
        if (f->f.rt_exp > now && (*rt_soonest == 0 || f->f.rt_exp < *rt_soonest)) {
            *rt_soonest = f->f.rt_exp;
        }
        for (size_t k = 0; k < f->njtis; k++) {
            if (f->jtis[k].exp > now && f->jtis[k].exp > *at_latest) {
                *at_latest = f->jtis[k].exp;
            }
        }
    }
}

/* ---- the document ----------------------------------------------------------------------- */

static cJSON *jtis_json(const struct jti_ent *v, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "jti", v[i].jti);
        cJSON_AddNumberToObject(o, "exp", (double)v[i].exp);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

enum fk_err fk_oauth_state_serialize(const struct fk_oauth_state *st, char **out, size_t *len) {
    enum fk_err rc = FK_E_NOMEM;
    cJSON *root = cJSON_CreateObject();
    FK_ENSURE(root != NULL, FK_E_NOMEM);
    cJSON_AddNumberToObject(root, "version", STATE_VERSION);
    cJSON *fams = cJSON_AddArrayToObject(root, "families");
    for (size_t i = 0; fams != NULL && i < st->nfams; i++) {
        const struct fam *f = &st->fams[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", f->f.id);
        cJSON_AddStringToObject(o, "client", f->f.client);
        cJSON_AddStringToObject(o, "kind", f->f.kind);
        cJSON_AddStringToObject(o, "x5t", f->f.x5t);
        cJSON_AddNumberToObject(o, "scope", f->f.scope);
        cJSON_AddStringToObject(o, "rt_hash", f->f.rt_hash);
        cJSON_AddNumberToObject(o, "rt_exp", (double)f->f.rt_exp);
        cJSON_AddBoolToObject(o, "revoked", f->f.revoked);
        cJSON *sp = cJSON_AddArrayToObject(o, "spent");
        for (size_t j = 0; sp != NULL && j < f->nspent; j++) {
            cJSON_AddItemToArray(sp, cJSON_CreateString(f->spent[j]));
        }
        cJSON_AddItemToObject(o, "jtis", jtis_json(f->jtis, f->njtis));
        cJSON_AddItemToArray(fams, o);
    }
    cJSON_AddItemToObject(root, "revoked_jti", jtis_json(st->denied, st->ndenied));
    char *text = cJSON_PrintUnformatted(root);
    FK_ENSURE(text != NULL, FK_E_NOMEM);
    *out = text;
    *len = strlen(text);
    rc = FK_OK;
out:
    cJSON_Delete(root);
    return rc;
}

static enum fk_err str_field(const cJSON *o, const char *name, char *out, size_t size, size_t want,
                             struct fk_diag *diag, size_t idx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    size_t n = cJSON_IsString(it) ? strlen(it->valuestring) : 0;
    if (!cJSON_IsString(it) || n == 0 || n >= size || (want != 0 && n != want)) {
        return fk_diag_set(diag, FK_E_PARSE, "families[%zu].%s: expected a string of %s%zu chars",
                           idx, name, want != 0 ? "" : "at most ", want != 0 ? want : size - 1);
    }
    memcpy(out, it->valuestring, n + 1);
    return FK_OK;
}

static int num_ok(const cJSON *it, double max) {
    return cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble <= max &&
           it->valuedouble == (double)(long long)it->valuedouble;
}

static enum fk_err jtis_parse(const cJSON *a, struct jti_ent **v, size_t *n, const char *what,
                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    const cJSON *e;
    FK_ENSURE(cJSON_IsArray(a), fk_diag_set(diag, FK_E_PARSE, "%s: expected an array", what));
    cJSON_ArrayForEach(e, a) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(e, "jti");
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, "exp");
        FK_ENSURE(cJSON_IsString(j) && strlen(j->valuestring) == FK_OAUTH_JTI_SIZE - 1 &&
                      num_ok(x, 1e12),
                  fk_diag_set(diag, FK_E_PARSE, "%s: expected {\"jti\":22 chars,\"exp\":n}", what));
        FK_GUARD(jti_push(v, n, j->valuestring, (long long)x->valuedouble));
    }
    rc = FK_OK;
out:
    return rc;
}

static enum fk_err fam_parse(const cJSON *o, size_t idx, struct fam *f, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_ENSURE(cJSON_IsObject(o),
              fk_diag_set(diag, FK_E_PARSE, "families[%zu]: expected an object", idx));
    FK_GUARD(str_field(o, "id", f->f.id, sizeof f->f.id, FK_OAUTH_JTI_SIZE - 1, diag, idx));
    FK_GUARD(str_field(o, "client", f->f.client, sizeof f->f.client, 0, diag, idx));
    FK_GUARD(str_field(o, "kind", f->f.kind, sizeof f->f.kind, 0, diag, idx));
    FK_GUARD(str_field(o, "x5t", f->f.x5t, sizeof f->f.x5t, FK_OAUTH_B64_32 - 1, diag, idx));
    FK_GUARD(
        str_field(o, "rt_hash", f->f.rt_hash, sizeof f->f.rt_hash, FK_OAUTH_B64_32 - 1, diag, idx));
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "scope");
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(o, "rt_exp");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(o, "revoked");
    FK_ENSURE(num_ok(sc, FK_SCOPE_ALL) && num_ok(ex, 1e12) && cJSON_IsBool(rv),
              fk_diag_set(diag, FK_E_PARSE, "families[%zu]: scope, rt_exp or revoked", idx));
    f->f.scope = (unsigned)sc->valuedouble;
    f->f.rt_exp = (long long)ex->valuedouble;
    f->f.revoked = cJSON_IsTrue(rv);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "spent");
    FK_ENSURE(cJSON_IsArray(sp) && cJSON_GetArraySize(sp) <= FK_OAUTH_SPENT_MAX,
              fk_diag_set(diag, FK_E_PARSE, "families[%zu].spent: expected at most %d hashes", idx,
                          FK_OAUTH_SPENT_MAX));
    size_t ns = (size_t)cJSON_GetArraySize(sp);
    f->spent = calloc(ns > 0 ? ns : 1, sizeof *f->spent);
    FK_ENSURE(f->spent != NULL, FK_E_NOMEM);
    const cJSON *e;
    cJSON_ArrayForEach(e, sp) {
        FK_ENSURE(cJSON_IsString(e) && strlen(e->valuestring) == FK_OAUTH_B64_32 - 1,
                  fk_diag_set(diag, FK_E_PARSE, "families[%zu].spent: expected hashes", idx));
        memcpy(f->spent[f->nspent++], e->valuestring, FK_OAUTH_B64_32);
    }
    FK_GUARD(jtis_parse(cJSON_GetObjectItemCaseSensitive(o, "jtis"), &f->jtis, &f->njtis,
                        "families[].jtis", diag));
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_oauth_state_parse(const uint8_t *buf, size_t len, struct fk_oauth_state **out,
                                 struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *root = NULL;
    struct fk_oauth_state *st = NULL;
    *out = NULL;
    FK_ENSURE(len <= FK_OAUTH_STATE_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "larger than %u bytes", FK_OAUTH_STATE_MAX));
    root = cJSON_ParseWithLength((const char *)buf, len);
    FK_ENSURE(cJSON_IsObject(root), fk_diag_set(diag, FK_E_PARSE, "not a JSON object"));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    FK_ENSURE(cJSON_IsNumber(v), fk_diag_set(diag, FK_E_PARSE, "version: expected a number"));
    FK_ENSURE(v->valuedouble == STATE_VERSION,
              fk_diag_set(diag, FK_E_UNSUPPORTED, "version %g: this build reads version %d",
                          v->valuedouble, STATE_VERSION));
    FK_GUARD(fk_oauth_state_new(&st));
    const cJSON *fams = cJSON_GetObjectItemCaseSensitive(root, "families");
    FK_ENSURE(cJSON_IsArray(fams), fk_diag_set(diag, FK_E_PARSE, "families: expected an array"));
    size_t nf = (size_t)cJSON_GetArraySize(fams);
    st->fams = calloc(nf > 0 ? nf : 1, sizeof *st->fams);
    FK_ENSURE(st->fams != NULL, FK_E_NOMEM);
    const cJSON *e;
    cJSON_ArrayForEach(e, fams) {
        struct fam *f = &st->fams[st->nfams];
        st->nfams++; /* counted first so that fk_oauth_state_free releases a half-parsed one */
        FK_GUARD(fam_parse(e, st->nfams - 1, f, diag));
        for (size_t i = 0; i + 1 < st->nfams; i++) {
            FK_ENSURE(strcmp(st->fams[i].f.id, f->f.id) != 0,
                      fk_diag_set(diag, FK_E_PARSE, "families[%zu].id: repeated", st->nfams - 1));
        }
    }
    FK_GUARD(jtis_parse(cJSON_GetObjectItemCaseSensitive(root, "revoked_jti"), &st->denied,
                        &st->ndenied, "revoked_jti", diag));
    *out = st;
    st = NULL;
    rc = FK_OK;
out:
    fk_oauth_state_free(st);
    cJSON_Delete(root);
    return rc;
}
