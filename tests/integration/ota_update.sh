#!/bin/sh
# OTA updates on robot-sim, end to end with real files: app images from mkappimage, signed by
# `provision-keys sign` with the Secure Boot V2 vectors' keys (A = old, B = new), streamed by
# `robot-sim ota` into a production robot provisioned by `provision-keys generate`, booted,
# confirmed or rolled back; refusals (unsigned, untrusted key, tampered, anti-rollback,
# development without a key); dual-signed images on robots trusting only the old or only the
# new key; a power cut at every flash operation of an update (clean and torn) followed by two
# boots that must each run a valid image.
# Usage: ota_update.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
BIN=$1
VEC=$2/sbv2
TMP=$3
RS="$BIN/robot-sim"
PK="$BIN/provision-keys"
MK="$BIN/mkappimage"
. "$(dirname "$0")/skip.sh"
"$PK" generate --help >/dev/null 2>&1 || fk_skip "provision-keys generate not built"
command -v openssl >/dev/null 2>&1 || fk_skip "openssl not installed"
rm -rf "$TMP"
mkdir -p "$TMP/keys"
. "$(dirname "$0")/lib.sh"
cd "$TMP"

# ---- images -------------------------------------------------------------------------------
openssl pkey -in "$VEC/key_a.pem" -pubout -outform DER -out a.der 2>/dev/null
openssl pkey -in "$VEC/key_b.pem" -pubout -outform DER -out b.der 2>/dev/null
"$MK" --version 1.0.0 --secure-version 1 --segment-len 3000 --seed 1 v1.bin
"$MK" --version 2.0.0 --secure-version 2 --segment-len 3000 --seed 2 v2.bin
"$MK" --version 0.9.0 --secure-version 0 --segment-len 3000 --seed 3 v0.bin
run 0 sign1 "$PK" sign --key "$VEC/key_a.pem" --output v1.a.bin v1.bin
run 0 sign2 "$PK" sign --key "$VEC/key_a.pem" --output v2.a.bin v2.bin
run 0 sign3 "$PK" sign --key "$VEC/key_b.pem" --output v2.b.bin v2.bin
run 0 sign4 "$PK" sign --key "$VEC/key_a.pem" --key "$VEC/key_b.pem" --output v2.ab.bin v2.bin
run 0 sign5 "$PK" sign --key "$VEC/key_a.pem" --output v0.a.bin v0.bin
# Tampered after signing: one bit of the app's second segment.
cp v2.a.bin v2.tampered.bin
printf '\001' | dd of=v2.tampered.bin bs=1 seek=700 conv=notrunc 2>/dev/null
# "Unsigned": the app padded like a signed image, with an erased signature sector.
size=$(wc -c <v2.a.bin)
{ head -c $((size - 4096)) v2.a.bin; head -c 4096 /dev/zero | tr '\000' '\377'; } >v2.unsigned.bin

# ---- a production robot trusting key A --------------------------------------------------------
printf 'Tr41n-R0b0t#2026\n' >wifi.pw
run 0 gen "$PK" generate --output keys/device_001.json --mac AA:BB:CC:DD:EE:01 \
    --wifi-ssid FleetLab-5G --wifi-password-file wifi.pw --encrypt-nvs
run 0 create "$RS" flash-image create --out robot.img --nvs keys/device_001.nvs.bin \
    --nvs-keys keys/device_001.nvs_keys.bin
run 0 setkey "$RS" nvs set --flash robot.img --ns security --key ota_pubkey --file a.der
cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CFG
P="--sdkconfig prod.sdkconfig"
run 0 boot0 "$RS" --flash robot.img $P --boot-only
expect boot0.out "running: none"

# Factory: v1 from a file, then its first boot confirms it.
run 0 ota1 "$RS" ota --flash robot.img $P --image v1.a.bin --chunk 1000
expect ota1.out "installed robot 1.0.0 (secure_version 1) into ota_0"
run 0 boot1 "$RS" --flash robot.img $P --boot-only --self-test pass
expect boot1.out "running: ota_0"
expect boot1.out "app: robot 1.0.0, secure_version 1"
expect boot1.out "app state: pending-verify"
expect boot1.out "app signature: verified"
expect boot1.out "self-test: pass"
run 0 boot1b "$RS" --flash robot.img $P --boot-only
expect boot1b.out "app state: valid"

# v2 that never confirms: the boot after rolls back to v1.
run 0 ota2 "$RS" ota --flash robot.img $P --image v2.a.bin --chunk 777
expect ota2.out "into ota_1"
run 0 boot2 "$RS" --flash robot.img $P --boot-only
expect boot2.out "running: ota_1"
expect boot2.out "app: robot 2.0.0, secure_version 2"
expect boot2.out "app state: pending-verify"
run 0 boot3 "$RS" --flash robot.img $P --boot-only
expect boot3.out "running: ota_0"
expect boot3.out "app: robot 1.0.0"
expect boot3.out "(rolled back)"
expect boot3.err "ABORTED"

# v2 that fails its self-test: marked invalid, the next boot runs v1.
run 0 ota3 "$RS" ota --flash robot.img $P --image v2.a.bin
run 0 boot4 "$RS" --flash robot.img $P --boot-only --self-test fail
expect boot4.out "running: ota_1"
expect boot4.out "self-test: fail"
run 0 boot5 "$RS" --flash robot.img $P --boot-only
expect boot5.out "running: ota_0"
expect boot5.out "app: robot 1.0.0"

# Refusals: each logged, none touches otadata (0x11000, two sectors).
dd if=robot.img of=otadata.before bs=4096 skip=17 count=2 2>/dev/null
run 5 r_unsigned "$RS" ota --flash robot.img $P --image v2.unsigned.bin
expect r_unsigned.err "REFUSED: no valid signature from a trusted key"
run 5 r_raw "$RS" ota --flash robot.img $P --image v2.bin
expect r_raw.err "not a signed image"
run 5 r_wrongkey "$RS" ota --flash robot.img $P --image v2.b.bin
expect r_wrongkey.err "untrusted key"
run 5 r_tampered "$RS" ota --flash robot.img $P --image v2.tampered.bin
expect r_tampered.err "changed after signing"
run 5 r_rollback "$RS" ota --flash robot.img $P --image v0.a.bin
expect r_rollback.err "anti-rollback"
dd if=robot.img of=otadata.after bs=4096 skip=17 count=2 2>/dev/null
cmp -s otadata.before otadata.after || fail "a refused update changed otadata"
run 0 boot6 "$RS" --flash robot.img $P --boot-only
expect boot6.out "app: robot 1.0.0"
cp robot.img robot_v1.img

# Dual-signed (A + B) on this robot trusting only A (old key).
run 0 ota4 "$RS" ota --flash robot.img $P --image v2.ab.bin
expect ota4.out "signature block 0 verified with security/ota_pubkey"
run 0 boot7 "$RS" --flash robot.img $P --boot-only --self-test pass
expect boot7.out "app: robot 2.0.0"

# A robot that trusts only the new key B: the dual-signed image is accepted, A-only refused.
cp robot_v1.img robot_b.img
run 0 setkeyb "$RS" nvs set --flash robot_b.img --ns security --key ota_pubkey --file b.der
run 5 b_old "$RS" ota --flash robot_b.img $P --image v2.a.bin
run 0 b_dual "$RS" ota --flash robot_b.img $P --image v2.ab.bin
expect b_dual.out "signature block 1 verified with security/ota_pubkey"
# During a rotation: A in ota_pubkey, B in ota_pubkey2: a B-only image is accepted.
cp robot_v1.img robot_ab.img
run 0 setkey2 "$RS" nvs set --flash robot_ab.img --ns security --key ota_pubkey2 --file b.der
run 0 ab_new "$RS" ota --flash robot_ab.img $P --image v2.b.bin
expect ab_new.out "verified with security/ota_pubkey2"

# ---- development without an OTA key: updates disabled ----------------------------------------
run 0 dcreate "$RS" flash-image create --out dev.img
: >dev.sdkconfig
run 5 d_ota "$RS" ota --flash dev.img --sdkconfig dev.sdkconfig --image v1.a.bin
expect d_ota.err "updates disabled"

# ---- power cut at every flash operation of an update -----------------------------------------
points=0
for torn in "" "--torn"; do
    n=1
    while :; do
        cp robot_v1.img cut.img
        set +e
        "$RS" ota --flash cut.img $P --image v2.a.bin --chunk 2048 --cut-after $n $torn \
            >cut.out 2>cut.err
        rc=$?
        set -e
        if [ $rc = 0 ]; then
            # Uncut: the same command installs v2, which then boots.
            run 0 cutboot "$RS" --flash cut.img $P --boot-only --self-test pass
            expect cutboot.out "app: robot 2.0.0"
            break
        fi
        [ $rc = 6 ] || { cat cut.err; fail "cut $n$torn: exit $rc"; }
        # The update did not complete (its last operation is the otadata write): the robot
        # boots the old image, twice, never a half-written one and never nothing.
        for b in 1 2; do
            run 0 cutboot "$RS" --flash cut.img $P --boot-only
            expect cutboot.out "running: ota_0"
            expect cutboot.out "app: robot 1.0.0"
        done
        points=$((points + 1))
        n=$((n + 1))
        [ $n -lt 200 ] || fail "the update never completed"
    done
done
[ $points -gt 10 ] || fail "only $points cut points"
echo "ota_update: power cut at $points points, every one boots a valid image"
grep -q "$(od -An -tx1 a.der | tr -d ' \n' | cut -c1-40)" ./*.out ./*.err && \
    fail "key bytes in robot-sim output"
echo "ota_update: OK"
