/* robot-sim-dl: robot-sim's download mode as a program of its own (tools/robot-sim/download.c,
 * the same code robot-sim runs for --download-mode), so the flashing path can be used and
 * tested without the rest of the device library. */
#include "download.h"

int main(int argc, char **argv) {
    return fk_sim_download_main(argc, argv);
}
