/* fleetctl robot: the PSK of the robot control channel, from a manifest or a hex file. The
 * DTLS client itself is the host library's (fleetkey/ctl.h). */
#include "robot.h"

#include <string.h>

#include <cjson/cJSON.h>

#define MANIFEST_MAX (64 * 1024)

static enum fk_err set_psk(struct fleetctl_psk *out, const char *hex, size_t hex_len,
                           const char *identity, const char *what, struct fk_diag *diag) {
    size_t n = 0;
    size_t bad = 0;
    if (identity == NULL || identity[0] == '\0' || strlen(identity) > FLEETCTL_ID_MAX) {
        return fk_diag_set(diag, FK_E_PARSE, "%s: psk_identity missing or longer than %d", what,
                           FLEETCTL_ID_MAX);
    }
    enum fk_err rc = fk_hex_decode(hex, hex_len, out->psk, sizeof out->psk, &n, &bad);
    if (rc != FK_OK || n < 16) {
        fk_wipe(out->psk, sizeof out->psk);
        /* Never echo the digits: only where the problem is. */
        return fk_diag_set(diag, FK_E_PARSE, "%s: psk_hex is not 16..64 bytes of hex", what);
    }
    out->psk_len = n;
    size_t il = strlen(identity);
    memcpy(out->identity, identity, il + 1);
    return FK_OK;
}

enum fk_err fleetctl_psk_from_manifest(const char *path, struct fleetctl_psk *out,
                                       struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    memset(out, 0, sizeof *out);
    FK_GUARD(fk_file_read(path, MANIFEST_MAX, &buf, &len, diag));
    root = cJSON_ParseWithLength((const char *)buf, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        rc = fk_diag_set(diag, FK_E_PARSE, "%s: not a JSON object", path);
        goto out;
    }
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(root, "psk_hex");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "psk_identity");
    if (!cJSON_IsString(hex) || hex->valuestring == NULL) {
        rc = fk_diag_set(diag, FK_E_PARSE, "%s: no string field psk_hex", path);
        goto out;
    }
    if (!cJSON_IsString(id) || id->valuestring == NULL) {
        rc = fk_diag_set(diag, FK_E_PARSE, "%s: no string field psk_identity", path);
        goto out;
    }
    rc = set_psk(out, hex->valuestring, strlen(hex->valuestring), id->valuestring, path, diag);
out:
    if (root != NULL) {
        /* cJSON copied psk_hex into its own heap string: wipe it before it is freed. */
        cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "psk_hex");
        if (cJSON_IsString(h) && h->valuestring != NULL) {
            fk_wipe(h->valuestring, strlen(h->valuestring));
        }
        cJSON_Delete(root);
    }
    fk_free_secret(buf, len);
    return rc;
}

enum fk_err fleetctl_psk_from_file(const char *path, const char *identity, struct fleetctl_psk *out,
                                   struct fk_diag *diag) {
    enum fk_err rc = FK_E_INTERNAL;
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);
    FK_GUARD(fk_file_read(path, 4096, &buf, &len, diag));
    size_t a = 0;
    size_t b = len;
    while (a < b && (buf[a] == ' ' || buf[a] == '\n' || buf[a] == '\r' || buf[a] == '\t')) {
        a++;
    }
    while (b > a &&
           (buf[b - 1] == ' ' || buf[b - 1] == '\n' || buf[b - 1] == '\r' || buf[b - 1] == '\t')) {
        b--;
    }
    rc = set_psk(out, (const char *)buf + a, b - a, identity, path, diag);
out:
    fk_free_secret(buf, len);
    return rc;
}
