# The OTA fleet of ota_wss.sh and incident.sh, sourced after `cd` into the scratch directory
# (needs BIN, PK, RS, MK, VEC and lib.sh's run/expect/fail/wait_for/PIDS): a CA, the server's
# certificate, an operator PKCS#12 (ops.p12, pw.txt), a CRL, the production sdkconfig, app
# images v1.bin / v2.bin and v1 signed by key A (v1.a.bin); and the helpers below.
# ---- the fleet: CA, server, operator, robots ---------------------------------------------
run 0 ca_init "$PK" ca init --dir pki --name "OTA over wss test"
run 0 ca_srv "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
run 0 ca_op "$PK" ca issue --dir pki --operator ops
echo 'ota wss test passphrase' >pw.txt
run 0 p12 "$PK" export-p12 --dir pki --operator ops --password-file pw.txt --out ops.p12
run 0 crl "$PK" ca crl --dir pki --out crl.pem
openssl pkey -in "$VEC/key_a.pem" -pubout -outform DER -out a.der 2>/dev/null
openssl pkey -in "$VEC/key_b.pem" -pubout -outform DER -out b.der 2>/dev/null
FPR_B="sbv2:$("$PK" key-digest --key "$VEC/key_b.pem" | cut -d' ' -f1)"

cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_EXPECTED_HOST="localhost"
CFG

"$MK" --version 1.0.0 --secure-version 1 --segment-len 3000 --seed 1 v1.bin
"$MK" --version 2.0.0 --secure-version 2 --segment-len 5000 --seed 2 v2.bin
run 0 sign_v1 "$PK" sign --key "$VEC/key_a.pem" --output v1.a.bin v1.bin

# mint N: a production robot trusting key A, running v1 (factory install + first boot).
mint() {
    n=$1
    run 0 gen$n "$PK" generate --output keys/device_00$n.json --mac 02:00:00:00:20:0$n \
        --ca pki --encrypt-nvs --ota-key "$VEC/key_a.pem"
    run 0 img$n "$RS" flash-image create --out robot$n.img --nvs "keys/device_00$n.nvs.bin" \
        --nvs-keys "keys/device_00$n.nvs_keys.bin"
    run 0 fac$n "$RS" ota --flash robot$n.img --sdkconfig prod.sdkconfig --image v1.a.bin
    run 0 boot$n "$RS" --flash robot$n.img --sdkconfig prod.sdkconfig --boot-only \
        --self-test pass
    expect boot$n.out "app: robot 1.0.0"
}

start_server() {
    rm -f port
    "$BIN/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca pki/ca-chain.pem --crl crl.pem --inventory keys/inventory.db \
        --ping_interval 2 >srv.out 2>>srv.err </dev/null &
    SPID=$!
    PIDS="$PIDS $SPID"
    wait_for port "[0-9]" 600 || fail "fleetkey-server did not start"
    P=$(cat port)
    FC="$BIN/fleetctl --p12 ops.p12 --password-file pw.txt --server https://127.0.0.1:$P \
        --ca pki/ca-chain.pem"
}

# start_robot N: runs robot N against the server (its log: rsN.out / rsN.err); the pid stays
# the same across its reboots (robot-sim reboots by exec).
start_robot() {
    "$RS" --flash robot$1.img --sdkconfig prod.sdkconfig --ctl-port 0 --ctl-bind 127.0.0.1 \
        --run-ms 600000 --wss-uri "wss://127.0.0.1:$P/ws" --wss-backoff-ms 200 \
        --self-test-timeout-ms 8000 >rs$1.out 2>>rs$1.err </dev/null &
    eval "RPID$1=\$!"
    PIDS="$PIDS $!"
}
stop_robot() {
    eval "pid=\$RPID$1"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# welcomed N COUNT: robot N has been welcomed COUNT times (its log survives reboots)
welcomed() {
    i=0
    while [ $i -lt 600 ]; do
        c=$(grep -c "wss: welcomed by the server" rs$1.err 2>/dev/null || true)
        [ "${c:-0}" -ge "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    tail -n 30 rs$1.err >&2
    return 1
}
# nvs_key N KEY: prints security/KEY of robot N (stopped) in hex; exit 1 when absent
nvs_key() {
    "$RS" nvs get --flash robot$1.img --ns security --key "$2" 2>/dev/null
}
