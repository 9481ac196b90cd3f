#!/bin/sh
# provision-keys ca / export-p12 / kconfig / env end to end, every artefact checked by an
# independent implementation: the openssl command line (verify -crl_check[_all], x509/crl
# -text, req, pkcs12 -info) and Java's keytool (OpenJDK 17, scripts/packages.d/pki.txt).
#
# usage: pki_cli.sh CASE BIN_DIR TMP_DIR
#   CASE: verify | csr | p12 | kconfig | negative | inventory
set -eu

CASE=$1
BIN=$2
T=$3
PK="$BIN/provision-keys"

rm -rf "$T"
mkdir -p "$T"
cd "$T"
# The widest umask: every key must still come out 0600.
umask 000

fail() {
    echo "FAIL ($CASE): $*" >&2
    exit 1
}
# ok CMD...: must succeed (output kept in out.txt / err.txt for the next check).
ok() {
    "$@" >out.txt 2>err.txt || { cat out.txt err.txt >&2; fail "failed: $*"; }
}
# refused CMD...: must exit non-zero.
refused() {
    if "$@" >out.txt 2>err.txt; then
        cat out.txt err.txt >&2
        fail "accepted: $*"
    fi
    cat out.txt err.txt >all.txt
    # Under ASan a sanitizer report also exits non-zero: that is a bug, not a refusal.
    if grep -q 'Sanitizer\|runtime error:' err.txt; then
        cat err.txt >&2
        fail "sanitizer report: $*"
    fi
}
has() { # has FILE TEXT
    grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "'$2' not in $1"; }
}
lacks() {
    if grep -qF -- "$2" "$1"; then fail "'$2' unexpectedly in $1"; fi
}
mode_is() {
    m=$(stat -c %a "$1")
    [ "$m" = "$2" ] || fail "$1 has mode $m, want $2"
}
# V ARGS... CERT: openssl's path validation against root (trusted) + issuing (untrusted).
V() {
    openssl verify -CAfile pki/root.crt.pem -untrusted pki/issuing.crt.pem "$@"
}
serial_of() {
    openssl x509 -in "$1" -noout -serial | cut -d= -f2
}
init_ca() {
    ok "$PK" ca init --dir pki --name "CLI Test" --days 365
}

case "$CASE" in
verify)
    init_ca
    mode_is pki/root.key.pem 600
    mode_is pki/issuing.key.pem 600
    mode_is pki 700
    ok "$PK" ca issue --dir pki --device robot-AABBCCDDEEFF
    ok "$PK" ca issue --dir pki --server localhost --san DNS:fleet.example.com --san IP:127.0.0.1
    ok "$PK" ca issue --dir pki --mobile alice
    ok "$PK" ca issue --dir pki --operator ops-1
    for k in devices/robot-AABBCCDDEEFF servers/localhost mobiles/alice operators/ops-1; do
        mode_is "pki/$k.key.pem" 600
        # The chain file is leaf + issuing CA.
        [ "$(grep -c 'BEGIN CERTIFICATE' "pki/$k.chain.pem")" = 2 ] || fail "$k chain"
    done

    # CA certificates: the extensions RFC 5280 asks of a CA.
    openssl x509 -in pki/root.crt.pem -noout -text >root.txt
    has root.txt "CA:TRUE, pathlen:1"
    openssl x509 -in pki/issuing.crt.pem -noout -text >iss.txt
    has iss.txt "X509v3 Basic Constraints: critical"
    has iss.txt "CA:TRUE, pathlen:0"
    has iss.txt "X509v3 Key Usage: critical"
    has iss.txt "Certificate Sign, CRL Sign"
    has iss.txt "X509v3 Subject Key Identifier"
    has iss.txt "X509v3 Authority Key Identifier"
    has iss.txt "ecdsa-with-SHA256"
    has iss.txt "NIST CURVE: P-256"

    # Leaves: EKU and SANs as openssl shows them.
    openssl x509 -in pki/devices/robot-AABBCCDDEEFF.crt.pem -noout -text >dev.txt
    has dev.txt "TLS Web Client Authentication"
    lacks dev.txt "TLS Web Server Authentication"
    has dev.txt "URI:urn:fleetkey:device:robot-AABBCCDDEEFF"
    has dev.txt "CN = robot-AABBCCDDEEFF"
    has dev.txt "CA:FALSE"
    openssl x509 -in pki/servers/localhost.crt.pem -noout -text >srv.txt
    has srv.txt "TLS Web Server Authentication"
    lacks srv.txt "TLS Web Client Authentication"
    has srv.txt "DNS:localhost"
    has srv.txt "DNS:fleet.example.com"
    has srv.txt "IP Address:127.0.0.1"
    openssl x509 -in pki/mobiles/alice.crt.pem -noout -text >mob.txt
    has mob.txt "TLS Web Client Authentication"
    has mob.txt "URI:urn:fleetkey:mobile:alice"
    openssl x509 -in pki/operators/ops-1.crt.pem -noout -text >op.txt
    has op.txt "URI:urn:fleetkey:operator:ops-1"
    # 16-byte serials: 32 hex digits.
    s=$(serial_of pki/devices/robot-AABBCCDDEEFF.crt.pem)
    [ ${#s} = 32 ] || fail "serial $s is not 16 bytes"

    # The CRL: v2 with a number, next update, AKI; then every certificate passes with it.
    ok "$PK" ca crl --dir pki --out crl.pem --days 3
    openssl crl -in crl.pem -noout -text >crl.txt
    has crl.txt "Version 2"
    has crl.txt "X509v3 CRL Number"
    has crl.txt "Next Update"
    has crl.txt "X509v3 Authority Key Identifier"
    has crl.txt "No Revoked Certificates"
    # The file also carries the root's CRL, so the issuing CA is checked too.
    [ "$(grep -c 'BEGIN X509 CRL' crl.pem)" = 2 ] || fail "crl.pem should hold two CRLs"
    openssl verify -CAfile pki/root.crt.pem -crl_check -CRLfile crl.pem pki/issuing.crt.pem \
        >/dev/null || fail "issuing CA with the root CRL"
    for c in devices/robot-AABBCCDDEEFF mobiles/alice operators/ops-1; do
        ok V -crl_check -CRLfile crl.pem -purpose sslclient "pki/$c.crt.pem"
        ok V -crl_check_all -CRLfile crl.pem -purpose sslclient "pki/$c.crt.pem"
    done
    ok V -crl_check_all -CRLfile crl.pem -purpose sslserver pki/servers/localhost.crt.pem
    refused V -purpose sslclient pki/servers/localhost.crt.pem
    refused V -purpose sslserver pki/devices/robot-AABBCCDDEEFF.crt.pem

    # Revoke: by device id with a reason, and a mobile by the serial openssl prints.
    ok "$PK" ca revoke --dir pki --device robot-AABBCCDDEEFF --reason keyCompromise
    ok "$PK" ca revoke --dir pki "$(serial_of pki/mobiles/alice.crt.pem)" --reason superseded
    refused "$PK" ca revoke --dir pki "$(serial_of pki/mobiles/alice.crt.pem)"
    has err.txt "already revoked"
    refused "$PK" ca revoke --dir pki 0123456789ABCDEF0123456789ABCDEF
    has err.txt "not issued by this CA"
    refused "$PK" ca revoke --dir pki --device robot-unknown
    refused "$PK" ca revoke --dir pki --device robot-AABBCCDDEEFF --reason certificateHold
    ok "$PK" ca crl --dir pki --out crl2.pem
    openssl crl -in crl2.pem -noout -text >crl2.txt
    has crl2.txt "Key Compromise"
    has crl2.txt "Superseded"
    has crl2.txt "$(serial_of pki/devices/robot-AABBCCDDEEFF.crt.pem)"
    # The CRL number went up.
    n1=$(openssl crl -in crl.pem -noout -crlnumber | cut -d= -f2)
    n2=$(openssl crl -in crl2.pem -noout -crlnumber | cut -d= -f2)
    [ "$n1" != "$n2" ] || fail "CRL number did not change ($n1)"
    refused V -crl_check -CRLfile crl2.pem pki/devices/robot-AABBCCDDEEFF.crt.pem
    has all.txt "certificate revoked"
    refused V -crl_check_all -CRLfile crl2.pem pki/mobiles/alice.crt.pem
    has all.txt "certificate revoked"
    ok V -crl_check_all -CRLfile crl2.pem pki/operators/ops-1.crt.pem
    ok V -crl_check_all -CRLfile crl2.pem pki/servers/localhost.crt.pem

    # Explicit validity (for the TLS tests' expired certificates), computed from the CA's own
    # dates rather than the wall clock.
    start=$(date -u -d "$(openssl x509 -in pki/issuing.crt.pem -noout -startdate | cut -d= -f2)" +%s)
    ok "$PK" ca issue --dir pki --device robot-expired --not-before "@$start" \
        --not-after "@$((start + 1))"
    refused V pki/devices/robot-expired.crt.pem
    has all.txt "certificate has expired"
    ok "$PK" ca issue --dir pki --device robot-future --not-before "@$((start + 200 * 86400))" \
        --not-after "@$((start + 300 * 86400))"
    refused V pki/devices/robot-future.crt.pem
    has all.txt "certificate is not yet valid"
    # The root CRL can be re-signed (unencrypted root key: no passphrase needed).
    ok "$PK" ca crl --dir pki --out crl3.pem --root --root-days 30
    ok V -crl_check_all -CRLfile crl3.pem pki/operators/ops-1.crt.pem
    ;;

csr)
    init_ca
    ok openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout dev.key \
        -subj "/O=Someone Else/CN=robot-csr" -addext "basicConstraints=critical,CA:TRUE" \
        -out dev.csr
    ok "$PK" ca issue --dir pki --device robot-csr --csr dev.csr
    [ ! -e pki/devices/robot-csr.key.pem ] || fail "a key file was written for a CSR"
    ok V -purpose sslclient pki/devices/robot-csr.crt.pem
    # The certificate carries the requester's public key and nothing else of the request.
    openssl x509 -in pki/devices/robot-csr.crt.pem -noout -pubkey >cert.pub
    openssl pkey -in dev.key -pubout >csr.pub
    cmp -s cert.pub csr.pub || fail "certificate key is not the CSR key"
    openssl x509 -in pki/devices/robot-csr.crt.pem -noout -text >c.txt
    has c.txt "CA:FALSE"
    lacks c.txt "CA:TRUE"
    lacks c.txt "Someone Else"
    has c.txt "O = CLI Test"
    # DER CSR from an RSA-2048 key, server kind, no CN (the name is ours).
    ok openssl req -new -newkey rsa:2048 -nodes -keyout srv.key -subj "/O=x" -outform DER \
        -out srv.der
    ok "$PK" ca issue --dir pki --server api.example.com --csr srv.der
    ok V -purpose sslserver pki/servers/api.example.com.crt.pem

    # A bad signature: flip the last byte of the DER (inside the signature value).
    ok openssl req -in dev.csr -outform DER -out dev.der
    len=$(wc -c <dev.der)
    last=$(od -An -tu1 -j $((len - 1)) -N1 dev.der | tr -d ' ')
    cp dev.der bad.der
    # shellcheck disable=SC2059
    printf "\\$(printf %o $((last ^ 1)))" | dd of=bad.der bs=1 seek=$((len - 1)) conv=notrunc \
        2>/dev/null
    cmp -s dev.der bad.der && fail "tamper did not change the file"
    refused "$PK" ca issue --dir pki --device robot-csr2 --csr bad.der
    has err.txt "signature"
    # Truncated, PEM and DER.
    head -c 200 dev.csr >trunc.csr
    refused "$PK" ca issue --dir pki --device robot-csr3 --csr trunc.csr
    head -c $((len / 2)) dev.der >trunc.der
    refused "$PK" ca issue --dir pki --device robot-csr4 --csr trunc.der
    : >empty.csr
    refused "$PK" ca issue --dir pki --device robot-csr5 --csr empty.csr
    refused "$PK" ca issue --dir pki --device robot-csr5 --csr no-such-file.csr
    # Someone else's name, a weak key.
    ok openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout o.key \
        -subj "/CN=robot-other" -out other.csr
    refused "$PK" ca issue --dir pki --device robot-csr6 --csr other.csr
    has err.txt "CN does not match"
    ok openssl req -new -newkey rsa:1024 -nodes -keyout weak.key -subj "/CN=robot-weak" \
        -out weak.csr
    refused "$PK" ca issue --dir pki --device robot-weak --csr weak.csr
    has err.txt "RSA-1024"
    # Nothing was written for any refused request.
    [ ! -e pki/devices/robot-csr2.crt.pem ] || fail "refused CSR left a certificate"
    ;;

p12)
    init_ca
    command -v keytool >/dev/null || fail "keytool missing: run scripts/install-deps (openjdk-17-jdk-headless)"
    ok "$PK" ca issue --dir pki --mobile alice
    printf 'correct horse battery\n' >pw
    printf 'wrong horse\n' >badpw
    ok "$PK" export-p12 --dir pki --mobile alice --password-file pw --out alice.p12
    lacks out.txt "correct horse"
    lacks err.txt "correct horse"
    mode_is alice.p12 600
    ok "$PK" export-p12 --dir pki --mobile alice --password-file pw --out alice-legacy.p12 \
        --legacy
    mode_is alice-legacy.p12 600

    # Modern: PBES2 / PBKDF2 / AES-256-CBC / hmacWithSHA256, SHA-256 MAC.
    openssl pkcs12 -info -noout -passin file:pw -in alice.p12 >info.txt 2>&1 ||
        { cat info.txt; fail "openssl pkcs12 -info (modern)"; }
    has info.txt "MAC: sha256"
    has info.txt "Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"
    has info.txt "PRF hmacWithSHA256"
    has info.txt "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC"
    lacks info.txt "TripleDES"
    # Legacy: 3DES for key and certificates, SHA-1 MAC; opened the way old tools open it.
    openssl pkcs12 -legacy -info -noout -passin file:pw -in alice-legacy.p12 >linfo.txt 2>&1 ||
        { cat linfo.txt; fail "openssl pkcs12 -legacy -info"; }
    has linfo.txt "MAC: sha1"
    has linfo.txt "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC"
    has linfo.txt "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC"
    lacks linfo.txt "AES"
    lacks linfo.txt "RC2"
    # Wrong password: refused by both.
    refused openssl pkcs12 -info -noout -passin file:badpw -in alice.p12
    refused openssl pkcs12 -legacy -info -noout -passin file:badpw -in alice-legacy.p12
    # Contents: our certificate, our key, the two CA certificates.
    for f in alice.p12 alice-legacy.p12; do
        openssl pkcs12 -legacy -in "$f" -passin file:pw -clcerts -nokeys | openssl x509 >got.crt
        openssl x509 -in pki/mobiles/alice.crt.pem >want.crt
        cmp -s got.crt want.crt || fail "$f: certificate differs"
        openssl pkcs12 -legacy -in "$f" -passin file:pw -nocerts -nodes | openssl pkey >got.key
        openssl pkey -in pki/mobiles/alice.key.pem >want.key
        cmp -s got.key want.key || fail "$f: key differs"
        n=$(openssl pkcs12 -legacy -in "$f" -passin file:pw -cacerts -nokeys | grep -c 'BEGIN CERT')
        [ "$n" = 2 ] || fail "$f: $n CA certificates, want 2"
    done
    # Java's keytool opens both forms; wrong password refused.
    for f in alice.p12 alice-legacy.p12; do
        ok keytool -list -storetype PKCS12 -keystore "$f" -storepass:file pw
        has out.txt "PrivateKeyEntry"
        has out.txt "alice"
        refused keytool -list -storetype PKCS12 -keystore "$f" -storepass:file badpw
    done
    # Refusals: unknown name, missing password file, key not ours (CSR), no --out.
    refused "$PK" export-p12 --dir pki --mobile bob --password-file pw --out bob.p12
    refused "$PK" export-p12 --dir pki --mobile alice --password-file nofile --out x.p12
    : >emptypw
    refused "$PK" export-p12 --dir pki --mobile alice --password-file emptypw --out x.p12
    refused "$PK" export-p12 --dir pki --mobile alice --password-file pw
    ok openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout m.key \
        -subj "/CN=carol" -out carol.csr
    ok "$PK" ca issue --dir pki --mobile carol --csr carol.csr
    refused "$PK" export-p12 --dir pki --mobile carol --password-file pw --out carol.p12
    has err.txt "key stays with its owner"
    [ ! -e x.p12 ] && [ ! -e carol.p12 ] || fail "a refused export left a file"
    ;;

kconfig)
    init_ca
    ok "$PK" ca issue --dir pki --device robot-AABBCCDDEEFF
    cat >device_001.json <<'EOF'
{
  "device_id": "robot-AABBCCDDEEFF",
  "psk_hex": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
  "psk_identity": "robot-AABBCCDDEEFF",
  "ota_public_key_der_hex": "3059",
  "provisioned": false,
  "provisioned_at": null
}
EOF
    # A private key is never printed by accident.
    refused "$PK" kconfig --keys device_001.json --dir pki
    has err.txt "--stdout"
    ok "$PK" kconfig --help
    has out.txt "PRIVATE KEY"
    ok "$PK" kconfig --keys device_001.json --dir pki --wss-uri wss://fleet.example:8443/ws \
        --expected-host fleet.example --output sdkconfig.frag
    mode_is sdkconfig.frag 600
    [ ! -s out.txt ] || fail "kconfig --output also wrote to stdout"
    # An independent reader: each CONFIG_MINITRAIN_X="..." line unescaped (\n \" \\).
    unescape() { # unescape NAME FILE
        awk -v name="$1" '
            index($0, name "=\"") == 1 {
                v = substr($0, length(name) + 3)
                if (substr(v, length(v), 1) != "\"") { exit 2 }
                v = substr(v, 1, length(v) - 1)
                out = ""
                for (i = 1; i <= length(v); i++) {
                    c = substr(v, i, 1)
                    if (c == "\\") {
                        i++
                        c = substr(v, i, 1)
                        if (c == "n") { out = out "\n" }
                        else if (c == "\"" || c == "\\") { out = out c }
                        else { exit 3 }
                    } else if (c == "\"") { exit 4 } else { out = out c }
                }
                printf "%s", out
                found = 1
            }
            END { if (!found) exit 5 }' "$2"
    }
    unescape CONFIG_MINITRAIN_CA_CERT_PEM sdkconfig.frag >ca.out || fail "CA_CERT_PEM line"
    cmp -s ca.out pki/ca-chain.pem || fail "CA_CERT_PEM does not round-trip"
    unescape CONFIG_MINITRAIN_CLIENT_CERT_PEM sdkconfig.frag >crt.out || fail "CLIENT_CERT line"
    cmp -s crt.out pki/devices/robot-AABBCCDDEEFF.crt.pem || fail "CLIENT_CERT_PEM round trip"
    unescape CONFIG_MINITRAIN_CLIENT_KEY_PEM sdkconfig.frag >key-from-frag.pem || fail "CLIENT_KEY line"
    cmp -s key-from-frag.pem pki/devices/robot-AABBCCDDEEFF.key.pem || fail "CLIENT_KEY_PEM round trip"
    [ "$(unescape CONFIG_MINITRAIN_WSS_URI sdkconfig.frag)" = "wss://fleet.example:8443/ws" ] ||
        fail "WSS_URI"
    [ "$(unescape CONFIG_MINITRAIN_EXPECTED_HOST sdkconfig.frag)" = "fleet.example" ] ||
        fail "EXPECTED_HOST"
    # Every non-comment line is one CONFIG_MINITRAIN_ setting.
    if grep -v '^#' sdkconfig.frag | grep -qv '^CONFIG_MINITRAIN_[A-Z_]*=".*"$'; then
        fail "unexpected line in the fragment"
    fi
    [ "$(grep -c '^CONFIG_MINITRAIN_' sdkconfig.frag)" = 5 ] || fail "want 5 settings"
    # The round-tripped key and certificate belong together.
    openssl x509 -in crt.out -noout -pubkey >a.pub
    openssl pkey -in key-from-frag.pem -pubout >b.pub
    cmp -s a.pub b.pub || fail "key and certificate do not match"

    # env: sourced by a real shell, the variables hold the exact PEMs.
    ok "$PK" env --keys device_001.json --dir pki --wss-uri wss://fleet.example/ws \
        --expected-host fleet.example --stdout
    cp out.txt env.sh
    has env.sh "export MINITRAIN_CLIENT_KEY_PEM='"
    (
        . ./env.sh
        printf '%s' "$MINITRAIN_CA_CERT_PEM" | cmp -s - pki/ca-chain.pem || exit 11
        printf '%s' "$MINITRAIN_CLIENT_CERT_PEM" |
            cmp -s - pki/devices/robot-AABBCCDDEEFF.crt.pem || exit 12
        printf '%s' "$MINITRAIN_CLIENT_KEY_PEM" |
            cmp -s - pki/devices/robot-AABBCCDDEEFF.key.pem || exit 13
        [ "$MINITRAIN_WSS_URI" = wss://fleet.example/ws ] || exit 14
        [ "$MINITRAIN_EXPECTED_HOST" = fleet.example ] || exit 15
    ) || fail "env round trip (exit $?)"
    ok "$PK" env --device robot-AABBCCDDEEFF --dir pki --output env2.sh
    mode_is env2.sh 600
    has env2.sh "# MINITRAIN_WSS_URI not given"

    # Refusals: unknown device, manifest without device_id, bad URI, both outputs.
    printf '{"device_id":"robot-000000000000"}' >other.json
    refused "$PK" kconfig --keys other.json --dir pki --stdout
    has err.txt "ca issue --device robot-000000000000"
    printf '{"psk_hex":"00"}' >noid.json
    refused "$PK" kconfig --keys noid.json --dir pki --stdout
    printf '{"device_id":' >broken.json
    refused "$PK" kconfig --keys broken.json --dir pki --stdout
    refused "$PK" kconfig --keys device_001.json --dir pki --wss-uri http://x --stdout
    refused "$PK" kconfig --keys device_001.json --dir pki --stdout --output y.frag
    refused "$PK" env --keys device_001.json --dir nowhere --stdout
    ;;

negative)
    printf 'root secret\n' >pass
    ok "$PK" ca init --dir pki --passphrase-file pass
    has pki/root.key.pem "BEGIN ENCRYPTED PRIVATE KEY"
    lacks pki/issuing.key.pem "ENCRYPTED"
    ok openssl pkey -in pki/root.key.pem -passin file:pass -noout
    refused openssl pkey -in pki/root.key.pem -passin pass:wrong -noout
    before=$(sha256sum pki/root.key.pem pki/root.crt.pem pki/index.jsonl)
    # ca init over an existing CA: refused, nothing changed.
    refused "$PK" ca init --dir pki
    has err.txt "refusing to overwrite"
    refused "$PK" ca init --dir pki --passphrase-file pass
    [ "$before" = "$(sha256sum pki/root.key.pem pki/root.crt.pem pki/index.jsonl)" ] ||
        fail "ca init modified an existing CA"
    # Root CRL refresh needs the passphrase.
    refused "$PK" ca crl --dir pki --out c.pem --root
    ok "$PK" ca crl --dir pki --out c.pem --root --passphrase-file pass
    # Unknown CA directory.
    refused "$PK" ca issue --dir no-such-ca --device robot-1
    has err.txt "no CA"
    refused "$PK" ca crl --dir no-such-ca --out c.pem
    refused "$PK" export-p12 --dir no-such-ca --mobile a --password-file pass --out a.p12
    # Bad days: usage errors (exit 2).
    for d in 0 -1 abc 1.5 99999999 ""; do
        set +e
        "$PK" ca issue --dir pki --device robot-1 --days "$d" >/dev/null 2>&1
        rc=$?
        set -e
        [ $rc = 2 ] || fail "--days '$d' gave exit $rc, want 2"
    done
    # More days than the issuing CA has left.
    refused "$PK" ca issue --dir pki --device robot-1 --days 36000
    has err.txt "issuing CA"
    # Names that would escape the directory or break a subject.
    refused "$PK" ca issue --dir pki --device ../evil
    refused "$PK" ca issue --dir pki --device "a,CN=b"
    refused "$PK" ca issue --dir pki --server "bad host"
    refused "$PK" ca issue --dir pki --server ok.example --san IP:999.1.1.1
    refused "$PK" ca issue --dir pki --device robot-1 --san DNS:x.example
    [ ! -e evil.crt.pem ] && [ ! -e pki/evil.crt.pem ] || fail "path escaped"
    # Kind selection.
    set +e
    "$PK" ca issue --dir pki >/dev/null 2>&1
    r1=$?
    "$PK" ca issue --dir pki --device a --mobile b >/dev/null 2>&1
    r2=$?
    "$PK" ca frobnicate --dir pki >/dev/null 2>&1
    r3=$?
    set -e
    [ $r1 = 2 ] && [ $r2 = 2 ] && [ $r3 = 2 ] || fail "usage errors: $r1 $r2 $r3"
    # The same name twice needs --replace; the first certificate stays revocable.
    ok "$PK" ca issue --dir pki --device robot-1
    first=$(serial_of pki/devices/robot-1.crt.pem)
    refused "$PK" ca issue --dir pki --device robot-1
    has err.txt "--replace"
    ok "$PK" ca issue --dir pki --device robot-1 --replace
    [ "$first" != "$(serial_of pki/devices/robot-1.crt.pem)" ] || fail "replace kept the serial"
    ok "$PK" ca revoke --dir pki "$first"
    # Revoke: unknown serial, not hex, nothing given.
    refused "$PK" ca revoke --dir pki 7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF
    refused "$PK" ca revoke --dir pki not-hex
    refused "$PK" ca revoke --dir pki
    # A damaged record in the index is reported, never skipped.
    cp pki/index.jsonl index.bak
    printf 'garbage\n' >>pki/index.jsonl
    refused "$PK" ca issue --dir pki --device robot-2
    has err.txt "damaged record"
    cp index.bak pki/index.jsonl
    # An incomplete last record (a crash while appending) is cut off; nothing else is lost.
    printf '{"op":"issue","serial":"ab' >>pki/index.jsonl
    ok "$PK" ca issue --dir pki --device robot-2
    has err.txt "incomplete last record"
    ok "$PK" ca revoke --dir pki --device robot-2
    ok "$PK" ca revoke --dir pki --device robot-1
    has out.txt "revoked 1 certificate"
    [ "$(grep -c '"op":"issue"' pki/index.jsonl)" = 3 ] || fail "index should hold 3 issues"
    [ "$(grep -c '"op":"revoke"' pki/index.jsonl)" = 3 ] || fail "index should hold 3 revokes"
    ;;

inventory)
    # Revocations reach the fleet inventory (another module's SQLite file): an audit row each,
    # and the device credential carrying the certificate's fingerprint marked revoked. The
    # device comes from 'provision-keys generate'; the mTLS credential row is inserted here
    # with sqlite3 and a fingerprint computed by openssl, as generate/batch --ca will record it.
    command -v sqlite3 >/dev/null || fail "sqlite3 missing (scripts/install-deps)"
    init_ca
    ok "$PK" generate --output keys/device_001.json --mac AA:BB:CC:DD:EE:01
    id=robot-AABBCCDDEE01
    ok "$PK" ca issue --dir pki --device "$id"
    fpr="sha256:$(openssl x509 -in "pki/devices/$id.crt.pem" -outform DER |
        openssl dgst -sha256 -r | cut -d' ' -f1)"
    sqlite3 keys/inventory.db "INSERT INTO credentials(device_id, kind, version, fingerprint,
        created_at, state) VALUES ('$id', 'mtls_cert', 1, '$fpr', '2026-01-01T00:00:00Z',
        'active');" || fail "sqlite3 insert"
    ok "$PK" ca issue --dir pki --mobile alice
    ok "$PK" ca revoke --dir pki --device "$id" --reason keyCompromise \
        --inventory keys/inventory.db
    has out.txt "recorded in keys/inventory.db"
    ok "$PK" ca revoke --dir pki "$(serial_of pki/mobiles/alice.crt.pem)" \
        --inventory keys/inventory.db
    st=$(sqlite3 keys/inventory.db "SELECT state FROM credentials WHERE kind='mtls_cert'")
    [ "$st" = revoked ] || fail "mtls_cert credential state is '$st'"
    st=$(sqlite3 keys/inventory.db "SELECT state FROM credentials WHERE kind='psk'")
    [ "$st" = active ] || fail "psk credential touched: '$st'"
    sqlite3 keys/inventory.db "SELECT kind, subject, detail FROM audit ORDER BY seq" >audit.txt
    has audit.txt "pki.cert_revoked|$id|"
    has audit.txt "pki.cert_revoked|alice|"
    has audit.txt "\"reason\":\"keyCompromise\""
    has audit.txt "$fpr"
    # A revocation the CA refuses records nothing.
    n1=$(sqlite3 keys/inventory.db "SELECT count(*) FROM audit")
    refused "$PK" ca revoke --dir pki --device "$id" --inventory keys/inventory.db
    n2=$(sqlite3 keys/inventory.db "SELECT count(*) FROM audit")
    [ "$n1" = "$n2" ] || fail "a refused revocation was audited"
    # A name re-issued many times: every one of its live certificates is revoked and each
    # is recorded (the record once stopped at 64 without saying so).
    i=0
    while [ $i -lt 70 ]; do
        ok "$PK" ca issue --dir pki --mobile bob --replace
        i=$((i + 1))
    done
    ok "$PK" ca revoke --dir pki --mobile bob --inventory keys/inventory.db
    has out.txt "revoked 70 certificates"
    n=$(sqlite3 keys/inventory.db "SELECT count(*) FROM audit WHERE kind='pki.cert_revoked'
        AND subject='bob'")
    [ "$n" = 70 ] || fail "$n of 70 revocations of bob recorded"
    ;;

*)
    fail "unknown case"
    ;;
esac
echo "pki_cli $CASE: ok"
