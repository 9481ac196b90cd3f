#!/bin/sh
# A robot provisioned by `provision-keys generate` (seed 004's workflow) boots in robot-sim:
# the NVS image and nvs_keys image it writes load unchanged, production policy holds, and the
# PSK robot-sim loaded is the manifest's (compared by fingerprint: SHA-256 prefix).
# Exit 77 (skipped) without python3 or provision-keys, except under CI (skip.sh).
# Usage: robot_sim_provisioned.sh BIN_DIR TMP_DIR
set -eu
BIN=$1
TMP=$2
RS="$BIN/robot-sim"
PK="$BIN/provision-keys"
. "$(dirname "$0")/skip.sh"
"$PK" generate --help >/dev/null 2>&1 || fk_skip "provision-keys generate not built"
command -v python3 >/dev/null 2>&1 || fk_skip "python3 not installed"
rm -rf "$TMP"
mkdir -p "$TMP/keys"
. "$(dirname "$0")/lib.sh"
cd "$TMP"
printf 'Tr41n-R0b0t#2026\n' >wifi.pw
"$PK" generate --output keys/device_001.json --mac AA:BB:CC:DD:EE:FF --wifi-ssid FleetLab-5G \
    --wifi-password-file wifi.pw --encrypt-nvs >gen.out 2>&1 || { cat gen.out; fail "generate"; }
test -f keys/device_001.nvs.bin || fail "no NVS image"
test -f keys/device_001.nvs_keys.bin || fail "no nvs_keys image"
"$RS" flash-image create --out robot.img --nvs keys/device_001.nvs.bin \
    --nvs-keys keys/device_001.nvs_keys.bin 2>create.err || { cat create.err; fail "create"; }
cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CFG
set +e
"$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only --status-json >status.json \
    2>boot.err
rc=$?
set -e
[ $rc = 0 ] || { cat status.json boot.err; fail "production boot exit $rc"; }
python3 - keys/device_001.json status.json <<'PY'
import hashlib, json, sys
man = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))
creds = st["credentials"]
psk = bytes.fromhex(man["psk_hex"])
want = "sha256:" + hashlib.sha256(psk).hexdigest()[:16]
assert creds["security/dtls_psk"]["fingerprint"] == want, (creds["security/dtls_psk"], want)
assert creds["security/dtls_psk"]["source"] == "nvs" and creds["security/dtls_psk"]["valid"]
ident = man["psk_identity"].encode()
assert creds["security/psk_id"]["fingerprint"] == \
    "sha256:" + hashlib.sha256(ident).hexdigest()[:16]
ota = bytes.fromhex(man["ota_public_key_der_hex"])
assert creds["security/ota_pubkey"]["fingerprint"] == \
    "sha256:" + hashlib.sha256(ota).hexdigest()[:16]
p = st["posture"]
assert p["build"] == "production" and p["boot_allowed"] and p["listener"] == "dtls", p
assert all(p["rules"].values()), p
PY
if grep -q "$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["psk_hex"])' \
    keys/device_001.json)" status.json boot.err; then
    fail "PSK in robot-sim output"
fi
grep -q 'Tr41n-R0b0t#2026' status.json boot.err && fail "Wi-Fi password in robot-sim output"
echo "robot_sim_provisioned: OK"
