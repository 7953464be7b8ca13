#!/usr/bin/python3
"""queue_load - send numbered test messages and record which were accepted

    queue_load.py --port PORT --prefix P --count N --accepted FILE
                  [--sessions K] [--size OCTETS] [--rcpt ADDR]...
                  [--retry-until SECONDS] [--per-conn M]
                  [--duration SECONDS] [--refusals FILE] [--no-size]

Sends messages P-0 .. P-(N-1) to 127.0.0.1:PORT from K threads. Each has
an "X-Test-Id: P-n" header and a body of numbered lines ending in
"END P-n LINES k" (queue_count.py checks that nothing is missing), about
OCTETS long. A message whose end of DATA got 250 is appended to FILE at
once (one id a line, flushed), so a relay killed at any moment leaves an
exact list of what it acknowledged. With --retry-until, a message that
failed (connection refused or lost, 4xx) is tried again until it is
accepted or SECONDS have passed since the start; otherwise it is given
up. With --duration no new message is started after SECONDS (for a
load that runs while something else happens). Prints "sent=N accepted=A
refused=R" (N: the messages started) and exits 0. With --refusals,
each refusal is appended to FILE as "ID CODE TEXT" (CODE 0: the
connection failed or broke). --no-size leaves out the SIZE parameter
that smtplib adds to MAIL when the server offers SIZE. Only the standard
library, run as /usr/bin/python3.
"""
import argparse
import smtplib
import socket
import sys
import threading
import time


def body(mid, size):
    lines = []
    total = 0
    k = 0
    while total < size:
        line = "%s line %05d the quick brown fox jumps over the lazy dog" % (
            mid, k)
        lines.append(line)
        total += len(line) + 2
        k += 1
    lines.append("END %s LINES %d" % (mid, k))
    return "\r\n".join(lines) + "\r\n"


def message(mid, size, rcpts):
    return ("From: <load@client.example>\r\nTo: %s\r\n"
            "Subject: queue test %s\r\nX-Test-Id: %s\r\n"
            "Message-ID: <%s@client.example>\r\n\r\n%s" % (
                ", ".join("<%s>" % r for r in rcpts), mid, mid, mid,
                body(mid, size)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--accepted", required=True)
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--rcpt", action="append")
    ap.add_argument("--retry-until", type=float, default=0)
    ap.add_argument("--per-conn", type=int, default=5)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--refusals")
    ap.add_argument("--no-size", action="store_true")
    a = ap.parse_args()
    rcpts = a.rcpt or ["rcpt@dest.example"]
    start = time.monotonic()
    lock = threading.Lock()
    todo = list(range(a.count))
    stats = {"accepted": 0, "refused": 0, "started": 0}
    out = open(a.accepted, "a")
    refusals = open(a.refusals, "a") if a.refusals else None

    def take():
        with lock:
            if a.duration and time.monotonic() - start > a.duration:
                return None
            if todo:
                stats["started"] += 1
                return todo.pop(0)
            return None

    def worker():
        n = take()
        while n is not None:
            conn = None
            try:
                conn = smtplib.SMTP("127.0.0.1", a.port, timeout=20)
                conn.ehlo("load.client.example")
                if a.no_size:
                    conn.esmtp_features.pop("size", None)
                done = 0
                while n is not None and done < a.per_conn:
                    mid = "%s-%d" % (a.prefix, n)
                    conn.sendmail("load@client.example", rcpts,
                                  message(mid, a.size, rcpts).encode())
                    with lock:
                        out.write(mid + "\n")
                        out.flush()
                        stats["accepted"] += 1
                    done += 1
                    n = take()
                conn.quit()
                conn = None
            except (OSError, smtplib.SMTPException) as ex:
                code = getattr(ex, "smtp_code", 0)
                text = getattr(ex, "smtp_error", str(ex).encode())
                if isinstance(ex, smtplib.SMTPRecipientsRefused):
                    code, text = list(ex.recipients.values())[0]
                if refusals is not None:
                    with lock:
                        refusals.write("%s-%d %d %s\n" % (
                            a.prefix, n, code,
                            text.decode("utf-8", "replace")))
                        refusals.flush()
                if conn is not None:
                    try:
                        conn.close()
                    except OSError:
                        pass
                if a.retry_until and time.monotonic() - start < a.retry_until:
                    time.sleep(0.05)
                    continue
                with lock:
                    stats["refused"] += 1
                n = take()

    threads = [threading.Thread(target=worker) for _ in range(a.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    print("sent=%d accepted=%d refused=%d" % (stats["started"],
                                              stats["accepted"],
                                              stats["refused"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
