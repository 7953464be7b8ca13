#!/usr/bin/python3
"""dsn_check - check one delivery status notification as a mail reader would

    dsn_check.py FILE --action ACTION --rcpt ADDR [--status X.Y.Z]
                 [--diag TEXT] [--orcpt TYPE;ADDR] [--envid ID]
                 [--returned-subject TEXT] [--full]

FILE is a message as smtp-sink dumped it (its X-* lines are ordinary
header fields). It is parsed with Python's email package, and must be an
RFC 3464 report: multipart/report with report-type=delivery-status, a
text/plain first part, a message/delivery-status part whose first block
has Reporting-MTA and Arrival-Date and whose recipient block for ADDR
has Final-Recipient "rfc822; ADDR", the Action, the Status, a
Diagnostic-Code containing TEXT and Original-Recipient TYPE;ADDR when
asked; Original-Envelope-Id ID when asked; and the returned original:
text/rfc822-headers (message/rfc822 with --full) whose Subject is TEXT.
No other recipient block may name ADDR twice. Prints "ok" or every
problem, one a line, and exits 1 on any. Run as /usr/bin/python3.
"""
import argparse
import email
import email.policy
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--action", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--status")
    ap.add_argument("--diag")
    ap.add_argument("--orcpt")
    ap.add_argument("--envid")
    ap.add_argument("--returned-subject")
    ap.add_argument("--full", action="store_true")
    a = ap.parse_args()
    problems = []
    with open(a.file, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        problems.append("type is %s" % msg.get_content_type())
    if msg.get_param("report-type") != "delivery-status":
        problems.append("report-type is %s" % msg.get_param("report-type"))
    if msg.defects:
        problems.append("defects: %s" % msg.defects)
    parts = msg.get_payload() if msg.is_multipart() else []
    if len(parts) != 3:
        problems.append("%d parts, want 3" % len(parts))
        print("\n".join(problems))
        return 1
    if parts[0].get_content_type() != "text/plain":
        problems.append("first part is %s" % parts[0].get_content_type())
    if parts[1].get_content_type() != "message/delivery-status":
        problems.append("second part is %s" % parts[1].get_content_type())
    blocks = parts[1].get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        problems.append("delivery-status has no recipient block")
        blocks = [{}, {}]
    first = blocks[0]
    for field in ("Reporting-MTA", "Arrival-Date"):
        if not first.get(field):
            problems.append("no %s" % field)
    if a.envid is not None and first.get("Original-Envelope-Id") != a.envid:
        problems.append("Original-Envelope-Id is %r, want %r" %
                        (first.get("Original-Envelope-Id"), a.envid))
    mine = [b for b in blocks[1:]
            if (b.get("Final-Recipient") or "").replace(" ", "").lower() ==
            "rfc822;" + a.rcpt.lower()]
    if len(mine) != 1:
        problems.append("%d recipient blocks for %s, want 1 (blocks: %s)" %
                        (len(mine), a.rcpt,
                         [b.get("Final-Recipient") for b in blocks[1:]]))
    else:
        b = mine[0]
        if b.get("Action") != a.action:
            problems.append("Action is %r, want %r" % (b.get("Action"),
                                                       a.action))
        if a.status and b.get("Status") != a.status:
            problems.append("Status is %r, want %r" % (b.get("Status"),
                                                       a.status))
        if a.diag and a.diag not in (b.get("Diagnostic-Code") or ""):
            problems.append("Diagnostic-Code %r lacks %r" %
                            (b.get("Diagnostic-Code"), a.diag))
        if a.orcpt and (b.get("Original-Recipient") or "").replace(
                " ", "") != a.orcpt:
            problems.append("Original-Recipient is %r, want %r" %
                            (b.get("Original-Recipient"), a.orcpt))
    want = "message/rfc822" if a.full else "text/rfc822-headers"
    if parts[2].get_content_type() != want:
        problems.append("third part is %s, want %s" %
                        (parts[2].get_content_type(), want))
    elif a.returned_subject is not None:
        if a.full:
            inner = parts[2].get_payload()[0]
            subject = inner.get("Subject")
        else:
            inner = email.message_from_bytes(
                parts[2].get_payload(decode=True), policy=email.policy.default)
            subject = inner.get("Subject")
        if subject != a.returned_subject:
            problems.append("returned Subject is %r, want %r" %
                            (subject, a.returned_subject))
    if problems:
        print("\n".join(problems))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
