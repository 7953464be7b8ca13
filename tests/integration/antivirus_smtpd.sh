#!/bin/sh
# antivirus_smtpd - the antivirus stage in relaychaind's SMTP front end
#
# relaychaind (libclamav, the test signatures, add_header = yes,
# notify_admin to the same smtp-sink) relays to smtp-sink. Over SMTP,
# with swaks:
#   1. EICAR in a zip: 554 5.7.1 virus=... at the end of DATA; only the
#      admin notice reaches the sink: null sender, to the admin, naming
#      the virus and the sender, holding no part of the message;
#   2. a banned attachment name (report.pdf.exe): 554 5.7.1 banned=...;
#   3. a clean message: 250, at the sink with X-Virus-Scanned and
#      X-Virus-Status: Clean, the sender's forged X-Virus-Status gone;
#   4. with on_infected = quarantine (a second relaychaind): 250, the
#      message in quarantine_directory as the stage received it (no
#      X-Virus-Status: a release resumes the chain after the stage), the
#      reason and the stage recorded, nothing at the sink;
#   5. the relaychaind log: "QID: antivirus: reject, virus=NAME,
#      engine=libclamav, Nms" and "result=clean";
#   6. a password-protected zip, which no retry can ever scan: 554 5.7.0
#      with the reason at the end of DATA (on_unscannable = reject, the
#      default), not a 4xx that has the sender retry for days; nothing
#      at the sink.
. "$top_srcdir/tests/integration/smtpd_lib.sh"
. "$top_srcdir/tests/integration/av_lib.sh"

set -- $(free_ports 3)
port=$1 sink_port=$2 qport=$3

mkdir -p "$T/rules"
printf '/\\.[a-z0-9]{2,4}\\.(exe|scr|com|pif|bat|js|vbs)$/ double extension\n' \
    >"$T/rules/banned.pcre"
av_chain "$T/av" "add_header = yes" "notify_admin = virus-admin@example.net" \
    "notify_next_hop = smtp:[127.0.0.1]:$sink_port" \
    "banned_filename_rules = $T/rules/banned.pcre"
av_chain "$T/avq" "add_header = yes" "on_infected = quarantine"

sink_start sink "$sink_port"
rcd_conf "$T/r.conf" "$port" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/av
EOF
rcd_conf "$T/q.conf" "$qport" "smtp:[127.0.0.1]:$sink_port" <<EOF
chain_directory = $T/avq
quarantine_directory = $T/quarantine
EOF
mkdir -p "$T/quarantine"
rcd_start rcd "$T/r.conf" "$port" || finish
rcd_start rcdq "$T/q.conf" "$qport" || finish

# send NAME PORT FILE - one message with swaks, transcript in $T/NAME.out
send() {
    timeout 60 swaks --server "127.0.0.1:$2" --helo client.test.example \
        --from alice@example.com --to bob@example.org --data "$3" \
        >"$T/$1.out" 2>&1
}

(cd "$AVF" && zip -q -9 "$T/eicar.zip" eicar.com)
mail_attach "infected" "$T/eicar.zip" "docs.zip" application/zip >"$T/infected.eml"
printf 'MZ' >"$T/x.bin"
mail_attach "banned" "$T/x.bin" "report.pdf.exe" >"$T/banned.eml"
{
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: clean\n'
    printf 'X-Virus-Status: Clean (trust me)\n\nNothing to see.\n'
} >"$T/clean.eml"

# 1. infected
send infected "$port" "$T/infected.eml"
check "1: 554 5.7.1 virus= at the end of DATA" \
    grep -q '<\*\* *554 5.7.1 virus=RelayChain.Test.EICAR.UNOFFICIAL' "$T/infected.out"
check "1: the admin notice arrives" sink_wait sink 1 10
notice=$(sink_files sink | head -n 1)
check "1: notice: null sender" grep -q '^X-Mail-Args: <>' "$notice"
check "1: notice: to the admin only" \
    sh -c "[ \"\$(grep -c '^X-Rcpt-Args:' '$notice')\" -eq 1 ] && grep -q '^X-Rcpt-Args: <virus-admin@example.net>' '$notice'"
check "1: notice: names the virus" grep -q 'RelayChain.Test.EICAR.UNOFFICIAL' "$notice"
check "1: notice: names the envelope sender" grep -q 'Sender: *<alice@example.com>' "$notice"
check "1: notice: holds no part of the message" \
    sh -c "! grep -q -e 'UEsDB' -e 'EICAR-STANDARD' -e 'See the attachment' '$notice'"
check "1: nothing for the sender or the recipient" \
    sh -c "! grep -q -e '^X-Rcpt-Args: <alice@' -e '^X-Rcpt-Args: <bob@' '$T'/sink/msg.*"

# 2. banned
send banned "$port" "$T/banned.eml"
check "2: 554 5.7.1 banned=name \"report.pdf.exe\"" \
    grep -q '<\*\* *554 5.7.1 banned=name .report.pdf.exe.: double extension' "$T/banned.out"
check "2: its notice arrives" sink_wait sink 2 10

# 3. clean
send clean "$port" "$T/clean.eml"
check "3: clean: 250" sh -c "grep -A1 '^ -> \.$' '$T/clean.out' | grep -q '^<-  250 '"
check "3: clean: at the sink" sink_wait sink 3 10
msg=$(grep -l '^Subject: clean' "$T"/sink/msg.* | head -n 1)
check "3: clean: X-Virus-Status: Clean" grep -q '^X-Virus-Status: Clean$' "$msg"
check "3: clean: X-Virus-Scanned" grep -q '^X-Virus-Scanned: relaychain antivirus (libclamav ' "$msg"
check "3: clean: the forged status is gone" sh -c "! grep -q 'trust me' '$msg'"

# 4. quarantine
send quarantined "$qport" "$T/infected.eml"
check "4: quarantine: 250 to the client" grep -q '<-  250 2.0.0 Ok: queued' "$T/quarantined.out"
q=$(find "$T/quarantine" -type f | head -n 1)
check "4: quarantine: one file held" [ "$(find "$T/quarantine" -type f | wc -l)" -eq 1 ]
check "4: quarantine: it holds the message without the stage's own edits" \
    sh -c "! grep -q '^X-Virus-S' '$q' && grep -q 'UEsDB' '$q'"
check "4: quarantine: the reason is recorded" grep -q '^Reason: .*virus=RelayChain.Test.EICAR' "$q"
check "4: quarantine: and the stage that held it" grep -q '^Stage: antivirus$' "$q"
sleep 0.5
check "4: quarantine: nothing more at the sink" [ "$(sink_count sink)" -eq 3 ]

# 5. log lines
check "5: reject log line" \
    grep -Eq ': antivirus: reject, virus=RelayChain.Test.EICAR.UNOFFICIAL, engine=libclamav, [0-9]+ms$' "$T/rcd.log"
check "5: clean log line" \
    grep -Eq ': antivirus: continue, result=clean, engine=libclamav, [0-9]+ms$' "$T/rcd.log"
check "5: notice logged" grep -q 'antivirus: notice sent to virus-admin@example.net' "$T/rcd.log"

# 6. unscannable
(cd "$AVF" && zip -q -P secret "$T/enc.zip" clean.txt)
mail_attach "encrypted" "$T/enc.zip" "enc.zip" application/zip >"$T/enc.eml"
n=$(sink_count sink)
send encrypted "$port" "$T/enc.eml"
check "6: 554 5.7.0 with the reason at the end of DATA" \
    grep -q '<\*\* *554 5.7.0 message could not be scanned (encrypted content: Heuristics.Encrypted.Zip)' "$T/encrypted.out"
check "6: no 4xx" sh -c "! grep -q '<\*\* *4[0-9][0-9] ' '$T/encrypted.out'"
check "6: the log says unchecked, reject" \
    grep -q ': antivirus: reject, unchecked (encrypted content: Heuristics.Encrypted.Zip), engine=libclamav' "$T/rcd.log"
sleep 0.5
check "6: nothing at the sink" [ "$(sink_count sink)" -eq "$n" ]

if [ "$failures" -ne 0 ] || [ -n "${SMTPD_VERBOSE:-}" ]; then
    cat "$T/rcd.log" "$T/rcdq.log" "$T/infected.out"
fi
rcd_stop rcd
rcd_stop rcdq
finish
