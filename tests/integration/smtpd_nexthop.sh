#!/bin/sh
# smtpd_nexthop - the client hears the next hop's own answers
#
# relaychaind proxies MAIL and RCPT and answers the end of DATA only after
# the next hop did, so each reply a client gets must be the next hop's, as
# the next hop worded it, and a 4xx must stay a 4xx (nothing answered 250
# that the next hop did not take). One relaychaind per next hop:
#
#   pfx      a private Postfix whose check_recipient_access answers 451
#            and 550 for two recipients and 250 for a third, in one
#            transaction; it relays what it took to smtp-sink
#   tempdata smtp-sink answering the end of DATA with 451 (-r . -b)
#   permdata smtp-sink answering the end of DATA with 554 (-f . -B)
#   closing  smtp-sink closing with 421 at RCPT (-Q RCPT): the client
#            gets a 4xx and keeps its session
#   down     nothing listens: 451 4.4.1
#   lmtp     smtp-sink -L as an LMTP next hop
#   maildir  a Maildir: the message as a file in new/
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 15)
r_pfx=$1 r_temp=$2 r_perm=$3 r_close=$4 r_down=$5 r_lmtp=$6 r_maildir=$7
pf_port=$8 pf_sink=$9
shift 9
s_temp=$1 s_perm=$2 s_close=$3 s_lmtp=$4 down_port=$5

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$pf_sink" \
    "smtpd_recipient_restrictions = check_recipient_access inline:{ { temp@dest.example = 451 4.2.1 mailbox busy }, { gone@dest.example = 550 5.1.1 no such user here } }, permit_mynetworks, reject"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start pfsink "$pf_sink"
sink_start tempdata "$s_temp" -r . -b '451 4.3.2 sink is busy, try later'
sink_start permdata "$s_perm" -f . -B '554 5.7.9 sink refuses this message'
sink_start closing "$s_close" -Q RCPT
sink_start lmtpsink "$s_lmtp" -L
mkdir -p "$T/Maildir"

rcd_conf "$T/pfx.conf" "$r_pfx" "smtp:[127.0.0.1]:$pf_port" </dev/null
rcd_conf "$T/temp.conf" "$r_temp" "smtp:[127.0.0.1]:$s_temp" </dev/null
rcd_conf "$T/perm.conf" "$r_perm" "smtp:[127.0.0.1]:$s_perm" </dev/null
rcd_conf "$T/close.conf" "$r_close" "smtp:[127.0.0.1]:$s_close" </dev/null
rcd_conf "$T/down.conf" "$r_down" "smtp:[127.0.0.1]:$down_port" </dev/null
rcd_conf "$T/lmtp.conf" "$r_lmtp" "lmtp:[127.0.0.1]:$s_lmtp" </dev/null
rcd_conf "$T/maildir.conf" "$r_maildir" "maildir:$T/Maildir" </dev/null
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
for r in pfx temp perm close down lmtp maildir; do
    eval "port=\$r_$r"
    rcd_start "$r" "$T/$r.conf" "$port" || finish
done

# send PORT NAME RCPT... - one message to PORT, replies in $T/NAME.out;
# with NODATA=1 the client quits after the recipients instead
send() {
    port=$1 name=$2
    shift 2
    {
        echo "expect"
        echo "send EHLO client.test.example"
        echo "expect"
        echo "send MAIL FROM:<sender@client.example>"
        echo "expect"
        for r in "$@"; do
            echo "send RCPT TO:<$r>"
            echo "expect"
        done
        if [ "${NODATA:-0}" -eq 0 ]; then
            echo "send DATA"
            echo "expect"
            printf '%s\n' "raw Subject: $name\\r\\n\\r\\nnext hop test $name\\r\\n.\\r\\n"
            echo "expect"
            echo "send NOOP"
            echo "expect"
        fi
        echo "send QUIT"
        echo "expect"
    } | chat "$port" >"$T/$name.out"
}

codes() {
    grep -E '^[0-9]{3}( |$)' "$1" | cut -c1-3 | tr '\n' ' ' | sed 's/ $//'
}

# --- per recipient, from a real Postfix
send "$r_pfx" mixed ok@dest.example temp@dest.example gone@dest.example
got=$(codes "$T/mixed.out")
check "Postfix next hop: 250, 451, 550 per recipient, then the message (got '$got')" \
    [ "$got" = "220 250 250 250 451 550 354 250 250 221" ]
check "the 451 is Postfix's own reply, as it is" \
    grep -qx '451 4.2.1 <temp@dest.example>: Recipient address rejected: mailbox busy' "$T/mixed.out"
check "the 550 is Postfix's own reply, as it is" \
    grep -qx '550 5.1.1 <gone@dest.example>: Recipient address rejected: no such user here' "$T/mixed.out"
check "Postfix logged the same refusals" \
    sh -c "grep -q ': reject: RCPT from .*451 4.2.1 <temp@dest.example>' '$T/pf/postfix.log' && grep -q ': reject: RCPT from .*550 5.1.1 <gone@dest.example>' '$T/pf/postfix.log'"
qid=$(sed -n 's/^250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/mixed.out")
check "the end-of-data reply carries Postfix's queue id ($qid)" \
    sh -c "[ -n '$qid' ] && grep -q ' $qid: client=' '$T/pf/postfix.log'"
check "Postfix delivered it to the sink" sink_wait pfsink 1 15
msg=$(sink_files pfsink | head -n 1)
check "only the accepted recipient got it" \
    sh -c "[ \"\$(grep '^X-Rcpt-Args:' '$msg' | cut -d' ' -f2)\" = '<ok@dest.example>' ]"
check "relaychaind logged the next hop's refusals" \
    sh -c "grep -q 'next hop refused RCPT TO:<temp@dest.example>: 451 4.2.1' '$T/pfx.log' && grep -q 'next hop refused RCPT TO:<gone@dest.example>: 550 5.1.1' '$T/pfx.log'"

# --- end of DATA: 451 and 554 from smtp-sink
send "$r_temp" tempdata r@dest.example
check "next hop 451 at end of DATA: the client gets it as it is (4xx stays 4xx)" \
    sh -c "[ '$(codes "$T/tempdata.out")' = '220 250 250 250 354 451 250 221' ] && grep -qx '451 4.3.2 sink is busy, try later' '$T/tempdata.out'"
check "logged as deferred" grep -q 'to=<r@dest.example>, relay=127.0.0.1\[127.0.0.1\]:[0-9]*, .*status=deferred (451 4.3.2 sink is busy, try later)' "$T/temp.log"
send "$r_perm" permdata r@dest.example
check "next hop 554 at end of DATA: the client gets it as it is" \
    sh -c "[ '$(codes "$T/permdata.out")' = '220 250 250 250 354 554 250 221' ] && grep -qx '554 5.7.9 sink refuses this message' '$T/permdata.out'"
check "logged as bounced" grep -q 'status=bounced (554 5.7.9 sink refuses this message)' "$T/perm.log"

# --- next hop closes with 421 at RCPT
NODATA=1 send "$r_close" closing r@dest.example
got=$(codes "$T/closing.out")
check "next hop 421 at RCPT: the client gets 451, keeps its session (got '$got')" \
    sh -c "[ '$got' = '220 250 250 451 221' ] && grep -q '^451 4' '$T/closing.out'"

# --- next hop down
NODATA=1 send "$r_down" down
check "next hop down: 451 4.4.1 at MAIL" grep -q '^451 4.4.1 ' "$T/down.out"
check "next hop down: the session goes on" [ "$(codes "$T/down.out")" = "220 250 451 221" ]
check "next hop down: logged" grep -q 'to next hop: .*4.4.1' "$T/down.log"

# --- LMTP
send "$r_lmtp" lmtp l1@dest.example l2@dest.example
check "LMTP next hop: accepted" \
    [ "$(codes "$T/lmtp.out")" = "220 250 250 250 250 354 250 250 221" ]
check "LMTP next hop: delivered" sink_wait lmtpsink 1
check "LMTP next hop: spoken as LMTP" \
    grep -q '^X-Client-Proto: LMTP' $(sink_files lmtpsink | head -n 1)

# --- Maildir
send "$r_maildir" maildir m@dest.example
check "Maildir next hop: 250" grep -q '^250 2.0.0 .*maildir' "$T/maildir.out"
set -- "$T"/Maildir/new/*
check "Maildir next hop: one file in new/" [ $# -eq 1 ] && [ -f "$1" ]
check "Maildir next hop: the message is in it" \
    sh -c "grep -q '^Subject: maildir' '$1' && grep -q '^next hop test maildir' '$1'"
check "Maildir next hop: tmp/ left empty" [ -z "$(ls -A "$T/Maildir/tmp")" ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in mixed tempdata permdata closing down lmtp maildir; do
        echo "--- $f"
        grep -v '^#\|^250-' "$T/$f.out"
    done
    for f in pfx temp perm close down lmtp maildir; do
        echo "--- $f log"
        tail -n 15 "$T/$f.log"
    done
    echo "--- Postfix log"
    cat "$T/pf/postfix.log"
fi
for r in pfx temp perm close down lmtp maildir; do
    rcd_stop "$r"
done
finish
