# encrypt_lib.sh - keys and certificates for the encrypt stage's tests
# (sourced after lib.sh or smtpd_lib.sh, not run)
#
#   enc_pgp_keys DIR   a GnuPG home in DIR/gnupg (the gateway's: public
#                      keys only) and the recipients' own in DIR/keys:
#                        bob@example.net     usable (RSA, encryption subkey)
#                        eve@example.net     sign-only (no encryption subkey)
#                        old@example.net     expired
#                        rev@example.net     revoked
#                        carol@example.org   only in the display name of a
#                                            user ID whose email is another
#                        trent@example.net   usable, valid in the keyring
#                                            (signed by the gateway's key)
#   enc_smime_certs DIR   a CA (DIR/ca.pem), another CA, and in
#                      DIR/certs the recipients' certificates, keys in
#                      DIR/keys:
#                        carol@Example.ORG   usable (SAN, keyEncipherment)
#                        dan@example.org     no keyEncipherment
#                        fay@example.org     issued by the other CA
#                        gus@example.org     revoked in DIR/crl.pem
#                        hal@example.org     expired
#                        ida@example.org     address only in the subject
#   enc_gpg_stop DIR   end the gpg-agents the homes started
#   entity IN OUT      the MIME entity of message IN as the stage
#                      encrypts it, into OUT
#   pgp_part FILE      the ASCII-armored block of a PGP/MIME message
#
# Keys are made without passphrases; every gpg call is --batch and
# bounded by timeout(1).

enc_gpg() {
    timeout 120 gpg --batch --no-tty --pinentry-mode loopback --passphrase '' \
        "$@"
}

# enc_newkey HOME UID [ENCRYPTION SUBKEY: yes|no] [EXPIRY]
enc_newkey() {
    local fpr
    enc_gpg --homedir "$1" --quick-gen-key "$2" rsa2048 sign "${4:-1y}" \
        2>/dev/null || return 1
    fpr=$(gpg --homedir "$1" --with-colons --list-keys "$2" 2>/dev/null |
        awk -F: '/^fpr/ { print $10; exit }')
    if [ "${3:-yes}" = yes ]; then
        enc_gpg --homedir "$1" --quick-add-key "$fpr" rsa2048 encr \
            "${4:-1y}" 2>/dev/null || return 1
    fi
    echo "$fpr"
}

enc_pgp_keys() {
    local d k fpr gw
    d=$1
    k=$d/keys
    mkdir -p -m 700 "$d/gnupg" "$k"
    enc_newkey "$k" "Bob <bob@example.net>" >/dev/null || return 1
    enc_newkey "$k" "Eve <eve@example.net>" no >/dev/null || return 1
    enc_newkey "$k" "Old <old@example.net>" yes seconds=1 >/dev/null ||
        return 1
    fpr=$(enc_newkey "$k" "Rev <rev@example.net>") || return 1
    enc_newkey "$k" "carol@example.org <mallory@example.com>" >/dev/null ||
        return 1
    enc_newkey "$k" "Trent <trent@example.net>" >/dev/null || return 1
    sed 's/^:-----/-----/' "$k/openpgp-revocs.d/$fpr.rev" |
        enc_gpg --homedir "$k" --import 2>/dev/null || return 1
    # The gateway's home holds the public keys only, as an admin's
    # "gpg --import" of what recipients sent would make it.
    gpg --homedir "$k" --armor --export >"$d/public.asc" 2>/dev/null
    enc_gpg --homedir "$d/gnupg" --import "$d/public.asc" 2>/dev/null
    # Its own key certifies Trent's, so that user ID is valid (full) in
    # the keyring; the others stay of unknown validity.
    gw=$(enc_newkey "$d/gnupg" "Gateway <gw@relay.example>" no) || return 1
    enc_gpg --homedir "$d/gnupg" --quick-lsign-key \
        "$(gpg --homedir "$k" --with-colons --list-keys trent@example.net |
            awk -F: '/^fpr/ { print $10; exit }')" 2>/dev/null || return 1
    enc_gpg --homedir "$d/gnupg" --check-trustdb >/dev/null 2>&1
    sleep 1 # old@example.net's key expires
    [ -n "$gw" ]
}

enc_gpg_stop() {
    gpgconf --homedir "$1/gnupg" --kill all 2>/dev/null
    gpgconf --homedir "$1/keys" --kill all 2>/dev/null
    return 0
}

# enc_ca DIR NAME - a CA in DIR/NAME with an "openssl ca" database.
enc_ca() {
    local c
    c=$1/$2
    mkdir -p "$c/new"
    : >"$c/index.txt"
    echo 1000 >"$c/serial"
    echo 1000 >"$c/crlnumber"
    cat >"$c/ca.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
dir = $c
database = $c/index.txt
new_certs_dir = $c/new
serial = $c/serial
crlnumber = $c/crlnumber
certificate = $c/ca.pem
private_key = $c/ca.key
default_md = sha256
default_days = 30
default_crl_days = 30
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
emailAddress = optional
[ req ]
distinguished_name = dn
[ dn ]
CNF
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$c/ca.key" \
        -out "$c/ca.pem" -days 60 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# enc_leaf DIR CA NAME SUBJECT KEYUSAGE [SAN] [-startdate X -enddate Y]
enc_leaf() {
    local d ca name subj ku san
    d=$1
    ca=$d/$2
    name=$3
    subj=$4
    ku=$5
    san=$6
    shift 6
    {
        echo "[ ext ]"
        echo "basicConstraints = CA:FALSE"
        echo "keyUsage = $ku"
        echo "extendedKeyUsage = emailProtection"
        [ -n "$san" ] && echo "subjectAltName = $san"
    } >"$d/$name.ext"
    openssl req -newkey rsa:2048 -nodes -keyout "$d/keys/$name.key" \
        -out "$d/$name.csr" -subj "$subj" 2>/dev/null &&
        openssl ca -batch -config "$ca/ca.cnf" -in "$d/$name.csr" \
            -out "$d/certs/$name.pem" -extfile "$d/$name.ext" \
            -extensions ext -notext "$@" 2>/dev/null
}

enc_smime_certs() {
    local d
    d=$1
    mkdir -p "$d/certs" "$d/keys"
    enc_ca "$d" ca && enc_ca "$d" otherca || return 1
    cp "$d/ca/ca.pem" "$d/ca.pem"
    enc_leaf "$d" ca carol "/CN=Carol" "digitalSignature,keyEncipherment" \
        "email:carol@Example.ORG" &&
        enc_leaf "$d" ca dan "/CN=Dan" "digitalSignature" \
            "email:dan@example.org" &&
        enc_leaf "$d" otherca fay "/CN=Fay" \
            "digitalSignature,keyEncipherment" "email:fay@example.org" &&
        enc_leaf "$d" ca gus "/CN=Gus" "digitalSignature,keyEncipherment" \
            "email:gus@example.org" &&
        enc_leaf "$d" ca hal "/CN=Hal" "digitalSignature,keyEncipherment" \
            "email:hal@example.org" -startdate 20200101000000Z \
            -enddate 20200201000000Z &&
        enc_leaf "$d" ca ida "/CN=Ida/emailAddress=ida@example.org" \
            "digitalSignature,keyEncipherment" "" || return 1
    openssl ca -batch -config "$d/ca/ca.cnf" -revoke "$d/certs/gus.pem" \
        2>/dev/null &&
        openssl ca -batch -config "$d/ca/ca.cnf" -gencrl -out "$d/crl.pem" \
            2>/dev/null
}

# entity IN OUT - the MIME entity of message IN as the stage encrypts it:
# its Content-* fields (continuations kept), an empty line and the body,
# every line end CRLF.
entity() {
    "$PY" - "$1" "$2" <<'PY'
import sys
raw = open(sys.argv[1], 'rb').read().replace(b'\r\n', b'\n')
head, _, body = raw.partition(b'\n\n')
out, keep = [], False
for line in head.split(b'\n'):
    if line[:1] in (b' ', b'\t'):
        if keep:
            out.append(line)
        continue
    keep = line.lower().startswith(b'content-')
    if keep:
        out.append(line)
ent = b'\n'.join(out) + b'\n\n' + body
open(sys.argv[2], 'wb').write(ent.replace(b'\n', b'\r\n'))
PY
}

# pgp_part FILE - the armored block of a PGP/MIME message
pgp_part() {
    sed -n '/^-----BEGIN PGP MESSAGE-----/,/^-----END PGP MESSAGE-----/p' "$1" |
        tr -d '\r'
}
