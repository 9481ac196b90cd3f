#!/bin/sh
# Packaging (docs/install.md): `cmake --install` into a DESTDIR installs every program, its man
# page (rendered by man without a warning at 80 columns), the docs and the systemd unit with
# ExecStart in the prefix, and each installed program answers --help; scripts/mkdeb builds a
# .deb whose control file has computed Depends, that dpkg-deb checks, and whose programs,
# extracted with dpkg -x, answer --help too. lintian runs when it is installed.
# Usage: package.sh SOURCE_DIR BUILD_DIR TMP_DIR. Exit 77 (skipped) without dpkg-deb or man,
# except under CI (skip.sh).
set -eu
SRC=$1
BUILD=$2
TMP=$3
. "$SRC/tests/integration/skip.sh"
command -v dpkg-deb >/dev/null 2>&1 || fk_skip "dpkg-deb not installed"
command -v man >/dev/null 2>&1 || fk_skip "man (man-db) not installed"
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP"
PROGRAMS="provision-keys fleetkey-server robot-sim fleetctl robot-sim-dl"
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
has() { grep -q -- "$1" "$2" || { cat "$2" >&2; fail "$2 lacks: $1"; }; }
# helps DIR: each program in DIR answers --help with its usage, exit 0.
helps() {
    for p in $PROGRAMS; do
        "$1/$p" --help >"help.$p.txt" 2>&1 || { cat "help.$p.txt" >&2; fail "$1/$p --help"; }
        has "usage:" "help.$p.txt"
    done
}

# 1. make install's step, into a DESTDIR.
DESTDIR="$TMP/destdir" cmake --install "$BUILD" --prefix /usr/local >install.log 2>&1 ||
    { cat install.log >&2; fail "cmake --install"; }
R="$TMP/destdir/usr/local"
helps "$R/bin"
for p in $PROGRAMS; do
    page="$R/share/man/man1/$p.1"
    [ -f "$page" ] || fail "no man page for $p"
    MANWIDTH=80 man --warnings -l "$page" >"man.$p.txt" 2>"man.$p.err" || fail "man -l $page"
    [ ! -s "man.$p.err" ] || { cat "man.$p.err" >&2; fail "man warns about $p.1"; }
    has "$p" "man.$p.txt"
    has "OPTIONS" "man.$p.txt"
done
has "burn-key-digest" man.provision-keys.txt # a subcommand's own --help is in the page
has "robot-sim nvs" man.robot-sim.txt
has "ExecStart=/usr/local/bin/fleetkey-server" "$R/lib/systemd/system/fleetkey-server.service"
[ -f "$R/share/doc/fleetkey/install.md" ] || fail "docs not installed"
[ -f "$R/share/doc/fleetkey/README.md" ] || fail "README not installed"

# 2. make deb's step.
sh "$SRC/scripts/mkdeb" "$BUILD" "$TMP/deb" >mkdeb.out 2>mkdeb.err ||
    { cat mkdeb.out mkdeb.err >&2; fail "mkdeb"; }
DEB=$(tail -n 1 mkdeb.out)
[ -f "$DEB" ] || fail "mkdeb printed no package: $DEB"
dpkg-deb --info "$DEB" >info.txt || fail "dpkg-deb --info"
has "Package: fleetkey" info.txt
has "Depends: .*libssl3" info.txt
has "Depends: .*libc6" info.txt
dpkg-deb --contents "$DEB" >contents.txt || fail "dpkg-deb --contents"
for p in $PROGRAMS; do
    has "./usr/bin/$p\$" contents.txt
    has "./usr/share/man/man1/$p.1.gz" contents.txt
done
has "./lib/systemd/system/fleetkey-server.service" contents.txt
has "./usr/share/doc/fleetkey/copyright" contents.txt
dpkg -x "$DEB" "$TMP/x" || fail "dpkg -x"
helps "$TMP/x/usr/bin"
has "ExecStart=/usr/bin/fleetkey-server" "$TMP/x/lib/systemd/system/fleetkey-server.service"
(cd "$TMP/x" && md5sum --quiet -c "$TMP/deb/fleetkey-deb/root/DEBIAN/md5sums") ||
    fail "md5sums do not match the payload"
if command -v lintian >/dev/null 2>&1; then
    lintian --no-tag-display-limit "$DEB" >lintian.txt 2>&1 || true
    if grep -q '^E:' lintian.txt; then
        cat lintian.txt >&2
        fail "lintian reports errors"
    fi
else
    echo "note: lintian not installed; the package was checked with dpkg-deb only"
fi
echo "package: ok ($DEB)"
