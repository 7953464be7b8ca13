#!/usr/bin/python3
"""scripted_server - an SMTP/LMTP server that records what a client sent

test_smtpc uses it for the protocol details Postfix's smtp-sink can not
show: the exact octets of DATA (smtp-sink's dump rewrites line ends),
STARTTLS with AUTH inside TLS, a subset of XFORWARD attributes, mixed
per-recipient LMTP replies, a server that answers 421 to MAIL on a
reused connection, or that breaks the TLS handshake, and one that goes
away part way through its LMTP replies: a --final reply "CLOSE" closes
the connection instead of answering that recipient, and a 421 final
reply closes it after the 421. --data-reply answers DATA with that reply
instead of 354.

It listens on 127.0.0.1 on a port the kernel picks, writes the port to
--port-file once it listens, and records, in DIR/events.log, one line per
event: "N conn", "N tls", "N > COMMAND LINE", "N data FILE" (the DATA
octets as received, final ".\\r\\n" included, in DIR/FILE). N numbers the
connections from 1. It stops by itself after --lifetime seconds.
--listen ADDR listens on that address instead of 127.0.0.1. After
"N tls" comes "N tls-version TLSv1.3" (the version negotiated).
"""
import argparse
import os
import socketserver
import ssl
import sys
import threading
import time

args = None
lock = threading.Lock()
counter = {"conn": 0, "data": 0}


def log(line):
    with lock:
        with open(os.path.join(args.dir, "events.log"), "a") as f:
            f.write(line + "\n")


def table(items):
    """ "addr:CODE TEXT" options as a dict."""
    out = {}
    for item in items or []:
        addr, _, reply = item.partition(":")
        out[addr.lower()] = reply
    return out


class Session(socketserver.StreamRequestHandler):
    timeout = 30

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def hello(self, verb):
        exts = list(args.ehlo or [])
        if self.tls:
            exts = [x for x in exts if x.upper() != "STARTTLS"]
        lines = ["scripted"] + exts
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self.wfile.write(("250%s%s\r\n" % (sep, line)).encode())
        self.wfile.flush()

    def data(self):
        if args.data_reply:
            self.reply(args.data_reply)
            return True
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        got = b""
        while not (got == b".\r\n" or got.endswith(b"\r\n.\r\n")):
            chunk = self.rfile.read1(65536)
            if not chunk:
                return False
            got += chunk
        with lock:
            counter["data"] += 1
            name = "data-%d.bin" % counter["data"]
        with open(os.path.join(args.dir, name), "wb") as f:
            f.write(got)
        log("%d data %s" % (self.n, name))
        finals = table(args.final)
        if args.lmtp:
            replies = [finals.get(r, "250 2.0.0 Ok: delivered")
                       for r in self.rcpts]
        else:
            replies = [finals.get("*", "250 2.0.0 Ok: queued as SCRIPTED")]
        for r in replies:
            if r == "CLOSE":
                return False
            self.reply(r)
            if r.startswith("421"):
                return False
        return True

    def handle(self):
        with lock:
            counter["conn"] += 1
            self.n = counter["conn"]
        log("%d conn" % self.n)
        self.tls = False
        self.transactions = 0
        self.rcpts = []
        rcpt_replies = table(args.rcpt)
        self.reply("220 scripted ESMTP")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            text = line.decode("latin-1").rstrip("\r\n")
            log("%d > %s" % (self.n, text))
            verb = text.split(" ", 1)[0].upper()
            if verb in ("EHLO", "LHLO", "HELO"):
                self.hello(verb)
            elif verb == "STARTTLS" and args.tls_cert and not self.tls:
                if args.break_tls:
                    self.reply("220 2.0.0 Ready to start TLS")
                    return
                if args.inject_after_starttls:
                    self.wfile.write(b"220 2.0.0 Ready\r\n250 injected\r\n")
                    self.wfile.flush()
                    return
                self.reply("220 2.0.0 Ready to start TLS")
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(args.tls_cert, args.tls_key)
                self.request = ctx.wrap_socket(self.request, server_side=True)
                self.rfile = self.request.makefile("rb")
                self.wfile = self.request.makefile("wb")
                self.tls = True
                log("%d tls" % self.n)
                log("%d tls-version %s" % (self.n, self.request.version()))
            elif verb == "AUTH":
                self.reply("235 2.7.0 Authentication successful")
            elif verb == "XFORWARD":
                self.reply(args.xforward_reply)
            elif verb == "MAIL":
                self.transactions += 1
                self.rcpts = []
                if args.mail_421_reuse and self.transactions > 1:
                    self.reply("421 4.4.2 scripted: idle too long")
                    return
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = text.split("<", 1)[-1].split(">", 1)[0].lower()
                r = rcpt_replies.get(addr, "250 2.1.5 Ok")
                if r.startswith("2"):
                    self.rcpts.append(addr)
                self.reply(r)
            elif verb == "DATA":
                if not self.data():
                    return
            elif verb == "RSET":
                self.rcpts = []
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ehlo", action="append")
    ap.add_argument("--lmtp", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--rcpt", action="append")
    ap.add_argument("--final", action="append")
    ap.add_argument("--mail-421-reuse", action="store_true")
    ap.add_argument("--inject-after-starttls", action="store_true")
    ap.add_argument("--break-tls", action="store_true")
    ap.add_argument("--xforward-reply", default="250 2.0.0 Ok")
    ap.add_argument("--data-reply")
    ap.add_argument("--lifetime", type=float, default=60)
    ap.add_argument("--listen", default="127.0.0.1")
    args = ap.parse_args()
    srv = Server((args.listen, 0), Session)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    time.sleep(args.lifetime)
    srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
