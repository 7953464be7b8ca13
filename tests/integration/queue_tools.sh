#!/bin/sh
# queue_tools - "relaychain queue" against a running relaychaind
#
# Four messages wait for a dead next hop (backoff 60s, so only the tools
# move them). list (mailq style and --json, read with Python's json),
# show (envelope records and message), hold (moved to hold/, shown with
# '!'), delete (gone), then a sink on the next hop and flush: the two
# left are delivered, the held one is not; flush of a held message is
# refused; release delivers it; requeue ALL brings a held message back.
# Races with delivery, against a sink that waits 3s before answering
# DATA: delete while the attempt runs wins at once and the message is
# neither tried again after a flush nor brought back; hold while the
# attempt runs waits for it and then reports the message gone (it was
# delivered), never moving a delivered message to hold/.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 hop=$2
LOAD="$top_srcdir/tests/integration/queue_load.py"

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 60s
maximal_backoff_time = 60s
EOF
rcd_start rcd "$T/q.conf" "$port" || finish
Q() {
    "$RC" queue -c "$T/q.conf" "$@"
}

timeout 60 "$PY" "$LOAD" --port "$port" --prefix tools --count 4 \
    --accepted "$T/accepted" >"$T/load.out" 2>&1
check "4 messages queued" grep -qx 'sent=4 accepted=4 refused=0' "$T/load.out"
wait_grep 'status=deferred' "$T/rcd.log" 5
sleep 0.3
Q list >"$T/list.out" 2>&1
check "list: 4 requests" grep -q '^-- [0-9]* Kbytes in 4 Requests\.$' "$T/list.out"
Q list --json >"$T/list.json" 2>&1
"$PY" - "$T/list.json" >"$T/ids" 2>"$T/json.err" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    assert o["queue_name"] == "deferred", o
    assert o["sender"] == "load@client.example", o
    assert o["recipients"][0]["address"] == "rcpt@dest.example", o
    assert "Connection refused" in o["recipients"][0]["delay_reason"], o
    assert o["message_size"] > 2000 and o["arrival_time"] > 0, o
    print(o["queue_id"])
EOF
check "list --json: 4 objects Python reads, as postqueue -j ($(cat "$T/json.err"))" \
    [ "$(wc -l <"$T/ids")" -eq 4 ]
set -- $(cat "$T/ids")
id1=$1 id2=$2 id3=$3 id4=$4

Q show "$id1" >"$T/show.out" 2>&1
check "show: envelope records" \
    sh -c "grep -qx '\*\*\* ENVELOPE RECORDS queue/$id1 \*\*\*' '$T/show.out' && grep -qx 'sender: load@client.example' '$T/show.out' && grep -qx 'recipient: rcpt@dest.example (pending)' '$T/show.out'"
check "show: the message" \
    sh -c "grep -q '^X-Test-Id: tools-' '$T/show.out' && grep -qx '\*\*\* END OF MESSAGE queue/$id1 \*\*\*' '$T/show.out'"
Q show NOSUCHID >"$T/show2.out" 2>&1
check "show of an unknown id fails" [ $? -ne 0 ]

Q hold "$id1" >"$T/hold.out" 2>&1
check "hold: '$id1: placed on hold'" grep -qx "$id1: placed on hold" "$T/hold.out"
check "hold: the file is in hold/" [ -f "$T/spool/hold/$id1" ]
Q list >"$T/list2.out" 2>&1
check "list marks it with '!'" grep -q "^$id1! " "$T/list2.out"
Q delete "$id2" >"$T/delete.out" 2>&1
check "delete: '$id2: removed'" grep -qx "$id2: removed" "$T/delete.out"
check "delete: the file is gone" [ ! -e "$T/spool/queue/$id2" ]

sink_start sink "$hop"
Q flush >"$T/flush.out" 2>&1
check "flush is taken" [ $? -eq 0 ]
check "flush: the two left are delivered" sink_wait sink 2 10
sleep 1
check "the deleted and the held one are not" [ "$(sink_count sink)" -eq 2 ]
Q flush "$id1" >"$T/flush2.out" 2>&1
check "flush of a held message is refused" \
    grep -q 'no such message in the active queue (it is on hold' "$T/flush2.out"
Q release "$id1" >"$T/release.out" 2>&1
check "release: '$id1: released from hold'" \
    grep -qx "$id1: released from hold" "$T/release.out"
check "release: delivered" sink_wait sink 3 10

timeout 60 "$PY" "$LOAD" --port "$port" --prefix tools2 --count 1 \
    --accepted "$T/accepted2" >/dev/null 2>&1
sink_wait sink 4 10
Q list --json >"$T/list3.json"
check "queue empty again" [ ! -s "$T/list3.json" ]

# requeue ALL from hold
hop_kill() {
    pkill_pid=$(ss -Hltnp "sport = :$hop" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)
    [ -n "$pkill_pid" ] && kill "$pkill_pid"
    i=0
    while [ -n "$(ss -Hltn "sport = :$hop" 2>/dev/null)" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}
hop_kill
timeout 60 "$PY" "$LOAD" --port "$port" --prefix tools3 --count 1 \
    --accepted "$T/accepted3" >/dev/null 2>&1
sleep 0.5
id5=$(Q list --json | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["queue_id"])')
Q hold ALL >"$T/holdall.out" 2>&1
check "hold ALL: 1 message" grep -qx 'Placed on hold: 1 message' "$T/holdall.out"
sink_start sink2 "$hop"
Q requeue ALL >"$T/requeue.out" 2>&1
check "requeue ALL: '$id5: requeued'" grep -qx "$id5: requeued" "$T/requeue.out"
check "requeue: delivered" sink_wait sink2 1 10

# delete during a delivery attempt
hop_kill
mkdir -p "$T/slow"
chown nobody "$T/slow"
smtp-sink -u nobody -4 -w 3 -d "$T/slow/msg." "127.0.0.1:$hop" 64 \
    >>"$T/slow.log" 2>&1 &
smtpd_track $!
wait_listen "$hop"
timeout 60 "$PY" "$LOAD" --port "$port" --prefix race --count 1 \
    --accepted "$T/accepted4" >/dev/null 2>&1
sleep 1
id6=$(grep -o '[0-9A-F]*: from=<load@client.example>' "$T/rcd.log" | tail -n 1 | cut -d: -f1)
Q delete "$id6" >"$T/race.out" 2>&1
check "delete during delivery wins at once" \
    grep -q "^$id6: removed (a delivery attempt was under way" "$T/race.out"
check "the attempt ends and logs the removal" \
    wait_grep "$id6: removed" "$T/rcd.log" 10
Q flush >/dev/null 2>&1
sleep 1
check "not brought back" \
    [ ! -e "$T/spool/queue/$id6" ] && [ ! -e "$T/spool/hold/$id6" ]
check "not tried again after a flush" \
    [ "$(grep -c "$id6: to=" "$T/rcd.log")" -eq 1 ]
check "the next hop got it at most once" [ "$(sink_count slow)" -le 1 ]

# hold during a delivery attempt: waits, then finds it delivered
timeout 60 "$PY" "$LOAD" --port "$port" --prefix race2 --count 1 \
    --accepted "$T/accepted5" >/dev/null 2>&1
sleep 1
id7=$(grep -o '[0-9A-F]*: from=<load@client.example>' "$T/rcd.log" | tail -n 1 | cut -d: -f1)
start=$(date +%s)
Q hold "$id7" >"$T/race2.out" 2>&1
rc=$?
took=$(($(date +%s) - start))
check "hold during delivery waited for the attempt (${took}s)" [ "$took" -ge 1 ]
check "and then finds it delivered, not held (rc $rc)" \
    sh -c "[ $rc -ne 0 ] && grep -q 'no such message' '$T/race2.out' && [ ! -e '$T/spool/hold/$id7' ]"
check "delivered once" wait_grep "$id7: to=<rcpt@dest.example>, .*status=sent" "$T/rcd.log" 5
rcd_stop rcd
Q flush >"$T/down.out" 2>&1
check "flush without a daemon says so" \
    sh -c "grep -q 'not running' '$T/down.out'"
finish
