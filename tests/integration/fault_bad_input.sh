#!/usr/bin/env bash
# Bad input at the boundaries the other tests leave open (issue 15, "Reliability"): each is
# refused with an error that names the file and the line or field, exit non-zero, and loses
# nothing: the good files already there stay byte for byte as they were.
#   bash fault_bad_input.sh BIN_DIR TMP_DIR
#   1. a malformed CSV row against an existing fleet: batch names file:line: column, and the
#      fleet (manifests, NVS images, keys, inventory) is unchanged;
#   2. a truncated manifest of a recorded device: batch names the device and the manifest and
#      re-mints nothing; kconfig names the manifest and writes no output;
#   3. a truncated NVS image (and nvs_keys image): robot-sim flash-image create names the file,
#      its size and what it expected; an existing flash image of that name is unchanged and no
#      temporary file is left; robot-sim --fleet refuses such an identity by name.
# Covered elsewhere (docs/server.md, "Fault campaign", lists them): CSV rows in batch/
# csv_errors.sh, damaged NVS pages in nvs_cli.sh, oversized wss frames in server.sh and wss.sh.
set -euo pipefail
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/skip.sh"
for t in provision-keys robot-sim; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # fail, run, expect
PK="$B/provision-keys"
RS="$B/robot-sim"
sums() { (cd keys && sha256sum ./*) >"$1"; }

printf 'mac,name\n02:00:00:00:00:01,a\n02:00:00:00:00:02,b\n' >devices.csv
run 0 mint "$PK" batch --csv devices.csv --output-dir keys --encrypt-nvs
sums good.sha

# 1. A malformed row in the CSV of an existing fleet.
printf 'mac,name\n02:00:00:00:00:01,a\n02:00:00:00:00:02,b\n02:00:00:00:00:0G,c\n' >bad.csv
run 1 bad_csv "$PK" batch --csv bad.csv --output-dir keys --encrypt-nvs
expect bad_csv.err "bad.csv:4: mac: expected AA:BB:CC:DD:EE:FF.*found '02:00:00:00:00:0G'"
sums now.sha
cmp -s good.sha now.sha || fail "a refused CSV changed the fleet"

# 2. A truncated manifest of a recorded device.
M=keys/robot-020000000002.json
cp "$M" manifest.save
head -c 200 manifest.save >"$M"
cp "$M" manifest.cut
sums cut.sha
run 1 cut_manifest "$PK" batch --csv devices.csv --output-dir keys --encrypt-nvs
expect cut_manifest.err "devices.csv:3: robot-020000000002 .*manifest $M differs"
expect cut_manifest.err "never minted again"
sums now.sha
cmp -s cut.sha now.sha || fail "batch changed files after refusing a damaged manifest"
run 1 kconfig_cut "$PK" kconfig --keys "$M" --dir pki --output kconfig.out
expect kconfig_cut.err "$M: not valid JSON"
[ ! -e kconfig.out ] || fail "kconfig wrote output from a damaged manifest"
cp manifest.save "$M"
run 0 rerun "$PK" batch --csv devices.csv --output-dir keys --encrypt-nvs
sums now.sha
cmp -s good.sha now.sha || fail "the restored fleet differs"

# 3. Truncated NVS images.
N1=keys/robot-020000000001
run 0 img "$RS" flash-image create --out robot.img --nvs $N1.nvs.bin --nvs-keys $N1.nvs_keys.bin
cp robot.img robot.good
head -c 5000 $N1.nvs.bin >nvs.cut
run 2 img_cut "$RS" flash-image create --out robot.img --nvs nvs.cut --nvs-keys $N1.nvs_keys.bin
expect img_cut.err "nvs.cut: 5000 bytes: expected an nvs image of whole 4096-byte pages"
head -c 100 $N1.nvs_keys.bin >keys.cut
run 2 keys_cut "$RS" flash-image create --out robot.img --nvs $N1.nvs.bin --nvs-keys keys.cut
expect keys_cut.err "keys.cut: 100 bytes: expected an nvs_keys image of whole 4096-byte pages"
cmp -s robot.img robot.good || fail "a refused flash-image create changed the existing image"
[ ! -e robot.img.tmp ] || fail "temporary image left behind"
mkdir fleet
cp keys/robot-* fleet/
cp nvs.cut fleet/robot-020000000002.nvs.bin
printf 'CONFIG_MINITRAIN_EXPECTED_HOST="localhost"\n' >sdkconfig
set +e
timeout 60 "$RS" --fleet 2 --fleet-keys fleet --sdkconfig sdkconfig --wss-uri wss://127.0.0.1:1/ws \
    --run-ms 1000 >fleet.out 2>fleet.err
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "robot-sim --fleet ran a truncated identity (exit $rc)"
expect fleet.err "fleet/robot-020000000002.nvs.bin: 5000 bytes: expected an nvs image"
echo "fault_bad_input: ok"
