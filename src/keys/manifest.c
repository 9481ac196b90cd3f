/* Manifest JSON: writer and parser.
 *
 * The writer is hand-rolled into one buffer rather than built as a cJSON tree: the field
 * order must be exactly the seed's (device_id, psk_hex, psk_identity, ota_public_key_der_hex,
 * provisioned, provisioned_at) followed by our extras, and the PSK must exist in exactly one
 * buffer that we wipe, not in cJSON's internal strings. Every string field has a fixed
 * maximum, so the buffer size is bounded up front.
 *
 * The parser uses cJSON_ParseWithLength on a bounded input and wipes the tree's copy of
 * psk_hex before freeing it. */
#include "fleetkey/keys.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fk_keys_manifest_wipe(struct fk_manifest *m) {
    fk_wipe(m, sizeof *m);
}

struct out_buf {
    char *p;
    size_t len;
    size_t cap;
    int overflow;
};

/* Appends text as it is. The manifest is mostly literal text: 52 vsnprintf calls per
 * manifest were 5 % of a provision-keys batch worker's instructions (issue 19). */
static void put_text(struct out_buf *b, const char *s) {
    size_t n = strlen(s);
    if (b->overflow || n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void put(struct out_buf *b, const char *fmt, ...) FK_PRINTF(2, 3);

static void put(struct out_buf *b, const char *fmt, ...) {
    if (strchr(fmt, '%') == NULL) {
        put_text(b, fmt);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    b->len += (size_t)n;
}

/* A JSON string value (with quotes), escaping '"', '\\' and control characters. Other bytes
 * are copied; fields are UTF-8 by contract. */
static void put_str(struct out_buf *b, const char *s) {
    put(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0' && !b->overflow; c++) {
        if (*c == '"' || *c == '\\') {
            put(b, "\\%c", *c);
        } else if (*c < 0x20) {
            put(b, "\\u%04x", *c);
        } else if (b->cap - b->len < 2) {
            b->overflow = 1;
        } else {
            b->p[b->len++] = (char)*c; /* the common case, without a printf per byte */
            b->p[b->len] = '\0';
        }
    }
    put(b, "\"");
}

static void put_str_field(struct out_buf *b, const char *name, const char *v, int null_if_empty) {
    put_text(b, ",\n  \"");
    put_text(b, name);
    put_text(b, "\": ");
    if (null_if_empty && v[0] == '\0') {
        put(b, "null");
    } else {
        put_str(b, v);
    }
}

static void put_hex(struct out_buf *b, const uint8_t *v, size_t n) {
    static const char digits[] = "0123456789abcdef";
    put(b, "\"");
    for (size_t i = 0; i < n && !b->overflow; i++) {
        if (b->cap - b->len < 3) {
            b->overflow = 1;
            return;
        }
        b->p[b->len++] = digits[v[i] >> 4];
        b->p[b->len++] = digits[v[i] & 15];
        b->p[b->len] = '\0';
    }
    put(b, "\"");
}

enum fk_err fk_keys_manifest_render(const struct fk_manifest *m, char **out, size_t *out_len) {
    struct out_buf b = {NULL, 0, 16384, 0};
    if (m->device_id[0] == '\0' || m->ota_pub_der_len == 0 ||
        m->ota_pub_der_len > sizeof m->ota_pub_der) {
        return FK_E_ARG;
    }
    b.p = calloc(1, b.cap);
    if (b.p == NULL) {
        return FK_E_NOMEM;
    }
    put(&b, "{\n  \"device_id\": ");
    put_str(&b, m->device_id);
    put(&b, ",\n  \"psk_hex\": ");
    put_hex(&b, m->psk, sizeof m->psk);
    put_str_field(&b, "psk_identity", m->psk_identity, 0);
    put(&b, ",\n  \"ota_public_key_der_hex\": ");
    put_hex(&b, m->ota_pub_der, m->ota_pub_der_len);
    put_text(&b, m->provisioned ? ",\n  \"provisioned\": true" : ",\n  \"provisioned\": false");
    put_str_field(&b, "provisioned_at", m->provisioned_at, 1);
    put(&b, ",\n  \"schema_version\": %u", m->schema_version);
    put_str_field(&b, "mac", m->mac, 1);
    put_str_field(&b, "name", m->name, 1);
    put_str_field(&b, "wifi_ssid", m->wifi_ssid, 1);
    put_str_field(&b, "nvs_image", m->nvs_image, 1);
    put_str_field(&b, "nvs_image_sha256", m->nvs_image_sha256, 1);
    put(&b, ",\n  \"nvs_size\": %u", m->nvs_size);
    put_text(&b, m->nvs_encrypted ? ",\n  \"nvs_encrypted\": true" : ",\n  \"nvs_encrypted\": false");
    put_str_field(&b, "nvs_keys", m->nvs_keys, 1);
    put_str_field(&b, "ota_private_key", m->ota_private_key, 1);
    put_str_field(&b, "psk_fingerprint", m->psk_fingerprint, 1);
    put_str_field(&b, "ota_public_key_fingerprint", m->ota_key_fingerprint, 1);
    put_str_field(&b, "nvs_keys_fingerprint", m->nvs_keys_fingerprint, 1);
    put(&b, ",\n  \"psk_version\": %u", m->psk_version);
    put(&b, ",\n  \"ota_key_version\": %u", m->ota_key_version);
    put_str_field(&b, "created_at", m->created_at, 1);
    if (m->mtls_cert_fingerprint[0] != '\0') {
        /* Only with an mTLS identity, so manifests without one stay as they were. */
        put_str_field(&b, "mtls_cert", m->mtls_cert, 1);
        put_str_field(&b, "mtls_cert_fingerprint", m->mtls_cert_fingerprint, 1);
        put_str_field(&b, "mtls_cert_serial", m->mtls_cert_serial, 1);
        put_str_field(&b, "mtls_cert_not_after", m->mtls_cert_not_after, 1);
    }
    put(&b, "\n}\n");
    if (b.overflow) {
        fk_free_secret(b.p, b.cap);
        return FK_E_INTERNAL; /* cannot happen: every field is bounded */
    }
    /* Shrink to len + 1 so the caller can wipe exactly what it frees. */
    char *exact = malloc(b.len + 1);
    if (exact == NULL) {
        fk_free_secret(b.p, b.cap);
        return FK_E_NOMEM;
    }
    memcpy(exact, b.p, b.len + 1);
    fk_free_secret(b.p, b.cap);
    *out = exact;
    *out_len = b.len;
    return FK_OK;
}

/* ---- parsing ------------------------------------------------------------------------- */

static enum fk_err bad(struct fk_diag *diag, const char *field, const char *what) {
    return fk_diag_set(diag, FK_E_PARSE, "%s: expected %s", field, what);
}

/* A required or optional string field copied into out[size]. Absent or null: "" (required:
 * error). */
static enum fk_err get_str(const cJSON *root, const char *field, int required, char *out,
                           size_t size, struct fk_diag *diag) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    out[0] = '\0';
    if (v == NULL || cJSON_IsNull(v)) {
        return required ? fk_diag_set(diag, FK_E_PARSE, "%s: missing", field) : FK_OK;
    }
    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return bad(diag, field, "a string");
    }
    size_t n = strlen(v->valuestring);
    if (n >= size || (required && n == 0)) {
        return bad(diag, field, size > 1 ? "a non-empty string that fits" : "a string");
    }
    memcpy(out, v->valuestring, n + 1);
    return FK_OK;
}

static enum fk_err get_uint(const cJSON *root, const char *field, unsigned *out,
                            struct fk_diag *diag) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    *out = 0;
    if (v == NULL || cJSON_IsNull(v)) {
        return FK_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 4294967295.0 ||
        v->valuedouble != (double)(unsigned)v->valuedouble) {
        return bad(diag, field, "a non-negative integer");
    }
    *out = (unsigned)v->valuedouble;
    return FK_OK;
}

static enum fk_err get_bool(const cJSON *root, const char *field, int required, int *out,
                            struct fk_diag *diag) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    *out = 0;
    if (v == NULL) {
        return required ? fk_diag_set(diag, FK_E_PARSE, "%s: missing", field) : FK_OK;
    }
    if (!cJSON_IsBool(v)) {
        return bad(diag, field, "true or false");
    }
    *out = cJSON_IsTrue(v);
    return FK_OK;
}

static int is_upper_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* "2025-01-15T10:30:00Z": checks the shape, digits and field ranges. */
static int is_rfc3339_z(const char *s) {
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof shape - 1) {
        return 0;
    }
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i]) {
            return 0;
        }
    }
    int mon = (s[5] - '0') * 10 + (s[6] - '0');
    int day = (s[8] - '0') * 10 + (s[9] - '0');
    int hh = (s[11] - '0') * 10 + (s[12] - '0');
    int mm = (s[14] - '0') * 10 + (s[15] - '0');
    int ss = (s[17] - '0') * 10 + (s[18] - '0');
    return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hh <= 23 && mm <= 59 && ss <= 60;
}

static int is_fpr(const char *s) {
    if (s[0] == '\0') {
        return 1;
    }
    if (strlen(s) != FK_FPR_LEN - 1 || strncmp(s, "sha256:", 7) != 0) {
        return 0;
    }
    for (const char *p = s + 7; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* A file name recorded in a manifest must stay inside the manifest's directory. */
static int is_plain_file_name(const char *s) {
    return s[0] == '\0' || (strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
}

static enum fk_err parse_tree(const cJSON *root, struct fk_manifest *m, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    FK_ENSURE(cJSON_IsObject(root), fk_diag_set(diag, FK_E_PARSE, "expected a JSON object"));

    /* The seed's fields: all required. */
    FK_GUARD(get_str(root, "device_id", 1, m->device_id, sizeof m->device_id, diag));
    FK_ENSURE(strncmp(m->device_id, "robot-", 6) == 0 && strlen(m->device_id) == 18 &&
                  is_upper_hex(m->device_id + 6, 12),
              bad(diag, "device_id", "\"robot-\" + 12 upper-case hex digits"));

    const cJSON *psk = cJSON_GetObjectItemCaseSensitive(root, "psk_hex");
    FK_ENSURE(psk != NULL, fk_diag_set(diag, FK_E_PARSE, "psk_hex: missing"));
    FK_ENSURE(cJSON_IsString(psk) && psk->valuestring != NULL &&
                  strlen(psk->valuestring) == 2 * FK_PSK_LEN,
              bad(diag, "psk_hex", "64 hex digits"));
    size_t n = 0;
    FK_ENSURE(fk_hex_decode(psk->valuestring, 2 * FK_PSK_LEN, m->psk, sizeof m->psk, &n, NULL) ==
                      FK_OK &&
                  n == FK_PSK_LEN,
              bad(diag, "psk_hex", "64 hex digits"));

    FK_GUARD(get_str(root, "psk_identity", 1, m->psk_identity, sizeof m->psk_identity, diag));

    const cJSON *der = cJSON_GetObjectItemCaseSensitive(root, "ota_public_key_der_hex");
    FK_ENSURE(der != NULL, fk_diag_set(diag, FK_E_PARSE, "ota_public_key_der_hex: missing"));
    FK_ENSURE(cJSON_IsString(der) && der->valuestring != NULL,
              bad(diag, "ota_public_key_der_hex", "a hex string"));
    size_t dl = strlen(der->valuestring);
    FK_ENSURE(dl > 0 && dl <= 2 * sizeof m->ota_pub_der &&
                  fk_hex_decode(der->valuestring, dl, m->ota_pub_der, sizeof m->ota_pub_der,
                                &m->ota_pub_der_len, NULL) == FK_OK,
              bad(diag, "ota_public_key_der_hex", "the hex of a DER public key"));
    const unsigned char *p = m->ota_pub_der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)m->ota_pub_der_len);
    int whole = pub != NULL && p == m->ota_pub_der + m->ota_pub_der_len;
    EVP_PKEY_free(pub);
    FK_ENSURE(whole, bad(diag, "ota_public_key_der_hex", "a DER SubjectPublicKeyInfo"));

    FK_GUARD(get_bool(root, "provisioned", 1, &m->provisioned, diag));
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "provisioned_at");
    FK_ENSURE(at != NULL, fk_diag_set(diag, FK_E_PARSE, "provisioned_at: missing"));
    FK_ENSURE(cJSON_IsNull(at) || cJSON_IsString(at),
              bad(diag, "provisioned_at", "null or an RFC 3339 UTC time"));
    if (cJSON_IsString(at)) {
        FK_ENSURE(is_rfc3339_z(at->valuestring),
                  bad(diag, "provisioned_at", "null or an RFC 3339 UTC time (…Z)"));
        snprintf(m->provisioned_at, sizeof m->provisioned_at, "%s", at->valuestring);
    }

    /* Extras: optional, checked when present. */
    FK_GUARD(get_uint(root, "schema_version", &m->schema_version, diag));
    FK_ENSURE(m->schema_version <= FK_MANIFEST_SCHEMA,
              fk_diag_set(diag, FK_E_PARSE, "schema_version: %u is newer than this program (%d)",
                          m->schema_version, FK_MANIFEST_SCHEMA));
    FK_GUARD(get_str(root, "mac", 0, m->mac, sizeof m->mac, diag));
    if (m->mac[0] != '\0') {
        uint8_t mac[FK_MAC_LEN];
        FK_ENSURE(fk_keys_mac_parse(m->mac, mac, NULL) == FK_OK,
                  bad(diag, "mac", "AA:BB:CC:DD:EE:FF"));
        char id[FK_DEVICE_ID_SIZE];
        fk_keys_device_id(mac, id);
        FK_ENSURE(strcmp(id, m->device_id) == 0,
                  bad(diag, "mac", "the MAC that device_id is made from"));
    }
    FK_GUARD(get_str(root, "name", 0, m->name, sizeof m->name, diag));
    FK_GUARD(get_str(root, "wifi_ssid", 0, m->wifi_ssid, sizeof m->wifi_ssid, diag));
    FK_GUARD(get_str(root, "nvs_image", 0, m->nvs_image, sizeof m->nvs_image, diag));
    FK_ENSURE(is_plain_file_name(m->nvs_image), bad(diag, "nvs_image", "a file name"));
    FK_GUARD(get_str(root, "nvs_image_sha256", 0, m->nvs_image_sha256, sizeof m->nvs_image_sha256,
                     diag));
    FK_ENSURE(m->nvs_image_sha256[0] == '\0' || strlen(m->nvs_image_sha256) == 64,
              bad(diag, "nvs_image_sha256", "64 hex digits"));
    FK_GUARD(get_uint(root, "nvs_size", &m->nvs_size, diag));
    FK_GUARD(get_bool(root, "nvs_encrypted", 0, &m->nvs_encrypted, diag));
    FK_GUARD(get_str(root, "nvs_keys", 0, m->nvs_keys, sizeof m->nvs_keys, diag));
    FK_ENSURE(is_plain_file_name(m->nvs_keys), bad(diag, "nvs_keys", "a file name"));
    FK_ENSURE(!m->nvs_encrypted || m->nvs_keys[0] != '\0',
              bad(diag, "nvs_keys", "the key file of the encrypted image"));
    FK_GUARD(
        get_str(root, "ota_private_key", 0, m->ota_private_key, sizeof m->ota_private_key, diag));
    FK_ENSURE(is_plain_file_name(m->ota_private_key), bad(diag, "ota_private_key", "a file name"));
    FK_GUARD(
        get_str(root, "psk_fingerprint", 0, m->psk_fingerprint, sizeof m->psk_fingerprint, diag));
    FK_ENSURE(is_fpr(m->psk_fingerprint), bad(diag, "psk_fingerprint", "sha256:16 hex digits"));
    FK_GUARD(get_str(root, "ota_public_key_fingerprint", 0, m->ota_key_fingerprint,
                     sizeof m->ota_key_fingerprint, diag));
    FK_ENSURE(is_fpr(m->ota_key_fingerprint),
              bad(diag, "ota_public_key_fingerprint", "sha256:16 hex digits"));
    FK_GUARD(get_str(root, "nvs_keys_fingerprint", 0, m->nvs_keys_fingerprint,
                     sizeof m->nvs_keys_fingerprint, diag));
    FK_ENSURE(is_fpr(m->nvs_keys_fingerprint),
              bad(diag, "nvs_keys_fingerprint", "sha256:16 hex digits"));
    FK_GUARD(get_uint(root, "psk_version", &m->psk_version, diag));
    FK_GUARD(get_uint(root, "ota_key_version", &m->ota_key_version, diag));
    FK_GUARD(get_str(root, "created_at", 0, m->created_at, sizeof m->created_at, diag));
    FK_ENSURE(m->created_at[0] == '\0' || is_rfc3339_z(m->created_at),
              bad(diag, "created_at", "an RFC 3339 UTC time"));
    FK_GUARD(get_str(root, "mtls_cert", 0, m->mtls_cert, sizeof m->mtls_cert, diag));
    FK_ENSURE(is_plain_file_name(m->mtls_cert), bad(diag, "mtls_cert", "a file name"));
    FK_GUARD(get_str(root, "mtls_cert_fingerprint", 0, m->mtls_cert_fingerprint,
                     sizeof m->mtls_cert_fingerprint, diag));
    FK_ENSURE(m->mtls_cert_fingerprint[0] == '\0' ||
                  (strlen(m->mtls_cert_fingerprint) == 71 &&
                   strncmp(m->mtls_cert_fingerprint, "sha256:", 7) == 0),
              bad(diag, "mtls_cert_fingerprint", "sha256:64 hex digits"));
    FK_GUARD(get_str(root, "mtls_cert_serial", 0, m->mtls_cert_serial, sizeof m->mtls_cert_serial,
                     diag));
    FK_GUARD(get_str(root, "mtls_cert_not_after", 0, m->mtls_cert_not_after,
                     sizeof m->mtls_cert_not_after, diag));
    FK_ENSURE(m->mtls_cert_not_after[0] == '\0' || is_rfc3339_z(m->mtls_cert_not_after),
              bad(diag, "mtls_cert_not_after", "an RFC 3339 UTC time"));
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_keys_manifest_parse(const char *buf, size_t len, struct fk_manifest *out,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    cJSON *root = NULL;
    memset(out, 0, sizeof *out);
    FK_ENSURE(len <= FK_MANIFEST_MAX,
              fk_diag_set(diag, FK_E_TOOBIG, "manifest larger than %d bytes", FK_MANIFEST_MAX));
    root = cJSON_ParseWithLength(buf, len);
    FK_ENSURE(root != NULL, fk_diag_set(diag, FK_E_PARSE, "not valid JSON (near byte %ld)",
                                        cJSON_GetErrorPtr() != NULL && cJSON_GetErrorPtr() >= buf &&
                                                cJSON_GetErrorPtr() <= buf + len
                                            ? (long)(cJSON_GetErrorPtr() - buf)
                                            : -1L));
    FK_GUARD(parse_tree(root, out, diag));
    rc = FK_OK;
out:
    if (root != NULL) {
        /* cJSON holds its own copy of psk_hex: wipe it before the tree is freed. */
        cJSON *psk = cJSON_GetObjectItemCaseSensitive(root, "psk_hex");
        if (cJSON_IsString(psk) && psk->valuestring != NULL) {
            fk_wipe(psk->valuestring, strlen(psk->valuestring));
        }
        cJSON_Delete(root);
    }
    if (rc != FK_OK) {
        fk_keys_manifest_wipe(out);
    }
    return rc;
}

enum fk_err fk_keys_manifest_load(const char *path, struct fk_manifest *out, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    FK_GUARD(fk_file_read(path, FK_MANIFEST_MAX, &buf, &len, diag));
    rc = fk_keys_manifest_parse((const char *)buf, len, out, diag);
    if (rc != FK_OK && diag != NULL) {
        snprintf(diag->file, sizeof diag->file, "%s", path);
    }
out:
    fk_free_secret(buf, len + 1);
    return rc;
}
