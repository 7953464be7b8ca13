#!/bin/sh
# events_data - a recipient the next hop refuses after DATA, as a
# delivery event
#
# A private Postfix as the next hop takes every RCPT but refuses, at the
# end of the data, a message whose Subject its header_checks reject
# (550 5.7.1). relaychaind (delivery = queue, events in SQLite) records
# a received event, then a bounced event with Postfix's code, enhanced
# status and words, classified soft (5.7.1 is a policy refusal, not an
# address that does not exist), so the recipient is not suppressed; the
# sender gets the non-delivery notification; a message without that
# Subject to the same recipient is delivered.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/events_lib.sh"

set -- $(free_ports 3)
port=$1 pf_port=$2 pf_sink=$3

pfx_init pf
echo '/^Subject: refuse after data/ REJECT 5.7.1 content refused here' \
    >"$T/pf/etc/header_checks"
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "header_checks = regexp:$T/pf/etc/header_checks"
echo "127.0.0.1:$pf_port inet n - n - - smtpd" | pfx_master pf
sink_start pfsink "$pf_sink"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

printf '%s\n' "delivery = queue" "queue_directory = $T/spool" \
    "events_store = sqlite:$T/events.db" "events_batch_time = 50ms" |
    rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$pf_port"
rcd_start rcd "$T/q.conf" "$port" || finish


swaks --server "127.0.0.1:$port" --from news@client.example \
    --to rcpt@dest.example --header 'Subject: refuse after data' \
    --header 'Message-Id: <data-1@client.example>' >"$T/send1.out" 2>&1
check "relaychaind took it" grep -q '250 2.0.0 Ok: queued as' "$T/send1.out"
check "a received event" \
    wait_q "SELECT count(*) FROM events WHERE type='received' AND msgid='<data-1@client.example>'" 1 10
check "a bounced event with Postfix's end-of-data reply, soft" \
    wait_q "SELECT code || ' ' || dsn || ' ' || hard FROM events WHERE type='bounced' AND msgid='<data-1@client.example>'" "550 5.7.1 0" 15
check "the bounce keeps Postfix's words" \
    [ -n "$(q "SELECT 1 FROM events WHERE type='bounced' AND text LIKE '%content refused here%'")" ]
check "Postfix refused it at the end of the data" \
    grep -q 'reject: header Subject: refuse after data' "$T/pf/postfix.log"
check "the sender's non-delivery notification is queued" \
    wait_grep 'sender non-delivery notification' "$T/rcd.log" 10
check "a soft bounce does not suppress the recipient" \
    [ -z "$(q "SELECT rcpt FROM suppression")" ]
swaks --server "127.0.0.1:$port" --from news@client.example \
    --to rcpt@dest.example --header 'Subject: fine' \
    --header 'Message-Id: <data-2@client.example>' >"$T/send2.out" 2>&1
check "the next message to the same recipient is delivered" \
    wait_q "SELECT count(*) FROM events WHERE type='delivered' AND msgid='<data-2@client.example>'" 1 15
rcd_stop rcd
finish
