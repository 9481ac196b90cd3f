#!/bin/sh
# provision-keys rotate ota-key end to end on a three-robot fleet minted by
# `provision-keys generate --ota-key` (they trust key A, the old key): every early step is
# refused naming exactly the devices that block it; then dual-signed releases, confirmations,
# a new-key-only release, retire-old; signing with the retired key is refused by
# `provision-keys sign --inventory`; the releases verify (or not) as each stage requires; the
# audit chain verifies at the end.
# Usage: rotation_cli.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
BIN=$1
VEC=$2/sbv2
TMP=$3
PK="$BIN/provision-keys"
MK="$BIN/mkappimage"
rm -rf "$TMP"
mkdir -p "$TMP/keys"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
cd "$TMP"
# The inventory: inv.db, or with FK_PG=1 (rotation_cli_pg, issue 15) a database on a
# throw-away PostgreSQL cluster.
INV=inv.db
if [ "${FK_PG:-0}" = 1 ]; then
    . "$HERE/skip.sh"
    . "$HERE/pg_lib.sh"
    fk_pg_start "$TMP/pg"
    fk_pg_createdb fleet
    INV=$(fk_pg_uri fleet)
fi
# blockers FILE "ID ID ...": the refusal lists exactly these devices
blockers() {
    got=$(sed -n 's/^  blocking: \([^ ]*\) .*/\1/p' "$1" | tr '\n' ' ' | sed 's/ $//')
    [ "$got" = "$2" ] || { cat "$1"; fail "$1: blocking '$got', expected '$2'"; }
}

for n in 1 2 3; do
    run 0 gen$n "$PK" generate --output keys/device_00$n.json --mac AA:BB:CC:DD:EE:0$n \
        --ota-key "$VEC/key_a.pem" --inventory "$INV"
done
D1=robot-AABBCCDDEE01
D2=robot-AABBCCDDEE02
D3=robot-AABBCCDDEE03
"$MK" --version 2.0.0 --secure-version 2 v2.bin
"$MK" --version 3.0.0 --secure-version 3 v3.bin
R="$PK rotate ota-key --inventory $INV --old-key $VEC/key_a.pem --new-key $VEC/key_b.pem"

run 2 usage $R
run 1 early_sign $R sign-release --output x.bin v2.bin
expect early_sign.err "has not started"
run 1 early_confirm $R confirm --device $D1
run 1 early_retire $R retire-old
run 0 start $R start
run 0 status0 $R status
expect status0.out "new key confirmed: 0/3"
expect status0.out "$D1: new key staged (not confirmed)"

# Dual-signed release: both keys verify it.
run 0 dual $R sign-release --output v2.ab.bin v2.bin
run 0 v_dual_a "$PK" verify --pubkey "$VEC/key_a.pub.pem" v2.ab.bin
run 0 v_dual_b "$PK" verify --pubkey "$VEC/key_b.pub.pem" v2.ab.bin

run 1 newonly1 $R sign-release --new-only --output v3.b.bin v3.bin
blockers newonly1.err "$D1 $D2 $D3"
expect newonly1.err "never connected"
test ! -e v3.b.bin || fail "a refused release was written"
run 0 c1 $R confirm --device $D1
run 0 c2 $R confirm --device $D2
run 1 newonly2 $R sign-release --new-only --output v3.b.bin v3.bin
blockers newonly2.err "$D3"
run 1 retire1 $R retire-old
blockers retire1.err "$D3"
run 0 c3 $R confirm --device $D3
run 1 retire2 $R retire-old
expect retire2.err "new key only"
run 0 newonly3 $R sign-release --new-only --output v3.b.bin v3.bin
run 1 v_new_a "$PK" verify --pubkey "$VEC/key_a.pub.pem" v3.b.bin
run 0 v_new_b "$PK" verify --pubkey "$VEC/key_b.pub.pem" v3.b.bin
run 0 f1 $R confirm --device $D1 --firmware
run 1 retire3 $R retire-old
blockers retire3.err "$D2 $D3"
run 0 f2 $R confirm --device $D2 --firmware
run 0 f3 $R confirm --device $D3 --firmware
run 0 retire4 $R retire-old
run 0 status1 $R status
expect status1.out "old key: retired"
expect status1.out "next: done"

# The retired key signs nothing through the inventory; the new one does.
run 1 sign_old "$PK" sign --inventory "$INV" --key "$VEC/key_a.pem" --output s.bin v3.bin
expect sign_old.err "retired"
test ! -e s.bin || fail "signed with a retired key"
run 0 sign_new "$PK" sign --inventory "$INV" --key "$VEC/key_b.pem" --output s.bin v3.bin
run 1 dual_after $R sign-release --output v4.bin v3.bin
expect dual_after.err "old key is retired"

run 0 audit "$PK" inventory --inventory "$INV" verify-audit
run 0 show "$PK" inventory --inventory "$INV" show $D3
expect show.out "ota_signing_key"
echo "rotation_cli: OK"
