#!/bin/sh
# dkim_filter - the dkim stage through "relaychain filter": which mail is
# signed (the match condition, the signing domain), the log lines, mail
# already signed by us, lines over 998 octets, and "check" output.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
here=$top_srcdir/tests/integration

mkdir -p "$T/chain.d/dkim"
"$RC" dkim keygen -d example.com -s mail2026 -D "$T/chain.d/dkim" \
    >/dev/null 2>&1 || fail "keygen"
printf 'chain_directory = chain.d\n' >"$T/relaychain.conf"
cat >"$T/chain.d/90-dkim.conf" <<'CONF'
stage = dkim
domain = example.com
selector = mail2026
key_file = dkim/mail2026.private
# only authenticated clients
match_auth = yes
CONF
cat >"$T/in.eml" <<'MSG'
From: "Alice Example" <alice@example.com>
To: bob@example.net
Subject: figures
Date: Thu, 26 Nov 2026 10:00:00 +0000
Message-ID: <20261126100000.1@example.com>

The figures are attached.
MSG

# Authenticated: signed, with the log line the issue asks for.
"$RC" filter -c "$T/relaychain.conf" --auth alice --qid 6A0F3C21B7 -v \
    <"$T/in.eml" >"$T/signed.eml" 2>"$T/log1"; rc=$?
check "authenticated: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "authenticated: log line (got: $(cat "$T/log1"))" grep -q \
    "6A0F3C21B7: dkim: continue, signed, d=example.com, s=mail2026, a=rsa-sha256, [0-9]*ms$" "$T/log1"
check "authenticated: the signature comes first" sh -c \
    'head -n 1 "$1" | grep -q "^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;"' - "$T/signed.eml"
check "authenticated: verifies with dkimpy" $PY "$here/dkim_verify.py" \
    "$T/chain.d/dkim/mail2026.txt" -- "$T/signed.eml"
check "only the signature was added" sh -c \
    'awk "NR == 1 && /^DKIM-Signature:/ {skip = 1; next}
          skip && /^[ \t]/ {next} {skip = 0; print}" "$1" | cmp -s - "$2"' \
    - "$T/signed.eml" "$T/in.eml"

# Not authenticated: the stage does not apply.
"$RC" filter -c "$T/relaychain.conf" --explain <"$T/in.eml" >"$T/plain.eml" 2>"$T/explain"; rc=$?
check "unauthenticated: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "unauthenticated: message unchanged" cmp -s "$T/in.eml" "$T/plain.eml"
check "unauthenticated: explain says skipped" grep -q "dkim .*skipped" "$T/explain"

# A domain without a key: passed on unsigned, with the reason.
sed 's/alice@example.com/carol@example.org/' "$T/in.eml" >"$T/other.eml"
"$RC" filter -c "$T/relaychain.conf" --auth carol -v <"$T/other.eml" >"$T/other.out" 2>"$T/log2"; rc=$?
check "no key: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "no key: log line (got: $(cat "$T/log2"))" grep -q \
    "NOQUEUE: dkim: continue, not signed (no key for example.org), [0-9]*ms$" "$T/log2"
check "no key: message unchanged" cmp -s "$T/other.eml" "$T/other.out"

# Signed once only: our own signature for d= and s= is already there.
"$RC" filter -c "$T/relaychain.conf" --auth alice -v <"$T/signed.eml" >"$T/again.eml" 2>"$T/log3"; rc=$?
check "again: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "again: not signed twice (got: $(cat "$T/log3"))" grep -q \
    "dkim: continue, not signed (already signed, d=example.com, s=mail2026)" "$T/log3"
check "again: message unchanged" cmp -s "$T/signed.eml" "$T/again.eml"

# The signing domain from the envelope instead of From.
sed -i 's/^match_auth = yes/signing_domain = envelope/' "$T/chain.d/90-dkim.conf"
"$RC" filter -c "$T/relaychain.conf" --from bounces@example.com --rcpt bob@example.net \
    -v <"$T/other.eml" >"$T/env.eml" 2>"$T/log4"; rc=$?
check "envelope: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "envelope: d= from MAIL FROM" grep -q "signed, d=example.com" "$T/log4"
check "envelope: verifies" $PY "$here/dkim_verify.py" "$T/chain.d/dkim/mail2026.txt" -- "$T/env.eml"

# 8-bit body: re-encoded before signing, and said so.
sed -i 's/^signing_domain = envelope/signing_domain = from/' "$T/chain.d/90-dkim.conf"
printf 'From: alice@example.com\nSubject: caf\303\251\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGr\303\274\303\237e\n' >"$T/8bit.eml"
mkdir -p "$T/out"
"$RC" filter -c "$T/relaychain.conf" -v <"$T/8bit.eml" >"$T/out/8bit.eml" 2>"$T/log5"; rc=$?
check "8bit: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "8bit: log counts the part" grep -q "signed, d=example.com, s=mail2026, a=rsa-sha256, 7bit: 1 encoded, 0 relabelled" "$T/log5"
check "8bit: quoted-printable" grep -q "^Gr=C3=BC=C3=9Fe$" "$T/out/8bit.eml"
check "8bit: label changed" grep -q "^Content-Transfer-Encoding: quoted-printable$" "$T/out/8bit.eml"
# --seven-bit compares with $T/8bit.eml: same text, no 8bit label left.
check "8bit: verifies, same text" $PY "$here/dkim_verify.py" --seven-bit "$T" \
    "$T/chain.d/dkim/mail2026.txt" -- "$T/out/8bit.eml"

# A header line over 998 octets cannot be signed safely: 554, nothing out.
{ printf 'From: alice@example.com\nX-Long: '; head -c 1200 /dev/zero | tr '\0' x; printf '\n\nbody\n'; } >"$T/long.eml"
"$RC" filter -c "$T/relaychain.conf" -v <"$T/long.eml" >"$T/long.out" 2>"$T/log6"; rc=$?
check "long header line: reject, exit 2 (got $rc)" [ "$rc" -eq 2 ]
check "long header line: 554 5.6.0" grep -q "554 5.6.0 Message has a line over 998 octets" "$T/log6"
check "long header line: nothing written" [ ! -s "$T/long.out" ]

# check shows what the stage may change; keep narrows it to signing.
"$RC" check -c "$T/relaychain.conf" >"$T/check1" 2>&1
check "check: encode may change headers and body" grep -q "may change: headers,body,signs" "$T/check1"
printf 'eight_bit_body = keep\n' >>"$T/chain.d/90-dkim.conf"
"$RC" check -c "$T/relaychain.conf" >"$T/check2" 2>&1
check "check: keep only signs" grep -q "may change: signs$" "$T/check2"

# The shipped chain with chain.d/90-dkim.conf.example enabled as it says:
# a key made by keygen, the example copied; rewrite and disclaimer run
# before the signature, which verifies.
cp -R "$top_srcdir/chain.d" "$T/shipped"
mkdir -p "$T/shipped/dkim"
"$RC" dkim keygen -d example.com -s mail2026 -D "$T/shipped/dkim" >/dev/null 2>&1
cp "$T/shipped/90-dkim.conf.example" "$T/shipped/90-dkim.conf"
printf 'chain_directory = shipped\n' >"$T/shipped.conf"
"$RC" check -c "$T/shipped.conf" >"$T/shipped.check" 2>&1; rc=$?
check "example: loads (got $rc: $(tail -n 3 "$T/shipped.check"))" [ "$rc" -eq 0 ]
check "example: dkim is the last stage" sh -c \
    'grep "^[0-9]*\. " "$1" | tail -n 1 | grep -q "^[0-9]*\. dkim (stage = dkim)"' - "$T/shipped.check"
"$RC" filter -c "$T/shipped.conf" -v <"$T/in.eml" >"$T/shipped.eml" 2>"$T/shipped.log"; rc=$?
check "example: signs (got $rc: $(cat "$T/shipped.log"))" grep -q "dkim: continue, signed, d=example.com, s=mail2026" "$T/shipped.log"
check "example: verifies after the other stages' edits" $PY "$here/dkim_verify.py" \
    "$T/shipped/dkim/mail2026.txt" -- "$T/shipped.eml"

finish
