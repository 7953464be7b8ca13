#!/usr/bin/python3
"""s3_sigv4_proxy - check the AWS SigV4 signature of every request, then
pass it on to an S3 server that does not check them itself (s3rver)

    s3_sigv4_proxy.py LISTEN_PORT UPSTREAM_PORT ACCESS_KEY SECRET REGION LOG

The signature is computed again with botocore (Debian's python3-botocore,
the signer of the AWS SDK for Python) over the request as it arrived:
the method, the path and query as sent, the headers the client listed
in SignedHeaders, and the payload hash; for a request without an
x-amz-content-sha256 header, the SHA-256 of the body it carried. A
request without a signature, with another key, region or service, or
whose signature differs is answered 403 with an S3 error body
(AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch) and never
reaches the server; so is a body whose Content-MD5 differs (BadDigest).
One line per request goes to LOG: "ok METHOD PATH", with " md5=ok" and
the Object Lock headers when they came, or "refused CODE METHOD PATH".
"""
import base64
import hashlib
import http.client
import http.server
import socketserver
import sys

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LISTEN, UPSTREAM = int(sys.argv[1]), int(sys.argv[2])
KEY, SECRET, REGION, LOG = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


def parse_auth(value):
    algo, _, rest = value.partition(" ")
    if algo != "AWS4-HMAC-SHA256":
        return None
    fields = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    return fields


def verify(method, path, headers, body):
    """None when the signature is right, else an S3 error code."""
    auth = headers.get("Authorization")
    if not auth:
        return "AccessDenied"
    f = parse_auth(auth)
    if not f or "Credential" not in f or "Signature" not in f:
        return "AccessDenied"
    cred = f["Credential"].split("/")
    if len(cred) != 5 or cred[0] != KEY:
        return "InvalidAccessKeyId"
    if cred[2] != REGION or cred[3] != "s3" or cred[4] != "aws4_request":
        return "SignatureDoesNotMatch"
    signed = f.get("SignedHeaders", "").split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "SignatureDoesNotMatch"
    amz_date = headers.get("X-Amz-Date", "")
    if amz_date[:8] != cred[1]:
        return "SignatureDoesNotMatch"
    sub = {}
    for name in signed:
        v = headers.get(name)
        if v is None:
            return "SignatureDoesNotMatch"
        sub[name] = v
    # The payload hash: the header's when it was sent (and then signed),
    # else the body's own.
    all_hdrs = dict(sub)
    if "x-amz-content-sha256" not in sub:
        all_hdrs["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    elif sub["x-amz-content-sha256"] != hashlib.sha256(body).hexdigest():
        return "XAmzContentSHA256Mismatch"
    url = "http://%s%s" % (headers.get("Host"), path)
    req = AWSRequest(method=method, url=url, headers=all_hdrs, data=body)
    req.context["timestamp"] = amz_date
    signer = S3SigV4Auth(Credentials(KEY, SECRET), "s3", REGION)
    # The client's own signed header list, in its order.
    signer.headers_to_sign = lambda r: _Headers(sub)
    canonical = signer.canonical_request(req)
    want = signer.signature(signer.string_to_sign(req, canonical), req)
    if want != f["Signature"]:
        return "SignatureDoesNotMatch"
    return None


class _Headers(dict):
    """What botocore's canonical_headers wants: get_all and lower keys."""

    def __init__(self, src):
        super().__init__((k.lower(), v) for k, v in src.items())

    def get_all(self, name):
        return [self[name.lower()]] if name.lower() in self else []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        code = verify(self.command, self.path, self.headers, body)
        if code:
            log("refused %s %s %s" % (code, self.command, self.path))
            text = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<Error><Code>%s</Code><Message>signature check"
                    "</Message></Error>" % code).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        md5 = self.headers.get("Content-MD5")
        if md5 is not None and md5 != base64.b64encode(
                hashlib.md5(body).digest()).decode():
            log("refused BadDigest %s %s" % (self.command, self.path))
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        extra = ""
        if md5 is not None:
            extra += " md5=ok"
        for h in ("x-amz-object-lock-mode",
                  "x-amz-object-lock-retain-until-date"):
            if self.headers.get(h) is not None:
                extra += " %s=%s" % (h, self.headers.get(h))
        log("ok %s %s%s" % (self.command, self.path, extra))
        up = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        hdrs = {k: v for k, v in self.headers.items()
                if k.lower() not in ("connection", "keep-alive")}
        try:
            up.request(self.command, self.path, body=body, headers=hdrs)
            r = up.getresponse()
            data = r.read()
        except OSError as ex:
            log("upstream %s" % ex)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        finally:
            up.close()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "keep-alive",
                                 "transfer-encoding", "content-length",
                                 "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


Server(("127.0.0.1", LISTEN), Handler).serve_forever()
