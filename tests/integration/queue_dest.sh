#!/bin/sh
# queue_dest - per destination domain in delivery = queue: a throttling
# reply pauses that domain only, destination_rate_delay spaces its
# transactions, destination_concurrency_limit caps them
#
# 0. Its access map greylists grey.example (450 4.7.1 Greylisted): the
#    recipient is deferred, the domain is not paused.
# 1. A private Postfix as the next hop refuses recipients at slow.example
#    with 4.7.0 (its access map says 421; its smtpd sends 451 4.7.0 and
#    keeps the session). The first message to it pauses the domain for
#    destination_throttle_time (the log says so); while it is paused,
#    mail to fast.example goes at once, a message to both delivers the
#    fast.example copy, and the slow.example recipients are deferred
#    "temporarily suspended" without a connection: Postfix sees no
#    other RCPT for slow.example. When the pause ends one transaction
#    probes the domain alone (not the whole backlog), is throttled
#    again and the pause doubles. Postfix then takes slow.example,
#    "relaychain queue flush" ends the pause, and every message is
#    delivered once.
# 2. destination_rate_delay = 1s: four messages to rate.example reach the
#    sink at least a second apart; four to other.example do not wait.
# 3. destination_concurrency_limit = 1, a sink that takes 1s to answer
#    DATA: four messages to one domain take four seconds or more, four
#    to four domains go side by side.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

RC="$top_builddir/relaychain"
set -- $(free_ports 5)
port=$1 pf_port=$2 pf_sink=$3 port2=$4 sink2=$5

pfx_init pf
printf '%s\n' 'slow.example 421 4.7.0 too many messages, slow down' \
    'grey.example 450 4.7.1 Greylisted, see https://postgrey.schweikert.ch/help/grey.example.html' >"$T/pf/etc/rcpt"
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "smtpd_recipient_restrictions = check_recipient_access texthash:$T/pf/etc/rcpt, permit_mynetworks, reject"
echo "127.0.0.1:$pf_port inet n - n - - smtpd" | pfx_master pf
sink_start pfsink "$pf_sink"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

printf '%s\n' "delivery = queue" "queue_directory = $T/spool" \
    "minimal_backoff_time = 1s" "maximal_backoff_time = 60s" \
    "destination_throttle_time = 6s" |
    rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$pf_port"
rcd_start rcd "$T/q.conf" "$port" || finish

send() { # send PORT FROM TO[,TO...]
    swaks --server "127.0.0.1:$1" --from "$2" --to "$3" \
        --header "Subject: to $3" >>"$T/send.out" 2>&1
}
# burst PORT TO... - one message to each TO, all in one session, at once
burst() {
    "$PY" - "$@" >>"$T/send.out" 2>&1 <<'PY'
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=60)
for to in sys.argv[2:]:
    s.sendmail('s@client.example', [to],
               'From: s@client.example\r\nTo: %s\r\nSubject: burst\r\n'
               '\r\nbody\r\n' % to)
s.quit()
PY
}
# asked - the RCPT commands for slow.example Postfix refused
asked() {
    grep -c 'reject: RCPT from .*@slow\.example>' "$T/pf/postfix.log"
}

# --- 0. greylisting (450 4.7.1 Greylisted) defers its recipient, and
# does not pause the domain: the second message is tried at once
grey_asked() {
    grep -c 'reject: RCPT from .*@grey\.example>' "$T/pf/postfix.log"
}
send "$port" s@client.example g1@grey.example
send "$port" s@client.example g2@grey.example
i=0
while [ "$(grey_asked)" -lt 2 ] && [ $i -lt 40 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "greylisted: Postfix asked for both at once ($(grey_asked) RCPT)" \
    [ "$(grey_asked)" -ge 2 ]
check "greylisted: deferred with Postfix's reply" \
    grep -q 'to=<g2@grey\.example>, relay=127\.0\.0\.1.*status=deferred (.*450 4\.7\.1 .*Greylisted' "$T/rcd.log"
check "greylisted: no pause" sh -c "! grep -q 'grey\.example: throttled' '$T/rcd.log'"

# --- 1. a throttling reply pauses its domain, and only it
send "$port" s@client.example a@slow.example
check "the 421 pauses slow.example, for destination_throttle_time" \
    wait_grep 'slow\.example: throttled by its mail server (4[25]1 4\.7\.0 .*too many messages, slow down): no delivery to it for 6s' "$T/rcd.log" 10
t_pause=$(date +%s)
for i in 1 2 3; do
    send "$port" s@client.example "b$i@slow.example"
    send "$port" s@client.example "f$i@fast.example"
done
send "$port" s@client.example m@slow.example,m@fast.example
check "fast.example delivered while slow.example is paused" \
    sink_wait pfsink 4 10
check "the pause still runs: the test is not too slow" \
    [ $(($(date +%s) - t_pause)) -lt 6 ]
check "the paused recipients are deferred without a connection" \
    wait_grep 'to=<b3@slow\.example>, relay=none, .*status=deferred (450 4\.7\.0 delivery to slow\.example temporarily suspended: 4[25]1 4\.7\.0 .*too many' "$T/rcd.log" 5
check "a message to both: the slow.example copy waits" \
    grep -q 'to=<m@slow\.example>, relay=none, .*status=deferred' "$T/rcd.log"
check "Postfix was asked once for slow.example ($(asked))" [ "$(asked)" -eq 1 ]
check "the end of the pause: one probe, throttled again, the pause doubles" \
    wait_grep 'slow\.example: throttled .*no delivery to it for 12s' "$T/rcd.log" 15
sleep 1
check "one probe, not the backlog ($(asked) RCPT)" [ "$(asked)" -eq 2 ]
check "nothing more at the sink meanwhile" [ "$(sink_count pfsink)" -eq 4 ]

: >"$T/pf/etc/rcpt"
pfx_stop pf # its pooled smtpd keeps the old map: a restart
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
"$RC" queue -c "$T/q.conf" flush >"$T/flush.out" 2>&1
check "relaychain queue flush" [ $? -eq 0 ]
check "flushed: every slow.example and grey.example message delivered" sink_wait pfsink 11 15
sleep 1
check "each once ($(sink_count pfsink) at the sink)" [ "$(sink_count pfsink)" -eq 11 ]
check "nothing left in the queue" \
    [ -z "$(find "$T/spool/queue" -type f 2>/dev/null)" ]
for r in a b1 b2 b3 m; do
    check "<$r@slow.example> sent" \
        grep -q "to=<$r@slow\.example>, relay=127\.0\.0\.1.*status=sent" "$T/rcd.log"
done
rcd_stop rcd

# --- 2. destination_rate_delay
# arrivals DOMAIN - the sink's arrival times (ms) of the messages to DOMAIN
arrivals() {
    for f in "$T"/rate/msg.*; do
        grep -q "^X-Rcpt-Args: <[^>]*@$1>" "$f" && stat -c %.3Y "$f"
    done | tr -d . | sort -n
}
span() { # span DOMAIN - ms between the first and the last arrival
    arrivals "$1" | awk 'NR == 1 { a = $1 } { b = $1 } END { print b - a }'
}
gaps() { # gaps DOMAIN - the shortest ms between two arrivals
    arrivals "$1" | awk 'NR > 1 { d = $1 - p; if (m == "" || d < m) m = d }
        { p = $1 } END { print m }'
}
sink_start rate "$sink2"
printf '%s\n' "delivery = queue" "queue_directory = $T/spool2" \
    "minimal_backoff_time = 1s" "destination_rate_delay = 1s" |
    rcd_conf "$T/r.conf" "$port2" "smtp:[127.0.0.1]:$sink2"
rcd_start rcd2 "$T/r.conf" "$port2" || finish
burst "$port2" r1@rate.example o1@other1.example r2@rate.example \
    o2@other2.example r3@rate.example o3@other3.example r4@rate.example \
    o4@other4.example
check "eight messages through" sink_wait rate 8 20
check "rate.example: a second or more between two ($(gaps rate.example) ms)" \
    [ "$(gaps rate.example)" -ge 900 ]
check "rate.example: four over three seconds or more ($(span rate.example) ms)" \
    [ "$(span rate.example)" -ge 2900 ]
check "four other domains did not wait ($(span 'other[0-9]\.example') ms)" \
    [ "$(span 'other[0-9]\.example')" -lt 900 ]
rcd_stop rcd2

# --- 3. destination_concurrency_limit
kill "$(ss -Hltnp "sport = :$sink2" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)" 2>/dev/null
rm -rf "$T/rate"
i=0
while [ -n "$(ss -Hltn "sport = :$sink2")" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
sink_start rate "$sink2" -w 1
printf '%s\n' "delivery = queue" "queue_directory = $T/spool3" \
    "minimal_backoff_time = 1s" "destination_concurrency_limit = 1" |
    rcd_conf "$T/c.conf" "$port2" "smtp:[127.0.0.1]:$sink2"
rcd_start rcd3 "$T/c.conf" "$port2" || finish
# sent PATTERN - the deliveries to recipients matching PATTERN logged so
# far (the sink keeps a message before its 1 s wait for the reply, so the
# log's "status=sent", after the reply, is what times a delivery)
sent() {
    grep -c "to=<$1>, relay=127.*status=sent" "$T/rcd3.log"
}
# wait_sent PATTERN N - until N are sent (bounded, 20 s)
wait_sent() {
    i=0
    while [ "$(sent "$1")" -lt "$2" ] && [ $i -lt 400 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    [ "$(sent "$1")" -ge "$2" ]
}
t0=$(date +%s%N)
burst "$port2" c1@one.example c2@one.example c3@one.example c4@one.example
check "four to one domain through" wait_sent 'c[1-4]@one\.example' 4
t1=$(date +%s%N)
check "one at a time: four seconds or more ($(( (t1 - t0) / 1000000 )) ms)" \
    [ $(( (t1 - t0) / 1000000 )) -ge 3800 ]
t0=$(date +%s%N)
burst "$port2" d1@many1.example d2@many2.example d3@many3.example \
    d4@many4.example
check "four to four domains through" wait_sent 'd[1-4]@many[1-4]\.example' 4
t1=$(date +%s%N)
check "side by side: under three seconds ($(( (t1 - t0) / 1000000 )) ms)" \
    [ $(( (t1 - t0) / 1000000 )) -lt 3000 ]
rcd_stop rcd3

if [ "$failures" -gt 0 ]; then
    for f in rcd rcd2 rcd3; do
        echo "== $f.log" && tail -n 40 "$T/$f.log"
    done
    echo "== Postfix" && grep -e slow -e fast "$T/pf/postfix.log" | tail -n 20
fi >&2
finish
