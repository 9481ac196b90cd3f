#!/bin/sh
# fleetkey-server benchmark (issue 6, section 6), figures for the closing note:
#  1. full mTLS handshakes per second the server completes on one core (it is
#     single-threaded), TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 and TLS 1.3, P-256 everywhere,
#     no resumption, CRL checked; the same load against `openssl s_server` with the same
#     certificates, CRL and suite in the same run, and the ratio;
#     beside the bound `openssl speed` gives for the server's share of one handshake (1 ECDSA
#     P-256 sign, 2 ECDH P-256, 2 ECDSA P-256 verifies), measured in the same run;
#  2. idle device WebSocket connections held (issue 15: 100,000; capped by the descriptor
#     limits, see below), each a real inventory device with its own certificate, and the
#     server's resident memory per connection (VmRSS delta / connections). Target <= 16 KiB;
#  3. reconnect storm: the server is restarted (SIGTERM, close 1001 to everyone, new process on
#     the same port) and every device reconnects at once; the time until all are back.
# The fleet (N devices minted by `provision-keys batch --ca`, their certificates and keys
# taken out of the NVS images by `fleet_load prep`) is minted once on tmpfs and kept in
# BUILD_DIR/bench-fleet/N (CA, inventory, credentials file 0600); later runs reuse it.
# The load generator is server_load (bench/server_load.c, built with the tests): several
# worker processes for handshakes (the client does as much crypto as the server), one epoll
# loop for the idle connections; fleet_load (bench/fleet_load.c) holds the fleet. Both servers are single-threaded; besides the wall-clock
# rate the script reports handshakes per second of server CPU time (from /proc/PID/stat),
# which is what one core completes and does not depend on what the clients leave over on
# a shared machine. openssl s_server serves one connection at a time and does not set
# TCP_NODELAY, so its wall-clock rate is latency-bound; the per-CPU figure is the fair one.
#
# usage: bench_server.sh BUILD_DIR
#   env: FK_BENCH_SECONDS (5), FK_BENCH_CONNS (100000), FK_BENCH_WORKERS (4),
#        FK_BENCH_FLEET_TLS (1.3; 1.2 as robots), FK_BENCH_SKIP_HS (0)
set -eu

BD=$(cd "${1:-build-bench}" && pwd)
B=$BD/bin
S=${FK_BENCH_SECONDS:-5}
W=${FK_BENCH_WORKERS:-4}
N=${FK_BENCH_CONNS:-100000}
. "$(dirname "$0")/lib.inc"
bench_begin bench_server fleetkey-server server_load fleet_load provision-keys tls_floor

# Descriptors: the server needs one per connection (+64), so does the client (spread over
# processes). Raise the soft limit to the hard one; raising the hard limit needs
# CAP_SYS_RESOURCE, which a container usually lacks. No sysctl is changed.
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD" 2>/dev/null || true
ASKED=$N
if [ $((N + 64)) -gt "$HARD" ]; then
    N=$((HARD - 100))
    echo "bench_server: descriptor hard limit $HARD (ulimit -Hn; raising it needs CAP_SYS_RESOURCE):" \
        "$ASKED connections asked, $N held (one server process needs one descriptor each)"
fi
PROCS=$(((N + HARD - 201) / (HARD - 200)))

"$B/provision-keys" ca init --dir pki >/dev/null 2>&1
"$B/provision-keys" ca issue --dir pki --server localhost --san IP:127.0.0.1 >/dev/null 2>&1
"$B/provision-keys" generate --output keys/d1.json --mac 02:00:00:00:00:01 >/dev/null 2>&1
"$B/provision-keys" ca issue --dir pki --device robot-020000000001 >/dev/null 2>&1
"$B/provision-keys" ca crl --dir pki --out crl.pem >/dev/null 2>&1
CA=pki/ca-chain.pem
DEV="--ca $CA --cert pki/devices/robot-020000000001.chain.pem --key pki/devices/robot-020000000001.key.pem"
# What a robot sends: its leaf only (NVS mtls/client_cert); the chain file adds the issuing CA.
LEAF="--ca $CA --cert pki/devices/robot-020000000001.crt.pem --key pki/devices/robot-020000000001.key.pem"
# tls_floor (OpenSSL alone, the floor under any server on it): this server and this robot
FLOOR="--ca $CA --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem
    --client-cert pki/devices/robot-020000000001.crt.pem
    --client-key pki/devices/robot-020000000001.key.pem"

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
# hs_run PID PORT TLS OUT [CLIENT ARGS]: runs the handshake load (client certificate chain
# and P-256 unless CLIENT ARGS say otherwise); OUT gets the load's line plus the server's CPU
# seconds, so the rate per CPU-second of the server can be computed.
hs_run() {
    c0=$(cpu_ticks "$1")
    hs_pid=$1 hs_port=$2 hs_tls=$3 hs_out=$4
    shift 4
    "$B/server_load" hs --port "$hs_port" ${*:-$DEV} --seconds "$S" --workers "$W" \
        --tls "$hs_tls" >"$hs_out"
    c1=$(cpu_ticks "$hs_pid")
    echo "cpu $(awk -v a="$c0" -v b="$c1" -v t="$TCK" 'BEGIN { printf "%.2f", (b - a) / t }')" \
        >>"$hs_out"
}
# per_cpu OUT: handshakes per second of server CPU.
per_cpu() {
    awk '/^handshakes/ { n = $2 } /^cpu/ { c = $2 } END { if (c > 0) printf "%.0f", n / c; else print 0 }' "$1"
}
failed() { awk '{ print $4 }' "$1"; }

echo "bench_server: $(nproc) CPUs; $S s per run; $W client processes; $(openssl version);" \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. handshakes/s ---------------------------------------------------------------------
if [ "${FK_BENCH_SKIP_HS:-0}" = 0 ]; then
start_ours
hs_run "$OURS" "$P" 1.2 ours12.txt
hs_run "$OURS" "$P" 1.3 ours13.txt
hs_run "$OURS" "$P" 1.2 ours12leaf.txt $LEAF
hs_run "$OURS" "$P" 1.3 ours13leaf.txt $LEAF
hs_run "$OURS" "$P" 1.3 ours13x.txt $LEAF --groups X25519
stop_pid "$OURS"

# openssl s_server on a port of its own (the first free one of a few tries).
SP=""
for try in 1 2 3 4 5; do
    port=$((20000 + ($$ * 7 + try * 131) % 20000))
    openssl s_server -accept "127.0.0.1:$port" -cert pki/servers/localhost.chain.pem \
        -key pki/servers/localhost.key.pem -CAfile $CA -Verify 3 -verify_return_error \
        -crl_check -CRL crl.pem -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -groups P-256:X25519 \
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
hs_run "$SSL_PID" "$SP" 1.2 ssl12leaf.txt $LEAF
hs_run "$SSL_PID" "$SP" 1.3 ssl13leaf.txt $LEAF
hs_run "$SSL_PID" "$SP" 1.3 ssl13x.txt $LEAF --groups X25519
stop_pid "$SSL_PID"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
for v in 12 13 12leaf 13leaf 13x; do
    o=$(rate ours$v.txt)
    b=$(rate ssl$v.txt)
    oc=$(per_cpu ours$v.txt)
    bc=$(per_cpu ssl$v.txt)
    case $v in
    12) name="TLS 1.2" ;;
    13) name="TLS 1.3" ;;
    12leaf) name="TLS 1.2, leaf only (as a robot)," ;;
    13leaf) name="TLS 1.3, leaf only (as a robot)," ;;
    13x) name="TLS 1.3, leaf only, X25519 (not a robot: mbedTLS 2.28 has P-256 only)," ;;
    esac
    echo "$name mTLS P-256 full handshakes/s (wall clock, $W clients):" \
        "fleetkey-server $o (failed $(failed ours$v.txt)), openssl s_server $b" \
        "(failed $(failed ssl$v.txt)), ratio $(ratio "$o" "$b")"
    echo "$name handshakes per server CPU-second (one core):" \
        "fleetkey-server $oc, openssl s_server $bc, ratio $(ratio "$oc" "$bc")"
done

# The bound: the server's public-key work per full handshake (ECDHE-ECDSA, mTLS): 1 ECDSA
# sign (its CertificateVerify / ServerKeyExchange), 2 ECDH P-256 scalar multiplications (key
# share and shared secret), 2 ECDSA verifies (the client's certificate and CertificateVerify).
openssl speed -seconds 2 ecdsap256 ecdhp256 >speed.txt 2>/dev/null || true
# The floor under any server on this OpenSSL: its handshake alone (tls_floor --cpu: the server
# SSL's SSL_do_handshake over a socketpair, in one process: no TCP, no event loop, no
# WebSocket, no inventory), with the robot's leaf, with the CRL checked as OpenSSL does it
# (its signature verified in every handshake) and with no revocation check at all.
for v in 1.2 1.3; do
    # shellcheck disable=SC2086 # $FLOOR is a list of arguments
    "$B/tls_floor" $FLOOR --conns 3000 --cpu 1 --tls $v --crl crl.pem >floor$v.txt
    # shellcheck disable=SC2086
    "$B/tls_floor" $FLOOR --conns 3000 --cpu 1 --tls $v --crl none >floor${v}n.txt
done
fl() { sed -n 's/.* side \([0-9]*\) per CPU-second.*/\1/p' "$1"; }
awk -v o12="$(per_cpu ours12.txt)" -v o13="$(per_cpu ours13.txt)" \
    -v l12="$(per_cpu ours12leaf.txt)" -v l13="$(per_cpu ours13leaf.txt)" \
    -v x13="$(per_cpu ours13x.txt)" -v f12="$(fl floor1.2.txt)" -v f13="$(fl floor1.3.txt)" \
    -v n12="$(fl floor1.2n.txt)" -v n13="$(fl floor1.3n.txt)" '
    /ecdsa \(nistp256\)/ { sign = $(NF - 1); verify = $NF }
    /ecdh \(nistp256\)/ { ecdh = $NF }
    END {
        if (sign > 0 && verify > 0 && ecdh > 0) {
            b = 1 / (1 / sign + 2 / ecdh + 2 / verify)
            printf "openssl speed (same run): ecdsap256 sign %.0f/s, verify %.0f/s; ecdhp256 %.0f/s;" \
                " bound 1/(1/sign + 2/ecdh + 2/verify) = %.0f handshakes/s per core\n", sign, verify, ecdh, b
            printf "fleetkey-server per CPU-second against the bound: TLS 1.2 %.0f%%, TLS 1.3 %.0f%%;" \
                " leaf only (as a robot): TLS 1.2 %.0f%%, TLS 1.3 %.0f%%; X25519 TLS 1.3 %.0f%% (goal >= 50%%)\n",
                100 * o12 / b, 100 * o13 / b, 100 * l12 / b, 100 * l13 / b, 100 * x13 / b
            printf "OpenSSL alone (tls_floor: SSL_do_handshake only, leaf only, no TCP/loop/WebSocket)," \
                " per CPU-second: CRL checked TLS 1.2 %.0f (%.0f%%), TLS 1.3 %.0f (%.0f%%);" \
                " no revocation check TLS 1.2 %.0f (%.0f%%), TLS 1.3 %.0f (%.0f%%) of the bound\n",
                f12, 100 * f12 / b, f13, 100 * f13 / b, n12, 100 * n12 / b, n13, 100 * n13 / b
        } else print "openssl speed: no ecdsap256/ecdhp256 figures"
    }' speed.txt
fi

# ---- 2. the fleet: N idle device connections, memory ----------------------------------
FLEET=$BD/bench-fleet/$N
if [ ! -s "$FLEET/creds.bin" ]; then
    # Minted on tmpfs: the CA index fsync per certificate (79 devices/s on this disk) is free
    # there; only the CA, the inventory and the credentials file are kept.
    M=$(mktemp -d "${FK_BENCH_MINT_DIR:-/dev/shm}/fk_fleet.XXXXXX")
    PIDS="$PIDS" # nothing to stop; $M is removed below
    awk -v n="$N" 'BEGIN { print "mac,name"
        for (i = 0; i < n; i++) printf "02:%02X:%02X:%02X:%02X:%02X,fleet %d\n",
            int(i / 16777216) % 256, int(i / 65536) % 256, int(i / 256) % 256, i % 256, 15, i }' \
        >"$M/devices.csv"
    "$B/provision-keys" ca init --dir "$M/pki" >/dev/null 2>&1
    "$B/provision-keys" ca issue --dir "$M/pki" --server localhost --san IP:127.0.0.1 >/dev/null 2>&1
    "$B/provision-keys" ca issue --dir "$M/pki" --operator bench >/dev/null 2>&1 # for /metrics
    t0=$(date +%s.%N)
    "$B/provision-keys" batch --csv "$M/devices.csv" --output-dir "$M/keys" --ca "$M/pki" \
        --jobs 2 >"$M/batch.log" 2>&1 || { tail -3 "$M/batch.log"; rm -rf "$M"; exit 1; }
    t1=$(date +%s.%N)
    "$B/fleet_load" prep --keys "$M/keys" --out "$M/creds.bin" >/dev/null
    "$B/provision-keys" ca crl --dir "$M/pki" --out "$M/crl.pem" >/dev/null 2>&1
    rm -rf "$FLEET" && mkdir -p "$FLEET"
    cp -r "$M/pki" "$FLEET/pki"
    cp "$M/keys/inventory.db" "$M/crl.pem" "$FLEET/"
    cp -p "$M/creds.bin" "$FLEET/creds.bin.tmp" && mv "$FLEET/creds.bin.tmp" "$FLEET/creds.bin"
    awk -v n="$N" -v a="$t0" -v b="$t1" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
        printf "minted %d devices (batch --ca --jobs 2, tmpfs) in %.1f s: %.0f devices/s (load %s)\n",
            n, b - a, n / (b - a), l }' >"$FLEET/mint.txt"
    rm -rf "$M"
fi
echo "fleet: $(cat "$FLEET/mint.txt") [cache $FLEET]"
FCA=$FLEET/pki/ca-chain.pem
cp "$FLEET/inventory.db" fleet.db # the server may write to it; the cache stays as minted

# start_fleet [PORT]: fleetkey-server on the fleet's CA and inventory.
start_fleet() {
    rm -f port
    "$B/fleetkey-server" --listen 127.0.0.1 --port "${1:-0}" --port-file port \
        --cert "$FLEET/pki/servers/localhost.chain.pem" --key "$FLEET/pki/servers/localhost.key.pem" \
        --ca "$FCA" --crl "$FLEET/crl.pem" --inventory fleet.db --log_level error \
        --max_connections $((N + 16)) --hello_timeout 3600 --ping_interval 3600 2>>fsrv.log &
    OURS=$!
    PIDS="$PIDS $OURS"
    i=0
    while [ ! -s port ]; do
        i=$((i + 1))
        [ $i -le 600 ] || { tail fsrv.log; echo "bench_server: server did not start"; exit 1; }
        sleep 0.1
    done
    P=$(cat port)
}
rss() { awk '/^VmRSS/ { print $2 }' /proc/"$1"/status; }
# The fleet's TLS version: 1.3 by default; FK_BENCH_FLEET_TLS=1.2 is what robots on mbedTLS
# 2.28 negotiate (about 1 KiB less per connection on the server).
FTLS=${FK_BENCH_FLEET_TLS:-1.3}
start_fleet
# Warm up (first handshakes, inventory pages, allocator arenas) before the baseline.
"$B/fleet_load" hold --port "$P" --ca "$FCA" --creds "$FLEET/creds.bin" --conns 10 \
    --tls-max "$FTLS" --timeout 60 >/dev/null 2>&1 || true
sleep 1
rss0=$(rss "$OURS")
c0=$(cpu_ticks "$OURS")
rm -f ready storm hold
"$B/fleet_load" hold --port "$P" --ca "$FCA" --creds "$FLEET/creds.bin" --conns "$N" \
    --tls-max "$FTLS" --procs "$PROCS" --ready-file ready --storm-file storm --hold-file hold --reconnect \
    --timeout 3000 >fleet.txt 2>fleet.err &
CL=$!
PIDS="$PIDS $CL"
i=0
while [ ! -s ready ]; do
    i=$((i + 1))
    [ $i -le 24000 ] && kill -0 "$CL" 2>/dev/null || { echo "bench_server: fleet did not open"; break; }
    sleep 0.1
done
sleep 2
rss1=$(rss "$OURS")
c1=$(cpu_ticks "$OURS")
opened=$(cat ready 2>/dev/null || echo 0)
held=$(curl -s --cacert "$FCA" --cert "$FLEET/pki/operators/bench.chain.pem" \
    --key "$FLEET/pki/operators/bench.key.pem" "https://127.0.0.1:$P/metrics" 2>/dev/null |
    awk '$1 == "fleetkey_connections_open" { print $2 }')
echo "idle device WebSocket connections (TLS $FTLS): asked $ASKED, held $N: opened $opened" \
    "($PROCS client processes), server reports ${held:-?} open (load $(cut -d' ' -f1-3 /proc/loadavg))"
sed -n 1p fleet.txt
awk -v a="$rss0" -v b="$rss1" -v n="$opened" -v c0="$c0" -v c1="$c1" -v t="$TCK" 'BEGIN {
    if (n > 0) printf "server VmRSS %d KiB -> %d KiB: %.1f KiB per connection (target <= 16);" \
        " %.2f ms server CPU per connection opened (%.0f per CPU-second)\n",
        a, b, (b - a) / n, (c1 - c0) / t * 1000 / n, n / ((c1 - c0) / t + 1e-9) }'
# The floor under it: OpenSSL's own live heap per idle connection, server side, configured as
# fleetkey-server (tls_floor: counted through CRYPTO_set_mem_functions, 2,000 connections).
# shellcheck disable=SC2086 # $FLOOR is a list of arguments
"$B/tls_floor" $FLOOR --conns 2000 --tls "$FTLS" --crl crl.pem --sites 6 | sed 's/^/OpenSSL alone: /'

# ---- 3. reconnect storm ------------------------------------------------------------------
ts=$(date +%s.%N)
stop_pid "$OURS" # SIGTERM: close 1001 to every device, then the process exits
t0=$(date +%s.%N)
start_fleet "$P"
t1=$(date +%s.%N)
i=0
while [ ! -s storm ]; do
    i=$((i + 1))
    [ $i -le 24000 ] && kill -0 "$CL" 2>/dev/null || { echo "bench_server: storm did not end"; break; }
    sleep 0.1
done
t2=$(date +%s.%N)
touch hold
wait "$CL" 2>/dev/null || true
grep '^reconnect' fleet.txt || true
awk -v s="$ts" -v a="$t0" -v b="$t1" -v c="$t2" -v n="$N" 'BEGIN {
    printf "reconnect storm: old server took %.2f s to exit, the new one %.2f s to listen;" \
        " all %d devices back %.2f s after it listened\n", a - s, b - a, n, c - b }'
stop_pid "$OURS"
