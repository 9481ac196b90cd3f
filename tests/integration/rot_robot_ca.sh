#!/bin/sh
# Trust-anchor rotation (class ca) end to end with real parts only (issue 14): three production
# robot-sim processes minted by `batch --ca`, a real fleetkey-server, `fleetctl rotate`:
#   - plan 1, classes ca,mtls on robots 1 and 2, ca_bundle = the current chain plus a second,
#     new root (`provision-keys ca init --dir pki2`): each robot stages the bundle, reconnects
#     verifying the server with it, is committed, then rotates its certificate; the plan is
#     done; the committed slot (mtls/ca_cert_b) holds the bundle's DER; robot 1 reconnects
#     after a reboot with the new anchors;
#   - plan 2, class ca on robot 3, after a server restart with ca_bundle = the new root only
#     (it does NOT validate the server's chain): the robot's trial connections fail their TLS
#     handshake, it rolls back (reason attempts; --rot-attempts 2) to the old anchors,
#     reconnects, and the server records the device rolled back.
#   sh rot_robot_ca.sh BIN_DIR WORK_DIR
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
rot_fleet rot_robot_ca 020000007101 020000007102 020000007103
run 0 ca2_init "$PK" ca init --dir pki2 --name "the next root"
cat pki/ca-chain.pem pki2/root.crt.pem >bundle.pem
cp pki2/root.crt.pem newroot.pem
# server BUNDLE: (re)starts fleetkey-server with ca_bundle BUNDLE on the same port file
server() {
    rot_server --ca_bundle "$1"
}
robot() {
    rot_robot "$1"
}
server bundle.pem
FC="$BIN/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P"
FC="$FC --ca pki/ca-chain.pem"
for n in 1 2 3; do
    robot $n
done
for n in 1 2 3; do
    eval "d=\$D$n"
    wait_for rs$n.err "wss: welcomed by the server as $d" 600 || fail "robot $n not welcomed"
done

# ---- plan 1: ca,mtls with the old chain plus the new root ---------------------------------
run 0 plan $FC --json rotate plan --classes ca,mtls --waves 100 --timeout 30 --device $D1 \
    --device $D2
ID=$(grep -o "rot-[0-9]*" plan.out | head -n 1)
[ -n "$ID" ] || fail "no plan id: $(cat plan.out)"
run 0 start $FC rotate start "$ID"
run 0 wait $FC --json rotate status "$ID" --wait 240
grep -q '"state":"done"' wait.out || fail "plan 1 not done: $(tail -n 3 wait.out)"
awk '/BEGIN CERTIFICATE/{n++} n{print > ("want" n ".pem")}' bundle.pem
: >want.der
for f in want*.pem; do openssl x509 -in $f -outform DER >>want.der; done
for n in 1 2; do
    expect rs$n.err "rot: ca: version [0-9]* staged"
    expect rs$n.err "wss: verifying the server with the rotation slot's trust anchors"
    expect rs$n.err "rot: ca: version [0-9]* committed"
    expect rs$n.err "rot: mtls: version [0-9]* committed"
    grep -q "rolled back" rs$n.err && fail "robot $n rolled back"
done
# ---- a reboot: robot 1 verifies the server with the committed anchors ---------------------
kill -TERM "$RPID1"
wait "$RPID1" 2>/dev/null || true
"$RS" nvs get --flash robot1.img --ns mtls --key ca_cert_b >ca_b.hex 2>ca_b.err ||
    fail "no mtls/ca_cert_b in robot 1's NVS"
xxd -r -p ca_b.hex >ca_b.der
cmp -s ca_b.der want.der || fail "mtls/ca_cert_b is not the bundle's DER"
robot 1
wait_for rs1.err "wss: welcomed by the server as $D1" 600 || fail "robot 1 not welcomed again"
# the store loaded the committed slot: the bundle's size, not the factory chain's
expect rs1.err "store: mtls/ca_cert: from nvs, $(wc -c <want.der) bytes"
run 0 show1 "$PK" inventory --inventory keys/inventory.db show "$D1"
expect show1.out "ca_cert .* active"

# ---- plan 2: a bundle that does not hold the server's chain rolls back --------------------
kill "$SPID"
wait "$SPID" 2>/dev/null || true
server newroot.pem
wait_for rs3.err "wss: welcomed by the server as $D3" 600 || fail "robot 3 did not reconnect"
run 0 plan2 $FC --json rotate plan --classes ca --waves 100 --timeout 60 --retries 0 \
    --device $D3
ID2=$(grep -o "rot-[0-9]*" plan2.out | head -n 1)
[ -n "$ID2" ] && [ "$ID2" != "$ID" ] || fail "no second plan id: $(cat plan2.out)"
: >rs3.err
run 0 start2 $FC rotate start "$ID2"
wait_for rs3.err "rot: ca: version [0-9]* staged" 600 || fail "robot 3 did not stage"
wait_for rs3.err "rot: ca: trial attempts used up" 600 || fail "robot 3 did not roll back"
wait_for rs3.err "wss: welcomed by the server as $D3" 600 ||
    fail "robot 3 did not reconnect with the old anchors"
expect rs3.err "wss: verifying the server with the store's trust anchors"
grep -q "rot: ca: version [0-9]* committed" rs3.err && fail "robot 3 committed anchors that do not validate the server"
i=0
while :; do
    run 0 st2 $FC --json rotate status "$ID2"
    grep -q '"ca":[[:space:]]*"rolled_back"' st2.out && break
    i=$((i + 1))
    [ $i -le 40 ] || fail "the server did not record robot 3 rolled back: $(cat st2.out)"
    sleep 0.5
done
grep -q '"reason":[[:space:]]*"ca: attempts"' st2.out ||
    fail "rollback reason not attempts: $(cat st2.out)"
run 0 audit "$PK" inventory --inventory keys/inventory.db verify-audit
if grep -q 'Sanitizer\|runtime error:' srv.err rs1.err rs2.err rs3.err; then
    fail "sanitizer report"
fi
echo "rot_robot_ca: ca,mtls rotated on 2 robots (new anchors after a reboot), a bundle without the server's chain rolled back: 1 passed, 0 failed"
