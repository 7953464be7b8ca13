#!/usr/bin/python3
"""smtpchat - a scripted SMTP client for the integration tests

    smtpchat.py [--src ADDR] [--timeout SECONDS] PORT < SCRIPT

Connects to 127.0.0.1:PORT (from ADDR when given) and runs SCRIPT, one
step a line. Nothing is sent or read unless a step says so, so a script
can talk before the greeting, pipeline, or leave out the line end.

    send TEXT       TEXT and CRLF, in one write
    raw TEXT        TEXT only (escapes \\r \\n \\t \\0 \\xHH \\\\ in both)
    repeat N TEXT   TEXT repeated N times, in writes of at most 64 KiB
    drip SECS TEXT  TEXT (escapes as in raw) one octet per write, SECS
                    apart, as a slow or hostile client; "#DRIP n/n" when
                    all was sent, "#DRIP-CUT k/n" when a reply or the
                    server's close came after k octets (the reply is left
                    for the next expect)
    expect [N]      read N replies (default 1) and print their lines
    starttls        TLS handshake on the socket (no certificate check)
    silence SECS    print "#SILENT" when nothing arrives within SECS,
                    else "#UNEXPECTED" and what came
    eof             read until the server closes: "#EOF", or "#OPEN"
                    after the timeout
    sleep SECS
    exec COMMAND    run a shell command, print "#EXEC" and its output
    # ...           comment

Reply lines are printed as received, without CRLF; a line that does not
end in CRLF is marked "#BADEOL". A read that times out prints
"#TIMEOUT", a closed connection "#EOF"; the steps after it still run
(a send to a closed socket prints "#SENDFAIL"). Timings are printed as
"#ELAPSED <seconds since connect>" after each expect, so a script can
check that a reply was not early. Exit status 0 unless the connection
could not be made (2) or the script is malformed (1).

Only the standard library, run as /usr/bin/python3.
"""
import argparse
import re
import socket
import ssl
import subprocess
import sys
import time

ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rnt0\\])")


def unescape(text):
    def one(m):
        c = m.group(1)
        if c.startswith(b"x"):
            return bytes([int(c[1:], 16)])
        return {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\0",
                b"\\": b"\\"}[c]
    return ESCAPE.sub(one, text.encode("utf-8", "surrogateescape"))


class Chat:
    def __init__(self, sock, timeout):
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.closed = False
        self.start = time.monotonic()

    def out(self, line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def recv_some(self, timeout):
        """More input into buf; False on timeout or close."""
        if self.closed:
            return False
        # A TLS record may carry no data (a session ticket): a timeout on
        # the socket, not select(), bounds the wait.
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def line(self):
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.recv_some(left):
                return None
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def expect(self):
        while True:
            line = self.line()
            if line is None:
                self.out("#EOF" if self.closed else "#TIMEOUT")
                return False
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            self.out(text if line.endswith(b"\r\n") else text + " #BADEOL")
            if len(text) < 4 or text[3] != "-":
                return True

    def send(self, data):
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            self.out("#SENDFAIL")

    def drip(self, secs, data):
        for i in range(len(data)):
            if i > 0 and (self.buf or self.recv_some(secs) or self.closed):
                self.out("#DRIP-CUT %d/%d" % (i, len(data)))
                return
            self.send(data[i:i + 1])
        self.out("#DRIP %d/%d" % (len(data), len(data)))

    def starttls(self):
        if self.buf:
            self.out("#PLAINTEXT-LEFTOVER %r" % self.buf[:80])
            self.buf = b""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock.settimeout(self.timeout)
        try:
            self.sock = ctx.wrap_socket(self.sock)
        except (ssl.SSLError, OSError) as e:
            self.out("#TLSFAIL %s" % e)
            return
        self.out("#TLS %s" % self.sock.version())

    def silence(self, secs):
        if self.buf or self.recv_some(secs):
            self.out("#UNEXPECTED %r" % self.buf[:200])
        elif self.closed:
            self.out("#EOF")
        else:
            self.out("#SILENT")

    def eof(self):
        deadline = time.monotonic() + self.timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                self.out("#OPEN")
                return
            if not self.recv_some(left) and not self.closed:
                self.out("#OPEN")
                return
            if self.buf:
                for extra in self.buf.split(b"\n"):
                    if extra:
                        self.out("#MORE %r" % extra[:200])
                self.buf = b""
        self.out("#EOF")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("port", type=int)
    args = ap.parse_args()
    try:
        sock = socket.create_connection(
            ("127.0.0.1", args.port), timeout=args.timeout,
            source_address=(args.src, 0) if args.src else None)
    except OSError as e:
        print("#CONNECTFAIL %s" % e)
        return 2
    sock.settimeout(None)
    chat = Chat(sock, args.timeout)
    for n, step in enumerate(sys.stdin.read().splitlines(), 1):
        word, _, rest = step.strip().partition(" ")
        if word == "" or word.startswith("#"):
            continue
        if word == "send":
            chat.send(unescape(rest) + b"\r\n")
        elif word == "raw":
            chat.send(unescape(rest))
        elif word == "repeat":
            count, _, text = rest.partition(" ")
            chunk = unescape(text)
            per = max(1, 65536 // max(1, len(chunk)))
            left = int(count)
            while left > 0 and not chat.closed:
                k = min(per, left)
                chat.send(chunk * k)
                left -= k
        elif word == "drip":
            secs, _, text = rest.partition(" ")
            chat.drip(float(secs), unescape(text))
        elif word == "expect":
            for _ in range(int(rest or "1")):
                if not chat.expect():
                    break
            chat.out("#ELAPSED %.3f" % (time.monotonic() - chat.start))
        elif word == "starttls":
            chat.starttls()
        elif word == "silence":
            chat.silence(float(rest))
        elif word == "eof":
            chat.eof()
        elif word == "sleep":
            time.sleep(float(rest))
        elif word == "exec":
            res = subprocess.run(rest, shell=True, capture_output=True,
                                 text=True, timeout=args.timeout)
            chat.out("#EXEC " + res.stdout.strip())
        else:
            sys.stderr.write("smtpchat: line %d: unknown step %r\n"
                             % (n, word))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
