#!/bin/sh
# cli_check - "relaychain check" accepts the shipped example chain and
# stops bad configurations with path:line: reason and exit status 1.
. "$top_srcdir/tests/integration/lib.sh"

# The example chain as shipped in chain.d/.
cat > "$T/ok.conf" <<CONF
chain_directory = $top_srcdir/chain.d
CONF
out=$("$RC" check -c "$T/ok.conf" 2>"$T/err"); rc=$?
check "check of the example chain exits 0 (got $rc: $(cat "$T/err"))" [ "$rc" -eq 0 ]
check "check prints the rewrite stage" sh -c 'echo "$1" | grep -q "^1\. rewrite (stage = rewrite)"' - "$out"
check "check prints effective settings with defaults" sh -c 'echo "$1" | grep -q "message_size_limit = 10240000"' - "$out"
check "check prints the match condition" sh -c 'echo "$1" | grep -q "applies to:"' - "$out"

# expect_error NAME WANT: check -c $T/NAME.conf must fail, stderr has WANT
expect_error() {
    "$RC" check -c "$T/$1.conf" >/dev/null 2>"$T/$1.err"; rc=$?
    check "$1: exit status 1 (got $rc)" [ "$rc" -eq 1 ]
    check "$1: error \"$2\" (got: $(cat "$T/$1.err"))" grep -qF -- "$2" "$T/$1.err"
}

printf 'chain_directory = %s/chain.d\nmessage_size_limt = 10M\n' "$top_srcdir" > "$T/typo.conf"
expect_error typo "$T/typo.conf:2: unknown key 'message_size_limt'"

printf '# limits\nmessage_size_limit = 10Q\n' > "$T/badsize.conf"
expect_error badsize "$T/badsize.conf:2:"

printf 'syslog_facility = mial\n' > "$T/facility.conf"
expect_error facility "$T/facility.conf:1:"

printf 'header_limit = 10\nheader_limit = 20\n' > "$T/dup.conf"
expect_error dup "$T/dup.conf:2: duplicate key 'header_limit'"

mkdir -p "$T/chain1" "$T/chain1/rules"
printf 'chain_directory = chain1\n' > "$T/unknown.conf"
printf 'stage = nosuch\n' > "$T/chain1/10-x.conf"
expect_error unknown "$T/chain1/10-x.conf:1: unknown stage type 'nosuch'"

mkdir -p "$T/chain2/rules"
printf 'chain_directory = chain2\n' > "$T/regex.conf"
printf 'stage = rewrite\nsender_rules = rules/s.pcre\n' > "$T/chain2/10-rw.conf"
printf '# ok line next\n/^(a@b$/ x@y\n' > "$T/chain2/rules/s.pcre"
expect_error regex "$T/chain2/rules/s.pcre:2:"
check "regex: pcre2's message" grep -qi "missing closing parenthesis" "$T/regex.err"

printf 'chain_directory = nonexistent.d\n' > "$T/nodir.conf"
expect_error nodir "nonexistent.d"

# Skipped files are named in a log line; the chain still loads.
mkdir -p "$T/chain3"
printf 'chain_directory = chain3\n' > "$T/skip.conf"
printf 'stage = rewrite\nsender_rules = s.pcre\n' > "$T/chain3/10-rw.conf.dpkg-old"
"$RC" check -c "$T/skip.conf" >"$T/skip.out" 2>"$T/skip.err"; rc=$?
check "skip: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "skip: log line names the file" grep -q "skipping 10-rw.conf.dpkg-old" "$T/skip.err"
check "skip: empty chain" grep -q "chain: 0 stages" "$T/skip.out"

"$RC" --version | grep -q "^relaychain [0-9]" || fail "--version"
for c in check filter rewrite-test; do
    "$RC" "$c" -h | grep -q "usage: relaychain $c" || fail "$c -h"
done
finish
