#!/bin/sh
# scripts/check-layers on a temp copy of the tree: the copy as committed passes; each planted
# violation (device/ including the host library, device/ including a program's header, src/
# including from tools/, a private header reached from another folder, by a relative path and
# by file name alone) fails with the file and line of the include.
#   sh check_layers.sh SRC_DIR TMP_DIR
set -eu
src=$1
tmp=$2
. "$(dirname "$0")/lib.sh"
check="$src/scripts/check-layers"
rm -rf "$tmp"
mkdir -p "$tmp"
fresh() {
    rm -rf "$tmp/tree"
    mkdir -p "$tmp/tree"
    (cd "$src" && tar -cf - device src include tools tests/unit tests/tools bench) |
        (cd "$tmp/tree" && tar -xf -)
}
fresh
run 0 "$tmp/clean" python3 "$check" "$tmp/tree"
expect "$tmp/clean.out" 'layering holds'

# plant FILE LINE_TEXT EXPECTED_PATTERN: append the include to FILE (creating it), expect exit 1
# and a report naming FILE and the line the include is on.
plant() {
    fresh
    mkdir -p "$(dirname "$tmp/tree/$1")"
    printf '%s\n' "$2" >>"$tmp/tree/$1"
    line=$(wc -l <"$tmp/tree/$1" | tr -d ' ')
    out="$tmp/$(echo "$1" | tr / _)"
    run 1 "$out" python3 "$check" "$tmp/tree"
    expect "$out.out" "^$1:$line: "
    expect "$out.out" "$3"
    expect "$out.out" 'break the layering'
}
dev_c=$(cd "$tmp/tree" && ls device/src/*.c device/src/*/*.c 2>/dev/null | head -1)
[ -n "$dev_c" ] || fail "no device source found"
plant "$dev_c" '#include "fleetkey/common.h"' 'device/ must not include the host library'
plant device/port/posix/flash_file.c '#include "robot_sim.h"' 'device/ must not include'
plant src/common/util.c '#include "../../tools/fleetctl/robot.h"' 'src/ must not include from tools/'
plant src/common/log.c '#include "../pki/pki_internal.h"' 'private header of another folder'
plant tools/fleetctl/main.c '#include "ota_internal.h"' 'src/ota/ota_internal.h: private header'
plant tests/unit/planted.c '#include "pki_internal.h"' 'private header of another folder'
# A file of the header's own folder may include it.
fresh
printf '#include "pki_internal.h"\n' >>"$tmp/tree/src/pki/p12.c"
run 0 "$tmp/own" python3 "$check" "$tmp/tree"
echo "check_layers: clean tree passes, 6 planted violations each reported: 8 passed, 0 failed"
