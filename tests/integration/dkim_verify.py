#!/usr/bin/python3
# dkim_verify.py - check signed messages with dkimpy, keys from zone files
#
#   dkim_verify.py [--seven-bit ORIGINAL_DIR] ZONE.txt... -- MESSAGE...
#
# Each ZONE.txt is a DNS TXT record in zone-file form, as written by
# "relaychain dkim keygen" or opendkim-genkey; its owner name's first label
# is the selector. dkimpy's DNS lookups are answered from these records by
# selector, whatever the domain, and never reach DNS.
#
# For each MESSAGE, every DKIM-Signature whose s= is one of the selectors
# must verify; a message without one fails. With --seven-bit, the message
# is also compared with ORIGINAL_DIR/<same name>: every leaf part must
# decode to the same octets as before, no part may be labelled 8bit or
# binary, no line may pass 998 octets, and the body of a part whose
# content was re-encoded must be 7-bit.
#
# Prints one line per signature ("PASS name s=.. a=..") and exits 1 when
# anything failed. Debian's python3-dkim and python3-nacl (Ed25519).
import email
import email.policy
import os
import re
import sys

import dkim


def load_zone(path):
    text = open(path, encoding="ascii").read()
    owner = text.split()[0]
    selector = owner.split(".")[0]
    # The quoted strings, without the comment after the closing paren.
    record = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text.split(")")[0]))
    return selector, record.encode("ascii")


def leaves(msg):
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            continue
        out.append((ctype, part.get_payload(decode=True) or b""))
    return out


def seven_bit_problems(raw, signed_msg, original_msg):
    problems = []
    for line in raw.split(b"\n"):
        if len(line.rstrip(b"\r")) > 998:
            problems.append("line over 998 octets")
            break
    for part in signed_msg.walk():
        cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
        if cte in ("8bit", "binary"):
            problems.append("a part is still labelled %s" % cte)
        if not part.is_multipart() and cte in ("quoted-printable", "base64"):
            body = part.get_payload(decode=False)
            if isinstance(body, str) and any(ord(c) > 127 for c in body):
                problems.append("8-bit octets in an encoded part")
    before, after = leaves(original_msg), leaves(signed_msg)
    if len(before) != len(after):
        problems.append("%d leaf parts before, %d after" % (len(before), len(after)))
    else:
        for i, ((t1, b1), (t2, b2)) in enumerate(zip(before, after)):
            norm1 = b1.replace(b"\r\n", b"\n")
            norm2 = b2.replace(b"\r\n", b"\n")
            # QP cannot end content without a line end that the original
            # lacked; compare without trailing line ends.
            if t1 != t2 or norm1.rstrip(b"\n") != norm2.rstrip(b"\n"):
                problems.append("part %d (%s) decodes differently" % (i + 1, t1))
    return problems


def main(argv):
    original_dir = None
    if len(argv) > 2 and argv[1] == "--seven-bit":
        original_dir = argv[2]
        argv = argv[:1] + argv[3:]
    if "--" not in argv:
        print("usage: dkim_verify.py [--seven-bit DIR] ZONE... -- MESSAGE...",
              file=sys.stderr)
        return 2
    sep = argv.index("--")
    records = dict(load_zone(z) for z in argv[1:sep])

    def dnsfunc(name, timeout=5):
        label = name.decode("ascii", "replace").split(".")[0]
        return records.get(label, b"")

    failed = 0
    for path in argv[sep + 1:]:
        name = os.path.basename(path)
        raw = open(path, "rb").read()
        d = dkim.DKIM(raw)
        ours = 0
        sigs = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
        for idx, value in enumerate(sigs):
            tags = dkim.util.parse_tag_value(re.sub(rb"\s+", b"", value))
            sel = tags.get(b"s", b"").decode("ascii", "replace")
            if sel not in records:
                continue
            ours += 1
            alg = tags.get(b"a", b"").decode("ascii", "replace")
            try:
                ok = dkim.DKIM(raw).verify(idx=idx, dnsfunc=dnsfunc)
                why = ""
            except dkim.DKIMException as exc:
                ok, why = False, " (%s)" % exc
            print("%s %s s=%s a=%s%s" % ("PASS" if ok else "FAIL", name, sel,
                                         alg, why))
            failed += 0 if ok else 1
        if ours == 0:
            print("FAIL %s: no signature of ours" % name)
            failed += 1
        if original_dir is not None:
            orig = open(os.path.join(original_dir, name), "rb").read()
            policy = email.policy.compat32
            problems = seven_bit_problems(
                raw, email.message_from_bytes(raw, policy=policy),
                email.message_from_bytes(orig, policy=policy))
            for p in problems:
                print("FAIL %s: %s" % (name, p))
            failed += len(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
