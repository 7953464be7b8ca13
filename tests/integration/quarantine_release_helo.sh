#!/bin/sh
# quarantine_release_helo - a release with delivery = through says EHLO
# with the name myhostname documents
#
# "relaychain quarantine release" hands the message straight to
# next_hop (an smtp-sink that notes the EHLO argument in each message it
# keeps) when delivery = through. The name it gives is the one
# relaychaind gives: myhostname when set, else the system's host name
# (it used to be "localhost" here).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 1)
sink_port=$1
Q="$T/quarantine"
mkdir -p "$Q" "$T/chain.d"
chmod 700 "$Q"
sink_start sink "$sink_port"

# plant ID - a message in the quarantine, as relaychaind writes one
plant() {
    printf 'Envelope-From: a@example.org\nEnvelope-To: b@example.net\nClient: 127.0.0.1\nHelo: client\nArrival: 1700000000\nReason: test\n\nSubject: held %s\n\nheld body\n' \
        "$1" >"$Q/$1"
    chmod 600 "$Q/$1"
}

# release N ID [myhostname] - release ID; the sink then has N messages
release() {
    {
        echo "chain_directory = $T/chain.d"
        echo "quarantine_directory = $Q"
        echo "delivery = through"
        echo "next_hop = smtp:[127.0.0.1]:$sink_port"
        [ -z "${3:-}" ] || echo "myhostname = $3"
    } >"$T/rc.conf"
    plant "$2"
    timeout 30 "$RC" quarantine -c "$T/rc.conf" release "$2" \
        >"$T/$2.out" 2>&1
    check "$2: released ($(cat "$T/$2.out"))" \
        grep -q "^$2: released (250 " "$T/$2.out"
    check "$2: at the sink" sink_wait sink "$1" 10
}

# helo_of ID - the EHLO argument the sink noted for message ID
helo_of() {
    grep -l "^Subject: held $1\$" "$T"/sink/msg.* 2>/dev/null | head -n 1 |
        xargs -r sed -n 's/^X-Helo-Args: *//p' | head -n 1 | tr -d '\r'
}

release 1 QHELO01 relay.test.example
check "myhostname set: EHLO relay.test.example (got '$(helo_of QHELO01)')" \
    [ "$(helo_of QHELO01)" = relay.test.example ]

release 2 QHELO02
host=$(hostname)
check "myhostname not set: EHLO $host (got '$(helo_of QHELO02)')" \
    [ "$(helo_of QHELO02)" = "$host" ]
check "not localhost" [ "$(helo_of QHELO02)" != localhost ] || [ "$host" = localhost ]

if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.out "$T"/sink/msg.*; do
        echo "=== $f"
        cat "$f"
    done
fi
finish
