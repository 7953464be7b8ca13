#!/bin/sh
# golden - the corpus through a rewrite-only chain, compared byte for byte
#
# Every message in tests/data/corpus/ goes through
#     relaychain filter -c tests/data/golden/relaychain.conf
# (envelope taken from the headers) and must exit 0 with exactly the bytes
# of tests/data/golden/expected/NAME.eml. Independently of the expected
# files, each output may differ from its input only in header lines of the
# From, To, Cc, Reply-To and Sender fields (folding lines included), and
# at least MIN_CHANGED messages must differ at all, so a rewrite that
# silently stopped working, or one that touches a body or another header,
# fails even right after "golden.sh --update".
#
# The configuration keeps ambiguous_mime_action at its default (reject):
# the corpus is real mail that must not be taken for ambiguous, while each
# message in tests/data/corpus/ambiguous/ must be rejected (exit 2, nothing
# on standard output).
#
#     golden.sh            check
#     golden.sh --update   rewrite expected/ from the current output (then
#                          review "git diff tests/data/golden/expected")
#
# Run by "make check" with top_srcdir and top_builddir in the environment.
# Exit status: 0 all passed, 1 a failure (a missing binary included); it
# never skips (77).

LC_ALL=C
export LC_ALL

# Fewer changed messages than this means the rules no longer hit the
# corpus (21 of 38 messages are rewritten): see tests/data/golden/rules/.
MIN_CHANGED=15

me=golden
update=0
case "${1-}" in
"") ;;
--update) update=1 ;;
*)
    echo "usage: $0 [--update]" >&2
    exit 1
    ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
top_builddir=${top_builddir:-$top_srcdir}

bin=$top_builddir/relaychain
corpus=$top_srcdir/tests/data/corpus
golden=$top_srcdir/tests/data/golden
expected=$golden/expected

if [ ! -x "$bin" ]; then
    echo "$me: FAIL: no relaychain binary at $bin (build it first: make relaychain)" >&2
    exit 1
fi
if [ ! -f "$golden/relaychain.conf" ]; then
    echo "$me: FAIL: missing $golden/relaychain.conf" >&2
    exit 1
fi
set -- "$corpus"/*.eml
if [ ! -f "$1" ]; then
    echo "$me: FAIL: no messages in $corpus" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/golden.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT PIPE TERM

# annotate FILE - print every line of FILE prefixed with the lower-case
# name of the header field it belongs to (continuation lines included) or
# "body"; as in Postfix, the header ends at the empty line or at the first
# line that is neither a field nor a continuation.
annotate() {
    awk '
    BEGIN { inhdr = 1; field = "" }
    {
        line = $0
        sub(/\r$/, "", line)
        if (inhdr) {
            if (line ~ /^[ \t]/ && field != "") {
                print field "\t" $0
                next
            }
            if (match(line, /^[!-9;-~]+[ \t]*:/)) {
                field = tolower(substr(line, 1, RLENGTH - 1))
                sub(/[ \t]+$/, "", field)
                print field "\t" $0
                next
            }
            inhdr = 0
        }
        print "body\t" $0
    }' "$1"
}

# only_address_headers_changed IN OUT - 0 when every line that differs
# between IN and OUT belongs to an address header field; else print the
# offending lines and return 1.
only_address_headers_changed() {
    annotate "$1" >"$tmp/in.ann"
    annotate "$2" >"$tmp/out.ann"
    diff "$tmp/in.ann" "$tmp/out.ann" | grep '^[<>]' |
        awk -F '\t' '
        {
            f = substr($1, 3)
            if (f != "from" && f != "to" && f != "cc" && f != "reply-to" &&
                f != "sender") {
                line = $0
                sub(/^[^\t]*\t/, "", line)
                if (++bad <= 10)
                    print "    " substr($0, 1, 1) " (" f ") " line
            }
        }
        END { exit bad > 0 }'
}

total=0
failed=0
changed=0
for msg in "$@"; do
    name=$(basename "$msg")
    total=$((total + 1))
    out=$tmp/out.eml
    "$bin" filter -c "$golden/relaychain.conf" <"$msg" >"$out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: $name: relaychain filter exited $rc"
        sed 's/^/    /' "$tmp/err" | head -n 10
        failed=$((failed + 1))
        continue
    fi
    ok=1
    if ! cmp -s "$msg" "$out"; then
        changed=$((changed + 1))
        if ! only_address_headers_changed "$msg" "$out" >"$tmp/why"; then
            echo "FAIL: $name: output differs from input outside From/To/Cc/Reply-To/Sender"
            cat "$tmp/why"
            ok=0
        fi
    fi
    if [ "$update" -eq 1 ]; then
        # Never record an output that broke the rule above.
        [ "$ok" -eq 0 ] || { mkdir -p "$expected" && cp "$out" "$expected/$name"; } || ok=0
    elif [ ! -f "$expected/$name" ]; then
        echo "FAIL: $name: no expected output (run $0 --update and review it)"
        ok=0
    elif ! cmp -s "$expected/$name" "$out"; then
        echo "FAIL: $name: output differs from expected/$name"
        diff -u "$expected/$name" "$out" | head -n 40
        ok=0
    fi
    [ "$ok" -eq 1 ] || failed=$((failed + 1))
done

for msg in "$corpus"/ambiguous/*.eml; do
    [ -f "$msg" ] || continue
    name=ambiguous/$(basename "$msg")
    total=$((total + 1))
    "$bin" filter -c "$golden/relaychain.conf" <"$msg" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne 2 ] || [ -s "$tmp/out" ]; then
        echo "FAIL: $name: relaychain filter exited $rc with $(wc -c <"$tmp/out") octets of output, want a reject (2) and none"
        sed 's/^/    /' "$tmp/err" | head -n 10
        failed=$((failed + 1))
    fi
done

# An expected file whose message left the corpus is a test nobody runs.
for exp in "$expected"/*.eml; do
    [ -f "$exp" ] || continue
    name=$(basename "$exp")
    [ -f "$corpus/$name" ] && continue
    if [ "$update" -eq 1 ]; then
        rm -f "$exp"
    else
        echo "FAIL: expected/$name has no message in the corpus"
        failed=$((failed + 1))
    fi
done

if [ "$changed" -lt "$MIN_CHANGED" ]; then
    echo "FAIL: only $changed of $# corpus messages were rewritten, want at least $MIN_CHANGED"
    failed=$((failed + 1))
fi

echo "$me: $changed of $# corpus messages rewritten"
echo "$me: $total messages, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit 0
