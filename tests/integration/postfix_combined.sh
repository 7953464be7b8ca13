#!/bin/sh
# postfix_combined - the combined milter and content-filter set-up of
# docs/postfix-milter.md runs the chain once on every way mail comes in
#
# A private Postfix gets the main.cf lines of docs/postfix-milter.md
# (smtpd_milters and non_smtpd_milters, no content_filter), the listeners
# of its "Milter and content filter together" block, and the relaychain
# transport and 127.0.0.1:10025 reinjection listener of
# docs/postfix-content-filter.md, with loopback ports, no chroot and the
# socket path changed. One relaychaind serves both the milter and the
# content filter; its chain is one testedit stage that adds
# "X-Frontend: milter" or "X-Frontend: smtp" each time it runs, so the
# message at the sink says how often and where the chain ran:
#
#   1. SMTP on the "smtp" listener: once, as a milter
#   2. SMTP on the "submission" listener: once, as the content filter
#      (not again as a milter, not again on reinjection)
#   3. local submission (sendmail, pickup): once, as a milter
#   4. the mistake the document warns of, content_filter in main.cf:
#      local mail then runs twice (so the test can tell)
. "$top_srcdir/tests/integration/milter_lib.sh"

set -- $(free_ports 4)
p25=$1 p587=$2 filt=$3 sink_port=$4
reinj=$(free_ports 1)
sock=$T/rc/milter.sock
mkdir -p "$T/rc" "$T/chain.d"
chmod 755 "$T/rc"
cat >"$T/chain.d/10-mark.conf" <<'EOF2'
stage = testedit
frontend_header = yes
EOF2

mdoc=$top_srcdir/docs/postfix-milter.md
fdoc=$top_srcdir/docs/postfix-content-filter.md
doc_block "$mdoc" /etc/postfix/main.cf >"$T/doc-main.cf"
doc_block "$mdoc" "Milter and content filter together: running the chain once" \
    >"$T/doc-listeners.cf"
doc_block "$fdoc" /etc/postfix/master.cf >"$T/doc-filter-master.cf"
check "milter doc: main.cf has non_smtpd_milters" grep -q '^non_smtpd_milters = ' "$T/doc-main.cf"
check "milter doc: main.cf sets no content_filter" sh -c "! grep -q '^content_filter' '$T/doc-main.cf'"
check "milter doc: the combined listeners block" grep -q '^submission inet' "$T/doc-listeners.cf"
check "filter doc: the reinjection listener" grep -q '^127.0.0.1:10025 inet' "$T/doc-filter-master.cf"

{
    echo "milter_listen = unix:$sock"
    echo "milter_socket_group = postfix"
    echo "smtp_listen = 127.0.0.1:$filt"
    echo "next_hop = smtp:[127.0.0.1]:$reinj"
    echo "next_hop_tls = none"
    echo "xforward_hosts = 127.0.0.1/32"
    echo "chain_directory = $T/chain.d"
    echo "quarantine_directory = $T/quarantine"
    echo "syslog_name = relaychaind"
} >"$T/rc.conf"
mtd_start rcd "$T/rc.conf" "unix:$sock" || finish

pfx_init pf
pfx_set pf "relayhost = [127.0.0.1]:$sink_port"
sed -e "s|unix:relaychain/milter.sock|unix:$sock|" "$T/doc-main.cf" >>"$T/pf/etc/main.cf"
# Loopback ports instead of 25 and 587, no chroot (no jail is set up).
sed -e "s/^smtp  *inet  *n  *-  *y /127.0.0.1:$p25 inet n - n /" \
    -e "s/^submission  *inet  *n  *-  *y /127.0.0.1:$p587 inet n - n /" \
    -e "s/127\.0\.0\.1\]:10024/127.0.0.1]:$filt/" \
    "$T/doc-listeners.cf" | pfx_master pf
sed -e "s/^127\.0\.0\.1:10025 /127.0.0.1:$reinj /" "$T/doc-filter-master.cf" |
    pfx_master pf
sink_start sink "$sink_port"
pfx_start pf || finish
for p in "$p25" "$p587" "$reinj"; do
    wait_listen "$p" || fail "Postfix does not listen on $p"
done

# marks N - the X-Frontend lines of the Nth message at the sink
marks() {
    grep '^X-Frontend:' "$(sink_files sink | sed -n "${1}p")" | tr '\n' ' '
}

send_smtp() {
    timeout 60 swaks --server "127.0.0.1:$1" --helo client.test.example \
        --timeout 30 --from alice@example.com --to bob@example.org \
        --header "Subject: $2" --body "$2" >"$T/$2.out" 2>&1
}

# 1. port 25: the milter
send_smtp "$p25" smtp25
check "1: Postfix accepts on the smtp listener" grep -q '^<-  250 .*queued as' "$T/smtp25.out"
check "1: the message reaches the sink" sink_wait sink 1 20
check "1: the chain ran once, as a milter ($(marks 1))" [ "$(marks 1)" = "X-Frontend: milter " ]

# 2. submission: the content filter, then reinjection
send_smtp "$p587" sub587
check "2: Postfix accepts on the submission listener" grep -q '^<-  250 .*queued as' "$T/sub587.out"
check "2: the message reaches the sink" sink_wait sink 2 30
check "2: the chain ran once, as the content filter ($(marks 2))" [ "$(marks 2)" = "X-Frontend: smtp " ]

# 3. local submission
localmail() {
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: %s\n\n%s\n' "$1" "$1" |
        timeout 30 sendmail -C "$T/pf/etc" -f alice@example.com bob@example.org
}
localmail local1
check "3: sendmail exits 0" [ $? -eq 0 ]
postqueue -c "$T/pf/etc" -f >/dev/null 2>&1
check "3: the message reaches the sink" sink_wait sink 3 30
check "3: the chain ran once, as a milter ($(marks 3))" [ "$(marks 3)" = "X-Frontend: milter " ]

# 4. content_filter in main.cf as well: local mail runs twice
postconf -c "$T/pf/etc" -e "content_filter = relaychain:[127.0.0.1]:$filt"
postfix -c "$T/pf/etc" reload >/dev/null 2>&1
sleep 1
localmail local2
check "4: the message reaches the sink" sink_wait sink 4 30
check "4: with content_filter in main.cf the chain runs twice ($(marks 4))" \
    [ "$(marks 4)" = "X-Frontend: milter X-Frontend: smtp " ]

if [ "$failures" -ne 0 ]; then
    echo "--- relaychaind log"; cat "$T/rcd.log"
    echo "--- Postfix log"; cat "$T/pf/postfix.log"
    echo "--- master.cf"; cat "$T/pf/etc/master.cf"
fi
mtd_stop rcd
finish
