#!/bin/sh
# milter_sendmail - relaychaind as a milter of a real Sendmail
#
# Debian's sendmail-bin and sendmail-cf conflict with the postfix package,
# so they are not installed: "apt-get download" fetches them and
# "dpkg -x" unpacks them into $T. A minimal loopback sendmail.mc includes
# docs/relaychain.m4 itself (its INPUT_MAIL_FILTER line, with the socket
# path changed to the test's), relays everything to smtp-sink, and runs
# as a foreground daemon (-bD) on a free port. One message through it:
# the rewrite stage changes the envelope sender and From:, the testedit
# stage adds X-Frontend:, and the sink gets the result. With relaychaind
# stopped, F=T makes Sendmail answer 4xx.
#
# Two things Sendmail insists on, worked around without touching the
# system: it sleeps 60 s at start when it cannot qualify its host name
# (a bare "127.0.0.1 vm" in /etc/hosts), so it runs in a private mount
# namespace where a test hosts file names the host vm.test.example (when
# unshare is not allowed, the test waits the 60 s out); and it refuses a
# milter socket below a world-writable directory such as /tmp, so the
# socket lives in a directory of the test's own under /run.
#
# When the packages cannot be fetched (no package registry), the test
# says so and is skipped (exit 77).
. "$top_srcdir/tests/integration/milter_lib.sh"

sm=$T/sm
mkdir -p "$sm/deb"
if ! (cd "$sm/deb" && timeout 120 apt-get download sendmail-bin sendmail-cf \
    >"$T/apt.log" 2>&1); then
    echo "$0: SKIP: apt-get download sendmail-bin sendmail-cf failed: $(tail -n 1 "$T/apt.log")"
    exit 77
fi
for d in "$sm"/deb/*.deb; do
    dpkg -x "$d" "$sm/root" || fail "dpkg -x $d"
done
SENDMAIL=$sm/root/usr/libexec/sendmail/sendmail
CFDIR=$sm/root/usr/share/sendmail/cf
check "sendmail unpacked" [ -x "$SENDMAIL" ]
missing=$(ldd "$SENDMAIL" 2>/dev/null | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | tr '\n' ' ')
if [ -n "$missing" ]; then
    fail "sendmail needs $missing (scripts/setup installs them)"
    finish
fi

set -- $(free_ports 2)
sm_port=$1 sink_port=$2
sockdir=$(mktemp -d /run/rc-milter-test.XXXXXX) || { fail "mktemp in /run"; finish; }
trap 'rm -rf "$sockdir"; smtpd_cleanup' EXIT
sock=$sockdir/milter.sock
mkdir -p "$T/chain.d/rules"
cat >"$T/chain.d/10-rewrite.conf" <<'EOF'
stage = rewrite
sender_rules = rules/sender.pcre
header_rules = rules/sender.pcre
EOF
cat >"$T/chain.d/rules/sender.pcre" <<'EOF'
/^([^@]+)@host1\.corp\.example$/ ${1}@example.com
EOF
cat >"$T/chain.d/20-mark.conf" <<'EOF'
stage = testedit
frontend_header = yes
EOF
mtd_conf "$T/rc.conf" "unix:$sock" </dev/null
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish
sink_start sink "$sink_port"

mkdir -p "$sm/mqueue" "$sm/clientmqueue"
chmod 700 "$sm/mqueue"
: >"$sm/aliases"
sed -e "s|S=local:/run/relaychain/milter.sock|S=local:$sock|" \
    "$top_srcdir/docs/relaychain.m4" >"$sm/relaychain.m4"
check "the doc's INPUT_MAIL_FILTER line is used" grep -q "S=local:$sock, F=T" "$sm/relaychain.m4"
cat >"$sm/sendmail.mc" <<EOF
divert(-1)
divert(0)dnl
VERSIONID(\`relaychain milter test')dnl
OSTYPE(\`linux')dnl
define(\`confDONT_PROBE_INTERFACES', \`True')dnl
define(\`confDOMAIN_NAME', \`sm.test.example')dnl
define(\`QUEUE_DIR', \`$sm/mqueue')dnl
define(\`MSP_QUEUE_DIR', \`$sm/clientmqueue')dnl
define(\`confPID_FILE', \`$sm/sendmail.pid')dnl
define(\`STATUS_FILE', \`$sm/statistics')dnl
define(\`ALIAS_FILE', \`$sm/aliases')dnl
define(\`confDELIVERY_MODE', \`interactive')dnl
define(\`confDONT_BLAME_SENDMAIL', \`GroupWritableDirPathSafe,GroupReadableKeyFile')dnl
define(\`RELAY_MAILER_ARGS', \`TCP \$h $sink_port')dnl
define(\`ESMTP_MAILER_ARGS', \`TCP \$h $sink_port')dnl
define(\`SMTP_MAILER_ARGS', \`TCP \$h $sink_port')dnl
define(\`confTO_CONNECT', \`10s')dnl
FEATURE(\`promiscuous_relay')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`accept_unqualified_senders')dnl
FEATURE(\`no_default_msa')dnl
DAEMON_OPTIONS(\`Port=$sm_port, Addr=127.0.0.1, Name=MTA')dnl
include(\`$sm/relaychain.m4')dnl
MAILER(\`smtp')dnl
LOCAL_RULE_0
EOF
# Without DNS no domain canonifies, and SMART_HOST only takes canonified
# ones: a rule sends every remote address to the sink (tab-separated).
printf 'R$* < @ $* > $*\t$#relay $@ [127.0.0.1] $: $1 < @ $2 > $3\n' >>"$sm/sendmail.mc"
if ! m4 -D_CF_DIR_="$CFDIR/" "$CFDIR/m4/cf.m4" "$sm/sendmail.mc" >"$sm/sendmail.cf" 2>"$T/m4.log"; then
    fail "m4 could not build sendmail.cf: $(tail -n 3 "$T/m4.log")"
    finish
fi
check "sendmail.cf has the milter" grep -q "^Xrelaychain, S=local:$sock, F=T" "$sm/sendmail.cf"

printf '127.0.0.1 localhost\n127.0.0.1 %s.test.example %s\n' "$(hostname)" \
    "$(hostname)" >"$sm/hosts"
if unshare -m sh -c "mount --bind '$sm/hosts' /etc/hosts" 2>/dev/null; then
    unshare -m sh -c "mount --bind '$sm/hosts' /etc/hosts && exec '$SENDMAIL' -C '$sm/sendmail.cf' -bD" \
        >"$T/sendmail.log" 2>&1 &
    limit=100
else
    echo "$0: no private mount namespace: waiting for Sendmail's 60 s host name retry"
    "$SENDMAIL" -C "$sm/sendmail.cf" -bD >"$T/sendmail.log" 2>&1 &
    limit=1000
fi
smtpd_track $!
i=0
while [ -z "$(ss -Hltn "sport = :$sm_port" 2>/dev/null)" ] && [ $i -lt $limit ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ $i -ge $limit ]; then
    fail "sendmail does not listen on $sm_port: $(tail -n 5 "$T/sendmail.log")"
    finish
fi

timeout 60 swaks --server "127.0.0.1:$sm_port" --helo client.test.example \
    --timeout 30 --from alice@host1.corp.example --to bob@example.net \
    --header 'From: Alice <alice@host1.corp.example>' \
    --header 'Subject: through sendmail' --body 'sendmail body line' \
    >"$T/good.out" 2>&1
check "Sendmail accepts the message" grep -q '^<-  250 .*Message accepted' "$T/good.out"
check "it reaches the sink" sink_wait sink 1 30
msg=$(sink_files sink | head -n 1)
check "sink: envelope sender rewritten" grep -q '^X-Mail-Args: <alice@example.com>' "$msg"
check "sink: From: rewritten" grep -q '^From: Alice <alice@example.com>' "$msg"
check "sink: the stage saw the milter front end" grep -q '^X-Frontend: milter' "$msg"
check "sink: body intact" grep -q '^sendmail body line' "$msg"
check "relaychaind saw Sendmail's queue id" \
    grep -q "[0-9A-Za-z]\{8,\}: milter: from=<alice@host1.corp.example>" "$T/rcd.log"

mtd_stop rcd
timeout 60 swaks --server "127.0.0.1:$sm_port" --helo client.test.example \
    --timeout 30 --from alice@example.com --to bob@example.net --body 'x' \
    >"$T/down.out" 2>&1
check "relaychaind down: Sendmail answers 4xx (F=T)" grep -q '^<\*\* *4[0-9][0-9] ' "$T/down.out"

if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"; cat "$T/rcd.log"
    echo "--- sendmail"; tail -n 20 "$T/sendmail.log"
    echo "--- sendmail queue"; "$SENDMAIL" -C "$sm/sendmail.cf" -bp 2>&1 | tail -n 8
    for f in "$sm"/mqueue/df*; do grep -v "^$" "$f" | head -n 30; done
    echo "--- swaks"; tail -n 15 "$T/good.out"; tail -n 8 "$T/down.out"
fi
finish
