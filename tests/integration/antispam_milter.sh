#!/bin/sh
# antispam_milter - the antispam stage behind a real Postfix (milter)
#
# spamd runs as in antispam_spamd.sh (127.0.0.1, a port the kernel
# picked, its own site configuration, the packaged rules: GTUBE), with
# "-D received-header" so that its log shows how it read the Received
# field the stage writes for it. A private Postfix lists relaychaind in
# smtpd_milters and relays to smtp-sink; relaychaind's chain is one
# antispam stage (engine = spamd, reject_score = 15). The client connects
# from 127.0.0.2, which has no name: Postfix hands the milter
# "[127.0.0.2]" for it, and 127.0.0.1 (what the spamd engine says when it
# knows no address) would hide a lost one.
#   1. GTUBE: Postfix answers the client 554 5.7.1 at the end of DATA and
#      logs the milter reject; nothing reaches the sink;
#   2. a plain message: delivered with X-Spam-Score and X-Spam-Status;
#      spamd read the client address, no name, the HELO and Postfix's
#      queue id from the stage's Received field;
#   3. a client that authenticates to Postfix (SASL through a private
#      Dovecot's auth service: Dovecot -c FILE -F, its directories and
#      log under $T, auth only, on 127.0.0.1 and a free port; Postfix's
#      smtpd_sasl_type = dovecot) as alice: Postfix hands the milter
#      {auth_authen}; relaychaind logs the user under Postfix's queue id,
#      and spamd read the stage's Received field as authenticated
#      (ESMTPA), which it had not for 2;
#   4. spamd stopped: the client hears 451 4.7.1 from Postfix, nothing
#      is delivered.
. "$top_srcdir/tests/integration/milter_lib.sh"

. "$top_srcdir/tests/integration/spamd_lib.sh"
spamd_require
if [ ! -x /usr/sbin/dovecot ]; then
    echo "$0: /usr/sbin/dovecot is missing (scripts/setup installs dovecot-core)" >&2
    exit 1
fi
set -- $(free_ports 4)
sa_port=$1 pf_port=$2 sink_port=$3 auth_port=$4
sock=$T/rc/milter.sock
mkdir -p "$T/rc"
chmod 755 "$T/rc"

# ------------------------------------------------------------- spamd
spamd_start "$sa_port" -D received-header

# ------------------------------------------------ Dovecot's SASL service
D=$T/dovecot
mkdir -p "$D/run" "$D/state"
cat >"$D/users" <<EOF
alice:{PLAIN}wonderland:$(id -u nobody):$(id -g nobody)::$T/nonexistent
EOF
cat >"$D/dovecot.conf" <<EOF
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
protocols = none
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = $D/users
}
userdb {
  driver = passwd-file
  args = $D/users
}
service auth {
  inet_listener auth {
    address = 127.0.0.1
    port = $auth_port
  }
}
EOF
dovecot -c "$D/dovecot.conf" -F >"$D/dovecot.out" 2>&1 &
smtpd_track $!
wait_listen "$auth_port" ||
    fail "dovecot does not listen on $auth_port: $(tail -n 3 "$D/dovecot.log" "$D/dovecot.out" 2>/dev/null)"

# ------------------------------------------------- relaychaind, Postfix
mkdir -p "$T/chain.d"
cat >"$T/chain.d/30-antispam.conf" <<EOF
stage = antispam
engine = spamd
server = 127.0.0.1:$sa_port
timeout = 60s
reject_score = 15
EOF
mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
milter_socket_group = postfix
milter_socket_mode = 0660
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" \
    "smtpd_milters = unix:$sock" \
    "milter_protocol = 6" \
    "milter_default_action = tempfail" \
    "milter_content_timeout = 90s" \
    "smtpd_peername_lookup = no" \
    "smtpd_sasl_auth_enable = yes" \
    "smtpd_sasl_type = dovecot" \
    "smtpd_sasl_path = inet:127.0.0.1:$auth_port"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
pflog=$T/pf/postfix.log

GTUBE='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

# send NAME BODY [SWAKS-ARGS...]: one message to Postfix from 127.0.0.2,
# transcript in $T/NAME.out
send() {
    local name body
    name=$1 body=$2
    shift 2
    timeout 120 swaks --server "127.0.0.1:$pf_port" --local-interface 127.0.0.2 \
        --helo client.test.example --timeout 100 --from alice@example.com \
        --to bob@example.org --header "Subject: $name" --body "$body" "$@" \
        >"$T/$name.out" 2>&1
}

# 1. GTUBE
send gtube "$GTUBE"
check "1: the client hears 554 5.7.1 from Postfix" \
    grep -q '^<\*\* *554 5\.7\.1 Message refused as spam' "$T/gtube.out"
check "1: Postfix logs the milter reject" \
    grep -q 'milter-reject: END-OF-MESSAGE from .*: 5.7.1 Message refused as spam' "$pflog"
check "1: relaychaind logs the reject and the rule" \
    grep -q 'antispam: reject, score=[0-9.]* ([A-Z_,.]*GTUBE[A-Z_,.]*), engine=spamd' "$T/rcd.log"

# 2. a plain message
send plain "Hello Bob, the minutes of Tuesday's meeting are below. Regards, Alice"
check "2: Postfix accepts the plain message" grep -q '^<-  250 .*queued as' "$T/plain.out"
q2=$(sed -n 's/^<-  250 .*queued as \([0-9A-F]*\).*/\1/p' "$T/plain.out")
check "2: it reaches the sink" sink_wait sink 1 20
msg=$(grep -l '^Subject: plain' "$T"/sink/msg.* 2>/dev/null | head -n 1)
check "2: sink: X-Spam-Status, once" \
    sh -c "[ -n '$msg' ] && [ \$(grep -c '^X-Spam-Status:' '$msg') -eq 1 ] && grep -q '^X-Spam-Status: No, score=-\{0,1\}[0-9.]* required=5.0 tests=' '$msg'"
check "2: sink: X-Spam-Score, once" \
    sh -c "[ -n '$msg' ] && [ \$(grep -c '^X-Spam-Score:' '$msg') -eq 1 ] && grep -q '^X-Spam-Score: -\{0,1\}[0-9][0-9.]*\$' '$msg'"
check "2: relaychaind logs continue under Postfix's queue id" \
    grep -q "$q2: antispam: continue, score=-\{0,1\}[0-9.]*/5\.0, engine=spamd" "$T/rcd.log"
# SpamAssassin's reading of our Received field: the client address, no
# name (not "[127.0.0.2]"), the HELO, the queue id.
check "2: spamd saw the client 127.0.0.2 (no name), its HELO and the queue id" \
    grep -q "received-header: parsed as \[ ip=127\.0\.0\.2 rdns= helo=client\.test\.example by=relaychain ident= envfrom= intl=[01] id=$q2 auth= " "$T/spamd.log"

# 3. an authenticated client
send auth "Hello Bob, the figures you asked for. Regards, Alice" \
    --auth PLAIN --auth-user alice --auth-password wonderland
check "3: Postfix takes alice's password" \
    grep -q '^<-  235 .*Authentication successful' "$T/auth.out"
check "3: Postfix accepts the message" grep -q '^<-  250 .*queued as' "$T/auth.out"
q3=$(sed -n 's/^<-  250 .*queued as \([0-9A-F]*\).*/\1/p' "$T/auth.out")
check "3: Postfix logs the SASL login" \
    grep -q "$q3: client=.*\[127\.0\.0\.2\], sasl_method=PLAIN, sasl_username=alice" "$pflog"
check "3: it reaches the sink" sink_wait sink 2 20
check "3: relaychaind had {auth_authen}: it logs alice under Postfix's queue id" \
    grep -q "$q3: milter: from=<alice@example.com>, size=[0-9]*, nrcpt=1, sasl_username=alice$" "$T/rcd.log"
check "3: relaychaind logs continue under that queue id" \
    grep -q "$q3: antispam: continue, score=-\{0,1\}[0-9.]*/5\.0, engine=spamd" "$T/rcd.log"
check "3: spamd read the stage's Received field as authenticated (ESMTPA)" \
    grep -q "received-header: parsed as \[ ip=127\.0\.0\.2 rdns= helo=client\.test\.example by=relaychain ident= envfrom= intl=[01] id=$q3 auth=ESMTPA " "$T/spamd.log"
check "3: the password is in no log" \
    sh -c "! grep -q wonderland '$T/rcd.log' '$pflog' '$T/spamd.log'"

# 4. spamd stopped
kill -TERM "$SA_PID"
wait "$SA_PID" 2>/dev/null
i=0
while [ -n "$(ss -Hltn "sport = :$sa_port" 2>/dev/null)" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
send down "Hello again Bob"
check "4: spamd stopped: the client hears 451 4.7.1 from Postfix" \
    grep -q '^<\*\* *451 4\.7\.1 Message could not be checked for spam' "$T/down.out"
check "4: relaychaind logs why" \
    grep -q "antispam: tempfail, unchecked (spamd 127.0.0.1:$sa_port: connect: Connection refused), engine=spamd" "$T/rcd.log"

sleep 1
check "nothing of 1 and 4 reached the sink ($(sink_count sink))" [ "$(sink_count sink)" -eq 2 ]

if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"; cat "$T/rcd.log"
    echo "--- Postfix log"; cat "$pflog"
    echo "--- spamd log"; grep -e 'received-header' -e 'spamd:' "$T/spamd.log" | tail -n 30
    echo "--- Dovecot log"; cat "$D/dovecot.log" "$D/dovecot.out" 2>/dev/null
    for f in gtube plain auth down; do
        echo "--- swaks $f"; tail -n 12 "$T/$f.out"
    done
fi
mtd_stop rcd
finish
