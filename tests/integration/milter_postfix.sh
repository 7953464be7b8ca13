#!/bin/sh
# milter_postfix - relaychaind as a milter of a real Postfix
#
# A private Postfix instance lists relaychaind in smtpd_milters (a UNIX
# socket owned by group postfix, mode 0660) with milter_protocol = 6 and
# milter_default_action = tempfail, and relays to smtp-sink; the
# relaychain.conf and main.cf lines are cut out of docs/postfix-milter.md
# with only the socket path and chain directory changed. The chain: a rewrite stage (sender, one
# recipient, From:/To:) and a testedit stage that adds X-Frontend:.
#
#   1. a message whose sender, one recipient and From:/To: are rewritten:
#      the file smtp-sink wrote has the new envelope and header, the other
#      recipient and the body unchanged; Postfix's own log has the new
#      sender and recipient; relaychaind logged under Postfix's queue id;
#      the stage saw it runs in milter mode;
#   1b. the same relaychaind's SMTP listener, running beside the milter,
#      relays a message to the sink through the same chain, and the stage
#      sees the SMTP front end there;
#   2. an ambiguous MIME message: Postfix's SMTP client hears 554 5.6.0;
#   3. a sender whose rule gives an invalid address: the stage fails,
#      on_error = tempfail, the client hears 451;
#   4. a 100 KB message a testedit stage replaces with a 150 KB body
#      (more than 64 KB through smfi_replacebody) arrives whole;
#   5. relaychaind stopped: Postfix answers 451 4.7.1 (the default action)
#      and nothing reaches the sink.
. "$top_srcdir/tests/integration/milter_lib.sh"

set -- $(free_ports 3)
pf_port=$1 sink_port=$2 rc_smtp=$3
sock=$T/rc/milter.sock
mkdir -p "$T/rc" "$T/chain.d/rules"
chmod 755 "$T/rc"

cat >"$T/chain.d/10-rewrite.conf" <<'EOF'
stage = rewrite
sender_rules = rules/sender.pcre
recipient_rules = rules/rcpt.pcre
header_rules = rules/header.pcre
EOF
cat >"$T/chain.d/rules/sender.pcre" <<'EOF'
/^broken@example\.com$/          not an address
/^([^@]+)@host1\.corp\.example$/ ${1}@example.com
EOF
cat >"$T/chain.d/rules/rcpt.pcre" <<'EOF'
/^old@example\.net$/             new@example.net
EOF
cat >"$T/chain.d/rules/header.pcre" <<'EOF'
/^([^@]+)@host1\.corp\.example$/ ${1}@example.com
/^old@example\.net$/             new@example.net
EOF
cat >"$T/chain.d/20-mark.conf" <<'EOF'
stage = testedit
frontend_header = yes
match_sender = example.com
EOF
cat >"$T/chain.d/30-big.conf" <<'EOF'
stage = testedit
body_size = 150000
match_sender = big@example.org
EOF

# relaychain.conf and main.cf come from docs/postfix-milter.md itself.
doc=$top_srcdir/docs/postfix-milter.md
doc_block "$doc" /etc/relaychain/relaychain.conf >"$T/doc-relaychain.conf"
doc_block "$doc" /etc/postfix/main.cf >"$T/doc-main.cf"
check "doc has the relaychain.conf block" grep -q '^milter_listen = unix:/var/spool/postfix/relaychain/milter.sock$' "$T/doc-relaychain.conf"
check "doc has the main.cf block" grep -q '^milter_default_action = tempfail$' "$T/doc-main.cf"
sed -e "s|^milter_listen = .*|milter_listen = unix:$sock|" -e '/^user = /d' \
    -e "s|^chain_directory = .*|chain_directory = $T/chain.d|" \
    "$T/doc-relaychain.conf" >"$T/rc.conf"
echo "quarantine_directory = $T/quarantine" >>"$T/rc.conf"
echo "syslog_name = relaychaind" >>"$T/rc.conf"
# The SMTP listener runs beside the milter in the same daemon.
cat >>"$T/rc.conf" <<EOF
smtp_listen = 127.0.0.1:$rc_smtp
next_hop = smtp:[127.0.0.1]:$sink_port
next_hop_tls = none
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish
check "the socket is group postfix, mode 0660" \
    sh -c "[ \"\$(stat -c '%G %a' '$sock')\" = 'postfix 660' ]"

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port"
sed -e "s|unix:relaychain/milter.sock|unix:$sock|" "$T/doc-main.cf" >>"$T/pf/etc/main.cf"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

# swaks_to NAME ARGS... - one message to Postfix, transcript in $T/NAME.out
swaks_to() {
    local name
    name=$1
    shift
    timeout 60 swaks --server "127.0.0.1:$pf_port" --helo client.test.example \
        --timeout 30 "$@" >"$T/$name.out" 2>&1
}

# 1. the rewrite
swaks_to good --from alice@host1.corp.example \
    --to old@example.net,keep@example.org \
    --header 'From: Alice <alice@host1.corp.example>' \
    --header 'To: old@example.net, keep@example.org' \
    --header 'Subject: through the milter' --body 'milter body line'
check "1: Postfix accepts the message" grep -q '^<-  250 .*queued as' "$T/good.out"
q1=$(sed -n 's/^<-  250 .*queued as \([0-9A-F]*\).*/\1/p' "$T/good.out")
check "1: the message reaches the sink" sink_wait sink 1 20
msg=$(sink_files sink | head -n 1)
check "1: sink: envelope sender rewritten" grep -q '^X-Mail-Args: <alice@example.com>' "$msg"
check "1: sink: recipient rewritten" grep -q '^X-Rcpt-Args: <new@example.net>' "$msg"
check "1: sink: the other recipient kept" grep -q '^X-Rcpt-Args: <keep@example.org>' "$msg"
check "1: sink: the old recipient is gone" sh -c "! grep -q 'old@example.net' '$msg'"
check "1: sink: From: rewritten" grep -q '^From: Alice <alice@example.com>' "$msg"
check "1: sink: To: rewritten" grep -q '^To: new@example.net, keep@example.org' "$msg"
check "1: sink: the stage saw the milter front end" grep -q '^X-Frontend: milter' "$msg"
check "1: sink: Postfix's Received: stays on top" \
    sh -c "sed -n '/^Received:/{=;q}' '$msg' | grep -q . && ! sed -n '1,/^Received:/p' '$msg' | grep -q '^X-Frontend'"
check "1: sink: body intact" grep -q '^milter body line' "$msg"
pflog=$T/pf/postfix.log
wait_grep "$q1: to=<keep@example.org>.*status=sent" "$pflog" 10
check "1: Postfix's log: the new sender" grep -q "$q1: from=<alice@example.com>" "$pflog"
check "1: Postfix's log: delivered to the new recipient" \
    grep -q "$q1: to=<new@example.net>, .*status=sent" "$pflog"
check "1: relaychaind logs under Postfix's queue id" \
    grep -q "$q1: milter: from=<alice@host1.corp.example>" "$T/rcd.log"
check "1: relaychaind: the rewrite stage ran" grep -q "$q1: rewrite: continue" "$T/rcd.log"

# 1b. the same daemon's SMTP listener, at the same time
timeout 60 swaks --server "127.0.0.1:$rc_smtp" --helo client.test.example \
    --timeout 30 --from carol@host1.corp.example --to dave@example.org \
    --header 'Subject: straight to relaychaind' --body 'smtp body line' \
    >"$T/smtp.out" 2>&1
check "1b: relaychaind's SMTP listener accepts beside the milter" grep -q '^<-  250 ' "$T/smtp.out"
check "1b: it reaches the sink" sink_wait sink 2 20
smtpmsg=$(grep -l '^smtp body line' "$T"/sink/msg.* 2>/dev/null | head -n 1)
check "1b: sink: rewritten by the chain, and the stage saw the SMTP front end" \
    sh -c "grep -q '^X-Mail-Args: <carol@example.com>' '$smtpmsg' && grep -q '^X-Frontend: smtp' '$smtpmsg'"

# 2. reject
printf -- '--x\nContent-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: text/plain\n\nhidden\n--x--\n--x--\n' >"$T/ambiguous.txt"
swaks_to reject --from alice@example.com --to bob@example.org \
    --add-header 'MIME-Version: 1.0' \
    --add-header 'Content-Type: multipart/mixed; boundary="x"' \
    --body "$T/ambiguous.txt"
check "2: the client hears 554 5.6.0 from Postfix" grep -q '^<\*\* *554 5\.6\.0' "$T/reject.out"
check "2: Postfix logs the milter reject" grep -q "milter-reject: END-OF-MESSAGE from .*: 5.6.0 Message has an ambiguous MIME" "$pflog"

# 3. tempfail
swaks_to tempfail --from broken@example.com --to bob@example.org --body 'x'
check "3: the client hears 451 from Postfix" grep -q '^<\*\* *451 4\.' "$T/tempfail.out"
check "3: Postfix logs the milter tempfail" grep -q "milter-reject: END-OF-MESSAGE from .*: 4.3.0 Temporary failure in rewrite" "$pflog"

# 4. a body over 64 KB replaced
awk 'BEGIN { for (i = 0; i < 1400; i++) printf "line %05d of the hundred kilobyte test message, padded to seventy\n", i }' >"$T/big.txt"
swaks_to big --from big@example.org --to bob@example.org --body "$T/big.txt"
check "4: Postfix accepts the big message" grep -q '^<-  250 .*queued as' "$T/big.out"
check "4: it reaches the sink" sink_wait sink 3 20
big=$(grep -l '^00000000 relaychain' "$T"/sink/msg.* 2>/dev/null | head -n 1)
# 150000 octets of 72-octet numbered lines: 2083 whole lines, then a cut one
check "4: the replaced body arrived whole (2083 whole lines, in order)" \
    sh -c "[ \$(grep -c '^0[0-9]* relaychain milter body replacement test line' '$big') -eq 2083 ] && grep -q '^00000000 relaychain' '$big' && grep -q '^00002082 relaychain' '$big' && grep -q '^00002083 relaychain milt\$' '$big'"
check "4: no line of the old body left" sh -c "! grep -q 'hundred kilobyte' '$big'"

n=$(sink_count sink)
check "nothing of 2 and 3 reached the sink" [ "$n" -eq 3 ]

# 5. relaychaind stopped
mtd_stop rcd
swaks_to down --from alice@example.com --to bob@example.org --body 'x'
check "5: relaychaind down: the client hears 451 4.7.1" grep -q '^<\*\* *451 4\.7\.1' "$T/down.out"
sleep 1
check "5: nothing more reached the sink" [ "$(sink_count sink)" -eq "$n" ]
check "5: the SMTP listener stopped with the milter" \
    sh -c "[ -z \"\$(ss -Hltn 'sport = :$rc_smtp')\" ]"

if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"; cat "$T/rcd.log"
    echo "--- Postfix log"; cat "$pflog"
    for f in good reject tempfail big down; do
        echo "--- swaks $f"; tail -n 12 "$T/$f.out"
    done
fi
finish
