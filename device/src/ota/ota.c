/* Firmware updates on the device: the streaming update and the boot-side calls (fkd/ota.h).
 *
 * The model is ESP-IDF's app_update + bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE:
 * - esp_ota_begin/write/end: the image goes into the slot that is not running, sector by
 *   sector erased just ahead of the data; nothing points at that slot until the very end, so a
 *   cut anywhere in the write leaves the running image in force;
 * - esp_ota_set_boot_partition: a new otadata entry (next sequence number for that slot, state
 *   NEW) goes into the sector that does not hold the active entry: the switch is one sector
 *   erase + one 32-byte write, and a cut in it leaves the old entry active;
 * - the bootloader: NEW -> PENDING_VERIFY on the first boot; an entry still PENDING_VERIFY at
 *   the next boot never confirmed itself and becomes ABORTED (rollback); INVALID/ABORTED
 *   entries are skipped; a slot boots only if its app image checks, its secure_version is not
 *   below the committed one and, in production (Secure Boot V2), its signature verifies;
 * - esp_ota_mark_app_valid_cancel_rollback: VALID, and only then the security version is
 *   committed (as ESP-IDF burns the eFuse secure_version at that point);
 * - esp_ota_mark_app_invalid_rollback_and_reboot: INVALID, the previous slot boots next.
 * Before anything is switched, the signature sector is verified against the trusted keys from
 * NVS (security/ota_pubkey, security/ota_pubkey2), the image in flash is re-read and checked,
 * and its hash is compared with the one computed while streaming: what was verified is what
 * will boot. */
#include "fkd/ota.h"

#include "fkd/nvs.h"
#include "mbedtls_compat.h"

#include <string.h>

#define CHUNK 512u

/* ---- helpers ----------------------------------------------------------------------------- */
static int slot_of(const struct fkd_part_table *t, const struct fkd_part *p) {
    (void)t;
    if (p == NULL || p->type != FKD_PART_APP) {
        return -1;
    }
    if (p->subtype == FKD_PART_SUB_OTA_0) {
        return 0;
    }
    if (p->subtype == FKD_PART_SUB_OTA_1) {
        return 1;
    }
    return -1;
}

static const struct fkd_part *slot_part(const struct fkd_part_table *t, unsigned slot) {
    return fkd_part_find(t, FKD_PART_APP,
                         (uint8_t)(slot == 0 ? FKD_PART_SUB_OTA_0 : FKD_PART_SUB_OTA_1), NULL);
}

static const struct fkd_part *otadata_part(const struct fkd_part_table *t) {
    return fkd_part_find(t, FKD_PART_DATA, FKD_PART_SUB_OTADATA, NULL);
}

struct flash_src {
    const struct fkd_flash *f;
    uint32_t base;
};

static enum fkd_err flash_src_read(void *user, uint32_t off, void *buf, size_t len) {
    const struct flash_src *s = user;
    return fkd_flash_read(s->f, s->base + off, buf, len);
}

static uint32_t round_sector(uint32_t n) {
    return (n + FKD_FLASH_SECTOR - 1u) / FKD_FLASH_SECTOR * FKD_FLASH_SECTOR;
}

/* SHA-256 (and SHA-384 when sha384 != NULL) of len bytes of flash at addr. */
static enum fkd_err hash_flash(const struct fkd_flash *f, uint32_t addr, uint32_t len,
                               uint8_t sha256[32], uint8_t *sha384) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t buf[CHUNK];
    uint8_t d384[64];
    mbedtls_sha256_context a;
    mbedtls_sha512_context b;
    mbedtls_sha256_init(&a);
    mbedtls_sha512_init(&b);
    FKD_ENSURE(fkd_mbedtls_sha256_starts(&a) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(sha384 == NULL || fkd_mbedtls_sha384_starts(&b) == 0, FKD_E_CRYPTO);
    for (uint32_t done = 0; done < len;) {
        size_t n = len - done < CHUNK ? len - done : CHUNK;
        FKD_GUARD(fkd_flash_read(f, addr + done, buf, n));
        FKD_ENSURE(fkd_mbedtls_sha256_update(&a, buf, n) == 0, FKD_E_CRYPTO);
        FKD_ENSURE(sha384 == NULL || fkd_mbedtls_sha384_update(&b, buf, n) == 0, FKD_E_CRYPTO);
        done += (uint32_t)n;
    }
    FKD_ENSURE(fkd_mbedtls_sha256_finish(&a, sha256) == 0, FKD_E_CRYPTO);
    if (sha384 != NULL) {
        FKD_ENSURE(fkd_mbedtls_sha384_finish(&b, d384) == 0, FKD_E_CRYPTO);
        memcpy(sha384, d384, 48);
    }
    rc = FKD_OK;
out:
    mbedtls_sha256_free(&a);
    mbedtls_sha512_free(&b);
    return rc;
}

/* The signature sector after a checked app image in partition p, against keys. */
static enum fkd_err sig_check(const struct fkd_flash *f, const struct fkd_part *p,
                              const struct fkd_app_info *app, const struct fkd_sbv2_keys *keys,
                              struct fkd_sbv2_result *res) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t sector[FKD_SBV2_SECTOR];
    uint8_t d256[32];
    uint8_t d384[48];
    uint32_t signed_len = round_sector(app->image_len);
    FKD_ENSURE(signed_len <= p->size - FKD_SBV2_SECTOR, FKD_E_AUTH);
    FKD_GUARD(fkd_flash_read(f, p->offset + signed_len, sector, sizeof sector));
    FKD_GUARD(hash_flash(f, p->offset, signed_len, d256,
                         fkd_sbv2_keys_need_sha384(keys) ? d384 : NULL));
    rc = fkd_sbv2_verify(sector, d256, fkd_sbv2_keys_need_sha384(keys) ? d384 : NULL, keys, res);
out:
    return rc;
}

enum fkd_err fkd_ota_slot_verify(const struct fkd_flash *f, const struct fkd_part *p,
                                 const struct fkd_sbv2_keys *keys, struct fkd_app_info *app,
                                 struct fkd_sbv2_result *res) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct flash_src src = {f, p->offset};
    FKD_ENSURE(keys != NULL, FKD_E_ARG);
    FKD_GUARD(fkd_app_check(flash_src_read, &src, p->size, app));
    rc = sig_check(f, p, app, keys, res);
out:
    return rc;
}

/* Checks what a slot holds, as the bootloader does before jumping to it. */
static enum fkd_err check_slot(const struct fkd_flash *f, const struct fkd_part *p,
                               const struct fkd_sbv2_keys *keys, uint32_t min_secver,
                               struct fkd_app_info *app, int *sig_checked) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct flash_src src = {f, p->offset};
    *sig_checked = 0;
    FKD_GUARD(fkd_app_check(flash_src_read, &src, p->size, app));
    if (app->secure_version < min_secver) {
        fkd_log(FKD_LOG_ERROR, "boot: %s: secure_version %u is below the committed %u "
                               "(anti-rollback): not booted",
                p->label, (unsigned)app->secure_version, (unsigned)min_secver);
        rc = FKD_E_POLICY;
        goto out;
    }
    if (keys != NULL) {
        rc = sig_check(f, p, app, keys, NULL);
        if (rc != FKD_OK) {
            fkd_log(FKD_LOG_ERROR, "boot: %s: no valid signature from a trusted key (%s): not "
                                   "booted (secure boot)", p->label, fkd_strerror(rc));
            goto out;
        }
        *sig_checked = 1;
    }
    rc = FKD_OK;
out:
    return rc;
}

uint32_t fkd_ota_committed_secver(struct fkd_nvs *nvs) {
    struct fkd_nvs_int v;
    if (nvs == NULL || fkd_nvs_get_int(nvs, "ota", "secver", &v) != FKD_OK) {
        return 0;
    }
    return v.u > UINT32_MAX ? UINT32_MAX : (uint32_t)v.u;
}

/* ---- boot -------------------------------------------------------------------------------- */
static int skipped_state(uint32_t st) {
    return st == FKD_OTA_IMG_INVALID || st == FKD_OTA_IMG_ABORTED;
}

/* The candidate entry with the highest sequence number, not `not`, -1. */
static int best_candidate(const struct fkd_otadata *od, int not) {
    int best = -1;
    for (int i = 0; i < 2; i++) {
        if (i == not || !od->valid[i] || skipped_state(od->e[i].state)) {
            continue;
        }
        if (best < 0 || od->e[i].seq > od->e[best].seq) {
            best = i;
        }
    }
    return best;
}

enum fkd_err fkd_ota_boot_select(const struct fkd_flash *f, const struct fkd_part_table *t,
                                 const struct fkd_sbv2_keys *keys, uint32_t min_secver,
                                 struct fkd_ota_boot *out) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct fkd_otadata od;
    memset(out, 0, sizeof *out);
    out->slot = -1;
    out->entry = -1;
    out->state = FKD_OTA_IMG_UNDEFINED;
    const struct fkd_part *odp = otadata_part(t);
    FKD_ENSURE(odp != NULL && slot_part(t, 0) != NULL, FKD_E_NOTFOUND);
    FKD_GUARD(fkd_otadata_read(f, odp, &od));

    /* CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: "if the state is PENDING_VERIFY ... the app did
     * not confirm ... it is marked ABORTED" and the bootloader falls back. */
    int cand = best_candidate(&od, -1);
    if (cand >= 0 && od.e[cand].state == FKD_OTA_IMG_PENDING_VERIFY) {
        fkd_log(FKD_LOG_WARN, "boot: ota_%u was not confirmed by its last boot: ABORTED, "
                              "rolling back", fkd_otadata_slot(&od.e[cand]));
        od.e[cand].state = FKD_OTA_IMG_ABORTED;
        FKD_GUARD(fkd_otadata_write(f, odp, (unsigned)cand, &od.e[cand]));
        out->rolled_back = 1;
        cand = best_candidate(&od, -1);
    }
    int tried[2] = {0, 0};
    for (int round = 0; round < 2 && cand >= 0; round++) {
        unsigned slot = fkd_otadata_slot(&od.e[cand]);
        const struct fkd_part *p = slot_part(t, slot);
        tried[slot] = 1;
        if (p != NULL && check_slot(f, p, keys, min_secver, &out->app,
                                    &out->signature_checked) == FKD_OK) {
            if (od.e[cand].state == FKD_OTA_IMG_NEW) {
                od.e[cand].state = FKD_OTA_IMG_PENDING_VERIFY;
                FKD_GUARD(fkd_otadata_write(f, odp, (unsigned)cand, &od.e[cand]));
            }
            out->slot = (int)slot;
            out->part = p;
            out->entry = cand;
            out->state = od.e[cand].state;
            rc = FKD_OK;
            goto out;
        }
        fkd_log(FKD_LOG_ERROR, "boot: otadata selects ota_%u but it holds no bootable image",
                slot);
        cand = best_candidate(&od, cand);
    }
    /* No usable entry: the first boot of a factory-flashed robot runs ota_0 (ESP-IDF without a
     * factory partition). A slot some valid entry marks INVALID/ABORTED is not a fallback. */
    for (unsigned slot = 0; slot < FKD_OTA_SLOTS; slot++) {
        const struct fkd_part *p = slot_part(t, slot);
        int refused = 0;
        for (int i = 0; i < 2; i++) {
            refused |= od.valid[i] && fkd_otadata_slot(&od.e[i]) == slot &&
                       skipped_state(od.e[i].state);
        }
        if (tried[slot] || refused || p == NULL) {
            continue;
        }
        if (check_slot(f, p, keys, min_secver, &out->app, &out->signature_checked) == FKD_OK) {
            out->slot = (int)slot;
            out->part = p;
            rc = FKD_OK;
            goto out;
        }
    }
    memset(&out->app, 0, sizeof out->app);
    rc = FKD_OK; /* nothing bootable: out->slot stays -1 */
out:
    return rc;
}

enum fkd_err fkd_ota_mark_valid(const struct fkd_flash *f, const struct fkd_part_table *t,
                                struct fkd_nvs *nvs, struct fkd_ota_boot *b) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct fkd_otadata od;
    FKD_ENSURE(b != NULL && b->slot >= 0, FKD_E_STATE);
    if (b->entry >= 0 && b->state != FKD_OTA_IMG_VALID) {
        const struct fkd_part *odp = otadata_part(t);
        FKD_ENSURE(odp != NULL, FKD_E_NOTFOUND);
        FKD_GUARD(fkd_otadata_read(f, odp, &od));
        FKD_ENSURE(od.valid[b->entry] && fkd_otadata_slot(&od.e[b->entry]) == (unsigned)b->slot,
                   FKD_E_STATE);
        od.e[b->entry].state = FKD_OTA_IMG_VALID;
        FKD_GUARD(fkd_otadata_write(f, odp, (unsigned)b->entry, &od.e[b->entry]));
        b->state = FKD_OTA_IMG_VALID;
        fkd_log(FKD_LOG_INFO, "ota: ota_%d (version %s) confirmed: marked valid", b->slot,
                b->app.version);
    }
    /* Anti-rollback: commit the running image's security version, never lowering it. */
    if (nvs != NULL && b->app.secure_version > fkd_ota_committed_secver(nvs)) {
        FKD_GUARD(fkd_nvs_set_int(nvs, "ota", "secver", FKD_NVS_U32, b->app.secure_version));
        fkd_log(FKD_LOG_INFO, "ota: secure_version %u committed (ota/secver)",
                (unsigned)b->app.secure_version);
    }
    rc = FKD_OK;
out:
    return rc;
}

enum fkd_err fkd_ota_mark_invalid(const struct fkd_flash *f, const struct fkd_part_table *t,
                                  struct fkd_ota_boot *b) {
    enum fkd_err rc = FKD_E_INTERNAL;
    struct fkd_otadata od;
    struct fkd_app_info other;
    int sig = 0;
    FKD_ENSURE(b != NULL && b->slot >= 0, FKD_E_STATE);
    const struct fkd_part *odp = otadata_part(t);
    const struct fkd_part *op = slot_part(t, (unsigned)(1 - b->slot));
    FKD_ENSURE(odp != NULL, FKD_E_NOTFOUND);
    /* Rolling back needs something to roll back to. */
    if (b->entry < 0 || op == NULL || check_slot(f, op, NULL, 0, &other, &sig) != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "ota: ota_%d failed its self-test but there is no previous "
                               "image to roll back to: it stays", b->slot);
        rc = FKD_E_STATE;
        goto out;
    }
    FKD_GUARD(fkd_otadata_read(f, odp, &od));
    FKD_ENSURE(od.valid[b->entry] && fkd_otadata_slot(&od.e[b->entry]) == (unsigned)b->slot,
               FKD_E_STATE);
    od.e[b->entry].state = FKD_OTA_IMG_INVALID;
    FKD_GUARD(fkd_otadata_write(f, odp, (unsigned)b->entry, &od.e[b->entry]));
    b->state = FKD_OTA_IMG_INVALID;
    fkd_log(FKD_LOG_WARN, "ota: ota_%d (version %s) failed its self-test: marked invalid; the "
                          "next boot runs ota_%d (version %s)",
            b->slot, b->app.version, 1 - b->slot, other.version);
    rc = FKD_OK;
out:
    return rc;
}

/* ---- streaming update -------------------------------------------------------------------- */
void fkd_ota_update_init(struct fkd_ota_update *u) {
    memset(u, 0, sizeof *u);
    mbedtls_sha256_init(&u->sha256);
    mbedtls_sha512_init(&u->sha384);
    u->sig.block = -1;
    u->sig.key = -1;
}

void fkd_ota_update_free(struct fkd_ota_update *u) {
    if (u == NULL) {
        return;
    }
    mbedtls_sha256_free(&u->sha256);
    mbedtls_sha512_free(&u->sha384);
    fkd_ota_update_init(u);
}

void fkd_ota_abort(struct fkd_ota_update *u) {
    if (u->phase == FKD_OTA_WRITING) {
        fkd_log(FKD_LOG_WARN, "ota: update into %s abandoned after %u of %u bytes",
                u->target != NULL ? u->target->label : "?", (unsigned)u->received,
                (unsigned)u->total);
    }
    fkd_ota_update_free(u);
}

const struct fkd_sbv2_result *fkd_ota_sig_result(const struct fkd_ota_update *u) {
    return &u->sig;
}

const struct fkd_app_info *fkd_ota_app(const struct fkd_ota_update *u) {
    return &u->app;
}

enum fkd_err fkd_ota_begin(struct fkd_ota_update *u, const struct fkd_flash *f,
                           const struct fkd_part_table *t, const struct fkd_sbv2_keys *keys,
                           struct fkd_nvs *nvs, const struct fkd_ota_boot *running,
                           uint32_t total) {
    enum fkd_err rc = FKD_E_INTERNAL;
    FKD_ENSURE(u != NULL && f != NULL && t != NULL, FKD_E_ARG);
    FKD_ENSURE(u->phase != FKD_OTA_WRITING, FKD_E_STATE);
    fkd_ota_update_free(u);
    u->phase = FKD_OTA_FAILED;
    if (keys == NULL || keys->count == 0) {
        /* Seed 004, development: "Can boot without public key (firmware updates disabled)". */
        fkd_log(FKD_LOG_ERROR, "ota: updates disabled: no trusted OTA public key in NVS "
                               "(security/ota_pubkey)");
        rc = FKD_E_POLICY;
        goto out;
    }
    if (running != NULL && running->slot >= 0 && running->entry >= 0 &&
        running->state == FKD_OTA_IMG_PENDING_VERIFY) {
        fkd_log(FKD_LOG_ERROR, "ota: the running image is not confirmed yet (pending-verify): "
                               "no update before it is marked valid or rolled back");
        rc = FKD_E_STATE;
        goto out;
    }
    int run = running != NULL ? running->slot : -1;
    u->target_slot = run == 0 ? 1u : 0u;
    u->target = slot_part(t, u->target_slot);
    u->otadata = otadata_part(t);
    FKD_ENSURE(u->target != NULL && u->otadata != NULL, FKD_E_NOTFOUND);
    FKD_ENSURE(slot_of(t, u->target) == (int)u->target_slot, FKD_E_INTERNAL);
    if (total % FKD_SBV2_SECTOR != 0 || total < FKD_OTA_MIN_IMAGE) {
        fkd_log(FKD_LOG_ERROR, "ota: image of %u bytes is not a signed image (data padded to "
                               "4 KiB + a 4 KiB signature sector)", (unsigned)total);
        rc = FKD_E_ARG;
        goto out;
    }
    if (total > u->target->size) {
        fkd_log(FKD_LOG_ERROR, "ota: image of %u bytes does not fit %s (%u bytes)",
                (unsigned)total, u->target->label, (unsigned)u->target->size);
        rc = FKD_E_NOSPACE;
        goto out;
    }
    u->flash = f;
    u->parts = t;
    u->keys = keys;
    u->nvs = nvs;
    u->total = total;
    u->want384 = fkd_sbv2_keys_need_sha384(keys);
    FKD_ENSURE(fkd_mbedtls_sha256_starts(&u->sha256) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(!u->want384 || fkd_mbedtls_sha384_starts(&u->sha384) == 0, FKD_E_CRYPTO);
    memset(u->sector, 0xFF, sizeof u->sector);
    u->phase = FKD_OTA_WRITING;
    fkd_log(FKD_LOG_INFO, "ota: writing %u bytes into %s at 0x%x", (unsigned)total,
            u->target->label, (unsigned)u->target->offset);
    rc = FKD_OK;
out:
    return rc;
}

enum fkd_err fkd_ota_write(struct fkd_ota_update *u, const void *data, size_t len) {
    enum fkd_err rc = FKD_E_INTERNAL;
    const uint8_t *p = data;
    FKD_ENSURE(u != NULL && u->phase == FKD_OTA_WRITING, FKD_E_STATE);
    FKD_ENSURE(data != NULL || len == 0, FKD_E_ARG);
    FKD_ENSURE(len <= u->total - u->received, FKD_E_RANGE);
    uint32_t signed_len = u->total - FKD_SBV2_SECTOR;
    while (len > 0) {
        uint32_t pos = u->received;
        /* Stop at sector ends so each sector is erased just before its first byte. */
        uint32_t room = FKD_FLASH_SECTOR - pos % FKD_FLASH_SECTOR;
        uint32_t n = len < room ? (uint32_t)len : room;
        if (pos + n > u->erased) {
            FKD_GUARD(fkd_flash_erase(u->flash, u->target->offset + u->erased));
            u->erased += FKD_FLASH_SECTOR;
        }
        if (pos < FKD_APP_HDR_LEN) {
            uint32_t h = FKD_APP_HDR_LEN - pos < n ? FKD_APP_HDR_LEN - pos : n;
            memcpy(u->head + pos, p, h);
            if (pos + h == FKD_APP_HDR_LEN &&
                (u->head[0] != FKD_APP_MAGIC || u->head[1] == 0 ||
                 u->head[1] > FKD_APP_MAX_SEGMENTS)) {
                fkd_log(FKD_LOG_ERROR, "ota: refused: not an ESP32 app image (magic 0x%02x)",
                        u->head[0]);
                rc = FKD_E_PARSE;
                goto out;
            }
        }
        if (pos < signed_len) {
            FKD_ENSURE(fkd_mbedtls_sha256_update(&u->sha256, p, n) == 0, FKD_E_CRYPTO);
            FKD_ENSURE(!u->want384 || fkd_mbedtls_sha384_update(&u->sha384, p, n) == 0,
                       FKD_E_CRYPTO);
        } else {
            memcpy(u->sector + (pos - signed_len), p, n);
        }
        FKD_GUARD(fkd_flash_write(u->flash, u->target->offset + pos, p, n));
        u->received += n;
        p += n;
        len -= n;
    }
    rc = FKD_OK;
out:
    if (rc != FKD_OK && u != NULL && u->phase == FKD_OTA_WRITING) {
        u->phase = FKD_OTA_FAILED;
    }
    return rc;
}

/* The next sequence number that selects slot (ESP-IDF esp_rewrite_ota_data). */
static uint32_t next_seq(const struct fkd_otadata *od, unsigned slot) {
    uint32_t s = od->active >= 0 ? od->e[od->active].seq + 1u : 1u;
    while ((s - 1u) % FKD_OTA_SLOTS != slot) {
        s++;
    }
    return s;
}

enum fkd_err fkd_ota_finish(struct fkd_ota_update *u) {
    enum fkd_err rc = FKD_E_INTERNAL;
    uint8_t d256[32];
    uint8_t d384[64];
    uint8_t again[32];
    struct fkd_otadata od;
    FKD_ENSURE(u != NULL && u->phase == FKD_OTA_WRITING, FKD_E_STATE);
    u->phase = FKD_OTA_FAILED;
    if (u->received != u->total) {
        fkd_log(FKD_LOG_ERROR, "ota: refused: %u of %u bytes received", (unsigned)u->received,
                (unsigned)u->total);
        rc = FKD_E_TRUNCATED;
        goto out;
    }
    uint32_t signed_len = u->total - FKD_SBV2_SECTOR;
    FKD_ENSURE(fkd_mbedtls_sha256_finish(&u->sha256, d256) == 0, FKD_E_CRYPTO);
    FKD_ENSURE(!u->want384 || fkd_mbedtls_sha384_finish(&u->sha384, d384) == 0, FKD_E_CRYPTO);

    /* Production: "unsigned firmware images rejected"; here every update needs a signature
     * from a trusted key (without a key updates are disabled altogether, see begin). */
    rc = fkd_sbv2_verify(u->sector, d256, u->want384 ? d384 : NULL, u->keys, &u->sig);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "ota: REFUSED: no valid signature from a trusted key (%s; "
                               "blocks: %s, %s, %s)",
                rc == FKD_E_CORRUPT ? "the image was changed after signing"
                : rc == FKD_E_PARSE ? "damaged signature sector"
                : rc == FKD_E_AUTH  ? "no block verifies with a trusted key"
                                    : fkd_strerror(rc),
                fkd_sbv2_verdict_name(u->sig.verdict[0]),
                fkd_sbv2_verdict_name(u->sig.verdict[1]),
                fkd_sbv2_verdict_name(u->sig.verdict[2]));
        goto out;
    }
    fkd_log(FKD_LOG_INFO, "ota: signature block %d verified with trusted key %s", u->sig.block,
            u->sig.key == 0 ? "security/ota_pubkey" : "security/ota_pubkey2");

    /* The app image as it now sits in flash, and the same bytes that were hashed. */
    struct flash_src src = {u->flash, u->target->offset};
    rc = fkd_app_check(flash_src_read, &src, signed_len, &u->app);
    if (rc != FKD_OK) {
        fkd_log(FKD_LOG_ERROR, "ota: REFUSED: not a valid app image (%s)", fkd_strerror(rc));
        goto out;
    }
    if (round_sector(u->app.image_len) != signed_len) {
        fkd_log(FKD_LOG_ERROR, "ota: REFUSED: the signature covers %u bytes, the app image "
                               "padded to 4 KiB is %u",
                (unsigned)signed_len, (unsigned)round_sector(u->app.image_len));
        rc = FKD_E_PARSE;
        goto out;
    }
    FKD_GUARD(hash_flash(u->flash, u->target->offset, signed_len, again, NULL));
    if (memcmp(again, d256, sizeof again) != 0) {
        fkd_log(FKD_LOG_ERROR, "ota: REFUSED: %s holds other bytes than were received and "
                               "verified", u->target->label);
        rc = FKD_E_CRC;
        goto out;
    }
    uint32_t committed = fkd_ota_committed_secver(u->nvs);
    if (u->app.secure_version < committed) {
        fkd_log(FKD_LOG_ERROR, "ota: REFUSED: secure_version %u is below the committed %u "
                               "(anti-rollback)",
                (unsigned)u->app.secure_version, (unsigned)committed);
        rc = FKD_E_POLICY;
        goto out;
    }

    /* esp_ota_set_boot_partition: the new entry goes into the sector that does not hold the
     * active one ("next_otadata = (~active_otadata) & 1"). */
    FKD_GUARD(fkd_otadata_read(u->flash, u->otadata, &od));
    unsigned sec = od.active >= 0 ? (unsigned)(~od.active & 1) : 0u;
    struct fkd_otadata_entry e;
    memset(&e, 0xFF, sizeof e);
    e.seq = next_seq(&od, u->target_slot);
    e.state = FKD_OTA_IMG_NEW;
    e.crc = fkd_otadata_crc(e.seq);
    FKD_GUARD(fkd_otadata_write(u->flash, u->otadata, sec, &e));
    u->phase = FKD_OTA_DONE;
    fkd_log(FKD_LOG_INFO, "ota: %s now holds %s %s (secure_version %u); otadata seq %u: boots "
                          "next (pending verification)",
            u->target->label, u->app.project_name, u->app.version,
            (unsigned)u->app.secure_version, (unsigned)e.seq);
    rc = FKD_OK;
out:
    if (u != NULL) {
        mbedtls_sha256_free(&u->sha256);
        mbedtls_sha512_free(&u->sha384);
    }
    return rc;
}
