# smtpd_lib.sh - shared by the SMTP front-end tests (sourced, not run)
#
# Sources lib.sh ($RC, $T, check, fail, finish) and adds what the tests of
# relaychaind need, all on 127.0.0.1 with ports the kernel picked:
#
#   free_ports N            print N free TCP ports, one a line
#   rcd_conf FILE PORT NEXT_HOP   write a relaychain.conf for the test:
#                           lines on stdin are added and win over the
#                           defaults (an empty chain in $T/chain.d, a
#                           20s smtpd_timeout, next_hop_tls = none...)
#   rcd_start NAME CONF PORT      start "relaychaind -f -c CONF", log in
#                           $T/NAME.log; waits (bounded) until PORT
#                           listens; sets RCD_PID; returns 1 if it died
#   rcd_test_conf CONF      add what a test daemon needs and an admin's
#                           file would not have (rcd_conf, rcd_start and
#                           mtd_start call it): its own control_socket (CONF.ctl),
#                           and run_as_root = yes unless CONF names a user
#                           (the tests run as root)
#   rcd_stop NAME           SIGTERM, wait, check exit 0, the log line and
#                           that no sanitizer report is in the log
#   rcd_pid NAME            print the pid of NAME
#   sink_start NAME PORT [OPTIONS...]   smtp-sink on PORT dumping every
#                           message to a file in $T/NAME/
#   sink_count NAME         messages received by sink NAME
#   sink_wait NAME N [SECS] wait until sink NAME has N messages
#   chat PORT [OPTIONS]     tests/integration/smtpchat.py (script on stdin)
#   wait_listen PORT        wait (bounded) until something listens on PORT
#   wait_grep PATTERN FILE [SECS]  wait until FILE has a line matching
#   pfx_init NAME           a private Postfix instance in $T/NAME: own
#                           config, queue and data directories, loopback
#                           only, no local delivery, logging to
#                           $T/NAME/postfix.log; add to main.cf with
#                           pfx_set NAME "key = value"... and to master.cf
#                           with pfx_master NAME < lines
#   pfx_start NAME / pfx_stop NAME
#
# Each test prints its transcripts and logs when a check failed, or
# always with SMTPD_VERBOSE=1 in the environment.
#
# Every process started here is remembered by its pid and ended when the
# test exits (SIGTERM, then SIGKILL after 3 s); each Postfix instance is
# stopped with "postfix -c DIR stop" and its master waited for. Every wait
# is bounded. Clients run under timeout(1).

. "$top_srcdir/tests/integration/lib.sh"

LC_ALL=C
export LC_ALL
RCD="$top_builddir/relaychaind"
PY=/usr/bin/python3
CHAT="$top_srcdir/tests/integration/smtpchat.py"
if [ ! -x "$RCD" ]; then
    echo "$0: $RCD is missing; build first" >&2
    exit 1
fi
for prog in "$PY" /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/sbin/postfix \
    swaks ss ps openssl timeout; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        echo "$0: $prog is missing (scripts/setup installs it)" >&2
        exit 1
    fi
done
# A private Postfix and "smtp-sink -u" need root, as on CI.
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: the SMTP tests run Postfix and smtp-sink: run them as root" >&2
    exit 1
fi
# smtp-sink (as nobody) and Postfix (as postfix) write under $T.
chmod 755 "$T"
SMTPD_PIDS=""
SMTPD_POSTFIX=""

smtpd_cleanup() {
    for d in $SMTPD_POSTFIX; do
        pfx_stop "$d" >/dev/null 2>&1
    done
    for p in $SMTPD_PIDS; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in $SMTPD_PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 30 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap 'smtpd_cleanup' EXIT
trap 'exit 1' INT TERM HUP

smtpd_track() {
    SMTPD_PIDS="$SMTPD_PIDS $1"
}

free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

wait_listen() {
    local i
    i=0
    while [ $i -lt 100 ]; do
        if [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; then
            return 0
        fi
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}

wait_grep() {
    local i lim
    i=0
    lim=$(( ${3:-5} * 10 ))
    while [ $i -lt "$lim" ]; do
        grep -q -e "$1" "$2" 2>/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

chat() {
    local port
    port=$1
    shift
    timeout 60 "$PY" "$CHAT" "$@" "$port"
}

rcd_conf() {
    local kv
    mkdir -p "$T/chain.d"
    cat >"$1.extra"
    {
        for kv in "smtp_listen = 127.0.0.1:$2" "next_hop = $3" \
            "myhostname = relay.test.example" "chain_directory = $T/chain.d" \
            "quarantine_directory = $T/quarantine" "next_hop_tls = none" \
            "smtpd_timeout = 20s" "shutdown_timeout = 5s"; do
            grep -q "^${kv%% *} *=" "$1.extra" || echo "$kv"
        done
        cat "$1.extra"
    } >"$1"
    rm -f "$1.extra"
    rcd_test_conf "$1"
}

rcd_test_conf() {
    grep -q '^control_socket *=' "$1" ||
        echo "control_socket = $1.ctl" >>"$1"
    grep -q -e '^user *=' -e '^run_as_root *=' "$1" ||
        echo "run_as_root = yes" >>"$1"
}

rcd_start() {
    local i n0 lf
    rcd_test_conf "$2"
    # Ready is the "daemon started" line, written once the chain is loaded
    # and the threads run: the port listens earlier (bound before the load).
    lf=$T/$1.log
    n0=$(cat "$lf" 2>/dev/null | grep -c 'daemon started')
    "$RCD" -f -c "$2" 2>>"$T/$1.log" &
    RCD_PID=$!
    smtpd_track "$RCD_PID"
    echo "$RCD_PID" >"$T/$1.pid"
    i=0
    while [ $i -lt 600 ]; do
        if ! kill -0 "$RCD_PID" 2>/dev/null; then
            fail "relaychaind $1 died at start: $(tail -n 3 "$T/$1.log")"
            return 1
        fi
        if [ -n "$(ss -Hltn "sport = :$3" 2>/dev/null)" ] &&
            [ "$(cat "$lf" 2>/dev/null | grep -c 'daemon started')" -gt "$n0" ]; then
            return 0
        fi
        sleep 0.05
        i=$((i + 1))
    done
    fail "relaychaind $1 does not listen on port $3, or has not started"
    return 1
}

rcd_pid() {
    cat "$T/$1.pid"
}

rcd_stop() {
    local pid rc
    pid=$(rcd_pid "$1")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    check "relaychaind $1 exits 0 on SIGTERM (got $rc)" [ "$rc" -eq 0 ]
    check "relaychaind $1 logs its end" \
        grep -q "terminating on signal 15" "$T/$1.log"
    rcd_clean_log "$1"
}

# rcd_clean_log NAME - no sanitizer report in relaychaind NAME's log
rcd_clean_log() {
    check "relaychaind $1: no sanitizer report in its log" \
        sh -c "! grep -q -e 'Sanitizer' -e 'runtime error:' '$T/$1.log'"
}

sink_start() {
    local name port
    name=$1
    port=$2
    shift 2
    mkdir -p "$T/$name"
    chown nobody "$T/$name"
    smtp-sink -u nobody -4 "$@" -d "$T/$name/msg." "127.0.0.1:$port" 64 \
        >>"$T/$name.log" 2>&1 &
    smtpd_track $!
    wait_listen "$port" || fail "smtp-sink $name does not listen on $port"
}

sink_count() {
    find "$T/$1" -type f -name 'msg.*' | wc -l
}

sink_wait() {
    local i lim
    i=0
    lim=$(( ${3:-5} * 10 ))
    while [ "$(sink_count "$1")" -lt "$2" ] && [ $i -lt "$lim" ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(sink_count "$1")" -ge "$2" ]
}

# sink_files NAME - the dump files of sink NAME, oldest first
sink_files() {
    ls -tr "$T/$1"/msg.* 2>/dev/null
}

# ---------------------------------------------------------------- Postfix

pfx_set() {
    local d kv
    d=$T/$1
    shift
    for kv in "$@"; do
        printf '%s\n' "$kv" >>"$d/etc/main.cf"
    done
}

pfx_master() {
    cat >>"$T/$1/etc/master.cf"
}

pfx_init() {
    local d
    d=$T/$1
    mkdir -p "$d/etc" "$d/queue" "$d/data"
    chown postfix "$d/data"
    cat >"$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $1.test.example
mydomain = test.example
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_dns_support_level = disabled
maillog_file = $d/postfix.log
maillog_file_prefixes = $d
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF
    cat >"$d/etc/master.cf" <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

pfx_start() {
    local d
    d=$T/$1
    if ! postfix -c "$d/etc" check >>"$T/$1.start.log" 2>&1; then
        fail "postfix check $1: $(tail -n 3 "$T/$1.start.log")"
        return 1
    fi
    if ! postfix -c "$d/etc" start >>"$T/$1.start.log" 2>&1; then
        fail "postfix start $1: $(tail -n 3 "$T/$1.start.log")"
        return 1
    fi
    SMTPD_POSTFIX="$SMTPD_POSTFIX $1"
    wait_grep "daemon started" "$d/postfix.log" 10 ||
        fail "postfix $1: no \"daemon started\" in its log"
}

pfx_stop() {
    local d pidfile pid i
    d=$T/$1
    pidfile=$d/queue/pid/master.pid
    pid=$(tr -dc 0-9 <"$pidfile" 2>/dev/null)
    postfix -c "$d/etc" stop >>"$T/$1.start.log" 2>&1
    i=0
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        postfix -c "$d/etc" abort >>"$T/$1.start.log" 2>&1
    fi
}
