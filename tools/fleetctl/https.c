/* fleetctl's HTTPS client for fleetkey-server's admin API (https.h): URL parsing, one
 * request per mTLS connection, and the JSON accessor the commands print with. The commands
 * (cmd_server.c, cmd_ota.c) sit on top of this file; it calls none of them. */
#include "https.h"

#include "fleetkey/common.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define RESP_MAX (4u * 1024 * 1024) /* the admin API's answer is read up to this size */

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

/* The answer's Content-Type (head: the header block, NUL-terminated) into out; "" without. */
static void content_type(const char *head, char *out, size_t size) {
    out[0] = '\0';
    for (const char *l = strstr(head, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "content-type:", 13) == 0) {
            const char *v = l + 15;
            v += strspn(v, " \t");
            size_t n = strcspn(v, "\r\n");
            if (n < size) {
                memcpy(out, v, n);
                out[n] = '\0';
            }
            return;
        }
    }
}

/* One request with the body read from bf (body_len bytes, of type ctype; bf NULL: none) and,
 * when bearer is non-NULL, an Authorization: Bearer header. Closes bf. rtype (size rtype_size; NULL: not wanted) gets the answer's Content-Type,
 * *blen (NULL: not wanted) the body's length. */
static int https_request(SSL_CTX *ctx, const struct fleetctl_url *u, const char *method,
                         const char *path, FILE *bf, long long body_len, const char *ctype,
                         const char *bearer, unsigned timeout_s, int *status, char **body, char *rtype,
                         size_t rtype_size, size_t *blen_out) {
    int rc = -1;
    SSL *ssl = NULL;
    char *buf = NULL;
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
    char req[4096];
    char auth[2200] = "";
    if (bearer != NULL &&
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", bearer) >= (int)sizeof auth) {
        fprintf(stderr, "fleetctl: access token too long\n");
        goto out;
    }
    int n = bf != NULL ? snprintf(req, sizeof req,
                                  "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                                  "Content-Type: %s\r\nContent-Length: %lld\r\n%s"
                                  "Connection: close\r\nUser-Agent: fleetctl\r\n\r\n",
                                  method, path, u->host, ctype, body_len, auth)
                       : snprintf(req, sizeof req,
                                  "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n%s"
                                  "Connection: close\r\nUser-Agent: fleetctl\r\n\r\n",
                                  method, path, u->host, auth);
    int sent = n > 0 && (size_t)n < sizeof req && SSL_write(ssl, req, n) == n;
    fk_wipe(auth, sizeof auth); /* the token is a secret: not left on the stack */
    fk_wipe(req, sizeof req);
    if (!sent) {
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
    if (rtype != NULL) {
        hend[2] = '\0'; /* the head, each line ending in CRLF */
        content_type(buf, rtype, rtype_size);
    }
    if (blen_out != NULL) {
        *blen_out = blen;
    }
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

int fleetctl_https(SSL_CTX *ctx, const struct fleetctl_url *u, const char *method, const char *path,
                   const char *body_path, unsigned timeout_s, int *status, char **body) {
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
    return https_request(ctx, u, method, path, bf, body_len, "application/octet-stream", NULL,
                         timeout_s, status, body, NULL, 0, NULL);
}

int fleetctl_https_json(SSL_CTX *ctx, const struct fleetctl_url *u, const char *method,
                        const char *path, const char *json, unsigned timeout_s, int *status,
                        char **body) {
    size_t len = strlen(json);
    FILE *bf = len > 0 ? fmemopen((void *)json, len, "rb") : NULL;
    if (len > 0 && bf == NULL) {
        fprintf(stderr, "fleetctl: out of memory\n");
        return -1;
    }
    return https_request(ctx, u, method, path, bf, (long long)len, "application/json", NULL,
                         timeout_s, status, body, NULL, 0, NULL);
}

int fleetctl_https_form(SSL_CTX *ctx, const struct fleetctl_url *u, const char *path,
                        const char *form, unsigned timeout_s, int *status, char **body) {
    size_t len = strlen(form);
    FILE *bf = fmemopen((void *)form, len, "rb");
    if (bf == NULL) {
        fprintf(stderr, "fleetctl: out of memory\n");
        return -1;
    }
    return https_request(ctx, u, "POST", path, bf, (long long)len,
                         "application/x-www-form-urlencoded", NULL, timeout_s, status, body, NULL,
                         0, NULL);
}

int fleetctl_https_bearer(SSL_CTX *ctx, const struct fleetctl_url *u, const char *path,
                          const char *token, unsigned timeout_s, int *status, char **body) {
    return https_request(ctx, u, "GET", path, NULL, 0, NULL, token, timeout_s, status, body, NULL,
                         0, NULL);
}

int fleetctl_https_get(SSL_CTX *ctx, const struct fleetctl_url *u, const char *path,
                       unsigned timeout_s, int *status, char **body, size_t *body_len,
                       char *ctype, size_t ctype_size) {
    return https_request(ctx, u, "GET", path, NULL, 0, NULL, NULL, timeout_s, status, body, ctype,
                         ctype_size, body_len);
}

int fleetctl_take_json(char *body, cJSON **out) {
    *out = cJSON_Parse(body);
    free(body);
    if (*out == NULL) {
        fprintf(stderr, "fleetctl: answer is not JSON\n");
        return -1;
    }
    return 0;
}
