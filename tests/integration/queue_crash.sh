#!/bin/sh
# queue_crash - kill -9 at any moment loses nothing that was answered 250
# and delivers no half message
#
# 1. Right after the 250 (next hop down): kill -9, restart with the next
#    hop up: the message arrives, once.
# 2. During DATA: the client is half-way through its message when
#    relaychaind is killed; after the restart nothing of it is delivered.
#    Before that restart, three damaged files are planted: a queue file
#    cut in half in queue/ and a complete one in tmp/ (both removed at
#    start-up, logged), and one in queue/ with a flipped octet (its end
#    record is there, its checksum is wrong: moved to corrupt/ when read,
#    never delivered).
# 3. During delivery: the next hop (smtp-sink -w 3) is slow to answer
#    DATA when relaychaind is killed; after the restart the message
#    arrives (at least once).
# 4. Under load: queue_load.py sends from 4 sessions, retrying what was
#    not acknowledged, while relaychaind is killed with SIGKILL at 50
#    random moments and restarted each time. When the load is over and
#    the queue has drained, every acknowledged message must have arrived
#    whole (lost=0, broken=0); duplicates are counted and printed.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 hop=$2
LOAD="$top_srcdir/tests/integration/queue_load.py"
COUNT="$top_srcdir/tests/integration/queue_count.py"
KILLS=${QUEUE_CRASH_KILLS:-50}

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF

# hop_start NAME [smtp-sink options] - a sink on the next hop's port
hop_start() {
    name=$1
    shift
    mkdir -p "$T/$name"
    chown nobody "$T/$name"
    smtp-sink -u nobody -4 "$@" -d "$T/$name/msg." "127.0.0.1:$hop" 256 \
        >>"$T/$name.log" 2>&1 &
    HOP_PID=$!
    smtpd_track "$HOP_PID"
    wait_listen "$hop" || fail "smtp-sink $name does not listen on $hop"
}

hop_stop() {
    kill "$HOP_PID" 2>/dev/null
    wait "$HOP_PID" 2>/dev/null
    i=0
    while [ -n "$(ss -Hltn "sport = :$hop" 2>/dev/null)" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}

kill9() {
    pid=$(rcd_pid rcd)
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# --- 1. right after the 250
rcd_start rcd "$T/q.conf" "$port" || finish
timeout 60 "$PY" "$LOAD" --port "$port" --prefix after --count 1 \
    --accepted "$T/acc-after" >"$T/load1.out" 2>&1
kill9
check "1: answered 250" grep -qx 'sent=1 accepted=1 refused=0' "$T/load1.out"
sample=$(find "$T/spool/queue" -type f | head -n 1)
check "1: the queue file survived the kill" [ -n "$sample" ]
cp "$sample" "$T/sample"
hop_start sink1
rcd_start rcd "$T/q.conf" "$port" || finish
check "1: delivered after the restart" sink_wait sink1 1 15
sleep 1.5
"$PY" "$COUNT" "$T/sink1" "$T/acc-after" after >"$T/count1.out" 2>&1
check "1: exactly once: $(head -n 1 "$T/count1.out")" \
    grep -qx 'accepted=1 delivered=1 lost=0 duplicates=0 unacknowledged=0 broken=0' "$T/count1.out"

# --- 2. during DATA, and damaged files
chat "$port" >"$T/data.out" <<EOF
expect
send EHLO client.test.example
expect
send MAIL FROM:<sender@client.example>
expect
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
raw Subject: half\r\nX-Test-Id: half-0\r\n\r\nthe first half of the body\r\n
sleep 0.3
exec kill -KILL $(rcd_pid rcd)
eof
EOF
wait "$(rcd_pid rcd)" 2>/dev/null
check "2: the session ended at the kill" grep -q '^#EOF' "$T/data.out"
size=$(wc -c <"$T/sample")
head -c $((size / 2)) "$T/sample" >"$T/spool/queue/TORN1"
cp "$T/sample" "$T/spool/tmp/TORN2"
"$PY" - "$T/sample" "$T/spool/queue/BADSUM" <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
at = data.index(b"X-Test-Id")
data[at] ^= 0x20
open(sys.argv[2], "wb").write(data)
EOF
before=$(sink_count sink1)
rcd_start rcd "$T/q.conf" "$port" || finish
check "2: the torn queue file is removed at start-up" \
    wait_grep 'TORN1: removed a torn queue file' "$T/rcd.log" 5
check "2: the unacknowledged tmp/ file is removed at start-up" \
    grep -q 'TORN2: removed an incomplete queue file' "$T/rcd.log"
check "2: the file with a bad checksum goes to corrupt/" \
    wait_grep 'BADSUM: corrupt queue file moved to .*checksum mismatch' "$T/rcd.log" 5
check "2: corrupt/BADSUM is kept" [ -f "$T/spool/corrupt/BADSUM" ]
sleep 1.5
check "2: nothing of the half message, nothing damaged delivered" \
    [ "$(sink_count sink1)" -eq "$before" ]
check "2: queue/ and tmp/ are empty" \
    [ -z "$(find "$T/spool/queue" "$T/spool/tmp" -type f)" ]

# --- 3. during delivery
hop_stop
hop_start slow -w 3
timeout 60 "$PY" "$LOAD" --port "$port" --prefix during --count 1 \
    --accepted "$T/acc-during" >"$T/load3.out" 2>&1
check "3: answered 250" grep -qx 'sent=1 accepted=1 refused=0' "$T/load3.out"
sleep 1
kill9
hop_stop
hop_start sink3
rcd_start rcd "$T/q.conf" "$port" || finish
check "3: delivered after the restart" sink_wait sink3 1 15
sleep 1.5
"$PY" "$COUNT" "$T/sink3" "$T/acc-during" during >"$T/count3.out" 2>&1
check "3: at least once, whole: $(head -n 1 "$T/count3.out")" \
    grep -q 'accepted=1 delivered=1 lost=0 .* broken=0' "$T/count3.out"

# --- 4. 50 random kills under load
: >"$T/acc-load"
timeout 300 "$PY" "$LOAD" --port "$port" --prefix load --count 1000000 \
    --sessions 4 --size 3000 --duration 20 --retry-until 120 \
    --accepted "$T/acc-load" >"$T/load4.out" 2>&1 &
load=$!
smtpd_track "$load"
n=0
while [ $n -lt "$KILLS" ]; do
    sleep "$(awk -v s="$n$$" 'BEGIN { srand(s); printf "%.2f", 0.05 + rand() * 0.4 }')"
    kill9
    rcd_start rcd "$T/q.conf" "$port" || break
    n=$((n + 1))
done
check "4: $KILLS kill -9 and restarts" [ "$n" -eq "$KILLS" ]
wait "$load"
check "4: the load ran ($(cat "$T/load4.out"))" \
    grep -q '^sent=[1-9][0-9]* accepted=[1-9]' "$T/load4.out"
i=0
while [ -n "$(find "$T/spool/queue" -type f)" ] && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "4: the queue drained" [ -z "$(find "$T/spool/queue" -type f)" ]
sleep 1
"$PY" "$COUNT" "$T/sink3" "$T/acc-load" load >"$T/count4.out" 2>"$T/count4.err"
echo "queue_crash: after $n kills: $(cat "$T/count4.out")"
check "4: accepted = delivered, nothing lost or broken: $(cat "$T/count4.out")" \
    grep -q 'lost=0 duplicates=[0-9]* unacknowledged=[0-9]* broken=0' "$T/count4.out"
check "4: every acknowledged message arrived" \
    sh -c "set -- \$(sed 's/[a-z]*=//g' '$T/count4.out'); [ \"\$1\" -eq \"\$2\" ] || [ \"\$1\" -le \"\$2\" ]"
rcd_stop rcd
finish
