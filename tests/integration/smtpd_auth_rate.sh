#!/bin/sh
# smtpd_auth_rate - failed AUTH attempts are limited per client address
# across sessions (auth_failure_rate), before any password is hashed
#
# auth_failure_rate = 3, auth_failure_limit = 10 (so no session is cut
# for its own failures). From 127.0.0.2: a session fails twice (535), a
# second fails once more (535) and then even the right password gets
# 454 4.7.0; a third session gets 454 to AUTH LOGIN at once, with no
# 334 prompt, so nothing was read or hashed. 127.0.0.3 is another client
# and logs in (235). With auth_failure_rate = 0 (a second daemon) the
# same number of failures changes nothing.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/auth_lib.sh"

set -- $(free_ports 3)
port=$1 sink_port=$2 port2=$3

auth_setup

sink_start sink "$sink_port"
for n in 1 2; do
    rcd_conf "$T/r$n.conf" "$([ $n = 1 ] && echo "$port" || echo "$port2")" \
        "smtp:[127.0.0.1]:$sink_port" <<EOF
mynetworks = 127.0.0.1/32
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
auth_password_file = $T/passwd
auth_failure_limit = 10
auth_failure_rate = $([ $n = 1 ] && echo 3 || echo 0)
EOF
done
rcd_start rcd "$T/r1.conf" "$port" || finish
rcd_start rcd2 "$T/r2.conf" "$port2" || finish

session "$port" 127.0.0.2 s1 "AUTH PLAIN $bad" "AUTH PLAIN $bad"
session "$port" 127.0.0.2 s2 "AUTH PLAIN $bad" "AUTH PLAIN $good"
session "$port" 127.0.0.2 s3 "AUTH LOGIN"
session "$port" 127.0.0.3 s4 "AUTH PLAIN $good"
check "first session: two failures (got $(auth_codes "$T/s1.out"))" \
    [ "$(auth_codes "$T/s1.out")" = "535 535 221" ]
check "second session: a third failure, then 454 even for the right password (got $(auth_codes "$T/s2.out"))" \
    [ "$(auth_codes "$T/s2.out")" = "535 454 221" ]
check "the 454 says why" \
    grep -q '^454 4.7.0 Error: too many failed authentication attempts' "$T/s2.out"
check "third session: 454 to AUTH LOGIN, no prompt (got $(auth_codes "$T/s3.out"))" \
    [ "$(auth_codes "$T/s3.out")" = "454 221" ]
check "another client logs in (got $(auth_codes "$T/s4.out"))" \
    [ "$(auth_codes "$T/s4.out")" = "235 221" ]
check "the limit is logged" \
    grep -q 'warning: unknown\[127.0.0.2\]: AUTH failure rate limit exceeded' "$T/rcd.log"
check "three failures logged, not more" \
    [ "$(grep -c 'unknown\[127.0.0.2\]: SASL PLAIN authentication failed' "$T/rcd.log")" -eq 3 ]

session "$port2" 127.0.0.2 n1 "AUTH PLAIN $bad" "AUTH PLAIN $bad"
session "$port2" 127.0.0.2 n2 "AUTH PLAIN $bad" "AUTH PLAIN $good"
check "auth_failure_rate = 0: no limit (got $(auth_codes "$T/n2.out"))" \
    [ "$(auth_codes "$T/n2.out")" = "535 235 221" ]

rcd_stop rcd
rcd_stop rcd2
finish
