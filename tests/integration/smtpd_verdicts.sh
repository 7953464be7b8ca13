#!/bin/sh
# smtpd_verdicts - the chain's verdicts become SMTP replies
#
# relaychaind runs a rewrite chain and relays to smtp-sink. In one
# session, three transactions:
#   1. a sender whose rule gives an invalid address: the stage fails,
#      on_error = tempfail, the client gets 451 at the end of DATA;
#   2. a message whose MIME structure is ambiguous: 554 5.6.0;
#   3. a good message whose sender and one recipient are rewritten: 250,
#      and the next hop gets the rewritten envelope (the next-hop
#      transaction was replayed with it) and nothing else.
# Nothing of 1 and 2 may reach the sink, and the session must go on
# after each refusal.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2

mkdir -p "$T/verdict.d/rules"
cat >"$T/verdict.d/10-rewrite.conf" <<'EOF'
stage = rewrite
sender_rules = rules/sender.pcre
recipient_rules = rules/rcpt.pcre
EOF
cat >"$T/verdict.d/rules/sender.pcre" <<'EOF'
/^broken@example\.com$/          not an address
/^([^@]+)@host1\.corp\.example$/ ${1}@example.com
EOF
cat >"$T/verdict.d/rules/rcpt.pcre" <<'EOF'
/^old@example\.net$/             new@example.net
EOF

sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/verdict.d
EOF
rcd_start rcd "$T/r.conf" "$port" || finish

chat "$port" >"$T/session.out" <<'EOF'
expect
send EHLO client.test.example
expect
send MAIL FROM:<broken@example.com>
expect
send RCPT TO:<bob@example.org>
expect
send DATA
expect
raw From: broken@example.com\r\nSubject: tempfail\r\n\r\nbody\r\n.\r\n
expect
send MAIL FROM:<alice@example.com>
expect
send RCPT TO:<bob@example.org>
expect
send DATA
expect
raw From: alice@example.com\r\nSubject: ambiguous\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhidden\r\n--x--\r\n--x--\r\n.\r\n
expect
send MAIL FROM:<alice@host1.corp.example>
expect
send RCPT TO:<old@example.net>
expect
send RCPT TO:<bob@example.org>
expect
send DATA
expect
raw From: alice@host1.corp.example\r\nSubject: good\r\n\r\nbody\r\n.\r\n
expect
send QUIT
expect
EOF

got=$(grep -E '^[0-9]{3}( |$)' "$T/session.out" | cut -c1-3 | tr '\n' ' ' | sed 's/ $//')
check "replies: 451 for the failed rewrite, 554 for ambiguous MIME, 250 for the good one (got '$got')" \
    [ "$got" = "220 250 250 250 354 451 250 250 354 554 250 250 250 354 250 221" ]
check "the failed rewrite is a 451 4.x tempfail" grep -q '^451 4\.' "$T/session.out"
check "ambiguous MIME is 554 5.6.0" grep -q '^554 5.6.0' "$T/session.out"
check "relaychaind logged the tempfail and the reject" \
    sh -c "grep -q ': tempfail: rewrite' '$T/rcd.log' && grep -q ': reject: ' '$T/rcd.log'"
check "the good message reaches the sink" sink_wait sink 1
sleep 0.3
check "and only it" [ "$(sink_count sink)" -eq 1 ]
msg=$(sink_files sink | head -n 1)
check "sink: the message is the good one" grep -q '^Subject: good$' "$msg"
check "sink: sender rewritten" grep -q '^X-Mail-Args: <alice@example.com>' "$msg"
grep '^X-Rcpt-Args:' "$msg" | cut -d' ' -f2 | sort >"$T/rcpts"
printf '%s\n' '<bob@example.org>' '<new@example.net>' >"$T/want"
check "sink: recipients are the rewritten ones: $(tr '\n' ' ' <"$T/rcpts")" cmp -s "$T/rcpts" "$T/want"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    grep -v '^#\|^250-' "$T/session.out"
    cat "$T/rcd.log"
fi
rcd_stop rcd
finish
