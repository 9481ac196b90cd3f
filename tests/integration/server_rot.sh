# fleetkey-server's credential rotation (issue 14) against scripted devices (wss_client with
# send/expect-request/respond steps; the CSR made by openssl here), driven by fleetctl rotate:
#   mtls     one device end to end: plan created paused, started, rot_csr -> rot_stage ->
#            reconnect with the new certificate -> rot_commit -> confirmed -> interlock -> old
#            certificate revoked (refused by the server), new one accepted, audit chain
#            verified; `rotate status --wait` exits 0.
#   offline  two devices, one never connects: status lists it offline, the plan settles and
#            the interlock holds (blockers listed, nothing revoked); force with a wrong name
#            is refused, with the right name accepted, then the old certificate is revoked.
#   psk      a psk rotation: rot_stage with identity <device>.v<N>; ctl_testd plays the
#            device's listener with the staged PSK as next; the server's own DTLS check
#            (auth_slot next) leads to rot_commit and the confirmation.
#   late     the device answers rot_commit after its delivery's deadline passed (timeout 1 s):
#            the plan had asked for a new delivery meanwhile; once the commit is confirmed the
#            server must not issue another certificate (it would replace the committed one and
#            the interlock would then revoke the one in use), and the committed one stays valid.
#   restart  a kill -9 of the server after delivery: restarted, the plan shows the same state
#            and counts, and the device's trial is committed by the new process.
#   psk_restart  a kill -9 that loses the last second of a psk plan, twice (the plan file is
#            put back as it stood before the delivery reached it): after the rot_stage, the
#            device comes back in trial with the staged version and the server takes the PSK
#            back from rot_dir/psk/staged, checks it as next and confirms it; after the
#            rot_commit, it comes back committed and the server checks the confirmed copy as
#            the listener's current key and confirms it again. Before the fix the PSK was lost
#            with the plan file's last second and the device failed after its deliveries.
#   ca       a plan with class ca is refused while ca_bundle is not set; with ca_bundle (the
#            current chain plus a second, new root) rot_stage ca carries the bundle's DER
#            certificates back to back; the device reconnects verifying the server with the
#            staged bundle, reports ca in trial -> rot_commit -> confirmed -> plan done; the
#            inventory holds ca_cert of that version, active.
set -eu
CASE=$1
BIN=$2
T=$3
PK="$BIN/provision-keys"
W="$BIN/wss_client"
rm -rf "$T"
mkdir -p "$T/keys"
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"
SRV_PID=""
cleanup() { [ -z "$SRV_PID" ] || { kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; }; }
trap cleanup EXIT INT TERM
. "$HERE/server_lib.sh"

ok "$PK" ca init --dir pki
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
ok "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01 --inventory keys/inventory.db
ok "$PK" generate --output keys/d2.json --mac 02:00:00:00:00:02 --inventory keys/inventory.db
D1=robot-020000000001
D2=robot-020000000002
ok "$PK" ca issue --dir pki --device $D1
ok "$PK" ca issue --dir pki --device $D2
ok "$PK" ca issue --dir pki --operator alice
ok "$PK" ca crl --dir pki --out crl.pem
CA=pki/ca-chain.pem
printf 'rotation-test-pw\n' >pw.txt
ok "$PK" export-p12 --dir pki --operator alice --password-file pw.txt --out alice.p12
OPER="--ca $CA --cert pki/operators/alice.chain.pem --key pki/operators/alice.key.pem"
FC="$BIN/fleetctl --p12 alice.p12 --password-file pw.txt --server https://127.0.0.1:PORT --ca $CA"
# fc ARGS...: fleetctl against the running server (port known only after start_server).
fc() { $(echo "$FC" | sed "s/PORT/$P/") "$@"; }
# fc_rc EXPECTED ARGS...: fleetctl must exit with EXPECTED; output in out.txt / err.txt.
fc_rc() {
    want=$1; shift
    rc=0; fc "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq "$want" ] || { cat out.txt err.txt >&2; fail "fleetctl $*: exit $rc, not $want"; }
}
start_server --ca_dir pki --rot_dir rot

hello() { # hello DEVICE STATE STAGED
    echo '{"type":"hello","device_id":"'$1'","firmware_version":"1.0","credential_versions":{},"posture":{"build":"development","rules":{}},"rot":{"mtls":{"state":"'$2'","version":0,"staged_version":'$3',"reason":"none","attempts":0}}}'
}
# deliver DEVICE: the old certificate answers rot_csr and rot_stage; sets VER, writes
# DEVICE.new.key / DEVICE.new.chain.pem.
deliver() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.new.key \
        -subj "/CN=$1" -out $1.new.csr 2>/dev/null
    CSR=$(awk '{printf "%s\\n", $0}' $1.new.csr)
    ok "$W" --port "$P" --ca $CA --cert pki/devices/$1.chain.pem --key pki/devices/$1.key.pem \
        --timeout 10 send "$(hello $1 idle 0)" expect welcome expect-request rot_csr \
        respond '{"csr":"'"$CSR"'"}' expect-request rot_stage respond '{"rot":{"state":"trial"}}'
    STAGE=$(grep '"rot_stage"' out.txt)
    VER=$(echo "$STAGE" | sed 's/.*"version":\([0-9]*\).*/\1/')
    echo "$STAGE" | sed 's/.*"cert":"\([^"]*\)".*/\1/' | base64 -d |
        openssl x509 -inform DER -out $1.new.crt
    cat $1.new.crt pki/issuing.crt.pem >$1.new.chain.pem 2>/dev/null || cat $1.new.crt >$1.new.chain.pem
}
# trial DEVICE: the new certificate in trial is committed by the server.
trial() {
    ok "$W" --port "$P" --ca $CA --cert $1.new.chain.pem --key $1.new.key --timeout 10 \
        send "$(hello $1 trial $VER)" expect welcome expect-request rot_commit \
        respond '{"rot":{"state":"committed"}}' idle 3
    grep -q '"serial"' out.txt || fail "rot_commit without serial"
}
# wait_revoked PLAN: the plan's old credentials are revoked (the server reloaded its CRL).
wait_revoked() {
    i=0
    while :; do
        fc_rc 0 --json rotate status $1
        grep -q '"revoked":[[:space:]]*true' out.txt && break
        i=$((i + 1)); [ $i -le 20 ] || { cat out.txt; fail "old credentials not revoked"; }
        sleep 0.5
    done
    sleep 2
}
old_refused() {
    if "$W" --port "$P" --ca $CA --cert pki/devices/$1.chain.pem --key pki/devices/$1.key.pem \
        --timeout 5 send "$(hello $1 idle 0)" expect welcome >/dev/null 2>&1; then
        fail "the old certificate of $1 is still accepted"
    fi
}

# start_testd ARG...: ctl_testd (a device's DTLS listener) with ARG..., its port in dtls.port;
# sets TD_PID.
start_testd() {
    rm -f dtls.port
    "$BIN/ctl_testd" "$@" --port-file dtls.port --run-ms 60000 --quiet >testd.log 2>&1 &
    TD_PID=$!
    i=0
    while [ ! -s dtls.port ]; do
        i=$((i + 1)); [ $i -le 100 ] || fail "ctl_testd did not start"
        sleep 0.1
    done
}

case $CASE in
mtls)
    fc_rc 0 rotate plan --classes mtls --waves 100 --timeout 30 --device $D1
    grep -q '^plan rot-000001: paused (not started)' out.txt || { cat out.txt; fail "plan not created paused"; }
    grep -q 'wave 1: 100 %  1 device(s)' out.txt || { cat out.txt; fail "waves not shown"; }
    fc_rc 1 rotate plan --classes mtls --waves 100 --device $D1
    grep -q 'answered 409' err.txt || { cat err.txt; fail "a second plan was not refused"; }
    fc_rc 2 rotate start
    fc_rc 0 rotate start rot-000001
    deliver $D1
    trial $D1
    fc_rc 0 rotate status rot-000001 --wait 20 --poll-ms 200
    tail -1 out.txt | grep -q '"state":"done"' || { cat out.txt; fail "no done line"; }
    grep -q '"confirmed":1' out.txt || { cat out.txt; fail "progress without confirmed count"; }
    wait_revoked rot-000001
    old_refused $D1
    ok "$W" --port "$P" --ca $CA --cert $D1.new.chain.pem --key $D1.new.key --timeout 5 \
        send "$(hello $D1 committed 0)" expect welcome
    ;;
late)
    fc_rc 0 rotate plan --classes mtls --waves 100 --timeout 1 --retries 5 --device $D1
    fc_rc 0 rotate start rot-000001
    deliver $D1
    ok "$W" --port "$P" --ca $CA --cert $D1.new.chain.pem --key $D1.new.key --timeout 10 \
        send "$(hello $D1 trial $VER)" expect welcome expect-request rot_commit sleep 2500 \
        respond '{"rot":{"state":"committed"}}' idle 3
    fc_rc 0 rotate status rot-000001 --wait 20 --poll-ms 200
    tail -1 out.txt | grep -q '"state":"done"' || { cat out.txt; fail "plan not done"; }
    wait_revoked rot-000001
    old_refused $D1
    ok "$W" --port "$P" --ca $CA --cert $D1.new.chain.pem --key $D1.new.key --timeout 5 \
        send "$(hello $D1 committed 0)" expect welcome
    ;;
offline)
    fc_rc 0 rotate plan --classes mtls --waves 50,100 --timeout 30 --device $D1 --device $D2
    grep -q 'wave 1:  50 %  1 device(s)' out.txt || { cat out.txt; fail "wave 1 not shown"; }
    grep -q 'wave 2: 100 %  2 device(s)' out.txt || { cat out.txt; fail "wave 2 not shown"; }
    fc_rc 0 rotate start rot-000001
    sleep 1.5
    # nobody connected: both waves settle at once, both devices listed offline
    fc_rc 0 rotate status
    grep -q '2 offline' out.txt || { cat out.txt; fail "no offline count"; }
    deliver $D1 # a settled plan still serves a device that comes back
    trial $D1
    i=0
    while :; do
        fc_rc 0 rotate status rot-000001
        grep -q 'interlock holds: not confirmed: '$D2'$' out.txt && break
        i=$((i + 1)); [ $i -le 20 ] || { cat out.txt; fail "interlock not holding on $D2"; }
        sleep 0.5
    done
    grep -q "^$D2 .* yes " out.txt || { cat out.txt; fail "the offline device is not listed"; }
    grep -q "^$D1 *confirmed " out.txt || { cat out.txt; fail "$D1 not confirmed"; }
    grep -q '1 offline' out.txt || { cat out.txt; fail "no offline count"; }
    "$W" --port "$P" $OPER --get /metrics >metrics.txt 2>/dev/null || fail "GET /metrics"
    for m in '# TYPE fleetkey_rotation_devices gauge' \
        'fleetkey_rotation_devices{plan="rot-000001",class="mtls",state="confirmed"} 1' \
        'fleetkey_rotation_devices{plan="rot-000001",class="mtls",state="pending"} 1' \
        'fleetkey_rotation_devices_offline 1' 'fleetkey_rotation_commits_total 1'; do
        grep -qF "$m" metrics.txt || { cat metrics.txt; fail "metrics lack: $m"; }
    done
    grep -q '^plan rot-000001: settled' out.txt || { cat out.txt; fail "plan not settled"; }
    fc_rc 3 rotate status rot-000001 --wait 1 --poll-ms 200
    fc_rc 0 --json rotate status rot-000001
    grep -q '"revoked":[[:space:]]*false' out.txt || fail "revoked while the interlock holds"
    fc_rc 1 rotate force rot-000001 --device $D1
    grep -q 'answered 409' err.txt || { cat err.txt; fail "force with a wrong name not refused"; }
    fc_rc 0 rotate force rot-000001 --device $D2
    wait_revoked rot-000001
    old_refused $D1
    grep -q '"forced":[[:space:]]*true' out.txt || fail "plan not marked forced"
    ;;
restart)
    fc_rc 0 rotate plan --classes mtls --waves 100 --timeout 60 --device $D1 --device $D2
    fc_rc 0 rotate start rot-000001
    deliver $D1
    sleep 1.5 # the tick saves the plan at most once a second
    fc_rc 0 rotate status rot-000001
    sed 1d out.txt >before.txt
    head -1 out.txt | sed 's/, [0-9]* offline//' >before1.txt
    kill -9 "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    mv srv.log srv1.log
    start_server --ca_dir pki --rot_dir rot
    fc_rc 0 rotate status rot-000001
    sed 1d out.txt >after.txt
    head -1 out.txt | sed 's/, [0-9]* offline//' >after1.txt
    cmp before1.txt after1.txt || { cat before1.txt after1.txt; fail "plan state changed by the restart"; }
    cmp before.txt after.txt || { cat before.txt after.txt; fail "devices changed by the restart"; }
    grep -q "^$D1 *sent " after.txt || { cat after.txt; fail "the delivery was not kept"; }
    trial $D1
    fc_rc 0 rotate status rot-000001
    grep -q "^$D1 *confirmed " out.txt || { cat out.txt; fail "not confirmed after the restart"; }
    ;;
psk)
    # The device's DTLS listener is ctl_testd with the staged PSK as its next key: the server's
    # own handshake with it must see auth_slot next before it sends rot_commit.
    fc_rc 0 rotate plan --classes psk --waves 100 --timeout 30 --device $D1
    fc_rc 0 rotate start rot-000001
    PH='{"type":"hello","device_id":"'$D1'","firmware_version":"1.0","credential_versions":{},"posture":{"build":"development","rules":{}DTLS},"rot":{"psk":{"state":"STATE","version":0,"staged_version":STAGED,"reason":"none","attempts":0}}}'
    ok "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
        --timeout 10 send "$(echo "$PH" | sed 's/DTLS//; s/STATE/idle/; s/STAGED/0/')" \
        expect welcome expect-request rot_stage respond '{"rot":{"state":"trial"}}'
    STAGE=$(grep '"rot_stage"' out.txt)
    VER=$(echo "$STAGE" | sed 's/.*"version":\([0-9]*\).*/\1/')
    ID=$(echo "$STAGE" | sed 's/.*"identity":"\([^"]*\)".*/\1/')
    [ "$ID" = "$D1.v$VER" ] || fail "staged identity $ID, not $D1.v$VER"
    NEXT=$(echo "$STAGE" | sed 's/.*"psk":"\([^"]*\)".*/\1/' | base64 -d | od -An -tx1 | tr -d ' \n')
    [ ${#NEXT} -eq 64 ] || fail "staged PSK is not 32 bytes"
    start_testd --psk-hex 000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f \
        --identity $D1 --next-psk-hex "$NEXT" --next-identity "$ID"
    DP=$(cat dtls.port)
    rc=0
    "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
        --timeout 15 send "$(echo "$PH" | sed 's/DTLS/,"dtls_port":'$DP'/; s/STATE/trial/; s/STAGED/'$VER'/')" \
        expect welcome expect-request rot_commit respond '{"rot":{"state":"committed"}}' idle 2 \
        >out.txt 2>err.txt || rc=$?
    kill $TD_PID 2>/dev/null || true
    wait $TD_PID 2>/dev/null || true
    [ $rc -eq 0 ] || { cat out.txt err.txt testd.log >&2; fail "no rot_commit after the PSK check"; }
    expect_log "psk v$VER authenticated as next"
    grep -q 'requests=1' testd.log || { cat testd.log; fail "ctl_testd did not serve one status"; }
    fc_rc 0 rotate status rot-000001 --wait 10 --poll-ms 200
    fc_rc 0 rotate status rot-000001
    grep -q "^$D1 *confirmed " out.txt || { cat out.txt; fail "psk not confirmed"; }
    "$W" --port "$P" $OPER --get /metrics >metrics.txt 2>/dev/null || fail "GET /metrics"
    grep -qF 'fleetkey_rotation_psk_checks_total{result="ok"} 1' metrics.txt ||
        { cat metrics.txt; fail "psk check not counted"; }
    ;;
psk_restart)
    fc_rc 0 rotate plan --classes psk --waves 100 --timeout 60 --device $D1
    fc_rc 0 rotate start rot-000001
    PH='{"type":"hello","device_id":"'$D1'","firmware_version":"1.0","credential_versions":{},"posture":{"build":"development","rules":{}DTLS},"rot":{"psk":{"state":"STATE","version":CUR,"staged_version":STAGED,"reason":"none","attempts":0}}}'
    ok "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
        --timeout 10 send "$(echo "$PH" | sed 's/DTLS//; s/STATE/idle/; s/CUR/0/; s/STAGED/0/')" \
        expect welcome expect-request rot_stage respond '{"rot":{"state":"trial"}}'
    STAGE=$(grep '"rot_stage"' out.txt)
    VER=$(echo "$STAGE" | sed 's/.*"version":\([0-9]*\).*/\1/')
    ID=$(echo "$STAGE" | sed 's/.*"identity":"\([^"]*\)".*/\1/')
    NEXT=$(echo "$STAGE" | sed 's/.*"psk":"\([^"]*\)".*/\1/' | base64 -d | od -An -tx1 | tr -d ' \n')
    [ -f rot/psk/staged/$D1.json ] || fail "the staged PSK was not written before rot_stage"
    [ "$(stat -c %a rot/psk/staged/$D1.json)" = 600 ] || fail "the staged PSK file is not 0600"
    # The plan file with the delivery marked sent (saved at the tick that asked for it), then
    # without what the last second added: the staged version and its PSK.
    i=0
    until grep -q '"state":\[0,0,1,0\]' rot/rot-000001.json 2>/dev/null; do
        i=$((i + 1)); [ $i -le 50 ] || fail "the plan file never showed the delivery"
        sleep 0.1
    done
    kill -9 "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    python3 - rot/rot-000001.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for d in j["server"].values():
    d.pop("psk", None)
    d["version"][2] = 0
    d["fpr"][2] = ""
open(sys.argv[1], "w").write(json.dumps(j))
PY
    cp rot/rot-000001.json lost.json
    # hello_after_restart LOG STATE CUR STAGED TESTD_ARG...: the killed server's log kept as
    # LOG, a new server on the same rot_dir, start_testd TESTD_ARG..., and the device's hello
    # reporting psk STATE (current version CUR, staged STAGED): the server must send rot_commit.
    hello_after_restart() {
        mv srv.log "$1"
        start_server --ca_dir pki --rot_dir rot
        st=$2 cur=$3 staged=$4
        shift 4
        start_testd "$@"
        rc=0
        "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
            --timeout 15 send "$(echo "$PH" | sed 's/DTLS/,"dtls_port":'"$(cat dtls.port)"'/; s/STATE/'$st'/; s/CUR/'$cur'/; s/STAGED/'$staged'/')" \
            expect welcome expect-request rot_commit respond '{"rot":{"state":"committed"}}' idle 2 \
            >out.txt 2>err.txt || rc=$?
        kill $TD_PID 2>/dev/null || true
        wait $TD_PID 2>/dev/null || true
        [ $rc -eq 0 ] || { cat out.txt err.txt srv.log >&2; fail "$st: no rot_commit after the restart"; }
    }
    hello_after_restart srv1.log trial 0 "$VER" \
        --psk-hex 000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f \
        --identity $D1 --next-psk-hex "$NEXT" --next-identity "$ID"
    expect_log "psk v$VER sha256:[0-9a-f]* taken back after a restart (trial)"
    expect_log "psk v$VER authenticated as next"
    [ ! -f rot/psk/staged/$D1.json ] || fail "the staged PSK outlived the confirmation"
    [ -f rot/psk/$D1.json ] || fail "no confirmed copy"
    # Again, now losing the confirmation: the device is committed, the plan waits for it.
    kill -9 "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    cp lost.json rot/rot-000001.json
    hello_after_restart srv2.log committed "$VER" 0 --psk-hex "$NEXT" --identity "$ID"
    expect_log "psk v$VER sha256:[0-9a-f]* taken back after a restart (committed)"
    expect_log "psk v$VER authenticated as current"
    fc_rc 0 rotate status rot-000001 --wait 10 --poll-ms 200
    fc_rc 0 rotate status rot-000001
    grep -q "^$D1 *confirmed " out.txt || { cat out.txt; fail "psk not confirmed"; }
    if grep -q "$NEXT" srv1.log srv2.log srv.log; then
        fail "a PSK in the server's log"
    fi
    ;;
ca)
    fc_rc 1 rotate plan --classes ca --waves 100 --device $D1
    grep -q 'ca rotation needs ca_bundle' err.txt || { cat err.txt; fail "ca plan without ca_bundle not refused clearly"; }
    ok "$PK" ca init --dir pki2
    cat $CA pki2/root.crt.pem >bundle.pem
    kill "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    start_server --ca_dir pki --rot_dir rot --ca_bundle bundle.pem
    fc_rc 0 rotate plan --classes ca --waves 100 --timeout 30 --device $D1
    fc_rc 0 rotate start rot-000001
    CH='{"type":"hello","device_id":"'$D1'","firmware_version":"1.0","credential_versions":{},"posture":{"build":"development","rules":{}},"rot":{"ca":{"state":"STATE","version":0,"staged_version":STAGED,"reason":"none","attempts":0}}}'
    ok "$W" --port "$P" --ca $CA --cert pki/devices/$D1.chain.pem --key pki/devices/$D1.key.pem \
        --timeout 10 send "$(echo "$CH" | sed 's/STATE/idle/; s/STAGED/0/')" \
        expect welcome expect-request rot_stage respond '{"rot":{"state":"trial"}}'
    STAGE=$(grep '"rot_stage"' out.txt)
    echo "$STAGE" | grep -q '"class":"ca"' || fail "rot_stage is not for ca"
    VER=$(echo "$STAGE" | sed 's/.*"version":\([0-9]*\).*/\1/')
    echo "$STAGE" | sed 's/.*"cert":"\([^"]*\)".*/\1/' | base64 -d >staged.der
    # what was staged is the bundle's certificates, DER, back to back
    awk '/BEGIN CERTIFICATE/{n++} n{print > ("want" n ".pem")}' bundle.pem
    : >want.der
    for f in want*.pem; do openssl x509 -in $f -outform DER >>want.der; done
    [ "$(ls want*.pem | wc -l)" -eq 3 ] || fail "bundle of 3 certificates expected"
    cmp staged.der want.der || fail "rot_stage ca does not carry the bundle's DER"
    # the trial connection verifies the server with the staged anchors (the same bundle)
    ok "$W" --port "$P" --ca bundle.pem --cert pki/devices/$D1.chain.pem \
        --key pki/devices/$D1.key.pem --timeout 10 \
        send "$(echo "$CH" | sed 's/STATE/trial/; s/STAGED/'$VER'/')" \
        expect welcome expect-request rot_commit respond '{"rot":{"state":"committed"}}' idle 3
    grep '"rot_commit"' out.txt | grep -q '"class":"ca","version":'$VER || { cat out.txt; fail "rot_commit ca v$VER not sent"; }
    fc_rc 0 rotate status rot-000001 --wait 20 --poll-ms 200
    tail -1 out.txt | grep -q '"state":"done"' || { cat out.txt; fail "ca plan not done"; }
    ok "$PK" inventory --inventory keys/inventory.db --json show $D1
    grep -q '"ca_cert"' out.txt || { cat out.txt; fail "no ca_cert in the inventory"; }
    expect_log "ca v$VER confirmed"
    ;;
*)
    fail "unknown case"
    ;;
esac
ok "$PK" inventory --inventory keys/inventory.db verify-audit
echo "PASS ($CASE)"
