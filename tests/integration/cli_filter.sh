#!/bin/sh
# cli_filter - "relaychain filter": envelope from headers or options,
# --explain, and one exit status per verdict.
. "$top_srcdir/tests/integration/lib.sh"

mkdir -p "$T/chain.d/rules"
cat > "$T/relaychain.conf" <<CONF
message_size_limit = 64k
CONF
cat > "$T/chain.d/10-rewrite.conf" <<CONF
stage = rewrite
sender_rules = rules/sender.pcre
recipient_rules = rules/rcpt.pcre
header_rules = rules/sender.pcre
CONF
cat > "$T/chain.d/rules/sender.pcre" <<'MAP'
/^(.*)@host1\.corp\.example$/   ${1}@example.com
/^broken@example\.com$/         not an address
MAP
cat > "$T/chain.d/rules/rcpt.pcre" <<'MAP'
/^old@example\.net$/            new@example.net
MAP
cat > "$T/in.eml" <<'MSG'
From: Alice Example <alice@host1.corp.example>
To: old@example.net, Bob <bob@example.org>
Subject: test

body
MSG

# Envelope from the headers: sender from From, recipients from To.
"$RC" filter -c "$T/relaychain.conf" --explain <"$T/in.eml" >"$T/out.eml" 2>"$T/explain"; rc=$?
check "continue exits 0 (got $rc)" [ "$rc" -eq 0 ]
check "From header rewritten" grep -q "^From: Alice Example <alice@example.com>$" "$T/out.eml"
check "body untouched" grep -q "^body$" "$T/out.eml"
check "explain: stage matched" grep -q "stage 1/1 rewrite .*: matched" "$T/explain"
check "explain: sender change" grep -q "sender changed: <alice@example.com>" "$T/explain"
check "explain: recipient change" grep -q "recipient added: <new@example.net>" "$T/explain"
check "explain: final envelope" grep -q "envelope: from=<alice@example.com> to=<bob@example.org> to=<new@example.net>\|envelope: from=<alice@example.com> to=<new@example.net> to=<bob@example.org>" "$T/explain"

# Envelope from options overrides the headers.
"$RC" filter -c "$T/relaychain.conf" --from other@example.org --rcpt x@example.org --explain <"$T/in.eml" >/dev/null 2>"$T/explain2"; rc=$?
check "options: exit 0 (got $rc)" [ "$rc" -eq 0 ]
check "options: envelope kept" grep -q "envelope: from=<other@example.org> to=<x@example.org>$" "$T/explain2"

# A rule result that is not an address is refused: tempfail, exit 3.
"$RC" filter -c "$T/relaychain.conf" --from broken@example.com --rcpt x@example.org <"$T/in.eml" >"$T/out3" 2>"$T/err3"; rc=$?
check "invalid rewrite result tempfails with exit 3 (got $rc)" [ "$rc" -eq 3 ]
check "tempfail reply on stderr" grep -q "451 4" "$T/err3"
check "nothing written on tempfail" [ ! -s "$T/out3" ]

# Ambiguous MIME: reject, exit 2.
cat > "$T/ambig.eml" <<'MSG'
From: alice@example.com
To: bob@example.org
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: text/plain

hidden
--x--
--x--
MSG
"$RC" filter -c "$T/relaychain.conf" <"$T/ambig.eml" >/dev/null 2>"$T/err4"; rc=$?
check "ambiguous MIME rejects with exit 2 (got $rc)" [ "$rc" -eq 2 ]
check "reject reply 554 5.6.0" grep -q "554 5.6.0" "$T/err4"

# Over message_size_limit: 552 5.3.4, exit 2.
{ cat "$T/in.eml"; head -c 70000 /dev/zero | tr '\0' 'x'; echo; } > "$T/big.eml"
"$RC" filter -c "$T/relaychain.conf" <"$T/big.eml" >/dev/null 2>"$T/err5"; rc=$?
check "oversize rejects with exit 2 (got $rc)" [ "$rc" -eq 2 ]
check "oversize reply 552 5.3.4" grep -q "552 5.3.4" "$T/err5"

# Bad config: exit 1.
"$RC" filter -c "$T/missing.conf" <"$T/in.eml" >/dev/null 2>&1; rc=$?
check "missing config exits 1 (got $rc)" [ "$rc" -eq 1 ]

# rewrite-test prints what each table makes of an address.
"$RC" rewrite-test -c "$T/relaychain.conf" bob@host1.corp.example >"$T/rt" 2>&1; rc=$?
check "rewrite-test exits 0 (got $rc)" [ "$rc" -eq 0 ]
check "rewrite-test shows the sender result" grep -q "bob@example.com" "$T/rt"
finish
