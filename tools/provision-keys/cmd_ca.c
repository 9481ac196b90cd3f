/* provision-keys ca init|issue|revoke|crl: the control-plane CA (docs/pki.md). Parses
 * arguments, calls the pki library, prints what was made (never key material). */
#include "cli.h"
#include "fleetkey/inventory.h"
#include "fleetkey/pki.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char ca_help[] =
    "usage: provision-keys ca init   --dir DIR [--name NAME] [--days N] [--passphrase-file F]\n"
    "       provision-keys ca issue  --dir DIR (--device ID | --server HOST [--san SAN]... |\n"
    "                                --mobile NAME | --operator NAME) [--days N] [--csr FILE]\n"
    "                                [--replace] [--not-before T --not-after T]\n"
    "       provision-keys ca revoke --dir DIR (SERIAL | --device ID | --server HOST |\n"
    "                                --mobile NAME | --operator NAME) [--reason REASON]\n"
    "                                [--inventory DB]\n"
    "       provision-keys ca crl    --dir DIR --out FILE [--days N]\n"
    "                                [--root [--passphrase-file F] [--root-days N]]\n"
    "\n"
    "init    creates a root CA and an issuing CA (ECDSA P-256) in DIR; refuses to touch an\n"
    "        existing CA. --days is the issuing CA's validity (default 3650); the root gets\n"
    "        twice that. --passphrase-file encrypts the root key (first line of F).\n"
    "issue   signs a certificate: device (CN=ID, URI urn:fleetkey:device:ID, clientAuth),\n"
    "        server (DNS SANs: HOST and each --san DNS:NAME | IP:ADDR, serverAuth), mobile or\n"
    "        operator (clientAuth). Without --csr a P-256 key is generated and written 0600\n"
    "        next to the certificate in DIR/<kind>s/; with --csr only the request's public\n"
    "        key is used (signature verified; a CN in it must equal the name). --replace\n"
    "        replaces the current certificate of that name (the old one stays valid until\n"
    "        revoked). --not-before/--not-after (RFC 3339 UTC or @UNIXSECONDS) set an explicit\n"
    "        validity, e.g. for expired test certificates.\n"
    "revoke  marks a certificate revoked by serial, or every unrevoked certificate of a name.\n"
    "        REASON: unspecified keyCompromise cACompromise affiliationChanged superseded\n"
    "        cessationOfOperation privilegeWithdrawn. With --inventory the revocation is also\n"
    "        recorded in the fleet inventory: an audit entry per certificate, and device\n"
    "        credentials with the certificate's fingerprint marked revoked.\n"
    "crl     writes the issuing CA's CRL (valid --days, default 7) followed by the root CRL to\n"
    "        FILE. --root first re-signs the root CRL with the root key.\n";

enum {
    OPT_DIR = 256,
    OPT_NAME,
    OPT_DAYS,
    OPT_PASSFILE,
    OPT_DEVICE,
    OPT_SERVER,
    OPT_MOBILE,
    OPT_OPERATOR,
    OPT_SAN,
    OPT_CSR,
    OPT_REPLACE,
    OPT_NOT_BEFORE,
    OPT_NOT_AFTER,
    OPT_REASON,
    OPT_OUT,
    OPT_ROOT,
    OPT_ROOT_DAYS,
    OPT_INVENTORY,
    OPT_HELP,
};

static const struct option ca_opts[] = {
    {"dir", required_argument, NULL, OPT_DIR},
    {"name", required_argument, NULL, OPT_NAME},
    {"days", required_argument, NULL, OPT_DAYS},
    {"passphrase-file", required_argument, NULL, OPT_PASSFILE},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"server", required_argument, NULL, OPT_SERVER},
    {"mobile", required_argument, NULL, OPT_MOBILE},
    {"operator", required_argument, NULL, OPT_OPERATOR},
    {"san", required_argument, NULL, OPT_SAN},
    {"csr", required_argument, NULL, OPT_CSR},
    {"replace", no_argument, NULL, OPT_REPLACE},
    {"not-before", required_argument, NULL, OPT_NOT_BEFORE},
    {"not-after", required_argument, NULL, OPT_NOT_AFTER},
    {"reason", required_argument, NULL, OPT_REASON},
    {"out", required_argument, NULL, OPT_OUT},
    {"root", no_argument, NULL, OPT_ROOT},
    {"root-days", required_argument, NULL, OPT_ROOT_DAYS},
    {"inventory", required_argument, NULL, OPT_INVENTORY},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct ca_args {
    const char *dir;
    const char *name;
    const char *passfile;
    const char *subject; /* the --device/--server/... value */
    int kind;            /* enum fk_pki_kind, -1 when none given */
    const char *sans[FK_PKI_MAX_SANS];
    size_t n_sans;
    const char *csr;
    const char *reason;
    const char *out;
    const char *serial;
    const char *inventory;
    unsigned days;
    unsigned root_days;
    int replace;
    int root;
    long long not_before;
    long long not_after;
};

static int parse_days(const char *cmd, const char *s, unsigned *out) {
    unsigned long long v = 0;
    if (fk_cli_parse_size(s, &v) != 0 || v == 0 || v > FK_PKI_MAX_DAYS) {
        return fk_cli_usage_error(cmd, "--days '%s': a whole number of days, 1..%d", s,
                                  FK_PKI_MAX_DAYS);
    }
    *out = (unsigned)v;
    return 0;
}

/* "@1700000000" or "2025-01-15T10:30:00Z". */
static int parse_time(const char *s, long long *out) {
    if (s[0] == '@') {
        unsigned long long v = 0;
        if (fk_cli_parse_size(s + 1, &v) != 0 || v > (1ULL << 40)) {
            return -1;
        }
        *out = (long long)v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    char z = 0;
    int used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &used) != 7 ||
        z != 'Z' || s[used] != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (long long)timegm(&tm);
    return 0;
}

static int set_kind(struct ca_args *a, const char *cmd, int kind, const char *v) {
    if (a->kind >= 0) {
        return fk_cli_usage_error(cmd, "give only one of --device, --server, --mobile, "
                                       "--operator");
    }
    a->kind = kind;
    a->subject = v;
    return 0;
}

static int parse(int argc, char **argv, const char *cmd, struct ca_args *a) {
    memset(a, 0, sizeof *a);
    a->kind = -1;
    optind = 0; /* glibc: full re-initialisation, argv[0] is the subcommand */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", ca_opts, NULL)) != -1) {
        int r = 0;
        switch (c) {
        case OPT_DIR:
            a->dir = optarg;
            break;
        case OPT_NAME:
            a->name = optarg;
            break;
        case OPT_DAYS:
            r = parse_days(cmd, optarg, &a->days);
            break;
        case OPT_ROOT_DAYS:
            r = parse_days(cmd, optarg, &a->root_days);
            break;
        case OPT_PASSFILE:
            a->passfile = optarg;
            break;
        case OPT_DEVICE:
            r = set_kind(a, cmd, FK_PKI_DEVICE, optarg);
            break;
        case OPT_SERVER:
            r = set_kind(a, cmd, FK_PKI_SERVER, optarg);
            break;
        case OPT_MOBILE:
            r = set_kind(a, cmd, FK_PKI_MOBILE, optarg);
            break;
        case OPT_OPERATOR:
            r = set_kind(a, cmd, FK_PKI_OPERATOR, optarg);
            break;
        case OPT_SAN:
            if (a->n_sans >= FK_PKI_MAX_SANS) {
                return fk_cli_usage_error(cmd, "at most %d --san", FK_PKI_MAX_SANS);
            }
            a->sans[a->n_sans++] = optarg;
            break;
        case OPT_CSR:
            a->csr = optarg;
            break;
        case OPT_REPLACE:
            a->replace = 1;
            break;
        case OPT_NOT_BEFORE:
        case OPT_NOT_AFTER:
            if (parse_time(optarg, c == OPT_NOT_BEFORE ? &a->not_before : &a->not_after) != 0) {
                return fk_cli_usage_error(cmd, "'%s': expected YYYY-MM-DDTHH:MM:SSZ or @SECONDS",
                                          optarg);
            }
            break;
        case OPT_REASON:
            a->reason = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_ROOT:
            a->root = 1;
            break;
        case OPT_INVENTORY:
            a->inventory = optarg;
            break;
        case OPT_HELP:
            fputs(ca_help, stdout);
            return -1;
        case ':':
            return fk_cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            return fk_cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
        if (r != 0) {
            return r;
        }
    }
    if (optind < argc) {
        a->serial = argv[optind++];
    }
    if (optind < argc) {
        return fk_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    }
    if (a->dir == NULL) {
        return fk_cli_usage_error(cmd, "--dir is required");
    }
    return 0;
}

static int cmd_init(int argc, char **argv) {
    struct ca_args a;
    int r = parse(argc, argv, "ca init", &a);
    if (r != 0) {
        return r < 0 ? FK_EXIT_OK : r;
    }
    if (a.kind >= 0 || a.serial != NULL || a.csr != NULL || a.out != NULL) {
        return fk_cli_usage_error("ca init", "only --dir, --name, --days, --passphrase-file");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_pki_init_opts o = {a.name, a.days, NULL, 0};
    char *pass = NULL;
    size_t pass_len = 0;
    enum fk_err rc = FK_OK;
    if (a.passfile != NULL) {
        rc = fk_pki_read_secret_file(a.passfile, &pass, &pass_len, &diag);
        o.passphrase = pass;
        o.passphrase_len = pass_len;
    }
    if (rc == FK_OK) {
        rc = fk_pki_ca_init(a.dir, &o, &diag);
    }
    fk_free_secret(pass, pass_len);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    printf("CA created in %s: root.crt.pem, issuing.crt.pem, ca-chain.pem, root.crl.pem\n",
           a.dir);
    return FK_EXIT_OK;
}

static int cmd_issue(int argc, char **argv) {
    struct ca_args a;
    int r = parse(argc, argv, "ca issue", &a);
    if (r != 0) {
        return r < 0 ? FK_EXIT_OK : r;
    }
    if (a.kind < 0) {
        return fk_cli_usage_error("ca issue", "one of --device, --server, --mobile, --operator "
                                              "is required");
    }
    if (a.serial != NULL) {
        return fk_cli_usage_error("ca issue", "unexpected argument '%s'", a.serial);
    }
    if ((a.not_before != 0) != (a.not_after != 0) || ((a.not_before != 0) && a.days != 0)) {
        return fk_cli_usage_error("ca issue", "--not-before and --not-after go together, "
                                              "without --days");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_pki_ca *ca = NULL;
    struct fk_pki_issued *is = NULL;
    uint8_t *csr = NULL;
    size_t csr_len = 0;
    enum fk_err rc = FK_OK;
    if (a.csr != NULL) {
        rc = fk_file_read(a.csr, FK_PKI_CSR_MAX, &csr, &csr_len, &diag);
    }
    if (rc == FK_OK) {
        rc = fk_pki_ca_open(a.dir, &ca, &diag);
    }
    if (rc == FK_OK) {
        struct fk_pki_issue_opts o;
        memset(&o, 0, sizeof o);
        o.kind = (enum fk_pki_kind)a.kind;
        o.name = a.subject;
        o.sans = a.sans;
        o.n_sans = a.n_sans;
        o.days = a.days;
        o.not_before = a.not_before;
        o.not_after = a.not_after;
        o.csr = csr;
        o.csr_len = csr_len;
        /* Refuse before issuing when the name is taken, so no orphan serial is minted
         * (fk_pki_issued_save checks again). */
        char sub[32];
        char *d = NULL;
        char *crt = NULL;
        snprintf(sub, sizeof sub, "%ss", fk_pki_kind_name(o.kind));
        rc = fk_path_join(a.dir, sub, "", &d);
        if (rc == FK_OK) {
            rc = fk_path_join(d, a.subject, ".crt.pem", &crt);
        }
        if (rc == FK_OK && !a.replace && fk_pki_name_valid(a.subject) &&
            access(crt, F_OK) == 0) {
            rc = fk_diag_at(&diag, FK_E_EXISTS, crt, 0,
                            "a certificate for this name exists (--replace to replace it)");
        }
        free(d);
        free(crt);
        if (rc == FK_OK) {
            rc = fk_pki_issue(ca, &o, &is, &diag);
        }
    }
    if (rc == FK_OK) {
        rc = fk_pki_issued_save(ca, is, a.replace, &diag);
    }
    if (rc == FK_OK) {
        char nb[21];
        char na[21];
        fk_time_rfc3339(fk_pki_issued_not_before(is), nb);
        fk_time_rfc3339(fk_pki_issued_not_after(is), na);
        printf("issued %s certificate for %s\n  serial      %s\n  fingerprint %s\n"
               "  valid       %s .. %s\n  files       %s/%ss/%s.crt.pem%s, .chain.pem\n",
               fk_pki_kind_name(fk_pki_issued_kind(is)), fk_pki_issued_name(is),
               fk_pki_issued_serial(is), fk_pki_issued_fingerprint(is), nb, na, a.dir,
               fk_pki_kind_name(fk_pki_issued_kind(is)), fk_pki_issued_name(is),
               fk_pki_issued_key_pem(is) != NULL ? ", .key.pem (0600)" : "");
    }
    fk_pki_issued_free(is);
    fk_pki_ca_free(ca);
    free(csr);
    return rc == FK_OK ? FK_EXIT_OK : fk_cli_fail(&diag, rc);
}

/* The certificates one revoke call just marked: by serial, or by (kind, name) and the
 * revocation time we passed. */
struct revoked_set {
    const char *serial; /* normalised, or NULL */
    int kind;
    const char *name;
    int64_t when;
    struct fk_pki_cert_info *items; /* grows: a name may have been re-issued many times */
    size_t n, cap;
    int nomem;
};

static int collect_revoked(void *user, const struct fk_pki_cert_info *info) {
    struct revoked_set *set = user;
    int hit = info->revoked &&
              (set->serial != NULL
                   ? strcmp(info->serial, set->serial) == 0
                   : ((int)info->kind == set->kind && strcmp(info->name, set->name) == 0 &&
                      info->revoked_at == set->when));
    if (!hit) {
        return 0;
    }
    struct fk_pki_cert_info *v = fk_grow(set->items, &set->cap, set->n, sizeof *v, 16);
    if (v == NULL) {
        set->nomem = 1;
        return 1; /* stop: an incomplete record would be a silent lie */
    }
    set->items = v;
    set->items[set->n++] = *info;
    return 0;
}

struct cred_match {
    const char *fingerprint;
    char kinds[8][FK_INV_ID_SIZE];
    unsigned versions[8];
    size_t n;
};

static int match_credential(void *user, const struct fk_inv_credential *c) {
    struct cred_match *m = user;
    if (strcmp(c->fingerprint, m->fingerprint) == 0 && strcmp(c->state, "revoked") != 0 &&
        m->n < sizeof m->versions / sizeof m->versions[0]) {
        snprintf(m->kinds[m->n], sizeof m->kinds[m->n], "%s", c->kind);
        m->versions[m->n++] = c->version;
    }
    return 0;
}

/* Records the revocations in the inventory, in one transaction: an audit row each, and the
 * device's credential rows that carry the certificate's fingerprint set to "revoked". */
static enum fk_err record_in_inventory(const char *db, const struct revoked_set *set,
                                       struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_inventory *inv = NULL;
    FK_GUARD(fk_inventory_open(db, &inv, diag));
    FK_GUARD(fk_inventory_begin(inv, diag));
    for (size_t i = 0; i < set->n; i++) {
        const struct fk_pki_cert_info *c = &set->items[i];
        char detail[512];
        snprintf(detail, sizeof detail,
                 "{\"cert_kind\":\"%s\",\"serial\":\"%s\",\"fingerprint\":\"%s\","
                 "\"reason\":\"%s\"}",
                 fk_pki_kind_name(c->kind), c->serial, c->fingerprint,
                 fk_pki_reason_name(c->reason));
        FK_GUARD(fk_inventory_audit_append(inv, "provision-keys", "pki.cert_revoked", c->name,
                                           detail, diag));
        if (c->kind != FK_PKI_DEVICE) {
            continue;
        }
        struct cred_match m;
        memset(&m, 0, sizeof m);
        m.fingerprint = c->fingerprint;
        FK_GUARD(fk_inventory_credential_list(inv, c->name, match_credential, &m, diag));
        for (size_t k = 0; k < m.n; k++) {
            FK_GUARD(fk_inventory_credential_set_state(inv, c->name, m.kinds[k], m.versions[k],
                                                       "revoked", diag));
        }
    }
    FK_GUARD(fk_inventory_commit(inv, diag));
    rc = FK_OK;
out:
    fk_inventory_close(inv); /* rolls back an unfinished transaction */
    return rc;
}

static int cmd_revoke(int argc, char **argv) {
    struct ca_args a;
    int r = parse(argc, argv, "ca revoke", &a);
    if (r != 0) {
        return r < 0 ? FK_EXIT_OK : r;
    }
    if ((a.kind >= 0) == (a.serial != NULL)) {
        return fk_cli_usage_error("ca revoke", "give a SERIAL or one of --device, --server, "
                                               "--mobile, --operator");
    }
    enum fk_pki_reason reason = FK_PKI_REASON_UNSPECIFIED;
    if (a.reason != NULL && fk_pki_reason_parse(a.reason, &reason) != FK_OK) {
        return fk_cli_usage_error("ca revoke", "unknown --reason '%s'", a.reason);
    }
    struct revoked_set *set = calloc(1, sizeof *set);
    if (set == NULL) {
        return fk_cli_fail(NULL, FK_E_NOMEM);
    }
    char norm[FK_PKI_SERIAL_HEX_LEN * 2 + 1] = "";
    set->kind = a.kind;
    set->name = a.subject;
    set->when = (int64_t)time(NULL);
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_pki_ca *ca = NULL;
    size_t n = 1;
    enum fk_err rc = fk_pki_ca_open(a.dir, &ca, &diag);
    if (rc == FK_OK && a.serial != NULL) {
        rc = fk_pki_revoke_serial(ca, a.serial, reason, set->when, &diag);
        if (rc == FK_OK) {
            rc = fk_pki_serial_parse(a.serial, norm);
            set->serial = norm;
        }
    } else if (rc == FK_OK) {
        rc = fk_pki_revoke_name(ca, (enum fk_pki_kind)a.kind, a.subject, reason, set->when, &n,
                                &diag);
    }
    if (rc == FK_OK) {
        printf("revoked %zu certificate%s (%s); run 'provision-keys ca crl' to publish\n", n,
               n == 1 ? "" : "s", fk_pki_reason_name(reason));
    }
    if (rc == FK_OK && a.inventory != NULL) {
        rc = fk_pki_list(ca, collect_revoked, set, &diag);
        if (rc == FK_OK && set->nomem) {
            rc = fk_diag_set(&diag, FK_E_NOMEM, "out of memory listing the revoked certificates");
        }
        if (rc == FK_OK) {
            rc = record_in_inventory(a.inventory, set, &diag);
        }
        char where[512]; /* a URI's password is masked */
        fk_inventory_location_display(a.inventory, where, sizeof where);
        if (rc != FK_OK) {
            fprintf(stderr, "provision-keys ca revoke: the CA revocation stands, but recording "
                            "it in %s failed\n",
                    where);
        } else {
            printf("recorded in %s\n", where);
        }
    }
    fk_pki_ca_free(ca);
    free(set->items);
    free(set);
    return rc == FK_OK ? FK_EXIT_OK : fk_cli_fail(&diag, rc);
}

static int cmd_crl(int argc, char **argv) {
    struct ca_args a;
    int r = parse(argc, argv, "ca crl", &a);
    if (r != 0) {
        return r < 0 ? FK_EXIT_OK : r;
    }
    if (a.out == NULL) {
        return fk_cli_usage_error("ca crl", "--out FILE is required");
    }
    struct fk_diag diag;
    fk_diag_init(&diag);
    struct fk_pki_ca *ca = NULL;
    char *pem = NULL;
    size_t len = 0;
    char *pass = NULL;
    size_t pass_len = 0;
    enum fk_err rc = fk_pki_ca_open(a.dir, &ca, &diag);
    if (rc == FK_OK && a.root) {
        if (a.passfile != NULL) {
            rc = fk_pki_read_secret_file(a.passfile, &pass, &pass_len, &diag);
        }
        if (rc == FK_OK) {
            rc = fk_pki_root_crl_refresh(ca, pass, pass_len, a.root_days, &diag);
        }
    }
    if (rc == FK_OK) {
        rc = fk_pki_crl(ca, 0, a.days, &pem, &len, &diag);
    }
    if (rc == FK_OK) {
        rc = fk_file_write_atomic(a.out, pem, len, 0644, 0, &diag);
    }
    fk_free_secret(pass, pass_len);
    free(pem);
    fk_pki_ca_free(ca);
    if (rc != FK_OK) {
        return fk_cli_fail(&diag, rc);
    }
    printf("CRL written to %s (issuing CA CRL, then the root CRL)\n", a.out);
    return FK_EXIT_OK;
}

int fk_cmd_ca(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(ca_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? FK_EXIT_USAGE : FK_EXIT_OK;
    }
    if (strcmp(argv[1], "init") == 0) {
        return cmd_init(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "issue") == 0) {
        return cmd_issue(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "revoke") == 0) {
        return cmd_revoke(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "crl") == 0) {
        return cmd_crl(argc - 1, argv + 1);
    }
    return fk_cli_usage_error("ca", "unknown subcommand '%s' (init, issue, revoke, crl)",
                              argv[1]);
}
