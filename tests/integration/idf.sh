#!/bin/sh
# The ESP-IDF component's checks that need no ESP-IDF tree (issue 18):
#   kconfig:    device/Kconfig read by kconfiglib (scripts/kconfig-check) with its defaults, with
#               the example's development defaults, and with its production defaults (which must
#               come out a production build); then a copy with a development fallback that
#               lost its `depends on !PRODUCTION_BUILD` must fail, naming the symbol;
#   partitions: examples/esp-idf-robot/partitions.csv is, byte for byte, what
#               `provision-keys nvs partition-table default` prints.
#   sh tests/integration/idf.sh kconfig|partitions SRC_DIR TMP_DIR
set -eu
what=$1
src=$2
tmp=$3
. "$src/tests/integration/skip.sh"
rm -rf "$tmp"
mkdir -p "$tmp"
ex=$src/examples/esp-idf-robot
py=/usr/bin/python3
[ -x "$py" ] || py=python3

case $what in
kconfig)
    "$py" -c 'import kconfiglib' 2>/dev/null ||
        fk_skip "python3-kconfiglib is not installed (scripts/packages.d/idf.txt)"
    "$py" "$src/scripts/kconfig-check" --out "$tmp/dev.h"
    grep -q '^#define CONFIG_MINITRAIN_DTLS_PORT 5684$' "$tmp/dev.h"
    grep -q '^#define CONFIG_WIFI_PASSWORD ""$' "$tmp/dev.h"
    "$py" "$src/scripts/kconfig-check" --defaults "$ex/sdkconfig.defaults" --out "$tmp/exdev.h"
    if grep -q 'CONFIG_PRODUCTION_BUILD' "$tmp/exdev.h"; then
        echo "FAIL: the example's development defaults made a production build" >&2
        exit 1
    fi
    "$py" "$src/scripts/kconfig-check" --defaults "$ex/sdkconfig.defaults" \
        --defaults "$ex/sdkconfig.defaults.prod" --expect-production --out "$tmp/prod.h"
    grep -q '^#define CONFIG_PRODUCTION_BUILD 1$' "$tmp/prod.h"
    grep -q '^#define CONFIG_NVS_ENCRYPTION 1$' "$tmp/prod.h"
    grep -q '^#define CONFIG_SECURE_BOOT_V2_ENABLED 1$' "$tmp/prod.h"
    for fallback in WIFI_SSID WIFI_PASSWORD MINITRAIN_CLIENT_CERT_PEM MINITRAIN_CLIENT_KEY_PEM; do
        if grep -q "CONFIG_$fallback" "$tmp/prod.h"; then
            echo "FAIL: CONFIG_$fallback in a production sdkconfig.h" >&2
            exit 1
        fi
    done
    # The development defaults alone must not pass as production.
    if "$py" "$src/scripts/kconfig-check" --defaults "$ex/sdkconfig.defaults" \
        --expect-production >"$tmp/notprod.out" 2>&1; then
        echo "FAIL: --expect-production accepted a development configuration" >&2
        exit 1
    fi
    # A planted regression: the Wi-Fi password fallback without its dependency.
    mkdir -p "$tmp/tree/scripts" "$tmp/tree/device"
    cp "$src/scripts/kconfig-check" "$tmp/tree/scripts/"
    cp "$src/device/Kconfig.host" "$tmp/tree/device/"
    awk '/config WIFI_PASSWORD/ { inpw = 1 } inpw && /depends on !PRODUCTION_BUILD/ { inpw = 0; next }
        { print }' "$src/device/Kconfig" >"$tmp/tree/device/Kconfig"
    if "$py" "$tmp/tree/scripts/kconfig-check" >"$tmp/planted.out" 2>&1; then
        echo "FAIL: kconfig-check accepted WIFI_PASSWORD without depends on !PRODUCTION_BUILD" >&2
        exit 1
    fi
    grep -q 'CONFIG_WIFI_PASSWORD: depends on' "$tmp/planted.out"
    grep -q 'CONFIG_WIFI_PASSWORD: still present in a production build' "$tmp/planted.out"
    echo "idf kconfig: ok"
    ;;
partitions)
    "$FK_BIN/provision-keys" nvs partition-table default >"$tmp/default.csv"
    if ! cmp "$tmp/default.csv" "$ex/partitions.csv"; then
        echo "FAIL: examples/esp-idf-robot/partitions.csv differs from" \
            "'provision-keys nvs partition-table default':" >&2
        diff "$tmp/default.csv" "$ex/partitions.csv" >&2 || true
        exit 1
    fi
    echo "idf partitions: ok"
    ;;
*)
    echo "idf.sh: unknown check $what" >&2
    exit 2
    ;;
esac
