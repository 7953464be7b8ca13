#!/bin/sh
# encrypt_postfix - one message to recipients of three policies, sent
# through a real Postfix whose relayhost is relaychaind (delivery =
# through) with the encrypt stage: relaychaind answers the recipients
# whose copy differs from the first one's with 452 4.5.3 at RCPT, Postfix
# retries them in transactions of their own, and the sink ends up with
# one copy per recipient, each in the form its policy asks for: bob's
# OpenPGP, carol's S/MIME (both decrypting to the original entity byte
# for byte) and zed's in clear (opportunistic, no key).
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/encrypt_lib.sh"

trap 'enc_gpg_stop "$T/pgp"; smtpd_cleanup' EXIT
enc_pgp_keys "$T/pgp" || { fail "making the OpenPGP keys"; finish; }
enc_smime_certs "$T/sm" || { fail "making the S/MIME certificates"; finish; }
GPGK="gpg --homedir $T/pgp/keys --batch --no-tty --pinentry-mode loopback --passphrase ''"

set -- $(free_ports 3)
pf_port=$1 port=$2 sink_port=$3
mkdir -p "$T/chain.d"
cat >"$T/chain.d/policy.pcre" <<'MAP'
/^carol@example\.org$/      required smime
/^bob@example\.net$/        required pgp
/@example\.net$/            opportunistic
MAP
cat >"$T/chain.d/80-encrypt.conf" <<EOF
stage = encrypt
policy_map = policy.pcre
pgp_home = $T/pgp/gnupg
smime_cert_dir = $T/sm/certs
smime_ca_file = $T/sm/ca.pem
EOF
sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
message_size_limit = 10m
EOF
rcd_start r "$T/r.conf" "$port" || finish

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$port" "smtpd_peername_lookup = no"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

cat >"$T/m.eml" <<'MSG'
From: Alice <alice@example.com>
Subject: one message, three policies
Message-ID: <pf1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

The figures for the three of you.
MSG
entity "$T/m.eml" "$T/m.ent"
printf '%s' "$(cat "$T/m.eml")" >"$T/m.swaks"

timeout 60 swaks --server "127.0.0.1:$pf_port" --helo client.test.example \
    --from alice@example.com \
    --to bob@example.net,zed@example.net,carol@example.org \
    --data "$T/m.swaks" >"$T/send.out" 2>&1
check "Postfix takes the message for all three" \
    grep -q '^<-  250 .*queued as' "$T/send.out"
# Postfix retries the recipients relaychaind deferred; flush now and
# then rather than wait for its queue manager.
i=0
while [ "$(sink_count sink)" -lt 3 ] && [ $i -lt 60 ]; do
    [ $((i % 5)) -eq 4 ] && postqueue -c "$T/pf/etc" -f >/dev/null 2>&1
    sleep 1
    i=$((i + 1))
done
sleep 1
check "three copies at the sink ($(sink_count sink))" [ "$(sink_count sink)" -eq 3 ]
check "relaychaind split the recipients with 452 4.5.3" \
    grep -q '452 4.5.3' "$T/pf/postfix.log"
check "each copy has one recipient" \
    sh -c "for f in \$(find '$T/sink' -type f -name 'msg.*'); do [ \$(grep -c '^X-Rcpt-Args:' \$f) -eq 1 ] || exit 1; done"

bobf=$(grep -l '^X-Rcpt-Args: <bob@example.net>' "$T"/sink/msg.* 2>/dev/null | head -n 1)
carolf=$(grep -l '^X-Rcpt-Args: <carol@example.org>' "$T"/sink/msg.* 2>/dev/null | head -n 1)
zedf=$(grep -l '^X-Rcpt-Args: <zed@example.net>' "$T"/sink/msg.* 2>/dev/null | head -n 1)
check "bob's copy arrived" [ -n "$bobf" ]
check "carol's copy arrived" [ -n "$carolf" ]
check "zed's copy arrived" [ -n "$zedf" ]
if [ -n "$bobf" ]; then
    pgp_part "$bobf" | eval "$GPGK --decrypt" >"$T/bob.dec" 2>/dev/null
    check "bob: OpenPGP, decrypts to the entity" cmp -s "$T/bob.dec" "$T/m.ent"
    check "bob: nothing in clear" sh -c "! grep -q 'three of you' '$bobf'"
fi
if [ -n "$carolf" ]; then
    openssl cms -decrypt -binary -in "$carolf" \
        -recip "$T/sm/certs/carol.pem" -inkey "$T/sm/keys/carol.key" \
        -out "$T/carol.dec" 2>/dev/null
    check "carol: S/MIME, decrypts to the entity" cmp -s "$T/carol.dec" "$T/m.ent"
    check "carol: nothing in clear" sh -c "! grep -q 'three of you' '$carolf'"
fi
if [ -n "$zedf" ]; then
    check "zed: in clear (opportunistic, no key)" grep -q 'three of you' "$zedf"
fi

pfx_stop pf
rcd_stop r
finish
