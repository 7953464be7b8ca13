#!/bin/sh
# antispam_spamd - stage = antispam, engine = spamd, against a real spamd
#
# spamd (Debian's spamd and spamassassin) runs on 127.0.0.1 with a port
# the kernel picked, as nobody, with its own site configuration in $T
# (the package's .pre files, no Bayes, no DNS, no network tests) and the
# rules the package ships in /usr/share/spamassassin: GTUBE is one of
# them, so no sa-update is needed. relaychaind relays to smtp-sink
# (delivery = through). Then:
#   1. reject_score = 15, quarantine_score = 6: GTUBE gets 554 5.7.1
#      "Message refused as spam" without the rule names, nothing reaches
#      the sink; a normal message passes with X-Spam-Score and our
#      X-Spam-Status, and the client's forged X-Spam-Status is gone;
#   2. reject_with_rules = yes ("relaychain filter"): the rule names
#      follow in the reply;
#   2b. the shipped chain.d/30-antispam.conf.example, server changed
#      only: check passes, GTUBE refused, a plain message headed;
#   3. only quarantine_score: GTUBE is quarantined, not delivered;
#   4. spamd stopped: 451 4.7.1 and nothing delivered;
#   5. a server that takes the connection and never answers: 451 within
#      the stage's timeout, nothing delivered.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

. "$top_srcdir/tests/integration/spamd_lib.sh"
spamd_require
set -- $(free_ports 7)
sa_port=$1 stuck_port=$2 port=$3 qport=$4 sport=$5 sink_port=$6 qsink_port=$7

# ------------------------------------------------------------- spamd
spamd_start "$sa_port"

# A server that accepts and never says a word.
"$PY" - "$stuck_port" <<'EOF2' >/dev/null 2>&1 &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
held = []
for _ in range(600):
    s.settimeout(0.1)
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
EOF2
smtpd_track $!
wait_listen "$stuck_port" || fail "the silent server does not listen"

GTUBE='XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'

# as_chain DIR KEY=VALUE...: a chain.d with one antispam stage on spamd
as_chain() {
    local dir kv
    dir=$1
    shift
    mkdir -p "$dir"
    {
        echo "stage = antispam"
        echo "engine = spamd"
        for kv in "$@"; do
            echo "$kv"
        done
    } >"$dir/30-antispam.conf"
}

# send NAME PORT BODY [swaks options]: one message, transcript in $T/NAME.out
send() {
    local name p body
    name=$1 p=$2 body=$3
    shift 3
    timeout 60 swaks --server "127.0.0.1:$p" --helo client.test.example \
        --from alice@example.com --to bob@example.org \
        --header "Subject: $name" --body "$body" "$@" >"$T/$name.out" 2>&1
}

# --------------------------------------------- 1. reject, headers, pass
as_chain "$T/c1" "server = 127.0.0.1:$sa_port" "timeout = 60s" \
    "reject_score = 15" "quarantine_score = 6"
sink_start sink "$sink_port"
rcd_conf "$T/r1.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF2
chain_directory = $T/c1
EOF2
rcd_start r1 "$T/r1.conf" "$port" || finish
send gtube "$port" "$GTUBE"
check "GTUBE: 554 5.7.1 Message refused as spam" \
    grep -q '<\*\* *554 5\.7\.1 Message refused as spam (id [0-9A-F]*)$' "$T/gtube.out"
check "GTUBE: the reply names no rule (reject_with_rules = no)" \
    sh -c "! grep '554 5.7.1' '$T/gtube.out' | grep -q GTUBE"
check "GTUBE: nothing reached the sink" [ "$(sink_count sink)" -eq 0 ]
check "GTUBE: the log line says reject, the score and the rule" \
    grep -q 'antispam: reject, score=[0-9.]* ([A-Z_,.]*GTUBE[A-Z_,.]*), engine=spamd, [0-9]*ms' "$T/r1.log"
send ham "$port" "Hello Bob, the minutes of Tuesday's meeting are below. Regards, Alice" \
    --header "X-Spam-Status: No, score=-100 forged by the client" \
    --header "X-Spam-Score: -100"
check "a normal message is accepted" grep -q '<- *250 ' "$T/ham.out"
check "it reaches the sink, and GTUBE did not" sink_wait sink 1 10
sleep 0.3
check "the sink has exactly one message ($(sink_count sink))" [ "$(sink_count sink)" -eq 1 ]
f=$(sink_files sink | head -n 1)
check "it carries our X-Spam-Status, once" \
    sh -c "[ \$(grep -c '^X-Spam-Status:' '$f') -eq 1 ] && grep -q '^X-Spam-Status: No, score=-\{0,1\}[0-9.]* required=5.0 tests=' '$f'"
check "it carries our X-Spam-Score, once" \
    sh -c "[ \$(grep -c '^X-Spam-Score:' '$f') -eq 1 ] && grep -q '^X-Spam-Score: -\{0,1\}[0-9][0-9.]*\$' '$f' && ! grep -q '^X-Spam-Score: -100' '$f'"
check "the client's forged X-Spam-Status is gone" sh -c "! grep -q 'forged by the client' '$f'"
check "the log line says continue and the score" \
    grep -q 'antispam: continue, score=-\{0,1\}[0-9.]*/5\.0, engine=spamd, [0-9]*ms' "$T/r1.log"

# ------------------------------------------------ 2. reject_with_rules
as_chain "$T/c2" "server = 127.0.0.1:$sa_port" "reject_score = 15" \
    "reject_with_rules = yes"
printf 'chain_directory = %s\n' "$T/c2" >"$T/c2.conf"
printf 'From: alice@example.com\nTo: bob@example.org\nSubject: g\n\n%s\n' \
    "$GTUBE" >"$T/gtube.eml"
"$RC" filter -v -c "$T/c2.conf" <"$T/gtube.eml" >"$T/f2.out" 2>"$T/f2.err"
rc=$?
check "reject_with_rules: relaychain filter rejects (exit $rc)" [ "$rc" -eq 2 ]
check "reject_with_rules: the reply names the rules" \
    grep -q '554 5.7.1 Message refused as spam (\(.*,\)\{0,1\}GTUBE' "$T/f2.err"

# ------------------------------------ 2b. the shipped example, as pasted
# chain.d/30-antispam.conf.example turned on the way its comment says
# (copied to a .conf name), with only server pointed at this spamd.
mkdir -p "$T/cx"
sed "s|^server = .*|server = 127.0.0.1:$sa_port|" \
    "$top_srcdir/chain.d/30-antispam.conf.example" >"$T/cx/30-antispam.conf"
printf 'chain_directory = %s\nquarantine_directory = %s/cxq\n' "$T/cx" "$T" \
    >"$T/cx.conf"
check "the shipped example passes relaychain check" \
    sh -c "'$RC' check -c '$T/cx.conf' >'$T/cx.check' 2>&1"
"$RC" filter -v -c "$T/cx.conf" <"$T/gtube.eml" >"$T/fx.out" 2>"$T/fx.err"
rc=$?
check "the shipped example rejects GTUBE (exit $rc)" [ "$rc" -eq 2 ]
check "the shipped example's reply names no rule" \
    sh -c "grep -q '554 5.7.1 Message refused as spam' '$T/fx.err' && ! grep '554 5.7.1' '$T/fx.err' | grep -q GTUBE"
printf 'From: alice@example.com\nTo: bob@example.org\nSubject: h\nX-Spam-Score: -100\n\nHello Bob, the minutes are below.\n' \
    >"$T/ham.eml"
"$RC" filter -c "$T/cx.conf" <"$T/ham.eml" >"$T/fh.out" 2>"$T/fh.err"
rc=$?
check "the shipped example passes a plain message (exit $rc)" [ "$rc" -eq 0 ]
check "with its X-Spam-Score, not the client's" \
    sh -c "grep -q '^X-Spam-Score: ' '$T/fh.out' && ! grep -q '^X-Spam-Score: -100' '$T/fh.out'"

# ---------------------------------------------------------- 3. quarantine
as_chain "$T/c3" "server = 127.0.0.1:$sa_port" "quarantine_score = 6"
sink_start qsink "$qsink_port"
rcd_conf "$T/r3.conf" "$qport" "smtp:[127.0.0.1]:$qsink_port" <<EOF2
chain_directory = $T/c3
quarantine_directory = $T/q3
EOF2
rcd_start r3 "$T/r3.conf" "$qport" || finish
send gtube-q "$qport" "$GTUBE"
check "quarantine: the client hears 250" grep -q '<- *250 ' "$T/gtube-q.out"
check "quarantine: the log line says quarantine" \
    grep -q 'antispam: quarantine, score=[0-9.]* ([A-Z_,.]*GTUBE[A-Z_,.]*), engine=spamd' "$T/r3.log"
check "quarantine: held in the quarantine directory" \
    sh -c "[ -n \"\$(find '$T/q3' -type f 2>/dev/null | head -n 1)\" ]"
sleep 0.3
check "quarantine: nothing reached the sink ($(sink_count qsink))" [ "$(sink_count qsink)" -eq 0 ]

# -------------------------------------------------------- 4. spamd down
kill -TERM "$SA_PID"
wait "$SA_PID" 2>/dev/null
i=0
while [ -n "$(ss -Hltn "sport = :$sa_port" 2>/dev/null)" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
send down "$port" "Hello again Bob"
check "spamd stopped: 451 4.7.1" grep -q '<\*\* *451 4\.7\.1 ' "$T/down.out"
sleep 0.3
check "spamd stopped: nothing passed unscanned ($(sink_count sink))" [ "$(sink_count sink)" -eq 1 ]
check "spamd stopped: the log says why" \
    grep -q "antispam: tempfail, unchecked (spamd 127.0.0.1:$sa_port: connect: Connection refused), engine=spamd" "$T/r1.log"

# -------------------------------------------------- 5. spamd says nothing
as_chain "$T/c5" "server = 127.0.0.1:$stuck_port" "timeout = 2s" \
    "reject_score = 15"
rcd_conf "$T/r5.conf" "$sport" "smtp:[127.0.0.1]:$sink_port" <<EOF2
chain_directory = $T/c5
EOF2
rcd_start r5 "$T/r5.conf" "$sport" || finish
t0=$(date +%s)
send silent "$sport" "Hello once more"
t1=$(date +%s)
check "silent server: 451 4.7.1" grep -q '<\*\* *451 4\.7\.1 ' "$T/silent.out"
check "silent server: the answer came within the timeout ($((t1 - t0))s)" \
    [ $((t1 - t0)) -le 10 ]
check "silent server: the log says it was out of time" \
    grep -q "antispam: tempfail, unchecked (spamd 127.0.0.1:$stuck_port: no answer within 2000 ms), engine=spamd, 2[0-9][0-9][0-9]ms" "$T/r5.log"
sleep 0.3
check "silent server: nothing passed unscanned ($(sink_count sink))" [ "$(sink_count sink)" -eq 1 ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$T/r1.log" "$T/r3.log" "$T/r5.log" "$T/gtube.out" "$T/ham.out" \
        "$T/f2.err" >&2
    tail -n 20 "$T/spamd.log" >&2
fi
rcd_stop r1
rcd_stop r3
rcd_stop r5
finish
