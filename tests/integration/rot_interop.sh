#!/bin/sh
# PSK rotation on a real DTLS listener (issue 14), openssl s_client as the peer:
#   sh rot_interop.sh BIN_DIR WORK_DIR
# rot_testd runs the device's listener, rotation records (NVS in a flash file) and rot_*
# request handler; requests go in on its stdin as the control plane would send them. Checked:
# the old PSK works before the commit; rot_stage makes the new one work as "next" during the
# trial (also after a reboot); rot_commit closes the session held with the old PSK, and from
# then on the old PSK is refused and the new one is the current key (also after a reboot).
set -eu
bin=$1
work=$2
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cd "$work"
. "$HERE/lib.sh" # PIDS, stop_all, wait_for, s_client_req

OLD=$(openssl rand -hex 32)
NEW=$(openssl rand -hex 32)
ID=robot-a1b2c3d4e5f6
NEWID=$ID.v2
NEWB64=$(python3 -c "import base64,sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())" "$NEW")

fail() {
    echo "FAIL [rot_interop]: $*" >&2
    for f in d.out d.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
    done
    stop_all
    exit 1
}
trap stop_all EXIT

# start_robot [ARGS]: rot_testd on robot.bin with its stdin on fd 3; sets PORT and DPID.
start_robot() {
    rm -f req
    mkfifo req
    : >d.out
    "$bin/rot_testd" --flash robot.bin --run-ms 120000 "$@" <req >d.out 2>>d.err &
    DPID=$!
    PIDS="$PIDS $DPID"
    exec 3>req
    wait_for d.out "listening on" || fail "rot_testd did not start"
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' d.out)
    [ -n "$PORT" ] || fail "no port printed"
}

# reboot: the robot stops (EOF on its stdin) and boots again from the same flash file.
reboot() {
    exec 3>&-
    wait "$DPID" || fail "rot_testd exited with an error"
    grep -q "rot_testd: stopped" d.out || fail "rot_testd did not stop cleanly"
    start_robot
}

# send NAME JSON: one request; waits for its response line (the next one in d.out, which
# starts empty at each boot), which goes into resp.NAME.
send() {
    n=$(($(grep -c 'rot_testd: response' d.out || true) + 1))
    printf '%s\n' "$2" >&3
    i=0
    while [ "$(grep -c 'rot_testd: response' d.out || true)" -lt "$n" ] && [ $i -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    grep 'rot_testd: response' d.out | sed -n "${n}p" >"resp.$1"
    [ -s "resp.$1" ] || fail "no response to request $1"
}

works() { # works NAME PSK ID SLOT: status answered, authenticated with SLOT
    s_client_req "$1" status "$2" "$3" "$PORT"
    grep -q "\"auth_slot\":\"$4\"" "$1" || fail "$1: expected auth_slot $4: $(cat "$1" "$1.err")"
}
refused() { # refused NAME PSK ID
    s_client_req "$1" ping "$2" "$3" "$PORT"
    [ ! -s "$1" ] || fail "$1: the key was accepted: $(cat "$1")"
}

start_robot --init-psk-hex "$OLD" --init-identity "$ID"
# 1. Before the rotation: the old PSK works, the new one does not.
works before_old "$OLD" "$ID" current
refused before_new "$NEW" "$NEWID"
grep -q '"psk":{"state":"idle","version":0' before_old || fail "rot state: $(cat before_old)"

# 2. rot_stage: the new PSK is staged and in trial; both work, the new one as next.
send stage "{\"type\":\"request\",\"id\":\"r1\",\"kind\":\"rot_stage\",\"body\":{\"class\":\"psk\",\"version\":2,\"psk\":\"$NEWB64\",\"identity\":\"$NEWID\"}}"
grep -q '"psk":{"state":"trial","version":0,"staged_version":2' resp.stage || fail "stage: $(cat resp.stage)"
works trial_new "$NEW" "$NEWID" next
works trial_old "$OLD" "$ID" current
grep -q "$NEW" d.err d.out && fail "the PSK appears in the robot's output"

# 3. The trial survives a reboot.
reboot
works reboot_new "$NEW" "$NEWID" next
works reboot_old "$OLD" "$ID" current

# 4. A session held open with the old PSK across the commit.
rm -f hold.in hold.out hold.err
mkfifo hold.in
timeout 60 openssl s_client -dtls1_2 -psk "$OLD" -psk_identity "$ID" \
    -connect "127.0.0.1:$PORT" -quiet -no_ign_eof <hold.in >hold.out 2>hold.err &
HPID=$!
PIDS="$PIDS $HPID"
exec 6>hold.in
printf 'ping\n' >&6
wait_for hold.out pong || fail "held session: no pong: $(cat hold.err)"

# 5. rot_commit (the server saw the new PSK authenticate): committed; the held session of the
# retired key is closed by the robot; the old PSK is refused, the new one is current.
send commit '{"type":"request","id":"r2","kind":"rot_commit","body":{"class":"psk","version":2}}'
grep -q '"psk":{"state":"committed","version":2,"staged_version":0' resp.commit || fail "commit: $(cat resp.commit)"
i=0
while kill -0 $HPID 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -0 $HPID 2>/dev/null && fail "the session of the retired PSK was not closed at commit"
exec 6>&-
grep -q "its key was retired" d.err || fail "closing the retired session not logged"
refused after_old "$OLD" "$ID"
works after_new "$NEW" "$NEWID" current

# 6. After a reboot the same: the old PSK stays refused.
reboot
refused reboot2_old "$OLD" "$ID"
works reboot2_new "$NEW" "$NEWID" current
grep -q '"psk":{"state":"committed","version":2' reboot2_new || fail "state: $(cat reboot2_new)"
exec 3>&-
wait "$DPID" || fail "rot_testd exited with an error"
echo "rot_interop: old PSK before commit ok, new PSK as next during the trial ok (and after a" \
    "reboot), retired session closed at commit, old PSK refused after commit, new PSK current"
