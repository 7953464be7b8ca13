#!/bin/sh
# queue_dsn - bounces, delay warnings and relay notices (RFC 3464)
#
# 1. The next hop is a private Postfix whose check_recipient_access
#    answers 550 5.1.1 for gone@dest.example; it relays the rest to a
#    sink. One message from a DSN client (RET=HDRS, ENVID, NOTIFY and
#    ORCPT) to ok@ and gone@: ok@ gets it, gone@ is bounced, and the
#    sender gets a non-delivery report with the null sender through the
#    same next hop. Python's email package must read it as a
#    multipart/report whose message/delivery-status names gone@ with
#    Action failed, Status 5.1.1, Postfix's 550 as Diagnostic-Code, the
#    ORCPT and the ENVID, and returns the original header.
# 2. A message with the null sender bounces without a report (never a
#    bounce for a bounce).
# 3. A second relaychaind routes dest.example to a dead port and
#    client.example to a sink (transport_map), with delay_warning_time
#    1s and maximal_queue_lifetime 5s: the sender gets a delay warning
#    (Action delayed, 4.4.1), then after the lifetime a failure report
#    with the whole message (RET=FULL). The original never arrives.
# 4. NOTIFY=SUCCESS to a next hop without DSN (smtp-sink -N): the sender
#    gets a "relayed" notice.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 7)
port=$1 pf_port=$2 pf_sink=$3 port2=$4 down=$5 back=$6 nodsn=$7
CHECK="$top_srcdir/tests/integration/dsn_check.py"

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "smtpd_recipient_restrictions = check_recipient_access inline:{ { gone@dest.example = 550 5.1.1 no such user here } }, permit_mynetworks, reject"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start pfsink "$pf_sink"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$pf_port" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
rcd_start rcd "$T/q.conf" "$port" || finish

# send PORT NAME MAILPARAMS RCPTLINE... - one message, replies in NAME.out
send() {
    p=$1 name=$2 from=$3
    shift 3
    {
        echo "expect"
        echo "send EHLO client.test.example"
        echo "expect"
        echo "send MAIL FROM:$from"
        echo "expect"
        for r in "$@"; do
            echo "send RCPT TO:$r"
            echo "expect"
        done
        echo "send DATA"
        echo "expect"
        printf '%s\n' "raw From: <sender@client.example>\\r\\nTo: <ok@dest.example>\\r\\nSubject: $name\\r\\nMessage-ID: <$name@client.example>\\r\\n\\r\\nbody of $name\\r\\n.\\r\\n"
        echo "expect"
        echo "send QUIT"
        echo "expect"
    } | chat "$p" >"$T/$name.out"
}

codes() {
    grep -E '^[0-9]{3}( |$)' "$1" | cut -c1-3 | tr '\n' ' ' | sed 's/ $//'
}

# --- 1. 550 for one of two recipients
send "$port" bounce-test '<sender@client.example> RET=HDRS ENVID=env+2Did-1' \
    '<ok@dest.example> NOTIFY=FAILURE,DELAY' \
    '<gone@dest.example> NOTIFY=FAILURE ORCPT=rfc822;gone@dest.example'
check "DSN client: accepted locally (got '$(codes "$T/bounce-test.out")')" \
    [ "$(codes "$T/bounce-test.out")" = "220 250 250 250 250 354 250 221" ]
check "the sink gets the message and the report" sink_wait pfsink 2 20
check "gone@ is logged bounced with Postfix's reply" \
    grep -q 'to=<gone@dest.example>, relay=127.0.0.1\[127.0.0.1\]:'"$pf_port"', .*dsn=5.1.1, status=bounced (550 5.1.1 <gone@dest.example>: Recipient address rejected: no such user here)' "$T/rcd.log"
check "ok@ is logged sent" \
    grep -q 'to=<ok@dest.example>, relay=127.0.0.1\[127.0.0.1\]:'"$pf_port"', .*status=sent (250 ' "$T/rcd.log"
check "the report is logged as a sender non-delivery notification" \
    grep -q ': sender non-delivery notification: [0-9A-F]*$' "$T/rcd.log"
orig=$(grep -l '^X-Rcpt-Args: <ok@dest.example>' "$T"/pfsink/msg.* 2>/dev/null | head -n 1)
dsn=$(grep -l '^X-Mail-Args: <>' "$T"/pfsink/msg.* 2>/dev/null | head -n 1)
check "the original went to ok@ only" \
    sh -c "[ -n '$orig' ] && [ \"\$(grep -c '^X-Rcpt-Args:' '$orig')\" -eq 1 ]"
check "the report has the null sender and goes to the sender" \
    sh -c "[ -n '$dsn' ] && grep -q '^X-Rcpt-Args: <sender@client.example>' '$dsn'"
"$PY" "$CHECK" "$dsn" --action failed --rcpt gone@dest.example \
    --status 5.1.1 --diag '550 5.1.1 <gone@dest.example>' \
    --orcpt 'rfc822;gone@dest.example' --envid env-id-1 \
    --returned-subject bounce-test >"$T/check1.out" 2>&1
check "the report reads as RFC 3464: $(tr '\n' ' ' <"$T/check1.out")" \
    grep -qx ok "$T/check1.out"

# --- 2. never a bounce for a bounce
send "$port" null-test '<>' '<gone@dest.example>'
check "null sender: accepted" \
    [ "$(codes "$T/null-test.out")" = "220 250 250 250 354 250 221" ]
qid=$(sed -n 's/^250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/null-test.out")
check "null sender: bounced" \
    wait_grep "$qid: to=<gone@dest.example>, .*status=bounced" "$T/rcd.log" 10
check "null sender: removed without a report" \
    sh -c "grep -q '$qid: removed' '$T/rcd.log' && ! grep -q '$qid: sender non-delivery' '$T/rcd.log'"
sleep 1
check "null sender: nothing more reached the sink" \
    [ "$(sink_count pfsink)" -eq 2 ]

# --- 3. delay warning, expiry, transport_map
sink_start back "$back"
sink_start nodsn "$nodsn" -N
cat >"$T/transport" <<EOF
# domain          next hop
client.example    smtp:[127.0.0.1]:$back
.relayed.example  smtp:[127.0.0.1]:$nodsn
EOF
rcd_conf "$T/q2.conf" "$port2" "smtp:[127.0.0.1]:$down" <<EOF
delivery = queue
queue_directory = $T/spool2
minimal_backoff_time = 1s
maximal_backoff_time = 1s
delay_warning_time = 1s
maximal_queue_lifetime = 5s
transport_map = $T/transport
EOF
rcd_start rcd2 "$T/q2.conf" "$port2" || finish
send "$port2" expire-test '<sender@client.example> RET=FULL' '<x@dest.example>'
check "expire: accepted" \
    [ "$(codes "$T/expire-test.out")" = "220 250 250 250 354 250 221" ]
check "a delay warning goes out" \
    wait_grep ': sender delay notification: ' "$T/rcd2.log" 10
check "after maximal_queue_lifetime the message bounces" \
    wait_grep 'to=<x@dest.example>, relay=none, .*status=bounced (.*message expired after' "$T/rcd2.log" 15
check "both reports reach the sender through transport_map" \
    sink_wait back 2 10
warn=$(grep -l '^Subject: Delayed Mail' "$T"/back/msg.* 2>/dev/null | head -n 1)
fail_dsn=$(grep -l '^Subject: Undelivered Mail' "$T"/back/msg.* 2>/dev/null | head -n 1)
"$PY" "$CHECK" "$warn" --action delayed --rcpt x@dest.example \
    --status 4.4.1 --returned-subject expire-test >"$T/check3.out" 2>&1
check "the delay warning reads as RFC 3464: $(tr '\n' ' ' <"$T/check3.out")" \
    grep -qx ok "$T/check3.out"
"$PY" "$CHECK" "$fail_dsn" --action failed --rcpt x@dest.example \
    --status 4.4.1 --full --returned-subject expire-test >"$T/check4.out" 2>&1
check "the expiry report returns the whole message: $(tr '\n' ' ' <"$T/check4.out")" \
    grep -qx ok "$T/check4.out"
check "the original never went anywhere" \
    sh -c "! grep -l 'Subject: expire-test' $T/back/msg.* | xargs grep -L '^X-Mail-Args: <>' | grep -q ."

# --- 4. NOTIFY=SUCCESS through a next hop without DSN
send "$port2" success-test '<sender@client.example>' \
    '<y@sub.relayed.example> NOTIFY=SUCCESS'
check "relayed: delivered to the next hop without DSN" sink_wait nodsn 1 10
check "relayed: the sender gets a notice" sink_wait back 3 10
rel=$(grep -l '^Subject: Successful Mail Delivery Report' "$T"/back/msg.* 2>/dev/null | head -n 1)
"$PY" "$CHECK" "$rel" --action relayed --rcpt y@sub.relayed.example \
    --status 2.0.0 --returned-subject success-test >"$T/check5.out" 2>&1
check "the relay notice reads as RFC 3464: $(tr '\n' ' ' <"$T/check5.out")" \
    grep -qx ok "$T/check5.out"

rcd_stop rcd
rcd_stop rcd2
finish
