#!/bin/sh
# The fleet dashboard in a real browser (issue 17):
#   sh ops_dashboard.sh BIN_DIR TMP_DIR
# The fleet of ops_lib.sh (4 robots, 3 running, an mtls rotation in waves 50,100 settled), then
# `fleetctl dashboard --listen 127.0.0.1:0` with the operator's PKCS#12 bundle:
#   - it refuses what it must not forward (POST, /metrics, another Host, dot segments, a
#     non-loopback --listen) and serves the page byte for byte as in src/server/dashboard/;
#   - headless Chromium loads http://127.0.0.1:PORT/dashboard, runs its script and dumps the
#     DOM; ops_check.py compares the rendered numbers (devices, connected, rotated, expiring
#     certificates, each wave's progress, the device rows, the audit tail) with the admin API
#     and /metrics;
#   - a screenshot goes to BIN_DIR/../dashboard.png (1280x900).
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
. "$HERE/ops_lib.sh"
ops_start ops_dashboard chromium curl python3

ops_fleet
echo "ops_dashboard passphrase" >pw.txt
"$B/provision-keys" export-p12 --dir pki --operator ops --password-file pw.txt --out ops.p12 \
    >p12.out 2>&1 || fail "export-p12: $(cat p12.out)"
FC="$B/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P"
FC="$FC --ca pki/ca-chain.pem"

# The proxy listens on loopback only.
set +e
$FC dashboard --listen 0.0.0.0:0 >open.out 2>&1
rc=$?
set -e
[ $rc = 2 ] || fail "--listen 0.0.0.0 was not refused (exit $rc)"
grep -q "not a loopback address" open.out || fail "no reason given: $(cat open.out)"

$FC dashboard --listen 127.0.0.1:0 >dash.out 2>dash.err </dev/null &
PIDS="$PIDS $!"
wait_for dash.out "http://127.0.0.1:[0-9]*/dashboard" 300 || fail "fleetctl dashboard: no URL"
URL=$(sed -n 's|.*\(http://127\.0\.0\.1:[0-9]*/dashboard\).*|\1|p' dash.out)
BASE=${URL%/dashboard}
HP=${BASE#http://}

# code METHOD PATH [curl options]: the HTTP status the proxy answers.
code() {
    m=$1 path=$2
    shift 2
    curl -sS --max-time 30 --path-as-is -o code.body -w '%{http_code}' -X "$m" "$@" \
        "$BASE$path" 2>code.err || echo "curl failed: $(cat code.err)"
}
[ "$(code POST /api/rotation -d '{}')" = 405 ] || fail "POST forwarded"
[ "$(code DELETE /api/devices)" = 405 ] || fail "DELETE forwarded"
[ "$(code GET /metrics)" = 404 ] || fail "/metrics forwarded"
[ "$(code GET /healthz)" = 404 ] || fail "/healthz forwarded"
[ "$(code GET /api/../metrics)" = 400 ] || fail "a dot segment forwarded"
[ "$(code GET /api/%2e%2e/metrics)" = 400 ] || fail "an encoded dot segment forwarded"
[ "$(code GET /api/devices -H "Host: evil.example:${HP#*:}")" = 403 ] ||
    fail "a foreign Host was served (DNS rebinding)"
[ "$(code GET /)" = 302 ] || fail "/ does not redirect"
[ "$(code GET /api/devices/robot-nope)" = 404 ] || fail "the server's 404 not passed on"
[ "$(code GET /dashboard)" = 200 ] || fail "GET /dashboard"
cmp -s code.body "$SRC/src/server/dashboard/index.html" || fail "the page differs from its source"
for f in dashboard.js dashboard.css; do
    [ "$(code GET /dashboard/$f)" = 200 ] || fail "GET /dashboard/$f"
    cmp -s code.body "$SRC/src/server/dashboard/$f" || fail "$f differs from its source"
done
curl -sS -D hdr.txt -o /dev/null "$URL"
grep -qi "^content-type: text/html" hdr.txt || fail "the page is not text/html: $(cat hdr.txt)"
grep -qi "^content-security-policy: default-src 'none'" hdr.txt || fail "no CSP on the page"
# The page is for operators only on the server, too: a plain GET without a certificate
# never reaches it (the TLS handshake needs one).
if curl -sS --max-time 20 --cacert pki/ca-chain.pem --resolve "localhost:$P:127.0.0.1" \
    "https://localhost:$P/dashboard" >direct.out 2>&1; then
    fail "the server served /dashboard without a client certificate"
fi

# What the page will be compared with (through the proxy: the same answers the page reads).
curl -sS --max-time 30 -o devices.json "$BASE/api/devices?credentials=1" || fail "devices"
curl -sS --max-time 30 -o rotation.json "$BASE/api/rotation/$ROT_ID?devices=1" || fail "plan"
ops_get /metrics metrics.txt

# Chromium needs a writable HOME and profile; the page renders once every answer is in, and
# --virtual-time-budget lets its fetches finish before the DOM is dumped.
mkdir -p home profile
chrome() {
    HOME="$T/home" timeout 120 chromium --headless --disable-gpu --no-sandbox \
        --no-first-run --no-default-browser-check --disable-extensions \
        --user-data-dir="$T/profile" --virtual-time-budget=5000 "$@" 2>>chrome.err
}
chrome --dump-dom "$URL" >dom.html || fail "chromium --dump-dom failed"
python3 "$HERE/ops_check.py" dashboard dom.html devices.json rotation.json metrics.txt \
    >check.out 2>&1 || {
    cat check.out >&2
    head -c 3000 dom.html >&2
    fail "the rendered dashboard"
}
cat check.out
SHOT=$(cd "$B/.." && pwd)/dashboard.png
rm -f "$SHOT"
chrome --screenshot="$SHOT" --window-size=1280,900 "$URL" >shot.out || fail "screenshot failed"
[ "$(head -c 8 "$SHOT" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    fail "$SHOT is not a PNG"
[ "$(stat -c %s "$SHOT")" -gt 20000 ] || fail "$SHOT is suspiciously small"
grep -q "GET /api/devices?credentials=1 -> 200" dash.err || fail "the page's fetches not logged"
if grep -q 'Sanitizer\|runtime error:' srv.log dash.err; then
    fail "sanitizer report"
fi
echo "ops_dashboard: rendered numbers agree with the API, screenshot $SHOT: 1 passed, 0 failed"
