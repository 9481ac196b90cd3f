/* fleetctl's HTTPS client for fleetkey-server's admin API: a URL, one HTTP/1.1 request over
 * a fresh mTLS connection (the SSL_CTX carries the client identity and the trusted CA), and
 * a JSON accessor. Shared by the commands (cmd_server.c, cmd_ota.c); it knows none of them. */
#ifndef FLEETCTL_HTTPS_H
#define FLEETCTL_HTTPS_H

#include <cjson/cJSON.h>
#include <openssl/ssl.h>

struct fleetctl_url {
    char host[256];
    char port[8];
};

/* "https://HOST[:PORT][/...]" (IPv6 in brackets; port 8443 when absent). 0 or -1. */
int fleetctl_parse_url(const char *s, struct fleetctl_url *u);

/* One HTTP/1.1 request over a fresh mTLS connection: method, path, the file at body_path as
 * the body (streamed with Content-Length; NULL: no body). *status and a malloc'd
 * NUL-terminated *body (the caller frees it) on success. Errors are printed to stderr.
 * 0 or -1. */
int fleetctl_https(SSL_CTX *ctx, const struct fleetctl_url *u, const char *method, const char *path,
                   const char *body_path, unsigned timeout_s, int *status, char **body);

/* The same with json (a NUL-terminated string; "" sends no body) as an application/json body. */
int fleetctl_https_json(SSL_CTX *ctx, const struct fleetctl_url *u, const char *method,
                        const char *path, const char *json, unsigned timeout_s, int *status,
                        char **body);

/* A GET that also returns the answer's length (*body_len) and Content-Type (into ctype, size
 * ctype_size; "" when absent or longer): what `fleetctl dashboard` passes on. Same rules and
 * results as fleetctl_https. */
int fleetctl_https_get(SSL_CTX *ctx, const struct fleetctl_url *u, const char *path,
                       unsigned timeout_s, int *status, char **body, size_t *body_len,
                       char *ctype, size_t ctype_size);
/* POST of an application/x-www-form-urlencoded body form (the OAuth2 endpoints). The body may
 * hold a refresh token: the caller wipes form. */
int fleetctl_https_form(SSL_CTX *ctx, const struct fleetctl_url *u, const char *path,
                        const char *form, unsigned timeout_s, int *status, char **body);

/* GET with Authorization: Bearer token (wiped from the request buffer after sending). */
int fleetctl_https_bearer(SSL_CTX *ctx, const struct fleetctl_url *u, const char *path,
                          const char *token, unsigned timeout_s, int *status, char **body);

/* Parses an answer's body (freed here) into *out (the caller deletes it). 0, or -1 (printed)
 * when it is not JSON. */
int fleetctl_take_json(char *body, cJSON **out);

/* The string member k of o, or "-". */
const char *fleetctl_jstr(const cJSON *o, const char *k);

#endif
