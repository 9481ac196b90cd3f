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
    static const int iters[3] = {60, 60, 20};

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

    double ours_p256 = 0;
    for (int s = 0; s < 3; s++) {
        size_t olen = 0;
        double t0 = now();
        for (int i = 0; i < iters[s]; i++) {
            if (fk_ota_sign(img, IMAGE_LEN, &keys[s], 1, out, signed_size, &olen, NULL) != FK_OK) {
                fprintf(stderr, "bench_ota: sign failed\n");
                goto out;
            }
        }
        double rate = iters[s] / (now() - t0);
        if (s == 0) {
            ours_p256 = rate;
        }
        printf("sign   %-16s %8.1f signatures/s (fk_ota_sign, %d runs)\n",
               fk_ota_scheme_name(fk_ota_key_scheme(keys[s])), rate, iters[s]);
    }

    /* Verify the P-256 image (the last one signed above is RSA: sign P-256 again). */
    size_t olen = 0;
    if (fk_ota_sign(img, IMAGE_LEN, &keys[0], 1, out, signed_size, &olen, NULL) != FK_OK) {
        goto out;
    }
    const int vruns = 60;
    double t0 = now();
    for (int i = 0; i < vruns; i++) {
        if (fk_ota_verify(out, olen, &pub256, 1, NULL, NULL) != FK_OK) {
            fprintf(stderr, "bench_ota: verify failed\n");
            goto out;
        }
    }
    double verify_mbs = (double)olen * vruns / (now() - t0) / 1e6;
    printf("verify ECDSA P-256      %8.1f MB/s (fk_ota_verify, %d runs)\n", verify_mbs, vruns);

    /* Baselines on the same file and key. */
    double evp = evp_sign_loop(pks[0], img, IMAGE_LEN, iters[0]);
    if (evp > 0) {
        double r = iters[0] / evp;
        printf("base   EVP_DigestSign   %8.1f signatures/s (OpenSSL in process, P-256)  "
               "ratio ours/base %.2f\n",
               r, ours_p256 / r);
    }
    const int cli_runs = 20;
    char *sign_argv[] = {"openssl", "dgst",   "-sha256", "-sign", key_path,
                         "-out",    sig_path, img_path,  NULL};
    double cs = spawn_loop(sign_argv, cli_runs);
    if (cs < 0) {
        printf("base   openssl dgst -sign: unavailable (openssl command failed)\n");
    } else {
        double r = cli_runs / cs;
        printf("base   openssl dgst -sha256 -sign %6.1f signatures/s (%d processes, P-256)  "
               "ratio ours/openssl %.2f\n",
               r, cli_runs, ours_p256 / r);
        char *verify_argv[] = {"openssl",    "dgst",   "-sha256", "-verify", pub_path,
                               "-signature", sig_path, img_path,  NULL};
        double cv = spawn_loop(verify_argv, cli_runs);
        if (cv > 0) {
            double mbs = (double)IMAGE_LEN * cli_runs / cv / 1e6;
            printf("base   openssl dgst -sha256 -verify %6.1f MB/s (%d processes)  ratio "
                   "ours/openssl %.2f\n",
                   mbs, cli_runs, verify_mbs / mbs);
        }
    }
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
