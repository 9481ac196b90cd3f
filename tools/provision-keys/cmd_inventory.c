/* provision-keys inventory: read-only queries of the fleet inventory and the audit check.
 *   list            one line per device (or a JSON array)
 *   show ID         a device, its credentials and its audit entries
 *   verify-audit    walks the hash chain; exit 1 when any row was edited, deleted, inserted,
 *                   reordered or the tail was cut off
 * The inventory holds fingerprints only, so nothing here can print a secret.
 * Exit: 0 done / chain intact, 1 failed / not found / chain broken, 2 bad command line. */
#include "cli.h"
#include "fleetkey/inventory.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: provision-keys inventory [--inventory PATH] [--json] list\n"
    "       provision-keys inventory [--inventory PATH] [--json] show DEVICE_ID\n"
    "       provision-keys inventory [--inventory PATH] [--json] verify-audit\n"
    "\n"
    "Queries the fleet inventory (default keys/inventory.db; PATH may be a PostgreSQL URI,\n"
    "postgresql://USER@HOST/DB, see docs/provision-keys.md).\n"
    "  list          devices: id, MAC, state, name, created\n"
    "  show ID       one device with its credentials (kind, version, fingerprint, state) and\n"
    "                its audit entries\n"
    "  verify-audit  checks the audit log's hash chain and prints its head (seq and hash):\n"
    "                keep that line somewhere else to detect a wholesale rewrite later\n";

enum { OPT_INVENTORY = 256, OPT_JSON, OPT_HELP };

static const struct option opts[] = {
    {"inventory", required_argument, NULL, OPT_INVENTORY},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static void add_opt_str(cJSON *o, const char *k, const char *v) {
    if (v[0] == '\0') {
        cJSON_AddNullToObject(o, k);
    } else {
        cJSON_AddStringToObject(o, k, v);
    }
}

static cJSON *device_json(const struct fk_inv_device *d) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(o, "device_id", d->id);
    cJSON_AddStringToObject(o, "mac", d->mac);
    add_opt_str(o, "name", d->name);
    cJSON_AddStringToObject(o, "state", d->state);
    add_opt_str(o, "manifest", d->manifest);
    add_opt_str(o, "manifest_sha256", d->manifest_sha256);
    cJSON_AddStringToObject(o, "created_at", d->created_at);
    add_opt_str(o, "provisioned_at", d->provisioned_at);
    return o;
}

static int print_json(cJSON *o) {
    char *text = o != NULL ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (text == NULL) {
        fprintf(stderr, "provision-keys: out of memory\n");
        return FK_EXIT_FAIL;
    }
    puts(text);
    cJSON_free(text);
    return FK_EXIT_OK;
}

struct list_ctx {
    cJSON *arr;
    size_t n;
};

static int list_one(void *user, const struct fk_inv_device *d) {
    struct list_ctx *c = user;
    c->n++;
    if (c->arr != NULL) {
        cJSON_AddItemToArray(c->arr, device_json(d));
    } else {
        printf("%-18s  %-17s  %-11s  %-20s  %s\n", d->id, d->mac, d->state, d->created_at, d->name);
    }
    return 0;
}

static int cred_one(void *user, const struct fk_inv_credential *c) {
    cJSON *arr = user;
    if (arr != NULL) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", c->kind);
        cJSON_AddNumberToObject(o, "version", c->version);
        cJSON_AddStringToObject(o, "fingerprint", c->fingerprint);
        cJSON_AddStringToObject(o, "state", c->state);
        cJSON_AddStringToObject(o, "created_at", c->created_at);
        add_opt_str(o, "expires_at", c->expires_at);
        cJSON_AddItemToArray(arr, o);
    } else {
        printf("  %-10s v%-3u %-24s %-8s created %s%s%s\n", c->kind, c->version, c->fingerprint,
               c->state, c->created_at, c->expires_at[0] != '\0' ? " expires " : "", c->expires_at);
    }
    return 0;
}

struct audit_ctx {
    const char *subject;
    cJSON *arr;
};

static int audit_one(void *user, const struct fk_inv_audit *a) {
    struct audit_ctx *c = user;
    if (strcmp(a->subject, c->subject) != 0) {
        return 0;
    }
    if (c->arr != NULL) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "seq", (double)a->seq);
        cJSON_AddStringToObject(o, "at", a->at);
        cJSON_AddStringToObject(o, "actor", a->actor);
        cJSON_AddStringToObject(o, "kind", a->kind);
        cJSON_AddStringToObject(o, "hash", a->hash);
        cJSON_AddItemToArray(c->arr, o);
    } else {
        printf("  #%-6lld %s  %-16s by %s\n", a->seq, a->at, a->kind, a->actor);
    }
    return 0;
}

int fk_cmd_inventory(int argc, char **argv) {
    const char *path = "keys/inventory.db";
    int json = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_INVENTORY:
            path = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_HELP:
            fputs(help, stdout);
            return FK_EXIT_OK;
        default:
            return fk_cli_usage_error("inventory", "unknown option");
        }
    }
    if (optind >= argc) {
        return fk_cli_usage_error("inventory", "expected list, show ID or verify-audit");
    }
    const char *sub = argv[optind];
    int nargs = argc - optind - 1;
    if ((strcmp(sub, "list") == 0 || strcmp(sub, "verify-audit") == 0) ? nargs != 0
        : strcmp(sub, "show") == 0                                     ? nargs != 1
                                                                       : 1) {
        return fk_cli_usage_error("inventory", "expected list, show ID or verify-audit");
    }
    /* Querying must not create an empty database where the user mistyped a path. */
    if (!fk_inventory_is_postgresql(path) && access(path, F_OK) != 0) {
        fprintf(stderr, "provision-keys: %s: no inventory here (use --inventory PATH)\n", path);
        return FK_EXIT_FAIL;
    }
    struct fk_diag diag;
    struct fk_inventory *inv = NULL;
    enum fk_err rc = FK_E_INTERNAL;
    int ret = FK_EXIT_FAIL;
    fk_diag_init(&diag);
    FK_GUARD(fk_inventory_open(path, &inv, &diag));

    if (strcmp(sub, "list") == 0) {
        struct list_ctx lc = {json ? cJSON_CreateArray() : NULL, 0};
        if (!json) {
            printf("%-18s  %-17s  %-11s  %-20s  %s\n", "DEVICE", "MAC", "STATE", "CREATED", "NAME");
        }
        rc = fk_inventory_device_list(inv, list_one, &lc, &diag);
        if (rc != FK_OK) {
            cJSON_Delete(lc.arr);
            goto out;
        }
        ret = json ? print_json(lc.arr) : FK_EXIT_OK;
        if (!json) {
            printf("%zu device(s)\n", lc.n);
        }
    } else if (strcmp(sub, "show") == 0) {
        const char *id = argv[optind + 1];
        struct fk_inv_device d;
        FK_GUARD(fk_inventory_device_get(inv, id, &d, &diag));
        cJSON *o = json ? device_json(&d) : NULL;
        cJSON *creds = json ? cJSON_AddArrayToObject(o, "credentials") : NULL;
        cJSON *audit = json ? cJSON_AddArrayToObject(o, "audit") : NULL;
        if (!json) {
            printf("%s  MAC %s  %s  created %s%s%s\n", d.id, d.mac, d.state, d.created_at,
                   d.provisioned_at[0] != '\0' ? "  provisioned " : "", d.provisioned_at);
            if (d.name[0] != '\0') {
                printf("name: %s\n", d.name);
            }
            if (d.manifest[0] != '\0') {
                printf("manifest: %s (sha256 %s)\n", d.manifest, d.manifest_sha256);
            }
            printf("credentials:\n");
        }
        rc = fk_inventory_credential_list(inv, id, cred_one, creds, &diag);
        if (rc == FK_OK) {
            if (!json) {
                printf("audit:\n");
            }
            struct audit_ctx ac = {id, audit};
            rc = fk_inventory_audit_list(inv, audit_one, &ac, &diag);
        }
        if (rc != FK_OK) {
            cJSON_Delete(o);
            goto out;
        }
        ret = json ? print_json(o) : FK_EXIT_OK;
    } else {
        struct fk_inv_audit_report rep;
        rc = fk_inventory_audit_verify(inv, &rep, &diag);
        if (rc != FK_OK && rc != FK_E_VERIFY) {
            goto out;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddBoolToObject(o, "ok", rc == FK_OK);
            cJSON_AddNumberToObject(o, "rows", (double)rep.rows);
            cJSON_AddNumberToObject(o, "head_seq", (double)rep.head_seq);
            add_opt_str(o, "head_hash", rep.head_hash);
            if (rc != FK_OK) {
                cJSON_AddNumberToObject(o, "bad_seq", (double)rep.bad_seq);
                cJSON_AddStringToObject(o, "problem", rep.problem);
            }
            print_json(o);
        } else if (rc == FK_OK) {
            printf("audit log intact: %lld rows, head #%lld %s\n", rep.rows, rep.head_seq,
                   rep.head_hash[0] != '\0' ? rep.head_hash : "(empty)");
        } else {
            printf("audit log BROKEN: %s\n", rep.problem);
        }
        ret = rc == FK_OK ? FK_EXIT_OK : FK_EXIT_FAIL;
        rc = FK_OK;
    }
    rc = FK_OK;
out:
    if (rc != FK_OK) {
        ret = fk_cli_fail(&diag, rc);
    }
    fk_inventory_close(inv);
    return ret;
}
