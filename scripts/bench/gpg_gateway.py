#!/usr/bin/python3
"""gpg_gateway - a "script gateway" for scripts/bench/encrypt-relay

What encryption gateways written as scripts do (gpg-mailgate, Zeyple and
the like, run as a Postfix content filter): an SMTP server that takes a
message, runs one "gpg --encrypt" process per message to the envelope
recipients' keys, wraps the armored output as PGP/MIME (RFC 3156) and
forwards the result with smtplib, answering 250 only once the next hop
took it (as relaychaind's delivery = through does), 451 when gpg or the
next hop fails. Standard library only; a thread per SMTP session.

    gpg_gateway.py LISTEN_PORT NEXT_PORT GNUPG_HOME

It listens on 127.0.0.1 and stops on SIGTERM. Bench use only: no TLS,
no AUTH, no limits beyond a 30 s read timeout and 20 MB per message.
"""
import os
import signal
import smtplib
import socketserver
import subprocess
import sys
import uuid

MAX_DATA = 20 * 1024 * 1024


def encrypt(raw, rcpts, home):
    """The message raw (bytes, CRLF) with its MIME entity encrypted to
    rcpts, as PGP/MIME; None when gpg fails."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, body = raw, b""
    outer, entity = [], []
    cur = None
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and cur is not None:
            cur.append(line)
            continue
        cur = entity if line.lower().startswith(b"content-") else outer
        cur.append(line)
    plain = b"\r\n".join(entity) + b"\r\n\r\n" + body
    args = ["gpg", "--batch", "--no-tty", "--homedir", home,
            "--trust-model", "always", "--armor", "--encrypt"]
    for r in rcpts:
        args += ["-r", r]
    p = subprocess.run(args, input=plain, capture_output=True, timeout=60,
                       check=False)
    if p.returncode != 0 or not p.stdout:
        return None
    b = "enc_" + uuid.uuid4().hex[:24]
    outer = [h for h in outer if not h.lower().startswith(b"mime-version")]
    return (b"\r\n".join(outer) + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/encrypted;\r\n"
            b"\tprotocol=\"application/pgp-encrypted\";\r\n"
            b"\tboundary=\"" + b.encode() + b"\"\r\n\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            b"\r\n--" + b.encode() + b"\r\n"
            b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
            b"\r\n" + p.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            + b"\r\n--" + b.encode() + b"--\r\n")


class Session(socketserver.StreamRequestHandler):
    timeout = 30

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def data(self):
        lines = []
        size = 0
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size > MAX_DATA:
                return None
            if not line.endswith(b"\r\n"):
                line = line.rstrip(b"\n") + b"\r\n"
            lines.append(line)
        return b"".join(lines)

    def handle(self):
        srv = self.server
        sender, rcpts = None, []
        self.reply("220 gpg-gateway ESMTP")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.decode("ascii", "replace").strip()
            verb = cmd[:4].upper()
            if verb in ("HELO", "EHLO"):
                self.reply("250 gpg-gateway")
            elif cmd.upper().startswith("MAIL FROM:"):
                sender = cmd[10:].strip().split(" ")[0].strip("<>")
                rcpts = []
                self.reply("250 2.1.0 Ok")
            elif cmd.upper().startswith("RCPT TO:"):
                rcpts.append(cmd[8:].strip().split(" ")[0].strip("<>"))
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if sender is None or not rcpts:
                    self.reply("503 5.5.1 MAIL and RCPT first")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                raw = self.data()
                if raw is None:
                    return
                out = encrypt(raw, rcpts, srv.home)
                if out is None:
                    self.reply("451 4.7.0 gpg failed")
                else:
                    try:
                        with smtplib.SMTP("127.0.0.1", srv.next_port,
                                          timeout=60) as c:
                            c.sendmail(sender, rcpts, out)
                        self.reply("250 2.0.0 Ok: encrypted and sent")
                    except (OSError, smtplib.SMTPException):
                        self.reply("451 4.4.1 next hop failed")
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Command not implemented")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


def main():
    port, next_port, home = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    srv = Server(("127.0.0.1", port), Session)
    srv.next_port = next_port
    srv.home = home
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    main()
