#!/bin/sh
# disclaimer_signed - signed and encrypted mail passes the disclaimer
# stage byte for byte, and its signatures still verify
#
# Real keys and messages are made here: an OpenPGP key with gpg (in a
# private GNUPGHOME), a self-signed certificate with openssl. Each of
#   PGP/MIME signed (multipart/signed), PGP/MIME encrypted
#   (multipart/encrypted), inline PGP (clearsigned), S/MIME detached
#   (multipart/signed, openssl cms), S/MIME opaque signed and S/MIME
#   enveloped (application/pkcs7-mime), and a plain message with a
#   PGP/MIME signed message attached (the attachment is not touched, the
#   text is decorated)
# goes through "relaychain filter" with the disclaimer chain of
# tests/data/disclaimer/. The output must be the input byte for byte,
# the log must name the reason, and gpg --verify, openssl cms -verify,
# gpgsm --verify and the decryptions must succeed on the output.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
conf=$top_srcdir/tests/data/disclaimer/relaychain.conf
for prog in gpg gpgsm openssl; do
    if ! command -v $prog >/dev/null 2>&1; then
        fail "$prog is missing (scripts/setup installs it)"
        finish
    fi
done

GNUPGHOME=$T/gnupg
export GNUPGHOME
mkdir -m 700 "$GNUPGHOME"
printf 'disable-crl-checks\n' >"$GNUPGHOME/gpgsm.conf"
G="gpg --batch --quiet --pinentry-mode loopback --passphrase ''"
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key 'Alice <alice@example.com>' ed25519 sign,cert never 2>/dev/null
fpr=$(gpg --batch --with-colons --list-keys alice@example.com | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-add-key "$fpr" cv25519 encr never 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/key.pem" -out "$T/cert.pem" -days 2 \
    -subj "/CN=Alice/emailAddress=alice@example.com" 2>/dev/null
if [ -z "$fpr" ] || [ ! -s "$T/cert.pem" ]; then
    fail "could not make the keys"
    finish
fi

hdr() {
    printf 'From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n'
    printf 'Subject: %s\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n' "$1"
    printf 'Message-ID: <%s@example.com>\r\nMIME-Version: 1.0\r\n' "$1"
}
inner='Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHello Bob,\r\nthe figures are attached.\r\n'

# PGP/MIME signed (RFC 3156): the signed part is canonical CRLF text.
printf "$inner" >"$T/pgp-part"
gpg --batch --quiet --armor --detach-sign -u "$fpr" -o "$T/pgp-part.asc" "$T/pgp-part"
{
    hdr pgp-signed
    printf 'Content-Type: multipart/signed; micalg=pgp-sha512;\r\n protocol="application/pgp-signature"; boundary="sig-1"\r\n\r\n'
    printf 'This is an OpenPGP/MIME signed message.\r\n--sig-1\r\n'
    cat "$T/pgp-part"
    printf '\r\n--sig-1\r\nContent-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'
    sed 's/$/\r/' "$T/pgp-part.asc"
    printf '\r\n--sig-1--\r\n'
} >"$T/pgp-signed.eml"

# PGP/MIME encrypted.
printf "$inner" | gpg --batch --quiet --armor --trust-model always \
    --encrypt -r "$fpr" -o "$T/pgp-enc.asc"
{
    hdr pgp-encrypted
    printf 'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n boundary="enc-1"\r\n\r\n'
    printf -- '--enc-1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n'
    printf -- '--enc-1\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
    sed 's/$/\r/' "$T/pgp-enc.asc"
    printf '\r\n--enc-1--\r\n'
} >"$T/pgp-encrypted.eml"

# Inline PGP: a clearsigned text body.
printf 'Hello Bob,\nthe figures are attached.\n' |
    gpg --batch --quiet --clearsign -u "$fpr" -o "$T/clear.asc"
{
    hdr pgp-inline
    printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\n'
    sed 's/$/\r/' "$T/clear.asc"
} >"$T/pgp-inline.eml"

# S/MIME detached (multipart/signed), opaque signed, enveloped.
printf "$inner" >"$T/smime-part"
openssl cms -sign -in "$T/smime-part" -signer "$T/cert.pem" \
    -inkey "$T/key.pem" -binary -out "$T/smime-detached.body" 2>/dev/null
{ hdr smime-detached; sed '/^MIME-Version:/d' "$T/smime-detached.body"; } >"$T/smime-detached.eml"
openssl cms -sign -nodetach -in "$T/smime-part" -signer "$T/cert.pem" \
    -inkey "$T/key.pem" -binary -out "$T/smime-opaque.body" 2>/dev/null
{ hdr smime-opaque; sed '/^MIME-Version:/d' "$T/smime-opaque.body"; } >"$T/smime-opaque.eml"
openssl cms -encrypt -aes256 -in "$T/smime-part" -out "$T/smime-enc.body" \
    "$T/cert.pem" 2>/dev/null
{ hdr smime-encrypted; sed '/^MIME-Version:/d' "$T/smime-enc.body"; } >"$T/smime-encrypted.eml"

# A message forwarding the signed one as an attachment: its text gets
# the footer, the attached message stays byte for byte.
{
    hdr forward
    printf 'Content-Type: multipart/mixed; boundary="fwd-1"\r\n\r\n--fwd-1\r\n'
    printf 'Content-Type: text/plain; charset=utf-8\r\n\r\nSee the signed message below.\r\n'
    printf -- '--fwd-1\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n'
    cat "$T/pgp-signed.eml"
    printf '\r\n--fwd-1--\r\n'
} >"$T/forward.eml"

# filter NAME: run the stage; the note is in $T/NAME.note.
filter() {
    "$RC" filter -v -c "$conf" --from alice@example.com --rcpt bob@example.net \
        <"$T/$1.eml" >"$T/$1.out" 2>"$T/$1.log"
    rc=$?
    check "$1: relaychain filter exits 0 (got $rc: $(cat "$T/$1.log"))" [ "$rc" -eq 0 ]
    sed -n 's/.*: disclaimer: continue, //p' "$T/$1.log" >"$T/$1.note"
}

# part N FILE OUT: the N-th part (1-based) of the top multipart, raw
# (its header fields, the empty line and its content).
part() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import email, email.policy, re, sys
raw = open(sys.argv[2], "rb").read()
m = email.message_from_bytes(raw, policy=email.policy.compat32)
b = m.get_boundary().encode()
body = re.split(rb"\r?\n\r?\n", raw, 1)[1]
chunks = re.split(rb"(?:^|\r?\n)--" + re.escape(b) + rb"(?:--)?[ \t]*\r?\n", body)
open(sys.argv[3], "wb").write(chunks[int(sys.argv[1])])
EOF
}

for name in pgp-signed pgp-encrypted pgp-inline smime-detached \
    smime-opaque smime-encrypted; do
    filter $name
    check "$name: output is the input byte for byte" cmp -s "$T/$name.eml" "$T/$name.out"
done
check "pgp-signed: logged as multipart/signed" grep -qx 'skipped (multipart/signed), [0-9]*ms' "$T/pgp-signed.note"
check "pgp-encrypted: logged as multipart/encrypted" grep -qx 'skipped (multipart/encrypted), [0-9]*ms' "$T/pgp-encrypted.note"
check "pgp-inline: logged as inline PGP" grep -qx 'skipped (inline PGP), [0-9]*ms' "$T/pgp-inline.note"
check "smime-detached: logged as multipart/signed" grep -qx 'skipped (multipart/signed), [0-9]*ms' "$T/smime-detached.note"
check "smime-opaque: logged as pkcs7-mime" grep -q 'skipped (application/.*pkcs7-mime)' "$T/smime-opaque.note"
check "smime-encrypted: logged as pkcs7-mime" grep -q 'skipped (application/.*pkcs7-mime)' "$T/smime-encrypted.note"

# The signatures on what came out.
part 1 "$T/pgp-signed.out" "$T/v-part"
part 2 "$T/pgp-signed.out" "$T/v-sig.mime"
sed '1,/^\r$/d' "$T/v-sig.mime" >"$T/v-sig.asc"
check "gpg --verify of the PGP/MIME output" \
    sh -c 'gpg --batch --quiet --verify "$1" "$2" 2>/dev/null' - "$T/v-sig.asc" "$T/v-part"
part 2 "$T/pgp-encrypted.out" "$T/v-enc.mime"
sed '1,/^\r$/d' "$T/v-enc.mime" | gpg --batch --quiet --decrypt >"$T/v-dec" 2>/dev/null
check "gpg --decrypt of the PGP/MIME output" cmp -s "$T/v-dec" "$T/pgp-part"
sed '1,/^\r$/d' "$T/pgp-inline.out" | tr -d '\r' | gpg --batch --quiet --verify >/dev/null 2>&1
check "gpg --verify of the inline PGP output" [ $? -eq 0 ]
check "openssl cms -verify of the detached S/MIME output" \
    sh -c 'openssl cms -verify -in "$1" -CAfile "$2" -out /dev/null 2>/dev/null' - "$T/smime-detached.out" "$T/cert.pem"
check "openssl cms -verify of the opaque S/MIME output" \
    sh -c 'openssl cms -verify -in "$1" -CAfile "$2" -out /dev/null 2>/dev/null' - "$T/smime-opaque.out" "$T/cert.pem"
openssl cms -decrypt -in "$T/smime-encrypted.out" -recip "$T/cert.pem" \
    -inkey "$T/key.pem" -out "$T/v-smime-dec" 2>/dev/null
check "openssl cms -decrypt of the enveloped S/MIME output" cmp -s "$T/v-smime-dec" "$T/smime-part"

# gpgsm, a second S/MIME implementation, on the detached signature.
gpgsm --batch --quiet --import "$T/cert.pem" 2>/dev/null
cfpr=$(gpgsm --with-colons --list-keys 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
printf '%s S relax\n' "$cfpr" >"$GNUPGHOME/trustlist.txt"
part 1 "$T/smime-detached.out" "$T/s-part"
part 2 "$T/smime-detached.out" "$T/s-sig.mime"
sed '1,/^\r\{0,1\}$/d' "$T/s-sig.mime" | openssl base64 -d >"$T/s-sig.p7s"
check "gpgsm --verify of the detached S/MIME output" \
    sh -c 'gpgsm --batch --quiet --disable-crl-checks --verify "$1" "$2" 2>/dev/null' - "$T/s-sig.p7s" "$T/s-part"

# The forwarded signed message: text decorated, attachment untouched.
filter forward
check "forward: the text is decorated" grep -qx 'added (text/plain), template=legal-en, [0-9]*ms' "$T/forward.note"
check "forward: the attached signed message is byte for byte" \
    sh -c 'grep -c "" "$1" >/dev/null; "$3" - "$1" "$2" <<EOF
import sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
sys.exit(0 if a in b else 1)
EOF' - "$T/pgp-signed.eml" "$T/forward.out" "$PY"
finish
