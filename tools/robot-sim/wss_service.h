/* robot-sim's wss client service (device/src/wss/wss.c, fkd/wss.h): the connection to the control
 * plane, run in a thread of its own next to the DTLS listener's poll loop in services.c.
 *
 * Why a thread: the client is written as one blocking task with bounded waits (as it runs on
 * the chip, a FreeRTOS task), and a TLS handshake (ECDHE + certificate verification) takes
 * long enough that running it inside the listener's poll loop would stall DTLS clients. The
 * two share only read-only boot state (store, config, posture), the log handler and the
 * atomic flags of rs->wss (robot_sim.h), where the client and its options live.
 *
 * Options (taken by start_services):
 *   --wss-uri URI        override CONFIG_MINITRAIN_WSS_URI (tests)
 *   --wss-host HOST      override CONFIG_MINITRAIN_EXPECTED_HOST (tests)
 *   --wss-attempts N     give up after N connections (default: never)
 *   --wss-backoff-ms MS  first retry delay (default 1000; the cap is 60 s)
 *   --wss-connect-timeout-ms MS  TCP + TLS + upgrade deadline (default 10000)
 *   --no-wss             do not start the client
 * Without a URI (sdkconfig, env or --wss-uri) the client is not started (one INFO line).
 *
 * OTA (issue 7): when the robot runs app images, the client carries the "ota" state and
 * answers the update and OTA-key requests (fkd/ota_remote.h); a welcome confirms a running
 * image still pending verification (robot_sim_ota_confirm: its self-test). A running image
 * whose project name contains "no-wss" stands for a broken firmware: the client is not
 * started, so that image's self-test times out and it is rolled back (services.c). */
#ifndef ROBOT_SIM_WSS_SERVICE_H
#define ROBOT_SIM_WSS_SERVICE_H

#include "robot_sim.h"

/* If argv[i] is a wss option, consumes it (and its value) and returns how many arguments it
 * took (1 or 2); 0 when it is not one; -1 when its value is missing or bad. */
int robot_sim_wss_option(struct robot_sim *rs, int argc, char **argv, int i);
/* Starts the client thread (no-op with --no-wss or without a URI). 0, or 1 when setup failed
 * (logged; the robot keeps running its other services). */
int robot_sim_wss_start(struct robot_sim *rs, const char *fw_version);
/* Asks the thread to stop and joins it (at most a few hundred ms). Safe when not started. */
void robot_sim_wss_stop(struct robot_sim *rs);
/* 1 once the client ended because a request (a successful ota_finish) asked for a reboot:
 * it closed with 1000 "rebooting" and its thread is done. */
int robot_sim_wss_reboot_requested(struct robot_sim *rs);
/* 1 once the server welcomed the client (the running image then confirmed itself). */
int robot_sim_wss_welcomed(struct robot_sim *rs);

#endif
