/* The device CSV of `provision-keys batch` (fleetkey/batch.h): header row naming the columns,
 * one device per row. Records and fields come from the shared tokenizer (fleetkey/csv.h,
 * strict dialect); this file keeps the columns, their checks and the messages, each naming
 * file:line: column. The whole file is checked before anything is minted, so every problem
 * is reported, not only the first.
 *
 * Fields may hold a Wi-Fi password: every copy is wiped when freed. */
#include "fleetkey/batch.h"
#include "fleetkey/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record {
    long line; /* line the record starts on */
    size_t nf;
    char **f; /* NUL-terminated fields (may hold a password: wiped on free) */
};

static void record_free(struct record *r) {
    for (size_t i = 0; i < r->nf; i++) {
        fk_free_secret(r->f[i], strlen(r->f[i]) + 1);
    }
    free(r->f);
    r->f = NULL;
    r->nf = 0;
}

/* Reads one record (fleetkey/csv.h, strict dialect: RFC 4180). Returns 1 with a record, 0 at
 * the end of input, -1 on error (diag set). */
static int csv_next(struct fk_csv *csv, const char *file, struct record *r, struct fk_diag *diag) {
    memset(r, 0, sizeof *r);
    for (;;) {
        struct fk_csv_field f;
        enum fk_csv_status st = fk_csv_next(csv, &f);
        if (st == FK_CSV_END) {
            return 0;
        }
        if (st == FK_CSV_ERROR) {
            size_t n = csv->error_field + 1;
            long at = csv->error_line;
            switch (csv->error) {
            case FK_CSV_E_UNCLOSED:
                fk_diag_at(diag, FK_E_PARSE, file, at, "field %zu: quoted field is never closed",
                           n);
                break;
            case FK_CSV_E_AFTER_QUOTE:
                fk_diag_at(diag, FK_E_PARSE, file, at,
                           "field %zu: expected ',' or the end of the line after a closing quote",
                           n);
                break;
            case FK_CSV_E_STRAY_QUOTE:
                fk_diag_at(diag, FK_E_PARSE, file, at,
                           "field %zu: expected a quote only at the start of a field "
                           "(write \"\" inside a quoted field)",
                           n);
                break;
            case FK_CSV_E_NUL:
                fk_diag_at(diag, FK_E_PARSE, file, at, "field %zu: NUL byte", n);
                break;
            default:
                fk_diag_at(diag, FK_E_PARSE, file, at, "expected CR LF or LF line ends");
                break;
            }
            goto fail;
        }
        r->line = f.line;
        char **nf = realloc(r->f, (r->nf + 1) * sizeof *nf);
        if (nf == NULL) {
            goto nomem;
        }
        r->f = nf;
        /* Allocated at its final size: no copy of a password is left behind by growing. */
        char *v = malloc(f.len + 1);
        if (v == NULL) {
            goto nomem;
        }
        if (fk_csv_field_value(csv, &f, v, f.len + 1, NULL) != FK_OK) {
            fk_free_secret(v, f.len + 1);
            goto nomem;
        }
        r->f[r->nf++] = v;
        if (f.last) {
            return 1;
        }
    }
nomem:
    fk_diag_set(diag, FK_E_NOMEM, "out of memory reading %s", file);
fail:
    record_free(r);
    return -1;
}

struct fk_batch_csv {
    struct record *recs; /* the fields the devices point into */
    size_t nrecs;
    struct fk_batch_device *devs;
    size_t ndev;
};

static void csv_data_free(struct fk_batch_csv *c) {
    for (size_t i = 0; i < c->nrecs; i++) {
        record_free(&c->recs[i]);
    }
    free(c->recs);
    free(c->devs);
    memset(c, 0, sizeof *c);
}

static void show_value(const char *v, char *out, size_t size) {
    size_t n = strlen(v);
    if (n > 40) {
        snprintf(out, size, "'%.40s...'", v);
    } else {
        snprintf(out, size, "'%s'", v);
    }
    for (char *p = out; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20) {
            *p = '?';
        }
    }
}

/* Where the problems of one CSV go, and how many there were. */
struct reporter {
    fk_batch_error_fn *fn;
    void *user;
    int count;
};

static void errors_report(struct reporter *rep, const struct fk_diag *d) {
    if (rep->fn != NULL) {
        rep->fn(rep->user, d);
    }
    rep->count++;
}

static int cmp_mac(const void *a, const void *b) {
    const struct fk_batch_device *x = *(const struct fk_batch_device *const *)a;
    const struct fk_batch_device *y = *(const struct fk_batch_device *const *)b;
    int c = memcmp(x->mac, y->mac, FK_MAC_LEN);
    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/* Reads and validates the whole CSV. Reports every error; returns the number of errors, or -1
 * when memory runs out (diag set). */
static int csv_load(const char *buf, size_t len, const char *path, struct reporter *rep,
                    struct fk_batch_csv *out, struct fk_diag *diag) {
    struct fk_diag d;
    memset(out, 0, sizeof *out);
    struct fk_csv csv;
    fk_csv_init(&csv, buf, len, FK_CSV_STRICT);
    size_t cap = 0;
    for (;;) {
        struct record r;
        fk_diag_init(&d);
        int got = csv_next(&csv, path, &r, &d);
        if (got < 0) {
            errors_report(rep, &d);
            break; /* after a quoting error the rest cannot be trusted */
        }
        if (got == 0) {
            break;
        }
        if (r.nf == 1 && r.f[0][0] == '\0') {
            record_free(&r); /* blank line */
            continue;
        }
        struct record *nr = fk_grow(out->recs, &cap, out->nrecs, sizeof *nr, 1024);
        if (nr == NULL) {
            record_free(&r);
            fk_diag_set(diag, FK_E_NOMEM, "out of memory");
            return -1;
        }
        out->recs = nr;
        out->recs[out->nrecs++] = r;
        if (out->nrecs > FK_BATCH_ROWS_MAX + 1) {
            fk_diag_at(&d, FK_E_TOOBIG, path, r.line, "more than %u devices", FK_BATCH_ROWS_MAX);
            errors_report(rep, &d);
            break;
        }
    }
    /* After a quoting error the rows read so far are still checked, so one run reports as
     * much as it can. */
    if (out->nrecs == 0) {
        if (rep->count == 0) {
            fk_diag_at(&d, FK_E_PARSE, path, 1,
                       "header: expected a header row naming the "
                       "columns (at least mac)");
            errors_report(rep, &d);
        }
        return rep->count;
    }

    /* Header. */
    const struct record *h = &out->recs[0];
    int col_mac = -1, col_name = -1, col_ssid = -1, col_pass = -1;
    for (size_t i = 0; i < h->nf; i++) {
        char name[64];
        const char *s = h->f[i];
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        snprintf(name, sizeof name, "%s", s);
        for (size_t n = strlen(name); n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t');) {
            name[--n] = '\0';
        }
        int *slot = strcmp(name, "mac") == 0             ? &col_mac
                    : strcmp(name, "name") == 0          ? &col_name
                    : strcmp(name, "wifi_ssid") == 0     ? &col_ssid
                    : strcmp(name, "wifi_password") == 0 ? &col_pass
                                                         : NULL;
        char shown[64];
        show_value(h->f[i], shown, sizeof shown);
        fk_diag_init(&d);
        if (slot == NULL) {
            fk_diag_at(&d, FK_E_PARSE, path, h->line,
                       "header: column %zu: expected one of mac, name, wifi_ssid, wifi_password, "
                       "found %s",
                       i + 1, shown);
            errors_report(rep, &d);
        } else if (*slot >= 0) {
            fk_diag_at(&d, FK_E_PARSE, path, h->line, "header: column %s appears twice", name);
            errors_report(rep, &d);
        } else {
            *slot = (int)i;
        }
    }
    if (col_mac < 0) {
        fk_diag_at(&d, FK_E_PARSE, path, h->line, "header: expected a column named mac");
        errors_report(rep, &d);
    }
    if (col_pass >= 0 && col_ssid < 0) {
        fk_diag_at(&d, FK_E_PARSE, path, h->line,
                   "header: wifi_password: expected a wifi_ssid column too");
        errors_report(rep, &d);
    }
    if (col_mac < 0 || (col_pass >= 0 && col_ssid < 0)) {
        return rep->count;
    }

    /* Rows. */
    out->devs = calloc(out->nrecs, sizeof *out->devs);
    if (out->devs == NULL) {
        fk_diag_set(diag, FK_E_NOMEM, "out of memory");
        return -1;
    }
    for (size_t i = 1; i < out->nrecs; i++) {
        const struct record *r = &out->recs[i];
        struct fk_batch_device *dv = &out->devs[out->ndev];
        fk_diag_init(&d);
        if (r->nf != h->nf) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line,
                       "expected %zu fields as in the header, found %zu", h->nf, r->nf);
            errors_report(rep, &d);
            continue;
        }
        dv->line = r->line;
        const char *mac = r->f[col_mac];
        char mac_trim[32];
        while (*mac == ' ') {
            mac++;
        }
        snprintf(mac_trim, sizeof mac_trim, "%.31s", mac);
        for (size_t n = strlen(mac_trim); n > 0 && mac_trim[n - 1] == ' ';) {
            mac_trim[--n] = '\0';
        }
        struct fk_diag why;
        fk_diag_init(&why);
        if (strlen(mac) >= sizeof mac_trim || fk_keys_mac_parse(mac_trim, dv->mac, &why) != FK_OK) {
            char shown[64];
            show_value(r->f[col_mac], shown, sizeof shown);
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "mac: %s, found %s",
                       why.msg[0] != '\0' ? why.msg : "expected AA:BB:CC:DD:EE:FF", shown);
            errors_report(rep, &d);
            continue;
        }
        fk_keys_device_id(dv->mac, dv->id);
        dv->name = col_name >= 0 && r->f[col_name][0] != '\0' ? r->f[col_name] : NULL;
        dv->ssid = col_ssid >= 0 && r->f[col_ssid][0] != '\0' ? r->f[col_ssid] : NULL;
        dv->pass = col_pass >= 0 ? r->f[col_pass] : "";
        if (dv->name != NULL && strlen(dv->name) > FK_KEYS_NAME_MAX) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "name: expected at most %d bytes",
                       FK_KEYS_NAME_MAX);
            errors_report(rep, &d);
            continue;
        }
        if (dv->ssid != NULL && strlen(dv->ssid) > FK_KEYS_SSID_MAX) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "wifi_ssid: expected 1 to %d bytes",
                       FK_KEYS_SSID_MAX);
            errors_report(rep, &d);
            continue;
        }
        if (strlen(dv->pass) > FK_KEYS_WIFI_PASS_MAX) {
            fk_diag_at(&d, FK_E_PARSE, path, r->line, "wifi_password: expected at most %d bytes",
                       FK_KEYS_WIFI_PASS_MAX);
            errors_report(rep, &d);
            continue;
        }
        if (dv->ssid == NULL && dv->pass[0] != '\0') {
            fk_diag_at(&d, FK_E_PARSE, path, r->line,
                       "wifi_password: expected a wifi_ssid on the same row");
            errors_report(rep, &d);
            continue;
        }
        out->ndev++;
    }
    if (rep->count == 0 && out->ndev == 0) {
        fk_diag_at(&d, FK_E_PARSE, path, 2, "expected at least one device row");
        errors_report(rep, &d);
    }
    /* Duplicates: sort pointers by MAC (then line) and compare neighbours. */
    struct fk_batch_device **by_mac = malloc(out->ndev * sizeof *by_mac);
    if (by_mac == NULL) {
        fk_diag_set(diag, FK_E_NOMEM, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < out->ndev; i++) {
        by_mac[i] = &out->devs[i];
    }
    qsort(by_mac, out->ndev, sizeof *by_mac, cmp_mac);
    for (size_t i = 1; i < out->ndev; i++) {
        if (memcmp(by_mac[i]->mac, by_mac[i - 1]->mac, FK_MAC_LEN) == 0) {
            char m[18];
            fk_keys_mac_format(by_mac[i]->mac, m);
            fk_diag_at(&d, FK_E_PARSE, path, by_mac[i]->line,
                       "mac: expected a MAC not used before, found %s (already on line %ld)", m,
                       by_mac[i - 1]->line);
            errors_report(rep, &d);
        }
    }
    free(by_mac);
    return rep->count;
}

enum fk_err fk_batch_csv_parse(const char *buf, size_t len, const char *name,
                               fk_batch_error_fn *on_error, void *user, struct fk_batch_csv **out,
                               int *errors, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct reporter rep = {on_error, user, 0};
    struct fk_batch_csv *c = NULL;
    *out = NULL;
    *errors = 0;
    c = calloc(1, sizeof *c);
    FK_ENSURE(c != NULL, fk_diag_set(diag, FK_E_NOMEM, "out of memory"));
    int n = csv_load(buf, len, name != NULL ? name : "<csv>", &rep, c, diag);
    FK_ENSURE(n >= 0, FK_E_NOMEM);
    *errors = n;
    if (n == 0) {
        *out = c;
        c = NULL;
    }
    rc = FK_OK;
out:
    fk_batch_csv_free(c);
    return rc;
}

enum fk_err fk_batch_csv_load(const char *path, fk_batch_error_fn *on_error, void *user,
                              struct fk_batch_csv **out, int *errors, struct fk_diag *diag) {
    uint8_t *buf = NULL;
    size_t len = 0;
    *out = NULL;
    *errors = 0;
    enum fk_err rc = fk_file_read(path, FK_BATCH_CSV_MAX, &buf, &len, diag);
    if (rc != FK_OK) {
        return rc;
    }
    rc = fk_batch_csv_parse((const char *)buf, len, path, on_error, user, out, errors, diag);
    fk_free_secret(buf, len);
    return rc;
}

const struct fk_batch_device *fk_batch_csv_devices(const struct fk_batch_csv *c, size_t *n) {
    *n = c != NULL ? c->ndev : 0;
    return c != NULL ? c->devs : NULL;
}

void fk_batch_csv_free(struct fk_batch_csv *c) {
    if (c == NULL) {
        return;
    }
    csv_data_free(c);
    free(c);
}
