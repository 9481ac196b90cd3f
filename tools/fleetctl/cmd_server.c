/* fleetctl devices / device ID: read the fleet from fleetkey-server's admin API over HTTPS
 * with mutual TLS, the client identity taken from a PKCS#12 bundle (what
 * `provision-keys export-p12` makes, modern or --legacy form).
 *
 * The server verifies our certificate; we verify the server's against --ca and the host (or
 * IP) of --server. The admin API answers operators only (docs/server.md): a mobile bundle gets
 * 403, which is reported as such. The PKCS#12 password is wiped after use, the private key is
 * freed (OpenSSL clears EC keys on free) and never printed. */
#include "https.h"
#include "server_cmd.h"

#include "fleetkey/pki.h"

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: fleetctl --p12 NAME.p12 --password-file F --server https://HOST:PORT\n"
               "                --ca CA.pem [--json] [--timeout S] COMMAND\n"
               "  devices     every device of the inventory: id, state, connected, last seen\n"
               "  device ID   one device with presence, posture and credentials (JSON)\n"
               "  ota (--device ID ... | --all) [--wait S | --no-wait] IMAGE.bin\n"
               "              push a signed update; wait (default 600 s) until every device\n"
               "              confirmed it, refused it, rolled back or failed\n"
               "  ota-status JOB   one update job, per device\n"
               "  rotate plan|start|pause|resume|abort|force|status ...   a credential\n"
               "              rotation plan (fleetctl ... rotate with no argument: usage)\n"
               "  dashboard --listen 127.0.0.1:PORT   serve the fleet dashboard to a local\n"
               "              browser: plain HTTP on loopback, forwarded over mTLS (GET\n"
               "              /dashboard and /api/... only); prints the URL, runs until Ctrl-C\n"
               "  incident ota-key-compromised ...   the emergency path for a leaked OTA\n"
               "              signing key (fleetctl ... incident with no argument: usage)\n"
               "  login|token|whoami|logout (--store-pass-file F | --store-key-file F) ...\n"
               "              OAuth2 tokens in an encrypted store (fleetctl ... login: usage)\n"
               "The identity in NAME.p12 must be an operator certificate (provision-keys\n"
               "export-p12 --operator); the server answers other certificates with 403.\n"
               "exit status: 0 ok, 1 failure (TLS, HTTP error, 403/404/409; ota: a device\n"
               "refused, rolled back or failed; rotate status --wait: the plan aborted or\n"
               "paused), 2 usage, 3 ota / rotate status: --wait ran out\n");
}

/* Loads key, certificate and chain from the bundle into ctx. PKCS#12 files in the legacy
 * form use 3DES, which OpenSSL 3's default provider still has; the legacy provider is
 * loaded only if the default one cannot open the file (RC2-40 bundles from old tools). */
static int load_p12(SSL_CTX *ctx, const char *path, const char *pass) {
    int ok = 0;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    PKCS12 *p12 = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fleetctl: cannot open %s\n", path);
        return -1;
    }
    p12 = d2i_PKCS12_fp(f, NULL);
    fclose(f);
    if (p12 == NULL) {
        fprintf(stderr, "fleetctl: %s is not a PKCS#12 file\n", path);
        return -1;
    }
    if (!PKCS12_parse(p12, pass, &key, &cert, &chain)) {
        ERR_clear_error();
        OSSL_PROVIDER_load(NULL, "legacy");
        OSSL_PROVIDER_load(NULL, "default");
        if (!PKCS12_parse(p12, pass, &key, &cert, &chain)) {
            fprintf(stderr, "fleetctl: %s: wrong password or unsupported PKCS#12\n", path);
            goto out;
        }
    }
    if (key == NULL || cert == NULL || SSL_CTX_use_certificate(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "fleetctl: %s: no usable key and certificate\n", path);
        goto out;
    }
    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        /* Send the issuing CA along; the root (self-issued) the server has already. */
        if (X509_check_issued(c, c) != X509_V_OK) {
            X509_up_ref(c);
            if (SSL_CTX_add_extra_chain_cert(ctx, c) != 1) {
                X509_free(c);
            }
        }
    }
    ok = 1;
out:
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    PKCS12_free(p12);
    return ok ? 0 : -1;
}

static int print_devices(const char *body) {
    cJSON *root = cJSON_Parse(body);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "devices");
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(root);
        fprintf(stderr, "fleetctl: unexpected answer from the server\n");
        return 1;
    }
    printf("%-24s %-12s %-9s %-21s %s\n", "ID", "STATE", "CONNECTED", "LAST SEEN", "FIRMWARE");
    const cJSON *d = NULL;
    cJSON_ArrayForEach(d, arr) {
        printf("%-24s %-12s %-9s %-21s %s\n", fleetctl_jstr(d, "id"), fleetctl_jstr(d, "state"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "connected")) ? "yes" : "no",
               fleetctl_jstr(d, "last_seen"), fleetctl_jstr(d, "firmware_version"));
    }
    cJSON_Delete(root);
    return 0;
}

int fleetctl_server_main(int argc, char **argv) {
    const char *p12 = NULL, *pwfile = NULL, *server = NULL, *ca = NULL;
    unsigned timeout_s = 10;
    int json = 0;
    int i = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fleetctl: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--p12") == 0) {
            p12 = v;
        } else if (strcmp(a, "--password-file") == 0) {
            pwfile = v;
        } else if (strcmp(a, "--server") == 0) {
            server = v;
        } else if (strcmp(a, "--ca") == 0) {
            ca = v;
        } else if (strcmp(a, "--timeout") == 0) {
            char *end = NULL;
            unsigned long t = strtoul(v, &end, 10);
            if (end == NULL || *end != '\0' || t < 1 || t > 300) {
                fprintf(stderr, "fleetctl: --timeout: expected 1..300 seconds\n");
                return 2;
            }
            timeout_s = (unsigned)t;
        } else {
            fprintf(stderr, "fleetctl: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    const char *cmd = i < argc ? argv[i] : "";
    const char *id = i + 1 < argc ? argv[i + 1] : NULL;
    struct fleetctl_url u;
    struct fleetctl_ota_args ota;
    struct fleetctl_rotate_args rot;
    struct fleetctl_dash_args dash;
    struct fleetctl_incident_args inc;
    char path[128];
    int is_ota = strcmp(cmd, "ota") == 0 || strcmp(cmd, "ota-status") == 0;
    int is_rot = strcmp(cmd, "rotate") == 0;
    int is_dash = strcmp(cmd, "dashboard") == 0;
    int is_inc = strcmp(cmd, "incident") == 0;
    int is_tok = fleetctl_token_cmd(cmd);
    struct fleetctl_token_args tok;
    memset(&ota, 0, sizeof ota);
    memset(&rot, 0, sizeof rot);
    memset(&inc, 0, sizeof inc);
    if (is_dash) {
        int urc = fleetctl_dashboard_parse(argc - i - 1, argv + i + 1, &dash);
        if (urc != 0) {
            return urc;
        }
    } else if (is_inc) {
        int urc = fleetctl_incident_parse(argc - i - 1, argv + i + 1, &inc);
        if (urc != 0) {
            free(inc.force);
            return urc;
        }
    } else if (is_tok) {
        int urc = fleetctl_token_parse(cmd, argc - i - 1, argv + i + 1, &tok);
        if (urc != 0) {
            return urc;
        }
    } else if (is_rot) {
        int urc = fleetctl_rotate_parse(argc - i - 1, argv + i + 1, &rot);
        if (urc != 0) {
            free(rot.devices);
            return urc;
        }
    } else if (is_ota) {
        int urc = fleetctl_ota_parse(cmd, argc - i - 1, argv + i + 1, &ota);
        if (urc != 0) {
            free(ota.devices);
            return urc;
        }
    } else if (strcmp(cmd, "devices") == 0 && i + 1 == argc) {
        snprintf(path, sizeof path, "/api/devices");
    } else if (strcmp(cmd, "device") == 0 && id != NULL && i + 2 == argc && fk_pki_name_valid(id)) {
        snprintf(path, sizeof path, "/api/devices/%s", id);
    } else {
        usage(stderr);
        return 2;
    }
    if (p12 == NULL || pwfile == NULL || server == NULL || ca == NULL ||
        fleetctl_parse_url(server, &u) != 0) {
        fprintf(stderr, "fleetctl: need --p12, --password-file, --server https://HOST:PORT and "
                        "--ca\n");
        free(ota.devices);
        free(rot.devices);
        free(inc.force);
        return 2;
    }

    int rc = 1;
    char *pw = NULL;
    size_t pw_len = 0;
    char *body = NULL;
    int status = 0;
    struct fk_diag d;
    fk_diag_init(&d);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        free(ota.devices);
        free(rot.devices);
        free(inc.force);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        fprintf(stderr, "fleetctl: cannot load CA certificates from %s\n", ca);
        goto out;
    }
    if (fk_pki_read_secret_file(pwfile, &pw, &pw_len, &d) != FK_OK) {
        char msg[600];
        fk_diag_format(&d, msg, sizeof msg);
        fprintf(stderr, "fleetctl: %s\n", msg);
        goto out;
    }
    int loaded = load_p12(ctx, p12, pw);
    fk_free_secret(pw, pw_len);
    pw = NULL;
    if (loaded != 0) {
        goto out;
    }
    if (is_ota) {
        rc = fleetctl_ota_run(ctx, &u, timeout_s, json, &ota);
        goto out;
    }
    if (is_rot) {
        rc = fleetctl_rotate_run(ctx, &u, timeout_s, json, &rot);
        goto out;
    }
    if (is_dash) {
        rc = fleetctl_dashboard_run(ctx, &u, timeout_s, &dash);
        goto out;
    }
    if (is_inc) {
        rc = fleetctl_incident_run(ctx, &u, timeout_s, json, &inc);
        goto out;
    }
    if (is_tok) {
        rc = fleetctl_token_run(ctx, &u, timeout_s, json, &tok);
        goto out;
    }
    if (fleetctl_https(ctx, &u, "GET", path, NULL, timeout_s, &status, &body) != 0) {
        goto out;
    }
    if (status != 200) {
        cJSON *e = cJSON_Parse(body);
        fprintf(stderr, "fleetctl: server answered %d: %s\n", status,
                e != NULL ? fleetctl_jstr(e, "error") : "(no detail)");
        cJSON_Delete(e);
        goto out;
    }
    if (json || strcmp(cmd, "device") == 0) {
        cJSON *o = cJSON_Parse(body);
        char *pretty = o != NULL ? cJSON_Print(o) : NULL;
        if (pretty == NULL) {
            fprintf(stderr, "fleetctl: answer is not JSON\n");
            cJSON_Delete(o);
            goto out;
        }
        puts(pretty);
        cJSON_free(pretty);
        cJSON_Delete(o);
        rc = 0;
    } else {
        rc = print_devices(body);
    }
out:
    free(ota.devices);
    free(rot.devices);
    free(inc.force);
    free(body);
    SSL_CTX_free(ctx);
    return rc;
}
