#!/bin/sh
# The JDK client (mobile/, issue 16 "must show") against the real fleetkey-server:
#   sh mobile_e2e.sh BIN_DIR TMP_DIR JAVA JUNIT_CONSOLE_JAR CLASSPATH
# A fleet CA and two robots (provision-keys batch --ca, into the inventory; robot-sim connects
# them), two phones alice and bob (ca issue --mobile, export-p12), fleetkey-server on a port the
# OS picks. Then FleetkeyE2ETest (JUnit): client_credentials over mTLS, whoami, wss with a
# bearer token, hello → welcome, list_devices shows both robots (the connected one online),
# ping; refresh at the 12 h lead (injected clock) and reuse of a spent refresh token revoking
# the family; alice's token with bob's certificate refused (wss 401, API 401, refresh); revoke
# closes the open channel with 1008 and the revoked token is refused; no token and no password
# in the client's log lines or the server log. This script checks the password once more in
# every log it has, and the server's audit of the revocation.
set -eu
B=$1
T=$2
JAVA=$3
CONSOLE=$4
CP=$5
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/skip.sh"
for t in provision-keys robot-sim fleetkey-server wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS
fail() {
    echo "FAIL [mobile_e2e]: $*" >&2
    for f in java.out srv.log fleet.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}
trap stop_all EXIT
. "$HERE/fleet_lib.sh"

PW='mobile e2e bundle password'
printf '%s\n' "$PW" >pw
fleet_mint 2
for m in alice bob; do
    "$B/provision-keys" ca issue --dir pki --mobile "$m" >>mint.log 2>&1 || fail "issue $m"
    "$B/provision-keys" export-p12 --dir pki --mobile "$m" --password-file pw --out "$m.p12" \
        >>mint.log 2>&1 || fail "export-p12 $m"
done
fleet_server
fleet_start fleet 2
fleet_wait_online fleet 2 60
ids=$(ls keys | sed -n 's/\.nvs\.bin$//p' | sort)
online=$(echo "$ids" | head -1)
devices=$(echo "$ids" | paste -sd, -)

"$JAVA" -Dfleetkey.e2e.base="https://127.0.0.1:$P" -Dfleetkey.e2e.dir="$T" \
    -Dfleetkey.e2e.serverlog="$T/srv.log" -Dfleetkey.e2e.devices="$devices" \
    -Dfleetkey.e2e.online="$online" -Djava.io.tmpdir="$T" \
    -jar "$CONSOLE" --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
    --class-path "$CP" --select-class io.fleetkey.mobile.FleetkeyE2ETest >java.out 2>&1 ||
    fail "FleetkeyE2ETest failed"
grep -q '5 tests successful' java.out || fail "not all 5 e2e tests ran"

# The server saw the phone: hello, the revocation closing the channel, refusals.
expect srv.log 'mobile alice: hello'
expect srv.log 'revoked: closing'
for f in srv.log java.out fleet.out fleet.err mint.log; do
    if grep -qF -- "$PW" "$f"; then fail "the bundle password is in $f"; fi
done
echo "mobile_e2e: ok"
