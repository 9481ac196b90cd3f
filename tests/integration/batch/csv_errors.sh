#!/usr/bin/env bash
# Every CSV error stops the batch before anything is written and names file:line: column.
. "$(dirname "$0")/lib.sh"

n=0
# expect_error NAME 'expected stderr (grep -E)' <<CSV
expect_error() {
    local name=$1 want=$2
    n=$((n + 1))
    cat >"$name.csv"
    set +e
    "$PK" batch --csv "$name.csv" --output-dir "out_$name" 2>"$name.err" >/dev/null
    local rc=$?
    set -e
    [ $rc -eq 1 ] || fail "$name: exit $rc, expected 1"
    grep -qE "$want" "$name.err" || fail "$name: stderr does not match '$want': $(cat "$name.err")"
    [ ! -e "out_$name" ] || fail "$name: output directory was created"
}

expect_error bad_mac "^provision-keys: bad_mac.csv:3: mac: expected AA:BB:CC:DD:EE:FF.*found 'AA:BB:CC:DD:EE'" <<'CSV'
mac,name
02:00:00:00:00:01,a
AA:BB:CC:DD:EE,b
CSV
expect_error multicast "multicast.csv:2: mac: expected a unicast MAC" <<'CSV'
mac
01:00:5E:00:00:01
CSV
expect_error dup_mac "dup_mac.csv:5: mac: expected a MAC not used before, found 02:00:00:00:00:01 \(already on line 2\)" <<'CSV'
mac,name
02:00:00:00:00:01,a
02:00:00:00:00:02,b
02:00:00:00:00:03,c
02-00-00-00-00-01,d
CSV
expect_error missing_col "missing_col.csv:1: header: expected a column named mac" <<'CSV'
name,wifi_ssid
a,b
CSV
expect_error unknown_col "unknown_col.csv:1: header: column 2: expected one of mac, name, wifi_ssid, wifi_password, found 'wifi_pass'" <<'CSV'
mac,wifi_pass
02:00:00:00:00:01,x
CSV
expect_error field_count "field_count.csv:3: expected 2 fields as in the header, found 3" <<'CSV'
mac,name
02:00:00:00:00:01,a
02:00:00:00:00:02,b,c
CSV
expect_error quote "quote.csv:4: field 2: quoted field is never closed" <<'CSV'
mac,name
02:00:00:00:00:01,"multi
line name"
02:00:00:00:00:02,"open
CSV
expect_error stray_quote "stray_quote.csv:2: field 2: expected a quote only at the start" <<'CSV'
mac,name
02:00:00:00:00:01,ab"c
CSV
expect_error pw_no_ssid "pw_no_ssid.csv:2: wifi_password: expected a wifi_ssid on the same row" <<'CSV'
mac,wifi_ssid,wifi_password
02:00:00:00:00:01,,secret
CSV
expect_error long_ssid "long_ssid.csv:2: wifi_ssid: expected 1 to 32 bytes" <<'CSV'
mac,wifi_ssid
02:00:00:00:00:01,0123456789012345678901234567890123456789
CSV
expect_error empty "empty.csv:1: header: expected a header row" </dev/null
expect_error header_only "header_only.csv:2: expected at least one device row" <<'CSV'
mac
CSV
# Several errors in one file are all reported, each with its line.
expect_error several "several.csv:3: mac" <<'CSV'
mac,name
02:00:00:00:00:01,a
zz,b
02:00:00:00:00:02,c,d
CSV
grep -q 'several.csv:4: expected 2 fields' several.err || fail "second error not reported"

# Quoting that is valid RFC 4180 is accepted: embedded commas, quotes, newlines, CRLF.
printf 'mac,name,wifi_ssid,wifi_password\r\n02:00:00:00:00:01,"a, ""b""\r\nc",Lab,"p,w"\r\n' >ok.csv
"$PK" batch --csv ok.csv --output-dir out_ok >/dev/null || fail "valid RFC 4180 CSV refused"
grep -qF '"name": "a, \"b\"\u000d\u000ac"' out_ok/robot-020000000001.json || fail "quoted name not kept"

# An existing output directory is left exactly as it was by a bad CSV.
tree_sums out_ok >before.sha
printf 'mac\n02:00:00:00:00:01\nbad\n' >bad2.csv
if "$PK" batch --csv bad2.csv --output-dir out_ok 2>/dev/null; then fail "bad2 accepted"; fi
tree_sums out_ok | cmp -s - before.sha || fail "bad CSV changed an existing output directory"
echo "csv_errors: ok ($n cases)"
