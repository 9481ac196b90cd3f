/* robot-sim OTA (issue 7, section 2): the bootloader's slot choice at boot, the running
 * image, the app's self-test, and `robot-sim ota`, the factory update from a file through the
 * device's streaming API (fkd/ota.h). A network transport later feeds the same
 * fkd_ota_begin/write/finish with the chunks it receives. */
#ifndef ROBOT_SIM_OTA_CMD_H
#define ROBOT_SIM_OTA_CMD_H

#include "robot_sim.h"

#include "fkd/ota.h"

/* `robot-sim ota --flash FILE --sdkconfig FILE --image SIGNED.bin [--chunk N]
 *  [--cut-after N [--torn]] [--verbose|--quiet]`; argv[0] is "ota". Boots the robot as
 * main.c does (partition table, sdkconfig + env, NVS, store, policy, bootloader), then streams
 * the image in chunks (default 4096 bytes) into the inactive slot. Exit codes: 0 installed
 * (boots next, pending verification), 2 usage / unreadable input, 3 boot refused by policy,
 * 4 flash error, 5 refused (updates disabled, bad or untrusted signature, not an app image,
 * anti-rollback), 6 power cut (--cut-after). */
int robot_sim_ota(int argc, char **argv);

/* The bootloader step of a boot: picks the slot from otadata (rolling back an image that did
 * not confirm itself), checks it (signature too when CONFIG_SECURE_BOOT_V2_ENABLED, with the
 * trusted keys of rs->store), and prints the running image: on stdout as "running: ..." lines
 * when text is set, otherwise as log lines. With Secure Boot key digests burned in the virtual
 * eFuse (FLASH.efuse, docs/efuse.md) the bootloader trusts those instead: a production build
 * boots only an image signed by such a key, a development build runs what it finds and warns.
 * Returns 0; 2 (an unreadable eFuse file); 3 (production: secure boot refused every image);
 * 4 on a flash error. */
int robot_sim_ota_boot(struct robot_sim *rs, int text);

/* The app's self-test verdict: "pass" marks the running image valid (and commits its
 * secure_version), "fail" marks it invalid so the next boot rolls back. NULL: no verdict yet
 * (the image stays pending; an unconfirmed image is rolled back at the next boot). Returns
 * 0, 2 (bad word), 4 (flash error), 5 (fail with nothing to roll back to). */
int robot_sim_ota_self_test(struct robot_sim *rs, const char *verdict);

/* For the control-plane client: the robot was welcomed by the control plane, which is its
 * self-test passing. Marks a PENDING_VERIFY image valid (prints the "self-test: pass: ..."
 * line); a no-op otherwise. Returns as robot_sim_ota_self_test. */
int robot_sim_ota_confirm(struct robot_sim *rs);
/* 1 when the running image is still PENDING_VERIFY (it has not confirmed itself). */
int robot_sim_ota_pending(const struct robot_sim *rs);
/* What the bootloader chose for this boot of rs (its state changes as the image confirms);
 * NULL when the flash has no OTA partitions. Points into rs->ota. */
struct fkd_ota_boot *robot_sim_ota_running(struct robot_sim *rs);
/* The self-test failed (no welcome in time): a PENDING_VERIFY image is marked invalid so the
 * next boot runs the previous slot. 0 (also when not pending), 4 flash error, 5 nothing to
 * roll back to. */
int robot_sim_ota_rollback(struct robot_sim *rs);

#endif
