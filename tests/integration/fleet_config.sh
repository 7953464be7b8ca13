#!/bin/sh
# fleet_config - "relaychain check" refuses fleet settings it cannot
# honour, naming the file and line: a rate_limits rule it does not
# understand (the rules file's own line, inside the key's), a stream:
# rule without the events' stream_map, a state_store that is not memory
# or redis://host:port/db, smtp_proxy_protocol without
# proxy_protocol_hosts; and takes a valid set.
. "$top_srcdir/tests/integration/lib.sh"

LC_ALL=C
export LC_ALL
mkdir -p "$T/chain.d" "$T/quar"

# try NAME WANT LINE... - check a configuration with LINEs added; WANT
# empty: it must pass, else the error must contain WANT
try() {
    name=$1 want=$2
    shift 2
    {
        echo "smtp_listen = 127.0.0.1:2525"
        echo "next_hop = smtp:[127.0.0.1]:25"
        echo "chain_directory = $T/chain.d"
        echo "quarantine_directory = $T/quar"
        echo "run_as_root = yes"
        for l in "$@"; do
            echo "$l"
        done
    } >"$T/$name.conf"
    "$RC" check -c "$T/$name.conf" >"$T/$name.out" 2>&1
    rc=$?
    if [ -z "$want" ]; then
        check "$name: taken (got $rc: $(cat "$T/$name.out"))" [ "$rc" -eq 0 ]
    else
        check "$name: refused (got $rc)" [ "$rc" -eq 1 ]
        check "$name: says \"$want\" (got: $(cat "$T/$name.out"))" \
            grep -qF "$want" "$T/$name.out"
    fi
}

printf '# ok\nuser:alice 5/1h\nclient:192.0.2.0/24 100/1m\nrcpt_domain:gmail.com 20/1s recipients\n' >"$T/good"
printf 'user:alice 5/1h\n\nuser:bob 5/1y\n' >"$T/badperiod"
printf 'stream:news 50/1s\n' >"$T/stream"

try good "" "rate_limits = $T/good" "state_store = redis://127.0.0.1:6379/2" \
    "smtp_proxy_protocol = haproxy" "proxy_protocol_hosts = 127.0.0.1/32"
try badperiod "$T/badperiod.conf:6: rate_limits: $T/badperiod:3: '5/1y': period" \
    "rate_limits = $T/badperiod"
try stream "$T/stream.conf:6: rate_limits: $T/stream:1 stream:news: a stream rule needs stream_map" \
    "rate_limits = $T/stream"
printf '/^news@/ news\n' >"$T/streams"
try streammap "" "rate_limits = $T/stream" "delivery = queue" \
    "queue_directory = $T/spool" "events_store = sqlite:$T/events.db" \
    "stream_map = $T/streams"
try missing "$T/missing.conf:6: rate_limits: $T/nothere" \
    "rate_limits = $T/nothere"
try store "$T/store.conf:6: state_store: 'memcache://x' is not memory or redis://" \
    "state_store = memcache://x"
try onerr "$T/onerr.conf:6: state_on_error" "state_on_error = maybe"
try proxy "$T/proxy.conf:6: smtp_proxy_protocol: needs proxy_protocol_hosts" \
    "smtp_proxy_protocol = haproxy"
try proxyhosts "$T/proxyhosts.conf:7: proxy_protocol_hosts" \
    "smtp_proxy_protocol = haproxy" "proxy_protocol_hosts = 300.0.0.1/8"
finish
