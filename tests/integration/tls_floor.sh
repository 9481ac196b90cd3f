#!/bin/sh
# Smoke run of bench/tls_floor (OpenSSL's own per-connection floor, printed by
# bench/bench_server.sh): certificates from the openssl command line, independent of ours.
# Its heap count must see the server's SSL objects (an SSL of OpenSSL 3.0 alone is over
# 7 KiB, so under 8 KiB per connection means the count missed them) and must not charge the
# client's (twice as much would); a revoked client is refused (the CRL is really checked);
# bad arguments get a usage error.
# usage: tls_floor.sh BIN_DIR TMP_DIR
set -eu
B=$1
T=$2
rm -rf "$T"
mkdir -p "$T"
cd "$T"
fail() { echo "FAIL: $*" >&2; exit 1; }

printf '[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\ncrlnumber = crlnum\ndefault_md = sha256\ndefault_crl_days = 30\n' >ca.cnf
: >index.txt
echo 01 >crlnum
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -subj /CN=floor-ca -days 30 -out ca.pem \
    -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
for n in srv cli bad; do
    openssl ecparam -name prime256v1 -genkey -noout -out $n.key
    openssl req -new -key $n.key -subj /CN=$n -out $n.csr
    openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out $n.pem 2>/dev/null
done
openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -revoke bad.pem >/dev/null 2>&1
openssl ca -config ca.cnf -gencrl -keyfile ca.key -cert ca.pem -out crl.pem >/dev/null 2>&1
A="--ca ca.pem --cert srv.pem --key srv.key"

"$B/tls_floor" $A --client-cert cli.pem --client-key cli.key --crl crl.pem --conns 50 --sites 3 >mem.txt ||
    fail "tls_floor failed"
kib=$(sed -n 's/.*live heap \([0-9.]*\) KiB requested, \([0-9.]*\) KiB held.*/\1 \2/p' mem.txt)
[ -n "$kib" ] || fail "no heap figure: $(cat mem.txt)"
echo "$kib" | awk '{ exit !($1 >= 8 && $1 < 24 && $2 >= $1) }' || fail "implausible heap figure: $kib"
[ "$(grep -c 'ssl/\|crypto/\|providers/' mem.txt)" -ge 1 ] || fail "no allocation site: $(cat mem.txt)"
for v in 1.2 1.3; do
    "$B/tls_floor" $A --client-cert cli.pem --client-key cli.key --crl crl.pem --conns 50 --tls $v \
        --cpu 1 >cpu.txt || fail "tls_floor --cpu $v failed"
    grep -Eq "^TLS $v, 50 full handshakes: OpenSSL server side [1-9][0-9]* per CPU-second" cpu.txt ||
        fail "cpu output: $(cat cpu.txt)"
done
if "$B/tls_floor" $A --client-cert bad.pem --client-key bad.key --crl crl.pem --conns 5 >bad.txt 2>&1; then
    fail "a revoked client completed its handshake"
fi
grep -q 'handshake' bad.txt || fail "revoked client: $(cat bad.txt)"
"$B/tls_floor" $A --client-cert bad.pem --client-key bad.key --crl none --conns 5 >/dev/null ||
    fail "--crl none still checked revocation"
for bad in "--conns 0" "--conns 5 --tls 1.1" "--bogus 1"; do
    # shellcheck disable=SC2086
    if "$B/tls_floor" $A --client-cert cli.pem --client-key cli.key --crl crl.pem $bad >/dev/null 2>err.txt; then
        fail "accepted: $bad"
    fi
    grep -q 'usage\|unknown option' err.txt || fail "no usage error for: $bad"
done
echo "PASS tls_floor"
