/* fleetkey shamir: Shamir secret sharing over GF(256), the field of AES (polynomial
 * x^8 + x^4 + x^3 + x + 1, 0x11B), byte by byte.
 *
 * A secret of len bytes becomes n shares of len bytes each; share i is the value at x = i of a
 * random polynomial of degree k-1 whose constant term is the secret byte. Any k shares give the
 * secret back (Lagrange interpolation at 0); k-1 shares say nothing about it, because for every
 * candidate secret exactly one polynomial through those k-1 points exists.
 *
 * The arithmetic is constant-time: no table lookups and no branches on secret data (the
 * multiply is a masked shift-and-add over eight byte lanes of a 64-bit word at once), so the
 * time and memory access pattern depend on len, n and k only. The share indexes (x) are public.
 * Random coefficients come from RAND_priv_bytes. Nothing here allocates more than len * k bytes,
 * prints or exits; every function is thread-safe. */
#ifndef FLEETKEY_SHAMIR_H
#define FLEETKEY_SHAMIR_H

#include <stddef.h>
#include <stdint.h>

#include "fleetkey/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FK_SHAMIR_MAX_SHARES 255u /* x runs over the non-zero field elements */

/* The product of a and b in GF(256) (AES field): 0x53 * 0xCA = 0x01. Constant-time. */
uint8_t fk_gf256_mul(uint8_t a, uint8_t b);
/* The multiplicative inverse of a (a^254); 0 for 0. Constant-time. */
uint8_t fk_gf256_inv(uint8_t a);

/* Splits secret (len bytes, 1 <= len) into n shares with threshold k (2 <= k <= n <= 255).
 * shares[i] (caller memory, len bytes each) receives the share with x = i + 1. The random
 * coefficients are wiped before return. FK_OK; FK_E_ARG (k or n out of range, len 0, a NULL
 * pointer); FK_E_NOMEM; FK_E_CRYPTO (RAND_priv_bytes failed: no share is usable then, all are
 * wiped). */
FK_MUST_CHECK enum fk_err fk_shamir_split(const uint8_t *secret, size_t len, unsigned n, unsigned k,
                                          uint8_t *const *shares);

/* Rebuilds a secret from k shares: xs[i] is share i's index (1..255, all distinct), ys[i] its
 * len bytes. Exactly the k shares given are interpolated: with fewer than the threshold the
 * result is a wrong secret, not an error (nothing in the shares says which is right; callers
 * check the result, e.g. against a recorded public key). out (len bytes) may not overlap ys.
 * FK_OK; FK_E_ARG (k 0, an index 0 or repeated, a NULL pointer). */
FK_MUST_CHECK enum fk_err fk_shamir_combine(const uint8_t *xs, const uint8_t *const *ys, unsigned k,
                                            size_t len, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
