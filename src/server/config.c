/* fleetkey-server settings: one table of names shared by the config file and the command
 * line, so a setting cannot exist in one form and not the other. */
#include "fleetkey/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fk_server_config_init(struct fk_server_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen, sizeof cfg->listen, "0.0.0.0");
    cfg->port = 8443;
    cfg->max_connections = 1024;
    cfg->hello_timeout = 10;
    cfg->handshake_timeout = 10;
    cfg->ping_interval = 30;
    cfg->log_level = FK_LOG_INFO;
    cfg->ota_max_image = 16ull * 1024 * 1024;
    cfg->token_lifetime = 86400;
    cfg->refresh_lifetime = 30ul * 86400;
}

static enum fk_err set_uint(const char *name, const char *v, unsigned lo, unsigned hi,
                            unsigned *out, struct fk_diag *diag) {
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (v[0] == '\0' || v[0] == '-' || end == NULL || *end != '\0' || errno != 0 || n < lo ||
        n > hi) {
        return fk_diag_set(diag, FK_E_ARG, "%s: expected an integer in %u..%u, got '%s'", name, lo,
                           hi, v);
    }
    *out = (unsigned)n;
    return FK_OK;
}

static enum fk_err set_str(const char *name, const char *v, char *out, size_t size,
                           struct fk_diag *diag) {
    size_t n = strlen(v);
    if (n >= size) {
        return fk_diag_set(diag, FK_E_TOOBIG, "%s: longer than %zu bytes", name, size - 1);
    }
    memcpy(out, v, n + 1);
    return FK_OK;
}

enum fk_err fk_server_config_set(struct fk_server_config *cfg, const char *name, const char *v,
                                 struct fk_diag *diag) {
    if (strcmp(name, "listen") == 0) {
        return set_str(name, v, cfg->listen, sizeof cfg->listen, diag);
    } else if (strcmp(name, "port") == 0) {
        return set_uint(name, v, 0, 65535, &cfg->port, diag);
    } else if (strcmp(name, "cert") == 0) {
        return set_str(name, v, cfg->cert, sizeof cfg->cert, diag);
    } else if (strcmp(name, "key") == 0) {
        return set_str(name, v, cfg->key, sizeof cfg->key, diag);
    } else if (strcmp(name, "ca") == 0) {
        return set_str(name, v, cfg->ca, sizeof cfg->ca, diag);
    } else if (strcmp(name, "crl") == 0) {
        return set_str(name, v, cfg->crl, sizeof cfg->crl, diag);
    } else if (strcmp(name, "inventory") == 0) {
        return set_str(name, v, cfg->inventory, sizeof cfg->inventory, diag);
    } else if (strcmp(name, "max_connections") == 0) {
        return set_uint(name, v, 1, 1000000, &cfg->max_connections, diag);
    } else if (strcmp(name, "hello_timeout") == 0) {
        return set_uint(name, v, 1, 86400, &cfg->hello_timeout, diag);
    } else if (strcmp(name, "handshake_timeout") == 0) {
        return set_uint(name, v, 1, 3600, &cfg->handshake_timeout, diag);
    } else if (strcmp(name, "ping_interval") == 0) {
        return set_uint(name, v, 1, 3600, &cfg->ping_interval, diag);
    } else if (strcmp(name, "allow_no_crl") == 0) {
        unsigned b = 0;
        enum fk_err rc = set_uint(name, v, 0, 1, &b, diag);
        cfg->allow_no_crl = (int)b;
        return rc;
    } else if (strcmp(name, "status_request") == 0) {
        unsigned b = 0;
        enum fk_err rc = set_uint(name, v, 0, 1, &b, diag);
        cfg->status_request = (int)b;
        return rc;
    } else if (strcmp(name, "oauth_key") == 0) {
        return set_str(name, v, cfg->oauth_key, sizeof cfg->oauth_key, diag);
    } else if (strcmp(name, "token_lifetime") == 0 || strcmp(name, "refresh_lifetime") == 0) {
        /* at least 2 min (the verifier's leeway is 60 s), at most a year */
        unsigned long n = 0;
        if (fk_parse_ulong(v, 366ul * 86400, &n) != FK_OK || n < 120) {
            return fk_diag_set(diag, FK_E_ARG, "%s: expected seconds, 120..31622400, got '%s'",
                               name, v);
        }
        *(name[0] == 't' ? &cfg->token_lifetime : &cfg->refresh_lifetime) = n;
        return FK_OK;
    } else if (strcmp(name, "ota_dir") == 0) {
        return set_str(name, v, cfg->ota_dir, sizeof cfg->ota_dir, diag);
    } else if (strcmp(name, "rot_dir") == 0) {
        return set_str(name, v, cfg->rot_dir, sizeof cfg->rot_dir, diag);
    } else if (strcmp(name, "ca_dir") == 0) {
        return set_str(name, v, cfg->ca_dir, sizeof cfg->ca_dir, diag);
    } else if (strcmp(name, "ca_bundle") == 0) {
        return set_str(name, v, cfg->ca_bundle, sizeof cfg->ca_bundle, diag);
    } else if (strcmp(name, "ota_trial_image") == 0) {
        return set_str(name, v, cfg->ota_trial_image, sizeof cfg->ota_trial_image, diag);
    } else if (strcmp(name, "ota_max_image") == 0) {
        /* ota_begin requires at least 8192 bytes; 4 GiB is far beyond any ESP32 slot. */
        unsigned long n = 0;
        if (fk_parse_ulong(v, 4ul * 1024 * 1024 * 1024, &n) != FK_OK || n < 8192) {
            return fk_diag_set(diag, FK_E_ARG, "%s: expected bytes in 8192..4294967296, got '%s'",
                               name, v);
        }
        cfg->ota_max_image = n;
        return FK_OK;
    } else if (strcmp(name, "log_level") == 0) {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++) {
            if (strcmp(v, names[i]) == 0) {
                cfg->log_level = (enum fk_log_level)i;
                return FK_OK;
            }
        }
        return fk_diag_set(diag, FK_E_ARG, "log_level: expected debug, info, warn or error");
    }
    return fk_diag_set(diag, FK_E_ARG, "unknown setting '%s'", name);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

enum fk_err fk_server_config_load(struct fk_server_config *cfg, const char *path,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *data = NULL;
    size_t len = 0;
    FK_GUARD(fk_file_read(path, 64 * 1024, &data, &len, diag));
    /* A private NUL-terminated copy: the lines are cut in place. */
    char *buf = malloc(len + 1);
    FK_ENSURE(buf != NULL, FK_E_NOMEM);
    memcpy(buf, data, len);
    buf[len] = '\0';
    FK_ENSURE(memchr(buf, '\0', len) == NULL,
              (free(buf), fk_diag_at(diag, FK_E_PARSE, path, 0, "NUL byte in config")));
    char *line = buf;
    unsigned lineno = 0;
    while (line != NULL && *line != '\0') {
        lineno++;
        char *nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        char *l = trim(line);
        if (*l != '\0' && *l != '#') {
            char *eq = strchr(l, '=');
            if (eq == NULL) {
                rc = fk_diag_at(diag, FK_E_PARSE, path, lineno, "expected 'name = value'");
                free(buf);
                goto out;
            }
            *eq = '\0';
            char *name = trim(l);
            char *value = trim(eq + 1);
            struct fk_diag sub;
            fk_diag_init(&sub);
            rc = fk_server_config_set(cfg, name, value, &sub);
            if (rc != FK_OK) {
                rc = fk_diag_at(diag, rc, path, lineno, "%s", sub.msg);
                free(buf);
                goto out;
            }
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(buf);
    rc = FK_OK;
out:
    free(data);
    return rc;
}
