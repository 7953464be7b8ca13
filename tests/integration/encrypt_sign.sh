#!/bin/sh
# encrypt_sign - sign_key_map: the encrypt stage signs a sender's mail
# with the organisational key before it encrypts it.
# OpenPGP: the gateway's own key (Gateway <gw@relay.example>, its secret
# part in pgp_home); gpg --decrypt with the recipient's key must give
# the entity byte for byte and a good signature from that key. S/MIME: a
# certificate of the test CA with digitalSignature; openssl cms -decrypt
# gives signed-data that openssl cms -verify and openssl smime -verify
# accept against the CA, and its content is the entity. A sender no rule
# matches is not signed; a copy in clear is never signed; keys that
# cannot sign are refused at load with file:line; a secret key removed
# while relaychaind runs tempfails the message, nothing at the sink.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/encrypt_lib.sh"

for prog in gpg gpgconf openssl; do
    command -v "$prog" >/dev/null 2>&1 ||
        { echo "$0: $prog is missing (scripts/setup installs it)" >&2; exit 1; }
done
trap 'enc_gpg_stop "$T/pgp"; smtpd_cleanup' EXIT

enc_pgp_keys "$T/pgp" || { fail "making the OpenPGP keys"; finish; }
enc_smime_certs "$T/sm" || { fail "making the S/MIME certificates"; finish; }
G="$T/pgp/gnupg"
fpr_of() { # HOME UID
    gpg --homedir "$1" --with-colons --list-keys "$2" 2>/dev/null |
        awk -F: '/^fpr/ { print $10; exit }'
}
GW=$(fpr_of "$G" gw@relay.example)
check "the gateway's signing key ($GW)" [ ${#GW} -eq 40 ]
# The recipients know the gateway's public key.
gpg --homedir "$G" --armor --export "$GW" 2>/dev/null |
    enc_gpg --homedir "$T/pgp/keys" --import 2>/dev/null
GPGK="gpg --homedir $T/pgp/keys --batch --no-tty --pinentry-mode loopback --passphrase ''"

# The organisation's S/MIME signing certificate, kept out of
# smime_cert_dir (it is no recipient's).
enc_leaf "$T/sm" ca org "/CN=Example Org" "digitalSignature,nonRepudiation" \
    "email:alice@example.com" || fail "making the signing certificate"
mv "$T/sm/certs/org.pem" "$T/sm/org.pem"
chmod 600 "$T/sm/keys/org.key"
# One that may only encrypt, for the refusals.
enc_leaf "$T/sm" ca enconly "/CN=Encrypt only" "keyEncipherment" \
    "email:alice@example.com" || fail "making the encrypt-only certificate"
mv "$T/sm/certs/enconly.pem" "$T/sm/enconly.pem"
chmod 600 "$T/sm/keys/enconly.key" "$T/sm/keys/hal.key" "$T/sm/keys/carol.key"

# chain DIR MAP - an encrypt stage over both engines with MAP as
# sign_key_map.
chain() {
    mkdir -p "$1"
    cat >"$1/policy.pcre" <<'MAP'
/^carol@example\.org$/      required smime
/^(bob|trent)@example\.net$/    required pgp
/^never@example\.net$/      never
MAP
    printf '%s\n' "$2" >"$1/sign.map"
    cat >"$1/80-encrypt.conf" <<CONF
stage = encrypt
policy_map = policy.pcre
pgp_home = $G
smime_cert_dir = $T/sm/certs
smime_ca_file = $T/sm/ca.pem
sign_key_map = sign.map
CONF
    printf 'chain_directory = %s\n' "$1" >"$1.conf"
}
SIGNMAP="# the organisation's keys
/^alice@example\.com\$/     pgp:$GW smime:$T/sm/org.pem:$T/sm/keys/org.key
/@pgponly\.example\$/       pgp:$GW"
chain "$T/c" "$SIGNMAP"

filter() { # NAME FROM RCPT (message on stdin)
    "$RC" filter -c "$T/c.conf" --from "$2" --rcpt "$3" \
        >"$T/$1.out" 2>"$T/$1.err"
}

cat >"$T/m1.eml" <<'MSG'
From: Alice <alice@example.com>
To: Bob <bob@example.net>
Subject: signed and sealed
Message-ID: <s1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

The contract, signed by the organisation.
Zweite Zeile: Grüße.
MSG
entity "$T/m1.eml" "$T/m1.ent"

# --- OpenPGP: signed then encrypted, one OpenPGP message
filter pgp alice@example.com bob@example.net <"$T/m1.eml"
rc=$?
check "pgp signed: continue (exit $rc: $(cat "$T/pgp.err"))" [ "$rc" -eq 0 ]
check "pgp signed: PGP/MIME, nothing in clear" \
    sh -c "grep -q 'protocol=\"application/pgp-encrypted\"' '$T/pgp.out' && ! grep -q 'signed by the organisation' '$T/pgp.out'"
pgp_part "$T/pgp.out" >"$T/pgp.asc"
eval "$GPGK --status-file '$T/pgp.status' --decrypt '$T/pgp.asc'" \
    >"$T/pgp.dec" 2>"$T/pgp.gpgerr"
check "pgp signed: gpg --decrypt gives the entity byte for byte" \
    cmp -s "$T/pgp.dec" "$T/m1.ent"
check "pgp signed: gpg says Good signature from the gateway's key" \
    grep -q 'Good signature from "Gateway <gw@relay.example>"' "$T/pgp.gpgerr"
check "pgp signed: VALIDSIG names the gateway's fingerprint" \
    grep -q "^\[GNUPG:\] VALIDSIG $GW " "$T/pgp.status"
"$RC" filter -c "$T/c.conf" --from alice@example.com --rcpt bob@example.net \
    --explain <"$T/m1.eml" >/dev/null 2>"$T/pgp.explain"
check "pgp signed: the verdict names the signing key" \
    grep -q "bob@example.net pgp 0x[0-9A-F]\{16\}; signed pgp 0x$(echo "$GW" | cut -c25-)" "$T/pgp.explain"

# --- a sender no rule matches: encrypted, not signed
filter nosig carol@other.example bob@example.net <"$T/m1.eml"
check "unmatched sender: continue ($(cat "$T/nosig.err"))" [ $? -eq 0 ]
pgp_part "$T/nosig.out" >"$T/nosig.asc"
eval "$GPGK --status-file '$T/nosig.status' --decrypt '$T/nosig.asc'" \
    >"$T/nosig.dec" 2>/dev/null
check "unmatched sender: decrypts to the entity" cmp -s "$T/nosig.dec" "$T/m1.ent"
check "unmatched sender: no signature inside" \
    sh -c "grep -q 'DECRYPTION_OKAY' '$T/nosig.status' && ! grep -q -e GOODSIG -e VALIDSIG -e NEWSIG -e BADSIG '$T/nosig.status'"

# --- S/MIME: signed-data inside the enveloped-data
filter sm alice@example.com carol@example.org <"$T/m1.eml"
check "smime signed: continue ($(cat "$T/sm.err"))" [ $? -eq 0 ]
check "smime signed: enveloped-data outside, nothing in clear" \
    sh -c "grep -q 'smime-type=enveloped-data' '$T/sm.out' && ! grep -q 'signed by the organisation' '$T/sm.out'"
openssl cms -decrypt -binary -in "$T/sm.out" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/sm.inner" 2>"$T/sm.decerr"
check "smime signed: decrypts to signed-data" \
    grep -q '^Content-Type: application/pkcs7-mime; smime-type=signed-data' "$T/sm.inner"
openssl cms -verify -binary -in "$T/sm.inner" -CAfile "$T/sm/ca.pem" \
    -out "$T/sm.dec" 2>"$T/sm.verr"
check "smime signed: openssl cms -verify against the CA ($(cat "$T/sm.verr"))" \
    grep -q 'Verification successful' "$T/sm.verr"
check "smime signed: the signed content is the entity byte for byte" \
    cmp -s "$T/sm.dec" "$T/m1.ent"
openssl smime -verify -binary -in "$T/sm.inner" -CAfile "$T/sm/ca.pem" \
    -signer "$T/sm.signer" -out /dev/null 2>"$T/sm.verr2"
check "smime signed: openssl smime -verify too" grep -q 'Verification successful' "$T/sm.verr2"
check "smime signed: the signer is the organisation's certificate" \
    sh -c "openssl x509 -in '$T/sm.signer' -noout -subject | grep -q 'Example Org'"
# A tampered signed-data does not verify (the check above can fail).
sed '12s/A/B/;12s/a/b/' "$T/sm.inner" >"$T/sm.bad"
check "smime signed: a changed signed-data fails to verify" \
    sh -c "! openssl cms -verify -binary -in '$T/sm.bad' -CAfile '$T/sm/ca.pem' -out /dev/null 2>/dev/null"

# --- a rule with no key for the copy's protocol: unsigned, and said
filter smnosig bob@pgponly.example carol@example.org <"$T/m1.eml"
check "pgp-only rule, S/MIME copy: continue" [ $? -eq 0 ]
openssl cms -decrypt -binary -in "$T/smnosig.out" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/smnosig.dec" 2>/dev/null
check "pgp-only rule, S/MIME copy: the entity itself, unsigned" \
    cmp -s "$T/smnosig.dec" "$T/m1.ent"
"$RC" filter -c "$T/c.conf" --from bob@pgponly.example --rcpt carol@example.org \
    --explain <"$T/m1.eml" >/dev/null 2>"$T/smnosig.explain"
check "pgp-only rule, S/MIME copy: the verdict says unsigned and why" \
    grep -q 'unsigned (.*sign.map:3 has no smime key)' "$T/smnosig.explain"

# --- a copy in clear is not signed
filter clear alice@example.com never@example.net <"$T/m1.eml"
check "clear recipient: continue" [ $? -eq 0 ]
check "clear recipient: the message as it was, no signature added" \
    sh -c "grep -q 'signed by the organisation' '$T/clear.out' && ! grep -q -e pkcs7 -e 'BEGIN PGP' -e multipart/signed '$T/clear.out'"

# --- keys refused at load, with the conf's and the map's file:line
refused() { # NAME MAP-LINE2 PATTERN
    chain "$T/r_$1" "# line 1
$2"
    "$RC" check -c "$T/r_$1.conf" >"$T/r_$1.out" 2>&1
    rc=$?
    check "refused at load: $1 (exit $rc: $(head -c 300 "$T/r_$1.out"))" \
        sh -c "[ $rc -ne 0 ] && grep -q '80-encrypt.conf:6: sign_key_map: .*sign.map:2: .*$3' '$T/r_$1.out'"
}
EXP=$(enc_newkey "$G" "Expired <exp@relay.example>" no seconds=1)
ENC=$(enc_gpg --homedir "$G" --quick-gen-key "Enc <enc@relay.example>" \
    rsa2048 cert 1y 2>/dev/null && fpr_of "$G" enc@relay.example)
enc_gpg --homedir "$G" --quick-add-key "$ENC" rsa2048 encr 1y 2>/dev/null
timeout 120 gpg --homedir "$G" --batch --no-tty --pinentry-mode loopback \
    --passphrase 'a secret' --quick-gen-key "Locked <locked@relay.example>" \
    rsa2048 sign 1y 2>/dev/null
LOCKED=$(fpr_of "$G" locked@relay.example)
sleep 1 # the expired key expires
BOB=$(fpr_of "$G" bob@example.net)
refused pgp-expired "/./ pgp:$EXP" "signing key $EXP: expired"
refused pgp-no-secret "/./ pgp:$BOB" "signing key $BOB: its secret part is not in pgp_home"
refused pgp-wrong-usage "/./ pgp:$ENC" "signing key $ENC: wrong usage: no key or subkey that can sign"
refused pgp-passphrase "/./ pgp:$LOCKED" "signing key $LOCKED cannot sign: .*(the key must have no passphrase)"
refused pgp-unknown "/./ pgp:0123456789ABCDEF0123456789ABCDEF01234567" "no such key in pgp_home"
refused pgp-short "/./ pgp:0x1234" "fingerprint, 40 hex digits"
refused expansion '/^(.*)@x$/ pgp:$1' 'no \$ expansions here'
refused syntax "/./ gpg:$GW" "is neither pgp:FINGERPRINT nor smime"
refused smime-expired "/./ smime:$T/sm/certs/hal.pem:$T/sm/keys/hal.key" "hal.pem: the signing certificate is expired"
refused smime-usage "/./ smime:$T/sm/enconly.pem:$T/sm/keys/enconly.key" "the signing certificate is of the wrong key usage"
refused smime-mismatch "/./ smime:$T/sm/org.pem:$T/sm/keys/carol.key" "carol.key: the private key does not match"
chmod 644 "$T/sm/keys/org.key"
refused smime-readable "/./ smime:$T/sm/org.pem:$T/sm/keys/org.key" "org.key: mode 0644 .*must stay private"
chmod 600 "$T/sm/keys/org.key"
chmod 705 "$G/private-keys-v1.d"
refused pgp-home-open "/./ pgp:$GW" "private-keys-v1.d: mode 0705 .*must stay private"
chmod 700 "$G/private-keys-v1.d"
check "a refusal names no key material" \
    sh -c "! grep -q -e 'PRIVATE KEY' -e 'BEGIN' '$T'/r_*.out"

# --- relaychaind: signed copies at the sink; the secret key removed
# while it runs tempfails, nothing at the sink
set -- $(free_ports 2)
port=$1 sink_port=$2
sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/c
EOF
rcd_start r "$T/r.conf" "$port" || finish
printf '%s' "$(cat "$T/m1.eml")" >"$T/m1.swaks"
send() { # NAME RCPT
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to "$2" --data "$T/m1.swaks" \
        >"$T/$1.swaks" 2>&1
}
send d1 bob@example.net
check "daemon: signed pgp copy taken (250)" grep -q '<- *250 ' "$T/d1.swaks"
check "daemon: at the sink" sink_wait sink 1 10
f=$(sink_files sink | tail -n 1)
pgp_part "$f" >"$T/d1.asc"
eval "$GPGK --status-file '$T/d1.status' --decrypt '$T/d1.asc'" >"$T/d1.dec" 2>/dev/null
check "daemon: the sink copy decrypts to the entity" cmp -s "$T/d1.dec" "$T/m1.ent"
check "daemon: and is signed by the gateway's key" \
    grep -q "^\[GNUPG:\] VALIDSIG $GW " "$T/d1.status"
check "daemon: the log says signed" grep -q "encrypt: continue, bob@example.net pgp 0x[0-9A-F]*; signed pgp 0x" "$T/r.log"
enc_gpg --homedir "$G" --yes --delete-secret-keys "$GW" 2>/dev/null
check "the gateway's secret key is gone" \
    sh -c "! gpg --homedir '$G' --list-secret-keys '$GW' >/dev/null 2>&1"
send d2 bob@example.net
check "secret key removed: 451, not unsigned" grep -q '<\*\* *451 ' "$T/d2.swaks"
check "secret key removed: the log says why" \
    grep -q "signing key $GW: its secret part is not in pgp_home" "$T/r.log"
send d3 carol@example.org
check "secret key removed: S/MIME mail still signed and taken" grep -q '<- *250 ' "$T/d3.swaks"
check "secret key removed: S/MIME copy at the sink" sink_wait sink 2 10
sleep 0.5
check "secret key removed: nothing more at the sink ($(sink_count sink))" \
    [ "$(sink_count sink)" -eq 2 ]
rcd_stop r

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.err "$T/r.log"; do
        [ -s "$f" ] && { echo "== $f"; tail -n 20 "$f"; }
    done
fi
[ -n "${ENC_KEEP:-}" ] && cp -r "$T" "$ENC_KEEP"
finish
