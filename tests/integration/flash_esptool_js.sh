#!/bin/sh
# Interop: an unmodified esptool-js (Espressif's JavaScript esptool, from the npm registry)
# detects robot-sim as an ESP32 over its pty, reads the eFuse MAC, writes an NVS image made by
# ESP-IDF's generator through the ROM loader (no stub), compressed and plain, and checks the
# ROM's MD5; the image file must then hold exactly those bytes. Exit 77 (skipped) when the npm
# registry cannot be reached; without node and npm too, except under CI, where that fails.
#   sh flash_esptool_js.sh BIN_DIR VECTORS_DIR TMP_DIR SRC_DIR
set -eu
bin=$1
vec=$2/nvs
tmp=$3
src=$4
. "$src/tests/integration/skip.sh"
# scripts/packages.d/js.txt declares node and npm: their absence is the project's to fix.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    fk_skip "node/npm not installed (scripts/install-deps installs nodejs and npm)"
rm -rf "$tmp"
mkdir -p "$tmp/js"
# The exact esptool-js and its dependencies, as tests/integration/js/package-lock.json pins
# them, installed into the build tree: `npm ci` refuses a lockfile that disagrees with
# package.json and checks every package's integrity hash.
cp "$src/tests/integration/js/package.json" "$src/tests/integration/js/package-lock.json" \
    "$tmp/js/"
if ! (cd "$tmp/js" && timeout 300 npm ci --no-audit --no-fund --silent >npm.log 2>&1); then
    cat "$tmp/js/npm.log"
    # Only an unreachable registry is outside our control; any other npm error is a failure.
    if grep -Eq 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH' \
        "$tmp/js/npm.log"; then
        fk_skip_external "the npm registry cannot be reached to install esptool-js"
    fi
    echo "FAIL: npm ci of tests/integration/js failed" >&2
    exit 1
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
