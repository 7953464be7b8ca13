#!/bin/sh
# track - a tracked message through relaychaind with the shipped chain
#
# The chain is chain.d/ of the source tree as an admin installs it, with
# 60-track.conf.example and 90-dkim.conf.example enabled as their
# comments say (a key for the tokens, a DKIM key made by "relaychain dkim
# keygen"). Through relaychaind's SMTP front end (delivery = through, to
# smtp-sink):
#   news     a ~5 KB HTML newsletter (quoted-printable, 24 links) from a
#            sender the shipped streams table calls bulk: every link
#            becomes a /c/ token that track_check.py (Python, not our C)
#            verifies under the key and reads back to the original URL,
#            index and count; one pixel before </body>; List-Unsubscribe
#            with a /u/ token for the recipient and the mailto, and
#            List-Unsubscribe-Post; our DKIM signature (after the track
#            stage) verifies with dkimpy;
#   signed   an S/MIME-signed message (openssl smime) from the same
#            sender: no link rewritten, no pixel, the S/MIME signature
#            still verifies, the log says why it was skipped;
#   other    a sender the table says no for: links as they were.
# Then delivery = queue with per_recipient = yes and an events store:
# one message to two recipients arrives as two copies, each with tokens
# naming its own recipient and a DKIM signature that verifies.
# relaychaind's HTTP listener (http_listen with track_key_file, asked
# with curl) answers bob's pixel with a GIF and an opened event, a
# link with a 302 to its original URL and a clicked event, a forged
# token with 404 and no Location, and his one-click POST with an
# unsubscribed event: the next message to bob is refused at RCPT (550
# 5.7.1 recipient suppressed), and "relaychain report" counts the open,
# the click (a machine's: it comes within seconds of the message) and
# the unsubscribe. /metrics (promtool-clean) moves each tracking counter
# by exactly one a request: human opens, machine clicks, forged tokens,
# unsubscribes. And the chain refuses a track stage after DKIM.
. "$top_srcdir/tests/integration/smtpd_lib.sh"

here=$top_srcdir/tests/integration
if ! $PY -c 'import dkim' 2>/dev/null; then
    fail "python3-dkim is needed (scripts/setup installs it)"
    finish
fi

set -- $(free_ports 5)
port=$1 sink_port=$2 qport=$3 qsink_port=$4 hport=$5
mkdir -p "$T/in" "$T/out"

# The shipped chain, with the track and dkim examples enabled.
cp -R "$top_srcdir/chain.d" "$T/chain.d"
mkdir -p "$T/chain.d/dkim"
"$RC" dkim keygen -d example.com -s mail2026 -D "$T/chain.d/dkim" \
    >/dev/null 2>"$T/keygen.err" || fail "keygen: $(cat "$T/keygen.err")"
cp "$T/chain.d/90-dkim.conf.example" "$T/chain.d/90-dkim.conf"
OURS=$T/chain.d/dkim/mail2026.txt
# No database watcher thread (see dkim_arrived.sh).
echo "database_check_interval = 0" >>"$T/chain.d/20-antivirus.conf"
head -c 32 /dev/urandom >"$T/track.key"
chmod 600 "$T/track.key"
sed -e 's|^track_host = .*|track_host = t.test.example|' \
    -e "s|^key_file = .*|key_file = $T/track.key|" \
    -e 's|^#unsubscribe_mailto = .*|unsubscribe_mailto = unsubscribe@example.com|' \
    "$T/chain.d/60-track.conf.example" >"$T/chain.d/60-track.conf"
cp "$T/chain.d/track/streams.pcre.example" "$T/chain.d/track/streams.pcre"

# The messages.
"$PY" "$here/track_check.py" mkmail "$T/in/news.eml"
check "the newsletter is about 5 KB" \
    test "$(wc -c <"$T/in/news.eml")" -gt 5000
sed -e 's/newsletter@example.com/carol@example.com/' "$T/in/news.eml" \
    >"$T/in/other.eml"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/smime.key" \
    -out "$T/smime.crt" -days 2 -subj "/CN=newsletter@example.com" \
    >/dev/null 2>&1 || fail "openssl req failed"
printf 'Content-Type: text/html; charset=utf-8\n\n<html><body><a href="https://example.com/signed">x</a></body></html>\n' \
    >"$T/in/signed.part"
{
    printf 'From: newsletter@example.com\nTo: bob@example.net\nSubject: signed\n'
    openssl smime -sign -in "$T/in/signed.part" -signer "$T/smime.crt" \
        -inkey "$T/smime.key" 2>"$T/smime.err" | tr -d '\r'
} >"$T/in/signed.eml"
check "the S/MIME message verifies before it is sent" \
    sh -c "openssl smime -verify -noverify -in '$T/in/signed.eml' -out /dev/null 2>/dev/null"

printf 'chain_directory = %s\n' "$T/chain.d" |
    rcd_conf "$T/rc.conf" "$port" "smtp:[127.0.0.1]:$sink_port"
"$RC" check -c "$T/rc.conf" >"$T/check.out" 2>&1 ||
    fail "the shipped chain with track does not load: $(tail -n 3 "$T/check.out")"
sink_start sink "$sink_port"
rcd_start rcd "$T/rc.conf" "$port" || finish

# deliver NAME SENDER - the sink's file becomes $T/out/NAME.eml
deliver() {
    if ! timeout 60 "$PY" "$here/smtp_send.py" "$port" "$T/in/$1.eml" "$2" \
        bob@example.net >"$T/send.err" 2>&1; then
        fail "$1: the client failed: $(tail -n 1 "$T/send.err")"
        return
    fi
    if ! sink_wait sink 1 20; then
        fail "$1: nothing reached the sink"
        return
    fi
    mv "$(sink_files sink | head -n 1)" "$T/out/$1.eml"
}
deliver news newsletter@example.com
deliver signed newsletter@example.com
deliver other carol@example.com

check "news: links rewritten to tokens that verify, one pixel, List-Unsubscribe" \
    sh -c "'$PY' '$here/track_check.py' verify '$T/track.key' t.test.example '$T/in/news.eml' '$T/out/news.eml' bob@example.net >'$T/v-news' 2>&1"
check "news: the mailto entry is in List-Unsubscribe" \
    grep -q 'mailto:unsubscribe@example.com?subject=unsubscribe' "$T/out/news.eml"
check "news: our DKIM signature, made after the track stage, verifies" \
    sh -c "'$PY' '$here/dkim_verify.py' '$OURS' -- '$T/out/news.eml' >'$T/v-dkim' 2>&1"
check "signed: no link rewritten, no pixel" \
    sh -c "! grep -q 'https://t.test.example/' '$T/out/signed.eml'"
check "signed: the S/MIME signature still verifies" \
    sh -c "openssl smime -verify -noverify -in '$T/out/signed.eml' -out /dev/null 2>'$T/v-smime'"
check "other: links as they were" \
    sh -c "! grep -q 'https://t.test.example/' '$T/out/other.eml' && grep -q 'shop.example.com/item/3' '$T/out/other.eml'"
log=$T/rcd.log
check "log: tracked, with the counts" \
    grep -q ': track: continue, tracked (links=24, pixel=yes, tokens per recipient, list-unsubscribe)' "$log"
check "log: signed mail skipped, saying why" \
    grep -q ': track: continue, skipped (signed (multipart/signed))' "$log"
check "log: a sender the table says no for" \
    grep -q ': track: continue, skipped (track_map line 10 says no)' "$log"
rcd_stop rcd

# delivery = queue, per_recipient: one copy per recipient.
mkdir -p "$T/q"
cp -R "$T/chain.d" "$T/q/chain.d"
echo "per_recipient = yes" >>"$T/q/chain.d/60-track.conf"
sink_start qsink "$qsink_port"
printf 'chain_directory = %s\ndelivery = queue\nqueue_directory = %s\nevents_store = sqlite:%s\nevents_batch_time = 50ms\nhttp_listen = 127.0.0.1:%s\ntrack_key_file = %s\n' \
    "$T/q/chain.d" "$T/q/spool" "$T/q/events.db" "$hport" "$T/track.key" |
    rcd_conf "$T/q.conf" "$qport" "smtp:[127.0.0.1]:$qsink_port"
rcd_start q "$T/q.conf" "$qport" || finish
printf '%s\n' 'import smtplib, sys' \
    'raw = open(sys.argv[2], "rb").read().replace(b"\n", b"\r\n")' \
    'with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:' \
    '    s.sendmail("newsletter@example.com", ["bob@example.net", "carol@example.net"], raw)' \
    >"$T/send2.py"
timeout 60 "$PY" "$T/send2.py" "$qport" "$T/in/news.eml" >"$T/qsend.err" 2>&1 ||
    fail "queue: the client failed: $(tail -n 1 "$T/qsend.err")"
sink_wait qsink 2 30 ||
    fail "queue: $(sink_count qsink) copies reached the sink, want 2"
for r in bob@example.net carol@example.net; do
    f=$(grep -l "^X-Rcpt-Args: <$r>" "$T"/qsink/msg.* 2>/dev/null | head -n 1)
    if [ -z "$f" ]; then
        fail "queue: no copy for $r"
        continue
    fi
    check "queue: $r's copy has tokens naming $r alone" \
        sh -c "'$PY' '$here/track_check.py' verify '$T/track.key' t.test.example '$T/in/news.eml' '$f' '$r' >'$T/v-q-$r' 2>&1"
    check "queue: $r's copy has our DKIM signature, which verifies" \
        sh -c "'$PY' '$here/dkim_verify.py' '$OURS' -- '$f' >>'$T/v-dkim' 2>&1"
done

# The listener over bob's copy's tokens, and what it records.
bobs=$(grep -l "^X-Rcpt-Args: <bob@example.net>" "$T"/qsink/msg.* 2>/dev/null | head -n 1)
tokens() { # KIND FILE - every token of KIND in FILE, decoded as a reader would
    "$PY" - "$1" "$2" <<'PY'
import email, email.policy, re, sys
msg = email.message_from_binary_file(open(sys.argv[2], "rb"), policy=email.policy.default)
text = str(msg.get("List-Unsubscribe", ""))
for part in msg.walk():
    if part.get_content_type() == "text/html":
        text += part.get_content()
for t in re.findall(r"https://t\.test\.example/%s/([A-Za-z0-9_-]+)" % sys.argv[1], text):
    print(t)
PY
}
probe() { # NAME METHOD PATH [BODY] - "STATUS LOCATION|-", then the body
    name=$1 method=$2 path=$3
    if [ "$method" = POST ]; then
        set -- --data "$4"
    else
        set --
    fi
    curl -sS --max-time 30 -o "$T/probe-$name.body" \
        -w '%{http_code} %{redirect_url}\n' -X "$method" "$@" \
        "http://127.0.0.1:$hport$path" 2>&1 | sed 's/ $/ -/' >"$T/probe-$name.out"
    cat "$T/probe-$name.body" >>"$T/probe-$name.out" 2>/dev/null
}
# scrape NAME - /metrics into $T/NAME.prom; moved NAME0 NAME1 SERIES -
# by how much SERIES went up between two scrapes ("missing" if absent)
scrape() {
    timeout 10 curl -sS -o "$T/$1.prom" "http://127.0.0.1:$hport/metrics" \
        >/dev/null 2>&1 || : >"$T/$1.prom"
}
moved() {
    awk -v s="$3" 'FNR == 1 { f++ } $1 == s { v[f] = $2; n[f] = 1 }
        END { if (n[1] && n[2]) print v[2] - v[1]; else print "missing" }' \
        "$T/$1.prom" "$T/$2.prom"
}
if [ -n "$bobs" ]; then
    scrape m0
    check "metrics: promtool check metrics passes with the tracking counters ($(promtool check metrics <"$T/m0.prom" 2>&1 | head -n 2))" \
        sh -c "grep -q '^relaychain_track_forged_tokens_total 0$' '$T/m0.prom' && promtool check metrics <'$T/m0.prom' >/dev/null 2>&1"
    o=$(tokens o "$bobs" | head -n 1)
    c=$(tokens c "$bobs" | sed -n 3p)
    u=$(tokens u "$bobs" | head -n 1)
    probe open GET "/o/$o.gif"
    check "the pixel: 200, a GIF" \
        sh -c "head -n 1 '$T/probe-open.out' | grep -q '^200 -' && grep -aq '^GIF89a' '$T/probe-open.out'"
    scrape m1
    check "metrics: the pixel moves human opens by one (got $(moved m0 m1 'relaychain_track_opens_total{by="human"}'))" \
        [ "$(moved m0 m1 'relaychain_track_opens_total{by="human"}')" = 1 ]
    check "metrics: and machine opens by none" \
        [ "$(moved m0 m1 'relaychain_track_opens_total{by="machine"}')" = 0 ]
    probe click GET "/c/$c"
    check "a link: 302 to its original URL" \
        grep -q '^302 https://shop.example.com/item/2?utm_source=news&id=2$' "$T/probe-click.out"
    forged=$(printf '%s' "$c" | sed 's/.$/A/; t; s/$//')
    [ "$forged" = "$c" ] && forged=$(printf '%s' "$c" | sed 's/.$/B/')
    scrape m2
    check "metrics: the click (a scanner's, within seconds) moves machine clicks by one (got $(moved m1 m2 'relaychain_track_clicks_total{by="machine"}'))" \
        [ "$(moved m1 m2 'relaychain_track_clicks_total{by="machine"}')" = 1 ]
    check "metrics: and human clicks by none" \
        [ "$(moved m1 m2 'relaychain_track_clicks_total{by="human"}')" = 0 ]
    probe forged GET "/c/$forged"
    check "a forged token: 404, no Location" \
        grep -q '^404 -$' "$T/probe-forged.out"
    scrape m3
    check "metrics: the forged token moves forged tokens by one (got $(moved m2 m3 relaychain_track_forged_tokens_total))" \
        [ "$(moved m2 m3 relaychain_track_forged_tokens_total)" = 1 ]
    probe page GET "/u/$u"
    check "unsubscribe GET: a page with a POST form for bob" \
        sh -c "grep -q '<form method=\"post\"' '$T/probe-page.out' && grep -q 'bob@example.net' '$T/probe-page.out'"
    probe unsub POST "/u/$u" "List-Unsubscribe=One-Click"
    check "unsubscribe POST: 200" grep -q '^200 -' "$T/probe-unsub.out"
    scrape m4
    check "metrics: the POST moves unsubscribes by one, the page by none (got $(moved m3 m4 relaychain_track_unsubscribes_total))" \
        [ "$(moved m3 m4 relaychain_track_unsubscribes_total)" = 1 ]
    timeout 60 swaks --server "127.0.0.1:$qport" --helo client.test.example \
        --from newsletter@example.com --to bob@example.net \
        --data "$T/in/news.eml" >"$T/resend.out" 2>&1
    check "the next message to bob is refused at RCPT" \
        grep -q '550 5.7.1 recipient suppressed (unsubscribe, ' "$T/resend.out"
    "$RC" report -c "$T/q.conf" --json >"$T/report.json" 2>&1
    # The click came within click_window (10 s) of the stage's run, as a
    # link scanner's does: a machine click.
    check "report: a person's open, a machine's click, one unsubscribe" \
        grep -q '"opened_human": 1, "opened_machine": 0, "clicked_human": 0, "clicked_machine": 1, "unsubscribed": 1' "$T/report.json"
else
    fail "queue: no copy for bob to take tokens from"
fi
rcd_stop q

# The order check: a track stage after DKIM does not load.
cp "$T/chain.d/60-track.conf" "$T/chain.d/95-track.conf"
check "a track stage after dkim is refused" \
    sh -c "! '$RC' check -c '$T/rc.conf' >'$T/order.out' 2>&1"
check "the refusal names both files" \
    sh -c "grep -q '95-track.conf' '$T/order.out' && grep -q '90-dkim.conf' '$T/order.out'"

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    echo "--- relaychaind log"
    tail -n 40 "$log" "$T/q.log"
    cat "$T"/v-* "$T/order.out" "$T"/probe-*.out "$T/report.json" 2>/dev/null
fi
finish
