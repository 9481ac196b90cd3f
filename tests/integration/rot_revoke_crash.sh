#!/bin/sh
# A crash in the revocation between the CA index's commit and the certificates' audit rows:
#   sh rot_revoke_crash.sh BIN_DIR TMP_DIR
# The setup of rot_revoke_batch.sh (30 robots, a psk,mtls plan over 25 of them forced), with 2
# plan certificates revoked beforehand as keyCompromise and 1 as superseded. The server runs
# with FK_TEST_ROT_EXIT_AFTER_CA, so it _exit()s right after the batch revoked the other 22
# in the index, before any of their audit rows. Restarted without it, it must finish the
# revocation. Checked: exactly one rotation.revoked row per serial revoked by the plan (22,
# each "recovered"; none for the 3 revoked before, none twice), one per PSK (25), the CRL
# lists the 25 plan serials and no other, the audit chain verifies.
# With FK_PG=1 (run by bash) the inventory is a throw-away PostgreSQL cluster (pg_lib.sh): the
# plan is shared (rot_shared.c), the crash comes inside the merge's open transaction.
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
    echo "FAIL [rot_revoke_crash]: $*" >&2
    for f in srv1.log srv.log; do
        [ -f $f ] && { echo "--- $f" >&2; tail -n 30 $f >&2; }
    done
    exit 1
}
trap stop_all EXIT
if [ "${FK_PG:-0}" = 1 ]; then
    . "$HERE/pg_lib.sh"
    fk_pg_start "$T/pg"
    trap 'stop_all; fk_pg_stop' EXIT
    fk_pg_createdb fleet
    FLEET_INV=$(fk_pg_uri fleet)
    PG_ARGS="--ota_dir ota" # required with a PostgreSQL inventory
fi
INV=${FLEET_INV:-keys/inventory.db}
. "$HERE/fleet_lib.sh"

# audit_rows KIND: "subject<TAB>detail" of the audit rows of KIND, in seq order.
audit_rows() {
    if [ "${FK_PG:-0}" = 1 ]; then
        fk_pg_psql -d fleet -At -F "$(printf '\t')" \
            -c "SELECT subject, detail FROM audit WHERE kind = '$1' ORDER BY seq"
    else
        python3 -c 'import sqlite3, sys
for r in sqlite3.connect(sys.argv[1]).execute(
        "SELECT subject, detail FROM audit WHERE kind = ? ORDER BY seq", (sys.argv[2],)):
    print("%s\t%s" % r)' "$INV" "$1"
    fi
}

fleet_mint_split 30 25
for n in 2 10 20; do
    s=$(sed -n "${n}p" plan.serials | cut -d' ' -f2)
    reason=keyCompromise
    [ "$n" != 20 ] || reason=superseded # as the batch revokes, but before the plan's start
    "$B/provision-keys" ca revoke --dir pki "$s" --reason $reason >>mint.log 2>&1 ||
        fail "ca revoke $s"
done

export FK_TEST_ROT_EXIT_AFTER_CA=1
fleet_server --log_level info ${PG_ARGS:-}
unset FK_TEST_ROT_EXIT_AFTER_CA
SRV=${PIDS##* }
fleet_rotate psk,mtls 2 1 25
fleet_wait_state settled 120
# not fleet_force: the exit may come before the answer (a shared plan's merge runs then)
sed 's/^.*"devices":/{"devices":/' plan.json >force.json
"$B/wss_client" --port "$P" $OPER --post "/api/rotation/$ROT_ID/force" --body force.json \
    >api.out 2>api.err || true
i=0
while kill -0 "$SRV" 2>/dev/null; do
    i=$((i + 1))
    [ $i -le 600 ] || fail "the server did not exit at the crash point"
    sleep 0.2
done
wait "$SRV" && rc=0 || rc=$?
[ "$rc" = 86 ] || fail "the server exited $rc, not at the crash point (86)"
grep -q 'pki: revoked 22 of 22 serials (superseded)' srv.log || fail "no batch before the crash"
! grep -q 'old credentials revoked' srv.log || fail "the revocation finished before the crash"
n=$(audit_rows rotation.revoked | wc -l)
[ "$n" = 0 ] || fail "$n rotation.revoked rows before the restart: not the crash point"

mv srv.log srv1.log
fleet_server --log_level info ${PG_ARGS:-}
fleet_wait_done 120
grep -q '22 certificates revoked by a run cut before their audit rows' srv.log ||
    fail "no recovery of 22 rows in the log"

fleet_crl_is plan.serials

audit_rows rotation.revoked >revoked.rows
audit_rows rotation.old_revoked >old_revoked.rows
python3 - revoked.rows old_revoked.rows plan.serials <<'PY' || fail "audit rows"
import json, sys
plan = dict(l.split() for l in open(sys.argv[3]))
before = {l.split()[0] for i, l in enumerate(open(sys.argv[3]), 1) if i in (2, 10, 20)}
bad = []
certs = {}
psks = set()
for line in open(sys.argv[1]):
    subject, detail = line.rstrip("\n").split("\t", 1)
    d = json.loads(detail)
    if "serial" in d:
        if subject in certs or plan.get(subject) != d["serial"] or subject in before:
            bad.append("cert row %s %s" % (subject, detail))
        if d.get("recovered") is not True:
            bad.append("cert row not marked recovered: %s %s" % (subject, detail))
        certs[subject] = d["serial"]
    elif d.get("class") == "psk" and d.get("credentials") == 1 and subject in plan:
        if subject in psks:
            bad.append("psk row twice: %s" % subject)
        psks.add(subject)
    else:
        bad.append("row %s %s" % (subject, detail))
missing = set(plan) - before - set(certs)
if missing:
    bad.append("no rotation.revoked row for %s" % sorted(missing))
if len(certs) != 22 or len(psks) != 25:
    bad.append("audit rows: %d certificates, %d psks" % (len(certs), len(psks)))
n = sum(1 for _ in open(sys.argv[2]))
if n != 1:
    bad.append("%d rotation.old_revoked rows" % n)
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
"$B/provision-keys" inventory --inventory "$INV" verify-audit >verify.out 2>&1 ||
    fail "audit chain: $(cat verify.out)"
echo "rot_revoke_crash: crash after the CA commit, 22 rows recovered once each, CRL of 25: ok"
