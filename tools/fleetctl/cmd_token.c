/* fleetctl login | token | whoami | logout: OAuth2 tokens from fleetkey-server (docs/oauth.md)
 * kept in an encrypted store (fleetkey/client.h).
 *
 * The client authenticates with the PKCS#12 certificate (RFC 8705 tls_client_auth); its
 * identity name is the client_id. `token` prints the access token to stdout (its purpose:
 * `curl -H "Authorization: Bearer $(fleetctl ... token)"`), refreshing it first when it is
 * within --lead of expiry, one process at a time. Nothing else prints a token; logs name a
 * fingerprint. The clock can be moved for tests with FK_CLOCK_OFFSET_S (seconds added to
 * the time this command sees; the server keeps its own clock). */
#include "server_cmd.h"

#include "fleetkey/client.h"
#include "fleetkey/pki.h"

#include <cjson/cJSON.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int fleetctl_token_cmd(const char *cmd) {
    return strcmp(cmd, "login") == 0 || strcmp(cmd, "token") == 0 || strcmp(cmd, "whoami") == 0 ||
           strcmp(cmd, "logout") == 0;
}

static int usage_token(void) {
    fprintf(
        stderr,
        "usage: fleetctl --p12 F --password-file F --server URL --ca CA\n"
        "         login|token|whoami|logout [--store FILE]\n"
        "         (--store-pass-file F | --store-key-file F) [--scope \"S ...\"] [--lead S]\n"
        "  login    client_credentials grant with the bundle's certificate; tokens to the store\n"
        "  token    print the access token, refreshed first when it expires within --lead\n"
        "           (default 43200 s = 12 h)\n"
        "  whoami   GET /api/whoami with the token\n"
        "  logout   revoke the tokens at the server, then remove the store\n");
    return 2;
}

int fleetctl_token_parse(const char *cmd, int argc, char **argv, struct fleetctl_token_args *a) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->lead_s = FK_CLIENT_LEAD_DEFAULT_S;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "fleetctl %s: %s needs a value\n", cmd, o);
            return usage_token();
        }
        const char *v = argv[++i];
        if (strcmp(o, "--store") == 0) {
            a->store = v;
        } else if (strcmp(o, "--store-pass-file") == 0) {
            a->pass_file = v;
        } else if (strcmp(o, "--store-key-file") == 0) {
            a->key_file = v;
        } else if (strcmp(o, "--scope") == 0 && strcmp(cmd, "login") == 0) {
            unsigned m = 0;
            if (fk_oauth_scope_parse(v, strlen(v), &m) != FK_OK) {
                fprintf(stderr,
                        "fleetctl login: --scope: expected fleet:read, fleet:write, "
                        "robot:command separated by single spaces, got '%s'\n",
                        v);
                return 2;
            }
            a->scope = v;
        } else if (strcmp(o, "--lead") == 0) {
            unsigned long l = 0;
            if (fk_parse_ulong(v, 366ul * 86400, &l) != FK_OK) {
                fprintf(stderr, "fleetctl %s: --lead: expected seconds (0..31622400), got '%s'\n",
                        cmd, v);
                return 2;
            }
            a->lead_s = (long long)l;
        } else {
            fprintf(stderr, "fleetctl %s: unknown option %s\n", cmd, o);
            return usage_token();
        }
    }
    if ((a->pass_file == NULL) == (a->key_file == NULL)) {
        fprintf(stderr,
                "fleetctl %s: give exactly one of --store-pass-file and "
                "--store-key-file (the token store is encrypted)\n",
                cmd);
        return 2;
    }
    return 0;
}

/* The time this command sees: the clock plus FK_CLOCK_OFFSET_S (tests). */
static long long now_s(void) {
    const char *off = getenv("FK_CLOCK_OFFSET_S");
    long long t = (long long)time(NULL);
    if (off != NULL && *off != '\0') {
        char *end = NULL;
        errno = 0;
        long long o = strtoll(off, &end, 10);
        if (errno == 0 && end != off && *end == '\0' && o > -(1LL << 32) && o < (1LL << 32)) {
            t += o;
        }
    }
    return t;
}

/* Appends name=value (value percent-encoded, RFC 3986 unreserved kept) to a form body. */
static int form_add(char *out, size_t size, const char *name, const char *value) {
    size_t o = strlen(out);
    int n = snprintf(out + o, size - o, "%s%s=", o > 0 ? "&" : "", name);
    if (n < 0 || (size_t)n >= size - o) {
        return -1;
    }
    o += (size_t)n;
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if (o + 4 >= size) {
            return -1;
        }
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            o += (size_t)snprintf(out + o, size - o, "%%%02X", *p);
        }
    }
    out[o] = '\0';
    return 0;
}

struct call {
    SSL_CTX *ctx;
    const struct fleetctl_url *u;
    unsigned timeout_s;
};

/* POST form to the token endpoint; on 200 fills *t. diag gets the server's error. */
static enum fk_err token_request(const struct call *c, const char *form, struct fk_client_tokens *t,
                                 struct fk_diag *diag) {
    int status = 0;
    char *body = NULL;
    enum fk_err rc = FK_E_PROTOCOL;
    if (fleetctl_https_form(c->ctx, c->u, "/oauth/token", form, c->timeout_s, &status, &body) !=
        0) {
        return fk_diag_set(diag, FK_E_IO, "no answer from the token endpoint");
    }
    if (status == 200) {
        rc = fk_client_tokens_from_json((const uint8_t *)body, strlen(body), now_s(), t, diag);
    } else {
        cJSON *e = cJSON_Parse(body);
        rc = fk_diag_set(diag, FK_E_AUTH, "token endpoint answered %d: %s: %s", status,
                         fleetctl_jstr(e, "error"), fleetctl_jstr(e, "error_description"));
        cJSON_Delete(e);
    }
    fk_free_secret(body, strlen(body));
    return rc;
}

static enum fk_err do_refresh(void *user, const struct fk_client_tokens *old,
                              struct fk_client_tokens *fresh, struct fk_diag *diag) {
    char form[512] = "";
    enum fk_err rc = FK_E_NOSPACE;
    if (form_add(form, sizeof form, "grant_type", "refresh_token") == 0 &&
        form_add(form, sizeof form, "refresh_token", old->refresh_token) == 0 &&
        form_add(form, sizeof form, "client_id", old->client_id) == 0) {
        rc = token_request(user, form, fresh, diag);
    }
    fk_wipe(form, sizeof form);
    if (rc == FK_OK) {
        memcpy(fresh->client_id, old->client_id, sizeof fresh->client_id);
    }
    return rc;
}

static void print_diag(const char *cmd, const struct fk_diag *d) {
    char msg[800];
    fk_diag_format(d, msg, sizeof msg);
    fprintf(stderr, "fleetctl %s: %s\n", cmd, msg);
}

/* ~/.config/fleetkey/token-store (the directory created 0700). */
static int default_store(char *out, size_t size) {
    const char *home = getenv("HOME");
    char dir[900];
    if (home == NULL || *home == '\0' ||
        snprintf(dir, sizeof dir, "%s/.config/fleetkey", home) >= (int)sizeof dir ||
        fk_mkdirs(dir, 0700, NULL) != FK_OK) {
        fprintf(stderr, "fleetctl: no --store and no usable $HOME/.config/fleetkey\n");
        return -1;
    }
    snprintf(out, size, "%s/token-store", dir);
    return 0;
}

static int login(const struct call *c, const struct fleetctl_token_args *a, const char *store,
                 const struct fk_client_secret *sec) {
    char kind[16], name[FK_OAUTH_NAME_MAX + 1], form[512] = "";
    X509 *x = SSL_CTX_get0_certificate(c->ctx);
    unsigned char *der = NULL;
    int n = x != NULL ? i2d_X509(x, &der) : -1;
    enum fk_err id = n > 0 ? fk_client_cert_identity(der, (size_t)n, kind, name) : FK_E_PARSE;
    OPENSSL_free(der);
    if (id != FK_OK) {
        fprintf(stderr, "fleetctl login: the bundle's certificate has no urn:fleetkey:KIND:NAME "
                        "identity\n");
        return 1;
    }
    struct fk_client_tokens *t = calloc(1, sizeof *t);
    struct fk_diag d;
    fk_diag_init(&d);
    int rc = 1;
    if (t == NULL || form_add(form, sizeof form, "grant_type", "client_credentials") != 0 ||
        form_add(form, sizeof form, "client_id", name) != 0 ||
        (a->scope != NULL && form_add(form, sizeof form, "scope", a->scope) != 0)) {
        goto out;
    }
    if (token_request(c, form, t, &d) != FK_OK) {
        print_diag("login", &d);
        goto out;
    }
    snprintf(t->client_id, sizeof t->client_id, "%s", name);
    if (fk_client_store_write(store, sec, t, &d) != FK_OK) {
        print_diag("login", &d);
        goto out;
    }
    char when[21];
    fk_time_rfc3339(t->expires_at, when);
    printf("logged in as %s %s, scope \"%s\", access token valid until %s; tokens in %s\n", kind,
           name, t->scope, when, store);
    rc = 0;
out:
    fk_free_secret(t, sizeof *t);
    return rc;
}

/* Revokes one token (RFC 7009). 0, or -1 (printed). */
static int revoke(const struct call *c, const char *token, const char *hint) {
    char form[FK_OAUTH_TOKEN_MAX + 128] = "";
    int status = 0;
    char *body = NULL;
    int r = -1;
    if (form_add(form, sizeof form, "token", token) == 0 &&
        form_add(form, sizeof form, "token_type_hint", hint) == 0 &&
        fleetctl_https_form(c->ctx, c->u, "/oauth/revoke", form, c->timeout_s, &status, &body) ==
            0) {
        if (status == 200) {
            r = 0;
        } else {
            fprintf(stderr, "fleetctl logout: revocation answered %d\n", status);
        }
    }
    fk_wipe(form, sizeof form);
    free(body);
    return r;
}

int fleetctl_token_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                       const struct fleetctl_token_args *a) {
    struct call c = {ctx, u, timeout_s};
    struct fk_client_secret sec;
    struct fk_diag d;
    char store[1024];
    char *pw = NULL;
    size_t pw_len = 0;
    int rc = 1;
    struct fk_client_tokens *t = calloc(1, sizeof *t);
    memset(&sec, 0, sizeof sec);
    fk_diag_init(&d);
    if (t == NULL) {
        return 1;
    }
    if (a->store != NULL) {
        snprintf(store, sizeof store, "%s", a->store);
    } else if (default_store(store, sizeof store) != 0) {
        goto out;
    }
    if (a->key_file != NULL) {
        if (fk_client_secret_from_keyfile(a->key_file, &sec, &d) != FK_OK) {
            print_diag(a->cmd, &d);
            goto out;
        }
    } else {
        enum fk_err e = fk_pki_read_secret_file(a->pass_file, &pw, &pw_len, &d);
        if (e == FK_OK) {
            e = fk_client_secret_from_passphrase(pw, pw_len, &sec);
            if (e != FK_OK) {
                fk_diag_at(&d, e, a->pass_file, 0, "expected a non-empty passphrase");
            }
        }
        fk_free_secret(pw, pw_len);
        if (e != FK_OK) {
            print_diag(a->cmd, &d);
            goto out;
        }
    }
    if (strcmp(a->cmd, "login") == 0) {
        rc = login(&c, a, store, &sec);
        goto out;
    }
    if (strcmp(a->cmd, "logout") == 0) {
        if (fk_client_store_read(store, &sec, t, &d) != FK_OK) {
            print_diag("logout", &d);
            goto out;
        }
        /* The refresh token first: it takes its whole family, access tokens included. */
        int r1 = t->refresh_token[0] != '\0' ? revoke(&c, t->refresh_token, "refresh_token") : 0;
        int r2 = revoke(&c, t->access_token, "access_token");
        if (fk_client_store_remove(store, &d) != FK_OK) {
            print_diag("logout", &d);
            goto out;
        }
        if (r1 != 0 || r2 != 0) {
            fprintf(stderr,
                    "fleetctl logout: %s removed, but the server did not confirm the "
                    "revocation: the tokens stay valid there until they expire\n",
                    store);
            goto out;
        }
        printf("logged out: tokens revoked at the server, %s removed\n", store);
        rc = 0;
        goto out;
    }
    int refreshed = 0;
    if (fk_client_token_get(store, &sec, now_s(), a->lead_s, do_refresh, &c, t, &refreshed, &d) !=
        FK_OK) {
        print_diag(a->cmd, &d);
        goto out;
    }
    if (strcmp(a->cmd, "token") == 0) {
        puts(t->access_token);
        rc = 0;
        goto out;
    }
    /* whoami */
    int status = 0;
    char *body = NULL;
    if (fleetctl_https_bearer(ctx, u, "/api/whoami", t->access_token, timeout_s, &status, &body) !=
        0) {
        goto out;
    }
    cJSON *o = cJSON_Parse(body);
    free(body);
    if (status != 200 || o == NULL) {
        fprintf(stderr, "fleetctl whoami: server answered %d: %s\n", status,
                o != NULL ? fleetctl_jstr(o, "error") : "(no detail)");
        cJSON_Delete(o);
        goto out;
    }
    if (json) {
        char *text = cJSON_Print(o);
        if (text != NULL) {
            puts(text);
        }
        cJSON_free(text);
    } else {
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(o, "exp");
        char when[21];
        fk_time_rfc3339(cJSON_IsNumber(exp) ? (long long)exp->valuedouble : 0, when);
        printf("%s %s, scope \"%s\", token valid until %s\n", fleetctl_jstr(o, "kind"),
               fleetctl_jstr(o, "sub"), fleetctl_jstr(o, "scope"), when);
    }
    cJSON_Delete(o);
    rc = 0;
out:
    fk_client_secret_wipe(&sec);
    fk_free_secret(t, sizeof *t);
    return rc;
}
