/* bench_ota: Secure Boot V2 signing and verification of a 1.5 MB image.
 *
 * Ours: fk_ota_sign (pad, SHA-256/384 of the image, sign, check the new signature, CRC) in
 * signatures/s per scheme, and fk_ota_verify (digest + key match + signature) in MB/s.
 * Baseline, in the same run on the same file and key: `openssl dgst -sha256 -sign` (and
 * -verify) run N times through posix_spawnp, which is what a release script without this tool
 * would do; and, to separate process start-up from the work, OpenSSL's EVP_DigestSign in
 * process. Each line prints the figure and the ratio ours / baseline (> 1: we are faster). */
#include "fleetkey/ota.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define IMAGE_LEN (1536u * 1024u) /* 1.5 MB */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static EVP_PKEY *gen(const char *alg) {
    if (strcmp(alg, "RSA") == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    }
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", alg);
}

/* Writes pkey as PEM (private when priv) to path, mode 0600, and loads it as an ota key. */
static struct fk_ota_key *to_file_and_key(EVP_PKEY *pk, const char *path, int priv) {
    BIO *b = BIO_new(BIO_s_mem());
    char *mem = NULL;
    struct fk_ota_key *k = NULL;
    int ok = priv ? PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_bio_PUBKEY(b, pk);
    long n = BIO_get_mem_data(b, &mem);
    if (ok != 1 || n <= 0 ||
        fk_file_write_atomic(path, mem, (size_t)n, 0600, FK_WRITE_NOSYNC, NULL) != FK_OK ||
        fk_ota_key_from_pem((const uint8_t *)mem, (size_t)n, path, priv, &k, NULL) != FK_OK) {
        k = NULL;
    }
    if (mem != NULL && n > 0) {
        fk_wipe(mem, (size_t)n);
    }
    BIO_free(b);
    return k;
}

/* Runs argv n times, output to /dev/null; returns seconds, or -1 if a run failed. */
static double spawn_loop(char *const argv[], int n) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1 /* O_WRONLY */, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", 1, 0);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int st = 0;
        if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0 ||
            waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            posix_spawn_file_actions_destroy(&fa);
            return -1;
        }
    }
    double t = now() - t0;
    posix_spawn_file_actions_destroy(&fa);
    return t;
}

static double evp_sign_loop(EVP_PKEY *pk, const uint8_t *data, size_t len, int n) {
    uint8_t sig[512];
    double t0 = now();
    for (int i = 0; i < n; i++) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t sl = sizeof sig;
        if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk) != 1 ||
            EVP_DigestSign(ctx, sig, &sl, data, len) != 1) {
            EVP_MD_CTX_free(ctx);
            return -1;
        }
        EVP_MD_CTX_free(ctx);
    }
    return now() - t0;
}

int main(void) {
    int rc = 1;
    char dir[] = "/tmp/bench_ota.XXXXXX";
    char img_path[64];
    char key_path[64];
    char pub_path[64];
    char sig_path[64];
    uint8_t *img = malloc(IMAGE_LEN);
    size_t signed_size = fk_ota_signed_size(IMAGE_LEN);
    uint8_t *out = malloc(signed_size);
    struct fk_ota_key *keys[3] = {NULL, NULL, NULL};
    struct fk_ota_key *pub256 = NULL;
    EVP_PKEY *pks[3] = {NULL, NULL, NULL};
    static const char *const algs[3] = {"P-256", "P-384", "RSA"};
    static const int iters[3] = {20, 20, 10};

    if (img == NULL || out == NULL || mkdtemp(dir) == NULL) {
        fprintf(stderr, "bench_ota: setup failed\n");
        goto out;
    }
    snprintf(img_path, sizeof img_path, "%s/app.bin", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf(pub_path, sizeof pub_path, "%s/pub.pem", dir);
    snprintf(sig_path, sizeof sig_path, "%s/sig.der", dir);
    uint32_t x = 12345;
    for (size_t i = 0; i < IMAGE_LEN; i++) {
        x = x * 1103515245u + 12345u;
        img[i] = (uint8_t)(x >> 16);
    }
    if (fk_file_write_atomic(img_path, img, IMAGE_LEN, 0644, FK_WRITE_NOSYNC, NULL) != FK_OK) {
        goto out;
    }
    for (int s = 0; s < 3; s++) {
        char p[64];
        snprintf(p, sizeof p, "%s/k%d.pem", dir, s);
        pks[s] = gen(algs[s]);
        keys[s] = pks[s] != NULL ? to_file_and_key(pks[s], s == 0 ? key_path : p, 1) : NULL;
        if (keys[s] == NULL) {
            fprintf(stderr, "bench_ota: key generation failed\n");
            goto out;
        }
        if (s != 0) {
            unlink(p);
        }
    }
    pub256 = to_file_and_key(pks[0], pub_path, 0);
    if (pub256 == NULL) {
        goto out;
    }
    printf("image: %u bytes (1.5 MB), signed file %zu bytes\n", IMAGE_LEN, signed_size);

    /* The machine is shared: every figure is the best of ROUNDS rounds, and ours and the
     * baselines alternate within a round so that load changes hit both alike. */
    enum { ROUNDS = 5 };
    double best[3] = {1e9, 1e9, 1e9};
    double best_verify = 1e9;
    double best_evp = 1e9;
    double best_cli_sign = 1e9;
    double best_cli_verify = 1e9;
    int cli_ok = 1;
    const int vruns = 30;
    const int cli_runs = 8;
    char *sign_argv[] = {"openssl", "dgst",   "-sha256", "-sign", key_path,
                         "-out",    sig_path, img_path,  NULL};
    char *verify_argv[] = {"openssl",    "dgst",   "-sha256", "-verify", pub_path,
                           "-signature", sig_path, img_path,  NULL};
    size_t olen = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int s = 0; s < 3; s++) {
            double t0 = now();
            for (int i = 0; i < iters[s]; i++) {
                if (fk_ota_sign(img, IMAGE_LEN, &keys[s], 1, out, signed_size, &olen, NULL) !=
                    FK_OK) {
                    fprintf(stderr, "bench_ota: sign failed\n");
                    goto out;
                }
            }
            double t = (now() - t0) / iters[s];
            best[s] = t < best[s] ? t : best[s];
        }
        /* The last image signed above is RSA: sign P-256 again for verify. */
        if (fk_ota_sign(img, IMAGE_LEN, &keys[0], 1, out, signed_size, &olen, NULL) != FK_OK) {
            goto out;
        }
        double t0 = now();
        for (int i = 0; i < vruns; i++) {
            if (fk_ota_verify(out, olen, &pub256, 1, NULL, NULL) != FK_OK) {
                fprintf(stderr, "bench_ota: verify failed\n");
                goto out;
            }
        }
        double tv = (now() - t0) / vruns;
        best_verify = tv < best_verify ? tv : best_verify;
        double te = evp_sign_loop(pks[0], img, IMAGE_LEN, iters[0]);
        if (te > 0 && te / iters[0] < best_evp) {
            best_evp = te / iters[0];
        }
        if (cli_ok) {
            double cs = spawn_loop(sign_argv, cli_runs);
            double cv = cs > 0 ? spawn_loop(verify_argv, cli_runs) : -1;
            if (cs < 0 || cv < 0) {
                cli_ok = 0;
            } else {
                best_cli_sign = cs / cli_runs < best_cli_sign ? cs / cli_runs : best_cli_sign;
                best_cli_verify = cv / cli_runs < best_cli_verify ? cv / cli_runs : best_cli_verify;
            }
        }
    }
    for (int s = 0; s < 3; s++) {
        printf("sign   %-14s %9.1f signatures/s (fk_ota_sign: pad, hash, sign, check, CRC)\n",
               fk_ota_scheme_name(fk_ota_key_scheme(keys[s])), 1.0 / best[s]);
    }
    double verify_mbs = (double)olen / best_verify / 1e6;
    printf("verify ECDSA P-256    %9.1f MB/s (fk_ota_verify of the %zu-byte signed file)\n",
           verify_mbs, olen);
    printf("base   EVP_DigestSign %9.1f signatures/s (OpenSSL in process, P-256, SHA-256)  "
           "ratio ours/base %.2f\n",
           1.0 / best_evp, best_evp / best[0]);
    if (!cli_ok) {
        printf("base   openssl dgst: unavailable (the openssl command failed)\n");
    } else {
        printf("base   openssl dgst -sha256 -sign   %7.1f signatures/s (one process each, P-256)"
               "  ratio ours/openssl %.2f\n",
               1.0 / best_cli_sign, best_cli_sign / best[0]);
        double cli_mbs = (double)IMAGE_LEN / best_cli_verify / 1e6;
        printf("base   openssl dgst -sha256 -verify %7.1f MB/s (one process each)  ratio "
               "ours/openssl %.2f\n",
               cli_mbs, verify_mbs / cli_mbs);
    }
    printf("(best of %d rounds; ratio > 1 means fk_ota is faster)\n", ROUNDS);
    rc = 0;
out:
    unlink(img_path);
    unlink(key_path);
    unlink(pub_path);
    unlink(sig_path);
    rmdir(dir);
    for (int s = 0; s < 3; s++) {
        fk_ota_key_free(keys[s]);
        EVP_PKEY_free(pks[s]);
    }
    fk_ota_key_free(pub256);
    free(img);
    free(out);
    return rc;
}
