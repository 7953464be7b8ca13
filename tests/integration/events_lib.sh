#!/bin/sh
# events_lib - what the delivery events' tests share, sourced after
# smtpd_lib.sh: the SQLite store at $T/events.db read with sqlite3, and
# "relaychain check" refusing a setting with its file and line.
#
#   q SQL                   the store's answer to SQL
#   wait_q SQL WANT SECS    until the answer is WANT (bounded); 1 if not
#   refused CONF KEY WHY    "relaychain check -c CONF" fails naming the
#                           line of CONF that sets KEY, and WHY
# shellcheck disable=SC3043 # "local": dash and bash have it

RC="$top_builddir/relaychain"
command -v sqlite3 >/dev/null 2>&1 || {
    echo "$0: sqlite3 is missing (scripts/setup installs it)" >&2
    exit 1
}

q() { sqlite3 "$T/events.db" "$1" 2>/dev/null; }

wait_q() {
    local i=0
    while [ $i -lt $(($3 * 10)) ]; do
        [ "$(q "$1")" = "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "wait_q: got '$(q "$1")', want '$2': $1" >&2
    return 1
}

refused() {
    local line out
    line=$(grep -n "^$2 *=" "$1" | tail -n 1 | cut -d: -f1)
    out=$("$RC" check -c "$1" 2>&1)
    if ! printf '%s\n' "$out" | grep -q "$1:$line: $2: .*$3"; then
        echo "refused: got $out" >&2
        return 1
    fi
}
