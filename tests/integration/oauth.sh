#!/bin/sh
# OAuth2 end to end (issue 16): fleetkey-server on 127.0.0.1 (a port the kernel picks), a CA
# from provision-keys, fleetctl login/token/whoami/logout with its encrypted store, and peers
# that share no code with the server: tests/integration/oauth_peer.py (python3 ssl + socket:
# HTTPS and RFC 6455 by hand), the openssl command line and the JDK (Es256Verify.java). Every
# wait is bounded; the clock is moved with FK_CLOCK_OFFSET_S, never waited for. Each case
# ends by grepping every log it made for the tokens, passwords and private keys it handled.
#
# usage: oauth.sh CASE BIN_DIR TMP_DIR
#   CASE: login | refresh | concurrent | binding | revoke | reuse | tamper | wss | crosscheck
set -eu

CASE=$1
BIN=$2
T=$3
PK="$BIN/provision-keys"
HERE=$(cd "$(dirname "$0")" && pwd)
PEER="python3 $HERE/oauth_peer.py"

rm -rf "$T"
mkdir -p "$T"
cd "$T"

SRV_PID=""
cleanup() {
    if [ -n "$SRV_PID" ]; then
        kill "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

. "$HERE/server_lib.sh" # fail, ok, expect_log, start_server
. "$HERE/skip.sh"       # fk_skip

# ---- fixtures --------------------------------------------------------------------------
ok "$PK" ca init --dir pki
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
ok "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01
ok "$PK" ca issue --dir pki --mobile phone1
ok "$PK" ca issue --dir pki --mobile phone2
ok "$PK" ca issue --dir pki --operator alice
ok "$PK" ca issue --dir pki --device robot-020000000001
ok "$PK" ca crl --dir pki --out crl.pem
CA=pki/ca-chain.pem
printf 'p12-pass-Xq7\n' >pw
printf 'store-pass-Zr9\n' >sp
chmod 600 pw sp
ok "$PK" export-p12 --dir pki --mobile phone1 --password-file pw --out phone1.p12
ok "$PK" export-p12 --dir pki --operator alice --password-file pw --out alice.p12
start_server --token_lifetime 86400

fleet() { # fleetctl CMD [opts]: with phone1's bundle, options after the command
    cmd=$1
    shift
    "$BIN/fleetctl" --p12 phone1.p12 --password-file pw --server "https://127.0.0.1:$P" \
        --ca $CA "$cmd" --store store --store-pass-file sp "$@"
}
# peer_http WHO METHOD PATH TOKEN_FILE|- [FORM_FILE]: as mobiles/phone1, operators/alice...
peer_http() {
    who=$1
    shift
    $PEER http "$P" $CA "pki/$who.chain.pem" "pki/$who.key.pem" "$@"
}
# hold_open WHO TOKEN_FILE OUT: a phone's wss connection held open in the background ($HOLD),
# returning once it is welcomed; wait_closed WHY: until the server closed it (30 s at most).
hold_open() {
    peer_ws "$1" "$2" hello hold >"$3" 2>"$3.err" &
    HOLD=$!
    i=0
    until grep -q held "$3" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 200 ] || fail "$1 did not connect"
        sleep 0.1
    done
}
wait_closed() {
    i=0
    while kill -0 $HOLD 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 300 ] || fail "connection not closed after $1"
        sleep 0.1
    done
    wait $HOLD || true
}
peer_ws() {
    who=$1
    shift
    $PEER ws "$P" $CA "pki/$who.chain.pem" "pki/$who.key.pem" "$@"
}
metric() { # metric NAME_WITH_LABELS: its value from /metrics
    peer_http operators/alice GET /metrics - >metrics.txt || fail "GET /metrics failed"
    v=$(grep -F "$1 " metrics.txt | grep -v '^#' | awk '{print $2}')
    [ -n "$v" ] || fail "no metric $1"
    echo "$v"
}
expect_status() { # expect_status FILE NNN
    grep -q "^status $2\$" "$1" || { cat "$1" >&2; fail "$1: expected HTTP $2"; }
}
json_field() { # json_field FILE KEY: a string member of the JSON body (after the status line)
    sed -n '2,$p' "$1" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])[sys.argv[1]])' "$2"
}
# Secrets handled by the case; tokens are added as files *.tok appear.
no_secrets_in_logs() {
    for f in pw sp; do
        s=$(cat $f)
        ! grep -rqF -- "$s" srv.log ./*.err 2>/dev/null || fail "password of $f in a log"
    done
    for k in pki/mobiles/phone1.key.pem keys/oauth-key.pem pki/root.key.pem; do
        line=$(sed -n 2p $k)
        ! grep -rqF -- "$line" srv.log ./*.err 2>/dev/null || fail "private key $k in a log"
    done
    for t in ./*.tok; do
        [ -s "$t" ] || continue
        s=$(cat "$t")
        ! grep -rqF -- "$s" srv.log ./*.err 2>/dev/null || fail "token $t in a log"
    done
    ! grep -q 'Sanitizer\|runtime error:' srv.log ./*.err 2>/dev/null || fail "sanitizer report"
}
# audit_kinds: the kinds of the inventory's audit rows, one a line, into out.txt (read with
# python3's sqlite3, not our code), after the chain was verified by provision-keys.
audit_kinds() {
    ok "$PK" inventory --inventory keys/inventory.db verify-audit
    python3 -c 'import sqlite3,sys; [print(r[0]) for r in sqlite3.connect(sys.argv[1]).execute("SELECT kind FROM audit ORDER BY seq")]' \
        keys/inventory.db >out.txt || fail "cannot read the audit table"
}
login() {
    fleet login >login.out 2>login.err || { cat login.out login.err; fail "login failed"; }
    fleet token >at1.tok 2>token.err || { cat token.err; fail "token failed"; }
}

case "$CASE" in
login)
    login
    grep -q "logged in as mobile phone1, scope \"fleet:read robot:command\"" login.out ||
        { cat login.out; fail "login output"; }
    [ "$(stat -c %a store)" = 600 ] || fail "store mode $(stat -c %a store), expected 600"
    [ "$(head -c 4 store)" = FKTS ] || fail "store lacks its header"
    ! grep -qF "$(cut -c1-40 at1.tok)" store || fail "store holds the token in clear"
    [ "$(tr -cd . <at1.tok | wc -c)" = 2 ] || fail "token is not a JWS"
    fleet whoami >who.out 2>who.err || { cat who.err; fail "whoami failed"; }
    grep -q '^mobile phone1, scope "fleet:read robot:command"' who.out || { cat who.out; fail "whoami"; }
    peer_http mobiles/phone1 GET /api/whoami at1.tok >w.txt
    expect_status w.txt 200
    [ "$(json_field w.txt kind)" = mobile ] || fail "whoami kind"
    # the token reads the fleet (fleet:read) although a mobile certificate alone may not
    peer_http mobiles/phone1 GET /api/devices at1.tok >dev.txt
    expect_status dev.txt 200
    grep -q robot-020000000001 dev.txt || fail "devices with a token"
    peer_http mobiles/phone1 GET /api/devices - >dev2.txt
    expect_status dev2.txt 403
    [ "$(metric 'fleetkey_oauth_token_requests_total{grant="client_credentials",result="issued"}')" = 1 ] ||
        fail "client_credentials not counted"
    # the expiry horizon: the refresh token (30 days) and the access token (24 h) from now
    h=$(metric fleetkey_oauth_refresh_expiry_seconds)
    [ "$h" -gt $((30 * 86400 - 600)) ] && [ "$h" -le $((30 * 86400)) ] || fail "refresh horizon $h"
    h=$(metric fleetkey_oauth_access_expiry_seconds)
    [ "$h" -gt $((86400 - 600)) ] && [ "$h" -le 86400 ] || fail "access horizon $h"
    expect_log "client_credentials: access token"
    # every issue is in the hash-chained audit log
    audit_kinds
    grep -q oauth.token_issued out.txt || { cat out.txt; fail "no oauth.token_issued audit row"; }
    ;;
refresh)
    login
    # 10 minutes before the lead (12 h before expiry): the stored token, no request
    FK_CLOCK_OFFSET_S=$((86400 - 43200 - 600)) fleet token >at2.tok 2>t2.err || fail "token"
    cmp -s at1.tok at2.tok || fail "refreshed before the lead"
    [ "$(metric 'fleetkey_oauth_token_requests_total{grant="refresh_token",result="issued"}')" = 0 ] ||
        fail "a refresh request before the lead"
    # past the lead: refreshed, and the new token works
    FK_CLOCK_OFFSET_S=$((86400 - 43200 + 100)) fleet token >at3.tok 2>t3.err || { cat t3.err; fail "token"; }
    ! cmp -s at1.tok at3.tok || fail "not refreshed inside the lead"
    [ "$(metric 'fleetkey_oauth_token_requests_total{grant="refresh_token",result="issued"}')" = 1 ] ||
        fail "refresh not counted once"
    peer_http mobiles/phone1 GET /api/whoami at3.tok >w.txt
    expect_status w.txt 200
    # the same clock again: the fresh token is stored, no second refresh
    FK_CLOCK_OFFSET_S=$((86400 - 43200 + 100)) fleet token >at4.tok 2>t4.err || fail "token"
    cmp -s at3.tok at4.tok || fail "refreshed twice"
    # --lead is configurable: with a 1 h lead the same moment is not due
    fleet logout >lo.out 2>lo.err || { cat lo.err; fail "logout"; }
    login
    FK_CLOCK_OFFSET_S=$((86400 - 43200 + 100)) fleet token --lead 3600 >at5.tok 2>t5.err || fail "token"
    cmp -s at1.tok at5.tok || fail "--lead 3600 refreshed 12 h early"
    ;;
concurrent)
    login
    i=0
    pids=""
    while [ $i -lt 20 ]; do
        FK_CLOCK_OFFSET_S=80000 fleet token >c$i.tok 2>c$i.err &
        pids="$pids $!"
        i=$((i + 1))
    done
    for p in $pids; do
        wait "$p" || fail "a concurrent fleetctl token failed: $(cat c*.err)"
    done
    [ "$(sort -u c*.tok | wc -l)" = 1 ] || fail "concurrent callers got different tokens"
    ! cmp -s at1.tok c0.tok || fail "no refresh happened"
    n=$(metric 'fleetkey_oauth_token_requests_total{grant="refresh_token",result="issued"}')
    r=$(metric 'fleetkey_oauth_token_requests_total{grant="refresh_token",result="refused"}')
    [ "$n" = 1 ] && [ "$r" = 0 ] || fail "20 concurrent token calls made $n refreshes ($r refused)"
    echo "20 concurrent fleetctl token: $n refresh request(s) at the server"
    peer_http mobiles/phone1 GET /api/whoami c0.tok >w.txt
    expect_status w.txt 200
    ;;
binding)
    login
    # phone1's token presented on a connection made with another certificate
    peer_http operators/alice GET /api/whoami at1.tok >b1.txt
    expect_status b1.txt 401
    grep -qi 'WWW-Authenticate: Bearer.*error="invalid_token"' b1.txt || { cat b1.txt; fail "no WWW-Authenticate"; }
    peer_http mobiles/phone2 GET /api/devices at1.tok >b2.txt
    expect_status b2.txt 401
    expect_log "bound to another certificate"
    # a token whose scope lacks what the route needs: 403
    peer_http mobiles/phone1 POST /api/rotation at1.tok >b3.txt
    expect_status b3.txt 403
    grep -q insufficient_scope b3.txt || fail "403 without insufficient_scope"
    # the token endpoint's refusals
    printf 'grant_type=client_credentials&client_id=alice' >f1
    peer_http mobiles/phone1 POST /oauth/token - f1 >t1.txt
    expect_status t1.txt 401
    grep -q invalid_client t1.txt || fail "client_id of another: not invalid_client"
    printf 'grant_type=client_credentials&client_id=phone1&scope=fleet%%3Awrite' >f2
    peer_http mobiles/phone1 POST /oauth/token - f2 >t2.txt
    expect_status t2.txt 400
    grep -q invalid_scope t2.txt || fail "fleet:write for a mobile: not invalid_scope"
    printf 'grant_type=client_credentials&client_id=robot-020000000001' >f3
    peer_http devices/robot-020000000001 POST /oauth/token - f3 >t3.txt
    expect_status t3.txt 401
    printf 'grant_type=password&client_id=phone1' >f4
    peer_http mobiles/phone1 POST /oauth/token - f4 >t4.txt
    expect_status t4.txt 400
    grep -q unsupported_grant_type t4.txt || fail "password grant"
    # an operator's narrowed token: fleet:read only, POST refused
    printf 'grant_type=client_credentials&client_id=alice&scope=fleet%%3Aread' >f5
    peer_http operators/alice POST /oauth/token - f5 >t5.txt
    expect_status t5.txt 200
    json_field t5.txt access_token >op.tok
    json_field t5.txt refresh_token >op_rt.tok
    peer_http operators/alice POST /api/rotation op.tok >b4.txt
    expect_status b4.txt 403
    peer_http operators/alice GET /api/devices op.tok >b5.txt
    expect_status b5.txt 200
    [ "$(metric 'fleetkey_oauth_token_requests_total{grant="client_credentials",result="refused"}')" = 3 ] ||
        fail "refusals not counted"
    audit_kinds
    grep -q oauth.token_refused out.txt || fail "no oauth.token_refused audit row"
    grep -q oauth.bearer_refused out.txt || fail "no oauth.bearer_refused audit row"
    grep -q oauth.scope_refused out.txt || fail "no oauth.scope_refused audit row"
    ;;
revoke)
    login
    fleet logout >lo.out 2>lo.err || { cat lo.err; fail "logout"; }
    [ ! -e store ] || fail "logout left the store"
    peer_http mobiles/phone1 GET /api/whoami at1.tok >r1.txt
    expect_status r1.txt 401
    expect_log "revoked"
    # restart-safe: the revocation survives a restart (kill -9)
    kill -9 "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
    start_server --token_lifetime 86400
    peer_http mobiles/phone1 GET /api/whoami at1.tok >r2.txt
    expect_status r2.txt 401
    [ "$(stat -c %a keys/oauth-state.json)" = 600 ] || fail "oauth-state.json not 0600"
    # a token issued before the restart (and not revoked) still works: same key, same state
    login
    kill "$SRV_PID"
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
    start_server --token_lifetime 86400
    peer_http mobiles/phone1 GET /api/whoami at1.tok >r3.txt
    expect_status r3.txt 200
    # and its refresh token too (the server kept its hash)
    FK_CLOCK_OFFSET_S=80000 fleet token >r4.tok 2>r4.err || { cat r4.err; fail "refresh after a restart"; }
    ! cmp -s at1.tok r4.tok || fail "no refresh after the restart"
    fleet token --store-pass-file pw >x.out 2>wrongpass.err && fail "a wrong store passphrase worked"
    grep -q "wrong passphrase or key, or the file was modified" wrongpass.err || fail "wrong-pass message"
    audit_kinds
    grep -q oauth.token_revoked out.txt || fail "no oauth.token_revoked audit row"
    ;;
reuse)
    printf 'grant_type=client_credentials&client_id=phone1' >f1
    peer_http mobiles/phone1 POST /oauth/token - f1 >g1.txt
    expect_status g1.txt 200
    json_field g1.txt refresh_token >rt1.tok
    json_field g1.txt access_token >at1.tok
    printf 'grant_type=refresh_token&client_id=phone1&refresh_token=%s' "$(cat rt1.tok)" >f2
    peer_http mobiles/phone1 POST /oauth/token - f2 >g2.txt
    expect_status g2.txt 200
    json_field g2.txt refresh_token >rt2.tok
    json_field g2.txt access_token >at2.tok
    peer_http mobiles/phone1 GET /api/whoami at2.tok >w.txt
    expect_status w.txt 200
    # the spent refresh token again: refused, and its whole family revoked
    peer_http mobiles/phone1 POST /oauth/token - f2 >g3.txt
    expect_status g3.txt 400
    grep -q invalid_grant g3.txt || fail "reuse: not invalid_grant"
    peer_http mobiles/phone1 GET /api/whoami at2.tok >w2.txt
    expect_status w2.txt 401
    peer_http mobiles/phone1 GET /api/whoami at1.tok >w3.txt
    expect_status w3.txt 401
    printf 'grant_type=refresh_token&client_id=phone1&refresh_token=%s' "$(cat rt2.tok)" >f3
    peer_http mobiles/phone1 POST /oauth/token - f3 >g4.txt
    expect_status g4.txt 400
    [ "$(metric fleetkey_oauth_refresh_reuse_total)" = 1 ] || fail "reuse not counted"
    # a refresh token presented with another certificate
    peer_http mobiles/phone1 POST /oauth/token - f1 >g5.txt
    json_field g5.txt refresh_token >rt3.tok
    printf 'grant_type=refresh_token&client_id=phone2&refresh_token=%s' "$(cat rt3.tok)" >f4
    peer_http mobiles/phone2 POST /oauth/token - f4 >g6.txt
    expect_status g6.txt 400
    grep -q "another certificate" g6.txt || fail "refresh with another certificate"
    audit_kinds
    grep -q oauth.refresh_reuse out.txt || fail "no oauth.refresh_reuse audit row"
    ;;
tamper)
    login
    cp store store.orig
    # one byte of the ciphertext, then one of the header (the scrypt salt)
    for off in 60 20; do
        cp store.orig store
        printf '\001' | dd of=store bs=1 seek=$off conv=notrunc 2>/dev/null
        cp store store.tampered
        set +e
        FK_CLOCK_OFFSET_S=80000 fleet token >x.out 2>tamper$off.err
        rc=$?
        set -e
        [ $rc = 1 ] || fail "tampered store (byte $off): exit $rc, expected 1"
        grep -q "store: cannot be decrypted: wrong passphrase or key, or the file was modified" \
            tamper$off.err || { cat tamper$off.err; fail "no clear error for a tampered store"; }
        cmp -s store store.tampered || fail "the tampered store was changed"
    done
    cp store.orig store
    fleet token >at2.tok 2>t.err || fail "the restored store does not work"
    [ "$(metric 'fleetkey_oauth_token_requests_total{grant="refresh_token",result="issued"}')" = 0 ] ||
        fail "a tampered store caused a refresh"
    ;;
wss)
    login
    peer_ws mobiles/phone1 at1.tok hello list ping >ws1.out 2>ws1.err || { cat ws1.err; fail "ws"; }
    grep -q '"type": *"welcome".*"sub": *"phone1"' ws1.out || { cat ws1.out; fail "no welcome"; }
    grep -q '"type": *"devices".*"device_id": *"robot-020000000001"' ws1.out || { cat ws1.out; fail "no devices"; }
    grep -q '"type": *"pong"' ws1.out || fail "no pong"
    : >none.tok
    peer_ws mobiles/phone1 none.tok hello >ws2.out 2>ws2.err
    grep -q "^status 401" ws2.out || { cat ws2.out; fail "no token: not 401"; }
    peer_ws mobiles/phone2 at1.tok hello >ws3.out 2>ws3.err
    grep -q "^status 401" ws3.out || { cat ws3.out; fail "another certificate's token: not 401"; }
    # a fleet:read-less token: list_devices refused
    printf 'grant_type=client_credentials&client_id=phone1&scope=robot%%3Acommand' >f1
    peer_http mobiles/phone1 POST /oauth/token - f1 >g1.txt
    json_field g1.txt access_token >cmd.tok
    peer_ws mobiles/phone1 cmd.tok hello list >ws4.out 2>ws4.err
    grep -q '"error": *"insufficient_scope"' ws4.out || { cat ws4.out; fail "list_devices without fleet:read"; }
    # revocation closes the open connection with 1008
    hold_open mobiles/phone1 at1.tok held.out
    fleet logout >lo.out 2>lo.err || { cat lo.err; fail "logout"; }
    wait_closed "the revocation"
    grep -q "^close 1008 token revoked" held.out || { cat held.out; fail "not closed 1008"; }
    peer_ws mobiles/phone1 at1.tok hello >ws5.out 2>ws5.err
    grep -q "^status 401" ws5.out || { cat ws5.out; fail "revoked token upgraded"; }
    # a revoked certificate closes the phone's open connection too (the new CRL is read within
    # a second), with a token that is still valid, and the next handshake is refused
    printf 'grant_type=client_credentials&client_id=phone2' >f2
    peer_http mobiles/phone2 POST /oauth/token - f2 >g2.txt
    expect_status g2.txt 200
    json_field g2.txt access_token >p2.tok
    hold_open mobiles/phone2 p2.tok held2.out
    ok "$PK" ca revoke --dir pki --mobile phone2 --reason keyCompromise
    ok "$PK" ca crl --dir pki --out crl.new
    mv crl.new crl.pem
    wait_closed "the certificate's revocation"
    grep -q "^close 1008 certificate revoked" held2.out || { cat held2.out; fail "not closed 1008"; }
    if peer_ws mobiles/phone2 p2.tok hello >ws6.out 2>ws6.err && grep -q '^status 101\|welcome' ws6.out; then
        fail "revoked certificate upgraded"
    fi
    ;;
crosscheck)
    login
    peer_http mobiles/phone1 GET /.well-known/jwks.json - >jwks.txt
    expect_status jwks.txt 200
    sed -n '$p' jwks.txt >jwks.json
    # OpenSSL verifies the server's signature with the JWKS key; both conversions (JWK ->
    # SubjectPublicKeyInfo, r||s -> DER) are written here in python, not taken from fleetkey.
    python3 - jwks.json at1.tok <<'PY' || fail "conversion for openssl failed"
import base64, json, sys
def b64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
k = json.load(open(sys.argv[1]))["keys"][0]
assert k["kty"] == "EC" and k["crv"] == "P-256" and k["alg"] == "ES256"
spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04" + b64u(k["x"]) + b64u(k["y"])
pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(spki).decode() + "\n-----END PUBLIC KEY-----\n"
open("jwks_pub.pem", "w").write(pem)
h, p, s = open(sys.argv[2]).read().strip().split(".")
open("signed.txt", "w").write(h + "." + p)
raw = b64u(s)
def der_int(v):
    v = v.lstrip(b"\x00") or b"\x00"
    if v[0] & 0x80:
        v = b"\x00" + v
    return b"\x02" + bytes([len(v)]) + v
body = der_int(raw[:32]) + der_int(raw[32:])
open("sig.der", "wb").write(b"\x30" + bytes([len(body)]) + body)
# kid = base64url(SHA-256(SPKI DER))[:16 bytes]
import hashlib
kid = base64.urlsafe_b64encode(hashlib.sha256(spki).digest()[:16]).decode().rstrip("=")
assert kid == k["kid"], (kid, k["kid"])
PY
    openssl dgst -sha256 -verify jwks_pub.pem -signature sig.der signed.txt >v.out 2>v.err ||
        { cat v.out v.err; fail "openssl does not verify the server's ES256 signature"; }
    grep -q "Verified OK" v.out || fail "openssl: no Verified OK"
    printf 'x' >>signed.txt
    ! openssl dgst -sha256 -verify jwks_pub.pem -signature sig.der signed.txt >/dev/null 2>&1 ||
        fail "openssl verified a modified token"
    if ! command -v java >/dev/null 2>&1; then
        fk_skip "java not installed (openjdk-17-jdk-headless, scripts/packages.d)"
    fi
    java "$HERE/Es256Verify.java" jwks.json at1.tok >j.out 2>j.err ||
        { cat j.out j.err; fail "the JDK does not verify the server's token"; }
    grep -q "^ok kid=" j.out || fail "java: no ok"
    ;;
*)
    fail "unknown case $CASE"
    ;;
esac
no_secrets_in_logs
echo "ok: oauth $CASE"
