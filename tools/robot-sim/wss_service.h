/* robot-sim's wss client service (device/src/wss.c, fkd/wss.h): the connection to the control
 * plane, run in a thread of its own next to the DTLS listener's poll loop in services.c.
 *
 * Why a thread: the client is written as one blocking task with bounded waits (as it runs on
 * the chip, a FreeRTOS task), and a TLS handshake (ECDHE + certificate verification) takes
 * long enough that running it inside the listener's poll loop would stall DTLS clients. The
 * two share only read-only boot state (store, config, posture) and the log handler.
 *
 * Options (taken by start_services):
 *   --wss-uri URI        override CONFIG_MINITRAIN_WSS_URI (tests)
 *   --wss-host HOST      override CONFIG_MINITRAIN_EXPECTED_HOST (tests)
 *   --wss-attempts N     give up after N connections (default: never)
 *   --wss-backoff-ms MS  first retry delay (default 1000; the cap is 60 s)
 *   --no-wss             do not start the client
 * Without a URI (sdkconfig, env or --wss-uri) the client is not started (one INFO line). */
#ifndef ROBOT_SIM_WSS_SERVICE_H
#define ROBOT_SIM_WSS_SERVICE_H

#include "robot_sim.h"

/* If argv[i] is a wss option, consumes it (and its value) and returns how many arguments it
 * took (1 or 2); 0 when it is not one; -1 when its value is missing or bad. */
int robot_sim_wss_option(int argc, char **argv, int i);
/* Starts the client thread (no-op with --no-wss or without a URI). 0, or 1 when setup failed
 * (logged; the robot keeps running its other services). */
int robot_sim_wss_start(struct robot_sim *rs, const char *fw_version);
/* Asks the thread to stop and joins it (at most a few hundred ms). Safe when not started. */
void robot_sim_wss_stop(void);

#endif
