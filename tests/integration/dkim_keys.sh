#!/bin/sh
# dkim_keys - key and table errors stop "relaychain check" with path:line
# and what to do; "relaychain dkim keygen" writes what opendkim-genkey
# writes; "relaychain dkim testkey" tells a matching record from a wrong
# one, with opendkim-genkey's files too.
. "$top_srcdir/tests/integration/lib.sh"

mkdir -p "$T/chain.d/keys" "$T/gen" "$T/odk"
printf 'chain_directory = chain.d\n' >"$T/relaychain.conf"
"$RC" dkim keygen -d example.com -s s1 -D "$T/chain.d/keys" >"$T/s1.out" 2>"$T/s1.err"; rc=$?
check "keygen: exit 0 (got $rc: $(cat "$T/s1.err"))" [ "$rc" -eq 0 ]

# expect_error NAME WANT...: check must fail with each WANT on stderr.
expect_error() {
    name=$1
    shift
    "$RC" check -c "$T/relaychain.conf" >/dev/null 2>"$T/$name.err"; rc=$?
    check "$name: exit 1 (got $rc)" [ "$rc" -eq 1 ]
    for want in "$@"; do
        check "$name: \"$want\" (got: $(cat "$T/$name.err"))" grep -qF -- "$want" "$T/$name.err"
    done
}
conf() {
    printf 'stage = dkim\n%s\n' "$1" >"$T/chain.d/90-dkim.conf"
}
K=$T/chain.d/keys

# The short form with a key that other users can read.
conf "domain = example.com
selector = s1
key_file = keys/s1.private"
chmod 644 "$K/s1.private"
expect_error mode "$T/chain.d/90-dkim.conf:4: key_file: $K/s1.private: key file mode 0644 lets its group and all other users read it" \
    "chmod 600 $K/s1.private"
chmod 620 "$K/s1.private"
expect_error groupwrite "key file mode 0620 lets other users write it"
chmod 600 "$K/s1.private"
"$RC" check -c "$T/relaychain.conf" >/dev/null 2>"$T/ok.err"; rc=$?
check "mode 0600 loads (got $rc: $(cat "$T/ok.err"))" [ "$rc" -eq 0 ]

conf "domain = example.com
selector = s1
key_file = keys/missing.private"
expect_error missing "$T/chain.d/90-dkim.conf:4: key_file: $K/missing.private: cannot open the key file: No such file or directory"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-128-cbc \
    -pass pass:secret -out "$K/enc.pem" 2>/dev/null
chmod 600 "$K/enc.pem"
conf "domain = example.com
selector = s1
key_file = keys/enc.pem"
expect_error encrypted "$K/enc.pem: the key is encrypted with a passphrase"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/ec.pem" 2>/dev/null
chmod 600 "$K/ec.pem"
conf "domain = example.com
selector = s1
key_file = keys/ec.pem"
expect_error ectype "$K/ec.pem: key type EC cannot sign DKIM; use RSA or Ed25519"

# Tables: the line of the key table, of the signing table.
conf "key_table = keys/keytable
signing_table = refile:keys/signingtable"
printf '# keys\ns1 example.com:s1:s1.private\nbroken example.com\n' >"$K/keytable"
printf '*@example.com s1\n' >"$K/signingtable"
expect_error ktline "$K/keytable:3: key broken: value \"example.com\" is not domain:selector:keyfile"
printf 's1 example.com:s1:s1.private\nold example.com:old:gone.private\n' >"$K/keytable"
expect_error ktkey "$K/keytable:2: key old: $K/gone.private: cannot open the key file"
printf 's1 example.com:s1:s1.private\n' >"$K/keytable"
printf '*@example.com s1\n\n*@example.org s2\n' >"$K/signingtable"
expect_error stname "$K/signingtable:3: key name s2 is not in the key table $K/keytable"
printf '*@example.com s1 not-an-address\n' >"$K/signingtable"
expect_error stsigner "$K/signingtable:1: signer \"not-an-address\" is not an address for i="
rm "$K/signingtable"
expect_error stmissing "$K/signingtable: No such file or directory"
conf "key_table = keys/keytable
signing_table = ldap://ldap.example.com/dc=example"
expect_error dataset "$T/chain.d/90-dkim.conf:3: signing_table: \"ldap://ldap.example.com/dc=example\": only flat files and refile: patterns are supported"
conf "key_table = keys/keytable"
expect_error half "key_table and signing_table go together"

# keygen: the files, their modes, the record in opendkim-genkey's form.
check "keygen: key mode 0600" [ "$(stat -c %a "$K/s1.private")" = 600 ]
check "keygen: PKCS#8 PEM" grep -q "^-----BEGIN PRIVATE KEY-----$" "$K/s1.private"
check "keygen: stdout is the .txt file" cmp -s "$T/s1.out" "$K/s1.txt"
"$RC" dkim keygen -d example.com -s s1 -D "$K" >/dev/null 2>"$T/again.err"; rc=$?
check "keygen: never over an existing key (exit $rc)" [ "$rc" -eq 1 ]
check "keygen: says why" grep -q "s1.private: File exists" "$T/again.err"
"$RC" dkim keygen -d example.com -s weak -b 512 -D "$K" >/dev/null 2>"$T/weak.err"; rc=$?
check "keygen: 512 bits refused (exit $rc)" [ "$rc" -eq 1 ]
check "keygen: 512 bits, the reason" grep -q "1024 to 8192 bits" "$T/weak.err"

opendkim-genkey -D "$T/odk" -d example.com -s s1 || fail "opendkim-genkey"
# shape - a record with the p= data and the strings' lengths abstracted.
shape() {
    awk '{
        out = $0
        gsub(/"p=[A-Za-z0-9+\/=]*"/, "\"p=P\"", out)
        gsub(/"[A-Za-z0-9+\/=]+"/, "\"P\"", out)
        print out
    }' "$1"
}
shape "$K/s1.txt" >"$T/shape.ours"
shape "$T/odk/s1.txt" >"$T/shape.theirs"
check "keygen: the record has opendkim-genkey's form ($(diff "$T/shape.theirs" "$T/shape.ours" | tr '\n' ' '))" \
    cmp -s "$T/shape.theirs" "$T/shape.ours"
check "keygen: character strings of at most 255 octets" sh -c \
    '! grep -o "\"[^\"]*\"" "$1" | awk "length > 257" | grep -q .' - "$K/s1.txt"
"$RC" dkim keygen -a ed25519 -d example.com -s ed -D "$T/gen" >"$T/ed.out" 2>/dev/null
check "keygen: Ed25519 record" grep -q '^ed._domainkey	IN	TXT	( "v=DKIM1; h=sha256; k=ed25519; "$' "$T/ed.out"
check "keygen: Ed25519 p= is 32 octets" sh -c \
    '[ "$(sed -n "s/.*\"p=\([^\"]*\)\".*/\1/p" "$1" | base64 -d | wc -c)" -eq 32 ]' - "$T/ed.out"

# testkey: our record, opendkim-genkey's files, and wrong records.
testkey() {
    name=$1 want_rc=$2 want=$3
    shift 3
    "$RC" dkim testkey "$@" >"$T/tk.$name" 2>&1; rc=$?
    check "testkey $name: exit $want_rc (got $rc)" [ "$rc" -eq "$want_rc" ]
    check "testkey $name: \"$want\" (got: $(cat "$T/tk.$name"))" grep -qF -- "$want" "$T/tk.$name"
}
testkey ours 0 "s1._domainkey.example.com: key OK (rsa-sha256, 2048 bits" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$K/s1.txt"
testkey genkey 0 "key OK (rsa-sha256" \
    -d example.com -s s1 -k "$T/odk/s1.private" --txt "$T/odk/s1.txt"
testkey ed 0 "key OK (ed25519-sha256" \
    -d example.com -s ed -k "$T/gen/ed.private" --txt "$T/gen/ed.txt"
testkey other 1 "the published key does not match the private key $K/s1.private" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$T/odk/s1.txt"
testkey type 1 "the record has k=ed25519, but $K/s1.private is an rsa key" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$T/gen/ed.txt"
printf 'v=DKIM1; k=rsa; p=\n' >"$T/revoked.txt"
testkey revoked 1 "the key is revoked (empty p=)" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$T/revoked.txt"
sed 's/h=sha256;/h=sha1;/' "$K/s1.txt" >"$T/sha1.txt"
testkey sha1 1 "h=sha1 does not allow sha256" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$T/sha1.txt"
sed 's/k=rsa; /k=rsa; t=y; /' "$K/s1.txt" >"$T/testing.txt"
testkey testing 0 "note: t=y, testing mode" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$T/testing.txt"
chmod 644 "$K/s1.private"
testkey keymode 1 "key file mode 0644" \
    -d example.com -s s1 -k "$K/s1.private" --txt "$K/s1.txt"
chmod 600 "$K/s1.private"
"$RC" dkim testkey -d example.com -s s1 >/dev/null 2>&1; rc=$?
check "testkey without -k: usage, exit 1 (got $rc)" [ "$rc" -eq 1 ]

finish
