#!/bin/sh
# /metrics in the Prometheus text exposition format (issue 17), read by independent parsers:
#   sh ops_metrics.sh BIN_DIR TMP_DIR
# A fleet of 4 robots (robot-sim --fleet, 3 running, 1 offline) minted with 20-day
# certificates, an mtls rotation in waves 50,100 that settles with the offline robot holding
# the interlock, two OAuth-token rows and a credential kind full of characters that need
# escaping (", \, line feed) added to the inventory with sqlite3, and a client without a
# certificate. Then /metrics is scraped over mTLS with curl and
#   - promtool check metrics (Prometheus' own strict parser and linter: HELP/TYPE, _total on
#     counters, units, escapes) must accept it;
#   - tests/integration/ops_check.py parses it again and compares the numbers with the admin
#     API, with openssl's reading of the offline robot's certificate, and with what the
#     fixture made (devices, credentials by kind and state, expiry horizon, rotation per
#     wave/class/state, handshakes, refusals, counters that never go down).
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/ops_lib.sh"
ops_start ops_metrics promtool curl sqlite3 python3 openssl

ops_fleet

# A refused handshake: no client certificate.
if curl -sS --max-time 20 --cacert pki/ca-chain.pem --resolve "localhost:$P:127.0.0.1" \
    "https://localhost:$P/healthz" >nocert.out 2>&1; then
    fail "a client without a certificate was served"
fi

# Tokens (one expiring in 2 days, one expired an hour ago) and a kind that needs escaping.
NOW=$(date -u +%s)
in2d=$(date -u -d "@$((NOW + 2 * 86400))" +%Y-%m-%dT%H:%M:%SZ)
ago1h=$(date -u -d "@$((NOW - 3600))" +%Y-%m-%dT%H:%M:%SZ)
sqlite3 keys/inventory.db >sql.out 2>&1 <<SQL || fail "sqlite3: $(cat sql.out)"
.timeout 10000
INSERT INTO credentials(device_id, kind, version, fingerprint, created_at, expires_at, state)
VALUES ('$OFFLINE', 'oauth_token', 1, 'sha256:00', '$ago1h', '$in2d', 'active'),
       ('$OFFLINE', 'oauth_token', 2, 'sha256:01', '$ago1h', '$ago1h', 'active'),
       ('$OFFLINE', 'odd"kind\\' || char(10) || 'x', 1, 'sha256:02', '$ago1h', NULL, 'active');
SQL

T0=$(date -u +%s)
ops_get /metrics metrics1.txt
T1=$(date -u +%s)
promtool check metrics <metrics1.txt >promtool.out 2>&1 || {
    cat promtool.out >&2
    fail "promtool check metrics refused /metrics"
}
ops_get "/api/devices?credentials=1" devices.json
ops_get "/api/rotation/$ROT_ID?devices=1" rotation.json
ops_get /metrics metrics2.txt
END=$(openssl x509 -in "keys/$OFFLINE.crt.pem" -noout -enddate | cut -d= -f2)
END=$(date -u -d "$END" +%s)
python3 "$HERE/ops_check.py" metrics metrics1.txt metrics2.txt devices.json rotation.json \
    --t0 "$T0" --t1 "$T1" --offline "$OFFLINE" --cert-end "$END" >check.out 2>&1 || {
    cat check.out >&2
    fail "the numbers of /metrics"
}
cat check.out

# Prometheus' own identity: a mobile certificate reads /metrics, not the admin API; the
# example scrape configuration (examples/prometheus.yml) passes promtool check config.
SRC=$(cd "$HERE/../.." && pwd)
"$B/provision-keys" ca issue --dir pki --mobile prometheus >issue.out 2>&1 ||
    fail "ca issue --mobile: $(cat issue.out)"
mkdir -p etc
cp pki/ca-chain.pem pki/mobiles/prometheus.chain.pem pki/mobiles/prometheus.key.pem etc/
sed "s|/etc/prometheus/fleetkey/|$T/etc/|" "$SRC/examples/prometheus.yml" >prometheus.yml
promtool check config prometheus.yml >config.out 2>&1 || {
    cat config.out >&2
    fail "promtool check config examples/prometheus.yml"
}
PROM="curl -sS --max-time 20 --cacert etc/ca-chain.pem --cert etc/prometheus.chain.pem"
PROM="$PROM --key etc/prometheus.key.pem --resolve localhost:$P:127.0.0.1 -o prom.out"
[ "$($PROM -w '%{http_code}' "https://localhost:$P/metrics")" = 200 ] ||
    fail "Prometheus' certificate cannot scrape /metrics"
promtool check metrics <prom.out >/dev/null 2>&1 || fail "the second scrape does not check"
[ "$($PROM -w '%{http_code}' "https://localhost:$P/api/devices")" = 403 ] ||
    fail "Prometheus' certificate reads the admin API"

# The audit tail: N newest rows, oldest first, and its refusals.
ops_get "/api/audit?tail=5" audit.json
python3 -c 'import json,sys; a=json.load(open("audit.json"))["audit"]; s=[r["seq"] for r in a]
sys.exit(0 if len(s) == 5 and s == list(range(s[0], s[0] + 5)) else 1)' ||
    fail "audit tail: $(cat audit.json)"
for bad in 0 1001 -1 x 5x; do
    code=$($CURL -o bad.json -w '%{http_code}' "https://localhost:$P/api/audit?tail=$bad")
    [ "$code" = 400 ] || fail "tail=$bad answered $code"
done
if grep -q 'Sanitizer\|runtime error:' srv.log; then
    fail "sanitizer report"
fi
echo "ops_metrics: promtool accepts /metrics, the values agree with the API: 1 passed, 0 failed"
