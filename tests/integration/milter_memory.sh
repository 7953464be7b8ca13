#!/bin/sh
# milter_memory - smtpd_memory_limit in milter mode, driven by miltertest
#
# relaychaind as a milter (one stage, so the body is asked for) with
# smtpd_memory_limit = 1000000. Message data is counted 64 KiB at a
# time, so a body of 600,000 octets counts 655,360 and one of 320,000
# counts 327,680. One miltertest script plays the MTA with several
# connections at once:
#
#  1. A holds a 600,000-octet body (no end of message yet); B sends one
#     too, passes the limit on the way and its end of message gets a
#     tempfail with "452 4.3.1 Insufficient system resources". A then
#     ends and is passed on (continue).
#  2. C drops its connection in the middle of a 600,000-octet body, D
#     gets an SMFIC_ABORT there, and E fails like B: each must give back
#     what it counted.
#  3. G holds 600,000 octets and H sends 320,000: 983,040 counted, under
#     the limit, so both must be passed on. One step of 64 KiB left
#     counted by anything before would make H a 452.
#
# A second relaychaind (no limit) takes one 18 MB message: its VmHWM may
# grow by at most 1.5 times that, since the body chunks gathered are
# the message the chain reads, not copied into it (2 times and more
# before). Not judged under AddressSanitizer, whose quarantine keeps
# freed memory resident.
. "$top_srcdir/tests/integration/milter_lib.sh"

sock=$T/milter.sock
mkdir -p "$T/chain.d"
cat >"$T/chain.d/10-mark.conf" <<'EOF'
stage = testedit
header_insert = 1:X-Mark:seen
EOF
mtd_conf "$T/rc.conf" "unix:$sock" <<'EOF'
smtpd_memory_limit = 1000000
message_size_limit = 2m
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

lua mem <<EOF
local line = string.rep("x", 78) .. "\r\n"
local chunk = string.rep(line, 750)

-- open NAME: a connection up to the end of the header
local function open(name)
    local c = mt.connect("unix:$sock")
    if c == nil then error("cannot connect " .. name) end
    mt.conninfo(c, "client.test.example", "192.0.2.1")
    mt.helo(c, "client.test.example")
    mt.macro(c, SMFIC_MAIL, "i", name)
    if mt.mailfrom(c, "<" .. name .. "@example.org>") ~= nil then error("mail " .. name) end
    if mt.rcptto(c, "<bob@example.net>") ~= nil then error("rcpt " .. name) end
    mt.header(c, "From", name .. "@example.org")
    return c
end

-- body C N: N chunks of 60,000 octets
local function body(c, n)
    for i = 1, n do mt.bodystring(c, chunk) end
end

local function passed(c, name)
    mt.eom(c)
    if mt.getreply(c) ~= SMFIR_CONTINUE then error(name .. ": not passed on") end
end

local function refused(c, name)
    mt.eom(c)
    if mt.getreply(c) ~= SMFIR_REPLYCODE or
       not mt.eom_check(c, MT_SMTPREPLY, "452", "4.3.1",
                        "Insufficient system resources (id MEM" .. name .. ")") then
        error(name .. ": no 452 4.3.1")
    end
end

-- 1
local a = open("MEMA")
body(a, 10)
local b = open("MEMB")
body(b, 10)
refused(b, "B")
passed(a, "A")
mt.disconnect(a)
mt.disconnect(b)

-- 2
local c = open("MEMC")
body(c, 10)
mt.disconnect(c)
local d = open("MEMD")
body(d, 10)
mt.abort(d)
mt.disconnect(d)
local g0 = open("MEME0")
body(g0, 10)
local e = open("MEME")
body(e, 10)
refused(e, "E")
passed(g0, "E0")
mt.disconnect(e)
mt.disconnect(g0)

-- 3
local g = open("MEMG")
body(g, 10)
local h = open("MEMH")
body(h, 5)
mt.bodystring(h, string.rep(line, 250))
passed(h, "H")
passed(g, "G")
mt.disconnect(g)
mt.disconnect(h)
print("all as expected")
EOF
check "miltertest: refused past the limit, passed after ($(cat "$T/mem.out"))" \
    grep -q "all as expected" "$T/mem.out"
check "the log says why B was refused" \
    grep -q "MEMB: milter-tempfail: END-OF-MESSAGE: over smtpd_memory_limit" \
    "$T/rcd.log"
for n in MEMA MEME0 MEMG MEMH; do
    check "$n: passed on" grep -q "$n: milter: continue" "$T/rcd.log"
done

# ----------------------------------------------- the cost of one message
big=$T/big.sock
mkdir -p "$T/big.d"
cp "$T/chain.d/10-mark.conf" "$T/big.d/"
{
    echo "milter_listen = unix:$big"
    echo "chain_directory = $T/big.d"
    echo "quarantine_directory = $T/quarantine"
    echo "syslog_name = relaychaind"
    echo "message_size_limit = 20m"
} >"$T/big.conf"
mtd_start big "$T/big.conf" "unix:$big" || finish
pid=$(cat "$T/big.pid")
idle=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
lua big <<EOF
local chunk = string.rep(string.rep("z", 78) .. "\r\n", 750)
local c = mt.connect("unix:$big")
if c == nil then error("cannot connect") end
mt.conninfo(c, "client.test.example", "192.0.2.1")
mt.helo(c, "client.test.example")
mt.macro(c, SMFIC_MAIL, "i", "BIG1")
if mt.mailfrom(c, "<big@example.org>") ~= nil then error("mail") end
if mt.rcptto(c, "<bob@example.net>") ~= nil then error("rcpt") end
mt.header(c, "From", "big@example.org")
for i = 1, 300 do mt.bodystring(c, chunk) end
mt.eom(c)
if mt.getreply(c) ~= SMFIR_CONTINUE then error("not passed on") end
mt.disconnect(c)
print("passed on")
EOF
check "big: 18 MB passed on ($(cat "$T/big.out"))" grep -q "passed on" "$T/big.out"
hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
ratio=$(awk -v a="$hwm" -v b="$idle" 'BEGIN { printf "%.2f", (a - b) / 17578 }')
echo "big: VmRSS idle $idle kB, VmHWM $hwm kB, 17578 kB message: $ratio"
if ldd "$RCDT" 2>/dev/null | grep -q libasan; then
    echo "big: AddressSanitizer build, peak not judged"
else
    check "big: peak memory $ratio times the message, under 1.5" \
        awk -v r="$ratio" 'BEGIN { exit !(r < 1.5) }'
fi
mtd_stop big

mtd_stop rcd
if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"
    tail -n 40 "$T/rcd.log"
fi
finish
