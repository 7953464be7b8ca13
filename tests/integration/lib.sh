# lib.sh - shared by the integration tests (sourced, not run)
#
# Gives: $RC (the relaychain binary), $T (a fresh work directory removed
# on exit), fail "why" (records a failure), and finish (exit status).
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
RC="$top_builddir/relaychain"
if [ ! -x "$RC" ]; then
    echo "$0: $RC is missing; build first" >&2
    exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/rc-test.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
failures=0
checks=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# check DESCRIPTION COMMAND...: run the command, count a failure if it fails
check() {
    desc=$1
    shift
    checks=$((checks + 1))
    if ! "$@"; then
        fail "$desc"
    fi
}

finish() {
    echo "$0: $checks checks, $failures failed"
    [ "$failures" -eq 0 ]
    exit $?
}
