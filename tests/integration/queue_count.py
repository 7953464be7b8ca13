#!/usr/bin/python3
"""queue_count - compare what a sink received with what was acknowledged

    queue_count.py SINKDIR ACCEPTED_FILE [PREFIX]

Reads every smtp-sink dump file (msg.*) in SINKDIR with an X-Test-Id
header (of PREFIX-, when given) and checks that its body is whole: every
numbered line queue_load.py wrote, in order, and the END line with the
right count. Prints one line

    accepted=A delivered=D lost=L duplicates=X unacknowledged=U broken=B

where lost are acknowledged ids that never arrived, duplicates extra
copies, unacknowledged ids that arrived without their 250 having been
seen by the client (allowed: the relay died after committing), and
broken messages that arrived incomplete. Exits 1 when lost or broken is
not 0. Only the standard library, run as /usr/bin/python3.
"""
import collections
import os
import re
import sys

LINE = re.compile(rb"^(\S+) line (\d{5}) the quick brown fox jumps over "
                  rb"the lazy dog$")


def whole(mid, text):
    head, sep, body = text.partition(b"\n\n")
    if not sep:
        return False
    lines = [l.rstrip(b"\r") for l in body.split(b"\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        return False
    m = re.match(rb"^END (\S+) LINES (\d+)$", lines[-1])
    if not m or m.group(1) != mid or int(m.group(2)) != len(lines) - 1:
        return False
    for k, l in enumerate(lines[:-1]):
        lm = LINE.match(l)
        if not lm or lm.group(1) != mid or int(lm.group(2)) != k:
            return False
    return True


def main():
    sink, accepted_file = sys.argv[1], sys.argv[2]
    prefix = (sys.argv[3] + "-").encode() if len(sys.argv) > 3 else b""
    with open(accepted_file) as f:
        accepted = set(l.strip() for l in f if l.strip())
    got = collections.Counter()
    broken = 0
    for name in os.listdir(sink):
        if not name.startswith("msg."):
            continue
        with open(os.path.join(sink, name), "rb") as f:
            text = f.read().replace(b"\r\n", b"\n")
        m = re.search(rb"^X-Test-Id: (\S+)$", text, re.M)
        if not m or not m.group(1).startswith(prefix):
            continue
        mid = m.group(1)
        if not whole(mid, text):
            broken += 1
            print("broken: %s in %s" % (mid.decode(), name), file=sys.stderr)
        got[mid.decode()] += 1
    lost = sorted(accepted - set(got))
    dups = sum(c - 1 for c in got.values())
    unacked = len(set(got) - accepted)
    print("accepted=%d delivered=%d lost=%d duplicates=%d unacknowledged=%d "
          "broken=%d" % (len(accepted), len(got), len(lost), dups, unacked,
                         broken))
    for mid in lost[:20]:
        print("lost: %s" % mid, file=sys.stderr)
    return 1 if lost or broken else 0


if __name__ == "__main__":
    sys.exit(main())
