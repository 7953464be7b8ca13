#!/bin/sh
# disclaimer_order - a disclaimer after DKIM signing is refused; before
# it, the footer is part of what is signed
#
# Real chain.d files with the dkim stage (a fresh RSA key made with
# openssl) and the disclaimer stage of tests/data/disclaimer/:
#   - dkim at 10, disclaimer at 20: "relaychain check" exits 1 and names
#     both files (the chain's order rule);
#   - disclaimer at 10, dkim at 20: it loads, "relaychain filter" adds
#     the footer and signs, and an independent verifier (python3-dkim,
#     with the public key served from this script, not DNS) accepts the
#     signature over the decorated message.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
data=$top_srcdir/tests/data/disclaimer

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$T/dkim.pem" 2>/dev/null
chmod 600 "$T/dkim.pem"
pub=$(openssl pkey -in "$T/dkim.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
if [ -z "$pub" ]; then
    fail "could not make a DKIM key"
    finish
fi

dkim_conf="stage = dkim
domain = example.com
selector = s2026
key_file = $T/dkim.pem
"
disc_conf="stage = disclaimer
text_file = $data/templates/legal-en.txt
html_file = $data/templates/legal-en.html
"

# Signing first, then the disclaimer: refused.
mkdir -p "$T/bad/chain.d"
printf 'chain_directory = chain.d\n' >"$T/bad/relaychain.conf"
printf '%s' "$dkim_conf" >"$T/bad/chain.d/10-dkim.conf"
printf '%s' "$disc_conf" >"$T/bad/chain.d/20-disclaimer.conf"
"$RC" check -c "$T/bad/relaychain.conf" >/dev/null 2>"$T/bad.err"
rc=$?
check "disclaimer after dkim: check exits 1 (got $rc)" [ "$rc" -eq 1 ]
check "the error names the disclaimer file ($(cat "$T/bad.err"))" grep -q '20-disclaimer.conf' "$T/bad.err"
check "the error names the signing file" grep -q '10-dkim.conf' "$T/bad.err"
check "the error says why" grep -q 'edits the body after the signing stage' "$T/bad.err"
printf 'From: alice@example.com\nTo: bob@example.net\nSubject: x\n\nHi.\n' >"$T/msg.eml"
"$RC" filter -c "$T/bad/relaychain.conf" <"$T/msg.eml" >"$T/bad.out" 2>/dev/null
rc=$?
check "filter with that chain does not pass mail (exit $rc)" [ "$rc" -ne 0 ]
check "nothing written" [ ! -s "$T/bad.out" ]

# The disclaimer first: signed with the footer in it.
mkdir -p "$T/good/chain.d"
printf 'chain_directory = chain.d\n' >"$T/good/relaychain.conf"
printf '%s' "$disc_conf" >"$T/good/chain.d/10-disclaimer.conf"
printf '%s' "$dkim_conf" >"$T/good/chain.d/20-dkim.conf"
"$RC" check -c "$T/good/relaychain.conf" >"$T/good.check" 2>&1
check "disclaimer before dkim loads ($(tail -n 3 "$T/good.check"))" [ $? -eq 0 ]
cat >"$T/msg.eml" <<'EOF'
From: Alice <alice@example.com>
To: Bob <bob@example.net>
Subject: Figures
Date: Thu, 26 Nov 2026 10:00:00 +0000
Message-ID: <figures@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-1"

--alt-1
Content-Type: text/plain; charset=utf-8

Hello Bob.
--alt-1
Content-Type: text/html; charset=utf-8

<html><body><p>Hello Bob.</p></body></html>
--alt-1--
EOF
"$RC" filter -v -c "$T/good/relaychain.conf" --from alice@example.com \
    --rcpt bob@example.net <"$T/msg.eml" >"$T/good.out" 2>"$T/good.log"
check "filter exits 0 ($(cat "$T/good.log"))" [ $? -eq 0 ]
check "the footer is in" grep -q 'Vertraulich' "$T/good.out"
check "the message is signed" grep -q '^DKIM-Signature:' "$T/good.out"
check "python3-dkim verifies the signature over the footer" \
    "$PY" -c 'import dkim, sys
pub = sys.argv[2].encode()
def dns(name, timeout=5):
    return b"v=DKIM1; k=rsa; p=" + pub if name == b"s2026._domainkey.example.com." else None
sys.exit(0 if dkim.verify(open(sys.argv[1], "rb").read(), dnsfunc=dns) else 1)' \
    "$T/good.out" "$pub"
finish
