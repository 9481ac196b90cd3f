/* ======================================================================================
 * START_SERVICES: the place where robot-sim starts the robot's network services.
 *
 * Owner of the body below: the DTLS-PSK control listener (issue 4, section 4: device/src/ctl*.c,
 * fkd/ctl.h). When the listener exists, this function sets it up in caller memory
 * (fkd_ctl_init / fkd_ctl_setup with &rs->store and &rs->posture) and serves until stopped.
 * The boot in main.c has already enforced policy: it never calls this function when the boot
 * was refused, and rs->posture.listener says whether the listener may run and how.
 * ====================================================================================== */
#include "robot_sim.h"

#include <stdio.h>

int start_services(struct robot_sim *rs, int argc, char **argv) {
    if (argc > 0) {
        fprintf(stderr, "robot-sim: unknown option %s\n", argv[0]);
        return 2;
    }
    switch (rs->posture.listener) {
    case FKD_LISTENER_REFUSED:
        fkd_log(FKD_LOG_ERROR, "services: control listener not started (policy)");
        break;
    case FKD_LISTENER_DTLS:
    case FKD_LISTENER_PLAINTEXT:
        fkd_log(FKD_LOG_WARN, "services: no control listener in this build; nothing to run");
        break;
    }
    return 0;
}
