#!/bin/sh
# provision-keys sign/verify/signature-info/key-digest end to end: the espsecure vectors'
# table through the CLI, exit codes, round trips (single, dual, appended, app images), and our
# signatures checked by an independent implementation, the openssl command line: the ECDSA
# r/s and RSA signature are taken out of the block (little-endian), turned into what openssl
# expects, and verified over the padded image with the public key.
#   sh ota_cli.sh BIN_DIR VECTORS_DIR TMP_DIR
set -eu
bin=$1
vec=$2/sbv2
tmp=$3
pk="$bin/provision-keys"
rm -rf "$tmp"
mkdir -p "$tmp"
failures=0
passes=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
ok() {
    passes=$((passes + 1))
}

# expect RC CMD...: run CMD, compare its exit code, keep its output in $tmp/out.
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
        ok
    fi
}
# contains TEXT: the last command's output contains TEXT.
contains() {
    if grep -qF -- "$1" "$tmp/out"; then ok; else
        fail "output lacks '$1'"
        sed 's/^/    /' "$tmp/out" >&2
    fi
}
# flip FILE OFFSET: xor one byte of FILE with 0x01.
flip() {
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    n=$((b ^ 1))
    printf "$(printf '\\%03o' "$n")" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
# hexle FILE OFFSET LEN: LEN bytes at OFFSET as big-endian hex (they are stored little-endian).
hexle() {
    od -An -tx1 -v -j "$2" -N "$3" "$1" | tr -s ' \n' '\n\n' | grep . |
        awk '{ a[NR] = $1 } END { for (i = NR; i >= 1; i--) printf "%s", a[i]; print "" }'
}
# rawrev FILE OFFSET LEN OUT: the LEN bytes at OFFSET reversed, as a binary file.
rawrev() {
    hexle "$1" "$2" "$3" | tr -d '\n' | sed 's/../\\x&/g' | xargs -0 printf '%b' >"$4"
}

# openssl_ecdsa SIGNED SECTOR_OFF BLOCK PUB SHA COORD: verify block BLOCK of SIGNED with openssl.
openssl_ecdsa() {
    f=$1 soff=$2 blk=$3 pub=$4 sha=$5 coord=$6
    base=$((soff + blk * 1216))
    if [ "$sha" = sha384 ]; then sigoff=$((base + 149)); else sigoff=$((base + 101)); fi
    r=$(hexle "$f" "$sigoff" "$coord")
    s=$(hexle "$f" $((sigoff + coord)) "$coord")
    printf 'asn1=SEQUENCE:sig\n[sig]\nr=INTEGER:0x%s\ns=INTEGER:0x%s\n' "$r" "$s" >"$tmp/sig.cnf"
    openssl asn1parse -genconf "$tmp/sig.cnf" -out "$tmp/sig.der" >/dev/null
    head -c "$soff" "$f" >"$tmp/padded.bin"
    expect 0 openssl dgst -"$sha" -verify "$pub" -signature "$tmp/sig.der" "$tmp/padded.bin"
    contains "Verified OK"
    # Negative control: the same signature over one changed byte must not verify.
    flip "$tmp/padded.bin" 7
    expect 1 openssl dgst -"$sha" -verify "$pub" -signature "$tmp/sig.der" "$tmp/padded.bin"
    # The key fields: x and y little-endian after the curve id, as openssl's point has them.
    if [ "$sha" = sha384 ]; then koff=$((base + 53)); else koff=$((base + 37)); fi
    want=$(openssl pkey -pubin -in "$pub" -outform DER | tail -c $((2 * coord)) | od -An -tx1 -v |
        tr -d ' \n')
    got="$(hexle "$f" "$koff" "$coord")$(hexle "$f" $((koff + coord)) "$coord")"
    if [ "$want" = "$got" ]; then ok; else fail "block $blk key fields differ from $pub"; fi
}

# openssl_rsa SIGNED SECTOR_OFF BLOCK PUB
openssl_rsa() {
    f=$1 soff=$2 blk=$3 pub=$4
    base=$((soff + blk * 1216))
    rawrev "$f" $((base + 812)) 384 "$tmp/rsa.sig"
    if [ "$(wc -c <"$tmp/rsa.sig")" -eq 384 ]; then ok; else fail "RSA signature not 384 bytes"; fi
    head -c "$soff" "$f" >"$tmp/padded.bin"
    expect 0 openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
        -sigopt rsa_mgf1_md:sha256 -verify "$pub" -signature "$tmp/rsa.sig" "$tmp/padded.bin"
    contains "Verified OK"
    flip "$tmp/padded.bin" 7
    expect 1 openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
        -sigopt rsa_mgf1_md:sha256 -verify "$pub" -signature "$tmp/rsa.sig" "$tmp/padded.bin"
    # n little-endian at +36, as openssl prints the modulus.
    want=$(openssl rsa -pubin -in "$pub" -noout -modulus | sed 's/Modulus=//' |
        tr 'A-F' 'a-f')
    got=$(hexle "$f" $((base + 36)) 384)
    if [ "$want" = "$got" ]; then ok; else fail "block $blk RSA modulus differs from $pub"; fi
}

# ---- the vectors' table (README, real espsecure verify-signature) -------------------------
# The vectors are what espsecure wrote: check them against their checksums first.
expect 0 sh -c "cd '$vec' && sha256sum -c --quiet SHA256SUMS"
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$vec/app_signed_a.bin"
contains "block 0 verified with"
expect 1 "$pk" verify --pubkey "$vec/key_b.pub.pem" "$vec/app_signed_a.bin"
contains "no signature block verifies"
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$vec/app_signed_ab.bin"
contains "block 0 verified"
expect 0 "$pk" verify --pubkey "$vec/key_b.pub.pem" "$vec/app_signed_ab.bin"
contains "block 1 verified"
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$vec/app_signed_a_plus_b.bin"
expect 0 "$pk" verify --pubkey "$vec/key_b.pub.pem" "$vec/app_signed_a_plus_b.bin"
contains "block 1 verified"
expect 0 "$pk" verify --pubkey "$vec/key_rsa.pub.pem" "$vec/app_signed_rsa.bin"
expect 1 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$vec/app_signed_rsa.bin"
expect 1 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$vec/app_signed_a_tampered.bin"
contains "image digest does not match"
contains "app_signed_a_tampered.bin"
# Several trusted keys: any one suffices, and the output names it.
expect 0 "$pk" verify --pubkey "$vec/key_rsa.pub.pem" --pubkey "$vec/key_b.pub.pem" \
    "$vec/app_signed_ab.bin"
contains "key_b.pub.pem"

expect 0 "$pk" signature-info "$vec/app_signed_ab.bin"
contains "public key digest: a8 b1 f7 19 4e bb 42 1a cc 3c cb 4a 00 fe a3 32 e4 e1 25 ba 78 ec 8a 50 f3 3e 8c c9 00 1c c9 69"
contains "public key digest: 2c fe c3 97 83 10 31 7c de b0 a4 9d 61 58 32 6e 24 7e 07 39 6c c8 be 92 56 2b 65 40 2b dc 6f a5"
expect 0 "$pk" signature-info "$vec/app_signed_rsa.bin"
contains "82 f2 47 5d 57 c8 8d 3e 7c 14 b7 df 31 4d 0a ce 64 f8 80 c3 ee f8 30 64 8f 8a 2a 34 da 11 02 fa"
expect 1 "$pk" signature-info "$vec/app_signed_a_tampered.bin"
contains "DOES NOT match"
expect 1 "$pk" signature-info "$vec/app.bin"

for k in a b rsa; do
    for form in "$k.pem" "$k.pub.pem"; do
        rm -f "$tmp/digest.bin"
        expect 0 "$pk" key-digest --key "$vec/key_$form" --output "$tmp/digest.bin"
        if cmp -s "$tmp/digest.bin" "$vec/key_$k.digest.bin"; then ok; else
            fail "key-digest of key_$form differs from key_$k.digest.bin"
        fi
    done
done

# ---- usage and refusals -----------------------------------------------------------------
expect 0 "$pk" sign --help
contains "usage: provision-keys sign"
expect 0 "$pk" verify --help
expect 0 "$pk" signature-info --help
expect 0 "$pk" key-digest --help
expect 2 "$pk" sign --output "$tmp/x.bin" "$vec/app.bin"
contains "--key is required"
expect 2 "$pk" sign --key "$vec/key_a.pem" "$vec/app.bin"
expect 2 "$pk" sign --key "$vec/key_a.pem" --output "$tmp/x.bin"
expect 2 "$pk" sign --bogus --key "$vec/key_a.pem" --output "$tmp/x.bin" "$vec/app.bin"
expect 2 "$pk" verify "$vec/app_signed_a.bin"
expect 2 "$pk" key-digest
# app.bin is raw data: refused without --raw, with the file named and the reason.
expect 1 "$pk" sign --key "$vec/key_a.pem" --output "$tmp/x.bin" "$vec/app.bin"
contains "app.bin"
contains "magic"
contains "--raw"
if [ -e "$tmp/x.bin" ]; then fail "a refused sign left an output file"; else ok; fi
expect 1 "$pk" sign --raw --key "$vec/key_a.pub.pem" --output "$tmp/x.bin" "$vec/app.bin"
contains "private key"
expect 1 "$pk" sign --raw --key "$tmp/missing.pem" --output "$tmp/x.bin" "$vec/app.bin"
contains "missing.pem"
expect 1 "$pk" sign --raw --key "$vec/key_a.pem" --output "$tmp/x.bin" "$vec/app_signed_a.bin"
contains "already signed"

# ---- our signatures: layout as espsecure's, checked by openssl ----------------------------
expect 0 "$pk" sign --raw --key "$vec/key_a.pem" --output "$tmp/a.bin" "$vec/app.bin"
if cmp -s -n 102400 "$tmp/a.bin" "$vec/app_signed_a.bin"; then ok; else
    fail "padded image differs from espsecure's"
fi
if [ "$(wc -c <"$tmp/a.bin")" -eq 106496 ]; then ok; else fail "signed size"; fi
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$tmp/a.bin"
expect 1 "$pk" verify --pubkey "$vec/key_b.pub.pem" "$tmp/a.bin"
openssl_ecdsa "$tmp/a.bin" 102400 0 "$vec/key_a.pub.pem" sha256 32

expect 0 "$pk" sign --raw --key "$vec/key_rsa.pem" --output "$tmp/rsa.bin" "$vec/app.bin"
openssl_rsa "$tmp/rsa.bin" 102400 0 "$vec/key_rsa.pub.pem"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$tmp/p384.pem" 2>/dev/null
openssl pkey -in "$tmp/p384.pem" -pubout -out "$tmp/p384.pub.pem"
"$bin/mkappimage" --version 3.1.0 --secure-version 2 --segments 4 --segment-len 5000 \
    "$tmp/app384.bin"
expect 0 "$pk" sign --key "$tmp/p384.pem" --output "$tmp/s384.bin" "$tmp/app384.bin"
contains "version '3.1.0' secure_version 2"
off384=$(($(wc -c <"$tmp/s384.bin") - 4096))
openssl_ecdsa "$tmp/s384.bin" "$off384" 0 "$tmp/p384.pub.pem" sha384 48
expect 0 "$pk" verify --pubkey "$tmp/p384.pub.pem" "$tmp/s384.bin"
expect 0 "$pk" signature-info "$tmp/s384.bin"
contains "ECDSA P-384, SHA-384"
contains "version '3.1.0' secure_version 2"

# ---- dual, append, three blocks ---------------------------------------------------------
expect 0 "$pk" sign --raw --key "$vec/key_a.pem" --key "$vec/key_rsa.pem" --output "$tmp/d.bin" \
    "$vec/app.bin"
openssl_ecdsa "$tmp/d.bin" 102400 0 "$vec/key_a.pub.pem" sha256 32
openssl_rsa "$tmp/d.bin" 102400 1 "$vec/key_rsa.pub.pem"
expect 0 "$pk" sign --append --key "$vec/key_b.pem" --output "$tmp/d3.bin" "$tmp/d.bin"
contains "3 signature block(s)"
if cmp -s -n $((102400 + 2 * 1216)) "$tmp/d.bin" "$tmp/d3.bin"; then ok; else
    fail "append changed the existing blocks"
fi
openssl_ecdsa "$tmp/d3.bin" 102400 2 "$vec/key_b.pub.pem" sha256 32
for k in a b rsa; do
    expect 0 "$pk" verify --pubkey "$vec/key_$k.pub.pem" "$tmp/d3.bin"
done
expect 1 "$pk" sign --append --key "$vec/key_b.pem" --output "$tmp/d4.bin" "$tmp/d3.bin"
contains "free signature block"
expect 1 "$pk" sign --append --key "$vec/key_b.pem" --output "$tmp/x.bin" "$vec/app.bin"
expect 1 "$pk" sign --append --key "$vec/key_b.pem" --output "$tmp/x.bin" \
    "$vec/app_signed_a_tampered.bin"
contains "image digest does not match"
# The rotation flow on espsecure's own image, then our append verified by openssl.
expect 0 "$pk" sign --append --key "$vec/key_b.pem" --output "$tmp/apb.bin" "$vec/app_signed_a.bin"
openssl_ecdsa "$tmp/apb.bin" 102400 1 "$vec/key_b.pub.pem" sha256 32
openssl_ecdsa "$tmp/apb.bin" 102400 0 "$vec/key_a.pub.pem" sha256 32

# ---- tampering through the CLI ------------------------------------------------------------
for off in 0 4096 101000 102400 $((102400 + 50)) $((102400 + 120)) $((102400 + 1197)) \
    $((102400 + 1210)) $((102400 + 3000)) $((102400 + 4000)); do
    cp "$tmp/a.bin" "$tmp/t.bin"
    flip "$tmp/t.bin" "$off"
    expect 1 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$tmp/t.bin"
done

# ---- app images ---------------------------------------------------------------------------
"$bin/mkappimage" --version 1.2.3 --project robot --secure-version 5 --chip 13 "$tmp/app.bin"
expect 0 "$pk" sign --key "$vec/key_a.pem" --output "$tmp/app.signed" "$tmp/app.bin"
contains "project 'robot' version '1.2.3' secure_version 5"
expect 0 "$pk" verify --pubkey "$vec/key_a.pub.pem" "$tmp/app.signed"
expect 0 "$pk" signature-info "$tmp/app.signed"
contains "chip id 13"
expect 1 "$pk" sign --key "$vec/key_a.pem" --output "$tmp/x.bin" "$tmp/app.signed"
contains "already signed"
cp "$tmp/app.bin" "$tmp/junk.bin"
printf 'junk' >>"$tmp/junk.bin"
expect 1 "$pk" sign --key "$vec/key_a.pem" --output "$tmp/x.bin" "$tmp/junk.bin"
contains "after the app image end"
cp "$tmp/app.bin" "$tmp/badck.bin"
flip "$tmp/badck.bin" 100
expect 1 "$pk" sign --key "$vec/key_a.pem" --output "$tmp/x.bin" "$tmp/badck.bin"
contains "badck.bin"

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
