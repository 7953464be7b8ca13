# milter_lib.sh - shared by the milter front-end tests (sourced, not run)
#
# Sources smtpd_lib.sh (free_ports, sink_*, pfx_*, check, fail, finish,
# $T, every process ended at exit) and adds:
#
#   $RCDT                   tests/relaychaind-test: relaychaind with the
#                           testedit stage (tests/milter/testedit.c)
#   mtd_conf FILE SPEC      a milter-only relaychain.conf listening on SPEC
#                           with $T/chain.d; lines on stdin are added
#   mtd_start NAME CONF SPEC  start "relaychaind-test -f -c CONF", log in
#                           $T/NAME.log; wait (bounded) until SPEC (a
#                           unix: path or an inet: port) accepts
#   mtd_stop NAME           SIGTERM: libmilter must stop, the daemon exit 0
#                           and log why, no sanitizer report in the log
#   lua NAME                run miltertest on $T/NAME.lua (script on
#                           stdin), output in $T/NAME.out; returns its
#                           exit status
#   doc_block FILE HEADING  the indented block under "## HEADING" of a
#                           Markdown document, unindented
. "$top_srcdir/tests/integration/smtpd_lib.sh"

RCDT="$top_builddir/tests/relaychaind-test"
for prog in "$RCDT" miltertest; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        echo "$0: $prog is missing (build; scripts/setup installs miltertest)" >&2
        exit 1
    fi
done

mtd_conf() {
    mkdir -p "$T/chain.d"
    {
        echo "milter_listen = $2"
        echo "chain_directory = $T/chain.d"
        echo "quarantine_directory = $T/quarantine"
        echo "syslog_name = relaychaind"
        cat
    } >"$1"
    rcd_test_conf "$1"
}

# mtd_ready SPEC - 0 when something accepts on SPEC
mtd_ready() {
    case "$1" in
    unix:* | local:*)
        [ -S "${1#*:}" ] && [ -n "$(ss -Hlx "src ${1#*:}" 2>/dev/null)" ] ;;
    inet*)
        p=${1#*:}
        p=${p%%@*}
        [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] ;;
    esac
}

mtd_start() {
    local i pid
    rcd_test_conf "$2"
    "$RCDT" -f -c "$2" 2>>"$T/$1.log" &
    pid=$!
    smtpd_track "$pid"
    echo "$pid" >"$T/$1.pid"
    i=0
    while [ $i -lt 100 ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail "relaychaind $1 died at start: $(tail -n 3 "$T/$1.log")"
            return 1
        fi
        mtd_ready "$3" && return 0
        sleep 0.05
        i=$((i + 1))
    done
    fail "relaychaind $1 does not listen on $3"
    return 1
}

mtd_stop() {
    local pid rc
    pid=$(cat "$T/$1.pid")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    check "relaychaind $1 exits 0 on SIGTERM (got $rc)" [ "$rc" -eq 0 ]
    check "relaychaind $1 logs that the milter stopped" \
        grep -q "terminating: the milter stopped" "$T/$1.log"
    check "relaychaind $1: no sanitizer report in its log" \
        sh -c "! grep -q -e 'Sanitizer' -e 'runtime error:' '$T/$1.log'"
}

lua() {
    cat >"$T/$1.lua"
    timeout 120 miltertest -s "$T/$1.lua" >"$T/$1.out" 2>&1
}

doc_block() {
    awk -v h="## $2" '
        $0 == h { on = 1; next }
        on && /^## / { exit }
        on && /^    / { print substr($0, 5); seen = 1; next }
        on && /^$/ { if (seen) print; next }
        on && seen { exit }
    ' "$1"
}
