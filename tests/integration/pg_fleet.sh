#!/bin/bash
# Two fleetkey-server instances on one PostgreSQL inventory (issue 15):
#   bash pg_fleet.sh BIN_DIR TMP_DIR
# A throw-away cluster (pg_lib.sh); 8 robots minted by provision-keys batch --ca into it; server
# A and server B (each its own port, spool and rotation directories, one database). Robots 0-3
# connect to A and 4-7 to B while, at the same time, a second batch of 300 devices and 20
# provision-keys generate runs write into the same inventory: four writers appending to one
# audit chain. Then robots 0-3 move to B (a device may connect to either: no second
# "device.connected" row), robot 4 is revoked with `ca revoke --inventory` and B closes it
# (1008) and refuses it from then on; the database restarts in between and both servers carry
# on. Checked: every write is there exactly once (devices,
# minted and connected audit rows, the revocation), and the chain verifies.
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
N=8
M=300
G=20
. "$HERE/skip.sh"
for t in provision-keys robot-sim fleetkey-server wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS
. "$HERE/pg_lib.sh"
fail() {
    echo "FAIL [pg_fleet]: $*" >&2
    for f in A.log B.log fa.err fb.err fa2.err more.err gen.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
fk_pg_start "$T/pg"
trap 'stop_all; fk_pg_stop' EXIT
fk_pg_createdb fleet
FLEET_INV=$(fk_pg_uri fleet)
INV=$FLEET_INV
. "$HERE/fleet_lib.sh"

# sql QUERY: one value from the inventory database.
sql() {
    fk_pg_psql -d fleet -At -c "$1"
}

fleet_mint $N
[ ! -e keys/inventory.db ] || fail "batch wrote a SQLite file beside the PostgreSQL inventory"
[ "$(sql 'SELECT count(*) FROM devices')" = $N ] || fail "minted robots not in PostgreSQL"
# Refusals first: a database has no "next to" for the default spool, and a server that cannot
# reach PostgreSQL says where (password masked) and why.
SRV="--listen 127.0.0.1 --port 0 --cert pki/servers/localhost.chain.pem \
--key pki/servers/localhost.key.pem --ca pki/ca-chain.pem --crl crl.pem"
if "$B/fleetkey-server" $SRV --inventory "$INV" 2>noota.err </dev/null; then
    fail "server ran with a PostgreSQL inventory and no ota_dir"
fi
grep -q "ota_dir must be set" noota.err || fail "no-ota_dir message: $(cat noota.err)"
if "$B/fleetkey-server" $SRV --ota_dir ota_x --inventory \
    "postgresql://fleetkey:s3cret@/fleet?host=$T/nowhere" 2>nodb.err </dev/null; then
    fail "server ran without its database"
fi
grep -q "postgresql://fleetkey:\*\*\*@/fleet?host=$T/nowhere: cannot connect" nodb.err ||
    fail "refused-connection message: $(cat nodb.err)"
! grep -q s3cret nodb.err || fail "password printed: $(cat nodb.err)"
fleet_server_named A
fleet_server_named B
PA=$(cat A.port)
PB=$(cat B.port)

# Four writers at once: both servers (hello: presence + audit), a batch, a generate loop.
awk -v n=$M 'BEGIN { print "mac,wifi_ssid,wifi_password"
    for (i = 0; i < n; i++) printf "06:00:00:00:%02X:%02X,lab,pw-%d\n", int(i / 256), i % 256, i }' \
    >more.csv
"$B/provision-keys" batch --csv more.csv --output-dir keys2 --inventory "$INV" --jobs 2 \
    --chunk 16 >more.out 2>more.err &
BATCH=$!
PIDS="$PIDS $BATCH"
(
    for i in $(seq 1 $G); do
        "$B/provision-keys" generate --output "gen/dev_$i.json" \
            --mac "$(printf '0A:00:00:00:01:%02X' "$i")" --inventory "$INV" >/dev/null || exit 1
    done
) 2>gen.err &
GEN=$!
PIDS="$PIDS $GEN"
P=$PA fleet_start fa $((N / 2))
FA=$FPID
P=$PB fleet_start fb $((N / 2)) --fleet-offset $((N / 2))
fleet_wait_status fa
fleet_wait_status fb
fleet_wait_online fa $((N / 2)) 60
fleet_wait_online fb $((N / 2)) 60
wait $BATCH || fail "concurrent batch failed: $(cat more.err)"
wait $GEN || fail "concurrent generate failed: $(cat gen.err)"
grep -q "hello" A.log && grep -q "hello" B.log || fail "each server should have served robots"

[ "$(sql "SELECT count(*) FROM audit WHERE kind = 'device.connected'")" = $N ] ||
    fail "device.connected rows: $(sql "SELECT count(*) FROM audit WHERE kind = 'device.connected'")"

# The database restarts under the running servers (their connections are cut): each reconnects
# at its next statement, so what follows (hellos on B, the revocation B reads) still works.
fk_pg_restart

# A device may connect to either instance: robots 0-3 move from A to B. Their presence rows
# are updated by B, and none is "connected" for the first time again.
kill -TERM "$FA"
wait "$FA" || fail "fleet fa exit status $?"
P=$PB fleet_start fa2 $((N / 2))
fleet_wait_status fa2
fleet_wait_online fa2 $((N / 2)) 60
ROBOT0=$(ls keys | sed -n 's/\.nvs\.bin$//p' | sort | sed -n 1p)
i=0
until [ "$(grep -c "$ROBOT0: hello" B.log)" -ge 1 ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "$ROBOT0 never said hello to B"
    sleep 0.1
done
[ "$(sql "SELECT count(*) FROM audit WHERE kind = 'device.connected'")" = $N ] ||
    fail "a robot was recorded as connected for the first time twice"

# Revocations reach every instance: robot 4 (on B) is revoked through the inventory; B reads
# the audit row, closes the robot with 1008 and refuses it from then on.
ROBOT4=$(ls keys | sed -n 's/\.nvs\.bin$//p' | sort | sed -n 5p)
"$B/provision-keys" ca revoke --dir pki --device "$ROBOT4" --reason keyCompromise \
    --inventory "$INV" >revoke.out 2>revoke.err || fail "ca revoke: $(cat revoke.err)"
grep -q "recorded in postgresql://fleetkey@/fleet" revoke.out || fail "revoke: $(cat revoke.out)"
i=0
until grep -q "$ROBOT4: certificate revoked in the inventory: closing" B.log; do
    i=$((i + 1))
    [ $i -le 150 ] || fail "B did not close the revoked $ROBOT4"
    sleep 0.1
done
fleet_wait_online fb $((N / 2 - 1)) 30
[ "$(sql "SELECT count(*) FROM credentials WHERE device_id = '$ROBOT4' AND kind = 'mtls_cert'
    AND state = 'revoked'")" -ge 1 ] || fail "$ROBOT4's certificate not revoked in the inventory"

# Everything written once, and one valid chain from all the writers.
TOTAL=$((N + M + G))
[ "$(sql 'SELECT count(*) FROM devices')" = $TOTAL ] || fail "devices: $(sql 'SELECT count(*) FROM devices')"
[ "$(sql "SELECT count(*) FROM audit WHERE kind = 'device.minted'")" = $TOTAL ] ||
    fail "device.minted rows: $(sql "SELECT count(*) FROM audit WHERE kind = 'device.minted'")"
[ "$(sql "SELECT count(DISTINCT subject) FROM audit WHERE kind = 'device.connected'")" = $N ] ||
    fail "device.connected subjects"
kill -TERM "$FPID" # fa2
stop_all
"$B/provision-keys" inventory --inventory "$INV" verify-audit >audit.out 2>&1 ||
    fail "verify-audit: $(cat audit.out)"
grep -q intact audit.out || fail "verify-audit: $(cat audit.out)"
ROWS=$(sql 'SELECT count(*) FROM audit')
# the writers really interleaved: server rows sit between batch rows in the chain
FIRST_CONN=$(sql "SELECT min(seq) FROM audit WHERE kind = 'device.connected'")
LAST_MINT=$(sql "SELECT max(seq) FROM audit WHERE actor <> 'fleetkey-server' AND kind = 'device.minted'")
if grep -q 'Sanitizer\|runtime error:' A.log B.log fa.err fb.err fa2.err more.err gen.err; then
    fail "sanitizer report"
fi
echo "pg_fleet: 2 servers, $N robots, $M + $G devices minted concurrently, $ROWS audit rows" \
    "(first device.connected at $FIRST_CONN, last device.minted at $LAST_MINT), chain intact"
