#!/bin/bash
# One credential rotation driven by two fleetkey-server instances on one PostgreSQL inventory
# (issue 15):
#   bash pg_rot.sh BIN_DIR TMP_DIR
# A throw-away cluster (pg_lib.sh); 8 robots minted by provision-keys batch --ca into it;
# servers A and B (own ports and rot_dirs; one database, one CA directory and CRL file).
# Robots 0-2 run as a robot-sim fleet on A, 3-4 as a fleet on B, 5-7 as single robot-sims
# with flash image files (what a power cycle keeps) on A. One mtls,psk plan in two waves is
# created and started through A only, paused and resumed through B (A follows). In the middle,
# robots 5-7 move to B (kill -9, restarted pointed at B): 5 when A's log shows its delivery
# due, 6 when A staged its certificate (it comes back in trial: B must confirm what A
# issued), 7 when A asked for its CSR or later.
# Checked: the plan is done and revoked on both instances and `fleetctl rotate status` shows
# the same plan on both; every device confirmed each class exactly once (one
# rotation.confirmed row each); one active mtls_cert row and one unrevoked certificate per
# device (the one that row names), one active psk row, none left staged; the old credentials
# revoked exactly once (one rotation.old_revoked row, each serial in one rotation.revoked
# row); every fleet robot back with its new certificate; the audit chain verifies.
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
N=8
. "$HERE/skip.sh"
for t in provision-keys robot-sim fleetkey-server fleetctl wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS, wait_for
. "$HERE/pg_lib.sh"
fail() {
    echo "FAIL [pg_rot]: $*" >&2
    for f in A.log B.log fa.err fb.err r5.err r6.err r7.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 25 "$f" >&2; }
    done
    exit 1
}
fk_pg_start "$T/pg"
trap 'stop_all; fk_pg_stop' EXIT
fk_pg_createdb fleet
FLEET_INV=$(fk_pg_uri fleet)
INV=$FLEET_INV
. "$HERE/fleet_lib.sh"

sql() {
    fk_pg_psql -d fleet -At -F ' ' -c "$1"
}

# robot K PORT: single robot-sim K (its flash image rK.img) dialling PORT; sets RPID_K.
robot() {
    "$B/robot-sim" --flash "r$1.img" --sdkconfig prod.sdkconfig --ctl-port 0 \
        --ctl-bind 127.0.0.1 --wss-uri "wss://127.0.0.1:$2/ws" --wss-backoff-ms 300 \
        --rot-trial-ms 60000 >>"r$1.out" 2>>"r$1.err" </dev/null &
    eval "RPID_$1=\$!"
    PIDS="$PIDS $!"
}

# move K LINE: when A's log has LINE (30 s at most), kill -9 robot K and start it on B.
move() {
    wait_for A.log "$2" 300 || echo "pg_rot: '$2' not seen on A; robot $1 moved anyway"
    eval "kill -KILL \$RPID_$1"
    eval "wait \$RPID_$1" 2>/dev/null || true
    echo "pg_rot: robot $1 moved to B after: $(grep -c "$2" A.log) x '$2'"
    robot "$1" "$PB"
}

fleet_mint $N
echo "pg_rot passphrase" >pw.txt
"$B/provision-keys" export-p12 --dir pki --operator ops --password-file pw.txt \
    --out ops.p12 >p12.out 2>&1 || fail "export-p12: $(cat p12.out)"
ROBOTS=$(ls keys | sed -n 's/\.nvs\.bin$//p' | sort)
nth() { echo "$ROBOTS" | sed -n "$(($1 + 1))p"; }
for k in 5 6 7; do
    d=$(nth $k)
    "$B/robot-sim" flash-image create --out "r$k.img" --nvs "keys/$d.nvs.bin" \
        --nvs-keys "keys/$d.nvs_keys.bin" >img.out 2>&1 || fail "flash image $k: $(cat img.out)"
done
fleet_server_named A "ca_dir = pki"
fleet_server_named B "ca_dir = pki"
PA=$(cat A.port)
PB=$(cat B.port)

P=$PA fleet_start fa 3
P=$PB fleet_start fb 2 --fleet-offset 3
for k in 5 6 7; do
    robot $k "$PA"
done
fleet_wait_status fa
fleet_wait_status fb
fleet_wait_online fa 3 60
fleet_wait_online fb 2 60
for k in 5 6 7; do
    wait_for "r$k.err" "wss: welcomed by the server as $(nth $k)" 600 ||
        fail "robot $k not welcomed by A"
done

# The plan, created and started on A only: B learns it from the inventory.
P=$PA FLEET_WAVES=50,100 fleet_rotate mtls,psk 10
echo "pg_rot: plan $ROT_ID started on A"
# Operator actions through B act on the one plan: paused there, A stops too; resumed there.
# get_until S PATTERN: until GET /api/rotation/ID on server S matches PATTERN (20 s at most).
get_until() {
    i=0
    until P=$(cat "$1.port") fleet_api GET "/api/rotation/$ROT_ID" && grep -q "$2" api.out; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "$1 never showed $2: $(head -c 600 api.out)"
        sleep 0.2
    done
}
get_until B '"id":"'"$ROT_ID"'"'
: >empty
P=$PB fleet_api POST "/api/rotation/$ROT_ID/pause" empty
grep -q '^200' api.out || fail "pause through B: $(cat api.out)"
get_until A '"state":"paused","pause_reason":"paused by ops"'
P=$PB fleet_api POST "/api/rotation/$ROT_ID/resume" empty
grep -q '^200' api.out || fail "resume through B: $(cat api.out)"
get_until A '"state":"running"\|"state":"settled"'
D5=$(nth 5)
D6=$(nth 6)
D7=$(nth 7)
move 5 "$D5: mtls delivery due"
move 6 "$D6: rot_stage mtls"
move 7 "$D7: mtls delivery due"

# Done and revoked, seen alike from both instances.
for S in A B; do
    P=$(cat $S.port)
    fleet_wait_done 180 $S
    [ "$(fleet_count confirmed)" = "$N" ] || fail "$S: confirmed $(fleet_count confirmed) of $N"
    FC="$B/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P"
    $FC --ca pki/ca-chain.pem --json rotate status "$ROT_ID" >"status_$S.json" 2>"status_$S.err" ||
        fail "fleetctl rotate status on $S: $(cat "status_$S.err")"
done
python3 - <<'PY' || fail "the instances show different plans"
import json
a, b = (json.load(open("status_%s.json" % s)) for s in "AB")
for k in ("id", "state", "revoked", "counts", "classes", "waves", "forced"):
    if a.get(k) != b.get(k):
        raise SystemExit("%s: A %r, B %r" % (k, a.get(k), b.get(k)))
if a["counts"]["confirmed"] != 8:
    raise SystemExit("counts %r" % a["counts"])
PY
grep -q "rotation $ROT_ID loaded from the inventory" B.log || fail "B never loaded the plan"

# Every robot back with its new certificate (the old ones are in the CRL both servers reload).
i=0
while [ "$(fleet_field fa.json online)" -ne 3 ] || [ "$(fleet_rot fa mtls committed)" -ne 3 ] ||
    [ "$(fleet_field fb.json online)" -ne 2 ] || [ "$(fleet_rot fb mtls committed)" -ne 2 ]; do
    i=$((i + 1))
    [ $i -le 300 ] || fail "fleet robots not back with the new certificate: $(cat fa.json fb.json)"
    sleep 0.2
done

# Nothing lost, nothing duplicated: inventory rows against the CA index, audit rows.
sql "SELECT device_id, version, state, fingerprint FROM credentials WHERE kind = 'mtls_cert'" \
    >rows.txt || fail "inventory not readable"
python3 - "$N" "$HERE" <<'PY' || fail "inventory and CA index disagree"
import sys
sys.path.insert(0, sys.argv[2])
from ca_index import check_one_active
bad = check_one_active("rows.txt", "pki/index.jsonl", int(sys.argv[1]))[0]
if bad:
    sys.exit("\n".join(bad))
PY
# one confirmation per device and class (the detail names the class and version)
[ "$(sql "SELECT count(*), count(DISTINCT subject || ' ' || (detail::json->>'class'))
    FROM audit WHERE kind = 'rotation.confirmed'")" = "$((2 * N)) $((2 * N))" ] ||
    fail "rotation.confirmed rows: $(sql "SELECT subject, detail FROM audit WHERE kind = 'rotation.confirmed'")"
# PSKs: one active row per device, a successor; the old ones revoked, none left staged
[ "$(sql "SELECT count(*) FROM credentials WHERE kind = 'psk' AND state = 'active' AND version >= 2")" = $N ] &&
    [ "$(sql "SELECT count(DISTINCT device_id) FROM credentials WHERE kind = 'psk' AND state = 'active'")" = $N ] &&
    [ "$(sql "SELECT count(*) FROM credentials WHERE kind = 'psk' AND state IN ('active', 'staged')")" = $N ] ||
    fail "psk rows: $(sql "SELECT device_id, version, state FROM credentials WHERE kind = 'psk'")"
[ "$(sql "SELECT count(*) FROM credentials WHERE kind = 'psk' AND state = 'revoked'")" -ge $N ] ||
    fail "old PSKs not revoked"
[ "$(sql "SELECT count(*) FROM audit WHERE kind = 'rotation.old_revoked'")" = 1 ] ||
    fail "rotation.old_revoked rows: $(sql "SELECT count(*) FROM audit WHERE kind = 'rotation.old_revoked'")"
[ "$(sql "SELECT count(*) = count(DISTINCT subject || detail) FROM audit
    WHERE kind = 'rotation.revoked'")" = t ] ||
    fail "a serial revoked twice: $(sql "SELECT detail FROM audit WHERE kind = 'rotation.revoked'")"
[ "$(sql "SELECT count(*) FROM audit WHERE kind = 'rotation.revoked'
    AND detail::json->>'serial' IS NOT NULL")" -ge $N ] || fail "old certificates not all revoked"
[ "$(sql "SELECT count(*) FROM audit WHERE kind = 'rotation.created'")" = 1 ] || fail "plan created twice"
[ "$(grep -c "mtls v[0-9]* confirmed" B.log || true)" -ge 3 ] ||
    fail "B confirmed fewer than its 2 robots and a moved one"
kill -TERM "$FPID" # fb
stop_all
"$B/provision-keys" inventory --inventory "$INV" verify-audit >audit.out 2>&1 ||
    fail "verify-audit: $(cat audit.out)"
grep -q intact audit.out || fail "verify-audit: $(cat audit.out)"
if grep -q 'Sanitizer\|runtime error:' A.log B.log fa.err fb.err r5.err r6.err r7.err; then
    fail "sanitizer report"
fi
echo "pg_rot: plan $ROT_ID over $N robots on 2 servers (3 moved from A to B mid-plan):" \
    "mtls confirmations logged by A $(grep -c "mtls v[0-9]* confirmed" A.log || true)," \
    "by B $(grep -c "mtls v[0-9]* confirmed" B.log || true)," \
    "taken back by B $(grep -c "taken back" B.log || true); audited once per device and class"
