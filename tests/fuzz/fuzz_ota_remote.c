/* Fuzz target: the device's OTA request handler (fkd/ota_remote.h) behind the wss message
 * parser, i.e. everything a server's request does to a robot's flash and NVS. The input is a
 * sequence of messages, one per line; each is parsed by fkd_wss_msg_parse and a request's body
 * slice handed to fkd_ota_remote_request, as the wss client does. The robot: a 4 MiB flash in
 * memory with the default partition table, NVS holding security/ota_pubkey (the P-256 vector
 * key A, tests/vectors/sbv2/key_a.pub.pem), running ota_0 (no otadata entry), restored before
 * every input. Invariants (abort on violation): an answer is either an error with a code from
 * docs/wss-protocol.md and no body, or an ok body that is one JSON object within its buffer
 * (re-parsed by the device's own validating scanner); only an ok ota_finish asks for a
 * reboot; the "ota" state always parses. Corpus: tests/fuzz/corpus/ota_remote/. */
#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/ota_remote.h"
#include "fkd/part.h"
#include "fkd/wss.h"
#include "fleetkey/partition.h"
#include "reply_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHIP (4u << 20)

static const uint8_t key_a_der[] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x0b, 0xf3, 0x57, 0xd8, 0x3a,
    0x00, 0x0e, 0x6f, 0x6c, 0xbc, 0x6f, 0x5b, 0x56, 0x21, 0xbd, 0x85, 0xf4, 0xfb, 0x5c, 0xff, 0x23,
    0xd3, 0x80, 0x1e, 0x2a, 0x09, 0x83, 0xe0, 0x40, 0xc3, 0x15, 0xa6, 0x85, 0xb8, 0x8f, 0x2c, 0x23,
    0xee, 0x96, 0x7b, 0x1c, 0x09, 0x53, 0xd1, 0x56, 0xa0, 0x1a, 0xb2, 0xe4, 0x49, 0x36, 0x34, 0x9f,
    0xe7, 0xd5, 0xed, 0xe7, 0x68, 0x3d, 0x04, 0x93, 0xb3, 0xc4, 0x05};

static uint8_t *pristine;
static uint8_t *chip;
static struct fkd_flash_mem mem;
static struct fkd_flash flash;
static struct fkd_part_table parts;
static struct fkd_nvs nvs;
static struct fkd_ota_boot running;
static struct fkd_ota_remote rem;
static char body[FKD_WSS_MSG_MAX];

static const struct fkd_part *nvs_part(void) {
    return fkd_part_find(&parts, FKD_PART_DATA, FKD_PART_SUB_NVS, NULL);
}

/* FK_FUZZ_LOG=1 shows the device's log lines (to read what a corpus file exercises). */
static void log_line(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    fprintf(stderr, "%s: %s\n", fkd_log_level_name(lvl), line);
}

static void setup_once(void) {
    if (getenv("FK_FUZZ_LOG") != NULL) {
        fkd_log_set(log_line, NULL, FKD_LOG_INFO);
    }
    static struct fk_partition_table ht;
    uint8_t table[FK_PARTITION_TABLE_SIZE];
    size_t tlen = 0;
    pristine = malloc(CHIP);
    chip = malloc(CHIP);
    if (pristine == NULL || chip == NULL) {
        abort();
    }
    memset(pristine, 0xFF, CHIP);
    if (fk_partition_csv_parse(fk_partition_default_csv, strlen(fk_partition_default_csv), "d.csv",
                               &ht, NULL) != FK_OK ||
        fk_partition_encode(&ht, table, sizeof table, &tlen) != FK_OK) {
        abort();
    }
    memcpy(pristine + FKD_PART_TABLE_OFFSET, table, tlen);
    fkd_flash_mem_init(&mem, pristine, CHIP, &flash);
    fkd_nvs_init(&nvs);
    if (fkd_part_load(&flash, &parts) != FKD_OK ||
        fkd_nvs_format(&nvs, &flash, nvs_part()->offset, nvs_part()->size, NULL) != FKD_OK ||
        fkd_nvs_set_blob(&nvs, "security", "ota_pubkey", key_a_der, sizeof key_a_der) != FKD_OK) {
        abort();
    }
    fkd_nvs_free(&nvs);
}

static int known_code(const char *c) {
    static const char *const codes[] = {"bad_request",
                                        "busy",
                                        "updates_disabled",
                                        "pending_verify",
                                        "too_large",
                                        "not_endorsed",
                                        "flash_error",
                                        "bad_offset",
                                        "no_update",
                                        "not_app_image",
                                        "transfer_corrupt",
                                        "truncated",
                                        "signature_untrusted",
                                        "signature_mismatch",
                                        "signature_malformed",
                                        "image_invalid",
                                        "anti_rollback",
                                        "fingerprint_mismatch",
                                        "bad_key",
                                        "not_staged"};
    return reply_code_known(c, codes, sizeof codes / sizeof codes[0]);
}

static void one(const uint8_t *msg, size_t len) {
    static struct fkd_wss_msg m;
    if (fkd_wss_msg_parse(msg, len, &m, NULL) != FKD_OK || m.type != FKD_WSS_MSG_REQUEST) {
        return;
    }
    struct fkd_wss_reply r;
    memset(&r, 0, sizeof r);
    r.body = body;
    r.body_cap = sizeof body - 64;
    const uint8_t *b = m.has_body ? msg + m.body_off : NULL;
    enum fkd_wss_req_result rr =
        fkd_ota_remote_request(&rem, m.kind, b, m.has_body ? m.body_len : 0, &r);
    if (rr == FKD_WSS_REQ_UNKNOWN) {
        if (strncmp(m.kind, "ota_", 4) == 0 &&
            (strcmp(m.kind, "ota_begin") == 0 || strcmp(m.kind, "ota_chunk") == 0 ||
             strcmp(m.kind, "ota_finish") == 0 || strcmp(m.kind, "ota_abort") == 0 ||
             strcmp(m.kind, "ota_key") == 0)) {
            abort();
        }
        return;
    }
    if (memchr(r.code, '\0', sizeof r.code) == NULL ||
        memchr(r.message, '\0', sizeof r.message) == NULL) {
        abort();
    }
    if (r.code[0] != '\0') {
        if (!known_code(r.code) || r.body_len != 0 || r.reboot) {
            abort();
        }
        return;
    }
    if (r.body_len == 0 || r.body_len >= r.body_cap) {
        abort();
    }
    reply_object_text(body, r.body_len);
    if (r.reboot && strcmp(m.kind, "ota_finish") != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (pristine == NULL) {
        setup_once();
    }
    memcpy(chip, pristine, CHIP);
    fkd_flash_mem_init(&mem, chip, CHIP, &flash);
    fkd_nvs_init(&nvs);
    if (fkd_nvs_mount(&nvs, &flash, nvs_part()->offset, nvs_part()->size, NULL, NULL) != FKD_OK) {
        abort();
    }
    memset(&running, 0, sizeof running);
    running.slot = 0;
    running.part = fkd_part_find(&parts, FKD_PART_APP, FKD_PART_SUB_OTA_0, NULL);
    running.entry = -1;
    running.state = FKD_OTA_IMG_UNDEFINED;
    running.app.secure_version = 1;
    running.app.hash_appended = 1;
    memcpy(running.app.version, "1.0.0", 6);
    struct fkd_ota_remote_config c = {&flash,    &parts,           &nvs, &running,
                                      key_a_der, sizeof key_a_der, NULL, 0};
    fkd_ota_remote_init(&rem);
    if (fkd_ota_remote_setup(&rem, &c) != FKD_OK) {
        abort();
    }
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            one(data + start, i - start);
            start = i + 1;
        }
    }
    char st[1024];
    size_t n = fkd_ota_remote_state_json(&rem, st, sizeof st);
    if (n == 0 || n >= sizeof st) {
        abort();
    }
    reply_object_text(st, n);
    fkd_ota_remote_free(&rem);
    fkd_nvs_free(&nvs);
    return 0;
}
