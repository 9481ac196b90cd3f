#!/bin/sh
# scripts/check-cycles: the build tree itself has no two files (or libraries) calling each
# other; planted object files that do are each reported, and a one-way pair is not.
#   sh check_cycles.sh SRC_DIR BUILD_DIR TMP_DIR
set -eu
src=$1
build=$2
tmp=$3
. "$(dirname "$0")/lib.sh"
check="$src/scripts/check-cycles"
rm -rf "$tmp"
mkdir -p "$tmp"
cd "$tmp"
n=0

run 0 tree python3 "$check" "$build"
expect tree.out "no cycles"
n=$((n + 1))

# obj TARGET FILE CODE: compiles CODE as TARGET's FILE.c into a CMake-like tree under fake/
obj() {
    mkdir -p "fake/CMakeFiles/$1.dir"
    printf '%s\n' "$3" >"$2.c"
    cc -c -o "fake/CMakeFiles/$1.dir/$2.c.o" "$2.c"
}
obj prog one_way_a 'int b1(void); int a1(void) { return b1(); }'
obj prog one_way_b 'int b1(void) { return 1; }'
run 0 oneway python3 "$check" fake
n=$((n + 1))

obj prog ping 'int pong(int); int ping(int n) { return n ? pong(n - 1) : 0; }'
obj prog pong 'int ping(int); int pong(int n) { return n ? ping(n - 1) : 1; }'
run 1 files python3 "$check" fake
expect files.out "prog: ping.c <-> pong.c: ping.c uses pong; pong.c uses ping"
n=$((n + 1))

rm -rf fake
obj fk_low low 'int high(void); int low(void) { return high(); }'
obj fk_high high 'int low(void); int high(void) { return 2 + low(); }'
run 1 libs python3 "$check" fake
expect libs.out "libraries: fk_high <-> fk_low"
n=$((n + 1))

run 2 nothing python3 "$check" "$tmp/none"
n=$((n + 1))
echo "check_cycles: $n passed, 0 failed"
