#!/bin/sh
# http_dashboard - /dashboard and /api/report behind basic auth or a
# bearer token, and the page in a real headless Chromium
#
# relaychaind with delivery = queue, events_store (SQLite) and
# http_password_file (made by relaychain passwd) and http_token_file;
# three messages to two domains reach an smtp-sink. Then:
#
#   - /api/report?by=domain answers exactly what "relaychain report
#     --json --by domain" prints (one query, one writer);
#   - no credentials, a wrong password, a wrong token: 401 with
#     WWW-Authenticate, and the failure logged; the right token works;
#   - ?by=bogus and ?hours=x: 400; /api/report does not take POST (405);
#   - eleven failed logins from one client: the next one fails even with
#     the right password, and the log says the rate was exceeded;
#   - Chromium (--headless, every host name but 127.0.0.1 unresolvable)
#     loads /dashboard with the user's credentials: the script ran to
#     its end without an error and drew bars (SVG rect) from the report,
#     and the daemon's log shows the page's own requests (/metrics,
#     /api/report) and no other.
#
# The tracking charts get their data through the real handlers
# (track_key_file): tokens made under the key by a few lines of Python
# (util/track_token.h's wire form) are fetched with curl: a person's
# open, a person's click (a token made an hour ago), a machine's click
# (made now: inside track_click_window) and a one-click unsubscribe.
# Then the sink is stopped and one more message, to three.example, is
# deferred. Chromium must draw each of those as a bar of its value: the
# opens and clicks per day, the same per stream, the deferral of
# three.example, and the bounce and complaint rate series per stream
# (both 0 here: no mail bounced and no complaint came back); the "Now"
# table shows the tracking counters of /metrics. /api/queue-history has
# the sample taken at start (0) and the count at the request (1: the
# deferred message), and Chromium draws that as the queue chart's "now".
. "$top_srcdir/tests/integration/smtpd_lib.sh"

for prog in curl chromium; do
    command -v "$prog" >/dev/null 2>&1 ||
        fail "$prog is missing (scripts/setup installs it)"
done
[ "$failures" -gt 0 ] && finish

set -- $(free_ports 3)
port=$1 sink_port=$2 hport=$3
printf '%s\n' 'secret horse battery' |
    "$RC" passwd "$T/http.passwd" admin >"$T/passwd.out" 2>&1 ||
    fail "relaychain passwd: $(cat "$T/passwd.out")"
echo "tok-0123456789abcdefXYZ" >"$T/http.token"
sink_start sink "$sink_port"
sinkpid=${SMTPD_PIDS##* } # ---- track: stopped for the deferral below
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF2
delivery = queue
queue_directory = $T/spool
events_store = sqlite:$T/events.db
http_listen = 127.0.0.1:$hport
http_password_file = $T/http.passwd
http_token_file = $T/http.token
track_key_file = $T/track.key
EOF2
head -c 32 /dev/urandom >"$T/track.key" # ---- track
chmod 600 "$T/track.key"
rcd_start r "$T/r.conf" "$port" || finish
for to in a@one.example b@one.example c@two.example; do
    timeout 30 swaks --server 127.0.0.1 --port "$port" --from s@example.org \
        --to "$to" --timeout 20 >"$T/send.out" 2>&1 ||
        fail "sending to $to: $(tail -3 "$T/send.out")"
done
check "the sink got 3" sink_wait sink 3 10
# the events writer batches: wait (bounded) until the report has all 3
i=0
while [ $i -lt 50 ]; do
    "$RC" report -c "$T/r.conf" --json --by domain >"$T/cli.json" 2>&1
    [ "$(grep -o '"delivered": [0-9]*' "$T/cli.json" |
        awk '{s += $2} END {print s + 0}')" -eq 3 ] && break
    sleep 0.2
    i=$((i + 1))
done
check "relaychain report sees 3 delivered" \
    grep -q '"key": "one.example", "received": 2, "delivered": 2' "$T/cli.json"


# get NAME URL [CURL OPTIONS] - body in $T/NAME, headers in $T/NAME.hdr,
# status printed
get() {
    name=$1 url=$2
    shift 2
    timeout 10 curl -sS -D "$T/$name.hdr" -o "$T/$name" -w '%{http_code}' \
        "$@" "http://127.0.0.1:$hport$url" 2>"$T/$name.err"
}

# ---- 1. the report, the same octets as the CLI's
c=$(get report '/api/report?by=domain' -u 'admin:secret horse battery')
check "/api/report with the password: 200 (got $c)" [ "$c" = 200 ]
check "/api/report is the CLI's report, octet for octet" \
    cmp -s "$T/report" "$T/cli.json"
check "/api/report is JSON" grep -qi '^Content-Type: application/json' "$T/report.hdr"
check "the access line names the user" \
    grep -q "path=/api/report, status=200, .*user=admin" "$T/r.log"

# ---- track: events through the tracking handlers, and one deferral
# mktok KIND AGE RCPT - a token of KIND made AGE seconds ago for RCPT
mktok() {
    /usr/bin/python3 - "$T/track.key" "$@" <<'PY'
import base64, hashlib, hmac, struct, sys, time
key = open(sys.argv[1], "rb").read()
kind, age, rcpt = sys.argv[2], int(sys.argv[3]), sys.argv[4]
body = struct.pack(">BBIHH", 1, ord(kind), int(time.time()) - age, 0,
                   1 if kind == "c" else 0)
for f in ("D45HB0ARD0001", "<dash.1@example.org>", "s@example.org", rcpt,
          "https://shop.example.com/item/1" if kind == "c" else ""):
    body += struct.pack(">H", len(f)) + f.encode()
raw = body + hmac.new(key, body, hashlib.sha256).digest()[:16]
print(base64.urlsafe_b64encode(raw).decode().rstrip("="))
PY
}
tc() { # METHOD PATH - the status of the tracking request
    timeout 10 curl -sS -o /dev/null -w '%{http_code}' -X "$1" \
        "http://127.0.0.1:$hport$2" 2>&1
}
c=$(tc GET "/o/$(mktok o 0 a@one.example).gif")
check "the pixel: 200 (got $c)" [ "$c" = 200 ]
c=$(tc GET "/c/$(mktok c 3600 a@one.example)")
check "a person's click: 302 (got $c)" [ "$c" = 302 ]
c=$(tc GET "/c/$(mktok c 0 b@one.example)")
check "a machine's click: 302 (got $c)" [ "$c" = 302 ]
c=$(timeout 10 curl -sS -o /dev/null -w '%{http_code}' \
    --data 'List-Unsubscribe=One-Click' \
    "http://127.0.0.1:$hport/u/$(mktok u 0 c@two.example)" 2>&1)
check "a one-click unsubscribe: 200 (got $c)" [ "$c" = 200 ]
kill "$sinkpid" 2>/dev/null
i=0
while [ $i -lt 50 ] && [ -n "$(ss -Hltn "sport = :$sink_port" 2>/dev/null)" ]; do
    sleep 0.1
    i=$((i + 1))
done
timeout 30 swaks --server 127.0.0.1 --port "$port" --from s@example.org \
    --to d@three.example --timeout 20 >"$T/send.out" 2>&1 ||
    fail "sending to d@three.example: $(tail -3 "$T/send.out")"
i=0
while [ $i -lt 100 ]; do
    "$RC" report -c "$T/r.conf" --json --by domain >"$T/cli2.json" 2>&1
    grep -q '"key": "three.example", "received": 1, "delivered": 0, "deferred": [1-9]' \
        "$T/cli2.json" &&
        grep -q '"unsubscribed": 1' "$T/cli2.json" && break
    sleep 0.2
    i=$((i + 1))
done
check "report: three.example deferred" \
    grep -q '"key": "three.example", "received": 1, "delivered": 0, "deferred": [1-9]' "$T/cli2.json"
"$RC" report -c "$T/r.conf" --json >"$T/cli-all.json" 2>&1
check "report: one open and one click by people, one click by a machine, one unsubscribe" \
    grep -q '"opened_human": 1, "opened_machine": 0, "clicked_human": 1, "clicked_machine": 1, "unsubscribed": 1' "$T/cli-all.json"
# ---- end track
# ---- queue history: the sample at start (empty) and the deferred
# message, counted at the request
c=$(get qh /api/queue-history -u 'admin:secret horse battery')
check "/api/queue-history: 200 (got $c)" [ "$c" = 200 ]
check "/api/queue-history: the sample at start and the count now ($(tr -d '\n' <"$T/qh"))" \
    /usr/bin/python3 -c 'import json, sys
q = json.load(open(sys.argv[1]))
assert len(q) == 2 and q[0]["messages"] == 0 and "now" not in q[0], q
assert q[1] == dict(t=q[1]["t"], messages=1, now=True), q
assert q[0]["t"] <= q[1]["t"], q' "$T/qh"
c=$(get qhnone /api/queue-history)
check "/api/queue-history without credentials: 401 (got $c)" [ "$c" = 401 ]
# ---- end queue history

# ---- 2. credentials
c=$(get none /api/report)
check "no credentials: 401 (got $c)" [ "$c" = 401 ]
check "401 asks for basic auth" grep -qi '^WWW-Authenticate: Basic realm="relaychain"' "$T/none.hdr"
c=$(get wrong /dashboard -u 'admin:wrong')
check "a wrong password: 401 (got $c)" [ "$c" = 401 ]
check "the failure is logged with the user" \
    grep -q "http: client=127.0.0.1: authentication failed for user=admin" "$T/r.log"
c=$(get tok '/api/report?by=day' -H 'Authorization: Bearer tok-0123456789abcdefXYZ')
check "the bearer token: 200 (got $c)" [ "$c" = 200 ]
c=$(get badtok /api/report -H 'Authorization: Bearer tok-0123456789abcdefXYY')
check "a wrong token: 401 (got $c)" [ "$c" = 401 ]
c=$(get bogus '/api/report?by=bogus' -u 'admin:secret horse battery')
check "?by=bogus: 400 (got $c)" [ "$c" = 400 ]
c=$(get hours '/api/report?hours=x' -u 'admin:secret horse battery')
check "?hours=x: 400 (got $c)" [ "$c" = 400 ]
c=$(get post /api/report -u 'admin:secret horse battery' -d x)
check "POST /api/report: 405 (got $c)" [ "$c" = 405 ]
c=$(get page /dashboard -u 'admin:secret horse battery')
check "/dashboard with the password: 200 (got $c)" [ "$c" = 200 ]
check "the page loads nothing from elsewhere (no src or href)" \
    sh -c "! grep -qi -e 'src=' -e 'href=' '$T/page'"

# ---- 3. Chromium draws the page
timeout 90 chromium --headless=new --no-sandbox --disable-gpu \
    --user-data-dir="$T/chromium" \
    --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
    --virtual-time-budget=8000 --dump-dom \
    "http://admin:secret%20horse%20battery@127.0.0.1:$hport/dashboard" \
    >"$T/dom.html" 2>"$T/chromium.err"
check "Chromium: the script ran to its end" grep -q 'data-ready="1"' "$T/dom.html"
check "Chromium: the status line says updated, no error" \
    grep -q '<div id="status" class="note">updated ' "$T/dom.html"
n=$(grep -o '<rect ' "$T/dom.html" | wc -l)
check "Chromium: bars drawn from the report (got $n rect)" [ "$n" -ge 3 ]
check "Chromium: the throughput chart has the 4 received (3 and the deferred)" \
    grep -q 'data-series="received" data-value="4"' "$T/dom.html"
# ---- track: the tracking, rate and deferral charts, with their values
for sv in 'opens, people" data-value="1' 'opens, machines" data-value="0' \
    'clicks, people" data-value="1' 'clicks, machines" data-value="1' \
    'unsubscribes" data-value="1' 'stream opens, people" data-value="1' \
    'stream clicks, machines" data-value="1' \
    'stream unsubscribes" data-value="1' 'deferred" data-value="1' \
    'bounce %" data-value="0' 'complaint %" data-value="0'; do
    check "Chromium: a bar data-series=\"$sv\"" \
        grep -qF "data-series=\"$sv\"" "$T/dom.html"
done
check "Chromium: the deferrals chart names three.example" \
    sh -c "sed -n '/id=\"domains\"/,/id=\"streams\"/p' '$T/dom.html' | grep -q '>three.example<'"
check "Chromium: the queue chart's last bar is now, with the deferred message" \
    sh -c "grep -qF 'data-series=\"queued\" data-value=\"1\"' '$T/dom.html' && sed -n '/id=\"queue\"/,/id=\"hours\"/p' '$T/dom.html' | grep -q '>now<'"
check "Chromium: the Now table shows the forged-token counter (0)" \
    grep -q '<td>forged tracking tokens</td><td>0</td>' "$T/dom.html"
# ---- end track
check "Chromium fetched /api/report as admin" \
    grep -q "path=/api/report, status=200, .*user=admin" "$T/r.log"
check "Chromium fetched /metrics" \
    grep -q "method=GET, path=/metrics, status=200" "$T/r.log"
check "the listener was asked for the page's own paths only" \
    sh -c "! grep 'http: client=.*, path=' '$T/r.log' | grep -v \
        -e 'path=/api/report,' -e 'path=/dashboard,' -e 'path=/metrics,' \
        -e 'path=/api/queue-history,' \
        -e 'path=/[ocu]/[A-Za-z0-9_-]*\(.gif\)\?, status=\(200\|302\), ' \
        -e 'path=/favicon.ico, status=404' | grep -q ."

# ---- 4. the failure rate: 11 wrong, then the right one fails too
i=0
while [ $i -lt 11 ]; do
    get rate /api/report -u 'admin:nope' >/dev/null
    i=$((i + 1))
done
c=$(get rate /api/report -u 'admin:secret horse battery')
check "past 10 failures a minute the right password fails too (got $c)" [ "$c" = 401 ]
check "the rate is logged" \
    grep -q "http: client=127.0.0.1: authentication failure rate limit exceeded" "$T/r.log"
rcd_stop r

# ---- 5. configuration errors
echo short >"$T/short.token"
{
    echo "chain_directory = $T/chain.d"
    echo "http_listen = 127.0.0.1:$hport"
    echo "http_token_file = $T/short.token"
} >"$T/bad.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
check "a short token is refused with file:line ($(head -1 "$T/bad.out"))" \
    grep -q "bad.conf:3: http_token_file: .*want one token of 16" "$T/bad.out"
echo "admin" >"$T/bad.passwd"
chmod 600 "$T/bad.passwd"
{
    echo "chain_directory = $T/chain.d"
    echo "http_listen = 127.0.0.1:$hport"
    echo "http_password_file = $T/bad.passwd"
} >"$T/bad.conf"
"$RC" check -c "$T/bad.conf" >"$T/bad.out" 2>&1
check "a bad password file is refused with file:line ($(head -1 "$T/bad.out"))" \
    grep -q "bad.conf:3: http_password_file: .*bad.passwd:1" "$T/bad.out"
finish
