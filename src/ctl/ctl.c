/* The robot control channel's client (fleetkey/ctl.h): OpenSSL DTLS 1.2 PSK.
 *
 * The socket is non-blocking and every wait is a poll() bounded by both OpenSSL's DTLS
 * retransmission timer (DTLSv1_get_timeout / DTLSv1_handle_timeout) and the caller's overall
 * deadline, so a robot that never answers costs exactly timeout_ms. Handshake failures are
 * turned into one sentence that says what most likely went wrong (the robot's alert, or its
 * silence), because "error:0A0003FC" helps nobody at 3 a.m. */
#include "fleetkey/ctl.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* What the PSK callback needs: the caller's identity and key, never copied but into OpenSSL. */
struct ctl_key {
    const char *identity;
    const uint8_t *psk;
    size_t psk_len;
};

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* OpenSSL asks for the identity and key during the handshake; both come from the struct
 * attached to the SSL object, and only the key bytes are copied (into OpenSSL's own buffer,
 * which it cleanses). */
static unsigned int psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_id_len,
                           unsigned char *psk, unsigned int max_psk_len) {
    (void)hint;
    const struct ctl_key *k = SSL_get_app_data(ssl);
    if (k == NULL) {
        return 0;
    }
    size_t il = strlen(k->identity);
    if (il + 1 > max_id_len || k->psk_len > max_psk_len) {
        return 0;
    }
    memcpy(identity, k->identity, il + 1);
    memcpy(psk, k->psk, k->psk_len);
    return (unsigned int)k->psk_len;
}

/* Collects OpenSSL's error queue into one line: the reason strings only. */
static void ossl_reason(char *out, size_t size) {
    unsigned long e;
    size_t used = 0;
    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r == NULL) {
            continue;
        }
        int n = snprintf(out + used, size - used, "%s%s", used ? "; " : "", r);
        if (n < 0 || (size_t)n >= size - used) {
            break;
        }
        used += (size_t)n;
    }
    if (used == 0) {
        snprintf(out, size, "unknown error");
    }
}

static const char *hint_for(const char *reason) {
    if (strstr(reason, "bad record mac") != NULL || strstr(reason, "decrypt") != NULL) {
        return " (wrong PSK?)";
    }
    if (strstr(reason, "unknown psk identity") != NULL) {
        return " (the robot does not know this identity: wrong manifest?)";
    }
    if (strstr(reason, "handshake failure") != NULL || strstr(reason, "no shared cipher") != NULL) {
        return " (no common PSK ciphersuite)";
    }
    return "";
}

/* Waits for readability until OpenSSL's DTLS timer or the deadline, whichever is first, and
 * lets OpenSSL retransmit when its timer fired. 1 = go on, 0 = deadline passed, -1 = error. */
static int wait_io(SSL *ssl, int fd, long long deadline) {
    long long left = deadline - now_ms();
    if (left <= 0) {
        return 0;
    }
    struct timeval tv;
    long long wait = left;
    int has_timer = DTLSv1_get_timeout(ssl, &tv) == 1;
    if (has_timer) {
        long long t = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
        if (t < wait) {
            wait = t;
        }
    }
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int r = poll(&p, 1, (int)wait);
    if (r < 0 && errno != EINTR) {
        return -1;
    }
    if (r == 0 && has_timer) {
        if (DTLSv1_handle_timeout(ssl) < 0) {
            return -1;
        }
    }
    return 1;
}

static int open_socket(const char *host, const char *port, struct fk_diag *diag,
                       struct sockaddr_storage *peer, socklen_t *peer_len) {
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        fk_diag_set(diag, FK_E_IO, "%s:%s: %s", host, port, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            memcpy(peer, ai->ai_addr, ai->ai_addrlen);
            *peer_len = ai->ai_addrlen;
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fk_diag_set(diag, FK_E_IO, "%s:%s: cannot open a UDP socket: %s", host, port,
                    strerror(errno));
    }
    return fd;
}

enum fk_err fk_ctl_request(const char *host, const char *port, const char *identity,
                           const uint8_t *psk, size_t psk_len, const char *request, char *resp,
                           size_t resp_size, unsigned timeout_ms, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1;
    char why[512];
    char line[256];
    struct sockaddr_storage peer;
    socklen_t peer_len = 0;
    long long deadline = now_ms() + timeout_ms;
    struct ctl_key key = {identity, psk, psk_len};

    FK_ENSURE(host != NULL && port != NULL && identity != NULL && identity[0] != '\0' &&
                  psk != NULL && psk_len > 0 && psk_len <= FK_CTL_PSK_MAX && request != NULL &&
                  resp != NULL && resp_size > 1,
              FK_E_ARG);
    resp[0] = '\0';
    size_t rl = strlen(request);
    FK_ENSURE(rl + 1 < sizeof line, FK_E_ARG);
    memcpy(line, request, rl);
    line[rl] = '\n';

    fd = open_socket(host, port, diag, &peer, &peer_len);
    FK_ENSURE(fd >= 0, FK_E_IO);
    ctx = SSL_CTX_new(DTLS_client_method());
    FK_ENSURE(ctx != NULL, FK_E_INTERNAL);
    FK_GUARD_OSSL(SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION), FK_E_INTERNAL);
    FK_GUARD_OSSL(SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION), FK_E_INTERNAL);
    /* The robot's suites: PSK with AES-GCM/CCM only (docs/control-protocol.md). */
    FK_GUARD_OSSL(SSL_CTX_set_cipher_list(ctx, "PSK-AES128-GCM-SHA256:PSK-AES128-CCM:"
                                               "PSK-AES128-CCM8:PSK-AES256-GCM-SHA384"),
                  FK_E_INTERNAL);
    SSL_CTX_set_psk_client_callback(ctx, psk_cb);
    ssl = SSL_new(ctx);
    FK_ENSURE(ssl != NULL, FK_E_INTERNAL);
    FK_GUARD_OSSL(SSL_set_app_data(ssl, &key), FK_E_INTERNAL);
    BIO *bio = BIO_new_dgram(fd, BIO_NOCLOSE);
    FK_ENSURE(bio != NULL, FK_E_INTERNAL);
    BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &peer);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mtu(ssl, 1200);

    for (int i = 0; i < 10000; i++) {
        ERR_clear_error();
        int r = SSL_connect(ssl);
        if (r == 1) {
            break;
        }
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int w = wait_io(ssl, fd, deadline);
            if (w == 0) {
                rc = fk_diag_set(diag, FK_E_TIMEOUT,
                                 "handshake failed: no answer from %s:%s within %u ms (robot "
                                 "down, wrong port, or wrong PSK?)",
                                 host, port, timeout_ms);
                goto out;
            }
            FK_ENSURE(w > 0, FK_E_IO);
            continue;
        }
        int saved = errno;
        if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            /* ICMP port unreachable on the connected socket: nobody listens there. */
            rc = fk_diag_set(diag, FK_E_IO,
                             "handshake failed: %s:%s: %s (no listener on that "
                             "port?)",
                             host, port, saved ? strerror(saved) : "socket error");
            goto out;
        }
        ossl_reason(why, sizeof why);
        rc = fk_diag_set(diag, FK_E_AUTH, "handshake failed: %s%s", why, hint_for(why));
        goto out;
    }
    FK_ENSURE(SSL_is_init_finished(ssl), FK_E_TIMEOUT);

    ERR_clear_error();
    int w = SSL_write(ssl, line, (int)(rl + 1));
    if (w <= 0) {
        ossl_reason(why, sizeof why);
        rc = fk_diag_set(diag, FK_E_IO, "sending the request failed: %s", why);
        goto out;
    }
    for (int i = 0; i < 10000; i++) {
        ERR_clear_error();
        int r = SSL_read(ssl, resp, (int)(resp_size - 1));
        if (r > 0) {
            resp[r] = '\0';
            rc = FK_OK;
            goto out;
        }
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            int wr = wait_io(ssl, fd, deadline);
            if (wr == 0) {
                rc = fk_diag_set(diag, FK_E_TIMEOUT, "no response from %s:%s within %u ms", host,
                                 port, timeout_ms);
                goto out;
            }
            FK_ENSURE(wr > 0, FK_E_IO);
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            rc = fk_diag_set(diag, FK_E_PROTOCOL, "the robot closed the session");
            goto out;
        }
        ossl_reason(why, sizeof why);
        rc = fk_diag_set(diag, FK_E_PROTOCOL, "reading the response failed: %s", why);
        goto out;
    }
    rc = fk_diag_set(diag, FK_E_TIMEOUT, "no response from %s:%s", host, port);
out:
    if (ssl != NULL) {
        if (SSL_is_init_finished(ssl)) {
            (void)SSL_shutdown(ssl); /* close_notify, so the robot frees the slot at once */
        }
        SSL_free(ssl); /* cleanses the copy of the PSK OpenSSL holds */
    }
    SSL_CTX_free(ctx);
    if (fd >= 0) {
        close(fd);
    }
    ERR_clear_error();
    return rc;
}

/* The answer says ok, the session's identity and that it was authenticated with slot want. */
static enum fk_err status_is(const char *resp, const char *identity, const char *want,
                             struct fk_diag *diag) {
    enum fk_err rc = FK_E_PROTOCOL;
    cJSON *o = resp != NULL ? cJSON_Parse(resp) : NULL;
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(o, "ok");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "identity");
    const cJSON *slot = cJSON_GetObjectItemCaseSensitive(o, "auth_slot");
    if (!cJSON_IsObject(o) || !cJSON_IsTrue(ok)) {
        rc = fk_diag_set(diag, FK_E_PROTOCOL, "status: not an ok JSON answer");
    } else if (!cJSON_IsString(slot) || strcmp(slot->valuestring, want) != 0) {
        /* next wanted, "current" seen: the robot took the staged PSK for its current one, or
         * none is staged */
        rc = fk_diag_set(diag, FK_E_PROTOCOL, "status: auth_slot is %.16s, not %s",
                         cJSON_IsString(slot) ? slot->valuestring : "absent", want);
    } else if (!cJSON_IsString(id) || identity == NULL || strcmp(id->valuestring, identity) != 0) {
        rc = fk_diag_set(diag, FK_E_PROTOCOL, "status: the session's identity is not %.64s",
                         identity != NULL ? identity : "?");
    } else {
        rc = FK_OK;
    }
    cJSON_Delete(o);
    return rc;
}

enum fk_err fk_ctl_status_is_next(const char *resp, const char *identity, struct fk_diag *diag) {
    return status_is(resp, identity, "next", diag);
}

static enum fk_err confirm(const char *host, const char *port, const char *identity,
                           const uint8_t *psk, size_t psk_len, const char *want,
                           unsigned timeout_ms, struct fk_diag *diag) {
    char resp[2048];
    enum fk_err rc = fk_ctl_request(host, port, identity, psk, psk_len, "status", resp, sizeof resp,
                                    timeout_ms, diag);
    if (rc != FK_OK) {
        return rc;
    }
    return status_is(resp, identity, want, diag);
}

enum fk_err fk_ctl_confirm_next(const char *host, const char *port, const char *identity,
                                const uint8_t *psk, size_t psk_len, unsigned timeout_ms,
                                struct fk_diag *diag) {
    return confirm(host, port, identity, psk, psk_len, "next", timeout_ms, diag);
}

enum fk_err fk_ctl_confirm_current(const char *host, const char *port, const char *identity,
                                   const uint8_t *psk, size_t psk_len, unsigned timeout_ms,
                                   struct fk_diag *diag) {
    return confirm(host, port, identity, psk, psk_len, "current", timeout_ms, diag);
}
