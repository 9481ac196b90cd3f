#!/bin/sh
# provision-keys batch throughput (devices/s) for 10,000 devices with --jobs 1 and --jobs 2,
# against the baseline the issue names: the same per-device work for 200 devices done with
# the openssl command line in a shell loop (openssl rand -hex 32, openssl ecparam -genkey,
# openssl pkey -pubout -outform DER, a JSON manifest written with printf).
#
# Note what each side does per device. batch: 32-byte PSK, manifest, a 0x6000 NVS image,
# durable writes (one syncfs per chunk), an inventory row, credentials and a hash-chained
# audit entry; the OTA key is the fleet key (one P-256 key pair for the whole batch). The
# baseline: PSK, a P-256 key pair per device, the public DER, a manifest; no image, no
# inventory, no fsync. Wall-clock times include process start and CSV parsing.
# Usage: sh bench/bench_batch.sh BUILD_DIR   (run by bench/run)
set -eu
build=${1:-build-bench}
pk=$(cd "$build" && pwd)/bin/provision-keys
n=${FK_BENCH_DEVICES:-10000}
nb=${FK_BENCH_BASELINE:-200}
work=${TMPDIR:-/tmp}/fk-bench-batch.$$
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT INT TERM

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

awk -v n="$n" 'BEGIN {
    print "mac,name"
    for (i = 0; i < n; i++)
        printf "02:%02X:%02X:%02X:%02X:%02X,bench %d\n", int(i / 16777216) % 256,
            int(i / 65536) % 256, int(i / 256) % 256, i % 256, 0, i
}' >"$work/devices.csv"

for jobs in 1 2; do
    t0=$(now)
    "$pk" batch --csv "$work/devices.csv" --output-dir "$work/out$jobs" --jobs "$jobs" \
        --json >"$work/sum$jobs.json"
    t1=$(now)
    grep -q "\"minted\":$n," "$work/sum$jobs.json" || { echo "batch failed"; exit 1; }
    eval "r$jobs=\$(rate $n $t0 $t1)"
    rm -rf "$work/out$jobs"
done

# The same on tmpfs, when there is one: separates CPU cost from the file system's (inode
# allocation and writeback dominate on a busy ext4 disk).
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=/dev/shm/fk-bench-batch.$$
    trap 'rm -rf "$work" "$shm"' EXIT INT TERM
    for jobs in 1 2; do
        t0=$(now)
        "$pk" batch --csv "$work/devices.csv" --output-dir "$shm/out$jobs" --jobs "$jobs" \
            --json >"$work/shm$jobs.json"
        t1=$(now)
        eval "s$jobs=\$(rate $n $t0 $t1)"
        rm -rf "$shm/out$jobs"
    done
fi

mkdir -p "$work/base"
t0=$(now)
i=0
while [ $i -lt "$nb" ]; do
    id=$(printf 'robot-02%010X' $i)
    psk=$(openssl rand -hex 32)
    openssl ecparam -genkey -name prime256v1 -noout -out "$work/base/$id.key.pem" 2>/dev/null
    chmod 600 "$work/base/$id.key.pem"
    der=$(openssl pkey -in "$work/base/$id.key.pem" -pubout -outform DER | od -An -v -tx1 |
        tr -d ' \n')
    printf '{\n  "device_id": "%s",\n  "psk_hex": "%s",\n  "psk_identity": "%s",\n  "ota_public_key_der_hex": "%s",\n  "provisioned": false,\n  "provisioned_at": null\n}\n' \
        "$id" "$psk" "$id" "$der" >"$work/base/$id.json"
    i=$((i + 1))
done
t1=$(now)
rb=$(rate "$nb" "$t0" "$t1")

echo "batch --jobs 1: $r1 devices/s ($n devices)"
echo "batch --jobs 2: $r2 devices/s ($n devices)"
if [ -n "$shm" ]; then
    echo "batch on tmpfs: $s1 devices/s (--jobs 1), $s2 devices/s (--jobs 2)"
fi
echo "openssl CLI shell loop: $rb devices/s ($nb devices)"
awk -v a="$r1" -v b="$r2" -v c="$rb" 'BEGIN {
    printf "ratio batch/openssl: %.0fx (--jobs 1), %.0fx (--jobs 2)\n", a / c, b / c }'
