#!/usr/bin/env bash
# provision-keys nvs against ESP-IDF's golden images (tests/vectors/nvs/README.md).
# usage: nvs_cli.sh BIN_DIR VECTOR_DIR TMP_DIR
set -euo pipefail
FK_BIN=${1:?bin dir}
VEC=${2:?vector dir}
TMP=${3:?tmp dir}
PK="${FK_BIN}/provision-keys"
rm -rf "$TMP"
mkdir -p "$TMP"
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

sha() {
    sha256sum "$1" | cut -c1-64
}

# expect_rc RC DESCRIPTION CMD...: runs CMD, output in $TMP/out and $TMP/err.
expect_rc() {
    local want=$1 what=$2
    shift 2
    local got=0
    "$@" >"$TMP/out" 2>"$TMP/err" || got=$?
    if [ "$got" != "$want" ]; then
        fail "$what: exit $got, expected $want"
        sed 's/^/    /' "$TMP/err" >&2
    fi
}

# 1. Every case of cases.tsv, byte for byte, run from the vector directory as the README does.
cd "$VEC"
while IFS=$'\t' read -r name csv size version keyfile want; do
    [ "$name" = name ] && continue
    out="$TMP/$name.bin"
    ro=()
    if [ $((size)) -lt $((0x3000)) ]; then
        ro=(--read-only)
    fi
    if [ "$keyfile" = - ]; then
        expect_rc 0 "$name generate" "$PK" nvs generate "$csv" "$out" "$size" --version "$version" "${ro[@]}"
    else
        expect_rc 0 "$name encrypt" "$PK" nvs encrypt "$csv" "$out" "$size" --version "$version" \
            --inputkey "$keyfile" "${ro[@]}"
        # decrypt(enc) == the plain image of the same CSV
        expect_rc 0 "$name decrypt" "$PK" nvs decrypt "$name.bin" "$keyfile" "$TMP/$name.dec.bin"
        expect_rc 0 "$name plain" "$PK" nvs generate "$csv" "$TMP/$name.plain.bin" "$size" --version "$version"
        cmp -s "$TMP/$name.dec.bin" "$TMP/$name.plain.bin" || fail "$name: decrypt(enc) != plain"
        expect_rc 0 "$name dump --keys" "$PK" nvs dump "$name.bin" --keys "$keyfile"
    fi
    [ -f "$out" ] && [ "$(sha "$out")" = "$want" ] || fail "$name: sha256 $(sha "$out" 2>/dev/null || echo none), expected $want"
    [ "$(stat -c %a "$out")" = 600 ] || fail "$name: image mode $(stat -c %a "$out"), expected 600"
done <cases.tsv

# 2. dump: clean images exit 0 and mask secrets; --show-secrets shows them; JSON parses.
expect_rc 0 "dump prov" "$PK" nvs dump prov_plain.bin
grep -q 'security:psk_id  string  "robot-AABBCCDDEEFF"' "$TMP/out" || fail "dump: psk_id not shown"
grep -q '50b3f7f7' "$TMP/out" && fail "dump: the PSK is printed without --show-secrets"
grep -q 'Tr41n-R0b0t' "$TMP/out" && fail "dump: the Wi-Fi password is printed without --show-secrets"
expect_rc 0 "dump --show-secrets" "$PK" nvs dump prov_plain.bin --show-secrets
grep -q '50b3f7f7c416ce0937abf4ac096bdb5b08f8a528fa31c0a3253601bd6656cfc4' "$TMP/out" || fail "dump --show-secrets: no PSK"
expect_rc 0 "dump --json" "$PK" nvs dump edge_plain.bin --json
jq -e '.ok == true and (.problems | length) == 0
    and ([.items[] | select(.key == "csv_quoted")][0].value == "a,b \"quoted\" c")
    and ([.items[] | select(.key == "blob_3pages")][0] | .size == 10000 and .chunks == 3)
    and ([.items[] | select(.key == "after_other")][0] | .namespace == "other" and .value == 3735928559)' \
    "$TMP/out" >/dev/null || fail "dump --json: unexpected content"
# 64-bit values are printed exactly (a JSON double could not hold them).
grep -Eq '"value":[[:space:]]*18446744073709551615$' "$TMP/out" || fail "dump --json: u64_max"
grep -Eq '"value":[[:space:]]*-9223372036854775808$' "$TMP/out" || fail "dump --json: i64_min"
# ns_revisit.bin is the generator's image: `c` shows up in `second` there.
expect_rc 0 "dump ns_revisit" "$PK" nvs dump ns_revisit.bin
grep -q 'second:c  u8  3' "$TMP/out" || fail "dump ns_revisit: c not in second"
# Ours puts it in `first`.
expect_rc 0 "generate ns_revisit" "$PK" nvs generate ns_revisit.csv "$TMP/ns.bin" 0x3000
expect_rc 0 "dump our ns_revisit" "$PK" nvs dump "$TMP/ns.bin"
grep -q 'first:c  u8  3' "$TMP/out" || fail "our ns_revisit: c not in first"

# 3. A damaged image: every problem reported with its offset, exit 1.
cp v2_plain.bin "$TMP/bad.bin"
printf '\x00' | dd of="$TMP/bad.bin" bs=1 seek=$((0x16a)) conv=notrunc status=none  # boot_count key
printf '\x00' | dd of="$TMP/bad.bin" bs=1 seek=$((0x1004)) conv=notrunc status=none # page 1 seq
expect_rc 1 "dump damaged" "$PK" nvs dump "$TMP/bad.bin"
grep -q 'offset 0x000160 (page 0, entry 9): entry CRC' "$TMP/out" || fail "dump damaged: entry CRC not reported"
grep -q 'offset 0x00101c (page 1 header): page header CRC' "$TMP/out" || fail "dump damaged: header CRC not reported"
head -c 5000 v2_plain.bin >"$TMP/trunc.bin"
expect_rc 1 "dump truncated" "$PK" nvs dump "$TMP/trunc.bin"
grep -q 'truncated' "$TMP/out" || fail "dump truncated: not reported"
expect_rc 1 "dump encrypted without keys" "$PK" nvs dump v2_enc.bin
grep -q 'pass --keys' "$TMP/err" || fail "dump encrypted: no hint about --keys"

# 4. Failures: clear message, exit 1 (input) or 2 (usage), and no output file left.
check_no_output() {
    [ -e "$1" ] && fail "$2: output $1 left behind"
    ls "$(dirname "$1")" | grep -q '\.tmp' && fail "$2: temp file left behind"
    return 0
}
o="$TMP/none.bin"
expect_rc 1 "key16" "$PK" nvs generate reject_key16.csv "$o" 0x6000
grep -q 'reject_key16.csv:3: .*at most 15' "$TMP/err" || fail "key16: message"
check_no_output "$o" key16
expect_rc 1 "v1 1985" "$PK" nvs generate reject_v1_blob1985.csv "$o" 0x6000 --version 1
grep -q 'reject_v1_blob1985.csv:3: .*1985 bytes.*1984' "$TMP/err" || fail "v1 1985: message"
check_no_output "$o" "v1 1985"
expect_rc 1 "v2.csv as v1" "$PK" nvs generate v2.csv "$o" 0x6000 --version 1
grep -q 'v2.csv:8: ' "$TMP/err" || fail "v2.csv as v1: message"
expect_rc 1 "too small" "$PK" nvs generate edge.csv "$o" 0x4000
grep -q 'needs 24576 bytes, partition has 16384' "$TMP/err" || fail "too small: message"
check_no_output "$o" "too small"
printf 'key,type,encoding,value\nn,namespace,,\nf,file,binary,missing.bin\n' >"$TMP/missing.csv"
expect_rc 1 "missing file" "$PK" nvs generate "$TMP/missing.csv" "$o" 0x3000
grep -q 'missing.csv:3: .*missing.bin' "$TMP/err" || fail "missing file: message"
printf 'key,type,encoding,value\nn,namespace,,\nx,data,u8,300\ny,data,base32,AA\n' >"$TMP/range.csv"
expect_rc 1 "u8 300" "$PK" nvs generate "$TMP/range.csv" "$o" 0x3000
grep -q 'range.csv:3: .*does not fit u8' "$TMP/err" || fail "u8 300: message"
sed -i 's/300/3/' "$TMP/range.csv"
expect_rc 1 "unknown encoding" "$PK" nvs generate "$TMP/range.csv" "$o" 0x3000
grep -q "range.csv:4: .*unknown encoding 'base32'" "$TMP/err" || fail "unknown encoding: message"
check_no_output "$o" "unknown encoding"
# A failed run never replaces an existing output either.
echo keep >"$TMP/keep.bin"
expect_rc 1 "keep existing" "$PK" nvs generate reject_key16.csv "$TMP/keep.bin" 0x6000
[ "$(cat "$TMP/keep.bin")" = keep ] || fail "a failed run replaced an existing output"
# Key files: a bad CRC is refused; encrypt leaves neither image nor keys on failure.
cp nvs_keys_1122.bin "$TMP/badkeys.bin"
printf '\x00' | dd of="$TMP/badkeys.bin" bs=1 seek=3 conv=notrunc status=none
expect_rc 1 "bad key CRC" "$PK" nvs encrypt v2.csv "$o" 0x6000 --inputkey "$TMP/badkeys.bin"
grep -q 'bad key file CRC' "$TMP/err" || fail "bad key CRC: message"
check_no_output "$o" "bad key CRC"
expect_rc 1 "decrypt bad key CRC" "$PK" nvs decrypt v2_enc.bin "$TMP/badkeys.bin" "$o"
check_no_output "$o" "decrypt bad key CRC"
expect_rc 1 "keygen on bad csv" "$PK" nvs encrypt reject_key16.csv "$o" 0x6000 --keygen --keyfile "$TMP/k.bin"
check_no_output "$o" "keygen on bad csv"
check_no_output "$TMP/k.bin" "keygen on bad csv (keys)"
# Usage errors: exit 2.
expect_rc 2 "size not multiple" "$PK" nvs generate v2.csv "$o" 0x6001
expect_rc 2 "size too small" "$PK" nvs generate v2.csv "$o" 0x2000
grep -q -- '--read-only' "$TMP/err" || fail "size too small: no hint"
expect_rc 2 "size not a number" "$PK" nvs generate v2.csv "$o" big
expect_rc 2 "read-only too big" "$PK" nvs generate small.csv "$o" 0x3000 --read-only
expect_rc 2 "bad version" "$PK" nvs generate v2.csv "$o" 0x6000 --version 3
expect_rc 2 "encrypt without keys" "$PK" nvs encrypt v2.csv "$o" 0x6000
expect_rc 2 "keygen without keyfile" "$PK" nvs encrypt v2.csv "$o" 0x6000 --keygen
expect_rc 2 "unknown option" "$PK" nvs dump v2_plain.bin --frobnicate
expect_rc 2 "unknown subcommand" "$PK" nvs frobnicate
check_no_output "$o" "usage errors"
for c in generate encrypt decrypt generate-key dump partition-table; do
    expect_rc 0 "$c --help" "$PK" nvs "$c" --help
    grep -q "usage: provision-keys nvs $c" "$TMP/out" || fail "$c --help: no usage line"
done

# 5. Keys: generate-key, encrypt --keygen, round trip through decrypt and dump.
expect_rc 0 "generate-key" "$PK" nvs generate-key --keyfile "$TMP/gk.bin"
[ "$(stat -c %s%a "$TMP/gk.bin")" = 4096600 ] || fail "generate-key: size/mode $(stat -c '%s %a' "$TMP/gk.bin")"
expect_rc 1 "generate-key exists" "$PK" nvs generate-key --keyfile "$TMP/gk.bin"
grep -q -- '--force' "$TMP/err" || fail "generate-key exists: no hint"
expect_rc 0 "generate-key --force" "$PK" nvs generate-key --keyfile "$TMP/gk.bin" --force
expect_rc 0 "encrypt --keygen" "$PK" nvs encrypt prov.csv "$TMP/pe.bin" 0x6000 --keygen --keyfile "$TMP/pk.bin"
[ "$(stat -c %a "$TMP/pk.bin")" = 600 ] || fail "encrypt --keygen: key file mode"
expect_rc 0 "decrypt --keygen image" "$PK" nvs decrypt "$TMP/pe.bin" "$TMP/pk.bin" "$TMP/pd.bin"
cmp -s "$TMP/pd.bin" prov_plain.bin || fail "encrypt --keygen: decrypts to something else than prov_plain.bin"
expect_rc 0 "dump --keys" "$PK" nvs dump "$TMP/pe.bin" --keys "$TMP/pk.bin"
grep -q 'wifi:ssid  string  "FleetLab-5G"' "$TMP/out" || fail "dump --keys: ssid"

# 6. Partition table: default -> encode -> decode -> same CSV; a flash image is found at 0x8000.
expect_rc 0 "ptable default" "$PK" nvs partition-table default
cp "$TMP/out" "$TMP/parts.csv"
expect_rc 0 "ptable encode" "$PK" nvs partition-table encode "$TMP/parts.csv" "$TMP/pt.bin"
[ "$(stat -c %s "$TMP/pt.bin")" = 3072 ] || fail "ptable: size"
expect_rc 0 "ptable decode" "$PK" nvs partition-table decode "$TMP/pt.bin"
grep -q '^nvs_keys,data,nvs_keys,0xf000,4K,encrypted$' "$TMP/out" || fail "ptable decode: nvs_keys row"
grep -q '^ota_1,app,ota_1,0x1a0000,1536K,$' "$TMP/out" || fail "ptable decode: ota_1 row"
cp "$TMP/out" "$TMP/parts2.csv"
expect_rc 0 "ptable re-encode" "$PK" nvs partition-table encode "$TMP/parts2.csv" "$TMP/pt2.bin"
cmp -s "$TMP/pt.bin" "$TMP/pt2.bin" || fail "ptable: decode/encode is not a round trip"
{ head -c $((0x8000)) /dev/zero; cat "$TMP/pt.bin"; } >"$TMP/flash.bin"
expect_rc 0 "ptable decode flash" "$PK" nvs partition-table decode "$TMP/flash.bin" --json
grep -q '"nvs_keys"' "$TMP/out" || fail "ptable decode flash: json"
printf 'x, data, nvs, 0x9000, 0x6000\ny, data, nvs, 0xA000, 0x1000\n' >"$TMP/overlap.csv"
expect_rc 1 "ptable overlap" "$PK" nvs partition-table encode "$TMP/overlap.csv" "$o"
grep -q 'overlap.csv:2: .*overlaps' "$TMP/err" || fail "ptable overlap: message"
check_no_output "$o" "ptable overlap"
printf '\x00' | dd of="$TMP/pt.bin" bs=1 seek=5 conv=notrunc status=none
expect_rc 1 "ptable bad md5" "$PK" nvs partition-table decode "$TMP/pt.bin"
grep -q 'MD5' "$TMP/err" || fail "ptable bad md5: message"

if [ "$fails" -ne 0 ]; then
    echo "nvs_cli: $fails failure(s)" >&2
    exit 1
fi
echo "nvs_cli: all checks passed"
