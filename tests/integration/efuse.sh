#!/bin/sh
# Integration test of the virtual eFuse and the simulated Secure Boot V2 bootloader
# (provision-keys efuse, robot-sim; docs/efuse.md): the digest burned is espsecure's
# (tests/vectors/sbv2/*.digest.bin); a second burn is refused and leaves the file as it was; a
# production robot refuses an app signed by another key with a message naming the key's digest,
# boots one signed by the burned key (ECDSA and RSA-3072), and refuses again once that digest is
# revoked; a development robot runs the foreign app and warns; damaged eFuse files are refused.
# Usage: efuse.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
BIN=$1
VEC=$2/sbv2
TMP=$3
RS="$BIN/robot-sim"
PK="$BIN/provision-keys"
MK="$BIN/mkappimage"
. "$(dirname "$0")/lib.sh"
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP"
has() { expect "$2" "$1"; }
hex() { od -An -tx1 -v "$1" | tr -d ' \n'; }
spaced() { od -An -tx1 -v "$1" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }
# factory IMAGE FLASH: writes a signed app into ota_0 (0x20000), as esptool would.
factory() { dd if="$1" of="$2" bs=4096 seek=32 conv=notrunc 2>/dev/null; }

"$MK" --version 3.1.0 --secure-version 1 --segment-len 3000 --seed 7 app.bin
run 0 signa "$PK" sign --key "$VEC/key_a.pem" --output app.a.bin app.bin
run 0 signb "$PK" sign --key "$VEC/key_b.pem" --output app.b.bin app.bin
run 0 signr "$PK" sign --key "$VEC/key_rsa.pem" --output app.rsa.bin app.bin
printf 'Tr41n-R0b0t#2026\n' >wifi.pw
run 0 gen "$PK" generate --output keys/d.json --mac AA:BB:CC:DD:EE:02 --wifi-ssid Lab \
    --wifi-password-file wifi.pw --encrypt-nvs
run 0 create "$RS" flash-image create --out robot.img --nvs keys/d.nvs.bin \
    --nvs-keys keys/d.nvs_keys.bin
cp robot.img robot_rsa.img
cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CFG
cat >dev.sdkconfig <<'CFG'
# CONFIG_PRODUCTION_BUILD is not set
CONFIG_NVS_ENCRYPTION=y
CFG

# 1. A blank chip; burn A's digest; it is espsecure's digest-sbv2-public-key.
run 0 sum0 "$PK" efuse summary --image robot.img
has "absent: a blank chip" sum0.out
has "0 trusted key digest" sum0.out
run 0 burn1 "$PK" efuse burn-key-digest --image robot.img --key "$VEC/key_a.pub.pem"
has "burned: BLOCK_KEY0 = $(hex "$VEC/key_a.digest.bin")" burn1.out
has "KEY_PURPOSE_0 = SECURE_BOOT_DIGEST0" burn1.out
run 0 sum1 "$PK" efuse summary --image robot.img
has "Key0 or user data = $(spaced "$VEC/key_a.digest.bin") R/-" sum1.out
has "KEY_PURPOSE_0 (BLOCK0) *= SECURE_BOOT_DIGEST0 R/- (0x9)" sum1.out
has "1 trusted key digest" sum1.out
cp robot.img.efuse burned.efuse

# 2. A second burn is refused, as on the chip, and changes nothing.
run 1 burn2 "$PK" efuse burn-key-digest --image robot.img --key "$VEC/key_a.pem"
has "refused: this key's digest is burned already" burn2.err
run 1 burn3 "$PK" efuse burn-key-digest --image robot.img --key "$VEC/key_b.pub.pem" --block 0
has "refused: BLOCK_KEY0: the key block is write-protected" burn3.err
has "robot.img.efuse" burn3.err
cmp robot.img.efuse burned.efuse || fail "a refused burn changed the eFuse file"
run 2 burn4 "$PK" efuse burn-key-digest --image robot.img --key "$VEC/key_b.pub.pem" --block 6
run 1 burn5 "$PK" efuse burn-key-digest --image missing.img --key "$VEC/key_b.pub.pem"
has "missing.img: no such flash image" burn5.err

# 3. Production: an app signed by B is refused, with the digest of B's key named.
factory app.b.bin robot.img
run 3 bootb "$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only
has "secure boot refused every app image" bootb.out
has "signed by a key whose digest $(hex "$VEC/key_b.digest.bin") is not burned in eFuse" bootb.err

# 4. Development: the same app runs, with a warning.
run 0 devb "$RS" --flash robot.img --sdkconfig dev.sdkconfig --boot-only
has "running: ota_0" devb.out
has "not signed by a key whose digest is burned in eFuse; a production build refuses it" devb.err

# 5. Production: the app signed by A boots; so does an RSA-3072 one on its own chip.
factory app.a.bin robot.img
run 0 boota "$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only
has "running: ota_0" boota.out
has "app signature: verified" boota.out
run 0 burnr "$PK" efuse burn-key-digest --image robot_rsa.img --key "$VEC/key_rsa.pub.pem" \
    --block BLOCK_KEY3
has "burned: BLOCK_KEY3 = $(hex "$VEC/key_rsa.digest.bin")" burnr.out
factory app.rsa.bin robot_rsa.img
run 0 bootr "$RS" --flash robot_rsa.img --sdkconfig prod.sdkconfig --boot-only
has "app signature: verified" bootr.out
factory app.a.bin robot_rsa.img
run 3 bootra "$RS" --flash robot_rsa.img --sdkconfig prod.sdkconfig --boot-only

# 6. Revoking A's digest: its app is refused again.
run 0 revoke "$PK" efuse revoke-key-digest --image robot.img --digest 0
run 0 sum2 "$PK" efuse summary --image robot.img
has "SECURE_BOOT_KEY_REVOKE0 (BLOCK0) *= True" sum2.out
run 3 bootrev "$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only

# 7. A damaged eFuse file is refused by both programs, naming it.
head -c 100 burned.efuse >robot.img.efuse
run 2 bootbad "$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only
has "robot.img.efuse: not a virtual eFuse file" bootbad.err
run 1 sumbad "$PK" efuse summary --image robot.img
has "robot.img.efuse: not a virtual eFuse file" sumbad.err
echo "efuse: ok"
