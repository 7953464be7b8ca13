#!/bin/sh
# queue_diskfull - a full spool gives 452/451, never 250, loses nothing,
# and the relay recovers by itself when space returns
#
# The spool is a 2 MiB tmpfs (mounted here, unmounted on exit), the next
# hop is down so nothing leaves.
#
# 1. queue_minfree = 0: 60 messages of 50 KB (3 MB) from 2 sessions. The
#    first ones fit and get 250; the rest must be refused at the end of
#    DATA (the client announces no SIZE, so MAIL cannot see it coming)
#    with 452 4.3.1 (or 451 4.3.0), and nothing else (no dropped
#    connection, no 250 without a file). relaychaind keeps running, tmp/
#    holds no leftovers, and "queue list" shows exactly the accepted
#    messages. When the next hop comes back, every accepted message
#    arrives, whole; with the space back, new messages are accepted
#    again.
# 2. queue_minfree = 1m: with a 1 MiB file filling the spool, MAIL gets
#    "452 4.3.1 Insufficient system storage" before the disk is full;
#    when the file is removed, MAIL gets 250 again.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 hop=$2
LOAD="$top_srcdir/tests/integration/queue_load.py"
COUNT="$top_srcdir/tests/integration/queue_count.py"

mkdir -p "$T/spool"
if ! mount -t tmpfs -o size=2m tmpfs "$T/spool" 2>"$T/mount.err"; then
    echo "queue_diskfull: cannot mount a tmpfs: $(cat "$T/mount.err")" >&2
    exit 1
fi
trap 'umount "$T/spool" 2>/dev/null; smtpd_cleanup' EXIT

rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
rcd_start rcd "$T/q.conf" "$port" || finish

# --- 1. the disk fills up
timeout 120 "$PY" "$LOAD" --port "$port" --prefix full --count 60 \
    --sessions 2 --size 50000 --accepted "$T/accepted" --no-size \
    --refusals "$T/refusals" >"$T/load1.out" 2>&1
acc=$(wc -l <"$T/accepted")
ref=$(wc -l <"$T/refusals")
check "some messages fit, the rest were refused ($(cat "$T/load1.out"))" \
    [ "$acc" -gt 10 ] && [ "$ref" -gt 10 ] && [ $((acc + ref)) -eq 60 ]
check "every refusal is 452 4.3.1 or 451 4.3.0 at the end of DATA" \
    sh -c "! grep -v -E '^full-[0-9]+ (452 4.3.1|451 4.3.0) ' '$T/refusals'"
check "relaychaind is still running" kill -0 "$(rcd_pid rcd)"
check "the write errors are logged" \
    grep -q 'queue file write error: .*No space left on device' "$T/rcd.log"
check "no leftovers in tmp/" [ -z "$(find "$T/spool/tmp" -type f)" ]
check "queue/ holds exactly the accepted messages" \
    [ "$(find "$T/spool/queue" -type f | wc -l)" -eq "$acc" ]
"$RC" queue -c "$T/q.conf" list >"$T/list.out" 2>&1
check "queue list counts them" \
    grep -q "^-- [0-9]* Kbytes in $acc Requests\.\$" "$T/list.out"

sink_start sink "$hop"
"$RC" queue -c "$T/q.conf" flush >"$T/flush.out" 2>&1
check "queue flush is taken" [ $? -eq 0 ]
check "the next hop is back: every accepted message arrives" \
    sink_wait sink "$acc" 30
sleep 1
"$PY" "$COUNT" "$T/sink" "$T/accepted" full >"$T/count.out" 2>&1
check "nothing lost, nothing broken: $(head -n 1 "$T/count.out")" \
    grep -q "^accepted=$acc delivered=$acc lost=0 duplicates=0 .*broken=0" "$T/count.out"
check "the space is given back" \
    sh -c "i=0; while [ -n \"\$(find '$T/spool/queue' -type f)\" ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done; [ -z \"\$(find '$T/spool/queue' -type f)\" ]"
timeout 60 "$PY" "$LOAD" --port "$port" --prefix again --count 5 \
    --size 50000 --accepted "$T/accepted2" >"$T/load2.out" 2>&1
check "with space again, new messages get 250 ($(cat "$T/load2.out"))" \
    grep -qx 'sent=5 accepted=5 refused=0' "$T/load2.out"
check "and arrive" sink_wait sink $((acc + 5)) 15
rcd_stop rcd

# --- 2. queue_minfree: 452 at MAIL before the disk is full
rcd_conf "$T/m.conf" "$port" "smtp:[127.0.0.1]:$hop" <<EOF
delivery = queue
queue_directory = $T/spool
queue_minfree = 1m
EOF
rcd_start rcdm "$T/m.conf" "$port" || finish
mail_reply() {
    printf 'expect\nsend EHLO c.example\nexpect\nsend MAIL FROM:<a@client.example> SIZE=1000\nexpect\nsend QUIT\nexpect\n' |
        chat "$port" | sed -n 's/^\(25[0-9] \|45[0-9] \)/\1/p' | sed -n 2p
}
got=$(mail_reply)
check "plenty of space: MAIL 250 (got '$got')" \
    [ "${got%% *}" = "250" ]
dd if=/dev/zero of="$T/spool/filler" bs=1024 count=1100 2>/dev/null
got=$(mail_reply)
check "under queue_minfree: MAIL 452 4.3.1 (got '$got')" \
    [ "$got" = "452 4.3.1 Insufficient system storage" ]
check "logged as NOQUEUE reject" \
    grep -q 'NOQUEUE: reject: MAIL from .*452 4.3.1 Insufficient system storage' "$T/rcdm.log"
rm -f "$T/spool/filler"
got=$(mail_reply)
check "space back: MAIL 250 again (got '$got')" [ "${got%% *}" = "250" ]
rcd_stop rcdm
finish
