#!/bin/sh
# milter_socket_perms - the milter socket gets its mode and group without
# a path race
#
# The socket usually lives in a directory the MTA's user can write
# (inside Postfix's queue directory). relaychaind starts as root; if it
# changed the socket's mode and group by name after bind(), that user
# could swap the socket for a link to any file between the two steps and
# have root chmod and chown it. Here the directory belongs to nobody, and
# relaychaind runs under strace: the socket must come out with exactly
# milter_socket_mode (0620, an unusual one) and milter_socket_group
# (nogroup), and no chmod() or chown() may name its path: the mode comes
# from the umask at bind(), the group through a descriptor of the socket
# itself (fchownat with AT_EMPTY_PATH).
. "$top_srcdir/tests/integration/milter_lib.sh"

if ! command -v strace >/dev/null 2>&1; then
    echo "$0: strace is missing (scripts/setup installs it)" >&2
    exit 1
fi
mkdir -p "$T/mta"
chown nobody:nogroup "$T/mta"
sock="$T/mta/relaychain.sock"
mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
milter_socket_mode = 0620
milter_socket_group = nogroup
EOF

# LeakSanitizer can not work under ptrace: off for this run only.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    strace -f -o "$T/strace.log" \
        -e trace=chmod,fchmod,fchmodat,chown,fchown,lchown,fchownat,umask \
        "$RCD" -f -c "$T/rc.conf" 2>>"$T/rcd.log" &
tracer=$!
smtpd_track "$tracer"
i=0
while ! mtd_ready "unix:$sock" && [ $i -lt 200 ]; do
    sleep 0.05
    i=$((i + 1))
done
check "relaychaind listens on $sock" mtd_ready "unix:$sock"
# The group is set just after listen(): give it a moment.
i=0
while [ "$(stat -c '%a %G' "$sock")" != '620 nogroup' ] && [ $i -lt 100 ]; do
    sleep 0.05
    i=$((i + 1))
done
check "the socket is mode 0620, group nogroup" \
    sh -c "[ \"\$(stat -c '%a %G' '$sock')\" = '620 nogroup' ]"
daemon=$(ps -o pid= --ppid "$tracer" | tr -d ' ' | head -n 1)
[ -n "$daemon" ] && kill -TERM "$daemon"
i=0
while kill -0 "$tracer" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "no chmod or chown names the socket's path" \
    sh -c "! grep -E '(chmod|chown)[a-z]*\\((AT_FDCWD, )?\"$sock\"' '$T/strace.log'"
check "the group is set through the socket's own descriptor" \
    grep -qE 'fchownat\([0-9]+, "", -1, [0-9]+, AT_EMPTY_PATH\) = 0' "$T/strace.log"
check "the umask is put back after bind()" \
    sh -c "[ \$(grep -c 'umask(' '$T/strace.log') -ge 2 ]"
rcd_clean_log rcd
if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$T/strace.log" "$T/rcd.log"
fi
finish
