#!/usr/bin/env bash
# provision-keys batch on 200 devices: every device consistent (check_fleet), modes 0600,
# no secret printed, and a second run changes nothing at all.
. "$(dirname "$0")/lib.sh"

make_csv 200 devices.csv
"$PK" batch --inventory "$INV" --csv devices.csv --output-dir keys --jobs 2 --encrypt-nvs --json >sum.json 2>err.txt ||
    fail "batch failed: $(cat err.txt)"
grep -q '"ok":true' sum.json || fail "summary: $(cat sum.json)"
grep -q '"minted":200' sum.json || fail "summary: $(cat sum.json)"
"$CHECK_FLEET" keys 200 "$INV" || fail "fleet inconsistent"
[ -f keys/ota_signing.key.pem ] || fail "no fleet key"
[ -z "$(find keys -type f ! -perm 600)" ] || fail "files not 0600: $(find keys -type f ! -perm 600)"
[ "$(ls keys/robot-*.nvs_keys.bin | wc -l)" = 200 ] || fail "nvs_keys files"
! ls keys/robot-*.key.pem >/dev/null 2>&1 || fail "per-device private keys in batch"
m=keys/robot-020000000007.json
[ "$(json_str "$m" name)" = "bot, number 7" ] || fail "name with a comma: $(json_str "$m" name)"
for f in keys/robot-02000000000*.json; do
    ! grep -qF "$(json_str "$f" psk_hex)" sum.json err.txt || fail "PSK printed"
done

# Re-run: nothing minted, not one byte changed.
tree_sums keys >before.sha
"$PK" inventory --inventory "$INV" --json list >before.list
"$PK" batch --inventory "$INV" --csv devices.csv --output-dir keys --jobs 2 --encrypt-nvs --json >sum2.json
grep -q '"minted":0' sum2.json || fail "re-run minted: $(cat sum2.json)"
grep -q '"already_complete":200' sum2.json || fail "re-run: $(cat sum2.json)"
tree_sums keys >after.sha
cmp -s before.sha after.sha || fail "re-run changed files: $(diff before.sha after.sha | head)"
"$PK" inventory --inventory "$INV" --json list >after.list
cmp -s before.list after.list || fail "re-run changed the inventory"
"$CHECK_FLEET" keys 200 "$INV" || fail "fleet inconsistent after re-run"

# A CSV that grew: only the new devices are minted.
make_csv 250 devices.csv
"$PK" batch --inventory "$INV" --csv devices.csv --output-dir keys --jobs 1 --encrypt-nvs --json >sum3.json
grep -q '"minted":50' sum3.json || fail "grown CSV: $(cat sum3.json)"
tree_sums keys | grep -F -f before.sha | cmp -s - before.sha || fail "grown CSV changed old devices"
"$CHECK_FLEET" keys 250 "$INV" || fail "fleet inconsistent after growth"

# A recorded device whose manifest was damaged is reported, never silently re-minted.
cp keys/robot-020000000005.json saved.json
echo ' ' >>keys/robot-020000000005.json
if "$PK" batch --inventory "$INV" --csv devices.csv --output-dir keys --encrypt-nvs >/dev/null 2>err.txt; then
    fail "damaged recorded device accepted"
fi
grep -q 'robot-020000000005' err.txt || fail "damaged device not named: $(cat err.txt)"
cp saved.json keys/robot-020000000005.json
"$PK" inventory --inventory "$INV" verify-audit | grep -q intact || fail "audit"

# Two batches into one directory at once: the second is refused.
exec 9>keys/.batch.lock
flock -n 9
if "$PK" batch --inventory "$INV" --csv devices.csv --output-dir keys 2>err.txt; then
    fail "second concurrent batch ran"
fi
grep -q 'another batch' err.txt || fail "lock message: $(cat err.txt)"
exec 9>&-
echo "batch: ok"
