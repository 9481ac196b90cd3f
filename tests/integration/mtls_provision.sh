#!/bin/sh
# generate/batch --ca end to end (issue 6, section 1): `batch --ca pki/ --encrypt-nvs` mints a
# few devices with mTLS identities; every certificate verifies against the CA chain; the key
# is nowhere but in the encrypted images; a re-run issues nothing; one device's encrypted
# image is flashed into a production robot-sim (secure boot, NVS encryption) that dials a
# real fleetkey-server with the DER credentials from NVS, and its hello is recorded.
# Usage: mtls_provision.sh BIN_DIR WORK_DIR
set -eu
bin=$1
work=$2
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cd "$work"
PK="$bin/provision-keys"
RS="$bin/robot-sim"
. "$HERE/lib.sh" # PIDS, stop_all, wait_for
trap stop_all EXIT
fail() {
    echo "FAIL [mtls_provision]: $*" >&2
    for f in batch.err rs.err srv.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}

"$PK" ca init --dir pki --name "mTLS Provisioning Test" >/dev/null 2>&1 || fail "ca init"
"$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1 >/dev/null 2>&1 ||
    fail "ca issue --server"
printf 'mac,name\n02:00:00:00:10:01,one\n02:00:00:00:10:02,two\n02:00:00:00:10:03,three\n' \
    >devices.csv
"$PK" batch --csv devices.csv --output-dir keys --ca pki --encrypt-nvs --jobs 2 --cert-days 30 \
    >batch.out 2>batch.err || fail "batch --ca"
grep -q "warning" batch.err && fail "warned although --encrypt-nvs was given"
for id in robot-020000001001 robot-020000001002 robot-020000001003; do
    [ -f "keys/$id.crt.pem" ] || fail "$id.crt.pem missing"
    [ "$(stat -c %a "keys/$id.crt.pem")" = 644 ] || fail "$id.crt.pem is not 0644"
    openssl verify -CAfile pki/ca-chain.pem "keys/$id.crt.pem" >/dev/null 2>&1 ||
        fail "$id.crt.pem does not verify against the CA chain"
    fpr="sha256:$(openssl x509 -in "keys/$id.crt.pem" -outform DER | openssl sha256 -r |
        cut -c1-64)"
    grep -q "\"mtls_cert_fingerprint\": \"$fpr\"" "keys/$id.json" ||
        fail "$id: manifest fingerprint is not the certificate's"
    grep -q '"mtls_cert_not_after": "20[0-9-]*T[0-9:]*Z"' "keys/$id.json" ||
        fail "$id: no mtls_cert_not_after"
    "$PK" inventory --inventory keys/inventory.db show "$id" >inv.txt 2>&1 ||
        fail "inventory show $id"
    grep -q "mtls_cert .*$fpr active .*expires 20" inv.txt ||
        fail "$id: no active mtls_cert credential with an expiry: $(cat inv.txt)"
    # not in the CA directory's per-name files: the key exists only in the image
    [ ! -e "pki/devices/$id.key.pem" ] || fail "a key file for $id in the CA directory"
done
# no PEM private key anywhere but the OTA fleet key (the device keys are DER, in the
# encrypted images only; test_keys checks the bytes, this checks the file tree)
n=$(grep -rl "PRIVATE KEY" keys pki | grep -v 'ota_signing.key.pem$' |
    grep -v '^pki/\(root\|issuing\).key.pem$' | grep -v '^pki/servers/' | wc -l)
[ "$n" -eq 0 ] || fail "a private key file outside the expected ones"

# a re-run is idempotent: nothing minted, nothing issued
issued=$(grep -c '"op":"issue"' pki/index.jsonl)
"$PK" batch --csv devices.csv --output-dir keys --ca pki --encrypt-nvs >batch2.out 2>&1 ||
    fail "batch re-run"
grep -q "0 minted, 3 already complete" batch2.out || fail "re-run minted: $(cat batch2.out)"
[ "$(grep -c '"op":"issue"' pki/index.jsonl)" -eq "$issued" ] || fail "re-run issued certs"
# --ca without --encrypt-nvs warns
"$PK" generate --output plain/d.json --ca pki >/dev/null 2>plain.err || fail "generate --ca"
grep -q "warning: --ca without --encrypt-nvs" plain.err || fail "no warning without encryption"

# production robot-sim, encrypted NVS, credentials from NVS only (DER), real server
ID=robot-020000001002
"$PK" ca crl --dir pki --out crl.pem >/dev/null 2>&1 || fail "ca crl"
"$RS" flash-image create --out robot.bin --nvs "keys/$ID.nvs.bin" \
    --nvs-keys "keys/$ID.nvs_keys.bin" >/dev/null 2>&1 || fail "flash-image create"
cat >sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_EXPECTED_HOST="localhost"
CFG
rm -f port
"$bin/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
    --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
    --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
    >srv.out 2>srv.err </dev/null &
PIDS="$PIDS $!"
wait_for port "[0-9]" || fail "fleetkey-server did not start"
P=$(cat port)
"$RS" --flash robot.bin --sdkconfig sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
    --run-ms 60000 --wss-uri "wss://127.0.0.1:$P/ws" >rs.out 2>rs.err </dev/null &
RPID=$!
PIDS="$PIDS $RPID"
wait_for rs.err "wss: welcomed by the server as $ID" || fail "device was not welcomed"
grep -q "client cert from nvs, CA from nvs" rs.err || fail "credentials not taken from NVS"
grep -q "store: mtls/client_key: from nvs" rs.err || fail "key not loaded from NVS"
wait_for srv.err "$ID: hello" || fail "server did not log the hello"
grep -q "$ID: hello, .*production" srv.err || fail "hello is not from a production build"
kill -TERM "$RPID"
wait "$RPID" || fail "robot-sim exit status $? after SIGTERM"
"$PK" inventory --inventory keys/inventory.db show "$ID" >inv.txt 2>&1 || fail "inventory show"
grep -q "device.connected *by fleetkey-server" inv.txt ||
    fail "hello not recorded in the inventory: $(cat inv.txt)"
if grep -q 'Sanitizer\|runtime error:' rs.err srv.err; then
    fail "sanitizer report"
fi
echo "mtls_provision: ok"
