#!/bin/sh
# unit_user - relaychaind started the way docs/relaychaind.service starts
# it: as an unprivileged user from the first instruction, with only
# CAP_NET_BIND_SERVICE (AmbientCapabilities, CapabilityBoundingSet) and
# no_new_privs. Both set-ups of the README in one daemon:
#
#   content filter / smarthost: it binds a port below 1024 thanks to the
#       ambient capability alone (and cannot without it), and relays;
#   milter behind a chrooted Postfix: the socket's directory in Postfix's
#       spool is the user's, group postfix, mode 2750, and
#       "milter_socket_group = postfix" works although the user is not in
#       group postfix; user postfix may connect, another user may not.
#
# setpriv(1) stands in for systemd; the user is nobody, which like the
# unit's relaychain belongs to no group of Postfix's.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

command -v setpriv >/dev/null || { fail "setpriv(1) is missing (util-linux)"; finish; }
getent group postfix >/dev/null || { fail "no group postfix (scripts/setup installs Postfix)"; finish; }
user=nobody
group=$(id -gn "$user")

set -- $(free_ports 1)
sink_port=$1
# A free port below 1024, as 25 and 587 are.
low=$("$PY" - <<'EOF'
import random, socket
ports = list(range(600, 1000))
random.shuffle(ports)
for p in ports:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
EOF
)
[ -n "$low" ] || { fail "no free port below 1024"; finish; }
sink_start sink "$sink_port"

# Postfix's spool as the unit and the package see it.
mkdir -p "$T/postfix"
install -d -o "$user" -g postfix -m 2750 "$T/postfix/relaychain"
sock=$T/postfix/relaychain/milter.sock
mkdir -p "$T/chain.d"
install -d -o "$user" -m 0700 "$T/quarantine"
# The unit's RuntimeDirectory=relaychain: /run/relaychain, the user's.
install -d -o "$user" -m 0750 "$T/run"
rcd_conf "$T/rc.conf" "$low" "smtp:[127.0.0.1]:$sink_port" <<EOF
control_socket = $T/run/control
milter_listen = unix:$sock
milter_socket_group = postfix
milter_socket_mode = 0660
EOF
chmod 644 "$T/rc.conf"

# as_unit ARGS... - run as the unit runs its ExecStart
as_unit() {
    ${exec_unit:+exec} setpriv --reuid="$user" --regid="$group" --init-groups \
        --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
        --bounding-set=-all,+net_bind_service --no-new-privs "$@"
}

# Without the ambient capability the low port is refused: that is what
# AmbientCapabilities= in the unit is for.
setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs \
    "$RCD" -f -c "$T/rc.conf" >"$T/nocap.out" 2>&1 &
nocap=$!
smtpd_track "$nocap"
i=0
while kill -0 "$nocap" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
wait "$nocap"
rc=$?
check "without CAP_NET_BIND_SERVICE port $low is refused (exit $rc: $(cat "$T/nocap.out"))" \
    sh -c "[ $rc -ne 0 ] && grep -q 'ermission denied' '$T/nocap.out'"
rm -f "$sock"

# ExecStartPre: relaychain check, as the user.
as_unit "$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1
check "relaychain check passes as $user ($(tail -n 2 "$T/check.out"))" [ $? -eq 0 ]

# (exec: $! is then relaychaind, not a subshell running the function)
(exec_unit=1; as_unit "$RCD" -f -c "$T/rc.conf") 2>>"$T/rcd.log" &
pid=$!
smtpd_track "$pid"
wait_listen "$low" || fail "relaychaind does not listen on $low: $(cat "$T/rcd.log")"
i=0
while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
check "relaychaind runs as $user (got $(ps -o user= -p "$pid"))" \
    [ "$(ps -o user= -p "$pid" | tr -d ' ')" = "$user" ]
check "it has no capability but CAP_NET_BIND_SERVICE (CapEff $(sed -n 's/^CapEff:\t//p' /proc/$pid/status))" \
    [ "$(sed -n 's/^CapEff:\t//p' "/proc/$pid/status")" = 0000000000000400 ]

# The content filter: a message through port $low reaches the next hop.
timeout 30 swaks --server "127.0.0.1:$low" --from alice@example.com \
    --to bob@example.net --header "Subject: unit user" --body "unit" \
    >"$T/swaks.out" 2>&1
check "a message through port $low is relayed" sink_wait sink 1 20

# The milter socket.
check "the milter socket is $user's, group postfix, mode 0660 (got $(stat -c '%U %G %a' "$sock"))" \
    [ "$(stat -c '%U %G %a' "$sock")" = "$user postfix 660" ]
connect_as() {
    setpriv --reuid="$1" --regid="$(id -gn "$1")" --clear-groups \
        "$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])' "$sock" 2>"$T/connect-$1.err"
}
check "user postfix (only its own group, as Postfix's smtpd runs) may connect ($(cat "$T/connect-postfix.err" 2>/dev/null))" \
    connect_as postfix
connect_as daemon
check "another user (daemon) may not (got: $(tail -n 1 "$T/connect-daemon.err"))" \
    grep -q PermissionError "$T/connect-daemon.err"

# libmilter takes SIGTERM; the daemon then stops its SMTP side, exit 0.
kill -TERM "$pid"
wait "$pid"
rc=$?
check "relaychaind exits 0 on SIGTERM (got $rc)" [ "$rc" -eq 0 ]
rcd_clean_log rcd
if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$T/rcd.log" "$T/swaks.out"
fi
finish
