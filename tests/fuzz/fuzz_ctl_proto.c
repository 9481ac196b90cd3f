/* Fuzz target: the control protocol's request parser and handler (device/src/ctl/ctl_proto.c), fed
 * whatever a peer can put in one datagram. Checks the invariants that matter on the device:
 * no read past len, no write past the response buffer, a response for every input, and a
 * position that never leaves the arena. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fkd/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void status_cb(void *user, struct fkd_ctl_json *w) {
    (void)user;
    fkd_ctl_json_begin(w, "posture");
    fkd_ctl_json_str(w, "build", "development");
    fkd_ctl_json_end(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct fkd_ctl_robot robot;
    struct fkd_ctl_key keys[FKD_CTL_SLOT_COUNT];
    struct fkd_ctl_stats stats;
    memset(keys, 0, sizeof keys);
    memset(&stats, 0, sizeof stats);
    keys[0].psk_len = 32;
    memcpy(keys[0].fpr, "sha256:0011223344556677", FKD_CTL_FPR_LEN);
    struct fkd_ctl_reqctx ctx = {"fuzz", 1, FKD_CTL_MODE_DTLS, "robot-fuzz", 0, keys, &stats,
                                 4, status_cb, NULL};
    /* An exact-size heap copy of the response buffer, so ASan sees any overrun. */
    uint8_t *out = malloc(FKD_CTL_RESP_MAX);
    if (out == NULL) {
        return 0;
    }
    size_t out_len = 0;
    fkd_ctl_proto_handle(data, size, &ctx, &robot, out, FKD_CTL_RESP_MAX, &out_len);
    if (out_len == 0 || out_len > FKD_CTL_RESP_MAX || out[out_len - 1] != '\n') {
        abort();
    }
    if (robot.x > FKD_CTL_POS_LIMIT || robot.x < -FKD_CTL_POS_LIMIT ||
        robot.y > FKD_CTL_POS_LIMIT || robot.y < -FKD_CTL_POS_LIMIT) {
        abort();
    }
    struct fkd_ctl_req req;
    (void)fkd_ctl_proto_parse(data, size, &req, NULL);
    free(out);
    return 0;
}
