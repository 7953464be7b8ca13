#!/bin/sh
# verp - VERP bounce tracking and ARF complaints, end to end through
# relaychaind in queue mode with a private Postfix as the remote MTA
#
# relaychaind trusts 127.0.0.2 only (mynetworks); the test's own mail
# comes from there, and Postfix (127.0.0.1) is "anyone" to it. The
# feedback loop of fbl_clients is 127.0.0.3.
#
# 0. "relaychain check" refuses, with file:line, verp_domain without
#    verp_key_file, a short key, a key others can read, a bad domain, a
#    bad fbl_address, an fbl_clients item that is no network (relaychaind
#    too, at start), the keys without events_store.
# 1. A message from news@client.example to ok@ and gone@dest.example
#    leaves in two transactions, each with the envelope sender
#    bounces+TOKEN@verp.example (32 base32 characters, a token per
#    recipient). Postfix takes both, delivers ok@ and bounces gone@
#    later (transport error:5.1.1); its DSN goes to the VERP address,
#    routed by its transport map to relaychaind, the MX of verp.example,
#    which takes it from 127.0.0.1 and reads it: a hard bounced event
#    for gone@ under the original queue id and sender, 5.1.1; the next
#    message to gone@ is refused at RCPT with 550 5.7.1.
# 2. Mail to verp.example is not relayed and does not open the relay:
#    RCPT to another domain or a subdomain from 127.0.0.1 gets 554; a
#    relayed recipient after a VERP one gets 452 4.5.3.
# 3. A bounce to a forged or altered token is accepted and ignored:
#    logged, no event for ok@; an auto-reply and a message that is
#    neither are counted and discarded.
# 4. The null sender is never rewritten.
# 5. ARF reports to fbl_address (swaks). About the first message (two
#    recipients), found by its Message-ID and naming ok@: from 127.0.0.1,
#    not in fbl_clients, it is taken (250), logged with the client, the
#    Message-ID and why, and nobody complained or is suppressed (the
#    forgery anyone who got a copy could send); from the feedback loop
#    without Original-Rcpt-To, or naming an address the message did not
#    go to, likewise; from the feedback loop naming ok@, a complained
#    event for ok@ alone, suppressed with reason complaint, and
#    "relaychain report --json" counts it. A message of one recipient is
#    matched by Message-ID from 127.0.0.1 too, unless the report names
#    another recipient. One sent to the VERP domain from 127.0.0.1 whose
#    reported message carries gone@'s VERP Return-Path is matched by the
#    token; "relaychain status" counts what came back.
# 6. A reload that changes verp_domain or fbl_clients is told to
#    restart; until then RCPT to the new domain gets 451 (never
#    relayed), to the old 554.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/events_lib.sh"

set -- $(free_ports 3)
port=$1 pf_port=$2 pf_sink=$3

pfx_init pf
printf '%s\n' "gone@dest.example error:5.1.1 mailbox unavailable" \
    "verp.example smtp:[127.0.0.1]:$port" >"$T/pf/etc/transport"
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "transport_maps = texthash:$T/pf/etc/transport" \
    "bounce_queue_lifetime = 1m" "smtpd_reject_unlisted_recipient = no"
echo "127.0.0.1:$pf_port inet n - n - - smtpd" | pfx_master pf
sink_start pfsink "$pf_sink"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

openssl rand -hex 32 >"$T/verp.key"
chmod 600 "$T/verp.key"
printf '%s\n' "delivery = queue" "queue_directory = $T/spool" \
    "minimal_backoff_time = 1s" "maximal_backoff_time = 2s" \
    "mynetworks = 127.0.0.2/32" \
    "events_store = sqlite:$T/events.db" "events_batch_time = 50ms" \
    "verp_domain = verp.example" "verp_key_file = $T/verp.key" \
    "fbl_address = fbl@relay.test.example" \
    "fbl_clients = 127.0.0.3/32, [2001:db8::]/32" |
    rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$pf_port"

# --- 0. refused with file:line
grep -v '^verp_key_file' "$T/q.conf" >"$T/bad.conf"
check "verp_domain without verp_key_file" refused "$T/bad.conf" verp_domain "needs verp_key_file"
printf 'too short\n' >"$T/short.key"
chmod 600 "$T/short.key"
sed "s|^verp_key_file = .*|verp_key_file = $T/short.key|" "$T/q.conf" >"$T/bad.conf"
check "a short key" refused "$T/bad.conf" verp_key_file "9 octets, a key needs 32"
sed "s|^verp_key_file = .*|verp_key_file = $T/none.key|" "$T/q.conf" >"$T/bad.conf"
check "a missing key" refused "$T/bad.conf" verp_key_file "none.key"
cp "$T/verp.key" "$T/open.key"
chmod 644 "$T/open.key"
sed "s|^verp_key_file = .*|verp_key_file = $T/open.key|" "$T/q.conf" >"$T/bad.conf"
check "a key others can read" refused "$T/bad.conf" verp_key_file "readable by others"
sed "s|^verp_domain = .*|verp_domain = bad_domain!|" "$T/q.conf" >"$T/bad.conf"
check "a bad verp_domain" refused "$T/bad.conf" verp_domain "not a domain"
sed "s|^fbl_address = .*|fbl_address = nobody|" "$T/q.conf" >"$T/bad.conf"
check "a bad fbl_address" refused "$T/bad.conf" fbl_address "not an address"
sed "s|^fbl_clients = .*|fbl_clients = 127.0.0.3/32, 192.0.2.0/33|" "$T/q.conf" >"$T/bad.conf"
check "a bad fbl_clients network" refused "$T/bad.conf" fbl_clients "'192.0.2.0/33'"
# started_refused CONF KEY REASON - relaychaind does not start with CONF,
# and says why with the file and line that sets KEY
started_refused() {
    local line rc
    line=$(grep -n "^$2 *=" "$1" | tail -n 1 | cut -d: -f1)
    timeout 20 "$RCD" -f -c "$1" >"$T/start.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 124 ] ||
        ! grep -q "$1:$line: $2: .*$3" "$T/start.out"; then
        echo "started_refused: exit $rc, got $(cat "$T/start.out")" >&2
        return 1
    fi
}
check "relaychaind refuses a bad fbl_clients at start" \
    started_refused "$T/bad.conf" fbl_clients "'192.0.2.0/33'"
grep -v '^events_' "$T/q.conf" >"$T/bad.conf"
check "verp_domain without events_store" refused "$T/bad.conf" verp_domain "without events_store"
check "relaychain check takes the test's configuration" "$RC" check -c "$T/q.conf" >/dev/null

rcd_start rcd "$T/q.conf" "$port" || finish

# send FROM-ADDR ARGS... - swaks to relaychaind from 127.0.0.2 (trusted)
send() {
    timeout 30 swaks --server 127.0.0.1:$port --local-interface 127.0.0.2 "$@"
}

# --- 1. VERP out, the bounce back
send --from news@client.example --to ok@dest.example,gone@dest.example \
    --header 'Message-Id: <verp-1@client.example>' >"$T/send1.out" 2>&1
check "the message is accepted" grep -q '250 2.0.0 Ok: queued as' "$T/send1.out"
qid=$(sed -n 's/.*250 2.0.0 Ok: queued as \([0-9A-F]*\).*/\1/p' "$T/send1.out" | head -n 1)
check "ok@ delivered through Postfix" sink_wait pfsink 1 20
# sink_mail RCPT - the envelope sender of the newest copy for RCPT
sink_mail() {
    grep -l "^X-Rcpt-Args: <$1>" "$T"/pfsink/msg.* 2>/dev/null | tail -n 1 |
        xargs -r sed -n 's/^X-Mail-Args: <\([^>]*\)>.*/\1/p'
}
# like STRING REGEX
like() { printf '%s\n' "$1" | grep -qE "$2"; }
from_ok=$(sink_mail ok@dest.example)
check "ok@'s copy left with a VERP sender: $from_ok" \
    like "$from_ok" '^bounces\+[a-z2-7]{32}@verp\.example$'
check "two transactions, one VERP sender per recipient" \
    wait_grep 'from=<bounces+[a-z2-7]*@verp.example>' "$T/pf/postfix.log" 10
n_from=$(grep -oE 'from=<bounces\+[a-z2-7]{32}@verp.example>' "$T/pf/postfix.log" | sort -u | wc -l)
check "two different tokens (got $n_from)" [ "$n_from" -eq 2 ]
check "the original sender stays in the events" \
    wait_q "SELECT count(*) FROM events WHERE qid='$qid' AND type='delivered' AND rcpt='ok@dest.example' AND sender='news@client.example'" 1 10
check "Postfix's DSN reaches relaychaind and becomes a hard bounce for gone@" \
    wait_q "SELECT qid || ' ' || sender || ' ' || hard || ' ' || dsn FROM events WHERE type='bounced' AND rcpt='gone@dest.example'" "$qid news@client.example 1 5.1.1" 30
check "the bounce was read from Postfix at 127.0.0.1, not relayed" \
    grep -q 'verp: bounce for .* to=<gone@dest.example>: hard' "$T/rcd.log"
check "Postfix delivered its DSN to relaychaind" \
    grep -q "to=<bounces+[a-z2-7]*@verp.example>, relay=127.0.0.1\\[127.0.0.1\\]:$port.*status=sent" "$T/pf/postfix.log"
send --from news@client.example --to gone@dest.example >"$T/send2.out" 2>&1
check "the next message to gone@ is refused at RCPT" \
    grep -q '550 5.7.1 recipient suppressed (hard bounce 550 5.1.1' "$T/send2.out"

# --- 2. not relayed, no open relay
chat "$port" >"$T/relay.out" 2>&1 <<EOF
expect
send EHLO x
expect
send MAIL FROM:<a@b.example>
expect
send RCPT TO:<x@elsewhere.example>
expect
send RCPT TO:<x@sub.verp.example>
expect
send RCPT TO:<postmaster@verp.example>
expect
send RCPT TO:<fbl@relay.test.example>
expect
send QUIT
expect
EOF
check "another domain from an untrusted client: 554" \
    grep -q '554 5.7.1 <x@elsewhere.example>: Relay access denied' "$T/relay.out"
check "a subdomain of verp.example: 554" \
    grep -q '554 5.7.1 <x@sub.verp.example>: Relay access denied' "$T/relay.out"
check "any address at verp.example from anyone, and fbl_address: 250" \
    [ "$(grep -c '^250 2.1.5' "$T/relay.out")" -eq 2 ]
send --from a@client.example --to postmaster@verp.example,ok@dest.example \
    >"$T/mix.out" 2>&1
check "a relayed recipient after one for the relay itself: 452 4.5.3" \
    grep -q '452 4.5.3' "$T/mix.out"

# --- 3. forged tokens, auto-replies, neither
tok=$(grep -oE 'from=<bounces\+[a-z2-7]{32}@verp.example>' "$T/pf/postfix.log" | head -n 1 | sed 's/from=<bounces+//; s/@.*//')
# one character of the tag changed
c=$(printf %s "$tok" | cut -c28)
[ "$c" = a ] && new=b || new=a
forged="bounces+$(printf %s "$tok" | cut -c1-27)$new$(printf %s "$tok" | cut -c29-)@verp.example"
dsn_body() {
    printf '%s\r\n' "From: MAILER-DAEMON@pf.test.example" "To: <$1>" \
        "Subject: Undelivered Mail Returned to Sender" "MIME-Version: 1.0" \
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"' \
        "" "--B" "Content-Type: message/delivery-status" "" \
        "Reporting-MTA: dns; pf.test.example" "" \
        "Final-Recipient: rfc822; ok@dest.example" "Action: failed" \
        "Status: 5.1.1" "" "--B--"
}
dsn_body "$forged" >"$T/forged.eml"
timeout 30 swaks --server 127.0.0.1:$port --from '<>' --to "$forged" \
    --data "$T/forged.eml" >"$T/forged.out" 2>&1
check "a forged token: the message is taken (250)" grep -q '^<- *250 2.0.0 Ok' "$T/forged.out"
check "a forged token: logged" wait_grep "verp: forged or altered token in <$forged> ignored" "$T/rcd.log" 5
check "a forged token: no bounce for ok@" \
    [ "$(q "SELECT count(*) FROM events WHERE type='bounced' AND rcpt='ok@dest.example'")" = 0 ]
printf '%s\r\n' "From: erin@dest.example" "To: bounces+$tok@verp.example" \
    "Subject: Out of Office" "Auto-Submitted: auto-replied" "" \
    "I am away; write to frank@dest.example." >"$T/vacation.eml"
timeout 30 swaks --server 127.0.0.1:$port --from erin@dest.example \
    --to "bounces+$tok@verp.example" --data "$T/vacation.eml" >"$T/vac.out" 2>&1
check "an auto-reply: taken, logged, not a bounce" \
    sh -c "grep -q '^<- *250 2.0.0 Ok' '$T/vac.out' && grep -q 'verp: auto-reply from' '$T/rcd.log'"
timeout 30 swaks --server 127.0.0.1:$port --from x@else.example \
    --to "hello@verp.example" >"$T/other.out" 2>&1
check "neither: taken, logged" \
    sh -c "grep -q '^<- *250 2.0.0 Ok' '$T/other.out' && grep -q 'verp: neither bounce nor complaint' '$T/rcd.log'"
check "still one bounce event in all" \
    [ "$(q "SELECT count(*) FROM events WHERE type='bounced'")" = 1 ]

# --- 4. the null sender stays
before=$(sink_count pfsink)
send --from '<>' --to ok@dest.example >"$T/null.out" 2>&1
check "a null-sender message delivered" sink_wait pfsink $((before + 1)) 20
check "with the null sender" \
    sh -c "grep -l '^X-Mail-Args: <>' '$T'/pfsink/msg.* | xargs grep -l '^X-Rcpt-Args: <ok@dest.example>' | grep -q ."

# --- 5. ARF complaints through swaks
# arf_body MESSAGE-ID [RCPT] - an ARF report about MESSAGE-ID, naming
# RCPT in Original-Rcpt-To when given
arf_body() {
    printf '%s\r\n' "From: fbl@isp.example" "To: fbl@relay.test.example" \
        "Subject: FW: complaint" "MIME-Version: 1.0" \
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"' \
        "" "--A" "Content-Type: text/plain" "" "This is an abuse report." \
        "--A" "Content-Type: message/feedback-report" "" \
        "Feedback-Type: abuse" "User-Agent: isp-fbl/1.0" "Version: 1"
    [ -n "$2" ] && printf '%s\r\n' "Original-Rcpt-To: <$2>"
    printf '%s\r\n' "" "--A" "Content-Type: text/rfc822-headers" "" \
        "Message-Id: $1" "Subject: test" "" "--A--"
}
# arf_send NAME FROM-IP MESSAGE-ID [RCPT] - the report from FROM-IP
arf_send() {
    arf_body "$3" "$4" >"$T/$1.eml"
    timeout 30 swaks --server 127.0.0.1:$port --local-interface "$2" \
        --from fbl@isp.example --to fbl@relay.test.example \
        --data "$T/$1.eml" >"$T/$1.out" 2>&1
}
complaints() { q "SELECT count(*) FROM events WHERE type='complained'"; }
ignored() {
    wait_grep "fbl: complaint from [^ ]*\[$1\] matched by Message-ID <verp-1@client.example> $2: ignored" "$T/rcd.log" 5
}

# (a) the forgery: 127.0.0.1 is not a feedback loop, the message had two
# recipients, and the report names the other one
arf_send forged 127.0.0.1 '<verp-1@client.example>' ok@dest.example
check "a forged complaint is taken (250)" grep -q '^<- *250 2.0.0 Ok' "$T/forged.out"
check "and logged: not in fbl_clients" \
    ignored 127.0.0.1 'to a message of 2 recipients; not in fbl_clients'
check "no complaint logged for ok@ (the 250 came after the log)" \
    sh -c "! grep -q 'fbl: complaint for .* to=<ok@dest.example>' '$T/rcd.log'"
check "no complained event for it" [ "$(complaints)" = 0 ]
"$RC" suppress -c "$T/q.conf" list >"$T/list.out" 2>&1
check "ok@ is not suppressed by it" sh -c "! grep -q '^ok@dest.example' '$T/list.out'"
# from the feedback loop, a report on a message of several recipients
# must name one of them
arf_send unnamed 127.0.0.3 '<verp-1@client.example>'
check "from fbl_clients without Original-Rcpt-To: ignored" \
    ignored 127.0.0.3 'to a message of 2 recipients names no recipient [(]Original-Rcpt-To[)]'
arf_send stranger 127.0.0.3 '<verp-1@client.example>' mallory@dest.example
check "from fbl_clients naming one the message did not go to: ignored" \
    ignored 127.0.0.3 'names <mallory@dest.example>, not a recipient of that message'
check "still no complained event" [ "$(complaints)" = 0 ]

# (b) the same report from the feedback loop
arf_send arf 127.0.0.3 '<verp-1@client.example>' ok@dest.example
check "the complaint is taken" grep -q '^<- *250 2.0.0 Ok' "$T/arf.out"
check "a complained event for ok@ under the first message" \
    wait_q "SELECT qid || ' ' || sender FROM events WHERE type='complained' AND rcpt='ok@dest.example'" "$qid news@client.example" 10
check "for ok@ alone" \
    [ "$(q "SELECT group_concat(rcpt) FROM events WHERE type='complained'")" = ok@dest.example ]
"$RC" suppress -c "$T/q.conf" list >"$T/list.out" 2>&1
check "ok@ is suppressed with reason complaint" \
    grep -q '^ok@dest.example	\*	.*	complaint$' "$T/list.out"
check "gone@ not for a complaint" sh -c "! grep -q '^gone@dest.example	.*complaint' '$T/list.out'"
"$RC" report -c "$T/q.conf" --json >"$T/report.json" 2>&1
check "report counts the complaint: $(cat "$T/report.json")" \
    grep -q '"complained": 1' "$T/report.json"

# (c) a message of one recipient: anyone's report can only be about it
send --from news@client.example --to solo@dest.example \
    --header 'Message-Id: <verp-2@client.example>' >"$T/send3.out" 2>&1
qid2=$(sed -n 's/.*250 2.0.0 Ok: queued as \([0-9A-F]*\).*/\1/p' "$T/send3.out" | head -n 1)
check "the one-recipient message is recorded" \
    wait_q "SELECT count(*) FROM events WHERE qid='$qid2' AND type='received'" 1 10
arf_send solo_other 127.0.0.1 '<verp-2@client.example>' ok@dest.example
check "one recipient, the report names another: ignored" \
    wait_grep "fbl: complaint from [^ ]*\[127.0.0.1\] matched by Message-ID <verp-2@client.example> names <ok@dest.example>, not a recipient of that message: ignored" "$T/rcd.log" 5
arf_send solo 127.0.0.1 '<verp-2@client.example>'
check "one recipient, from anyone: a complained event for solo@" \
    wait_q "SELECT qid || ' ' || text FROM events WHERE type='complained' AND rcpt='solo@dest.example'" "$qid2 abuse complaint, matched by Message-ID" 10
check "two complained events in all" [ "$(complaints)" = 2 ]

# (d) a token match counts from anyone: an ARF report from 127.0.0.1
# whose reported message carries gone@'s VERP address in its Return-Path
# is matched by the token (the Message-ID is not ours)
from_gone=$(grep -oE 'from=<bounces\+[a-z2-7]{32}@verp.example>' "$T/pf/postfix.log" |
    sed 's/^from=<//; s/>$//' | grep -v -x "$from_ok" | head -n 1)
printf '%s\r\n' "From: fbl@isp.example" "To: postmaster@verp.example" \
    "Subject: complaint" "MIME-Version: 1.0" \
    'Content-Type: multipart/report; report-type=feedback-report; boundary="A"' \
    "" "--A" "Content-Type: message/feedback-report" "" \
    "Feedback-Type: abuse" "Version: 1" "" \
    "--A" "Content-Type: message/rfc822" "" \
    "Return-Path: <$from_gone>" "Message-Id: <not-ours@isp.example>" \
    "Subject: test" "" "hello" "--A--" >"$T/arf2.eml"
timeout 30 swaks --server 127.0.0.1:$port --local-interface 127.0.0.1 \
    --from fbl@isp.example --to postmaster@verp.example \
    --data "$T/arf2.eml" >"$T/arf2.out" 2>&1
check "a complaint to the VERP domain, matched by the token: gone@" \
    wait_q "SELECT qid || ' ' || text FROM events WHERE type='complained' AND rcpt='gone@dest.example'" "$qid abuse complaint, matched by token" 10

# --- 6. a reload that changes verp_domain: told to restart, and until
# then neither the new domain nor the old one is taken (the new one
# would otherwise be relayed for anyone; the old one is the reloaded
# policy's to refuse)
sed -i -e 's|^verp_domain = .*|verp_domain = other.example|' \
    -e 's|^fbl_clients = .*|fbl_clients = 127.0.0.0/8|' "$T/q.conf"
"$RC" reload -c "$T/q.conf" >"$T/reload.out" 2>&1
check "reload names verp_domain as restart-only: $(cat "$T/reload.out")" \
    grep -q 'verp_domain changed: restart relaychaind to use it' "$T/reload.out"
check "and fbl_clients" \
    grep -q 'fbl_clients changed: restart relaychaind to use it' "$T/reload.out"
chat "$port" >"$T/reload_rcpt.out" 2>&1 <<EOF
expect
send EHLO x
expect
send MAIL FROM:<a@b.example>
expect
send RCPT TO:<x@other.example>
expect
send RCPT TO:<x@verp.example>
expect
send QUIT
expect
EOF
check "after the reload, RCPT to the new domain: 451, not relayed" \
    grep -q '^451 4.3.0' "$T/reload_rcpt.out"
check "and to the old one: refused by the reloaded policy" \
    grep -q '^554 5.7.1 <x@verp.example>: Relay access denied' "$T/reload_rcpt.out"

# the counts in "relaychain status": the DSN and the three complaints,
# the auto-reply, the two messages that are neither (hello@ and the
# mixed transaction's postmaster@), the forged token, the four
# complaints that were not attributed
"$RC" status -c "$T/q.conf" >"$T/status.out" 2>&1
check "status counts what came back: $(grep returned "$T/status.out")" \
    grep -q '^returned: 1 bounces, 3 complaints, 1 auto-replies, 2 other, 1 forged tokens, 4 unmatched' "$T/status.out"

pfx_stop pf
rcd_stop rcd
finish
