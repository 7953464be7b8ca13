#!/bin/sh
# rate_stream - a rate_limits rule on a stream (the delivery events'
# stream_map names the stream of each message): the stream's mail is
# held to its count with 452 4.7.1 and the rule named in the log; mail
# on no stream, or on another, is not counted; a recipients rule on the
# stream counts recipients, apart from the messages rule on the same
# stream and period. A message is counted once, after its data: over a
# limit the data gets 452, never MAIL or RCPT. "relaychain report
# --stream" counts one stream's events.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink=$2

sink_start sink "$sink"
printf '%s\n' '/^news@/ news' '/^alerts@/ alerts' >"$T/streams"
printf '%s\n' '# the newsletter: 3 messages a minute, 5 recipients' \
    'stream:news 3/1m' 'stream:news 5/1m recipients' >"$T/limits"
printf '%s\n' "delivery = queue" "queue_directory = $T/spool" \
    "events_store = sqlite:$T/events.db" "stream_map = $T/streams" \
    "rate_limits = $T/limits" |
    rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$sink"
rcd_start rcd "$T/q.conf" "$port" || finish

# mail FROM TO... - one message in one session; prints the MAIL reply
# code, then each RCPT's, then the reply to the data ("-" when not
# sent)
mail() {
    "$PY" - "$port" "$@" <<'PY'
import smtplib, sys
port, frm, tos = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
s = smtplib.SMTP('127.0.0.1', port, timeout=30)
s.ehlo('client.test.example')
out = [str(s.mail(frm)[0])]
ok = 0
for t in tos if out[0] == '250' else []:
    c = s.rcpt(t)[0]
    out.append(str(c))
    ok += c == 250
if out[0] == '250' and ok:
    try:
        out.append(str(s.data(b'Subject: stream\r\n\r\nbody\r\n')[0]))
    except smtplib.SMTPDataError as e:
        out.append(str(e.smtp_code))
else:
    out.append('-')
s.quit()
print(' '.join(out))
PY
}

check "news 1" [ "$(mail news@client.example a@dest.example)" = "250 250 250" ]
check "news 2" [ "$(mail news@client.example b@dest.example)" = "250 250 250" ]
got=$(mail news@client.example c@dest.example d@dest.example)
check "news 3: two recipients ($got)" [ "$got" = "250 250 250 250" ]
got=$(mail news@client.example e@dest.example)
check "news 4: the data gets 452 ($got)" [ "$got" = "250 250 452" ]
check "the log names the rule" \
    grep -q "reject: END-OF-MESSAGE from .*452 4\.7\.1 .*rate_limit=$T/limits:2 stream:news (3 per 60s messages); from=<news@client.example> to=<e@dest.example>" "$T/rcd.log"
# a reload (SIGUSR1) keeps the memory store's counts: news is still full
kill -USR1 "$(rcd_pid rcd)"
check "reloaded" wait_grep "reload: configuration" "$T/rcd.log" 10
got=$(mail news@client.example e2@dest.example)
check "after a reload news is still full ($got)" [ "$got" = "250 250 452" ]
check "another stream is not counted" \
    [ "$(mail alerts@client.example f@dest.example)" = "250 250 250" ]
check "mail on no stream is not counted" \
    [ "$(mail someone@client.example g@dest.example)" = "250 250 250" ]
check "five messages at the sink" sink_wait sink 5 10
# the report of one stream: news had four recipients received, alerts one
received() { # STREAM - the received count of relaychain report --stream
    "$RC" report -c "$T/q.conf" --stream "$1" --json 2>&1 |
        sed -n 's/.*"received": \([0-9]*\).*/\1/p'
}
i=0 # the writer stores events in batches, in its own time
while { [ "$(received news)" != 4 ] || [ "$(received alerts)" != 1 ]; } &&
    [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "report --stream news: 4 received ($(received news))" \
    [ "$(received news)" = 4 ]
check "report --stream alerts: 1 received ($(received alerts))" \
    [ "$(received alerts)" = 1 ]
check "report --stream nothing: no row" \
    [ "$("$RC" report -c "$T/q.conf" --stream nothing --json)" = "[]" ]
rcd_stop rcd

# the recipients rule: a fresh count (a new daemon, memory store)
printf '%s\n' 'stream:news 3/1m recipients' >"$T/limits"
rcd_start rcd2 "$T/q.conf" "$port" || finish
got=$(mail news@client.example r1@dest.example r2@dest.example)
check "recipients: two taken ($got)" [ "$got" = "250 250 250 250" ]
got=$(mail news@client.example r3@dest.example r4@dest.example)
check "recipients: two more would be four of 3: 452 ($got)" [ "$got" = "250 250 250 452" ]
check "the log names the recipients rule" \
    grep -q "reject: END-OF-MESSAGE from .*rate_limit=$T/limits:1 stream:news (3 per 60s recipients); from=<news@client.example> to=<r3@dest.example> and others" "$T/rcd2.log"
got=$(mail news@client.example r5@dest.example)
check "recipients: the third fits ($got)" [ "$got" = "250 250 250" ]
rcd_stop rcd2
# a transaction takes no more recipients than the rule allows (452 4.5.3
# at RCPT: the client sends the rest in another), and a message the
# chain refuses gives its count back (a fresh daemon: a fresh count; a
# header_limit of 10 fields for the refusal)
echo "header_limit = 10" >>"$T/q.conf"
rcd_start rcd3 "$T/q.conf" "$port" || finish
"$PY" - "$port" >"$T/big.out" 2>&1 <<'PY'
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('client.test.example')
s.mail('news@client.example')
for t in ('b1@dest.example', 'b2@dest.example'):
    s.rcpt(t)
hdr = ''.join('X-Field-%d: x\r\n' % i for i in range(20))
try:
    print(s.data((hdr + 'Subject: big\r\n\r\nbody\r\n').encode())[0])
except smtplib.SMTPDataError as e:
    print(e.smtp_code)
s.quit()
PY
check "twenty header fields: 552 ($(cat "$T/big.out"))" grep -qx 552 "$T/big.out"
got=$(mail news@client.example s1@dest.example s2@dest.example s3@dest.example s4@dest.example)
check "three recipients, the fourth 452 at RCPT, the refused message given back ($got)" \
    [ "$got" = "250 250 250 250 452 250" ]
check "the log names the rule at RCPT" \
    grep -q "reject: RCPT from .*452 4\.5\.3 Error: too many recipients; rate_limit=$T/limits:1 stream:news (3 per 60s recipients): at most that many a message; from=<news@client.example> to=<s4@dest.example>" "$T/rcd3.log"
got=$(mail news@client.example s5@dest.example)
check "then the window is full ($got)" [ "$got" = "250 250 452" ]
check "the sink got the three" sink_wait sink 8 10
rcd_stop rcd3
[ "$failures" -gt 0 ] && tail -n 30 "$T/rcd.log" >&2
finish
