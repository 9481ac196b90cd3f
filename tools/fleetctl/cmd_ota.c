/* fleetctl ota / ota-status: push a signed update through fleetkey-server and follow it.
 *
 * `ota` POSTs the image to /api/ota (streamed, Content-Length; the server checks it and the
 * interlock: every target must trust a key that signed it), prints the job, then polls
 * GET /api/ota/JOB once a second and prints each device's state changes until every device
 * is in a final state or --wait runs out. docs/fleetctl.md, docs/server.md. */
#include "https.h"
#include "server_cmd.h"

#include "fleetkey/pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_WAIT 3

static int usage_ota(void) {
    fprintf(stderr, "usage: fleetctl --p12 F.p12 --password-file F --server https://HOST:PORT "
                    "--ca CA.pem [--json]\n"
                    "         ota (--device ID ... | --all) [--wait SECONDS | --no-wait] "
                    "[--poll-ms MS] IMAGE.bin\n"
                    "         ota-status JOB\n");
    return 2;
}

int fleetctl_ota_parse(const char *cmd, int argc, char **argv, struct fleetctl_ota_args *a) {
    memset(a, 0, sizeof *a);
    a->wait_s = 600;
    a->poll_ms = 1000;
    if (strcmp(cmd, "ota-status") == 0) {
        a->status_only = 1;
        if (argc != 1 || strncmp(argv[0], "j-", 2) != 0 || !fk_pki_name_valid(argv[0])) {
            return usage_ota();
        }
        a->job = argv[0];
        return 0;
    }
    a->devices = calloc((size_t)argc + 1, sizeof *a->devices);
    if (a->devices == NULL) {
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--all") == 0) {
            a->all = 1;
        } else if (strcmp(o, "--no-wait") == 0) {
            a->no_wait = 1;
        } else if (strcmp(o, "--device") == 0 && i + 1 < argc) {
            if (!fk_pki_name_valid(argv[i + 1])) {
                fprintf(stderr, "fleetctl ota: --device: '%s' is not a device id\n", argv[i + 1]);
                return 2;
            }
            a->devices[a->ndevices++] = argv[++i];
        } else if (strcmp(o, "--wait") == 0 && i + 1 < argc) {
            char *end = NULL;
            long w = strtol(argv[++i], &end, 10);
            if (end == NULL || *end != '\0' || w < 1 || w > 86400) {
                fprintf(stderr, "fleetctl ota: --wait: expected 1..86400 seconds\n");
                return 2;
            }
            a->wait_s = w;
        } else if (strcmp(o, "--poll-ms") == 0 && i + 1 < argc) {
            char *end = NULL;
            long ms = strtol(argv[++i], &end, 10);
            if (end == NULL || *end != '\0' || ms < 10 || ms > 60000) {
                fprintf(stderr, "fleetctl ota: --poll-ms: expected 10..60000 milliseconds\n");
                return 2;
            }
            a->poll_ms = ms;
        } else if (o[0] != '-' && a->image == NULL && i + 1 == argc) {
            a->image = o;
        } else {
            fprintf(stderr, "fleetctl ota: unexpected argument '%s'\n", o);
            return usage_ota();
        }
    }
    if (a->image == NULL || (a->ndevices > 0) == (a->all != 0)) {
        fprintf(stderr, "fleetctl ota: need the image and either --device ID... or --all\n");
        return usage_ota();
    }
    return 0;
}

static void print_error(int status, const char *body) {
    cJSON *e = cJSON_Parse(body);
    fprintf(stderr, "fleetctl: server answered %d: %s\n", status,
            e != NULL ? fleetctl_jstr(e, "error") : "(no detail)");
    /* 409 from the interlock: who would refuse the image, and what they trust. */
    const cJSON *b = NULL;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(e, "blocking")) {
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(b, "trusts");
        const cJSON *k = NULL;
        char keys[512] = "";
        size_t n = 0;
        cJSON_ArrayForEach(k, tr) {
            if (cJSON_IsString(k) && n < sizeof keys) {
                int w = snprintf(keys + n, sizeof keys - n, "%s%s", n ? ", " : "", k->valuestring);
                n += w > 0 ? (size_t)w : 0;
            }
        }
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(b, "last_seen");
        fprintf(stderr, "  blocking: %s (trusts: %s; %s%s)\n", fleetctl_jstr(b, "id"),
                n ? keys : "no key known", cJSON_IsString(ls) ? "last seen " : "never connected",
                cJSON_IsString(ls) ? ls->valuestring : "");
    }
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(e, "keys")) {
        if (cJSON_IsString(b)) {
            fprintf(stderr, "  retired key: %s\n", b->valuestring);
        }
    }
    cJSON_Delete(e);
}

static int get_job(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, const char *job,
                   cJSON **out) {
    char path[96];
    char *body = NULL;
    int status = 0;
    snprintf(path, sizeof path, "/api/ota/%s", job);
    if (fleetctl_https(ctx, u, "GET", path, NULL, timeout_s, &status, &body) != 0) {
        return -1;
    }
    if (status != 200) {
        print_error(status, body);
        free(body);
        return -1;
    }
    return fleetctl_take_json(body, out);
}

static void print_job_table(const cJSON *j) {
    printf("job %s: version %s, %.0f bytes, sha256 %.16s, created %s by %s\n",
           fleetctl_jstr(j, "job"), fleetctl_jstr(j, "version"),
           cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "size")),
           fleetctl_jstr(j, "sha256"), fleetctl_jstr(j, "created_at"),
           fleetctl_jstr(j, "operator"));
    printf("%-24s %-12s %10s %8s %s\n", "DEVICE", "STATE", "SENT", "ATTEMPTS", "ERROR");
    const cJSON *d = NULL;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "devices")) {
        printf("%-24s %-12s %10.0f %8.0f %s\n", fleetctl_jstr(d, "id"), fleetctl_jstr(d, "state"),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "sent")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "attempts")),
               cJSON_IsString(cJSON_GetObjectItemCaseSensitive(d, "error"))
                   ? fleetctl_jstr(d, "error")
                   : "");
    }
}

static void print_json(const cJSON *o) {
    char *pretty = cJSON_Print(o);
    if (pretty != NULL) {
        puts(pretty);
        cJSON_free(pretty);
    }
}

/* Prints state changes against prev (a JSON object id -> "state"), updates it. Returns 0 while
 * some device is not final, 1 when all confirmed, 2 when all final and some not confirmed. */
static int follow(const cJSON *job, cJSON *prev, int quiet) {
    int open = 0, bad = 0;
    const cJSON *d = NULL;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(job, "devices")) {
        const char *id = fleetctl_jstr(d, "id");
        const char *st = fleetctl_jstr(d, "state");
        const cJSON *was = cJSON_GetObjectItemCaseSensitive(prev, id);
        if (!cJSON_IsString(was) || strcmp(was->valuestring, st) != 0) {
            if (!quiet) {
                const cJSON *err = cJSON_GetObjectItemCaseSensitive(d, "error");
                printf("%s: %s%s%s%s\n", id, st,
                       cJSON_IsString(err) && err->valuestring[0] ? " (" : "",
                       cJSON_IsString(err) && err->valuestring[0] ? err->valuestring : "",
                       cJSON_IsString(err) && err->valuestring[0] ? ")" : "");
                fflush(stdout);
            }
            cJSON_DeleteItemFromObjectCaseSensitive(prev, id);
            cJSON_AddStringToObject(prev, id, st);
        }
        if (strcmp(st, "confirmed") == 0) {
            continue;
        }
        if (strcmp(st, "refused") == 0 || strcmp(st, "rolled_back") == 0 ||
            strcmp(st, "failed") == 0) {
            bad = 1;
        } else {
            open = 1;
        }
    }
    return open ? 0 : bad ? 2 : 1;
}

int fleetctl_ota_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                     const struct fleetctl_ota_args *a) {
    cJSON *job = NULL, *prev = NULL, *posted = NULL;
    char *body = NULL;
    char *path = NULL;
    int rc = 1;
    if (a->status_only) {
        if (get_job(ctx, u, timeout_s, a->job, &job) != 0) {
            return 1;
        }
        if (json) {
            print_json(job);
        } else {
            print_job_table(job);
        }
        cJSON_Delete(job);
        return 0;
    }
    /* POST /api/ota?device=A&device=B... (ids checked by fk_pki_name_valid: URL-safe). */
    size_t cap = 32 + (size_t)a->ndevices * 80;
    path = malloc(cap);
    if (path == NULL) {
        return 1;
    }
    size_t n = (size_t)snprintf(path, cap, "/api/ota?%s", a->all ? "all=1" : "");
    for (int i = 0; i < a->ndevices; i++) {
        n += (size_t)snprintf(path + n, cap - n, "%sdevice=%s", i ? "&" : "", a->devices[i]);
    }
    int status = 0;
    if (fleetctl_https(ctx, u, "POST", path, a->image, timeout_s, &status, &body) != 0) {
        goto out;
    }
    if (status != 202) {
        print_error(status, body);
        goto out;
    }
    posted = cJSON_Parse(body);
    const char *id = fleetctl_jstr(posted, "job");
    if (strncmp(id, "j-", 2) != 0 || !fk_pki_name_valid(id)) {
        fprintf(stderr, "fleetctl: unexpected answer from the server\n");
        goto out;
    }
    if (!json) {
        printf("job %s: version %s, %.0f bytes, %d device(s)\n", id,
               fleetctl_jstr(posted, "version"),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(posted, "size")),
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(posted, "devices")));
        fflush(stdout);
    }
    if (a->no_wait) {
        if (json) {
            print_json(posted);
        }
        rc = 0;
        goto out;
    }
    prev = cJSON_CreateObject();
    time_t until = time(NULL) + a->wait_s;
    for (;;) {
        cJSON_Delete(job);
        job = NULL;
        if (get_job(ctx, u, timeout_s, id, &job) != 0) {
            goto out;
        }
        int f = follow(job, prev, json);
        if (f != 0) {
            rc = f == 1 ? 0 : 1;
            break;
        }
        if (time(NULL) >= until) {
            fprintf(stderr, "fleetctl: %s: not every device finished within %ld s\n", id,
                    a->wait_s);
            rc = EXIT_WAIT;
            break;
        }
        struct timespec ts = {a->poll_ms / 1000, (a->poll_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (json) {
        print_json(job);
    } else {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(job, "counts");
        printf("%s: %.0f confirmed, %.0f refused, %.0f rolled back, %.0f failed, %.0f pending\n",
               id, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "confirmed")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "refused")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "rolled_back")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "failed")),
               cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "queued")) +
                   cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "sending")) +
                   cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "installed")));
    }
out:
    cJSON_Delete(job);
    cJSON_Delete(prev);
    cJSON_Delete(posted);
    free(body);
    free(path);
    return rc;
}
