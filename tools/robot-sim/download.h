/* robot-sim download mode: the simulated robot's ROM bootloader on a pseudo-terminal.
 *
 * `--flash IMAGE --download-mode [--pty-link PATH] [--mac AA:BB:CC:DD:EE:FF] [--fault KIND]...
 *  [--boot-after] [-- BOOT-ARGS...]` opens a pty, prints its path, points PATH at it, and
 * answers the ESP32 ROM serial protocol there (device/src/rom/rom.c), writing into IMAGE with NOR
 * semantics. It leaves download mode on FLASH_END, or with --boot-after when the host that
 * talked to it closes the port, and then hands over to the normal boot: robot-sim from the same
 * directory, run as `robot-sim --flash IMAGE BOOT-ARGS...` (without BOOT-ARGS it just exits:
 * robot-sim cannot boot without at least --sdkconfig). */
#ifndef ROBOT_SIM_DOWNLOAD_H
#define ROBOT_SIM_DOWNLOAD_H

/* Parses the options above (argv[0] is the program name; --download-mode may be present or
 * not) and runs download mode. Returns the process exit code: 0 after leaving download mode
 * (or the booted program's, which replaces this process), 1 on a runtime failure, 2 on a usage
 * error. */
int fk_sim_download_main(int argc, char **argv);

#endif
