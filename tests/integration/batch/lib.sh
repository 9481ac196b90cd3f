# Shared helpers of the batch integration tests (sourced by bash).
set -euo pipefail
: "${FK_BIN:?FK_BIN must point at the bin directory of the build}"
: "${FK_TMP:?FK_TMP must name a scratch directory}"
PK="$FK_BIN/provision-keys"
CHECK_FLEET="$FK_BIN/check_fleet"
FK_BATCH_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rm -rf "$FK_TMP"
mkdir -p "$FK_TMP"
cd "$FK_TMP"

# The inventory the scripts pass with --inventory: keys/inventory.db (the default), or with
# FK_PG=1 (the *_pg CTest cases, issue 15) a database on a throw-away PostgreSQL cluster.
INV=keys/inventory.db
if [ "${FK_PG:-0}" = 1 ]; then
    . "$FK_BATCH_LIB/../skip.sh"
    . "$FK_BATCH_LIB/../pg_lib.sh"
    fk_pg_start "$FK_TMP/pg"
    fk_pg_createdb fleet
    INV=$(fk_pg_uri fleet)
fi

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# mode_of FILE -> octal permission bits, e.g. 600
mode_of() {
    stat -c %a "$1"
}

# json_str FILE FIELD -> the string value of "FIELD": "value" in a pretty-printed manifest
json_str() {
    sed -n "s/^  \"$2\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$1"
}

# json_raw FILE FIELD -> the raw value (true, false, null, numbers)
json_raw() {
    sed -n "s/^  \"$2\": \\([^\",]*\\),\\{0,1\\}\$/\\1/p" "$1"
}

# make_csv N FILE [prefix byte]: N devices with names, Wi-Fi and a quoted password each.
make_csv() {
    local n=$1 out=$2 p=${3:-02}
    {
        echo 'mac,name,wifi_ssid,wifi_password'
        for ((i = 0; i < n; i++)); do
            printf '%s:00:00:%02X:%02X:%02X,"bot, number %d",FleetLab,"pw""%d"\n' \
                "$p" $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255)) "$i" "$i"
        done
    } >"$out"
}

# tree_sums DIR -> sha256 of every device and key file, sorted (the idempotency fingerprint)
tree_sums() {
    (cd "$1" && find . -maxdepth 1 -type f \( -name 'robot-*' -o -name '*.pem' \) -print0 |
        sort -z | xargs -0 sha256sum)
}
