/* A device's NVS image: built through the nvs module's builder in the order of the
 * documented layout (docs/nvs-layout.md), and read back by a small independent reader that
 * only knows the entry format (fkd/nvs_format.h). The reader exists so that a check of
 * "manifest PSK == image PSK" does not trust the same code that wrote the image. */
#include "fleetkey/keys.h"

#include "fkd/nvs_format.h"

#include <stdlib.h>
#include <string.h>

enum fk_err fk_keys_nvs_render(const struct fk_manifest *m, const char *wifi_ssid,
                               const char *wifi_password, const struct fk_keys_mtls *mtls,
                               size_t size, const struct fk_nvs_keys *enc, uint8_t *out,
                               size_t out_size, size_t *out_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct fk_nvs_builder *b = NULL;
    if (size == 0) {
        size = FK_KEYS_NVS_SIZE;
    }
    FK_ENSURE(out_size >= size, FK_E_NOSPACE);
    if (mtls != NULL) {
        FK_ENSURE(
            mtls->cert_der_len > 0 && mtls->key_der_len > 0 && mtls->ca_der_len > 0 &&
                mtls->cert_der_len <= FK_KEYS_MTLS_BLOB_MAX &&
                mtls->key_der_len <= FK_KEYS_MTLS_BLOB_MAX &&
                mtls->ca_der_len <= FK_KEYS_MTLS_BLOB_MAX,
            fk_diag_set(diag, FK_E_RANGE, "mtls: each blob 1 to %u bytes", FK_KEYS_MTLS_BLOB_MAX));
    }
    FK_GUARD(fk_nvs_builder_new(2, &b));
    /* The order is the contract's (and the golden vector's, tests/vectors/nvs/prov.csv). */
    FK_GUARD(fk_nvs_builder_namespace(b, "security", diag));
    FK_GUARD(fk_nvs_builder_add_blob(b, "dtls_psk", m->psk, sizeof m->psk, diag));
    FK_GUARD(fk_nvs_builder_add_str(b, "psk_id", m->psk_identity, diag));
    FK_GUARD(fk_nvs_builder_add_blob(b, "ota_pubkey", m->ota_pub_der, m->ota_pub_der_len, diag));
    if (wifi_ssid != NULL) {
        FK_GUARD(fk_nvs_builder_namespace(b, "wifi", diag));
        FK_GUARD(fk_nvs_builder_add_str(b, "ssid", wifi_ssid, diag));
        FK_GUARD(fk_nvs_builder_add_str(b, "password", wifi_password != NULL ? wifi_password : "",
                                        diag));
    }
    if (mtls != NULL) {
        /* DER, not PEM: smaller, and the device tells them apart by the first byte (0x30,
         * a SEQUENCE; PEM starts with '-'). The chain is issuing CA then root. */
        FK_GUARD(fk_nvs_builder_namespace(b, "mtls", diag));
        FK_GUARD(fk_nvs_builder_add_blob(b, "ca_cert", mtls->ca_der, mtls->ca_der_len, diag));
        FK_GUARD(
            fk_nvs_builder_add_blob(b, "client_cert", mtls->cert_der, mtls->cert_der_len, diag));
        FK_GUARD(fk_nvs_builder_add_blob(b, "client_key", mtls->key_der, mtls->key_der_len, diag));
    }
    FK_GUARD(fk_nvs_builder_render(b, size, out, out_size, out_len, diag));
    if (enc != NULL) {
        FK_GUARD(fk_nvs_encrypt(out, *out_len, enc));
    }
    rc = FK_OK;
out:
    fk_nvs_builder_free(b);
    return rc;
}

/* ---- reading back ------------------------------------------------------------------- */

struct found {
    const uint8_t *img;
    size_t len;
    uint8_t ns;
};

/* Visits every written entry with a valid CRC; fn returns 1 to stop. Entries whose CRC is
 * wrong make the whole read fail: a device would not see them either. */
typedef int entry_fn(void *user, const struct fkd_nvs_entry *e, size_t page, unsigned idx);

static enum fk_err walk(const uint8_t *img, size_t len, entry_fn *fn, void *user,
                        struct fk_diag *diag) {
    for (size_t page = 0; page + FKD_NVS_PAGE_SIZE <= len; page += FKD_NVS_PAGE_SIZE) {
        const uint8_t *pg = img + page;
        uint32_t state = fk_load_le32(pg);
        if (state == FKD_NVS_PAGE_UNINIT) {
            continue;
        }
        if (fk_load_le32(pg + 28) != fkd_nvs_header_crc(pg)) {
            return fk_diag_set(diag, FK_E_CRC, "page at 0x%zx: header CRC mismatch", page);
        }
        for (unsigned i = 0; i < FKD_NVS_ENTRY_COUNT; i++) {
            if (fkd_nvs_bitmap_get(pg + FKD_NVS_BITMAP_OFFSET, i) != FKD_NVS_ENTRY_WRITTEN) {
                continue;
            }
            const uint8_t *raw = pg + FKD_NVS_ENTRIES_OFFSET + (size_t)i * FKD_NVS_ENTRY_SIZE;
            struct fkd_nvs_entry e;
            if (!fkd_nvs_entry_decode(raw, &e)) {
                return fk_diag_set(diag, FK_E_CRC, "entry at 0x%zx: CRC mismatch",
                                   page + FKD_NVS_ENTRIES_OFFSET + (size_t)i * 32u);
            }
            if (fn(user, &e, page, i)) {
                return FK_OK;
            }
            if (e.span > 1) {
                i += e.span - 1u; /* data entries of a string or blob chunk */
            }
        }
    }
    return FK_OK;
}

struct ns_find {
    const char *name;
    int index;
};

static int ns_visit(void *user, const struct fkd_nvs_entry *e, size_t page, unsigned idx) {
    (void)page;
    (void)idx;
    struct ns_find *f = user;
    if (e->ns == 0 && e->type == FKD_NVS_U8 && strcmp(e->key, f->name) == 0) {
        f->index = e->data[0];
        return 1;
    }
    return 0;
}

/* Variable-length data of the entry at (page, idx): size from data[0..1], CRC at data[4..7],
 * bytes in the following span-1 entries of the same page. */
static enum fk_err var_data(const uint8_t *img, size_t len, const struct fkd_nvs_entry *e,
                            size_t page, unsigned idx, const uint8_t **data, size_t *dlen,
                            struct fk_diag *diag) {
    size_t size = fk_load_le16(e->data);
    size_t room = (size_t)(e->span - 1u) * FKD_NVS_ENTRY_SIZE;
    size_t start = page + FKD_NVS_ENTRIES_OFFSET + ((size_t)idx + 1u) * FKD_NVS_ENTRY_SIZE;
    if (e->span < 1 || idx + e->span > FKD_NVS_ENTRY_COUNT || size > room || start > len ||
        size > len - start) {
        return fk_diag_set(diag, FK_E_PARSE, "%s: size %zu does not fit its span", e->key, size);
    }
    if (fkd_crc32_le(0xFFFFFFFFu, img + start, size) != fk_load_le32(e->data + 4)) {
        return fk_diag_set(diag, FK_E_CRC, "%s: data CRC mismatch", e->key);
    }
    *data = img + start;
    *dlen = size;
    return FK_OK;
}

struct item_find {
    const uint8_t *img;
    size_t len;
    int ns;
    const char *key;
    uint8_t type; /* FKD_NVS_STR or FKD_NVS_BLOB_IDX (then chunks are gathered) */
    int chunk;    /* for BLOB_DATA lookups */
    int found;
    struct fkd_nvs_entry e;
    size_t page;
    unsigned idx;
};

static int item_visit(void *user, const struct fkd_nvs_entry *e, size_t page, unsigned idx) {
    struct item_find *f = user;
    if (e->ns == f->ns && e->type == f->type && strcmp(e->key, f->key) == 0 &&
        (f->type != FKD_NVS_BLOB_DATA || e->chunk_index == f->chunk)) {
        f->found = 1;
        f->e = *e;
        f->page = page;
        f->idx = idx;
        return 1;
    }
    return 0;
}

static enum fk_err find_item(struct item_find *f, struct fk_diag *diag) {
    enum fk_err rc = walk(f->img, f->len, item_visit, f, diag);
    if (rc == FK_OK && !f->found) {
        rc = fk_diag_set(diag, FK_E_NOTFOUND, "%s: not in the image", f->key);
    }
    return rc;
}

/* A V2 blob: BLOB_IDX (total size, chunk count, first chunk) + its BLOB_DATA chunks. */
static enum fk_err read_blob(const uint8_t *img, size_t len, int ns, const char *key, uint8_t *out,
                             size_t out_size, size_t *out_len, struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct item_find f = {img, len, ns, key, FKD_NVS_BLOB_IDX, 0, 0, {0}, 0, 0};
    FK_GUARD(find_item(&f, diag));
    size_t total = fk_load_le32(f.e.data);
    unsigned count = f.e.data[4];
    unsigned first = f.e.data[5];
    FK_ENSURE(total <= out_size,
              fk_diag_set(diag, FK_E_NOSPACE, "%s: %zu bytes is too large", key, total));
    size_t got = 0;
    for (unsigned c = first; c < first + count; c++) {
        struct item_find d = {img, len, ns, key, FKD_NVS_BLOB_DATA, (int)c, 0, {0}, 0, 0};
        FK_GUARD(find_item(&d, diag));
        const uint8_t *data = NULL;
        size_t dlen = 0;
        FK_GUARD(var_data(img, len, &d.e, d.page, d.idx, &data, &dlen, diag));
        FK_ENSURE(dlen <= total - got,
                  fk_diag_set(diag, FK_E_PARSE, "%s: chunks exceed the blob size", key));
        memcpy(out + got, data, dlen);
        got += dlen;
    }
    FK_ENSURE(got == total,
              fk_diag_set(diag, FK_E_PARSE, "%s: chunks hold %zu of %zu bytes", key, got, total));
    *out_len = got;
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_keys_nvs_read_blob(const uint8_t *img, size_t len, const char *ns, const char *key,
                                  uint8_t *out, size_t out_size, size_t *out_len,
                                  struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    struct ns_find nf = {ns, -1};
    FK_GUARD(walk(img, len, ns_visit, &nf, diag));
    FK_ENSURE(nf.index > 0, fk_diag_set(diag, FK_E_NOTFOUND, "namespace %s: not found", ns));
    FK_GUARD(read_blob(img, len, nf.index, key, out, out_size, out_len, diag));
    rc = FK_OK;
out:
    return rc;
}

enum fk_err fk_keys_nvs_extract(const uint8_t *img, size_t len, const struct fk_nvs_keys *enc,
                                uint8_t psk[FK_PSK_LEN], char psk_id[FK_KEYS_PSK_ID_MAX],
                                uint8_t *der, size_t der_size, size_t *der_len,
                                struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *copy = NULL;
    uint8_t tmp[FK_PSK_LEN + 1];
    size_t n = 0;
    FK_ENSURE(len % FKD_NVS_PAGE_SIZE == 0 && len > 0,
              fk_diag_set(diag, FK_E_PARSE, "image size %zu is not a multiple of 4096", len));
    if (enc != NULL) {
        copy = malloc(len);
        FK_ENSURE(copy != NULL, FK_E_NOMEM);
        memcpy(copy, img, len);
        FK_GUARD(fk_nvs_decrypt(copy, len, enc));
        img = copy;
    }
    struct ns_find nf = {"security", -1};
    FK_GUARD(walk(img, len, ns_visit, &nf, diag));
    FK_ENSURE(nf.index > 0, fk_diag_set(diag, FK_E_NOTFOUND, "namespace security: not found"));

    FK_GUARD(read_blob(img, len, nf.index, "dtls_psk", tmp, sizeof tmp, &n, diag));
    FK_ENSURE(n == FK_PSK_LEN,
              fk_diag_set(diag, FK_E_PARSE, "dtls_psk: %zu bytes, expected %d", n, FK_PSK_LEN));
    memcpy(psk, tmp, FK_PSK_LEN);

    struct item_find s = {img, len, nf.index, "psk_id", FKD_NVS_STR, 0, 0, {0}, 0, 0};
    FK_GUARD(find_item(&s, diag));
    const uint8_t *data = NULL;
    size_t dlen = 0;
    FK_GUARD(var_data(img, len, &s.e, s.page, s.idx, &data, &dlen, diag));
    FK_ENSURE(dlen >= 1 && dlen <= FK_KEYS_PSK_ID_MAX && data[dlen - 1] == '\0' &&
                  memchr(data, '\0', dlen) == data + dlen - 1,
              fk_diag_set(diag, FK_E_PARSE, "psk_id: not a string of at most %d bytes",
                          FK_KEYS_PSK_ID_MAX - 1));
    memcpy(psk_id, data, dlen);

    FK_GUARD(read_blob(img, len, nf.index, "ota_pubkey", der, der_size, der_len, diag));
    rc = FK_OK;
out:
    fk_wipe(tmp, sizeof tmp);
    if (copy != NULL) {
        fk_free_secret(copy, len);
    }
    return rc;
}
