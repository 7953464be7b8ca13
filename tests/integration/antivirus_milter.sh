#!/bin/sh
# antivirus_milter - the antivirus stage behind a real Postfix (milter)
#
# A private Postfix lists relaychaind in smtpd_milters and relays to
# smtp-sink. The chain: an antivirus stage (libclamav, test signatures,
# add_header = yes) for mail from hold@example.com with on_infected =
# quarantine, and one for all other mail with the default reject.
#   1. EICAR in a zip: Postfix answers the client 554 5.7.1 virus=NAME at
#      the end of DATA and logs the milter reject; nothing at the sink;
#   2. a clean message: delivered with X-Virus-Scanned and
#      X-Virus-Status: Clean (added through the milter);
#   3. EICAR from hold@example.com: Postfix accepts it and puts it on
#      hold (smfi_quarantine), with the verdict in its log; nothing at
#      the sink (Postfix logs "milter triggers HOLD action", relaychaind
#      the reason under the same queue id);
#   4. a password-protected zip, which no retry can ever scan: the
#      client hears 554 5.7.0 with the reason from Postfix, not a 4xx.
. "$top_srcdir/tests/integration/milter_lib.sh"
. "$top_srcdir/tests/integration/av_lib.sh"

set -- $(free_ports 2)
pf_port=$1 sink_port=$2
sock=$T/rc/milter.sock
mkdir -p "$T/rc"
chmod 755 "$T/rc"

av_chain "$T/chain.d" "add_header = yes" "on_infected = quarantine" \
    "match_sender = hold@example.com"
mv "$T/chain.d/05-antivirus.conf" "$T/chain.d/05-hold.conf"
# The reject stage comes second: a message the first one quarantined
# never reaches it.
av_chain "$T/chain.d" "add_header = yes"
mv "$T/chain.d/05-antivirus.conf" "$T/chain.d/06-antivirus.conf"

mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
milter_socket_group = postfix
milter_socket_mode = 0660
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" \
    "smtpd_milters = unix:$sock" \
    "milter_protocol = 6" \
    "milter_default_action = tempfail"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
pflog=$T/pf/postfix.log

send() {
    timeout 60 swaks --server "127.0.0.1:$pf_port" --helo client.test.example \
        --timeout 30 --from "$2" --to bob@example.org --data "$3" \
        >"$T/$1.out" 2>&1
}
(cd "$AVF" && zip -q -9 "$T/eicar.zip" eicar.com)
mail_attach "infected" "$T/eicar.zip" "docs.zip" application/zip >"$T/infected.eml"
mail_text "clean" "Nothing to see." >"$T/clean.eml"

# 1. infected
send infected alice@example.com "$T/infected.eml"
check "1: the client hears 554 5.7.1 virus= from Postfix" \
    grep -q '^<\*\* *554 5\.7\.1 virus=RelayChain.Test.EICAR.UNOFFICIAL' "$T/infected.out"
check "1: Postfix logs the milter reject" \
    grep -q 'milter-reject: END-OF-MESSAGE from .*: 5.7.1 virus=RelayChain.Test.EICAR.UNOFFICIAL' "$pflog"

# 2. clean
send clean alice@example.com "$T/clean.eml"
check "2: Postfix accepts the clean message" grep -q '^<-  250 .*queued as' "$T/clean.out"
check "2: it reaches the sink" sink_wait sink 1 20
msg=$(sink_files sink | head -n 1)
check "2: sink: X-Virus-Status: Clean" grep -q '^X-Virus-Status: Clean' "$msg"
check "2: sink: X-Virus-Scanned" grep -q '^X-Virus-Scanned: relaychain antivirus (libclamav ' "$msg"
check "2: relaychaind logged result=clean" grep -q 'antivirus: continue, result=clean, engine=libclamav' "$T/rcd.log"

# 3. quarantine: Postfix's hold queue
send held hold@example.com "$T/infected.eml"
check "3: Postfix accepts the message to hold" grep -q '^<-  250 .*queued as' "$T/held.out"
q3=$(sed -n 's/^<-  250 .*queued as \([0-9A-F]*\).*/\1/p' "$T/held.out")
check "3: Postfix logs the hold" \
    wait_grep "$q3: milter-hold: END-OF-MESSAGE from .*: milter triggers HOLD action" "$pflog" 10
check "3: relaychaind logs the reason under Postfix's queue id" \
    grep -q "$q3: milter-hold: END-OF-MESSAGE: relaychain hold: virus=RelayChain.Test.EICAR.UNOFFICIAL" "$T/rcd.log"
check "3: the message is in Postfix's hold queue" \
    sh -c "[ -n '$q3' ] && [ -n \"\$(find '$T/pf/queue/hold' -type f -name '$q3*')\" ]"
# 4. unscannable
(cd "$AVF" && zip -q -P secret "$T/enc.zip" clean.txt)
mail_attach "encrypted" "$T/enc.zip" "enc.zip" application/zip >"$T/enc.eml"
send encrypted alice@example.com "$T/enc.eml"
check "4: the client hears 554 5.7.0 with the reason from Postfix" \
    grep -q '^<\*\* *554 5\.7\.0 message could not be scanned (encrypted content: Heuristics.Encrypted.Zip)' "$T/encrypted.out"

sleep 1
check "nothing of 1, 3 and 4 reached the sink" [ "$(sink_count sink)" -eq 1 ]

if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"; cat "$T/rcd.log"
    echo "--- Postfix log"; cat "$pflog"
fi
mtd_stop rcd
finish
