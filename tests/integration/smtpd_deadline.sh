#!/bin/sh
# smtpd_deadline - a client that trickles one octet a second
#
# Two relaychaind instances relay to smtp-sink, both with smtpd_timeout =
# 2s and STARTTLS:
#
#   rec    smtpd_per_record_deadline left at its default (yes)
#   call   smtpd_per_record_deadline = no: the timeout bounds each read
#
# A scripted client (smtpchat.py "drip") sends a command line, a line of
# message content and, after STARTTLS, a command line inside TLS, one
# octet per second. rec must answer each with 421 4.4.2 and hang up about
# 2 s after it started waiting for that line, logging the usual "timeout
# after" line, and must deliver nothing of the cut message; call must
# wait the trickle out and serve the command or deliver the message,
# since no single read waits 2 s. Clients that are not slow must not
# notice rec: a whole transaction with a pause of 1.5 s between commands
# and a 2 MB message, a message whose lines come 0.8 s apart (the DATA
# phase as a whole has no limit), and a 320 KiB line sent in 64 KiB
# pieces 0.8 s apart, which is refused for its length (550 5.6.0) and not
# cut off, because each 64 KiB of a line is a record of its own.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 3)
rec=$1 call=$2 sink_port=$3

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
sink_start sink "$sink_port"
rcd_conf "$T/rec.conf" "$rec" "smtp:[127.0.0.1]:$sink_port" <<EOF
smtpd_timeout = 2s
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
EOF
rcd_conf "$T/call.conf" "$call" "smtp:[127.0.0.1]:$sink_port" <<EOF
smtpd_timeout = 2s
smtpd_per_record_deadline = no
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
EOF
rcd_start rec "$T/rec.conf" "$rec" || finish
rcd_start call "$T/call.conf" "$call" || finish

# codes FILE - the final line of each reply, by code, on one line
codes() {
    grep -E '^[0-9]{3}( |$)' "$1" | cut -c1-3 | tr '\n' ' ' | sed 's/ $//'
}

# gap FILE N - seconds between the (N-1)th and the Nth "#ELAPSED"
gap() {
    sed -n 's/^#ELAPSED //p' "$1" |
        awk -v n="$2" 'NR == n - 1 { a = $1 } NR == n { printf "%.3f", $1 - a }'
}

# between X LO HI - LO <= X <= HI
between() {
    awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x != "" && x >= lo && x <= hi) }'
}

# The three trickles. In each output the "#ELAPSED" numbered in the
# loop below is when the reply to the trickled line came, the one before
# it when the line began (the reply before it had arrived).
cat >"$T/cmd.script" <<'EOF'
expect
send EHLO drip.test.example
expect
drip 1 NOOP\r\n
expect
send QUIT
expect
eof
EOF
cat >"$T/data.script" <<'EOF'
expect
send EHLO drip.test.example
expect
send MAIL FROM:<drip@client.example>
expect
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
raw Subject: trickled content\r\n\r\n
drip 1 abcd\r\n
raw .\r\n
expect
send QUIT
expect
eof
EOF
cat >"$T/tls.script" <<'EOF'
expect
send EHLO drip.test.example
expect
send STARTTLS
expect
starttls
send EHLO drip.test.example
expect
drip 1 NOOP\r\n
expect
send QUIT
expect
eof
EOF
clients=""
for mode in rec call; do
    eval "port=\$$mode"
    for kind in cmd data tls; do
        chat "$port" --timeout 15 <"$T/$kind.script" >"$T/$mode-$kind.out" &
        clients="$clients $!"
    done
done
wait $clients

# ------------------------------------------------------ record deadline
for kind in cmd data tls; do
    out=$T/rec-$kind.out
    case $kind in
    cmd) n=3 what="a command line" ;;
    data) n=6 what="a line of message content" ;;
    tls) n=5 what="a command line inside TLS" ;;
    esac
    g=$(gap "$out" "$n")
    check "rec, $what trickled: cut off before it ended" grep -q '^#DRIP-CUT' "$out"
    check "rec, $what trickled: 421 4.4.2 as for an idle client" \
        grep -q '^421 4.4.2 relay.test.example Error: timeout exceeded$' "$out"
    check "rec, $what trickled: the 421 came 2 s after the line began (${g}s)" \
        between "$g" 1.8 3.5
    check "rec, $what trickled: disconnected" grep -q '^#EOF' "$out"
done
check "rec: the trickled command was logged as a timeout" \
    grep -q ': timeout after command from unknown\[127.0.0.1\]$' "$T/rec.log"
check "rec: the trickled content line was logged as a timeout after DATA" \
    grep -q ': timeout after DATA from unknown\[127.0.0.1\]$' "$T/rec.log"
check "rec: the trickled TLS session ended in a timeout too" \
    [ "$(grep -c ': timeout after command from unknown\[127.0.0.1\]$' "$T/rec.log")" -eq 2 ]

# ------------------------------------------------------ per read
got=$(codes "$T/call-cmd.out")
check "call, a command line trickled: served, then QUIT (got '$got')" \
    sh -c "grep -q '^#DRIP 6/6' '$T/call-cmd.out' && [ '$got' = '220 250 250 221' ]"
got=$(codes "$T/call-data.out")
check "call, a content line trickled: the message is taken (got '$got')" \
    sh -c "grep -q '^#DRIP 6/6' '$T/call-data.out' && [ '$got' = '220 250 250 250 354 250 221' ]"
got=$(codes "$T/call-tls.out")
check "call, a command line trickled inside TLS: served (got '$got')" \
    sh -c "grep -q '^#TLS TLSv1' '$T/call-tls.out' && grep -q '^#DRIP 6/6' '$T/call-tls.out' && [ '$got' = '220 250 220 250 250 221' ]"
check "call: no timeout logged" sh -c "! grep -q 'timeout after' '$T/call.log'"
check "call: the trickled message reached the sink" sink_wait sink 1 5
msg=$(grep -l '^Subject: trickled content' "$T"/sink/msg.* 2>/dev/null | head -n 1)
check "call: the trickled line arrived whole" sh -c "[ -n '$msg' ] && grep -q '^abcd\$' '$msg'"

# ------------------------------------------------------ clients that are not slow
line=$(printf '%098d' 0)
chat "$rec" >"$T/fast.out" <<EOF
expect
send EHLO fast.test.example
expect
send MAIL FROM:<fast@client.example>
expect
sleep 1.5
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
raw Subject: fast client\r\n\r\n
repeat 20000 $line\r\n
raw .\r\n
expect
send QUIT
expect
EOF
got=$(codes "$T/fast.out")
check "rec, a client pausing 1.5 s and sending 2 MB: served (got '$got')" \
    [ "$got" = "220 250 250 250 354 250 221" ]

chat "$rec" >"$T/steady.out" <<'EOF'
expect
send EHLO steady.test.example
expect
send MAIL FROM:<steady@client.example>
expect
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
raw Subject: steady lines\r\n\r\nline 1\r\n
sleep 0.8
raw line 2\r\n
sleep 0.8
raw line 3\r\n
sleep 0.8
raw line 4\r\n
sleep 0.8
raw .\r\n
expect
send QUIT
expect
EOF
got=$(codes "$T/steady.out")
g=$(gap "$T/steady.out" 6)
check "rec, message lines 0.8 s apart, 3.2 s of DATA in all: taken (got '$got', ${g}s)" \
    sh -c "[ '$got' = '220 250 250 250 354 250 221' ] && awk -v g='$g' 'BEGIN { exit !(g >= 3) }'"

chat "$rec" --timeout 15 >"$T/longline.out" <<'EOF'
expect
send EHLO long.test.example
expect
send MAIL FROM:<long@client.example>
expect
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
raw Subject: one long line at a steady pace\r\n\r\n
repeat 65536 A
sleep 0.8
repeat 65536 A
sleep 0.8
repeat 65536 A
sleep 0.8
repeat 65536 A
sleep 0.8
repeat 65536 A
raw \r\n.\r\n
expect
send QUIT
expect
EOF
got=$(codes "$T/longline.out")
g=$(gap "$T/longline.out" 6)
check "rec, a 320 KiB line in 64 KiB pieces over 3.2 s: refused for its length, not cut off (got '$got', ${g}s)" \
    sh -c "[ '$got' = '220 250 250 250 354 550 221' ] && grep -q '^550 5.6.0' '$T/longline.out' && awk -v g='$g' 'BEGIN { exit !(g >= 3) }'"

check "sink: the fast and the steady messages arrived" sink_wait sink 3 5
sleep 0.3
check "sink: nothing of the messages rec cut off (3 in all: $(sink_count sink))" \
    [ "$(sink_count sink)" -eq 3 ]
check "sink: no trickled message from rec" \
    [ "$(grep -l '^Subject: trickled content' "$T"/sink/msg.* 2>/dev/null | wc -l)" -eq 1 ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.out; do
        echo "--- $(basename "$f")"
        cut -c1-200 "$f" | tail -n 40
    done
    for f in rec call; do
        echo "--- $f log"
        tail -n 40 "$T/$f.log"
    done
fi
rcd_stop rec
rcd_stop call
finish
