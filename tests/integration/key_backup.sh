#!/bin/sh
# Signing-key backup end to end (seed 004: "Store OTA private keys in at least 2 secure
# locations"): an OTA signing key is split 3-of-5 with `provision-keys backup`, the key file is
# deleted, `provision-keys restore` rebuilds it from three shares; openssl shows the same public
# key, and an OTA image signed with the rebuilt key verifies with the original public key.
# Then the refusals through the command line: two shares, a damaged share (named), shares of
# two backups, an existing output.
#   sh key_backup.sh BIN_DIR WORK_DIR
set -eu
BIN=$1
TMP=$2
PK="$BIN/provision-keys"
. "$(dirname "$0")/skip.sh"
[ -x "$BIN/mkappimage" ] || fk_skip "mkappimage not built"
rm -rf "$TMP"
mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
cd "$TMP"

umask 022 # the share and key files must still come out 0600
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ota.pem 2>/dev/null
openssl pkey -in ota.pem -pubout -out ota.pub.pem
cp ota.pub.pem original.pub.pem
run 0 backup "$PK" backup --key ota.pem --shares 5 --threshold 3 --out shares
expect backup.out "split into 5 shares, any 3 rebuild it"
for i in 1 2 3 4 5; do
    [ "$(stat -c %a shares/key-share-$i-of-5.txt)" = 600 ] || fail "share $i is not 0600"
    grep -q "BEGIN\|PRIVATE" shares/key-share-$i-of-5.txt && fail "share $i holds PEM text"
done
rm ota.pem

run 1 two "$PK" restore --out ota.pem shares/key-share-1-of-5.txt shares/key-share-4-of-5.txt
expect two.err "2 distinct share(s) given; this backup of key sha256:[0-9a-f]* needs 3 of its 5"
[ ! -e ota.pem ] || fail "a refused restore wrote a key"

cp shares/key-share-2-of-5.txt damaged.txt
sed -i 's/^share: \(.\)/share: X\1/; s/^share: XA/share: B/; s/^share: X./share: A/' damaged.txt
cmp -s damaged.txt shares/key-share-2-of-5.txt && fail "the share was not changed"
run 1 damaged "$PK" restore --out ota.pem shares/key-share-1-of-5.txt damaged.txt \
    shares/key-share-5-of-5.txt
expect damaged.err "damaged.txt: checksum mismatch: the share file is damaged"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.pem 2>/dev/null
run 0 backup_other "$PK" backup --key other.pem --shares 3 --threshold 2 --out other
run 1 mixed "$PK" restore --out ota.pem shares/key-share-1-of-5.txt other/key-share-2-of-3.txt \
    shares/key-share-5-of-5.txt
expect mixed.err "other/key-share-2-of-3.txt: from another backup"
run 2 usage "$PK" backup --key other.pem --shares 3 --threshold 4 --out x
run 1 again "$PK" backup --key other.pem --shares 3 --threshold 2 --out other
expect again.err "key-share-1-of-3.txt"

run 0 restore "$PK" restore --out ota.pem shares/key-share-5-of-5.txt \
    shares/key-share-2-of-5.txt shares/key-share-3-of-5.txt
expect restore.out "rebuilt from 3 of 5 shares"
[ "$(stat -c %a ota.pem)" = 600 ] || fail "the restored key is not 0600"
openssl pkey -in ota.pem -pubout -out restored.pub.pem
cmp -s original.pub.pem restored.pub.pem || fail "the restored key has another public key"
run 1 exists "$PK" restore --out ota.pem shares/key-share-1-of-5.txt \
    shares/key-share-2-of-5.txt shares/key-share-3-of-5.txt
expect exists.err "ota.pem"

# the rebuilt key signs a release that verifies with the public key kept from before
"$BIN/mkappimage" --version 1.2.3 --secure-version 1 --seed 7 app.bin
run 0 sign "$PK" sign --key ota.pem --output app.signed.bin app.bin
run 0 verify "$PK" verify --pubkey original.pub.pem app.signed.bin
expect verify.out "signature OK"
echo "PASS [key_backup]"
