#!/bin/sh
# provision-keys batch into SQLite and into PostgreSQL (issue 15): the same CSV of
# FK_BENCH_PG_DEVICES devices (default FK_BENCH_DEVICES, default 100,000), --encrypt-nvs,
# --jobs 2, once with the inventory in a SQLite file and once in a database of a throw-away
# PostgreSQL 15 cluster (tests/integration/pg_lib.sh: initdb + pg_ctl, unix socket only,
# default settings, fsync and synchronous_commit on). Printed: devices/s for each, the
# PostgreSQL/SQLite ratio, the time the main thread spent committing (--json commit_seconds),
# the chunk count and the CPU per device; and, in the same run, the baseline the issue names
# (bench_batch_baseline in lib.inc, the one bench_batch.sh runs: per device one process each
# of the openssl CLI and of nvs_partition_gen.py, or `provision-keys nvs encrypt` without
# ESP-IDF; the first FK_BENCH_BASELINE rows of the same CSV, default 200) with the ratio of
# each inventory's devices/s to it.
#
# Fair to both: the manifests and NVS images go to tmpfs (/dev/shm) when there is one, so the
# difference is the inventory; the SQLite file and the PostgreSQL data directory are both on
# the disk under $TMPDIR (default /tmp). The baseline's files go where the batch's go. About
# 30 KB of tmpfs per device and run.
# Usage: sh bench/bench_batch_pg.sh BUILD_DIR   (run by bench/run)
set -eu
build=${1:-build-bench}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.inc" # bench_devices_csv, bench_batch_baseline
pk=$(cd "$build" && pwd)/bin/provision-keys
n=${FK_BENCH_PG_DEVICES:-${FK_BENCH_DEVICES:-100000}}
nb=${FK_BENCH_BASELINE:-200}
[ "$nb" -le "$n" ] || nb=$n
work=${TMPDIR:-/tmp}/fk-bench-batch-pg.$$
out=$work/out
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    out=/dev/shm/fk-bench-batch-pg.$$
fi
rm -rf "$work" "$out"
mkdir -p "$work"
cleanup() {
    command -v fk_pg_stop >/dev/null && fk_pg_stop
    rm -rf "$work" "$out" "$out.base"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }

bench_devices_csv "$n" "$work/devices.csv"

# run NAME INVENTORY: one batch into a fresh output directory, its summary in $work/NAME.json
run() {
    rm -rf "$out"
    "$pk" batch --csv "$work/devices.csv" --output-dir "$out" --inventory "$2" --jobs 2 \
        --encrypt-nvs --json >"$work/$1.json"
    grep -q '"ok":true' "$work/$1.json" || { echo "batch $1 failed"; exit 1; }
    grep -q "\"minted\":$n," "$work/$1.json" || { echo "batch $1 minted the wrong count"; exit 1; }
}
show() {
    printf '%-11s %7.0f devices/s  %7.2f s, commit %6.2f s (%s chunks), %s us CPU/device\n' \
        "$1" "$(field "$work/$2.json" devices_per_second)" "$(field "$work/$2.json" seconds)" \
        "$(field "$work/$2.json" commit_seconds)" "$(field "$work/$2.json" chunks)" \
        "$(awk -v u="$(field "$work/$2.json" cpu_user_seconds)" \
            -v s="$(field "$work/$2.json" cpu_system_seconds)" -v n="$n" \
            'BEGIN { printf "%.0f", (u + s) * 1e6 / n }')"
}
# baseline: the issue's baseline on the first nb rows, its files beside the batch's output.
baseline() {
    rm -rf "$out"
    bench_batch_baseline "$pk" "$work/devices.csv" "$nb" "$out.base"
    rm -rf "$out.base"
    echo "baseline: $bench_base_name"
    echo "baseline: $bench_base_rate devices/s, $bench_base_cpu_us us CPU/device ($nb devices)"
}
# vs_base NAME LABEL: NAME's devices/s over the baseline's, and the baseline's CPU per device
# over NAME's (the load-independent figure).
vs_base() {
    awk -v a="$(field "$work/$1.json" devices_per_second)" -v b="$bench_base_rate" -v l="$2" \
        -v u="$(field "$work/$1.json" cpu_user_seconds)" -v n="$n" \
        -v s="$(field "$work/$1.json" cpu_system_seconds)" -v c="$bench_base_cpu_us" \
        'BEGIN { printf "ratio %s/baseline: %.0fx devices/s, %.0fx less CPU per device\n", l,
            a / b, c / ((u + s) * 1e6 / n) }'
}

echo "load average before: $(cat /proc/loadavg)"
run sqlite "$work/inventory.db"
"$pk" inventory --inventory "$work/inventory.db" verify-audit >/dev/null
pg_bin=${FK_PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$pg_bin/initdb" ] || ! command -v psql >/dev/null; then
    echo "batch into SQLite, $n devices, --encrypt-nvs --jobs 2"
    show sqlite sqlite
    echo "PostgreSQL run skipped: no $pg_bin/initdb or psql (apt install postgresql)"
    baseline
    vs_base sqlite SQLite
    exit 0
fi
fk_skip() {
    show sqlite sqlite
    echo "PostgreSQL run skipped: $*"
    baseline
    vs_base sqlite SQLite
    exit 0
}
. "$here/../tests/integration/pg_lib.sh"
fk_pg_start "$work/pg"
trap cleanup EXIT
fk_pg_createdb bench
uri=$(fk_pg_uri bench)
run pg "$uri"
"$pk" inventory --inventory "$uri" verify-audit >/dev/null
echo "batch, $n devices, --encrypt-nvs --jobs 2, output on $(df --output=fstype "$(dirname "$out")" | tail -1) (load average after: $(cat /proc/loadavg))"
show sqlite sqlite
show postgresql pg
awk -v a="$(field "$work/sqlite.json" devices_per_second)" \
    -v b="$(field "$work/pg.json" devices_per_second)" \
    'BEGIN { printf "ratio PostgreSQL/SQLite: %.2fx\n", b / a }'
baseline
vs_base sqlite SQLite
vs_base pg PostgreSQL
