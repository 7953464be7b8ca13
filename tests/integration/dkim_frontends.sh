#!/bin/sh
# dkim_frontends - DKIM signatures made by relaychaind verify where the
# mail arrives, through the SMTP front end and through the milter one
#
# The chain has two dkim stages: one signs with an RSA and an Ed25519
# key (relaxed/relaxed, the default), the next with a second RSA key and
# simple/simple, which any change of a header's folding or spacing
# breaks (eight_bit_body = keep there: the first stage re-encoded). The keys are made here by "relaychain dkim keygen" (the zone
# files it writes give the verifiers the public halves; nothing asks
# DNS). A varied part of
# tests/data/corpus/ (long and oddly folded headers, multipart, 8-bit
# bodies and an 8-bit header, non-UTF-8 charsets, messages that already
# carry DKIM signatures, RFC 2047 display names, CRLF files) goes, one
# message at a time, from tests/integration/smtp_send.py (smtplib;
# BODY=8BITMIME when the file has 8-bit octets):
#   smtp    to relaychaind (delivery = through), which relays to
#           smtp-sink -d;
#   milter  to a private Postfix whose smtpd_milters is relaychaind; the
#           signature is computed on the message as relaychaind rebuilt
#           it from libmilter's events and must survive the replay of the
#           edits through libmilter, Postfix's own Received: field and
#           Postfix's SMTP client, to smtp-sink -d.
# Every delivered file must carry the three signatures, and every signature
# must verify with dkimpy (tests/integration/dkim_verify.py, which also
# checks that each part decodes to the octets it had and that no part is
# left 8-bit) and the RSA ones with Mail::DKIM (dkim_verify.pl; the
# Debian 12 Mail::DKIM lacks Ed25519 and says SKIP). A delivered message
# changed after the fact must fail, so the verifiers are shown able to.
. "$top_srcdir/tests/integration/milter_lib.sh"

here=$top_srcdir/tests/integration
corpus=$top_srcdir/tests/data/corpus
MSGS="03-long-folded-subject.eml 06-mixed-gif-attachment.eml
08-nested-mixed-koi8r-latin2.eml 13-dkim-two-signatures.eml
14-dkim-mandrill-crlf.eml 15-rfc2047-names-alternative.eml
18-8bit-html-no-charset.eml 20-8bit-attachment-filename.eml
29-8bit-windows1258-header.eml 30-pgp-signed-odd-folding.eml
34-rfc5322-comments-folding.eml 37-rfc2047-folded-encoded-comment.eml"

if ! $PY -c 'import dkim, nacl' 2>/dev/null; then
    fail "python3-dkim and python3-nacl are needed (scripts/setup installs them)"
    finish
fi
if ! perl -MMail::DKIM::Verifier -MNet::DNS::RR -e 1 2>/dev/null; then
    fail "libmail-dkim-perl is needed (scripts/setup installs it)"
    finish
fi

set -- $(free_ports 3)
rcd_port=$1 pf_port=$2 sink_port=$3
sock=$T/rc/milter.sock
mkdir -p "$T/rc" "$T/chain.d/keys" "$T/out-smtp" "$T/out-milter"
chmod 755 "$T/rc"

"$RC" dkim keygen -a rsa -d example.com -s rsa2026 -D "$T/chain.d/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen rsa: $(cat "$T/keygen.err")"
"$RC" dkim keygen -a ed25519 -d example.com -s ed2026 -D "$T/chain.d/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen ed25519: $(cat "$T/keygen.err")"
"$RC" dkim keygen -a rsa -d example.com -s sim2026 -D "$T/chain.d/keys" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen rsa: $(cat "$T/keygen.err")"
ZONES="$T/chain.d/keys/rsa2026.txt $T/chain.d/keys/ed2026.txt $T/chain.d/keys/sim2026.txt"
cat >"$T/chain.d/90-dkim.conf" <<'EOF'
stage = dkim
key_table = keys/keytable
signing_table = refile:keys/signingtable
EOF
printf 'rsa %%:rsa2026:rsa2026.private\ned %%:ed2026:ed2026.private\n' \
    >"$T/chain.d/keys/keytable"
printf '*  rsa\n*  ed\n' >"$T/chain.d/keys/signingtable"
cat >"$T/chain.d/91-dkim-simple.conf" <<'EOF'
stage = dkim
key_table = keys/keytable.simple
signing_table = refile:keys/signingtable.simple
canonicalization = simple/simple
eight_bit_body = keep
EOF
printf 'sim %%:sim2026:sim2026.private\n' >"$T/chain.d/keys/keytable.simple"
printf '*  sim\n' >"$T/chain.d/keys/signingtable.simple"

# One relaychaind: the SMTP listener relays to the sink, the milter
# serves Postfix, which relays to the same sink.
mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
smtp_listen = 127.0.0.1:$rcd_port
next_hop = smtp:[127.0.0.1]:$sink_port
next_hop_tls = none
myhostname = relay.test.example
milter_socket_group = postfix
milter_socket_mode = 0660
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish
pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" \
    "smtpd_milters = unix:$sock" "milter_protocol = 6" \
    "milter_default_action = tempfail" "message_size_limit = 20000000"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

# deliver MODE PORT NAME - send corpus message NAME to PORT; the file the
# sink wrote becomes $T/out-MODE/NAME.
deliver() {
    if ! timeout 60 "$PY" "$here/smtp_send.py" "$2" "$corpus/$3" >"$T/send.err" 2>&1; then
        fail "$1: $3: the client failed: $(tail -n 1 "$T/send.err")"
        return
    fi
    if ! sink_wait sink 1 20; then
        fail "$1: $3: nothing reached the sink"
        return
    fi
    mv "$(sink_files sink | head -n 1)" "$T/out-$1/$3"
    check "$1: $3: one message at the sink" [ "$(sink_count sink)" -eq 0 ]
}

for name in $MSGS; do
    deliver smtp "$rcd_port" "$name"
    deliver milter "$pf_port" "$name"
done

n=$(echo $MSGS | wc -w)
for mode in smtp milter; do
    files=$(for name in $MSGS; do echo "$T/out-$mode/$name"; done)
    # shellcheck disable=SC2086
    $PY "$here/dkim_verify.py" --seven-bit "$corpus" $ZONES -- $files \
        >"$T/py.$mode" 2>&1 ||
        fail "$mode: dkimpy: $(grep -v '^PASS' "$T/py.$mode" | head -n 8)"
    n_rsa=$(grep -c '^PASS .* s=rsa2026 a=rsa-sha256' "$T/py.$mode")
    n_ed=$(grep -c '^PASS .* s=ed2026 a=ed25519-sha256' "$T/py.$mode")
    check "$mode: dkimpy: an RSA pass per message ($n_rsa of $n)" [ "$n_rsa" -eq "$n" ]
    check "$mode: dkimpy: an Ed25519 pass per message ($n_ed of $n)" [ "$n_ed" -eq "$n" ]
    n_sim=$(grep -c '^PASS .* s=sim2026 a=rsa-sha256' "$T/py.$mode")
    check "$mode: dkimpy: a simple/simple pass per message ($n_sim of $n)" [ "$n_sim" -eq "$n" ]
    # shellcheck disable=SC2086
    perl "$here/dkim_verify.pl" $ZONES -- $files >"$T/pl.$mode" 2>&1 ||
        fail "$mode: Mail::DKIM: $(grep -v '^PASS\|^SKIP' "$T/pl.$mode" | head -n 8)"
    p_rsa=$(grep -c '^PASS .* s=rsa2026 a=rsa-sha256' "$T/pl.$mode")
    check "$mode: Mail::DKIM: an RSA pass per message ($p_rsa of $n)" [ "$p_rsa" -eq "$n" ]
    p_sim=$(grep -c '^PASS .* s=sim2026 a=rsa-sha256' "$T/pl.$mode")
    check "$mode: Mail::DKIM: a simple/simple pass per message ($p_sim of $n)" [ "$p_sim" -eq "$n" ]
done

# Each went the way it should: through relaychaind's SMTP client, and
# through Postfix (its Received: field on top, above the signatures).
one=$T/out-smtp/13-dkim-two-signatures.eml
check "smtp: sent by relaychaind" grep -q '^X-Helo-Args: relay.test.example' "$one"
one=$T/out-milter/13-dkim-two-signatures.eml
check "milter: sent by Postfix" grep -q '^X-Helo-Args: pf.test.example' "$one"
check "milter: Postfix's Received: comes before our signatures" \
    sh -c "awk '/^Received: from client.test.example /{r=NR} /^DKIM-Signature:/{if(!d)d=NR} END{exit !(r && d && r<d)}' '$one'"
check "milter: the simple/simple signature has c=simple/simple" \
    sh -c "awk '/^[^ \t]/ {print \"\"} {printf \"%s\", \$0} END {print \"\"}' '$one' |
        grep '^DKIM-Signature:' | grep -q 'c=simple/simple;.*d=football.example.com; s=sim2026;'"
check "milter: the message's own two signatures are kept" \
    [ "$(grep -c '^DKIM-Signature:' "$one")" -eq 5 ]
check "relaychaind signed in milter mode" grep -q "milter: .*from=<sender@example.com>" "$T/rcd.log"

# The verifiers can fail: a delivered message changed after the fact.
sed 's/^Subject:/Subject: changed/' "$one" >"$T/tampered.eml"
# shellcheck disable=SC2086
if $PY "$here/dkim_verify.py" $ZONES -- "$T/tampered.eml" >"$T/tampered.py" 2>&1; then
    fail "dkimpy passed a changed message"
fi
# shellcheck disable=SC2086
if perl "$here/dkim_verify.pl" $ZONES -- "$T/tampered.eml" >"$T/tampered.pl" 2>&1; then
    fail "Mail::DKIM passed a changed message"
fi

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- relaychaind log"; tail -n 60 "$T/rcd.log"
    echo "--- Postfix log"; tail -n 40 "$T/pf/postfix.log"
fi
mtd_stop rcd
finish
