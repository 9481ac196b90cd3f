/* sdkconfig parser and the development-only MINITRAIN_* environment overrides (fkd/config.h).
 *
 * The parser is table-driven: each known CONFIG_ name maps to a field and a kind; every other
 * CONFIG_ line is still checked for syntax (a malformed line anywhere means a broken file) and
 * then ignored, as ESP-IDF ignores options of components it does not build. Values are
 * unescaped straight into their bounded field; nothing is allocated. */
#include "fkd/config.h"

#include <string.h>

enum kind { K_STR, K_BOOL, K_PORT };

struct opt {
    const char *name;
    enum kind kind;
    size_t off;  /* field offset in struct fkd_config */
    size_t size; /* field size (strings) */
    int str_id;  /* enum fkd_cfg_str or -1 */
};

#define STR_OPT(n, field, id)                                                                  \
    { n, K_STR, offsetof(struct fkd_config, field), sizeof(((struct fkd_config *)0)->field), id }
#define BOOL_OPT(n, field) {n, K_BOOL, offsetof(struct fkd_config, field), sizeof(int), -1}

static const struct opt opts[] = {
    STR_OPT("CONFIG_MINITRAIN_WSS_URI", wss_uri, FKD_CFG_WSS_URI),
    STR_OPT("CONFIG_MINITRAIN_EXPECTED_HOST", expected_host, FKD_CFG_EXPECTED_HOST),
    STR_OPT("CONFIG_MINITRAIN_CA_CERT_PEM", ca_cert_pem, FKD_CFG_CA_CERT_PEM),
    STR_OPT("CONFIG_MINITRAIN_CLIENT_CERT_PEM", client_cert_pem, FKD_CFG_CLIENT_CERT_PEM),
    STR_OPT("CONFIG_MINITRAIN_CLIENT_KEY_PEM", client_key_pem, FKD_CFG_CLIENT_KEY_PEM),
    STR_OPT("CONFIG_WIFI_SSID", wifi_ssid, FKD_CFG_WIFI_SSID),
    STR_OPT("CONFIG_WIFI_PASSWORD", wifi_password, FKD_CFG_WIFI_PASSWORD),
    BOOL_OPT("CONFIG_PRODUCTION_BUILD", production_build),
    BOOL_OPT("CONFIG_NVS_ENCRYPTION", nvs_encryption),
    BOOL_OPT("CONFIG_SECURE_BOOT_V2_ENABLED", secure_boot_v2),
    {"CONFIG_MINITRAIN_DTLS_PORT", K_PORT, offsetof(struct fkd_config, dtls_port), 0, -1},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static const char *const env_names[FKD_CFG_STR_COUNT] = {
    "MINITRAIN_WSS_URI", "MINITRAIN_EXPECTED_HOST", "MINITRAIN_CA_CERT_PEM",
    "MINITRAIN_CLIENT_CERT_PEM", "MINITRAIN_CLIENT_KEY_PEM", NULL, NULL,
};

void fkd_config_init(struct fkd_config *c) {
    memset(c, 0, sizeof *c);
    c->dtls_port = FKD_DTLS_DEFAULT_PORT;
}

void fkd_config_free(struct fkd_config *c) {
    if (c == NULL) {
        return;
    }
    fkd_wipe(c->client_key_pem, sizeof c->client_key_pem);
    fkd_wipe(c->wifi_password, sizeof c->wifi_password);
}

static const struct opt *find_opt(const char *name, size_t len) {
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

static int name_char(char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

static int is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Parses a decimal or 0x-hex number filling all of (p, len). */
static int parse_num(const char *p, size_t len, unsigned long *out) {
    unsigned long v = 0;
    size_t i = 0;
    unsigned base = 10;
    if (len > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        i = 2;
    }
    if (i == len) {
        return 0;
    }
    for (; i < len; i++) {
        unsigned d;
        char ch = p[i];
        if (ch >= '0' && ch <= '9') {
            d = (unsigned)(ch - '0');
        } else if (base == 16 && ch >= 'a' && ch <= 'f') {
            d = (unsigned)(ch - 'a' + 10);
        } else if (base == 16 && ch >= 'A' && ch <= 'F') {
            d = (unsigned)(ch - 'A' + 10);
        } else {
            return 0;
        }
        if (v > (0xFFFFFFFFul - d) / base) {
            return 0;
        }
        v = v * base + d;
    }
    *out = v;
    return 1;
}

/* Unescapes the quoted value starting after the opening quote at v[0..len) into dst (NULL:
 * syntax check only). Returns FKD_OK and *used (bytes consumed including the closing quote). */
static enum fkd_err unquote(const char *v, size_t len, char *dst, size_t dst_size, size_t *used,
                            const char **msg) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if (ch == '"') {
            if (dst != NULL) {
                dst[o] = '\0';
            }
            *used = i + 1;
            return FKD_OK;
        }
        if (ch == '\\') {
            if (i + 1 >= len) {
                break;
            }
            char e = v[++i];
            /* Kconfig writes \" and \\ in strings; PEM bodies carry \n, which sdkconfig.h turns
             * into a newline inside the C string literal. */
            if (e == 'n') {
                ch = '\n';
            } else if (e == '"' || e == '\\') {
                ch = e;
            } else {
                *msg = "bad escape (only \\\" \\\\ \\n are allowed)";
                return FKD_E_PARSE;
            }
        }
        if (dst != NULL) {
            if (o + 1 >= dst_size) {
                *msg = "value too long";
                return FKD_E_RANGE;
            }
            dst[o++] = ch;
        }
    }
    *msg = "unterminated quoted string";
    return FKD_E_PARSE;
}

static enum fkd_err parse_line(struct fkd_config *c, const char *l, size_t len,
                               const char **msg) {
    while (len > 0 && is_space(l[len - 1])) {
        len--;
    }
    while (len > 0 && is_space(l[0])) {
        l++;
        len--;
    }
    if (len == 0) {
        return FKD_OK;
    }
    if (l[0] == '#') {
        /* "# CONFIG_Z is not set" is how menuconfig writes a disabled bool. */
        static const char suffix[] = " is not set";
        const size_t sl = sizeof suffix - 1;
        if (len > 2 + sl && memcmp(l, "# ", 2) == 0 && memcmp(l + len - sl, suffix, sl) == 0) {
            const struct opt *o = find_opt(l + 2, len - 2 - sl);
            if (o != NULL && o->kind == K_BOOL) {
                *(int *)((char *)c + o->off) = 0;
            }
        }
        return FKD_OK;
    }
    const char *eq = memchr(l, '=', len);
    if (eq == NULL) {
        *msg = "expected CONFIG_NAME=value";
        return FKD_E_PARSE;
    }
    size_t nlen = (size_t)(eq - l);
    if (nlen <= 7 || memcmp(l, "CONFIG_", 7) != 0) {
        *msg = "name must start with CONFIG_";
        return FKD_E_PARSE;
    }
    for (size_t i = 0; i < nlen; i++) {
        if (!name_char(l[i])) {
            *msg = "bad character in name";
            return FKD_E_PARSE;
        }
    }
    const char *v = eq + 1;
    size_t vlen = len - nlen - 1;
    const struct opt *o = find_opt(l, nlen);
    if (vlen > 0 && v[0] == '"') {
        size_t used = 0;
        char *dst = NULL;
        size_t dsize = 0;
        if (o != NULL && o->kind == K_STR) {
            dst = (char *)c + o->off;
            dsize = o->size;
        } else if (o != NULL) {
            *msg = "expected y, n or a number, not a string";
            return FKD_E_PARSE;
        }
        enum fkd_err rc = unquote(v + 1, vlen - 1, dst, dsize, &used, msg);
        if (rc != FKD_OK) {
            if (dst != NULL) {
                fkd_wipe(dst, dsize);
            }
            return rc;
        }
        for (size_t i = 1 + used; i < vlen; i++) {
            if (!is_space(v[i])) {
                if (dst != NULL) {
                    fkd_wipe(dst, dsize);
                }
                *msg = "text after the closing quote";
                return FKD_E_PARSE;
            }
        }
        if (o != NULL) {
            c->source[o->str_id] = FKD_CFG_SDKCONFIG;
        }
        return FKD_OK;
    }
    if (o == NULL) {
        return FKD_OK; /* an option of another component */
    }
    if (o->kind == K_STR) {
        *msg = "string value must be quoted";
        return FKD_E_PARSE;
    }
    if (o->kind == K_BOOL) {
        if (vlen == 1 && (v[0] == 'y' || v[0] == 'n')) {
            *(int *)((char *)c + o->off) = v[0] == 'y';
            return FKD_OK;
        }
        *msg = "expected y or n";
        return FKD_E_PARSE;
    }
    unsigned long port;
    if (!parse_num(v, vlen, &port)) {
        *msg = "expected a number";
        return FKD_E_PARSE;
    }
    if (port == 0 || port > 65535) {
        *msg = "port out of range 1..65535";
        return FKD_E_RANGE;
    }
    c->dtls_port = (uint16_t)port;
    return FKD_OK;
}

enum fkd_err fkd_config_parse(struct fkd_config *c, const char *buf, size_t len,
                              struct fkd_cfg_diag *diag) {
    unsigned line = 0;
    size_t pos = 0;
    if (c == NULL || (buf == NULL && len > 0)) {
        return FKD_E_ARG;
    }
    while (pos < len) {
        line++;
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t llen = nl != NULL ? (size_t)(nl - (buf + pos)) : len - pos;
        const char *msg = "malformed line";
        if (memchr(buf + pos, '\0', llen) != NULL) {
            if (diag != NULL) {
                diag->line = line;
                diag->msg = "NUL byte in line";
            }
            return FKD_E_PARSE;
        }
        enum fkd_err rc = parse_line(c, buf + pos, llen, &msg);
        if (rc != FKD_OK) {
            if (diag != NULL) {
                diag->line = line;
                diag->msg = msg;
            }
            return rc;
        }
        pos += llen + (nl != NULL ? 1 : 0);
    }
    return FKD_OK;
}

/* Appends " name" (no leading space when first) to the bounded list of ignored variables. */
static void note_ignored(char *list, size_t size, size_t *len, const char *name) {
    size_t nl = strlen(name);
    if (*len + nl + 2 >= size) {
        return;
    }
    if (*len > 0) {
        list[(*len)++] = ' ';
    }
    memcpy(list + *len, name, nl + 1);
    *len += nl;
}

enum fkd_err fkd_config_apply_env(struct fkd_config *c, fkd_getenv_fn *getenv_fn, void *user) {
    if (c == NULL || getenv_fn == NULL) {
        return FKD_E_ARG;
    }
    char ignored[FKD_LOG_LINE_MAX];
    size_t il = 0;
    ignored[0] = '\0';
    for (int i = 0; i < FKD_CFG_STR_COUNT; i++) {
        const char *name = env_names[i];
        const char *v = name != NULL ? getenv_fn(user, name) : NULL;
        if (v == NULL) {
            continue;
        }
        if (c->production_build) {
            /* Seed 004: production enforces; env overrides are a development convenience. */
            note_ignored(ignored, sizeof ignored, &il, name);
            continue;
        }
        const struct opt *o = &opts[i];
        size_t vl = strlen(v);
        if (vl + 1 > o->size) {
            fkd_log(FKD_LOG_ERROR, "config: %s is too long (%zu bytes, at most %zu)", name, vl,
                    o->size - 1);
            return FKD_E_RANGE;
        }
        char *dst = (char *)c + o->off;
        fkd_wipe(dst, o->size);
        memcpy(dst, v, vl + 1);
        c->source[i] = FKD_CFG_ENV;
    }
    const char *port = getenv_fn(user, "MINITRAIN_DTLS_PORT");
    if (port != NULL) {
        if (c->production_build) {
            note_ignored(ignored, sizeof ignored, &il, "MINITRAIN_DTLS_PORT");
        } else {
            unsigned long p;
            if (!parse_num(port, strlen(port), &p) || p == 0 || p > 65535) {
                fkd_log(FKD_LOG_ERROR, "config: MINITRAIN_DTLS_PORT is not a port number");
                return FKD_E_RANGE;
            }
            c->dtls_port = (uint16_t)p;
        }
    }
    if (il > 0) {
        c->env_ignored = 1;
        fkd_log(FKD_LOG_WARN, "config: production build: ignoring environment overrides %s",
                ignored);
    }
    return FKD_OK;
}

const char *fkd_config_str_name(enum fkd_cfg_str which) {
    if ((unsigned)which >= FKD_CFG_STR_COUNT) {
        return "?";
    }
    return opts[which].name;
}

const char *fkd_config_env_name(enum fkd_cfg_str which) {
    if ((unsigned)which >= FKD_CFG_STR_COUNT) {
        return NULL;
    }
    return env_names[which];
}

const char *fkd_config_get_str(const struct fkd_config *c, enum fkd_cfg_str which) {
    if ((unsigned)which >= FKD_CFG_STR_COUNT) {
        return "";
    }
    return (const char *)c + opts[which].off;
}

const char *fkd_cfg_source_name(enum fkd_cfg_source s) {
    switch (s) {
    case FKD_CFG_DEFAULT:
        return "default";
    case FKD_CFG_SDKCONFIG:
        return "sdkconfig";
    case FKD_CFG_ENV:
        return "env";
    }
    return "?";
}
