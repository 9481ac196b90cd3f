#!/bin/sh
# robot-sim --fleet's two ways to run robots (issue 14, the 10,000-robot bench):
#   sh robot_sim_fleet_sched.sh BIN_DIR TMP_DIR
# 16 robots minted by `provision-keys batch --ca`: 8 in one process as tasks on one worker
# thread with one connection slot (--fleet-threads 1 --fleet-connects 1: every connection
# attempt but one waits its turn), 8 in another with a thread pair each (--fleet-threads 0).
# One plan rotates psk,mtls on all 16 through a real fleetkey-server. Checked: every robot of
# both processes committed both classes and is connected again, the plan confirmed all 16,
# the scheduler queued connection attempts, and both processes exit 0.
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
N=16
. "$HERE/skip.sh"
for t in provision-keys robot-sim fleetkey-server wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS
fail() {
    echo "FAIL [robot_sim_fleet_sched]: $*" >&2
    for f in tasks.err threads.err srv.log tasks.json threads.json; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
trap stop_all EXIT
. "$HERE/fleet_lib.sh"

fleet_mint $N
fleet_server
fleet_start tasks 8 --fleet-threads 1 --fleet-connects 1 --rot-trial-ms 60000
TPID=$FPID
fleet_start threads 8 --fleet-offset 8 --fleet-threads 0 --rot-trial-ms 60000
HPID=$FPID
fleet_wait_status tasks
fleet_wait_status threads
fleet_wait_online tasks 8 120
fleet_wait_online threads 8 120

fleet_rotate psk,mtls 20 1 $N
fleet_wait_settled 240
[ "$(fleet_count confirmed)" = $N ] || fail "plan: $(head -c 600 api.out)"
for f in tasks threads; do
    i=0
    until [ "$(fleet_rot $f psk committed)" = 8 ] && [ "$(fleet_rot $f mtls committed)" = 8 ] &&
        [ "$(fleet_field $f.json online)" = 8 ]; do
        i=$((i + 1))
        [ $i -le 300 ] || fail "fleet $f: $(cat $f.json)"
        sleep 0.2
    done
done

kill -TERM "$TPID" "$HPID"
wait "$TPID" || fail "robot-sim --fleet-threads 1 exit status $?"
wait "$HPID" || fail "robot-sim --fleet-threads 0 exit status $?"
grep -q "fleet of 8 robots started as tasks on 1 threads" tasks.err || fail "tasks: not run as tasks"
q=$(sed -n 's/.*socket waits, \([0-9]*\) connection attempts queued.*/\1/p' tasks.err)
[ "${q:-0}" -ge 1 ] || fail "one slot for 8 robots, yet no attempt waited: $(tail -1 tasks.err)"
grep -q "fleet of 8 robots started (" threads.err || fail "threads: not run as threads"
if grep -q 'Sanitizer\|runtime error:' tasks.err threads.err srv.log; then
    fail "sanitizer report"
fi
echo "robot_sim_fleet_sched: 8 robots as tasks on 1 thread ($q connection attempts queued) and" \
    "8 as thread pairs: psk and mtls committed on all 16"
