#!/bin/sh
# smtpd_dsn_relay - no relay through delivery reports (delivery = queue)
#
# relaychaind's mynetworks leaves 127.0.0.1 out, so the test client is an
# outsider that may send only to relay_domains. transport_map routes
# gone.example to a sink that refuses every RCPT (smtp-sink -f RCPT),
# nodsn.example to a sink without DSN (-N), and the rest, victim.example
# included, to the sink "back", which thus gets every report.
#
# 1. EHLO offers no DSN to the outsider.
# 2. MAIL FROM:<victim@victim.example> RET=FULL ENVID=..., RCPT
#    <u@gone.example> NOTIFY=SUCCESS,FAILURE ORCPT=...: the failure
#    report to the victim returns the header only, no DSN request is
#    honoured, and the log says the request was ignored.
# 3. The same to <u@nodsn.example> NOTIFY=SUCCESS: delivered, and no
#    "relayed" notice reaches the victim.
# 4. A message with no empty line after its header, and one that starts
#    with text: the report returns header fields only, never the text.
# 5. A client in smtpd_dsn_clients (a second daemon with the default
#    mynetworks) still gets DSN: NOTIFY=SUCCESS gives the notice.
# 6. So does a client outside mynetworks once it authenticated (a third
#    daemon with STARTTLS and AUTH, which offers DSN before AUTH since
#    the client will not send EHLO again after it).
# Across all: nothing with a payload marker ever reaches victim@.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 6)
port=$1 back=$2 gone=$3 nodsn=$4 port2=$5 port3=$6

sink_start back "$back"
sink_start gone "$gone" -f RCPT
sink_start nodsn "$nodsn" -N
cat >"$T/transport" <<EOF
gone.example   smtp:[127.0.0.1]:$gone
nodsn.example  smtp:[127.0.0.1]:$nodsn
EOF
rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$back" <<EOF
delivery = queue
queue_directory = $T/spool
mynetworks = 192.0.2.0/24
relay_domains = gone.example nodsn.example
transport_map = $T/transport
minimal_backoff_time = 1s
maximal_backoff_time = 1s
EOF
rcd_start rcd "$T/q.conf" "$port" || finish

# send PORT NAME MAILARGS DATA RCPTLINE... - one message; replies in NAME.out
send() {
    p=$1 name=$2 from=$3 data=$4
    shift 4
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
        printf 'raw %s.\\r\\n\n' "$data"
        echo "expect"
        echo "send QUIT"
        echo "expect"
    } | chat "$p" >"$T/$name.out"
}

codes() {
    grep -E '^[0-9]{3}( |$)' "$1" | cut -c1-3 | tr '\n' ' ' | sed 's/ $//'
}

# victim_files - the sink files of mail to victim@victim.example
victim_files() {
    grep -l '^X-Rcpt-Args: <victim@victim.example>' "$T"/back/msg.* 2>/dev/null
}

hdr='From: <x@client.example>\r\nTo: <u@gone.example>\r\n'

# --- 1 and 2
send "$port" full '<victim@victim.example> RET=FULL ENVID=e1' \
    "${hdr}Subject: full\\r\\n\\r\\nPAYLOAD-FULL\\r\\n" \
    '<u@gone.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@gone.example'
check "outsider: no DSN in EHLO" sh -c "! grep -q '^250-DSN' '$T/full.out'"
check "outsider: accepted (got '$(codes "$T/full.out")')" \
    [ "$(codes "$T/full.out")" = "220 250 250 250 354 250 221" ]
check "outsider: the DSN request is logged as ignored" \
    grep -q ': DSN request ignored: client unknown\[127.0.0.1\] is not in smtpd_dsn_clients' "$T/rcd.log"
check "outsider: the bounce reaches the victim" sink_wait back 1 15
f=$(victim_files | head -n 1)
check "outsider: the report returns the header only" \
    sh -c "[ -n '$f' ] && grep -q '^Content-Type: text/rfc822-headers' '$f' && grep -q '^Subject: full' '$f'"
check "outsider: no ENVID in the report" \
    sh -c "[ -n '$f' ] && ! grep -q 'Original-Envelope-Id' '$f'"

# --- 3
send "$port" relayed '<victim@victim.example>' \
    "${hdr}Subject: relayed\\r\\n\\r\\nPAYLOAD-RELAYED\\r\\n" \
    '<u@nodsn.example> NOTIFY=SUCCESS'
check "NOTIFY=SUCCESS: delivered to the sink without DSN" sink_wait nodsn 1 10

# --- 4
send "$port" noblank '<victim@victim.example>' \
    "Subject: noblank\\r\\nPAYLOAD-NOBLANK line one\\r\\nline two\\r\\n" \
    '<u@gone.example>'
send "$port" textfirst '<victim@victim.example>' \
    "PAYLOAD-TEXTFIRST line\\r\\nSubject: textfirst\\r\\n\\r\\nmore\\r\\n" \
    '<u@gone.example>'
check "no empty line, text first: both accepted" \
    sh -c "[ '$(codes "$T/noblank.out")' = '220 250 250 250 354 250 221' ] && [ '$(codes "$T/textfirst.out")' = '220 250 250 250 354 250 221' ]"
check "three bounces reach the victim" sink_wait back 3 15
# give a wrongly sent relay notice time to arrive
sleep 2
check "the victim got three reports and nothing else (got $(victim_files | wc -l))" \
    [ "$(victim_files | wc -l)" -eq 3 ]
check "no relay notice went to the victim" \
    sh -c "! grep -l '^Subject: Successful Mail Delivery' $T/back/msg.* 2>/dev/null | grep -q ."
leak=$(grep -l 'PAYLOAD' $(victim_files) /dev/null 2>/dev/null | tr '\n' ' ')
check "no content reached the victim (in: $leak)" [ -z "$leak" ]
f=$(grep -l '^Subject: noblank' $(victim_files) /dev/null 2>/dev/null | head -n 1)
check "no empty line: the header field is returned" [ -n "$f" ]

# --- 5. a client in smtpd_dsn_clients keeps DSN
rcd_conf "$T/q2.conf" "$port2" "smtp:[127.0.0.1]:$back" <<EOF
delivery = queue
queue_directory = $T/spool2
transport_map = $T/transport
EOF
rcd_start rcd2 "$T/q2.conf" "$port2" || finish
send "$port2" trusted '<sender@client.example> RET=FULL' \
    "${hdr}Subject: trusted\\r\\n\\r\\ntrusted body\\r\\n" \
    '<t@nodsn.example> NOTIFY=SUCCESS'
check "trusted: DSN in EHLO" grep -q '^250-DSN' "$T/trusted.out"
check "trusted: the relay notice reaches the sender" \
    wait_grep ': sender delivery status notification: ' "$T/rcd2.log" 15
check "trusted: nothing is logged as ignored" \
    sh -c "! grep -q 'DSN request ignored' '$T/rcd2.log'"

# --- 6. an authenticated client keeps DSN
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
printf '%s\n' 'right horse battery' |
    "$RC" passwd "$T/passwd" alice >"$T/passwd.out" 2>&1 ||
    fail "relaychain passwd: $(cat "$T/passwd.out")"
rcd_conf "$T/q3.conf" "$port3" "smtp:[127.0.0.1]:$back" <<EOF
delivery = queue
queue_directory = $T/spool3
mynetworks = 192.0.2.0/24
transport_map = $T/transport
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/passwd
EOF
rcd_start rcd3 "$T/q3.conf" "$port3" || finish
good=$(printf '\0alice\0right horse battery' | base64 -w0)
chat "$port3" >"$T/auth.out" <<EOF
expect
send EHLO client.test.example
expect
send STARTTLS
expect
starttls
send EHLO client.test.example
expect
send AUTH PLAIN $good
expect
send MAIL FROM:<alice@client.example> RET=HDRS
expect
send RCPT TO:<a@nodsn.example> NOTIFY=SUCCESS
expect
send DATA
expect
raw Subject: authenticated\r\n\r\nbody\r\n.\r\n
expect
send QUIT
expect
EOF
check "authenticated: logged in and queued (got '$(codes "$T/auth.out")')" \
    [ "$(codes "$T/auth.out")" = "220 250 220 250 235 250 250 354 250 221" ]
check "authenticated: DSN offered inside TLS" grep -q '^250-DSN' "$T/auth.out"
check "authenticated: the relay notice reaches the sender" \
    wait_grep ': sender delivery status notification: ' "$T/rcd3.log" 15
check "authenticated: nothing is logged as ignored" \
    sh -c "! grep -q 'DSN request ignored' '$T/rcd3.log'"

rcd_stop rcd
rcd_stop rcd2
rcd_stop rcd3
finish
