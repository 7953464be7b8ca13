#!/bin/sh
# smtpd_relay - relaychaind is no open relay
#
# mynetworks is 127.0.0.1/32 only, so clients on 127.0.0.2 and 127.0.0.3
# are strangers. They may send to relay_domains (relay.example, exactly)
# and nowhere else, and no routing trick in the address (percent hack,
# bang path, quoted "@", source route, subdomain) may widen that: each is
# refused with 554 5.7.1 or, for a source route whose final address is
# in relay.example, accepted only as that final address. The sink must
# get exactly the recipients policy allowed.
#
# AUTH is not offered and refused (503) before STARTTLS; after STARTTLS a
# good password (swaks, AUTH PLAIN and LOGIN) may relay anywhere, a wrong
# one gets 535, and auth_failure_limit failures end the session with
# 421. An authenticated user may use only the sender addresses
# sender_login_map gives it (553 5.7.1 otherwise).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
printf '%s\n' 'right horse battery' |
    "$RC" passwd "$T/passwd" alice >"$T/passwd.out" 2>&1 ||
    fail "relaychain passwd: $(cat "$T/passwd.out")"
cat >"$T/logins.pcre" <<'EOF'
/^alice@example\.com$/      alice
/@sales\.example\.com$/     bob, alice
EOF

sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
mynetworks = 127.0.0.1/32
relay_domains = relay.example
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/passwd
auth_failure_limit = 2
sender_login_map = $T/logins.pcre
EOF
rcd_start rcd "$T/r.conf" "$port" || finish

swaks_to() {
    # swaks_to OUT SRC FROM TO [swaks options...]
    out=$1 src=$2 from=$3 to=$4
    shift 4
    timeout 30 swaks --server "127.0.0.1:$port" --local-interface "$src" \
        --timeout 10 --helo client.test.example --from "$from" --to "$to" \
        --header "Subject: $out" "$@" >"$T/$out.out" 2>&1
}

# 1. A stranger relaying to another domain.
swaks_to plain 127.0.0.2 a@client.example user@other.example
check "stranger to other.example: 554 5.7.1 Relay access denied" \
    grep -q '^<\*\* *554 5.7.1 <user@other.example>: Relay access denied' "$T/plain.out"
check "the refusal is logged as NOQUEUE reject" \
    grep -q 'NOQUEUE: reject: RCPT from unknown\[127.0.0.2\]: 554 5.7.1 <user@other.example>: Relay access denied' "$T/rcd.log"

# 2. A stranger to relay_domains.
swaks_to inbound 127.0.0.3 a@client.example user@relay.example
rc=$?
check "stranger to relay.example: accepted (swaks exit $rc)" [ "$rc" -eq 0 ]
check "stranger to relay.example: delivered" sink_wait sink 1

# 3. Routing tricks, one transaction from 127.0.0.3: only what is in
# relay.example itself may be accepted.
chat "$port" --src 127.0.0.3 >"$T/tricks.out" <<'EOF'
expect
send EHLO client.test.example
expect
send MAIL FROM:<a@client.example>
expect
send RCPT TO:<user%other.example@relay.example>
expect
send RCPT TO:<other.example!user@relay.example>
expect
send RCPT TO:<"user@other.example"@relay.example>
expect
send RCPT TO:<@relay.example:user@other.example>
expect
send RCPT TO:<user@sub.relay.example>
expect
send RCPT TO:<user@relay.example.other.example>
expect
send RCPT TO:<@other.example:route@relay.example>
expect
send RCPT TO:<User2@RELAY.example>
expect
send DATA
expect
send Subject: tricks
send
send routing tricks
send .
expect
send QUIT
expect
EOF
for a in 'user%other.example@relay.example' 'other.example!user@relay.example' \
    '"user@other.example"@relay.example' 'user@sub.relay.example' \
    'user@relay.example.other.example'; do
    check "stranger to <$a>: 554 5.7.1" \
        grep -qF "554 5.7.1 <$a>: Relay access denied" "$T/tricks.out"
done
check "source route to other.example via relay.example: 554 5.7.1" \
    grep -q '^554 5.7.1 <[^>]*other.example>: Relay access denied' "$T/tricks.out"
check "mixed-case relay domain accepted" grep -q '^250 2.0.0 Ok' "$T/tricks.out"
check "exactly two recipients accepted (route@ and User2@)" \
    [ "$(grep -c '^250 2.1.5' "$T/tricks.out")" -eq 2 ]
check "the message with the accepted recipients delivered" sink_wait sink 2
tricks=$(grep -l '^Subject: tricks' "$T"/sink/msg.* 2>/dev/null | head -n 1)
check "sink: the tricks message arrived" [ -n "$tricks" ]
if [ -n "$tricks" ]; then
    grep '^X-Rcpt-Args:' "$tricks" | sed 's/^X-Rcpt-Args: //' | sort >"$T/tricks.rcpts"
    printf '%s\n' '<User2@RELAY.example>' '<route@relay.example>' | sort >"$T/tricks.want"
    check "sink: recipients are exactly the allowed ones: $(tr '\n' ' ' <"$T/tricks.rcpts")" \
        cmp -s "$T/tricks.rcpts" "$T/tricks.want"
fi
check "no address outside relay.example reached the sink" \
    sh -c "! grep -h '^X-Rcpt-Args:' '$T'/sink/msg.* | grep -qi 'other.example'"

# 4. AUTH before STARTTLS.
b64_good=$(printf '\0alice\0right horse battery' | base64 -w0)
b64_bad=$(printf '\0alice\0wrong horse' | base64 -w0)
chat "$port" --src 127.0.0.2 >"$T/notls.out" <<EOF
expect
send EHLO client.test.example
expect
send AUTH PLAIN $b64_good
expect
send MAIL FROM:<alice@example.com>
expect
send RCPT TO:<user@other.example>
expect
send QUIT
expect
EOF
check "EHLO before STARTTLS offers STARTTLS" grep -q '^250-STARTTLS$' "$T/notls.out"
check "EHLO before STARTTLS does not offer AUTH" sh -c "! grep -q '^250.AUTH' '$T/notls.out'"
check "AUTH before STARTTLS: 503" grep -q '^503 5.5.1' "$T/notls.out"
check "no relaying after the refused AUTH" grep -q '^554 5.7.1 <user@other.example>' "$T/notls.out"

# 5. STARTTLS and a good password relay anywhere (swaks, PLAIN and LOGIN).
swaks_to authplain 127.0.0.2 alice@example.com user@other.example \
    --tls --auth PLAIN --auth-user alice --auth-password 'right horse battery'
rc=$?
check "STARTTLS + AUTH PLAIN relays to other.example (swaks exit $rc)" [ "$rc" -eq 0 ]
check "AUTH PLAIN: 235" grep -q '^<~  235 2.7.0' "$T/authplain.out"
swaks_to authlogin 127.0.0.3 bob@sales.example.com user2@other.example \
    --tls --auth LOGIN --auth-user alice --auth-password 'right horse battery'
rc=$?
check "STARTTLS + AUTH LOGIN relays, sender from an @domain rule (swaks exit $rc)" [ "$rc" -eq 0 ]
check "both authenticated messages delivered" sink_wait sink 4
check "sink: the authenticated relay went to other.example" \
    grep -q '^X-Rcpt-Args: <user@other.example>' $(grep -l '^Subject: authplain' "$T"/sink/msg.*)
# relaychaind's Received: RFC 3848's ESMTPSA, the TLS protocol, and not
# the login (Postfix's smtpd_sasl_authenticated_header = no)
check "sink: Received says TLS and ESMTPSA, names no login" \
    sh -c "f=\$(grep -l '^Subject: authplain' '$T'/sink/msg.*) &&
        grep -A3 '^Received: from .* (unknown \[127.0.0.2\])' \"\$f\" >'$T/authplain.rcvd' &&
        grep -q '(using TLSv1' '$T/authplain.rcvd' &&
        grep -q '(relaychain) with ESMTPSA id ' '$T/authplain.rcvd' &&
        ! grep -q alice '$T/authplain.rcvd'"
check "the login is logged, the password is not" \
    sh -c "grep -q 'sasl_method=PLAIN, sasl_username=alice' '$T/rcd.log' && ! grep -q 'horse' '$T/rcd.log'"
check "AUTH LOGIN with an initial response is logged as LOGIN" \
    grep -q 'unknown\[127.0.0.3\]: sasl_method=LOGIN, sasl_username=alice' "$T/rcd.log"

# 6. Wrong passwords: 535, then 421 at auth_failure_limit (2).
chat "$port" --src 127.0.0.2 >"$T/badpw.out" <<EOF
expect
send EHLO client.test.example
expect
send STARTTLS
expect
starttls
send MAIL FROM:<alice@example.com>
expect
send EHLO client.test.example
expect
send AUTH PLAIN $b64_bad
expect
send AUTH PLAIN $b64_bad
expect
eof
EOF
check "after STARTTLS the session starts over (MAIL before EHLO: 503)" \
    grep -q '^503 5.5.1 Error: send HELO/EHLO first' "$T/badpw.out"
check "AUTH offered inside TLS" grep -q '^250-AUTH PLAIN LOGIN$' "$T/badpw.out"
check "wrong password: 535 5.7.8" grep -q '^535 5.7.8' "$T/badpw.out"
check "second wrong password: 421 and disconnect" \
    sh -c "grep -q '^421 4.7.0 .*too many failed authentication' '$T/badpw.out' && grep -q '^#EOF' '$T/badpw.out'"
check "exactly one 535 before the 421" [ "$(grep -c '^535' "$T/badpw.out")" -eq 1 ]

# 7. A sender the login does not own.
swaks_to notmine 127.0.0.2 carol@example.com user@other.example \
    --tls --auth PLAIN --auth-user alice --auth-password 'right horse battery'
check "sender not owned by the login: 553 5.7.1" \
    grep -q '^<.\* *553 5.7.1 <carol@example.com>: Sender address rejected: not owned by user alice' "$T/notmine.out"

# 8. mynetworks (127.0.0.1) may relay without AUTH.
swaks_to trusted 127.0.0.1 a@client.example user3@other.example
rc=$?
check "mynetworks client relays to other.example (swaks exit $rc)" [ "$rc" -eq 0 ]
check "in all five messages delivered" sink_wait sink 5
sleep 0.3
check "and no more than five" [ "$(sink_count sink)" -eq 5 ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in plain inbound tricks notls authplain authlogin badpw notmine trusted; do
        echo "--- $f"
        tail -n 25 "$T/$f.out"
    done
    echo "--- relaychaind log"
    cat "$T/rcd.log"
fi
rcd_stop rcd
finish
