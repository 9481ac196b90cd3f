#!/bin/sh
# fleetkey-server end to end on 127.0.0.1 (a free port chosen by the kernel): certificates
# from provision-keys ca, devices from provision-keys generate, peers that share no code with
# the server (tests/tools/wss_client.c on OpenSSL, the openssl command line) and fleetctl.
# Every wait is bounded; nothing asserts on elapsed time.
#
# usage: server.sh CASE BIN_DIR TMP_DIR
#   CASE: hello | refusals | revoke | openssl | protocol | admin | fleetctl
set -eu

CASE=$1
BIN=$2
T=$3
PK="$BIN/provision-keys"
W="$BIN/wss_client"

rm -rf "$T"
mkdir -p "$T"
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"

SRV_PID=""
cleanup() {
    if [ -n "$SRV_PID" ]; then
        kill "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

. "$HERE/server_lib.sh" # fail, ok, expect_log, start_server
no_sanitizer_report() {
    if grep -q 'Sanitizer\|runtime error:' "$1"; then
        cat "$1" >&2
        fail "sanitizer report in $1"
    fi
}
# refused_tls ARGS...: wss_client must be refused at the TLS layer (exit 3).
refused_tls() {
    set +e
    "$W" "$@" >out.txt 2>err.txt
    rc=$?
    set -e
    no_sanitizer_report err.txt
    [ "$rc" -eq 3 ] || { cat out.txt err.txt >&2; fail "expected a TLS refusal (3), got $rc: $*"; }
}

# ---- fixtures --------------------------------------------------------------------------
ok "$PK" ca init --dir pki
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
ok "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01
ok "$PK" generate --output keys/d2.json --mac 02:00:00:00:00:02
D1=robot-020000000001
D2=robot-020000000002
ok "$PK" ca issue --dir pki --device $D1
ok "$PK" ca issue --dir pki --device $D2
ok "$PK" ca issue --dir pki --operator alice
ok "$PK" ca issue --dir pki --mobile phone1
ok "$PK" ca crl --dir pki --out crl.pem
CA=pki/ca-chain.pem
hello_json() {
    printf '{"type":"hello","device_id":"%s","firmware_version":"1","credential_versions":{},"posture":{"build":"production","rules":{}}}' "$1"
}
dev() { echo "--ca $CA --cert pki/devices/$1.chain.pem --key pki/devices/$1.key.pem"; }
OPER="--ca $CA --cert pki/operators/alice.chain.pem --key pki/operators/alice.key.pem"

# hold ID NAME STEP...: device ID connects in the background and stays (wss_client hello
# ID STEP..., output in NAME.out / NAME.err); returns once it is welcomed, with HELD_PID set.
hold() {
    hold_id=$1
    hold_name=$2
    shift 2
    "$W" --port "$P" $(dev $hold_id) --timeout 60 hello $hold_id "$@" >$hold_name.out \
        2>$hold_name.err &
    HELD_PID=$!
    i=0
    until grep -q welcome $hold_name.out 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 200 ] || fail "$hold_id did not connect"
        sleep 0.1
    done
}
metrics() {
    "$W" --port "$P" $OPER --get /metrics >metrics.txt 2>/dev/null || fail "GET /metrics"
}
# metric NAME_AND_LABELS: prints the value.
metric() {
    metrics
    awk -v k="$1" '$1 == k { print $2 }' metrics.txt
}
expect_metric_ge() {
    v=$(metric "$1")
    [ -n "$v" ] && [ "$v" -ge "$2" ] || fail "metric $1 = '$v', expected >= $2"
}
# wait_metric_ge NAME MIN MESSAGE: wait, bounded (100 x 0.1 s), until metric NAME >= MIN.
wait_metric_ge() {
    i=0
    while [ "$(metric "$1")" -lt "$2" ]; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "$3"
        sleep 0.1
    done
}
stop_server() {
    kill -TERM "$SRV_PID"
    i=0
    while kill -0 "$SRV_PID" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "server did not stop on SIGTERM"
        sleep 0.1
    done
    set +e
    wait "$SRV_PID"
    rc=$?
    set -e
    SRV_PID=""
    [ "$rc" -eq 0 ] || fail "server exit status $rc after SIGTERM"
    no_sanitizer_report srv.log
    expect_log "server: stopping"
}

case "$CASE" in
hello)
    start_server
    ok "$W" --port "$P" $(dev $D1) hello $D1 ping
    grep -q '"type":"welcome"' out.txt || fail "no welcome"
    grep -q '"type":"pong","id":7' out.txt || fail "no pong"
    expect_log "$D1: hello, firmware 1.2.3, development build (first connection)"
    # Recorded: last seen, firmware, posture, and one audit entry for the first connection.
    ok "$W" --port "$P" $OPER --get /api/devices/$D1
    grep -q '"last_seen":"20' out.txt || fail "last_seen not recorded: $(cat out.txt)"
    grep -q '"firmware_version":"1.2.3"' out.txt || fail "firmware not recorded"
    grep -q '"posture":{"build":"development"' out.txt || fail "posture not recorded"
    grep -q '"nvs-encrypted":false' out.txt || fail "posture rules not recorded"
    ok "$W" --port "$P" $(dev $D1) hello $D1
    ok "$PK" inventory --inventory keys/inventory.db show $D1
    n=$(grep -c 'device.connected' out.txt || true)
    [ "$n" -eq 1 ] || fail "expected one device.connected audit entry, found $n"
    ok "$PK" inventory --inventory keys/inventory.db verify-audit
    # D2 never connected: no presence.
    ok "$W" --port "$P" $OPER --get /api/devices/$D2
    grep -q '"last_seen":null' out.txt || fail "D2 should never have been seen"
    expect_metric_ge 'fleetkey_handshakes_total' 4
    expect_metric_ge 'fleetkey_messages_total{direction="in"}' 3
    stop_server
    ;;
refusals)
    # Certificates that must not get in, each made by pki with the property under test.
    ok "$PK" ca init --dir other --name other
    ok "$PK" ca issue --dir other --device $D1
    now=$(date +%s)
    # A leaf must lie inside the issuing CA's validity, which pki starts 5 minutes in the
    # past (clock skew): an expired certificate fits between that start and now.
    ca_start=$(date -d "$(openssl x509 -in pki/issuing.crt.pem -noout -startdate | cut -d= -f2)" +%s)
    ok "$PK" ca issue --dir pki --device $D2 --replace \
        --not-before @$((ca_start + 1)) --not-after @$((now - 2))
    cp pki/devices/$D2.chain.pem expired.chain.pem
    cp pki/devices/$D2.key.pem expired.key.pem
    ok "$PK" ca issue --dir pki --device $D2 --replace \
        --not-before @$((now + 86400)) --not-after @$((now + 86400 * 10))
    cp pki/devices/$D2.chain.pem future.chain.pem
    cp pki/devices/$D2.key.pem future.key.pem
    ok "$PK" ca issue --dir pki --device robot-0200000000ff
    start_server
    # No client certificate.
    refused_tls --port "$P" --ca $CA hello $D1
    # From another CA (same device id).
    refused_tls --port "$P" --ca $CA --cert other/devices/$D1.chain.pem \
        --key other/devices/$D1.key.pem hello $D1
    # Expired, then not yet valid.
    refused_tls --port "$P" --ca $CA --cert expired.chain.pem --key expired.key.pem hello $D2
    refused_tls --port "$P" --ca $CA --cert future.chain.pem --key future.key.pem hello $D2
    # Same, with TLS 1.2 (the server decides before the client finishes).
    refused_tls --tls-max 1.2 --port "$P" --ca $CA --cert expired.chain.pem \
        --key expired.key.pem hello $D2
    # Valid certificate, but the device is not in the inventory: HTTP 403 at the upgrade.
    ok "$W" --port "$P" $(dev robot-0200000000ff) --upgrade-status 403
    # TLS 1.1 offered: refused in the handshake (the client's own floor is lowered with
    # SECLEVEL=0 so that it really offers 1.1).
    if echo | openssl s_client -connect 127.0.0.1:"$P" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' \
        -cert pki/devices/$D1.chain.pem -key pki/devices/$D1.key.pem -CAfile $CA \
        >s11.txt 2>&1; then
        cat s11.txt >&2
        fail "TLS 1.1 handshake succeeded"
    fi
    for r in no_cert bad_chain expired not_yet_valid unknown_identity protocol_version; do
        expect_metric_ge "fleetkey_rejections_total{reason=\"$r\"}" 1
        expect_log "refused.*$r"
    done
    expect_metric_ge 'fleetkey_rejections_total{reason="expired"}' 2
    expect_log "handshake refused: bad_chain (depth [01] .*unable to get local issuer certificate"
    expect_log "handshake refused: expired (depth 0 .*certificate has expired"
    expect_log "handshake refused: not_yet_valid (depth 0 .*certificate is not yet valid"
    expect_log "robot-0200000000ff: WebSocket upgrade refused (403): device not in the inventory"
    expect_log "handshake refused: protocol_version"
    # The server is still serving.
    ok "$W" --port "$P" $(dev $D1) hello $D1
    stop_server
    ;;
revoke)
    start_server
    # D2 connects and stays connected across the CRL reloads.
    hold $D2 d2 wait-file go1 ping wait-file go2 ping
    D2_PID=$HELD_PID
    ok "$W" --port "$P" $(dev $D1) hello $D1
    # D1 connects again and stays: when the CRL revokes it, the server ends this connection
    # with 1008 at the reload (it was admitted under the old CRL).
    hold $D1 d1 expect-close 1008
    D1_PID=$HELD_PID
    # The inventory marks D2's certificate revoked (as `ca revoke --inventory` does for a
    # recorded credential) before any CRL says so: new upgrades are refused at once, with
    # 403 and reason revoked; the established D2 connection is not touched.
    fpr="sha256:$(openssl x509 -in pki/devices/$D2.crt.pem -outform DER | sha256sum | cut -c1-64)"
    sqlite3 keys/inventory.db "INSERT INTO credentials(device_id, kind, version, fingerprint,
        created_at, state) VALUES('$D2', 'mtls_cert', 1, '$fpr', '2026-01-01T00:00:00Z',
        'revoked')" || fail "sqlite3 insert"
    ok "$W" --port "$P" $(dev $D2) --upgrade-status 403
    expect_log "$D2: WebSocket upgrade refused (403): certificate revoked in the inventory"
    expect_metric_ge 'fleetkey_rejections_total{reason="revoked"}' 1
    # D3, whose certificate the inventory records, is connected when `ca revoke --inventory`
    # revokes it: the server reads the new audit row and closes it 1008 at once, before any
    # CRL is published.
    D3=robot-020000000003
    ok "$PK" generate --output keys/d3.json --mac 02:00:00:00:00:03
    ok "$PK" ca issue --dir pki --device $D3
    fpr3="sha256:$(openssl x509 -in pki/devices/$D3.crt.pem -outform DER | sha256sum | cut -c1-64)"
    sqlite3 keys/inventory.db "INSERT INTO credentials(device_id, kind, version, fingerprint,
        created_at, state) VALUES('$D3', 'mtls_cert', 1, '$fpr3', '2026-01-01T00:00:00Z',
        'active')" || fail "sqlite3 insert"
    hold $D3 d3 expect-close 1008
    D3_PID=$HELD_PID
    ok "$PK" ca revoke --dir pki --device $D3 --reason keyCompromise \
        --inventory keys/inventory.db
    wait "$D3_PID" || { cat d3.out d3.err >&2; fail "D3 was not closed 1008 on its revocation"; }
    expect_log "$D3: certificate revoked in the inventory: closing"
    ok "$PK" ca revoke --dir pki --device $D1 --reason keyCompromise \
        --inventory keys/inventory.db
    ok "$PK" ca crl --dir pki --out crl.pem.new
    mv crl.pem.new crl.pem
    # Reload on change (the server looks once a second): wait for it, bounded.
    wait_metric_ge 'fleetkey_crl_reloads_total{result="ok"}' 1 "CRL not reloaded"
    refused_tls --port "$P" $(dev $D1) hello $D1
    expect_metric_ge 'fleetkey_rejections_total{reason="revoked"}' 2
    expect_log "handshake refused: revoked (depth 0 .*certificate revoked"
    wait "$D1_PID" || { cat d1.out d1.err >&2; fail "D1's open connection was not closed 1008"; }
    expect_log "$D1: certificate revoked by the new CRL: closing"
    touch go1
    # SIGHUP reloads as well.
    kill -HUP "$SRV_PID"
    wait_metric_ge 'fleetkey_crl_reloads_total{result="ok"}' 2 "CRL not reloaded on SIGHUP"
    # A damaged CRL file is refused and the previous CRL stays in force.
    echo garbage >crl.pem.new
    mv crl.pem.new crl.pem
    wait_metric_ge 'fleetkey_crl_reloads_total{result="failed"}' 1 "damaged CRL not noticed"
    refused_tls --port "$P" $(dev $D1) hello $D1
    touch go2
    wait $D2_PID || { cat d2.out d2.err >&2; fail "D2's connection did not survive the reloads"; }
    [ "$(grep -c '"type":"pong"' d2.out)" -eq 2 ] || fail "D2 expected two pongs"
    ok "$W" --port "$P" $(dev $D2) --upgrade-status 403
    stop_server
    ;;
openssl)
    start_server
    # mTLS handshake and a raw WebSocket upgrade through openssl s_client.
    printf 'GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: fleetkey.v1\r\n\r\n' >upgrade.txt
    # s_client reads stdin to its end and then waits (-ign_eof) for the answer; timeout bounds it.
    timeout 10 openssl s_client -connect 127.0.0.1:"$P" -servername localhost -ign_eof \
        -CAfile $CA -verify_return_error -cert pki/devices/$D1.crt.pem \
        -key pki/devices/$D1.key.pem -cert_chain pki/devices/$D1.chain.pem \
        <upgrade.txt >s.txt 2>&1 || true
    grep -q 'HTTP/1.1 101 Switching Protocols' s.txt || { cat s.txt >&2; fail "no 101"; }
    grep -qi 'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=' s.txt ||
        fail "wrong Sec-WebSocket-Accept (RFC 6455 1.3 example)"
    grep -qi 'Sec-WebSocket-Protocol: fleetkey.v1' s.txt || fail "subprotocol not echoed"
    grep -q 'Verify return code: 0 (ok)' s.txt || fail "server certificate did not verify"
    # Both TLS versions complete.
    for v in -tls1_2 -tls1_3; do
        echo | timeout 10 openssl s_client -connect 127.0.0.1:"$P" $v -CAfile $CA \
            -cert pki/devices/$D1.chain.pem -key pki/devices/$D1.key.pem >sv.txt 2>&1 || true
        grep -q 'Verify return code: 0 (ok)' sv.txt || { cat sv.txt >&2; fail "$v handshake"; }
    done
    stop_server
    ;;
protocol)
    start_server --hello_timeout 2
    ok "$W" --port "$P" $(dev $D1) hello $D1 big 5000 expect-close 1009
    ok "$W" --port "$P" $(dev $D1) hello $D1 big 1000000 expect-close 1009
    ok "$W" --port "$P" $(dev $D1) hello $D1 send '{"type":"ping",' expect-close 1007
    ok "$W" --port "$P" $(dev $D1) hello $D1 send '[1,2]' expect-close 1007
    ok "$W" --port "$P" $(dev $D1) hello $D1 send "$(printf '{"type":"\377"}')" expect-close 1007
    ok "$W" --port "$P" $(dev $D1) hello $D1 binary expect-close 1003
    ok "$W" --port "$P" $(dev $D1) hello $D1 send '{"type":"frobnicate"}' expect error ping
    ok "$W" --port "$P" $(dev $D1) hello $D1 send "$(hello_json $D1)" expect-close 1008
    ok "$W" --port "$P" $(dev $D1) send '{"type":"ping"}' expect-close 1008
    ok "$W" --port "$P" $(dev $D1) send "$(hello_json $D2)" expect-close 1008
    # The hello deadline closes a silent connection with 1008.
    ok "$W" --port "$P" $(dev $D1) expect-close 1008
    grep -q 'no hello in time' out.txt || fail "hello timeout reason"
    # A scheduled close answered by the device: the server ends the connection and sends
    # nothing more (not an echo of the answer).
    ok "$W" --port "$P" $(dev $D1) expect-close 1008 answer-close expect-eof
    # Not answered: the server drops the connection itself (FK_SRV_CLOSE_WAIT, 5 s; the
    # bound leaves room for a loaded machine).
    ok "$W" --port "$P" --timeout 20 $(dev $D1) expect-close 1008 expect-eof
    # A fragmented message is reassembled (3 fragments, 3000 bytes of an invalid object).
    ok "$W" --port "$P" $(dev $D1) hello $D1 frag 3000 expect-close 1007
    expect_log "closing 1009 (message too big)"
    expect_log "closing 1007 (invalid payload): not JSON"
    expect_log "closing 1007 (invalid payload): not UTF-8"
    expect_log "closing 1008 (device_id is not the certificate's)"
    expect_metric_ge 'fleetkey_ws_closes_total{code="1009"}' 2
    expect_metric_ge 'fleetkey_ws_closes_total{code="1007"}' 4
    # Nothing else was affected: the server still serves.
    ok "$W" --port "$P" $(dev $D1) hello $D1 ping
    # Shutdown: close 1001 to a held device, which answers; then the connection ends.
    hold $D2 held expect-close 1001 answer-close expect-eof
    stop_server
    wait "$HELD_PID" || fail "held device: $(cat held.out held.err)"
    grep -q 'close 1001 server shutting down' held.out || fail "no 1001 at shutdown: $(cat held.out)"
    # A server-initiated request and its response (status_request = 1).
    start_server --status_request 1
    ok "$W" --port "$P" $(dev $D1) hello $D1 expect request \
        send '{"type":"response","id":"r-000001","ok":true,"body":{}}' \
        send '{"type":"response","id":"r-999999","ok":true}' ping
    grep -q '"type":"request","id":"r-000001","kind":"status","body":{}' out.txt ||
        fail "no status request: $(cat out.txt)"
    expect_log "$D1: response r-000001: ok"
    expect_metric_ge 'fleetkey_requests_total{outcome="answered"}' 1
    stop_server
    ;;
admin)
    start_server
    ok "$W" --port "$P" $(dev $D1) hello $D1
    ok "$W" --port "$P" $OPER --get /api/devices
    head -1 out.txt | grep -q '^200$' || fail "operator: /api/devices not 200"
    grep -q "\"id\":\"$D1\"" out.txt && grep -q "\"id\":\"$D2\"" out.txt || fail "device list"
    ok "$W" --port "$P" $OPER --get /api/devices/robot-0000000000aa
    head -1 out.txt | grep -q '^404$' || fail "unknown device not 404"
    ok "$W" --port "$P" --ca $CA --cert pki/mobiles/phone1.chain.pem \
        --key pki/mobiles/phone1.key.pem --get /api/devices
    head -1 out.txt | grep -q '^403$' || fail "mobile certificate not 403"
    ok "$W" --port "$P" $(dev $D1) --get /api/devices/$D1
    head -1 out.txt | grep -q '^403$' || fail "device certificate not 403"
    ok "$W" --port "$P" $(dev $D1) --get /healthz
    head -1 out.txt | grep -q '^200$' || fail "healthz"
    ok "$W" --port "$P" $OPER --get /nope
    head -1 out.txt | grep -q '^404$' || fail "unknown path not 404"
    metrics
    grep -q '^# TYPE fleetkey_rejections_total counter' metrics.txt || fail "metrics format"
    expect_log "mobile phone1: admin API refused (403)"
    stop_server
    ;;
fleetctl)
    echo 'correct horse battery staple' >pw.txt
    ok "$PK" export-p12 --dir pki --operator alice --password-file pw.txt --out alice.p12
    ok "$PK" export-p12 --dir pki --operator alice --password-file pw.txt \
        --out alice-legacy.p12 --legacy
    ok "$PK" export-p12 --dir pki --mobile phone1 --password-file pw.txt --out phone1.p12
    start_server
    ok "$W" --port "$P" $(dev $D1) hello $D1
    FC="$BIN/fleetctl --password-file pw.txt --server https://127.0.0.1:$P --ca $CA"
    for p in alice.p12 alice-legacy.p12; do
        ok $FC --p12 $p devices
        grep -q "^$D1 .* 1.2.3\$" out.txt || { cat out.txt >&2; fail "$p: D1 not listed as seen"; }
        grep -q "^$D2 " out.txt || fail "$p: D2 not listed"
    done
    ok $FC --p12 alice.p12 device $D1
    grep -q '"firmware_version":	"1.2.3"' out.txt || { cat out.txt >&2; fail "device $D1"; }
    # A mobile identity is refused by the admin API.
    if $FC --p12 phone1.p12 devices >out.txt 2>err.txt; then
        fail "mobile p12 read the admin API"
    fi
    grep -q 'server answered 403' err.txt || { cat err.txt >&2; fail "mobile: no 403"; }
    # Wrong password.
    echo 'wrong' >bad.txt
    if $BIN/fleetctl --p12 alice.p12 --password-file bad.txt --server https://127.0.0.1:$P \
        --ca $CA devices >out.txt 2>err.txt; then
        fail "wrong p12 password accepted"
    fi
    grep -q 'wrong password' err.txt || { cat err.txt >&2; fail "wrong password message"; }
    # Another CA for the server: fleetctl refuses the server.
    ok "$PK" ca init --dir other
    if $FC --p12 alice.p12 --ca other/ca-chain.pem devices >out.txt 2>err.txt; then
        fail "fleetctl accepted a server from another CA"
    fi
    stop_server
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok ($CASE)"
