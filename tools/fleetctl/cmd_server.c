/* fleetctl devices / device ID: read the fleet from fleetkey-server's admin API over HTTPS
 * with mutual TLS, the client identity taken from a PKCS#12 bundle (what
 * `provision-keys export-p12` makes, modern or --legacy form).
 *
 * The server verifies our certificate; we verify the server's against --ca and the host (or
 * IP) of --server. The admin API answers operators only (docs/server.md): a mobile bundle gets
 * 403, which is reported as such. The PKCS#12 password is wiped after use, the private key is
 * freed (OpenSSL clears EC keys on free) and never printed. */
#include "server_cmd.h"

#include "fleetkey/pki.h"

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define RESP_MAX (4u * 1024 * 1024) /* the admin API's answer is read up to this size */

static void usage(FILE *f) {
    fprintf(f, "usage: fleetctl --p12 NAME.p12 --password-file F --server https://HOST:PORT\n"
               "                --ca CA.pem [--json] [--timeout S] COMMAND\n"
               "  devices     every device of the inventory: id, state, connected, last seen\n"
               "  device ID   one device with presence, posture and credentials (JSON)\n"
               "  ota (--device ID ... | --all) [--wait S | --no-wait] IMAGE.bin\n"
               "              push a signed update; wait (default 600 s) until every device\n"
               "              confirmed it, refused it, rolled back or failed\n"
               "  ota-status JOB   one update job, per device\n"
               "The identity in NAME.p12 must be an operator certificate (provision-keys\n"
               "export-p12 --operator); the server answers other certificates with 403.\n"
               "exit status: 0 ok, 1 failure (TLS, HTTP error, 403/404/409; ota: a device\n"
               "refused, rolled back or failed), 2 usage, 3 ota: --wait ran out\n");
}

int fleetctl_parse_url(const char *s, struct fleetctl_url *u) {
    if (strncmp(s, "https://", 8) != 0) {
        return -1;
    }
    s += 8;
    const char *end = s + strcspn(s, "/");
    const char *colon = NULL;
    if (*s == '[') { /* [v6]:port */
        const char *rb = memchr(s, ']', (size_t)(end - s));
        if (rb == NULL) {
            return -1;
        }
        if ((size_t)(rb - s - 1) >= sizeof u->host) {
            return -1;
        }
        memcpy(u->host, s + 1, (size_t)(rb - s - 1));
        u->host[rb - s - 1] = '\0';
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(s, ':', (size_t)(end - s));
        const char *hend = colon != NULL ? colon : end;
        if (hend == s || (size_t)(hend - s) >= sizeof u->host) {
            return -1;
        }
        memcpy(u->host, s, (size_t)(hend - s));
        u->host[hend - s] = '\0';
    }
    if (colon != NULL) {
        size_t n = (size_t)(end - colon - 1);
        if (n == 0 || n >= sizeof u->port) {
            return -1;
        }
        memcpy(u->port, colon + 1, n);
        u->port[n] = '\0';
    } else {
        snprintf(u->port, sizeof u->port, "8443");
    }
    return 0;
}

static int tcp_connect(const struct fleetctl_url *u, unsigned timeout_s) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &res) != 0) {
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        struct timeval tv = {(time_t)timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
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

/* Streams the file at body_path as the request body. The server may answer before the body
 * is in (403, 413, a refused target): sending stops as soon as an answer is readable, and a
 * failed write is not an error by itself (the answer says what happened). */
static void send_body(SSL *ssl, int fd, FILE *f) {
    static uint8_t chunk[64 * 1024];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (SSL_pending(ssl) > 0 || poll(&pfd, 1, 0) > 0) {
            return;
        }
        for (size_t off = 0; off < n;) {
            int w = SSL_write(ssl, chunk + off, (int)(n - off));
            if (w <= 0) {
                return;
            }
            off += (size_t)w;
        }
    }
}

int fleetctl_https(SSL_CTX *ctx, const struct fleetctl_url *u, const char *method, const char *path,
                   const char *body_path, unsigned timeout_s, int *status, char **body) {
    int rc = -1;
    SSL *ssl = NULL;
    char *buf = NULL;
    FILE *bf = NULL;
    long long body_len = 0;
    if (body_path != NULL) {
        struct stat sb;
        bf = fopen(body_path, "rb");
        if (bf == NULL || fstat(fileno(bf), &sb) != 0 || !S_ISREG(sb.st_mode)) {
            fprintf(stderr, "fleetctl: cannot read %s\n", body_path);
            if (bf != NULL) {
                fclose(bf);
            }
            return -1;
        }
        body_len = (long long)sb.st_size;
    }
    int fd = tcp_connect(u, timeout_s);
    if (fd < 0) {
        fprintf(stderr, "fleetctl: cannot connect to %s:%s\n", u->host, u->port);
        if (bf != NULL) {
            fclose(bf);
        }
        return -1;
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL) {
        goto out;
    }
    SSL_set_fd(ssl, fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    /* An IP address is checked against the certificate's IP SANs, a name against its DNS
     * SANs (RFC 6125). */
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1) {
        SSL_set1_host(ssl, u->host);
        SSL_set_tlsext_host_name(ssl, u->host);
    }
    if (SSL_connect(ssl) != 1) {
        unsigned long e = ERR_get_error();
        long v = SSL_get_verify_result(ssl);
        fprintf(stderr, "fleetctl: TLS handshake with %s:%s failed: %s%s%s\n", u->host, u->port,
                e != 0 ? ERR_reason_error_string(e) : "connection closed",
                v != X509_V_OK ? ", server certificate: " : "",
                v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
        goto out;
    }
    char req[1024];
    int n = bf != NULL
                ? snprintf(req, sizeof req,
                           "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                           "Content-Type: application/octet-stream\r\nContent-Length: %lld\r\n"
                           "Connection: close\r\nUser-Agent: fleetctl\r\n\r\n",
                           method, path, u->host, body_len)
                : snprintf(req, sizeof req,
                           "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                           "Connection: close\r\nUser-Agent: fleetctl\r\n\r\n",
                           method, path, u->host);
    if (n <= 0 || (size_t)n >= sizeof req || SSL_write(ssl, req, n) != n) {
        fprintf(stderr, "fleetctl: request failed (the server refused our certificate?)\n");
        goto out;
    }
    if (bf != NULL) {
        send_body(ssl, fd, bf);
    }
    buf = malloc(RESP_MAX + 1);
    if (buf == NULL) {
        goto out;
    }
    size_t len = 0;
    for (;;) {
        if (len == RESP_MAX) {
            fprintf(stderr, "fleetctl: answer larger than %u bytes\n", RESP_MAX);
            goto out;
        }
        int r = SSL_read(ssl, buf + len, (int)(RESP_MAX - len));
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (len == 0) {
        unsigned long e = ERR_get_error();
        fprintf(stderr, "fleetctl: no answer from %s:%s: %s\n", u->host, u->port,
                e != 0 ? ERR_reason_error_string(e) : "connection closed");
        goto out;
    }
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        fprintf(stderr, "fleetctl: not an HTTP answer\n");
        goto out;
    }
    char *hend = strstr(buf, "\r\n\r\n");
    if (hend == NULL) {
        fprintf(stderr, "fleetctl: truncated HTTP answer\n");
        goto out;
    }
    size_t blen = len - (size_t)(hend + 4 - buf);
    memmove(buf, hend + 4, blen);
    buf[blen] = '\0';
    *body = buf;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    if (bf != NULL) {
        fclose(bf);
    }
    if (ssl != NULL) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return rc;
}

const char *fleetctl_jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "-";
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
    char path[128];
    int is_ota = strcmp(cmd, "ota") == 0 || strcmp(cmd, "ota-status") == 0;
    memset(&ota, 0, sizeof ota);
    if (is_ota) {
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
    free(body);
    SSL_CTX_free(ctx);
    return rc;
}
