#!/bin/sh
# smtpd_reload - SIGUSR1 and SIGTERM while mail is flowing
#
# smtp-source sends 200 messages over 4 parallel sessions through
# relaychaind to smtp-sink while the configuration file is replaced and
# SIGUSR1 sent every few milliseconds: no transaction may fail (smtp-source stops at
# the first unexpected reply) and the sink must get exactly 200 messages.
# Then: a reload is really applied (the greeting changes); a broken
# configuration (an unknown key) is logged and the running one keeps
# serving; SIGTERM in the middle of a DATA lets that message finish and be
# delivered, refuses new connections, and relaychaind exits 0 with its
# log line.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2
conf=$T/relaychain.conf

sink_start sink "$sink_port"
# write_conf NAME [EXTRA] - the configuration, replaced atomically
write_conf() {
    printf '%s\n' "myhostname = $1.test.example" ${2:+"$2"} |
        rcd_conf "$T/next.conf" "$port" "smtp:[127.0.0.1]:$sink_port"
    mv -f "$T/next.conf" "$conf"
}
write_conf first
rcd_start rcd "$conf" "$port" || finish
pid=$(rcd_pid rcd)

# --- reloads under load: the two configurations take turns
write_conf even && mv "$conf" "$T/even.conf"
write_conf odd && mv "$conf" "$T/odd.conf"
cp "$T/even.conf" "$conf"
# A small loop in Python sends the signals: a shell loop is too slow to
# land more than a few inside a run that takes a fraction of a second.
timeout 120 "$PY" - "$pid" "$conf" "$T/even.conf" "$T/odd.conf" \
    smtp-source -s 4 -m 200 -l 10000 -M client.test.example \
    -f sender@client.example -t rcpt@dest.example -S 'under reload' \
    "127.0.0.1:$port" >"$T/source.out" 2>&1 <<'EOF'
import os, shutil, signal, subprocess, sys, time
pid, conf, even, odd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
src = subprocess.Popen(sys.argv[5:])
n = 0
while src.poll() is None and n < 5000:
    shutil.copyfile(odd if n % 2 == 0 else even, conf + ".tmp")
    os.rename(conf + ".tmp", conf)
    os.kill(pid, signal.SIGUSR1)
    n += 1
    time.sleep(0.002)
rc = src.wait()
print("signals: %d" % n)
sys.exit(rc)
EOF
rc=$?
n=$(sed -n 's/^signals: //p' "$T/source.out")
check "smtp-source: 200 messages, no failed transaction (exit $rc)" [ "$rc" -eq 0 ]
check "smtp-source printed no error" sh -c "! grep -qi 'error\|fatal\|warning\|Traceback' '$T/source.out'"
sink_wait sink 200 20
got=$(sink_count sink)
check "the sink got exactly the 200 messages ($got)" [ "$got" -eq 200 ]
reloads=$(grep -c 'reload: configuration' "$T/rcd.log")
echo "$reloads reloads while smtp-source ran ($n SIGUSR1 sent)"
during=$(awk '/status=sent/ { if (!first) first = NR; last = NR }
              /reload: configuration/ { r[NR] = 1 }
              END { for (i in r) if (i + 0 > first && i + 0 < last) k++; print k + 0 }' "$T/rcd.log")
check "at least 5 reloads came between the first and the last delivery ($during)" \
    [ "$during" -ge 5 ]
check "relaychaind logged 200 deliveries" \
    [ "$(grep -c 'status=sent' "$T/rcd.log")" -eq 200 ]
check "no reload failed" sh -c "! grep -q 'reload failed' '$T/rcd.log'"

# --- a reload is applied
write_conf reloaded
kill -USR1 "$pid"
wait_grep "reload: configuration" "$T/rcd.log" 5
n=$(grep -c 'reload: configuration' "$T/rcd.log")
i=0
while [ "$n" -le "$reloads" ] && [ $i -lt 50 ]; do
    sleep 0.1
    n=$(grep -c 'reload: configuration' "$T/rcd.log")
    i=$((i + 1))
done
printf '%s\n' expect 'send QUIT' expect | chat "$port" >"$T/greet1.out"
check "after a reload new sessions run on the new configuration" \
    grep -q '^220 reloaded.test.example ' "$T/greet1.out"

# --- a broken configuration is refused, the old one keeps working
write_conf broken "no_such_key = 1"
kill -USR1 "$pid"
check "a broken configuration is logged" \
    wait_grep "reload failed, keeping the running configuration: .*no_such_key" "$T/rcd.log" 5
printf '%s\n' expect 'send QUIT' expect | chat "$port" >"$T/greet2.out"
check "after a failed reload the running configuration stays" \
    grep -q '^220 reloaded.test.example ' "$T/greet2.out"
timeout 30 swaks --server "127.0.0.1:$port" --timeout 10 --helo client.test.example \
    --from a@client.example --to after-broken@dest.example >"$T/swaks.out" 2>&1
rc=$?
check "mail still flows after the failed reload (swaks exit $rc)" [ "$rc" -eq 0 ]
check "and reaches the sink" sink_wait sink 201

# --- SIGTERM in the middle of DATA
write_conf first
chat "$port" >"$T/term.out" <<EOF
expect
send EHLO client.test.example
expect
send MAIL FROM:<late@client.example>
expect
send RCPT TO:<in-flight@dest.example>
expect
send DATA
expect
raw Subject: in flight\r\n\r\nfirst half\r\n
exec kill -TERM $pid
sleep 0.5
exec timeout 2 $PY -c 'import socket; socket.create_connection(("127.0.0.1", $port), timeout=1); print("connected")' 2>/dev/null || echo refused
raw second half\r\n.\r\n
expect
send QUIT
expect
eof
EOF
wait "$pid"
rc=$?
check "a message in flight at SIGTERM is accepted" grep -q '^250 2.0.0' "$T/term.out"
check "new connections are refused after SIGTERM" grep -q '^#EXEC refused$' "$T/term.out"
check "the message in flight reaches the sink" sink_wait sink 202
check "relaychaind exits 0 after SIGTERM (got $rc)" [ "$rc" -eq 0 ]
check "relaychaind logs the signal and a clean end" \
    sh -c "grep -q 'terminating on signal 15' '$T/rcd.log' && grep -q 'all sessions finished' '$T/rcd.log'"
rcd_clean_log rcd

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- smtp-source"; tail -n 20 "$T/source.out"
    echo "--- SIGTERM session"; cat "$T/term.out"
    echo "--- relaychaind log"; grep -v 'connect from\|client=\|from=<\|status=sent\|reload: conf' "$T/rcd.log" | tail -n 40
fi
finish
