/* fleetctl devices / device ID: the admin API of fleetkey-server over mTLS with a PKCS#12
 * identity (cmd_server.c, docs/server.md). */
#ifndef FLEETCTL_SERVER_CMD_H
#define FLEETCTL_SERVER_CMD_H

/* argv starts at the first global option (--p12 ...) or the command; returns the exit
 * status (0 ok, 1 failure, 2 usage). */
int fleetctl_server_main(int argc, char **argv);

#endif
