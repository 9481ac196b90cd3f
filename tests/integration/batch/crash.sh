#!/usr/bin/env bash
# THE crash test: a 2000-device batch is killed (SIGKILL) again and again, at random moments
# and at the two worst moments on purpose (files written but not recorded; files synced but
# the commit not made), interrupted once with SIGINT, then re-run to completion. Afterwards
# every device must exist exactly once, its manifest, NVS image and inventory row must agree,
# no temp file may be left and the audit chain must verify (check_fleet).
# Nothing here depends on how fast the machine is: a kill that lands after the run finished
# is simply a run that finished.
# With CRASH_CA=1 (test batch_crash_ca, CRASH_N devices) every device also gets an mTLS
# certificate (--ca): afterwards each device must have exactly one unrevoked certificate in
# the CA index, the one its manifest and inventory name; every certificate of an attempt the
# kills cut short must be revoked (superseded).
. "$(dirname "$0")/lib.sh"

N=${CRASH_N:-2000}
make_csv $N devices.csv
ARGS=(batch --inventory "$INV" --csv devices.csv --output-dir keys --jobs 2 --chunk 64 --encrypt-nvs)
if [ "${CRASH_CA:-0}" = 1 ]; then
    "$PK" ca init --dir pki >/dev/null 2>&1 || fail "ca init"
    ARGS+=(--ca pki)
fi
run() { "$PK" "${ARGS[@]}" "$@"; }
count() { "$PK" inventory --inventory "$INV" --json list | grep -c '"device_id"' || true; }

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

# 2. Random SIGKILLs, 20-300 ms into a run.
# The program itself is started in the background (not a shell function, whose subshell would
# be what gets killed, leaving the batch running).
for i in 1 2 3 4 5 6; do
    files0=$(ls keys | wc -l)
    "$PK" "${ARGS[@]}" >/dev/null 2>&1 &
    pid=$!
    if [ $i -gt 2 ]; then
        # Later rounds first wait until the run has written files (rounds 3-4) or committed
        # devices (5-6), or ended, so kills land inside the minting loop and between commits
        # whatever the machine's speed; no time limit is involved.
        rows0=$(count)
        while kill -0 $pid 2>/dev/null; do
            if [ $i -le 4 ]; then
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
    echo "kill $i: exit $rc, $(count) devices recorded"
done
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
if [ "${CRASH_CA:-0}" = 1 ]; then
    python3 - "$N" <<'PY' || fail "CA index and fleet disagree"
import glob, json, sys
live, revoked = {}, set()
for line in open("pki/index.jsonl"):
    e = json.loads(line)
    if e.get("op") == "revoke":
        revoked.add(e["serial"])
    elif e.get("op") == "issue" and e.get("kind") == "device":
        live.setdefault(e["name"], []).append((e["serial"], e["fingerprint"]))
n = 0
for path in glob.glob("keys/robot-*.json"):
    m = json.load(open(path))
    certs = [c for c in live.get(m["device_id"], []) if c[0] not in revoked]
    want = (m["mtls_cert_serial"], m["mtls_cert_fingerprint"])
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
