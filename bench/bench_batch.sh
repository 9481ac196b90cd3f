#!/bin/sh
# provision-keys batch throughput (issue 19): FK_BENCH_DEVICES devices (default 100,000),
# encrypted NVS (--encrypt-nvs), --jobs 1 and --jobs 2, output on the disk and on tmpfs
# (/dev/shm), each with devices/s, the jobs-2/jobs-1 ratio, the time the main thread spent
# committing (--json commit_seconds), how files were made durable, and peak RSS (--json
# max_rss_kib) for 10,000 and for FK_BENCH_DEVICES rows. Beside it, in the same run, the
# baseline the issue names on the same CSV (its first FK_BENCH_BASELINE rows, default 200):
# per device one process each of the openssl CLI (PSK, manifest hash) and of ESP-IDF's
# nvs_partition_gen.py encrypt (FK_NVS_PARTITION_GEN=path, when python3 can load it), or of
# `provision-keys nvs encrypt` when it is not there; the bench says which.
#
# What each side does per device. batch: 32-byte PSK, manifest, a 0x6000 NVS image and its
# nvs_keys image (AES-256-XTS), three files made durable per chunk, an inventory row,
# credentials and a hash-chained audit entry. Baseline: the same PSK, keys, image and
# manifest, no inventory, no fsync. Wall-clock times include process start and CSV parsing.
#
# The machine is usually shared: the load average is printed with the figures. Output
# directories on disk are removed only at the end: ext4 without a journal scans recently
# deleted inodes when it allocates new ones, so deleting many files (a run's 300,000, a test
# suite's) in the minutes before a disk run slows that run down, up to 5x (bench/README.md).
# Disk space: about 30 KB per device and run (21 GB on disk for the four batch and the three
# fs_bound runs of 100,000 devices).
# Beside each pair, bench/fs_bound makes the same files the same way without minting (no
# crypto, no SQLite): the file system's and the disk's own bound for 1 and 2 threads (and 4
# on disk), and the share of it batch reaches.
# Each run also counts the CPU that kernel threads took meanwhile (bench_kthreads: on disk the
# flusher threads writing the run's files back), and for --jobs 1 the cores it kept busy in
# all, U: its process plus those threads. Two cores give two jobs at most 2/U times one job's
# rate at the same CPU per device, the ceiling printed beside the ratio (bench/README.md,
# round 6). Each medium runs --jobs 1, 2, 2, 1 and the ratio is that of the two means.
# Usage: sh bench/bench_batch.sh BUILD_DIR   (run by bench/run)
set -eu
. "$(dirname "$0")/lib.inc" # bench_devices_csv, bench_batch_baseline, bench_kthreads
build=${1:-build-bench}
pk=$(cd "$build" && pwd)/bin/provision-keys
fsb=$(cd "$build" && pwd)/bin/fs_bound
n=${FK_BENCH_DEVICES:-100000}
nb=${FK_BENCH_BASELINE:-200}
small=10000
[ "$small" -le "$n" ] || small=$n
work=${TMPDIR:-/tmp}/fk-bench-batch.$$
shm=""
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=/dev/shm/fk-bench-batch.$$
fi
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work" ${shm:+"$shm"}' EXIT INT TERM

# field JSON NAME -> the value of "NAME" in the one-line --json summary
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }

bench_devices_csv "$n" "$work/devices.csv"
head -n $((small + 1)) "$work/devices.csv" >"$work/small.csv"

# run NAME CSV OUTDIR JOBS: one batch, its summary in $work/NAME.json
# $work/NAME.kth: the CPU seconds kernel threads took meanwhile (bench_kthreads).
run() {
    bench_kthreads "$work/k0"
    t0=$(date +%s%N)
    "$pk" batch --csv "$2" --output-dir "$3" --jobs "$4" --encrypt-nvs --json >"$work/$1.json"
    t1=$(date +%s%N)
    bench_kthreads "$work/k1"
    echo "$(((t1 - t0) / 1000000))" >"$work/$1.ms" # the process's wall time, start-up included
    grep -q '"ok":true' "$work/$1.json" || { echo "batch $1 failed"; exit 1; }
    cut -d' ' -f1 /proc/loadavg >"$work/$1.load" # 1-minute load average right after the run
    bench_kthreads_delta "$work/k0" "$work/k1" >"$work/$1.kth"
}

# sizes_of DIR -> "SUFFIX=SIZE ..." of the files batch wrote for the CSV's first device
sizes_of() { (cd "$1" && for f in robot-020000000000.*; do
    printf '%s=%s ' "${f#robot-020000000000.}" "$(stat -c %s "$f")"; done); }
# bound NAME DIR JOBS: the same files made the same way by fs_bound (no crypto, no SQLite)
bound() {
    bench_kthreads "$work/k0"
    # shellcheck disable=SC2086 # $sizes is a list of arguments
    "$fsb" "$2" "$n" "$3" 2048 $sizes >"$work/$1.bound"
    bench_kthreads "$work/k1"
    bench_kthreads_delta "$work/k0" "$work/k1" >"$work/$1.bkth"
}

# room: before each measured run, about one run's worth of memory (32 KB per device) is
# written to tmpfs and freed again, so that the run finds free pages instead of reclaiming
# other programs' page cache in its own allocations (bench/README.md, round 5: tmpfs --jobs 1
# at 54 us of system time per device when it started with the page cache full of a test
# suite's files, 28-31 us with free pages).
room() {
    [ -n "$shm" ] || return 0
    dd if=/dev/zero of="$shm/room" bs=32k count="$n" status=none 2>/dev/null || true
    rm -f "$shm/room"
}

echo "load average before: $(cat /proc/loadavg)"
# tmpfs first: after a disk run the kernel is still writing back its 3 GB of page cache (the
# flusher threads take CPU from the next run) and 600,000 more cached pages are resident.
# Each disk run starts after a sync for the same reason: it pays for its own writes only.
# Each batch run is followed by fs_bound with as many threads, so that the two see the file
# system in the same state (see "recently deleted" above: it changes within minutes).
if [ -n "$shm" ]; then
    mkdir -p "$shm"
    room
    run shm1 "$work/devices.csv" "$shm/out" 1
    sizes=$(sizes_of "$shm/out")
    rm -rf "$shm/out"
    room
    bound shm1 "$shm/fsb" 1
    rm -rf "$shm/fsb"
    room
    run shm2 "$work/devices.csv" "$shm/out" 2
    rm -rf "$shm/out"
    room
    bound shm2 "$shm/fsb" 2
    rm -rf "$shm/fsb"
    room
    run shm2b "$work/devices.csv" "$shm/out" 2
    rm -rf "$shm/out"
    room
    run shm1b "$work/devices.csv" "$shm/out" 1
    rm -rf "$shm/out"
    run small "$work/small.csv" "$shm/out" 2
    rm -rf "$shm/out"
fi
sync
room
run disk1 "$work/devices.csv" "$work/disk1" 1
[ -n "${sizes:-}" ] || sizes=$(sizes_of "$work/disk1")
sync
room
bound disk1 "$work/fsb1" 1
sync
room
run disk2 "$work/devices.csv" "$work/disk2" 2
sync
room
bound disk2 "$work/fsb2" 2
sync
room
run disk2b "$work/devices.csv" "$work/disk2b" 2
sync
room
run disk1b "$work/devices.csv" "$work/disk1b" 1
sync
room
bound disk4 "$work/fsb4" 4 # does more threads help the file system at all?
[ -n "$shm" ] || run small "$work/small.csv" "$work/small" 2
load=$(cat /proc/loadavg)
# The disk output (600,000 files for 100,000 devices) is removed by the exit trap, after the
# figures: removing it takes minutes on a loaded machine and would slow the baseline's own
# file creation (recently deleted inodes, see above).

# The baseline: one process per step and device, on the disk like the batch.
bench_batch_baseline "$pk" "$work/devices.csv" "$nb" "$work/base"
rb=$bench_base_rate

# CPU per device (user + system, all threads, CSV parsing included): unlike devices/s it
# hardly depends on the machine's load, so it is the figure to compare across runs.
cpu_us() { awk -v u="$(field "$work/$1.json" cpu_user_seconds)" \
    -v s="$(field "$work/$1.json" cpu_system_seconds)" -v n="$(field "$work/$1.json" minted)" \
    'BEGIN { printf "%.0f us CPU/device (user %.0f, sys %.0f)", (u + s) * 1e6 / n, u * 1e6 / n, s * 1e6 / n }'; }
# The single SQLite writer's CPU per device (--json commit_cpu_seconds): with the workers'
# CPU w and this c, --jobs 2 / --jobs 1 is at most 2w / (w + c) on two cores (README).
writer_us() { awk -v c="$(field "$work/$1.json" commit_cpu_seconds)" \
    -v n="$(field "$work/$1.json" minted)" 'BEGIN { printf "writer %.1f us/device", c * 1e6 / n }'; }
# kth_us FILE N: the kernel threads' CPU per device during a run (FILE: its bench_kthreads
# delta; write-back, mostly)
kth_us() { awk -v k="$(cat "$1")" -v n="$2" \
    'BEGIN { printf "kernel threads %.1f us/device", k * 1e6 / n }'; }
show() { # show LABEL NAME
    printf '%-22s %7.0f devices/s  %6.2f s, commit %5.2f s (%s, %s chunks, last %s), peak RSS %s KiB, %s, %s, %s, load %s\n' \
        "$1" "$(field "$work/$2.json" devices_per_second)" "$(field "$work/$2.json" seconds)" \
        "$(field "$work/$2.json" commit_seconds)" "$(field "$work/$2.json" durability)" \
        "$(field "$work/$2.json" chunks)" "$(field "$work/$2.json" chunk)" \
        "$(field "$work/$2.json" max_rss_kib)" "$(cpu_us "$2")" "$(writer_us "$2")" \
        "$(kth_us "$work/$2.kth" "$(field "$work/$2.json" minted)")" "$(cat "$work/$2.load")"
}
# ceiling LABEL NAME1 NAME2: the cores --jobs 1 kept busy, its process's CPU (worker and
# writer, start-up included) plus the kernel threads', over the process's wall time. At U
# cores for one job, two cores give two jobs at most 2/U times its rate, as long as a device
# costs as much CPU with two jobs as with one (bench/README.md, round 6): the part of the
# second core that one job already uses is not there to gain.
ceiling() {
    awk -v label="$1" -v u="$(field "$work/$2.json" cpu_user_seconds)" \
        -v s="$(field "$work/$2.json" cpu_system_seconds)" -v k="$(cat "$work/$2.kth")" \
        -v ms="$(cat "$work/$2.ms")" -v r="$(ratio "$2" "$3")" 'BEGIN {
        p = (u + s) / (ms / 1000); kt = k / (ms / 1000); c = p + kt
        printf "%s--jobs 1 kept %.2f cores busy (its process %.2f, kernel threads %.2f): at that CPU per device two cores allow %.2fx; --jobs 2 reached %.2fx\n",
            label, c, p, kt, 2 / c, r }'
}
ratio() { awk -v a="$(field "$work/$1.json" devices_per_second)" \
    -v b="$(field "$work/$2.json" devices_per_second)" 'BEGIN { printf "%.2f", b / a }'; }
# pairs ONE TWO TWO_AGAIN ONE_AGAIN: each medium runs --jobs 1, 2, 2, 1 (A B B A), so that a
# drift of the machine during the set (memory handed back to the host, the disk's state, see
# round 5) weighs on both alike: the ratio of the two means, and of each pair.
pairs() { awk -v a="$(field "$work/$1.json" devices_per_second)" \
    -v b="$(field "$work/$2.json" devices_per_second)" \
    -v c="$(field "$work/$3.json" devices_per_second)" \
    -v d="$(field "$work/$4.json" devices_per_second)" 'BEGIN {
    printf "%.2fx (mean of the runs 1 2 2 1: %.0f and %.0f devices/s; first pair %.2fx, second %.2fx)",
        (b + c) / (a + d), (a + d) / 2, (b + c) / 2, b / a, c / d }'; }

echo "batch, $n devices, --encrypt-nvs (load average after: $load)"
show "disk  --jobs 1:" disk1
show "disk  --jobs 2:" disk2
show "disk  --jobs 2 again:" disk2b
show "disk  --jobs 1 again:" disk1b
echo "disk  --jobs 2 / --jobs 1: $(pairs disk1 disk2 disk2b disk1b)"
ceiling "disk: " disk1 disk2
ceiling "disk: " disk1b disk2b
if [ -n "$shm" ]; then
    show "tmpfs --jobs 1:" shm1
    show "tmpfs --jobs 2:" shm2
    show "tmpfs --jobs 2 again:" shm2b
    show "tmpfs --jobs 1 again:" shm1b
    echo "tmpfs --jobs 2 / --jobs 1: $(pairs shm1 shm2 shm2b shm1b)"
    ceiling "tmpfs: " shm1 shm2
    ceiling "tmpfs: " shm1b shm2b
fi
# The physical bound: the file system and the disk alone, for exactly these files
bshow() { # bshow LABEL NAME1 NAME2 [NAME4]
    r1=$(cut -d' ' -f1 "$work/$2.bound") r2=$(cut -d' ' -f1 "$work/$3.bound")
    echo "$1 file system alone (fs_bound: the same $(echo "$sizes" | wc -w) files per device, no crypto, no SQLite):"
    echo "    1 thread:  $(cat "$work/$2.bound"), $(kth_us "$work/$2.bkth" "$n")"
    echo "    2 threads: $(cat "$work/$3.bound"), $(kth_us "$work/$3.bkth" "$n")"
    [ -z "${4:-}" ] || echo "    4 threads: $(cat "$work/$4.bound"), $(kth_us "$work/$4.bkth" "$n")"
    awk -v r1="$r1" -v r2="$r2" -v b1="$(field "$work/$2.json" devices_per_second)" \
        -v b2="$(field "$work/$3.json" devices_per_second)" 'BEGIN {
        printf "    bound 2 threads / 1 thread: %.2fx; batch reaches %.0f%% (--jobs 1) and %.0f%% (--jobs 2) of it\n",
            r2 / r1, 100 * b1 / r1, 100 * b2 / r2 }'
}
bshow "disk: " disk1 disk2 disk4
[ -z "$shm" ] || bshow "tmpfs:" shm1 shm2
echo "peak RSS: $(field "$work/small.json" max_rss_kib) KiB for $small rows," \
    "$(field "$work/disk2.json" max_rss_kib) KiB for $n rows (--jobs 2)"
echo "baseline: $bench_base_name"
echo "baseline: $rb devices/s, $bench_base_cpu_us us CPU/device ($nb devices)"
awk -v a="$(field "$work/disk1.json" devices_per_second)" \
    -v b="$(field "$work/disk2.json" devices_per_second)" -v c="$rb" 'BEGIN {
    printf "ratio batch/baseline (disk): %.0fx (--jobs 1), %.0fx (--jobs 2)\n", a / c, b / c }'
