#!/bin/sh
# Interop: an unmodified esptool-js (Espressif's JavaScript esptool, from the npm registry)
# detects robot-sim as an ESP32 over its pty, reads the eFuse MAC, writes an NVS image made by
# ESP-IDF's generator through the ROM loader (no stub), compressed and plain, and checks the
# ROM's MD5; the image file must then hold exactly those bytes. Exit 77 (skipped) without node
# and npm, or when esptool-js cannot be installed (no registry access).
#   sh flash_esptool_js.sh BIN_DIR VECTORS_DIR TMP_DIR SRC_DIR
set -eu
bin=$1
vec=$2/nvs
tmp=$3
src=$4
version=0.7.0
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
    echo "node/npm not installed: skip"; exit 77; }
rm -rf "$tmp"
mkdir -p "$tmp/js"
if ! (cd "$tmp/js" && timeout 300 npm install --no-audit --no-fund --silent \
    "esptool-js@$version" >npm.log 2>&1); then
    echo "esptool-js $version could not be installed: skip"
    cat "$tmp/js/npm.log"
    exit 77
fi
ejs="$tmp/js/node_modules/esptool-js"
failures=0
passes=0
sim_pid=""
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { passes=$((passes + 1)); }
cleanup() {
    [ -z "$sim_pid" ] || { kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; }
    sim_pid=""
}
trap cleanup EXIT INT TERM

for mode in compress plain; do
    img="$tmp/robot-$mode.bin"
    rm -f "$tmp/tty"
    "$bin/robot-sim-dl" --flash "$img" --download-mode --pty-link "$tmp/tty" \
        --mac 24:0A:C4:5A:00:01 >"$tmp/sim.log" 2>&1 &
    sim_pid=$!
    i=0
    while [ ! -L "$tmp/tty" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    if timeout 120 node "$src/tests/integration/esptool_js_flash.mjs" "$ejs" "$tmp/tty" 9000 \
        "$vec/prov_plain.bin" "$mode" >"$tmp/out" 2>"$tmp/err"; then
        ok
    else
        fail "esptool-js ($mode) failed"
        cat "$tmp/err" >&2
    fi
    cleanup
    grep -qx 'chip ESP32' "$tmp/out" && ok || fail "esptool-js did not detect an ESP32"
    grep -qx 'mac 24:0a:c4:5a:00:01' "$tmp/out" && ok || fail "esptool-js read another MAC"
    # esptool-js prints the ROM's 32 ASCII hex digits as hex: decode them back.
    got=$(python3 -c 'import sys; print(bytes.fromhex(sys.argv[1]).decode())' \
        "$(sed -n 's/^md5 //p' "$tmp/out")" 2>/dev/null || true)
    want=$(md5sum "$vec/prov_plain.bin" | cut -d' ' -f1)
    [ "$got" = "$want" ] && ok || fail "ROM MD5 '$got', file MD5 $want"
    dd if="$img" of="$tmp/region" bs=4096 skip=9 count=6 2>/dev/null
    cmp -s "$tmp/region" "$vec/prov_plain.bin" && ok || fail "$mode: flash differs from the image"
done

echo "flash esptool-js interop: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
