#!/bin/sh
# http_healthz - /healthz as a real HAProxy's health check: a node whose
# health fails is taken out of rotation, and back when it recovers
#
# Two relaychaind nodes (delivery = queue, one smtp-sink) behind HAProxy
# in mode tcp, each checked with "option httpchk GET /healthz" on its
# http_listen port (the snippet of docs/fleet.md). Both are UP in
# HAProxy's stats first. Then:
#
#   - node b reloaded with queue_minfree above the free space: its
#     /healthz answers 503 naming queue_minfree, HAProxy marks it DOWN,
#     and every message sent through the balancer lands on node a;
#   - node b reloaded back: 200 "ok", HAProxy marks it UP again;
#   - node a stopping (SIGTERM) with a client still in a transaction:
#     while it drains, its /healthz answers 503 "shutting down".
. "$top_srcdir/tests/integration/smtpd_lib.sh"

for prog in haproxy curl; do
    command -v "$prog" >/dev/null 2>&1 ||
        fail "$prog is missing (scripts/setup installs it)"
done
[ "$failures" -gt 0 ] && finish

set -- $(free_ports 6)
pa=$1 pb=$2 ha=$3 hb=$4 sink_port=$5 hp=$6

sink_start sink "$sink_port"
for n in a b; do
    p=$pa h=$ha
    [ $n = b ] && p=$pb h=$hb
    rcd_conf "$T/$n.conf" "$p" "smtp:[127.0.0.1]:$sink_port" <<EOF2
delivery = queue
queue_directory = $T/spool-$n
quarantine_directory = $T/quarantine-$n
http_listen = 127.0.0.1:$h
EOF2
    rcd_start $n "$T/$n.conf" "$p" || finish
done

cat >"$T/haproxy.cfg" <<EOF2
global
    maxconn 256
    stats socket $T/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
frontend fe_smtp
    bind 127.0.0.1:$hp
    default_backend be_smtp
backend be_smtp
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
    server a 127.0.0.1:$pa check port $ha
    server b 127.0.0.1:$pb check port $hb
EOF2
haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.log" 2>&1 &
smtpd_track $!
wait_listen "$hp" || fail "haproxy does not listen on $hp"
[ "$failures" -gt 0 ] && finish

# hstate SERVER - HAProxy's status of SERVER in be_smtp (UP, DOWN...)
hstate() {
    "$PY" - "$T/haproxy.sock" "$1" <<'EOF2'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
for line in data.decode().splitlines():
    f = line.split(",")
    if len(f) > 17 and f[0] == "be_smtp" and f[1] == sys.argv[2]:
        print(f[17].split(" ")[0])
EOF2
}

# hwait SERVER STATE - wait (at most 10 s) for HAProxy to say STATE
hwait() {
    i=0
    while [ $i -lt 100 ]; do
        [ "$(hstate "$1")" = "$2" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# healthz PORT - "CODE BODY" of /healthz
healthz() {
    timeout 10 curl -sS -o "$T/hz.body" -w '%{http_code}' \
        "http://127.0.0.1:$1/healthz" >"$T/hz.code" 2>&1
    echo "$(cat "$T/hz.code") $(cat "$T/hz.body")"
}

# reload NODE - relaychain reload of NODE; its reply in $T/reload.out
reload() {
    "$RC" reload -c "$T/$1.conf" >"$T/reload.out" 2>&1
}

# sessions NODE - the SMTP sessions NODE logged so far
sessions() {
    grep -c ': connect from ' "$T/$1.log"
}

check "HAProxy: node a UP" hwait a UP
check "HAProxy: node b UP" hwait b UP
check "node a: /healthz 200 ok" [ "$(healthz "$ha")" = "200 ok" ]

# ---- 1. node b below queue_minfree: 503, out of rotation
echo "queue_minfree = 1000000g" >>"$T/b.conf"
reload b
check "node b reloads with queue_minfree ($(cat "$T/reload.out"))" \
    grep -q 'reload: configuration' "$T/reload.out"
hz=$(healthz "$hb")
check "node b: /healthz 503 naming queue_minfree (got $hz)" \
    sh -c "echo '$hz' | grep -q '^503 .*queue_minfree'"
check "HAProxy: node b DOWN" hwait b DOWN
check "HAProxy: node a still UP" [ "$(hstate a)" = UP ]
a0=$(sessions a) b0=$(sessions b) s0=$(sink_count sink)
ok=0
for i in 1 2 3 4; do
    timeout 30 swaks --server 127.0.0.1 --port "$hp" --from s@example.org \
        --to r@example.net --timeout 20 >"$T/send$i.out" 2>&1 &&
        ok=$((ok + 1))
done
check "4 of 4 messages taken through the balancer (got $ok)" [ "$ok" -eq 4 ]
check "all 4 were node a's (got $(($(sessions a) - a0)))" \
    [ $(($(sessions a) - a0)) -eq 4 ]
check "node b had none (got $(($(sessions b) - b0)))" \
    [ $(($(sessions b) - b0)) -eq 0 ]
check "the sink got the 4" sink_wait sink $((s0 + 4)) 10

# ---- 2. node b back
sed -i '/^queue_minfree/d' "$T/b.conf"
reload b
check "node b: /healthz 200 ok again" [ "$(healthz "$hb")" = "200 ok" ]
check "HAProxy: node b UP again" hwait b UP

# ---- 3. node a draining: "shutting down"
# A client in the middle of a transaction keeps the drain going (at most
# shutdown_timeout, 5 s).
"$PY" - "$pa" >"$T/held.out" 2>&1 <<'EOF2' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO held.example\r\n")
while not f.readline().startswith(b"250 "):
    pass
s.sendall(b"MAIL FROM:<s@example.org>\r\n")
f.readline()
time.sleep(4)
s.close()
EOF2
held=$!
sleep 0.5
kill -TERM "$(rcd_pid a)"
check "node a logs the signal" wait_grep "terminating on signal 15" "$T/a.log" 5
hz=$(healthz "$ha")
check "node a draining: /healthz 503 shutting down (got $hz)" \
    [ "$hz" = "503 shutting down" ]
check "HAProxy: node a DOWN while it drains" hwait a DOWN
wait "$held"
wait "$(rcd_pid a)"
rcd_clean_log a
rcd_stop b
finish
