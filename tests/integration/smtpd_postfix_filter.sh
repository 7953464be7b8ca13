#!/bin/sh
# smtpd_postfix_filter - relaychaind as Postfix's after-queue content filter
#
# A private Postfix instance is set up from docs/postfix-content-filter.md
# itself: its relaychain.conf, main.cf and master.cf blocks are cut out of
# the document, and only the ports (10024, 10025) are changed to free
# ones, the user line dropped and the chain directory pointed at a
# rewrite stage made here. Postfix relays everything else to smtp-sink.
#
# swaks submits one message to Postfix from 127.0.0.2. It must go
#   Postfix (queue id Q1) -> relaychaind -> reinjection smtpd (Q2) -> sink
# with the sender and From: rewritten by the chain, relaychaind naming
# the original client 127.0.0.2 (which reached it through XFORWARD: its
# own peer is Postfix on 127.0.0.1), Postfix logging Q1 as sent to
# relaychaind with relaychaind's reply "queued as Q2", and Q2 received by
# the reinjection smtpd and delivered to the sink. relaychaind's
# "disconnect from" line counts Postfix's XFORWARD commands as Postfix
# itself would ("xforward=N", "xforward=1/2" when one was refused).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

doc=$top_srcdir/docs/postfix-content-filter.md
set -- $(free_ports 4)
pf_port=$1 rcd_port=$2 reinj_port=$3 sink_port=$4

# doc_block HEADING - the indented block under "## HEADING", unindented
doc_block() {
    awk -v h="## $1" '
        $0 == h { on = 1; next }
        on && /^## / { exit }
        on && /^    / { print substr($0, 5); seen = 1; next }
        on && /^$/ { if (seen) print; next }
        on && seen { exit }
    ' "$doc"
}

doc_block /etc/relaychain/relaychain.conf >"$T/doc-relaychain.conf"
doc_block /etc/postfix/main.cf >"$T/doc-main.cf"
doc_block /etc/postfix/master.cf >"$T/doc-master.cf"
check "doc has the relaychain.conf block" grep -q '^next_hop = smtp:\[127.0.0.1\]:10025$' "$T/doc-relaychain.conf"
check "doc has the main.cf block" grep -q '^content_filter = relaychain:\[127.0.0.1\]:10024$' "$T/doc-main.cf"
check "doc has the master.cf block" grep -q '^127.0.0.1:10025 inet' "$T/doc-master.cf"

# The chain: masquerade the sender and the From: field.
mkdir -p "$T/filter.d/rules"
cat >"$T/filter.d/10-rewrite.conf" <<'EOF'
stage = rewrite
sender_rules = rules/sender.pcre
header_rules = rules/sender.pcre
EOF
cat >"$T/filter.d/rules/sender.pcre" <<'EOF'
/^([^@]+)@[a-z0-9-]+\.corp\.example$/    ${1}@example.com
EOF

sed -e "s/10024/$rcd_port/g" -e "s/10025/$reinj_port/g" \
    -e '/^user = /d' -e "s|^chain_directory = .*|chain_directory = $T/filter.d|" \
    "$T/doc-relaychain.conf" >"$T/relaychain.conf"
echo "quarantine_directory = $T/quarantine" >>"$T/relaychain.conf"
echo "next_hop_tls = none" >>"$T/relaychain.conf"

pfx_init pf
sed -e "s/10024/$rcd_port/g" "$T/doc-main.cf" >>"$T/pf/etc/main.cf"
pfx_set pf "relayhost = [127.0.0.1]:$sink_port"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
$(sed -e "s/10025/$reinj_port/g" "$T/doc-master.cf")
EOF

sink_start sink "$sink_port"
rcd_start rcd "$T/relaychain.conf" "$rcd_port" || finish
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
wait_listen "$reinj_port" || fail "the reinjection smtpd does not listen on $reinj_port"

timeout 30 swaks --server "127.0.0.1:$pf_port" --local-interface 127.0.0.2 \
    --helo client.test.example --timeout 10 \
    --from alice@build1.corp.example --to bob@example.net \
    --header 'From: Alice <alice@build1.corp.example>' \
    --header 'Subject: through the filter' \
    --body 'filtered body line' >"$T/swaks.out" 2>&1
rc=$?
check "swaks to Postfix exits 0 (got $rc)" [ "$rc" -eq 0 ]
q1=$(sed -n 's/^<-  250 .*queued as \([0-9A-F]*\).*/\1/p' "$T/swaks.out")
check "Postfix gave a queue id ($q1)" [ -n "$q1" ]

check "one message reaches the sink" sink_wait sink 1 20
msg=$(sink_files sink | head -n 1)
check "sink: envelope sender rewritten by the chain" \
    grep -q '^X-Mail-Args: <alice@example.com>' "$msg"
check "sink: recipient unchanged" grep -q '^X-Rcpt-Args: <bob@example.net>' "$msg"
check "sink: From: rewritten by the chain" \
    grep -q '^From: Alice <alice@example.com>$' "$msg"
check "sink: body intact" grep -q '^filtered body line$' "$msg"
check "sink: the original address is gone" sh -c "! grep -q corp.example '$msg'"
check "sink: sent by the reinjection Postfix" grep -q '^X-Client-Addr: 127.0.0.1$' "$msg"

pflog=$T/pf/postfix.log
wait_grep "relay=127.0.0.1\[127.0.0.1\]:$sink_port.*status=sent" "$pflog" 10
q2=$(sed -n "s/.* $q1: to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:$rcd_port,.*status=sent (250 .*queued as \([0-9A-F]*\)).*/\1/p" "$pflog")
check "Postfix: $q1 sent to relaychaind, which answered with the reinjection queue id ($q2)" [ -n "$q2" ]
check "Postfix: $q2 received by the reinjection smtpd" \
    grep -q "postfix/smtpd\[[0-9]*\]: $q2: client=" "$pflog"
check "Postfix: $q2 delivered to the sink" \
    grep -q " $q2: to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:$sink_port,.*status=sent" "$pflog"
check "Postfix: the reinjection smtpd saw the original client through relaychaind's XFORWARD" \
    grep -q "$q2: client=.*127.0.0.2" "$pflog"

rlog=$T/rcd.log
check "relaychaind: orig_client= names the original client from XFORWARD" \
    grep -q ": client=unknown\[127.0.0.1\], orig_queue_id=$q1, orig_client=unknown\[127.0.0.2\]$" "$rlog"
# Postfix's queue id (XFORWARD IDENT) ties relaychaind's lines to its own,
# as in Postfix's "orig_queue_id=" and amavisd-new's summary line.
rq=$(sed -n "s/.*\]: \([0-9A-F]*\): client=unknown\[127.0.0.1\], orig_queue_id=$q1,.*/\1/p" "$rlog" | head -n 1)
check "relaychaind: its own queue id ($rq) logged with orig_queue_id=$q1" [ -n "$rq" ]
check "relaychaind: one summary line: Passed CLEAN {Relayed}, orig_queue_id=$q1 ... queued_as: $q2" \
    grep -Eq ": $rq: Passed CLEAN \{Relayed\}, orig_queue_id=$q1, client=unknown\[127.0.0.2\], from=<alice@build1.corp.example>, to=<bob@example.net>, size=[0-9]+, queued_as: $q2, [0-9]+ ms$" "$rlog"
# The sink's copy: Postfix's Received, then relaychaind's (naming its
# own peer, Postfix, and its own id), then the reinjection smtpd's.
check "Postfix: the reinjection smtpd logs relaychaind's id ($rq) as orig_queue_id (XFORWARD IDENT)" \
    grep -q "$q2: client=.*, orig_queue_id=$rq, " "$pflog"
check "sink: relaychaind's Received names its peer and its id $rq" \
    sh -c "grep -A1 '^Received: from [^ ]* (unknown \[127.0.0.1\])' '$msg' | grep -Eq '^[[:space:]]+by [^ ]+ \(relaychain\) with ESMTP id $rq\$'"
ids=$("$PY" - "$msg" <<'EOF'
import email, re, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
print(" ".join(re.search(r"\bid (\w+)", r).group(1) for r in m.get_all("Received")))
EOF
)
# (smtp-sink adds one of its own on top)
check "sink: Received ids, newest first, end with $q2 $rq $q1 (got $ids)" \
    sh -c "echo '$ids' | grep -Eq '(^| )$q2 $rq $q1\$'"
check "relaychaind: from= is the original sender" \
    grep -q ": from=<alice@build1.corp.example>, size=" "$rlog"
check "relaychaind: sent to the reinjection smtpd, queued as $q2" \
    grep -q ": to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:$reinj_port, .*status=sent (250 .*queued as $q2)" "$rlog"

# counts_ok LINE - the disconnect line's counts add up to its commands=
counts_ok() {
    echo "$1" | awk '{
        for (i = 1; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "commands") want = kv[2]
            else if ($i ~ /=/) { split(kv[2], n, "/"); sum += (n[2] != "" ? n[2] : n[1]) }
        }
        exit !(want != "" && sum == want)
    }'
}
wait_grep 'disconnect from unknown\[127.0.0.1\] .* xforward=' "$rlog" 10
dline=$(grep 'disconnect from unknown\[127.0.0.1\] .* xforward=' "$rlog" | head -n 1)
check "relaychaind: the disconnect line of Postfix's session counts its XFORWARD commands ($dline)" \
    sh -c "echo '$dline' | grep -Eq ' ehlo=1 xforward=[1-9][0-9]* mail=1 rcpt=1 data=1 quit=1 commands=[0-9]+\$'"
check "relaychaind: and its counts add up to commands=" counts_ok "$dline"
chat "$rcd_port" >"$T/xforward.out" <<'EOF'
expect
send EHLO xforward.test.example
expect
send XFORWARD NAME=spike.example ADDR=192.0.2.7
expect
send XFORWARD NAME
expect
send QUIT
expect
EOF
check "a refused XFORWARD: 501 after a 250" \
    sh -c "grep -q '^250 2.0.0 Ok' '$T/xforward.out' && grep -q '^501 5.5.4' '$T/xforward.out'"
wait_grep 'disconnect from unknown\[127.0.0.1\] ehlo=1 xforward=1/2 ' "$rlog" 5
check "relaychaind: one XFORWARD of two accepted is logged as Postfix logs it, xforward=1/2" \
    grep -q 'disconnect from unknown\[127.0.0.1\] ehlo=1 xforward=1/2 quit=1 commands=4$' "$rlog"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- relaychaind log"; cat "$rlog"
    echo "--- Postfix log"; cat "$pflog"
    echo "--- swaks"; tail -n 20 "$T/swaks.out"
fi
rcd_stop rcd
finish
