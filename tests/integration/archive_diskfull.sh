#!/bin/sh
# archive_diskfull - a full archive store tempfails mail, never 250 for a
# message without its record, and mail flows again when space returns
#
# The store is a 1 MiB tmpfs (mounted here, unmounted on exit); the queue
# is elsewhere. 30 messages of ~60 KB that do not compress (random
# base64) go through relaychaind (delivery = queue, an archive stage,
# required = yes): the first ones are archived and answered 250, the
# rest get "452 4.3.1 Insufficient system storage" from the archive
# stage once the store is full, and the
# log says why (No space left on device). Every message answered 250 is
# in the archive, and the store verifies: a write cut short by the full
# disk leaves nothing behind. With the tmpfs grown, the next message is
# accepted and archived again, without a restart.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2
RC="$top_builddir/relaychain"

mkdir -p "$T/store"
if ! mount -t tmpfs -o size=1m tmpfs "$T/store" 2>"$T/mount.err"; then
    echo "archive_diskfull: cannot mount a tmpfs: $(cat "$T/mount.err")" >&2
    exit 1
fi
trap 'umount "$T/store" 2>/dev/null; smtpd_cleanup' EXIT

sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/spool
EOF
cat >"$T/chain.d/10-archive.conf" <<EOF
stage = archive
store = dir:$T/store
archive_node = node1
EOF
rcd_start rcd "$T/rc.conf" "$port" || finish

: >"$T/accepted"
: >"$T/refused"
i=1
while [ $i -le 30 ]; do
    { echo "body $i"; openssl rand -base64 45000; } >"$T/body"
    timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
        --from sender@client.example --to rcpt@dest.example \
        --header "Message-Id: <full-$i@client.example>" \
        --body "$T/body" >"$T/swaks.out" 2>&1
    if [ $? -eq 0 ]; then
        echo "full-$i" >>"$T/accepted"
    elif grep -q '^<\*\* *452 4.3.1 ' "$T/swaks.out"; then
        echo "full-$i" >>"$T/refused"
    else
        fail "message $i: neither 250 nor 452 4.3.1: $(grep '^<\*\*' "$T/swaks.out" | head -n 1)"
    fi
    i=$((i + 1))
done
acc=$(wc -l <"$T/accepted")
ref=$(wc -l <"$T/refused")
echo "archive_diskfull: $acc accepted, $ref refused with 452"
check "the first messages were accepted ($acc)" [ "$acc" -ge 5 ]
check "the store filled up: the rest got 452 4.3.1 ($ref)" [ "$ref" -ge 5 ]
check "the log says why" \
    grep -q 'archive: tempfail, not archived (archive store dir:.*: write: No space left on device)' "$T/rcd.log"
check "relaychaind still runs" kill -0 "$(rcd_pid rcd)"

"$RC" archive list --store "dir:$T/store" >"$T/list" 2>"$T/list.err"
check "the store reads back ($(head -n 1 "$T/list.err"))" [ $? -eq 0 ]
missing=0
while read -r id; do
    grep -q " message-id=<$id@client.example> " "$T/list" || missing=$((missing + 1))
done <"$T/accepted"
check "every message answered 250 is archived ($missing missing)" [ "$missing" -eq 0 ]
"$RC" archive verify --store "dir:$T/store" >"$T/verify.out" 2>&1
check "the full store verifies: $(head -n 1 "$T/verify.out")" [ $? -eq 0 ]

# Space returns: mail flows again, without a restart.
mount -o remount,size=4m "$T/store"
{ echo "after"; openssl rand -base64 45000; } >"$T/body"
timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
    --from sender@client.example --to rcpt@dest.example \
    --header "Message-Id: <after@client.example>" \
    --body "$T/body" >"$T/swaks-after.out" 2>&1
check "with space back, a message is accepted" [ $? -eq 0 ]
"$RC" archive list --store "dir:$T/store" >"$T/list2" 2>&1
check "and archived" grep -q ' message-id=<after@client.example> ' "$T/list2"
rcd_stop rcd
"$RC" archive verify --store "dir:$T/store" >"$T/verify2.out" 2>&1
check "the store verifies at the end: $(head -n 1 "$T/verify2.out")" [ $? -eq 0 ]
[ "$failures" -eq 0 ] || grep -i "archive" "$T/rcd.log" | grep -v record= | tail -n 5
finish
