#!/bin/sh
# fleetkey-server benchmark (issue 6, section 6), figures for the closing note:
#  1. full mTLS handshakes per second the server completes on one core (it is
#     single-threaded), TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 and TLS 1.3, P-256 everywhere,
#     no resumption, CRL checked; the same load against `openssl s_server` with the same
#     certificates, CRL and suite in the same run, and the ratio;
#  2. idle device WebSocket connections held (default 10,000), and the server's resident
#     memory per connection (VmRSS delta / connections). Target <= 64 KiB.
# The load generator is server_load (bench/server_load.c, built with the tests): several
# worker processes for handshakes (the client does as much crypto as the server), one epoll
# loop for the idle connections. Both servers are single-threaded; besides the wall-clock
# rate the script reports handshakes per second of server CPU time (from /proc/PID/stat),
# which is what one core completes and does not depend on what the clients leave over on
# a shared machine. openssl s_server serves one connection at a time and does not set
# TCP_NODELAY, so its wall-clock rate is latency-bound; the per-CPU figure is the fair one.
#
# usage: bench_server.sh BUILD_DIR
#   env: FK_BENCH_SECONDS (5), FK_BENCH_CONNS (10000), FK_BENCH_WORKERS (4)
set -eu

B=$(cd "${1:-build-bench}" && pwd)/bin
S=${FK_BENCH_SECONDS:-5}
W=${FK_BENCH_WORKERS:-4}
N=${FK_BENCH_CONNS:-10000}
. "$(dirname "$0")/lib.inc"
bench_begin bench_server fleetkey-server server_load provision-keys

"$B/provision-keys" ca init --dir pki >/dev/null 2>&1
"$B/provision-keys" ca issue --dir pki --server localhost --san IP:127.0.0.1 >/dev/null 2>&1
"$B/provision-keys" generate --output keys/d1.json --mac 02:00:00:00:00:01 >/dev/null 2>&1
"$B/provision-keys" ca issue --dir pki --device robot-020000000001 >/dev/null 2>&1
"$B/provision-keys" ca crl --dir pki --out crl.pem >/dev/null 2>&1
CA=pki/ca-chain.pem
DEV="--ca $CA --cert pki/devices/robot-020000000001.chain.pem --key pki/devices/robot-020000000001.key.pem"

start_ours() {
    rm -f port
    "$B/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca $CA --crl crl.pem --inventory keys/inventory.db --log_level error \
        --max_connections $((N + 100)) --hello_timeout 3600 --ping_interval 3600 2>srv.log &
    OURS=$!
    PIDS="$PIDS $OURS"
    i=0
    while [ ! -s port ]; do
        i=$((i + 1))
        [ $i -le 100 ] || { cat srv.log; echo "bench_server: server did not start"; exit 1; }
        sleep 0.1
    done
    P=$(cat port)
}
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
rate() { # "handshakes N failed F seconds S" -> N/S
    awk '/^handshakes/ { printf "%.0f", $2 / $6 }' "$1"
}
# CPU time (user + system) of a process in clock ticks: fields 14 and 15 of /proc/PID/stat
# (the command name in field 2 has no spaces here).
cpu_ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }
TCK=$(getconf CLK_TCK)
# hs_run PID PORT TLS OUT: runs the handshake load; OUT gets the load's line plus the
# server's CPU seconds, so the rate per CPU-second of the server can be computed.
hs_run() {
    c0=$(cpu_ticks "$1")
    "$B/server_load" hs --port "$2" $DEV --seconds "$S" --workers "$W" --tls "$3" >"$4"
    c1=$(cpu_ticks "$1")
    echo "cpu $(awk -v a="$c0" -v b="$c1" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        >>"$4"
}
# per_cpu OUT: handshakes per second of server CPU.
per_cpu() {
    awk '/^handshakes/ { n = $2 } /^cpu/ { c = $2 } END { if (c > 0) printf "%.0f", n / c; else print 0 }' "$1"
}
failed() { awk '{ print $4 }' "$1"; }

echo "bench_server: $(nproc) CPUs; $S s per run; $W client processes; $(openssl version)"

# ---- 1. handshakes/s ---------------------------------------------------------------------
start_ours
hs_run "$OURS" "$P" 1.2 ours12.txt
hs_run "$OURS" "$P" 1.3 ours13.txt
stop_pid "$OURS"

# openssl s_server on a port of its own (the first free one of a few tries).
SP=""
for try in 1 2 3 4 5; do
    port=$((20000 + ($$ * 7 + try * 131) % 20000))
    openssl s_server -accept "127.0.0.1:$port" -cert pki/servers/localhost.chain.pem \
        -key pki/servers/localhost.key.pem -CAfile $CA -Verify 3 -verify_return_error \
        -crl_check -CRL crl.pem -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -groups P-256 \
        -no_ticket -quiet >ssl.log 2>&1 &
    SSL_PID=$!
    PIDS="$PIDS $SSL_PID"
    i=0
    # -quiet prints nothing when ready: wait until the port listens (ss), bounded.
    while [ $i -lt 30 ] && kill -0 "$SSL_PID" 2>/dev/null &&
        ! ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; do
        i=$((i + 1))
        sleep 0.1
    done
    if kill -0 "$SSL_PID" 2>/dev/null && ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; then
        SP=$port
        break
    fi
done
[ -n "$SP" ] || { cat ssl.log; echo "bench_server: openssl s_server did not start"; exit 1; }
hs_run "$SSL_PID" "$SP" 1.2 ssl12.txt
hs_run "$SSL_PID" "$SP" 1.3 ssl13.txt
stop_pid "$SSL_PID"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
for v in 12 13; do
    o=$(rate ours$v.txt)
    b=$(rate ssl$v.txt)
    oc=$(per_cpu ours$v.txt)
    bc=$(per_cpu ssl$v.txt)
    name=$([ $v = 12 ] && echo "TLS 1.2" || echo "TLS 1.3")
    echo "$name mTLS P-256 full handshakes/s (wall clock, $W clients):" \
        "fleetkey-server $o (failed $(failed ours$v.txt)), openssl s_server $b" \
        "(failed $(failed ssl$v.txt)), ratio $(ratio "$o" "$b")"
    echo "$name handshakes per server CPU-second (one core):" \
        "fleetkey-server $oc, openssl s_server $bc, ratio $(ratio "$oc" "$bc")"
done

# ---- 2. idle connections and memory ------------------------------------------------------
start_ours
# Warm up (first handshakes, inventory pages, allocator arenas) before the baseline.
"$B/server_load" idle --port "$P" $DEV --conns 10 --timeout 30 >/dev/null 2>&1 || true
sleep 1
rss0=$(awk '/^VmRSS/ { print $2 }' /proc/"$OURS"/status)
rm -f ready hold
"$B/server_load" idle --port "$P" $DEV --conns "$N" --ready-file ready --hold-file hold \
    --timeout 600 >idle.txt 2>idle.err &
CL=$!
PIDS="$PIDS $CL"
i=0
while [ ! -s ready ]; do
    i=$((i + 1))
    [ $i -le 6000 ] || { echo "bench_server: idle clients did not finish opening"; break; }
    kill -0 "$CL" 2>/dev/null || break
    sleep 0.1
done
sleep 1
rss1=$(awk '/^VmRSS/ { print $2 }' /proc/"$OURS"/status)
held=$(curl -s --cacert $CA --cert pki/devices/robot-020000000001.chain.pem \
    --key pki/devices/robot-020000000001.key.pem "https://127.0.0.1:$P/metrics" 2>/dev/null |
    awk '$1 == "fleetkey_connections_open" { print $2 }')
client_rss=$(awk '/^VmRSS/ { print $2 }' /proc/"$CL"/status 2>/dev/null || echo "?")
touch hold
wait "$CL" 2>/dev/null || true
opened=$(cat ready 2>/dev/null || echo 0)
echo "idle WebSocket connections: asked $N, opened $opened, server reports ${held:-?} open"
awk -v a="$rss0" -v b="$rss1" -v n="${held:-$opened}" -v c="$client_rss" 'BEGIN {
    if (n > 0) printf "server VmRSS %d KiB -> %d KiB: %.1f KiB per connection (target <= 64)\n",
        a, b, (b - a) / n;
    printf "client VmRSS while holding them: %s KiB\n", c }'
stop_pid "$OURS"
