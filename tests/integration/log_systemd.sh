#!/bin/sh
# log_systemd - "relaychaind -f" as systemd runs it logs through syslog,
# facility mail, one program name; on a terminal its lines carry time
# stamps.
#
# systemd sets JOURNAL_STREAM to the device and inode of the journal
# stream it gives the service as stderr; here stderr is a file and
# JOURNAL_STREAM names that file. syslog(3) writes to /dev/log, which this
# machine may not have: relaychaind runs in a private mount namespace
# whose /dev is a copy (symbolic links to the real nodes) plus a "log"
# socket this test reads, so nothing outside the test changes. Needs root
# and unshare(1), like the other SMTP tests; skipped (77) without.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

if ! command -v unshare >/dev/null || ! unshare -m true 2>/dev/null; then
    echo "SKIP: no mount namespaces (unshare -m): /dev/log cannot be faked"
    exit 77
fi
command -v script >/dev/null || { fail "script(1) is missing (util-linux)"; finish; }

set -- $(free_ports 2)
port=$1
sink_port=$2
sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" </dev/null

# The syslog daemon: one datagram, one line.
"$PY" - "$T/log.sock" "$T/syslog.txt" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536).rstrip(b"\0\n") + b"\n")
EOF
smtpd_track $!
i=0
while [ ! -S "$T/log.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
check "the fake syslog listens" test -S "$T/log.sock"

# In the namespace: /dev becomes links to the real nodes, and /dev/log
# the test's socket; then exec, so the pid is relaychaind's.
cat >"$T/ns.sh" <<'EOF'
T=$1
shift
mkdir -p "$T/realdev"
mount --rbind /dev "$T/realdev" && mount -t tmpfs -o mode=755 tmpfs /dev ||
    exit 90
for f in "$T"/realdev/*; do
    ln -s "$f" "/dev/${f##*/}"
done
ln -sf "$T/log.sock" /dev/log
exec "$@"
EOF

send() {
    timeout 30 swaks --server "127.0.0.1:$port" --from "$1" \
        --to bob@example.net --header "Subject: $1" --body "log test" \
        >"$T/swaks-$1.out" 2>&1
}

# 1. Under systemd: stderr is the journal's stream.
: >"$T/journal.err"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.err") \
    unshare -m --propagation private sh "$T/ns.sh" "$T" \
    "$RCD" -f -c "$T/rc.conf" 2>>"$T/journal.err" &
pid=$!
smtpd_track "$pid"
wait_listen "$port" || fail "relaychaind does not listen: $(cat "$T/journal.err")"
send journal@example.com
check "the message goes through" sink_wait sink 1 20
wait_grep 'from=<journal@example.com>' "$T/syslog.txt" 10
kill -TERM "$pid"
wait "$pid"
rc=$?
check "relaychaind exits 0 on SIGTERM (got $rc)" [ "$rc" -eq 0 ]
wait_grep 'terminating on signal 15' "$T/syslog.txt" 5
# <22> is mail.info: facility mail (2) * 8 + info (6).
stamp='[A-Z][a-z][a-z] [ 123][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9]'
check "syslog gets the start line as mail.info from relaychain[$pid]" \
    grep -Eq "^<22>$stamp relaychain\\[$pid\\]: daemon started -- version" \
    "$T/syslog.txt"
check "syslog gets the message's from= line as mail.info" \
    grep -Eq "^<22>$stamp relaychain\\[$pid\\]: [0-9A-F]+: from=<journal@example.com>, size=[0-9]+, nrcpt=1" \
    "$T/syslog.txt"
check "syslog gets the delivery line" \
    grep -Eq "^<22>$stamp relaychain\\[$pid\\]: [0-9A-F]+: to=<bob@example.net>, .*status=sent" \
    "$T/syslog.txt"
check "every line has one program name (relaychain)" \
    sh -c "! grep -v 'relaychain\\[$pid\\]: ' '$T/syslog.txt' | grep -q ."
check "nothing about the message went to the journal's stream as well" \
    sh -c "! grep -q 'journal@example.com' '$T/journal.err'"
check "no sanitizer report" \
    sh -c "! grep -q -e 'Sanitizer' -e 'runtime error:' '$T/journal.err'"

# 1b. relaychain check as the unit's ExecStartPre, on the example chain:
# the unit files its stderr as errors, so the stages' informational lines
# go to syslog as mail.info instead; a configuration error stays on
# stderr.
sed "s|^chain_directory = .*|chain_directory = $top_srcdir/chain.d|" \
    "$T/rc.conf" >"$T/examples.conf"
: >"$T/check.err"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/check.err") \
    unshare -m --propagation private sh "$T/ns.sh" "$T" \
    "$RC" check -c "$T/examples.conf" >/dev/null 2>>"$T/check.err"
rc=$?
check "relaychain check under the journal exits 0 (got $rc: $(cat "$T/check.err"))" \
    [ "$rc" -eq 0 ]
wait_grep 'antivirus: signature files' "$T/syslog.txt" 5
check "check's stage lines go to syslog as mail.info" \
    grep -Eq "^<22>$stamp relaychain\\[[0-9]+\\]: antivirus: signature files in .* can be read" \
    "$T/syslog.txt"
check "and not to the journal's stream, as errors" \
    sh -c "! grep -q 'antivirus: signature files' '$T/check.err'"
printf 'header_limit = many\n' >"$T/bad.conf"
: >"$T/checkbad.err"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/checkbad.err") \
    unshare -m --propagation private sh "$T/ns.sh" "$T" \
    "$RC" check -c "$T/bad.conf" >/dev/null 2>>"$T/checkbad.err"
check "a configuration error stays on stderr with file:line (got: $(cat "$T/checkbad.err"))" \
    grep -qF "$T/bad.conf:1:" "$T/checkbad.err"

# 2. JOURNAL_STREAM inherited, but stderr redirected elsewhere (an admin
# running it by hand from a service's shell): stderr, as it was.
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.err") \
    "$RCD" -f -c "$T/rc.conf" 2>>"$T/other.err" &
pid=$!
smtpd_track "$pid"
wait_listen "$port" || fail "relaychaind does not listen: $(cat "$T/other.err")"
send other@example.com
wait_grep 'from=<other@example.com>' "$T/other.err" 10
kill -TERM "$pid"
wait "$pid"
check "another stream: the lines go to stderr, without a time stamp" \
    grep -Eq "^relaychain\\[$pid\\]: [0-9A-F]+: from=<other@example.com>" \
    "$T/other.err"

# 3. On a terminal: each line starts with a time stamp and the host name.
: >"$T/tty.out"
script -qfec "sh -c 'echo \$\$ >\"$T/tty.pid\"; exec \"$RCD\" -f -c \"$T/rc.conf\"'" \
    "$T/tty.out" </dev/null >/dev/null 2>&1 &
smtpd_track $!
wait_listen "$port" || fail "relaychaind on a terminal does not listen: $(cat "$T/tty.out")"
send tty@example.com
wait_grep 'from=<tty@example.com>' "$T/tty.out" 10
kill -TERM "$(cat "$T/tty.pid")"
wait_grep 'terminating on signal 15' "$T/tty.out" 5
check "on a terminal the from= line has a time stamp and the host" \
    grep -Eq "^$stamp [^ ]+ relaychain\\[[0-9]+\\]: [0-9A-F]+: from=<tty@example.com>" \
    "$T/tty.out"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in syslog.txt journal.err other.err tty.out; do
        echo "--- $f"
        cat "$T/$f"
    done
fi
finish
