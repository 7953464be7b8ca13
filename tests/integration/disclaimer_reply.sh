#!/bin/sh
# disclaimer_reply - a reply that quotes a footer gets no second copy
#
# Alice's message (text and HTML) goes through the disclaimer chain of
# tests/data/disclaimer/ and gets the footer. Bob's mail program then
# replies the ways real ones do, made here with Python's email package:
#   1. plain text quoted with "> " and re-wrapped at 72 columns, plus the
#      HTML original in a <blockquote>;
#   2. format=flowed; delsp=yes, the quoted text broken inside words by
#      soft line breaks, quoted ">" without space (RFC 3676);
#   3. quoted-printable UTF-8 text with nested quotes ("> > ").
# Each reply goes through the chain as Bob (another sender, so the
# footer's %{sender} differs): it must come out byte for byte, with the
# log saying the footer is already present, and its text must hold the
# footer's fixed text once. With once_per_thread = no the same reply gets
# a second footer, so the check above can fail.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
data=$top_srcdir/tests/data/disclaimer
conf=$data/relaychain.conf

cat >"$T/orig.eml" <<'EOF'
From: Alice <alice@example.com>
To: Bob <bob@example.org>
Subject: Figures
Date: Thu, 26 Nov 2026 10:00:00 +0000
Message-ID: <figures@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-1"

--alt-1
Content-Type: text/plain; charset=utf-8

Hello Bob,
the quarterly figures are in the shared folder.
--alt-1
Content-Type: text/html; charset=utf-8

<html><body><p>Hello Bob,</p><p>the quarterly figures are in the shared folder.</p></body></html>
--alt-1--
EOF
"$RC" filter -c "$conf" --from alice@example.com --rcpt bob@example.org \
    <"$T/orig.eml" >"$T/sent.eml" 2>"$T/err"
check "the original gets the footer" grep -q 'Vertraulich' "$T/sent.eml"

"$PY" - "$T/sent.eml" "$T" <<'EOF'
import email, email.policy, sys, textwrap
from email.message import EmailMessage
sent = email.message_from_binary_file(open(sys.argv[1], "rb"),
                                      policy=email.policy.default)
text = sent.get_body(("plain",)).get_content()
html = sent.get_body(("html",)).get_content()
out = sys.argv[2]

def reply():
    m = EmailMessage()
    m["From"] = "Bob <bob@example.org>"
    m["To"] = "Alice <alice@example.com>"
    m["Subject"] = "Re: Figures"
    m["In-Reply-To"] = "<figures@example.com>"
    return m

# 1. "> " quoting re-wrapped at 72 columns, HTML in a blockquote.
quoted = []
for line in text.splitlines():
    for w in textwrap.wrap(line, 70) or [""]:
        quoted.append("> " + w)
m = reply()
m.set_content("Thanks, got them.\n\nOn Thursday Alice wrote:\n" +
              "\n".join(quoted) + "\n")
body = html.split("<body>", 1)[1].rsplit("</body>", 1)[0]
m.add_alternative("<html><body><p>Thanks, got them.</p><blockquote>" + body +
                  "</blockquote></body></html>\n", subtype="html")
open(out + "/reply1.eml", "wb").write(bytes(m))

# 2. format=flowed; delsp=yes: soft breaks inside words, ">" quoting.
lines = []
for line in text.splitlines():
    while len(line) > 20:
        lines.append(">" + line[:17] + " ")   # soft break, space deleted
        line = line[17:]
    lines.append(">" + line)
raw = ("From: Bob <bob@example.org>\nTo: Alice <alice@example.com>\n"
       "Subject: Re: Figures\nMIME-Version: 1.0\n"
       "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\n"
       "Content-Transfer-Encoding: 8bit\n\nThanks.\n\n" +
       "\n".join(lines) + "\n")
open(out + "/reply2.eml", "wb").write(raw.encode("utf-8"))

# 3. quoted-printable with nested quotes.
m = reply()
m.set_content("Forwarding my notes.\n\n> > " +
              "\n> > ".join(text.splitlines()) + "\n",
              charset="utf-8", cte="quoted-printable")
open(out + "/reply3.eml", "wb").write(bytes(m))
EOF

# count FILE: how often the footer's fixed text is in the decoded text of
# the message's text parts (quote markers and line breaks taken out).
count() {
    "$PY" - "$1" <<'EOF'
import email, email.policy, re, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"),
                                   policy=email.policy.default)
n = 0
for p in m.walk():
    if p.get_content_type() == "text/plain":
        t = p.get_content()
        if (p.get_param("delsp") or "").lower() == "yes":
            t = re.sub(r" \n>*", "", t)
        t = re.sub(r"(?m)^[> ]+", "", t)
        n += " ".join(t.split()).count("meant for its addressees only")
print(n)
EOF
}

for r in reply1 reply2 reply3; do
    "$RC" filter -v -c "$conf" --from bob@example.org --rcpt alice@example.com \
        <"$T/$r.eml" >"$T/$r.out" 2>"$T/$r.log"
    check "$r: exit 0" [ $? -eq 0 ]
    check "$r: no second footer, byte for byte" cmp -s "$T/$r.eml" "$T/$r.out"
    check "$r: logged as already present ($(sed -n 's/.*disclaimer: //p' "$T/$r.log"))" \
        grep -q 'disclaimer: continue, skipped (text/plain: footer already present' "$T/$r.log"
    check "$r: the footer text once" [ "$(count "$T/$r.out")" = 1 ]
done
check "reply1: the HTML half is recognized too" \
    grep -q 'text/html: footer already present' "$T/reply1.log"

# The same reply with once_per_thread = no gets a second footer.
mkdir -p "$T/no/chain.d"
printf 'chain_directory = chain.d\n' >"$T/no/relaychain.conf"
printf 'stage = disclaimer\ntext_file = %s\nhtml_file = %s\nonce_per_thread = no\n' \
    "$data/templates/legal-en.txt" "$data/templates/legal-en.html" \
    >"$T/no/chain.d/10-disclaimer.conf"
"$RC" filter -c "$T/no/relaychain.conf" --from bob@example.org \
    --rcpt alice@example.com <"$T/reply1.eml" >"$T/reply1.no" 2>"$T/err"
check "once_per_thread = no: a second footer" [ "$(count "$T/reply1.no")" = 2 ]
finish
