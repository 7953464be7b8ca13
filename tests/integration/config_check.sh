#!/bin/sh
# config_check - "relaychain check" refuses what relaychaind refuses, with
# path:line: key: reason, and checks the antivirus stage without compiling
# its database:
#
#   1. a user that does not exist, a next_hop without its kind, a
#      mynetworks prefix over 32 bits, an smtp_listen port over 65535:
#      check exits 1 naming the file, line and key; relaychaind stops at
#      start-up with the same words instead of listening on the port
#      modulo 65536
#   2. quarantine_directory and queue_directory are tested as the
#      configured user: a directory it cannot write is refused, one it
#      owns is accepted
#   3. the shipped chain.d checks without compiling the antivirus
#      database (no "signatures from" line, which a real load logs), and
#      an unreadable signature file is still refused
#   4. chain.d folders and *.example files are skipped in silence; a stage
#      file left as foo.conf~ or foo.conf.bak is a warning
#   5. a reload (SIGUSR1) takes the same path: a running daemon keeps its
#      configuration when the new one has a port over 65535 or an unknown
#      user, and takes a good one
#   6. a quarantine_directory that does not exist yet (accepted by check
#      because its parent lets the user make it) is made at the first
#      quarantined message, which is kept and answered 250
. "$top_srcdir/tests/integration/lib.sh"

RCD="$top_builddir/relaychaind"
LC_ALL=C
export LC_ALL
chmod 755 "$T"
mkdir -p "$T/chain.d" "$T/quar"
chown nobody "$T/quar"

# conf NAME LINE...: $T/NAME.conf with a valid daemon configuration and
# the given lines at its end (a key given again replaces the default)
conf() {
    name=$1
    shift
    : >"$T/$name.extra"
    for l in "$@"; do
        echo "$l" >>"$T/$name.extra"
    done
    {
        for kv in "chain_directory = $T/chain.d" \
            "smtp_listen = 127.0.0.1:10024" \
            "next_hop = smtp:[127.0.0.1]:10025" \
            "quarantine_directory = $T/quar"; do
            grep -q "^${kv%% *} *=" "$T/$name.extra" || echo "$kv"
        done
        cat "$T/$name.extra"
        # what a test daemon needs (see rcd_test_conf in smtpd_lib.sh)
        grep -q '^control_socket *=' "$T/$name.extra" ||
            echo "control_socket = $T/$name.ctl"
        grep -q -e '^user *=' -e '^run_as_root *=' "$T/$name.extra" ||
            echo "run_as_root = yes"
    } >"$T/$name.conf"
}

# refused NAME KEY WANT: check exits 1 with "NAME.conf:LINE: KEY: ...WANT"
refused() {
    line=$(grep -n "^$2 *=" "$T/$1.conf" | cut -d: -f1)
    "$RC" check -c "$T/$1.conf" >/dev/null 2>"$T/$1.err"
    rc=$?
    check "$1: check exits 1 (got $rc)" [ "$rc" -eq 1 ]
    check "$1: names $1.conf:$line: $2: (got: $(cat "$T/$1.err"))" \
        grep -qF -- "$T/$1.conf:$line: $2: " "$T/$1.err"
    check "$1: says $3 (got: $(cat "$T/$1.err"))" grep -qF -- "$3" "$T/$1.err"
}

# accepted NAME: check exits 0
accepted() {
    "$RC" check -c "$T/$1.conf" >"$T/$1.out" 2>"$T/$1.err"
    rc=$?
    check "$1: check exits 0 (got $rc: $(cat "$T/$1.err"))" [ "$rc" -eq 0 ]
}

# daemon_refuses NAME WANT: relaychaind exits 1 at start-up saying WANT
daemon_refuses() {
    timeout 10 "$RCD" -f -c "$T/$1.conf" >/dev/null 2>"$T/$1.rcd"
    rc=$?
    check "$1: relaychaind exits 1 at start-up (got $rc)" [ "$rc" -eq 1 ]
    check "$1: relaychaind says $2 (got: $(head -n 2 "$T/$1.rcd"))" \
        grep -qF -- "$2" "$T/$1.rcd"
}

conf good
accepted good

# ------------------------------------------ 1. what start-up refuses
conf nouser "user = rc-no-such-user"
refused nouser user "rc-no-such-user: no such user"
daemon_refuses nouser "user: rc-no-such-user: no such user"

conf nogroup "user = nobody" "group = rc-no-such-group"
refused nogroup group "rc-no-such-group: no such group"

conf nokind "next_hop = [127.0.0.1]:24026"
refused nokind next_hop "unknown kind"

conf net33 "mynetworks = 127.0.0.0/33"
refused net33 mynetworks "prefix length is larger than 32"

conf fwd "xforward_hosts = 10.0.0.0/8 not-a-net"
refused fwd xforward_hosts "not-a-net"

port=240244
conf bigport "smtp_listen = 127.0.0.1:$port"
refused bigport smtp_listen "port '$port' is not 1 to 65535"
daemon_refuses bigport "port '$port' is not 1 to 65535"
check "bigport: nothing listens on $port modulo 65536" \
    sh -c "! ss -Hltn 'sport = :$((port % 65536))' | grep -q ."

conf port0 "smtp_listen = 127.0.0.1:10024, 127.0.0.1:0"
refused port0 smtp_listen "port '0' is not 1 to 65535"
conf noport "smtp_listen = 127.0.0.1"
refused noport smtp_listen "is not host:port"
conf v6 "smtp_listen = [::1:10024"
refused v6 smtp_listen "is not [address]:port"

# Files the daemon loads at start-up: the refusal names the key's line.
printf 'not a certificate\n' >"$T/bad.pem"
chmod 600 "$T/bad.pem"
conf tls "tls_cert_file = $T/bad.pem" "tls_key_file = $T/bad.pem"
refused tls tls_cert_file "cannot load the certificate chain"
conf slm "sender_login_map = $T/no-such.pcre"
refused slm sender_login_map "no-such.pcre: No such file or directory"
conf apw "auth_password_file = $T/no-such-passwd" "tls_cert_file = $T/bad.pem" \
    "tls_key_file = $T/bad.pem"
refused apw auth_password_file "no-such-passwd: cannot open"

conf nha "next_hop_auth_file = $T/no-such-auth"
refused nha next_hop_auth_file "no-such-auth: No such file or directory"
check "nokind: the key is not repeated ($(cat "$T/nokind.err"))" \
    sh -c "! grep -q 'next_hop: next_hop' '$T/nokind.err'"

# What the milter listener refuses at start-up.
conf mmode "milter_listen = unix:$T/m.sock" "milter_socket_mode = 7777"
refused mmode milter_socket_mode "'7777' is not an octal mode"
conf mgroup "milter_listen = unix:$T/m.sock" "milter_socket_group = rc-no-such-group"
refused mgroup milter_socket_group "rc-no-such-group: no such group"
conf mdir "milter_listen = unix:$T/no-such-dir/m.sock"
refused mdir milter_listen "$T/no-such-dir: No such file or directory"
daemon_refuses mdir "milter_listen: $T/no-such-dir: No such file or directory"

# Ports over 65535 elsewhere: a transport_map route, a clamd socket.
printf 'example.com smtp:[127.0.0.1]:70000\n' >"$T/transport"
conf tmap "delivery = queue" "queue_directory = $T/spool" "transport_map = $T/transport"
"$RC" check -c "$T/tmap.conf" >/dev/null 2>"$T/tmap.err"
check "tmap: the map's file:line and the port ($(cat "$T/tmap.err"))" \
    grep -qF "$T/transport:1: next_hop: 'smtp:[127.0.0.1]:70000': bad port" "$T/tmap.err"
mkdir -p "$T/clamd.d"
printf 'stage = antivirus\nengine = clamd\nclamd_socket = tcp:127.0.0.1:99999\n' \
    >"$T/clamd.d/20-antivirus.conf"
conf clamd "chain_directory = $T/clamd.d"
"$RC" check -c "$T/clamd.conf" >/dev/null 2>"$T/clamd.err"
check "clamd: a port over 65535 is refused ($(cat "$T/clamd.err"))" \
    grep -qF "20-antivirus.conf:3: clamd_socket: 'tcp:127.0.0.1:99999': bad port" "$T/clamd.err"

# A configuration without a listener serves relaychain filter: check
# says the daemon would not start, and still exits 0.
printf 'chain_directory = %s/chain.d\n' "$T" >"$T/nolisten.conf"
accepted nolisten
check "nolisten: a warning says relaychaind would not start" \
    grep -q "neither smtp_listen nor milter_listen is set" "$T/nolisten.err"

# ------------------------------- 2. directories, as the configured user
mkdir -m 0700 "$T/rootonly"
conf quar "user = nobody" "quarantine_directory = $T/rootonly"
refused quar quarantine_directory "$T/rootonly: Permission denied for user nobody"
conf quarok "user = nobody" "quarantine_directory = $T/nobodys"
mkdir -m 0700 "$T/nobodys"
chown nobody "$T/nobodys"
accepted quarok
# A directory not there yet is made at first use, if the user may.
conf quarnew "user = nobody" "quarantine_directory = $T/nobodys/q"
accepted quarnew
conf quarnot "user = nobody" "quarantine_directory = $T/rootonly/q"
refused quarnot quarantine_directory "$T/rootonly/q does not exist (checked as user nobody)"

conf spool "user = nobody" "delivery = queue" "queue_directory = $T/rootonly"
refused spool queue_directory "$T/rootonly: Permission denied for user nobody"
conf spoolok "user = nobody" "delivery = queue" "queue_directory = $T/nobodys/spool"
accepted spoolok
conf spoolhop "delivery = queue" "queue_directory = $T/spool" \
    "transport_map = $T/no-such-map"
"$RC" check -c "$T/spoolhop.conf" >/dev/null 2>"$T/spoolhop.err"
check "spoolhop: a missing transport_map is refused ($(cat "$T/spoolhop.err"))" \
    grep -q "transport_map: .*no-such-map" "$T/spoolhop.err"

# ------------------------------------ 3. antivirus: checked, not compiled
conf example "chain_directory = $top_srcdir/chain.d"
accepted example
check "example: the antivirus stage is in the chain" \
    grep -q '^[0-9]*\. antivirus (stage = antivirus)' "$T/example.out"
check "example: check compiles no virus database ($(grep signatures "$T/example.err"))" \
    sh -c "! grep -q 'signatures from' '$T/example.err'"
# The same chain really loaded does log the line looked for above.
printf 'From: a@example.com\nTo: b@example.com\nSubject: x\n\nhello\n' |
    "$RC" filter -v -c "$T/example.conf" >/dev/null 2>"$T/filter.err"
check "example: a real load logs 'signatures from' ($(grep -c . "$T/filter.err") lines)" \
    grep -q "signatures from" "$T/filter.err"

mkdir -p "$T/av.d" "$T/db"
cp "$top_srcdir/chain.d/antivirus/eicar-example.ndb" "$T/db/"
printf 'stage = antivirus\ndatabase_directory = %s/db\n' "$T" >"$T/av.d/20-antivirus.conf"
conf av "chain_directory = $T/av.d"
accepted av
chmod 000 "$T/db/eicar-example.ndb"
if command -v setpriv >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    chmod 644 "$T/av.conf" "$T/av.d/20-antivirus.conf"
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$RC" check -c "$T/av.conf" >/dev/null 2>"$T/avlocked.err"
    rc=$?
    check "av: an unreadable signature file: exit 1 (got $rc)" [ "$rc" -eq 1 ]
    check "av: it names the file ($(cat "$T/avlocked.err"))" \
        grep -q "20-antivirus.conf:2: database_directory: $T/db/eicar-example.ndb: Permission denied" "$T/avlocked.err"
fi
chmod 644 "$T/db/eicar-example.ndb"
: >"$T/db/eicar-example.ndb"
"$RC" check -c "$T/av.conf" >/dev/null 2>"$T/avempty.err"
check "av: only empty signature files: no signatures ($(cat "$T/avempty.err"))" \
    grep -q "database_directory: $T/db: no signatures in it" "$T/avempty.err"

# ------------------------------------------- 4. what chain.d skips aloud
check "example: nothing of the shipped chain.d is reported as skipped ($(grep skipping "$T/example.err"))" \
    sh -c "! grep -q skipping '$T/example.err'"
cp "$T/av.d/20-antivirus.conf" "$T/chain.d/20-av.conf~"
cp "$T/av.d/20-antivirus.conf" "$T/chain.d/30-av.conf.bak"
cp "$T/av.d/20-antivirus.conf" "$T/chain.d/40-av.conf.example"
mkdir -p "$T/chain.d/rules"
echo notes >"$T/chain.d/README"
accepted good
check "skip: foo.conf~ is a warning" \
    grep -q "warning: $T/chain.d: skipping 20-av.conf~: not a \*.conf file, so not a stage" "$T/good.err"
check "skip: foo.conf.bak is a warning" \
    grep -q "warning: $T/chain.d: skipping 30-av.conf.bak" "$T/good.err"
check "skip: README is noted" grep -q "skipping README: not a \*.conf file" "$T/good.err"
check "skip: *.example and folders are not mentioned ($(cat "$T/good.err"))" \
    sh -c "! grep -q -e 'conf.example' -e 'rules' '$T/good.err'"
check "skip: the chain is empty" grep -q "chain: 0 stages" "$T/good.out"

# ------------------------------------------------------------- 5. reload
rm -f "$T/chain.d/"*
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf live "smtp_listen = 127.0.0.1:$port"
"$RCD" -f -c "$T/live.conf" 2>"$T/live.log" &
pid=$!
i=0
while [ $i -lt 100 ] && ! grep -q "daemon started" "$T/live.log"; do
    sleep 0.05
    i=$((i + 1))
done
check "reload: the daemon started ($(tail -n 2 "$T/live.log"))" grep -q "daemon started" "$T/live.log"
# reload_with LINE WANT: the reload with LINE added is refused saying WANT
reload_with() {
    conf live "smtp_listen = 127.0.0.1:$port" "$1"
    n=$(grep -c "reload" "$T/live.log")
    kill -USR1 "$pid"
    i=0
    while [ $i -lt 100 ] && [ "$(grep -c reload "$T/live.log")" -le "$n" ]; do
        sleep 0.05
        i=$((i + 1))
    done
    check "reload with '$1': refused ($(grep reload "$T/live.log" | tail -n 1))" \
        sh -c "grep reload '$T/live.log' | tail -n 1 | grep -q 'reload failed, keeping the running configuration: .*$2'"
}
reload_with "mynetworks = 10.0.0.0/8, 127.0.0.1:240244" "mynetworks"
conf live "smtp_listen = 127.0.0.1:$port, 127.0.0.1:240244"
n=$(grep -c "reload" "$T/live.log")
kill -USR1 "$pid"
i=0
while [ $i -lt 100 ] && [ "$(grep -c reload "$T/live.log")" -le "$n" ]; do
    sleep 0.05
    i=$((i + 1))
done
check "reload with a port over 65535: refused ($(grep reload "$T/live.log" | tail -n 1))" \
    sh -c "grep reload '$T/live.log' | tail -n 1 | grep -q \"reload failed.*smtp_listen: '127.0.0.1:240244': port\""
reload_with "user = rc-no-such-user" "user: rc-no-such-user: no such user"
conf live "smtp_listen = 127.0.0.1:$port" "recipient_limit = 5"
kill -USR1 "$pid"
i=0
while [ $i -lt 100 ] && ! grep -q "reload: configuration" "$T/live.log"; do
    sleep 0.05
    i=$((i + 1))
done
check "reload: a good configuration is taken" grep -q "reload: configuration" "$T/live.log"
kill -TERM "$pid"
wait "$pid"
check "reload: the daemon exits 0" [ $? -eq 0 ]
check "reload: no sanitizer report" sh -c "! grep -q -e Sanitizer -e 'runtime error:' '$T/live.log'"

# ------------------------------------- 6. quarantine_directory, made at use
RCDT="$top_builddir/tests/relaychaind-test"
if [ -x "$RCDT" ] && command -v swaks >/dev/null 2>&1 &&
    [ -x /usr/sbin/smtp-sink ]; then
    mkdir -p "$T/hold.d"
    printf 'stage = testedit\nverdict = quarantine\n' >"$T/hold.d/10-hold.conf"
    set -- $(/usr/bin/python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
    port=$1 sinkport=$2
    # delivery = through proxies MAIL and RCPT: a next hop must answer.
    /usr/sbin/smtp-sink -u nobody "127.0.0.1:$sinkport" 10 >"$T/sink.log" 2>&1 &
    sinkpid=$!
    i=0
    while [ $i -lt 100 ] && [ -z "$(ss -Hltn "sport = :$sinkport")" ]; do
        sleep 0.05
        i=$((i + 1))
    done
    conf hold "smtp_listen = 127.0.0.1:$port" "chain_directory = $T/hold.d" \
        "quarantine_directory = $T/nobodys/held" \
        "next_hop = smtp:[127.0.0.1]:$sinkport" "next_hop_tls = none"
    "$RCDT" -f -c "$T/hold.conf" 2>"$T/hold.log" &
    pid=$!
    i=0
    while [ $i -lt 100 ] && ! grep -q "daemon started" "$T/hold.log"; do
        sleep 0.05
        i=$((i + 1))
    done
    timeout 30 swaks --server "127.0.0.1:$port" --from a@example.com \
        --to b@example.org --body 'held' >"$T/hold.out" 2>&1
    check "hold: the client hears 250 ($(grep '^<-' "$T/hold.out" | tail -n 2 | tr '\n' ' '))" \
        grep -q '^<-  250 2.0.0 Ok: queued' "$T/hold.out"
    check "hold: the directory was made, mode 0700" \
        sh -c "[ \"\$(stat -c %a '$T/nobodys/held' 2>/dev/null)\" = 700 ]"
    check "hold: the message is in it" \
        sh -c "grep -lq '^held' '$T/nobodys/held'/* 2>/dev/null"
    kill -TERM "$pid" "$sinkpid"
    wait "$pid"
    [ "$failures" -eq 0 ] || cat "$T/hold.out" "$T/hold.log"
fi
finish
