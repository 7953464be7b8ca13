#!/bin/sh
# daemon_signals - SIGUSR1 and SIGTERM under load with the shipped chain
#
# The example chain as it ships (chain.d/ of the tree: rewrite,
# antivirus on libclamav with its default database_check_interval, so
# the database watcher thread runs, disclaimer) plus 90-dkim.conf.example
# enabled with a key made by "relaychain dkim keygen", in both front ends:
#
#   1. SMTP: relaychaind relays to smtp-sink while queue_load.py sends
#      over 4 sessions; four SIGUSR1 are sent under the load, each must
#      be logged as a reload, the daemon must live on, and "relaychain
#      status" must show the chain, the antivirus database and the last
#      reload; then SIGTERM under the load: exit 0, "terminating on
#      signal 15" and "all sessions finished" in the log; every message
#      that got 250 is at the sink, footer added by the chain.
#   2. milter: the same through a private Postfix with smtpd_milters;
#      SIGTERM goes to libmilter, the daemon exits 0 and says the milter
#      stopped and that the chains under way finished (later messages on
#      Postfix's open milter connections are tempfailed, 451 4.3.2); in
#      the sanitizer build, nothing the chain holds is left at exit;
#      every message Postfix accepted reaches the sink with the footer,
#      and none was refused for good.
#
# Before the signals were blocked ahead of the chain's threads, the first
# SIGUSR1 killed relaychaind (exit 138, nothing logged) and SIGTERM ended
# it without the clean shutdown (exit 143).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

LOAD="$top_srcdir/tests/integration/queue_load.py"
set -- $(free_ports 4)
port=$1 sink_port=$2 pf_port=$3 sink2_port=$4

# The shipped chain, with the DKIM example enabled as its comment says.
cp -R "$top_srcdir/chain.d" "$T/chain.d"
chmod -R u+w "$T/chain.d"
mkdir -p "$T/chain.d/dkim"
"$RC" dkim keygen -d example.com -s mail2026 -D "$T/chain.d/dkim" \
    >"$T/keygen.out" 2>&1 || fail "dkim keygen: $(cat "$T/keygen.out")"
cp "$T/chain.d/90-dkim.conf.example" "$T/chain.d/90-dkim.conf"
check "the example chain loads with the DKIM stage" \
    sh -c "printf 'chain_directory = %s\n' '$T/chain.d' >'$T/check.conf' &&
        '$RC' check -c '$T/check.conf' >'$T/check.out' 2>&1"
grep -q 'database_check_interval = 10m' "$T/check.out" ||
    fail "the shipped antivirus stage no longer watches its database (10m)"

# reloads NAME PID N - N times SIGUSR1, each waited for in NAME's log
reloads() {
    local k n i
    k=1
    while [ $k -le "$3" ]; do
        kill -USR1 "$2" 2>/dev/null || break
        i=0
        n=$(grep -c 'reload: configuration' "$T/$1.log")
        while [ "$n" -lt $k ] && [ $i -lt 150 ] && kill -0 "$2" 2>/dev/null; do
            sleep 0.1
            n=$(grep -c 'reload: configuration' "$T/$1.log")
            i=$((i + 1))
        done
        k=$((k + 1))
    done
}

# stop PID - SIGTERM, wait; the exit status in rc
stop() {
    kill -TERM "$1" 2>/dev/null
    wait "$1"
    rc=$?
}

# delivered SINK ACCEPTED - every id acknowledged to the client is at
# the sink, whole, and went through the chain (the footer is there)
delivered() {
    "$PY" - "$T/$1" "$2" <<'EOF'
import os, re, sys
sink, acc = sys.argv[1], sys.argv[2]
want = set(l.strip() for l in open(acc) if l.strip())
got, bad = {}, []
for name in os.listdir(sink):
    text = open(os.path.join(sink, name), "rb").read()
    m = re.search(rb"^X-Test-Id: (\S+)", text, re.M)
    if m:
        mid = m.group(1).decode()
        got[mid] = got.get(mid, 0) + 1
        if (b"END %s LINES" % mid.encode()) not in text or \
                b"meant only for" not in text:
            bad.append(mid)
lost = sorted(want - set(got))
print("accepted=%d delivered=%d lost=%d unfiltered=%d" % (
    len(want), len(got), len(lost), len(bad)))
for mid in lost[:10]:
    print("lost: " + mid)
sys.exit(1 if lost or bad or not want else 0)
EOF
}

# ---------------------------------------------------------------- SMTP
sink_start sink "$sink_port"
rcd_conf "$T/smtp.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/chain.d
EOF
rcd_start smtp "$T/smtp.conf" "$port" || finish
pid=$RCD_PID
timeout 300 "$PY" "$LOAD" --port "$port" --prefix s --count 3000 \
    --sessions 4 --size 3000 --accepted "$T/s.acc" \
    >"$T/s.load" 2>&1 &
load=$!
smtpd_track "$load"
sleep 0.5
reloads smtp "$pid" 4
check "SMTP: 4 reloads under load logged ($(grep -c 'reload: configuration' "$T/smtp.log"))" \
    [ "$(grep -c 'reload: configuration' "$T/smtp.log")" -eq 4 ]
check "SMTP: relaychaind lives through SIGUSR1" kill -0 "$pid"
"$RC" status -c "$T/smtp.conf" >"$T/status.out" 2>&1
check "status: running, exit 0" grep -q '^status: running$' "$T/status.out"
check "status: the pid" grep -q "^pid: $pid\$" "$T/status.out"
check "status: the chain in order" \
    grep -q '^chain: 4 stages: rewrite antivirus disclaimer dkim$' "$T/status.out"
check "status: the antivirus database" \
    grep -q '^antivirus: database .* 1 signatures, .*/chain.d/antivirus$' "$T/status.out"
check "status: the last reload" grep -q '^last reload: .*, ok: ' "$T/status.out"
check "status: the listener" grep -q "^smtp_listen: 127.0.0.1:$port " "$T/status.out"
# A message the DKIM stage signs: the whole chain runs after the reloads.
timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.org \
    --header 'Subject: signed after reloads' >"$T/signed.out" 2>&1
check "SMTP: the chain still signs after the reloads" \
    wait_grep 'dkim: continue, signed, d=example.com, s=mail2026' "$T/smtp.log" 10
check "SMTP: the load is still running at SIGTERM" kill -0 "$load"
stop "$pid"
check "SMTP: exit 0 on SIGTERM under load (got $rc)" [ "$rc" -eq 0 ]
check "SMTP: the log says why it ended" grep -q 'terminating on signal 15' "$T/smtp.log"
check "SMTP: the log says the sessions finished" \
    grep -q -e 'all sessions finished' -e 'session(s) still open' "$T/smtp.log"
rcd_clean_log smtp
wait "$load"
sleep 1
delivered sink "$T/s.acc" >"$T/s.check" 2>&1
rc=$?
check "SMTP: every acknowledged message was delivered through the chain ($(head -n 1 "$T/s.check"))" \
    [ "$rc" -eq 0 ]

# -------------------------------------------------------------- milter
sock=$T/milter/milter.sock
mkdir -p "$T/milter"
sink_start sink2 "$sink2_port"
cat >"$T/milter.conf" <<EOF
milter_listen = unix:$sock
milter_socket_group = postfix
chain_directory = $T/chain.d
quarantine_directory = $T/quarantine
EOF
rcd_test_conf "$T/milter.conf"
"$RCD" -f -c "$T/milter.conf" 2>>"$T/milter.log" &
mpid=$!
smtpd_track "$mpid"
i=0
while [ ! -S "$sock" ] && [ $i -lt 100 ] && kill -0 "$mpid" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
check "milter: relaychaind listens on $sock" [ -S "$sock" ]
pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink2_port" \
    "smtpd_milters = unix:$sock" "milter_protocol = 6" \
    "milter_default_action = tempfail"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
timeout 300 "$PY" "$LOAD" --port "$pf_port" --prefix m --count 3000 \
    --sessions 4 --size 3000 --accepted "$T/m.acc" --refusals "$T/m.ref" \
    >"$T/m.load" 2>&1 &
load=$!
smtpd_track "$load"
sleep 0.5
reloads milter "$mpid" 4
check "milter: 4 reloads under load logged ($(grep -c 'reload: configuration' "$T/milter.log"))" \
    [ "$(grep -c 'reload: configuration' "$T/milter.log")" -eq 4 ]
check "milter: relaychaind lives through SIGUSR1" kill -0 "$mpid"
check "milter: the load is still running at SIGTERM" kill -0 "$load"
stop "$mpid"
check "milter: exit 0 on SIGTERM under load (got $rc)" [ "$rc" -eq 0 ]
check "milter: the log says why it ended" \
    grep -q 'terminating: the milter stopped' "$T/milter.log"
check "milter: the chains under way at the stop finished" \
    grep -q 'all milter transactions finished' "$T/milter.log"
rcd_clean_log milter
wait "$load"
# Postfix delivers what it accepted; give its queue a bounded time.
i=0
until delivered sink2 "$T/m.acc" >"$T/m.check" 2>&1 || [ $i -ge 60 ]; do
    sleep 1
    i=$((i + 1))
done
check "milter: every message Postfix accepted was delivered through the chain ($(head -n 1 "$T/m.check"))" \
    delivered sink2 "$T/m.acc"
check "milter: what Postfix did not accept was tempfailed, never refused for good" \
    sh -c "! grep -q '^m-[0-9]* 5' '$T/m.ref'"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in smtp milter; do
        grep -v -e 'result=clean' -e 'from=<' -e 'to=<' -e 'connect from' \
            -e 'disclaimer: continue' -e 'rewrite: continue' \
            -e 'dkim: continue' "$T/$f.log" | tail -n 30
    done
    cat "$T/s.load" "$T/m.load" "$T/s.check" "$T/m.check" "$T/status.out"
fi
finish
