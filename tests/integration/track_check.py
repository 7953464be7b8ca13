#!/usr/bin/python3
"""track_check - what the track stage made of a message, checked
independently of relaychain's C code

    track_check.py mkmail OUT          write the ~5 KB HTML test message
    track_check.py links MSG           print the http(s) links of MSG's
                                       HTML part, one a line
    track_check.py verify KEY HOST ORIGINAL OUT [RCPT]

verify: OUT's HTML part (decoded by Python's email package) must have
exactly the links of ORIGINAL's rewritten to https://HOST/c/TOKEN, in
order, none of the originals left, and one open pixel
https://HOST/o/TOKEN.gif before </body>; every token must carry a valid
HMAC-SHA256 tag (its first 16 octets) under KEY, name the click's
original URL, its index and the link count, and (with RCPT) the
recipient. With RCPT, OUT's List-Unsubscribe must hold a /u/ token for
RCPT and List-Unsubscribe-Post must be "List-Unsubscribe=One-Click".
The token format is read as util/track_token.h documents it.
"""
import base64
import email
import email.policy
import hashlib
import hmac
import html
import re
import struct
import sys


def mkmail(out):
    links = ["https://shop.example.com/item/%d?utm_source=news&amp;id=%d" %
             (i, i) for i in range(16)]
    links += ["http://blog.example.org/post-%d" % i for i in range(8)]
    rows = []
    for i, l in enumerate(links):
        rows.append('<tr><td style="padding:4px">Item %d: a short line of words about the season and '
                    'text about the offer. <a href="%s">Read more</a>'
                    '</td></tr>' % (i, l))
    body = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<title>News</title></head>\n<body>\n<h1>November news</h1>\n"
            "<table>\n" + "\n".join(rows) + "\n</table>\n"
            "<p>Write to <a href=\"mailto:help@example.com\">us</a>.</p>\n"
            "</body></html>\n")
    msg = email.message.EmailMessage()
    msg["From"] = "News <newsletter@example.com>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "November news"
    msg["Date"] = "Mon, 07 Dec 2026 10:00:00 +0000"
    msg["Message-ID"] = "<news-2026-11@example.com>"
    msg.set_content("November news: see the HTML version.\n"
                    "https://shop.example.com/\n")
    msg.add_alternative(body, subtype="html", cte="quoted-printable")
    data = msg.as_bytes(policy=email.policy.SMTP).replace(b"\r\n", b"\n")
    open(out, "wb").write(data)


def html_of(path):
    msg = email.message_from_binary_file(open(path, "rb"),
                                         policy=email.policy.default)
    for part in msg.walk():
        if part.get_content_type() == "text/html":
            return msg, part.get_content()
    raise SystemExit("%s: no text/html part" % path)


HREF = re.compile(r'<a\s[^>]*?href="([^"]*)"', re.I)


def links(path):
    _, text = html_of(path)
    return [html.unescape(h) for h in HREF.findall(text)
            if h.lower().startswith(("http://", "https://"))]


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def token(key, tok):
    raw = b64d(tok)
    body, tag = raw[:-16], raw[-16:]
    want = hmac.new(key, body, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(tag, want):
        raise SystemExit("token %s...: the tag does not verify" % tok[:20])
    ver, kind = body[0], chr(body[1])
    made, index, count = struct.unpack(">IHH", body[2:10])
    p, fields = 10, []
    for _ in range(5):
        n = struct.unpack(">H", body[p:p + 2])[0]
        fields.append(body[p + 2:p + 2 + n].decode())
        p += 2 + n
    if ver != 1 or p != len(body):
        raise SystemExit("token %s...: malformed" % tok[:20])
    return dict(kind=kind, made=made, index=index, count=count,
                qid=fields[0], msgid=fields[1], sender=fields[2],
                rcpt=fields[3], url=fields[4])


def verify(keyfile, host, original, out, rcpt=None):
    key = open(keyfile, "rb").read()
    want = links(original)
    msg, text = html_of(out)
    got = links(out)
    mine = "https://%s/c/" % host
    if len(got) != len(want):
        raise SystemExit("got %d links, want %d" % (len(got), len(want)))
    for i, (g, w) in enumerate(zip(got, want)):
        if not g.startswith(mine):
            raise SystemExit("link %d not rewritten: %s" % (i, g))
        t = token(key, g[len(mine):])
        if t["kind"] != "c" or t["url"] != w or t["index"] != i or \
                t["count"] != len(want):
            raise SystemExit("link %d: token %r, want url %s index %d of %d"
                             % (i, t, w, i, len(want)))
        if rcpt is not None and t["rcpt"] != rcpt:
            raise SystemExit("link %d: token names %r, want %s"
                             % (i, t["rcpt"], rcpt))
    for w in want:
        if ('href="%s"' % w) in html.unescape(text):
            raise SystemExit("an original link is left: %s" % w)
    m = re.findall(r'<img src="https://%s/o/([A-Za-z0-9_-]+)\.gif"'
                   % re.escape(host), text)
    if len(m) != 1:
        raise SystemExit("got %d open pixels, want 1" % len(m))
    if text.find(m[0]) > text.lower().rfind("</body>"):
        raise SystemExit("the pixel is after </body>")
    if token(key, m[0])["kind"] != "o":
        raise SystemExit("the pixel's token is not an open token")
    if rcpt is not None:
        lu = str(msg.get("List-Unsubscribe", ""))
        u = re.search(r"<https://%s/u/([A-Za-z0-9_-]+)>" % re.escape(host),
                      lu)
        if not u:
            raise SystemExit("no https List-Unsubscribe: %r" % lu)
        t = token(key, u.group(1))
        if t["kind"] != "u" or t["rcpt"] != rcpt:
            raise SystemExit("List-Unsubscribe token %r, want %s"
                             % (t, rcpt))
        if str(msg.get("List-Unsubscribe-Post", "")) != \
                "List-Unsubscribe=One-Click":
            raise SystemExit("no List-Unsubscribe-Post")
    print("%s: %d links rewritten, tokens verify, one pixel" % (out, len(got)))


def main(argv):
    if len(argv) >= 3 and argv[1] == "mkmail":
        mkmail(argv[2])
    elif len(argv) == 3 and argv[1] == "links":
        print("\n".join(links(argv[2])))
    elif len(argv) in (6, 7) and argv[1] == "verify":
        verify(*argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
