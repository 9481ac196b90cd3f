/* fleetctl rotate: drive a credential rotation plan of fleetkey-server (/api/rotation).
 *
 * `plan` creates a plan (paused, "not started": it shows the waves before anything is sent),
 * `start|pause|resume|abort` act on it, `force` names the devices that may stay behind when
 * the interlock holds, `status` shows a plan once or follows it (--wait): a progress line
 * rewritten in place on a terminal, one JSON object per poll otherwise. Exit codes like
 * `fleetctl ota`. docs/fleetctl.md, docs/server.md. */
#include "https.h"
#include "server_cmd.h"

#include "fleetkey/pki.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_WAIT 3

static int usage_rotate(void) {
    fprintf(stderr,
            "usage: fleetctl --p12 F.p12 --password-file F --server https://HOST:PORT --ca CA.pem "
            "[--json]\n"
            "         rotate plan --classes psk,mtls [--waves 1,5,25,100] [--max-failure-pct N]\n"
            "                [--timeout S] [--retries N] (--all | --device ID ...)\n"
            "         rotate start|pause|resume|abort PLAN\n"
            "         rotate force PLAN --device ID ...\n"
            "         rotate status [PLAN] [--wait S] [--poll-ms MS]\n");
    return 2;
}

static int num_arg(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (end == NULL || end == v || *end != '\0' || n < lo || n > hi) {
        fprintf(stderr, "fleetctl rotate: %s: expected %ld..%ld\n", opt, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

static int plan_id_valid(const char *s) {
    return strncmp(s, "rot-", 4) == 0 && fk_pki_name_valid(s);
}

int fleetctl_rotate_parse(int argc, char **argv, struct fleetctl_rotate_args *a) {
    memset(a, 0, sizeof *a);
    a->wait_s = -1;
    a->poll_ms = 1000;
    a->max_failure_pct = a->timeout_s = a->retries = -1;
    if (argc < 1) {
        return usage_rotate();
    }
    a->sub = argv[0];
    int is_plan = strcmp(a->sub, "plan") == 0, is_status = strcmp(a->sub, "status") == 0;
    int is_force = strcmp(a->sub, "force") == 0;
    if (!is_plan && !is_status && !is_force && strcmp(a->sub, "start") != 0 &&
        strcmp(a->sub, "pause") != 0 && strcmp(a->sub, "resume") != 0 &&
        strcmp(a->sub, "abort") != 0) {
        fprintf(stderr, "fleetctl rotate: unknown subcommand '%s'\n", a->sub);
        return usage_rotate();
    }
    a->devices = calloc((size_t)argc + 1, sizeof *a->devices);
    if (a->devices == NULL) {
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
        if (is_plan && strcmp(o, "--all") == 0) {
            a->all = 1;
        } else if ((is_plan || is_force) && strcmp(o, "--device") == 0 && v != NULL) {
            if (!fk_pki_name_valid(v)) {
                fprintf(stderr, "fleetctl rotate: --device: '%s' is not a device id\n", v);
                return 2;
            }
            a->devices[a->ndevices++] = v;
            i++;
        } else if (is_plan && strcmp(o, "--classes") == 0 && v != NULL) {
            a->classes = v;
            i++;
        } else if (is_plan && strcmp(o, "--waves") == 0 && v != NULL) {
            a->waves = v;
            i++;
        } else if (is_plan && strcmp(o, "--max-failure-pct") == 0 && v != NULL) {
            if (num_arg(o, v, 0, 100, &n) != 0) {
                return 2;
            }
            a->max_failure_pct = n;
            i++;
        } else if (is_plan && strcmp(o, "--timeout") == 0 && v != NULL) {
            if (num_arg(o, v, 1, 86400, &n) != 0) {
                return 2;
            }
            a->timeout_s = n;
            i++;
        } else if (is_plan && strcmp(o, "--retries") == 0 && v != NULL) {
            if (num_arg(o, v, 0, 100, &n) != 0) {
                return 2;
            }
            a->retries = n;
            i++;
        } else if (is_status && strcmp(o, "--wait") == 0 && v != NULL) {
            if (num_arg(o, v, 1, 86400, &n) != 0) {
                return 2;
            }
            a->wait_s = n;
            i++;
        } else if (is_status && strcmp(o, "--poll-ms") == 0 && v != NULL) {
            if (num_arg(o, v, 10, 60000, &n) != 0) {
                return 2;
            }
            a->poll_ms = n;
            i++;
        } else if (!is_plan && o[0] != '-' && a->plan == NULL) {
            if (!plan_id_valid(o)) {
                fprintf(stderr, "fleetctl rotate: '%s' is not a plan id (rot-NNNNNN)\n", o);
                return 2;
            }
            a->plan = o;
        } else {
            fprintf(stderr, "fleetctl rotate %s: unexpected argument '%s'\n", a->sub, o);
            return usage_rotate();
        }
    }
    if (is_plan && (a->classes == NULL || (a->ndevices > 0) == (a->all != 0))) {
        fprintf(stderr, "fleetctl rotate plan: need --classes and either --device ID... or "
                        "--all\n");
        return usage_rotate();
    }
    if (!is_plan && !is_status && a->plan == NULL) {
        fprintf(stderr, "fleetctl rotate %s: which plan?\n", a->sub);
        return usage_rotate();
    }
    if (is_force && a->ndevices == 0) {
        fprintf(stderr, "fleetctl rotate force: name the devices left behind (--device ID...)\n");
        return usage_rotate();
    }
    return 0;
}

static double num(const cJSON *o, const char *k) {
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void print_error(int status, const char *body) {
    cJSON *e = cJSON_Parse(body);
    fprintf(stderr, "fleetctl: server answered %d: %s\n", status,
            e != NULL ? fleetctl_jstr(e, "error") : "(no detail)");
    cJSON_Delete(e);
}

static void print_json(const cJSON *o, int pretty) {
    char *t = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    if (t != NULL) {
        puts(t);
        cJSON_free(t);
    }
    fflush(stdout);
}

/* One request; the answer parsed into *out when its status is want. 0, or -1 (printed). */
static int call(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, const char *method,
                const char *path, const char *json, int want, cJSON **out) {
    char *body = NULL;
    int status = 0;
    *out = NULL;
    if (fleetctl_https_json(ctx, u, method, path, json != NULL ? json : "", timeout_s, &status,
                            &body) != 0) {
        return -1;
    }
    if (status != want) {
        print_error(status, body);
        free(body);
        return -1;
    }
    return fleetctl_take_json(body, out);
}

static void print_summary(const cJSON *p) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "counts");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(p, "waves");
    const char *why = fleetctl_jstr(p, "pause_reason");
    printf(
        "plan %s: %s%s%s%s, wave %.0f/%d, %.0f/%.0f confirmed, %.0f failed, %.0f rolled "
        "back, %.0f offline%s\n",
        fleetctl_jstr(p, "id"), fleetctl_jstr(p, "state"), why[0] && strcmp(why, "-") ? " (" : "",
        why[0] && strcmp(why, "-") ? why : "", why[0] && strcmp(why, "-") ? ")" : "",
        num(p, "wave") + 1, cJSON_GetArraySize(w), num(c, "confirmed"), num(c, "devices"),
        num(c, "failed"), num(c, "rolled_back"), num(c, "offline"),
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "revoked")) ? ", old credentials revoked"
                                                                     : "");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(p, "blockers");
    if (cJSON_GetArraySize(b) > 0) {
        printf("interlock holds: not confirmed:");
        const cJSON *it = NULL;
        cJSON_ArrayForEach(it, b) {
            printf(" %s", cJSON_IsString(it) ? it->valuestring : "?");
        }
        printf("\n");
    }
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(p, "devices");
    if (devs == NULL) {
        return;
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(p, "classes");
    printf("%-24s", "DEVICE");
    const cJSON *k = NULL;
    cJSON_ArrayForEach(k, cls) {
        printf(" %-12s", cJSON_IsString(k) ? k->valuestring : "?");
    }
    printf(" %-7s %s\n", "OFFLINE", "REASON");
    const cJSON *d = NULL;
    cJSON_ArrayForEach(d, devs) {
        printf("%-24s", fleetctl_jstr(d, "device"));
        cJSON_ArrayForEach(k, cls) {
            printf(" %-12s", cJSON_IsString(k) ? fleetctl_jstr(d, k->valuestring) : "-");
        }
        printf(" %-7s %s\n",
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "offline")) ? "yes" : "no",
               fleetctl_jstr(d, "reason"));
    }
}

static void print_plan(const cJSON *p) {
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(p, "classes");
    printf("plan %s: %s", fleetctl_jstr(p, "id"), fleetctl_jstr(p, "state"));
    printf(" (%s), classes", fleetctl_jstr(p, "pause_reason"));
    const cJSON *k = NULL;
    cJSON_ArrayForEach(k, cls) {
        printf(" %s", cJSON_IsString(k) ? k->valuestring : "?");
    }
    printf(", %.0f device(s)\n", num(cJSON_GetObjectItemCaseSensitive(p, "counts"), "devices"));
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(p, "waves");
    const cJSON *wd = cJSON_GetObjectItemCaseSensitive(p, "wave_devices");
    for (int i = 0; i < cJSON_GetArraySize(w); i++) {
        printf("  wave %d: %3.0f %%  %.0f device(s)\n", i + 1,
               cJSON_GetNumberValue(cJSON_GetArrayItem(w, i)),
               cJSON_GetNumberValue(cJSON_GetArrayItem(wd, i)));
    }
}

static int create(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                  const struct fleetctl_rotate_args *a) {
    cJSON *req = cJSON_CreateObject(), *ans = NULL;
    cJSON_AddStringToObject(req, "classes", a->classes);
    cJSON_AddStringToObject(req, "waves", a->waves != NULL ? a->waves : "100");
    if (a->max_failure_pct >= 0) {
        cJSON_AddNumberToObject(req, "max_failure_pct", (double)a->max_failure_pct);
    }
    if (a->timeout_s >= 0) {
        cJSON_AddNumberToObject(req, "timeout_s", (double)a->timeout_s);
    }
    if (a->retries >= 0) {
        cJSON_AddNumberToObject(req, "retries", (double)a->retries);
    }
    if (a->all) {
        cJSON_AddBoolToObject(req, "all", 1);
    } else {
        cJSON *d = cJSON_AddArrayToObject(req, "devices");
        for (int i = 0; i < a->ndevices; i++) {
            cJSON_AddItemToArray(d, cJSON_CreateString(a->devices[i]));
        }
    }
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    int rc = 1;
    if (text != NULL && call(ctx, u, timeout_s, "POST", "/api/rotation", text, 201, &ans) == 0) {
        if (json) {
            print_json(ans, 1);
        } else {
            print_plan(ans);
            printf("start it with: fleetctl ... rotate start %s\n", fleetctl_jstr(ans, "id"));
        }
        rc = 0;
    }
    cJSON_free(text);
    cJSON_Delete(ans);
    return rc;
}

static int act(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
               const struct fleetctl_rotate_args *a) {
    char path[96];
    char *text = NULL;
    snprintf(path, sizeof path, "/api/rotation/%s/%s", a->plan, a->sub);
    if (strcmp(a->sub, "force") == 0) {
        cJSON *req = cJSON_CreateObject();
        cJSON *d = cJSON_AddArrayToObject(req, "devices");
        for (int i = 0; i < a->ndevices; i++) {
            cJSON_AddItemToArray(d, cJSON_CreateString(a->devices[i]));
        }
        text = cJSON_PrintUnformatted(req);
        cJSON_Delete(req);
        if (text == NULL) {
            return 1;
        }
    }
    cJSON *ans = NULL;
    int rc = call(ctx, u, timeout_s, "POST", path, text, 200, &ans) == 0 ? 0 : 1;
    if (rc == 0) {
        if (json) {
            print_json(ans, 1);
        } else {
            print_summary(ans);
        }
    }
    cJSON_free(text);
    cJSON_Delete(ans);
    return rc;
}

/* GET the plan (id NULL: the newest one). */
static int get_plan(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, const char *id,
                    int devices, cJSON **out) {
    char path[96];
    char newest[32];
    if (id == NULL) {
        cJSON *list = NULL;
        if (call(ctx, u, timeout_s, "GET", "/api/rotation", NULL, 200, &list) != 0) {
            return -1;
        }
        const cJSON *plans = cJSON_GetObjectItemCaseSensitive(list, "plans");
        int n = cJSON_GetArraySize(plans);
        if (n == 0) {
            fprintf(stderr, "fleetctl rotate: the server has no rotation plan\n");
            cJSON_Delete(list);
            return -1;
        }
        snprintf(newest, sizeof newest, "%s",
                 fleetctl_jstr(cJSON_GetArrayItem(plans, n - 1), "id"));
        cJSON_Delete(list);
        id = newest;
    }
    snprintf(path, sizeof path, "/api/rotation/%s%s", id, devices ? "?devices=1" : "");
    return call(ctx, u, timeout_s, "GET", path, NULL, 200, out);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 0 done, 1 aborted or paused (threshold or an operator), -1 still going. */
static int outcome(const cJSON *p) {
    const char *st = fleetctl_jstr(p, "state");
    if (strcmp(st, "done") == 0) {
        return 0;
    }
    if (strcmp(st, "aborted") == 0 ||
        (strcmp(st, "paused") == 0 && strcmp(fleetctl_jstr(p, "pause_reason"), "not started"))) {
        return 1;
    }
    return -1;
}

static void progress(const cJSON *p, double rate, int tty) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(p, "counts");
    if (tty) {
        printf("\r%s %-8s wave %.0f/%d: %.0f/%.0f confirmed, %.1f devices/s, %.0f offline, %.0f "
               "failed   ",
               fleetctl_jstr(p, "id"), fleetctl_jstr(p, "state"), num(p, "wave") + 1,
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "waves")),
               num(c, "confirmed"), num(c, "devices"), rate, num(c, "offline"),
               num(c, "failed") + num(c, "rolled_back"));
        fflush(stdout);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "plan", fleetctl_jstr(p, "id"));
    cJSON_AddStringToObject(o, "state", fleetctl_jstr(p, "state"));
    cJSON_AddStringToObject(o, "pause_reason", fleetctl_jstr(p, "pause_reason"));
    cJSON_AddNumberToObject(o, "wave", num(p, "wave"));
    cJSON_AddNumberToObject(o, "confirmed", num(c, "confirmed"));
    cJSON_AddNumberToObject(o, "devices", num(c, "devices"));
    cJSON_AddNumberToObject(o, "failed", num(c, "failed"));
    cJSON_AddNumberToObject(o, "rolled_back", num(c, "rolled_back"));
    cJSON_AddNumberToObject(o, "offline", num(c, "offline"));
    cJSON_AddNumberToObject(o, "devices_per_s", rate);
    print_json(o, 0);
    cJSON_Delete(o);
}

static int status(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                  const struct fleetctl_rotate_args *a) {
    cJSON *p = NULL;
    if (a->wait_s < 0) {
        if (get_plan(ctx, u, timeout_s, a->plan, 1, &p) != 0) {
            return 1;
        }
        if (json) {
            print_json(p, 1);
        } else {
            print_summary(p);
        }
        cJSON_Delete(p);
        return 0;
    }
    int tty = !json && isatty(STDOUT_FILENO);
    double t0 = now_s(), until = t0 + (double)a->wait_s, c0 = -1;
    char id[32] = "";
    int rc = EXIT_WAIT;
    for (;;) {
        cJSON_Delete(p);
        p = NULL;
        if (get_plan(ctx, u, timeout_s, id[0] ? id : a->plan, 0, &p) != 0) {
            rc = 1;
            goto out;
        }
        snprintf(id, sizeof id, "%s", fleetctl_jstr(p, "id"));
        double conf = num(cJSON_GetObjectItemCaseSensitive(p, "counts"), "confirmed");
        if (c0 < 0) {
            c0 = conf;
        }
        double el = now_s() - t0;
        progress(p, el > 0 ? (conf - c0) / el : 0, tty);
        int o = outcome(p);
        if (o >= 0) {
            rc = o;
            break;
        }
        if (now_s() >= until) {
            break;
        }
        struct timespec ts = {a->poll_ms / 1000, (a->poll_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (tty) {
        printf("\n");
    }
    cJSON_Delete(p);
    p = NULL;
    if (get_plan(ctx, u, timeout_s, id, 1, &p) == 0 && !json && tty) {
        print_summary(p);
    }
    if (rc == EXIT_WAIT) {
        fprintf(stderr, "fleetctl: %s: not finished within %ld s\n", id, a->wait_s);
    }
out:
    cJSON_Delete(p);
    return rc;
}

int fleetctl_rotate_run(SSL_CTX *ctx, const struct fleetctl_url *u, unsigned timeout_s, int json,
                        const struct fleetctl_rotate_args *a) {
    if (strcmp(a->sub, "plan") == 0) {
        return create(ctx, u, timeout_s, json, a);
    }
    if (strcmp(a->sub, "status") == 0) {
        return status(ctx, u, timeout_s, json, a);
    }
    return act(ctx, u, timeout_s, json, a);
}
