#!/bin/sh
# The OTA signing key as a class of the rotation plan (issue 14), end to end with real parts
# only: three production robot-sim processes minted by `batch --ca` (all trusting the fleet OTA
# key keys/ota_signing.key.pem), a real fleetkey-server, `fleetctl rotate`:
#   - the release engineer starts the OTA key rotation (`provision-keys rotate ota-key start`:
#     the new key endorsed by the old one) and signs a dual-signed release, which the server
#     takes as its ota_trial_image;
#   - a trial image without a block by the new key: a plan with ota is refused (400);
#   - plan 1, class ota on robots 1 and 2: each robot checks the endorsement with its
#     committed key, stages the new key, verifies the release's new-key block with the key read
#     back from the staged slot, is confirmed and commits; after the interlock the old key is
#     retired (`provision-keys sign --inventory` refuses it);
#   - plan 2, classes ca,mtls,psk,ota on robot 3: all four in one plan;
#   - online, robot 2 (running the dual-signed release) installs a new-key-only image over the
#     channel right after its commit, reboots into it and confirms it;
#   - offline, each robot (`robot-sim ota`, a boot of the robot) refuses an image signed by the
#     old key only and installs one signed by the new key only.
#   sh rot_robot_ota.sh BIN_DIR WORK_DIR
set -eu
BIN=$1
T=$2
PK="$BIN/provision-keys"
RS="$BIN/robot-sim"
MK="$BIN/mkappimage"
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh"
trap stop_all EXIT
. "$HERE/rot_lib.sh"
rot_fleet rot_robot_ota 020000007201 020000007202 020000007203
OLD=keys/ota_signing.key.pem
[ -s "$OLD" ] || fail "batch did not create the fleet OTA key"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out new.pem 2>/dev/null ||
    fail "openssl genpkey"
R="$PK rotate ota-key --inventory keys/inventory.db --old-key $OLD --new-key new.pem"
run 0 rot_start $R start
"$MK" --version 2.0.0 --secure-version 2 --seed 2 v2.bin
"$MK" --version 3.0.0 --secure-version 3 --seed 3 v3.bin
run 0 rel2 $R sign-release --output v2.ab.bin v2.bin
run 0 sign_old "$PK" sign --key "$OLD" --output v3.old.bin v3.bin
run 0 sign_new "$PK" sign --key new.pem --output v3.new.bin v3.bin

# server IMAGE: (re)starts fleetkey-server with ota_trial_image IMAGE on the same port
server() {
    rot_server --ca_bundle pki/ca-chain.pem --ota_trial_image "$1"
}
robot() {
    rot_robot "$1"
}
# plan NAME CLASSES DEVICE...: creates and starts a plan, waits until it is done (lib.sh's
# run uses $name: this one keeps its own)
plan() {
    pl=$1
    classes=$2
    shift 2
    devs=""
    for d in "$@"; do
        devs="$devs --device $d"
    done
    run 0 $pl $FC --json rotate plan --classes "$classes" --waves 100 --timeout 30 $devs
    PLAN_ID=$(grep -o "rot-[0-9]*" $pl.out | head -n 1)
    [ -n "$PLAN_ID" ] || fail "no plan id: $(cat $pl.out)"
    run 0 ${pl}_start $FC rotate start "$PLAN_ID"
    run 0 ${pl}_wait $FC --json rotate status "$PLAN_ID" --wait 240
    grep -q '"state":"done"' ${pl}_wait.out || fail "$pl not done: $(tail -n 5 ${pl}_wait.out)"
}
# offline_ota N: robot N (stopped) refuses the old-key-only image, installs the new-key one
offline_ota() {
    eval "kill -TERM \$RPID$1"
    eval "wait \$RPID$1" 2>/dev/null || true
    run 5 ota_old$1 "$RS" ota --flash robot$1.img --sdkconfig prod.sdkconfig --image v3.old.bin
    run 0 ota_new$1 "$RS" ota --flash robot$1.img --sdkconfig prod.sdkconfig --image v3.new.bin
}

# Robot 2 runs firmware: the dual-signed release (it boots with either key, as it must once
# the robot trusts only the new key).
run 0 fac2 "$RS" ota --flash robot2.img --sdkconfig prod.sdkconfig --image v2.ab.bin
run 0 boot2 "$RS" --flash robot2.img --sdkconfig prod.sdkconfig --boot-only --self-test pass
expect boot2.out "app: robot 2.0.0"

# A trial image without a block by the new key: a plan with ota is refused at creation.
server v3.old.bin
FC="$BIN/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P"
FC="$FC --ca pki/ca-chain.pem"
run 1 plan_bad $FC rotate plan --classes ota --waves 100 --device "$D1"
expect plan_bad.err "no valid signature block by the new key"
kill "$SPID"
wait "$SPID" 2>/dev/null || true
server v2.ab.bin
for n in 1 2 3; do
    robot $n
done
for n in 1 2 3; do
    eval "d=\$D$n"
    wait_for rs$n.err "wss: welcomed by the server as $d" 600 || fail "robot $n not welcomed"
done

# ---- plan 1: ota on robots 1 and 2 ---------------------------------------------------------
plan plan1 ota "$D1" "$D2"
for n in 1 2; do
    expect rs$n.err "rot: ota: version [0-9]* staged"
    expect rs$n.err "rot: ota: version [0-9]*: the staged key verified a manifest"
    expect rs$n.err "rot: ota: version [0-9]* committed"
    grep -q "rolled back" rs$n.err && fail "robot $n rolled back"
done
expect srv.err "rot_stage ota v[0-9]* sbv2:"
# the interlock held: the old key's rows are retired, signing with it is refused
wait_for srv.err "OTA key rows retired" 600 || fail "the old OTA key was not retired"
run 1 sign_retired "$PK" sign --inventory keys/inventory.db --key "$OLD" --output x.bin v3.bin
expect sign_retired.err "retired"
run 0 show1 "$PK" inventory --inventory keys/inventory.db show "$D1"
expect show1.out "ota_pubkey .* active"

# online, without a reboot since its commit: robot 2 installs a new-key-only image over the
# channel (its handler checks images with the committed key from the commit on), reboots
# into it (the bootloader checks it with the committed key) and confirms it
expect rs2.err "ota: OTA images are checked with the committed key"
run 0 ota_online $FC ota --device "$D2" --wait 180 v3.new.bin
expect ota_online.out "$D2.*confirmed"
expect rs2.out "self-test: pass: ota_1 3.0.0 marked valid"
# verified by the key in the ota_pubkey slot, which held the old key until the commit (the
# stand-alone flow also gave it the new key as ota_pubkey2: the slot named proves the switch)
expect rs2.err "signature block 0 verified with trusted key security/ota_pubkey$"

# ---- plan 2: ca,mtls,psk,ota in one plan on robot 3 ----------------------------------------
plan plan2 ca,mtls,psk,ota "$D3"
for c in ca mtls psk ota; do
    expect rs3.err "rot: $c: version [0-9]* committed"
done

# ---- offline: old-key-only refused, new-key-only installed ---------------------------------
offline_ota 1
expect ota_old1.err "REFUSED"
offline_ota 3
"$RS" nvs get --flash robot1.img --ns security --key ota_pubkey_b >b.hex 2>b.err ||
    fail "no security/ota_pubkey_b in robot 1's NVS"
openssl pkey -in new.pem -pubout -outform DER -out new.der
xxd -r -p b.hex >b.der
cmp -s b.der new.der || fail "security/ota_pubkey_b is not the new key"
if "$RS" nvs get --flash robot1.img --ns security --key ota_pubkey >a.hex 2>/dev/null; then
    fail "the retired slot security/ota_pubkey was not erased"
fi
run 0 audit "$PK" inventory --inventory keys/inventory.db verify-audit
if grep -q 'Sanitizer\|runtime error:' srv.err rs1.err rs2.err rs3.err; then
    fail "sanitizer report"
fi
echo "rot_robot_ota: ota rotated on 2 robots (old key retired), ca,mtls,psk,ota on 1 in one plan, old-key images refused and new-key images installed: 1 passed, 0 failed"
