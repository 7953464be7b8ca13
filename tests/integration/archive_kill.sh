#!/bin/sh
# archive_kill - kill -9 under load never leaves an acknowledged message
# out of the archive, twice in it, or a record verify calls corrupt
#
# relaychaind (delivery = queue) archives every message (dir: store,
# checkpoints every 10 records, small segments so they roll during the
# run) while queue_load.py sends numbered messages from 4 sessions
# without retrying, and relaychaind is killed with SIGKILL at 50 random
# moments and restarted each time. A kill may land between the record's
# write and its fdatasync, mid-write, or between the record and the 250:
# afterwards every message the client saw 250 for must be in the archive
# exactly once, and after a last clean start and stop, verify passes
# (a torn tail is cut off at the next start, never counted as a record).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2
RC="$top_builddir/relaychain"
LOAD="$top_srcdir/tests/integration/queue_load.py"
KILLS=${ARCHIVE_KILLS:-50}

openssl genpkey -algorithm ed25519 -out "$T/ckpt.pem" 2>/dev/null
chmod 600 "$T/ckpt.pem"
sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/spool
EOF
cat >"$T/chain.d/10-archive.conf" <<EOF
stage = archive
store = dir:$T/store
archive_node = node1
checkpoint_key = $T/ckpt.pem
checkpoint_every = 10
dir_segment_size = 256k
EOF

kill9() {
    pid=$(rcd_pid rcd)
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

rcd_start rcd "$T/rc.conf" "$port" || finish
: >"$T/accepted"
timeout 300 "$PY" "$LOAD" --port "$port" --prefix kill --count 1000000 \
    --sessions 4 --size 3000 --duration 25 \
    --accepted "$T/accepted" >"$T/load.out" 2>&1 &
load=$!
smtpd_track "$load"
n=0
while [ $n -lt "$KILLS" ]; do
    sleep "$(awk -v s="$n$$" 'BEGIN { srand(s); printf "%.2f", 0.05 + rand() * 0.35 }')"
    kill9
    rcd_start rcd "$T/rc.conf" "$port" || break
    n=$((n + 1))
done
check "$KILLS kill -9 and restarts" [ "$n" -eq "$KILLS" ]
wait "$load"
check "the load ran ($(cat "$T/load.out"))" \
    grep -q '^sent=[1-9][0-9]* accepted=[1-9]' "$T/load.out"
# A last clean stop: its checkpoint covers the tail.
rcd_stop rcd
"$RC" archive list --store "dir:$T/store" >"$T/list" 2>"$T/list.err"
check "archive list reads every record ($(head -n 1 "$T/list.err"))" [ $? -eq 0 ]
"$PY" - "$T/accepted" "$T/list" >"$T/count.out" <<'EOF'
import re, sys
accepted = [l.strip() for l in open(sys.argv[1]) if l.strip()]
seen = {}
for line in open(sys.argv[2]):
    m = re.search(r" message-id=<(kill-\d+)@client\.example> ", line)
    if m:
        seen[m.group(1)] = seen.get(m.group(1), 0) + 1
missing = [a for a in accepted if seen.get(a, 0) == 0]
twice = [a for a in accepted if seen.get(a, 0) > 1]
extra = [s for s in seen if s not in set(accepted)]
print("accepted=%d archived=%d missing=%d twice=%d unacknowledged=%d" % (
    len(accepted), len(seen), len(missing), len(twice), len(extra)))
for a in missing[:5] + twice[:5]:
    print(a)
EOF
echo "archive_kill: after $n kills: $(head -n 1 "$T/count.out")"
check "every acknowledged message archived exactly once: $(head -n 1 "$T/count.out")" \
    grep -q 'missing=0 twice=0 ' "$T/count.out"
"$RC" archive verify --store "dir:$T/store" --key "$T/ckpt.pem" >"$T/verify.out" 2>&1
check "verify passes after the kills: $(grep -m 1 -v '^verified' "$T/verify.out")" [ $? -eq 0 ]
check "segments rolled during the run" [ -f "$T/store/node1/segment-000002" ]
if [ "$failures" -ne 0 ]; then
    head -n 20 "$T/count.out" "$T/verify.out"
    grep -i 'archive' "$T/rcd.log" | grep -v 'record=' | tail -n 20
fi
finish
