#!/bin/sh
# disclaimer_golden - the corpus and generated charset messages through a
# disclaimer chain, judged by an independent MIME parser
#
# Every message of tests/data/corpus/ (ambiguous/ included) and the
# messages tests/integration/disclaimer_mkmail.py makes with Python's
# email package (Windows-1252, ISO-2022-JP, GB2312, format=flowed, CRLF:
# the corpus has none of those that is not ambiguous) goes through
#     relaychain filter -c tests/data/disclaimer/relaychain.conf
# with a fixed envelope. Each output must:
#   - pass tests/integration/disclaimer_check.py (Debian's python3 email
#     package: no new defects, decoded text = old text + footer, parts
#     that were not decorated byte for byte, no line over 998 octets,
#     line ends kept);
#   - agree with the stage's log line about what it decorated;
#   - for the corpus, be exactly tests/data/disclaimer/expected/NAME.eml.
# Signed, report and ambiguous messages must come out byte for byte, and
# the charset rules must show: Windows-1252 text keeps its charset (the
# footer's em dash fits), ISO-2022-JP text becomes UTF-8 (the footer's
# umlaut does not fit), ISO-2022-JP HTML keeps its charset with a
# character reference, GB2312 stays base64. The whole corpus then goes
# through again with position = prepend.
#
#     disclaimer_golden.sh            check
#     disclaimer_golden.sh --update   rewrite expected/ (then review it)
#
# Run by "make check"; exit 0 all passed, 1 a failure. Never skips.
LC_ALL=C
export LC_ALL
. "$top_srcdir/tests/integration/lib.sh"

update=0
[ "${1-}" = "--update" ] && update=1
PY=/usr/bin/python3
data=$top_srcdir/tests/data/disclaimer
corpus=$top_srcdir/tests/data/corpus
check_py=$top_srcdir/tests/integration/disclaimer_check.py
SENDER=alice@example.com

mkdir -p "$T/gen" "$T/out"
if ! "$PY" "$top_srcdir/tests/integration/disclaimer_mkmail.py" "$T/gen"; then
    fail "could not make the generated messages"
    finish
fi
# The footers as the stage expands them for $SENDER.
sed -e "s/%{sender}/$SENDER/g" -e 's/%{sender_domain}/example.com/g' \
    "$data/templates/legal-en.txt" >"$T/text"
sed -e "s/%{sender}/$SENDER/g" -e 's/%{sender_domain}/example.com/g' \
    "$data/templates/legal-en.html" >"$T/html"

# run CONF IN OUT: filter one message; the stage's note in $T/note.
run() {
    "$RC" filter -v -c "$1" --from "$SENDER" --rcpt bob@example.net \
        <"$2" >"$3" 2>"$T/log"
    rc=$?
    sed -n 's/.*: disclaimer: continue, //p' "$T/log" >"$T/note"
    return $rc
}

# judge NAME IN OUT [--prepend]: the independent checks and the log.
judge() {
    name=$1
    if ! "$PY" "$check_py" ${4-} "$T/text" "$T/html" "$2" "$3" >"$T/verdict"; then
        fail "$name: $(cat "$T/verdict")"
        return 1
    fi
    dec=$(sed -n 's/^decorated=\([^ ]*\) added=\([01]\).*/\1 \2/p' "$T/verdict")
    note=$(cat "$T/note")
    case "$note" in
    "added (new text/plain part),"*) want="added=1" ;;
    added*) want="added=0" ;;
    *) want="identical" ;;
    esac
    case "$want" in
    identical)
        grep -q "identical=1" "$T/verdict" ||
            fail "$name: stage says \"$note\" but the message changed" ;;
    added=1)
        [ "$dec" = " 1" ] || fail "$name: stage says \"$note\", checker: $dec" ;;
    *)
        for t in text/plain text/html; do
            in_note=0; in_dec=0
            echo "$note" | sed 's/;.*//' | grep -q "$t" && in_note=1
            echo "$dec" | grep -q "$t" && in_dec=1
            [ "$in_note" = "$in_dec" ] ||
                fail "$name: stage says \"$note\", checker decorated \"$dec\""
        done ;;
    esac
    return 0
}

decorated=0
for msg in "$corpus"/*.eml "$corpus"/ambiguous/*.eml "$T"/gen/*.eml; do
    case "$msg" in
    */ambiguous/*) name=ambiguous-$(basename "$msg") ;;
    *) name=$(basename "$msg") ;;
    esac
    out=$T/out/$name
    checks=$((checks + 1))
    if ! run "$data/relaychain.conf" "$msg" "$out"; then
        fail "$name: relaychain filter failed: $(cat "$T/log")"
        continue
    fi
    judge "$name" "$msg" "$out" || continue
    cmp -s "$msg" "$out" || decorated=$((decorated + 1))
    case "$msg" in
    "$corpus"/ambiguous/*) ;;
    "$corpus"/*)
        exp=$data/expected/$name
        if [ "$update" -eq 1 ]; then
            cp "$out" "$exp"
        elif ! cmp -s "$exp" "$out"; then
            fail "$name: output differs from expected/$name"
            diff -u "$exp" "$out" | head -20 >&2
        fi ;;
    esac
done

# Never to be touched: signed, report, inline PGP, no header, ambiguous.
for name in 11-dsn-multipart-report.eml 12-dkim-pgp-signed-kmail.eml \
    23-mixed-with-signed-part.eml 27-newsletter-received-chain.eml \
    30-pgp-signed-odd-folding.eml 38-koi8r-bounce-mbox-from-line.eml \
    ambiguous-01-outlook-mac-reused-boundary.eml \
    ambiguous-02-bad-close-delimiter-epilogue.eml \
    ambiguous-03-conflicting-content-disposition.eml \
    ambiguous-04-gb2312-bounce-headerless-rfc822.eml; do
    case "$name" in
    ambiguous-*) src=$corpus/ambiguous/${name#ambiguous-} ;;
    *) src=$corpus/$name ;;
    esac
    check "$name comes out byte for byte" cmp -s "$src" "$T/out/$name"
done
check "at least 35 messages decorated (got $decorated)" [ "$decorated" -ge 35 ]

# The charset rules, as a reader sees them.
hdr() { "$PY" -c 'import email,email.policy,sys
m=email.message_from_binary_file(open(sys.argv[1],"rb"),policy=email.policy.default)
for p in m.walk():
    if p.get_content_maintype()=="text": print(p.get_content_type(),p.get_content_charset(),p["Content-Transfer-Encoding"] or "7bit")' "$1"; }
check "windows-1252 text keeps its charset and QP" sh -c \
    '[ "$1" = "text/plain windows-1252 quoted-printable" ]' - "$(hdr "$T/out/g1-windows1252-qp.eml")"
check "iso-2022-jp text becomes utf-8, 8-bit footer as QP" sh -c \
    '[ "$1" = "text/plain utf-8 quoted-printable" ]' - "$(hdr "$T/out/g2-iso2022jp-7bit.eml")"
check "gb2312 text stays base64" sh -c \
    'echo "$1" | grep -q "base64"' - "$(hdr "$T/out/g3-gb2312-base64.eml")"
check "iso-2022-jp HTML keeps its charset" sh -c \
    '[ "$1" = "text/html iso-2022-jp 7bit" ]' - "$(hdr "$T/out/g5-iso2022jp-html.eml")"
check "iso-2022-jp HTML: umlaut as a character reference" grep -q '&#252;' "$T/out/g5-iso2022jp-html.eml"
check "HTML footer not put in the comment's </body>" sh -c \
    '"$1" -c "import email,email.policy,sys
m=email.message_from_binary_file(open(sys.argv[1],\"rb\"),policy=email.policy.default)
h=m.get_body((\"html\",)).get_content()
sys.exit(0 if h.index(\"disclaimer\") > h.index(\"in a comment -->\") else 1)" "$2"' - "$PY" "$T/out/g4-alternative-1252.eml"

# position = prepend over the corpus: the same checks, footer first.
mkdir -p "$T/pre/chain.d"
printf 'chain_directory = chain.d\nambiguous_mime_action = continue\n' >"$T/pre/relaychain.conf"
printf 'stage = disclaimer\ntext_file = %s\nhtml_file = %s\nposition = prepend\n' \
    "$data/templates/legal-en.txt" "$data/templates/legal-en.html" >"$T/pre/chain.d/10-disclaimer.conf"
for msg in "$corpus"/*.eml "$T"/gen/*.eml; do
    name=prepend-$(basename "$msg")
    checks=$((checks + 1))
    if ! run "$T/pre/relaychain.conf" "$msg" "$T/out/$name"; then
        fail "$name: relaychain filter failed: $(cat "$T/log")"
        continue
    fi
    judge "$name" "$msg" "$T/out/$name" --prepend
done
finish
