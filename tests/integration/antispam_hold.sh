#!/bin/sh
# antispam_hold - compromised accounts (hold_user) against a real spamd,
# with SMTP AUTH users on relaychaind, released from the CLI
#
# spamd as in antispam_spamd.sh; relaychaind (delivery = through to
# smtp-sink) with STARTTLS and AUTH for alice and bob, one antispam stage
# with hold_user = tempfail and a short window (hold_window = 20s,
# hold_factor = 3, floors of 5 messages and 10 recipients), notices to
# admin@example.net through a second smtp-sink. Then:
#   1. alice sends at her usual rate (one message to one colleague every
#      two seconds) until a whole window has passed: nothing is held;
#   2. she bursts: messages to 8 new recipients each, with GTUBE (spamd
#      scores it far over its required 5.0; no reject_score, so it would
#      pass): within the window she is held: 451 4.7.1, nothing more of
#      hers reaches the sink, the log line at warning names the measure
#      (recipients) against her baseline, and the admin's notice arrives;
#   3. a plain message of alice's is refused too (held, not scanned);
#      bob's mail still flows;
#   4. relaychaind restarted: alice is still held (the hold is a file);
#   5. "relaychain user list" shows user:alice and the reason (and with
#      -d DIR, when a chain.d file does not load); "relaychain
#      user release alice" lifts it, logs it, and her next message passes,
#      with no reload; a second release says she is not held;
#   5b. hold_user = quarantine with a ceiling, through relaychain filter:
#      a user never seen before, past hold_max_recipients in one message,
#      is quarantined and held; her next message too; bob's is not;
#      release as user:NAME;
#   6. the shipped chain.d/30-antispam.conf.example with its hold_user
#      line turned on passes relaychain check, and "relaychain user list"
#      finds its directory; hold keys without hold_user are refused.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

. "$top_srcdir/tests/integration/spamd_lib.sh"
spamd_require
set -- $(free_ports 4)
sa_port=$1 port=$2 sink_port=$3 nsink_port=$4

GTUBE='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
for u in alice bob; do
    printf '%s\n' "$u horse battery" |
        "$RC" passwd "$T/passwd" "$u" >"$T/passwd.out" 2>&1 ||
        fail "relaychain passwd $u: $(cat "$T/passwd.out")"
done

spamd_start "$sa_port"
sink_start sink "$sink_port"
sink_start nsink "$nsink_port"

mkdir -p "$T/chain.d"
cat >"$T/chain.d/30-antispam.conf" <<EOF
stage = antispam
engine = spamd
server = 127.0.0.1:$sa_port
timeout = 60s
add_header = yes
hold_user = tempfail
hold_directory = $T/holds
hold_window = 20s
hold_factor = 3
hold_floor_messages = 5
hold_floor_recipients = 10
notify_address = admin@example.net
notify_next_hop = smtp:[127.0.0.1]:$nsink_port
EOF
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
mynetworks = 127.0.0.1/32
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/passwd
EOF
rcd_start r "$T/r.conf" "$port" || finish

# send NAME USER BODY RCPTS: one message from USER over STARTTLS and AUTH
# PLAIN to RCPTS (comma-separated), transcript in $T/NAME.out
send() {
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --tls --auth PLAIN --auth-user "$2" --auth-password "$2 horse battery" \
        --from "$2@example.com" --to "$4" --header "Subject: $1" \
        --body "$3" >"$T/$1.out" 2>&1
}
# (swaks writes "<~" for a reply over TLS, "<~*" for an error one)
accepted() { grep -q '^<~  *250 2\.0\.0' "$T/$1.out" && ! grep -q '^<~\*' "$T/$1.out"; }
held() { grep -q '^<~\* *451 4\.7\.1 Sending from this account is on hold' "$T/$1.out"; }

# ------------------------------------------- 1. alice at her usual rate
# Messages until a whole window (20 s, counted from the epoch) has ended
# since the first: her baseline has seen one.
t0=$(date +%s)
end=$(( (t0 / 20 + 2) * 20 + 1 ))
n=0
while [ "$(date +%s)" -lt "$end" ] && [ $n -lt 30 ]; do
    n=$((n + 1))
    send "usual$n" alice "Hello Carol, the notes of meeting $n." carol@example.org
    accepted "usual$n" || fail "usual message $n not accepted: $(tail -n 3 "$T/usual$n.out")"
    sleep 2
done
check "alice sent $n messages at her usual rate over a whole window" [ "$n" -ge 5 ]
check "all of them arrived" sink_wait sink "$n" 10
check "no hold yet" sh -c "! grep -q 'antispam: hold ' '$T/r.log'"

# --------------------------------------------------------- 2. the burst
k=0
got_held=0
while [ $k -lt 6 ] && [ $got_held -eq 0 ]; do
    k=$((k + 1))
    rcpts=""
    for i in 1 2 3 4 5 6 7 8; do
        rcpts="$rcpts${rcpts:+,}target$k.$i@victim$i.example"
    done
    send "burst$k" alice "Cheap offer $GTUBE" "$rcpts"
    held "burst$k" && got_held=1
done
check "alice is held within the window (burst message $k)" [ $got_held -eq 1 ]
check "the burst messages before the hold went out as spam-scored" \
    grep -q 'antispam: continue, score=1[0-9][0-9][0-9]\.[0-9]/5\.0' "$T/r.log"
sleep 0.5
before=$(sink_count sink)
check "sink: the usual mail and the $((k - 1)) burst messages before the hold ($before)" \
    [ "$before" -eq $((n + k - 1)) ]
check "the log line at warning names the measure against her baseline" \
    grep -q 'antispam: hold user=alice: recipients [0-9]* in 20s > 3x baseline [0-9.]* (floor 10)' "$T/r.log"
check "the held message's verdict is logged" \
    grep -q 'antispam: tempfail, held, user=alice (hold_user = tempfail)' "$T/r.log"
check "the hold is a file in hold_directory" \
    grep -q '^key: user:alice$' "$T/holds/user.alice"
check "the admin's notice arrived" sink_wait nsink 1 10
f=$(sink_files nsink | head -n 1)
check "the notice names alice, the reason and the release command" \
    sh -c "grep -q '^Subject: sending held: user=alice' '$f' && grep -q 'relaychain user release alice[[:space:]]*\$' '$f' && grep -q '^Reason: *recipients' '$f'"

# -------------------------------------- 3. held: alice refused, bob flows
send after alice "Hello Carol, one more note." carol@example.org
check "alice's plain message: 451 4.7.1 (held)" held after
send bob1 bob "Hello Dave, the report is attached." dave@example.org
check "bob's message is accepted" accepted bob1
check "bob's message arrives" sink_wait sink $((before + 1)) 10
sleep 0.3
check "nothing of alice's arrived while held ($(sink_count sink))" \
    [ "$(sink_count sink)" -eq $((before + 1)) ]

# ---------------------------------------------------------- 4. restart
rcd_stop r
rcd_start r "$T/r.conf" "$port" || finish
check "after a restart the hold is read back" \
    grep -q 'antispam: 1 held in' "$T/r.log"
send restarted alice "Hello Carol, still there?" carol@example.org
check "after a restart alice is still held" held restarted

# ---------------------------------------------------------- 5. release
"$RC" user -c "$T/r.conf" list >"$T/list.out" 2>&1
rc=$?
check "relaychain user list exits 0 ($rc)" [ "$rc" -eq 0 ]
check "relaychain user list shows alice and the reason" \
    grep -q '^user:alice	held since [0-9-]* [0-9:]* UTC	recipients' "$T/list.out"
check "and only her" [ "$(wc -l <"$T/list.out")" -eq 1 ]
# A chain.d file that does not load: -d still reaches the holds.
mkdir -p "$T/cb"
printf 'stage = antispam\nengine = nosuch\n' >"$T/cb/30-antispam.conf"
printf 'chain_directory = %s\n' "$T/cb" >"$T/cb.conf"
"$RC" user -c "$T/cb.conf" list >"$T/cb1.out" 2>&1
rc=$?
check "a broken chain: relaychain user list fails, naming the file ($rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q '30-antispam.conf:2' '$T/cb1.out'"
"$RC" user -c "$T/cb.conf" -d "$T/holds" list >"$T/cb2.out" 2>&1
rc=$?
check "a broken chain: relaychain user -d DIR list shows alice ($rc)" \
    sh -c "[ $rc -eq 0 ] && grep -q '^user:alice	' '$T/cb2.out'"
"$RC" user -c "$T/r.conf" release alice >"$T/rel.out" 2>&1
rc=$?
check "relaychain user release alice exits 0 ($rc: $(cat "$T/rel.out"))" [ "$rc" -eq 0 ]
check "it says so" grep -q '^user:alice: released$' "$T/rel.out"
check "the file is gone" [ ! -e "$T/holds/user.alice" ]
"$RC" user -c "$T/r.conf" list >"$T/list2.out" 2>&1
check "the list is empty" [ ! -s "$T/list2.out" ]
c0=$(sink_count sink)
send released alice "Hello Carol, back to normal." carol@example.org
check "alice's next message passes, no reload" accepted released
check "and arrives" sink_wait sink $((c0 + 1)) 10
check "the daemon logs the release" \
    grep -q 'antispam: hold released, user:alice' "$T/r.log"
"$RC" user -c "$T/r.conf" release alice >"$T/rel2.out" 2>&1
rc=$?
check "a second release fails: not held ($rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q 'user:alice is not held' '$T/rel2.out'"

# ------------------------------ 5b. quarantine, a ceiling, no baseline
# relaychain filter runs the same stage: with hold_user = quarantine and
# hold_max_recipients = 5, one message to six recipients from a user
# never seen before is quarantined and holds her; her next message, to
# one recipient, is quarantined too (held), bob's is not.
mkdir -p "$T/cq"
cat >"$T/cq/30-antispam.conf" <<EOF
stage = antispam
engine = spamd
server = 127.0.0.1:$sa_port
timeout = 60s
hold_user = quarantine
hold_directory = $T/qholds
hold_max_recipients = 5
EOF
printf 'chain_directory = %s\nquarantine_directory = %s/cqq\n' "$T/cq" "$T" \
    >"$T/cq.conf"
printf 'From: mallory@example.com\nSubject: hi\n\nHello all.\n' >"$T/m.eml"
"$RC" filter -v -c "$T/cq.conf" --from mallory@example.com --auth mallory \
    --rcpt a1@x.example --rcpt a2@x.example --rcpt a3@x.example \
    --rcpt a4@x.example --rcpt a5@x.example --rcpt a6@x.example \
    <"$T/m.eml" >"$T/q1.out" 2>"$T/q1.err"
rc=$?
check "quarantine: six recipients past the ceiling of 5: quarantined (exit $rc)" \
    [ "$rc" -eq 5 ]
check "quarantine: the log names the ceiling" \
    grep -q 'antispam: hold user=mallory: recipients 6 in 3600s > ceiling 5' "$T/q1.err"
"$RC" filter -v -c "$T/cq.conf" --from mallory@example.com --auth mallory \
    --rcpt a1@x.example <"$T/m.eml" >"$T/q2.out" 2>"$T/q2.err"
rc=$?
check "quarantine: her next message, one recipient, is held too (exit $rc)" \
    sh -c "[ $rc -eq 5 ] && grep -q 'held, user=mallory (hold_user = quarantine)' '$T/q2.err'"
"$RC" filter -v -c "$T/cq.conf" --from bob@example.com --auth bob \
    --rcpt a1@x.example <"$T/m.eml" >"$T/q3.out" 2>"$T/q3.err"
rc=$?
check "quarantine: bob's message goes on (exit $rc)" [ "$rc" -eq 0 ]
"$RC" user -c "$T/cq.conf" release user:mallory >"$T/qrel.out" 2>&1
rc=$?
check "quarantine: released as user:mallory ($rc)" [ "$rc" -eq 0 ]
"$RC" filter -c "$T/cq.conf" --from mallory@example.com --auth mallory \
    --rcpt a1@x.example <"$T/m.eml" >"$T/q4.out" 2>"$T/q4.err"
rc=$?
check "quarantine: after the release her message goes on (exit $rc)" [ "$rc" -eq 0 ]

# ------------------------------------ 6. the shipped example, turned on
mkdir -p "$T/cx"
sed -e "s|^server = .*|server = 127.0.0.1:$sa_port|" \
    -e "s|^#hold_user = .*|hold_user = tempfail|" \
    -e "s|^#hold_directory = .*|hold_directory = $T/cxholds|" \
    "$top_srcdir/chain.d/30-antispam.conf.example" >"$T/cx/30-antispam.conf"
printf 'chain_directory = %s\nquarantine_directory = %s/cxq\n' "$T/cx" "$T" \
    >"$T/cx.conf"
check "the shipped example with hold_user on passes relaychain check" \
    sh -c "'$RC' check -c '$T/cx.conf' >'$T/cx.check' 2>&1"
check "relaychain check lists hold_user" grep -q 'hold_user *= *tempfail' "$T/cx.check"
"$RC" user -c "$T/cx.conf" list >"$T/cxlist.out" 2>&1
rc=$?
check "relaychain user list on it: no holds, exit 0 ($rc: $(cat "$T/cxlist.out"))" \
    sh -c "[ $rc -eq 0 ] && [ ! -s '$T/cxlist.out' ]"
mkdir -p "$T/cn"
printf 'stage = antispam\nengine = spamd\nserver = 127.0.0.1:%s\nhold_window = 1h\n' \
    "$sa_port" >"$T/cn/30-antispam.conf"
printf 'chain_directory = %s\n' "$T/cn" >"$T/cn.conf"
"$RC" check -c "$T/cn.conf" >"$T/cn.out" 2>&1
rc=$?
check "hold_window without hold_user is refused with file:line ($rc)" \
    sh -c "[ $rc -ne 0 ] && grep -q '30-antispam.conf:4: hold_window: set hold_user too' '$T/cn.out'"
printf 'stage = antispam\nengine = spamd\nserver = 127.0.0.1:%s\n' "$sa_port" \
    >"$T/cn/30-antispam.conf"
"$RC" user -c "$T/cn.conf" list >"$T/cnl.out" 2>&1
rc=$?
check "relaychain user list without hold_user says so ($rc)" \
    sh -c "[ $rc -eq 1 ] && grep -q 'no antispam stage of the chain sets hold_user' '$T/cnl.out'"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$T/r.log" >&2
    tail -n 20 "$T/burst1.out" >&2
    tail -n 20 "$T/spamd.log" >&2
fi
rcd_stop r
finish
