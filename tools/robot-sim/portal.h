/* robot-sim's Wi-Fi re-provisioning portal (docs/device.md, "Wi-Fi re-provisioning portal"):
 * the soft-AP is simulated by a TCP listener (loopback in tests); the HTTP handling, the
 * credential rules and the NVS write are the device library's (fkd/portal.h).
 *
 * When: at boot, with --portal-listen ADDR:PORT, if the robot has no usable Wi-Fi credential
 * (posture wifi "off": none in NVS, and in production the Kconfig fallback is never one) or
 * --wifi-fail says the one it has does not join; and while services run, when the button is
 * pressed (SIGUSR1: services.c, robot_sim_button_arm). It serves until a valid form is saved, then
 * the store and policy are loaded again from NVS and the robot carries on. */
#ifndef ROBOT_SIM_PORTAL_H
#define ROBOT_SIM_PORTAL_H

#include "robot_sim.h"

/* Parses --portal-listen ADDR:PORT (IPv4; port 0: the OS picks one, printed) and --wifi-fail
 * at argv[i]; returns how many arguments it took (0: not a portal option, -1: bad value,
 * said on stderr). */
int robot_sim_portal_option(int argc, char **argv, int i);
/* 1 when --portal-listen was given. */
int robot_sim_portal_enabled(void);
/* 1 when the boot should open the portal: enabled, and no usable Wi-Fi or --wifi-fail. Logs
 * why. Clears --wifi-fail for later calls (it simulates the credential found at boot). */
int robot_sim_portal_needed(const struct robot_sim *rs);
/* Serves the portal until a form is saved (0: the store and posture of rs are reloaded from
 * NVS), a stop was requested (1), or an error (4: socket or flash; 6 power cut). */
int robot_sim_portal_run(struct robot_sim *rs);

#endif
