/* The `--ca` part of generate and batch: a device's mTLS identity issued through the pki
 * library and handed to fk_keys_mint. The private key goes from the issued certificate
 * (wiped when freed) into the NVS image and nowhere else: no CA-directory key file, no
 * manifest field, no .pem next to the manifest. */
#ifndef PROVISION_KEYS_MTLS_H
#define PROVISION_KEYS_MTLS_H

#include "fleetkey/keys.h"
#include "fleetkey/pki.h"

/* Opens the CA in dir and converts its chain (issuing, then root) to DER for the image.
 * *chain is malloc'd (free()). Codes of fk_pki_ca_open and fk_keys_pem_chain_to_der. */
FK_MUST_CHECK enum fk_err fk_cli_mtls_open(const char *dir, struct fk_pki_ca **ca, uint8_t **chain,
                                           size_t *chain_len, struct fk_diag *diag);

/* Issues a device certificate for id (days 0 = the CA's default) and points the mTLS fields
 * of *o at it; *blobs and *issued must outlive the fk_keys_mint call that uses *o, after
 * which the caller frees *issued (fk_pki_issued_free wipes the key). The CA object must not
 * be used by another thread during the call. Codes of fk_pki_issue_device. */
FK_MUST_CHECK enum fk_err fk_cli_mtls_issue(struct fk_pki_ca *ca, const char *id, unsigned days,
                                            const uint8_t *chain, size_t chain_len,
                                            struct fk_pki_issued **issued,
                                            struct fk_keys_mtls *blobs, struct fk_keys_mint_opts *o,
                                            struct fk_diag *diag);

/* Which device names fk_cli_mtls_supersede looks at. */
typedef int fk_cli_name_fn(void *user, const char *name);

/* Revokes, with reason superseded, every device certificate not yet revoked whose name
 * `wanted` accepts and whose fingerprint is not keep_fpr (NULL: keep none): the certificates
 * of earlier or interrupted mints of a device that is now minted again. *count (may be NULL)
 * receives how many were revoked. FK_OK, FK_E_NOMEM, FK_E_PARSE, FK_E_IO. */
FK_MUST_CHECK enum fk_err fk_cli_mtls_supersede(struct fk_pki_ca *ca, fk_cli_name_fn *wanted,
                                                void *user, const char *keep_fpr, size_t *count,
                                                struct fk_diag *diag);

#endif
