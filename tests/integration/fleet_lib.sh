# A fleet of simulated robots against a real fleetkey-server (robot-sim --fleet, issue 14).
# Sourced by tests/integration/robot_sim_fleet.sh and bench/bench_rotation.sh; needs B (the bin
# directory) and a fail function; runs in the scratch directory. Background processes go into
# PIDS (the caller stops them on exit). FLEET_INV (default keys/inventory.db) is the inventory
# batch records into and the server reads: a postgresql:// URI in pg_fleet.sh.

# fleet_mint N: a CA, the server's certificate, an operator, a CRL and N robots minted by
# `provision-keys batch --ca --encrypt-nvs` into keys/ (NVS images with PSK, identity, mTLS key
# and certificate, CA), and the production sdkconfig the robots boot with. $FLEET_MINT_ARGS
# adds batch options (e.g. --cert-days 20).
fleet_mint() {
    pk="$B/provision-keys"
    "$pk" ca init --dir pki >mint.log 2>&1 || fail "ca init"
    "$pk" ca issue --dir pki --server localhost --san IP:127.0.0.1 >>mint.log 2>&1 ||
        fail "ca issue --server"
    "$pk" ca issue --dir pki --operator ops >>mint.log 2>&1 || fail "ca issue --operator"
    "$pk" ca crl --dir pki --out crl.pem >>mint.log 2>&1 || fail "ca crl"
    awk -v n="$1" 'BEGIN { print "mac,wifi_ssid,wifi_password"
        for (i = 0; i < n; i++)
            printf "02:00:%02X:%02X:%02X:%02X,lab,pw-%d-fleet\n", int(i / 16777216) % 256,
                int(i / 65536) % 256, int(i / 256) % 256, i % 256, i }' >devices.csv
    # shellcheck disable=SC2086
    "$pk" batch --csv devices.csv --output-dir keys --ca pki --encrypt-nvs --jobs 2 \
        --inventory "${FLEET_INV:-keys/inventory.db}" ${FLEET_MINT_ARGS:-} >batch.out 2>>mint.log ||
        fail "batch --ca"
    cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_EXPECTED_HOST="localhost"
CFG
    OPER="--ca pki/ca-chain.pem --cert pki/operators/ops.chain.pem --key pki/operators/ops.key.pem"
}

# fleet_server [flags]: fleetkey-server on a port the OS picks, with the rotation config keys
# (ca_dir, rot_dir); log srv.log; sets P.
fleet_server() {
    rm -f port
    "$B/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca pki/ca-chain.pem --crl crl.pem --inventory "${FLEET_INV:-keys/inventory.db}" \
        --ca_dir pki --rot_dir rot "$@" 2>srv.log </dev/null &
    PIDS="$PIDS $!"
    i=0
    while [ ! -s port ]; do
        i=$((i + 1))
        [ $i -le 300 ] || fail "fleetkey-server did not start"
        sleep 0.1
    done
    P=$(cat port)
}

# fleet_server_named NAME [LINE...]: fleetkey-server NAME on a port the OS picks (NAME.port,
# log NAME.log) reading its config file NAME.conf: the inventory FLEET_INV, an ota_dir and
# rot_dir of its own, the fleet's certificates and CRL, and each LINE (e.g. "ca_dir = pki").
# Several of them on one PostgreSQL inventory: pg_fleet.sh, pg_rot.sh.
fleet_server_named() {
    name=$1
    shift
    rm -f "$name.port"
    {
        echo "# server $name: inventory, spool and rotation directories, certificates"
        echo "inventory = ${FLEET_INV:-keys/inventory.db}"
        echo "ota_dir = ota_$name"
        echo "rot_dir = rot_$name"
        echo "cert = pki/servers/localhost.chain.pem"
        echo "key = pki/servers/localhost.key.pem"
        echo "ca = pki/ca-chain.pem"
        echo "crl = crl.pem"
        for line in "$@"; do
            echo "$line"
        done
    } >"$name.conf"
    "$B/fleetkey-server" --config "$name.conf" --listen 127.0.0.1 --port 0 \
        --port-file "$name.port" 2>"$name.log" </dev/null &
    PIDS="$PIDS $!"
    i=0
    while [ ! -s "$name.port" ]; do
        i=$((i + 1))
        [ $i -le 300 ] || fail "server $name did not start"
        sleep 0.1
    done
}

# fleet_start NAME N [robot-sim options]: robot-sim --fleet N in the background (NAME.out,
# NAME.err, status NAME.json); sets FPID.
fleet_start() {
    name=$1 n=$2
    shift 2
    rm -f "$name.json"
    "$B/robot-sim" --fleet "$n" --fleet-keys keys --sdkconfig prod.sdkconfig \
        --wss-uri "wss://127.0.0.1:$P/ws" --wss-backoff-ms 500 --ctl-bind 127.0.0.1 \
        --fleet-status "$name.json" "$@" >"$name.out" 2>"$name.err" </dev/null &
    FPID=$!
    PIDS="$PIDS $FPID"
}

# fleet_wait_status NAME: until fleet NAME wrote its first status (10 s at most).
fleet_wait_status() {
    i=0
    until [ -s "$1.json" ]; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "no status from fleet $1"
        sleep 0.1
    done
}

# fleet_field FILE KEY: a top-level number of a status file (0 when absent).
fleet_field() {
    sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$1" 2>/dev/null | head -1 | grep . || echo 0
}

# fleet_wait_online NAME COUNT SECONDS: until COUNT robots of fleet NAME are connected.
fleet_wait_online() {
    i=0
    while [ "$(fleet_field "$1.json" online)" -lt "$2" ]; do
        i=$((i + 1))
        [ $i -le $(($3 * 5)) ] || fail "only $(fleet_field "$1.json" online) of $2 robots connected"
        sleep 0.2
    done
}

# fleet_api METHOD PATH [BODY_FILE]: the admin API as the operator; the answer in api.out
# (status line first).
fleet_api() {
    if [ "$1" = POST ]; then
        "$B/wss_client" --port "$P" $OPER --post "$2" --body "$3" >api.out 2>api.err ||
            fail "POST $2"
    else
        "$B/wss_client" --port "$P" $OPER --get "$2" >api.out 2>api.err || fail "GET $2"
    fi
}

# fleet_rotate CLASSES TIMEOUT_S [FIRST N]: a plan over the minted robots (N of them from the
# FIRST-th, default all), created and started, in the waves $FLEET_WAVES (default 100); sets
# ROT_ID.
fleet_rotate() {
    ls keys | sed -n 's/\.nvs\.bin$//p' | sort | tail -n "+${3:-1}" | head -n "${4:-1000000}" |
        awk -v c="$1" -v t="$2" -v w="${FLEET_WAVES:-100}" '
            BEGIN { printf "{\"classes\":\"%s\",\"waves\":\"%s\",", c, w
            printf "\"timeout_s\":%d,\"devices\":[", t }
            { printf "%s\"%s\"", (NR > 1 ? "," : ""), $0 } END { print "]}" }' >plan.json
    fleet_api POST /api/rotation plan.json
    grep -q '^201' api.out || { cat api.out >&2; fail "plan not created"; }
    ROT_ID=$(sed -n 's/.*"id":"\(rot-[0-9]*\)".*/\1/p' api.out | head -1)
    : >empty
    fleet_api POST "/api/rotation/$ROT_ID/start" empty
    grep -q '^200' api.out || { cat api.out >&2; fail "start refused"; }
}

# fleet_count KEY: a number of the plan's counts in api.out.
fleet_count() {
    sed -n "s/.*\"counts\":{[^}]*\"$1\":\([0-9]*\).*/\1/p" api.out | head -1
}

# fleet_wait_settled SECONDS: until nothing of the plan is in flight or pending; the last
# answer stays in api.out.
fleet_wait_settled() {
    i=0
    while :; do
        # A busy server may time a GET out (thousands of robots reconnecting): ask again.
        if "$B/wss_client" --port "$P" $OPER --get "/api/rotation/$ROT_ID" >api.out 2>api.err &&
            [ "$(fleet_count in_flight)" = 0 ] && [ "$(fleet_count pending)" = 0 ]; then
            return 0
        fi
        i=$((i + 1))
        [ $i -le $(($1 * 5)) ] || { head -c 600 api.out >&2; fail "the plan did not settle"; }
        sleep 0.2
    done
}

# fleet_wait_done SECONDS [WHO]: until the plan ROT_ID on the server at P is done and its old
# credentials revoked (the last answer stays in api.out); a plan that paused itself (failures
# over the threshold) or was aborted fails at once. WHO names the server in messages.
fleet_wait_done() {
    i=0
    while :; do
        # A server busy with reconnecting robots may time a GET out: ask again.
        if "$B/wss_client" --port "$P" $OPER --get "/api/rotation/$ROT_ID" >api.out 2>api.err; then
            grep -q '"state":"done"' api.out && grep -q '"revoked":true' api.out && return 0
            if grep -q '"state":"paused"\|"state":"aborted"' api.out; then
                fail "the plan stopped${2:+ ($2)}: $(head -c 800 api.out)"
            fi
        fi
        i=$((i + 1))
        [ $i -le $(($1 * 5)) ] ||
            fail "plan not done and revoked${2:+ on $2} within $1 s: $(head -c 800 api.out)"
        sleep 0.2
    done
}

# fleet_rot NAME CLASS STATE: robots of fleet NAME whose CLASS rotation is in STATE (status).
fleet_rot() {
    sed -n "s/.*\"$2\":{\([^}]*\)}.*/\1/p" "$1.json" | sed -n "s/.*\"$3\":\([0-9]*\).*/\1/p"
}

# fleet_wait_state STATE SECONDS: until the plan ROT_ID is in STATE (the answer in api.out).
fleet_wait_state() {
    i=0
    until "$B/wss_client" --port "$P" $OPER --get "/api/rotation/$ROT_ID" >api.out 2>api.err &&
        grep -q "\"state\":\"$1\"" api.out; do
        i=$((i + 1))
        [ $i -le $(($2 * 5)) ] || fail "plan not $1 within $2 s: $(head -c 400 api.out)"
        sleep 0.2
    done
}

# fleet_force: forces the settled plan ROT_ID past its interlock, naming every device of the
# plan.json fleet_rotate wrote (each must block it: offline or failed).
fleet_force() {
    sed 's/^.*"devices":/{"devices":/' plan.json >force.json
    fleet_api POST "/api/rotation/$ROT_ID/force" force.json
    grep -q '^200' api.out || fail "force refused: $(head -c 400 api.out)"
}

# fleet_serials FILE: "device serial" of every device certificate in the CA index pki/, sorted
# by device, into FILE.
fleet_serials() {
    python3 -c '
import json
for line in open("pki/index.jsonl"):
    r = json.loads(line)
    if r.get("op") == "issue" and r["kind"] == "device":
        print(r["name"], r["serial"])' | sort >"$1"
}

# fleet_mint_split N K: mints N robots (fleet_mint), writes "device serial" of each to serials
# (fleet_serials), the first K to plan.serials and the other N-K to other.serials.
fleet_mint_split() {
    fleet_mint "$1"
    fleet_serials serials
    [ "$(wc -l <serials)" -eq "$1" ] || fail "expected $1 device certificates in the index"
    head -n "$2" serials >plan.serials
    tail -n "$(($1 - $2))" serials >other.serials
}

# fleet_crl_is FILE: crl.pem lists exactly the serials of FILE ("device serial" lines); its text
# (one lower-case token per line, colons and spaces dropped) is left in crl.txt.
fleet_crl_is() {
    openssl crl -in crl.pem -noout -text | tr -d ' :' | tr 'A-Z' 'a-z' >crl.txt
    while read -r dev s; do
        grep -qE "^serialnumber0*$s\$" crl.txt || fail "$dev ($s) not in the CRL"
    done <"$1"
    [ "$(grep -c '^serialnumber' crl.txt)" = "$(wc -l <"$1" | tr -d ' ')" ] ||
        fail "the CRL lists other than the $(wc -l <"$1" | tr -d ' ') serials of $1"
}
