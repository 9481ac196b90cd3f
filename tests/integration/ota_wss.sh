#!/bin/sh
# OTA over the control channel, end to end with real processes on real sockets (issue 7):
# production robot-sim devices (encrypted NVS from `provision-keys generate --ca --ota-key`,
# credentials from NVS only, Secure Boot V2 on) connected to fleetkey-server over mTLS wss;
# images from mkappimage signed by `provision-keys sign` / `rotate ota-key sign-release`;
# the operator drives everything with fleetctl and provision-keys.
#   sh ota_wss.sh CASE BIN_DIR VECTORS_DIR WORK_DIR
# CASE:
#   update    fleetctl ota --all: both robots receive v2, verify it, reboot into it and
#             confirm it by reconnecting; a re-run is confirmed at once; an image signed by a
#             key no robot trusts is refused by the server (409, the robots listed); an image
#             whose firmware cannot reach the control plane is installed, fails its
#             self-test and the robot rolls back (rolled_back); an anti-rollback image is
#             refused by the robot and reported; an unsigned image is refused by the server;
#             the server restarts with a job still queued for a robot that never connected:
#             the job is reloaded (a damaged job file is skipped), the robot connects and
#             confirms it, new jobs continue the numbering
#   rotation  the seed's OTA signing-key rotation over the network with its interlocks: the
#             server delivers security/ota_pubkey2 to each robot and confirms it in the
#             inventory; a new-key-only release is refused while one robot is offline (named
#             as blocking) and allowed once it connected; the new-key-only update reaches all
#             robots; the old key is retired, the server promotes the new key to
#             security/ota_pubkey on each robot, and the old key is refused everywhere
# Keys: the Secure Boot V2 vectors' A (old) and B (new). Every wait is bounded; ports come
# from the OS.
set -eu
CASE=$1
BIN=$2
VEC=$3/sbv2
TMP=$4
PK="$BIN/provision-keys"
RS="$BIN/robot-sim"
MK="$BIN/mkappimage"
. "$(dirname "$0")/skip.sh"
for t in "$PK" "$RS" "$MK" "$BIN/fleetkey-server" "$BIN/fleetctl"; do
    [ -x "$t" ] || fk_skip "$t not built"
done
rm -rf "$TMP"
mkdir -p "$TMP/keys"
. "$(dirname "$0")/lib.sh"
cd "$TMP"

trap stop_all EXIT

. "$(dirname "$0")/ota_lib.sh"

case "$CASE" in
update)
    mint 1
    mint 2
    D1=robot-020000002001
    D2=robot-020000002002
    "$MK" --version 3.0.0 --secure-version 3 --project robot-no-wss --seed 3 v3broken.bin
    "$MK" --version 0.9.0 --secure-version 0 --seed 4 v0.bin
    run 0 sign_v2 "$PK" sign --key "$VEC/key_a.pem" --output v2.a.bin v2.bin
    run 0 sign_v2b "$PK" sign --key "$VEC/key_b.pem" --output v2.b.bin v2.bin
    run 0 sign_v3 "$PK" sign --key "$VEC/key_a.pem" --output v3broken.a.bin v3broken.bin
    run 0 sign_v0 "$PK" sign --key "$VEC/key_a.pem" --output v0.a.bin v0.bin
    size=$(wc -c <v2.a.bin)
    { head -c $((size - 4096)) v2.a.bin; head -c 4096 /dev/zero | tr '\000' '\377'; } \
        >v2.unsigned.bin
    start_server
    start_robot 1
    start_robot 2
    welcomed 1 1 || fail "robot 1 not welcomed"
    welcomed 2 1 || fail "robot 2 not welcomed"

    # v2 to the whole fleet over the channel
    run 0 ota_v2 $FC ota --all --wait 180 v2.a.bin
    expect ota_v2.out "$D1.*confirmed"
    expect ota_v2.out "$D2.*confirmed"
    for n in 1 2; do
        expect rs$n.err "rebooting into ota_1"
        expect rs$n.out "app: robot 2.0.0"
        expect rs$n.err "marked valid"
    done
    run 0 show1 "$PK" inventory --inventory keys/inventory.db show $D1
    expect show1.out "device.ota_confirmed"
    # the same image again: nothing to send, confirmed at once
    run 0 ota_again $FC ota --all --wait 60 v2.a.bin
    expect ota_again.out "$D1.*confirmed"
    [ "$(grep -c 'rebooting into' rs1.err)" -eq 1 ] || fail "robot 1 rebooted for a re-run"

    # a robot minted with the fleet key that never connected: the server knows from the
    # inventory (its ota_pubkey credential) that it will accept the image, and queues it
    mint 3
    run 0 ota_new3 $FC ota --device robot-020000002003 --no-wait v2.a.bin
    expect ota_new3.out "job j-"
    J3=$(sed -n 's/^job \(j-[0-9]*\).*/\1/p' ota_new3.out)
    run 0 st3 $FC ota-status "$J3"
    expect st3.out "robot-020000002003 *queued"
    # signed only by a key no robot trusts: the server refuses it and names the robots
    run 1 ota_b $FC ota --all --wait 60 v2.b.bin
    expect ota_b.err "409"
    expect ota_b.err "$D1"
    expect ota_b.err "$D2"
    # not signed at all
    run 1 ota_unsigned $FC ota --device $D1 --wait 60 v2.unsigned.bin
    expect ota_unsigned.err "422.*not signed"

    # firmware whose self-test fails (cannot reach the control plane): installed, then the
    # robot rolls back to v2 by itself and comes back running it
    run 1 ota_broken $FC ota --device $D1 --wait 240 v3broken.a.bin
    expect ota_broken.out "$D1.*rolled_back"
    expect rs1.err "no-wss"
    expect rs1.err "rolled back"
    # anti-rollback: the robot refuses v0 (secure_version 0 < 2) and says why
    run 1 ota_old $FC ota --device $D2 --wait 120 v0.a.bin
    expect ota_old.out "$D2.*refused.*anti_rollback"
    expect rs2.err "REFUSED"
    # The server restarts: its jobs survive (finished ones for ota-status, open ones are
    # pushed again), and new jobs get new ids.
    kill -TERM "$SPID"
    wait "$SPID" 2>/dev/null || true
    echo '{"job": "j-000099", "devices": [' >keys/ota/j-000099.json # a damaged job file
    start_server
    wait_for srv.err "update job(s) loaded from" 600 || fail "jobs not reloaded"
    expect srv.err "j-000099.json: job not loaded: not a job"
    run 0 st1_after $FC ota-status j-000001
    expect st1_after.out "$D1 *confirmed"
    run 0 st3_after $FC ota-status "$J3"
    expect st3_after.out "robot-020000002003 *queued"
    start_robot 3
    i=0
    while ! $FC ota-status "$J3" 2>/dev/null | grep -q "robot-020000002003 *confirmed"; do
        i=$((i + 1))
        [ $i -le 600 ] || fail "robot 3 never confirmed the job queued before the restart"
        sleep 0.1
    done
    run 0 ota_after $FC ota --device $D2 --no-wait v2.a.bin
    expect ota_after.out "job j-000100" # ids never reused, not even a damaged file's
    stop_robot 1
    stop_robot 2
    stop_robot 3
    run 0 final1 "$RS" --flash robot1.img --sdkconfig prod.sdkconfig --boot-only
    expect final1.out "app: robot 2.0.0"
    expect final1.out "app state: valid"
    run 0 final2 "$RS" --flash robot2.img --sdkconfig prod.sdkconfig --boot-only
    expect final2.out "app: robot 2.0.0"
    ;;

rotation)
    mint 1
    mint 2
    mint 3
    D1=robot-020000002001
    D2=robot-020000002002
    D3=robot-020000002003
    "$MK" --version 3.0.0 --secure-version 3 --segment-len 4000 --seed 5 v3.bin
    R="$PK rotate ota-key --inventory keys/inventory.db --old-key $VEC/key_a.pem \
        --new-key $VEC/key_b.pem"
    start_server
    start_robot 1
    start_robot 2
    welcomed 1 1 || fail "robot 1 not welcomed"
    welcomed 2 1 || fail "robot 2 not welcomed"
    # Step 2: the rotation starts; releases are dual-signed. Starting it takes the old
    # private key: it endorses the new key, and robots take no key without that.
    run 1 start_pub "$PK" rotate ota-key --inventory keys/inventory.db \
        --old-key "$VEC/key_a.pub.pem" --new-key "$VEC/key_b.pem" start
    expect start_pub.err "signing needs the private key"
    run 0 rot_start $R start
    run 0 rel2 $R sign-release --output v2.ab.bin v2.bin
    # Step 3: the server delivers ota_pubkey2 to the connected robots (at their next
    # connection or at once); they confirm, the inventory records it
    run 0 ota_dual $FC ota --device $D1 --device $D2 --wait 180 v2.ab.bin
    for n in 1 2; do
        wait_for rs$n.err "ota_pubkey2 :=" 600 || fail "robot $n never got ota_pubkey2"
    done
    i=0
    while :; do
        $R status >st.out 2>&1 || true
        grep -q "$D1.*new key confirmed" st.out && grep -q "$D2.*new key confirmed" st.out && break
        i=$((i + 1))
        [ $i -lt 1200 ] || { cat st.out; fail "robots 1 and 2 never confirmed ota_pubkey2"; }
        sleep 0.1
    done
    # Step 4's interlock: robot 3 never connected, so new-key-only is refused, naming it
    run 1 early_new $R sign-release --new-only --output v3.b.bin v3.bin
    expect early_new.err "$D3"
    grep -q "$D1" early_new.err && fail "a confirmed robot listed as blocking"
    [ ! -e v3.b.bin ] || fail "a refused release left a file"
    # ... and so is a key-B-only image at the server for robot 3
    run 0 sign_b "$PK" sign --key "$VEC/key_b.pem" --output v2.b.bin v2.bin
    run 1 early_push $FC ota --device $D3 --wait 30 v2.b.bin
    expect early_push.err "blocking: $D3 .*never connected"
    # robot 3 comes online: it gets the key and confirms
    start_robot 3
    welcomed 3 1 || fail "robot 3 not welcomed"
    wait_for rs3.err "ota_pubkey2 :=" 600 || fail "robot 3 never got ota_pubkey2"
    i=0
    while [ $i -lt 300 ]; do
        $R sign-release --new-only --output v3.b.bin v3.bin >rel3.out 2>rel3.err && break
        sleep 0.1
        i=$((i + 1))
    done
    [ -s v3.b.bin ] || { cat rel3.err; fail "new-key-only release still refused"; }
    run 1 verify_a "$PK" verify --pubkey "$VEC/key_a.pub.pem" v3.b.bin
    run 0 verify_b "$PK" verify --pubkey "$VEC/key_b.pub.pem" v3.b.bin
    # Step 4: new-key-only firmware to every robot; each confirmation is recorded
    run 0 ota_new $FC ota --all --wait 240 v3.b.bin
    for d in $D1 $D2 $D3; do
        expect ota_new.out "$d.*confirmed"
    done
    # Step 5: retire the old key; the server then promotes B to ota_pubkey on each robot
    run 0 retire $R retire-old
    run 1 sign_old "$PK" sign --inventory keys/inventory.db --key "$VEC/key_a.pem" \
        --output x.bin v2.bin
    for n in 1 2 3; do
        wait_for rs$n.err "ota_pubkey replaced\|promoted" 600 || fail "robot $n: no promotion"
    done
    # an old-key image is now refused by the server (retired key)
    run 0 sign_a3 "$PK" sign --key "$VEC/key_a.pem" --output v3.a.bin v3.bin
    run 1 push_old $FC ota --all --wait 30 v3.a.bin
    expect push_old.err "retired"
    stop_robot 1
    stop_robot 2
    stop_robot 3
    for n in 1 2 3; do
        got=$(nvs_key $n ota_pubkey) || fail "robot $n: no ota_pubkey"
        [ "$got" = "$(od -An -tx1 -v b.der | tr -d ' \n')" ] ||
            fail "robot $n: ota_pubkey is not the new key"
        if nvs_key $n ota_pubkey2 >/dev/null; then
            fail "robot $n still holds ota_pubkey2"
        fi
        run 0 fin$n "$RS" --flash robot$n.img --sdkconfig prod.sdkconfig --boot-only
        expect fin$n.out "app: robot 3.0.0"
    done
    run 0 audit "$PK" inventory --inventory keys/inventory.db verify-audit
    ;;
*)
    fail "unknown case $CASE"
    ;;
esac
for f in rs1.err rs2.err rs3.err srv.err; do
    if [ -f $f ] && grep -q 'Sanitizer\|runtime error:' $f; then
        fail "sanitizer report in $f"
    fi
done
echo "PASS [ota_wss $CASE]"
