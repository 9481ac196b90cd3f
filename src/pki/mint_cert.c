/* A device's mTLS identity for the image minted by generate and batch (--ca): see the
 * fk_pki_mtls_* declarations at the end of pki.h. Moved here from the provision-keys tool so
 * that batch minting (src/batch) and rotation can issue device certificates too. */
#include "fleetkey/keys.h"
#include "fleetkey/pki.h"

#include <stdlib.h>
#include <string.h>

enum fk_err fk_pki_mtls_open(const char *dir, struct fk_pki_ca **ca, uint8_t **chain,
                             size_t *chain_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_GUARD(fk_pki_ca_open(dir, ca, diag));
    rc = fk_keys_pem_chain_to_der(fk_pki_ca_chain_pem(*ca), chain, chain_len);
    FK_ENSURE(rc == FK_OK, fk_diag_at(diag, rc, dir, 0, "ca-chain: cannot convert to DER"));
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        fk_pki_ca_free(*ca);
        *ca = NULL;
    }
    return rc;
}

enum fk_err fk_pki_mtls_issue(struct fk_pki_ca *ca, const char *id, unsigned days,
                              const uint8_t *chain, size_t chain_len, struct fk_pki_issued **issued,
                              struct fk_keys_mtls *blobs, struct fk_keys_mint_opts *o,
                              struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_GUARD(fk_pki_issue_device(ca, id, days, issued, diag));
    memset(blobs, 0, sizeof *blobs);
    blobs->cert_der = fk_pki_issued_cert_der(*issued, &blobs->cert_der_len);
    blobs->key_der = fk_pki_issued_key_der(*issued, &blobs->key_der_len);
    blobs->ca_der = chain;
    blobs->ca_der_len = chain_len;
    FK_ENSURE(blobs->key_der != NULL, FK_E_INTERNAL);
    o->mtls = blobs;
    o->mtls_cert_pem = fk_pki_issued_cert_pem(*issued);
    o->mtls_fingerprint = fk_pki_issued_fingerprint(*issued);
    o->mtls_serial = fk_pki_issued_serial(*issued);
    o->mtls_not_after = fk_pki_issued_not_after(*issued);
    rc = FK_OK;
out:
    return rc;
}

struct victims {
    fk_pki_name_fn *wanted;
    void *user;
    const char *keep;
    char (*serial)[FK_PKI_SERIAL_HEX_LEN * 2 + 1];
    size_t n;
    size_t cap;
    int oom;
};

static int collect(void *user, const struct fk_pki_cert_info *info) {
    struct victims *v = user;
    if (info->kind != FK_PKI_DEVICE || info->revoked || !v->wanted(v->user, info->name) ||
        (v->keep != NULL && strcmp(info->fingerprint, v->keep) == 0)) {
        return 0;
    }
    void *np = fk_grow(v->serial, &v->cap, v->n, sizeof *v->serial, 16);
    if (np == NULL) {
        v->oom = 1;
        return 1;
    }
    v->serial = np;
    memcpy(v->serial[v->n++], info->serial, sizeof *v->serial);
    return 0;
}

enum fk_err fk_pki_mtls_supersede(struct fk_pki_ca *ca, fk_pki_name_fn *wanted, void *user,
                                  const char *keep_fpr, size_t *count, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct victims v = {wanted, user, keep_fpr, NULL, 0, 0, 0};
    /* Collect first: fk_pki_list holds the directory lock while it walks. */
    FK_GUARD(fk_pki_list(ca, collect, &v, diag));
    FK_ENSURE(!v.oom, FK_E_NOMEM);
    for (size_t i = 0; i < v.n; i++) {
        rc = fk_pki_revoke_serial(ca, v.serial[i], FK_PKI_REASON_SUPERSEDED, 0, diag);
        FK_ENSURE(rc == FK_OK || rc == FK_E_STATE, rc); /* revoked meanwhile: fine */
    }
    if (count != NULL) {
        *count = v.n;
    }
    rc = FK_OK;
out:
    free(v.serial);
    return rc;
}
