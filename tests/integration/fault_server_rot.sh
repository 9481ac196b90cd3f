#!/usr/bin/env bash
# Fault campaign, server side (issue 15, "Reliability"): fleetkey-server is killed with SIGKILL
# at random moments while it rotates the CLASSES (default mtls; psk, ca, or ca,mtls,psk) of a
# robot-sim fleet (FK_FAULT_ROBOTS robots, default 20, waves 10,25,50,75,100), and restarted on
# the same port each time; the robots keep running and reconnect on their own. The kills go on
# until FK_FAULT_KILLS (default 20) of them landed while a plan was under way (its saved file
# not yet done and revoked); when a plan finishes first, the next life starts another rotation
# of the fleet.
#   bash fault_server_rot.sh BIN_DIR TMP_DIR [CLASSES]
# The moments come from FK_FAULT_SEED (printed first; a random one when unset): the same seed
# gives the same delays, so `FK_FAULT_SEED=S ctest -R fault_server_rot` replays a failure (the
# robots' timing still varies with the machine's load; the delays are what the seed fixes).
# Each delay is drawn from 0..FK_FAULT_MAX_MS (default 2500) after the process was started, so
# kills land during start-up, plan reload, deliveries, trials, commits and saves alike.
# Checked at the end, with a server that is left running:
#   - the plan completes (done, old credentials revoked), no robot failed or rolled back;
#   - every robot is connected again with each class committed (none bricked, none left staged
#     or in trial) after the old credentials were revoked;
#   - per class, nothing lost, nothing duplicated:
#     mtls: per robot exactly one active mtls_cert row in the inventory, no row left staged,
#       and exactly one unrevoked device certificate in the CA index, the one that row names
#       (every certificate an interrupted delivery issued is revoked or was never issued);
#     psk: per robot exactly one active psk row, none left staged, whose version and
#       fingerprint are those of the server's confirmed copy (rot_dir/psk/DEV.json, 0600); the
#       robot's listener, asked with that copy (`fleetctl robot --keys`), authenticates it as
#       its current key with that fingerprint; `openssl s_client -dtls1_2 -psk` opens one
#       robot's listener with the confirmed PSK and not with the factory one (no PSK printed);
#     ca: per robot exactly one active ca_cert row, the ca_bundle's fingerprint, none staged;
#       after one more restart of the server every robot reconnects (verifying the server with
#       the committed anchors);
#   - the audit chain verifies.
set -eu
B=$1
T=$2
CLASSES=${3:-mtls}
NAME=fault_server_rot
[ "$CLASSES" = mtls ] || NAME=fault_server_rot_$(echo "$CLASSES" | tr -d ,)
HERE=$(cd "$(dirname "$0")" && pwd)
N=${FK_FAULT_ROBOTS:-20}
KILLS=${FK_FAULT_KILLS:-20}
MAX_MS=${FK_FAULT_MAX_MS:-2500}
WAVES=10,25,50,75,100
SEED=${FK_FAULT_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
echo "$NAME: FK_FAULT_SEED=$SEED ($CLASSES, $N robots, $KILLS kills within ${MAX_MS} ms of each start)"
RANDOM=$SEED
. "$HERE/skip.sh"
for t in provision-keys robot-sim fleetkey-server wss_client fleetctl; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
has() { case ",$CLASSES," in *",$1,"*) return 0 ;; esac; return 1; }
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS, s_client_req
fail() {
    echo "FAIL [$NAME, FK_FAULT_SEED=$SEED]: $*" >&2
    for f in fleet.err srv.log fleet.json; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}
SRV=""
cleanup() {
    [ -z "$SRV" ] || kill -9 "$SRV" 2>/dev/null || true
    stop_all
}
trap cleanup EXIT
. "$HERE/fleet_lib.sh"

fleet_mint "$N"
# ca: the anchors the robots take next, the current chain plus a new root (rot_robot_ca.sh).
SRV_EXTRA=""
if has ca; then
    "$B/provision-keys" ca init --dir pki2 --name "the next root" >>mint.log 2>&1 ||
        fail "ca init --dir pki2"
    cat pki/ca-chain.pem pki2/root.crt.pem >bundle.pem
    SRV_EXTRA="--ca_bundle bundle.pem"
fi
# shellcheck disable=SC2086
fleet_server $SRV_EXTRA
SRV=${PIDS##* }
PORT=$P

# srv_restart: fleetkey-server again on PORT (its log appended to srv.log); the port may stay
# busy for a moment after the kill, so a refused start is tried again (30 s at most).
srv_restart() {
    t=0
    while :; do
        rm -f port
        # shellcheck disable=SC2086
        "$B/fleetkey-server" --listen 127.0.0.1 --port "$PORT" --port-file port \
            --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
            --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
            --ca_dir pki --rot_dir rot $SRV_EXTRA 2>>srv.log </dev/null &
        SRV=$!
        i=0
        while [ ! -s port ] && kill -0 "$SRV" 2>/dev/null; do
            i=$((i + 1))
            [ $i -le 300 ] || fail "fleetkey-server did not start"
            sleep 0.1
        done
        [ -s port ] && return 0
        wait "$SRV" 2>/dev/null || true
        t=$((t + 1))
        [ $t -le 30 ] || fail "fleetkey-server could not serve on port $PORT again"
        sleep 1
    done
}
# kill_at MS: SIGKILL the server MS milliseconds after it was started.
kill_at() {
    sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
    kill -9 "$SRV" 2>/dev/null || true
    wait "$SRV" 2>/dev/null || true
}

# plan_finished: the current plan's file says done and revoked (what a restart would load).
plan_finished() {
    grep -q '"revoked":true,.*"state":"done"' "rot/$ROT_ID.json" 2>/dev/null
}
# rot_counts: the fleet's rotation states of each class of the plan, for the kill lines.
rot_counts() {
    for c in $(echo "$CLASSES" | tr , ' '); do
        printf ', %s %s staged, %s in trial, %s committed' "$c" "$(fleet_rot fleet "$c" staged)" \
            "$(fleet_rot fleet "$c" trial)" "$(fleet_rot fleet "$c" committed)"
    done
}

fleet_start fleet "$N" --rot-trial-ms 60000 --rot-attempts 10 --run-ms 600000
fleet_wait_status fleet
fleet_wait_online fleet "$N" 60
FLEET_WAVES=$WAVES fleet_rotate "$CLASSES" 8
echo "plan $ROT_ID started over $N robots"
PLANS=1

# Kills until KILLS of them landed while a plan was under way: when a plan finished between
# two kills, the next life starts another rotation of the whole fleet (at most 4 x KILLS kills
# in all).
k=0
mid=0
while [ $mid -lt "$KILLS" ]; do
    k=$((k + 1))
    [ $k -le $((KILLS * 4)) ] || fail "only $mid of $k kills landed during a rotation"
    ms=$(((RANDOM * 32768 + RANDOM) % (MAX_MS + 1)))
    if [ $k -gt 1 ]; then
        srv_restart
        if plan_finished; then
            FLEET_WAVES=$WAVES fleet_rotate "$CLASSES" 8
            PLANS=$((PLANS + 1))
        fi
    fi
    kill_at "$ms"
    what="after $ROT_ID finished"
    if ! plan_finished; then
        mid=$((mid + 1))
        what="during $ROT_ID ($mid)"
    fi
    echo "kill $k at ${ms} ms, $what: robots $(fleet_field fleet.json online) online$(rot_counts)"
done
# The last kill's interval ends with the first life the test does not cut short.
cp srv.log srv-kills.log
srv_restart
P=$(cat port)
# Done (every device confirmed) and revoked (old certificates in the CRL, reloaded); a plan
# that paused itself (failures over the threshold) or was aborted fails at once.
fleet_wait_done 240
[ "$(fleet_count confirmed)" = "$N" ] || fail "confirmed $(fleet_count confirmed) of $N"
# settled CLASS: every robot online with CLASS committed, none staged, in trial, rolled back.
settled() {
    [ "$(fleet_field fleet.json online)" -eq "$N" ] &&
        [ "$(fleet_rot fleet "$1" committed)" -eq "$N" ] &&
        [ "$(fleet_rot fleet "$1" staged)" = 0 ] && [ "$(fleet_rot fleet "$1" trial)" = 0 ] &&
        [ "$(fleet_rot fleet "$1" rolled_back)" = 0 ]
}
# wait_settled CLASS: until settled CLASS (60 s at most; the status file lags by 500 ms).
wait_settled() {
    i=0
    until settled "$1"; do
        i=$((i + 1))
        [ $i -le 300 ] || fail "robots not back with $1 committed: $(cat fleet.json)"
        sleep 0.2
    done
}
for c in $(echo "$CLASSES" | tr , ' '); do
    wait_settled "$c"
done

# Nothing lost, nothing duplicated: the inventory rows of each class.
sqlite3 -separator ' ' keys/inventory.db \
    "SELECT device_id, kind, version, state, fingerprint FROM credentials" >rows.txt ||
    fail "inventory not readable"
if has mtls; then
    awk '$2 == "mtls_cert" { print $1, $3, $4, $5 }' rows.txt >mtls_rows.txt
    python3 - "$N" "$HERE" <<'PY' || fail "mtls: inventory and CA index disagree"
import sys
sys.path.insert(0, sys.argv[2])
from ca_index import check_one_active
n = int(sys.argv[1])
bad, issued, revoked = check_one_active("mtls_rows.txt", "pki/index.jsonl", n)
if bad:
    sys.exit("\n".join(bad))
print("mtls: %d devices x 1 active certificate; %d certificates issued, %d revoked"
      % (n, issued, revoked))
PY
fi
if has psk; then
    # Each robot's listener (the port its hello's posture reported, as the inventory keeps
    # it), asked with the server's confirmed copy of its PSK: the answer says which key
    # authenticated and its fingerprint.
    sqlite3 -separator ' ' keys/inventory.db "SELECT device_id,
        json_extract(posture, '\$.dtls_port') FROM device_presence ORDER BY device_id" >ports.txt ||
        fail "psk: inventory not readable"
    [ "$(grep -c ' [1-9]' ports.txt)" -eq "$N" ] ||
        fail "psk: $(grep -c ' [1-9]' ports.txt) listener ports known, not $N"
    while read -r dev port; do
        [ -f "rot/psk/$dev.json" ] || fail "psk: no confirmed copy rot/psk/$dev.json"
        [ "$(stat -c %a "rot/psk/$dev.json")" = 600 ] || fail "psk: rot/psk/$dev.json not 0600"
        "$B/fleetctl" robot --host 127.0.0.1 --port "$port" --keys "rot/psk/$dev.json" \
            --timeout 10 status >"status.$dev" 2>"status.$dev.err" ||
            fail "psk: $dev does not answer to its confirmed PSK: $(cat "status.$dev.err")"
    done <ports.txt
    python3 - "$N" "$HERE" <<'PY' || fail "psk: the robots, the inventory and the confirmed copies disagree"
import hashlib, json, sys
sys.path.insert(0, sys.argv[2])
from inv_rows import credential_rows
n = int(sys.argv[1])
active, bad = credential_rows("rows.txt", "psk")
for line in open("ports.txt"):
    dev = line.split()[0]
    m = json.load(open("rot/psk/%s.json" % dev))
    # fk_fpr: "sha256:" + the first 8 bytes of the SHA-256, hex; the key itself is never shown
    fpr = "sha256:" + hashlib.sha256(bytes.fromhex(m["psk_hex"])).hexdigest()[:16]
    ver = int(m["psk_identity"].rsplit(".v", 1)[1])
    rows = active.get(dev, [])
    if rows != [(ver, fpr)]:
        bad.append("%s: active psk rows %s, confirmed copy v%d %s" % (dev, rows, ver, fpr))
    st = json.loads(open("status.%s" % dev).read().strip().splitlines()[-1])
    cur = st.get("dtls_psk", {}).get("current", {})
    if st.get("auth_slot") != "current" or cur.get("fpr") != fpr or cur.get("version") != ver:
        bad.append("%s: robot holds %s v%s (authenticated as %s), confirmed copy v%d %s"
                   % (dev, cur.get("fpr"), cur.get("version"), st.get("auth_slot"), ver, fpr))
if len(active) != n:
    bad.append("%d devices with an active psk row, not %d" % (len(active), n))
if bad:
    sys.exit("\n".join(bad))
print("psk: %d robots hold the confirmed PSK as current, 1 active row each" % n)
PY
    # openssl as the peer for one robot: the confirmed PSK opens its listener, the factory one
    # does not. The keys go through 0600 files into variables, never to the output.
    read -r dev port <ports.txt
    for f in "rot/psk/$dev.json:new.psk" "keys/$dev.json:old.psk"; do
        (umask 077 && python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(m["psk_hex"])
print(m["psk_identity"])' "${f%%:*}" >"${f#*:}") || fail "psk: ${f%%:*} not readable"
    done
    { read -r NEW_PSK; read -r NEW_ID; } <new.psk
    { read -r OLD_PSK; read -r OLD_ID; } <old.psk
    [ "$NEW_PSK" != "$OLD_PSK" ] || fail "psk: $dev's PSK did not change"
    s_client_req sc_new.out status "$NEW_PSK" "$NEW_ID" "$port"
    grep -q '"auth_slot":"current"' sc_new.out ||
        fail "psk: openssl s_client with the confirmed PSK of $dev: $(cat sc_new.out.err)"
    s_client_req sc_old.out ping "$OLD_PSK" "$OLD_ID" "$port"
    [ ! -s sc_old.out ] || fail "psk: the factory PSK of $dev still opens its listener"
    for p in "$NEW_PSK" "$OLD_PSK"; do
        if grep -q "$p" srv.log fleet.err fleet.out; then
            fail "psk: a PSK in a log"
        fi
    done
    echo "psk: openssl s_client: $dev's confirmed PSK authenticates, the factory one is refused"
fi
if has ca; then
    BUNDLE_FPR=$(python3 -c '
import base64, hashlib, sys
der, b64 = b"", None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("-----BEGIN"):
        b64 = ""
    elif line.startswith("-----END"):
        der += base64.b64decode(b64)
        b64 = None
    elif b64 is not None:
        b64 += line
print("sha256:" + hashlib.sha256(der).hexdigest()[:16])' bundle.pem)
    python3 - "$N" "$BUNDLE_FPR" "$HERE" <<'PY' || fail "ca: inventory rows"
import sys
sys.path.insert(0, sys.argv[3])
from inv_rows import credential_rows
n, want = int(sys.argv[1]), sys.argv[2]
active, bad = credential_rows("rows.txt", "ca_cert")
for dev, rows in sorted(active.items()):
    if len(rows) != 1 or rows[0][1] != want:
        bad.append("%s: active ca rows %s (want one, %s)" % (dev, rows, want))
if len(active) != n:
    bad.append("%d devices with an active ca_cert row, not %d" % (len(active), n))
if bad:
    sys.exit("\n".join(bad))
print("ca: %d devices x 1 active ca_cert row, the bundle %s" % (n, want))
PY
    # One more (clean) restart: every robot's new connection verifies the server's chain with
    # the anchors it committed.
    kill "$SRV"
    wait "$SRV" 2>/dev/null || true
    mark=$(wc -l <srv.log)
    srv_restart
    i=0
    while :; do
        back=$(tail -n "+$((mark + 1))" srv.log |
            sed -n 's/.*server: [0-9.]* \(robot-[0-9A-F]*\): hello, .*/\1/p' | sort -u | wc -l)
        [ "$back" -ge "$N" ] && break
        i=$((i + 1))
        [ $i -le 300 ] || fail "ca: $back of $N robots reconnected after the restart"
        sleep 0.2
    done
    wait_settled ca
    echo "ca: all $N robots reconnected to a restarted server with the committed anchors"
fi
"$B/provision-keys" inventory --inventory keys/inventory.db verify-audit >audit.out 2>&1 ||
    fail "verify-audit: $(cat audit.out)"
if grep -q 'Sanitizer\|runtime error:' fleet.err srv.log; then
    fail "sanitizer report"
fi
echo "$NAME: ok ($k kills, $mid during a rotation, $PLANS plans, FK_FAULT_SEED=$SEED)"
