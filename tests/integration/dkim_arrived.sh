#!/bin/sh
# dkim_arrived - a DKIM signature that arrives with a message still
# verifies when the message leaves through the shipped example chain
#
# The chain is chain.d/ of the source tree as an admin installs it:
# 10-rewrite.conf (its header rules masquerade *.corp.example in From:),
# 20-antivirus.conf (add_header = yes), 50-disclaimer.conf, and
# 90-dkim.conf.example enabled as it says (a key made by "relaychain dkim
# keygen", the file copied). Two messages come signed by an earlier hop
# with dkimpy (c=relaxed/simple, so any change of the body breaks it),
# keys made here, never DNS:
#   corp     From: app@build1.corp.example, signed d=corp.example by an
#            internal host: the rewrite stage must leave the signed From:
#            (and only the envelope sender is masqueraded), the
#            disclaimer must skip the message, both saying why;
#   partner  From: alice@example.com, signed d=partner.example, an 8-bit
#            text body: the disclaimer skips it, and the dkim stage adds
#            our signature without re-encoding the body.
# Each goes through relaychaind's SMTP front end (delivery = through, to
# smtp-sink) and through a private Postfix with relaychaind as its milter
# (to smtp-sink); what arrives must verify with dkimpy: the earlier hop's
# signature always, ours on the partner message too.
. "$top_srcdir/tests/integration/milter_lib.sh"

here=$top_srcdir/tests/integration
if ! $PY -c 'import dkim' 2>/dev/null; then
    fail "python3-dkim is needed (scripts/setup installs it)"
    finish
fi

set -- $(free_ports 3)
rcd_port=$1 pf_port=$2 sink_port=$3
sock=$T/rc/milter.sock
mkdir -p "$T/rc" "$T/keys" "$T/in" "$T/out-smtp" "$T/out-milter"
chmod 755 "$T/rc"

# The shipped chain, with the dkim example enabled as its comment says.
cp -R "$top_srcdir/chain.d" "$T/chain.d"
mkdir -p "$T/chain.d/dkim"
"$RC" dkim keygen -d example.com -s mail2026 -D "$T/chain.d/dkim" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen: $(cat "$T/keygen.err")"
cp "$T/chain.d/90-dkim.conf.example" "$T/chain.d/90-dkim.conf"
# One change, which has nothing to do with signatures: no database
# watcher thread. Started while the chain loads, before relaychaind
# blocks its signals, it can take the SIGTERM that mtd_stop sends and end
# the daemon with status 143 instead of a clean stop.
echo "database_check_interval = 0" >>"$T/chain.d/20-antivirus.conf"
OURS=$T/chain.d/dkim/mail2026.txt

# The earlier hops' keys.
for k in corp.example:hop1 partner.example:list1; do
    "$RC" dkim keygen -d "${k%%:*}" -s "${k#*:}" -D "$T/keys" \
        >/dev/null 2>"$T/keygen.err" || fail "keygen $k: $(cat "$T/keygen.err")"
done

# sign DOMAIN SELECTOR IN OUT - what the earlier hop sent
sign() {
    "$PY" - "$1" "$2" "$T/keys/$2.private" "$3" "$4" <<'EOF'
import sys
import dkim
domain, selector, key, src, dst = sys.argv[1:]
msg = open(src, "rb").read().replace(b"\n", b"\r\n")
sig = dkim.sign(msg, selector.encode(), domain.encode(), open(key, "rb").read(),
                include_headers=[b"from", b"to", b"subject", b"date",
                                 b"message-id", b"mime-version",
                                 b"content-type",
                                 b"content-transfer-encoding"])
open(dst, "wb").write(sig + msg)
EOF
}
cat >"$T/in/corp.raw" <<'EOF'
From: Build Robot <app@build1.corp.example>
To: bob@example.net
Subject: nightly build
Date: Mon, 07 Dec 2026 01:00:00 +0000
Message-ID: <build-1@build1.corp.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

The nightly build passed.
EOF
printf '%s\n' 'From: Alice <alice@example.com>' 'To: bob@example.net' \
    'Subject: list post' 'Date: Mon, 07 Dec 2026 01:00:00 +0000' \
    'Message-ID: <post-1@partner.example>' 'MIME-Version: 1.0' \
    'Content-Type: text/plain; charset=utf-8' \
    'Content-Transfer-Encoding: 8bit' '' 'Grüße aus dem Büro.' \
    >"$T/in/partner.raw"
sign corp.example hop1 "$T/in/corp.raw" "$T/in/corp.eml" ||
    fail "could not sign the corp message"
sign partner.example list1 "$T/in/partner.raw" "$T/in/partner.eml" ||
    fail "could not sign the partner message"
check "the signed messages verify before they are sent" \
    "$PY" "$here/dkim_verify.py" "$T/keys/hop1.txt" "$T/keys/list1.txt" -- \
    "$T/in/corp.eml" "$T/in/partner.eml"

# One relaychaind: SMTP listener to the sink, milter for Postfix.
mtd_conf "$T/rc.conf" "unix:$sock" <<EOF
smtp_listen = 127.0.0.1:$rcd_port
next_hop = smtp:[127.0.0.1]:$sink_port
next_hop_tls = none
myhostname = relay.test.example
milter_socket_group = postfix
milter_socket_mode = 0660
EOF
"$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1 ||
    fail "the shipped chain does not load: $(tail -n 3 "$T/check.out")"
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish
pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port" \
    "smtpd_milters = unix:$sock" "milter_protocol = 6" \
    "milter_default_action = tempfail"
pfx_master pf <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
EOF
sink_start sink "$sink_port"
pfx_start pf || finish
wait_listen "$pf_port" || fail "Postfix does not listen on $pf_port"

# deliver MODE PORT NAME SENDER - the sink's file becomes $T/out-MODE/NAME
deliver() {
    if ! timeout 60 "$PY" "$here/smtp_send.py" "$2" "$T/in/$3.eml" "$4" \
        bob@example.net >"$T/send.err" 2>&1; then
        fail "$1: $3: the client failed: $(tail -n 1 "$T/send.err")"
        return
    fi
    if ! sink_wait sink 1 20; then
        fail "$1: $3: nothing reached the sink"
        return
    fi
    mv "$(sink_files sink | head -n 1)" "$T/out-$1/$3.eml"
}

for mode in smtp milter; do
    port=$rcd_port
    [ $mode = milter ] && port=$pf_port
    deliver $mode "$port" corp app@build1.corp.example
    deliver $mode "$port" partner alice@example.com
    out=$T/out-$mode
    check "$mode: corp: the earlier hop's signature verifies" \
        sh -c "'$PY' '$here/dkim_verify.py' '$T/keys/hop1.txt' -- '$out/corp.eml' >'$T/v-$mode-corp' 2>&1"
    check "$mode: corp: its From: is as it was signed" \
        grep -q '^From: Build Robot <app@build1.corp.example>' "$out/corp.eml"
    check "$mode: corp: no footer" sh -c "! grep -q 'Confidential' '$out/corp.eml'"
    check "$mode: corp: the envelope sender is still masqueraded" \
        grep -q '^X-Mail-Args: <app@example.com>' "$out/corp.eml"
    check "$mode: corp: the antivirus stage scanned it" \
        grep -q '^X-Virus-Status: Clean' "$out/corp.eml"
    check "$mode: partner: both signatures verify" \
        sh -c "'$PY' '$here/dkim_verify.py' '$T/keys/list1.txt' '$OURS' -- '$out/partner.eml' >'$T/v-$mode-partner' 2>&1"
    check "$mode: partner: signed by the earlier hop and by us" \
        sh -c "grep -q 's=list1' '$T/v-$mode-partner' && grep -q 's=mail2026' '$T/v-$mode-partner'"
    check "$mode: partner: the 8-bit body is as it came" \
        grep -q '^Grüße aus dem Büro.' "$out/partner.eml"
done

log=$T/rcd.log
check "log: rewrite kept the signed From:" \
    grep -q ': rewrite: continue, sender=rewritten, headers=1 kept (DKIM-signed, d=corp.example, s=hop1)' "$log"
check "log: the disclaimer says why it skipped" \
    grep -q ': disclaimer: continue, skipped (DKIM-signed, d=corp.example, s=hop1)' "$log"
check "log: dkim signed and kept the body" \
    grep -q ': dkim: continue, signed, d=example.com, s=mail2026, a=rsa-sha256, body kept as an earlier hop signed it (d=partner.example, s=list1)' "$log"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- relaychaind log"; tail -n 60 "$log"
    cat "$T"/v-* 2>/dev/null
fi
pfx_stop pf
mtd_stop rcd
finish
