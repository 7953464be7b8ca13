#!/bin/sh
# dkim_order - the dkim stage signs last: a stage that edits the header or
# body after it is refused at start-up, naming both files; stages that
# change neither may follow, and editing stages may come before it.
. "$top_srcdir/tests/integration/lib.sh"

mkdir -p "$T/chain.d/keys" "$T/chain.d/files"
"$RC" dkim keygen -d example.com -s s1 -D "$T/chain.d/keys" >/dev/null 2>&1 ||
    fail "keygen"
printf 'chain_directory = chain.d\n' >"$T/relaychain.conf"
printf '/^(.*)@host\\.example\\.com$/ ${1}@example.com\n' >"$T/chain.d/files/rules.pcre"
printf 'Sent through relaychain.\n' >"$T/chain.d/files/footer.txt"
cat >"$T/chain.d/90-dkim.conf" <<'CONF'
stage = dkim
domain = example.com
selector = s1
key_file = keys/s1.private
CONF
D=$T/chain.d/90-dkim.conf

# refused NAME FILE INSTANCE TYPE WHAT: check must fail naming FILE (its
# stage INSTANCE of type TYPE, editing WHAT) and the dkim stage's file.
refused() {
    "$RC" check -c "$T/relaychain.conf" >/dev/null 2>"$T/$1.err"; rc=$?
    check "$1: refused, exit 1 (got $rc)" [ "$rc" -eq 1 ]
    check "$1: names both files (got: $(cat "$T/$1.err"))" grep -qF \
        "$2: stage $3 ($4) edits the $5 after the signing stage dkim ($D), which would break the signature" "$T/$1.err"
    "$RC" filter -c "$T/relaychain.conf" </dev/null >/dev/null 2>&1; rc=$?
    check "$1: filter will not run either (exit $rc)" [ "$rc" -eq 1 ]
}
loads() {
    "$RC" check -c "$T/relaychain.conf" >"$T/$1.out" 2>"$T/$1.err"; rc=$?
    check "$1: loads (got $rc: $(cat "$T/$1.err"))" [ "$rc" -eq 0 ]
}

# Header rewriting after signing: refused.
printf 'stage = rewrite\nheader_rules = files/rules.pcre\n' >"$T/chain.d/95-rewrite.conf"
refused rewrite_header "$T/chain.d/95-rewrite.conf" rewrite rewrite header
# A footer after signing: refused.
rm "$T/chain.d/95-rewrite.conf"
printf 'stage = disclaimer\ntext_file = files/footer.txt\n' >"$T/chain.d/95-disclaimer.conf"
refused disclaimer "$T/chain.d/95-disclaimer.conf" disclaimer disclaimer body
rm "$T/chain.d/95-disclaimer.conf"

# Envelope-only rewriting after signing changes nothing signed.
printf 'stage = rewrite\nsender_rules = files/rules.pcre\n' >"$T/chain.d/95-rewrite.conf"
loads sender_only
check "sender_only: both stages, dkim first" sh -c \
    'grep -q "^1\. dkim " "$1" && grep -q "^2\. rewrite " "$1"' - "$T/sender_only.out"
rm "$T/chain.d/95-rewrite.conf"

# Editing stages before the signer: the intended order.
printf 'stage = rewrite\nheader_rules = files/rules.pcre\n' >"$T/chain.d/10-rewrite.conf"
printf 'stage = disclaimer\ntext_file = files/footer.txt\n' >"$T/chain.d/50-disclaimer.conf"
loads before
rm "$T/chain.d/10-rewrite.conf" "$T/chain.d/50-disclaimer.conf"

# A second signer re-encoding bodies after the first would change what the
# first signed; one that only signs (eight_bit_body = keep) may follow.
sed 's/^selector = s1/selector = s2/' "$D" >"$T/chain.d/95-dkim2.conf"
"$RC" dkim keygen -d example.com -s s2 -D "$T/chain.d/keys" >/dev/null 2>&1
sed -i 's/s1.private/s2.private/' "$T/chain.d/95-dkim2.conf"
refused second_signer "$T/chain.d/95-dkim2.conf" dkim2 dkim body
printf 'eight_bit_body = keep\n' >>"$T/chain.d/95-dkim2.conf"
loads second_keep

finish
