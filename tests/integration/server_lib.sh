# Shared by the fleetkey-server integration scripts (server.sh, server_ota.sh). Source it
# once CASE is set; start_server also needs BIN and CA, and runs in the scratch directory
# holding pki/, crl.pem and keys/inventory.db.

# fail MESSAGE: says what failed, shows the server log's tail, stops the test.
fail() {
    echo "FAIL ($CASE): $*" >&2
    echo "---- server log" >&2
    tail -40 srv.log >&2 2>/dev/null || true
    exit 1
}
# ok CMD...: CMD must succeed; its output lands in out.txt / err.txt.
ok() {
    "$@" >out.txt 2>err.txt || { cat out.txt err.txt >&2; fail "failed: $*"; }
}
# expect_log TEXT: the server log contains TEXT (a grep pattern).
expect_log() {
    grep -q -- "$1" srv.log || fail "server log lacks: $1"
}

# start_server [extra flags]: runs fleetkey-server in the background on a port the OS picks
# (log: srv.log), waits for its port file; sets SRV_PID and P.
start_server() {
    rm -f port
    "$BIN/fleetkey-server" --listen 127.0.0.1 --port 0 --port-file port \
        --cert pki/servers/localhost.chain.pem --key pki/servers/localhost.key.pem \
        --ca $CA --crl crl.pem --inventory keys/inventory.db "$@" 2>srv.log &
    SRV_PID=$!
    i=0
    while [ ! -s port ]; do
        i=$((i + 1))
        [ $i -le 200 ] || fail "server did not start"
        kill -0 "$SRV_PID" 2>/dev/null || fail "server exited"
        sleep 0.1
    done
    P=$(cat port)
}
