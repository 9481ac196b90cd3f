#!/bin/sh
# The PKCS#12 bundles and certificates the JUnit tests of mobile/ load, made by this project's
# provision-keys (and, for what it refuses to make, by the openssl command line, which is
# independent of our code). A CTest fixture (mobile_fixture) runs it once per build; the tests
# find the outputs through -Dfleetkey.fixture=OUT_DIR.
#
# usage: make_fixture.sh BIN_DIR OUT_DIR
#   pki/root.crt.pem          the fleet root CA the phone pins
#   pw                        bundle password (first line), "correct horse battery"
#   alice.p12                 mobile alice, default export (PBES2 / PBKDF2-HMAC-SHA256 / AES-256)
#   alice-legacy.p12          the same, --legacy (3DES + SHA-1 MAC)
#   bob.p12                   mobile bob (another certificate of the same fleet)
#   future.p12                mobile future, not valid before 30 days from now
#   expired.p12               mobile expired, valid 2020-01-01..2021-01-01 (openssl ca, the
#                             fleet issuing CA's key: provision-keys refuses a validity outside
#                             the CA's own)
#   server.p12                server localhost (SAN IP:127.0.0.1), password "server-pass"
#   other/server.p12          a server certificate for localhost from another CA
set -eu
BIN=$1
OUT=$2
PK="$BIN/provision-keys"

fail() {
    echo "FAIL (mobile fixture): $*" >&2
    exit 1
}
ok() {
    "$@" >>fixture.log 2>&1 || { cat fixture.log >&2; fail "failed: $*"; }
}

rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
: >fixture.log
printf 'correct horse battery\n' >pw
printf 'server-pass\n' >spw

ok "$PK" ca init --dir pki --name "Mobile Test" --days 365
ok "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
for m in alice bob; do
    ok "$PK" ca issue --dir pki --mobile "$m"
    ok "$PK" export-p12 --dir pki --mobile "$m" --password-file pw --out "$m.p12"
done
ok "$PK" export-p12 --dir pki --mobile alice --password-file pw --out alice-legacy.p12 --legacy
now=$(date +%s)
ok "$PK" ca issue --dir pki --mobile future --not-before "@$((now + 30 * 86400))" \
    --not-after "@$((now + 60 * 86400))"
ok "$PK" export-p12 --dir pki --mobile future --password-file pw --out future.p12

# Expired: a certificate of the fleet's issuing CA whose validity ended in 2021.
ok openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout expired.key \
    -subj "/O=Mobile Test/OU=mobile/CN=expired" -out expired.csr
cat >ca.cnf <<'CNF'
[ca]
default_ca = d
[d]
database = ca-index.txt
new_certs_dir = .
serial = ca-serial
default_md = sha256
policy = p
copy_extensions = none
unique_subject = no
[p]
commonName = supplied
organizationName = optional
organizationalUnitName = optional
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:urn:fleetkey:mobile:expired
CNF
: >ca-index.txt
echo 01 >ca-serial
ok openssl ca -batch -config ca.cnf -cert pki/issuing.crt.pem -keyfile pki/issuing.key.pem \
    -in expired.csr -out expired.crt -startdate 20200101000000Z -enddate 20210101000000Z \
    -extensions ext -notext
ok openssl pkcs12 -export -inkey expired.key -in expired.crt -certfile pki/ca-chain.pem \
    -name expired -passout file:pw -out expired.p12

# The server side for the JUnit HTTPS tests (a JDK HttpsServer reads PKCS#12, not PEM).
ok openssl pkcs12 -export -inkey pki/servers/localhost.key.pem \
    -in pki/servers/localhost.chain.pem -name localhost -passout file:spw -out server.p12
ok "$PK" ca init --dir other/pki --name "Other Fleet" --days 365
ok "$PK" ca issue --dir other/pki --server localhost --san IP:127.0.0.1
ok openssl pkcs12 -export -inkey other/pki/servers/localhost.key.pem \
    -in other/pki/servers/localhost.chain.pem -name localhost -passout file:spw \
    -out other/server.p12
for f in alice.p12 alice-legacy.p12 bob.p12 future.p12 expired.p12 server.p12 other/server.p12; do
    [ -s "$f" ] || fail "$f missing"
done
echo "mobile fixture ready in $OUT"
