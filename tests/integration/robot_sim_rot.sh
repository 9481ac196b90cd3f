#!/bin/sh
# robot-sim and credential rotation (issue 14):
#   sh robot_sim_rot.sh BIN_DIR VECTORS_DIR SOURCE_DIR TMP_DIR
# 1. `robot-sim --help` lists every option robot-sim parses, boot and service options alike
#    (taken from the sources, so a new option without a help line fails here).
# 2. --power-cut-at-write K (clean and torn) at every flash write of a boot that has to repair
#    an interrupted PSK rotation (a spare-slot PSK no record names staged): the robot always
#    boots afterwards with its PSK intact, and the repair converges. Count printed.
set -eu
BIN=$1
VEC=$2/nvs
SRC=$3
TMP=$4
RS="$BIN/robot-sim"
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP"
. "$SRC/tests/integration/lib.sh" # fail, run, expect

# 1. --help
run 0 help "$RS" --help
opts=$(grep -ho 'strcmp([a-z]*, "--[a-z0-9-]*")' "$SRC"/tools/robot-sim/main.c \
    "$SRC"/tools/robot-sim/services.c "$SRC"/tools/robot-sim/wss_service.c \
    "$SRC"/tools/robot-sim/fleet.c |
    sed 's/.*"\(--[a-z0-9-]*\)".*/\1/' | sort -u)
[ -n "$opts" ] || fail "no options found in the sources"
n=0
for o in $opts; do
    case "$o" in --download-mode) continue ;; esac
    grep -q -- "$o" help.out || fail "robot-sim --help does not list $o"
    n=$((n + 1))
done
echo "robot-sim --help lists all $n options"

# 2. power cuts during the boot's rotation repair
printf 'CONFIG_PRODUCTION_BUILD=y\nCONFIG_NVS_ENCRYPTION=y\nCONFIG_SECURE_BOOT_V2_ENABLED=y\n' \
    >prod.sdkconfig
run 0 mk "$RS" flash-image create --out base.img --nvs "$VEC/prov_enc.bin" \
    --nvs-keys "$VEC/nvs_keys_prov.bin"
run 0 psk0 "$RS" nvs get --flash base.img --ns security --key dtls_psk
head -c 32 /dev/urandom >spare.bin
run 0 spare "$RS" nvs set --flash base.img --ns security --key dtls_psk_b --file spare.bin
sweeps=0
for torn in no yes; do
    k=1
    while :; do
        cp base.img cut.img
        extra=""
        [ $torn = yes ] && extra=--power-cut-torn
        set +e
        # shellcheck disable=SC2086
        "$RS" --flash cut.img --sdkconfig prod.sdkconfig --boot-only --power-cut-at-write $k \
            $extra >cut.out 2>cut.err
        rc=$?
        set -e
        [ $rc = 0 ] || [ $rc = 6 ] || fail "cut $k ($torn): exit $rc"
        # Power back: the robot boots, its PSK is the one it had, the spare slot is gone.
        run 0 boot "$RS" --flash cut.img --sdkconfig prod.sdkconfig --boot-only
        run 0 psk "$RS" nvs get --flash cut.img --ns security --key dtls_psk
        cmp -s psk.out psk0.out || fail "cut $k ($torn): the PSK changed"
        run 1 gone "$RS" nvs get --flash cut.img --ns security --key dtls_psk_b
        sweeps=$((sweeps + 1))
        [ $rc = 6 ] || break # this boot finished before the K-th write: every write was cut
        k=$((k + 1))
        [ $k -lt 50 ] || fail "the repair never finished"
    done
done
echo "robot-sim power-cut sweep of the rotation repair: $sweeps boots (clean and torn): 0 failures"
