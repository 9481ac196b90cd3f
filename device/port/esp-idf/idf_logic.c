/* The ESP-IDF port's pure decisions (fkd_idf_logic.h). Kept apart from port_idf.c, which is
 * the only file that talks to ESP-IDF, so CTest runs exactly the code the chip runs. */
#include "fkd_idf_logic.h"

#include "fkd/ota.h"

#include <string.h>

enum fkd_err fkd_idf_table_add(struct fkd_part_table *t, const struct fkd_idf_part *p) {
    enum fkd_err rc = FKD_E_INTERNAL;
    FKD_ENSURE(t != NULL && p != NULL && p->label != NULL, FKD_E_ARG);
    FKD_ENSURE(t->count < FKD_PART_MAX, FKD_E_RANGE);
    size_t llen = strlen(p->label);
    FKD_ENSURE(llen > 0 && llen <= FKD_PART_LABEL_MAX, FKD_E_PARSE);
    FKD_ENSURE(p->size > 0, FKD_E_PARSE);
    FKD_ENSURE(p->size <= UINT32_MAX - p->address, FKD_E_RANGE); /* end fits in 32 bits */
    /* The alignment gen_esp32part.py enforces, as fkd_part_parse does on the image. */
    uint32_t align = p->type == FKD_PART_APP ? 0x10000u : 0x1000u;
    FKD_ENSURE(p->address % align == 0 && p->size % 0x1000u == 0, FKD_E_PARSE);
    for (unsigned i = 0; i < t->count; i++) {
        const struct fkd_part *q = &t->part[i];
        FKD_ENSURE(strcmp(q->label, p->label) != 0, FKD_E_PARSE);
        int apart = p->address + p->size <= q->offset || q->offset + q->size <= p->address;
        FKD_ENSURE(apart, FKD_E_PARSE);
    }
    struct fkd_part *n = &t->part[t->count];
    memset(n, 0, sizeof *n);
    n->type = p->type;
    n->subtype = p->subtype;
    n->offset = p->address;
    n->size = p->size;
    memcpy(n->label, p->label, llen + 1);
    n->flags = p->encrypted ? FKD_PART_FLAG_ENCRYPTED : 0;
    t->count++;
    rc = FKD_OK;
out:
    return rc;
}

static const struct {
    const char *label;
    uint8_t type;
    uint8_t subtype;
} roles[FKD_IDF_ROLE_COUNT] = {
    [FKD_IDF_ROLE_NVS] = {"nvs", FKD_PART_DATA, FKD_PART_SUB_NVS},
    [FKD_IDF_ROLE_NVS_KEYS] = {"nvs_keys", FKD_PART_DATA, FKD_PART_SUB_NVS_KEYS},
    [FKD_IDF_ROLE_OTADATA] = {"otadata", FKD_PART_DATA, FKD_PART_SUB_OTADATA},
    [FKD_IDF_ROLE_OTA_0] = {"ota_0", FKD_PART_APP, FKD_PART_SUB_OTA_0},
    [FKD_IDF_ROLE_OTA_1] = {"ota_1", FKD_PART_APP, FKD_PART_SUB_OTA_1},
};

const char *fkd_idf_role_label(enum fkd_idf_role role, uint8_t *type, uint8_t *subtype) {
    if ((unsigned)role >= FKD_IDF_ROLE_COUNT) {
        return NULL;
    }
    if (type != NULL) {
        *type = roles[role].type;
    }
    if (subtype != NULL) {
        *subtype = roles[role].subtype;
    }
    return roles[role].label;
}

const struct fkd_part *fkd_idf_part_lookup(const struct fkd_part_table *t, enum fkd_idf_role role,
                                           const char *label, enum fkd_err *why) {
    enum fkd_err dummy;
    if (why == NULL) {
        why = &dummy;
    }
    *why = FKD_E_NOTFOUND;
    if (t == NULL || (unsigned)role >= FKD_IDF_ROLE_COUNT) {
        *why = FKD_E_ARG;
        return NULL;
    }
    int by_label = label != NULL && label[0] != '\0';
    for (unsigned i = 0; i < t->count && i < FKD_PART_MAX; i++) {
        const struct fkd_part *p = &t->part[i];
        int kind = p->type == roles[role].type && p->subtype == roles[role].subtype;
        if (by_label) {
            if (strncmp(p->label, label, FKD_PART_LABEL_MAX + 1) != 0) {
                continue;
            }
            if (!kind) {
                *why = FKD_E_TYPE;
                return NULL;
            }
            *why = FKD_OK;
            return p;
        }
        if (kind) {
            *why = FKD_OK;
            return p;
        }
    }
    return NULL;
}

int fkd_idf_part_at(const struct fkd_part_table *t, uint32_t addr, size_t len) {
    if (t == NULL || len > UINT32_MAX || (uint32_t)len > UINT32_MAX - addr) {
        return -1;
    }
    uint32_t end = addr + (uint32_t)len;
    for (unsigned i = 0; i < t->count && i < FKD_PART_MAX; i++) {
        const struct fkd_part *p = &t->part[i];
        /* p->offset + p->size cannot wrap: fkd_idf_table_add refused such entries. */
        if (addr >= p->offset && end <= p->offset + p->size) {
            return (int)i;
        }
    }
    return -1;
}

void fkd_idf_posture_eval(const struct fkd_idf_hw *hw, int kconfig_secure_boot, int production,
                          struct fkd_idf_posture *out) {
    memset(out, 0, sizeof *out);
    unsigned f = 0;
    if (!hw->secure_boot) {
        f |= FKD_IDF_F_SECURE_BOOT_OFF;
        if (kconfig_secure_boot) {
            f |= FKD_IDF_F_SB_KCONFIG_ONLY;
        }
    }
    if (!hw->flash_encryption) {
        f |= FKD_IDF_F_FLASH_ENC_OFF;
    } else if (!hw->flash_enc_release) {
        f |= FKD_IDF_F_FLASH_ENC_DEV;
    }
    if (!hw->jtag_disabled) {
        f |= FKD_IDF_F_JTAG_OPEN;
    }
    if (!hw->download_protected) {
        f |= FKD_IDF_F_DOWNLOAD_OPEN;
    }
    if (!hw->nvs_keys_loaded) {
        f |= FKD_IDF_F_NVS_PLAIN;
    }
    out->secure_boot = hw->secure_boot != 0;
    out->nvs_encrypted =
        hw->nvs_keys_loaded && hw->flash_encryption && (!production || hw->flash_enc_release);
    out->findings = f;
}

const char *fkd_idf_finding_text(unsigned bit) {
    switch (bit) {
    case FKD_IDF_F_SECURE_BOOT_OFF:
        return "secure boot is not enabled in eFuse: unsigned firmware runs";
    case FKD_IDF_F_SB_KCONFIG_ONLY:
        return "CONFIG_SECURE_BOOT_V2_ENABLED is set but the eFuse says secure boot is off";
    case FKD_IDF_F_FLASH_ENC_OFF:
        return "flash encryption is off: the nvs_keys partition is readable in a flash dump";
    case FKD_IDF_F_FLASH_ENC_DEV:
        return "flash encryption is in development mode: the UART can still flash images";
    case FKD_IDF_F_JTAG_OPEN:
        return "JTAG is not disabled in eFuse";
    case FKD_IDF_F_DOWNLOAD_OPEN:
        return "UART download mode is neither disabled nor in secure download mode";
    case FKD_IDF_F_NVS_PLAIN:
        return "NVS is mounted without the keys of nvs_keys (plaintext)";
    default:
        return "unknown finding";
    }
}

enum fkd_idf_ota_action fkd_idf_ota_decide(const struct fkd_idf_ota_in *in) {
    /* Only PENDING_VERIFY needs a decision: VALID is done, NEW is what a bootloader without
     * CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE leaves (it never rolls back), INVALID/ABORTED do
     * not boot, and no entry at all is a first flash or a factory image. */
    if (!in->state_known || in->state != FKD_OTA_IMG_PENDING_VERIFY) {
        return FKD_IDF_OTA_NONE;
    }
    if (in->welcomed) {
        return FKD_IDF_OTA_MARK_VALID;
    }
    if (in->since_boot_ms < in->self_test_ms) {
        return FKD_IDF_OTA_WAIT;
    }
    /* Rolling back with nothing to roll back to would leave the chip without a bootable
     * image: the unconfirmed image keeps running (logged), as robot-sim does. */
    return in->rollback_possible ? FKD_IDF_OTA_ROLLBACK : FKD_IDF_OTA_KEEP;
}

const char *fkd_idf_ota_action_name(enum fkd_idf_ota_action a) {
    switch (a) {
    case FKD_IDF_OTA_NONE:
        return "none";
    case FKD_IDF_OTA_WAIT:
        return "wait";
    case FKD_IDF_OTA_MARK_VALID:
        return "mark-valid";
    case FKD_IDF_OTA_ROLLBACK:
        return "rollback";
    case FKD_IDF_OTA_KEEP:
        return "keep";
    }
    return "unknown";
}
