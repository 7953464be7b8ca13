#!/bin/sh
# encrypt - the encrypt stage with real keys: GnuPG keys and OpenSSL
# certificates made here (encrypt_lib.sh), messages run through
# "relaychain filter" and through relaychaind as a smarthost to a sink
# (delivery = through, then queue).
# Every encrypted copy is decrypted with the real tools (gpg --decrypt,
# openssl cms -decrypt) and must equal the original entity byte for
# byte; a signed entity inside still verifies. Keys that must be refused
# are, the reason is named, and a required recipient without a key, a
# mix no single copy serves, or a keyring that cannot be read tempfails
# with nothing in clear reaching the sink.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/encrypt_lib.sh"

for prog in gpg gpgconf openssl; do
    command -v "$prog" >/dev/null 2>&1 ||
        { echo "$0: $prog is missing (scripts/setup installs it)" >&2; exit 1; }
done
trap 'enc_gpg_stop "$T/pgp"; smtpd_cleanup' EXIT

enc_pgp_keys "$T/pgp" || { fail "making the OpenPGP keys"; finish; }
enc_smime_certs "$T/sm" || { fail "making the S/MIME certificates"; finish; }
GPGK="gpg --homedir $T/pgp/keys --batch --no-tty --pinentry-mode loopback --passphrase ''"

# chain DIR [KEY=VALUE...] - an encrypt stage over both engines.
chain() {
    local d kv
    d=$1
    shift
    mkdir -p "$d"
    cat >"$d/policy.pcre" <<'MAP'
# S/MIME partners; carol's OpenPGP key names her in its display name only
/^carol@example\.org$/      required any
/@example\.org$/            required smime
# OpenPGP partners
/^(bob|eve|old|rev|trent)@example\.net$/    required pgp
/^never@example\.net$/      never
/@example\.net$/            opportunistic
MAP
    {
        echo "stage = encrypt"
        echo "policy_map = policy.pcre"
        echo "pgp_home = $T/pgp/gnupg"
        echo "smime_cert_dir = $T/sm/certs"
        echo "smime_ca_file = $T/sm/ca.pem"
        echo "smime_crl_file = $T/sm/crl.pem"
        for kv in "$@"; do
            echo "$kv"
        done
    } >"$d/80-encrypt.conf"
    printf 'chain_directory = %s\nmessage_size_limit = 10m\n' "$d" >"$d.conf"
}

filter() { # NAME CHAIN RCPT... (message on stdin)
    local name c r args
    name=$1 c=$2
    shift 2
    args=""
    for r in "$@"; do
        args="$args --rcpt $r"
    done
    "$RC" filter -c "$c.conf" --from alice@example.com $args \
        >"$T/$name.out" 2>"$T/$name.err"
}

chain "$T/c"

cat >"$T/m1.eml" <<'MSG'
From: Alice <alice@example.com>
To: Bob <bob@example.net>
Subject: quarterly figures
Message-ID: <m1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße, the figures are attached.
--b1
Content-Type: application/octet-stream; name="figures.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="figures.bin"

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
--b1--
MSG
entity "$T/m1.eml" "$T/m1.ent"

# --- OpenPGP: bob's key, PGP/MIME, decrypts to the entity byte for byte
filter pgp "$T/c" bob@example.net <"$T/m1.eml"
rc=$?
check "pgp: continue (exit $rc: $(cat "$T/pgp.err"))" [ "$rc" -eq 0 ]
check "pgp: multipart/encrypted with the pgp-encrypted protocol" \
    grep -q 'protocol="application/pgp-encrypted"' "$T/pgp.out"
check "pgp: the version part" grep -q '^Version: 1' "$T/pgp.out"
check "pgp: routing and threading fields stay outside" \
    sh -c "grep -q '^Subject: quarterly figures' '$T/pgp.out' && grep -q '^Message-ID: <m1@example.com>' '$T/pgp.out'"
check "pgp: nothing of the body in clear" \
    sh -c "! grep -q -e 'figures are attached' -e AAECAwQF -e 'multipart/mixed' '$T/pgp.out'"
pgp_part "$T/pgp.out" | eval "$GPGK --decrypt" >"$T/pgp.dec" 2>/dev/null
check "pgp: gpg --decrypt gives the original entity byte for byte" \
    cmp -s "$T/pgp.dec" "$T/m1.ent"

"$RC" filter -c "$T/c.conf" --from alice@example.com --rcpt bob@example.net \
    --rcpt trent@example.net --explain <"$T/m1.eml" >/dev/null 2>"$T/explain"
check "filter --explain names each recipient's key" \
    grep -q 'verdict: continue (bob@example.net pgp 0x[0-9A-F]\{16\}, trent@example.net pgp 0x[0-9A-F]\{16\})' "$T/explain"

# --- S/MIME: carol's certificate (SAN with the domain in upper case)
filter smime "$T/c" carol@example.org <"$T/m1.eml"
rc=$?
check "smime: continue (exit $rc: $(cat "$T/smime.err"))" [ "$rc" -eq 0 ]
check "smime: application/pkcs7-mime enveloped-data" \
    grep -q 'application/pkcs7-mime; smime-type=enveloped-data' "$T/smime.out"
check "smime: nothing of the body in clear" \
    sh -c "! grep -q -e 'figures are attached' -e AAECAwQF '$T/smime.out'"
openssl cms -decrypt -binary -in "$T/smime.out" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/smime.dec" 2>"$T/smime.dec.err"
check "smime: openssl cms -decrypt gives the original entity byte for byte" \
    cmp -s "$T/smime.dec" "$T/m1.ent"

# --- aes256-gcm: authEnveloped-data that openssl reads
chain "$T/cg" "smime_cipher = aes256-gcm"
filter gcm "$T/cg" carol@example.org <"$T/m1.eml"
check "gcm: authEnveloped-data" grep -q 'smime-type=authEnveloped-data' "$T/gcm.out"
openssl cms -decrypt -binary -in "$T/gcm.out" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/gcm.dec" 2>/dev/null
check "gcm: decrypts to the entity" cmp -s "$T/gcm.dec" "$T/m1.ent"

# --- two recipients with keys in one protocol: one body both can read
filter two "$T/c" bob@example.net trent@example.net <"$T/m1.eml"
check "two pgp recipients: continue" [ $? -eq 0 ]
pgp_part "$T/two.out" >"$T/two.asc"
check "two pgp recipients: encrypted to both keys" \
    sh -c "[ \$(gpg --homedir '$T/pgp/keys' --batch --list-packets '$T/two.asc' 2>/dev/null | grep -c '^:pubkey enc packet') -eq 2 ]"

# --- a signed message inside still verifies after the round trip
printf 'Signed text.\nSecond line.\n' >"$T/signed.txt"
openssl smime -sign -text -in "$T/signed.txt" -signer "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/signed.mime" 2>/dev/null
# openssl writes the signed part with CRLF and the rest with LF: one
# kind of line end, as a mail client would send it.
{
    printf 'From: alice@example.com\nTo: bob@example.net\nSubject: signed\n'
    tr -d '\r' <"$T/signed.mime"
} >"$T/signed.eml"
filter signed "$T/c" bob@example.net <"$T/signed.eml"
pgp_part "$T/signed.out" | eval "$GPGK --decrypt" >"$T/signed.dec" 2>/dev/null
check "signed: the multipart/signed entity is inside" \
    grep -q 'multipart/signed' "$T/signed.dec"
check "signed: its signature still verifies" \
    openssl smime -verify -in "$T/signed.dec" -CAfile "$T/sm/ca.pem" \
    -purpose any -out /dev/null 2>/dev/null

# --- keys that must be refused: tempfail 451 4.7.1, nothing written
for who in eve old rev; do
    filter "r_$who" "$T/c" "$who@example.net" <"$T/m1.eml"
    rc=$?
    check "$who: tempfail (exit $rc)" [ "$rc" -eq 3 ]
    check "$who: 451 4.7.1 naming the recipient" \
        grep -q "451 4.7.1 No usable encryption key for <$who@example.net>" "$T/r_$who.err"
    check "$who: nothing written" [ ! -s "$T/r_$who.out" ]
done
for who in dan fay gus hal ida; do
    filter "r_$who" "$T/c" "$who@example.org" <"$T/m1.eml"
    rc=$?
    check "$who: tempfail (exit $rc)" [ "$rc" -eq 3 ]
    check "$who: nothing written" [ ! -s "$T/r_$who.out" ]
done
lookup() {
    "$RC" keys -c "$T/c.conf" lookup "$1" >"$T/k_$1" 2>&1
    grep -q "$2" "$T/k_$1"
}
check "keys lookup: bob's key usable" lookup bob@example.net 'would use pgp 0x'
check "keys lookup: sign-only key" lookup eve@example.net 'refused (no usable encryption subkey)'
check "keys lookup: expired key" lookup old@example.net 'refused (expired)'
check "keys lookup: revoked key" lookup rev@example.net 'refused (revoked)'
check "keys lookup: address only in the display name" \
    lookup carol@example.org 'pgp 0x.*refused (address only in the display name'
check "keys lookup: carol's certificate usable" \
    lookup carol@example.org 'would use smime serial='
check "keys lookup: no keyEncipherment" lookup dan@example.org 'wrong key usage (no keyEncipherment)'
check "keys lookup: another CA" lookup fay@example.org 'not issued by a CA of smime_ca_file'
check "keys lookup: revoked by the CRL" lookup gus@example.org 'revoked (smime_crl_file)'
check "keys lookup: expired certificate" lookup hal@example.org 'smime .*refused (expired)'
check "keys lookup: address only in the subject" lookup ida@example.org 'address only in the subject'
check "keys lookup: the policy_map line" lookup never@example.net 'policy never any (.*policy.pcre:6)'
"$RC" keys -c "$T/c.conf" list >"$T/klist" 2>&1
check "keys list: every key and certificate" \
    sh -c "[ \$(grep -c '^pgp 0x' '$T/klist') -eq 7 ] && [ \$(grep -c '^smime serial=' '$T/klist') -eq 6 ]"

# --- on_missing_key = reject: 550 5.7.1
chain "$T/cr" "on_missing_key = reject"
filter rej "$T/cr" eve@example.net <"$T/m1.eml"
rc=$?
check "on_missing_key = reject: reject (exit $rc)" [ "$rc" -eq 2 ]
check "on_missing_key = reject: 550 5.7.1" grep -q '550 5.7.1 No usable encryption key' "$T/rej.err"

# --- opportunistic without a key: clear, untouched
filter opp "$T/c" zed@example.net <"$T/m1.eml"
check "opportunistic, no key: continue" [ $? -eq 0 ]
check "opportunistic, no key: the message as it was" cmp -s "$T/opp.out" "$T/m1.eml"

# --- a required recipient beside one no encrypted copy reaches: tempfail
filter mix "$T/c" bob@example.net zed@example.net <"$T/m1.eml"
rc=$?
check "required + opportunistic without a key: tempfail (exit $rc)" [ "$rc" -eq 3 ]
check "conflict: 451 4.7.0" grep -q '451 4.7.0' "$T/mix.err"
check "conflict: nothing written" [ ! -s "$T/mix.out" ]
filter mix2 "$T/c" bob@example.net carol@example.org <"$T/m1.eml"
check "pgp and smime recipients: tempfail (exit $?)" grep -q '451 4.7.0' "$T/mix2.err"
filter mix3 "$T/c" bob@example.net never@example.net <"$T/m1.eml"
check "required + never: tempfail" grep -q '451 4.7.0' "$T/mix3.err"

# --- the sender's trigger: header and subject tag, removed
sed 's/^Subject: .*/Subject: [secure] quarterly figures/' "$T/m1.eml" >"$T/tag.eml"
chain "$T/ct" "subject_tag = [secure]" "trigger_header = X-Encrypt: yes"
sed -i '1i /^trent@example\\.net$/ never' "$T/ct/policy.pcre"
filter tag "$T/ct" never@example.net <"$T/tag.eml"
check "subject tag on a 'never' recipient without a key: tempfail" \
    grep -q '451 4.7.1' "$T/tag.err"
filter tag2 "$T/ct" trent@example.net <"$T/tag.eml"
check "subject tag: encrypted" grep -q 'multipart/encrypted' "$T/tag2.out"
check "subject tag: removed" grep -q '^Subject: quarterly figures$' "$T/tag2.out"
sed 's/^Subject: .*/Subject: plain\nX-Encrypt: yes/' "$T/m1.eml" >"$T/trig.eml"
filter trig "$T/ct" trent@example.net <"$T/trig.eml"
check "trigger header: encrypted" grep -q 'multipart/encrypted' "$T/trig.out"
check "trigger header: removed" sh -c "! grep -qi '^X-Encrypt:' '$T/trig.out'"
filter notrig "$T/ct" trent@example.net <"$T/m1.eml"
check "no trigger, policy never: clear" cmp -s "$T/notrig.out" "$T/m1.eml"

# --- protect_subject: the real Subject inside, [...] outside
chain "$T/cp" "protect_subject = yes"
filter prot "$T/cp" bob@example.net <"$T/m1.eml"
check "protect_subject: outer Subject is [...]" grep -q '^Subject: \[\.\.\.\]$' "$T/prot.out"
pgp_part "$T/prot.out" | eval "$GPGK --decrypt" >"$T/prot.dec" 2>/dev/null
check "protect_subject: the real Subject inside" grep -q '^Subject: quarterly figures' "$T/prot.dec"
check "protect_subject: Content-Type marked hp=cipher" grep -q 'hp="cipher"' "$T/prot.dec"

# --- already encrypted: passed as is
filter again "$T/c" bob@example.net <"$T/pgp.out"
check "already encrypted: unchanged" cmp -s "$T/again.out" "$T/pgp.out"
filter again2 "$T/c" eve@example.net <"$T/smime.out"
check "already encrypted, even to a recipient without a key: unchanged" \
    cmp -s "$T/again2.out" "$T/smime.out"

# A label is not encryption: clear text called multipart/encrypted is
# encrypted like any other message.
cat >"$T/fake.eml" <<'MSG'
From: alice@example.com
Subject: looks encrypted
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="f"

--f
Content-Type: application/pgp-encrypted

Version: 1

--f
Content-Type: application/octet-stream

the secret figures, in clear
--f--
MSG
filter fake "$T/c" bob@example.net <"$T/fake.eml"
check "a multipart/encrypted label on clear text: encrypted all the same" \
    sh -c "grep -q '^-----BEGIN PGP MESSAGE-----' '$T/fake.out' && ! grep -q 'secret figures' '$T/fake.out'"

# --- pgp_trust = keyring: only trent's user ID is valid in the keyring
chain "$T/ck" "pgp_trust = keyring"
filter untr "$T/ck" bob@example.net <"$T/m1.eml"
check "keyring trust: bob's key (unknown validity) refused" grep -q '451 4.7.1' "$T/untr.err"
filter tr "$T/ck" trent@example.net <"$T/m1.eml"
check "keyring trust: trent's certified key used" grep -q 'multipart/encrypted' "$T/tr.out"
"$RC" keys -c "$T/ck.conf" lookup bob@example.net >"$T/k_untr" 2>&1
check "keys lookup says untrusted" grep -q 'refused (untrusted' "$T/k_untr"

# --- order: an editor after encrypt is refused, DKIM after it is not
chain "$T/co"
printf 'stage = rewrite\nheader_rules = policy.pcre\n' >"$T/co/85-rewrite.conf"
"$RC" check -c "$T/co.conf" >"$T/co.out" 2>&1
check "rewrite after encrypt: refused" [ $? -ne 0 ]
check "rewrite after encrypt: file:line named" \
    grep -q '85-rewrite.conf:1: stage rewrite (rewrite) edits the .* after the encrypting stage' "$T/co.out"
rm "$T/co/85-rewrite.conf"
"$RC" dkim keygen -d example.com -s s1 -D "$T/co" >/dev/null 2>&1
printf 'stage = dkim\ndomain = example.com\nselector = s1\nkey_file = s1.private\n' \
    >"$T/co/90-dkim.conf"
"$RC" check -c "$T/co.conf" >"$T/co2.out" 2>&1
check "dkim after encrypt: accepted ($(tail -n 1 "$T/co2.out"))" [ $? -eq 0 ]
# DKIM after encrypt signs the encrypted form: the signature verifies
# over the copy that leaves, which still decrypts.
printf 'stage = encrypt\npgp_home = %s\ndefault_policy = required\n' \
    "$T/pgp/gnupg" >"$T/co/80-encrypt.conf"
"$RC" filter -c "$T/co.conf" --from alice@example.com --rcpt bob@example.net \
    <"$T/m1.eml" >"$T/signed_enc.eml" 2>"$T/signed_enc.err"
check "encrypt then dkim: continue ($(cat "$T/signed_enc.err"))" [ $? -eq 0 ]
check "encrypt then dkim: one DKIM-Signature on the encrypted form" \
    sh -c "[ \$(grep -c '^DKIM-Signature:' '$T/signed_enc.eml') -eq 1 ] && grep -q 'multipart/encrypted' '$T/signed_enc.eml'"
mkdir -p "$T/dkv"
cp "$T/signed_enc.eml" "$T/dkv/m.eml"
check "encrypt then dkim: the signature verifies (dkimpy)" \
    "$PY" "$top_srcdir/tests/integration/dkim_verify.py" "$T/co/s1.txt" -- \
    "$T/dkv/m.eml"
pgp_part "$T/signed_enc.eml" | eval "$GPGK --decrypt" >"$T/signed_enc.dec" 2>/dev/null
check "encrypt then dkim: still decrypts to the entity" \
    cmp -s "$T/signed_enc.dec" "$T/m1.ent"
printf 'stage = encrypt\npgp_home = %s\non_error = continue\ndefault_policy = opportunistic\n' \
    "$T/pgp/gnupg" >"$T/co/80-encrypt.conf"
"$RC" check -c "$T/co.conf" >"$T/co3.out" 2>&1
check "on_error = continue refused" grep -q 'fails closed' "$T/co3.out"
# a sign_key_map that cannot be read: refused with its file:line
# (signing itself: encrypt_sign.sh)
printf 'stage = encrypt\npgp_home = %s\ndefault_policy = opportunistic\nsign_key_map = sign.map\n' \
    "$T/pgp/gnupg" >"$T/co/80-encrypt.conf"
"$RC" check -c "$T/co.conf" >"$T/co4.out" 2>&1
rc=$?
check "sign_key_map missing: refused (exit $rc)" \
    sh -c "[ $rc -ne 0 ] && grep -q '80-encrypt.conf:4: sign_key_map: .*sign.map' '$T/co4.out'"

# --- the shipped example, turned on as its comment says
mkdir -p "$T/cx/encrypt"
sed -e "s|^pgp_home = .*|pgp_home = $T/pgp/gnupg|" \
    -e "s|^#smime_cert_dir = .*|smime_cert_dir = $T/sm/certs|" \
    -e "s|^#smime_ca_file = .*|smime_ca_file = $T/sm/ca.pem|" \
    -e "s|^#smime_crl_file = .*|smime_crl_file = $T/sm/crl.pem|" \
    "$top_srcdir/chain.d/80-encrypt.conf.example" >"$T/cx/80-encrypt.conf"
cp "$top_srcdir/chain.d/encrypt/policy.pcre.example" "$T/cx/encrypt/policy.pcre"
printf 'chain_directory = %s\n' "$T/cx" >"$T/cx.conf"
"$RC" check -c "$T/cx.conf" >"$T/cx.out" 2>&1
check "the shipped 80-encrypt.conf.example loads ($(tail -n 1 "$T/cx.out"))" [ $? -eq 0 ]
"$RC" keys -c "$T/cx.conf" lookup someone@bank.example >"$T/cx.k" 2>&1
check "its policy map: required smime for the bank" \
    grep -q 'policy required smime (.*policy.pcre:[0-9]*)' "$T/cx.k"

# --- relaychaind as a smarthost: the sink's copies
set -- $(free_ports 2)
port=$1 sink_port=$2
chain "$T/cd"
sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/cd
message_size_limit = 10m
EOF
rcd_start r "$T/r.conf" "$port" || finish
# swaks ends the data with CRLF . CRLF after the file: without the file's
# own last line end, what arrives ends as m1.eml does.
printf '%s' "$(cat "$T/m1.eml")" >"$T/m1.swaks"
send() { # NAME FILE RCPT...
    local name f a
    name=$1 f=$2
    shift 2
    a=""
    for r in "$@"; do a="$a${a:+,}$r"; done
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to "$a" --data "$f" >"$T/$name.swaks" 2>&1
}
send d_pgp "$T/m1.swaks" bob@example.net
check "daemon pgp: 250" grep -q '<- *250 .*queued\|<- *250 2.0.0' "$T/d_pgp.swaks"
check "daemon pgp: at the sink" sink_wait sink 1 10
f=$(sink_files sink | tail -n 1)
pgp_part "$f" | eval "$GPGK --decrypt" >"$T/d_pgp.dec" 2>/dev/null
check "daemon pgp: the sink copy decrypts to the entity" cmp -s "$T/d_pgp.dec" "$T/m1.ent"
check "daemon pgp: the log names the recipient and key" \
    grep -q 'encrypt: continue, bob@example.net pgp 0x[0-9A-F]\{16\}' "$T/r.log"
send d_sm "$T/m1.swaks" carol@example.org
check "daemon smime: at the sink" sink_wait sink 2 10
f=$(sink_files sink | tail -n 1)
openssl cms -decrypt -binary -in "$f" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/d_sm.dec" 2>/dev/null
check "daemon smime: the sink copy decrypts to the entity" cmp -s "$T/d_sm.dec" "$T/m1.ent"
check "daemon smime: the log names the serial" \
    grep -q 'encrypt: continue, carol@example.org smime serial=' "$T/r.log"
# Several sessions at once: each message its own GPGME context, the key
# cache shared under its lock.
pids=""
for i in 1 2 3 4 5 6; do
    send "par$i" "$T/m1.swaks" bob@example.net &
    pids="$pids $!"
done
for p in $pids; do
    wait "$p"
done
check "parallel: six more copies at the sink" sink_wait sink 8 30
ok=0
for f in $(sink_files sink | tail -n 6); do
    pgp_part "$f" | eval "$GPGK --decrypt" >"$T/par.dec" 2>/dev/null &&
        cmp -s "$T/par.dec" "$T/m1.ent" && ok=$((ok + 1))
done
check "parallel: all six decrypt to the entity ($ok)" [ "$ok" -eq 6 ]
# Recipients whose copies differ: the second gets 452 4.5.3 at RCPT and
# is sent in a transaction of its own; a required recipient without a
# key is refused at RCPT alone (450 4.7.1).
send d_mix "$T/m1.swaks" bob@example.net,zed@example.net
check "daemon mix: zed gets 452 4.5.3 at RCPT" \
    grep -q '<\*\* *452 4.5.3 Send to this recipient in another transaction' "$T/d_mix.swaks"
check "daemon mix: relaychaind says why" \
    grep -q 'RCPT TO:<zed@example.net>: needs another copy (encrypt=clear;) than the transaction.s (encrypt=pgp;): 452 4.5.3' "$T/r.log"
extra=0
grep -q '^ *-> DATA' "$T/d_mix.swaks" && extra=1
send d_miss "$T/m1.swaks" eve@example.net
check "daemon missing key: 450 4.7.1 at RCPT" grep -q '<\*\* *450 4.7.1 No usable encryption key for <eve@example.net>' "$T/d_miss.swaks"
check "daemon missing key: the log names the recipient" \
    grep -q 'reject: RCPT TO:<eve@example.net>: 450 4.7.1 .*eve@example.net refused (required, no key)' "$T/r.log"
# Keyring unreadable: the message fails closed.
mv "$T/pgp/gnupg/pubring.kbx" "$T/pgp/pubring.kbx.aside"
mkdir "$T/pgp/gnupg/pubring.kbx"
send d_unread "$T/m1.swaks" bob@example.net
check "keyring unreadable: 451" grep -q '<\*\* *451 ' "$T/d_unread.swaks"
send d_unread2 "$T/m1.swaks" zed@example.net
check "keyring unreadable, opportunistic recipient: 451, not clear" \
    grep -q '<\*\* *451 ' "$T/d_unread2.swaks"
rmdir "$T/pgp/gnupg/pubring.kbx"
mv "$T/pgp/pubring.kbx.aside" "$T/pgp/gnupg/pubring.kbx"
sleep 0.5
check "only the $((8 + extra)) encrypted copies reached the sink ($(sink_count sink))" \
    [ "$(sink_count sink)" -eq $((8 + extra)) ]
for f in $(sink_files sink); do
    check "no clear text at the sink ($f)" \
        sh -c "! grep -q -e 'figures are attached' -e AAECAwQF '$f'"
done
# The key cache (key_cache_time = 60s) holds bob's key now; revoking it
# in the keyring drops the cache at once: the next RCPT is refused.
send d_bob2 "$T/m1.swaks" bob@example.net
check "bob again: 250" grep -q '<- *250 ' "$T/d_bob2.swaks"
bfpr=$(gpg --homedir "$T/pgp/keys" --with-colons --list-keys bob@example.net |
    awk -F: '/^fpr/ { print $10; exit }')
sed 's/^:-----/-----/' "$T/pgp/keys/openpgp-revocs.d/$bfpr.rev" |
    enc_gpg --homedir "$T/pgp/gnupg" --import 2>/dev/null
send d_bob3 "$T/m1.swaks" bob@example.net
check "bob's key revoked in the keyring: the cached key is not used (450 at RCPT)" \
    grep -q '<\*\* *450 4.7.1' "$T/d_bob3.swaks"
rcd_stop r

# --- delivery = queue: what is queued is encrypted; a mix is split into
# a copy per recipient group (encrypt_queue.sh).
set -- $(free_ports 2)
qport=$1 qsink_port=$2
sink_start qsink "$qsink_port"
rcd_conf "$T/q.conf" "$qport" "smtp:[127.0.0.1]:$qsink_port" <<EOF
chain_directory = $T/cd
message_size_limit = 10m
delivery = queue
queue_directory = $T/spool
EOF
rcd_start q "$T/q.conf" "$qport" || finish
port=$qport
send q_sm "$T/m1.swaks" carol@example.org
check "queue: 250 queued" grep -q '<- *250 .*queued' "$T/q_sm.swaks"
check "queue: at the sink" sink_wait qsink 1 20
f=$(sink_files qsink | tail -n 1)
openssl cms -decrypt -binary -in "$f" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/q_sm.dec" 2>/dev/null
check "queue: the copy decrypts to the entity" cmp -s "$T/q_sm.dec" "$T/m1.ent"
send q_mix "$T/m1.swaks" trent@example.net,carol@example.org
check "queue: an S/MIME recipient after an OpenPGP one: taken, one 250" \
    [ "$(grep -c '<- *250 2.0.0 Ok: queued as [0-9A-F]* [0-9A-F]*$' "$T/q_mix.swaks")" -eq 1 ]
check "queue: a copy each at the sink (encrypt_queue.sh checks them)" \
    sink_wait qsink 3 20
# A reload that moves pgp_home: the new stage's home is not the one
# GPGME has from the first, so it sets its own on each context (the
# slower path), and mail to trent still leaves encrypted to his key.
cp -a "$T/pgp/gnupg" "$T/pgp/gnupg2"
# Only the new home keeps trent's key: using the old one would refuse.
tfpr=$(gpg --homedir "$T/pgp/keys" --with-colons --list-keys trent@example.net |
    awk -F: '/^fpr/ { print $10; exit }')
enc_gpg --homedir "$T/pgp/gnupg" --yes --delete-keys "$tfpr" 2>/dev/null
check "trent's key is gone from the old home" \
    sh -c "! gpg --homedir '$T/pgp/gnupg' --list-keys trent@example.net >/dev/null 2>&1"
sed -i "s|^pgp_home = .*|pgp_home = $T/pgp/gnupg2|" "$T/cd/80-encrypt.conf"
n0=$(grep -c 'reload: configuration' "$T/q.log")
kill -USR1 "$(rcd_pid q)"
i=0
while [ "$(grep -c 'reload: configuration' "$T/q.log")" -le "$n0" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
check "reload with another pgp_home: done" grep -q 'reload: configuration' "$T/q.log"
nq=$(sink_count qsink)
send q_tr "$T/m1.swaks" trent@example.net
check "after the reload: trent's message queued" grep -q '<- *250 .*queued' "$T/q_tr.swaks"
check "after the reload: it reaches the sink" sink_wait qsink $((nq + 1)) 20
f=$(sink_files qsink | tail -n 1)
pgp_part "$f" | eval "$GPGK --decrypt" >"$T/q_tr.dec" 2>/dev/null
check "after the reload: encrypted to trent's key, decrypts to the entity" \
    cmp -s "$T/q_tr.dec" "$T/m1.ent"
rcd_stop q

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.err "$T/r.log"; do
        [ -s "$f" ] && { echo "== $f"; tail -n 20 "$f"; }
    done
fi
[ -n "${ENC_KEEP:-}" ] && cp -r "$T" "$ENC_KEEP"
finish
