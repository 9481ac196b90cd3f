#!/bin/sh
# OTA delivery over the control channel (issue 7): a 1.5 MB signed app image pushed by
# fleetkey-server to a production robot-sim over mTLS wss (base64 chunks of 2048 bytes, one
# request/response each), verified (Secure Boot V2, ECDSA P-256), written to the inactive
# slot, otadata switched, reboot, confirmation by reconnecting.
# Baseline, in the same run on the same image and robot: `robot-sim ota --image`, the same
# device code fed from a local file (no network, no reboot). The ratio network / file says
# what the channel costs.
#   figures: seconds and MB/s for (a) the whole `fleetctl ota` (upload to the server, push,
#   verify, switch, reboot, confirm), (b) the file baseline; the ratio (a)/(b) of MB/s.
# usage: bench_ota_wss.sh BUILD_DIR    env: FK_BENCH_OTA_RUNS (3)
set -eu
B=$(cd "${1:-build-bench}" && pwd)/bin
RUNS=${FK_BENCH_OTA_RUNS:-3}
. "$(dirname "$0")/lib.inc"
bench_begin bench_ota_wss fleetkey-server fleetctl robot-sim provision-keys mkappimage
PK="$B/provision-keys"
RS="$B/robot-sim"
q() { "$@" >/dev/null 2>&1 || { echo "bench_ota_wss: failed: $*" >&2; exit 1; }; }
now() { date +%s.%N; }
# add FILE T0 T1: appends T1 - T0 seconds to FILE (summed by awk at the end; no bc needed)
add() { echo "$2 $3" | awk '{ printf "%.6f\n", $2 - $1 }' >>"$1"; }

q "$PK" ca init --dir pki --name bench
q "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
q "$PK" ca issue --dir pki --operator ops
echo 'bench passphrase' >pw.txt
q "$PK" export-p12 --dir pki --operator ops --password-file pw.txt --out ops.p12
q "$PK" ca crl --dir pki --out crl.pem
openssl ecparam -name prime256v1 -genkey -noout -out ota.pem 2>/dev/null
chmod 600 ota.pem
q "$PK" generate --output keys/device_001.json --mac 02:00:00:00:B0:01 --ca pki \
    --encrypt-nvs --ota-key ota.pem
ID=robot-02000000B001
cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_EXPECTED_HOST="localhost"
CFG
q "$RS" flash-image create --out robot.img --nvs keys/device_001.nvs.bin \
    --nvs-keys keys/device_001.nvs_keys.bin
q "$B/mkappimage" --version 1.0.0 --secure-version 1 v1.bin
q "$PK" sign --key ota.pem --output v1.s.bin v1.bin
q "$RS" ota --flash robot.img --sdkconfig prod.sdkconfig --image v1.s.bin
q "$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only --self-test pass
# 1.5 MB images (4 segments of 375,000 bytes), a new version for every run
r=1
while [ $r -le "$RUNS" ]; do
    q "$B/mkappimage" --version "2.0.$r" --secure-version 2 --segments 4 --segment-len 375000 \
        --seed $((r + 10)) "v$r.bin"
    q "$PK" sign --key ota.pem --output "v$r.s.bin" "v$r.bin"
    r=$((r + 1))
done
IMG=$(wc -c <v1.s.bin)
echo "image: $(wc -c <v1.bin) bytes of app, $IMG bytes signed (ECDSA P-256)"

# (b) baseline: the same device code from a file, on a copy of the robot
r=1
while [ $r -le "$RUNS" ]; do
    cp robot.img base.img
    t0=$(now)
    q "$RS" ota --flash base.img --sdkconfig prod.sdkconfig --image "v$r.s.bin" --quiet
    t1=$(now)
    add file.t "$t0" "$t1"
    r=$((r + 1))
done

# (a) over the channel
rm -f port
"$B/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
    --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
    --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
    >srv.out 2>srv.err </dev/null &
PIDS="$PIDS $!"
i=0
while [ ! -s port ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
P=$(cat port)
"$RS" --flash robot.img --sdkconfig prod.sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
    --run-ms 3600000 --wss-uri "wss://127.0.0.1:$P/ws" --wss-backoff-ms 100 \
    --quiet >rs.out 2>rs.err </dev/null &
PIDS="$PIDS $!"
i=0
while ! grep -q "welcomed" rs.err 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
r=1
while [ $r -le "$RUNS" ]; do
    t0=$(now)
    "$B/fleetctl" --p12 ops.p12 --password-file pw.txt --server "https://127.0.0.1:$P" \
        --ca pki/ca-chain.pem ota --device "$ID" --wait 600 --poll-ms 20 "v$r.s.bin" >ota$r.out 2>&1 ||
        { cat ota$r.out; echo "bench_ota_wss: update $r failed"; exit 1; }
    t1=$(now)
    add wss.t "$t0" "$t1"
    r=$((r + 1))
done
nsum=$(awk '{ s += $1 } END { print s }' wss.t)
fsum=$(awk '{ s += $1 } END { print s }' file.t)
echo "$IMG $RUNS $nsum $fsum" | awk '{
    mb = $1 / 1e6; n = $2; tn = $3 / n; tf = $4 / n;
    printf "over wss (fleetctl ota: upload, push, verify, switch, reboot, confirm): %.2f s per update, %.2f MB/s\n", tn, mb / tn;
    printf "baseline robot-sim ota from a file (verify, write, switch):          %.2f s per update, %.2f MB/s\n", tf, mb / tf;
    printf "ratio wss / file: %.2f (the channel'"'"'s cost: base64, TLS, one round trip per 2 KiB, reboot)\n", (mb / tn) / (mb / tf) }'
