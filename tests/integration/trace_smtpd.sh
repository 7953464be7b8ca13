#!/bin/sh
# trace_smtpd - what relaychaind's SMTP front end leaves to trace a message
#
# relaychaind (the antivirus stage on the test signatures, default
# reject) relays to smtp-sink and trusts 127.0.0.1 for XFORWARD. With a
# scripted client:
#   1. EHLO announces XFORWARD ... IDENT; an IDENT that is not a queue id
#      (letters and digits) is refused with 501, a good one shows in the
#      "client=" line as orig_queue_id= and in the summary line;
#   2. a clean message from a client whose HELO holds "(", ";" and
#      spaces reaches the sink with relaychaind's Received on top of the
#      message: the HELO with those octets replaced by '?', the peer,
#      "by relay.test.example (relaychain) with ESMTP id QID", "for
#      <rcpt>;" and a date; the summary line "QID: Passed CLEAN
#      {Relayed}" names the upstream's id (smtpd_postfix_filter checks
#      queued_as: with a next hop that gives one);
#   3. an infected message: "554 5.7.1 virus=NAME (id QID)" where QID is
#      the id of its log lines, and "QID: Blocked INFECTED (NAME)
#      {Rejected}, by=antivirus";
#   4. content refused at the end of DATA (a bare LF) carries the id too.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/av_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2

av_chain "$T/av"
sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/av
xforward_hosts = 127.0.0.1
EOF
rcd_start rcd "$T/r.conf" "$port" || finish
log=$T/rcd.log

# 1 and 2: XFORWARD IDENT, then a clean message with a hostile HELO
chat "$port" >"$T/clean.out" <<'EOF'
expect
send EHLO evil (x); by.example [1.2.3.4]
expect
send XFORWARD IDENT=AB+2FCD
expect
send XFORWARD IDENT=4F1A2B3C9D NAME=up.example ADDR=192.0.2.9
expect
send MAIL FROM:<alice@example.com>
expect
send RCPT TO:<bob@example.org>
expect
send DATA
expect
raw From: alice@example.com\r\nTo: bob@example.org\r\nSubject: clean\r\n\r\nNothing to see.\r\n.\r\n
expect
send QUIT
expect
EOF
check "1: EHLO announces XFORWARD with IDENT" \
    grep -q '^250-XFORWARD NAME ADDR PROTO HELO IDENT$' "$T/clean.out"
check "1: an IDENT that is not a queue id is refused" \
    grep -q '^501 5.5.4 Bad XFORWARD attribute value$' "$T/clean.out"
check "2: 250 for XFORWARD and for the message" \
    [ "$(grep -c '^250 2.0.0 Ok$' "$T/clean.out")" -eq 2 ]
check "1: client= line with orig_queue_id=" \
    grep -Eq ": [0-9A-F]+: client=unknown\[127.0.0.1\], orig_queue_id=4F1A2B3C9D, orig_client=up.example\[192.0.2.9\]$" "$log"
rq=$(sed -n 's/.*: \([0-9A-F]*\): client=unknown\[127.0.0.1\], orig_queue_id=4F1A2B3C9D,.*/\1/p' "$log" | head -n 1)
check "2: summary line: Passed CLEAN {Relayed} with both ids" \
    grep -Eq ": $rq: Passed CLEAN \{Relayed\}, orig_queue_id=4F1A2B3C9D, client=up.example\[192.0.2.9\], from=<alice@example.com>, to=<bob@example.org>, size=[0-9]+, [0-9]+ ms$" "$log"
check "2: at the sink" sink_wait sink 1 10
msg=$(sink_files sink | head -n 1)
# The first Received: after smtp-sink's own is relaychaind's.
"$PY" - "$msg" >"$T/received.txt" <<'PYEOF'
import email, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
print(m.get_all("Received")[1])
PYEOF
check "2: Received: HELO made harmless, the peer, by, with, id ($(cat "$T/received.txt"))" \
    grep -q "^from evil??x???by.example?\[1.2.3.4\] (unknown \[127.0.0.1\])$" "$T/received.txt"
check "2: Received: by relay.test.example (relaychain) with ESMTP id $rq" \
    grep -Eq "^[[:space:]]+by relay.test.example \(relaychain\) with ESMTP id $rq$" "$T/received.txt"
check "2: Received: for <bob@example.org>; and an RFC 5322 date" \
    grep -Eq "^[[:space:]]+for <bob@example.org>; [A-Z][a-z]{2}, [ 0-9][0-9] [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} [+-][0-9]{4}" "$T/received.txt"
check "2: Received: the HELO wrote no clause of its own" \
    sh -c "! grep -q 'by by.example' '$T/received.txt'"

# 3. infected: the reply and the log share the id
mail_attach "infected" "$AVF/eicar.com" "eicar.com" >"$T/infected.eml"
timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.org --data "@$T/infected.eml" \
    >"$T/infected.out" 2>&1
iq=$(sed -n 's/^<\*\* *554 5.7.1 virus=.* (id \([0-9A-F]*\))$/\1/p' "$T/infected.out")
check "3: 554 5.7.1 virus=NAME (id QID) ($iq)" [ -n "$iq" ]
check "3: the id is the one of its log lines" \
    grep -q ": $iq: antivirus: reject, virus=RelayChain.Test.EICAR" "$log"
check "3: summary line: Blocked INFECTED {Rejected}" \
    grep -Eq ": $iq: Blocked INFECTED \(RelayChain\.Test\.EICAR[A-Za-z.]*\) \{Rejected\}, by=antivirus, client=unknown\[127.0.0.1\], from=<alice@example.com>, to=<bob@example.org>, size=[0-9]+, [0-9]+ ms$" "$log"

# 4. refused at the end of DATA: a bare LF
chat "$port" >"$T/barelf.out" <<'EOF'
expect
send EHLO client.test.example
expect
send MAIL FROM:<alice@example.com>
expect
send RCPT TO:<bob@example.org>
expect
send DATA
expect
raw Subject: x\r\n\r\nbare\nLF\r\n.\r\n
expect
send QUIT
expect
EOF
bq=$(sed -n 's/^550 5.5.2 .* (id \([0-9A-F]*\))$/\1/p' "$T/barelf.out")
check "4: bare LF: 550 with the id ($bq)" [ -n "$bq" ]
check "4: the id is the one of its log line" \
    grep -q ": $bq: reject: END-OF-MESSAGE from" "$log"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$log" "$T/clean.out" "$T/infected.out" "$T/barelf.out"
    [ -n "${msg:-}" ] && cat "$msg"
fi
rcd_stop rcd
finish
