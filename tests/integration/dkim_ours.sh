#!/bin/sh
# dkim_ours - the dkim stage signs only mail that is ours to sign
#
# An outside client that writes to one of our relay domains with our own
# domain in From: must not get the message signed with our key; our own
# clients must. relaychain.conf says mynetworks = 127.0.0.1/32, so a
# client bound to 127.0.0.9 is an outsider and one on 127.0.0.1 is ours.
# The chain is one dkim stage with the default sign_mail = internal and
# mta_names = ORIGINATING. Every message is From: ceo@example.com to
# bob@example.net, sent with swaks, and ends at smtp-sink:
#
#   direct    swaks -> relaychaind's SMTP listener (relay_domains =
#             example.net lets the outsider in, as in the issue); the
#             outsider after STARTTLS and AUTH is one of our users
#   milter    swaks -> Postfix (smtpd_milters = relaychaind) -> sink
#   orig      the same with milter_macro_daemon_name = ORIGINATING, the
#             OpenDKIM "MTA" way of marking a submission service
#   filter    swaks -> Postfix -> content_filter with XFORWARD ->
#             relaychaind -> sink: the XFORWARD client decides, not
#             Postfix on 127.0.0.1
#   submit    the same through a content filter transport without
#             XFORWARD, as relaychain.conf(5) advises for a submission
#             service: the client is Postfix itself, which is ours
#
# What must be signed is verified with dkimpy (key from the zone file
# "relaychain dkim keygen" wrote, no DNS); what must not be signed must
# arrive without a DKIM-Signature and with a log line that says why.
. "$top_srcdir/tests/integration/milter_lib.sh"

here=$top_srcdir/tests/integration
if ! $PY -c 'import dkim' 2>/dev/null; then
    fail "python3-dkim is needed (scripts/setup installs it)"
    finish
fi

set -- $(free_ports 6)
rcd_port=$1 m_port=$2 o_port=$3 cf_port=$4 sub_port=$5 sink_port=$6
sock=$T/rc/milter.sock
mkdir -p "$T/rc" "$T/chain.d/keys"
chmod 755 "$T/rc"

"$RC" dkim keygen -a rsa -d example.com -s ours2026 -D "$T/chain.d/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen: $(cat "$T/keygen.err")"
ZONE=$T/chain.d/keys/ours2026.txt
cat >"$T/chain.d/90-dkim.conf" <<'EOF'
stage = dkim
domain = example.com
selector = ours2026
key_file = keys/ours2026.private
mta_names = ORIGINATING
EOF

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
printf '%s\n' 'right horse battery' |
    "$RC" passwd "$T/passwd" ceo >"$T/passwd.out" 2>&1 ||
    fail "relaychain passwd: $(cat "$T/passwd.out")"
mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/passwd
smtp_listen = 127.0.0.1:$rcd_port
next_hop = smtp:[127.0.0.1]:$sink_port
next_hop_tls = none
myhostname = relay.test.example
mynetworks = 127.0.0.1/32
relay_domains = example.net
xforward_hosts = 127.0.0.1/32
milter_socket_group = postfix
milter_socket_mode = 0660
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" "milter_protocol = 6" \
    "milter_default_action = tempfail"
pfx_master pf <<EOF
127.0.0.1:$m_port inet n - n - - smtpd
    -o smtpd_milters=unix:$sock
127.0.0.1:$o_port inet n - n - - smtpd
    -o smtpd_milters=unix:$sock
    -o milter_macro_daemon_name=ORIGINATING
127.0.0.1:$cf_port inet n - n - - smtpd
    -o content_filter=relaychain:[127.0.0.1]:$rcd_port
127.0.0.1:$sub_port inet n - n - - smtpd
    -o content_filter=relaychain-orig:[127.0.0.1]:$rcd_port
relaychain unix - - n - 16 smtp
    -o smtp_send_xforward_command=yes
    -o disable_mime_output_conversion=yes
relaychain-orig unix - - n - 16 smtp
    -o smtp_send_xforward_command=no
    -o disable_mime_output_conversion=yes
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
for p in $m_port $o_port $cf_port $sub_port; do
    wait_listen "$p" || fail "Postfix does not listen on $p"
done

# send NAME PORT FROM_ADDR [SWAKS_OPTIONS...] - one message, Subject:
# NAME, from the local address FROM_ADDR; its file at the sink becomes
# $T/out/NAME.
mkdir -p "$T/out"
send() {
    local name port from
    name=$1 port=$2 from=$3
    shift 3
    timeout 60 swaks --server "127.0.0.1:$port" --local-interface "$from" "$@" \
        --helo client.test.example --timeout 20 \
        --from ceo@example.com --to bob@example.net \
        --header 'From: The CEO <ceo@example.com>' \
        --header "Subject: $name" --body "body of $name" \
        >"$T/swaks-$name.out" 2>&1
    rc=$?
    check "$name: swaks exits 0 (got $rc)" [ "$rc" -eq 0 ]
    if ! sink_wait sink 1 30; then
        fail "$name: nothing reached the sink"
        return
    fi
    mv "$(sink_files sink | head -n 1)" "$T/out/$name"
    check "$name: the sink has the message" grep -q "^Subject: $name\$" "$T/out/$name"
}

# signed NAME - exactly one DKIM-Signature, by our key, and it verifies
signed() {
    check "$1: signed once" [ "$(grep -c '^DKIM-Signature:' "$T/out/$1")" -eq 1 ]
    check "$1: the signature verifies with dkimpy" \
        sh -c "'$PY' '$here/dkim_verify.py' '$ZONE' -- '$T/out/$1' >'$T/verify-$1' 2>&1"
}

# unsigned NAME CLIENT - no DKIM-Signature, and the log says why
unsigned() {
    check "$1: not signed" sh -c "! grep -q '^DKIM-Signature:' '$T/out/$1'"
    check "$1: the log says why" \
        grep -q "dkim: continue, not signed (client $2 is not internal: not in mynetworks, not authenticated" "$T/rcd.log"
}

send direct-outside "$rcd_port" 127.0.0.9
unsigned direct-outside 127.0.0.9
send direct-inside "$rcd_port" 127.0.0.1
signed direct-inside
send direct-auth "$rcd_port" 127.0.0.9 --tls --auth PLAIN --auth-user ceo \
    --auth-password 'right horse battery'
check "direct-auth: authenticated" grep -q '^<~  235 ' "$T/swaks-direct-auth.out"
signed direct-auth

send milter-outside "$m_port" 127.0.0.9
unsigned milter-outside 127.0.0.9
check "milter-outside: the log names the daemon" \
    grep -q "dkim: continue, not signed (client 127.0.0.9 .*, daemon .* not in mta_names)" "$T/rcd.log"
send milter-inside "$m_port" 127.0.0.1
signed milter-inside
send milter-orig "$o_port" 127.0.0.9
signed milter-orig

send filter-outside "$cf_port" 127.0.0.9
check "filter-outside: relaychaind saw the client through XFORWARD" \
    grep -q "orig_client=.*\[127.0.0.9\]" "$T/rcd.log"
unsigned filter-outside 127.0.0.9
send filter-inside "$cf_port" 127.0.0.1
signed filter-inside
send submit-outside "$sub_port" 127.0.0.9
signed submit-outside

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- relaychaind log"; tail -n 60 "$T/rcd.log"
    echo "--- Postfix log"; tail -n 40 "$T/pf/postfix.log"
    cat "$T"/verify-* 2>/dev/null
fi
pfx_stop pf
mtd_stop rcd
finish
