#!/bin/sh
# cli_rewrite_test - "relaychain rewrite-test" answers like postmap -q:
# exit 0 when a rule of some table matched, 1 when none did, and 2 with a
# message for what is not an address or a chain without a rewrite stage.
. "$top_srcdir/tests/integration/lib.sh"

printf 'chain_directory = %s/chain.d\n' "$top_srcdir" >"$T/ex.conf"

# rt NAME ADDRESS WANT: rewrite-test of ADDRESS exits WANT
rt() {
    "$RC" rewrite-test -c "$T/ex.conf" "$2" >"$T/$1.out" 2>"$T/$1.err"
    rc=$?
    check "$1: '$2' exits $3 (got $rc: $(cat "$T/$1.out" "$T/$1.err"))" [ "$rc" -eq "$3" ]
}

rt match bob@host1.corp.example 0
check "match: the result and the rule's line are shown" \
    grep -q "sender_rules: bob@host1.corp.example -> bob@example.com (.*sender.pcre:[0-9]*)" "$T/match.out"
rt recipient alice@legacy.example.com 0
rt nomatch nobody@example.org 1
check "nomatch: each table says no match" \
    sh -c "[ \$(grep -c ': no match' '$T/nomatch.out') -eq 3 ]"
check "nomatch: nothing on stderr" sh -c "[ ! -s '$T/nomatch.err' ]"

rt spaces "not an address" 2
check "spaces: says why" grep -q "'not an address' is not an address" "$T/spaces.err"
check "spaces: no table lookup was printed" sh -c "[ ! -s '$T/spaces.out' ]"
rt local postmaster 2
check "local: says the domain is missing" grep -q "missing @domain" "$T/local.err"
rt empty "" 2
rt brackets "<bob@host1.corp.example>" 2
check "brackets: says to drop them" grep -q "without the angle brackets" "$T/brackets.err"

mkdir -p "$T/empty.d"
printf 'chain_directory = empty.d\n' >"$T/norw.conf"
"$RC" rewrite-test -c "$T/norw.conf" bob@example.com >/dev/null 2>"$T/norw.err"
rc=$?
check "no rewrite stage: exit 2 (got $rc)" [ "$rc" -eq 2 ]
check "no rewrite stage: says so" grep -q "the chain has no rewrite stage" "$T/norw.err"
finish
