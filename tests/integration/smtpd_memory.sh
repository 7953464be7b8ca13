#!/bin/sh
# smtpd_memory - smtpd_memory_limit: 452 4.3.1 past it, and a count that
# comes back to zero
#
# relaychaind relays to smtp-sink with smtpd_memory_limit = 950000,
# message_size_limit = 600000 and smtpd_timeout = 10s. A message is
# counted 64 KiB at a time as it arrives, so a client that sent 440,000
# octets and holds its DATA open (smtpchat.py stops before the final
# ".") counts 458,752. Clients:
#
#  1. A holds 440,000 octets. C1 announces SIZE=600000: it does not fit
#     in what is left, so its DATA gets "452 4.3.1 Insufficient system
#     resources" at once. B holds 440,000 too (917,504 counted): C's DATA
#     without SIZE gets the 452, since even a first 64 KiB does not fit,
#     and the log says why. Then A ends its message (250) and B hangs up
#     in the middle of its own.
#  2. E holds 440,000; F sends 560,000 without SIZE: its DATA is taken
#     (354) but it passes the limit on the way, so its end gets 452 4.3.1,
#     not 250. Then E stalls until smtpd_timeout cuts it off (421).
#  3. An announced SIZE holds nothing: P1 and P2 announce SIZE=600000,
#     get 354 and send nothing yet; Q announces SIZE=600000 as well and
#     must get 354 and 250 for its 500,000 octets (counting the promises
#     would have refused P2 already). Then P1 and P2 end theirs: 250.
#  4. Every way out above (delivered, refused, refused mid-way, hung up,
#     timed out) must have given back what it counted: G and H hold
#     440,000 each (917,504, within 32,496 of the limit) and both must
#     get 250. One step of 64 KiB left counted would make H a 452.
#
# The sink must then have exactly A's, Q's, P1's, P2's, G's and H's
# messages.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
rcd_port=$1 sink_port=$2

sink_start sink "$sink_port"
rcd_conf "$T/rcd.conf" "$rcd_port" "smtp:[127.0.0.1]:$sink_port" <<EOF
smtpd_memory_limit = 950000
message_size_limit = 600000
smtpd_timeout = 10s
EOF
rcd_start rcd "$T/rcd.conf" "$rcd_port" || finish

LINE=$(printf '%076d' 0)

# script NAME SIZE LINES END - a transaction that sends LINES lines of
# its message and then, at END: "wait" waits for $T/go.NAME (8 s at
# most) and sends the end of data; "hangup" waits for it and closes;
# "stall" waits 12 s, past smtpd_timeout; "end" sends the end of data at
# once; "refused" expects DATA to be refused and quits. $T/NAME.ready
# appears when the lines are sent. SIZE empty: no SIZE parameter.
script() {
    local name size lines end
    name=$1 size=$2 lines=$3 end=$4
    cat <<EOF
expect
send EHLO $name.client.example
expect
send MAIL FROM:<$name@client.example>${size:+ SIZE=$size}
expect
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
EOF
    # After a refused DATA there is no message to send.
    [ "$end" = refused ] && {
        echo "send QUIT"
        echo "expect"
        return
    }
    cat <<EOF
send Subject: $name
send
repeat $lines $LINE\r\n
exec touch $T/$name.ready
EOF
    case $end in
    wait | hangup)
        echo "exec i=0; while [ ! -f $T/go.$name ] && [ \$i -lt 80 ]; do sleep 0.1; i=\$((i + 1)); done"
        ;;
    stall) echo "sleep 12" ;;
    esac
    case $end in
    hangup) return ;;
    stall)
        echo "expect"
        return
        ;;
    esac
    cat <<EOF
send .
expect
send QUIT
expect
EOF
}

# start NAME SIZE LINES END - run script in the background
start() {
    script "$@" >"$T/$1.script"
    chat "$rcd_port" <"$T/$1.script" >"$T/$1.out" 2>&1 &
    eval "pid_$1=$!"
}

# ready NAME - wait (bounded) until NAME has sent its lines
ready() {
    local i
    i=0
    while [ ! -f "$T/$1.ready" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -f "$T/$1.ready" ] || fail "$1 did not get to send its message"
}

# settled - wait (bounded) until relaychaind has read all that was sent:
# its read count (rchar in /proc/PID/io, socket reads included) stays
# the same for 0.3 s, so the octets the holders sent are counted.
settled() {
    local pid i a b
    pid=$(rcd_pid rcd)
    i=0
    b=-1
    a=$(sed -n 's/^rchar: //p' "/proc/$pid/io")
    while [ "$a" != "$b" ] && [ $i -lt 20 ]; do
        b=$a
        sleep 0.3
        a=$(sed -n 's/^rchar: //p' "/proc/$pid/io")
        i=$((i + 1))
    done
}

# done NAME - wait for NAME's client to end
done_() {
    eval "wait \$pid_$1"
}

# reply NAME CODE - NAME's output has a reply line starting CODE
reply() {
    grep -q "^$2" "$T/$1.out"
}

# ------------------------------------------- 1: refused at DATA
start A "" 5500 wait
ready A
settled
script C1 600000 0 refused >"$T/C1.script"
chat "$rcd_port" <"$T/C1.script" >"$T/C1.out" 2>&1
check "C1: SIZE=600000 does not fit beside A: DATA gets 452 4.3.1" \
    reply C1 "452 4.3.1 Insufficient system resources"
start B "" 5500 hangup
ready B
settled
script C "" 0 refused >"$T/C.script"
chat "$rcd_port" <"$T/C.script" >"$T/C.out" 2>&1
check "C: DATA refused with 452 4.3.1 while A and B hold 917,504 octets" \
    reply C "452 4.3.1 Insufficient system resources"
check "C: no 354 for the refused DATA" sh -c "! grep -q '^354' '$T/C.out'"
check "the log names the refused DATA" \
    grep -q "reject: DATA from .*452 4.3.1 Insufficient system resources" \
    "$T/rcd.log"
touch "$T/go.A" "$T/go.B"
done_ A
done_ B
check "A: its held message is delivered (250)" reply A "250 2.0.0"

# ------------------------------------- 2: refused in the middle of DATA
start E "" 5500 stall
ready E
settled
script F "" 7000 end >"$T/F.script"
chat "$rcd_port" <"$T/F.script" >"$T/F.out" 2>&1
check "F: DATA taken (354)" reply F "354"
check "F: 560,000 octets past the limit get 452 4.3.1 at the end of data" \
    reply F "452 4.3.1 Insufficient system resources"
check "F: not accepted" sh -c "! grep -q '^250 2.0.0' '$T/F.out'"
done_ E
check "E: cut off by smtpd_timeout (421)" reply E "421 4.4.2"

# ------------------------------------ 3: an announced SIZE holds nothing
start P1 600000 0 wait
start P2 600000 0 wait
ready P1
ready P2
settled
script Q 600000 6250 end >"$T/Q.script"
chat "$rcd_port" <"$T/Q.script" >"$T/Q.out" 2>&1
check "P2: DATA taken beside P1 though both announced 600000 (354)" \
    reply P2 "354"
check "Q: DATA taken and its 500,000 octets delivered (250)" \
    reply Q "250 2.0.0"
touch "$T/go.P1" "$T/go.P2"
done_ P1
done_ P2
check "P1: delivered (250)" reply P1 "250 2.0.0"
check "P2: delivered (250)" reply P2 "250 2.0.0"

# ------------------------------- 4: everything counted was given back
start G "" 5500 wait
ready G
start H "" 5500 wait
ready H
check "G: DATA taken after all the above (354)" reply G "354"
check "H: DATA taken too (354)" reply H "354"
touch "$T/go.G" "$T/go.H"
done_ G
done_ H
check "G: delivered (250)" reply G "250 2.0.0"
check "H: delivered, G and H fill the limit to within a step (250)" \
    reply H "250 2.0.0"

sink_wait sink 6 10
check "the sink has the 6 messages delivered, no more (got $(sink_count sink))" \
    [ "$(sink_count sink)" -eq 6 ]
for n in B C C1 E F; do
    check "nothing of $n arrived" \
        sh -c "! grep -l 'Subject: $n\$' '$T'/sink/msg.* 2>/dev/null | grep -q ."
done

rcd_stop rcd
if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for n in A B C1 C E F P1 P2 Q G H; do
        echo "--- $n"
        cat "$T/$n.out"
    done
    cat "$T/rcd.log"
fi
finish
