#!/usr/bin/env bash
# bench/fs_bound (the file system's share of batch, issue 19) makes the files batch makes:
# given the suffixes and sizes of a batch device's files, the same names, sizes and modes for
# every device, made durable by at least one syncfs; bad arguments get a usage error.
. "$(dirname "$0")/lib.sh"
FSB="$FK_BIN/fs_bound"

make_csv 40 devices.csv
"$PK" batch --inventory "$INV" --csv devices.csv --output-dir keys --jobs 2 --encrypt-nvs \
    --json >sum.json 2>err.txt || fail "batch failed: $(cat err.txt)"
sizes=$(cd keys && for f in robot-020000000000.*; do
    printf '%s=%s ' "${f#robot-020000000000.}" "$(stat -c %s "$f")"; done)
[ "$(echo "$sizes" | wc -w)" = 3 ] || fail "batch device files: $sizes"

umask 077
# shellcheck disable=SC2086 # a list of arguments
"$FSB" fsb 40 2 16 $sizes >out.txt 2>err.txt || fail "fs_bound failed: $(cat err.txt)"
grep -Eq '^[0-9]+ devices/s .* [1-9][0-9]* syncfs ' out.txt || fail "fs_bound output: $(cat out.txt)"
# Same names and modes as batch's device files (the inventory and fleet key aside), and the
# first device's sizes (a manifest's size varies with the device's name).
(cd keys && find . -name 'robot-*' -printf '%f %m\n' | sort) >batch.lst
(cd fsb && find . -name 'robot-*' -printf '%f %m\n' | sort) >fsb.lst
for f in keys/robot-020000000000.*; do
    cmp -s <(stat -c %s "$f") <(stat -c %s "fsb/${f#keys/}") || fail "size of fsb/${f#keys/}"
done
[ "$(wc -l <fsb.lst)" = 120 ] || fail "fs_bound wrote $(wc -l <fsb.lst) files, expected 120"
diff batch.lst fsb.lst >diff.txt || fail "fs_bound's files differ from batch's: $(head diff.txt)"

for bad in "fsb2 0 1 16 a=1" "fsb2 10 1 16 a" "fsb2 10 1 16 a=0" "fsb2 10 1 16 =5" "fsb2 10 1 16"; do
    # shellcheck disable=SC2086
    if "$FSB" $bad >/dev/null 2>err.txt; then fail "fs_bound accepted: $bad"; fi
    grep -q 'fs_bound\|usage' err.txt || fail "no error message for: $bad"
done
echo "PASS fs_bound"
