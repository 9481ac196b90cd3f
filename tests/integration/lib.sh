# Helpers for the integration scripts that stop at the first failure (ota_update.sh,
# rotation_cli.sh, robot_sim_provisioned.sh, ota_wss.sh, wss.sh, mtls_provision.sh,
# ctl_interop.sh, rot_interop.sh). Source it before `cd` with
#   . "$(dirname "$0")/lib.sh"
# Scripts that count failures and go on (ota_cli.sh, flash.sh...) keep their own helpers:
# their fail does not exit.

# fail MESSAGE...: say what failed and stop the test.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# run EXPECTED_EXIT NAME cmd...: stdout/stderr into NAME.out / NAME.err
run() {
    want=$1
    name=$2
    shift 2
    set +e
    "$@" >"$name.out" 2>"$name.err"
    got=$?
    set -e
    [ "$got" = "$want" ] || { cat "$name.out" "$name.err"; fail "$name: exit $got, expected $want"; }
}
# expect FILE TEXT: FILE contains TEXT (a grep pattern).
expect() {
    grep -q -- "$2" "$1" || { cat "$1"; fail "$1 lacks '$2'"; }
}

# Background processes a script starts go into PIDS; stop_all ends them (make it the EXIT trap:
# `trap stop_all EXIT`). Scripts with a fail of their own define it after sourcing this file.
PIDS=""
stop_all() {
    for p in $PIDS; do
        kill "$p" 2>/dev/null || true
    done
    for p in $PIDS; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=""
}
# wait_for FILE PATTERN [TENTHS]: up to TENTHS x 0.1 s (default 150) for PATTERN to appear in
# FILE; 1 when it never did.
wait_for() {
    i=0
    while [ $i -lt "${3:-150}" ]; do
        if [ -f "$1" ] && grep -q -- "$2" "$1"; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# s_client_req OUT REQUEST PSK IDENTITY PORT: one request through openssl s_client; output in
# OUT. $SC_EXTRA adds s_client options (e.g. -cipher). s_client sends stdin lines after the
# handshake; stdin is closed once an answer came. With -no_ign_eof, EOF on stdin makes s_client
# send close_notify and exit at once, without reading an answer still on its way: closing stdin
# early loses the answer although the listener got the request and replied (stats requests=).
# So stdin stays open until the answer is in OUT or s_client has exited; the 30 s bound is only
# a backstop, far above any handshake on a loaded machine.
s_client_req() {
    out=$1 req=$2 psk=$3 id=$4 port=$5
    # No stale answer from an earlier call may end the wait below before this one started.
    rm -f sc.in "$out" "$out.err"
    mkfifo sc.in
    # shellcheck disable=SC2086
    timeout 60 openssl s_client -dtls1_2 -psk "$psk" -psk_identity "$id" ${SC_EXTRA:-} \
        -connect "127.0.0.1:$port" -quiet -no_ign_eof <sc.in >"$out" 2>"$out.err" &
    scpid=$!
    exec 4>sc.in
    printf '%s\n' "$req" >&4
    i=0
    while [ $i -lt 300 ]; do
        if [ -s "$out" ] || ! kill -0 $scpid 2>/dev/null; then
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    exec 4>&-
    wait $scpid 2>/dev/null || true
    rm -f sc.in
}
