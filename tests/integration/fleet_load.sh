#!/bin/sh
# Smoke run of bench/fleet_load (the fleet client of bench/bench_server.sh), so that it keeps
# working: 200 devices minted by `provision-keys batch --ca`, their credentials taken out of
# the NVS images (fleet_load prep), 200 WebSockets held from 2 processes and 2 source
# addresses, then the server restarted on the same port and every device back (--reconnect).
# Every wait is bounded; nothing asserts on elapsed time.
#
# usage: fleet_load.sh BIN_DIR TMP_DIR
set -eu

BIN=$1
T=$2
N=200
CASE=fleet_load
rm -rf "$T"
mkdir -p "$T"
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"

SRV_PID=""
CL=""
cleanup() {
    for p in $SRV_PID $CL; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM
. "$HERE/server_lib.sh" # fail, ok
CA=pki/ca-chain.pem

ok "$BIN/provision-keys" ca init --dir pki
ok "$BIN/provision-keys" ca issue --dir pki --server localhost --san IP:127.0.0.1
awk -v n=$N 'BEGIN { print "mac,name"
    for (i = 0; i < n; i++) printf "02:00:00:00:%02X:%02X,smoke %d\n", int(i / 256), i % 256, i }' \
    >devices.csv
ok "$BIN/provision-keys" batch --csv devices.csv --output-dir keys --ca pki --jobs 2
ok "$BIN/provision-keys" ca crl --dir pki --out crl.pem
ok "$BIN/fleet_load" prep --keys keys --out creds.bin
grep -q "^creds $N\$" out.txt || fail "prep: $(cat out.txt)"
[ "$(stat -c %a creds.bin)" = 600 ] || fail "creds.bin holds private keys: mode must be 0600"

# A damaged credentials file is refused, not read past its end.
head -c 1000 creds.bin >short.bin
if "$BIN/fleet_load" hold --port 1 --ca $CA --creds short.bin --conns $N >out.txt 2>err.txt; then
    fail "a truncated credentials file was accepted"
fi
grep -q "truncated\|holds" err.txt || fail "truncated credentials: $(cat err.txt)"

# start PORT: the server on PORT (0: the OS picks), waits for its port file.
start() {
    rm -f port
    "$BIN/fleetkey-server" --listen 127.0.0.1 --port "$1" --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca $CA --crl crl.pem --inventory keys/inventory.db --max_connections 400 \
        --hello_timeout 600 --ping_interval 600 --log_level debug 2>>srv.log &
    SRV_PID=$!
    i=0
    while [ ! -s port ]; do
        i=$((i + 1))
        [ $i -le 300 ] || fail "server did not start"
        kill -0 "$SRV_PID" 2>/dev/null || fail "server exited"
        sleep 0.1
    done
    P=$(cat port)
}
# wait_file FILE: bounded wait (120 s) while the client runs.
wait_file() {
    i=0
    while [ ! -s "$1" ]; do
        i=$((i + 1))
        [ $i -le 1200 ] || fail "no $1 from fleet_load: $(cat fl.out fl.err)"
        kill -0 "$CL" 2>/dev/null || fail "fleet_load exited: $(cat fl.out fl.err)"
        sleep 0.1
    done
}

start 0
"$BIN/fleet_load" hold --port "$P" --ca $CA --creds creds.bin --conns $N --procs 2 --addrs 2 \
    --inflight 8 --ready-file ready --storm-file storm --hold-file hold --reconnect \
    --timeout 300 >fl.out 2>fl.err &
CL=$!
wait_file ready
[ "$(cat ready)" = $N ] || fail "opened $(cat ready) of $N: $(cat fl.out fl.err)"
# Every device has its own identity, from the source addresses asked for.
ids=$(grep 'WebSocket open' srv.log | awk '{ print $(NF - 2) }' | sort -u | wc -l)
[ "$ids" -eq $N ] || fail "$ids distinct device ids opened, $N expected"
grep -q ' 127\.1\.0\.2[: ].*WebSocket open' srv.log || fail "no connection from 127.1.0.2"
kill "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=""
start "$P"
wait_file storm
touch hold
rc=0
wait "$CL" || rc=$?
CL=""
[ $rc -eq 0 ] || fail "fleet_load exit $rc: $(cat fl.out fl.err)"
grep -q "^reconnect storm: all $N back" fl.out || fail "no storm line: $(cat fl.out)"
grep -q "^open $N " fl.out || fail "not all open at the end: $(cat fl.out)"
grep -q "handshake refused\|upgrade refused" srv.log && fail "the server refused a device"
echo "fleet_load smoke: ok ($(head -1 fl.out))"
