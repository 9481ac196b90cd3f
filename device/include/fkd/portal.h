/* The Wi-Fi re-provisioning portal (seed 004: "Network access | Captive portal re-provision").
 *
 * A robot without a working Wi-Fi credential opens a soft-AP and serves one small HTTP page
 * with a form for the SSID and password; what the user posts is validated (IEEE 802.11 rules)
 * and written to NVS (wifi/ssid, wifi/password), and the robot leaves portal mode. This file
 * holds the device side of that, transport-free: the HTTP/1.1 request parser, the form decoder,
 * the credential rules, the power-loss-safe NVS write, and the request handler that ties them
 * together into a response. The socket (lwIP on the chip, a loopback listener in robot-sim)
 * belongs to the port.
 *
 * Parsers take (buf, len), never allocate and return slices into buf; every length is checked
 * against what remains. The handler writes into a caller buffer. The password is a secret: it
 * is never logged (only the SSID and a fingerprint of the password) and every copy the handler
 * makes is wiped before it returns. Thread safety: none (one request at a time). */
#ifndef FKD_PORTAL_H
#define FKD_PORTAL_H

#include "fkd/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fkd_nvs;

#define FKD_PORTAL_REQ_MAX 2048u  /* request line + headers + body: a form of two fields */
#define FKD_PORTAL_RESP_MAX 2048u /* the largest response (the form page) fits */
#define FKD_PORTAL_HEADERS_MAX 32u
#define FKD_WIFI_SSID_MAX 32u /* IEEE 802.11: SSID of 0..32 octets (0 is the wildcard) */
#define FKD_WIFI_PASS_MAX 64u /* IEEE 802.11i: 8..63 ASCII passphrase, or 64 hex digits */

/* A slice of the parsed buffer. */
struct fkd_slice {
    const uint8_t *p;
    size_t len;
};

/* An HTTP/1.0 or 1.1 request head (RFC 9112). Slices point into the parsed buffer. */
struct fkd_http_req {
    struct fkd_slice method;
    struct fkd_slice target; /* origin-form: starts with '/' */
    struct fkd_slice content_type;
    size_t content_length; /* 0 without the header */
    size_t head_len;       /* bytes up to and including the empty line */
};

/* Parses a request head: request line, header fields, CRLF CRLF. Strict: CRLF line endings,
 * no obs-fold, token header names, a method of token characters, an origin-form target of
 * visible ASCII, version HTTP/1.0 or HTTP/1.1, at most FKD_PORTAL_HEADERS_MAX fields,
 * Content-Length of digits only (repeated only with the same value) and at most max_body, and
 * no Transfer-Encoding (a body whose length the parser cannot bound is refused, which also
 * closes the door on request smuggling). Does not need the body to be complete: the caller
 * checks head_len + content_length <= len.
 * FKD_OK; FKD_E_TRUNCATED (no empty line yet: read more, or the request is too large);
 * FKD_E_PARSE (malformed); FKD_E_RANGE (Content-Length over max_body); FKD_E_UNSUPPORTED
 * (Transfer-Encoding, or another HTTP version). */
FKD_MUST_CHECK enum fkd_err fkd_http_req_parse(const uint8_t *buf, size_t len, size_t max_body,
                                               struct fkd_http_req *out);

/* Finds field name in an application/x-www-form-urlencoded body and decodes it ('+' is a
 * space, %XX a byte) into out (out_size bytes; NUL-terminated; *out_len excludes the NUL).
 * A name that appears twice is refused: the portal cannot tell which one the user meant.
 * FKD_OK; FKD_E_NOTFOUND; FKD_E_PARSE (bad %-escape, a decoded NUL byte, or the name twice);
 * FKD_E_NOSPACE (the value does not fit). out is wiped on failure. */
FKD_MUST_CHECK enum fkd_err fkd_form_get(const uint8_t *body, size_t len, const char *name,
                                         char *out, size_t out_size, size_t *out_len);

/* IEEE 802.11 rules: SSID of 1..32 octets (the 0-length wildcard is not a network); a WPA2
 * passphrase of 8..63 printable ASCII characters (0x20..0x7e, IEEE 802.11i-2004 H.4.1) or a
 * raw PSK of exactly 64 hexadecimal digits. FKD_OK, or FKD_E_RANGE with *why set to static
 * text naming the rule that failed. */
FKD_MUST_CHECK enum fkd_err fkd_wifi_ssid_check(const uint8_t *ssid, size_t len, const char **why);
FKD_MUST_CHECK enum fkd_err fkd_wifi_pass_check(const uint8_t *pass, size_t len, const char **why);

/* Writes wifi/ssid and wifi/password so that a power cut anywhere leaves either the old pair
 * or the new pair, never the new SSID with the old password: the pair first goes into one
 * journal blob (wifi/pending, a single NVS item, so it is written completely or not at all),
 * then the two strings, then the journal is erased. fkd_wifi_recover finishes a journal a cut
 * left behind. ssid and pass are NUL-terminated and must pass the checks above.
 * FKD_OK; FKD_E_RANGE (a rule fails); NVS errors (FKD_E_POWERCUT: what the next boot's
 * recover makes of it is one pair or the other). The journal copy in RAM is wiped. */
FKD_MUST_CHECK enum fkd_err fkd_wifi_save(struct fkd_nvs *nvs, const char *ssid, const char *pass);
/* At boot, before the credential store reads NVS: applies and erases a wifi/pending journal
 * (a malformed one is erased and logged). FKD_OK (also when there is none); NVS errors. */
FKD_MUST_CHECK enum fkd_err fkd_wifi_recover(struct fkd_nvs *nvs);

/* The journal blob: ssid_len u8, ssid, pass_len u8, pass. Parses it (borrowed buf) into the
 * two NUL-terminated buffers, which must hold FKD_WIFI_SSID_MAX + 1 and FKD_WIFI_PASS_MAX + 1
 * bytes. FKD_OK; FKD_E_TRUNCATED; FKD_E_PARSE (trailing bytes, or a value that fails the
 * rules). Buffers are wiped on failure. */
FKD_MUST_CHECK enum fkd_err fkd_wifi_journal_parse(const uint8_t *buf, size_t len, char *ssid,
                                                   char *pass);

/* What a handled request did. */
enum fkd_portal_outcome {
    FKD_PORTAL_SERVED = 0, /* a page, a redirect or an error answer; stay in portal mode */
    FKD_PORTAL_SAVED,      /* new credentials are in NVS: leave portal mode */
    FKD_PORTAL_FAILED,     /* NVS refused the write (FKD_E_POWERCUT...): see *err */
};

/* Handles one complete request in buf (len bytes; FKD_E_TRUNCATED from the parser means the
 * caller should read more, and answers 431/413 itself when its buffer is full):
 *   GET /           the form page (200)
 *   POST /wifi      form fields ssid, password: 303 to /saved after the NVS write, or 400 with
 *                   the rule that failed (the password is never echoed)
 *   GET /saved      the confirmation page
 *   other GET/HEAD  302 to / (what makes phones open the page: a captive portal)
 *   other methods   405; malformed requests 400; a body over the limit 413
 * Writes the whole response (status line, headers with Content-Length and Connection: close,
 * body) into out; *out_len is its length. nvs may be NULL only for tests of the GET paths
 * (a POST then answers 503). Returns the outcome; *err is the NVS error for FAILED.
 * Logs the SSID and the password's fingerprint, never the password. */
enum fkd_portal_outcome fkd_portal_handle(struct fkd_nvs *nvs, const uint8_t *buf, size_t len,
                                          uint8_t *out, size_t out_size, size_t *out_len,
                                          enum fkd_err *err);
/* The response for a request the caller could not read whole: 413 (body too large) or 431
 * (head too large), into out as above. */
void fkd_portal_too_large(int head, uint8_t *out, size_t out_size, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
