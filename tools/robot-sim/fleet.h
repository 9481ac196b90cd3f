/* robot-sim --fleet N: N simulated robots in one process, for rotation rehearsals and the
 * benchmark (issue 14, "Simulation and rehearsal"; docs/device.md, section robot-sim --fleet).
 *
 *   robot-sim --fleet N --fleet-keys KEYS_DIR --sdkconfig FILE [fleet options]
 *             [boot options] [service options]
 *
 * Each robot is a whole struct robot_sim running the same code as a single robot-sim: its own
 * flash image in memory (a compact partition table with nvs and nvs_keys, filled from
 * KEYS_DIR/robot-*.nvs.bin and .nvs_keys.bin as `provision-keys batch` writes them), the boot
 * of robot_sim_boot_core (NVS -> rotation records -> store -> policy), then start_services (the
 * DTLS listener on a port the OS picks, reported in hello's posture.dtls_port, and the wss
 * client) in a thread of its own with a small stack; a robot whose power was cut boots again
 * from its flash. Faults are chosen per robot from --seed, so a rehearsal can be repeated.
 *
 * On stop (SIGTERM/SIGINT or --run-ms) one summary line on stdout:
 *   fleet: N robots, B booted, C connected, O offline, P power cuts, D confirmations dropped;
 *   mtls: X committed, Y rolled_back, ...
 * and with --fleet-status FILE the same counts as one JSON object, rewritten every 500 ms. */
#ifndef ROBOT_SIM_FLEET_H
#define ROBOT_SIM_FLEET_H

#include <stdio.h>

/* The "fleet options:" section of robot-sim --help. */
void robot_sim_fleet_usage(FILE *f);
/* 1 when argv asks for a fleet (--fleet or --fleet-keys among the options). */
int robot_sim_fleet_wanted(int argc, char **argv);
/* Runs the fleet; returns the process exit code (0 stopped well, 2 usage or unreadable keys,
 * 3 a robot's boot was refused, 4 out of memory, threads or file descriptors). */
int robot_sim_fleet(int argc, char **argv);

#endif
