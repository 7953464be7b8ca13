#!/usr/bin/python3
"""smtp_send - submit one message file over SMTP, as a mail client would

    smtp_send.py PORT FILE [SENDER [RECIPIENT]]

Connects to 127.0.0.1:PORT, says EHLO client.test.example and sends FILE
from SENDER (default sender@example.com) to RECIPIENT (default
rcpt@example.net). Every line end of FILE goes out as CRLF, and MAIL
carries BODY=8BITMIME when FILE has an octet over 127. Exits 0 when the
message was accepted; otherwise prints smtplib's error and exits 1.
"""
import smtplib
import sys


def main(argv):
    if len(argv) < 3:
        print("usage: smtp_send.py PORT FILE [SENDER [RECIPIENT]]",
              file=sys.stderr)
        return 2
    port, path = int(argv[1]), argv[2]
    sender = argv[3] if len(argv) > 3 else "sender@example.com"
    rcpt = argv[4] if len(argv) > 4 else "rcpt@example.net"
    raw = open(path, "rb").read().replace(b"\r\n", b"\n")
    raw = raw.replace(b"\n", b"\r\n")
    opts = ["BODY=8BITMIME"] if any(c > 127 for c in raw) else []
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.test.example")
            s.sendmail(sender, [rcpt], raw, mail_options=opts)
    except (smtplib.SMTPException, OSError) as exc:
        print("%s: %r" % (type(exc).__name__, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
