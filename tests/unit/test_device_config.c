/* Unit tests of the device configuration (device/src/core/config.c): the sdkconfig format, its
 * negative cases, and the MINITRAIN_* environment overrides (development only). */
#include "fkd/config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fkd_config cfg;

/* Log capture. */
static char logbuf[8192];
static unsigned nlines;

static void capture(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    size_t l = strlen(logbuf);
    snprintf(logbuf + l, sizeof logbuf - l, "%s %s\n", fkd_log_level_name(lvl), line);
    nlines++;
}

static int setup(void **state) {
    (void)state;
    fkd_config_init(&cfg);
    logbuf[0] = '\0';
    nlines = 0;
    fkd_log_set(capture, NULL, FKD_LOG_DEBUG);
    return 0;
}

static enum fkd_err parse(const char *text, struct fkd_cfg_diag *d) {
    return fkd_config_parse(&cfg, text, strlen(text), d);
}

static void config_parses_every_kind(void **state) {
    (void)state;
    const char *text =
        "#\n"
        "# Automatically generated file. DO NOT EDIT.\n"
        "#\n"
        "CONFIG_IDF_TARGET=\"esp32\"\n"
        "CONFIG_MINITRAIN_WSS_URI=\"wss://cp.example:8443/ws\"\n"
        "CONFIG_MINITRAIN_EXPECTED_HOST=\"cp.example\"\n"
        "CONFIG_MINITRAIN_CA_CERT_PEM=\"-----BEGIN CERTIFICATE-----\\nMIIB\\\"q\\\\\\n-----END "
        "CERTIFICATE-----\\n\"\n"
        "CONFIG_PRODUCTION_BUILD=y\n"
        "# CONFIG_NVS_ENCRYPTION is not set\n"
        "CONFIG_SECURE_BOOT_V2_ENABLED=y\n"
        "CONFIG_MINITRAIN_DTLS_PORT=0x1634\n"
        "CONFIG_WIFI_SSID=\"lab\"   \r\n"
        "CONFIG_SOME_OTHER_INT=42\n"
        "   \n"
        "CONFIG_WIFI_PASSWORD=\"\"";
    cfg.nvs_encryption = 1;
    assert_int_equal(parse(text, NULL), FKD_OK);
    assert_string_equal(cfg.wss_uri, "wss://cp.example:8443/ws");
    assert_string_equal(cfg.expected_host, "cp.example");
    assert_string_equal(cfg.ca_cert_pem,
                        "-----BEGIN CERTIFICATE-----\nMIIB\"q\\\n-----END CERTIFICATE-----\n");
    assert_int_equal(cfg.production_build, 1);
    assert_int_equal(cfg.nvs_encryption, 0);
    assert_int_equal(cfg.secure_boot_v2, 1);
    assert_int_equal(cfg.dtls_port, 0x1634);
    assert_string_equal(cfg.wifi_ssid, "lab");
    assert_string_equal(cfg.wifi_password, "");
    assert_int_equal(cfg.source[FKD_CFG_WSS_URI], FKD_CFG_SDKCONFIG);
    assert_int_equal(cfg.source[FKD_CFG_CLIENT_KEY_PEM], FKD_CFG_DEFAULT);
}

static void config_defaults(void **state) {
    (void)state;
    assert_int_equal(parse("", NULL), FKD_OK);
    assert_int_equal(cfg.dtls_port, 5684);
    assert_int_equal(cfg.production_build, 0);
    assert_string_equal(cfg.wss_uri, "");
}

struct neg {
    const char *text;
    enum fkd_err rc;
    unsigned line;
    const char *msg_part;
};

static void config_rejects_malformed_lines(void **state) {
    (void)state;
    static char overlong[300];
    memcpy(overlong, "CONFIG_WIFI_SSID=\"", 18);
    memset(overlong + 18, 'a', 33); /* 33 characters: the field holds 32 */
    memcpy(overlong + 51, "\"\n", 3);
    const struct neg cases[] = {
        {"CONFIG_MINITRAIN_WSS_URI=\"wss://x\n", FKD_E_PARSE, 1, "unterminated"},
        {"\nCONFIG_MINITRAIN_WSS_URI=\"a\\tb\"\n", FKD_E_PARSE, 2, "bad escape"},
        {"CONFIG_MINITRAIN_WSS_URI=\"ab\\\n", FKD_E_PARSE, 1, "unterminated"},
        {overlong, FKD_E_RANGE, 1, "too long"},
        {"CONFIG_X=1\nCONFIG_PRODUCTION_BUILD\n", FKD_E_PARSE, 2, "CONFIG_NAME=value"},
        {"just some words\n", FKD_E_PARSE, 1, "CONFIG_NAME=value"},
        {"CONFIG_WIFI_SSID=\"a\" trailing\n", FKD_E_PARSE, 1, "after the closing quote"},
        {"CONFIG_PRODUCTION_BUILD=yes\n", FKD_E_PARSE, 1, "y or n"},
        {"CONFIG_PRODUCTION_BUILD=\"y\"\n", FKD_E_PARSE, 1, "not a string"},
        {"CONFIG_WIFI_SSID=lab\n", FKD_E_PARSE, 1, "quoted"},
        {"CONFIG_MINITRAIN_DTLS_PORT=70000\n", FKD_E_RANGE, 1, "port"},
        {"CONFIG_MINITRAIN_DTLS_PORT=12ab\n", FKD_E_PARSE, 1, "number"},
        {"WIFI_SSID=\"x\"\n", FKD_E_PARSE, 1, "CONFIG_"},
        {"CONFIG_A-B=1\n", FKD_E_PARSE, 1, "bad character"},
        {"CONFIG_UNKNOWN=\"unterminated\n", FKD_E_PARSE, 1, "unterminated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fkd_cfg_diag d = {0, NULL};
        fkd_config_init(&cfg);
        enum fkd_err rc = parse(cases[i].text, &d);
        if (rc != cases[i].rc || d.line != cases[i].line || d.msg == NULL ||
            strstr(d.msg, cases[i].msg_part) == NULL) {
            fail_msg("case %zu: rc %d line %u msg %s", i, rc, d.line, d.msg ? d.msg : "(null)");
        }
    }
    /* A NUL byte inside the buffer is malformed input, not an early end. */
    struct fkd_cfg_diag d = {0, NULL};
    assert_int_equal(fkd_config_parse(&cfg, "CONFIG_A=1\0\n", 12, &d), FKD_E_PARSE);
    /* A failed string value leaves the field empty, not half-written. */
    fkd_config_init(&cfg);
    assert_int_equal(parse("CONFIG_WIFI_SSID=\"abc\\q\"\n", NULL), FKD_E_PARSE);
    assert_string_equal(cfg.wifi_ssid, "");
}

static void config_pem_fills_field_exactly(void **state) {
    (void)state;
    static char text[FKD_CFG_PEM_MAX + 100];
    size_t n = 0;
    n += (size_t)snprintf(text, sizeof text, "CONFIG_MINITRAIN_CLIENT_KEY_PEM=\"");
    memset(text + n, 'k', FKD_CFG_PEM_MAX - 1);
    n += FKD_CFG_PEM_MAX - 1;
    memcpy(text + n, "\"\n", 3);
    assert_int_equal(parse(text, NULL), FKD_OK);
    assert_int_equal(strlen(cfg.client_key_pem), FKD_CFG_PEM_MAX - 1);
    text[n] = 'k';
    memcpy(text + n + 1, "\"\n", 3);
    fkd_config_init(&cfg);
    assert_int_equal(parse(text, NULL), FKD_E_RANGE);
}

/* Fake environment. */
static const char *env_uri, *env_key, *env_port;

static const char *fake_getenv(void *user, const char *name) {
    (void)user;
    if (strcmp(name, "MINITRAIN_WSS_URI") == 0) {
        return env_uri;
    }
    if (strcmp(name, "MINITRAIN_CLIENT_KEY_PEM") == 0) {
        return env_key;
    }
    if (strcmp(name, "MINITRAIN_DTLS_PORT") == 0) {
        return env_port;
    }
    if (strcmp(name, "WIFI_SSID") == 0 || strcmp(name, "MINITRAIN_WIFI_SSID") == 0) {
        return "env-must-not-be-read";
    }
    return NULL;
}

static void config_env_overrides_in_development(void **state) {
    (void)state;
    assert_int_equal(parse("CONFIG_MINITRAIN_WSS_URI=\"wss://kconfig\"\n"
                           "CONFIG_MINITRAIN_EXPECTED_HOST=\"kconfig-host\"\n"
                           "CONFIG_WIFI_SSID=\"lab\"\n",
                           NULL),
                     FKD_OK);
    env_uri = "wss://from-env";
    env_key = "-----BEGIN PRIVATE KEY-----\nreal newline\n-----END PRIVATE KEY-----\n";
    env_port = "6000";
    assert_int_equal(fkd_config_apply_env(&cfg, fake_getenv, NULL), FKD_OK);
    assert_string_equal(cfg.wss_uri, "wss://from-env");
    assert_int_equal(cfg.source[FKD_CFG_WSS_URI], FKD_CFG_ENV);
    assert_string_equal(cfg.expected_host, "kconfig-host");
    assert_int_equal(cfg.source[FKD_CFG_EXPECTED_HOST], FKD_CFG_SDKCONFIG);
    assert_string_equal(cfg.client_key_pem, env_key);
    assert_int_equal(cfg.dtls_port, 6000);
    assert_string_equal(cfg.wifi_ssid, "lab"); /* Wi-Fi has no env override */
    assert_int_equal(cfg.env_ignored, 0);
    assert_null(strstr(logbuf, "ignoring"));
}

static void config_env_ignored_in_production_logged_once(void **state) {
    (void)state;
    assert_int_equal(parse("CONFIG_PRODUCTION_BUILD=y\n"
                           "CONFIG_MINITRAIN_WSS_URI=\"wss://kconfig\"\n",
                           NULL),
                     FKD_OK);
    env_uri = "wss://from-env";
    env_key = "-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n";
    env_port = "6000";
    assert_int_equal(fkd_config_apply_env(&cfg, fake_getenv, NULL), FKD_OK);
    assert_string_equal(cfg.wss_uri, "wss://kconfig");
    assert_int_equal(cfg.source[FKD_CFG_WSS_URI], FKD_CFG_SDKCONFIG);
    assert_string_equal(cfg.client_key_pem, "");
    assert_int_equal(cfg.dtls_port, 5684);
    assert_int_equal(cfg.env_ignored, 1);
    assert_int_equal(nlines, 1);
    assert_non_null(strstr(logbuf, "W config: production build: ignoring environment overrides "
                                   "MINITRAIN_WSS_URI MINITRAIN_CLIENT_KEY_PEM "
                                   "MINITRAIN_DTLS_PORT"));
    assert_null(strstr(logbuf, "SECRETKEYBYTES")); /* names only, never values */
    assert_null(strstr(logbuf, "from-env"));
    /* Without any variable set, production says nothing. */
    fkd_config_init(&cfg);
    cfg.production_build = 1;
    env_uri = env_key = env_port = NULL;
    logbuf[0] = '\0';
    assert_int_equal(fkd_config_apply_env(&cfg, fake_getenv, NULL), FKD_OK);
    assert_int_equal(cfg.env_ignored, 0);
    assert_string_equal(logbuf, "");
}

static void config_env_too_long_or_bad_port_fails(void **state) {
    (void)state;
    static char big[FKD_CFG_URI_MAX + 1];
    memset(big, 'u', sizeof big - 1);
    env_uri = big;
    env_key = NULL;
    env_port = NULL;
    assert_int_equal(fkd_config_apply_env(&cfg, fake_getenv, NULL), FKD_E_RANGE);
    assert_string_equal(cfg.wss_uri, "");
    assert_non_null(strstr(logbuf, "MINITRAIN_WSS_URI is too long"));
    env_uri = NULL;
    env_port = "0";
    assert_int_equal(fkd_config_apply_env(&cfg, fake_getenv, NULL), FKD_E_RANGE);
    env_port = "99999";
    assert_int_equal(fkd_config_apply_env(&cfg, fake_getenv, NULL), FKD_E_RANGE);
    env_port = NULL;
}

static void config_free_wipes_secrets(void **state) {
    (void)state;
    assert_int_equal(parse("CONFIG_MINITRAIN_CLIENT_KEY_PEM=\"secret\"\n"
                           "CONFIG_WIFI_PASSWORD=\"pw\"\n",
                           NULL),
                     FKD_OK);
    fkd_config_free(&cfg);
    for (size_t i = 0; i < sizeof cfg.client_key_pem; i++) {
        assert_int_equal(cfg.client_key_pem[i], 0);
    }
    assert_int_equal(cfg.wifi_password[0], 0);
    assert_string_equal(fkd_config_str_name(FKD_CFG_CA_CERT_PEM), "CONFIG_MINITRAIN_CA_CERT_PEM");
    assert_string_equal(fkd_config_env_name(FKD_CFG_CA_CERT_PEM), "MINITRAIN_CA_CERT_PEM");
    assert_null(fkd_config_env_name(FKD_CFG_WIFI_SSID));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(config_parses_every_kind, setup),
        cmocka_unit_test_setup(config_defaults, setup),
        cmocka_unit_test_setup(config_rejects_malformed_lines, setup),
        cmocka_unit_test_setup(config_pem_fills_field_exactly, setup),
        cmocka_unit_test_setup(config_env_overrides_in_development, setup),
        cmocka_unit_test_setup(config_env_ignored_in_production_logged_once, setup),
        cmocka_unit_test_setup(config_env_too_long_or_bad_port_fails, setup),
        cmocka_unit_test_setup(config_free_wipes_secrets, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
