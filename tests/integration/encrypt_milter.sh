#!/bin/sh
# encrypt_milter - the encrypt stage behind a real Postfix, through the
# milter front end (one body per message): a message to a recipient with
# an OpenPGP key and one to a recipient with an S/MIME certificate reach
# the sink encrypted and decrypt to the original entity byte for byte;
# a message to a required recipient beside one no encrypted copy reaches,
# and one to a required recipient without a key, are refused by Postfix
# with the milter's 4xx, and nothing reaches the sink in clear.
. "$top_srcdir/tests/integration/milter_lib.sh"
. "$top_srcdir/tests/integration/encrypt_lib.sh"

trap 'enc_gpg_stop "$T/pgp"; smtpd_cleanup' EXIT
enc_pgp_keys "$T/pgp" || { fail "making the OpenPGP keys"; finish; }
enc_smime_certs "$T/sm" || { fail "making the S/MIME certificates"; finish; }
GPGK="gpg --homedir $T/pgp/keys --batch --no-tty --pinentry-mode loopback --passphrase ''"

set -- $(free_ports 2)
pf_port=$1 sink_port=$2
sock=$T/rc/milter.sock
mkdir -p "$T/rc" "$T/chain.d"
chmod 755 "$T/rc"
cat >"$T/chain.d/policy.pcre" <<'MAP'
/@example\.org$/            required smime
/^bob@example\.net$/        required pgp
/@example\.net$/            opportunistic
MAP
cat >"$T/chain.d/80-encrypt.conf" <<EOF
stage = encrypt
policy_map = policy.pcre
pgp_home = $T/pgp/gnupg
smime_cert_dir = $T/sm/certs
smime_ca_file = $T/sm/ca.pem
smime_crl_file = $T/sm/crl.pem
EOF
mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
milter_socket_group = postfix
milter_socket_mode = 0660
message_size_limit = 10m
EOF
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" \
    "smtpd_milters = unix:$sock" \
    "milter_protocol = 6" \
    "milter_default_action = tempfail" \
    "smtpd_peername_lookup = no"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

cat >"$T/m.eml" <<'MSG'
From: Alice <alice@example.com>
Subject: figures through the milter
Message-ID: <mm1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

The figures are attached.
--b1
Content-Type: application/octet-stream; name="f.bin"
Content-Transfer-Encoding: base64

AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
--b1--
MSG
entity "$T/m.eml" "$T/m.ent"
# swaks ends the data with CRLF . CRLF after the file itself.
printf '%s' "$(cat "$T/m.eml")" >"$T/m.swaks"

send() { # NAME RCPTS
    timeout 120 swaks --server "127.0.0.1:$pf_port" --helo client.test.example \
        --timeout 100 --from alice@example.com --to "$2" --data "$T/m.swaks" \
        >"$T/$1.out" 2>&1
}

send pgp bob@example.net
check "pgp: Postfix accepts it" grep -q '^<-  250 .*queued as' "$T/pgp.out"
check "pgp: it reaches the sink" sink_wait sink 1 20
f=$(sink_files sink | tail -n 1)
check "pgp: multipart/encrypted at the sink" grep -q 'protocol="application/pgp-encrypted"' "$f"
pgp_part "$f" | eval "$GPGK --decrypt" >"$T/pgp.dec" 2>/dev/null
check "pgp: decrypts to the entity byte for byte" cmp -s "$T/pgp.dec" "$T/m.ent"
check "pgp: relaychaind names the recipient and the key" \
    grep -q 'encrypt: continue, bob@example.net pgp 0x[0-9A-F]\{16\}' "$T/rcd.log"

send smime carol@example.org
check "smime: it reaches the sink" sink_wait sink 2 20
f=$(sink_files sink | tail -n 1)
openssl cms -decrypt -binary -in "$f" -recip "$T/sm/certs/carol.pem" \
    -inkey "$T/sm/keys/carol.key" -out "$T/smime.dec" 2>/dev/null
check "smime: decrypts to the entity byte for byte" cmp -s "$T/smime.dec" "$T/m.ent"

send mixed bob@example.net,zed@example.net
check "mixed: Postfix refuses with the milter's 451 4.7.0" \
    grep -q '^<\*\* *451 4.7.0' "$T/mixed.out"
send missing dan@example.org
check "missing key: 451 4.7.1" grep -q '^<\*\* *451 4.7.1' "$T/missing.out"
check "missing key: relaychaind names the recipient" \
    grep -q 'encrypt: tempfail, dan@example.org refused (required, no key)' "$T/rcd.log"
send clear zed@example.net
check "opportunistic without a key: accepted" grep -q '^<-  250 .*queued as' "$T/clear.out"
check "it reaches the sink" sink_wait sink 3 20
sleep 0.5
check "the sink has the three accepted messages only ($(sink_count sink))" \
    [ "$(sink_count sink)" -eq 3 ]
check "only zed's copy is in clear" \
    sh -c "[ \$(grep -l 'The figures are attached' $T/sink/msg.* | wc -l) -eq 1 ] && grep -l 'The figures are attached' $T/sink/msg.* | xargs grep -q 'X-Rcpt-Args: <zed@example.net>'"

pfx_stop pf
mtd_stop rcd
finish
