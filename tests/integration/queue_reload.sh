#!/bin/sh
# queue_reload - SIGUSR1 applies the queue's new settings without a restart
#
# relaychaind runs with "delivery = queue", a next hop where nothing
# listens and long backoffs (60s to 120s, queue_run_delay 300s): 20
# messages are accepted, queued and deferred. smtp-sink then listens on
# another port, and nothing may reach it while the old settings hold.
#
# A reload whose transport_map has a bad line 3 must fail with
# "file:3:" in the log and change nothing: still no delivery.
#
# Then relaychain.conf is edited: next_hop is the sink, the backoffs are
# 1s to 2s, queue_run_delay 1s, delivery_concurrency 3, and
# queue_directory names another directory. After SIGUSR1 the same daemon
# (pid unchanged) must log that queue_directory needs a restart, keep its
# spool, and deliver the 20 waiting messages to the sink within 15s
# (the new maximal_backoff_time caps their wait), each exactly once and
# whole; 5 messages sent afterwards go straight through the new next hop.
# Last, 60 messages are sent while SIGUSR1 comes every 0.1s (30 times) with
# delivery_concurrency switching between 1 and 3: each arrives once.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 3)
port=$1 dead=$2 hop=$3
LOAD="$top_srcdir/tests/integration/queue_load.py"
COUNT="$top_srcdir/tests/integration/queue_count.py"

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$dead" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 60s
maximal_backoff_time = 120s
queue_run_delay = 300s
delivery_concurrency = 1
EOF
rcd_start rcd "$T/q.conf" "$port" || finish
pid=$(rcd_pid rcd)

timeout 120 "$PY" "$LOAD" --port "$port" --prefix before --count 20 \
    --sessions 2 --accepted "$T/accepted" >"$T/load.out" 2>&1
check "next hop down: all 20 messages answered 250 ($(cat "$T/load.out"))" \
    grep -qx 'sent=20 accepted=20 refused=0' "$T/load.out"
i=0
while [ "$(grep -c 'status=deferred' "$T/rcd.log")" -lt 20 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "the 20 messages are deferred" \
    [ "$(grep -c 'status=deferred' "$T/rcd.log")" -eq 20 ]

sink_start sink "$hop"
sleep 2
check "with the old settings nothing reaches the new next hop" \
    [ "$(sink_count sink)" -eq 0 ]

# --- a bad transport_map: the reload fails, the old settings stay
printf '# routes\ndest.example smtp:[127.0.0.1]:%s\nbroken.example\n' \
    "$hop" >"$T/transport"
rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
transport_map = $T/transport
EOF
kill -USR1 "$pid"
check "a bad transport_map fails the reload with file:line" \
    wait_grep "reload failed, keeping the running configuration: $T/transport:3: expected \"domain next-hop\"" "$T/rcd.log" 10
sleep 2
check "after the failed reload still nothing is delivered" \
    [ "$(sink_count sink)" -eq 0 ]
check "the failed reload did not touch the queue" \
    sh -c "! grep -q 'reloaded' '$T/rcd.log'"

# --- the edited configuration applies without a restart
rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool-elsewhere
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
delivery_concurrency = 3
EOF
kill -USR1 "$pid"
check "the queue takes the new settings" \
    wait_grep "queue $T/spool: reloaded: 3 delivery worker(s), next hop smtp:\[127.0.0.1\]:$hop" "$T/rcd.log" 10
check "a changed queue_directory is logged and ignored" \
    grep -q "queue_directory changed; restart relaychaind to use it" "$T/rcd.log"
check "every waiting message reaches the new next hop" sink_wait sink 20 15
check "no new spool was made" [ ! -e "$T/spool-elsewhere" ]

timeout 60 "$PY" "$LOAD" --port "$port" --prefix after --count 5 \
    --sessions 1 --accepted "$T/accepted2" >"$T/load2.out" 2>&1
check "after the reload 5 more are accepted ($(cat "$T/load2.out"))" \
    grep -qx 'sent=5 accepted=5 refused=0' "$T/load2.out"
check "and delivered at once" sink_wait sink 25 10
sleep 2 # time for a duplicate to show up, were there one
"$PY" "$COUNT" "$T/sink" "$T/accepted" before >"$T/count.out" 2>&1
check "queued before the reload: exactly once, whole: $(head -n 1 "$T/count.out")" \
    grep -qx 'accepted=20 delivered=20 lost=0 duplicates=0 unacknowledged=0 broken=0' "$T/count.out"
"$PY" "$COUNT" "$T/sink" "$T/accepted2" after >"$T/count2.out" 2>&1
check "sent after the reload: exactly once, whole: $(head -n 1 "$T/count2.out")" \
    grep -qx 'accepted=5 delivered=5 lost=0 duplicates=0 unacknowledged=0 broken=0' "$T/count2.out"
# --- reloads while deliveries are under way: the worker count and the
# next hop's pool change under the workers; nothing is lost or repeated
cp "$T/q.conf" "$T/a.conf"
sed 's/^delivery_concurrency = 3$/delivery_concurrency = 1/' "$T/a.conf" \
    >"$T/b.conf"
timeout 120 "$PY" "$LOAD" --port "$port" --prefix storm --count 60 \
    --sessions 3 --accepted "$T/accepted3" >"$T/load3.out" 2>&1 &
lpid=$!
i=0
while [ $i -lt 30 ]; do
    if [ $((i % 2)) -eq 0 ]; then cp "$T/b.conf" "$T/q.conf"; else cp "$T/a.conf" "$T/q.conf"; fi
    kill -USR1 "$pid"
    sleep 0.1
    i=$((i + 1))
done
wait "$lpid"
check "under reloads 60 more are accepted ($(cat "$T/load3.out"))" \
    grep -qx 'sent=60 accepted=60 refused=0' "$T/load3.out"
check "and delivered" sink_wait sink 85 20
sleep 2
"$PY" "$COUNT" "$T/sink" "$T/accepted3" storm >"$T/count3.out" 2>&1
check "sent under reloads: exactly once, whole: $(head -n 1 "$T/count3.out")" \
    grep -qx 'accepted=60 delivered=60 lost=0 duplicates=0 unacknowledged=0 broken=0' "$T/count3.out"
check "the queue was reloaded under load ($(grep -c ': reloaded: ' "$T/rcd.log") times)" \
    [ "$(grep -c ': reloaded: ' "$T/rcd.log")" -ge 10 ]
check "the sink got 85 messages in all" [ "$(sink_count sink)" -eq 85 ]
check "no restart: the same daemon ($pid) is running" kill -0 "$pid"
check "one start-up line only" \
    [ "$(grep -c 'daemon started' "$T/rcd.log")" -eq 1 ]
check "no queue file left" [ -z "$(find "$T/spool/queue" -type f)" ]
check "85 sent lines" \
    [ "$(grep -c 'status=sent (250 ' "$T/rcd.log")" -eq 85 ]
rcd_stop rcd
if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- relaychaind log"
    grep -v 'connect from\|client=\|from=<' "$T/rcd.log" | tail -n 40
fi
finish
