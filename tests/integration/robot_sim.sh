#!/bin/sh
# Integration test of robot-sim: flash images from the NVS vectors (made by ESP-IDF's
# nvs_partition_gen) and from `provision-keys nvs`, booted in development and production,
# policy outcomes, MINITRAIN_* env overrides, the nvs subcommand, a power-cut sweep on the
# image file, a custom partition table, and that no secret reaches the output.
# Usage: robot_sim.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
BIN=$1
VEC=$2/nvs
TMP=$3
RS="$BIN/robot-sim"
PK="$BIN/provision-keys"
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# expect CODE CMD...: runs CMD, output in out.txt/err.txt, checks the exit code.
expect() {
    _want=$1
    shift
    set +e
    "$@" >out.txt 2>err.txt
    _got=$?
    set -e
    if [ "$_got" != "$_want" ]; then
        cat out.txt err.txt >&2
        fail "exit $_got, wanted $_want: $*"
    fi
}
has() { grep -q -- "$1" "$2" || { cat "$2" >&2; fail "$2 lacks: $1"; }; }
lacks() { if grep -q -- "$1" "$2"; then cat "$2" >&2; fail "$2 has: $1"; fi; }

cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_WSS_URI="wss://cp.example:443/device"
CONFIG_MINITRAIN_EXPECTED_HOST="cp.example"
CONFIG_WIFI_SSID="devnet"
CONFIG_WIFI_PASSWORD="kconfig-pw-1"
CFG
cat >dev.sdkconfig <<'CFG'
# CONFIG_PRODUCTION_BUILD is not set
# CONFIG_NVS_ENCRYPTION is not set
CONFIG_MINITRAIN_WSS_URI="wss://cp.example:443/device"
CONFIG_WIFI_SSID="devnet"
CONFIG_WIFI_PASSWORD="kconfig-pw-1"
CFG
grep -v NVS_ENCRYPTION prod.sdkconfig >prod_plain.sdkconfig
grep -v SECURE_BOOT prod.sdkconfig >prod_nosb.sdkconfig

# 1. Production robot from the generator's encrypted provisioning vector: boots, DTLS.
expect 0 "$RS" flash-image create --out prov_enc.img --nvs "$VEC/prov_enc.bin" \
    --nvs-keys "$VEC/nvs_keys_prov.bin"
expect 0 "$RS" --flash prov_enc.img --sdkconfig prod.sdkconfig --boot-only --status-json
has '"build":"production","boot_allowed":true' out.txt
has '"listener":"dtls"' out.txt
has '"nvs_encrypted":true' out.txt
has '"security/dtls_psk":{"source":"nvs","valid":true,"bytes":32' out.txt
has '"wifi/ssid":{"source":"nvs"' out.txt
has 'mounted encrypted' err.txt
# The PSK (SHA-256("fleetkey-vector-psk-1")) and the Wi-Fi password never appear.
cat out.txt err.txt >all.txt
lacks 50b3f7f7c416ce0937abf4ac096bdb5b08f8a528fa31c0a3253601bd6656cfc4 all.txt
lacks 'Tr41n-R0b0t#2026' all.txt
lacks 'kconfig-pw-1' all.txt
# The text posture, and the image is untouched by a clean boot.
cp prov_enc.img before.img
expect 0 "$RS" --flash prov_enc.img --sdkconfig prod.sdkconfig --boot-only
has 'rule secure-boot: held' out.txt
cmp -s before.img prov_enc.img || fail "booting a clean image changed it"

# 2. Production policy refusals, each naming its rule.
expect 0 "$RS" flash-image create --out prov_plain.img --nvs "$VEC/prov_plain.bin"
expect 3 "$RS" --flash prov_plain.img --sdkconfig prod.sdkconfig --boot-only
has 'nvs_keys .* holds no usable keys' err.txt
has 'rule nvs-encrypted violated' err.txt
has 'rule ota-key-required violated' err.txt
expect 3 "$RS" --flash prov_plain.img --sdkconfig prod_plain.sdkconfig --boot-only --status-json
has '"refused_by":"nvs-encrypted"' out.txt
expect 3 "$RS" --flash prov_enc.img --sdkconfig prod_nosb.sdkconfig --boot-only
has 'rule secure-boot violated' err.txt
# An encrypted image with a blank nvs_keys partition cannot be read at all.
expect 0 "$RS" flash-image create --out nokeys.img --nvs "$VEC/prov_enc.bin"
expect 3 "$RS" --flash nokeys.img --sdkconfig prod.sdkconfig --boot-only
has 'NVS not mounted' err.txt

# 3. Development: the plain vector boots with DTLS; an empty NVS falls back and degrades.
expect 0 "$RS" --flash prov_plain.img --sdkconfig dev.sdkconfig --boot-only --status-json
has '"build":"development","boot_allowed":true' out.txt
has '"listener":"dtls"' out.txt
has '"wifi":"nvs"' out.txt
expect 0 "$RS" flash-image create --out empty.img
expect 0 "$RS" --flash empty.img --sdkconfig dev.sdkconfig --boot-only --status-json
has '"listener":"plaintext"' out.txt
has '"updates_enabled":false' out.txt
has '"wifi":"kconfig"' out.txt
has '"wifi/password":{"source":"kconfig"' out.txt
has 'E policy: rule dtls-required not held: no valid PSK; control channel runs UNENCRYPTED' err.txt
has 'rule ota-key-required not held' err.txt
expect 3 "$RS" --flash empty.img --sdkconfig prod_plain.sdkconfig --boot-only --status-json
has '"wifi":"off"' out.txt
has '"listener":"refused"' out.txt
has 'Kconfig Wi-Fi fallback not used' err.txt

# 4. MINITRAIN_* environment overrides: development only.
MINITRAIN_WSS_URI=wss://from-env/ MINITRAIN_CLIENT_KEY_PEM=SECRET-ENV-KEY \
    expect 0 "$RS" --flash prov_plain.img --sdkconfig dev.sdkconfig --boot-only --status-json
has '"wss_uri":"wss://from-env/","wss_uri_source":"env"' out.txt
has '"mtls/client_key":{"source":"env"' out.txt
lacks SECRET-ENV-KEY out.txt
lacks SECRET-ENV-KEY err.txt
MINITRAIN_WSS_URI=wss://from-env/ MINITRAIN_CLIENT_KEY_PEM=SECRET-ENV-KEY \
    expect 0 "$RS" --flash prov_enc.img --sdkconfig prod.sdkconfig --boot-only --status-json
has '"wss_uri":"wss://cp.example:443/device","wss_uri_source":"sdkconfig"' out.txt
has '"env_ignored":true' out.txt
has '"mtls/client_key":{"source":"none"' out.txt
test "$(grep -c 'ignoring environment overrides MINITRAIN_WSS_URI MINITRAIN_CLIENT_KEY_PEM' \
    err.txt)" = 1 || fail "production must say once that it ignored the env overrides"
lacks SECRET-ENV-KEY err.txt

# 5. Bad sdkconfig: the line is named, the robot does not boot.
printf 'CONFIG_PRODUCTION_BUILD=y\nCONFIG_WIFI_SSID="open\n' >bad.sdkconfig
expect 2 "$RS" --flash prov_enc.img --sdkconfig bad.sdkconfig --boot-only
has 'bad.sdkconfig:2: unterminated quoted string' err.txt

# 6. Images from provision-keys nvs load unchanged (plain and encrypted).
if "$PK" nvs --help >/dev/null 2>&1; then
    expect 0 "$PK" nvs generate "$VEC/prov.csv" pk_plain.bin 0x6000 --base-dir "$VEC"
    cmp -s pk_plain.bin "$VEC/prov_plain.bin" || fail "provision-keys nvs differs from GEN"
    expect 0 "$PK" nvs encrypt "$VEC/edge.csv" pk_edge_enc.bin 0x8000 --base-dir "$VEC" \
        --inputkey "$VEC/nvs_keys_1122.bin"
    printf 'nvs,data,nvs,0x9000,0x8000,\nnvs_keys,data,nvs_keys,0x11000,0x1000,encrypted\n' \
        >edge_parts.csv
    expect 0 "$RS" flash-image create --out pk_edge.img --size 1M --partitions edge_parts.csv \
        --nvs pk_edge_enc.bin --nvs-keys "$VEC/nvs_keys_1122.bin"
    expect 0 "$RS" nvs get --flash pk_edge.img --ns edge --key i64_min
    has '^-9223372036854775808$' out.txt
    expect 0 "$RS" nvs get --flash pk_edge.img --ns edge --key csv_quoted
    has '^a,b "quoted" c$' out.txt
    expect 0 "$RS" nvs get --flash pk_edge.img --ns other --key after_other
    has '^3735928559$' out.txt
    expect 0 "$RS" nvs get --flash pk_edge.img --ns edge --key hex_val
    has '^deadbeef00ff$' out.txt
    expect 0 "$RS" nvs list --flash pk_edge.img
    test "$(wc -l <out.txt)" = 30 || fail "edge.csv has 30 items"
fi

# 7. nvs set/get/erase through the device runtime, on the image file.
cp prov_enc.img rw.img
expect 0 "$RS" nvs set --flash rw.img --ns wifi --key ssid --str "NewNet"
expect 0 "$RS" nvs get --flash rw.img --ns wifi --key ssid
has '^NewNet$' out.txt
expect 0 "$RS" nvs set --flash rw.img --ns robot --key boots --u32 41
expect 0 "$RS" nvs get --flash rw.img --ns robot --key boots
has '^41$' out.txt
expect 0 "$RS" nvs erase --flash rw.img --ns robot --key boots
expect 1 "$RS" nvs get --flash rw.img --ns robot --key boots
expect 0 "$RS" --flash rw.img --sdkconfig prod.sdkconfig --boot-only --status-json
has '"wifi/ssid":{"source":"nvs","valid":true,"bytes":6' out.txt

# 8. Power-cut sweep on the file: replace a 5000-byte blob (spanning pages) and cut the flash
# after N program operations, for every N, until the set completes. After each cut the next
# boot must read the old or the new blob, and the robot must still boot.
# A small chip (64 KiB, just nvs + nvs_keys) keeps each of the ~160 rounds cheap.
printf 'nvs,data,nvs,0x9000,0x6000,\nnvs_keys,data,nvs_keys,0xF000,0x1000,encrypted\n' \
    >small_parts.csv
expect 0 "$RS" flash-image create --out rw.img --size 64K --partitions small_parts.csv \
    --nvs "$VEC/prov_enc.bin" --nvs-keys "$VEC/nvs_keys_prov.bin"
head -c 5000 "$VEC/blob5000.bin" >old.bin
head -c 4600 "$VEC/blob10000.bin" >new.bin
expect 0 "$RS" nvs set --flash rw.img --ns security --key fw --file old.bin
OLD=$(od -An -v -tx1 old.bin | tr -d ' \n')
NEW=$(od -An -v -tx1 new.bin | tr -d ' \n')
n=1
while :; do
    cp rw.img cut.img
    set +e
    "$RS" nvs set --flash cut.img --ns security --key fw --file new.bin --cut-after $n --torn \
        >/dev/null 2>&1
    rc=$?
    set -e
    expect 0 "$RS" nvs get --flash cut.img --ns security --key fw
    val=$(cat out.txt)
    [ "$val" = "$OLD" ] || [ "$val" = "$NEW" ] || fail "cut $n: blob is neither old nor new"
    if [ $((n % 10)) = 1 ] || [ $rc = 0 ]; then
        # Every tenth cut (process start-up is slow under sanitizers): the robot still boots.
        expect 0 "$RS" --flash cut.img --sdkconfig prod.sdkconfig --boot-only
    fi
    if [ $rc = 0 ]; then
        [ "$val" = "$NEW" ] || fail "cut $n: completed set did not store the new blob"
        break
    fi
    [ $rc = 5 ] || fail "cut $n: exit $rc"
    n=$((n + 1))
    [ $n -lt 1000 ] || fail "the set never completed"
done
echo "robot-sim power-cut sweep on the image file: $((n - 1)) cut points checked"
echo "robot_sim integration: OK"
