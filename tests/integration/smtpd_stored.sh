#!/bin/sh
# smtpd_stored - accept only what can be stored
#
# What a client names is kept in the queue file, whose text records
# refuse control characters (a file with one goes to corrupt/), and is
# replayed to the next hop. So it is refused at the command, 501, instead
# of being answered 250 and lost later:
#
# 1. queue mode: HELO and EHLO names with a control character; MAIL's
#    AUTH= and other parameters with one, and an AUTH= that is not <> or
#    xtext; RCPT parameters with one. Good AUTH= values still pass, and
#    a message after all that is delivered with nothing in corrupt/.
# 2. XFORWARD: a refused command leaves the values of the one before it
#    (all checked, then all kept), and HELO=name+20with+20spaces is taken,
#    as Postfix sends it.
# 3. through mode: RCPT parameters are checked as in queue mode, without
#    DSN, which through mode does not offer: an unknown one and NOTIFY
#    get 555, one with a control character 501; nothing reaches the sink
#    but the one good message.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 3)
qport=$1 tport=$2 sink_port=$3

sink_start sink "$sink_port"
rcd_conf "$T/q.conf" "$qport" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/spool
xforward_hosts = 127.0.0.1
error_limit = 100
EOF
rcd_start rcdq "$T/q.conf" "$qport" || finish
rcd_conf "$T/t.conf" "$tport" "smtp:[127.0.0.1]:$sink_port" <<EOF
error_limit = 100
EOF
rcd_start rcdt "$T/t.conf" "$tport" || finish

# reply CODE FILE N - the Nth reply code (counting the greeting as 1)
reply() {
    grep -E '^[0-9]{3}( |$)' "$1" | sed -n "$2p" | cut -c1-3
}

# --- 1. queue mode
chat "$qport" >"$T/q.out" <<'EOF'
expect
send EHLO bad\tname.example
expect
send HELO bad\x01name.example
expect
send EHLO bad\x7fname.example
expect
send EHLO client.test.example
expect
send MAIL FROM:<a@client.example> AUTH=x\ty
expect
send MAIL FROM:<a@client.example> AUTH=x\x01y
expect
send MAIL FROM:<a@client.example> AUTH=x=y
expect
send MAIL FROM:<a@client.example> BODY=8BIT\x0bMIME
expect
send MAIL FROM:<a@client.example> AUTH=<>
expect
send RSET
expect
send MAIL FROM:<a@client.example> AUTH=a+2Bb@client.example
expect
send RCPT TO:<r@dest.example> NOTIFY=SUCCESS\x02
expect
send RCPT TO:<r@dest.example> ORCPT=rfc\x01822;r@dest.example
expect
send RCPT TO:<r@dest.example> NOTIFY=FAILURE ORCPT=rfc822;r@dest.example
expect
send DATA
expect
raw Subject: stored\r\n\r\nbody\r\n.\r\n
expect
send QUIT
expect
EOF
i=2
for want in "EHLO with a TAB:501" "HELO with ^A:501" "EHLO with DEL:501" \
    "good EHLO:250" "AUTH= with a TAB:501" "AUTH= with ^A:501" \
    "AUTH= not xtext:501" "BODY= with ^K:501" "AUTH=<>:250" "RSET:250" \
    "AUTH=xtext:250" "NOTIFY with ^B:501" "ORCPT type with ^A:501" \
    "good RCPT:250" "DATA:354" "end of data:250"; do
    got=$(reply "$T/q.out" $i)
    check "queue: ${want%:*}: ${want##*:} (got $got)" [ "$got" = "${want##*:}" ]
    i=$((i + 1))
done
check "queue: the message is delivered" sink_wait sink 1 10
check "queue: nothing in corrupt/" \
    [ -z "$(ls -A "$T/spool/corrupt" 2>/dev/null)" ]
check "queue: no corrupt queue file logged" \
    sh -c "! grep -q 'corrupt' '$T/rcdq.log'"

# --- 2. XFORWARD
chat "$qport" >"$T/xf.out" <<'EOF'
expect
send EHLO postfix.test.example
expect
send XFORWARD NAME=good.example ADDR=192.0.2.7 HELO=first+20helo+20name
expect
send XFORWARD NAME=evil.example ADDR=+01
expect
send XFORWARD HELO=no+20space NAME=evil2.example
expect
send MAIL FROM:<a@client.example>
expect
send QUIT
expect
EOF
check "XFORWARD: HELO with +20 taken (got $(reply "$T/xf.out" 3))" \
    [ "$(reply "$T/xf.out" 3)" = 250 ]
check "XFORWARD: ADDR=+01 refused (got $(reply "$T/xf.out" 4))" \
    [ "$(reply "$T/xf.out" 4)" = 501 ]
check "XFORWARD: the last one taken too (got $(reply "$T/xf.out" 5))" \
    [ "$(reply "$T/xf.out" 5)" = 250 ]
check "XFORWARD: the refused command changed nothing" \
    grep -q ': client=unknown\[127.0.0.1\], orig_client=evil2.example\[192.0.2.7\]$' "$T/rcdq.log"
check "XFORWARD: never evil.example" sh -c "! grep -q 'orig_client=evil.example' '$T/rcdq.log'"

# --- 3. through mode
chat "$tport" >"$T/t.out" <<'EOF'
expect
send EHLO client.test.example
expect
send MAIL FROM:<a@client.example>
expect
send RCPT TO:<r@dest.example> XFOO=bar
expect
send RCPT TO:<r@dest.example> NOTIFY=SUCCESS
expect
send RCPT TO:<r@dest.example> X\tY
expect
send RCPT TO:<r@dest.example>
expect
send DATA
expect
raw Subject: through\r\n\r\nbody\r\n.\r\n
expect
send QUIT
expect
EOF
i=3
for want in "MAIL:250" "unknown parameter:555" "NOTIFY:555" \
    "parameter with a TAB:501" "plain RCPT:250" "DATA:354" \
    "end of data:250"; do
    got=$(reply "$T/t.out" $i)
    check "through: ${want%:*}: ${want##*:} (got $got)" [ "$got" = "${want##*:}" ]
    i=$((i + 1))
done
check "through: the message is delivered" sink_wait sink 2 10
check "through: the next hop saw one recipient without parameters" \
    sh -c "grep -l 'Subject: through' '$T'/sink/msg.* | xargs grep -qx 'X-Rcpt-Args: <r@dest.example>'"

rcd_stop rcdq
rcd_stop rcdt
finish
