#!/bin/sh
# Slowloris on fleetkey-server (issue 15, "Reliability"):
#   sh fault_slowloris.sh BIN_DIR TMP_DIR
# With handshake_timeout 3, slowloris.py holds 20 connections of each kind (TCP without a
# byte, a TLS ClientHello dribbled one byte every 0.5 s, a completed mTLS handshake without
# the HTTP upgrade); meanwhile a device's hello gets its welcome and an operator's admin GET is
# answered; then every held connection must be dropped by the server (within the timeout plus
# 6 s of its opening: lws's own 10 s header-table limit would be too late; one that completed
# TLS may take up to lws's 5 s HTTP keep-alive idle limit), and the server still serves
# afterwards.
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/skip.sh"
for t in provision-keys fleetkey-server wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T/keys"
cd "$T"
. "$HERE/lib.sh" # fail, run, stop_all, PIDS
trap stop_all EXIT
PK="$B/provision-keys"
run 0 ca_init "$PK" ca init --dir pki
run 0 ca_srv "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
run 0 gen "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01 --inventory keys/inventory.db
D1=robot-020000000001
run 0 ca_dev "$PK" ca issue --dir pki --device $D1
run 0 ca_op "$PK" ca issue --dir pki --operator ops
run 0 crl "$PK" ca crl --dir pki --out crl.pem
"$B/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port --handshake_timeout "${FK_HS_TIMEOUT:-3}" \
    --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
    --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db 2>srv.log </dev/null &
PIDS="$PIDS $!"
wait_for port . 300 || fail "fleetkey-server did not start"
P=$(cat port)
DEV="--ca pki/ca-chain.pem --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem"
OPER="--ca pki/ca-chain.pem --cert pki/operators/ops.chain.pem --key pki/operators/ops.key.pem"
HELLO='{"type":"hello","device_id":"'$D1'","firmware_version":"1.0","credential_versions":{},"posture":{"build":"development","rules":{}}}'
# The normal client: a device's hello answered with welcome, then an operator's GET answered.
cat >normal.sh <<EOF
set -e
"$B/wss_client" --port $P $DEV --timeout 10 send '$HELLO' expect welcome >normal.out 2>&1
"$B/wss_client" --port $P $OPER --get /metrics >metrics.out 2>&1
grep -q '^200' metrics.out
EOF
python3 "$HERE/slowloris.py" --port "$P" --ca pki/ca-chain.pem \
    --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem --count 20 --timeout 3 --slack 6 \
    -- sh normal.sh >slow.out 2>&1 || { cat slow.out srv.log normal.out metrics.out >&2 || true; fail "slowloris"; }
cat slow.out
# And afterwards the server is still serving.
sh normal.sh || fail "not served after the attack: $(cat normal.out metrics.out)"
kill -0 "${PIDS##* }" || fail "fleetkey-server died"
echo "fault_slowloris: ok"
