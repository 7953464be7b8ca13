#!/bin/sh
# verp - VERP bounce tracking and ARF complaints, end to end through
# relaychaind in queue mode with a private Postfix as the remote MTA
#
# relaychaind trusts 127.0.0.2 only (mynetworks); the test's own mail
# comes from there, and Postfix (127.0.0.1) is "anyone" to it.
#
# 0. "relaychain check" refuses, with file:line, verp_domain without
#    verp_key_file, a short key, a key others can read, a bad domain, a
#    bad fbl_address, the keys without events_store.
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
# 5. An ARF report to fbl_address (swaks) about the first message, found
#    by its Message-ID, becomes a complained event for ok@, which is
#    suppressed with reason complaint; "relaychain report --json"
#    counts it; one sent to the VERP domain whose reported message
#    carries gone@'s VERP Return-Path is matched by the token; "relaychain
#    status" counts what came back.
# 6. A reload that changes verp_domain is told to restart; until then
#    RCPT to the new domain gets 451 (never relayed), to the old 554.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

RC="$top_builddir/relaychain"
command -v sqlite3 >/dev/null 2>&1 || {
    echo "$0: sqlite3 is missing (scripts/setup installs it)" >&2
    exit 1
}
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
    "fbl_address = fbl@relay.test.example" |
    rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$pf_port"

# --- 0. refused with file:line
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
grep -v '^events_' "$T/q.conf" >"$T/bad.conf"
check "verp_domain without events_store" refused "$T/bad.conf" verp_domain "without events_store"
check "relaychain check takes the test's configuration" "$RC" check -c "$T/q.conf" >/dev/null

rcd_start rcd "$T/q.conf" "$port" || finish

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

# --- 5. an ARF complaint through swaks
printf '%s\r\n' "From: fbl@isp.example" "To: fbl@relay.test.example" \
    "Subject: FW: complaint" "MIME-Version: 1.0" \
    'Content-Type: multipart/report; report-type=feedback-report; boundary="A"' \
    "" "--A" "Content-Type: text/plain" "" "This is an abuse report." \
    "--A" "Content-Type: message/feedback-report" "" \
    "Feedback-Type: abuse" "User-Agent: isp-fbl/1.0" "Version: 1" \
    "Original-Rcpt-To: <ok@dest.example>" "" \
    "--A" "Content-Type: text/rfc822-headers" "" \
    "Message-Id: <verp-1@client.example>" "Subject: test" "" "--A--" \
    >"$T/arf.eml"
timeout 30 swaks --server 127.0.0.1:$port --from fbl@isp.example \
    --to fbl@relay.test.example --data "$T/arf.eml" >"$T/arf.out" 2>&1
check "the complaint is taken" grep -q '^<- *250 2.0.0 Ok' "$T/arf.out"
check "a complained event for ok@ under the first message" \
    wait_q "SELECT qid || ' ' || sender FROM events WHERE type='complained' AND rcpt='ok@dest.example'" "$qid news@client.example" 10
"$RC" suppress -c "$T/q.conf" list >"$T/list.out" 2>&1
check "ok@ is suppressed with reason complaint" \
    grep -q '^ok@dest.example	\*	.*	complaint$' "$T/list.out"
"$RC" report -c "$T/q.conf" --json >"$T/report.json" 2>&1
check "report counts the complaint: $(cat "$T/report.json")" \
    grep -q '"complained": 1' "$T/report.json"

# an ARF report whose reported message carries gone@'s VERP address in
# its Return-Path is matched by the token (the Message-ID is not ours)
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
timeout 30 swaks --server 127.0.0.1:$port --from fbl@isp.example \
    --to postmaster@verp.example --data "$T/arf2.eml" >"$T/arf2.out" 2>&1
check "a complaint to the VERP domain, matched by the token: gone@" \
    wait_q "SELECT qid || ' ' || text FROM events WHERE type='complained' AND rcpt='gone@dest.example'" "$qid abuse complaint, matched by token" 10

# --- 6. a reload that changes verp_domain: told to restart, and until
# then neither the new domain nor the old one is taken (the new one
# would otherwise be relayed for anyone; the old one is the reloaded
# policy's to refuse)
sed -i 's|^verp_domain = .*|verp_domain = other.example|' "$T/q.conf"
"$RC" reload -c "$T/q.conf" >"$T/reload.out" 2>&1
check "reload names verp_domain as restart-only: $(cat "$T/reload.out")" \
    grep -q 'verp_domain changed: restart relaychaind to use it' "$T/reload.out"
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

# the counts in "relaychain status": the DSN and the complaint, the
# auto-reply, the two messages that are neither (hello@ and the mixed
# transaction's postmaster@), the forged token
"$RC" status -c "$T/q.conf" >"$T/status.out" 2>&1
check "status counts what came back: $(grep returned "$T/status.out")" \
    grep -q '^returned: 1 bounces, 2 complaints, 1 auto-replies, 2 other, 1 forged tokens, 0 unmatched' "$T/status.out"

pfx_stop pf
rcd_stop rcd
finish
