#!/usr/bin/env bash
# provision-keys generate: the seed's files and fields, modes 0600 whatever the umask, the
# image holds the manifest's PSK, nothing secret on the terminal, no silent overwrite.
. "$(dirname "$0")/lib.sh"

umask 000 # files must still come out 0600
printf 'Tr41n-R0b0t#2026\n' >wifi.pw
"$PK" generate --output keys/device_001.json --mac AA:BB:CC:DD:EE:FF --wifi-ssid FleetLab-5G \
    --wifi-password-file wifi.pw --encrypt-nvs >out.txt 2>err.txt || fail "generate failed: $(cat err.txt)"
umask 022
for f in device_001.json device_001.key.pem device_001.nvs.bin device_001.nvs_keys.bin inventory.db; do
    [ -f "keys/$f" ] || fail "missing keys/$f"
    [ "$(mode_of "keys/$f")" = 600 ] || fail "keys/$f has mode $(mode_of "keys/$f")"
done
m=keys/device_001.json
# The seed's six fields, first and in the seed's order.
order=$(sed -n '2,7p' "$m" | cut -d'"' -f2 | tr '\n' ' ')
[ "$order" = "device_id psk_hex psk_identity ota_public_key_der_hex provisioned provisioned_at " ] ||
    fail "seed field order: $order"
[ "$(json_str "$m" device_id)" = robot-AABBCCDDEEFF ] || fail "device_id"
[ "$(json_str "$m" psk_identity)" = robot-AABBCCDDEEFF ] || fail "psk_identity"
psk=$(json_str "$m" psk_hex)
[[ "$psk" =~ ^[0-9a-f]{64}$ ]] || fail "psk_hex is not 64 hex digits"
der=$(json_str "$m" ota_public_key_der_hex)
[ ${#der} -eq 182 ] || fail "ota_public_key_der_hex is not 91 bytes"
[ "$(json_raw "$m" provisioned)" = false ] || fail "provisioned"
[ "$(json_raw "$m" provisioned_at)" = null ] || fail "provisioned_at"
[ "$(json_raw "$m" nvs_encrypted)" = true ] || fail "nvs_encrypted"
grep -q 'BEGIN PRIVATE KEY' keys/device_001.key.pem || fail "key is not PKCS#8 PEM"
[ "$(stat -c %s keys/device_001.nvs.bin)" = 24576 ] || fail "image size"
[ "$(stat -c %s keys/device_001.nvs_keys.bin)" = 4096 ] || fail "nvs_keys size"
[ "$(sha256sum <keys/device_001.nvs.bin | cut -c1-64)" = "$(json_str "$m" nvs_image_sha256)" ] ||
    fail "nvs_image_sha256"

# Never a secret on the terminal; the password is not in the manifest either.
! grep -qF "$psk" out.txt err.txt || fail "PSK printed"
! grep -q 'Tr41n' out.txt err.txt "$m" || fail "Wi-Fi password printed or stored in the manifest"
grep -qF "$(json_str "$m" psk_fingerprint)" out.txt || fail "fingerprint not shown"

# The image holds the manifest's PSK: the nvs tool's dump shows its fingerprint (masked) and,
# with --show-secrets, the bytes.
if "$PK" nvs --help >/dev/null 2>&1; then
    "$PK" nvs dump keys/device_001.nvs.bin --keys keys/device_001.nvs_keys.bin >dump.txt ||
        fail "nvs dump: $(cat dump.txt)"
    grep dtls_psk dump.txt | grep -qF "$(json_str "$m" psk_fingerprint)" ||
        fail "dump's dtls_psk fingerprint differs from the manifest's: $(grep dtls_psk dump.txt)"
    ! grep -qF "$psk" dump.txt || fail "dump shows the PSK without --show-secrets"
    grep -q 'wifi:ssid' dump.txt || fail "no wifi/ssid in the image"
    "$PK" nvs dump keys/device_001.nvs.bin --keys keys/device_001.nvs_keys.bin --show-secrets |
        grep dtls_psk | grep -qF "$psk" || fail "dump --show-secrets does not show the manifest PSK"
    # Without the keys the encrypted image shows nothing readable.
    ! "$PK" nvs dump keys/device_001.nvs.bin --show-secrets 2>/dev/null | grep -qF "$psk" ||
        fail "encrypted image readable without keys"
fi

# Inventory: device, credentials, one audit entry; chain intact.
"$PK" inventory --inventory keys/inventory.db list | grep -q robot-AABBCCDDEEFF || fail "inventory list"
"$PK" inventory --inventory keys/inventory.db show robot-AABBCCDDEEFF >show.txt
grep -q "psk .*$(json_str "$m" psk_fingerprint)" show.txt || fail "inventory psk fingerprint"
grep -q 'device.minted' show.txt || fail "no audit entry"
"$PK" inventory --inventory keys/inventory.db verify-audit | grep -q intact || fail "audit"

# No silent overwrite; --force mints version 2 and retires version 1.
before=$(sha256sum "$m")
if "$PK" generate --output keys/device_001.json --mac AA:BB:CC:DD:EE:FF 2>err.txt; then
    fail "overwrote an existing manifest"
fi
grep -q 'already exists' err.txt || fail "overwrite refusal: $(cat err.txt)"
[ "$(sha256sum "$m")" = "$before" ] || fail "refused run changed the manifest"
"$PK" generate --output keys/device_001.json --mac AA:BB:CC:DD:EE:FF --force >/dev/null
[ "$(json_raw "$m" psk_version)" = 2 ] || fail "psk_version after --force"
[ ! -e keys/device_001.nvs_keys.bin ] || fail "stale nvs_keys left after a plain re-mint"
"$PK" inventory --inventory keys/inventory.db show robot-AABBCCDDEEFF | grep -q 'psk .*v1 .*retired' ||
    fail "old psk not retired"

# --ota-key: the device trusts the fleet key; no private key file is written.
"$PK" generate --output fleet/a.json --ota-key keys/device_001.key.pem >/dev/null
"$PK" generate --output fleet/b.json --ota-key keys/device_001.key.pem >/dev/null
[ ! -e fleet/a.key.pem ] || fail "private key written with --ota-key"
[ "$(json_str fleet/a.json ota_public_key_der_hex)" = "$(json_str keys/device_001.json ota_public_key_der_hex)" ] ||
    fail "device does not trust the given OTA key"
[ "$(json_str fleet/a.json device_id)" != "$(json_str fleet/b.json device_id)" ] || fail "random MACs collide"
id=$(json_str fleet/a.json device_id)
[[ "$id" =~ ^robot-[0-9A-F][26AE][0-9A-F]{10}$ ]] || fail "random MAC is not locally administered unicast: $id"

# Bad command lines exit 2 and write nothing.
set +e
"$PK" generate --output bad/x.json --mac 01:00:5E:00:00:01 2>/dev/null; rc=$?
set -e
[ $rc -eq 2 ] || fail "multicast --mac exit $rc"
[ ! -e bad ] || fail "bad --mac wrote files"
set +e
"$PK" generate --mac AA:BB:CC:DD:EE:FF 2>/dev/null; rc=$?
set -e
[ $rc -eq 2 ] || fail "missing --output exit $rc"
echo "generate: ok"
