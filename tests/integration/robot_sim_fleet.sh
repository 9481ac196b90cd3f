#!/bin/sh
# robot-sim --fleet against a real fleetkey-server (issue 14, "Simulation and rehearsal"):
#   sh robot_sim_fleet.sh BIN_DIR TMP_DIR
# 20 robots minted by `provision-keys batch --ca`, run by one robot-sim --fleet process with
# 10 % offline, 10 % dropping the connection instead of answering rot_commit and 10 % losing
# power at a flash write of the rotation (--seed 3 picks at least one of each), rotated mtls.
# Checked: every robot that is not offline ends connected again (committed the new certificate,
# or kept/rolled back to the old one), no robot is left staged or in trial, the plan's counts
# match the robots' own states, the faults happened, and the audit chain verifies.
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
N=20
. "$HERE/skip.sh"
for t in provision-keys robot-sim fleetkey-server wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS
fail() {
    echo "FAIL [robot_sim_fleet]: $*" >&2
    for f in fleet.err srv.log fleet.json; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}
trap stop_all EXIT
. "$HERE/fleet_lib.sh"

fleet_mint $N
fleet_server
fleet_start fleet $N --fleet-offline 10 --fleet-drop-confirm 10 --fleet-power-cut 10 --seed 3 \
    --rot-trial-ms 30000 --run-ms 280000
fleet_wait_status fleet
OFF=$(fleet_field fleet.json offline)
[ "$OFF" -ge 1 ] || fail "seed 3 chose no offline robot"
UP=$((N - OFF))
fleet_wait_online fleet $UP 60
echo "fleet: $UP of $N robots connected ($OFF offline by design)"

fleet_rotate mtls 10
fleet_wait_settled 200
CONF=$(fleet_count confirmed)
FAILED=$(fleet_count failed)
RB=$(fleet_count rolled_back)
POFF=$(fleet_count offline)
echo "plan $ROT_ID settled: $CONF confirmed, $FAILED failed, $RB rolled back, $POFF offline"

# Every robot that is not offline reconnects with a working credential, none stays in trial.
i=0
while :; do
    if [ "$(fleet_field fleet.json online)" -eq $UP ] && [ "$(fleet_rot fleet mtls staged)" = 0 ] &&
        [ "$(fleet_rot fleet mtls trial)" = 0 ] && [ "$(fleet_field fleet.json power_cuts)" -ge 1 ]; then
        break
    fi
    i=$((i + 1))
    [ $i -le 300 ] || fail "robots not back: $(cat fleet.json)"
    sleep 0.2
done
COMMITTED=$(fleet_rot fleet mtls committed)
[ "$COMMITTED" -eq "$CONF" ] || fail "plan confirmed $CONF, robots committed $COMMITTED"
[ "$POFF" -eq "$OFF" ] || fail "plan lists $POFF offline, the fleet has $OFF"
[ $((CONF + FAILED + RB + POFF)) -eq $N ] || fail "plan counts do not add up to $N"
[ "$(fleet_field fleet.json power_cuts)" -ge 1 ] || fail "no power cut happened"
[ "$(fleet_field fleet.json dropped)" -ge 1 ] || fail "no confirmation was dropped"

kill -TERM "$FPID"
wait "$FPID" || fail "robot-sim --fleet exit status $?"
grep -q "^fleet: $N robots, $N booted, $UP connected, $OFF offline" fleet.out ||
    fail "summary: $(cat fleet.out)"
"$B/provision-keys" inventory --inventory keys/inventory.db verify-audit >audit.out 2>&1 ||
    fail "verify-audit: $(cat audit.out)"
if grep -q 'Sanitizer\|runtime error:' fleet.err srv.log; then
    fail "sanitizer report"
fi
echo "robot_sim_fleet: $N robots, $COMMITTED committed, $((UP - COMMITTED)) kept or rolled back" \
    "to the old credential and reconnected, $OFF offline, 0 lost"
