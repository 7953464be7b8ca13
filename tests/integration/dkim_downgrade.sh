#!/bin/sh
# dkim_downgrade - signatures on 8-bit mail survive a hop without 8BITMIME
#
# 8-bit messages of tests/data/corpus/ are submitted with BODY=8BITMIME
# (tests/integration/smtp_send.py) to relaychaind (delivery = through),
# whose next hop is a private Postfix that does not announce 8BITMIME
# (smtpd_discard_ehlo_keywords = 8bitmime) and relays to smtp-sink -8,
# which does not announce it either, so Postfix must make 8-bit content
# 7-bit itself before it can pass it on.
#   encode  relaychaind with a dkim stage and eight_bit_body = encode (the
#           default): the parts are re-encoded before signing, so nothing
#           is left for Postfix to convert; every message must arrive with
#           no "X-MIME-Autoconverted:" field, parts that decode to the
#           octets they had, and signatures that verify with dkimpy and
#           (RSA) Mail::DKIM;
#   keep    the same chain with eight_bit_body = keep: Postfix converts
#           the parts labelled 8bit to quoted-printable after we signed
#           (it sends unlabelled 8-bit octets as they are), and the body
#           hashes of those messages no longer match. This shows the set-up
#           really downgrades and that the verifiers catch it. The corpus
#           has one such message (19); the test makes a second, with two
#           8bit-labelled parts.
# relaychaind must not pass BODY=8BITMIME to a hop that did not offer it.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

here=$top_srcdir/tests/integration
corpus=$top_srcdir/tests/data/corpus
MSGS="18-8bit-html-no-charset.eml 19-8bit-utf8-declared-ascii.eml
20-8bit-attachment-filename.eml 29-8bit-windows1258-header.eml
labelled-8bit.eml"
LABELLED="19-8bit-utf8-declared-ascii.eml labelled-8bit.eml"

if ! $PY -c 'import dkim, nacl' 2>/dev/null; then
    fail "python3-dkim and python3-nacl are needed (scripts/setup installs them)"
    finish
fi
if ! perl -MMail::DKIM::Verifier -MNet::DNS::RR -e 1 2>/dev/null; then
    fail "libmail-dkim-perl is needed (scripts/setup installs it)"
    finish
fi

set -- $(free_ports 4)
enc_port=$1 keep_port=$2 pf_port=$3 sink_port=$4
mkdir -p "$T/keys" "$T/out-encode" "$T/out-keep" "$T/orig"
for name in $MSGS; do
    [ -f "$corpus/$name" ] && cp "$corpus/$name" "$T/orig/"
done
printf '%s\n' 'From: Zoë <zoe@example.org>' 'To: bob@example.net' \
    'Subject: labelled 8bit' 'Date: Thu, 01 Jan 2026 10:00:00 +0000' \
    'Message-ID: <labelled-8bit@example.org>' 'MIME-Version: 1.0' \
    'Content-Type: multipart/mixed; boundary="b1"' '' '--b1' \
    'Content-Type: text/plain; charset=utf-8' 'Content-Transfer-Encoding: 8bit' \
    '' 'Grüße aus Köln, ça va? Ünïcödé' '' '--b1' \
    'Content-Type: text/plain; charset=iso-8859-1' \
    'Content-Transfer-Encoding: 8bit' '' >"$T/orig/labelled-8bit.eml"
printf 'Gr\374\337e, na\357ve caf\351\n\n--b1--\n' >>"$T/orig/labelled-8bit.eml"
"$RC" dkim keygen -a rsa -d example.com -s rsa2026 -D "$T/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen rsa: $(cat "$T/keygen.err")"
"$RC" dkim keygen -a ed25519 -d example.com -s ed2026 -D "$T/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen ed25519: $(cat "$T/keygen.err")"
ZONES="$T/keys/rsa2026.txt $T/keys/ed2026.txt"
printf 'rsa %%:rsa2026:rsa2026.private\ned %%:ed2026:ed2026.private\n' \
    >"$T/keys/keytable"
printf '*  rsa\n*  ed\n' >"$T/keys/signingtable"
for mode in encode keep; do
    mkdir -p "$T/$mode.d"
    cat >"$T/$mode.d/90-dkim.conf" <<EOF
stage = dkim
key_table = $T/keys/keytable
signing_table = refile:$T/keys/signingtable
eight_bit_body = $mode
EOF
done

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" \
    "smtpd_discard_ehlo_keywords = 8bitmime"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port" -8
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"
rcd_conf "$T/encode.conf" "$enc_port" "smtp:[127.0.0.1]:$pf_port" <<EOF
chain_directory = $T/encode.d
EOF
rcd_conf "$T/keep.conf" "$keep_port" "smtp:[127.0.0.1]:$pf_port" <<EOF
chain_directory = $T/keep.d
EOF
rcd_start encode "$T/encode.conf" "$enc_port" || finish
rcd_start keep "$T/keep.conf" "$keep_port" || finish

# deliver MODE PORT NAME - corpus message NAME through relaychaind MODE;
# the file the sink wrote becomes $T/out-MODE/NAME.
deliver() {
    if ! timeout 60 "$PY" "$here/smtp_send.py" "$2" "$T/orig/$3" >"$T/send.err" 2>&1; then
        fail "$1: $3: the client failed: $(tail -n 1 "$T/send.err")"
        return
    fi
    if ! sink_wait sink 1 20; then
        fail "$1: $3: nothing reached the sink"
        return
    fi
    mv "$(sink_files sink | head -n 1)" "$T/out-$1/$3"
}

for name in $MSGS; do
    check "$name has 8-bit octets" sh -c "LC_ALL=C grep -q '[^ -~	]' '$T/orig/$name'"
    deliver encode "$enc_port" "$name"
    deliver keep "$keep_port" "$name"
done
n=$(echo $MSGS | wc -w)
enc_files=$(for name in $MSGS; do echo "$T/out-encode/$name"; done)
keep_files=$(for name in $MSGS; do echo "$T/out-keep/$name"; done)

# encode: nothing to convert, everything verifies.
# shellcheck disable=SC2086
$PY "$here/dkim_verify.py" --seven-bit "$T/orig" $ZONES -- $enc_files \
    >"$T/py.encode" 2>&1 ||
    fail "encode: dkimpy: $(grep -v '^PASS' "$T/py.encode" | head -n 8)"
n_pass=$(grep -c '^PASS ' "$T/py.encode")
check "encode: dkimpy: RSA and Ed25519 pass for each message ($n_pass of $((2 * n)))" \
    [ "$n_pass" -eq $((2 * n)) ]
# shellcheck disable=SC2086
perl "$here/dkim_verify.pl" $ZONES -- $enc_files >"$T/pl.encode" 2>&1 ||
    fail "encode: Mail::DKIM: $(grep -v '^PASS\|^SKIP' "$T/pl.encode" | head -n 8)"
p_rsa=$(grep -c '^PASS .* a=rsa-sha256' "$T/pl.encode")
check "encode: Mail::DKIM: an RSA pass per message ($p_rsa of $n)" [ "$p_rsa" -eq "$n" ]
# shellcheck disable=SC2086
check "encode: Postfix converted nothing" \
    sh -c '! grep -l "^X-MIME-Autoconverted:" "$@"' - $enc_files

# keep: Postfix downgraded the 8bit-labelled parts after we signed; those
# signatures break.
keep_files=$(for name in $LABELLED; do echo "$T/out-keep/$name"; done)
n=$(echo $LABELLED | wc -w)
for f in $keep_files; do
    check "keep: Postfix converted $(basename "$f") to quoted-printable" \
        sh -c "grep -qi '^Content-Transfer-Encoding: quoted-printable' '$f' && ! grep -qi '^Content-Transfer-Encoding: 8bit' '$f'"
done
# shellcheck disable=SC2086
$PY "$here/dkim_verify.py" $ZONES -- $keep_files >"$T/py.keep" 2>&1
n_bh=$(grep -c '^FAIL .*body hash' "$T/py.keep")
check "keep: dkimpy finds every body hash broken ($n_bh of $((2 * n)))" \
    [ "$n_bh" -eq $((2 * n)) ]
# shellcheck disable=SC2086
perl "$here/dkim_verify.pl" $ZONES -- $keep_files >"$T/pl.keep" 2>&1
n_bh=$(grep -ci '^FAIL .*body has been altered' "$T/pl.keep")
check "keep: Mail::DKIM finds every RSA body hash broken ($n_bh of $n)" [ "$n_bh" -eq "$n" ]

# The hop was told nothing it did not offer.
# shellcheck disable=SC2086
check "relaychaind gave the 8BITMIME-less hop no BODY=8BITMIME" \
    sh -c "! grep -q 'BODY=8BITMIME' \"\$@\"" - $enc_files $keep_files
n_enc=$(grep -c 'dkim: continue, signed, .* 7bit: [1-9][0-9]* encoded' "$T/encode.log")
check "encode: relaychaind re-encoded the 8-bit bodies ($n_enc, want 4)" [ "$n_enc" -eq 4 ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in py.encode pl.encode py.keep pl.keep encode.log keep.log pf/postfix.log; do
        echo "--- $f"; tail -n 30 "$T/$f"
    done
fi
rcd_stop encode
rcd_stop keep
finish
