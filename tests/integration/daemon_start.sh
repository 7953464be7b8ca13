#!/bin/sh
# daemon_start - least privilege at start, and a start that detaches
#
#   1. started as root without user, relaychaind refuses to start and
#      says which keys to set; "user = root" is refused the same way;
#      nothing listens afterwards;
#   2. with run_as_root = yes, started without -f from its directory
#      with a relative -c and with umask 000: the command returns 0 once
#      the daemon listens (no wait needed), the directory it makes for
#      its control socket gets mode 0750 (umask 027), SIGUSR1 and
#      "relaychain reload" work although the daemon left that directory,
#      and the antivirus stage's database watcher (database_check_interval
#      = 1s) still runs after the fork: a signature file added to the
#      directory is loaded without any reload ("relaychain status" shows
#      the new count);
#   3. with delivery = queue, status counts the messages in the queue;
#   4. a configuration error without -f: the command exits 1 at once and
#      prints the file:line.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2
mkdir -p "$T/d/chain.d/antivirus"
cp "$top_srcdir/chain.d/antivirus/eicar-example.ndb" "$T/d/chain.d/antivirus/"
cat >"$T/d/chain.d/20-antivirus.conf" <<'EOF'
stage = antivirus
database_directory = antivirus
database_check_interval = 1s
EOF
cat >"$T/d/base.conf" <<EOF
smtp_listen = 127.0.0.1:$port
next_hop = smtp:[127.0.0.1]:$sink_port
next_hop_tls = none
chain_directory = chain.d
quarantine_directory = $T/quarantine
control_socket = $T/d/run/control
EOF

# 1. Root without user, and user = root.
cp "$T/d/base.conf" "$T/d/nouser.conf"
timeout 20 "$RCD" -f -c "$T/d/nouser.conf" >"$T/nouser.out" 2>&1
rc=$?
check "root without user: exit 1 ($rc)" [ "$rc" -eq 1 ]
check "root without user: the error names user and run_as_root" \
    grep -q "nouser.conf: started as root and 'user' is not set: set user = .* or run_as_root = yes" \
    "$T/nouser.out"
check "root without user: nothing listens" \
    sh -c "[ -z \"\$(ss -Hltn 'sport = :$port')\" ]"
{ cat "$T/d/base.conf"; echo "user = root"; } >"$T/d/root.conf"
timeout 20 "$RCD" -f -c "$T/d/root.conf" >"$T/root.out" 2>&1
rc=$?
check "user = root: exit 1 ($rc)" [ "$rc" -eq 1 ]
check "user = root: the error names the line" \
    grep -q "root.conf:7: user: root is root: name an unprivileged account, or set run_as_root = yes" \
    "$T/root.out"

# 2. run_as_root = yes, detached, relative -c, umask 000.
{ cat "$T/d/base.conf"; echo "run_as_root = yes"; } >"$T/d/r.conf"
sink_start sink "$sink_port"
(cd "$T/d" && umask 000 && exec timeout 60 "$RCD" -c r.conf) >"$T/start.out" 2>&1
rc=$?
check "detached start: exit 0 once ready ($rc)" [ "$rc" -eq 0 ]
check "detached start: the port listens when the command returns" \
    sh -c "[ -n \"\$(ss -Hltn 'sport = :$port')\" ]"
"$RC" status -c "$T/d/r.conf" >"$T/status1.out" 2>&1
pid=$(sed -n 's/^pid: //p' "$T/status1.out")
# Whatever status says, the listener's owner is ended with the test.
lpid=$(ss -Hltnp "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)
[ -n "$lpid" ] && smtpd_track "$lpid"
check "detached start: status answers with the pid" [ -n "$pid" ]
check "detached start: the configuration is named by its full path" \
    grep -q "^configuration: $T/d/r.conf\$" "$T/status1.out"
check "umask 027: the control socket's directory is made 0750" \
    sh -c "[ \"\$(stat -c '%a' '$T/d/run')\" = 750 ]"
check "one signature at start" \
    grep -q '^antivirus: .*, 1 signatures, ' "$T/status1.out"
cp "$top_srcdir/tests/data/antivirus/db/relaychain-test.ndb" \
    "$T/d/chain.d/antivirus/"
i=0
while [ $i -lt 100 ]; do
    "$RC" status -c "$T/d/r.conf" >"$T/status2.out" 2>&1
    grep -q '^antivirus: .*, 3 signatures, ' "$T/status2.out" && break
    sleep 0.1
    i=$((i + 1))
done
check "the database watcher runs after the fork: 3 signatures without a reload" \
    grep -q '^antivirus: .*, 3 signatures, ' "$T/status2.out"
check "no reload was needed for it" \
    grep -q '^last reload: none since start$' "$T/status2.out"
[ -n "$pid" ] && kill -USR1 "$pid"
i=0
while [ $i -lt 50 ]; do
    "$RC" status -c "$T/d/r.conf" >"$T/status3.out" 2>&1
    grep -q '^last reload: .*, ok: ' "$T/status3.out" && break
    sleep 0.1
    i=$((i + 1))
done
check "SIGUSR1 after the daemon left its directory: the reload is ok" \
    grep -q "^last reload: .*, ok: configuration $T/d/r.conf," "$T/status3.out"
"$RC" reload -c "$T/d/r.conf" >"$T/reload.out" 2>&1
check "relaychain reload: exit 0" [ $? -eq 0 ]
timeout 30 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.org >"$T/swaks.out" 2>&1
check "the detached daemon relays" sink_wait sink 1 10
[ -n "$pid" ] && kill -TERM "$pid"
i=0
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "SIGTERM ends the detached daemon" \
    sh -c "[ -n '$pid' ] && ! kill -0 '$pid' 2>/dev/null"
check "its control socket is removed" [ ! -e "$T/d/run/control" ]

# 3. With delivery = queue, status counts the queue: two messages for a
# next hop that is down wait in it.
set -- $(free_ports 2)
qport=$1 down=$2
rcd_conf "$T/q.conf" "$qport" "smtp:[127.0.0.1]:$down" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 60s
maximal_backoff_time = 60s
EOF
rcd_start q "$T/q.conf" "$qport" || finish
for n in 1 2; do
    timeout 30 swaks --server "127.0.0.1:$qport" --helo client.test.example \
        --from alice@example.com --to bob@example.org >"$T/q$n.out" 2>&1
done
"$RC" status -c "$T/q.conf" >"$T/qstatus.out" 2>&1
check "status with delivery = queue: the spool" \
    grep -q "^delivery: queue, $T/spool\$" "$T/qstatus.out"
check "status with delivery = queue: two messages waiting" \
    grep -q '^queue: 2 messages, 0 on hold$' "$T/qstatus.out"
rcd_stop q

# 4. A configuration error, detached: the error comes back at once.
{ cat "$T/d/r.conf"; echo "smtpd_timeout = forever"; } >"$T/d/bad.conf"
timeout 20 "$RCD" -c "$T/d/bad.conf" >"$T/bad.out" 2>&1
rc=$?
check "detached start with a bad key: exit 1 ($rc)" [ "$rc" -eq 1 ]
check "detached start with a bad key: the file:line on stderr" \
    grep -q "bad.conf:8: " "$T/bad.out"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in nouser root start status1 status2 status3 reload qstatus bad; do
        echo "--- $f"
        cat "$T/$f.out"
    done
fi
finish
