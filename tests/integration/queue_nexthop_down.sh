#!/bin/sh
# queue_nexthop_down - delivery = queue keeps accepting while the next
# hop is down, and delivers everything exactly once when it comes back
#
# relaychaind runs with "delivery = queue", short backoffs (1s to 2s) and
# a next hop where nothing listens. 30 messages from 3 sessions must all
# get 250 ("queued as"), be listed by "relaychain queue list", and be
# logged as deferred. Then smtp-sink starts on the next hop's port: every
# message must arrive exactly once and whole (queue_count.py), the queue
# must be empty afterwards and each message logged sent, then removed.
# EHLO offers DSN in queue mode (and not in through mode).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 3)
port=$1 hop=$2 tport=$3
LOAD="$top_srcdir/tests/integration/queue_load.py"
COUNT="$top_srcdir/tests/integration/queue_count.py"

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
rcd_conf "$T/t.conf" "$tport" "smtp:[127.0.0.1]:$hop" </dev/null
rcd_start rcd "$T/q.conf" "$port" || finish
rcd_start through "$T/t.conf" "$tport" || finish

printf 'expect\nsend EHLO c.example\nexpect\nsend QUIT\nexpect\n' |
    chat "$port" >"$T/ehlo.out"
check "queue mode offers DSN" grep -qx '250-DSN' "$T/ehlo.out"
printf 'expect\nsend EHLO c.example\nexpect\nsend QUIT\nexpect\n' |
    chat "$tport" >"$T/ehlo-t.out"
check "through mode does not offer DSN" \
    sh -c "! grep -q DSN '$T/ehlo-t.out'"

timeout 120 "$PY" "$LOAD" --port "$port" --prefix down --count 30 \
    --sessions 3 --accepted "$T/accepted" >"$T/load.out" 2>&1
check "next hop down: all 30 messages answered 250 ($(cat "$T/load.out"))" \
    grep -qx 'sent=30 accepted=30 refused=0' "$T/load.out"
check "30 queue files" \
    [ "$(find "$T/spool/queue" -type f | wc -l)" -eq 30 ]
"$RC" queue -c "$T/q.conf" list >"$T/list.out" 2>&1
check "queue list shows 30 requests" \
    grep -q '^-- [0-9]* Kbytes in 30 Requests\.$' "$T/list.out"
check "queue list shows the deferral reason" \
    grep -q "(451 4.4.1 Connection refused by 127.0.0.1\[127.0.0.1\]:$hop)" "$T/list.out"
check "deferrals are logged" \
    grep -q 'to=<rcpt@dest.example>, relay=none, delay=[0-9.]*, delays=[0-9.]*/[0-9.]*/[0-9.]*/[0-9.]*, dsn=4.4.1, status=deferred' "$T/rcd.log"

sink_start sink "$hop"
check "every message arrives once the next hop is back" sink_wait sink 30 20
sleep 2 # time for a duplicate to show up, were there one
"$PY" "$COUNT" "$T/sink" "$T/accepted" down >"$T/count.out" 2>&1
check "exactly once, whole: $(head -n 1 "$T/count.out")" \
    grep -qx 'accepted=30 delivered=30 lost=0 duplicates=0 unacknowledged=0 broken=0' "$T/count.out"
check "the sink got 30 messages in all" [ "$(sink_count sink)" -eq 30 ]
"$RC" queue -c "$T/q.conf" list >"$T/empty.out" 2>&1
check "queue list: empty" grep -qx 'Mail queue is empty' "$T/empty.out"
check "no queue file left" [ -z "$(find "$T/spool/queue" -type f)" ]
check "30 sent lines" \
    [ "$(grep -c 'status=sent (250 ' "$T/rcd.log")" -eq 30 ]
check "30 removed lines" [ "$(grep -c ': removed$' "$T/rcd.log")" -eq 30 ]
rcd_stop rcd
rcd_stop through
finish
