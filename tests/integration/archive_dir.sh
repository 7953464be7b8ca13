#!/bin/sh
# archive_dir - the archive stage on a dir: store behind relaychaind
#
# 1. relaychaind (delivery = queue) with the chain archive (first, as
#    received), rewrite (which refuses one recipient: its rule gives no
#    address, a tempfail), archive-last (as sent), and a signed
#    checkpoint every 4 records. swaks sends messages with a Bcc
#    recipient (in the envelope only) and one that rewrite refuses.
#    Each delivered message is archived twice, at both points, with
#    every envelope recipient, the Bcc one included, and the verdicts of
#    the stages before the point; the refused one is archived as
#    received, with an outcome record naming it and the tempfail; the
#    archived octets at the last point are what the next hop got.
# 2. relaychain archive verify: ok, with the checkpoint_key of the
#    configuration and, offline, with --store and the public key only;
#    a wrong public key fails it.
# 3. Tampering, each on a fresh copy of the store, each detected, named,
#    exit 1: one octet flipped inside a record (frame check fixed up too,
#    so the record's own hash has to catch it), a record deleted, two
#    records swapped, a segment truncated in the middle of a record.
#    While relaychaind runs, a second process (relaychain filter) on the
#    same writer is refused, saying why: it would fork the chain.
# 4. Refused settings, with file:line: an encrypt_to of neither form
#    (archive_encrypt.sh tests the rest), a relative spool_directory, a
#    checkpoint key other users may read; relaychain check loads the
#    chain.
# 6. Purge past retention, on a copy: as if two days had passed
#    (--now), retention 1d drops every segment but the one being
#    written, leaving tombstones: verify still passes and counts the
#    purged records; a second purge finds nothing; a purge cut short
#    after its tombstone (the segment back in place) is finished without
#    a second tombstone; a tombstone removed makes verify name the
#    missing records.
# 7. search through the SQLite index (made from the store at the first
#    search): by the Bcc recipient (any case), sender, Message-ID,
#    Subject, a date range; export to .eml files and to an mbox, with a
#    manifest whose SHA-256 are those of the files and which names the
#    checkpoint after each message; reindex --full rebuilds it.
# 5. The shipped chain.d/05-archive.conf.example and
#    95-archive-sent.conf.example, turned on the way their comments say
#    (the store moved into the test's directory): a message through
#    relaychain filter is archived at both points and verifies.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2
RC="$top_builddir/relaychain"

openssl genpkey -algorithm ed25519 -out "$T/ckpt.pem" 2>/dev/null
openssl pkey -in "$T/ckpt.pem" -pubout -out "$T/ckpt.pub" 2>/dev/null
openssl genpkey -algorithm ed25519 2>/dev/null |
    openssl pkey -pubout -out "$T/other.pub" 2>/dev/null
chmod 600 "$T/ckpt.pem"

sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/spool
EOF
mkdir -p "$T/chain.d"
cat >"$T/chain.d/10-archive.conf" <<EOF
stage = archive
store = dir:$T/store
archive_node = node1
checkpoint_key = $T/ckpt.pem
checkpoint_every = 4
dir_segment_size = 64k
EOF
cat >"$T/chain.d/20-rewrite.conf" <<EOF
stage = rewrite
recipient_rules = $T/rcpt.pcre
EOF
echo '/^refused@dest\.example$/ not an address' >"$T/rcpt.pcre"
cat >"$T/chain.d/90-archive-last.conf" <<EOF
stage = archive
store = dir:$T/store
archive_node = node1
checkpoint_key = $T/ckpt.pem
checkpoint_every = 4
dir_segment_size = 64k
EOF

check "relaychain check loads the chain" \
    "$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1
rcd_start rcd "$T/rc.conf" "$port" || finish

N=6
i=1
while [ $i -le $N ]; do
    # Bodies that do not compress, so the records fill more than one
    # segment of 64k.
    { echo "archive body $i"; openssl rand -base64 6000; } >"$T/body$i"
    timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
        --from "sender$i@client.example" --to "to$i@dest.example,bcc$i@hidden.example" \
        --header "Subject: archive test $i" \
        --header "Message-Id: <arc-$i@client.example>" \
        --header "To: <to$i@dest.example>" \
        --body "$T/body$i" >"$T/swaks$i.out" 2>&1
    check "message $i accepted" [ $? -eq 0 ]
    i=$((i + 1))
done
timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
    --from "sender@client.example" --to "refused@dest.example" \
    --header "Message-Id: <arc-refused@client.example>" \
    --body "refused body" >"$T/swaks-refused.out" 2>&1
check "the refused message is tempfailed" \
    grep -q '^<\*\* *451' "$T/swaks-refused.out"
check "the sink got $N messages" sink_wait sink $N 15
# One process appends to a writer's chain: a second one is refused.
printf 'Subject: second writer\n\nx\n' |
    "$RC" filter -c "$T/rc.conf" --from a@client.example --rcpt b@dest.example \
        >/dev/null 2>"$T/second.err"
check "a second process on the daemon's writer is refused" [ $? -ne 0 ]
check "saying why ($(head -n 1 "$T/second.err"))" \
    grep -q "archive writer node1 in .* is in use by another process" "$T/second.err"
rcd_stop rcd

# --- 1. the records
"$RC" archive -c "$T/rc.conf" list >"$T/list" 2>"$T/list.err"
check "archive list runs ($(cat "$T/list.err"))" [ $? -eq 0 ]
i=1
while [ $i -le $N ]; do
    for point in archive archive-last; do
        check "message $i archived once at $point, Bcc recipient included" \
            [ "$(grep -c -e " point=$point qid=[0-9A-F]* message-id=<arc-$i@client.example> sender=sender$i@client.example rcpt=to$i@dest.example rcpt=bcc$i@hidden.example " "$T/list")" -eq 1 ]
    done
    i=$((i + 1))
done
check "the last point records the verdicts before it" \
    grep -q 'point=archive-last .* verdicts=archive=continue,rewrite=continue ' "$T/list"
check "the refused message is archived as received" \
    grep -q 'point=archive qid=[0-9A-F]* message-id=<arc-refused@client.example> .*rcpt=refused@dest.example' "$T/list"
check "the refused message is not archived as sent" \
    sh -c "! grep -q 'point=archive-last .*message-id=<arc-refused' '$T/list'"
ref=$(grep 'point=archive qid=[0-9A-F]* message-id=<arc-refused@client.example>' "$T/list" | cut -d' ' -f1)
check "an outcome record names it ($ref) and the tempfail" \
    grep -q "^node1/[0-9a-f]* outcome time=[0-9]* ref=$ref verdict=tempfail,by,rewrite:,451" "$T/list"
check "checkpoints were written" grep -q '^node1/[0-9a-f]* checkpoint ' "$T/list"

# The archived octets as sent are what the next hop got (the sink adds
# its own header lines in front and an empty line at the end: compare the
# message's own part).
rec=$(grep 'point=archive-last qid=[0-9A-F]* message-id=<arc-3@client.example>' "$T/list" | cut -d' ' -f1)
"$RC" archive -c "$T/rc.conf" show "$rec" >"$T/shown.eml"
sinkfile=$(grep -l 'arc-3@client.example' "$T"/sink/msg.* | head -n 1)
check "archive show gives the message" grep -q '^archive body 3' "$T/shown.eml"
tr -d '\r' <"$T/shown.eml" >"$T/shown.lf"
tr -d '\r' <"$sinkfile" >"$T/sink.lf"
check "the archived message as sent is the delivered message" \
    sh -c "tail -n $(($(wc -l <"$T/shown.lf") + 1)) '$T/sink.lf' | head -n $(wc -l <"$T/shown.lf") | cmp -s - '$T/shown.lf'"

# --- 2. verify
"$RC" archive -c "$T/rc.conf" verify >"$T/verify.out" 2>&1
check "verify passes: $(tail -n 2 "$T/verify.out" | head -n 1)" [ $? -eq 0 ]
check "verify checked the checkpoints" \
    grep -q ' [1-9][0-9]* checkpoints, 1 writer, ok$' "$T/verify.out"
"$RC" archive verify --store "dir:$T/store" --key "$T/ckpt.pub" >"$T/verify2.out" 2>&1
check "verify offline with the public key passes" [ $? -eq 0 ]
check "offline: every checkpoint checked" \
    sh -c "! grep -q 'not checked' '$T/verify2.out'"
"$RC" archive verify --store "dir:$T/store" --key "$T/other.pub" >"$T/verify3.out" 2>&1
check "verify with another key fails (exit 1)" [ $? -eq 1 ]
check "it names the checkpoint" grep -q '^checkpoint node1/[0-9a-f]*: signature does not verify' "$T/verify3.out"
"$RC" archive status --store "dir:$T/store" >"$T/status.out" 2>&1
check "status names the writer" grep -q '^writer node1: [0-9]* records' "$T/status.out"

# --- 3. tampering
SEG=node1/segment-000001
# frames.py STORE SEG ACTION [ARG] - rewrite a segment's frames
cat >"$T/frames.py" <<'EOF'
import hashlib, struct, sys
path, action = sys.argv[1], sys.argv[2]
d = open(path, "rb").read()
frames, off = [], 0
while off < len(d):
    ln = struct.unpack(">I", d[off:off + 4])[0]
    frames.append(bytearray(d[off:off + 4 + ln + 8]))
    off += 4 + ln + 8
def name(f):
    return f[5:5 + f[4]].decode()
def refix(f):
    ln = struct.unpack(">I", f[0:4])[0]
    f[4 + ln:] = hashlib.sha256(bytes(f[:4 + ln])).digest()[:8]
k = int(sys.argv[3])
if action == "flip":
    f = frames[k]
    f[len(f) // 2] ^= 0x01
    refix(f)
    print(name(f))
elif action == "delete":
    print(name(frames[k]))
    del frames[k]
elif action == "swap":
    print(name(frames[k]))
    frames[k], frames[k + 1] = frames[k + 1], frames[k]
elif action == "truncate":
    print(name(frames[k]))
    out = b"".join(bytes(f) for f in frames[:k]) + bytes(frames[k][:len(frames[k]) // 2])
    open(path, "wb").write(out)
    sys.exit(0)
open(path, "wb").write(b"".join(bytes(f) for f in frames))
EOF
# tamper WHAT ACTION K PATTERN - on a copy: ACTION frame K, verify fails
# naming the record the pattern finds
tamper() {
    rm -rf "$T/t-$1"
    cp -a "$T/store" "$T/t-$1"
    victim=$("$PY" "$T/frames.py" "$T/t-$1/$SEG" "$2" "$3")
    "$RC" archive verify --store "dir:$T/t-$1" --key "$T/ckpt.pub" >"$T/v-$1.out" 2>&1
    rc=$?
    check "$1: verify exits 1 (got $rc)" [ "$rc" -eq 1 ]
    pat=$(echo "$4" | sed "s|VICTIM|$victim|")
    check "$1: names $victim: $(head -n 1 "$T/v-$1.out")" grep -q "$pat" "$T/v-$1.out"
}
tamper flip flip 5 "^record VICTIM: altered"
tamper delete delete 5 "^record VICTIM: missing"
tamper swap swap 5 "^record VICTIM: out of order"
# verify --from starts at the last signed checkpoint before DATE: the
# flipped record lies before the store's last checkpoint, so from
# tomorrow on the store verifies; from long ago the flip is found.
"$RC" archive verify --store "dir:$T/t-flip" --key "$T/ckpt.pub" \
    --from "$(date -u -d tomorrow +%Y-%m-%d)" >"$T/vf1.out" 2>&1
check "verify --from tomorrow starts at the last checkpoint: $(head -n 1 "$T/vf1.out")" \
    grep -q 'before --from vouched for by a checkpoint, 1 writer, ok$' "$T/vf1.out"
"$RC" archive verify --store "dir:$T/t-flip" --key "$T/ckpt.pub" \
    --from 2000-01-01 >"$T/vf2.out" 2>&1
check "verify --from long ago reads it all and finds the flip" [ $? -eq 1 ]
check "the records fill more than one segment" [ -f "$T/store/node1/segment-000002" ]
tamper truncate truncate 7 "segment-000001: frame at offset [0-9]* cut short"
check "truncate: the records after the cut are named missing" \
    grep -q "^record node1/[0-9a-f]*: missing" "$T/v-truncate.out"

# --- 4. refused settings
mkdir -p "$T/bad.d"
cat >"$T/bad.d/10-archive.conf" <<EOF
stage = archive
store = dir:$T/store2
encrypt_to = officer@example.com
EOF
sed "s|^chain_directory = .*|chain_directory = $T/bad.d|" "$T/rc.conf" >"$T/bad.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
check "an encrypt_to of neither form is refused with file:line" \
    grep -q "10-archive.conf:3: encrypt_to: officer@example.com: give pgp:FINGERPRINT" "$T/bad.out"
printf 'stage = archive\nstore = dir:%s/store2\nrequired = no\nspool_directory = spool\n' "$T" >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad2.out" 2>&1
check "required = no with a relative spool_directory is refused with file:line" \
    grep -q "10-archive.conf:4: spool_directory: give an absolute path" "$T/bad2.out"
printf 'stage = archive\nstore = dir:%s/store2\ns3_endpoint = http://127.0.0.1:1\n' "$T" >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad5.out" 2>&1
check "an s3 key beside a dir: store is refused with file:line" \
    grep -q "10-archive.conf:3: s3_endpoint: only for a store = s3: store" "$T/bad5.out"
printf 'stage = archive\nstore = dir:%s/store2\ns3_endpont = http://127.0.0.1:1\n' "$T" >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad6.out" 2>&1
check "an unknown key is still refused with file:line" \
    grep -q "10-archive.conf:3: .*s3_endpont" "$T/bad6.out"
cp "$T/ckpt.pem" "$T/open.pem"
chmod 644 "$T/open.pem"
printf 'stage = archive\nstore = dir:%s/store2\ncheckpoint_key = %s/open.pem\n' "$T" "$T" >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad4.out" 2>&1
check "a checkpoint key others may read is refused" \
    grep -q "10-archive.conf:3: checkpoint_key: .*open.pem: mode 0644 lets all other users read it" "$T/bad4.out"
printf 'stage = archive\nstore = s3://bucket/prefix\n' >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad3.out" 2>&1
check "store s3: without s3_endpoint is refused, naming the key" \
    grep -q "10-archive.conf.*s3_endpoint" "$T/bad3.out"
printf 'stage = archive\nstore = ftp://bucket/prefix\n' >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad7.out" 2>&1
check "an unknown store scheme is refused with file:line" \
    grep -q "10-archive.conf:2: store: ftp: unknown store scheme" "$T/bad7.out"

# --- 6. purge
rm -rf "$T/p"
cp -a "$T/store" "$T/p"
later=$(($(date +%s) + 2 * 86400))
nseg=$(ls "$T/p/node1" | grep -c '^segment-')
"$RC" archive purge --store "dir:$T/p" --retention 1d --now "$later" >"$T/purge.out" 2>&1
check "purge runs: $(cat "$T/purge.out")" [ $? -eq 0 ]
check "purge dropped every segment but the last" \
    grep -q "purged $((nseg - 1)) segments* ([1-9][0-9]* records) past 1d" "$T/purge.out"
check "the last segment is kept" [ -f "$T/p/node1/segment-$(printf %06d "$nseg")" ]
check "segment-000001 is gone" [ ! -f "$T/p/node1/segment-000001" ]
"$RC" archive verify --store "dir:$T/p" --key "$T/ckpt.pub" >"$T/pv.out" 2>&1
check "verify passes after the purge: $(head -n 1 "$T/pv.out")" [ $? -eq 0 ]
check "verify counts tombstones and purged records" \
    grep -q "tombstones), .* purged under tombstones, 2 writers, ok" "$T/pv.out"
"$RC" archive purge --store "dir:$T/p" --retention 1d --now "$later" >"$T/purge2.out" 2>&1
check "a second purge finds nothing" grep -q "purged 0 segments" "$T/purge2.out"
cp "$T/store/node1/segment-000001" "$T/p/node1/"
"$RC" archive purge --store "dir:$T/p" --retention 1d --now "$later" >"$T/purge3.out" 2>&1
check "a purge cut short is finished" grep -q "purged 1 segment " "$T/purge3.out"
check "without a second tombstone" \
    [ "$("$RC" archive list --store "dir:$T/p" | grep -c ' tombstone ')" -eq $((nseg - 1)) ]
"$PY" "$T/frames.py" "$T/p/node1~purge/segment-000001" delete 0 >/dev/null
"$RC" archive verify --store "dir:$T/p" --key "$T/ckpt.pub" >"$T/pv2.out" 2>&1
check "a tombstone removed: verify exits 1" [ $? -eq 1 ]
check "and names the records it covered" \
    grep -q "^record node1/0000000000000001: missing, and [0-9]* more" "$T/pv2.out"

# --- 7. search and export
"$RC" archive -c "$T/rc.conf" search --recipient BCC3@Hidden.Example >"$T/s1" 2>&1
check "search by the Bcc recipient finds both points ($(head -n 1 "$T/s1"))" \
    [ "$(grep -c 'message-id=<arc-3@client.example>' "$T/s1")" -eq 2 ]
check "and nothing else" [ "$(wc -l <"$T/s1")" -eq 2 ]
"$RC" archive -c "$T/rc.conf" search --sender sender4@client.example \
    --subject "TEST 4" >"$T/s2" 2>&1
check "search by sender and subject" \
    [ "$(grep -c 'message-id=<arc-4@client.example>' "$T/s2")" -eq 2 ]
"$RC" archive -c "$T/rc.conf" search --message-id arc-refused >"$T/s3" 2>&1
check "search by Message-ID finds the refused message as received" \
    [ "$(grep -c ' point=archive ' "$T/s3")" -eq 1 ]
"$RC" archive -c "$T/rc.conf" search --since 2000-01-01 --until 2000-12-31T23:59:59 >"$T/s4" 2>&1
check "a date range with nothing in it" [ ! -s "$T/s4" ]
"$RC" archive -c "$T/rc.conf" search --since "$(date -u +%Y-%m-%d)" >"$T/s5" 2>&1
check "today's range has every message record" [ "$(wc -l <"$T/s5")" -eq $((2 * N + 1)) ]
mkdir "$T/exp"
"$RC" archive -c "$T/rc.conf" export --recipient to5@dest.example --dir "$T/exp" >"$T/e1" 2>&1
check "export to a directory: $(cat "$T/e1")" grep -q ': 2 messages exported' "$T/e1"
ok=0
while read -r name sum size ckpt; do
    f="$T/exp/$(echo "$name" | tr / _).eml"
    [ "sha256=$(sha256sum <"$f" | cut -d' ' -f1)" = "$sum" ] &&
        [ "size=$(wc -c <"$f")" = "$size" ] &&
        echo "$ckpt" | grep -q '^checkpoint=node1/[0-9a-f]*$' && ok=$((ok + 1))
done <"$T/exp/MANIFEST"
check "the manifest's hashes and sizes are the files', each with its checkpoint" [ "$ok" -eq 2 ]
check "the exported file is the archived message" grep -q '^archive body 5' "$T/exp/node1_"*.eml
"$RC" archive -c "$T/rc.conf" export --sender sender6@client.example --mbox "$T/out.mbox" >"$T/e2" 2>&1
check "export to an mbox" [ "$(grep -c '^From sender6@client.example ' "$T/out.mbox")" -eq 2 ]
check "with its manifest" [ "$(wc -l <"$T/out.mbox.manifest")" -eq 2 ]
"$RC" archive -c "$T/rc.conf" reindex --full >"$T/r1" 2>&1
check "reindex --full reads every record again" \
    grep -q ": $(grep -c . "$T/list") records added" "$T/r1"

# --- 5. the shipped examples
mkdir -p "$T/cx/archive"
openssl genpkey -algorithm ed25519 -out "$T/cx/archive/checkpoint.pem" 2>/dev/null
chmod 600 "$T/cx/archive/checkpoint.pem"
for f in 05-archive 95-archive-sent; do
    sed "s|^store = dir:/var/lib/relaychain/archive|store = dir:$T/shipped|" \
        "$top_srcdir/chain.d/$f.conf.example" >"$T/cx/$f.conf"
done
sed "s|^chain_directory = .*|chain_directory = $T/cx|" "$T/rc.conf" >"$T/cx.conf"
check "the shipped examples load" "$RC" check -c "$T/cx.conf" >"$T/cx-check.out" 2>&1
printf 'From: a@example.com\nTo: b@example.net\nMessage-ID: <shipped@example.com>\nSubject: shipped\n\nbody\n' |
    "$RC" filter -c "$T/cx.conf" --from a@example.com --rcpt b@example.net \
        --rcpt hidden@example.org >/dev/null 2>"$T/cx-filter.err"
check "a message through the shipped chain ($(head -n 1 "$T/cx-filter.err"))" [ $? -eq 0 ]
"$RC" archive -c "$T/cx.conf" list >"$T/cx-list" 2>&1
check "archived as received and as sent" \
    [ "$(grep -c 'message-id=<shipped@example.com> sender=a@example.com rcpt=b@example.net rcpt=hidden@example.org' "$T/cx-list")" -eq 2 ]
check "the two points are named" grep -q ' point=archive-sent ' "$T/cx-list"
"$RC" archive -c "$T/cx.conf" verify >"$T/cx-verify.out" 2>&1
check "the shipped store verifies with its key: $(head -n 1 "$T/cx-verify.out")" \
    grep -q ' 1 checkpoints, 1 writer, ok$' "$T/cx-verify.out"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in list verify.out bad.out bad2.out bad3.out; do
        echo "--- $f"
        head -n 40 "$T/$f"
    done
    echo "--- relaychaind log"
    tail -n 30 "$T/rcd.log"
fi
[ -n "${ARC_KEEP:-}" ] && cp -a "$T" /tmp/arc-keep
finish
