/* Signature checks done once per trust store instead of once per handshake: see
 * auth_internal.h (fk_srv_trust_prepare).
 *
 * Each full mTLS handshake used to verify four ECDSA signatures on the server: the client's
 * CertificateVerify, the leaf certificate, the issuing CA certificate (signed by the root) and
 * the CRL. The last two never change between handshakes: they are objects of the trust store,
 * verified here once when the store is built (and again when the CRL is reloaded, which builds
 * a new store). Two OpenSSL hooks of the store then consult that record:
 *
 * - check_crl (X509_STORE_set_check_crl): OpenSSL's own CRL selection (get_crl) and revocation
 *   lookup (cert_crl) are untouched; our check_crl does what OpenSSL 3.0's check_crl does for
 *   a complete, non-delta CRL without an issuingDistributionPoint and with the certificate's
 *   issuer as its issuer (what pki writes), in the same order and with the same errors: the
 *   issuer's keyUsage must allow cRLSign, thisUpdate/nextUpdate against the verification
 *   time, the issuer key, Suite B, and the signature, which is skipped only when this exact
 *   CRL object was verified with this exact issuer certificate object at load. Any other CRL
 *   (delta, IDP, indirect, extended CRL support) goes to OpenSSL's check_crl.
 * - verify (X509_STORE_set_verify): OpenSSL 3.0's internal_verify (signatures and validity
 *   dates along the chain, top down), skipping the signature check of a certificate only when
 *   it and its issuer are both objects of this store and that pair was verified at load.
 *   Partial chains go to OpenSSL's internal_verify.
 *
 * A signature check is deterministic in (signed object, issuer key), and the objects are the
 * store's own (OpenSSL hands out up-referenced pointers to them, never copies), so the
 * decisions, their order and their error codes are those of OpenSSL's checks. The record is
 * kept as the store's ex_data and freed with it. */
#include "auth_internal.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <stdlib.h>

/* (signed object, issuer certificate) pairs whose signature verified at load. */
struct sig_ok {
    const void *obj;
    const X509 *issuer;
};

struct trust {
    struct sig_ok *ok;
    size_t n, cap;
};

static int trust_idx = -1;
static X509_STORE_CTX_check_crl_fn ossl_check_crl;
static X509_STORE_CTX_verify_fn ossl_verify;

static void trust_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                       void *argp) {
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct trust *t = ptr;
    if (t != NULL) {
        free(t->ok);
        free(t);
    }
}

int fk_srv_trust_init(void) {
    if (trust_idx >= 0) {
        return 0;
    }
    /* OpenSSL's own check_crl and internal_verify are static; a context initialised on a
     * store without hooks hands out pointers to them, which ours fall back on. */
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *c = X509_STORE_CTX_new();
    int rc = -1;
    if (st != NULL && c != NULL && X509_STORE_CTX_init(c, st, NULL, NULL) == 1) {
        ossl_check_crl = X509_STORE_CTX_get_check_crl(c);
        ossl_verify = X509_STORE_CTX_get_verify(c);
        trust_idx = X509_STORE_get_ex_new_index(0, NULL, NULL, NULL, trust_free);
        rc = ossl_check_crl != NULL && trust_idx >= 0 ? 0 : -1;
    }
    X509_STORE_CTX_free(c);
    X509_STORE_free(st);
    return rc;
}

static int sig_known(const X509_STORE_CTX *ctx, const void *obj, const X509 *issuer) {
    const struct trust *t = X509_STORE_get_ex_data(X509_STORE_CTX_get0_store(ctx), trust_idx);
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (t->ok[i].obj == obj && t->ok[i].issuer == issuer) {
            return 1;
        }
    }
    return 0;
}

static int sig_add(struct trust *t, const void *obj, const X509 *issuer) {
    struct sig_ok *p = fk_grow(t->ok, &t->cap, t->n, sizeof *p, 8);
    if (p == NULL) {
        return -1;
    }
    t->ok = p;
    t->ok[t->n].obj = obj;
    t->ok[t->n].issuer = issuer;
    t->n++;
    return 0;
}

/* ---- the hooks ------------------------------------------------------------------------- */

/* Reports err on the current certificate, as OpenSSL's verify_cb_crl: the callback decides. */
static int crl_fail(X509_STORE_CTX *ctx, int err) {
    X509_STORE_CTX_set_error(ctx, err);
    return X509_STORE_CTX_get_verify_cb(ctx)(0, ctx);
}

static int cert_fail(X509_STORE_CTX *ctx, X509 *x, int depth, int err) {
    X509_STORE_CTX_set_error_depth(ctx, depth);
    X509_STORE_CTX_set_current_cert(ctx, x);
    X509_STORE_CTX_set_error(ctx, err);
    return X509_STORE_CTX_get_verify_cb(ctx)(0, ctx);
}

/* The verification time: NULL for now, or the parameter's check time; *skip when
 * X509_V_FLAG_NO_CHECK_TIME says not to check times at all. */
static time_t *check_time(X509_STORE_CTX *ctx, time_t *buf, int *skip) {
    const X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    unsigned long fl = X509_VERIFY_PARAM_get_flags(p);
    *skip = 0;
    if (fl & X509_V_FLAG_USE_CHECK_TIME) {
        *buf = X509_VERIFY_PARAM_get_time(p);
        return buf;
    }
    *skip = (fl & X509_V_FLAG_NO_CHECK_TIME) != 0;
    return NULL;
}

static int check_crl(X509_STORE_CTX *ctx, X509_CRL *crl) {
    X509 *issuer = X509_STORE_CTX_get0_current_issuer(ctx);
    X509 *x = X509_STORE_CTX_get_current_cert(ctx);
    unsigned long fl = X509_VERIFY_PARAM_get_flags(X509_STORE_CTX_get0_param(ctx));
    /* The CRLs whose selection score OpenSSL's check_crl consults in ways not visible here
     * (scope, path, delta) are left to it. */
    if (issuer == NULL || x == NULL ||
        (fl & (X509_V_FLAG_EXTENDED_CRL_SUPPORT | X509_V_FLAG_USE_DELTAS)) != 0 ||
        X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0 ||
        X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) >= 0 ||
        X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(x)) != 0) {
        return ossl_check_crl(ctx, crl);
    }
    if ((X509_get_extension_flags(issuer) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(issuer) & KU_CRL_SIGN) == 0 &&
        !crl_fail(ctx, X509_V_ERR_KEYUSAGE_NO_CRL_SIGN)) {
        return 0;
    }
    time_t tbuf;
    int skip;
    time_t *t = check_time(ctx, &tbuf, &skip);
    if (!skip) {
        int i = X509_cmp_time(X509_CRL_get0_lastUpdate(crl), t);
        if (i == 0 && !crl_fail(ctx, X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD)) {
            return 0;
        }
        if (i > 0 && !crl_fail(ctx, X509_V_ERR_CRL_NOT_YET_VALID)) {
            return 0;
        }
        if (X509_CRL_get0_nextUpdate(crl) != NULL) {
            i = X509_cmp_time(X509_CRL_get0_nextUpdate(crl), t);
            if (i == 0 && !crl_fail(ctx, X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD)) {
                return 0;
            }
            if (i < 0 && !crl_fail(ctx, X509_V_ERR_CRL_HAS_EXPIRED)) {
                return 0;
            }
        }
    }
    EVP_PKEY *ikey = X509_get0_pubkey(issuer);
    if (ikey == NULL) {
        return crl_fail(ctx, X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY);
    }
    int rv = X509_CRL_check_suiteb(crl, ikey, fl);
    if (rv != X509_V_OK && !crl_fail(ctx, rv)) {
        return 0;
    }
    if (!sig_known(ctx, crl, issuer) && X509_CRL_verify(crl, ikey) <= 0 &&
        !crl_fail(ctx, X509_V_ERR_CRL_SIGNATURE_FAILURE)) {
        return 0;
    }
    return 1;
}

/* RFC 5280 4.2.1.3: a CA whose keyUsage lacks keyCertSign signs no certificate (OpenSSL's
 * ossl_x509_signing_allowed; proxy certificates need digitalSignature instead). */
static int signing_allowed(X509 *issuer, X509 *subject) {
    uint32_t need = (X509_get_extension_flags(subject) & EXFLAG_PROXY) != 0 ? KU_DIGITAL_SIGNATURE
                                                                            : KU_KEY_CERT_SIGN;
    if ((X509_get_extension_flags(issuer) & EXFLAG_KUSAGE) != 0 &&
        (X509_get_key_usage(issuer) & need) == 0) {
        return need == KU_DIGITAL_SIGNATURE ? X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE
                                            : X509_V_ERR_KEYUSAGE_NO_CERTSIGN;
    }
    return X509_V_OK;
}

static int cert_time_ok(X509_STORE_CTX *ctx, X509 *x, int depth) {
    time_t tbuf;
    int skip;
    time_t *t = check_time(ctx, &tbuf, &skip);
    if (skip) {
        return 1;
    }
    int i = X509_cmp_time(X509_get0_notBefore(x), t);
    if (i == 0 && !cert_fail(ctx, x, depth, X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD)) {
        return 0;
    }
    if (i > 0 && !cert_fail(ctx, x, depth, X509_V_ERR_CERT_NOT_YET_VALID)) {
        return 0;
    }
    i = X509_cmp_time(X509_get0_notAfter(x), t);
    if (i == 0 && !cert_fail(ctx, x, depth, X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD)) {
        return 0;
    }
    if (i < 0 && !cert_fail(ctx, x, depth, X509_V_ERR_CERT_HAS_EXPIRED)) {
        return 0;
    }
    return 1;
}

static int verify_chain_sigs(X509_STORE_CTX *ctx) {
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    unsigned long fl = X509_VERIFY_PARAM_get_flags(X509_STORE_CTX_get0_param(ctx));
    int n = sk_X509_num(chain) - 1;
    if (n < 0 || (fl & X509_V_FLAG_PARTIAL_CHAIN) != 0) {
        return ossl_verify(ctx);
    }
    X509 *xi = sk_X509_value(chain, n);
    X509 *xs = xi;
    if (!X509_STORE_CTX_get_check_issued(ctx)(ctx, xi, xi)) {
        /* The top certificate is not self-issued: its issuer is not in the chain. */
        if (n == 0) {
            cert_fail(ctx, xi, 0, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE);
            return 0;
        }
        n--;
        X509_STORE_CTX_set_error_depth(ctx, n);
        xs = sk_X509_value(chain, n);
    }
    X509_STORE_CTX_verify_cb cb = X509_STORE_CTX_get_verify_cb(ctx);
    while (n >= 0) {
        if (xs != xi || (fl & X509_V_FLAG_CHECK_SS_SIGNATURE) != 0) {
            int idepth = n + (xs == xi ? 0 : 1);
            int err = xs == xi && (X509_get_extension_flags(xi) & EXFLAG_CA) == 0
                          ? X509_V_OK
                          : signing_allowed(xi, xs);
            if (err != X509_V_OK && !cert_fail(ctx, xi, idepth, err)) {
                return 0;
            }
            EVP_PKEY *pkey = X509_get0_pubkey(xi);
            if (pkey == NULL) {
                if (!cert_fail(ctx, xi, idepth, X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY)) {
                    return 0;
                }
            } else if (!sig_known(ctx, xs, xi) && X509_verify(xs, pkey) <= 0 &&
                       !cert_fail(ctx, xs, n, X509_V_ERR_CERT_SIGNATURE_FAILURE)) {
                return 0;
            }
        }
        if (!cert_time_ok(ctx, xs, n)) {
            return 0;
        }
        /* Success at this depth (an earlier error, if the callback let it pass, stays). */
        X509_STORE_CTX_set_current_cert(ctx, xs);
        X509_STORE_CTX_set_error_depth(ctx, n);
        if (!cb(1, ctx)) {
            return 0;
        }
        if (--n >= 0) {
            xi = xs;
            xs = sk_X509_value(chain, n);
        }
    }
    return 1;
}

/* ---- load ------------------------------------------------------------------------------ */

enum fk_err fk_srv_trust_prepare(X509_STORE *st, size_t *n_cached) {
    enum fk_err rc = FK_E_NOMEM;
    struct trust *t = calloc(1, sizeof *t);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(st);
    *n_cached = 0;
    if (t == NULL) {
        goto out;
    }
    for (int a = 0; a < sk_X509_OBJECT_num(objs); a++) {
        X509_OBJECT *oa = sk_X509_OBJECT_value(objs, a);
        X509 *ca = X509_OBJECT_get0_X509(oa);
        if (ca == NULL) {
            continue;
        }
        EVP_PKEY *key = X509_get0_pubkey(ca);
        for (int b = 0; key != NULL && b < sk_X509_OBJECT_num(objs); b++) {
            X509_OBJECT *ob = sk_X509_OBJECT_value(objs, b);
            X509 *cert = X509_OBJECT_get0_X509(ob);
            X509_CRL *crl = X509_OBJECT_get0_X509_CRL(ob);
            /* Only what passes here is ever skipped; a failure is left to be found (and
             * reported) by the handshake that meets it. */
            if (cert != NULL && cert != ca && X509_check_issued(ca, cert) == X509_V_OK &&
                X509_verify(cert, key) == 1 && sig_add(t, cert, ca) != 0) {
                goto out;
            }
            if (crl != NULL &&
                X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0 &&
                X509_CRL_verify(crl, key) == 1 && sig_add(t, crl, ca) != 0) {
                goto out;
            }
        }
    }
    ERR_clear_error();
    if (X509_STORE_set_ex_data(st, trust_idx, t) != 1) {
        rc = FK_E_CRYPTO;
        goto out;
    }
    *n_cached = t->n;
    t = NULL;
    X509_STORE_set_check_crl(st, check_crl);
    X509_STORE_set_verify(st, verify_chain_sigs);
    rc = FK_OK;
out:
    trust_free(NULL, t, NULL, 0, 0, NULL);
    return rc;
}
