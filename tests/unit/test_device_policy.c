/* Unit tests of the credential store and the production policy (device/src/store/store.c,
 * policy.c): one test per rule of seed 004's table in each build, the Kconfig/env fallback
 * and its precedence, and that no log line ever carries a secret.
 *
 * Each scenario provisions a fresh in-memory NVS through the device runtime (encrypted when
 * the scenario says so), loads the store from it with a configuration, evaluates the policy
 * and captures the log. */
#include "fkd/config.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/policy.h"
#include "fkd/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FKD_TEST_PROD_FIRMWARE
#define FKD_TEST_PROD_FIRMWARE 0
#endif

static char logbuf[16384];

static void capture(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    size_t l = strlen(logbuf);
    snprintf(logbuf + l, sizeof logbuf - l, "%s %s\n", fkd_log_level_name(lvl), line);
}

static const uint8_t psk32[32] = {0x50, 0xb3, 0xf7, 0xf7, 0xc4, 0x16, 0xce, 0x09, 0x37, 0xab, 0xf4,
                                  0xac, 0x09, 0x6b, 0xdb, 0x5b, 0x08, 0xf8, 0xa5, 0x28, 0xfa, 0x31,
                                  0xc0, 0xa3, 0x25, 0x36, 0x01, 0xbd, 0x66, 0x56, 0xcf, 0xc4};
static const char wifi_pw[] = "Tr41n-R0b0t#2026";
static const char kconfig_pw[] = "kconfig-pass-123";

struct scen {
    int production;
    size_t psk_len;  /* 0: absent */
    int psk_id;      /* 1: present */
    int ota;         /* 0 absent, 1 valid DER key, 2 garbage */
    int wifi_nvs;
    int kconfig_wifi;
    int env_client_cert;
    int encrypted;
    int secure_boot;
};

static const struct scen complete_prod = {1, 32, 1, 1, 1, 1, 0, 1, 1};
static const struct scen complete_dev = {0, 32, 1, 1, 1, 1, 0, 0, 0};

static uint8_t flashbuf[0x6000];
static struct fkd_flash_mem mem;
static struct fkd_flash flash;
static struct fkd_nvs nvs;
static struct fkd_config cfg;
static struct fkd_store store;
static struct fkd_posture posture;

static uint8_t *read_vec(const char *name, size_t *len) {
    const char *v = getenv("FK_VECTORS");
    char path[4096];
    snprintf(path, sizeof path, "%s/nvs/%s", v != NULL ? v : "tests/vectors", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[4096];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static void run(const struct scen *s) {
    uint8_t xk[64];
    for (int i = 0; i < 64; i++) {
        xk[i] = (uint8_t)(0x30 + i);
    }
    logbuf[0] = '\0';
    fkd_log_set(capture, NULL, FKD_LOG_DEBUG);
    memset(flashbuf, 0xFF, sizeof flashbuf);
    fkd_flash_mem_init(&mem, flashbuf, sizeof flashbuf, &flash);
    fkd_nvs_init(&nvs);
    const uint8_t *key = s->encrypted ? xk : NULL;
    assert_int_equal(fkd_nvs_mount(&nvs, &flash, 0, sizeof flashbuf, key, NULL), FKD_OK);
    if (s->psk_len > 0) {
        uint8_t p[64];
        memset(p, 0x5A, sizeof p);
        memcpy(p, psk32, s->psk_len < 32 ? s->psk_len : 32);
        assert_int_equal(fkd_nvs_set_blob(&nvs, "security", "dtls_psk", p, s->psk_len), FKD_OK);
    }
    if (s->psk_id) {
        assert_int_equal(fkd_nvs_set_str(&nvs, "security", "psk_id", "robot-AABBCCDDEEFF"),
                         FKD_OK);
    }
    if (s->ota == 1) {
        size_t len;
        const uint8_t *der = read_vec("prov_ota_pub.der", &len);
        assert_int_equal(fkd_nvs_set_blob(&nvs, "security", "ota_pubkey", der, len), FKD_OK);
    } else if (s->ota == 2) {
        static const uint8_t junk[91] = {0x30, 0x59, 0x01, 0x02};
        assert_int_equal(fkd_nvs_set_blob(&nvs, "security", "ota_pubkey", junk, sizeof junk),
                         FKD_OK);
    }
    if (s->wifi_nvs) {
        assert_int_equal(fkd_nvs_set_str(&nvs, "wifi", "ssid", "FleetLab-5G"), FKD_OK);
        assert_int_equal(fkd_nvs_set_str(&nvs, "wifi", "password", wifi_pw), FKD_OK);
    }
    fkd_config_init(&cfg);
    cfg.production_build = s->production;
    cfg.nvs_encryption = s->encrypted;
    cfg.secure_boot_v2 = s->secure_boot;
    if (s->kconfig_wifi) {
        memcpy(cfg.wifi_ssid, "devnet", 7);
        memcpy(cfg.wifi_password, kconfig_pw, sizeof kconfig_pw);
        cfg.source[FKD_CFG_WIFI_SSID] = FKD_CFG_SDKCONFIG;
        cfg.source[FKD_CFG_WIFI_PASSWORD] = FKD_CFG_SDKCONFIG;
    }
    if (s->env_client_cert) {
        memcpy(cfg.client_cert_pem, "-----BEGIN CERTIFICATE-----\n", 29);
        cfg.source[FKD_CFG_CLIENT_CERT_PEM] = FKD_CFG_ENV;
    }
    fkd_store_init(&store);
    assert_int_equal(fkd_store_load(&store, &nvs, &cfg), FKD_OK);
    struct fkd_policy_input in = {&store, &cfg, s->encrypted};
    fkd_policy_evaluate(&in, &posture);
    /* Whatever the scenario: no secret in any log line. */
    char hex[65];
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", psk32[i]);
    }
    assert_null(strstr(logbuf, hex));
    for (size_t i = 0; i + 8 <= strlen(logbuf); i++) {
        assert_true(memcmp(logbuf + i, psk32, 8) != 0);
    }
    assert_null(strstr(logbuf, wifi_pw));
    assert_null(strstr(logbuf, kconfig_pw));
}

static void done(void) {
    fkd_store_free(&store);
    fkd_nvs_free(&nvs);
    fkd_config_free(&cfg);
}

static void has_log(const char *needle) {
    if (strstr(logbuf, needle) == NULL) {
        fail_msg("log lacks \"%s\"; log was:\n%s", needle, logbuf);
    }
}

/* ---- production ------------------------------------------------------------------------ */

static void prod_complete_boots_with_dtls(void **state) {
    (void)state;
    run(&complete_prod);
    for (int r = 0; r < FKD_RULE_COUNT; r++) {
        assert_true(posture.held[r]);
    }
    assert_int_equal(posture.build, FKD_BUILD_PRODUCTION);
    assert_true(posture.boot_allowed);
    assert_int_equal(posture.listener, FKD_LISTENER_DTLS);
    assert_true(posture.updates_enabled);
    assert_int_equal(posture.wifi, FKD_WIFI_NVS);
    assert_null(strstr(logbuf, "E "));
    const uint8_t *psk;
    const char *id;
    assert_int_equal(fkd_store_psk(&store, &psk, &id), FKD_OK);
    assert_memory_equal(psk, psk32, 32);
    assert_string_equal(id, "robot-AABBCCDDEEFF");
    assert_int_equal(fkd_store_info(&store, FKD_CRED_DTLS_PSK)->source, FKD_SRC_NVS);
    has_log("store: security/dtls_psk: from nvs, 32 bytes, sha256:");
    char json[1024];
    size_t n = fkd_posture_json(&posture, json, sizeof json);
    assert_true(n < sizeof json);
    assert_string_equal(json, "{\"build\":\"production\",\"boot_allowed\":true,\"refused_by\":null,"
                              "\"listener\":\"dtls\",\"updates_enabled\":true,\"wifi\":\"nvs\","
                              "\"nvs_encrypted\":true,\"dtls_port\":5684,\"rules\":{"
                              "\"wifi-nvs-only\":true,\"dtls-required\":true,"
                              "\"ota-key-required\":true,\"nvs-encrypted\":true,"
                              "\"secure-boot\":true}}");
    char small[16];
    assert_int_equal(fkd_posture_json(&posture, small, sizeof small), n);
    assert_int_equal(strlen(small), sizeof small - 1);
    done();
}

static void prod_dtls_required_refuses_listener_without_psk(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.psk_len = 0;
    run(&s);
    assert_false(posture.held[FKD_RULE_DTLS_REQUIRED]);
    assert_int_equal(posture.listener, FKD_LISTENER_REFUSED);
    assert_true(posture.boot_allowed); /* the service stops, not the robot */
    has_log("E policy: rule dtls-required violated");
    has_log("control listener refused");
    done();
}

static void prod_dtls_required_refuses_short_psk_or_missing_identity(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.psk_len = 16;
    run(&s);
    assert_int_equal(posture.listener, FKD_LISTENER_REFUSED);
    assert_false(fkd_store_info(&store, FKD_CRED_DTLS_PSK)->valid);
    has_log("security/dtls_psk: from nvs, 16 bytes");
    has_log("(INVALID)");
    done();
    s.psk_len = 40;
    run(&s);
    assert_int_equal(posture.listener, FKD_LISTENER_REFUSED);
    done();
    s = complete_prod;
    s.psk_id = 0;
    run(&s);
    assert_int_equal(posture.listener, FKD_LISTENER_REFUSED);
    has_log("rule dtls-required violated");
    done();
}

static void prod_ota_key_required_refuses_boot(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.ota = 0;
    run(&s);
    assert_false(posture.boot_allowed);
    assert_int_equal(posture.refused_by, FKD_RULE_OTA_KEY_REQUIRED);
    assert_false(posture.updates_enabled);
    has_log("E policy: rule ota-key-required violated");
    has_log("boot refused");
    done();
    s.ota = 2; /* present but not a public key */
    run(&s);
    assert_false(posture.boot_allowed);
    assert_int_equal(posture.refused_by, FKD_RULE_OTA_KEY_REQUIRED);
    done();
}

static void prod_nvs_encrypted_refuses_boot_on_plain_nvs(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.encrypted = 0;
    run(&s);
    assert_false(posture.boot_allowed);
    assert_int_equal(posture.refused_by, FKD_RULE_NVS_ENCRYPTED);
    has_log("E policy: rule nvs-encrypted violated");
    done();
}

static void prod_secure_boot_refuses_boot(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.secure_boot = 0;
    run(&s);
    assert_false(posture.boot_allowed);
    assert_int_equal(posture.refused_by, FKD_RULE_SECURE_BOOT);
    has_log("E policy: rule secure-boot violated");
    done();
}

static void prod_wifi_nvs_only_ignores_kconfig(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.wifi_nvs = 0;
    s.kconfig_wifi = 1;
    run(&s);
    assert_false(posture.held[FKD_RULE_WIFI_NVS_ONLY]);
    assert_int_equal(posture.wifi, FKD_WIFI_OFF);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_WIFI_SSID)->source, FKD_SRC_NONE);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_WIFI_PASSWORD)->source, FKD_SRC_NONE);
    has_log("E policy: rule wifi-nvs-only not held");
    has_log("Kconfig Wi-Fi fallback not used");
    assert_true(posture.boot_allowed);
    done();
}

static void prod_client_cert_from_env_not_used(void **state) {
    (void)state;
    struct scen s = complete_prod;
    s.env_client_cert = 1;
    run(&s);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_CLIENT_CERT)->source, FKD_SRC_NONE);
    has_log("Kconfig client certificate/key not used");
    done();
}

/* ---- development ----------------------------------------------------------------------- */

static void dev_complete_boots(void **state) {
    (void)state;
    struct scen s = complete_dev;
    s.encrypted = 1;
    s.secure_boot = 1;
    run(&s);
    assert_true(posture.boot_allowed);
    assert_int_equal(posture.build, FKD_BUILD_DEVELOPMENT);
    assert_int_equal(posture.listener, FKD_LISTENER_DTLS);
    assert_null(strstr(logbuf, "E "));
    done();
}

static void dev_missing_psk_runs_plaintext_and_logs_error(void **state) {
    (void)state;
    struct scen s = complete_dev;
    s.psk_len = 0;
    run(&s);
    assert_int_equal(posture.listener, FKD_LISTENER_PLAINTEXT);
    assert_true(posture.boot_allowed);
    has_log("E policy: rule dtls-required not held");
    has_log("UNENCRYPTED");
    done();
}

static void dev_missing_ota_key_disables_updates(void **state) {
    (void)state;
    struct scen s = complete_dev;
    s.ota = 0;
    run(&s);
    assert_true(posture.boot_allowed);
    assert_false(posture.updates_enabled);
    has_log("E policy: rule ota-key-required not held");
    has_log("firmware updates disabled");
    done();
}

static void dev_unencrypted_nvs_and_no_secure_boot_allowed(void **state) {
    (void)state;
    run(&complete_dev);
    assert_true(posture.boot_allowed);
    assert_false(posture.held[FKD_RULE_NVS_ENCRYPTED]);
    assert_false(posture.held[FKD_RULE_SECURE_BOOT]);
    has_log("W policy: rule nvs-encrypted not held: NVS unencrypted, allowed");
    has_log("W policy: rule secure-boot not held");
    done();
}

static void dev_wifi_falls_back_to_kconfig(void **state) {
    (void)state;
    struct scen s = complete_dev;
    s.wifi_nvs = 0;
    run(&s);
    if (FKD_TEST_PROD_FIRMWARE) {
        /* A firmware built with CONFIG_PRODUCTION_BUILD=1 has no fallback code at all, even
         * if its run-time configuration claims development. */
        assert_int_equal(posture.wifi, FKD_WIFI_OFF);
        assert_int_equal(fkd_store_info(&store, FKD_CRED_WIFI_SSID)->source, FKD_SRC_NONE);
    } else {
        assert_int_equal(posture.wifi, FKD_WIFI_KCONFIG);
        assert_int_equal(fkd_store_info(&store, FKD_CRED_WIFI_SSID)->source, FKD_SRC_KCONFIG);
        assert_int_equal(fkd_store_info(&store, FKD_CRED_WIFI_PASSWORD)->source,
                         FKD_SRC_KCONFIG);
        has_log("W policy: rule wifi-nvs-only not held: Wi-Fi from the Kconfig fallback");
        const uint8_t *pw;
        size_t len;
        assert_int_equal(fkd_store_get(&store, FKD_CRED_WIFI_PASSWORD, &pw, &len), FKD_OK);
        assert_int_equal(len, strlen(kconfig_pw));
    }
    done();
}

static void dev_nvs_wins_over_kconfig(void **state) {
    (void)state;
    run(&complete_dev); /* both NVS and Kconfig hold Wi-Fi */
    assert_int_equal(posture.wifi, FKD_WIFI_NVS);
    const uint8_t *pw;
    size_t len;
    assert_int_equal(fkd_store_get(&store, FKD_CRED_WIFI_PASSWORD, &pw, &len), FKD_OK);
    assert_memory_equal(pw, wifi_pw, len);
    done();
}

static void dev_client_cert_from_env(void **state) {
    (void)state;
    struct scen s = complete_dev;
    s.env_client_cert = 1;
    run(&s);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_CLIENT_CERT)->source, FKD_SRC_ENV);
    has_log("store: mtls/client_cert: from env");
    done();
}

static void store_free_wipes_and_get_reports_absent(void **state) {
    (void)state;
    run(&complete_prod);
    const uint8_t *d;
    size_t len;
    assert_int_equal(fkd_store_get(&store, FKD_CRED_OTA_PUBKEY2, &d, &len), FKD_E_NOTFOUND);
    assert_int_equal(fkd_store_get(&store, FKD_CRED_COUNT, &d, &len), FKD_E_NOTFOUND);
    assert_int_equal(fkd_store_info(NULL, FKD_CRED_DTLS_PSK)->source, FKD_SRC_NONE);
    fkd_store_free(&store);
    for (size_t i = 0; i < sizeof store.psk; i++) {
        assert_int_equal(store.psk[i], 0);
    }
    const uint8_t *psk;
    const char *id;
    assert_int_equal(fkd_store_psk(&store, &psk, &id), FKD_E_NOTFOUND);
    assert_string_equal(fkd_cred_name(FKD_CRED_WIFI_PASSWORD), "wifi/password");
    fkd_nvs_free(&nvs);
}

static void store_without_nvs_in_production_has_nothing(void **state) {
    (void)state;
    logbuf[0] = '\0';
    fkd_config_init(&cfg);
    cfg.production_build = 1;
    memcpy(cfg.wifi_ssid, "devnet", 7);
    fkd_store_init(&store);
    assert_int_equal(fkd_store_load(&store, NULL, &cfg), FKD_OK);
    struct fkd_policy_input in = {&store, &cfg, 0};
    fkd_policy_evaluate(&in, &posture);
    assert_false(posture.boot_allowed);
    assert_int_equal(posture.listener, FKD_LISTENER_REFUSED);
    assert_int_equal(posture.wifi, FKD_WIFI_OFF);
    fkd_store_free(&store);
}

/* PEM credentials may be provisioned as strings or as binary ("file,binary" CSV rows); a
 * blob with a NUL inside is not a PEM string; a PSK longer than the store's room is unusable
 * (and logged as too long), not truncated. */
static void store_reads_pem_blobs_and_rejects_odd_values(void **state) {
    (void)state;
    run(&complete_prod);
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "client_cert", (const uint8_t *)pem,
                                      sizeof pem - 1),
                     FKD_OK);
    static const uint8_t bad[] = {'a', 0, 'b'};
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "client_key", bad, sizeof bad), FKD_OK);
    uint8_t longpsk[80];
    memset(longpsk, 7, sizeof longpsk);
    assert_int_equal(fkd_nvs_set_blob(&nvs, "security", "dtls_psk", longpsk, sizeof longpsk),
                     FKD_OK);
    logbuf[0] = '\0';
    assert_int_equal(fkd_store_load(&store, &nvs, &cfg), FKD_OK);
    const uint8_t *d;
    size_t len;
    assert_int_equal(fkd_store_get(&store, FKD_CRED_CLIENT_CERT, &d, &len), FKD_OK);
    assert_int_equal(len, sizeof pem - 1);
    assert_string_equal((const char *)d, pem);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_CLIENT_KEY)->source, FKD_SRC_NONE);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_CLIENT_KEY)->nvs_error, FKD_E_TYPE);
    assert_int_equal(fkd_store_info(&store, FKD_CRED_DTLS_PSK)->source, FKD_SRC_NONE);
    has_log("store: security/dtls_psk: unusable in NVS (too long); absent");
    struct fkd_policy_input in = {&store, &cfg, 1};
    fkd_policy_evaluate(&in, &posture);
    assert_int_equal(posture.listener, FKD_LISTENER_REFUSED);
    done();
}

/* DER mtls items (what `provision-keys generate/batch --ca` writes): a blob starting with a
 * SEQUENCE is DER, NUL bytes and all; the certificate and key are one SEQUENCE exactly, the
 * CA chain several back to back, each length checked against what remains. */
static size_t der_seq(uint8_t *out, size_t body, uint8_t fill) {
    size_t h;
    out[0] = 0x30;
    if (body < 0x80) {
        out[1] = (uint8_t)body;
        h = 2;
    } else {
        out[1] = 0x82;
        out[2] = (uint8_t)(body >> 8);
        out[3] = (uint8_t)body;
        h = 4;
    }
    memset(out + h, fill, body); /* fill 0: NUL bytes, as real DER has */
    return h + body;
}

static void store_loads_der_cert_key_and_chain(void **state) {
    (void)state;
    run(&complete_prod);
    uint8_t cert[600], key[200], chain[1200];
    size_t cl = der_seq(cert, 580, 0);
    size_t kl = der_seq(key, 0x7f, 0);
    size_t nl = der_seq(chain, 500, 1);
    nl += der_seq(chain + nl, 480, 0);
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "client_cert", cert, cl), FKD_OK);
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "client_key", key, kl), FKD_OK);
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "ca_cert", chain, nl), FKD_OK);
    assert_int_equal(fkd_store_load(&store, &nvs, &cfg), FKD_OK);
    const uint8_t *d;
    size_t len;
    assert_int_equal(fkd_store_get(&store, FKD_CRED_CLIENT_CERT, &d, &len), FKD_OK);
    assert_int_equal(len, cl);
    assert_memory_equal(d, cert, cl);
    assert_true(fkd_store_info(&store, FKD_CRED_CLIENT_CERT)->valid);
    assert_int_equal(fkd_store_get(&store, FKD_CRED_CLIENT_KEY, &d, &len), FKD_OK);
    assert_int_equal(len, kl);
    assert_true(fkd_store_info(&store, FKD_CRED_CLIENT_KEY)->valid);
    assert_int_equal(fkd_store_get(&store, FKD_CRED_CA_CERT, &d, &len), FKD_OK);
    assert_int_equal(len, nl);
    assert_memory_equal(d, chain, nl);
    assert_true(fkd_store_info(&store, FKD_CRED_CA_CERT)->valid);
    assert_int_equal(fkd_der_seq_count(d, len, FKD_CA_CHAIN_MAX), 2);
    done();
}

static void store_rejects_malformed_der(void **state) {
    (void)state;
    run(&complete_prod);
    uint8_t cert[700], chain[1200];
    size_t cl = der_seq(cert, 580, 0);
    cert[cl] = 0x30; /* trailing bytes after the one certificate */
    cert[cl + 1] = 0x00;
    size_t nl = der_seq(chain, 500, 1);
    nl += der_seq(chain + nl, 480, 0);
    chain[nl - 481] = 0xFF; /* second certificate claims more than remains */
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "client_cert", cert, cl + 2), FKD_OK);
    assert_int_equal(fkd_nvs_set_blob(&nvs, "mtls", "ca_cert", chain, nl), FKD_OK);
    assert_int_equal(fkd_store_load(&store, &nvs, &cfg), FKD_OK);
    assert_false(fkd_store_info(&store, FKD_CRED_CLIENT_CERT)->valid);
    assert_false(fkd_store_info(&store, FKD_CRED_CA_CERT)->valid);
    has_log("store: mtls/ca_cert: from nvs");
    has_log("(INVALID)");
    done();
}

static void der_seq_len_checks_every_length_form(void **state) {
    (void)state;
    static const uint8_t short_form[] = {0x30, 0x02, 0x05, 0x00};
    assert_int_equal(fkd_der_seq_len(short_form, sizeof short_form), 4);
    assert_int_equal(fkd_der_seq_len(short_form, 3), 0);            /* truncated body */
    assert_int_equal(fkd_der_seq_len(short_form, 1), 0);            /* truncated header */
    assert_int_equal(fkd_der_seq_len(NULL, 4), 0);
    static const uint8_t not_seq[] = {0x31, 0x00};
    assert_int_equal(fkd_der_seq_len(not_seq, sizeof not_seq), 0);
    static const uint8_t indefinite[] = {0x30, 0x80, 0x00, 0x00};
    assert_int_equal(fkd_der_seq_len(indefinite, sizeof indefinite), 0);
    static const uint8_t five[] = {0x30, 0x85, 0, 0, 0, 0, 1, 0};
    assert_int_equal(fkd_der_seq_len(five, sizeof five), 0);
    static const uint8_t huge[] = {0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0};
    assert_int_equal(fkd_der_seq_len(huge, sizeof huge), 0); /* would wrap a 32-bit size */
    static const uint8_t long_hdr[] = {0x30, 0x82, 0x00}; /* length bytes cut off */
    assert_int_equal(fkd_der_seq_len(long_hdr, sizeof long_hdr), 0);
    static const uint8_t two[] = {0x30, 0x00, 0x30, 0x81, 0x01, 0x00};
    assert_int_equal(fkd_der_seq_count(two, sizeof two, 4), 2);
    assert_int_equal(fkd_der_seq_count(two, sizeof two, 1), 0); /* more than max */
    assert_int_equal(fkd_der_seq_count(two, sizeof two - 1, 4), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(prod_complete_boots_with_dtls),
        cmocka_unit_test(prod_dtls_required_refuses_listener_without_psk),
        cmocka_unit_test(prod_dtls_required_refuses_short_psk_or_missing_identity),
        cmocka_unit_test(prod_ota_key_required_refuses_boot),
        cmocka_unit_test(prod_nvs_encrypted_refuses_boot_on_plain_nvs),
        cmocka_unit_test(prod_secure_boot_refuses_boot),
        cmocka_unit_test(prod_wifi_nvs_only_ignores_kconfig),
        cmocka_unit_test(prod_client_cert_from_env_not_used),
        cmocka_unit_test(dev_complete_boots),
        cmocka_unit_test(dev_missing_psk_runs_plaintext_and_logs_error),
        cmocka_unit_test(dev_missing_ota_key_disables_updates),
        cmocka_unit_test(dev_unencrypted_nvs_and_no_secure_boot_allowed),
        cmocka_unit_test(dev_wifi_falls_back_to_kconfig),
        cmocka_unit_test(dev_nvs_wins_over_kconfig),
        cmocka_unit_test(dev_client_cert_from_env),
        cmocka_unit_test(store_free_wipes_and_get_reports_absent),
        cmocka_unit_test(store_without_nvs_in_production_has_nothing),
        cmocka_unit_test(store_reads_pem_blobs_and_rejects_odd_values),
        cmocka_unit_test(store_loads_der_cert_key_and_chain),
        cmocka_unit_test(store_rejects_malformed_der),
        cmocka_unit_test(der_seq_len_checks_every_length_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
