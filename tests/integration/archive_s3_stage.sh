#!/bin/sh
# archive_s3_stage - the archive stage on an s3:// store behind
# relaychaind, required = yes and required = no
#
# The S3 server is s3rver behind the SigV4 check (s3_lib.sh).
# 1. required = yes: messages with a Bcc recipient through relaychaind
#    land as objects (signed PUTs with Content-MD5), each archived once
#    with every recipient; relaychain archive verify (-c and --store
#    s3://...) reads the store back over list/get and passes; S3 down:
#    the message gets a 4xx at DATA, is not delivered (the client keeps
#    it), and is archived once when sent again after S3 is back.
# 2. required = no, S3 down (from after the start: with S3 down and an
#    empty spool nobody knows where the chain stands, and the stage
#    refuses to start rather than fork it): every message is accepted
#    (250) and delivered, its record waits in the spool, archive status
#    shows the backlog; a second process on the same spool (relaychain
#    filter) is refused, as it would fork the chain; relaychaind restarted with the backlog and S3
#    still down, more mail sent (the chain continues from the spooled
#    records); S3 back: the backlog drains, every message is in the
#    store exactly once, seqs 1..N without a gap or a repeat, verify
#    passes.
# 3. One object flipped in the store: verify fails (exit 1) and names
#    the record.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/s3_lib.sh"
s3_setup

set -- $(free_ports 2)
port=$1 sink_port=$2
RC="$top_builddir/relaychain"

openssl genpkey -algorithm ed25519 -out "$T/ckpt.pem" 2>/dev/null
chmod 600 "$T/ckpt.pem"
sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/queue
EOF

stage_conf() { # stage_conf PREFIX [LINES...]
    pre=$1
    shift
    {
        echo "stage = archive"
        echo "store = s3://archive/$pre"
        echo "archive_node = node1"
        echo "checkpoint_key = $T/ckpt.pem"
        echo "checkpoint_every = 4"
        echo "s3_endpoint = http://127.0.0.1:$px_port"
        echo "s3_credentials_file = $T/creds"
        for l in "$@"; do echo "$l"; done
    } >"$T/chain.d/10-archive.conf"
}

send() { # send TAG -> swaks output in $T/swaks-TAG.out, its status
    timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
        --from "sender@client.example" \
        --to "to@dest.example,bcc-$1@hidden.example" \
        --header "Subject: s3 archive $1" \
        --header "Message-Id: <s3-$1@client.example>" \
        --body "body of $1" >"$T/swaks-$1.out" 2>&1
}

# list_count ID - how often message <s3-ID@...> is in the store, with its
# Bcc recipient
list_count() {
    grep -c " message-id=<s3-$1@client.example> sender=sender@client.example rcpt=to@dest.example rcpt=bcc-$1@hidden.example " "$T/list"
}

# --- 1. required = yes
stage_conf sync
check "relaychain check loads the chain" \
    "$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1
rcd_start rcd "$T/rc.conf" "$port" || finish
for i in 1 2 3 4 5; do
    send "y$i"
    check "message y$i accepted" [ $? -eq 0 ]
done
check "the sink got 5 messages" sink_wait sink 5 15
n=$(grep -c '^ok PUT /archive/sync/node1/[0-9a-f]* md5=ok' "$T/proxy.log")
check "the records went up as signed PUTs with Content-MD5 ($n)" [ "$n" -ge 5 ]
kill "$S3_PID"
wait "$S3_PID" 2>/dev/null
send y6
check "S3 down, required = yes: 4xx at DATA ($(grep '^<\*\*' "$T/swaks-y6.out" | head -n 1))" \
    grep -q '^<\*\* *4[0-9][0-9]' "$T/swaks-y6.out"
sleep 1
check "and the message was not delivered" [ "$(sink_count sink)" -eq 5 ]
s3_start
send y6
check "sent again with S3 back: accepted" [ $? -eq 0 ]
check "the sink got 6 messages" sink_wait sink 6 15
rcd_stop rcd

"$RC" archive -c "$T/rc.conf" list >"$T/list" 2>"$T/list.err"
check "archive list reads the s3 store ($(head -n 1 "$T/list.err"))" [ $? -eq 0 ]
for i in 1 2 3 4 5 6; do
    check "message y$i archived once, Bcc recipient included" \
        [ "$(list_count "y$i")" -eq 1 ]
done
"$RC" archive -c "$T/rc.conf" verify >"$T/verify.out" 2>&1
check "verify -c passes: $(tail -n 1 "$T/verify.out")" [ $? -eq 0 ]
check "verify checked checkpoints" \
    grep -q ' [1-9][0-9]* checkpoints, 1 writer, ok$' "$T/verify.out"
"$RC" archive -c "$T/rc.conf" verify --store s3://archive/sync >"$T/verify2.out" 2>&1
check "verify --store s3://archive/sync passes" [ $? -eq 0 ]
mkdir -p "$T/other.d"
printf 'stage = archive\nstore = dir:%s/other\n' "$T" >"$T/other.d/10-archive.conf"
sed "s|^chain_directory = .*|chain_directory = $T/other.d|" "$T/rc.conf" >"$T/other.conf"
"$RC" archive -c "$T/other.conf" verify --store s3://archive/sync >"$T/verify3.out" 2>&1
check "verify --store s3:// of no stage fails (exit 2)" [ $? -eq 2 ]
check "saying where its keys come from" \
    grep -q 'keys come from the archive stage' "$T/verify3.out"

# purge on a store with Object Lock: refused, the store keeps everything
mkdir -p "$T/lock.d"
cat >"$T/lock.d/10-archive.conf" <<EOF
stage = archive
store = s3://archive/locked
archive_node = node1
s3_endpoint = http://127.0.0.1:$px_port
s3_credentials_file = $T/creds
s3_object_lock = yes
retention = 7y
EOF
sed "s|^chain_directory = .*|chain_directory = $T/lock.d|" "$T/rc.conf" >"$T/lock.conf"
"$RC" archive -c "$T/lock.conf" purge >"$T/purge.out" 2>&1
check "purge on an Object Lock store fails (exit 2)" [ $? -eq 2 ]
check "saying the store keeps every record: $(head -n 1 "$T/purge.out")" \
    grep -q 's3_object_lock = yes: every record is kept until its retain-until date' "$T/purge.out"
printf 'retention = 6m\n' >>"$T/lock.d/10-archive.conf"
sed -i '/^retention = 7y$/d' "$T/lock.d/10-archive.conf"
"$RC" check -c "$T/lock.conf" >"$T/lock-check.out" 2>&1
check "Object Lock with retention in months is refused with file:line" \
    grep -q '10-archive.conf:[0-9]*: retention: "6m" is not a number of days, weeks or years' "$T/lock-check.out"

# --- 3. one object flipped (s3rver keeps each object in a file)
obj=$(find "$T/s3data/archive/sync/node1" -type f -name '0000000000000003._S3rver_object' | head -n 1)
if [ -n "$obj" ]; then
    "$PY" - "$obj" <<'EOF'
import sys
p = sys.argv[1]
d = bytearray(open(p, "rb").read())
d[len(d) // 2] ^= 0x01
open(p, "wb").write(bytes(d))
EOF
    "$RC" archive -c "$T/rc.conf" verify >"$T/verify-flip.out" 2>&1
    check "a flipped object fails verify (exit 1)" [ $? -eq 1 ]
    check "and is named: $(grep -m 1 node1/0000000000000003 "$T/verify-flip.out")" \
        grep -q '^record node1/0000000000000003' "$T/verify-flip.out"
else
    fail "no s3rver object file for node1/0000000000000003: $(find "$T/s3data" -type f | head -n 3)"
fi

# --- 2. required = no, S3 down
stage_conf async "required = no" "spool_directory = $T/aspool"
kill "$S3_PID"
wait "$S3_PID" 2>/dev/null
# Where the chain stands is in neither the store nor the spool yet.
printf 'Subject: x\n\nx\n' |
    "$RC" filter -c "$T/rc.conf" --from a@client.example --rcpt b@dest.example \
        >/dev/null 2>"$T/nostart.err"
check "S3 down and an empty spool: the stage does not start, saying why" \
    grep -q 'where the chain stands is unknown until the store answers' "$T/nostart.err"
s3_start
rcd_start rcd "$T/rc.conf" "$port" || finish
kill "$S3_PID"
wait "$S3_PID" 2>/dev/null
for i in 1 2 3 4; do
    send "n$i"
    check "S3 down, required = no: message n$i accepted" [ $? -eq 0 ]
done
check "the sink got 10 messages" sink_wait sink 10 15
"$RC" archive -c "$T/rc.conf" status >"$T/status1.out" 2>&1
check "status shows the backlog: $(grep '^spool' "$T/status1.out")" \
    grep -q '^spool .*/aspool/s3-[0-9a-f]*: [4-9] records waiting, the oldest [0-9]* s old' "$T/status1.out"
check "and that the store cannot be read now" \
    grep -q '^store s3://archive/async: cannot be read now: .*503' "$T/status1.out"
printf 'Subject: second writer\n\nx\n' |
    "$RC" filter -c "$T/rc.conf" --from a@client.example --rcpt b@dest.example \
        >/dev/null 2>"$T/second.err"
check "a second process on the daemon's spool is refused: $(head -n 1 "$T/second.err")" \
    grep -q 'archive spool .*/aspool/s3-[0-9a-f]* is in use by another process' "$T/second.err"
check "the spool's thread was refused (503)" \
    wait_grep 'archive spool .*HTTP 503' "$T/rcd.log" 10
rcd_stop rcd
# Restarted with the backlog and S3 still down: the chain goes on from
# the spool.
rcd_start rcd "$T/rc.conf" "$port" || finish
check "relaychaind says it goes on from the spool" \
    grep -q 'writer node1 goes on from its spool, at seq [1-9]' "$T/rcd.log"
for i in 5 6 7; do
    send "n$i"
    check "after the restart: message n$i accepted" [ $? -eq 0 ]
done
check "the sink got 13 messages" sink_wait sink 13 15
s3_start
i=0
while [ $i -lt 60 ]; do
    "$RC" archive -c "$T/rc.conf" status >"$T/status2.out" 2>&1
    grep -q '^spool .*: 0 records waiting' "$T/status2.out" && break
    sleep 1
    i=$((i + 1))
done
check "the backlog drained: $(grep '^spool' "$T/status2.out")" \
    grep -q '^spool .*: 0 records waiting' "$T/status2.out"
rcd_stop rcd
stage_conf async "required = no" "spool_directory = $T/aspool"
"$RC" archive -c "$T/rc.conf" list >"$T/list" 2>"$T/list.err"
check "archive list reads the async store" [ $? -eq 0 ]
for i in 1 2 3 4 5 6 7; do
    check "message n$i in the store exactly once, Bcc included" \
        [ "$(list_count "n$i")" -eq 1 ]
done
cut -d' ' -f1 "$T/list" | grep '^node1/' | sort >"$T/names"
n=$(wc -l <"$T/names")
last=$(tail -n 1 "$T/names" | cut -d/ -f2)
check "seqs 1..$n, no gap and none twice (last $last)" \
    [ "$(sort -u "$T/names" | wc -l)" -eq "$n" -a "$((0x$last))" -eq "$n" ]
"$RC" archive -c "$T/rc.conf" verify >"$T/verify4.out" 2>&1
check "verify passes after the drain: $(tail -n 1 "$T/verify4.out")" [ $? -eq 0 ]

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- rcd.log (tail)"; tail -n 30 "$T/rcd.log"
    echo "--- proxy.log (tail)"; tail -n 10 "$T/proxy.log"
    for f in "$T"/verify*.out "$T"/status*.out; do
        echo "--- $f"; tail -n 5 "$f"
    done
fi
finish
