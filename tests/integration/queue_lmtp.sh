#!/bin/sh
# queue_lmtp - each recipient's own reply from a real LMTP server
#
# The next hop is a private Dovecot (dovecot -c FILE -F: its base_dir,
# state_dir, log and the users' Maildirs all under $T; LMTP only, on
# 127.0.0.1 and a free port, ssl = no; users from a passwd-file, mail
# owned by nobody). It knows alice, bob and carol. bob and carol have a
# quota of 10 bytes, checked at delivery (lmtp_rcpt_check_quota = no), so
# Dovecot takes them at RCPT and refuses the message after DATA, each
# with a reply of its own: bob 452 4.2.2 (quota_full_tempfail = yes, set
# in his passwd-file line), carol 552 5.2.2. An unknown user is refused
# at RCPT with 550 5.1.1.
#
# 1. delivery = queue: one message to alice, bob, carol and nosuch. The
#    client hears 250. alice's Maildir gets it once; bob is deferred and
#    is all that "relaychain queue list --json" shows, with Dovecot's 452;
#    carol and nosuch are bounced: the sender (routed by transport_map to
#    a sink) gets one report naming both, each with Dovecot's own words,
#    and neither alice nor bob. A flush tries bob again: alice still has
#    one copy.
# 2. delivery = through with the same Dovecot: the client can hear only
#    one reply. alice + bob gives 452 (the client will send again: alice
#    gets a second copy, nobody loses mail); alice + carol gives 552. The
#    log has each recipient's own reply and a warning about the split.
# 3. bob's quota is lifted (a new passwd-file, doveadm reload), a flush
#    delivers his copy, the queue is empty, and alice has still not had
#    the queued message twice.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

for prog in /usr/sbin/dovecot; do
    if [ ! -x "$prog" ]; then
        echo "$0: $prog is missing (scripts/setup installs dovecot-core" \
            "and dovecot-lmtpd)" >&2
        exit 1
    fi
done

set -- $(free_ports 4)
port=$1 lmtp=$2 back=$3 tport=$4
CHECK="$top_srcdir/tests/integration/dsn_check.py"
D=$T/dovecot
uid=$(id -u nobody)
gid=$(id -g nobody)

# ------------------------------------------------------------- Dovecot

# dovecot_users BOBQUOTA - the passwd-file; bob's line gets BOBQUOTA
dovecot_users() {
    cat >"$D/users.new" <<EOF
alice:{PLAIN}unused:$uid:$gid::$T/mail/alice
bob:{PLAIN}unused:$uid:$gid::$T/mail/bob::$1
carol:{PLAIN}unused:$uid:$gid::$T/mail/carol::userdb_quota_rule=*:bytes=10
EOF
    mv "$D/users.new" "$D/users"
}

mkdir -p "$D/run" "$D/state" "$T/mail"
chown "$uid:$gid" "$T/mail"
dovecot_users "userdb_quota_rule=*:bytes=10 userdb_quota_full_tempfail=yes"
cat >"$D/dovecot.conf" <<EOF
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:~/Maildir
# "alice@dest.example" is user alice
auth_username_format = %Ln
passdb {
  driver = passwd-file
  args = $D/users
}
userdb {
  driver = passwd-file
  args = $D/users
}
mail_plugins = quota
# the quota is checked when the message is saved, after DATA
lmtp_rcpt_check_quota = no
plugin {
  quota = count:User quota
  quota_vsizes = yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
EOF
dovecot -c "$D/dovecot.conf" -F >>"$D/dovecot.out" 2>&1 &
dpid=$!
smtpd_track "$dpid"
wait_listen "$lmtp" ||
    fail "dovecot does not listen on $lmtp: $(tail -n 3 "$D/dovecot.log" "$D/dovecot.out" 2>/dev/null)"

# mails USER - messages in USER's Maildir
mails() {
    find "$T/mail/$1/Maildir/new" "$T/mail/$1/Maildir/cur" -type f \
        2>/dev/null | wc -l
}

# --------------------------------------------- 1. delivery = queue

sink_start back "$back"
cat >"$T/transport" <<EOF
client.example    smtp:[127.0.0.1]:$back
EOF
rcd_conf "$T/q.conf" "$port" "lmtp:[127.0.0.1]:$lmtp" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
transport_map = $T/transport
EOF
rcd_start rcd "$T/q.conf" "$port" || finish

# send PORT NAME RCPTS - one message by swaks, its transcript in NAME.out
send() {
    timeout 30 swaks --server "127.0.0.1:$1" --timeout 10 \
        --helo client.test.example --from sender@client.example \
        --to "$3" --header "Subject: $2" \
        --header "Message-ID: <$2@client.example>" \
        --body "body of $2" >"$T/$2.out" 2>&1
}

send "$port" queued alice@dest.example,bob@dest.example,carol@dest.example,nosuch@dest.example
check "queue: the client hears 250 for the message" \
    grep -q '^<- *250 2.0.0 Ok: queued as' "$T/queued.out"
qid=$(sed -n 's/^<- *250 2.0.0 Ok: queued as \([0-9A-F]*\)$/\1/p' "$T/queued.out")
check "queue: bob is deferred with Dovecot's 452" \
    wait_grep "$qid: to=<bob@dest.example>, relay=127.0.0.1\[127.0.0.1\]:$lmtp, .*dsn=4.2.2, status=deferred (452 4.2.2 <bob@dest.example> Quota exceeded" "$T/rcd.log" 10
check "queue: alice is logged sent" \
    grep -q "$qid: to=<alice@dest.example>, .*status=sent (250 2.0.0 <alice@dest.example> " "$T/rcd.log"
check "queue: carol is bounced with Dovecot's 552 after DATA" \
    grep -q "$qid: to=<carol@dest.example>, .*dsn=5.2.2, status=bounced (552 5.2.2 <carol@dest.example> Quota exceeded" "$T/rcd.log"
check "queue: nosuch is bounced with Dovecot's 550 at RCPT" \
    grep -q "$qid: to=<nosuch@dest.example>, .*dsn=5.1.1, status=bounced (550 5.1.1 <nosuch@dest.example> User doesn't exist" "$T/rcd.log"
check "queue: alice's Maildir has the message once (got $(mails alice))" \
    [ "$(mails alice)" -eq 1 ]
check "queue: neither bob nor carol got it" \
    [ "$(mails bob)$(mails carol)" = 00 ]
check "queue: Dovecot logged alice's save and both quota refusals" \
    sh -c "grep -q 'lmtp(alice).*saved mail to INBOX' '$D/dovecot.log' &&
        [ \$(grep -c 'save failed to INBOX: Quota exceeded' '$D/dovecot.log') -eq 2 ]"

"$RC" queue -c "$T/q.conf" list --json >"$T/list.json" 2>&1
"$PY" - "$T/list.json" "$qid" >"$T/list.check" 2>&1 <<'EOF'
import json, sys
objs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
mine = [o for o in objs if o["queue_id"] == sys.argv[2]]
if len(mine) != 1:
    print("%d entries for %s: %s" % (len(mine), sys.argv[2], objs))
    sys.exit(1)
rcpts = mine[0]["recipients"]
addrs = [r["address"] for r in rcpts]
if addrs != ["bob@dest.example"]:
    print("pending recipients %s, want bob only" % addrs)
    sys.exit(1)
reason = rcpts[0].get("delay_reason", "")
if not reason.startswith("452 4.2.2 <bob@dest.example> Quota exceeded"):
    print("bob's delay_reason is %r" % reason)
    sys.exit(1)
print("ok")
EOF
check "queue list --json: bob alone, with his 452 ($(tr '\n' ' ' <"$T/list.check"))" \
    grep -qx ok "$T/list.check"

check "the sender gets a report" sink_wait back 1 10
dsn=$(grep -l '^Subject: Undelivered Mail' "$T"/back/msg.* 2>/dev/null | head -n 1)
"$PY" "$CHECK" "$dsn" --action failed --rcpt carol@dest.example \
    --status 5.2.2 --diag '552 5.2.2 <carol@dest.example> Quota exceeded' \
    --returned-subject queued >"$T/check-carol.out" 2>&1
check "the report gives carol her own 552: $(tr '\n' ' ' <"$T/check-carol.out")" \
    grep -qx ok "$T/check-carol.out"
"$PY" "$CHECK" "$dsn" --action failed --rcpt nosuch@dest.example \
    --status 5.1.1 --diag "550 5.1.1 <nosuch@dest.example> User doesn't exist" \
    --returned-subject queued >"$T/check-nosuch.out" 2>&1
check "the report gives nosuch its own 550: $(tr '\n' ' ' <"$T/check-nosuch.out")" \
    grep -qx ok "$T/check-nosuch.out"
check "the report names carol and nosuch only" \
    sh -c "[ \$(grep -c '^Final-Recipient:' '$dsn') -eq 2 ] &&
        ! grep -q -e '^Final-Recipient: rfc822; alice' \
            -e '^Final-Recipient: rfc822; bob' '$dsn'"

# wait_count PATTERN FILE N - wait (10 s at most) for N lines matching
wait_count() {
    local i
    i=0
    while [ "$(grep -c -e "$1" "$2")" -lt "$3" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(grep -c -e "$1" "$2")" -ge "$3" ]
}

"$RC" queue -c "$T/q.conf" flush >"$T/flush1.out" 2>&1
check "flush: bob is tried again and deferred again" \
    wait_count "$qid: to=<bob@dest.example>, .*status=deferred (452 " \
    "$T/rcd.log" 2
check "flush: only bob was tried again" \
    [ "$(grep -c "$qid: to=<alice@dest.example>" "$T/rcd.log")" -eq 1 ]
check "flush: alice still has one copy (got $(mails alice))" \
    [ "$(mails alice)" -eq 1 ]
check "flush: no second report" [ "$(sink_count back)" -eq 1 ]

# ------------------------------------------- 2. delivery = through

rcd_conf "$T/t.conf" "$tport" "lmtp:[127.0.0.1]:$lmtp" </dev/null
rcd_start through "$T/t.conf" "$tport" || finish
send "$tport" through-defer alice@dest.example,bob@dest.example
check "through: alice + bob: the client hears bob's 452" \
    grep -q '^<\*\* *452 4.2.2 <bob@dest.example> Quota exceeded' "$T/through-defer.out"
check "through: alice got it all the same (got $(mails alice), want 2)" \
    [ "$(mails alice)" -eq 2 ]
check "through: each recipient is logged with its own reply" \
    sh -c "grep -q 'to=<alice@dest.example>, .*status=sent (250 2.0.0 <alice@dest.example> ' '$T/through.log' &&
        grep -q 'to=<bob@dest.example>, .*status=deferred (452 4.2.2 <bob@dest.example> ' '$T/through.log'"
check "through: the split is logged with the duplicate it brings" \
    grep -q 'next hop delivered to 1 of 2 recipients; the client hears 452 for all of them, so it sends again and the recipients delivered get the message twice' "$T/through.log"
send "$tport" through-bounce alice@dest.example,carol@dest.example
check "through: alice + carol: the client hears carol's 552" \
    grep -q '^<\*\* *552 5.2.2 <carol@dest.example> Quota exceeded' "$T/through-bounce.out"
check "through: alice got that one too (got $(mails alice), want 3)" \
    [ "$(mails alice)" -eq 3 ]
check "through: that split is logged too" \
    grep -q 'next hop delivered to 1 of 2 recipients; the client hears 552 for all of them, so its report names the recipients delivered too' "$T/through.log"
send "$tport" through-ok alice@dest.example
check "through: alice alone: 250 from Dovecot" \
    grep -q '^<- *250 2.0.0 <alice@dest.example> .* Saved' "$T/through-ok.out"
rcd_stop through

# ------------------------------------- 3. bob gets room: the queue ends

# Dovecot reads the passwd-file again when it is told to reload
dovecot_users ""
doveadm -c "$D/dovecot.conf" reload >>"$D/dovecot.out" 2>&1
check "Dovecot reloads its configuration" \
    wait_grep 'SIGHUP received - reloading configuration' "$D/dovecot.log" 5
# The reload ends Dovecot's LMTP processes, so an attempt may meet a
# connection going away and be deferred: up to three flushes.
for i in 1 2 3; do
    "$RC" queue -c "$T/q.conf" flush >>"$T/flush2.out" 2>&1
    wait_grep "$qid: to=<bob@dest.example>, .*status=sent" "$T/rcd.log" 5 &&
        break
done
check "bob is delivered after a flush" \
    grep -q "$qid: to=<bob@dest.example>, .*status=sent (250 2.0.0 <bob@dest.example> " "$T/rcd.log"
check "the message is removed from the queue" \
    wait_grep "$qid: removed" "$T/rcd.log" 5
check "bob's Maildir has it once (got $(mails bob))" [ "$(mails bob)" -eq 1 ]
check "alice never got the queued message twice" \
    [ "$(grep -l '^Subject: queued' "$T"/mail/alice/Maildir/new/* "$T"/mail/alice/Maildir/cur/* 2>/dev/null | wc -l)" -eq 1 ]
"$RC" queue -c "$T/q.conf" list --json >"$T/list2.json" 2>&1
check "the queue is empty" [ ! -s "$T/list2.json" ]
rcd_stop rcd

# Dovecot and its children end with it
kids=$(pgrep -P "$dpid" | tr '\n' ' ')
kill -TERM "$dpid" 2>/dev/null
wait "$dpid"
i=0
while [ -n "$kids" ] && [ $i -lt 50 ] && kill -0 $kids 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
check "Dovecot's processes ($kids) ended" sh -c "! kill -0 $kids 2>/dev/null"
finish
