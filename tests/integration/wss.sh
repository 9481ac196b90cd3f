#!/bin/sh
# Device wss client integration tests (issue 6, sections 3 and 5): robot-sim's wss client on
# real TCP sockets on 127.0.0.1 against `openssl s_server` and `fleetkey-server`.
#   sh wss.sh CASE BIN_DIR WORK_DIR
# CASE:
#   client_cert  s_server -Verify 1 -verify_return_error with our CA: the handshake completes
#                only because the device presents its certificate; the upgrade request
#                (GET /ws, Sec-WebSocket-Protocol: fleetkey.v1) reaches the server
#   nvs_creds    the same with the credentials in NVS (mtls/*) and none in sdkconfig
#   bad_frames   a hand-driven server: welcome, an unknown request kind (answered), then a
#                frame over the size limit: the device closes with 1009
#   masked_frame the same, then a masked frame: the device closes with 1002
#   server_close the same, then the server's close 1001: logged, connection ends
#   client_other s_server trusting another CA: it refuses the device's certificate, the
#                device logs the TLS failure (the control case of client_cert)
#   cn_only      server certificate with CN=localhost and no SAN: accepted (CN fallback)
#   san_over_cn  CN=localhost but a SAN naming another host: refused (no CN fallback)
#   wrong_host   server certificate for localhost, device expects fleet.example.com
#   other_ca     server certificate from another CA
#   expired      server certificate of our CA whose notAfter has passed
#   not_yet      server certificate of our CA whose notBefore is in the future
#   backoff      nothing listens: the client retries with growing delays, then gives up
#   server       robot-sim <-> fleetkey-server: connects, hello recorded in the inventory
# The device side must refuse each bad server and log the reason; every wait is a loop
# bounded by count; servers bind port 0 and print the port they got.
set -eu
case_=$1
bin=$2
work=$3
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cd "$work"

PK="$bin/provision-keys"
RS="$bin/robot-sim"
ID=robot-A1B2C3D4E5F6
. "$HERE/lib.sh" # PIDS, stop_all, wait_for, run, expect
trap stop_all EXIT

fail() {
    echo "FAIL [$case_]: $*" >&2
    for f in rs.err rs.out srv.out srv.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}

# wait_for FILE PATTERN [TRIES]: up to TRIES (default 150) x 0.1 s for PATTERN in FILE.

# A CA with a device certificate, and the device's sdkconfig from `provision-keys kconfig`
# (the seed's development path: CONFIG_MINITRAIN_* with the PEMs Kconfig-escaped).
"$PK" ca init --dir pki --name "WSS Test Fleet" >/dev/null 2>&1 || fail "ca init"
"$PK" ca issue --dir pki --device "$ID" >/dev/null 2>&1 || fail "ca issue --device"
"$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1 >/dev/null 2>&1 ||
    fail "ca issue --server"
"$RS" flash-image create --out robot.bin >/dev/null 2>&1 || fail "flash-image create"

# sdkconfig EXPECTED_HOST: the development sdkconfig for the device
sdkconfig() {
    "$PK" kconfig --device "$ID" --dir pki --wss-uri "wss://127.0.0.1:1/ws" \
        --expected-host "$1" --output sdkconfig >/dev/null 2>&1 || fail "kconfig"
}

# start_s_server CERT KEY [ARGS...]: TLS server on a free port; sets SPORT.
start_s_server() {
    cert=$1
    key=$2
    shift 2
    : >srv.out
    # s_server quits at the end of its stdin: give it a FIFO this shell holds open
    [ -p srv.in ] || mkfifo srv.in
    exec 3<>srv.in
    openssl s_server -accept 127.0.0.1:0 -cert "$cert" -key "$key" -naccept 1 "$@" \
        >srv.out 2>srv.err <srv.in &
    PIDS="$PIDS $!"
    wait_for srv.out "^ACCEPT" || fail "s_server did not start"
    SPORT=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' srv.out | head -n 1)
    [ -n "$SPORT" ] || fail "no s_server port"
}

# start_robot URI [ARGS...]: robot-sim (development build) with its wss client on URI.
start_robot() {
    uri=$1
    shift
    "$RS" --flash robot.bin --sdkconfig sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
        --run-ms 60000 --wss-uri "$uri" "$@" >rs.out 2>rs.err </dev/null &
    RPID=$!
    PIDS="$PIDS $RPID"
}

# refused PATTERN: the device logs "wss: refused: PATTERN" and never reports a connection.
refused() {
    wait_for rs.err "wss: refused: $1" || fail "device did not log 'wss: refused: $1'"
    if grep -q "wss: connected" rs.err; then
        fail "device reported a connection to a bad server"
    fi
    if grep -q "wss: hello sent" rs.err; then
        fail "device sent hello to a bad server"
    fi
}

case "$case_" in
client_cert)
    sdkconfig localhost
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem \
        -Verify 1 -verify_return_error -CAfile pki/ca-chain.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    wait_for srv.out "Sec-WebSocket-Protocol: fleetkey.v1" ||
        fail "no upgrade request reached the server"
    grep -q "^GET /ws HTTP/1.1" srv.out || fail "request line is not GET /ws"
    grep -q "^Sec-WebSocket-Version: 13" srv.out || fail "no Sec-WebSocket-Version: 13"
    grep -q "^Sec-WebSocket-Key: [A-Za-z0-9+/]\{22\}==" srv.out || fail "no 16-byte key"
    # s_server logs the verified client certificate's subject
    grep -q "CN *= *$ID" srv.out || fail "s_server saw no client certificate for $ID"
    grep -q "wss: refused" rs.err && fail "device refused a good server"
    ;;
nvs_creds)
    # the credentials in NVS (mtls/*, PEM blobs as a "file,binary" CSV row makes them) and
    # none in sdkconfig: NVS is where the client takes them from
    for kv in "ca_cert:pki/ca-chain.pem" "client_cert:pki/devices/$ID.crt.pem" \
        "client_key:pki/devices/$ID.key.pem"; do
        "$RS" nvs set --flash robot.bin --ns mtls --key "${kv%%:*}" --file "${kv#*:}" \
            >/dev/null 2>&1 || fail "nvs set ${kv%%:*}"
    done
    printf 'CONFIG_MINITRAIN_EXPECTED_HOST="localhost"\n' >sdkconfig
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem \
        -Verify 1 -verify_return_error -CAfile pki/ca-chain.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    wait_for srv.out "Sec-WebSocket-Protocol: fleetkey.v1" ||
        fail "no upgrade request reached the server"
    grep -q "CN *= *$ID" srv.out || fail "s_server saw no client certificate for $ID"
    grep -q "wss: .* as $ID, expecting server localhost (client cert from nvs, CA from nvs)" \
        rs.err || fail "credentials not taken from NVS"
    ;;
bad_frames | masked_frame | server_close)
    # s_server as a hand-driven WebSocket server: the script answers the upgrade with the
    # right accept key and sends welcome, then what the case is about.
    sdkconfig localhost
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem \
        -Verify 1 -verify_return_error -CAfile pki/ca-chain.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    wait_for srv.out "Sec-WebSocket-Protocol: fleetkey.v1" || fail "no upgrade request"
    key=$(sed -n 's/^Sec-WebSocket-Key: \([A-Za-z0-9+/=]*\).*/\1/p' srv.out | head -n 1)
    acc=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | openssl sha1 -binary |
        openssl base64)
    printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: fleetkey.v1\r\n\r\n' "$acc" >&3
    wait_for rs.err "wss: hello sent" || fail "device sent no hello after the upgrade"
    # text_frame JSON: one unmasked text frame (payload < 126 bytes) to the device
    text_frame() {
        printf '\201%b%s' "\\$(printf '%03o' ${#1})" "$1" >&3
    }
    text_frame '{"type":"welcome","device_id":"x","ping_interval":30,"max_message":4096}'
    wait_for rs.err "wss: welcomed by the server" || fail "welcome not taken"
    case "$case_" in
    bad_frames)
        # a request of an unknown kind is answered, never closed on
        text_frame '{"type":"request","id":"r-1","kind":"rotate","body":{}}'
        wait_for rs.err "request r-1 of unknown kind answered unsupported_kind" ||
            fail "unknown request kind not answered"
        # text frame with a 16-bit length of 4097, and a few payload bytes: 1009
        printf '\201\176\020\001xxxx' >&3
        wait_for rs.err "wss: closing (1009): message too big" || fail "no close 1009"
        ;;
    masked_frame)
        # RFC 6455 5.1: a client closes on a masked frame from the server: 1002
        printf '\201\201\001\002\003\004x' >&3
        wait_for rs.err "wss: closing (1002): masked frame from the server" ||
            fail "no close 1002"
        ;;
    server_close)
        # the server closes with 1001: the device logs it and answers the close
        printf '\210\006\003\351byeb' >&3
        wait_for rs.err "wss: server closed the connection: 1001 byeb" || fail "close not seen"
        ;;
    esac
    wait_for rs.err "giving up after 1 attempts" || fail "device kept the connection"
    ;;
client_other)
    sdkconfig localhost
    "$PK" ca init --dir pki2 --name "Other Fleet" >/dev/null 2>&1 || fail "ca init pki2"
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem \
        -Verify 1 -verify_return_error -CAfile pki2/ca-chain.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    refused "TLS handshake failed"
    grep -q "GET /ws" srv.out && fail "server took a request from an untrusted client"
    ;;
cn_only | san_over_cn)
    # Server certificates made by openssl from our issuing CA: CN=localhost and no
    # subjectAltName (the CN counts: accepted), or CN=localhost with a SAN naming another host
    # (the CN no longer counts: refused). RFC 6125 6.4.4.
    sdkconfig localhost
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >ext.cnf
    [ "$case_" = san_over_cn ] && printf 'subjectAltName=DNS:other.example.com\n' >>ext.cnf
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cn.key \
        -subj "/O=WSS Test Fleet/CN=localhost" -out cn.csr >/dev/null 2>&1 || fail "req"
    openssl x509 -req -in cn.csr -CA pki/issuing.crt.pem -CAkey pki/issuing.key.pem \
        -set_serial 0x1234 -days 2 -extfile ext.cnf -out cn.crt >/dev/null 2>&1 || fail "x509"
    openssl verify -CAfile pki/root.crt.pem -untrusted pki/issuing.crt.pem cn.crt >/dev/null ||
        fail "test certificate does not verify"
    start_s_server cn.crt cn.key -Verify 1 -verify_return_error -CAfile pki/ca-chain.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    if [ "$case_" = cn_only ]; then
        wait_for srv.out "Sec-WebSocket-Protocol: fleetkey.v1" ||
            fail "device refused a CN-only certificate naming localhost"
        grep -q "wss: refused" rs.err && fail "device refused a good CN-only certificate"
    else
        refused "host mismatch: the server certificate does not name localhost"
    fi
    ;;
wrong_host)
    sdkconfig fleet.example.com
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    refused "host mismatch: the server certificate does not name fleet.example.com"
    ;;
other_ca)
    sdkconfig localhost
    "$PK" ca init --dir pki2 --name "Other Fleet" >/dev/null 2>&1 || fail "ca init pki2"
    "$PK" ca issue --dir pki2 --server localhost >/dev/null 2>&1 || fail "issue pki2"
    start_s_server pki2/servers/localhost.crt.pem pki2/servers/localhost.key.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    refused "bad chain: the server certificate does not chain to our CA"
    ;;
expired | not_yet)
    sdkconfig localhost
    now=$(date +%s)
    if [ "$case_" = expired ]; then
        # inside the issuing CA's validity (ca init backdates it by a few minutes)
        nb=$((now - 120))
        na=$((now - 60))
        want="expired: the server certificate has expired"
    else
        nb=$((now + 86400))
        na=$((now + 2 * 86400))
        want="not yet valid"
    fi
    "$PK" ca issue --dir pki --server localhost --replace --not-before "@$nb" \
        --not-after "@$na" >/dev/null 2>issue.err || fail "ca issue (validity)"
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 1
    refused "$want"
    ;;
backoff)
    sdkconfig localhost
    # a port nothing listens on: bind it with s_server, then stop s_server
    start_s_server pki/servers/localhost.crt.pem pki/servers/localhost.key.pem
    stop_all
    start_robot "wss://127.0.0.1:$SPORT/ws" --wss-attempts 4 --wss-backoff-ms 50
    wait_for rs.err "giving up after 4 attempts" 300 || fail "client did not give up"
    [ "$(grep -c 'wss: connect to 127.0.0.1 port' rs.err)" -eq 4 ] || fail "not 4 attempts"
    # the delays grow: 50 ms base, doubling, with equal jitter -> [25,50] [50,100] [100,200]
    delays=$(sed -n 's/.*wss: reconnecting in \([0-9]*\) ms.*/\1/p' rs.err | tr '\n' ' ')
    set -- $delays
    [ $# -eq 3 ] || fail "expected 3 backoff delays, got: $delays"
    [ "$1" -ge 25 ] && [ "$1" -le 50 ] || fail "first delay $1 not in [25,50]"
    [ "$2" -ge 50 ] && [ "$2" -le 100 ] || fail "second delay $2 not in [50,100]"
    [ "$3" -ge 100 ] && [ "$3" -le 200 ] || fail "third delay $3 not in [100,200]"
    kill -0 "$RPID" 2>/dev/null || fail "robot-sim died after the client gave up"
    ;;
server)
    # A provisioned device in the inventory (provision-keys generate), its certificate, the
    # server certificate and a CRL; the device configured the development way (kconfig).
    D1=robot-020000000001
    "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01 >/dev/null 2>&1 ||
        fail "generate"
    "$PK" ca issue --dir pki --device "$D1" >/dev/null 2>&1 || fail "ca issue $D1"
    "$PK" ca issue --dir pki --device robot-0200000000ff >/dev/null 2>&1 || fail "ca issue ff"
    "$PK" ca crl --dir pki --out crl.pem >/dev/null 2>&1 || fail "ca crl"
    "$PK" kconfig --device "$D1" --dir pki --wss-uri "wss://127.0.0.1:1/ws" \
        --expected-host localhost --output sdkconfig >/dev/null 2>&1 || fail "kconfig"
    rm -f port
    "$bin/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
        --ping_interval 1 --status_request 1 >srv.out 2>srv.err </dev/null &
    PIDS="$PIDS $!"
    wait_for port "[0-9]" || fail "fleetkey-server did not start"
    P=$(cat port)
    start_robot "wss://127.0.0.1:$P/ws"
    wait_for rs.err "wss: welcomed by the server as $D1 (ping every 1 s)" ||
        fail "device was not welcomed"
    wait_for srv.err "$D1: hello" || fail "server did not log the hello"
    grep -q "$D1: hello, firmware robot-sim 0.1.0, development build" srv.err ||
        fail "server did not take the hello's firmware and build"
    # the server's status request (after welcome) is answered ok
    wait_for srv.err "$D1: response [^ ]*: ok" || fail "status request not answered ok"
    # keep-alive: the device pings every ping_interval (1 s here) and the server answers
    wait_for rs.err "wss: keep-alive answered" 300 || fail "no pong for the device's ping"
    kill -TERM "$RPID"
    wait "$RPID" || fail "robot-sim exit status $? after SIGTERM"
    grep -q "wss client stopped (stopped): 1 attempts, 1 connected, 1 welcomed, [1-9][0-9]* pings, [1-9][0-9]* pongs, 1 requests" \
        rs.err || fail "no ping/pong/request counted on the open connection"
    # recorded in the inventory: the server's audit entry for the first connection
    "$PK" inventory --inventory keys/inventory.db show "$D1" >inv.txt 2>&1 ||
        fail "inventory show"
    grep -q "device.connected *by fleetkey-server" inv.txt ||
        fail "no device.connected audit entry: $(cat inv.txt)"
    # a certificate of our CA for a device the inventory does not know: HTTP 403, backoff
    "$PK" kconfig --device robot-0200000000ff --dir pki --wss-uri "wss://127.0.0.1:1/ws" \
        --expected-host localhost --output sdkconfig >/dev/null 2>&1 || fail "kconfig ff"
    start_robot "wss://127.0.0.1:$P/ws" --wss-attempts 2 --wss-backoff-ms 50
    wait_for rs.err "giving up after 2 attempts" || fail "unknown device did not give up"
    [ "$(grep -c 'wss: refused: upgrade refused: HTTP 403' rs.err)" -eq 2 ] ||
        fail "unknown device not refused with 403 twice"
    grep -q "wss: hello sent" rs.err && fail "unknown device sent hello"
    ;;
*)
    echo "unknown case $case_" >&2
    exit 2
    ;;
esac
# robot-sim stops cleanly on SIGTERM (the wss thread joined, everything freed), and the
# sanitizer build reports nothing (leaks included).
if [ -n "${RPID:-}" ] && kill -0 "$RPID" 2>/dev/null; then
    kill -TERM "$RPID"
    wait "$RPID" || fail "robot-sim exit status $? after SIGTERM"
fi
if grep -q 'Sanitizer\|runtime error:' rs.err; then
    fail "sanitizer report in robot-sim's log"
fi
echo "PASS [$case_]"
