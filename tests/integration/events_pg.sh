#!/bin/sh
# events_pg - delivery events and the suppression list in a PostgreSQL
# store shared by two relays, against the same load through SQLite
#
# A private PostgreSQL 15 cluster (initdb + pg_ctl as the postgres
# user, 127.0.0.1 and a socket in $T only), a role "relay" with a
# password read from events_store_password_file, a database "events"
# it owns. A private Postfix is the next hop of three relaychaind: A
# and B share the PostgreSQL store, S has its own SQLite store.
#
# 0. A and B start at once on the empty database (the schema is created
#    once, under a lock); "relaychain config" shows no password; the
#    commands take the password from PGPASSFILE as well.
# 1. The same load through A and S: received, delivered, deferred (a
#    450 that is not retried within the test), a hard bounce and its
#    notification, then a suppressed RCPT. "relaychain report" by
#    nothing, day, hour, domain, sender, stream, and --json, is the
#    same for both stores (diff); "relaychain events" reads PostgreSQL.
# 2. The suppression list is shared: the address A's bounce suppressed
#    is refused by B; one added with "relaychain suppress" through B's
#    configuration is refused by A, and removed again through A. A
#    Message-ID that is not UTF-8 is stored with '?' for its bad octet.
#    A relay whose role may not create tables runs on the existing ones;
#    one whose role may not UPDATE the suppression table (which
#    replacing an expired entry needs) is refused, saying so.
# 2b. Entries that expire, alike in both stores: the same CSV (an entry
#    whose expiry has passed, one that lasts, one for ever) imported
#    into S and through B gives the same list --all, export --all and
#    RCPT replies through S and A (250 for the expired one, 550 with
#    "until DATE" for the live one). One added --expires 2s through B
#    is refused by A, then (bounded wait) taken, then refused again
#    once added again; an add over a live entry keeps it and says so.
#    A database with the tables made by hand as the release before
#    this one made them (no expires column, one row): report reads it,
#    suppress refuses it saying relaychaind adds the column; a relay
#    whose role does not own the tables does not start and says how to
#    add it; the owner's relay D (suppress_expiry = 5s) adds it, keeps
#    the row and refuses its address; a hard bounce through D
#    suppresses for 5 s, then the address is taken, bounces again and
#    is suppressed again.
# 3. PostgreSQL is stopped during a load of 20 messages through A: all
#    are accepted and delivered while it is down, "relaychain status"
#    and the log show the store failing and the backlog; B's RCPT
#    lookups fail open. After a restart every event is in the store
#    exactly once, the status shows nothing spooled, and B refuses the
#    suppressed address again.
# 4. The password is in no log and no command output.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/pg_lib.sh"

command -v sqlite3 >/dev/null 2>&1 || {
    echo "$0: sqlite3 is missing (scripts/setup installs it)" >&2
    exit 1
}
set -- $(free_ports 6)
pa=$1 pb=$2 ps=$3 pf_port=$4 pf_sink=$5 pgport=$6

pg_start pg "$pgport" || finish
cp "$T/pg/password" "$T/pgpw"
chmod 600 "$T/pgpw"
PW=$(cat "$T/pgpw")
URI="postgresql://relay@127.0.0.1:$pgport/events"
pq() { PG_DB=events pg_sql pg "$1" 2>/dev/null; }
sq() { sqlite3 "$T/s.db" "$1" 2>/dev/null; }
# wait_eq WHICH SQL WANT SECONDS - until the query (pq or sq) gives WANT
wait_eq() {
    local i=0
    while [ $i -lt $(($4 * 10)) ]; do
        [ "$($1 "$2")" = "$3" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "wait_eq: got '$($1 "$2")', want '$3': $2" >&2
    return 1
}

pfx_init pf
printf '%s\n' 'gone@dest.example 550 5.1.1 no such user here' \
    'later@dest.example 450 4.2.0 try again later' >"$T/pf/etc/rcpt"
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "smtpd_recipient_restrictions = check_recipient_access texthash:$T/pf/etc/rcpt, permit_mynetworks, reject"
echo "127.0.0.1:$pf_port inet n - n - - smtpd" | pfx_master pf
sink_start pfsink "$pf_sink"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

# relay NAME PORT STORE [KEY = VALUE...] - the configuration $T/NAME.conf
relay() {
    local name port store
    name=$1 port=$2 store=$3
    shift 3
    {
        printf '%s\n' "delivery = queue" "queue_directory = $T/q$name" \
            "minimal_backoff_time = 1h" "maximal_backoff_time = 1h" \
            "events_store = $store" "events_batch_time = 50ms"
        for kv in "$@"; do
            echo "$kv"
        done
    } | rcd_conf "$T/$name.conf" "$port" "smtp:[127.0.0.1]:$pf_port"
}
relay a "$pa" "$URI" "events_store_password_file = $T/pgpw" \
    "events_spool = $T/a.spool"
relay b "$pb" "$URI" "events_store_password_file = $T/pgpw" \
    "events_spool = $T/b.spool"
relay s "$ps" "sqlite:$T/s.db"

# --- 0. two relays start at once on the empty database
rcd_test_conf "$T/b.conf"
"$RCD" -f -c "$T/b.conf" 2>>"$T/rcdb.log" &
echo $! >"$T/rcdb.pid"
smtpd_track "$(cat "$T/rcdb.pid")"
rcd_start rcda "$T/a.conf" "$pa" || finish
check "B started beside A on the same empty database" \
    sh -c "wait_b() { i=0; while [ \$i -lt 100 ]; do grep -q 'daemon started' '$T/rcdb.log' && return 0; sleep 0.1; i=\$((i+1)); done; return 1; }; wait_b"
check "B listens" wait_listen "$pb"
rcd_start rcds "$T/s.conf" "$ps" || finish
check "the schema: two tables" \
    [ "$(pq "SELECT count(*) FROM pg_tables WHERE tablename IN ('events', 'suppression')")" = 2 ]
"$RC" config -c "$T/a.conf" >"$T/config.out" 2>&1
check "relaychain config shows the store and the password file" \
    sh -c "grep -q '^events_store = $URI' '$T/config.out' && grep -q '^events_store_password_file = $T/pgpw' '$T/config.out'"

# without events_store_password_file libpq's PGPASSFILE serves
grep -v '^events_store_password_file' "$T/a.conf" >"$T/nopw.conf"
printf '127.0.0.1:%s:events:relay:%s\n' "$pgport" "$PW" >"$T/pgpass"
chmod 600 "$T/pgpass"
check "relaychain report with the password from PGPASSFILE" \
    env PGPASSFILE="$T/pgpass" "$RC" report -c "$T/nopw.conf"
PGPASSFILE=/nonexistent "$RC" report -c "$T/nopw.conf" >"$T/nopw.out" 2>&1
check "and without a password: refused by the server: $(cat "$T/nopw.out")" \
    grep -q 'events_store: connect: .*password' "$T/nopw.out"

# --- 1. the same load through A (PostgreSQL) and S (SQLite)
# send PORT ARGS... - one message; its swaks transcript on stdout
send() {
    local port
    port=$1
    shift
    timeout 60 swaks --server "127.0.0.1:$port" "$@" 2>&1
}
for port in "$pa" "$ps"; do
    send "$port" --from s0@client.example --to gone@dest.example \
        --header 'Message-Id: <gone-1@client.example>' >"$T/gone.$port.out"
done
check "A: the hard bounce is in PostgreSQL" \
    wait_eq pq "SELECT hard || ' ' || code || ' ' || dsn FROM events WHERE type = 'bounced'" "1 550 5.1.1" 20
check "S: the hard bounce is in SQLite" \
    wait_eq sq "SELECT hard || ' ' || code || ' ' || dsn FROM events WHERE type = 'bounced'" "1 550 5.1.1" 20
check "A: the bounce suppressed gone@ in PostgreSQL" \
    wait_eq pq "SELECT rcpt || ' ' || stream FROM suppression" "gone@dest.example " 10
i=1
while [ $i -le 8 ]; do
    for port in "$pa" "$ps"; do
        send "$port" --from "s$((i % 3))@client.example" \
            --to "ok$i@dest.example,later@dest.example,U$i@Other.example" \
            --header "Message-Id: <load-$i@client.example>" >"$T/load.$port.$i.out"
        grep -q '250 2.0.0 Ok: queued as' "$T/load.$port.$i.out" ||
            fail "load $i through $port not queued: $(tail -n 3 "$T/load.$port.$i.out")"
    done
    i=$((i + 1))
done
for port in "$pa" "$ps"; do
    send "$port" --from s1@client.example --to gone@dest.example >"$T/sup.$port.out"
    check "RCPT to the suppressed address refused through $port" \
        grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1, 20' "$T/sup.$port.out"
done
# 8 x (3 received, 2 delivered, 1 deferred) + the bounce (received,
# bounced) + its notification (received, delivered) + 1 suppressed
check "A: all 53 events in PostgreSQL" \
    wait_eq pq "SELECT count(*) || ' ' || count(DISTINCT uid) FROM events" "53 53" 30
check "S: all 53 events in SQLite" \
    wait_eq sq "SELECT count(*) || ' ' || count(DISTINCT uid) FROM events" "53 53" 30
for by in "" day hour domain sender stream; do
    opt=${by:+--by $by}
    "$RC" report -c "$T/a.conf" $opt >"$T/rep.a.$by" 2>&1
    "$RC" report -c "$T/s.conf" $opt >"$T/rep.s.$by" 2>&1
    check "report ${by:-total}: the same from both stores: $(diff "$T/rep.s.$by" "$T/rep.a.$by" | head -n 6 | tr '\n' ' ')" \
        diff "$T/rep.s.$by" "$T/rep.a.$by"
done
# (this hour or, across its turn, the one before)
check "report --by hour: this hour, UTC: $(tail -n 1 "$T/rep.a.hour")" \
    grep -q -e "^$(date -u +'%Y-%m-%d %H'):00 *[0-9]" \
    -e "^$(date -u -d '-2 min' +'%Y-%m-%d %H'):00 *[0-9]" "$T/rep.a.hour"
check "report --by day: today, UTC" grep -q -e "^$(date -u +%Y-%m-%d) *[0-9]" \
    -e "^$(date -u -d '-2 min' +%Y-%m-%d) *[0-9]" "$T/rep.a.day"
check "report --by domain has both domains, lower-cased" \
    sh -c "grep -q '^dest.example ' '$T/rep.a.domain' && grep -q '^other.example ' '$T/rep.a.domain'"
"$RC" report -c "$T/a.conf" --by domain --json >"$T/rep.a.json" 2>&1
"$RC" report -c "$T/s.conf" --by domain --json >"$T/rep.s.json" 2>&1
check "report --json: the same from both stores" diff "$T/rep.s.json" "$T/rep.a.json"
"$PY" - "$T/rep.a.json" >"$T/rep.check" 2>&1 <<'PYEOF'
import json, sys
rows = {r["key"]: r for r in json.load(open(sys.argv[1]))}
d = rows["dest.example"]
want = {"received": 17, "delivered": 8, "deferred": 8, "bounced_hard": 1,
        "suppressed": 1}
bad = {k: (d[k], v) for k, v in want.items() if d[k] != v}
print("ok" if not bad else "got/want %r" % bad)
PYEOF
check "report --json from PostgreSQL counts the load: $(cat "$T/rep.check")" \
    grep -qx ok "$T/rep.check"
"$RC" events -c "$T/a.conf" --message-id '<load-3@client.example>' >"$T/hist.out" 2>&1
check "events --message-id from PostgreSQL: received, deferred, delivered" \
    sh -c "grep -q ' received .*to=<ok3@dest.example>' '$T/hist.out' && grep -q ' deferred .*to=<later@dest.example>.*next_try=' '$T/hist.out' && grep -q ' delivered .*to=<u3@other.example>' '$T/hist.out'"
"$RC" events -c "$T/a.conf" --recipient GONE@dest.example >"$T/hist2.out" 2>&1
"$RC" events -c "$T/s.conf" --recipient GONE@dest.example >"$T/hist2s.out" 2>&1
check "events --recipient: the same event types from both stores" \
    sh -c "[ \"\$(awk '{print \$2}' '$T/hist2.out')\" = \"\$(awk '{print \$2}' '$T/hist2s.out')\" ] && grep -q ' bounced .*, hard' '$T/hist2.out'"

# --- 2. one suppression list for both relays
send "$pb" --from s2@client.example --to gone@dest.example >"$T/b.sup.out"
check "B refuses the address A's bounce suppressed" \
    grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1, 20' "$T/b.sup.out"
check "suppress add through B's configuration" \
    "$RC" suppress -c "$T/b.conf" add shared@dest.example "asked to stop"
send "$pa" --from s2@client.example --to shared@dest.example >"$T/a.sup.out"
check "A refuses it at once" \
    grep -q '550 5.7.1 recipient suppressed (asked to stop, 20' "$T/a.sup.out"
"$RC" suppress -c "$T/a.conf" list >"$T/list.out" 2>&1
check "suppress list through A shows both: $(tr '\n' ' ' <"$T/list.out")" \
    sh -c "grep -q '^gone@dest.example	' '$T/list.out' && grep -q '^shared@dest.example	.*asked to stop' '$T/list.out'"
check "suppress remove through A" "$RC" suppress -c "$T/a.conf" remove shared@dest.example
send "$pb" --from s2@client.example --to shared@dest.example >"$T/b.sup2.out"
check "then B takes the address again" grep -q '250 2.0.0 Ok: queued as' "$T/b.sup2.out"
"$RC" suppress -c "$T/a.conf" export >"$T/export.csv" 2>&1
check "export: CSV of the shared list: $(tr '\n' ' ' <"$T/export.csv")" \
    grep -q '^gone@dest.example,,hard bounce 550 5.1.1,[0-9]*,$' "$T/export.csv"
printf '%s\n' 'imported1@dest.example,,from a file,1765000000' \
    'imported2@dest.example,news,from a file,1765000000' >>"$T/export.csv"
check "import through B (one transaction, pipelined)" \
    sh -c "'$RC' suppress -c '$T/b.conf' import <'$T/export.csv' | grep -q ' 3 addresses'"
check "the imported rows are in the shared list" \
    [ "$(pq "SELECT count(*) FROM suppression WHERE reason = 'from a file'")" = 2 ]

# a Message-ID that is not UTF-8 (PostgreSQL refuses such text, and
# with it a whole batch, for ever on replay): stored with '?' for the
# octet, and the store keeps working
bad=$(printf '<bad\377id@client.example>')
send "$pa" --from s2@client.example --to ok@dest.example \
    --header "Message-Id: $bad" >"$T/bad8.out"
check "a Message-ID with an octet that is not UTF-8: stored, '?' for it" \
    wait_eq pq "SELECT count(*) FROM events WHERE msgid = '<bad?id@client.example>'" 2 10
check "the store still works: nothing spooled" \
    sh -c "'$RC' status -c '$T/a.conf' | grep -q '^events: store ok, 0 buffered, 0 spooled'"

# a role that may write the tables but not create any (PostgreSQL 15:
# no CREATE on the public schema but for the database's owner) runs
# on the tables the owner's relay made
pq "CREATE ROLE limited LOGIN PASSWORD '$PW'" >/dev/null
pq "GRANT SELECT, INSERT, DELETE ON events, suppression TO limited; GRANT UPDATE ON suppression TO limited; GRANT USAGE ON SEQUENCE events_id_seq TO limited" >/dev/null
set -- $(free_ports 1)
pc=$1
relay c "$pc" "postgresql://limited@127.0.0.1:$pgport/events" \
    "events_store_password_file = $T/pgpw" "events_spool = $T/c.spool"
rcd_start rcdc "$T/c.conf" "$pc" || fail "a relay whose role may not create tables does not start"
send "$pc" --from s2@client.example --to ok@dest.example \
    --header 'Message-Id: <limited-1@client.example>' >"$T/c.out"
check "its events are written" \
    wait_eq pq "SELECT count(*) FROM events WHERE msgid = '<limited-1@client.example>'" 2 10
rcd_stop rcdc >/dev/null
# without UPDATE on the suppression table an expired entry could not be
# replaced, and each batch with a bounce in it would fail for ever
pq "CREATE ROLE noupd LOGIN PASSWORD '$PW'; GRANT SELECT, INSERT, DELETE ON events, suppression TO noupd; GRANT USAGE ON SEQUENCE events_id_seq TO noupd" >/dev/null
set -- $(free_ports 1)
relay n "$1" "postgresql://noupd@127.0.0.1:$pgport/events" \
    "events_store_password_file = $T/pgpw" "events_spool = $T/n.spool"
rcd_test_conf "$T/n.conf"
timeout 30 "$RCD" -f -c "$T/n.conf" >"$T/rcdn.log" 2>&1
nrc=$?
check "a relay whose role may not UPDATE the suppression table does not start ($nrc): $(cat "$T/rcdn.log")" \
    sh -c "[ $nrc -ne 0 ] && [ $nrc -ne 124 ] && grep -q 'may not UPDATE the suppression table.*GRANT UPDATE ON suppression' '$T/rcdn.log'"
check "its role still lists the suppression list" \
    sh -c "'$RC' suppress -c '$T/n.conf' list | grep -q '^gone@dest.example'"

# --- 2b. entries that expire, alike in SQLite and PostgreSQL
# rcpt PORT ADDR - the reply to RCPT TO:<ADDR> through PORT
rcpt() {
    timeout 60 swaks --server "127.0.0.1:$1" --from s2@client.example \
        --to "$2" --quit-after RCPT 2>&1 | awk '/-> RCPT TO:/ { getline; print; exit }'
}
far=$(($(date +%s) + 30 * 86400))
until=$(date -u -d "@$far" +%Y-%m-%d)
printf '%s\n' 'recipient,stream,reason,time,expires' \
    'imp-past@dest.example,,imported,1700000000,1700000100' \
    "imp-live@dest.example,,imported,1700000000,$far" \
    'imp-ever@dest.example,,imported,1700000000,' >"$T/imp.csv"
check "import into S" sh -c "'$RC' suppress -c '$T/s.conf' import <'$T/imp.csv' | grep -q ' 3 addresses'"
check "import through B" sh -c "'$RC' suppress -c '$T/b.conf' import <'$T/imp.csv' | grep -q ' 3 addresses'"
for cmd in "list --all" "export --all" list export; do
    "$RC" suppress -c "$T/s.conf" $cmd | grep 'imp-' >"$T/imp.s.out" 2>&1
    "$RC" suppress -c "$T/a.conf" $cmd | grep 'imp-' >"$T/imp.a.out" 2>&1
    check "suppress $cmd: the same from both stores: $(diff "$T/imp.s.out" "$T/imp.a.out" | head -n 4 | tr '\n' ' ')" \
        diff "$T/imp.s.out" "$T/imp.a.out"
done
check "list --all marks the expired entry: $(grep imp-past "$T/imp.a.out" | tr '\t' ' ')" \
    sh -c "'$RC' suppress -c '$T/a.conf' list --all | grep -q '^imp-past@dest.example	\*	2023-11-14 22:13:20	expired 2023-11-14 22:15:00	imported\$'"
check "list leaves it out" \
    sh -c "! '$RC' suppress -c '$T/a.conf' list | grep -q '^imp-past@'"
for a in past live ever; do
    rs=$(rcpt "$ps" "imp-$a@dest.example")
    ra=$(rcpt "$pa" "imp-$a@dest.example")
    check "RCPT imp-$a@: the same reply through S and A: $ra" [ "$rs" = "$ra" ]
done
ra=$(rcpt "$pa" imp-past@dest.example)
check "the expired entry refuses nothing: $ra" sh -c "printf '%s' '$ra' | grep -q '250 2.1.5'"
ra=$(rcpt "$pa" imp-live@dest.example)
check "the live one refuses, until $until: $ra" \
    sh -c "printf '%s' '$ra' | grep -q '550 5.7.1 recipient suppressed (imported, 2023-11-14, until $until)'"
ra=$(rcpt "$pa" imp-ever@dest.example)
check "the one for ever refuses without until: $ra" \
    sh -c "printf '%s' '$ra' | grep -q '550 5.7.1 recipient suppressed (imported, 2023-11-14)\$'"
"$RC" suppress -c "$T/a.conf" add imp-live@dest.example "again" --expires 1d >"$T/again.out" 2>&1
reason=$(pq "SELECT reason FROM suppression WHERE rcpt = 'imp-live@dest.example'")
check "an add over a live entry keeps it ($reason) and says so: $(cat "$T/again.out")" \
    sh -c "grep -q 'listed already' '$T/again.out' && [ '$reason' = imported ]"
check "suppress add --expires 2s through B" \
    "$RC" suppress -c "$T/b.conf" add brief@dest.example --expires 2s
ra=$(rcpt "$pa" brief@dest.example)
check "A refuses it while it lasts: $ra" sh -c "printf '%s' '$ra' | grep -q '550 5.7.1 recipient suppressed (added by hand, 20[0-9-]*, until '"
i=0
while [ $i -lt 40 ]; do
    ra=$(rcpt "$pa" brief@dest.example)
    case $ra in *"250 2.1.5"*) break ;; esac
    sleep 0.25
    i=$((i + 1))
done
check "and takes it once it has expired ($i tries): $ra" sh -c "printf '%s' '$ra' | grep -q '250 2.1.5'"
check "an add after the expiry, through B" \
    "$RC" suppress -c "$T/b.conf" add brief@dest.example "back on"
ra=$(rcpt "$pa" brief@dest.example)
check "suppresses again: $ra" sh -c "printf '%s' '$ra' | grep -q '550 5.7.1 recipient suppressed (back on, 20[0-9-]*)\$'"

# a database whose tables the release before this one made
pg_sql pg "CREATE DATABASE oldev OWNER relay" >/dev/null
PG_DB=oldev pg_sql pg 'SET ROLE relay; CREATE TABLE events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, uid TEXT COLLATE "C" NOT NULL UNIQUE, t BIGINT NOT NULL, type TEXT COLLATE "C" NOT NULL, qid TEXT COLLATE "C" NOT NULL, msgid TEXT COLLATE "C" NOT NULL, sender TEXT COLLATE "C" NOT NULL, rcpt TEXT COLLATE "C" NOT NULL, rcpt_domain TEXT COLLATE "C" NOT NULL, stream TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL, code INTEGER NOT NULL, dsn TEXT COLLATE "C" NOT NULL, hard INTEGER NOT NULL, next_try BIGINT NOT NULL, relay TEXT COLLATE "C" NOT NULL, text TEXT COLLATE "C" NOT NULL); CREATE TABLE suppression (rcpt TEXT COLLATE "C" NOT NULL, stream TEXT COLLATE "C" NOT NULL, reason TEXT COLLATE "C" NOT NULL, t BIGINT NOT NULL, PRIMARY KEY (rcpt, stream)); INSERT INTO suppression VALUES ('"'kept@dest.example', '', 'hard bounce 550 5.1.1', 1700000000)"';' >/dev/null
po() { PG_DB=oldev pg_sql pg "$1" 2>/dev/null; }
check "the old tables, one row, no expires column" \
    [ "$(po "SELECT count(*) FROM suppression")/$(po "SELECT count(*) FROM pg_attribute WHERE attrelid = 'suppression'::regclass AND attname = 'expires'")" = 1/0 ]
set -- $(free_ports 2)
pd=$1 pe=$2
OLDURI="postgresql://relay@127.0.0.1:$pgport/oldev"
relay d "$pd" "$OLDURI" "events_store_password_file = $T/pgpw" \
    "events_spool = $T/d.spool" "suppress_expiry = 5s"
check "report reads the old database" "$RC" report -c "$T/d.conf"
"$RC" suppress -c "$T/d.conf" list >"$T/old.out" 2>&1
check "suppress refuses it, saying relaychaind adds the column: $(cat "$T/old.out")" \
    grep -q 'no expires column yet.*relaychaind adds it when it starts' "$T/old.out"
po "GRANT SELECT, INSERT, UPDATE, DELETE ON events, suppression TO limited; GRANT USAGE ON SEQUENCE events_id_seq TO limited" >/dev/null
relay e "$pe" "postgresql://limited@127.0.0.1:$pgport/oldev" \
    "events_store_password_file = $T/pgpw" "events_spool = $T/e.spool"
rcd_test_conf "$T/e.conf"
timeout 30 "$RCD" -f -c "$T/e.conf" >"$T/rcde.log" 2>&1
erc=$?
check "a relay whose role does not own the old tables does not start ($erc), and says how to add the column: $(grep -i expires "$T/rcde.log" | head -n 1)" \
    sh -c "[ $erc -ne 0 ] && [ $erc -ne 124 ] && grep -q 'ALTER TABLE suppression ADD COLUMN expires.*must be owner of table suppression' '$T/rcde.log'"
rcd_start rcdd "$T/d.conf" "$pd" || finish
check "the owner's relay added the column and kept the row" \
    [ "$(po "SELECT count(*) FROM suppression WHERE rcpt = 'kept@dest.example' AND expires = 0")/$(po "SELECT count(*) FROM pg_attribute WHERE attrelid = 'suppression'::regclass AND attname = 'expires'")" = 1/1 ]
rd=$(rcpt "$pd" kept@dest.example)
check "and refuses the old row's address: $rd" \
    sh -c "printf '%s' '$rd' | grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1, 2023-11-14)\$'"
send "$pd" --from s0@client.example --to gone@dest.example \
    --header 'Message-Id: <gone-d1@client.example>' >"$T/d1.out"
check "D: a hard bounce puts gone@ on the list for 5 s" \
    wait_eq po "SELECT expires - t FROM suppression WHERE rcpt = 'gone@dest.example'" 5 15
rd=$(rcpt "$pd" gone@dest.example)
check "D refuses it, with until: $rd" \
    sh -c "printf '%s' '$rd' | grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1, 20[0-9-]*, until 20[0-9-]*)'"
t1=$(po "SELECT t FROM suppression WHERE rcpt = 'gone@dest.example'")
i=0
while [ $i -lt 60 ]; do
    send "$pd" --from s0@client.example --to gone@dest.example \
        --header 'Message-Id: <gone-d2@client.example>' >"$T/d2.out"
    grep -q '250 2.0.0 Ok: queued as' "$T/d2.out" && break
    sleep 0.25
    i=$((i + 1))
done
check "D takes gone@ once the entry expired" grep -q '250 2.0.0 Ok: queued as' "$T/d2.out"
check "it bounces again and the bounce replaces the expired entry" \
    wait_eq po "SELECT t > $t1 AND expires - t = 5 FROM suppression WHERE rcpt = 'gone@dest.example'" t 15
rd=$(rcpt "$pd" gone@dest.example)
check "D refuses gone@ again: $rd" sh -c "printf '%s' '$rd' | grep -q '550 5.7.1 recipient suppressed (hard bounce'"
rcd_stop rcdd >/dev/null

# --- 3. PostgreSQL stopped during a load
before=$(sink_count pfsink)
pg_stop pg || fail "PostgreSQL does not stop"
start=$(date +%s)
i=0
while [ $i -lt 20 ]; do
    send "$pa" --from s0@client.example --to ok@dest.example \
        --header "Message-Id: <down-$i@client.example>" >"$T/down.$i.out"
    grep -q '250 2.0.0 Ok: queued as' "$T/down.$i.out" || break
    i=$((i + 1))
done
took=$(($(date +%s) - start))
check "20 messages accepted while PostgreSQL is down (in ${took}s)" \
    [ $i -eq 20 ] && [ "$took" -lt 20 ]
check "and delivered meanwhile" sink_wait pfsink $((before + 20)) 20
"$RC" status -c "$T/a.conf" >"$T/status.out" 2>&1
check "status shows the store failing and the backlog: $(grep events: "$T/status.out")" \
    grep -q '^events: store failing, [0-9]* buffered, [1-9][0-9]* spooled' "$T/status.out"
check "the log says so" grep -q "events: store $URI failing, events go to $T/a.spool" "$T/rcda.log"
send "$pb" --from s2@client.example --to gone@dest.example >"$T/b.open.out"
check "B: with the store down its RCPT lookup fails open (250)" \
    grep -q '250 2.0.0 Ok: queued as' "$T/b.open.out"
check "B logs the failed lookup" grep -q 'suppression lookup for <gone@dest.example> failed' "$T/rcdb.log"
pg_restart pg || fail "PostgreSQL does not start again"
check "every event of the load is in the store once after the restart" \
    wait_eq pq "SELECT count(*) || ' ' || count(DISTINCT uid) FROM events WHERE msgid LIKE '<down-%'" "40 40" 40
check "the log tells the replay" \
    wait_grep "spooled events replayed into $URI" "$T/rcda.log" 10
"$RC" status -c "$T/a.conf" >"$T/status2.out" 2>&1
check "status: store ok, nothing spooled: $(grep events: "$T/status2.out")" \
    grep -q '^events: store ok, 0 buffered, 0 spooled, [0-9]* written, [1-9][0-9]* replayed, 0 lost' "$T/status2.out"
# B's lookups come back through its writer (once per second at most)
i=0
while [ $i -lt 20 ]; do
    send "$pb" --from s2@client.example --to gone@dest.example >"$T/b.back.out"
    grep -q '550 5.7.1 recipient suppressed' "$T/b.back.out" && break
    sleep 0.5
    i=$((i + 1))
done
check "B refuses the suppressed address again after the restart" \
    grep -q '550 5.7.1 recipient suppressed' "$T/b.back.out"

# --- 4. the password is nowhere
check "no password in logs or outputs" \
    sh -c "! grep -rlF -e '$PW' '$T'/*.log '$T'/*.out 2>/dev/null | grep -q ."

rcd_stop rcda >/dev/null
rcd_stop rcds >/dev/null
kill -TERM "$(cat "$T/rcdb.pid")" 2>/dev/null
finish
