#!/bin/sh
# fleetkey-server's OTA delivery (issue 7) with a scripted device: tests/tools/wss_client.c
# plays the robot's side of docs/wss-protocol.md ("Request kinds for updates and OTA keys"),
# writes what it receives to a file and the script compares it with the image (cmp). Images
# from mkappimage, signed by `provision-keys sign` with the Secure Boot V2 vector keys (A,
# B); devices minted by `provision-keys generate --ota-key A` (inventory rows trust A).
# Every wait is bounded; nothing asserts on elapsed time.
#
# usage: server_ota.sh CASE BIN_DIR VECTORS_DIR TMP_DIR
#   CASE: admin | push | disconnect | refused | rotation | fleetctl
set -eu

CASE=$1
BIN=$2
VEC=$3/sbv2
T=$4
PK="$BIN/provision-keys"
W="$BIN/wss_client"
MK="$BIN/mkappimage"

rm -rf "$T"
mkdir -p "$T/keys"
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$T"

SRV_PID=""
BG_PID=""
cleanup() {
    for p in $BG_PID $SRV_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

. "$HERE/server_lib.sh" # fail, ok, expect_log, start_server
expect_out() {
    grep -q -- "$1" out.txt || { cat out.txt >&2; fail "output lacks: $1"; }
}

# ---- fixtures --------------------------------------------------------------------------
ok "$PK" ca init --dir pki
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
for n in 1 2 3; do
    ok "$PK" generate --output keys/d$n.json --mac 02:00:00:00:00:0$n --ota-key "$VEC/key_a.pem" \
        --inventory keys/inventory.db
    ok "$PK" ca issue --dir pki --device robot-02000000000$n
done
D1=robot-020000000001
D2=robot-020000000002
D3=robot-020000000003
ok "$PK" ca issue --dir pki --operator alice
ok "$PK" ca issue --dir pki --mobile phone1
ok "$PK" ca crl --dir pki --out crl.pem
CA=pki/ca-chain.pem
dev() { echo "--ca $CA --cert pki/devices/$1.chain.pem --key pki/devices/$1.key.pem"; }
OPER="--ca $CA --cert pki/operators/alice.chain.pem --key pki/operators/alice.key.pem"
hexof() { od -An -tx1 -v "$1" | tr -d ' \n'; }
FA="sbv2:$(hexof "$VEC/key_a.digest.bin")"
FB="sbv2:$(hexof "$VEC/key_b.digest.bin")"
OTHER="sbv2:$(printf '%064d' 7)"

# Images: v2 signed by A, by B, by A+B; about 100 KiB so a transfer takes ~50 chunks.
"$MK" --version 2.0.0 --secure-version 2 --segment-len 50000 --seed 2 v2.bin
ok "$PK" sign --key "$VEC/key_a.pem" --output v2.a.bin v2.bin
ok "$PK" sign --key "$VEC/key_b.pem" --output v2.b.bin v2.bin
ok "$PK" sign --key "$VEC/key_a.pem" --key "$VEC/key_b.pem" --output v2.ab.bin v2.bin
# The app image's appended SHA-256 (the last 32 bytes of the image before its padding):
# what a device running it reports as ota.app_sha256.
app_sha() {
    tail -c 32 v2.bin | od -An -tx1 -v | tr -d ' \n'
}
APP=$(app_sha)
echo garbage >garbage.bin

# hello_ota ID STATE APP_SHA KEYS_JSON: a hello with an "ota" member.
hello_ota() {
    printf '{"type":"hello","device_id":"%s","firmware_version":"1.0.0","credential_versions":{},"posture":{"build":"production","rules":{}},"ota":{"slot":"ota_0","state":"%s","version":"1.0.0","secure_version":1,"app_sha256":"%s","updates":true,"keys":%s}}' \
        "$1" "$2" "$3" "$4"
}
OLDAPP=$(printf '%064d' 1)

stop_server() {
    kill -TERM "$SRV_PID"
    set +e
    wait "$SRV_PID"
    rc=$?
    set -e
    SRV_PID=""
    [ "$rc" -eq 0 ] || fail "server exit status $rc after SIGTERM"
    if grep -q 'Sanitizer\|runtime error:' srv.log; then
        fail "sanitizer report in the server log"
    fi
}
# post QUERY FILE [CERT ARGS]: POST /api/ota?QUERY; out.txt = status line, then the body.
post() {
    q=$1
    f=$2
    shift 2
    [ $# -gt 0 ] || set -- $OPER
    ok "$W" --port "$P" "$@" --post "/api/ota?$q" --body "$f"
}
status_is() {
    head -1 out.txt | grep -q "^$1\$" || { cat out.txt >&2; fail "expected HTTP $1"; }
}
job() {
    ok "$W" --port "$P" $OPER --get "/api/ota/$1"
}
# wait_state JOB DEVICE STATE: bounded (100 x 0.1 s) until GET /api/ota/JOB shows it.
wait_state() {
    i=0
    while :; do
        job "$1"
        tr -d '\n' <out.txt | grep -q "\"id\":\"$2\",\"state\":\"$3\"" && return 0
        i=$((i + 1))
        [ $i -le 100 ] || { cat out.txt >&2; fail "$2 never reached $3 in $1"; }
        sleep 0.1
    done
}
metric() {
    "$W" --port "$P" $OPER --get /metrics >metrics.txt 2>/dev/null || fail "GET /metrics"
    awk -v k="$1" '$1 == k { print $2 }' metrics.txt
}
audit_has() {
    ok "$PK" inventory --inventory keys/inventory.db show "$1"
    grep -q -- "$2" out.txt || { cat out.txt >&2; fail "no audit $2 for $1"; }
}
# seen ID...: each device connects once reporting that it trusts key A (its presence row then
# says so: the interlock lets A-signed images through to it).
seen() {
    for d in "$@"; do
        ok "$W" --port "$P" $(dev "$d") send "$(hello_ota "$d" valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" \
            expect welcome
    done
}
# connected ID KEYS_JSON: D connects with an ota report, stays until file stop-ID exists.
connect_idle() {
    "$W" --port "$P" $(dev "$1") --timeout 60 send "$(hello_ota "$1" valid "$OLDAPP" "$2")" \
        expect welcome wait-file "stop-$1" >"idle-$1.out" 2>"idle-$1.err" &
    BG_PID="$BG_PID $!"
    i=0
    until grep -q welcome "idle-$1.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "$1 did not connect"
        sleep 0.1
    done
}

case "$CASE" in
admin)
    # Refusals of POST /api/ota: who, how big, what, and the interlock.
    start_server --ota_max_image 65536
    post "device=$D1" v2.a.bin $(dev $D1)
    status_is 403
    post "device=$D1" v2.a.bin --ca $CA --cert pki/mobiles/phone1.chain.pem \
        --key pki/mobiles/phone1.key.pem
    status_is 403
    post "device=$D1" v2.a.bin
    status_is 413
    expect_out "larger than ota_max_image"
    stop_server
    start_server
    post "device=robot-0200000000ff" v2.a.bin
    status_is 404
    expect_out "robot-0200000000ff"
    post "nothing=1" v2.a.bin
    status_is 400
    post "device=$D1" garbage.bin
    status_is 422
    post "device=$D1" v2.bin
    status_is 422
    expect_out "not a signed app image"
    # Interlock. Nobody was seen; the inventory's ota_pubkey rows (generate --ota-key A) say
    # each device trusts A only: a B-signed image would be refused by all -> 409 naming all.
    post "all=1" v2.b.bin
    status_is 409
    expect_out "\"devices\":\\[\"$D1\",\"$D2\",\"$D3\"\\]"
    expect_out "would refuse it"
    # D1 reports (hello) that it trusts B as ota_pubkey2: B-signed images may go to D1 only.
    ok "$W" --port "$P" $(dev $D1) send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\",\"ota_pubkey2\":\"$FB\"}")" expect welcome
    post "device=$D1&device=$D2" v2.b.bin
    status_is 409
    expect_out "\"devices\":\\[\"$D2\"\\]"
    post "device=$D1" v2.b.bin
    status_is 202
    expect_out '"job":"j-000001"'
    # Trust from the inventory: rotate start records A active (and B staged) for every
    # device; then A+B-signed images may go to all.
    ok "$PK" rotate ota-key --inventory keys/inventory.db --old-key "$VEC/key_a.pem" \
        --new-key "$VEC/key_b.pem" start
    post "all=1" v2.ab.bin
    status_is 202
    expect_out '"job":"j-000002"'
    expect_out "\"devices\":\\[\"$D1\",\"$D2\",\"$D3\"\\]"
    # B only: B is staged, not active, for D2 and D3.
    post "all=1" v2.b.bin
    status_is 409
    expect_out "\"devices\":\\[\"$D2\",\"$D3\"\\]"
    ok "$W" --port "$P" $OPER --get /api/ota
    expect_out '"job":"j-000001"'
    expect_out '"job":"j-000002"'
    # Operators only for reading jobs as well.
    ok "$W" --port "$P" $(dev $D2) --get /api/ota/j-000001
    status_is 403
    job j-000009
    status_is 404
    expect_log "POST /api/ota by alice refused (409)"
    audit_has $D1 device.ota_queued
    ok "$PK" inventory --inventory keys/inventory.db verify-audit
    [ "$(metric fleetkey_ota_jobs_total)" = 2 ] || fail "jobs metric"
    [ "$(metric fleetkey_ota_uploads_refused_total)" -ge 6 ] || fail "refusals metric"
    # The spool holds the accepted images by SHA-256, the directory is private.
    [ "$(stat -c %a keys/ota)" = 700 ] || fail "ota_dir mode"
    [ -f "keys/ota/$(sha256sum v2.b.bin | cut -c1-64).bin" ] || fail "spool file name"
    [ -z "$(ls -A keys/ota | grep upload || true)" ] || fail "temp file left in the spool"
    stop_server
    ;;
push)
    start_server
    seen $D1 $D2
    post "device=$D1" v2.a.bin
    status_is 202
    # D1 connects running v1: gets the image, chunk by chunk; what it received is the file.
    ok "$W" --port "$P" $(dev $D1) --timeout 30 \
        send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv got.bin
    cmp got.bin v2.a.bin || fail "received image differs from the file"
    wait_state j-000001 $D1 installed
    # Rebooted into it (pending_verify): the server asks status; the device says valid.
    ok "$W" --port "$P" $(dev $D1) send "$(hello_ota $D1 pending_verify "$APP" "{\"ota_pubkey\":\"$FA\"}")" \
        expect welcome expect-request status \
        respond "{\"ota\":{\"slot\":\"ota_1\",\"state\":\"valid\",\"app_sha256\":\"$APP\",\"keys\":{\"ota_pubkey\":\"$FA\"}}}" \
        ping
    wait_state j-000001 $D1 confirmed
    tr -d '\n' <out.txt | grep -q '"done":true' || fail "job not done"
    audit_has $D1 device.ota_installed
    audit_has $D1 device.ota_confirmed
    [ "$(metric fleetkey_ota_bytes_total)" = "$(wc -c <v2.a.bin)" ] || fail "bytes metric"
    [ "$(metric 'fleetkey_ota_devices_total{state="confirmed"}')" = 1 ] || fail "confirmed metric"
    # Idempotent: a second job for the image D1 now runs is confirmed at once.
    post "device=$D1" v2.a.bin
    status_is 202
    wait_state j-000002 $D1 confirmed
    # A device coming back running another image: rolled back.
    post "device=$D2" v2.a.bin
    ok "$W" --port "$P" $(dev $D2) --timeout 30 \
        send "$(hello_ota $D2 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv got2.bin
    wait_state j-000003 $D2 installed
    ok "$W" --port "$P" $(dev $D2) send "$(hello_ota $D2 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" \
        expect welcome ping
    wait_state j-000003 $D2 rolled_back
    audit_has $D2 device.ota_rolled_back
    ok "$PK" inventory --inventory keys/inventory.db verify-audit
    stop_server
    ;;
disconnect)
    start_server
    seen $D1 $D2
    post "device=$D1" v2.a.bin
    status_is 202
    # Power lost after 5 chunks: back to queued, the next connection starts from byte 0.
    ok "$W" --port "$P" $(dev $D1) --timeout 30 \
        send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv-partial part.bin 5 drop
    [ "$(wc -c <part.bin)" -eq 10240 ] || fail "partial transfer size"
    wait_state j-000001 $D1 queued
    tr -d '\n' <out.txt | grep -q '"attempts":1' || fail "attempt not counted"
    expect_log "connection closed during the transfer"
    ok "$W" --port "$P" $(dev $D1) --timeout 30 \
        send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv got.bin
    cmp got.bin v2.a.bin || fail "image after a restart differs"
    wait_state j-000001 $D1 installed
    tr -d '\n' <out.txt | grep -q '"attempts":2' || fail "second attempt not counted"
    # Power lost without a FIN: the old connection lingers while the device reconnects. The
    # new connection takes the transfer over from byte 0; the old one closing later must not
    # touch it.
    post "device=$D1" v2.ab.bin
    status_is 202
    H1=$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")
    # wait_bytes FILE N: bounded wait until the scripted device wrote N bytes to FILE.
    wait_bytes() {
        i=0
        until [ "$(wc -c <"$1" 2>/dev/null || echo 0)" -ge "$2" ]; do
            i=$((i + 1))
            [ $i -le 100 ] || fail "$1: fewer than $2 bytes received"
            sleep 0.1
        done
    }
    "$W" --port "$P" $(dev $D1) --timeout 30 send "$H1" expect welcome \
        ota-recv-partial stale.bin 3 wait-file go-stale >stale.out 2>stale.err &
    STALE=$!
    wait_bytes stale.bin 6144
    "$W" --port "$P" $(dev $D1) --timeout 30 send "$H1" expect welcome \
        ota-recv-partial new.bin 4 wait-file go-new >new.out 2>new.err &
    NEW=$!
    BG_PID="$STALE $NEW"
    wait_bytes new.bin 8192
    touch go-stale
    wait $STALE || { cat stale.out stale.err >&2; fail "stale connection"; }
    wait_state j-000002 $D1 sending
    tr -d '\n' <out.txt | grep -q '"sent":8192' || { cat out.txt >&2; fail "takeover reset"; }
    touch go-new
    wait $NEW || { cat new.out new.err >&2; fail "new connection"; }
    BG_PID=""
    wait_state j-000002 $D1 queued
    ok "$W" --port "$P" $(dev $D1) --timeout 30 send "$H1" expect welcome ota-recv got3.bin
    cmp got3.bin v2.ab.bin || fail "image after a takeover differs"
    wait_state j-000002 $D1 installed
    # A device already updating answers busy: the server aborts first, then begins again.
    post "device=$D2" v2.a.bin
    expect_out '"job":"j-000003"'
    ok "$W" --port "$P" $(dev $D2) --timeout 30 \
        send "$(hello_ota $D2 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        expect-request ota_begin respond-error busy expect-request ota_abort respond '{}' \
        ota-recv got2.bin
    cmp got2.bin v2.a.bin || fail "image after busy/abort differs"
    stop_server
    ;;
refused)
    start_server
    seen $D1 $D2 $D3
    post "device=$D1&device=$D2" v2.a.bin
    status_is 202
    ok "$W" --port "$P" $(dev $D1) --timeout 30 \
        send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv-refuse got.bin signature_untrusted ping
    wait_state j-000001 $D1 refused
    tr -d '\n' <out.txt | grep -q '"error":"signature_untrusted"' || fail "refusal code"
    audit_has $D1 device.ota_refused
    expect_log "ota_finish refused: signature_untrusted"
    # anti_rollback at finish, and updates_disabled at begin: refused too.
    ok "$W" --port "$P" $(dev $D2) --timeout 30 \
        send "$(hello_ota $D2 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        expect-request ota_begin respond-error updates_disabled ping
    wait_state j-000001 $D2 refused
    # A device without "ota" gets nothing pushed.
    post "device=$D3" v2.a.bin
    ok "$W" --port "$P" $(dev $D3) hello $D3 idle 2
    wait_state j-000002 $D3 queued
    [ "$(metric 'fleetkey_ota_devices_total{state="refused"}')" = 2 ] || fail "refused metric"
    stop_server
    ;;
rotation)
    R="$PK rotate ota-key --inventory keys/inventory.db --old-key $VEC/key_a.pem --new-key $VEC/key_b.pem"
    ok $R start
    start_server
    # D1 trusts A only: the server sends B as ota_pubkey2 (DER, fingerprint) right after welcome.
    ok "$W" --port "$P" $(dev $D1) send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" \
        expect welcome expect-request ota_key \
        respond "{\"keys\":{\"ota_pubkey\":\"$FA\",\"ota_pubkey2\":\"$FB\"}}" ping
    grep -q "\"slot\":\"ota_pubkey2\"" out.txt || fail "not sent as ota_pubkey2"
    grep -q "\"fingerprint\":\"$FB\"" out.txt || fail "wrong fingerprint sent"
    der=$(sed -n 's/.*"der":"\([^"]*\)".*/\1/p' out.txt | head -1)
    openssl pkey -pubin -in "$VEC/key_b.pub.pem" -outform DER -out b.der 2>/dev/null
    [ "$der" = "$(base64 -w0 b.der)" ] || fail "DER sent is not key B"
    ok $R status
    expect_out "$D1: new key confirmed"
    expect_log "$D1: rotation key confirmed"
    audit_has $D1 device.ota_key_delivered
    audit_has $D1 ota_rotation.confirm
    # D2 reports B already (hello): confirmed without a request.
    ok "$W" --port "$P" $(dev $D2) send "$(hello_ota $D2 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\",\"ota_pubkey2\":\"$FB\"}")" \
        expect welcome idle 2
    ok $R status
    expect_out "$D2: new key confirmed"
    # D3 refuses the key: logged, not retried on this connection, not confirmed.
    ok "$W" --port "$P" $(dev $D3) send "$(hello_ota $D3 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" \
        expect welcome expect-request ota_key respond-error bad_key idle 2
    expect_log "ota_key ota_pubkey2 refused: bad_key"
    # Once confirmed everywhere, a B-only image may go to everyone; after it runs, the
    # rotation records new-key-only firmware (confirm --firmware).
    ok "$W" --port "$P" $(dev $D3) send "$(hello_ota $D3 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\",\"ota_pubkey2\":\"$FB\"}")" \
        expect welcome ping
    ok $R sign-release --new-only --output v2.newonly.bin v2.bin
    post "device=$D1" v2.newonly.bin
    status_is 202
    ok "$W" --port "$P" $(dev $D1) send "$(hello_ota $D1 valid "$APP" "{\"ota_pubkey\":\"$FA\",\"ota_pubkey2\":\"$FB\"}")" \
        expect welcome ping
    wait_state j-000001 $D1 confirmed
    i=0
    until grep -q "$D1: rotation firmware confirmed" srv.log; do
        i=$((i + 1))
        [ $i -le 50 ] || fail "firmware not confirmed"
        sleep 0.1
    done
    # Old key retired while D1 is connected: D1 gets B promoted to ota_pubkey at the next tick.
    for d in $D2 $D3; do ok $R confirm --device $d --firmware; done
    ok $R retire-old
    ok "$W" --port "$P" $(dev $D1) --timeout 20 send "$(hello_ota $D1 valid "$APP" "{\"ota_pubkey\":\"$FA\",\"ota_pubkey2\":\"$FB\"}")" \
        expect welcome expect-request ota_key respond "{\"keys\":{\"ota_pubkey\":\"$FB\"}}" ping
    grep -q "\"slot\":\"ota_pubkey\"" out.txt || fail "not promoted as ota_pubkey"
    [ "$(metric 'fleetkey_ota_keys_delivered_total{slot="ota_pubkey"}')" = 1 ] || fail "key metric"
    # The retired key signs nothing the server would send.
    post "device=$D1" v2.a.bin
    status_is 409
    expect_out "retired"
    ok "$PK" inventory --inventory keys/inventory.db verify-audit
    stop_server
    ;;
fleetctl)
    echo 'correct horse battery staple' >pw.txt
    ok "$PK" export-p12 --dir pki --operator alice --password-file pw.txt --out alice.p12
    ok "$PK" export-p12 --dir pki --mobile phone1 --password-file pw.txt --out phone1.p12
    start_server
    FC="$BIN/fleetctl --p12 alice.p12 --password-file pw.txt --server https://127.0.0.1:$P --ca $CA"
    # 409: the server's text and the blocking devices.
    set +e
    $FC ota --device $D1 --device $D2 --no-wait v2.b.bin >out.txt 2>err.txt
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || { cat out.txt err.txt >&2; fail "fleetctl ota 409: exit $rc"; }
    grep -q "server answered 409" err.txt || { cat err.txt >&2; fail "no 409 text"; }
    grep -q "blocking: $D2" err.txt || { cat err.txt >&2; fail "blocking devices not listed"; }
    seen $D1 $D2 $D3
    # A device that installs and comes back confirmed; fleetctl waits for it: exit 0.
    ( "$W" --port "$P" $(dev $D1) --timeout 60 \
        send "$(hello_ota $D1 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv got.bin >dev1.out 2>dev1.err &&
      "$W" --port "$P" $(dev $D1) --timeout 30 send "$(hello_ota $D1 valid "$APP" "{\"ota_pubkey\":\"$FA\"}")" \
        expect welcome ping >>dev1.out 2>>dev1.err ) &
    BG_PID=$!
    ok $FC ota --device $D1 --wait 60 v2.a.bin
    expect_out "job j-000001"
    expect_out "$D1: confirmed"
    wait $BG_PID || { cat dev1.out dev1.err >&2; fail "scripted device failed"; }
    BG_PID=""
    cmp got.bin v2.a.bin || fail "image via fleetctl differs"
    ok $FC ota-status j-000001
    expect_out "$D1 *confirmed"
    ok $FC --json ota-status j-000001
    expect_out '"state":	"confirmed"'
    # A refusal: exit 1.
    ( "$W" --port "$P" $(dev $D2) --timeout 60 \
        send "$(hello_ota $D2 valid "$OLDAPP" "{\"ota_pubkey\":\"$FA\"}")" expect welcome \
        ota-recv-refuse got2.bin anti_rollback ping >dev2.out 2>dev2.err ) &
    BG_PID=$!
    set +e
    $FC ota --device $D2 --wait 60 v2.a.bin >out.txt 2>err.txt
    rc=$?
    set -e
    [ "$rc" -eq 1 ] || { cat out.txt err.txt >&2; fail "refused update: exit $rc"; }
    grep -q "$D2: refused (anti_rollback)" out.txt || { cat out.txt >&2; fail "refusal shown"; }
    wait $BG_PID || true
    BG_PID=""
    # Nobody connects: the wait runs out, exit 3.
    set +e
    $FC ota --device $D3 --wait 2 v2.a.bin >out.txt 2>err.txt
    rc=$?
    set -e
    [ "$rc" -eq 3 ] || { cat out.txt err.txt >&2; fail "wait ran out: exit $rc"; }
    # Usage: exit 2; a mobile identity: 403.
    set +e
    $FC ota v2.a.bin >out.txt 2>err.txt
    rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "usage: exit $rc"
    set +e
    $BIN/fleetctl --p12 phone1.p12 --password-file pw.txt --server https://127.0.0.1:$P --ca $CA \
        ota --all --no-wait v2.a.bin >out.txt 2>err.txt
    rc=$?
    set -e
    [ "$rc" -eq 1 ] && grep -q "server answered 403" err.txt || { cat err.txt >&2; fail "mobile"; }
    stop_server
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "ok ($CASE)"
