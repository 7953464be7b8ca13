#!/bin/sh
# smtpc_tls_verify - next_hop_tls = verify and secure, pins, and secrets
#
# A private CA made here with openssl signs a certificate for
# mx.example.net and one that expired in 2020; a third certificate for
# the same name is self-signed. Each is served by
# tests/data/smtpc/scripted_server.py with STARTTLS on 127.0.0.1, and one
# relaychaind (delivery = through) per case sends a message to one of
# them. What a client must see:
#
#   secure, right name          250, the message arrives inside TLS
#   secure, wrong name          451 4.7.5 at MAIL, nothing sent after TLS
#   verify, self-signed         451, "self-signed certificate"
#   verify, expired             451, "certificate has expired"
#   verify, any name            250: verify checks the chain only
#   next_hop_tls_protocols      <=TLSv1.2 gets TLSv1.2, the default 1.3
#   delivery = queue, self-signed  250, then deferred with the reason
#   encrypt + fingerprint       250 with the right pin, 451 with another
#   secure, address literal     refused at start: next_hop_tls_name needed
#   bad protocols, bad pin      refused at start with file:line
#   tls_key_file, next_hop_auth_file readable by others: refused at start
#   AUTH to a host that is not loopback, over TLS whose certificate was
#   not verified (encrypt): no credentials sent, 451
#
# Every failure is logged with the reason, as Postfix logs "Server
# certificate not verified".
#
# The test runs in a network namespace of its own (unshare -n) whose
# loopback interface also carries 198.51.100.1 (TEST-NET-2): an address
# that is not loopback for relaychaind, which no packet leaves the
# namespace for.
if [ -z "${RC_TEST_NETNS:-}" ]; then
    if RC_TEST_NETNS=1 unshare -n true 2>/dev/null; then
        RC_TEST_NETNS=1 exec unshare -n sh "$0" "$@"
    fi
    RC_TEST_NETNS=none
elif [ "$RC_TEST_NETNS" = 1 ]; then
    ip link set lo up && ip addr add 198.51.100.1/32 dev lo || exit 99
fi
. "$top_srcdir/tests/integration/smtpd_lib.sh"

SCRIPTED="$top_srcdir/tests/data/smtpc/scripted_server.py"
P="$T/pki"
mkdir -p "$P"
umask 022

# ---------------------------------------------------------------- the PKI
newkey="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
cat >"$P/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $P/index.txt
new_certs_dir = $P
serial = $P/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[anything]
commonName = supplied
EOF
: >"$P/index.txt"
echo 1000 >"$P/serial"
{
    openssl req -x509 $newkey -keyout "$P/ca.key" -out "$P/ca.pem" \
        -days 2 -subj "/CN=relaychain test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" &&
        for c in mx old; do
            openssl req -new $newkey -keyout "$P/$c.key" -out "$P/$c.csr" \
                -subj /CN=mx.example.net \
                -addext "subjectAltName=DNS:mx.example.net" || exit 1
        done &&
        openssl ca -batch -config "$P/ca.cnf" -cert "$P/ca.pem" \
            -keyfile "$P/ca.key" -in "$P/mx.csr" -out "$P/mx.pem" -days 2 \
            -notext &&
        openssl ca -batch -config "$P/ca.cnf" -cert "$P/ca.pem" \
            -keyfile "$P/ca.key" -in "$P/old.csr" -out "$P/old.pem" \
            -startdate 20200101000000Z -enddate 20200201000000Z -notext &&
        openssl req -x509 $newkey -keyout "$P/self.key" -out "$P/self.pem" \
            -days 2 -subj /CN=mx.example.net \
            -addext "subjectAltName=DNS:mx.example.net"
} >"$T/pki.log" 2>&1 || {
    cat "$T/pki.log"
    fail "openssl could not make the test PKI"
    finish
}
chmod 600 "$P"/*.key
fp_mx=$(openssl x509 -in "$P/mx.pem" -noout -fingerprint -sha256 | cut -d= -f2)
fp_self=$(openssl x509 -in "$P/self.pem" -noout -fingerprint -sha256 | cut -d= -f2)

# tls_server NAME CERT [LISTEN] - a STARTTLS server with CERT; its port
# in $T/NAME.port, its events in $T/NAME/events.log
tls_server() {
    mkdir -p "$T/$1"
    "$PY" "$SCRIPTED" --port-file "$T/$1.port" --dir "$T/$1" \
        --listen "${3:-127.0.0.1}" --lifetime 120 \
        --ehlo PIPELINING --ehlo STARTTLS --ehlo "AUTH PLAIN" \
        --tls-cert "$P/$2.pem" --tls-key "$P/$2.key" >"$T/$1.out" 2>&1 &
    smtpd_track $!
    i=0
    while [ ! -s "$T/$1.port" ] && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    [ -s "$T/$1.port" ] || fail "scripted server $1 did not start"
}

tls_server good mx
tls_server self self
tls_server old old
tls_server proto mx
good=$(cat "$T/good.port") self=$(cat "$T/self.port") old=$(cat "$T/old.port")
proto=$(cat "$T/proto.port")

# send NAME PORT - one message through relaychaind on PORT; the client's
# transcript in $T/NAME.swaks
send() {
    timeout 60 swaks --server "127.0.0.1:$2" --helo client.test.example \
        --from "sender@client.example" --to "rcpt@dest.example" \
        --header "Subject: $1" --body "tls test $1" >"$T/$1.swaks" 2>&1
}

# case NAME NEXT_HOP_PORT - relaychaind NAME with the settings on stdin
set -- $(free_ports 8)
case_start() {
    rport=$1
    shift
    rcd_conf "$T/$1.conf" "$rport" "smtp:[127.0.0.1]:$2"
    rcd_start "$1" "$T/$1.conf" "$rport"
}

case_start "$1" secure "$good" <<EOF
next_hop_tls = secure
next_hop_tls_ca_file = $P/ca.pem
next_hop_tls_name = mx.example.net
EOF
case_start "$2" wrongname "$good" <<EOF
next_hop_tls = secure
next_hop_tls_ca_file = $P/ca.pem
next_hop_tls_name = other.example.net
EOF
case_start "$3" selfsigned "$self" <<EOF
next_hop_tls = verify
next_hop_tls_ca_file = $P/ca.pem
EOF
case_start "$4" expired "$old" <<EOF
next_hop_tls = verify
next_hop_tls_ca_file = $P/ca.pem
EOF
case_start "$5" verify "$good" <<EOF
next_hop_tls = verify
next_hop_tls_ca_file = $P/ca.pem
EOF
case_start "$6" pinned "$self" <<EOF
next_hop_tls = encrypt
next_hop_tls_fingerprint = $fp_self
EOF
case_start "$7" wrongpin "$self" <<EOF
next_hop_tls = encrypt
next_hop_tls_fingerprint = sha256:$fp_mx
EOF
r_secure=$1 r_wrongname=$2 r_selfsigned=$3 r_expired=$4 r_verify=$5
r_pinned=$6 r_wrongpin=$7

# accepted NAME SERVER - the message went through, inside TLS
accepted() {
    grep -q '^<- *250 .*queued as SCRIPTED' "$T/$1.swaks" &&
        grep -q "Subject: $1" "$T/$2"/data-*.bin &&
        awk '/ tls$/ { t = 1 } / > MAIL FROM/ && t { ok = 1 } END { exit !ok }' \
            "$T/$2/events.log"
}

send secure "$r_secure"
check "secure, right name: accepted" accepted secure good
send verify "$r_verify"
check "verify, a name the certificate does not have: accepted (chain only)" \
    accepted verify good
send pinned "$r_pinned"
check "encrypt with the pin of a self-signed certificate: accepted" \
    accepted pinned self

# refused NAME REASON - 451 4.7.5 for the client, the reason in the log
refused() {
    grep -q "^<\*\* *451 4\.7\.5 Server certificate not verified: .*: $2" \
        "$T/$1.swaks" &&
        grep -q "to next hop: 4\.7\.5 Server certificate not verified: 127\.0\.0\.1\[127\.0\.0\.1\]:[0-9]*: $2" \
            "$T/$1.log"
}

send wrongname "$r_wrongname"
check "secure, wrong name: 451 naming the mismatch" \
    refused wrongname 'hostname mismatch (the certificate is not for other\.example\.net)'
send selfsigned "$r_selfsigned"
check "verify, self-signed: 451" refused selfsigned 'self-signed certificate'
send expired "$r_expired"
check "verify, expired: 451" refused expired 'certificate has expired'
send wrongpin "$r_wrongpin"
check "encrypt, another pin: 451 with the certificate's fingerprint" \
    refused wrongpin "its fingerprint $fp_self is not in next_hop_tls_fingerprint"
check "no MAIL after a failed check (self: pinned only; old: none)" \
    sh -c "[ \$(grep -c '> MAIL' '$T/self/events.log') -eq 1 ] &&
           ! grep -q '> MAIL' '$T/old/events.log'"
check "the refused messages reached no server" \
    sh -c "! cat '$T'/*/data-*.bin | grep -q -e 'Subject: wrongname' -e 'Subject: selfsigned' -e 'Subject: expired' -e 'Subject: wrongpin'"

# next_hop_tls_protocols: TLSv1.3 by default, TLSv1.2 when capped
pport=$(free_ports 1)
case_start "$pport" tls12 "$proto" <<EOF
next_hop_tls = verify
next_hop_tls_ca_file = $P/ca.pem
next_hop_tls_protocols = <=TLSv1.2
EOF
send tls12 "$pport"
check "next_hop_tls_protocols = <=TLSv1.2: accepted over TLSv1.2 only" \
    sh -c "grep -q '^<- *250 .*queued as SCRIPTED' '$T/tls12.swaks' &&
           grep -q ' tls-version TLSv1.2\$' '$T/proto/events.log' &&
           ! grep -q ' tls-version TLSv1.3' '$T/proto/events.log'"
check "the default: TLSv1.3" \
    sh -c "grep -q ' tls-version TLSv1.3\$' '$T/good/events.log' &&
           ! grep -q ' tls-version TLSv1.2' '$T/good/events.log'"

# ---------------------------------------------------------------- queue
# delivery = queue: the client gets 250, the message stays queued with
# the reason, and is not sent to the self-signed next hop.
qport=$(free_ports 1)
case_start "$qport" queued "$self" <<EOF
delivery = queue
queue_directory = $T/spool
minimal_backoff_time = 60s
next_hop_tls = verify
next_hop_tls_ca_file = $P/ca.pem
EOF
send queued "$qport"
check "queue mode: the client gets 250 (the message is on disk)" \
    grep -q '^<- *250 .*queued as' "$T/queued.swaks"
check "queue mode: deferred, with the reason" \
    wait_grep 'to=<rcpt@dest.example>, relay=.*status=deferred (451 4.7.5 Server certificate not verified: 127.0.0.1\[127.0.0.1\]:[0-9]*: self-signed certificate)' \
    "$T/queued.log" 10
"$RC" queue -c "$T/queued.conf" list >"$T/queued-list.out" 2>&1
check "queue mode: still queued, listed with the reason" \
    sh -c "grep -q '^-- [0-9]* Kbytes in 1 Request\.\$' '$T/queued-list.out' &&
           grep -q 'Server certificate not verified' '$T/queued-list.out'"

# ---------------------------------------------------------------- start-up
# bad_start NAME KEY WANT - relaychaind refuses the configuration on
# stdin at start: exits non-zero and says "CONF:LINE: KEY: WANT" (WANT a
# fixed string), LINE being the one that set KEY
bad_start() {
    rcd_conf "$T/$1.conf" "$(free_ports 1)" "smtp:[127.0.0.1]:$good"
    line=$(grep -n "^$2 *=" "$T/$1.conf" | cut -d: -f1)
    timeout 20 "$RCD" -f -c "$T/$1.conf" >"$T/$1.err" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] &&
        grep -qF -- "$T/$1.conf:$line: $2: $3" "$T/$1.err"
}

check "secure to an address without next_hop_tls_name: refused at start" \
    bad_start literal next_hop_tls "secure checks the certificate against the next hop's name, and next_hop names the address 127.0.0.1: set next_hop_tls_name" <<EOF
next_hop_tls = secure
EOF
check "next_hop_tls_protocols that leaves nothing: refused with file:line" \
    bad_start protocols next_hop_tls_protocols "'!TLSv1.2 !TLSv1.3' leaves none of the protocols relaychain speaks" <<EOF
next_hop_tls_protocols = !TLSv1.2 !TLSv1.3
next_hop_tls = verify
EOF
check "a malformed pin: refused with file:line" \
    bad_start badpin next_hop_tls_fingerprint "'AB:CD' is not a SHA-256 fingerprint" <<EOF
next_hop_tls_fingerprint = AB:CD
next_hop_tls = encrypt
EOF
check "a pin with next_hop_tls = may: refused" \
    bad_start maypin next_hop_tls_fingerprint "a pin needs next_hop_tls = encrypt, verify or secure" <<EOF
next_hop_tls_fingerprint = $fp_mx
next_hop_tls = may
EOF
printf 'not a CA\n' >"$T/junk-ca.pem"
check "a CA file with no certificates: refused with file:line" \
    bad_start badca next_hop_tls_ca_file "$T/junk-ca.pem: cannot load the CA certificates" <<EOF
next_hop_tls_ca_file = $T/junk-ca.pem
next_hop_tls = verify
EOF

cp "$P/mx.key" "$T/open.key"
chmod 644 "$T/open.key"
check "tls_key_file readable by others: refused at start, naming it" \
    bad_start openkey tls_key_file "$T/open.key: mode 0644 lets all other users read it; a TLS private key must stay private: run chmod 640 $T/open.key" <<EOF
tls_cert_file = $P/mx.pem
tls_key_file = $T/open.key
EOF
printf 'relay:secret\n' >"$T/auth.open"
chmod 604 "$T/auth.open"
check "next_hop_auth_file readable by others: refused at start, naming it" \
    bad_start openauth next_hop_auth_file "$T/auth.open: mode 0604 lets all other users read it; the next hop's password must stay private: run chmod 600 $T/auth.open" <<EOF
next_hop_auth_file = $T/auth.open
EOF
check "the refusal does not show the password" \
    sh -c "! grep -q secret '$T/openauth.err'"

# ---------------------------------------------------------------- AUTH
printf 'relay:secret\n' >"$T/auth"
chmod 640 "$T/auth"
set -- $(free_ports 2)
case_start "$1" authsecure "$good" <<EOF
next_hop_tls = secure
next_hop_tls_ca_file = $P/ca.pem
next_hop_tls_name = mx.example.net
next_hop_auth_file = $T/auth
EOF
send authsecure "$1"
check "AUTH over verified TLS: sent, message accepted" \
    sh -c "grep -q '> AUTH PLAIN AHJlbGF5AHNlY3JldA==' '$T/good/events.log' &&
           grep -q 'Subject: authsecure' '$T'/good/data-*.bin"
# Loopback is exempt, so the rule shows only on another address: the one
# this test's own network namespace has.
if [ "$RC_TEST_NETNS" = 1 ]; then
    addr=198.51.100.1
    tls_server remote mx "$addr"
    remote=$(cat "$T/remote.port")
    rcd_conf "$T/authencrypt.conf" "$2" "smtp:[$addr]:$remote" <<EOF
next_hop_tls = encrypt
next_hop_auth_file = $T/auth
EOF
    rcd_start authencrypt "$T/authencrypt.conf" "$2"
    send authencrypt "$2"
    check "AUTH to $addr over TLS that was not verified: nothing sent, 451" \
        sh -c "grep -q '^<\*\* *451 4\.7\.0 not sending credentials to $addr\[$addr\]:$remote: its certificate was not verified' '$T/authencrypt.swaks' &&
               grep -q ' tls$' '$T/remote/events.log' &&
               ! grep -q 'AUTH' '$T/remote/events.log'"
    rcd_stop authencrypt
else
    echo "$0: no network namespace (unshare -n): the AUTH refusal is not tried"
fi

check "good: MAIL from secure, verify and authsecure only" \
    [ "$(grep -c '> MAIL' "$T/good/events.log")" -eq 3 ]
for r in secure wrongname selfsigned expired verify pinned wrongpin authsecure \
    queued tls12; do
    rcd_stop "$r"
done
if [ "$failures" -gt 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.swaks "$T"/*.log "$T"/*.err "$T"/*/events.log; do
        [ -f "$f" ] && { echo "=== $f"; cat "$f"; }
    done
fi
finish
