/* Certificate signing requests: parsing (PEM or DER), the requester's proof of possession,
 * and the policy a CSR must meet before fk_pki_issue signs its key (issue.c). With a CSR
 * only the public key is used; the subject and every extension are ours, so a requester
 * cannot ask for CA:TRUE or someone else's name. */
#include "pki_internal.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string.h>
#include <strings.h>

static int has_pem_header(const uint8_t *buf, size_t len) {
    static const char tag[] = "-----BEGIN";
    for (size_t i = 0; i + sizeof tag - 1 <= len; i++) {
        if (memcmp(buf + i, tag, sizeof tag - 1) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Parses, verifies and policy-checks a CSR; *out (may be NULL) receives the request. */
enum fk_err pki_csr_load(const uint8_t *buf, size_t len, enum fk_pki_kind kind, const char *name,
                         X509_REQ **out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    X509_REQ *req = NULL;
    BIO *b = NULL;
    unsigned char *utf8 = NULL;

    FK_ENSURE(buf != NULL && len > 0, fk_diag_set(diag, FK_E_PARSE, "CSR: empty"));
    FK_ENSURE(len <= FK_PKI_CSR_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "CSR: larger than %u bytes", FK_PKI_CSR_MAX));
    if (has_pem_header(buf, len)) {
        b = BIO_new_mem_buf(buf, (int)len);
        FK_ENSURE(b != NULL, FK_E_NOMEM);
        req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    } else {
        const unsigned char *p = buf;
        req = d2i_X509_REQ(NULL, &p, (long)len);
        /* DER must be exactly one request: trailing bytes mean a damaged or spliced file. */
        FK_ENSURE(req == NULL || p == buf + len,
                  fk_diag_set(diag, FK_E_PARSE, "CSR: trailing data after the request"));
    }
    FK_ENSURE(req != NULL,
              fk_diag_set(diag, FK_E_PARSE, "CSR: not a PKCS#10 request (PEM or DER)"));
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    FK_ENSURE(pub != NULL, fk_diag_set(diag, FK_E_PARSE, "CSR: unreadable public key"));
    /* The self-signature proves the requester holds the private key (RFC 2986 4.2). */
    FK_ENSURE(X509_REQ_verify(req, pub) == 1,
              fk_diag_set(diag, FK_E_VERIFY, "CSR: signature does not verify"));

    int id = EVP_PKEY_get_base_id(pub);
    if (id == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        FK_ENSURE(EVP_PKEY_get_group_name(pub, group, sizeof group, &glen) == 1,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: EC key without a named curve"));
        FK_ENSURE(
            strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
                strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0,
            fk_diag_set(diag, FK_E_POLICY, "CSR: curve %s not allowed (P-256, P-384)", group));
    } else if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pub);
        FK_ENSURE(bits >= 2048 && bits <= 8192,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: RSA-%d not allowed (2048..8192)", bits));
    } else {
        FK_ENSURE(
            0, fk_diag_set(diag, FK_E_POLICY, "CSR: key type not allowed (EC P-256/P-384 or RSA)"));
    }

    /* Policy on the subject: the name is ours (from the command line); a CSR may carry a CN,
     * but then it must be that name, so a request for "robot-A" cannot become "robot-B". */
    const X509_NAME *subj = X509_REQ_get_subject_name(req);
    int i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i >= 0) {
        FK_ENSURE(X509_NAME_get_index_by_NID(subj, NID_commonName, i) < 0,
                  fk_diag_set(diag, FK_E_POLICY, "CSR: more than one CN"));
        int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
        FK_ENSURE(n >= 0, fk_diag_set(diag, FK_E_PARSE, "CSR: unreadable CN"));
        int same = name != NULL && strlen(name) == (size_t)n &&
                   (kind == FK_PKI_SERVER ? strncasecmp((const char *)utf8, name, (size_t)n)
                                          : memcmp(utf8, name, (size_t)n)) == 0;
        FK_ENSURE(same, fk_diag_set(diag, FK_E_POLICY, "CSR: CN does not match the %s name '%s'",
                                    fk_pki_kind_name(kind), name != NULL ? name : ""));
    }
    if (out != NULL) {
        *out = req;
        req = NULL;
    }
    rc = FK_OK;
out:
    OPENSSL_free(utf8);
    X509_REQ_free(req);
    BIO_free(b);
    ERR_clear_error(); /* failures are reported through rc/diag, not the OpenSSL queue */
    return rc;
}

enum fk_err fk_pki_csr_check(const uint8_t *buf, size_t len, enum fk_pki_kind kind,
                             const char *name, struct fk_diag *diag) {
    return pki_csr_load(buf, len, kind, name, NULL, diag);
}
