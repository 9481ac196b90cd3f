#!/bin/sh
# provision-keys flash end to end against robot-sim's download mode on a real pty: NVS images
# made by ESP-IDF's own generator (tests/vectors/nvs) are flashed, verified and read back; the
# manifest is marked provisioned and the inventory records it. Then every failure the issue
# names: another robot's MAC, an MD5 mismatch, a read-back mismatch, a refused block, a lost
# acknowledgement, a silent port, a missing port. Each failure must leave the manifest and the
# inventory byte-for-byte as they were.
#   sh flash.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
bin=$1
vec=$2/nvs
tmp=$3
pk="$bin/provision-keys"
sim="$bin/robot-sim-dl"
rm -rf "$tmp"
mkdir -p "$tmp"
failures=0
passes=0
sim_pid=""

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() {
    passes=$((passes + 1))
}
cleanup() {
    if [ -n "$sim_pid" ]; then
        kill "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# start_sim IMAGE MAC [ARGS...]: robot-sim download mode on a pty linked at $tmp/tty.
start_sim() {
    image=$1
    mac=$2
    shift 2
    cleanup
    rm -f "$tmp/tty"
    "$sim" --flash "$image" --download-mode --pty-link "$tmp/tty" --mac "$mac" "$@" \
        >"$tmp/sim.log" 2>&1 &
    sim_pid=$!
    i=0
    while [ ! -L "$tmp/tty" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    [ -L "$tmp/tty" ] || { fail "robot-sim did not create its pty link"; cat "$tmp/sim.log" >&2; }
}

stop_sim() {
    cleanup
    sim_pid=""
}

# expect RC CMD...: run CMD and compare its exit code; output in $tmp/out.
expect() {
    want=$1
    shift
    set +e
    "$@" >"$tmp/out" 2>&1
    got=$?
    set -e
    if [ "$got" != "$want" ]; then
        fail "exit $got, wanted $want: $*"
        cat "$tmp/out" >&2
        return 1
    fi
    ok
}

contains() {
    if grep -q -- "$1" "$tmp/out"; then ok; else fail "output lacks '$1'"; cat "$tmp/out" >&2; fi
}

# manifest DIR NAME MAC12 IMAGE [KEYS]: a manifest as `provision-keys generate` writes it.
manifest() {
    d=$1
    name=$2
    id="robot-$3"
    cp "$4" "$d/$name.nvs.bin"
    sha=$(sha256sum "$d/$name.nvs.bin" | cut -d' ' -f1)
    enc=false
    keys=null
    if [ $# -ge 5 ]; then
        cp "$5" "$d/$name.nvs_keys.bin"
        enc=true
        keys="\"$name.nvs_keys.bin\""
    fi
    cat >"$d/$name.json" <<JSON
{
  "device_id": "$id",
  "psk_hex": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
  "psk_identity": "$id",
  "ota_public_key_der_hex": "3059301306072a8648ce3d020106082a8648ce3d03010703420004",
  "provisioned": false,
  "provisioned_at": null,
  "schema_version": 1,
  "name": "$name",
  "nvs_image": "$name.nvs.bin",
  "nvs_image_sha256": "$sha",
  "nvs_encrypted": $enc,
  "nvs_keys": $keys
}
JSON
    chmod 600 "$d/$name.json"
}

region_equals() { # IMAGE OFFSET FILE
    size=$(wc -c <"$3")
    dd if="$1" of="$tmp/region" bs=4096 skip=$(($2 / 4096)) count=$((size / 4096)) 2>/dev/null
    if cmp -s "$tmp/region" "$3"; then ok; else fail "flash at $2 differs from $3"; fi
}

unchanged() { # FILE COPY
    if cmp -s "$1" "$2"; then ok; else fail "$1 changed on a failed flash"; fi
}

d="$tmp/keys"
mkdir -p "$d"
mac=24:0A:C4:00:00:01

# 1. Plain NVS: flash, verify, provisioned, read back.
manifest "$d" device_001 240AC4000001 "$vec/prov_plain.bin"
start_sim "$tmp/robot1.bin" "$mac"
expect 0 "$pk" flash --keys "$d/device_001.json" --port "$tmp/tty" --before no-reset --json \
    --inventory "$tmp/inventory.db"
contains '"ok":true'
contains '"device_id":"robot-240AC4000001"'
wait "$sim_pid" 2>/dev/null || true # FLASH_END "run": robot-sim leaves download mode
sim_pid=""
grep -q 'left download mode' "$tmp/sim.log" && ok || fail "robot-sim did not leave download mode"
region_equals "$tmp/robot1.bin" $((0x9000)) "$vec/prov_plain.bin"
grep -q '"provisioned":[[:space:]]*true' "$d/device_001.json" && ok || fail "not provisioned"
grep -Eq '"provisioned_at":[[:space:]]*"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"' \
    "$d/device_001.json" && ok || fail "provisioned_at is not RFC 3339 UTC"
for f in psk_hex psk_identity ota_public_key_der_hex schema_version name nvs_image_sha256; do
    grep -q "\"$f\"" "$d/device_001.json" && ok || fail "manifest lost $f"
done
[ "$(stat -c %a "$d/device_001.json")" = 600 ] && ok || fail "manifest is not 0600"
state=$(sqlite3 "$tmp/inventory.db" "SELECT state FROM devices WHERE id='robot-240AC4000001'")
[ "$state" = provisioned ] && ok || fail "inventory state is '$state'"
n=$(sqlite3 "$tmp/inventory.db" "SELECT count(*) FROM audit WHERE kind='device.flashed'")
[ "$n" = 1 ] && ok || fail "audit has $n device.flashed rows"

# Read it back through the ROM protocol.
start_sim "$tmp/robot1.bin" "$mac"
expect 0 "$pk" flash --read 0x9000 0x6000 --out "$tmp/dump.bin" --port "$tmp/tty" \
    --before no-reset
cmp -s "$tmp/dump.bin" "$vec/prov_plain.bin" && ok || fail "--read dump differs"
stop_sim

# 2. Encrypted NVS + nvs_keys at a higher baud rate, uncompressed (FLASH_DATA; case 1 used the
#    default compressed download, FLASH_DEFL_DATA).
manifest "$d" device_002 240AC4000002 "$vec/prov_enc.bin" "$vec/nvs_keys_prov.bin"
start_sim "$tmp/robot2.bin" 24:0A:C4:00:00:02
expect 0 "$pk" flash --keys "$d/device_002.json" --port "$tmp/tty" --before no-reset \
    --baud 921600 --no-compress
contains 'verified'
stop_sim
region_equals "$tmp/robot2.bin" $((0x9000)) "$vec/prov_enc.bin"
region_equals "$tmp/robot2.bin" $((0xF000)) "$vec/nvs_keys_prov.bin"

# 2a. --boot-after: the host leaves the robot in download mode (--after no-reset); robot-sim
#     leaves download mode when the host closes the port.
manifest "$d" device_009 240AC4000009 "$vec/prov_plain.bin"
start_sim "$tmp/robot10.bin" 24:0A:C4:00:00:09 --boot-after
expect 0 "$pk" flash --keys "$d/device_009.json" --port "$tmp/tty" --before no-reset \
    --after no-reset
i=0
while kill -0 "$sim_pid" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
if kill -0 "$sim_pid" 2>/dev/null; then
    fail "robot-sim --boot-after stayed in download mode after the host left"
else
    ok
    grep -q 'left download mode' "$tmp/sim.log" && ok || fail "no exit message"
fi
stop_sim
region_equals "$tmp/robot10.bin" $((0x9000)) "$vec/prov_plain.bin"

# 2b. A custom partition table moves the NVS.
cat >"$tmp/partitions.csv" <<CSV
# Name, Type, SubType, Offset, Size, Flags
nvs, data, nvs, 0x20000, 0x6000,
factory, app, factory, 0x30000, 1M,
CSV
manifest "$d" device_008 240AC4000008 "$vec/prov_plain.bin"
start_sim "$tmp/robot8.bin" 24:0A:C4:00:00:08
expect 0 "$pk" flash --keys "$d/device_008.json" --port "$tmp/tty" --before no-reset \
    --partition-table "$tmp/partitions.csv"
contains 'nvs 0x20000+0x6000'
stop_sim
region_equals "$tmp/robot8.bin" $((0x20000)) "$vec/prov_plain.bin"

# 3. Another robot on the port: refused, nothing changes; --force overrides.
manifest "$d" device_003 240AC4000003 "$vec/prov_plain.bin"
cp "$d/device_003.json" "$tmp/m3.orig"
cp "$tmp/inventory.db" "$tmp/inv.orig"
start_sim "$tmp/robot3.bin" 24:0A:C4:99:99:99
expect 3 "$pk" flash --keys "$d/device_003.json" --port "$tmp/tty" --before no-reset \
    --inventory "$tmp/inventory.db"
contains 'this is robot-240AC4999999, the keys are for robot-240AC4000003'
unchanged "$d/device_003.json" "$tmp/m3.orig"
unchanged "$tmp/inventory.db" "$tmp/inv.orig"
# (--before default-reset: the DTR/RTS sequence finds no modem lines on a pty and carries on.)
expect 0 "$pk" flash --keys "$d/device_003.json" --port "$tmp/tty" --force
stop_sim

# 4. Verification failures injected by the simulator: exit 5, nothing recorded.
for fault in md5 readback; do
    manifest "$d" device_004 240AC4000004 "$vec/prov_plain.bin"
    cp "$d/device_004.json" "$tmp/m4.orig"
    start_sim "$tmp/robot4.bin" 24:0A:C4:00:00:04 --fault "$fault"
    expect 5 "$pk" flash --keys "$d/device_004.json" --port "$tmp/tty" --before no-reset \
        --inventory "$tmp/inventory.db" --json
    contains '"error":"FK_E_VERIFY"'
    unchanged "$d/device_004.json" "$tmp/m4.orig"
    unchanged "$tmp/inventory.db" "$tmp/inv.orig"
    stop_sim
done

# 5. A refused block and a lost acknowledgement are retried.
for fault in checksum drop; do
    manifest "$d" device_005 240AC4000005 "$vec/prov_plain.bin"
    start_sim "$tmp/robot5.bin" 24:0A:C4:00:00:05 --fault "$fault"
    expect 0 "$pk" flash --keys "$d/device_005.json" --port "$tmp/tty" --before no-reset --json \
        --timeout 500
    contains '"retries":1'
    stop_sim
    region_equals "$tmp/robot5.bin" $((0x9000)) "$vec/prov_plain.bin"
done

# 6. Nobody answers: a clear message, exit 4; a port that does not exist: exit 1.
manifest "$d" device_006 240AC4000006 "$vec/prov_plain.bin"
cp "$d/device_006.json" "$tmp/m6.orig"
start_sim "$tmp/robot6.bin" 24:0A:C4:00:00:06 --fault silent
expect 4 "$pk" flash --keys "$d/device_006.json" --port "$tmp/tty" --before no-reset
contains "no ESP32 bootloader answered on $tmp/tty: is the board in download mode?"
unchanged "$d/device_006.json" "$tmp/m6.orig"
stop_sim
expect 1 "$pk" flash --keys "$d/device_006.json" --port "$tmp/no-such-tty" --before no-reset
contains 'cannot open'
unchanged "$d/device_006.json" "$tmp/m6.orig"

# 7. A tampered image (not the one the manifest was minted with) is refused before flashing.
manifest "$d" device_007 240AC4000007 "$vec/prov_plain.bin"
printf 'x' | dd of="$d/device_007.nvs.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
expect 1 "$pk" flash --keys "$d/device_007.json" --port "$tmp/no-such-tty"
contains 'nvs_image_sha256'

# 9. The seed's own sequence: provision-keys generate, then flash (its inventory is found next to
#    the manifest). Skipped in a build without the generate command.
if "$pk" generate --help >/dev/null 2>&1; then
    g="$tmp/gen"
    mkdir -p "$g"
    expect 0 "$pk" generate --output "$g/device_001.json" --mac 24:0A:C4:00:00:10 --encrypt-nvs
    start_sim "$tmp/robot9.bin" 24:0A:C4:00:00:10
    expect 0 "$pk" flash --keys "$g/device_001.json" --port "$tmp/tty" --before no-reset
    contains 'nvs_keys 0xf000+0x1000'
    stop_sim
    region_equals "$tmp/robot9.bin" $((0x9000)) "$g/device_001.nvs.bin"
    region_equals "$tmp/robot9.bin" $((0xF000)) "$g/device_001.nvs_keys.bin"
    grep -q '"provisioned":[[:space:]]*true' "$g/device_001.json" && ok || fail "not provisioned"
    state=$(sqlite3 "$g/inventory.db" "SELECT state FROM devices WHERE mac='24:0A:C4:00:00:10'")
    [ "$state" = provisioned ] && ok || fail "generated device's inventory state is '$state'"
    sum=$(sha256sum "$g/device_001.json" | cut -d' ' -f1)
    rec=$(sqlite3 "$g/inventory.db" "SELECT manifest_sha256 FROM devices WHERE mac='24:0A:C4:00:00:10'")
    [ "$sum" = "$rec" ] && ok || fail "inventory's manifest_sha256 is not the new manifest's"
fi

# 10. The whole path: generate -> robot-sim (the device library) in download mode -> flash ->
#     robot-sim leaves download mode, boots from the flash it now holds, and serves DTLS with
#     the flashed PSK: `fleetctl robot ... status` works with the manifest's keys.
if [ -x "$bin/robot-sim" ] && [ -x "$bin/fleetctl" ] && "$pk" generate --help >/dev/null 2>&1
then
    e="$tmp/e2e"
    mkdir -p "$e"
    printf 'Tr41n-R0b0t#2026\n' >"$e/wifi.pw"
    expect 0 "$pk" generate --output "$e/device_001.json" --mac 24:0A:C4:00:00:20 \
        --wifi-ssid FleetLab-5G --wifi-password-file "$e/wifi.pw" --encrypt-nvs
    expect 0 "$bin/robot-sim" flash-image create --out "$e/robot.img"
    printf 'CONFIG_PRODUCTION_BUILD=y\nCONFIG_NVS_ENCRYPTION=y\nCONFIG_SECURE_BOOT_V2_ENABLED=y\n' \
        >"$e/prod.sdkconfig"
    rm -f "$tmp/tty"
    "$bin/robot-sim" --flash "$e/robot.img" --download-mode --pty-link "$tmp/tty" \
        --mac 24:0A:C4:00:00:20 -- --sdkconfig "$e/prod.sdkconfig" --ctl-bind 127.0.0.1 \
        --ctl-port 0 --run-ms 30000 >"$e/sim.log" 2>&1 &
    sim_pid=$!
    i=0
    while [ ! -L "$tmp/tty" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    expect 0 "$pk" flash --keys "$e/device_001.json" --port "$tmp/tty" --before no-reset
    port=""
    i=0
    while [ -z "$port" ] && [ $i -lt 200 ]; do
        port=$(sed -n 's/^robot-sim: control listener on udp [0-9.]*:\([0-9]*\).*/\1/p' \
            "$e/sim.log")
        [ -n "$port" ] || sleep 0.05
        i=$((i + 1))
    done
    if [ -n "$port" ]; then
        ok
        expect 0 "$bin/fleetctl" robot --host 127.0.0.1 --port "$port" --timeout 10 \
            --keys "$e/device_001.json" status
    else
        fail "robot-sim did not boot into its control listener after the flash"
        cat "$e/sim.log" >&2
    fi
    grep -q 'left download mode, booting from' "$e/sim.log" && ok || fail "no hand-over to boot"
    if grep -q "$(sed -n 's/.*"psk_hex":[[:space:]]*"\([0-9a-f]*\)".*/\1/p' \
        "$e/device_001.json")" "$e/sim.log"; then
        fail "the PSK appears in robot-sim's output"
    else
        ok
    fi
    stop_sim
fi

# 8. Usage errors.
expect 2 "$pk" flash --keys "$d/device_001.json"
expect 2 "$pk" flash --port "$tmp/tty" --before sometimes

echo "flash integration: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
