#!/bin/sh
# antivirus_clamd - engine = clamd against a real clamd
#
# clamd (Debian's clamav-daemon) runs in the foreground with a private
# clamd.conf: a UNIX socket and a TCP port on 127.0.0.1 in $T, the
# project's test signatures as its DatabaseDirectory, StreamMaxLength
# 1M, AlertEncryptedArchive on, no freshclam; the package's own service
# and socket are never touched. Then:
#   1. "relaychain filter" through the UNIX socket: EICAR in a zip is
#      rejected (engine=clamd), corpus messages pass, an encrypted
#      archive and a 2 MB message over StreamMaxLength are unchecked,
#      never clean, and rejected with 554 5.7.0 (on_unscannable): the
#      same bytes would fail the same way on every retry;
#   2. the same EICAR through tcp:127.0.0.1:PORT;
#   3. relaychaind (SMTP front end, clamd engine) relays 5 clean
#      messages to smtp-sink; clamd is stopped mid-run; the next 5 get
#      451 at the end of DATA, none reaches the sink, and the log says
#      why.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/av_lib.sh"

if ! command -v clamd >/dev/null 2>&1; then
    echo "$0: clamd is missing (scripts/setup installs clamav-daemon)" >&2
    exit 1
fi
set -- $(free_ports 3)
clamd_port=$1 port=$2 sink_port=$3
sock=$T/clamd.sock
mkdir -p "$T/clamd-tmp"
cat >"$T/clamd.conf" <<EOF
LocalSocket $sock
TCPSocket $clamd_port
TCPAddr 127.0.0.1
DatabaseDirectory $AVDB
TemporaryDirectory $T/clamd-tmp
PidFile $T/clamd.pid
LogFile $T/clamd.log
Foreground yes
StreamMaxLength 1M
AlertEncryptedArchive yes
AlertExceedsMax yes
MaxThreads 4
EOF
clamd -c "$T/clamd.conf" >"$T/clamd.out" 2>&1 &
clamd_pid=$!
smtpd_track "$clamd_pid"
i=0
while [ ! -S "$sock" ] && [ $i -lt 300 ]; do
    kill -0 "$clamd_pid" 2>/dev/null || break
    sleep 0.1
    i=$((i + 1))
done
if [ ! -S "$sock" ]; then
    fail "clamd did not start: $(tail -n 5 "$T/clamd.out" "$T/clamd.log" 2>/dev/null)"
    finish
fi

# ------------------------------------------------------ 1. UNIX socket
av_chain "$T/cd" "engine = clamd" "clamd_socket = unix:$sock" \
    "clamd_timeout = 20s" "database_check_interval = 0s"
# engine = clamd refuses the libclamav keys av_chain writes: drop them.
sed -i '/^database_/d' "$T/cd/05-antivirus.conf"
(cd "$AVF" && zip -q -9 "$T/eicar.zip" eicar.com)
mail_attach "zip" "$T/eicar.zip" "docs.zip" application/zip >"$T/zip.eml"
av_filter "$T/cd.conf" "$T/zip.eml"
check "clamd: EICAR in a zip rejected (exit $AV_RC; $AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'reject, virus=RelayChain.Test.EICAR.UNOFFICIAL, engine=clamd'"
check "clamd: 554 5.7.1 virus=" grep -q '554 5.7.1 virus=RelayChain.Test.EICAR' "$T/av.err"
for msg in "$top_srcdir"/tests/data/corpus/0[1-9]*.eml; do
    av_filter "$T/cd.conf" "$msg"
    check "clamd: $(basename "$msg") clean ($AV_LOG)" \
        sh -c "[ $AV_RC -eq 0 ] && echo '$AV_LOG' | grep -q 'result=clean, engine=clamd'"
done
(cd "$AVF" && zip -q -P secret "$T/enc.zip" clean.txt)
mail_attach "enc" "$T/enc.zip" "enc.zip" application/zip >"$T/enc.eml"
av_filter "$T/cd.conf" "$T/enc.eml"
check "clamd: encrypted archive unchecked, rejected ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'reject, unchecked (encrypted content: Heuristics.Encrypted.Zip), engine=clamd'"
check "clamd: 554 5.7.0 with the reason" \
    grep -q '554 5.7.0 message could not be scanned (encrypted content: Heuristics.Encrypted.Zip)' "$T/av.err"
head -c 1500000 /dev/urandom >"$T/big.bin"
mail_attach "big" "$T/big.bin" "big.bin" >"$T/big.eml"
av_filter "$T/cd.conf" "$T/big.eml"
check "clamd: over StreamMaxLength is unchecked, not clean, rejected ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'unchecked (clamd StreamMaxLength exceeded), engine=clamd'"

# ------------------------------------------------------------- 2. TCP
av_chain "$T/ct" "engine = clamd" "clamd_socket = tcp:127.0.0.1:$clamd_port"
sed -i '/^database_/d' "$T/ct/05-antivirus.conf"
av_filter "$T/ct.conf" "$T/zip.eml"
check "clamd over TCP: EICAR rejected ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'virus=RelayChain.Test.EICAR.UNOFFICIAL, engine=clamd'"

# ------------------------------------------- 3. clamd stopped mid-run
sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/cd
EOF
rcd_start rcd "$T/r.conf" "$port" || finish
send_one() {
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to bob@example.org \
        --header "Subject: $1" --body "clean body $1" >"$T/swaks-$1.out" 2>&1
}
for k in 1 2 3 4 5; do
    send_one "before-$k"
done
check "5 clean messages through clamd reach the sink" sink_wait sink 5 10
kill -TERM "$clamd_pid"
wait "$clamd_pid" 2>/dev/null
for k in 1 2 3 4 5; do
    send_one "after-$k"
    check "clamd stopped, message $k: 451 at the end of DATA" \
        grep -q '451 4\.3\.0' "$T/swaks-after-$k.out"
done
sleep 0.5
check "nothing passed unscanned: the sink still has 5 ($(sink_count sink))" [ "$(sink_count sink)" -eq 5 ]
check "relaychaind logs why" \
    grep -q "antivirus: tempfail after error (antivirus: clamd unix:$sock: connect" "$T/rcd.log"
if [ "$failures" -ne 0 ]; then
    cat "$T/rcd.log" "$T/swaks-after-1.out"
fi
rcd_stop rcd
finish
