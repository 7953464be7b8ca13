#!/bin/sh
# archive_journal_stage - the archive stage with an smtp: journal store
# behind relaychaind
#
# relaychaind (delivery = queue) delivers to one smtp-sink (the next
# hop); its archive stage, last in the chain (as sent, a signed
# checkpoint every 2 records), journals to another smtp-sink (the
# journal mailbox), which is down at first. Checks:
#   1. with the journal host down, every message is accepted (250) and
#      delivered: the journal store always goes through the spool, and
#      archive status shows the backlog, and /metrics
#      (relaychain_archive_backlog_records) counts it;
#   2. the journal host up: the backlog drains (the metric too), one
#      report a message
#      (checkpoints are not mailed), from the null sender to
#      journal_recipient;
#   3. each report's envelope part names the sender and every
#      recipient, the Bcc one included, and its message/rfc822 part is
#      the message the next hop got, octet for octet (8-bit body
#      included);
#   4. relaychaind restarted: the chain goes on from the spool's last
#      record (seq after the last one, no reuse), a new message is
#      journaled with the next record name.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 4)
port=$1 sink_port=$2 j_port=$3 h_port=$4
RC="$top_builddir/relaychain"

openssl genpkey -algorithm ed25519 -out "$T/ckpt.pem" 2>/dev/null
chmod 600 "$T/ckpt.pem"
sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/queue
http_listen = 127.0.0.1:$h_port
EOF
cat >"$T/chain.d/90-archive.conf" <<EOF
stage = archive
store = smtp:[127.0.0.1]:$j_port
archive_node = node1
checkpoint_key = $T/ckpt.pem
checkpoint_every = 2
spool_directory = $T/aspool
journal_recipient = journal@archive.example
journal_sender = archive@relay.example
journal_helo = relay.example
EOF

send() { # send N
    printf 'From: <sender@client.example>\r\nTo: <to@dest.example>\r\nSubject: journal %s\r\nMessage-Id: <j-%s@client.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\303\274\303\237e %s\r\n.a leading dot\r\n' \
        "$1" "$1" "$1" >"$T/m$1.eml"
    timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
        --from "sender@client.example" \
        --to "to@dest.example,bcc-$1@hidden.example" \
        --data "$T/m$1.eml" >"$T/swaks-$1.out" 2>&1
}

check "relaychain check loads the chain" \
    "$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1
rcd_start rcd "$T/rc.conf" "$port" || finish

# --- 1. the journal host down
for i in 1 2 3; do
    send $i
    check "journal host down: message $i accepted" [ $? -eq 0 ]
done
check "the next hop got 3 messages" sink_wait sink 3 15
"$RC" archive -c "$T/rc.conf" status >"$T/status1.out" 2>&1
check "status shows the backlog: $(head -n 1 "$T/status1.out")" \
    grep -q '^spool .*/aspool/smtp-[0-9a-f]*: [3-9] records waiting' "$T/status1.out"
# backlog - relaychain_archive_backlog_records of /metrics
backlog() {
    curl -s --max-time 10 "http://127.0.0.1:$h_port/metrics" |
        sed -n 's/^relaychain_archive_backlog_records \([0-9]*\)$/\1/p'
}
waiting=$(sed -n 's/^spool .*: \([0-9]*\) records waiting.*/\1/p' "$T/status1.out" | head -n 1)
check "/metrics counts the backlog status shows ($(backlog), $waiting)" \
    [ "$(backlog)" = "$waiting" ]

# --- 2. the journal host up
sink_start jsink "$j_port"
check "3 reports arrive" sink_wait jsink 3 30
sleep 1
"$RC" archive -c "$T/rc.conf" status >"$T/status2.out" 2>&1
check "the backlog drained: $(head -n 1 "$T/status2.out")" \
    grep -q '^spool .*: 0 records waiting' "$T/status2.out"
check "/metrics: the backlog is 0 ($(backlog))" [ "$(backlog)" = 0 ]
check "one report a message, checkpoints not mailed" \
    [ "$(sink_count jsink)" -eq 3 ]
check "a checkpoint was written and not handed to the journal store" \
    grep -q 'archive spool .*: node1/[0-9a-f]* (checkpoint) not handed on' "$T/rcd.log"

# --- 3. the reports
cat >"$T/check.py" <<'EOF'
import glob, re, sys
T, n = sys.argv[1], int(sys.argv[2])
SINK = (b"X-Client-Addr:", b"X-Client-Proto:", b"X-Helo-Args:",
        b"X-Mail-Args:", b"X-Rcpt-Args:")

def read(path):
    raw = open(path, "rb").read().replace(b"\r\n", b"\n")
    lines = raw.split(b"\n")
    while lines and lines[0].startswith(SINK):
        lines.pop(0)
    # smtp-sink's own Received: field, with its continuation lines
    if len(lines) > 1 and lines[0].startswith(b"Received:") and \
            b"by smtp-sink" in lines[1]:
        lines.pop(0)
        while lines and lines[0][:1] in (b" ", b"\t"):
            lines.pop(0)
    return b"\n".join(lines), raw

delivered = {}
for f in glob.glob(T + "/sink/msg.*"):
    msg, _ = read(f)
    m = re.search(rb"^Message-Id: <(j-\d+)@", msg, re.M | re.I)
    if m:
        delivered[m.group(1).decode()] = msg
bad, seen = [], set()
for f in glob.glob(T + "/jsink/msg.*"):
    msg, raw = read(f)
    if b"\nX-Mail-Args: <>" not in b"\n" + raw:
        bad.append("%s: not from <>" % f)
    if b"X-Rcpt-Args: <journal@archive.example>" not in raw:
        bad.append("%s: not to journal_recipient" % f)
    head, _, body = msg.partition(b"\n\n")
    m = re.search(rb'boundary="([^"]+)"', head)
    if not m:
        bad.append("%s: no boundary" % f)
        continue
    parts = (b"\n" + body).split(b"\n--" + m.group(1))
    if len(parts) != 4:
        bad.append("%s: %d parts" % (f, len(parts) - 2))
        continue
    env = parts[1].partition(b"\n\n")[2].split(b"\n")
    mid = [l for l in env if l.startswith(b"Message-ID: <j-")]
    if len(mid) != 1:
        bad.append("%s: no Message-ID line" % f)
        continue
    tag = mid[0][len(b"Message-ID: <"):].split(b"@")[0].decode()
    seen.add(tag)
    k = tag[2:].encode()
    for line in (b"Sender: sender@client.example",
                 b"Recipient: to@dest.example",
                 b"Recipient: bcc-" + k + b"@hidden.example"):
        if line not in env:
            bad.append("%s: envelope lacks %r" % (tag, line))
    inner = parts[2].partition(b"\n\n")[2]
    want = delivered.get(tag)
    if want is None:
        bad.append("%s: not delivered" % tag)
    elif inner.rstrip(b"\n") != want.rstrip(b"\n"):
        bad.append("%s: rfc822 part differs:\n%r\nwant\n%r" % (tag, inner, want))
if len(seen) != n:
    bad.append("reports for %s, want %d" % (sorted(seen), n))
print("\n".join(bad) if bad else "ok")
EOF
"$PY" "$T/check.py" "$T" 3 >"$T/check1.out" 2>&1
check "each report: envelope with the Bcc, the delivered message: $(head -n 3 "$T/check1.out")" \
    grep -q '^ok$' "$T/check1.out"

# --- 4. restart: the chain goes on from the spool's last record
last=$(grep -o 'archive: continue, record=node1/[0-9a-f]*' "$T/rcd.log" | tail -n 1 | sed 's|.*/||')
rcd_stop rcd
rcd_start rcd "$T/rc.conf" "$port" || finish
send 4
check "after the restart: message 4 accepted" [ $? -eq 0 ]
check "the next hop got 4 messages" sink_wait sink 4 15
check "4 reports" sink_wait jsink 4 30
new=$(grep -o 'archive: continue, record=node1/[0-9a-f]*' "$T/rcd.log" | tail -n 1 | sed 's|.*/||')
check "message 4's record (seq $new) comes after message 3's ($last), no seq reused" \
    [ "$((0x$new))" -gt "$((0x$last))" ]
check "the names of records logged are all different" \
    [ "$(grep -o 'record=node1/[0-9a-f]*' "$T/rcd.log" | sort | uniq -d | wc -l)" -eq 0 ]
"$PY" "$T/check.py" "$T" 4 >"$T/check2.out" 2>&1
check "the fourth report too: $(head -n 3 "$T/check2.out")" \
    grep -q '^ok$' "$T/check2.out"
rcd_stop rcd

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- rcd.log (tail)"; tail -n 30 "$T/rcd.log"
    for f in "$T"/status*.out "$T"/check*.out; do
        echo "--- $f"; tail -n 10 "$f"
    done
fi
finish
