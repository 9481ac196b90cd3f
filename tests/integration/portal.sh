#!/bin/sh
# Integration test of the Wi-Fi re-provisioning portal (robot-sim --portal-listen, docs/device.md):
# a production robot provisioned without Wi-Fi (its Kconfig fallback must stay unused) opens the
# portal; curl gets the form, a bad password is refused with the rule and nothing is written, a
# good form is saved; the NVS dump shows the new SSID and a reboot keeps it (no portal then).
# --wifi-fail opens the portal over existing credentials; SIGUSR1 (the button) opens it while
# the services run, and they start again after the save. The password never reaches the output.
# Usage: portal.sh BIN_DIR TMP_DIR. Exit 77 (skipped) without curl, except under CI (skip.sh).
set -eu
BIN=$1
TMP=$2
RS="$BIN/robot-sim"
PK="$BIN/provision-keys"
. "$(dirname "$0")/skip.sh"
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null 2>&1 || fk_skip "curl not installed"
rm -rf "$TMP"
mkdir -p "$TMP"
cd "$TMP"
trap stop_all EXIT

fail() {
    echo "FAIL: $*" >&2
    [ -f rs.out ] && cat rs.out rs.err >&2
    exit 1
}
has() { expect "$2" "$1"; }
lacks() { if grep -q -- "$1" "$2"; then cat "$2" >&2; fail "$2 has: $1"; fi; }
# up PATTERN: up to 15 s (bounded) for a line robot-sim prints on stdout.
up() { wait_for rs.out "$1" || fail "no '$1' in rs.out after 15 s"; }
portal_port() {
    sed -n 's|.*portal on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' rs.out | tail -n 1
}
# wait_exit PID: up to 15 s; sets rc.
wait_exit() {
    _i=0
    while kill -0 "$1" 2>/dev/null; do
        _i=$((_i + 1))
        [ $_i -le 150 ] || { kill "$1"; fail "robot-sim did not stop"; }
        sleep 0.1
    done
    set +e
    wait "$1"
    rc=$?
    set -e
}
post() { # post SSID PASSWORD -> response headers+body in post.txt
    curl -sS -i --max-time 10 --data-urlencode "ssid=$1" --data-urlencode "password=$2" \
        "http://127.0.0.1:$PORT/wifi" >post.txt
}

PW='n3w-Secret!pass'
"$PK" generate --output keys/d.json --mac AA:BB:CC:DD:EE:01 --encrypt-nvs >gen.out 2>&1 ||
    { cat gen.out; fail "generate"; }
"$RS" flash-image create --out robot.img --nvs keys/d.nvs.bin --nvs-keys keys/d.nvs_keys.bin \
    >/dev/null 2>&1 || fail "flash-image create"
cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_WIFI_SSID="kconfnet"
CONFIG_WIFI_PASSWORD="kconfig-pw-1"
CFG

# 1. No Wi-Fi in NVS, production: the Kconfig fallback is not used, the portal opens.
"$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only --portal-listen 127.0.0.1:0 \
    >rs.out 2>rs.err &
pid=$!
PIDS=$pid
up "portal on http"
PORT=$(portal_port)
has "wifi: off" rs.out
has "Kconfig Wi-Fi fallback not used" rs.err
curl -sS -i --max-time 10 "http://127.0.0.1:$PORT/" >form.txt
has "HTTP/1.1 200 OK" form.txt
has 'name="ssid"' form.txt
curl -sS -i --max-time 10 "http://127.0.0.1:$PORT/hotspot-detect.html" >probe.txt
has "HTTP/1.1 302 Found" probe.txt
post "Lab Net" "short"
has "400 Bad Request" post.txt
has "8 to 63 characters" post.txt
post "012345678901234567890123456789012" "$PW"
has "400 Bad Request" post.txt
has "SSID" post.txt
kill -0 $pid 2>/dev/null || fail "robot-sim left the portal after a refused form"
post "Lab Net" "$PW"
has "303 See Other" post.txt
wait_exit $pid
[ "$rc" = 0 ] || fail "portal boot exit $rc"
has "Wi-Fi credentials saved (ssid 'Lab Net'); leaving portal mode" rs.out
has "wifi: nvs" rs.out
lacks "$PW" rs.out
lacks "$PW" rs.err
has "password sha256:" rs.err

# 2. NVS dump shows the new SSID; a reboot keeps it and opens no portal.
"$RS" nvs get --flash robot.img --ns wifi --key ssid >get.txt 2>&1 || { cat get.txt; fail "nvs get"; }
has "Lab Net" get.txt
"$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only --status-json \
    --portal-listen 127.0.0.1:0 >rs.out 2>rs.err || fail "reboot"
has '"wifi":"nvs"' rs.out
lacks "portal on" rs.out
lacks "$PW" rs.out

# 3. --wifi-fail: the stored network refuses the robot; the portal takes a new one.
"$RS" --flash robot.img --sdkconfig prod.sdkconfig --boot-only --wifi-fail \
    --portal-listen 127.0.0.1:0 >rs.out 2>rs.err &
pid=$!
PIDS=$pid
up "portal on http"
PORT=$(portal_port)
has "network refused the stored credential" rs.err
post "Other-AP" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
has "303 See Other" post.txt
wait_exit $pid
[ "$rc" = 0 ] || fail "wifi-fail boot exit $rc"
"$RS" nvs get --flash robot.img --ns wifi --key ssid >get.txt 2>&1 || fail "nvs get"
has "Other-AP" get.txt

# 4. The button (SIGUSR1) while the services run: portal, save, services again.
"$RS" --flash robot.img --sdkconfig prod.sdkconfig --portal-listen 127.0.0.1:0 \
    --ctl-bind 127.0.0.1 --ctl-port 0 --no-wss >rs.out 2>rs.err &
pid=$!
PIDS=$pid
up "control listener on udp"
lacks "portal on" rs.out
kill -USR1 $pid
up "portal on http"
PORT=$(portal_port)
post "Button Net" "$PW"
has "303 See Other" post.txt
up "leaving portal mode"
_n=0
while [ "$(grep -c 'control listener on udp' rs.out)" -lt 2 ]; do
    _n=$((_n + 1))
    [ $_n -le 150 ] || fail "services did not start again after the portal"
    sleep 0.1
done
kill -TERM $pid
wait_exit $pid
[ "$rc" = 0 ] || fail "services exit $rc after SIGTERM"
has "button pressed" rs.err
lacks "$PW" rs.out
lacks "$PW" rs.err
"$RS" nvs get --flash robot.img --ns wifi --key ssid >get.txt 2>&1 || fail "nvs get"
has "Button Net" get.txt
echo "portal: ok"
