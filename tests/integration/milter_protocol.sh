#!/bin/sh
# milter_protocol - protocol cases against relaychaind, driven by miltertest
#
# One relaychaind (with the testedit stage) on a UNIX socket; each case is
# a miltertest Lua script playing the MTA, its stages picked by the
# envelope sender:
#
#   dup      X-A three times: change the second, delete the first. The
#            MTA must get "delete X-A 1" and the change of the field that
#            is X-A 1 by then: never "delete X-A 2" (the CVE-2022-48521
#            class of index bug). dup2: two stages delete X-A 2, then
#            X-A 1: the MTA gets two deletes of X-A 1.
#   ins      a field inserted at position 1 of A, B, C: smfi_insheader
#            index 2 (the MTA's own Received: is index 0)
#   body     a replaced body, byte for byte (miltertest cannot take a
#            request over 1024 octets: see the note below)
#   reject   the stage's 550 5.7.1 reply through smfi_setreply
#   hold     quarantine with the reason
#   nomacro  no macro at all: the message still goes through, logged as
#            NOQUEUE
#   abort    a connection dropped in the middle of the body, and an
#            SMFIC_ABORT mid-message followed by a good message on the
#            same connection
#   many     4 miltertest processes with 50 connections each open at once,
#            interleaved, every message answered
#
# miltertest 1.6.0 (OpenDKIM 2.11) reads each end-of-message request into
# a 1024-octet buffer on its stack without a bound, and crashes on a
# bigger one: the body over 64 KB is covered by milter_postfix.sh with a
# real Postfix and by the unit tests.
. "$top_srcdir/tests/integration/milter_lib.sh"

sock=$T/milter.sock
mkdir -p "$T/chain.d"
stage() {
    cat >"$T/chain.d/$1.conf"
}
stage 10-dup <<'EOF'
stage = testedit
match_sender = dup@example.org
header_change = X-A:2:TWO
header_delete = X-A:1
EOF
stage 11-dup2a <<'EOF'
stage = testedit
match_sender = dup2@example.org
header_delete = X-A:2
EOF
stage 12-dup2b <<'EOF'
stage = testedit
match_sender = dup2@example.org
header_delete = X-A:1
EOF
stage 20-ins <<'EOF'
stage = testedit
match_sender = ins@example.org
header_insert = 1:X-Ins:inserted
EOF
stage 30-body <<'EOF'
stage = testedit
match_sender = body@example.org
body_size = 600
EOF
stage 40-reject <<'EOF'
stage = testedit
match_sender = reject@example.org
verdict = reject
reply = 550 5.7.1 Go away
EOF
stage 50-hold <<'EOF'
stage = testedit
match_sender = hold@example.org
verdict = quarantine
EOF
mtd_conf "$T/rc.conf" "unix:$sock" </dev/null
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

# head SENDER QID - Lua: connect and send the envelope for SENDER (macros
# after HELO: libmilter forgets earlier ones at connect)
head() {
    cat <<EOF
conn = mt.connect("unix:$sock")
if conn == nil then error("cannot connect") end
mt.conninfo(conn, "client.test.example", "192.0.2.1")
mt.helo(conn, "client.test.example")
mt.macro(conn, SMFIC_MAIL, "i", "$2")
if mt.mailfrom(conn, "<$1>") ~= nil then error("mail") end
if mt.rcptto(conn, "<bob@example.net>") ~= nil then error("rcpt") end
EOF
}

{ head dup@example.org DUP1; cat <<'EOF'
mt.header(conn, "X-A", "one")
mt.header(conn, "Subject", "s")
mt.header(conn, "X-A", "two")
mt.header(conn, "X-A", "three")
mt.bodystring(conn, "body\r\n")
mt.eom(conn)
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("not continue") end
if not mt.eom_check(conn, MT_HDRDELETE, "X-A", 1) then error("no delete of X-A 1") end
if mt.eom_check(conn, MT_HDRDELETE, "X-A", 2) then error("delete of X-A 2") end
if mt.eom_check(conn, MT_HDRDELETE, "X-A", 3) then error("delete of X-A 3") end
if not mt.eom_check(conn, MT_HDRCHANGE, "X-A", " TWO") then error("no change to TWO") end
mt.disconnect(conn)
EOF
} | lua dup
check "dup: delete X-A 1, then change what is X-A 1 by then ($(cat "$T/dup.out"))" [ $? -eq 0 ]
check "dup: logged under the MTA's queue id" grep -q "DUP1: e: continue\|DUP1: dup: continue" "$T/rcd.log"

{ head dup2@example.org DUP2; cat <<'EOF'
mt.header(conn, "X-A", "one")
mt.header(conn, "X-A", "two")
mt.header(conn, "X-A", "three")
mt.bodystring(conn, "body\r\n")
mt.eom(conn)
if not mt.eom_check(conn, MT_HDRDELETE, "X-A", 1) then error("no delete of X-A 1") end
if mt.eom_check(conn, MT_HDRDELETE, "X-A", 2) then error("delete of X-A 2: index taken on the original") end
mt.disconnect(conn)
EOF
} | lua dup2
check "dup2: two deletes, both of X-A 1 at the MTA ($(cat "$T/dup2.out"))" [ $? -eq 0 ]

{ head ins@example.org INS1; cat <<'EOF'
mt.header(conn, "A", "1")
mt.header(conn, "B", "2")
mt.header(conn, "C", "3")
mt.bodystring(conn, "body\r\n")
mt.eom(conn)
if not mt.eom_check(conn, MT_HDRINSERT, "X-Ins", " inserted", 2) then error("no insert at index 2") end
mt.disconnect(conn)
EOF
} | lua ins
check "ins: smfi_insheader index 2 ($(cat "$T/ins.out"))" [ $? -eq 0 ]

{ head body@example.org BODY1; cat <<'EOF'
mt.header(conn, "From", "body@example.org")
mt.bodystring(conn, "old body\r\n")
mt.eom(conn)
local want = ""
local i = 0
while string.len(want) < 600 do
    want = want .. string.format("%08d relaychain milter body replacement test line 0123456789abcdef\r\n", i)
    i = i + 1
end
want = string.sub(want, 1, 600)
if not mt.eom_check(conn, MT_BODYCHANGE, want) then error("body differs") end
mt.disconnect(conn)
EOF
} | lua body
check "body: the replaced body byte for byte ($(cat "$T/body.out"))" [ $? -eq 0 ]

{ head reject@example.org REJ1; cat <<'EOF'
mt.header(conn, "From", "reject@example.org")
mt.bodystring(conn, "x\r\n")
mt.eom(conn)
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("no reply code") end
if not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Go away") then error("wrong reply") end
mt.disconnect(conn)
EOF
} | lua reject
check "reject: 550 5.7.1 Go away ($(cat "$T/reject.out"))" [ $? -eq 0 ]

{ head hold@example.org HOLD1; cat <<'EOF'
mt.header(conn, "From", "hold@example.org")
mt.bodystring(conn, "x\r\n")
mt.eom(conn)
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("not continue") end
if not mt.eom_check(conn, MT_QUARANTINE, "relaychain 50-hold: testedit") and
   not mt.eom_check(conn, MT_QUARANTINE, "relaychain hold: testedit") then error("no quarantine") end
mt.disconnect(conn)
EOF
} | lua hold
check "hold: smfi_quarantine with the reason ($(cat "$T/hold.out"))" [ $? -eq 0 ]
# One summary line per message, in amavisd-new's words, under the MTA's id
check "reject: summary line Blocked OTHER {Rejected}" \
    grep -Eq ": REJ1: Blocked OTHER \(reject\) \{Rejected\}, by=reject, client=client.test.example\[192.0.2.1\], from=<reject@example.org>, to=<bob@example.net>, size=[0-9]+$" "$T/rcd.log"
check "hold: summary line Blocked OTHER {Held}" \
    grep -Eq ": HOLD1: Blocked OTHER \(hold\) \{Held\}, by=hold, " "$T/rcd.log"

lua nomacro <<EOF
conn = mt.connect("unix:$sock")
mt.mailfrom(conn, "<nomacro@example.org>")
mt.rcptto(conn, "<bob@example.net>")
mt.header(conn, "From", "nomacro@example.org")
mt.bodystring(conn, "x\r\n")
mt.eom(conn)
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("not continue") end
mt.disconnect(conn)
EOF
check "nomacro: continue without macros ($(cat "$T/nomacro.out"))" [ $? -eq 0 ]
check "nomacro: logged as NOQUEUE" grep -q "NOQUEUE: milter: from=<nomacro@example.org>" "$T/rcd.log"

lua abort <<EOF
c1 = mt.connect("unix:$sock")
mt.mailfrom(c1, "<abort@example.org>")
mt.rcptto(c1, "<bob@example.net>")
mt.header(c1, "From", "abort@example.org")
mt.bodystring(c1, "first half of a body that never ends\r\n")
mt.disconnect(c1)
c2 = mt.connect("unix:$sock")
mt.conninfo(c2, "client.test.example", "192.0.2.1")
mt.helo(c2, "client.test.example")
mt.macro(c2, SMFIC_MAIL, "i", "ABORT2")
mt.mailfrom(c2, "<abort@example.org>")
mt.rcptto(c2, "<bob@example.net>")
mt.header(c2, "From", "abort@example.org")
mt.bodystring(c2, "half\r\n")
mt.abort(c2)
mt.macro(c2, SMFIC_MAIL, "i", "ABORT3")
mt.mailfrom(c2, "<again@example.org>")
mt.rcptto(c2, "<bob@example.net>")
mt.header(c2, "From", "again@example.org")
mt.bodystring(c2, "whole\r\n")
mt.eom(c2)
if mt.getreply(c2) ~= SMFIR_CONTINUE then error("not continue after abort") end
mt.disconnect(c2)
EOF
check "abort: dropped and aborted transactions, then a good one ($(cat "$T/abort.out"))" [ $? -eq 0 ]
check "abort: the SMFIC_ABORT is logged" grep -q "ABORT2: milter: transaction aborted by the MTA" "$T/rcd.log"
check "abort: the next message went through" grep -q "ABORT3: milter: continue" "$T/rcd.log"

cat >"$T/many.lua" <<EOF
local conns = {}
for i = 1, 50 do
    conns[i] = mt.connect("unix:$sock")
    if conns[i] == nil then error("connect " .. i) end
end
for i = 1, 50 do
    mt.conninfo(conns[i], "client.test.example", "192.0.2.1")
    mt.helo(conns[i], "client.test.example")
    mt.macro(conns[i], SMFIC_MAIL, "i", "MANY" .. i)
    mt.mailfrom(conns[i], "<many" .. i .. "@example.org>")
    mt.rcptto(conns[i], "<bob@example.net>")
    mt.header(conns[i], "From", "many@example.org")
end
for i = 1, 50 do
    mt.bodystring(conns[i], "body " .. i .. "\r\n")
    mt.eom(conns[i])
    if mt.getreply(conns[i]) ~= SMFIR_CONTINUE then error("message " .. i) end
end
for i = 1, 50 do
    mt.disconnect(conns[i])
end
EOF
pids=""
for n in 1 2 3 4; do
    timeout 120 miltertest -s "$T/many.lua" >"$T/many$n.out" 2>&1 &
    pids="$pids $!"
done
ok=0
for p in $pids; do
    wait "$p" && ok=$((ok + 1))
done
check "many: 4 x 50 concurrent connections all answered ($ok of 4 runs clean)" [ "$ok" -eq 4 ]
check "many: 200 messages logged" \
    sh -c "[ \$(grep -c 'MANY[0-9]*: milter: continue' '$T/rcd.log') -eq 200 ]"

mtd_stop rcd
if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"; tail -n 40 "$T/rcd.log"
fi
finish
