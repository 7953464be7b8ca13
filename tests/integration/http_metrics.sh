#!/bin/sh
# http_metrics - relaychaind's HTTP listener: /metrics after mail went
# through the example chain, /healthz, routing, TLS, reload, config errors
#
# relaychaind runs the example chain as it ships (chain.d/: rewrite,
# antivirus with its example EICAR signature, disclaimer) with delivery
# = queue to an smtp-sink, and http_listen on 127.0.0.1 (and ::1 when
# the machine has it). curl scrapes /metrics and promtool (Debian's
# prometheus) checks every scrape:
#
#   - one clean message: relaychain_messages_total{smtpd,passed} moves
#     by exactly 1, each stage's duration _count and continue verdicts
#     by exactly 1, the connection counter by 1, the next hop's 2xx
#     replies up and no 5xx; the queue gauges are there;
#   - one EICAR message: 554 to the client, rejected moves by exactly 1,
#     antivirus's reject verdict by 1, the disclaimer stage's runs not;
#   - two STARTTLS sessions, one AUTH that succeeds and one that fails:
#     each outcome counter moves by exactly that;
#   - relaychain status prints the same message counts;
#   - /healthz 200 "ok"; POST /metrics 405 with Allow; an unknown path
#     404; each request has an access line in the log;
#   - a reload that changes http_listen says it needs a restart, and the
#     listener keeps serving on its port;
#   - HTTPS with http_tls_cert_file / http_tls_key_file; a third
#     connection from a client past http_max_connections_per_client = 2
#     refused, an idle one closed after http_timeout = 1s;
#   - the milter front end (miltertest, one clean message): counted
#     under frontend="milter", by exactly 1;
#   - relaychain check refuses a certificate without its key, and the
#     dashboard's keys (not built), with file:line.
. "$top_srcdir/tests/integration/milter_lib.sh"

for prog in curl promtool; do
    command -v "$prog" >/dev/null 2>&1 ||
        fail "$prog is missing (scripts/setup installs it)"
done
[ "$failures" -gt 0 ] && finish

set -- $(free_ports 4)
port=$1 sink_port=$2 hport=$3 hport2=$4

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
printf '%s\n' 'right horse battery' |
    "$RC" passwd "$T/smtp.passwd" alice >"$T/passwd.out" 2>&1 ||
    fail "relaychain passwd: $(cat "$T/passwd.out")"
cp -R "$top_srcdir/chain.d" "$T/chain.d"
chmod -R u+w "$T/chain.d"
sink_start sink "$sink_port"
v6=
if [ -n "$(ip -6 addr show dev lo 2>/dev/null | grep '::1')" ]; then
    v6=" [::1]:$hport"
fi
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF2
delivery = queue
queue_directory = $T/spool
http_listen = 127.0.0.1:$hport$v6
http_threads = 2
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/smtp.passwd
EOF2
rcd_start r "$T/r.conf" "$port" || finish

# scrape NAME - /metrics into $T/NAME.prom, checked by promtool
scrape() {
    timeout 10 curl -sS -o "$T/$1.prom" -w '%{http_code}' \
        "http://127.0.0.1:$hport/metrics" >"$T/$1.code" 2>&1
    check "$1: /metrics answers 200 (got $(cat "$T/$1.code"))" \
        [ "$(cat "$T/$1.code")" = 200 ]
    check "$1: promtool check metrics passes ($(promtool check metrics \
        <"$T/$1.prom" 2>&1 | head -3))" \
        sh -c "promtool check metrics <'$T/$1.prom' >'$T/$1.promtool' 2>&1"
}

# val NAME SERIES - the value of SERIES (name and labels as exposed) in
# scrape NAME; "missing" when absent
val() {
    awk -v s="$2" '$1 == s { print $2; f = 1 } END { if (!f) print "missing" }' \
        "$T/$1.prom"
}

# delta A B SERIES - the change of SERIES from scrape A to scrape B
delta() {
    a=$(val "$1" "$3")
    b=$(val "$2" "$3")
    if [ "$a" = missing ]; then a=0; fi
    if [ "$b" = missing ]; then echo missing; return; fi
    awk -v a="$a" -v b="$b" 'BEGIN { print b - a }'
}

# is A B SERIES WANT - check the delta
is() {
    d=$(delta "$1" "$2" "$3")
    check "$3 moved by $4 (got $d)" [ "$d" = "$4" ]
}

scrape m0
check "m0: the message counter is there at zero" \
    [ "$(val m0 'relaychain_messages_total{frontend="smtpd",outcome="passed"}')" = 0 ]

# ---- 1. one clean message
timeout 30 swaks --server 127.0.0.1 --port "$port" --from alice@example.com \
    --to bob@example.net --timeout 20 --body "hello, metrics" \
    >"$T/clean.out" 2>&1
check "clean message: 250 after DATA" grep -q '^<- *250 .*queued as' "$T/clean.out"
check "clean message reached the sink" sink_wait sink 1 10
scrape m1
is m0 m1 'relaychain_messages_total{frontend="smtpd",outcome="passed"}' 1
is m0 m1 'relaychain_messages_total{frontend="smtpd",outcome="rejected"}' 0
is m0 m1 'relaychain_smtpd_connections_total' 1
for st in rewrite antivirus disclaimer; do
    is m0 m1 "relaychain_stage_duration_seconds_count{stage=\"$st\"}" 1
    is m0 m1 "relaychain_stage_verdicts_total{stage=\"$st\",verdict=\"continue\"}" 1
    check "$st: +Inf bucket equals _count" [ \
        "$(val m1 "relaychain_stage_duration_seconds_bucket{stage=\"$st\",le=\"+Inf\"}")" = \
        "$(val m1 "relaychain_stage_duration_seconds_count{stage=\"$st\"}")" ]
done
d=$(delta m0 m1 'relaychain_nexthop_replies_total{class="2xx"}')
check "next hop 2xx replies counted (got $d)" [ "$d" != missing ] && [ "${d:-0}" -ge 3 ]
is m0 m1 'relaychain_nexthop_replies_total{class="5xx"}' 0
check "queue size gauge is there" [ "$(val m1 relaychain_queue_messages)" != missing ]
check "oldest age gauge is there" \
    [ "$(val m1 relaychain_queue_oldest_message_age_seconds)" != missing ]
check "healthy gauge is 1" [ "$(val m1 relaychain_healthy)" = 1 ]

# ---- 2. one EICAR message, refused by the example antivirus stage
cat >"$T/eicar.txt" <<'EOF2'
X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*
EOF2
timeout 30 swaks --server 127.0.0.1 --port "$port" --from alice@example.com \
    --to bob@example.net --timeout 20 --body "$T/eicar.txt" \
    >"$T/eicar.out" 2>&1
check "EICAR: 554" grep -q '<\*\* *554 ' "$T/eicar.out"
scrape m2
is m1 m2 'relaychain_messages_total{frontend="smtpd",outcome="rejected"}' 1
is m1 m2 'relaychain_messages_total{frontend="smtpd",outcome="passed"}' 0
is m1 m2 'relaychain_stage_verdicts_total{stage="antivirus",verdict="reject"}' 1
is m1 m2 'relaychain_stage_duration_seconds_count{stage="disclaimer"}' 0

# ---- 2b. STARTTLS and AUTH outcomes
timeout 30 swaks --server 127.0.0.1 --port "$port" --from alice@example.com \
    --to bob@example.net --timeout 20 --tls --auth PLAIN --auth-user alice \
    --auth-password 'right horse battery' >"$T/auth-ok.out" 2>&1
check "TLS and AUTH: 235" grep -q '<~ *235 ' "$T/auth-ok.out"
timeout 30 swaks --server 127.0.0.1 --port "$port" --from alice@example.com \
    --to bob@example.net --timeout 20 --tls --auth PLAIN --auth-user alice \
    --auth-password 'wrong' --quit-after AUTH >"$T/auth-bad.out" 2>&1
check "a wrong password: 535" grep -q '<~\* *535 ' "$T/auth-bad.out"
scrape m3
is m2 m3 'relaychain_smtpd_tls_handshakes_total{result="ok"}' 2
is m2 m3 'relaychain_smtpd_tls_handshakes_total{result="failed"}' 0
is m2 m3 'relaychain_smtpd_auth_attempts_total{result="success"}' 1
is m2 m3 'relaychain_smtpd_auth_attempts_total{result="failure"}' 1
is m2 m3 'relaychain_smtpd_connections_total' 2
is m2 m3 'relaychain_messages_total{frontend="smtpd",outcome="passed"}' 1

"$RC" status -c "$T/r.conf" >"$T/status.out" 2>&1
check "relaychain status: the message counters /metrics has ($(grep messages "$T/status.out"))" \
    grep -q '^messages since start: 2 passed, 1 rejected, 0 tempfailed, 0 discarded, 0 quarantined$' "$T/status.out"
check "relaychain status: http_listen" \
    grep -q "^http_listen: 127.0.0.1:$hport" "$T/status.out"

# ---- 3. /healthz, routing, the access log
h=$(timeout 10 curl -sS -w ' %{http_code}' "http://127.0.0.1:$hport/healthz" 2>&1 |
    tr '\n' ' ')
check "/healthz: ok 200 (got $h)" [ "$h" = "ok  200" ]
timeout 10 curl -sS -D "$T/405.hdr" -o /dev/null -X POST -d x \
    "http://127.0.0.1:$hport/metrics" >/dev/null 2>&1
check "POST /metrics: 405" grep -q '^HTTP/1.1 405' "$T/405.hdr"
check "POST /metrics: Allow: GET, HEAD" grep -qi '^Allow: GET, HEAD' "$T/405.hdr"
c=$(timeout 10 curl -sS -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$hport/metrics/x" 2>&1)
check "/metrics/x: 404 (got $c)" [ "$c" = 404 ]
check "access line for /healthz" \
    grep -q 'http: client=127.0.0.1, method=GET, path=/healthz, status=200, size=3, ' "$T/r.log"
check "access line for the 404" \
    grep -q 'http: client=127.0.0.1, method=GET, path=/metrics/x, status=404' "$T/r.log"
if [ -n "$v6" ]; then
    c=$(timeout 10 curl -sS -g -o /dev/null -w '%{http_code}' \
        "http://[::1]:$hport/healthz" 2>&1)
    check "/healthz over ::1: 200 (got $c)" [ "$c" = 200 ]
fi
# keep-alive: two requests, one connection
n=$(timeout 10 curl -sS -o /dev/null -o /dev/null -w '%{num_connects}\n' \
    "http://127.0.0.1:$hport/healthz" "http://127.0.0.1:$hport/healthz" 2>&1 |
    tr '\n' ' ')
check "keep-alive: the second request reuses the connection (got $n)" \
    [ "$n" = "1 0 " ]

# ---- 4. a reload keeps the listener; http_listen is restart-only
sed -i "s|^http_listen = .*|http_listen = 127.0.0.1:$hport2|" "$T/r.conf"
"$RC" reload -c "$T/r.conf" >"$T/reload.out" 2>&1
check "reload names http_listen restart-only ($(cat "$T/reload.out"))" \
    grep -q 'http_listen changed: restart relaychaind to use it' "$T/reload.out"
c=$(timeout 10 curl -sS -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$hport/healthz" 2>&1)
check "after the reload the listener serves on its port (got $c)" [ "$c" = 200 ]
check "nothing listens on the new port before a restart" \
    [ -z "$(ss -Hltn "sport = :$hport2" 2>/dev/null)" ]
rcd_stop r

# ---- 5. HTTPS
set -- $(free_ports 2)
port=$1 hport=$2
rcd_conf "$T/tls.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF2
http_listen = 127.0.0.1:$hport
http_tls_cert_file = $T/cert.pem
http_tls_key_file = $T/key.pem
http_max_connections_per_client = 2
http_timeout = 1s
EOF2
rcd_start tls "$T/tls.conf" "$port" || finish
h=$(timeout 10 curl -sS --cacert "$T/cert.pem" -w ' %{http_code}' \
    "https://localhost:$hport/healthz" 2>&1 | tr '\n' ' ')
check "HTTPS /healthz: ok 200 (got $h)" [ "$h" = "ok  200" ]
c=$(timeout 10 curl -sS -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$hport/healthz" 2>&1)
check "plain HTTP to the HTTPS listener gets no 200 (got $c)" [ "$c" != 200 ]
# ---- limits: 2 connections per client, idle ones closed after 1s
"$PY" - "$hport" >"$T/limits.out" 2>&1 <<'EOF2'
import socket, subprocess, sys, time
port = int(sys.argv[1])
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
time.sleep(0.2)
third = subprocess.run(["curl", "-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "5", "https://127.0.0.1:%d/healthz" % port],
                       capture_output=True, text=True).stdout
print("third:", third)
t0 = time.time()
idle[0].settimeout(5)
end = "timeout"
try:
    while idle[0].recv(100):  # a TLS alert may come before the end
        pass
    end = "closed"
except OSError as e:
    end = "error %s" % e
print("idle %s after %.1f s" % (end, time.time() - t0))
for s in idle:
    s.close()
time.sleep(0.3)
after = subprocess.run(["curl", "-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}",
                        "--max-time", "5", "https://127.0.0.1:%d/healthz" % port],
                       capture_output=True, text=True).stdout
print("after:", after)
EOF2
check "a third connection from one client is refused ($(tr '\n' ' ' <"$T/limits.out"))" \
    grep -q '^third: 000$' "$T/limits.out"
check "an idle connection is closed within 3 s (http_timeout = 1s; $(grep idle "$T/limits.out"))" \
    grep -q "^idle closed after [0-2]\.[0-9] s$" "$T/limits.out"
check "the client is served again once its connections closed" \
    grep -q '^after: 200$' "$T/limits.out"
rcd_stop tls

# ---- 6. the milter front end: one clean message by miltertest
set -- $(free_ports 1)
mport=$1
sock=$T/milter.sock
mtd_conf "$T/m.conf" "unix:$sock" <<EOF2
http_listen = 127.0.0.1:$mport
EOF2
mtd_start m "$T/m.conf" "unix:$sock" || finish
wait_listen "$mport" || fail "the milter daemon's HTTP listener does not listen"
timeout 10 curl -sS -o "$T/mm0.prom" "http://127.0.0.1:$mport/metrics"
lua milter <<EOF2
conn = mt.connect("unix:$sock")
if conn == nil then error("cannot connect") end
mt.conninfo(conn, "client.test.example", "192.0.2.1")
mt.helo(conn, "client.test.example")
mt.macro(conn, SMFIC_MAIL, "i", "MQID1")
if mt.mailfrom(conn, "<alice@example.com>") ~= nil then error("mail") end
if mt.rcptto(conn, "<bob@example.net>") ~= nil then error("rcpt") end
mt.header(conn, "Subject", "metrics")
mt.bodystring(conn, "hello, milter\r\n")
mt.eom(conn)
if mt.getreply(conn) ~= SMFIR_ACCEPT and mt.getreply(conn) ~= SMFIR_CONTINUE then
    error("not accepted")
end
mt.disconnect(conn)
EOF2
rc=$?
check "miltertest: the message passed ($(tail -2 "$T/milter.out"))" [ "$rc" -eq 0 ]
timeout 10 curl -sS -o "$T/mm1.prom" "http://127.0.0.1:$mport/metrics"
check "milter scrape: promtool passes" sh -c "promtool check metrics <'$T/mm1.prom' >/dev/null 2>&1"
is mm0 mm1 'relaychain_messages_total{frontend="milter",outcome="passed"}' 1
is mm0 mm1 'relaychain_messages_total{frontend="smtpd",outcome="passed"}' 0
is mm0 mm1 'relaychain_milter_connections_total' 1
is mm0 mm1 'relaychain_stage_verdicts_total{stage="antivirus",verdict="continue"}' 1
mtd_stop m

# ---- 7. configuration errors, with file:line
for bad in "http_tls_cert_file = $T/cert.pem" \
    "http_password_file = $T/passwd" "http_token_file = $T/token"; do
    key=${bad%% *}
    {
        echo "chain_directory = $T/chain.d"
        echo "http_listen = 127.0.0.1:$hport"
        echo "$bad"
    } >"$T/bad.conf"
    "$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
    check "relaychain check refuses $key with file:line ($(cat "$T/bad.out" | head -2))" \
        grep -q "bad.conf:3: $key" "$T/bad.out"
done
{
    echo "chain_directory = $T/chain.d"
    echo "http_threads = 4"
} >"$T/bad.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
check "http_threads without http_listen is refused" \
    grep -q "bad.conf:2: http_threads: does nothing without http_listen" "$T/bad.out"
finish
