/* Fuzz target: the Secure Boot V2 signature sector parser and everything that reads a parsed
 * block (key digest, the block's own key and signature, its PEM, and full verification
 * against a fixed trusted key). Inputs are whole "signed files" (a multiple of 4096 bytes to
 * get past the length check). */
#include "fleetkey/ota.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* key_a.pub.pem of tests/vectors/sbv2 (a public key: nothing secret in a fuzz target). */
static const char trusted_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC/NX2DoADm9svG9bViG9hfT7XP8j\n"
    "04AeKgmD4EDDFaaFuI8sI+6WexwJU9FWoBqy5Ek2NJ/n1e3naD0Ek7PEBQ==\n"
    "-----END PUBLIC KEY-----\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct fk_ota_sig_sector sec;
    if (fk_ota_sig_sector_parse(data, size, &sec, NULL) != FK_OK) {
        return 0;
    }
    if (sec.sector != data + size - FK_OTA_SECTOR_SIZE || sec.valid_blocks > 3 ||
        sec.leading_valid > sec.valid_blocks) {
        abort();
    }
    for (unsigned i = 0; i < FK_OTA_SIG_BLOCKS_MAX; i++) {
        const struct fk_ota_sig_block *b = &sec.blocks[i];
        if (b->state != FK_OTA_BLOCK_VALID) {
            continue;
        }
        if (b->key + b->key_len > b->raw + FK_OTA_SIG_BLOCK_CRC_LEN ||
            b->sig + b->sig_len > b->raw + FK_OTA_SIG_BLOCK_CRC_LEN) {
            abort();
        }
        uint8_t kd[FK_OTA_KEY_DIGEST_LEN];
        fk_ota_block_key_digest(b, kd);
        int dok = 0;
        int sok = 0;
        if (fk_ota_block_check(&sec, data, i, &dok, &sok) != FK_OK) {
            continue;
        }
        char pem[2048];
        /* A block whose key fields are not a key (off the curve, even n) has no PEM; that
         * must fail cleanly, and a block whose signature verifies must have one. */
        if (fk_ota_block_pubkey_pem(b, pem, sizeof pem) != FK_OK && sok) {
            abort();
        }
    }
    static struct fk_ota_key *trusted;
    if (trusted == NULL && fk_ota_key_from_pem((const uint8_t *)trusted_pem, strlen(trusted_pem),
                                               "trusted", 0, &trusted, NULL) != FK_OK) {
        abort();
    }
    struct fk_ota_verify_result r;
    enum fk_err rc = fk_ota_verify(data, size, &trusted, 1, &r, NULL);
    if (rc == FK_OK && (r.block < 0 || r.verdict[r.block] != FK_OTA_V_OK)) {
        abort();
    }
    return 0;
}
