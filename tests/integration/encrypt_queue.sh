#!/bin/sh
# encrypt_queue - delivery = queue splits one message per recipient
# group: one SMTP transaction to an OpenPGP recipient, an S/MIME one and
# an opportunistic one without a key gets one 250, and the sink gets
# three copies, each for its own recipient only: the two encrypted ones
# decrypt (gpg, openssl cms) to the original entity byte for byte, the
# clear one is the input with this hop's Received field. A required
# recipient without a key in the same transaction gets 450 4.7.1 at RCPT
# alone. A keyring that breaks between RCPT and DATA tempfails the whole
# message, and nothing of it is queued or reaches the sink.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/encrypt_lib.sh"

for prog in gpg gpgconf openssl smtp-sink swaks; do
    command -v "$prog" >/dev/null 2>&1 ||
        { echo "$0: $prog is missing (scripts/setup installs it)" >&2; exit 1; }
done
trap 'enc_gpg_stop "$T/pgp"; smtpd_cleanup' EXIT

enc_pgp_keys "$T/pgp" || { fail "making the OpenPGP keys"; finish; }
enc_smime_certs "$T/sm" || { fail "making the S/MIME certificates"; finish; }
GPGK="gpg --homedir $T/pgp/keys --batch --no-tty --pinentry-mode loopback --passphrase ''"

mkdir -p "$T/cd"
cat >"$T/cd/policy.pcre" <<'MAP'
/^carol@example\.org$/      required any
/^(bob|eve)@example\.net$/  required pgp
/@example\.net$/            opportunistic
MAP
cat >"$T/cd/80-encrypt.conf" <<CONF
stage = encrypt
policy_map = policy.pcre
pgp_home = $T/pgp/gnupg
smime_cert_dir = $T/sm/certs
smime_ca_file = $T/sm/ca.pem
smime_crl_file = $T/sm/crl.pem
CONF

cat >"$T/m1.eml" <<'MSG'
From: Alice <alice@example.com>
To: Bob <bob@example.net>, Carol <carol@example.org>, Zed <zed@example.net>
Subject: quarterly figures
Message-ID: <q1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße, the figures are attached.
--b1
Content-Type: application/octet-stream; name="figures.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="figures.bin"

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
--b1--
MSG
entity "$T/m1.eml" "$T/m1.ent"
printf '%s' "$(cat "$T/m1.eml")" >"$T/m1.swaks"

set -- $(free_ports 2)
port=$1 sink_port=$2
sink_start sink "$sink_port"
rcd_conf "$T/q.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<CONF
chain_directory = $T/cd
message_size_limit = 10m
delivery = queue
queue_directory = $T/spool
events_store = sqlite:$T/events.db
stream_header = X-Relaychain-Stream
CONF
rcd_start q "$T/q.conf" "$port" || finish

send() { # NAME RCPT,RCPT...
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to "$2" --data "$T/m1.swaks" \
        >"$T/$1.swaks" 2>&1
}

# copy_for ADDR - the sink copy whose envelope names ADDR; "" if none
copy_for() {
    grep -l "^X-Rcpt-Args: <$1>" "$T"/sink/msg.* 2>/dev/null | head -n 1
}

# is_clear FILE - FILE is m1.eml after this hop's Received field (and
# the sink's own Received and X- fields): nothing else added, nothing
# changed.
is_clear() {
    "$PY" - "$1" "$T/m1.eml" <<'PY'
import sys
got = open(sys.argv[1], 'rb').read().replace(b'\r\n', b'\n')
want = open(sys.argv[2], 'rb').read()
if got.endswith(b'\n\n'):
    got = got[:-1]  # smtp-sink's dump ends with an empty line of its own
if not got.endswith(want):
    sys.stderr.write(repr(got[-300:]))
    sys.exit(1)
lines = got[:len(got) - len(want)].split(b'\n')[:-1]
seen = False
for l in lines:
    if l.startswith(b'Received: from client.test.example'):
        seen = True
    elif not (l.startswith(b'X-') or l[:1] in (b' ', b'\t') or
              l.startswith(b'Received: from relay.test.example ')):
        sys.stderr.write(repr(l))
        sys.exit(2)
sys.exit(0 if seen else 3)
PY
}

# --- three groups, one transaction, one 250
send split "bob@example.net,carol@example.org,zed@example.net"
check "split: every RCPT 250" \
    [ "$(grep -c '<- *250 2.1.5' "$T/split.swaks")" -eq 3 ]
check "split: no 452 4.5.3 in queue mode" \
    sh -c "! grep -q '452 4.5.3' '$T/split.swaks'"
check "split: one 250 for the message" \
    [ "$(grep -c '<- *250 2.0.0 Ok: queued as' "$T/split.swaks")" -eq 1 ]
check "split: three copies at the sink" sink_wait sink 3 30
sleep 0.5
check "split: no more than three ($(sink_count sink))" [ "$(sink_count sink)" -eq 3 ]
for f in "$T"/sink/msg.*; do
    check "split: one recipient per copy ($f)" \
        [ "$(grep -c '^X-Rcpt-Args:' "$f")" -eq 1 ]
done
f=$(copy_for bob@example.net)
check "split: bob's copy is PGP/MIME" \
    grep -q 'protocol="application/pgp-encrypted"' "${f:-/dev/null}"
pgp_part "${f:-/dev/null}" >"$T/bob.asc"
eval "$GPGK --decrypt" <"$T/bob.asc" >"$T/bob.dec" 2>/dev/null
check "split: bob's copy decrypts to the entity" cmp -s "$T/bob.dec" "$T/m1.ent"
check "split: bob's copy is encrypted to his key alone" \
    [ "$(gpg --homedir "$T/pgp/keys" --batch --list-packets "$T/bob.asc" 2>/dev/null | grep -c '^:pubkey enc packet')" -eq 1 ]
f=$(copy_for carol@example.org)
check "split: carol's copy is S/MIME" \
    grep -q 'application/pkcs7-mime; smime-type=enveloped-data' "${f:-/dev/null}"
openssl cms -decrypt -binary -in "${f:-/dev/null}" \
    -recip "$T/sm/certs/carol.pem" -inkey "$T/sm/keys/carol.key" \
    -out "$T/carol.dec" 2>/dev/null
check "split: carol's copy decrypts to the entity" cmp -s "$T/carol.dec" "$T/m1.ent"
f=$(copy_for zed@example.net)
is_clear "${f:-/dev/null}" 2>"$T/zed.out"
check "split: zed's copy is the input, clear (opportunistic, no key)" \
    [ $? -eq 0 ]
for a in bob@example.net carol@example.org; do
    f=$(copy_for $a)
    check "split: nothing in clear in $a's copy" \
        sh -c "[ -s '${f:-/dev/null}' ] && ! grep -q -e 'figures are attached' -e AAECAwQF '${f:-/dev/null}'"
done
check "split: the log names the groups" \
    sh -c "grep -q 'split: encrypt=pgp; as [0-9A-F]* (1 recipient)' '$T/q.log' &&
        grep -q 'split: encrypt=smime; as ' '$T/q.log' &&
        grep -q 'split: encrypt=clear; as ' '$T/q.log'"
check "split: three files queued under three ids" \
    [ "$(grep -c '{Queued}.*split from' "$T/q.log")" -eq 3 ]

# --- a required recipient without a key: 450 at RCPT, the others go on
n0=$(sink_count sink)
send miss "bob@example.net,eve@example.net,zed@example.net"
check "miss: eve gets 450 4.7.1 at RCPT" \
    grep -q '<\*\* *450 4.7.1 No usable encryption key for <eve@example.net>' "$T/miss.swaks"
check "miss: one 250 for the message" \
    [ "$(grep -c '<- *250 2.0.0 Ok: queued as' "$T/miss.swaks")" -eq 1 ]
check "miss: two copies more at the sink" sink_wait sink $((n0 + 2)) 30
sleep 0.5
check "miss: two, not three ($(sink_count sink))" [ "$(sink_count sink)" -eq $((n0 + 2)) ]
check "miss: nothing for eve at the sink" \
    sh -c "! grep -l '^X-Rcpt-Args: <eve@example.net>' '$T'/sink/msg.*"

# --- the keyring breaks between RCPT and DATA: the clear and S/MIME
# copies are staged first (their recipients come first), then bob's run
# fails: 451 for the message, nothing of it queued, nothing at the sink.
n0=$(sink_count sink)
"$PY" - "$port" "$T/m1.swaks" "$T/pgp/gnupg" >"$T/fault.out" 2>&1 <<'PY'
import os, smtplib, sys
port, home = int(sys.argv[1]), sys.argv[3]
msg = open(sys.argv[2], 'rb').read().replace(b'\n', b'\r\n')
s = smtplib.SMTP('127.0.0.1', port, timeout=60)
s.ehlo('client.test.example')
print('MAIL', s.mail('alice@example.com')[0])
for r in ('zed@example.net', 'carol@example.org', 'bob@example.net'):
    print('RCPT', r, s.rcpt(r)[0])
os.rename(home + '/pubring.kbx', home + '/../pubring.kbx.aside')
open(home + '/pubring.kbx', 'wb').write(b'\x00' * 64)
code, text = s.data(msg)
print('DATA', code, text.decode())
s.quit()
PY
rm -f "$T/pgp/gnupg/pubring.kbx"
mv "$T/pgp/pubring.kbx.aside" "$T/pgp/gnupg/pubring.kbx"
check "fault: the three RCPT took ($(tr '\n' ' ' <"$T/fault.out"))" \
    [ "$(grep -c '^RCPT .* 250$' "$T/fault.out")" -eq 3 ]
check "fault: 451 for the whole message" grep -q '^DATA 451 ' "$T/fault.out"
check "fault: the clear and S/MIME copies were staged, then taken back" \
    [ "$(grep -c 'TempFailed.*split from' "$T/q.log")" -eq 3 ]
sleep 1
check "fault: nothing more at the sink ($(sink_count sink))" \
    [ "$(sink_count sink)" -eq "$n0" ]
check "fault: nothing left in the spool" \
    [ -z "$(find "$T/spool/tmp" "$T/spool/queue" -type f 2>/dev/null)" ]

# --- stream_header (X-Relaychain-Stream) is removed from each copy of a
# split message, the encrypted one's entity too
n0=$(sink_count sink)
{
    printf 'X-Relaychain-Stream: alerts\n'
    cat "$T/m1.swaks"
} >"$T/m2.swaks"
timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.net,zed@example.net \
    --data "$T/m2.swaks" >"$T/stream.swaks" 2>&1
check "stream: one 250" grep -q '<- *250 2.0.0 Ok: queued as' "$T/stream.swaks"
check "stream: two copies" sink_wait sink $((n0 + 2)) 30
check "stream: the believed stream is logged" grep -q 'stream=alerts, from X-Relaychain-Stream' "$T/q.log"
check "stream: no copy at the sink has it (zed's is clear)" \
    sh -c "! grep -qi '^X-Relaychain-Stream' '$T'/sink/msg.*"
rcd_stop q

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.out "$T/q.log"; do
        [ -s "$f" ] && { echo "== $f"; tail -n 40 "$f"; }
    done
fi
finish
