#!/bin/sh
# archive_encrypt - the archive stage's encrypt_to: records encrypted at
# rest to an OpenPGP key or an S/MIME certificate
#
# 1. relaychaind (delivery = queue) with the chain archive-clear (first,
#    no encryption), archive-pgp (first too, encrypt_to = the officer's
#    OpenPGP fingerprint, public key in pgp_home) and archive-smime
#    (last, encrypt_to = the officer's certificate, chained to
#    smime_ca_file). swaks sends messages with a Bcc recipient.
#    - list shows each record with encrypted-to and the envelope (Bcc
#      included) in clear; show without --raw refuses to print it and
#      says what it is encrypted to and how to decrypt it;
#    - the payload (show --raw) decrypts with gpg --decrypt / openssl
#      cms -decrypt, then zstd -d, to the original octets: those the
#      clear archive kept at the same point (pgp) and those the next hop
#      got (S/MIME, archived last); their SHA-256 is the record's;
#    - a marker line of each body is found in the clear store's files
#      and in none of the encrypted stores';
#    - verify passes on both encrypted stores, without any private key,
#      and counts the encrypted messages; an octet of ciphertext flipped
#      in a copy of the store fails it;
#    - search by the Bcc recipient finds the encrypted record; export
#      writes its payload as NAME.eml.zst.gpg, which decrypts to the
#      message; export to an mbox is refused, saying why.
# 2. An engine failure at run time: the gateway's keyring replaced by a
#    directory; the next message is tempfailed (451) and no record is
#    written for it, in clear or otherwise; with the keyring back, mail
#    is accepted again.
# 3. Refused at load with file:line and the reason: a sign-only key,
#    an expired one, a revoked one (by address), an unknown fingerprint,
#    a certificate without keyEncipherment, an expired one, one not
#    issued by smime_ca_file's CA, a file of two certificates,
#    encrypt_to beside a journal store,
#    a value of neither form, pgp_home without encrypt_to.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/encrypt_lib.sh"

for prog in gpg gpgconf openssl zstd swaks; do
    command -v "$prog" >/dev/null 2>&1 ||
        { echo "$0: $prog is missing (scripts/setup installs it)" >&2; exit 1; }
done
trap 'enc_gpg_stop "$T/pgp"; smtpd_cleanup' EXIT

enc_pgp_keys "$T/pgp" || { fail "making the OpenPGP keys"; finish; }
enc_smime_certs "$T/sm" || { fail "making the S/MIME certificates"; finish; }
GPGK="gpg --homedir $T/pgp/keys --batch --no-tty --pinentry-mode loopback --passphrase ''"
bobfpr=$(gpg --homedir "$T/pgp/gnupg" --with-colons --list-keys bob@example.net 2>/dev/null |
    awk -F: '/^fpr/ { print $10; exit }')
check "bob's fingerprint ($bobfpr)" [ ${#bobfpr} -eq 40 ]
bobsub=$(gpg --homedir "$T/pgp/gnupg" --with-colons --list-keys bob@example.net 2>/dev/null |
    awk -F: '/^sub/ && $12 ~ /e/ { print $5; exit }')

set -- $(free_ports 2)
port=$1 sink_port=$2
RC="$top_builddir/relaychain"

sink_start sink "$sink_port"
rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
delivery = queue
queue_directory = $T/spool
EOF
cat >"$T/chain.d/05-archive-clear.conf" <<EOF
stage = archive
store = dir:$T/store-clear
archive_node = node1
EOF
cat >"$T/chain.d/10-archive-pgp.conf" <<EOF
stage = archive
store = dir:$T/store-pgp
archive_node = node1
encrypt_to = pgp:$bobfpr
pgp_home = $T/pgp/gnupg
EOF
cat >"$T/chain.d/90-archive-smime.conf" <<EOF
stage = archive
store = dir:$T/store-smime
archive_node = node1
encrypt_to = smime:$T/sm/certs/carol.pem
smime_ca_file = $T/sm/ca.pem
EOF

check "relaychain check loads the chain" \
    "$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1
rcd_start rcd "$T/rc.conf" "$port" || finish

send() { # I (0: expect 250) -> swaks output in $T/swaks$I.out
    { echo "archive body $1"; echo "MARKER-$1-c0ffee"; openssl rand -base64 600; } >"$T/body$1"
    timeout 30 swaks --server 127.0.0.1 --port "$port" --silent 2 \
        --from "sender$1@client.example" --to "to$1@dest.example,bcc$1@hidden.example" \
        --header "Subject: encrypted archive test $1" \
        --header "Message-Id: <enc-$1@client.example>" \
        --header "To: <to$1@dest.example>" \
        --body "$T/body$1" >"$T/swaks$1.out" 2>&1
}

N=3
i=1
while [ $i -le $N ]; do
    send $i
    check "message $i accepted" [ $? -eq 0 ]
    i=$((i + 1))
done
check "the sink got $N messages" sink_wait sink $N 15

# --- 1. the records
for s in clear pgp smime; do
    "$RC" archive list --store "dir:$T/store-$s" >"$T/list-$s" 2>"$T/list-$s.err"
    check "archive list of the $s store runs ($(cat "$T/list-$s.err"))" [ $? -eq 0 ]
done
check "pgp records name the key, with the envelope and Bcc in clear" \
    [ "$(grep -c " point=archive-pgp .*rcpt=bcc[0-9]@hidden.example .* encrypted-to=pgp:$bobfpr\$" "$T/list-pgp")" -eq $N ]
check "S/MIME records name the certificate" \
    [ "$(grep -c ' point=archive-smime .*rcpt=bcc[0-9]@hidden.example .* encrypted-to=smime:serial=[0-9A-F]*$' "$T/list-smime")" -eq $N ]
check "clear records name no key" \
    sh -c "! grep -q encrypted-to '$T/list-clear'"

i=1
while [ $i -le $N ]; do
    pr=$(grep "message-id=<enc-$i@client.example>" "$T/list-pgp" | cut -d' ' -f1)
    sr=$(grep "message-id=<enc-$i@client.example>" "$T/list-smime" | cut -d' ' -f1)
    cr=$(grep "message-id=<enc-$i@client.example>" "$T/list-clear" | cut -d' ' -f1)
    "$RC" archive show --store "dir:$T/store-pgp" "$pr" >"$T/show$i" 2>"$T/show$i.err"
    rc=$?
    check "show $pr without --raw refuses (exit $rc)" [ $rc -eq 1 ] && [ ! -s "$T/show$i" ]
    check "saying what it is encrypted to" \
        grep -q "$pr is encrypted to pgp:$bobfpr; in clear: size=[0-9]* sha256=" "$T/show$i.err"
    check "and how to decrypt it" \
        grep -q "relaychain archive show --raw $pr | gpg --decrypt | zstd -d" "$T/show$i.err"
    "$RC" archive show --store "dir:$T/store-clear" "$cr" >"$T/clear$i.eml"
    "$RC" archive show --raw --store "dir:$T/store-pgp" "$pr" >"$T/pgp$i.bin"
    $GPGK --decrypt "$T/pgp$i.bin" 2>"$T/gpg$i.err" | zstd -d -q >"$T/pgp$i.eml"
    check "pgp payload $i decrypts (gpg, zstd -d) to the octets as received" \
        cmp -s "$T/pgp$i.eml" "$T/clear$i.eml"
    check "  and it is the message $i" grep -q "^MARKER-$i-c0ffee" "$T/pgp$i.eml"
    sha=$(sha256sum <"$T/pgp$i.eml" | cut -d' ' -f1)
    check "  whose SHA-256 is the record's" grep -q "sha256=$sha" "$T/show$i.err"
    "$RC" archive show --raw --store "dir:$T/store-smime" "$sr" >"$T/sm$i.der"
    openssl cms -decrypt -inform DER -binary -in "$T/sm$i.der" \
        -recip "$T/sm/certs/carol.pem" -inkey "$T/sm/keys/carol.key" 2>"$T/cms$i.err" |
        zstd -d -q >"$T/sm$i.eml"
    # The sink adds its own header lines in front and an empty line at the
    # end: compare the message's own part.
    sinkfile=$(grep -l "enc-$i@client.example" "$T"/sink/msg.* | head -n 1)
    tr -d '\r' <"$T/sm$i.eml" >"$T/sm$i.lf"
    tr -d '\r' <"$sinkfile" >"$T/sink$i.lf"
    check "S/MIME payload $i decrypts (openssl cms, zstd -d) to what the next hop got" \
        sh -c "[ -s '$T/sm$i.lf' ] && tail -n $(($(wc -l <"$T/sm$i.lf") + 1)) '$T/sink$i.lf' | head -n $(wc -l <"$T/sm$i.lf") | cmp -s - '$T/sm$i.lf'"
    # What is stored is ciphertext: an OpenPGP message to bob's
    # encryption subkey, a CMS EnvelopedData; not a zstd frame.
    gpg --homedir "$T/pgp/gnupg" --batch --list-packets "$T/pgp$i.bin" >"$T/packets$i" 2>&1
    check "pgp payload $i is a public-key encrypted OpenPGP message" \
        grep -q "^:pubkey enc packet: .*keyid $bobsub" "$T/packets$i"
    check "  not a zstd frame" sh -c "! zstd -t -q '$T/pgp$i.bin' 2>/dev/null"
    openssl cms -cmsout -print -inform DER -in "$T/sm$i.der" >"$T/cms$i.txt" 2>&1
    check "S/MIME payload $i is a CMS EnvelopedData" \
        grep -q "contentType: pkcs7-envelopedData" "$T/cms$i.txt"
    i=$((i + 1))
done
sed -n 1p "$T/gpg1.err" | grep -q "encrypted with" ||
    echo "# gpg said: $(cat "$T/gpg1.err")"

for s in pgp smime; do
    "$RC" archive verify --store "dir:$T/store-$s" >"$T/verify-$s" 2>&1
    check "verify passes on the $s store without a private key: $(tail -n 2 "$T/verify-$s" | head -n 1)" [ $? -eq 0 ]
    check "  saying the $N messages are encrypted" \
        grep -q ", $N messages encrypted to a key (hash chain checked" "$T/verify-$s"
done

"$RC" archive search --store "dir:$T/store-pgp" --index "$T/pgp.idx" \
    --recipient BCC2@hidden.example >"$T/search" 2>&1
pr=$(grep "message-id=<enc-2@client.example>" "$T/list-pgp" | cut -d' ' -f1)
check "search by the Bcc recipient finds the encrypted record" grep -q "$pr" "$T/search"
mkdir "$T/export"
"$RC" archive export --store "dir:$T/store-pgp" --index "$T/pgp.idx" \
    --recipient bcc2@hidden.example --dir "$T/export" >"$T/export.out" 2>&1
check "export of an encrypted record runs ($(cat "$T/export.out"))" [ $? -eq 0 ]
f=$(ls "$T"/export/*.eml.zst.gpg 2>/dev/null | head -n 1)
check "it writes the payload as NAME.eml.zst.gpg" [ -n "$f" ]
$GPGK --decrypt "$f" 2>/dev/null | zstd -d -q >"$T/export.eml"
check "which decrypts to the message" cmp -s "$T/export.eml" "$T/clear2.eml"
"$RC" archive export --store "dir:$T/store-pgp" --index "$T/pgp.idx" \
    --recipient bcc2@hidden.example --mbox "$T/export.mbox" >"$T/export2.out" 2>&1
check "export to an mbox is refused" [ $? -ne 0 ]
check "saying why" grep -q "is encrypted to pgp:$bobfpr: export it with --dir" "$T/export2.out"

# --- 2. the engine fails at run time: fail closed
before=$(grep -c ' message ' "$T/list-pgp")
mv "$T/pgp/gnupg/pubring.kbx" "$T/pgp/pubring.kbx.away"
mkdir "$T/pgp/gnupg/pubring.kbx"
send 4
check "with the keyring unreadable the message is tempfailed" \
    grep -q '^<\*\* *451' "$T/swaks4.out"
"$RC" archive list --store "dir:$T/store-pgp" >"$T/list-pgp2" 2>&1
check "and no pgp record was written for it" \
    [ "$(grep -c ' message ' "$T/list-pgp2")" -eq "$before" ]
check "the log says why" \
    wait_grep "archive-pgp: tempfail after error (pgp keyring .*pubring.kbx: Is a directory)" "$T/rcd.log" 5
rmdir "$T/pgp/gnupg/pubring.kbx"
mv "$T/pgp/pubring.kbx.away" "$T/pgp/gnupg/pubring.kbx"
send 5
check "with the keyring back the next message is accepted" \
    sh -c "! grep -q '^<\*\* *4' '$T/swaks5.out'"
rcd_stop rcd
"$RC" archive verify --store "dir:$T/store-pgp" >"$T/verify-pgp2" 2>&1
check "verify still passes: $(tail -n 2 "$T/verify-pgp2" | head -n 1)" [ $? -eq 0 ]
# An octet of ciphertext flipped in a copy: verify sees it, no key needed.
cp -a "$T/store-pgp" "$T/store-bad-copy"
seg=$(find "$T/store-bad-copy" -type f -size +2k | head -n 1)
off=$(($(stat -c %s "$seg") / 2))
old=$(od -An -tu1 -j "$off" -N1 "$seg" | tr -d ' ')
printf "$(printf '\\%03o' $(((old + 1) % 256)))" |
    dd of="$seg" bs=1 seek="$off" conv=notrunc 2>/dev/null
"$RC" archive verify --store "dir:$T/store-bad-copy" >"$T/verify-bad" 2>&1
check "a flipped ciphertext octet fails verify (exit $?): $(grep -m1 -e record -e segment "$T/verify-bad")" \
    sh -c "! '$RC' archive verify --store 'dir:$T/store-bad-copy' >/dev/null 2>&1"

# --- 3. refused at load
mkdir -p "$T/bad.d"
sed "s|^chain_directory = .*|chain_directory = $T/bad.d|" "$T/rc.conf" >"$T/bad.conf"
refused() { # WHAT REASON-PATTERN LINES...
    what=$1 pat=$2
    shift 2
    printf '%s\n' "stage = archive" "store = dir:$T/store-bad" "$@" >"$T/bad.d/10-archive.conf"
    "$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
    check "$what is refused at load ($(grep -m1 10-archive "$T/bad.out"))" \
        grep -q "10-archive.conf:3: encrypt_to: .*$pat" "$T/bad.out"
}
refused "a sign-only key" "no usable encryption subkey" \
    "encrypt_to = pgp:eve@example.net" "pgp_home = $T/pgp/gnupg"
refused "an expired key" "expired" \
    "encrypt_to = pgp:old@example.net" "pgp_home = $T/pgp/gnupg"
refused "a revoked key" "revoked" \
    "encrypt_to = pgp:rev@example.net" "pgp_home = $T/pgp/gnupg"
refused "an unknown fingerprint" "no such key in the keyring" \
    "encrypt_to = pgp:0123456789ABCDEF0123456789ABCDEF01234567" "pgp_home = $T/pgp/gnupg"
refused "a certificate without keyEncipherment" "wrong key usage (no keyEncipherment)" \
    "encrypt_to = smime:$T/sm/certs/dan.pem"
refused "an expired certificate" "expired" \
    "encrypt_to = smime:$T/sm/certs/hal.pem"
refused "a certificate of another CA" "not issued by a CA of smime_ca_file" \
    "encrypt_to = smime:$T/sm/certs/fay.pem" "smime_ca_file = $T/sm/ca.pem"
cat "$T/sm/certs/carol.pem" "$T/sm/ca.pem" >"$T/two.pem"
refused "a certificate file with two certificates" "holds 2 certificates: give a file with the officer's certificate alone" \
    "encrypt_to = smime:$T/two.pem"
refused "a value of neither form" "give pgp:FINGERPRINT" \
    "encrypt_to = officer@example.com"
printf '%s\n' "stage = archive" "store = smtp:[127.0.0.1]:1" "encrypt_to = smime:$T/sm/certs/carol.pem" \
    "spool_directory = $T/aspool" >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
check "encrypt_to beside a journal store is refused" \
    grep -q "10-archive.conf:3: encrypt_to: a journal store (smtp:) shows each message" "$T/bad.out"
printf '%s\n' "stage = archive" "store = dir:$T/store-bad" "pgp_home = $T/pgp/gnupg" >"$T/bad.d/10-archive.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
check "pgp_home without encrypt_to is refused" \
    grep -q "10-archive.conf:3: pgp_home: only with encrypt_to" "$T/bad.out"

finish
