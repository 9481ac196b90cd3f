/* Fuzz target: the device's credential-rotation request handler (fkd/rot_remote.h) behind the
 * wss message parser: everything a server's rot_* request does to a robot's NVS. The input is
 * a sequence of messages, one per line; each is parsed by fkd_wss_msg_parse and a request's
 * body slice handed to fkd_rot_remote_request, as the wss client does; after each request the
 * credentials callback and the listener sync run as the client and the listener would. The
 * robot: NVS in memory with the factory PSK (slot A), restored before every input.
 * Invariants (abort on violation): an answer is either an error with a code from
 * docs/wss-protocol.md and no body, or an ok body that is one JSON object within its buffer;
 * only rot_stage and rot_rollback ask for a reconnect; the "rot" state always parses; the active
 * PSK is always complete (32 bytes + an identity); the committed OTA key is always one the
 * Secure Boot V2 verifier takes (the factory key A of tests/vectors/sbv2, or a successor a
 * valid endorsement brought in). Corpus: tests/fuzz/corpus/rot_remote/ (the ota entries were
 * written by test_rot_remote_ota with FK_CORPUS_OUT). */
#include "fkd/ctl.h"
#include "fkd/flash.h"
#include "fkd/nvs.h"
#include "fkd/ota.h"
#include "fkd/rot.h"
#include "fkd/rot_remote.h"
#include "fkd/wss.h"
#include "reply_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NVS_SIZE (8u * FKD_FLASH_SECTOR)

static uint8_t pristine[NVS_SIZE];
static uint8_t chip[NVS_SIZE];
static int ready;
static struct fkd_flash_mem mem;
static struct fkd_flash flash;
static struct fkd_nvs nvs;
static struct fkd_rot rot;
static struct fkd_rot_remote rem;
static struct fkd_ctl ctl;
static struct fkd_rot_ctl sync_state;
static char body[FKD_WSS_MSG_MAX];
static uint8_t cert_buf[FKD_WSS_MSG_MAX], key_buf[FKD_WSS_MSG_MAX];

/* tests/vectors/sbv2/key_a.pub.pem as DER: the factory security/ota_pubkey (a public key). */
static const uint8_t ota_key_a[91] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
    0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x0b,
    0xf3, 0x57, 0xd8, 0x3a, 0x00, 0x0e, 0x6f, 0x6c, 0xbc, 0x6f, 0x5b, 0x56, 0x21, 0xbd,
    0x85, 0xf4, 0xfb, 0x5c, 0xff, 0x23, 0xd3, 0x80, 0x1e, 0x2a, 0x09, 0x83, 0xe0, 0x40,
    0xc3, 0x15, 0xa6, 0x85, 0xb8, 0x8f, 0x2c, 0x23, 0xee, 0x96, 0x7b, 0x1c, 0x09, 0x53,
    0xd1, 0x56, 0xa0, 0x1a, 0xb2, 0xe4, 0x49, 0x36, 0x34, 0x9f, 0xe7, 0xd5, 0xed, 0xe7,
    0x68, 0x3d, 0x04, 0x93, 0xb3, 0xc4, 0x05};

static void log_line(void *user, enum fkd_log_level lvl, const char *line) {
    (void)user;
    fprintf(stderr, "%s: %s\n", fkd_log_level_name(lvl), line);
}

static void setup_once(void) {
    if (getenv("FK_FUZZ_LOG") != NULL) {
        fkd_log_set(log_line, NULL, FKD_LOG_INFO);
    }
    uint8_t psk[32];
    for (unsigned i = 0; i < sizeof psk; i++) {
        psk[i] = (uint8_t)i;
    }
    memset(pristine, 0xFF, sizeof pristine);
    fkd_flash_mem_init(&mem, pristine, NVS_SIZE, &flash);
    fkd_nvs_init(&nvs);
    if (fkd_nvs_format(&nvs, &flash, 0, NVS_SIZE, NULL) != FKD_OK ||
        fkd_nvs_set_blob(&nvs, "security", "dtls_psk", psk, sizeof psk) != FKD_OK ||
        fkd_nvs_set_str(&nvs, "security", "psk_id", "robot-aabbccddeeff") != FKD_OK ||
        fkd_nvs_set_blob(&nvs, "security", "ota_pubkey", ota_key_a, sizeof ota_key_a) != FKD_OK) {
        abort();
    }
    fkd_nvs_free(&nvs);
    fkd_rot_remote_init(&rem);
    ready = 1;
}

static int known_code(const char *c) {
    static const char *const codes[] = {
        "bad_request", "busy",        "crypto_error", "not_newer",    "key_mismatch", "no_csr",
        "bad_cert",    "flash_error", "not_staged",   "bad_key",      "not_endorsed", "no_key",
        "bad_manifest"};
    return reply_code_known(c, codes, sizeof codes / sizeof codes[0]);
}

static void check_active_psk(void) {
    const struct fkd_rot_info *i = fkd_rot_info(&rot, FKD_ROT_PSK);
    uint8_t psk[40];
    char id[FKD_PSK_ID_MAX + 1];
    size_t pl = 0, il = 0;
    if (fkd_rot_read(&rot, FKD_ROT_PSK, 0, i->active, psk, sizeof psk, &pl) != FKD_OK || pl != 32 ||
        fkd_rot_read(&rot, FKD_ROT_PSK, 1, i->active, (uint8_t *)id, sizeof id, &il) != FKD_OK ||
        il == 0) {
        abort();
    }
}

static void check_active_ota_key(void) {
    uint8_t der[FKD_OTA_KEY_MAX];
    size_t n = 0;
    struct fkd_sbv2_keys ks;
    fkd_sbv2_keys_init(&ks);
    unsigned slot = fkd_rot_info(&rot, FKD_ROT_OTA)->active;
    if (fkd_rot_read(&rot, FKD_ROT_OTA, 0, slot, der, sizeof der, &n) != FKD_OK ||
        fkd_sbv2_keys_add(&ks, der, n) != FKD_OK) {
        abort();
    }
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
        fkd_rot_remote_request(&rem, m.kind, b, m.has_body ? m.body_len : 0, &r);
    if (rr == FKD_WSS_REQ_UNKNOWN) {
        if (strcmp(m.kind, "rot_csr") == 0 || strcmp(m.kind, "rot_stage") == 0 ||
            strcmp(m.kind, "rot_commit") == 0 || strcmp(m.kind, "rot_rollback") == 0) {
            abort();
        }
        return;
    }
    if (memchr(r.code, '\0', sizeof r.code) == NULL ||
        memchr(r.message, '\0', sizeof r.message) == NULL || r.reboot) {
        abort();
    }
    if (r.code[0] != '\0') {
        if (!known_code(r.code) || r.body_len != 0 || r.reconnect) {
            abort();
        }
    } else {
        if (r.body_len == 0 || r.body_len >= r.body_cap) {
            abort();
        }
        reply_object_text(body, r.body_len);
        if (r.reconnect && strcmp(m.kind, "rot_stage") != 0 &&
            strcmp(m.kind, "rot_rollback") != 0) {
            abort();
        }
    }
    struct fkd_wss_creds c;
    memset(&c, 0, sizeof c);
    c.cert_buf = cert_buf;
    c.key_buf = key_buf;
    fkd_rot_remote_credentials(&rem, &c);
    (void)fkd_rot_remote_tick(&rem);
    if (fkd_rot_ctl_sync(&sync_state, &rot, &ctl) != FKD_OK) {
        abort();
    }
    check_active_psk();
    check_active_ota_key();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ready) {
        setup_once();
    }
    memcpy(chip, pristine, NVS_SIZE);
    fkd_flash_mem_init(&mem, chip, NVS_SIZE, &flash);
    fkd_nvs_init(&nvs);
    fkd_rot_init(&rot);
    if (fkd_nvs_mount(&nvs, &flash, 0, NVS_SIZE, NULL, NULL) != FKD_OK ||
        fkd_rot_load(&rot, &nvs, 2, 0) != FKD_OK) {
        abort();
    }
    fkd_rot_remote_free(&rem);
    fkd_rot_remote_init(&rem);
    if (fkd_rot_remote_setup(&rem, &rot) != FKD_OK) {
        abort();
    }
    fkd_ctl_init(&ctl);
    fkd_rot_ctl_init(&sync_state);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            if (i > start) {
                one(data + start, i - start);
            }
            start = i + 1;
        }
    }
    char st[512];
    size_t n = fkd_rot_state_json(&rot, st, sizeof st);
    if (n == 0) {
        abort();
    }
    reply_object_text(st, n);
    fkd_ctl_free(&ctl);
    fkd_nvs_free(&nvs);
    return 0;
}
