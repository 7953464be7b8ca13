# rspamd_lib.sh - a private rspamd for the antispam tests and for
# scripts/bench/antispam (sourced, after smtpd_lib.sh or milter_lib.sh)
#
#   rspamd_require          exit 1 unless rspamd is there
#   rspamd_start DIR PORT COUNT LEVEL [SOCKET]
#                           Debian's rspamd in the foreground with a
#                           private top-level configuration in DIR: the
#                           package's rules ($CONFDIR stays /etc/rspamd)
#                           with its local, database, run and log
#                           directories under DIR, COUNT normal workers
#                           on 127.0.0.1:PORT (and on SOCKET, a UNIX
#                           socket, when given), no controller or proxy,
#                           no redis; its log (LEVEL: info, warning ...) in
#                           DIR/log/rspamd.log. Sets RSPAMD_PID; does not
#                           wait (rspamd_wait does).
#   rspamd_wait DIR PORT SECONDS
#                           0 once rspamd listens on PORT; 1 when it died
#                           or did not listen in SECONDS (it compiles its
#                           rules at start)
#
# Nothing leaves the machine and no check waits on the network: the DNS
# server is one that does not exist (127.0.0.1:1), and what asks DNS or
# other servers for every message is off in DIR/local/local.d: the RBL
# and SURBL modules, the SPF, DKIM, ARC and DMARC checks, DCC, fuzzy
# storage, ASN, MX checks, BIMI, the redirector resolver, once_received
# (a PTR look-up), hfilter's checks that resolve the HELO, sender and URL
# host names (its checks of the client's name stay) and phishing's
# PhishTank and OpenPhish look-ups (its local checks stay). With them on,
# every message waits on DNS timeouts (~200 ms a message, whoever asks)
# and a rate measures the timeouts. The package's own service, sockets
# and files are never touched.

# shellcheck disable=SC3043 # "local": dash and bash have it, as smtpd_lib.sh

rspamd_require() {
    if ! command -v rspamd >/dev/null 2>&1; then
        echo "$0: rspamd is missing (scripts/setup installs it)" >&2
        exit 1
    fi
}

rspamd_start() {
    local dir port count level sock bind user m
    dir=$1 port=$2 count=$3 level=$4 sock=${5:-}
    bind="bind_socket = \"127.0.0.1:$port\";"
    if [ -n "$sock" ]; then
        bind="$bind
    bind_socket = \"$sock mode=0600\";"
    fi
    mkdir -p "$dir/local/local.d" "$dir/db" "$dir/run" "$dir/log"
    cat >"$dir/rspamd.conf" <<EOF
.include "\$CONFDIR/common.conf"
options {
    pidfile = "\$RUNDIR/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "\$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
    type = "file";
    filename = "\$LOGDIR/rspamd.log";
    level = "$level";
}
worker "normal" {
    $bind
    count = $count;
    .include "\$CONFDIR/worker-normal.inc"
}
EOF
    cat >"$dir/local/local.d/options.inc" <<EOF
dns {
    nameserver = ["127.0.0.1:1"];
    timeout = 0.2s;
    retransmits = 1;
}
EOF
    for m in rbl surbl emails spf dkim arc dmarc dcc fuzzy_check asn \
        mx_check bimi url_redirector once_received; do
        echo "enabled = false;" >"$dir/local/local.d/$m.conf"
    done
    cat >"$dir/local/local.d/hfilter.conf" <<EOF
helo_enabled = false;
from_enabled = false;
rcpt_enabled = false;
url_enabled = false;
EOF
    cat >"$dir/local/local.d/phishing.conf" <<EOF
phishtank_enabled = false;
openphish_enabled = false;
EOF
    user=""
    if [ "$(id -u)" -eq 0 ]; then
        user="-i -u root -g root"
    fi
    # shellcheck disable=SC2086
    rspamd -f $user -c "$dir/rspamd.conf" --var="LOCAL_CONFDIR=$dir/local" \
        --var="DBDIR=$dir/db" --var="RUNDIR=$dir/run" \
        --var="LOGDIR=$dir/log" >"$dir/out" 2>&1 &
    RSPAMD_PID=$!
    smtpd_track "$RSPAMD_PID"
}

rspamd_wait() {
    local i
    i=0
    while [ -z "$(ss -Hltn "sport = :$2" 2>/dev/null)" ]; do
        kill -0 "$RSPAMD_PID" 2>/dev/null || return 1
        i=$((i + 1))
        [ $i -lt $(($3 * 10)) ] || return 1
        sleep 0.1
    done
    return 0
}
