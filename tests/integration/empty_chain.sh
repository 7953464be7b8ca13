#!/bin/sh
# empty_chain - with no stages, relaychain filter gives back what it read
#
# A relaychain.conf whose chain_directory is an empty directory must pass
# every message through untouched: each message of tests/data/corpus/
# (ambiguous/ included: with no stage there is no MIME check) and a few
# awkward inputs made here (CRLF line ends, no final newline, a
# header with no body, NUL octets in the body, a 200 KB message) goes
# through "relaychain filter" and must exit 0 with the same bytes (cmp).
#
# Run by "make check" with top_srcdir and top_builddir in the environment.
# Exit status: 0 all passed, 1 a failure (a missing binary included); it
# never skips (77).

LC_ALL=C
export LC_ALL

me=empty_chain
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$here/../..}
top_builddir=${top_builddir:-$top_srcdir}

bin=$top_builddir/relaychain
corpus=$top_srcdir/tests/data/corpus

if [ ! -x "$bin" ]; then
    echo "$me: FAIL: no relaychain binary at $bin (build it first: make relaychain)" >&2
    exit 1
fi
set -- "$corpus"/*.eml
if [ ! -f "$1" ]; then
    echo "$me: FAIL: no messages in $corpus" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/empty_chain.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT PIPE TERM

mkdir "$tmp/chain.d" "$tmp/edge" || exit 1
cat >"$tmp/relaychain.conf" <<'CONF'
# No stages: chain.d beside this file is empty.
chain_directory = chain.d
CONF

# The awkward inputs. printf with octal escapes keeps them byte-exact.
edge=$tmp/edge
printf 'From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: crlf\r\n\r\nLine one.\r\nLine two.\r\n' \
    >"$edge/crlf.eml"
printf 'From: alice@example.org\nTo: bob@example.net\nSubject: no final newline\n\nThe last line has no end.' \
    >"$edge/no-final-newline.eml"
printf 'From: alice@example.org\nTo: bob@example.net\nSubject: header only\n' \
    >"$edge/header-only.eml"
printf 'From: alice@example.org\nTo: bob@example.net\nSubject: header and empty line\n\n' \
    >"$edge/empty-body.eml"
printf 'From: alice@example.org\nTo: bob@example.net\nSubject: nul\n\nbefore\000after\n\000\000\nend\n' \
    >"$edge/nul-in-body.eml"
{
    printf 'From: alice@example.org\nTo: bob@example.net\nSubject: large\n'
    printf 'MIME-Version: 1.0\nContent-Type: application/octet-stream\n'
    printf 'Content-Transfer-Encoding: base64\n\n'
    # 2700 lines of 76 octets plus LF: about 208 KB.
    awk 'BEGIN {
        s = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for (i = 0; i < 2700; i++) {
            line = ""
            for (j = 0; j < 76; j++)
                line = line substr(s, (i * 7 + j) % 64 + 1, 1)
            print line
        }
    }'
} >"$edge/large-200k.eml"

total=0
failed=0
for msg in "$@" "$corpus"/ambiguous/*.eml "$edge"/*.eml; do
    [ -f "$msg" ] || continue
    name=$(basename "$msg")
    total=$((total + 1))
    "$bin" filter -c "$tmp/relaychain.conf" <"$msg" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: $name: relaychain filter exited $rc, want 0"
        sed 's/^/    /' "$tmp/err" | head -n 10
        failed=$((failed + 1))
    elif ! cmp "$msg" "$tmp/out" >"$tmp/cmp" 2>&1; then
        echo "FAIL: $name: output is not the input: $(cat "$tmp/cmp")"
        failed=$((failed + 1))
    fi
done

echo "$me: $total messages, $failed failed"
[ "$failed" -eq 0 ] || exit 1
exit 0
