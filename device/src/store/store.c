/* The credential store (fkd/store.h): NVS first; in development the Kconfig/env fallback.
 *
 * The Kconfig Wi-Fi fallback exists only when the firmware is not a production build: in an
 * ESP-IDF build sdkconfig.h defines CONFIG_PRODUCTION_BUILD to 1 and the code below is not
 * compiled at all (seed 004: "Kconfig fallback disabled at compile time"). robot-sim learns
 * the build type at run time from --sdkconfig, so it compiles the path and guards it with
 * cfg->production_build as well: a production configuration can never reach it. */
#include "fkd/store.h"

#include "fkd/nvs.h"
#include "fkd/rot.h"

#include <mbedtls/pk.h>
#include <string.h>

#if defined(CONFIG_PRODUCTION_BUILD) && CONFIG_PRODUCTION_BUILD
#define FKD_WIFI_KCONFIG_FALLBACK 0
#else
#define FKD_WIFI_KCONFIG_FALLBACK 1
#endif

struct cred_def {
    const char *ns;
    const char *key;
    int is_str;
};

static const struct cred_def defs[FKD_CRED_COUNT] = {
    [FKD_CRED_DTLS_PSK] = {"security", "dtls_psk", 0},
    [FKD_CRED_PSK_ID] = {"security", "psk_id", 1},
    [FKD_CRED_OTA_PUBKEY] = {"security", "ota_pubkey", 0},
    [FKD_CRED_OTA_PUBKEY2] = {"security", "ota_pubkey2", 0},
    [FKD_CRED_WIFI_SSID] = {"wifi", "ssid", 1},
    [FKD_CRED_WIFI_PASSWORD] = {"wifi", "password", 1},
    [FKD_CRED_CA_CERT] = {"mtls", "ca_cert", 1},
    [FKD_CRED_CLIENT_CERT] = {"mtls", "client_cert", 1},
    [FKD_CRED_CLIENT_KEY] = {"mtls", "client_key", 1},
};

static const char *const cred_names[FKD_CRED_COUNT] = {
    "security/dtls_psk", "security/psk_id", "security/ota_pubkey", "security/ota_pubkey2",
    "wifi/ssid",         "wifi/password",   "mtls/ca_cert",        "mtls/client_cert",
    "mtls/client_key",
};

static uint8_t *buf_of(struct fkd_store *s, enum fkd_cred id, size_t *size) {
    switch (id) {
    case FKD_CRED_DTLS_PSK:
        *size = sizeof s->psk;
        return s->psk;
    case FKD_CRED_PSK_ID:
        *size = sizeof s->psk_id;
        return (uint8_t *)s->psk_id;
    case FKD_CRED_OTA_PUBKEY:
        *size = sizeof s->ota_pubkey;
        return s->ota_pubkey;
    case FKD_CRED_OTA_PUBKEY2:
        *size = sizeof s->ota_pubkey2;
        return s->ota_pubkey2;
    case FKD_CRED_WIFI_SSID:
        *size = sizeof s->wifi_ssid;
        return (uint8_t *)s->wifi_ssid;
    case FKD_CRED_WIFI_PASSWORD:
        *size = sizeof s->wifi_password;
        return (uint8_t *)s->wifi_password;
    case FKD_CRED_CA_CERT:
        *size = sizeof s->ca_cert;
        return (uint8_t *)s->ca_cert;
    case FKD_CRED_CLIENT_CERT:
        *size = sizeof s->client_cert;
        return (uint8_t *)s->client_cert;
    case FKD_CRED_CLIENT_KEY:
        *size = sizeof s->client_key;
        return (uint8_t *)s->client_key;
    case FKD_CRED_COUNT:
        break;
    }
    *size = 0;
    return NULL;
}

void fkd_store_init(struct fkd_store *s) {
    memset(s, 0, sizeof *s);
}

void fkd_store_free(struct fkd_store *s) {
    if (s == NULL) {
        return;
    }
    fkd_wipe(s, sizeof *s);
}

static int printable_id(const char *id, size_t len) {
    if (len == 0 || len > FKD_PSK_ID_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (id[i] < 0x21 || id[i] > 0x7E) {
            return 0;
        }
    }
    return 1;
}

/* A trusted OTA key must be a public key mbedTLS can use (P-256/P-384 or RSA SPKI, DER). */
static int pubkey_ok(const uint8_t *der, size_t len) {
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int ok = len > 0 && mbedtls_pk_parse_public_key(&pk, der, len) == 0 &&
             (mbedtls_pk_can_do(&pk, MBEDTLS_PK_ECKEY) || mbedtls_pk_can_do(&pk, MBEDTLS_PK_RSA));
    mbedtls_pk_free(&pk);
    return ok;
}

size_t fkd_der_seq_len(const uint8_t *buf, size_t len) {
    /* X.690 8.1.2-8.1.3: one identifier octet (0x30: universal, constructed, SEQUENCE),
     * then a short-form length (< 0x80) or 0x81..0x84 and that many big-endian octets. */
    if (buf == NULL || len < 2 || buf[0] != 0x30) {
        return 0;
    }
    size_t hdr = 2;
    size_t body = buf[1];
    if (buf[1] & 0x80u) {
        size_t n = buf[1] & 0x7Fu;
        if (n == 0 || n > 4 || n > len - 2) {
            return 0; /* indefinite (BER only) or too long for any buffer here */
        }
        body = 0;
        for (size_t i = 0; i < n; i++) {
            body = (body << 8) | buf[2 + i];
        }
        hdr += n;
    }
    if (body > len - hdr) { /* not hdr + body > len: may wrap */
        return 0;
    }
    return hdr + body;
}

size_t fkd_der_seq_count(const uint8_t *buf, size_t len, size_t max) {
    size_t n = 0;
    size_t off = 0;
    while (off < len) {
        size_t e = fkd_der_seq_len(buf + off, len - off);
        if (e == 0 || n == max) {
            return 0;
        }
        off += e; /* e <= len - off */
        n++;
    }
    return n;
}

/* The mtls items: DER when they start with a SEQUENCE (the client certificate and key are
 * exactly one, the CA chain up to FKD_CA_CHAIN_MAX), otherwise PEM text. */
static int is_der(const uint8_t *buf, size_t len) {
    return len > 0 && buf[0] == 0x30;
}

static int mtls_ok(const uint8_t *buf, size_t len, enum fkd_cred id) {
    if (!is_der(buf, len)) {
        return len > 0;
    }
    if (id == FKD_CRED_CA_CERT) {
        return fkd_der_seq_count(buf, len, FKD_CA_CHAIN_MAX) > 0;
    }
    return fkd_der_seq_len(buf, len) == len;
}

static int validate(const struct fkd_store *s, enum fkd_cred id, size_t len) {
    switch (id) {
    case FKD_CRED_DTLS_PSK:
        return len == FKD_PSK_LEN; /* "valid PSK": exactly 32 bytes, as provisioned */
    case FKD_CRED_PSK_ID:
        return printable_id(s->psk_id, len);
    case FKD_CRED_OTA_PUBKEY:
        return pubkey_ok(s->ota_pubkey, len);
    case FKD_CRED_OTA_PUBKEY2:
        return pubkey_ok(s->ota_pubkey2, len);
    case FKD_CRED_WIFI_SSID:
        return len >= 1 && len <= 32;
    case FKD_CRED_WIFI_PASSWORD:
        return len <= 64; /* empty: an open network */
    case FKD_CRED_CA_CERT:
        return mtls_ok((const uint8_t *)s->ca_cert, len, id);
    case FKD_CRED_CLIENT_CERT:
        return mtls_ok((const uint8_t *)s->client_cert, len, id);
    case FKD_CRED_CLIENT_KEY:
        return mtls_ok((const uint8_t *)s->client_key, len, id);
    default:
        return len > 0;
    }
}

/* Reads one credential from NVS into its buffer. */
static enum fkd_err from_nvs(struct fkd_store *s, struct fkd_nvs *nvs, enum fkd_cred id,
                             const struct cred_def *d, size_t *len) {
    size_t size;
    uint8_t *buf = buf_of(s, id, &size);
    uint8_t type = 0;
    enum fkd_err rc = fkd_nvs_find(nvs, d->ns, d->key, &type);
    if (rc != FKD_OK) {
        return rc;
    }
    if (type == FKD_NVS_STR) {
        rc = d->is_str || id >= FKD_CRED_CA_CERT
                 ? fkd_nvs_get_str(nvs, d->ns, d->key, (char *)buf, size, len)
                 : FKD_E_TYPE;
    } else if (type == FKD_NVS_BLOB_IDX || type == FKD_NVS_BLOB) {
        /* Strings may be provisioned as binary (PEM files as "file,binary" rows); the mtls
         * items may also be DER, which holds NUL bytes by nature. */
        size_t room = d->is_str ? size - 1 : size;
        rc = fkd_nvs_get_blob(nvs, d->ns, d->key, buf, room, len);
        if (rc == FKD_OK && d->is_str) {
            buf[*len] = 0;
            int der = id >= FKD_CRED_CA_CERT && is_der(buf, *len);
            if (!der && memchr(buf, 0, *len) != NULL) {
                rc = FKD_E_TYPE;
            }
        }
    } else {
        rc = FKD_E_TYPE;
    }
    if (rc != FKD_OK) {
        fkd_wipe(buf, size);
    }
    return rc;
}

static void from_config(struct fkd_store *s, const struct fkd_config *cfg, enum fkd_cred id,
                        enum fkd_cfg_str which) {
    const char *v = fkd_config_get_str(cfg, which);
    size_t size;
    uint8_t *buf = buf_of(s, id, &size);
    size_t len = strnlen(v, size);
    if (len == 0 || len >= size) {
        return;
    }
    memcpy(buf, v, len + 1);
    s->info[id].source = cfg->source[which] == FKD_CFG_ENV ? FKD_SRC_ENV : FKD_SRC_KCONFIG;
    s->info[id].len = len;
}

static void describe(struct fkd_store *s, enum fkd_cred id) {
    struct fkd_cred_info *in = &s->info[id];
    size_t size;
    const uint8_t *buf = buf_of(s, id, &size);
    if (in->source == FKD_SRC_NONE) {
        in->fpr[0] = '\0';
        if (in->nvs_error != FKD_OK && in->nvs_error != FKD_E_NOTFOUND) {
            fkd_log(FKD_LOG_WARN, "store: %s: unusable in NVS (%s); absent", cred_names[id],
                    in->nvs_error == FKD_E_NOSPACE ? "too long" : fkd_strerror(in->nvs_error));
        } else {
            fkd_log(FKD_LOG_INFO, "store: %s: absent", cred_names[id]);
        }
        return;
    }
    in->valid = validate(s, id, in->len);
    fkd_fpr(buf, in->len, in->fpr);
    /* Where it came from and a fingerprint; never the value. */
    fkd_log(in->valid ? FKD_LOG_INFO : FKD_LOG_WARN, "store: %s: from %s, %zu bytes, %s%s",
            cred_names[id], fkd_cred_source_name(in->source), in->len, in->fpr,
            in->valid ? "" : " (INVALID)");
}

/* Where credential id lives now: the seed's item, or, under rotation (fkd/rot.h), the item of
 * the slot in use: the PSK of the active slot (the listener takes the staged one as its next
 * key, fkd_rot_ctl_sync), the mtls key and certificate of the slot the wss client presents and
 * the trust anchors it verifies the server with (the staged ones during a trial). */
static struct cred_def where(const struct fkd_rot *rot, enum fkd_cred id) {
    struct cred_def d = defs[id];
    enum fkd_rot_class c = FKD_ROT_PSK;
    unsigned item = 0;
    switch (id) {
    case FKD_CRED_DTLS_PSK:
        break;
    case FKD_CRED_PSK_ID:
        item = 1;
        break;
    case FKD_CRED_CLIENT_KEY:
        c = FKD_ROT_MTLS;
        break;
    case FKD_CRED_CLIENT_CERT:
        c = FKD_ROT_MTLS;
        item = 1;
        break;
    case FKD_CRED_CA_CERT:
        c = FKD_ROT_CA;
        break;
    case FKD_CRED_OTA_PUBKEY:
        c = FKD_ROT_OTA;
        break;
    default:
        return d;
    }
    if (rot == NULL) {
        return d;
    }
    /* PSK and OTA key: the committed slot. A staged PSK is the listener's "next" key, and a
     * staged OTA key is trusted for images only once the control plane confirmed it. */
    unsigned slot = c == FKD_ROT_PSK || c == FKD_ROT_OTA ? fkd_rot_info(rot, c)->active
                                                         : fkd_rot_slot_in_use(rot, c);
    const char *ns = NULL, *key = NULL;
    if (fkd_rot_key(c, item, slot, &ns, &key) == FKD_OK) {
        d.ns = ns;
        d.key = key;
    }
    return d;
}

enum fkd_err fkd_store_load(struct fkd_store *s, struct fkd_nvs *nvs,
                            const struct fkd_config *cfg) {
    return fkd_store_load_rot(s, nvs, cfg, NULL);
}

enum fkd_err fkd_store_load_rot(struct fkd_store *s, struct fkd_nvs *nvs,
                                const struct fkd_config *cfg, const struct fkd_rot *rot) {
    if (s == NULL || cfg == NULL) {
        return FKD_E_ARG;
    }
    fkd_store_free(s);
    fkd_store_init(s);
    s->production = cfg->production_build != 0;
    for (int i = 0; i < FKD_CRED_COUNT; i++) {
        enum fkd_cred id = (enum fkd_cred)i;
        s->info[id].nvs_error = FKD_E_NOTFOUND;
        if (nvs == NULL) {
            continue;
        }
        size_t len = 0;
        struct cred_def d = where(rot, id);
        enum fkd_err rc = from_nvs(s, nvs, id, &d, &len);
        s->info[id].nvs_error = rc;
        if (rc == FKD_OK) {
            s->info[id].source = FKD_SRC_NVS;
            s->info[id].len = len;
        }
    }

    /* The CA certificate is trust configuration built into the signed firmware: Kconfig may
     * supply it in both builds. */
    if (s->info[FKD_CRED_CA_CERT].source == FKD_SRC_NONE) {
        from_config(s, cfg, FKD_CRED_CA_CERT, FKD_CFG_CA_CERT_PEM);
    }
    if (!s->production) {
        /* Development: the device's own credentials may come from Kconfig/env (seed 000). */
        if (s->info[FKD_CRED_CLIENT_CERT].source == FKD_SRC_NONE) {
            from_config(s, cfg, FKD_CRED_CLIENT_CERT, FKD_CFG_CLIENT_CERT_PEM);
        }
        if (s->info[FKD_CRED_CLIENT_KEY].source == FKD_SRC_NONE) {
            from_config(s, cfg, FKD_CRED_CLIENT_KEY, FKD_CFG_CLIENT_KEY_PEM);
        }
    } else if ((cfg->client_cert_pem[0] != '\0' &&
                s->info[FKD_CRED_CLIENT_CERT].source == FKD_SRC_NONE) ||
               (cfg->client_key_pem[0] != '\0' &&
                s->info[FKD_CRED_CLIENT_KEY].source == FKD_SRC_NONE)) {
        fkd_log(FKD_LOG_WARN, "store: production build: Kconfig client certificate/key not "
                              "used (NVS only)");
    }

    /* Wi-Fi: the pair comes from one place. */
    if (s->info[FKD_CRED_WIFI_SSID].source == FKD_SRC_NONE) {
        if (s->info[FKD_CRED_WIFI_PASSWORD].source == FKD_SRC_NVS) {
            /* A password without its SSID is useless; do not mix it with Kconfig's SSID. */
            fkd_wipe(s->wifi_password, sizeof s->wifi_password);
            s->info[FKD_CRED_WIFI_PASSWORD].source = FKD_SRC_NONE;
            s->info[FKD_CRED_WIFI_PASSWORD].len = 0;
        }
#if FKD_WIFI_KCONFIG_FALLBACK
        if (!s->production) {
            from_config(s, cfg, FKD_CRED_WIFI_SSID, FKD_CFG_WIFI_SSID);
            if (s->info[FKD_CRED_WIFI_SSID].source != FKD_SRC_NONE) {
                from_config(s, cfg, FKD_CRED_WIFI_PASSWORD, FKD_CFG_WIFI_PASSWORD);
            }
        }
#endif
        if (s->production && cfg->wifi_ssid[0] != '\0') {
            fkd_log(FKD_LOG_WARN, "store: production build: Kconfig Wi-Fi fallback not used "
                                  "(NVS only)");
        }
    }

    for (int i = 0; i < FKD_CRED_COUNT; i++) {
        describe(s, (enum fkd_cred)i);
    }
    s->loaded = 1;
    return FKD_OK;
}

enum fkd_err fkd_store_get(const struct fkd_store *s, enum fkd_cred id, const uint8_t **data,
                           size_t *len) {
    if (s == NULL || (unsigned)id >= FKD_CRED_COUNT || s->info[id].source == FKD_SRC_NONE) {
        return FKD_E_NOTFOUND;
    }
    size_t size;
    *data = buf_of((struct fkd_store *)s, id, &size);
    *len = s->info[id].len;
    return FKD_OK;
}

const struct fkd_cred_info *fkd_store_info(const struct fkd_store *s, enum fkd_cred id) {
    static const struct fkd_cred_info none = {FKD_SRC_NONE, 0, 0, FKD_E_NOTFOUND, ""};
    if (s == NULL || (unsigned)id >= FKD_CRED_COUNT) {
        return &none;
    }
    return &s->info[id];
}

enum fkd_err fkd_store_psk(const struct fkd_store *s, const uint8_t **psk,
                           const char **identity) {
    if (s == NULL || !s->info[FKD_CRED_DTLS_PSK].valid || !s->info[FKD_CRED_PSK_ID].valid) {
        return FKD_E_NOTFOUND;
    }
    *psk = s->psk;
    *identity = s->psk_id;
    return FKD_OK;
}

const char *fkd_cred_name(enum fkd_cred id) {
    if ((unsigned)id >= FKD_CRED_COUNT) {
        return "?";
    }
    return cred_names[id];
}

const char *fkd_cred_source_name(enum fkd_cred_source src) {
    switch (src) {
    case FKD_SRC_NONE:
        return "none";
    case FKD_SRC_NVS:
        return "nvs";
    case FKD_SRC_KCONFIG:
        return "kconfig";
    case FKD_SRC_ENV:
        return "env";
    }
    return "?";
}
