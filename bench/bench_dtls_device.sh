#!/bin/sh
# bench_dtls_device (issue 18): the heap high-water of the example robot's TLS users together
# (the DTLS-PSK listener with 2 sessions open plus the wss client through its mTLS handshake,
# bench/device_heap.c), with Debian's host Mbed TLS (16 KiB record buffers) and with Mbed TLS
# 2.28 built from Debian's source package with the example's configuration
# (examples/esp-idf-robot/main/mbedtls_user.h, the CONFIG_MBEDTLS_* of its sdkconfig.defaults).
# Goal (issue 18): <= 64 KiB with the device configuration. Figures only; no assertion.
#
# The source: $FK_MBEDTLS_SRC (an unpacked mbedtls source tree), else `apt-get source mbedtls`
# into the build directory, which needs a deb-src line in the apt sources (docs/esp-idf.md).
#   sh bench/bench_dtls_device.sh BUILD_DIR
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build-bench}" && pwd)
work=$build/bench_dtls_device
cfg=$here/examples/esp-idf-robot/main/mbedtls_user.h
mkdir -p "$work"
cc=${CC:-cc}

# ---- Mbed TLS from Debian's source, the example's configuration ----
src=${FK_MBEDTLS_SRC:-}
if [ -z "$src" ]; then
    src=$(find "$work/src" -maxdepth 1 -type d -name 'mbedtls-2.28*' 2>/dev/null | head -n 1)
fi
if [ -z "$src" ]; then
    mkdir -p "$work/src"
    if ! (cd "$work/src" && apt-get source mbedtls >"$work/apt-source.log" 2>&1); then
        echo "bench_dtls_device: skipped: 'apt-get source mbedtls' failed (no deb-src line in" \
            "the apt sources? see docs/esp-idf.md); $work/apt-source.log says why"
        exit 0
    fi
    src=$(find "$work/src" -maxdepth 1 -type d -name 'mbedtls-2.28*' | head -n 1)
fi
ver=$(sed -n 's/^#define MBEDTLS_VERSION_STRING *"\(.*\)"/\1/p' "$src/include/mbedtls/version.h")
case $ver in
2.28.*) ;;
*) echo "bench_dtls_device: skipped: $src is Mbed TLS $ver, not 2.28"; exit 0 ;;
esac
lib=$work/mbedtls-device
# Rebuilt when the configuration changed (the stamp holds its checksum).
sum=$(cksum <"$cfg")
if [ ! -f "$lib/stamp" ] || [ "$(cat "$lib/stamp")" != "$sum" ]; then
    rm -rf "$lib"
    mkdir -p "$lib"
    cp -R "$src/include" "$src/library" "$src/3rdparty" "$lib/"
    make -s -C "$lib/library" -j2 CC="$cc" \
        CFLAGS="-O2 -DMBEDTLS_USER_CONFIG_FILE='\"$cfg\"'" \
        libmbedcrypto.a libmbedx509.a libmbedtls.a >"$work/mbedtls-build.log" 2>&1 || {
        echo "bench_dtls_device: building Mbed TLS $ver failed; see $work/mbedtls-build.log" >&2
        exit 1
    }
    echo "$sum" >"$lib/stamp"
fi

# ---- the same program twice: Debian's Mbed TLS, and the device build ----
# device/src/rom is robot-sim's simulated ESP32 ROM (it needs MD5): not part of a robot.
dev_srcs=$(find "$here/device/src" -name '*.c' ! -path '*/src/rom/*' | sort)
common="-std=gnu11 -O2 -D_GNU_SOURCE -I$here/device/include -I$here/device/src
-I$here/device/port/posix -I$here/bench"
srcs="$here/bench/device_heap.c $dev_srcs $here/device/port/posix/net_posix.c
$here/device/port/posix/flash_file.c"
# shellcheck disable=SC2086
$cc $common -o "$work/device_heap_host" $srcs -lmbedtls -lmbedx509 -lmbedcrypto -lwslay \
    -lssl -lcrypto 2>"$work/host-cc.log" ||
    { echo "bench_dtls_device: host build failed; see $work/host-cc.log" >&2; exit 1; }
# shellcheck disable=SC2086
$cc $common -I"$lib/include" -DMBEDTLS_USER_CONFIG_FILE="\"$cfg\"" -o "$work/device_heap_dev" \
    $srcs "$lib/library/libmbedtls.a" "$lib/library/libmbedx509.a" \
    "$lib/library/libmbedcrypto.a" -lwslay -lssl -lcrypto 2>"$work/dev-cc.log" ||
    { echo "bench_dtls_device: device build failed; see $work/dev-cc.log" >&2; exit 1; }

# ---- certificates: a P-256 CA, the control plane (SAN localhost) and the robot ----
pki=$work/pki
rm -rf "$pki"
mkdir -p "$pki"
(
    cd "$pki"
    ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    # shellcheck disable=SC2086
    openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    for who in server client; do
        # shellcheck disable=SC2086
        openssl req $ec -keyout "$who.key" -out "$who.csr" -subj "/CN=$who" 2>/dev/null
    done
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    for who in server client; do
        openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile "$who.ext" -out "$who.pem" 2>/dev/null
    done
    chmod 600 ./*.key
)

echo "bench_dtls_device: example robot, DTLS listener with 2 sessions open + wss client handshake"
for v in host dev; do
    "$work/device_heap_$v" "$pki" >"$work/$v.out" ||
        { echo "bench_dtls_device: the $v run failed" >&2; exit 1; }
done
sed 's/^device_heap:/  host (Debian libmbedtls):/' "$work/host.out"
sed 's/^device_heap:/  device (example config):/' "$work/dev.out"
host=$(sed -n 's/.*high-water *\([0-9]*\) bytes.*/\1/p' "$work/host.out")
dev=$(sed -n 's/.*high-water *\([0-9]*\) bytes.*/\1/p' "$work/dev.out")
if [ -n "$host" ] && [ -n "$dev" ]; then
    awk -v h="$host" -v d="$dev" 'BEGIN {
        printf "bench_dtls_device: high-water %.1f KiB (device config) vs %.1f KiB (host), " \
            "ratio %.2f; goal <= 64 KiB: %s\n", d / 1024, h / 1024, d / h,
            d <= 65536 ? "met" : "NOT met" }'
fi
