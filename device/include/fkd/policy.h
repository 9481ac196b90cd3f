/* Production policy (seed 004, "Development Environment" / "Production Environment"), evaluated
 * once at boot from the credential store and the configuration, and reported as a posture.
 *
 * | rule            | production                          | development                        |
 * |-----------------|-------------------------------------|------------------------------------|
 * | wifi-nvs-only   | Wi-Fi from NVS only (no Kconfig      | Kconfig CONFIG_WIFI_* fallback     |
 * |                 | fallback); none in NVS: Wi-Fi off    | allowed                            |
 * | dtls-required   | listener refused without a valid     | listener runs plaintext, ERROR log |
 * |                 | 32-byte PSK and identity             |                                    |
 * | ota-key-required| boot refused without a valid key     | updates disabled                   |
 * | nvs-encrypted   | boot refused on plain NVS            | allowed                            |
 * | secure-boot     | boot refused without                 | allowed (unsigned firmware)        |
 * |                 | CONFIG_SECURE_BOOT_V2_ENABLED        |                                    |
 *
 * A rule "holds" when its condition is true, in either build; the build decides what a rule
 * that does not hold costs. Every rule that does not hold is one log line naming the rule
 * (ERROR when it stops a service or the boot, or where the seed says "logged as error").
 *
 * Pure C, no allocation; the posture is a plain struct the DTLS listener's `status` answer
 * serialises with fkd_posture_json. */
#ifndef FKD_POLICY_H
#define FKD_POLICY_H

#include "fkd/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_store;
struct fkd_config;

enum fkd_build { FKD_BUILD_DEVELOPMENT = 0, FKD_BUILD_PRODUCTION = 1 };

enum fkd_rule {
    FKD_RULE_WIFI_NVS_ONLY,
    FKD_RULE_DTLS_REQUIRED,
    FKD_RULE_OTA_KEY_REQUIRED,
    FKD_RULE_NVS_ENCRYPTED,
    FKD_RULE_SECURE_BOOT,
    FKD_RULE_COUNT
};

enum fkd_listener_mode {
    FKD_LISTENER_DTLS = 0,      /* start the DTLS-PSK listener with the store's PSK */
    FKD_LISTENER_PLAINTEXT = 1, /* development only: no valid PSK, unencrypted channel */
    FKD_LISTENER_REFUSED = 2,   /* production without a valid PSK: do not start */
};

enum fkd_wifi_mode {
    FKD_WIFI_NVS = 0,      /* credentials from NVS */
    FKD_WIFI_KCONFIG = 1,  /* development fallback */
    FKD_WIFI_OFF = 2,      /* no usable credentials (or production without NVS ones) */
};

struct fkd_posture {
    enum fkd_build build;
    uint8_t held[FKD_RULE_COUNT]; /* 1: the rule's condition is true */
    enum fkd_listener_mode listener;
    enum fkd_wifi_mode wifi;
    int updates_enabled;          /* an OTA public key is available */
    int boot_allowed;             /* 0: production refuses to boot (see refused_by) */
    enum fkd_rule refused_by;     /* first rule that refused the boot; valid if !boot_allowed */
    int nvs_encrypted;            /* NVS was mounted with XTS keys */
    uint16_t dtls_port;
};

/* What the policy looks at besides the store: the configuration and whether NVS was actually
 * mounted encrypted (an encrypted mount with keys from nvs_keys, not just the config flag). */
struct fkd_policy_input {
    const struct fkd_store *store;
    const struct fkd_config *cfg;
    int nvs_encrypted;
};

/* Evaluates every rule, logs each violation naming the rule, fills *out. Cannot fail (bad
 * input counts as "rule does not hold"). Reentrant. */
void fkd_policy_evaluate(const struct fkd_policy_input *in, struct fkd_posture *out);

/* "wifi-nvs-only", "dtls-required", "ota-key-required", "nvs-encrypted", "secure-boot". */
const char *fkd_rule_name(enum fkd_rule r);
const char *fkd_build_name(enum fkd_build b);          /* "development" / "production" */
const char *fkd_listener_name(enum fkd_listener_mode m); /* "dtls" / "plaintext" / "refused" */
const char *fkd_wifi_mode_name(enum fkd_wifi_mode m);  /* "nvs" / "kconfig" / "off" */

/* Writes the posture as one JSON object (no secrets in it):
 * {"build":"production","boot_allowed":true,"refused_by":null,"listener":"dtls",
 *  "updates_enabled":true,"wifi":"nvs","nvs_encrypted":true,"dtls_port":5684,
 *  "rules":{"wifi-nvs-only":true,...}}
 * Always NUL-terminates when out_size > 0. Returns the length it needed (without NUL), like
 * snprintf: a return >= out_size means it was cut. */
size_t fkd_posture_json(const struct fkd_posture *p, char *out, size_t out_size);

#ifdef __cplusplus
}
#endif
#endif
