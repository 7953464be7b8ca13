# lib.sh - what the bench scripts share (sourced, not run)
#
# Sourced by scripts/bench/* as . "$top/scripts/bench/lib.sh". Messages
# name the bench by its script, "bench/NAME: ...". Times are wall-clock
# seconds from date(1), CPU times clock ticks from /proc. Every wait is
# bounded; nothing here exits but die. sink_mesg_start needs
# tests/integration/smtpd_lib.sh (smtpd_track, wait_listen) sourced first.
#
#   die MESSAGE...          print "bench/NAME: MESSAGE" on stderr, exit 1
#   warn MESSAGE...         the same, without exiting
#   rss_kb PID [FIELD]      print FIELD (VmRSS, or VmHWM...) of PID in kB;
#                           nothing on stdout if PID is gone
#   tree_ticks PID...       print the CPU time (utime + stime, with that
#                           of reaped children) of the processes and all
#                           their descendants, in clock ticks; 0 if none
#   cpu_ms BEFORE AFTER COUNT [DECIMALS]  print the ticks from BEFORE to
#                           AFTER as CPU milliseconds per message (3
#                           decimals)
#   sink_mesg_start PORT FILE  smtp-sink -c on 127.0.0.1:PORT (as nobody,
#                           backlog 1024), its counters to FILE; returns 1
#                           if it does not listen
#   sink_mesg FILE          print how many messages that sink has taken
#                           (its last mesg= counter); 0 before the first
#   sink_mesg_wait FILE N SECONDS [POLL_MS]  wait until the sink has taken
#                           N, looking every POLL_MS (50) ms; returns 1
#                           after about SECONDS (a whole number)
#   timed_run FILE COUNT SECONDS POLL_MS CLIENT...  run CLIENT... (its exit
#                           status is ignored), then sink_mesg_wait for
#                           COUNT more messages; print "SECONDS GOT": the
#                           time from the start of CLIENT (3 decimals) and
#                           the messages that arrived, which may be fewer
#   run_rate COUNT DECIMALS CLIENT...  run CLIENT... (its standard output
#                           to stderr); print COUNT / the seconds it took,
#                           DECIMALS decimals; returns CLIENT's status
#   median                  print the median of the numbers on stdin, one
#                           a line, as awk prints a number (0.15 for
#                           0.150); nothing if there are none
#   ratio A B [DECIMALS [ELSE]]  print A / B (2 decimals), or ELSE (n/a)
#                           when B is not above 0
#   at_least A X B          print 1 if B is above 0 and A / B >= X, else 0
#   verdict OK              print PASS if OK is 1, else MISS
#   target TEXT FIGURE OK [WIDTH]  print a target line: TEXT, FIGURE
#                           right-aligned in WIDTH (9) columns, verdict OK

# shellcheck shell=sh
# shellcheck disable=SC3043 # "local": dash and bash have it, as smtpd_lib.sh

BENCH_HZ=$(getconf CLK_TCK)

die() {
    warn "$@"
    exit 1
}

warn() {
    echo "bench/${0##*/}: $*" >&2
}

rss_kb() {
    sed -n "s/^${2:-VmRSS}:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"
}

# A process whose stat line is gone by the time cat reads it is left out;
# the walk up stops at init or after 64 parents.
tree_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v roots="$*" '
        BEGIN {
            n = split(roots, r, " ")
            for (i = 1; i <= n; i++)
                root[r[i]] = 1
        }
        {
            pid = $1
            sub(/^.*\) /, "")
            ppid[pid] = $2
            t[pid] = $12 + $13 + $14 + $15
        }
        END {
            for (p in t) {
                q = p
                for (k = 0; q + 0 > 1 && k < 64; k++) {
                    if (q in root) {
                        total += t[p]
                        break
                    }
                    q = (q in ppid) ? ppid[q] : 0
                }
            }
            print total + 0
        }'
}

cpu_ms() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$BENCH_HZ" -v d="${4:-3}" \
        'BEGIN { printf "%." d "f", (b - a) * 1000 / hz / n }'
}

sink_mesg_start() {
    smtp-sink -u nobody -4 -c "127.0.0.1:$1" 1024 >"$2" 2>&1 &
    smtpd_track $!
    wait_listen "$1"
}

# smtp-sink -c rewrites one line with \r: "sess=3 quit=3 mesg=3\r...".
sink_mesg() {
    tail -c 200 "$1" | awk 'BEGIN { RS = "\r" }
        /mesg=/ { sub(/.*mesg=/, ""); n = $0 + 0 } END { print n + 0 }'
}

# Returns as soon as the count is seen: the caller's clock stops right
# after, so the poll adds at most POLL_MS to a timed run.
sink_mesg_wait() {
    local poll i lim pause
    poll=${4:-50}
    i=0
    lim=$(($3 * 1000 / poll))
    pause=$((poll / 1000)).$((poll % 1000 / 100))$((poll % 100 / 10))
    pause=$pause$((poll % 10))
    while [ "$(sink_mesg "$1")" -lt "$2" ]; do
        [ $i -lt $lim ] || return 1
        sleep "$pause"
        i=$((i + 1))
    done
}

timed_run() {
    local sink cnt secs poll base t0 t1
    sink=$1 cnt=$2 secs=$3 poll=$4
    shift 4
    base=$(sink_mesg "$sink")
    t0=$(date +%s.%N)
    "$@" || :
    sink_mesg_wait "$sink" $((base + cnt)) "$secs" "$poll" || :
    t1=$(date +%s.%N)
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        $(($(sink_mesg "$sink") - base))
}

run_rate() {
    local cnt dec t0 t1 rc
    cnt=$1 dec=$2
    shift 2
    rc=0
    t0=$(date +%s.%N)
    "$@" >&2 || rc=$?
    t1=$(date +%s.%N)
    awk -v n="$cnt" -v a="$t0" -v b="$t1" -v d="$dec" \
        'BEGIN { printf "%." d "f", n / (b - a) }'
    return $rc
}

median() {
    sort -n | awk '{ v[NR] = $1 + 0 }
        END {
            if (NR)
                print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

ratio() {
    awk -v a="$1" -v b="$2" -v d="${3:-2}" -v e="${4:-n/a}" 'BEGIN {
        if (b + 0 > 0) printf "%." d "f", a / b; else printf "%s", e }'
}

at_least() {
    awk -v a="$1" -v x="$2" -v b="$3" \
        'BEGIN { print (b + 0 > 0 && a / b >= x + 0) ? 1 : 0 }'
}

verdict() {
    if [ "$1" = 1 ]; then echo PASS; else echo MISS; fi
}

# The width is part of the format: printf(1) need not know "%*s".
# shellcheck disable=SC2059
target() {
    printf "  %-50s %${4:-9}s  %s\n" "$1" "$2" "$(verdict "$3")"
}
