#!/bin/sh
# antivirus_filter - the antivirus stage (libclamav) through the real
# "relaychain filter" with the project's test signatures
#
#   1. the shipped signatures still agree with the files mkfiles.sh makes
#      (sigtool --md5, --sha256 and --hex-dump);
#   2. EICAR as plain text, as a base64 attachment, inside a zip, inside
#      a zip in a nested message/rfc822, behind a duplicated boundary and
#      behind a boundary given twice: all rejected with 554 5.7.1 virus=
#      (ambiguous_mime_action = continue lets the last two reach the
#      stage; with the default they are refused before it);
#   3. each of our own signatures (MD5, SHA-256, body pattern, logical,
#      YARA) detects its file attached; half a logical signature and a
#      clean file pass;
#   4. every message of the corpus passes, byte for byte unchanged, with
#      result=clean; with add_header = yes only the two X-Virus fields
#      are added;
#   5. limits: a 200 MB zip member over max_file_size, a small
#      max_scan_size, archives nested deeper than max_recursion: each
#      "unchecked" in bounded time and, since the same bytes hit the same
#      limit on every try, rejected (554 5.7.0 with the reason, exit 2)
#      rather than tempfailed for the sender to retry for days; a 1 ms
#      max_scan_time, which a less loaded scanner may pass, tempfailed
#      (exit 3); each passed only when on_unscannable or on_scan_timeout
#      = continue says so; an older on_unchecked still loads, sets both
#      and warns;
#   6. the database directory: missing, empty or unreadable stops
#      "relaychain check" with the reason; with missing_database =
#      tempfail every message is tempfailed instead;
#   7. the shipped example (chain.d/20-antivirus.conf) loads, refuses
#      EICAR, and its banned.pcre refuses what it says;
#   8. add_header = yes after a DKIM stage is refused; without it the
#      stage may follow a signer.
. "$top_srcdir/tests/integration/av_lib.sh"

# ------------------------------------------------ 1. signatures vs files
sig=$(sigtool --md5 "$AVF/rc-payload.bin" | cut -d: -f1-2)
check "relaychain-test.hdb holds rc-payload.bin's MD5 ($sig)" \
    grep -q "^$sig:" "$AVDB/relaychain-test.hdb"
sig=$(sigtool --sha256 "$AVF/rc-payload.bin" | cut -d: -f1-2)
check "relaychain-test.hsb holds rc-payload.bin's SHA-256" \
    grep -q "^$sig:" "$AVDB/relaychain-test.hsb"
hex=$(sigtool --hex-dump <"$AVF/eicar.com")
check "relaychain-test.ndb holds EICAR" \
    grep -q "^RelayChain.Test.EICAR:0:\*:$hex\$" "$AVDB/relaychain-test.ndb"

# ---------------------------------------------------- 2. EICAR, wrapped
AV_AMBIGUOUS=continue av_chain "$T/amb"
av_chain "$T/std"
mkdir -p "$T/m"
mail_text "plain" "hello
$(cat "$AVF/eicar.com")
bye" >"$T/m/plain.eml"
mail_attach "base64" "$AVF/eicar.com" "eicar.txt" >"$T/m/base64.eml"
(cd "$AVF" && zip -q -9 "$T/eicar.zip" eicar.com)
mail_attach "zip" "$T/eicar.zip" "docs.zip" application/zip >"$T/m/zip.eml"
mail_attach "inner" "$T/eicar.zip" "inner.zip" application/zip >"$T/inner.eml"
{
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: fwd\n'
    printf 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="out"\n\n'
    printf -- '--out\nContent-Type: text/plain\n\nForwarded.\n\n'
    printf -- '--out\nContent-Type: message/rfc822\n\n'
    cat "$T/inner.eml"
    printf -- '--out--\n'
} >"$T/m/nested.eml"
b64=$(base64 -w 76 "$AVF/eicar.com")
{
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: dup\n'
    printf 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="x"\n\n'
    printf -- '--x\nContent-Type: multipart/mixed; boundary="x"\n\n'
    printf -- '--x\nContent-Type: text/plain\n\nhidden\n'
    printf -- '--x\nContent-Type: application/octet-stream\n'
    printf 'Content-Transfer-Encoding: base64\n\n%s\n--x--\n--x--\n' "$b64"
} >"$T/m/dup-boundary.eml"
{
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: twice\n'
    printf 'MIME-Version: 1.0\n'
    printf 'Content-Type: multipart/mixed; boundary="aaa"; boundary="bbb"\n\n'
    printf -- '--aaa\nContent-Type: text/plain\n\nvisible\n--aaa--\n'
    printf -- '--bbb\nContent-Type: application/octet-stream\n'
    printf 'Content-Transfer-Encoding: base64\n\n%s\n--bbb--\n' "$b64"
} >"$T/m/boundary-twice.eml"
{
    printf 'From: alice@example.com\nTo: bob@example.org\nSubject: two types\n'
    printf 'MIME-Version: 1.0\n'
    printf 'Content-Type: multipart/mixed; boundary="aaa"\n'
    printf 'Content-Type: multipart/mixed; boundary="bbb"\n\n'
    printf -- '--aaa\nContent-Type: text/plain\n\nvisible\n--aaa--\n'
    printf -- '--bbb\nContent-Type: application/octet-stream\n'
    printf 'Content-Transfer-Encoding: base64\n\n%s\n--bbb--\n' "$b64"
} >"$T/m/two-types.eml"

for f in plain base64 zip nested dup-boundary boundary-twice two-types; do
    av_filter "$T/amb.conf" "$T/m/$f.eml"
    check "EICAR $f: rejected (exit $AV_RC, want 2)" [ "$AV_RC" -eq 2 ]
    check "EICAR $f: 554 5.7.1 virus=RelayChain.Test.EICAR ($(tail -n 1 "$T/av.err"))" \
        grep -q '554 5.7.1 virus=RelayChain.Test.EICAR.UNOFFICIAL' "$T/av.err"
    check "EICAR $f: log line ($AV_LOG)" sh -c "echo '$AV_LOG' |
        grep -q 'antivirus: reject, virus=RelayChain.Test.EICAR.UNOFFICIAL, engine=libclamav, [0-9]*ms\$'"
    check "EICAR $f: nothing on standard output" [ ! -s "$T/av.out" ]
done
for f in dup-boundary boundary-twice two-types; do
    av_filter "$T/std.conf" "$T/m/$f.eml"
    check "EICAR $f, default ambiguous_mime_action: refused before the stage (exit $AV_RC)" \
        sh -c "[ $AV_RC -eq 2 ] && grep -q '554 5.6.0' '$T/av.err'"
done

# -------------------------------------------- 3. our own signatures
for f in rc-payload.bin:RelayChain.Test.Payload rc-body.txt:RelayChain.Test.Body \
    rc-logical.txt:RelayChain.Test.Logical rc-yara.txt:YARA.RelayChain_Test_Yara; do
    file=${f%%:*}
    name=${f#*:}
    mail_attach "$file" "$AVF/$file" "$file" >"$T/sig.eml"
    av_filter "$T/std.conf" "$T/sig.eml"
    check "$file attached: rejected as $name (exit $AV_RC; $AV_LOG)" \
        sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'virus=$name'"
done
# The SHA-256 signature alone (the MD5 one would match first).
mkdir -p "$T/hsb-db"
cp "$AVDB/relaychain-test.hsb" "$T/hsb-db/"
av_chain "$T/hsb" "database_directory = $T/hsb-db"
mail_attach "payload" "$AVF/rc-payload.bin" "data.bin" >"$T/sig.eml"
av_filter "$T/hsb.conf" "$T/sig.eml"
check "SHA-256 signature: detected ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'virus=RelayChain.Test.Payload.SHA256'"
for file in rc-half.txt clean.txt; do
    mail_attach "$file" "$AVF/$file" "$file" text/plain >"$T/sig.eml"
    av_filter "$T/std.conf" "$T/sig.eml"
    check "$file attached: clean (exit $AV_RC; $AV_LOG)" \
        sh -c "[ $AV_RC -eq 0 ] && echo '$AV_LOG' | grep -q 'continue, result=clean'"
    check "$file attached: message unchanged" cmp -s "$T/sig.eml" "$T/av.out"
done

# ------------------------------------------------------------ 4. corpus
AV_AMBIGUOUS=continue av_chain "$T/hdr" "add_header = yes"
n=0
bad=0
for msg in "$top_srcdir"/tests/data/corpus/*.eml "$top_srcdir"/tests/data/corpus/ambiguous/*.eml; do
    n=$((n + 1))
    av_filter "$T/amb.conf" "$msg"
    if [ "$AV_RC" -ne 0 ] || ! echo "$AV_LOG" | grep -q 'continue, result=clean' ||
        ! cmp -s "$msg" "$T/av.out"; then
        fail "corpus $(basename "$msg"): exit $AV_RC, $AV_LOG"
        bad=$((bad + 1))
    fi
    av_filter "$T/hdr.conf" "$msg"
    # The output is the input with two header fields more, or the input
    # itself when it has no header (an mbox "From " line first).
    if head -n 1 "$msg" | grep -q '^From '; then
        cmp -s "$msg" "$T/av.out" ||
            fail "corpus $(basename "$msg") without a header: changed"
    elif [ "$AV_RC" -ne 0 ] ||
        [ "$(grep -c '^X-Virus-Status: Clean' "$T/av.out")" -ne 1 ] ||
        [ "$(grep -c '^X-Virus-Scanned: relaychain antivirus (libclamav ' "$T/av.out")" -ne 1 ] ||
        ! grep -v '^X-Virus-S' "$T/av.out" | cmp -s - "$msg"; then
        fail "corpus $(basename "$msg") with add_header: exit $AV_RC or not just two fields more"
        bad=$((bad + 1))
    fi
done
check "corpus: $n messages, none flagged ($bad failures)" [ "$n" -gt 30 ] && [ "$bad" -eq 0 ]

# ------------------------------------------------------------- 5. limits
# timed_filter CONF MSG - av_filter, with the whole seconds it took in s
timed_filter() {
    local t0
    t0=$(date +%s)
    av_filter "$1" "$2"
    s=$(($(date +%s) - t0))
}
head -c 200000000 /dev/zero >"$T/zeros.bin"
(cd "$T" && zip -q -9 big.zip zeros.bin && zip -q -0 bigger.zip big.zip)
rm -f "$T/zeros.bin"
mail_attach "bomb" "$T/bigger.zip" "bigger.zip" application/zip >"$T/bomb.eml"
timed_filter "$T/std.conf" "$T/bomb.eml"
check "zip bomb, default limits: unchecked, rejected (exit $AV_RC; $AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'reject, unchecked (max_file_size exceeded by archive member \"zeros.bin\"'"
check "zip bomb, default limits: 554 5.7.0 with the reason to the client" \
    grep -q '554 5.7.0 message could not be scanned (max_file_size exceeded by archive member' "$T/av.err"
check "zip bomb, default limits: done in bounded time (${s}s, want < 60)" [ "$s" -lt 60 ]
av_chain "$T/small" "max_scan_size = 10m"
timed_filter "$T/small.conf" "$T/bomb.eml"
check "zip bomb, max_scan_size = 10m: unchecked, rejected ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'unchecked (max_scan_size exceeded)'"
check "zip bomb, max_scan_size = 10m: ${s}s, want < 20" [ "$s" -lt 20 ]
# Nested 8 deep around a deflated EICAR that a bare scan cannot see.
mkdir -p "$T/nest"
(cat "$AVF/eicar.com"; head -c 3000 /dev/zero | tr '\0' A) >"$T/nest/l0.zip"
i=1
while [ $i -le 8 ]; do
    (cd "$T/nest" && zip -q -9 "l$i.zip" "l$((i - 1)).zip")
    i=$((i + 1))
done
check "the nested zips hide EICAR from a plain search" \
    sh -c "! grep -q EICAR '$T/nest/l8.zip'"
mail_attach "deep" "$T/nest/l8.zip" "deep.zip" application/zip >"$T/deep.eml"
av_filter "$T/std.conf" "$T/deep.eml"
check "8 nested zips, default limits: EICAR found ($AV_LOG)" [ "$AV_RC" -eq 2 ]
av_chain "$T/shallow" "max_recursion = 4"
av_filter "$T/shallow.conf" "$T/deep.eml"
check "8 nested zips, max_recursion = 4: unchecked, rejected, never clean ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'reject, unchecked (max_recursion exceeded)'"
av_chain "$T/shallowq" "max_recursion = 4" "on_unscannable = quarantine"
av_filter "$T/shallowq.conf" "$T/deep.eml"
check "max_recursion = 4, on_unscannable = quarantine: exit 5 ($AV_RC)" [ "$AV_RC" -eq 5 ]
av_chain "$T/shallowt" "max_recursion = 4" "on_scan_timeout = continue"
av_filter "$T/shallowt.conf" "$T/deep.eml"
check "max_recursion = 4, on_scan_timeout = continue: still rejected ($AV_RC)" [ "$AV_RC" -eq 2 ]
av_chain "$T/shallowold" "max_recursion = 4" "on_unchecked = tempfail"
av_filter "$T/shallowold.conf" "$T/deep.eml"
check "an older on_unchecked = tempfail still loads and applies ($AV_RC)" [ "$AV_RC" -eq 3 ]
check "and the log says it is deprecated and what replaces it" \
    grep -q 'on_unchecked is deprecated: it sets both on_unscannable .* and on_scan_timeout .* to tempfail; set those instead' "$T/av.err"
av_chain "$T/fast" "max_scan_time = 1ms"
av_filter "$T/fast.conf" "$T/bomb.eml"
check "max_scan_time = 1ms: unchecked, tempfailed: a later try may pass ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 3 ] && echo '$AV_LOG' | grep -q 'tempfail, unchecked (max_scan_time exceeded)'"
check "max_scan_time = 1ms: 451 4.7.1 to the client" \
    grep -q '451 4.7.1 message could not be scanned (max_scan_time exceeded), try again later' "$T/av.err"
av_chain "$T/fastpass" "max_scan_time = 1ms" "on_scan_timeout = continue"
av_filter "$T/fastpass.conf" "$T/bomb.eml"
check "max_scan_time = 1ms, on_scan_timeout = continue: passed and logged ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 0 ] && echo '$AV_LOG' | grep -q 'continue, unchecked (max_scan_time exceeded), engine=libclamav, passed (on_scan_timeout = continue)'"
av_chain "$T/fastq" "max_scan_time = 1ms" "on_scan_timeout = quarantine"
av_filter "$T/fastq.conf" "$T/bomb.eml"
check "max_scan_time = 1ms, on_scan_timeout = quarantine: exit 5 ($AV_RC)" [ "$AV_RC" -eq 5 ]

# ------------------------------------------------ 6. the database directory
mkdir -p "$T/empty-db" "$T/locked-db"
cp "$AVDB"/* "$T/locked-db/"
chmod 700 "$T/locked-db"
chmod 755 "$T"
av_chain "$T/empty" "database_directory = $T/empty-db"
"$RC" check -c "$T/empty.conf" >/dev/null 2>"$T/check.err"
rc=$?
check "empty database directory: check exits 1 (got $rc)" [ "$rc" -eq 1 ]
check "empty database directory: the error names file, line and directory ($(tail -n 1 "$T/check.err"))" \
    grep -q "05-antivirus.conf:3: database_directory: $T/empty-db: no signatures in it" "$T/check.err"
av_chain "$T/gone" "database_directory = $T/no-such-db"
"$RC" check -c "$T/gone.conf" >/dev/null 2>"$T/check.err"
check "missing database directory: No such file or directory" \
    grep -q "$T/no-such-db: No such file or directory" "$T/check.err"
av_chain "$T/locked" "database_directory = $T/locked-db"
chmod 755 "$T/locked"
chmod 644 "$T/locked.conf" "$T/locked/05-antivirus.conf"
if command -v setpriv >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$RC" check -c "$T/locked.conf" >/dev/null 2>"$T/check.err"
    rc=$?
    check "unreadable database directory: check exits 1 (got $rc)" [ "$rc" -eq 1 ]
    check "unreadable database directory: Permission denied ($(tail -n 1 "$T/check.err"))" \
        grep -q "$T/locked-db: Permission denied" "$T/check.err"
fi
av_chain "$T/waiting" "database_directory = $T/empty-db" "missing_database = tempfail"
mail_text "clean" "nothing here" >"$T/clean.eml"
av_filter "$T/waiting.conf" "$T/clean.eml"
check "missing_database = tempfail: the message is tempfailed (exit $AV_RC)" [ "$AV_RC" -eq 3 ]
check "missing_database = tempfail: the log says why ($AV_LOG)" \
    sh -c "echo '$AV_LOG' | grep -q 'tempfail after error (antivirus: no signature database loaded from $T/empty-db'"

# ----------------------------------------------- order with signing
# add_header = yes edits the header: after DKIM it is refused; without
# it the stage edits nothing and may come after a signer.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$T/dkim.pem" 2>/dev/null
chmod 600 "$T/dkim.pem"
mkdir -p "$T/order"
printf 'stage = dkim\ndomain = example.com\nselector = s1\nkey_file = %s\n' \
    "$T/dkim.pem" >"$T/order/10-dkim.conf"
printf 'stage = antivirus\ndatabase_directory = %s\nadd_header = yes\n' \
    "$AVDB" >"$T/order/20-antivirus.conf"
printf 'chain_directory = %s/order\n' "$T" >"$T/order.conf"
"$RC" check -c "$T/order.conf" >/dev/null 2>"$T/check.err"
rc=$?
check "antivirus with add_header after dkim: refused (exit $rc; $(tail -n 1 "$T/check.err"))" \
    sh -c "[ $rc -eq 1 ] && grep -q '20-antivirus.conf: stage antivirus (antivirus) edits the header after the signing stage' '$T/check.err'"
sed -i '/^add_header/d' "$T/order/20-antivirus.conf"
"$RC" check -c "$T/order.conf" >/dev/null 2>"$T/check.err"
check "antivirus without add_header after dkim: loads ($(tail -n 1 "$T/check.err"))" [ $? -eq 0 ]

# ------------------------------------------------- the shipped example
printf 'chain_directory = %s/chain.d\n' "$top_srcdir" >"$T/example.conf"
"$RC" check -c "$T/example.conf" >"$T/check.out" 2>"$T/check.err"
check "the example chain.d loads ($(tail -n 1 "$T/check.err"))" \
    grep -q '^[0-9]*\. antivirus (stage = antivirus) from .*/chain.d/20-antivirus.conf' "$T/check.out"
av_filter "$T/example.conf" "$T/m/zip.eml"
check "the example refuses EICAR in a zip ($AV_LOG)" \
    sh -c "[ $AV_RC -eq 2 ] && echo '$AV_LOG' | grep -q 'virus=RelayChain.Example.EICAR.UNOFFICIAL'"
mkdir -p "$T/banned-example"
sed -e "s|^#banned_filename_rules = antivirus/|banned_filename_rules = $top_srcdir/chain.d/antivirus/|" \
    -e "s|^database_directory = antivirus|database_directory = $top_srcdir/chain.d/antivirus|" \
    "$top_srcdir/chain.d/20-antivirus.conf" >"$T/banned-example/20-antivirus.conf"
printf 'chain_directory = %s/banned-example\n' "$T" >"$T/banned-example.conf"
printf 'MZ' >"$T/x.bin"
for name in "report.pdf.exe:double extension" "tool.scr:executable" \
    "$(printf 'invoice\342\200\256fdp.exe'):hidden extension" "setup-ourproduct.exe:" "notes.txt:"; do
    file=${name%%:*}
    why=${name#*:}
    mail_attach "banned" "$T/x.bin" "$file" >"$T/banned.eml"
    av_filter "$T/banned-example.conf" "$T/banned.eml"
    if [ -n "$why" ]; then
        check "example banned.pcre refuses $file ($AV_LOG)" \
            sh -c "[ $AV_RC -eq 2 ] && grep -q '554 5.7.1 banned=name .*: $why' '$T/av.err'"
    else
        check "example banned.pcre lets $file through ($AV_LOG)" [ "$AV_RC" -eq 0 ]
    fi
done

finish
