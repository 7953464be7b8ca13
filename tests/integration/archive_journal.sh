#!/bin/sh
# archive_journal - the archive stage's journaling store (store =
# smtp:[host]:port) into a private Postfix
#
# tests/archive-s3-probe opens the smtp: store, lends it relaychain's
# notice service and puts one message (8-bit body, a Bcc recipient)
# with its envelope. The journal host is a private loopback Postfix that
# relays to smtp-sink, the mailbox. Checks:
#   1. the report arrives from the null sender to journal_recipient,
#      From: journal_sender;
#   2. its envelope part lists the sender and every recipient, the Bcc
#      one included, the queue id, client, auth user and the SHA-256;
#   3. its message/rfc822 part is the original (line ends as stored) and
#      says 8bit;
#   4. the same put without the message (a record read back from a
#      spool and not opened) is refused as
#      temporary, never sent;
#   5. the host down: the put fails as temporary (ERR_TEMP) naming the
#      host, and a bad journal_recipient is refused at open.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

PROBE="$top_builddir/tests/archive-s3-probe"
set -- $(free_ports 3)
pf_port=$1 sink_port=$2 dead_port=$3

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

cat >"$T/j.conf" <<EOF
store = smtp:[127.0.0.1]:$pf_port
journal_recipient = journal@archive.example
journal_sender = archive@relay.example
journal_helo = relay.example
EOF
printf 'From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\nSubject: quarterly\r\nMessage-ID: <q1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\303\274\303\237e aus K\303\266ln.\r\n.leading dot\r\n\r\n-- \r\nAlice\r\n' \
    >"$T/orig.eml"

# 1-4
out=$("$PROBE" "$T/j.conf" journal "$T/orig.eml" alice@example.com \
    bob@example.net hidden@example.org 2>&1)
check "journal put: $out" sh -c 'echo "$1" | grep -q "^journaled [0-9]* octets$"' - "$out"
check "the report reaches the mailbox" sink_wait sink 1 20
msg=$(sink_files sink | head -n 1)
check "null envelope sender" grep -q '^X-Mail-Args: <>' "$msg"
check "to journal_recipient" grep -q '^X-Rcpt-Args: <journal@archive.example>' "$msg"
check "one report only" [ "$(sink_count sink)" -eq 1 ]
"$PY" - "$msg" "$T/orig.eml" >"$T/check.out" 2>&1 <<'EOF'
import hashlib, re, sys
raw = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n")
orig = open(sys.argv[2], "rb").read()
want = orig.replace(b"\r\n", b"\n")
# smtp-sink's own lines, then Postfix's Received:, then the report.
head, _, body = raw.partition(b"\n\n")
def header(name):
    m = re.search(rb"^" + name + rb":[ \t]*(.*(?:\n[ \t].*)*)", head,
                  re.M | re.I)
    return m.group(1).replace(b"\n", b" ") if m else None
bad = []
if header(b"From") != b"archive@relay.example":
    bad.append("From: %r" % header(b"From"))
ct = header(b"Content-Type") or b""
m = re.search(rb'boundary="([^"]+)"', ct)
if not ct.lower().startswith(b"multipart/mixed") or not m:
    sys.exit("not multipart/mixed: %r" % ct)
delim = b"\n--" + m.group(1)
parts = ("\n" + body.decode("latin-1")).encode("latin-1").split(delim)
# parts: preamble, envelope, message, "--" epilogue
if len(parts) != 4 or not parts[3].startswith(b"--"):
    sys.exit("got %d parts" % (len(parts) - 2))
env_h, _, env = parts[1].partition(b"\n\n")
for line in (b"Sender: alice@example.com", b"Recipient: bob@example.net",
             b"Recipient: hidden@example.org", b"Queue-ID: 4PROBE1",
             b"Client: client.example.com [192.0.2.7]", b"Auth-User: alice",
             b"SHA-256: " + hashlib.sha256(orig).hexdigest().encode(),
             b"Size: %d" % len(orig)):
    if line not in env.split(b"\n"):
        bad.append("envelope lacks %r" % line)
msg_h, _, inner = parts[2].partition(b"\n\n")
if b"Content-Type: message/rfc822" not in msg_h:
    bad.append("second part is not message/rfc822: %r" % msg_h)
if b"Content-Transfer-Encoding: 8bit" not in msg_h:
    bad.append("rfc822 part not declared 8bit: %r" % msg_h)
if inner != want:
    bad.append("rfc822 part differs:\n%r\nwant\n%r" % (inner, want))
if bad:
    sys.exit("\n".join(bad))
print("ok")
EOF
check "the report as it arrived: $(cat "$T/check.out")" \
    grep -q '^ok$' "$T/check.out"

# 5. the host down; a bad recipient
sed "s/:$pf_port\$/:$dead_port/" "$T/j.conf" >"$T/dead.conf"
out=$("$PROBE" "$T/dead.conf" journal "$T/orig.eml" alice@example.com \
    bob@example.net 2>&1)
check "host down: temporary, naming it, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: temp: journal .* via smtp:\[127.0.0.1\]:$2"' - "$out" "$dead_port"
sed 's/^journal_recipient = .*/journal_recipient = <journal@archive.example>/' \
    "$T/j.conf" >"$T/badrcpt.conf"
out=$("$PROBE" "$T/badrcpt.conf" journal "$T/orig.eml" a@example.com \
    b@example.net 2>&1)
check "bad journal_recipient refused with file:line, got: $out" \
    sh -c 'echo "$1" | grep -q "^error: config: .*badrcpt.conf:2: journal_recipient"' - "$out"
check "still one report in the mailbox" [ "$(sink_count sink)" -eq 1 ]

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- postfix.log"; tail -n 20 "$T/pf/postfix.log"
    echo "--- check.out"; cat "$T/check.out"
fi
finish
