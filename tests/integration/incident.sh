#!/bin/sh
# The emergency path for a compromised OTA signing key (seed 004: "If a signing key is
# compromised, rotate immediately and OTA all devices"), end to end with real processes:
# fleetkey-server, three production robot-sim robots trusting key A (the vectors' A plays the
# leaked key), two of them online, and `fleetctl incident ota-key-compromised`.
#   1. the first run makes a new key, starts the rotation, dual-signs v2 (A + new), pushes it
#      to every robot through the OTA job API, and stops at the new-key-only gate because
#      robot 3 never connected: it is named as blocking and listed as not covered (exit 1);
#   2. a re-run continues from the state file (no second key, release or job) with robot 3
#      forced: new-key-only release to robots 1 and 2, old key retired, report (text and
#      --json) with robot 3 not covered (exit 3);
#   3. robots 1 and 2 end trusting only the new key (NVS), boot an image that verifies with it
#      under Secure Boot V2, and refuse an image signed only by A; the server refuses A images;
#   4. robot 3 comes online, takes the new key and the dual release, and a third run covers it
#      (exit 0); every step is in the audit log, whose chain holds.
#   sh incident.sh BIN_DIR VECTORS_DIR WORK_DIR
set -eu
BIN=$1
VEC=$2/sbv2
TMP=$3
PK="$BIN/provision-keys"
RS="$BIN/robot-sim"
MK="$BIN/mkappimage"
. "$(dirname "$0")/skip.sh"
for t in "$PK" "$RS" "$MK" "$BIN/fleetkey-server" "$BIN/fleetctl"; do
    [ -x "$t" ] || fk_skip "$t not built"
done
rm -rf "$TMP"
mkdir -p "$TMP/keys" "$TMP/inc"
. "$(dirname "$0")/lib.sh"
cd "$TMP"
trap stop_all EXIT
. "$(dirname "$0")/ota_lib.sh"

mint 1
mint 2
mint 3
D1=robot-020000002001
D2=robot-020000002002
D3=robot-020000002003
start_server
start_robot 1
start_robot 2
welcomed 1 1 || fail "robot 1 not welcomed"
welcomed 2 1 || fail "robot 2 not welcomed"
INC="$FC incident ota-key-compromised --inventory keys/inventory.db --old-key $VEC/key_a.pem \
    --new-key inc/new.pem --image v2.bin --state inc/state.json --poll-ms 200"

# 1. up to the gate that robot 3 (never connected) holds
run 1 inc1 $INC --wait 20
[ "$(stat -c %a inc/new.pem)" = 600 ] || fail "the new key is not 0600"
grep -q "PRIVATE" inc1.out inc1.err && fail "key material printed"
expect inc1.out "step push_dual: done"
expect inc1.err "blocking: $D3 (new key not confirmed; never connected)"
expect inc1.out "$D3 *NOT COVERED: does not hold the new key (never connected)"
expect inc1.out "still trusted"
openssl pkey -in inc/new.pem -pubout -out new.pub.pem
openssl pkey -in inc/new.pem -pubout -outform DER -out new.der
run 0 v_dual_a "$PK" verify --pubkey "$VEC/key_a.pub.pem" inc/incident-release-dual.bin
run 0 v_dual_n "$PK" verify --pubkey new.pub.pem inc/incident-release-dual.bin
DUALJOB=$(sed -n 's/.*"dual_job":"\(j-[0-9]*\)".*/\1/p' inc/state.json)
[ -n "$DUALJOB" ] || fail "no dual job in the state"
run 0 st_dual $FC ota-status "$DUALJOB"
expect st_dual.out "$D3 *queued"
cp inc/new.pem new.before

# 2. the re-run with robot 3 forced: new-key-only release, retirement, report
run 1 wrongforce $INC --wait 60 --force-device "$D2"
expect wrongforce.err "$D2 does not block"
run 3 inc2 $INC --wait 120 --force-device "$D3"
cmp -s inc/new.pem new.before || fail "the re-run made another key"
grep -q "step keygen\|step sign_dual\|step push_dual" inc2.out && fail "a done step ran again"
expect inc2.out "step force: done"
expect inc2.out "step sign_new: done"
expect inc2.out "step retire: done"
expect inc2.out "RETIRED"
expect inc2.out "$D1 *covered"
expect inc2.out "$D2 *covered"
expect inc2.out "$D3 *NOT COVERED"
expect inc2.out "2 of 3 devices covered"
[ "$(sed -n 's/.*"dual_job":"\(j-[0-9]*\)".*/\1/p' inc/state.json)" = "$DUALJOB" ] ||
    fail "the dual job changed"
run 1 v_new_a "$PK" verify --pubkey "$VEC/key_a.pub.pem" inc/incident-release-new.bin
run 0 v_new_n "$PK" verify --pubkey new.pub.pem inc/incident-release-new.bin
run 3 inc_json $FC --json incident ota-key-compromised --inventory keys/inventory.db \
    --old-key "$VEC/key_a.pem" --new-key inc/new.pem --image v2.bin --state inc/state.json
python3 - inc_json.out "$D3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["old_key_retired"] is True, r
assert r["not_covered"] == [sys.argv[2]], r["not_covered"]
assert r["devices_total"] == 3 and r["devices_not_covered"] == 1, r
d3 = [d for d in r["devices"] if d["id"] == sys.argv[2]][0]
assert d3["forced"] and not d3["new_key_confirmed"] and d3["last_seen"] is None, d3
PY

# 3. the online robots drop key A
for n in 1 2; do
    wait_for rs$n.err "ota_pubkey replaced\|promoted" 600 || fail "robot $n: no promotion"
done
"$MK" --version 3.0.0 --secure-version 3 --segment-len 4000 --seed 5 v3.bin
run 0 sign_a3 "$PK" sign --key "$VEC/key_a.pem" --output v3.a.bin v3.bin
run 1 push_old $FC ota --all --wait 30 v3.a.bin
expect push_old.err "retired"
stop_robot 1
stop_robot 2
for n in 1 2; do
    got=$(nvs_key $n ota_pubkey) || fail "robot $n: no ota_pubkey"
    [ "$got" = "$(od -An -tx1 -v new.der | tr -d ' \n')" ] ||
        fail "robot $n: ota_pubkey is not the new key"
    if nvs_key $n ota_pubkey2 >/dev/null; then
        fail "robot $n still holds ota_pubkey2"
    fi
    # Secure Boot V2 checks the running image against the trusted keys: only the new one now
    run 0 boot$n "$RS" --flash robot$n.img --sdkconfig prod.sdkconfig --boot-only
    expect boot$n.out "app: robot 2.0.0"
    expect boot$n.out "app state: valid"
    run 5 old$n "$RS" ota --flash robot$n.img --sdkconfig prod.sdkconfig --image v3.a.bin
    expect old$n.err "REFUSED"
done

# 4. robot 3 comes back: it takes the new key (endorsed by A, which it still trusts) and the
#    queued dual release; the next run sends it the new-key-only release and covers it
start_robot 3
welcomed 3 1 || fail "robot 3 not welcomed"
wait_for rs3.err "ota_pubkey2 :=" 600 || fail "robot 3 never got ota_pubkey2"
i=0
while ! $FC ota-status "$DUALJOB" 2>/dev/null | grep -q "$D3 *confirmed"; do
    i=$((i + 1))
    [ $i -le 600 ] || fail "robot 3 never installed the dual release"
    sleep 0.1
done
run 0 inc3 $INC --wait 120
expect inc3.out "new-key-only release pushed"
expect inc3.out "3 of 3 devices covered"
wait_for rs3.err "ota_pubkey replaced\|promoted" 600 || fail "robot 3: no promotion"
stop_robot 3
[ "$(nvs_key 3 ota_pubkey)" = "$(od -An -tx1 -v new.der | tr -d ' \n')" ] ||
    fail "robot 3: ota_pubkey is not the new key"
run 0 boot3 "$RS" --flash robot3.img --sdkconfig prod.sdkconfig --boot-only
expect boot3.out "app state: valid"

# every step audited, the chain intact
run 0 audit "$PK" inventory --inventory keys/inventory.db verify-audit
python3 - keys/inventory.db <<'PY'
import sqlite3, sys
kinds = {r[0] for r in sqlite3.connect(sys.argv[1]).execute("select kind from audit")}
for step in ("keygen", "start", "sign_dual", "push_dual", "force", "sign_new", "push_new",
             "retire"):
    assert "incident.ota_key_compromised." + step in kinds, step
for k in ("ota_rotation.start", "ota_rotation.forced", "ota_rotation.retire_old"):
    assert k in kinds, k
PY
for f in rs1.err rs2.err rs3.err srv.err; do
    if [ -f $f ] && grep -q 'Sanitizer\|runtime error:' $f; then
        fail "sanitizer report in $f"
    fi
done
echo "PASS [incident]"
