/* Logging through one replaceable handler, plus the helpers that keep secrets out of logs:
 * fingerprints instead of bytes, and the list of field names that are masked in dumps. */
#include "fleetkey/common.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static fk_log_fn *handler;
static void *handler_user;
static enum fk_log_level min_level = FK_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void fk_log_set_handler(fk_log_fn *fn, void *user) {
    handler = fn;
    handler_user = user;
}

void fk_log_set_level(enum fk_log_level lvl) {
    min_level = lvl;
}

static const char *level_name(enum fk_log_level lvl) {
    switch (lvl) {
    case FK_LOG_DEBUG:
        return "debug";
    case FK_LOG_INFO:
        return "info";
    case FK_LOG_WARN:
        return "warning";
    default:
        return "error";
    }
}

void fk_log(enum fk_log_level lvl, const char *fmt, ...) {
    if (lvl < min_level) {
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One line at a time, so lines from worker threads never interleave. */
    pthread_mutex_lock(&log_lock);
    if (handler != NULL) {
        handler(handler_user, lvl, line);
    } else {
        fprintf(stderr, "%s: %s\n", level_name(lvl), line);
    }
    pthread_mutex_unlock(&log_lock);
}

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) {
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); /* kept for the process's life */
}

const EVP_MD *fk_sha256_md(void) {
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

int fk_sha256(const void *buf, size_t len, uint8_t out[32]) {
    unsigned int n = 0;
    const EVP_MD *md = fk_sha256_md();
    return EVP_Digest(buf, len, out, &n, md, NULL) == 1 && n == 32 ? 0 : -1;
}

const char *fk_fpr(const void *buf, size_t len, char out[FK_FPR_LEN]) {
    uint8_t md[32];
    memcpy(out, "sha256:", 8);
    if (fk_sha256(buf, len, md) != 0) {
        memcpy(out + 7, "?", 2);
        return out;
    }
    if (fk_hex_encode(md, 8, out + 7, FK_FPR_LEN - 7) != FK_OK) {
        out[7] = '\0';
    }
    return out;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s);
    size_t m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int fk_redact_field(const char *name) {
    static const char *const exact[] = {"psk_hex", "dtls_psk", "psk", "password",
                                        "wifi_password", "token", "access_token",
                                        "refresh_token", "secret", "client_secret"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        if (strcasecmp(name, exact[i]) == 0) {
            return 1;
        }
    }
    return ends_with(name, "_key_pem") || ends_with(name, "_key") ||
           strstr(name, "private") != NULL || ends_with(name, "_password") ||
           ends_with(name, "_secret") || ends_with(name, "_token");
}
