#!/usr/bin/env bash
# THE crash test: a 2000-device batch is killed (SIGKILL) again and again, at random moments
# and at the two worst moments on purpose (files written but not recorded; files synced but
# the commit not made), interrupted once with SIGINT, then re-run to completion. Afterwards
# every device must exist exactly once, its manifest, NVS image and inventory row must agree,
# no temp file may be left and the audit chain must verify (check_fleet).
# Nothing here depends on how fast the machine is: a kill that lands after the run finished
# is simply a run that finished.
# The random kills (CRASH_KILLS, default 20) are drawn from FK_FAULT_SEED, printed first (a
# random one when unset): `FK_FAULT_SEED=S ctest -R batch_crash` replays the same delays. After
# each kill the files of every device the inventory holds are fingerprinted: a later run must
# never re-mint them (same PSK, keys, NVS image and manifest at the end).
# With CRASH_CA=1 (test batch_crash_ca, CRASH_N devices) every device also gets an mTLS
# certificate (--ca): afterwards each device must have exactly one unrevoked certificate in
# the CA index, the one its manifest and inventory name; every certificate of an attempt the
# kills cut short must be revoked (superseded).
INTEGRATION=$(cd "$(dirname "$0")/.." && pwd) # ca_index.py
. "$(dirname "$0")/lib.sh"

N=${CRASH_N:-2000}
KILLS=${CRASH_KILLS:-20}
SEED=${FK_FAULT_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
echo "crash: FK_FAULT_SEED=$SEED ($N devices, $KILLS random kills)"
RANDOM=$SEED
fail() {
    echo "FAIL [FK_FAULT_SEED=$SEED]: $*" >&2
    exit 1
}
make_csv $N devices.csv
ARGS=(batch --inventory "$INV" --csv devices.csv --output-dir keys --jobs 2 --chunk 64 --encrypt-nvs)
if [ "${CRASH_CA:-0}" = 1 ]; then
    "$PK" ca init --dir pki >/dev/null 2>&1 || fail "ca init"
    ARGS+=(--ca pki)
fi
run() { "$PK" "${ARGS[@]}" "$@"; }
count() { "$PK" inventory --inventory "$INV" --json list | grep -c '"device_id"' || true; }
# snapshot: appends the sha256 of every file of every device the inventory records to done.sha
# (the devices finished so far; their files must never change again).
snapshot() {
    "$PK" inventory --inventory "$INV" --json list |
        sed -n 's/.*"device_id":[[:space:]]*"\([^"]*\)".*/\1/p' >ids.txt
    find keys -maxdepth 1 -type f -name 'robot-*' -print0 | xargs -0 -r sha256sum |
        awk 'NR == FNR { done[$1] = 1; next }
             { d = $2; sub(/^keys\//, "", d); sub(/\..*/, "", d); if (d in done) print }' \
            ids.txt - >>done.sha
}

# 1. Deterministic crash points (the process kills itself there).
set +e
FK_TEST_KILL_AFTER_FILES=100 run >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 137 ] || fail "kill hook 1 did not fire (exit $rc)"
c1=$(count)
[ "$c1" -lt 100 ] || fail "devices recorded past the crash point: $c1"
ls keys/robot-*.json >/dev/null 2>&1 || fail "no files written before the crash point"
set +e
FK_TEST_KILL_BEFORE_COMMIT=3 run >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 137 ] || fail "kill hook 2 did not fire (exit $rc)"
c2=$(count)
[ "$c2" -ge "$c1" ] || fail "devices lost: $c2 < $c1"
"$PK" inventory --inventory "$INV" verify-audit >/dev/null || fail "audit after hooks"

snapshot
KILLED=0
GROW=${CRASH_GROW:-$((N / 8))}
# 2. Random SIGKILLs, 20-300 ms into a run, until KILLS of them landed inside a run (exit 137,
# at most 3 x KILLS runs): a run that finished first makes the fleet grow by GROW devices (the
# CSV gains rows; the finished devices must stay untouched), so the next kill has work to cut;
# GROW doubles each time.
# The program itself is started in the background (not a shell function, whose subshell would
# be what gets killed, leaving the batch running).
i=0
while [ $KILLED -lt "$KILLS" ]; do
    i=$((i + 1))
    [ $i -le $((KILLS * 3)) ] || fail "only $KILLED of $((i - 1)) kills landed inside a run"
    files0=$(ls keys | wc -l)
    "$PK" "${ARGS[@]}" >/dev/null 2>&1 &
    pid=$!
    if [ $i -gt 2 ]; then
        # Later rounds first wait until the run has written files (odd rounds) or committed
        # devices (even rounds), or ended, so kills land inside the minting loop and between
        # commits whatever the machine's speed; no time limit is involved.
        rows0=$(count)
        while kill -0 $pid 2>/dev/null; do
            if [ $((i % 2)) = 1 ]; then
                [ "$(ls keys | wc -l)" -le "$files0" ] || break
            else
                [ "$(count)" -le "$rows0" ] || break
            fi
            sleep 0.01
        done
    fi
    sleep "0.$(printf '%03d' $((20 + RANDOM % 281)))"
    kill -9 $pid 2>/dev/null || true
    set +e
    wait $pid 2>/dev/null
    rc=$?
    set -e
    [ $rc -eq 137 ] || [ $rc -eq 0 ] || fail "run $i ended with $rc, neither killed nor done"
    [ $rc -ne 137 ] || KILLED=$((KILLED + 1))
    echo "kill $i: exit $rc, $(count) of $N devices recorded"
    snapshot
    if [ $rc -eq 0 ]; then
        # The run beat the kill: the next one gets more work, twice as much each time it
        # happens again (a fast machine, or a fast inventory), so kills keep landing.
        N=$((N + GROW))
        [ "$GROW" -ge 8000 ] || GROW=$((GROW * 2))
        (make_csv $N devices.csv) # a subshell: make_csv sets i
    fi
done
echo "crash: $KILLED of $i random kills landed inside a run; the fleet grew to $N devices"
# 3. Ctrl-C: the run stops at a chunk boundary and says how to finish.
"$PK" "${ARGS[@]}" >/dev/null 2>int.err &
pid=$!
sleep 0.1
kill -INT $pid 2>/dev/null || true
set +e
wait $pid; rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 1 ] || fail "SIGINT exit $rc"
[ $rc -eq 0 ] || grep -q 'run the same command again' int.err || fail "SIGINT message: $(cat int.err)"

# 4. Finish, then check everything.
before=$(count)
run --json >final.json 2>final.err || fail "final run failed: $(cat final.err)"
grep -q '"ok":true' final.json || fail "final: $(cat final.json)"
grep -q "\"minted\":$((N - before))," final.json || fail "final run minted the wrong number: $(cat final.json)"
"$CHECK_FLEET" keys $N "$INV" || fail "fleet inconsistent after crashes"
# Nothing re-minted: every file of a device finished before a kill is what it was then.
sort -u done.sha >done.u.sha
sha256sum --quiet -c done.u.sha || fail "files of devices finished before a kill changed"
echo "crash: $(cut -d' ' -f3 done.u.sha | sort -u | wc -l) files of finished devices unchanged"
if [ "${CRASH_CA:-0}" = 1 ]; then
    python3 - "$N" "$INTEGRATION" <<'PY' || fail "CA index and fleet disagree"
import glob, json, sys
sys.path.insert(0, sys.argv[2])
from ca_index import device_certs
live, revoked = device_certs("pki/index.jsonl")
n = 0
for path in glob.glob("keys/robot-*.json"):
    m = json.load(open(path))
    certs = [c for c in live.get(m["device_id"], []) if c[0] not in revoked]
    want = (m["mtls_cert_serial"], m["mtls_cert_fingerprint"].lower())
    if certs != [want]:
        sys.exit("%s: unrevoked certificates %s, manifest %s" % (m["device_id"], certs, want))
    n += 1
if n != int(sys.argv[1]):
    sys.exit("%d manifests" % n)
issued = sum(len(v) for v in live.values())
print("crash: %d certificates issued, %d revoked as superseded" % (issued, len(revoked)))
PY
    for f in keys/robot-*.crt.pem; do
        openssl verify -CAfile pki/ca-chain.pem "$f" >/dev/null 2>&1 || fail "$f does not verify"
    done
fi

# 5. And a completed fleet survives one more run untouched.
tree_sums keys >a.sha
run >/dev/null
tree_sums keys | cmp -s - a.sha || fail "re-run after recovery changed files"
echo "crash: ok"
