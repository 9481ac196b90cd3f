# The fleet the credential-rotation scripts run (rot_robot.sh, rot_robot_ca.sh): sourced after
# lib.sh, in the scratch directory, with PK and RS set.

# rot_fleet NAME ID... : the CA with the server's certificate, an operator (ops.p12, password in
# pw.txt), a CRL, and one production robot per 12-hex-digit ID (robot-ID, minted by `batch --ca
# --encrypt-nvs` into keys/) with its flash image robotN.img and a copy factoryN.img. Sets
# D1, D2, ... and defines fail NAME (shows the server's and the robots' logs).
rot_fleet() {
    ROT_NAME=$1
    shift
    run 0 ca_init "$PK" ca init --dir pki --name "$ROT_NAME"
    run 0 ca_srv "$PK" ca issue --dir pki --server localhost --san IP:127.0.0.1
    run 0 ca_op "$PK" ca issue --dir pki --operator ops
    echo "$ROT_NAME passphrase" >pw.txt
    run 0 p12 "$PK" export-p12 --dir pki --operator ops --password-file pw.txt --out ops.p12
    run 0 crl "$PK" ca crl --dir pki --out crl.pem
    echo "mac,name" >devices.csv
    for id in "$@"; do
        echo "$id" | sed 's/\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)/\1:\2:\3:\4:\5:\6,r/' >>devices.csv
    done
    run 0 batch "$PK" batch --csv devices.csv --output-dir keys --ca pki --encrypt-nvs
    cat >prod.sdkconfig <<'CFG'
CONFIG_PRODUCTION_BUILD=y
CONFIG_NVS_ENCRYPTION=y
CONFIG_SECURE_BOOT_V2_ENABLED=y
CONFIG_MINITRAIN_EXPECTED_HOST="localhost"
CFG
    n=0
    for id in "$@"; do
        n=$((n + 1))
        d=robot-$(echo "$id" | tr a-f A-F)
        eval "D$n=$d"
        run 0 img$n "$RS" flash-image create --out robot$n.img --nvs "keys/$d.nvs.bin" \
            --nvs-keys "keys/$d.nvs_keys.bin"
        cp robot$n.img factory$n.img
    done
}

fail() {
    echo "FAIL [$ROT_NAME]: $*" >&2
    for f in srv.err rs1.err rs2.err rs3.err; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}
