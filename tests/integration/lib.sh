# Helpers for the integration scripts that stop at the first failure (ota_update.sh,
# rotation_cli.sh, robot_sim_provisioned.sh). Source it before `cd` with
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
