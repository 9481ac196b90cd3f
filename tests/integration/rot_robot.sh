#!/bin/sh
# Credential rotation end to end with real parts only (issue 14): two production robot-sim
# processes (encrypted NVS, credentials from NVS) minted by `batch --ca`, a real
# fleetkey-server, `fleetctl rotate` driving one plan of the classes psk and mtls, and
# openssl's command line as the independent peer on both sides:
#   - before: the old PSK opens the robot's DTLS listener (openssl s_client -dtls1_2 -psk);
#   - the plan: each robot makes its key and CSR, takes the certificate, reconnects with it,
#     is confirmed from the handshake; takes the PSK, the server's own DTLS handshake with it
#     confirms it; the interlock holds and the old certificates go into the CRL;
#   - after: the old PSK is refused and the new one (the operator's copy in rot_dir/psk/,
#     0600) works, also through `fleetctl robot`; `openssl s_client` with the old certificate
#     and key (read from the factory image) is refused, with the new ones (read from the
#     robot's NVS: the key was made there) accepted; each robot reconnects with its new
#     credential after a reboot; the inventory and its audit chain agree.
#   sh rot_robot.sh BIN_DIR WORK_DIR
set -eu
BIN=$1
T=$2
PK="$BIN/provision-keys"
RS="$BIN/robot-sim"
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh"
trap stop_all EXIT
. "$HERE/rot_lib.sh"
rot_fleet rot_robot 020000007001 020000007002
# blob NAME IMG NS KEY: the NVS blob as a file (robot-sim nvs get prints blobs in hex)
blob() {
    "$RS" nvs get --flash "$2" --ns "$3" --key "$4" >"$1.hex" 2>"$1.err" ||
        fail "no $3/$4 in $2"
    xxd -r -p "$1.hex" >"$1"
}
psk_of() { sed -n 's/.*"psk_hex": "\([0-9a-f]*\)".*/\1/p' "$1"; }
ident_of() { sed -n 's/.*"psk_identity": "\([^"]*\)".*/\1/p' "$1"; }

rm -f port
"$BIN/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
    --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
    --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
    --ca_dir pki --rot_dir rot --ping_interval 2 >srv.out 2>srv.err </dev/null &
PIDS="$PIDS $!"
wait_for port "[0-9]" 600 || fail "fleetkey-server did not start"
P=$(cat port)
FC="$BIN/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P"
FC="$FC --ca pki/ca-chain.pem"

for n in 1 2; do
    "$RS" --flash robot$n.img --sdkconfig prod.sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
        --run-ms 600000 --wss-uri "wss://127.0.0.1:$P/ws" --wss-backoff-ms 200 \
        --rot-trial-ms 60000 >rs$n.out 2>rs$n.err </dev/null &
    eval "RPID$n=\$!"
    PIDS="$PIDS $!"
done
for n in 1 2; do
    eval "d=\$D$n"
    wait_for rs$n.err "wss: welcomed by the server as $d" 600 || fail "robot $n not welcomed"
    wait_for rs$n.out "control listener on udp" 600 || fail "robot $n: no listener"
    eval "RPORT$n=\$(sed -n 's/.*control listener on udp 127\.0\.0\.1:\([0-9]*\).*/\1/p' rs$n.out)"
done

# ---- before: the factory PSK opens robot 1's listener ------------------------------------
OLD_PSK=$(psk_of "keys/$D1.json")
OLD_ID=$(ident_of "keys/$D1.json")
[ -n "$OLD_PSK" ] && [ -n "$OLD_ID" ] || fail "no PSK in keys/$D1.json"
s_client_req before.out status "$OLD_PSK" "$OLD_ID" "$RPORT1"
grep -q '"auth_slot":"current"' before.out || fail "old PSK refused before the rotation"

# ---- the plan ------------------------------------------------------------------------------
run 0 plan $FC --json rotate plan --classes psk,mtls --waves 50,100 --timeout 30 --all
ID=$(grep -o "rot-[0-9]*" plan.out | head -n 1)
[ -n "$ID" ] || fail "no plan id: $(cat plan.out)"
run 0 start $FC rotate start "$ID"
run 0 wait $FC --json rotate status "$ID" --wait 240
grep -q '"state":"done"' wait.out || fail "plan not done: $(tail -n 3 wait.out)"
for n in 1 2; do
    eval "d=\$D$n"
    expect rs$n.err "rot: mtls: version [0-9]* committed"
    expect rs$n.err "rot: psk: version [0-9]* committed"
    grep -q "rolled back" rs$n.err && fail "robot $n rolled back"
done
expect srv.err "rotation $ID"

# ---- after: PSKs ---------------------------------------------------------------------------
NEW=rot/psk/$D1.json
[ -f "$NEW" ] || fail "no operator copy of the new PSK ($NEW)"
[ "$(stat -c %a "$NEW")" = 600 ] || fail "$NEW is not 0600"
NEW_PSK=$(psk_of "$NEW")
NEW_ID=$(ident_of "$NEW")
[ "$NEW_PSK" != "$OLD_PSK" ] || fail "the PSK did not change"
grep -q "$NEW_PSK" srv.err rs1.err rs1.out && fail "a PSK in a log"
s_client_req old.out status "$OLD_PSK" "$OLD_ID" "$RPORT1"
grep -q '"ok":true' old.out && fail "the old PSK still opens the listener after the commit"
s_client_req new.out status "$NEW_PSK" "$NEW_ID" "$RPORT1"
grep -q '"auth_slot":"current"' new.out || fail "the new PSK does not open the listener"
run 0 robot $BIN/fleetctl robot --host 127.0.0.1 --port "$RPORT1" --keys "$NEW" --timeout 10 \
    status
expect robot.out "\"identity\":\"$NEW_ID\""

# ---- after: certificates -------------------------------------------------------------------
blob old.key factory1.img mtls client_key
blob old.crt factory1.img mtls client_cert
blob new.key robot1.img mtls client_key_b
blob new.crt robot1.img mtls client_cert_b
cmp -s old.crt new.crt && fail "the certificate did not change"
openssl x509 -inform DER -in new.crt -out new.crt.pem
openssl verify -CAfile pki/ca-chain.pem -crl_check -CRLfile crl.pem new.crt.pem >/dev/null 2>&1 ||
    fail "the new certificate does not verify with the CRL"
# tls_get CERT KEY OUT: GET /healthz with this client identity (DER files)
tls_get() {
    printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
        timeout 20 openssl s_client -connect "127.0.0.1:$P" -servername localhost -quiet \
            -CAfile pki/ca-chain.pem -cert "$1" -certform DER -key "$2" -keyform DER \
            >"$3" 2>"$3.err" || true
}
tls_get old.crt old.key tls_old.out
grep -q "HTTP/1.1 200" tls_old.out && fail "the old certificate is still accepted"
tls_get new.crt new.key tls_new.out
grep -q "HTTP/1.1 200" tls_new.out || fail "the new certificate is refused: $(cat tls_new.out.err)"
old_serial=$(openssl x509 -inform DER -in old.crt -noout -serial | cut -d= -f2)
openssl crl -in crl.pem -noout -text | tr -d ' :' | grep -qi "SerialNumber$old_serial" ||
    fail "the old serial $old_serial is not in the CRL"

# ---- a reboot keeps the new credentials ----------------------------------------------------
kill -TERM "$RPID1"
wait "$RPID1" 2>/dev/null || true
: >rs1.err
"$RS" --flash robot1.img --sdkconfig prod.sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
    --run-ms 600000 --wss-uri "wss://127.0.0.1:$P/ws" --wss-backoff-ms 200 \
    >rs1.out 2>rs1.err </dev/null &
PIDS="$PIDS $!"
wait_for rs1.err "wss: welcomed by the server as $D1" 600 || fail "robot 1 not welcomed again"

run 0 show "$PK" inventory --inventory keys/inventory.db show "$D1"
expect show.out "mtls_cert .* revoked"
expect show.out "psk .* active"
run 0 audit "$PK" inventory --inventory keys/inventory.db verify-audit
if grep -q 'Sanitizer\|runtime error:' srv.err rs1.err rs2.err; then
    fail "sanitizer report"
fi
echo "rot_robot: psk + mtls rotated on 2 robots, old refused, new accepted: 1 passed, 0 failed"
