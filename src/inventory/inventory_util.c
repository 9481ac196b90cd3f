/* Helpers shared by the inventory's backends (inventory_internal.h). Kept out of inventory.c,
 * which dispatches to the backends: the backends depend on these, inventory.c on them. */
#include "inventory_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *head;
    int cols;
    const char *tail;
} many_sql[FK_INV_MANY_COUNT] = {
    [FK_INV_MANY_DEV] = {"INSERT INTO devices(id, mac, name, state, manifest, manifest_sha256,"
                         " created_at, provisioned_at) VALUES",
                         8,
                         " ON CONFLICT(id) DO UPDATE SET mac = excluded.mac, name = excluded.name,"
                         " state = excluded.state, manifest = excluded.manifest,"
                         " manifest_sha256 = excluded.manifest_sha256,"
                         " created_at = excluded.created_at,"
                         " provisioned_at = excluded.provisioned_at"},
    [FK_INV_MANY_CRED] = {"INSERT INTO credentials(device_id, kind, version, fingerprint,"
                          " created_at, expires_at, state) VALUES",
                          7, ""},
    [FK_INV_MANY_AUDIT] = {"INSERT INTO audit(seq, at, actor, kind, subject, detail, prev_hash,"
                           " hash) VALUES",
                           8, ""},
};

/* At most FK_INV_CRED_MANY_MAX rows of 8 placeholders of "$256, " (6 bytes) plus "(), "
 * per row and the fixed text: well under FK_INV_MANY_SQL_SIZE. */
_Static_assert(FK_INV_CRED_MANY_MAX * (8 * 6 + 4) + 600 < FK_INV_MANY_SQL_SIZE, "SQL fits");

void fk_inv_many_sql(enum fk_inv_many id, size_t n, char mark, char *out, size_t size) {
    size_t len = (size_t)snprintf(out, size, "%s", many_sql[id].head);
    size_t cols = (size_t)many_sql[id].cols;
    for (size_t i = 0; i < n && len < size; i++) {
        for (size_t k = 1; k <= cols && len < size; k++) {
            len += (size_t)snprintf(out + len, size - len, "%s%c%zu",
                                    k == 1 ? (i == 0 ? "(" : ", (") : ", ", mark, i * cols + k);
        }
        if (len < size) {
            len += (size_t)snprintf(out + len, size - len, ")");
        }
    }
    if (len < size) {
        snprintf(out + len, size - len, "%s", many_sql[id].tail);
    }
}

void fk_inv_copy(char *out, size_t size, const char *v) {
    snprintf(out, size, "%s", v != NULL ? v : "");
}

enum fk_err fk_inv_check_version(struct fk_inventory *inv, int version, int newest,
                                 struct fk_diag *diag) {
    if (version > newest) {
        return fk_diag_at(diag, FK_E_UNSUPPORTED, inv->where, 0,
                          "inventory schema version %d is newer than this program (%d)", version,
                          newest);
    }
    return FK_OK;
}

void fk_inv_read_device(struct fk_inv_device *d, fk_inv_col_fn *col, void *row) {
    memset(d, 0, sizeof *d);
    fk_inv_copy(d->id, sizeof d->id, col(row, 0));
    fk_inv_copy(d->mac, sizeof d->mac, col(row, 1));
    fk_inv_copy(d->name, sizeof d->name, col(row, 2));
    fk_inv_copy(d->state, sizeof d->state, col(row, 3));
    fk_inv_copy(d->manifest, sizeof d->manifest, col(row, 4));
    fk_inv_copy(d->manifest_sha256, sizeof d->manifest_sha256, col(row, 5));
    fk_inv_copy(d->created_at, sizeof d->created_at, col(row, 6));
    fk_inv_copy(d->provisioned_at, sizeof d->provisioned_at, col(row, 7));
}

void fk_inv_read_credential(struct fk_inv_credential *c, fk_inv_col_fn *col, void *row) {
    memset(c, 0, sizeof *c);
    fk_inv_copy(c->device_id, sizeof c->device_id, col(row, 0));
    fk_inv_copy(c->kind, sizeof c->kind, col(row, 1));
    c->version = (unsigned)strtoul(col(row, 2), NULL, 10); /* CHECK (version >= 1) */
    fk_inv_copy(c->fingerprint, sizeof c->fingerprint, col(row, 3));
    fk_inv_copy(c->created_at, sizeof c->created_at, col(row, 4));
    fk_inv_copy(c->expires_at, sizeof c->expires_at, col(row, 5));
    fk_inv_copy(c->state, sizeof c->state, col(row, 6));
}

void fk_inv_read_presence(struct fk_inv_presence *p, fk_inv_col_fn *col, void *row) {
    memset(p, 0, sizeof *p);
    fk_inv_copy(p->device_id, sizeof p->device_id, col(row, 0));
    fk_inv_copy(p->first_seen, sizeof p->first_seen, col(row, 1));
    fk_inv_copy(p->last_seen, sizeof p->last_seen, col(row, 2));
    fk_inv_copy(p->peer, sizeof p->peer, col(row, 3));
    fk_inv_copy(p->firmware_version, sizeof p->firmware_version, col(row, 4));
    fk_inv_copy(p->credential_versions, sizeof p->credential_versions, col(row, 5));
    fk_inv_copy(p->posture, sizeof p->posture, col(row, 6));
    fk_inv_copy(p->ota, sizeof p->ota, col(row, 7));
}
