# The fleet the operations tests look at (ops_metrics.sh, ops_dashboard.sh). Sourced first
# thing, with B (the bin directory), T (the scratch directory) and HERE (this folder) set.

# ops_start NAME TOOL... : skips unless the programs of B and the commands TOOL... exist, makes
# T afresh and enters it, loads lib.sh and fleet_lib.sh, defines fail (it shows the logs) and
# stops every background process on exit.
ops_start() {
    OPS_NAME=$1
    shift
    . "$HERE/skip.sh"
    for t in provision-keys robot-sim fleetkey-server wss_client fleetctl; do
        [ -x "$B/$t" ] || fk_skip "$B/$t not built"
    done
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || fk_skip "$c missing (scripts/packages.d/ops.txt)"
    done
    rm -rf "$T"
    mkdir -p "$T"
    cd "$T"
    . "$HERE/lib.sh"
    trap stop_all EXIT
    . "$HERE/fleet_lib.sh"
    # After lib.sh, whose fail this one replaces.
    fail() {
        echo "FAIL [$OPS_NAME]: $*" >&2
        for f in srv.log fleet.err dash.err chrome.err; do
            [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
        done
        exit 1
    }
}

# ops_fleet: 4 robots minted with 20-day certificates (batch --cert-days 20), the first 3
# running in one robot-sim --fleet process, the 4th never started (offline); an mtls rotation
# of all 4 in waves 50,100, started and waited for until it settled (the offline robot holds
# the interlock). Sets P, OPER (fleet_lib.sh), ROT_ID, OFFLINE (the robot that never ran) and
# CURL (curl with the operator's certificate, verifying the server against the fleet CA).
ops_fleet() {
    FLEET_MINT_ARGS="--cert-days 20" fleet_mint 4
    fleet_server
    fleet_start fleet 3 --rot-trial-ms 30000 --run-ms 600000
    fleet_wait_status fleet
    fleet_wait_online fleet 3 60
    OFFLINE=$(ls keys | sed -n 's/\.nvs\.bin$//p' | sort | tail -n 1)
    CURL="curl -sS --max-time 20 --cacert pki/ca-chain.pem --cert pki/operators/ops.chain.pem"
    CURL="$CURL --key pki/operators/ops.key.pem --resolve localhost:$P:127.0.0.1"
    FLEET_WAVES=50,100 fleet_rotate mtls 30
    i=0
    until "$B/wss_client" --port "$P" $OPER --get "/api/rotation/$ROT_ID" >api.out 2>api.err &&
        grep -q '"state":"settled"' api.out; do
        i=$((i + 1))
        [ $i -le 1000 ] || { head -c 600 api.out >&2; fail "the plan did not settle"; }
        sleep 0.2
    done
}

# ops_get PATH OUT: GET https://localhost:P/PATH with curl as the operator; the body in OUT.
ops_get() {
    $CURL -o "$2" -w '%{http_code}' "https://localhost:$P$1" >"$2.code" 2>"$2.err" ||
        fail "curl $1: $(cat "$2.err")"
    [ "$(cat "$2.code")" = 200 ] || fail "GET $1: HTTP $(cat "$2.code"): $(head -c 300 "$2")"
}
