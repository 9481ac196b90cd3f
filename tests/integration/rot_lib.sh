# The fleet the credential-rotation scripts run (rot_robot.sh, rot_robot_ca.sh): sourced after
# lib.sh, in the scratch directory, with PK and RS set.

# rot_fleet NAME ID... : the CA with the server's certificate, an operator (ops.p12, password in
# pw.txt), a CRL, and one production robot per 12-hex-digit ID (robot-ID, minted by `batch --ca
# --encrypt-nvs` into keys/) with its flash image robotN.img and a copy factoryN.img. Sets
# D1, D2, ... and defines fail NAME (shows the server's and the robots' logs).
rot_fleet() {
    ROT_NAME=$1
    shift
    run 0 ca_init "$PK" ca init --dir pki --name "$ROT_NAME"
    run 0 ca_srv "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
    run 0 ca_op "$PK" ca issue --dir pki --operator ops
    echo "$ROT_NAME passphrase" >pw.txt
    run 0 p12 "$PK" export-p12 --dir pki --operator ops --password-file pw.txt --out ops.p12
    run 0 crl "$PK" ca crl --dir pki --out crl.pem
    echo "mac,name" >devices.csv
    for id in "$@"; do
        echo "$id" | sed 's/\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)/\1:\2:\3:\4:\5:\6,r/' >>devices.csv
    done
    run 0 batch "$PK" batch --csv devices.csv --output-dir keys --ca pki --encrypt-nvs
    cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_EXPECTED_HOST="localhost"
CFG
    n=0
    for id in "$@"; do
        n=$((n + 1))
        d=robot-$(echo "$id" | tr a-f A-F)
        eval "D$n=$d"
        run 0 img$n "$RS" flash-image create --out robot$n.img --nvs "keys/$d.nvs.bin" \
            --nvs-keys "keys/$d.nvs_keys.bin"
        cp robot$n.img factory$n.img
    done
}

# rot_server ARG...: (re)starts fleetkey-server on port $P (0 the first time: the OS picks it)
# with the fleet's server certificate, CA, CRL, inventory, ca_dir and rot_dir, plus ARG...
# (e.g. --ca_bundle FILE); sets SPID and P.
rot_server() {
    rm -f port
    "$BIN/fleetkey-server" --listen 127.0.0.1 --port "${P:-0}" --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
        --ca_dir pki --rot_dir rot --ping_interval 2 "$@" >>srv.out 2>>srv.err </dev/null &
    SPID=$!
    PIDS="$PIDS $SPID"
    wait_for port "[0-9]" 600 || fail "fleetkey-server did not start"
    P=$(cat port)
}

# rot_robot N [ARG...]: starts robot N from robotN.img against the server on $P (log rsN.err,
# truncated; 2 trial attempts; ARG... added to robot-sim's options); sets RPIDN.
rot_robot() {
    n=$1
    shift
    : >rs$n.err
    "$RS" --flash robot$n.img --sdkconfig prod.sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
        --run-ms 600000 --wss-uri "wss://127.0.0.1:$P/ws" --wss-backoff-ms 200 \
        --rot-attempts 2 --rot-trial-ms 60000 "$@" >rs$n.out 2>rs$n.err </dev/null &
    eval "RPID$n=\$!"
    PIDS="$PIDS $!"
}

fail() {
    echo "FAIL [$ROT_NAME]: $*" >&2
    for f in srv.err rs1.err rs2.err rs3.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}
