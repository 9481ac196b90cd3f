/* Shamir secret sharing over GF(256) (fleetkey/shamir.h).
 *
 * Design: the secret is processed eight bytes at a time, one byte per lane of a uint64_t, and
 * every field operation works on all eight lanes with masks instead of branches or tables
 * (a table-driven log/exp multiply would index memory by secret bytes, which leaks them
 * through the cache). The lane multiply is the schoolbook shift-and-add: for each bit of b,
 * add a where the bit is set (mask), then a *= x with the reduction by 0x1B where a's top bit
 * was set (mask). Sixteen masked steps per multiply, whatever the values. */
#include "fleetkey/shamir.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8u
#define LOW_BITS 0x0101010101010101ull /* bit 0 of each lane */

/* Eight GF(256) products at once, lane by lane. Constant-time in a and b. */
static uint64_t mul8(uint64_t a, uint64_t b) {
    uint64_t p = 0;
    for (unsigned i = 0; i < 8; i++) {
        uint64_t take = ((b >> i) & LOW_BITS) * 0xFFu; /* 0xFF in lanes whose bit i is set */
        p ^= a & take;
        uint64_t carry = (a >> 7) & LOW_BITS;         /* lanes whose top bit falls off */
        a = ((a << 1) & ~LOW_BITS) ^ (carry * 0x1Bu); /* shift in lane, reduce by 0x11B */
    }
    return p;
}

static uint64_t broadcast(uint8_t v) {
    return (uint64_t)v * LOW_BITS;
}

uint8_t fk_gf256_mul(uint8_t a, uint8_t b) {
    return (uint8_t)mul8(a, b);
}

uint8_t fk_gf256_inv(uint8_t a) {
    /* a^254 = a^-1 in GF(256)* (a^255 = 1), and 0^254 = 0: a fixed chain of squarings and
     * multiplies, so the time does not depend on a. 254 = 0b11111110. */
    uint8_t r = 1;
    uint8_t sq = a;
    for (unsigned i = 1; i < 8; i++) {
        sq = fk_gf256_mul(sq, sq); /* a^(2^i) */
        r = fk_gf256_mul(r, sq);
    }
    return r;
}

static uint64_t load_lanes(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static void store_lanes(uint8_t *p, size_t n, uint64_t v) {
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

enum fk_err fk_shamir_split(const uint8_t *secret, size_t len, unsigned n, unsigned k,
                            uint8_t *const *shares) {
    enum fk_err rc = FK_E_INTERNAL;
    uint64_t *coef = NULL;
    size_t coef_size = 0;
    FK_ENSURE(secret != NULL && shares != NULL && len > 0, FK_E_ARG);
    FK_ENSURE(k >= 2 && k <= n && n <= FK_SHAMIR_MAX_SHARES, FK_E_ARG);
    for (unsigned i = 0; i < n; i++) {
        FK_ENSURE(shares[i] != NULL, FK_E_ARG);
    }
    coef_size = (size_t)k * sizeof *coef;
    coef = malloc(coef_size);
    FK_ENSURE(coef != NULL, FK_E_NOMEM);
    for (size_t off = 0; off < len; off += LANES) {
        size_t m = len - off < LANES ? len - off : LANES;
        coef[0] = load_lanes(secret + off, m);
        /* k - 1 random coefficients per lane; fresh ones for every byte of the secret. */
        if (RAND_priv_bytes((unsigned char *)&coef[1], (int)((k - 1) * sizeof *coef)) != 1) {
            for (unsigned i = 0; i < n; i++) {
                fk_wipe(shares[i], len);
            }
            rc = FK_E_CRYPTO;
            goto out;
        }
        for (unsigned i = 0; i < n; i++) {
            uint64_t x = broadcast((uint8_t)(i + 1));
            uint64_t y = coef[k - 1]; /* Horner: ((c[k-1] x + c[k-2]) x + ...) x + c[0] */
            for (unsigned j = k - 1; j > 0; j--) {
                y = mul8(y, x) ^ coef[j - 1];
            }
            store_lanes(shares[i] + off, m, y);
        }
    }
    rc = FK_OK;
out:
    fk_wipe(coef, coef_size);
    free(coef);
    return rc;
}

enum fk_err fk_shamir_combine(const uint8_t *xs, const uint8_t *const *ys, unsigned k, size_t len,
                              uint8_t *out) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t basis[FK_SHAMIR_MAX_SHARES];
    FK_ENSURE(xs != NULL && ys != NULL && out != NULL && k > 0 && k <= FK_SHAMIR_MAX_SHARES,
              FK_E_ARG);
    for (unsigned i = 0; i < k; i++) {
        FK_ENSURE(xs[i] != 0 && ys[i] != NULL, FK_E_ARG);
        for (unsigned j = 0; j < i; j++) {
            FK_ENSURE(xs[i] != xs[j], FK_E_ARG);
        }
    }
    /* Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i); subtraction is xor. */
    for (unsigned i = 0; i < k; i++) {
        uint8_t num = 1;
        uint8_t den = 1;
        for (unsigned j = 0; j < k; j++) {
            if (j != i) {
                num = fk_gf256_mul(num, xs[j]);
                den = fk_gf256_mul(den, (uint8_t)(xs[j] ^ xs[i]));
            }
        }
        basis[i] = fk_gf256_mul(num, fk_gf256_inv(den));
    }
    for (size_t off = 0; off < len; off += LANES) {
        size_t m = len - off < LANES ? len - off : LANES;
        uint64_t s = 0;
        for (unsigned i = 0; i < k; i++) {
            s ^= mul8(load_lanes(ys[i] + off, m), broadcast(basis[i]));
        }
        store_lanes(out + off, m, s);
    }
    rc = FK_OK;
out:
    return rc;
}
