#!/bin/sh
# The revocation at the end of a rotation (issue 14, bench/README.md "10,000 robots, to the
# end"): N robots minted with `provision-keys batch --ca`, a `psk,mtls` plan over all of them
# on a fleetkey-server with no robot connected, so the plan settles with every device offline;
# the operator forces it naming all N, and the server revokes every old credential (N
# certificates into the CRL, N PSK rows, N audit rows of each) in its event loop. Printed: the
# server's CPU seconds for the force and the revocation (user + system, from /proc: robust on a
# shared machine where wall time is not), per device, and the event loop thread's; the checks
# that it all happened (CRL entries, revoked rows, audit rows, the audit chain verified).
# Figures only; nothing asserts on time.
#
# usage: bench_revoke.sh BUILD_DIR
#   env: FK_BENCH_REVOKE_DEVICES (2000), FK_BENCH_REVOKE_CLASSES (psk,mtls)
set -eu

B=$(cd "${1:-build-bench}" && pwd)/bin
SRC=$(cd "$(dirname "$0")/.." && pwd)
N=${FK_BENCH_REVOKE_DEVICES:-2000}
CLASSES=${FK_BENCH_REVOKE_CLASSES:-psk,mtls}
. "$SRC/bench/lib.inc"
bench_begin bench_revoke provision-keys fleetkey-server wss_client
fail() {
    echo "bench_revoke: $*" >&2
    [ -f srv.log ] && { echo "--- srv.log" >&2; tail -n 20 srv.log >&2; }
    exit 1
}
. "$SRC/tests/integration/fleet_lib.sh"
TCK=$(getconf CLK_TCK)
# cpu_s PID [TID]: user + system CPU seconds of a process or of one of its threads.
cpu_s() {
    f=/proc/$1/stat
    [ -z "${2:-}" ] || f=/proc/$1/task/$2/stat
    sed 's/.*) //' "$f" | awk -v t="$TCK" '{ printf "%.2f", ($12 + $13) / t }'
}
echo "bench_revoke: $N devices ($CLASSES), $(nproc) cores, load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
fleet_mint "$N"
fleet_server --log_level info
SPID=${PIDS##* }
# Offline robots settle the plan (timeout 5 s: the wave gives up on them quickly).
fleet_rotate "$CLASSES" 5
fleet_wait_state settled 300
c0=$(cpu_s "$SPID") l0=$(cpu_s "$SPID" "$SPID") t0=$(date +%s.%N)
fleet_force
fleet_wait_done 1800
c1=$(cpu_s "$SPID") l1=$(cpu_s "$SPID" "$SPID") t1=$(date +%s.%N)
awk -v n="$N" -v c0="$c0" -v c1="$c1" -v l0="$l0" -v l1="$l1" -v t0="$t0" -v t1="$t1" 'BEGIN {
    printf "force + revocation of %d devices: server cpu %.2f s (event loop %.2f s), %.3f ms per device\n",
        n, c1 - c0, l1 - l0, (c1 - c0) * 1000 / n
    printf "  wall %.1f s from the force to revoked:true (polled every 0.2 s; with the fsync waits)\n",
        t1 - t0 }'
grep "old credentials revoked" srv.log | sed 's/^/  server: /'

# What was revoked: the CRL's entries, the inventory's revoked rows and audit rows, the chain.
n_crl=$(openssl crl -in crl.pem -noout -text | grep -c 'Serial Number' || true)
"$B/provision-keys" inventory --inventory keys/inventory.db verify-audit >verify.out 2>&1 ||
    fail "audit chain: $(cat verify.out)"
python3 - keys/inventory.db <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
q = lambda s: db.execute(s).fetchone()[0]
print("checks: %d credentials revoked (%d mtls_cert, %d psk), %d rotation.revoked audit rows"
      % (q("SELECT count(*) FROM credentials WHERE state = 'revoked'"),
         q("SELECT count(*) FROM credentials WHERE state = 'revoked' AND kind = 'mtls_cert'"),
         q("SELECT count(*) FROM credentials WHERE state = 'revoked' AND kind = 'psk'"),
         q("SELECT count(*) FROM audit WHERE kind = 'rotation.revoked'")))
PY
echo "checks: $n_crl serials in the CRL; audit chain intact: $(head -n 1 verify.out)"
