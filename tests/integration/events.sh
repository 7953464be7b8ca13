#!/bin/sh
# events - delivery events, the suppression list and the reports, end to
# end through relaychaind in queue mode with a private Postfix as the
# next hop
#
# 0. "relaychain check" refuses, with file:line, what is not built
#    (a PostgreSQL store without a spool or with a password in its URI,
#    not repeated), a store without
#    delivery = queue, stream_map without a store, a bad stream_map.
# 1. Postfix answers 550 5.1.1 for gone@dest.example, 450 4.2.0 for
#    later@dest.example (until its map changes and it is reloaded) and
#    takes ok@dest.example. One message to the three: received events,
#    a hard bounced event for gone@ with Postfix's reply, a deferred
#    event for later@ with its next try, a delivered event for ok@;
#    after the map changes (and Postfix restarts), later@ is delivered.
# 2. gone@ is now suppressed: RCPT TO:<gone@...> gets 550 5.7.1
#    recipient suppressed, with a suppressed event; "relaychain
#    suppress list" shows it, export writes CSV, remove lets the
#    address through again, import puts it back.
# 3. "relaychain events --message-id | --recipient" show the history,
#    "relaychain report --by domain --json" counts it.
# 4. The store is locked by another writer during a load of 20
#    messages: mail flows (all accepted and delivered), "relaychain
#    status" shows the store failing and events spooled; after the lock
#    goes, every event is in the store exactly once.
# 5. Restarted with on_suppressed = drop and maximal_queue_lifetime =
#    2s: a reload that changes an events key is told to restart; a
#    message Postfix keeps deferring gets an expired event; RCPT for
#    gone@ gets 250: a message to ok@ and gone@ reaches ok@ alone, one
#    to gone@ alone is taken and discarded, each with a suppressed event.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

RC="$top_builddir/relaychain"
command -v sqlite3 >/dev/null 2>&1 || {
    echo "$0: sqlite3 is missing (scripts/setup installs it)" >&2
    exit 1
}
set -- $(free_ports 3)
port=$1 pf_port=$2 pf_sink=$3

pfx_init pf
printf '%s\n' 'gone@dest.example 550 5.1.1 no such user here' \
    'later@dest.example 450 4.2.0 try again later' >"$T/pf/etc/rcpt"
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "smtpd_recipient_restrictions = check_recipient_access texthash:$T/pf/etc/rcpt, permit_mynetworks, reject"
echo "127.0.0.1:$pf_port inet n - n - - smtpd" | pfx_master pf
sink_start pfsink "$pf_sink"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

printf '%s\n' "delivery = queue" "queue_directory = $T/spool" \
    "minimal_backoff_time = 1s" "maximal_backoff_time = 2s" \
    "events_store = sqlite:$T/events.db" "events_batch_time = 50ms" \
    "events_buffer = 8" | rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$pf_port"
rcd_start rcd "$T/q.conf" "$port" || finish

# --- 0. what is not built, or would do nothing, is refused with file:line
# refused CONF KEY REASON - "relaychain check" fails naming CONF's line
# that sets KEY, and REASON
refused() {
    local line out
    line=$(grep -n "^$2 *=" "$1" | tail -n 1 | cut -d: -f1)
    out=$("$RC" check -c "$1" 2>&1)
    if ! printf '%s\n' "$out" | grep -q "$1:$line: $2: .*$3"; then
        echo "refused: got $out" >&2
        return 1
    fi
}
sed 's|^events_store = .*|events_store = postgresql://relay@127.0.0.1/events|' "$T/q.conf" >"$T/bad.conf"
check "a PostgreSQL store without events_spool" refused "$T/bad.conf" events_store "needs events_spool"
sed 's|^events_store = .*|events_store = postgresql://relay:s3cret@127.0.0.1/events|' "$T/q.conf" >"$T/bad.conf"
check "a PostgreSQL URI with a password in it" refused "$T/bad.conf" events_store "password"
check "the refused password is not repeated" sh -c '! "$1" check -c "$2" 2>&1 | grep -q s3cret' sh "$RC" "$T/bad.conf"
sed 's|^delivery = .*|delivery = through|' "$T/q.conf" >"$T/bad.conf"
check "events_store without delivery = queue" refused "$T/bad.conf" events_store "delivery = queue only"
grep -v '^events_' "$T/q.conf" >"$T/bad.conf"
echo "stream_map = $T/streams" >>"$T/bad.conf"
check "stream_map without events_store" refused "$T/bad.conf" stream_map "without events_store"
printf '%s\n' '/^news@/ newsletters' '/(unclosed/ x' >"$T/streams"
cp "$T/q.conf" "$T/bad.conf"
echo "stream_map = $T/streams" >>"$T/bad.conf"
check "a stream_map that does not load: its own file:line too" \
    refused "$T/bad.conf" stream_map "streams:2"
check "relaychain check takes the test's configuration" "$RC" check -c "$T/q.conf" >/dev/null

q() { sqlite3 "$T/events.db" "$1" 2>/dev/null; }
# wait_q SQL WANT SECONDS - until the query gives WANT
wait_q() {
    local i=0
    while [ $i -lt $(($3 * 10)) ]; do
        [ "$(q "$1")" = "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "wait_q: got '$(q "$1")', want '$2': $1" >&2
    return 1
}

# --- 1. bounce, deferral, delivery
swaks --server 127.0.0.1:$port --from news@client.example \
    --to ok@dest.example,gone@dest.example,later@dest.example \
    --header 'Message-Id: <ev-1@client.example>' >"$T/send1.out" 2>&1
check "three recipients accepted" grep -q '250 2.0.0 Ok: queued as' "$T/send1.out"
check "three received events" \
    wait_q "SELECT count(*) FROM events WHERE type='received' AND msgid='<ev-1@client.example>'" 3 10
check "a hard bounced event for gone@ with Postfix's reply" \
    wait_q "SELECT hard || ' ' || code || ' ' || dsn FROM events WHERE type='bounced' AND rcpt='gone@dest.example'" "1 550 5.1.1" 10
check "the bounce keeps Postfix's words" \
    [ -n "$(q "SELECT 1 FROM events WHERE type='bounced' AND text LIKE '%no such user here%'")" ]
check "a delivered event for ok@ with the reply" \
    wait_q "SELECT code FROM events WHERE type='delivered' AND rcpt='ok@dest.example' AND text LIKE '2.0.0 Ok%'" 250 10
check "a deferred event for later@ with a next try" \
    wait_q "SELECT 1 FROM events WHERE type='deferred' AND rcpt='later@dest.example' AND code=450 AND next_try > t LIMIT 1" 1 10
printf '%s\n' 'gone@dest.example 550 5.1.1 no such user here' >"$T/pf/etc/rcpt"
# a restart, not a reload: the pooled connection's smtpd keeps its map
pfx_stop pf
pfx_start pf || finish
check "later@ delivered after the deferral" \
    wait_q "SELECT count(*) FROM events WHERE type='delivered' AND rcpt='later@dest.example'" 1 20

# --- 2. the suppression list at RCPT
"$RC" suppress -c "$T/q.conf" list >"$T/list.out" 2>&1
check "suppress list shows gone@: $(cat "$T/list.out")" \
    grep -q '^gone@dest.example	\*	.*hard bounce 550 5.1.1' "$T/list.out"
swaks --server 127.0.0.1:$port --from news@client.example \
    --to gone@dest.example >"$T/send2.out" 2>&1
check "RCPT to a suppressed recipient: 550 5.7.1 recipient suppressed" \
    grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1, 20[0-9-]*)' "$T/send2.out"
check "a suppressed event" \
    wait_q "SELECT count(*) FROM events WHERE type='suppressed' AND rcpt='gone@dest.example'" 1 10
"$RC" suppress -c "$T/q.conf" export >"$T/export.csv"
check "export is CSV: $(tr '\n' ' ' <"$T/export.csv")" \
    grep -q '^gone@dest.example,,hard bounce 550 5.1.1,[0-9]*$' "$T/export.csv"
check "remove" "$RC" suppress -c "$T/q.conf" remove gone@dest.example
swaks --server 127.0.0.1:$port --from news@client.example \
    --to gone@dest.example >"$T/send3.out" 2>&1
check "after remove the recipient is accepted again" \
    grep -q '250 2.0.0 Ok: queued as' "$T/send3.out"
check "import puts it back" \
    sh -c "'$RC' suppress -c '$T/q.conf' import <'$T/export.csv' | grep -q ' 1 addresses'"
check "and RCPT is refused again" \
    sh -c "swaks --server 127.0.0.1:$port --from news@client.example --to gone@dest.example 2>&1 | grep -q '550 5.7.1 recipient suppressed'"

sed "s|^events_store = .*|events_store = sqlite:$T/none.db|" "$T/q.conf" >"$T/none.conf"
"$RC" suppress -c "$T/none.conf" add x@dest.example >"$T/none.out" 2>&1
check "suppress on a store that does not exist: refused, nothing created" \
    sh -c "grep -q 'none.db.*relaychaind creates it' '$T/none.out' && [ ! -e '$T/none.db' ]"

# --- 3. history and report
"$RC" events -c "$T/q.conf" --message-id '<ev-1@client.example>' >"$T/hist.out" 2>&1
check "events --message-id: received, bounced (hard), deferred, delivered" \
    sh -c "grep -q ' received .*to=<ok@dest.example>' '$T/hist.out' && grep -q ' bounced .*to=<gone@dest.example>.*, hard' '$T/hist.out' && grep -q ' deferred .*to=<later@dest.example>.*next_try=' '$T/hist.out' && grep -q ' delivered .*to=<later@dest.example>' '$T/hist.out'"
"$RC" events -c "$T/q.conf" --recipient LATER@dest.example >"$T/hist2.out" 2>&1
check "events --recipient, in any case" \
    grep -q ' delivered .*to=<later@dest.example>' "$T/hist2.out"
check "events with nothing found fails" \
    sh -c "! '$RC' events -c '$T/q.conf' --message-id '<none@x>' 2>/dev/null"
"$RC" report -c "$T/q.conf" --by domain --json >"$T/report.json" 2>&1
"$PY" - "$T/report.json" >"$T/report.check" 2>&1 <<'PYEOF'
import json, sys
rows = {r["key"]: r for r in json.load(open(sys.argv[1]))}
d = rows["dest.example"]
want = {"received": 4, "delivered": 2, "bounced_hard": 2,
        "bounced_soft": 0, "suppressed": 2, "delivered_rate": 50.0,
        "bounce_rate": 50.0}
if d["deferred"] < 1:
    print("got no deferral")
    sys.exit(0)
bad = {k: (d[k], v) for k, v in want.items() if d[k] != v}
print("ok" if not bad else "got/want %r" % bad)
PYEOF
check "report --by domain: $(cat "$T/report.check")" grep -qx ok "$T/report.check"
# the day also has the two non-delivery notifications to news@, each
# received (from the relay itself) and delivered
check "report --by day" \
    sh -c "'$RC' report -c '$T/q.conf' --by day | grep -q '^20[0-9-]*  *6  *4 '"
check "the notifications are received events with the null sender" \
    wait_q "SELECT count(*) FROM events WHERE type='received' AND sender='' AND rcpt='news@client.example' AND text='non-delivery notification'" 2 5
check "report --until before everything: no rows" \
    sh -c "[ \"\$('$RC' report -c '$T/q.conf' --until 2001-01-01 --json)\" = '[]' ]"
check "report refuses a bad --by" \
    sh -c "! '$RC' report -c '$T/q.conf' --by week 2>/dev/null"

# --- 4. the store locked during a load: mail flows, events spool
before=$(sink_count pfsink)
# the lock holds until $T/unlock appears (60 s at most)
"$PY" - "$T/events.db" "$T/unlock" >"$T/lock.out" 2>&1 <<'PYEOF' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
for i in range(600):
    if os.path.exists(sys.argv[2]):
        break
    time.sleep(0.1)
c.execute("COMMIT")
PYEOF
lockpid=$!
wait_grep locked "$T/lock.out" 5 || fail "the lock was not taken"
i=0
while [ $i -lt 20 ]; do
    swaks --server 127.0.0.1:$port --from news@client.example \
        --to ok@dest.example --header "Message-Id: <load-$i@client.example>" \
        >"$T/load.$i.out" 2>&1
    grep -q '250 2.0.0 Ok: queued as' "$T/load.$i.out" || break
    i=$((i + 1))
done
check "20 messages accepted while the store is locked" [ $i -eq 20 ]
"$RC" status -c "$T/q.conf" >"$T/status.out" 2>&1
check "status shows the store failing and events spooled: $(grep events: "$T/status.out")" \
    grep -q '^events: store failing, [0-9]* buffered, [1-9][0-9]* spooled' "$T/status.out"
check "the mail was delivered meanwhile" sink_wait pfsink $((before + 20)) 20
touch "$T/unlock"
wait "$lockpid"
check "every load event is in the store once, after the lock" \
    wait_q "SELECT count(*) || ' ' || count(DISTINCT uid) FROM events WHERE msgid LIKE '<load-%'" "40 40" 20
"$RC" status -c "$T/q.conf" >"$T/status2.out" 2>&1
check "status: store ok, nothing spooled: $(grep events: "$T/status2.out")" \
    grep -q '^events: store ok, 0 buffered, 0 spooled, [0-9]* written, [1-9][0-9]* replayed, 0 lost' "$T/status2.out"
check "the log tells the failure and the replay" \
    sh -c "grep -q 'events: store .* failing' '$T/rcd.log' && grep -q 'spooled events replayed' '$T/rcd.log'"

# --- 5. on_suppressed = drop: accepted, left off the envelope; and a
# deferral that outlives maximal_queue_lifetime
rcd_stop rcd >/dev/null 2>&1
printf '%s\n' 'never@dest.example 450 4.2.0 not now' >>"$T/pf/etc/rcpt"
pfx_stop pf
pfx_start pf || finish
printf '%s\n' "on_suppressed = drop" "maximal_queue_lifetime = 2s" >>"$T/q.conf"
rcd_start rcd "$T/q.conf" "$port" || finish
# a reload that changes an events key is told it takes a restart
sed 's/^events_batch_time = .*/events_batch_time = 70ms/' "$T/q.conf" >"$T/q2.conf"
cp "$T/q2.conf" "$T/q.conf"
"$RC" reload -c "$T/q.conf" >"$T/reload.out" 2>&1
check "reload names events_batch_time as restart-only: $(cat "$T/reload.out")" \
    grep -q 'events_batch_time changed: restart relaychaind to use it' "$T/reload.out"
swaks --server 127.0.0.1:$port --from news@client.example \
    --to never@dest.example --header 'Message-Id: <never-1@client.example>' \
    >"$T/never.out" 2>&1
check "an expired event once the lifetime is over, with the last reply" \
    wait_q "SELECT code || ' ' || dsn FROM events WHERE type='expired' AND msgid='<never-1@client.example>'" "450 4.2.0" 15
check "expired counts in the report" \
    sh -c "'$RC' report -c '$T/q.conf' --json | grep -q '\"expired\": 1,'"
swaks --server 127.0.0.1:$port --from news@client.example \
    --to ok@dest.example,gone@dest.example \
    --header 'Message-Id: <drop-1@client.example>' >"$T/drop1.out" 2>&1
check "drop: both RCPTs get 250, the message is queued" \
    sh -c "[ \$(grep -c '<-  250 2.1.5 Ok' '$T/drop1.out') -eq 2 ] && grep -q '250 2.0.0 Ok: queued as' '$T/drop1.out'"
check "drop: only ok@ is received and delivered" \
    wait_q "SELECT group_concat(type || ':' || rcpt, ' ') FROM (SELECT type, rcpt FROM events WHERE msgid='<drop-1@client.example>' ORDER BY id)" "received:ok@dest.example delivered:ok@dest.example" 10
check "drop: gone@ has a suppressed event from this session" \
    wait_q "SELECT count(*) FROM events WHERE type='suppressed' AND rcpt='gone@dest.example'" 3 10
swaks --server 127.0.0.1:$port --from news@client.example \
    --to gone@dest.example >"$T/drop2.out" 2>&1
check "drop: a message for the suppressed alone is taken (250) and discarded" \
    sh -c "grep -q '250 2.0.0 Ok: queued as' '$T/drop2.out' && grep -q 'discarded: every recipient suppressed' '$T/rcd.log'"
check "drop: and its suppressed event" \
    wait_q "SELECT count(*) FROM events WHERE type='suppressed' AND rcpt='gone@dest.example'" 4 10

finish
