#!/bin/sh
# fleet - two relaychaind nodes behind a real HAProxy sharing rate limit
# counters in a real Redis
#
# HAProxy (mode tcp) balances round robin over node a (send-proxy, PROXY
# v1) and node b (send-proxy-v2); two more frontends reach one node each.
# Both nodes take PROXY headers from 127.0.0.1 only and count in one
# redis-server on loopback (no persistence). Clients connect from
# 127.0.0.2 and up, so the balancer's 127.0.0.1 is never the client.
#
#   - alice (AUTH, user:alice 5/1h) sends 10 messages through the
#     balancer: exactly 5 are taken across both nodes, the rest get
#     452 4.7.1 and both nodes log the rule by file:line;
#   - client:127.0.0.4/32 2/1h: the third message from 127.0.0.4 gets
#     452, so policy sees the client of the PROXY header; node a logs it
#     as PROXY v1, node b as v2; mynetworks holds 127.0.0.4 and not
#     127.0.0.1, so relaying is decided on the real client too (127.0.0.6
#     is refused); a reload (SIGUSR1) raising the rule to 4 lets exactly
#     2 more through: the count kept in Redis survives the reload;
#   - a PROXY header from 127.0.0.3 (not in proxy_protocol_hosts) and a
#     malformed one from 127.0.0.1 get the connection closed, no greeting;
#   - a rcpt_domain recipients rule: a message with two recipients in
#     the domain fits 2/1h, the next gets 452 after its data; each
#     message is one EVALSHA (Redis' commandstats);
#   - Redis killed during a load through node a (state_on_error = local):
#     every message is taken and reaches the sink, "counted on this node"
#     is logged once, and alice's limit holds on node a alone; node b (tempfail) answers 451 4.3.0 and takes none;
#     Redis back: node a logs it and counts in Redis again; a message
#     the chain refuses gives its count back.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

for prog in redis-server redis-cli haproxy; do
    command -v "$prog" >/dev/null 2>&1 ||
        fail "$prog is missing (scripts/setup installs it)"
done
[ "$failures" -gt 0 ] && finish

set -- $(free_ports 7)
pa=$1 pb=$2 sink_port=$3 redis_port=$4 hp_rr=$5 hp_a=$6 hp_b=$7

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
printf '%s\n' 'right horse battery' |
    "$RC" passwd "$T/passwd" alice >"$T/passwd.out" 2>&1 ||
    fail "relaychain passwd: $(cat "$T/passwd.out")"

# ---- Redis
mkdir -p "$T/redis"
redis_start() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$T/redis" \
        --save '' --appendonly no --daemonize no \
        >>"$T/redis.log" 2>&1 &
    REDIS_PID=$!
    smtpd_track "$REDIS_PID"
    wait_listen "$redis_port" || fail "redis-server does not listen"
}
redis_start

# ---- the rules and the two nodes
cat >"$T/limits" <<'EOF2'
# fleet test
user:alice 5/1h
client:127.0.0.4/32 2/1h
client:127.0.0.5/32 1000/1h
rcpt_domain:limited.example 2/1h recipients
EOF2
sink_start sink "$sink_port"
for n in a b; do
    p=$pa
    onerr=local
    if [ $n = b ]; then
        p=$pb
        onerr=tempfail
    fi
    rcd_conf "$T/$n.conf" "$p" "smtp:[127.0.0.1]:$sink_port" <<EOF2
mynetworks = 127.0.0.4/32 127.0.0.5/32
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/passwd
rate_limits = $T/limits
state_store = redis://127.0.0.1:$redis_port/0
state_on_error = $onerr
smtp_proxy_protocol = haproxy
proxy_protocol_hosts = 127.0.0.1/32
proxy_protocol_timeout = 2s
header_limit = 12
EOF2
done
rcd_start a "$T/a.conf" "$pa" || finish
rcd_start b "$T/b.conf" "$pb" || finish

# ---- HAProxy
cat >"$T/haproxy.cfg" <<EOF2
global
    maxconn 256
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend fe_rr
    bind 127.0.0.1:$hp_rr
    default_backend be_rr
backend be_rr
    balance roundrobin
    server a 127.0.0.1:$pa send-proxy
    server b 127.0.0.1:$pb send-proxy-v2
frontend fe_a
    bind 127.0.0.1:$hp_a
    default_backend be_a
backend be_a
    server a 127.0.0.1:$pa send-proxy
frontend fe_b
    bind 127.0.0.1:$hp_b
    default_backend be_b
backend be_b
    server b 127.0.0.1:$pb send-proxy-v2
EOF2
haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.log" 2>&1 &
smtpd_track $!
for p in $hp_rr $hp_a $hp_b; do
    wait_listen "$p" || fail "haproxy does not listen on $p"
done
[ "$failures" -gt 0 ] && finish

# send NAME PORT SRC [SWAKS OPTIONS...] - one message; its exit status
send() {
    name=$1 port=$2 src=$3
    shift 3
    timeout 30 swaks --server 127.0.0.1 --port "$port" \
        --local-interface "$src" --from sender@example.org \
        --to rcpt@example.net --timeout 20 "$@" >"$T/$name.out" 2>&1
}

# ---- 1. alice: 5/1h over both nodes
ok=0
i=0
while [ $i -lt 10 ]; do
    i=$((i + 1))
    if send alice$i "$hp_rr" 127.0.0.2 --tls --auth PLAIN \
        --auth-user alice --auth-password 'right horse battery'; then
        ok=$((ok + 1))
    fi
done
check "alice: 5 of 10 messages taken across both nodes (got $ok)" [ "$ok" -eq 5 ]
check "alice: the others got 452 4.7.1" \
    [ "$(cat "$T"/alice*.out | grep -c '<~\* *452 4.7.1')" -eq 5 ]
check "alice: the sink has 5" sink_wait sink 5 10
for n in a b; do
    check "node $n logs the rule by file:line" \
        grep -q "rate_limit=$T/limits:2 user:alice" "$T/$n.log"
    check "node $n took some of alice's" \
        grep -q "client=unknown\[127.0.0.2\]" "$T/$n.log"
done
base=$(sink_count sink)

# ---- 2. the client of the PROXY header, in logs and policy
ok=0
for i in 1 2 3; do
    send c4_$i "$hp_rr" 127.0.0.4 && ok=$((ok + 1))
done
check "127.0.0.4: 2 of 3 taken (client:127.0.0.4/32 2/1h; got $ok)" [ "$ok" -eq 2 ]
check "127.0.0.4: the third got 452 4.7.1" grep -q '452 4.7.1' "$T/c4_3.out"
check "the rule logged for 127.0.0.4" \
    grep -q "rate_limit=$T/limits:3 client:127.0.0.4/32" "$T/a.log" "$T/b.log"
check "node a: PROXY v1 named 127.0.0.4" \
    grep -q "PROXY v1: client 127.0.0.4 port" "$T/a.log"
check "node b: PROXY v2 named 127.0.0.4" \
    grep -q "PROXY v2: client 127.0.0.4 port" "$T/b.log"
check "node a logs the connection from 127.0.0.4" \
    grep -q "connect from unknown\[127.0.0.4\]" "$T/a.log"
check "node b logs the connection from 127.0.0.4" \
    grep -q "connect from unknown\[127.0.0.4\]" "$T/b.log"
check "the sink got 2 more" sink_wait sink $((base + 2)) 10
check "the relayed message's Received names 127.0.0.4" \
    grep -rq "127.0.0.4" "$T/sink"
# a reload with the rule raised to 4: the 2 counted in Redis still count
sed -i 's|^client:127.0.0.4/32 2/1h$|client:127.0.0.4/32 4/1h|' "$T/limits"
for n in a b; do
    kill -USR1 "$(rcd_pid $n)"
    check "node $n reloads" wait_grep "reload: configuration" "$T/$n.log" 10
done
ok=0
for i in 4 5 6; do
    send c4_$i "$hp_rr" 127.0.0.4 && ok=$((ok + 1))
done
check "after the reload to 4/1h: 2 more of 3 taken, Redis kept the count (got $ok)" \
    [ "$ok" -eq 2 ]
check "after the reload the rule is logged at its line" \
    grep -q "127.0.0.4.*rate_limit=$T/limits:3 client:127.0.0.4/32 (4 per" "$T/a.log" "$T/b.log"
send c6 "$hp_rr" 127.0.0.6
check "127.0.0.6 (not in mynetworks, no AUTH) may not relay" \
    grep -q '<\*\* *5[0-9][0-9] ' "$T/c6.out"

# ---- 2b. a recipients rule, counted once a message: two recipients
# to limited.example fit 2/1h, a third in another message gets 452
# after its data; each message is one EVALSHA, however many recipients
evalsha_calls() {
    redis-cli -p "$redis_port" info commandstats |
        sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'
}
calls0=$(evalsha_calls)
send lim1 "$hp_a" 127.0.0.5 --to a@limited.example,b@limited.example,x@example.net
check "rcpt_domain:limited.example 2/1h recipients: two in one message taken" \
    grep -q "^<- *250 2.0.0" "$T/lim1.out"
calls1=$(evalsha_calls)
check "one EVALSHA for a message of three recipients (${calls0:-none} -> ${calls1:-none})" \
    [ "${calls1:-0}" -eq $((${calls0:--9} + 1)) ]
send lim2 "$hp_a" 127.0.0.5 --to c@limited.example
check "the third recipient to limited.example: 452 4.7.1 after the data" \
    grep -q '<\*\* *452 4.7.1' "$T/lim2.out"
check "the rule is logged with the message" \
    grep -q "reject: END-OF-MESSAGE from unknown\[127.0.0.5\]: 452 4.7.1.*rate_limit=$T/limits:5 rcpt_domain:limited.example.*to=<c@limited.example>" "$T/a.log"
send lim3 "$hp_a" 127.0.0.5 --to y@example.net
check "another domain from the same client still goes" \
    grep -q "^<- *250 2.0.0" "$T/lim3.out"

# ---- 3. PROXY headers refused
"$PY" - "$pa" >"$T/proxy.out" 2>&1 <<'EOF2'
import socket, sys
port = int(sys.argv[1])
def attempt(src, header):
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(header)
    try:
        got = s.recv(512)
    except socket.timeout:
        got = b"TIMEOUT"
    except ConnectionResetError:
        got = b""  # closed with the header unread: a reset, no greeting
    s.close()
    return got
print("untrusted:", attempt("127.0.0.3", b"PROXY TCP4 127.0.0.5 127.0.0.1 1000 25\r\n"))
print("malformed:", attempt("127.0.0.1", b"PROXY TCP4 127.0.0.5 127.0.0.1 1000\r\n"))
print("trusted:", attempt("127.0.0.1", b"PROXY TCP4 127.0.0.5 127.0.0.1 1000 25\r\n"))
EOF2
check "a PROXY header from 127.0.0.3 gets no greeting" \
    grep -q "^untrusted: b''" "$T/proxy.out"
check "node a logs why (127.0.0.3 not in proxy_protocol_hosts)" \
    grep -q "PROXY: connection from unknown\[127.0.0.3\] refused" "$T/a.log"
check "a malformed PROXY header gets no greeting" \
    grep -q "^malformed: b''" "$T/proxy.out"
check "node a logs the malformed header" \
    grep -q "PROXY: bad header from unknown\[127.0.0.1\]: v1:" "$T/a.log"
check "the same header well formed from 127.0.0.1 is greeted" \
    grep -q "^trusted: b'220 " "$T/proxy.out"

# ---- 4. Redis killed under load
base=$(sink_count sink)
ok=0
i=0
while [ $i -lt 16 ]; do
    i=$((i + 1))
    if [ $i -eq 6 ]; then
        kill -KILL "$REDIS_PID"
        wait "$REDIS_PID" 2>/dev/null
    fi
    send load$i "$hp_a" 127.0.0.5 && ok=$((ok + 1))
done
check "Redis killed: all 16 messages through node a taken (got $ok)" [ "$ok" -eq 16 ]
check "Redis killed: all 16 reached the sink" sink_wait sink $((base + 16)) 10
check "node a says once that it counts on its own" \
    [ "$(grep -c 'state store redis://127.0.0.1:.*counted on this node' "$T/a.log")" -eq 1 ]
# the limits still hold, per node: alice (counted 5 in Redis) gets 5
# more on node a alone, then 452
ok=0
i=0
while [ $i -lt 6 ]; do
    i=$((i + 1))
    if send local$i "$hp_a" 127.0.0.2 --tls --auth PLAIN \
        --auth-user alice --auth-password 'right horse battery'; then
        ok=$((ok + 1))
    fi
done
check "Redis killed: node a limits alice on its own, 5 of 6 (got $ok)" [ "$ok" -eq 5 ]
check "Redis killed: the sixth got 452 4.7.1" grep -q '452 4.7.1' "$T/local6.out"
check "Redis killed: 16 + 5 reached the sink" sink_wait sink $((base + 21)) 10
base=$((base + 5))
ok=0
for i in 1 2 3; do
    send tf$i "$hp_b" 127.0.0.5 && ok=$((ok + 1))
done
check "Redis killed: node b (tempfail) takes none (got $ok)" [ "$ok" -eq 0 ]
check "Redis killed: node b answers 451 4.3.0" \
    grep -q '451 4.3.0 Error: rate limit state unavailable' "$T/tf1.out"
check "Redis killed: nothing more reached the sink" \
    [ "$(sink_count sink)" -eq $((base + 16)) ]

# ---- 5. Redis back
redis_start
sleep 1.2
ok=0
for i in 1 2; do
    send back$i "$hp_a" 127.0.0.5 && ok=$((ok + 1))
done
check "Redis back: node a takes mail (got $ok)" [ "$ok" -eq 2 ]
check "Redis back: node a logs it" grep -q "state store redis://.* is back" "$T/a.log"
key=$(redis-cli -p "$redis_port" --scan --pattern 'relaychain:rl:client:127.0.0.5/32:*' | head -n 1)
check "Redis back: the counter is in Redis again (key '$key' = $(redis-cli -p "$redis_port" get "$key"))" \
    [ "$(redis-cli -p "$redis_port" get "$key")" = 2 ]
check "Redis back: node b takes mail again" send tfback "$hp_b" 127.0.0.5
# a message the chain refuses (more fields than header_limit: 552) gives
# its count back in Redis
before=$(redis-cli -p "$redis_port" get "$key")
i=0
while [ $i -lt 20 ]; do
    echo "X-Field-$i: x"
    i=$((i + 1))
done >"$T/big.eml"
printf 'Subject: big\n\nbody\n' >>"$T/big.eml"
send big "$hp_a" 127.0.0.5 --data "$T/big.eml"
check "twenty fields over header_limit: 552" grep -q '<\*\* *552 5\.3\.4' "$T/big.out"
check "the refused message's count given back in Redis ($before -> $(redis-cli -p "$redis_port" get "$key"))" \
    [ "$(redis-cli -p "$redis_port" get "$key")" = "${before:-none}" ]

rcd_stop a
rcd_stop b
if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    tail -n 40 "$T/a.log" "$T/b.log" "$T/haproxy.log" >&2
fi
finish
