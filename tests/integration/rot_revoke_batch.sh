#!/bin/sh
# The revocation at the end of a forced rotation, over many devices at once:
#   sh rot_revoke_batch.sh BIN_DIR TMP_DIR
# 30 robots minted by `provision-keys batch --ca`; a psk,mtls plan over 25 of them, none
# connected, settles with all 25 offline and is forced naming them. 3 of the 25 certificates
# were revoked beforehand (keyCompromise, by `provision-keys ca revoke`). Checked: the server
# revoked the other 22 in one batch (one "revoked 22 of 22" line from the CA: the index locked
# and committed once, not once per serial), the CRL lists the 25 and none of the 5 outside the
# plan, keeping the 3 earlier reasons; the inventory has the 25 certificates and 25 PSKs
# revoked and the 5 others untouched; one rotation.revoked audit row per certificate revoked
# now (with its serial, its device as subject) and per PSK; the audit chain verifies.
set -eu
B=$1
T=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/skip.sh"
for t in provision-keys fleetkey-server wss_client; do
    [ -x "$B/$t" ] || fk_skip "$B/$t not built"
done
command -v python3 >/dev/null || fk_skip "python3 not installed"
rm -rf "$T"
mkdir -p "$T"
cd "$T"
. "$HERE/lib.sh" # stop_all, PIDS
fail() {
    echo "FAIL [rot_revoke_batch]: $*" >&2
    [ -f srv.log ] && { echo "--- srv.log" >&2; tail -n 30 srv.log >&2; }
    exit 1
}
trap stop_all EXIT
. "$HERE/fleet_lib.sh"

# The device -> serial map from the CA index, and 3 plan devices revoked before the plan.
fleet_mint_split 30 25
for s in $(sed -n '2p;10p;20p' plan.serials | cut -d' ' -f2); do
    "$B/provision-keys" ca revoke --dir pki "$s" --reason keyCompromise >>mint.log 2>&1 ||
        fail "ca revoke $s"
done

fleet_server --log_level info
fleet_rotate psk,mtls 2 1 25
fleet_wait_state settled 120
fleet_force
fleet_wait_done 120

# The CA: one batch of the 22 left, nothing per serial.
n=$(grep -c 'pki: revoked 22 of 22 serials (superseded)' srv.log || true)
[ "$n" = 1 ] || fail "expected one batch revocation of 22 serials, found $n: $(grep 'pki: revoked' srv.log)"
! grep -q 'pki: revoked [0-9]* of [0-9]* serials' srv.log ||
    [ "$(grep -c 'pki: revoked [0-9]* of [0-9]* serials' srv.log)" = 1 ] ||
    fail "more than one batch: $(grep 'pki: revoked' srv.log)"
grep -q 'old credentials revoked (22 certificates, 25 PSKs' srv.log ||
    fail "summary: $(grep 'old credentials revoked' srv.log)"

# The CRL the server wrote: the 25 plan serials, the 3 early ones still keyCompromise.
fleet_crl_is plan.serials
while read -r dev s; do
    ! grep -qE "^serialnumber0*$s\$" crl.txt || fail "$dev ($s) outside the plan is in the CRL"
done <other.serials
[ "$(grep -c '^keycompromise$' crl.txt)" = 3 ] || fail "the 3 keyCompromise reasons are gone"

# The inventory: rows and audit rows of exactly the plan's devices.
python3 - keys/inventory.db plan.serials other.serials <<'PY' || fail "inventory rows"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
plan = dict(l.split() for l in open(sys.argv[2]))
other = dict(l.split() for l in open(sys.argv[3]))
def state(dev, kind):
    return [r[0] for r in db.execute(
        "SELECT state FROM credentials WHERE device_id = ? AND kind = ?", (dev, kind))]
bad = []
for dev in plan:
    for kind in ("mtls_cert", "psk"):
        if state(dev, kind) != ["revoked"]:
            bad.append("%s %s %s" % (dev, kind, state(dev, kind)))
for dev in other:
    for kind in ("mtls_cert", "psk"):
        if "revoked" in state(dev, kind) or not state(dev, kind):
            bad.append("%s %s %s outside the plan" % (dev, kind, state(dev, kind)))
rows = db.execute("SELECT subject, detail FROM audit WHERE kind = 'rotation.revoked'").fetchall()
certs = {}
psks = set()
for subject, detail in rows:
    d = json.loads(detail)
    if "serial" in d:
        if subject in certs or plan.get(subject) != d["serial"]:
            bad.append("cert row %s %s" % (subject, detail))
        certs[subject] = d["serial"]
    elif d.get("class") == "psk" and d.get("credentials") == 1 and subject in plan:
        psks.add(subject)
    else:
        bad.append("row %s %s" % (subject, detail))
if len(certs) != 22 or len(psks) != 25 or len(rows) != 47:
    bad.append("audit rows: %d certificates, %d psks, %d rows" % (len(certs), len(psks), len(rows)))
n = db.execute("SELECT count(*) FROM audit WHERE kind = 'rotation.old_revoked'").fetchone()[0]
if n != 1:
    bad.append("%d rotation.old_revoked rows" % n)
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
"$B/provision-keys" inventory --inventory keys/inventory.db verify-audit >verify.out 2>&1 ||
    fail "audit chain: $(cat verify.out)"
echo "rot_revoke_batch: 22 revoked in one batch (3 skipped), CRL of 25, 47 audit rows: ok"
