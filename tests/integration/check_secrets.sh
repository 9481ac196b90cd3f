#!/bin/sh
# check-secrets-in-logs must find each kind of planted secret in a log (a private key in part,
# an EC scalar in hex, a PSK from a manifest, one from an NVS CSV, a JWT) and pass clean logs.
#   check_secrets.sh SOURCE_DIR WORK_DIR
set -eu
src=$1
work=$2
rm -rf "$work"
mkdir -p "$work/b/tmp/t"
check="python3 $src/scripts/check-secrets-in-logs $work/b"
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
cd "$work/b/tmp/t"
openssl ecparam -name prime256v1 -genkey -noout -out ec.key.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p8.key.pem 2>/dev/null
psk=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
printf '{"device_id":"robot-x","psk":"%s"}\n' "$psk" >manifest.json
csvpsk=ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100
printf 'key,type,encoding,value\nsecurity,namespace,,\ndtls_psk,data,hex2bin,%s\n' "$csvpsk" >nvs.csv
hdr=$(printf '{"alg":"ES256","typ":"at+jwt"}' | openssl base64 -A | tr '+/' '-_' | tr -d '=')
body=$(printf '{"sub":"alice","exp":1}' | openssl base64 -A | tr '+/' '-_' | tr -d '=')
jwt="$hdr.$body.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMDEyMzQ1Njc4OQ"

echo "server started; fingerprint sha256:0f1e2d3c" >srv.log
$check >clean.txt || fail "clean logs reported: $(cat clean.txt)"
grep -q '0 hit(s)' clean.txt || fail "no summary: $(cat clean.txt)"
grep -q '2 private key (PEM)\|4 private key (PEM)' clean.txt || fail "keys not collected: $(cat clean.txt)"

plant() { # $1: text to write into a log; $2: what the report must name
    printf 'debug: %s\n' "$1" >leak.log
    if $check >out.txt; then
        fail "planted $2 not found"
    fi
    grep -q "leak.log: $2" out.txt || fail "planted $2: wrong report: $(cat out.txt)"
    if grep -q -- "$1" out.txt; then
        fail "the report prints the secret itself"
    fi
    rm -f leak.log
}
plant "$(sed -n 3p p8.key.pem)" "private key (PEM)"
scalar=$(openssl ec -in ec.key.pem -text -noout 2>/dev/null | sed -n '/priv:/,/pub:/p' |
    grep -v 'priv:\|pub:' | tr -d ' :\n')
[ ${#scalar} -eq 64 ] || fail "could not read the scalar"
plant "$scalar" "private key (scalar)"
plant "psk=$psk" "PSK"
plant "$(echo "$csvpsk" | tr a-f A-F)" "PSK"
plant "Authorization: Bearer $jwt" "token"
# A FIFO among the files must not hang the check (a test's leftover pipe).
mkfifo pipe.out
$check >/dev/null || fail "FIFO: clean logs reported"
echo "check-secrets-in-logs: every planted kind found, clean logs pass"
