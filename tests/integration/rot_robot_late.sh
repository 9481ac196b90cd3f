#!/bin/sh
# A robot that answers its rotation request after the server stopped waiting (issue 14; found
# by bench/bench_rotation.sh at 10,000 robots: 3,741 robots busy with their share of the
# fleet's crypto answered rot_csr after 30 s, the answers were dropped, and those deliveries
# waited for the plan's per-device timeout, 530 s, before they were sent again).
# One production robot-sim answers its rot_csr 32 s late (--rot-answer-delay-ms); the plan's
# own timeout is 600 s, so only the late answer can get the robot rotated within the wait:
# the server takes it (nothing else was asked meanwhile), signs the CSR, and the robot
# commits the new certificate.
#   sh rot_robot_late.sh BIN_DIR WORK_DIR
set -eu
BIN=$1
T=$2
PK="$BIN/provision-keys"
RS="$BIN/robot-sim"
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh"
trap stop_all EXIT
. "$HERE/rot_lib.sh"
rot_fleet rot_robot_late 020000007301
rot_server --ping_interval 30 # the robot is silent while it sleeps: not idle within 90 s
FC="$BIN/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P"
FC="$FC --ca pki/ca-chain.pem"
rot_robot 1 --rot-answer-delay-ms 32000
wait_for rs1.err "wss: welcomed by the server as $D1" 600 || fail "robot not welcomed"
run 0 plan $FC --json rotate plan --classes mtls --waves 100 --timeout 600 --device $D1
ID=$(grep -o "rot-[0-9]*" plan.out | head -n 1)
[ -n "$ID" ] || fail "no plan id: $(cat plan.out)"
run 0 start $FC rotate start "$ID"
wait_for rs1.err "fault: rot_csr answered 32000 ms late" 600 || fail "the delay was not injected"
wait_for srv.err "request r-[0-9]* unanswered after 30 s" 600 ||
    fail "the server did not give the request up"
run 0 wait $FC --json rotate status "$ID" --wait 90
grep -q '"state":"done"' wait.out || fail "plan not done within 90 s: $(tail -n 3 wait.out)"
expect srv.err "late response r-[0-9]* taken"
expect rs1.err "rot: mtls: version [0-9]* committed"
grep -q "rolled back" rs1.err && fail "the robot rolled back"
echo "rot_robot_late: a rot_csr answered 32 s late was taken and the robot committed: 1 passed, 0 failed"
