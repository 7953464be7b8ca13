#!/bin/sh
# dkim_corpus - the corpus signed by "relaychain filter", checked by two
# verifiers that share no code with libopendkim
#
# Two chains sign every message of tests/data/corpus/:
#   A  an RSA key (PKCS#8, openssl genpkey) and an Ed25519 key (relaychain
#      dkim keygen) from a refile: signing table, d= from each From domain;
#   B  an RSA key in PKCS#1 (openssl genrsa -traditional) and one made by
#      opendkim-genkey, from a flat signing table.
# Every signed message must verify with dkimpy (python3-dkim, Ed25519
# through python3-nacl) for every one of our signatures, and with
# Mail::DKIM (libmail-dkim-perl) for the RSA ones (the Debian 12
# Mail::DKIM has no Ed25519 and says so; those are counted as SKIP, and
# at least one RSA signature must pass for each message). Keys come from
# the zone files, never DNS. Re-encoded parts must decode to the octets
# they had, and no part may be left labelled 8bit. A message we changed
# after signing must fail both verifiers, so they are shown able to fail.
. "$top_srcdir/tests/integration/lib.sh"

PY=/usr/bin/python3
corpus=$top_srcdir/tests/data/corpus
here=$top_srcdir/tests/integration
# unsigned_reason NAME - for a corpus message that is not signed, the
# reason its log line must give: 38 starts with an mbox "From " line, so
# the whole of it is body, as Postfix would read it.
unsigned_reason() {
    case $1 in
    38-koi8r-bounce-mbox-from-line.eml) echo "no From header" ;;
    esac
}
MIN_ENCODED=3 # corpus messages with 8-bit parts (18, 19, 29) re-encoded

if ! $PY -c 'import dkim, nacl' 2>/dev/null; then
    fail "python3-dkim and python3-nacl are needed (scripts/setup installs them)"
    finish
fi
if ! perl -MMail::DKIM::Verifier -MNet::DNS::RR -e 1 2>/dev/null; then
    fail "libmail-dkim-perl is needed (scripts/setup installs it)"
    finish
fi

# zone SELECTOR KEYFILE TYPE - a zone-file record for an openssl key.
zone() {
    p=$(openssl pkey -in "$2" -pubout -outform DER 2>/dev/null | base64 -w0)
    if [ "$3" = ed25519 ]; then
        p=$(openssl pkey -in "$2" -pubout -outform DER | tail -c 32 | base64 -w0)
    fi
    printf '%s._domainkey\tIN\tTXT\t( "v=DKIM1; k=%s; "\n\t  "p=%s" )\n' "$1" "$3" "$p"
}

mkdir -p "$T/a/chain.d/keys" "$T/b/chain.d/keys" "$T/outa" "$T/outb"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$T/a/chain.d/keys/rsa8.pem" 2>/dev/null
openssl genrsa -traditional -out "$T/b/chain.d/keys/rsa1.pem" 2048 2>/dev/null
chmod 600 "$T/a/chain.d/keys/rsa8.pem" "$T/b/chain.d/keys/rsa1.pem"
check "PKCS#8 key made" grep -q "BEGIN PRIVATE KEY" "$T/a/chain.d/keys/rsa8.pem"
check "PKCS#1 key made" grep -q "BEGIN RSA PRIVATE KEY" "$T/b/chain.d/keys/rsa1.pem"
"$RC" dkim keygen -a ed25519 -d example.com -s ed2026 -D "$T/a/chain.d/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen: $(cat "$T/keygen.err")"
opendkim-genkey -D "$T/b/chain.d/keys" -d example.com -s genkey ||
    fail "opendkim-genkey failed"
zone rsa8 "$T/a/chain.d/keys/rsa8.pem" rsa >"$T/rsa8.txt"
zone rsa1 "$T/b/chain.d/keys/rsa1.pem" rsa >"$T/rsa1.txt"
ZONES_A="$T/rsa8.txt $T/a/chain.d/keys/ed2026.txt"
ZONES_B="$T/rsa1.txt $T/b/chain.d/keys/genkey.txt"

printf 'chain_directory = chain.d\n' >"$T/a/relaychain.conf"
cp "$T/a/relaychain.conf" "$T/b/relaychain.conf"
cat >"$T/a/chain.d/90-dkim.conf" <<'CONF'
stage = dkim
key_table = keys/keytable
signing_table = refile:keys/signingtable
CONF
printf 'rsa %%:rsa8:rsa8.pem\ned %%:ed2026:ed2026.private\n' \
    >"$T/a/chain.d/keys/keytable"
printf '*  rsa\n*  ed\n' >"$T/a/chain.d/keys/signingtable"
cat >"$T/b/chain.d/90-dkim.conf" <<'CONF'
stage = dkim
key_table = keys/keytable
signing_table = keys/signingtable
canonicalization = relaxed/simple
CONF
printf 'pkcs1 %%:rsa1:rsa1.pem\ngenkey %%:genkey:genkey.private\n' \
    >"$T/b/chain.d/keys/keytable"
printf '*  pkcs1\n*  genkey\n' >"$T/b/chain.d/keys/signingtable"

signed_a="" signed_b="" encoded=0 total=0
for msg in "$corpus"/*.eml; do
    name=$(basename "$msg")
    total=$((total + 1))
    for c in a b; do
        "$RC" filter -c "$T/$c/relaychain.conf" -v <"$msg" \
            >"$T/out$c/$name" 2>"$T/$c.log"
        rc=$?
        check "$c: $name: exit 0 (got $rc: $(tail -n 2 "$T/$c.log"))" [ "$rc" -eq 0 ]
        if grep -q "dkim: continue, signed, " "$T/$c.log"; then
            if [ "$c" = a ]; then
                signed_a="$signed_a $T/outa/$name"
                grep -q "7bit: [1-9][0-9]* encoded" "$T/$c.log" &&
                    encoded=$((encoded + 1))
            else
                signed_b="$signed_b $T/outb/$name"
            fi
            continue
        fi
        why=$(unsigned_reason "$name")
        if [ -z "$why" ]; then
            fail "$c: $name: not signed: $(grep -o 'dkim: .*' "$T/$c.log")"
        else
            check "$c: $name: not signed because: $why" \
                grep -qF "dkim: continue, not signed ($why)" "$T/$c.log"
        fi
    done
done
check "at least $MIN_ENCODED messages re-encoded to 7 bit (got $encoded)" \
    [ "$encoded" -ge "$MIN_ENCODED" ]

# dkimpy: every signature of ours, RSA and Ed25519; content kept, 7-bit.
# shellcheck disable=SC2086
$PY "$here/dkim_verify.py" --seven-bit "$corpus" $ZONES_A -- $signed_a \
    >"$T/py.a" 2>&1 || fail "dkimpy, chain A: $(grep -v '^PASS' "$T/py.a" | head -n 5)"
# shellcheck disable=SC2086
$PY "$here/dkim_verify.py" --seven-bit "$corpus" $ZONES_B -- $signed_b \
    >"$T/py.b" 2>&1 || fail "dkimpy, chain B: $(grep -v '^PASS' "$T/py.b" | head -n 5)"
n_ed=$(grep -c '^PASS .* a=ed25519-sha256' "$T/py.a")
n_rsa=$(grep -c '^PASS .* a=rsa-sha256' "$T/py.a" "$T/py.b" | awk -F: '{s+=$2} END {print s}')
n_msgs=$(echo $signed_a | wc -w)
check "dkimpy: one Ed25519 pass per signed message ($n_ed of $n_msgs)" [ "$n_ed" -eq "$n_msgs" ]
check "dkimpy: three RSA passes per signed message ($n_rsa, want $((3 * n_msgs)))" \
    [ "$n_rsa" -eq $((3 * n_msgs)) ]
check "most of the corpus is signed ($n_msgs of $total)" [ "$n_msgs" -ge $((total - 2)) ]

# Mail::DKIM: the RSA signatures; Ed25519 reported as SKIP.
# shellcheck disable=SC2086
perl "$here/dkim_verify.pl" $ZONES_A -- $signed_a >"$T/pl.a" 2>&1 ||
    fail "Mail::DKIM, chain A: $(grep -v '^PASS\|^SKIP' "$T/pl.a" | head -n 5)"
# shellcheck disable=SC2086
perl "$here/dkim_verify.pl" $ZONES_B -- $signed_b >"$T/pl.b" 2>&1 ||
    fail "Mail::DKIM, chain B: $(grep -v '^PASS\|^SKIP' "$T/pl.b" | head -n 5)"
p_rsa=$(cat "$T/pl.a" "$T/pl.b" | grep -c '^PASS .* a=rsa-sha256')
check "Mail::DKIM: three RSA passes per signed message ($p_rsa)" [ "$p_rsa" -eq $((3 * n_msgs)) ]
check "Mail::DKIM: no failures" sh -c '! grep -q "^FAIL" "$1" "$2"' - "$T/pl.a" "$T/pl.b"

# The verifiers can fail: a body changed after signing, a header changed.
one=$(echo $signed_a | awk '{print $1}')
sed '$ s/.$/X/' "$one" >"$T/tampered-body.eml"
sed 's/^Subject:/Subject: changed/' "$one" >"$T/tampered-header.eml"
for t in tampered-body tampered-header; do
    # shellcheck disable=SC2086
    if $PY "$here/dkim_verify.py" $ZONES_A -- "$T/$t.eml" >"$T/$t.py" 2>&1; then
        fail "dkimpy passed $t.eml"
    fi
    # shellcheck disable=SC2086
    if perl "$here/dkim_verify.pl" $ZONES_A -- "$T/$t.eml" >"$T/$t.pl" 2>&1; then
        fail "Mail::DKIM passed $t.eml"
    fi
    check "$t: dkimpy names the failure" grep -q "^FAIL" "$T/$t.py"
done
check "tampered body: Mail::DKIM says body hash" grep -qi "body has been altered" "$T/tampered-body.pl"

finish
