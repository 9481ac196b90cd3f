/* The request side of `fleetctl dashboard` (dash_req.c): parse what a browser sends to the
 * local proxy and decide whether it may be forwarded to fleetkey-server with the operator's
 * identity. Pure: no I/O, no allocation; tested by tests/unit/test_fleetctl_dash.c and
 * tests/fuzz/fuzz_dash_req.c.
 *
 * The proxy holds an operator certificate, so it forwards as little as possible: GET of the
 * dashboard's files and of the read-only admin API, with a target made of a small set of
 * characters (no "%", no dot segments: the server never sees a path that could be normalised
 * into another route), sent to the Host the proxy listens as (a web page on another origin
 * that rebinds its name to 127.0.0.1 is refused). */
#ifndef FLEETCTL_DASH_REQ_H
#define FLEETCTL_DASH_REQ_H

#include <stddef.h>

#define FLEETCTL_DASH_HEAD_MAX 8192 /* a request head larger than this is refused */
#define FLEETCTL_DASH_TARGET_MAX 512

struct fleetctl_dash_req {
    char method[16];
    char target[FLEETCTL_DASH_TARGET_MAX]; /* path and query, as sent */
    char host[256];                        /* the Host header, "" when absent */
    size_t head_len;                       /* bytes of the head, the blank line included */
};

enum fleetctl_dash_parse {
    FLEETCTL_DASH_OK = 0,        /* a complete head is in *out */
    FLEETCTL_DASH_MORE = 1,      /* no blank line yet: read more (while len < HEAD_MAX) */
    FLEETCTL_DASH_MALFORMED = -1 /* not an HTTP/1.x request head, or too large */
};

/* Parses the request head at the start of buf (len bytes; need not be NUL-terminated, nothing
 * past len is read). Request line "METHOD SP TARGET SP HTTP/1.0|1.1 CRLF" (bare LF accepted),
 * then header lines up to an empty line; of them only Host is kept (a second Host is
 * malformed). A method over 15 bytes, a target over FLEETCTL_DASH_TARGET_MAX - 1 bytes or with
 * a control character or a space, a header line without a colon: malformed. */
enum fleetctl_dash_parse fleetctl_dash_parse(const char *buf, size_t len,
                                             struct fleetctl_dash_req *out);

/* What the proxy answers r with: 0 forward it; 302 "/" (to /dashboard); 400 a target with a
 * character outside [A-Za-z0-9-._~/?=&] or a dot segment; 403 Host is not one of the allowed
 * names (host_ok: "127.0.0.1:8080", host_alt: "localhost:8080"; either may be NULL); 404 a
 * path other than /dashboard, /dashboard/..., /api/...; 405 a method other than GET. */
int fleetctl_dash_decide(const struct fleetctl_dash_req *r, const char *host_ok,
                         const char *host_alt);

#endif
