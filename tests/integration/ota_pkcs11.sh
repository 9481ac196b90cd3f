#!/bin/sh
# Release signing with the key in a PKCS#11 token: a SoftHSM2 token created in a temp dir
# (SOFTHSM2_CONF), the vectors' P-256 key, a fresh RSA-3072 and a fresh P-384 key imported
# into it, then provision-keys sign --key pkcs11:... through the OpenSSL pkcs11 engine, and the
# result verified with the PEM public keys (ours and openssl's). Exit 77 (skipped) only when
# SoftHSM2 or the engine is not installed, and
# never under CI (tests/integration/skip.sh).
#   sh ota_pkcs11.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
bin=$1
vec=$2/sbv2
tmp=$3
pk="$bin/provision-keys"
. "$(dirname "$0")/skip.sh"

module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -f "$m" ] && module=$m && break
done
enginedir=$(openssl version -e | sed 's/^ENGINESDIR: "\(.*\)"$/\1/')
if ! command -v softhsm2-util >/dev/null || [ -z "$module" ] || [ ! -f "$enginedir/pkcs11.so" ]
then
    fk_skip "softhsm2 or libengine-pkcs11-openssl not installed (scripts/install-deps)"
fi

rm -rf "$tmp"
mkdir -p "$tmp/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$tmp" >"$tmp/softhsm2.conf"
export SOFTHSM2_CONF="$tmp/softhsm2.conf"
export FK_PKCS11_MODULE="$module"
# Debian 12's libp11 0.4.12 leaks the objects it allocates for a public key loaded from a
# token (fixed upstream: OpenSC/libp11 pull request 566 "Fix memory leaks on EVP_PKEY public
# keys"). Under LeakSanitizer, ignore leaks allocated inside the engine, and only there.
printf 'leak:engines-3/pkcs11.so\n' >"$tmp/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp"
failures=0
passes=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
expect() {
    want=$1
    shift
    set +e
    "$@" >"$tmp/out" 2>&1
    got=$?
    set -e
    if [ "$got" -ne "$want" ]; then
        fail "exit $got (wanted $want): $*"
        sed 's/^/    /' "$tmp/out" >&2
    else
        passes=$((passes + 1))
    fi
}

softhsm2-util --init-token --free --label fk-ota --so-pin 87654321 --pin 246810 >/dev/null
(umask 077
    openssl pkcs8 -topk8 -nocrypt -in "$vec/key_a.pem" -out "$tmp/a.p8"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$tmp/rsa.pem" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$tmp/rsa.pem" -out "$tmp/rsa.p8"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$tmp/p384.pem"
    openssl pkcs8 -topk8 -nocrypt -in "$tmp/p384.pem" -out "$tmp/p384.p8")
openssl pkey -in "$tmp/rsa.pem" -pubout -out "$tmp/rsa.pub.pem"
openssl pkey -in "$tmp/p384.pem" -pubout -out "$tmp/p384.pub.pem"
softhsm2-util --import "$tmp/a.p8" --token fk-ota --label ota-a --id 0a --pin 246810 >/dev/null
softhsm2-util --import "$tmp/rsa.p8" --token fk-ota --label ota-rsa --id 0b --pin 246810 \
    >/dev/null
softhsm2-util --import "$tmp/p384.p8" --token fk-ota --label ota-p384 --id 0c --pin 246810 \
    >/dev/null
# From here on the private keys exist only in the token.
rm -f "$tmp/a.p8" "$tmp/rsa.p8" "$tmp/rsa.pem" "$tmp/p384.p8" "$tmp/p384.pem"

uri_a="pkcs11:token=fk-ota;object=ota-a"
uri_rsa="pkcs11:token=fk-ota;object=ota-rsa"
uri_384="pkcs11:token=fk-ota;object=ota-p384"
export FK_PKCS11_PIN=246810

# Sign with the token key: one block, then dual with RSA, then append P-384.
expect 0 "$pk" sign --raw --key "$uri_a;type=private" --output "$tmp/s.bin" "$vec/app.bin"
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$tmp/s.bin"
expect 1 "$pk" verify --pubkey "$vec/key_b.pub.pem" "$tmp/s.bin"
if cmp -s -n 102400 "$tmp/s.bin" "$vec/app_signed_a.bin"; then passes=$((passes + 1)); else
    fail "padded image differs"
fi
expect 0 "$pk" sign --raw --key "$uri_a;type=private" --key "$uri_rsa;type=private" \
    --output "$tmp/d.bin" "$vec/app.bin"
expect 0 "$pk" verify --pubkey "$tmp/rsa.pub.pem" "$tmp/d.bin"
expect 0 "$pk" sign --append --key "$uri_384;type=private" --output "$tmp/d3.bin" "$tmp/d.bin"
expect 0 "$pk" verify --pubkey "$tmp/p384.pub.pem" "$tmp/d3.bin"
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$tmp/d3.bin"

# openssl verifies the token's RSA-PSS block independently (signature reversed to big-endian).
od -An -tx1 -v -j $((102400 + 1216 + 812)) -N 384 "$tmp/d.bin" | tr -s ' \n' '\n\n' | grep . |
    awk '{ a[NR] = $1 } END { for (i = NR; i >= 1; i--) printf "\\x%s", a[i] }' |
    xargs -0 printf '%b' >"$tmp/rsa.sig"
head -c 102400 "$tmp/d.bin" >"$tmp/padded.bin"
expect 0 openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
    -sigopt rsa_mgf1_md:sha256 -verify "$tmp/rsa.pub.pem" -signature "$tmp/rsa.sig" \
    "$tmp/padded.bin"

# The token's public key gives the same eFuse digest as the PEM file.
expect 0 "$pk" key-digest --key "$uri_a;type=public" --output "$tmp/a.digest"
if cmp -s "$tmp/a.digest" "$vec/key_a.digest.bin"; then passes=$((passes + 1)); else
    fail "key digest from the token differs from key_a.digest.bin"
fi
# A token key as the trusted key of verify.
expect 0 "$pk" verify --pubkey "$uri_384;type=public" "$tmp/d3.bin"

# The rotation's endorsement of a new key, signed by the release key in the token (start
# checks it against the old key's fingerprint before recording it).
expect 0 "$pk" rotate ota-key --inventory "$tmp/rot.db" --old-key "$uri_a;type=private" \
    --new-key "$vec/key_b.pub.pem" start

# Wrong PIN, unknown object: refused with a reason, no output file.
FK_PKCS11_PIN=000000 expect 1 "$pk" sign --raw --key "$uri_a;type=private" \
    --output "$tmp/bad.bin" "$vec/app.bin"
expect 1 "$pk" sign --raw --key "pkcs11:token=fk-ota;object=nope;type=private" \
    --output "$tmp/bad.bin" "$vec/app.bin"
grep -q "PKCS#11" "$tmp/out" && passes=$((passes + 1)) || fail "no PKCS#11 reason printed"
[ ! -e "$tmp/bad.bin" ] && passes=$((passes + 1)) || fail "failed sign left a file"
# A PIN given in the URI never shows in the output.
expect 0 "$pk" key-digest --key "$uri_a;type=public;pin-value=246810"
if grep -q 246810 "$tmp/out"; then fail "PIN printed"; else passes=$((passes + 1)); fi

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
