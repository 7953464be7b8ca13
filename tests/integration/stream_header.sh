#!/bin/sh
# stream_header - a trusted client names the stream of a message in a
# header (stream_header = X-Relaychain-Stream): relaychaind believes it
# from stream_header_clients only (here 127.0.0.2), over stream_map, and
# removes the field from every message, believed or not, before the
# chain. Through a queue with an smtp-sink next hop:
#
#   - from 127.0.0.2 the header's stream is the received and delivered
#     events' stream (the delivered one is read back from the queue
#     file), the sink's copy has no such field, the log says stream=;
#   - from 127.0.0.1 (not trusted) the field is removed and not
#     believed, and the log says so; a lower-case, folded field from
#     127.0.0.2 is read; a value that is no stream name is ignored;
#   - behind an MTA sending XFORWARD, the client it names is the one
#     believed or not;
#   - a recipient suppressed for the header's stream leaves the
#     envelope after the data with a suppressed event; when none is
#     left the data gets 550 5.7.1;
#   - a stream:NAME rate limit counts the header's stream;
#   - bad settings are refused with file:line.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/events_lib.sh"

set -- $(free_ports 2)
port=$1 sink=$2

sink_start sink "$sink"
printf '%s\n' '/^news@/ news' >"$T/streams"
printf '%s\n' 'stream:bulk 2/1m' >"$T/limits"
printf '%s\n' "delivery = queue" "queue_directory = $T/spool" \
    "events_store = sqlite:$T/events.db" "events_batch_time = 50ms" \
    "stream_map = $T/streams" "stream_header = X-Relaychain-Stream" \
    "stream_header_clients = 127.0.0.2/32" "rate_limits = $T/limits" \
    "xforward_hosts = 127.0.0.3/32" |
    rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$sink"

sed 's|^stream_header = .*|stream_header = X Relaychain: Stream|' "$T/q.conf" >"$T/bad.conf"
check "a stream_header that is no field name" refused "$T/bad.conf" stream_header "not a header field name"
grep -v '^events_' "$T/q.conf" | grep -v '^stream_map' | grep -v '^rate_limits' >"$T/bad.conf"
check "stream_header without events_store" refused "$T/bad.conf" stream_header "needs events_store"
sed 's|^stream_header_clients = .*|stream_header_clients = trusted|' "$T/q.conf" >"$T/bad.conf"
check "a stream_header_clients word that is no network" refused "$T/bad.conf" stream_header_clients "not mynetworks, authenticated, all or a network"
check "relaychain check takes the test's configuration" "$RC" check -c "$T/q.conf"

rcd_start rcd "$T/q.conf" "$port" || finish

# send NAME SRC FROM TO HEADER - one message from address SRC; HEADER is
# swaks --header's argument; the transcript in $T/NAME.out
send() {
    timeout 30 swaks --server 127.0.0.1 --port "$port" --local-interface "$2" \
        --from "$3" --to "$4" --header "Message-Id: <$1@client.example>" \
        --header "$5" --timeout 20 >"$T/$1.out" 2>&1
}
# stream_of MSGID TYPE RCPT - the stream of that event ("-": none yet)
stream_of() {
    q "SELECT coalesce(max(stream), '-') FROM events WHERE msgid = '<$1@client.example>' AND type = '$2' AND rcpt = '$3'"
}

# ---- 1. a trusted client's header
send t1 127.0.0.2 someone@client.example a@dest.example 'X-Relaychain-Stream: alerts'
check "trusted: queued" grep -q '250 2.0.0 Ok: queued as' "$T/t1.out"
check "trusted: the received event is on stream alerts" \
    wait_q "SELECT stream FROM events WHERE msgid = '<t1@client.example>' AND type = 'received'" alerts 10
check "trusted: the delivered event too (read back from the queue file)" \
    wait_q "SELECT stream FROM events WHERE msgid = '<t1@client.example>' AND type = 'delivered'" alerts 10
check "trusted: the log names the stream" grep -q "stream=alerts, from X-Relaychain-Stream" "$T/rcd.log"
check "the sink has it" sink_wait sink 1 10
check "the sink's copy has no X-Relaychain-Stream" \
    sh -c "! grep -qi '^X-Relaychain-Stream' '$T'/sink/msg.*"
check "the sink's copy has the rest of the header" \
    grep -lq "^Message-Id: <t1@client.example>" "$T"/sink/msg.*

# ---- 2. over stream_map: news@ is on news by the map, alerts by the header
send t2 127.0.0.2 news@client.example b@dest.example 'X-Relaychain-Stream: alerts'
check "the header wins over stream_map" \
    wait_q "SELECT stream FROM events WHERE msgid = '<t2@client.example>' AND type = 'received'" alerts 10

# ---- 3. an untrusted client: removed, not believed
send u1 127.0.0.1 news@client.example c@dest.example 'X-Relaychain-Stream: alerts'
check "untrusted: queued" grep -q '250 2.0.0 Ok: queued as' "$T/u1.out"
check "untrusted: the stream is stream_map's" \
    wait_q "SELECT stream FROM events WHERE msgid = '<u1@client.example>' AND type = 'received'" news 10
check "untrusted: the log says why" \
    grep -q "X-Relaychain-Stream from unknown\[127.0.0.1\], not one of stream_header_clients: removed and not believed" "$T/rcd.log"
check "the sink has three" sink_wait sink 3 10
check "untrusted: no X-Relaychain-Stream at the sink either" \
    sh -c "! grep -qi '^X-Relaychain-Stream' '$T'/sink/msg.*"

# ---- 3b. behind an MTA that sends XFORWARD (127.0.0.3): the client it
# names is the one believed or not, never the MTA itself
xf() { # NAME ADDR - a message from 127.0.0.3 for the client ADDR
    "$PY" - "$port" "$1" "$2" >"$T/$1.out" 2>&1 <<'PY'
import smtplib, sys
port, name, addr = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP('127.0.0.1', port, timeout=30, source_address=('127.0.0.3', 0))
s.ehlo('mta.test.example')
print(s.docmd('XFORWARD', 'NAME=client.example ADDR=%s' % addr)[0])
s.sendmail('someone@client.example', ['%s@dest.example' % name],
           ('Message-Id: <%s@client.example>\r\nX-Relaychain-Stream: alerts\r\n'
            'Subject: xforward\r\n\r\nbody\r\n' % name).encode())
s.quit()
print('sent')
PY
}
xf x1 127.0.0.2
check "XFORWARD names a trusted client: sent ($(tr '\n' ' ' <"$T/x1.out"))" grep -q '^sent' "$T/x1.out"
check "XFORWARD names a trusted client: believed" \
    wait_q "SELECT stream FROM events WHERE msgid = '<x1@client.example>' AND type = 'received'" alerts 10
xf x2 192.0.2.9
check "XFORWARD names another client: sent" grep -q '^sent' "$T/x2.out"
check "XFORWARD names another client: not believed" \
    wait_q "SELECT '[' || stream || ']' FROM events WHERE msgid = '<x2@client.example>' AND type = 'received'" '[]' 10
check "the log names the client of XFORWARD" \
    grep -q "X-Relaychain-Stream from client.example\[192.0.2.9\], not one of stream_header_clients" "$T/rcd.log"

# ---- 4. a folded field in lower case; two fields (the first counts);
# a value that is no stream name
printf 'Message-Id: <f1@client.example>\r\nx-relaychain-stream:\r\n   digest\r\nSubject: folded\r\n\r\nbody\r\n' >"$T/f1.eml"
timeout 30 swaks --server 127.0.0.1 --port "$port" --local-interface 127.0.0.2 \
    --from someone@client.example --to d@dest.example --data "$T/f1.eml" \
    --timeout 20 >"$T/f1.out" 2>&1
check "folded, lower case: stream digest" \
    wait_q "SELECT stream FROM events WHERE msgid = '<f1@client.example>' AND type = 'received'" digest 10
printf 'Message-Id: <f2@client.example>\r\nX-Relaychain-Stream: first\r\nX-Relaychain-Stream: second\r\nSubject: two\r\n\r\nbody\r\n' >"$T/f2.eml"
timeout 30 swaks --server 127.0.0.1 --port "$port" --local-interface 127.0.0.2 \
    --from someone@client.example --to e@dest.example --data "$T/f2.eml" \
    --timeout 20 >"$T/f2.out" 2>&1
check "two fields: the first counts" \
    wait_q "SELECT stream FROM events WHERE msgid = '<f2@client.example>' AND type = 'received'" first 10
send bad1 127.0.0.2 someone@client.example f@dest.example 'X-Relaychain-Stream: no such stream!'
check "no stream name: queued all the same" grep -q '250 2.0.0 Ok: queued as' "$T/bad1.out"
check "no stream name: on no stream" \
    wait_q "SELECT '[' || stream || ']' FROM events WHERE msgid = '<bad1@client.example>' AND type = 'received'" '[]' 10
check "no stream name: logged" grep -q "is not a stream name" "$T/rcd.log"
check "eight at the sink" sink_wait sink 8 10
check "no X-Relaychain-Stream at the sink at all" \
    sh -c "! grep -qi '^X-Relaychain-Stream' '$T'/sink/msg.*"

# ---- 5. suppressed for the header's stream
"$RC" suppress -c "$T/q.conf" add victim@dest.example "complaint" --stream alerts >/dev/null
send s1 127.0.0.2 someone@client.example victim@dest.example,fine@dest.example 'X-Relaychain-Stream: alerts'
check "suppressed for alerts: the rest is queued" grep -q '250 2.0.0 Ok: queued as' "$T/s1.out"
check "suppressed for alerts: a suppressed event for victim@" \
    wait_q "SELECT stream FROM events WHERE msgid = '<s1@client.example>' AND type = 'suppressed' AND rcpt = 'victim@dest.example'" alerts 10
check "suppressed for alerts: received for fine@ only" \
    wait_q "SELECT group_concat(rcpt) FROM events WHERE msgid = '<s1@client.example>' AND type = 'received'" fine@dest.example 10
check "suppressed for alerts: logged" \
    grep -q "suppressed: to=<victim@dest.example> on stream alerts dropped (complaint, " "$T/rcd.log"
send s2 127.0.0.2 someone@client.example victim@dest.example 'X-Relaychain-Stream: alerts'
check "every recipient suppressed: the data gets 550 5.7.1" \
    grep -q '<\*\* *550 5.7.1 recipient suppressed (complaint, ' "$T/s2.out"
send s3 127.0.0.2 someone@client.example victim@dest.example 'X-Relaychain-Stream: digest'
check "on another stream victim@ is not suppressed" grep -q '250 2.0.0 Ok: queued as' "$T/s3.out"

# ---- 6. a stream rule counts the header's stream
send r1 127.0.0.2 someone@client.example g@dest.example 'X-Relaychain-Stream: bulk'
send r2 127.0.0.2 someone@client.example h@dest.example 'X-Relaychain-Stream: bulk'
send r3 127.0.0.2 someone@client.example i@dest.example 'X-Relaychain-Stream: bulk'
check "stream:bulk 2/1m: two taken" \
    sh -c "grep -q '250 2.0.0 Ok: queued as' '$T/r1.out' && grep -q '250 2.0.0 Ok: queued as' '$T/r2.out'"
check "stream:bulk 2/1m: the third gets 452 4.7.1" grep -q '<\*\* *452 4.7.1' "$T/r3.out"
check "the rule is logged" \
    grep -q "rate_limit=$T/limits:1 stream:bulk (2 per 60s messages)" "$T/rcd.log"
send r4 127.0.0.1 someone@client.example j@dest.example 'X-Relaychain-Stream: bulk'
check "an untrusted client's bulk is not counted as bulk" grep -q '250 2.0.0 Ok: queued as' "$T/r4.out"

rcd_stop rcd
[ "$failures" -gt 0 ] && tail -n 40 "$T/rcd.log" >&2
finish
