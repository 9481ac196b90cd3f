/* bench_nvs: NVS image generation for the 0x6000 provisioning image (issue 3, section 5).
 *
 * The image is the one `provision-keys generate` writes for every device (the content of
 * tests/vectors/nvs/prov.csv): security/{dtls_psk (32-byte blob), psk_id, ota_pubkey (91-byte
 * DER blob)}, wifi/{ssid, password}, built through the builder API the keys module uses (no
 * CSV parsing). Figures, in images/s on one core:
 *   plain      builder_new + 5 items + render + free
 *   encrypted  the same + AES-256-XTS of every written entry (fresh keys are not included)
 *   read       fk_nvs_image_read of the plain image (every CRC checked)
 * Nothing is asserted; the program prints what it measured. */
#include "fleetkey/nvs.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMG_SIZE 0x6000u
#define MIN_SECONDS 1.0

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint8_t psk[32];
static uint8_t der[91];
static struct fk_nvs_keys keys;
static uint8_t img[IMG_SIZE];

static int build(int encrypt) {
    struct fk_nvs_builder *b = NULL;
    size_t len = 0;
    int ok = fk_nvs_builder_new(2, &b) == FK_OK &&
             fk_nvs_builder_namespace(b, "security", NULL) == FK_OK &&
             fk_nvs_builder_add_blob(b, "dtls_psk", psk, sizeof psk, NULL) == FK_OK &&
             fk_nvs_builder_add_str(b, "psk_id", "robot-AABBCCDDEEFF", NULL) == FK_OK &&
             fk_nvs_builder_add_blob(b, "ota_pubkey", der, sizeof der, NULL) == FK_OK &&
             fk_nvs_builder_namespace(b, "wifi", NULL) == FK_OK &&
             fk_nvs_builder_add_str(b, "ssid", "FleetLab-5G", NULL) == FK_OK &&
             fk_nvs_builder_add_str(b, "password", "Tr41n-R0b0t#2026", NULL) == FK_OK &&
             fk_nvs_builder_render(b, IMG_SIZE, img, sizeof img, &len, NULL) == FK_OK &&
             len == IMG_SIZE && (!encrypt || fk_nvs_encrypt(img, len, &keys) == FK_OK);
    fk_nvs_builder_free(b);
    return ok;
}

static int read_back(void) {
    struct fk_nvs_image *r = NULL;
    int ok = fk_nvs_image_read(img, IMG_SIZE, &r) == FK_OK && fk_nvs_image_item_count(r) == 5;
    fk_nvs_image_free(r);
    return ok;
}

/* Runs f until MIN_SECONDS have passed (in batches, so the clock is read rarely). */
static double rate(int (*f)(int), int arg, const char *what) {
    unsigned long n = 0;
    double t0 = now();
    double t = t0;
    while (t - t0 < MIN_SECONDS) {
        for (int i = 0; i < 256; i++) {
            if (!f(arg)) {
                fprintf(stderr, "bench_nvs: %s failed\n", what);
                exit(1);
            }
        }
        n += 256;
        t = now();
    }
    double r = (double)n / (t - t0);
    printf("nvs %-10s %10.0f images/s  (%.2f us/image, %lu images)\n", what, r, 1e6 / r, n);
    return r;
}

static int read_arg(int unused) {
    (void)unused;
    return read_back();
}

int main(void) {
    unsigned n = 0;
    if (EVP_Digest("fleetkey-vector-psk-1", 21, psk, &n, EVP_sha256(), NULL) != 1) {
        return 1;
    }
    for (size_t i = 0; i < sizeof der; i++) {
        der[i] = (uint8_t)(i * 7 + 3);
    }
    if (fk_nvs_keys_generate(&keys) != FK_OK) {
        return 1;
    }
    printf("bench_nvs: 0x%x-byte provisioning image (5 keys, 2 namespaces), one core\n",
           IMG_SIZE);
    double plain = rate(build, 0, "plain");
    double enc = rate(build, 1, "encrypted");
    if (!build(0)) {
        return 1;
    }
    rate(read_arg, 0, "read");
    printf("nvs encryption costs %.1f%% of the plain rate\n", 100.0 * (1.0 - enc / plain));
    fk_wipe(&keys, sizeof keys);
    return 0;
}
