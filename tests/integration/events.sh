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
# 3b. Entries that expire: "relaychain check" refuses a suppress_expiry
#    that is junk, too large or not whole seconds, with file:line;
#    "suppress add --expires" refuses a past date and junk. An entry
#    imported with an expiry in the past refuses nothing (250), one
#    added --expires 30d refuses with "until DATE", one added --expires
#    2s refuses, then (bounded wait) lets the address through; an add
#    by hand after the expiry suppresses again. list hides expired
#    entries unless --all; export writes the expires column. Restarted
#    with suppress_expiry = 5s: a hard bounce suppresses for 5 s, then
#    the address passes, bounces again and is suppressed again. A store
#    made before the column (by hand, sqlite3): report reads it as it
#    is, suppress list adds the column and keeps its rows.
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
. "$top_srcdir/tests/integration/events_lib.sh"

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
    grep -q '^gone@dest.example,,hard bounce 550 5.1.1,[0-9]*,$' "$T/export.csv"
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

# --- 3b. suppression entries that expire
cp "$T/q.conf" "$T/bad.conf"
echo "suppress_expiry = 1500ms" >>"$T/bad.conf"
check "suppress_expiry of 1500ms: not whole seconds" \
    refused "$T/bad.conf" suppress_expiry "not a whole number of seconds"
sed -i 's/^suppress_expiry = .*/suppress_expiry = soon/' "$T/bad.conf"
check "suppress_expiry = soon: refused" refused "$T/bad.conf" suppress_expiry "invalid time"
sed -i 's/^suppress_expiry = .*/suppress_expiry = 5000d/' "$T/bad.conf"
check "suppress_expiry = 5000d: out of range" refused "$T/bad.conf" suppress_expiry "out of range"
sed -i 's/^suppress_expiry = .*/suppress_expiry = 90d/' "$T/bad.conf"
check "suppress_expiry = 90d is taken" "$RC" check -c "$T/bad.conf"
grep -v '^events_' "$T/q.conf" >"$T/bad.conf"
echo "suppress_expiry = 90d" >>"$T/bad.conf"
check "suppress_expiry without events_store" refused "$T/bad.conf" suppress_expiry "without events_store"

# add_refused WHEN REASON - "suppress add --expires WHEN" fails (2), says
# REASON, and adds nothing
add_refused() {
    local out rc
    out=$("$RC" suppress -c "$T/q.conf" add never-added@dest.example --expires "$1" 2>&1)
    rc=$?
    if [ $rc -ne 2 ] || ! printf '%s\n' "$out" | grep -q "$2"; then
        echo "add_refused: got $rc: $out" >&2
        return 1
    fi
    [ -z "$(q "SELECT 1 FROM suppression WHERE rcpt = 'never-added@dest.example'")" ]
}
check "--expires 2001-01-01: in the past" add_refused 2001-01-01 "in the past"
check "--expires 5x: unknown unit" add_refused 5x "unknown unit"
check "--expires soon: junk" add_refused soon "want a duration from now"
check "--expires 0d: refused" add_refused 0d "ends at once"
check "--expires 99999999d: too far" add_refused 99999999d "more than 100 years"
check "--expires 2026-13-45: not a date" add_refused 2026-13-45 "want a duration"

# rcpt ADDR - the reply to RCPT TO:<ADDR> (the line after it in swaks's
# transcript)
rcpt() {
    swaks --server 127.0.0.1:$port --from news@client.example --to "$1" \
        --quit-after RCPT 2>&1 | awk '/-> RCPT TO:/ { getline; print; exit }'
}
printf '%s\n' 'recipient,stream,reason,time,expires' \
    'past@dest.example,,imported,1700000000,1700000100' >"$T/past.csv"
check "import of an entry whose expiry has passed" \
    sh -c "'$RC' suppress -c '$T/q.conf' import <'$T/past.csv' | grep -q ' 1 addresses'"
check "it is in the store, expired: $(q "SELECT rcpt, expires FROM suppression WHERE rcpt LIKE 'past@%'")" \
    [ "$(q "SELECT expires FROM suppression WHERE rcpt = 'past@dest.example'")" = 1700000100 ]
r=$(rcpt past@dest.example)
check "RCPT to an entry that expired is taken: $r" \
    sh -c "printf '%s' '$r' | grep -q '250 2.1.5'"
check "suppress add --expires 30d" \
    "$RC" suppress -c "$T/q.conf" add Live@dest.example "asked to pause" --expires 30d
until=$(date -u -d '+30 days' +%Y-%m-%d)
r=$(rcpt live@dest.example)
check "RCPT to a live expiring entry: 550 with until $until: $r" \
    sh -c "printf '%s' '$r' | grep -q '550 5.7.1 recipient suppressed (asked to pause, 20[0-9-]*, until $until)'"
"$RC" suppress -c "$T/q.conf" add live@dest.example "again" --expires 1d >"$T/again.out" 2>&1
check "adding over a live entry keeps it and says so: $(cat "$T/again.out")" \
    sh -c "grep -q 'listed already' '$T/again.out' && [ \"\$(sqlite3 '$T/events.db' \"SELECT reason FROM suppression WHERE rcpt = 'live@dest.example'\")\" = 'asked to pause' ]"
check "suppress add --expires 2s" \
    "$RC" suppress -c "$T/q.conf" add brief@dest.example --expires 2s
r=$(rcpt brief@dest.example)
check "refused while it lasts: $r" sh -c "printf '%s' '$r' | grep -q '550 5.7.1 recipient suppressed (added by hand, 20[0-9-]*, until '"
i=0
while [ $i -lt 40 ]; do
    r=$(rcpt brief@dest.example)
    case $r in *"250 2.1.5"*) break ;; esac
    sleep 0.25
    i=$((i + 1))
done
check "taken once it has expired (${i} tries): $r" sh -c "printf '%s' '$r' | grep -q '250 2.1.5'"
"$RC" suppress -c "$T/q.conf" list >"$T/list3.out" 2>&1
"$RC" suppress -c "$T/q.conf" list --all >"$T/list3all.out" 2>&1
check "list: the live entry with its expiry, gone@ for ever: $(tr '\n' ' ' <"$T/list3.out")" \
    sh -c "grep -q '^live@dest.example	\*	20[0-9: -]*	until $until [0-9:]*	asked to pause\$' '$T/list3.out' && grep -q '^gone@dest.example	\*	20[0-9: -]*	never	hard bounce' '$T/list3.out'"
check "list leaves out the expired entries" \
    sh -c "! grep -q -e '^past@' -e '^brief@' '$T/list3.out'"
check "list --all shows them, marked: $(grep -e past@ -e brief@ "$T/list3all.out" | tr '\n' ' ')" \
    sh -c "grep -q '^past@dest.example	\*	2023-11-14 22:13:20	expired 2023-11-14 22:15:00	imported\$' '$T/list3all.out' && grep -q '^brief@dest.example	.*	expired 20' '$T/list3all.out'"
"$RC" suppress -c "$T/q.conf" export >"$T/export3.csv"
"$RC" suppress -c "$T/q.conf" export --all >"$T/export3all.csv"
check "export: the expires column, empty for never: $(tr '\n' ' ' <"$T/export3.csv")" \
    sh -c "head -n 1 '$T/export3.csv' | grep -qx 'recipient,stream,reason,time,expires' && grep -q '^live@dest.example,,asked to pause,[0-9]*,[0-9]*\$' '$T/export3.csv' && grep -q '^gone@dest.example,,hard bounce 550 5.1.1,[0-9]*,\$' '$T/export3.csv' && ! grep -q '^past@' '$T/export3.csv'"
check "export --all has the expired entries" \
    grep -q '^past@dest.example,,imported,1700000000,1700000100$' "$T/export3all.csv"
check "an add after the expiry suppresses again" \
    "$RC" suppress -c "$T/q.conf" add brief@dest.example "back on"
r=$(rcpt brief@dest.example)
check "RCPT refused again, for ever (no until): $r" \
    sh -c "printf '%s' '$r' | grep -q '550 5.7.1 recipient suppressed (back on, 20[0-9-]*)\$'"
printf '%s\n' 'recipient,stream,reason,time,expires' 'x@dest.example,,r,1,soon' >"$T/bad.csv"
check "import refuses a bad expiry with its line" \
    sh -c "! '$RC' suppress -c '$T/q.conf' import <'$T/bad.csv' 2>'$T/badcsv.out' && grep -q 'line 2: bad expiry' '$T/badcsv.out'"

# a hard bounce with suppress_expiry = 5s: suppressed for 5 s, then
# taken, bounced again and suppressed again
rcd_stop rcd >/dev/null 2>&1
printf '%s\n' 'gone@dest.example 550 5.1.1 no such user here' \
    'bye@dest.example 550 5.1.1 gone for good' >"$T/pf/etc/rcpt"
pfx_stop pf
pfx_start pf || finish
cp "$T/q.conf" "$T/q.noexp.conf"
echo "suppress_expiry = 5s" >>"$T/q.conf"
rcd_start rcd "$T/q.conf" "$port" || finish
swaks --server 127.0.0.1:$port --from news@client.example \
    --to bye@dest.example --header 'Message-Id: <bye-1@client.example>' >"$T/bye1.out" 2>&1
check "a hard bounce puts bye@ on the list for 5 s" \
    wait_q "SELECT expires - t FROM suppression WHERE rcpt = 'bye@dest.example'" 5 15
r=$(rcpt bye@dest.example)
check "RCPT refused, until today: $r" \
    sh -c "printf '%s' '$r' | grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1, 20[0-9-]*, until 20[0-9-]*)'"
t1=$(q "SELECT t FROM suppression WHERE rcpt = 'bye@dest.example'")
i=0
while [ $i -lt 60 ]; do
    swaks --server 127.0.0.1:$port --from news@client.example \
        --to bye@dest.example --header 'Message-Id: <bye-2@client.example>' >"$T/bye2.out" 2>&1
    grep -q '250 2.0.0 Ok: queued as' "$T/bye2.out" && break
    sleep 0.25
    i=$((i + 1))
done
check "once expired bye@ is taken again" grep -q '250 2.0.0 Ok: queued as' "$T/bye2.out"
check "it bounces again and the bounce replaces the expired entry" \
    wait_q "SELECT t > $t1 AND expires - t = 5 FROM suppression WHERE rcpt = 'bye@dest.example'" 1 15
r=$(rcpt bye@dest.example)
check "RCPT refused again: $r" sh -c "printf '%s' '$r' | grep -q '550 5.7.1 recipient suppressed (hard bounce'"
check "one row for bye@, two bounces" \
    [ "$(q "SELECT (SELECT count(*) FROM suppression WHERE rcpt = 'bye@dest.example') || ' ' || (SELECT count(*) FROM events WHERE type = 'bounced' AND rcpt = 'bye@dest.example')")" = "1 2" ]
rcd_stop rcd >/dev/null 2>&1
cp "$T/q.noexp.conf" "$T/q.conf"
rcd_start rcd "$T/q.conf" "$port" || finish

# a store made before the expires column
sqlite3 "$T/old.db" "CREATE TABLE events (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, t INTEGER NOT NULL, type TEXT NOT NULL, qid TEXT NOT NULL, msgid TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL, rcpt_domain TEXT NOT NULL, stream TEXT NOT NULL, size INTEGER NOT NULL, code INTEGER NOT NULL, dsn TEXT NOT NULL, hard INTEGER NOT NULL, next_try INTEGER NOT NULL, relay TEXT NOT NULL, text TEXT NOT NULL); CREATE TABLE suppression (rcpt TEXT NOT NULL, stream TEXT NOT NULL, reason TEXT NOT NULL, t INTEGER NOT NULL, PRIMARY KEY (rcpt, stream)); INSERT INTO suppression VALUES ('kept@dest.example', '', 'hard bounce 550 5.1.1', 1700000000);"
sed "s|^events_store = .*|events_store = sqlite:$T/old.db|" "$T/q.conf" >"$T/old.conf"
check "report reads an old store" "$RC" report -c "$T/old.conf"
check "and leaves it as it is" \
    [ "$(sqlite3 "$T/old.db" "SELECT count(*) FROM pragma_table_info('suppression') WHERE name = 'expires'")" = 0 ]
"$RC" suppress -c "$T/old.conf" list >"$T/old.out" 2>&1
check "suppress list migrates it and shows its row: $(cat "$T/old.out")" \
    grep -q '^kept@dest.example	\*	2023-11-14 22:13:20	never	hard bounce 550 5.1.1$' "$T/old.out"
check "the column is there, the row kept" \
    [ "$(sqlite3 "$T/old.db" "SELECT count(*) FROM suppression WHERE rcpt = 'kept@dest.example' AND expires = 0")" = 1 ]

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
