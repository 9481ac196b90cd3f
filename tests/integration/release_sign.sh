#!/bin/bash
# scripts/release-sign end to end (seed 004: CI secret OTA_SIGNING_KEY): the key exists only as
# PEM text in the environment (openssl writes it to a pipe, never a file); the release is signed
# and verified with the public key; the script runs under strace, which shows that no file was
# created except the signed image, that the key's bytes were written to pipes only, and that no
# program the script started got the key in its arguments or environment; afterwards neither
# the working directory nor TMPDIR holds a file with the key. Dual-signing with
# OTA_SIGNING_KEY_NEXT, a key that is not the pinned one, a missing key, .gitignore, and a key
# in a PKCS#11 token (SoftHSM2) are checked too.
#   bash release_sign.sh SOURCE_DIR BIN_DIR WORK_DIR
set -eu
SRC=$1
BIN=$2
TMP=$3
PK="$BIN/provision-keys"
. "$(dirname "$0")/skip.sh"
command -v strace >/dev/null || fk_skip "strace not installed (scripts/packages.d/release.txt)"
[ -x "$BIN/mkappimage" ] || fk_skip "mkappimage not built"
rm -rf "$TMP"
mkdir -p "$TMP/work" "$TMP/tmpdir"
. "$(dirname "$0")/lib.sh"
W="$TMP/work"
T="$TMP/tmpdir"
cd "$W"

KEY=$(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null)
NEXT=$(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null)
printf '%s\n' "$KEY" | openssl pkey -pubout -out key.pub.pem
printf '%s\n' "$NEXT" | openssl pkey -pubout -out next.pub.pem
# a line of the key's base64 body: any copy of the key contains it
MARK=$(printf '%s\n' "$KEY" | sed -n 2p)
MARK_NEXT=$(printf '%s\n' "$NEXT" | sed -n 2p)
[ ${#MARK} -ge 40 ] || fail "unexpected PEM layout"
DIGEST=$(printf '%s\n' "$KEY" | "$PK" key-digest --key - | cut -d' ' -f1)
"$BIN/mkappimage" --version 2.1.0 --secure-version 2 --seed 11 app.bin
mkdir out

# The signing run, traced: file creations, writes (with the data and the fd's target), execs
# (with their environment).
# LeakSanitizer cannot run under ptrace: off for this run only (the runs below check leaks).
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    OTA_SIGNING_KEY="$KEY" TMPDIR="$T" strace -f -y -v -s 8192 -o "$TMP/trace" \
    -e trace=open,openat,creat,write,pwrite64,writev,rename,renameat,renameat2,link,linkat,execve \
    bash "$SRC/scripts/release-sign" --provision-keys "$PK" --expect-digest "$DIGEST" \
    --output out/app.signed.bin app.bin >sign.out 2>sign.err || {
    cat sign.out sign.err
    fail "release-sign failed"
}
expect sign.out "signature OK"
run 0 verify "$PK" verify --pubkey key.pub.pem out/app.signed.bin
expect verify.out "signature OK: block 0"

# 1. files created (O_CREAT, O_TMPFILE, creat): only the signed image (and its temp file, in
#    the output directory)
grep -E 'O_CREAT|O_TMPFILE|creat\(' "$TMP/trace" | grep -v '"/dev/null"' >"$TMP/created.txt" || true
[ -s "$TMP/created.txt" ] || fail "the trace shows no file created at all (strace did not trace?)"
if grep -v "\"$W/out/\|\"out/" "$TMP/created.txt" >"$TMP/unexpected.txt"; then
    cat "$TMP/unexpected.txt"
    fail "release-sign created a file outside the output directory"
fi
# 2. every write of key bytes went to a pipe
grep -E '^[0-9]+ +(write|pwrite64|writev)\(' "$TMP/trace" | grep -F -e "$MARK" -e "PRIVATE KEY" \
    >"$TMP/keywrites.txt" || true
[ -s "$TMP/keywrites.txt" ] || fail "the trace shows no write of the key (it must go through a pipe)"
if grep -v '^[0-9]* *write[v]*([0-9]*<pipe:' "$TMP/keywrites.txt" >"$TMP/badwrites.txt"; then
    cut -c1-120 "$TMP/badwrites.txt"
    fail "key bytes were written to something other than a pipe"
fi
# 3. no program started by the script got the key (argv or environment); the first execve is
#    the script itself, started with OTA_SIGNING_KEY by this test
grep -E '^[0-9]+ +execve\(' "$TMP/trace" | tail -n +2 | grep -F -e "$MARK" -e "OTA_SIGNING_KEY" \
    >"$TMP/leaked.txt" && { cut -c1-160 "$TMP/leaked.txt"; fail "the key reached a child's argv or env"; }
rm -f "$TMP/trace" "$TMP/keywrites.txt" # they hold the key's bytes as they went through the pipes
# 4. nothing on disk holds the key: the working directory and TMPDIR (empty)
grep -rlF -e "$MARK" "$W" "$T" && fail "a file holds the key"
[ -z "$(ls -A "$T")" ] || fail "release-sign left files in TMPDIR: $(ls -A "$T")"

# Dual-signed during a rotation: block 0 the current key, block 1 the next one
OTA_SIGNING_KEY="$KEY" OTA_SIGNING_KEY_NEXT="$NEXT" TMPDIR="$T" run 0 dual \
    bash "$SRC/scripts/release-sign" --provision-keys "$PK" --output out/app.dual.bin app.bin
run 0 verify_next "$PK" verify --pubkey next.pub.pem out/app.dual.bin
expect verify_next.out "block 1 verified"
run 0 verify_cur "$PK" verify --pubkey key.pub.pem out/app.dual.bin
expect verify_cur.out "block 0 verified"
grep -rlF -e "$MARK" -e "$MARK_NEXT" "$W" "$T" && fail "a file holds a key"

# Refusals: a key that is not the pinned one signs nothing; no key; not a key
OTA_SIGNING_KEY="$NEXT" run 1 wrong bash "$SRC/scripts/release-sign" --provision-keys "$PK" \
    --expect-digest "$DIGEST" --output out/wrong.bin app.bin
expect wrong.err "not the key the fleet trusts"
[ ! -e out/wrong.bin ] || fail "a refused run wrote an image"
env -u OTA_SIGNING_KEY bash "$SRC/scripts/release-sign" --provision-keys "$PK" \
    --output out/none.bin app.bin >none.out 2>none.err && fail "signed without a key"
expect none.err "OTA_SIGNING_KEY is not set"
OTA_SIGNING_KEY="keys/ota.pem" run 1 path bash "$SRC/scripts/release-sign" \
    --provision-keys "$PK" --output out/none.bin app.bin
expect path.err "expected PEM text"
# .gitignore keeps keys out of the repository but not the committed test keys and sources
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    for f in keys/ota.pem release.pem ota.key .env keys/device_001.json; do
        git -C "$SRC" check-ignore -q "$f" || fail ".gitignore does not ignore $f"
    done
    for f in tests/vectors/sbv2/key_a.pem src/keys/backup.c .env.example; do
        git -C "$SRC" check-ignore -q "$f" && fail ".gitignore ignores $f"
    done
    [ -z "$(git -C "$SRC" ls-files -ci --exclude-standard)" ] || fail "tracked files are ignored"
fi
# A key in a PKCS#11 token (SoftHSM2, made inside the token: no key file at any point)
module=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -f "$m" ] && module=$m && break
done
enginedir=$(openssl version -e | sed 's/^ENGINESDIR: "\(.*\)"$/\1/')
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null ||
    [ -z "$module" ] || [ ! -f "$enginedir/pkcs11.so" ]; then
    fk_skip "softhsm2, opensc or libengine-pkcs11-openssl missing: PKCS#11 release not tested"
fi
mkdir -p "$TMP/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$TMP" >"$TMP/softhsm2.conf"
export SOFTHSM2_CONF="$TMP/softhsm2.conf" FK_PKCS11_MODULE="$module"
# Debian 12's libp11 leaks public-key objects (see ota_pkcs11.sh): ignore leaks inside it only.
printf 'leak:engines-3/pkcs11.so\n' >"$TMP/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$TMP/lsan.supp"
softhsm2-util --init-token --free --label fk-rel --so-pin 87654321 --pin 135790 >/dev/null
pkcs11-tool --module "$module" --token-label fk-rel --login --pin 135790 --keypairgen \
    --key-type EC:prime256v1 --label rel --id 01 >/dev/null 2>&1 || fail "pkcs11-tool keypairgen"
URI="pkcs11:token=fk-rel;object=rel"
"$PK" key-digest --key "$URI;type=public" >hsm.digest 2>/dev/null || fail "token public key"
OTA_SIGNING_KEY="$URI;type=private" FK_PKCS11_PIN=135790 run 0 hsm \
    bash "$SRC/scripts/release-sign" --provision-keys "$PK" \
    --expect-digest "$(cut -d' ' -f1 hsm.digest)" --output out/app.hsm.bin app.bin
FK_PKCS11_PIN=135790 run 0 verify_hsm "$PK" verify --pubkey "$URI;type=public" out/app.hsm.bin
expect verify_hsm.out "signature OK: block 0"
echo "PASS [release_sign]"
