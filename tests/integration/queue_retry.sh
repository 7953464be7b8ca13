#!/bin/sh
# queue_retry - a 4xx from the next hop defers, the backoff retries, and
# the message is delivered once
#
# The next hop is first an smtp-sink that answers the end of DATA with
# "451 4.3.2 sink is busy" (-r . -b). relaychaind (delivery = queue,
# backoff 1s to 2s) answers the client 250 all the same, logs the
# deferral with the next hop's reply, and keeps the message. Then that
# sink is stopped and a normal one takes its port: the message must
# arrive once, whole, without any flush (the backoff alone brings it),
# logged sent with delay= and delays=a/b/c/d, and the queue must be
# empty.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 hop=$2
LOAD="$top_srcdir/tests/integration/queue_load.py"
COUNT="$top_srcdir/tests/integration/queue_count.py"

mkdir -p "$T/busy"
smtp-sink -u nobody -4 -r . -b '451 4.3.2 sink is busy, try later' \
    "127.0.0.1:$hop" 64 >>"$T/busy.log" 2>&1 &
busy=$!
smtpd_track "$busy"
wait_listen "$hop" || fail "busy smtp-sink does not listen"

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
rcd_start rcd "$T/q.conf" "$port" || finish

timeout 60 "$PY" "$LOAD" --port "$port" --prefix retry --count 1 \
    --accepted "$T/accepted" >"$T/load.out" 2>&1
check "the client gets 250 while the next hop says 451" \
    grep -qx 'sent=1 accepted=1 refused=0' "$T/load.out"
check "the 451 is logged as a deferral with the next hop's words" \
    wait_grep 'status=deferred (451 4.3.2 sink is busy, try later)' "$T/rcd.log" 10
check "a second attempt after the backoff is deferred too" \
    sh -c "sleep 2.5; [ \$(grep -c 'status=deferred (451 4.3.2' '$T/rcd.log') -ge 2 ]"
check "the message is still queued" \
    [ "$(find "$T/spool/queue" -type f | wc -l)" -eq 1 ]

kill "$busy"
i=0
while [ -n "$(ss -Hltn "sport = :$hop" 2>/dev/null)" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
sink_start sink "$hop"
check "delivered after the backoff, no flush needed" sink_wait sink 1 10
sleep 2.5 # another backoff: a second copy would show up now
"$PY" "$COUNT" "$T/sink" "$T/accepted" retry >"$T/count.out" 2>&1
check "exactly once: $(head -n 1 "$T/count.out")" \
    grep -qx 'accepted=1 delivered=1 lost=0 duplicates=0 unacknowledged=0 broken=0' "$T/count.out"
check "logged sent with delay and delays" \
    grep -q 'to=<rcpt@dest.example>, relay=127.0.0.1\[127.0.0.1\]:'"$hop"', delay=[0-9.]*, delays=[0-9.]*/[0-9.]*/[0-9.]*/[0-9.]*, dsn=2.0.0, status=sent (250 ' "$T/rcd.log"
check "queue is empty" [ -z "$(find "$T/spool/queue" -type f)" ]
rcd_stop rcd
finish
