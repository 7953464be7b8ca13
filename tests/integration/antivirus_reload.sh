#!/bin/sh
# antivirus_reload - signature reload under load, by SIGUSR1
#
# relaychaind (antivirus on libclamav, database_check_interval = 0, so
# only SIGUSR1 reloads) relays to smtp-sink while smtp-source sends 6000
# messages over 8 sessions. Meanwhile the database directory is switched
# 20 times between set A (EICAR only) and set B (every test signature),
# each time followed by SIGUSR1. Then:
#   - every message reached the sink and none was tempfailed or failed:
#     no scan was lost while engines were swapped;
#   - relaychaind's RSS after the 20th reload is within 8 MB of its RSS
#     after the 5th (old engines are freed, not leaked; in the sanitizer
#     build LeakSanitizer's check at exit takes the place of this);
#   - the signatures in force are the last ones loaded: with B a message
#     with the body-pattern marker is refused, after a switch to A it
#     passes;
#   - a reload with a broken database is refused, logged, and the
#     running engine (B) keeps scanning.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/av_lib.sh"

set -- $(free_ports 2)
port=$1 sink_port=$2
db=$T/db
mkdir -p "$db"
head -n 1 "$AVDB/relaychain-test.ndb" >"$T/a.ndb"
use_a() {
    rm -f "$db"/*
    cp "$T/a.ndb" "$db/eicar.ndb"
}
use_b() {
    rm -f "$db"/*
    cp "$AVDB"/* "$db/"
}
use_a
av_chain "$T/av" "database_directory = $db"

sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/av
EOF
rcd_start rcd "$T/r.conf" "$port" || finish
pid=$RCD_PID
rss() {
    sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status"
}

total=6000
timeout 300 smtp-source -s 8 -m "$total" -l 5000 -M test.example \
    -f sender@example.com -t rcpt@example.org "127.0.0.1:$port" \
    >"$T/source.log" 2>&1 &
src=$!
smtpd_track "$src"

# reload N - switch the set (even: A, odd: B), SIGUSR1, wait for the log
reload() {
    if [ $(($1 % 2)) -eq 0 ]; then use_a; else use_b; fi
    kill -USR1 "$pid"
    wait_grep "reload: configuration" "$T/rcd.log" 10
    n_now=$(grep -c "reload: configuration" "$T/rcd.log")
    i=0
    while [ "$n_now" -lt "$1" ] && [ $i -lt 100 ]; do
        sleep 0.1
        n_now=$(grep -c "reload: configuration" "$T/rcd.log")
        i=$((i + 1))
    done
}
k=1
during=0
while [ $k -le 20 ]; do
    reload $k
    kill -0 "$src" 2>/dev/null && during=$k
    [ $k -eq 5 ] && rss5=$(rss)
    sleep 0.2
    k=$((k + 1))
done
rss20=$(rss)
wait "$src"
src_rc=$?
check "smtp-source finished (exit $src_rc)" [ "$src_rc" -eq 0 ]
# Reloads run beside the accept loop, so the load may end before the
# twentieth; enough of them must have happened under it.
check "reloads done while the load ran: $during (want at least 3)" [ "$during" -ge 3 ]
check "20 reloads were done ($(grep -c 'reload: configuration' "$T/rcd.log"))" \
    [ "$(grep -c 'reload: configuration' "$T/rcd.log")" -eq 20 ]
check "every message reached the sink ($(sink_count sink) of $total)" sink_wait sink "$total" 30
check "no scan failed or was tempfailed during the reloads" \
    sh -c "! grep -q -e 'antivirus: tempfail' -e 'after error' -e 'reload failed' '$T/rcd.log'"
check "each message was scanned ($(grep -c 'antivirus: continue, result=clean' "$T/rcd.log"))" \
    [ "$(grep -c 'antivirus: continue, result=clean' "$T/rcd.log")" -eq "$total" ]
echo "relaychaind RSS: ${rss5} kB after 5 reloads, ${rss20} kB after 20"
# AddressSanitizer holds freed memory back (its quarantine), so RSS says
# nothing there; its leak check at exit (rcd_stop) stands in for this.
if ldd "$RCD" 2>/dev/null | grep -q libasan; then
    echo "sanitizer build: RSS not compared, LeakSanitizer checks at exit"
else
    check "RSS after 20 reloads within 8 MB of that after 5 (${rss5} -> ${rss20} kB)" \
        [ "$rss20" -le $((rss5 + 8192)) ]
fi

# The engine in force is the last one loaded (20: set A).
mail_text "marker" "marker: RELAYCHAIN-TEST-BODY-SIGNATURE-7F3A" >"$T/marker.eml"
send() {
    timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
        --from alice@example.com --to bob@example.org --data "$2" \
        >"$T/$1.out" 2>&1
}
send with-a "$T/marker.eml"
check "set A in force: the marker passes" \
    sh -c "grep -A1 '^ -> \\.\$' '$T/with-a.out' | grep -q '^<-  250 '"
reload 21
send with-b "$T/marker.eml"
check "set B in force: the marker is refused" \
    grep -q '554 5.7.1 virus=RelayChain.Test.Body.UNOFFICIAL' "$T/with-b.out"

# A broken database: the reload is refused, B keeps scanning.
echo "not a signature at all" >"$db/broken.ndb"
kill -USR1 "$pid"
check "a broken database: the reload is refused and logged" \
    wait_grep "reload failed, keeping the running configuration: .*05-antivirus.conf" "$T/rcd.log" 10
send after-broken "$T/marker.eml"
check "a broken database: the running engine still refuses the marker" \
    grep -q '554 5.7.1 virus=RelayChain.Test.Body.UNOFFICIAL' "$T/after-broken.out"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    grep -v 'result=clean\|from=<\|to=<' "$T/rcd.log" | tail -n 40
    tail -n 5 "$T/source.log"
fi
rcd_stop rcd
finish
