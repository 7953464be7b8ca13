#!/bin/sh
# smtpd_smuggle - what a hostile or broken client sends, byte for byte
#
# A scripted client (smtpchat.py) talks to three relaychaind instances
# relaying to smtp-sink; a smuggled message would show up as a second
# transaction in relaychaind's log, a reply to the smuggled commands, or
# a second message at the sink:
#
#   strict   defaults (bare_newline = reject, long_line_action = reject),
#            message_size_limit = 64k, recipient_limit = 3,
#            error_limit = 4, max_connections_per_client = 2, STARTTLS
#   lenient  bare_newline = normalize, long_line_action = wrap
#   slow     smtpd_greet_pause = 500ms, smtpd_timeout = 2s
#
# Cases: SMTP smuggling (<LF>.<LF>, <LF>.<CR><LF>, <CR><LF>.<LF>,
# <CR>.<CR>, NUL before and after the dot, each followed by a smuggled
# MAIL/RCPT/DATA and a proper end): strict answers 550 and the sink gets
# nothing; lenient delivers the one message, CRLF-clean, with the
# smuggled commands as body text and no second message. Over-long
# command lines (500 5.5.2; a 2 MiB line leaves relaychaind's RSS where it
# was), long text lines (reject: 550 5.6.0; wrap: no line over 998; a
# line over the 64 KiB read bound: 550 5.6.0 as soon as the data ends),
# pipelining (replies in order), an early talker (554; none without a
# greet pause), an idle client (421 4.4.2, also in the middle of DATA),
# SIZE (552 5.3.4 at MAIL and after a too-big DATA, which is read to its
# end first), recipient_limit (452 4.5.3), commands pipelined behind
# STARTTLS (never answered inside TLS), error_limit (421) and
# max_connections_per_client (421 for one client, others still served).
. "$top_srcdir/tests/integration/smtpd_lib.sh"

set -- $(free_ports 5)
strict=$1 lenient=$2 slow=$3 sink_a=$4 sink_b=$5

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay.test.example \
    -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 ||
    fail "openssl could not make a certificate"
sink_start sinka "$sink_a"
sink_start sinkb "$sink_b"
rcd_conf "$T/strict.conf" "$strict" "smtp:[127.0.0.1]:$sink_a" <<EOF
message_size_limit = 64k
recipient_limit = 3
error_limit = 4
smtpd_junk_command_limit = 3
max_connections_per_client = 2
tls_cert_file = $T/cert.pem
tls_key_file = $T/key.pem
EOF
rcd_conf "$T/lenient.conf" "$lenient" "smtp:[127.0.0.1]:$sink_b" <<EOF
bare_newline = normalize
long_line_action = wrap
EOF
rcd_conf "$T/slow.conf" "$slow" "smtp:[127.0.0.1]:$sink_a" <<EOF
smtpd_greet_pause = 500ms
smtpd_timeout = 2s
EOF
rcd_start strict "$T/strict.conf" "$strict" || finish
rcd_start lenient "$T/lenient.conf" "$lenient" || finish
rcd_start slow "$T/slow.conf" "$slow" || finish

# codes FILE - the final line of each reply, by code, on one line
codes() {
    grep -E '^[0-9]{3}( |$)' "$1" | cut -c1-3 | tr '\n' ' ' | sed 's/ $//'
}

# envelope - the steps up to and including DATA's 354
envelope() {
    cat <<'EOF'
expect
send EHLO client.test.example
expect
send MAIL FROM:<sender@client.example>
expect
send RCPT TO:<rcpt@dest.example>
expect
send DATA
expect
EOF
}

# ------------------------------------------------------------- smuggling
smuggled='MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@target.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n'
n=0
for v in 'lf-dot-lf \n.\n' 'lf-dot-crlf \n.\r\n' 'crlf-dot-lf \r\n.\n' \
    'cr-dot-cr \r.\r' 'nul-before-dot \r\n\0.\r\n' 'nul-after-dot \r\n.\0\r\n'; do
    name=${v%% *}
    seq=${v#* }
    n=$((n + 1))
    for mode in strict lenient; do
        eval "port=\$$mode"
        {
            envelope
            printf '%s\n' "raw Subject: $name\\r\\n\\r\\nfirst body line"
            printf '%s\n' "raw $seq"
            printf '%s\n' "raw $smuggled"
            echo "expect"
            echo "send QUIT"
            echo "expect"
            echo "eof"
        } | chat "$port" >"$T/$mode-$name.out"
    done
    case $name in
    nul-*) want_strict="220 250 250 250 354 550 221" want_text="550 5.6.0" ;;
    *) want_strict="220 250 250 250 354 550 221" want_text="550 5.5.2" ;;
    esac
    got=$(codes "$T/strict-$name.out")
    check "strict, $name: replies are '$want_strict' (got '$got')" [ "$got" = "$want_strict" ]
    check "strict, $name: $want_text" grep -q "^$want_text " "$T/strict-$name.out"
    check "strict, $name: nothing after QUIT" sh -c "tail -n 2 '$T/strict-$name.out' | grep -q '^#EOF'"
    got=$(codes "$T/lenient-$name.out")
    case $name in
    nul-*)
        check "normalize, $name: NUL still refused with 550 5.6.0 (got '$got')" \
            [ "$got" = "220 250 250 250 354 550 221" ]
        ;;
    *)
        check "normalize, $name: one message accepted (got '$got')" \
            [ "$got" = "220 250 250 250 354 250 221" ]
        check "normalize, $name: delivered" sink_wait sinkb "$n" 5
        msg=$(grep -l "^Subject: $name\$" "$T"/sinkb/msg.* 2>/dev/null | head -n 1)
        check "normalize, $name: at the sink" [ -n "$msg" ]
        if [ -n "$msg" ]; then
            check "normalize, $name: envelope is the client's" \
                sh -c "grep -q '^X-Mail-Args: <sender@client.example>' '$msg' && [ \$(grep -c '^X-Rcpt-Args:' '$msg') -eq 1 ] && grep -q '^X-Rcpt-Args: <rcpt@dest.example>' '$msg'"
            check "normalize, $name: the smuggled commands are body text" \
                grep -q '^MAIL FROM:<evil@attacker.example>$' "$msg"
            check "normalize, $name: no CR left in the message" \
                sh -c "! tr -d '\\n' <'$msg' | grep -q \"\$(printf '\\r')\""
        fi
        ;;
    esac
done
sleep 0.3
check "strict: the sink got nothing from any smuggling attempt ($(sink_count sinka))" \
    [ "$(sink_count sinka)" -eq 0 ]
check "normalize: exactly one message per non-NUL attempt, none smuggled ($(sink_count sinkb))" \
    [ "$(sink_count sinkb)" -eq 4 ]
check "relaychaind never saw the smuggled sender as a command" \
    sh -c "! grep -q 'evil@attacker' '$T/strict.log' '$T/lenient.log'"
check "no smuggled envelope at any sink" \
    sh -c "! cat '$T'/sinka/msg.* '$T'/sinkb/msg.* 2>/dev/null | grep -q -e '^X-Mail-Args: <evil@' -e '^X-Rcpt-Args: <victim@'"

# ------------------------------------------------------------- long lines
long=$(head -c 1500 /dev/zero | tr '\0' 'x')
{
    envelope
    printf '%s\n' "raw Subject: long line\\r\\n\\r\\n$long\\r\\n.\\r\\n"
    echo "expect"
} | chat "$strict" >"$T/longline-reject.out"
check "long_line_action = reject: 550 5.6.0" \
    grep -q '^550 5.6.0 .*longer than 998' "$T/longline-reject.out"
long=$(head -c 2500 /dev/zero | tr '\0' 'y')
subj=$(head -c 1200 /dev/zero | tr '\0' 's')
{
    envelope
    printf '%s\n' "raw Subject: $subj\\r\\nX-Wrap: yes\\r\\n\\r\\n$long\\r\\n.\\r\\n"
    echo "expect"
} | chat "$lenient" >"$T/longline-wrap.out"
check "long_line_action = wrap: accepted" grep -q '^250 2.0.0' "$T/longline-wrap.out"
check "wrapped message delivered" sink_wait sinkb 5
msg=$(grep -l '^X-Wrap: yes' "$T"/sinkb/msg.* 2>/dev/null | head -n 1)
if [ -n "$msg" ]; then
    check "wrap: no line over 998 octets" \
        sh -c "[ \$(awk '{ if (length(\$0) > m) m = length(\$0) } END { print m + 0 }' '$msg') -le 998 ]"
    check "wrap: all 2500 body octets kept" \
        [ "$(sed '1,/^$/d' "$msg" | tr -cd 'y' | wc -c)" -eq 2500 ]
    check "wrap: the long Subject stays one folded field" \
        sh -c "awk '/^Subject: /{ getline nx; if (nx ~ /^[ \\t]s/) ok = 1 } END { exit !ok }' '$msg' && [ \$(tr -cd s <'$msg' | wc -c) -ge 1200 ]"
else
    fail "wrap: the message is not at the sink"
fi

# A line over the 64 KiB read bound (a base64 blob with no line breaks)
# is refused once the message ends, whatever long_line_action says; the
# end must still be seen, and only after a CRLF-ended line.
for mode in strict lenient; do
    eval "port=\$$mode"
    {
        envelope
        printf '%s\n' 'raw Subject: one huge line\r\n\r\n' 'repeat 100000 A' 'raw \r\n.\r\n'
        echo "expect"
        envelope | sed 1d
        printf '%s\n' 'raw Subject: huge line, bare LF\r\n\r\n' 'repeat 100000 B' "raw \n.\r\n$smuggled"
        printf '%s\n' expect 'send QUIT' expect
    } | chat "$port" --timeout 5 >"$T/$mode-hugeline.out"
    got=$(codes "$T/$mode-hugeline.out")
    check "$mode: a 100 KB line then CRLF.CRLF: 550 5.6.0 at once; after a bare-LF one, only the real end counts (got '$got')" \
        [ "$got" = "220 250 250 250 354 550 250 250 250 354 550 221" ]
    check "$mode: the huge-line refusals are 550 5.6.0" \
        [ "$(grep -c '^550 5.6.0 .*longer than 998' "$T/$mode-hugeline.out")" -eq 2 ]
done

# ------------------------------------------------------- over-long commands
addr=$(head -c 590 /dev/zero | tr '\0' 'a')
cmd3k=$(head -c 3000 /dev/zero | tr '\0' 'b')
chat "$strict" >"$T/longcmd.out" <<EOF
expect
send EHLO client.test.example
expect
send MAIL FROM:<$addr@client.example>
expect
send NOOP $cmd3k
expect
send NOOP
expect
send QUIT
expect
EOF
got=$(codes "$T/longcmd.out")
check "600-octet MAIL: address refused, 3000-octet line: 500 5.5.2, then usable (got '$got')" \
    [ "$got" = "220 250 501 500 250 221" ]
check "over-long line: 500 5.5.2 Error: line too long" \
    grep -q '^500 5.5.2 Error: line too long' "$T/longcmd.out"

pid=$(rcd_pid strict)
chat "$strict" >"$T/huge.out" <<EOF
expect
send EHLO client.test.example
expect
exec ps -o rss= -p $pid
repeat 2097152 Q
sleep 0.5
exec ps -o rss= -p $pid
raw \r\n
expect
send NOOP
expect
exec ps -o rss= -p $pid
send QUIT
expect
EOF
got=$(codes "$T/huge.out")
check "2 MiB unterminated line: 500 5.5.2 once its end comes, then usable (got '$got')" \
    [ "$got" = "220 250 500 250 221" ]
set -- $(sed -n 's/^#EXEC *//p' "$T/huge.out")
if [ $# -eq 3 ]; then
    echo "relaychaind RSS (KiB): before $1, with 2 MiB line pending $2, after $3"
    check "RSS while a 2 MiB line is read grows by less than 1 MiB ($1 -> $2 KiB)" \
        [ $(($2 - $1)) -lt 1024 ]
    check "RSS after the 2 MiB line grows by less than 1 MiB ($1 -> $3 KiB)" \
        [ $(($3 - $1)) -lt 1024 ]
else
    fail "could not read relaychaind's RSS: $*"
fi

# ------------------------------------------------------------- pipelining
chat "$strict" >"$T/pipe.out" <<'EOF'
expect
raw EHLO client.test.example\r\nMAIL FROM:<pipe@client.example>\r\nRCPT TO:<r1@dest.example>\r\nRCPT TO:<not an address>\r\nRCPT TO:<r3@dest.example>\r\nDATA\r\n
expect 6
raw Subject: pipelined\r\n\r\npipelined body\r\n.\r\nQUIT\r\n
expect 2
EOF
got=$(codes "$T/pipe.out")
check "pipelined group: replies in order (got '$got')" \
    [ "$got" = "220 250 250 250 501 250 354 250 221" ]
check "pipelined message delivered" sink_wait sinka 1
msg=$(grep -l '^Subject: pipelined' "$T"/sinka/msg.* 2>/dev/null | head -n 1)
check "pipelined message: exactly r1 and r3" \
    sh -c "[ \"\$(grep '^X-Rcpt-Args:' '$msg' | tr '\\n' ' ')\" = 'X-Rcpt-Args: <r1@dest.example> X-Rcpt-Args: <r3@dest.example> ' ]"

# ------------------------------------------------------------- early talker
chat "$slow" >"$T/early.out" <<'EOF'
send EHLO early.test.example
expect
eof
EOF
check "early talker: 554 and disconnected" \
    sh -c "grep -q '^554 5.5.1 Error: early talker' '$T/early.out' && grep -q '^#EOF' '$T/early.out' && ! grep -q '^220' '$T/early.out'"
chat "$strict" >"$T/nopause.out" <<'EOF'
send EHLO early.test.example
expect 2
send QUIT
expect
EOF
check "smtpd_greet_pause = 0: a client talking first is served, not refused (got '$(codes "$T/nopause.out")')" \
    [ "$(codes "$T/nopause.out")" = "220 250 221" ]
chat "$slow" >"$T/patient.out" <<'EOF'
expect
send QUIT
expect
EOF
el=$(sed -n '1,/^#ELAPSED/s/^#ELAPSED //p' "$T/patient.out")
check "patient client: 220 after the 500 ms pause (at ${el}s)" \
    sh -c "grep -q '^220 ' '$T/patient.out' && awk -v e='$el' 'BEGIN { exit !(e >= 0.45) }'"

# ------------------------------------------------------------- idle client
chat "$slow" >"$T/idle.out" <<'EOF'
expect
send EHLO idle.test.example
expect
expect
eof
EOF
el=$(sed -n 's/^#ELAPSED //p' "$T/idle.out" | tail -n 1)
check "idle client: 421 4.4.2 timeout" grep -q '^421 4.4.2 .*timeout exceeded' "$T/idle.out"
check "idle client: dropped after smtpd_timeout = 2s (at ${el}s)" \
    sh -c "awk -v e='$el' 'BEGIN { exit !(e >= 2.3 && e < 6) }' && grep -q '^#EOF' '$T/idle.out'"

{
    envelope
    printf '%s\n' 'raw Subject: stalled\r\n\r\nhalf a message\r\n' expect eof
} | chat "$slow" >"$T/idle-data.out"
el=$(sed -n 's/^#ELAPSED //p' "$T/idle-data.out" | tail -n 1)
check "client stalled in DATA: 421 4.4.2 after smtpd_timeout (at ${el}s), disconnected" \
    sh -c "grep -q '^421 4.4.2 .*timeout exceeded' '$T/idle-data.out' && grep -q '^#EOF' '$T/idle-data.out' && awk -v e='$el' 'BEGIN { exit !(e >= 2.3 && e < 6) }'"
check "client stalled in DATA: logged as a timeout" grep -q ': timeout after DATA from' "$T/slow.log"

# ------------------------------------------------------------- SIZE
big=$(head -c 1000 /dev/zero | tr '\0' 'z')
chat "$strict" >"$T/size.out" <<EOF
expect
send EHLO client.test.example
expect
send MAIL FROM:<big@client.example> SIZE=70000
expect
send MAIL FROM:<big@client.example> SIZE=1000
expect
send RCPT TO:<r@dest.example>
expect
send DATA
expect
raw Subject: too big\r\n\r\n
repeat 100 $big\r\n
raw QUIT\r\nRSET\r\n
silence 0.5
raw .\r\n
expect
send NOOP
expect
send QUIT
expect
EOF
got=$(codes "$T/size.out")
check "SIZE over the limit: 552 5.3.4 at MAIL" grep -q '^552 5.3.4' "$T/size.out"
check "DATA over the limit: no reply before the end of the data" grep -q '^#SILENT' "$T/size.out"
check "DATA over the limit: 552, and nothing in it obeyed (got '$got')" \
    [ "$got" = "220 250 552 250 250 354 552 250 221" ]

# ------------------------------------------------------------- recipient_limit
chat "$strict" >"$T/rcptlimit.out" <<'EOF'
expect
send EHLO client.test.example
expect
send MAIL FROM:<many@client.example>
expect
send RCPT TO:<a1@dest.example>
expect
send RCPT TO:<a2@dest.example>
expect
send RCPT TO:<a3@dest.example>
expect
send RCPT TO:<a4@dest.example>
expect
send DATA
expect
raw Subject: recipient limit\r\n\r\nbody\r\n.\r\n
expect
EOF
got=$(codes "$T/rcptlimit.out")
check "recipient_limit = 3: the fourth gets 452 4.5.3 (got '$got')" \
    sh -c "[ '$got' = '220 250 250 250 250 250 452 354 250' ] && grep -q '^452 4.5.3' '$T/rcptlimit.out'"
check "recipient_limit: delivered to three" sink_wait sinka 2
msg=$(grep -l '^Subject: recipient limit' "$T"/sinka/msg.* 2>/dev/null | head -n 1)
check "recipient_limit: the sink has exactly a1..a3" \
    sh -c "[ \$(grep -c '^X-Rcpt-Args:' '$msg') -eq 3 ] && ! grep -q a4@ '$msg'"

# ------------------------------------------------------------- STARTTLS
chat "$strict" >"$T/tls.out" <<'EOF'
expect
send EHLO client.test.example
expect
raw STARTTLS\r\nRSET\r\n
expect
starttls
silence 1
send EHLO client.test.example
expect
send QUIT
expect
EOF
check "STARTTLS pipelined with RSET: 220 then a TLS handshake" \
    sh -c "grep -q '^220 2.0.0' '$T/tls.out' && grep -q '^#TLS TLSv1' '$T/tls.out'"
check "the RSET sent in plaintext is not answered inside TLS" grep -q '^#SILENT' "$T/tls.out"
check "inside TLS the session goes on (EHLO, QUIT)" \
    [ "$(codes "$T/tls.out")" = "220 250 220 250 221" ]
check "relaychaind counted no RSET in that session" \
    sh -c "grep 'disconnect from .* starttls=1' '$T/strict.log' | grep -qv 'rset='"

# ------------------------------------------------------------- error_limit
chat "$strict" >"$T/errors.out" <<'EOF'
expect
send JUNK 1
expect
send JUNK 2
expect
send JUNK 3
expect
send JUNK 4
expect 2
eof
EOF
got=$(codes "$T/errors.out")
check "error_limit = 4: three 502, then 502 and 421 (got '$got')" \
    [ "$got" = "220 502 502 502 502 421" ]
check "error_limit: 421 4.7.0 too many errors, disconnected" \
    sh -c "grep -q '^421 4.7.0 .*too many errors' '$T/errors.out' && grep -q '^#EOF' '$T/errors.out'"

# ------------------------------------------------ smtpd_junk_command_limit
# Three NOOP, VRFY or RSET are free; each one after that is an error too,
# so the fourth error (the seventh junk command) ends the session.
chat "$strict" >"$T/junk.out" <<'EOF'
expect
send NOOP
expect
send RSET
expect
send VRFY someone
expect
send NOOP
expect
send NOOP
expect
send NOOP
expect
send NOOP
expect 2
eof
EOF
got=$(codes "$T/junk.out")
check "junk limit 3, error_limit 4: seven answered, then 421 (got '$got')" \
    [ "$got" = "220 250 250 252 250 250 250 250 421" ]

# ------------------------------------------------------- connection limits
for i in 1 2; do
    printf '%s\n' expect 'sleep 1.5' 'send QUIT' expect | chat "$strict" >"$T/hold$i.out" &
    eval "hold$i=\$!"
done
i=0
while [ $i -lt 50 ] && ! { grep -q '^220' "$T/hold1.out" && grep -q '^220' "$T/hold2.out"; } 2>/dev/null; do
    sleep 0.05
    i=$((i + 1))
done
printf '%s\n' expect eof | chat "$strict" >"$T/third.out"
printf '%s\n' expect 'send QUIT' expect | chat "$strict" --src 127.0.0.2 >"$T/other.out"
wait "$hold1" "$hold2"
check "max_connections_per_client = 2: a third connection gets 421 and is closed" \
    sh -c "grep -q '^421 4.7.0 .*too many connections from 127.0.0.1' '$T/third.out' && grep -q '^#EOF' '$T/third.out'"
check "max_connections_per_client: another client address is served meanwhile" \
    grep -q '^220 ' "$T/other.out"
check "max_connections_per_client: the two held sessions end normally" \
    sh -c "grep -q '^221' '$T/hold1.out' && grep -q '^221' '$T/hold2.out'"

sleep 0.3
check "strict sink: exactly the two accepted messages ($(sink_count sinka))" [ "$(sink_count sinka)" -eq 2 ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    for f in "$T"/*.out; do
        echo "--- $(basename "$f")"
        cut -c1-200 "$f" | tail -n 30
    done
    for f in strict lenient slow; do
        echo "--- $f log"
        tail -n 40 "$T/$f.log"
    done
fi
rcd_stop strict
rcd_stop lenient
rcd_stop slow
finish
