/* robot-sim's Wi-Fi re-provisioning portal (portal.h): the simulated soft-AP. One TCP listener,
 * one client at a time, as the chip's small HTTP server would be; each request is read into a
 * bounded buffer (FKD_PORTAL_REQ_MAX) with a receive timeout, handed to fkd_portal_handle, and
 * the connection is closed after the answer. The request buffer holds the password: it is
 * wiped after every request. */
#include "portal.h"

#include "fkd/portal.h"
#include "fleetkey/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CLIENT_TIMEOUT_S 5 /* a client that stops sending holds the portal this long at most */

static const char *opt_listen;
static int opt_wifi_fail;

int robot_sim_portal_option(int argc, char **argv, int i) {
    if (strcmp(argv[i], "--wifi-fail") == 0) {
        opt_wifi_fail = 1;
        return 1;
    }
    if (strcmp(argv[i], "--portal-listen") != 0) {
        return 0;
    }
    if (i + 1 >= argc || strchr(argv[i + 1], ':') == NULL) {
        fprintf(stderr, "robot-sim: --portal-listen: expected IPV4:PORT (port 0: any)\n");
        return -1;
    }
    opt_listen = argv[i + 1];
    return 2;
}

int robot_sim_portal_enabled(void) {
    return opt_listen != NULL;
}

int robot_sim_portal_needed(const struct robot_sim *rs) {
    if (opt_listen == NULL) {
        if (rs->posture.wifi == FKD_WIFI_OFF) {
            fkd_log(FKD_LOG_WARN, "wifi: no usable credential; the re-provisioning portal is "
                                  "not enabled (--portal-listen)");
        }
        return 0;
    }
    if (opt_wifi_fail) {
        opt_wifi_fail = 0;
        fkd_log(FKD_LOG_WARN, "wifi: the network refused the stored credential (--wifi-fail): "
                              "opening the re-provisioning portal");
        return 1;
    }
    if (rs->posture.wifi == FKD_WIFI_OFF) {
        fkd_log(FKD_LOG_WARN,
                "wifi: no usable credential (%s): opening the "
                "re-provisioning portal",
                rs->cfg.production_build ? "production build: NVS only" : "development build");
        return 1;
    }
    return 0;
}

static void on_stop(int sig) {
    (void)sig;
    robot_sim_stop_all(); /* sets a sig_atomic_t: async-signal-safe */
}

static int listen_on(const char *spec, uint16_t *port) {
    char ip[64];
    const char *colon = strrchr(spec, ':');
    unsigned long p = 0;
    size_t iplen = (size_t)(colon - spec);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    if (iplen >= sizeof ip || fk_parse_ulong(colon + 1, 65535, &p) != FK_OK) {
        fprintf(stderr, "robot-sim: --portal-listen %s: expected IPV4:PORT\n", spec);
        return -1;
    }
    memcpy(ip, spec, iplen);
    ip[iplen] = '\0';
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        fprintf(stderr, "robot-sim: --portal-listen %s: '%s' is not an IPv4 address\n", spec, ip);
        return -1;
    }
    sa.sin_port = htons((uint16_t)p);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t sl = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "robot-sim: --portal-listen %s: %s\n", spec, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Reads one request (head and body) into buf; *len is what arrived. 1 complete, 0 the client
 * stopped or timed out, -1 too large (*head: the head did not fit). */
static int read_request(int fd, uint8_t *buf, size_t cap, size_t *len, int *head) {
    struct fkd_http_req rq;
    *len = 0;
    *head = 1;
    for (;;) {
        enum fkd_err rc = fkd_http_req_parse(buf, *len, cap, &rq);
        if (rc == FKD_OK) {
            *head = 0;
            if (rq.content_length <= *len - rq.head_len) {
                return 1;
            }
            if (rq.content_length > cap - rq.head_len) {
                return -1;
            }
        } else if (rc != FKD_E_TRUNCATED) {
            return 1; /* malformed or too large: the handler answers it */
        }
        if (*len == cap) {
            return -1;
        }
        ssize_t n = recv(fd, buf + *len, cap - *len, 0);
        if (n <= 0) {
            return 0;
        }
        *len += (size_t)n;
    }
}

static void send_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return; /* the client went away: nothing to do for it */
        }
        p += w;
        n -= (size_t)w;
    }
}

static int reload(struct robot_sim *rs) {
    fkd_store_free(&rs->store);
    fkd_store_init(&rs->store);
    enum fkd_err rc = fkd_store_load_rot(&rs->store, rs->nvs_mounted ? &rs->nvs : NULL, &rs->cfg,
                                         rs->rot_loaded ? &rs->rot : NULL);
    if (rc != FKD_OK) {
        return 4;
    }
    struct fkd_policy_input in = {&rs->store, &rs->cfg, rs->nvs_encrypted};
    uint16_t port = rs->posture.dtls_port;
    fkd_policy_evaluate(&in, &rs->posture);
    rs->posture.dtls_port = port;
    return 0;
}

int robot_sim_portal_run(struct robot_sim *rs) {
    static uint8_t req[FKD_PORTAL_REQ_MAX];
    static uint8_t resp[FKD_PORTAL_RESP_MAX];
    uint16_t port = 0;
    int code = 1;
    if (!rs->nvs_mounted) {
        fkd_log(FKD_LOG_ERROR, "portal: NVS is not mounted: credentials cannot be saved");
        return 4;
    }
    int lfd = listen_on(opt_listen, &port);
    if (lfd < 0) {
        return 4;
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    char ip[64];
    size_t iplen = (size_t)(strrchr(opt_listen, ':') - opt_listen);
    memcpy(ip, opt_listen, iplen);
    ip[iplen] = '\0';
    printf("robot-sim: portal on http://%s:%u/ (soft-AP simulated)\n", ip, (unsigned)port);
    fflush(stdout);
    fkd_log(FKD_LOG_INFO, "portal: serving the Wi-Fi form on %s:%u", ip, (unsigned)port);
    while (!robot_sim_stop_requested()) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        int pr = poll(&pfd, 1, 200);
        if (pr < 0 && errno != EINTR) {
            code = 4;
            break;
        }
        if (pr <= 0) {
            continue;
        }
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            continue;
        }
        struct timeval tv = {CLIENT_TIMEOUT_S, 0};
        (void)setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        size_t len = 0, out = 0;
        int head = 0;
        enum fkd_err err = FKD_OK;
        enum fkd_portal_outcome o = FKD_PORTAL_SERVED;
        int got = read_request(cfd, req, sizeof req, &len, &head);
        if (got < 0) {
            fkd_portal_too_large(head, resp, sizeof resp, &out);
        } else if (got > 0) {
            o = fkd_portal_handle(&rs->nvs, req, len, resp, sizeof resp, &out, &err);
        }
        fkd_wipe(req, sizeof req);
        send_all(cfd, resp, out);
        close(cfd);
        if (o == FKD_PORTAL_FAILED) {
            code = err == FKD_E_POWERCUT || rs->file.mem.dead ? ROBOT_SIM_POWER_CUT : 4;
            break;
        }
        if (o == FKD_PORTAL_SAVED) {
            code = reload(rs);
            if (code == 0) {
                const uint8_t *ssid = NULL;
                size_t sl = 0;
                if (fkd_store_get(&rs->store, FKD_CRED_WIFI_SSID, &ssid, &sl) == FKD_OK) {
                    printf("robot-sim: portal: Wi-Fi credentials saved (ssid '%.*s'); leaving "
                           "portal mode\n",
                           (int)sl, (const char *)ssid);
                }
                printf("wifi: %s\n", fkd_wifi_mode_name(rs->posture.wifi));
                fflush(stdout);
            }
            break;
        }
    }
    close(lfd);
    return code;
}
