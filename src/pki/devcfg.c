/* A device's mTLS credentials as CONFIG_MINITRAIN_* sdkconfig lines or MINITRAIN_* shell
 * exports: the seed's development path ("provide the following Kconfig entries via
 * menuconfig or environment variables", "inject them just before flashing").
 *
 * The output carries the device's private key by design, so it is built in one buffer that
 * is wiped when it grows and handed to the caller to wipe (fk_free_secret). Before rendering,
 * the key is checked against the certificate: a mismatched pair would only show up as a
 * failed handshake on the robot. */
#include "pki_internal.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <stdlib.h>
#include <string.h>

/* ---- escaping --------------------------------------------------------------------------- */
size_t fk_pki_kconfig_escaped_len(const char *s) {
    size_t n = 1;
    for (; *s != '\0'; s++) {
        n += (*s == '"' || *s == '\\' || *s == '\n') ? 2 : 1;
    }
    return n;
}

enum fk_err fk_pki_kconfig_escape(const char *s, char *out, size_t out_size) {
    size_t o = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        /* One sdkconfig line holds the whole value: a raw CR, tab or other control byte would
         * either split it or be read differently by each Kconfig tool, so refuse them. */
        if ((c < 0x20 && c != '\n') || c == 0x7f) {
            return FK_E_ARG;
        }
        const char *rep = NULL;
        if (c == '"') {
            rep = "\\\"";
        } else if (c == '\\') {
            rep = "\\\\";
        } else if (c == '\n') {
            rep = "\\n";
        }
        size_t k = rep != NULL ? 2 : 1;
        if (out_size - o <= k) {
            return FK_E_NOSPACE;
        }
        if (rep != NULL) {
            out[o++] = rep[0];
            out[o++] = rep[1];
        } else {
            out[o++] = (char)c;
        }
    }
    if (o >= out_size) {
        return FK_E_NOSPACE;
    }
    out[o] = '\0';
    return FK_OK;
}

size_t fk_pki_shell_quoted_len(const char *s) {
    size_t n = 3; /* two quotes and the NUL */
    for (; *s != '\0'; s++) {
        n += *s == '\'' ? 4 : 1;
    }
    return n;
}

enum fk_err fk_pki_shell_quote(const char *s, char *out, size_t out_size) {
    /* POSIX 2.2.2: nothing inside single quotes is special except the closing quote, which
     * is written as '\'' (close, escaped quote, reopen). */
    if (out_size < fk_pki_shell_quoted_len(s)) {
        return FK_E_NOSPACE;
    }
    size_t o = 0;
    out[o++] = '\'';
    for (; *s != '\0'; s++) {
        if (*s == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *s;
        }
    }
    out[o++] = '\'';
    out[o] = '\0';
    return FK_OK;
}

/* ---- a growable buffer for secret text --------------------------------------------------- */
struct sbuf {
    char *p;
    size_t len;
    size_t cap;
};

static enum fk_err sb_reserve(struct sbuf *b, size_t more) {
    if (b->cap - b->len > more) {
        return FK_OK;
    }
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap - b->len <= more) {
        if (ncap > ((size_t)-1) / 2) {
            return FK_E_NOMEM;
        }
        ncap *= 2;
    }
    char *np = malloc(ncap);
    if (np == NULL) {
        return FK_E_NOMEM;
    }
    if (b->p != NULL) {
        memcpy(np, b->p, b->len + 1);
    } else {
        np[0] = '\0';
    }
    fk_free_secret(b->p, b->cap); /* realloc would leave the old copy of the key behind */
    b->p = np;
    b->cap = ncap;
    return FK_OK;
}

static enum fk_err sb_add(struct sbuf *b, const char *s) {
    size_t n = strlen(s);
    enum fk_err rc = sb_reserve(b, n);
    if (rc == FK_OK) {
        memcpy(b->p + b->len, s, n + 1);
        b->len += n;
    }
    return rc;
}

/* Appends `NAME=value` in the chosen form, value escaped or quoted. */
static enum fk_err sb_setting(struct sbuf *b, enum fk_pki_devcfg_form form, const char *name,
                              const char *value) {
    enum fk_err rc = FK_E_INTERNAL;
    size_t need = form == FK_PKI_DEVCFG_SDKCONFIG ? fk_pki_kconfig_escaped_len(value)
                                                  : fk_pki_shell_quoted_len(value);
    FK_GUARD(sb_add(b, form == FK_PKI_DEVCFG_SDKCONFIG ? "CONFIG_" : "export "));
    FK_GUARD(sb_add(b, name));
    FK_GUARD(sb_add(b, form == FK_PKI_DEVCFG_SDKCONFIG ? "=\"" : "="));
    FK_GUARD(sb_reserve(b, need + 4));
    if (form == FK_PKI_DEVCFG_SDKCONFIG) {
        FK_GUARD(fk_pki_kconfig_escape(value, b->p + b->len, b->cap - b->len));
    } else {
        FK_GUARD(fk_pki_shell_quote(value, b->p + b->len, b->cap - b->len));
    }
    b->len += strlen(b->p + b->len);
    FK_GUARD(sb_add(b, form == FK_PKI_DEVCFG_SDKCONFIG ? "\"\n" : "\n"));
    rc = FK_OK;
out:
    return rc;
}

static int printable_token(const char *s) {
    if (s == NULL || s[0] == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\'' || c == '\\') {
            return 0;
        }
    }
    return 1;
}

static int no_prompt_cb(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* an encrypted device key is an error here, never a terminal prompt */
}

static enum fk_err check_pair(const char *crt, const char *key, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    BIO *b = BIO_new_mem_buf(crt, -1);
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    FK_ENSURE(x != NULL, fk_diag_set(diag, FK_E_PARSE, "device certificate: not PEM"));
    BIO_free(b);
    b = BIO_new_mem_buf(key, -1);
    FK_ENSURE(b != NULL, FK_E_NOMEM);
    k = PEM_read_bio_PrivateKey(b, NULL, no_prompt_cb, NULL);
    FK_ENSURE(k != NULL, fk_diag_set(diag, FK_E_PARSE, "device key: not an unencrypted PEM key"));
    FK_ENSURE(X509_check_private_key(x, k) == 1,
              fk_diag_set(diag, FK_E_MISMATCH, "device key does not match its certificate"));
    rc = FK_OK;
out:
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}

enum fk_err fk_pki_devcfg_render(const struct fk_pki_ca *ca, const char *device_id,
                                 const char *wss_uri, const char *expected_host,
                                 enum fk_pki_devcfg_form form, char **out, size_t *out_len,
                                 struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct sbuf b = {NULL, 0, 0};
    char *crt_path = NULL;
    char *key_path = NULL;
    char *crt = NULL;
    char *key = NULL;
    size_t key_len = 0;
    const char *pfx = form == FK_PKI_DEVCFG_SDKCONFIG ? "CONFIG_" : "";

    FK_ENSURE(ca != NULL && out != NULL && out_len != NULL, FK_E_ARG);
    FK_ENSURE(form == FK_PKI_DEVCFG_SDKCONFIG || form == FK_PKI_DEVCFG_ENV, FK_E_ARG);
    FK_ENSURE(fk_pki_name_valid(device_id),
              fk_diag_set(diag, FK_E_ARG, "device id '%s' is not valid",
                          device_id != NULL ? device_id : ""));
    FK_ENSURE(wss_uri == NULL || (strncmp(wss_uri, "wss://", 6) == 0 && wss_uri[6] != '\0' &&
                                  printable_token(wss_uri)),
              fk_diag_set(diag, FK_E_ARG, "--wss-uri must be wss://HOST[:PORT][/PATH]"));
    FK_ENSURE(expected_host == NULL || printable_token(expected_host),
              fk_diag_set(diag, FK_E_ARG, "--expected-host: a host name without spaces"));

    FK_GUARD(pki_name_path(ca->dir, FK_PKI_DEVICE, device_id, ".crt.pem", &crt_path));
    FK_GUARD(pki_name_path(ca->dir, FK_PKI_DEVICE, device_id, ".key.pem", &key_path));
    rc = pki_read_text(crt_path, PKI_PEM_MAX, &crt, NULL, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, crt_path, 0,
                        "no certificate for %s (provision-keys ca issue --device %s)",
                        device_id, device_id);
    }
    FK_GUARD(rc);
    rc = pki_read_text(key_path, PKI_PEM_MAX, &key, &key_len, diag);
    if (rc == FK_E_NOTFOUND) {
        rc = fk_diag_at(diag, FK_E_NOTFOUND, key_path, 0,
                        "no private key for %s (issued from a CSR: the key is on the device)",
                        device_id);
    }
    FK_GUARD(rc);
    FK_GUARD(check_pair(crt, key, diag));

    FK_GUARD(sb_add(&b, "# fleetkey: mTLS credentials of "));
    FK_GUARD(sb_add(&b, device_id));
    FK_GUARD(sb_add(&b, "\n# Contains the device's PRIVATE KEY: keep it out of version "
                        "control and delete it after the build.\n"));
    if (wss_uri != NULL) {
        FK_GUARD(sb_setting(&b, form, "MINITRAIN_WSS_URI", wss_uri));
    } else {
        FK_GUARD(sb_add(&b, "# "));
        FK_GUARD(sb_add(&b, pfx));
        FK_GUARD(sb_add(&b, "MINITRAIN_WSS_URI not given (--wss-uri)\n"));
    }
    if (expected_host != NULL) {
        FK_GUARD(sb_setting(&b, form, "MINITRAIN_EXPECTED_HOST", expected_host));
    } else {
        FK_GUARD(sb_add(&b, "# "));
        FK_GUARD(sb_add(&b, pfx));
        FK_GUARD(sb_add(&b, "MINITRAIN_EXPECTED_HOST not given (--expected-host)\n"));
    }
    /* Issuing + root: the device can then verify a server that sends only its leaf. */
    rc = sb_setting(&b, form, "MINITRAIN_CA_CERT_PEM", ca->chain_pem);
    FK_GUARD(rc);
    rc = sb_setting(&b, form, "MINITRAIN_CLIENT_CERT_PEM", crt);
    FK_ENSURE(rc != FK_E_ARG, fk_diag_at(diag, FK_E_PARSE, crt_path, 0, "control characters"));
    FK_GUARD(rc);
    rc = sb_setting(&b, form, "MINITRAIN_CLIENT_KEY_PEM", key);
    FK_ENSURE(rc != FK_E_ARG, fk_diag_at(diag, FK_E_PARSE, key_path, 0, "control characters"));
    FK_GUARD(rc);
    *out = b.p;
    *out_len = b.len; /* bytes past len were never written: wiping len bytes is enough */
    b.p = NULL;
    rc = FK_OK;
out:
    fk_free_secret(b.p, b.cap);
    free(crt_path);
    free(key_path);
    free(crt);
    fk_free_secret(key, key_len);
    return rc;
}
