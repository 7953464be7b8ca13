#!/bin/sh
# quarantine_release - a released message gets the rest of the chain
#
# The example chain of chain.d/ as shipped (rewrite, antivirus with its
# EICAR signature, disclaimer) with on_infected = quarantine and the DKIM
# stage enabled as its comment says; relaychaind with delivery = queue,
# a quarantine_directory that does not exist yet, and the admin commands
# logging to a maillog_file. Over SMTP with swaks:
#   1. start-up made the quarantine directory and its missing parent,
#      mode 0700;
#   2. a message with EICAR attached: 250 with relaychaind's id, held in
#      the quarantine as the antivirus stage received it (Stage:
#      antivirus, no X-Virus-Status, its X-Relaychain-Stream kept as a
#      Stream: line), nothing at the sink, and the
#      summary line "Blocked INFECTED (NAME) {Quarantined}";
#   3. "relaychain quarantine release ID": the chain resumes after the
#      antivirus stage and the result goes through the queue: at the
#      sink it has the disclaimer, a DKIM signature that python3-dkim
#      verifies, relaychaind's Received, and no Infected status; the
#      release is in the mail log with the stages that ran, and the
#      quarantine file is gone;
#   4. "quarantine delete" and the queue's hold and release are logged
#      as postsuper logs them ("ID: removed from quarantine", "ID:
#      placed on hold", "ID: released from hold"); a message held with
#      DSN parameters keeps them and the next hop gets them on release;
#      a chain that lost the stage releases nothing and says why; with
#      a chain.d file that does not load, "relaychain check" and release
#      refuse, but queue list and quarantine list and show still work;
#   5. start-up fails, naming it, when the quarantine directory cannot
#      be made, or when everyone may write to it.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/av_lib.sh"

here=$top_srcdir/tests/integration
set -- $(free_ports 3)
port=$1 sink_port=$2 bad_port=$3

cp -r "$top_srcdir/chain.d" "$T/chain.d"
echo "on_infected = quarantine" >>"$T/chain.d/20-antivirus.conf"
mkdir -p "$T/chain.d/dkim"
"$RC" dkim keygen -d example.com -s mail2026 -D "$T/chain.d/dkim" \
    >/dev/null 2>&1 || fail "dkim keygen"
cp "$T/chain.d/90-dkim.conf.example" "$T/chain.d/90-dkim.conf"

rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/chain.d
delivery = queue
queue_directory = $T/spool
quarantine_directory = $T/held/deeper/quarantine
maillog_file = $T/maillog
minimal_backoff_time = 300s
events_store = sqlite:$T/events.db
events_batch_time = 50ms
stream_header = X-Relaychain-Stream
EOF
mkdir -p "$T/held" # relaychaind makes deeper/quarantine in it
"$RC" check -c "$T/r.conf" >"$T/check.out" 2>&1 ||
    fail "relaychain check: $(cat "$T/check.out")"
rcd_start rcd "$T/r.conf" "$port" || finish

# 1. the quarantine directory
check "1: start-up made quarantine_directory" [ -d "$T/held/deeper/quarantine" ]
check "1: mode 0700 ($(stat -c %a "$T/held/deeper/quarantine" 2>/dev/null))" \
    [ "$(stat -c %a "$T/held/deeper/quarantine" 2>/dev/null)" = 700 ]
check "1: and its parent, mode 0700 too" \
    [ "$(stat -c %a "$T/held/deeper" 2>/dev/null)" = 700 ]

# send NAME FILE - one message with swaks, transcript in $T/NAME.out
send() {
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to bob@example.net --data "$2" \
        >"$T/$1.out" 2>&1
}
mail_attach "infected" "$AVF/eicar.com" "eicar.com" application/octet-stream |
    sed 's/^From: .*/From: Alice <alice@example.com>/;s/^To: .*/To: bob@example.net/' |
    sed '1i X-Relaychain-Stream: alerts' >"$T/infected.eml"
mail_text "clean" "Nothing to see." |
    sed 's/^From: .*/From: Alice <alice@example.com>/;s/^To: .*/To: bob@example.net/' \
        >"$T/clean.eml"

# 4a. a clean message while the next hop is down: deferred in the queue
send clean "$T/clean.eml"
cq=$(sed -n 's/^<-  250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/clean.out")
check "4: the clean message is queued ($cq)" [ -n "$cq" ]
wait_grep "$cq: to=<bob@example.net>, .*status=deferred" "$T/rcd.log" 10 ||
    fail "4: $cq was not deferred"
"$RC" queue -c "$T/r.conf" hold "$cq" >"$T/hold.out" 2>&1 ||
    fail "queue hold: $(cat "$T/hold.out")"
check "4: queue hold is logged like postsuper's" \
    grep -q "relaychain\[[0-9]*\]: $cq: placed on hold$" "$T/maillog"
sink_start sink "$sink_port"

# 2. quarantine
send infected "$T/infected.eml"
qid=$(sed -n 's/^<-  250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/infected.out")
check "2: 250 with relaychaind's id ($qid)" [ -n "$qid" ]
q=$T/held/deeper/quarantine/$qid
check "2: held in quarantine_directory" [ -f "$q" ]
check "2: the stage that held it is recorded" grep -q '^Stage: antivirus$' "$q"
check "2: so is the stream of X-Relaychain-Stream" grep -q '^Stream: alerts$' "$q"
check "2: the held message has no X-Relaychain-Stream field" \
    sh -c "! grep -qi '^X-Relaychain-Stream' '$q'"
check "2: held as the antivirus stage received it: no X-Virus-Status" \
    sh -c "! grep -q '^X-Virus-S' '$q'"
check "2: the earlier stages' work is kept: relaychaind's Received" \
    grep -q "^Received: from client.test.example (unknown \[127.0.0.1\])" "$q"
check "2: summary line: Blocked INFECTED {Quarantined}" \
    grep -Eq ": $qid: Blocked INFECTED \(RelayChain\.Example\.EICAR\.UNOFFICIAL\) \{Quarantined\}, by=antivirus, client=unknown\[127.0.0.1\], from=<alice@example.com>, to=<bob@example.net>, size=[0-9]+, [0-9]+ ms$" "$T/rcd.log"
sleep 0.5
check "2: nothing at the sink" [ "$(sink_count sink)" -eq 0 ]

# 3. release
"$RC" quarantine -c "$T/r.conf" release "$qid" >"$T/release.out" 2>&1
rc=$?
check "3: release exits 0 (got $rc: $(cat "$T/release.out"))" [ "$rc" -eq 0 ]
check "3: release says it was queued" \
    grep -q "^$qid: released (queued as $qid)$" "$T/release.out"
check "3: the quarantine file is gone" [ ! -e "$q" ]
check "3: delivered through the queue" sink_wait sink 1 20
msg=$(sink_files sink | head -n 1)
check "3: delivered: the disclaimer is there" \
    grep -q 'This message and any attachments are confidential' "$msg"
check "3: delivered: DKIM signature verified by python3-dkim" \
    "$PY" "$here/dkim_verify.py" "$T/chain.d/dkim/mail2026.txt" -- "$msg"
check "3: delivered: no Infected status" sh -c "! grep -q '^X-Virus-Status: *Infected' '$msg'"
check "3: delivered: relaychaind's Received, with its id" \
    sh -c "grep -A1 '^Received: from client.test.example (unknown \[127.0.0.1\])' '$msg' | grep -q 'by relay.test.example (relaychain) with ESMTP id $qid'"
check "3: delivered: the attachment is still there" grep -q "eicar.com" "$msg"
check "3: the mail log: chain resumed after antivirus" \
    grep -q "relaychain\[[0-9]*\]: $qid: quarantine: release: resuming the chain after antivirus" "$T/maillog"
check "3: the mail log: the disclaimer and dkim stages ran" \
    sh -c "grep -q ': $qid: disclaimer: continue' '$T/maillog' && grep -q ': $qid: dkim: continue, signed, d=example.com' '$T/maillog'"
check "3: the mail log: the antivirus stage did not run again" \
    sh -c "! grep -q ': $qid: antivirus:' '$T/maillog'"
check "3: the mail log: released from quarantine" \
    grep -q "relaychain\[[0-9]*\]: $qid: released from quarantine, chain resumed after antivirus (queued as $qid)$" "$T/maillog"
check "3: relaychaind delivered it" \
    wait_grep "$qid: to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:$sink_port, .*status=sent" "$T/rcd.log" 10
i=0
while [ "$(sqlite3 "$T/events.db" "SELECT stream FROM events WHERE qid = '$qid' AND type = 'delivered'" 2>/dev/null)" != alerts ] &&
    [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "3: the released message kept its stream (delivered event on alerts)" \
    [ "$(sqlite3 "$T/events.db" "SELECT stream FROM events WHERE qid = '$qid' AND type = 'delivered'")" = alerts ]

# 4b. quarantine delete; queue release
send infected2 "$T/infected.eml"
qid2=$(sed -n 's/^<-  250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/infected2.out")
check "4: a second one held ($qid2)" [ -f "$T/held/deeper/quarantine/$qid2" ]
# A chain that no longer has the stage: nothing is released, the file
# stays, and the reason is given.
mkdir -p "$T/noav.d"
cp -r "$T/chain.d/." "$T/noav.d/"
rm "$T/noav.d/20-antivirus.conf"
sed "s|^chain_directory = .*|chain_directory = $T/noav.d|" "$T/r.conf" >"$T/noav.conf"
"$RC" quarantine -c "$T/noav.conf" release "$qid2" >"$T/noav.out" 2>&1
rc=$?
check "4: chain without the stage: release exits 1 (got $rc)" [ "$rc" -eq 1 ]
check "4: and says why ($(cat "$T/noav.out"))" \
    grep -q "$qid2: not released: the chain has no stage antivirus any more" "$T/noav.out"
check "4: and the message stays in the quarantine" [ -f "$T/held/deeper/quarantine/$qid2" ]
# A chain.d file that does not load (an unknown stage type): "relaychain
# check" refuses it, release (which runs the chain) too, but the queue
# and quarantine commands that only look at the spool still work.
mkdir -p "$T/broken.d"
cp -r "$T/chain.d/." "$T/broken.d/"
printf 'stage = no_such_stage\n' >"$T/broken.d/55-broken.conf"
sed "s|^chain_directory = .*|chain_directory = $T/broken.d|" "$T/r.conf" >"$T/broken.conf"
"$RC" check -c "$T/broken.conf" >"$T/broken-check.out" 2>&1
rc=$?
check "4: broken chain.d: relaychain check refuses it (rc $rc)" \
    sh -c "[ $rc -ne 0 ] && grep -q 55-broken.conf '$T/broken-check.out'"
"$RC" quarantine -c "$T/broken.conf" list >"$T/broken-qlist.out" 2>&1
rc=$?
check "4: broken chain.d: quarantine list still works (rc $rc: $(head -c 300 "$T/broken-qlist.out"))" \
    sh -c "[ $rc -eq 0 ] && grep -q '^$qid2 ' '$T/broken-qlist.out'"
"$RC" quarantine -c "$T/broken.conf" show "$qid2" >"$T/broken-show.out" 2>&1
rc=$?
check "4: broken chain.d: quarantine show still works (rc $rc)" \
    sh -c "[ $rc -eq 0 ] && grep -q '^Stage: antivirus$' '$T/broken-show.out'"
"$RC" queue -c "$T/broken.conf" list >"$T/broken-list.out" 2>&1
rc=$?
check "4: broken chain.d: queue list still works (rc $rc: $(head -c 300 "$T/broken-list.out"))" \
    sh -c "[ $rc -eq 0 ] && grep -q '^$cq! ' '$T/broken-list.out'"
"$RC" quarantine -c "$T/broken.conf" release "$qid2" >"$T/broken-release.out" 2>&1
rc=$?
check "4: broken chain.d: release refuses, naming the file (rc $rc)" \
    sh -c "[ $rc -ne 0 ] && grep -q 55-broken.conf '$T/broken-release.out'"
check "4: broken chain.d: and the message stays" [ -f "$T/held/deeper/quarantine/$qid2" ]
"$RC" quarantine -c "$T/r.conf" delete "$qid2" >"$T/delete.out" 2>&1 ||
    fail "quarantine delete: $(cat "$T/delete.out")"
check "4: quarantine delete is logged" \
    grep -q "relaychain\[[0-9]*\]: $qid2: removed from quarantine$" "$T/maillog"
"$RC" queue -c "$T/r.conf" release "$cq" >"$T/qrelease.out" 2>&1 ||
    fail "queue release: $(cat "$T/qrelease.out")"
check "4: queue release is logged" \
    grep -q "relaychain\[[0-9]*\]: $cq: released from hold$" "$T/maillog"
check "4: the released queue message is delivered" sink_wait sink 2 20

# 4c. the DSN parameters go with the message into the quarantine and
# out again: held with NOTIFY, ORCPT, RET and ENVID, released, and the
# next hop gets them
body=$(sed 's/$/\\r\\n/' "$T/infected.eml" | tr -d '\n')
chat "$port" >"$T/dsn.out" <<EOF
expect
send EHLO client.test.example
expect
send MAIL FROM:<alice@example.com> RET=HDRS ENVID=env+2B1
expect
send RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net
expect
send DATA
expect
raw $body.\r\n
expect
send QUIT
expect
EOF
qid3=$(sed -n 's/^250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/dsn.out")
q3=$T/held/deeper/quarantine/$qid3
check "4: held with its DSN parameters ($qid3)" \
    sh -c "grep -q '^Envelope-From-Params: RET=HDRS ENVID=env+2B1$' '$q3' &&
        grep -q '^Envelope-To-Params: NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net$' '$q3'"
"$RC" quarantine -c "$T/r.conf" release "$qid3" >"$T/release3.out" 2>&1 ||
    fail "release $qid3: $(cat "$T/release3.out")"
check "4: released and delivered" sink_wait sink 3 20
check "4: released with them: the next hop gets NOTIFY and ORCPT" \
    grep -q "^X-Rcpt-Args: <bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net" "$T"/sink/msg.*

# 4d. a file held by an older relaychaind (no Stage: line) is released
# as it was held, with a warning, and not run through the chain again
printf 'Envelope-From: alice@example.com\nEnvelope-To: bob@example.net\nClient: 127.0.0.1\nHelo: old.example\nArrival: 1700000000\nReason: virus=Old\n\nSubject: legacy\nX-Virus-Status: Infected (Old)\n\nold body\n' \
    >"$T/held/deeper/quarantine/LEGACY1"
"$RC" quarantine -c "$T/r.conf" release LEGACY1 >"$T/legacy.out" 2>&1
rc=$?
check "4: legacy file: released (exit $rc: $(cat "$T/legacy.out"))" [ "$rc" -eq 0 ]
check "4: legacy file: with a warning" \
    grep -q "warning: LEGACY1 was held without the name of its stage" "$T/legacy.out"
check "4: legacy file: delivered as it was held" sink_wait sink 4 20
check "4: legacy file: no stage ran on it" \
    sh -c "! grep -q ': LEGACY1: \(disclaimer\|dkim\|rewrite\):' '$T/maillog'"

# 5. start-up refuses a quarantine directory it cannot use
rcd_conf "$T/bad.conf" "$bad_port" "smtp:[127.0.0.1]:$sink_port" <<EOF
quarantine_directory = $T/afile/quarantine
EOF
: >"$T/afile"
timeout 10 "$RCD" -f -c "$T/bad.conf" >"$T/bad.out" 2>&1 &
bpid=$!
smtpd_track "$bpid"
wait "$bpid"
rc=$?
check "5: cannot be made: start-up fails (exit $rc)" [ "$rc" -ne 0 ]
check "5: and names the directory ($(cat "$T/bad.out"))" \
    grep -q "quarantine_directory:\{0,1\} $T/afile/quarantine: .*Not a directory" "$T/bad.out"
mkdir -m 0777 "$T/open"
rcd_conf "$T/open.conf" "$bad_port" "smtp:[127.0.0.1]:$sink_port" <<EOF
quarantine_directory = $T/open
EOF
timeout 10 "$RCD" -f -c "$T/open.conf" >"$T/open.out" 2>&1 &
bpid=$!
smtpd_track "$bpid"
wait "$bpid"
rc=$?
check "5: world-writable: start-up fails (exit $rc)" [ "$rc" -ne 0 ]
check "5: and says why ($(cat "$T/open.out"))" \
    grep -q "quarantine_directory $T/open: writable by everyone" "$T/open.out"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$T/rcd.log" "$T/maillog" "$T/infected.out" "$T/release.out"
    [ -n "${msg:-}" ] && cat "$msg"
fi
rcd_stop rcd
finish
