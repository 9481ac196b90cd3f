/* Fuzz harness: the device's Secure Boot V2 verifier on an arbitrary 4096-byte signature
 * sector (the input, cut or padded with 0xFF). So that the signature code itself is reached,
 * the image digests are taken from the first slot's digest field and the trusted key is the
 * first slot's own key fields (as P-256, P-384 or RSA-3072, by the block's version and curve
 * bytes): arbitrary points, moduli and signatures then go through mbedTLS. Must never crash,
 * leak, or report a block as verified that the verifier did not check. */
#include "fkd/ota.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t sector[FKD_SBV2_SECTOR];
    memset(sector, 0xFF, sizeof sector);
    memcpy(sector, data, size < sizeof sector ? size : sizeof sector);
    uint8_t d256[32], d384[48];
    memcpy(d256, sector + 4, sizeof d256);
    memcpy(d384, sector + 4, sizeof d384);

    struct fkd_sbv2_keys ks;
    fkd_sbv2_keys_init(&ks);
    struct fkd_sbv2_key *k = &ks.key[0];
    if (sector[1] == 0x02) {
        k->scheme = FKD_SBV2_RSA3072;
        k->enc_len = 776;
        memcpy(k->enc, sector + 36, 776);
    } else if (sector[2] == 1) {
        k->scheme = FKD_SBV2_ECDSA_P384;
        k->enc_len = 97;
        memcpy(k->enc, sector + 52, 97);
    } else {
        k->scheme = FKD_SBV2_ECDSA_P256;
        k->enc_len = 65;
        memcpy(k->enc, sector + 36, 65);
    }
    ks.count = 1;
    struct fkd_sbv2_result r;
    enum fkd_err rc = fkd_sbv2_verify(sector, d256, d384, &ks, &r);
    if (rc == FKD_OK && (r.block < 0 || r.verdict[r.block] != FKD_SBV2_V_OK)) {
        abort();
    }
    if (fkd_sbv2_verify(sector, d256, NULL, &ks, NULL) == FKD_OK &&
        k->scheme == FKD_SBV2_ECDSA_P384) {
        abort(); /* without SHA-384 a P-384 block cannot verify */
    }
    return 0;
}
