#!/bin/sh
# smtpd_auth_shared - with state_store = redis://, failed AUTH attempts
# count toward auth_failure_rate across the nodes that share the Redis,
# so a client guessing passwords through a balancer is limited once
#
# Two relaychaind nodes, one real redis-server on loopback,
# auth_failure_rate = 3. From 127.0.0.2: two failures on node 1, one on
# node 2 (535 each), then node 2 answers even the right password with
# 454 4.7.0, and node 1 too. 127.0.0.3 logs in on node 2 (235), and a
# success gives its attempt back: four logins in a row from 127.0.0.4
# all get 235. The counters are in Redis under
# relaychain:rl:auth_failures:ADDR. Redis stopped: each node counts
# alone again and AUTH still works.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/auth_lib.sh"

for prog in redis-server redis-cli; do
    command -v "$prog" >/dev/null 2>&1 || {
        echo "$0: $prog is missing (scripts/setup installs it)" >&2
        exit 1
    }
done
set -- $(free_ports 4)
port1=$1 port2=$2 sink_port=$3 redis_port=$4

auth_setup

mkdir -p "$T/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$T/redis" \
    --save '' --appendonly no --daemonize no >>"$T/redis.log" 2>&1 &
REDIS_PID=$!
smtpd_track "$REDIS_PID"
wait_listen "$redis_port" || fail "redis-server does not listen"

sink_start sink "$sink_port"
for n in 1 2; do
    printf '%s\n' "mynetworks = 127.0.0.1/32" "tls_cert_file = $T/cert.pem" \
        "tls_key_file = $T/key.pem" "auth_password_file = $T/passwd" \
        "auth_failure_limit = 10" "auth_failure_rate = 3" \
        "state_store = redis://127.0.0.1:$redis_port/0" |
        rcd_conf "$T/r$n.conf" "$(eval echo "\$port$n")" \
            "smtp:[127.0.0.1]:$sink_port"
done
rcd_start rcd1 "$T/r1.conf" "$port1" || finish
rcd_start rcd2 "$T/r2.conf" "$port2" || finish

session "$port1" 127.0.0.2 s1 "AUTH PLAIN $bad" "AUTH PLAIN $bad"
session "$port2" 127.0.0.2 s2 "AUTH PLAIN $bad" "AUTH PLAIN $good"
session "$port1" 127.0.0.2 s3 "AUTH PLAIN $good"
session "$port2" 127.0.0.3 s4 "AUTH PLAIN $good"
check "node 1: two failures (got $(auth_codes "$T/s1.out"))" \
    [ "$(auth_codes "$T/s1.out")" = "535 535 221" ]
check "node 2: the third failure, then 454 even for the right password (got $(auth_codes "$T/s2.out"))" \
    [ "$(auth_codes "$T/s2.out")" = "535 454 221" ]
check "node 1 refuses the client too (got $(auth_codes "$T/s3.out"))" \
    [ "$(auth_codes "$T/s3.out")" = "454 221" ]
check "another client logs in (got $(auth_codes "$T/s4.out"))" \
    [ "$(auth_codes "$T/s4.out")" = "235 221" ]
check "node 2 logs the limit" \
    grep -q 'AUTH failure rate limit exceeded' "$T/rcd2.log"
check "the count is in Redis" \
    [ -n "$(redis-cli -p "$redis_port" --scan --pattern 'relaychain:rl:auth_failures:127.0.0.2:*')" ]
for i in 1 2 3 4; do
    if [ $((i % 2)) = 1 ]; then p=$port1; else p=$port2; fi
    session "$p" 127.0.0.4 "ok$i" "AUTH PLAIN $good"
done
check "four logins in a row: successes are given back" \
    [ "$(cat "$T"/ok*.out | grep -c '^235 ')" -eq 4 ]

# Redis away: each node counts alone, and AUTH still works
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null
session "$port1" 127.0.0.5 s5 "AUTH PLAIN $bad" "AUTH PLAIN $good"
check "Redis away: 535 then 235 (got $(auth_codes "$T/s5.out"))" \
    [ "$(auth_codes "$T/s5.out")" = "535 235 221" ]

rcd_stop rcd1
rcd_stop rcd2
finish
