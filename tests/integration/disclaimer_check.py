"""disclaimer_check - judge one message before and after the disclaimer stage

    disclaimer_check.py [--prepend] TEXT_FOOTER HTML_FOOTER IN OUT

TEXT_FOOTER and HTML_FOOTER hold the expanded footers (UTF-8). IN is the
message as sent, OUT what "relaychain filter" wrote. The checks use
Python's email package (policy.default), which shares no code with GMime:

- OUT parses, and no part of OUT has a defect (a message that comes out
  byte for byte is not judged: it is the sender's);
- no line of OUT is over 998 octets unless IN had it; a message with
  only CRLF line ends keeps only CRLF, one with only LF gets no CR;
- the parts of OUT line up with those of IN (one more when a footer part
  was added, a wrapping multipart/mixed when the message was wrapped);
  a part that is not decorated is byte for byte the part of IN;
- a decorated text/plain part decodes to IN's text plus the footer (the
  footer first with --prepend), a decorated text/html part to IN's HTML
  with the footer put before the last </body> (or at the end); the
  footer may be in the part's own charset or, in HTML, with numeric
  character references; a format=flowed part gets a space-stuffed
  footer without trailing spaces; a decorated part has no defect;
- an added part is text/plain holding exactly the footer.

Prints "decorated=TYPES added=0|1 identical=0|1" and exits 0, or prints
"FAIL: ..." lines and exits 1.
"""

import email
import email.policy
import re
import sys

FAIL = []


def fail(why):
    FAIL.append(why)


def head_body(raw):
    """Split raw bytes at the first empty line (CRLF or LF)."""
    m = re.search(rb"\r?\n\r?\n", raw)
    if raw.startswith(b"\n") or raw.startswith(b"\r\n"):
        return b"", raw[raw.index(b"\n") + 1:]
    if m is None:
        return raw, b""
    return raw[:m.start() + (2 if raw[m.start()] == 0x0D else 1)], raw[m.end():]


def split_multipart(body, boundary):
    """The raw parts of a multipart body, as RFC 2046 delimits them."""
    delim = re.compile(rb"^--" + re.escape(boundary.encode()) +
                       rb"(--)?[ \t]*\r?$")
    lines = body.split(b"\n")
    parts, cur, inside, offset = [], None, False, 0
    starts = []
    for i, line in enumerate(lines):
        m = delim.match(line)
        if m:
            if inside:
                # The line end before the delimiter belongs to it.
                end = offset - 1
                if end > 0 and body[end - 1:end] == b"\r":
                    end -= 1
                parts.append(body[cur:max(end, cur)])
            if m.group(1):
                inside = False
                break
            inside = True
            cur = offset + len(line) + 1
        offset += len(line) + 1
    return parts


def leaves(part, raw):
    """(part, raw bytes) of every leaf, in order; message/* is a leaf."""
    if part.get_content_maintype() == "multipart":
        _, body = head_body(raw)
        chunks = split_multipart(body, part.get_boundary() or "")
        subs = part.get_payload()
        if len(chunks) != len(subs):
            fail("%d raw parts but %d parsed in %s" %
                 (len(chunks), len(subs), part.get_content_type()))
            return []
        out = []
        for sub, chunk in zip(subs, chunks):
            out.extend(leaves(sub, chunk))
        return out
    return [(part, raw)]


def defects(msg):
    found = set()
    for p in msg.walk():
        for d in p.defects:
            found.add(type(d).__name__)
    return found


def norm(s):
    return s.replace("\r\n", "\n")


def ncr(s):
    return "".join(c if ord(c) < 128 else "&#%d;" % ord(c) for c in s)


def flowed_footer(f):
    out = []
    for line in f.split("\n"):
        if line != "-- ":
            line = line.rstrip(" ")
        if line.startswith((" ", ">", "From ")):
            line = " " + line
        out.append(line)
    return "\n".join(out)


def text_of(part):
    try:
        return norm(part.get_content())
    except (LookupError, UnicodeError) as e:
        fail("%s does not decode: %s" % (part.get_content_type(), e))
        return None


def check_decorated(pin, pout, text_footer, html_footer, prepend):
    kind = pout.get_content_type()
    old, new = text_of(pin), text_of(pout)
    if old is None or new is None:
        return
    if pout.defects:
        fail("decorated %s has defects %s" % (kind, pout.defects))
    if kind == "text/plain":
        foot = text_footer.strip("\n")
        if pout.get_param("format", "").lower() == "flowed":
            foot = flowed_footer(foot)
        if prepend:
            rest = new.lstrip("\n")
            ok = rest.startswith(foot) and \
                rest[len(foot):].lstrip("\n") == old.lstrip("\n")
        else:
            ok = new.startswith(old) and new[len(old):].strip("\n") == foot
        if not ok:
            fail("text/plain: decoded text is not the old text plus the "
                 "footer:\n--- old tail %r\n--- new tail %r" %
                 (old[-120:], new[-240:]))
        return
    if kind != "text/html":
        fail("decorated part is %s" % kind)
        return
    for foot in (html_footer.strip("\n"), ncr(html_footer.strip("\n"))):
        if prepend:
            m = re.search(r"<body[^>]*>", old, re.I)
            at = m.end() if m else 0
            want = old[:at] + foot + "\n" + old[at:]
        else:
            at = old.lower().rfind("</body")
            if at >= 0:
                want = old[:at] + foot + "\n" + old[at:]
            elif old == "" or old.endswith("\n"):
                want = old + foot + ("\n" if old else "")
            else:
                want = old + "\n" + foot
        if new == want or new.rstrip("\n") == want.rstrip("\n"):
            return
    fail("text/html: the footer is not where it belongs:\n--- new %r" %
         new[-400:])


def main(argv):
    prepend = False
    if argv and argv[0] == "--prepend":
        prepend = True
        argv = argv[1:]
    if len(argv) != 4:
        print("usage: disclaimer_check.py [--prepend] TEXT HTML IN OUT",
              file=sys.stderr)
        return 2
    text_footer = norm(open(argv[0], encoding="utf-8").read())
    html_footer = norm(open(argv[1], encoding="utf-8").read())
    raw_in = open(argv[2], "rb").read()
    raw_out = open(argv[3], "rb").read()

    if raw_in == raw_out:
        print("decorated= added=0 identical=1")
        return 0

    parse = email.message_from_bytes
    min_ = parse(raw_in, policy=email.policy.default)
    mout = parse(raw_out, policy=email.policy.default)
    found = defects(mout)
    if found:
        fail("defects: %s" % ", ".join(sorted(found)))

    long_in = {l for l in raw_in.split(b"\n") if len(l.rstrip(b"\r")) > 998}
    for l in raw_out.split(b"\n"):
        if len(l.rstrip(b"\r")) > 998 and l not in long_in:
            fail("line of %d octets" % len(l.rstrip(b"\r")))
            break
    if b"\r" not in raw_in and b"\r" in raw_out:
        fail("CR in the output of an LF message")
    if re.search(rb"(?<!\r)\n", raw_in) is None and \
            re.search(rb"(?<!\r)\n", raw_out) is not None:
        fail("bare LF in the output of a CRLF message")

    hin, _ = head_body(raw_in)
    hout, _ = head_body(raw_out)

    def fields(h):
        return [f for f in re.split(rb"\r?\n(?![ \t])", h)
                if f and not f.lower().startswith((b"content-",
                                                   b"mime-version"))]

    if fields(hin) != fields(hout):
        fail("header fields other than Content-* and MIME-Version changed")

    wrapped = (mout.get_content_type() == "multipart/mixed" and
               (mout.get_boundary() or "").startswith("=_disclaimer_") and
               min_.get_boundary() != mout.get_boundary())
    lin = leaves(min_, raw_in)
    lout = leaves(mout, raw_out)
    if FAIL:
        return report()

    added = 0
    if len(lout) == len(lin) + 1:
        # The footer part: text/plain, holding the footer and nothing else.
        for i, (p, _) in enumerate(lout):
            if p.get_content_type() == "text/plain" and \
                    norm(p.get_content()).strip("\n") == \
                    text_footer.strip("\n") and \
                    (i >= len(lin) or lin[i][1] != lout[i][1]):
                del lout[i]
                added = 1
                break
        if not added:
            fail("one part more, but none is the footer")
            return report()
    elif len(lout) != len(lin):
        fail("%d parts in, %d out" % (len(lin), len(lout)))
        return report()

    decorated = []
    for (pin, rin), (pout, rout) in zip(lin, lout):
        if rin == rout:
            continue
        if wrapped and len(lin) == 1:
            # The whole message became the first part: same content type,
            # same decoded content.
            if pin.get_content_type() != pout.get_content_type() or \
                    pin.get_payload(decode=True) != \
                    pout.get_payload(decode=True):
                fail("the wrapped message changed")
            continue
        if pin.get_content_type() != pout.get_content_type():
            fail("part type %s became %s" % (pin.get_content_type(),
                                             pout.get_content_type()))
            continue
        check_decorated(pin, pout, text_footer, html_footer, prepend)
        decorated.append(pout.get_content_type())
    if len(decorated) != len(set(decorated)):
        fail("more than one part of one type decorated: %s" % decorated)
    if not FAIL:
        print("decorated=%s added=%d identical=0" %
              (",".join(decorated), added))
    return report()


def report():
    for f in FAIL:
        print("FAIL: %s" % f)
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
