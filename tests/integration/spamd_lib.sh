# spamd_lib.sh - a private spamd for the antispam tests (sourced, after
# smtpd_lib.sh or milter_lib.sh)
#
#   spamd_require           exit 1 unless spamd and the packaged rules
#                           (GTUBE) are there
#   spamd_start PORT [ARG...]  spamd on 127.0.0.1:PORT as nobody, its site
#                           configuration in $T/sa (the package's .pre
#                           files, no Bayes, no DNS, no network tests),
#                           the rules of /usr/share/spamassassin, its log
#                           in $T/spamd.log; sets SA_PID; fails the test
#                           and finishes when it does not listen in 60 s

spamd_require() {
    if ! command -v spamd >/dev/null 2>&1; then
        echo "$0: spamd is missing (scripts/setup installs spamd and spamassassin)" >&2
        exit 1
    fi
    if ! grep -q '^body GTUBE' /usr/share/spamassassin/20_body_tests.cf 2>/dev/null; then
        echo "$0: the packaged SpamAssassin rules (GTUBE) are missing" >&2
        exit 1
    fi
}

spamd_start() {
    local p i
    p=$1
    shift
    mkdir -p "$T/sa"
    cp /etc/spamassassin/*.pre "$T/sa/"
    cat >"$T/sa/local.cf" <<'EOF'
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
dns_available no
EOF
    chmod -R a+rX "$T/sa"
    spamd -x -u nobody --listen="127.0.0.1:$p" --allowed-ips=127.0.0.1 \
        --siteconfigpath="$T/sa" --syslog=stderr --pidfile="$T/spamd.pid" \
        -m 2 "$@" >"$T/spamd.log" 2>&1 &
    SA_PID=$!
    smtpd_track "$SA_PID"
    i=0
    while [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && [ $i -lt 600 ]; do
        kill -0 "$SA_PID" 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
        fail "spamd did not start: $(tail -n 5 "$T/spamd.log")"
        finish
    fi
}
