# fleetkey-server's credential rotation (issue 14) against a scripted device (wss_client with
# send/expect-request/respond steps; the CSR made by openssl here): an mtls rotation of one
# device end to end over /api/rotation: created paused, started, rot_csr -> rot_stage ->
# reconnect with the new certificate -> rot_commit -> confirmed -> interlock -> old
# certificate revoked (refused by the server), new one accepted, audit chain verified.
set -eu
BIN=$1
T=$2
PK="$BIN/provision-keys"
W="$BIN/wss_client"
CASE=mtls
rm -rf "$T"
mkdir -p "$T/keys"
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"
SRV_PID=""
cleanup() { [ -z "$SRV_PID" ] || { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; }; }
trap cleanup EXIT INT TERM
. "$HERE/server_lib.sh"

ok "$PK" ca init --dir pki
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
ok "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01 --inventory keys/inventory.db
D1=robot-020000000001
ok "$PK" ca issue --dir pki --device $D1
ok "$PK" ca issue --dir pki --operator alice
ok "$PK" ca crl --dir pki --out crl.pem
CA=pki/ca-chain.pem
OPER="--ca $CA --cert pki/operators/alice.chain.pem --key pki/operators/alice.key.pem"
start_server --ca_dir pki --rot_dir rot

printf '{"classes":"mtls","waves":"100","timeout_s":30,"devices":["%s"]}' $D1 >plan.json
ok "$W" --port "$P" $OPER --post /api/rotation --body plan.json
grep -q '^201' out.txt || { cat out.txt; fail "plan not created"; }
grep -q '"pause_reason":"not started"' out.txt || fail "plan not created paused"
ok "$W" --port "$P" $OPER --post /api/rotation --body plan.json
grep -q '^409' out.txt || { cat out.txt; fail "a second plan was not refused"; }
: >empty
ok "$W" --port "$P" $OPER --post /api/rotation/rot-000001/start --body empty
grep -q '^200' out.txt || { cat out.txt; fail "start refused"; }

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout new.key \
    -subj "/CN=$D1" -out new.csr 2>/dev/null
CSR=$(awk '{printf "%s\\n", $0}' new.csr)
HELLO='{"type":"hello","device_id":"'$D1'","firmware_version":"1.0","credential_versions":{},"posture":{"build":"development","rules":{}},"rot":{"mtls":{"state":"idle","version":0,"staged_version":0,"reason":"none","attempts":0}}}'
ok "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
    --timeout 10 send "$HELLO" expect welcome expect-request rot_csr \
    respond '{"csr":"'"$CSR"'"}' expect-request rot_stage respond '{"rot":{"state":"trial"}}'
STAGE=$(grep '"rot_stage"' out.txt)
VER=$(echo "$STAGE" | sed 's/.*"version":\([0-9]*\).*/\1/')
echo "$STAGE" | sed 's/.*"cert":"\([^"]*\)".*/\1/' | base64 -d | openssl x509 -inform DER -out new.crt
cat new.crt pki/issuing.crt.pem >new.chain.pem 2>/dev/null || cat new.crt >new.chain.pem
[ -s pki/issuing.crt.pem ] || ls pki >&2
HELLO2=$(echo "$HELLO" | sed 's/"state":"idle","version":0,"staged_version":0/"state":"trial","version":0,"staged_version":'$VER'/')
ok "$W" --port "$P" --ca $CA --cert new.chain.pem --key new.key --timeout 10 \
    send "$HELLO2" expect welcome expect-request rot_commit respond '{"rot":{"state":"committed"}}' idle 3
grep -q '"serial"' out.txt || fail "rot_commit without serial"
i=0
while :; do
    ok "$W" --port "$P" $OPER --get /api/rotation/rot-000001
    grep -q '"revoked":true' out.txt && break
    i=$((i + 1)); [ $i -le 20 ] || { cat out.txt; fail "old credentials not revoked"; }
    sleep 0.5
done
sleep 2
if "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
    --timeout 5 send "$HELLO" expect welcome >/dev/null 2>&1; then
    fail "the old certificate is still accepted"
fi
ok "$W" --port "$P" --ca $CA --cert new.chain.pem --key new.key --timeout 5 send "$HELLO2" expect welcome
ok "$PK" inventory --inventory keys/inventory.db verify-audit
echo "PASS ($CASE)"
