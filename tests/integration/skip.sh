# Skips for the integration scripts. A test that cannot run prints one line "SKIP: reason"
# (scripts/run-ctest lists those lines at the end of `make check`) and exits 77, the
# SKIP_RETURN_CODE its CTest fragment declares.
#
# fk_skip REASON: a reason inside the project's control (a package scripts/install-deps should
# have installed, a program the build should have made). Under CI (CI set and not "false")
# that is a failure: a green CI must not hide a missing install step.
# fk_skip_external REASON: a reason outside it (a registry that cannot be reached from this
# machine); a skip everywhere.
fk_skip() {
    case "${CI:-}" in
    "" | false | 0) echo "SKIP: $*"; exit 77 ;;
    *) echo "FAIL: would skip under CI, which must run every test: $*" >&2; exit 1 ;;
    esac
}
fk_skip_external() {
    echo "SKIP: $* (outside the project's control)"
    exit 77
}
