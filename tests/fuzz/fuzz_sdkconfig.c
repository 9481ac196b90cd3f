/* Fuzz harness: the device's sdkconfig parser on arbitrary bytes, then the env overrides in
 * both builds with a fixed environment. Must never crash, read out of bounds or leave a
 * string field unterminated. */
#include "fkd/config.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results do not matter here; only crashes and sanitizer reports do. */
static void ignore(enum fkd_err rc) {
    (void)rc;
}

static const char *fake_env(void *user, const char *name) {
    (void)user;
    return strcmp(name, "MINITRAIN_WSS_URI") == 0 ? "wss://env" : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fkd_config c;
    struct fkd_cfg_diag d = {0, NULL};
    fkd_config_init(&c);
    if (fkd_config_parse(&c, (const char *)data, size, &d) != FKD_OK && d.msg == NULL) {
        __builtin_trap(); /* every error names its line */
    }
#define TERMINATED(f) (strnlen((f), sizeof(f)) < sizeof(f))
    if (!TERMINATED(c.wss_uri) || !TERMINATED(c.expected_host) || !TERMINATED(c.ca_cert_pem) ||
        !TERMINATED(c.client_cert_pem) || !TERMINATED(c.client_key_pem) ||
        !TERMINATED(c.wifi_ssid) || !TERMINATED(c.wifi_password)) {
        __builtin_trap();
    }
    ignore(fkd_config_apply_env(&c, fake_env, NULL));
    fkd_config_free(&c);
    return 0;
}
