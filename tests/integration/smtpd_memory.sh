#!/bin/sh
# smtpd_memory - smtpd_memory_limit: 452 4.3.1 past it, and a count that
# comes back to zero
#
# relaychaind relays to smtp-sink with smtpd_memory_limit = 1000000,
# message_size_limit = 600000 and smtpd_timeout = 5s. Clients (smtpchat.py)
# hold DATA phases open by stopping after part of their message:
#
#  1. A and B announce SIZE=480000 and hold their DATA (960000 counted):
#     C's DATA must get "452 4.3.1 Insufficient system resources" instead
#     of 354, and the log must say why. Then A ends its message (250) and
#     B hangs up in the middle of its own.
#  2. E announces SIZE=480000 and holds; F sends 560 KB without SIZE: its
#     DATA is taken (354) but the message passes the limit on the way, so
#     its end gets 452 4.3.1, not 250. Then E stalls until smtpd_timeout
#     cuts it off (421).
#  3. Every one of those ways out (delivered, refused, refused mid-way,
#     hung up, timed out) must have given back what it counted: G and H
#     announce SIZE=500000 each, exactly the limit together, and both must
#     get 354 and then 250. A single octet left counted from steps 1 and
#     2 would make H's DATA a 452.
#
# The sink must then have exactly A's, G's and H's messages.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
rcd_port=$1 sink_port=$2

sink_start sink "$sink_port"
rcd_conf "$T/rcd.conf" "$rcd_port" "smtp:[127.0.0.1]:$sink_port" <<EOF
smtpd_memory_limit = 1000000
message_size_limit = 600000
smtpd_timeout = 5s
EOF
rcd_start rcd "$T/rcd.conf" "$rcd_port" || finish

LINE=$(printf '%076d' 0)

# script NAME SIZE LINES END - a transaction that sends LINES lines of
# its message and then, at END: "wait" waits for $T/go.NAME and sends
# the end of data; "hangup" waits for it and closes; "stall" waits 7 s,
# past smtpd_timeout; "end" sends the end of data at once. $T/NAME.ready
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
        echo "exec i=0; while [ ! -f $T/go.$name ] && [ \$i -lt 40 ]; do sleep 0.1; i=\$((i + 1)); done"
        ;;
    stall) echo "sleep 7" ;;
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

# done NAME - wait for NAME's client to end
done_() {
    eval "wait \$pid_$1"
}

# reply NAME CODE - NAME's output has a reply line starting CODE
reply() {
    grep -q "^$2" "$T/$1.out"
}

# ------------------------------------------- 1: refused at DATA
start A 480000 10 wait
start B 480000 10 hangup
ready A
ready B
script C "" 0 refused >"$T/C.script"
chat "$rcd_port" <"$T/C.script" >"$T/C.out" 2>&1
check "C: DATA refused with 452 4.3.1 while A and B hold 960000 octets" \
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
start E 480000 10 stall
ready E
script F "" 7000 end >"$T/F.script"
chat "$rcd_port" <"$T/F.script" >"$T/F.out" 2>&1
check "F: DATA taken (354)" reply F "354"
check "F: 560 KB past the limit get 452 4.3.1 at the end of data" \
    reply F "452 4.3.1 Insufficient system resources"
check "F: not accepted" sh -c "! grep -q '^250 2.0.0' '$T/F.out'"
done_ E
check "E: cut off by smtpd_timeout (421)" reply E "421 4.4.2"

# ------------------------------- 3: everything counted was given back
start G 500000 1 wait
start H 500000 1 wait
ready G
ready H
check "G: DATA taken after all the above (354)" reply G "354"
check "H: DATA taken too: G and H fill the limit exactly (354)" reply H "354"
touch "$T/go.G" "$T/go.H"
done_ G
done_ H
check "G: delivered (250)" reply G "250 2.0.0"
check "H: delivered (250)" reply H "250 2.0.0"

sink_wait sink 3 10
check "the sink has A's, G's and H's messages, no more (got $(sink_count sink))" \
    [ "$(sink_count sink)" -eq 3 ]
for n in B C E F; do
    check "nothing of $n arrived" \
        sh -c "! grep -l 'Subject: $n\$' '$T'/sink/msg.* 2>/dev/null | grep -q ."
done

rcd_stop rcd
if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for n in A B C E F G H; do
        echo "--- $n"
        cat "$T/$n.out"
    done
    cat "$T/rcd.log"
fi
finish
