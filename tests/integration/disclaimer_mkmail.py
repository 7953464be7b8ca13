"""disclaimer_mkmail - write test messages in charsets the corpus lacks

    disclaimer_mkmail.py DIR

tests/data/corpus/ has no Windows-1252 or ISO-2022-JP message and its
only GB2312 one is ambiguous, so these are made here with Python's email
package (and its codecs), each as a mail program would send it:

  g1-windows1252-qp.eml        text/plain; charset=windows-1252, QP,
                               with characters Latin-1 lacks (the
                               footer's em dash fits, so it stays 1252)
  g2-iso2022jp-7bit.eml        text/plain; charset=iso-2022-jp, 7bit
  g3-gb2312-base64.eml         text/plain; charset=gb2312, base64
  g4-alternative-1252.eml      multipart/alternative: windows-1252 text
                               (8bit) and HTML (QP) with </body>
  g5-iso2022jp-html.eml        text/html; charset=iso-2022-jp with
                               </body>: edited in UTF-8, converted back
  g6-flowed-delsp.eml          text/plain; format=flowed; delsp=yes,
                               ending in a soft break
  g7-mixed-related-latin1.eml  multipart/mixed holding multipart/related
                               (ISO-8859-1 HTML, base64) and a PDF
  g8-crlf-utf8-qp.eml          CRLF, UTF-8 quoted-printable text with a
                               long line and trailing spaces
"""

import email.policy
import os
import sys
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.application import MIMEApplication

POLICY = email.policy.default.clone(linesep="\n")


def base(msg, subject):
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "Bob <bob@example.net>"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 26 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = "<%s@example.com>" % subject.replace(" ", ".")
    return msg


def write(path, msg, policy=POLICY):
    with open(path, "wb") as fp:
        fp.write(msg.as_bytes(policy=policy))


def main(out):
    m = base(EmailMessage(), "cp1252 qp")
    m.set_content("Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u201cquoted\u201d, "
                  "\u20ac 100.\nZweite Zeile.\n",
                  charset="windows-1252", cte="quoted-printable")
    write(os.path.join(out, "g1-windows1252-qp.eml"), m)

    m = base(EmailMessage(), "iso-2022-jp")
    m.set_content("\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c\u3002\n"
                  "\u4f1a\u8b70\u306f\u660e\u65e5\u3067\u3059\u3002\n",
                  charset="iso-2022-jp", cte="7bit")
    write(os.path.join(out, "g2-iso2022jp-7bit.eml"), m)

    m = base(EmailMessage(), "gb2312 base64")
    m.set_content("\u4f60\u597d\uff0c\u4e16\u754c\u3002\n"
                  "\u660e\u5929\u89c1\u3002\n",
                  charset="gb2312", cte="base64")
    write(os.path.join(out, "g3-gb2312-base64.eml"), m)

    m = base(EmailMessage(), "alternative 1252")
    m.set_content("Caf\u00e9 \u2013 \u00bfs\u00ed? \u2026\n",
                  charset="windows-1252", cte="8bit")
    m.add_alternative("<html><head><title>x</title></head>\n<body>\n"
                      "<p>Caf\u00e9 \u2013 \u00bfs\u00ed? \u2026</p>\n"
                      "<!-- </body> in a comment -->\n</body>\n</html>\n",
                      subtype="html", charset="windows-1252",
                      cte="quoted-printable")
    write(os.path.join(out, "g4-alternative-1252.eml"), m)

    m = base(EmailMessage(), "iso-2022-jp html")
    m.set_content("<html><body>\n<p>\u3053\u3093\u306b\u3061\u306f</p>\n"
                  "<script>var s = '</body>';</script>\n</body></html>\n",
                  subtype="html", charset="iso-2022-jp", cte="7bit")
    write(os.path.join(out, "g5-iso2022jp-html.eml"), m)

    raw = (b"From: Alice <alice@example.com>\n"
           b"To: Bob <bob@example.net>\n"
           b"Subject: flowed\n"
           b"Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
           b"MIME-Version: 1.0\n"
           b"Content-Type: text/plain; charset=utf-8; format=flowed; "
           b"delsp=yes\n"
           b"Content-Transfer-Encoding: 8bit\n"
           b"\n"
           b"This paragraph is long enough that the sending program broke "
           b"it \n"
           b"with soft line breaks, and its last line ends in one \n")
    with open(os.path.join(out, "g6-flowed-delsp.eml"), "wb") as fp:
        fp.write(raw)

    outer = MIMEMultipart("mixed")
    base(outer, "mixed related latin1")
    outer.set_boundary("outer-mixed-1")
    rel = MIMEMultipart("related")
    rel.set_boundary("inner-related-2")
    html = MIMEText("<html><body><p>Gr\u00fc\u00dfe, <img src=\"cid:logo\">"
                    "</p></body></html>\n", "html", "iso-8859-1")
    html.replace_header("Content-Transfer-Encoding", "base64")
    html.set_payload(email.base64mime.body_encode(
        "<html><body><p>Gr\u00fc\u00dfe, <img src=\"cid:logo\">"
        "</p></body></html>\n".encode("iso-8859-1")))
    rel.attach(html)
    img = MIMEApplication(b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "png")
    img.replace_header("Content-Type", "image/png")
    img.add_header("Content-ID", "<logo>")
    rel.attach(img)
    outer.attach(rel)
    pdf = MIMEApplication(b"%PDF-1.4\n" + bytes(range(256)) * 4, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename="a.pdf")
    outer.attach(pdf)
    write(os.path.join(out, "g7-mixed-related-latin1.eml"), outer,
          email.policy.compat32.clone(linesep="\n"))

    m = base(EmailMessage(), "crlf utf8 qp")
    m.set_content("\u00dcberschrift   \n" + "lang " * 60 + "\nEnde.\n",
                  charset="utf-8", cte="quoted-printable")
    write(os.path.join(out, "g8-crlf-utf8-qp.eml"), m,
          POLICY.clone(linesep="\r\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
