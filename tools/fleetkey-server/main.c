/* fleetkey-server: parse the configuration (file, then flags), raise the descriptor limit,
 * run the control plane in the foreground with logs on stderr; SIGTERM/SIGINT stop it,
 * SIGHUP reloads the CRL. Exit: 0 clean stop, 1 failure, 2 usage. docs/server.md. */
#include "fleetkey/server.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static struct fk_server *g_srv;

static void on_signal(int sig) {
    if (g_srv == NULL) {
        return;
    }
    if (sig == SIGHUP) {
        fk_server_reload_crl(g_srv);
    } else {
        fk_server_stop(g_srv);
    }
}

static void log_line(void *user, enum fk_log_level lvl, const char *line) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[21];
    (void)user;
    fk_time_rfc3339((long long)time(NULL), ts);
    fprintf(stderr, "%s fleetkey-server %s: %s\n", ts, names[lvl], line);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: fleetkey-server [--config FILE] [--SETTING VALUE]...\n"
            "settings (config file: 'name = value'; flags override the file):\n"
            "  --listen ADDR          address to bind (default 0.0.0.0)\n"
            "  --port N               TCP port (default 8443; 0 = any free port)\n"
            "  --cert FILE            server certificate chain (PEM)\n"
            "  --key FILE             server private key (PEM)\n"
            "  --ca FILE              fleet CA certificates clients must chain to\n"
            "  --crl FILE             CRL file (PEM); reloaded when it changes or on SIGHUP\n"
            "  --inventory FILE|URI   fleet inventory: SQLite file or postgresql:// URI\n"
            "  --max_connections N    simultaneous connections (default 1024)\n"
            "  --hello_timeout S      seconds a device has to send hello (default 10)\n"
            "  --handshake_timeout S  seconds for a TLS handshake / HTTP request (default 10)\n"
            "  --ping_interval S      keep-alive announced in welcome (default 30)\n"
            "  --log_level L          debug, info, warn, error (default info)\n"
            "  --allow_no_crl 1       development only: run without a CRL\n"
            "  --status_request 1     send a 'status' request after each welcome\n"
            "  --ota_dir DIR          spool of update images (default: ota next to the inventory;\n"
            "                         required with a postgresql:// inventory)\n"
            "  --ota_max_image BYTES  largest image POST /api/ota accepts (default 16777216)\n"
            "  --rot_dir DIR          credential rotation plans and confirmed PSKs (default: ota_dir)\n"
            "  --ca_dir DIR           the fleet CA that signs rotated device certificates\n"
            "  --ca_bundle FILE       PEM trust anchors a ca rotation delivers to the devices\n"
            "  --ota_trial_image FILE an image signed by the new OTA key: an ota rotation's\n"
            "                         trial (the robot verifies its signature with the staged\n"
            "                         key before the server confirms it)\n"
            "  --oauth_key FILE       ES256 key signing OAuth2 access tokens, created if absent\n"
            "                         (default: oauth-key.pem next to the inventory, in ota_dir\n"
            "                         with a PostgreSQL inventory; the token state\n"
            "                         oauth-state.json is kept next to it)\n"
            "  --token_lifetime S     access token lifetime (default 86400)\n"
            "  --refresh_lifetime S   refresh token lifetime (default 2592000 = 30 days)\n"
            "  --port-file FILE       write the bound port to FILE (tests)\n");
}

int main(int argc, char **argv) {
    struct fk_server_config cfg;
    struct fk_diag d;
    const char *port_file = NULL;
    char msg[700];
    fk_server_config_init(&cfg);
    fk_diag_init(&d);
    fk_log_set_handler(log_line, NULL);

    /* The file first, wherever --config appears, so flags always win. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            if (fk_server_config_load(&cfg, argv[i + 1], &d) != FK_OK) {
                fk_diag_format(&d, msg, sizeof msg);
                fprintf(stderr, "fleetkey-server: %s\n", msg);
                return 2;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "fleetkey-server: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--config") == 0) {
            continue;
        }
        if (strcmp(a, "--port-file") == 0) {
            port_file = v;
            continue;
        }
        if (fk_server_config_set(&cfg, a + 2, v, &d) != FK_OK) {
            fk_diag_format(&d, msg, sizeof msg);
            fprintf(stderr, "fleetkey-server: %s\n", msg);
            return 2;
        }
    }
    fk_log_set_level(cfg.log_level);

    /* One descriptor per connection plus a few for the listener, the inventory and logs. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)cfg.max_connections + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want) {
                fk_log(FK_LOG_WARN, "fleetkey-server: descriptor limit %llu is below "
                                    "max_connections + 64",
                       (unsigned long long)rl.rlim_cur);
            }
        }
    }

    struct fk_server *srv = NULL;
    if (fk_server_new(&cfg, &srv, &d) != FK_OK) {
        fk_diag_format(&d, msg, sizeof msg);
        fprintf(stderr, "fleetkey-server: %s\n", msg);
        return 1;
    }
    if (port_file != NULL) {
        char buf[16];
        int n = snprintf(buf, sizeof buf, "%u\n", fk_server_port(srv));
        if (fk_file_write_atomic(port_file, buf, (size_t)n, 0644, 0, &d) != FK_OK) {
            fk_server_free(srv);
            return 1;
        }
    }
    g_srv = srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    enum fk_err rc = fk_server_run(srv);
    g_srv = NULL;
    fk_server_free(srv);
    return rc == FK_OK ? 0 : 1;
}
