/* Device configuration: the values an ESP-IDF build takes from Kconfig (device/Kconfig) into
 * sdkconfig, parsed from a buffer in the sdkconfig format, plus the development-only
 * MINITRAIN_* environment overrides of seed 000 ("For local development the same values can
 * be supplied via environment variables with matching names").
 *
 * sdkconfig format accepted (what menuconfig writes):
 *   CONFIG_X="text"        string; escapes \" \\ and \n (PEM bodies), nothing else
 *   CONFIG_Y=y             bool true
 *   # CONFIG_Z is not set  bool false
 *   CONFIG_N=5684 / 0x1F   integer / hex
 *   # anything else        comment;  blank lines ignored;  unknown CONFIG_ names ignored
 * A line without '=', an unterminated quote, a bad escape, text after the closing quote, or a
 * value longer than its field is an error naming the line.
 *
 * Pure C: the POSIX port reads the file and supplies getenv; device/src never touches the OS.
 * The struct lives in caller memory (about 13 KiB); fkd_config_free wipes the client key. */
#ifndef FKD_CONFIG_H
#define FKD_CONFIG_H

#include "fkd/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FKD_CFG_URI_MAX 256u   /* including the NUL */
#define FKD_CFG_HOST_MAX 128u
#define FKD_CFG_PEM_MAX 4096u
#define FKD_CFG_SSID_MAX 33u   /* 802.11: 32 octets */
#define FKD_CFG_WIFI_PASS_MAX 65u /* WPA2: 64 characters */
#define FKD_DTLS_DEFAULT_PORT 5684u

/* Where a configuration value came from. */
enum fkd_cfg_source { FKD_CFG_DEFAULT = 0, FKD_CFG_SDKCONFIG, FKD_CFG_ENV };

/* The MINITRAIN_* string settings (seed 000), in table order. */
enum fkd_cfg_str {
    FKD_CFG_WSS_URI,
    FKD_CFG_EXPECTED_HOST,
    FKD_CFG_CA_CERT_PEM,
    FKD_CFG_CLIENT_CERT_PEM,
    FKD_CFG_CLIENT_KEY_PEM,
    FKD_CFG_WIFI_SSID,
    FKD_CFG_WIFI_PASSWORD,
    FKD_CFG_STR_COUNT
};

struct fkd_config {
    char wss_uri[FKD_CFG_URI_MAX];
    char expected_host[FKD_CFG_HOST_MAX];
    char ca_cert_pem[FKD_CFG_PEM_MAX];
    char client_cert_pem[FKD_CFG_PEM_MAX];
    char client_key_pem[FKD_CFG_PEM_MAX]; /* secret */
    char wifi_ssid[FKD_CFG_SSID_MAX];
    char wifi_password[FKD_CFG_WIFI_PASS_MAX]; /* secret */
    int production_build;   /* CONFIG_PRODUCTION_BUILD */
    int nvs_encryption;     /* CONFIG_NVS_ENCRYPTION */
    int secure_boot_v2;     /* CONFIG_SECURE_BOOT_V2_ENABLED */
    uint16_t dtls_port;     /* CONFIG_MINITRAIN_DTLS_PORT, default 5684 */
    enum fkd_cfg_source source[FKD_CFG_STR_COUNT];
    int env_ignored;        /* production: MINITRAIN_* variables were present and ignored */
};

/* Where a parse error was found. msg is a static string. */
struct fkd_cfg_diag {
    unsigned line; /* 1-based */
    const char *msg;
};

/* Defaults: empty strings, every bool off, dtls_port 5684. Cannot fail. */
void fkd_config_init(struct fkd_config *c);
/* Wipes the secret fields (client key, Wi-Fi password). Safe after init. */
void fkd_config_free(struct fkd_config *c);

/* Parses sdkconfig text (buf, len; need not be NUL-terminated) into c, on top of what c holds.
 * FKD_OK, or FKD_E_PARSE / FKD_E_RANGE with diag (may be NULL) filled; on error c holds the
 * lines before the bad one. Never allocates; reentrant. */
FKD_MUST_CHECK enum fkd_err fkd_config_parse(struct fkd_config *c, const char *buf, size_t len,
                                             struct fkd_cfg_diag *diag);

/* Returns the value of an environment variable or NULL; supplied by the port. */
typedef const char *fkd_getenv_fn(void *user, const char *name);

/* Applies MINITRAIN_WSS_URI, MINITRAIN_EXPECTED_HOST, MINITRAIN_CA_CERT_PEM,
 * MINITRAIN_CLIENT_CERT_PEM, MINITRAIN_CLIENT_KEY_PEM (and MINITRAIN_DTLS_PORT) over the
 * CONFIG_MINITRAIN_* values, in a development build only. In a production build
 * (production_build set) nothing is applied, and if any of them is set, one WARN line names
 * the ignored variables (never their values) and env_ignored is set. Env values are taken
 * literally (a real newline, no escapes). FKD_OK, or FKD_E_RANGE naming the variable in the
 * log when one is too long (nothing of it applied). */
FKD_MUST_CHECK enum fkd_err fkd_config_apply_env(struct fkd_config *c, fkd_getenv_fn *getenv_fn,
                                                 void *user);

/* "CONFIG_MINITRAIN_WSS_URI" etc., and the env name "MINITRAIN_WSS_URI" (NULL for Wi-Fi). */
const char *fkd_config_str_name(enum fkd_cfg_str which);
const char *fkd_config_env_name(enum fkd_cfg_str which);
const char *fkd_config_get_str(const struct fkd_config *c, enum fkd_cfg_str which);
const char *fkd_cfg_source_name(enum fkd_cfg_source s);

#ifdef __cplusplus
}
#endif
#endif
