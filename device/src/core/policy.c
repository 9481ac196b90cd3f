/* Production policy (fkd/policy.h): seed 004's development / production table, rule by rule.
 * Each rule is first judged on facts (does it hold?), then the build decides the cost of a
 * rule that does not hold; every such rule produces exactly one log line that names it. */
#include "fkd/policy.h"

#include "fkd/config.h"
#include "fkd/store.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const rule_names[FKD_RULE_COUNT] = {
    "wifi-nvs-only", "dtls-required", "ota-key-required", "nvs-encrypted", "secure-boot",
};

const char *fkd_rule_name(enum fkd_rule r) {
    if ((unsigned)r >= FKD_RULE_COUNT) {
        return "?";
    }
    return rule_names[r];
}

const char *fkd_build_name(enum fkd_build b) {
    return b == FKD_BUILD_PRODUCTION ? "production" : "development";
}

const char *fkd_listener_name(enum fkd_listener_mode m) {
    switch (m) {
    case FKD_LISTENER_DTLS:
        return "dtls";
    case FKD_LISTENER_PLAINTEXT:
        return "plaintext";
    case FKD_LISTENER_REFUSED:
        return "refused";
    }
    return "?";
}

const char *fkd_wifi_mode_name(enum fkd_wifi_mode m) {
    switch (m) {
    case FKD_WIFI_NVS:
        return "nvs";
    case FKD_WIFI_KCONFIG:
        return "kconfig";
    case FKD_WIFI_OFF:
        return "off";
    }
    return "?";
}

static void refuse_boot(struct fkd_posture *p, enum fkd_rule r) {
    if (p->boot_allowed) {
        p->boot_allowed = 0;
        p->refused_by = r;
    }
}

void fkd_policy_evaluate(const struct fkd_policy_input *in, struct fkd_posture *out) {
    const struct fkd_store *s = in->store;
    const struct fkd_config *cfg = in->cfg;
    memset(out, 0, sizeof *out);
    int prod = cfg != NULL && cfg->production_build;
    out->build = prod ? FKD_BUILD_PRODUCTION : FKD_BUILD_DEVELOPMENT;
    out->boot_allowed = 1;
    out->refused_by = FKD_RULE_COUNT;
    out->nvs_encrypted = in->nvs_encrypted != 0;
    out->dtls_port = cfg != NULL ? cfg->dtls_port : (uint16_t)FKD_DTLS_DEFAULT_PORT;

    const struct fkd_cred_info *ssid = fkd_store_info(s, FKD_CRED_WIFI_SSID);
    const uint8_t *psk;
    const char *id;
    out->held[FKD_RULE_WIFI_NVS_ONLY] = ssid->source == FKD_SRC_NVS && ssid->valid;
    out->held[FKD_RULE_DTLS_REQUIRED] = fkd_store_psk(s, &psk, &id) == FKD_OK;
    out->held[FKD_RULE_OTA_KEY_REQUIRED] = fkd_store_info(s, FKD_CRED_OTA_PUBKEY)->valid;
    out->held[FKD_RULE_NVS_ENCRYPTED] = in->nvs_encrypted != 0;
    out->held[FKD_RULE_SECURE_BOOT] = cfg != NULL && cfg->secure_boot_v2;

    const char *b = fkd_build_name(out->build);

    /* Wi-Fi. Seed: production "NVS-only provisioning (Kconfig fallback disabled at compile
     * time)"; development "Compile-time fallback via CONFIG_WIFI_SSID/CONFIG_WIFI_PASSWORD". */
    if (out->held[FKD_RULE_WIFI_NVS_ONLY]) {
        out->wifi = FKD_WIFI_NVS;
    } else if (!prod && ssid->valid &&
               (ssid->source == FKD_SRC_KCONFIG || ssid->source == FKD_SRC_ENV)) {
        out->wifi = FKD_WIFI_KCONFIG;
        fkd_log(FKD_LOG_WARN, "policy: rule %s not held: Wi-Fi from the Kconfig fallback "
                              "(%s build)", rule_names[FKD_RULE_WIFI_NVS_ONLY], b);
    } else {
        out->wifi = FKD_WIFI_OFF;
        fkd_log(FKD_LOG_ERROR, "policy: rule %s not held: no Wi-Fi credentials in NVS; Wi-Fi "
                               "stays off (%s build)", rule_names[FKD_RULE_WIFI_NVS_ONLY], b);
    }

    /* DTLS. Seed: production "Required — device refuses to start control listener without
     * valid PSK"; development "Can boot without PSK (control channel unencrypted, logged as
     * error)". */
    if (out->held[FKD_RULE_DTLS_REQUIRED]) {
        out->listener = FKD_LISTENER_DTLS;
    } else if (prod) {
        out->listener = FKD_LISTENER_REFUSED;
        fkd_log(FKD_LOG_ERROR, "policy: rule %s violated: no valid 32-byte PSK with identity "
                               "in NVS; control listener refused (%s build)",
                rule_names[FKD_RULE_DTLS_REQUIRED], b);
    } else {
        out->listener = FKD_LISTENER_PLAINTEXT;
        fkd_log(FKD_LOG_ERROR, "policy: rule %s not held: no valid PSK; control channel runs "
                               "UNENCRYPTED (%s build)", rule_names[FKD_RULE_DTLS_REQUIRED], b);
    }

    /* OTA. Seed: production "Required"; development "Can boot without public key (firmware
     * updates disabled)". The issue adds: production refuses to boot without it. */
    out->updates_enabled = out->held[FKD_RULE_OTA_KEY_REQUIRED];
    if (!out->held[FKD_RULE_OTA_KEY_REQUIRED]) {
        if (prod) {
            refuse_boot(out, FKD_RULE_OTA_KEY_REQUIRED);
            fkd_log(FKD_LOG_ERROR, "policy: rule %s violated: no valid OTA public key in NVS; "
                                   "boot refused (%s build)",
                    rule_names[FKD_RULE_OTA_KEY_REQUIRED], b);
        } else {
            fkd_log(FKD_LOG_ERROR, "policy: rule %s not held: no valid OTA public key; "
                                   "firmware updates disabled (%s build)",
                    rule_names[FKD_RULE_OTA_KEY_REQUIRED], b);
        }
    }

    /* NVS encryption. Seed: production "Encrypted (CONFIG_NVS_ENCRYPTION=y)"; development
     * "Unencrypted". What counts is that the partition was mounted with XTS keys. */
    if (!out->held[FKD_RULE_NVS_ENCRYPTED]) {
        if (prod) {
            refuse_boot(out, FKD_RULE_NVS_ENCRYPTED);
            fkd_log(FKD_LOG_ERROR, "policy: rule %s violated: NVS is not encrypted; boot "
                                   "refused (%s build)", rule_names[FKD_RULE_NVS_ENCRYPTED], b);
        } else {
            fkd_log(FKD_LOG_WARN, "policy: rule %s not held: NVS unencrypted, allowed (%s "
                                  "build)", rule_names[FKD_RULE_NVS_ENCRYPTED], b);
        }
    }

    /* Secure boot. Seed: production "Enabled (CONFIG_SECURE_BOOT_V2_ENABLED=y)"; development
     * "Disabled (unsigned firmware accepted)". */
    if (!out->held[FKD_RULE_SECURE_BOOT]) {
        if (prod) {
            refuse_boot(out, FKD_RULE_SECURE_BOOT);
            fkd_log(FKD_LOG_ERROR, "policy: rule %s violated: CONFIG_SECURE_BOOT_V2_ENABLED is "
                                   "off; boot refused (%s build)",
                    rule_names[FKD_RULE_SECURE_BOOT], b);
        } else {
            fkd_log(FKD_LOG_WARN, "policy: rule %s not held: secure boot off, allowed (%s "
                                  "build)", rule_names[FKD_RULE_SECURE_BOOT], b);
        }
    }

    fkd_log(out->boot_allowed ? FKD_LOG_INFO : FKD_LOG_ERROR,
            "policy: %s build: boot %s, control listener %s, updates %s, Wi-Fi %s", b,
            out->boot_allowed ? "allowed" : "REFUSED", fkd_listener_name(out->listener),
            out->updates_enabled ? "enabled" : "disabled", fkd_wifi_mode_name(out->wifi));
}

/* snprintf-style appender: counts what it would need even after out is full. */
struct sink {
    char *out;
    size_t size;
    size_t len;
};

static void put(struct sink *k, const char *fmt, ...) FKD_PRINTF(2, 3);

static void put(struct sink *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = k->len < k->size ? k->size - k->len : 0;
    int n = vsnprintf(room > 0 ? k->out + k->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) {
        k->len += (size_t)n;
    }
}

size_t fkd_posture_json(const struct fkd_posture *p, char *out, size_t out_size) {
    struct sink k = {out, out_size, 0};
    if (out_size > 0) {
        out[0] = '\0';
    }
    put(&k, "{\"build\":\"%s\",\"boot_allowed\":%s,\"refused_by\":", fkd_build_name(p->build),
        p->boot_allowed ? "true" : "false");
    if (p->boot_allowed) {
        put(&k, "null");
    } else {
        put(&k, "\"%s\"", fkd_rule_name(p->refused_by));
    }
    put(&k, ",\"listener\":\"%s\",\"updates_enabled\":%s,\"wifi\":\"%s\",\"nvs_encrypted\":%s,"
            "\"dtls_port\":%u,\"rules\":{",
        fkd_listener_name(p->listener), p->updates_enabled ? "true" : "false",
        fkd_wifi_mode_name(p->wifi), p->nvs_encrypted ? "true" : "false",
        (unsigned)p->dtls_port);
    for (int r = 0; r < FKD_RULE_COUNT; r++) {
        put(&k, "%s\"%s\":%s", r ? "," : "", rule_names[r], p->held[r] ? "true" : "false");
    }
    put(&k, "}}");
    return k.len;
}
