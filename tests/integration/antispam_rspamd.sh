#!/bin/sh
# antispam_rspamd - the rspamd engine against a real rspamd
#
# Debian's rspamd runs in the foreground with the private configuration
# of rspamd_lib.sh (shared with scripts/bench/antispam: the package's
# rules, nothing that waits on DNS), one normal worker on 127.0.0.1 (a
# port the kernel picked) and on a UNIX socket. rspamd compiles its
# rules at start: the wait for its port is bounded (90 s).
# Then tests/antispam-probe drives the engine (create, check, destroy):
#   1. GTUBE scores at or over rspamd's required score, GTUBE named;
#   2. a plain message scores low, with the envelope rspamd was given
#      (Queue-Id, the authenticated User) in rspamd's log line, and
#      fewer checks for the authenticated user than for an unknown
#      client; through the UNIX socket too; 4 threads x 5 checks on
#      one engine all answer;
#   3. a port that accepts and never answers: an error within the
#      timeout (1 s), never an answer;
#   4. the stage in relaychaind (engine = rspamd, reject_score = 15,
#      rspamd's own reject score, which it gives GTUBE): GTUBE gets 554
#      5.7.1 and is not delivered; a plain message reaches smtp-sink
#      with our X-Spam-Score and X-Spam-Status, and the log line names
#      the engine;
#   5. rspamd stopped: an error naming the server, at once; through
#      relaychaind, 451 4.7.1 and nothing delivered.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

PROBE="$top_builddir/tests/antispam-probe"
. "$top_srcdir/tests/integration/rspamd_lib.sh"
rspamd_require
set -- $(free_ports 4)
rs_port=$1 hang_port=$2 port=$3 sink_port=$4
R=$T/rspamd
sock=$R/normal.sock
rspamd_start "$R" "$rs_port" 1 info "$sock"
rs_pid=$RSPAMD_PID
if ! rspamd_wait "$R" "$rs_port" 90; then
    fail "rspamd did not start: $(tail -n 5 "$R/out" "$R/log/rspamd.log" 2>/dev/null)"
    finish
fi

printf 'From: Mallory <mallory@example.com>\nTo: bob@example.org\nSubject: offer\nMessage-ID: <gtube1@example.com>\n\n%s\n' \
    'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X' \
    >"$T/gtube.eml"
printf 'From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: lunch\nDate: Mon, 07 Dec 2026 04:00:00 +0000\nMessage-ID: <lunch1@example.com>\n\nShall we have lunch at noon tomorrow?\n' \
    >"$T/plain.eml"

# probe NAME ARGS...: run antispam-probe (bounded), output in $T/NAME.out
probe() {
    local name
    name=$1
    shift
    timeout 60 "$PROBE" "$@" >"$T/$name.out" 2>&1
    PROBE_RC=$?
    PROBE_OUT=$(head -n 1 "$T/$name.out")
}
# over A B: A >= B; under A B: A < B (decimal numbers)
over() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'
}
under() {
    ! over "$1" "$2"
}
field() {
    echo "$PROBE_OUT" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# ---------------------------------------------------------- 1. GTUBE
probe gtube -t 20000 -q GTUBEQ1 -f mallory@example.com -r bob@example.org \
    -i 127.0.0.1 "127.0.0.1:$rs_port" "$T/gtube.eml"
check "GTUBE answered ($PROBE_OUT)" [ "$PROBE_RC" -eq 0 ]
check "GTUBE at or over rspamd's required score ($PROBE_OUT)" \
    over "$(field score)" "$(field required)"
check "GTUBE named ($PROBE_OUT)" grep -q 'symbols=\([^ ]*,\)\?GTUBE[, ]' "$T/gtube.out"

# ------------------------------------------------- 2. a plain message
probe auth -t 20000 -q PROBEQ1 -f alice@example.com -r bob@example.org \
    -r carol@example.net -i 192.0.2.10 -n client.example.com \
    -H client.example.com -u alice "127.0.0.1:$rs_port" "$T/plain.eml"
check "plain, authenticated: answered ($PROBE_OUT)" [ "$PROBE_RC" -eq 0 ]
check "plain, authenticated: low score ($PROBE_OUT)" under "$(field score)" 3
auth_score=$(field score)
check "rspamd saw the Queue-Id and the user" \
    wait_grep 'qid: <PROBEQ1>.*user: alice' "$R/log/rspamd.log" 5
check "rspamd saw both recipients" \
    wait_grep 'qid: <PROBEQ1>.*rcpts: <bob@example.org,carol@example.net>' \
    "$R/log/rspamd.log" 5
probe anon -t 20000 -q PROBEQ2 -f alice@example.com -r bob@example.org \
    -i 192.0.2.10 -H client.example.com "127.0.0.1:$rs_port" "$T/plain.eml"
check "plain, unknown client: answered ($PROBE_OUT)" [ "$PROBE_RC" -eq 0 ]
check "plain, unknown client: below rspamd's required score ($PROBE_OUT)" \
    under "$(field score)" "$(field required)"
check "the client's name is checked when not authenticated" \
    grep -q HFILTER_HOSTNAME_UNKNOWN "$T/anon.out"
check "and not for the authenticated user" \
    sh -c "! grep -q HFILTER_HOSTNAME_UNKNOWN '$T/auth.out'"
check "authenticated scores lower ($auth_score < $(field score))" \
    under "$auth_score" "$(field score)"
probe unix -t 20000 -f '' -r bob@example.org -u alice "unix:$sock" \
    "$T/gtube.eml"
check "through the UNIX socket ($PROBE_OUT)" [ "$PROBE_RC" -eq 0 ]
check "through the UNIX socket: GTUBE" grep -q 'symbols=GTUBE' "$T/unix.out"
probe threads -t 20000 -c 5 -j 4 -f alice@example.com -r bob@example.org \
    -u alice "127.0.0.1:$rs_port" "$T/plain.eml"
check "4 threads x 5 checks on one engine all answer ($(grep -c . "$T/threads.out") lines; $PROBE_OUT)" \
    sh -c "[ $PROBE_RC -eq 0 ] && [ \$(grep -c . '$T/threads.out') -eq 1 ]"

# ------------------------------------- 3. a server that never answers
"$PY" - "$hang_port" >"$T/hang.out" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
s.settimeout(30)
held = []
end = time.time() + 30
try:
    while time.time() < end:
        c, _ = s.accept()
        held.append(c)
except Exception:
    pass
EOF
smtpd_track $!
wait_listen "$hang_port" || fail "the silent server did not listen"
probe hang -t 1000 -r bob@example.org "127.0.0.1:$hang_port" "$T/plain.eml"
ms=$(echo "$PROBE_OUT" | sed -n 's/.* ms=\([0-9]*\)$/\1/p')
check "silent server: an error, not an answer ($PROBE_OUT)" [ "$PROBE_RC" -eq 1 ]
check "silent server: the error says so" grep -q \
    "^error: temp: rspamd 127.0.0.1:$hang_port: timed out after 1000 ms" \
    "$T/hang.out"
check "silent server: within the timeout ($ms ms)" \
    sh -c "[ -n '$ms' ] && [ '$ms' -ge 900 ] && [ '$ms' -lt 2000 ]"

# ------------------------------------- 4. the stage, through relaychaind
GTUBE='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
mkdir -p "$T/chain"
cat >"$T/chain/30-antispam.conf" <<CHAIN
stage = antispam
engine = rspamd
server = 127.0.0.1:$rs_port
timeout = 20s
reject_score = 15
add_header = yes
CHAIN
sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<CONF
chain_directory = $T/chain
CONF
rcd_start r "$T/r.conf" "$port" || finish
timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.org --header "Subject: g" \
    --body "$GTUBE" >"$T/stage-gtube.out" 2>&1
check "stage: GTUBE gets 554 5.7.1" grep -q '<\*\* *554 5\.7\.1 ' "$T/stage-gtube.out"
check "stage: the log line says reject, the score and GTUBE" \
    grep -q 'antispam: reject, score=15\.0 ([A-Z_,]*GTUBE[A-Z_,]*), engine=rspamd, [0-9]*ms' "$T/r.log"
timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.org --header "Subject: h" \
    --header "X-Spam-Score: -100" \
    --body "Hello Bob, the minutes of Tuesday's meeting are below." \
    >"$T/stage-ham.out" 2>&1
check "stage: a plain message is accepted" grep -q '<- *250 ' "$T/stage-ham.out"
check "stage: it reaches the sink" sink_wait sink 1 10
sleep 0.3
check "stage: only it reached the sink ($(sink_count sink))" [ "$(sink_count sink)" -eq 1 ]
f=$(sink_files sink | head -n 1)
check "stage: it carries our X-Spam-Score, once, not the client's" \
    sh -c "[ \$(grep -c '^X-Spam-Score:' '$f') -eq 1 ] && ! grep -q '^X-Spam-Score: -100' '$f'"
check "stage: it carries an X-Spam-Status" grep -q '^X-Spam-Status: ' "$f"
check "stage: the log line says continue and the engine" \
    grep -q 'antispam: continue, score=-\{0,1\}[0-9.]*/15\.0, engine=rspamd, [0-9]*ms' "$T/r.log"

# ------------------------------------------------- 5. rspamd stopped
kill -TERM "$rs_pid"
i=0
while kill -0 "$rs_pid" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
probe down -t 5000 -r bob@example.org "127.0.0.1:$rs_port" "$T/plain.eml"
ms=$(echo "$PROBE_OUT" | sed -n 's/.* ms=\([0-9]*\)$/\1/p')
check "rspamd stopped: an error ($PROBE_OUT)" [ "$PROBE_RC" -eq 1 ]
check "rspamd stopped: it names the server and why" grep -q \
    "^error: io: rspamd 127.0.0.1:$rs_port: connect: Connection refused" \
    "$T/down.out"
check "rspamd stopped: at once ($ms ms)" \
    sh -c "[ -n '$ms' ] && [ '$ms' -lt 1000 ]"
probe down-unix -t 5000 -r bob@example.org "unix:$sock" "$T/plain.eml"
check "rspamd stopped, UNIX socket: an error ($PROBE_OUT)" [ "$PROBE_RC" -eq 1 ]
check "rspamd stopped, UNIX socket: it says why" grep -q \
    "^error: io: rspamd unix:$sock: connect: \(No such file\|Connection refused\)" \
    "$T/down-unix.out"
timeout 60 swaks --server "127.0.0.1:$port" --helo client.test.example \
    --from alice@example.com --to bob@example.org --header "Subject: d" \
    --body "Hello again" >"$T/stage-down.out" 2>&1
check "stage, rspamd stopped: 451 4.7.1" grep -q '<\*\* *451 4\.7\.1 ' "$T/stage-down.out"
sleep 0.3
check "stage, rspamd stopped: nothing more delivered ($(sink_count sink))" \
    [ "$(sink_count sink)" -eq 1 ]
rcd_stop r

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.out; do
        echo "--- $f"
        cat "$f"
    done
    tail -n 20 "$R/out" "$R/log/rspamd.log" 2>/dev/null
fi
finish
