#!/bin/sh
# fleetkey-server's chain and CRL checks against OpenSSL's own (issue 15). The server verifies
# the signatures of its trust store's objects (issuing CA by the root, each CRL by its CA) once
# at load and skips them in handshakes (src/server/auth_trust.c); every decision must stay
# OpenSSL's. Each scenario starts the server on a CA file and CRL file, connects a device, and
# compares the server's verdict (refusal reason, depth, OpenSSL's message) with what
# `openssl verify -crl_check -purpose sslclient` (OpenSSL's unmodified checks) says about the
# same certificate, CA file and CRL file: good, revoked, expired, expired and revoked, CRL with
# a bad signature, no CRL for the issuer, issuing CA with a bad signature, CRL not yet valid,
# CRL expired. Every wait is bounded; nothing asserts on time.
#
# usage: server_trust.sh BIN_DIR TMP_DIR
set -eu

CASE=trust
BIN=$1
T=$2
PK="$BIN/provision-keys"
W="$BIN/wss_client"
rm -rf "$T"
mkdir -p "$T"
HERE=$(cd "$(dirname "$0")" && pwd)
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

ok "$PK" ca init --dir pki
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
D1=robot-020000000001
D2=robot-020000000002
ok "$PK" generate --output keys/d1.json --mac 02:00:00:00:00:01
ok "$PK" generate --output keys/d2.json --mac 02:00:00:00:00:02
ok "$PK" ca issue --dir pki --device $D1
ok "$PK" ca issue --dir pki --device $D2
# D3 expired; D4 expired and revoked (OpenSSL checks revocation before the dates). A leaf
# must lie inside the issuing CA's validity, which pki starts 5 minutes in the past.
D3=robot-020000000003
D4=robot-020000000004
now=$(date +%s)
ca_start=$(date -d "$(openssl x509 -in pki/issuing.crt.pem -noout -startdate | cut -d= -f2)" +%s)
ok "$PK" ca issue --dir pki --device $D3 --not-before @$((ca_start + 1)) --not-after @$((now - 2))
ok "$PK" ca issue --dir pki --device $D4 --not-before @$((ca_start + 1)) --not-after @$((now - 2))
ok "$PK" ca crl --dir pki --out good.crl
ok "$PK" ca revoke --dir pki --device $D2 --reason keyCompromise
ok "$PK" ca revoke --dir pki --device $D4 --reason keyCompromise
ok "$PK" ca crl --dir pki --out revoked.crl
GOOD_CA=pki/ca-chain.pem

# flip_sig IN OUT KIND: OUT is IN (PEM, KIND crl or x509) with the last byte of its DER, which
# lies in the signature, changed: it parses, and its signature is wrong.
flip_sig() {
    openssl "$3" -in "$1" -outform DER -out flip.der 2>/dev/null || fail "openssl $3 $1"
    python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1; open(sys.argv[1], "wb").write(b)' flip.der
    openssl "$3" -inform DER -in flip.der -out "$2" 2>/dev/null || fail "openssl $3 back to PEM"
}
# The issuing CA's CRL with a wrong signature, followed by the root's CRL.
flip_sig good.crl bad_sig_issuing.crl crl
cat bad_sig_issuing.crl pki/root.crl.pem >bad_sig.crl
# Only the root's CRL: the device certificate's issuer has none.
cp pki/root.crl.pem no_issuing.crl
# The issuing CA certificate with a wrong signature, as the CA file's first certificate.
flip_sig pki/issuing.crt.pem bad_issuing.pem x509
cat bad_issuing.pem pki/root.crt.pem >bad_ca.pem
# An issuing CRL whose nextUpdate is one second after its thisUpdate (openssl ca: pki's
# `ca crl --days` is at least one day), then the root's CRL.
printf '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\n' >ca.cnf
: >index.txt
echo 01 >crlnumber
ok openssl ca -config ca.cnf -gencrl -keyfile pki/issuing.key.pem -cert pki/issuing.crt.pem \
    -crlsec 1 -out short.crl
cat short.crl pki/root.crl.pem >expired.crl
# An issuing CRL whose thisUpdate is a day ahead (neither pki nor openssl ca can date one),
# signed with the issuing key, then the root's CRL.
python3 - pki/issuing.crt.pem pki/issuing.key.pem future.crl <<'PY' || fail "future CRL"
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
ca = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
     .last_update(now + datetime.timedelta(days=1)).next_update(now + datetime.timedelta(days=8))
     .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), False)
     .add_extension(x509.CRLNumber(99), False))
open(sys.argv[3], "wb").write(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
PY
cat future.crl pki/root.crl.pem >not_yet_valid.crl

# openssl_says CA CRL ID: "DEPTH|MESSAGE" of OpenSSL's first error, "ok" when it verifies.
openssl_says() {
    if openssl verify -CAfile "$1" -crl_check -CRLfile "$2" -purpose sslclient \
        pki/devices/$3.crt.pem >verify.txt 2>&1; then
        echo ok
    else
        sed -n 's/^error [0-9]* at \([0-9]*\) depth lookup: \(.*\)$/\1|\2/p' verify.txt | head -1
    fi
}

# scenario NAME CA CRL ID REASON SIGS: the server on CA + CRL must have verified SIGS store
# signatures at load, and must treat device ID as OpenSSL does: admitted when openssl verify
# accepts (REASON "ok"), else refused at the TLS layer with REASON and OpenSSL's depth and
# message.
scenario() {
    name=$1 ca=$2 crl=$3 id=$4 reason=$5 sigs=$6
    want=$(openssl_says "$ca" "$crl" "$id")
    [ -n "$want" ] || { cat verify.txt >&2; fail "$name: no verdict from openssl verify"; }
    cp "$crl" crl.pem
    CA=$ca
    start_server
    expect_log "CRL crl.pem loaded ([12] CRLs; $sigs CA/CRL signatures verified once)"
    set +e
    "$W" --port "$P" --ca $GOOD_CA --cert pki/devices/$id.chain.pem \
        --key pki/devices/$id.key.pem hello $id >out.txt 2>err.txt
    rc=$?
    set -e
    kill "$SRV_PID"
    set +e
    wait "$SRV_PID"
    src=$?
    set -e
    SRV_PID=""
    ! grep -q 'Sanitizer\|runtime error:' srv.log || fail "$name: sanitizer report in srv.log"
    [ "$src" -eq 0 ] || fail "$name: server exit status $src after SIGTERM"
    if [ "$reason" = ok ]; then
        [ "$want" = ok ] || fail "$name: openssl verify refuses ($want), test expects ok"
        [ "$rc" -eq 0 ] || { cat out.txt err.txt >&2; fail "$name: refused, exit $rc"; }
        grep -q '"type":"welcome"' out.txt || fail "$name: no welcome"
        echo "ok $name: admitted, as openssl verify"
        return
    fi
    [ "$want" != ok ] || fail "$name: openssl verify accepts, test expects $reason"
    [ "$rc" -eq 3 ] || { cat out.txt err.txt >&2; fail "$name: expected a TLS refusal, exit $rc"; }
    depth=${want%%|*}
    msg=${want#*|}
    grep -F "handshake refused: $reason (depth $depth " srv.log | grep -qF ": $msg)" ||
        fail "$name: server log lacks: handshake refused: $reason (depth $depth ...: $msg)"
    echo "ok $name: $reason at depth $depth ($msg), as openssl verify"
}

scenario good $GOOD_CA good.crl $D1 ok 3
scenario revoked $GOOD_CA revoked.crl $D2 revoked 3
scenario revoked_other_ok $GOOD_CA revoked.crl $D1 ok 3
scenario leaf_expired $GOOD_CA good.crl $D3 expired 3
scenario leaf_expired_and_revoked $GOOD_CA revoked.crl $D4 revoked 3
scenario crl_bad_signature $GOOD_CA bad_sig.crl $D1 bad_chain 2
scenario no_crl_for_issuer $GOOD_CA no_issuing.crl $D1 bad_chain 2
scenario ca_bad_signature bad_ca.pem good.crl $D1 bad_chain 2
scenario crl_not_yet_valid $GOOD_CA not_yet_valid.crl $D1 bad_chain 3
# The short CRL: wait (bounded) until OpenSSL itself calls it expired.
i=0
until [ "$(openssl_says $GOOD_CA expired.crl $D1)" = "0|CRL has expired" ]; do
    i=$((i + 1))
    [ $i -le 50 ] || fail "the one-second CRL did not expire"
    sleep 0.1
done
scenario crl_expired $GOOD_CA expired.crl $D1 bad_chain 3
echo "server_trust: all scenarios agree with openssl verify"
